"""Timing protocol (docs/architecture.md §6) and Table 1: warm-up, synchronise before every clock read,
repeat, report the median and the interquartile range, with the device, dtype, thread count and
versions beside every number. On a shared machine the grad/score ratios measured in one run are
the numbers to compare with the paper, not the absolute seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import InputError
from ..core.layout import DatasetFiles
from ..core.paper import TABLE1_RATIO_RANGE, table1_seconds
from ..core.provenance import device_name, package_versions
from ..core.storage import load_array, save_result_rows, save_text
from ..datasets.targets import full_fp32_matmul
from ..models.evaluation import load_dataset
from ..models.flops import centroid_flops, ivf_flops, key_flops, router_flops
from ..models.networks import MODEL_KINDS, KeyNet, ModelSpec, build_model, load_model, model_scores, scores_and_keys
from ..models.training import precision_context
from .faiss_backend import set_nprobe
from .ivf import load_split, read_index, search_ivf


def synchronizer(device: torch.device) -> Callable[[], None]:
    """The barrier to pass before reading a clock: cuda.synchronize on GPU, nothing on CPU."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@dataclass
class Timing:
    seconds: np.ndarray

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))

    @property
    def iqr(self) -> float:
        q1, q3 = np.percentile(self.seconds, [25, 75])
        return float(q3 - q1)


def time_callable(fn: Callable[[], Any], *, warmup: int, repeats: int,
                  synchronize: Callable[[], None], clock: Callable[[], float] = time.perf_counter
                  ) -> Timing:
    """Run fn `warmup` times untimed, then time `repeats` runs, synchronising before every read."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    for _ in range(warmup):
        fn()
    seconds = np.empty(repeats)
    for i in range(repeats):
        synchronize()
        start = clock()
        fn()
        synchronize()
        seconds[i] = clock() - start
    return Timing(seconds)


def time_interleaved(fns: list[Callable[[], Any]], *, warmup: int, repeats: int,
                     synchronize: Callable[[], None],
                     clock: Callable[[], float] = time.perf_counter) -> list[Timing]:
    """Time several callables in alternation (a, b, a, b, ...) so that machine noise hits them
    alike and their ratio is stable; every clock read follows a synchronisation."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    seconds = np.empty((len(fns), repeats))
    for i in range(repeats):
        for j, fn in enumerate(fns):
            synchronize()
            start = clock()
            fn()
            synchronize()
            seconds[j, i] = clock() - start
    return [Timing(row) for row in seconds]


