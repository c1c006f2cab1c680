# Helpers shared by all workflow files (the validated config, the paths of the results
# contract, the model grid, resources scaled from each dataset's size, the inputs of every
# target), so that the other .smk files hold nothing but rules.

import copy
import glob
import hashlib
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from amips_bench.core.config import (
    ENCODER_EXECUTION_ONLY,
    IVF_MULTIPLE_WILDCARD,
    IVF_QUANTIZERS,
    LINEAR_ROUTER,
    PAPER_IVF_SETUP,
    RUN_WILDCARD,
    SIZES,
    ConfigError,
    dataset_n_keys,
    expand_grid,
    ivf_files,
    ivf_variants,
    nx_for,
    ood_run,
    parse_run,
    prepare,
    queries_from_c1,
    shared_data,
)
from amips_bench.core.disk import DISK_MARGIN_ENV
from amips_bench.disk_plan import (
    free_disk_verdict,
    plan_outputs,
    results_folder,
)
from amips_bench.jobs import Jobs, words
from amips_bench.reporting.plots import module_files
from amips_bench.core.settings import TrainConfig

# A config file given on the command line replaces the default quick profile instead of being
# deep-merged into it (Snakemake's default), which would leak the synthetic dataset into every
# other run. `workflow.config_settings.overwrite_config` (the command line's configfiles and
# --config, merged) is Snakemake-internal: pyproject.toml pins snakemake to >=8,<10, the
# versions this was checked with.
if workflow.overwrite_configfiles:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))

try:
    config.update(prepare(config))
except ConfigError as exc:
    raise WorkflowError(f"amips-bench config error: {exc}") from None

# Every shell command calls `amips-bench <stage>`; this bash function runs the CLI of this
# checkout, so that jobs work alike with the package installed, inside the pinned conda
# environment (which holds only the dependencies) and on cluster nodes sharing the checkout.
SRC = Path(workflow.basedir) / "src"
_function = f'amips-bench() {{ PYTHONPATH="{SRC}${{PYTHONPATH:+:$PYTHONPATH}}" python -m amips_bench.cli "$@"; }}; '
shell.prefix(_function.replace("{", "{{").replace("}", "}}"))  # the prefix is str.format-ed

R = config["results"]
F = config["figures_dir"]
ENV = str(Path(workflow.basedir) / config["conda_env"])
DEVICE = config["device"]
FAISS_DEVICE = config["faiss_device"]
DATASETS = config["datasets"]
SYNTHETIC = [n for n, d in DATASETS.items() if d["source"] == "synthetic"]
TEXT = [n for n, d in DATASETS.items() if d["source"] != "synthetic"]
BEIR = [n for n, d in DATASETS.items() if d["source"] == "beir"]
RUNS = {name: expand_grid(ds, config["seeds"]) for name, ds in DATASETS.items()}
# every job's flags and resource requests (amips_bench.jobs)
JOBS = Jobs(config)


def made_here(path):
    """A file that a stage of its own dataset wrote, not a link to another dataset's."""
    return os.path.lexists(path) and not os.path.islink(path)


# Embeddings and indexes that a dataset links from an earlier one with the same settings
# (config.shared_data; rules shared_embeddings, shared_ivf and shared_hnsw) instead of making
# them again. A dataset that made its own before it had such a twin keeps them, and the stages
# that made them, so a re-run recomputes nothing.
def without_own(twins, *own_files):
    return {
        name: twin
        for name, twin in twins.items()
        if not any(
            made_here(p) for pattern in own_files for p in glob.glob(f"{R}/{name}/{pattern}")
        )
    }


def on_the_same_keys(twins):
    """An index is shared only where both datasets' keys are one file."""
    return {
        name: twin
        for name, twin in twins.items()
        if name in EMBEDDING_TWINS and EMBEDDING_TWINS.get(twin, twin) == EMBEDDING_TWINS[name]
    }


_SHARED = shared_data(DATASETS)
EMBEDDING_TWINS = without_own(_SHARED["embeddings"], "embeddings/manifest.json")
IVF_TWINS = on_the_same_keys(without_own(_SHARED["ivf"], "index/manifest.json", "index/ivf*"))
HNSW_TWINS = on_the_same_keys(without_own(_SHARED["hnsw"], "index/hnsw.*"))


