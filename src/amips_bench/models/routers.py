"""Learned routers trained with cross-entropy to predict the cluster that holds the exact top key.

Two baselines answer the reviewer's question "is a support function needed, or does any learned
router do?":

- the classifier router: an MLP with the parameter budgets ρ·n·d of SupportNet/KeyNet and the
  same activation;
- the linear router of Vecchiato et al. ("A Learning-to-Rank Formulation of Clustering-Based
  Approximate Nearest Neighbor Search", SIGIR 2024): scores W·q with W ∈ R^{c×d}, c·d
  multiply-accumulates, as much as centroid routing (kind `linear`: no size, one layer).

Each is a RouterKind of the ROUTERS registry, which every part of the suite reads.

Both train on the same augmented training queries and targets as the models, with the models'
recipe (peak LR scaled by sqrt(batch/128), warmup and cosine decay, gradient clipping, an EMA
copy with decay scaled as decay^(batch/128) that is the model evaluated), and are counted with
the same FLOP accounting in the routing experiment.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..core.errors import InputError
from ..core.provenance import device_name, package_versions
from ..core.runs import SIZES
from ..core.stage_settings import TrainSettings
from ..core.storage import atomic_path, read_file, save_json
from .evaluation import load_dataset, true_clusters
from .networks import Trunk, parameter_count, solve_width


@dataclass(frozen=True)
class RouterKind:
    """A kind of learned router: how it is named, built, sized and trained, and how it is shown.

    Registered in ROUTERS, which the CLI (`train-router --router NAME`), the workflow (one
    train_router and routing_router job per router the config asks for), the routing stage
    (the method column), Figure 2, the report and the comparison read. Adding a router is one
    `register_router` call (docs/architecture.md, "Adding a router")."""

    name: str  # the first word of its run names: router_{name}[_{size}_L{depth}]_c{C}_s{seed}
    method: str  # the routing CSVs' method column
    label: str  # Figure 2's legend (a sized router's size is appended)
    color: str
    sized: bool  # an MLP at a parameter budget (size XS…XXL, a depth); False: one fixed shape
    build: Callable[[RouterSpec], nn.Module]
    n_parameters: Callable[[RouterSpec], int]
    lr_key: str  # the dataset's routing key holding its peak LR at batch 128
    #: the routers of this kind a dataset's routing block asks for, as run-name stems
    chosen: Callable[[dict], list[str]] = lambda routing: []
    validate: Callable[[RouterSpec], None] = lambda spec: None


#: name -> router kind
ROUTERS: dict[str, RouterKind] = {}


def register_router(kind: RouterKind) -> RouterKind:
    """Add a router kind to the registry (a name already taken is an error)."""
    if kind.name in ROUTERS or "_" in kind.name:
        raise ValueError(f"router {kind.name!r}: taken, or holds an underscore")
    ROUTERS[kind.name] = kind
    return kind


def router_stem(kind: str, size: str = "", depth: int = 1) -> str:
    """A router's name without its clusters and seed: `classifier_S_L2`, `linear`."""
    return f"{kind}_{size}_L{depth}" if ROUTERS[kind].sized else kind


def parse_router_stem(stem: str) -> tuple[str, str, int]:
    """(kind, size, depth) of a router name stem; an unknown one is a one-line error."""
    kind, _, rest = stem.partition("_")
    if kind not in ROUTERS:
        raise InputError(f"router {stem!r}: unknown kind {kind!r}; registered: {sorted(ROUTERS)}")
    if not ROUTERS[kind].sized:
        if rest:
            raise InputError(f"router {stem!r}: a {kind} router has no size or depth")
        return kind, "", 1
    m = re.fullmatch(r"(?P<size>[A-Z]+)_L(?P<depth>\d+)", rest)
    if not m:
        raise InputError(f"router {stem!r}: expected {kind}_SIZE_LDEPTH, e.g. {kind}_S_L2")
    return kind, m["size"], int(m["depth"])


def router_wildcard() -> str:
    """A regular expression matching every registered router's name stem (the workflow's
    wildcard constraint)."""
    return "|".join(rf"{k.name}_[A-Z]+_L\d+" if k.sized else k.name for k in ROUTERS.values())


