"""The typed settings a stage runs with (training, the regime study), built from a validated
config block; plain dataclasses with no torch import, so the CLI starts fast. The YAML config
itself (schema, validation, cross-key checks) is `core.config`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import InputError
from .schema import schema_defaults

PRECISIONS = ("auto", "fp32", "tf32", "bf16")
#: how the key term ||ŷ − y*||² is reduced over the d coordinates: summed (the paper's norm) or
#: averaged (the official code's squared_error(...).mean(), which weighs the score term d× more)
KEY_REDUCTIONS = ("sum", "mean")

#: the schema's `train` and `figures.regime` blocks are the one source of every default below
#: (docs in the schema)
_TRAIN = schema_defaults("train")
_REGIME = schema_defaults("figures", "regime")


@dataclass(frozen=True)
class LossWeights:
    score: float = _TRAIN["lambda_score"]
    grad: float = _TRAIN["lambda_grad"]
    key: float = _TRAIN["lambda_key"]
    consist: float = _TRAIN["lambda_consist"]
    convex: float = _TRAIN["lambda_convex"]  # Σ||ReLU(−W^z)||², SupportNet in penalty mode
    key_reduction: str = _TRAIN["key_reduction"]  # one of KEY_REDUCTIONS (train.key_reduction)

    def __post_init__(self) -> None:
        if self.key_reduction not in KEY_REDUCTIONS:
            raise InputError(f"train.key_reduction: unknown reduction {self.key_reduction!r}; "
                             f"expected one of {KEY_REDUCTIONS}")


@dataclass
class TrainSettings:
    steps: int = _TRAIN["steps"]
    batch_size: int = _TRAIN["batch_size"]
    lr_at_128: float = _TRAIN["lr_at_128"]  # peak learning rate at batch 128, × sqrt(batch/128)
    end_lr_fraction: float = _TRAIN["end_lr_fraction"]  # official: 5.66e-5 / 4.53e-4
    warmup_fraction: float = _TRAIN["warmup_fraction"]
    ema_at_128: float = _TRAIN["ema_at_128"]  # EMA decay at batch 128, scaled as decay**(batch/128)
    ema_warmup: bool = _TRAIN["ema_warmup"]  # False: the fixed decay from step 0 (official code)
    grad_clip: float = _TRAIN["grad_clip"]
    weights: LossWeights = field(default_factory=LossWeights)
    eval_every: int = _TRAIN["eval_every"]
    checkpoint_every: int = _TRAIN["checkpoint_every"]
    eval_batch: int = 4096  # rows per evaluation forward pass (memory only, not in the schema)
    seed: int = 0  # the run's seed (part of its name)
    precision: str = _TRAIN["precision"]
    cuda_graph: bool = _TRAIN["cuda_graph"]
    resident_max_gb: float = _TRAIN["resident_max_gb"]
    reader_processes: int = _TRAIN["reader_processes"]

    #: settings that change how a run executes, not what it computes: not part of a checkpoint's
    #: identity, and not a reason for the workflow to train a finished model again
    EXECUTION_ONLY = ("cuda_graph", "resident_max_gb", "reader_processes", "checkpoint_every")

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            self.weights = LossWeights(**self.weights)
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        if self.reader_processes < 0:
            raise InputError(f"train.reader_processes: must be >= 0, got {self.reader_processes}")
        if self.precision not in PRECISIONS:
            raise InputError(f"train.precision: unknown precision {self.precision!r}; "
                             f"expected one of {PRECISIONS}")

    @property
    def peak_lr(self) -> float:
        return self.lr_at_128 * math.sqrt(self.batch_size / 128)

    @property
    def ema_decay(self) -> float:
        return self.ema_at_128 ** (self.batch_size / 128)

    @property
    def warmup_steps(self) -> int:
        return max(1, round(self.warmup_fraction * self.steps))

    def lr_at(self, step: int) -> float:
        """Linear warmup to the peak, then cosine decay to end_lr_fraction·peak."""
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        floor = self.end_lr_fraction
        return self.peak_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def ema_decay_at(self, step: int) -> float:
        """EMA decay of step `step`: with warm-up, min(decay, (1 + t)/(10 + t)) so that short
        runs are not dominated by the initialisation; without, the fixed decay (official)."""
        if not self.ema_warmup:
            return self.ema_decay
        return min(self.ema_decay, (1 + step) / (10 + step))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RegimeSettings:
    """The study as the config's figures.regime states it."""

    datasets: tuple[str, ...] = tuple(_REGIME["datasets"])
    recall_fraction: float = _REGIME["recall_fraction"]
    predict_at: int = _REGIME["predict_at"]
    plateau_fraction: float = _REGIME["plateau_fraction"]
    plateau_tolerance: float = _REGIME["plateau_tolerance"]

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> RegimeSettings:
        return cls(**{**entry, "datasets": tuple(entry.get("datasets", ()))})

    def arguments(self) -> str:
        """The `--regime` and `--regime-settings` flags of the figure and report stages."""
        if not self.datasets:
            return ""
        values = " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                          if f.name != "datasets")
        return f"--regime {' '.join(self.datasets)} --regime-settings {values}"

    @classmethod
    def from_arguments(cls, datasets: list[str], settings: list[str]) -> RegimeSettings:
        known = {f.name: f.type for f in fields(cls) if f.name != "datasets"}
        values: dict[str, Any] = {}
        for item in settings:
            key, _, value = item.partition("=")
            if key not in known or not value:
                raise InputError(f"--regime-settings: {item!r} is not KEY=VALUE with KEY one of "
                                 f"{sorted(known)}")
            values[key] = int(float(value)) if key == "predict_at" else float(value)
        return cls(datasets=tuple(datasets), **values)

    def judged_k(self, n_keys: int) -> int:
        """k of the judged recall: 0.01 % of n by default, at least 1."""
        return max(1, int(round(self.recall_fraction * n_keys)))
