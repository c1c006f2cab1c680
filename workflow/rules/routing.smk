# Routing experiment (Figure 2): clustered models, learned routers (classifier MLP, linear),
# centroid baselines.


rule train_router:
    input:
        targets=DATASET_FILES.targets_manifest("{clusters}"),
    output:
        model=DATASET_FILES.model(ROUTER),
        metrics=DATASET_FILES.metrics(ROUTER),
    log:
        RESULTS.log("{dataset}", "train", ROUTER),
    benchmark:
        RESULTS.benchmark("{dataset}", "train", ROUTER)
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3, base=4000),
        runtime=lambda w: JOBS.router_minutes(w.dataset),
        gpu=config["gpu_per_job"],
    params:
        recipe=lambda w: JOBS.router_cli(w.dataset, w.router),
        dataset_dir=lambda w: str(RUN.of(w.dataset).root),
        out=lambda w, output: folder(output.model),
        device=DEVICE,
    shell:
        "amips-bench train-router --dataset-dir {params.dataset_dir} --out {params.out} "
        "--clusters {wildcards.clusters} --router {wildcards.router} "
        "{params.recipe} --seed {wildcards.seed} --device {params.device} "
        "--threads {threads} > {log} 2>&1"


rule routing_model:
    input:
        unpack(lambda w: RUN.routing_inputs(w.dataset, parse_run(w.run).clusters)),
        model=DATASET_FILES.model("{run}"),
    output:
        csv=DATASET_FILES.routing_csv("{run}"),
        questions=DATASET_FILES.questions_beside(DATASET_FILES.routing_csv("{run}")),
    log:
        RESULTS.log("{dataset}", "routing", "{run}"),
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 2),
        runtime=30,
    params:
        ks=lambda w: space_separated(DATASETS[w.dataset]["routing"]["ks"]),
        clusters=lambda w: parse_run(w.run).clusters,
        router=lambda w, input: f"--model {input.model}",
        dataset_dir=lambda w: str(RUN.of(w.dataset).root),
        device=DEVICE,
    shell:
        "amips-bench routing --dataset-dir {params.dataset_dir} --clusters {params.clusters} "
        "--ks {params.ks} {params.router} --out {output.csv} --device {params.device} "
        "--threads {threads} > {log} 2>&1"


use rule routing_model as routing_router with:
    input:
        unpack(lambda w: RUN.routing_inputs(w.dataset, w.clusters)),
        model=DATASET_FILES.model(ROUTER),
    output:
        csv=DATASET_FILES.routing_csv(ROUTER),
        questions=DATASET_FILES.questions_beside(DATASET_FILES.routing_csv(ROUTER)),
    log:
        RESULTS.log("{dataset}", "routing", ROUTER),
    params:
        clusters=lambda w: w.clusters,
        router=lambda w, input: f"--router {input.model}",


use rule routing_model as routing_baselines with:
    input:
        unpack(lambda w: RUN.routing_inputs(w.dataset, w.clusters)),
    output:
        csv=DATASET_FILES.routing_csv("baselines_c{clusters}_s{seed}"),
        questions=DATASET_FILES.questions_beside(
            DATASET_FILES.routing_csv("baselines_c{clusters}_s{seed}")
        ),
    log:
        RESULTS.log("{dataset}", "routing", "baselines_c{clusters}_s{seed}"),
    params:
        clusters=lambda w: w.clusters,
        router=lambda w: f"--baselines --seed {w.seed} --fine-centroids "
        + space_separated(RUN.fine_centroids(w.dataset, w.clusters)),
