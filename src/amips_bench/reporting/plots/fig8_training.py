"""Figure 8: validation E_rel over training steps."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from ...core.runs import SIZE_ORDER
from ..results import read_histories, read_metrics
from . import style
from .style import plt


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
