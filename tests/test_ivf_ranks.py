"""Every nprobe of an IVF sweep from one exact pass equals FAISS's search at every nprobe."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from amips_bench.experiments.ivf import build_ivf, recall_and_mrr
from amips_bench.experiments.ivf_ranks import all_nprobe_metrics


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("nlist", [7, 30, 64])
def test_all_nprobe_metrics_equal_faiss_search_at_every_nprobe(nlist):
    """Random unit keys and queries, the target the exact top key (and, for a third of the
    queries, a random key: not always in the first list): recall@1/10/100, MRR and the scanned
    codes per query equal those of FAISS IndexIVFFlat at every nprobe from 1 to nlist."""
    rng = np.random.default_rng(nlist)
    keys, queries = _unit(rng, 3000, 24), _unit(rng, 240, 24)
    target = np.argmax(queries.astype(np.float64) @ keys.T.astype(np.float64), axis=1)
    target[::3] = rng.integers(0, len(keys), size=len(target[::3]))
    index = build_ivf(keys, nlist, seed=1)
    ks, nprobes = [1, 10, 100], list(range(1, nlist + 1))
    ours = all_nprobe_metrics(index, queries, target, nprobes, ks)
    for p, row in zip(nprobes, ours):
        index.nprobe = p
        faiss.cvar.indexIVF_stats.reset()
        _, ids = index.search(queries, max(ks))
        expected = recall_and_mrr(ids, target, ks)
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, abs=1e-12), (p, name)
        assert row["ndis_per_query"] == pytest.approx(faiss.cvar.indexIVF_stats.ndis / len(queries))
    # every list probed: each exact-top target is first, each random one is found at its rank
    exact = np.ones(len(target), bool)
    exact[::3] = False
    assert ours[-1]["recall@1"] >= exact.mean() - 1e-12
    assert ours[-1]["ndis_per_query"] == pytest.approx(len(keys))


def test_the_ivf_stage_rows_are_the_same_under_either_evaluator(tiny_dataset, tmp_path):
    """`amips-bench ivf` on the tiny data with evaluator faiss and all_nprobe: the same recall,
    MRR and scanned codes at every nprobe (FAISS's own counter is read only by the first)."""
    from amips_bench.experiments.ivf import evaluate_indexes, write_ivf_indexes

    write_ivf_indexes(tiny_dataset / "embeddings" / "keys.npy", tmp_path / "index", nlist=0)
    rows = {}
    for evaluator in ("faiss", "all_nprobe"):
        rows[evaluator] = evaluate_indexes(tiny_dataset, tmp_path / "index", ivf_budgets=[1, 2, 4, 8, 16],
                                           hnsw_budgets=[], ks=[1, 10], model_path=None,
                                           device="cpu", timed_queries=8, evaluator=evaluator)
    for a, b in zip(rows["faiss"], rows["all_nprobe"]):
        assert (a["budget"], a["evaluator"], b["evaluator"]) == (b["budget"], "faiss", "all_nprobe")
        for name in ("recall@1", "recall@10", "mrr", "ndis_per_query", "flops_total"):
            assert a[name] == pytest.approx(b[name], abs=1e-12), name
        assert a["ndis_faiss"] == pytest.approx(a["ndis_per_query"]) and np.isnan(b["ndis_faiss"])
        assert b["seconds_per_query"] > 0


def _brute_force_probe_ranks(index, keys, queries, probe, target, nprobes):
    """Rank of y* per nprobe and query when `probe` chooses the lists and `queries` rank their
    keys, recomputed key by key from the index's centroids and assignment (no shared code)."""
    centroids = index.quantizer.reconstruct_n(0, index.nlist).astype(np.float64)
    _, owner = index.quantizer.search(keys, 1)
    owner = owner[:, 0]
    ranks = np.full((len(nprobes), len(queries)), np.inf)
    scanned = np.zeros((len(nprobes), len(queries)))
    for i, (x, y_hat, t) in enumerate(zip(queries.astype(np.float64), probe.astype(np.float64), target)):
        order = np.argsort(-(centroids @ y_hat), kind="stable")
        scores = keys.astype(np.float64) @ x
        for j, p in enumerate(nprobes):
            chosen = np.isin(owner, order[:p])
            scanned[j, i] = chosen.sum()
            if chosen[t]:
                ranks[j, i] = 1 + np.sum(chosen & (scores > scores[t]))
    return ranks, scanned


def test_probe_with_the_predicted_key_equals_a_brute_force_recomputation():
    """probe_mapped — ŷ chooses the lists, x ranks their keys — by the one exact pass and by
    FAISS's search over preassigned lists equals a brute-force recomputation on random data:
    the rank of y* and the keys scanned at every nprobe; and it differs from both natural and
    mapped (a test that cannot tell the modes apart would pass on either)."""
    from amips_bench.experiments.ivf import search_ivf_per_query, target_rank
    from amips_bench.experiments.ivf_ranks import all_nprobe_ranks

    rng = np.random.default_rng(7)
    keys, queries = _unit(rng, 2000, 16), _unit(rng, 150, 16)
    target = np.argmax(queries.astype(np.float64) @ keys.T.astype(np.float64), axis=1)
    probe = keys[target] + 0.6 * _unit(rng, len(target), 16)  # a prediction that errs
    index = build_ivf(keys, 20, seed=3)
    nprobes = list(range(1, 21))
    expected, expected_scanned = _brute_force_probe_ranks(index, keys, queries, probe, target, nprobes)
    ranks, scanned = all_nprobe_ranks(index, queries, target, nprobes, probe=probe)
    np.testing.assert_array_equal(ranks, expected)
    np.testing.assert_array_equal(scanned, expected_scanned)
    kmax = 100
    for j, p in enumerate(nprobes):
        ids, faiss_scanned, _ = search_ivf_per_query(index, queries, p, kmax, probe=probe)
        found = target_rank(ids, target)
        np.testing.assert_array_equal(found, np.where(expected[j] <= kmax, expected[j], np.inf))
        np.testing.assert_array_equal(faiss_scanned, expected_scanned[j])
    natural, _ = all_nprobe_ranks(index, queries, target, nprobes)
    mapped, _ = all_nprobe_ranks(index, probe, target, nprobes)
    assert not np.array_equal(ranks, natural) and not np.array_equal(ranks, mapped)


def test_the_ivf_stage_writes_probe_mapped_rows_and_validation_evidence(tiny_dataset, tmp_path):
    """With a model and probe_mapped, the ivf stage writes mapped and probe_mapped rows at the
    same FLOPs (the same lists are scanned), and every IVF curve keeps its validation
    questions' ranks beside the test questions' (they choose models, never the test ones)."""
    from amips_bench.experiments.ivf import evaluate_indexes, write_ivf_indexes
    from amips_bench.models.networks import ModelSpec, build_model, save_model

    write_ivf_indexes(tiny_dataset / "embeddings" / "keys.npy", tmp_path / "index", nlist=0)
    tiny_model = tmp_path / "m" / "model.pt"
    save_model(tiny_model, build_model(ModelSpec(model="keynet", d=32, n_keys=3000, size="S",
                                                 depth=3, n_x=1)))
    (tmp_path / "m" / "metrics.json").write_text('{"seed": 0}')
    questions: dict = {}
    rows = evaluate_indexes(tiny_dataset, tmp_path / "index", ivf_budgets=[1, 2, 4], hnsw_budgets=[],
                            ks=[1, 10], model_path=tiny_model, device="cpu", timed_queries=4,
                            evaluator="faiss", probe_mapped=True, questions=questions)
    by_query = {q: [r for r in rows if r["query"] == q] for q in ("mapped", "probe_mapped")}
    assert all(len(v) == 3 for v in by_query.values())
    for a, b in zip(*by_query.values()):
        assert a["flops_total"] == pytest.approx(b["flops_total"]) and a["budget"] == b["budget"]
    keys = [k for k in questions if k.endswith("|val_rank")]
    assert len(keys) == 2 and all(questions[k].shape[0] == 3 for k in keys)
