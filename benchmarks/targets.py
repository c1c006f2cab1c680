"""Exact-targets throughput: amips_bench.targets.exact_top1 against faiss.IndexFlatIP.search(k=1).

Both run on identical random unit-norm data. Every timed run is its own subprocess (so its
peak resident memory, ru_maxrss, is its own), and the two methods alternate — FAISS, ours,
FAISS, ours — so that a shared machine's drift hits both alike; the speed ratio is the median
of the per-pair ratios. "extra RSS" is the peak minus the memory after the inputs were built:
what the search itself needed. Peak memory must grow with n·d, not with queries × n.

    python benchmarks/targets.py            # n = 200,000 and the n = 1,000,000 scaling row
    python benchmarks/targets.py --quick    # a small smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time


def _child(method: str, n: int, d: int, m: int, repeats: int, seed: int) -> dict:
    import faiss
    import numpy as np
    import torch

    from amips_bench.targets import exact_top1

    rng = np.random.default_rng(seed)
    keys, queries = _unit_rows(rng, n, d), _unit_rows(rng, m, d)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if method == "faiss":
        index = faiss.IndexFlatIP(d)
        index.add(keys)
        run = lambda: index.search(queries, 1)[1][:, 0]  # noqa: E731
    else:
        run = lambda: exact_top1(queries, keys, device="cpu")[1][:, 0]  # noqa: E731
    times, answer = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        answer = run()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "n": n, "d": d, "queries": m, "seconds": statistics.median(times),
            "runs": repeats, "peak_rss_mb": peak, "extra_rss_mb": peak - base_rss,
            "threads": torch.get_num_threads(), "faiss_threads": faiss.omp_get_max_threads(),
            "answer_head": answer[:64].tolist()}


def _unit_rows(rng, rows: int, d: int, chunk: int = 65_536):
    """Random unit rows generated chunk by chunk, so no temporary sets the memory high-water mark."""
    import numpy as np

    out = np.empty((rows, d), dtype=np.float32)
    for start in range(0, rows, chunk):
        block = rng.standard_normal((min(chunk, rows - start), d), dtype=np.float32)
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _spawn(method: str, n: int, d: int, m: int, repeats: int, seed: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(n), str(d), str(m),
                          str(repeats), str(seed)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, n, d, m, repeats, seed = args.child
        print(json.dumps(_child(method, int(n), int(d), int(m), int(repeats), int(seed))))
        return

    import faiss
    import torch

    d = 384
    plan = ([(20_000, 1024, 2), (40_000, 1024, 1)] if args.quick else
            [(200_000, 8192, 5), (200_000, 16384, 2), (1_000_000, 8192, 1)])
    rows = []
    for n, m, pairs in plan:
        runs = {"faiss": [], "ours": []}
        for _ in range(pairs):  # alternate the two methods
            for method in ("faiss", "ours"):
                runs[method].append(_spawn(method, n, d, m, 1, seed=0))
        ratios = [f["seconds"] / o["seconds"] for f, o in zip(runs["faiss"], runs["ours"])]
        agree = runs["faiss"][0]["answer_head"] == runs["ours"][0]["answer_head"]
        for method in ("faiss", "ours"):
            r = dict(runs[method][0])
            r["seconds"] = statistics.median(x["seconds"] for x in runs[method])
            r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs[method])
            r["extra_rss_mb"] = max(x["extra_rss_mb"] for x in runs[method])
            r["runs"] = pairs
            r["ratio_vs_faiss"] = 1.0 if method == "faiss" else statistics.median(ratios)
            r["same_top1_as_faiss"] = agree
            rows.append(r)

    print(f"# exact top-1 throughput, d = {d}; {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, faiss {faiss.__version__}, {rows[0]['threads']} threads")
    print("| n keys | queries | method | seconds (median) | Gq·k/s | GFLOP/s | × FAISS speed (median of pairs) | peak RSS MB | extra RSS MB | same answers |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        pairs = r["n"] * r["queries"]
        print(f"| {r['n']:,} | {r['queries']:,} | {r['method']} | {r['seconds']:.2f} ({r['runs']} runs) "
              f"| {pairs / r['seconds'] / 1e9:.3f} | {2 * pairs * d / r['seconds'] / 1e9:.1f} "
              f"| {r['ratio_vs_faiss']:.2f} | {r['peak_rss_mb']:.0f} | {r['extra_rss_mb']:.0f} "
              f"| {r['same_top1_as_faiss']} |")


if __name__ == "__main__":
    main()
