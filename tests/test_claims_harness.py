"""Every claim of the report attacked with evidence built to fool it.

For each claim: clear-cut planted evidence must read "holds" one way and "fails" the other
(the claim can tell), and every fooling case — empty tables, NaN validation columns, missing
per-question files, one seed, one matched setting, a grid missing a size group, a tie,
validation rows of another dataset only, a variant that wins on test but not on validation, a
difference inside the noise — must never read "holds". A claim without an entry here fails
the coverage test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import pytest
from planted_evidence import Planted

from amips_bench.reporting.claims import CLAIMS, Results
from amips_bench.reporting.report import evaluate_claims
from amips_bench.reporting.statistics import FAILS, HOLDS

DS = "nq"  # a real dataset name; the verdict's words do not matter here, its value does
Build = Callable[[], Results]


@dataclass
class Case:
    holds: Build
    fails: Build
    fools: dict[str, Build] = field(default_factory=dict)


def outcomes(res: Results, claim_id: str) -> list[str]:
    """The claim's verdicts on the dataset under attack (or "not run")."""
    return [row["outcome"] for row in evaluate_claims(res)
            if row["claim"] == claim_id and row["dataset"] in (DS, "")]


# --------------------------------------------------------------------------- routing


def _routing(learned: dict[str, list[float]], centroid: list[float], *, seeds=(0, 1, 2),
             n: int = 400, val: dict[str, list[float]] | None = None, no_validation=False,
             size: str = "M", dataset: str = DS) -> Planted:
    p = Planted(n=n, seeds=seeds)
    p.routing_method(dataset, "centroid_ip", centroid, flops=1e6, seeds=seeds,
                     no_validation=no_validation)
    for model, acc in learned.items():
        p.routed_model(dataset, model, size, acc, val=(val or {}).get(model), seeds=seeds,
                       no_validation=no_validation)
    return p


GOOD = [0.80, 0.90, 0.95, 0.985, 0.995]
CENTROID = [0.50, 0.65, 0.75, 0.85, 0.90]


def _beats(gain: float, **kw) -> Build:
    acc = [min(1.0, c + gain) for c in CENTROID]
    return lambda: _routing({"keynet": acc, "supportnet": acc}, CENTROID, **kw).results()


def _test_only_winner() -> Results:
    """KeyNet M wins on test but is worse on validation than KeyNet S, which barely beats
    the centroid rule: judged must be S."""
    p = _routing({"supportnet": GOOD}, CENTROID)
    p.routed_model(DS, "keynet", "M", GOOD, val=[0.3] * 5)
    p.routed_model(DS, "keynet", "S", [0.52, 0.7, 0.8, 0.9, 0.93], val=[0.9] * 5)
    return p.results()


def _saturation(p5: float, **kw) -> Build:
    acc = [0.6, 0.7, 0.8, 0.9, p5]
    return lambda: _routing({"keynet": acc, "supportnet": acc}, CENTROID, **kw).results()


def _frontier(large_ahead: bool, sizes=("S", "M")) -> Build:
    def build() -> Results:
        p = _routing({}, CENTROID)
        for size in sizes:
            big = size in ("M", "L")
            base = 0.85 if big == large_ahead else 0.40
            p.routed_model(DS, "keynet", size, [base + 0.02 * k for k in range(5)],
                           flops={"XS": 1e6, "S": 1.1e6, "M": 1.2e6, "L": 1.3e6}[size])
        return p.results()
    return build


def _low_cost(baseline_cheap: float, learned_top: float) -> Build:
    """The learned model costs more than centroid k = 1 at every k; the baseline's curve is
    `baseline_cheap` at the learned model's cheapest cost; at k = 5, learned `learned_top`."""
    def build() -> Results:
        p = Planted(seeds=(0, 1, 2))
        p.routing_method(DS, "centroid_ip", [0.4, baseline_cheap, baseline_cheap, 0.8, 0.85],
                         flops=1e6)
        p.routed_model(DS, "keynet", "S", [0.5, 0.6, 0.7, 0.75, learned_top], flops=1.5e6)
        return p.results()
    return build


