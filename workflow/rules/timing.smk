# Table 1 (score / gradient seconds per batch) and the end-to-end search pipelines.
# Timing jobs take every core so that nothing else runs beside them.


rule table1:
    output:
        csv=f"{R}/timing/table1.csv",
        md=report(f"{R}/timing/table1.md", caption="../report/table1.rst", category="Tables"),
    params:
        datasets=" ".join(f"{ds}={n_keys(ds)}" for ds in config["table1"]["datasets"]),
        t=config["table1"],
        n_x=nx_for(config["table1"]["depth"], config["table1"]["reinject_every"]),
        stem=f"{R}/timing/table1",
    log:
        f"{R}/logs/timing/table1.log",
    threads: workflow.cores
    resources:
        mem_mb=lambda w: max([8000] + [mem_mb(ds, 8) for ds in config["table1"]["datasets"]]),
        runtime=120,
        gpu=config["gpu_per_job"],
    shell:
        "amips-bench timing --datasets {params.datasets} --sizes {params.t[sizes]} "
        "--depth {params.t[depth]} --nx {params.n_x} --batch {params.t[batch]} "
        "--repeats {params.t[repeats]} --warmup {params.t[warmup]} --out {params.stem} "
        "--device {config[device]} --threads {threads} > {log} 2>&1"


def pipeline_inputs(wildcards):
    ds = wildcards.dataset
    seed = config["seeds"][0]
    clustered = [c for c in cluster_counts(ds) if c > 1]
    inputs = {
        "index": f"{R}/{ds}/index/manifest.json",
        "targets": f"{R}/{ds}/targets/c1/manifest.json",
        "ivf_models": [f"{model_dir(ds, r.name)}/model.pt" for r in ivf_runs(ds) if r.seed == seed],
        "routing_models": [],
    }
    if clustered:
        c = clustered[0]
        inputs["routing_targets"] = f"{R}/{ds}/targets/c{c}/manifest.json"
        inputs["routing_models"] = [
            f"{model_dir(ds, r.name)}/model.pt" for r in runs_where(ds, clusters=c, seed=seed)
        ]
    return inputs


rule pipelines:
    input:
        unpack(pipeline_inputs),
    output:
        f"{R}/{{dataset}}/timing/pipelines.csv",
    params:
        clusters=lambda w: ([c for c in cluster_counts(w.dataset) if c > 1] or [0])[0],
        ks=lambda w: " ".join(map(str, DATASETS[w.dataset]["routing"]["ks"])),
        nprobe=lambda w: " ".join(
            map(str, config["pipelines"]["nprobe"] or DATASETS[w.dataset]["ivf"]["nprobe"])
        ),
        k=lambda w: max(DATASETS[w.dataset]["ivf"]["recall_at"]),
        p=config["pipelines"],
    log:
        f"{R}/logs/{{dataset}}/timing/pipelines.log",
    threads: workflow.cores
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 4),
        runtime=60,
        gpu=config["gpu_per_job"],
    shell:
        "amips-bench pipelines --dataset-dir {R}/{wildcards.dataset} "
        "--index-dir {R}/{wildcards.dataset}/index --clusters {params.clusters} "
        "--routing-models {input.routing_models} --ks {params.ks} "
        "--ivf-models {input.ivf_models} --nprobe {params.nprobe} --k {params.k} "
        "--batch {params.p[batch]} --repeats {params.p[repeats]} --warmup {params.p[warmup]} "
        "--out {output} --device {config[device]} --threads {threads} > {log} 2>&1"
