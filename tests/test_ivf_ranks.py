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
