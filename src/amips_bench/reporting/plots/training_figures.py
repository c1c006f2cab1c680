"""Figure 1 (2-D toy), Figure 3 (E_rel vs MRR at the end of training), Figure 8 (E_rel over steps)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from ...core.runs import SIZE_ORDER
from ...models.toy import TOY_KEYS, exact_support, learned_support, train_toy_supportnet
from ..results import read_histories, read_metrics
from . import style
from .style import plt


def fig1_toy(out_stem: str | Path, steps: int = 3000, seed: int = 0) -> None:

    lim, n = 1.6, 161
    xs = np.linspace(-lim, lim, n, dtype=np.float32)
    grid = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    exact, exact_key = exact_support(grid)
    model = train_toy_supportnet(steps=steps, seed=seed)
    learned, learned_key = learned_support(model, grid)
    levels = np.linspace(exact.min(), exact.max(), 13)
    # constrained layout keeps the colour bar and its labels clear of the key-map panel
    fig, axes = plt.subplots(1, 3, figsize=(11.0, 3.6), layout="constrained")
    cmap = plt.get_cmap("tab10")
    for ax, values, title in ((axes[0], exact, "exact support function σ_Y(x)"),
                              (axes[1], learned, "SupportNet f(x) (learned)")):
        cs = ax.contourf(xs, xs, values.reshape(n, n), levels=levels, cmap="viridis")
        ax.contour(xs, xs, exact.reshape(n, n), levels=levels, colors="white", linewidths=0.5,
                   linestyles="dotted")
        ax.set_title(title)
    fig.colorbar(cs, ax=axes[:2], shrink=0.85, label="σ_Y(x), f(x) (same levels)")
    axes[2].imshow(exact_key.reshape(n, n), origin="lower", extent=(-lim, lim, -lim, lim),
                   cmap="tab10", vmin=0, vmax=9, alpha=0.35, interpolation="nearest")
    agree = (learned_key == exact_key).mean()
    axes[2].contour(xs, xs, learned_key.reshape(n, n), levels=np.arange(0.5, 5), colors="k",
                    linewidths=0.8)
    axes[2].set_title(f"key map ∇σ_Y(x) = y* (colours: exact;\nlines: SupportNet ∇f, agrees on {agree:.1%})")
    for ax in axes:
        ax.scatter(TOY_KEYS[:, 0], TOY_KEYS[:, 1], c=[cmap(i) for i in range(5)], s=40,
                   edgecolors="k", zorder=3)
        ax.set_aspect("equal")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xlabel("x₁")
    axes[2].scatter(TOY_KEYS[:, 0], TOY_KEYS[:, 1], marker="s", s=90, facecolors="none",
                    edgecolors=[cmap(i) for i in range(5)], linewidths=1.5, zorder=4)
    axes[0].set_ylabel("x₂")
    fig.suptitle("Figure 1 — five keys: the support function is convex and piecewise linear; "
                 "its gradient is the matched key", fontsize=9)
    rows = [{"x1": float(p[0]), "x2": float(p[1]), "exact_sigma": float(e), "learned_f": float(f),
             "exact_key": int(k), "learned_key": int(lk)}
            for p, e, f, k, lk in zip(grid[::37], exact[::37], learned[::37], exact_key[::37],
                                      learned_key[::37])]
    style.save_figure(fig, out_stem, rows)


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


def fig8_training(history_paths: list[str | Path], metrics_paths: list[str | Path],
                  out_stem: str | Path) -> None:
    """Validation E_rel over training steps, one curve per (size, depth); mean ± spread over seeds."""
    curves: dict[tuple, list[pd.DataFrame]] = defaultdict(list)
    runs = read_metrics(metrics_paths)
    histories = read_histories(runs, history_paths)
    for r in runs.itertuples():
        curves[(r.model, r.size, r.depth, r.n_x)].append(histories[r.run][["step", "e_rel"]])
    order = sorted(curves, key=lambda k: (SIZE_ORDER.index(k[1]), k[2], k[3]))
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    rows = []
    for key in order:
        model, size, depth, n_x = key
        merged = pd.concat([c.set_index("step").e_rel.rename(i) for i, c in enumerate(curves[key])],
                           axis=1)
        mean, spread = merged.mean(axis=1), merged.std(axis=1).fillna(0.0)
        ax.plot(mean.index, mean.values, color=style.color_for(size),
                marker=style.marker_for(depth), ms=3, label=style.model_label(model, size, depth)
                + (f" n_x={n_x}" if n_x < depth - 1 else ""))
        if len(curves[key]) > 1:
            ax.fill_between(mean.index, mean - spread, mean + spread, color=style.color_for(size),
                            alpha=0.2)
        rows += [{"model": model, "size": size, "depth": depth, "n_x": n_x, "step": int(s),
                  "e_rel_mean": float(v), "e_rel_sd": float(spread[s]), "seeds": len(curves[key])}
                 for s, v in mean.items()]
    ax.axhline(0.0, color="k", lw=0.6)
    ax.axhline(-1.0, color="k", lw=0.6, ls=":")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation E_rel, log-ratio of squared distances\n(EMA weights)")
    dataset = runs.dataset.iloc[0] if len(runs) else ""
    ax.set_title(f"Figure 8 — E_rel during training on {dataset}")
    ax.legend(frameon=False, ncol=2)
    style.save_figure(fig, out_stem, rows)
