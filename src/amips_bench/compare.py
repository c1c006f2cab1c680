"""Comparing runs: the curves behind a figure, matched across runs and judged within seed noise.

A curve is one line of a figure: the rows of a tidy table that share the `keys` (dataset,
method, setting, metric, ...), with `x` the cost axis (FLOPs, training step, noise std) and `y`
the value plotted. Runs are compared with a baseline run curve by curve, at equal x: both curves
are interpolated (in log-space for FLOP axes) on the union of their x values inside the range
both cover; a table without `x` is compared point for point. A curve's tolerance comes from the
spread of its seeds where either run has two or more (|Δ| ≤ factor·σ_seed + floor at every
compared x), else from a stated absolute tolerance; every row says which one it used. A curve
present in only one run is a row of its own ("only in run X"), never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .io import InputError
from .results import at_flops


@dataclass(frozen=True)
class Tolerance:
    """How far two curves may be apart and still agree."""

    seed_factor: float = 2.0  # |Δ| ≤ seed_factor·σ_seed + floor where seeds exist
    floor: float = 0.005  # absolute slack under the seed term (BLAS builds, thread counts)
    absolute: float = 0.02  # |Δ| ≤ absolute where no run has two seeds

    def describe(self, seeded: bool) -> str:
        if seeded:
            return f"|Δ| ≤ {self.seed_factor:g}·σ_seed + {self.floor:g}"
        return f"|Δ| ≤ {self.absolute:g} (absolute; fewer than 2 seeds)"


@dataclass
class Curve:
    """Mean and seed spread of one curve at each of its x values (sorted)."""

    x: np.ndarray
    mean: np.ndarray
    sd: np.ndarray  # 0 where fewer than two seeds
    seeds: int  # the smallest number of seeds behind any point


def curves(table: pd.DataFrame, keys: list[str], y: str, x: str | None = None,
           seed: str | None = None) -> dict[tuple, Curve]:
    """The curves of a tidy table: rows grouped by `keys`, averaged over seeds at each x."""
    missing = [c for c in keys + [y] + ([x] if x else []) if c not in table.columns]
    if missing:
        raise InputError(f"compare: the table has no column {missing[0]!r}")
    x_col = x or "__point"
    if x is None:  # a table of points: one x for all
        table = table.assign(**{x_col: 0.0})
    per_x = table.groupby(keys + [x_col], dropna=False)[y]
    stats = per_x.agg(mean="mean", sd="std", n="count").reset_index()
    if seed is None:
        stats["n"] = 1
    out = {}
    for key, sub in stats.groupby(keys, dropna=False, sort=True):
        sub = sub.sort_values(x_col)
        key = key if isinstance(key, tuple) else (key,)
        out[key] = Curve(sub[x_col].to_numpy(float), sub["mean"].to_numpy(float),
                         sub["sd"].fillna(0.0).to_numpy(float), int(sub["n"].min()))
    return out


def _at(curve: Curve, xs: np.ndarray, log_x: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of a curve at xs (inside its range), interpolated linearly in x or log x."""
    if len(curve.x) == 1:
        return np.full(len(xs), curve.mean[0]), np.full(len(xs), curve.sd[0])
    if log_x:
        return at_flops(xs, curve.x, curve.mean), at_flops(xs, curve.x, curve.sd)
    return np.interp(xs, curve.x, curve.mean), np.interp(xs, curve.x, curve.sd)


def _not_compared(verdict: str) -> dict[str, Any]:
    return {"verdict": verdict, "x_from": np.nan, "x_to": np.nan, "points": 0,
            "max_abs_delta": np.nan, "mean_delta": np.nan, "tolerance": ""}


def compare_curve(base: Curve, other: Curve, *, log_x: bool, tol: Tolerance) -> dict[str, Any]:
    """Δ = other − base at equal x over the common range, and the verdict."""
    lo, hi = max(base.x.min(), other.x.min()), min(base.x.max(), other.x.max())
    if lo > hi:
        return _not_compared("no common x range")
    xs = np.union1d(base.x, other.x)
    xs = xs[(xs >= lo) & (xs <= hi)]
    mean_b, sd_b = _at(base, xs, log_x)
    mean_o, sd_o = _at(other, xs, log_x)
    delta = mean_o - mean_b
    seeded = max(base.seeds, other.seeds) >= 2
    if seeded:
        sigma = np.maximum(sd_b, sd_o)
        allowed = tol.seed_factor * sigma + tol.floor
    else:
        allowed = np.full(len(xs), tol.absolute)
    worst = int(np.argmax(np.abs(delta)))
    agrees = bool(np.all(np.abs(delta) <= allowed + 1e-12))
    return {"verdict": "agrees" if agrees else f"differs (Δ = {delta[worst]:+.4g})",
            "x_from": float(lo), "x_to": float(hi), "points": len(xs),
            "max_abs_delta": float(np.abs(delta).max()), "mean_delta": float(delta.mean()),
            "tolerance": tol.describe(seeded)}


def compare_tables(runs: dict[str, pd.DataFrame], baseline: str, *, keys: list[str], y: str,
                   x: str | None = None, seed: str | None = None, log_x: bool = False,
                   tol: Tolerance = Tolerance()) -> pd.DataFrame:
    """One row per (run, curve): every run against `baseline`, curves matched by `keys`."""
    if baseline not in runs:
        raise InputError(f"compare.baseline: {baseline!r} is not among the runs "
                         f"({', '.join(runs)})")
    found = {name: curves(table, keys, y, x, seed) for name, table in runs.items()}
    rows = []
    for name in runs:
        if name == baseline:
            continue
        base, other = found[baseline], found[name]
        for key in sorted(set(base) | set(other), key=str):
            row = {"run": name, "baseline": baseline, **dict(zip(keys, key)), "metric": y}
            if key not in other or key not in base:
                row.update(_not_compared(f"only in run {baseline if key in base else name}"))
            else:
                row.update(compare_curve(base[key], other[key], log_x=log_x, tol=tol))
            rows.append(row)
    return pd.DataFrame(rows)
