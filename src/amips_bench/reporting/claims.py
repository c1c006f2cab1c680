"""The paper's quantitative claims as specs, each judged with a confidence interval.

A claim names its evidence (which per-question outcomes), its selection (which model, chosen
on validation by `selection.choose`), its comparison and its threshold; its judge reads the
result tables and their per-question files (`evidence`) and returns a `Verdict`: *holds* when
the whole 95 % interval (`statistics.bootstrap`) is on the claim's side of the threshold,
*fails* when it is all on the other side, *undecided* when it straddles it or when evidence is
missing, with the reason. Nothing here reads "holds" from a default, a NaN, an empty set or a
fallback, and no test number ever chooses a model. `report.py` renders the verdicts;
tests/test_claims_harness.py attacks every claim with evidence built to fool it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.paper import TABLE1_RATIO_RANGE
from ..core.storage import load_json
from ..models.networks import MODEL_KINDS
from .evidence import (
    QuestionEvidence,
    gain_interval,
    gains_at_equal_flops,
    model_outcome,
    routing_hits,
    stems_by_seed,
)
from .results import (
    IDENTITY,
    largest_recall,
    pareto_front,
    read_histories,
    read_metrics,
    read_tables,
    size_rank,
    with_ivf_setup,
)
from .selection import Choice, choose, variant_of
from .statistics import (
    FAILS,
    HOLDS,
    UNDECIDED,
    Interval,
    bootstrap,
    combine,
    judge,
    mean_interval,
)

LEARNED = list(MODEL_KINDS)  # the routing methods that are support-function models

# --------------------------------------------------------------------------- inputs


@dataclass
class Results:
    """Everything the claims read: tidy frames (empty when a stage was not run) and the
    per-question outcomes behind them."""

    metrics: pd.DataFrame
    histories: dict[str, pd.DataFrame]  # run key -> history
    routing: pd.DataFrame
    ivf: pd.DataFrame
    ood: pd.DataFrame
    table1: pd.DataFrame
    kinds: dict[str, str]  # dataset -> synthetic | beir | local
    split_modes: dict[str, str] = field(default_factory=dict)  # dataset -> leak_free | official
    data: dict[str, dict] = field(default_factory=dict)  # dataset -> embeddings manifest
    evidence: QuestionEvidence = field(default_factory=QuestionEvidence)

    @classmethod
    def load(cls, *, metrics: list, histories: list, routing: list, ivf: list, ood: list,
             table1: str | None, kinds: dict[str, str], manifests: list | None = None) -> Results:
        frame = read_metrics(metrics)
        hist = read_histories(frame, histories)
        if len(frame):
            frame["val_e_rel"] = [float(hist[key].e_rel.iloc[-1]) for key in frame.run]
            for k in range(1, 6):
                column = f"routing@{k}"
                if any(column in h for h in hist.values()):
                    frame[f"val_{column}"] = [float(hist[key][column].iloc[-1])
                                              if column in hist[key] else np.nan
                                              for key in frame.run]
        frames = [read_tables(routing, source="file"), read_tables(ivf, source="file"),
                  read_tables(ood, source="file")]
        modes: dict[str, set] = {}
        for part in [frame] + frames:
            if len(part) and "split_mode" in part:
                for ds, mode in part[["dataset", "split_mode"]].drop_duplicates().itertuples(index=False):
                    modes.setdefault(ds, set()).add(mode)
        split_modes = {ds: ("official" if "official" in m else "leak_free") for ds, m in modes.items()}
        data = {Path(p).parent.parent.name: load_json(p) for p in manifests or []}
        evidence = QuestionEvidence.beside({"routing": routing, "ivf": ivf, "ood": ood}, metrics)
        return cls(frame, hist, *frames, read_tables([table1] if table1 else []), kinds,
                   split_modes, data, evidence)

    def devices(self) -> list[str]:
        """Every device that computed a number of the report: training, searches and Table 1's
        timings may each have run on another machine."""
        frames = [self.metrics, self.routing, self.ivf, self.ood, self.table1]
        return sorted({d for f in frames if "device" in f for d in f["device"]
                       if isinstance(d, str) and d})

    def mode(self, dataset: str) -> str:
        return self.split_modes.get(dataset, "leak_free")


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """A claim judged on one dataset: holds, fails or undecided; our numbers with their
    interval; why it is undecided; and (routing, IVF) the same judged against the strongest
    baseline or every index setup."""

    value: str
    text: str
    reason: str = ""
    interval: Interval | None = None
    versus_best: str | None = None

    def __post_init__(self) -> None:
        if self.value not in (HOLDS, FAILS, UNDECIDED):
            raise ValueError(f"verdict: {self.value!r} is not holds, fails or undecided")


def undecided(reason: str, text: str = "") -> Verdict:
    return Verdict(UNDECIDED, text, reason)


@dataclass(frozen=True)
class Claim:
    """A claim of the paper as a spec: what it reads, how it chooses, what it compares and
    against which threshold; `judge` carries it out on one dataset."""

    id: str
    section: str
    statement: str
    paper_datasets: list[str]
    paper_value: str
    evidence: str  # the per-question outcomes it reads
    selection: str  # which model it judges, chosen how
    comparison: str  # the quantity whose interval decides
    threshold: str  # the claim's side of it
    judge: Callable[[Results, str], Verdict]
    datasets_of: Callable[[Results], list[str]] = field(default=lambda r: [])


def _parts_text(parts: dict[str, tuple[str, Interval | str | None]]) -> str:
    """"name: estimate [interval], questions × seeds (verdict)" per part; a part without an
    interval says why (its reason) and is undecided."""
    return "; ".join(f"{name}: {iv.text()} ({value})" if isinstance(iv, Interval)
                     else f"{name}: {iv or 'no evidence'} ({value})"
                     for name, (value, iv) in parts.items())


# --------------------------------------------------------------------------- routing


def _routing(res: Results, dataset: str) -> pd.DataFrame:
    """The dataset's routing rows, each with its variant: a learned model's or router's run
    without its seed; a baseline's method."""
    r = res.routing
    if not len(r):
        return r
    r = r[r.dataset == dataset].copy()
    if "file" not in r:
        r["file"] = ""
    baseline = ~r.method.isin(LEARNED) & ~r.file.astype(str).str.startswith("router_")
    r["variant"] = np.where(baseline, r.method, r.file.astype(str).map(variant_of))
    return r


