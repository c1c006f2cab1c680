"""Training loop of paper §4.1: Adam, warmup + cosine, sqrt batch scaling, EMA, clipping.

On a GPU the whole step (batch gather, loss with its double backward, clipping, fused Adam,
EMA) is captured once as a CUDA graph and replayed, so the host launches one graph per step
instead of hundreds of kernels; learning rate and EMA weight live in device tensors the replay
reads. Eager and graph steps compute the same function (tests/test_gpu.py).

Resumability: the batch of step t is a pure function of (seed, t) (one permutation per epoch),
and a checkpoint holds the weights, EMA, optimizer moments, history and elapsed time. A run
killed at any point (even kill -9) and re-run with the same arguments continues from its last
checkpoint and ends with the same weights as an uninterrupted run. SIGTERM (what a cluster
sends before its walltime kill, or on preemption) and a spent time budget (`max_minutes`) make
the loop save a checkpoint at the step it is on and stop (TrainingStopped); the re-run continues
from that step to the same weights.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..core.devices import cpu_has_bf16_units
from ..core.errors import InputError
from ..core.layout import DatasetFiles
from ..core.provenance import device_name, package_versions
from ..core.rows import EpochSampler, StreamedBatches, StreamedSplit, reader_processes, release_freed_memory
from ..core.stage_settings import TrainSettings
from ..core.storage import atomic_path, load_embeddings, read_file, save_csv, save_json, save_questions
from ..datasets.targets import cuda_matmul_mode, full_fp32_matmul
from .evaluation import DatasetTensors, evaluate_model, load_dataset
from .losses import compute_loss
from .networks import ModelSpec, SupportNet, build_model, save_model

CHECKPOINT_NAME = "checkpoint.pt"
TRIM_EVERY = 25  # steps between returns of freed heap memory to the OS (CPU only)
LIVE_QUERIES = 4096  # validation queries the live-unit fractions are measured on


class NonFiniteLoss(RuntimeError):
    """Training produced NaN/Inf; the last good checkpoint is kept on disk."""




def train_precision(setting: str, device: torch.device) -> str:
    """The precision a run uses on `device`: `auto` is bf16 autocast on a CPU with bf16 matrix
    units (2.2-2.5× faster steps at sizes S and M, the same numbers within one standard error:
    benchmarks/results/train_throughput_cpu.md, bf16_training_cpu.md) and fp32 elsewhere (a
    GPU's precision is set explicitly)."""
    if setting != "auto":
        return setting
    return "bf16" if device.type == "cpu" and cpu_has_bf16_units() else "fp32"


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device):
    """tf32 matmuls or bf16 autocast on request; plain fp32 otherwise."""
    if precision == "bf16":
        # no cast cache: a cached bf16 copy of a weight would be stale inside a CUDA graph
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False):
            yield
        return
    if precision == "tf32" and device.type == "cuda":
        with cuda_matmul_mode("tf32"):
            yield
        return
    yield






def capture_refusal(err: BaseException) -> str:
    """What refused a capture, for the log: the first error (CUDA reports the rest as 'a
    previous error during capture') and the innermost line of Python that issued it."""
    first = err
    while first.__context__ is not None and isinstance(first.__context__, RuntimeError):
        first = first.__context__
    frames = traceback.extract_tb(first.__traceback__)
    package = Path(__file__).resolve().parents[1]
    ours = [f for f in frames if package in Path(f.filename).resolve().parents]
    lines = dict.fromkeys(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in ours[-1:] + frames[-1:])
    return str(first).splitlines()[0] + (f" at {' → '.join(lines)}" if lines else "")


class TrainingStopped(Exception):
    """Training stopped before its last step, after saving a checkpoint there: a re-run of the
    same command continues from it."""


#: exit status of a train job that checkpointed and stopped early (EX_TEMPFAIL): the workflow
#: sees an unfinished job, and its next attempt resumes
STOPPED_EXIT = 75


