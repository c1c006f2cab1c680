"""Training throughput: samples/s and achieved FLOP/s of whole training steps, as a fraction of
the float32 GEMM peak measured in the same run.

A "step" is `Trainer.train_step` exactly as training runs it: batch assembly from the
training tensors (index + gather of the targets), loss with the double backward for SupportNet,
gradient clipping, Adam, and the EMA update. FLOPs are counted by FlopCounterMode on one real
step (matmuls of forward, backward and, for SupportNet, the double backward); the GEMM peak is
the best rate of a large square matmul over runs before and after the models (a high peak
makes the percentages conservative).

    python benchmarks/train_throughput.py                        # KeyNet and SupportNet, S and M
    python benchmarks/train_throughput.py --device cuda --precision bf16 tf32 --sizes L
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from amips_bench.evaluation import DatasetTensors, SplitData
from amips_bench.models import ModelSpec
from amips_bench.settings import TrainConfig
from amips_bench.targets import ClusterLayout
from amips_bench.training import Trainer, precision_context


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """FLOP/s of a size³ matmul: the best of several runs, so the peak errs on the high side."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / min(times)


def synthetic_data(n_keys: int, d: int, n_train: int, device: torch.device) -> DatasetTensors:
    """Random unit keys/queries and random target indices: throughput does not depend on them."""
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(n_keys, d, generator=gen)
    keys /= keys.norm(dim=1, keepdim=True)
    queries = torch.randn(n_train, d, generator=gen)
    queries /= queries.norm(dim=1, keepdim=True)
    top1 = torch.randint(n_keys, (n_train, 1), generator=gen)
    split = SplitData(queries.to(device), top1.to(device))
    return DatasetTensors(keys.to(device), ClusterLayout.from_assignments(None, n_keys, 1),
                          {"train": split, "val": split, "test": split}, "throughput")


def measure(model: str, size: str, args, data: DatasetTensors, device: torch.device,
            precision: str) -> dict:
    spec = ModelSpec(model=model, d=args.d, n_keys=args.n_keys, size=size, depth=args.depth,
                     n_x=args.nx)
    cfg = TrainConfig(steps=10 ** 6, batch_size=args.batch, lr_at_128=1e-4, precision=precision)
    trainer = Trainer(spec, data, cfg, "/tmp/amips-throughput-unused", device)
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    flops = counter.get_total_flops()
    for _ in range(args.warmup):
        trainer.train_step()
    times = []
    for _ in range(args.steps):
        sync(device)
        t0 = time.perf_counter()
        trainer.train_step()
        sync(device)
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {"model": model, "size": size, "width": spec.width,
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "precision": precision, "step_s": seconds, "samples_per_s": args.batch / seconds,
            "flop_per_step": flops, "achieved_flops": flops / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-keys", type=int, default=513_000, help="key count that sizes the models (Quora)")
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--nx", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--sizes", nargs="+", default=["S", "M"])
    parser.add_argument("--models", nargs="+", default=["keynet", "supportnet"])
    parser.add_argument("--precision", nargs="+", default=["fp32"], help="fp32, tf32 and/or bf16 (GPU)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gemm-size", type=int, default=4096)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    data = synthetic_data(args.n_keys, args.d, 50_000, device)
    rows, peaks = [], {}
    for precision in args.precision:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        with precision_context(precision, device):
            before = gemm_peak(device, dtype, args.gemm_size)
            for size in args.sizes:
                for model in args.models:
                    rows.append(measure(model, size, args, data, device, precision))
            peaks[precision] = max(before, gemm_peak(device, dtype, args.gemm_size))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    print(f"# training-step throughput; {name}; torch {torch.__version__}; n = {args.n_keys:,}, "
          f"d = {args.d}, depth {args.depth}, n_x {args.nx}, batch {args.batch}; median of "
          f"{args.steps} steps after {args.warmup} warm-ups")
    print("| model | size | width | parameters | precision | step (s) | samples/s | GFLOP/step | "
          "achieved GFLOP/s | GEMM peak GFLOP/s | % of peak |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        peak = peaks[r["precision"]]
        print(f"| {r['model']} | {r['size']} | {r['width']} | {r['parameters']:,} | {r['precision']} "
              f"| {r['step_s']:.3f} | {r['samples_per_s']:,.0f} | {r['flop_per_step'] / 1e9:.1f} "
              f"| {r['achieved_flops'] / 1e9:.1f} | {peak / 1e9:.1f} "
              f"| {100 * r['achieved_flops'] / peak:.0f} % |")


if __name__ == "__main__":
    main()
