# Figures (report() outputs with captions) and summary tables.


rule fig1_toy:
    input:
        code=figure_code("toy") + [str(PACKAGE / "toy.py")],
    output:
        pdf=f"{F}/fig1_toy.pdf",
        png=report(f"{F}/fig1_toy.png", caption="../report/fig1.rst", category="Figures"),
        csv=f"{F}/fig1_toy.csv",
    log:
        f"{R}/logs/figures/fig1_toy.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stem=lambda w, output: stem(output.pdf),
    shell:
        "amips-bench figure toy --out {params.stem} --threads {threads} > {log} 2>&1"


rule fig2_routing:
    input:
        csv=[f for ds in config["figures"]["routing"] for f in routing_csvs(ds)],
        code=figure_code("routing"),
    output:
        pdf=f"{F}/fig2_routing.pdf",
        png=report(f"{F}/fig2_routing.png", caption="../report/fig2.rst", category="Figures"),
        csv=f"{F}/fig2_routing.csv",
    log:
        f"{R}/logs/figures/fig2_routing.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stem=lambda w, output: stem(output.pdf),
    shell:
        "amips-bench figure routing --csv {input.csv} --out {params.stem} > {log} 2>&1"


rule fig3_erel_mrr:
    input:
        metrics=[f for ds in config["figures"]["erel_mrr"] for f in metrics_files(ds, clusters=1)],
        identity=identity_files(config["figures"]["erel_mrr"]),
        code=figure_code("erel_mrr"),
    output:
        pdf=f"{F}/fig3_erel_mrr.pdf",
        png=report(f"{F}/fig3_erel_mrr.png", caption="../report/fig3.rst", category="Figures"),
        csv=f"{F}/fig3_erel_mrr.csv",
    log:
        f"{R}/logs/figures/fig3_erel_mrr.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stem=lambda w, output: stem(output.pdf),
    shell:
        "amips-bench figure erel_mrr --metrics {input.metrics} {input.identity} "
        "--out {params.stem} > {log} 2>&1"


rule fig_ivf:
    input:
        csv=lambda w: ivf_csvs(w.dataset),
        code=figure_code("ivf"),
    output:
        pdf=f"{F}/fig{{number}}_ivf_{{dataset}}.pdf",
        png=report(
            f"{F}/fig{{number}}_ivf_{{dataset}}.png",
            caption="../report/fig4_6.rst",
            category="Figures",
        ),
        csv=f"{F}/fig{{number}}_ivf_{{dataset}}.csv",
    log:
        f"{R}/logs/figures/fig{{number}}_ivf_{{dataset}}.log",
    wildcard_constraints:
        number="[456]",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stem=lambda w, output: stem(output.pdf),
    shell:
        "amips-bench figure ivf --number {wildcards.number} --csv {input.csv} --out {params.stem} "
        "> {log} 2>&1"


rule fig7_ood:
    input:
        csv=ood_csv() if config["figures"]["ood"] else [],
        code=figure_code("ood"),
    output:
        pdf=f"{F}/fig7_ood.pdf",
        png=report(f"{F}/fig7_ood.png", caption="../report/fig7.rst", category="Figures"),
        csv=f"{F}/fig7_ood.csv",
    log:
        f"{R}/logs/figures/fig7_ood.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stem=lambda w, output: stem(output.pdf),
    shell:
        "amips-bench figure ood --csv {input.csv} --out {params.stem} > {log} 2>&1"


rule fig8_training:
    input:
        history=fig8_files("history.csv"),
        metrics=fig8_files("metrics.json"),
        code=figure_code("training"),
    output:
        pdf=f"{F}/fig8_training.pdf",
        png=report(f"{F}/fig8_training.png", caption="../report/fig8.rst", category="Figures"),
        csv=f"{F}/fig8_training.csv",
    log:
        f"{R}/logs/figures/fig8_training.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stem=lambda w, output: stem(output.pdf),
    shell:
        "amips-bench figure training --history {input.history} --metrics {input.metrics} "
        "--out {params.stem} > {log} 2>&1"


rule final_metrics_table:
    input:
        metrics=all_metrics() + identity_files(DATASETS),
        code=table_code(),
    output:
        csv=report(
            f"{R}/tables/final_metrics.csv",
            caption="../report/final_metrics.rst",
            category="Tables",
        ),
        md=f"{R}/tables/final_metrics.md",
    log:
        f"{R}/logs/tables/final_metrics.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stem=lambda w, output: stem(output.csv),
    shell:
        "amips-bench table final_metrics --inputs {input.metrics} --out {params.stem} > {log} 2>&1"


rule realism_table:
    input:
        manifests=[f"{R}/{ds}/embeddings/manifest.json" for ds in DATASETS],
        code=table_code(),
    output:
        csv=report(f"{R}/tables/realism.csv", caption="../report/realism.rst", category="Tables"),
        md=f"{R}/tables/realism.md",
    log:
        f"{R}/logs/tables/realism.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stem=lambda w, output: stem(output.csv),
    shell:
        "amips-bench table realism --inputs {input.manifests} --out {params.stem} > {log} 2>&1"
