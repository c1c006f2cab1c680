"""How long a config's stages take on this machine, before running it: rates measured here in
a few seconds on small samples of the same code paths, scaled by each stage's work.

Measured once per plan (single-threaded, as the workflow's jobs run with `threads: 1`): the
synthetic generator and the split (rows per second), the targets search at the config's
precision (query × key pairs per second), one training step of every model of the grid (its
own width, batch and precision, on random data: a step's cost does not depend on the values),
float32 and float64 matrix products (the evaluations and the all-nprobe IVF pass), and FAISS's
k-means (the IVF build). Work per stage is counted from the config: rows, keys, steps,
evaluations, query sets. The estimate is of CPU time; the wall time at `cores` is the larger of
the longest chain of one dataset's stages (each stage's longest job, in a row) and the total
spread over the jobs that run at once.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from ..core.config import train_rows
from ..core.errors import ConfigError
from ..core.runs import expand_grid, ivf_nlist
from ..core.stage_settings import TrainSettings
from ..datasets.embeddings import write_synthetic
from ..datasets.splits import write_splits
from ..datasets.synthetic import SyntheticParams
from ..datasets.targets import ClusterLayout, certified_top1, exact_top1, resolve_precision
from ..experiments.timing import time_callable
from ..models.evaluation import DatasetTensors, SplitData
from ..models.networks import ModelSpec
from ..models.training import Trainer

#: rows of the samples the rates are measured on
SAMPLE_KEYS, SAMPLE_QUERIES = 20_000, 2_048


@dataclass(frozen=True)
class Rates:
    """Single-thread rates of this machine."""

    synthetic_rows: float  # generator rows (keys + questions) per second, split included
    target_pairs: float  # query × key pairs per second of the targets search
    gemm_fp32: float  # FLOP/s
    gemm_fp64: float  # FLOP/s
    kmeans: float  # FLOP/s of FAISS k-means (2·points·nlist·d per iteration)


def _seconds(work, repeats: int = 3) -> float:
    """Median seconds of `repeats` runs of `work` after one untimed run (a CPU: no sync)."""
    return time_callable(work, warmup=1, repeats=repeats, synchronize=lambda: None).median


def _gemm_rate(dtype: torch.dtype, size: int = 1024) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    return 2 * size ** 3 / _seconds(lambda: a @ b)


def measure_rates(d: int, precision: str) -> Rates:
    """The rates of this machine at the current thread count (torch and FAISS)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_synthetic(Path(tmp) / "e", SyntheticParams(n_keys=SAMPLE_KEYS, n_queries=SAMPLE_QUERIES * 2,
                                                         d=d, seed=0))
        write_splits(Path(tmp) / "e" / "queries.npy", Path(tmp) / "s", val_size=100, test_size=100,
                     augment_factor=2, sigma=0.02)
        synthetic = (SAMPLE_KEYS + SAMPLE_QUERIES * 2) / (time.perf_counter() - t0)
        keys = np.load(Path(tmp) / "e" / "keys.npy")
        queries = np.load(Path(tmp) / "e" / "queries.npy")[:SAMPLE_QUERIES]
    resolved = resolve_precision(precision, torch.device("cpu"))
    if resolved == "fp32":
        search = lambda: exact_top1(queries, keys)  # noqa: E731
    else:
        search = lambda: certified_top1(queries, keys, precision=resolved)  # noqa: E731
    pairs = SAMPLE_QUERIES * SAMPLE_KEYS / _seconds(search, repeats=1)
    nlist, points = 64, 64 * 64
    sample = keys[:points]
    kmeans = 2 * points * nlist * d * 10 / _seconds(
        lambda: faiss.Kmeans(d, nlist, niter=10, seed=1, spherical=True, verbose=False,
                             max_points_per_centroid=10 ** 6).train(sample), repeats=1)
    return Rates(synthetic, pairs, _gemm_rate(torch.float32), _gemm_rate(torch.float64), kmeans)


def train_step_seconds(dataset: str, run, n_keys: int, d: int, cfg: TrainSettings,
                       width_rule: str, steps: int = 3) -> float:
    """Median seconds of a training step of `run`'s model, at one thread, on random data."""
    gen = torch.Generator().manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(4096, d, generator=gen), dim=1)
    rows = max(cfg.batch_size * 2, 4096)
    queries = torch.nn.functional.normalize(torch.randn(rows, d, generator=gen), dim=1)
    top1 = torch.randint(4096, (rows, 1), generator=gen)
    split = SplitData(queries, top1)
    data = DatasetTensors(keys, ClusterLayout.from_assignments(None, 4096, 1),
                          {"train": split, "val": split, "test": split}, dataset)
    spec = ModelSpec(model=run.model, d=d, n_keys=n_keys, size=run.size, depth=run.depth,
                     n_x=run.n_x, n_clusters=run.clusters, convexity=run.convexity, init=run.init,
                     residual=run.residual, width_rule=width_rule)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(spec, data, cfg, tmp, torch.device("cpu"))
        return _seconds(trainer.train_step, repeats=steps)


