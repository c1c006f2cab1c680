"""Per-question outcomes behind the result tables, read for the report's intervals.

Every table a claim reads (routing, IVF and OOD sweeps, a model's test metrics) has a
`.questions.npz` beside it (core.layout) holding the outcomes its rows are means of. This
module finds them, loads each once, and lines them up as [seeds, questions] arrays, row s from
the model of seed s, so both sides of a comparison are paired on seeds and questions. Anything
missing is None, and a claim that needs it is undecided: nothing here fills a gap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.layout import DatasetFiles
from ..core.storage import load_questions
from ..experiments.ivf import curve_key
from .statistics import Interval, gain_at_equal_flops, mean_interval


class QuestionEvidence:
    """The per-question files of a run, keyed by (kind, dataset, file stem) — kind routing,
    ivf, ood, clean_test or model: a path to load when first asked for, or (tests, generated
    evidence) the arrays themselves."""

    def __init__(self, sources: dict[tuple[str, str, str], Path | dict[str, np.ndarray]] | None = None):
        self.sources = dict(sources or {})
        self._loaded: dict[tuple[str, str, str], dict[str, np.ndarray] | None] = {}

    @classmethod
    def beside(cls, tables: dict[str, list], metrics: list) -> QuestionEvidence:
        """The files beside the result tables (`tables`: kind -> CSV paths, each under
        {results}/{dataset}/{kind}/) and beside each model's metrics.json."""
        sources: dict[tuple[str, str, str], Path | dict] = {}
        for kind, paths in tables.items():
            for path in paths:
                path = Path(path)
                sources[(kind, path.parent.parent.name, path.stem)] = DatasetFiles.questions_beside(path)
        for path in metrics:
            path = Path(path)
            sources[("model", path.parent.parent.parent.name, path.parent.name)] = \
                DatasetFiles.questions_beside(path)
        return cls(sources)

    def arrays(self, kind: str, dataset: str, stem: str) -> dict[str, np.ndarray] | None:
        """The arrays of one table's per-question file; None where it does not exist."""
        key = (kind, dataset, stem)
        if key not in self._loaded:
            source = self.sources.get(key)
            if isinstance(source, dict):
                self._loaded[key] = source
            elif source is not None and Path(source).is_file():
                self._loaded[key] = load_questions(source)
            else:
                self._loaded[key] = None
        return self._loaded[key]

    def stacked(self, kind: str, dataset: str, stems: list[str], name: str) -> np.ndarray | None:
        """Array `name` of each stem's file stacked on a first axis (one stem per seed); None
        when a file or the array is missing or their shapes differ."""
        found = []
        for stem in stems:
            arrays = self.arrays(kind, dataset, stem)
            if arrays is None or name not in arrays:
                return None
            found.append(np.asarray(arrays[name]))
        if not found or len({a.shape for a in found}) != 1:
            return None
        return np.stack(found)


def stems_by_seed(rows: pd.DataFrame) -> list[str]:
    """The file stems of a variant's rows, one per seed, in seed order (column `file`)."""
    if not len(rows) or "file" not in rows:
        return []
    per_seed = rows.drop_duplicates("file").sort_values("seed", kind="stable")
    return list(per_seed.file)


def routing_hits(evidence: QuestionEvidence, dataset: str, stems: list[str], method: str,
                 k: int, split: str = "test") -> np.ndarray | None:
    """Hit at k (the true cluster among the k first) per seed and question, [S, N] of 0/1."""
    ranks = evidence.stacked("routing", dataset, stems, f"{split}_rank|{method}")
    return None if ranks is None else (ranks < k).astype(np.float64)


def model_outcome(evidence: QuestionEvidence, dataset: str, stems: list[str],
                  name: str) -> np.ndarray | None:
    """A model's per-question outcome (`test_e_rel`, `val_e_rel`, ...) per seed, [S, N]."""
    values = evidence.stacked("model", dataset, stems, name)
    return None if values is None else values.astype(np.float64)


def curve(evidence: QuestionEvidence, kind: str, dataset: str, stems: list[str], key: str,
          split: str = "test") -> tuple[np.ndarray, np.ndarray] | None:
    """(rank of y*, FLOPs) of one swept curve per seed, question and budget: [S, N, B] each,
    on the test questions or (split "val") the validation questions."""
    prefix = "" if split == "test" else f"{split}_"
    rank = evidence.stacked(kind, dataset, stems, f"{key}|{prefix}rank")
    flops = evidence.stacked(kind, dataset, stems, f"{key}|{prefix}flops")
    if rank is None or flops is None:
        return None
    return np.swapaxes(rank, 1, 2).astype(np.float64), np.swapaxes(flops, 1, 2).astype(np.float64)


def returned(frame: pd.DataFrame) -> int:
    """How many results a sweep's searches returned: its largest recall@k."""
    return max(int(c.split("@")[1]) for c in frame.columns if c.startswith("recall@"))


def gains_at_equal_flops(evidence: QuestionEvidence, kind: str, dataset: str,
                         natural: pd.DataFrame, mapped: pd.DataFrame, metric: str,
                         split: str = "test") -> np.ndarray | str:
    """Per seed and question, mapped − natural `metric` (recall@K or mrr) at equal FLOPs:
    natural's curve interpolated in log-FLOPs at each mapped operating point inside natural's
    FLOP range (statistics.gain_at_equal_flops); or why it cannot be computed. `natural` and
    `mapped` are one curve's rows each (mapped: one variant, any number of seeds; natural: the
    same query set)."""
    if not len(natural) or not len(mapped):
        return "no natural or no mapped rows"
    nat = curve(evidence, kind, dataset, stems_by_seed(natural), curve_key(natural.iloc[0]), split)
    mp = curve(evidence, kind, dataset, stems_by_seed(mapped), curve_key(mapped.iloc[0]), split)
    if nat is None or mp is None:
        return "no per-question sweep evidence" + ("" if split == "test" else f" ({split})")
    if nat[0].shape[1] != mp[0].shape[1]:
        return "natural and mapped sweeps have different questions"
    k = returned(mapped)

    def outcome(rank: np.ndarray) -> np.ndarray:
        if metric == "mrr":
            return np.where(rank <= k, 1.0 / rank, 0.0)
        return (rank <= int(metric.split("@")[1])).astype(np.float64)
    gains = gain_at_equal_flops(mp[1], outcome(mp[0]), nat[1][:1], outcome(nat[0][:1]))
    if not np.isfinite(gains).any():
        return "no common FLOP range"
    return gains


def gain_interval(evidence: QuestionEvidence, kind: str, dataset: str, natural: pd.DataFrame,
                  mapped: pd.DataFrame, metric: str) -> Interval | str:
    """Interval of mapped − natural `metric` at equal FLOPs on the test questions
    (gains_at_equal_flops), bootstrapped over questions (and seeds); or why it cannot be
    computed."""
    gains = gains_at_equal_flops(evidence, kind, dataset, natural, mapped, metric)
    return gains if isinstance(gains, str) else mean_interval(gains)
