"""Encoding throughput of all-MiniLM-L6-v2 (offline weights) for short and long texts.

Short texts stand for questions (~12 words), long ones for passages (~120 words, truncated by
the encoder at 256 word pieces like real BEIR passages). The table gives texts/s and tokens/s
measured here and, from them, the estimated encode time of each paper dataset on this CPU. The
GPU column is an estimate from the FLOPs of the encoder (2 × 22.7M parameters per token) at an
assumed sustained throughput (--gpu-tflops, default 40 TFLOP/s in fp16), not a measurement.

    python benchmarks/encode.py
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

# passages and questions of the paper's datasets (BEIR sizes, before deduplication)
DATASETS = {"fiqa": (57_638, 6_648), "quora": (522_931, 15_000), "nq": (2_681_468, 3_452),
            "hotpotqa": (5_233_329, 97_852)}
WORDS = ("market rate fund loan price tax bank credit growth account yield policy index option "
         "return risk asset money interest debt cost share value income budget capital").split()


def texts(count: int, words: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, words)) + f" {i}" for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=512, help="texts per measurement")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--gpu-tflops", type=float, default=40.0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from amips_bench.datasets.encode import load_encoder

    model = load_encoder("auto", "cpu")
    params = sum(p.numel() for p in model.parameters())
    rates = {}
    for kind, words in (("short (question)", 12), ("long (passage)", 120)):
        sample = texts(args.n, words, seed=words)
        model.encode(sample[:64], batch_size=args.batch)  # warm-up
        t0 = time.perf_counter()
        model.encode(sample, batch_size=args.batch, normalize_embeddings=True)
        seconds = time.perf_counter() - t0
        tokens = sum(min(256, len(ids)) for ids in model.tokenizer(sample)["input_ids"])
        rates[kind] = (args.n / seconds, tokens / args.n)
    print(f"# all-MiniLM-L6-v2 encoding on {platform.processor() or platform.machine()} "
          f"({torch.get_num_threads()} threads), torch {torch.__version__}, batch {args.batch}")
    print("| texts | texts/s (CPU, measured) | tokens/text |")
    print("|---|---:|---:|")
    for kind, (rate, tokens) in rates.items():
        print(f"| {kind} | {rate:,.0f} | {tokens:.0f} |")
    short_rate, short_tok = rates["short (question)"]
    long_rate, long_tok = rates["long (passage)"]
    gpu = args.gpu_tflops * 1e12 / (2 * params)  # tokens/s at the assumed sustained rate
    print()
    print(f"| dataset | passages | questions | CPU (measured rates) | one GPU (estimate, "
          f"{args.gpu_tflops:g} TFLOP/s sustained) |")
    print("|---|---:|---:|---:|---:|")
    for name, (passages, questions) in DATASETS.items():
        cpu_h = (passages / long_rate + questions / short_rate) / 3600
        gpu_h = (passages * long_tok + questions * short_tok) / gpu / 3600
        print(f"| {name} | {passages:,} | {questions:,} | {cpu_h:.1f} h | {gpu_h * 60:.1f} min |")


if __name__ == "__main__":
    main()
