# amips-bench: regenerate every figure and table of "Amortizing Maximum Inner Product Search
# with Learned Support Functions" (ICML 2026).
#
#   snakemake --cores all figures                                # quick synthetic profile
#   snakemake --cores all figures --configfile config/paper.yaml # the paper's four datasets
#   snakemake --cores all compare                                # ... and compared with a reference
#
# Targets go before --configfile, which takes several files and would read a target as one.
#
# Thin by design: configuration, validation and includes. Logic lives in src/amips_bench.

from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="|".join(DATASETS),
    run=RUN_WILDCARD,
    clusters=r"\d+",
    k=r"\d+",
    seed=r"\d+",
    router=router_wildcard(),
    quantizer=either(IVF_QUANTIZERS),
    multiple=IVF_MULTIPLE_WILDCARD,


include: "workflow/rules/data.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/routing.smk"
include: "workflow/rules/ivf.smk"
include: "workflow/rules/timing.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/compare.smk"


onstart:
    check_free_disk()


rule figures:
    default_target: True
    # the default target: every figure, into figures/
    input:
        RUN.figure_outputs(),


rule all:
    input:
        RUN.figure_outputs(),
        RUN.table_outputs(),
        rules.reproduction_report.output,


rule compare:
    # every output of `all`, then this run compared with the reference (config key compare)
    input:
        rules.all.input,
        rules.compare_runs.output,
        rules.compare_gate.output,


rule report:
    input:
        rules.reproduction_report.output,


rule tables:
    input:
        RUN.table_outputs(),


rule fetch:
    # every BEIR dataset downloaded and its texts counted, so that the disk plan (and a run's
    # own check) sizes its keys, queries and targets before hours of encoding
    input:
        [RUN.of(d).raw_manifest for d in RUN.source("beir") if d not in RUN.embedding_twins],
