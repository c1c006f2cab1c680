"""Shared fixtures: small random unit-norm data, a tiny end-to-end dataset folder, and the
benchmark scripts as modules."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # the workers share the machine's cores: one thread each, instead of each taking them all
    torch.set_num_threads(1)


def benchmark_script(name: str):
    """benchmarks/{name}.py imported as a module (the folder is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """results/{dataset} with embeddings, splits, clusters (c=4) and targets for c=1 and c=4."""
    from amips_bench.datasets.clusters import write_clusters
    from amips_bench.datasets.embeddings import write_synthetic
    from amips_bench.datasets.splits import write_splits
    from amips_bench.datasets.synthetic import SyntheticParams
    from amips_bench.datasets.targets import write_targets

    root = tmp_path_factory.mktemp("tiny")
    write_synthetic(root / "embeddings", SyntheticParams(n_keys=3000, n_queries=1230, d=32, seed=3))
    write_splits(root / "embeddings" / "queries.npy", root / "splits", val_size=100,
                 test_size=200, augment_factor=3, sigma=0.02, seed=3)
    write_clusters(root / "embeddings" / "keys.npy", root / "clusters" / "c4", 4, restarts=2,
                   niter=10, seed=3)
    for c in (1, 4):
        write_targets(root / "embeddings", root / "splits", root / "targets" / f"c{c}",
                      n_clusters=c, clusters_dir=root / "clusters" / f"c{c}" if c > 1 else None,
                      device="cpu", progress=False)
    return root
