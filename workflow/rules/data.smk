# Data stages: embeddings (synthetic, or BEIR text encoded with MiniLM), splits, clusters.


rule synthetic:
    output:
        key_file=DATASET_FILES.keys,
        queries=DATASET_FILES.queries,
        manifest=DATASET_FILES.embeddings_manifest,
    log:
        RESULTS.log("{dataset}", "synthetic"),
    wildcard_constraints:
        dataset=either(RUN.source("synthetic"), but=RUN.embedding_twins),
    conda:
        ENV
    threads: config["threads"]
    resources:
        # the keys go to disk as they are drawn: 3.4 GB of process memory at 5.2M keys (8 GB
        # of keys), with room for the pages of the file that the realism search maps
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 1),
        runtime=lambda w: max(5, int(JOBS.embedding_mb(w.dataset) / 50)),
    params:
        s=lambda w: DATASETS[w.dataset]["synthetic"],
        out=lambda w, output: folder(output.manifest),
    shell:
        "amips-bench synthetic --out {params.out} --n-keys {params.s[n_keys]} "
        "--n-queries {params.s[n_queries]} --d {params.s[d]} --seed {params.s[seed]} "
        "--threads {threads} > {log} 2>&1"


rule beir_fetch:
    output:
        manifest=DATASET_FILES.raw_manifest,
    log:
        RESULTS.log("{dataset}", "beir_fetch"),
    wildcard_constraints:
        dataset=either(RUN.source("beir")),
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=lambda w: max(30, int(JOBS.embedding_mb(w.dataset) / 20)),
    params:
        name=lambda w: DATASETS[w.dataset]["beir"]["name"] or w.dataset,
        raw=lambda w, output: folder(output.manifest),
        flags=lambda w: JOBS.beir_fetch_flags(w.dataset),
    shell:
        "amips-bench beir-fetch --name {params.name} --raw-dir {params.raw} {params.flags} > {log} 2>&1"


rule encode:
    input:
        lambda w: RUN.encode_inputs(w.dataset),
    output:
        key_file=DATASET_FILES.keys,
        queries=DATASET_FILES.queries,
        manifest=DATASET_FILES.embeddings_manifest,
    log:
        RESULTS.log("{dataset}", "encode"),
    benchmark:
        RESULTS.benchmark("{dataset}", "encode")
    wildcard_constraints:
        dataset=either(RUN.source("text"), but=RUN.embedding_twins),
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 6, base=8000),
        runtime=lambda w: max(30, int(JOBS.n_keys(w.dataset) / 300 / 60 * 2)),
        gpu=config["gpu_per_job"],
    params:
        folder=lambda w: RUN.beir_folder(w.dataset),
        fetch=lambda w: RUN.encode_fetch_flag(w.dataset),
        out=lambda w, output: folder(output.manifest),
        model=lambda w: DATASETS[w.dataset]["encoder"]["model"],
        qs=lambda w: DATASETS[w.dataset]["beir"]["query_source"],
        kt=lambda w: DATASETS[w.dataset]["beir"]["key_text"],
        device=DEVICE,
        execution=lambda w, threads: JOBS.execution_cli(
            w.dataset, "encoder", ENCODER_EXECUTION_ONLY, threads
        ),
    shell:
        "amips-bench encode --folder {params.folder} --out {params.out} {params.fetch} "
        "--model {params.model} --query-source {params.qs} --key-text {params.kt} "
        "--device {params.device} {params.execution} > {log} 2>&1"


# a dataset with the data settings of an earlier one (the leakage study's pairs) links to its
# embeddings instead of drawing or encoding them again (EMBEDDING_TWINS)
rule shared_embeddings:
    input:
        key_file=lambda w: RUN.of(RUN.embedding_twins[w.dataset]).keys,
        queries=lambda w: RUN.of(RUN.embedding_twins[w.dataset]).queries,
        manifest=lambda w: RUN.of(RUN.embedding_twins[w.dataset]).embeddings_manifest,
    output:
        key_file=DATASET_FILES.keys,
        queries=DATASET_FILES.queries,
        manifest=DATASET_FILES.embeddings_manifest,
    log:
        RESULTS.log("{dataset}", "shared_embeddings"),
    wildcard_constraints:
        dataset=either(RUN.embedding_twins),
    localrule: True
    conda:
        ENV
    params:
        source=lambda w, input: folder(input.manifest),
        out=lambda w, output: folder(output.manifest),
    shell:
        "amips-bench share {params.source} --out {params.out} > {log} 2>&1"


rule split:
    input:
        queries=DATASET_FILES.queries,
    output:
        multiext(
            f"{DATASET_FILES.splits}/",
            "train.npy",
            "val.npy",
            "test.npy",
            "train_copy.npy",
            "val_copy.npy",
            "test_copy.npy",
            "manifest.json",
        ),
    log:
        RESULTS.log("{dataset}", "split"),
    conda:
        ENV
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 1),
        runtime=10,
    params:
        s=lambda w: DATASETS[w.dataset]["splits"],
        out=lambda w, output: folder(output[0]),
    shell:
        "amips-bench split --queries {input.queries} --out {params.out} "
        "--val-size {params.s[val_size]} --test-size {params.s[test_size]} "
        "--augment-factor {params.s[augment_factor]} --sigma {params.s[sigma]} "
        "--mode {params.s[mode]} --seed {params.s[seed]} > {log} 2>&1"


rule cluster:
    input:
        key_file=DATASET_FILES.keys,
    output:
        centroids=DATASET_FILES.centroids("{clusters}"),
        assignments=DATASET_FILES.assignments("{clusters}"),
        manifest=DATASET_FILES.clusters_manifest("{clusters}"),
    log:
        RESULTS.log("{dataset}", "cluster_c{clusters}"),
    benchmark:
        RESULTS.benchmark("{dataset}", "cluster_c{clusters}")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3),
        runtime=lambda w: max(10, int(JOBS.embedding_mb(w.dataset) / 20)),
    params:
        c=lambda w: DATASETS[w.dataset]["clustering"],
        out=lambda w, output: folder(output.manifest),
    shell:
        "amips-bench cluster --keys {input.key_file} --out {params.out} "
        "--clusters {wildcards.clusters} --restarts {params.c[restarts]} --niter {params.c[niter]} "
        "--seed {params.c[seed]} --max-points-per-centroid {params.c[max_points_per_centroid]} "
        "--threads {threads} > {log} 2>&1"
