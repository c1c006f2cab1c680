"""The report's intervals: bootstrap coverage on simulated studies, verdicts read from intervals,
per-question interpolation at equal FLOPs against np.interp."""

from __future__ import annotations

import math

import numpy as np
import pytest

from amips_bench.reporting.statistics import (
    FAILS,
    HOLDS,
    UNDECIDED,
    Interval,
    bootstrap,
    combine,
    gain_at_equal_flops,
    interp_rows,
    judge,
    mean_interval,
    mean_of,
    paired_difference,
)

NORMAL_70 = 0.5244005127080407  # the standard normal's 0.7 quantile
NORMAL_60 = 0.2533471031357997  # its 0.6 quantile


def _phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf)(np.asarray(x) / math.sqrt(2)))


def _study(rng, seeds: int, questions: int, seed_sd: float, noise: float = 0.5):
    """Paired 0/1 outcomes of a model (per seed) and a baseline on the same questions: a shared
    question difficulty, per-answer noise and a per-seed shift of the model's ability."""
    difficulty = rng.standard_normal(questions)
    scale = math.sqrt(1 + noise ** 2)
    shift = rng.normal(0.0, seed_sd, (seeds, 1))
    model = (difficulty + noise * rng.standard_normal((seeds, questions))
             < NORMAL_70 * scale + shift).astype(float)
    baseline = np.broadcast_to((difficulty < NORMAL_60).astype(float), (seeds, questions))
    return model, baseline


def _true_difference(seed_sd: float, noise: float = 0.5) -> float:
    """Model minus baseline accuracy in the population of seeds and questions."""
    scale = math.sqrt(1 + noise ** 2)
    shifts = np.random.default_rng(0).normal(0.0, seed_sd, 200_000) if seed_sd else np.zeros(1)
    return float(_phi((NORMAL_70 * scale + shifts) / scale).mean() - 0.6)


@pytest.mark.parametrize("seeds, seed_sd", [(1, 0.0), (3, 0.05)])
def test_the_paired_interval_covers_a_known_difference_95_percent_of_the_time(seeds, seed_sd):
    """500 simulated studies of 500 questions: the 95 % interval of model − baseline contains
    the true difference in 93-97 % of them. One seed: question sampling only; three seeds
    whose models differ: seeds resampled too."""
    rng = np.random.default_rng(7)
    truth = _true_difference(seed_sd)
    studies = 500
    covered = 0
    for study in range(studies):
        model, baseline = _study(rng, seeds, 500, seed_sd)
        interval = paired_difference(model, baseline, seed=study)
        assert interval.seeds == seeds and interval.questions == 500
        covered += interval.low <= truth <= interval.high
    assert 0.93 <= covered / studies <= 0.97, covered / studies


def test_three_seeds_that_disagree_widen_the_interval_and_say_so():
    rng = np.random.default_rng(3)
    model, baseline = _study(rng, 3, 1000, 0.0)
    agree = paired_difference(model, baseline)
    shifted = model.copy()
    shifted[0] = (rng.random(1000) < 0.95).astype(float)  # one seed far better than the others
    disagree = paired_difference(shifted, baseline)
    assert disagree.high - disagree.low > 1.5 * (agree.high - agree.low)
    assert "training variance" in disagree.covers and "not covered" not in disagree.covers
    one = paired_difference(model[:1], baseline[:1])
    assert "not covered" in one.covers


def test_the_chunked_mean_equals_the_generic_bootstrap():
    values = np.random.default_rng(1).random((3, 300))
    values[1, 5] = np.nan  # a question without a defined value is skipped, not counted as 0
    assert mean_interval(values, seed=4) == bootstrap(mean_of("v"), {"v": values}, seed=4)


def test_interval_text_names_estimate_bounds_questions_and_seeds():
    text = Interval(0.157, 0.131, 0.184, 1000, 3).text()
    assert text == "+0.157 [+0.131, +0.184], 1,000 questions × 3 seeds"
    assert "undefined" in Interval(0.1, np.nan, np.nan, 10, 1).text()


@pytest.mark.parametrize("low, high, side, expected", [
    (0.11, 0.2, "above", HOLDS), (0.0, 0.09, "above", FAILS), (0.05, 0.15, "above", UNDECIDED),
    (0.1, 0.2, "above", UNDECIDED),  # touching the threshold does not clear it
    (-0.3, -0.2, "below", HOLDS), (0.2, 0.3, "below", FAILS), (-0.1, 0.3, "below", UNDECIDED),
])
def test_a_verdict_holds_or_fails_only_when_the_whole_interval_is_on_one_side(low, high, side, expected):
    threshold = 0.1 if side == "above" else 0.0
    assert judge(Interval((low + high) / 2, low, high, 100, 1), threshold, side)[0] == expected


def test_within_a_band_and_undefined_intervals():
    assert judge(Interval(0.02, 0.01, 0.03, 9, 1), 0.0, "within", 0.05)[0] == HOLDS
    assert judge(Interval(0.08, 0.06, 0.1, 9, 1), 0.0, "within", 0.05)[0] == FAILS
    assert judge(Interval(0.04, 0.01, 0.07, 9, 1), 0.0, "within", 0.05)[0] == UNDECIDED
    assert judge(Interval(np.nan, np.nan, np.nan, 0, 0), 0.0, "above")[0] == UNDECIDED
    assert judge(None, 0.0, "above")[0] == UNDECIDED
    assert combine([HOLDS, HOLDS]) == HOLDS and combine([HOLDS, UNDECIDED]) == UNDECIDED
    assert combine([UNDECIDED, FAILS]) == FAILS and combine([]) == UNDECIDED


def test_row_interpolation_equals_np_interp_on_random_curves():
    rng = np.random.default_rng(0)
    xp = np.sort(rng.random((40, 7)), axis=1)
    xp[:, 3] = xp[:, 2]  # a repeated abscissa (an empty list probed)
    fp = rng.random((40, 7))
    x = rng.random((40, 9)) * 1.4 - 0.2  # inside and beyond both ends
    expected = np.array([np.interp(x[i], xp[i], fp[i]) for i in range(40)])
    np.testing.assert_allclose(interp_rows(x, xp, fp), expected, atol=1e-12)


def test_the_gain_at_equal_flops_per_question_by_hand():
    """Question 0's base curve goes 0 -> 1 between 100 and 10,000 FLOPs, so at 1,000 (the
    log-midpoint) it is 0.5; the curve's point there is a hit: gain 0.5. The point at 10^6
    lies beyond the base's range and does not count."""
    base_flops = np.array([[1e2, 1e4], [1e2, 1e4]])
    base_value = np.array([[0.0, 1.0], [1.0, 1.0]])
    flops = np.array([[1e3, 1e6], [1e3, 1e6]])
    value = np.array([[1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(gain_at_equal_flops(flops, value, base_flops, base_value), [0.5, -1.0])
    far = gain_at_equal_flops(flops * 1e6, value, base_flops, base_value)
    assert np.isnan(far).all()  # no common FLOP range: no gain, never a zero
