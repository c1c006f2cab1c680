"""The registry of figures: what each figure is called, which files it reads, what draws it.

One entry per figure, read by the CLI (`amips-bench figure NAME` takes the registered names),
the workflow (a rule per figure the config asks for, its inputs and outputs from the entry),
the reproduction report (it shows every figure the workflow drew) and the comparison of runs
(an entry's `compared` spec, where it has one). Adding a figure is one drawing module plus one
`register_figure` call (docs/architecture.md, "Adding a figure").

Entries hold no drawing code: `draw` names the function ("package.module:function")
so that reading the registry, which the workflow does at every start, imports no matplotlib.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the package files every figure depends on besides its own: the style, the results reader
#: and this registry
SHARED_MODULES = ("reporting.plots.style", "reporting.results", "reporting.figures")
#: the inputs a figure's rule passes to `amips-bench figure` as flags (--metrics FILES ...);
#: other inputs (a CSV read beside a JSON) are only dependencies
FILE_FLAGS = ("metrics", "history", "csv", "clean_test")


@dataclass(frozen=True)
class FigureInstance:
    """One figure file set the config asks for: a figure, or a per-dataset figure's dataset."""

    figure: Figure
    stem: str  # file stem of STEM.pdf, STEM.png, STEM.csv under figures_dir
    dataset: str = ""
    number: int = 0  # the paper's number of a per-dataset figure

    def inputs(self, run: Any) -> dict[str, list[str]]:
        """The files the figure reads, by name, from the run's RunFiles."""
        return self.figure.inputs(run, self)

    def args(self, run: Any, inputs: dict[str, list[str]]) -> str:
        """The `amips-bench figure` arguments besides NAME and --out."""
        flags = [self.figure.options(run, self)] + [
            f"--{key.replace('_', '-')} {' '.join(inputs[key])}" for key in inputs if key in FILE_FLAGS]
        return " ".join(f for f in flags if f)


@dataclass(frozen=True)
class Figure:
    """A figure of the registry."""

    name: str  # `amips-bench figure NAME`, and its key under the config's figures:
    stem: str  # output stem; a per-dataset figure's holds {number} and {dataset}
    title: str
    caption: str  # the Snakemake report's caption, a file of workflow/report/
    draw: str  # "package.module:function": function(out_stem=..., **drawn)
    modules: tuple[str, ...]  # package modules that draw it: editing one re-draws it
    inputs: Callable[[Any, FigureInstance], dict[str, list[str]]]
    #: the draw function's keyword -> the `amips-bench figure` option it takes its value from
    drawn: dict[str, str] = field(default_factory=dict)
    options: Callable[[Any, FigureInstance], str] = lambda run, inst: ""
    per_dataset: bool = False  # the config gives {dataset: number}; one figure each
    #: what the config asks of it (default: its key under figures:)
    selection: Callable[[dict], Any] | None = None
    compared: Any = None  # a comparing.trees.FigureData: how runs compare the numbers behind it

    def instances(self, config: dict) -> list[FigureInstance]:
        chosen = self.selection(config) if self.selection else config["figures"].get(self.name)
        if not chosen:
            return []
        if self.per_dataset:
            return [FigureInstance(self, self.stem.format(number=n, dataset=ds), ds, int(n))
                    for ds, n in chosen.items()]
        return [FigureInstance(self, self.stem)]

    def code(self, package: str | Path) -> list[str]:
        return [str(Path(package).joinpath(*m.split(".")).with_suffix(".py"))
                for m in self.modules + SHARED_MODULES]

    def render(self, out_stem: str | Path, options: Any) -> None:
        """Draw it from the parsed `amips-bench figure` options."""
        module, function = self.draw.split(":")
        draw = getattr(importlib.import_module(module), function)
        draw(out_stem=out_stem, **{kw: getattr(options, opt) for kw, opt in self.drawn.items()})


#: name -> figure, in the paper's order
FIGURES: dict[str, Figure] = {}


def register_figure(figure: Figure) -> Figure:
    """Add a figure to the registry (a name already taken is an error)."""
    if figure.name in FIGURES:
        raise ValueError(f"figure {figure.name!r} is registered already")
    FIGURES[figure.name] = figure
    return figure


def _datasets(run, key: str) -> list[str]:
    return run.config["figures"][key]


def _plots(module: str) -> str:
    return f"reporting.plots.{module}"


