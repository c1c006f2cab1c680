"""What the workflow asks of each job (amips_bench.planning.jobs): flags that the CLI parses back into
the config's own settings, and resource requests from the data's size."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import pytest
import yaml

from amips_bench.cli import build_parser
from amips_bench.core.config import prepare
from amips_bench.core.runs import expand_grid, parse_run
from amips_bench.core.schema import SCHEMA_PATH
from amips_bench.core.stage_settings import TrainSettings
from amips_bench.planning.jobs import Jobs, cli_flag

ROOT = Path(__file__).resolve().parents[1]


def _config(name: str = "config.yaml") -> dict:
    return prepare(yaml.safe_load((ROOT / "config" / name).read_text()), SCHEMA_PATH)


def _parse(stage: str, flags: str, required: str = ""):
    return build_parser().parse_args([stage, *shlex.split(required), *shlex.split(flags)])


def test_a_boolean_is_a_switch_and_anything_else_a_value():
    assert cli_flag("ema_warmup", True) == "--ema-warmup"
    assert cli_flag("ema_warmup", False) == "--no-ema-warmup"
    assert cli_flag("lr_at_128", 0.002) == "--lr-at-128 0.002"


@pytest.mark.parametrize("config", ["config.yaml", "paper.yaml", "long_schedule.yaml"])
def test_the_train_flags_parse_back_into_every_setting_of_the_train_block(config):
    """What a model becomes is exactly the config's train block: each non-execution key reaches
    the CLI with its value, and none of the execution keys (a new node kind re-trains nothing)."""
    cfg = _config(config)
    jobs = Jobs(cfg)
    for name, ds in cfg["datasets"].items():
        run = expand_grid(ds, cfg["seeds"])[0]
        args = _parse("train", jobs.train_cli(name) + " " + jobs.run_cli(run.name),
                      "--dataset-dir d --out o")
        for key, value in ds["train"].items():
            if key in TrainSettings.EXECUTION_ONLY:
                assert f"--{key.replace('_', '-')}" not in jobs.train_cli(name), key
            else:
                assert getattr(args, key) == value, (config, name, key)
        # the run name and the flags say the same model
        parsed = parse_run(run.name)
        assert (args.model, args.size, args.depth, args.nx, args.clusters, args.seed) == \
            (parsed.model, parsed.size, parsed.depth, parsed.n_x, parsed.clusters, parsed.seed)


def test_execution_flags_carry_the_threads_and_only_the_named_keys():
    cfg = _config()
    flags = Jobs(cfg).execution_cli("quick", "train", ("cuda_graph", "checkpoint_every"), 3)
    assert flags == (f"--threads 3 {cli_flag('cuda_graph', cfg['datasets']['quick']['train']['cuda_graph'])} "
                     f"--checkpoint-every {cfg['datasets']['quick']['train']['checkpoint_every']}")


def test_a_router_trains_with_its_own_steps_and_lr_and_the_models_schedule():
    cfg = _config()
    r, t = cfg["datasets"]["quick"]["routing"], cfg["datasets"]["quick"]["train"]
    jobs = Jobs(cfg)
    for router in jobs.learned_routers("quick"):
        flags = shlex.split(jobs.router_cli("quick", router))
        value = dict(zip(flags[::2], flags[1::2]))
        assert value["--steps"] == str(r["router_steps"])
        lr = r["linear_router_lr_at_128" if router == "linear" else "classifier_lr_at_128"]
        assert value["--lr-at-128"] == str(lr)
        assert value["--warmup-fraction"] == str(t["warmup_fraction"])
    depth = r["classifier_depth"]
    assert jobs.learned_routers("quick") == [f"classifier_{s}_L{depth}" for s in r["classifier_sizes"]] \
        + (["linear"] if r["linear_router"] else [])


def test_ivf_flags_parse_back_into_the_ivf_block():
    cfg = _config()
    v = cfg["datasets"]["quick"]["ivf"]
    jobs = Jobs(cfg)
    args = _parse("ivf", f"{jobs.ivf_flags('quick')} {jobs.ivf_sweep('quick')}",
                  "--dataset-dir d --index-dir i --out o.csv")
    assert args.nprobe == v["nprobe"] and args.recall_at == v["recall_at"]
    assert args.quantizers == v["quantizers"] and args.ef_search == v["hnsw_ef_search"]
    assert args.nlist_multiples == [float(m) for m in v["nlist_multiples"]]
    assert Jobs.ivf_build_flags("kmeans", "4") == "--quantizers kmeans --nlist-multiples 4"


def test_resources_grow_with_the_keys_and_the_steps():
    """Memory: base + factor × the float32 keys; runtime without a throughput table: 3 × steps
    × batch at the assumed 2e4 samples/s, at least 10 minutes (by hand on the quick config)."""
    cfg = _config()
    ds = cfg["datasets"]["quick"]
    jobs = Jobs(cfg)
    run = expand_grid(ds, cfg["seeds"])[0].name
    keys_mb = ds["synthetic"]["n_keys"] * ds["synthetic"]["d"] * 4 / 1e6
    assert jobs.embedding_mb("quick") == pytest.approx(keys_mb)
    assert jobs.mem_mb("quick", 3) == int(2000 + 3 * keys_mb)
    assert jobs.train_mem_mb("quick") == int(4000 + 4 * keys_mb)
    assert jobs.train_minutes("quick", run) == 10  # 400 steps: far under the floor
    ds["train"]["steps"] = 100_000
    expected = math.ceil(100_000 * ds["train"]["batch_size"] / 2e4 / 60 * 3)
    assert jobs.train_minutes("quick", run) == expected > 10
    assert jobs.train_cost("quick", run).rate == "assumed"


def test_training_jobs_ask_for_their_own_estimates_and_never_above_the_cap():
    """With the committed H200 throughput table, the paper's most and least expensive NQ models
    ask for runtimes in the ratio of their estimated training times (FLOPs at the measured
    rate), and a 24-hour cap bounds every request of the grid."""
    cfg = _config("paper.yaml")
    cfg["cluster"]["throughput"] = str(ROOT / "benchmarks/results/train_throughput_h200.csv")
    jobs = Jobs(cfg)
    runs = [r.name for r in expand_grid(cfg["datasets"]["nq"], cfg["seeds"])]
    costs = {r: jobs.train_cost("nq", r) for r in runs}
    cheap, dear = min(runs, key=lambda r: costs[r].seconds), max(runs, key=lambda r: costs[r].seconds)
    assert costs[dear].seconds > 100 * costs[cheap].seconds  # minutes against days
    assert {c.rate for c in costs.values()} <= {"measured", "extrapolated"}
    ratio = jobs.train_minutes("nq", dear) / jobs.train_minutes("nq", cheap)
    assert ratio == pytest.approx(costs[dear].seconds / costs[cheap].seconds, rel=0.05)
    cfg["cluster"]["max_runtime_minutes"] = 24 * 60
    capped = Jobs(cfg)
    requests = [capped.train_minutes(ds, r.name) for ds in cfg["datasets"]
                for r in expand_grid(cfg["datasets"][ds], cfg["seeds"])]
    assert max(requests) <= 24 * 60 and min(requests) >= 10
    assert capped.train_minutes("nq", cheap) == jobs.train_minutes("nq", cheap)  # under the cap
    # the dearest trains as a chain of jobs of equal steps, each asking for its share
    segments = capped.train_segments("nq", dear)
    assert segments == math.ceil(costs[dear].seconds / 60 * 3 / (24 * 60)) > 1
    steps = cfg["datasets"]["nq"]["train"]["steps"]
    ends = [capped.segment_until("nq", dear, k) for k in range(1, segments + 1)]
    assert ends[-1] == steps and all(b - a in (steps // segments, steps // segments + 1)
                                     for a, b in zip([0] + ends, ends))
    assert capped.train_minutes("nq", dear) == math.ceil(costs[dear].seconds / segments / 60 * 3)




def test_the_plan_counts_every_training_job_its_hours_and_its_segments_under_a_cap(capsys):
    """`amips-bench plan` on the paper config: one row per job of the grid with --jobs, the
    total row sums the datasets' rows, a job's segments are its estimate × margin over the cap
    rounded up (one without a cap), and every runtime request stays under the cap."""
    from amips_bench.cli import main

    cfg = _config("paper.yaml")
    cfg["cluster"].update(throughput=str(ROOT / "benchmarks/results/train_throughput_h200.csv"),
                          max_runtime_minutes=1440)
    rows = Jobs(cfg).training_plan()
    assert len(rows) == sum(len(expand_grid(ds, cfg["seeds"])) for ds in cfg["datasets"].values())
    for r in rows:
        wanted = r["gpu_hours"] * 60 * cfg["cluster"]["runtime_margin"]
        assert r["segments"] == max(1, math.ceil(wanted / 1440)) and r["runtime_minutes"] <= 1440
    assert max(r["segments"] for r in rows) > 1
    assert main(["plan", "--config", str(ROOT / "config/paper.yaml"), "--throughput",
                 str(ROOT / "benchmarks/results/train_throughput_h200.csv"), "--jobs"]) == 0
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.startswith("| total |")).split("|")
    assert int(total[2]) == len(rows) and int(total[6]) == len(rows)  # no cap: one segment each
    assert float(total[3].replace(",", "")) == pytest.approx(sum(r["gpu_hours"] for r in rows), abs=0.5)
    assert sum(line.startswith("| nq | ") for line in out.splitlines()) == 1 + sum(
        r["dataset"] == "nq" for r in rows)


def test_the_cpu_time_plan_scales_measured_rates_by_each_stages_work(capsys):
    """`plan --cpu`: with given rates, the targets stage costs rows × keys / pairs-per-second,
    the sweeps one float64 pass per query set (natural, then mapped and probe_mapped per swept
    model) over the test and validation questions, and training its steps × a step measured
    on this machine; the wall time is at least one dataset's chain of longest jobs."""
    from amips_bench.cli import main
    from amips_bench.planning.time_plan import Rates, plan_tables, stage_estimates

    cfg = _config("regime.yaml")
    for name in ("regime_100k", "regime_500k"):
        del cfg["datasets"][name]
    cfg["datasets"]["regime_20k"]["train"]["steps"] = 10
    rates = Rates(synthetic_rows=1e5, target_pairs=1e9, gemm_fp32=1e10, gemm_fp64=5e9, kmeans=1e10)
    rows = {r["stage"]: r for r in stage_estimates(cfg, rates)}
    ds = cfg["datasets"]["regime_20k"]
    held_out = ds["splits"]["val_size"] + ds["splits"]["test_size"]
    train = (ds["synthetic"]["n_queries"] - held_out) * ds["splits"]["augment_factor"]
    assert rows["targets (c = 1)"]["cpu_seconds"] == pytest.approx((train + held_out) * 20000 / 1e9)
    sets = 1 + 2 * 3  # natural; mapped and probe_mapped of KeyNet XS, S and SupportNet XS
    assert rows["IVF sweeps (all nprobe)"]["cpu_seconds"] == pytest.approx(
        sets * 2.0 * held_out * 20000 * 384 / 5e9)
    assert rows["train (c = 1)"]["jobs"] == 3 and rows["train (c = 1)"]["cpu_seconds"] > 0
    text = plan_tables(list(rows.values()), cores=2, threads=1)
    chain = sum(r["longest_job"] for r in rows.values())
    assert f"about {chain / 60:.1f} min of wall time" in text or chain < sum(
        r["cpu_seconds"] for r in rows.values()) / 2
    assert main(["plan", "--config", str(ROOT / "config/regime.yaml"), "--cpu"]) == 0
    out = capsys.readouterr().out
    assert "| regime_500k | train (c = 1) | 2 |" in out and "of wall time" in out


def test_the_cpu_time_plan_of_a_real_dataset_is_one_line(capsys):
    """The CPU plan measures rates for the synthetic generator only: a BEIR dataset is refused
    in one line naming its key, before anything is measured."""
    from amips_bench.cli import main

    assert main(["plan", "--config", str(ROOT / "config/fiqa.yaml"), "--cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "amips-bench plan: error: config key 'datasets.fiqa.source': 'beir'; the CPU time plan "
        "covers synthetic datasets only"]
    assert "| fiqa |" not in captured.out  # no stage was estimated
