"""Table 1 of one GPU in every precision, beside the paper: joins the per-precision tables that
`amips-bench timing --precision P --out DIR/table1_GPU_P` wrote (benchmarks/gpu_suite.sh,
phase table1) into DIR/table1_GPU.csv (all rows) and DIR/table1_GPU.md (score seconds and
grad/score per precision, side by side with the paper's).

    python benchmarks/table1_precisions.py results/reference h200 --environment benchmarks/results/environment_h200.txt
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from amips_bench.core.storage import save_csv, save_text

PRECISIONS = ("tf32", "bf16", "fp32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="where table1_GPU_P.csv lie and the joined files go")
    parser.add_argument("gpu", help="the GPU's short name in the file names (h100, h200, ...)")
    parser.add_argument("--environment", default="", help="gpu_suite's environment_GPU.txt, quoted in the header")
    args = parser.parse_args()
    folder = Path(args.folder)
    tables = {}
    for precision in PRECISIONS:
        path = folder / f"table1_{args.gpu}_{precision}.csv"
        if path.exists():
            with open(path, newline="") as f:
                tables[precision] = list(csv.DictReader(f))
    if not tables:
        raise SystemExit(f"table1_precisions: no {folder}/table1_{args.gpu}_{{{','.join(PRECISIONS)}}}.csv")
    first = next(iter(tables.values()))
    keys = [(r["dataset"], r["size"], r["model"]) for r in first]
    by = {p: {(r["dataset"], r["size"], r["model"]): r for r in rows} for p, rows in tables.items()}
    for p, rows in by.items():
        if set(rows) != set(keys):
            raise SystemExit(f"table1_precisions: table1_{args.gpu}_{p}.csv has other rows than "
                             f"table1_{args.gpu}_{next(iter(tables))}.csv")

    save_csv(folder / f"table1_{args.gpu}.csv", [r for rows in tables.values() for r in rows])

    r0 = first[0]
    device = r0["device"]
    datasets = " ".join(dict.fromkeys(f"{r['dataset']}={r['n_keys']}" for r in first))
    sizes = " ".join(dict.fromkeys(r["size"] for r in first))
    environment = Path(args.environment).read_text().strip().replace("\n", ". ") if args.environment else ""
    precisions = list(tables)
    head = ("| dataset (n) | size | model | width | paper score (s) | "
            + " | ".join(f"{p} score (s)" for p in precisions)
            + " | paper grad/score | " + " | ".join(precisions) + " |")
    lines = [f"# Table 1 at the paper's key counts on one {device}", "",
             *([f"Device, driver and software: {environment}.", ""] if environment else []),
             f"Made by `amips-bench timing --datasets {datasets} --sizes {sizes} --depth {r0['depth']} "
             f"--nx {r0['n_x']} --batch {r0['batch']} --repeats {r0['repeats']} --warmup {r0['warmup']} "
             f"--precision P --device cuda` for P in {', '.join(precisions)} (`benchmarks/gpu_suite.sh`, "
             f"phase table1), joined by `python benchmarks/table1_precisions.py`. Widths by the "
             f"{r0['width_rule']} rule; median of {r0['repeats']} runs after {r0['warmup']} warm-ups, score "
             f"and grad timed in alternation; grad/score is the median of the per-pair ratios. IQRs: "
             f"`table1_{args.gpu}_P.md`; all rows: `table1_{args.gpu}.csv`.",
             "",
             "The paper names neither its GPU nor its precision (its HotpotQA L KeyNet score implies "
             "115 TFLOP/s, beyond IEEE float32 on a GPU of this class): tf32 and bf16 are the comparable "
             "columns.", "", head, "|---|---|---|---:|---:|" + "---:|" * len(precisions) + "---:|"
             + "---:|" * len(precisions)]
    for key in keys:
        row = by[precisions[0]][key]
        scores = " | ".join(f"{float(by[p][key]['score_median_s']):.3g}" for p in precisions)
        ratios = " | ".join(f"{float(by[p][key]['grad_over_score']):.2f}" for p in precisions)
        lines.append(f"| {row['dataset']} ({int(row['n_keys']):,}) | {row['size']} | {row['model']} "
                     f"| {row['width']} | {float(row['paper_score_s']):.3g} | {scores} "
                     f"| {float(row['paper_grad_over_score']):.2f} | {ratios} |")
    save_text(folder / f"table1_{args.gpu}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
