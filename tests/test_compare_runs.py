"""The compare stage on whole results trees: the committed 3-seed tiny reference, copies of it
changed on purpose, and folders that are not what they claim to be."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amips_bench.cli import main
from amips_bench.comparing.compare_runs import compare_runs, write_comparison
from amips_bench.comparing.curves import Tolerance
from amips_bench.comparing.trees import FIGURES
from amips_bench.core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "fixtures" / "reference_tiny"


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def copy(tmp_path) -> Path:
    target = tmp_path / "mine"
    shutil.copytree(REFERENCE, target)
    return target


def _edit_csvs(folder: Path, pattern: str, edit) -> None:
    for path in folder.glob(pattern):
        if path.suffix == ".csv":
            frame = pd.read_csv(path)
            edit(frame).to_csv(path, index=False)


def test_a_run_compared_with_itself_agrees_everywhere_and_nothing_is_written_into_it(copy, tmp_path):
    before = _digest(REFERENCE), _digest(copy)
    result = compare_runs({"reference": REFERENCE, "mine": copy}, "reference")
    rows = result.rows
    assert set(rows.figure) == {f.name for f in FIGURES}
    assert (rows.verdict == "agrees").all(), rows[rows.verdict != "agrees"].head()
    assert (rows.max_abs_delta == 0).all() and (rows.mean_delta == 0).all()
    assert not result.problems
    write_comparison(result, tmp_path / "out", tmp_path / "figures")
    overlays = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert overlays == {"fig2_routing", "fig3_erel_mrr", "fig4_6_ivf_tiny", "fig7_ood",
                        "fig8_training", "table1"}
    assert (_digest(REFERENCE), _digest(copy)) == before  # compared runs are read only


def test_one_curve_shifted_beyond_its_tolerance_is_exactly_the_curve_that_differs(copy):
    def shift(frame):
        frame.loc[frame.method == "centroid_l2", "accuracy"] += 0.2
        return frame

    _edit_csvs(copy, "tiny/routing/baselines_*.csv", shift)
    rows = compare_runs({"reference": REFERENCE, "mine": copy}, "reference").rows
    differ = rows[rows.verdict.str.startswith("differs")]
    assert differ[["figure", "method", "metric"]].values.tolist() == [["fig2_routing", "centroid_l2",
                                                                       "accuracy"]]
    assert differ.verdict.iloc[0] == "differs (Δ = +0.2)"
    assert np.isclose(differ.max_abs_delta.iloc[0], 0.2) and np.isclose(differ.mean_delta.iloc[0], 0.2)


def test_tolerances_come_from_the_seed_spread_of_the_three_seed_reference(copy):
    """Moving one point (k = 1) of a curve by just under 2·σ_seed + floor, σ_seed that point's
    sample standard deviation over the reference's three seeds (computed here by hand), agrees;
    just over it differs."""
    tol = Tolerance()
    paths = sorted((REFERENCE / "tiny" / "routing").glob("keynet_S_L3_nx2_c4_s*.csv"))
    assert len(paths) == 3  # three seeds behind this curve
    runs = pd.concat(pd.read_csv(p) for p in paths)
    sigma = float(np.std(runs[runs.k == 1].accuracy.to_numpy(), ddof=1))
    assert sigma > 0  # the seeds do spread
    threshold = tol.seed_factor * sigma + tol.floor

    def verdict_after_shift(delta: float) -> str:
        target = copy / "shifted"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(REFERENCE, target)
        _edit_csvs(target, "tiny/routing/keynet_S_L3_nx2_c4_s*.csv",
                   lambda f: f.assign(accuracy=f.accuracy + delta * (f.k == 1)))
        rows = compare_runs({"reference": REFERENCE, "mine": target}, "reference", tol).rows
        row = rows[(rows.figure == "fig2_routing") & (rows.method == "keynet") & (rows["size"] == "S")
                   & (rows.n_x == "2")]
        assert len(row) == 1
        assert row.tolerance.iloc[0] == "|Δ| ≤ 2·σ_seed + 0.005"
        return row.verdict.iloc[0]

    assert verdict_after_shift(0.9 * threshold) == "agrees"
    assert verdict_after_shift(1.1 * threshold).startswith("differs")


def test_the_summary_names_runs_tolerances_and_provenance(copy, tmp_path):
    result = compare_runs({"reference": REFERENCE, "mine": copy}, "reference")
    write_comparison(result, tmp_path / "out", tmp_path / "figures")
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| fig8_training" in summary and "\\|Δ\\| ≤ 2·σ_seed + 0.005" in summary
    assert "\\|Δ\\| ≤ 2·σ_repeats + 0.005" in summary  # Table 1: the spread of the timed pairs
    assert "0, 1, 2" in summary and "cpu:" in summary and "torch 2." in summary
    commit = pd.read_json(REFERENCE / "provenance.json", typ="series")["git_commit"]
    assert commit in summary and len(commit) == 40
    html = (tmp_path / "out" / "summary.html").read_text()
    assert "<table>" in html and "|Δ| ≤ 2·σ_seed + 0.005" in html
    table1 = pd.read_csv(tmp_path / "figures" / "table1.csv")
    assert {"reference", "mine", "paper"} <= set(table1.run)  # the paper's range, labelled
    fig3 = pd.read_csv(tmp_path / "figures" / "fig3_erel_mrr.csv")
    assert "paper" in set(fig3.run)


# --------------------------------------------------------------------------- bad input


def test_a_folder_that_is_not_a_results_tree_is_one_line_and_the_rest_is_compared(copy, tmp_path):
    stray = tmp_path / "stray"
    (stray / "notes").mkdir(parents=True)
    result = compare_runs({"reference": REFERENCE, "mine": copy, "stray": stray}, "reference")
    assert result.problems == [f"compare.runs.stray: {stray} is not a results tree of amips-bench "
                               f"(no dataset folder with routing/, ivf/, ood/ or models/, no "
                               f"timing/table1.csv) — left out of the comparison"]
    assert set(result.rows.run) == {"mine"} and (result.rows.verdict == "agrees").all()


def test_a_run_missing_a_figures_files_lists_its_curves_as_in_one_run_only(copy):
    shutil.rmtree(copy / "tiny" / "ood")
    result = compare_runs({"reference": REFERENCE, "mine": copy}, "reference")
    assert result.problems == [f"run mine ({copy}) has no data for fig7_ood (expected "
                               f"{{dataset}}/ood/*.csv); its curves are listed as in one run only"]
    ood = result.rows[result.rows.figure == "fig7_ood"]
    assert len(ood) > 0 and (ood.verdict == "only in run reference").all()
    assert (result.rows[result.rows.figure != "fig7_ood"].verdict == "agrees").all()


def test_runs_of_different_data_are_one_line_each(copy):
    manifest = copy / "tiny" / "embeddings" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"keys": 3000', '"keys": 2999'))
    result = compare_runs({"reference": REFERENCE, "mine": copy}, "reference")
    assert result.problems == ["dataset tiny is not the same data: keys 3000 in reference, "
                               "2999 in mine"]
    (copy / "tiny").rename(copy / "other")
    result = compare_runs({"reference": REFERENCE, "mine": copy}, "reference")
    assert result.problems[0] == "datasets differ: only in reference: ['tiny']; only in mine: ['other']"


def test_runs_of_different_grids_are_one_line_and_compared_where_both_have_values(copy):
    _edit_csvs(copy, "tiny/ivf/*.csv", lambda f: f[f.budget != 32])  # efSearch 32 dropped
    result = compare_runs({"reference": REFERENCE, "mine": copy}, "reference")
    assert result.problems == ["fig4_6_ivf, dataset tiny: the budget grids differ (reference: "
                               "1, 4, 8, 16, 32; mine: 1, 4, 8, 16); compared where both have values"]
    ivf = result.rows[result.rows.figure == "fig4_6_ivf"]
    assert (ivf[ivf["index"] == "ivf"].verdict == "agrees").all()
    # the HNSW curves (efSearch 8 and 32) are cut to one point: they agree there, but are shorter
    hnsw = ivf[ivf["index"] == "hnsw"]
    assert len(hnsw) and hnsw.verdict.str.startswith("shorter (covers 0% of the baseline's range").all()


def test_a_baseline_not_among_the_runs_is_one_line(copy, tmp_path, capsys):
    with pytest.raises(InputError, match=r"^compare.baseline: 'paper' is not among the runs "
                                         r"\(reference, mine\)$"):
        compare_runs({"reference": REFERENCE, "mine": copy}, "paper")
    status = main(["compare", "--run", f"reference={REFERENCE}", f"mine={copy}", "--baseline",
                   "paper", "--out", str(tmp_path / "out"), "--figures", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == ["amips-bench compare: error: compare.baseline: 'paper' is not "
                                   "among the runs (reference, mine)"]
    assert not (tmp_path / "out").exists()


def test_the_gate_exits_1_and_names_the_curve_that_differs(copy, tmp_path, capsys):
    _edit_csvs(copy, "tiny/ood/*.csv", lambda f: f.assign(mrr=f.mrr - 0.3))
    with pytest.raises(SystemExit) as stop:
        main(["compare", "--run", f"reference={REFERENCE}", f"mine={copy}", "--baseline",
              "reference", "--out", str(tmp_path / "out"), "--figures", str(tmp_path / "f"),
              "--fail-on-difference"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert ("differs: fig7_ood · run mine · dataset=tiny · std=0.1 · query=natural · "
            "variant=keynet_M_L3_nx2_c1 · split_mode=leak_free · mrr: differs (Δ = -0.3)") in err
    assert (tmp_path / "out" / "summary.md").is_file()  # written before the gate failed


def _gate(tmp_path, copy, *fail_on):
    """`amips-bench compare` of the copy against the reference, then `compare-gate` on its
    differences.csv as the workflow's compare_gate rule runs it: (exit status, stderr lines)."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    compare_runs({"reference": REFERENCE, "mine": copy}, "reference").rows.to_csv(
        out / "differences.csv", index=False)  # what `compare` writes, without its overlays
    cmd = [sys.executable, "-m", "amips_bench.cli", "compare-gate", "--differences",
           str(out / "differences.csv"), "--baseline", "reference", "--out", str(out / "gate.txt"),
           "--fail-on", *fail_on]
    run = subprocess.run(cmd, capture_output=True, text=True)
    return run.returncode, run.stderr.splitlines()


