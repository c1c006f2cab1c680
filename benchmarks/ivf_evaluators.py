"""Seconds for one IVF nprobe sweep: a FAISS search at every nprobe vs one exact pass.

Unit-norm random keys and queries (d = 384), an inner-product IVF with nlist = √n built as the
suite builds the paper's, the target the exact top key; the sweep is nprobe = 1, 2, 4, ... up
to nlist. Both evaluators measure the same recall and MRR (checked here too); what differs is
the time. FAISS searches all queries at each nprobe; the pass scores each query once against
every key (float64 GEMMs on the CPU, or the GPU where torch has one).

    python benchmarks/ivf_evaluators.py --keys 20000 1000000 --queries 1000 [--out FILE.md]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from amips_bench.experiments.ivf import build_ivf, recall_and_mrr
from amips_bench.experiments.ivf_ranks import all_nprobe_metrics


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), d)).astype(np.float32)
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top1(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    return index.search(queries, 1)[1][:, 0]


def measure(n_keys: int, n_queries: int, d: int, ks: list[int]) -> dict:
    rng = np.random.default_rng(0)
    keys, queries = unit_rows(rng, n_keys, d), unit_rows(rng, n_queries, d)
    target = exact_top1(keys, queries)
    index = build_ivf(keys, max(1, round(np.sqrt(n_keys))), seed=0)
    nprobes = [p for p in (2 ** i for i in range(20)) if p <= index.nlist]
    t0 = time.perf_counter()
    searched = []
    for p in nprobes:
        index.nprobe = p
        searched.append(recall_and_mrr(index.search(queries, max(ks))[1], target, ks))
    faiss_s = time.perf_counter() - t0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    passed = all_nprobe_metrics(index, queries, target, nprobes, ks, device)
    pass_s = time.perf_counter() - t0
    agree = all(abs(a[k] - b[k]) < 1e-9 for a, b in zip(searched, passed) for k in a)
    return {"keys": n_keys, "queries": n_queries, "nlist": index.nlist, "nprobes": len(nprobes),
            "faiss_s": faiss_s, "pass_s": pass_s, "pass_device": device, "agree": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, nargs="+", default=[20_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rows = [measure(n, args.queries, args.d, [1, 10, 100]) for n in args.keys]
    lines = [f"# One IVF nprobe sweep: FAISS search per nprobe vs one exact pass "
             f"({platform.machine()}, {faiss.omp_get_max_threads()} FAISS threads, "
             f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
             f"faiss {faiss.__version__})", "",
             f"Command: `python benchmarks/ivf_evaluators.py --keys {' '.join(map(str, args.keys))} "
             f"--queries {args.queries}`", "",
             "| keys | queries | nlist | nprobe values | FAISS sweep (s) | one pass (s) | pass on | "
             "FAISS / pass | same metrics |", "|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in rows:
        lines.append(f"| {r['keys']:,} | {r['queries']:,} | {r['nlist']:,} | {r['nprobes']} | "
                     f"{r['faiss_s']:.2f} | {r['pass_s']:.2f} | {r['pass_device']} | "
                     f"{r['faiss_s'] / r['pass_s']:.1f}× | {'yes' if r['agree'] else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
