"""The benchmark scripts, run on the CPU: those a GPU machine runs (benchmarks/gpu_suite.sh and
the benchmarks it calls; a GPU session is rare, so a script that breaks must break here first)
and the CPU ones whose tables the README quotes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import benchmark_script

from amips_bench.models.networks import ModelSpec

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, **kw)


def test_gpu_suite_rejects_an_unknown_phase_before_running_any(tmp_path):
    out = tmp_path / "out"
    run = _run(["bash", "benchmarks/gpu_suite.sh", str(out), "install", "throughput", "tabel1"])
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "gpu_suite: unknown phase 'tabel1' (phases: install tests throughput loader targets table1 leakage)"]
    assert "== gpu_suite" not in run.stdout and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_suite_refuses_a_machine_without_a_gpu_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    run = _run(["bash", "benchmarks/gpu_suite.sh", str(out), "throughput"])
    assert run.returncode != 0
    assert "gpu_suite: no CUDA GPU visible to torch" in run.stderr
    assert not out.exists()


def test_train_throughput_writes_a_row_per_model_size_and_cluster_count(tmp_path):
    """The throughput phase's script on the CPU: every configuration measured, its FLOPs those
    paper_cost prices a step at, and its share of the peak the ratio of the two rates."""
    paper_cost = benchmark_script("paper_cost")
    stem = tmp_path / "tp"
    run = _run([sys.executable, "benchmarks/train_throughput.py", "--n-keys", "20000", "--d", "64",
                "--sizes", "XS", "S", "--clusters", "1", "3", "--batch", "32", "--steps", "1",
                "--blocks", "1", "--warmup", "0", "--gemm-size", "128", "--out", str(stem)])
    assert run.returncode == 0, run.stderr[-2000:]
    rows = list(csv.DictReader(open(f"{stem}.csv")))
    assert sorted((r["model"], r["size"], r["clusters"]) for r in rows) == sorted(
        (m, s, c) for m in ("keynet", "supportnet") for s in ("XS", "S") for c in ("1", "3"))
    for r in rows:
        spec = ModelSpec(model=r["model"], d=64, n_keys=20000, size=r["size"], depth=4, n_x=3,
                         n_clusters=int(r["clusters"]))
        assert (int(r["width"]), r["width_rule"]) == (spec.width, "paper")
        assert int(r["parameters"]) == spec.n_parameters
        assert float(r["flop_per_step"]) == pytest.approx(paper_cost.step_flops(spec, 32), rel=0.02)
        assert float(r["pct_of_own_peak"]) == pytest.approx(
            100 * float(r["achieved_flops"]) / float(r["peak_flops"]))
    assert Path(f"{stem}.md").read_text().count("\n| keynet") == 4


def test_train_throughput_keeps_the_rows_of_a_run_cut_short(tmp_path, monkeypatch):
    """A run stopped part-way (a machine's time limit) leaves every row it had measured in its
    CSV and Markdown table, marked partial, and no temporary file."""
    throughput = benchmark_script("train_throughput")
    measured = []

    def measure_then_stop(*args, **kwargs):
        if len(measured) == 2:
            raise KeyboardInterrupt  # what a kill looks like from inside the loop
        measured.append(throughput_measure(*args, **kwargs))
        return measured[-1]

    throughput_measure = throughput.measure
    monkeypatch.setattr(throughput, "measure", measure_then_stop)
    stem = tmp_path / "tp"
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "--n-keys", "20000", "--d", "32",
                                      "--sizes", "XS", "--clusters", "1", "3", "--batch", "16",
                                      "--steps", "1", "--blocks", "1", "--warmup", "0",
                                      "--gemm-size", "64", "--out", str(stem)])
    with pytest.raises(KeyboardInterrupt):
        throughput.main()
    rows = list(csv.DictReader(open(f"{stem}.csv")))
    assert [(r["model"], r["clusters"]) for r in rows] == [("keynet", "1"), ("supportnet", "1")]
    assert [float(r["step_s"]) for r in rows] == [m["step_s"] for m in measured]
    text = Path(f"{stem}.md").read_text()
    assert "Partial: 2 rows so far" in text and text.count("\n| keynet") == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_table1_precisions_joins_each_precision_beside_the_paper(tmp_path):
    """The per-precision Table 1 files of one GPU become one CSV (every row) and one Markdown
    table with a score and a grad/score column per precision; tables of other rows are refused."""
    fields = ["dataset", "n_keys", "size", "model", "depth", "n_x", "width", "width_rule", "batch",
              "score_median_s", "grad_over_score", "paper_score_s", "paper_grad_over_score",
              "repeats", "warmup", "device", "precision"]
    keys = [("quora", "S", "supportnet"), ("quora", "S", "keynet"), ("nq", "M", "keynet")]
    for i, precision in enumerate(("tf32", "bf16")):
        with open(tmp_path / f"table1_g1_{precision}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for j, (dataset, size, model) in enumerate(keys):
                writer.writerow({"dataset": dataset, "n_keys": 513000, "size": size, "model": model,
                                 "depth": 4, "n_x": 3, "width": 100 + j, "width_rule": "paper",
                                 "batch": 4096, "repeats": 100, "warmup": 10,
                                 "score_median_s": 0.001 * (j + 1) * (i + 1),
                                 "grad_over_score": 1.5 + j + i / 10, "paper_score_s": 0.002,
                                 "paper_grad_over_score": 1.87, "device": "GPU One",
                                 "precision": precision})
    run = _run([sys.executable, "benchmarks/table1_precisions.py", str(tmp_path), "g1"])
    assert run.returncode == 0, run.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "table1_g1.csv")))
    assert [r["precision"] for r in rows] == ["tf32"] * 3 + ["bf16"] * 3
    table = [line for line in (tmp_path / "table1_g1.md").read_text().splitlines()
             if line.startswith("| quora") or line.startswith("| nq")]
    assert table[2] == "| nq (513,000) | M | keynet | 102 | 0.002 | 0.003 | 0.006 | 1.87 | 3.50 | 3.60 |"
    text = (tmp_path / "table1_g1.md").read_text()
    assert len(table) == 3 and "on one GPU One" in text
    assert ("`amips-bench timing --datasets quora=513000 nq=513000 --sizes S M --depth 4 --nx 3 "
            "--batch 4096 --repeats 100 --warmup 10 --precision P --device cuda` for P in tf32, bf16") in text
    with open(tmp_path / "table1_g1_fp32.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
    run = _run([sys.executable, "benchmarks/table1_precisions.py", str(tmp_path), "g1"])
    assert run.returncode != 0 and "table1_g1_fp32.csv has other rows" in run.stderr


def test_targets_benchmark_finds_the_same_top_keys_as_faiss():
    """On random and MiniLM-like data: FAISS, the fp32 search and the certified bf16 one, the
    same answers, most rows certified and the others counted."""
    run = _run([sys.executable, "benchmarks/targets.py", "--quick"])
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    header = [c.strip() for c in lines[0].strip("| ").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("| ").split("|")))) for line in lines[1:]]
    assert {r["method"] for r in rows} == {"faiss", "ours", "certified bf16"}
    assert {r["data"] for r in rows} == {"random", "minilm"}
    assert all(r["same answers"] == "True" for r in rows)
    certified = [r for r in rows if r["method"] == "certified bf16"]
    assert all(float(r["rows certified"][:-1]) > 50 and r["rows searched again"] != "—"
               for r in certified), certified


def test_table1_phase_command_times_every_dataset_size_and_model(tmp_path):
    """The table1 phase's `timing` command (named key counts, sizes, precision) at small sizes."""
    stem = tmp_path / "table1_cpu_bf16"
    run = _run([sys.executable, "-m", "amips_bench.cli", "timing", "--datasets", "quora=5000",
                "hotpotqa=8000", "--sizes", "S", "M", "--depth", "4", "--nx", "3", "--batch", "64",
                "--repeats", "2", "--warmup", "1", "--precision", "bf16", "--device", "cpu",
                "--out", str(stem)])
    assert run.returncode == 0, run.stderr[-2000:]
    rows = list(csv.DictReader(open(f"{stem}.csv")))
    assert sorted((r["dataset"], r["n_keys"], r["size"], r["model"]) for r in rows) == sorted(
        (ds, n, s, m) for ds, n in (("quora", "5000"), ("hotpotqa", "8000")) for s in ("S", "M")
        for m in ("supportnet", "keynet"))
    for r in rows:
        spec = ModelSpec(model=r["model"], d=384, n_keys=int(r["n_keys"]), size=r["size"], depth=4, n_x=3)
        assert (int(r["width"]), r["precision"]) == (spec.width, "bf16")
    assert all(r["paper_score_s"] for r in rows if r["dataset"] == "quora")  # the paper's beside ours


def test_stream_loader_times_every_reader_count_warm_and_cold(tmp_path):
    """The loader phase's script on the CPU: a row per page-cache state, place of the targets
    and reader count, each a positive rate, and the committed GPU steps set beside them."""
    stem = tmp_path / "loader"
    run = _run([sys.executable, "benchmarks/stream_loader.py", "--rows", "40000", "--d", "32",
                "--batch", "256", "--batches", "3", "--readers", "0", "2", "--targets", "disk", "memory",
                "--workdir", str(tmp_path), "--out", str(stem)])
    assert run.returncode == 0, run.stderr[-2000:]
    rows = list(csv.DictReader(open(f"{stem}.csv")))
    assert [(r["cache"], r["targets"], r["readers"]) for r in rows] == [
        (cache, targets, readers) for cache in ("warm", "cold") for targets in ("disk", "memory")
        for readers in ("0", "2")]
    assert all(float(r["rows_per_s"]) > 0 for r in rows)
    text = Path(f"{stem}.md").read_text()
    assert "| keynet | 1 | M | bf16 |" in text and "Training here would use" in text
    assert "from the page cache (targets from memory)" in text
    assert not list(tmp_path.glob("*.npy.tmp*"))  # its scratch file was written whole


def test_stream_loader_refuses_a_file_too_small_for_fresh_batches(tmp_path):
    run = _run([sys.executable, "benchmarks/stream_loader.py", "--rows", "1000", "--batch", "256",
                "--workdir", str(tmp_path)])
    assert run.returncode == 1 and "holds 3 batches of 256; the timings need" in run.stderr


def test_keys_scale_samples_a_stages_own_memory_and_names_a_failed_one():
    """The sampler sees a child's known allocation (400 MB of ones, held 1 s) within its
    interpreter's own size, and a failing stage stops the benchmark with that stage's output."""
    keys_scale = benchmark_script("keys_scale")
    base = keys_scale.run_stage([sys.executable, "-c", "import numpy, time; time.sleep(1)"])
    held = keys_scale.run_stage([sys.executable, "-c", "import numpy, time; a = numpy.ones(400 * 2**20, "
                                 "dtype=numpy.uint8); time.sleep(1)"])
    assert 395 <= held["anonymous_mb"] - base["anonymous_mb"] <= 420
    assert held["maxrss_mb"] >= 400 and held["seconds"] >= 1
    with pytest.raises(SystemExit, match="stage failed.*no such stage"):
        keys_scale.run_stage([sys.executable, "-c", "raise SystemExit('no such stage')"])


def test_keys_scale_measures_both_stages_at_every_key_count(tmp_path):
    run = _run([sys.executable, "benchmarks/keys_scale.py", "--keys", "3000", "6000", "--queries", "1000",
                "--d", "16", "--threads", "1", "--workdir", str(tmp_path)])
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line.split("|")[1:-1] for line in run.stdout.splitlines() if line.startswith("| 3,000")
            or line.startswith("| 6,000")]
    assert [(r[0].strip(), r[2].strip()) for r in rows] == [
        ("3,000", "synthetic"), ("3,000", "IVF (nlist = √n)"),
        ("6,000", "synthetic"), ("6,000", "IVF (nlist = √n)")]
    assert all(float(r[3].replace(",", "")) > 0 for r in rows)
    assert list(tmp_path.iterdir()) == []  # each size's files are removed after it


