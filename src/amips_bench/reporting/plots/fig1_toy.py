"""Figure 1: the support function of five keys in 2-D, exact beside a trained SupportNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...models.toy import TOY_KEYS, exact_support, learned_support, train_toy_supportnet
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
