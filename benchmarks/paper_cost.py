"""Estimated GPU hours of the paper configuration (config/paper.yaml), from its own grid.

Training FLOPs per step of batch B: SupportNet with c outputs 6·(1 + c)·P·B (forward, c
input-gradient passes, and the double backward through both); KeyNet (6·P − 2·(1 + n_x)·d·h)·B
(forward and backward, less the input gradient its (1 + n_x) projections of x never need). P is
the model's full parameter count at its width (output layer included), not the budget ρ·n·d
the width is solved from: under the paper's width rule a clustered KeyNet's c·d outputs come
on top of the budget (at c = 10 they double an XS model). tests/test_paper_cost.py checks the
formula against the FLOPs counted on a real training step.

The rate each run trains at comes from a measured throughput table when one exists
(benchmarks/results/train_throughput_<gpu>.csv, written by `train_throughput.py --device cuda
--out ...`): the achieved FLOP/s of the same model, the same cluster count (c = 1, or the
measured clustered c for c > 1), the dataset's training precision and the CUDA-graph step,
at the measured size nearest in parameter count. A run whose (model, size, depth, n_x, c,
width, batch, key count) was itself measured is "measured" (a table measured under another
width rule measures other models); every other run borrows that rate and is
"extrapolated" (larger models run their matmuls at least as efficiently, so borrowing from a
smaller size errs on the high side of the hours). Without a table, an assumed sustained rate
(--tflops, default 100 TFLOP/s) is used for every run, and the output says so. Evaluation,
encoding and search are not counted: they are small beside training.

    python benchmarks/paper_cost.py [--config config/paper.yaml] [--throughput CSV | --tflops 100]
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import yaml

from amips_bench.core.config import dataset_n_keys, expand_grid, prepare
from amips_bench.models.networks import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT / "benchmarks" / "results" / "train_throughput_h200.csv"


def load_rates(path: Path) -> list[dict]:
    """Measured rows (numbers parsed); CUDA-graph rows preferred where both were measured."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for key in ("clusters", "depth", "n_x", "width", "parameters", "batch"):
            r[key] = int(r[key])
        r["achieved_flops"] = float(r["achieved_flops"])
        r["cuda_graph"] = r["cuda_graph"] == "True"
    return rows


def step_flops(spec: ModelSpec, batch: int) -> float:
    """Training FLOPs of one step of `batch` queries (see the module docstring)."""
    params = spec.n_parameters
    if spec.model == "supportnet":
        return 6 * (1 + spec.n_clusters) * params * batch
    return (6 * params - 2 * (1 + spec.n_x) * spec.d * spec.width) * batch


def pick_rate(rates: list[dict], spec: ModelSpec, precision: str, batch: int,
              n_keys_measured: int) -> tuple[float, str, dict]:
    """(FLOP/s, 'measured' | 'extrapolated', the row used) for one run of the grid."""
    clustered = [r for r in rates if r["model"] == spec.model and r["precision"] == precision
                 and (r["clusters"] == 1) == (spec.n_clusters == 1)]
    if not clustered:
        raise SystemExit(f"paper_cost: no measured {spec.model} rate in {precision} "
                         f"(c {'= 1' if spec.n_clusters == 1 else '> 1'}) in the throughput table")
    best_graph = max(r["cuda_graph"] for r in clustered)
    pool = [r for r in clustered if r["cuda_graph"] == best_graph]
    params = spec.n_parameters
    row = min(pool, key=lambda r: abs(math.log(r["parameters"] / params)))
    exact = (row["size"] == spec.size and row["depth"] == spec.depth and row["n_x"] == spec.n_x
             and row["clusters"] == spec.n_clusters and row["width"] == spec.width
             and row["batch"] == batch and spec.n_keys == n_keys_measured)
    return row["achieved_flops"], "measured" if exact else "extrapolated", row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config" / "paper.yaml"))
    parser.add_argument("--throughput", default=str(DEFAULT_TABLE) if DEFAULT_TABLE.exists() else "",
                        help="measured throughput CSV (default: the committed H200 table, measured at the paper rule's widths)")
    parser.add_argument("--n-keys-measured", type=int, default=513_000,
                        help="key count the throughput table sized its models with")
    parser.add_argument("--precision", default="",
                        help="training precision to price (default: each dataset's train.precision)")
    parser.add_argument("--tflops", type=float, default=100.0,
                        help="assumed sustained rate when no throughput table is given")
    args = parser.parse_args()
    config = prepare(yaml.safe_load(Path(args.config).read_text()))
    rates = load_rates(Path(args.throughput)) if args.throughput else []
    hours, models = defaultdict(float), defaultdict(int)
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    device = ""
    for name, ds in config["datasets"].items():
        train = ds["train"]
        for run in expand_grid(ds, config["seeds"]):
            spec = ModelSpec(model=run.model, d=384, n_keys=dataset_n_keys(ds), size=run.size,
                             depth=run.depth, n_x=run.n_x, n_clusters=run.clusters,
                             width_rule=config["width_rule"])
            flops = step_flops(spec, train["batch_size"]) * train["steps"]
            if rates:
                rate, kind, row = pick_rate(rates, spec, args.precision or train["precision"],
                                            train["batch_size"], args.n_keys_measured)
                device = row["device"]
            else:
                rate, kind = args.tflops * 1e12, "assumed"
            hours[name] += flops / rate / 3600
            models[name] += 1
            kinds[name][kind] += 1
    precision = args.precision or "each dataset's train.precision"
    source = (f"measured training-step rates of {device} ({Path(args.throughput).name}; "
              f"{precision}; CUDA-graph steps where measured)" if rates else f"an assumed {args.tflops:g} TFLOP/s sustained")
    print(f"# estimated training GPU hours of {Path(args.config).name} at {source}")
    print("| dataset | models | rate measured for the run itself | rate extrapolated | GPU hours |")
    print("|---|---:|---:|---:|---:|")
    for name in hours:
        k = kinds[name]
        print(f"| {name} | {models[name]} | {k['measured']} | {k['extrapolated'] + k['assumed']} "
              f"| {hours[name]:,.0f} |")
    total = {key: sum(k[key] for k in kinds.values()) for key in ("measured", "extrapolated", "assumed")}
    print(f"| total | {sum(models.values())} | {total['measured']} | "
          f"{total['extrapolated'] + total['assumed']} | {sum(hours.values()):,.0f} |")


if __name__ == "__main__":
    main()