@contextmanager
def one_thread():
    """torch and FAISS at one thread, as a job of `threads: 1` runs; restored after."""
    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


def stage_estimates(config: dict, rates: Rates | None = None) -> list[dict[str, Any]]:
    """Per dataset and stage: jobs and estimated single-thread CPU seconds, with what the
    estimate counts."""
    with one_thread():
        return _stage_estimates(config, rates)


def _stage_estimates(config: dict, rates: Rates | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, ds in config["datasets"].items():  # before any rate is measured
        if ds["source"] != "synthetic":
            raise ConfigError(f"config key 'datasets.{name}.source': {ds['source']!r}; the CPU "
                              f"time plan covers synthetic datasets only")
    first = next(iter(config["datasets"].values()))
    rates = rates or measure_rates(first.get("synthetic", {}).get("d", 384),
                                   config["targets"]["precision"])
    for name, ds in config["datasets"].items():
        syn, s = ds["synthetic"], ds["splits"]
        n, q, d = syn["n_keys"], syn["n_queries"], syn["d"]
        train = train_rows(q, val_size=s["val_size"], test_size=s["test_size"],
                           augment_factor=s["augment_factor"], mode=s["mode"])
        held_out = s["val_size"] + s["test_size"]
        runs = [r for r in expand_grid(ds, config["seeds"]) if r.clusters == 1]

        def add(stage: str, jobs: int, seconds: float, counts: str, longest: float | None = None):
            rows.append({"dataset": name, "stage": stage, "jobs": jobs, "cpu_seconds": seconds,
                         "longest_job": seconds if longest is None else longest, "counts": counts})

        add("data (generator, split)", 2, (n + q + train) / rates.synthetic_rows,
            f"{n:,} keys, {q:,} questions, {train:,} training rows")
        add("targets (c = 1)", 1, (train + held_out) * n / rates.target_pairs,
            f"{train + held_out:,} rows × {n:,} keys ({config['targets']['precision']})")
        tc = ds["train"]
        cfg = TrainSettings(**{k: v for k, v in tc.items()
                             if k in TrainSettings.__dataclass_fields__ and k != "weights"})
        evaluations = tc["steps"] // tc["eval_every"] + 3  # + step 0, the test and final val
        eval_seconds = evaluations * 2.0 * s["val_size"] * n * d / rates.gemm_fp32
        trained = []
        for run in runs:
            step = train_step_seconds(name, run, n, d, cfg, config["width_rule"])
            trained.append(tc["steps"] * step + eval_seconds)
        add("train (c = 1)", len(runs), sum(trained),
            f"{tc['steps']:,} steps × batch {tc['batch_size']} per model, "
            f"{evaluations} evaluations", max(trained, default=0.0))
        nlist = ivf_nlist(n, ds["ivf"]["nlist"])
        points = min(n, 256 * nlist)
        add("IVF index", 1, (2 * points * nlist * d * 25 + 2 * n * nlist * d) / rates.kmeans,
            f"k-means of {points:,} points into {nlist:,} lists, {n:,} keys assigned")
        modes = 2 if ds["ivf"]["probe_mapped"] else 1
        swept = [r for r in runs if r.model in ds["ivf"]["models"]]
        per_set = 2.0 * held_out * n * d / rates.gemm_fp64  # test and validation questions
        add("IVF sweeps (all nprobe)", 1 + len(swept), per_set * (1 + modes * len(swept)),
            f"{1 + modes * len(swept)} query sets × {held_out:,} questions × {n:,} keys (float64)",
            per_set * modes)
    return rows


def plan_tables(rows: list[dict[str, Any]], cores: int, threads: int) -> str:
    """The per-stage table and the totals: CPU time and the wall time at `cores`."""
    def hours(seconds: float) -> str:
        return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    at_once = max(1, cores // max(1, threads))
    lines = ["| dataset | stage | jobs | CPU time (1 thread) | longest job | what it counts |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['stage']} | {r['jobs']} | {hours(r['cpu_seconds'])} | "
                     f"{hours(r['longest_job'])} | {r['counts']} |")
    total = sum(r["cpu_seconds"] for r in rows)
    chains = {}  # a dataset's stages run one after the other: its longest jobs in a row
    for r in rows:
        chains[r["dataset"]] = chains.get(r["dataset"], 0.0) + r["longest_job"]
    wall = max(max(chains.values(), default=0.0), total / at_once)
    lines += ["", f"Total CPU time {hours(total)}; at --cores {cores} with {threads} thread per job "
                  f"({at_once} jobs at once) about {hours(wall)} of wall time."]
    return "\n".join(lines)
