"""Routing experiment of paper §4.4 (Figure 2): pick the top-k of c clusters, scan them exactly.

Accuracy: the cluster holding the global top key is among the k selected. Cost per query
(docs/architecture.md §5): the router (model forward, classifier or linear-router forward, or
C·d centroid scoring) plus the exact scan of the selected clusters, counted with their real
sizes.

Equal-cost centroid routing gives the non-learned rule a budget like a learned router's: m fine
k-means centroids of the keys, each owned by the coarse cluster holding most of its keys; a
query ranks the coarse clusters by their best fine centroid (largest inner product, as the
paper's rule), at 2·m·d FLOPs. Both plain k-means centroids and spherical ones (normalised
after each iteration, as FAISS trains them for inner-product search) are offered: raw inner
products favour long plain centroids, which spherical ones do not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import InputError
from ..core.layout import DatasetFiles
from ..core.provenance import device_name
from ..core.storage import load_array, load_index_array, load_json, sha256_file
from ..datasets.clusters import kmeans_once
from ..models.evaluation import load_dataset, predict_scores, true_clusters
from ..models.flops import centroid_flops, fvcore_flops, router_flops, scan_flops
from ..models.metrics import true_cluster_rank
from ..models.networks import load_model
from ..models.routers import ROUTERS, load_router

CENTROID_RULES = ("centroid_ip", "centroid_l2", "centroid_cos")
FINE_RULE = "centroid_fine_m"  # + m: centroid routing at equal cost
FINE_SPHERICAL_RULE = "centroid_fine_sph_m"  # + m: the same with spherical k-means centroids


@dataclass
class RoutingContext:
    dataset: str
    n_clusters: int
    d: int
    sizes: np.ndarray  # [C] keys per cluster
    centroids: np.ndarray  # [C, d]
    queries: torch.Tensor  # test queries [N, d]
    true_cluster: np.ndarray  # [N]
    ks: tuple[int, ...]
    device: torch.device
    keys: np.ndarray | None = None  # [n, d] (for the fine-centroid rule)
    assignments: np.ndarray | None = None  # [n] coarse cluster of every key
    val_queries: torch.Tensor | None = None  # validation queries: what a method is chosen on
    val_true_cluster: np.ndarray | None = None
    #: per-question outcomes of every method routed: "{split}_rank|{method}" -> the position of
    #: each question's true cluster in the method's order (hit at k: position < k)
    questions: dict[str, np.ndarray] = field(default_factory=dict)


def load_context(dataset_dir: str | Path, n_clusters: int, ks: tuple[int, ...],
                 device: torch.device) -> RoutingContext:
    """Test queries, their true clusters and the clustering, checked to come from one run."""
    root = Path(dataset_dir)
    if n_clusters < 2:
        raise InputError(f"routing: needs a clustered run (c >= 2), got c = {n_clusters}")
    bad_k = [k for k in ks if k < 1 or k > n_clusters]
    if bad_k:
        raise InputError(f"routing.ks: k = {bad_k[0]} is outside [1, c = {n_clusters}]")
    files = DatasetFiles(root)
    target_manifest = files.targets_manifest(n_clusters)
    recorded = load_json(target_manifest).get("assignments_sha256")
    actual = sha256_file(files.assignments(n_clusters))
    if recorded != actual:
        raise InputError(f"{target_manifest}: targets were computed for other cluster assignments "
                         f"than {files.assignments(n_clusters)} (checksum mismatch); re-run targets")
    data = load_dataset(root, n_clusters, device, splits=("val", "test"))
    assignments = load_index_array(files.assignments(n_clusters), upper=n_clusters)
    centroids = load_array(files.centroids(n_clusters), dtype="float32", ndim=2)
    return RoutingContext(root.name, n_clusters, data.keys.shape[1],
                          np.bincount(assignments, minlength=n_clusters), centroids,
                          data.splits["test"].queries,
                          true_clusters(data.splits["test"], data.keys), tuple(ks), device,
                          data.keys.cpu().numpy(), assignments, data.splits["val"].queries,
                          true_clusters(data.splits["val"], data.keys))


def rows_from_scores(ctx: RoutingContext, scores: np.ndarray, flops_router: float,
                     meta: dict[str, Any], val_scores: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per k: test accuracy and mean FLOPs (router + scan of the k selected clusters);
    with `val_scores`, the accuracy on validation queries too (`val_accuracy`), on which a
    verdict chooses among methods before judging them on test."""
    if scores.shape != (len(ctx.true_cluster), ctx.n_clusters):
        raise InputError(f"routing: scores of shape {scores.shape}, expected "
                         f"({len(ctx.true_cluster)}, {ctx.n_clusters})")
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = true_cluster_rank(scores, ctx.true_cluster)
    ctx.questions[f"test_rank|{meta['method']}"] = rank.astype(np.int32)
    accuracy = {k: float((rank < k).mean()) for k in ctx.ks}
    val = {k: float("nan") for k in ctx.ks}
    if val_scores is not None:
        val_rank = true_cluster_rank(val_scores, ctx.val_true_cluster)
        ctx.questions[f"val_rank|{meta['method']}"] = val_rank.astype(np.int32)
        val = {k: float((val_rank < k).mean()) for k in ctx.ks}
    rows = []
    for k in ctx.ks:
        scanned = ctx.sizes[order[:, :k]].sum(axis=1)
        flops_scan = float(scan_flops(scanned, ctx.d).mean())
        rows.append({**meta, "dataset": ctx.dataset, "clusters": ctx.n_clusters, "k": k,
                     "accuracy": accuracy[k], "val_accuracy": val[k], "flops_router": flops_router,
                     "flops_scan": flops_scan, "flops_total": flops_router + flops_scan,
                     "n_queries": len(ctx.true_cluster), "device": device_name(ctx.device)})
    return rows


