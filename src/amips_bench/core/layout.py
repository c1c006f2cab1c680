"""The results contract: every file a run writes, named in one place.

The workflow's rules, the stages, the disk plan and the comparison of runs all take their paths
from here, so the tree a run writes, the tree the disk plan sizes and the tree a comparison
reads are one tree. A name may be a Snakemake wildcard: `ResultsLayout("results").dataset(
"{dataset}").model("{run}")` is the pattern of rule `train`'s output, `...dataset("fiqa")
.model("keynet_M_L4_nx1_c1_s0")` one file of it. `file_kind` reads a path back (the disk plan
sizes a file by what it holds), and `CONTRACT` is the tree as docs/results.md shows it
(a test keeps the two equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

#: the splits a query row belongs to, in the order the stages write them
SPLITS = ("train", "val", "test")


class DatasetFiles:
    """The files of one dataset's folder, `{results}/{dataset}/`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ data
    @property
    def raw(self) -> Path:
        """What the BEIR fetch stage downloads and unpacks."""
        return self.root / "raw"

    @property
    def raw_manifest(self) -> Path:
        return self.raw / "manifest.json"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def keys(self) -> Path:
        return self.embeddings / "keys.npy"

    @property
    def queries(self) -> Path:
        return self.embeddings / "queries.npy"

    @property
    def key_map(self) -> Path:
        """Encoded text -> row of keys.npy (BEIR data: texts that encode alike share a row)."""
        return self.embeddings / "key_map.npy"

    @property
    def query_map(self) -> Path:
        return self.embeddings / "query_map.npy"

    @property
    def embeddings_manifest(self) -> Path:
        return self.embeddings / "manifest.json"

    @property
    def splits(self) -> Path:
        return self.root / "splits"

    @property
    def splits_manifest(self) -> Path:
        return self.splits / "manifest.json"

    def split_rows(self, split: str, copies: bool = False) -> Path:
        """{split}.npy: the source question of each row; {split}_copy.npy: its noisy copy."""
        return self.splits / f"{split}{'_copy' if copies else ''}.npy"

    def clusters(self, c: int | str) -> Path:
        return self.root / "clusters" / f"c{c}"

    def centroids(self, c: int | str) -> Path:
        return self.clusters(c) / "centroids.npy"

    def assignments(self, c: int | str) -> Path:
        return self.clusters(c) / "assignments.npy"

    def clusters_manifest(self, c: int | str) -> Path:
        return self.clusters(c) / "manifest.json"

    def targets(self, c: int | str) -> Path:
        return self.root / "targets" / f"c{c}"

    def targets_manifest(self, c: int | str) -> Path:
        return self.targets(c) / "manifest.json"

    def split_queries(self, c: int | str, split: str) -> Path:
        return self.targets(c) / f"{split}_queries.npy"

    def split_top1(self, c: int | str, split: str) -> Path:
        return self.targets(c) / f"{split}_top1.npy"

    @property
    def identity(self) -> Path:
        """Test metrics of ŷ = x, the reference point of Figure 3."""
        return self.targets(1) / "identity.json"

    # ------------------------------------------------------------------ indexes
    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def ivf_index(self) -> Path:
        """The paper's IVF (its manifest is `index_manifest`)."""
        return self.index / "ivf.faiss"

    @property
    def index_manifest(self) -> Path:
        return self.index / "manifest.json"

    def ivf_variant(self, quantizer: str, multiple: str, suffix: str) -> Path:
        """A variant IVF (suffix faiss) or its manifest (json), named by its nlist multiple."""
        return self.index / f"ivf_{quantizer}_x{multiple}.{suffix}"

    def index_file(self, name: str) -> Path:
        """Any file of index/ by name (what rule shared_ivf links)."""
        return self.index / name

    @property
    def hnsw_index(self) -> Path:
        return self.index / "hnsw.faiss"

    @property
    def hnsw_manifest(self) -> Path:
        return self.index / "hnsw.json"

    # ------------------------------------------------------------------ models
    def model_dir(self, run: str) -> Path:
        return self.root / "models" / run

    def model(self, run: str) -> Path:
        return self.model_dir(run) / "model.pt"

    def metrics(self, run: str) -> Path:
        return self.model_dir(run) / "metrics.json"

    def questions(self, run: str) -> Path:
        """The model's per-question outcomes on test and validation questions (E_rel, rank)."""
        return self.model_dir(run) / "questions.npz"

    def history(self, run: str) -> Path:
        return self.model_dir(run) / "history.csv"

    @staticmethod
    def history_beside(metrics: str | Path) -> Path:
        """The history.csv a model's metrics.json sits beside (wherever that folder is)."""
        return Path(metrics).with_name("history.csv")

    @staticmethod
    def questions_beside(table: str | Path) -> Path:
        """The per-question outcomes behind a result table or a model's metrics.json:
        routing/{name}.questions.npz beside routing/{name}.csv, models/{run}/questions.npz
        beside its metrics.json."""
        path = Path(table)
        if path.name == "metrics.json":
            return path.with_name("questions.npz")
        return path.with_name(f"{path.stem}.questions.npz")

    def segment(self, run: str, k: int | str) -> Path:
        """The checkpoint at the end of segment k of a training run longer than its walltime
        cap (a temporary file: removed once the model is written)."""
        return self.model_dir(run) / f"segment_{k}.pt"

    def all_metrics(self) -> list[Path]:
        """Every metrics.json this folder holds (models and routers)."""
        return sorted(self.root.glob("models/*/metrics.json"))

    # ------------------------------------------------------------------ experiments
    def routing_csv(self, name: str) -> Path:
        return self.root / "routing" / f"{name}.csv"

    def ivf_csv(self, name: str) -> Path:
        """The IVF/HNSW sweep of natural queries (name `natural`) or of a model's mapped ones
        (and probe_mapped ones: ŷ chooses the lists, x ranks their keys)."""
        return self.root / "ivf" / f"{name}.csv"

    def ood_csv(self, run: str) -> Path:
        return self.root / "ood" / f"{run}.csv"

    def clean_test(self, run: str, suffix: str) -> Path:
        """The leakage study's third arm: an official-split model on clean test questions."""
        return self.root / "clean_test" / f"{run}.{suffix}"

    @property
    def pipelines_csv(self) -> Path:
        return self.root / "timing" / "pipelines.csv"

    def tables(self, kind: str) -> list[Path]:
        """The per-run CSVs of one experiment folder (routing, ivf or ood)."""
        return sorted((self.root / kind).glob("*.csv"))

    def has_results(self) -> bool:
        """Whether this folder is a dataset's (it holds one of the stages' folders)."""
        return any((self.root / sub).is_dir() for sub in ("routing", "ivf", "ood", "models",
                                                          "embeddings"))


