"""Data stages end to end on tiny inputs: determinism and every bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import unit_rows

from amips_bench.cli import main
from amips_bench.core.errors import InputError
from amips_bench.datasets.clusters import write_clusters
from amips_bench.datasets.embeddings import measure_realism, write_synthetic
from amips_bench.datasets.realism import exact_top2_ids
from amips_bench.datasets.splits import write_splits
from amips_bench.datasets.synthetic import SyntheticParams
from amips_bench.datasets.targets import write_targets


def _run_pipeline(root: Path) -> None:
    write_synthetic(root / "embeddings", SyntheticParams(n_keys=1500, n_queries=615, d=24, seed=9))
    write_splits(root / "embeddings/queries.npy", root / "splits", val_size=50, test_size=60,
                 augment_factor=4, sigma=0.02, seed=9)
    write_clusters(root / "embeddings/keys.npy", root / "clusters/c5", 5, restarts=3, niter=8, seed=9)
    write_targets(root / "embeddings", root / "splits", root / "targets/c5", n_clusters=5,
                  clusters_dir=root / "clusters/c5", device="cpu", progress=False)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    _run_pipeline(tmp_path / "a")
    _run_pipeline(tmp_path / "b")
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(a) >= 15 and a == b


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path


@pytest.fixture
def good(tmp_path, rng):
    keys = _save(tmp_path / "emb/keys.npy", unit_rows(rng, 300, 16))
    queries = _save(tmp_path / "emb/queries.npy", unit_rows(rng, 120, 16))
    write_splits(queries, tmp_path / "splits", val_size=10, test_size=10, augment_factor=2,
                 sigma=0.02)
    return tmp_path, keys, queries


def _bad_array(kind: str, rng) -> np.ndarray:
    x = unit_rows(rng, 50, 16)
    if kind == "nan":
        x[7, 3] = np.nan
    elif kind == "inf":
        x[7, 3] = np.inf
    elif kind == "zero":
        x[7] = 0.0
    elif kind == "float64":
        x = x.astype(np.float64)
    elif kind == "empty":
        x = x[:0]
    return x


@pytest.mark.parametrize("kind, message", [
    ("nan", r"keys\.npy: row 7 contains NaN or Inf"),
    ("inf", r"keys\.npy: row 7 contains NaN or Inf"),
    ("zero", r"keys\.npy: row 7 has zero norm"),
    ("float64", r"keys\.npy: dtype float64, expected float32"),
    ("empty", r"keys\.npy: empty array"),
])
def test_bad_keys_are_rejected_before_work_and_leave_no_output(good, rng, kind, message):
    root, keys, _ = good
    _save(keys, _bad_array(kind, rng))
    out = root / "clusters/c3"
    with pytest.raises(InputError, match=message):
        write_clusters(keys, out, 3, restarts=1, niter=2, seed=0)
    assert not out.exists() or not any(out.iterdir())
    target_out = root / "targets/c1"
    with pytest.raises(InputError, match=message):
        write_targets(root / "emb", root / "splits", target_out, n_clusters=1, device="cpu")
    assert not target_out.exists() or not any(target_out.iterdir())


def test_dimension_mismatch_names_the_file(good, rng):
    root, _, _ = good
    _save(root / "emb/keys.npy", unit_rows(rng, 300, 20))
    with pytest.raises(InputError, match=r"queries\.npy: dimension 16 does not match the keys' dimension 20"):
        write_targets(root / "emb", root / "splits", root / "targets/c1", n_clusters=1, device="cpu")
    assert not (root / "targets/c1").exists()


def test_bad_queries_are_rejected_by_the_split_stage(tmp_path, rng):
    queries = _save(tmp_path / "queries.npy", _bad_array("nan", rng))
    with pytest.raises(InputError, match=r"queries\.npy: row 7 contains NaN or Inf"):
        write_splits(queries, tmp_path / "splits", val_size=5, test_size=5, augment_factor=2, sigma=0.02)
    assert not (tmp_path / "splits").exists()


def test_more_clusters_than_keys(good):
    root, keys, _ = good
    with pytest.raises(InputError, match="400 clusters requested for only 300 keys"):
        write_clusters(keys, root / "clusters/c400", 400, restarts=1, niter=2, seed=0)
    assert not (root / "clusters/c400").exists()


def test_split_sizes_larger_than_the_query_set(good):
    root, _, queries = good
    with pytest.raises(InputError, match=r"val_size \+ test_size = 130 must be smaller than the 120 queries"):
        write_splits(queries, root / "s2", val_size=70, test_size=60, augment_factor=2, sigma=0.02)
    assert not (root / "s2").exists()


def test_cli_reports_one_line_and_exit_status_2(good, capsys):
    root, _, queries = good
    status = main(["split", "--queries", str(queries), "--out", str(root / "s3"), "--val-size", "5",
                   "--test-size", "5", "--augment-factor", "3", "--sigma", "-0.1", "--mode",
                   "leak_free", "--seed", "0"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.count("\n") == 0
    assert "splits.sigma: must be >= 0, got -0.1" in err
    assert not (root / "s3").exists()


def test_splits_from_other_queries_are_refused(good, rng):
    root, _, _ = good
    _save(root / "emb/queries.npy", unit_rows(rng, 120, 16))  # new queries, old splits
    with pytest.raises(InputError, match="splits were made from a different"):
        write_targets(root / "emb", root / "splits", root / "targets/c1", n_clusters=1, device="cpu")


def test_identical_vectors_are_merged_so_a_copy_never_outranks_y_star(tmp_path):
    """Encoded texts that became the same vector (an uncased encoder) are merged, with a map
    from every text to its row: afterwards y* is ranked first for ŷ = y* every time, and an
    IVF search that finds the vector finds y* itself (a hit, not a miss on a copy)."""
    import torch

    from amips_bench.core.storage import load_embeddings
    from amips_bench.datasets.embeddings import finalize_encoded
    from amips_bench.datasets.targets import ClusterLayout, exact_top1
    from amips_bench.experiments.ivf import build_ivf, search_ivf
    from amips_bench.models.metrics import retrieval_metrics

    rng = np.random.default_rng(11)
    base = unit_rows(rng, 500, 16)
    copies = rng.choice(500, 60, replace=False)
    encoded_keys = np.concatenate([base, base[copies]])[rng.permutation(560)]
    queries = unit_rows(rng, 90, 16)
    encoded_queries = np.concatenate([queries, queries[:10]])
    np.save(tmp_path / "k.npy", encoded_keys)
    np.save(tmp_path / "q.npy", encoded_queries)
    m = finalize_encoded(tmp_path / "emb", tmp_path / "k.npy", tmp_path / "q.npy", encoder="test",
                         source={}, counts_before={"keys": 560, "queries": 100})
    keys = load_embeddings(tmp_path / "emb/keys.npy")
    key_map = np.load(tmp_path / "emb/key_map.npy")
    assert m["identical_vectors_merged"] == {"keys": 60, "queries": 10} and len(keys) == 500
    assert np.array_equal(keys[key_map], encoded_keys)  # every text still finds its vector
    assert len(np.unique(keys, axis=0)) == 500
    # rank of y* for predictions that are y* exactly: first, every time
    _, top1 = exact_top1(keys, keys, device="cpu")
    assert np.array_equal(top1[:, 0], np.arange(500))
    ranks = retrieval_metrics(torch.from_numpy(keys[:, None, :]), torch.from_numpy(keys),
                              torch.from_numpy(top1), torch.from_numpy(keys),
                              ClusterLayout.from_assignments(None, 500, 1))
    assert ranks["match_rate"] == ranks["mrr"] == 1.0
    # an exhaustive IVF search with the vector of a key that had copies returns that key
    had_copies = np.flatnonzero(np.bincount(key_map) > 1)
    assert len(had_copies) == 60
    ids, _, _ = search_ivf(build_ivf(keys, 10), keys[had_copies], 10, 1)
    assert np.array_equal(ids[:, 0], had_copies)


def test_synthetic_keys_streamed_to_disk_equal_the_in_memory_draw(tmp_path, monkeypatch):
    """write_synthetic draws the keys chunk by chunk into the file (here 3 chunks of 700 keys)
    and reads back the questions' source keys: the files hold exactly generate()'s arrays, and
    nothing but the contract is left in the folder."""
    from amips_bench.datasets import synthetic

    monkeypatch.setattr(synthetic, "KEY_CHUNK", 700)
    params = SyntheticParams(n_keys=2000, n_queries=820, d=16, seed=4)
    manifest = write_synthetic(tmp_path, params)
    keys, queries, provenance = synthetic.generate(params)
    np.testing.assert_array_equal(np.load(tmp_path / "keys.npy"), keys)
    np.testing.assert_array_equal(np.load(tmp_path / "queries.npy"), queries)
    assert manifest["source"] == provenance
    assert manifest["counts_after_dedup"] == {"keys": 2000, "queries": 820}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.npy", "manifest.json", "queries.npy"]
    draw = synthetic.SyntheticDraw(params)
    with pytest.raises(RuntimeError, match="before the queries"):
        draw.queries(lambda ids: keys[ids])


def test_identical_key_rows_of_a_drawn_file_are_merged_in_order(tmp_path, rng):
    """Keys that arrive as a file are deduplicated by hash without loading them: keys.npy
    holds each distinct row once, at its first position, and the drawn file is consumed."""
    from amips_bench.datasets.embeddings import write_embeddings

    base = unit_rows(rng, 6, 8)
    drawn = _save(tmp_path / "drawn.npy", base[[0, 1, 0, 2, 3, 1, 4, 5, 5]])
    queries = unit_rows(rng, 5, 8)
    manifest = write_embeddings(tmp_path / "emb", drawn, queries[[0, 1, 1, 2, 3, 4]],
                                encoder="test", seed=0, source={}, realism=False)
    np.testing.assert_array_equal(np.load(tmp_path / "emb/keys.npy"), base)
    np.testing.assert_array_equal(np.load(tmp_path / "emb/queries.npy"), queries)
    assert manifest["counts_before_dedup"] == {"keys": 9, "queries": 6}
    assert manifest["counts_after_dedup"] == {"keys": 6, "queries": 5}
    assert not drawn.exists()


def test_a_failed_synthetic_draw_leaves_no_files(tmp_path, monkeypatch):
    """An error after the keys were drawn to disk (no micro-group asked about; the realism
    statistics failing after the keys were deduplicated) leaves the folder without keys,
    queries, manifest, drawn file or temporary."""
    import amips_bench.datasets.embeddings as embeddings

    with pytest.raises(InputError, match="no micro-group receives queries"):
        write_synthetic(tmp_path / "a", SyntheticParams(n_keys=500, n_queries=10, d=8,
                                                        queried_fraction=0.0))
    assert list((tmp_path / "a").iterdir()) == []

    def failing(*args):
        raise InputError("realism: failed")

    monkeypatch.setattr(embeddings, "measure_realism", failing)
    with pytest.raises(InputError, match="realism: failed"):
        write_synthetic(tmp_path / "b", SyntheticParams(n_keys=500, n_queries=200, d=8))
    assert list((tmp_path / "b").iterdir()) == []


def test_exact_top2_over_key_blocks_equals_brute_force(rng):
    keys, queries = unit_rows(rng, 1000, 16), unit_rows(rng, 50, 16)
    ids = exact_top2_ids(queries, keys, key_block=128)
    np.testing.assert_array_equal(ids, np.argsort(-(queries @ keys.T), axis=1)[:, :2])


def test_a_key_sample_keeps_every_sampled_querys_two_best_keys(rng):
    """When the realism statistics sample keys (here 1,000 of 20,000, all 410 queries), the
    sample holds each query's best two keys among all keys: the top-1 cosine and the top-2 gap
    are those of the whole key set, not of a random 5 % (where both would be far off)."""
    keys, queries = unit_rows(rng, 20_000, 16), unit_rows(rng, 410, 16)
    realism = measure_realism(keys, queries, seed=3)
    assert (realism["sample_keys"], realism["sample_queries"]) == (1000, 410)
    assert "drawn at random" in realism["key_sample"]
    scores = np.sort(queries @ keys.T, axis=1)[:, ::-1]
    stats = realism["stats"]
    assert stats["top1_cosine_mean"] == pytest.approx(scores[:, 0].mean(), rel=1e-5)
    assert stats["top1_cosine_p10"] == pytest.approx(np.percentile(scores[:, 0], 10), rel=1e-5)
    assert stats["top1_top2_gap_mean"] == pytest.approx((scores[:, 0] - scores[:, 1]).mean(), rel=1e-4)
    uniform = np.sort(queries @ keys[rng.choice(20_000, 1000, replace=False)].T, axis=1)[:, -1]
    assert uniform.mean() < scores[:, 0].mean() - 0.05  # what a uniform sample would have said
    judged = realism["vs_real_minilm"]
    assert judged["winner_key_fraction"]["within_tolerance"] is None  # every query wins its own key
    assert judged["top1_cosine_mean"]["within_tolerance"] in (True, False)
    assert all(v["within_tolerance"] is not None
               for v in measure_realism(keys[:1000], queries, seed=3)["vs_real_minilm"].values())


def test_shared_embeddings_are_relative_links_to_the_twins_files(tmp_path, capsys):
    """`amips-bench share FOLDER --out DIR`: every file of the folder but hidden ones, as a
    relative link (the results folder can move whole), the manifest last so a folder with its
    manifest is whole; sharing again replaces the links."""
    source = tmp_path / "results" / "a" / "embeddings"
    write_synthetic(source, SyntheticParams(n_keys=400, n_queries=160, d=8, seed=3))
    (source / ".work").write_text("a stage's work file")
    out = tmp_path / "results" / "b" / "embeddings"
    for _ in range(2):
        assert main(["share", str(source), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [Path(line.split(":")[0]).name for line in lines[:3]] == ["keys.npy", "queries.npy", "manifest.json"]
    assert sorted(p.name for p in out.iterdir()) == ["keys.npy", "manifest.json", "queries.npy"]
    for name in ("keys.npy", "queries.npy", "manifest.json"):
        link = out / name
        assert link.is_symlink() and Path(link.readlink()) == Path("../../a/embeddings") / name
        assert link.read_bytes() == (source / name).read_bytes()
    moved = tmp_path / "moved"
    (tmp_path / "results").rename(moved)
    assert np.array_equal(np.load(moved / "b/embeddings/keys.npy"), np.load(moved / "a/embeddings/keys.npy"))


def test_share_copies_where_the_file_system_has_no_links(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError("symbolic links are not supported here")

    source = tmp_path / "a" / "index.bin"
    source.parent.mkdir()
    source.write_bytes(bytes(range(256)))
    monkeypatch.setattr("os.symlink", no_links)
    assert main(["share", str(source), "--out", str(tmp_path / "b")]) == 0
    copy = tmp_path / "b" / "index.bin"
    assert not copy.is_symlink() and copy.read_bytes() == source.read_bytes()
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["index.bin"]


def test_sharing_a_missing_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    present = _save(tmp_path / "a" / "ivf.npy", np.zeros(3))
    missing = tmp_path / "a" / "manifest.json"
    assert main(["share", str(present), str(missing), "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err == f"amips-bench share: error: {missing}: file not found (nothing to share)\n"
    assert not (tmp_path / "b").exists()


def test_targets_size_their_files_to_the_byte_before_searching(good):
    """targets_bytes, which the disk check uses, is what the stage writes: every file of c = 1,
    and only the top-1 files of c = 3 whose queries are links to c = 1's."""
    from amips_bench.datasets.targets import targets_bytes

    root, keys, _ = good
    write_clusters(keys, root / "clusters/c3", 3, restarts=1, niter=2, seed=0)
    c1 = write_targets(root / "emb", root / "splits", root / "targets/c1", n_clusters=1,
                       device="cpu", progress=False)
    c3 = write_targets(root / "emb", root / "splits", root / "targets/c3", n_clusters=3,
                       clusters_dir=root / "clusters/c3", device="cpu", progress=False,
                       queries_from=root / "targets/c1")
    for manifest, linked in ((c1, False), (c3, True)):
        folder = root / "targets" / f"c{manifest['n_clusters']}"
        written = sum(p.stat().st_size for p in folder.glob("*.npy") if not p.is_symlink())
        assert written == targets_bytes(manifest["rows"], d=16, n_clusters=manifest["n_clusters"],
                                        queries_linked=linked)


