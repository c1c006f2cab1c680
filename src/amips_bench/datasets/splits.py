"""Train/val/test splits of the queries and train-only Gaussian augmentation (docs/architecture.md §2).

A split is stored as indices into `embeddings/queries.npy` (the *source* query of every row)
plus, for augmented rows, a copy number: copy 0 is the clean query, copy k >= 1 a noisy copy
x + ε, ε ~ N(0, σ²I), re-normalised. The noise is a pure function of (seed, question, copy)
(`copy_noise`), so the materialised queries are byte-identical on every run, and a row is the
same vector in whichever split and split mode it appears: the leak-free and official splits of
one dataset train on the same noisy copies.

`leak_free` (default) splits the unique source queries first and augments only train, so no
noisy copy of a val/test question is ever trained on. `official` mimics the official code: it
augments every query and then splits the augmented pool, which puts near-duplicates of
evaluation queries into the training set. It exists for comparison and is labelled leaky.

So that the leakage study can tell the leak from everything else, `official` differs from the
official code in two stated ways: the questions the leak-free split with the same seed tests on
are held out of its pool whole (no copy is trained on, so an official-split model can be scored
on them clean: the study's third arm), and its training rows are subsampled to the leak-free
split's count where the pool allows, so both modes train on as many rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.config import train_rows
from ..core.errors import InputError
from ..core.runs import SPLIT_MODES
from ..core.storage import (
    load_embeddings,
    load_index_array,
    npy_row_writer,
    save_json,
    save_npy,
    sha256_file,
)

SPLIT_NAMES = ("train", "val", "test")
NOISE_BLOCK = 65_536
#: questions per noise draw: the noise of copy c of question q is row q mod QUESTION_BLOCK of
#: the block a generator seeded with (seed, NOISE_STREAM, c, q // QUESTION_BLOCK) draws
QUESTION_BLOCK = 256
NOISE_STREAM = 7


@dataclass(frozen=True)
class SplitPlan:
    """Rows of one split: source query index and copy number (0 = clean)."""

    source: np.ndarray  # int64 [N]
    copy: np.ndarray  # int64 [N]


def make_splits(n_queries: int, *, val_size: int, test_size: int, augment_factor: int,
                mode: str = "leak_free", seed: int = 0) -> dict[str, SplitPlan]:
    """Assign queries to train/val/test; see the module docstring for the two modes."""
    if mode not in SPLIT_MODES:
        raise InputError(f"splits.mode: unknown split mode {mode!r}; expected one of {SPLIT_MODES}")
    _check_sizes(augment_factor, val_size, test_size)
    if mode == "leak_free":
        val, test, train = _leak_free_partition(n_queries, val_size, test_size, seed)
        return {
            "train": SplitPlan(np.repeat(train, augment_factor),
                               np.tile(np.arange(augment_factor, dtype=np.int64), len(train))),
            "val": SplitPlan(val, np.zeros(val_size, dtype=np.int64)),
            "test": SplitPlan(test, np.zeros(test_size, dtype=np.int64)),
        }
    clean = held_out_clean(n_queries, val_size=val_size, test_size=test_size, seed=seed)
    kept = np.setdiff1d(np.arange(n_queries, dtype=np.int64), clean)
    pool = len(kept) * augment_factor
    if val_size + test_size >= pool:
        raise InputError(f"splits: val_size + test_size = {val_size + test_size} leaves no "
                         f"training query out of {pool} augmented queries")
    perm = np.random.default_rng([seed, 0]).permutation(pool).astype(np.int64)
    val, test, train = np.split(perm, [val_size, val_size + test_size])
    matched = train_rows(n_queries, val_size=val_size, test_size=test_size,
                         augment_factor=augment_factor, mode="leak_free")
    if len(train) > matched:  # as many training rows as the leak-free split
        train = np.random.default_rng([seed, 1]).choice(train, matched, replace=False)
    out = {}
    for name, rows in (("train", np.sort(train)), ("val", np.sort(val)), ("test", np.sort(test))):
        out[name] = SplitPlan(kept[rows // augment_factor], rows % augment_factor)
    return out


def held_out_clean(n_queries: int, *, val_size: int, test_size: int, seed: int) -> np.ndarray:
    """The questions an `official` split holds out whole: those the leak-free split with the same
    seed tests on (sorted), so an official-split model can be scored on them with no copy trained on."""
    return _leak_free_partition(n_queries, val_size, test_size, seed)[1]




def _check_sizes(augment_factor: int, val_size: int, test_size: int) -> None:
    if augment_factor < 1:
        raise InputError(f"splits.augment_factor: must be >= 1, got {augment_factor}")
    if val_size < 1 or test_size < 1:
        raise InputError(f"splits: val_size and test_size must be >= 1, got {val_size}, {test_size}")


def _leak_free_partition(n_queries: int, val_size: int, test_size: int, seed: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (val, test, train) unique query indices of the leak-free split."""
    if val_size + test_size >= n_queries:
        raise InputError(f"splits: val_size + test_size = {val_size + test_size} leaves no "
                         f"training query out of {n_queries} unique queries")
    perm = np.random.default_rng([seed, 0]).permutation(n_queries).astype(np.int64)
    val, test, train = np.split(perm, [val_size, val_size + test_size])
    return np.sort(val), np.sort(test), np.sort(train)


