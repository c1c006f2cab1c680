# Approximate search with predicted keys (Figures 4-6) and under query noise (Figure 7).


rule index:
    input:
        key_file=DATASET_FILES.keys,
    output:
        ivf=DATASET_FILES.ivf_index,
        manifest=DATASET_FILES.index_manifest,
    log:
        RESULTS.log("{dataset}", "index"),
    benchmark:
        RESULTS.benchmark("{dataset}", "index")
    wildcard_constraints:
        dataset=either(DATASETS, but=RUN.ivf_twins),
    conda:
        ENV
    threads: config["threads"]
    resources:
        # the index holds a copy of the keys; they are added from the mapped file a chunk at a
        # time (10.7 GB of process memory at 5.2M keys, 8 GB of keys)
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 2),
        runtime=lambda w: max(10, int(JOBS.embedding_mb(w.dataset) / 5)),
    params:
        # only the keys that shape the index: a new nprobe or efSearch re-runs the sweeps, not this
        nlist=lambda w: DATASETS[w.dataset]["ivf"]["nlist"],
        out=lambda w, output: folder(output.manifest),
        variant=JOBS.ivf_build_flags(*PAPER_IVF_SETUP),
        faiss_device=FAISS_DEVICE,
    shell:
        "amips-bench index --keys {input.key_file} --out {params.out} --nlist {params.nlist} "
        "{params.variant} --faiss-device {params.faiss_device} --threads {threads} > {log} 2>&1"


# the other (quantizer, nlist multiple) pairs of ivf.quantizers x ivf.nlist_multiples, a job
# each: built in parallel on a cluster, a killed build loses one index, and a sweep that runs
# builds a missing one
use rule index as ivf_variant with:
    output:
        ivf=DATASET_FILES.ivf_variant("{quantizer}", "{multiple}", "faiss"),
        manifest=DATASET_FILES.ivf_variant("{quantizer}", "{multiple}", "json"),
    log:
        RESULTS.log("{dataset}", "index_{quantizer}_x{multiple}"),
    benchmark:
        RESULTS.benchmark("{dataset}", "index_{quantizer}_x{multiple}")
    params:
        variant=lambda w: JOBS.ivf_build_flags(w.quantizer, w.multiple),


# only datasets with an efSearch sweep ask for it (hnsw_inputs)
rule hnsw_index:
    input:
        key_file=DATASET_FILES.keys,
    output:
        index=DATASET_FILES.hnsw_index,
        manifest=DATASET_FILES.hnsw_manifest,
    log:
        RESULTS.log("{dataset}", "hnsw_index"),
    benchmark:
        RESULTS.benchmark("{dataset}", "hnsw_index")
    wildcard_constraints:
        dataset=either(DATASETS, but=RUN.hnsw_twins),
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 4),
        runtime=lambda w: max(10, int(JOBS.embedding_mb(w.dataset) / 2)),
    params:
        m=lambda w: DATASETS[w.dataset]["ivf"]["hnsw_m"],
        ef_construction=lambda w: DATASETS[w.dataset]["ivf"]["hnsw_ef_construction"],
        out=lambda w, output: folder(output.manifest),
    shell:
        "amips-bench hnsw-index --keys {input.key_file} --out {params.out} --m {params.m} "
        "--ef-construction {params.ef_construction} --threads {threads} > {log} 2>&1"


# a dataset with the keys and the index settings of an earlier one links to its index files,
# a file a job (IVF_TWINS, HNSW_TWINS): the twin builds what is asked of it, variants included
rule shared_ivf:
    input:
        lambda w: RUN.of(RUN.ivf_twins[w.dataset]).index_file(w.file),
    output:
        DATASET_FILES.index_file("{file}"),
    log:
        RESULTS.log("{dataset}", "shared_index_{file}"),
    wildcard_constraints:
        dataset=either(RUN.ivf_twins),
        file=r"(manifest|ivf[A-Za-z0-9_.+-]*)\.(faiss|json)",
    localrule: True
    conda:
        ENV
    params:
        out=lambda w, output: folder(output[0]),
    shell:
        "amips-bench share {input} --out {params.out} > {log} 2>&1"


use rule shared_ivf as shared_hnsw with:
    input:
        lambda w: RUN.of(RUN.hnsw_twins[w.dataset]).index_file(w.file),
    wildcard_constraints:
        dataset=either(RUN.hnsw_twins),
        file=r"hnsw\.(faiss|json)",


