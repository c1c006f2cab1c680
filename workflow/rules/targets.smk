# Exact per-cluster top-1 targets of every split (streamed; never an [N, n] matrix).


rule targets:
    input:
        unpack(targets_inputs),
    output:
        multiext(
            f"{R}/{{dataset}}/targets/c{{clusters}}/",
            "train_queries.npy",
            "train_top1.npy",
            "val_queries.npy",
            "val_top1.npy",
            "test_queries.npy",
            "test_top1.npy",
            "manifest.json",
        ),
    log:
        f"{R}/logs/{{dataset}}/targets_c{{clusters}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/targets_c{{clusters}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3, base=4000),
        runtime=lambda w: max(10, int(JOBS.embedding_mb(w.dataset) / 10)),
        gpu=config["gpu_per_job"],
    params:
        clusters_dir=lambda w: clusters_flag(w.dataset, w.clusters),
        embeddings=lambda w, input: str(Path(input.key_file).parent),
        splits=lambda w, input: str(Path(input.splits).parent),
        out=lambda w, output: str(Path(output[0]).parent),
        device=DEVICE,
        faiss_device=FAISS_DEVICE,
    shell:
        "amips-bench targets --embeddings {params.embeddings} --splits {params.splits} "
        "{params.clusters_dir} --clusters {wildcards.clusters} --out {params.out} "
        "--device {params.device} --faiss-device {params.faiss_device} --threads {threads} > {log} 2>&1"


rule identity:
    input:
        f"{R}/{{dataset}}/targets/c1/manifest.json",
    output:
        f"{R}/{{dataset}}/targets/c1/identity.json",
    log:
        f"{R}/logs/{{dataset}}/identity.log",
    conda:
        ENV
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 2),
        runtime=10,
    params:
        dataset_dir=lambda w, input: str(Path(input[0]).parent.parent.parent),
    shell:
        "amips-bench identity --dataset-dir {params.dataset_dir} --out {output} > {log} 2>&1"
