"""Streamed training batches: rows per second read from disk, by the prefetch thread alone and
by reader processes (train.reader_processes), against the rows per second a GPU step consumes.

A training split larger than train.resident_max_gb is read one batch ahead of the step, one
system call per row for its query; its targets (8·c bytes a row) are held in memory where
they fit in the same budget (`--targets memory`, as training does), else read the same way,
a second call per row (`--targets disk`). When the readers deliver fewer rows per second than
the step consumes, the GPU waits for its data. Each reader count is timed on the same files
through the trainer's own StreamedBatches (pinned memory on a GPU), over fresh batches of the
same epoch, twice:

- warm: the file is in the page cache (it was read once in full beforehand);
- cold: the file's pages are dropped from the page cache first (posix_fadvise DONTNEED), so
  every row is a random read from the disk (where the file is larger than the batches touch).

The last table sets the median warm rate beside the samples/s of the committed H200 training
steps (benchmarks/results/train_throughput_h200.csv, CUDA graph on): a model is fed where
the readers deliver at least that. The readers' rate is this machine's, not the GPU host's.
Training caps the reader processes at one per usable core; this script times the counts asked.

    python benchmarks/stream_loader.py                       # 2M rows of d = 384 (3.1 GB of disk)
    python benchmarks/stream_loader.py --targets memory disk --batches 20   # both ways to the targets
    python benchmarks/stream_loader.py --rows 100000 --batches 5 --readers 0 2   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from paper_cost import DEFAULT_TABLE, load_rates  # the committed GPU steps, as paper_cost reads them

from amips_bench.core.provenance import cpu_model
from amips_bench.core.rows import EpochSampler, NpyRows, StreamedBatches, StreamedSplit, reader_processes
from amips_bench.core.schema import schema_defaults
from amips_bench.core.storage import npy_row_writer, save_csv, save_text


def write_split(folder: Path, rows: int, d: int, chunk: int = 65_536) -> tuple[NpyRows, NpyRows]:
    """The files of a training split of `rows` unit queries and their top-1 indices, written in
    chunks."""
    rng = np.random.default_rng(0)
    with npy_row_writer(folder / "train_queries.npy", rows, d, "float32") as add:
        for start in range(0, rows, chunk):
            block = rng.standard_normal((min(chunk, rows - start), d), dtype=np.float32)
            add(block / np.linalg.norm(block, axis=1, keepdims=True))
    with npy_row_writer(folder / "train_top1.npy", rows, 1, "int64") as add:
        for start in range(0, rows, chunk):
            add(rng.integers(0, 1_000_000, (min(chunk, rows - start), 1)))
    return (NpyRows(folder / "train_queries.npy", dtype="float32", ncols=d),
            NpyRows(folder / "train_top1.npy", dtype="int64", ncols=1))


def page_cache(split: StreamedSplit, warm: bool) -> None:
    """Read the files a batch reads once (warm) or drop their pages from the page cache (cold)."""
    for rows in split.files:
        with open(rows.path, "rb") as fh:
            if warm:
                while fh.read(1 << 24):
                    pass
            else:
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def time_batches(split: StreamedSplit, batch: int, readers: int, first: int, batches: int,
                 device: torch.device) -> list[float]:
    """Seconds per batch as training sees them: each get() waits for the batch read ahead
    while the next is being read (no step in between, so the readers alone set the pace)."""
    sampler = EpochSampler(len(split.queries), batch, seed=0, device=torch.device("cpu"))
    loader = StreamedBatches(split, sampler, device, readers)
    try:
        loader.get(first - 1)  # starts the reader processes and the read ahead
        seconds = []
        for step in range(first, first + batches):
            t0 = time.perf_counter()
            x, _ = loader.get(step)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - t0)
        assert x.shape == (batch, split.queries.shape[1])
        return seconds
    finally:
        loader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="training rows in the file")
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per reader count and cache state")
    parser.add_argument("--readers", type=int, nargs="+", default=[0, 1, 2, 4, 8],
                        help="reader processes (0: the prefetch thread reads alone)")
    parser.add_argument("--targets", nargs="+", choices=["memory", "disk"], default=["memory"],
                        help="where batches take their targets from (training: memory, within resident_max_gb)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (pinned memory, copies to the GPU)")
    parser.add_argument("--workdir", default="", help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", default="", help="also write STEM.md and STEM.csv")
    args = parser.parse_args()
    device = torch.device(args.device)
    batches_needed = (len(args.readers) * len(args.targets) * 2 + 1) * (args.batches + 1)
    if args.rows // args.batch < batches_needed:
        raise SystemExit(f"stream_loader: --rows {args.rows:,} holds {args.rows // args.batch} batches of "
                         f"{args.batch}; the timings need {batches_needed} fresh ones")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="amips-loader-"))
    need_gb = args.rows * (args.d * 4 + 8) / 1e9
    free_gb = shutil.disk_usage(work).free / 1e9
    print(f"# scratch {work}: {free_gb:,.0f} GB free, the file needs {need_gb:,.1f} GB")
    if free_gb < 1.1 * need_gb:
        raise SystemExit(f"stream_loader: not enough free disk in {work}")
    try:
        queries, top1 = write_split(work, args.rows, args.d)
        splits = {"memory": StreamedSplit(queries, top1.rows(0, len(top1))), "disk": StreamedSplit(queries, top1)}
        results, first = [], 1
        for cache in ("warm", "cold"):
            for targets in args.targets:
                for readers in args.readers:
                    page_cache(splits[targets], warm=cache == "warm")
                    seconds = time_batches(splits[targets], args.batch, readers, first, args.batches, device)
                    first += args.batches + 1  # fresh rows for every measurement
                    median = statistics.median(seconds)
                    results.append({"cache": cache, "targets": targets, "readers": readers, "batch": args.batch,
                                    "ms_per_batch": 1000 * median, "rows_per_s": args.batch / median,
                                    "ms_p90": 1000 * float(np.quantile(seconds, 0.9))})
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU memory"
    default = schema_defaults("train")["reader_processes"]
    lines = [
        f"# streamed batches of {args.batch:,} rows (d = {args.d}) from a {args.rows:,}-row file, into {where}; "
        f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, torch {torch.__version__}; "
        f"median over {args.batches} batches",
        "",
        f"Training here would use {reader_processes(default)} reader processes (train.reader_processes = {default}, "
        "at most one per usable core, none where that leaves one).",
        "",
        "| page cache | targets | reader processes | ms per batch (median) | ms (90th percentile) | rows/s "
        "| × the thread alone |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    alone = {(r["cache"], r["targets"]): r["rows_per_s"] for r in results if r["readers"] == 0}
    for r in results:
        base = alone.get((r["cache"], r["targets"]))
        speedup = f"{r['rows_per_s'] / base:.2f}" if base else ""
        lines.append(f"| {r['cache']} | {r['targets']} | {r['readers']} | {r['ms_per_batch']:.2f} | {r['ms_p90']:.2f} "
                     f"| {r['rows_per_s']:,.0f} | {speedup} |")
    fed_from = "memory" if "memory" in args.targets else "disk"  # as training does, where measured
    warm = [r for r in results if r["cache"] == "warm" and r["targets"] == fed_from]
    steps = [r for r in load_rates(DEFAULT_TABLE) if r["cuda_graph"]] if DEFAULT_TABLE.exists() else []
    if steps and warm:
        lines += ["", "rows/s a training step consumes on the committed GPU table's device (CUDA graph) and the fewest "
                  f"reader processes measured here that deliver them from the page cache (targets from {fed_from}):", "",
                  "| model | c | size | precision | step rows/s | fed by |", "|---|---:|---|---|---:|---|"]
        for s in steps:
            need = float(s["samples_per_s"])
            fed = [r["readers"] for r in warm if r["rows_per_s"] >= need]
            lines.append(f"| {s['model']} | {s['clusters']} | {s['size']} | {s['precision']} | {need:,.0f} "
                         f"| {min(fed) if fed else 'none measured'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        save_text(args.out + ".md", text)
        save_csv(args.out + ".csv", results)


if __name__ == "__main__":
    main()