class ResultsLayout:
    """A run's results folder (`results:`) and figures folder (`figures_dir:`)."""

    def __init__(self, results: str | Path, figures: str | Path = "figures") -> None:
        self.results = Path(results)
        self.figures = Path(figures)

    def dataset(self, name: str) -> DatasetFiles:
        return DatasetFiles(self.results / name)

    def datasets(self) -> list[DatasetFiles]:
        """The dataset folders a written tree holds."""
        if not self.results.is_dir():
            return []
        return [DatasetFiles(p) for p in sorted(self.results.iterdir())
                if p.is_dir() and DatasetFiles(p).has_results()]

    def table1(self, suffix: str) -> Path:
        return self.results / "timing" / f"table1.{suffix}"

    def table(self, name: str, suffix: str) -> Path:
        return self.results / "tables" / f"{name}.{suffix}"

    def report(self, name: str) -> Path:
        """reproduction.md, reproduction.html, claims.csv or provenance.json."""
        return self.results / "report" / name

    def compare(self, name: str) -> Path:
        """summary.md, summary.html, differences.csv or gate.txt."""
        return self.results / "compare" / name

    def log(self, *parts: str) -> Path:
        return self.results.joinpath("logs", *parts).with_suffix(".log")

    def benchmark(self, *parts: str) -> Path:
        return self.results.joinpath("benchmarks", *parts).with_suffix(".tsv")

    def figure(self, stem: str, suffix: str) -> Path:
        return self.figures / f"{stem}.{suffix}"

    @property
    def compare_figures(self) -> Path:
        return self.figures / "compare"


def reference_provenance(folder: str | Path) -> Path:
    """The provenance of a frozen reference folder (or of a results tree's report)."""
    return Path(folder) / "provenance.json"


#: tidy files a frozen reference keeps, relative to a results tree (no models, indexes or
#: embeddings): the files a comparison reads
TIDY_FILES = [
    "*/routing/*.csv", "*/routing/*.versions.json", "*/ivf/*.csv", "*/ivf/*.versions.json",
    "*/ood/*.csv", "*/ood/*.versions.json", "*/clean_test/*.json", "*/clean_test/*.csv",
    "*/routing/*.questions.npz", "*/ivf/*.questions.npz", "*/ood/*.questions.npz",
    "*/clean_test/*.questions.npz", "*/models/*/questions.npz",
    "*/models/*/metrics.json", "*/models/*/history.csv", "*/targets/c1/identity.json",
    "*/embeddings/manifest.json", "*/index/manifest.json", "*/index/ivf_*.json",
    "*/index/hnsw.json", "*/timing/pipelines.csv", "*/timing/pipelines.versions.json",
    "timing/table1.*", "tables/*", "report/claims.csv", "report/reproduction.md",
    "report/provenance.json",
]


@dataclass(frozen=True)
class FileKind:
    """What a file of a dataset's folder holds, read back from its path (file_kind)."""

    kind: str  # keys, queries, split_rows, centroids, assignments, split_queries, split_top1,
    #            ivf_index, hnsw_index, model, or other
    fields: dict[str, str] = field(default_factory=dict)


