"""The compare stage: runs read as results trees, every figure's curves compared with the
baseline's, the verdicts counted in a summary, the runs overlaid figure by figure.

Bad input never stops the comparison of the rest: a folder that is not a results tree, a run
without a figure's files, runs whose datasets or grids differ each become one line under
"Problems" (and on stderr); only an unknown baseline, or a baseline that cannot be read, stops
it, since nothing can be compared without one. Nothing in a compared run is written.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core.errors import InputError
from ..core.storage import relative_link, save_csv, save_text
from ..reporting.report import markdown_to_html
from ..reporting.tables import markdown_table
from .curves import Tolerance, check_baseline, compare_tables
from .overlays import draw_overlays
from .trees import RunTree, compared_figures, figure_spec, load_tree

VERDICT_KINDS = ["agrees", "differs", "shorter", "only in one run", "no common x range"]
#: what `compare.fail_on` may name, and the curves each one fails on: a baseline curve that
#: moved ("differs": beyond its tolerance, shorter than the baseline's x range, or with no x
#: in common) or that a compared run lacks ("missing"). A curve only the compared run has is
#: new, not a regression; figures that measure the machine (Table 1) never fail.
FAIL_ON = ("differs", "missing")


@dataclass
class Comparison:
    baseline: str
    runs: list[RunTree]  # the baseline first
    rows: pd.DataFrame  # one row per (figure, run, curve, metric)
    tolerance: Tolerance
    problems: list[str] = field(default_factory=list)


def _curve_label(row: dict, keys: list[str]) -> str:
    return " · ".join(f"{k}={row[k]}" for k in keys if row.get(k, "") != "")


def _grid_problems(fig, base: RunTree, run: RunTree) -> list[str]:
    """Swept settings (k, nprobe, steps) that differ between two runs, per dataset."""
    point = fig.along or fig.x
    if point is None:
        return []
    lines = []
    a, b = base.frames[fig.name], run.frames[fig.name]
    for ds in sorted(set(a.dataset) & set(b.dataset)):
        ga, gb = (sorted(set(f[f.dataset == ds][point].dropna())) for f in (a, b))
        if ga != gb:
            lines.append(f"{fig.name}, dataset {ds}: the {point} grids differ "
                         f"({base.name}: {_short(ga)}; {run.name}: {_short(gb)}); compared "
                         f"where both have values")
    return lines


def _short(values: list) -> str:
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values[:8])
    return shown + (f", … ({len(values)} values)" if len(values) > 8 else "")


def _dataset_problems(base: RunTree, run: RunTree) -> list[str]:
    lines = []
    only_base, only_run = set(base.datasets) - set(run.datasets), set(run.datasets) - set(base.datasets)
    if only_base or only_run:
        lines.append(f"datasets differ: only in {base.name}: {sorted(only_base) or 'none'}; "
                     f"only in {run.name}: {sorted(only_run) or 'none'}")
    for ds in sorted(set(base.datasets) & set(run.datasets)):
        a, b = base.datasets[ds], run.datasets[ds]
        differing = [k for k in ("keys", "queries", "d") if a.get(k) and b.get(k) and a[k] != b[k]]
        if differing:
            lines.append(f"dataset {ds} is not the same data: " + ", ".join(
                f"{k} {a[k]} in {base.name}, {b[k]} in {run.name}" for k in differing))
            continue
        fa, fb = a.get("fingerprint"), b.get("fingerprint")
        moved = [k for k in (fa or {}) if fb and k in fb and abs(fa[k] - fb[k]) > FINGERPRINT_TOLERANCE]
        if moved:
            lines.append(f"dataset {ds} is not the same data (equal counts, different keys): "
                         + ", ".join(f"key {k} {fa[k]} in {base.name}, {fb[k]} in {run.name}"
                                     for k in moved))
    return lines


#: how far two runs' data fingerprints (embeddings.data_fingerprint, 5 decimals) may differ
FINGERPRINT_TOLERANCE = 2e-5


def compare_runs(runs: dict[str, str | Path], baseline: str,
                 tolerance: Tolerance = Tolerance()) -> Comparison:
    """Every run against the baseline, figure by figure (see the module docstring)."""
    check_baseline(baseline, runs)
    problems: list[str] = []
    trees = [load_tree(baseline, runs[baseline])]  # an unreadable baseline stops here
    for name, path in runs.items():
        if name == baseline:
            continue
        try:
            trees.append(load_tree(name, path))
        except InputError as exc:
            problems.append(f"{exc} — left out of the comparison")
    base = trees[0]
    for run in trees[1:]:
        problems += _dataset_problems(base, run)
        for fig in compared_figures():
            present = [t.name for t in (base, run) if fig.name in t.frames]
            if len(present) == 1:
                missing = run if present == [base.name] else base
                problems.append(f"run {missing.name} ({missing.path}) has no data for "
                                f"{fig.name} (expected {fig.source}); its curves are listed as "
                                f"in one run only")
            elif present:
                problems += _grid_problems(fig, base, run)
    frames = []
    for fig in compared_figures():
        if not any(fig.name in t.frames for t in trees):
            continue
        needed = fig.keys + [c for c in (fig.x, fig.along, fig.spread, fig.seed) if c]
        for metric in fig.metrics:
            if not any(metric in t.frames.get(fig.name, ()) for t in trees):
                continue
            tables = {}
            for t in trees:
                frame = t.frames.get(fig.name, pd.DataFrame(columns=needed))
                tables[t.name] = frame if metric in frame else frame.assign(**{metric: float("nan")})
            out = compare_tables(tables, baseline, keys=fig.keys, y=metric, x=fig.x,
                                 seed=fig.seed, along=fig.along, spread=fig.spread,
                                 log_x=fig.log_x, tol=tolerance)
            if len(out):
                out.insert(0, "figure", fig.name)
                out.insert(3, "curve", [_curve_label(r, fig.keys) for r in out.to_dict("records")])
                frames.append(out)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Comparison(baseline, trees, rows, tolerance, problems)


def verdict_kind(verdict: str) -> str:
    return ("differs" if verdict.startswith("differs") else
            "shorter" if verdict.startswith("shorter") else
            "only in one run" if verdict.startswith("only in run") else verdict)


def check_fail_on(fail_on: tuple[str, ...]) -> None:
    unknown = [kind for kind in fail_on if kind not in FAIL_ON]
    if unknown:
        raise InputError(f"compare.fail_on: unknown kind {unknown[0]!r}; expected some of {FAIL_ON}")


def failures(rows: pd.DataFrame, baseline: str, fail_on: tuple[str, ...] = FAIL_ON) -> pd.DataFrame:
    """The compared curves the gate fails on (see FAIL_ON), with the reason in `failure`."""
    check_fail_on(fail_on)
    if not len(rows):
        return rows.assign(failure=[])
    gated = rows[rows.figure.map(lambda f: figure_spec(f).gates if figure_spec(f) else True)]
    kind = gated.verdict.map(verdict_kind)
    reason = pd.Series("", index=gated.index)
    if "differs" in fail_on:
        reason[kind.isin(["differs", "shorter", "no common x range"])] = "differs"
    if "missing" in fail_on:
        reason[gated.verdict == f"only in run {baseline}"] = "missing"
    return gated.assign(failure=reason)[reason != ""]


def verdict_counts(rows: pd.DataFrame) -> pd.DataFrame:
    """Curves per figure, run and verdict, with the tolerances the verdicts used."""
    if not len(rows):
        return pd.DataFrame(columns=["figure", "run", *VERDICT_KINDS, "tolerance"])
    kinds = rows.assign(kind=rows.verdict.map(verdict_kind))
    table = kinds.pivot_table(index=["figure", "run"], columns="kind", values="curve",
                              aggfunc="count", fill_value=0)
    table = table.reindex(columns=VERDICT_KINDS, fill_value=0).reset_index()
    used = kinds[kinds.tolerance != ""].groupby(["figure", "run"]).tolerance.agg(
        lambda t: "; ".join(sorted(set(t))))
    table["tolerance"] = [used.get((f, r), "—") for f, r in zip(table.figure, table.run)]
    order = {f.name: i for i, f in enumerate(compared_figures())}
    return table.sort_values(["figure", "run"], key=lambda c: c.map(order) if c.name == "figure"
                             else c).reset_index(drop=True)


def _runs_table(c: Comparison) -> pd.DataFrame:
    rows = []
    for t in c.runs:
        v, p = t.provenance["versions"], t.provenance
        commit = p["git_commit"] + (" (uncommitted changes)" if p.get("git_dirty") else "")
        rows.append({"run": t.name + (" (baseline)" if t.name == c.baseline else ""),
                     "folder": str(t.path), "datasets": ", ".join(t.datasets) or "—",
                     "seeds": ", ".join(map(str, t.seeds)) or "—",
                     "devices": "; ".join(p["devices"]) or "not recorded", "commit": commit,
                     "versions": ", ".join(f"{k} {v[k]}" for k in ("amips-bench", "torch", "faiss-cpu",
                                                                    "faiss-gpu", "numpy") if k in v)
                     or "not recorded"})
    rows.append({"run": "paper", "folder": "—", "datasets": "fiqa, quora, nq, hotpotqa",
                 "seeds": "—", "devices": "GPU (A.1)", "commit": "—",
                 "versions": "Table 1 and the report's claim values, drawn in the overlays"})
    return pd.DataFrame(rows)


def render_summary(c: Comparison, overlays: list[str]) -> str:
    t = c.tolerance
    counts = verdict_counts(c.rows)
    lines = [
        "# Comparison of runs",
        "",
        f"Every run is compared with the baseline **{c.baseline}**, curve by curve: curves are "
        f"matched by figure, dataset, method or model and setting, and compared at equal x "
        f"(FLOPs interpolated in log-space over the range both runs cover, training steps, "
        f"Table 1 and final metrics point for point). A curve agrees when "
        f"{t.describe('seeds')} at every compared x, σ_seed the larger of the two runs' seed "
        f"spreads at that x; where neither run has two seeds, {t.describe(None)}. Table 1 "
        f"ratios use {t.describe('repeats')}, σ_repeats from the interquartile range of the "
        f"timed pairs (IQR / 1.349). Each verdict below names the tolerance it used.",
        "",
        "## Runs",
        "",
        markdown_table(_runs_table(c)),
        "",
    ]
    if c.problems:
        lines += ["## Problems", ""] + [f"- {p}" for p in c.problems] + [""]
    lines += ["## Verdicts per figure", "", markdown_table(counts) if len(counts) else "Nothing to compare.", ""]
    if len(c.rows):
        differ = c.rows[c.rows.verdict.str.startswith("differs")]
        lines += ["## Curves that differ", ""]
        lines += [markdown_table(differ[["figure", "run", "curve", "metric", "verdict",
                                         "max_abs_delta", "mean_delta", "x_from", "x_to",
                                         "tolerance"]]) if len(differ) else "None.", ""]
        short = c.rows[c.rows.verdict.str.startswith("shorter")]
        lines += ["## Curves shorter than the baseline's", ""]
        lines += [markdown_table(short[["figure", "run", "curve", "metric", "verdict", "x_from",
                                        "x_to"]]) if len(short) else "None.", ""]
        alone = c.rows[c.rows.verdict.map(verdict_kind).isin(["only in one run", "no common x range"])]
        lines += ["## Curves not compared", ""]
        lines += [markdown_table(alone[["figure", "run", "curve", "metric", "verdict"]])
                  if len(alone) else "None: every curve is in every run.", ""]
    lines += ["## Overlays", ""] + [f"- [{Path(o).stem}]({o})" for o in overlays] + [
        "", "Every compared curve, with Δ = run − baseline: `differences.csv`.", ""]
    return "\n".join(lines)


def write_comparison(c: Comparison, out_dir: str | Path, figures_dir: str | Path) -> Path:
    """summary.md, summary.html and differences.csv in out_dir; the overlays in figures_dir."""

    out = Path(out_dir)
    overlays = draw_overlays(c.runs, figures_dir)
    links = [relative_link(Path(o).with_suffix(".png"), out) for o in overlays]
    if len(c.rows):
        save_csv(out / "differences.csv", c.rows.to_dict("records"))
    else:
        save_csv(out / "differences.csv", [], columns=["figure", "run", "baseline", "curve",
                                                       "metric", "verdict"])
    text = render_summary(c, links)
    save_text(out / "summary.md", text)
    save_text(out / "summary.html", markdown_to_html(text, "amips-bench comparison of runs"))
    for p in c.problems:
        print(f"amips-bench compare: {p}", file=sys.stderr)
    return out / "summary.md"
