# Routing experiment (Figure 2): clustered models, learned routers (classifier MLP, linear),
# centroid baselines.


rule train_router:
    input:
        targets=f"{R}/{{dataset}}/targets/c{{clusters}}/manifest.json",
    output:
        model=f"{R}/{{dataset}}/models/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}/model.pt",
        metrics=f"{R}/{{dataset}}/models/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}/metrics.json",
    log:
        f"{R}/logs/{{dataset}}/train/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3, base=4000),
        runtime=lambda w: JOBS.train_minutes(w.dataset),
        gpu=config["gpu_per_job"],
    params:
        recipe=lambda w: JOBS.router_cli(w.dataset, w.size),
        dataset_dir=lambda w, input: str(Path(input.targets).parent.parent.parent),
        out=lambda w, output: str(Path(output.model).parent),
        device=DEVICE,
    shell:
        "amips-bench train-router --dataset-dir {params.dataset_dir} --out {params.out} "
        "--clusters {wildcards.clusters} --size {wildcards.size} --depth {wildcards.depth} "
        "{params.recipe} --seed {wildcards.seed} --device {params.device} "
        "--threads {threads} > {log} 2>&1"


rule routing_model:
    input:
        unpack(lambda w: routing_inputs(w.dataset, parse_run(w.run).clusters)),
        model=f"{R}/{{dataset}}/models/{{run}}/model.pt",
    output:
        f"{R}/{{dataset}}/routing/{{run}}.csv",
    log:
        f"{R}/logs/{{dataset}}/routing/{{run}}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 2),
        runtime=30,
    params:
        ks=lambda w: words(DATASETS[w.dataset]["routing"]["ks"]),
        clusters=lambda w: parse_run(w.run).clusters,
        router=lambda w, input: f"--model {input.model}",
        dataset_dir=lambda w, input: str(Path(input.targets).parent.parent.parent),
        device=DEVICE,
    shell:
        "amips-bench routing --dataset-dir {params.dataset_dir} --clusters {params.clusters} "
        "--ks {params.ks} {params.router} --out {output} --device {params.device} "
        "--threads {threads} > {log} 2>&1"


use rule routing_model as routing_router with:
    input:
        unpack(lambda w: routing_inputs(w.dataset, w.clusters)),
        model=f"{R}/{{dataset}}/models/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}/model.pt",
    output:
        f"{R}/{{dataset}}/routing/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}.csv",
    log:
        f"{R}/logs/{{dataset}}/routing/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}.log",
    params:
        clusters=lambda w: w.clusters,
        router=lambda w, input: f"--router {input.model}",


use rule routing_model as routing_baselines with:
    input:
        unpack(lambda w: routing_inputs(w.dataset, w.clusters)),
    output:
        f"{R}/{{dataset}}/routing/baselines_c{{clusters}}_s{{seed}}.csv",
    log:
        f"{R}/logs/{{dataset}}/routing/baselines_c{{clusters}}_s{{seed}}.log",
    params:
        clusters=lambda w: w.clusters,
        router=lambda w: f"--baselines --seed {w.seed} --fine-centroids "
        + words(fine_centroids(w.dataset, w.clusters)),
