"""Which FAISS build runs a search (CPU or GPU), and the IVF cost counted from the index itself.

FAISS comes as two builds of one version: `pip install -e ".[cpu]"` installs faiss-cpu,
`pip install -e ".[gpu]"` faiss-gpu (CUDA 12), both 1.15.1. With `faiss_device: auto`, flat and
IVF searches run on the GPU when the installed build has GPU support and sees a GPU; HNSW always
runs on the CPU, because FAISS has no GPU implementation of HNSW.

A GPU IVF search keeps no `indexIVF_stats`, so the cost of a query is computed from the index:
the coarse quantizer compares it with all nlist centroids, and the scan visits every code stored
in the nprobe lists it selects. On the CPU this count equals FAISS's own `ndis` exactly
(tests/test_ivf.py), so CPU and GPU curves share one FLOP axis.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError

FAISS_DEVICES = ("auto", "cpu", "gpu")
GPU_MAX_NPROBE = 2048  # FAISS's GPU k-selection limit; larger nprobe values run on the CPU


def import_faiss():
    """The faiss module, or a one-line error that says how to install it."""
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise InputError("faiss is not installed: pip install -e '.[cpu]' (or '.[gpu]' on a "
                         "CUDA 12 machine)") from err
    return faiss


def faiss_gpu_count() -> int:
    """GPUs the installed FAISS can use: 0 for the CPU build."""
    faiss = import_faiss()
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def resolve_faiss_device(setting: str) -> str:
    """'gpu' or 'cpu' for a faiss_device setting (auto: the GPU when FAISS can use one)."""
    if setting not in FAISS_DEVICES:
        raise InputError(f"faiss_device: unknown value {setting!r}; expected one of {FAISS_DEVICES}")
    gpus = faiss_gpu_count() if setting != "cpu" else 0
    if setting == "gpu" and gpus == 0:
        faiss = import_faiss()
        raise InputError(f"faiss_device: gpu, but FAISS {faiss.__version__} has no GPU support or "
                         f"sees no GPU; install faiss-gpu (pip install -e '.[gpu]') or use auto")
    return "gpu" if gpus > 0 else "cpu"


_GPU_RESOURCES = None


def search_copy(index, faiss_device: str):
    """The index to search: a GPU copy of a flat or IVF index on 'gpu', the index itself otherwise.

    HNSW indexes are returned unchanged (CPU only in FAISS).
    """
    faiss = import_faiss()
    if faiss_device != "gpu" or isinstance(index, faiss.IndexHNSW):
        return index
    global _GPU_RESOURCES
    if _GPU_RESOURCES is None:
        _GPU_RESOURCES = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(_GPU_RESOURCES, 0, index)


def set_nprobe(index, nprobe: int) -> None:
    """nprobe on a CPU IndexIVF or on its GPU copy."""
    faiss = import_faiss()
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = nprobe
    else:
        faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", nprobe)


def list_sizes(ivf_index) -> np.ndarray:
    """int64 [nlist]: the number of codes stored in each inverted list."""
    faiss = import_faiss()
    ivf = faiss.extract_index_ivf(ivf_index)
    return np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)], dtype=np.int64)


def ivf_scanned_codes(ivf_index, queries: np.ndarray, nprobe: int,
                      sizes: np.ndarray | None = None) -> np.ndarray:
    """int64 [N]: codes each query scans at `nprobe`, from the lists its coarse quantizer picks.

    `ivf_index` is the CPU index (its quantizer assigns exactly as the search does).
    """
    faiss = import_faiss()
    ivf = faiss.extract_index_ivf(ivf_index)
    if nprobe > ivf.nlist:
        raise InputError(f"ivf.nprobe: {nprobe} is larger than nlist = {ivf.nlist}")
    sizes = list_sizes(ivf_index) if sizes is None else sizes
    _, lists = ivf.quantizer.search(np.ascontiguousarray(queries, dtype=np.float32), nprobe)
    return np.where(lists >= 0, sizes[np.clip(lists, 0, None)], 0).sum(axis=1)