class CopyNoise:
    """ε/σ of (question, copy) rows: one draw of QUESTION_BLOCK questions per (copy, block of
    questions), kept while the rows asked for may still need it (a plan's sources are sorted,
    so blocks below the smallest question asked for are let go)."""

    def __init__(self, seed: int, d: int):
        self.seed, self.d = seed, d
        self.drawn: dict[tuple[int, int], np.ndarray] = {}

    def _block(self, copy: int, block: int) -> np.ndarray:
        key = (copy, block)
        if key not in self.drawn:
            gen = np.random.default_rng([self.seed, NOISE_STREAM, copy, block])
            self.drawn[key] = gen.standard_normal((QUESTION_BLOCK, self.d), dtype=np.float32)
        return self.drawn[key]

    def __call__(self, sources: np.ndarray, copies: np.ndarray) -> np.ndarray:
        """Standard normal noise [N, d] of each (source, copy) row."""
        sources, copies = np.asarray(sources, dtype=np.int64), np.asarray(copies, dtype=np.int64)
        out = np.empty((len(sources), self.d), dtype=np.float32)
        if not len(sources):
            return out
        lowest = int(sources.min()) // QUESTION_BLOCK
        self.drawn = {k: v for k, v in self.drawn.items() if k[1] >= lowest}
        blocks = sources // QUESTION_BLOCK
        pairs = np.unique(np.stack([copies, blocks], axis=1), axis=0)
        for copy, block in pairs:
            rows = (copies == copy) & (blocks == block)
            out[rows] = self._block(int(copy), int(block))[sources[rows] % QUESTION_BLOCK]
        return out


def copy_noise(seed: int, d: int, sources: np.ndarray, copies: np.ndarray) -> np.ndarray:
    """Standard normal noise [N, d] of each (question, copy) row: a pure function of (seed,
    question, copy), whatever split, mode or position the row has."""
    return CopyNoise(seed, d)(sources, copies)


