"""Confidence intervals for the report's verdicts: a paired bootstrap over test questions.

Every claim compares numbers that are means over the same test questions (a model and a
baseline, mapped and natural queries, two model families). Resampling those questions, the
same draw for both sides, gives an interval for the difference that reflects how many
questions were asked and how much the two sides agree question by question. With at least
MIN_SEEDS training seeds it resamples the seeds too, so training variance is covered; with
fewer it resamples questions only and the interval says so (`Interval.covers`). Every seed's
model answers the same test questions, so one draw of questions serves all drawn seeds (seeds
and questions are crossed). Checked by simulation (tests/test_statistics.py): 95 % intervals
cover a known difference of paired Bernoulli outcomes in 93-97 % of studies with one seed, and
with three seeds whose models differ; where seeds agree exactly the interval is conservative.

A verdict is read from the interval (`judge`): *holds* when the whole interval is on the
claim's side of its threshold, *fails* when it is all on the other side, *undecided* when it
straddles the threshold or cannot be computed (NaN). No default or fallback decides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

#: the nested bootstrap resamples seeds from this many seeds on (fewer: questions only)
MIN_SEEDS = 3
LEVEL = 0.95
REPLICATES = 1000
#: replicates whose statistic is undefined (NaN) beyond this share make the interval undefined
MAX_UNDEFINED = 0.01

HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"


@dataclass(frozen=True)
class Interval:
    """An estimate and its bootstrap interval, with the evidence it rests on."""

    estimate: float
    low: float
    high: float
    questions: int
    seeds: int
    level: float = LEVEL

    @property
    def defined(self) -> bool:
        return bool(np.isfinite([self.estimate, self.low, self.high]).all())

    @property
    def covers(self) -> str:
        """What the interval's width accounts for."""
        if self.seeds >= MIN_SEEDS:
            return "question sampling and training variance (seeds and questions resampled)"
        return (f"question sampling only (fewer than {MIN_SEEDS} seeds: training variance "
                f"is not covered)")

    def text(self, fmt: str = "+.3f") -> str:
        """"+0.157 [+0.131, +0.184], 1,000 questions × 3 seeds"."""
        seeds = f"{self.seeds} seed{'' if self.seeds == 1 else 's'}"
        if not self.defined:
            return f"{self.estimate:{fmt}} [interval undefined], {self.questions:,} questions × {seeds}"
        return (f"{self.estimate:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}], "
                f"{self.questions:,} questions × {seeds}")


def _shape(samples: Mapping[str, np.ndarray]) -> tuple[int, int]:
    shapes = {np.shape(a)[:2] for a in samples.values()}
    if len(shapes) != 1 or any(len(s) < 2 for s in shapes):
        raise ValueError(f"bootstrap: every sample must be [seeds, questions, ...] of one shape, "
                         f"got {sorted(shapes)}")
    return next(iter(shapes))


