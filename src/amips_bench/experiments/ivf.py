"""Approximate-search integration of paper §4.5 (Figures 4–6): query FAISS with ŷ instead of x.

"natural": the query x itself; "mapped": the predicted key ŷ = F(x) (KeyNet) or ∇f(x)
(SupportNet, optional); "probe_mapped", beyond the paper (`ivf.probe_mapped`): ŷ chooses the
lists and x ranks their keys, which separates the paper's hypothesis — ŷ finds the right list
sooner — from how well ŷ ranks the keys inside it (its cost is mapped's). Cost per query
(docs/architecture.md §5) = model key prediction (mapped and probe_mapped) + coarse quantizer
nlist·d + the codes in the probed lists, · d. The scanned codes are counted
from the index itself (`faiss_backend.ivf_scanned_codes`), which equals FAISS's own
indexIVF_stats.ndis on the CPU and works on the GPU too, where FAISS keeps no statistics.
The same comparison on an HNSW graph (efSearch sweep, hnsw_stats.ndis · d) is an extension
the paper does not have.

A fair index: besides the paper's setup (`ivf.faiss`: FAISS's IndexIVFFlat with inner product
as its defaults train it — FAISS sets `cp.spherical` for an inner-product IVF, so its k-means
centroids are normalised after every iteration — and nlist = √n), IVF variants with plain
(unnormalised) k-means centroids and other nlist (multiples of the first, {√n, 4·√n} by
default) are built and swept, each its own natural/mapped pair. Every row carries the
wall-clock seconds per query of its search (median of timed repeats of the first
`timed_queries` queries after the counted search, at the job's thread count) next to the
counted cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from ..core.errors import InputError
from ..core.layout import DatasetFiles
from ..core.provenance import device_name
from ..core.runs import PAPER_IVF_SETUP, ivf_files, ivf_nlist, ivf_pairs, ivf_variants
from ..core.schema import schema_defaults
from ..core.storage import atomic_path, load_embeddings, load_index_array, load_json, read_file, save_json
from ..models.flops import ivf_flops, key_flops
from ..models.networks import load_model, scores_and_keys
from .faiss_backend import GPU_MAX_NPROBE, ivf_scanned_codes, list_sizes, resolve_faiss_device, search_copy, set_nprobe
from .ivf_ranks import all_nprobe_ranks, rank_metrics, resolve_evaluator

PAPER_QUANTIZER = PAPER_IVF_SETUP[0]
PAPER_IVF = ivf_files(*PAPER_IVF_SETUP)[0]  # the OOD study and the pipeline timings use it


#: keys added to an IVF per call: FAISS's own block for the list codes, and a multiple of the
#: 4,096 queries per BLAS block of the coarse assignment, so the index is byte for byte the
#: one a single add of all keys makes (tests/test_ivf.py)
IVF_ADD_CHUNK = 65_536


def build_ivf(keys: np.ndarray, nlist: int, seed: int = 0, *,
              quantizer: str = PAPER_QUANTIZER) -> faiss.IndexIVFFlat:
    """IndexIVFFlat with inner product, coarse centroids trained on the keys themselves
    (spherical, FAISS's default here: normalised after every k-means iteration; kmeans: not).

    `keys` may be a memory-mapped file: k-means reads only its sample, and the keys are added
    IVF_ADD_CHUNK rows at a time, so memory holds the index and one chunk, not a second copy.
    """
    if nlist > len(keys):
        raise InputError(f"ivf.nlist: {nlist} lists for only {len(keys)} keys")
    d = keys.shape[1]
    coarse = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(coarse, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.spherical = quantizer == "spherical"
    index.cp.max_points_per_centroid = 256
    index.train(np.ascontiguousarray(keys, dtype=np.float32))
    bounds = list(range(0, len(keys), IVF_ADD_CHUNK)) + [len(keys)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < faiss.cvar.distance_compute_blas_threshold:
        del bounds[-2]  # a last chunk too small for BLAS would be assigned by another kernel
    for start, stop in zip(bounds[:-1], bounds[1:]):
        index.add(np.ascontiguousarray(keys[start:stop], dtype=np.float32))
    return index


def build_hnsw(keys: np.ndarray, m: int, ef_construction: int) -> faiss.IndexHNSWFlat:
    index = faiss.IndexHNSWFlat(keys.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(np.ascontiguousarray(keys, dtype=np.float32))
    return index


def write_index(index: faiss.Index, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def write_ivf_indexes(keys_path: str | Path, out_dir: str | Path, *, nlist: int, seed: int = 0,
                      faiss_device: str = "auto",
                      quantizers: tuple[str, ...] = (PAPER_QUANTIZER,),
                      nlist_multiples: tuple[float, ...] = (1.0,)) -> list[dict]:
    """The index stages: one IVF of the keys per (quantizer, multiple) pair, at
    round(multiple · nlist) lists (nlist 0: round(√n)), each with a manifest of how it was built
    and where its searches run, written after its index. The paper's setup (spherical, 1) is
    ivf.faiss with manifest.json; a variant is ivf_{quantizer}_x{multiple}.faiss with its .json.
    The workflow builds each in a job of its own (rules `index` and `ivf_variant`)."""
    pairs = ivf_pairs(list(quantizers), list(nlist_multiples))  # checks the quantizers first
    keys = load_embeddings(keys_path, mmap=True)
    nlists = {(q, m): ivf_nlist(len(keys), nlist, m) for q, m in pairs}
    for pair, n in nlists.items():
        if n > len(keys):
            key = "ivf.nlist" if pair == PAPER_IVF_SETUP else "ivf.nlist_multiples"
            raise InputError(f"{key}: {n} lists for only {len(keys)} keys")
    manifests = []
    for (quantizer, multiple), n in nlists.items():
        paper = (quantizer, multiple) == PAPER_IVF_SETUP
        index_file, manifest_file = ivf_files(quantizer, multiple)
        t0 = time.perf_counter()
        write_index(build_ivf(keys, n, seed, quantizer=quantizer), Path(out_dir) / index_file)
        manifest = {"file": index_file, "quantizer": quantizer, "nlist_multiple": multiple,
                    "nlist": n, "paper_setup": paper, "n_keys": len(keys), "d": keys.shape[1],
                    "metric": "inner product", "seed": seed,
                    "build_seconds": round(time.perf_counter() - t0, 3),
                    "faiss_threads": faiss.omp_get_max_threads(), "faiss": faiss.__version__,
                    "faiss_device_setting": faiss_device,
                    "ivf_build_device": "cpu (k-means and add run on the CPU FAISS)",
                    "ivf_search_device": resolve_faiss_device(faiss_device)}
        save_json(Path(out_dir) / manifest_file, manifest)
        manifests.append(manifest)
    return manifests


def write_hnsw_index(keys_path: str | Path, out_dir: str | Path, *, m: int,
                     ef_construction: int) -> dict:
    """The HNSW stage: hnsw.faiss of the keys and hnsw.json (how it was built). A stage of its
    own, so a config without an HNSW panel never builds the graph, which takes hours at
    millions of keys; hnsw.json is written last."""
    keys = load_embeddings(keys_path)
    t0 = time.perf_counter()
    write_index(build_hnsw(keys, m, ef_construction), Path(out_dir) / "hnsw.faiss")
    manifest = {"n_keys": len(keys), "d": keys.shape[1], "hnsw_m": m,
                "hnsw_ef_construction": ef_construction,
                "hnsw_build_seconds": round(time.perf_counter() - t0, 3),
                "faiss_threads": faiss.omp_get_max_threads(), "faiss": faiss.__version__,
                "hnsw_search_device": "cpu (FAISS has no GPU HNSW)"}
    save_json(Path(out_dir) / "hnsw.json", manifest)
    return manifest


def index_manifest(index_dir: str | Path,
                   variant: tuple[str, float] = PAPER_IVF_SETUP) -> dict[str, Any]:
    """How an IVF in `index_dir` was built: the paper's setup (manifest.json; a folder holding
    only ivf.faiss gets its defaults) or a (quantizer, multiple) variant (its .json, which must
    exist)."""
    paper = {"file": PAPER_IVF, "quantizer": PAPER_QUANTIZER, "paper_setup": True}
    path = Path(index_dir) / ivf_files(*variant)[1]
    if path.is_file():
        return {**paper, **load_json(path)}
    if variant == PAPER_IVF_SETUP:
        return paper
    raise InputError(f"{path}: index manifest not found; the workflow's `ivf_variant` rule "
                     f"writes it (by hand: `amips-bench index --quantizers {variant[0]} "
                     f"--nlist-multiples {variant[1]:g}`, or leave it out of the sweep's "
                     f"--quantizers/--nlist-multiples)")


def ivf_indexes(index_dir: str | Path, quantizers: list[str],
                multiples: list[float]) -> list[dict[str, Any]]:
    """The manifests of the IVFs to sweep: the paper's setup first, then every variant of
    quantizers × multiples; a variant whose (quantizer, nlist) repeats an earlier index (a
    multiple that rounds to the same nlist on few keys) is swept once."""
    indexes = [index_manifest(index_dir)]
    for variant in ivf_variants(quantizers, multiples):
        manifest = index_manifest(index_dir, variant)
        if (variant[0], manifest["nlist"]) not in {(i["quantizer"], i.get("nlist")) for i in indexes}:
            indexes.append(manifest)
    return indexes


def read_index(path: str | Path, rule: str = "index") -> faiss.Index:
    """A FAISS index the workflow's `rule` wrote; a missing one names that rule."""
    command = "hnsw-index" if rule == "hnsw_index" else "index"
    return read_file(path, lambda p: faiss.read_index(str(p)), kind="FAISS index",
                     remedy=f"the workflow's `{rule}` rule writes it (by hand: `amips-bench {command}`)")