def centroid_scores(ctx: RoutingContext, rule: str, queries: torch.Tensor | None = None) -> np.ndarray:
    """Scores of the test queries (or `queries`) against the coarse centroids under `rule`."""
    q = (ctx.queries if queries is None else queries).cpu().numpy().astype(np.float64)
    c = ctx.centroids.astype(np.float64)
    if rule == "centroid_ip":
        return q @ c.T
    if rule == "centroid_l2":
        return -(((q[:, None, :] - c[None]) ** 2).sum(-1))
    if rule == "centroid_cos":
        return (q @ c.T) / np.linalg.norm(c, axis=1)[None]
    raise InputError(f"routing: unknown centroid rule {rule!r}; expected one of {CENTROID_RULES}")


def fine_centroids(keys: np.ndarray, assignments: np.ndarray, n_clusters: int, m: int, *,
                   seed: int, niter: int = 20, spherical: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """m k-means centroids of the keys (unit-norm ones with `spherical`) and the owner of each:
    the coarse cluster holding most of its keys (ties and empty cells: the lowest index)."""

    if not n_clusters < m < len(keys):
        raise InputError(f"routing.fine_centroids: m = {m} must lie between the {n_clusters} "
                         f"clusters and the {len(keys)} keys")
    fine = kmeans_once(keys, m, seed=seed, niter=niter, max_points_per_centroid=256, spherical=spherical)
    counts = np.zeros((m, n_clusters), dtype=np.int64)
    np.add.at(counts, (fine.assignments, assignments), 1)
    return fine.centroids, counts.argmax(axis=1)


def fine_centroid_scores(queries: np.ndarray, centroids: np.ndarray, owner: np.ndarray,
                         n_clusters: int) -> np.ndarray:
    """Score of each coarse cluster: the largest inner product with one of its fine centroids
    (−inf for a cluster that owns none: ranked last)."""
    ip = np.asarray(queries, dtype=np.float64) @ np.asarray(centroids, dtype=np.float64).T
    scores = np.full((len(ip), n_clusters), -np.inf)
    for j in np.unique(owner):
        scores[:, j] = ip[:, owner == j].max(axis=1)
    return scores


def baseline_rows(ctx: RoutingContext, seed: int, fine: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """Centroid routing by inner product (paper), L2 (k-means cell) and cosine; centroid
    routing at equal cost with m fine centroids per entry of `fine`; the oracle."""
    rows = []
    base = {"model": "", "size": "", "depth": "", "n_x": "", "seed": seed, "parameters": 0}
    for rule in CENTROID_RULES:
        rows += rows_from_scores(ctx, centroid_scores(ctx, rule),
                                 centroid_flops(ctx.n_clusters, ctx.d), {**base, "method": rule},
                                 centroid_scores(ctx, rule, ctx.val_queries))
    queries, val_queries = ctx.queries.cpu().numpy(), ctx.val_queries.cpu().numpy()
    for m in fine:
        for rule, spherical in ((FINE_RULE, False), (FINE_SPHERICAL_RULE, True)):
            centroids, owner = fine_centroids(ctx.keys, ctx.assignments, ctx.n_clusters, m, seed=seed,
                                              spherical=spherical)
            rows += rows_from_scores(ctx, fine_centroid_scores(queries, centroids, owner, ctx.n_clusters),
                                     centroid_flops(m, ctx.d),
                                     {**base, "method": f"{rule}{m}", "parameters": m * ctx.d},
                                     fine_centroid_scores(val_queries, centroids, owner, ctx.n_clusters))
    # oracle: the true cluster is known for free; only its scan is paid (k = 1)
    scan = float(scan_flops(ctx.sizes[ctx.true_cluster], ctx.d).mean())
    ctx.questions["test_rank|oracle"] = np.zeros(len(ctx.true_cluster), dtype=np.int32)
    ctx.questions["val_rank|oracle"] = np.zeros(len(ctx.val_true_cluster), dtype=np.int32)
    rows.append({**base, "method": "oracle", "dataset": ctx.dataset, "clusters": ctx.n_clusters,
                 "k": 1, "accuracy": 1.0, "val_accuracy": 1.0, "flops_router": 0.0, "flops_scan": scan,
                 "flops_total": scan, "n_queries": len(ctx.true_cluster),
                 "device": device_name(ctx.device)})
    return rows


def model_rows(ctx: RoutingContext, model_path: str | Path) -> list[dict[str, Any]]:
    """Rows of a trained clustered SupportNet/KeyNet (scores only; SupportNet needs no gradient)."""
    model, _ = load_model(model_path, ctx.device)
    spec = model.spec
    if spec.n_clusters == 1:
        raise InputError(f"{model_path}: routing needs a model trained with c > 1 clusters, "
                         f"this one has c = 1")
    if spec.n_clusters != ctx.n_clusters:
        raise InputError(f"{model_path}: model has {spec.n_clusters} outputs but the clustering "
                         f"has {ctx.n_clusters} clusters")
    if spec.n_keys != int(ctx.sizes.sum()):
        raise InputError(f"{model_path}: model was built for {spec.n_keys} keys, the dataset has "
                         f"{int(ctx.sizes.sum())}")
    scores = predict_scores(model, ctx.queries).cpu().numpy()
    val_scores = predict_scores(model, ctx.val_queries).cpu().numpy()
    metrics = load_json(Path(model_path).parent / "metrics.json")
    meta = {"method": spec.model, **spec.row_fields(), "seed": metrics["seed"],
            "parameters": sum(p.numel() for p in model.parameters())}
    return rows_from_scores(ctx, scores, router_flops(model.cpu(), spec.d), meta, val_scores)


def router_rows(ctx: RoutingContext, router_path: str | Path) -> list[dict[str, Any]]:
    """The rows of one learned router of the registry (its method column is its kind's)."""
    router = load_router(router_path, ctx.device)
    spec = router.spec
    if spec.n_clusters != ctx.n_clusters:
        raise InputError(f"{router_path}: router has {spec.n_clusters} outputs but the clustering "
                         f"has {ctx.n_clusters} clusters")
    with torch.no_grad():
        scores = router(ctx.queries).cpu().numpy()
        val_scores = router(ctx.val_queries).cpu().numpy()
    metrics = load_json(Path(router_path).parent / "metrics.json")
    method = ROUTERS[spec.kind].method
    meta = {"method": method, "model": method, "size": spec.size, "depth": spec.depth,
            "n_x": 0, "seed": metrics["seed"],
            "parameters": sum(p.numel() for p in router.parameters())}
    return rows_from_scores(ctx, scores, fvcore_flops(router.cpu(), spec.d), meta, val_scores)


def routing_rows(dataset_dir: str | Path, n_clusters: int, ks: tuple[int, ...],
                 device: torch.device, *, model: str | None = None, router: str | None = None,
                 seed: int = 0, fine: tuple[int, ...] = (),
                 questions: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """The routing stage: the rows of one clustered model, one learned router, or (neither
    given) the centroid baselines and the oracle; `questions` receives the per-question
    outcomes the rows are means of (RoutingContext.questions)."""
    ctx = load_context(dataset_dir, n_clusters, ks, device)
    if model:
        rows = model_rows(ctx, model)
    elif router:
        rows = router_rows(ctx, router)
    else:
        rows = baseline_rows(ctx, seed, fine)
    if questions is not None:
        questions.update(ctx.questions)
    return rows
