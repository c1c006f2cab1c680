"""FLOP accounting (docs/architecture.md §5). One unit everywhere: 1 FLOP = 2 × multiply-accumulate, per query.

Model costs are measured on the real modules, not assumed:
- forward: fvcore's FlopCountAnalysis (which counts multiply-accumulates) × 2;
- forward + input gradient (SupportNet's key): torch.utils.flop_counter.FlopCounterMode, which
  already counts 2 per MAC.
Both are checked against `analytic_forward_macs` in the tests. Elementwise work (activations,
the homogeniser's norm) is not counted by either tool; it is O(width) against O(width²).

Search costs: centroid scoring C·d MACs; exact scan of the selected clusters Σ|Y_j|·d MACs;
IVF coarse quantizer nlist·d plus the codes of the probed lists, × d (counted from the index:
faiss_backend.ivf_scanned_codes, equal to FAISS's indexIVF_stats.ndis on the CPU).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from .networks import MODEL_KINDS, KeyNet, ModelSpec, model_scores, scores_and_keys


class _Scores(nn.Module):
    """What a router evaluates: cluster scores (SupportNet forward; KeyNet forward + <F_j, x>)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return model_scores(self.model, x)


def fvcore_flops(module: nn.Module, d: int, batch: int = 8) -> float:
    """Forward FLOPs per query of any module taking [B, d] inputs: fvcore MACs × 2 / B."""
    from fvcore.nn import FlopCountAnalysis

    was_training = module.training
    module.eval()
    x = torch.randn(batch, d, dtype=next(module.parameters()).dtype,
                    device=next(module.parameters()).device)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(module, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        macs = analysis.total()
    module.train(was_training)
    return 2.0 * macs / batch


def forward_flops(model: nn.Module, d: int) -> float:
    """Forward FLOPs per query of a SupportNet or KeyNet (the trunk's output layer included)."""
    return fvcore_flops(model, d)


def router_flops(model: nn.Module, d: int) -> float:
    """FLOPs per query to score the c clusters (KeyNet adds the c inner products <F_j(x), x>)."""
    return fvcore_flops(_Scores(model), d)


def key_flops(model: nn.Module, d: int, batch: int = 8) -> float:
    """FLOPs per query to predict the keys: SupportNet forward + input gradient, KeyNet forward."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(batch, d, dtype=next(model.parameters()).dtype,
                    device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        if isinstance(model, KeyNet):
            with torch.no_grad():
                model(x)
        else:
            scores_and_keys(model, x)
    return counter.get_total_flops() / batch


def analytic_forward_macs(spec: ModelSpec) -> int:
    """MACs of one forward pass: input projections, hidden layers, output layer."""
    n_x = spec.n_x
    return (1 + n_x) * spec.d * spec.width + (spec.depth - 1) * spec.width ** 2 + spec.width * spec.d_out


def analytic_key_flops(spec: ModelSpec) -> float:
    """Key-prediction FLOPs: KeyNet forward; SupportNet forward + c input-gradient backwards.

    Each backward to x multiplies by every weight matrix once (the output layer as a [c, h]
    matmul per Jacobian row, as autograd computes it), so SupportNet costs (1 + c) forwards.
    """
    forward = 2.0 * analytic_forward_macs(spec)
    return (1 + spec.n_clusters) * forward if MODEL_KINDS[spec.model].key_is_gradient else forward


def centroid_flops(n_clusters: int, d: int) -> float:
    return 2.0 * n_clusters * d


def scan_flops(selected_sizes: np.ndarray, d: int) -> np.ndarray:
    """Exact scan of the selected clusters, per query: 2 · Σ_j |Y_j| · d."""
    return 2.0 * np.asarray(selected_sizes, dtype=np.float64) * d


def ivf_flops(nlist: int, ndis_per_query: float, d: int) -> float:
    """IVF search per query: coarse quantizer (nlist·d) plus the ndis scanned codes (·d)."""
    return 2.0 * (nlist + ndis_per_query) * d
