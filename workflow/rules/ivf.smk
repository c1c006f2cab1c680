# Approximate search with predicted keys (Figures 4-6) and under query noise (Figure 7).


rule index:
    input:
        key_file=f"{R}/{{dataset}}/embeddings/keys.npy",
    output:
        ivf=f"{R}/{{dataset}}/index/ivf.faiss",
        manifest=f"{R}/{{dataset}}/index/manifest.json",
    log:
        f"{R}/logs/{{dataset}}/index.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/index.tsv"
    wildcard_constraints:
        dataset=either(DATASETS, but=IVF_TWINS),
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
        out=lambda w, output: str(Path(output.manifest).parent),
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
        ivf=f"{R}/{{dataset}}/index/ivf_{{quantizer}}_x{{multiple}}.faiss",
        manifest=f"{R}/{{dataset}}/index/ivf_{{quantizer}}_x{{multiple}}.json",
    log:
        f"{R}/logs/{{dataset}}/index_{{quantizer}}_x{{multiple}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/index_{{quantizer}}_x{{multiple}}.tsv"
    params:
        variant=lambda w: JOBS.ivf_build_flags(w.quantizer, w.multiple),


# only datasets with an efSearch sweep ask for it (hnsw_inputs)
rule hnsw_index:
    input:
        key_file=f"{R}/{{dataset}}/embeddings/keys.npy",
    output:
        index=f"{R}/{{dataset}}/index/hnsw.faiss",
        manifest=f"{R}/{{dataset}}/index/hnsw.json",
    log:
        f"{R}/logs/{{dataset}}/hnsw_index.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/hnsw_index.tsv"
    wildcard_constraints:
        dataset=either(DATASETS, but=HNSW_TWINS),
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 4),
        runtime=lambda w: max(10, int(JOBS.embedding_mb(w.dataset) / 2)),
    params:
        m=lambda w: DATASETS[w.dataset]["ivf"]["hnsw_m"],
        ef_construction=lambda w: DATASETS[w.dataset]["ivf"]["hnsw_ef_construction"],
        out=lambda w, output: str(Path(output.manifest).parent),
    shell:
        "amips-bench hnsw-index --keys {input.key_file} --out {params.out} --m {params.m} "
        "--ef-construction {params.ef_construction} --threads {threads} > {log} 2>&1"


# a dataset with the keys and the index settings of an earlier one links to its index files,
# a file a job (IVF_TWINS, HNSW_TWINS): the twin builds what is asked of it, variants included
rule shared_ivf:
    input:
        lambda w: f"{R}/{IVF_TWINS[w.dataset]}/index/{w.file}",
    output:
        f"{R}/{{dataset}}/index/{{file}}",
    log:
        f"{R}/logs/{{dataset}}/shared_index_{{file}}.log",
    wildcard_constraints:
        dataset=either(IVF_TWINS),
        file=r"(manifest|ivf[A-Za-z0-9_.+-]*)\.(faiss|json)",
    localrule: True
    conda:
        ENV
    params:
        out=lambda w, output: str(Path(output[0]).parent),
    shell:
        "amips-bench share {input} --out {params.out} > {log} 2>&1"


use rule shared_ivf as shared_hnsw with:
    input:
        lambda w: f"{R}/{HNSW_TWINS[w.dataset]}/index/{w.file}",
    wildcard_constraints:
        dataset=either(HNSW_TWINS),
        file=r"hnsw\.(faiss|json)",


