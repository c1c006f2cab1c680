"""Figures of the paper, all drawn with one style (plots.style); `draw` is the figure stage.

The modules that draw each figure are listed in FIGURE_MODULES, which the workflow's figure rules
take as inputs: editing one re-renders its figures and nothing upstream.
"""

from __future__ import annotations

from pathlib import Path

from .ivf_figures import fig7_ood, fig_ivf
from .leakage_figure import fig9_leakage
from .routing_figure import fig2_routing
from .training_figures import fig1_toy, fig3_erel_mrr, fig8_training

#: figure name (the `amips-bench figure NAME` argument) -> the package files that draw it
FIGURE_MODULES = {"toy": ["reporting/plots/training_figures.py", "models/toy.py"],
                  "routing": ["reporting/plots/routing_figure.py"],
                  "erel_mrr": ["reporting/plots/training_figures.py"],
                  "ivf": ["reporting/plots/ivf_figures.py"], "ood": ["reporting/plots/ivf_figures.py"],
                  "training": ["reporting/plots/training_figures.py"],
                  "leakage": ["reporting/plots/leakage_figure.py", "reporting/leakage.py"]}


def module_files(name: str, package: str | Path = Path(__file__).resolve().parents[2]) -> list[str]:
    """The source files figure `name` depends on, under the package folder `package`: the
    files that draw it, the style, the results reader and this dispatcher."""
    shared = ["reporting/plots/style.py", "reporting/plots/__init__.py", "reporting/results.py"]
    return [str(Path(package) / f) for f in FIGURE_MODULES[name] + shared]


def draw(name: str, out_stem: str | Path, *, metrics: list, histories: list, csvs: list,
         number: int = 4, seed: int = 0, pairs: list[str] | None = None,
         clean_tests: list[str] | None = None) -> None:
    """Draw figure `name` from result files into STEM.pdf, STEM.png and STEM.csv."""
    if name == "toy":

        fig1_toy(out_stem, seed=seed)
    elif name == "routing":

        fig2_routing(csvs, out_stem)
    elif name == "erel_mrr":

        fig3_erel_mrr(metrics, out_stem)
    elif name == "ivf":

        fig_ivf(csvs, out_stem, number)
    elif name == "ood":

        fig7_ood(csvs, out_stem)
    elif name == "training":

        fig8_training(histories, metrics, out_stem)
    elif name == "leakage":

        fig9_leakage(metrics, csvs, pairs or [], out_stem, clean_tests or [])
    else:
        raise ValueError(f"unknown figure {name!r}")