_KINDS = [
    ("keys", r"embeddings/keys\.npy"),
    ("queries", r"embeddings/queries\.npy"),
    ("split_rows", r"splits/(?P<split>[a-z]+?)(?:_copy)?\.npy"),
    ("centroids", r"clusters/c(?P<c>\d+)/centroids\.npy"),
    ("assignments", r"clusters/c(?P<c>\d+)/assignments\.npy"),
    ("split_queries", r"targets/c(?P<c>\d+)/(?P<split>[a-z]+)_queries\.npy"),
    ("split_top1", r"targets/c(?P<c>\d+)/(?P<split>[a-z]+)_top1\.npy"),
    ("hnsw_index", r"index/hnsw\.faiss"),
    ("ivf_index", r"index/ivf(?:_(?P<quantizer>[a-z]+)_x(?P<multiple>[0-9][0-9.e+-]*))?\.faiss"),
    ("model", r"models/(?P<run>[^/]+)/model\.pt"),
    ("segment", r"models/(?P<run>[^/]+)/segment_(?P<k>\d+)\.pt"),
]


def file_kind(relative: str | Path) -> FileKind:
    """What the file at `relative` (to its dataset's folder) holds; kind `other` for the small
    files (manifests, CSVs, logs) and anything outside the contract."""
    text = Path(relative).as_posix()
    for kind, pattern in _KINDS:
        m = re.fullmatch(pattern, text)
        if m:
            return FileKind(kind, {k: v for k, v in m.groupdict().items() if v is not None})
    return FileKind("other")


def _contract() -> list[tuple[str, str]]:
    d = DatasetFiles("{dataset}")
    run, c = "{run}", "{C}"

    def rel(*paths: Path) -> str:
        return ", ".join(p.relative_to(d.root).as_posix() if i == 0 else p.name
                         for i, p in enumerate(paths))

    return [
        (rel(d.raw_manifest), "the BEIR download: URL, checksum, unique texts (BEIR data)"),
        (rel(d.keys, d.queries), "float32 [n, d], unit L2 norm, each distinct vector once"),
        (rel(d.key_map, d.query_map), "encoded text -> row (BEIR data)"),
        (rel(d.embeddings_manifest), "counts, dimension, fingerprint, sha256 of both arrays"),
        (rel(d.split_rows("{split}"), d.split_rows("{split}", True)),
         "int64 source question of each row of a split; its noisy copy (0 = clean)"),
        (rel(d.centroids(c), d.assignments(c)), "k-means on the keys, C clusters"),
        (rel(d.split_queries(c, "{split}")),
         "float32 [N, d] (C > 1: a relative link to c1's file, checked equal row for row)"),
        (rel(d.split_top1(c, "{split}")),
         "int64 [N, C]: global index of the exact top key of each cluster"),
        (rel(d.identity), "test metrics of ŷ = x (the reference of Figure 3)"),
        (rel(d.ivf_index, d.index_manifest), "the paper's IVF"),
        (rel(d.ivf_variant("{quantizer}", "{multiple}", "faiss")),
         "an IVF variant, with its .json manifest"),
        (rel(d.hnsw_index, d.hnsw_manifest), "the HNSW graph"),
        (rel(d.segment(run, "{k}")), "a capped training's checkpoint after segment k (temporary)"),
        (rel(d.model(run), d.history(run), d.metrics(run)),
         "weights; a history row per evaluation with the live units (live_l1..live_lL, "
         "live_min); test metrics and conventions (convexity, init, key_reduction, ema_warmup)"),
        (rel(d.questions(run)), "per test and validation question: E_rel and the rank of y*"),
        (rel(d.routing_csv("{name}")), "routing accuracy vs FLOPs (model, router or baselines)"),
        (rel(d.questions_beside(d.routing_csv("{name}"))),
         "per test and validation question: the rank of the true cluster, per method"),
        (rel(d.ivf_csv("{name}")), "IVF/HNSW sweep of natural (name natural) or mapped (and probe_mapped) queries"),
        (rel(d.questions_beside(d.ivf_csv("{name}"))),
         "per curve, budget and test question: the rank of y* and the keys scanned"),
        (rel(d.ood_csv(run)), "the IVF sweep under query noise"),
        (rel(d.questions_beside(d.ood_csv(run))), "the same per question, per noise level"),
        (rel(d.clean_test(run, "json"), d.clean_test(run, "csv")),
         "an official-split model on clean test questions"),
        (rel(d.pipelines_csv), "wall-clock seconds of the search pipelines"),
    ]


#: the dataset folder of the results contract, as (path pattern, what it holds)
CONTRACT = _contract()


def contract_text() -> str:
    """The dataset folder of the contract as docs/results.md shows it."""
    width = max(len(p) for p, _ in CONTRACT) + 2
    return "\n".join(["results/{dataset}/"] + [f"  {p:<{width}}{what}" for p, what in CONTRACT])