def _ahead(lead: float, settings=("S", "M"), seeds=(0, 1, 2), n=400, noisy=False) -> Build:
    def build() -> Results:
        p = Planted(n=n, seeds=seeds)
        p.routing_method(DS, "centroid_ip", CENTROID, flops=1e6, seeds=seeds)
        for i, size in enumerate(settings):
            sup = [0.5 + 0.05 * i + 0.08 * k for k in range(5)]
            p.routed_model(DS, "supportnet", size, sup, seeds=seeds, independent=noisy)
            p.routed_model(DS, "keynet", size, [min(1, a + lead) for a in sup], seeds=seeds,
                           independent=noisy)
        return p.results()
    return build


# --------------------------------------------------------------------------- E_rel


def _erel(best_test: float, *, seeds=(0, 1, 2), spread=0.3, other_test: float | None = None) -> Build:
    """KeyNet L best on validation with test E_rel `best_test`; KeyNet S worse on validation
    (with test E_rel `other_test`, by default worse too)."""
    def build() -> Results:
        p = Planted(seeds=seeds)
        p.c1_model(DS, "keynet", "L", test_e_rel=best_test, val_e_rel=-1.5, spread=spread)
        p.c1_model(DS, "keynet", "S", test_e_rel=other_test if other_test is not None else 0.0,
                   val_e_rel=-0.2, spread=spread)
        return p.results()
    return build


def _trend(slope: float, sizes=("S", "M", "L"), spread=0.3, noisy=False) -> Build:
    """E_rel = slope × size index for KeyNet and SupportNet (test and validation alike)."""
    def build() -> Results:
        p = Planted()
        for model in ("keynet", "supportnet"):
            for i, size in enumerate(sizes):
                p.c1_model(DS, model, size, test_e_rel=-0.5 + slope * i,
                           val_e_rel=-0.5 + slope * i, spread=spread, independent=noisy)
        return p.results()
    return build


# --------------------------------------------------------------------------- IVF and OOD

FLOPS = [1e5, 2e5, 4e5, 8e5, 1.6e6]
NATURAL = [0.3, 0.5, 0.7, 0.85, 0.95]


def _ivf(gain: float, *, cost: float = 1.0, val_gains=(0.1, 0.0), val_mrr=(0.6, 0.4),
         other_gain: float | None = None, test_only: bool = False, seeds=(0, 1, 2)) -> Build:
    """Natural x and two KeyNets, L and S; the one of largest validation gain at equal FLOPs
    (L unless `val_gains` say otherwise) maps with test recall `gain` above natural at the same
    FLOPs (times `cost`), the other with `other_gain` (default `gain`; 0.3 for `test_only`).
    `val_mrr` plants validation MRRs that may point the other way."""
    def build() -> Results:
        p = Planted(seeds=seeds)
        big = p.c1_model(DS, "keynet", "L", test_e_rel=-1, val_mrr=val_mrr[0])
        small = p.c1_model(DS, "keynet", "S", test_e_rel=-1, val_mrr=val_mrr[1])
        p.sweep(DS, NATURAL, FLOPS)
        chosen, other = (big, small) if val_gains[0] > val_gains[1] else (small, big)
        best, worst = max(val_gains), min(val_gains)
        p.sweep(DS, [min(1, r + gain) for r in NATURAL], [f * cost for f in FLOPS], variant=chosen,
                val_recall=[min(1, r + best) for r in NATURAL])
        second = 0.3 if test_only else (gain if other_gain is None else other_gain)
        p.sweep(DS, [min(1, r + second) for r in NATURAL], [f * cost for f in FLOPS], variant=other,
                val_recall=[min(1, r + worst) for r in NATURAL])
        return p.results()
    return build


def _ood(gap: float, cost: float = 1.0) -> Build:
    def build() -> Results:
        p = Planted()
        model = p.c1_model(DS, "keynet", "XS", test_e_rel=-1)
        for std in (0.0, 0.1):
            p.sweep(DS, NATURAL, FLOPS, table="ood", std=std)
            p.sweep(DS, [max(0.0, r + (gap if std else 0.0)) for r in NATURAL],
                    [f * cost for f in FLOPS], variant=model, table="ood", std=std)
        return p.results()
    return build


def _timing(ratio: float, q1: float, q3: float) -> Build:
    def build() -> Results:
        p = Planted()
        p.timing(DS, ratio, q1, q3)
        return p.results()
    return build


