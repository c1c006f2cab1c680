"""The leakage study (Figure 9): do the paper's gains depend on test questions leaking into
training?

The official code augments every question and then splits, so noisy copies of test questions
are trained on (`paper` split mode); this suite splits first (`leak_free`). A study pairs two
datasets that are the same data, grid and seeds but for the split mode, and asks per mode:
test E_rel and MRR of every c = 1 model, and whether querying the paper's IVF index with the
mapped key ŷ beats the natural query x at equal FLOPs.

The IVF gain of a model and seed is the mean, over its mapped operating points inside the
natural curve's FLOP range, of recall(mapped) − recall(natural at the same FLOPs, interpolated
in log-FLOPs), at the largest Recall@k; `share` is the fraction of those points above natural.
Under each mode the model judged is the one of best validation MRR (mean over seeds), never the
one of largest test gain, and mapped beats natural only when its gain clears the seeds' noise
(`beats_natural`): the report and Figure 9 use this one criterion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .io import InputError
from .results import gain_at_equal_flops, largest_recall, with_ivf_setup

MODEL_KEYS = ["model", "size", "depth", "n_x"]


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
        return {"leak_free": self.leak_free, "paper": self.paper}


def paper_ivf(ivf: pd.DataFrame) -> pd.DataFrame:
    """The rows of the paper's IVF setup (ivf.faiss)."""
    ivf = with_ivf_setup(ivf[ivf["index"] == "ivf"])
    return ivf[ivf["paper_setup"]]


def per_seed(metrics: pd.DataFrame, ivf: pd.DataFrame, pairs: list[LeakagePair]) -> pd.DataFrame:
    """One row per pair, mode, c = 1 model and seed: test E_rel, MRR, IVF gain and share."""
    rows = []
    recall = largest_recall(ivf) if len(ivf) else ""
    for pair in pairs:
        for mode, dataset in pair.modes().items():
            m = metrics[(metrics.dataset == dataset) & (metrics.clusters == 1)
                        & (metrics.model != "identity")]
            if not len(m):
                raise InputError(f"leakage: no c = 1 model of dataset {dataset!r} ({mode})")
            v = paper_ivf(ivf[ivf.dataset == dataset]) if len(ivf) else ivf
            natural = v[v["query"] == "natural"] if len(v) else v
            for r in m.itertuples(index=False):
                gain = share = float("nan")
                if len(natural):
                    mapped = v[(v["query"] == "mapped") & (v.model == r.model)
                               & (v["size"].astype(str) == str(r.size))
                               & (pd.to_numeric(v.depth) == r.depth)
                               & (pd.to_numeric(v.n_x) == r.n_x)
                               & (pd.to_numeric(v.seed) == r.seed)]
                    if len(mapped):
                        gain, share = gain_at_equal_flops(mapped, natural, recall)
                rows.append({"pair": f"{pair.leak_free} / {pair.paper}", "mode": mode,
                             "dataset": dataset, "model": r.model, "size": r.size,
                             "depth": int(r.depth), "n_x": int(r.n_x), "seed": int(r.seed),
                             "e_rel": r.e_rel, "mrr": r.mrr, "val_mrr": getattr(r, "val_mrr", float("nan")),
                             "recall": recall,
                             "ivf_gain": gain, "ivf_share": share})
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
    return out.reset_index()


def beats_natural(gain: float, sd: float, seeds: int) -> str:
    """"yes" when the mean gain clears its noise (mean − 2·sd/√seeds > 0), "no" when it is
    clearly below (mean + 2·sd/√seeds < 0), else "within noise"; one seed measures no noise."""
    if pd.isna(gain):
        return "not measured"
    if seeds < 2 or pd.isna(sd):
        return "undecided (one seed: no spread)"
    margin = 2 * sd / math.sqrt(seeds)
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
    """Per pair and mode: the model chosen on validation, and whether its mapped key beats
    natural x at equal FLOPs beyond the seeds' noise (`beats_natural`)."""
    rows = []
    for (pair, mode), sub in table.groupby(["pair", "mode"], sort=False):
        best = chosen_model(sub)
        if best is None:
            rows.append({"pair": pair, "mode": mode, "dataset": sub.dataset.iloc[0],
                         "model (chosen on validation MRR)": "—",
                         "mapped beats natural": "not measured"})
            continue
        rows.append({"pair": pair, "mode": mode, "dataset": best.dataset,
                     "model (chosen on validation MRR)": f"{best.model} {best['size']} L={best.depth}",
                     "test E_rel": _pm(best.e_rel, best.e_rel_sd),
                     "test MRR": _pm(best.mrr, best.mrr_sd, signed=False),
                     f"{best.recall} gain at equal FLOPs": _pm(best.ivf_gain, best.ivf_gain_sd),
                     "points above natural": _pm(best.ivf_share, best.ivf_share_sd, signed=False),
                     "seeds": int(best.seeds),
                     "mapped beats natural": beats_natural(best.ivf_gain, best.ivf_gain_sd,
                                                           int(best.seeds))})
    return pd.DataFrame(rows)


def _pm(mean: float, sd: float, signed: bool = True) -> str:
    value = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return value if pd.isna(sd) else f"{value} ± {sd:.3f}"
