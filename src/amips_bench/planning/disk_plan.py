"""The disk a run will write, sized before it starts.

`snakemake --summary TARGETS` lists every output file of a run with the rule that writes it and
whether it is still to be made. This module sizes those files from the counts they hold: keys,
queries, split rows, clusters, IVF lists, HNSW links and model parameters. The counts are read
from the files already written where they exist (the arrays' headers, the split manifest), so
a plan made after the encode or split stage is exact. Before that a BEIR dataset's counts are
the unique texts its fetch stage counted (raw/manifest.json), an upper bound as texts that
differ only in case encode to one vector; a synthetic dataset's come from its config. What
cannot be known yet (a BEIR dataset's queries before it is fetched) is reported as unsized
rather than guessed; the fetch stage checks its downloads and unpacked files, the encode stage
its vectors, and the targets stage, the one that multiplies those queries, its own files, with
`require_free` before they start. CSVs, JSONs, logs and figures are
kilobytes and count as nothing; a link made by a `shared_*` rule costs nothing either.

`amips-bench disk-plan` prints the plan per dataset and stage and, with `--check`, stops with
one line when the results folder's disk has less free space than the plan needs.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.config import shared_data, train_rows
from ..core.disk import (
    SHORT_DISK_ADVICE,
    free_bytes,
    npy_bytes,
    size_text,
    target_file_bytes,
)
from ..core.errors import InputError
from ..core.layout import DatasetFiles, ResultsLayout, file_kind
from ..core.runs import dataset_n_keys, expand_grid, ivf_nlist, parse_run, queries_from_c1
from ..core.storage import load_json
from ..datasets.beir import expected_counts
from ..datasets.encode import OFFLINE_MODEL
from ..models.networks import ModelSpec
from ..models.routers import RouterSpec, parse_router_stem

#: the width of the vectors of the default encoder (all-MiniLM-L6-v2)
DEFAULT_ENCODER_D = 384
#: bytes of a saved model besides its float32 weights (torch's zip records and the spec)
MODEL_OVERHEAD = 4096
#: a training checkpoint holds the weights, their EMA and Adam's two moments: four models
CHECKPOINT_MODELS = 4
#: the columns of `snakemake --summary` that the plan reads (the first is the header's first)
SUMMARY_COLUMNS = ("output_file", "rule", "plan")


@dataclass(frozen=True)
class Counts:
    """What a dataset's arrays hold; None where it is not known yet."""

    n_keys: int | None
    n_queries: int | None
    d: int | None
    rows: dict[str, int] | None  # rows of each split


@dataclass(frozen=True)
class PlannedFile:
    path: str  # as the summary names it (relative to the working directory)
    rule: str
    dataset: str  # "" for files outside a dataset's folder
    pending: bool  # still to be written by this run
    bytes: int | None  # its estimated size; None: not known before an earlier stage runs
    to_write: int  # what writing it adds to the disk (0 where it is done or a link)


