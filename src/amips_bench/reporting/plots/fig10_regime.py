"""Figure 10: where mapping pays — (a) the recall gain of each model's queries over natural x at
equal FLOPs on the paper's IVF (nlist = √n) against n, with 95 % intervals, the fitted trend in
log n and its read-out at the prediction point; (b) what the model costs in probes of that index
(its FLOPs over one average list's scan), beside ρ·√n and the whole index (√n lists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.runs import SIZES
from ...core.stage_settings import RegimeSettings
from ..claims import Results
from ..regime import MODES, regime_table, trend
from . import style
from .style import plt

MODE_LINESTYLE = {"mapped": "-", "probe_mapped": ":"}


def fig10_regime(csv_paths: list[str | Path], metrics_paths: list[str | Path],
                 history_paths: list[str | Path], datasets: list[str], settings: list[str],
                 out_stem: str | Path) -> None:
    regime = RegimeSettings.from_arguments(datasets, settings)
    res = Results.load(metrics=metrics_paths, histories=history_paths, routing=[], ivf=csv_paths,
                       ood=[], table1=None, kinds={})
    table = regime_table(res, regime)
    lines = trend(table, regime)
    fig, (gain_ax, cost_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    if len(table):
        n_all = np.array(sorted(set(table.n_keys)) + [regime.predict_at], dtype=float)
        for (model, size, query), t in table.groupby(["model", "size", "query"], sort=False):
            color, ls = style.color_for(size), MODE_LINESTYLE[query]
            label = f"{style.model_label(model, size)}, {MODES[query]}"
            gain_ax.errorbar(t.n_keys, t.gain, yerr=[t.gain - t.gain_low, t.gain_high - t.gain],
                             color=color, ls=ls, marker="o" if model == "keynet" else "^",
                             mfc="none" if query == "probe_mapped" else color, ms=5, capsize=2,
                             label=label)
            fit = lines[(lines.model == model) & (lines["size"] == size) & (lines["query"] == query)]
            if len(fit) and fit.points.iloc[0] >= 2:
                f = fit.iloc[0]
                x = np.geomspace(t.n_keys.min(), regime.predict_at, 50)
                at_predict = f.predicted_gain
                slope = f.slope_per_decade
                gain_ax.plot(x, at_predict + slope * (np.log10(x) - np.log10(regime.predict_at)),
                             color=color, ls="--", lw=0.8, alpha=0.7)
                gain_ax.errorbar([regime.predict_at], [at_predict],
                                 yerr=[[at_predict - f.predicted_low], [f.predicted_high - at_predict]],
                                 color=color, marker="D", mfc="white", ms=5, capsize=2)
        gain_ax.axhline(0, color="k", lw=0.6)
        gain_ax.axvline(regime.predict_at, color="#888888", lw=0.6, ls=":")
        per_model = table.drop_duplicates(["model", "size", "n_keys"])
        for (model, size), t in per_model.groupby(["model", "size"], sort=False):
            cost_ax.plot(t.n_keys, t.model_probes, color=style.color_for(size),
                         marker="o" if model == "keynet" else "^", ls="-",
                         label=f"{style.model_label(model, size)} (measured)")
        for size in dict.fromkeys(per_model["size"]):
            cost_ax.plot(n_all, SIZES[size] * np.sqrt(n_all), color=style.color_for(size),
                         ls=":", lw=0.8, label=f"ρ·√n, ρ = {SIZES[size]:g}")
        cost_ax.plot(n_all, np.sqrt(n_all), color="k", ls="--", lw=0.8, label="every list (√n)")
    for ax in (gain_ax, cost_ax):
        ax.set_xscale("log")
        ax.set_xlabel("keys n (log scale)")
    cost_ax.set_yscale("log")
    k_text = f"{regime.recall_fraction * 100:g} % of n"
    gain_ax.set_ylabel(f"recall@({k_text}) gain over natural x\nat equal FLOPs (95 % interval)")
    gain_ax.set_title(f"(a) mapping pays above 0; ◇ the line read at {regime.predict_at:,} keys\n"
                      "(a prediction widened by the line's misfit, not a verdict)", fontsize=8)
    cost_ax.set_ylabel("model FLOPs in probes of an IVF with √n lists")
    cost_ax.set_title("(b) what the model costs, in probes", fontsize=8)
    style.legend_below(gain_ax)
    style.legend_below(cost_ax)
    fig.suptitle("Figure 10 — where mapping pays: one generator at growing n, models trained to "
                 "their plateau, the paper's IVF (nlist = √n)", fontsize=9)
    fig.tight_layout()
    style.save_figure(fig, out_stem, table.to_dict("records") + lines.to_dict("records"))

