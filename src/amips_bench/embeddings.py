"""The embeddings contract: embeddings/{keys,queries}.npy (float32, unit-norm, deduplicated)
and embeddings/manifest.json (counts before/after dedup, encoder, checksums, seed, realism).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .io import InputError, check_unit_rows, save_json, save_npy, sha256_file
from .realism import REFERENCE_QUERY_KEY_RATIO, compare_with_reference, realism_stats
from .synthetic import SyntheticParams, generate

REALISM_MAX_KEYS = 100_000  # realism statistics are measured on at most this many keys


def dedup_rows(array: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of every distinct row, in original order."""
    view = np.ascontiguousarray(array).view(np.dtype((np.void, array.dtype.itemsize * array.shape[1])))
    _, first = np.unique(view.ravel(), return_index=True)
    return np.sort(first)


def measure_realism(keys: np.ndarray, queries: np.ndarray, seed: int) -> dict[str, Any]:
    """Realism statistics on a sample at the reference queries/keys ratio (0.41)."""
    rng = np.random.default_rng([seed, 7])
    n = min(len(keys), REALISM_MAX_KEYS, int(len(queries) / REFERENCE_QUERY_KEY_RATIO))
    m = min(len(queries), max(1, round(REFERENCE_QUERY_KEY_RATIO * n)))
    key_rows = np.sort(rng.choice(len(keys), size=n, replace=False)) if n < len(keys) else slice(None)
    query_rows = np.sort(rng.choice(len(queries), size=m, replace=False)) if m < len(queries) else slice(None)
    stats = realism_stats(np.asarray(keys[key_rows]), np.asarray(queries[query_rows]), seed=seed)
    return {"sample_keys": n, "sample_queries": m, "stats": stats,
            "vs_real_minilm": compare_with_reference(stats)}


def write_embeddings(out_dir: str | Path, keys: np.ndarray, queries: np.ndarray, *,
                     encoder: str, seed: int, source: dict[str, Any],
                     counts_before: dict[str, int] | None = None,
                     realism: bool = True) -> dict[str, Any]:
    """Deduplicate, validate and write the embeddings contract; returns the manifest."""
    out = Path(out_dir)
    check_unit_rows(keys, "keys")
    check_unit_rows(queries, "queries")
    if keys.shape[1] != queries.shape[1]:
        raise InputError(f"embeddings: query dimension {queries.shape[1]} does not match key "
                         f"dimension {keys.shape[1]}")
    before = counts_before or {"keys": len(keys), "queries": len(queries)}
    keys = keys[dedup_rows(keys)]
    queries = queries[dedup_rows(queries)]
    manifest: dict[str, Any] = {
        "encoder": encoder, "seed": seed, "d": int(keys.shape[1]), "source": source,
        "counts_before_dedup": before,
        "counts_after_dedup": {"keys": len(keys), "queries": len(queries)},
    }
    if realism:
        manifest["realism"] = measure_realism(keys, queries, seed)
    save_npy(out / "keys.npy", keys.astype(np.float32))
    save_npy(out / "queries.npy", queries.astype(np.float32))
    manifest["sha256"] = {name: sha256_file(out / name) for name in ("keys.npy", "queries.npy")}
    save_json(out / "manifest.json", manifest)
    return manifest


def write_synthetic(out_dir: str | Path, params: SyntheticParams) -> dict[str, Any]:
    keys, queries, provenance = generate(params)
    return write_embeddings(out_dir, keys, queries, encoder="synthetic (no text encoder)",
                            seed=params.seed, source=provenance)
