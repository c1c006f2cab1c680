"""The per-question files beside the result tables: every CSV row is the mean of its
questions' outcomes (recomputed here from the .questions.npz the stages write), and the
report's evidence reader lines them up by seed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import unit_rows

from amips_bench.core.layout import DatasetFiles
from amips_bench.core.storage import load_questions
from amips_bench.experiments.ivf import build_ivf, curve_key, natural_queries, sweep
from amips_bench.models.evaluation import load_dataset
from amips_bench.models.networks import ModelSpec
from amips_bench.models.training import Trainer, TrainSettings
from amips_bench.reporting.evidence import QuestionEvidence, curve, routing_hits
from amips_bench.reporting.statistics import gain_at_equal_flops


def _cli(*args):
    out = subprocess.run([sys.executable, "-m", "amips_bench.cli", *map(str, args)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out


def test_routing_rows_are_the_means_of_their_questions(tiny_dataset, tmp_path):
    """`amips-bench routing` writes routing/{name}.questions.npz: hit at k of each method's row
    is the share of test (and validation) questions whose true cluster is below k."""
    d = DatasetFiles(tmp_path / "tiny")
    out = d.routing_csv("baselines_c4_s0")
    _cli("routing", "--dataset-dir", tiny_dataset, "--clusters", 4, "--ks", 1, 2, 4,
         "--baselines", "--seed", 0, "--out", out, "--device", "cpu")
    rows = pd.read_csv(out)
    arrays = load_questions(d.questions_beside(out))
    for row in rows.itertuples():
        test = arrays[f"test_rank|{row.method}"]
        val = arrays[f"val_rank|{row.method}"]
        assert len(test) == row.n_queries
        assert row.accuracy == pytest.approx((test < row.k).mean())
        assert row.val_accuracy == pytest.approx((val < row.k).mean())
    # and the reader finds them where the report looks
    evidence = QuestionEvidence.beside({"routing": [out]}, [])
    hits = routing_hits(evidence, "tiny", ["baselines_c4_s0"], "centroid_ip", 2)
    assert hits.shape == (1, int(rows.n_queries.iloc[0]))
    assert hits.mean() == pytest.approx(rows[(rows.method == "centroid_ip") & (rows.k == 2)].accuracy.iloc[0])


@pytest.mark.parametrize("evaluator", ["faiss", "all_nprobe"])
def test_ivf_rows_are_the_means_of_their_questions_at_every_nprobe(rng, evaluator):
    """Per budget: recall@k and MRR of the row from each question's rank of y*, its FLOPs the
    mean of the questions' FLOPs; both evaluators."""
    keys, queries = unit_rows(rng, 3000, 24), unit_rows(rng, 300, 24)
    target = np.argmax(queries @ keys.T, axis=1)
    index = build_ivf(keys, 30)
    collected = []
    rows = sweep(index, "ivf", natural_queries(queries), target, [1, 3, 9, 30], [1, 10], d=24,
                 n_keys=3000, setup={"quantizer": "spherical", "paper_setup": True},
                 evaluator=evaluator, questions=collected, timed_queries=0)
    (swept, ranks, flops, _), = collected
    assert swept is rows
    for row, rank, cost in zip(rows, ranks, flops):
        assert row["recall@1"] == pytest.approx(np.mean(rank <= 1))
        assert row["recall@10"] == pytest.approx(np.mean(rank <= 10))
        assert row["mrr"] == pytest.approx(np.mean(np.where(rank <= 10, 1 / rank, 0)))
        assert row["flops_total"] == pytest.approx(np.mean(cost), rel=1e-6)
    # nprobe = nlist scans everything: the exact top key is first for every question
    assert (ranks[-1] == 1).all()


