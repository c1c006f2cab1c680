# Routing experiment (Figure 2): clustered models, classifier routers, centroid baselines.


def routing_csvs(dataset):
    """Every routing table of a dataset: one per clustered model, router and baseline set."""
    rcfg = DATASETS[dataset]["routing"]
    out = []
    for c in [c for c in cluster_counts(dataset) if c > 1]:
        out += [f"{R}/{dataset}/routing/{r.name}.csv" for r in runs_where(dataset, clusters=c)]
        for seed in config["seeds"]:
            out.append(f"{R}/{dataset}/routing/baselines_c{c}_s{seed}.csv")
            out += [
                f"{R}/{dataset}/routing/router_{size}_L{rcfg['classifier_depth']}_c{c}_s{seed}.csv"
                for size in rcfg["classifier_sizes"]
            ]
    return out


rule train_router:
    input:
        targets=f"{R}/{{dataset}}/targets/c{{clusters}}/manifest.json",
    output:
        model=f"{R}/{{dataset}}/models/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}/model.pt",
        metrics=f"{R}/{{dataset}}/models/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}/metrics.json",
    params:
        r=lambda w: DATASETS[w.dataset]["routing"],
        out=lambda w: f"{R}/{w.dataset}/models/router_{w.size}_L{w.depth}_c{w.clusters}_s{w.seed}",
    log:
        f"{R}/logs/{{dataset}}/train/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 3, base=4000),
        runtime=lambda w: train_minutes(w.dataset),
        gpu=config["gpu_per_job"],
    shell:
        "amips-bench train-router --dataset-dir {R}/{wildcards.dataset} --out {params.out} "
        "--clusters {wildcards.clusters} --size {wildcards.size} --depth {wildcards.depth} "
        "--steps {params.r[classifier_steps]} --batch-size {params.r[classifier_batch_size]} "
        "--lr {params.r[classifier_lr]} --seed {wildcards.seed} --device {config[device]} "
        "--threads {threads} > {log} 2>&1"


def routing_common_inputs(w, clusters):
    return {
        "targets": f"{R}/{w.dataset}/targets/c{clusters}/manifest.json",
        "assignments": f"{R}/{w.dataset}/clusters/c{clusters}/assignments.npy",
    }


rule routing_model:
    input:
        unpack(lambda w: routing_common_inputs(w, parse_run(w.run).clusters)),
        model=f"{R}/{{dataset}}/models/{{run}}/model.pt",
    output:
        f"{R}/{{dataset}}/routing/{{run}}.csv",
    params:
        ks=lambda w: " ".join(map(str, DATASETS[w.dataset]["routing"]["ks"])),
        clusters=lambda w: parse_run(w.run).clusters,
    log:
        f"{R}/logs/{{dataset}}/routing/{{run}}.log",
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 2),
        runtime=30,
    shell:
        "amips-bench routing --dataset-dir {R}/{wildcards.dataset} --clusters {params.clusters} "
        "--ks {params.ks} --model {input.model} --out {output} --device {config[device]} "
        "--threads {threads} > {log} 2>&1"


rule routing_router:
    input:
        unpack(lambda w: routing_common_inputs(w, w.clusters)),
        model=f"{R}/{{dataset}}/models/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}/model.pt",
    output:
        f"{R}/{{dataset}}/routing/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}.csv",
    params:
        ks=lambda w: " ".join(map(str, DATASETS[w.dataset]["routing"]["ks"])),
    log:
        f"{R}/logs/{{dataset}}/routing/router_{{size}}_L{{depth}}_c{{clusters}}_s{{seed}}.log",
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 2),
        runtime=30,
    shell:
        "amips-bench routing --dataset-dir {R}/{wildcards.dataset} --clusters {wildcards.clusters} "
        "--ks {params.ks} --router {input.model} --out {output} --device {config[device]} "
        "--threads {threads} > {log} 2>&1"


rule routing_baselines:
    input:
        unpack(lambda w: routing_common_inputs(w, w.clusters)),
    output:
        f"{R}/{{dataset}}/routing/baselines_c{{clusters}}_s{{seed}}.csv",
    params:
        ks=lambda w: " ".join(map(str, DATASETS[w.dataset]["routing"]["ks"])),
    log:
        f"{R}/logs/{{dataset}}/routing/baselines_c{{clusters}}_s{{seed}}.log",
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 2),
        runtime=30,
    shell:
        "amips-bench routing --dataset-dir {R}/{wildcards.dataset} --clusters {wildcards.clusters} "
        "--ks {params.ks} --baselines --seed {wildcards.seed} --out {output} "
        "--device {config[device]} --threads {threads} > {log} 2>&1"


rule fig2_routing:
    input:
        lambda w: [f for ds in config["figures"]["routing"] for f in routing_csvs(ds)],
    output:
        pdf=f"{F}/fig2_routing.pdf",
        png=report(f"{F}/fig2_routing.png", caption="../report/fig2.rst", category="Figures"),
        csv=f"{F}/fig2_routing.csv",
    params:
        stem=f"{F}/fig2_routing",
    log:
        f"{R}/logs/figures/fig2_routing.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "amips-bench figure routing --csv {input} --out {params.stem} > {log} 2>&1"