@contextlib.contextmanager
def sigterm_requests_stop():
    """While the block runs, SIGTERM sets the yielded event instead of killing the process (in
    the main thread; elsewhere signals cannot be caught and the event stays unset)."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: requested.set())
    try:
        yield requested
    finally:
        signal.signal(signal.SIGTERM, previous)


class Trainer:
    """One model, one dataset: owns the model, its EMA copy, the optimizer and the history.

    `stop` (an event, e.g. set by SIGTERM) and `max_seconds` (a wall-clock budget for this
    process, kept with room for a step and a checkpoint) end a run early with a checkpoint."""

    def __init__(self, spec: ModelSpec, data: DatasetTensors, cfg: TrainSettings,
                 out_dir: str | Path, device: torch.device, *, stop: threading.Event | None = None,
                 max_seconds: float = 0.0) -> None:
        if data.n_clusters != spec.n_clusters:
            raise InputError(f"clusters: model has {spec.n_clusters} outputs but the targets have "
                             f"{data.n_clusters} clusters")
        if data.keys.shape[1] != spec.d:
            raise InputError(f"d: model dimension {spec.d} differs from the keys' {data.keys.shape[1]}")
        self.spec, self.data, self.cfg, self.device = spec, data, cfg, device
        self.precision = train_precision(cfg.precision, device)
        self.out_dir = Path(out_dir)
        torch.manual_seed(cfg.seed)
        self.model = build_model(spec).to(device)
        self.ema = build_model(spec).to(device)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        # the fused CUDA kernel updates every parameter in one launch (same arithmetic as Adam);
        # with CUDA graphs the learning rate is a device tensor the captured step reads
        self.use_graph = cfg.cuda_graph and device.type == "cuda"
        self._lr = torch.tensor(cfg.peak_lr, device=device) if self.use_graph else None
        self._ema_weight = torch.zeros((), device=device)
        self.optimizer = torch.optim.Adam(self.model.parameters(),
                                          lr=self._lr if self.use_graph else cfg.peak_lr,
                                          fused=device.type == "cuda",
                                          capturable=self.use_graph)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[torch.Tensor, ...] = ()  # what a graph replay reads each step
        self.params = [p for p in self.model.parameters()]
        self.ema_params = [p for p in self.ema.parameters()]
        train = data.splits["train"]
        self.streamed = isinstance(train, StreamedSplit)
        # a streamed split is gathered on the host: its batch indices stay there too
        self.sampler = EpochSampler(len(train.queries), cfg.batch_size, cfg.seed,
                                    torch.device("cpu") if self.streamed else device)
        self.batches = (StreamedBatches(train, self.sampler, device, reader_processes(cfg.reader_processes))
                        if self.streamed else None)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        self.train_loss_sum = torch.zeros((), device=device)
        self.train_loss_count = 0
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.stop, self.max_seconds = stop or threading.Event(), max_seconds
        self.started = time.monotonic()
        self.slowest_step = self.slowest_save = 0.0
        self.min_reserve = 5.0  # seconds kept for the last step and checkpoint before any is timed

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def _identity(self) -> dict:
        """What a checkpoint must match to be resumed (how steps execute is not part of it)."""
        config = {k: v for k, v in self.cfg.to_dict().items() if k not in TrainSettings.EXECUTION_ONLY}
        return {"spec": self.spec.to_dict(), "config": config}

    def save_checkpoint(self, path: Path | None = None) -> None:
        t0 = time.monotonic()
        self._save_checkpoint(path)
        self.slowest_save = max(self.slowest_save, time.monotonic() - t0)

    def _save_checkpoint(self, path: Path | None = None) -> None:
        if bool(self.nonfinite):
            raise NonFiniteLoss(self._nan_message())
        payload = {
            **self._identity(), "step": self.step, "model": self.model.state_dict(),
            "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
            "history": self.history, "elapsed": self.elapsed,
            "train_loss_sum": self.train_loss_sum.cpu(), "train_loss_count": self.train_loss_count,
        }
        with atomic_path(path or self.checkpoint_path) as tmp:
            torch.save(payload, tmp)

    def try_resume(self, resume_from: str | Path | None = None) -> bool:
        """Load the run's own checkpoint if it belongs to this exact run, or else the previous
        segment's (`resume_from`, which must); otherwise start fresh. Of the two, the one
        further on: a segment killed after its own checkpoint continues from there."""
        found = []
        load = lambda p: torch.load(p, map_location=self.device, weights_only=False)  # noqa: E731
        if self.checkpoint_path.exists():
            try:
                own = read_file(self.checkpoint_path, load, kind="checkpoint", remedy="")
            except InputError as exc:  # a damaged checkpoint of its own: set aside, go on
                aside = self.checkpoint_path.with_name(
                    f"{self.checkpoint_path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
                self.checkpoint_path.rename(aside)
                print(f"[train] {exc}; set aside as {aside.name}, training "
                      f"{'from the previous segment' if resume_from else 'from scratch'}", flush=True)
                own = None
            if own is not None and {k: own.get(k) for k in ("spec", "config")} == self._identity():
                found.append(own)
            elif own is not None:
                print(f"[train] {self.checkpoint_path} belongs to a different configuration; "
                      f"starting from scratch", flush=True)
        if resume_from:
            previous = read_file(resume_from, load, kind="checkpoint of the previous segment",
                                 remedy="delete the run's checkpoints to train it from scratch")
            if {k: previous.get(k) for k in ("spec", "config")} != self._identity():
                raise InputError(f"{resume_from}: the previous segment trained another model or "
                                 f"configuration than {self.spec.name}")
            found.append(previous)
        if not found:
            return False
        payload = max(found, key=lambda p: p["step"])
        self.model.load_state_dict(payload["model"])
        self.ema.load_state_dict(payload["ema"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step, self.history, self.elapsed = payload["step"], payload["history"], payload["elapsed"]
        self.train_loss_sum = payload["train_loss_sum"].to(self.device)
        self.train_loss_count = payload["train_loss_count"]
        print(f"[train] resumed {self.spec.name} at step {self.step}", flush=True)
        return True

    # ------------------------------------------------------------------ steps

    def _nan_message(self) -> str:
        kept = (f"last good checkpoint kept at {self.checkpoint_path}"
                if self.checkpoint_path.exists() else "no checkpoint was written yet")
        return f"non-finite training loss by step {self.step} of {self.spec.name}; {kept}"

    def train_step(self) -> None:
        lr, decay = self.cfg.lr_at(self.step), self.cfg.ema_decay_at(self.step)
        batch = self._batch_inputs(self.step)
        if self.use_graph and self._graph is None:
            self._capture(batch)
        if self.use_graph:
            for static, value in zip(self._static, batch):
                static.copy_(value)
            self._lr.fill_(lr)
            self._ema_weight.fill_(1.0 - decay)
            self._graph.replay()
        else:
            for group in self.optimizer.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(lr)
                else:
                    group["lr"] = lr
            self._ema_weight.fill_(1.0 - decay)
            self._step_body(*batch)
        self.train_loss_count += 1
        self.step += 1

    def _batch_inputs(self, step: int) -> tuple[torch.Tensor, ...]:
        """What a step starts from: the batch indices (resident data) or the gathered rows."""
        if self.streamed:
            return self.batches.get(step)
        return (self.sampler.indices(step),)

    def _step_body(self, *batch: torch.Tensor) -> None:
        """One optimisation step; reads lr and EMA weight from their holders."""
        cfg = self.cfg
        if self.streamed:
            x, top1 = batch
        else:
            split = self.data.splits["train"]
            x, top1 = split.queries[batch[0]], split.top1[batch[0]]
        y_star = self.data.keys[top1]
        sigma = torch.einsum("bcd,bd->bc", y_star, x)
        with precision_context(self.precision, self.device):
            loss, _ = compute_loss(self.model, x, y_star, sigma, cfg.weights)
        self.optimizer.zero_grad(set_to_none=True)  # in a graph: gradients from its own pool
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip, foreach=True)
        self.optimizer.step()
        if isinstance(self.model, SupportNet) and self.spec.convexity == "clip":
            self.model.clip_()
        with torch.no_grad():  # else each update chains the EMA into the autograd graph
            for ema, param in zip(self.ema_params, self.params):  # 0-d device weight: capturable
                ema.lerp_(param, self._ema_weight)
        loss = loss.detach()
        self.nonfinite |= ~torch.isfinite(loss)
        self.train_loss_sum += loss

    def _optimizer_state(self) -> list[torch.Tensor]:
        return [t for s in self.optimizer.state.values() for t in s.values()
                if isinstance(t, torch.Tensor)]

    def _capture(self, batch: tuple[torch.Tensor, ...]) -> None:
        """Warm up on a side stream (allocations, cuBLAS handles, optimizer state), restore the
        state the warm-up touched, then capture one step into a CUDA graph.

        Capturing runs no kernel, and the restore makes the warm-up invisible: the replayed
        steps are the run's steps, as in eager mode.
        """
        if self.batches is not None:
            self.batches.settle()  # no pinned allocation on the loader thread during capture
        gc.collect()  # drop stale autograd graphs (of any model) before capturing
        core = self.params + self.ema_params + [self.train_loss_sum, self.nonfinite]
        saved_core = [t.clone() for t in core]
        saved_state = [t.clone() for t in self._optimizer_state()]  # empty for a fresh Adam
        for group in self.optimizer.param_groups:  # a resumed optimizer may hold a float lr
            group["lr"] = self._lr
        self._static = tuple(t.clone() for t in batch)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step_body(*self._static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._restore(core, saved_core, saved_state)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=side):  # the warm-up's stream, so autograd's
                self._step_body(*self._static)          # gradient accumulators match it
        except RuntimeError as err:
            # a refused capture costs speed, not results: the same step runs eagerly, from
            # the state the warm-up started at. Seen with torch 2.11 on an H100 and an H200:
            # the first capture of a process is refused ("operation would make the legacy
            # stream depend on a capturing blocking stream"), later ones in it are taken; an
            # eager backward on the default stream before it, an eager step of the same
            # trainer, relaxed or thread-local capture modes and eager module loading did not
            # change that (tests/test_gpu.py::test_cuda_graph_steps_equal_eager_steps)
            cause = capture_refusal(err)
            del err  # its traceback holds the failed step's autograd graph
            gc.collect()
            torch.cuda.synchronize(self.device)
            self._restore(core, saved_core, saved_state)
            self.use_graph = False
            print(f"[train] CUDA graph capture refused ({cause}); training continues without it",
                  flush=True)
            return
        self._graph = graph

    def _restore(self, core: list[torch.Tensor], saved_core: list[torch.Tensor],
                 saved_state: list[torch.Tensor]) -> None:
        """Undo the warm-up: weights, EMA, loss sums, and the optimizer state as it was."""
        with torch.no_grad():
            for tensor, value in zip(core, saved_core):
                tensor.copy_(value)
            state = self._optimizer_state()
            if saved_state:
                for tensor, value in zip(state, saved_state):
                    tensor.copy_(value)
            else:  # fresh Adam: moments and step count start at zero
                for tensor in state:
                    tensor.zero_()
        self.optimizer.zero_grad(set_to_none=True)

    def evaluate(self, split: str = "val", questions: dict | None = None) -> dict[str, float]:
        """Metrics in float32 whatever the training precision (no autocast, no TF32);
        `questions` receives their per-question outcomes."""
        with full_fp32_matmul():
            return evaluate_model(self.ema, self.data.splits[split], self.data, self.cfg.weights,
                                  batch=self.cfg.eval_batch, questions=questions)

    def live_fractions(self) -> list[float]:
        """Positive pre-activations per hidden layer of the EMA model on validation queries."""
        with full_fp32_matmul():
            return self.ema.trunk.live_fractions(self.data.splits["val"].queries[:LIVE_QUERIES])

    def log_evaluation(self) -> dict[str, Any]:
        row: dict[str, Any] = {"step": self.step, "lr": self.cfg.lr_at(max(0, self.step - 1)),
                               "elapsed_s": round(self.elapsed, 3)}
        train_loss = (float(self.train_loss_sum) / self.train_loss_count
                      if self.train_loss_count else float("nan"))
        row["train_loss"] = train_loss
        row.update({f"val_{k}" if not k.startswith(("e_rel", "match", "recall", "mrr", "routing"))
                    else k: v for k, v in self.evaluate("val").items()})
        if isinstance(self.ema, SupportNet):
            row["negative_wz_fraction"] = self.ema.negative_fraction()
        row.update(live_columns(self.live_fractions()))
        self.history.append(row)
        self.train_loss_sum.zero_()
        self.train_loss_count = 0
        return row

    def run(self, progress: Callable[[dict], None] | None = None, *, until_step: int | None = None,
            segment_out: str | Path | None = None,
            resume_from: str | Path | None = None) -> dict[str, Any] | None:
        """Train to cfg.steps (resuming if possible) and write model.pt, history.csv,
        metrics.json. A segment (`until_step` before cfg.steps) trains from `resume_from` (the
        previous segment's file) to that step and saves a checkpoint there as `segment_out`
        instead; the segments of a run end with the weights of an unsegmented one."""
        if (until_step is None) != (segment_out is None):
            raise InputError("until_step and segment_out: give both for a segment, or neither")
        try:
            return self._run(progress, until_step, segment_out, resume_from)
        finally:
            if self.batches is not None:
                self.batches.close()

    def _run(self, progress, until_step, segment_out, resume_from) -> dict[str, Any] | None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.try_resume(resume_from)
        if self.evaluation_due():  # a fresh run's step 0, or a stop on (or during) an evaluation
            row = self.log_evaluation()
            if progress:
                progress(row)
        end = self.cfg.steps if until_step is None else min(self.cfg.steps, until_step)
        while self.step < end:
            t0 = time.perf_counter()
            boundary = min(self.cfg.steps, (self.step // self.cfg.eval_every + 1) * self.cfg.eval_every)
            stop = min(boundary, end)
            self.model.train()
            while self.step < stop:
                before = time.monotonic()
                self.train_step()
                self.slowest_step = max(self.slowest_step, time.monotonic() - before)
                if self._stop_reason():
                    self._sync()
                    self.elapsed += time.perf_counter() - t0
                    self.save_checkpoint()
                    raise TrainingStopped(f"{self._stop_reason()}: checkpoint saved at step "
                                          f"{self.step} of {self.cfg.steps} in {self.checkpoint_path}; "
                                          f"run the same command again to continue")
                if self.device.type == "cpu" and self.step % TRIM_EVERY == 0:
                    release_freed_memory()
                if self.step % self.cfg.checkpoint_every == 0:
                    self._sync()
                    self.elapsed += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save_checkpoint()
            self._sync()
            self.elapsed += time.perf_counter() - t0
            if bool(self.nonfinite):
                raise NonFiniteLoss(self._nan_message())
            if self.step == boundary:
                row = self.log_evaluation()
                if progress:
                    progress(row)
        if self.step < self.cfg.steps:  # the end of a segment
            self.save_checkpoint(Path(segment_out))
            self.checkpoint_path.unlink(missing_ok=True)
            print(f"[train] segment saved at step {self.step} of {self.cfg.steps} in {segment_out}",
                  flush=True)
            return None
        return self.finish()

    def evaluation_due(self) -> bool:
        """Whether the step the run stands on is an evaluation step whose row the history
        lacks: step 0 of a fresh run, or a run resumed from a checkpoint saved on an
        evaluation step before (or while) its row was logged, which would otherwise be lost
        and change the model chosen from the history."""
        on_boundary = self.step % self.cfg.eval_every == 0 or self.step == self.cfg.steps
        logged = bool(self.history) and self.history[-1]["step"] == self.step
        return on_boundary and not logged

    def _stop_reason(self) -> str:
        """Why the run must stop now: SIGTERM, or a time budget that leaves room for no more
        than the next step and a checkpoint (twice the slowest of each so far, and at least
        min_reserve)."""
        if self.stop.is_set():
            return "SIGTERM"
        if self.max_seconds > 0:
            reserve = max(self.min_reserve, 2 * (self.slowest_step + self.slowest_save))
            if time.monotonic() - self.started + reserve >= self.max_seconds:
                return f"time budget of {self.max_seconds / 60:g} minutes"
        return ""

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def finish(self) -> dict[str, Any]:
        outcomes: dict[str, dict] = {"test": {}, "val": {}}
        test = self.evaluate("test", outcomes["test"])
        self.evaluate("val", outcomes["val"])
        n_params = sum(p.numel() for p in self.ema.parameters())
        metrics: dict[str, Any] = {
            "dataset": self.data.name, "model": self.spec.model, "size": self.spec.size, "depth": self.spec.depth,
            "n_x": self.spec.n_x, "n_clusters": self.spec.n_clusters, "width": self.spec.width,
            "width_rule": self.spec.width_rule, "parameters": n_params, "budget": self.spec.budget,
            "split_mode": self.data.split_mode, "leaky": self.data.split_mode == "official",
            "steps": self.step, "train_seconds": round(self.elapsed, 3),
            "device": device_name(self.device), "precision": self.precision,
            "precision_setting": self.cfg.precision,
            "convexity": self.spec.convexity if self.spec.model == "supportnet" else "",
            "init": self.spec.init if self.spec.model == "supportnet" else "",
            "key_reduction": self.cfg.weights.key_reduction, "ema_warmup": self.cfg.ema_warmup,
            "seed": self.cfg.seed, "spec": self.spec.to_dict(), "config": self.cfg.to_dict(),
            "versions": package_versions(),
            "test": test, "n_test": len(self.data.splits["test"].queries),
        }
        if isinstance(self.ema, SupportNet):
            metrics["negative_wz_fraction"] = self.ema.negative_fraction()
        live = self.live_fractions()
        metrics["live_fractions"] = live
        metrics.update(live_columns(live))
        save_model(self.out_dir / "model.pt", self.ema,
                   {"steps": self.step, "config": self.cfg.to_dict()})
        save_csv(self.out_dir / "history.csv", self.history)
        save_questions(DatasetFiles.questions_beside(self.out_dir / "metrics.json"),
                       {f"{split}_{name}": values for split, arrays in outcomes.items()
                        for name, values in arrays.items()})
        save_json(self.out_dir / "metrics.json", metrics)
        self.checkpoint_path.unlink(missing_ok=True)
        return metrics


def live_columns(fractions: list[float]) -> dict[str, float]:
    """live_l1 … live_lL (positive pre-activations of each hidden layer) and their minimum."""
    return {**{f"live_l{i}": f for i, f in enumerate(fractions, start=1)}, "live_min": min(fractions)}


def train_run(dataset_dir: str | Path, out_dir: str | Path, cfg: TrainSettings, device: torch.device,
              progress: Callable[[ModelSpec, dict], None] | None = None, max_minutes: float = 0.0,
              until_step: int | None = None, segment_out: str | Path | None = None,
              resume_from: str | Path | None = None, **spec: Any) -> dict[str, Any] | None:
    """The train stage: a ModelSpec sized for this dataset's keys (`spec`: model, size, depth,
    n_x, n_clusters, ...), its data (streamed if larger than cfg.resident_max_gb), one run.
    SIGTERM or a spent budget of `max_minutes` (0: none) stops it with a checkpoint
    (TrainingStopped). A segment (until_step, segment_out, resume_from) returns None."""

    keys = load_embeddings(DatasetFiles(dataset_dir).keys, mmap=True, check=False)
    model_spec = ModelSpec(d=keys.shape[1], n_keys=keys.shape[0], **spec)
    data = load_dataset(dataset_dir, model_spec.n_clusters, device,
                        stream_train_over_bytes=cfg.resident_max_gb * 1e9)
    show = (lambda row: progress(model_spec, row)) if progress else None
    with sigterm_requests_stop() as stop:
        return Trainer(model_spec, data, cfg, out_dir, device, stop=stop,
                       max_seconds=60 * max_minutes).run(
            progress=show, until_step=until_step, segment_out=segment_out, resume_from=resume_from)
