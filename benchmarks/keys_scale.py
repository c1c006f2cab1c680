"""Paper-scale keys without a memory wall: memory and time of the synthetic and IVF stages as
the number of keys grows to HotpotQA's 5.2M (config/hotpotqa_scale.yaml).

The synthetic stage draws the keys to disk chunk by chunk and reads back only the questions'
source keys; the IVF stage adds the keys from their memory-mapped file a chunk at a time, so
its index is the only copy in memory. Each stage runs as `amips-bench` in its own process.
Its peak anonymous memory (RssAnon, what the process itself allocated) is sampled from /proc
every 0.1 s; ru_maxrss also counts the pages of the mapped key file, which the kernel can
drop at will, and is shown beside it.

    python benchmarks/keys_scale.py                        # 1.3M, 2.6M and 5.2M keys, d = 384 (about 32 GB of disk)
    python benchmarks/keys_scale.py --keys 100000 200000   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def anonymous_mb(pid: int) -> float:
    """The process's current RssAnon in MB (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_stage(args: list[str]) -> dict[str, float]:
    """Peak anonymous memory (sampled), ru_maxrss (MB) and seconds of one child process;
    raises with its output if it fails."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
        anonymous = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            anonymous = max(anonymous, anonymous_mb(proc.pid))
            time.sleep(0.1)
        seconds = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"stage failed: {' '.join(args)}\n{log.read()[-2000:]}")
    return {"anonymous_mb": anonymous, "maxrss_mb": usage.ru_maxrss / 1024, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, nargs="+", default=[1_300_000, 2_600_000, 5_200_000])
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--workdir", default="", help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        raise SystemExit("keys_scale: needs /proc to sample the stages' memory (Linux)")

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="amips-keys-"))
    need_gb = 2.1 * max(args.keys) * args.d * 4 / 1e9  # keys, then the index beside them
    free_gb = shutil.disk_usage(work).free / 1e9
    print(f"# scratch {work}: {free_gb:,.0f} GB free, the largest size needs about {need_gb:,.1f} GB")
    if free_gb < need_gb:
        raise SystemExit(f"keys_scale: not enough free disk in {work} ({free_gb:.1f} GB < {need_gb:.1f} GB); "
                         f"pass --workdir on a larger disk or fewer --keys")
    cli = [sys.executable, "-m", "amips_bench.cli"]
    rows = []
    for n in args.keys:
        root = work / f"keys{n}"
        shutil.rmtree(root, ignore_errors=True)
        stages = {
            "synthetic": cli + ["synthetic", "--out", str(root / "embeddings"), "--n-keys", str(n),
                                "--n-queries", str(args.queries), "--d", str(args.d), "--seed", "0",
                                "--threads", str(args.threads)],
            "IVF (nlist = √n)": cli + ["index", "--keys", str(root / "embeddings/keys.npy"),
                                       "--out", str(root / "index"), "--nlist", "0",
                                       "--threads", str(args.threads)],
        }
        for stage, command in stages.items():
            rows.append({"keys": n, "stage": stage, **run_stage(command)})
        shutil.rmtree(root)
    if not args.workdir:
        work.rmdir()
    print(f"# peak memory per stage vs keys; {platform.machine()} CPU, {os.cpu_count()} cores, "
          f"{args.threads} threads; {args.queries:,} questions, d = {args.d}")
    print("| keys | key file (MB) | stage | peak anonymous (MB) | ÷ key file | ru_maxrss (MB) | seconds |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        key_mb = r["keys"] * args.d * 4 / 2 ** 20
        print(f"| {r['keys']:,} | {key_mb:,.0f} | {r['stage']} | {r['anonymous_mb']:,.0f} "
              f"| {r['anonymous_mb'] / key_mb:.2f} | {r['maxrss_mb']:,.0f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
