"""Training throughput: samples/s and achieved FLOP/s of whole training steps, against the
matrix-product peak of the same device measured in the same run.

A "step" is `Trainer.train_step` exactly as training runs it: batch assembly from the
training tensors resident on the device (index + gather of the targets), loss with the double
backward for SupportNet, gradient clipping, Adam (the fused kernel on a GPU), and the EMA
update. FLOPs are counted by FlopCounterMode on one real step (matmuls of forward, backward
and, for SupportNet, the double backward). Step time is the median over blocks of consecutive
steps with one synchronisation per block, which is how training runs.

Peaks: the best rate of a large square matmul per precision (fp32 = IEEE float32, tf32, bf16),
measured before and after the models (a high peak makes the percentages conservative). Every
row is reported against its own precision's peak and against the bf16 peak.

Host synchronisation: on a GPU, each configuration runs a few steps under
torch.cuda.set_sync_debug_mode("warn"); the column "syncs/step" counts the synchronising calls
PyTorch reported there (0 means the host never waits for the GPU inside a step).

    python benchmarks/train_throughput.py --precision fp32 bf16  # CPU: KeyNet and SupportNet, S and M
    python benchmarks/train_throughput.py --device cuda --precision fp32 tf32 bf16 \
        --clusters 1 10 --out benchmarks/results/train_throughput_h200
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from amips_bench.core.devices import cpu_has_bf16_units
from amips_bench.core.provenance import cpu_model
from amips_bench.core.stage_settings import TrainSettings
from amips_bench.core.storage import save_csv, save_text
from amips_bench.datasets.targets import ClusterLayout, full_fp32_matmul
from amips_bench.models.evaluation import DatasetTensors, SplitData
from amips_bench.models.networks import ModelSpec
from amips_bench.models.training import Trainer, precision_context

MATMUL_DTYPE = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_peak(device: torch.device, precision: str, size: int, repeats: int = 10) -> float:
    """FLOP/s of a size³ matmul in `precision` on random data: the best of several runs."""
    dtype = MATMUL_DTYPE[precision]
    gen = torch.Generator(device=device).manual_seed(1)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    with full_fp32_matmul() if precision == "fp32" else precision_context(precision, device):
        for _ in range(3):
            a @ b
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            a @ b
            sync(device)
            times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / min(times)


def synthetic_data(n_keys: int, d: int, n_train: int, device: torch.device,
                   clusters: int = 1) -> DatasetTensors:
    """Random unit keys/queries and random per-cluster target indices: throughput does not
    depend on them."""
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(n_keys, d, generator=gen)
    keys /= keys.norm(dim=1, keepdim=True)
    queries = torch.randn(n_train, d, generator=gen)
    queries /= queries.norm(dim=1, keepdim=True)
    assignments = torch.arange(n_keys) % clusters
    top1 = torch.randint(n_keys // clusters, (n_train, clusters), generator=gen) * clusters
    top1 += torch.arange(clusters)  # key j·c + i belongs to cluster i
    split = SplitData(queries.to(device), top1.to(device))
    layout = ClusterLayout.from_assignments(assignments.numpy() if clusters > 1 else None,
                                            n_keys, clusters)
    return DatasetTensors(keys.to(device), layout, {"train": split, "val": split, "test": split},
                          "throughput")


def count_host_syncs(trainer: Trainer, steps: int) -> float:
    """Synchronising calls per step that PyTorch's sync debug mode reports (GPU only)."""
    if trainer.device.type != "cuda":
        return float("nan")
    sync(trainer.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                trainer.train_step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sync(trainer.device)
    return len([w for w in caught if "synchroniz" in str(w.message).lower()]) / steps


def count_step_flops(spec: ModelSpec, cfg: TrainSettings, data: DatasetTensors,
                     device: torch.device) -> float:
    """Matmul FLOPs of one eager step (a CUDA-graph replay is the same kernels, uncountable)."""
    cfg = TrainSettings(**{**cfg.to_dict(), "cuda_graph": False})
    trainer = Trainer(spec, data, cfg, "/tmp/amips-throughput-unused", device)
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    del trainer
    return counter.get_total_flops()


def measure(model: str, size: str, clusters: int, args, data: DatasetTensors,
            device: torch.device, precision: str, graph: bool) -> dict:
    spec = ModelSpec(model=model, d=args.d, n_keys=args.n_keys, size=size, depth=args.depth,
                     n_x=args.nx, n_clusters=clusters)
    cfg = TrainSettings(steps=10 ** 6, batch_size=args.batch, lr_at_128=1e-4, precision=precision,
                      cuda_graph=graph)
    torch.manual_seed(0)
    trainer = Trainer(spec, data[clusters], cfg, "/tmp/amips-throughput-unused", device)
    trainer.train_step()  # captures the graph when there is one
    for _ in range(args.warmup):
        trainer.train_step()
    syncs = count_host_syncs(trainer, 3)
    per_step = []
    for _ in range(args.blocks):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        sync(device)
        per_step.append((time.perf_counter() - t0) / args.steps)
    seconds = statistics.median(per_step)
    loss = float(trainer.train_loss_sum) / max(1, trainer.train_loss_count)
    row = {"model": model, "size": size, "clusters": clusters, "depth": args.depth,
           "n_x": args.nx, "width": spec.width, "width_rule": spec.width_rule,
           "cuda_graph": trainer.use_graph,
           "parameters": sum(p.numel() for p in trainer.model.parameters()),
           "batch": args.batch, "precision": precision, "step_s": seconds,
           "samples_per_s": args.batch / seconds, "syncs_per_step": syncs,
           "mean_train_loss": loss}
    graph_used = trainer.use_graph
    del trainer
    gc.collect()
    flops = count_step_flops(spec, cfg, data[clusters], device)  # after: no eager step before a capture
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    row.update({"cuda_graph": graph_used, "flop_per_step": flops, "achieved_flops": flops / seconds})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-keys", type=int, default=513_000, help="key count that sizes the models (Quora)")
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--nx", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="default: 4096 on a GPU (the paper's), 1024 on a CPU")
    parser.add_argument("--sizes", nargs="+", default=["S", "M"])
    parser.add_argument("--models", nargs="+", default=["keynet", "supportnet"])
    parser.add_argument("--clusters", type=int, nargs="+", default=[1])
    parser.add_argument("--precision", nargs="+", default=["fp32"], help="fp32, tf32 and/or bf16 (GPU)")
    parser.add_argument("--graph", nargs="+", default=["on"], choices=["on", "off"],
                        help="GPU: CUDA-graph training step, eager, or both (on off)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed block (default: 10 GPU, 1 CPU)")
    parser.add_argument("--blocks", type=int, default=5, help="timed blocks; the median is reported")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gemm-size", type=int, default=None, help="default: 8192 on a GPU, 4096 on a CPU")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="", help="also write STEM.csv and STEM.md")
    args = parser.parse_args()

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.batch = args.batch or (4096 if gpu else 1024)
    args.steps = args.steps or (10 if gpu else 1)
    gemm_size = args.gemm_size or (8192 if gpu else 4096)
    data = {c: synthetic_data(args.n_keys, args.d, 50_000, device, c) for c in args.clusters}
    rows, peaks = [], {}
    for precision in dict.fromkeys(args.precision + (["bf16"] if gpu else [])):
        peaks[precision] = gemm_peak(device, precision, gemm_size)
    graphs = [g == "on" for g in args.graph] if gpu else [False]
    for precision in args.precision:
        for size in args.sizes:
            for clusters in args.clusters:
                for model in args.models:
                    for graph in graphs:
                        rows.append(measure(model, size, clusters, args, data, device,
                                            precision, graph))
                        # a run cut short (a time limit) keeps every row it measured
                        write_tables(rows, peaks, args, gemm_size, device, final=False)
    for precision in peaks:
        peaks[precision] = max(peaks[precision], gemm_peak(device, precision, gemm_size))
    write_tables(rows, peaks, args, gemm_size, device, final=True)


def write_tables(rows: list[dict], peaks: dict[str, float], args, gemm_size: int,
                 device: torch.device, final: bool) -> None:
    """The Markdown table (printed when final) and, with --out, STEM.md and STEM.csv, each
    written whole to a temporary name and renamed."""
    gpu = device.type == "cuda"
    if gpu:
        name = torch.cuda.get_device_name(device)
        driver = torch.cuda.driver_version() if hasattr(torch.cuda, "driver_version") else ""
        where = f"{name}, CUDA {torch.version.cuda}{f', driver {driver}' if driver else ''}"
    else:
        where = (f"{cpu_model()} (bf16 matrix units: {'yes' if cpu_has_bf16_units() else 'no'}), "
                 f"{torch.get_num_threads()} threads")
    bf16_peak = peaks.get("bf16")
    for r in rows:
        r["peak_flops"] = peaks[r["precision"]]
        r["pct_of_own_peak"] = 100 * r["achieved_flops"] / r["peak_flops"]
        r["pct_of_bf16_peak"] = 100 * r["achieved_flops"] / bf16_peak if bf16_peak else float("nan")
        r["device"], r["torch"] = where, torch.__version__
    lines = [f"# training-step throughput; {where}; torch {torch.__version__}; n = {args.n_keys:,}, "
             f"d = {args.d}, depth {args.depth}, n_x {args.nx}, batch {args.batch}, widths by the paper's "
             f"rule (eq. 3.3); median over "
             f"{args.blocks} blocks of {args.steps} steps after {args.warmup} warm-ups",
             "",
             "Measured matmul peaks (" + ", ".join(f"{p} {v / 1e12:,.1f} TFLOP/s" for p, v in peaks.items())
             + f"; {gemm_size}³, random data).",
             "",
             "| model | c | size | width | parameters | precision | CUDA graph | step (ms) | "
             "samples/s | GFLOP/step | achieved TFLOP/s | % of own peak | % of bf16 peak | "
             "syncs/step |",
             "|---|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        bf16 = f"{r['pct_of_bf16_peak']:.0f} %" if bf16_peak else "—"
        syncs = "—" if r["syncs_per_step"] != r["syncs_per_step"] else f"{r['syncs_per_step']:g}"
        lines.append(
            f"| {r['model']} | {r['clusters']} | {r['size']} | {r['width']} | {r['parameters']:,} "
            f"| {r['precision']} | {'yes' if r['cuda_graph'] else 'no'} "
            f"| {1e3 * r['step_s']:.2f} | {r['samples_per_s']:,.0f} "
            f"| {r['flop_per_step'] / 1e9:.1f} | {r['achieved_flops'] / 1e12:.2f} "
            f"| {r['pct_of_own_peak']:.0f} % | {bf16} | {syncs} |")
    if not final:
        lines.insert(1, f"\nPartial: {len(rows)} rows so far; the peaks are those measured before "
                        f"the models only.")
    text = "\n".join(lines) + "\n"
    print(text if final else lines[-1], flush=True)
    if args.out:
        save_text(args.out + ".md", text)
        save_csv(args.out + ".csv", rows)


if __name__ == "__main__":
    main()
