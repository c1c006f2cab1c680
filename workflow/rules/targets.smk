# Exact per-cluster top-1 targets of every split (streamed; never an [N, n] matrix).


def targets_inputs(wildcards):
    inputs = {
        "key_file": f"{R}/{wildcards.dataset}/embeddings/keys.npy",
        "queries": f"{R}/{wildcards.dataset}/embeddings/queries.npy",
        "splits": f"{R}/{wildcards.dataset}/splits/manifest.json",
    }
    if int(wildcards.clusters) > 1:
        inputs["assignments"] = f"{R}/{wildcards.dataset}/clusters/c{wildcards.clusters}/assignments.npy"
    return inputs


rule targets:
    input:
        unpack(targets_inputs),
    output:
        multiext(f"{R}/{{dataset}}/targets/c{{clusters}}/", "train_queries.npy", "train_top1.npy",
                 "val_queries.npy", "val_top1.npy", "test_queries.npy", "test_top1.npy",
                 "manifest.json"),
    params:
        clusters_dir=lambda w: (f"--clusters-dir {R}/{w.dataset}/clusters/c{w.clusters}"
                                if int(w.clusters) > 1 else ""),
        out=lambda w: f"{R}/{w.dataset}/targets/c{w.clusters}",
    log:
        f"{R}/logs/{{dataset}}/targets_c{{clusters}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/targets_c{{clusters}}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 3, base=4000),
        runtime=lambda w: max(10, int(embedding_mb(w.dataset) / 10)),
        gpu=config["gpu_per_job"],
    shell:
        "amips-bench targets --embeddings {R}/{wildcards.dataset}/embeddings "
        "--splits {R}/{wildcards.dataset}/splits {params.clusters_dir} "
        "--clusters {wildcards.clusters} --out {params.out} --device {config[device]} "
        "--threads {threads} > {log} 2>&1"
