"""Which files each target and each job of a run reads and writes, from its validated config.

The workflow's rules take their inputs and target lists from one `RunFiles` of the run's config
(workflow/rules/common.smk builds it), and every path comes from the results layout
(core.layout), so the tree the rules declare is the tree the stages write. Pure Python over the
config and, for the datasets that link files from an earlier one, the files already on disk:
unit-tested without Snakemake.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path

from ..core.config import ood_run, shared_data
from ..core.layout import SPLITS, DatasetFiles, ResultsLayout
from ..core.runs import expand_grid, ivf_files, ivf_variants, parse_run, queries_from_c1
from ..core.stage_settings import RegimeSettings
from ..reporting.figures import FIGURES, FigureInstance
from .jobs import Jobs


def made_here(path: str | Path) -> bool:
    """A file that a stage of its own dataset wrote, not a link to another dataset's."""
    return os.path.lexists(path) and not os.path.islink(path)


def strings(paths) -> list[str]:
    return [str(p) for p in paths]


class RunFiles:
    """The files of one run: its datasets' grids, twins, job inputs and targets."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.layout = ResultsLayout(config["results"], config["figures_dir"])
        self.jobs = Jobs(config)
        self.datasets = config["datasets"]
        self.runs = {name: expand_grid(ds, config["seeds"]) for name, ds in self.datasets.items()}
        shared = shared_data(self.datasets)
        self.embedding_twins = self._without_own(shared["embeddings"], lambda d: [d.embeddings_manifest])
        self.ivf_twins = self._on_the_same_keys(self._without_own(
            shared["ivf"], lambda d: [d.index_manifest, *glob.glob(str(d.index / "ivf*"))]))
        self.hnsw_twins = self._on_the_same_keys(self._without_own(
            shared["hnsw"], lambda d: glob.glob(str(d.index / "hnsw.*"))))
        #: the official-split dataset of each leakage pair -> its leak-free twin, whose test
        #: questions the clean_test rule scores the official-split models on (the third arm)
        self.leak_free_twin = {p["official"]: p["leak_free"] for p in config["figures"]["leakage"]}

    def of(self, dataset: str) -> DatasetFiles:
        return self.layout.dataset(dataset)

    def source(self, kind: str) -> list[str]:
        """The datasets of one source (synthetic, beir or local); `text`: both text sources."""
        return [n for n, d in self.datasets.items()
                if d["source"] == kind or (kind == "text" and d["source"] != "synthetic")]

    # ------------------------------------------------------------ datasets with the same data

    def _without_own(self, twins: dict, own_files) -> dict:
        """Twins of the datasets that did not make their own files before they had one: a
        dataset that did keeps them, and the stages that made them, so a re-run recomputes
        nothing."""
        return {name: twin for name, twin in twins.items()
                if not any(made_here(p) for p in own_files(self.of(name)))}

    def _on_the_same_keys(self, twins: dict) -> dict:
        """An index is shared only where both datasets' keys are one file."""
        keys = self.embedding_twins
        return {name: twin for name, twin in twins.items()
                if name in keys and keys.get(twin, twin) == keys[name]}

    # ------------------------------------------------------------ the grid

    def runs_where(self, dataset: str, **conditions) -> list:
        """Runs of a dataset's grid whose attributes equal the given values."""
        return [r for r in self.runs[dataset] if all(getattr(r, k) == v for k, v in conditions.items())]

    def clustered(self, dataset: str) -> list[int]:
        return sorted({r.clusters for r in self.runs[dataset]} - {1})

    def ivf_runs(self, dataset: str) -> list:
        models = self.datasets[dataset]["ivf"]["models"]
        return [r for r in self.runs[dataset] if r.clusters == 1 and r.model in models]

    # ------------------------------------------------------------ inputs of jobs

    def beir_folder(self, dataset: str) -> str:
        ds = self.datasets[dataset]
        if ds["source"] == "local":
            return ds["beir"]["path"]
        return str(self.of(dataset).raw / (ds["beir"]["name"] or dataset))

    def encode_inputs(self, dataset: str) -> list[str]:
        if self.datasets[dataset]["source"] == "beir":
            return [str(self.of(dataset).raw_manifest)]
        return []

    def encode_fetch_flag(self, dataset: str) -> str:
        if self.datasets[dataset]["source"] == "beir":
            return f"--fetch-manifest {self.of(dataset).raw_manifest}"
        return ""

    def queries_twin(self, dataset: str, clusters) -> DatasetFiles | None:
        """The dataset whose targets/c1 queries the targets of c{clusters} link to (the same
        splits give the same queries at every cluster count), where the dataset trains c = 1
        models; a folder that wrote its own queries before keeps them."""
        d = self.of(dataset)
        if not queries_from_c1(int(clusters), self.runs[dataset]):
            return None
        if any(made_here(d.split_queries(clusters, s)) for s in SPLITS):
            return None
        return d

    def targets_inputs(self, dataset: str, clusters) -> dict:
        d = self.of(dataset)
        inputs = {"key_file": str(d.keys), "queries": str(d.queries),
                  "splits": str(d.splits_manifest)}
        if int(clusters) > 1:
            inputs["assignments"] = str(d.assignments(clusters))
        if self.queries_twin(dataset, clusters):
            inputs["same_queries"] = strings(d.split_queries(1, s) for s in SPLITS)
        if dataset in self.leak_free_twin:  # rows the leak-free twin holds are not searched again
            twin = self.of(self.leak_free_twin[dataset])
            inputs["twin_targets"] = str(twin.targets_manifest(clusters))
            inputs["twin_splits"] = str(twin.splits_manifest)
        return inputs

    def targets_flags(self, dataset: str, clusters) -> str:
        """The targets job's flags for what it reads besides the dataset's embeddings and
        splits: the cluster assignments (c > 1), the c = 1 queries it links to and, for a
        leakage pair's official-split dataset, the leak-free twin whose targets it reuses. One
        param, so the rule's shell text and recorded params stay those of the jobs run before
        the link existed (Snakemake re-runs a job whose shell text or params changed)."""
        d = self.of(dataset)
        flags = [f"--clusters-dir {d.clusters(clusters)}"] if int(clusters) > 1 else []
        if self.queries_twin(dataset, clusters):
            flags.append(f"--queries-from {d.targets(1)}")
        if dataset in self.leak_free_twin:
            twin = self.of(self.leak_free_twin[dataset])
            flags.append(f"--reuse-from {twin.targets(clusters)} --reuse-splits {twin.splits}")
        return " ".join(flags)

    def train_inputs(self, dataset: str, run_name: str, segment: int | None = None) -> dict:
        """What training job `segment` of a run reads (None: the last, which writes the model):
        the keys, its targets and, after the first segment, the previous one's checkpoint."""
        d = self.of(dataset)
        inputs = {"key_file": str(d.keys),
                  "targets": str(d.targets_manifest(parse_run(run_name).clusters))}
        k = self.jobs.train_segments(dataset, run_name) if segment is None else segment
        if k > 1:
            inputs["previous"] = str(d.segment(run_name, k - 1))
        return inputs

    def routing_inputs(self, dataset: str, clusters) -> dict:
        d = self.of(dataset)
        return {"targets": str(d.targets_manifest(clusters)),
                "assignments": str(d.assignments(clusters))}

    def ivf_index_files(self, dataset: str) -> list[str]:
        """The files of the dataset's IVFs, the paper's (rule index) and every variant (one
        `ivf_variant` job each), so a sweep that runs builds a missing one."""
        d, v = self.of(dataset), self.datasets[dataset]["ivf"]
        variants = ivf_variants(v["quantizers"], v["nlist_multiples"])
        return [str(d.ivf_index)] + [str(d.index_file(name)) for q, m in variants
                                     for name in ivf_files(q, m)]

    def hnsw_inputs(self, dataset: str) -> list[str]:
        """The HNSW graph and manifest where the dataset has an efSearch sweep."""
        d = self.of(dataset)
        return strings([d.hnsw_index, d.hnsw_manifest]) if self.datasets[dataset]["ivf"]["hnsw_ef_search"] else []

    def pipeline_inputs(self, dataset: str) -> dict:
        d, seed = self.of(dataset), self.config["seeds"][0]
        inputs = {"index": str(d.index_manifest), "ivf": str(d.ivf_index),
                  "targets": str(d.targets_manifest(1)),
                  "ivf_models": [str(d.model(r.name)) for r in self.ivf_runs(dataset) if r.seed == seed],
                  "routing_models": []}
        if self.clustered(dataset):
            c = self.clustered(dataset)[0]
            inputs["routing_targets"] = str(d.targets_manifest(c))
            inputs["routing_models"] = [str(d.model(r.name))
                                        for r in self.runs_where(dataset, clusters=c, seed=seed)]
        return inputs

    def fine_centroids(self, dataset: str, clusters) -> list[int]:
        """The equal-cost centroid rules of a dataset's c-cluster routing: m between c and the
        number of keys (the CLI checks against the real count)."""
        return [m for m in self.datasets[dataset]["routing"]["fine_centroids"]
                if int(clusters) < m < self.jobs.n_keys(dataset)]

    # ------------------------------------------------------------ result files

    def metrics_files(self, dataset: str, **conditions) -> list[str]:
        return [str(self.of(dataset).metrics(r.name)) for r in self.runs_where(dataset, **conditions)]

    def all_metrics(self) -> list[str]:
        return [f for ds in self.datasets for f in self.metrics_files(ds)]

    def all_histories(self) -> list[str]:
        return [str(self.of(ds).history(r.name)) for ds in self.datasets for r in self.runs[ds]]

    def identity_files(self, datasets) -> list[str]:
        """The identity map's reference metrics of each dataset with c = 1 models."""
        return [str(self.of(ds).identity) for ds in datasets if self.metrics_files(ds, clusters=1)]

    def routing_csvs(self, dataset: str) -> list[str]:
        """Every routing table of a dataset: one per clustered model, router and baseline set."""
        d, out = self.of(dataset), []
        for c in self.clustered(dataset):
            out += [d.routing_csv(r.name) for r in self.runs_where(dataset, clusters=c)]
            for seed in self.config["seeds"]:
                out.append(d.routing_csv(f"baselines_c{c}_s{seed}"))
                out += [d.routing_csv(f"router_{stem}_c{c}_s{seed}")
                        for stem in self.jobs.learned_routers(dataset)]
        return strings(out)

    def ivf_csvs(self, dataset: str) -> list[str]:
        d = self.of(dataset)
        return strings([d.ivf_csv("natural")] + [d.ivf_csv(r.name) for r in self.ivf_runs(dataset)])

    def ood_csvs(self) -> list[str]:
        dataset = self.config["figures"]["ood"]
        if not dataset:
            return []
        return [str(self.of(dataset).ood_csv(ood_run(self.config, dataset).name))]

    def training_files(self, kind: str) -> list[str]:
        """The `history` or `metrics` files (DatasetFiles.history / .metrics) of the models
        Figure 8 follows."""
        dataset = self.config["figures"]["training"]
        if not dataset:
            return []
        d = self.of(dataset)
        runs = self.runs_where(dataset, model=self.config["figures"]["training_model"], clusters=1)
        return [str(getattr(d, kind)(r.name)) for r in runs]

    def regime_files(self, kind: str) -> list[str]:
        """The files Figure 10 reads of the datasets of figures.regime: `ivf` tables, or the
        `metrics` and `history` of their c = 1 models (in the same order)."""
        datasets = self.config["figures"]["regime"]["datasets"]
        if kind == "ivf":
            return [f for ds in datasets for f in self.ivf_csvs(ds)]
        return [str(getattr(self.of(ds), kind)(r.name)) for ds in datasets
                for r in self.runs_where(ds, clusters=1)]

    def regime_arguments(self) -> str:
        """The --regime flags of the figure and report stages ("" without a study)."""
        return RegimeSettings.from_config(self.config["figures"]["regime"]).arguments()

    def clean_test_files(self, suffix: str) -> list[str]:
        """The clean_test outputs (json or csv) of every c = 1 model of every leakage pair."""
        return [str(self.of(official).clean_test(r.name, suffix))
                for official in self.leak_free_twin for r in self.runs_where(official, clusters=1)]

    def leakage_files(self, files_of, **conditions) -> list[str]:
        """files_of(dataset, ...) for both datasets of every leakage pair."""
        return [f for p in self.config["figures"]["leakage"] for ds in (p["leak_free"], p["official"])
                for f in files_of(ds, **conditions)]

    def leakage_pairs(self) -> str:
        """The leakage study's dataset pairs as the CLI takes them (LEAK_FREE:OFFICIAL ...)."""
        return " ".join(f"{p['leak_free']}:{p['official']}" for p in self.config["figures"]["leakage"])

    # ------------------------------------------------------------ targets of the workflow

    def figures(self) -> list[FigureInstance]:
        """Every figure the config asks for, in the registry's order."""
        return [inst for fig in FIGURES.values() for inst in fig.instances(self.config)]

    def figure_files(self, stem: str) -> list[str]:
        return strings(self.layout.figure(stem, s) for s in ("pdf", "png", "csv"))

    def figure_outputs(self) -> list[str]:
        out = [f for inst in self.figures() for f in self.figure_files(inst.stem)]
        if self.config["table1"]["datasets"]:
            out += strings([self.layout.table1("csv"), self.layout.table1("md")])
        return out

    def table_outputs(self) -> list[str]:
        return strings([self.layout.table(name, s) for name in ("final_metrics", "realism")
                        for s in ("csv", "md")] + [self.of(ds).pipelines_csv for ds in self.datasets])

    def report_inputs(self) -> dict:
        return {
            "metrics": self.all_metrics(),
            "histories": self.all_histories(),
            "routing": [f for ds in self.datasets for f in self.routing_csvs(ds)],
            "ivf": [f for ds in self.datasets for f in self.ivf_csvs(ds)],
            "ood": self.ood_csvs() if self.config["figures"]["ood"] else [],
            "table1": [str(self.layout.table1("csv"))] if self.config["table1"]["datasets"] else [],
            "figures": [f for f in self.figure_outputs() if f.endswith(".png")],
            "manifests": [str(self.of(ds).embeddings_manifest) for ds in self.datasets],
            "clean_tests": self.clean_test_files("json") + self.clean_test_files("csv"),
        }

    def report_kinds(self) -> str:
        return " ".join(f"{name}={d['source']}" for name, d in self.datasets.items())

    def config_hash(self) -> str:
        text = json.dumps(self.config, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def compared_this_run(self) -> dict:
        """The files of this run that a comparison reads, where a compared run is this run's
        results folder: computed first, so a comparison never reads a half-made run. Other
        runs are read as they are and are not inputs: a reference is never rebuilt by a
        comparison (after changing one, force it: --forcerun compare_runs)."""
        inputs: dict = {}
        for folder in self.config["compare"]["runs"].values():
            if Path(folder) == self.layout.results:
                data = self.report_inputs()
                for key in ("metrics", "histories", "routing", "ivf", "ood", "table1", "manifests"):
                    inputs[f"this_{key}"] = data[key]
                inputs["this_identity"] = self.identity_files(self.datasets)
        return inputs

    def compare_runs_flag(self) -> str:
        return " ".join(f"{name}={folder}" for name, folder in self.config["compare"]["runs"].items())

    def reference_folder(self) -> str:
        return self.config["compare"]["runs"][self.config["compare"]["baseline"]]