def test_targets_refuse_a_short_disk_in_one_line_before_any_search(good, capsys, monkeypatch):
    """The disk of a run is planned before its BEIR queries are counted; the targets stage,
    which writes their augmented copies, checks its own files against the free disk first."""
    root, _, _ = good
    out = root / "targets/c1"
    args = ["targets", "--embeddings", str(root / "emb"), "--splits", str(root / "splits"),
            "--clusters", "1", "--out", str(out), "--device", "cpu"]
    assert main([*args, "--disk-margin", "1e15"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert f"{out}: the targets of train, val, test take " in err and "disk_margin: null" in err
    assert not out.exists() or not any(out.iterdir())
    # a workflow run hands its disk_margin on in the environment; the flag overrides it
    monkeypatch.setenv("AMIPS_BENCH_DISK_MARGIN", "1e15")
    assert main(args) == 2 and "disk_margin: null" in capsys.readouterr().err
    monkeypatch.setenv("AMIPS_BENCH_DISK_MARGIN", "ten")
    assert main(args) == 2
    assert "AMIPS_BENCH_DISK_MARGIN: 'ten' is not a margin" in capsys.readouterr().err
    assert main([*args, "--disk-margin", "none"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}_{k}.npy" for s in ("train", "val", "test") for k in ("queries", "top1")]
        + ["manifest.json"])


def test_the_realism_table_lists_linked_embeddings_once_with_their_twins(tmp_path):
    """A dataset whose embeddings are links to a twin's (the leakage pairs) adds no second copy
    of the same statistics; it is named beside the dataset that made them."""
    from amips_bench.reporting.tables import realism_table

    for name, seed in (("a", 1), ("c", 2)):
        write_synthetic(tmp_path / name / "embeddings",
                        SyntheticParams(n_keys=1500, n_queries=300, d=24, seed=seed))
    assert main(["share", str(tmp_path / "a/embeddings"), "--out", str(tmp_path / "b/embeddings")]) == 0
    manifests = [str(tmp_path / n / "embeddings/manifest.json") for n in ("b", "a", "c")]
    table = realism_table(manifests)
    assert list(table.drop_duplicates("dataset")[["dataset", "same_embeddings_in"]]
                .itertuples(index=False, name=None)) == [("a", "b"), ("c", "")]
    per_dataset = table.groupby("dataset").statistic.apply(list)
    assert per_dataset["a"] == per_dataset["c"] and len(per_dataset["a"]) >= 10
    assert list(table[table.dataset == "a"].ours) != list(table[table.dataset == "c"].ours)
