"""Why does SupportNet route worse than KeyNet? An ablation on the quick data (c = 10, XS).

The quick dataset of config/config.yaml (20,000 synthetic keys, leak-free split, 10 balanced
k-means clusters) is built once; then SupportNet XS, depth 4, re-injection every layer, is
trained with the quick config's schedule (steps, batch, LR) under each variant, next to KeyNet XS
with the same schedule. Each row is the test routing accuracy at k = 1 (cluster of the global
top key among the model's best-scored cluster) and the test E_rel, the mean over seeds.

Variants: the convexity constraint (the paper's penalty Σ||ReLU(−W^z)||², or exact clipping
after every step), the initialisation of the non-negative weights (Hoedt & Klambauer's
log-normal with its negative bias, or plain |default uniform| / √fan_in with zero-mean biases),
the weight of the score term λ_score, and the learning rate.

    python benchmarks/supportnet_ablation.py [--seeds 0 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = [  # name, model, convexity, init, λ_score, LR factor
    ("KeyNet (reference)", "keynet", "penalty", "hoedt", 0.01, 1.0),
    ("SupportNet: penalty + Hoedt init (the paper's recipe)", "supportnet", "penalty", "hoedt", 0.01, 1.0),
    ("SupportNet: clip + Hoedt init", "supportnet", "clip", "hoedt", 0.01, 1.0),
    ("SupportNet: penalty + plain init", "supportnet", "penalty", "plain", 0.01, 1.0),
    ("SupportNet: clip + plain init", "supportnet", "clip", "plain", 0.01, 1.0),
    ("SupportNet: clip + plain init, λ_score 0.1", "supportnet", "clip", "plain", 0.1, 1.0),
    ("SupportNet: clip + plain init, λ_score 0", "supportnet", "clip", "plain", 0.0, 1.0),
    ("SupportNet: clip + plain init, LR × 0.3", "supportnet", "clip", "plain", 0.01, 0.3),
    ("SupportNet: clip + plain init, LR × 3", "supportnet", "clip", "plain", 0.01, 3.0),
    ("SupportNet: clip + plain init, λ_score 1", "supportnet", "clip", "plain", 1.0, 1.0),
    ("SupportNet: penalty + Hoedt init, λ_score 1", "supportnet", "penalty", "hoedt", 1.0, 1.0),
    # at the same ρ, eq. 3.3 gives both models one width, so the clustered KeyNet carries a
    # c·d-output layer the rule does not count; these give SupportNet KeyNet's real count
    ("SupportNet: penalty + Hoedt init, KeyNet's parameter count", "supportnet", "penalty", "hoedt", 0.01, 1.0),
    ("SupportNet: clip + plain init, LR × 0.3, KeyNet's parameter count", "supportnet", "clip", "plain", 0.01, 0.3),
]
MATCHED = "KeyNet's parameter count"


def build_quick_data(root: Path, config: dict) -> None:
    """embeddings, splits, clusters c = 10 and targets c = 10 exactly as the workflow makes them."""
    from amips_bench.clusters import write_clusters
    from amips_bench.embeddings import write_synthetic
    from amips_bench.splits import write_splits
    from amips_bench.synthetic import SyntheticParams
    from amips_bench.targets import write_targets

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=0, help="default: the quick config's")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--only", nargs="*", default=[], help="variant numbers to run (default all)")
    args = parser.parse_args()

    from amips_bench.config import prepare
    from amips_bench.evaluation import load_dataset
    from amips_bench.models import ModelSpec, solve_width
    from amips_bench.settings import LossWeights, TrainConfig
    from amips_bench.training import Trainer

    config = prepare(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    train = dict(config["datasets"]["quick"]["train"])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="amips-ablation-"))
    root = work / "quick"
    build_quick_data(root, config)
    data = load_dataset(root, 10, torch.device("cpu"))
    torch.set_num_threads(2)
    rows = []
    for number, (name, model, convexity, init, score_weight, lr_factor) in enumerate(VARIANTS):
        if args.only and str(number) not in args.only:
            continue
        routed, erel, seconds = [], [], 0.0
        for seed in args.seeds:
            spec = ModelSpec(model=model, d=384, n_keys=len(data.keys), size="XS", depth=4, n_x=3,
                             n_clusters=10, convexity=convexity, init=init)
            if MATCHED in name:  # the width whose full count equals the KeyNet's real count
                keynet = ModelSpec(model="keynet", d=384, n_keys=len(data.keys), size="XS",
                                   depth=4, n_x=3, n_clusters=10)
                width = solve_width(keynet.n_parameters, 384, 4, 3, 10, rule="full")
                spec = ModelSpec(**{**spec.to_dict(), "width": width})
            cfg = TrainConfig(steps=args.steps or train["steps"], batch_size=train["batch_size"],
                              lr_at_128=train["lr_at_128"] * lr_factor,
                              eval_every=args.steps or train["steps"],
                              checkpoint_every=10 ** 9, seed=seed,
                              weights=LossWeights(score=score_weight))
            t0 = time.perf_counter()
            metrics = Trainer(spec, data, cfg, work / f"v{number}_s{seed}", torch.device("cpu")).run()
            n_params = metrics["parameters"]
            seconds += time.perf_counter() - t0
            routed.append(metrics["test"]["routing@1"])
            erel.append(metrics["test"]["e_rel"])
        rows.append((number, name, statistics.mean(routed), statistics.mean(erel), seconds,
                     spec.width, n_params))
        print(f"[{number}] {name}: routing@1 {rows[-1][2]:.3f}, E_rel {rows[-1][3]:+.3f}", flush=True)
    print(f"\n# SupportNet vs KeyNet routing on the quick data (c = 10, XS, depth 4, n_x 3, "
          f"{args.steps or train['steps']} steps, batch {train['batch_size']}, seeds {args.seeds}; "
          f"test split; E_rel = log-ratio of squared distances)")
    print("| # | variant | width | parameters | routing@1 (test) | E_rel (test) | seconds |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for number, name, r, e, s, w, n in rows:
        print(f"| {number} | {name} | {w} | {n:,} | {r:.3f} | {e:+.3f} | {s:.0f} |")


if __name__ == "__main__":
    main()
