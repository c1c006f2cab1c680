"""Comparing runs: the curves behind a figure, matched across runs and judged within seed noise.

A curve is one line of a figure: the rows of a tidy table that share the `keys` (dataset,
method, setting, metric, ...), with `x` the cost axis (FLOPs, training step, noise std) and `y`
the value plotted. Runs are compared with a baseline run curve by curve, at equal x: both curves
are interpolated (in log-space for FLOP axes) on the union of their x values inside the range
both cover; a table without `x` is compared point for point. A curve's tolerance comes from the
spread of its seeds where either run has two or more (|Δ| ≤ factor·σ_seed + floor at every
compared x), or from a measured spread of repeats (Table 1's timed pairs), else from a stated
absolute tolerance; every row says which one it used. A curve
present in only one run is a row of its own ("only in run X"), never dropped; a curve whose x
range covers less than `SHORTER_THAN` of the baseline's (in log-space on FLOP axes) is
"shorter", since agreeing over a common range cut to a point proves nothing. σ_seed is the
spread over distinct seeds: a seed counted twice is still one seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..reporting.results import at_flops

#: where a curve's spread comes from, as the verdicts state it
SPREAD_NAMES = {"seeds": "σ_seed", "repeats": "σ_repeats"}
#: a compared curve whose x range covers less of the baseline's than this is "shorter"
SHORTER_THAN = 0.9


@dataclass(frozen=True)
class Tolerance:
    """How far two curves may be apart and still agree."""

    seed_factor: float = 2.0  # |Δ| ≤ seed_factor·σ + floor where a spread was measured
    floor: float = 0.005  # absolute slack under the spread term (BLAS builds, thread counts)
    absolute: float = 0.02  # |Δ| ≤ absolute where neither run measured a spread

    def describe(self, spread: str | None) -> str:
        if spread:
            return f"|Δ| ≤ {self.seed_factor:g}·{SPREAD_NAMES[spread]} + {self.floor:g}"
        return f"|Δ| ≤ {self.absolute:g} (absolute; fewer than 2 seeds)"


@dataclass
class Curve:
    """Mean and spread of one curve at each of its x values (sorted by x)."""

    x: np.ndarray
    mean: np.ndarray
    sd: np.ndarray  # 0 where nothing was measured
    seeds: int  # the smallest number of seeds behind any point
    spread: str | None = None  # "seeds" (≥ 2 seeds), "repeats" (a timed spread) or None


def curves(table: pd.DataFrame, keys: list[str], y: str, x: str | None = None,
           seed: str | None = None, along: str | None = None,
           spread: str | None = None) -> dict[tuple, Curve]:
    """The curves of a tidy table: rows grouped by `keys`, averaged over seeds.

    A curve's points are the values of `along` (k, nprobe, efSearch), or of `x` itself when
    `along` is None; with `along`, x is the seeds' mean cost at that point (FLOPs differ a
    little from seed to seed). Without `x` a table is compared point for point. `spread` names
    a column holding a measured standard deviation per row (timing repeats), used instead of
    the seeds' spread.
    """
    needed = keys + [y] + [c for c in (x, along, spread) if c]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError(f"compare: the table has no column {missing[0]!r}")
    table = table[table[y].notna()]
    point = along or x or "__point"
    if point == "__point":
        table = table.assign(__point=0.0)
    if x is not None:
        table = table[table[x].notna()]
    per_point = table.groupby(keys + [point], dropna=False)
    stats = per_point[y].agg(mean="mean", sd="std", n="count")
    if seed is not None and seed in table:
        stats["n"] = per_point[seed].nunique()
    stats["x"] = per_point[x].mean() if x else stats.index.get_level_values(point)
    # a mean of equal costs can differ from the cost in the last bit: 12 significant digits
    stats["x"] = [float(f"{v:.12g}") for v in stats["x"]]
    if spread:
        stats["sd"] = per_point[spread].mean()
    stats = stats.reset_index()
    if seed is None:
        stats["n"] = 1
    out = {}
    for key, sub in stats.groupby(keys, dropna=False, sort=True):
        sub = sub.sort_values("x")
        key = key if isinstance(key, tuple) else (key,)
        seeds = int(sub["n"].min())
        source = "repeats" if spread else ("seeds" if seeds >= 2 else None)
        out[key] = Curve(sub["x"].to_numpy(float), sub["mean"].to_numpy(float),
                         sub["sd"].fillna(0.0).to_numpy(float), seeds, source)
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


def coverage(base: Curve, other: Curve, log_x: bool) -> float:
    """The share of the baseline's x range (log range on FLOP axes) that `other` covers."""
    scale = np.log if log_x else (lambda v: v)
    b_lo, b_hi = scale(base.x.min()), scale(base.x.max())
    o_lo, o_hi = scale(other.x.min()), scale(other.x.max())
    if b_hi == b_lo:
        return 1.0 if o_lo <= b_lo <= o_hi else 0.0
    return float(max(0.0, min(b_hi, o_hi) - max(b_lo, o_lo)) / (b_hi - b_lo))


def compare_curve(base: Curve, other: Curve, *, log_x: bool, tol: Tolerance) -> dict[str, Any]:
    """Δ = other − base at equal x over the common range, and the verdict."""
    lo, hi = max(base.x.min(), other.x.min()), min(base.x.max(), other.x.max())
    if lo > hi:
        return _not_compared("no common x range")
    covered = coverage(base, other, log_x)
    xs = np.union1d(base.x, other.x)
    xs = xs[(xs >= lo) & (xs <= hi)]
    mean_b, sd_b = _at(base, xs, log_x)
    mean_o, sd_o = _at(other, xs, log_x)
    delta = mean_o - mean_b
    spread = base.spread or other.spread
    if spread:
        allowed = tol.seed_factor * np.maximum(sd_b, sd_o) + tol.floor
    else:
        allowed = np.full(len(xs), tol.absolute)
    worst = int(np.argmax(np.abs(delta)))
    agrees = bool(np.all(np.abs(delta) <= allowed + 1e-12))
    verdict = "agrees" if agrees else f"differs (Δ = {delta[worst]:+.4g})"
    if covered < SHORTER_THAN - 1e-9:
        verdict = f"shorter (covers {covered:.0%} of the baseline's range; {verdict})"
    return {"verdict": verdict,
            "x_from": float(lo), "x_to": float(hi), "points": len(xs),
            "max_abs_delta": float(np.abs(delta).max()), "mean_delta": float(delta.mean()),
            "tolerance": tol.describe(spread)}


def check_baseline(baseline: str, runs) -> None:
    if baseline not in runs:
        raise InputError(f"compare.baseline: {baseline!r} is not among the runs "
                         f"({', '.join(runs)})")


def compare_tables(runs: dict[str, pd.DataFrame], baseline: str, *, keys: list[str], y: str,
                   x: str | None = None, seed: str | None = None, along: str | None = None,
                   spread: str | None = None, log_x: bool = False,
                   tol: Tolerance = Tolerance()) -> pd.DataFrame:
    """One row per (run, curve): every run against `baseline`, curves matched by `keys`."""
    check_baseline(baseline, runs)
    found = {name: curves(table, keys, y, x, seed, along, spread) for name, table in runs.items()}
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
