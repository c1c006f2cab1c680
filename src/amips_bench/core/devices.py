"""Where a stage computes: the torch device it was asked for, and its CPU thread count."""

from __future__ import annotations

import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`cuda` when available unless told otherwise; the choice is recorded by every stage."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def apply_threads(threads: int) -> None:
    """One thread count for torch and FAISS (FAISS's OpenMP pool is separate from torch's)."""
    import faiss

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
