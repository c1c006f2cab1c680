"""GPU path: run by benchmarks/gpu_suite.sh on a CUDA machine, skipped elsewhere.

Each test compares the GPU with an independent CPU computation of the same quantity.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import unit_rows

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _gpu_faiss() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@pytest.mark.parametrize("clusters", [1, 7])
def test_exact_targets_on_gpu_equal_cpu_index_for_index(clusters):
    """fp32 accumulation with TF32 off, even when the caller left TF32 on globally."""
    from amips_bench.datasets.targets import cuda_matmul_mode, exact_top1

    rng = np.random.default_rng(20 + clusters)
    keys, queries = unit_rows(rng, 60_000, 384), unit_rows(rng, 5_000, 384)
    assignments = rng.integers(0, clusters, len(keys)) if clusters > 1 else None
    cpu_scores, cpu_index = exact_top1(queries, keys, assignments, clusters, device="cpu")
    with cuda_matmul_mode("tf32"):  # the caller's TF32 must not reach the targets
        gpu_scores, gpu_index = exact_top1(queries, keys, assignments, clusters, device="cuda",
                                           query_block=2048, key_block=7_000)
    assert np.array_equal(gpu_index, cpu_index)
    np.testing.assert_allclose(gpu_scores, cpu_scores, rtol=0, atol=2e-6)


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_certified_targets_on_gpu_equal_the_cpu_fp32_path_index_for_index(precision):
    """The GPU's own reduced products (bf16 inputs, TF32 matmuls), certified and rescored: the
    CPU's exact float32 top-1 for every query, planted near-ties falling back; most certified."""
    from amips_bench.datasets.targets import certified_top1, exact_top1

    rng = np.random.default_rng(31)
    keys, queries = unit_rows(rng, 100_000, 384), unit_rows(rng, 4_000, 384)
    _, before = exact_top1(queries, keys, device="cpu")
    planted = before[:50, 0]
    twins = keys[planted] + 1e-6 * rng.standard_normal((50, 384)).astype(np.float32)
    keys = np.concatenate([keys, twins / np.linalg.norm(twins, axis=1, keepdims=True)])
    _, expected = exact_top1(queries, keys, device="cpu")
    top1, certified = certified_top1(queries, keys, precision=precision, key_block=16_384,
                                     device="cuda")
    assert np.array_equal(top1, expected[:, 0])
    assert not certified[:50].any() and certified[50:].mean() > 0.5


def _trainer(model: str, precision: str, tiny_dataset, tmp_path, clusters: int = 1,
             cuda_graph: bool = True, steps: int = 40):
    from amips_bench.core.stage_settings import TrainSettings
    from amips_bench.models.evaluation import load_dataset
    from amips_bench.models.networks import ModelSpec
    from amips_bench.models.training import Trainer

    device = torch.device("cuda")
    data = load_dataset(tiny_dataset, clusters, device)
    spec = ModelSpec(model=model, d=32, n_keys=3000, size="M", depth=4, n_x=3,
                     n_clusters=clusters)
    cfg = TrainSettings(steps=steps, batch_size=256, eval_every=20, checkpoint_every=20,
                      precision=precision, cuda_graph=cuda_graph)
    torch.manual_seed(0)
    return Trainer(spec, data, cfg, tmp_path / f"{model}_{precision}_{cuda_graph}", device)


@pytest.mark.parametrize("model,clusters", [("keynet", 1), ("supportnet", 1), ("supportnet", 4)])
def test_cuda_graph_steps_equal_eager_steps(model, clusters, tiny_dataset, tmp_path):
    """The captured step (double backward, clipping, fused Adam, EMA) replays the eager step:
    after 25 steps across epoch boundaries, weights, EMA and loss sums agree."""
    eager = _trainer(model, "fp32", tiny_dataset, tmp_path, clusters, cuda_graph=False)
    graph = _trainer(model, "fp32", tiny_dataset, tmp_path, clusters, cuda_graph=True)
    for _ in range(25):
        graph.train_step()  # captured first, before any eager step of this process's test
        eager.train_step()
    assert graph.use_graph and graph._graph is not None and eager._graph is None
    for a, b in zip(eager.params + eager.ema_params, graph.params + graph.ema_params):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(graph.train_loss_sum, eager.train_loss_sum, rtol=1e-5, atol=1e-6)


