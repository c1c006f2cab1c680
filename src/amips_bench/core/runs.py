"""The run grammar: what a trained model is called and which models a dataset's grid
expands to (`Run`, `RUN_PATTERN`, sizes, n_x), and the names of its IVF indexes."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

from .errors import ConfigError, InputError
from .layout import DatasetFiles
from .schema import load_schema

#: how a dataset's questions are split (splits.mode): `leak_free` splits before augmenting;
#: `official` augments first, as the official code does, so copies of test questions are
#: trained on (leaky, kept for comparison)
SPLIT_MODES = ("leak_free", "official")
#: split modes under the names files written by earlier versions record
FORMER_SPLIT_MODES = {"paper": "official"}


def split_mode_named(recorded: str) -> str:
    """A split mode as a manifest or table records it, under its current name, so results made
    before a rename still read as the mode they are."""
    return FORMER_SPLIT_MODES.get(recorded, recorded)


#: what a KeyNet run records for the SupportNet-only settings
KEYNET_CONVEXITY, KEYNET_INIT = "none", "principled"


@dataclass(frozen=True)
class Run:
    """One trained model of the grid: its settings and its results folder name."""

    model: str
    size: str
    depth: int
    n_x: int
    clusters: int
    residual: bool
    convexity: str
    seed: int
    init: str = "principled"

    @property
    def name(self) -> str:
        extra = ("_res" if self.residual else "") + CONVEXITY_SUFFIX[self.convexity]
        extra += "" if self.init == "principled" else f"_i{self.init}"
        return (f"{self.model}_{self.size}_L{self.depth}_nx{self.n_x}_c{self.clusters}"
                f"{extra}_s{self.seed}")


#: a SupportNet run name's mark of its convexity mode (KeyNet runs carry none); its init is
#: marked _i<init> unless principled; the marks do not depend on the schema's defaults
CONVEXITY_SUFFIX = {"none": "", "penalty": "_pen", "clip": "_clip"}


#: size name -> ρ, the parameter budget as a fraction of n·d (in the order of the figures)
SIZES: dict[str, float] = {"XS": 0.01, "S": 0.05, "M": 0.10, "L": 0.20, "XL": 0.40, "XXL": 0.50}


SIZE_ORDER: list[str] = list(SIZES)


#: the model names of the run grammar: the schema's list (models.networks.MODEL_KINDS holds a
#: network for each; a test keeps the two equal)
MODELS = tuple(load_schema()["$defs"]["model_name"]["enum"])


#: the one grammar of run names (the inverse of Run.name); the Snakefile's wildcard constraint
#: is RUN_WILDCARD, the same expression without group names
RUN_PATTERN = (rf"(?P<model>{'|'.join(MODELS)})_(?P<size>{'|'.join(SIZES)})_L(?P<depth>\d+)"
               r"_nx(?P<n_x>\d+)_c(?P<clusters>\d+)(?P<residual>_res)?(?P<convexity>_pen|_clip)?"
               r"(?:_i(?P<init>official_hidden|plain|unit_variance))?_s(?P<seed>\d+)")


RUN_WILDCARD = re.sub(r"\(\?P<\w+>", "(", RUN_PATTERN)


def parse_run(name: str) -> Run:
    """Inverse of Run.name (so any run folder, in the grid or not, can be built)."""
    match = re.fullmatch(RUN_PATTERN, name)
    if not match:
        raise ConfigError(f"model folder {name!r} does not match {RUN_PATTERN}")
    g = match.groupdict()
    return Run(g["model"], g["size"], int(g["depth"]), int(g["n_x"]), int(g["clusters"]),
               bool(g["residual"]), {"_pen": "penalty", "_clip": "clip"}.get(g["convexity"], "none"),
               int(g["seed"]), g["init"] or "principled")


def nx_for(depth: int, spacing: int) -> int:
    """n_x, the count of re-injections, for a spacing of k layers between them (reinject_spacing:
    k = 1: every later layer; k = 0: never)."""
    if spacing < 0:
        raise InputError(f"reinject_spacing: must be >= 0, got {spacing}")
    return 0 if spacing == 0 else math.ceil((depth - 1) / spacing)


def expand_grid(dataset: dict, seeds: list[int]) -> list[Run]:
    runs: dict[str, Run] = {}
    for entry in dataset["grid"]:
        for model, size, depth, every, c, residual, convexity, init, seed in itertools.product(
                entry["model"], entry["size"], entry["depth"], entry["reinject_spacing"],
                entry["clusters"], entry["residual"], entry["convexity"], entry["init"], seeds):
            support = model == "supportnet"
            run = Run(model, size, depth, nx_for(depth, every), c, residual,
                      convexity if support else KEYNET_CONVEXITY, seed,
                      init if support else KEYNET_INIT)
            runs.setdefault(run.name, run)
    return list(runs.values())


def queries_from_c1(clusters: int, runs: list[Run]) -> bool:
    """Whether the targets of `clusters` clusters link the split queries of targets/c1 instead
    of writing them: the queries do not depend on the cluster count, and c1's exist wherever
    the dataset trains c = 1 models."""
    return clusters > 1 and any(r.clusters == 1 for r in runs)


def ivf_nlist(n_keys: int, nlist: int, multiple: float = 1.0) -> int:
    """Lists of an IVF at `multiple` times the config's `ivf.nlist` (0: round(√n))."""
    return max(1, round(multiple * (nlist or max(1, round(math.sqrt(n_keys))))))


