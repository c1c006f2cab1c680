"""Statistics that say whether an embedding set behaves like real sentence embeddings.

The reference values were measured on real all-MiniLM-L6-v2 embeddings of a real corpus
(118K definitions as keys, 48K short example sentences as queries; queries/keys = 0.41).
The synthetic generator is calibrated against them and every dataset's manifest records them,
so a reader can see how far the data the models were trained on is from real text.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from .clusters import balanced_kmeans

#: Measured on real MiniLM embeddings (see module docstring). name -> (value, description)
REAL_MINILM_REFERENCE: dict[str, tuple[float, str]] = {
    "top1_cosine_mean": (0.62, "mean cosine between a query and its exact top key"),
    "top1_cosine_p10": (0.50, "10th percentile of that cosine"),
    "top1_cosine_p90": (0.75, "90th percentile of that cosine"),
    "top1_top2_gap_mean": (0.04, "mean gap between the top-1 and top-2 scores"),
    "winner_key_fraction": (0.23, "fraction of keys that are the exact top-1 of some query"),
    "max_wins_fraction": (0.0007, "largest fraction of queries won by a single key"),
    "noise_flip_fraction": (0.18, "fraction of queries whose top-1 changes under sigma=0.02 noise"),
    "kmeans_balance_ratio": (1.8, "max/min cluster size of k-means with c=10 (real: 1.7-1.9)"),
    "centroid_routing_top1": (0.53, "top key's cluster = centroid of largest inner product"),
    "centroid_routing_top5": (0.95, "top key's cluster among the 5 centroids of largest IP"),
    "pca_top13pct_variance": (0.48, "share of the keys' variance in the top 13% of components"),
}
REFERENCE_QUERY_KEY_RATIO = 0.41

#: Why a statistic may miss the reference at the quick size (shown in every manifest).
KNOWN_DEVIATIONS = {
    "max_wins_fraction": (
        "an extreme-value statistic: its fraction shrinks as the sample grows. The synthetic "
        "generator gives about 0.001 at 8,200 queries (7-8 wins) but 0.0002 at the reference "
        "size of 48,380 queries (9 wins), while the real corpus has hub keys holding a fixed "
        "0.07 % share (34 of 48K). No single popularity model matches both sizes; we keep the "
        "tail light so that no key dominates the quick data."),
}
RELATIVE_TOLERANCE = 0.30


def exact_top2_ids(queries: np.ndarray, keys: np.ndarray, key_block: int = 1 << 18) -> np.ndarray:
    """Global ids [m, 2] of each query's two keys of largest inner product, over key blocks
    (memory: one block and the running best, whatever the number of keys; a block of a
    memory-mapped file is searched in place, not copied into an index)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best = faiss.ResultHeap(len(queries), 2, keep_max=True)  # FAISS's merge of blocked results
    for k0 in range(0, len(keys), key_block):
        block = np.ascontiguousarray(keys[k0:k0 + key_block], dtype=np.float32)
        scores, ids = faiss.knn(queries, block, min(2, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        best.add_result(scores, ids + k0)
    best.finalize()
    return best.I


def realism_stats(keys: np.ndarray, queries: np.ndarray, *, noise_sigma: float = 0.02,
                  n_clusters: int = 10, restarts: int = 3, seed: int = 0) -> dict[str, float]:
    """Measure every statistic of REAL_MINILM_REFERENCE on (keys, queries)."""
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n, d = keys.shape
    index = faiss.IndexFlatIP(d)
    index.add(keys)
    top_scores, top_ids = index.search(queries, 2)
    winners = top_ids[:, 0]
    wins = np.bincount(winners, minlength=n)

    rng = np.random.default_rng(seed)
    noisy = queries + rng.normal(0.0, noise_sigma, size=queries.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    _, noisy_ids = index.search(noisy, 1)

    chosen, runs = balanced_kmeans(keys, n_clusters, restarts=restarts, seed=seed)
    route = np.argsort(-(queries @ chosen.centroids.T), axis=1)
    target_cluster = chosen.assignments[winners]
    hit_rank = np.argmax(route == target_cluster[:, None], axis=1)

    centred = keys - keys.mean(axis=0, keepdims=True)
    eigenvalues = np.linalg.eigvalsh(centred.T.astype(np.float64) @ centred)[::-1]
    top = max(1, int(round(0.13 * d)))

    return {
        "top1_cosine_mean": float(top_scores[:, 0].mean()),
        "top1_cosine_p10": float(np.percentile(top_scores[:, 0], 10)),
        "top1_cosine_p90": float(np.percentile(top_scores[:, 0], 90)),
        "top1_top2_gap_mean": float((top_scores[:, 0] - top_scores[:, 1]).mean()),
        "winner_key_fraction": float((wins > 0).mean()),
        "max_wins_fraction": float(wins.max() / len(queries)),
        "noise_flip_fraction": float((noisy_ids[:, 0] != winners).mean()),
        "kmeans_balance_ratio": chosen.balance_ratio,
        "kmeans_balance_ratio_worst_restart": float(max(r.balance_ratio for r in runs)),
        "centroid_routing_top1": float((hit_rank < 1).mean()),
        "centroid_routing_top5": float((hit_rank < 5).mean()),
        "pca_top13pct_variance": float(eigenvalues[:top].sum() / eigenvalues.sum()),
        "query_key_ratio": len(queries) / n,
    }


#: Statistics a neighbour-keeping key sample cannot measure (embeddings.measure_realism).
NOT_COMPARABLE_ON_A_KEY_SAMPLE = {
    name: ("not comparable on a key sample: it keeps every sampled query's best keys, so almost "
           "every query wins a key of its own; the value is shown, not judged")
    for name in ("winner_key_fraction", "max_wins_fraction")
}


def compare_with_reference(stats: dict[str, float], tolerance: float = RELATIVE_TOLERANCE,
                           not_comparable: dict[str, str] | None = None
                           ) -> dict[str, dict[str, Any]]:
    """Per statistic: ours, the real value, the relative deviation and whether it is within
    tolerance (None, with the reason as `why`, for the `not_comparable` ones)."""
    not_comparable = not_comparable or {}
    table = {}
    for name, (real, description) in REAL_MINILM_REFERENCE.items():
        ours = stats[name]
        deviation = (ours - real) / real
        table[name] = {"ours": ours, "real_minilm": real, "relative_deviation": deviation,
                       "within_tolerance": bool(abs(deviation) <= tolerance),
                       "description": description}
        if name in not_comparable:
            table[name].update(within_tolerance=None, why=not_comparable[name])
        elif name in KNOWN_DEVIATIONS and not table[name]["within_tolerance"]:
            table[name]["why"] = KNOWN_DEVIATIONS[name]
    return table
