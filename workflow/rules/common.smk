# Snakemake glue shared by all workflow files: the validated config, the shell prefix, and the
# run's files (amips_bench.planning.run_files: every path from the results layout, every job's inputs
# and the targets' lists) and jobs (amips_bench.planning.jobs: flags and resources), so that the other
# .smk files hold nothing but rules.

import copy
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from amips_bench.core.config import ENCODER_EXECUTION_ONLY, prepare
from amips_bench.core.disk import DISK_MARGIN_ENV
from amips_bench.core.errors import ConfigError, InputError
from amips_bench.core.layout import reference_provenance
from amips_bench.core.plugins import load_plugins
from amips_bench.core.runs import (
    IVF_MULTIPLE_WILDCARD,
    IVF_QUANTIZERS,
    PAPER_IVF_SETUP,
    RUN_WILDCARD,
    nx_for,
    parse_run,
)
from amips_bench.core.stage_settings import TrainSettings
from amips_bench.planning.disk_plan import free_disk_verdict, plan_outputs, results_folder
from amips_bench.planning.jobs import space_separated
from amips_bench.models.routers import router_wildcard
from amips_bench.planning.run_files import RunFiles


# The three Snakemake internals the workflow reads, each behind a function of its own. Checked
# with Snakemake 8 and 9, the range pyproject.toml pins.
def command_line_config():
    """The command line's configfiles and --config merged, or None without a configfile
    (workflow.config_settings.overwrite_config)."""
    return workflow.config_settings.overwrite_config if workflow.overwrite_configfiles else None


def jobs_to_run():
    """The jobs still to run (workflow.dag.needrun_jobs())."""
    return workflow.dag.needrun_jobs()


def resource_limits():
    """The --resources and --cores limits (workflow.global_resources; Snakemake 9 holds Resource
    objects, 8 ints)."""
    return {k: getattr(v, "value", v) for k, v in workflow.global_resources.items()}


# A config file given on the command line replaces the default quick profile instead of being
# deep-merged into it (Snakemake's default), which would leak the synthetic dataset into every
# other run.
if command_line_config() is not None:
    config.clear()
    config.update(copy.deepcopy(command_line_config()))

load_plugins()  # routers and figures registered outside the package (AMIPS_BENCH_PLUGINS)
try:
    config.update(prepare(config))
except ConfigError as exc:
    raise WorkflowError(f"amips-bench config error: {exc}") from None

# Every shell command calls `amips-bench <stage>`; this bash function runs the CLI of this
# checkout, so that jobs work alike with the package installed, inside the pinned conda
# environment (which holds only the dependencies) and on cluster nodes sharing the checkout.
SRC = Path(workflow.basedir) / "src"
_function = f'amips-bench() {{ PYTHONPATH="{SRC}${{PYTHONPATH:+:$PYTHONPATH}}" python -m amips_bench.cli "$@"; }}; '
shell.prefix(_function.replace("{", "{{").replace("}", "}}"))  # the prefix is str.format-ed

ENV = str(Path(workflow.basedir) / config["conda_env"])
DEVICE = config["device"]
FAISS_DEVICE = config["faiss_device"]
DATASETS = config["datasets"]
# a throughput table named relative to the workflow's folder is found from any working directory
_table = config["cluster"]["throughput"]
if _table and not Path(_table).exists() and (Path(workflow.basedir) / _table).exists():
    config["cluster"]["throughput"] = str(Path(workflow.basedir) / _table)
try:
    RUN = RunFiles(config)  # every input and target list of the run
except InputError as exc:
    raise WorkflowError(f"amips-bench config error: {exc}") from None
JOBS = RUN.jobs  # every job's flags and resource requests
RESULTS = RUN.layout  # every path of the results contract
# a dataset's files, as rule patterns with the wildcard {dataset}
DATASET_FILES = RESULTS.dataset("{dataset}")
ROUTER = "router_{router}_c{clusters}_s{seed}"  # a learned router's run name


