# The reproduction report: the paper's claims and Table 1 beside ours, with provenance.


rule reproduction_report:
    input:
        unpack(report_inputs),
    output:
        md=f"{R}/report/reproduction.md",
        html=report(
            f"{R}/report/reproduction.html",
            caption="../report/reproduction.rst",
            category="Reproduction",
        ),
        claims=f"{R}/report/claims.csv",
        provenance=f"{R}/report/provenance.json",
    log:
        f"{R}/logs/report.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        out=lambda w, output: str(Path(output.md).parent),
        kinds=report_kinds(),
        config_hash=config_hash(),
        seeds=words(config["seeds"]),
        table1=lambda w, input: f"--table1 {input.table1}" if input.table1 else "",
        leakage=lambda w: (
            f"--leakage {leakage_pairs()} --clean-test {paths(clean_test_files('json'))}"
            if leakage_pairs()
            else ""
        ),
    shell:
        "amips-bench report --out {params.out} --metrics {input.metrics} "
        "--histories {input.histories} --routing {input.routing} --ivf {input.ivf} "
        "--ood {input.ood} {params.table1} --kinds {params.kinds} --figures {input.figures} "
        "--manifests {input.manifests} "
        "--config-hash {params.config_hash} --seeds {params.seeds} {params.leakage} > {log} 2>&1"
