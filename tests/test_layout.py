"""The results layout is the one owner of the results contract: no other module or rule builds a
results path by joining folder names, the paths it builds read back as what they hold, and the
contract in docs/results.md is the one it writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from amips_bench.core.layout import (
    CONTRACT,
    DatasetFiles,
    ResultsLayout,
    contract_text,
    file_kind,
)

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = ROOT / "src" / "amips_bench" / "core" / "layout.py"
#: the folders of a results tree
FOLDERS = ("raw", "embeddings", "splits", "clusters", "targets", "index", "models", "routing", "ivf",
           "ood", "clean_test", "timing", "tables", "report", "compare", "logs", "benchmarks")
_NAMES = "|".join(FOLDERS)
#: a path built by hand: `x / "models"`, a literal that starts with "models/" (or "{x}/models/"),
#: the results folder spliced into an f-string, or a cluster folder name c{C}
BUILT_BY_HAND = [
    re.compile(rf"""/\s*["']({_NAMES})["']"""),
    re.compile(rf"""(?<!\.\./)(?<!"")["'](?:\{{[^}}]*\}}/)*({_NAMES})/"""),
    re.compile(r"""\{R\}|\{config\[["']results["']\]\}"""),
    re.compile(r"""f["']c\{"""),
]


def path_joins(text: str) -> list[str]:
    """Lines of source that build a results path by hand (help texts and docstrings only
    describe one)."""
    return [line.strip() for line in text.splitlines()
            if "help=" not in line and any(p.search(line) for p in BUILT_BY_HAND)]


def owned_sources() -> list[Path]:
    package = sorted((ROOT / "src" / "amips_bench").rglob("*.py"))
    workflow = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    return [p for p in package + workflow if p != LAYOUT]


def test_no_module_or_rule_builds_a_results_path_by_hand():
    found = {str(p.relative_to(ROOT)): path_joins(p.read_text()) for p in owned_sources()}
    found = {p: lines for p, lines in found.items() if lines}
    assert not found, f"results paths built outside core/layout.py: {found}"


@pytest.mark.parametrize("line", [
    'keys = root / "embeddings" / "keys.npy"',
    'out = f"{R}/{dataset}/models/{run}/model.pt"',
    "manifest = Path(d, 'targets/c1/manifest.json')",
    'ident = "{dataset}/targets/c1/identity.json"',
    'folder = root / f"c{clusters}"',
])
def test_the_grep_catches_a_planted_join(line):
    assert path_joins(line) == [line]


def test_captions_and_help_texts_are_not_paths():
    assert path_joins('caption=f"../report/{caption}"') == []
    assert path_joins('p.add_argument("--keys", help="embeddings/keys.npy")') == []


def test_every_path_reads_back_as_what_it_holds():
    d = ResultsLayout("results").dataset("fiqa")
    cases = {
        d.keys: ("keys", {}), d.queries: ("queries", {}),
        d.split_rows("val"): ("split_rows", {"split": "val"}),
        d.split_rows("train", copies=True): ("split_rows", {"split": "train"}),
        d.centroids(10): ("centroids", {"c": "10"}), d.assignments(4): ("assignments", {"c": "4"}),
        d.split_queries(3, "test"): ("split_queries", {"c": "3", "split": "test"}),
        d.split_top1(1, "train"): ("split_top1", {"c": "1", "split": "train"}),
        d.ivf_index: ("ivf_index", {}),
        d.ivf_variant("kmeans", "4", "faiss"): ("ivf_index", {"quantizer": "kmeans", "multiple": "4"}),
        d.hnsw_index: ("hnsw_index", {}),
        d.model("keynet_M_L4_nx3_c1_s0"): ("model", {"run": "keynet_M_L4_nx3_c1_s0"}),
        d.segment("keynet_M_L4_nx3_c1_s0", 2): ("segment", {"run": "keynet_M_L4_nx3_c1_s0", "k": "2"}),
        d.metrics("keynet_M_L4_nx3_c1_s0"): ("other", {}), d.splits_manifest: ("other", {}),
    }
    for path, (kind, fields) in cases.items():
        what = file_kind(path.relative_to(d.root))
        assert (what.kind, what.fields) == (kind, fields), path


def test_wildcards_pass_through_as_snakemake_patterns():
    w = ResultsLayout("out").dataset("{dataset}")
    assert str(w.model("{run}")) == "out/{dataset}/models/{run}/model.pt"
    assert str(w.split_queries("{clusters}", "train")) == "out/{dataset}/targets/c{clusters}/train_queries.npy"
    assert str(ResultsLayout("out").log("{dataset}", "ivf", "{run}")) == "out/logs/{dataset}/ivf/{run}.log"
    assert str(ResultsLayout("out").log("{dataset}", "shared_index_{file}")) == \
        "out/logs/{dataset}/shared_index_{file}.log"


def test_a_written_tree_is_found_by_its_dataset_folders(tmp_path):
    layout = ResultsLayout(tmp_path)
    layout.dataset("a").routing_csv("x").parent.mkdir(parents=True)
    layout.dataset("b").keys.parent.mkdir(parents=True)
    (tmp_path / "logs" / "a").mkdir(parents=True)  # not a dataset
    assert [d.root.name for d in layout.datasets()] == ["a", "b"]
    assert isinstance(layout.datasets()[0], DatasetFiles)


def test_the_documented_contract_is_the_layouts():
    docs = (ROOT / "docs" / "results.md").read_text()
    assert f"```\n{contract_text()}\n```" in docs, "docs/results.md differs from core.layout.contract_text()"
    assert len(CONTRACT) >= 15
