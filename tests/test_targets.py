"""Exact per-cluster top-1 targets against a NumPy brute force (docs/architecture.md §2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import unit_rows

from amips_bench.datasets.targets import exact_top1


def brute_force_top1(queries, keys, assignments, n_clusters):
    """float64 scores, per-cluster argmax with the lowest index on ties (np.argmax is first-max)."""
    scores = queries.astype(np.float64) @ keys.astype(np.float64).T
    best = np.empty((len(queries), n_clusters), dtype=np.int64)
    gap = np.empty((len(queries), n_clusters))
    for j in range(n_clusters):
        members = np.flatnonzero(assignments == j)
        block = scores[:, members]
        best[:, j] = members[np.argmax(block, axis=1)]
        top2 = np.sort(block, axis=1)[:, -2:] if len(members) > 1 else np.c_[block, block - 1]
        gap[:, j] = top2[:, -1] - top2[:, -2]
    return best, gap


@pytest.mark.parametrize("n_clusters", [1, 10])
def test_targets_equal_brute_force_on_random_data(rng, n_clusters):
    keys = unit_rows(rng, 5000, 48)
    queries = unit_rows(rng, 700, 48)
    assignments = rng.integers(0, n_clusters, size=len(keys)) if n_clusters > 1 else np.zeros(5000, int)
    # small blocks so that tiles, cluster boundaries and the last partial tile are all exercised
    _, ours = exact_top1(queries, keys, assignments if n_clusters > 1 else None, n_clusters,
                         query_block=256, key_block=300, device="cpu")
    reference, gap = brute_force_top1(queries, keys, assignments, n_clusters)
    clear = gap > 1e-5  # float32 rounding may only decide near-ties
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(ours[clear], reference[clear])


@pytest.mark.parametrize("n_clusters", [1, 10])
def test_planted_ties_go_to_the_lowest_index(rng, n_clusters):
    # Integer-valued vectors: every dot product is exact in float32, so ties are exact too.
    d = 16
    base = rng.integers(-2, 3, size=(400, d)).astype(np.float32)
    base_id = rng.permutation(np.tile(np.arange(len(base)), 3))  # each key appears three times
    keys = base[base_id]
    queries = rng.integers(-2, 3, size=(300, d)).astype(np.float32)
    assignments = base_id % n_clusters  # the copies of a key share its cluster
    _, ours = exact_top1(queries, keys, assignments if n_clusters > 1 else None, n_clusters,
                         query_block=64, key_block=97, device="cpu")
    reference, _ = brute_force_top1(queries, keys, assignments, n_clusters)
    np.testing.assert_array_equal(ours, reference)
    # the planted duplicates really tie: the winner has an identical copy at a higher index
    scores = queries @ keys.T
    for j in range(n_clusters):
        members = np.flatnonzero(assignments == j)
        winners = ours[:, j]
        tied = (scores[:, members] == scores[np.arange(len(queries)), winners][:, None]).sum(1)
        assert (tied >= 2).mean() > 0.5
        assert np.all(members[np.argmax(scores[:, members], axis=1)] == winners)


def test_global_indices_map_back_to_their_cluster(rng):
    keys = unit_rows(rng, 3000, 24)
    queries = unit_rows(rng, 200, 24)
    assignments = rng.integers(0, 7, size=len(keys))
    scores, top1 = exact_top1(queries, keys, assignments, 7, device="cpu")
    for j in range(7):
        assert np.all(assignments[top1[:, j]] == j)
    np.testing.assert_allclose(scores, np.einsum("nd,ncd->nc", queries, keys[top1]), atol=1e-5)


def test_streaming_block_size_does_not_change_the_answer(rng):
    keys = unit_rows(rng, 4000, 32)
    queries = unit_rows(rng, 500, 32)
    _, small = exact_top1(queries, keys, query_block=7, key_block=13, device="cpu")
    _, large = exact_top1(queries, keys, query_block=4096, key_block=8192, device="cpu")
    np.testing.assert_array_equal(small, large)


@pytest.mark.parametrize("clusters", [1, 3])
def test_streamed_targets_are_byte_identical_to_building_them_whole(tmp_path, clusters):
    """Chunked materialise + search + append (the paper-scale path) writes exactly the bytes of
    np.save on the whole in-memory arrays, across chunk boundaries and a partial last block."""
    import io as _io

    from amips_bench.datasets.splits import NOISE_BLOCK, SplitPlan, materialize
    from amips_bench.datasets.targets import ExactTop1, exact_top1, stream_split_targets

    rng = np.random.default_rng(7)
    queries, keys = unit_rows(rng, 5000, 16), unit_rows(rng, 3000, 16)
    n_rows = 3 * NOISE_BLOCK + 123
    plan = SplitPlan(rng.integers(0, 5000, n_rows), rng.integers(0, 4, n_rows))
    assignments = rng.integers(0, clusters, 3000) if clusters > 1 else None
    search = ExactTop1(keys, assignments, clusters, device="cpu")
    stream_split_targets(queries, plan, search, tmp_path, "train", sigma=0.02, seed=5,
                         chunk_blocks=1)
    whole = materialize(queries, plan, sigma=0.02, seed=5, split="train")
    _, top1 = exact_top1(whole, keys, assignments, clusters, device="cpu")
    for name, array in (("train_queries.npy", whole), ("train_top1.npy", top1)):
        buffer = _io.BytesIO()
        np.save(buffer, array)
        assert (tmp_path / name).read_bytes() == buffer.getvalue(), name


def test_clustered_targets_link_the_c1_queries_after_checking_them_row_for_row(tmp_path):
    """With queries_from, a c > 1 targets job writes the same top-1 bytes as on its own, its
    queries file is a relative link to the c = 1 file, and a c = 1 file of other splits (another
    noise seed) is refused in one line with no top-1 file left behind."""
    import os

    from amips_bench.core.errors import InputError
    from amips_bench.datasets.splits import NOISE_BLOCK, SplitPlan
    from amips_bench.datasets.targets import ExactTop1, stream_split_targets

    rng = np.random.default_rng(11)
    queries, keys = unit_rows(rng, 4000, 16), unit_rows(rng, 2000, 16)
    n_rows = 2 * NOISE_BLOCK + 77
    plan = SplitPlan(rng.integers(0, 4000, n_rows), rng.integers(0, 3, n_rows))
    assignments = rng.integers(0, 5, 2000)
    c1, alone, linked = (tmp_path / name for name in ("c1", "alone", "linked"))
    for folder, search in ((c1, ExactTop1(keys, None, 1, device="cpu")),
                           (alone, ExactTop1(keys, assignments, 5, device="cpu"))):
        folder.mkdir()
        stream_split_targets(queries, plan, search, folder, "train", sigma=0.02, seed=5,
                             chunk_blocks=1)
    linked.mkdir()
    clustered = ExactTop1(keys, assignments, 5, device="cpu")
    stream_split_targets(queries, plan, clustered, linked, "train", sigma=0.02, seed=5,
                         chunk_blocks=1, same_queries=c1 / "train_queries.npy")
    assert (linked / "train_top1.npy").read_bytes() == (alone / "train_top1.npy").read_bytes()
    link = linked / "train_queries.npy"
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "c1", "train_queries.npy")
    assert link.read_bytes() == (alone / "train_queries.npy").read_bytes()

    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(InputError, match=r"c1/train_queries.npy: rows 0 to 65536 differ"):
        stream_split_targets(queries, plan, clustered, other, "train", sigma=0.02, seed=6,
                             chunk_blocks=1, same_queries=c1 / "train_queries.npy")
    assert list(other.iterdir()) == []


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_certified_reduced_precision_top1_equals_the_fp32_path_index_for_index(precision):
    """Reduced-precision candidates, exact rescoring and a certificate: the same top-1 index as
    the exact float32 path for every query, including planted near-ties (a key duplicated with
    a perturbation far below the precision's error) which must not be certified and fall back;
    most other rows are certified."""
    from amips_bench.datasets.targets import certified_top1, exact_top1

    rng = np.random.default_rng(5)
    keys = rng.standard_normal((5000, 64)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    queries = rng.standard_normal((400, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, before = exact_top1(queries, keys, device="cpu")
    planted = before[:40, 0]  # a near twin of each of the first 40 rows' top key
    twins = keys[planted] + 1e-6 * rng.standard_normal((40, 64)).astype(np.float32)
    keys = np.concatenate([keys, twins / np.linalg.norm(twins, axis=1, keepdims=True)])
    _, expected = exact_top1(queries, keys, device="cpu")
    top1, certified = certified_top1(queries, keys, precision=precision, key_block=700)
    assert np.array_equal(top1, expected[:, 0])
    assert not certified[:40].any()  # every planted near-tie falls back to the exact path
    assert certified[40:].mean() > 0.5


def test_an_official_split_twin_reuses_the_leak_free_targets_and_equals_a_full_search(tiny_dataset, tmp_path):
    """The rows an official-split dataset shares with its leak-free twin (same question, same copy:
    the same vector) take the twin's top-1; the files equal those of a search of every row,
    and the manifest says how many rows were copied. A twin of other noise is refused."""
    import json

    from amips_bench.core.errors import InputError
    from amips_bench.datasets.splits import write_splits
    from amips_bench.datasets.targets import write_targets

    official = tmp_path / "official"
    official.mkdir()
    (official / "embeddings").symlink_to(tiny_dataset / "embeddings")
    write_splits(tiny_dataset / "embeddings" / "queries.npy", official / "splits", val_size=100,
                 test_size=200, augment_factor=3, sigma=0.02, mode="official", seed=3)
    common = dict(n_clusters=1, device="cpu", progress=False)
    searched = write_targets(official / "embeddings", official / "splits", tmp_path / "searched", **common)
    reused = write_targets(official / "embeddings", official / "splits", tmp_path / "reused",
                           reuse_from=tiny_dataset / "targets" / "c1",
                           reuse_splits=tiny_dataset / "splits", **common)
    for split in ("train", "val", "test"):
        for kind in ("queries", "top1"):
            a = np.load(tmp_path / "searched" / f"{split}_{kind}.npy")
            b = np.load(tmp_path / "reused" / f"{split}_{kind}.npy")
            np.testing.assert_array_equal(a, b, err_msg=f"{split}_{kind}")
    copied = reused["reused_rows"]
    assert 0.8 * searched["rows"]["train"] < copied["train"] < searched["rows"]["train"], copied
    assert json.loads((tmp_path / "reused" / "manifest.json").read_text())["reused_rows"] == copied
    other = tmp_path / "other"
    other.mkdir()
    (other / "embeddings").symlink_to(tiny_dataset / "embeddings")
    write_splits(tiny_dataset / "embeddings" / "queries.npy", other / "splits", val_size=100,
                 test_size=200, augment_factor=3, sigma=0.02, mode="official", seed=4)
    with pytest.raises(InputError, match="its seed differs from this dataset's"):
        write_targets(other / "embeddings", other / "splits", tmp_path / "refused",
                      reuse_from=tiny_dataset / "targets" / "c1",
                      reuse_splits=tiny_dataset / "splits", **common)


def _rounds_down(a: float, d: int) -> np.ndarray:
    """d coordinates just below the point where bf16 rounds a·(1 + 2^-8) up: each rounds down
    to a, by almost the largest relative error of bf16's inputs (2^-8)."""
    return np.full(d, a * (1 + 2.0 ** -8 - 2.0 ** -20), dtype=np.float32)


def _adversarial_pair(d: int = 384, gap: float = 5e-4):
    """A query q and two keys: B, the real top key, whose bf16 score errs downwards by more
    than the bound without the output's rounding (every input rounds down by almost 2^-8 and
    the bf16 sum lands just above a representable value, so the output rounds down too); and
    A, exactly representable in bf16, `gap` below B in real score but above it in bf16."""
    a = 2.0 ** -5
    q = _rounds_down(a, d)
    b = q.copy()
    b[0] = np.float32(a + 0.99 * 2.0 ** -10 / a)  # the bf16 sum: 0.375 + 0.99·2^-10
    s_b = float(q.astype(np.float64) @ b.astype(np.float64))
    k = np.full(d, a, dtype=np.float32)  # A: bf16 coordinates, its last one set to reach the gap
    k[-1] = 0.0
    last = (s_b - gap - float(q[:-1].astype(np.float64) @ k[:-1])) / float(q[-1])
    k[-1] = torch.tensor(last).to(torch.bfloat16).float().item()
    return q, k, b


def test_the_bf16_certificate_covers_its_output_rounding_on_adversarial_inputs(monkeypatch):
    """Inputs that all round the same way, a sum whose bf16 output rounds the same way again,
    a near-tie a quarter of a bf16 ulp apart, duplicate keys and rows not of unit norm:
    every row certified is the fp32 path's answer. Today's bound (without the output's
    rounding, one fp32 error for the non-candidates) certifies the wrong key here."""
    from amips_bench.datasets import targets
    from amips_bench.datasets.targets import certified_top1, exact_top1, fp32_score_bound, reduced_score_bound

    q, key_a, key_b = _adversarial_pair()
    rng = np.random.default_rng(0)
    far = rng.standard_normal((300, 384)).astype(np.float32) * 0.01  # low scores, far below
    keys = np.concatenate([far, key_a[None], key_b[None], key_b[None], far[:5]])  # B twice
    queries = np.concatenate([q[None], rng.standard_normal((50, 384)).astype(np.float32)])
    queries[1:] /= np.linalg.norm(queries[1:], axis=1, keepdims=True) / 0.6  # norm 0.6
    d, norm = 384, float(max(np.linalg.norm(queries, axis=1).max(), np.linalg.norm(keys, axis=1).max()))
    real = float(q.astype(np.float64) @ key_b.astype(np.float64))
    reduced = float(torch.from_numpy(q).bfloat16() @ torch.from_numpy(key_b).bfloat16())
    without_output = reduced_score_bound("bf16", d, norm)
    assert real - reduced > without_output  # today's bound is exceeded
    assert real - reduced <= reduced_score_bound("bf16", d, norm, rounded_output=True)
    _, expected = exact_top1(queries, keys, device="cpu")
    assert expected[0, 0] == 301  # B (its first copy) is the fp32 path's answer
    top1, certified = certified_top1(queries, keys, precision="bf16", candidates=1)
    assert np.array_equal(top1, expected[:, 0]) and not certified[0]
    # today's certificate: no output rounding, one fp32 error for the non-candidates
    monkeypatch.setattr(targets, "reduced_score_bound",
                        lambda precision, d, norm, **kw: reduced_score_bound(precision, d, norm)
                        - fp32_score_bound(d, norm))
    wrong, said = certified_top1(queries, keys, precision="bf16", candidates=1)
    assert said[0] and wrong[0] == 300  # A, certified: not the fp32 answer


@pytest.mark.parametrize("n_clusters", [1, 4])
def test_the_certified_search_equals_the_exact_one_per_cluster(rng, n_clusters):
    """Per cluster segment, with planted near-twins of every cluster's top key: the certified
    bf16 search returns ExactTop1's indices, index for index, and counts what it certified."""
    from amips_bench.datasets.targets import CertifiedTop1, ExactTop1

    keys = unit_rows(rng, 3000, 48)
    queries = unit_rows(rng, 300, 48)
    assignments = rng.integers(0, n_clusters, len(keys)) if n_clusters > 1 else None
    _, first = exact_top1(queries, keys, assignments, n_clusters, device="cpu")
    twins = keys[first[:30, 0]] + 1e-7 * rng.standard_normal((30, 48)).astype(np.float32)
    keys = np.concatenate([keys, twins])
    if assignments is not None:
        assignments = np.concatenate([assignments, assignments[first[:30, 0]]])
    expected = ExactTop1(keys, assignments, n_clusters, device="cpu")(queries)[1]
    search = CertifiedTop1(keys, assignments, n_clusters, precision="bf16", query_block=128,
                           key_block=500, device="cpu")
    scores, index = search(queries)
    assert np.array_equal(index, expected)
    assert search.rows == 300 and 0.5 < search.certified_rows / 300 < 1.0
    np.testing.assert_allclose(scores, np.einsum("nd,ncd->nc", queries, keys[index]), atol=1e-6)


def test_targets_are_identical_at_every_precision_and_the_manifest_says_how(tiny_dataset, tmp_path):
    """write_targets with the certified bf16 search writes the fp32 search's files byte for
    byte; the manifest records the setting, the search used and the certified fraction."""
    from amips_bench.core.errors import InputError
    from amips_bench.datasets.targets import resolve_precision, write_targets

    made = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        made[precision] = write_targets(tiny_dataset / "embeddings", tiny_dataset / "splits", out,
                                        n_clusters=4, clusters_dir=tiny_dataset / "clusters" / "c4",
                                        device="cpu", progress=False, precision=precision)
    for split in ("train", "val", "test"):
        assert (tmp_path / "fp32" / f"{split}_top1.npy").read_bytes() == \
            (tmp_path / "bf16" / f"{split}_top1.npy").read_bytes()
    assert made["fp32"]["precision"] == {"setting": "fp32", "used": "fp32"}
    bf16 = made["bf16"]["precision"]
    assert bf16["used"] == "bf16" and bf16["rows_searched"] == sum(made["bf16"]["rows"].values())
    assert 0.5 < bf16["certified_fraction"] <= 1.0 and "certified" in made["bf16"]["search"]
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(InputError, match=r"^targets.precision: unknown precision 'fp16'"):
        resolve_precision("fp16", torch.device("cpu"))


def test_auto_precision_reads_the_cpu_flags(tmp_path, monkeypatch):
    """auto is bf16 where the CPU lists bf16 matrix instructions, for the targets search and
    for training alike, fp32 elsewhere; an explicit setting is kept."""
    from amips_bench.core import devices
    from amips_bench.datasets import targets
    from amips_bench.models import training

    with_units, without = tmp_path / "a", tmp_path / "b"
    with_units.write_text("flags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    without.write_text("flags\t\t: fpu sse avx2 fma\n")
    assert devices.cpu_has_bf16_units(with_units) and not devices.cpu_has_bf16_units(without)
    assert not devices.cpu_has_bf16_units(tmp_path / "missing")
    cpu = torch.device("cpu")
    for units, expected in ((False, "fp32"), (True, "bf16")):
        monkeypatch.setattr(devices, "cpu_has_bf16_units", lambda units=units: units)
        monkeypatch.setattr(training, "cpu_has_bf16_units", lambda units=units: units)
        assert targets.resolve_precision("auto", cpu) == expected
        assert training.train_precision("auto", cpu) == expected
        assert training.train_precision("fp32", cpu) == "fp32"


@pytest.mark.parametrize("width", [5000, 16384, 16400])
def test_the_two_level_selection_returns_the_top_values_and_bounds_the_rest(width):
    """block_top against a full top-k on bf16 scores full of ties (and a width that is not a
    multiple of the group): the same values, the columns hold them, and the k-th bounds every
    column not returned."""
    from amips_bench.datasets.targets import block_top

    gen = torch.Generator().manual_seed(width)
    scores = (torch.randn(300, width, generator=gen) * 4).round().div(16).bfloat16()
    val, col = block_top(scores, 9)
    ref, _ = torch.topk(scores, 9, dim=1)
    assert torch.equal(val, ref)
    assert torch.equal(torch.gather(scores, 1, col), val)
    assert all(len(set(row.tolist())) == 9 for row in col)
    rest = scores.clone().float()
    rest.scatter_(1, col, -torch.inf)
    assert (rest.max(dim=1).values <= val[:, -1].float()).all()


def test_the_certified_search_with_wide_key_blocks_equals_the_exact_one(rng):
    """The default key block (16,384) takes the two-level selection: still the fp32 answers."""
    from amips_bench.datasets.targets import CertifiedTop1, ExactTop1

    keys = unit_rows(rng, 40_000, 32)
    queries = unit_rows(rng, 200, 32)
    _, first = exact_top1(queries, keys, device="cpu")
    keys[first[:20, 0] + 1] = keys[first[:20, 0]]  # exact duplicates of twenty answers
    expected = ExactTop1(keys, device="cpu")(queries)[1]
    search = CertifiedTop1(keys, precision="bf16", device="cpu")
    assert np.array_equal(search(queries)[1], expected)
    assert search.certified_rows < 200
