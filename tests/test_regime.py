"""Where mapping pays: the plateau rule, the per-(n, model, mode) verdicts from per-question
evidence, and the trend in log n with its crossover and read-out, against analytic values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amips_bench.core.errors import InputError
from amips_bench.core.stage_settings import RegimeSettings
from amips_bench.reporting.claims import Results
from amips_bench.reporting.evidence import QuestionEvidence
from amips_bench.reporting.regime import plateau, regime_table, trend
from amips_bench.reporting.statistics import FAILS, HOLDS, UNDECIDED

SETTINGS = RegimeSettings(datasets=("r20k", "r500k"))


def test_the_plateau_rule_reads_the_last_fraction_of_the_validation_history():
    steps = np.arange(0, 4001, 250)
    settled = pd.DataFrame({"step": steps, "e_rel": -1.0 + 0.5 * np.exp(-steps / 300)})
    still_falling = pd.DataFrame({"step": steps, "e_rel": -steps / 2000})
    rule = plateau(settled, 0.25, 0.02)
    assert rule.reached and rule.first_step == 3000 and rule.last_step == 4000 and rule.evaluations == 5
    falling = plateau(still_falling, 0.25, 0.02)
    assert not falling.reached and falling.moved == pytest.approx(0.5)
    assert not plateau(still_falling.tail(1), 0.25, 0.02).reached  # one evaluation decides nothing


def _curve_rows(dataset, n, nlist, query, variant, budgets, flops_model, recall_k):
    return [{"dataset": dataset, "index": "ivf", "quantizer": "spherical", "paper_setup": True,
             "nlist": nlist, "n_keys": n, "query": query, "budget": b,
             "model": "" if variant is None else "keynet", "size": "" if variant is None else "XS",
             "depth": 8, "n_x": 2, "seed": 0 if variant else np.nan,
             "file": "natural" if variant is None else f"{variant}_s0",
             "flops_model": flops_model, "flops_search": 2.0 * (nlist + b * n / nlist) * 16,
             "ndis_per_query": b * n / nlist, "flops_total": flops_model + 2.0 * (nlist + b * n / nlist) * 16,
             f"recall@{recall_k}": 0.5, "mrr": 0.5} for b in budgets]


def _study(gains: dict[int, float], plateau_moves: float = 0.0, questions: int = 400):
    """Natural and one KeyNet XS (mapped and probe_mapped) per n; the mapped curves find y*
    on a question where natural does, plus `gain` more of the questions at every budget."""
    rng = np.random.default_rng(0)
    rows, sources, metrics, histories = [], {}, [], {}
    for n, gain in gains.items():
        dataset, nlist = f"r{n // 1000}k", int(round(np.sqrt(n)))
        k = SETTINGS.judged_k(n)
        budgets = [1, 2, 4, 8]
        u = rng.random(questions)
        natural_p = [0.2, 0.4, 0.6, 0.8]
        scan = np.array([2.0 * (nlist + b * n / nlist) * 16 for b in budgets])
        rows += _curve_rows(dataset, n, nlist, "natural", None, budgets, 0.0, k)
        sources[("ivf", dataset, "natural")] = {
            f"ivf|spherical|{nlist}|natural|rank": np.array([np.where(u < p, 1.0, np.inf) for p in natural_p], np.float32),
            f"ivf|spherical|{nlist}|natural|flops": np.repeat(scan[:, None], questions, 1).astype(np.float32)}
        variant = "keynet_XS_L8_nx2_c1"
        arrays = {}
        for query in ("mapped", "probe_mapped"):
            rows += _curve_rows(dataset, n, nlist, query, variant, budgets, 0.0, k)
            key = f"ivf|spherical|{nlist}|{query}"
            arrays[f"{key}|rank"] = np.array([np.where(u < min(1.0, p + gain), 1.0, np.inf)
                                              for p in natural_p], np.float32)
            arrays[f"{key}|flops"] = np.repeat(scan[:, None], questions, 1).astype(np.float32)
        sources[("ivf", dataset, f"{variant}_s0")] = arrays
        run = f"{dataset}/{variant}_s0"
        metrics.append({"dataset": dataset, "model": "keynet", "size": "XS", "clusters": 1, "seed": 0,
                        "e_rel": -1.0, "mrr": 0.5, "run": run})
        histories[run] = pd.DataFrame({"step": [0, 3000, 4000], "e_rel": [0.0, -1.0, -1.0 - plateau_moves]})
    ivf = pd.DataFrame(rows)
    return Results(pd.DataFrame(metrics), histories, pd.DataFrame(), ivf, pd.DataFrame(),
                   pd.DataFrame(), {}, {}, {}, QuestionEvidence(sources))


def test_each_n_model_and_mode_gets_its_verdict_from_the_questions():
    table = regime_table(_study({20000: -0.15, 500000: 0.15}), SETTINGS)
    assert set(table["query"]) == {"mapped", "probe_mapped"} and len(table) == 4
    by_n = table.groupby("n_keys").verdict.agg(set).to_dict()
    assert by_n == {20000: {FAILS}, 500000: {HOLDS}}
    row = table[table.n_keys == 500000].iloc[0]
    assert row.gain_low > 0 and row.recall == "recall@50" and row.questions == 400
    assert row.gain == pytest.approx(0.15, abs=0.02)


def test_a_model_off_its_plateau_is_undecided_however_large_its_gain():
    table = regime_table(_study({20000: 0.3, 500000: 0.3}, plateau_moves=0.05), SETTINGS)
    assert set(table.verdict) == {UNDECIDED} and "off its plateau" in table.reason.iloc[0]
    assert "not reached: moved 0.050" in table.plateau.iloc[0]


def test_a_missing_judged_recall_is_named():
    res = _study({20000: 0.1})
    res.ivf = res.ivf.drop(columns=["recall@2"])
    with pytest.raises(InputError, match=r"regime_20k|r20k.*recall@2"):
        regime_table(res, SETTINGS)


def _points(gains: dict[int, float], half_width: float = 0.01) -> pd.DataFrame:
    return pd.DataFrame([{"model": "keynet", "size": "XS", "query": "mapped", "n_keys": n,
                          "gain": g, "gain_low": g - half_width, "gain_high": g + half_width,
                          "questions": 1000, "seeds": 1} for n, g in gains.items()])


def test_the_trend_crosses_zero_where_the_line_does_and_reads_out_beyond():
    """gain = −0.2 + 0.1·log10(n / 20,000): crosses 0 at 2,000,000 keys and reads
    −0.2 + 0.1·log10(260) at 5.2M; precise points give a tight interval around both."""
    gains = {n: -0.2 + 0.1 * np.log10(n / 20000) for n in (20000, 100000, 500000)}
    fit = trend(_points(gains, 0.002), SETTINGS).iloc[0]
    assert fit.slope_per_decade == pytest.approx(0.1, rel=1e-6)
    assert fit.crossover_n == pytest.approx(2e6, rel=1e-6)
    assert fit.crossover_low < 2e6 < fit.crossover_high < 3e6
    assert fit.predicted_gain == pytest.approx(-0.2 + 0.1 * np.log10(260), rel=1e-6)
    assert fit.predicted_side == "above 0" and fit.misfit == pytest.approx(0.0, abs=1e-9)


def test_a_falling_trend_never_crosses_and_one_n_is_no_trend():
    falling = trend(_points({20000: -0.1, 100000: -0.2, 500000: -0.3}), SETTINGS).iloc[0]
    assert not np.isfinite(falling.crossover_n) and "none: the line falls" in falling.crossover
    assert falling.predicted_side == "below 0"
    single = trend(_points({20000: 0.1}), SETTINGS).iloc[0]
    assert single.crossover == "one n: no trend" and single.predicted_side == "no trend"


def test_noisy_points_leave_the_read_out_undecided():
    fit = trend(_points({20000: -0.01, 100000: 0.0, 500000: 0.01}, half_width=0.2), SETTINGS).iloc[0]
    assert fit.predicted_low < 0 < fit.predicted_high and fit.predicted_side == "straddles 0"


def test_a_line_that_misses_its_points_widens_its_read_out():
    """Precise points on a bent curve (−0.6, −0.1, −0.03): the line's reduced χ² is far above
    1 and its read-out interval is that much wider than the points' own precision allows."""
    bent = trend(_points({20000: -0.6, 100000: -0.1, 500000: -0.03}, 0.01), SETTINGS).iloc[0]
    straight = trend(_points({20000: -0.6, 100000: -0.3, 500000: 0.0}, 0.01), SETTINGS).iloc[0]
    assert bent.misfit > 100 and straight.misfit < 1
    assert (bent.predicted_high - bent.predicted_low) > 5 * (straight.predicted_high - straight.predicted_low)