rule ivf_natural:
    input:
        index=DATASET_FILES.index_manifest,
        indexes=lambda w: RUN.ivf_index_files(w.dataset),
        targets=DATASET_FILES.targets_manifest(1),
        hnsw=lambda w: RUN.hnsw_inputs(w.dataset),
    output:
        csv=DATASET_FILES.ivf_csv("natural"),
        questions=DATASET_FILES.questions_beside(DATASET_FILES.ivf_csv("natural")),
    log:
        RESULTS.log("{dataset}", "ivf", "natural"),
    benchmark:
        RESULTS.benchmark("{dataset}", "ivf", "natural")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3),
        runtime=30,
    params:
        stage="ivf",
        flags=lambda w: JOBS.ivf_flags(w.dataset),
        sweep=lambda w: JOBS.ivf_sweep(w.dataset),
        model="",
        dataset_dir=lambda w: str(RUN.of(w.dataset).root),
        index_dir=lambda w, input: folder(input.index),
        device=DEVICE,
        faiss_device=FAISS_DEVICE,
    shell:
        "amips-bench {params.stage} --dataset-dir {params.dataset_dir} "
        "--index-dir {params.index_dir} {params.flags} {params.sweep} {params.model} "
        "--out {output.csv} --device {params.device} --faiss-device {params.faiss_device} "
        "--threads {threads} > {log} 2>&1"


use rule ivf_natural as ivf_mapped with:
    input:
        index=DATASET_FILES.index_manifest,
        indexes=lambda w: RUN.ivf_index_files(w.dataset),
        targets=DATASET_FILES.targets_manifest(1),
        hnsw=lambda w: RUN.hnsw_inputs(w.dataset),
        model=DATASET_FILES.model("{run}"),
    output:
        csv=DATASET_FILES.ivf_csv("{run}"),
        questions=DATASET_FILES.questions_beside(DATASET_FILES.ivf_csv("{run}")),
    log:
        RESULTS.log("{dataset}", "ivf", "{run}"),
    benchmark:
        RESULTS.benchmark("{dataset}", "ivf", "{run}")
    params:
        model=lambda w, input: f"--model {input.model}",


use rule ivf_mapped as ood with:
    input:
        index=DATASET_FILES.index_manifest,
        ivf=DATASET_FILES.ivf_index,
        targets=DATASET_FILES.targets_manifest(1),
        model=DATASET_FILES.model("{run}"),
    output:
        csv=DATASET_FILES.ood_csv("{run}"),
        questions=DATASET_FILES.questions_beside(DATASET_FILES.ood_csv("{run}")),
    log:
        RESULTS.log("{dataset}", "ood", "{run}"),
    benchmark:
        RESULTS.benchmark("{dataset}", "ood", "{run}")
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3),
        runtime=60,
    params:
        stage="ood",
        sweep=lambda w: f"--stds {space_separated(DATASETS[w.dataset]['ood']['stds'])}",


# the leakage study's third arm: an official-split model on the test questions of its leak-free
# twin, which the official split held out whole (which of them are clean is computed from the splits)
rule clean_test:
    input:
        model=DATASET_FILES.model("{run}"),
        splits=DATASET_FILES.splits_manifest,
        twin_splits=lambda w: RUN.of(RUN.leak_free_twin[w.dataset]).splits_manifest,
        twin_targets=lambda w: RUN.of(RUN.leak_free_twin[w.dataset]).targets_manifest(1),
        ivf=lambda w: RUN.of(RUN.leak_free_twin[w.dataset]).ivf_index,
    output:
        json=DATASET_FILES.clean_test("{run}", "json"),
        csv=DATASET_FILES.clean_test("{run}", "csv"),
        questions=DATASET_FILES.questions_beside(DATASET_FILES.clean_test("{run}", "csv")),
    log:
        RESULTS.log("{dataset}", "clean_test", "{run}"),
    benchmark:
        RESULTS.benchmark("{dataset}", "clean_test", "{run}")
    wildcard_constraints:
        dataset=either(RUN.leak_free_twin),
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3),
        runtime=30,
    params:
        flags=lambda w: f"{JOBS.ivf_flags(w.dataset)} --ivf-models {space_separated(DATASETS[w.dataset]['ivf']['models'])}",
        official_dir=lambda w: str(RUN.of(w.dataset).root),
        twin_dir=lambda w: str(RUN.of(RUN.leak_free_twin[w.dataset]).root),
        index_dir=lambda w, input: folder(input.ivf),
        device=DEVICE,
        faiss_device=FAISS_DEVICE,
    shell:
        "amips-bench clean-test --official-dir {params.official_dir} --leak-free-dir {params.twin_dir} "
        "--index-dir {params.index_dir} --model {input.model} {params.flags} "
        "--out-json {output.json} --out-csv {output.csv} --device {params.device} "
        "--faiss-device {params.faiss_device} --threads {threads} > {log} 2>&1"
