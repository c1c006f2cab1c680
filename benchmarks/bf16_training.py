"""Does bf16 autocast keep the numbers on the CPU? fp32 against bf16 training on the quick data.

Three models of the quick config, each trained for `--steps` steps (default 3,000: the quick
config's 400 hide most training effects) under every seed in both precisions, one thread a run
(`--jobs` at once): KeyNet XS and SupportNet XS at c = 10 (depth 4, n_x 3, the schema's default
conventions) and KeyNet S at c = 1. Per model and precision: mean ± standard error over seeds
of validation routing@1 (c = 10) or validation E_rel (c = 1), test E_rel (log-ratio of squared
distances) and the seconds a run took; per model, the bf16 − fp32 difference of each metric
with its standard error (the two seeds' runs paired), and whether it lies within one standard
error. Evaluation is float32 in both (the trainer evaluates without autocast).

    python benchmarks/bf16_training.py --seeds 0 1 2 --steps 3000 --jobs 2 \\
        --out benchmarks/results/bf16_training_cpu.md
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import yaml
from supportnet_ablation import ROOT, build_quick_data, last_validation

MODELS = [("keynet", "XS", 10), ("supportnet", "XS", 10), ("keynet", "S", 1)]
PRECISIONS = ("fp32", "bf16")


def _train(job) -> dict:
    """One model, precision and seed, on one thread: its validation and test numbers."""
    from amips_bench.core.stage_settings import TrainSettings
    from amips_bench.models.evaluation import load_dataset
    from amips_bench.models.networks import ModelSpec
    from amips_bench.models.training import Trainer

    (model, size, clusters), precision, seed, steps, train, work = job
    torch.set_num_threads(1)
    data = load_dataset(Path(work) / "quick", clusters, torch.device("cpu"))
    spec = ModelSpec(model=model, d=data.keys.shape[1], n_keys=len(data.keys), size=size,
                     depth=4, n_x=3, n_clusters=clusters)
    cfg = TrainSettings(steps=steps, batch_size=train["batch_size"], lr_at_128=train["lr_at_128"],
                      eval_every=steps, checkpoint_every=10 ** 9, seed=seed, precision=precision)
    folder = Path(work) / "runs" / run_id(model, size, clusters, precision, seed, steps)
    t0 = time.perf_counter()
    metrics = Trainer(spec, data, cfg, folder, torch.device("cpu")).run()
    val = last_validation(folder)
    return {"model": model, "size": size, "clusters": clusters, "precision": precision,
            "seed": seed, "steps": steps,
            "val": val["routing@1"] if clusters > 1 else val["e_rel"],
            "test_e_rel": metrics["test"]["e_rel"], "seconds": round(time.perf_counter() - t0, 1)}


def run_id(model: str, size: str, clusters: int, precision: str, seed: int, steps: int) -> str:
    return f"{model}_{size}_c{clusters}_{precision}_s{seed}_{steps}"


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return mean, se


def table(results: list[dict], seeds: list[int], steps: int, train: dict) -> str:
    from amips_bench.core.devices import cpu_has_bf16_units
    from amips_bench.core.provenance import cpu_model

    lines = [f"# fp32 against bf16 autocast training on the CPU (quick data, {steps} steps, batch "
             f"{train['batch_size']}, lr_at_128 {train['lr_at_128']}, seeds {seeds})", "",
             f"Machine: {cpu_model()} (bf16 matrix units: "
             f"{'yes' if cpu_has_bf16_units() else 'no'}), torch {torch.__version__}, one thread "
             f"a run. Mean ± standard error over seeds. val: routing@1 (c = 10) or E_rel "
             f"(c = 1) on the validation questions; E_rel: log-ratio of squared distances. "
             f"Differences bf16 − fp32 are paired by seed.", "",
             "Command: `python benchmarks/bf16_training.py --seeds "
             + " ".join(map(str, seeds)) + f" --steps {steps}`", "",
             "| model | precision | val | test E_rel | seconds a run | × fp32 speed |",
             "|---|---|---:|---:|---:|---:|"]
    verdicts = []
    for model, size, clusters in MODELS:
        rows = {p: sorted((r for r in results if (r["model"], r["size"], r["clusters"], r["precision"])
                           == (model, size, clusters, p)), key=lambda r: r["seed"])
                for p in PRECISIONS}
        if not all(len(rows[p]) == len(seeds) for p in PRECISIONS):
            continue
        name = f"{'KeyNet' if model == 'keynet' else 'SupportNet'} {size}, c = {clusters}"
        fp32_seconds = statistics.mean(r["seconds"] for r in rows["fp32"])
        for p in PRECISIONS:
            val, test, seconds = (_mean_se([r[k] for r in rows[p]]) for k in ("val", "test_e_rel", "seconds"))
            lines.append(f"| {name} | {p} | {val[0]:.4f} ± {val[1]:.4f} | {test[0]:.4f} ± "
                         f"{test[1]:.4f} | {seconds[0]:.1f} | {fp32_seconds / seconds[0]:.2f} |")
        within = []
        for key in ("val", "test_e_rel"):
            diff = _mean_se([b[key] - a[key] for a, b in zip(rows["fp32"], rows["bf16"])])
            se = max(_mean_se([r[key] for r in rows["fp32"]])[1], _mean_se([r[key] for r in rows["bf16"]])[1])
            within.append((key, diff, abs(diff[0]) <= se))  # one standard error of either side
        verdicts.append((name, fp32_seconds / statistics.mean(r["seconds"] for r in rows["bf16"]), within))
    lines += ["", "| model | bf16 − fp32, val | bf16 − fp32, test E_rel | within one standard error | speed-up |",
              "|---|---:|---:|---|---:|"]
    for name, speed, within in verdicts:
        cells = [f"{d[0]:+.4f} ± {d[1]:.4f}" for _, d, _ in within]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | "
                     f"{'yes' if all(ok for *_, ok in within) else 'no'} | {speed:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--out", default="", help="also write the table here (Markdown)")
    args = parser.parse_args()

    from amips_bench.core.config import prepare
    from amips_bench.datasets.targets import write_targets

    config = prepare(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    train = dict(config["datasets"]["quick"]["train"])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="amips-bf16-"))
    build_quick_data(work / "quick", config)
    if not (work / "quick/targets/c1/manifest.json").exists():
        write_targets(work / "quick/embeddings", work / "quick/splits", work / "quick/targets/c1",
                      n_clusters=1, device="cpu", progress=False)
    cache = work / "results"
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(m, p, s, args.steps, train, str(work)) for m in MODELS for s in args.seeds
            for p in PRECISIONS]
    todo = [j for j in jobs if not (cache / f"{run_id(*j[0], j[1], j[2], j[3])}.json").exists()]
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(_train, todo):
            (cache / f"{run_id(row['model'], row['size'], row['clusters'], row['precision'], row['seed'], row['steps'])}.json").write_text(json.dumps(row))
            print(f"{row['model']} {row['size']} c{row['clusters']} {row['precision']} seed "
                  f"{row['seed']}: val {row['val']:.4f} test E_rel {row['test_e_rel']:.4f} "
                  f"({row['seconds']} s)", flush=True)
    results = [json.loads(f.read_text()) for f in sorted(cache.glob(f"*_{args.steps}.json"))]
    text = table(results, args.seeds, args.steps, train)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