def test_ivf_evaluators_benchmark_times_both_and_finds_the_same_metrics(tmp_path):
    out = tmp_path / "ivf_evaluators.md"
    run = _run([sys.executable, "benchmarks/ivf_evaluators.py", "--keys", "4000", "--queries", "200",
                "--d", "32", "--out", str(out)])
    assert run.returncode == 0, run.stderr[-2000:]
    (row,) = [line for line in out.read_text().splitlines() if line.startswith("| 4,000")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "63" and cells[3] == "6" and cells[-1] == "yes"  # nlist √4000, nprobe 1..32
    assert float(cells[4]) > 0 and float(cells[5]) > 0


def test_the_leakage_time_plan_prices_every_phase_from_committed_rates(tmp_path):
    """`leakage_at_scale.sh --plan`: a row per phase and a total that is their sum; doubling the
    keys doubles the phases that scan them (targets, sweeps) and no other."""
    import yaml

    def table(config: Path) -> dict[str, float]:
        run = _run(["bash", "benchmarks/leakage_at_scale.sh", "--plan", str(config), "--startup-repeats", "1"],
                   env={**__import__("os").environ, "PYTHON": sys.executable})
        assert run.returncode == 0, run.stderr[-2000:]
        rows = [line.split("|")[1:3] for line in run.stdout.splitlines() if line.startswith("| ")]
        number = __import__("re").compile(r"[0-9][0-9,]*")
        return {name.strip().split(" (")[0].strip("*"): float(number.search(value)[0].replace(",", ""))
                for name, value in rows if name.strip() != "phase"}

    shipped = table(ROOT / "config" / "hotpotqa_scale.yaml")
    phases = {k: v for k, v in shipped.items() if k != "total"}
    assert set(phases) == {"data", "IVF index", "exact targets", "training", "IVF sweeps", "job start-up"}
    assert shipped["total"] == pytest.approx(sum(phases.values()), abs=len(phases))
    config = yaml.safe_load((ROOT / "config" / "hotpotqa_scale.yaml").read_text())
    keys = 2 * config["datasets"]["scale_leak_free"]["n_keys"]
    for ds in config["datasets"].values():  # (the two blocks share their nested dicts)
        ds["n_keys"] = ds["synthetic"]["n_keys"] = keys
    doubled = tmp_path / "doubled.yaml"
    doubled.write_text(yaml.safe_dump(config))
    twice = table(doubled)
    for phase in ("exact targets", "IVF sweeps"):
        assert twice[phase] == pytest.approx(2 * phases[phase], rel=0.01, abs=1), phase
    assert twice["data"] > phases["data"] and twice["training"] > phases["training"]