def _without_evidence(build: Build) -> Build:
    def strip() -> Results:
        res = build()
        res.evidence.sources.clear()
        return res
    return strip


def _without_validation(build: Build) -> Build:
    def strip() -> Results:
        res = build()
        for frame in (res.routing, res.metrics):
            for column in [c for c in frame.columns if c.startswith("val_")]:
                frame[column] = float("nan")
        for arrays in res.evidence.sources.values():
            for name in [n for n in arrays if "|val_" in n]:
                del arrays[name]
        return res
    return strip


def _empty() -> Results:
    return Planted().results()


def _other_dataset(build: Build) -> Build:
    """The evidence moved to another dataset with its validation numbers, while this one keeps
    its tables without any validation number."""
    def move() -> Results:
        res = _without_validation(build)()
        other = build()
        for name in ("routing", "metrics", "ivf", "ood"):
            frame = getattr(other, name)
            if len(frame):
                frame = frame.assign(dataset="quora")
                if name == "metrics":
                    frame = frame.assign(run=frame.run.str.replace(f"{DS}/", "quora/"))
                setattr(res, name, frame if not len(getattr(res, name)) else
                        pd.concat([getattr(res, name), frame], ignore_index=True))
        for (kind, ds, stem), arrays in list(other.evidence.sources.items()):
            res.evidence.sources[(kind, "quora", stem)] = arrays
        res.kinds["quora"] = "beir"
        return res
    return move


HARNESS: dict[str, Case] = {
    "table1-ratio": Case(
        _timing(1.75, 1.70, 1.80), _timing(2.2, 2.1, 2.3),
        {"an IQR across the range's edge": _timing(1.9, 1.85, 2.05),
         "NaN ratios": _timing(float("nan"), float("nan"), float("nan"))}),
    "routing-beats-centroid": Case(
        _beats(0.30), _beats(0.02),
        {"inside the noise": _beats(0.11, n=300), "one seed, inside the noise": _beats(0.115, seeds=(0,)),
         "one family only": lambda: _routing({"keynet": GOOD}, CENTROID).results(),
         "a test-only winner": _test_only_winner,
         "no validation": _without_validation(_beats(0.30)),
         "validation rows of another dataset": _other_dataset(_beats(0.30)),
         "no per-question files": _without_evidence(_beats(0.30))}),
    "routing-k5-saturates": Case(
        _saturation(0.995), _saturation(0.80),
        {"inside the noise": _saturation(0.955, n=300),
         "k stops at 3": lambda: _routing({"keynet": GOOD[:3], "supportnet": GOOD[:3]},
                                          CENTROID[:3]).results(),
         "no validation": _without_validation(_saturation(0.995)),
         "no per-question files": _without_evidence(_saturation(0.995))}),
    "routing-large-sizes": Case(
        _frontier(True), _frontier(False),
        {"a grid without M/L": _frontier(False, ("XS", "S")),
         "a grid of M/L only": _frontier(True, ("M", "L")),
         "no per-question files": _without_evidence(_frontier(True))}),
    "routing-small-sizes": Case(
        _frontier(False), _frontier(True),
        {"a grid without M/L": _frontier(False, ("XS", "S")),
         "a grid without XS/S": _frontier(True, ("M", "L")),
         "no per-question files": _without_evidence(_frontier(False))}),
    "routing-baseline-low-cost": Case(
        _low_cost(0.8, 0.99), _low_cost(0.3, 0.99),
        {"a tie at low cost": _low_cost(0.5, 0.99), "a tie at k = 5": _low_cost(0.8, 0.85),
         "no validation": _without_validation(_low_cost(0.8, 0.99)),
         "no per-question files": _without_evidence(_low_cost(0.8, 0.99))}),
    "routing-keynet-ahead": Case(
        _ahead(0.025, n=4000), _ahead(-0.08),
        {"a tie": _ahead(0.0), "one matched setting": _ahead(0.025, settings=("S",), n=4000),
         "inside the noise": _ahead(0.01, n=200, noisy=True), "too far ahead to be slight": _ahead(0.05),
         "no per-question files": _without_evidence(_ahead(0.025, n=4000))}),
    "size-improves-tradeoff": Case(
        _trend(-0.4), _trend(0.4),
        {"one size": _trend(-0.4, sizes=("M",)), "a tie": _trend(0.0),
         "inside the noise": _trend(-0.002, spread=2.0, noisy=True),
         "no per-question files": _without_evidence(_trend(-0.4))}),
    "erel-below-minus-one-squared": Case(
        _erel(-2.5), _erel(-0.5),
        {"a test-only winner": _erel(-0.9, other_test=-3.0), "inside the noise": _erel(-1.005, spread=4),
         "one seed inside the noise": _erel(-1.01, seeds=(0,), spread=4),
         "no validation": _without_validation(_erel(-2.5)),
         "validation rows of another dataset": _other_dataset(_erel(-2.5)),
         "no per-question files": _without_evidence(_erel(-2.5))}),
    "erel-below-minus-one-norms": Case(
        _erel(-5.0), _erel(-1.0),
        {"a test-only winner": _erel(-1.8, other_test=-6.0), "inside the noise": _erel(-2.01, spread=8),
         "no validation": _without_validation(_erel(-5.0)),
         "no per-question files": _without_evidence(_erel(-5.0))}),
    "mapped-beats-natural": Case(
        _ivf(0.1), _ivf(-0.2),
        {"a tie": _ivf(0.0), "no common FLOP range": _ivf(0.3, cost=100.0),
         "a test-only winner": _ivf(-0.2, test_only=True),
         "no validation": _without_validation(_ivf(0.1)),
         "validation rows of another dataset": _other_dataset(_ivf(0.1)),
         "one seed, a tie": _ivf(0.0, seeds=(0,)),
         "the best validation MRR is the test winner": _ivf(-0.2, val_mrr=(0.4, 0.6),
                                                            other_gain=0.1),
         "no per-question files": _without_evidence(_ivf(0.1))}),
    "ood-not-catastrophic": Case(
        _ood(0.0), _ood(-0.4),
        {"inside the noise": _ood(-0.05), "no common FLOP range": _ood(0.0, cost=100.0),
         "no validation": _without_validation(_ood(0.0)),
         "no per-question files": _without_evidence(_ood(0.0))}),
    "larger-lower-erel": Case(
        _trend(-0.4), _trend(0.4),
        {"one size": _trend(-0.4, sizes=("M",)), "a tie": _trend(0.0),
         "inside the noise": _trend(-0.002, spread=2.0, noisy=True),
         "no per-question files": _without_evidence(_trend(-0.4))}),
}


