"""Training: exact resume after kill -9, NaN handling, EMA/LR schedule, learning."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from amips_bench.core.errors import InputError
from amips_bench.models import losses as losses_module
from amips_bench.models import training
from amips_bench.models.evaluation import load_dataset
from amips_bench.models.networks import ModelSpec, load_model
from amips_bench.models.training import NonFiniteLoss, Trainer, TrainSettings

DEVICE = torch.device("cpu")


def _spec(model="supportnet", c=1, n_keys=3000):
    return ModelSpec(model=model, d=32, n_keys=n_keys, size="M", depth=4, n_x=1, n_clusters=c)


def _cfg(**kw):
    base = dict(steps=120, batch_size=64, lr_at_128=2e-3, eval_every=40, checkpoint_every=20, seed=4)
    base.update(kw)
    return TrainSettings(**base)


def test_lr_schedule_and_ema_scaling():
    cfg = TrainSettings(steps=1000, batch_size=512, lr_at_128=1e-4, warmup_fraction=0.025)
    assert cfg.peak_lr == pytest.approx(2e-4)  # sqrt(512/128) = 2
    assert cfg.ema_decay == pytest.approx(0.999 ** 4)
    assert cfg.warmup_steps == 25
    assert cfg.lr_at(0) == pytest.approx(2e-4 / 25)
    assert cfg.lr_at(24) == pytest.approx(2e-4)
    assert cfg.lr_at(999) == pytest.approx(2e-4 * 0.125, rel=1e-3)
    lrs = [cfg.lr_at(s) for s in range(25, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # cosine decays monotonically


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_weights_equal_their_closed_form(tiny_dataset, tmp_path, warmup):
    """After k steps with decays d_1..d_k, EMA = Π d_i · θ_0 + Σ_i (1 − d_i) Π_{j>i} d_j · θ_i,
    summed in float64 from the recorded weights θ_i. With warm-up d_t = min(d, (1+t)/(10+t));
    without (ema_warmup false, the official code) every d_t is the fixed d = 0.999^(64/128)."""
    data = load_dataset(tiny_dataset, 1, DEVICE)
    trainer = Trainer(_spec("keynet"), data, _cfg(ema_warmup=warmup), tmp_path, DEVICE)
    theta = [[p.detach().double().clone() for p in trainer.params]]
    decays = []
    fixed = 0.999 ** (64 / 128)
    for t in range(12):
        decays.append(min(fixed, (1 + t) / (10 + t)) if warmup else fixed)
        assert trainer.cfg.ema_decay_at(trainer.step) == pytest.approx(decays[-1])
        trainer.train_step()
        theta.append([p.detach().double().clone() for p in trainer.params])
    for n, ema in enumerate(trainer.ema_params):
        expected = torch.tensor(decays, dtype=torch.float64).prod() * theta[0][n]
        for i in range(1, 13):
            tail = torch.tensor(decays[i:], dtype=torch.float64).prod()
            expected = expected + (1 - decays[i - 1]) * tail * theta[i][n]
        torch.testing.assert_close(ema.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["keynet", "supportnet"])
def test_ema_update_stays_outside_autograd(model, tiny_dataset, tmp_path):
    """A recorded EMA update would chain every step into one autograd graph that lives as long
    as the run: memory that grows with the step count, in every eager step."""
    data = load_dataset(tiny_dataset, 1, DEVICE)
    trainer = Trainer(_spec(model), data, _cfg(), tmp_path, DEVICE)
    for _ in range(3):
        trainer.train_step()
    for ema in trainer.ema.parameters():
        assert ema.is_leaf and not ema.requires_grad and ema.grad_fn is None


def test_killed_run_resumes_to_the_uninterrupted_result(tiny_dataset, tmp_path):
    """kill -9 a real `amips-bench train` after its first checkpoint, re-run it with another
    checkpoint interval, compare weights."""
    steps = 400
    args = ["--dataset-dir", str(tiny_dataset), "--model", "supportnet", "--size", "M",
            "--depth", "4", "--nx", "1", "--clusters", "4", "--steps", str(steps),
            "--batch-size", "64", "--lr-at-128", "2e-3", "--eval-every", "100",
            "--checkpoint-every", "25", "--seed", "4", "--device", "cpu", "--threads", "1"]
    cmd = [sys.executable, "-m", "amips_bench.cli", "train"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    subprocess.run(cmd + args + ["--out", str(straight)], check=True, capture_output=True)

    proc = subprocess.Popen(cmd + args + ["--out", str(resumed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    checkpoint = resumed / training.CHECKPOINT_NAME
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists() and not (resumed / "model.pt").exists()
    killed_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < killed_at < steps

    # how often a run saves does not change what it computes: a new interval resumes it too
    again = [*args[:args.index("--checkpoint-every")], "--checkpoint-every", "40",
             *args[args.index("--checkpoint-every") + 2:]]
    out = subprocess.run(cmd + again + ["--out", str(resumed)], check=True, capture_output=True, text=True)
    assert f"resumed supportnet_M_L4_nx1_c4 at step {killed_at}" in out.stdout
    a, _ = load_model(straight / "model.pt")
    b, _ = load_model(resumed / "model.pt")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-5, msg=name)
    ha = pd.read_csv(straight / "history.csv")
    hb = pd.read_csv(resumed / "history.csv")
    assert list(ha.step) == list(hb.step) == [0, 100, 200, 300, 400]
    pd.testing.assert_series_equal(ha.e_rel, hb.e_rel, atol=1e-5)
    assert not checkpoint.exists()  # removed once the run completed


class _Killed(Exception):
    """Stands for a process killed in the middle of an evaluation."""


@pytest.mark.parametrize("where", ["on", "during"])
def test_a_stop_on_or_during_an_evaluation_step_keeps_its_history_row(tiny_dataset, tmp_path, where):
    """A stop that lands exactly on an evaluation step (checkpoint before its row is logged),
    or a kill during the evaluation after the step's checkpoint, must not cost the resumed run
    that row: the history drives model selection. The resumed history equals the uninterrupted
    one, row for row."""
    import threading

    data = load_dataset(tiny_dataset, 1, DEVICE)
    Trainer(_spec("keynet"), data, _cfg(), tmp_path / "straight", DEVICE).run()
    stop = threading.Event()
    trainer = Trainer(_spec("keynet"), data, _cfg(), tmp_path / "resumed", DEVICE, stop=stop)
    if where == "on":
        step_once = trainer.train_step

        def train_step():
            step_once()
            if trainer.step == 80:  # eval_every 40: a stop request arrives on the step
                stop.set()
        trainer.train_step = train_step
        expected = training.TrainingStopped
    else:
        log_once = trainer.log_evaluation

        def log_evaluation():
            if trainer.step == 80:  # checkpoint_every 20: saved just before this evaluation
                raise _Killed
            return log_once()
        trainer.log_evaluation = log_evaluation
        expected = _Killed
    with pytest.raises(expected):
        trainer.run()
    saved = torch.load(tmp_path / "resumed" / training.CHECKPOINT_NAME, weights_only=False)
    assert saved["step"] == 80 and [r["step"] for r in saved["history"]] == [0, 40]
    Trainer(_spec("keynet"), data, _cfg(), tmp_path / "resumed", DEVICE).run()
    ha = pd.read_csv(tmp_path / "straight" / "history.csv")
    hb = pd.read_csv(tmp_path / "resumed" / "history.csv")
    assert list(ha.step) == list(hb.step) == [0, 40, 80, 120]
    timing = ["elapsed_s"]
    pd.testing.assert_frame_equal(ha.drop(columns=timing), hb.drop(columns=timing))


def _same_weights(a_dir, b_dir):
    a, _ = load_model(a_dir / "model.pt")
    b, _ = load_model(b_dir / "model.pt")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_sigterm_checkpoints_at_the_step_it_arrives_and_the_rerun_ends_bitwise_equal(tiny_dataset, tmp_path):
    """SIGTERM (a cluster's notice before its walltime kill or a preemption) to a real
    `amips-bench train` without periodic checkpoints: it saves one at the step it is on and
    exits with status 75 within seconds; the same command resumes there and ends with the
    uninterrupted run's weights, bit for bit."""
    steps = 300
    args = ["--dataset-dir", str(tiny_dataset), "--model", "keynet", "--size", "M", "--depth", "4",
            "--nx", "1", "--steps", str(steps), "--batch-size", "64", "--lr-at-128", "2e-3",
            "--eval-every", "50", "--checkpoint-every", "100000", "--seed", "6", "--device", "cpu",
            "--threads", "1"]
    cmd = [sys.executable, "-m", "amips_bench.cli", "train"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    subprocess.run(cmd + args + ["--out", str(straight)], check=True, capture_output=True)
    proc = subprocess.Popen(cmd + args + ["--out", str(resumed)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # the first evaluation after step 0: mid-training
        if re.search(r"step\s+50\b", line):
            break
    os.kill(proc.pid, signal.SIGTERM)
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == training.STOPPED_EXIT, err
    assert time.time() - t0 < 10
    checkpoint = resumed / training.CHECKPOINT_NAME
    stopped_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 50 <= stopped_at < steps and not (resumed / "model.pt").exists()
    assert f"SIGTERM: checkpoint saved at step {stopped_at} of {steps}" in err
    out = subprocess.run(cmd + args + ["--out", str(resumed)], check=True, capture_output=True, text=True)
    assert f"resumed keynet_M_L4_nx1_c1 at step {stopped_at}" in out.stdout
    _same_weights(straight, resumed)


def test_a_training_in_three_step_segments_ends_bitwise_equal_with_the_same_history(tiny_dataset, tmp_path):
    """Segments ending at steps 50 and 70 (between evaluations at 40 and 80): each continues
    from the previous segment's file and the last writes the model, with the weights and the
    evaluation history of the one-segment run; a segment file of another model is refused."""
    data = load_dataset(tiny_dataset, 1, DEVICE)
    cfg = _cfg()
    Trainer(_spec("keynet"), data, cfg, tmp_path / "whole", DEVICE).run()
    out, previous = tmp_path / "segments", None
    for k, until in enumerate((50, 70), start=1):
        segment = out / f"segment_{k}.pt"
        assert Trainer(_spec("keynet"), data, cfg, out, DEVICE).run(
            until_step=until, segment_out=segment, resume_from=previous) is None
        assert torch.load(segment, weights_only=False)["step"] == until
        assert not (out / training.CHECKPOINT_NAME).exists() and not (out / "model.pt").exists()
        previous = segment
    Trainer(_spec("keynet"), data, cfg, out, DEVICE).run(resume_from=previous)
    _same_weights(tmp_path / "whole", out)
    whole, parts = pd.read_csv(tmp_path / "whole" / "history.csv"), pd.read_csv(out / "history.csv")
    assert list(whole.step) == list(parts.step) == [0, 40, 80, 120]
    pd.testing.assert_frame_equal(whole.drop(columns="elapsed_s"), parts.drop(columns="elapsed_s"))
    with pytest.raises(InputError, match="the previous segment trained another model"):
        Trainer(_spec("supportnet"), data, cfg, tmp_path / "other", DEVICE).run(resume_from=previous)


def test_a_time_budget_runs_a_training_as_segments_that_end_bitwise_equal(tiny_dataset, tmp_path):
    """A budget shorter than the training: each run stops with a checkpoint before its budget
    is spent, the next resumes; the segments end with the one-segment run's weights."""
    data = load_dataset(tiny_dataset, 1, DEVICE)
    cfg = _cfg()
    whole = Trainer(_spec("supportnet"), data, cfg, tmp_path / "whole", DEVICE)
    whole.run()
    segments, out = 0, tmp_path / "segments"
    while not (out / "model.pt").exists():
        segments += 1
        trainer = Trainer(_spec("supportnet"), data, cfg, out, DEVICE, max_seconds=0.1)
        trainer.min_reserve = 0.0  # a tenth of a second: a few dozen steps a segment
        try:
            trainer.run()
        except training.TrainingStopped as stopped:
            assert "time budget of" in str(stopped) and trainer.step < cfg.steps
        assert segments < 200
    assert segments >= 2
    _same_weights(tmp_path / "whole", out)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_dataset, tmp_path,
                                                                         monkeypatch):
    data = load_dataset(tiny_dataset, 1, DEVICE)
    trainer = Trainer(_spec("keynet"), data, _cfg(), tmp_path, DEVICE)
    real = losses_module.compute_loss

    def poisoned(model, x, *a, **kw):
        loss, parts = real(model, x, *a, **kw)
        return (loss * float("nan") if trainer.step >= 30 else loss), parts

    monkeypatch.setattr(training, "compute_loss", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"non-finite training loss by step 40 of keynet_M_L4_nx1_c1; "
                                            r"last good checkpoint kept at .*checkpoint.pt"):
        trainer.run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 20
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize("model, c", [("keynet", 1), ("supportnet", 1), ("keynet", 4), ("supportnet", 4)])
def test_training_reduces_validation_e_rel(tiny_dataset, tmp_path, model, c):
    data = load_dataset(tiny_dataset, c, DEVICE)
    metrics = Trainer(_spec(model, c), data, _cfg(steps=200, eval_every=50), tmp_path, DEVICE).run()
    history = pd.read_csv(tmp_path / "history.csv")
    assert history.e_rel.iloc[-1] < history.e_rel.iloc[1] < history.e_rel.iloc[0]
    assert history.e_rel.iloc[-1] < 0
    assert metrics["test"]["e_rel"] < 0
    assert {"e_rel", "e_rel_half", "match_rate", "recall@1", "recall@10", "recall@100",
            "mrr"} <= set(metrics["test"])
    if model == "supportnet":  # the reported fraction is the saved EMA weights' own
        ema, _ = load_model(tmp_path / "model.pt")
        weights = [layer.weight for layer in ema.trunk.hidden] + [ema.trunk.out.weight]
        negative = sum(int((w < 0).sum()) for w in weights) / sum(w.numel() for w in weights)
        assert metrics["negative_wz_fraction"] == pytest.approx(negative)
    if c > 1:  # routing accuracy at k = 1 recomputed from the EMA model's cluster scores
        from amips_bench.models.evaluation import predict_scores, true_clusters

        ema, _ = load_model(tmp_path / "model.pt")
        test = data.splits["test"]
        chosen = predict_scores(ema, test.queries).argmax(dim=1).numpy()
        expected = float((chosen == true_clusters(test, data.keys)).mean())
        assert metrics["test"]["routing@1"] == pytest.approx(expected)


def test_live_unit_fractions_are_recorded_at_every_evaluation_and_at_the_end(tiny_dataset, tmp_path):
    """live_l1..live_lL and live_min in every history row and in metrics.json: the positive
    share of each hidden layer's pre-activations of the EMA model on validation queries,
    recomputed here from the saved model."""
    data = load_dataset(tiny_dataset, 1, DEVICE)
    metrics = Trainer(_spec("supportnet"), data, _cfg(steps=40, eval_every=20), tmp_path, DEVICE).run()
    history = pd.read_csv(tmp_path / "history.csv")
    layers = [f"live_l{i}" for i in range(1, 5)]
    assert len(history) == 3 and history[layers + ["live_min"]].notna().all().all()
    assert (history.live_min == history[layers].min(axis=1)).all()
    ema, _ = load_model(tmp_path / "model.pt")
    val = data.splits["val"].queries
    by_hand = [float((pre > 0).float().mean()) for pre, _ in ema.trunk.hidden_states(val)]
    assert metrics["live_fractions"] == pytest.approx(by_hand)
    assert metrics["live_min"] == pytest.approx(min(by_hand))
    assert list(history[layers].iloc[-1]) == pytest.approx(by_hand)
    assert metrics["convexity"] == "penalty" and metrics["init"] == "principled"
    assert metrics["key_reduction"] == "mean" and metrics["ema_warmup"] is True


def test_an_unconstrained_supportnet_can_end_with_negative_w_z(tiny_dataset, tmp_path):
    """convexity none (the official identity rectifier): W^z starts non-negative and is then
    trained freely, so some weights cross zero; clip keeps every one ≥ 0 under the same steps."""
    data = load_dataset(tiny_dataset, 1, DEVICE)
    fractions = {}
    for mode in ("none", "clip"):
        spec = ModelSpec(model="supportnet", d=32, n_keys=3000, size="M", depth=4, n_x=1,
                         convexity=mode)
        trainer = Trainer(spec, data, _cfg(steps=60, lr_at_128=1e-2), tmp_path / mode, DEVICE)
        assert trainer.model.negative_fraction() == 0.0
        for _ in range(60):
            trainer.train_step()
        fractions[mode] = trainer.model.negative_fraction()
    assert fractions["none"] > 0.0 and fractions["clip"] == 0.0


def test_targets_for_other_keys_are_refused(tiny_dataset, tmp_path):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(tiny_dataset, copy)
    import numpy as np

    keys = np.load(copy / "embeddings/keys.npy")
    np.save(copy / "embeddings/keys.npy", keys[:-5])
    with pytest.raises(InputError, match="targets were computed for 3000 keys but .* has 2995"):
        load_dataset(copy, 1, DEVICE)


def test_batch_larger_than_training_set_is_refused(tiny_dataset, tmp_path):
    data = load_dataset(tiny_dataset, 1, DEVICE)
    with pytest.raises(InputError, match="train.batch_size: 100000 is larger than the 2790 training queries"):
        Trainer(_spec("keynet"), data, _cfg(batch_size=100_000), tmp_path, DEVICE)


@pytest.mark.parametrize("readers", [0, 2])
@pytest.mark.parametrize("targets", ["disk", "memory"])
def test_streamed_training_takes_the_resident_path_step_for_step(tiny_dataset, tmp_path, readers,
                                                                   targets, monkeypatch):
    """A training split read from disk per batch (prefetched on a thread, by reader processes
    or by the thread alone; its targets read too or held in memory) trains on the same rows in
    the same order as the resident one: identical weights after steps that cross epoch
    boundaries, and a run of either kind resumes the other's checkpoint."""
    from amips_bench.core.rows import StreamedSplit

    monkeypatch.setattr("amips_bench.models.training.reader_processes", lambda n: n)  # whatever the cores

    resident = load_dataset(tiny_dataset, 1, DEVICE)
    budget = 0 if targets == "disk" else 100_000  # the queries take 354 KB, the targets 22 KB
    streamed = load_dataset(tiny_dataset, 1, DEVICE, stream_train_over_bytes=budget)
    assert isinstance(streamed.splits["train"], StreamedSplit)
    assert len(streamed.splits["train"].files) == (2 if targets == "disk" else 1)
    spec = ModelSpec(model="supportnet", d=32, n_keys=3000, size="S", depth=3, n_x=1)
    cfg = TrainSettings(steps=30, batch_size=128, eval_every=10, checkpoint_every=10)
    a = Trainer(spec, resident, cfg, tmp_path / "a", DEVICE)
    b = Trainer(spec, streamed, TrainSettings(**{**cfg.to_dict(), "resident_max_gb": 1e-9,
                                                "reader_processes": readers}), tmp_path / "b", DEVICE)
    assert (b.batches._readers is not None) == (readers > 0)
    for _ in range(30):  # 2,769 rows / 128 = 21 steps per epoch
        a.train_step()
        b.train_step()
    for p, q in zip(a.params + a.ema_params, b.params + b.ema_params):
        assert torch.equal(p, q)
    b.save_checkpoint()
    c = Trainer(spec, resident, cfg, tmp_path / "b", DEVICE)
    assert c.try_resume() and c.step == 30


def test_a_streamed_split_holds_its_targets_in_memory_only_within_the_budget(tiny_dataset):
    from amips_bench.core.rows import NpyRows
    from amips_bench.models.evaluation import load_streamed

    folder = tiny_dataset / "targets" / "c4"
    expected = np.load(folder / "train_top1.npy")
    for budget, in_memory in ((expected.nbytes, True), (expected.nbytes - 1, False)):
        split = load_streamed(folder / "train_queries.npy", folder / "train_top1.npy", 3000, 32, 4,
                              resident_top1_max_bytes=budget, chunk=1000)
        assert isinstance(split.queries, NpyRows) and isinstance(split.top1, np.ndarray) == in_memory
        if in_memory:
            np.testing.assert_array_equal(split.top1, expected)
            assert split.files == [split.queries]


@pytest.mark.parametrize("budget", [0, 1e9])
def test_a_streamed_split_refuses_a_target_out_of_range_in_any_chunk(tiny_dataset, tmp_path, budget):
    from amips_bench.models.evaluation import load_streamed

    folder = tiny_dataset / "targets" / "c1"
    top1 = np.load(folder / "train_top1.npy")
    top1[2500, 0] = 3000
    np.save(tmp_path / "train_top1.npy", top1)
    with pytest.raises(InputError, match=r"train_top1\.npy: indices must lie in \[0, 3000\), found range "
                                         r"\[\d+, 3000\] in rows from 2000$"):
        load_streamed(folder / "train_queries.npy", tmp_path / "train_top1.npy", 3000, 32, 1,
                      resident_top1_max_bytes=budget, chunk=1000)


def test_a_finished_streamed_run_stops_its_reader_processes(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("amips_bench.models.training.reader_processes", lambda n: n)
    streamed = load_dataset(tiny_dataset, 1, DEVICE, stream_train_over_bytes=0)
    spec = ModelSpec(model="keynet", d=32, n_keys=3000, size="S", depth=3, n_x=1)
    trainer = Trainer(spec, streamed, TrainSettings(steps=4, batch_size=128, eval_every=4,
                                                  reader_processes=2), tmp_path, DEVICE)
    readers = list(trainer.batches._readers._readers)
    trainer.run()
    assert len(readers) == 2 and [p.poll() for p in readers] == [0, 0]


@pytest.mark.parametrize("requested, cores, used", [(8, 16, 8), (8, 2, 2), (2, 8, 2), (8, 1, 0), (1, 8, 0),
                                                    (0, 8, 0)])
def test_reader_processes_are_at_most_one_per_usable_core(requested, cores, used, monkeypatch):
    """More readers than cores only take turns; a single reader process only adds a copy."""
    from amips_bench.core.rows import reader_processes

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert reader_processes(requested) == used


def test_a_refused_capture_is_logged_by_its_first_error_and_where_it_was_issued():
    """CUDA reports a refused capture at its end as 'a previous error during capture'; the log
    names the error that came first and the line that issued it (in this package and innermost)."""
    from amips_bench.models.training import capture_refusal

    def step_body():
        raise RuntimeError("CUDA error: operation would make the legacy stream depend on a "
                           "capturing blocking stream\nSearch for `cudaErrorStreamCaptureImplicit'")

    try:
        try:
            step_body()
        finally:  # what leaving torch.cuda.graph does after a failed body
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")
    except RuntimeError as err:
        line = capture_refusal(err)
    assert line.startswith("CUDA error: operation would make the legacy stream depend on a "
                           "capturing blocking stream at ")
    assert "\n" not in line and line.endswith(" step_body")
    assert capture_refusal(RuntimeError("plain")) == "plain"  # no traceback: the message alone
