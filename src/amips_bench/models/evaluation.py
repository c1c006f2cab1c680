"""Model evaluation on a split: batched inference, losses and the metrics of paper §4.2."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.errors import InputError
from ..core.layout import DatasetFiles
from ..core.rows import NpyRows, StreamedSplit
from ..core.runs import split_mode_named
from ..core.stage_settings import LossWeights
from ..core.storage import check_unit_rows, load_embeddings, load_index_array, load_json, save_json
from ..datasets.targets import ClusterLayout
from .losses import prediction_losses
from .metrics import global_top_cluster, retrieval_metrics, routing_accuracy
from .networks import model_scores, scores_and_keys


@dataclass
class SplitData:
    """Queries of one split and their exact per-cluster top-1 key indices, on the training device."""

    queries: torch.Tensor  # float32 [N, d]
    top1: torch.Tensor  # int64 [N, c]




@dataclass
class DatasetTensors:
    keys: torch.Tensor  # float32 [n, d]
    layout: ClusterLayout
    splits: dict[str, SplitData]
    name: str = ""  # the dataset's name (its results folder)
    split_mode: str = "leak_free"  # leak_free, or official (noisy copies of test questions trained on)

    @property
    def n_clusters(self) -> int:
        return self.layout.n_clusters


def load_streamed(queries_path: Path, top1_path: Path, n_keys: int, d: int, n_clusters: int,
                  resident_top1_max_bytes: float = 0, chunk: int = 65_536) -> StreamedSplit:
    """A split read from disk per batch, checked chunk by chunk as the resident loader checks;
    its targets are kept in memory where they take at most `resident_top1_max_bytes`."""
    queries = NpyRows(queries_path, dtype="float32", ncols=d)
    top1 = NpyRows(top1_path, dtype="int64", ncols=n_clusters)
    if len(top1) != len(queries):
        raise InputError(f"{top1_path}: {len(top1)} rows, expected {len(queries)}")
    resident = (np.empty(top1.shape, dtype=np.int64)
                if len(top1) * top1.row_bytes <= resident_top1_max_bytes else None)
    for start in range(0, len(queries), chunk):
        check_unit_rows(queries.rows(start, start + chunk), f"{queries_path} (rows from {start})")
        block = top1.rows(start, start + chunk)
        if block.min() < 0 or block.max() >= n_keys:
            raise InputError(f"{top1_path}: indices must lie in [0, {n_keys}), found range "
                             f"[{block.min()}, {block.max()}] in rows from {start}")
        if resident is not None:
            resident[start:start + len(block)] = block
    return StreamedSplit(queries, top1 if resident is None else resident)


def load_dataset(dataset_dir: str | Path, n_clusters: int, device: torch.device,
                 splits: tuple[str, ...] = ("train", "val", "test"),
                 stream_train_over_bytes: float = float("inf")) -> DatasetTensors:
    """Keys, cluster layout and the targets of the requested splits, checked for consistency.

    A training split whose queries file is larger than `stream_train_over_bytes` is not
    loaded: its queries are read from disk batch by batch (StreamedSplit), its targets too
    unless they fit in that many bytes of host memory; every other split is resident on
    `device`.
    """
    files = DatasetFiles(dataset_dir)
    keys = load_embeddings(files.keys)
    manifest = load_json(files.targets_manifest(n_clusters))
    if manifest.get("n_keys") != len(keys):
        raise InputError(f"{files.targets_manifest(n_clusters)}: targets were computed for "
                         f"{manifest.get('n_keys')} keys but {files.keys} has {len(keys)}")
    assignments = None
    if n_clusters > 1:
        assignments = load_index_array(files.assignments(n_clusters),
                                       upper=n_clusters)
    layout = ClusterLayout.from_assignments(assignments, len(keys), n_clusters)
    loaded = {}
    for split in splits:
        queries_path = files.split_queries(n_clusters, split)
        top1_path = files.split_top1(n_clusters, split)
        if split == "train" and queries_path.exists() and \
                queries_path.stat().st_size > stream_train_over_bytes:
            loaded[split] = load_streamed(queries_path, top1_path,
                                          len(keys), keys.shape[1], n_clusters,
                                          resident_top1_max_bytes=stream_train_over_bytes)
            continue
        queries = load_embeddings(queries_path, d=keys.shape[1])
        top1 = load_index_array(top1_path, upper=len(keys), ndim=2)
        if top1.shape != (len(queries), n_clusters):
            raise InputError(f"{top1_path}: shape {top1.shape}, expected "
                             f"({len(queries)}, {n_clusters})")
        loaded[split] = SplitData(torch.from_numpy(queries).to(device),
                                  torch.from_numpy(top1).to(device))
    return DatasetTensors(torch.from_numpy(keys).to(device), layout, loaded, files.root.name,
                          split_mode_named(manifest.get("split_mode", "leak_free")))


def predict(model: nn.Module, queries: torch.Tensor, batch: int = 4096
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [N, c], predicted keys [N, c, d]) in batches, no graph kept."""
    scores, keys = [], []
    for start in range(0, len(queries), batch):
        s, k = scores_and_keys(model, queries[start:start + batch])
        scores.append(s)
        keys.append(k)
    return torch.cat(scores), torch.cat(keys)


