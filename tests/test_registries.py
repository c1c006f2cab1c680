"""The two recipes of docs/architecture.md §8, followed: a router and a figure registered from a
module outside the package (AMIPS_BENCH_PLUGINS) are found by the CLI, the workflow, the
report and the comparison, without editing any of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amips_bench.core.layout import ResultsLayout

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A dummy router (a biased linear map) and a dummy figure (the routing accuracy of that router)."""
from pathlib import Path

import pandas as pd
from torch import nn

from amips_bench.comparing.trees import FigureData
from amips_bench.core.layout import ResultsLayout
from amips_bench.models.routers import RouterKind, register_router
from amips_bench.reporting.figures import Figure, register_figure
from amips_bench.reporting.plots import style

register_router(RouterKind(
    "dummy", "dummy_router", "dummy router", "#17becf", sized=False,
    build=lambda spec: nn.Linear(spec.d, spec.n_clusters),
    n_parameters=lambda spec: (spec.d + 1) * spec.n_clusters,
    lr_key="linear_router_lr_at_128", chosen=lambda routing: ["dummy"]))


def draw(out_stem, csv_paths):
    frame = pd.concat([pd.read_csv(p) for p in csv_paths])
    fig, ax = style.plt.subplots()
    ax.plot(frame.k, frame.accuracy)
    style.save_figure(fig, out_stem, frame.to_dict("records"))


def read(root, datasets):
    files = [f for d in datasets for f in d.tables("routing") if f.name.startswith("router_dummy")]
    return pd.concat([pd.read_csv(f) for f in files]).assign(variant="dummy") if files else None


