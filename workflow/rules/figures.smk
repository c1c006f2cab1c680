# Figures (report() outputs with captions) and summary tables. Every figure rule runs the same
# command, `amips-bench figure NAME ARGS`: fig1_toy is the pattern, the others change its
# inputs, outputs, arguments and log.


rule fig1_toy:
    input:
        code=figure_code("toy"),
    output:
        **figure_output("fig1_toy", "fig1.rst"),
    log:
        f"{R}/logs/figures/fig1_toy.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="toy",
        args="",
        stem=lambda w, output: stem(output.pdf),
    shell:
        "amips-bench figure {params.figure} {params.args} --out {params.stem} "
        "--threads {threads} > {log} 2>&1"


use rule fig1_toy as fig2_routing with:
    input:
        csv=[f for ds in config["figures"]["routing"] for f in routing_csvs(ds)],
        code=figure_code("routing"),
    output:
        **figure_output("fig2_routing", "fig2.rst"),
    log:
        f"{R}/logs/figures/fig2_routing.log",
    params:
        figure="routing",
        args=lambda w, input: f"--csv {paths(input.csv)}",


use rule fig1_toy as fig3_erel_mrr with:
    input:
        metrics=[f for ds in config["figures"]["erel_mrr"] for f in metrics_files(ds, clusters=1)],
        identity=identity_files(config["figures"]["erel_mrr"]),
        code=figure_code("erel_mrr"),
    output:
        **figure_output("fig3_erel_mrr", "fig3.rst"),
    log:
        f"{R}/logs/figures/fig3_erel_mrr.log",
    params:
        figure="erel_mrr",
        args=lambda w, input: f"--metrics {paths(input.metrics, input.identity)}",


use rule fig1_toy as fig_ivf with:
    input:
        csv=lambda w: ivf_csvs(w.dataset),
        code=figure_code("ivf"),
    output:
        **figure_output("fig{number}_ivf_{dataset}", "fig4_6.rst"),
    log:
        f"{R}/logs/figures/fig{{number}}_ivf_{{dataset}}.log",
    wildcard_constraints:
        number="[456]",
    params:
        figure="ivf",
        args=lambda w, input: f"--number {w.number} --csv {paths(input.csv)}",


use rule fig1_toy as fig7_ood with:
    input:
        csv=ood_csv() if config["figures"]["ood"] else [],
        code=figure_code("ood"),
    output:
        **figure_output("fig7_ood", "fig7.rst"),
    log:
        f"{R}/logs/figures/fig7_ood.log",
    params:
        figure="ood",
        args=lambda w, input: f"--csv {paths(input.csv)}",


use rule fig1_toy as fig8_training with:
    input:
        history=fig8_files("history.csv"),
        metrics=fig8_files("metrics.json"),
        code=figure_code("training"),
    output:
        **figure_output("fig8_training", "fig8.rst"),
    log:
        f"{R}/logs/figures/fig8_training.log",
    params:
        figure="training",
        args=lambda w, input: f"--history {paths(input.history)} --metrics {paths(input.metrics)}",


use rule fig1_toy as fig9_leakage with:
    input:
        metrics=leakage_files(metrics_files, clusters=1),
        csv=leakage_files(ivf_csvs),
        clean=clean_test_files("json") + clean_test_files("csv"),
        code=figure_code("leakage"),
    output:
        **figure_output("fig9_leakage", "fig9.rst"),
    log:
        f"{R}/logs/figures/fig9_leakage.log",
    params:
        figure="leakage",
        args=lambda w, input: f"--pairs {leakage_pairs()} --metrics {paths(input.metrics)} "
        f"--csv {paths(input.csv)} --clean-test {paths(clean_test_files('json'))}",


rule final_metrics_table:
    input:
        data=all_metrics() + identity_files(DATASETS),
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
        table="final_metrics",
        stem=lambda w, output: stem(output.csv),
    shell:
        "amips-bench table {params.table} --inputs {input.data} --out {params.stem} > {log} 2>&1"


use rule final_metrics_table as realism_table with:
    input:
        data=[f"{R}/{ds}/embeddings/manifest.json" for ds in DATASETS],
        code=table_code(),
    output:
        csv=report(f"{R}/tables/realism.csv", caption="../report/realism.rst", category="Tables"),
        md=f"{R}/tables/realism.md",
    log:
        f"{R}/logs/tables/realism.log",
    params:
        table="realism",
