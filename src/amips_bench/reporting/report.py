"""The reproduction report: every quantitative claim of the paper beside our numbers.

The claims and their judges live in `claims.py`; this module words their verdicts and renders
the report. A verdict holds, fails or is undecided from a 95 % interval (`statistics`); its
words say where it was judged: "reproduced" / "not reproduced" only on a real dataset the
claim is about, from a run with the leak-free split; elsewhere "holds / fails on synthetic
data", "no paper claim on this dataset" (a real dataset the paper did not use for that
claim), "holds / fails under the leaky protocol" (the official code's post-augmentation
split); "undecided" with its reason. None but "reproduced" counts as a reproduction. Without
the needed results a claim is "not run". Models are chosen on the validation split and
judged on the test split.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..core.paper import PAPER_KEY_COUNTS
from ..core.provenance import git_state, package_versions
from ..core.stage_settings import RegimeSettings
from ..core.storage import relative_link, save_csv, save_json, save_text
from .claims import CLAIMS, Claim, Results
from .evidence import QuestionEvidence
from .leakage import ARMS, LeakagePair, per_seed, read_clean_tests, summary, verdicts
from .regime import MODES, answer, regime_table, trend
from .results import IDENTITY
from .statistics import HOLDS, MIN_SEEDS, UNDECIDED
from .tables import markdown_table

__all__ = ["CLAIMS", "Results", "evaluate_claims", "write_report"]

# --------------------------------------------------------------------------- verdicts


def verdict(value: str, kind: str, *, claimed: bool = True, leaky: bool = False) -> str:
    """The words of a verdict (holds, fails or undecided on a dataset of `kind`); only
    "reproduced" counts as a reproduction."""
    if kind != "synthetic" and not claimed:
        return "no paper claim on this dataset"
    if value == UNDECIDED:
        return "undecided" + (" on synthetic data" if kind == "synthetic" else "")
    holds = value == HOLDS
    if kind == "synthetic":
        return "holds on synthetic data" if holds else "fails on synthetic data"
    if leaky:
        return "holds under the leaky protocol" if holds else "fails under the leaky protocol"
    return "reproduced" if holds else "not reproduced"


def evaluate_claims(res: Results) -> list[dict[str, Any]]:
    """One row per (claim, dataset it could be judged on): our numbers with their interval,
    the verdict in words, the reason when undecided; a claim no dataset could be judged on is
    one row "not run"."""
    rows = []
    for claim in CLAIMS:
        about = {"claim": claim.id, "section": claim.section, "statement": claim.statement,
                 "paper_datasets": ", ".join(claim.paper_datasets), "paper_value": claim.paper_value}
        datasets = claim.datasets_of(res)
        for dataset in datasets:
            judged = claim.judge(res, dataset)
            kind = res.kinds.get(dataset, "synthetic")
            claimed = dataset in claim.paper_datasets
            leaky = res.mode(dataset) == "official"
            said = verdict(judged.value, kind, claimed=claimed, leaky=leaky)
            versus_best = ("—" if judged.versus_best is None else
                           verdict(judged.versus_best, kind, claimed=claimed, leaky=leaky))
            iv = judged.interval
            rows.append({**about, "dataset": dataset, "data": kind, "split_mode": res.mode(dataset),
                         "ours": judged.text, "verdict": said, "outcome": judged.value,
                         "reason": judged.reason,
                         "estimate": iv.estimate if iv is not None else np.nan,
                         "ci_low": iv.low if iv is not None else np.nan,
                         "ci_high": iv.high if iv is not None else np.nan,
                         "questions": iv.questions if iv is not None else 0,
                         "seeds": iv.seeds if iv is not None else 0,
                         "verdict vs best baseline": versus_best,
                         "counts_as_reproduction": said == "reproduced",
                         "real_data_check": kind != "synthetic" and claimed})
        if not datasets:
            rows.append({**about, "dataset": "", "data": "", "split_mode": "", "ours": "",
                         "verdict": "not run", "outcome": UNDECIDED,
                         "reason": "no dataset of this run has the results it reads",
                         "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                         "questions": 0, "seeds": 0, "verdict vs best baseline": "—",
                         "counts_as_reproduction": False, "real_data_check": False})
    return rows


# --------------------------------------------------------------------------- rendering


def provenance(config_hash: str, seeds: list[int], devices: list[str]) -> dict[str, Any]:
    return {**git_state(),
            "config_sha256": config_hash, "seeds": seeds, "devices": sorted(set(devices)),
            "versions": package_versions()}


def leakage_section(res: Results, pairs: list[str], clean_tests: list[str] | None = None) -> str:
    """Per dataset pair and arm: does the mapped key beat the natural query on the paper's IVF
    setup at equal FLOPs (model chosen on validation, mean ± sd over seeds), with E_rel and MRR."""

    parsed = [LeakagePair.parse(p) for p in pairs]
    clean = read_clean_tests(clean_tests) if clean_tests else None
    evidence = QuestionEvidence({**res.evidence.sources, **QuestionEvidence.beside(
        {"clean_test": [Path(p).with_suffix(".csv") for p in clean_tests or []]}, []).sources})
    table = verdicts(summary(per_seed(res.metrics, res.ivf, parsed, clean)), evidence, res.ivf,
                     clean[1] if clean else None)
    lines = ["The same data, grid and seeds trained under both split modes: leak-free (unique "
             "questions split first, only training questions augmented) and the official code's "
             "(every question augmented, then split, so noisy copies of test questions are "
             "trained on; the leak-free test questions are held out of it whole and its training "
             "rows subsampled to the leak-free count). Three arms: "
             + "; ".join(f"({i}) {text}" for i, text in enumerate(ARMS.values(), 1))
             + ". Arms 1 and 3 score the same questions after as many training rows, so their "
             "difference is the leak; arm 2 also differs in its test set (mostly noisy copies). "
             "Under each arm the model of best validation MRR is judged. Gain: per test "
             "question, the mean over the model's operating points of its recall minus natural "
             "x's recall at the same FLOPs (interpolated in log-FLOPs; the paper's IVF setup), "
             "with its 95 % bootstrap interval over the questions (and the seeds, from three "
             "on); mapped beats natural when the whole interval is above 0, fails when it is "
             "all below, and is undecided otherwise: the criterion of Figure 9.", ""]
    for pair in parsed:
        sub = table[table.pair == f"{pair.leak_free} / {pair.official}"]
        said = {r["mode"]: r["mapped beats natural"] for _, r in sub.iterrows()}
        lines.append(f"- **{pair.leak_free} / {pair.official}**: mapped beats natural: "
                     + "; ".join(f"{text}: {said.get(arm, 'not run')}" for arm, text in ARMS.items())
                     + ".")
    return "\n".join(lines + ["", markdown_table(table.drop(columns=["mode"]))])


def regime_section(res: Results, settings: RegimeSettings) -> str:
    """Where mapping pays: one verdict per (n, model, query mode) with the model's test
    metrics and plateau beside it, then the trend per (model, mode) and its read-out."""
    table = regime_table(res, settings)
    if not len(table):
        return "No IVF rows of the study's datasets were given."
    lines = trend(table, settings)
    intro = (
        f"Datasets {', '.join(settings.datasets)}: one generator at growing n, the paper's IVF "
        f"(spherical k-means, nlist = √n, every nprobe). Per model and query mode — mapped ŷ, and "
        f"probe with ŷ, rank with x (ŷ chooses the lists, x ranks their keys; the same FLOPs as "
        f"mapped) — the gain in recall at {settings.recall_fraction * 100:g} % of n over natural "
        f"x at equal FLOPs: per test question the mean over the model's operating points inside "
        f"natural's FLOP range, 95 % bootstrap interval over the questions. Mapping pays where "
        f"the whole interval is above 0 (holds), does not where it is all below (fails), and is "
        f"undecided otherwise or when the model is off its plateau (validation E_rel moved by "
        f"{settings.plateau_tolerance:g} or more over the last "
        f"{settings.plateau_fraction:.0%} of its training). The model's cost is given in probes "
        f"of the index (its FLOPs over one average list's scan, ≈ ρ·√n). The trend is a weighted "
        f"line in log10 n through each (model, mode)'s estimates; its crossover (the n from "
        f"which the line is above 0) and its value at {settings.predict_at:,} keys carry 95 % "
        f"intervals from a parametric bootstrap of the points, widened by the line's misfit "
        f"(reduced χ² above 1). They are what a straight line predicts, not verdicts: a gain is "
        f"bounded by ±1, the judged k grows with n (0.01 % of n), so part of any trend is the "
        f"metric's, and three points cannot show the curve bend; config/hotpotqa_scale.yaml "
        f"checks the prediction at that scale on a GPU.")
    shown = pd.DataFrame([{
        "n": f"{r.n_keys:,}", "model": f"{r.model} {r.size}", "query": MODES[r.query],
        "model cost (probes)": f"{r.model_probes:.1f} of {r.nlist:,}",
        "test E_rel": f"{r.test_e_rel:+.3f}", "test MRR": f"{r.test_mrr:.3f}",
        "plateau": r.plateau, "judged": r.recall,
        "gain at equal FLOPs": (
            f"{r.gain:+.3f} [{r.gain_low:+.3f}, {r.gain_high:+.3f}], {r.questions:,} questions × "
            f"{r.seeds} seed{'' if r.seeds == 1 else 's'}" if np.isfinite(r.gain) else "—"),
        "mapping pays": marked(r.verdict) + (f" ({r.reason})" if r.reason else "")}
        for r in table.itertuples()])
    fits = pd.DataFrame([{
        "model": f"{f.model} {f.size}", "query": MODES[f.query], "n": f.n_range,
        "slope per decade of n": "—" if not np.isfinite(f.slope_per_decade) else f"{f.slope_per_decade:+.3f}",
        "gain crosses 0 upward at": f.crossover,
        "misfit (reduced χ²)": "—" if not np.isfinite(f.misfit) else f"{f.misfit:.1f}",
        f"the line at {settings.predict_at:,} keys (a prediction, not a verdict)": (
            "—" if not np.isfinite(f.predicted_gain) else
            f"{f.predicted_gain:+.3f} [{f.predicted_low:+.3f}, {f.predicted_high:+.3f}]: "
            f"{f.predicted_side}")} for f in lines.itertuples()])
    return "\n".join([intro, "", "**The answer, per model and mode** (verdict per n; trend):", "",
                      answer(table, lines, settings), "",
                      markdown_table(shown.fillna("")), "", "Trend in n:", "",
                      markdown_table(fits)])


#: a verdict at a glance: its symbol, by the verdict's first words
VERDICT_MARKS = [("reproduced", "✅"), ("not reproduced", "❌"), ("holds on synthetic", "🟢"),
                 ("fails on synthetic", "🔴"), ("holds under the leaky", "🟡"),
                 ("fails under the leaky", "🟠"), ("undecided", "❔"), ("no paper claim", "⚪"),
                 ("not run", "⏸")]
#: the HTML page draws each symbol as a CSS badge (an emoji needs an emoji font, which a
#: browser may not have): symbol -> (badge class, colour, its letter)
VERDICT_BADGES = {"✅": ("reproduced", "#1a7f37", "✓"), "❌": ("not-reproduced", "#cf222e", "✗"),
                  "🟢": ("holds", "#2da44e", "✓"), "🔴": ("fails", "#d1242f", "✗"),
                  "🟡": ("holds-leaky", "#bf8700", "✓"), "🟠": ("fails-leaky", "#bc4c00", "✗"),
                  "❔": ("undecided", "#6e7781", "?"), "⚪": ("no-claim", "#afb8c1", "–"),
                  "⏸": ("not-run", "#8c959f", "·")}


def marked(verdict_text: str) -> str:
    """A verdict with its symbol in front (a dash stays a dash)."""
    for start, mark in VERDICT_MARKS:
        if verdict_text.startswith(start):
            return f"{mark} {verdict_text}"
    return verdict_text


def verdict_summary(claims: list[dict]) -> str:
    """One line: how many checks came out each way, symbols first."""
    counts: dict[str, int] = {}
    for row in claims:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    order = {start: i for i, (start, _) in enumerate(VERDICT_MARKS)}
    shown = sorted(counts, key=lambda v: min((order[s] for s in order if v.startswith(s)), default=99))
    return " · ".join(f"{marked(v)}: {counts[v]}" for v in shown)


def _figure_numbers(section: str) -> list[int]:
    """Paper figure numbers a claim's section names ("§4.5, A.2, Figs. 4–6" -> 4, 5, 6)."""
    numbers: list[int] = []
    for first, last in re.findall(r"Figs?\. (\d+)(?:[–-](\d+))?", section):
        numbers += range(int(first), int(last or first) + 1)
    return numbers