register_figure(Figure(
    "dummy", "fig0_dummy", "A dummy figure", "fig2.rst", f"{__name__}:draw", (),
    inputs=lambda run, inst: {"csv": [f for ds in run.datasets for f in run.routing_csvs(ds)
                                      if "router_dummy" in f]},
    drawn={"csv_paths": "csv"}, selection=lambda config: True,
    compared=FigureData("fig0_dummy", "dummy", "router_dummy", ["dataset", "method", "variant"],
                        ["accuracy"], x="flops_total", along="k", read=read)))
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "dummy_plugin.py").write_text(PLUGIN)
    env = dict(os.environ, AMIPS_BENCH_PLUGINS="dummy_plugin",
               PYTHONPATH=os.pathsep.join([str(folder), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    return env


def cli(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "amips_bench.cli", *map(str, args)], env=env,
                          cwd=cwd, capture_output=True, text=True)


def test_the_workflow_plans_the_registered_router_and_figure(plugin_env, tmp_path):
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "compare", "--configfile",
                          str(ROOT / "tests/fixtures/tiny.yaml"), "--directory", str(tmp_path),
                          "-s", str(ROOT / "Snakefile")], env=plugin_env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "--router dummy " in text  # train_router
    assert "--router results/tiny/models/router_dummy_c4_s0/model.pt" in text  # routing_router
    assert "rule fig0_dummy:" in text and "amips-bench figure dummy --csv" in text
    report = next(b for b in text.split("\n\n") if "rule reproduction_report:" in b)
    assert "figures/fig0_dummy.png" in report and "routing/router_dummy_c4_s0.csv" in report


def test_the_cli_trains_routes_draws_reports_and_compares_them(plugin_env, tiny_dataset, tmp_path):
    root = tmp_path / "results"
    d = ResultsLayout(root).dataset("tiny")
    shutil.copytree(tiny_dataset, d.root)
    help_text = cli(plugin_env, "figure", "--help").stdout
    assert "dummy: A dummy figure" in help_text
    trained = cli(plugin_env, "train-router", "--dataset-dir", d.root, "--out",
                  d.model_dir("router_dummy_c4_s0"), "--clusters", 4, "--router", "dummy",
                  "--steps", 20, "--batch-size", 64, "--lr-at-128", 0.01, "--warmup-fraction", 0.1,
                  "--end-lr-fraction", 0.1, "--ema-at-128", 0.9, "--grad-clip", 1.0, "--seed", 0,
                  "--device", "cpu")
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads(d.metrics("router_dummy_c4_s0").read_text())
    assert metrics["kind"] == "dummy" and metrics["parameters"] == (32 + 1) * 4
    routed = cli(plugin_env, "routing", "--dataset-dir", d.root, "--clusters", 4, "--ks", 1, 2,
                 "--router", d.model("router_dummy_c4_s0"), "--out", d.routing_csv("router_dummy_c4_s0"),
                 "--device", "cpu")
    assert routed.returncode == 0, routed.stderr
    rows = pd.read_csv(d.routing_csv("router_dummy_c4_s0"), keep_default_na=False)
    assert set(rows.method) == {"dummy_router"} and list(rows.k) == [1, 2]
    assert (rows.flops_router == 2 * 4 * 32).all()  # measured on the module: the bias is free
    drawn = cli(plugin_env, "figure", "dummy", "--csv", d.routing_csv("router_dummy_c4_s0"),
                "--out", tmp_path / "fig0_dummy")
    assert drawn.returncode == 0, drawn.stderr
    assert all((tmp_path / f"fig0_dummy.{s}").is_file() for s in ("pdf", "png", "csv"))
    # the comparison reads it, as a routing baseline of Figure 2 and as the dummy figure itself
    compared = cli(plugin_env, "compare", "--run", f"a={root}", f"b={root}", "--baseline", "a",
                   "--out", tmp_path / "cmp", "--figures", tmp_path / "cmpfig")
    assert compared.returncode == 0, compared.stderr
    diff = pd.read_csv(tmp_path / "cmp" / "differences.csv", keep_default_na=False)
    assert {"fig0_dummy", "fig2_routing"} <= set(diff.figure)
    assert diff[diff.figure == "fig2_routing"].curve.str.contains("dummy_router").any()
    # the report judges it among the routing baselines: beside centroid routing and two
    # learned models worse than it at k = 1, it is the best baseline of the routing claim
    # (their rows and per-question files written as the routing stage writes them)
    n = int(rows.n_queries.iloc[0])
    others = []
    for stem, method, size, acc in (("baselines_c4_s0", "centroid_ip", "", 0.01),
                                    ("supportnet_S_L4_nx3_c4_pen_s0", "supportnet", "S", 0.3),
                                    ("keynet_S_L4_nx3_c4_s0", "keynet", "S", 0.3)):
        path = d.routing_csv(stem)
        rank = (np.arange(n) >= round(acc * n)).astype(np.int32)  # hit at k = 1 for acc·n questions
        np.savez(d.questions_beside(path), **{f"test_rank|{method}": rank, f"val_rank|{method}": rank})
        rows.assign(method=method, model=method if size else "", size=size,
                    depth=4 if size else "", accuracy=[(rank < k).mean() for k in rows.k],
                    val_accuracy=[(rank < k).mean() for k in rows.k]).to_csv(path, index=False)
        others.append(path)
    reported = cli(plugin_env, "report", "--out", tmp_path / "report", "--routing",
                   d.routing_csv("router_dummy_c4_s0"), *others,
                   "--kinds", "tiny=synthetic", "--config-hash", "x", "--seeds", 0)
    assert reported.returncode == 0, reported.stderr
    claims = pd.read_csv(tmp_path / "report" / "claims.csv", keep_default_na=False)
    routing = claims[claims.claim == "routing-beats-centroid"].ours.iloc[0]
    assert "best baseline on validation (router_dummy_c4)" in routing


def test_a_plugin_that_cannot_be_imported_stops_in_one_line(tmp_path):
    env = dict(os.environ, AMIPS_BENCH_PLUGINS="no_such_plugin")
    out = cli(env, "figure", "--help")
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1].endswith(
        "AMIPS_BENCH_PLUGINS: cannot import 'no_such_plugin' (No module named 'no_such_plugin')")


def test_a_name_is_registered_once():
    from amips_bench.models.routers import ROUTERS, register_router
    from amips_bench.reporting.figures import FIGURES, register_figure

    with pytest.raises(ValueError, match="'linear': taken"):
        register_router(ROUTERS["linear"])
    with pytest.raises(ValueError, match="figure 'toy' is registered already"):
        register_figure(FIGURES["toy"])
