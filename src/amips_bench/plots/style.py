"""The one plotting style: colours per size, markers per depth, PDF + PNG + the plotted numbers."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..config import SIZE_ORDER  # noqa: E402
from ..io import atomic_path, save_csv  # noqa: E402

SIZE_COLORS = dict(zip(SIZE_ORDER, ["#9ecae1", "#6baed6", "#3182bd", "#08519c", "#e6550d", "#a63603"]))
DEPTH_MARKERS = {4: "o", 8: "s", 16: "^"}
MODEL_LABEL = {"supportnet": "SupportNet", "keynet": "KeyNet"}
MODEL_LINESTYLE = {"supportnet": "--", "keynet": "-"}
BASELINE_COLORS = {"centroid_ip": "#444444", "centroid_l2": "#888888", "centroid_cos": "#bbbbbb",
                   "oracle": "#2ca02c", "classifier": "#9467bd", "natural": "#444444",
                   "linear_router": "#e377c2"}
FLOP_AXIS = "FLOPs per query (1 FLOP = 2 × multiply-accumulate, log scale)"

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10,
    "axes.labelsize": 9, "legend.fontsize": 7, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False,
})


def flops_axis(ax, label_size: float | None = None) -> None:
    """Log-scaled FLOP x axis with the unit convention written on it.

    Minor ticks are labelled only when the axis spans under a decade (then it has no major tick
    to label; all of them under 0.4 decades, a subset under 1), so wide axes stay uncrowded and
    narrow ones still read.
    """
    from matplotlib.ticker import LogFormatterSciNotation

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False,
                                                         minor_thresholds=(1, 0.4)))
    ax.set_xlabel(FLOP_AXIS, fontsize=label_size)


def marker_for(depth: int) -> str:
    return DEPTH_MARKERS.get(int(depth), "D")


def color_for(size: str) -> str:
    return SIZE_COLORS.get(size, "#000000")


def model_label(model: str, size: str | None = None, depth: int | None = None) -> str:
    parts = [MODEL_LABEL.get(model, model)]
    if size:
        parts.append(size)
    if depth:
        parts.append(f"L={depth}")
    return " ".join(parts)


def save_figure(fig, stem: str | Path, data_rows: list[dict] | None = None) -> list[Path]:
    """Write stem.pdf and stem.png atomically, and the plotted numbers as stem.csv."""
    stem = Path(stem)
    written = []
    for ext in ("pdf", "png"):
        target = stem.with_suffix(f".{ext}")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight")
        written.append(target)
    if data_rows is not None:
        save_csv(stem.with_suffix(".csv"), data_rows)
        written.append(stem.with_suffix(".csv"))
    plt.close(fig)
    return written