def test_the_ivf_stage_writes_every_curve_and_the_reader_pairs_them(tiny_dataset, tmp_path):
    """`amips-bench ivf` for natural queries: one curve per IVF setup in ivf/natural.questions.npz,
    named by curve_key of its rows; a curve against itself gains exactly 0 at equal FLOPs."""
    d = DatasetFiles(tmp_path / "tiny")
    setups = ["--quantizers", "spherical", "kmeans", "--nlist-multiples", 1]
    _cli("index", "--keys", tiny_dataset / "embeddings/keys.npy", "--out", d.index, "--nlist", 0,
         *setups)
    out = d.ivf_csv("natural")
    _cli("ivf", "--dataset-dir", tiny_dataset, "--index-dir", d.index, "--nprobe", 1, 2, 8,
         "--recall-at", 1, 10, "--out", out, "--device", "cpu", "--timed-queries", 0, *setups)
    rows = pd.read_csv(out)
    arrays = load_questions(d.questions_beside(out))
    assert {curve_key(r) for r in rows.to_dict("records")} == {
        k.rsplit("|", 1)[0] for k in arrays} == {"ivf|spherical|55|natural", "ivf|kmeans|55|natural"}
    rows = rows[rows.quantizer == "spherical"]
    key = curve_key(rows.iloc[0].to_dict())
    assert list(arrays[f"{key}|budgets"]) == [1, 2, 8]
    ranks = arrays[f"{key}|rank"]
    np.testing.assert_allclose(rows["recall@10"], (ranks <= 10).mean(axis=1))
    evidence = QuestionEvidence.beside({"ivf": [out]}, [])
    rank, flops = curve(evidence, "ivf", "tiny", ["natural"], key)
    assert rank.shape == (1, ranks.shape[1], 3)
    gains = gain_at_equal_flops(flops, (rank <= 10).astype(float), flops, (rank <= 10).astype(float))
    np.testing.assert_allclose(gains, 0.0)


def test_a_trained_model_writes_its_test_and_validation_outcomes(tiny_dataset, tmp_path):
    """questions.npz beside metrics.json: E_rel and the rank of y* per question, whose means
    are the test metrics (c = 1: every E_rel defined but where x is y*)."""
    spec = ModelSpec(model="keynet", d=32, n_keys=3000, size="S", depth=3, n_x=1, n_clusters=1)
    data = load_dataset(tiny_dataset, 1, torch.device("cpu"))
    cfg = TrainSettings(steps=20, batch_size=64, lr_at_128=2e-3, eval_every=10, checkpoint_every=10)
    metrics = Trainer(spec, data, cfg, tmp_path / "m", torch.device("cpu")).run()
    arrays = load_questions(DatasetFiles.questions_beside(tmp_path / "m" / "metrics.json"))
    test = metrics["test"]
    assert arrays["test_e_rel"].shape == (metrics["n_test"],)
    assert np.nanmean(arrays["test_e_rel"]) == pytest.approx(test["e_rel"], rel=1e-6)
    assert np.mean(1 / arrays["test_rank"]) == pytest.approx(test["mrr"], rel=1e-6)
    assert np.mean(arrays["test_rank"] <= 10) == pytest.approx(test["recall@10"])
    history = pd.read_csv(tmp_path / "m" / "history.csv")
    assert np.nanmean(arrays["val_e_rel"]) == pytest.approx(history.e_rel.iloc[-1], rel=1e-6)


def test_a_missing_or_broken_questions_file_is_no_evidence_or_one_line(tmp_path):
    from amips_bench.core.errors import InputError

    evidence = QuestionEvidence({("routing", "x", "a"): tmp_path / "missing.npz"})
    assert evidence.arrays("routing", "x", "a") is None
    broken = tmp_path / "broken.questions.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="broken.questions.npz: unreadable per-question outcomes"):
        load_questions(broken)
    # a model folder written before per-question outcomes existed: no evidence, no error
    beside = QuestionEvidence.beside({}, [tmp_path / "ds" / "models" / "run_s0" / "metrics.json"])
    assert beside.arrays("model", "ds", "run_s0") is None
