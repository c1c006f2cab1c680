"""Where mapping pays: the IVF gain of mapped queries over natural ones against the number of
keys, per model size and query mode, with its interval, and the trend read out beyond.

A model of size ρ costs about ρ·n·d·2 FLOPs, i.e. ρ·√n probes of an IVF with √n lists of √n
keys: its cost grows with n like the index's, so whether mapping pays at a given n is a race
between that cost and how much sooner ŷ finds y*. Per dataset of the study (one generator at
growing n), model and query mode (mapped; probe_mapped: ŷ chooses the lists, x ranks their
keys) this module gives the gain in recall@(0.01 % of n) at equal FLOPs on the paper's IVF —
per test question, bootstrapped (reporting.statistics) — and a verdict: holds when the whole
interval is above 0, fails when it is all below, undecided otherwise or when the model is off
its plateau (the study's rule: validation E_rel moved by less than a tolerance over the last
fraction of training). The trend is a weighted line in log10 n through the per-n estimates;
its crossover and its value at `predict_at` keys get percentile intervals from a parametric
bootstrap of the per-n intervals (independent datasets), widened by the line's misfit (reduced
χ² above 1), and are reported as what the line predicts, never as a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..core.runs import SIZES
from ..core.stage_settings import RegimeSettings
from .evidence import gain_interval
from .results import paper_ivf
from .selection import variant_of
from .statistics import UNDECIDED, Interval, judge

#: the model's query modes of the study, in the order shown
MODES = {"mapped": "mapped ŷ", "probe_mapped": "probe with ŷ, rank with x"}
#: parametric bootstrap draws of the trend
TREND_DRAWS = 4000
Z95 = 1.959964


@dataclass(frozen=True)
class Plateau:
    """Whether a model's validation E_rel had settled when its training ended."""

    reached: bool
    moved: float  # |last − first| validation E_rel in the window
    first_step: int
    last_step: int
    evaluations: int

    def text(self) -> str:
        if self.evaluations < 2:
            return f"not checked ({self.evaluations} evaluation in the window)"
        word = "reached" if self.reached else "not reached"
        return f"{word}: moved {self.moved:.3f} over steps {self.first_step:,}–{self.last_step:,}"


def plateau(history: pd.DataFrame, fraction: float, tolerance: float) -> Plateau:
    """The plateau rule on a validation history (columns step, e_rel): over the last `fraction`
    of the steps trained, E_rel moved (first to last evaluation there) by less than
    `tolerance`; fewer than two evaluations in the window is not a plateau."""
    h = history.dropna(subset=["e_rel"]).sort_values("step") if len(history) else history
    if not len(h):
        return Plateau(False, float("nan"), 0, 0, 0)
    last = int(h.step.iloc[-1])
    window = h[h.step >= (1 - fraction) * last]
    moved = abs(float(window.e_rel.iloc[-1]) - float(window.e_rel.iloc[0]))
    return Plateau(len(window) >= 2 and moved < tolerance, moved, int(window.step.iloc[0]), last,
                   len(window))


def _scan_width(natural: pd.DataFrame) -> float:
    """d from a natural row's counted FLOPs (2·(nlist + scanned)·d, models.flops.ivf_flops)."""
    row = natural.iloc[0]
    return float(row.flops_search) / (2.0 * (float(row.nlist) + float(row.ndis_per_query)))


