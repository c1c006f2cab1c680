"""FLOP counting and the routing experiment."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from amips_bench.core.errors import InputError
from amips_bench.core.storage import load_json
from amips_bench.experiments.routing import baseline_rows, load_context, model_rows
from amips_bench.models.evaluation import load_dataset, true_clusters
from amips_bench.models.flops import analytic_forward_macs, analytic_key_flops, forward_flops, key_flops, router_flops
from amips_bench.models.networks import ModelSpec, build_model, save_model

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
    from amips_bench.experiments.routing import fine_centroids

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
    # the spherical variant: unit-norm centroids, routed by the same brute force, same 2·m·d
    sph, sph_owner = fine_centroids(ctx.keys, ctx.assignments, 4, m, seed=3, spherical=True)
    assert np.allclose(np.linalg.norm(sph, axis=1), 1.0, atol=1e-5)
    assert rows[(f"centroid_fine_sph_m{m}", 1)]["flops_router"] == 2 * m * 32
    nearest = np.argmax(keys @ sph.T.astype(np.float64), axis=1)  # unit keys: nearest = max IP
    for f in range(m):
        assert sph_owner[f] == np.argmax(np.bincount(assignments[nearest == f], minlength=4)), f
    first = sph_owner[np.argmax(queries @ sph.T.astype(np.float64), axis=1)]
    assert rows[(f"centroid_fine_sph_m{m}", 1)]["accuracy"] == pytest.approx(np.mean(first == assignments[top1]))
    with pytest.raises(InputError, match=r"^routing.fine_centroids: m = 4 must lie between the 4 "
                                         r"clusters and the 3000 keys$"):
        fine_centroids(ctx.keys, ctx.assignments, 4, 4, seed=0)


def test_linear_router_counts_2cd_and_matches_brute_force(tiny_dataset, tmp_path):
    """The linear router W·q (W ∈ R^{c×d}) costs c·d multiply-accumulates (2·c·d FLOPs, as
    centroid routing); its k = 1 accuracy equals argmax(W·q) against the top key's cluster,
    recomputed here from the saved weights and the brute-force top keys."""
    from amips_bench.core.stage_settings import TrainSettings
    from amips_bench.experiments.routing import router_rows
    from amips_bench.models.routers import train_router

    cfg = TrainSettings(steps=60, batch_size=256, lr_at_128=0.01, eval_every=60,
                      checkpoint_every=60, seed=1)
    train_router(tiny_dataset, tmp_path / "lin", n_clusters=4, router="linear", cfg=cfg,
                 device=torch.device("cpu"))
    ctx = load_context(tiny_dataset, 4, (1, 2), torch.device("cpu"))
    rows = {r["k"]: r for r in router_rows(ctx, tmp_path / "lin" / "model.pt")}
    assert rows[1]["method"] == "linear_router" and rows[1]["parameters"] == 4 * 32
    assert rows[1]["flops_router"] == 2 * 4 * 32
    w = torch.load(tmp_path / "lin" / "model.pt", weights_only=False)["state_dict"]["trunk.weight"]
    queries = np.load(tiny_dataset / "targets/c1/test_queries.npy").astype(np.float64)
    keys = np.load(tiny_dataset / "embeddings/keys.npy").astype(np.float64)
    assignments = np.load(tiny_dataset / "clusters/c4/assignments.npy")
    truth = assignments[np.argmax(queries @ keys.T, axis=1)]
    first = np.argmax(queries @ w.numpy().astype(np.float64).T, axis=1)
    assert rows[1]["accuracy"] == pytest.approx(np.mean(first == truth))
    assert rows[1]["accuracy"] > 0.5  # learned something (4 clusters: chance is about 0.25)
    with pytest.raises(InputError, match=r"^router 'linear_S_L2': a linear router has no size or depth$"):
        train_router(tiny_dataset, tmp_path / "bad", n_clusters=4, router="linear_S_L2",
                     cfg=cfg, device=torch.device("cpu"))
    with pytest.raises(InputError, match=r"^router 'mlp_S_L2': unknown kind 'mlp'; registered: "):
        train_router(tiny_dataset, tmp_path / "bad", n_clusters=4, router="mlp_S_L2",
                     cfg=cfg, device=torch.device("cpu"))


def test_a_router_lr_sweep_keeps_the_validation_best_and_records_the_sweep(tiny_dataset, tmp_path):
    """Three learning rates: the saved router is the one of best validation top-1 accuracy
    (its weights equal a single training at that rate), never the test-best by construction."""
    from amips_bench.core.stage_settings import TrainSettings
    from amips_bench.models.routers import train_router

    cfg = TrainSettings(steps=40, batch_size=256, lr_at_128=0.01, seed=2)
    m = train_router(tiny_dataset, tmp_path / "sweep", n_clusters=4, router="linear",
                     cfg=cfg, device=torch.device("cpu"), lr_factors=(0.1, 1.0, 10.0))
    sweep = {round(r["lr_at_128"], 6): r["val_top1"] for r in m["lr_sweep"]}
    assert sorted(sweep) == [0.001, 0.01, 0.1] and m["chosen_on"] == "validation top-1 accuracy"
    best = max(sweep, key=lambda lr: (sweep[lr], -lr))
    assert m["recipe"]["lr_at_128"] == pytest.approx(best)
    assert m["top1_accuracy"]["val"] == pytest.approx(sweep[best])
    single = train_router(tiny_dataset, tmp_path / "single", n_clusters=4, router="linear",
                          cfg=TrainSettings(steps=40, batch_size=256, lr_at_128=best, seed=2),
                          device=torch.device("cpu"))
    assert single["top1_accuracy"] == m["top1_accuracy"]
    a = torch.load(tmp_path / "sweep" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "single" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_router_recipe_scales_the_lr_with_sqrt_batch_and_saves_the_ema(tiny_dataset, tmp_path):
    """One Adam step moves each weight by about the learning rate, which must be
    lr_at_128·sqrt(batch/128) (warmup of one step); the saved weights are the EMA, whose
    first update (decay min(decay, 1/10)) gives 0.1·w0 + 0.9·w1 — w1 read from a run whose
    EMA decay is 0."""
    from amips_bench.core.stage_settings import TrainSettings
    from amips_bench.models.routers import LearnedRouter, RouterSpec, train_router

    def saved(name, ema):
        cfg = TrainSettings(steps=1, batch_size=512, lr_at_128=0.001, ema_at_128=ema,
                          eval_every=1, checkpoint_every=1, seed=5)
        m = train_router(tiny_dataset, tmp_path / name, n_clusters=4, router="classifier_XS_L2",
                         cfg=cfg, device=torch.device("cpu"))
        payload = torch.load(tmp_path / name / "model.pt", weights_only=False)
        return m, payload["spec"], payload["state_dict"]

    m, spec, w1 = saved("no_ema", 0.0)
    _, _, ema = saved("ema", 0.999)
    assert m["recipe"]["peak_lr"] == pytest.approx(0.001 * 2.0)  # sqrt(512 / 128) = 2
    torch.manual_seed(5)
    w0 = LearnedRouter(RouterSpec(**spec)).state_dict()
    for name in w0:
        step = (w1[name] - w0[name]).abs()
        moved = step[step > 0]
        assert moved.median().item() == pytest.approx(0.002, rel=0.05), name
        torch.testing.assert_close(ema[name], 0.1 * w0[name] + 0.9 * w1[name], rtol=0, atol=1e-6)


def test_every_routing_row_carries_its_validation_accuracy(tiny_dataset):
    """val_accuracy of the paper's centroid rule, recomputed by brute force on the validation
    split's queries and targets (the true cluster holds the global top key)."""
    ctx = load_context(tiny_dataset, 4, (1, 2), torch.device("cpu"))
    rows = {(r["method"], r["k"]): r for r in baseline_rows(ctx, seed=0)}
    queries = np.load(tiny_dataset / "targets/c1/val_queries.npy").astype(np.float64)
    top1 = np.load(tiny_dataset / "targets/c1/val_top1.npy")[:, 0]
    assignments = np.load(tiny_dataset / "clusters/c4/assignments.npy")
    centroids = np.load(tiny_dataset / "clusters/c4/centroids.npy").astype(np.float64)
    chosen = np.argmax(queries @ centroids.T, axis=1)
    assert rows[("centroid_ip", 1)]["val_accuracy"] == pytest.approx(np.mean(chosen == assignments[top1]))
    assert all(0 <= r["val_accuracy"] <= 1 for r in rows.values())
    assert rows[("oracle", 1)]["val_accuracy"] == 1.0
