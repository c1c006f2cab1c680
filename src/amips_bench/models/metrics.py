"""Evaluation metrics of paper §4.2 (definitions in docs/architecture.md §4).

E_rel = E_x[log(||ŷ − y*||² / ||x − y*||²)], averaged over clusters: the log-ratio of squared
distances, the paper's formula (`e_rel`). The paper's prose ("E_rel = −1: 0.37× as far") and
the official code's log use half of it, the log-ratio of distances (`e_rel_half`); both are
written, with their medians. Rows where x is y* itself (a question that is also a passage)
have no ratio: they are counted (`x_is_target`) and left out of E_rel, never clamped into it.

Retrieval metrics rank y* among the keys by L2 distance to ŷ, inside y*'s own cluster for the
clustered models. Ranks are counted in key blocks (no [N, n] matrix): rank = 1 + #keys strictly
closer + #keys equally close with a lower index, which is consistent with the lowest-index
tie-break of the targets.
"""

from __future__ import annotations

import numpy as np
import torch

from ..datasets.targets import ClusterLayout

RECALL_KS = (1, 10, 100)


X_IS_TARGET = 1e-10  # ||x − y*||² below this: x is y* (unit vectors; float32 noise is ~1e-14)


def e_rel_terms(pred: torch.Tensor, queries: torch.Tensor, targets: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log(||ŷ − y*||² / ||x − y*||²) per (query, cluster), mask of the defined ones).

    pred/targets [N, c, d], queries [N, d]; entries where x = y* are masked out.
    """
    num = (pred - targets).pow(2).sum(-1).clamp_min(1e-30)
    den = (queries[:, None, :] - targets).pow(2).sum(-1)
    defined = den > X_IS_TARGET
    return torch.log(num) - torch.log(den.clamp_min(1e-30)), defined


@torch.no_grad()
def ranks_in_cluster(pred: torch.Tensor, top1: torch.Tensor, keys: torch.Tensor,
                     layout: ClusterLayout, key_block: int = 8192) -> torch.Tensor:
    """Rank (1 = nearest) of y*_j among cluster j's keys by L2 distance to ŷ_j; [N, c] int64.

    pred [N, c, d]; top1 [N, c] global key indices; keys [n, d] on the same device.
    """
    n_q, n_clusters, _ = pred.shape
    key_sq = keys.pow(2).sum(-1)
    order = torch.from_numpy(layout.order).to(keys.device)
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order), device=keys.device)
    ranks = torch.ones((n_q, n_clusters), dtype=torch.int64, device=keys.device)
    rows = torch.arange(n_q, device=keys.device)
    for j in range(n_clusters):
        p = pred[:, j, :]
        target_pos = position[top1[:, j]]
        lo, hi = int(layout.offsets[j]), int(layout.offsets[j + 1])
        blocks = [(k0, min(k0 + key_block, hi)) for k0 in range(lo, hi, key_block)]

        def closeness(k0: int, k1: int) -> torch.Tensor:
            # 2<ŷ, y> − ||y||²: larger is nearer, the same order as −||ŷ − y||²
            ids = order[k0:k1]
            return 2 * p @ keys[ids].T - key_sq[ids]

        # the target's closeness is read from the very tile its competitors come from, so the
        # comparison never depends on two roundings of the same number
        target_close = torch.empty(n_q, dtype=pred.dtype, device=keys.device)
        for k0, k1 in blocks:
            inside = (target_pos >= k0) & (target_pos < k1)
            if inside.any():
                tile = closeness(k0, k1)
                target_close[inside] = tile[rows[inside], target_pos[inside] - k0]
        for k0, k1 in blocks:
            close = closeness(k0, k1)
            slot = torch.arange(k0, k1, device=keys.device)
            ahead = close > target_close[:, None]
            tied = (close == target_close[:, None]) & (slot < target_pos[:, None])
            ranks[:, j] += (ahead | tied).sum(1)
    return ranks


def global_top_cluster(top1: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Cluster holding the global top key: largest per-cluster score, ties to the lowest key index."""
    best = scores.max(axis=1, keepdims=True)
    candidates = np.where(scores == best, top1, np.iinfo(np.int64).max)
    return np.argmin(candidates, axis=1)


def true_cluster_rank(cluster_scores: np.ndarray, true_cluster: np.ndarray) -> np.ndarray:
    """Per query, the position (0 = first) of its true cluster when clusters are ranked by
    score (ties in index order): the query is routed right at k exactly when it is below k."""
    order = np.argsort(-cluster_scores, axis=1, kind="stable")
    return np.argmax(order == true_cluster[:, None], axis=1)


def routing_accuracy(cluster_scores: np.ndarray, true_cluster: np.ndarray,
                     ks: tuple[int, ...]) -> dict[int, float]:
    """Fraction of queries whose true cluster is among the k highest-scored clusters."""
    hit_rank = true_cluster_rank(cluster_scores, true_cluster)
    return {k: float((hit_rank < k).mean()) for k in ks}


def retrieval_metrics(pred: torch.Tensor, queries: torch.Tensor, top1: torch.Tensor,
                      keys: torch.Tensor, layout: ClusterLayout,
                      recall_ks: tuple[int, ...] = RECALL_KS,
                      questions: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """e_rel, e_rel_half, match_rate, recall@k and mrr of predicted keys, averaged over clusters.

    `questions` receives the per-question outcomes these are means of: `e_rel` (the mean over
    a question's clusters where defined, NaN where x is every y*: with c = 1 the mean of the
    finite values is e_rel) and `rank` (of y* in each cluster, [N, c])."""
    targets = keys[top1]
    terms, defined = e_rel_terms(pred, queries, targets)
    valid = terms[defined].double()
    ranks = ranks_in_cluster(pred, top1, keys, layout).double()
    if questions is not None:
        per_question = torch.where(defined, terms.double(), 0.0).sum(1) / defined.sum(1)
        questions["e_rel"] = per_question.cpu().numpy()
        questions["rank"] = ranks.cpu().numpy().astype(np.int64)
    mean = float(valid.mean()) if len(valid) else float("nan")
    median = float(valid.median()) if len(valid) else float("nan")
    out = {
        "e_rel": mean, "e_rel_half": mean / 2,
        "e_rel_median": median, "e_rel_half_median": median / 2,
        "x_is_target": int((~defined).sum()),
        "match_rate": float((ranks == 1).double().mean()),
        "mrr": float((1.0 / ranks).mean()),
    }
    for k in recall_ks:
        out[f"recall@{k}"] = float((ranks <= k).double().mean())
    return out
