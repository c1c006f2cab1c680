# Comparing runs: every figure's curves against the baseline run's, at equal cost, within seed
# noise; and freezing this run's tidy results as the reference of later comparisons.


rule compare_runs:
    input:
        unpack(compare_inputs),
    output:
        md=f"{R}/compare/summary.md",
        html=report(
            f"{R}/compare/summary.html",
            caption="../report/compare.rst",
            category="Comparison",
        ),
        csv=f"{R}/compare/differences.csv",
    log:
        f"{R}/logs/compare.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        runs=compare_runs_flag(),
        c=config["compare"],
        out=lambda w, output: str(Path(output.md).parent),
        figures=f"{F}/compare",
    shell:
        "amips-bench compare --run {params.runs} --baseline {params.c[baseline]} "
        "--out {params.out} --figures {params.figures} --seed-factor {params.c[seed_factor]} "
        "--floor {params.c[floor]} --absolute {params.c[absolute]} > {log} 2>&1"


rule compare_gate:
    # a separate job, so that a failing gate keeps the summary it judged
    input:
        rules.compare_runs.output.csv,
    output:
        f"{R}/compare/gate.txt",
    log:
        f"{R}/logs/compare_gate.log",
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
        figures=figure_outputs(),
        tables=table_outputs(),
        report=rules.reproduction_report.output,
        report_md=rules.reproduction_report.output.md,
    output:
        f"{reference_folder()}/provenance.json",
    log:
        f"{R}/logs/freeze_reference.log",
    conda:
        ENV
    params:
        results=lambda w, input: str(Path(input.report_md).parent.parent),
        out=lambda w, output: str(Path(output[0]).parent),
        command=" ".join(["snakemake"] + sys.argv[1:]),
        config=json.dumps(config, default=str),
    shell:
        "amips-bench freeze-reference --results {params.results} --out {params.out} "
        "--made-by {params.command:q} --config-json {params.config:q} > {log} 2>&1"