def regime_table(res: Any, settings: RegimeSettings) -> pd.DataFrame:
    """One row per (dataset, model variant, query mode) of the study: n, nlist, the judged
    recall, the model's cost (ρ, FLOPs, probes), its test E_rel and MRR, its plateau, and the
    gain over natural at equal FLOPs with its interval and verdict (res: claims.Results)."""
    rows = []
    ivf = res.ivf
    if not len(ivf):
        return pd.DataFrame()
    for dataset in settings.datasets:
        v = paper_ivf(ivf[ivf.dataset == dataset])
        if not len(v):
            continue
        v["variant"] = v.file.astype(str).map(variant_of)
        natural = v[v["query"] == "natural"]
        if not len(natural):
            continue
        n_keys, nlist = int(v.n_keys.iloc[0]), int(v.nlist.iloc[0])
        k = settings.judged_k(n_keys)
        recall = f"recall@{k}"
        if recall not in v:
            raise InputError(f"datasets.{dataset}.ivf.recall_at: the study judges recall@{k} "
                             f"(figures.regime.recall_fraction × {n_keys:,} keys); add {k}")
        probe_cost = 2.0 * _scan_width(natural) * n_keys / nlist  # one probe of an average list
        m = res.metrics[res.metrics.dataset == dataset] if len(res.metrics) else res.metrics
        plateaus = {}  # variant -> its runs' plateau checks, shared by its query modes
        for (variant, query), rows_ in v[v["query"].isin(list(MODES))].groupby(["variant", "query"]):
            first = rows_.iloc[0]
            model = m[m.run.map(variant_of) == variant] if len(m) else m
            if variant not in plateaus:
                plateaus[variant] = [plateau(res.histories.get(run, pd.DataFrame()),
                                             settings.plateau_fraction, settings.plateau_tolerance)
                                     for run in model.run]
            checks = plateaus[variant]
            iv = gain_interval(res.evidence, "ivf", dataset, natural, rows_, recall)
            if not checks:
                value, reason = UNDECIDED, "no metrics of the model"
            elif not all(c.reached for c in checks):
                value, reason = UNDECIDED, "the model is off its plateau"
            elif isinstance(iv, str):
                value, reason = UNDECIDED, iv
            else:
                value, reason = judge(iv, 0.0, "above")
            rows.append({
                "dataset": dataset, "n_keys": n_keys, "nlist": nlist, "recall": recall,
                "model": first.model, "size": first["size"], "variant": variant, "query": query,
                "rho": SIZES.get(str(first["size"]), np.nan),
                "flops_model": float(first.flops_model),
                "model_probes": float(first.flops_model) / probe_cost,
                "test_e_rel": float(model.e_rel.mean()) if len(model) else np.nan,
                "test_mrr": float(model.mrr.mean()) if len(model) else np.nan,
                "plateau": "; ".join(c.text() for c in checks) or "no history",
                "gain": iv.estimate if isinstance(iv, Interval) else np.nan,
                "gain_low": iv.low if isinstance(iv, Interval) else np.nan,
                "gain_high": iv.high if isinstance(iv, Interval) else np.nan,
                "questions": iv.questions if isinstance(iv, Interval) else 0,
                "seeds": iv.seeds if isinstance(iv, Interval) else 0,
                "verdict": value, "reason": reason})
    table = pd.DataFrame(rows)
    return table.sort_values(["model", "size", "query", "n_keys"], kind="stable") if len(table) else table


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    """2.5 and 97.5 percentiles, with ±inf kept (a draw without a crossing is beyond every n)."""
    return (float(np.percentile(values, 2.5, method="lower")),
            float(np.percentile(values, 97.5, method="higher")))


