"""A results tree read figure by figure, for comparing runs; a tree's tidy files frozen as a
reference.

A results tree is what the workflow writes under `results:` (docs/architecture.md §2). Each
compared figure is read from the per-seed files behind it, not from the figure's averaged CSV,
so the comparison can measure the seeds' spread. Key columns are read as text (an empty cell
is ""), so curves match across runs whatever a column's type in one file.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..core.layout import TIDY_FILES, DatasetFiles, ResultsLayout, reference_provenance
from ..core.plugins import load_plugins
from ..core.provenance import git_state, package_versions
from ..core.runs import RUN_PATTERN
from ..core.storage import load_json, save_json
from ..models.networks import MODEL_KINDS
from ..reporting.figures import FIGURES as FIGURE_REGISTRY
from ..reporting.results import TEST_COLUMNS, read_histories, read_metrics, read_tables, with_ivf_setup

MODEL_KEYS = ["model", "size", "depth", "n_x"]
#: keys of every learned curve besides its figure's own: the run's name without its seed (so
#: clusters, residual, convexity and initialisation keep variants apart instead of pooling
#: them as seeds) and the split mode its rows record
VARIANT_KEYS = ["variant", "split_mode"]


def variant_of(name: str) -> str:
    """A run's (or result file's) name without its seed: what its seeds have in common."""
    return re.sub(r"_s\d+$", "", Path(name).name)


#: the files of any dataset, for the messages that say what a figure is read from
ANY = DatasetFiles("{dataset}")


@dataclass(frozen=True)
class FigureData:
    """How the numbers behind one figure are read and compared."""

    name: str  # file stem of the overlay and the name in the summary
    title: str
    source: str  # what the files are, for messages
    keys: list[str]  # what identifies a curve
    metrics: list[str]  # the compared values (those a run has)
    x: str | None = None  # cost axis; None: compared point for point
    along: str | None = None  # the swept setting behind each point (k, nprobe, ...)
    log_x: bool = False
    seed: str | None = "seed"
    spread: str | None = None  # a column holding a measured spread (timing repeats)
    panels: list[str] = field(default_factory=lambda: ["dataset"])  # one overlay panel per value
    gates: bool = True  # False: a measurement of the machine, compared but never a failure
    #: how a registered figure's rows are read from a tree: read(root, datasets) -> frame or
    #: None (the built-in figures are read by _read_frames)
    read: Callable[[Path, list[DatasetFiles]], pd.DataFrame | None] | None = None


FIGURES = [
    FigureData("fig2_routing", "Figure 2 — routing accuracy vs FLOPs", str(ANY.routing_csv("*")),
               ["dataset", "method"] + MODEL_KEYS + VARIANT_KEYS, ["accuracy"], x="flops_total", along="k",
               log_x=True, panels=["dataset", "family"]),
    FigureData("fig3_erel_mrr", "Figure 3 — test E_rel and MRR at the end of training (c = 1)",
               str(ANY.metrics("*_c1_*")), ["dataset"] + MODEL_KEYS + VARIANT_KEYS, ["e_rel", "mrr"],
               panels=["dataset", "model"]),
    FigureData("fig4_6_ivf", "Figures 4–6 — natural vs mapped queries on IVF and HNSW",
               str(ANY.ivf_csv("*")), ["dataset", "index", "quantizer", "nlist", "query"] + MODEL_KEYS + VARIANT_KEYS,
               ["recall@1", "recall@10", "recall@100", "mrr"], x="flops_total", along="budget",
               log_x=True, panels=["dataset", "index"]),
    FigureData("fig7_ood", "Figure 7 — MRR vs FLOPs under query noise", str(ANY.ood_csv("*")),
               ["dataset", "std", "query"] + MODEL_KEYS + VARIANT_KEYS, ["mrr"], x="flops_total", along="budget",
               log_x=True, panels=["dataset", "query"]),
    FigureData("fig8_training", "Figure 8 — validation E_rel over training steps",
               str(ANY.history("*_c1_*")), ["dataset"] + MODEL_KEYS + VARIANT_KEYS, ["e_rel"],
               x="step", panels=["dataset", "model"]),
    FigureData("table1", "Table 1 — gradient / score time ratio", str(ResultsLayout("").table1("csv")),
               ["dataset", "model", "size", "depth", "n_x"], ["grad_over_score"], seed=None,
               spread="grad_over_score_sd", panels=["dataset"], gates=False),
    FigureData("final_metrics", "Final test metrics of every model", str(ANY.metrics("*")),
               ["dataset", "clusters"] + MODEL_KEYS + VARIANT_KEYS,
               [c for c in TEST_COLUMNS if c != "x_is_target"]
               + [f"routing@{k}" for k in range(1, 6)], panels=[]),
]


def compared_figures() -> list[FigureData]:
    """Every compared figure: the built-in ones, then those of registered figures (the figure
    registry's `compared` specs, plugins included)."""
    load_plugins()
    return FIGURES + [f.compared for f in FIGURE_REGISTRY.values() if f.compared is not None]


def figure_spec(name: str) -> FigureData | None:
    return next((f for f in compared_figures() if f.name == name), None)

#: the family of a routing method: its own overlay panel
ROUTING_FAMILY = {name: kind.label for name, kind in MODEL_KINDS.items()}

PROVENANCE = reference_provenance("").name


def _as_text(column: pd.Series) -> pd.Series:
    """A key column as text: whole numbers without ".0", missing values as ""."""
    def text(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v == "":
            return ""
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v)
    return column.map(text)


def _keyed(frame: pd.DataFrame, spec: FigureData) -> pd.DataFrame:
    frame = frame.copy()
    for col in spec.keys:
        frame[col] = _as_text(frame[col]) if col in frame else ""
    return frame


@dataclass
class RunTree:
    """One compared run: its figures' frames, its datasets, its provenance."""

    name: str
    path: Path
    frames: dict[str, pd.DataFrame]  # figure name -> per-seed rows
    datasets: dict[str, dict[str, Any]]  # dataset -> what identifies its data
    provenance: dict[str, Any]

    @property
    def seeds(self) -> list[int]:
        m = self.frames.get("final_metrics")
        if m is None or not len(m):
            return []
        return sorted({int(s) for s in m["seed"] if s not in ("", None) and not pd.isna(s)})


def _dataset_dirs(root: Path) -> list[DatasetFiles]:
    return ResultsLayout(root).datasets()


def _metrics_files(dataset: DatasetFiles) -> list[Path]:
    """The models' metrics.json (not the classifier routers', which have no test metrics)."""
    return [p for p in dataset.all_metrics() if re.fullmatch(RUN_PATTERN, p.parent.name)]


def _read_frames(root: Path, datasets: list[DatasetFiles]) -> dict[str, pd.DataFrame]:
    """Each figure's rows from the files of the tree (a figure the run lacks is absent)."""
    def tables(sub: str) -> pd.DataFrame:
        frame = read_tables(sorted(f for d in datasets for f in d.tables(sub)), source="variant")
        if len(frame):
            frame["variant"] = frame["variant"].map(variant_of)
        return frame

    frames: dict[str, pd.DataFrame] = {}
    routing = tables("routing")
    if len(routing):
        routing["family"] = routing["method"].map(ROUTING_FAMILY).fillna("baselines")
        frames["fig2_routing"] = routing
    metrics_files = [f for d in datasets for f in _metrics_files(d)]
    identities = [d.identity for d in datasets if d.identity.is_file()]
    if metrics_files:
        metrics = read_metrics(metrics_files)
        metrics["variant"] = metrics["run"].map(variant_of)
        frames["final_metrics"] = metrics
        c1 = pd.concat([metrics, read_metrics(identities)], ignore_index=True) if identities \
            else metrics
        frames["fig3_erel_mrr"] = c1[c1.clusters == 1]
        c1_runs = metrics[metrics.clusters == 1]
        history_paths = [DatasetFiles.history_beside(f) for f, c in zip(metrics_files, metrics.clusters)
                         if c == 1]
        if all(p.is_file() for p in history_paths):
            histories = read_histories(c1_runs, history_paths)
            rows = [h[["step", "e_rel"]].assign(**{k: r[k] for k in ["dataset", "seed"] + MODEL_KEYS + VARIANT_KEYS})
                    for r, h in ((r, histories[r["run"]]) for r in c1_runs.to_dict("records"))]
            if rows:
                frames["fig8_training"] = pd.concat(rows, ignore_index=True)
    ivf = tables("ivf")
    if len(ivf):
        frames["fig4_6_ivf"] = with_ivf_setup(ivf)
    ood = tables("ood")
    if len(ood):
        frames["fig7_ood"] = ood
    table1 = ResultsLayout(root).table1("csv")
    if table1.is_file():
        t = read_tables([table1])
        # the spread of the per-pair ratios, as a normal σ from the interquartile range
        t["grad_over_score_sd"] = (t.grad_over_score_q3 - t.grad_over_score_q1) / 1.349
        frames["table1"] = t
    for spec in compared_figures():
        frame = spec.read(root, datasets) if spec.read else None
        if frame is not None and len(frame):
            frames[spec.name] = frame
    return {name: _keyed(frame, figure_spec(name)) for name, frame in frames.items()}


def _data_identity(dataset: DatasetFiles) -> dict[str, Any]:
    """What the dataset's data is: key and query counts and the dimension, where recorded."""
    manifest = dataset.embeddings_manifest
    if manifest.is_file():
        m = load_json(manifest)
        counts = m.get("counts_after_dedup", {})
        return {"keys": counts.get("keys"), "queries": counts.get("queries"), "d": m.get("d"),
                "fingerprint": m.get("fingerprint")}
    files = _metrics_files(dataset)
    if files:
        spec = load_json(files[0]).get("spec", {})
        return {"keys": spec.get("n_keys"), "queries": None, "d": spec.get("d")}
    return {}


def _recorded_provenance(root: Path, frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Devices, versions and commit of a run, from what the run recorded."""
    prov: dict[str, Any] = {}
    for candidate in (reference_provenance(root), ResultsLayout(root).report(PROVENANCE)):
        if candidate.is_file():
            prov = load_json(candidate)
            break
    devices = set(prov.get("devices", []))
    for frame in frames.values():
        if "device" in frame:
            devices |= {d for d in frame["device"] if isinstance(d, str) and d}
    table1 = ResultsLayout(root).table1("versions.json")
    sidecars = sorted(root.glob("*/*/*.versions.json")) + ([table1] if table1.is_file() else [])
    versions = dict(prov.get("versions", {}))
    if not versions and sidecars:
        versions = load_json(sidecars[0]).get("versions", {})
    return {"git_commit": prov.get("git_commit", "not recorded"),
            "git_dirty": prov.get("git_dirty"), "devices": sorted(devices), "versions": versions,
            "created": prov.get("created", ""), "command": prov.get("command", "")}


def load_tree(name: str, path: str | Path) -> RunTree:
    """Read a results tree; a folder that is not one is a one-line error naming it."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"compare.runs.{name}: {root} is not a folder")
    datasets = _dataset_dirs(root)
    table1 = ResultsLayout(root).table1("csv").is_file()
    if not datasets and not table1:
        raise InputError(f"compare.runs.{name}: {root} is not a results tree of amips-bench (no "
                         f"dataset folder with routing/, ivf/, ood/ or models/, no timing/table1.csv)")
    frames = _read_frames(root, datasets)
    if not frames:
        raise InputError(f"compare.runs.{name}: {root} holds no result files (no routing, IVF, "
                         f"OOD or timing CSV, no models/*/metrics.json)")
    return RunTree(name, root, frames, {d.root.name: _data_identity(d) for d in datasets},
                   _recorded_provenance(root, frames))


def _refuse_another_configs_reference(out: Path, datasets: list[str]) -> None:
    """Freezing a run into the folder of a reference of other datasets (the default
    compare.runs.reference is the quick run's) would silently lose that reference."""
    provenance = reference_provenance(out)
    if not provenance.is_file():
        return
    kept = sorted(load_json(provenance).get("datasets", {}))
    if kept and kept != datasets:
        raise InputError(f"{out}: holds the reference of datasets {', '.join(kept)}, not of this "
                         f"run's {', '.join(datasets)}: freeze into another folder "
                         f"(compare.runs.reference) or delete {out} to replace it")


def freeze_reference(results: str | Path, out: str | Path, *, command: str,
                     config: dict[str, Any] | None = None) -> list[Path]:
    """Copy the tidy files of a results tree (CSVs and JSONs, no models, indexes or embeddings)
    to `out` with a provenance.json; the old reference is replaced only once the new one is
    complete. A reference of other datasets (another config's) is never replaced."""
    src, out = Path(results), Path(out)
    tree = load_tree("reference", src)  # refuses a folder that is not a results tree
    _refuse_another_configs_reference(out, sorted(tree.datasets))
    files = sorted({f for pattern in TIDY_FILES for f in src.glob(pattern) if f.is_file()})
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for f in files:
        target = staging / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    recorded = tree.provenance  # the commit that computed the run, where its report recorded it
    commit = git_state() if recorded["git_commit"] == "not recorded" else recorded
    save_json(reference_provenance(staging), {
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "command": command,
        "source": str(src),
        "git_commit": commit["git_commit"], "git_dirty": commit["git_dirty"],
        "seeds": tree.seeds, "devices": tree.provenance["devices"],
        "versions": package_versions(), "datasets": tree.datasets,
        "config": json.loads(json.dumps(config or {}, default=str))})
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return files
