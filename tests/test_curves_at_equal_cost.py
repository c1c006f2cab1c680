"""Comparing runs curve by curve at equal cost, within seed noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amips_bench.comparing.curves import Tolerance, compare_tables
from amips_bench.core.errors import InputError

KEYS = ["dataset", "method", "size"]


def _routing_run(rng, seeds=(0,), spread=0.0, shift=None):
    """A routing-like table: accuracy against FLOPs for three methods, one row per seed."""
    rows = []
    for method, size, base in (("keynet", "S", 0.60), ("supportnet", "S", 0.55), ("centroid_ip", "", 0.50)):
        for seed in seeds:
            noise = rng.normal(0, spread, 5) if spread else np.zeros(5)
            for i, k in enumerate(range(1, 6)):
                acc = base + 0.08 * k + noise[i]
                if shift and shift[0] == method:
                    acc += shift[1]
                rows.append({"dataset": "d", "method": method, "size": size, "seed": seed,
                             "flops_total": 1e5 * k * (1.1 if method == "keynet" else 1.0),
                             "accuracy": acc})
    return pd.DataFrame(rows)


def _compare(runs, **kw):
    return compare_tables(runs, "reference", keys=KEYS, y="accuracy", x="flops_total",
                          seed="seed", log_x=True, **kw)


def test_a_run_compared_with_itself_agrees_everywhere_with_zero_delta():
    run = _routing_run(np.random.default_rng(0), seeds=(0, 1, 2), spread=0.01)
    out = _compare({"reference": run, "mine": run.copy()})
    assert len(out) == 3 and (out.verdict == "agrees").all()
    assert (out.max_abs_delta == 0).all() and (out.mean_delta == 0).all()


def test_exactly_the_shifted_curve_differs():
    rng = np.random.default_rng(1)
    ref = _routing_run(rng)
    shifted = _routing_run(rng, shift=("supportnet", 0.05))  # > the 0.02 absolute tolerance
    out = _compare({"reference": ref, "mine": shifted}).set_index("method")
    assert out.loc["supportnet", "verdict"] == "differs (Δ = +0.05)"
    assert (out.drop(index="supportnet").verdict == "agrees").all()
    assert out.loc["supportnet", "tolerance"] == "|Δ| ≤ 0.02 (absolute; fewer than 2 seeds)"


def test_the_tolerance_comes_from_the_seed_spread():
    """Three seeds with spread σ: a shift of 1.5σ agrees, one of 4σ differs; the row says so."""
    rng = np.random.default_rng(2)
    ref = _routing_run(rng, seeds=(0, 1, 2), spread=0.03)
    sigma = ref[ref.method == "keynet"].groupby("flops_total").accuracy.std().min()
    tol = Tolerance(seed_factor=2.0, floor=0.0)
    near = ref.assign(accuracy=ref.accuracy + np.where(ref.method == "keynet", 1.5 * sigma, 0.0))
    far = ref.assign(accuracy=ref.accuracy + np.where(ref.method == "keynet", 4.0 * sigma, 0.0))
    assert (_compare({"reference": ref, "mine": near}, tol=tol).verdict == "agrees").all()
    out = _compare({"reference": ref, "mine": far}, tol=tol).set_index("method")
    assert out.loc["keynet", "verdict"].startswith("differs")
    assert out.loc["keynet", "tolerance"] == "|Δ| ≤ 2·σ_seed + 0"


def test_values_are_compared_at_equal_flops_in_log_space():
    """y = log10(x) sampled at different FLOPs in the two runs: log-space interpolation makes
    them equal wherever both are defined, and only the overlap is compared."""
    a = pd.DataFrame({"dataset": "d", "method": "m", "size": "S", "seed": 0,
                      "flops_total": [1e3, 1e5, 1e7], "accuracy": [3.0, 5.0, 7.0]})
    b = pd.DataFrame({"dataset": "d", "method": "m", "size": "S", "seed": 0,
                      "flops_total": [1.5e3, 1e4, 1e6, 1e8], "accuracy": [np.log10(1.5e3), 4.0, 6.0, 8.0]})
    (row,) = _compare({"reference": a, "mine": b}).to_dict("records")
    assert row["verdict"] == "agrees" and row["max_abs_delta"] == pytest.approx(0, abs=1e-12)
    assert (row["x_from"], row["x_to"], row["points"]) == (1.5e3, 1e7, 5)


@pytest.mark.parametrize("decades, verdict", [
    ((3.0, 6.6), "agrees"),  # 3.6 of the baseline's 4 decades: 90 %
    ((5.0, 7.0), "shorter (covers 50% of the baseline's range; agrees)"),
    ((6.5, 6.5), "shorter (covers 0% of the baseline's range; agrees)"),  # cut to one point
])
def test_a_curve_that_lost_points_is_shorter_not_agreeing(decades, verdict):
    """A run whose curve covers less than 90 % of the baseline's log-FLOP range is "shorter",
    even where it agrees on what is left (a curve cut to one point would always agree); 90 %
    and more is compared as usual."""
    def curve(exponents):
        flops = 10.0 ** np.asarray(exponents)
        return pd.DataFrame({"dataset": "d", "method": "m", "size": "S", "seed": 0,
                             "flops_total": flops, "accuracy": np.log10(flops)})

    base = curve(np.linspace(3, 7, 9))
    lo, hi = decades
    (row,) = _compare({"reference": base, "mine": curve(sorted({lo, hi}))}).to_dict("records")
    assert row["verdict"] == verdict


def test_sigma_seed_counts_distinct_seeds_not_rows():
    """Two rows of the same seed (say two variants pooled by mistake) are one seed: no σ_seed
    tolerance, the absolute one."""
    rows = pd.DataFrame({"dataset": "d", "method": "m", "size": "S", "seed": [0, 0],
                         "flops_total": [1e3, 1e3], "accuracy": [0.5, 0.6]})
    (row,) = _compare({"reference": rows, "mine": rows.copy()}).to_dict("records")
    assert "absolute" in row["tolerance"]
    two = rows.assign(seed=[0, 1])
    (row,) = _compare({"reference": two, "mine": two.copy()}).to_dict("records")
    assert "σ_seed" in row["tolerance"]


def test_a_curve_in_one_run_only_is_listed_not_dropped():
    rng = np.random.default_rng(3)
    ref = _routing_run(rng)
    mine = ref[ref.method != "centroid_ip"]
    out = _compare({"reference": ref, "mine": mine}).set_index("method")
    assert out.loc["centroid_ip", "verdict"] == "only in run reference"
    extra = pd.concat([ref, ref.assign(method="oracle")])
    out = _compare({"reference": ref, "mine": extra})
    assert set(out[out.method == "oracle"].verdict) == {"only in run mine"}
    assert (out[out.method != "oracle"].verdict == "agrees").all()


def test_point_tables_compare_value_for_value_and_a_bad_baseline_is_one_line():
    a = pd.DataFrame({"dataset": ["d", "d"], "method": ["keynet", "supportnet"], "size": ["M", "M"],
                      "mrr": [0.40, 0.60]})
    b = a.assign(mrr=[0.40, 0.70])
    out = compare_tables({"reference": a, "mine": b}, "reference", keys=KEYS, y="mrr")
    assert list(out.verdict) == ["agrees", "differs (Δ = +0.1)"]
    with pytest.raises(InputError, match=r"^compare.baseline: 'paper' is not among the runs \(reference, mine\)$"):
        compare_tables({"reference": a, "mine": b}, "paper", keys=KEYS, y="mrr")


def test_a_swept_setting_averages_the_seeds_cost_and_measures_their_spread():
    """With `along` (k), each point is one k: x is the seeds' mean FLOPs (they differ a little
    from seed to seed), the value their mean and the spread their sample standard deviation."""
    from amips_bench.comparing.curves import curves

    table = pd.DataFrame({"method": ["m"] * 6, "seed": [0, 0, 1, 1, 2, 2], "k": [1, 2] * 3,
                          "flops_total": [100.0, 200.0, 110.0, 190.0, 90.0, 210.0],
                          "accuracy": [0.5, 0.7, 0.6, 0.8, 0.7, 0.9]})
    (curve,) = curves(table, ["method"], "accuracy", x="flops_total", seed="seed", along="k").values()
    assert np.allclose(curve.x, [100.0, 200.0]) and np.allclose(curve.mean, [0.6, 0.8])
    assert np.allclose(curve.sd, [0.1, 0.1]) and curve.seeds == 3 and curve.spread == "seeds"
    (single,) = curves(table[table.seed == 0], ["method"], "accuracy", x="flops_total",
                       seed="seed", along="k").values()
    assert single.spread is None and np.allclose(single.sd, 0.0)


def test_equal_costs_averaged_over_seeds_still_meet():
    """A single point whose cost is the same in every seed is compared even when the mean of
    the seeds' costs differs from it in the last bit (0.1 + 0.1 + 0.1 ≠ 3 × 0.1)."""
    x = 0.1 * 1e6
    base = pd.DataFrame({"dataset": "d", "method": "oracle", "size": "", "seed": [0, 1, 2],
                         "flops_total": [x, x, x + 1e-10], "accuracy": 1.0})
    mine = base.iloc[:1].assign(flops_total=x)
    (row,) = _compare({"reference": base, "mine": mine}).to_dict("records")
    assert row["verdict"] == "agrees" and row["points"] == 1
