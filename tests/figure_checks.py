"""What a readable figure must not have: text of two panels overlapping, or a legend over a
plotted point (used by the figure tests of every figure)."""

from __future__ import annotations

import numpy as np


def collisions(fig) -> list[str]:
    """Texts of different panels that overlap (titles, axis labels, tick labels in view), and
    legends that cover a plotted point of any panel."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = []
    for i, ax in enumerate(fig.axes):
        (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
        ticks = [t for t in ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
                 if x0 <= t.get_loc() <= x1]
        ticks += [t for t in ax.yaxis.get_major_ticks() if y0 <= t.get_loc() <= y1]
        parts = [ax.title, ax.xaxis.label, ax.yaxis.label] + [t.label1 for t in ticks]
        texts += [(i, t.get_text(), t.get_window_extent(renderer)) for t in parts
                  if t.get_visible() and t.get_text()]
    found = [f"{a[1]!r} (panel {a[0]}) overlaps {b[1]!r} (panel {b[0]})"
             for n, a in enumerate(texts) for b in texts[n + 1:]
             if a[0] != b[0] and a[2].overlaps(b[2])]
    points = []
    for ax in fig.axes:
        for line in ax.lines:
            xy = np.column_stack([np.asarray(v, dtype=float) for v in line.get_data()])
            points.append(ax.transData.transform(xy[np.isfinite(xy).all(axis=1)]))
        for collection in ax.collections:
            offsets = np.asarray(collection.get_offsets(), dtype=float)
            if offsets.ndim == 2 and len(offsets):
                points.append(collection.get_offset_transform().transform(offsets))
    points = np.concatenate(points) if points else np.empty((0, 2))
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            box = legend.get_window_extent(renderer)
            inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1)
                      & (points[:, 1] > box.y0) & (points[:, 1] < box.y1))
            if inside.any():
                found.append(f"legend of {ax.get_title()!r} covers {int(inside.sum())} plotted points")
    return found


def drawn_figures(monkeypatch, draw) -> list:
    """The figures `draw` makes, kept open instead of saved."""
    from amips_bench.reporting.plots import style

    kept = []
    monkeypatch.setattr(style, "save_figure", lambda fig, stem, rows=None: kept.append(fig))
    draw()
    return kept
