"""The leakage study's third arm: a model trained on an `official` split, scored on clean questions.

An `official` split holds out whole the questions the leak-free split of the same data and seed
tests on (splits.held_out_clean). Which of them are clean for a given official split is computed
here from the split files, never assumed: a leak-free test question is clean when no copy of it
is among the official split's training rows. On those questions the stage writes the model's test
metrics (E_rel, MRR, ...) and the paper's IVF sweep of natural x and mapped ŷ, the rows the
leakage study reads as "official-split model, clean test" beside the leak-free and as-published arms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import InputError
from ..core.layout import DatasetFiles
from ..core.provenance import device_name
from ..core.runs import split_mode_named
from ..core.storage import load_index_array, load_json, save_json, save_result_rows
from ..datasets.splits import load_plan
from ..models.evaluation import load_dataset, predict
from ..models.metrics import retrieval_metrics
from .faiss_backend import resolve_faiss_device
from .ivf import PAPER_QUANTIZER, KeyMapper, curve_questions, natural_queries, read_index, sweep

#: rows of a training plan read at a time when marking trained questions
CHUNK = 1 << 22


def trained_questions(splits_dir: str | Path, n_queries: int) -> np.ndarray:
    """Boolean mask over the source questions: True where some row of the training split
    (any copy) comes from that question; read in chunks, so a paper-size plan is never whole."""
    plan = load_plan(splits_dir, "train", n_queries)
    seen = np.zeros(n_queries, dtype=bool)
    for start in range(0, len(plan.source), CHUNK):
        seen[np.asarray(plan.source[start:start + CHUNK])] = True
    return seen


def clean_rows(official_dir: str | Path, leak_free_dir: str | Path) -> tuple[np.ndarray, int]:
    """(rows of the leak-free test split whose question has no copy in the official split's
    training rows, size of that test split), after checking both come from the same queries."""
    official, leak_free = DatasetFiles(official_dir), DatasetFiles(leak_free_dir)
    manifests = {d: load_json(d.splits_manifest) for d in (official, leak_free)}
    modes = {d: split_mode_named(m.get("mode")) for d, m in manifests.items()}
    if modes[official] != "official" or modes[leak_free] != "leak_free":
        raise InputError(f"clean test: {official.splits_manifest} must be split 'official' and "
                         f"{leak_free.splits_manifest} 'leak_free'; found "
                         f"{modes[official]!r} and {modes[leak_free]!r}")
    if manifests[official]["queries_sha256"] != manifests[leak_free]["queries_sha256"]:
        raise InputError(f"clean test: {official.root.name} and {leak_free.root.name} were split from different "
                         f"queries (queries_sha256 differs in their splits/manifest.json)")
    n = int(manifests[official]["n_source_queries"])
    test = load_index_array(leak_free.split_rows("test"), upper=n)
    trained = trained_questions(official.splits, n)
    return np.flatnonzero(~trained[test]), len(test)


def _same_keys(official: Path, leak_free: Path) -> None:
    prints = [load_json(DatasetFiles(d).embeddings_manifest).get("fingerprint") for d in (official, leak_free)]
    if prints[0] != prints[1]:
        raise InputError(f"clean test: {official.name} and {leak_free.name} hold different keys "
                         f"(fingerprint differs in their embeddings/manifest.json)")


def clean_test(official_dir: str | Path, leak_free_dir: str | Path, index_dir: str | Path,
               model_path: str | Path, *, nprobes: list[int], ks: list[int],
               device: torch.device, faiss_device: str = "cpu",
               ivf_models: tuple[str, ...] = ("keynet", "supportnet"),
               questions: dict[str, np.ndarray] | None = None
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics in the shape of a metrics.json, IVF rows of natural and mapped queries) of a
    official-split model on the clean leak-free test questions (`clean_rows`); mapped rows only
    for the models the other arms sweep too (`ivf_models`, the dataset's ivf.models);
    `questions` receives every curve's per-question arrays (ivf.curve_questions)."""
    official, leak_free = Path(official_dir), Path(leak_free_dir)
    _same_keys(official, leak_free)
    rows, n_test = clean_rows(official, leak_free)
    if not len(rows):
        raise InputError(f"clean test: every one of the {n_test} test questions of {leak_free.name} "
                         f"has a copy in the training split of {official.name}: no clean question "
                         f"(was it split before official mode held them out?)")
    data = load_dataset(leak_free, 1, device, splits=("test",))
    test = data.splits["test"]
    pick = torch.from_numpy(rows).to(test.queries.device)
    queries, top1 = test.queries[pick], test.top1[pick]
    mapper = KeyMapper.load(model_path, len(data.keys), device)
    mapper.model.eval()
    _, pred = predict(mapper.model, queries)
    own = load_json(Path(model_path).parent / "metrics.json")
    metrics = {key: own[key] for key in ("dataset", "model", "size", "depth", "n_x", "n_clusters",
                                         "seed", "split_mode") if key in own}
    metrics.update({"test_set": "clean", "scored_on": leak_free.name, "n_clean": int(len(rows)),
                    "n_test": int(n_test),
                    "test": retrieval_metrics(pred, queries, top1, data.keys, data.layout),
                    "device": device_name(device)})
    faiss_device = resolve_faiss_device(faiss_device)
    index = read_index(Path(index_dir) / "ivf.faiss")
    if index.ntotal != len(data.keys):
        raise InputError(f"{Path(index_dir) / 'ivf.faiss'} holds {index.ntotal} keys, "
                         f"{leak_free.name} has {len(data.keys)}")
    x, target = queries.cpu().numpy(), top1[:, 0].cpu().numpy()
    ivf_rows, curves = [], []
    sent = [natural_queries(x)] + ([mapper(x)] if mapper.model.spec.model in ivf_models else [])
    for qs in sent:
        for row in sweep(index, "ivf", qs, target, nprobes, ks, x.shape[1], len(data.keys),
                         faiss_device, setup={"quantizer": PAPER_QUANTIZER, "paper_setup": True},
                         timed_queries=0, questions=curves):  # a quality study: not timed
            row.update({"dataset": official.name, "test_set": "clean", "scored_on": leak_free.name,
                        "device": device_name(device)})
            ivf_rows.append(row)
    if questions is not None:
        for curve in curves:
            questions.update(curve_questions(*curve))
    return metrics, ivf_rows


def write_clean_test(official_dir: str | Path, leak_free_dir: str | Path, index_dir: str | Path,
                     model_path: str | Path, out_json: str | Path, out_csv: str | Path,
                     **sweep_settings) -> dict[str, Any]:
    """The clean-test stage: `clean_test` saved as JSON (metrics) and CSV (IVF rows)."""
    questions: dict[str, np.ndarray] = {}
    metrics, rows = clean_test(official_dir, leak_free_dir, index_dir, model_path,
                               questions=questions, **sweep_settings)
    save_result_rows(out_csv, rows, official_dir, questions)
    save_json(out_json, metrics)
    return metrics
