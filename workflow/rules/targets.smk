# Exact per-cluster top-1 targets of every split (streamed; never an [N, n] matrix).


rule targets:
    input:
        unpack(lambda w: RUN.targets_inputs(w.dataset, w.clusters)),
    output:
        multiext(
            f"{DATASET_FILES.targets('{clusters}')}/",
            "train_queries.npy",
            "train_top1.npy",
            "val_queries.npy",
            "val_top1.npy",
            "test_queries.npy",
            "test_top1.npy",
            "manifest.json",
        ),
    log:
        RESULTS.log("{dataset}", "targets_c{clusters}"),
    benchmark:
        RESULTS.benchmark("{dataset}", "targets_c{clusters}")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3, base=4000),
        runtime=lambda w: max(10, int(JOBS.embedding_mb(w.dataset) / 10)),
        gpu=config["gpu_per_job"],
    params:
        clusters_dir=lambda w: RUN.targets_flags(w.dataset, w.clusters),
        embeddings=lambda w, input: folder(input.key_file),
        splits=lambda w, input: folder(input.splits),
        out=lambda w, output: folder(output[0]),
        device=DEVICE,
        faiss_device=FAISS_DEVICE,
        precision=config["targets"]["precision"],
    shell:
        "amips-bench targets --embeddings {params.embeddings} --splits {params.splits} "
        "{params.clusters_dir} --clusters {wildcards.clusters} --out {params.out} "
        "--precision {params.precision} --device {params.device} "
        "--faiss-device {params.faiss_device} --threads {threads} > {log} 2>&1"


rule identity:
    input:
        DATASET_FILES.targets_manifest(1),
    output:
        DATASET_FILES.identity,
    log:
        RESULTS.log("{dataset}", "identity"),
    conda:
        ENV
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 2),
        runtime=10,
    params:
        dataset_dir=lambda w: str(RUN.of(w.dataset).root),
    shell:
        "amips-bench identity --dataset-dir {params.dataset_dir} --out {output} > {log} 2>&1"