def read_summary(text: str) -> list[dict[str, str]]:
    """The rows of `snakemake --summary` (tab-separated; Snakemake's log lines ignored)."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines)
                     if line.split("\t")[:1] == [SUMMARY_COLUMNS[0]])
    except StopIteration:
        raise InputError("the summary has no header line starting with 'output_file'; "
                         "give it the output of `snakemake --summary TARGETS`") from None
    header = lines[start].split("\t")
    missing = [c for c in SUMMARY_COLUMNS if c not in header]
    if missing:
        raise InputError(f"the summary's header lacks the column {missing[0]!r}")
    reader = csv.DictReader(io.StringIO("\n".join(lines[start:])), delimiter="\t")
    return [row for row in reader if row.get("output_file")]


def _npy_shape(path: Path) -> tuple[int, ...] | None:
    try:
        return np.load(path, mmap_mode="r").shape
    except (OSError, ValueError):
        return None


def dataset_counts(dataset: dict, folder: Path, fetched: Path) -> Counts:
    """The counts of one dataset: from its files where they exist, else, for a BEIR dataset,
    from the unique texts its fetch stage counted (`fetched`: the raw/manifest.json it reads
    them from, its own or the twin's it takes its embeddings from), else from its config."""
    files = DatasetFiles(folder)
    keys = _npy_shape(files.keys)
    queries = _npy_shape(files.queries)
    if keys and queries and len(keys) == 2:
        n_keys, d, n_queries = keys[0], keys[1], queries[0]
    elif dataset["source"] == "synthetic":
        s = dataset["synthetic"]
        n_keys, n_queries, d = s["n_keys"], s["n_queries"], s["d"]
    else:

        n_keys, n_queries = dataset_n_keys(dataset), None
        d = DEFAULT_ENCODER_D if dataset["encoder"]["model"] == OFFLINE_MODEL else None
        unique = load_json(fetched).get("unique_texts") if fetched.is_file() else None
        if unique:  # a fetch made before the count was kept leaves the config's n_keys
            counted_keys, n_queries = expected_counts(unique, dataset["beir"]["query_source"],
                                                      dataset["beir"]["key_text"])
            n_keys = counted_keys or n_keys
    manifest = files.splits_manifest
    rows = None
    if manifest.exists():
        rows = {k: int(v) for k, v in load_json(manifest).get("rows", {}).items()} or None
    if rows is None and n_queries is not None:
        s = dataset["splits"]
        rows = {"train": train_rows(n_queries, val_size=s["val_size"], test_size=s["test_size"],
                                    augment_factor=s["augment_factor"], mode=s["mode"]),
                "val": s["val_size"], "test": s["test_size"]}
    return Counts(n_keys, n_queries, d, rows)


def ivf_bytes(n_keys: int, d: int, nlist: int) -> int:
    """An IndexIVFFlat as FAISS writes it: every key's code (d float32) and id (int64), the
    coarse quantizer's centroids (d float32) and each list's size (int64), and headers."""
    return n_keys * (4 * d + 8) + nlist * (4 * d + 8) + 512


def hnsw_bytes(n_keys: int, d: int, m: int) -> int:
    """An IndexHNSWFlat as FAISS writes it: the vectors, 2·M neighbour slots (int32) on level 0
    and M on each higher level (a point reaches level l with probability M^-l, so M/(M−1)
    slots on average), an offset (int64) and a level (int32) per point."""
    neighbours = n_keys * (2 * m + m / (m - 1))
    return round(n_keys * (4 * d + 8 + 4) + 4 * neighbours) + 4096


def model_bytes(run_name: str, counts: Counts, width_rule: str) -> int | None:
    """model.pt: the float32 weights of the run's model (or router) and a few records."""
    if counts.n_keys is None or counts.d is None:
        return None
    router = re.fullmatch(r"router_(?P<stem>.+)_c(?P<c>\d+)_s\d+", run_name)
    if router:
        kind, size, depth = parse_router_stem(router["stem"])
        params = RouterSpec(d=counts.d, n_keys=counts.n_keys, n_clusters=int(router["c"]),
                            kind=kind, size=size, depth=depth).n_parameters
    else:

        run = parse_run(run_name)
        params = ModelSpec(model=run.model, d=counts.d, n_keys=counts.n_keys, size=run.size,
                           depth=run.depth, n_x=run.n_x, n_clusters=run.clusters,
                           residual=run.residual, convexity=run.convexity,
                           width_rule=width_rule).n_parameters
    return 4 * params + MODEL_OVERHEAD


def file_bytes(relative: Path, dataset: dict, counts: Counts, width_rule: str) -> int | None:
    """The size of one file of a dataset's folder (`relative` to it); 0 for the small ones."""
    what = file_kind(relative)
    kind, f = what.kind, what.fields
    n, q, d, rows = counts.n_keys, counts.n_queries, counts.d, counts.rows or {}
    if kind == "keys":
        return npy_bytes(n, d, itemsize=4)
    if kind == "queries":
        return npy_bytes(q, d, itemsize=4)
    if kind == "split_rows":
        return npy_bytes(rows.get(f["split"]), itemsize=8)
    if kind == "centroids":
        return npy_bytes(int(f["c"]), d, itemsize=4)
    if kind == "assignments":
        return npy_bytes(n, itemsize=8)
    if kind in ("split_queries", "split_top1"):
        return target_file_bytes(kind.removeprefix("split_"),
                                 rows.get(f["split"]), d, int(f["c"]))
    if kind in ("ivf_index", "hnsw_index"):
        if n is None or d is None:
            return None
        ivf = dataset["ivf"]
        if kind == "hnsw_index":
            return hnsw_bytes(n, d, ivf["hnsw_m"])
        return ivf_bytes(n, d, ivf_nlist(n, ivf["nlist"], float(f.get("multiple", 1.0))))
    if kind == "model":
        return model_bytes(f["run"], counts, width_rule)
    if kind == "segment":
        size = model_bytes(f["run"], counts, width_rule)
        return None if size is None else checkpoint_bytes(size)
    return 0


def checkpoint_bytes(model_file_bytes: int) -> int:
    """A training job's checkpoint.pt: CHECKPOINT_MODELS times its model.pt, each copy with
    the records of its tensors."""
    return CHECKPOINT_MODELS * model_file_bytes


def models_to_train(planned: list[PlannedFile]) -> list[int]:
    """The sizes of the sized models that training jobs still have to write, largest first."""
    return sorted((f.bytes for f in planned if f.pending and f.rule == "train" and f.bytes
                   and f.path.endswith("model.pt")), reverse=True)


def checkpoint_peak(planned: list[PlannedFile], jobs_at_once: int = 1) -> int:
    """The most disk the training jobs hold besides their outputs while they run: two
    checkpoints of each of the `jobs_at_once` largest models still to train, since a checkpoint
    being saved goes to a temporary name and replaces the previous one only when complete. A
    checkpoint is removed once its model is written, so only the jobs in flight count."""
    return 2 * sum(checkpoint_bytes(b) for b in models_to_train(planned)[:max(1, jobs_at_once)])


def encode_work_peak(planned: list[PlannedFile], jobs_at_once: int = 1) -> int:
    """The most disk the encode jobs hold besides their outputs while they run: an encode job
    writes its dataset's keys and queries into work files first (.encode/, the size of its
    outputs before identical vectors are merged) and removes them once its outputs are
    written, so the `jobs_at_once` largest encodes still to run count."""
    return sum(encodes_to_run(planned)[:max(1, jobs_at_once)])


def encodes_to_run(planned: list[PlannedFile]) -> list[int]:
    """The sized arrays that each encode job still to run writes, largest first."""
    work: dict[str, int] = {}
    for f in planned:
        if f.pending and f.rule == "encode" and f.bytes and f.path.endswith(".npy"):
            work[f.dataset] = work.get(f.dataset, 0) + f.bytes
    return sorted(work.values(), reverse=True)


def results_folder(config: dict, workdir: Path) -> Path:
    """The config's results folder as seen from the run's working folder."""
    return workdir / config["results"]  # an absolute results path stays itself


def plan(config: dict, summary: list[dict[str, str]], workdir: Path) -> list[PlannedFile]:
    """Every output file of the summary with its size and what writing it adds to the disk."""
    results = results_folder(config, workdir)
    counts: dict[str, Counts] = {}
    fetched_by = shared_data(config["datasets"])["embeddings"]  # a twin's texts are its maker's
    planned = []
    for row in summary:
        path = Path(row["output_file"])
        rule, pending = row["rule"], row["plan"].strip() != "no update"
        on_disk = workdir / path
        own = on_disk.is_file() and not on_disk.is_symlink()  # made here, not a link
        try:
            relative = on_disk.relative_to(results)
        except ValueError:
            relative = None
        dataset = relative.parts[0] if relative and relative.parts[0] in config["datasets"] else ""
        size: int | None = 0  # small files, and a link made by a shared_* rule
        if dataset and len(relative.parts) > 2 and not rule.startswith("shared_"):
            settings, inside = config["datasets"][dataset], Path(*relative.parts[1:])
            if not (_linked_queries(inside, settings, config["seeds"]) and not own):
                if dataset not in counts:
                    layout = ResultsLayout(results)
                    fetched = layout.dataset(fetched_by.get(dataset, dataset)).raw_manifest
                    counts[dataset] = dataset_counts(settings, layout.dataset(dataset).root, fetched)
                size = file_bytes(inside, settings, counts[dataset], config["width_rule"])
        existing = on_disk.stat().st_size if own else 0
        to_write = max(0, (size or 0) - existing) if pending else 0
        planned.append(PlannedFile(str(path), rule, dataset, pending, size, to_write))
    return planned


def plan_outputs(config: dict, outputs: list[tuple[str, str]], workdir: Path) -> list[PlannedFile]:
    """The plan of the files a starting run still writes, as (path, rule) pairs: the outputs of
    the jobs in Snakemake's DAG, which the workflow checks before its first job (onstart)."""
    return plan(config, [{"output_file": path, "rule": rule, "plan": "pending"}
                         for path, rule in outputs], workdir)


def _linked_queries(inside: Path, dataset: dict, seeds: list[int]) -> bool:
    """A c > 1 split-queries file that the targets job links to c1's (config.queries_from_c1)."""
    what = file_kind(inside)
    if what.kind != "split_queries":
        return False
    return queries_from_c1(int(what.fields["c"]), expand_grid(dataset, seeds))


def table(planned: list[PlannedFile]) -> str:
    """Per dataset and rule: files, their estimated size ("+?": some not sized yet) and what is
    still to be written; in GB, or in MB for a run under a gigabyte."""
    groups: dict[tuple[str, str], list[PlannedFile]] = {}
    for f in planned:
        groups.setdefault((f.dataset or "-", f.rule), []).append(f)
    unit, scale = ("GB", 1e9) if sum(f.bytes or 0 for f in planned) >= 1e9 else ("MB", 1e6)
    lines = [f"{'dataset':<20} {'rule':<22} {'files':>6} {'size ' + unit:>10} "
             f"{'to write ' + unit:>12}"]
    for (dataset, rule), files in sorted(groups.items()):
        sizes = [f.bytes for f in files]
        size = f"{sum(s for s in sizes if s) / scale:.2f}" + ("+?" if None in sizes else "")
        lines.append(f"{dataset:<20} {rule:<22} {len(files):>6} {size:>10} "
                     f"{sum(f.to_write for f in files) / scale:>12.2f}")
    return "\n".join(lines)


def free_disk_verdict(planned: list[PlannedFile], results: Path, margin: float,
                      jobs_at_once: int = 1) -> tuple[str, bool]:
    """One line on what the run writes, and what `jobs_at_once` training (and encode) jobs
    hold while they run, against the free disk under `results`, and whether the disk is short
    (less free than that plus `margin` of it)."""
    written = sum(f.to_write for f in planned)
    checkpoints, work = checkpoint_peak(planned, jobs_at_once), encode_work_peak(planned, jobs_at_once)
    need = written + checkpoints + work
    unsized = sum(1 for f in planned if f.pending and f.bytes is None)
    free = free_bytes(results)
    writes = f"the run writes {'at least ' if unsized else ''}{size_text(written)} under {results}"
    in_flight = min(jobs_at_once, len(models_to_train(planned)))
    if checkpoints:
        writes += (f" and a training job holds up to {size_text(checkpoints)} of checkpoints as it runs"
                   if in_flight <= 1 else f" and {in_flight} training jobs at once hold up to "
                   f"{size_text(checkpoints)} of checkpoints as they run")
    encoding = min(jobs_at_once, len(encodes_to_run(planned)))
    if work:
        writes += (f" and an encode job holds up to {size_text(work)} of work files" if encoding <= 1
                   else f" and {encoding} encode jobs at once hold up to {size_text(work)} of work files")
    if need * (1 + margin) > free:
        return (f"{writes}, but only {size_text(free)} are free there (with a {margin:.0%} "
                f"margin); {SHORT_DISK_ADVICE}"), True
    line = f"{writes} ({size_text(free)} free there)"
    if unsized:
        line += (f"; {unsized} files are sized only once an earlier stage has run "
                 f"(a BEIR dataset's texts are counted when fetched): plan again then")
    return line, False
