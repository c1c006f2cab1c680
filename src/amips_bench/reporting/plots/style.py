"""The one plotting style: colours per size, markers per depth, PDF + PNG + the plotted numbers."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from ...core.runs import SIZE_ORDER
from ...core.storage import atomic_path, save_csv
from ...models.networks import MODEL_KINDS  # noqa: E402
from ...models.routers import ROUTERS  # noqa: E402

SIZE_COLORS = dict(zip(SIZE_ORDER, ["#9ecae1", "#6baed6", "#3182bd", "#08519c", "#e6550d", "#a63603"]))
DEPTH_MARKERS = {4: "o", 8: "s", 16: "^"}
MODEL_LABEL = {name: kind.label for name, kind in MODEL_KINDS.items()}
MODEL_LINESTYLE = {name: kind.linestyle for name, kind in MODEL_KINDS.items()}
BASELINE_COLORS = {"centroid_ip": "#444444", "centroid_l2": "#888888", "centroid_cos": "#bbbbbb",
                   "oracle": "#2ca02c", "natural": "#444444"}
#: one colour per model where a figure tells the models apart by colour (Table 1's overlay)
MODEL_COLORS = {name: kind.color for name, kind in MODEL_KINDS.items()}


def method_color(method: str) -> str | None:
    """A routing method's colour: a centroid rule's, or the registered router's."""
    routers = {kind.method: kind.color for kind in ROUTERS.values()}
    return routers.get(method, BASELINE_COLORS.get(method))
FLOP_AXIS = "FLOPs per query, log scale\n(1 FLOP = 2 × multiply-accumulate)"

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10,
    "axes.labelsize": 9, "legend.fontsize": 7, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False,
})


#: gap between neighbouring tick labels of a FLOP axis, inches
LABEL_GAP = 0.08


@functools.cache
def _label_inches(text: str, points: float) -> float:
    """Drawn width of a tick label (mathtext) in inches."""
    from matplotlib.backends.backend_agg import RendererAgg

    width, _, _ = RendererAgg(8, 8, 72).get_text_width_height_descent(
        text, FontProperties(size=points), ismath=True)
    return width / 72


class FlopTickLocator(LogLocator):
    """Labelled ticks of a FLOP axis that never collide: where two powers of ten are in view,
    every s-th power of ten (s as small as fits); otherwise the densest of 10^k·{1..9},
    10^k·{1, 2, 3, 5}, 10^k·{1, 2, 5}, 10^k·{1, 3} whose labels fit side by side at the axis's
    drawn width; on a span too narrow for two of those, evenly spaced ticks.

    matplotlib's own rule labels 10^k·{2, 3, 4, 6} whenever at most one power of ten is in
    view, whatever the span, so a 1.3-decade axis two inches wide got overlapping labels.
    """

    SUBSETS = (tuple(range(1, 10)), (1, 2, 3, 5), (1, 2, 5), (1, 3))

    def _fits(self, ticks: list[float], lo: float, per_decade: float, points: float) -> bool:
        """Whether the labels of `ticks`, as the axis's own formatter writes them, fit."""
        if len(ticks) < 2:
            return False
        label = self.axis.get_major_formatter()
        at = [(math.log10(t) - lo) * per_decade for t in ticks]
        wide = [_label_inches(label(t), points) for t in ticks]
        return all(b - a >= (wa + wb) / 2 + LABEL_GAP
                   for a, b, wa, wb in zip(at, at[1:], wide, wide[1:]))

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        if self.axis is None or not (0 < vmin < vmax):
            return super().tick_values(vmin, vmax)
        lo, hi = math.log10(vmin), math.log10(vmax)
        inches = self.axis.axes.get_window_extent().width / self.axis.axes.figure.dpi
        per_decade = inches / (hi - lo)
        points = FontProperties(size=plt.rcParams["xtick.labelsize"]).get_size_in_points()
        powers = range(math.floor(lo), math.ceil(hi) + 1)
        inside = [k for k in powers if vmin <= 10.0 ** k <= vmax]
        if len(inside) >= 2:
            for step in range(1, len(inside)):
                ticks = [10.0 ** k for k in inside[::step]]
                if self._fits(ticks, lo, per_decade, points):
                    return np.array(ticks)
            return np.array([10.0 ** inside[0]])
        for subs in self.SUBSETS:
            ticks = [c * 10.0 ** k for k in powers for c in subs if vmin <= c * 10.0 ** k <= vmax]
            if self._fits(ticks, lo, per_decade, points):
                return np.array(ticks)
        for bins in range(8, 0, -1):
            ticks = [t for t in MaxNLocator(bins).tick_values(vmin, vmax) if vmin <= t <= vmax]
            if self._fits(ticks, lo, per_decade, points):
                return np.array(ticks)
        return np.array([vmin * (vmax / vmin) ** 0.5])


def flops_axis(ax, label_size: float | None = None) -> None:
    """Log-scaled FLOP x axis with the unit convention written on it; its tick labels never
    collide (FlopTickLocator), the other powers of ten and their multiples are unlabelled ticks."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FlopTickLocator())
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False,
                                                         minor_thresholds=(math.inf, math.inf)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(FLOP_AXIS, fontsize=label_size)


def legend_beside(ax, handles=None, fontsize: float = 6) -> None:
    """The legend to the right of a panel, outside it, so it never covers a curve (the layout
    makes room for it)."""
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
              frameon=False, fontsize=fontsize)


def legend_below(ax, handles=None, fontsize: float = 6) -> None:
    """The legend under a panel's tick labels and two-line x label, outside the panel (for
    panels side by side)."""
    from matplotlib.transforms import offset_copy

    below_label = offset_copy(ax.transAxes, fig=ax.figure, y=-0.75, units="inches")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below_label,
              borderaxespad=0, frameon=False, fontsize=fontsize, ncol=2)


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