def figures_by_claim(claims: list[dict], figures: list[str]) -> str:
    """Each figure (its PNG, inline) under the claims it bears on (fig{N}_* for the paper's
    Figure N), their verdicts at a glance; then the claims no shown figure illustrates."""
    pngs = [f for f in figures if f.endswith(".png")]
    lines: list[str] = []
    illustrated: set[str] = set()

    def claim_lines(claim: Claim) -> list[str]:
        rows = [r for r in claims if r["claim"] == claim.id]
        return ([f"**{claim.statement}** ({claim.section})", ""]
                + [f"- {r['dataset'] or '—'}: {marked(r['verdict'])} — {r['ours'] or 'not run'}"
                   + (f" ({r['reason']})" if r["reason"] and r["outcome"] == UNDECIDED else "")
                   for r in rows] + [""])

    for figure in pngs:
        stem = Path(figure).stem
        about = [c for c in CLAIMS if any(stem.startswith(f"fig{n}_") for n in _figure_numbers(c.section))]
        lines += [f"### {stem}", ""]
        for claim in about:
            lines += claim_lines(claim)
            illustrated.add(claim.id)
        if not about:
            lines += ["No claim of the paper is judged on this figure.", ""]
        lines += [f"![{stem}]({figure})", ""]
    rest = [c for c in CLAIMS if c.id not in illustrated]
    if rest:
        lines += ["### Claims without a figure here", ""]
        for claim in rest:
            lines += claim_lines(claim)
    return "\n".join(lines)