rule ivf_natural:
    input:
        index=f"{R}/{{dataset}}/index/manifest.json",
        indexes=lambda w: ivf_index_files(w.dataset),
        targets=f"{R}/{{dataset}}/targets/c1/manifest.json",
        hnsw=lambda w: hnsw_inputs(w.dataset),
    output:
        f"{R}/{{dataset}}/ivf/natural.csv",
    log:
        f"{R}/logs/{{dataset}}/ivf/natural.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/ivf/natural.tsv"
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
        dataset_dir=lambda w, input: str(Path(input.index).parent.parent),
        index_dir=lambda w, input: str(Path(input.index).parent),
        device=DEVICE,
        faiss_device=FAISS_DEVICE,
    shell:
        "amips-bench {params.stage} --dataset-dir {params.dataset_dir} "
        "--index-dir {params.index_dir} {params.flags} {params.sweep} {params.model} "
        "--out {output} --device {params.device} --faiss-device {params.faiss_device} "
        "--threads {threads} > {log} 2>&1"


use rule ivf_natural as ivf_mapped with:
    input:
        index=f"{R}/{{dataset}}/index/manifest.json",
        indexes=lambda w: ivf_index_files(w.dataset),
        targets=f"{R}/{{dataset}}/targets/c1/manifest.json",
        hnsw=lambda w: hnsw_inputs(w.dataset),
        model=f"{R}/{{dataset}}/models/{{run}}/model.pt",
    output:
        f"{R}/{{dataset}}/ivf/{{run}}.csv",
    log:
        f"{R}/logs/{{dataset}}/ivf/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/ivf/{{run}}.tsv"
    params:
        model=lambda w, input: f"--model {input.model}",


use rule ivf_mapped as ood with:
    input:
        index=f"{R}/{{dataset}}/index/manifest.json",
        ivf=f"{R}/{{dataset}}/index/ivf.faiss",
        targets=f"{R}/{{dataset}}/targets/c1/manifest.json",
        model=f"{R}/{{dataset}}/models/{{run}}/model.pt",
    output:
        f"{R}/{{dataset}}/ood/{{run}}.csv",
    log:
        f"{R}/logs/{{dataset}}/ood/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/ood/{{run}}.tsv"
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3),
        runtime=60,
    params:
        stage="ood",
        sweep=lambda w: f"--stds {words(DATASETS[w.dataset]['ood']['stds'])}",


# the leakage study's third arm: a paper-split model on the test questions of its leak-free
# twin, which the paper split held out whole (which of them are clean is computed from the splits)
rule clean_test:
    input:
        model=f"{R}/{{dataset}}/models/{{run}}/model.pt",
        splits=f"{R}/{{dataset}}/splits/manifest.json",
        twin_splits=lambda w: f"{R}/{LEAK_FREE_TWIN[w.dataset]}/splits/manifest.json",
        twin_targets=lambda w: f"{R}/{LEAK_FREE_TWIN[w.dataset]}/targets/c1/manifest.json",
        ivf=lambda w: f"{R}/{LEAK_FREE_TWIN[w.dataset]}/index/ivf.faiss",
    output:
        json=f"{R}/{{dataset}}/clean_test/{{run}}.json",
        csv=f"{R}/{{dataset}}/clean_test/{{run}}.csv",
    log:
        f"{R}/logs/{{dataset}}/clean_test/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/clean_test/{{run}}.tsv"
    wildcard_constraints:
        dataset=either(LEAK_FREE_TWIN),
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.mem_mb(w.dataset, 3),
        runtime=30,
    params:
        flags=lambda w: f"{JOBS.ivf_flags(w.dataset)} --ivf-models {words(DATASETS[w.dataset]['ivf']['models'])}",
        paper_dir=lambda w, input: str(Path(input.splits).parent.parent),
        twin_dir=lambda w, input: str(Path(input.twin_splits).parent.parent),
        index_dir=lambda w, input: str(Path(input.ivf).parent),
        device=DEVICE,
        faiss_device=FAISS_DEVICE,
    shell:
        "amips-bench clean-test --paper-dir {params.paper_dir} --leak-free-dir {params.twin_dir} "
        "--index-dir {params.index_dir} --model {input.model} {params.flags} "
        "--out-json {output.json} --out-csv {output.csv} --device {params.device} "
        "--faiss-device {params.faiss_device} --threads {threads} > {log} 2>&1"
