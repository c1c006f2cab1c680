"""FLOP counting and the routing experiment (issue 4)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from amips_bench.evaluation import load_dataset, true_clusters
from amips_bench.flops import analytic_forward_macs, analytic_key_flops, forward_flops, key_flops, router_flops
from amips_bench.io import InputError, load_json
from amips_bench.models import ModelSpec, build_model, save_model
from amips_bench.routing import baseline_rows, load_context, model_rows

SHAPES = [dict(d=32, n_keys=3000, size="M", depth=4, n_x=1, n_clusters=1),
          dict(d=48, n_keys=9000, size="S", depth=6, n_x=5, n_clusters=4)]


@pytest.mark.parametrize("model", ["supportnet", "keynet"])
@pytest.mark.parametrize("shape", SHAPES)
def test_fvcore_forward_flops_equal_the_analytic_count(model, shape):
    spec = ModelSpec(model=model, **shape)
    net = build_model(spec)
    assert forward_flops(net, spec.d) == 2 * analytic_forward_macs(spec)
    # a KeyNet router also pays the c inner products <F_j(x), x>
    extra = 2 * spec.n_clusters * spec.d if model == "keynet" else 0
    assert router_flops(net, spec.d) == 2 * analytic_forward_macs(spec) + extra


@pytest.mark.parametrize("model", ["supportnet", "keynet"])
@pytest.mark.parametrize("shape", SHAPES)
def test_flopcounter_forward_plus_input_gradient_equals_the_analytic_count(model, shape):
    spec = ModelSpec(model=model, **shape)
    assert key_flops(build_model(spec), spec.d) == analytic_key_flops(spec)
    if model == "supportnet":  # the key costs a forward and c backwards to x
        assert analytic_key_flops(spec) == (1 + spec.n_clusters) * 2 * analytic_forward_macs(spec)


def test_centroid_routing_accuracy_matches_numpy(tiny_dataset):
    ctx = load_context(tiny_dataset, 4, (1, 2, 3, 4), torch.device("cpu"))
    rows = {(r["method"], r["k"]): r for r in baseline_rows(ctx, seed=0)}
    # independent computation straight from the files
    centroids = np.load(tiny_dataset / "clusters/c4/centroids.npy")
    assignments = np.load(tiny_dataset / "clusters/c4/assignments.npy")
    keys = np.load(tiny_dataset / "embeddings/keys.npy")
    queries = np.load(tiny_dataset / "targets/c1/test_queries.npy")
    top1 = np.load(tiny_dataset / "targets/c1/test_top1.npy")[:, 0]  # global top key (c = 1 run)
    expected = np.mean(np.argmax(queries @ centroids.T, axis=1) == assignments[top1])
    assert rows[("centroid_ip", 1)]["accuracy"] == pytest.approx(expected)
    top2 = np.argsort(-(queries @ centroids.T), axis=1, kind="stable")[:, :2]
    expected2 = np.mean((top2 == assignments[top1][:, None]).any(axis=1))
    assert rows[("centroid_ip", 2)]["accuracy"] == pytest.approx(expected2)
    for method in ("centroid_ip", "centroid_l2", "centroid_cos"):
        assert rows[(method, 4)]["flops_scan"] == pytest.approx(2 * len(keys) * keys.shape[1])
    assert rows[("oracle", 1)]["accuracy"] == 1.0
    sizes = np.bincount(assignments, minlength=4)
    assert rows[("oracle", 1)]["flops_scan"] == pytest.approx(2 * keys.shape[1] * sizes[assignments[top1]].mean())


def test_true_cluster_of_the_clustered_targets_agrees_with_the_global_top1(tiny_dataset):
    data = load_dataset(tiny_dataset, 4, torch.device("cpu"), splits=("test",))
    assignments = np.load(tiny_dataset / "clusters/c4/assignments.npy")
    global_top = np.load(tiny_dataset / "targets/c1/test_top1.npy")[:, 0]
    np.testing.assert_array_equal(true_clusters(data.splits["test"], data.keys), assignments[global_top])


def test_learned_router_rows(tiny_dataset, tmp_path):
    spec = ModelSpec(model="keynet", d=32, n_keys=3000, size="S", depth=4, n_x=3, n_clusters=4)
    path = tmp_path / "m" / "model.pt"
    save_model(path, build_model(spec))
    (tmp_path / "m" / "metrics.json").write_text('{"seed": 0}')
    ctx = load_context(tiny_dataset, 4, (1, 4), torch.device("cpu"))
    rows = model_rows(ctx, path)
    assert [r["k"] for r in rows] == [1, 4]
    assert rows[1]["accuracy"] == 1.0
    assert rows[0]["flops_router"] == 2 * analytic_forward_macs(spec) + 2 * 4 * 32


def test_routing_bad_inputs(tiny_dataset, tmp_path):
    cpu = torch.device("cpu")
    with pytest.raises(InputError, match="routing.ks: k = 5 is outside \\[1, c = 4\\]"):
        load_context(tiny_dataset, 4, (1, 5), cpu)
    with pytest.raises(InputError, match="routing: needs a clustered run"):
        load_context(tiny_dataset, 1, (1,), cpu)
    spec = ModelSpec(model="supportnet", d=32, n_keys=3000, size="S", depth=4, n_x=3, n_clusters=1)
    save_model(tmp_path / "c1/model.pt", build_model(spec))
    (tmp_path / "c1/metrics.json").write_text('{"seed": 0}')
    ctx = load_context(tiny_dataset, 4, (1,), cpu)
    with pytest.raises(InputError, match="routing needs a model trained with c > 1 clusters"):
        model_rows(ctx, tmp_path / "c1/model.pt")
    # clusters re-computed after the targets: the recorded checksum no longer matches
    copy = tmp_path / "ds"
    shutil.copytree(tiny_dataset, copy)
    assignments = np.load(copy / "clusters/c4/assignments.npy")
    np.save(copy / "clusters/c4/assignments.npy", np.roll(assignments, 1))
    assert load_json(copy / "targets/c4/manifest.json")["assignments_sha256"]
    with pytest.raises(InputError, match="targets were computed for other cluster assignments"):
        load_context(copy, 4, (1,), cpu)


def test_equal_cost_centroid_routing_counts_2md_and_matches_brute_force(tiny_dataset):
    """m fine centroids, each owned by the coarse cluster holding most of its keys, recomputed
    here by brute force (nearest fine centroid by distance, majority vote, best fine centroid
    by inner product); the router costs 2·m·d FLOPs."""
    from amips_bench.routing import fine_centroids

    m = 40
    ctx = load_context(tiny_dataset, 4, (1, 2), torch.device("cpu"))
    rows = {(r["method"], r["k"]): r for r in baseline_rows(ctx, seed=3, fine=(m,))}
    assert rows[(f"centroid_fine_m{m}", 1)]["flops_router"] == 2 * m * 32
    centroids, owner = fine_centroids(ctx.keys, ctx.assignments, 4, m, seed=3)
    keys = np.load(tiny_dataset / "embeddings/keys.npy").astype(np.float64)
    assignments = np.load(tiny_dataset / "clusters/c4/assignments.npy")
    nearest = np.argmin(((keys[:, None, :] - centroids[None].astype(np.float64)) ** 2).sum(-1), axis=1)
    for f in range(m):
        votes = np.bincount(assignments[nearest == f], minlength=4)
        assert owner[f] == np.argmax(votes), f
    queries = np.load(tiny_dataset / "targets/c1/test_queries.npy").astype(np.float64)
    top1 = np.load(tiny_dataset / "targets/c1/test_top1.npy")[:, 0]
    first = owner[np.argmax(queries @ centroids.T.astype(np.float64), axis=1)]
    expected = np.mean(first == assignments[top1])
    assert rows[(f"centroid_fine_m{m}", 1)]["accuracy"] == pytest.approx(expected)
    assert rows[(f"centroid_fine_m{m}", 2)]["accuracy"] >= rows[(f"centroid_fine_m{m}", 1)]["accuracy"]
    with pytest.raises(InputError, match=r"^routing.fine_centroids: m = 4 must lie between the 4 "
                                         r"clusters and the 3000 keys$"):
        fine_centroids(ctx.keys, ctx.assignments, 4, 4, seed=0)
