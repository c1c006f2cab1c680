# Figures (report() outputs with captions) and summary tables. One rule per figure the config
# asks for, made from the figure registry (amips_bench.reporting.figures): its inputs, outputs,
# caption and arguments come from the registry entry, and every rule runs the same command,
# `amips-bench figure NAME ARGS`.

for figure in RUN.figures():

    rule:
        name:
            figure.stem
        input:
            **figure.inputs(RUN),
            code=figure.figure.code(PACKAGE),
        output:
            **figure_output(figure.stem, figure.figure.caption),
        log:
            RESULTS.log("figures", figure.stem),
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            figure=figure.figure.name,
            args=figure.args(RUN, figure.inputs(RUN)),
            stem=lambda w, output: stem(output.pdf),
        shell:
            "amips-bench figure {params.figure} {params.args} --out {params.stem} "
            "--threads {threads} > {log} 2>&1"


rule final_metrics_table:
    input:
        data=RUN.all_metrics() + RUN.identity_files(DATASETS),
        code=TABLE_CODE,
    output:
        csv=report(
            RESULTS.table("final_metrics", "csv"),
            caption="../report/final_metrics.rst",
            category="Tables",
        ),
        md=RESULTS.table("final_metrics", "md"),
    log:
        RESULTS.log("tables", "final_metrics"),
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
        data=[RUN.of(ds).embeddings_manifest for ds in DATASETS],
        code=TABLE_CODE,
    output:
        csv=report(
            RESULTS.table("realism", "csv"), caption="../report/realism.rst", category="Tables"
        ),
        md=RESULTS.table("realism", "md"),
    log:
        RESULTS.log("tables", "realism"),
    params:
        table="realism",
