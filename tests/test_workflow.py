"""The whole Snakemake workflow on a tiny config in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny.yaml"
REFERENCE = ROOT / "tests" / "fixtures" / "reference_tiny"

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, config: Path = TINY) -> subprocess.CompletedProcess:
    # targets before --configfile, which would read them as more config files
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(workdir), *args, "--configfile", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True)


def run_and_compare(workdir: Path, target: str, *config: str) -> Path:
    """The tiny workflow up to `target` in workdir, compared with the committed 3-seed
    reference (tiny.yaml names it `reference`, a folder of the working directory)."""
    shutil.copytree(REFERENCE, workdir / "reference")
    # two jobs of two threads at once on two cores: a job's start-up (python, torch) overlaps
    # the other's work, 81 s instead of 110 s here
    run = snakemake(workdir, "--cores", "4", target, *(["--config", *config] if config else []))
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return run_and_compare(tmp_path_factory.mktemp("workflow"), "compare")


def assert_reproduces_the_reference(workdir: Path) -> None:
    """The regression gate: every result curve of the reference is in the run and agrees within
    its tolerance; a failure names each curve that moved or was lost. (A curve new in the run,
    say a new baseline, is no regression; regenerate the reference to compare it too.) Table 1
    is a measurement of the machine, two timed repeats of a tiny batch here, not a result of
    the code: it is compared in the summary but does not gate."""
    rows = pd.read_csv(workdir / "results" / "compare" / "differences.csv", keep_default_na=False)
    assert len(rows) > 100 and set(rows.run) == {"mine"}
    results = rows[rows.figure != "table1"]
    assert set(rows.figure) - set(results.figure) == {"table1"}
    moved = results[~results.verdict.isin(["agrees", "only in run mine"])]
    assert moved.empty, "curves beyond their tolerance:\n" + "\n".join(
        f"{r.figure} · {r.curve} · {r.metric}: {r.verdict} ({r.tolerance})" for r in moved.itertuples())
    # the reference trains every model with three seeds (the OOD study uses seed 0 only)
    seeded = rows[rows.model.isin(["supportnet", "keynet"])
                  & ~rows.figure.isin(["table1", "fig7_ood"])]
    assert len(seeded) and seeded.tolerance.str.contains("σ_seed").all()


def test_every_figure_is_a_valid_image_with_its_numbers(finished):
    figures = finished / "figures"
    stems = ["fig1_toy", "fig2_routing", "fig3_erel_mrr", "fig4_ivf_tiny", "fig7_ood", "fig8_training"]
    for stem in stems:
        image = mpimg.imread(figures / f"{stem}.png")
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200, stem
        assert image.std() > 0.01, f"{stem}.png is blank"
        assert (figures / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-", stem
        assert len(pd.read_csv(figures / f"{stem}.csv")) > 0, stem


def test_every_table_parses(finished):
    results = finished / "results"
    metrics = pd.read_csv(results / "tables" / "final_metrics.csv")
    identity = metrics[metrics.model.str.startswith("identity")]
    assert len(metrics) == 7 and len(identity) == 1 and identity.mrr.iloc[0] == 1.0
    assert {"e_rel", "e_rel_half", "e_rel_median", "mrr", "match_rate", "width_rule",
            "split_mode"} <= set(metrics.columns)
    realism = pd.read_csv(results / "tables" / "realism.csv")
    assert len(realism) == 11
    table1 = pd.read_csv(results / "timing" / "table1.csv")
    assert sorted(zip(table1.model, table1["size"])) == [("keynet", "S"), ("supportnet", "S")]
    assert "grad/score" in (results / "timing" / "table1.md").read_text()
    routing = pd.concat(pd.read_csv(p) for p in (results / "tiny" / "routing").glob("*.csv"))
    assert set(routing.method) == {"supportnet", "keynet", "centroid_ip", "centroid_l2",
                                   "centroid_cos", "centroid_fine_m100", "centroid_fine_m1000",
                                   "centroid_fine_sph_m100", "centroid_fine_sph_m1000",
                                   "oracle", "classifier", "linear_router"}
    assert set(routing.split_mode) == {"leak_free"}
    for _, curve in routing.groupby(["method", "size", "depth", "n_x", "seed"], dropna=False):
        accuracy = curve.sort_values("k").accuracy.values  # more clusters scanned, never worse
        assert (accuracy[1:] >= accuracy[:-1]).all()
    ivf = pd.concat(pd.read_csv(p) for p in (results / "tiny" / "ivf").glob("*.csv"))
    assert set(ivf["query"]) == {"natural", "mapped"} and set(ivf["index"]) == {"ivf", "hnsw"}
    ood = pd.read_csv(next((results / "tiny" / "ood").glob("*.csv")))
    assert set(ood["std"]) == {0.0, 0.1}
    assert len(pd.read_csv(results / "tiny" / "timing" / "pipelines.csv")) > 0


def test_the_tiny_run_reproduces_the_committed_reference(finished):
    """The run (two threads a job, tiny.yaml) against the reference made on one thread: thread
    counts change the order of floating-point sums; the tolerance absorbs that."""
    assert (json.loads((REFERENCE / "provenance.json").read_text())["config"]["threads"]
            != yaml.safe_load(TINY.read_text())["threads"])
    assert_reproduces_the_reference(finished)
    summary = (finished / "results" / "compare" / "summary.md").read_text()
    assert "reference (baseline)" in summary and "| paper" in summary
    overlays = {p.name for p in (finished / "figures" / "compare").glob("*.png")}
    assert overlays == {"fig2_routing.png", "fig3_erel_mrr.png", "fig4_6_ivf_tiny.png",
                        "fig7_ood.png", "fig8_training.png", "table1.png"}


def test_the_comparison_waits_for_the_report_that_names_the_runs_commit(finished):
    """The compared run's commit comes from its report's provenance, so the comparison runs
    after the report (not beside it, when it would read no provenance and say "not recorded")."""
    commit = json.loads((finished / "results" / "report" / "provenance.json").read_text())
    mine = next(line for line in (finished / "results" / "compare" / "summary.md").read_text()
                .splitlines() if line.startswith("| mine"))
    assert commit["git_commit"] in mine and "not recorded" not in mine, mine
    run = snakemake(finished, "-n", "compare_runs", "--forcerun", "reproduction_report")
    assert run.returncode == 0, run.stderr[-2000:]
    assert {"reproduction_report", "compare_runs"} <= planned_rules(run.stdout + run.stderr)


def test_comparing_never_rebuilds_the_reference(tmp_path):
    """The compared reference is read, never planned: `compare` runs the workflow and the
    comparison, not freeze_reference (which would overwrite the reference with this run)."""
    shutil.copytree(REFERENCE, tmp_path / "reference")
    run = snakemake(tmp_path, "-n", "compare")
    assert run.returncode == 0, run.stderr[-2000:]
    planned = planned_rules(run.stdout + run.stderr)
    assert "compare_runs" in planned and "freeze_reference" not in planned, planned


def test_a_second_run_does_nothing(finished):
    run = snakemake(finished, "-n", "all")
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


def disk_plan(workdir: Path) -> list:
    from amips_bench.core.config import prepare
    from amips_bench.planning.disk_plan import plan, read_summary

    run = snakemake(workdir, "--summary", "all")
    assert run.returncode == 0, run.stderr[-2000:]
    return plan(prepare(yaml.safe_load(TINY.read_text())), read_summary(run.stdout), workdir)


def test_the_disk_plan_made_before_the_run_sizes_what_it_writes(finished, tmp_path):
    """Planned from the config alone in an empty folder, every array, index and model of the
    run is sized within 2 % and 4 KB of the file the run wrote (arrays exactly); after the run
    the plan has nothing left to write."""
    before = disk_plan(tmp_path)
    assert before and all(p.pending for p in before)
    binaries = [p for p in before if Path(p.path).suffix in (".npy", ".faiss", ".pt")]
    assert {r for p in binaries for r in [p.rule]} >= {
        "synthetic", "split", "cluster", "targets", "index", "ivf_variant", "hnsw_index",
        "train", "train_router"}
    for p in binaries:
        written = finished / p.path
        actual = 0 if written.is_symlink() else written.stat().st_size  # a link costs nothing
        if p.path.endswith(".npy"):
            assert p.bytes == actual, (p.path, p.bytes, actual)
        assert abs(p.bytes - actual) <= 0.02 * actual + 4096, (p.path, p.bytes, actual)
    assert sum(p.to_write for p in before) == sum(p.bytes for p in before)
    after = disk_plan(finished)
    assert [p.path for p in after] == [p.path for p in before]
    assert sum(p.to_write for p in after) == 0
    # the run checked the same plan, made from its own DAG, before its first job
    from amips_bench.core.disk import size_text
    from amips_bench.planning.disk_plan import checkpoint_peak

    log = "".join(p.read_text() for p in (finished / ".snakemake" / "log").glob("*.log"))
    # (two training jobs at once: four cores, two threads a job)
    checked = re.findall(r"amips-bench disk check: the run writes ([0-9.]+ [MG]B) under \S+ and "
                         r"2 training jobs at once hold up to ([0-9.]+ [MG]B) of checkpoints", log)
    assert checked == [(size_text(sum(p.bytes for p in before)),
                        size_text(checkpoint_peak(before, 2)))], checked


def test_a_run_stops_before_its_first_job_when_the_disk_is_short(tmp_path):
    """No disk holds the plan with a margin of 10^15: the run stops in one line that names the
    results folder, before any job and with no results folder; an empty disk_margin (null)
    skips the check, the targets stage's own check too, and the same jobs run."""
    target = "results/tiny/targets/c1/manifest.json"
    short = snakemake(tmp_path, "--cores", "1", target, "--config", "disk_margin=1e15")
    assert short.returncode != 0
    assert re.search(rf"amips-bench disk check: the run writes [0-9.]+ MB under {tmp_path}/results, "
                     r"but only [0-9.]+ [MG]B are free there", short.stderr), short.stderr[-2000:]
    assert not (tmp_path / "results").exists()
    unchecked = snakemake(tmp_path, "--cores", "1", target, "--config", "disk_margin=")
    assert unchecked.returncode == 0, unchecked.stderr[-2000:]
    assert (tmp_path / target).is_file() and "disk check" not in unchecked.stderr
    assert "disk check" not in (tmp_path / "results/logs/tiny/targets_c1.log").read_text()


