"""IVF / HNSW integration and the OOD noise test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import unit_rows

from amips_bench.core.errors import InputError
from amips_bench.experiments.faiss_backend import ivf_scanned_codes, list_sizes, resolve_faiss_device
from amips_bench.experiments.ivf import (
    build_hnsw,
    build_ivf,
    evaluate_indexes,
    mapped_queries,
    natural_queries,
    recall_and_mrr,
    search_hnsw,
    search_ivf,
    sweep,
    write_index,
)
from amips_bench.experiments.ood import perturb
from amips_bench.models.networks import ModelSpec, build_model, save_model


@pytest.fixture
def data(rng):
    keys = unit_rows(rng, 3000, 24)
    queries = unit_rows(rng, 300, 24)
    target = np.argmax(queries @ keys.T, axis=1)
    return keys, queries, target


def test_exhaustive_nprobe_is_exact_and_recall_grows_with_nprobe(data):
    keys, queries, target = data
    index = build_ivf(keys, 30)
    rows = sweep(index, "ivf", natural_queries(queries), target, [1, 2, 4, 8, 16, 30],
                 [1, 10], d=24, n_keys=3000)
    recalls = [r["recall@1"] for r in rows]
    assert recalls[-1] == 1.0  # nprobe = nlist: every list scanned, the search is exact
    assert all(a <= b for a, b in zip(recalls, recalls[1:]))
    assert all(r["recall@10"] >= r["recall@1"] for r in rows)
    costs = [r["flops_total"] for r in rows]
    assert all(a < b for a, b in zip(costs, costs[1:]))


def test_only_the_first_timed_queries_are_timed_and_none_when_zero(data, monkeypatch):
    """ivf.timed_queries: the seconds come from searches of the first N queries only (recall
    and FLOPs still from all of them); 0 times nothing and leaves the seconds NaN."""
    import amips_bench.experiments.ivf as ivf

    keys, queries, target = data
    index = build_ivf(keys, 30)
    timed = []
    real = ivf.seconds_per_query
    monkeypatch.setattr(ivf, "seconds_per_query",
                        lambda index, vectors, k, probe=None: timed.append(len(vectors)) or real(index, vectors, k, probe=probe))
    rows = {n: sweep(index, "ivf", natural_queries(queries), target, [1, 4], [1, 10], d=24,
                     n_keys=3000, timed_queries=n) for n in (0, 50)}
    assert timed == [50, 50]  # one timing per budget, of 50 of the 300 queries
    assert all(np.isnan(r["seconds_per_query"]) for r in rows[0])
    assert all(r["seconds_per_query"] > 0 and r["n_queries"] == 300 for r in rows[50])
    for untimed, timed_row in zip(rows[0], rows[50]):
        assert {k: v for k, v in untimed.items() if k != "seconds_per_query"} == \
            {k: v for k, v in timed_row.items() if k != "seconds_per_query"}


@pytest.mark.parametrize("n_keys", [3 * 4096 + 5, 2 * 4096 + 1000])
def test_an_ivf_built_chunk_by_chunk_from_a_mapped_file_is_the_one_added_whole(tmp_path, n_keys,
                                                                              monkeypatch):
    """build_ivf adds a memory-mapped key file a chunk at a time (here 4,096 keys; a last chunk
    of 5 keys, too small for BLAS, joins the one before): the serialized index is byte for
    byte the one FAISS makes from the same training and a single add of every key."""
    import faiss

    import amips_bench.experiments.ivf as ivf

    monkeypatch.setattr(ivf, "IVF_ADD_CHUNK", 4096)
    keys = unit_rows(np.random.default_rng(n_keys), n_keys, 16)
    np.save(tmp_path / "keys.npy", keys)
    chunked = build_ivf(np.load(tmp_path / "keys.npy", mmap_mode="r"), 40, seed=3)
    whole = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 40, faiss.METRIC_INNER_PRODUCT)
    whole.cp.seed, whole.cp.spherical, whole.cp.max_points_per_centroid = 3, True, 256
    whole.train(keys)
    whole.add(keys)
    assert chunked.ntotal == n_keys
    np.testing.assert_array_equal(faiss.serialize_index(chunked), faiss.serialize_index(whole))


@pytest.mark.parametrize("nlist", [7, 40, 111])
def test_counted_ivf_cost_equals_faiss_ndis_exactly(nlist):
    """The index-derived count (the GPU's only cost source) equals FAISS's own CPU counter,
    query by query, for fresh random data, several nlist and every nprobe up to nlist."""
    import faiss

    rng = np.random.default_rng(1000 + nlist)
    keys, queries = unit_rows(rng, 4000, 24), unit_rows(rng, 97, 24)
    index = build_ivf(keys, nlist, seed=nlist)
    sizes = list_sizes(index)
    assert sizes.sum() == 4000
    for nprobe in sorted({1, 2, 3, nlist // 2, nlist - 1, nlist} - {0}):
        per_query = ivf_scanned_codes(index, queries, nprobe, sizes)
        index.nprobe = nprobe
        for i in range(0, len(queries), 13):  # FAISS's counter, one query at a time
            faiss.cvar.indexIVF_stats.reset()
            index.search(queries[i:i + 1], 5)
            assert per_query[i] == faiss.cvar.indexIVF_stats.ndis
        _, counted, measured = search_ivf(index, queries, nprobe, 5)
        assert counted == measured == per_query.mean()
    # every list probed: the whole key set is scanned, whatever the query
    assert (ivf_scanned_codes(index, queries, nlist, sizes) == 4000).all()


def test_recall_and_mrr_equal_brute_force(rng):
    ids = rng.integers(0, 50, size=(200, 20))
    target = rng.integers(0, 50, size=200)
    ours = recall_and_mrr(ids, target, [1, 5, 20])
    for k in (1, 5, 20):
        assert ours[f"recall@{k}"] == pytest.approx(np.mean([target[i] in ids[i, :k] for i in range(200)]))
    rr = [1 / (list(ids[i]).index(target[i]) + 1) if target[i] in ids[i] else 0 for i in range(200)]
    assert ours["mrr"] == pytest.approx(np.mean(rr))


def test_hnsw_budget_is_efsearch(data):
    keys, queries, target = data
    index = build_hnsw(keys, 16, 40)
    rows = sweep(index, "hnsw", natural_queries(queries), target, [4, 16, 64], [1, 10], d=24,
                 n_keys=3000)
    assert rows[0]["ndis_per_query"] < rows[2]["ndis_per_query"]
    assert rows[2]["recall@1"] >= rows[0]["recall@1"]
    # k > efSearch costs no more than k = efSearch and extends the same list, so recall@10 at
    # efSearch = 4 is an honest point of the curve
    short, ndis_short = search_hnsw(index, queries, 4, 4)
    long, ndis_long = search_hnsw(index, queries, 4, 10)
    assert ndis_long == ndis_short == rows[0]["ndis_per_query"]
    assert np.array_equal(long[:, :4], short) and (long >= 0).all()
    assert rows[0]["recall@10"] == pytest.approx(np.mean((long == target[:, None]).any(axis=1)))


def test_ivf_bad_inputs(data, tmp_path, tiny_dataset):
    keys, queries, target = data
    index = build_ivf(keys, 20)
    with pytest.raises(InputError, match="ivf.nprobe: 21 is larger than nlist = 20"):
        search_ivf(index, queries, 21, 1)
    with pytest.raises(InputError, match="ivf.recall_at: the list of k values is empty"):
        sweep(index, "ivf", natural_queries(queries), target, [1], [], d=24, n_keys=3000)
    spec = ModelSpec(model="keynet", d=32, n_keys=5000, size="S", depth=4, n_x=3)
    save_model(tmp_path / "m/model.pt", build_model(spec))
    (tmp_path / "m/metrics.json").write_text('{"seed": 0}')
    with pytest.raises(InputError, match="model was built for 5000 keys but the index holds 3000"):
        mapped_queries(tmp_path / "m/model.pt", unit_rows(np.random.default_rng(0), 5, 32), 3000,
                       torch.device("cpu"))
    # an index of other keys than the dataset's
    write_index(build_ivf(unit_rows(np.random.default_rng(1), 500, 32), 10), tmp_path / "ix/ivf.faiss")
    with pytest.raises(InputError, match="holds 500 keys, the dataset has 3000"):
        evaluate_indexes(tiny_dataset, tmp_path / "ix", ivf_budgets=[1], hnsw_budgets=[], ks=[1],
                         model_path=None, device=torch.device("cpu"))


def test_perturb_renormalises_and_is_seeded(rng):
    q = unit_rows(rng, 50, 16)
    a, b = perturb(q, 0.1, seed=3), perturb(q, 0.1, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(perturb(q, 0.0, seed=3), q)
    assert np.abs(a - q).max() > 0.05


def test_faiss_device_setting_resolves_and_rejects_bad_values():
    assert resolve_faiss_device("cpu") == "cpu"
    assert resolve_faiss_device("auto") in ("cpu", "gpu")
    with pytest.raises(InputError, match="faiss_device: unknown value 'tpu'"):
        resolve_faiss_device("tpu")


def test_ood_recomputes_the_exact_targets_of_the_noisy_queries(tiny_dataset, tmp_path, monkeypatch):
    """"Correct" under noise means the true MIPS answer of the query actually sent: the target
    of every noisy query is its own brute-force argmax, not the clean query's."""
    from amips_bench.experiments import ood as robustness
    from amips_bench.experiments.ivf import load_split

    spec = ModelSpec(model="keynet", d=32, n_keys=3000, size="M", depth=3, n_x=1)
    save_model(tmp_path / "m/model.pt", build_model(spec))
    (tmp_path / "m/metrics.json").write_text('{"seed": 0}')
    keys = np.load(tiny_dataset / "embeddings/keys.npy")
    write_index(build_ivf(keys, 20), tmp_path / "ix/ivf.faiss")
    seen = []

    def spy(index, kind, queries, target, *args, **kwargs):
        seen.append((queries.name, queries.vectors, target))
        return []

    monkeypatch.setattr(robustness, "sweep", spy)
    robustness.ood_rows(tiny_dataset, tmp_path / "ix", tmp_path / "m/model.pt", stds=[0, 0.3],
                        nprobes=[1], ks=[1], seed=0, device=torch.device("cpu"))
    clean, clean_top1, _, _ = load_split(tiny_dataset)
    natural = [(v, t) for name, v, t in seen if name == "natural"]
    assert len(natural) == 2
    for (vectors, target), std in zip(natural, (0, 0.3)):
        assert np.array_equal(target, np.argmax(vectors @ keys.T, axis=1))
    noisy_vectors, noisy_target = natural[1]
    assert not np.allclose(noisy_vectors, clean)
    assert (noisy_target != clean_top1).mean() > 0.2  # the answers really moved


def test_ivf_variants_spherical_quantizer_and_nlist_sweep_match_brute_force(tiny_dataset, tmp_path):
    """The index stage builds the paper's IVF (spherical k-means, √n) and the variants (plain
    k-means, 4·√n), each file with its own manifest; every IVF row's FLOPs are
    2·(nlist + ndis)·d with FAISS's own ndis, and recall@1 at nprobe 1 equals a brute-force
    recomputation: the top key is found exactly when its list (the key's best centroid by
    inner product) is the query's best centroid. HNSW rows carry efConstruction; every row
    carries measured seconds per query."""
    import faiss

    from amips_bench.core.storage import load_json
    from amips_bench.experiments.ivf import write_hnsw_index, write_ivf_indexes

    out = tmp_path / "index"
    keys_path = tiny_dataset / "embeddings/keys.npy"
    built = write_ivf_indexes(keys_path, out, nlist=0, quantizers=("spherical", "kmeans"),
                              nlist_multiples=(1, 4), faiss_device="cpu")
    write_hnsw_index(keys_path, out, m=16, ef_construction=123)
    assert load_json(out / "hnsw.json")["hnsw_ef_construction"] == 123
    expected = [("ivf.faiss", "manifest.json", "spherical", 55),
                ("ivf_spherical_x4.faiss", "ivf_spherical_x4.json", "spherical", 220),
                ("ivf_kmeans_x1.faiss", "ivf_kmeans_x1.json", "kmeans", 55),
                ("ivf_kmeans_x4.faiss", "ivf_kmeans_x4.json", "kmeans", 220)]
    assert [(m["file"], m["quantizer"], m["nlist"]) for m in built] == [
        (f, q, n) for f, _, q, n in expected]
    for _, manifest, quantizer, nlist in expected:
        written = load_json(out / manifest)
        assert (written["quantizer"], written["nlist"], written["faiss_device_setting"]) == (
            quantizer, nlist, "cpu")
        assert written["ivf_build_device"].startswith("cpu")  # whatever device searches it
    # the paper's index is FAISS's inner-product IVF exactly as its defaults train it
    default = faiss.IndexIVFFlat(faiss.IndexFlatIP(32), 32, 55, faiss.METRIC_INNER_PRODUCT)
    assert default.cp.spherical
    default.cp.seed, default.cp.max_points_per_centroid = 0, 256
    keys32 = np.load(keys_path)
    default.train(keys32)
    paper = faiss.read_index(str(out / "ivf.faiss"))  # held: its quantizer lives inside it
    np.testing.assert_array_equal(paper.quantizer.reconstruct_n(0, 55),
                                  default.quantizer.reconstruct_n(0, 55))
    keys = keys32.astype(np.float64)
    queries = np.load(tiny_dataset / "targets/c1/test_queries.npy").astype(np.float64)
    top1 = np.load(tiny_dataset / "targets/c1/test_top1.npy")[:, 0]

    def evaluate(quantizers=("spherical", "kmeans"), multiples=(1, 4), budgets=(1, 4, 55),
                 hnsw=(16,)):
        return pd.DataFrame(evaluate_indexes(
            tiny_dataset, out, ivf_budgets=list(budgets), hnsw_budgets=list(hnsw), ks=[1, 10],
            model_path=None, device=torch.device("cpu"), faiss_device="cpu",
            quantizers=quantizers, nlist_multiples=multiples))

    rows = evaluate()
    for file, _, quantizer, nlist in expected:
        index = faiss.read_index(str(out / file))
        centroids = index.quantizer.reconstruct_n(0, index.nlist).astype(np.float64)
        norms = np.linalg.norm(centroids, axis=1)
        if quantizer == "spherical":
            np.testing.assert_allclose(norms, 1.0, atol=1e-5)
        else:
            assert norms.max() < 0.99  # means of unit keys: inside the sphere
        sub = rows[(rows["index"] == "ivf") & (rows.quantizer == quantizer)
                   & (rows.nlist == nlist)].set_index("budget")
        assert list(sub.index) == [1, 4, 55] and sub.paper_setup.eq(file == "ivf.faiss").all()
        np.testing.assert_array_equal(sub.ndis_per_query, sub.ndis_faiss)
        np.testing.assert_allclose(sub.flops_search, 2 * (nlist + sub.ndis_faiss) * 32)
        key_list = np.argmax(keys @ centroids.T, axis=1)
        expected_recall = np.mean(key_list[top1] == np.argmax(queries @ centroids.T, axis=1))
        assert sub.loc[1, "recall@1"] == pytest.approx(expected_recall)
    hnsw = rows[rows["index"] == "hnsw"]
    assert len(hnsw) == 1 and hnsw.hnsw_ef_construction.iloc[0] == 123
    assert (rows.seconds_per_query > 0).all() and np.isfinite(rows.seconds_per_query).all()
    # the sweep takes exactly the variants asked for, and a multiple that rounds to an nlist
    # already swept (1.001 · 55 = 55) is swept once
    write_ivf_indexes(keys_path, out, nlist=0, quantizers=("kmeans",), nlist_multiples=(1.001,),
                      faiss_device="cpu")
    only = evaluate(quantizers=("kmeans",), multiples=(1, 1.001), budgets=(1,), hnsw=())
    assert sorted(zip(only.quantizer, only.nlist)) == [("kmeans", 55), ("spherical", 55)]
    with pytest.raises(InputError, match=r"^ivf.quantizers: unknown quantizer 'pq'"):
        write_ivf_indexes(keys_path, tmp_path / "bad", nlist=0, quantizers=("pq",))
    with pytest.raises(InputError, match=r"^ivf.nlist_multiples: 165000 lists for only 3000 keys"):
        write_ivf_indexes(keys_path, tmp_path / "bad", nlist=0, nlist_multiples=(3000,))
    assert not (tmp_path / "bad").exists()
    # a missing variant names the workflow rule that writes it (Snakemake rebuilds a deleted one)
    (out / "ivf_kmeans_x4.faiss").unlink()
    with pytest.raises(InputError, match=r"ivf_kmeans_x4.faiss: FAISS index file not found; the "
                                         r"workflow's `ivf_variant` rule writes it"):
        evaluate(budgets=(1,), hnsw=())
    with pytest.raises(InputError, match=r"ivf_spherical_x2.json: index manifest not found; the "
                                         r"workflow's `ivf_variant` rule writes it"):
        evaluate(multiples=(1, 2), budgets=(1,), hnsw=())
