"""Figures aggregate several seeds into a mean and a spread."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from figure_checks import collisions, drawn_figures

from amips_bench.reporting.plots.fig3_erel_mrr import fig3_erel_mrr
from amips_bench.reporting.plots.fig4_6_ivf import fig_ivf
from amips_bench.reporting.plots.fig8_training import fig8_training


def _run(tmp_path, seed, e_rel):
    folder = tmp_path / f"keynet_S_L4_nx3_c1_s{seed}"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({
        "dataset": "d", "model": "keynet", "size": "S", "depth": 4, "n_x": 3, "n_clusters": 1,
        "seed": seed, "parameters": 10, "test": {"e_rel": e_rel, "mrr": 0.5, "match_rate": 0.3}}))
    pd.DataFrame({"step": [0, 50, 100], "e_rel": [1.0, 0.0, e_rel]}).to_csv(folder / "history.csv", index=False)
    return folder


def test_fig3_and_fig8_report_mean_and_spread_over_seeds(tmp_path):
    runs = [_run(tmp_path, 0, -0.4), _run(tmp_path, 1, -0.6)]
    fig3_erel_mrr([r / "metrics.json" for r in runs], tmp_path / "fig3")
    row = pd.read_csv(tmp_path / "fig3.csv").iloc[0]
    assert row.seeds == 2 and row.e_rel == -0.5 and round(row.e_rel_sd, 4) == 0.1414
    fig8_training([r / "history.csv" for r in runs], [r / "metrics.json" for r in runs], tmp_path / "fig8")
    last = pd.read_csv(tmp_path / "fig8.csv").iloc[-1]
    assert last.seeds == 2 and last.e_rel_mean == -0.5 and last.e_rel_sd > 0.14
    assert (tmp_path / "fig3.png").stat().st_size > 10_000 and (tmp_path / "fig8.pdf").exists()


def test_ivf_figure_averages_seeds(tmp_path):
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.1)):
        for budget, recall in ((1, 0.3), (4, 0.6)):
            rows.append({"dataset": "d", "index": "ivf", "query": "mapped", "model": "keynet",
                         "size": "S", "depth": 4, "n_x": 3, "seed": seed, "budget": budget,
                         "flops_total": 1e6 * budget, "recall@1": recall + shift, "mrr": recall,
                         "n_keys": 1000})
    for budget, recall in ((1, 0.5), (4, 0.9)):
        rows.append({"dataset": "d", "index": "ivf", "query": "natural", "model": "", "size": "",
                     "depth": "", "n_x": "", "seed": "", "budget": budget, "flops_total": 2e5 * budget,
                     "recall@1": recall, "mrr": recall, "n_keys": 1000})
    path = tmp_path / "ivf.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    fig_ivf([path], tmp_path / "fig4", 4)
    out = pd.read_csv(tmp_path / "fig4.csv")
    mapped = out[out["query"] == "mapped"].sort_values("budget")
    assert list(mapped["recall@1"].round(3)) == [0.35, 0.65] and (mapped.seeds == 2).all()
    assert (mapped["recall@1_sd"].round(4) == 0.0707).all()


def test_identity_reference_is_computed_and_drawn(tiny_dataset, tmp_path):
    """ŷ = x on the real targets of a dataset: MRR = match = recall@1 = 1 and E_rel = 0, as the
    unit-norm argument says; Figure 3 plots it as its own point and the table has its row."""
    from amips_bench.models.evaluation import identity_metrics
    from amips_bench.reporting.tables import final_metrics_table

    ident = identity_metrics(tiny_dataset)
    t = ident["test"]
    assert t["mrr"] == t["match_rate"] == t["recall@1"] == 1.0 and abs(t["e_rel"]) < 1e-6
    (tmp_path / "identity.json").write_text(json.dumps({**ident, "dataset": "d"}))
    runs = [_run(tmp_path, 0, -0.4)]
    fig3_erel_mrr([runs[0] / "metrics.json", tmp_path / "identity.json"], tmp_path / "fig3")
    drawn = pd.read_csv(tmp_path / "fig3.csv")
    star = drawn[drawn.model == "identity"].iloc[0]
    assert star.mrr == 1.0 and abs(star.e_rel) < 1e-6 and len(drawn) == 2
    table = final_metrics_table([tmp_path / "identity.json"])
    assert table.iloc[0].model.startswith("identity") and table.iloc[0].mrr == 1.0


def _visible_tick_labels(ax) -> list[str]:
    lo, hi = ax.get_xlim()
    ticks = ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
    return [t.label1.get_text() for t in ticks
            if t.label1.get_visible() and t.label1.get_text() and lo <= t.get_loc() <= hi]


@pytest.mark.parametrize("width", [2.2, 3.3, 6.0])
def test_flop_axis_tick_labels_never_overlap_and_at_least_two_show(width):
    # spans from a tenth of a decade to seven decades, placed anywhere within a decade
    from amips_bench.reporting.plots import style

    rng = np.random.default_rng(7)
    spans = [0.1, 0.25, 0.4, 0.6, 0.9, 1.1, 1.3, 1.6, 2.0, 3.0, 7.0, 12.0]
    for span in spans:
        start = 5 + rng.uniform(0, 1)
        fig, ax = style.plt.subplots(figsize=(width, 2.5))
        style.flops_axis(ax, 7)
        ax.plot([10 ** start, 10 ** (start + span)], [0, 1])
        ax.set_xlim(10 ** start, 10 ** (start + span))
        fig.tight_layout()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        lo, hi = ax.get_xlim()
        shown = sorted((t.label1.get_window_extent(renderer) for t in
                        ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
                        if t.label1.get_visible() and t.label1.get_text()
                        and lo <= t.get_loc() <= hi), key=lambda box: box.x0)
        assert len(shown) >= 2, (width, span)
        for left, right in zip(shown, shown[1:]):
            assert left.x1 <= right.x0, (width, span, left, right)
        style.plt.close(fig)


def test_a_flop_axis_spanning_under_a_decade_still_has_tick_labels():
    from amips_bench.reporting.plots import style

    fig, (narrow, wide) = style.plt.subplots(1, 2)
    for ax, (lo, hi) in ((narrow, (2e6, 5e6)), (wide, (1e3, 1e9))):
        style.flops_axis(ax)
        ax.plot([lo, hi], [0.1, 0.9])
    fig.canvas.draw()
    assert len(_visible_tick_labels(narrow)) >= 2  # no power of ten inside: minor labels
    assert len(_visible_tick_labels(wide)) <= 8    # six decades: powers of ten only, uncrowded
    style.plt.close(fig)


def test_no_figure_has_colliding_text_or_a_legend_over_its_points(monkeypatch, tmp_path):
    # every figure of the committed 3-seed quick reference, its comparison overlays, and Fig. 1
    # after a short training (its layout does not depend on how well the toy model fits)
    from amips_bench.comparing.overlays import draw_overlays
    from amips_bench.comparing.trees import load_tree
    from amips_bench.reporting.plots.fig1_toy import fig1_toy
    from amips_bench.reporting.plots.fig2_routing import fig2_routing
    from amips_bench.reporting.plots.fig7_ood import fig7_ood

    root = Path(__file__).resolve().parents[1] / "results" / "reference" / "quick"
    quick = root / "quick"
    metrics = sorted(m for m in (quick / "models").glob("*/metrics.json")
                     if not m.parent.name.startswith("router_"))
    figures = drawn_figures(monkeypatch, lambda: (
        fig1_toy(tmp_path / "fig1", steps=200),
        fig2_routing(sorted((quick / "routing").glob("*.csv")), tmp_path / "fig2"),
        fig3_erel_mrr(metrics + [quick / "targets" / "c1" / "identity.json"], tmp_path / "fig3"),
        fig_ivf(sorted((quick / "ivf").glob("*.csv")), tmp_path / "fig4", 4),
        fig7_ood(sorted((quick / "ood").glob("*.csv")), tmp_path / "fig7"),
        fig8_training([m.with_name("history.csv") for m in metrics if "_c1_" in m.parent.name
                       and m.parent.name.startswith("keynet")],
                      [m for m in metrics if "_c1_" in m.parent.name
                       and m.parent.name.startswith("keynet")], tmp_path / "fig8")))
    tree = load_tree("reference", root)
    figures += drawn_figures(monkeypatch, lambda: draw_overlays([tree, load_tree("again", root)], tmp_path))
    assert len(figures) == 12
    problems = {fig.texts[0].get_text()[:40] if fig.texts else fig.axes[0].get_title(): collisions(fig)
                for fig in figures}
    assert {title: p for title, p in problems.items() if p} == {}