def materialized_blocks(queries: np.ndarray, plan: SplitPlan, *, sigma: float, seed: int,
                        split: str, first_block: int = 0, n_blocks: int | None = None):
    """Yield (row offset, float32 rows) for NOISE_BLOCK-row blocks of a split, in order.

    Clean rows are copied, noisy rows are x + σ·ε re-normalised, ε the row's `copy_noise`: any
    range of blocks is a pure function of the plan and the seed, wherever and in whatever
    pieces it is computed, and a (question, copy) row is the same in every split.
    """
    if split not in SPLIT_NAMES:
        raise InputError(f"splits: unknown split name {split!r}; expected one of {SPLIT_NAMES}")
    d = queries.shape[1]
    total = -(-len(plan.source) // NOISE_BLOCK)
    last = total if n_blocks is None else min(total, first_block + n_blocks)
    noise = CopyNoise(seed, d)
    for block in range(first_block, last):
        start = block * NOISE_BLOCK
        src = np.asarray(plan.source[start:start + NOISE_BLOCK])
        copy = np.asarray(plan.copy[start:start + NOISE_BLOCK])
        noisy = copy > 0
        rows = np.asarray(queries[src], dtype=np.float32)
        if noisy.any():
            moved = rows[noisy] + noise(src[noisy], copy[noisy]) * np.float32(sigma)
            rows[noisy] = moved / np.linalg.norm(moved, axis=1, keepdims=True)
        yield start, rows


def materialize(queries: np.ndarray, plan: SplitPlan, *, sigma: float, seed: int,
                split: str) -> np.ndarray:
    """The query vectors of a split, in memory (see `materialized_blocks`)."""
    out = np.empty((len(plan.source), queries.shape[1]), dtype=np.float32)
    for start, rows in materialized_blocks(queries, plan, sigma=sigma, seed=seed, split=split):
        out[start:start + len(rows)] = rows
    return out


def check_disjoint(plans: dict[str, SplitPlan], mode: str) -> None:
    """Leak-free splits never share a source query; official splits never share a (source, copy) row."""
    def keys(plan: SplitPlan) -> set:
        if mode == "leak_free":
            return set(plan.source.tolist())
        return set(zip(plan.source.tolist(), plan.copy.tolist()))

    names = list(plans)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = keys(plans[a]) & keys(plans[b])
            if shared:
                raise InputError(f"splits: {a} and {b} share {len(shared)} queries")


def write_splits(queries_path: str | Path, out_dir: str | Path, *, val_size: int, test_size: int,
                 augment_factor: int, sigma: float, mode: str = "leak_free",
                 seed: int = 0) -> dict:
    """Write splits/{split}.npy (source query per row), {split}_copy.npy and manifest.json.

    In leak-free mode the training plan (unique training queries × augment_factor rows) is
    written in chunks, never held whole, so memory does not grow with the augmentation; the
    files are byte-identical to saving `make_splits`' arrays (test).
    """
    queries = load_embeddings(queries_path, mmap=True)
    if sigma < 0:
        raise InputError(f"splits.sigma: must be >= 0, got {sigma}")
    n = len(queries)
    if val_size + test_size >= n:
        raise InputError(f"splits: val_size + test_size = {val_size + test_size} must be smaller "
                         f"than the {n} queries of {queries_path}")
    out = Path(out_dir)
    if mode == "leak_free":
        rows = _write_leak_free(n, out, val_size=val_size, test_size=test_size,
                                augment_factor=augment_factor, seed=seed)
    else:
        plans = make_splits(n, val_size=val_size, test_size=test_size,
                            augment_factor=augment_factor, mode=mode, seed=seed)
        check_disjoint(plans, mode)
        for name, plan in plans.items():
            save_npy(out / f"{name}.npy", plan.source)
            save_npy(out / f"{name}_copy.npy", plan.copy)
        rows = {k: len(v.source) for k, v in plans.items()}
    manifest = {
        "mode": mode, "leaky": mode == "official",
        "note": ("official mode: queries were augmented before splitting, so val/test contain noisy "
                 "copies of training questions (leaky, for comparison with the official code); "
                 "the leak-free split's test questions of this seed are held out whole, and the "
                 "training rows are subsampled to the leak-free split's count where the pool allows"
                 if mode == "official" else
                 "leak-free: unique queries split first, only train is augmented"),
        "augment_factor": augment_factor, "sigma": sigma, "seed": seed,
        "n_source_queries": n, "rows": rows,
        **({"held_out_clean": int(test_size),
            "train_rows_leak_free": train_rows(n, val_size=val_size, test_size=test_size,
                                               augment_factor=augment_factor, mode="leak_free")}
           if mode == "official" else {}),
        "queries_sha256": sha256_file(queries_path),
    }
    save_json(out / "manifest.json", manifest)
    return manifest


def _write_leak_free(n: int, out: Path, *, val_size: int, test_size: int, augment_factor: int,
                     seed: int, chunk: int = 65_536) -> dict[str, int]:
    """The leak-free plan of `make_splits`, with the training rows written chunk by chunk."""
    _check_sizes(augment_factor, val_size, test_size)
    val, test, train = _leak_free_partition(n, val_size, test_size, seed)
    for a, b, names in ((train, val, "train and val"), (train, test, "train and test"),
                        (val, test, "val and test")):
        shared = np.intersect1d(a, b)
        if len(shared):
            raise InputError(f"splits: {names} share {len(shared)} queries")
    for name, rows in (("val", val), ("test", test)):
        save_npy(out / f"{name}.npy", rows)
        save_npy(out / f"{name}_copy.npy", np.zeros(len(rows), dtype=np.int64))
    n_rows = len(train) * augment_factor
    copies = np.arange(augment_factor, dtype=np.int64)
    with npy_row_writer(out / "train.npy", n_rows, None, "int64") as add_source, \
            npy_row_writer(out / "train_copy.npy", n_rows, None, "int64") as add_copy:
        for start in range(0, len(train), chunk):
            sources = train[start:start + chunk]
            add_source(np.repeat(sources, augment_factor))
            add_copy(np.tile(copies, len(sources)))
    return {"train": n_rows, "val": len(val), "test": len(test)}


def load_plan(splits_dir: str | Path, split: str, n_queries: int) -> SplitPlan:
    """A written split, memory-mapped: a paper-size training plan (16 bytes a row, 13 GB at
    800M rows) is read block by block as the targets stage materialises it, not held whole."""
    splits_dir = Path(splits_dir)
    source = load_index_array(splits_dir / f"{split}.npy", upper=n_queries, mmap=True)
    copy = load_index_array(splits_dir / f"{split}_copy.npy", mmap=True)
    if copy.shape != source.shape:
        raise InputError(f"{splits_dir / f'{split}_copy.npy'}: {len(copy)} rows but "
                         f"{split}.npy has {len(source)}")
    return SplitPlan(source, copy)
