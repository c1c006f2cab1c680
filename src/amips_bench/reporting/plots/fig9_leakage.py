"""Figure 9: the leakage study — the same data and grid split leak-free and as the official code
does (augment, then split), side by side, in three arms (leakage.ARMS): the leak-free model,
the official-split model on its own test set, and the official-split model on the clean questions.

Per dataset pair one row: (a) test E_rel and (b) test MRR of every c = 1 model under each arm,
(c) the IVF Recall@k gain of mapped ŷ over natural x at equal FLOPs (mean over operating
points), all with the spread over seeds, the verdict of the report's criterion (the 95 %
interval over test questions of the gain of the model chosen on validation MRR lies above 0)
written per arm, and (d) the Recall@k vs FLOPs curves of natural x and of that chosen model,
per arm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..evidence import QuestionEvidence
from ..leakage import (
    ARMS,
    LeakagePair,
    arm_sweep,
    arm_verdict,
    chosen_model,
    per_seed,
    read_clean_tests,
    summary,
)
from ..results import paper_ivf, read_metrics, read_tables
from . import style
from .style import plt

MODE_COLORS = {"leak_free": "#1f77b4", "official": "#d62728", "official_clean": "#9467bd"}


def _bars(ax, table: pd.DataFrame, column: str, ylabel: str) -> None:
    labels = list(dict.fromkeys(f"{style.model_label(r.model, r.size, r.depth)}"
                                for r in table.itertuples()))
    x = np.arange(len(labels))
    arms = list(dict.fromkeys(table["mode"]))
    for i, (mode, sub) in enumerate(table.groupby("mode", sort=False)):
        where = [labels.index(style.model_label(r.model, r.size, r.depth)) for r in sub.itertuples()]
        ax.errorbar(x[where] + (i - (len(arms) - 1) / 2) * 0.2, sub[column], yerr=sub[f"{column}_sd"],
                    fmt="o", ms=5, capsize=3, color=MODE_COLORS[mode], label=ARMS[mode])
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set_xlim(-0.5, len(labels) - 0.5)  # one slot per model, however few
    ax.set_ylabel(ylabel)


def fig9_leakage(metrics_paths: list[str | Path], ivf_paths: list[str | Path], pairs: list[str],
                 out_stem: str | Path, clean_tests: list[str | Path] = ()) -> None:
    parsed = [LeakagePair.parse(p) for p in pairs]
    metrics = read_metrics(metrics_paths)
    ivf = read_tables(ivf_paths, source="file")
    clean = read_clean_tests(list(clean_tests)) if clean_tests else None
    evidence = QuestionEvidence.beside(
        {"ivf": list(ivf_paths), "clean_test": [Path(p).with_suffix(".csv") for p in clean_tests]}, [])
    seeds = per_seed(metrics, ivf, parsed, clean)
    table = summary(seeds)
    fig, axes = plt.subplots(len(parsed), 4, figsize=(15, 3.6 * len(parsed)), squeeze=False)
    for row, pair in zip(axes, parsed):
        t = table[table.pair == f"{pair.leak_free} / {pair.official}"]
        _bars(row[0], t, "e_rel", "test E_rel (log-ratio of squared distances)")
        row[0].axhline(0, color="k", lw=0.6)
        row[0].set_title(f"{pair.leak_free} / {pair.official}: E_rel", fontsize=9)
        _bars(row[1], t, "mrr", "test MRR")
        row[1].set_title("MRR of the exact top key", fontsize=9)
        recall = t.recall.iloc[0] if len(t) else "recall"
        _bars(row[2], t, "ivf_gain", f"{recall} gain (mapped − natural)")
        row[2].axhline(0, color="k", lw=0.8, ls="--")
        said = []
        for i, mode in enumerate(dict.fromkeys(t["mode"]), start=1):
            best = chosen_model(t[t["mode"] == mode])
            value, interval, reason = arm_verdict(evidence, *arm_sweep(pair, mode, ivf, clean and clean[1]),
                                                  best, recall)
            shown = (f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"
                     if interval else reason)
            said.append(f"({i}) {value}: {shown}")
        row[2].set_title("IVF gain of mapped ŷ; beats natural\n(95 % interval over questions > 0)?\n"
                         + "\n".join(said), fontsize=7)
        ax = row[3]
        for mode in dict.fromkeys(t["mode"]):
            source = clean[1] if mode == "official_clean" else ivf
            v = paper_ivf(source[source.dataset == pair.modes()[mode]])
            nat = v[v["query"] == "natural"].groupby("budget")[["flops_total", recall]].mean()
            nat = nat.sort_values("flops_total")
            ax.plot(nat.flops_total, nat[recall], color=MODE_COLORS[mode], ls="--", marker="x",
                    ms=4, label=f"natural x, {ARMS[mode]}")
            best = chosen_model(t[t["mode"] == mode])
            if best is None:
                continue
            mapped = v[(v["query"] == "mapped") & (v.model == best.model)
                       & (v["size"].astype(str) == str(best["size"]))
                       & (pd.to_numeric(v.depth) == best.depth) & (pd.to_numeric(v.n_x) == best.n_x)]
            curve = mapped.groupby("budget")[["flops_total", recall]].agg(["mean", "std"])
            curve = curve.sort_values(("flops_total", "mean"))
            x, y = curve[("flops_total", "mean")], curve[(recall, "mean")]
            ax.plot(x, y, color=MODE_COLORS[mode], marker="o", ms=4,
                    label=f"mapped ŷ ({style.model_label(best.model, best['size'], best.depth)}), "
                          f"{ARMS[mode]}")
            sd = curve[(recall, "std")].fillna(0)
            ax.fill_between(x, y - sd, y + sd, color=MODE_COLORS[mode], alpha=0.2)
        style.flops_axis(ax, 7)
        ax.set_ylabel(recall)
        ax.set_title("IVF (paper's setup), nprobe sweep", fontsize=9)
        style.legend_beside(ax)  # rising curves fill the panel's corners: outside, never over one
        row[0].legend(frameon=False, fontsize=6)
    fig.suptitle("Figure 9 — leakage study: the same data, grid and seeds split leak-free and as "
                 "the official code does; error bars and bands: ± one standard deviation over "
                 "seeds", fontsize=9)
    fig.tight_layout()
    style.save_figure(fig, out_stem, table.to_dict("records"))
