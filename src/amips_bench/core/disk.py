"""The disk under a stage's files: sizes of the arrays it writes and the free-space check a
stage makes before its long work starts (`require_free`). The run's whole plan, which sizes every
stage's files, is `amips_bench.planning.disk_plan`."""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path

from .errors import InputError

#: bytes of a .npy file besides its data (numpy pads the header to 64 bytes; 128 for our shapes)
NPY_HEADER = 128
#: the environment variable through which the workflow hands its disk_margin to the targets
#: stage ("none": no check); see `stage_disk_margin`
DISK_MARGIN_ENV = "AMIPS_BENCH_DISK_MARGIN"
#: what a short disk's line tells the user to do
SHORT_DISK_ADVICE = "free disk or point the config's results: at a larger one"


def npy_bytes(*dims: int | None, itemsize: int) -> int | None:
    """A .npy file of these dimensions; None where one is not known yet."""
    if any(x is None for x in dims):
        return None
    return NPY_HEADER + itemsize * math.prod(dims)


def target_file_bytes(kind: str, rows: int | None, d: int | None, n_clusters: int) -> int | None:
    """targets/c{C}/{split}_{kind}.npy: the split's query vectors (float32, `kind` "queries")
    or each row's top-1 key per cluster (int64, "top1")."""
    return (npy_bytes(rows, d, itemsize=4) if kind == "queries"
            else npy_bytes(rows, n_clusters, itemsize=8))


def free_bytes(folder: Path) -> int:
    """Free space of the disk that holds `folder` (or its nearest existing parent)."""
    folder = folder.resolve()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def stage_disk_margin(flag: str | None, environ: Mapping[str, str]) -> float | None:
    """The margin a stage checks its files with (None: no check): its --disk-margin flag, else
    the workflow's disk_margin where a run handed it on (DISK_MARGIN_ENV), else 0.1. The
    workflow passes it through the environment, not as a param or in the shell text: either
    change would make Snakemake re-run every targets job of a results folder made before, and
    every model trained on those targets."""
    text, origin = ((flag, "--disk-margin") if flag is not None
                    else (environ.get(DISK_MARGIN_ENV, "0.1"), DISK_MARGIN_ENV))
    if text.strip().lower() in ("none", "null", ""):
        return None
    try:
        margin = float(text)
    except ValueError:
        margin = -1.0
    if not margin >= 0:
        raise InputError(f"{origin}: {text!r} is not a margin (a number >= 0, or none)")
    return margin


def require_free(folder: Path, need: int, margin: float | None, what: str) -> str | None:
    """Refuse a stage whose files would not fit, in one line, before its long work starts: a
    run's own check can size a BEIR dataset's files only once they are fetched (a run that
    fetches them checks before), so the fetch stage checks each download, copy and unpacking,
    the encode stage its work files and outputs once it has counted the texts, and the stage
    that writes the queries' augmented copies checks again when it knows its row counts.
    Returns the line to log; a `margin` of None skips the check (the config's disk_margin:
    null)."""
    if margin is None:
        return None
    free = free_bytes(folder)
    if need * (1 + margin) > free:
        raise InputError(f"{folder}: {what} take {size_text(need)}, but only {size_text(free)} "
                         f"are free there (with a {margin:.0%} margin); {SHORT_DISK_ADVICE} "
                         f"(disk_margin: null skips this check)")
    return f"disk check: {what} take {size_text(need)} ({size_text(free)} free under {folder})"


def size_text(x: float) -> str:
    """Bytes as GB, or as MB under a gigabyte."""
    return f"{x / 1e9:.2f} GB" if x >= 1e9 else f"{x / 1e6:.2f} MB"
