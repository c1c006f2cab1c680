"""What training a model costs: FLOPs per step, and the rate a GPU trains it at.

Training FLOPs per step of batch B: SupportNet with c outputs 6·(1 + c)·P·B (forward, c
input-gradient passes, and the double backward through both); KeyNet (6·P − 2·(1 + n_x)·d·h)·B
(forward and backward, less the input gradient its (1 + n_x) projections of x never need). P is
the model's full parameter count at its width (output layer included), not the budget ρ·n·d
the width is solved from. tests/test_paper_cost.py checks the formula against the FLOPs counted
on a real training step.

The rate comes from a measured throughput table (benchmarks/results/train_throughput_<gpu>.csv,
written by `python benchmarks/train_throughput.py --device cuda --out ...` on the GPU that will
train): the achieved FLOP/s of the same model, the same cluster count (c = 1, or a measured
clustered c for c > 1), the training precision and the CUDA-graph step, at the measured size
nearest in parameter count. A run whose (model, size, depth, n_x, c, width, batch, key count)
was itself measured is "measured"; every other run borrows that rate and is "extrapolated"
(larger models run their matmuls at least as efficiently, so borrowing from a smaller size errs
on the high side of the time). The workflow's runtime requests (jobs.Jobs.train_minutes) and
the cost report (benchmarks/paper_cost.py) both price a run here.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError
from .networks import MODEL_KINDS, ModelSpec


def load_rates(path: str | Path) -> list[dict]:
    """Measured rows of a throughput table (numbers parsed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: throughput table not found")
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
    if MODEL_KINDS[spec.model].key_is_gradient:
        return 6 * (1 + spec.n_clusters) * params * batch
    return (6 * params - 2 * (1 + spec.n_x) * spec.d * spec.width) * batch


def pick_rate(rates: list[dict], spec: ModelSpec, precision: str, batch: int,
              n_keys_measured: int) -> tuple[float, str, dict]:
    """(FLOP/s, 'measured' | 'extrapolated', the row used) for one run of the grid."""
    clustered = [r for r in rates if r["model"] == spec.model and r["precision"] == precision
                 and (r["clusters"] == 1) == (spec.n_clusters == 1)]
    if not clustered:
        raise InputError(f"no measured {spec.model} rate in {precision} "
                         f"(c {'= 1' if spec.n_clusters == 1 else '> 1'}) in the throughput table")
    best_graph = max(r["cuda_graph"] for r in clustered)
    pool = [r for r in clustered if r["cuda_graph"] == best_graph]
    params = spec.n_parameters
    row = min(pool, key=lambda r: abs(math.log(r["parameters"] / params)))
    exact = (row["size"] == spec.size and row["depth"] == spec.depth and row["n_x"] == spec.n_x
             and row["clusters"] == spec.n_clusters and row["width"] == spec.width
             and row["batch"] == batch and spec.n_keys == n_keys_measured)
    return row["achieved_flops"], "measured" if exact else "extrapolated", row


@dataclass(frozen=True)
class TrainingCost:
    """The estimated training time of one run and where its rate comes from."""

    seconds: float
    rate: str  # measured, extrapolated, or assumed (no table: samples per second assumed)
    device: str


def training_cost(spec: ModelSpec, train: dict, rates: list[dict], n_keys_measured: int,
                  assumed_samples_per_second: float) -> TrainingCost:
    """Seconds to train `spec` under the dataset's train block: its steps at the table's rate
    for its precision, or, without a table, at an assumed number of samples per second."""
    if not rates:
        return TrainingCost(train["steps"] * train["batch_size"] / assumed_samples_per_second,
                            "assumed", "")
    # the tables are measured on GPUs, where precision auto trains in fp32
    precision = "fp32" if train["precision"] == "auto" else train["precision"]
    rate, kind, row = pick_rate(rates, spec, precision, train["batch_size"], n_keys_measured)
    return TrainingCost(step_flops(spec, train["batch_size"]) * train["steps"] / rate, kind,
                        row["device"])