@torch.no_grad()
def predict_scores(model: nn.Module, queries: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """Cluster scores only (SupportNet: forward only, no gradient)."""
    return torch.cat([model_scores(model, queries[s:s + batch]) for s in range(0, len(queries), batch)])


def evaluate_model(model: nn.Module, split: SplitData, data: DatasetTensors,
                   weights: LossWeights, batch: int = 4096,
                   routing_ks: tuple[int, ...] = (1, 2, 3, 4, 5),
                   questions: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Losses, E_rel, retrieval metrics and (c > 1) routing accuracy of a model on one split;
    `questions` receives the per-question outcomes (metrics.retrieval_metrics)."""
    model.eval()
    scores, pred = predict(model, split.queries, batch)
    targets = data.keys[split.top1]
    sigma = torch.einsum("ncd,nd->nc", targets, split.queries)
    out = retrieval_metrics(pred, split.queries, split.top1, data.keys, data.layout,
                            questions=questions)
    total, parts = prediction_losses(model.spec.model, scores, pred, targets, sigma, weights)
    out["loss"] = float(total)
    out.update({name: float(value) for name, value in parts.items()})
    if data.n_clusters > 1:
        true_cluster = global_top_cluster(split.top1.cpu().numpy(), sigma.cpu().numpy())
        ks = tuple(k for k in routing_ks if k <= data.n_clusters)
        for k, acc in routing_accuracy(scores.cpu().numpy(), true_cluster, ks).items():
            out[f"routing@{k}"] = acc
    return out


def true_clusters(split: SplitData, keys: torch.Tensor) -> np.ndarray:
    """Cluster of the global top key of every query of a split."""
    sigma = torch.einsum("ncd,nd->nc", keys[split.top1], split.queries)
    return global_top_cluster(split.top1.cpu().numpy(), sigma.cpu().numpy())


def identity_metrics(dataset_dir: str | Path) -> dict:
    """Test metrics of the identity map ŷ = x on the c = 1 targets: the reference point.

    With unit-norm keys, ranking keys by distance to x is ranking them by <x, y>, so y* comes
    first (match = MRR = recall@k = 1) and E_rel = 0 by construction; computing it with the
    same code as the models checks that the targets, the ranks and any duplicate keys agree.
    """
    root = Path(dataset_dir)
    data = load_dataset(root, 1, torch.device("cpu"), splits=("test",))
    test = data.splits["test"]
    out = retrieval_metrics(test.queries[:, None, :], test.queries, test.top1, data.keys,
                            data.layout)
    return {"dataset": root.name, "model": "identity", "reference": "ŷ = x",
            "n_test": len(test.queries), "test": out}


def write_identity_metrics(dataset_dir: str | Path, out: str | Path) -> dict:
    """The identity stage: `identity_metrics` saved as JSON (targets/c1/identity.json)."""

    metrics = identity_metrics(dataset_dir)
    save_json(out, metrics)
    return metrics
