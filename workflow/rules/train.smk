# Training of every model of the grid (results/{dataset}/models/{run}/).


rule train:
    input:
        key_file=W.keys,
        targets=lambda w: RUN.of(w.dataset).targets_manifest(parse_run(w.run).clusters),
    output:
        model=W.model("{run}"),
        history=W.history("{run}"),
        metrics=W.metrics("{run}"),
    log:
        L.log("{dataset}", "train", "{run}"),
    benchmark:
        L.benchmark("{dataset}", "train", "{run}")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.train_mem_mb(w.dataset),
        runtime=lambda w: JOBS.train_minutes(w.dataset, w.run),
        gpu=config["gpu_per_job"],
    params:
        run=lambda w: JOBS.run_cli(w.run),
        train=lambda w: JOBS.train_cli(w.dataset),
        dataset_dir=lambda w: str(RUN.of(w.dataset).root),
        out=lambda w, output: folder(output.model),
        device=DEVICE,
        execution=lambda w, threads: JOBS.execution_cli(
            w.dataset, "train", TrainConfig.EXECUTION_ONLY, threads
        ),
    shell:
        "amips-bench train --dataset-dir {params.dataset_dir} --out {params.out} {params.run} "
        "{params.train} --device {params.device} {params.execution} > {log} 2>&1"
