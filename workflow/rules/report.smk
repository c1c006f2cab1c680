# The reproduction report: the paper's claims and Table 1 beside ours, with provenance.


rule reproduction_report:
    input:
        unpack(lambda w: RUN.report_inputs() | {"code": REPORT_CODE}),
    output:
        md=RESULTS.report("reproduction.md"),
        html=report(
            RESULTS.report("reproduction.html"),
            caption="../report/reproduction.rst",
            category="Reproduction",
        ),
        claims=RESULTS.report("claims.csv"),
        provenance=RESULTS.report("provenance.json"),
    log:
        RESULTS.log("report"),
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        out=lambda w, output: folder(output.md),
        kinds=RUN.report_kinds(),
        config_hash=RUN.config_hash(),
        seeds=space_separated(config["seeds"]),
        table1=lambda w, input: f"--table1 {input.table1}" if input.table1 else "",
        leakage=lambda w: (
            f"--leakage {RUN.leakage_pairs()} --clean-test {paths(RUN.clean_test_files('json'))}"
            if RUN.leakage_pairs()
            else ""
        ),
        regime=RUN.regime_arguments(),
    shell:
        "amips-bench report --out {params.out} --metrics {input.metrics} "
        "--histories {input.histories} --routing {input.routing} --ivf {input.ivf} "
        "--ood {input.ood} {params.table1} --kinds {params.kinds} --figures {input.figures} "
        "--manifests {input.manifests} "
        "--config-hash {params.config_hash} --seeds {params.seeds} {params.leakage} {params.regime} "
        "> {log} 2>&1"
