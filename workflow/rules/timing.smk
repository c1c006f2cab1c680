# Table 1 (score / gradient seconds per batch) and the end-to-end search pipelines.
# Timing jobs take at least two threads: on a 2-core machine nothing else runs beside them.


rule table1:
    output:
        csv=RESULTS.table1("csv"),
        md=report(RESULTS.table1("md"), caption="../report/table1.rst", category="Tables"),
    log:
        RESULTS.log("timing", "table1"),
    conda:
        ENV
    threads: max(2, config["threads"])
    resources:
        mem_mb=max([8000] + [JOBS.mem_mb(ds, 8) for ds in config["table1"]["datasets"]]),
        runtime=120,
        gpu=config["gpu_per_job"],
    params:
        datasets=" ".join(f"{ds}={JOBS.n_keys(ds)}" for ds in config["table1"]["datasets"]),
        t=config["table1"],
        n_x=nx_for(config["table1"]["depth"], config["table1"]["reinject_spacing"]),
        stem=lambda w, output: stem(output.csv),
        width_rule=config["width_rule"],
        device=DEVICE,
    shell:
        "amips-bench timing --datasets {params.datasets} --sizes {params.t[sizes]} "
        "--depth {params.t[depth]} --nx {params.n_x} --batch {params.t[batch]} "
        "--repeats {params.t[repeats]} --warmup {params.t[warmup]} --out {params.stem} "
        "--width-rule {params.width_rule} --device {params.device} --threads {threads} > {log} 2>&1"


rule pipelines:
    input:
        unpack(lambda w: RUN.pipeline_inputs(w.dataset)),
    output:
        DATASET_FILES.pipelines_csv,
    log:
        RESULTS.log("{dataset}", "timing", "pipelines"),
    conda:
        ENV
    threads: max(2, config["threads"])
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 4),
        runtime=60,
        gpu=config["gpu_per_job"],
    params:
        clusters=lambda w: (RUN.clustered(w.dataset) or [0])[0],
        ks=lambda w: space_separated(DATASETS[w.dataset]["routing"]["ks"]),
        nprobe=lambda w: space_separated(
            config["pipelines"]["nprobe"] or DATASETS[w.dataset]["ivf"]["nprobe"]
        ),
        k=lambda w: max(DATASETS[w.dataset]["ivf"]["recall_at"]),
        p=config["pipelines"],
        dataset_dir=lambda w: str(RUN.of(w.dataset).root),
        index_dir=lambda w, input: folder(input.index),
        device=DEVICE,
    shell:
        "amips-bench pipelines --dataset-dir {params.dataset_dir} --index-dir {params.index_dir} "
        "--clusters {params.clusters} --routing-models {input.routing_models} --ks {params.ks} "
        "--ivf-models {input.ivf_models} --nprobe {params.nprobe} --k {params.k} "
        "--batch {params.p[batch]} --repeats {params.p[repeats]} --warmup {params.p[warmup]} "
        "--out {output} --device {params.device} --threads {threads} > {log} 2>&1"
