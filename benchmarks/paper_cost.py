"""Estimated GPU hours of the paper configuration (config/paper.yaml), from its own grid.

Each run is priced by `amips_bench.models.cost` (the workflow's runtime requests use the same
model): its training FLOPs per step from its real parameter count, at the rate of a measured
throughput table when one exists (benchmarks/results/train_throughput_<gpu>.csv, written by
`train_throughput.py --device cuda --out ...`), "measured" where the run itself was measured
and "extrapolated" where it borrows the rate of the nearest measured size. Without a table, an
assumed sustained rate (--tflops, default 100 TFLOP/s) is used for every run, and the output
says so. Evaluation, encoding and search are not counted: they are small beside training.

    python benchmarks/paper_cost.py [--config config/paper.yaml] [--throughput CSV | --tflops 100]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import yaml

from amips_bench.core.config import prepare
from amips_bench.core.errors import InputError
from amips_bench.core.runs import dataset_n_keys, expand_grid
from amips_bench.models.cost import load_rates, pick_rate, step_flops
from amips_bench.models.networks import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT / "benchmarks" / "results" / "train_throughput_h200.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config" / "paper.yaml"))
    parser.add_argument("--throughput", default=str(DEFAULT_TABLE) if DEFAULT_TABLE.exists() else "",
                        help="measured throughput CSV (default: the committed H200 table, measured at the paper rule's widths)")
    parser.add_argument("--n-keys-measured", type=int, default=513_000,
                        help="key count the throughput table sized its models with")
    parser.add_argument("--precision", default="",
                        help="training precision to price (default: each dataset's train.precision)")
    parser.add_argument("--tflops", type=float, default=100.0,
                        help="assumed sustained rate when no throughput table is given")
    args = parser.parse_args()
    config = prepare(yaml.safe_load(Path(args.config).read_text()))
    rates = load_rates(Path(args.throughput)) if args.throughput else []
    hours, models = defaultdict(float), defaultdict(int)
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    device = ""
    for name, ds in config["datasets"].items():
        train = ds["train"]
        for run in expand_grid(ds, config["seeds"]):
            spec = ModelSpec(model=run.model, d=384, n_keys=dataset_n_keys(ds), size=run.size,
                             depth=run.depth, n_x=run.n_x, n_clusters=run.clusters,
                             width_rule=config["width_rule"])
            flops = step_flops(spec, train["batch_size"]) * train["steps"]
            if rates:
                try:
                    rate, kind, row = pick_rate(rates, spec, args.precision or train["precision"],
                                                train["batch_size"], args.n_keys_measured)
                except InputError as exc:
                    raise SystemExit(f"paper_cost: {exc}") from None
                device = row["device"]
            else:
                rate, kind = args.tflops * 1e12, "assumed"
            hours[name] += flops / rate / 3600
            models[name] += 1
            kinds[name][kind] += 1
    precision = args.precision or "each dataset's train.precision"
    source = (f"measured training-step rates of {device} ({Path(args.throughput).name}; "
              f"{precision}; CUDA-graph steps where measured)" if rates else f"an assumed {args.tflops:g} TFLOP/s sustained")
    print(f"# estimated training GPU hours of {Path(args.config).name} at {source}")
    print("| dataset | models | rate measured for the run itself | rate extrapolated | GPU hours |")
    print("|---|---:|---:|---:|---:|")
    for name in hours:
        k = kinds[name]
        print(f"| {name} | {models[name]} | {k['measured']} | {k['extrapolated'] + k['assumed']} "
              f"| {hours[name]:,.0f} |")
    total = {key: sum(k[key] for k in kinds.values()) for key in ("measured", "extrapolated", "assumed")}
    print(f"| total | {sum(models.values())} | {total['measured']} | "
          f"{total['extrapolated'] + total['assumed']} | {sum(hours.values()):,.0f} |")


if __name__ == "__main__":
    main()