def _draws(rng: np.random.Generator, n_seeds: int, n_questions: int, replicates: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `replicates` resamples: seeds [R, S, 1] and questions [R, S, N]. The
    questions are drawn once per replicate and shared by every seed (each seed's model
    answered the same test questions: seeds and questions are crossed, not nested); with
    MIN_SEEDS seeds or more the seeds are drawn with replacement too."""
    if n_seeds >= MIN_SEEDS:
        seeds = rng.integers(n_seeds, size=(replicates, n_seeds))[:, :, None]
    else:
        seeds = np.broadcast_to(np.arange(n_seeds)[None, :, None], (replicates, n_seeds, 1))
    questions = np.broadcast_to(rng.integers(n_questions, size=(replicates, 1, n_questions)),
                                (replicates, n_seeds, n_questions))
    return seeds, questions


def _interval(estimate: float, values: np.ndarray, n_questions: int, n_seeds: int,
              level: float) -> Interval:
    undefined = ~np.isfinite(values)
    if not np.isfinite(estimate) or undefined.mean() > MAX_UNDEFINED:
        return Interval(estimate, np.nan, np.nan, n_questions, n_seeds, level)
    low, high = np.quantile(values[~undefined], [(1 - level) / 2, (1 + level) / 2])
    return Interval(estimate, float(low), float(high), n_questions, n_seeds, level)


def bootstrap(statistic: Callable[[Mapping[str, np.ndarray]], float],
              samples: Mapping[str, np.ndarray], *, replicates: int = REPLICATES,
              level: float = LEVEL, seed: int = 0) -> Interval:
    """The statistic of `samples` (arrays [seeds, questions, ...], row s of every array from
    the same seed, column q from the same question: paired) with its percentile interval;
    every replicate draws one set of indices for all arrays (`_draws`)."""
    n_seeds, n_questions = _shape(samples)
    arrays = {k: np.asarray(v) for k, v in samples.items()}
    estimate = float(statistic(arrays))
    if not n_questions or not np.isfinite(estimate):
        return Interval(estimate, np.nan, np.nan, n_questions, n_seeds, level)
    seeds, questions = _draws(np.random.default_rng(seed), n_seeds, n_questions, replicates)
    values = np.array([statistic({k: a[seeds[r], questions[r]] for k, a in arrays.items()})
                       for r in range(replicates)])
    return _interval(estimate, values, n_questions, n_seeds, level)


def mean_of(name: str) -> Callable[[Mapping[str, np.ndarray]], float]:
    """The statistic "mean of sample `name` over seeds and questions" (NaN entries skipped)."""
    def statistic(arrays: Mapping[str, np.ndarray]) -> float:
        values = arrays[name]
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return statistic


def mean_interval(values: np.ndarray, *, replicates: int = REPLICATES, level: float = LEVEL,
                  seed: int = 0, chunk: int = 200) -> Interval:
    """Interval of the mean of per-(seed, question) values [seeds, questions] (NaN entries
    skipped): `bootstrap` of `mean_of`, with the replicates computed a chunk at a time."""
    v = np.asarray(values, dtype=np.float64)
    n_seeds, n_questions = _shape({"v": v})
    estimate = mean_of("v")({"v": v})
    if not n_questions or not np.isfinite(estimate):
        return Interval(estimate, np.nan, np.nan, n_questions, n_seeds, level)
    seeds, questions = _draws(np.random.default_rng(seed), n_seeds, n_questions, replicates)
    out = []
    with np.errstate(invalid="ignore"):
        for start in range(0, replicates, chunk):
            drawn = v[seeds[start:start + chunk], questions[start:start + chunk]]
            out.append(np.nanmean(drawn.reshape(len(drawn), -1), axis=1))
    return _interval(estimate, np.concatenate(out), n_questions, n_seeds, level)


def paired_difference(a: np.ndarray, b: np.ndarray, **kw) -> Interval:
    """Interval of mean(a) − mean(b) over the same seeds and questions ([seeds, questions]
    each; a question missing on either side is left out of both)."""
    return mean_interval(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), **kw)


# --------------------------------------------------------------------------- verdicts


def judge(interval: Interval | None, threshold: float, side: str,
          upper: float | None = None) -> tuple[str, str]:
    """(verdict, reason) of a claim "the value is `side` the threshold": side "above" (holds
    when the whole interval is above it), "below", or "within" [threshold, upper]. A bound that
    touches the threshold does not clear it; an undefined interval is undecided."""
    if interval is None or not interval.defined:
        return UNDECIDED, "the interval is undefined (missing or degenerate evidence)"
    low, high = interval.low, interval.high
    if side == "above":
        holds, fails = low > threshold, high < threshold
    elif side == "below":
        holds, fails = high < threshold, low > threshold
    elif side == "within" and upper is not None:
        holds = low > threshold and high < upper
        fails = high < threshold or low > upper
    else:
        raise ValueError(f"judge: unknown side {side!r}")
    if holds:
        return HOLDS, ""
    if fails:
        return FAILS, ""
    return UNDECIDED, "the interval straddles the claim's threshold"


def combine(verdicts: list[str]) -> str:
    """A claim of several parts: holds when every part holds, fails when one fails,
    undecided otherwise (and with no part at all)."""
    if not verdicts:
        return UNDECIDED
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else UNDECIDED


# --------------------------------------------------------------------------- equal FLOPs


def interp_rows(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp row by row: x [N, M] at the points xp [N, B] (non-decreasing in each row) with
    values fp [N, B]; constant beyond either end, as np.interp."""
    x, xp, fp = (np.asarray(a, dtype=np.float64) for a in (x, xp, fp))
    n_points = xp.shape[1]
    if n_points == 1:
        return np.repeat(fp, x.shape[1], axis=1)
    count = (xp[:, None, :] <= x[:, :, None]).sum(-1)  # [N, M]: points at or left of x
    hi = np.clip(count, 1, n_points - 1)
    lo = hi - 1
    x0, x1 = np.take_along_axis(xp, lo, 1), np.take_along_axis(xp, hi, 1)
    y0, y1 = np.take_along_axis(fp, lo, 1), np.take_along_axis(fp, hi, 1)
    span = x1 - x0
    t = np.clip(np.where(span > 0, (x - x0) / np.where(span > 0, span, 1.0), 1.0), 0.0, 1.0)
    y = y0 + t * (y1 - y0)
    y = np.where(count == 0, fp[:, :1], y)
    return np.where(count >= n_points, fp[:, -1:], y)


def gain_at_equal_flops(flops: np.ndarray, value: np.ndarray, base_flops: np.ndarray,
                        base_value: np.ndarray) -> np.ndarray:
    """Per question, the mean over a curve's operating points of its value minus the base
    curve's value at the same FLOPs, the base interpolated in log-FLOPs per question.

    flops, value [..., N, B]; base_flops, base_value [..., N, B'] (leading axes broadcast).
    Only operating points whose mean FLOPs lie inside the base's mean FLOP range count (the
    curves are compared where both exist); with none, every gain is NaN."""
    flops, value = np.asarray(flops, np.float64), np.asarray(value, np.float64)
    base_flops, base_value = np.asarray(base_flops, np.float64), np.asarray(base_value, np.float64)
    lead = np.broadcast_shapes(flops.shape[:-1], base_flops.shape[:-1])
    flops, value = np.broadcast_to(flops, lead + flops.shape[-1:]), np.broadcast_to(value, lead + value.shape[-1:])
    base_flops = np.broadcast_to(base_flops, lead + base_flops.shape[-1:])
    base_value = np.broadcast_to(base_value, lead + base_value.shape[-1:])
    axes = tuple(range(len(lead)))
    mean_flops, base_mean = flops.mean(axis=axes), base_flops.mean(axis=axes)
    inside = (mean_flops >= base_mean.min()) & (mean_flops <= base_mean.max())
    if not inside.any():
        return np.full(lead, np.nan)
    order = np.argsort(base_mean, kind="stable")
    xp = np.log(np.maximum(base_flops[..., order], 1.0)).reshape(-1, len(order))
    xp = np.maximum.accumulate(xp, axis=1)  # a question's FLOPs never fall with the budget
    fp = base_value[..., order].reshape(-1, len(order))
    x = np.log(np.maximum(flops[..., inside], 1.0)).reshape(-1, int(inside.sum()))
    there = interp_rows(x, xp, fp).reshape(lead + (int(inside.sum()),))
    return (value[..., inside] - there).mean(-1)
