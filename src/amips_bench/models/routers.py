"""Learned routers trained with cross-entropy to predict the cluster that holds the exact top key.

Two baselines answer the reviewer's question "is a support function needed, or does any learned
router do?":

- the classifier router: an MLP with the parameter budgets ρ·n·d of SupportNet/KeyNet and the
  same activation;
- the linear router of Vecchiato et al. ("A Learning-to-Rank Formulation of Clustering-Based
  Approximate Nearest Neighbor Search", SIGIR 2024): scores W·q with W ∈ R^{c×d}, c·d
  multiply-accumulates, as much as centroid routing (size name `linear`, depth 1).

Both train on the same augmented training queries and targets as the models, with the models'
recipe (peak LR scaled by sqrt(batch/128), warmup and cosine decay, gradient clipping, an EMA
copy with decay scaled as decay^(batch/128) that is the model evaluated), and are counted with
the same FLOP accounting in the routing experiment.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..core.config import LINEAR_ROUTER as LINEAR
from ..core.config import SIZES
from ..core.files import InputError, atomic_path, device_name, package_versions, save_json
from ..core.settings import TrainConfig
from .evaluation import load_dataset, true_clusters
from .networks import Trunk, parameter_count, solve_width


@dataclass
class RouterSpec:
    d: int
    n_keys: int
    n_clusters: int
    size: str
    depth: int = 2
    width: int = 0

    def __post_init__(self) -> None:
        if self.size not in SIZES and self.size != LINEAR:
            raise InputError(f"size: unknown size {self.size!r}; expected {LINEAR!r} or one of "
                             f"{list(SIZES)}")
        if self.n_clusters < 2:
            raise InputError(f"clusters: a learned router needs c >= 2 clusters, got {self.n_clusters}")
        if self.size == LINEAR:
            if self.depth != 1:
                raise InputError(f"depth: the linear router has depth 1, got {self.depth}")
        elif self.depth < 2:
            raise InputError(f"depth: a classifier router MLP needs depth >= 2, got {self.depth}")
        elif self.width == 0:
            self.width = solve_width(SIZES[self.size] * self.n_keys * self.d, self.d, self.depth,
                                     0, self.n_clusters, rule="full")

    @property
    def name(self) -> str:
        return f"router_{self.size}_L{self.depth}_c{self.n_clusters}"

    @property
    def n_parameters(self) -> int:
        """Parameters of the router this spec builds (the linear map has no bias)."""
        if self.size == LINEAR:
            return self.d * self.n_clusters
        return parameter_count(self.d, self.width, self.depth, 0, self.n_clusters)


class ClassifierRouter(nn.Module):
    """Plain MLP (no re-injection) with one logit per cluster, or the linear map W·q."""

    def __init__(self, spec: RouterSpec) -> None:
        super().__init__()
        self.spec = spec
        self.trunk = (nn.Linear(spec.d, spec.n_clusters, bias=False) if spec.size == LINEAR
                      else Trunk(spec.d, spec.width, spec.depth, 0, spec.n_clusters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


def train_router(dataset_dir: str | Path, out_dir: str | Path, *, n_clusters: int, size: str,
                 depth: int, cfg: TrainConfig, device: torch.device,
                 lr_factors: tuple[float, ...] = (1.0,)) -> dict:
    """Train on the (augmented) training queries with the models' recipe (cfg: steps, batch,
    LR at batch 128, warmup, cosine floor, clipping, EMA), once per learning rate
    cfg.lr_at_128 × factor; keep the EMA weights best on validation top-1 accuracy (never
    chosen on test) in model.pt, and the sweep in metrics.json."""
    data = load_dataset(dataset_dir, n_clusters, device)
    spec = RouterSpec(d=data.keys.shape[1], n_keys=len(data.keys), n_clusters=n_clusters,
                      size=size, depth=depth)
    labels = {s: torch.from_numpy(true_clusters(data.splits[s], data.keys)).to(device)
              for s in ("train", "val", "test")}
    if cfg.batch_size > len(data.splits["train"].queries):
        raise InputError(f"routing.router_batch_size: {cfg.batch_size} is larger than the "
                         f"{len(data.splits['train'].queries)} training queries")
    if not lr_factors or min(lr_factors) <= 0:
        raise InputError(f"routing.router_lr_factors: need positive factors, got {list(lr_factors)}")
    t0 = time.perf_counter()
    sweep = []
    for factor in lr_factors:
        run_cfg = dataclasses.replace(cfg, lr_at_128=cfg.lr_at_128 * factor)
        ema = _fit_router(spec, data, labels, run_cfg, device)
        with torch.no_grad():
            accuracy = {s: float((ema(data.splits[s].queries).argmax(1) == labels[s]).float().mean())
                        for s in ("val", "test")}
        sweep.append((accuracy["val"], -factor, run_cfg, ema, accuracy))
    _, _, cfg, ema, accuracy = max(sweep, key=lambda t: (t[0], t[1]))  # ties: the smaller LR
    seconds = time.perf_counter() - t0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.pt") as tmp:
        torch.save({"spec": asdict(spec), "state_dict": ema.state_dict()}, tmp)
    metrics = {"dataset": data.name, "name": spec.name, "size": size, "depth": depth,
               "width": spec.width, "n_clusters": n_clusters, "seed": cfg.seed,
               "parameters": sum(p.numel() for p in ema.parameters()), "steps": cfg.steps,
               "recipe": {"batch_size": cfg.batch_size, "lr_at_128": cfg.lr_at_128,
                          "peak_lr": cfg.peak_lr, "warmup_fraction": cfg.warmup_fraction,
                          "end_lr_fraction": cfg.end_lr_fraction, "ema_decay": cfg.ema_decay,
                          "grad_clip": cfg.grad_clip},
               "lr_sweep": [{"lr_at_128": c.lr_at_128, "val_top1": a["val"]} for _, _, c, _, a in sweep],
               "chosen_on": "validation top-1 accuracy",
               "train_seconds": round(seconds, 3), "top1_accuracy": accuracy,
               "device": device_name(device), "versions": package_versions()}
    save_json(out / "metrics.json", metrics)
    return metrics


def _fit_router(spec: RouterSpec, data, labels: dict, cfg: TrainConfig,
                device: torch.device) -> ClassifierRouter:
    """One training of a router under cfg; its EMA weights, in eval mode."""
    torch.manual_seed(cfg.seed)
    model = ClassifierRouter(spec).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    train_x = data.splits["train"].queries
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.peak_lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(step)
        idx = torch.randint(len(train_x), (cfg.batch_size,), generator=gen).to(device)
        loss = F.cross_entropy(model(train_x[idx]), labels["train"][idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), params):
                e.lerp_(p, 1.0 - cfg.ema_decay_at(step))
    return ema.eval()


def load_router(path: str | Path, device: str | torch.device = "cpu") -> ClassifierRouter:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: router model not found")
    payload = torch.load(path, map_location=device, weights_only=False)
    model = ClassifierRouter(RouterSpec(**payload["spec"])).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model