def test_the_disk_check_counts_the_training_jobs_that_memory_lets_run_at_once(tmp_path):
    """Two cores run two one-thread training jobs at once (the finished run's log says so); a
    mem_mb resource that holds one training job's memory (4 GB and up) lets one run at once."""
    run = snakemake(tmp_path, "--cores", "2", "figures", "--resources", "mem_mb=6000",
                    "--config", "disk_margin=1e15")
    assert run.returncode != 0 and "a training job holds up to" in run.stderr, run.stderr[-2000:]


def test_the_targets_stage_checks_its_own_files_with_the_runs_margin(finished):
    """The run hands its disk_margin to the targets stage (in the environment, so that results
    made before keep their targets), which sizes its files before its search."""
    log = (finished / "results/logs/tiny/targets_c1.log").read_text()
    assert re.search(r"disk check: the targets of train, val, test take [0-9.]+ MB \([0-9.]+ [MG]B "
                     r"free under ", log), log[-2000:]


def test_clustered_targets_link_the_queries_of_c1(finished):
    """The queries of a split are the same at every cluster count: targets/c4 links them to
    targets/c1's files (relative links) and writes only its top-1 files."""
    targets = finished / "results" / "tiny" / "targets"
    for split in ("train", "val", "test"):
        link = targets / "c4" / f"{split}_queries.npy"
        assert link.is_symlink() and not os.path.isabs(os.readlink(link)), split
        assert link.resolve() == (targets / "c1" / f"{split}_queries.npy").resolve(strict=True)
        assert not (targets / "c4" / f"{split}_top1.npy").is_symlink()