def test_every_claim_is_attacked_by_the_harness():
    assert set(HARNESS) == {c.id for c in CLAIMS}, "a claim without harness coverage"
    for claim_id, case in HARNESS.items():
        assert len(case.fools) >= 2, f"{claim_id}: at least two fooling cases"


@pytest.mark.parametrize("claim_id", sorted(HARNESS))
def test_clear_cut_evidence_reads_holds_one_way_and_fails_the_other(claim_id):
    assert outcomes(HARNESS[claim_id].holds(), claim_id) == [HOLDS]
    assert outcomes(HARNESS[claim_id].fails(), claim_id) == [FAILS]


@pytest.mark.parametrize("claim_id", sorted(HARNESS))
def test_no_fooling_case_reads_holds(claim_id):
    fooled = {name: said for name, build in HARNESS[claim_id].fools.items()
              if HOLDS in (said := outcomes(build(), claim_id))}
    assert not fooled, f"{claim_id} holds on evidence built to fool it: {fooled}"
    assert HOLDS not in outcomes(_empty(), claim_id)


def test_mapped_beats_natural_judges_the_model_chosen_for_its_own_criterion():
    """Validation MRR prefers L, the validation gain at equal FLOPs prefers S: the claim judges
    S (its test gain +0.1 holds), not L (whose test gain −0.2 would fail)."""
    res = _ivf(0.1, val_gains=(0.0, 0.1), val_mrr=(0.6, 0.4), other_gain=-0.2)()
    verdict = next(c for c in CLAIMS if c.id == "mapped-beats-natural").judge(res, DS)
    assert verdict.value == HOLDS and "keynet_S_" in verdict.text and "keynet_L_" not in verdict.text