def score_and_grad_fns(model: torch.nn.Module, x: torch.Tensor
                       ) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Table 1's two operations: the score, and the gradient (= predicted key).

    SupportNet: score = forward, grad = forward + input gradient (autograd).
    KeyNet: score = forward + <F(x), x>; grad = the forward, which outputs the key directly.
    """
    def score():
        with torch.no_grad():
            return model_scores(model, x)

    if isinstance(model, KeyNet):
        def grad():
            with torch.no_grad():
                return model(x)
    else:
        def grad():
            return scores_and_keys(model, x)[1]
    return score, grad


def table1_rows(datasets: dict[str, int], *, sizes: list[str], depth: int, n_x: int, batch: int,
                repeats: int, warmup: int, device: torch.device, d: int = 384, seed: int = 0,
                precision: str = "fp32", width_rule: str = "paper",
                synchronize: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """One row per dataset × size × model: median/IQR seconds per batch, ratios, paper values.

    `precision` is the matmul mode on a GPU: fp32 (IEEE), tf32 or bf16 autocast. The paper
    names neither; its fastest rows exceed the IEEE float32 rate of current GPUs, so compare with tf32
    or bf16 (results/reference/table1_h100.md).
    """

    sync = synchronize or synchronizer(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d, generator=gen)
    x = (x / x.norm(dim=1, keepdim=True)).to(device)
    rows = []
    versions = package_versions()
    for dataset, n_keys in datasets.items():
        for size in sizes:
            for model_name in MODEL_KINDS:
                torch.manual_seed(seed)
                spec = ModelSpec(model=model_name, d=d, n_keys=n_keys, size=size, depth=depth,
                                 n_x=n_x, width_rule=width_rule)
                model = build_model(spec).to(device).eval()
                score_fn, grad_fn = score_and_grad_fns(model, x)
                with (full_fp32_matmul() if precision == "fp32"
                      else precision_context(precision, device)):
                    score, grad = time_interleaved([score_fn, grad_fn], warmup=warmup,
                                                   repeats=repeats, synchronize=sync)
                paper_score = table1_seconds(dataset, size, model_name, "score")
                paper_grad = table1_seconds(dataset, size, model_name, "grad")
                rows.append({
                    "dataset": dataset, "n_keys": n_keys, "size": size, "model": model_name,
                    "depth": depth, "n_x": n_x, "width": spec.width, "width_rule": width_rule,
                    "parameters": sum(p.numel() for p in model.parameters()), "batch": batch,
                    "score_median_s": score.median, "score_iqr_s": score.iqr,
                    "grad_median_s": grad.median, "grad_iqr_s": grad.iqr,
                    "grad_over_score": float(np.median(grad.seconds / score.seconds)),
                    "grad_over_score_q1": float(np.percentile(grad.seconds / score.seconds, 25)),
                    "grad_over_score_q3": float(np.percentile(grad.seconds / score.seconds, 75)),
                    "paper_score_s": paper_score, "paper_grad_s": paper_grad,
                    "paper_grad_over_score": (paper_grad / paper_score
                                              if paper_score and paper_grad else None),
                    "repeats": repeats, "warmup": warmup, "device": device_name(device),
                    "dtype": str(x.dtype).replace("torch.", ""), "precision": precision,
                    "threads": torch.get_num_threads(), "torch": versions.get("torch", ""),
                })
                del model
    return rows


def table1_markdown(rows: list[dict[str, Any]]) -> str:
    """Our seconds and grad/score ratios beside the paper's."""
    first = rows[0]
    lo_s, hi_s = TABLE1_RATIO_RANGE["supportnet"]
    lo_k, hi_k = TABLE1_RATIO_RANGE["keynet"]
    lines = [
        "# Table 1 — seconds per batch of queries: score and gradient (predicted key)",
        "",
        f"Batch {first['batch']}, d = 384, median of {first['repeats']} runs after "
        f"{first['warmup']} warm-ups (IQR in brackets), score and grad timed in alternation; "
        f"grad/score is the median of the per-pair ratios; device {first['device']}, "
        f"{first['dtype']} inputs, {first.get('precision', 'fp32')} matmuls, "
        f"{first['threads']} threads, torch {first['torch']}.",
        f"Paper: GPU, mean of 100 runs. Absolute seconds depend on the machine; the grad/score "
        f"ratios do not (paper: SupportNet {lo_s}–{hi_s}, KeyNet {lo_k}–{hi_k}).",
        "",
        "| dataset (n) | size | model | score (s) | grad (s) | grad/score | paper score (s) | "
        "paper grad (s) | paper grad/score |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def fmt(v, spec=".3g"):
        return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)

    for r in rows:
        lines.append(
            f"| {r['dataset']} ({r['n_keys']:,}) | {r['size']} | {r['model']} | "
            f"{r['score_median_s']:.3g} [{r['score_iqr_s']:.2g}] | "
            f"{r['grad_median_s']:.3g} [{r['grad_iqr_s']:.2g}] | {r['grad_over_score']:.2f} | "
            f"{fmt(r['paper_score_s'])} | {fmt(r['paper_grad_s'])} | "
            f"{fmt(r['paper_grad_over_score'], '.2f')} |")
    return "\n".join(lines) + "\n"


def parse_key_counts(items: list[str]) -> dict[str, int]:
    """`NAME=N_KEYS` items (as the timing stage takes them) as a dict."""
    counts = {}
    for item in items:
        name, _, n = item.partition("=")
        if not name or not n.isdigit():
            raise InputError(f"--datasets: {item!r} is not NAME=N_KEYS")
        counts[name] = int(n)
    return counts


def write_table1(out_stem: str | Path, datasets: list[str], **timing) -> str:
    """The timing stage: Table 1's rows as STEM.csv (with versions) and STEM.md; returns the
    Markdown."""

    rows = table1_rows(parse_key_counts(datasets), **timing)
    stem = Path(out_stem)
    save_result_rows(stem.with_suffix(".csv"), rows)
    markdown = table1_markdown(rows)
    save_text(stem.with_suffix(".md"), markdown)
    return markdown


# --------------------------------------------------------------------------- search pipelines


def routed_search(scores: torch.Tensor, k: int, queries: torch.Tensor, sorted_keys: torch.Tensor,
                  offsets: np.ndarray) -> torch.Tensor:
    """Exact MIPS restricted to each query's k best-scored clusters; returns sorted-key positions."""
    chosen = torch.topk(scores, k, dim=1).indices
    best = torch.full((len(queries),), -torch.inf, device=queries.device)
    where = torch.zeros(len(queries), dtype=torch.int64, device=queries.device)
    for j in range(len(offsets) - 1):
        rows = (chosen == j).any(dim=1).nonzero().squeeze(1)
        if len(rows) == 0:
            continue
        lo, hi = int(offsets[j]), int(offsets[j + 1])
        value, arg = (queries[rows] @ sorted_keys[lo:hi].T).max(dim=1)
        better = value > best[rows]
        best[rows[better]] = value[better]
        where[rows[better]] = arg[better] + lo
    return where