for _figure in [
    Figure(name="toy", stem="fig1_toy", title="Figure 1 — the support function of five keys",
           caption="fig1.rst", draw="amips_bench.reporting.plots.fig1_toy:fig1_toy",
           modules=(_plots("fig1_toy"), "models.toy"),
           inputs=lambda run, inst: {}, drawn={"seed": "seed"}),
    Figure(name="routing", stem="fig2_routing", title="Figure 2 — routing accuracy vs FLOPs",
           caption="fig2.rst", draw="amips_bench.reporting.plots.fig2_routing:fig2_routing",
           modules=(_plots("fig2_routing"),),
           inputs=lambda run, inst: {"csv": [f for ds in _datasets(run, "routing")
                                             for f in run.routing_csvs(ds)]},
           drawn={"csv_paths": "csv"}),
    Figure(name="erel_mrr", stem="fig3_erel_mrr", title="Figure 3 — E_rel vs MRR",
           caption="fig3.rst", draw="amips_bench.reporting.plots.fig3_erel_mrr:fig3_erel_mrr",
           modules=(_plots("fig3_erel_mrr"),),
           inputs=lambda run, inst: {"metrics": [
               f for ds in _datasets(run, "erel_mrr") for f in run.metrics_files(ds, clusters=1)]
               + run.identity_files(_datasets(run, "erel_mrr"))},
           drawn={"metrics_paths": "metrics"}),
    Figure(name="ivf", stem="fig{number}_ivf_{dataset}",
           title="Figures 4–6 — natural vs mapped queries on IVF", caption="fig4_6.rst",
           draw="amips_bench.reporting.plots.fig4_6_ivf:fig_ivf", modules=(_plots("fig4_6_ivf"),),
           inputs=lambda run, inst: {"csv": run.ivf_csvs(inst.dataset)},
           drawn={"csv_paths": "csv", "number": "number"},
           options=lambda run, inst: f"--number {inst.number}", per_dataset=True),
    Figure(name="ood", stem="fig7_ood", title="Figure 7 — MRR vs FLOPs under query noise",
           caption="fig7.rst", draw="amips_bench.reporting.plots.fig7_ood:fig7_ood",
           modules=(_plots("fig7_ood"), _plots("fig4_6_ivf")),
           inputs=lambda run, inst: {"csv": run.ood_csvs()}, drawn={"csv_paths": "csv"}),
    Figure(name="training", stem="fig8_training", title="Figure 8 — validation E_rel over training",
           caption="fig8.rst", draw="amips_bench.reporting.plots.fig8_training:fig8_training",
           modules=(_plots("fig8_training"),),
           inputs=lambda run, inst: {"history": run.training_files("history"),
                                     "metrics": run.training_files("metrics")},
           drawn={"history_paths": "history", "metrics_paths": "metrics"}),
    Figure(name="leakage", stem="fig9_leakage", title="Figure 9 — the leakage study",
           caption="fig9.rst", draw="amips_bench.reporting.plots.fig9_leakage:fig9_leakage",
           modules=(_plots("fig9_leakage"), "reporting.leakage"),
           inputs=lambda run, inst: {
               "metrics": run.leakage_files(run.metrics_files, clusters=1),
               "csv": run.leakage_files(run.ivf_csvs),
               "clean_test": run.clean_test_files("json"), "clean_csv": run.clean_test_files("csv")},
           drawn={"metrics_paths": "metrics", "ivf_paths": "csv", "pairs": "pairs",
                  "clean_tests": "clean_test"},
           options=lambda run, inst: f"--pairs {run.leakage_pairs()}"),
    Figure(name="regime", stem="fig10_regime", title="Figure 10 — where mapping pays",
           caption="fig10.rst", draw="amips_bench.reporting.plots.fig10_regime:fig10_regime",
           modules=(_plots("fig10_regime"), "reporting.regime", "reporting.evidence",
                    "reporting.statistics", "reporting.claims"),
           inputs=lambda run, inst: {"csv": run.regime_files("ivf"),
                                     "metrics": run.regime_files("metrics"),
                                     "history": run.regime_files("history")},
           drawn={"csv_paths": "csv", "metrics_paths": "metrics", "history_paths": "history",
                  "datasets": "regime", "settings": "regime_settings"},
           options=lambda run, inst: run.regime_arguments(),
           selection=lambda config: config["figures"]["regime"]["datasets"]),
]:
    register_figure(_figure)
