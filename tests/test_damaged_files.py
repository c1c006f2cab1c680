"""Every kind of file the suite reads, damaged (truncated) or misplaced (a folder where a file
belongs), stops in one line that names the file and what to do; a damaged checkpoint of the
run's own is set aside and training goes on."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import unit_rows

from amips_bench.cli import main
from amips_bench.core.errors import InputError
from amips_bench.core.stage_settings import TrainSettings
from amips_bench.core.storage import load_embeddings, load_json, load_questions, save_questions
from amips_bench.experiments.ivf import build_ivf, read_index, write_index
from amips_bench.models.evaluation import load_dataset
from amips_bench.models.networks import ModelSpec, build_model, load_model, save_model
from amips_bench.models.routers import LearnedRouter, RouterSpec, load_router
from amips_bench.models.training import CHECKPOINT_NAME, Trainer
from amips_bench.reporting.results import read_tables


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def _model(path):
    save_model(path, build_model(ModelSpec(model="keynet", d=16, n_keys=500, size="S", depth=3, n_x=1)))


def _router(path):
    torch.save({"spec": {"d": 16, "n_keys": 500, "n_clusters": 4, "kind": "linear"},
                "state_dict": LearnedRouter(RouterSpec(d=16, n_keys=500, n_clusters=4,
                                                       kind="linear")).state_dict()}, path)


def _index(path):
    write_index(build_ivf(unit_rows(np.random.default_rng(0), 2000, 16), 8), path)


def _array(path):
    np.save(path, unit_rows(np.random.default_rng(0), 300, 16))


def _table(path):
    pd.DataFrame({"budget": range(200), "recall@1": np.linspace(0, 1, 200)}).to_csv(path, index=False)


def _json(path):
    path.write_text('{"dataset": "tiny", "seed": 0, "test": {"e_rel": -0.5}}')


def _questions(path):
    save_questions(path, {"test_rank|x": np.arange(5000, dtype=np.float32)})


KINDS = {  # name: (file name, writer, reader)
    "model": ("model.pt", _model, load_model),
    "router": ("router.pt", _router, load_router),
    "FAISS index": ("ivf.faiss", _index, read_index),
    ".npy array": ("keys.npy", _array, load_embeddings),
    "result table": ("ivf.csv", _table, lambda p: read_tables([p])),
    "JSON": ("metrics.json", _json, load_json),
    "per-question outcomes": ("ivf.questions.npz", _questions, load_questions),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_truncated_file_stops_in_one_line_that_names_it(kind, tmp_path):
    name, write, read = KINDS[kind]
    path = tmp_path / name
    write(path)
    read(path)  # whole, it reads
    with pytest.raises(InputError) as caught:
        read(_truncate(path))
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message
    assert "re-run" in message or "rule writes it" in message, message


@pytest.mark.parametrize("kind", ["model", "FAISS index", "result table", "JSON"])
def test_a_folder_given_for_a_file_stops_in_one_line(kind, tmp_path):
    name, _, read = KINDS[kind]
    folder = tmp_path / name
    folder.mkdir()
    with pytest.raises(InputError, match=rf"{folder}: a folder, not a .* file"):
        read(folder)


def test_the_cli_prints_a_damaged_model_as_one_line_without_a_traceback(tiny_dataset, tmp_path, capsys):
    """As a new user meets it: `amips-bench ivf --model` given a truncated model.pt, then a
    folder, exits with status 2 and one line on stderr."""
    model = tmp_path / "m" / "model.pt"
    model.parent.mkdir()
    save_model(model, build_model(ModelSpec(model="keynet", d=32, n_keys=3000, size="S", depth=3, n_x=1)))
    _truncate(model)
    index = tmp_path / "index"
    write_index(build_ivf(np.load(tiny_dataset / "embeddings" / "keys.npy"), 20), index / "ivf.faiss")
    for given in (model, model.parent):
        code = main(["ivf", "--dataset-dir", str(tiny_dataset), "--index-dir", str(index),
                     "--nprobe", "1", "--recall-at", "1", "--out", str(tmp_path / "out.csv"),
                     "--model", str(given), "--device", "cpu", "--timed-queries", "0",
                     "--quantizers", "spherical", "--nlist-multiples", "1"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and str(given) in err and "Traceback" not in err, err
        assert not (tmp_path / "out.csv").exists()


def test_a_damaged_checkpoint_of_the_run_is_set_aside_and_training_goes_on(tiny_dataset, tmp_path, capsys):
    data = load_dataset(tiny_dataset, 1, torch.device("cpu"))
    spec = ModelSpec(model="keynet", d=32, n_keys=3000, size="M", depth=3, n_x=1)
    cfg = TrainSettings(steps=40, batch_size=64, lr_at_128=2e-3, eval_every=20, checkpoint_every=20, seed=1)
    straight = Trainer(spec, data, cfg, tmp_path / "straight", torch.device("cpu")).run()
    out = tmp_path / "damaged"
    out.mkdir()
    (out / CHECKPOINT_NAME).write_bytes(b"PK\x03\x04 not a whole checkpoint")
    resumed = Trainer(spec, data, cfg, out, torch.device("cpu")).run()
    said = capsys.readouterr().out
    assert "unreadable checkpoint file" in said and "set aside as" in said and "from scratch" in said
    aside = list(out.glob(f"{CHECKPOINT_NAME}.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"PK")
    assert resumed["steps"] == straight["steps"] == 40
    assert resumed["test"]["e_rel"] == pytest.approx(straight["test"]["e_rel"], abs=1e-6)


def test_faiss_itself_fails_on_the_truncated_index():
    """The reader's premise: FAISS raises on a short file (rather than reading garbage)."""
    with pytest.raises(RuntimeError):
        faiss.deserialize_index(faiss.serialize_index(faiss.IndexFlatIP(4))[:10])
