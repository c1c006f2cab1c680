"""Training objectives of paper §3.2, as means over the batch and the c clusters.

SupportNet: λ_score·(f(x)_j − σ_j(x))² + λ_grad·||∇_x f(x)_j − y*_j||²  (needs double backward)
KeyNet:     λ_key·||F(x)_j − y*_j||² + λ_consist·(<F(x)_j, x> − σ_j(x))²  (Euler consistency)

The key term is summed over the d coordinates (the paper's ||·||², key_reduction "sum") or
averaged over them as the official code's `squared_error(pred, target).mean()` does ("mean"):
relative to the key term the second reading weighs the score/consistency term d times more.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.stage_settings import LossWeights
from .networks import KeyNet, SupportNet, scores_and_keys


def prediction_losses(model_kind: str, scores: torch.Tensor, keys: torch.Tensor,
                      y_star: torch.Tensor, sigma: torch.Tensor, weights: LossWeights
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss from predictions: scores [B, c], keys [B, c, d], y* [B, c, d], σ [B, c].

    For KeyNet `scores` are <F(x)_j, x>, so the score term is the consistency loss.
    """
    score_loss = (scores - sigma).pow(2).mean()
    squared = (keys - y_star).pow(2)
    key_loss = squared.mean() if weights.key_reduction == "mean" else squared.sum(-1).mean()
    if model_kind == "supportnet":
        total = weights.score * score_loss + weights.grad * key_loss
        return total, {"score_loss": score_loss, "grad_loss": key_loss}
    total = weights.key * key_loss + weights.consist * score_loss
    return total, {"key_loss": key_loss, "consist_loss": score_loss}


def compute_loss(model: nn.Module, x: torch.Tensor, y_star: torch.Tensor, sigma: torch.Tensor,
                 weights: LossWeights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Training loss (with graph) for a batch x [B, d], y* [B, c, d], σ [B, c]."""
    if not isinstance(model, (SupportNet, KeyNet)):
        raise TypeError(f"no loss for {type(model).__name__}")
    scores, keys = scores_and_keys(model, x, create_graph=True)
    total, parts = prediction_losses(model.spec.model, scores, keys, y_star, sigma, weights)
    if isinstance(model, SupportNet) and model.spec.convexity == "penalty" and weights.convex > 0:
        penalty = model.convexity_penalty()
        total = total + weights.convex * penalty
        parts["convex_penalty"] = penalty
    return total, parts
