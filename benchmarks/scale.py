"""Paper-scale data without a memory wall: peak memory of split, targets and training as the
number of augmented training rows grows.

For each row count, the same synthetic keys and unique questions are split with a growing
augmentation factor (rows = unique questions × factor), then the c = 1 targets are computed
and written, then `amips-bench train` runs a few steps reading its batches from disk. Each
stage is its own process, so its peak resident memory (ru_maxrss from wait4) is its own; the
disk column is what the stage wrote. Peak memory should not grow with the rows: the targets
stage streams chunks of 262,144 rows to disk, and training reads batches of queries from the
file (train.resident_max_gb) instead of loading them; it holds only their targets, 8 bytes a
row at c = 1.

    python benchmarks/scale.py                               # 1M, 2M and 4M rows (about 13 GB of disk)
    python benchmarks/scale.py --rows 200000 400000 --unique 20000 --steps 20   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from keys_scale import run_stage  # a stage in its own process: its peak memory and seconds


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 2_000_000, 4_000_000])
    parser.add_argument("--unique", type=int, default=100_000, help="unique questions (rows / this = augmentation)")
    parser.add_argument("--keys", type=int, default=5_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--workdir", default="", help="scratch folder (default: a temporary one)")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="amips-scale-"))
    work.mkdir(parents=True, exist_ok=True)  # a --workdir not made yet
    need_gb = 1.2 * max(args.rows) * args.d * 4 / 1e9
    free_gb = shutil.disk_usage(work).free / 1e9
    print(f"# scratch {work}: {free_gb:,.0f} GB free, the largest size needs about {need_gb:,.1f} GB")
    if free_gb < need_gb:
        raise SystemExit(f"scale: not enough free disk in {work} ({free_gb:.1f} GB < {need_gb:.1f} GB); "
                         f"pass --workdir on a larger disk or fewer --rows")
    py = sys.executable
    base = work / "embeddings"
    code = ("from amips_bench.datasets.embeddings import write_synthetic; from amips_bench.datasets.synthetic import "
            f"SyntheticParams; write_synthetic({str(base)!r}, SyntheticParams(n_keys={args.keys}, "
            f"n_queries={args.unique}, d={args.d}, seed=0))")
    run_stage([py, "-c", code])
    rows_out = []
    for rows in args.rows:
        factor = max(1, rows // args.unique)
        root = work / f"rows{rows}"
        shutil.rmtree(root, ignore_errors=True)
        (root / "embeddings").mkdir(parents=True)
        for name in ("keys.npy", "queries.npy", "manifest.json"):
            os.link(base / name, root / "embeddings" / name)
        stages = {
            "split": [py, "-m", "amips_bench.cli", "split", "--queries", str(root / "embeddings/queries.npy"),
                      "--out", str(root / "splits"), "--val-size", "1000", "--test-size", "1000",
                      "--augment-factor", str(factor), "--sigma", "0.02", "--mode", "leak_free",
                      "--seed", "0"],
            "targets": [py, "-m", "amips_bench.cli", "targets", "--embeddings", str(root / "embeddings"),
                        "--splits", str(root / "splits"), "--clusters", "1",
                        "--out", str(root / "targets/c1"), "--device", "cpu", "--threads", "2"],
            "train": [py, "-m", "amips_bench.cli", "train", "--dataset-dir", str(root),
                      "--out", str(root / "models/keynet_S"), "--model", "keynet", "--size", "S",
                      "--depth", "4", "--nx", "3", "--steps", str(args.steps),
                      "--batch-size", str(args.batch), "--eval-every", str(args.steps),
                      "--checkpoint-every", str(args.steps), "--resident-max-gb", "0.5",
                      "--device", "cpu", "--threads", "2"],
        }
        folders = {"split": root / "splits", "targets": root / "targets", "train": root / "models"}
        for stage, command in stages.items():
            measured = run_stage(command)
            rows_out.append({"rows": factor * (args.unique - 2000), "factor": factor, "stage": stage,
                             "peak_rss_mb": measured["maxrss_mb"], "seconds": measured["seconds"],
                             "disk_mb": disk_mb(folders[stage])})
        shutil.rmtree(root)
    print(f"# peak memory per stage vs training rows; {platform.machine()} CPU, {os.cpu_count()} cores; "
          f"{args.keys:,} keys, {args.unique:,} unique questions, d = {args.d}; "
          f"training: KeyNet S, {args.steps} steps at batch {args.batch}, batches read from disk")
    print("| training rows | augmentation | stage | peak RSS (MB) | × RSS at the fewest rows | seconds | disk written (MB) |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    first = {r["stage"]: r["peak_rss_mb"] for r in rows_out if r["rows"] == rows_out[0]["rows"]}
    for r in rows_out:
        print(f"| {r['rows']:,} | {r['factor']} | {r['stage']} | {r['peak_rss_mb']:,.0f} "
              f"| {r['peak_rss_mb'] / first[r['stage']]:.2f} | {r['seconds']:.1f} | {r['disk_mb']:,.0f} |")
    shutil.rmtree(work / "embeddings", ignore_errors=True)


if __name__ == "__main__":
    main()
