"""Balanced k-means partition of the keys (paper §4.4).

The paper runs k-means end to end 10 times and keeps the clustering with the most even cluster
sizes, because the cost of exact search inside a cluster grows with its size. We do the same:
smallest max/min size ratio wins, inertia breaks ties.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from ..core.errors import InputError
from ..core.storage import load_embeddings, save_json, save_npy, sha256_file


@dataclass
class Clustering:
    centroids: np.ndarray  # float32 [C, d]
    assignments: np.ndarray  # int64 [n]
    inertia: float  # sum of squared L2 distances of keys to their centroid
    seed: int
    sizes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.sizes = np.bincount(self.assignments, minlength=len(self.centroids))

    @property
    def balance_ratio(self) -> float:
        """max/min cluster size; infinite when a cluster is empty."""
        smallest = int(self.sizes.min())
        return float("inf") if smallest == 0 else float(self.sizes.max()) / smallest


def select_most_balanced(candidates: list[Clustering]) -> int:
    """Index of the candidate with the smallest max/min size ratio, ties broken by inertia."""
    if not candidates:
        raise InputError("clusters: no k-means candidates to choose from")
    return min(range(len(candidates)),
               key=lambda i: (candidates[i].balance_ratio, candidates[i].inertia, i))


def assign_nearest(keys: np.ndarray, centroids: np.ndarray,
                   block: int = 262_144) -> tuple[np.ndarray, float]:
    """Nearest-centroid (L2) assignment of every key, streamed, with the total inertia."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    assignments = np.empty(len(keys), dtype=np.int64)
    inertia = 0.0
    for start in range(0, len(keys), block):
        chunk = np.ascontiguousarray(keys[start:start + block], dtype=np.float32)
        dist, idx = index.search(chunk, 1)
        assignments[start:start + len(chunk)] = idx[:, 0]
        inertia += float(dist[:, 0].astype(np.float64).sum())
    return assignments, inertia


def kmeans_once(keys: np.ndarray, n_clusters: int, *, seed: int, niter: int,
                max_points_per_centroid: int, spherical: bool = False) -> Clustering:
    """One FAISS k-means run, then assignment of all keys (FAISS may train on a subsample).
    `spherical`: centroids re-normalised after every iteration, as FAISS trains an
    inner-product IVF (for unit-norm keys the nearest centroid is then the largest inner
    product)."""
    d = keys.shape[1]
    km = faiss.Kmeans(d, n_clusters, niter=niter, seed=seed, verbose=False, spherical=spherical,
                      max_points_per_centroid=max_points_per_centroid, min_points_per_centroid=1)
    train = _training_sample(keys, n_clusters * max_points_per_centroid, seed)
    km.train(train)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    assignments, inertia = assign_nearest(keys, centroids)
    return Clustering(centroids, assignments, inertia, seed)


def _training_sample(keys: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(keys) <= limit:
        return np.ascontiguousarray(keys, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(len(keys), size=limit, replace=False))
    return np.ascontiguousarray(keys[rows], dtype=np.float32)


def balanced_kmeans(keys: np.ndarray, n_clusters: int, *, restarts: int = 10, niter: int = 25,
                    seed: int = 0, max_points_per_centroid: int = 65_536
                    ) -> tuple[Clustering, list[Clustering]]:
    """Run k-means `restarts` times with seeds seed, seed+1, ...; return (chosen, all runs)."""
    if n_clusters < 1:
        raise InputError(f"clusters: number of clusters must be >= 1, got {n_clusters}")
    if n_clusters > len(keys):
        raise InputError(f"clusters: {n_clusters} clusters requested for only {len(keys)} keys")
    if restarts < 1:
        raise InputError(f"clusters.restarts: must be >= 1, got {restarts}")
    if n_clusters == 1:
        centroid = np.asarray(keys, dtype=np.float64).mean(axis=0, keepdims=True).astype(np.float32)
        assignments = np.zeros(len(keys), dtype=np.int64)
        _, inertia = assign_nearest(keys, centroid)
        single = Clustering(centroid, assignments, inertia, seed)
        return single, [single]
    runs = [kmeans_once(keys, n_clusters, seed=seed + r, niter=niter,
                        max_points_per_centroid=max_points_per_centroid) for r in range(restarts)]
    return runs[select_most_balanced(runs)], runs


def write_clusters(keys_path: str | Path, out_dir: str | Path, n_clusters: int, *,
                   restarts: int, niter: int, seed: int,
                   max_points_per_centroid: int = 65_536) -> dict:
    """clusters/c{C}/{centroids,assignments}.npy and a manifest with every restart's balance."""
    keys = load_embeddings(keys_path)
    chosen, runs = balanced_kmeans(keys, n_clusters, restarts=restarts, niter=niter, seed=seed,
                                   max_points_per_centroid=max_points_per_centroid)
    out = Path(out_dir)
    save_npy(out / "centroids.npy", chosen.centroids)
    save_npy(out / "assignments.npy", chosen.assignments.astype(np.int64))
    manifest = {
        "n_clusters": n_clusters, "n_keys": len(keys), "restarts": restarts, "niter": niter,
        "seed": seed, "chosen_seed": chosen.seed, "rule": "smallest max/min size ratio, then inertia",
        "sizes": chosen.sizes.tolist(), "balance_ratio": chosen.balance_ratio,
        "inertia": chosen.inertia,
        "runs": [{"seed": r.seed, "balance_ratio": r.balance_ratio, "inertia": r.inertia}
                 for r in runs],
        "keys_sha256": sha256_file(keys_path),
        "assignments_sha256": sha256_file(out / "assignments.npy"),
    }
    save_json(out / "manifest.json", manifest)
    return manifest
