"""Out-of-distribution test of appendix A.3 (Figure 7): the same IVF comparison under noise.

Test queries get Gaussian noise of growing standard deviation (larger than the σ used to
augment training), are re-normalised, and their exact top keys are recomputed, so "correct"
always means the true MIPS answer of the query actually sent. Natural and mapped queries then
sweep nprobe as in `ivf`; MRR is the headline metric of the paper's figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import InputError
from ..core.layout import DatasetFiles
from ..core.provenance import device_name
from ..core.storage import load_embeddings
from ..datasets.targets import exact_top1
from .faiss_backend import resolve_faiss_device
from .ivf import KeyMapper, curve_questions, load_split, natural_queries, read_index, sweep


def perturb(queries: np.ndarray, std: float, seed: int) -> np.ndarray:
    """x + ε, ε ~ N(0, std² I), re-normalised; std = 0 returns the clean queries."""
    if std < 0:
        raise InputError(f"ood.stds: noise standard deviations must be >= 0, got {std}")
    if std == 0:
        return queries.copy()
    rng = np.random.default_rng([seed, int(round(std * 1e6))])
    noisy = queries + rng.standard_normal(queries.shape, dtype=np.float32) * np.float32(std)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def ood_rows(dataset_dir: str | Path, index_dir: str | Path, model_path: str | Path, *,
             stds: list[float], nprobes: list[int], ks: list[int], seed: int,
             device: torch.device, faiss_device: str = "cpu",
             questions: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """IVF rows of natural and mapped test queries at each noise level (faiss_device: a
    setting); `questions` receives each curve's per-question arrays (ivf.curve_questions)."""
    faiss_device = resolve_faiss_device(faiss_device)
    queries, _, n_keys, d = load_split(dataset_dir)
    keys = load_embeddings(DatasetFiles(dataset_dir).keys)
    index = read_index(Path(index_dir) / "ivf.faiss")
    mapper = KeyMapper.load(model_path, n_keys, device)
    rows, curves = [], []
    for std in stds:
        noisy = perturb(queries, std, seed)
        _, top1 = exact_top1(noisy, keys, device=device)
        target = top1[:, 0]
        for qs in (natural_queries(noisy), mapper(noisy)):
            for row in sweep(index, "ivf", qs, target, nprobes, ks, d, n_keys,
                             faiss_device, timed_queries=0,  # a quality study: not timed
                             questions=curves):
                row.update({"std": std, "dataset": Path(dataset_dir).name,
                            "device": device_name(device), "noise_seed": seed})
                rows.append(row)
    if questions is not None:
        for curve in curves:
            questions.update(curve_questions(*curve))
    return rows
