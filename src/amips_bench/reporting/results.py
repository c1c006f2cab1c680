"""The results contract read into frames: the one reader behind tables, report and figures.

Every consumer reads metrics.json, history.csv and the result CSVs through these functions, so
a column means the same thing everywhere and missing values follow one rule: a column whose
filled cells are all numbers is numeric (an empty cell is NaN, and so is a column with no
filled cell); any other column is text (an empty cell is ""); a column of True/False is
boolean. No matplotlib here: the report uses
this module without drawing anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..core.layout import DatasetFiles
from ..core.runs import SIZE_ORDER, split_mode_named
from ..core.storage import load_json, read_file

#: the test metrics of a metrics.json, in the order of the tables
TEST_COLUMNS = ["e_rel", "e_rel_half", "e_rel_median", "e_rel_half_median", "x_is_target",
                "match_rate", "recall@1", "recall@10", "recall@100", "mrr"]
IDENTITY = "identity"


def _typed(column: pd.Series) -> pd.Series:
    filled = column[column != ""]
    if len(filled) and filled.isin(["True", "False"]).all():
        return column.map({"True": True, "False": False, "": np.nan})
    if pd.to_numeric(filled, errors="coerce").notna().all():  # an empty column too: NaN
        return pd.to_numeric(column.replace("", np.nan))
    return column


def whole_csv(path: Path) -> pd.DataFrame:
    """A result CSV as text columns; one that ends mid-line was cut short (every table this
    suite writes ends with a newline), which pandas alone would read as fewer rows."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell():
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                raise ValueError("it ends in the middle of a line")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read_tables(paths: list[str | Path], source: str | None = None) -> pd.DataFrame:
    """Result CSVs (routing, IVF, OOD, Table 1, pipelines) stacked into one frame, typed by the
    rule of this module after stacking (a column empty in one file is typed by the others);
    `source` names a column that receives each row's file stem."""
    frames = [read_file(p, whole_csv, kind="result table", remedy="re-run the stage that writes it")
              for p in paths]
    if source:
        frames = [f.assign(**{source: Path(p).stem}) for f, p in zip(frames, paths)]
    if not frames:
        return pd.DataFrame()
    stacked = pd.concat(frames, ignore_index=True).fillna("")
    for col in stacked.columns:
        stacked[col] = _typed(stacked[col].replace({"nan": "", "NaN": ""}))
    if "split_mode" in stacked:
        stacked["split_mode"] = stacked["split_mode"].map(split_mode_named)
    return stacked


def run_key(metrics_path: str | Path, dataset: str) -> str:
    """dataset/run-folder: the key of a model in every frame of this module."""
    return f"{dataset}/{Path(metrics_path).parent.name}"


def read_metrics(paths: list[str | Path]) -> pd.DataFrame:
    """One row per metrics.json: the run's settings, its test metrics and provenance (keys an
    older file lacks are NaN; the dataset, the model's settings and `test` are required).

    An identity.json (the reference ŷ = x) becomes a row with model "identity", no size or
    depth, zero parameters and clusters 1.
    """
    rows = []
    for path in paths:
        m = load_json(path)
        test = m["test"]
        if m.get("model") == IDENTITY:
            rows.append({"dataset": m["dataset"], "model": IDENTITY, "size": "",
                         "depth": np.nan, "n_x": np.nan, "clusters": 1, "seed": np.nan,
                         "parameters": 0, **{k: test.get(k) for k in TEST_COLUMNS},
                         "run": run_key(path, m["dataset"])})
            continue
        rows.append({
            "dataset": m["dataset"], "model": m["model"], "size": m["size"], "depth": m["depth"],
            "n_x": m["n_x"], "clusters": m["n_clusters"], "seed": m["seed"],
            "split_mode": split_mode_named(m.get("split_mode", "leak_free")), "width_rule": m.get("width_rule", "full"),
            "width": m.get("width", np.nan), "budget": m.get("budget"),
            "parameters": m.get("parameters", np.nan), "steps": m.get("steps", np.nan),
            **{k: test.get(k, test["e_rel"] / 2 if k == "e_rel_half" else None)
               for k in TEST_COLUMNS},
            "negative_wz_fraction": m.get("negative_wz_fraction", np.nan),
            "live_min": m.get("live_min", np.nan),
            "convexity": m.get("convexity", m.get("spec", {}).get("convexity", "")),
            "init": m.get("init", m.get("spec", {}).get("init", "")),
            "key_reduction": m.get("key_reduction", "sum"),
            "ema_warmup": m.get("ema_warmup", m.get("config", {}).get("ema_warmup", True)),
            "train_seconds": m.get("train_seconds", np.nan), "device": m.get("device", ""),
            "val_mrr": _last_validation(path, "mrr"),
            **{f"routing@{k}": test[f"routing@{k}"] for k in range(1, 6) if f"routing@{k}" in test},
            "run": run_key(path, m["dataset"]),
        })
    return pd.DataFrame(rows)


