"""The leakage study (Figure 9): do the paper's gains depend on test questions leaking into
training?

The official code augments every question and then splits, so noisy copies of test questions
are trained on (`official` split mode); this suite splits first (`leak_free`). A study pairs two
datasets that are the same data, grid and seeds but for the split mode, and asks per arm:
test E_rel and MRR of every c = 1 model, and whether querying the paper's IVF index with the
mapped key ŷ beats the natural query x at equal FLOPs. Three arms (ARMS): the leak-free model
on its clean test questions; the official-split model on its own test set as published (about 80 %
noisy copies, so natural x is handicapped with no leak at all); and the official-split model on
the leak-free test questions, which its split held out whole (`clean_test`). Arms 1 and 3 see
the same questions and train on as many rows, so their difference is the leak.

The IVF gain of a model and seed is the mean, over its mapped operating points inside the
natural curve's FLOP range, of recall(mapped) − recall(natural at the same FLOPs, interpolated
in log-FLOPs), at the largest Recall@k; `share` is the fraction of those points above natural.
Under each mode the model judged is the one of best validation MRR (mean over seeds), never the
one of largest test gain; without validation numbers no model is chosen and the arm is
undecided. Whether mapped beats natural is read from the 95 % interval of that gain, computed
per question from the sweeps' per-question files and bootstrapped over the test questions
(and the seeds, from three on) as every claim of the report (`arm_verdict`): it holds when the
whole interval is above 0, fails when it is all below, and is undecided otherwise; the report
and Figure 9 use this one criterion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.errors import InputError
from ..core.storage import load_json
from .evidence import QuestionEvidence, gain_interval
from .results import gain_at_equal_flops, largest_recall, paper_ivf, read_tables
from .selection import variant_of
from .statistics import UNDECIDED, Interval, judge

MODEL_KEYS = ["variant", "model", "size", "depth", "n_x"]
#: the study's arms, in the order of the report and Figure 9
ARMS = {"leak_free": "leak-free model, clean test",
        "official": "official-split model, its own test (as published)",
        "official_clean": "official-split model, clean test"}


@dataclass(frozen=True)
class LeakagePair:
    leak_free: str  # dataset split leak-free
    official: str  # the same data, split as the official code does

    @classmethod
    def parse(cls, text: str) -> LeakagePair:
        """LEAK_FREE:OFFICIAL, as the CLI takes it."""
        parts = text.split(":")
        if len(parts) != 2 or not all(parts):
            raise InputError(f"--pairs: {text!r} is not LEAK_FREE_DATASET:OFFICIAL_DATASET")
        return cls(*parts)

    def modes(self) -> dict[str, str]:
        """The dataset whose models each arm judges."""
        return {"leak_free": self.leak_free, "official": self.official, "official_clean": self.official}


def read_clean_tests(json_paths: list[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per clean-test JSON, the IVF rows of the CSVs beside them): the third arm."""
    rows = []
    for path in json_paths:
        m = load_json(path)
        rows.append({"dataset": m["dataset"], "run": f"{m['dataset']}/{Path(path).stem}",
                     "model": m["model"], "size": m["size"],
                     "depth": m["depth"], "n_x": m["n_x"], "clusters": m.get("n_clusters", 1),
                     "seed": m["seed"], "e_rel": m["test"]["e_rel"], "mrr": m["test"]["mrr"],
                     "n_clean": m["n_clean"], "n_test": m["n_test"]})
    csvs = [Path(p).with_suffix(".csv") for p in json_paths]
    return pd.DataFrame(rows), read_tables(csvs, source="file") if csvs else pd.DataFrame()


def _arm_rows(pair: LeakagePair, arm: str, m: pd.DataFrame, v: pd.DataFrame, recall: str,
              val_mrr: dict) -> list[dict]:
    """Per-seed rows of one arm: its models' metrics `m` and the paper-setup IVF rows `v`."""
    natural = v[v["query"] == "natural"] if len(v) else v
    rows = []
    for r in m.itertuples(index=False):
        gain = share = float("nan")
        variant = variant_of(r.run)
        if len(natural):
            mapped = v[(v["query"] == "mapped") & (v.file.map(variant_of) == variant)
                       & (pd.to_numeric(v.seed) == r.seed)]
            if len(mapped):
                gain, share = gain_at_equal_flops(mapped, natural, recall)
        model = (variant, int(r.seed))
        rows.append({"pair": f"{pair.leak_free} / {pair.official}", "mode": arm,
                     "dataset": r.dataset, "variant": variant, "model": r.model, "size": r.size,
                     "depth": int(r.depth), "n_x": int(r.n_x), "seed": int(r.seed),
                     "e_rel": r.e_rel, "mrr": r.mrr, "val_mrr": val_mrr.get(model, float("nan")),
                     "test_questions": (f"{int(r.n_clean)} of {int(r.n_test)} leak-free test "
                                        f"questions, no copy trained on"
                                        if hasattr(r, "n_clean") else ""),
                     "recall": recall, "ivf_gain": gain, "ivf_share": share})
    return rows


