"""Estimated GPU hours of the paper configuration (config/paper.yaml), from its own grid.

Training FLOPs per step: KeyNet 6·P·B (forward, backward); SupportNet with c outputs
6·(1 + c)·P·B (forward, c input-gradient passes, and the double backward through both). The
estimate divides by an assumed sustained throughput (--tflops, default 100 TFLOP/s: tf32 on
an H100-class GPU at about 20 % of its dense peak for these MLP widths) and adds nothing for
evaluation, encoding or search, which are small beside training.

    python benchmarks/paper_cost.py [--config config/paper.yaml] [--tflops 100]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import yaml

from amips_bench.config import dataset_n_keys, expand_grid, prepare
from amips_bench.models import ModelSpec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config" / "paper.yaml"))
    parser.add_argument("--tflops", type=float, default=100.0)
    args = parser.parse_args()
    config = prepare(yaml.safe_load(Path(args.config).read_text()), ROOT / "config" / "schema.yaml")
    hours, models = defaultdict(float), defaultdict(int)
    for name, ds in config["datasets"].items():
        train = ds["train"]
        for run in expand_grid(ds, config["seeds"]):
            spec = ModelSpec(model=run.model, d=384, n_keys=dataset_n_keys(ds), size=run.size,
                             depth=run.depth, n_x=run.n_x, n_clusters=run.clusters)
            params = spec.budget
            factor = 6 if run.model == "keynet" else 6 * (1 + run.clusters)
            flops = factor * params * train["batch_size"] * train["steps"]
            hours[name] += flops / (args.tflops * 1e12) / 3600
            models[name] += 1
    print(f"# estimated training GPU hours of {Path(args.config).name} at {args.tflops:g} TFLOP/s sustained")
    print("| dataset | models | GPU hours |")
    print("|---|---:|---:|")
    for name in hours:
        print(f"| {name} | {models[name]} | {hours[name]:,.0f} |")
    print(f"| total | {sum(models.values())} | {sum(hours.values()):,.0f} |")


if __name__ == "__main__":
    main()
