# Helpers shared by the rule files: validated config, paths of the results contract,
# the model grid, and resources scaled from each dataset's size.

import copy
import math
import sys
from pathlib import Path

from amips_bench.config import (
    ConfigError,
    dataset_n_keys,
    expand_grid,
    nx_for,
    ood_run,
    parse_run,
    prepare,
)

# A config file given on the command line replaces the default quick profile instead of being
# deep-merged into it (Snakemake's default), which would leak the synthetic dataset into every
# other run. The empty stub `figures` (see that file) changes nothing.
_cli_configs = [f for f in workflow.overwrite_configfiles if Path(f).name != "figures"]
if _cli_configs:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))

try:
    config.update(prepare(config, Path(workflow.basedir) / "config" / "schema.yaml"))
except ConfigError as exc:
    sys.stderr.write(f"amips-bench config error: {exc}\n")
    sys.exit(1)

R = config["results"]
F = config["figures_dir"]
DATASETS = config["datasets"]
SYNTHETIC = [n for n, d in DATASETS.items() if d["source"] == "synthetic"]
TEXT = [n for n, d in DATASETS.items() if d["source"] != "synthetic"]
RUNS = {name: expand_grid(ds, config["seeds"]) for name, ds in DATASETS.items()}


wildcard_constraints:
    dataset="|".join(DATASETS),
    run=r"(supportnet|keynet)_[A-Z]+_L\d+_nx\d+_c\d+(_res)?(_clip)?_s\d+",
    clusters=r"\d+",
    seed=r"\d+",
    size="XS|S|M|L|XL|XXL",
    depth=r"\d+",


def ds_dir(dataset):
    return f"{R}/{dataset}"


def model_dir(dataset, run_name):
    return f"{R}/{dataset}/models/{run_name}"


def runs_where(dataset, **conditions):
    """Runs of a dataset's grid whose attributes equal the given values."""
    return [
        r
        for r in RUNS[dataset]
        if all(getattr(r, k) == v for k, v in conditions.items())
    ]


def cluster_counts(dataset):
    return sorted({r.clusters for r in RUNS[dataset]})


# ---------------------------------------------------------------- resources


def n_keys(dataset):
    return dataset_n_keys(DATASETS[dataset])


def embedding_mb(dataset):
    """Memory of the keys in MB (float32, d = 384 unless configured)."""
    d = DATASETS[dataset]["synthetic"]["d"] if dataset in SYNTHETIC else 384
    return n_keys(dataset) * d * 4 / 1e6


def mem_mb(dataset, factor, base=2000):
    return int(base + factor * embedding_mb(dataset))


def train_minutes(dataset):
    """Runtime request of a training job: steps × batch at an assumed 2e4 samples/s, >= 10 min."""
    t = DATASETS[dataset]["train"]
    return max(10, int(t["steps"] * t["batch_size"] / 2e4 / 60 * 3))


# ---------------------------------------------------------------- CLI arguments


def train_cli(dataset):
    t = DATASETS[dataset]["train"]
    flags = []
    for key, value in t.items():
        flags.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(flags)


def run_cli(run_name):
    r = parse_run(run_name)
    flags = (
        f"--model {r.model} --size {r.size} --depth {r.depth} --nx {r.n_x} "
        f"--clusters {r.clusters} --seed {r.seed} --convexity {r.convexity}"
    )
    return flags + (" --residual" if r.residual else "")


# ---------------------------------------------------------------- targets of the workflow


def metrics_files(dataset, **conditions):
    return [
        f"{model_dir(dataset, r.name)}/metrics.json" for r in runs_where(dataset, **conditions)
    ]


def history_files(dataset, **conditions):
    return [
        f"{model_dir(dataset, r.name)}/history.csv" for r in runs_where(dataset, **conditions)
    ]


def figure_files(stem):
    return [f"{F}/{stem}.pdf", f"{F}/{stem}.png", f"{F}/{stem}.csv"]


def figure_outputs():
    figs = config["figures"]
    out = []
    if figs["toy"]:
        out += figure_files("fig1_toy")
    if figs["routing"]:
        out += figure_files("fig2_routing")
    if figs["erel_mrr"]:
        out += figure_files("fig3_erel_mrr")
    for dataset, number in figs["ivf"].items():
        out += figure_files(f"fig{number}_ivf_{dataset}")
    if figs["ood"]:
        out += figure_files("fig7_ood")
    if figs["training"]:
        out += figure_files("fig8_training")
    if config["table1"]["datasets"]:
        out += [f"{R}/timing/table1.csv", f"{R}/timing/table1.md"]
    return out


def table_outputs():
    return [
        f"{R}/tables/final_metrics.csv",
        f"{R}/tables/final_metrics.md",
        f"{R}/tables/realism.csv",
        f"{R}/tables/realism.md",
    ] + [f"{R}/{ds}/timing/pipelines.csv" for ds in DATASETS]


def all_metrics():
    return [f for ds in DATASETS for f in metrics_files(ds)]