def per_seed(metrics: pd.DataFrame, ivf: pd.DataFrame, pairs: list[LeakagePair],
             clean: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per pair, arm, c = 1 model and seed: test E_rel, MRR, IVF gain and share. The
    third arm needs `clean` (`read_clean_tests`); its model is chosen by the validation MRR the
    official-split model has on its own validation split."""
    rows = []
    recall = largest_recall(ivf) if len(ivf) else ""
    clean_metrics, clean_ivf = clean if clean is not None else (pd.DataFrame(), pd.DataFrame())
    for pair in pairs:
        val_mrr: dict = {}
        for arm, dataset in pair.modes().items():
            if arm == "official_clean":
                if not len(clean_metrics):
                    continue
                m = clean_metrics[clean_metrics.dataset == dataset]
                v = paper_ivf(clean_ivf[clean_ivf.dataset == dataset]) if len(clean_ivf) else clean_ivf
            else:
                m = metrics[(metrics.dataset == dataset) & (metrics.clusters == 1)
                            & (metrics.model != "identity")]
                v = paper_ivf(ivf[ivf.dataset == dataset]) if len(ivf) else ivf
                val_mrr = {(variant_of(r.run), int(r.seed)): getattr(r, "val_mrr", float("nan"))
                           for r in m.itertuples(index=False)}
            if not len(m):
                raise InputError(f"leakage: no c = 1 model of dataset {dataset!r} ({ARMS[arm]})")
            rows += _arm_rows(pair, arm, m, v, recall, val_mrr)
    return pd.DataFrame(rows)


def summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every model under every mode."""
    keys = ["pair", "mode", "dataset"] + MODEL_KEYS + ["recall"]
    grouped = seeds.groupby(keys, sort=False)
    out = grouped[["e_rel", "mrr", "ivf_gain", "ivf_share", "val_mrr"]].mean()
    spread = grouped[["e_rel", "mrr", "ivf_gain", "ivf_share"]].std()
    for col in spread:
        out[f"{col}_sd"] = spread[col]
    out["seeds"] = grouped.size()
    out["test_questions"] = grouped["test_questions"].first()
    return out.reset_index()


def chosen_model(sub: pd.DataFrame) -> pd.Series | None:
    """The row of the model of best validation MRR (mean over seeds) among those with an IVF
    gain; None without validation numbers (the test gain never chooses)."""
    measured = sub.dropna(subset=["ivf_gain"])
    if not len(measured) or "val_mrr" not in measured or not measured.val_mrr.notna().any():
        return None
    return measured.loc[measured.val_mrr.idxmax()]


def arm_sweep(pair: LeakagePair, mode: str, ivf: pd.DataFrame,
              clean_ivf: pd.DataFrame | None) -> tuple[str, str, pd.DataFrame]:
    """(kind of per-question file, dataset, paper-setup IVF rows) an arm's gain is read from."""
    dataset = pair.modes()[mode]
    source, kind = (clean_ivf, "clean_test") if mode == "official_clean" else (ivf, "ivf")
    if source is None or not len(source):
        return kind, dataset, pd.DataFrame()
    return kind, dataset, paper_ivf(source[source.dataset == dataset])


def arm_verdict(evidence: QuestionEvidence, kind: str, dataset: str, sweep: pd.DataFrame,
                best: pd.Series | None, recall: str) -> tuple[str, Interval | None, str]:
    """(holds | fails | undecided, the interval of the gain, why undecided) of "the mapped key
    of the model chosen on validation beats natural x at equal FLOPs" in one arm."""
    if best is None:
        return UNDECIDED, None, "no model chosen: no validation MRR"
    if not len(sweep) or "file" not in sweep:
        return UNDECIDED, None, "no IVF rows"
    natural = sweep[sweep["query"] == "natural"]
    mapped = sweep[(sweep["query"] == "mapped") & (sweep.file.map(variant_of) == best.variant)]
    interval = gain_interval(evidence, kind, dataset, natural, mapped, recall)
    if not isinstance(interval, Interval):
        return UNDECIDED, None, interval
    value, reason = judge(interval, 0.0, "above")
    return value, interval, reason


def verdicts(table: pd.DataFrame, evidence: QuestionEvidence, ivf: pd.DataFrame,
             clean_ivf: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per pair and arm: the model chosen on validation, and whether its mapped key beats
    natural x at equal FLOPs (`arm_verdict`: the gain's interval over test questions)."""
    rows = []
    for (pair_name, mode), sub in table.groupby(["pair", "mode"], sort=False):
        pair = LeakagePair(*pair_name.split(" / "))
        best = chosen_model(sub)
        value, interval, reason = arm_verdict(evidence, *arm_sweep(pair, mode, ivf, clean_ivf),
                                              best, sub.recall.iloc[0])
        said = value if value != UNDECIDED else f"undecided ({reason})"
        if best is None:
            rows.append({"pair": pair_name, "mode": mode, "arm": ARMS[mode],
                         "dataset": sub.dataset.iloc[0], "model (chosen on validation MRR)": "—",
                         "mapped beats natural": said})
            continue
        rows.append({"pair": pair_name, "mode": mode, "arm": ARMS[mode], "dataset": best.dataset,
                     "test questions": best.get("test_questions") or "its own test split",
                     "model (chosen on validation MRR)": best.variant,
                     "test E_rel": _pm(best.e_rel, best.e_rel_sd),
                     "test MRR": _pm(best.mrr, best.mrr_sd, signed=False),
                     f"{best.recall} gain at equal FLOPs [95 % interval]":
                         interval.text() if interval is not None else "—",
                     "points above natural": _pm(best.ivf_share, best.ivf_share_sd, signed=False),
                     "seeds": int(best.seeds), "mapped beats natural": said})
    return pd.DataFrame(rows)


def _pm(mean: float, sd: float, signed: bool = True) -> str:
    value = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return value if pd.isna(sd) else f"{value} ± {sd:.3f}"