def search_ivf(index: faiss.IndexIVF, queries: np.ndarray, nprobe: int, k: int,
               search_index=None, sizes: np.ndarray | None = None,
               probe: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """(ids [N, k], scanned codes per query counted from the index, FAISS's ndis per query).

    `index` is the CPU index; `search_index` (default: the same) may be its GPU copy, in which
    case FAISS's counter is unavailable and returned as NaN. `sizes` (faiss_backend.list_sizes)
    saves re-reading the list sizes at every budget of a sweep.
    """
    ids, scanned, measured = search_ivf_per_query(index, queries, nprobe, k, search_index, sizes,
                                                  probe)
    return ids, float(scanned.mean()), measured


def search_ivf_per_query(index: faiss.IndexIVF, queries: np.ndarray, nprobe: int, k: int,
                         search_index=None, sizes: np.ndarray | None = None,
                         probe: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """`search_ivf` with the scanned codes of every query [N] instead of their mean; with
    `probe` (CPU only), those vectors choose the lists and the queries rank their keys."""
    if nprobe > index.nlist:
        raise InputError(f"ivf.nprobe: {nprobe} is larger than nlist = {index.nlist}")
    vectors = np.ascontiguousarray(queries, dtype=np.float32)
    target = index if search_index is None else search_index
    set_nprobe(target, nprobe)
    faiss.cvar.indexIVF_stats.reset()
    ids = search_lists(target, vectors, k, probe)
    measured = (faiss.cvar.indexIVF_stats.ndis / len(queries) if target is index
                else float("nan"))
    chooser = vectors if probe is None else np.ascontiguousarray(probe, dtype=np.float32)
    return ids, ivf_scanned_codes(index, chooser, nprobe, sizes), measured


def search_lists(index: faiss.Index, vectors: np.ndarray, k: int,
                 probe: np.ndarray | None = None) -> np.ndarray:
    """Top-k ids of a search at the index's budget; with `probe`, an IVF searches the lists
    the probe vectors choose (its quantizer, at its nprobe) and ranks their keys by `vectors`."""
    if probe is None:
        return index.search(vectors, k)[1]
    chooser = np.ascontiguousarray(probe, dtype=np.float32)
    scores, lists = index.quantizer.search(chooser, index.nprobe)
    return index.search_preassigned(vectors, k, lists, scores)[1]


def search_hnsw(index: faiss.IndexHNSW, queries: np.ndarray, ef_search: int, k: int
                ) -> tuple[np.ndarray, float]:
    """Top-k ids and distance computations per query at beam width efSearch.

    FAISS keeps efSearch as the beam even when k > efSearch: the first efSearch ids and ndis are
    those of a k = efSearch search, and the rest of the list comes from other nodes it scored; so
    Recall@100 is defined, at no extra cost, at every efSearch (tests/test_ivf.py checks this).
    """
    index.hnsw.efSearch = ef_search
    faiss.cvar.hnsw_stats.reset()
    _, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return ids, faiss.cvar.hnsw_stats.ndis / len(queries)


TIMED_QUERIES = schema_defaults("ivf")["timed_queries"]  # a batch that keeps every thread busy


def seconds_per_query(index: faiss.Index, queries: np.ndarray, k: int, repeats: int = 3,
                      probe: np.ndarray | None = None) -> float:
    """Wall-clock seconds per query of one batched search with the index's current budget
    (`probe`: as search_lists): the median of `repeats` timed runs. Call it right after a
    search of the same queries at the same budget (the sweep's counted search), which is its
    warm-up."""
    vectors = np.ascontiguousarray(queries, dtype=np.float32)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        search_lists(index, vectors, k, probe)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / len(vectors)


def recall_and_mrr(ids: np.ndarray, target: np.ndarray, ks: list[int]) -> dict[str, float]:
    """Recall@k of the exact top key in the returned lists, and its MRR (0 when not returned).

    Recall@k is NaN for k larger than the number of results returned.
    """
    return rank_metrics(target_rank(ids, target), ks, returned=ids.shape[1])


def target_rank(ids: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rank (1 = first) of each query's exact top key in its returned list; inf when absent."""
    hit = ids == target[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, np.inf)


def curve_key(row: dict[str, Any]) -> str:
    """The name of a sweep's curve in its per-question file: index, quantizer, nlist, query and
    (under query noise) the noise level, as written and as read back from the CSV."""
    def text(value: Any) -> str:
        if isinstance(value, (int, float, np.number)):
            return "" if np.isnan(value) else f"{float(value):g}"
        return str(value)
    parts = [row["index"], row.get("quantizer", ""), row.get("nlist", ""), row["query"]]
    std = row.get("std", "")
    parts += [f"std{text(std)}"] if text(std) else []
    return "|".join(text(p) for p in parts)


def curve_questions(rows: list[dict[str, Any]], ranks: list[np.ndarray], flops: list[np.ndarray],
                    validation: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> dict[str, np.ndarray]:
    """The per-question arrays of one swept curve (rows in budget order): its budgets, and per
    budget and test question the rank of y* (inf: not returned) and the FLOPs spent; with
    `validation`, the same of the validation questions (`val_rank`, `val_flops`), which choose
    the model a claim judges (never the test questions)."""
    key = curve_key(rows[0])
    out = {f"{key}|budgets": np.array([r["budget"] for r in rows], dtype=np.int64),
           f"{key}|rank": np.asarray(ranks, dtype=np.float32),
           f"{key}|flops": np.asarray(flops, dtype=np.float32)}
    if validation is not None:
        out[f"{key}|val_rank"] = np.asarray(validation[0], dtype=np.float32)
        out[f"{key}|val_flops"] = np.asarray(validation[1], dtype=np.float32)
    return out


@dataclass
class QuerySet:
    """What is sent to the index and what it costs to produce."""

    name: str  # natural | mapped | probe_mapped
    vectors: np.ndarray  # what scores the keys
    flops_model: float
    meta: dict[str, Any]
    probe: np.ndarray | None = None  # what chooses an IVF's lists, where not `vectors`

    def head(self, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The first n queries (the timed ones): vectors and probe."""
        return self.vectors[:n], None if self.probe is None else self.probe[:n]


def natural_queries(queries: np.ndarray) -> QuerySet:
    base = {"model": "", "size": "", "depth": "", "n_x": "", "seed": ""}
    return QuerySet("natural", queries, 0.0, base)


@dataclass
class KeyMapper:
    """A c = 1 model loaded once, with its key cost, to map any number of query sets."""

    model: torch.nn.Module
    flops: float
    meta: dict[str, Any]
    device: torch.device

    @classmethod
    def load(cls, model_path: str | Path, n_keys: int, device: torch.device) -> KeyMapper:
        model, _ = load_model(model_path, device)
        spec = model.spec
        if spec.n_clusters != 1:
            raise InputError(f"{model_path}: IVF integration needs a c = 1 model, this one has "
                             f"c = {spec.n_clusters}")
        if spec.n_keys != n_keys:
            raise InputError(f"{model_path}: model was built for {spec.n_keys} keys but the "
                             f"index holds {n_keys}")
        seed = load_json(Path(model_path).parent / "metrics.json")["seed"]
        return cls(model, key_flops(model, spec.d), {**spec.row_fields(), "seed": seed}, device)

    def __call__(self, queries: np.ndarray) -> QuerySet:
        """ŷ for every query: KeyNet F(x) or SupportNet ∇f(x)."""
        x = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device)
        pred = torch.cat([scores_and_keys(self.model, x[s:s + 4096])[1][:, 0, :]
                          for s in range(0, len(x), 4096)]).cpu().numpy()
        return QuerySet("mapped", pred, self.flops, self.meta)


def probe_mapped_queries(natural: QuerySet, mapped: QuerySet) -> QuerySet:
    """ŷ chooses the lists, x ranks their keys; it costs what mapped costs (the model runs)."""
    return QuerySet("probe_mapped", natural.vectors, mapped.flops_model, mapped.meta,
                    probe=mapped.vectors)


def mapped_queries(model_path: str | Path, queries: np.ndarray, n_keys: int,
                   device: torch.device) -> QuerySet:
    """ŷ for every query of one set (see KeyMapper to map several sets with one model)."""
    return KeyMapper.load(model_path, n_keys, device)(queries)


def sweep(index: faiss.Index, kind: str, queries: QuerySet, target: np.ndarray,
          budgets: list[int], ks: list[int], d: int, n_keys: int,
          faiss_device: str = "cpu", setup: dict[str, Any] | None = None,
          timed_queries: int = TIMED_QUERIES, evaluator: str = "faiss",
          questions: list[tuple] | None = None,
          validation: tuple[QuerySet, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Rows over a budget sweep (nprobe for IVF, efSearch for HNSW), with the index's `setup`
    (quantizer, paper_setup) and the wall-clock seconds per query of its first `timed_queries`
    queries (0: not timed, NaN).

    IVF searches run on `faiss_device` (a GPU copy of the index for 'gpu'; budgets above FAISS's
    GPU limit, and probe_mapped queries, run on the CPU); HNSW always runs on the CPU. Each row
    names where it ran. With `evaluator` all_nprobe an IVF's recall, MRR and scanned codes at
    every nprobe come from one exact pass (`ivf_ranks`, equal to FAISS's search) instead of a
    search per nprobe; FAISS still times the first `timed_queries` queries at each nprobe
    (after one warm-up search of them); FAISS's own counter (`ndis_faiss`) is then not read (NaN).

    `questions`, a list, receives (rows, ranks, flops, validation): per budget, each test
    question's rank of y* and its FLOPs (HNSW counts distances for the batch only: every
    question gets the mean), and for an IVF given `validation` (its query set and targets) the
    same of the validation questions from one exact pass.
    """
    if not ks:
        raise InputError("ivf.recall_at: the list of k values is empty")
    if kind != "ivf" and queries.probe is not None:
        raise InputError(f"{queries.name}: only an IVF has lists for the predicted key to choose")
    kmax = max(ks)
    on_gpu = kind == "ivf" and faiss_device == "gpu" and queries.probe is None
    gpu_index = search_copy(index, "gpu") if on_gpu else None
    sizes = list_sizes(index) if kind == "ivf" else None
    one_pass = kind == "ivf" and evaluator == "all_nprobe"
    pass_device = "cuda" if torch.cuda.is_available() else "cpu"
    if one_pass:
        all_ranks, all_scanned = all_nprobe_ranks(index, queries.vectors, target, budgets,
                                                  pass_device, queries.probe)
    timed, timed_probe = queries.head(timed_queries)
    rows, ranks, flops = [], [], []
    for b, budget in enumerate(budgets):
        if one_pass:
            where, searched = "cpu", index
            rank, scanned, measured = all_ranks[b], all_scanned[b], float("nan")
            if timed_queries > 0:  # the timing's warm-up, as the counted search is otherwise
                search_ivf(index, timed, budget, kmax, None, sizes, timed_probe)
        elif kind == "ivf":
            where = "gpu" if on_gpu and budget <= GPU_MAX_NPROBE and kmax <= GPU_MAX_NPROBE else "cpu"
            searched = gpu_index if where == "gpu" else index
            ids, scanned, measured = search_ivf_per_query(index, queries.vectors, budget, kmax,
                                                          searched if where == "gpu" else None,
                                                          sizes, queries.probe)
            rank = target_rank(ids, target)
        else:
            where, searched = "cpu", index
            ids, ndis = search_hnsw(index, queries.vectors, budget, kmax)
            rank, measured = target_rank(ids, target), ndis
            scanned = np.full(len(target), ndis)
        ndis = float(np.mean(scanned))
        per_query = (ivf_flops(index.nlist, scanned, d) if kind == "ivf"
                     else 2.0 * np.asarray(scanned, dtype=np.float64) * d)
        flops_search = float(np.mean(per_query))
        ranks.append(rank)
        flops.append(queries.flops_model + per_query)
        # the counted search above is the timing's warm-up
        seconds = (seconds_per_query(searched, timed, kmax, probe=timed_probe)
                   if timed_queries > 0 else float("nan"))
        row = {"index": kind, **(setup or {}), "query": queries.name, **queries.meta,
               "budget": budget, "seconds_per_query": seconds,
               "ndis_per_query": ndis, "ndis_faiss": measured, "flops_model": queries.flops_model,
               "flops_search": flops_search, "flops_total": queries.flops_model + flops_search,
               "n_queries": len(target), "n_keys": n_keys,
               "nlist": getattr(index, "nlist", ""), "faiss_device": where,
               "faiss_threads": faiss.omp_get_max_threads(),
               "evaluator": "all_nprobe" if one_pass else ("faiss" if kind == "ivf" else "")}
        row.update(rank_metrics(rank, ks, returned=kmax))
        rows.append(row)
    if questions is not None:
        held_out = None
        if kind == "ivf" and validation is not None:
            val_queries, val_target = validation
            val_ranks, val_scanned = all_nprobe_ranks(index, val_queries.vectors, val_target,
                                                      budgets, pass_device, val_queries.probe)
            val_ranks = np.where(val_ranks <= kmax, val_ranks, np.inf)  # as the search returns
            held_out = (val_ranks, val_queries.flops_model + ivf_flops(index.nlist, val_scanned, d))
        questions.append((rows, ranks, flops, held_out))
    return rows


def load_split(dataset_dir: str | Path, split: str = "test"
               ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(queries of a split, their exact global top-1, n_keys, d) from the c = 1 targets."""
    files = DatasetFiles(dataset_dir)
    keys = load_embeddings(files.keys, mmap=True, check=False)
    queries = load_embeddings(files.split_queries(1, split))
    top1 = load_index_array(files.split_top1(1, split), upper=len(keys), ndim=2)
    return queries, top1[:, 0], len(keys), keys.shape[1]


def query_sets(queries: np.ndarray, mapper: KeyMapper | None, probe_mapped: bool
               ) -> list[QuerySet]:
    """The query sets of one sweep job: natural (no model), or mapped and, with
    `probe_mapped`, probe-with-ŷ (a model)."""
    natural = natural_queries(queries)
    if mapper is None:
        return [natural]
    mapped = mapper(queries)
    return [mapped, probe_mapped_queries(natural, mapped)] if probe_mapped else [mapped]


def evaluate_indexes(dataset_dir: str | Path, index_dir: str | Path, *, ivf_budgets: list[int],
                     hnsw_budgets: list[int], ks: list[int], model_path: str | Path | None,
                     device: torch.device, faiss_device: str = "cpu",
                     timed_queries: int = TIMED_QUERIES,
                     quantizers: tuple[str, ...] = (PAPER_QUANTIZER,),
                     nlist_multiples: tuple[float, ...] = (1.0,),
                     evaluator: str = "faiss", probe_mapped: bool = False,
                     questions: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Natural (model_path None) or mapped (and probe_mapped) rows for the IVF and HNSW indexes
    of a dataset: the paper's IVF, its variants of quantizers × nlist_multiples, and HNSW when
    efSearch is swept.

    `faiss_device` (auto, cpu, gpu) and `evaluator` (auto, faiss, all_nprobe) are settings,
    resolved here; `questions` receives every curve's per-question arrays (curve_questions),
    an IVF's validation questions included.
    """
    faiss_device = resolve_faiss_device(faiss_device)
    evaluator = resolve_evaluator(evaluator, ivf_budgets, faiss_device)
    queries, target, n_keys, d = load_split(dataset_dir)
    indexes = ivf_indexes(index_dir, list(quantizers), list(nlist_multiples))
    mapper = None if model_path is None else KeyMapper.load(model_path, n_keys, device)
    sets = query_sets(queries, mapper, probe_mapped)
    validation = None
    if questions is not None:
        val_queries, val_target, _, _ = load_split(dataset_dir, "val")
        validation = [(v, val_target) for v in query_sets(val_queries, mapper, probe_mapped)]
    rows, curves = [], []
    for built in indexes:
        ivf = read_index(Path(index_dir) / built["file"],
                         "index" if built["paper_setup"] else "ivf_variant")
        if ivf.ntotal != n_keys:
            raise InputError(f"{index_dir}/{built['file']} holds {ivf.ntotal} keys, the dataset "
                             f"has {n_keys}")
        bad = [p for p in ivf_budgets if p > ivf.nlist]
        if bad:
            raise InputError(f"ivf.nprobe: {bad[0]} is larger than nlist = {ivf.nlist} "
                             f"({index_dir}/{built['file']})")
        setup = {"quantizer": built["quantizer"], "paper_setup": built["paper_setup"]}
        for i, qs in enumerate(sets):
            rows += sweep(ivf, "ivf", qs, target, ivf_budgets, ks, d, n_keys, faiss_device, setup,
                          timed_queries, evaluator, curves,
                          validation[i] if validation else None)
    if hnsw_budgets:
        hnsw = read_index(Path(index_dir) / "hnsw.faiss", rule="hnsw_index")
        built = Path(index_dir) / "hnsw.json"  # index folders made before the HNSW stage: the manifest
        built = load_json(built) if built.is_file() else indexes[0]
        setup = {"quantizer": "", "paper_setup": False,
                 "hnsw_ef_construction": built.get("hnsw_ef_construction", ""),
                 "hnsw_m": built.get("hnsw_m", "")}
        rows += sweep(hnsw, "hnsw", sets[0], target, hnsw_budgets, ks, d, n_keys, setup=setup,
                      timed_queries=timed_queries, questions=curves)
    for row in rows:
        row["dataset"] = Path(dataset_dir).name
        row["device"] = device_name(device)
    if questions is not None:
        for curve in curves:
            questions.update(curve_questions(*curve))
    return rows