def test_cuda_graph_run_resumes_from_its_checkpoint(tiny_dataset, tmp_path):
    """Stopped after a checkpoint and resumed in a new Trainer (a new capture), the run ends
    where an uninterrupted one does."""
    straight = _trainer("supportnet", "fp32", tiny_dataset, tmp_path / "a")
    for _ in range(40):
        straight.train_step()
    first = _trainer("supportnet", "fp32", tiny_dataset, tmp_path / "b")
    for _ in range(20):
        first.train_step()
    first.save_checkpoint()
    second = _trainer("supportnet", "fp32", tiny_dataset, tmp_path / "b")
    assert second.try_resume() and second.step == 20
    while second.step < 40:
        second.train_step()
    for a, b in zip(straight.ema_params, second.ema_params):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_streamed_batches_on_gpu_take_the_resident_path_step_for_step(tiny_dataset, tmp_path):
    """Rows read from disk per batch (pinned, prefetched on a thread, copied without blocking;
    the targets read too or held in host memory) feed a captured step: the same weights as the
    resident split after steps that cross epoch boundaries, and the capture is not refused."""
    from amips_bench.core.rows import StreamedSplit
    from amips_bench.core.stage_settings import TrainSettings
    from amips_bench.models.evaluation import load_dataset
    from amips_bench.models.networks import ModelSpec
    from amips_bench.models.training import Trainer

    device = torch.device("cuda")
    spec = ModelSpec(model="supportnet", d=32, n_keys=3000, size="S", depth=3, n_x=1)
    cfg = TrainSettings(steps=30, batch_size=128, eval_every=10, checkpoint_every=10)
    trainers = []
    # queries 354 KB, targets 22 KB: both streamed under 0 bytes, the targets held under 100 KB
    for name, over in (("resident", float("inf")), ("streamed", 0), ("targets_in_memory", 100_000)):
        data = load_dataset(tiny_dataset, 1, device, stream_train_over_bytes=over)
        assert isinstance(data.splits["train"], StreamedSplit) == (name != "resident")
        torch.manual_seed(0)
        trainers.append(Trainer(spec, data, cfg, tmp_path / name, device))
    for _ in range(30):  # 2,769 rows / 128 = 21 steps per epoch
        for trainer in trainers:
            trainer.train_step()
    resident, *streamed = trainers
    for trainer in streamed:
        assert trainer.use_graph and trainer._graph is not None
        for a, b in zip(resident.params + resident.ema_params, trainer.params + trainer.ema_params):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["keynet", "supportnet"])
def test_training_step_never_waits_for_the_host(model, tiny_dataset, tmp_path):
    """A step (batch gather, double backward, clipping, fused Adam, EMA) issues no
    synchronising call: PyTorch's sync debug mode raises on the first one."""
    trainer = _trainer(model, "bf16", tiny_dataset, tmp_path)
    trainer.train_step()  # first epoch permutation, allocator warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(12):  # crosses an epoch boundary (2,769 rows / 256 = 10 steps per epoch)
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(trainer.train_loss_sum)


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_metrics_are_float32_whatever_the_training_precision(precision, tiny_dataset, tmp_path):
    from amips_bench.models.evaluation import evaluate_model

    trainer = _trainer("keynet", precision, tiny_dataset, tmp_path)
    for _ in range(5):
        trainer.train_step()
    ours = trainer.evaluate("val")
    # reference: the same EMA weights, copied to the CPU, evaluated in plain float32
    from amips_bench.models.evaluation import load_dataset

    data = load_dataset(tiny_dataset, 1, torch.device("cpu"))
    ema = trainer.ema.to("cpu")
    reference = evaluate_model(ema, data.splits["val"], data, trainer.cfg.weights)
    for key in ("e_rel", "mrr", "match_rate"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-4), key


def test_bf16_training_learns_on_gpu(tiny_dataset, tmp_path):
    trainer = _trainer("keynet", "bf16", tiny_dataset, tmp_path)
    metrics = trainer.run()
    first, last = trainer.history[0], trainer.history[-1]
    assert last["val_loss"] < first["val_loss"]
    assert torch.cuda.get_device_name(0) in metrics["device"]
    assert metrics["precision"] == "bf16"


@pytest.mark.skipif("not _gpu_faiss()", reason="needs the GPU build of FAISS (faiss-gpu)")
def test_ivf_sweep_on_gpu_matches_cpu_and_shares_the_flop_axis():
    from amips_bench.experiments.ivf import build_ivf, natural_queries, sweep

    rng = np.random.default_rng(5)
    keys, queries = unit_rows(rng, 20_000, 64), unit_rows(rng, 500, 64)
    target = np.argmax(queries @ keys.T, axis=1)
    index = build_ivf(keys, 140)
    budgets = [1, 4, 16, 140]
    cpu = sweep(index, "ivf", natural_queries(queries), target, budgets, [1, 10], 64, 20_000, "cpu")
    gpu = sweep(index, "ivf", natural_queries(queries), target, budgets, [1, 10], 64, 20_000, "gpu")
    for c, g in zip(cpu, gpu):
        assert g["faiss_device"] == "gpu" and c["faiss_device"] == "cpu"
        assert g["flops_search"] == c["flops_search"]  # one count, from the index
        assert c["ndis_faiss"] == c["ndis_per_query"]
        assert abs(g["recall@10"] - c["recall@10"]) <= 0.01
    assert gpu[-1]["recall@1"] == 1.0  # every list probed: exact


def test_table1_rows_on_gpu_name_the_device():
    from amips_bench.experiments.timing import table1_rows

    rows = table1_rows({"tiny": 20_000}, sizes=["S"], depth=4, n_x=3, batch=256, repeats=5,
                       warmup=2, device=torch.device("cuda"))
    assert {r["model"] for r in rows} == {"supportnet", "keynet"}
    for r in rows:
        assert torch.cuda.get_device_name(0) in r["device"]
        assert 0 < r["score_median_s"] and 0 < r["grad_median_s"]
