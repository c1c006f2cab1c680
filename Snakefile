# amips-bench: regenerate every figure and table of "Amortizing Maximum Inner Product Search
# with Learned Support Functions" (ICML 2026).
#
#   snakemake --cores all figures                                # quick synthetic profile
#   snakemake --cores all figures --configfile config/paper.yaml # the paper's four datasets
#
# Thin by design: configuration, validation and includes. Logic lives in src/amips_bench.

from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="|".join(DATASETS),
    run=r"(supportnet|keynet)_[A-Z]+_L\d+_nx\d+_c\d+(_res)?(_clip)?_s\d+",
    clusters=r"\d+",
    seed=r"\d+",
    size="XS|S|M|L|XL|XXL",
    depth=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/routing.smk"
include: "workflow/rules/ivf.smk"
include: "workflow/rules/timing.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"


rule figures:
    # the default target (see the file `figures` for why that matters)
    input:
        figure_outputs(),
    default_target: True


rule all:
    input:
        figure_outputs(),
        table_outputs(),
        rules.reproduction_report.output,


rule report:
    input:
        rules.reproduction_report.output,


rule tables:
    input:
        table_outputs(),
