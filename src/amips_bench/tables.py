"""Summary tables: final test metrics of every model, realism of every dataset (CSV + Markdown)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import load_json, save_csv, save_text


def markdown_table(df: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    def fmt(v):
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v).replace("|", "/")  # a pipe would split the cell

    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


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


def final_metrics_table(metrics_paths: list[str | Path]) -> pd.DataFrame:
    rows = []
    for path in metrics_paths:
        m = load_json(path)
        t = m["test"]
        if m.get("model") == "identity":
            rows.append({"dataset": m["dataset"], "model": "identity (ŷ = x, reference)",
                         "size": "", "depth": float("nan"), "n_x": float("nan"), "clusters": 1,
                         "seed": float("nan"), "parameters": 0, **{k: t[k] for k in (
                             "e_rel", "e_rel_half", "e_rel_median", "e_rel_half_median",
                             "x_is_target", "match_rate", "recall@1", "recall@10", "recall@100",
                             "mrr")}})
            continue
        row = {"dataset": m["dataset"], "model": m["model"], "size": m["size"], "depth": m["depth"],
               "n_x": m["n_x"], "clusters": m["n_clusters"], "seed": m["seed"],
               "split_mode": m.get("split_mode", "leak_free"),
               "width_rule": m.get("width_rule", "full"), "width": m["width"],
               "budget": m.get("budget"), "parameters": m["parameters"], "steps": m["steps"],
               "e_rel": t["e_rel"], "e_rel_half": t["e_rel_half"],
               "e_rel_median": t.get("e_rel_median"), "e_rel_half_median": t.get("e_rel_half_median"),
               "x_is_target": t.get("x_is_target"), "match_rate": t["match_rate"],
               "recall@1": t["recall@1"], "recall@10": t["recall@10"],
               "recall@100": t["recall@100"], "mrr": t["mrr"],
               "negative_wz_fraction": m.get("negative_wz_fraction", float("nan")),
               "train_seconds": m["train_seconds"], "device": m["device"]}
        for k in range(1, 6):
            if f"routing@{k}" in t:
                row[f"routing@{k}"] = t[f"routing@{k}"]
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["dataset", "clusters", "model", "size", "depth", "n_x",
                                           "seed"]).reset_index(drop=True)


def realism_table(manifest_paths: list[str | Path]) -> pd.DataFrame:
    rows = []
    for path in manifest_paths:
        manifest = load_json(path)
        dataset = Path(path).parent.parent.name
        realism = manifest.get("realism", {})
        for name, r in realism.get("vs_real_minilm", {}).items():
            rows.append({"dataset": dataset, "statistic": name, "ours": r["ours"],
                         "real_minilm": r["real_minilm"],
                         "relative_deviation": r["relative_deviation"],
                         "within_30pct": r["within_tolerance"], "note": r.get("why", "")})
    return pd.DataFrame(rows)
