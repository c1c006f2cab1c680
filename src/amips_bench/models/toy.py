"""The 2-D example of Figure 1: five keys, their support function and key map.

The exact support function σ(x) = max_i <x, y_i> and the key map argmax_i <x, y_i> are
computed analytically on a grid; a small SupportNet is trained on random queries of the plane
with the paper's losses to show its learned contours beside the exact ones.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.stage_settings import LossWeights
from .losses import compute_loss
from .networks import ModelSpec, SupportNet, scores_and_keys

TOY_KEYS = np.array([[0.9, 0.25], [0.1, 0.95], [-0.8, 0.45], [-0.45, -0.75], [0.55, -0.65]],
                    dtype=np.float32)


def exact_support(points: np.ndarray, keys: np.ndarray = TOY_KEYS) -> tuple[np.ndarray, np.ndarray]:
    """(σ_Y(x), argmax index) for every row of points."""
    scores = points @ keys.T
    return scores.max(axis=1), scores.argmax(axis=1)


def train_toy_supportnet(steps: int = 3000, seed: int = 0, width: int = 64, depth: int = 3
                         ) -> SupportNet:
    """A SupportNet on the 5 toy keys, trained on queries drawn uniformly in the plane."""
    torch.manual_seed(seed)
    spec = ModelSpec(model="supportnet", d=2, n_keys=len(TOY_KEYS), size="XXL", depth=depth,
                     n_x=depth - 1, width=width)
    model = SupportNet(spec)
    keys = torch.from_numpy(TOY_KEYS)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    gen = torch.Generator().manual_seed(seed)
    weights = LossWeights(score=1.0, grad=1.0)
    for _ in range(steps):
        x = torch.rand(512, 2, generator=gen) * 4 - 2
        scores = x @ keys.T
        best = scores.argmax(1)
        loss, _ = compute_loss(model, x, keys[best][:, None, :], scores.max(1).values[:, None], weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    return model


def learned_support(model: SupportNet, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f(x), index of the key nearest to ∇f(x)) on a set of points."""

    scores, keys = scores_and_keys(model, torch.from_numpy(points.astype(np.float32)))
    pred = keys[:, 0, :].numpy()
    nearest = ((pred[:, None, :] - TOY_KEYS[None]) ** 2).sum(-1).argmin(1)
    return scores[:, 0].numpy(), nearest