def trend(table: pd.DataFrame, settings: RegimeSettings, seed: int = 0) -> pd.DataFrame:
    """Per (model, size, query): the weighted line of gain against log10 n through the judged
    points (their interval's width as the standard error), where it crosses 0 going up (the n
    from which mapping pays) and its value at settings.predict_at, each with a 95 % interval
    from a parametric bootstrap of the points; one n gives no trend."""
    rows = []
    if not len(table):
        return pd.DataFrame()
    rng = np.random.default_rng(seed)
    for (model, size, query), t in table.groupby(["model", "size", "query"], sort=False):
        t = t.dropna(subset=["gain", "gain_low", "gain_high"])
        base = {"model": model, "size": size, "query": query, "points": len(t),
                "n_range": (f"{int(t.n_keys.min()):,}–{int(t.n_keys.max()):,}" if len(t) else "—")}
        if t.n_keys.nunique() < 2:
            rows.append({**base, "slope_per_decade": np.nan, "misfit": np.nan,
                         "crossover": "one n: no trend", "crossover_n": np.nan,
                         "crossover_low": np.nan, "crossover_high": np.nan,
                         "predicted_gain": np.nan, "predicted_low": np.nan, "predicted_high": np.nan,
                         "predicted_side": "no trend"})
            continue
        x = np.log10(t.n_keys.to_numpy(float))
        y = t.gain.to_numpy(float)
        se = np.maximum((t.gain_high - t.gain_low).to_numpy(float) / (2 * Z95), 1e-9)
        misfit = _misfit(x, y, se)
        se = se * np.sqrt(max(1.0, misfit))  # a line that misses its points is that much less sure
        draws = y + se * rng.standard_normal((TREND_DRAWS, len(y)))
        slope, intercept = _weighted_lines(x, np.vstack([y, draws]), 1.0 / se ** 2)
        target = np.log10(settings.predict_at)
        predicted = intercept + slope * target
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = np.where(slope > 0, -intercept / slope, np.inf)  # log10 n where the line rises through 0
        low, high = _percentiles(predicted[1:])
        c_low, c_high = _percentiles(cross[1:])
        rows.append({**base, "slope_per_decade": float(slope[0]), "misfit": misfit,
                     "crossover": _crossover_text(cross[0], c_low, c_high),
                     "crossover_n": 10 ** cross[0], "crossover_low": 10 ** c_low,
                     "crossover_high": 10 ** c_high,
                     "predicted_gain": float(predicted[0]), "predicted_low": low,
                     "predicted_high": high, "predicted_side": _side(low, high)})
    return pd.DataFrame(rows)


def _misfit(x: np.ndarray, y: np.ndarray, se: np.ndarray) -> float:
    """The reduced χ² of the weighted line through the points: above 1, the points scatter
    about the line more than their intervals allow (NaN for two points, which a line fits
    exactly)."""
    if len(x) < 3:
        return float("nan")
    slope, intercept = _weighted_lines(x, y[None, :], 1.0 / se ** 2)
    residual = (y - (intercept[0] + slope[0] * x)) / se
    return float(np.sum(residual ** 2) / (len(x) - 2))


def _side(low: float, high: float) -> str:
    """Where an extrapolated interval lies: a prediction to check, not a verdict."""
    return "above 0" if low > 0 else "below 0" if high < 0 else "straddles 0"


def _weighted_lines(x: np.ndarray, ys: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slope, intercept) of the weighted least-squares line through (x, y) for every row of ys."""
    xm = np.sum(w * x) / np.sum(w)
    ym = (ys * w).sum(axis=1) / np.sum(w)
    slope = ((ys - ym[:, None]) * (w * (x - xm))).sum(axis=1) / np.sum(w * (x - xm) ** 2)
    return slope, ym - slope * xm


def _crossover_text(estimate: float, low: float, high: float) -> str:
    """Where the line crosses 0 going up, in keys: beyond 10⁹ keys is as good as never."""
    def n(value: float) -> str:
        return "never" if not np.isfinite(value) else ("beyond 10⁹" if value > 9 else f"{10 ** value:,.3g}")
    if not np.isfinite(estimate):
        return "none: the line falls with n"
    return f"n ≈ {n(estimate)} (95 %: {n(low)} to {n(high)})"


def answer(table: pd.DataFrame, lines: pd.DataFrame, settings: RegimeSettings) -> str:
    """The study's answer in one sentence per (size, mode)."""
    if not len(table):
        return "No IVF rows of the study's datasets were given."
    said = []
    for (model, size, query), t in table.groupby(["model", "size", "query"], sort=False):
        verdicts = ", ".join(f"{int(r.n_keys):,}: {r.verdict}" for r in t.itertuples())
        fit = lines[(lines.model == model) & (lines["size"] == size) & (lines["query"] == query)]
        extra = ""
        if len(fit) and fit.points.iloc[0] >= 2:
            f = fit.iloc[0]
            extra = (f"; trend: crossover {f.crossover}; at {settings.predict_at:,} keys the "
                     f"line reads {f.predicted_gain:+.3f} [{f.predicted_low:+.3f}, "
                     f"{f.predicted_high:+.3f}] ({f.predicted_side}; an extrapolation to check, "
                     f"not a verdict)")
        said.append(f"- {model} {size}, {MODES[query]}: {verdicts}{extra}.")
    return "\n".join(said)