def either(names, but=()):
    """A wildcard constraint matching exactly these names but those in `but` (or nothing)."""
    return "|".join(n for n in names if n not in but) or "^$"


def stem(output):
    """The common prefix of a figure's outputs (STEM.pdf, STEM.png, STEM.csv)."""
    return str(Path(str(output)).with_suffix(""))


def model_dir(dataset, run_name):
    return f"{R}/{dataset}/models/{run_name}"


def runs_where(dataset, **conditions):
    """Runs of a dataset's grid whose attributes equal the given values."""
    return [r for r in RUNS[dataset] if all(getattr(r, k) == v for k, v in conditions.items())]


def cluster_counts(dataset):
    return sorted({r.clusters for r in RUNS[dataset]})


def clustered(dataset):
    return [c for c in cluster_counts(dataset) if c > 1]


def paths(*named):
    """Named inputs as one space-separated string (a named input of one file is a string)."""
    return " ".join(v if isinstance(v, str) else words(v) for v in named)


# The code that draws a figure, table or report is an input of its rule: editing it re-renders
# that output and nothing upstream. Training and the other stages are deliberately left out
# (their code changes rarely and re-running them is expensive): force them with
# `snakemake --forcerun train` (or any rule name) when their code changed.
PACKAGE = Path(workflow.basedir) / "src" / "amips_bench"


def figure_code(name):
    return module_files(name, PACKAGE)


def table_code():
    return [str(PACKAGE / "reporting" / "tables.py"), str(PACKAGE / "reporting" / "results.py")]


def report_code():
    return [
        str(PACKAGE / "reporting" / "report.py"),
        str(PACKAGE / "core" / "paper.py"),
    ] + table_code()


# ---------------------------------------------------------------- disk

# The fetch, encode and targets stages check their own files against the free disk with the run's disk_margin,
# handed on in the environment (amips_bench.core.disk.stage_disk_margin says why not a param).
os.environ[DISK_MARGIN_ENV] = str(config["disk_margin"]).lower()


def check_free_disk():
    """Before the first job (onstart): the disk that the jobs still to run will write, sized
    from the DAG's outputs (amips_bench.disk_plan), against the free disk under the results
    folder. A short disk stops the run in one line before anything is written; config key
    disk_margin (null: no check) is the headroom asked for on top of the plan. The jobs come
    from `workflow.dag.needrun_jobs()`, Snakemake-internal like overwrite_config above."""
    margin = config["disk_margin"]
    if margin is None:
        return
    jobs = workflow.dag.needrun_jobs()
    outputs = [(str(f), job.rule.name) for job in jobs for f in job.output]
    planned = plan_outputs(config, outputs, Path.cwd())
    at_once = training_jobs_at_once()
    line, short = free_disk_verdict(planned, results_folder(config, Path.cwd()), margin, at_once)
    if short:
        raise WorkflowError(
            f"amips-bench disk check: {line} (config key disk_margin: null skips this check)"
        )
    logger.info(f"amips-bench disk check: {line}")


