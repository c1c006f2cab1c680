# Comparing runs: every figure's curves against the baseline run's, at equal cost, within seed
# noise; and freezing this run's tidy results as the reference of later comparisons.


rule compare_runs:
    input:
        unpack(lambda w: RUN.compared_this_run() | {"code": COMPARE_CODE} | this_provenance()),
    output:
        md=RESULTS.compare("summary.md"),
        html=report(
            RESULTS.compare("summary.html"),
            caption="../report/compare.rst",
            category="Comparison",
        ),
        csv=RESULTS.compare("differences.csv"),
    log:
        RESULTS.log("compare"),
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        runs=RUN.compare_runs_flag(),
        c=config["compare"],
        out=lambda w, output: folder(output.md),
        figures=RESULTS.compare_figures,
    shell:
        "amips-bench compare --run {params.runs} --baseline {params.c[baseline]} "
        "--out {params.out} --figures {params.figures} --seed-factor {params.c[seed_factor]} "
        "--floor {params.c[floor]} --absolute {params.c[absolute]} > {log} 2>&1"


rule compare_gate:
    # a separate job, so that a failing gate keeps the summary it judged
    input:
        rules.compare_runs.output.csv,
    output:
        RESULTS.compare("gate.txt"),
    log:
        RESULTS.log("compare_gate"),
    conda:
        ENV
    params:
        c=config["compare"],
        fail_on=" ".join(config["compare"]["fail_on"]),
    shell:
        "amips-bench compare-gate --differences {input} --baseline {params.c[baseline]} "
        "--fail-on {params.fail_on} --out {output} > {log} 2>&1 || "
        "(tail -n 30 {log} >&2; exit 1)"


rule freeze_reference:
    input:
        figures=RUN.figure_outputs(),
        tables=RUN.table_outputs(),
        report=rules.reproduction_report.output,
        report_md=rules.reproduction_report.output.md,
    output:
        reference_provenance(RUN.reference_folder()),
    log:
        RESULTS.log("freeze_reference"),
    conda:
        ENV
    params:
        results=lambda w, input: folder(folder(input.report_md)),
        out=lambda w, output: folder(output[0]),
        command=" ".join(["snakemake"] + sys.argv[1:]),
        config=json.dumps(config, default=str),
    shell:
        "amips-bench freeze-reference --results {params.results} --out {params.out} "
        "--made-by {params.command:q} --config-json {params.config:q} > {log} 2>&1"
