# Approximate search with predicted keys (Figures 4-6) and under query noise (Figure 7).


def ivf_runs(dataset):
    models = DATASETS[dataset]["ivf"]["models"]
    return [r for r in RUNS[dataset] if r.clusters == 1 and r.model in models]


def ivf_csvs(dataset):
    return [f"{R}/{dataset}/ivf/natural.csv"] + [
        f"{R}/{dataset}/ivf/{r.name}.csv" for r in ivf_runs(dataset)
    ]


def ivf_flags(dataset):
    v = DATASETS[dataset]["ivf"]
    return (
        f"--nprobe {' '.join(map(str, v['nprobe']))} "
        f"--recall-at {' '.join(map(str, v['recall_at']))}"
    )


rule index:
    input:
        key_file=f"{R}/{{dataset}}/embeddings/keys.npy",
    output:
        ivf=f"{R}/{{dataset}}/index/ivf.faiss",
        hnsw=f"{R}/{{dataset}}/index/hnsw.faiss",
        manifest=f"{R}/{{dataset}}/index/manifest.json",
    params:
        v=lambda w: DATASETS[w.dataset]["ivf"],
        out=lambda w: f"{R}/{w.dataset}/index",
    log:
        f"{R}/logs/{{dataset}}/index.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/index.tsv"
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 4),
        runtime=lambda w: max(10, int(embedding_mb(w.dataset) / 5)),
    shell:
        "amips-bench index --keys {input.key_file} --out {params.out} --nlist {params.v[nlist]} "
        "--hnsw-m {params.v[hnsw_m]} --hnsw-ef-construction {params.v[hnsw_ef_construction]} "
        "--threads {threads} > {log} 2>&1"


rule ivf_natural:
    input:
        index=f"{R}/{{dataset}}/index/manifest.json",
        targets=f"{R}/{{dataset}}/targets/c1/manifest.json",
    output:
        f"{R}/{{dataset}}/ivf/natural.csv",
    params:
        flags=lambda w: ivf_flags(w.dataset),
        ef=lambda w: " ".join(map(str, DATASETS[w.dataset]["ivf"]["hnsw_ef_search"])),
    log:
        f"{R}/logs/{{dataset}}/ivf/natural.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/ivf/natural.tsv"
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 3),
        runtime=30,
    shell:
        "amips-bench ivf --dataset-dir {R}/{wildcards.dataset} --index-dir {R}/{wildcards.dataset}/index "
        "{params.flags} --ef-search {params.ef} --out {output} --device {config[device]} "
        "--threads {threads} > {log} 2>&1"


rule ivf_mapped:
    input:
        index=f"{R}/{{dataset}}/index/manifest.json",
        targets=f"{R}/{{dataset}}/targets/c1/manifest.json",
        model=f"{R}/{{dataset}}/models/{{run}}/model.pt",
    output:
        f"{R}/{{dataset}}/ivf/{{run}}.csv",
    params:
        flags=lambda w: ivf_flags(w.dataset),
        ef=lambda w: " ".join(map(str, DATASETS[w.dataset]["ivf"]["hnsw_ef_search"])),
    log:
        f"{R}/logs/{{dataset}}/ivf/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/ivf/{{run}}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 3),
        runtime=30,
    shell:
        "amips-bench ivf --dataset-dir {R}/{wildcards.dataset} --index-dir {R}/{wildcards.dataset}/index "
        "{params.flags} --ef-search {params.ef} --model {input.model} --out {output} "
        "--device {config[device]} --threads {threads} > {log} 2>&1"


rule ood:
    input:
        index=f"{R}/{{dataset}}/index/manifest.json",
        targets=f"{R}/{{dataset}}/targets/c1/manifest.json",
        model=f"{R}/{{dataset}}/models/{{run}}/model.pt",
    output:
        f"{R}/{{dataset}}/ood/{{run}}.csv",
    params:
        flags=lambda w: ivf_flags(w.dataset),
        stds=lambda w: " ".join(map(str, DATASETS[w.dataset]["ood"]["stds"])),
    log:
        f"{R}/logs/{{dataset}}/ood/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/ood/{{run}}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=lambda w: mem_mb(w.dataset, 3),
        runtime=60,
    shell:
        "amips-bench ood --dataset-dir {R}/{wildcards.dataset} --index-dir {R}/{wildcards.dataset}/index "
        "{params.flags} --stds {params.stds} --model {input.model} --out {output} "
        "--device {config[device]} --threads {threads} > {log} 2>&1"


rule fig_ivf:
    input:
        lambda w: ivf_csvs(w.dataset),
    output:
        pdf=f"{F}/fig{{number}}_ivf_{{dataset}}.pdf",
        png=report(f"{F}/fig{{number}}_ivf_{{dataset}}.png", caption="../report/fig4_6.rst", category="Figures"),
        csv=f"{F}/fig{{number}}_ivf_{{dataset}}.csv",
    wildcard_constraints:
        number="[456]",
    params:
        stem=lambda w: f"{F}/fig{w.number}_ivf_{w.dataset}",
    log:
        f"{R}/logs/figures/fig{{number}}_ivf_{{dataset}}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "amips-bench figure ivf --number {wildcards.number} --csv {input} --out {params.stem} > {log} 2>&1"


rule fig7_ood:
    input:
        lambda w: f"{R}/{config['figures']['ood']}/ood/{ood_run(config, config['figures']['ood']).name}.csv",
    output:
        pdf=f"{F}/fig7_ood.pdf",
        png=report(f"{F}/fig7_ood.png", caption="../report/fig7.rst", category="Figures"),
        csv=f"{F}/fig7_ood.csv",
    params:
        stem=f"{F}/fig7_ood",
    log:
        f"{R}/logs/figures/fig7_ood.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "amips-bench figure ood --csv {input} --out {params.stem} > {log} 2>&1"
