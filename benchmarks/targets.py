"""Exact-targets throughput: amips_bench.datasets.targets.exact_top1 against faiss.IndexFlatIP.search(k=1).

All run on identical data: random unit-norm rows, and MiniLM-like rows (the calibrated
synthetic generator, whose top-1 margins are what real runs see). "certified bf16" is the
targets stage's CertifiedTop1 (keys converted to bf16 once, as FAISS's `add`, outside the
timing): its answers must equal the fp32 search's on every row; the rows it certified and the
rows it searched again in fp32 are reported. Every timed run is its own subprocess (so its
peak resident memory, ru_maxrss, is its own), and the two methods alternate — FAISS, ours,
FAISS, ours — so that a shared machine's drift hits both alike; the speed ratio is the median
of the per-pair ratios. "extra RSS" is the peak minus the memory after the inputs were built:
what the search itself needed. Peak memory must grow with n·d, not with queries × n.

    python benchmarks/targets.py            # n = 200,000 and 1,000,000, random and MiniLM-like
    python benchmarks/targets.py --quick    # a small smoke run
    python benchmarks/targets.py --device cuda --out benchmarks/results/targets_h100

On a GPU (--device cuda) both methods run in this process: ours is `exact_top1` on the GPU
(IEEE float32, TF32 off) from host arrays to host answers, keys uploaded included; FAISS is a
GpuIndexFlatIP (the GPU build, faiss-gpu) searched for k = 1 from host queries, its one-time
`add` of the keys reported apart. Without a GPU build of FAISS the FAISS rows are absent and
said so. Each row also shows the fp32 matmul rate of the same GPU, the roofline of both.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _data(kind: str, n: int, d: int, m: int, seed: int):
    """(keys [n, d], queries [m, d]): random unit rows, or MiniLM-like ones (the calibrated
    synthetic generator)."""
    import numpy as np

    if kind == "minilm":
        from amips_bench.datasets.synthetic import SyntheticParams, generate

        keys, queries, _ = generate(SyntheticParams(n_keys=n, n_queries=max(m, int(0.41 * n)),
                                                    d=d, seed=seed))
        return keys, np.ascontiguousarray(queries[:m])
    rng = np.random.default_rng(seed)
    return _unit_rows(rng, n, d), _unit_rows(rng, m, d)


def _child(method: str, n: int, d: int, m: int, repeats: int, seed: int, data: str = "random") -> dict:
    import faiss
    import torch

    from amips_bench.datasets.targets import CertifiedTop1, exact_top1

    keys, queries = _data(data, n, d, m, seed)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    certified = []
    if method == "faiss":
        index = faiss.IndexFlatIP(d)
        index.add(keys)
        run = lambda: index.search(queries, 1)[1][:, 0]  # noqa: E731
    elif method == "certified bf16":
        search = CertifiedTop1(keys, precision="bf16", device="cpu")  # keys converted once

        def run():
            search.rows = search.certified_rows = 0
            top1 = search(queries)[1][:, 0]
            certified.append((search.certified_rows / search.rows, search.rows - search.certified_rows))
            return top1
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
            "certified": certified[-1][0] if certified else None,
            "fallback_rows": certified[-1][1] if certified else None,
            "data": data, "answer": answer.tolist()}


def _unit_rows(rng, rows: int, d: int, chunk: int = 65_536):
    """Random unit rows generated chunk by chunk, so no temporary sets the memory high-water mark."""
    import numpy as np

    out = np.empty((rows, d), dtype=np.float32)
    for start in range(0, rows, chunk):
        block = rng.standard_normal((min(chunk, rows - start), d), dtype=np.float32)
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _spawn(method: str, n: int, d: int, m: int, repeats: int, seed: int, data: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(n), str(d), str(m),
                          str(repeats), str(seed), data], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gpu_main(args) -> None:
    """exact_top1 on the GPU against FAISS's GPU flat index, alternating, medians of runs."""
    import faiss
    import numpy as np
    import torch

    from amips_bench.datasets.targets import certified_top1, exact_top1, full_fp32_matmul

    device = torch.device("cuda")
    d = 384
    plan = [(200_000, 16_384), (1_000_000, 65_536), (5_200_000, 65_536)]
    if args.quick:
        plan = [(100_000, 8192)]
    has_gpu_faiss = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    res = faiss.StandardGpuResources() if has_gpu_faiss else None

    def timed(fn):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    with full_fp32_matmul():
        a = torch.randn(8192, 8192, device=device)
        a @ a
        peak = max(2 * 8192 ** 3 / timed(lambda: a @ a)[0] for _ in range(5))
    rows = []
    for n, m in plan:
        rng = np.random.default_rng(0)
        keys, queries = _unit_rows(rng, n, d), _unit_rows(rng, m, d)
        ours_run = lambda: exact_top1(queries, keys, device=device)[1][:, 0]  # noqa: E731
        runs = {"ours": []}
        faiss_run, add_s = None, float("nan")
        if has_gpu_faiss:
            index = faiss.GpuIndexFlatIP(res, d)
            add_s, _ = timed(lambda: index.add(keys))
            faiss_run = lambda: index.search(queries, 1)[1][:, 0]  # noqa: E731
            runs["faiss"] = []
        answers = {}
        for method, fn in (("ours", ours_run), ("faiss", faiss_run)):
            if fn is not None:
                answers[method] = fn()  # warm-up and the answers compared
        for _ in range(args.repeats):
            for method, fn in (("faiss", faiss_run), ("ours", ours_run)):
                if fn is not None:
                    runs[method].append(timed(fn)[0])
        ratios = ([f / o for f, o in zip(runs["faiss"], runs["ours"])] if has_gpu_faiss else [])
        same = (float(np.mean(answers["ours"] == answers["faiss"])) if has_gpu_faiss else float("nan"))
        # certified reduced-precision searches: the same answers as ours, at what speed-up
        certified = {}
        for precision in ("bf16", "tf32"):
            method = f"certified {precision}"
            run = lambda p=precision: certified_top1(queries, keys, precision=p,  # noqa: E731
                                                     key_block=16_384, device=device)
            top1, ok = run()  # warm-up, the answers and the certified fraction
            certified[method] = (float(ok.mean()), bool(np.array_equal(top1, answers["ours"])))
            runs[method] = [timed(run)[0] for _ in range(args.repeats)]
        for method, times in runs.items():
            seconds = statistics.median(times)
            rows.append({"method": method, "n": n, "d": d, "queries": m, "seconds": seconds,
                         "runs": len(times), "gflops": 2 * n * m * d / seconds / 1e9,
                         "pct_fp32_peak": 100 * 2 * n * m * d / seconds / peak,
                         "ratio_vs_faiss": (1.0 if method == "faiss" else
                                            statistics.median(ratios) if ratios else float("nan")),
                         "same_top1_as_faiss": same,
                         "faiss_add_s": add_s if method == "faiss" else float("nan"),
                         "speedup_vs_ours": statistics.median(runs["ours"]) / seconds,
                         "certified": certified.get(method, (float("nan"), ""))[0],
                         "same_as_ours": certified.get(method, (0, method == "ours"))[1]})
        if has_gpu_faiss:
            del index
        torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(device)
    lines = [f"# exact top-1 on the GPU, d = {d}; {name}, CUDA {torch.version.cuda}, torch "
             f"{torch.__version__}, faiss {faiss.__version__} "
             f"({'GPU build' if has_gpu_faiss else 'CPU build: no FAISS GPU rows'}); fp32 matmul "
             f"peak {peak / 1e12:.1f} TFLOP/s (8192³); medians of {args.repeats} alternating runs",
             "",
             "| n keys | queries | method | seconds | GFLOP/s (fp32-equivalent) | % of fp32 peak "
             "| × FAISS GPU speed | same top-1 as FAISS | FAISS add (s) | × our speed "
             "| rows certified | same top-1 as ours |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['queries']:,} | {r['method']} | {r['seconds']:.3f} "
                     f"| {r['gflops']:,.0f} | {r['pct_fp32_peak']:.0f} % | {r['ratio_vs_faiss']:.2f} "
                     f"| {r['same_top1_as_faiss']:.6f} | {r['faiss_add_s']:.2f} "
                     f"| {r['speedup_vs_ours']:.2f} | {r['certified']:.1%} | {r['same_as_ours']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out + ".md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--device", default="cpu", help="cpu (subprocess pairs) or cuda (in-process)")
    parser.add_argument("--repeats", type=int, default=5, help="GPU: timed runs per method")
    parser.add_argument("--out", default="", help="GPU: also write STEM.md")
    parser.add_argument("--data", nargs="+", default=["random", "minilm"],
                        choices=["random", "minilm"], help="CPU: the data sets timed")
    parser.add_argument("--pairs", type=int, nargs=2, default=[3, 2],
                        help="CPU: alternating runs per method at 200,000 and at 1,000,000 keys")
    parser.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        gpu_main(args)
        return
    if args.child:
        method, n, d, m, repeats, seed, data = args.child
        print(json.dumps(_child(method, int(n), int(d), int(m), int(repeats), int(seed), data)))
        return

    import faiss
    import numpy as np
    import torch

    d = 384
    plan = ([(20_000, 1024, 1)] if args.quick else
            [(200_000, 8192, args.pairs[0]), (1_000_000, 8192, args.pairs[1])])
    methods = ("faiss", "ours", "certified bf16")
    rows = []
    for data, (n, m, pairs) in ((data, step) for data in args.data for step in plan):
        runs = {method: [] for method in methods}
        for _ in range(pairs):  # alternate the methods
            for method in methods:
                runs[method].append(_spawn(method, n, d, m, 1, seed=0, data=data))
        for method in methods:
            r = dict(runs[method][0])
            r["seconds"] = statistics.median(x["seconds"] for x in runs[method])
            r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs[method])
            r["extra_rss_mb"] = max(x["extra_rss_mb"] for x in runs[method])
            r["runs"] = pairs
            r["ratio_vs_faiss"] = statistics.median(
                f["seconds"] / x["seconds"] for f, x in zip(runs["faiss"], runs[method]))
            # FAISS's ties may differ: FAISS is compared on the rows whose answer FAISS shares
            # with ours; the certified search must equal ours on every row
            r["same_answers"] = (r["answer"] == runs["ours"][0]["answer"] if method != "faiss"
                                 else float(np.mean(np.array(r["answer"]) == np.array(runs["ours"][0]["answer"]))) > 0.999)
            rows.append(r)

    from amips_bench.core.devices import cpu_has_bf16_units
    from amips_bench.core.provenance import cpu_model

    print(f"# exact top-1 throughput, d = {d}; {cpu_model()} (bf16 matrix units: "
          f"{'yes' if cpu_has_bf16_units() else 'no'}), torch {torch.__version__}, "
          f"faiss {faiss.__version__}, {rows[0]['threads']} threads")
    print("| data | n keys | queries | method | seconds (median) | Gq·k/s | GFLOP/s | × FAISS speed (median of pairs) | peak RSS MB | extra RSS MB | rows certified | rows searched again | same answers |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        pairs = r["n"] * r["queries"]
        certified = "—" if r["certified"] is None else f"{r['certified']:.1%}"
        fallback = "—" if r["fallback_rows"] is None else f"{r['fallback_rows']:,}"
        print(f"| {r['data']} | {r['n']:,} | {r['queries']:,} | {r['method']} | {r['seconds']:.2f} ({r['runs']} runs) "
              f"| {pairs / r['seconds'] / 1e9:.3f} | {2 * pairs * d / r['seconds'] / 1e9:.1f} "
              f"| {r['ratio_vs_faiss']:.2f} | {r['peak_rss_mb']:.0f} | {r['extra_rss_mb']:.0f} "
              f"| {certified} | {fallback} | {r['same_answers']} |")


if __name__ == "__main__":
    main()
