"""The leakage study (Figure 9): do the paper's gains depend on test questions leaking into
training?

The official code augments every question and then splits, so noisy copies of test questions
are trained on (`paper` split mode); this suite splits first (`leak_free`). A study pairs two
datasets that are the same data, grid and seeds but for the split mode, and asks per arm:
test E_rel and MRR of every c = 1 model, and whether querying the paper's IVF index with the
mapped key ŷ beats the natural query x at equal FLOPs. Three arms (ARMS): the leak-free model
on its clean test questions; the paper-split model on its own test set as published (about 80 %
noisy copies, so natural x is handicapped with no leak at all); and the paper-split model on
the leak-free test questions, which its split held out whole (`clean_test`). Arms 1 and 3 see
the same questions and train on as many rows, so their difference is the leak.

The IVF gain of a model and seed is the mean, over its mapped operating points inside the
natural curve's FLOP range, of recall(mapped) − recall(natural at the same FLOPs, interpolated
in log-FLOPs), at the largest Recall@k; `share` is the fraction of those points above natural.
Under each mode the model judged is the one of best validation MRR (mean over seeds), never the
one of largest test gain, and mapped beats natural only when its gain clears the seeds' noise
(`beats_natural`): the report and Figure 9 use this one criterion. With one seed there is no
spread over seeds; the margin is then two binomial standard errors over the test questions at
the operating point where they are largest (`one_seed_margin`), a bound that holds when the
mapped and natural hits are not negatively correlated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.files import InputError, load_json
from .results import at_equal_flops, gain_at_equal_flops, largest_recall, read_tables, with_ivf_setup

MODEL_KEYS = ["model", "size", "depth", "n_x"]
#: the study's arms, in the order of the report and Figure 9
ARMS = {"leak_free": "leak-free model, clean test",
        "paper": "paper-split model, its own test (as published)",
        "paper_clean": "paper-split model, clean test"}


@dataclass(frozen=True)
class LeakagePair:
    leak_free: str  # dataset split leak-free
    paper: str  # the same data, split as the official code does

    @classmethod
    def parse(cls, text: str) -> LeakagePair:
        """LEAK_FREE:PAPER, as the CLI takes it."""
        parts = text.split(":")
        if len(parts) != 2 or not all(parts):
            raise InputError(f"--pairs: {text!r} is not LEAK_FREE_DATASET:PAPER_DATASET")
        return cls(*parts)

    def modes(self) -> dict[str, str]:
        """The dataset whose models each arm judges."""
        return {"leak_free": self.leak_free, "paper": self.paper, "paper_clean": self.paper}


def paper_ivf(ivf: pd.DataFrame) -> pd.DataFrame:
    """The rows of the paper's IVF setup (ivf.faiss)."""
    ivf = with_ivf_setup(ivf[ivf["index"] == "ivf"])
    return ivf[ivf["paper_setup"]]


