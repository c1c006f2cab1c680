"""Where a stage computes: the torch device it was asked for, and its CPU thread count."""

from __future__ import annotations

from pathlib import Path

import torch

#: CPU flags of bf16 matrix instructions (AMX tiles, AVX-512 BF16 dot products)
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_bf16_units(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU lists bf16 matrix instructions among its flags."""
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


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
