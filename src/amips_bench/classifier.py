"""Learned classifier router: an MLP trained with cross-entropy to predict the cluster that holds
the exact top key (the learning-to-route baseline of Vecchiato et al., SIGIR 2024).

It answers the reviewer's question "is a support function needed, or does any learned router
do?": same parameter budgets ρ·n·d as SupportNet/KeyNet, same activation, same training
queries, evaluated with the same FLOP accounting in the routing experiment.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .config import SIZES
from .evaluation import load_dataset, true_clusters
from .io import InputError, atomic_path, device_name, package_versions, save_json
from .models import Trunk, solve_width


@dataclass
class RouterSpec:
    d: int
    n_keys: int
    n_clusters: int
    size: str
    depth: int = 2
    width: int = 0

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise InputError(f"size: unknown size {self.size!r}; expected one of {list(SIZES)}")
        if self.n_clusters < 2:
            raise InputError(f"clusters: a classifier router needs c >= 2 clusters, got {self.n_clusters}")
        if self.width == 0:
            self.width = solve_width(SIZES[self.size] * self.n_keys * self.d, self.d, self.depth,
                                     0, self.n_clusters, rule="full")

    @property
    def name(self) -> str:
        return f"router_{self.size}_L{self.depth}_c{self.n_clusters}"


class ClassifierRouter(nn.Module):
    """Plain MLP (no re-injection) with one logit per cluster."""

    def __init__(self, spec: RouterSpec) -> None:
        super().__init__()
        self.spec = spec
        self.trunk = Trunk(spec.d, spec.width, spec.depth, 0, spec.n_clusters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


def train_router(dataset_dir: str | Path, out_dir: str | Path, *, n_clusters: int, size: str,
                 depth: int, steps: int, batch_size: int, lr: float, seed: int,
                 device: torch.device) -> dict:
    """Train on the (augmented) training queries; write model.pt and metrics.json."""
    data = load_dataset(dataset_dir, n_clusters, device)
    torch.manual_seed(seed)
    spec = RouterSpec(d=data.keys.shape[1], n_keys=len(data.keys), n_clusters=n_clusters,
                      size=size, depth=depth)
    model = ClassifierRouter(spec).to(device)
    labels = {s: torch.from_numpy(true_clusters(data.splits[s], data.keys)).to(device)
              for s in ("train", "val", "test")}
    train_x = data.splits["train"].queries
    if batch_size > len(train_x):
        raise InputError(f"routing.classifier_batch_size: {batch_size} is larger than the "
                         f"{len(train_x)} training queries")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    warmup = max(1, steps // 40)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(steps):
        scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(
            math.pi * (step - warmup) / max(1, steps - warmup)))
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        idx = torch.randint(len(train_x), (batch_size,), generator=gen).to(device)
        loss = F.cross_entropy(model(train_x[idx]), labels["train"][idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        accuracy = {s: float((model(data.splits[s].queries).argmax(1) == labels[s]).float().mean())
                    for s in ("val", "test")}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.pt") as tmp:
        torch.save({"spec": asdict(spec), "state_dict": model.state_dict()}, tmp)
    metrics = {"dataset": data.name, "name": spec.name, "size": size, "depth": depth,
               "width": spec.width, "n_clusters": n_clusters, "seed": seed,
               "parameters": sum(p.numel() for p in model.parameters()), "steps": steps,
               "train_seconds": round(seconds, 3), "top1_accuracy": accuracy,
               "device": device_name(device), "versions": package_versions()}
    save_json(out / "metrics.json", metrics)
    return metrics


def load_router(path: str | Path, device: str | torch.device = "cpu") -> ClassifierRouter:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: router model not found")
    payload = torch.load(path, map_location=device, weights_only=False)
    model = ClassifierRouter(RouterSpec(**payload["spec"])).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model