def either(names, but=()):
    """A wildcard constraint matching exactly these names but those in `but` (or nothing)."""
    return "|".join(n for n in names if n not in but) or "^$"


def stem(output):
    """The common prefix of a figure's outputs (STEM.pdf, STEM.png, STEM.csv)."""
    return str(Path(str(output)).with_suffix(""))


def folder(path):
    return str(Path(str(path)).parent)


def paths(*named):
    """Named inputs as one space-separated string (a named input of one file is a string)."""
    return " ".join(v if isinstance(v, str) else space_separated(v) for v in named)


# The code that draws a figure, table or report is an input of its rule: editing it re-renders
# that output and nothing upstream. Training and the other stages are deliberately left out
# (their code changes rarely and re-running them is expensive): force them with
# `snakemake --forcerun train` (or any rule name) when their code changed.
PACKAGE = SRC / "amips_bench"


def code(*files):
    return [str(PACKAGE / f) for f in files]


TABLE_CODE = code("reporting/tables.py", "reporting/results.py")
REPORT_CODE = (
    code(
        "reporting/report.py",
        "reporting/claims.py",
        "reporting/statistics.py",
        "reporting/selection.py",
        "reporting/evidence.py",
        "reporting/leakage.py",
        "reporting/regime.py",
        "core/paper.py",
    )
    + TABLE_CODE
)
COMPARE_CODE = code(
    "comparing/curves.py",
    "comparing/compare_runs.py",
    "comparing/trees.py",
    "comparing/overlays.py",
    "reporting/results.py",
    "reporting/plots/style.py",
)


def this_provenance():
    """This run's report, where the comparison reads this run: its provenance names the
    commit and devices of the run in the comparison."""
    if any(Path(f) == RESULTS.results for f in config["compare"]["runs"].values()):
        return {"this_provenance": rules.reproduction_report.output.provenance}
    return {}


def training_execution(w, input, threads):
    """A training job's execution flags: threads and the train block's execution keys, its
    time budget under a walltime cap, and the segment it continues from."""
    flags = [JOBS.execution_cli(w.dataset, "train", TrainSettings.EXECUTION_ONLY, threads)]
    flags.append(JOBS.time_budget_cli(w.dataset, w.run))
    if "previous" in input.keys():
        flags.append(f"--resume-from {input.previous}")
    return " ".join(f for f in flags if f)


def figure_output(name, caption):
    """The outputs of a figure rule: STEM.pdf, STEM.png (in the Snakemake report with its
    caption) and STEM.csv, the plotted numbers."""
    pdf, png, csv = RUN.figure_files(name)
    return {
        "pdf": pdf,
        "png": report(png, caption=f"../report/{caption}", category="Figures"),
        "csv": csv,
    }


# ---------------------------------------------------------------- disk

# The fetch, encode and targets stages check their own files against the free disk with the
# run's disk_margin, handed on in the environment (core.disk.stage_disk_margin says why).
os.environ[DISK_MARGIN_ENV] = str(config["disk_margin"]).lower()


def check_free_disk():
    """Before the first job (onstart): the disk that the jobs still to run will write, sized
    from the DAG's outputs (amips_bench.planning.disk_plan), against the free disk under the results
    folder. A short disk stops the run in one line before anything is written; config key
    disk_margin (null: no check) is the headroom asked for on top of the plan."""
    margin = config["disk_margin"]
    if margin is None:
        return
    outputs = [(str(f), job.rule.name) for job in jobs_to_run() for f in job.output]
    planned = plan_outputs(config, outputs, Path.cwd())
    at_once = JOBS.training_jobs_at_once(resource_limits(), workflow.local_exec)
    line, short = free_disk_verdict(planned, results_folder(config, Path.cwd()), margin, at_once)
    if short:
        raise WorkflowError(
            f"amips-bench disk check: {line} (config key disk_margin: null skips this check)"
        )
    logger.info(f"amips-bench disk check: {line}")