def _chosen_routing(r: pd.DataFrame, dataset: str, methods: list[str], k: int, mode: str,
                    what: str) -> Choice:
    rows = r[r.method.isin(methods) & (r.k == k)]
    if "val_accuracy" not in rows:
        rows = rows.assign(val_accuracy=np.nan)
    return choose(rows, dataset, "val_accuracy", lower_is_better=False, split_mode=mode,
                  what=what)


def _hits(res: Results, r: pd.DataFrame, dataset: str, variant: str, k: int,
          seeds: list | None = None) -> np.ndarray | None:
    """Hit at k per seed and test question [S, N] of one variant's rows; with `seeds` (a
    baseline beside a learned model), those seeds when it has every one of them, else its
    first (centroid rules do not depend on the seed)."""
    rows = r[(r.variant == variant) & (r.k == k)]
    if seeds is not None:
        matched = rows[rows.seed.isin(seeds)]
        rows = matched if matched.seed.nunique() == len(set(seeds)) else rows.iloc[:1]
    if not len(rows):
        return None
    return routing_hits(res.evidence, dataset, stems_by_seed(rows), str(rows.method.iloc[0]), k)


def _paired_seeds(a: np.ndarray | None, b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Both sides on the same [S, N] grid: a side with one seed (a baseline that does not
    depend on it) is repeated for every seed of the other."""
    if a is None or b is None or a.shape[1] != b.shape[1]:
        return None
    if a.shape[0] == b.shape[0]:
        return a, b
    if b.shape[0] == 1 or a.shape[0] == 1:
        s = max(a.shape[0], b.shape[0])
        return np.broadcast_to(a, (s, a.shape[1])), np.broadcast_to(b, (s, b.shape[1]))
    return None


def _learned_choices(res: Results, r: pd.DataFrame, dataset: str, k: int) -> dict[str, Choice]:
    return {m: _chosen_routing(r, dataset, [m], k, res.mode(dataset), m) for m in LEARNED
            if (r.method == m).any()}


def judge_routing_beats_centroid(res: Results, dataset: str) -> Verdict:
    r = _routing(res, dataset)
    if not len(r) or not (r.method == "centroid_ip").any():
        return undecided("no centroid routing rows")
    choices = _learned_choices(res, r, dataset, 1)
    if len(choices) < 2:
        return undecided(f"only {', '.join(choices) or 'no model'} was routed: the claim is about "
                         f"both learned routers")
    missing = [c.reason for c in choices.values() if c.variant is None]
    if missing:
        return undecided(missing[0])
    best_base = _chosen_routing(r, dataset, sorted(set(r.method) - set(LEARNED) - {"oracle"}), 1,
                                res.mode(dataset), "baseline")
    parts, versus, vs_parts = {}, [], {}
    intervals = []
    for method, choice in choices.items():
        rows = r[(r.variant == choice.variant) & (r.k == 1)]
        hits = _hits(res, r, dataset, choice.variant, 1)
        base = _hits(res, r, dataset, "centroid_ip", 1, list(rows.seed))
        paired = _paired_seeds(hits, base)
        if paired is None:
            return undecided(f"no per-question routing evidence for {choice.variant} and centroid_ip")
        iv = mean_interval(paired[0] - paired[1])
        intervals.append(iv)
        parts[f"{choice.variant} − centroid_ip"] = (judge(iv, 0.10, "above")[0], iv)
        if best_base.variant is not None:
            other = _paired_seeds(hits, _hits(res, r, dataset, best_base.variant, 1,
                                              list(rows.seed)))
            if other is not None:
                iv2 = mean_interval(other[0] - other[1])
                vs_parts[f"{choice.variant} − {best_base.variant}"] = (judge(iv2, 0.10, "above")[0], iv2)
                versus.append(vs_parts[f"{choice.variant} − {best_base.variant}"][0])
    value = combine([p[0] for p in parts.values()])
    text = ("hit@1 gain, models chosen on validation hit@1: " + _parts_text(parts)
            + (f"; against the best baseline on validation ({best_base.variant}): "
               + _parts_text(vs_parts) if vs_parts else ""))
    versus_best = combine(versus) if len(versus) == len(parts) else UNDECIDED
    reason = "" if value != UNDECIDED else "an interval straddles +0.10"
    return Verdict(value, text, reason, min(intervals, key=lambda i: i.estimate), versus_best)


def judge_routing_k5(res: Results, dataset: str) -> Verdict:
    r = _routing(res, dataset)
    if not len(r) or not r.method.isin(LEARNED).any():
        return undecided("no learned routing rows")
    k = int(r.k.max())
    if k < 5:
        return undecided(f"routing.ks stops at k = {k}; the claim is about k = 5")
    choices = _learned_choices(res, r, dataset, 5)
    if len(choices) < 2:
        return undecided(f"only {', '.join(choices)} was routed: the claim is about both learned routers")
    parts = {}
    for method, choice in choices.items():
        if choice.variant is None:
            return undecided(choice.reason)
        hits = _hits(res, r, dataset, choice.variant, 5)
        if hits is None:
            return undecided(f"no per-question routing evidence for {choice.variant}")
        iv = mean_interval(hits)
        parts[choice.variant] = (judge(iv, 0.95, "above")[0], iv)
    value = combine([p[0] for p in parts.values()])
    return Verdict(value, "hit@5, models chosen on validation hit@5: " + _parts_text(parts),
                   "" if value != UNDECIDED else "an interval straddles 0.95")


def _learned_points(res: Results, r: pd.DataFrame, dataset: str
                    ) -> tuple[pd.DataFrame, np.ndarray] | str:
    """Every learned (variant, k) operating point: its mean FLOPs, size and method, and its
    hits [S, N, P] (one column per point); or why they cannot be lined up."""
    learned = r[r.method.isin(LEARNED)]
    points = (learned.groupby(["variant", "k"])
              .agg(flops_total=("flops_total", "mean"), size=("size", "first"),
                   method=("method", "first")).reset_index())
    stacks = []
    for p in points.itertuples():
        hits = _hits(res, r, dataset, p.variant, int(p.k))
        if hits is None:
            return f"no per-question routing evidence for {p.variant}"
        stacks.append(hits)
    if len({h.shape for h in stacks}) != 1:
        return "the learned models were trained on different numbers of seeds"
    return points, np.stack(stacks, axis=-1)


def _front_share(points: pd.DataFrame, wanted: set[str]) -> Callable[[dict], float]:
    flops = points.flops_total.to_numpy()
    in_group = points["size"].isin(wanted).to_numpy()

    def statistic(arrays: dict) -> float:
        accuracy = arrays["hits"].mean(axis=(0, 1))
        front = pareto_front(list(zip(flops, accuracy)))
        on_front = [i for i, pt in enumerate(zip(flops, accuracy)) if pt in front]
        return float(np.mean(in_group[on_front]))
    return statistic


def _judge_frontier(res: Results, dataset: str, wanted: set[str]) -> Verdict:
    r = _routing(res, dataset)
    if not len(r) or not r.method.isin(LEARNED).any():
        return undecided("no learned routing rows")
    sizes = set(r[r.method.isin(LEARNED)]["size"])
    group = "/".join(s for s in ("XS", "S", "M", "L", "XL", "XXL") if s in wanted)
    if not sizes & wanted:
        return undecided(f"the grid has no {group} model")
    if not sizes - wanted:
        return undecided(f"the grid has only {group} models: nothing to dominate")
    lined = _learned_points(res, r, dataset)
    if isinstance(lined, str):
        return undecided(lined)
    points, hits = lined
    iv = bootstrap(_front_share(points, wanted), {"hits": hits})
    value, reason = judge(iv, 0.5, "above")
    return Verdict(value, f"share of {group} models on the Pareto front of learned routers: "
                          f"{iv.text('.2f')}", reason, iv)


def judge_large_sizes_dominate(res: Results, dataset: str) -> Verdict:
    return _judge_frontier(res, dataset, {"M", "L", "XL", "XXL"})


def judge_small_sizes_dominate(res: Results, dataset: str) -> Verdict:
    return _judge_frontier(res, dataset, {"XS", "S"})


def _baseline_curve(res: Results, r: pd.DataFrame, dataset: str, variant: str, seeds: list
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """A baseline's mean FLOPs per k and its hits [S, N, K] on the learned side's seeds."""
    rows = r[r.variant == variant]
    ks = sorted(rows.k.unique())
    hits = [_hits(res, r, dataset, variant, int(k), seeds) for k in ks]
    if any(h is None for h in hits) or len({h.shape for h in hits}) != 1:
        return None
    flops = rows.groupby("k").flops_total.mean().loc[ks].to_numpy()
    return flops, np.stack(hits, axis=-1)


def _low_cost_parts(res: Results, r: pd.DataFrame, dataset: str, baseline: str
                    ) -> dict[str, tuple[str, Interval | None]] | str:
    learned = r[r.method.isin(LEARNED)]
    cheapest = learned.groupby(["variant", "k"]).flops_total.mean().idxmin()
    kmax = int(r.k.max())
    top = _chosen_routing(r, dataset, LEARNED, kmax, res.mode(dataset), "learned")
    if top.variant is None:
        return top.reason
    cheap_rows = learned[(learned.variant == cheapest[0]) & (learned.k == cheapest[1])]
    seeds = list(cheap_rows.seed)
    cheap = _hits(res, r, dataset, cheapest[0], int(cheapest[1]))
    top_hits = _hits(res, r, dataset, top.variant, kmax)
    base = _baseline_curve(res, r, dataset, baseline, seeds)
    if cheap is None or top_hits is None or base is None:
        return f"no per-question routing evidence for {baseline} or the learned models"
    base_flops, base_hits = base
    if base_hits.shape[:2] != cheap.shape and base_hits.shape[0] != 1:
        return "the baseline and the learned models were run on different seeds"
    x = np.log(cheap_rows.flops_total.mean())
    order = np.argsort(base_flops)
    there = np.apply_along_axis(lambda h: np.interp(x, np.log(base_flops[order]), h[order]), -1,
                                base_hits)
    low = _paired_seeds(there, cheap)
    at_k = list(sorted(r[r.variant == baseline].k.unique())).index(kmax) \
        if kmax in set(r[r.variant == baseline].k) else None
    if low is None or at_k is None:
        return f"{baseline} has no point at k = {kmax} or other seeds"
    high = _paired_seeds(top_hits, base_hits[..., at_k])
    if high is None:
        return "the baseline and the learned models were run on different seeds"
    iv_low, iv_high = mean_interval(low[0] - low[1]), mean_interval(high[0] - high[1])
    return {f"{baseline} − cheapest learned ({cheapest[0]}, k={int(cheapest[1])}) at its FLOPs":
            (judge(iv_low, 0.0, "above")[0], iv_low),
            f"{top.variant} − {baseline} at k={kmax}": (judge(iv_high, 0.0, "above")[0], iv_high)}


def judge_baseline_low_cost_learned_scale(res: Results, dataset: str) -> Verdict:
    r = _routing(res, dataset)
    if not len(r) or not (r.method == "centroid_ip").any() or not r.method.isin(LEARNED).any():
        return undecided("needs centroid and learned routing rows")
    parts = _low_cost_parts(res, r, dataset, "centroid_ip")
    if isinstance(parts, str):
        return undecided(parts)
    value = combine([p[0] for p in parts.values()])
    best = _chosen_routing(r, dataset, sorted(set(r.method) - set(LEARNED) - {"oracle"}), 1,
                           res.mode(dataset), "baseline")
    text = "hit rates: " + _parts_text(parts)
    versus = None
    if best.variant is not None and best.variant != "centroid_ip":
        others = _low_cost_parts(res, r, dataset, best.variant)
        if isinstance(others, dict):
            versus = combine([p[0] for p in others.values()])
            text += f"; best baseline on validation ({best.variant}): " + _parts_text(others)
    elif best.variant == "centroid_ip":
        versus, text = value, text + " (also the best baseline on validation)"
    return Verdict(value, text, "" if value != UNDECIDED else "an interval straddles 0", None, versus)


#: "slightly ahead": KeyNet's mean routing-accuracy lead over SupportNet at equal ρ within
#: [0, KEYNET_AHEAD_BOUND] (the paper: "both models perform similarly at most sizes, with slight
#: performance gains across the board for KeyNet"); a larger lead is not "slight"
KEYNET_AHEAD_BOUND = 0.05
#: the claim is about sizes "across the board": it needs at least this many matched settings
MIN_MATCHED_SETTINGS = 2


def _lead_at_equal_flops(points: pd.DataFrame) -> Callable[[dict], float]:
    """KeyNet's front minus SupportNet's at equal FLOPs, averaged over KeyNet's front points
    inside SupportNet's FLOP range (log-FLOP interpolation); NaN where the ranges do not meet."""
    flops = points.flops_total.to_numpy()
    is_key = (points.method == "keynet").to_numpy()

    def statistic(arrays: dict) -> float:
        accuracy = arrays["hits"].mean(axis=(0, 1))
        key = pareto_front(list(zip(flops[is_key], accuracy[is_key])))
        sup = pareto_front(list(zip(flops[~is_key], accuracy[~is_key])))
        if len(sup) < 2:
            return float("nan")
        sf, sa = np.array(sup).T
        inside = [(f, a) for f, a in key if sf.min() <= f <= sf.max()]
        if not inside:
            return float("nan")
        kf, ka = np.array(inside).T
        return float(np.mean(ka - np.interp(np.log(kf), np.log(sf), sa)))
    return statistic


def judge_keynet_ahead(res: Results, dataset: str) -> Verdict:
    r = _routing(res, dataset)
    learned = r[r.method.isin(LEARNED)] if len(r) else r
    if not len(learned) or learned.method.nunique() < 2:
        return undecided("needs routing rows of both KeyNet and SupportNet")
    setting = ["size", "depth", "n_x", "clusters"]
    key = learned[learned.method == "keynet"].drop_duplicates(["variant", "k"])
    sup = learned[learned.method == "supportnet"].drop_duplicates(["variant", "k"])
    pairs = key.merge(sup, on=setting + ["k"], suffixes=("_key", "_sup"))
    settings = pairs.drop_duplicates(["variant_key", "variant_sup"])
    if len(settings) < MIN_MATCHED_SETTINGS:
        return undecided(f"{len(settings)} matched KeyNet/SupportNet setting(s): the claim is "
                         f"about sizes across the board (at least {MIN_MATCHED_SETTINGS})")
    diffs = []
    for p in pairs.itertuples():
        paired = _paired_seeds(_hits(res, r, dataset, p.variant_key, int(p.k)),
                               _hits(res, r, dataset, p.variant_sup, int(p.k)))
        if paired is None:
            return undecided(f"no per-question routing evidence for {p.variant_key} and {p.variant_sup}")
        diffs.append(paired[0] - paired[1])
    if len({d.shape for d in diffs}) != 1:
        return undecided("the matched models were trained on different numbers of seeds")
    at_rho = mean_interval(np.mean(diffs, axis=0))
    lined = _learned_points(res, r, dataset)
    if isinstance(lined, str):
        return undecided(lined)
    points, hits = lined
    at_cost = bootstrap(_lead_at_equal_flops(points), {"hits": hits})
    parts = {f"at equal ρ over {len(settings)} matched settings":
             (judge(at_rho, 0.0, "within", KEYNET_AHEAD_BOUND)[0], at_rho),
             "at equal FLOPs (Pareto fronts)": (judge(at_cost, 0.0, "above")[0], at_cost)}
    value = combine([p[0] for p in parts.values()])
    reason = "" if value != UNDECIDED else (
        "no common FLOP range" if not np.isfinite(at_cost.estimate) else "an interval straddles a bound")
    return Verdict(value, "KeyNet − SupportNet hit rate: " + _parts_text(parts), reason, at_rho)


# --------------------------------------------------------------------------- E_rel


def _c1(res: Results, dataset: str, model: str | None = None) -> pd.DataFrame:
    m = res.metrics
    if not len(m):
        return m
    m = m[(m.dataset == dataset) & (m.clusters == 1) & (m.model != IDENTITY)].copy()
    m["variant"] = m.run.map(variant_of)
    m["file"] = m.run.map(lambda run: run.rsplit("/", 1)[-1])
    return m[m.model == model] if model else m


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation; NaN (never a verdict) where either side is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(pd.Series(x).corr(pd.Series(y), method="spearman"))


def _size_trend(res: Results, dataset: str, model: str | None, outcome: str) -> Verdict:
    """Spearman(size, mean E_rel) over every (variant, seed) model of each family with two or
    more sizes, bootstrapped over questions (and seeds); holds when below 0 for every family."""
    m = _c1(res, dataset, model)
    if not len(m):
        return undecided(f"no c = 1 models of {dataset}")
    families = {f: sub for f, sub in m.groupby("model") if sub["size"].nunique() >= 2}
    if not families:
        return undecided("no model family has two or more sizes")
    parts = {}
    for family, sub in families.items():
        variants = sorted(sub.variant.unique())
        values = [model_outcome(res.evidence, dataset,
                                list(sub[sub.variant == v].sort_values("seed").file), outcome)
                  for v in variants]
        if any(v is None for v in values):
            return undecided(f"no per-question {outcome} for every {family} model")
        if len({v.shape for v in values}) != 1:
            return undecided(f"the {family} models were trained on different numbers of seeds")
        stacked = np.stack(values, axis=-1)  # [seeds, questions, variants]
        ranks = np.tile(size_rank(pd.Series([sub[sub.variant == v]["size"].iloc[0]
                                             for v in variants])).to_numpy(), len(stacked))

        def statistic(arrays: dict, ranks=ranks) -> float:
            return _spearman(ranks, np.nanmean(arrays["v"], axis=1).reshape(-1))
        iv = bootstrap(statistic, {"v": stacked})
        parts[f"{family} ({len(variants)} variants)"] = (judge(iv, 0.0, "below")[0], iv)
    value = combine([p[0] for p in parts.values()])
    shown = {"test_e_rel": "test E_rel", "val_e_rel": "final validation E_rel"}[outcome]
    return Verdict(value, f"Spearman(size, {shown}): " + _parts_text(parts),
                   "" if value != UNDECIDED else "an interval straddles 0")


def judge_size_improves(res: Results, dataset: str) -> Verdict:
    return _size_trend(res, dataset, None, "test_e_rel")


def judge_larger_lower_erel_in_training(res: Results, dataset: str) -> Verdict:
    return _size_trend(res, dataset, "keynet", "val_e_rel")


def _judge_erel_below(res: Results, dataset: str, scale: float, convention: str) -> Verdict:
    m = _c1(res, dataset)
    choice = choose(m, dataset, "val_e_rel", lower_is_better=True, split_mode=res.mode(dataset),
                    what="c = 1")
    if choice.variant is None:
        return undecided(choice.reason)
    files = list(m[m.variant == choice.variant].sort_values("seed").file)
    values = model_outcome(res.evidence, dataset, files, "test_e_rel")
    if values is None:
        return undecided(f"no per-question test E_rel for {choice.variant}")
    iv = mean_interval(values * scale)
    value, reason = judge(iv, -1.0, "below")
    return Verdict(value, f"{convention}: test E_rel of {choice.variant} (lowest validation "
                          f"E_rel): {iv.text()}", reason, iv)


def judge_erel_below_minus_one_squared(res: Results, dataset: str) -> Verdict:
    return _judge_erel_below(res, dataset, 1.0, "log-ratio of squared distances")


def judge_erel_below_minus_one_norms(res: Results, dataset: str) -> Verdict:
    return _judge_erel_below(res, dataset, 0.5, "log-ratio of distances")


# --------------------------------------------------------------------------- IVF and OOD


def _sweeps(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    v = frame[(frame.dataset == dataset)].copy() if len(frame) else frame
    if not len(v):
        return v
    if "file" not in v:
        v["file"] = ""
    v["variant"] = v.file.astype(str).map(variant_of)
    return v


def _choose_mapped(res: Results, dataset: str, mapped: pd.DataFrame) -> Choice:
    """The c = 1 model with sweep rows of best validation MRR."""
    m = _c1(res, dataset)
    if not len(m):
        return Choice(None, reason=f"no c = 1 models of {dataset}")
    return choose(m[m.variant.isin(set(mapped.variant))], dataset, "val_mrr",
                  lower_is_better=False, split_mode=res.mode(dataset), what="swept c = 1")


def _choose_by_validation_gain(res: Results, dataset: str, natural: pd.DataFrame,
                               mapped: pd.DataFrame, metric: str) -> Choice:
    """The c = 1 model whose mapped queries gain most over natural ones at equal FLOPs on the
    validation questions (`metric`, mean over seeds and questions): the claim's own criterion,
    never its test number. `natural` and `mapped` are one IVF setup's rows."""
    m = _c1(res, dataset)
    if not len(m):
        return Choice(None, reason=f"no c = 1 models of {dataset}")
    rows = []
    for (variant, seed), sub in mapped.groupby(["variant", "seed"]):
        gains = gains_at_equal_flops(res.evidence, "ivf", dataset, natural, sub, metric, "val")
        known = m[(m.variant == variant) & (m.seed == seed)]
        if len(known):
            rows.append({"dataset": dataset, "variant": variant, "seed": seed,
                         "split_mode": known.split_mode.iloc[0] if "split_mode" in known else "",
                         "val_ivf_gain": (float(np.nanmean(gains)) if not isinstance(gains, str)
                                          else np.nan)})
    return choose(pd.DataFrame(rows), dataset, "val_ivf_gain", lower_is_better=False,
                  split_mode=res.mode(dataset), what="swept c = 1")


def judge_mapped_beats_natural(res: Results, dataset: str) -> Verdict:
    v = _sweeps(res.ivf, dataset)
    if not len(v):
        return undecided("no IVF rows")
    v = with_ivf_setup(v[v["index"] == "ivf"])
    mapped, natural = v[v["query"] == "mapped"], v[v["query"] == "natural"]
    if not len(mapped) or not len(natural):
        return undecided("needs natural and mapped IVF rows")
    recall = largest_recall(v)
    setups = sorted(v.groupby(["quantizer", "nlist"]).paper_setup.any().items(),
                    key=lambda item: not item[1])
    quantizer, nlist = setups[0][0]  # the model is chosen on the paper's setup
    choice = _choose_by_validation_gain(
        res, dataset, natural[(natural.quantizer == quantizer) & (natural.nlist == nlist)],
        mapped[(mapped.quantizer == quantizer) & (mapped.nlist == nlist)], recall)
    if choice.variant is None:
        return undecided(choice.reason)
    parts = {}
    for (quantizer, nlist), _ in setups:
        nat = natural[(natural.quantizer == quantizer) & (natural.nlist == nlist)]
        mp = mapped[(mapped.quantizer == quantizer) & (mapped.nlist == nlist)
                    & (mapped.variant == choice.variant)]
        if not len(nat) or not len(mp):
            continue
        iv = gain_interval(res.evidence, "ivf", dataset, nat, mp, recall)
        name = f"{quantizer} IVF, nlist {int(nlist):,}"
        parts[name] = ((judge(iv, 0.0, "above")[0], iv) if isinstance(iv, Interval)
                       else (UNDECIDED, iv))
    if not parts:
        return undecided(f"no IVF rows of {choice.variant}")
    first = next(iter(parts))
    value, iv = parts[first]
    text = (f"{recall} gain at equal FLOPs of {choice.variant} (best validation gain) over natural: "
            + _parts_text(parts))
    reason = "" if value != UNDECIDED else (iv if isinstance(iv, str) else "the interval straddles 0")
    iv = iv if isinstance(iv, Interval) else None
    versus = combine([p[0] for p in parts.values()]) if len(parts) > 1 else None
    return Verdict(value, text, reason, iv, versus)


OOD_GAP_FLOOR = -0.05  # mapped may trail natural by at most 5 MRR points at the largest noise


def judge_ood_not_catastrophic(res: Results, dataset: str) -> Verdict:
    o = _sweeps(res.ood, dataset)
    if not len(o):
        return undecided("no OOD rows")
    mapped = o[o["query"] == "mapped"]
    choice = _choose_mapped(res, dataset, mapped)
    if choice.variant is None:
        return undecided(choice.reason)
    parts = {}
    for std, sub in sorted(o.groupby("std"), key=lambda group: group[0]):
        iv = gain_interval(res.evidence, "ood", dataset, sub[sub["query"] == "natural"],
                           sub[(sub["query"] == "mapped") & (sub.variant == choice.variant)], "mrr")
        parts[f"std {std:g}"] = ((judge(iv, OOD_GAP_FLOOR, "above")[0], iv)
                                 if isinstance(iv, Interval) else (UNDECIDED, iv))
    worst = list(parts)[-1]
    value, iv = parts[worst]
    reason = "" if value != UNDECIDED else (
        f"at {worst}: {iv}" if isinstance(iv, str) else
        f"at {worst}: the interval straddles {OOD_GAP_FLOOR:+g}")
    return Verdict(value, f"MRR gap mapped − natural at equal FLOPs ({choice.variant}): "
                          + _parts_text(parts), reason, iv if isinstance(iv, Interval) else None)


# --------------------------------------------------------------------------- Table 1


def judge_table1_ratios(res: Results, dataset: str) -> Verdict:
    """SupportNet's grad/score against the paper's range: the interquartile range of our
    per-pair ratios (a spread of timed repeats, not a confidence interval over questions)
    inside the range holds, wholly outside fails. KeyNet's ratio is at most 1 by construction
    (its key is its forward pass) and is reported, not checked."""
    t = res.table1
    t = t[(t.dataset == dataset) & (t.model == "supportnet")] if len(t) else t
    if not len(t):
        return undecided("no Table 1 rows for SupportNet")
    lo, hi = TABLE1_RATIO_RANGE["supportnet"]
    q1 = t.get("grad_over_score_q1", t.grad_over_score)
    q3 = t.get("grad_over_score_q3", t.grad_over_score)
    said = []
    for ratio, a, b in zip(t.grad_over_score, q1, q3):
        iv = Interval(float(ratio), float(a), float(b), 0, 0)
        said.append(judge(iv, lo, "within", hi)[0] if a != b else
                    (HOLDS if lo < a < hi else FAILS))
    parts = [f"{r.size} {r.grad_over_score:.2f} (IQR {a:.2f}–{b:.2f}): {s}"
             for r, a, b, s in zip(t.itertuples(), q1, q3, said)]
    value = combine(said)
    return Verdict(value, "SupportNet grad/score " + ", ".join(parts) + "; KeyNet ≤ 1 by "
                   "construction (not checked)",
                   "" if value != UNDECIDED else "an interquartile range straddles the paper's range")


# --------------------------------------------------------------------------- the claims


def _datasets_with(frame_of: Callable[[Results], pd.DataFrame]) -> Callable[[Results], list[str]]:
    def inner(res: Results) -> list[str]:
        frame = frame_of(res)
        return sorted(frame.dataset.unique()) if len(frame) else []
    return inner


ROUTED = _datasets_with(lambda r: r.routing)
TRAINED = _datasets_with(lambda r: r.metrics)
IVF = _datasets_with(lambda r: r.ivf)
OOD = _datasets_with(lambda r: r.ood)
TIMED = _datasets_with(lambda r: r.table1)

ROUTING_EVIDENCE = "per test question: the true cluster's position in each router's order"
CHOSEN_PER_FAMILY = "per learned family, the variant of best mean validation hit@k"

CLAIMS: list[Claim] = [
    Claim("table1-ratio", "A.1, Table 1",
          "SupportNet needs a backward pass for its key (grad/score ≈ 1.6–1.9); KeyNet's key is "
          "its forward pass (≈ 1.0 by construction)", ["quora", "nq", "hotpotqa"],
          f"SupportNet {TABLE1_RATIO_RANGE['supportnet'][0]}–{TABLE1_RATIO_RANGE['supportnet'][1]}",
          "Table 1: per-pair grad/score ratios of timed repeats", "every SupportNet size",
          "interquartile range of grad/score", "inside the paper's range",
          judge_table1_ratios, TIMED),
    Claim("routing-beats-centroid", "§4.4, Fig. 2",
          "Both learned routers beat centroid routing by ≥ 10 points at k = 1", ["nq"],
          "≥ +0.10 accuracy at k = 1", ROUTING_EVIDENCE, CHOSEN_PER_FAMILY + " (k = 1)",
          "hit@1 of the chosen model − centroid IP, paired", "> +0.10 for both families",
          judge_routing_beats_centroid, ROUTED),
    Claim("routing-k5-saturates", "§4.4, Fig. 2",
          "Learned routers approach 100 % routing accuracy at k = 5", ["nq"], "≈ 1.0 at k = 5",
          ROUTING_EVIDENCE, CHOSEN_PER_FAMILY + " (k = 5)", "hit@5 of the chosen model",
          "> 0.95 for both families", judge_routing_k5, ROUTED),
    Claim("routing-large-sizes", "§4.4, Fig. 2",
          "Larger models (M, L) dominate the routing trade-off", ["nq"], "M/L on the Pareto front",
          ROUTING_EVIDENCE, "every learned variant and k (mean over seeds)",
          "share of M–XXL points on the Pareto front", "> 0.5, with smaller sizes in the grid",
          judge_large_sizes_dominate, ROUTED),
    Claim("routing-baseline-low-cost", "§4.4, Fig. 2",
          "Centroid routing is better at low cost, learned routers scale better with compute",
          ["quora"], "baseline ahead at the cheapest point, learned ahead at k = 5", ROUTING_EVIDENCE,
          "the cheapest learned point; the learned variant of best validation hit at the largest k",
          "baseline − learned at the cheapest learned FLOPs (log-FLOP interpolation); learned − "
          "baseline at the largest k", "both > 0", judge_baseline_low_cost_learned_scale, ROUTED),
    Claim("routing-small-sizes", "§4.4, Fig. 2", "Small models (XS, S) dominate the routing trade-off",
          ["quora"], "XS/S on the Pareto front", ROUTING_EVIDENCE,
          "every learned variant and k (mean over seeds)", "share of XS/S points on the Pareto front",
          "> 0.5, with larger sizes in the grid", judge_small_sizes_dominate, ROUTED),
    Claim("routing-keynet-ahead", "§4.4, Fig. 2", "KeyNet is slightly ahead of SupportNet",
          ["quora", "nq"], f"small positive difference (0 to +{KEYNET_AHEAD_BOUND:g} at equal ρ; "
          f"≥ 0 at equal FLOPs)", ROUTING_EVIDENCE,
          f"every matched (size, depth, n_x, k) pair, at least {MIN_MATCHED_SETTINGS} settings",
          "KeyNet − SupportNet hit rate at equal ρ; front minus front at equal FLOPs",
          f"inside (0, +{KEYNET_AHEAD_BOUND:g}) and > 0", judge_keynet_ahead, ROUTED),
    Claim("size-improves-tradeoff", "§4.3, Fig. 3", "Model size improves the E_rel–MRR trade-off",
          ["fiqa", "quora"], "larger ρ, lower E_rel",
          "per test question: E_rel of every model", "every c = 1 model, per family",
          "Spearman(size, test E_rel)", "< 0 for every family with two or more sizes",
          judge_size_improves, TRAINED),
    Claim("erel-below-minus-one-squared", "§4.2–4.3, Fig. 3",
          "Good models reach E_rel < −1 (E_rel as the log-ratio of squared distances, the "
          "paper's formula)", ["fiqa", "quora"], "E_rel < −1",
          "per test question: E_rel of every model",
          "the c = 1 variant of lowest mean validation E_rel", "its test E_rel", "< −1",
          judge_erel_below_minus_one_squared, TRAINED),
    Claim("erel-below-minus-one-norms", "§4.2–4.3, Fig. 3",
          "Good models reach E_rel < −1 (E_rel as the log-ratio of distances, the paper's prose: "
          "−1 means 0.37× as far)", ["fiqa", "quora"], "E_rel < −1",
          "per test question: E_rel of the model (halved)",
          "the c = 1 variant of lowest mean validation E_rel", "its test E_rel / 2", "< −1",
          judge_erel_below_minus_one_norms, TRAINED),
    Claim("mapped-beats-natural", "§4.5, A.2, Figs. 4–6",
          "Mapped queries reach higher recall than natural ones at equal FLOPs",
          ["hotpotqa", "quora", "nq"], "mapped above natural",
          "per test question and nprobe: rank of y* and FLOPs, natural and mapped (the same "
          "of the validation questions choose the model)",
          "the c = 1 variant of largest mean validation gain at equal FLOPs (the claim's own "
          "criterion, on the paper's IVF; not the best MRR)",
          "mapped − natural recall@K at equal FLOPs (per question, log-FLOP interpolation)",
          "> 0 on the paper's IVF (second verdict: on every IVF setup)",
          judge_mapped_beats_natural, IVF),
    Claim("ood-not-catastrophic", "A.3, Fig. 7",
          "Under growing query noise the degradation is not catastrophic", ["hotpotqa"],
          "relatively high recall at the largest noise; judged as Fig. 7 (right): mapped − natural "
          "MRR at equal FLOPs ≥ −0.05 at the largest noise",
          "per test question, nprobe and noise level: rank of y* and FLOPs",
          "the OOD model (of best validation MRR if several)",
          "mapped − natural MRR at equal FLOPs at the largest noise", f"> {OOD_GAP_FLOOR:+g}",
          judge_ood_not_catastrophic, OOD),
    Claim("larger-lower-erel", "A.4, Fig. 8", "Larger models reach lower E_rel during training",
          ["quora"], "E_rel decreases with size",
          "per validation question: E_rel at the end of training",
          "every c = 1 KeyNet", "Spearman(size, final validation E_rel)", "< 0",
          judge_larger_lower_erel_in_training, TRAINED),
]