def render(claims: list[dict], res: Results, prov: dict[str, Any], figures: list[str],
           leakage: list[str] | None = None, clean_tests: list[str] | None = None,
           regime: RegimeSettings | None = None) -> str:
    counted = sum(r["counts_as_reproduction"] for r in claims)
    real = sum(r["real_data_check"] for r in claims)
    shown_claims = [{**r, "verdict": marked(r["verdict"]),
                     "verdict vs best baseline": marked(r["verdict vs best baseline"])}
                    for r in claims]
    lines = [
        "# Reproduction report: Amortizing MIPS with Learned Support Functions",
        "",
        f"{len(CLAIMS)} claims of the paper, checked on the datasets this run produced. Claims "
        f"checked on synthetic data, on real datasets the paper did not use for the claim, or "
        f"with the leaky post-augmentation split are labelled so and never count as "
        f"reproductions. Models are selected per dataset on validation queries only and judged "
        f"on test queries. Every verdict is read from a 95 % bootstrap interval over the test "
        f"questions, paired (both sides of a comparison on the same resampled questions), with "
        f"the seeds resampled too from {MIN_SEEDS} seeds on (with fewer the interval covers "
        f"question sampling, not training variance): a claim holds when the whole interval is "
        f"on its side of the threshold, fails when it is all on the other side, and is "
        f"undecided otherwise or when its evidence is missing, with the reason. Numbers read "
        f"estimate [95 % interval], questions × seeds. E_rel is named by its convention "
        f"wherever it appears: the log-ratio of squared distances (the paper's formula) or of "
        f"distances (half of it, the paper's prose). "
        f"Reproduced on the paper's datasets: {counted} of {real} real-data checks.",
        "",
        f"**At a glance:** {verdict_summary(claims)}",
        "",
        "## Claims",
        "",
        markdown_table(pd.DataFrame(shown_claims, columns=["section", "statement", "paper_datasets",
                                                     "paper_value", "dataset", "data",
                                                     "split_mode", "ours", "verdict", "reason",
                                                     "verdict vs best baseline"])),
        "",
        "## How each claim is judged",
        "",
        markdown_table(pd.DataFrame([{"claim": c.id, "evidence": c.evidence,
                                      "model judged": c.selection, "compared": c.comparison,
                                      "holds when the interval is": c.threshold}
                                     for c in CLAIMS])),
        "",
        "## Data as the paper made it",
        "",
        data_section(res),
        "",
        "## Models as trained",
        "",
        training_section(res),
        "",
        "## Table 1 beside the paper",
        "",
    ]
    if len(res.table1):
        t = res.table1
        rows = [{"dataset": r.dataset, "size": r.size, "model": r.model,
                 "ours grad/score": f"{r.grad_over_score:.2f}",
                 "paper grad/score": ("—" if pd.isna(r.paper_grad_over_score)
                                      else f"{r.paper_grad_over_score:.2f}"),
                 "ours score (s)": f"{r.score_median_s:.3g}",
                 "paper score (s)": "—" if pd.isna(r.paper_score_s) else f"{r.paper_score_s:.3g}",
                 "device": r.device} for r in t.itertuples()]
        lines += [markdown_table(pd.DataFrame(rows)), ""]
    else:
        lines += ["Table 1 was not run.", ""]
    if leakage:
        lines += ["## Leakage study (Figure 9)", "", leakage_section(res, leakage, clean_tests), ""]
    if regime is not None and regime.datasets:
        lines += ["## Where mapping pays (Figure 10)", "", regime_section(res, regime), ""]
    lines += ["## Figures by claim", "", figures_by_claim(claims, figures), ""]
    lines += ["## Figures", ""] + [f"- [{Path(f).name}]({f})" for f in figures] + [""]
    lines += ["## Provenance", "", "```json", json.dumps(prov, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


#: a hidden layer with fewer positive pre-activations than this (validation queries, end of
#: training) makes its model "mostly dead units": the network is nearly linear
DEAD_UNIT_FLOOR = 0.05


def training_section(res: Results) -> str:
    """How the models were trained (the conventions each run recorded) and which of them have
    a layer of mostly dead units."""
    m = res.metrics
    m = m[m.model != IDENTITY] if len(m) else m
    if not len(m):
        return "No trained model was given."
    conventions = ["model", "convexity", "init", "key_reduction", "ema_warmup"]
    used = (m.reindex(columns=conventions).fillna("").astype(str)
            .groupby(conventions).size().reset_index(name="models"))
    used["convexity"] = used["convexity"].replace("", "—")
    used["init"] = used["init"].replace("", "—")
    lines = ["Conventions (convexity and init are SupportNet's; key_reduction: the key term "
             "summed over coordinates as the paper's norm, or averaged as the official code):",
             "", markdown_table(used), ""]
    live = m["live_min"] if "live_min" in m else pd.Series(dtype=float)
    dead = m[live < DEAD_UNIT_FLOOR]
    if not live.notna().any():
        lines.append("No model recorded its live-unit fractions.")
    elif len(dead):
        rows = [{"model": r.run, "smallest live fraction": f"{r.live_min:.3f}",
                 "flag": "⚠ mostly dead units"} for r in dead.itertuples()]
        lines += [f"{len(dead)} of {live.notna().sum()} models have a hidden layer with fewer "
                  f"than {DEAD_UNIT_FLOOR:.0%} positive pre-activations on validation queries: "
                  f"mostly dead units, a nearly linear network.", "",
                  markdown_table(pd.DataFrame(rows))]
    else:
        lines.append(f"Every model keeps at least {DEAD_UNIT_FLOOR:.0%} of the units of each "
                     f"hidden layer live on validation queries (smallest: {live.min():.3f}).")
    return "\n".join(lines)


def data_section(res: Results) -> str:
    """Which texts became keys and queries, and our key counts beside the paper's."""
    rows = []
    for dataset, m in sorted(res.data.items()):
        source = m.get("source", {})
        after = m.get("counts_after_dedup", {})
        paper = PAPER_KEY_COUNTS.get(dataset)
        rows.append({
            "dataset": dataset, "data": res.kinds.get(dataset, "synthetic"),
            "queries from": source.get("query_source", "synthetic generator"),
            "keys from": source.get("passage_rule", "synthetic generator"),
            "keys (ours)": f"{after.get('keys', 0):,}",
            "keys (paper)": f"≈ {paper:,}" if paper else "—",
            "ours / paper": f"{after.get('keys', 0) / paper:.2f}" if paper else "—",
            "queries (ours)": f"{after.get('queries', 0):,}",
            "identical vectors merged": ", ".join(
                f"{k} {v:,}" for k, v in m.get("identical_vectors_merged", {}).items()) or "—"})
    if not rows:
        return "No embeddings manifest was given."
    return markdown_table(pd.DataFrame(rows))


def markdown_to_html(text: str, title: str) -> str:
    """The report page: the Markdown rendered by the `markdown` package (tables, code blocks)."""
    import markdown

    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    for symbol, (name, _, letter) in VERDICT_BADGES.items():
        body = body.replace(symbol, f"<span class='verdict verdict-{name}'>{letter}</span>")
    badges = "".join(f".verdict-{name}{{background:{colour}}}"
                     for name, colour, _ in VERDICT_BADGES.values())
    return (f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
            "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
            "padding:3px 6px}img{max-width:100%}"
            ".verdict{display:inline-block;min-width:1.3em;padding:0 2px;border-radius:0.65em;"
            "color:#fff;font-weight:bold;text-align:center;font-size:11px;line-height:1.3em}"
            f"{badges}</style></head><body>\n{body}\n</body></html>\n")


def write_report(out_dir: str | Path, res: Results, *, config_hash: str,
                 seeds: list[int], figures: list[str], leakage: list[str] | None = None,
                 clean_tests: list[str] | None = None,
                 regime: RegimeSettings | None = None) -> list[dict[str, Any]]:
    """reproduction.md, reproduction.html, claims.csv and provenance.json in out_dir; figure links are relative
    to out_dir, so the report opens with its figures wherever the results folder is moved."""
    claims = evaluate_claims(res)
    prov = provenance(config_hash, seeds, res.devices())
    out = Path(out_dir)
    links = [relative_link(f, out) for f in figures]
    markdown = render(claims, res, prov, links, leakage, clean_tests, regime)
    save_text(out / "reproduction.md", markdown)
    save_text(out / "reproduction.html", markdown_to_html(markdown, "amips-bench reproduction report"))
    save_csv(out / "claims.csv", claims)
    save_json(out / "provenance.json", prov)  # read by `amips-bench compare`
    return claims


def write_report_from_files(out_dir: str | Path, *, kinds: list[str], figures: list[str],
                            config_hash: str, seeds: list[int], leakage: list[str] | None = None,
                            clean_tests: list[str] | None = None,
                            regime: tuple[list[str], list[str]] = ([], []),
                            **inputs) -> list[dict[str, Any]]:
    """The report stage: result files in (`inputs`: metrics, histories, routing, ivf, ood,
    table1, manifests; `clean_tests`: the leakage study's third arm; `regime`: the datasets
    and KEY=VALUE settings of where mapping pays), report out. `kinds` are DATASET=KIND items."""
    bad = [item for item in kinds if "=" not in item]
    if bad:
        raise InputError(f"--kinds: {bad[0]!r} is not DATASET=KIND")
    res = Results.load(kinds=dict(item.split("=", 1) for item in kinds), **inputs)
    return write_report(out_dir, res, config_hash=config_hash, seeds=seeds, figures=figures,
                        leakage=leakage, clean_tests=clean_tests,
                        regime=RegimeSettings.from_arguments(*regime))
