"""How should SupportNet and KeyNet be trained? An ablation on the quick data (c = 10) that can tell.

The quick dataset of config/config.yaml (20,000 synthetic keys, leak-free split, 10 balanced
k-means clusters) is built once. Each variant trains with the quick config's batch and LR for
`--steps` steps (default 3,000: at the quick config's 400 the effects below stay within noise)
under every seed, at every size, depth 4 with x re-injected at every layer:

- KeyNet under both reductions of the key term (summed over the d coordinates as the paper's
  ||·||², or averaged as the official code's squared_error(...).mean());
- SupportNet crossing its initialisation (principled: Hoedt's log-normal W^z with biases
  centred on unit-norm inputs; official_hidden: the hidden layers as the official code
  initialises ott-jax's ICNN, on this suite's architecture — not the official network;
  plain: |default uniform| / √fan_in) × convexity (none: unconstrained after a non-negative
  start, as the official identity rectifier; penalty: the paper's text; clip) × key reduction.

Per variant: mean ± sd over seeds of validation and test routing@1, test E_rel (log-ratio of
squared distances) and the smallest live-unit fraction over hidden layers (validation
queries). The schema's defaults are the variants best on *validation* routing@1, per model.
Each run is cached as JSON under --workdir, so a re-run only trains what is missing.

    python benchmarks/supportnet_ablation.py --seeds 0 1 2 --sizes XS S --jobs 2 \\
        --workdir /tmp/ablation --out benchmarks/results/supportnet_ablation_cpu.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
INITS = ("principled", "official_hidden", "plain")
CONVEXITY = ("none", "penalty", "clip")
REDUCTIONS = ("mean", "sum")


def variants(sizes: list[str]) -> list[dict]:
    """Every (model, size, init, convexity, key reduction) of the ablation, KeyNet first."""
    out = [{"model": "keynet", "size": size, "init": "", "convexity": "", "key_reduction": r}
           for size in sizes for r in REDUCTIONS]
    for size, r, init, convexity in itertools.product(sizes, REDUCTIONS, INITS, CONVEXITY):
        out.append({"model": "supportnet", "size": size, "init": init, "convexity": convexity,
                    "key_reduction": r})
    return out


def label(v: dict) -> str:
    if v["model"] == "keynet":
        return f"KeyNet {v['size']}, key {v['key_reduction']}"
    return f"SupportNet {v['size']}, init {v['init']}, {v['convexity']}, key {v['key_reduction']}"


def build_quick_data(root: Path, config: dict) -> None:
    """embeddings, splits, clusters c = 10 and targets c = 10 exactly as the workflow makes them."""
    from amips_bench.datasets.clusters import write_clusters
    from amips_bench.datasets.embeddings import write_synthetic
    from amips_bench.datasets.splits import write_splits
    from amips_bench.datasets.synthetic import SyntheticParams
    from amips_bench.datasets.targets import write_targets

    ds = config["datasets"]["quick"]
    if (root / "targets/c10/manifest.json").exists():
        return
    write_synthetic(root / "embeddings", SyntheticParams(**ds["synthetic"]))
    sp = ds["splits"]
    write_splits(root / "embeddings/queries.npy", root / "splits", val_size=sp["val_size"],
                 test_size=sp["test_size"], augment_factor=sp["augment_factor"],
                 sigma=sp["sigma"], mode=sp["mode"], seed=0)
    write_clusters(root / "embeddings/keys.npy", root / "clusters/c10", 10,
                   restarts=ds["clustering"]["restarts"], niter=ds["clustering"]["niter"], seed=0)
    write_targets(root / "embeddings", root / "splits", root / "targets/c10", n_clusters=10,
                  clusters_dir=root / "clusters/c10", device="cpu", progress=False)


_DATA = {}


def train_one(job: tuple[dict, int, int, dict, str]) -> dict:
    """Train one variant under one seed (one thread) and return its numbers."""
    from amips_bench.core.stage_settings import LossWeights, TrainSettings
    from amips_bench.models.evaluation import load_dataset
    from amips_bench.models.networks import ModelSpec
    from amips_bench.models.training import Trainer

    v, seed, steps, train, work = job
    torch.set_num_threads(1)
    root = Path(work) / "quick"
    if "data" not in _DATA:
        _DATA["data"] = load_dataset(root, 10, torch.device("cpu"))
    data = _DATA["data"]
    extra = {"init": v["init"], "convexity": v["convexity"]} if v["model"] == "supportnet" else {}
    spec = ModelSpec(model=v["model"], d=data.keys.shape[1], n_keys=len(data.keys), size=v["size"],
                     depth=4, n_x=3, n_clusters=10, **extra)
    cfg = TrainSettings(steps=steps, batch_size=train["batch_size"], lr_at_128=train["lr_at_128"],
                      eval_every=steps, checkpoint_every=10 ** 9, seed=seed,
                      weights=LossWeights(key_reduction=v["key_reduction"]))
    t0 = time.perf_counter()
    metrics = Trainer(spec, data, cfg, Path(work) / "runs" / f"{run_id(v, seed)}",
                      torch.device("cpu")).run()
    val = last_validation(Path(work) / "runs" / run_id(v, seed))
    return {**v, "seed": seed, "steps": steps, "width": spec.width,
            "parameters": metrics["parameters"], "val_routing@1": val["routing@1"],
            "test_routing@1": metrics["test"]["routing@1"], "test_e_rel": metrics["test"]["e_rel"],
            "live_min": metrics["live_min"], "live_fractions": metrics["live_fractions"],
            "negative_wz_fraction": metrics.get("negative_wz_fraction"),
            "seconds": round(time.perf_counter() - t0, 1)}


def last_validation(folder: Path) -> dict:
    """The last row of a run's history.csv: its validation metrics at the end of training."""
    import pandas as pd

    return pd.read_csv(folder / "history.csv").iloc[-1].to_dict()


