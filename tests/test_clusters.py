"""Balanced k-means selection (paper §4.4)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import unit_rows

from amips_bench.core.errors import InputError
from amips_bench.datasets.clusters import Clustering, balanced_kmeans, select_most_balanced


def _clustering(sizes, inertia, seed=0):
    assignments = np.repeat(np.arange(len(sizes)), sizes)
    return Clustering(np.zeros((len(sizes), 2), np.float32), assignments, inertia, seed)


def test_the_balanced_clustering_wins_over_a_lower_inertia_one():
    unbalanced = _clustering([50, 10, 40], inertia=1.0)  # max/min 5.0
    balanced = _clustering([35, 30, 35], inertia=9.0)  # max/min 1.17
    assert select_most_balanced([unbalanced, balanced]) == 1


def test_inertia_breaks_ties_in_balance():
    a = _clustering([30, 30, 40], inertia=5.0)
    b = _clustering([40, 30, 30], inertia=4.0)
    assert select_most_balanced([a, b]) == 1


def test_balanced_kmeans_returns_the_most_balanced_of_its_restarts(rng):
    # uneven blobs make k-means restarts differ in balance
    centres = unit_rows(rng, 6, 16) * 3
    points = np.concatenate([c + rng.standard_normal((n, 16)) for c, n in
                             zip(centres, [400, 250, 150, 100, 60, 40])]).astype(np.float32)
    chosen, runs = balanced_kmeans(points, 5, restarts=6, niter=15, seed=0)
    assert len(runs) == 6
    assert chosen.balance_ratio == min(r.balance_ratio for r in runs)
    assert np.bincount(chosen.assignments, minlength=5).sum() == len(points)
    # assignments are the nearest centroid of every point
    d2 = ((points[:, None, :] - chosen.centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(chosen.assignments, d2.argmin(1))


def test_more_clusters_than_keys_is_rejected(rng):
    with pytest.raises(InputError, match="12 clusters requested for only 10 keys"):
        balanced_kmeans(unit_rows(rng, 10, 4), 12)