def _last_validation(metrics_path: str | Path, column: str) -> float:
    """A model's validation `column` at the end of training: the last row of the history.csv
    beside its metrics.json (NaN where there is none)."""
    history = DatasetFiles.history_beside(metrics_path)
    if not history.is_file():
        return np.nan
    frame = read_file(history, pd.read_csv, kind="training history",
                      remedy="re-run the train stage that writes it")
    return float(frame[column].iloc[-1]) if column in frame and len(frame) else np.nan


def read_histories(metrics: pd.DataFrame, history_paths: list[str | Path]) -> dict[str, pd.DataFrame]:
    """run key -> validation history of every model; `metrics` is `read_metrics` of the
    metrics.json files in the order of `history_paths`."""
    keys = metrics["run"] if len(metrics) else []
    return {key: read_tables([path]) for key, path in zip(keys, history_paths)}


def at_flops(flops, curve_flops, curve_values) -> np.ndarray:
    """A curve's values at other FLOP counts (inside its range), interpolated linearly in
    log-FLOPs, as the curves are drawn on the log FLOP axes."""
    return np.interp(np.log(flops), np.log(curve_flops), curve_values)


def at_equal_flops(mapped: pd.DataFrame, natural: pd.DataFrame,
                   metric: str) -> tuple[pd.DataFrame, np.ndarray] | None:
    """(the mapped points inside the natural curve's FLOP range, natural's `metric` there): each
    curve averaged per budget, natural interpolated in log-FLOPs; None when no point lies
    inside or natural has fewer than two points."""
    columns = ["flops_total", metric]
    nat = natural.groupby("budget")[columns].mean().sort_values("flops_total")
    curve = mapped.groupby("budget")[columns].mean()
    inside = curve[(curve.flops_total >= nat.flops_total.min())
                   & (curve.flops_total <= nat.flops_total.max())]
    if not len(inside) or len(nat) < 2:
        return None
    return inside, at_flops(inside.flops_total, nat.flops_total, nat[metric])


def gain_at_equal_flops(mapped: pd.DataFrame, natural: pd.DataFrame,
                        metric: str) -> tuple[float, float]:
    """(mean gain, share of points above) of a mapped curve over the natural one at equal FLOPs
    (`at_equal_flops`); NaN when no point can be compared."""
    paired = at_equal_flops(mapped, natural, metric)
    if paired is None:
        return float("nan"), float("nan")
    inside, nat = paired
    diff = inside[metric].to_numpy() - nat
    return float(diff.mean()), float(np.mean(diff > 0))


def largest_recall(table: pd.DataFrame) -> str:
    """The recall@k column with the largest k (the claims and the leakage study judge on it)."""
    columns = [c for c in table.columns if c.startswith("recall@")]
    if not columns:
        raise InputError("the IVF tables have no recall@k column")
    return max(columns, key=lambda c: int(c.split("@")[1]))


def size_rank(sizes: pd.Series) -> pd.Series:
    """Position of each size name in the order XS < S < M < L < XL < XXL."""
    return sizes.map(SIZE_ORDER.index)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Lower-cost / higher-value frontier of (cost, value) points, sorted by cost."""
    front, best = [], -float("inf")
    for cost, value in sorted(points, key=lambda p: (p[0], -p[1])):
        if value > best:
            front.append((cost, value))
            best = value
    return front


def with_ivf_setup(ivf: pd.DataFrame) -> pd.DataFrame:
    """IVF/HNSW rows with `quantizer` and `paper_setup` filled: rows written before the IVF
    variants came from the paper's IVF, spherical k-means as FAISS trains it (HNSW rows have
    no quantizer and are not the paper's setup)."""
    ivf = ivf.copy()
    is_ivf = ivf["index"] == "ivf"
    before = is_ivf.map({True: "spherical", False: ""})
    ivf["quantizer"] = ivf["quantizer"].fillna(before) if "quantizer" in ivf else before
    paper = ivf["paper_setup"].fillna(is_ivf) if "paper_setup" in ivf else is_ivf
    ivf["paper_setup"] = paper.astype(bool)
    return ivf


def paper_ivf(ivf: pd.DataFrame) -> pd.DataFrame:
    """The rows of the paper's IVF setup (ivf.faiss)."""
    ivf = with_ivf_setup(ivf[ivf["index"] == "ivf"])
    return ivf[ivf["paper_setup"]]
