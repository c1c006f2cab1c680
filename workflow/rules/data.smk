# Data stages: embeddings (synthetic here; BEIR in beir.smk), splits, clusters.


rule synthetic:
    output:
        key_file=f"{R}/{{dataset}}/embeddings/keys.npy",
        queries=f"{R}/{{dataset}}/embeddings/queries.npy",
        manifest=f"{R}/{{dataset}}/embeddings/manifest.json",
    wildcard_constraints:
        dataset="|".join(SYNTHETIC) or "^$",
    params:
        s=lambda w: DATASETS[w.dataset]["synthetic"],
        out=lambda w: f"{R}/{w.dataset}/embeddings",
    log:
        f"{R}/logs/{{dataset}}/synthetic.log",
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 8),
        runtime=lambda w: max(5, int(embedding_mb(w.dataset) / 50)),
    shell:
        "amips-bench synthetic --out {params.out} --n-keys {params.s[n_keys]} "
        "--n-queries {params.s[n_queries]} --d {params.s[d]} --seed {params.s[seed]} "
        "--threads {threads} > {log} 2>&1"


rule split:
    input:
        queries=f"{R}/{{dataset}}/embeddings/queries.npy",
    output:
        multiext(f"{R}/{{dataset}}/splits/", "train.npy", "val.npy", "test.npy", "train_copy.npy",
                 "val_copy.npy", "test_copy.npy", "manifest.json"),
    params:
        s=lambda w: DATASETS[w.dataset]["splits"],
        out=lambda w: f"{R}/{w.dataset}/splits",
    log:
        f"{R}/logs/{{dataset}}/split.log",
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 1),
        runtime=10,
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
    params:
        c=lambda w: DATASETS[w.dataset]["clustering"],
        out=lambda w: f"{R}/{w.dataset}/clusters/c{w.clusters}",
    log:
        f"{R}/logs/{{dataset}}/cluster_c{{clusters}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/cluster_c{{clusters}}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 3),
        runtime=lambda w: max(10, int(embedding_mb(w.dataset) / 20)),
    shell:
        "amips-bench cluster --keys {input.key_file} --out {params.out} --clusters {wildcards.clusters} "
        "--restarts {params.c[restarts]} --niter {params.c[niter]} --seed {params.c[seed]} "
        "--max-points-per-centroid {params.c[max_points_per_centroid]} --threads {threads} "
        "> {log} 2>&1"