def run_id(v: dict, seed: int) -> str:
    parts = [v["model"], v["size"], v["init"], v["convexity"], v["key_reduction"], f"s{seed}"]
    return "_".join(p for p in parts if p)


def spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{mean:.3f} ± {sd:.3f}"


def table(results: list[dict], steps: int, seeds: list[int], train: dict,
          sizes: list[str] | None = None) -> str:
    lines = [f"# Training conventions on the quick data (c = 10, depth 4, n_x 3, {steps} steps, "
             f"batch {train['batch_size']}, lr_at_128 {train['lr_at_128']}, seeds {seeds})",
             "",
             f"Machine: {platform.machine()} CPU, torch {torch.__version__}, one thread a run. "
             "Mean ± sd over seeds; validation: 500 questions, test: 1,000. E_rel: log-ratio of "
             "squared distances (test). live min: the smallest fraction of positive "
             "pre-activations over hidden layers (validation queries, end of training).",
             "",
             "Command: `python benchmarks/supportnet_ablation.py --seeds "
             + " ".join(map(str, seeds)) + f" --steps {steps} --sizes "
             + " ".join(sorted({r['size'] for r in results}, key='XSML'.find)) + "`",
             "",
             "| variant | width | seeds | routing@1 (val) | routing@1 (test) | E_rel (test) | live min | negative W^z |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(label(r), []).append(r)
    best = {}
    for name, rows in groups.items():
        model_size = (rows[0]["model"], rows[0]["size"])
        score = statistics.mean(r["val_routing@1"] for r in rows)
        if len(rows) == len(seeds) and score > best.get(model_size, ("", -1))[1]:
            best[model_size] = (name, score)
    winners = {name for name, _ in best.values()}
    for name, rows in groups.items():
        neg = [r["negative_wz_fraction"] for r in rows if r["negative_wz_fraction"] is not None]
        mark = " **(best on validation)**" if name in winners else ""
        lines.append(f"| {name}{mark} | {rows[0]['width']} | {len(rows)} | "
                     f"{spread([r['val_routing@1'] for r in rows])} | "
                     f"{spread([r['test_routing@1'] for r in rows])} | "
                     f"{spread([r['test_e_rel'] for r in rows])} | "
                     f"{spread([r['live_min'] for r in rows])} | "
                     f"{spread(neg) if neg else '—'} |")
    missing = [label(v) for v in variants(sizes or []) if label(v) not in groups]
    if missing:
        lines += ["", f"Not trained ({len(missing)} of the full cross; `--only` chose the rest): "
                  + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--sizes", nargs="+", default=["XS", "S"])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--only", nargs="*", default=[],
                        help="train only the variants whose label contains one of these, in order")
    parser.add_argument("--table-only", action="store_true", help="train nothing: tabulate the cache")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--out", default="", help="also write the table here (Markdown)")
    args = parser.parse_args()

    from amips_bench.core.config import prepare

    config = prepare(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    train = dict(config["datasets"]["quick"]["train"])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="amips-ablation-"))
    build_quick_data(work / "quick", config)
    cache = work / "results"
    cache.mkdir(parents=True, exist_ok=True)
    chosen = [v for pattern in args.only or [""] for v in variants(args.sizes) if pattern in label(v)]
    chosen = [v for i, v in enumerate(chosen) if v not in chosen[:i]]
    todo = [(v, seed, args.steps, train, str(work)) for v in chosen for seed in args.seeds
            if not args.table_only and not (cache / f"{run_id(v, seed)}_{args.steps}.json").exists()]
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(train_one, todo):
            (cache / f"{run_id(row, row['seed'])}_{args.steps}.json").write_text(json.dumps(row))
            print(f"{label(row)} seed {row['seed']}: val {row['val_routing@1']:.3f} test "
                  f"{row['test_routing@1']:.3f} live {row['live_min']:.2f} ({row['seconds']} s)",
                  flush=True)
    results = [json.loads((cache / f"{run_id(v, s)}_{args.steps}.json").read_text())
               for v in variants(args.sizes) for s in args.seeds
               if (cache / f"{run_id(v, s)}_{args.steps}.json").exists()]
    text = table(results, args.steps, args.seeds, train, args.sizes)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
