"""Figure 3: E_rel against MRR at the end of training, the identity ŷ = x as reference."""

from __future__ import annotations

from pathlib import Path

from ..results import read_metrics
from . import style
from .style import plt


def fig3_erel_mrr(metrics_paths: list[str | Path], out_stem: str | Path) -> None:
    """One panel per (dataset, model): test E_rel (x) vs MRR (y); colour = size, marker = depth.

    An identity.json among the inputs adds the reference point ŷ = x (E_rel 0, MRR 1 by
    construction) to every panel of its dataset: a model is worth something left of it.
    """
    df = read_metrics(metrics_paths)
    df = df[df.clusters == 1]
    identity = df[df.model == "identity"].set_index("dataset")
    df = df[df.model != "identity"]
    keys = ["dataset", "model", "size", "depth", "n_x"]
    agg = df.groupby(keys).agg(e_rel=("e_rel", "mean"), e_rel_sd=("e_rel", "std"),
                               mrr=("mrr", "mean"), mrr_sd=("mrr", "std"),
                               seeds=("seed", "count")).reset_index().fillna(0.0)
    panels = list(agg.groupby(["dataset", "model"]).groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.3), squeeze=False)
    for ax, (dataset, model) in zip(axes[0], panels):
        sub = agg[(agg.dataset == dataset) & (agg.model == model)]
        for _, r in sub.iterrows():
            ax.errorbar(r.e_rel, r.mrr, xerr=r.e_rel_sd or None, yerr=r.mrr_sd or None,
                        fmt=style.marker_for(r.depth), color=style.color_for(r["size"]), ms=6,
                        mec="k" if r.n_x < r.depth - 1 else style.color_for(r["size"]),
                        label=f"{r['size']} L={int(r.depth)} n_x={int(r.n_x)}")
        if dataset in identity.index:
            ref = identity.loc[dataset]
            ax.plot(ref.e_rel, ref.mrr, "*", color="k", ms=11, label="identity ŷ = x (reference)")
        ax.set_title(f"{dataset}: {style.MODEL_LABEL[model]}")
        ax.set_xlabel("E_rel, log-ratio of squared distances\n(lower is better)")
        ax.set_ylabel("MRR of y* by distance to ŷ")
        ax.legend(ncol=1, frameon=False, loc="best", fontsize=7)
    fig.suptitle("Figure 3 — E_rel vs MRR at the end of training (upper left is best; the star "
                 "is ŷ = x); colour = size, marker = depth", fontsize=9)
    fig.tight_layout()
    records = agg.to_dict("records") + [
        {"dataset": ds, "model": "identity", "e_rel": r.e_rel, "mrr": r.mrr}
        for ds, r in identity.iterrows()]
    style.save_figure(fig, out_stem, records)