def dataset_n_keys(dataset: dict) -> int:
    return dataset["synthetic"]["n_keys"] if dataset["source"] == "synthetic" else dataset["n_keys"]


#: the paper's IVF (index/ivf.faiss): spherical k-means at `ivf.nlist` lists, FAISS's default
#: for an inner-product IVF
PAPER_IVF_SETUP = ("spherical", 1.0)


#: the grammar of an IVF variant's file stem; the Snakefile's wildcard constraints follow it
IVF_QUANTIZERS = ("spherical", "kmeans")


IVF_MULTIPLE_WILDCARD = r"[0-9][0-9.e+-]*"


def ivf_pairs(quantizers: list[str], multiples: list[float]) -> list[tuple[str, float]]:
    """The distinct (quantizer, nlist multiple) pairs of quantizers × multiples, each an index
    of its own."""
    bad = [q for q in quantizers if q not in IVF_QUANTIZERS]
    if bad:
        raise InputError(f"ivf.quantizers: unknown quantizer {bad[0]!r}; expected one of "
                         f"{IVF_QUANTIZERS}")
    return list(dict.fromkeys((q, float(m)) for q in quantizers for m in multiples))


def ivf_variants(quantizers: list[str], multiples: list[float]) -> list[tuple[str, float]]:
    """The pairs of `ivf.quantizers` × `ivf.nlist_multiples` besides the paper's setup: each
    is built by a job of its own (rule ivf_variant)."""
    return [p for p in ivf_pairs(quantizers, multiples) if p != PAPER_IVF_SETUP]


def ivf_files(quantizer: str, multiple: float) -> tuple[str, str]:
    """(index file, manifest file) of one IVF in index/: the paper's setup is ivf.faiss with
    manifest.json, a variant ivf_kmeans_x4.faiss with ivf_kmeans_x4.json (the pattern of rule
    ivf_variant's outputs). A variant is named by the config's multiple, not by its nlist, which
    depends on a key count unknown before encoding, so the workflow can declare every variant
    file when it plans."""
    if (quantizer, float(multiple)) == PAPER_IVF_SETUP:
        return "ivf.faiss", "manifest.json"
    return tuple(DatasetFiles("").ivf_variant(quantizer, f"{float(multiple):g}", suffix).name
                 for suffix in ("faiss", "json"))
