"""Which model a claim judges: chosen once, per dataset and split mode, on validation only.

A variant is everything that names a trained model except its seed: the run folder without
`_s{seed}` (model, size, depth, n_x, clusters, residual, convexity, init), so two SupportNets
that differ only in convexity or initialisation are never averaged together; a dataset's
training recipe (key reduction, schedule) is one per dataset, so the dataset completes the key.
A choice is made among the variants of one dataset and split mode, from validation numbers
only; with none, there is no choice, and the claim that needed one is undecided — a test
number never stands in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

SEED_SUFFIX = re.compile(r"_s\d+$")


def variant_of(run: str) -> str:
    """The variant of a run folder or file stem ("keynet_S_L4_nx3_c1_s2" -> "keynet_S_L4_nx3_c1")."""
    return SEED_SUFFIX.sub("", run.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class Choice:
    """The variant chosen, its validation value and how many seeds it averages; or, with no
    variant, why none could be chosen."""

    variant: str | None
    value: float = float("nan")
    seeds: int = 0
    reason: str = ""


def choose(frame: pd.DataFrame, dataset: str, column: str, *, lower_is_better: bool,
           split_mode: str | None = None, what: str = "") -> Choice:
    """The variant of `frame` (rows with `dataset`, `variant`, `seed`, `column` and, where
    present, `split_mode`) with the best mean validation `column` over its seeds, among the
    rows of `dataset` (and `split_mode`). Ties go to the first variant in name order."""
    label = f"{what} " if what else ""
    if not len(frame) or "variant" not in frame:
        return Choice(None, reason=f"no {label}models for {dataset}")
    rows = frame[frame.dataset == dataset]
    if split_mode is not None and "split_mode" in rows:
        rows = rows[rows.split_mode.fillna(split_mode).replace("", split_mode) == split_mode]
    if not len(rows):
        return Choice(None, reason=f"no {label}models for {dataset}")
    if column not in rows or not rows[column].notna().any():
        return Choice(None, reason=f"no validation rows ({column}) for {label}models of {dataset}")
    means = rows.dropna(subset=[column]).groupby("variant")[column].agg(["mean", "count"])
    means = means.sort_index()
    best = means["mean"].idxmin() if lower_is_better else means["mean"].idxmax()
    if not np.isfinite(means.loc[best, "mean"]):
        return Choice(None, reason=f"no finite validation value ({column}) for {dataset}")
    return Choice(best, float(means.loc[best, "mean"]), int(means.loc[best, "count"]))
