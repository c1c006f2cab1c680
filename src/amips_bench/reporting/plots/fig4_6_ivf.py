"""Figures 4–6: natural against mapped queries on IVF (and the HNSW extension and, where
configured, the probe-with-ŷ mode), recall and MRR against FLOPs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..results import read_tables, with_ivf_setup
from . import style
from .style import plt

#: the model's query modes and their legend labels (probe_mapped: ŷ picks the lists, x ranks)
QUERY_LABELS = {"mapped": "mapped ŷ", "probe_mapped": "probe with ŷ, rank with x"}


KEYS = ["dataset", "index", "quantizer", "nlist", "query", "model", "size", "depth", "n_x", "budget"]


def load_sweeps(paths: list[str | Path]) -> pd.DataFrame:
    """The sweep tables with their IVF setup, integer depth, n_x and nlist, and text labels."""
    df = with_ivf_setup(read_tables(paths))
    for col in ("depth", "n_x", "nlist"):
        values = df[col] if col in df else pd.Series(0, index=df.index)
        df[col] = pd.to_numeric(values, errors="coerce").fillna(0).astype(int)
    for col in ("size", "model", "quantizer"):
        df[col] = df[col].fillna("").astype(str)
    return df


def _setups(agg: pd.DataFrame) -> list[tuple[str, str, int]]:
    """(index, quantizer, nlist) of every panel row: the IVF setups (spherical, FAISS's default
    and the paper's, first; then by nlist), then HNSW."""
    setups = agg[["index", "quantizer", "nlist"]].drop_duplicates().itertuples(index=False)
    return sorted(((i, q, int(n)) for i, q, n in setups),
                  key=lambda s: (s[0] != "ivf", s[1] != "spherical", s[1], s[2]))


def _setup_title(index: str, quantizer: str, nlist: int, ef_construction: str) -> str:
    if index == "ivf":
        centroids = ("plain k-means centroids" if quantizer == "kmeans"
                     else "spherical centroids (FAISS default)")
        return f"IVF, {centroids}\nnlist = {nlist:,}, nprobe sweep"
    return f"HNSW, efConstruction = {ef_construction}\nefSearch sweep"


def _recall_columns(df: pd.DataFrame) -> list[str]:
    cols = [c for c in df.columns if c.startswith("recall@")]
    return sorted(cols, key=lambda c: int(c.split("@")[1]))


def fig_ivf(csv_paths: list[str | Path], out_stem: str | Path, number: int) -> None:
    df = load_sweeps(csv_paths)
    recalls = _recall_columns(df)
    metrics = recalls + ["mrr"]
    grouped = df.groupby(KEYS, dropna=False)
    agg = grouped[metrics + ["flops_total"]].mean().reset_index()
    spread = grouped[metrics].std().reset_index()  # NaN with a single seed
    for metric in metrics:
        agg[f"{metric}_sd"] = spread[metric].values
    agg["seeds"] = grouped.size().values
    dataset = agg.dataset.iloc[0]
    n_keys = int(df.n_keys.iloc[0])
    setups = _setups(agg)
    hnsw = df[df["index"] == "hnsw"]
    ef_construction = (", ".join(str(int(v)) for v in sorted(hnsw.hnsw_ef_construction.dropna().unique()))
                       if "hnsw_ef_construction" in df else "") or "not recorded"
    fig, axes = plt.subplots(len(setups), len(metrics), figsize=(3.3 * len(metrics), 3.1 * len(setups)),
                             squeeze=False)
    for row, setup in zip(axes, setups):
        sub = agg[(agg["index"] == setup[0]) & (agg["quantizer"] == setup[1]) & (agg["nlist"] == setup[2])]
        for ax, metric in zip(row, metrics):
            nat = sub[sub["query"] == "natural"].sort_values("flops_total")
            ax.plot(nat.flops_total, nat[metric], color="k", ls="--", marker="x", ms=4,
                    label="natural query x")
            mapped = sub[sub["query"].isin(list(QUERY_LABELS))]
            for (query, model, size, depth, n_x), m in mapped.groupby(
                    ["query", "model", "size", "depth", "n_x"]):
                m = m.sort_values("flops_total")
                probe = query == "probe_mapped"
                ax.plot(m.flops_total, m[metric], color=style.color_for(size),
                        marker=style.marker_for(depth), ms=4, mfc="none" if probe else None,
                        ls=":" if probe else style.MODEL_LINESTYLE.get(model, "-"),
                        label=f"{QUERY_LABELS[query]}: " + style.model_label(model, size, depth)
                        + (f" n_x={n_x}" if n_x < depth - 1 else ""))
                if (m.seeds > 1).any():  # mean ± spread over seeds
                    ax.fill_between(m.flops_total, m[metric] - m[f"{metric}_sd"],
                                    m[metric] + m[f"{metric}_sd"], color=style.color_for(size),
                                    alpha=0.2)
            style.flops_axis(ax, 7)
            if metric == "mrr":
                ax.set_ylabel("MRR of the exact top key")
            else:
                k = int(metric.split("@")[1])
                ax.set_ylabel(f"Recall@{k} ({100 * k / n_keys:.3g} % of n)")
            ax.set_title(_setup_title(*setup, ef_construction), fontsize=8)
        style.legend_beside(row[-1])
    fig.suptitle(f"Figure {number} — {dataset} (n = {n_keys:,}): querying the index with KeyNet's "
                 f"predicted key ŷ vs the query x; mapped cost includes the model", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the title
    style.save_figure(fig, out_stem, agg.to_dict("records"))
