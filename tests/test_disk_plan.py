"""The disk plan: files sized from their counts, against the files FAISS and numpy write."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import unit_rows

from amips_bench.core.config import prepare
from amips_bench.core.errors import InputError
from amips_bench.experiments.ivf import build_hnsw, build_ivf, write_index
from amips_bench.planning.disk_plan import (
    MODEL_OVERHEAD,
    Counts,
    PlannedFile,
    checkpoint_bytes,
    checkpoint_peak,
    file_bytes,
    free_disk_verdict,
    hnsw_bytes,
    ivf_bytes,
    plan,
    read_summary,
)

ROOT = Path(__file__).resolve().parents[1]
HEADER = "output_file\tdate\trule\tlog-file(s)\tstatus\tplan"


def close(estimate: int, actual: int) -> bool:
    """Within 2 % and 4 KB of headers."""
    return abs(estimate - actual) <= 0.02 * actual + 4096


@pytest.mark.parametrize("nlist", [10, 70, 280])
def test_the_ivf_size_is_the_size_of_the_file_faiss_writes(tmp_path, rng, nlist):
    keys = unit_rows(rng, 5000, 48)
    write_index(build_ivf(keys, nlist), tmp_path / "ivf.faiss")
    actual = (tmp_path / "ivf.faiss").stat().st_size
    assert close(ivf_bytes(5000, 48, nlist), actual), (ivf_bytes(5000, 48, nlist), actual)


@pytest.mark.parametrize("m", [8, 32])
def test_the_hnsw_size_is_the_size_of_the_file_faiss_writes(tmp_path, rng, m):
    keys = unit_rows(rng, 6000, 32)
    write_index(build_hnsw(keys, m, 40), tmp_path / "hnsw.faiss")
    actual = (tmp_path / "hnsw.faiss").stat().st_size
    assert close(hnsw_bytes(6000, 32, m), actual), (hnsw_bytes(6000, 32, m), actual)


def test_the_arrays_of_a_dataset_are_sized_exactly(tiny_dataset):
    """Every .npy of the tiny dataset (keys, queries, splits, clusters, targets), sized from
    the counts alone, has the byte size numpy wrote."""
    d = np.load(tiny_dataset / "embeddings" / "keys.npy", mmap_mode="r").shape[1]
    rows = {s: len(np.load(tiny_dataset / "splits" / f"{s}.npy")) for s in ("train", "val", "test")}
    counts = Counts(3000, 1230, d, rows)
    dataset = prepare({"datasets": {"x": {}}})["datasets"]["x"]
    files = sorted(tiny_dataset.rglob("*.npy"))
    assert len(files) >= 20
    for f in files:
        assert file_bytes(f.relative_to(tiny_dataset), dataset, counts, "paper") == \
            f.stat().st_size, f


def summary(*rows: tuple[str, str, str]) -> str:
    return "\n".join(["Building DAG of jobs...", HEADER,
                      *(f"{path}\t-\t{rule}\t-\tmissing\t{state}" for path, rule, state in rows)])


def test_only_what_is_still_to_be_written_counts(tmp_path):
    """A finished file adds nothing, a link from a shared_* rule nothing, a pending file its
    size less what of it is already there, a file outside a dataset (a figure) nothing."""
    config = prepare({"results": "results", "datasets": {"a": {"synthetic": {
        "n_keys": 10000, "n_queries": 5000, "d": 16}}, "b": {}}})
    keys = 128 + 10000 * 16 * 4
    (tmp_path / "results" / "a" / "embeddings").mkdir(parents=True)
    (tmp_path / "results" / "a" / "embeddings" / "queries.npy").write_bytes(b"x" * 1000)
    rows = read_summary(summary(
        ("results/a/embeddings/keys.npy", "synthetic", "update pending"),
        ("results/a/embeddings/queries.npy", "synthetic", "update pending"),
        ("results/a/splits/val.npy", "split", "no update"),
        ("results/b/embeddings/keys.npy", "shared_embeddings", "update pending"),
        ("figures/fig3_erel_mrr.png", "fig3_erel_mrr", "update pending")))
    planned = {p.path: p for p in plan(config, rows, tmp_path)}
    assert planned["results/a/embeddings/keys.npy"].to_write == keys
    assert planned["results/a/embeddings/queries.npy"].to_write == 128 + 5000 * 16 * 4 - 1000
    assert planned["results/a/splits/val.npy"].to_write == 0
    assert planned["results/b/embeddings/keys.npy"].to_write == 0
    assert planned["figures/fig3_erel_mrr.png"].dataset == ""


def test_a_beir_dataset_before_encoding_is_sized_at_least(tmp_path):
    """Keys from the expected n_keys and the default encoder's 384 dimensions; the queries and
    everything made of them are unknown until encoded, and the verdict says 'at least'."""
    config = prepare(yaml.safe_load((ROOT / "config" / "fiqa.yaml").read_text()))
    config["results"] = "results"
    rows = read_summary(summary(
        ("results/fiqa/embeddings/keys.npy", "encode", "update pending"),
        ("results/fiqa/embeddings/queries.npy", "encode", "update pending"),
        ("results/fiqa/targets/c1/train_queries.npy", "targets", "update pending")))
    planned = plan(config, rows, tmp_path)
    n_keys = config["datasets"]["fiqa"]["n_keys"]
    assert [p.bytes for p in planned] == [128 + n_keys * 384 * 4, None, None]
    line, short = free_disk_verdict(planned, tmp_path / "results", 0.1)
    assert not short and "at least" in line and "2 files are sized only once" in line


def test_a_fetched_beir_dataset_is_sized_from_the_texts_its_fetch_counted(tmp_path):
    """Once fetched, a BEIR dataset's keys, queries, splits and targets are sized from the
    unique texts the fetch stage counted under its query_source and key_text, for itself and
    for a twin that takes its embeddings from it; the verdict no longer says "at least"."""
    import copy
    import json

    from amips_bench.datasets.splits import train_rows

    raw = yaml.safe_load((ROOT / "config" / "fiqa.yaml").read_text())
    twin = copy.deepcopy(raw["datasets"]["fiqa"])
    twin["splits"]["augment_factor"] = 10
    raw["datasets"]["fiqa_twin"] = twin
    config = prepare(raw)
    config["results"] = "results"
    fetched = tmp_path / "results" / "fiqa" / "raw" / "manifest.json"
    fetched.parent.mkdir(parents=True)
    unique = {"corpus title_text": 57_600, "corpus text": 57_500, "qrels questions": 6_648,
              "generated questions": 171_000, "generated text": 57_300}
    fetched.write_text(json.dumps({"name": "fiqa", "unique_texts": unique}))
    files = [f"results/{name}/{inside}" for name in ("fiqa", "fiqa_twin") for inside in
             ("embeddings/keys.npy", "embeddings/queries.npy", "splits/train.npy",
              "targets/c1/train_queries.npy")]
    planned = plan(config, read_summary(summary(*[(f, "encode", "update pending") for f in files])),
                   tmp_path)
    for name, factor, sizes in (("fiqa", 100, planned[:4]), ("fiqa_twin", 10, planned[4:])):
        rows = train_rows(171_000, val_size=1000, test_size=1000, augment_factor=factor,
                          mode="leak_free")
        assert [p.bytes for p in sizes] == [128 + 57_300 * 384 * 4, 128 + 171_000 * 384 * 4,
                                            128 + rows * 8, 128 + rows * 384 * 4], name
    line, _ = free_disk_verdict(planned, tmp_path / "results", 0.1)
    assert "at least" not in line and "sized only once" not in line


def test_a_short_disk_is_one_line_naming_the_folder(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    planned = [PlannedFile("results/a/embeddings/keys.npy", "synthetic", "a", True, free, free)]
    line, short = free_disk_verdict(planned, tmp_path / "results" / "not_yet", 0.1)
    assert short and str(tmp_path / "results" / "not_yet") in line and "\n" not in line
    planned = [PlannedFile("results/a/embeddings/keys.npy", "synthetic", "a", True, 1000, 1000)]
    assert not free_disk_verdict(planned, tmp_path, 0.1)[1]


def test_a_checkpoint_is_sized_from_its_model(tiny_dataset, tmp_path):
    """The checkpoint a Trainer saves after a step (weights, EMA, Adam's two moments, the
    history) is within 2 % and 4 KB of four times its model.pt."""
    import torch

    from amips_bench.models.evaluation import load_dataset
    from amips_bench.models.networks import ModelSpec
    from amips_bench.models.training import CHECKPOINT_NAME, Trainer, TrainSettings

    cpu = torch.device("cpu")
    spec = ModelSpec(model="keynet", d=32, n_keys=3000, size="L", depth=4, n_x=1)
    trainer = Trainer(spec, load_dataset(tiny_dataset, 1, cpu),
                      TrainSettings(steps=4, batch_size=64, eval_every=2, checkpoint_every=2),
                      tmp_path, cpu)
    for _ in range(2):
        trainer.train_step()
    trainer.save_checkpoint()
    actual = (tmp_path / CHECKPOINT_NAME).stat().st_size
    estimate = checkpoint_bytes(4 * spec.n_parameters + MODEL_OVERHEAD)
    assert actual > 100_000 and close(estimate, actual), (estimate, actual)
    # a segment's file is such a checkpoint, and the plan sizes it so from its path
    counts = Counts(n_keys=3000, n_queries=None, d=32, rows=None)
    assert file_bytes(Path(f"models/{spec.name}_s0/segment_1.pt"), {}, counts, spec.width_rule) == estimate


def test_the_verdict_holds_two_checkpoints_of_each_training_job_at_once(tmp_path):
    """Two checkpoints of each of the largest models still to train, as many as run at once
    (a finished model and a router, which keeps no checkpoint, do not count): a disk that
    holds the files but not those checkpoints is short."""
    def model(run, rule, pending, size):
        return PlannedFile(f"results/a/models/{run}/model.pt", rule, "a", pending, size,
                           size if pending else 0)

    planned = [model("keynet_S_L4_nx1_c1_s0", "train", True, 10 ** 6),
               model("keynet_M_L4_nx1_c1_s0", "train", True, 3 * 10 ** 6),
               model("keynet_L_L4_nx1_c1_s0", "train", False, 9 * 10 ** 6),
               model("router_classifier_S_L2_c4_s0", "train_router", True, 5 * 10 ** 6)]
    peak = 2 * 4 * 3 * 10 ** 6
    assert checkpoint_peak(planned) == peak
    assert checkpoint_peak(planned, 2) == checkpoint_peak(planned, 5) == 2 * 4 * 4 * 10 ** 6
    for jobs in (2, 5):  # two models still to train: two jobs at most
        assert "2 training jobs at once hold up to 32.00 MB" in free_disk_verdict(
            planned, tmp_path, 0.1, jobs)[0]
    line, short = free_disk_verdict(planned, tmp_path, 0.1)
    assert not short and "writes 9.00 MB" in line and f"up to {peak / 1e6:.2f} MB" in line
    free = shutil.disk_usage(tmp_path).free
    files = PlannedFile("results/a/embeddings/keys.npy", "synthetic", "a", True, free // 2, free // 2)
    assert not free_disk_verdict([files], tmp_path, 0.1)[1]
    huge = model("keynet_XXL_L4_nx1_c1_s0", "train", True, free // 8)  # 4 × 2 × free / 8
    assert free_disk_verdict([files, huge], tmp_path, 0.1)[1]
    assert checkpoint_peak([files]) == 0


def test_the_verdict_holds_the_work_files_of_the_largest_encodes_at_once(tmp_path):
    """An encode job writes its keys and queries twice, into work files first: the verdict
    holds that second copy for the largest encodes still to run, as many as run at once."""
    from amips_bench.core.disk import size_text
    from amips_bench.planning.disk_plan import encode_work_peak

    def encode(dataset, name, size, pending=True):
        return PlannedFile(f"results/{dataset}/embeddings/{name}", "encode", dataset, pending,
                           size, size if pending else 0)

    planned = [encode("nq", "keys.npy", 4_000), encode("nq", "queries.npy", 1_000),
               encode("quora", "keys.npy", 800), encode("quora", "queries.npy", 300),
               encode("fiqa", "keys.npy", 90_000, pending=False),
               PlannedFile("results/nq/embeddings/manifest.json", "encode", "nq", True, 0, 0)]
    assert [encode_work_peak(planned, n) for n in (1, 2, 3)] == [5_000, 6_100, 6_100]
    line, _ = free_disk_verdict(planned, tmp_path, 0.1, jobs_at_once=2)
    assert f"the run writes {size_text(6_100)}" in line
    assert f"2 encode jobs at once hold up to {size_text(6_100)} of work files" in line
    assert "work files" not in free_disk_verdict(planned[4:], tmp_path, 0.1)[0]


def test_a_summary_without_its_header_is_refused():
    with pytest.raises(InputError, match="output_file"):
        read_summary("Building DAG of jobs...\nNothing to be done.")


def test_the_command_stops_a_run_the_disk_cannot_hold(tmp_path):
    """`disk-plan --check` exits 2 with one line for 10^12 keys (4 PB); without --check it
    prints the plan and the verdict."""
    config = tmp_path / "huge.yaml"
    config.write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "datasets": {
        "huge": {"synthetic": {"n_keys": 10 ** 12, "n_queries": 10 ** 6, "d": 1024}}}}))
    (tmp_path / "summary.tsv").write_text(summary(
        (str(tmp_path / "results" / "huge" / "embeddings" / "keys.npy"), "synthetic",
         "update pending")))
    command = [sys.executable, "-m", "amips_bench.cli", "disk-plan", "--config", str(config),
               "--summary", str(tmp_path / "summary.tsv")]
    checked = subprocess.run([*command, "--check"], capture_output=True, text=True)
    assert checked.returncode == 2
    assert checked.stderr.count("\n") == 1 and "4096000.00 GB" in checked.stderr
    told = subprocess.run(command, capture_output=True, text=True)
    assert told.returncode == 0 and "huge" in told.stdout and "are free there" in told.stdout