def planned_rules(log: str) -> set[str]:
    """The rules a `snakemake -n` log plans."""
    return set(re.findall(r"^(?:local)?rule (\w+):", log, re.M))


def plan_after(finished: Path, tmp_path: Path, block: str, change: dict) -> str:
    """The log of `snakemake -n all` on the finished tiny tree after `change` to one block of
    its dataset, written with the file's keys sorted (the order of keys is no change)."""
    config = yaml.safe_load(TINY.read_text())
    config["datasets"]["tiny"].setdefault(block, {}).update(change)
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    run = snakemake(finished, "-n", "all", config=changed)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout + run.stderr


def planned_after(finished: Path, tmp_path: Path, block: str, change: dict) -> set[str]:
    """The rules `snakemake -n all` plans on the finished tiny tree after `change` (plan_after)."""
    return planned_rules(plan_after(finished, tmp_path, block, change))


def test_a_sweep_that_runs_again_rebuilds_a_deleted_ivf_variant_and_no_other_index(
        finished, tmp_path):
    """Every IVF variant is a declared output of its own job: a sweep that runs again (a new
    nprobe) and finds a variant deleted plans that variant's job, and no other index or model.
    Before, the sweep failed."""
    variant = finished / "results" / "tiny" / "index" / "ivf_kmeans_x4.faiss"
    kept = variant.with_suffix(".kept")
    variant.rename(kept)
    try:
        log = plan_after(finished, tmp_path, "ivf", {"nprobe": [1, 2, 4, 16]})
    finally:
        kept.rename(variant)
    planned = planned_rules(log)
    assert {"ivf_variant", "ivf_natural", "ivf_mapped"} <= planned, planned
    assert not {"index", "hnsw_index", "train", "targets"} & planned, planned
    assert set(re.findall(r"^ivf_variant\s+(\d+)$", log, re.M)) == {"1"}
    assert "wildcards: dataset=tiny, quantizer=kmeans, multiple=4" in log


