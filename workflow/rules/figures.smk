# Figures (report() outputs with captions) and summary tables.


rule fig1_toy:
    output:
        pdf=f"{F}/fig1_toy.pdf",
        png=report(f"{F}/fig1_toy.png", caption="../report/fig1.rst", category="Figures"),
        csv=f"{F}/fig1_toy.csv",
    params:
        stem=f"{F}/fig1_toy",
    log:
        f"{R}/logs/figures/fig1_toy.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "amips-bench figure toy --out {params.stem} --threads {threads} > {log} 2>&1"


rule fig3_erel_mrr:
    input:
        metrics=lambda w: [f for ds in config["figures"]["erel_mrr"] for f in metrics_files(ds, clusters=1)],
    output:
        pdf=f"{F}/fig3_erel_mrr.pdf",
        png=report(f"{F}/fig3_erel_mrr.png", caption="../report/fig3.rst", category="Figures"),
        csv=f"{F}/fig3_erel_mrr.csv",
    params:
        stem=f"{F}/fig3_erel_mrr",
    log:
        f"{R}/logs/figures/fig3_erel_mrr.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "amips-bench figure erel_mrr --metrics {input.metrics} --out {params.stem} > {log} 2>&1"


def fig8_runs():
    ds = config["figures"]["training"]
    return runs_where(ds, model=config["figures"]["training_model"], clusters=1) if ds else []


rule fig8_training:
    input:
        history=lambda w: [f"{model_dir(config['figures']['training'], r.name)}/history.csv" for r in fig8_runs()],
        metrics=lambda w: [f"{model_dir(config['figures']['training'], r.name)}/metrics.json" for r in fig8_runs()],
    output:
        pdf=f"{F}/fig8_training.pdf",
        png=report(f"{F}/fig8_training.png", caption="../report/fig8.rst", category="Figures"),
        csv=f"{F}/fig8_training.csv",
    params:
        stem=f"{F}/fig8_training",
    log:
        f"{R}/logs/figures/fig8_training.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "amips-bench figure training --history {input.history} --metrics {input.metrics} "
        "--out {params.stem} > {log} 2>&1"


rule final_metrics_table:
    input:
        all_metrics(),
    output:
        csv=report(f"{R}/tables/final_metrics.csv", caption="../report/final_metrics.rst", category="Tables"),
        md=f"{R}/tables/final_metrics.md",
    params:
        stem=f"{R}/tables/final_metrics",
    log:
        f"{R}/logs/tables/final_metrics.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "amips-bench table final_metrics --inputs {input} --out {params.stem} > {log} 2>&1"


rule realism_table:
    input:
        [f"{R}/{ds}/embeddings/manifest.json" for ds in DATASETS],
    output:
        csv=report(f"{R}/tables/realism.csv", caption="../report/realism.rst", category="Tables"),
        md=f"{R}/tables/realism.md",
    params:
        stem=f"{R}/tables/realism",
    log:
        f"{R}/logs/tables/realism.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "amips-bench table realism --inputs {input} --out {params.stem} > {log} 2>&1"