@pytest.mark.parametrize("case", ["clean", "differs", "missing", "shorter", "new curve", "table1"])
def test_the_compare_gate_fails_on_a_moved_missing_or_shorter_curve_only(copy, tmp_path, case):
    """The default gate (differs, missing) fails, naming the curve, when a reference curve moved,
    is missing from the run or is shorter than the reference's; it passes on an identical run,
    on a curve only the run has (new, not a regression) and on a different Table 1 (a
    measurement of the machine). Only a passing gate writes gate.txt."""
    ivf = sorted((copy / "tiny" / "ivf").glob("keynet_*_s0.csv"))[0]
    if case == "differs":
        _edit_csvs(copy, "tiny/routing/keynet_*.csv", lambda f: f.assign(accuracy=f.accuracy - 0.4))
    elif case == "missing":
        for path in (copy / "tiny" / "routing").glob("router_linear_*"):
            path.unlink()
    elif case == "shorter":
        _edit_csvs(copy, "tiny/ivf/*.csv", lambda f: f[(f["index"] != "ivf") | (f.budget == 1)])
    elif case == "new curve":
        shutil.copy(ivf, ivf.with_name(ivf.name.replace("keynet_M", "keynet_L")))
        _edit_csvs(copy, "tiny/ivf/keynet_L*.csv", lambda f: f.assign(size="L"))
    elif case == "table1":
        _edit_csvs(copy, "timing/table1.csv", lambda f: f.assign(grad_over_score=f.grad_over_score * 3))
    status, err = _gate(tmp_path, copy, "differs", "missing")
    gate_file = tmp_path / "out" / "gate.txt"
    if case in ("clean", "new curve", "table1"):
        assert status == 0 and gate_file.is_file(), err
        return
    assert status == 1 and not gate_file.exists()
    named = [line for line in err if line.startswith(("differs:", "missing:"))]
    expected = {"differs": ("differs: fig2_routing", "method=keynet"),
                "missing": ("missing: fig2_routing", "method=linear_router"),
                "shorter": ("differs: fig4_6_ivf", "shorter (covers 0%")}[case]
    assert named and all(line.startswith(expected[0]) and expected[1] in line for line in named), named
    assert err[-1].startswith("amips-bench compare-gate:") and "see " in err[-1]
    if case == "missing":  # without "missing" the same comparison passes
        assert _gate(tmp_path, copy, "differs")[0] == 0