def routing_pipeline_rows(dataset_dir, model_paths: list, ks: list[int], *, n_clusters: int,
                          batch: int, repeats: int, warmup: int,
                          device: torch.device) -> list[dict[str, Any]]:
    """Seconds per batch of router + exact scan, for centroid routing and each clustered model."""
    from pathlib import Path


    root = Path(dataset_dir)
    data = load_dataset(root, n_clusters, device, splits=("test",))
    q = data.splits["test"].queries[:batch]
    sorted_keys = data.keys[torch.from_numpy(data.layout.order).to(device)]
    centroids = torch.from_numpy(load_array(DatasetFiles(root).centroids(n_clusters),
                                            dtype="float32", ndim=2)).to(device)
    routers = [("centroid_ip", {}, lambda: q @ centroids.T, centroid_flops(n_clusters, q.shape[1]))]
    for path in model_paths:
        model, _ = load_model(path, device)
        routers.append((model.spec.model, model.spec.row_fields(),
                        score_and_grad_fns(model, q)[0], router_flops(model, model.spec.d)))
    sync = synchronizer(device)
    sizes = data.layout.sizes()
    rows = []
    for method, meta, score_fn, flops_router in routers:
        for k in ks:
            def pipeline(score_fn=score_fn, k=k):
                return routed_search(score_fn(), k, q, sorted_keys, data.layout.offsets)

            t = time_callable(pipeline, warmup=warmup, repeats=repeats, synchronize=sync)
            chosen = torch.topk(score_fn(), k, dim=1).indices.cpu().numpy()
            flops_scan = float(2.0 * sizes[chosen].sum(axis=1).mean() * q.shape[1])
            rows.append({"dataset": root.name, "pipeline": "routing", "method": method,
                         **{"model": "", "size": "", "depth": "", "n_x": "", **meta},
                         "setting": f"k={k}", "batch": len(q), "seconds_median": t.median,
                         "seconds_iqr": t.iqr, "flops_per_query": flops_router + flops_scan,
                         "repeats": repeats, "device": device_name(device),
                         "threads": torch.get_num_threads()})
    return rows


def ivf_pipeline_rows(dataset_dir, index_dir, model_paths: list, nprobes: list[int], k: int, *,
                      batch: int, repeats: int, warmup: int,
                      device: torch.device) -> list[dict[str, Any]]:
    """Seconds per batch of (KeyNet forward +) IVF search, natural and mapped."""
    from pathlib import Path

    import faiss


    queries, _, n_keys, d = load_split(dataset_dir)
    queries = queries[:batch]
    index = read_index(Path(index_dir) / "ivf.faiss")
    x = torch.from_numpy(queries).to(device)
    mappers = [("natural", {}, None, 0.0)]
    for path in model_paths:
        model, _ = load_model(path, device)
        mappers.append(("mapped", model.spec.row_fields(), model, key_flops(model, d)))
    sync = synchronizer(device)
    rows = []
    for query, meta, model, flops_model in mappers:
        def vectors(model=model):
            if model is None:
                return queries
            return scores_and_keys(model, x)[1][:, 0, :].cpu().numpy()

        for nprobe in nprobes:
            def pipeline(vectors=vectors, nprobe=nprobe):
                set_nprobe(index, nprobe)
                return index.search(np.ascontiguousarray(vectors(), dtype=np.float32), k)

            t = time_callable(pipeline, warmup=warmup, repeats=repeats, synchronize=sync)
            _, ndis, _ = search_ivf(index, vectors(), nprobe, k)
            rows.append({"dataset": Path(dataset_dir).name, "pipeline": "ivf", "method": query,
                         **{"model": "", "size": "", "depth": "", "n_x": "", **meta},
                         "setting": f"nprobe={nprobe}", "batch": len(queries),
                         "seconds_median": t.median, "seconds_iqr": t.iqr,
                         "flops_per_query": flops_model + ivf_flops(index.nlist, ndis, d),
                         "repeats": repeats, "device": device_name(device),
                         "threads": torch.get_num_threads(),
                         "faiss_threads": faiss.omp_get_max_threads()})
    return rows


def pipeline_rows(dataset_dir, index_dir, *, n_clusters: int, routing_models: list, ks: list[int],
                  ivf_models: list, nprobes: list[int], k: int, batch: int, repeats: int,
                  warmup: int, device: torch.device) -> list[dict[str, Any]]:
    """The pipelines stage: routed search (when c > 1) and IVF search, natural and mapped."""
    rows = []
    if n_clusters > 1:
        rows += routing_pipeline_rows(dataset_dir, routing_models, ks, n_clusters=n_clusters,
                                      batch=batch, repeats=repeats, warmup=warmup, device=device)
    rows += ivf_pipeline_rows(dataset_dir, index_dir, ivf_models, nprobes, k, batch=batch,
                              repeats=repeats, warmup=warmup, device=device)
    return rows