def test_how_a_training_job_runs_trains_no_model_again(finished, tmp_path):
    """CUDA graph, resident data, reader processes and checkpoint interval say how a job runs,
    not what it computes: changing them for another kind of node plans only the report (it
    records the config's hash)."""
    planned = planned_after(finished, tmp_path, "train",
                            {"cuda_graph": False, "resident_max_gb": 0.001, "reader_processes": 0,
                             "checkpoint_every": 7})
    assert planned == {"reproduction_report", "all"}, planned


@pytest.mark.parametrize("block, change, replanned, kept", [
    ("train", {"lr_at_128": 0.002}, {"train", "ivf_mapped"}, {"split", "cluster", "targets", "index"}),
    ("ivf", {"nprobe": [1, 2, 4, 16]}, {"ivf_natural", "ivf_mapped"}, {"index", "hnsw_index", "train"}),
    ("ivf", {"hnsw_ef_search": [8, 16, 32]}, {"ivf_natural"}, {"index", "hnsw_index", "train"}),
    ("ivf", {"hnsw_ef_construction": 100}, {"hnsw_index", "ivf_natural"}, {"index", "train"}),
    ("ivf", {"nlist_multiples": [1, 2]}, {"ivf_variant", "ivf_natural", "ivf_mapped"},
     {"index", "hnsw_index", "train"}),
])
def test_a_change_plans_the_jobs_it_touches_and_nothing_upstream(finished, tmp_path, block,
                                                                    change, replanned, kept):
    """A new learning rate trains again; a new nprobe or efSearch re-runs the sweeps and
    rebuilds no index (at 5.2M keys the HNSW graph alone is hours of CPU); a new nlist multiple
    builds its own variants and not the paper's IVF."""
    planned = planned_after(finished, tmp_path, block, change)
    assert replanned <= planned and not kept & planned, planned


def test_the_report_holds_every_figure_with_its_caption(finished):
    run = snakemake(finished, "--report", str(finished / "report.html"))
    assert run.returncode == 0, run.stderr[-2000:]
    html = (finished / "report.html").read_text()
    for name in ("fig1_toy.png", "fig2_routing.png", "fig3_erel_mrr.png", "fig4_ivf_tiny.png",
                 "fig7_ood.png", "fig8_training.png", "table1.md"):
        assert name in html, name
    for caption in ("the 2-D example of five keys", "routing accuracy", "relative transport error",
                    "approximate search with KeyNet", "robustness to out-of-distribution",
                    "validation E_rel", "seconds to process one batch"):
        assert caption in html, caption