def read_clean_tests(json_paths: list[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per clean-test JSON, the IVF rows of the CSVs beside them): the third arm."""
    rows = []
    for path in json_paths:
        m = load_json(path)
        rows.append({"dataset": m["dataset"], "model": m["model"], "size": m["size"],
                     "depth": m["depth"], "n_x": m["n_x"], "clusters": m.get("n_clusters", 1),
                     "seed": m["seed"], "e_rel": m["test"]["e_rel"], "mrr": m["test"]["mrr"],
                     "n_clean": m["n_clean"], "n_test": m["n_test"]})
    csvs = [Path(p).with_suffix(".csv") for p in json_paths]
    return pd.DataFrame(rows), read_tables(csvs) if csvs else pd.DataFrame()


def one_seed_margin(mapped: pd.DataFrame, natural: pd.DataFrame, metric: str) -> float:
    """Two binomial standard errors over the test questions of a gain measured once: at each
    mapped point inside the natural range, sqrt(p(1-p)/n) of both recalls combined, the
    largest over the points (the mean of the differences varies no more than its worst term);
    NaN for rows that do not say how many questions they scored."""
    if "n_queries" not in mapped or "n_queries" not in natural:
        return float("nan")
    paired = at_equal_flops(mapped, natural, metric, extra=("n_queries",))
    if paired is None:
        return float("nan")
    inside, p_nat = paired
    p_map = inside[metric].to_numpy()
    n = inside.n_queries.to_numpy()
    return float(2 * np.sqrt(p_map * (1 - p_map) / n + p_nat * (1 - p_nat) / n).max())


def _arm_rows(pair: LeakagePair, arm: str, m: pd.DataFrame, v: pd.DataFrame, recall: str,
              val_mrr: dict) -> list[dict]:
    """Per-seed rows of one arm: its models' metrics `m` and the paper-setup IVF rows `v`."""
    natural = v[v["query"] == "natural"] if len(v) else v
    rows = []
    for r in m.itertuples(index=False):
        gain = share = margin = float("nan")
        if len(natural):
            mapped = v[(v["query"] == "mapped") & (v.model == r.model)
                       & (v["size"].astype(str) == str(r.size))
                       & (pd.to_numeric(v.depth) == r.depth)
                       & (pd.to_numeric(v.n_x) == r.n_x)
                       & (pd.to_numeric(v.seed) == r.seed)]
            if len(mapped):
                gain, share = gain_at_equal_flops(mapped, natural, recall)
                margin = one_seed_margin(mapped, natural, recall)
        model = (r.model, str(r.size), int(r.depth), int(r.n_x), int(r.seed))
        rows.append({"pair": f"{pair.leak_free} / {pair.paper}", "mode": arm,
                     "dataset": r.dataset, "model": r.model, "size": r.size,
                     "depth": int(r.depth), "n_x": int(r.n_x), "seed": int(r.seed),
                     "e_rel": r.e_rel, "mrr": r.mrr, "val_mrr": val_mrr.get(model, float("nan")),
                     "test_questions": (f"{int(r.n_clean)} of {int(r.n_test)} leak-free test "
                                        f"questions, no copy trained on"
                                        if hasattr(r, "n_clean") else ""),
                     "recall": recall, "ivf_gain": gain, "ivf_share": share,
                     "one_seed_margin": margin})
    return rows


def per_seed(metrics: pd.DataFrame, ivf: pd.DataFrame, pairs: list[LeakagePair],
             clean: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per pair, arm, c = 1 model and seed: test E_rel, MRR, IVF gain and share. The
    third arm needs `clean` (`read_clean_tests`); its model is chosen by the validation MRR the
    paper-split model has on its own validation split."""
    rows = []
    recall = largest_recall(ivf) if len(ivf) else ""
    clean_metrics, clean_ivf = clean if clean is not None else (pd.DataFrame(), pd.DataFrame())
    for pair in pairs:
        val_mrr: dict = {}
        for arm, dataset in pair.modes().items():
            if arm == "paper_clean":
                if not len(clean_metrics):
                    continue
                m = clean_metrics[clean_metrics.dataset == dataset]
                v = paper_ivf(clean_ivf[clean_ivf.dataset == dataset]) if len(clean_ivf) else clean_ivf
            else:
                m = metrics[(metrics.dataset == dataset) & (metrics.clusters == 1)
                            & (metrics.model != "identity")]
                v = paper_ivf(ivf[ivf.dataset == dataset]) if len(ivf) else ivf
                val_mrr = {(r.model, str(r.size), int(r.depth), int(r.n_x), int(r.seed)):
                           getattr(r, "val_mrr", float("nan")) for r in m.itertuples(index=False)}
            if not len(m):
                raise InputError(f"leakage: no c = 1 model of dataset {dataset!r} ({ARMS[arm]})")
            rows += _arm_rows(pair, arm, m, v, recall, val_mrr)
    return pd.DataFrame(rows)


def summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every model under every mode."""
    keys = ["pair", "mode", "dataset"] + MODEL_KEYS + ["recall"]
    grouped = seeds.groupby(keys, sort=False)
    out = grouped[["e_rel", "mrr", "ivf_gain", "ivf_share", "val_mrr", "one_seed_margin"]].mean()
    spread = grouped[["e_rel", "mrr", "ivf_gain", "ivf_share"]].std()
    for col in spread:
        out[f"{col}_sd"] = spread[col]
    out["seeds"] = grouped.size()
    out["test_questions"] = grouped["test_questions"].first()
    return out.reset_index()


def beats_natural(gain: float, sd: float, seeds: int, one_seed: float = float("nan")) -> str:
    """"yes" when the mean gain clears its noise (mean − 2·sd/√seeds > 0), "no" when it is
    clearly below (mean + 2·sd/√seeds < 0), else "within noise"; with one seed the margin is
    `one_seed` (`one_seed_margin`, over test questions), and without it nothing is decided."""
    if pd.isna(gain):
        return "not measured"
    if seeds >= 2 and not pd.isna(sd):
        margin = 2 * sd / math.sqrt(seeds)
    elif not pd.isna(one_seed):
        margin = one_seed
    else:
        return "undecided (one seed: no spread)"
    return "yes" if gain - margin > 0 else "no" if gain + margin < 0 else "within noise"


def chosen_model(sub: pd.DataFrame) -> pd.Series | None:
    """The row of the model of best validation MRR (mean over seeds) among those with an IVF
    gain; without validation numbers, the first in order (never the largest test gain)."""
    measured = sub.dropna(subset=["ivf_gain"])
    if not len(measured):
        return None
    if "val_mrr" in measured and measured.val_mrr.notna().any():
        return measured.loc[measured.val_mrr.idxmax()]
    return measured.sort_values(MODEL_KEYS).iloc[0]


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Per pair and arm: the model chosen on validation, and whether its mapped key beats
    natural x at equal FLOPs beyond the noise (`beats_natural`)."""
    rows = []
    for (pair, mode), sub in table.groupby(["pair", "mode"], sort=False):
        best = chosen_model(sub)
        if best is None:
            rows.append({"pair": pair, "mode": mode, "arm": ARMS[mode],
                         "dataset": sub.dataset.iloc[0], "model (chosen on validation MRR)": "—",
                         "mapped beats natural": "not measured"})
            continue
        rows.append({"pair": pair, "mode": mode, "arm": ARMS[mode], "dataset": best.dataset,
                     "test questions": best.get("test_questions") or "its own test split",
                     "model (chosen on validation MRR)": f"{best.model} {best['size']} L={best.depth}",
                     "test E_rel": _pm(best.e_rel, best.e_rel_sd),
                     "test MRR": _pm(best.mrr, best.mrr_sd, signed=False),
                     f"{best.recall} gain at equal FLOPs": _pm(best.ivf_gain, best.ivf_gain_sd),
                     "points above natural": _pm(best.ivf_share, best.ivf_share_sd, signed=False),
                     "seeds": int(best.seeds),
                     "mapped beats natural": beats_natural(best.ivf_gain, best.ivf_gain_sd,
                                                           int(best.seeds),
                                                           best.get("one_seed_margin", float("nan")))})
    return pd.DataFrame(rows)


def _pm(mean: float, sd: float, signed: bool = True) -> str:
    value = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return value if pd.isna(sd) else f"{value} ± {sd:.3f}"
