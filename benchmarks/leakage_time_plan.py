"""How long the leakage study at scale (config/hotpotqa_scale.yaml) takes on one H200, phase
by phase, before anyone spends GPU time on it:

    python benchmarks/leakage_time_plan.py [CONFIG]      # or: bash benchmarks/leakage_at_scale.sh --plan

Every rate comes from a file a benchmark wrote, named in the table:
- data and index (CPU stages): `keys_scale_cpu.md`, measured at 1.3M–5.2M keys on a 2-core
  CPU, scaled linearly in keys from the nearest measured count; they are not scaled by the GPU
  host's cores (the generator and FAISS's k-means use some of them: an upper bound);
- exact targets (GPU, IEEE float32): the GFLOP/s of `targets_h100.md` at the largest key count
  (an H100; an H200 has the same float32 units, so its rate is taken as the same), on
  2·rows·n·d FLOPs for the distinct (question, copy) rows of both datasets (an official-split
  dataset copies the rows its leak-free twin holds);
- training (GPU): the achieved FLOP/s of the tf32 KeyNet rows of `train_throughput_h200.csv`,
  on each model's FLOPs per step (the measured FLOPs per parameter and row, times its own
  parameters and batch), for every model and seed of the grid;
- IVF sweeps (`ivf.evaluator: all_nprobe` on the GPU): one exact score pass, 2·Q·n·d FLOPs per
  query set (natural, each mapped model, each clean-test model), at the targets' rate;
- job overhead: the seconds a stage process takes to start here (python, torch, the package),
  measured now, once per job of the plan.
Install time is not estimated (the GPU suite's install phase measures it). Phases are summed as
if they ran one after another: the CPU stages could overlap the GPU ones, so the total is an
upper bound.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from amips_bench.core.config import prepare
from amips_bench.core.runs import expand_grid
from amips_bench.datasets.splits import make_splits
from amips_bench.models.networks import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _markdown_rows(path: Path) -> list[dict[str, str]]:
    """The rows of the first Markdown table in a file, as dicts by header."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def _number(text: str) -> float:
    return float(re.sub(r"[^0-9.eE+-]", "", text))


def cpu_stage_seconds(stage: str, n_keys: int) -> float:
    """Seconds of a CPU stage at n_keys, scaled linearly from the nearest measured count."""
    rows = [r for r in _markdown_rows(RESULTS / "keys_scale_cpu.md") if r["stage"].startswith(stage)]
    nearest = min(rows, key=lambda r: abs(_number(r["keys"]) - n_keys))
    return _number(nearest["seconds"]) * n_keys / _number(nearest["keys"])


def targets_flops_per_second() -> float:
    rows = _markdown_rows(RESULTS / "targets_h100.md")
    largest = max(rows, key=lambda r: _number(r["n keys"]))
    return _number(largest["GFLOP/s"]) * 1e9


def training_rate() -> tuple[float, float]:
    """(achieved FLOP/s, FLOPs per parameter and row) of the tf32 KeyNet steps on the H200."""
    with open(RESULTS / "train_throughput_h200.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == "keynet" and r["precision"] == "tf32"]
    rate = statistics.median(float(r["achieved_flops"]) for r in rows)
    per = statistics.median(float(r["flop_per_step"]) / float(r["parameters"]) / float(r["batch"])
                            for r in rows)
    return rate, per


def startup_seconds(repeats: int = 3) -> float:
    """A stage process's start here: python, torch and the package imported."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, faiss, amips_bench.cli"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def plan(config: dict, startup_repeats: int = 3) -> list[tuple[str, float, str]]:
    """(phase, seconds, how) of the study, the datasets sharing keys and index counted once."""
    datasets = config["datasets"]
    first = next(iter(datasets.values()))
    n, d = first["synthetic"]["n_keys"], first["synthetic"]["d"]
    q = first["synthetic"]["n_queries"]
    gpu = targets_flops_per_second()
    train_flops, flop_per_param_row = training_rate()
    phases = [("data (synthetic keys and questions)", cpu_stage_seconds("synthetic", n),
               "keys_scale_cpu.md, linear in keys, 2 cores"),
              ("IVF index (spherical k-means, nlist = √n)", cpu_stage_seconds("IVF", n),
               "keys_scale_cpu.md, linear in keys, 2 cores")]
    # a row (question, copy) is searched once: an official-split twin copies the rows its
    # leak-free twin holds (datasets.targets.TwinTargets)
    searched: set[tuple[int, int]] = set()
    for ds in datasets.values():
        s = ds["splits"]
        plans = make_splits(q, val_size=s["val_size"], test_size=s["test_size"],
                            augment_factor=s["augment_factor"], mode=s["mode"], seed=s["seed"])
        searched |= {pair for plan in plans.values()
                     for pair in zip(plan.source.tolist(), plan.copy.tolist())}
    rows = len(searched)
    phases.append((f"exact targets ({rows:,} rows, fp32)", 2 * rows * n * d / gpu,
                   f"targets_h100.md: {gpu / 1e12:.1f} TFLOP/s; rows shared by the twins searched once"))
    seconds, models, jobs = 0.0, 0, 2 + 2 * len(datasets)  # data, index; split and targets a dataset
    query_sets = 0
    for name, ds in datasets.items():
        runs = expand_grid(ds, config["seeds"])
        for run in runs:
            spec = ModelSpec(model=run.model, d=d, n_keys=n, size=run.size, depth=run.depth,
                             n_x=run.n_x, n_clusters=run.clusters, width_rule=config["width_rule"])
            t = ds["train"]
            seconds += t["steps"] * flop_per_param_row * spec.n_parameters * t["batch_size"] / train_flops
            models += 1
        official = ds["splits"]["mode"] == "official"
        query_sets += 1 + len(runs) * (2 if official else 1)  # natural, mapped, clean test
        jobs += 2 * len(runs) * (2 if official else 1) + 1
    phases.append((f"training ({models} models)", seconds,
                   f"train_throughput_h200.csv: tf32 KeyNet {train_flops / 1e12:.1f} TFLOP/s"))
    test = first["splits"]["test_size"]
    phases.append((f"IVF sweeps ({query_sets} query sets of {test:,}, all_nprobe)",
                   query_sets * 2 * test * n * d / gpu, "one exact score pass a set, targets' rate"))
    start = startup_seconds(startup_repeats)
    phases.append((f"job start-up ({jobs} jobs)", jobs * start, f"{start:.1f} s a job, measured here"))
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "config" / "hotpotqa_scale.yaml"))
    parser.add_argument("--goal-minutes", type=float, default=8.0)
    parser.add_argument("--startup-repeats", type=int, default=3,
                        help="stage start-ups timed for the job overhead (median)")
    args = parser.parse_args()
    config = prepare(yaml.safe_load(Path(args.config).read_text()))
    phases = plan(config, args.startup_repeats)
    total = sum(s for _, s, _ in phases)
    print(f"# estimated seconds of {Path(args.config).name} on one H200 (upper bound: phases in series; install not included)")
    print("| phase | seconds | from |")
    print("|---|---:|---|")
    for name, seconds, how in phases:
        print(f"| {name} | {seconds:,.0f} | {how} |")
    verdict = "within" if total <= args.goal_minutes * 60 else "over"
    print(f"| **total** | **{total:,.0f}** ({total / 60:.1f} min) | {verdict} the {args.goal_minutes:g}-minute goal |")


if __name__ == "__main__":
    main()