def test_lint_reports_nothing():
    run = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile",
                          str(ROOT / "Snakefile"), "--directory", str(ROOT)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Lints for" not in run.stdout + run.stderr


def test_the_reproduction_report_lists_every_claim_honestly(finished):
    from amips_bench.reporting.report import CLAIMS

    claims = pd.read_csv(finished / "results" / "report" / "claims.csv")
    assert set(claims.claim) == {c.id for c in CLAIMS}
    assert not claims.counts_as_reproduction.any()  # synthetic data never counts
    assert set(claims.verdict) <= {"holds on synthetic data", "fails on synthetic data",
                                   "undecided on synthetic data", "not run"}
    # every judged claim found the per-question files its interval needs
    reasons = claims.reason.fillna("")
    assert not reasons.str.contains("per-question").any(), claims[["claim", "reason"]]
    assert (claims.questions > 0).sum() >= 5
    html = (finished / "results" / "report" / "reproduction.html").read_text()
    assert "Table 1 beside the paper" in html and "git_commit" in html


def test_editing_the_plot_style_re_renders_the_figures_and_nothing_upstream(finished):
    """The code that draws is an input of the figure rules: a newer reporting/plots/style.py plans every
    figure (and the report that shows them) again, and no data, training or search job."""
    style = ROOT / "src" / "amips_bench" / "reporting" / "plots" / "style.py"
    text, before = style.read_bytes(), style.stat()
    try:  # an edit: Snakemake compares checksums, so a bare touch would not count
        style.write_bytes(text + b"# an edit\n")
        run = snakemake(finished, "-n", "all")
    finally:
        style.write_bytes(text)
        os.utime(style, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert run.returncode == 0, run.stderr[-2000:]
    planned = planned_rules(run.stdout + run.stderr)
    figures = {"fig1_toy", "fig2_routing", "fig3_erel_mrr", "fig4_ivf_tiny", "fig7_ood", "fig8_training"}
    assert planned == figures | {"reproduction_report", "all"}, planned


def test_a_capped_training_runs_unattended_as_a_chain_of_segments_to_the_same_model(finished, tmp_path):
    """Under a 10-minute walltime cap, with a rate that prices the tiny config's longest model
    at 10 minutes (30 with the margin), the workflow plans it as two train_segment jobs and the
    last train job; one command runs the chain, each segment resuming the previous one, to the
    uncapped run's model bit for bit, and the segment files are removed once it is written."""
    run = "supportnet_S_L3_nx2_c4_pen_s0"
    shutil.copytree(finished / "results", tmp_path / "results", symlinks=True,
                    ignore=lambda folder, names: [run] if Path(folder).name == "models" else [])
    config = yaml.safe_load(TINY.read_text())
    config["cluster"] = {"max_runtime_minutes": 10, "assumed_samples_per_second": 16}
    capped = tmp_path / "capped.yaml"
    capped.write_text(yaml.safe_dump(config))
    target = f"results/tiny/models/{run}/metrics.json"
    out = snakemake(tmp_path, "--cores", "2", target, config=capped)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"^train_segment\s+2$", out.stderr, re.M) and re.search(r"^train\s+1$", out.stderr, re.M)
    logs = tmp_path / "results" / "logs" / "tiny" / "train"
    name = "supportnet_S_L3_nx2_c4"  # the spec's name: no convexity mark, no seed
    assert "segment saved at step 50 of 150" in (logs / f"{run}_segment1.log").read_text()
    assert f"resumed {name} at step 50" in (logs / f"{run}_segment2.log").read_text()
    assert f"resumed {name} at step 100" in (logs / f"{run}.log").read_text()
    weights = [torch.load(root / "results/tiny/models" / run / "model.pt", weights_only=False)["state_dict"]
               for root in (finished, tmp_path)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not list((tmp_path / "results/tiny/models" / run).glob("segment_*.pt"))
