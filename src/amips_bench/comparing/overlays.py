"""Overlays of compared runs: the axes of each figure with every run drawn in.

A run is a line style and marker (the baseline first: solid, circles), a curve keeps its colour
from the figure (model size, baseline method, natural query in black), so one colour is one
curve and its styles are the runs. Where the paper states a number for a panel (Table 1, the
report's claim values) it is drawn too, labelled "paper".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D

from ..core.paper import TABLE1, TABLE1_RATIO_RANGE
from ..reporting.plots import style
from ..reporting.plots.style import plt
from .curves import curves
from .trees import FigureData, RunTree, compared_figures

#: (line style, marker) of the runs in order, baseline first
RUN_STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"),
              ((0, (1, 2)), "P")]
PAPER_COLOR = "#d62728"


def run_style(i: int) -> tuple:
    return RUN_STYLES[i % len(RUN_STYLES)]


def series_color(key: dict) -> str:
    """A curve's colour, as in the run's own figure."""
    if key.get("query") == "natural" or key.get("model") == "identity":
        return "#000000"
    method = key.get("method", "")
    if style.method_color(method) and method not in style.MODEL_LABEL:
        return style.method_color(method)
    if "std" in key and key["std"] != "":
        return plt.get_cmap("viridis")(min(1.0, 4 * float(key["std"])))
    return style.color_for(key.get("size", ""))


def series_label(key: dict, hidden: list[str]) -> str:
    """The curve's name without what its panel already says."""
    k = {c: v for c, v in key.items() if c not in hidden and v != ""}
    parts = []
    if k.get("method") and k["method"] not in style.MODEL_LABEL:  # a baseline router
        return " ".join(v for v in (k["method"], k.get("size")) if v)
    if k.get("query"):
        parts.append(k["query"])
    if "std" in k:
        parts.append(f"std {k['std']}")
    if k.get("model"):
        parts.append(style.model_label(k["model"], k.get("size"), int(k["depth"]) if k.get("depth") else None)
                     + (f" n_x={k['n_x']}" if k.get("n_x") else ""))
    elif k.get("size"):
        parts.append(k["size"])
    return " ".join(parts) or "all"


def _panels(fig: FigureData, runs: list[RunTree]) -> list[tuple]:
    values = set()
    for run in runs:
        frame = run.frames[fig.name]
        values |= set(map(tuple, frame[fig.panels].astype(str).to_numpy())) if fig.panels else {()}
    return sorted(v for v in values if "identity" not in v)  # ŷ = x is drawn as a reference


def _in_panel(frame: pd.DataFrame, fig: FigureData, panel: tuple) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for col, value in zip(fig.panels, panel):
        mask &= frame[col].astype(str) == value
    return frame[mask]


def _legend(ax, series: dict[str, str], runs: list[str], place=style.legend_below) -> None:
    handles = [Line2D([], [], color=c, lw=2, label=s) for s, c in series.items()]
    handles += [Line2D([], [], color="k", ls=run_style(i)[0], marker=run_style(i)[1], ms=4,
                       label=f"run {name}") for i, name in enumerate(runs)]
    labels = set()
    for h in ax.get_legend_handles_labels()[0]:  # the paper's marks and references, once each
        if h.get_label() not in labels:
            handles.append(h)
            labels.add(h.get_label())
    place(ax, handles)


def _paper_marks(fig: FigureData, ax, metric: str, panel: dict) -> None:
    """The paper's stated numbers for this panel, labelled "paper"."""
    if fig.name == "fig2_routing" and panel.get("family") != "baselines":
        ax.axhline(1.0, color=PAPER_COLOR, lw=0.8, ls=(0, (2, 2)),
                   label="paper: learned routers ≈ 1.0 at k = 5 (§4.4)")
    if fig.name == "fig8_training":
        ax.axhline(-1.0, color=PAPER_COLOR, lw=0.8, ls=(0, (2, 2)),
                   label="paper: good models reach E_rel < −1 (§4.2)")


def _unique_color(color: str, used: set) -> str:
    """The figure's colour of a curve, or the next free one where a panel already uses it
    (two re-injection settings of one size)."""
    spare = iter(plt.get_cmap("tab10").colors)
    while color in used:
        color = next(spare)
    used.add(color)
    return color


