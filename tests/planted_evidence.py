"""Generated evidence for the report's claims: result rows and the per-question outcomes
behind them, as a run writes them, with the effects a test plants.

Outcomes are drawn from one uniform per (seed, question) shared by every method, so two
methods with the same success probability answer alike question by question (a tie is a
tie), and a higher probability succeeds on a superset of questions (a clear difference).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from amips_bench.reporting.claims import Results
from amips_bench.reporting.evidence import QuestionEvidence


class Planted:
    """Builds a `Results` for one or more datasets from planted success probabilities."""

    def __init__(self, n: int = 400, seeds: tuple[int, ...] = (0, 1, 2), seed: int = 0):
        self.n, self.seeds = n, tuple(seeds)
        self.rng = np.random.default_rng(seed)
        self.uniform = {s: self.rng.random(n) for s in range(max(self.seeds) + 1)}
        self.val_uniform = {s: self.rng.random(n) for s in range(max(self.seeds) + 1)}
        self.routing, self.metrics, self.ivf, self.ood, self.table1 = [], [], [], [], []
        self.sources: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}
        self.kinds: dict[str, str] = {}

    # ------------------------------------------------------------------ outcomes
    def _u(self, seed: int, split: str, independent: bool) -> np.ndarray:
        """The uniforms of a method's questions: shared by every method, or (`independent`)
        its own, so that two methods differ question by question as noise would make them."""
        if independent:
            return self.rng.random(self.n)
        return (self.uniform if split == "test" else self.val_uniform)[seed]

    def _rank(self, probabilities: list[float], seed: int, split: str = "test",
              independent: bool = False) -> np.ndarray:
        """Position of the true cluster (0 = first): below k exactly where u < p_k."""
        u = self._u(seed, split, independent)
        p = np.maximum.accumulate(np.asarray(probabilities, dtype=float))
        return (u[:, None] >= p[None, :]).sum(axis=1).astype(np.int32)

    def _add(self, kind: str, dataset: str, stem: str, arrays: dict[str, np.ndarray]) -> None:
        self.sources.setdefault((kind, dataset, stem), {}).update(arrays)

    # ------------------------------------------------------------------ routing
    def routing_method(self, dataset: str, method: str, accuracy: list[float], *,
                       val: list[float] | None = None, flops: float = 1e6, size: str = "",
                       depth: int | str = "", n_x: int | str = "", clusters: int = 10,
                       stem: str | None = None, seeds: tuple[int, ...] | None = None,
                       kind: str = "beir", no_validation: bool = False,
                       independent: bool = False) -> None:
        """Rows k = 1..len(accuracy) of one method (a learned model when `stem` names its run,
        one `baselines_c{C}_s{seed}` file per seed otherwise) with hit probabilities per k."""
        self.kinds.setdefault(dataset, kind)
        val = accuracy if val is None else val
        for seed in self.seeds if seeds is None else seeds:
            file = f"{stem}_s{seed}" if stem else f"baselines_c{clusters}_s{seed}"
            test_rank = self._rank(accuracy, seed, "test", independent)
            val_rank = self._rank(val, seed, "val", independent)
            self._add("routing", dataset, file, {f"test_rank|{method}": test_rank,
                                                 f"val_rank|{method}": val_rank})
            for k in range(1, len(accuracy) + 1):
                self.routing.append({
                    "dataset": dataset, "method": method, "model": method if stem else "",
                    "size": size, "depth": depth, "n_x": n_x, "clusters": clusters, "k": k,
                    "accuracy": float((test_rank < k).mean()),
                    "val_accuracy": np.nan if no_validation else float((val_rank < k).mean()),
                    "flops_total": flops * (1 + 0.5 * (k - 1)), "seed": seed, "file": file,
                    "split_mode": "leak_free"})

    def routed_model(self, dataset: str, model: str, size: str, accuracy: list[float], *,
                     val: list[float] | None = None, depth: int = 4, n_x: int = 3,
                     flops: float | None = None, suffix: str = "", **kw) -> None:
        cost = flops if flops is not None else {"XS": 1e6, "S": 1.5e6, "M": 2e6, "L": 3e6}[size]
        stem = f"{model}_{size}_L{depth}_nx{n_x}_c10{'_pen' if model == 'supportnet' else ''}{suffix}"
        self.routing_method(dataset, model, accuracy, val=val, flops=cost, size=size,
                            depth=depth, n_x=n_x, stem=stem, **kw)

    # ------------------------------------------------------------------ c = 1 models
    def c1_model(self, dataset: str, model: str, size: str, *, test_e_rel: float,
                 val_e_rel: float | None = None, val_mrr: float = 0.5, depth: int = 4,
                 spread: float = 0.3, seeds: tuple[int, ...] | None = None,
                 kind: str = "beir", independent: bool = False) -> str:
        """A c = 1 model per seed: per-question E_rel around the planted means (questions
        shared across seeds), its validation E_rel and MRR; returns its variant."""
        self.kinds.setdefault(dataset, kind)
        val_e_rel = test_e_rel if val_e_rel is None else val_e_rel
        variant = f"{model}_{size}_L{depth}_nx3_c1{'_pen' if model == 'supportnet' else ''}"
        for seed in self.seeds if seeds is None else seeds:
            folder = f"{variant}_s{seed}"
            test = test_e_rel + spread * (self._u(seed, "test", independent) - 0.5)
            val = val_e_rel + spread * (self._u(seed, "val", independent) - 0.5)
            self._add("model", dataset, folder, {"test_e_rel": test, "val_e_rel": val})
            self.metrics.append({
                "dataset": dataset, "model": model, "size": size, "depth": depth, "n_x": 3,
                "clusters": 1, "seed": seed, "split_mode": "leak_free", "e_rel": float(test.mean()),
                "e_rel_half": float(test.mean()) / 2, "mrr": 0.5, "val_e_rel": float(val.mean()),
                "val_mrr": val_mrr, "run": f"{dataset}/{folder}"})
        return variant

    # ------------------------------------------------------------------ IVF / OOD sweeps
    def sweep(self, dataset: str, recall: list[float], flops: list[float], *,
              variant: str | None = None, table: str = "ivf", std: float | None = None,
              seeds: tuple[int, ...] | None = None, nlist: int = 100,
              val_recall: list[float] | None = None) -> None:
        """One natural (variant None) or mapped curve: per budget, each question finds y* at
        rank 1 with the planted probability, at the planted FLOPs; an IVF curve's validation
        questions with `val_recall` (default: the test probabilities)."""
        query = "natural" if variant is None else "mapped"
        val_recall = recall if val_recall is None else val_recall
        for seed in (self.seeds if seeds is None else seeds) if variant else (0,):
            file = "natural" if variant is None else f"{variant}_s{seed}"
            per_q = np.array([np.full(self.n, f) for f in flops], dtype=np.float32)
            ranks, val_ranks = (
                np.array([np.where(u < p, 1.0, np.inf) for p in probabilities], dtype=np.float32)
                for u, probabilities in ((self.uniform[seed], recall),
                                         (self.val_uniform[seed], val_recall)))
            key = f"ivf|spherical|{nlist}|{query}" if table == "ivf" else f"ivf|||{query}|std{std:g}"
            self._add(table, dataset, file, {f"{key}|budgets": np.arange(1, len(flops) + 1),
                                             f"{key}|rank": ranks, f"{key}|flops": per_q})
            if table == "ivf":
                self._add(table, dataset, file, {f"{key}|val_rank": val_ranks,
                                                 f"{key}|val_flops": per_q})
            rows = self.ivf if table == "ivf" else self.ood
            for b, (r, f) in enumerate(zip(ranks, flops), start=1):
                row = {"dataset": dataset, "index": "ivf", "query": query, "budget": b,
                       "flops_total": f, "recall@1": float(np.isfinite(r).mean()),
                       "mrr": float(np.where(np.isfinite(r), 1.0 / r, 0.0).mean()),
                       "seed": seed if variant else np.nan, "file": file,
                       "split_mode": "leak_free"}
                if table == "ivf":
                    row.update({"quantizer": "spherical", "nlist": nlist, "paper_setup": True})
                else:
                    row["std"] = std
                rows.append(row)

    # ------------------------------------------------------------------ Table 1
    def timing(self, dataset: str, ratio: float, q1: float, q3: float, kind: str = "beir") -> None:
        self.kinds.setdefault(dataset, kind)
        self.table1.append({"dataset": dataset, "size": "S", "model": "supportnet",
                            "grad_over_score": ratio, "grad_over_score_q1": q1,
                            "grad_over_score_q3": q3, "score_median_s": 1.0,
                            "paper_grad_over_score": 1.87, "paper_score_s": 1.3e-3,
                            "device": "cpu"})

    # ------------------------------------------------------------------ the results
    def results(self, *, evidence: bool = True) -> Results:
        def frame(rows):
            return pd.DataFrame(rows) if rows else pd.DataFrame()
        metrics = frame(self.metrics)
        histories = {run: pd.DataFrame({"e_rel": [e]}) for run, e in
                     zip(metrics.get("run", []), metrics.get("val_e_rel", []))}
        modes = {d: "leak_free" for d in self.kinds}
        return Results(metrics, histories, frame(self.routing), frame(self.ivf), frame(self.ood),
                       frame(self.table1), dict(self.kinds), modes, {},
                       QuestionEvidence(self.sources if evidence else {}))
