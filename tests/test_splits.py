"""Leak-free splits and train-only augmentation (docs/architecture.md §2)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import unit_rows

from amips_bench.core.config import train_rows
from amips_bench.core.errors import InputError
from amips_bench.datasets.splits import check_disjoint, make_splits, materialize


def test_leak_free_splits_are_disjoint_and_only_train_is_augmented():
    plans = make_splits(1000, val_size=100, test_size=150, augment_factor=4, seed=1)
    sources = {k: set(v.source.tolist()) for k, v in plans.items()}
    assert not (sources["train"] & sources["val"])
    assert not (sources["train"] & sources["test"])
    assert not (sources["val"] & sources["test"])
    assert len(sources["train"]) + len(sources["val"]) + len(sources["test"]) == 1000
    assert len(plans["train"].source) == 750 * 4
    assert plans["val"].copy.max() == 0 and plans["test"].copy.max() == 0
    check_disjoint(plans, "leak_free")


def test_no_augmented_train_query_descends_from_a_val_or_test_query(rng):
    queries = unit_rows(rng, 600, 64)
    plans = make_splits(600, val_size=50, test_size=50, augment_factor=5, seed=2)
    train = materialize(queries, plans["train"], sigma=0.02, seed=2, split="train")
    # independent check on the vectors: the clean query nearest to every training row is a
    # training source, never a val/test query
    nearest = np.argmax(train @ queries.T, axis=1)
    held_out = set(plans["val"].source.tolist()) | set(plans["test"].source.tolist())
    assert not held_out & set(nearest.tolist())
    np.testing.assert_array_equal(nearest, plans["train"].source)
    # augmented rows are unit-norm, noisy (copy > 0) rows differ from their source
    np.testing.assert_allclose(np.linalg.norm(train, axis=1), 1.0, atol=1e-5)
    noisy = plans["train"].copy > 0
    moved = np.linalg.norm(train[noisy] - queries[plans["train"].source[noisy]], axis=1)
    assert moved.min() > 0.1  # σ = 0.02 in 64 dims moves a unit vector by about 0.16
    clean = ~noisy
    np.testing.assert_array_equal(train[clean], queries[plans["train"].source[clean]])


def test_official_mode_is_the_leaky_post_augmentation_split():
    plans = make_splits(500, val_size=100, test_size=100, augment_factor=5, mode="official", seed=0)
    train_sources = set(plans["train"].source.tolist())
    shared = train_sources & set(plans["test"].source.tolist())
    assert len(shared) > 50  # noisy copies of test questions are in train: the leak
    check_disjoint(plans, "official")  # but no (source, copy) row is in two splits


def test_official_mode_holds_out_the_leak_free_test_questions_whole_and_matches_train_rows():
    # the leakage study's third arm scores the official-split model on questions it never saw
    n, val, test, factor = 400, 30, 50, 4
    official = make_splits(n, val_size=val, test_size=test, augment_factor=factor, mode="official", seed=7)
    leak_free = make_splits(n, val_size=val, test_size=test, augment_factor=factor, seed=7)
    clean = set(leak_free["test"].source.tolist())
    assert len(clean) == test
    for name, plan in official.items():
        assert not clean & set(plan.source.tolist()), name  # no copy anywhere in the official split
    # the rest of the pool is used: every other question has copies in some split
    used = set().union(*(set(p.source.tolist()) for p in official.values()))
    assert used == set(range(n)) - clean
    # as many training rows as the leak-free split, drawn from the leaky pool
    assert len(official["train"].source) == len(leak_free["train"].source) == (n - val - test) * factor
    assert set(official["train"].source.tolist()) & set(official["test"].source.tolist())  # still leaky


@pytest.mark.parametrize("mode", ["leak_free", "official"])
@pytest.mark.parametrize("n, val, test, factor", [(1000, 100, 150, 4), (37, 5, 3, 1), (90, 40, 49, 7)])
def test_train_rows_counts_the_rows_make_splits_makes(mode, n, val, test, factor):
    # the config check sizes batches with it before any data exists
    plans = make_splits(n, val_size=val, test_size=test, augment_factor=factor, mode=mode, seed=3)
    assert train_rows(n, val_size=val, test_size=test, augment_factor=factor, mode=mode) == \
        len(plans["train"].source)


def test_materialize_is_deterministic(rng):
    queries = unit_rows(rng, 200, 16)
    plans = make_splits(200, val_size=20, test_size=20, augment_factor=3, seed=5)
    a = materialize(queries, plans["train"], sigma=0.02, seed=5, split="train")
    b = materialize(queries, plans["train"], sigma=0.02, seed=5, split="train")
    assert a.tobytes() == b.tobytes()


def test_bad_split_arguments():
    with pytest.raises(InputError, match="splits.mode: unknown split mode 'random'"):
        make_splits(100, val_size=10, test_size=10, augment_factor=2, mode="random")
    with pytest.raises(InputError, match="val_size \\+ test_size = 100 leaves no training query"):
        make_splits(100, val_size=60, test_size=40, augment_factor=2)


def test_written_leak_free_plan_is_byte_identical_to_make_splits(tmp_path):
    """The training plan is streamed to disk in chunks (flat memory at any augmentation); the
    files equal np.save of the in-memory reference, across several chunks."""
    import io as _io

    from amips_bench.datasets.splits import make_splits, write_splits

    rng = np.random.default_rng(3)
    q = rng.standard_normal((150_000, 4)).astype(np.float32)
    np.save(tmp_path / "q.npy", q / np.linalg.norm(q, axis=1, keepdims=True))
    write_splits(tmp_path / "q.npy", tmp_path / "s", val_size=500, test_size=700,
                 augment_factor=3, sigma=0.02, seed=9)
    plans = make_splits(150_000, val_size=500, test_size=700, augment_factor=3, seed=9)
    for name, plan in plans.items():
        for suffix, array in (("", plan.source), ("_copy", plan.copy)):
            buffer = _io.BytesIO()
            np.save(buffer, array)
            assert (tmp_path / f"s/{name}{suffix}.npy").read_bytes() == buffer.getvalue(), name


def test_a_written_plan_is_read_memory_mapped_and_materialises_the_same_rows(tmp_path, rng):
    """The targets stage reads a training plan (16 bytes a row: 13 GB at 800M rows) from its
    memory map, not whole into memory, and gets the rows of the in-memory plan."""
    from amips_bench.datasets.splits import load_plan, write_splits

    queries = unit_rows(rng, 300, 8)
    np.save(tmp_path / "q.npy", queries)
    write_splits(tmp_path / "q.npy", tmp_path / "s", val_size=20, test_size=20,
                 augment_factor=4, sigma=0.02, seed=2)
    read = load_plan(tmp_path / "s", "train", len(queries))
    assert isinstance(read.source, np.memmap) and isinstance(read.copy, np.memmap)
    plan = make_splits(300, val_size=20, test_size=20, augment_factor=4, seed=2)["train"]
    assert (materialize(queries, read, sigma=0.02, seed=2, split="train").tobytes()
            == materialize(queries, plan, sigma=0.02, seed=2, split="train").tobytes())


def test_a_noisy_copy_is_the_same_row_in_every_split_and_mode(rng):
    """The noise of (question, copy) is a pure function of them and the seed: an official-mode row
    equals the leak-free row of the same question and copy, in whatever split either holds it."""
    queries = unit_rows(rng, 700, 16)
    kw = dict(val_size=50, test_size=60, augment_factor=4)
    leak_free = make_splits(700, seed=3, **kw)
    official = make_splits(700, mode="official", seed=3, **kw)
    rows = {}
    for mode, plans in (("leak_free", leak_free), ("official", official)):
        for split, plan in plans.items():
            vectors = materialize(queries, plan, sigma=0.05, seed=3, split=split)
            for q, c, v in zip(plan.source.tolist(), plan.copy.tolist(), vectors):
                rows.setdefault((q, c), []).append((mode, split, v))
    shared = [seen for seen in rows.values() if len({m for m, _, _ in seen}) == 2]
    assert len(shared) > 2000
    for seen in shared:
        for _, _, v in seen[1:]:
            np.testing.assert_array_equal(v, seen[0][2])
    # and the copies of a question differ from each other and from the clean question
    q = int(leak_free["train"].source[0])
    copies = [rows[(q, c)][0][2] for c in range(4)]
    assert all(not np.array_equal(a, b) for i, a in enumerate(copies) for b in copies[i + 1:])


def test_copy_noise_is_standard_normal_and_independent_of_the_rows_asked_with_it(rng):
    from amips_bench.datasets.splits import QUESTION_BLOCK, copy_noise

    sources = np.repeat(np.arange(3 * QUESTION_BLOCK + 5), 3)
    copies = np.tile(np.arange(1, 4), 3 * QUESTION_BLOCK + 5)
    whole = copy_noise(9, 32, sources, copies)
    assert abs(whole.mean()) < 0.01 and abs(whole.std() - 1) < 0.01
    pick = rng.permutation(len(sources))[:500]
    np.testing.assert_array_equal(copy_noise(9, 32, sources[pick], copies[pick]), whole[pick])
    assert not np.array_equal(copy_noise(10, 32, sources[:5], copies[:5]), whole[:5])