def test_two_datasets_of_equal_counts_but_different_keys_are_told_apart(tmp_path):
    """The data fingerprint of the embeddings manifest: two synthetic datasets of the same
    counts and different seeds are "not the same data"; the same seed written twice (and its
    rows rounded in the last float32 bit, as another CPU might) is."""
    from amips_bench.datasets.embeddings import data_fingerprint, write_synthetic
    from amips_bench.datasets.synthetic import SyntheticParams

    prints = {}
    for seed in (1, 2):
        out = tmp_path / f"data{seed}"
        manifest = write_synthetic(out, SyntheticParams(n_keys=3000, n_queries=1230, d=32, seed=seed))
        prints[seed] = manifest["fingerprint"]
        assert manifest["counts_after_dedup"]["keys"] == 3000
    keys = np.load(tmp_path / "data1" / "keys.npy")
    nudged = np.nextafter(keys, np.float32(2))  # one float32 ulp up everywhere
    np.save(tmp_path / "nudged.npy", nudged)
    assert all(abs(a - b) <= 2e-5 for a, b in zip(data_fingerprint(tmp_path / "nudged.npy").values(),
                                                  prints[1].values()))
    runs = {}
    for name, seed in (("reference", 1), ("same", 1), ("other", 2)):
        runs[name] = tmp_path / name
        shutil.copytree(REFERENCE, runs[name])
        manifest_file = runs[name] / "tiny" / "embeddings" / "manifest.json"
        manifest = json.loads(manifest_file.read_text())
        manifest_file.write_text(json.dumps({**manifest, "fingerprint": prints[seed]}))
    result = compare_runs(runs, "reference")
    problems = [p for p in result.problems if "not the same data" in p]
    assert len(problems) == 1 and problems[0].startswith(
        "dataset tiny is not the same data (equal counts, different keys): key mean")
    assert "in other" in problems[0] and "in same" not in problems[0]


def test_freezing_never_replaces_the_reference_of_other_datasets(copy, tmp_path):
    """A run frozen into a folder that holds another config's reference (the default
    compare.runs.reference is the quick run's) is refused, and that reference is kept whole;
    a reference of the same datasets is replaced."""
    from amips_bench.comparing.trees import freeze_reference

    other = tmp_path / "other"
    shutil.copytree(REFERENCE, other)
    provenance = json.loads((other / "provenance.json").read_text())
    provenance["datasets"] = {"quick_leak_free": {}, "quick_official": {}}
    (other / "provenance.json").write_text(json.dumps(provenance))
    before = sorted(p.relative_to(other) for p in other.rglob("*"))
    with pytest.raises(InputError, match=r"^.*other: holds the reference of datasets "
                                         r"quick_leak_free, quick_official, not of this run's "):
        freeze_reference(copy, other, command="test")
    assert sorted(p.relative_to(other) for p in other.rglob("*")) == before
    same = tmp_path / "same"
    shutil.copytree(REFERENCE, same)
    files = freeze_reference(copy, same, command="test")
    assert files and json.loads((same / "provenance.json").read_text())["command"] == "test"
