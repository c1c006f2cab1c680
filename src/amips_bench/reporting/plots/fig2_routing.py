"""Figure 2: routing accuracy against FLOPs per query, k = 1…5 clusters searched exactly.

Per dataset two panels: (a) SupportNet and KeyNet against centroid routing by inner product
(the paper's figure; outlined markers = sparse re-injection n_x < L − 1), (b) every baseline —
centroid IP / L2 / cosine, centroid routing at equal cost (m fine centroids), the learned
classifier router, the linear router W·q, the oracle — against the Pareto
frontier of the learned support-function models.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...core.runs import SIZE_ORDER
from ...experiments.routing import FINE_RULE, FINE_SPHERICAL_RULE
from ...models.routers import ROUTERS
from ..results import pareto_front, read_tables
from . import style
from .style import plt

GROUP = ["dataset", "method", "model", "size", "depth", "n_x", "k"]
FINE_COLORS = ["#17becf", "#bcbd22", "#8c564b"]


def _aggregate(paths: list[str | Path]) -> pd.DataFrame:
    df = read_tables(paths)
    for col in ("depth", "n_x"):
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype(int)
    return (df.groupby(GROUP).agg(accuracy=("accuracy", "mean"), accuracy_sd=("accuracy", "std"),
                                  flops_total=("flops_total", "mean"), seeds=("seed", "count"))
            .reset_index().fillna({"accuracy_sd": 0.0}))


def _curve(ax, sub: pd.DataFrame, **kw) -> None:
    sub = sub.sort_values("k")
    ax.errorbar(sub.flops_total, sub.accuracy, yerr=sub.accuracy_sd.where(sub.seeds > 1), **kw)


def fig2_routing(csv_paths: list[str | Path], out_stem: str | Path) -> None:
    df = _aggregate(csv_paths)
    datasets = sorted(df.dataset.unique())
    fig, axes = plt.subplots(len(datasets), 2, figsize=(12.5, 3.6 * len(datasets)), squeeze=False)
    for row, dataset in zip(axes, datasets):
        d = df[df.dataset == dataset]
        learned = d[d.method.isin(list(style.MODEL_LABEL))]
        ax = row[0]
        for (model, size, depth, n_x), sub in learned.groupby(["model", "size", "depth", "n_x"]):
            sparse = n_x < depth - 1
            _curve(ax, sub, color=style.color_for(size), marker=style.marker_for(depth), ms=5,
                   ls=style.MODEL_LINESTYLE[model], mec="k" if sparse else style.color_for(size),
                   mew=1.2 if sparse else 0.5,
                   label=style.model_label(model, size, depth) + (f" n_x={n_x}" if sparse else ""))
        base = d[d.method == "centroid_ip"]
        _curve(ax, base, color=style.BASELINE_COLORS["centroid_ip"], marker="x", ls=":",
               label="centroid routing (max IP)")
        ax.set_title(f"{dataset}: SupportNet / KeyNet vs centroid routing")

        ax = row[1]
        front = pareto_front(list(zip(learned.flops_total, learned.accuracy)))
        if front:
            xs, ys = zip(*front)
            ax.step(xs, ys, where="post", color="#d62728", lw=1.8, label="Pareto front of SupportNet/KeyNet")
        for method, label in (("centroid_ip", "centroid (max IP)"), ("centroid_l2", "centroid (L2, k-means cell)"),
                              ("centroid_cos", "centroid (cosine)")):
            _curve(ax, d[d.method == method], color=style.BASELINE_COLORS[method], marker="x",
                   ls=":", label=label)
        for rule, kind, ls in ((FINE_RULE, "", "-."), (FINE_SPHERICAL_RULE, "spherical ", (0, (1, 1)))):
            fine = sorted((m for m in d.method.unique() if m.startswith(rule)),
                          key=lambda m: int(m[len(rule):]))
            for i, method in enumerate(fine):  # centroid routing at equal cost
                _curve(ax, d[d.method == method], color=FINE_COLORS[i % len(FINE_COLORS)],
                       marker="+", ms=7, ls=ls,
                       label=f"{kind}fine centroids, m = {method[len(rule):]} (2·m·d)")
        for kind in ROUTERS.values():  # the learned routers, kind by kind of the registry
            if kind.sized:
                for size, sub in d[d.method == kind.method].groupby("size"):
                    _curve(ax, sub, color=kind.color, marker="D", ms=4,
                           alpha=0.5 + 0.1 * SIZE_ORDER.index(size), label=f"{kind.label} {size}")
            else:
                _curve(ax, d[d.method == kind.method], color=kind.color, marker="s", ms=4,
                       ls="--", label=kind.label)
        oracle = d[d.method == "oracle"]
        ax.scatter(oracle.flops_total, oracle.accuracy, marker="*", s=120,
                   color=style.BASELINE_COLORS["oracle"], zorder=4, label="oracle (scan only)")
        ax.set_title(f"{dataset}: baselines vs the learned frontier")
        for ax in row:
            style.flops_axis(ax)
            ax.set_ylabel("routing accuracy (top key's cluster selected)")
        row[0].legend(frameon=False, fontsize=6, loc="lower right")
        style.legend_beside(row[1])  # a dozen baselines: beside the panel, never over a curve
    fig.suptitle("Figure 2 — routing to the top-k of c clusters (k = 1…5 along each curve), "
                 "cost = router + exact scan of the selected clusters", fontsize=9)
    fig.tight_layout()
    style.save_figure(fig, out_stem, df.to_dict("records"))
