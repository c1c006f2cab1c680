"""What the workflow asks of each job: its command-line flags, built from the validated config,
and its resource requests, scaled from the size of its dataset.

Pure functions of the config (no Snakemake here), so they are unit-tested like the stages;
`workflow/rules/common.smk` builds one `Jobs` of the run's config and the rules call it.
"""

from __future__ import annotations

import math
import sys

from ..core.runs import dataset_n_keys, expand_grid, parse_run
from ..core.stage_settings import TrainSettings
from ..models.cost import TrainingCost, load_rates, training_cost
from ..models.networks import ModelSpec
from ..models.routers import ROUTERS, parse_router_stem
from .disk_plan import DEFAULT_ENCODER_D

#: the shortest runtime a training job asks for (minutes)
MIN_RUNTIME_MINUTES = 10


def space_separated(values) -> str:
    """A list as the CLI takes it: space-separated."""
    return " ".join(str(v) for v in values)


def cli_flag(key: str, value) -> str:
    """One option of the CLI: --key value, or --key / --no-key for a boolean."""
    flag = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


class Jobs:
    """Flags and resources of every job of a run, from its validated config."""

    def __init__(self, config: dict):
        self.config = config
        self.datasets = config["datasets"]
        table = config["cluster"]["throughput"]
        self.rates = load_rates(table) if table else []

    # ------------------------------------------------------------ resources

    def n_keys(self, dataset: str) -> int:
        return dataset_n_keys(self.datasets[dataset])

    def embedding_mb(self, dataset: str) -> float:
        """Memory of the keys in MB: float32 at the synthetic config's d, or the encoder's
        width for text (all-MiniLM-L6-v2's, which sizes any other encoder too until encoded)."""
        ds = self.datasets[dataset]
        d = ds["synthetic"]["d"] if ds["source"] == "synthetic" else DEFAULT_ENCODER_D
        return self.n_keys(dataset) * d * 4 / 1e6

    def mem_mb(self, dataset: str, factor: float, base: int = 2000) -> int:
        """A job's memory request: `base` MB plus `factor` copies of the keys."""
        return int(base + factor * self.embedding_mb(dataset))

    def train_mem_mb(self, dataset: str) -> int:
        """The memory a training job of this dataset asks for (rule train)."""
        return self.mem_mb(dataset, 4, base=4000)

    def model_spec(self, dataset: str, run_name: str) -> ModelSpec:
        """The model a run trains, sized for the dataset's keys (text: the encoder's width)."""
        ds, run = self.datasets[dataset], parse_run(run_name)
        d = ds["synthetic"]["d"] if ds["source"] == "synthetic" else DEFAULT_ENCODER_D
        return ModelSpec(model=run.model, d=d, n_keys=self.n_keys(dataset), size=run.size,
                         depth=run.depth, n_x=run.n_x, n_clusters=run.clusters,
                         residual=run.residual, convexity=run.convexity, init=run.init,
                         width_rule=self.config["width_rule"])

    def train_cost(self, dataset: str, run_name: str) -> TrainingCost:
        """The estimated training time of a run (models.cost: its FLOPs at the measured rate
        of the config's throughput table, or at the assumed samples per second)."""
        c = self.config["cluster"]
        return training_cost(self.model_spec(dataset, run_name), self.datasets[dataset]["train"],
                             self.rates, c["n_keys_measured"], c["assumed_samples_per_second"])

    def runtime_request(self, seconds: float) -> int:
        """Minutes a job asks for: its estimate × cluster.runtime_margin, at least
        MIN_RUNTIME_MINUTES, never more than cluster.max_runtime_minutes."""
        c = self.config["cluster"]
        minutes = max(MIN_RUNTIME_MINUTES, math.ceil(seconds / 60 * c["runtime_margin"]))
        return min(minutes, c["max_runtime_minutes"] or minutes)

    def train_segments(self, dataset: str, run_name: str) -> int:
        """How many jobs train a run: its estimate × margin over cluster.max_runtime_minutes,
        rounded up (1 without a cap), so that no segment asks for more than the cap."""
        c = self.config["cluster"]
        if not c["max_runtime_minutes"]:
            return 1
        wanted = self.train_cost(dataset, run_name).seconds / 60 * c["runtime_margin"]
        return max(1, math.ceil(wanted / c["max_runtime_minutes"]))

    def segment_until(self, dataset: str, run_name: str, k: int) -> int:
        """The step segment k of a run ends at (segments of equal steps; the last ends the run)."""
        steps = self.datasets[dataset]["train"]["steps"]
        return round(k * steps / self.train_segments(dataset, run_name))

    def train_minutes(self, dataset: str, run_name: str) -> int:
        """Runtime request of one training job of a run (a segment, where it has several),
        from its own estimated cost."""
        cost = self.train_cost(dataset, run_name).seconds
        return self.runtime_request(cost / self.train_segments(dataset, run_name))

    def time_budget_cli(self, dataset: str, run_name: str) -> str:
        """Under a walltime cap, the budget a training job stops itself within (a checkpoint
        and exit 75 before the scheduler's kill; its retry continues): 95 % of its request."""
        if not self.config["cluster"]["max_runtime_minutes"]:
            return ""
        return f"--max-minutes {0.95 * self.train_minutes(dataset, run_name):g}"

    def training_plan(self) -> list[dict]:
        """Per training run of the grid: its estimated GPU-hours, where its rate comes from,
        the runtime each of its jobs asks for, and how many segments (jobs) train it."""
        rows = []
        for dataset, ds in self.datasets.items():
            for run in expand_grid(ds, self.config["seeds"]):
                cost = self.train_cost(dataset, run.name)
                rows.append({"dataset": dataset, "run": run.name, "gpu_hours": cost.seconds / 3600,
                             "rate": cost.rate, "runtime_minutes": self.train_minutes(dataset, run.name),
                             "segments": self.train_segments(dataset, run.name)})
        return rows

    def router_minutes(self, dataset: str) -> int:
        """Runtime request of a router's training: its steps × batch at the assumed rate, for
        each learning rate of its sweep (a router is a small fraction of a model's cost)."""
        r, c = self.datasets[dataset]["routing"], self.config["cluster"]
        seconds = (r["router_steps"] * r["router_batch_size"] * len(r["router_lr_factors"])
                   / c["assumed_samples_per_second"])
        return self.runtime_request(seconds)

    def training_jobs_at_once(self, resources: dict, local: bool) -> int:
        """How many training jobs can run at once under Snakemake's limits (`resources`: name
        -> value, with _nodes for --jobs and _cores for --cores): --jobs, the cores over a
        training job's threads when jobs run on this machine (`local`), the gpu resource over
        gpu_per_job where both are set, and the mem_mb resource over the smallest training
        job's memory."""
        limits = [sys.maxsize]
        if resources.get("_nodes"):
            limits.append(resources["_nodes"])
        if local and resources.get("_cores"):
            limits.append(resources["_cores"] // min(self.config["threads"], resources["_cores"]))
        if resources.get("gpu") is not None and self.config["gpu_per_job"] > 0:
            limits.append(resources["gpu"] // self.config["gpu_per_job"])
        if resources.get("mem_mb") is not None:
            limits.append(resources["mem_mb"] // min(self.train_mem_mb(d) for d in self.datasets))
        return max(1, min(limits))

    # ------------------------------------------------------------ flags

    def beir_fetch_flags(self, dataset: str) -> str:
        """Where the fetch stage downloads a BEIR dataset from and how it checks it."""
        b = self.datasets[dataset]["beir"]
        flags = [f"--base-url {b['base_url']}", f"--size-bytes {b['size_bytes']}",
                 f"--query-source {b['query_source']}"]
        flags += [f"--{key.replace('_', '-')} {b[key]}" for key in ("mirror", "md5", "generated_url")
                  if b[key]]
        return " ".join(flags)

    def train_cli(self, dataset: str) -> str:
        """The settings that decide what a model becomes: a change re-plans its training."""
        train = self.datasets[dataset]["train"]
        return " ".join(cli_flag(k, v) for k, v in train.items() if k not in TrainSettings.EXECUTION_ONLY)

    def execution_cli(self, dataset: str, block: str, keys, threads: int) -> str:
        """How a job runs (threads and the `keys` of its config block), not what it computes.
        Rules read it through a function of `threads`, which Snakemake counts as derived and
        leaves out of its params trigger: a setting fitted to a new kind of node re-runs no
        finished job."""
        settings = self.datasets[dataset][block]
        return " ".join([f"--threads {threads}", *(cli_flag(k, settings[k]) for k in keys)])

    def router_cli(self, dataset: str, router: str) -> str:
        """A learned router's recipe: its own steps, batch and LR at batch 128; warmup, cosine
        floor, clipping and EMA as the models of the dataset (its train block)."""
        r, t = self.datasets[dataset]["routing"], self.datasets[dataset]["train"]
        recipe = {
            "steps": r["router_steps"],
            "batch_size": r["router_batch_size"],
            "lr_at_128": r[ROUTERS[parse_router_stem(router)[0]].lr_key],
            **{k: t[k] for k in ("warmup_fraction", "end_lr_fraction", "ema_at_128", "ema_warmup",
                                 "grad_clip")},
        }
        return (" ".join(cli_flag(k, v) for k, v in recipe.items())
                + f" --lr-factors {space_separated(r['router_lr_factors'])}")

    def learned_routers(self, dataset: str) -> list[str]:
        """The name stems of every learned router baseline the dataset's routing block asks for
        (classifier_S_L2, linear, ...), kind by kind of the router registry."""
        r = self.datasets[dataset]["routing"]
        return [stem for kind in ROUTERS.values() for stem in kind.chosen(r)]

    def run_cli(self, run_name: str) -> str:
        """The model a run name stands for, as the train stage's flags."""
        r = parse_run(run_name)
        flags = (f"--model {r.model} --size {r.size} --depth {r.depth} --nx {r.n_x} "
                 f"--clusters {r.clusters} --seed {r.seed} --convexity {r.convexity} "
                 f"--init {r.init} --width-rule {self.config['width_rule']}")
        return flags + (" --residual" if r.residual else "")

    def ivf_flags(self, dataset: str) -> str:
        """The budgets and recalls every IVF sweep of the dataset uses."""
        v = self.datasets[dataset]["ivf"]
        return f"--nprobe {space_separated(v['nprobe'])} --recall-at {space_separated(v['recall_at'])}"

    def ivf_sweep(self, dataset: str) -> str:
        """The ivf stage's own flags: the IVF variants, the HNSW efSearch sweep and how many
        queries are timed."""
        v = self.datasets[dataset]["ivf"]
        return (f"--quantizers {space_separated(v['quantizers'])} --nlist-multiples {space_separated(v['nlist_multiples'])} "
                f"--ef-search {space_separated(v['hnsw_ef_search'])} --timed-queries {v['timed_queries']} "
                f"--evaluator {v['evaluator']}" + (" --probe-mapped" if v["probe_mapped"] else ""))

    @staticmethod
    def ivf_build_flags(quantizer: str, multiple) -> str:
        """The index stage's flags for one IVF: the paper's setup or a variant."""
        return f"--quantizers {quantizer} --nlist-multiples {float(multiple):g}"


def training_plan_tables(config: dict, name: str, *, per_job: bool = False) -> str:
    """`amips-bench plan`: what every training job of a config costs (GPU-hours, where its
    rate comes from) and asks a cluster for (runtime, segments), per dataset and in total;
    with `per_job`, a row per job first."""
    rows = Jobs(config).training_plan()
    cluster = config["cluster"]
    cap = cluster["max_runtime_minutes"]
    source = cluster["throughput"] or f"an assumed {cluster['assumed_samples_per_second']:g} samples/s"
    lines = [f"# training jobs of {name}: priced with {source}; runtime = estimate "
             f"× {cluster['runtime_margin']:g}, cap {f'{cap} minutes' if cap else 'none'}", ""]
    if per_job:
        lines += ["| dataset | run | GPU-hours | rate | runtime request (min) | segments |",
                  "|---|---|---:|---|---:|---:|"]
        lines += [f"| {r['dataset']} | {r['run']} | {r['gpu_hours']:,.2f} | {r['rate']} | "
                  f"{r['runtime_minutes']:,} | {r['segments']} |" for r in rows]
        lines.append("")
    lines += ["| dataset | jobs | GPU-hours | longest job (h) | jobs in more than one segment | "
              "segments | measured / extrapolated / assumed rates |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for dataset in [*dict.fromkeys(r["dataset"] for r in rows), "total"]:
        sub = [r for r in rows if dataset in ("total", r["dataset"])]
        rates = "/".join(str(sum(r["rate"] == k for r in sub)) for k in ("measured", "extrapolated", "assumed"))
        lines.append(f"| {dataset} | {len(sub)} | {sum(r['gpu_hours'] for r in sub):,.0f} | "
                     f"{max(r['gpu_hours'] for r in sub):,.1f} | {sum(r['segments'] > 1 for r in sub)} | "
                     f"{sum(r['segments'] for r in sub)} | {rates} |")
    return "\n".join(lines)