def training_jobs_at_once():
    """How many training jobs can run at once: --jobs, the cores over a training job's threads
    when jobs run on this machine, the gpu resource over gpu_per_job where both are set, and
    the mem_mb resource (--resources mem_mb=N) over the smallest training job's memory (the
    verdict counts no more than there are models to train). Snakemake 9 holds these as
    Resource objects, 8 as ints."""

    def value(name):
        held = workflow.global_resources.get(name)
        return getattr(held, "value", held)

    limits = [sys.maxsize]
    if value("_nodes"):
        limits.append(value("_nodes"))
    if workflow.local_exec and value("_cores"):
        limits.append(value("_cores") // min(config["threads"], value("_cores")))
    if value("gpu") is not None and config["gpu_per_job"] > 0:
        limits.append(value("gpu") // config["gpu_per_job"])
    if value("mem_mb") is not None:
        limits.append(value("mem_mb") // min(JOBS.train_mem_mb(d) for d in DATASETS))
    return max(1, min(limits))


def ivf_index_files(dataset):
    """The files of the dataset's IVFs, the paper's (rule index) and every variant (one
    `ivf_variant` job each): indexes and manifests, so a sweep that runs builds a missing one."""
    v = DATASETS[dataset]["ivf"]
    variants = ivf_variants(v["quantizers"], v["nlist_multiples"])
    return [f"{R}/{dataset}/index/ivf.faiss"] + [
        f"{R}/{dataset}/index/{name}" for q, m in variants for name in ivf_files(q, m)
    ]


# ---------------------------------------------------------------- BEIR sources


def beir_name(dataset):
    return DATASETS[dataset]["beir"]["name"] or dataset


def beir_folder(dataset):
    if DATASETS[dataset]["source"] == "local":
        return DATASETS[dataset]["beir"]["path"]
    return f"{R}/{dataset}/raw/{beir_name(dataset)}"


def beir_fetch_flags(dataset):
    b = DATASETS[dataset]["beir"]
    flags = [
        f"--base-url {b['base_url']}",
        f"--size-bytes {b['size_bytes']}",
        f"--query-source {b['query_source']}",
    ]
    if b["mirror"]:
        flags.append(f"--mirror {b['mirror']}")
    if b["md5"]:
        flags.append(f"--md5 {b['md5']}")
    if b["generated_url"]:
        flags.append(f"--generated-url {b['generated_url']}")
    return " ".join(flags)


def encode_inputs(wildcards):
    if DATASETS[wildcards.dataset]["source"] == "beir":
        return [f"{R}/{wildcards.dataset}/raw/manifest.json"]
    return []


def encode_fetch_flag(dataset):
    if DATASETS[dataset]["source"] == "beir":
        return f"--fetch-manifest {R}/{dataset}/raw/manifest.json"
    return ""


# ---------------------------------------------------------------- inputs of jobs


SPLIT_QUERY_FILES = ("train_queries.npy", "val_queries.npy", "test_queries.npy")


def queries_twin(dataset, clusters):
    """The targets/c1 folder whose queries the targets of c{clusters} link to (the same splits
    give the same queries at every cluster count), where the dataset trains c = 1 models; a
    folder that wrote its own queries before keeps them, so a re-run recomputes nothing."""
    own = f"{R}/{dataset}/targets/c{clusters}"
    if not queries_from_c1(int(clusters), RUNS[dataset]):
        return None
    if any(made_here(f"{own}/{name}") for name in SPLIT_QUERY_FILES):
        return None
    return f"{R}/{dataset}/targets/c1"


def targets_inputs(wildcards):
    inputs = {
        "key_file": f"{R}/{wildcards.dataset}/embeddings/keys.npy",
        "queries": f"{R}/{wildcards.dataset}/embeddings/queries.npy",
        "splits": f"{R}/{wildcards.dataset}/splits/manifest.json",
    }
    if int(wildcards.clusters) > 1:
        inputs["assignments"] = (
            f"{R}/{wildcards.dataset}/clusters/c{wildcards.clusters}/assignments.npy"
        )
    twin = queries_twin(wildcards.dataset, wildcards.clusters)
    if twin:
        inputs["same_queries"] = [f"{twin}/{name}" for name in SPLIT_QUERY_FILES]
    if wildcards.dataset in LEAK_FREE_TWIN:  # rows the leak-free twin holds are not searched again
        leak_free = LEAK_FREE_TWIN[wildcards.dataset]
        inputs["twin_targets"] = f"{R}/{leak_free}/targets/c{wildcards.clusters}/manifest.json"
        inputs["twin_splits"] = f"{R}/{leak_free}/splits/manifest.json"
    return inputs


def clusters_flag(dataset, clusters):
    """The targets job's flags for what it reads besides the dataset's embeddings and splits:
    the cluster assignments (c > 1), the c = 1 queries it links to and, for a leakage pair's
    paper-split dataset, the leak-free twin whose targets it reuses. One param, so the rule's
    shell text and its recorded params stay those of the jobs run before the link existed
    (Snakemake re-runs a job whose shell text or params changed)."""
    flags = [f"--clusters-dir {R}/{dataset}/clusters/c{clusters}"] if int(clusters) > 1 else []
    twin = queries_twin(dataset, clusters)
    flags += [f"--queries-from {twin}"] if twin else []
    if dataset in LEAK_FREE_TWIN:
        leak_free = f"{R}/{LEAK_FREE_TWIN[dataset]}"
        flags += [f"--reuse-from {leak_free}/targets/c{clusters} --reuse-splits {leak_free}/splits"]
    return " ".join(flags)


def routing_inputs(dataset, clusters):
    return {
        "targets": f"{R}/{dataset}/targets/c{clusters}/manifest.json",
        "assignments": f"{R}/{dataset}/clusters/c{clusters}/assignments.npy",
    }


def routing_csvs(dataset):
    """Every routing table of a dataset: one per clustered model, router and baseline set."""
    out = []
    for c in clustered(dataset):
        out += [f"{R}/{dataset}/routing/{r.name}.csv" for r in runs_where(dataset, clusters=c)]
        for seed in config["seeds"]:
            out.append(f"{R}/{dataset}/routing/baselines_c{c}_s{seed}.csv")
            out += [
                f"{R}/{dataset}/routing/router_{size}_L{depth}_c{c}_s{seed}.csv"
                for size, depth in JOBS.learned_routers(dataset)
            ]
    return out


def ivf_runs(dataset):
    models = DATASETS[dataset]["ivf"]["models"]
    return [r for r in RUNS[dataset] if r.clusters == 1 and r.model in models]


def ivf_csvs(dataset):
    return [f"{R}/{dataset}/ivf/natural.csv"] + [
        f"{R}/{dataset}/ivf/{r.name}.csv" for r in ivf_runs(dataset)
    ]


def ood_csv():
    dataset = config["figures"]["ood"]
    return f"{R}/{dataset}/ood/{ood_run(config, dataset).name}.csv"


def fig8_files(kind):
    dataset = config["figures"]["training"]
    if not dataset:
        return []
    runs = runs_where(dataset, model=config["figures"]["training_model"], clusters=1)
    return [f"{model_dir(dataset, r.name)}/{kind}" for r in runs]


def metrics_files(dataset, **conditions):
    return [f"{model_dir(dataset, r.name)}/metrics.json" for r in runs_where(dataset, **conditions)]


def all_metrics():
    return [f for ds in DATASETS for f in metrics_files(ds)]


def identity_files(datasets):
    """The identity map's reference metrics of each dataset with c = 1 models."""
    return [
        f"{R}/{ds}/targets/c1/identity.json" for ds in datasets if metrics_files(ds, clusters=1)
    ]


def pipeline_inputs(wildcards):
    ds = wildcards.dataset
    seed = config["seeds"][0]
    inputs = {
        "index": f"{R}/{ds}/index/manifest.json",
        "ivf": f"{R}/{ds}/index/ivf.faiss",
        "targets": f"{R}/{ds}/targets/c1/manifest.json",
        "ivf_models": [f"{model_dir(ds, r.name)}/model.pt" for r in ivf_runs(ds) if r.seed == seed],
        "routing_models": [],
    }
    if clustered(ds):
        c = clustered(ds)[0]
        inputs["routing_targets"] = f"{R}/{ds}/targets/c{c}/manifest.json"
        inputs["routing_models"] = [
            f"{model_dir(ds, r.name)}/model.pt" for r in runs_where(ds, clusters=c, seed=seed)
        ]
    return inputs


# ---------------------------------------------------------------- targets of the workflow


def hnsw_inputs(dataset):
    """The HNSW stage's graph and manifest where the dataset has an efSearch sweep (none
    otherwise)."""
    if DATASETS[dataset]["ivf"]["hnsw_ef_search"]:
        return [f"{R}/{dataset}/index/hnsw.faiss", f"{R}/{dataset}/index/hnsw.json"]
    return []


def leakage_pairs():
    """The leakage study's dataset pairs as the CLI takes them (LEAK_FREE:PAPER ...)."""
    return " ".join(f"{p['leak_free']}:{p['paper']}" for p in config["figures"]["leakage"])


#: the paper-split dataset of each leakage pair -> its leak-free twin, whose test questions the
#: clean_test rule scores the paper-split models on (the study's third arm)
LEAK_FREE_TWIN = {p["paper"]: p["leak_free"] for p in config["figures"]["leakage"]}


def clean_test_files(suffix):
    """The clean_test outputs (json or csv) of every c = 1 model of every leakage pair."""
    return [
        f"{R}/{paper}/clean_test/{r.name}.{suffix}"
        for paper in LEAK_FREE_TWIN
        for r in runs_where(paper, clusters=1)
    ]


def leakage_files(files_of, **conditions):
    """files_of(dataset, ...) for both datasets of every leakage pair."""
    pairs = config["figures"]["leakage"]
    return [
        f for p in pairs for ds in (p["leak_free"], p["paper"]) for f in files_of(ds, **conditions)
    ]


def figure_output(name, caption):
    """The outputs of a figure rule: STEM.pdf, STEM.png (in the Snakemake report with its
    caption) and STEM.csv, the plotted numbers."""
    return {
        "pdf": f"{F}/{name}.pdf",
        "png": report(f"{F}/{name}.png", caption=f"../report/{caption}", category="Figures"),
        "csv": f"{F}/{name}.csv",
    }


def figure_files(name):
    return [f"{F}/{name}.pdf", f"{F}/{name}.png", f"{F}/{name}.csv"]


def figure_outputs():
    figs = config["figures"]
    out = []
    if figs["toy"]:
        out += figure_files("fig1_toy")
    if figs["routing"]:
        out += figure_files("fig2_routing")
    if figs["erel_mrr"]:
        out += figure_files("fig3_erel_mrr")
    for dataset, number in figs["ivf"].items():
        out += figure_files(f"fig{number}_ivf_{dataset}")
    if figs["ood"]:
        out += figure_files("fig7_ood")
    if figs["training"]:
        out += figure_files("fig8_training")
    if figs["leakage"]:
        out += figure_files("fig9_leakage")
    if config["table1"]["datasets"]:
        out += [f"{R}/timing/table1.csv", f"{R}/timing/table1.md"]
    return out


def table_outputs():
    return [
        f"{R}/tables/final_metrics.csv",
        f"{R}/tables/final_metrics.md",
        f"{R}/tables/realism.csv",
        f"{R}/tables/realism.md",
    ] + [f"{R}/{ds}/timing/pipelines.csv" for ds in DATASETS]


def all_histories():
    return [f.replace("metrics.json", "history.csv") for f in all_metrics()]


def report_inputs(wildcards):
    figures = [f for f in figure_outputs() if f.endswith(".png")]
    return {
        "metrics": all_metrics(),
        "histories": all_histories(),
        "routing": [f for ds in DATASETS for f in routing_csvs(ds)],
        "ivf": [f for ds in DATASETS for f in ivf_csvs(ds)],
        "ood": [ood_csv()] if config["figures"]["ood"] else [],
        "table1": [f"{R}/timing/table1.csv"] if config["table1"]["datasets"] else [],
        "figures": figures,
        "manifests": [f"{R}/{ds}/embeddings/manifest.json" for ds in DATASETS],
        "clean_tests": clean_test_files("json") + clean_test_files("csv"),
        "code": report_code(),
    }


def report_kinds():
    return " ".join(f"{name}={d['source']}" for name, d in DATASETS.items())


def config_hash():
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fine_centroids(dataset, clusters):
    """The equal-cost centroid rules of a dataset's c-cluster routing: m between c and the
    number of keys (the CLI checks against the real count)."""
    return [
        m
        for m in DATASETS[dataset]["routing"]["fine_centroids"]
        if int(clusters) < m < JOBS.n_keys(dataset)
    ]


def compare_runs_flag():
    return " ".join(f"{name}={folder}" for name, folder in config["compare"]["runs"].items())


def compare_inputs(wildcards):
    """A compared run written by this workflow (its folder is `results`) is computed first,
    its report too: the report's provenance names the commit and devices of the run in the
    comparison. Other runs are read as they are and are not inputs: a reference is never
    rebuilt by a comparison (after changing one, force it: --forcerun compare_runs)."""
    inputs = {"code": [str(PACKAGE / f) for f in COMPARE_CODE]}
    for folder in config["compare"]["runs"].values():
        if Path(folder) == Path(R):
            data = report_inputs(wildcards)
            for key in ("metrics", "histories", "routing", "ivf", "ood", "table1", "manifests"):
                inputs[f"this_{key}"] = data[key]
            inputs["this_identity"] = identity_files(DATASETS)
            inputs["this_provenance"] = rules.reproduction_report.output.provenance
    return inputs


def reference_folder():
    return config["compare"]["runs"][config["compare"]["baseline"]]


COMPARE_CODE = [
    "comparing/curves.py",
    "comparing/stage.py",
    "comparing/trees.py",
    "comparing/overlays.py",
    "reporting/results.py",
    "reporting/plots/style.py",
]
