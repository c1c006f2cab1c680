# Data stages: embeddings (synthetic, or BEIR text encoded with MiniLM), splits, clusters.


rule synthetic:
    output:
        key_file=f"{R}/{{dataset}}/embeddings/keys.npy",
        queries=f"{R}/{{dataset}}/embeddings/queries.npy",
        manifest=f"{R}/{{dataset}}/embeddings/manifest.json",
    log:
        f"{R}/logs/{{dataset}}/synthetic.log",
    wildcard_constraints:
        dataset=either(SYNTHETIC, but=EMBEDDING_TWINS),
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
        out=lambda w, output: str(Path(output.manifest).parent),
    shell:
        "amips-bench synthetic --out {params.out} --n-keys {params.s[n_keys]} "
        "--n-queries {params.s[n_queries]} --d {params.s[d]} --seed {params.s[seed]} "
        "--threads {threads} > {log} 2>&1"


rule beir_fetch:
    output:
        manifest=f"{R}/{{dataset}}/raw/manifest.json",
    log:
        f"{R}/logs/{{dataset}}/beir_fetch.log",
    wildcard_constraints:
        dataset=either(BEIR),
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=lambda w: max(30, int(JOBS.embedding_mb(w.dataset) / 20)),
    params:
        name=lambda w: beir_name(w.dataset),
        raw=lambda w, output: str(Path(output.manifest).parent),
        flags=lambda w: beir_fetch_flags(w.dataset),
    shell:
        "amips-bench beir-fetch --name {params.name} --raw-dir {params.raw} {params.flags} > {log} 2>&1"


rule encode:
    input:
        encode_inputs,
    output:
        key_file=f"{R}/{{dataset}}/embeddings/keys.npy",
        queries=f"{R}/{{dataset}}/embeddings/queries.npy",
        manifest=f"{R}/{{dataset}}/embeddings/manifest.json",
    log:
        f"{R}/logs/{{dataset}}/encode.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/encode.tsv"
    wildcard_constraints:
        dataset=either(TEXT, but=EMBEDDING_TWINS),
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 6, base=8000),
        runtime=lambda w: max(30, int(JOBS.n_keys(w.dataset) / 300 / 60 * 2)),
        gpu=config["gpu_per_job"],
    params:
        folder=lambda w: beir_folder(w.dataset),
        fetch=lambda w: encode_fetch_flag(w.dataset),
        out=lambda w, output: str(Path(output.manifest).parent),
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
        key_file=lambda w: f"{R}/{EMBEDDING_TWINS[w.dataset]}/embeddings/keys.npy",
        queries=lambda w: f"{R}/{EMBEDDING_TWINS[w.dataset]}/embeddings/queries.npy",
        manifest=lambda w: f"{R}/{EMBEDDING_TWINS[w.dataset]}/embeddings/manifest.json",
    output:
        key_file=f"{R}/{{dataset}}/embeddings/keys.npy",
        queries=f"{R}/{{dataset}}/embeddings/queries.npy",
        manifest=f"{R}/{{dataset}}/embeddings/manifest.json",
    log:
        f"{R}/logs/{{dataset}}/shared_embeddings.log",
    wildcard_constraints:
        dataset=either(EMBEDDING_TWINS),
    localrule: True
    conda:
        ENV
    params:
        source=lambda w, input: str(Path(input.manifest).parent),
        out=lambda w, output: str(Path(output.manifest).parent),
    shell:
        "amips-bench share {params.source} --out {params.out} > {log} 2>&1"


rule split:
    input:
        queries=f"{R}/{{dataset}}/embeddings/queries.npy",
    output:
        multiext(
            f"{R}/{{dataset}}/splits/",
            "train.npy",
            "val.npy",
            "test.npy",
            "train_copy.npy",
            "val_copy.npy",
            "test_copy.npy",
            "manifest.json",
        ),
    log:
        f"{R}/logs/{{dataset}}/split.log",
    conda:
        ENV
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 1),
        runtime=10,
    params:
        s=lambda w: DATASETS[w.dataset]["splits"],
        out=lambda w, output: str(Path(output[0]).parent),
    shell:
        "amips-bench split --queries {input.queries} --out {params.out} "
        "--val-size {params.s[val_size]} --test-size {params.s[test_size]} "
        "--augment-factor {params.s[augment_factor]} --sigma {params.s[sigma]} "
        "--mode {params.s[mode]} --seed {params.s[seed]} > {log} 2>&1"


rule cluster:
    input:
        key_file=f"{R}/{{dataset}}/embeddings/keys.npy",
    output:
        centroids=f"{R}/{{dataset}}/clusters/c{{clusters}}/centroids.npy",
        assignments=f"{R}/{{dataset}}/clusters/c{{clusters}}/assignments.npy",
        manifest=f"{R}/{{dataset}}/clusters/c{{clusters}}/manifest.json",
    log:
        f"{R}/logs/{{dataset}}/cluster_c{{clusters}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/cluster_c{{clusters}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3),
        runtime=lambda w: max(10, int(JOBS.embedding_mb(w.dataset) / 20)),
    params:
        c=lambda w: DATASETS[w.dataset]["clustering"],
        out=lambda w, output: str(Path(output.manifest).parent),
    shell:
        "amips-bench cluster --keys {input.key_file} --out {params.out} "
        "--clusters {wildcards.clusters} --restarts {params.c[restarts]} --niter {params.c[niter]} "
        "--seed {params.c[seed]} --max-points-per-centroid {params.c[max_points_per_centroid]} "
        "--threads {threads} > {log} 2>&1"
