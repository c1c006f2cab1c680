# Training of every model of the grid (results/{dataset}/models/{run}/).


rule train:
    input:
        key_file=f"{R}/{{dataset}}/embeddings/keys.npy",
        targets=lambda w: f"{R}/{w.dataset}/targets/c{parse_run(w.run).clusters}/manifest.json",
    output:
        model=f"{R}/{{dataset}}/models/{{run}}/model.pt",
        history=f"{R}/{{dataset}}/models/{{run}}/history.csv",
        metrics=f"{R}/{{dataset}}/models/{{run}}/metrics.json",
    log:
        f"{R}/logs/{{dataset}}/train/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train/{{run}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.train_mem_mb(w.dataset),
        runtime=lambda w: JOBS.train_minutes(w.dataset),
        gpu=config["gpu_per_job"],
    params:
        run=lambda w: JOBS.run_cli(w.run),
        train=lambda w: JOBS.train_cli(w.dataset),
        dataset_dir=lambda w, input: str(Path(input.key_file).parent.parent),
        out=lambda w, output: str(Path(output.model).parent),
        device=DEVICE,
        execution=lambda w, threads: JOBS.execution_cli(
            w.dataset, "train", TrainConfig.EXECUTION_ONLY, threads
        ),
    shell:
        "amips-bench train --dataset-dir {params.dataset_dir} --out {params.out} {params.run} "
        "{params.train} --device {params.device} {params.execution} > {log} 2>&1"