def _draw_curves(fig: FigureData, runs: list[RunTree], out_stem: Path) -> None:
    panels = _panels(fig, runs)
    metrics = [m for m in fig.metrics if any(m in r.frames[fig.name] for r in runs)]
    if len(metrics) == 1:  # one row of panels
        figure, grid = plt.subplots(1, len(panels), squeeze=False,
                                    figsize=(max(7.0, 4.4 * len(panels)), 3.6))
        axes = grid.T
    else:
        figure, axes = plt.subplots(len(panels), len(metrics), squeeze=False,
                                    figsize=(4.2 * len(metrics), 3.4 * len(panels)))
    rows = []
    for ax_row, panel in zip(axes, panels):
        where = dict(zip(fig.panels, panel))
        for ax, metric in zip(ax_row, metrics):
            series: dict[str, str] = {}
            used: set = set()
            for i, run in enumerate(runs):
                frame = _in_panel(run.frames[fig.name], fig, panel)
                if metric not in frame or not len(frame):
                    continue
                ls, marker = run_style(i)
                for key, c in curves(frame, fig.keys, metric, fig.x, fig.seed, fig.along,
                                     fig.spread).items():
                    k = dict(zip(fig.keys, key))
                    label = series_label(k, fig.panels + ["dataset"])
                    if label not in series:
                        series[label] = _unique_color(series_color(k), used)
                    color = series[label]
                    ax.plot(c.x, c.mean, color=color, ls=ls, marker=marker, ms=3.5, lw=1.1,
                            mfc="none" if i else color)
                    if c.spread and (c.sd > 0).any():
                        ax.fill_between(c.x, c.mean - c.sd, c.mean + c.sd, color=color, alpha=0.12)
                    rows += [{"run": run.name, **where, "curve": label, "metric": metric,
                              fig.x: x, "mean": m, "sd": s, "seeds": c.seeds}
                             for x, m, s in zip(c.x, c.mean, c.sd)]
            _paper_marks(fig, ax, metric, where)
            if fig.log_x:
                style.flops_axis(ax, 7)
            else:
                ax.set_xlabel(fig.x)
            ax.set_ylabel(metric)
            ax.set_title(" · ".join(panel) + f": {metric}", fontsize=8)
            if len(metrics) == 1:  # panels side by side, each with its own curves
                _legend(ax, series, [r.name for r in runs])
            elif ax is ax_row[-1]:  # a row of metrics shares its curves: one legend beside it
                _legend(ax, series, [r.name for r in runs], style.legend_beside)
    figure.suptitle(f"{fig.title}: runs {', '.join(r.name for r in runs)} "
                    f"(baseline {runs[0].name}: solid, filled; band = ±σ over seeds)", fontsize=9)
    figure.tight_layout()
    style.save_figure(figure, out_stem, rows)