@dataclass
class RouterSpec:
    d: int
    n_keys: int
    n_clusters: int
    kind: str
    size: str = ""
    depth: int = 1
    width: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ROUTERS:
            raise InputError(f"router: unknown kind {self.kind!r}; registered: {sorted(ROUTERS)}")
        if self.n_clusters < 2:
            raise InputError(f"clusters: a learned router needs c >= 2 clusters, got {self.n_clusters}")
        ROUTERS[self.kind].validate(self)

    @property
    def name(self) -> str:
        return f"router_{router_stem(self.kind, self.size, self.depth)}_c{self.n_clusters}"

    @property
    def n_parameters(self) -> int:
        """Parameters of the router this spec builds."""
        return ROUTERS[self.kind].n_parameters(self)


def _sized_mlp(spec: RouterSpec) -> None:
    if spec.size not in SIZES:
        raise InputError(f"size: unknown size {spec.size!r}; expected one of {list(SIZES)}")
    if spec.depth < 2:
        raise InputError(f"depth: a classifier router MLP needs depth >= 2, got {spec.depth}")
    if spec.width == 0:
        spec.width = solve_width(SIZES[spec.size] * spec.n_keys * spec.d, spec.d, spec.depth, 0,
                                 spec.n_clusters, rule="full")


def _one_layer(spec: RouterSpec) -> None:
    if spec.size or spec.depth != 1:
        raise InputError(f"the linear router has no size and depth 1, got size {spec.size!r} "
                         f"and depth {spec.depth}")


register_router(RouterKind(
    "classifier", "classifier", "classifier router", "#9467bd", sized=True,
    build=lambda spec: Trunk(spec.d, spec.width, spec.depth, 0, spec.n_clusters),
    n_parameters=lambda spec: parameter_count(spec.d, spec.width, spec.depth, 0, spec.n_clusters),
    lr_key="classifier_lr_at_128", validate=_sized_mlp,
    chosen=lambda r: [router_stem("classifier", size, r["classifier_depth"])
                      for size in r["classifier_sizes"]]))
register_router(RouterKind(
    "linear", "linear_router", "linear router W·q (2·c·d)", "#e377c2", sized=False,
    build=lambda spec: nn.Linear(spec.d, spec.n_clusters, bias=False),
    n_parameters=lambda spec: spec.d * spec.n_clusters,  # no bias
    lr_key="linear_router_lr_at_128", validate=_one_layer,
    chosen=lambda r: ["linear"] if r["linear_router"] else []))


class LearnedRouter(nn.Module):
    """A registered router's network: one logit per cluster."""

    def __init__(self, spec: RouterSpec) -> None:
        super().__init__()
        self.spec = spec
        self.trunk = ROUTERS[spec.kind].build(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


def train_router(dataset_dir: str | Path, out_dir: str | Path, *, n_clusters: int, router: str,
                 cfg: TrainSettings, device: torch.device,
                 lr_factors: tuple[float, ...] = (1.0,)) -> dict:
    """Train on the (augmented) training queries with the models' recipe (cfg: steps, batch,
    LR at batch 128, warmup, cosine floor, clipping, EMA), once per learning rate
    cfg.lr_at_128 × factor; keep the EMA weights best on validation top-1 accuracy (never
    chosen on test) in model.pt, and the sweep in metrics.json."""
    kind, size, depth = parse_router_stem(router)
    data = load_dataset(dataset_dir, n_clusters, device)
    spec = RouterSpec(d=data.keys.shape[1], n_keys=len(data.keys), n_clusters=n_clusters,
                      kind=kind, size=size, depth=depth)
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
    metrics = {"dataset": data.name, "name": spec.name, "kind": kind, "size": size, "depth": depth,
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


def _fit_router(spec: RouterSpec, data, labels: dict, cfg: TrainSettings,
                device: torch.device) -> LearnedRouter:
    """One training of a router under cfg; its EMA weights, in eval mode."""
    torch.manual_seed(cfg.seed)
    model = LearnedRouter(spec).to(device)
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


def load_router(path: str | Path, device: str | torch.device = "cpu") -> LearnedRouter:
    """A saved router; one saved before routers had kinds (the linear one as size "linear")
    is read as the kind it is."""
    payload = read_file(path, lambda p: torch.load(p, map_location=device, weights_only=False),
                        kind="router model", remedy="re-run the train_router stage that writes it")
    spec = dict(payload["spec"])
    if "kind" not in spec:
        linear = spec["size"] == "linear"
        spec.update(kind="linear" if linear else "classifier", size="" if linear else spec["size"])
    model = LearnedRouter(RouterSpec(**spec)).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model
