"""Summary tables: final test metrics of every model, realism of every dataset (CSV + Markdown)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.storage import load_json, save_csv, save_text
from .results import IDENTITY, TEST_COLUMNS, read_metrics


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-style Markdown table (pandas' to_markdown). Floats are written with `floatfmt`;
    text stays as written (no re-parsing of "1.10" into 1.1); a pipe inside a cell is escaped
    ("\\|", as GitHub and the `markdown` package read it), so "|Δ|" stays one cell."""
    def cell(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|")

    return df.apply(lambda col: col.map(cell)).to_markdown(
        index=False, tablefmt="github", disable_numparse=True) + "\n"


#: how the Markdown tables name the E_rel columns: every E_rel says its convention
E_REL_HEADERS = {
    "e_rel": "E_rel (log sq. dist. ratio)", "e_rel_median": "median E_rel (log sq. dist. ratio)",
    "e_rel_half": "E_rel (log dist. ratio)", "e_rel_half_median": "median E_rel (log dist. ratio)",
    "x_is_target": "rows with x = y* (left out of E_rel)",
}


def write_table(df: pd.DataFrame, stem: str | Path, title: str = "") -> None:
    """CSV with the machine names of the columns, Markdown with E_rel's convention spelled out."""
    stem = Path(stem)
    save_csv(stem.with_suffix(".csv"), df.to_dict("records"), list(df.columns))
    shown = df.rename(columns=E_REL_HEADERS)
    save_text(stem.with_suffix(".md"), (f"# {title}\n\n" if title else "") + markdown_table(shown))


#: columns of the final-metrics table, in order (routing@k follow when a model has them)
FINAL_METRICS_COLUMNS = ["dataset", "model", "size", "depth", "n_x", "clusters", "seed",
                         "split_mode", "width_rule", "width", "budget", "parameters", "steps",
                         "convexity", "init", "key_reduction", *TEST_COLUMNS,
                         "negative_wz_fraction", "live_min", "train_seconds", "device"]


def final_metrics_table(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """Test metrics of every model, and of the identity reference ŷ = x of each dataset."""
    df = read_metrics(metrics_paths)
    routing = sorted((c for c in df.columns if c.startswith("routing@")),
                     key=lambda c: int(c.split("@")[1]))
    df = df.reindex(columns=FINAL_METRICS_COLUMNS + routing)
    df["model"] = df["model"].replace(IDENTITY, "identity (ŷ = x, reference)")
    return df.sort_values(["dataset", "clusters", "model", "size", "depth", "n_x",
                           "seed"]).reset_index(drop=True)


def realism_table(manifest_paths: list[str | Path]) -> pd.DataFrame:
    """The realism statistics of each distinct set of embeddings, once: datasets that link
    their embeddings from a twin (config.shared_data) are named in `same_embeddings_in` of the
    dataset that made them, not repeated as if they were more evidence."""
    owners: dict[Path, list[str]] = {}
    for path in sorted(manifest_paths, key=lambda p: Path(p).is_symlink()):  # makers first
        owners.setdefault(Path(path).resolve(), []).append(Path(path).parent.parent.name)
    rows = []
    for manifest_file, (dataset, *twins) in owners.items():
        realism = load_json(manifest_file).get("realism", {})
        for name, r in realism.get("vs_real_minilm", {}).items():
            rows.append({"dataset": dataset, "same_embeddings_in": ", ".join(twins),
                         "statistic": name, "ours": r["ours"], "real_minilm": r["real_minilm"],
                         "relative_deviation": r["relative_deviation"],
                         "within_30pct": r["within_tolerance"], "note": r.get("why", "")})
    return pd.DataFrame(rows)


def write_named_table(name: str, inputs: list[str | Path], out_stem: str | Path) -> None:
    """The table stage: final_metrics (from metrics.json files) or realism (from manifests)."""
    if name == "final_metrics":
        write_table(final_metrics_table(inputs), out_stem, "Test metrics of every trained model")
    else:
        write_table(realism_table(inputs), out_stem,
                    "Realism of the embeddings vs real all-MiniLM-L6-v2 statistics")
