"""Every metric against a brute-force NumPy reference on small random data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import unit_rows

from amips_bench.datasets.targets import ClusterLayout, exact_top1
from amips_bench.models.metrics import global_top_cluster, retrieval_metrics, routing_accuracy


def brute_force(pred, queries, top1, keys, assignments):
    """Loop over (query, cluster): full distance ranking inside the cluster, lowest index first."""
    n, c, _ = pred.shape
    e, ranks = np.zeros((n, c)), np.zeros((n, c))
    for i in range(n):
        for j in range(c):
            members = np.flatnonzero(assignments == j)
            y = keys[top1[i, j]]
            e[i, j] = np.log(np.sum((pred[i, j] - y) ** 2) / np.sum((queries[i] - y) ** 2))
            dist = np.sum((keys[members].astype(np.float64) - pred[i, j]) ** 2, axis=1)
            order = np.lexsort((members, dist))  # by distance, then by index
            ranks[i, j] = 1 + int(np.flatnonzero(members[order] == top1[i, j])[0])
    return {"e_rel": e.mean(), "e_rel_half": e.mean() / 2, "match_rate": (ranks == 1).mean(),
            "mrr": (1 / ranks).mean(), "recall@1": (ranks <= 1).mean(),
            "recall@10": (ranks <= 10).mean(), "recall@100": (ranks <= 100).mean()}


@pytest.mark.parametrize("c", [1, 5])
def test_retrieval_metrics_equal_brute_force(rng, c):
    keys = unit_rows(rng, 600, 8)
    queries = unit_rows(rng, 80, 8)
    assignments = rng.integers(0, c, size=600) if c > 1 else np.zeros(600, dtype=np.int64)
    _, top1 = exact_top1(queries, keys, assignments if c > 1 else None, c, device="cpu")
    # predictions of varied quality: near the target, near the query, random
    targets = keys[top1]
    mix = rng.uniform(0, 1, size=(80, c, 1))
    pred = (mix * targets + (1 - mix) * queries[:, None, :]
            + 0.3 * rng.standard_normal((80, c, 8))).astype(np.float32)
    layout = ClusterLayout.from_assignments(assignments if c > 1 else None, 600, c)
    ours = retrieval_metrics(torch.from_numpy(pred), torch.from_numpy(queries),
                             torch.from_numpy(top1), torch.from_numpy(keys), layout)
    ref = brute_force(pred, queries, top1, keys, assignments)
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert ours["e_rel"] == pytest.approx(2 * ours["e_rel_half"])
    assert 0 < ours["mrr"] < 1


def test_rows_where_the_query_is_its_target_are_counted_and_left_out_of_e_rel(rng):
    """A question that is also a passage (x = y*) has no distance ratio: it is counted, E_rel
    (mean and median, both conventions) is taken over the other rows, and nothing is clamped."""
    keys = unit_rows(rng, 300, 8)
    queries = unit_rows(rng, 40, 8)
    queries[[3, 17]] = keys[[10, 250]]  # two questions identical to passages
    _, top1 = exact_top1(queries, keys, device="cpu")
    assert top1[3, 0] == 10 and top1[17, 0] == 250
    pred = (0.6 * keys[top1] + 0.4 * queries[:, None, :]).astype(np.float32)
    pred[3, 0] = keys[10]  # exact there: log(0 / 0) would be anything
    layout = ClusterLayout.from_assignments(None, 300, 1)
    ours = retrieval_metrics(torch.from_numpy(pred), torch.from_numpy(queries),
                             torch.from_numpy(top1), torch.from_numpy(keys), layout)
    keep = np.setdiff1d(np.arange(40), [3, 17])
    y = keys[top1[keep, 0]]
    terms = np.log(((pred[keep, 0] - y) ** 2).sum(1) / ((queries[keep] - y) ** 2).sum(1))
    assert ours["x_is_target"] == 2
    assert ours["e_rel"] == pytest.approx(terms.mean(), rel=1e-5)
    assert ours["e_rel_median"] == pytest.approx(np.median(terms), rel=1e-5)
    assert ours["e_rel_half_median"] == pytest.approx(np.median(terms) / 2, rel=1e-5)
    # the identity map ŷ = x ranks y* first (unit-norm keys: nearest = largest inner product)
    identity = retrieval_metrics(torch.from_numpy(queries[:, None, :]), torch.from_numpy(queries),
                                 torch.from_numpy(top1), torch.from_numpy(keys), layout)
    assert identity["mrr"] == identity["match_rate"] == identity["recall@1"] == 1.0
    assert identity["e_rel"] == pytest.approx(0.0, abs=1e-6)


def test_ranks_handle_exact_ties_with_the_lowest_index():
    keys = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)  # keys 0 and 1 identical
    layout = ClusterLayout.from_assignments(None, 3, 1)
    pred = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    top1 = torch.tensor([[0], [1]])
    m = retrieval_metrics(pred, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), top1,
                          torch.from_numpy(keys), layout)
    assert m["match_rate"] == 0.5 and m["mrr"] == pytest.approx(0.75)


def test_routing_accuracy_against_a_loop(rng):
    scores = rng.standard_normal((300, 6))
    true = rng.integers(0, 6, size=300)
    ours = routing_accuracy(scores, true, (1, 2, 6))
    for k in (1, 2, 6):
        ref = np.mean([true[i] in np.argsort(-scores[i])[:k] for i in range(300)])
        assert ours[k] == pytest.approx(ref)
    assert ours[6] == 1.0


def test_global_top_cluster_breaks_ties_by_key_index():
    top1 = np.array([[5, 2], [7, 9]])
    scores = np.array([[0.5, 0.5], [0.4, 0.6]])
    np.testing.assert_array_equal(global_top_cluster(top1, scores), [1, 1])