def _draw_points(fig: FigureData, runs: list[RunTree], out_stem: Path) -> None:
    """Figure 3 (E_rel vs MRR per model) and Table 1 (ratio per size): one point per run."""
    panels = _panels(fig, runs)
    figure, axes = plt.subplots(1, len(panels), squeeze=False,
                                figsize=(max(7.0, 4.4 * len(panels)), 3.8))
    rows = []
    for ax, panel in zip(axes[0], panels):
        where = dict(zip(fig.panels, panel))
        series: dict[str, str] = {}
        for i, run in enumerate(runs):
            frame = _in_panel(run.frames[fig.name], fig, panel)
            _, marker = run_style(i)
            found = {m: curves(frame, fig.keys, m, None, fig.seed, None, fig.spread)
                     for m in fig.metrics if m in frame}
            for key in found[fig.metrics[0]]:
                k = dict(zip(fig.keys, key))
                label = series_label(k, fig.panels + ["dataset"])
                if fig.name == "table1":
                    color = style.MODEL_COLORS.get(k["model"], "k")
                    label = style.MODEL_LABEL.get(k["model"], k["model"])
                    c = found[fig.metrics[0]][key]
                    x = style.SIZE_ORDER.index(k["size"]) + 0.12 * i
                    ax.errorbar([x], c.mean, yerr=c.sd, color=color, marker=marker, ms=5,
                                mfc="none" if i else color, ls="none")
                    rows.append({"run": run.name, **k, "grad_over_score": c.mean[0],
                                 "sd": c.sd[0]})
                else:
                    e, m = found["e_rel"][key], found["mrr"].get(key)
                    if m is None:
                        continue
                    color = series_color(k)
                    ax.errorbar(e.mean, m.mean, xerr=e.sd, yerr=m.sd, color=color, marker=marker,
                                ms=5, mfc="none" if i else color, ls="none")
                    rows.append({"run": run.name, **k, "e_rel": e.mean[0], "e_rel_sd": e.sd[0],
                                 "mrr": m.mean[0], "mrr_sd": m.sd[0]})
                series.setdefault(label, color)
        if fig.name == "table1":
            for model, color in style.MODEL_COLORS.items():
                lo, hi = TABLE1_RATIO_RANGE[model]
                ax.axhspan(lo, hi, color=color, alpha=0.12,
                           label=f"paper: {style.MODEL_LABEL[model]} {lo}–{hi} (A.1, all datasets)")
                rows.append({"run": "paper", **where, "model": model, "grad_over_score_low": lo,
                             "grad_over_score_high": hi})
            paper = TABLE1.get(where.get("dataset", ""), {}).get("rows", {})
            for size, cells in paper.items():
                for model in style.MODEL_LABEL:
                    ratio = cells[(model, "grad")] / cells[(model, "score")]
                    rows.append({"run": "paper", **where, "model": model, "size": size,
                                 "grad_over_score": ratio})
                    ax.plot(style.SIZE_ORDER.index(size), ratio, marker="*", ms=9,
                            color=PAPER_COLOR, ls="none", label="paper: Table 1")
            ax.set_xticks(range(len(style.SIZE_ORDER)), style.SIZE_ORDER)
            ax.set_xlabel("model size")
            ax.set_ylabel("gradient / score time\n(median of pairs, ±σ from the IQR)")
        else:
            ax.plot(0.0, 1.0, "*", color="k", ms=10, label="identity ŷ = x (reference)")
            ax.axvline(-1.0, color=PAPER_COLOR, lw=0.8, ls=(0, (2, 2)),
                       label="paper: good models reach E_rel < −1 (§4.2)")
            rows.append({"run": "paper", **where, "e_rel": -1.0,
                         "note": "good models reach E_rel < -1 (§4.2, upper bound)"})
            ax.set_xlabel("test E_rel (log-ratio of squared distances)")
            ax.set_ylabel("test MRR")
        ax.set_title(" · ".join(panel), fontsize=8)
        _legend(ax, series, [r.name for r in runs])
    figure.suptitle(f"{fig.title}: runs {', '.join(r.name for r in runs)} "
                    f"(baseline {runs[0].name}: filled markers; bars = ±σ)", fontsize=9)
    figure.tight_layout()
    style.save_figure(figure, out_stem, rows)


def draw_overlays(runs: list[RunTree], out_dir: str | Path) -> list[Path]:
    """One overlay per figure any run produced (IVF: one per dataset); baseline first in `runs`."""
    out = Path(out_dir)
    written = []
    for fig in [f for f in compared_figures() if f.name != "final_metrics"]:  # compared, not drawn
        present = [r for r in runs if fig.name in r.frames and len(r.frames[fig.name])]
        if not present:
            continue
        draw = _draw_points if fig.x is None else _draw_curves
        if fig.name == "fig4_6_ivf":  # one figure per dataset, as the run's own figures
            datasets = sorted({d for r in present for d in r.frames[fig.name]["dataset"]})
            for ds in datasets:
                subset = [RunTree(r.name, r.path, {fig.name: r.frames[fig.name][
                    r.frames[fig.name]["dataset"] == ds]}, r.datasets, r.provenance)
                    for r in present]
                draw(fig, [r for r in subset if len(r.frames[fig.name])], out / f"{fig.name}_{ds}")
                written.append(out / f"{fig.name}_{ds}.pdf")
        else:
            draw(fig, present, out / fig.name)
            written.append(out / f"{fig.name}.pdf")
    return written
