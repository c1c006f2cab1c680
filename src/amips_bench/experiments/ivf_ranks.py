"""Every nprobe of an IVF-Flat sweep from one exact score pass.

An inner-product IndexIVFFlat searched at nprobe scans the keys of the nprobe lists whose
centroids score highest with the query and returns them ranked by their exact inner product.
So the rank of the target y* at every nprobe follows from one pass: rank each query's lists by
the quantizer, score the query against every key (tiled GEMM, never an [N, n] matrix), count per
list the keys that outscore y*, and accumulate the counts in the query's list order. y* is found
at nprobe p when its own list is among the first p, at rank 1 + the keys of the first p lists
that outscore it. Cost per query at nprobe p: 2·d·(nlist + the sizes of the first p lists), the
count `ivf.sweep` reads from the index for a FAISS search (faiss_backend.ivf_scanned_codes).
The lists may be chosen by other vectors than the ones that score the keys (`probe`): the
"probe with ŷ, rank with x" mode, where the predicted key picks the lists and the question
ranks their keys.

Scores are computed in float64 and a key ties with y* only when it scores exactly the same
(FAISS, in float32, may order keys within about 1e-6 of each other differently; a test checks
the metrics equal FAISS's on random data). FAISS stays the source of timed seconds per query.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

from ..core.errors import InputError

#: keys scored per block: the [N, block] score tile is the largest array held
KEY_BLOCK = 65_536


def ivf_layout(index: faiss.IndexIVF) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroids [nlist, d], list of every key id [ntotal], key vectors [ntotal, d]) read
    from an IVF-Flat index."""
    if not isinstance(index, faiss.IndexIVFFlat) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise InputError("ivf.evaluator all_nprobe: needs an inner-product IndexIVFFlat")
    centroids = index.quantizer.reconstruct_n(0, index.nlist)
    invlists = index.invlists
    owner = np.empty(index.ntotal, dtype=np.int64)
    vectors = np.empty((index.ntotal, index.d), dtype=np.float32)
    for lst in range(index.nlist):
        size = invlists.list_size(lst)
        if not size:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy()
        codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * index.code_size)
        owner[ids] = lst
        vectors[ids] = np.frombuffer(codes, dtype=np.float32).reshape(size, index.d)
    return centroids, owner, vectors


#: evaluators of an IVF sweep: FAISS searches at every nprobe, or this module's one pass; auto
#: takes the pass for a long sweep (more than LONG_SWEEP budgets) or where FAISS cannot use the
#: GPU torch has, and FAISS otherwise
EVALUATORS = ("auto", "faiss", "all_nprobe")
LONG_SWEEP = 8


def resolve_evaluator(evaluator: str, budgets: list[int], faiss_device: str) -> str:
    if evaluator not in EVALUATORS:
        raise InputError(f"ivf.evaluator: unknown evaluator {evaluator!r}; expected one of {EVALUATORS}")
    if evaluator != "auto":
        return evaluator
    gpu_without_faiss = torch.cuda.is_available() and faiss_device != "gpu"
    return "all_nprobe" if len(budgets) > LONG_SWEEP or gpu_without_faiss else "faiss"


def all_nprobe_ranks(index: faiss.IndexIVF, queries: np.ndarray, target: np.ndarray,
                     nprobes: list[int], device: torch.device | str = "cpu",
                     probe: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per nprobe and query: the rank of y* among the keys the search scans (inf where its list
    is not probed) and the number of keys scanned, [len(nprobes), N] each, from one pass over
    the keys (its GEMMs on `device`). `probe` (default: the queries) chooses the lists."""
    if max(nprobes) > index.nlist or min(nprobes) < 1:
        raise InputError(f"ivf.nprobe: values must lie in [1, nlist = {index.nlist}], got {nprobes}")
    centroids, owner, keys = ivf_layout(index)
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float64)).to(device)
    chooser = q if probe is None else torch.from_numpy(
        np.ascontiguousarray(probe, dtype=np.float64)).to(device)
    coarse = chooser @ torch.from_numpy(centroids.astype(np.float64)).to(device).T  # [N, nlist]
    order = torch.argsort(-coarse, dim=1, stable=True)  # the lists in probing order
    position = torch.empty_like(order)
    position.scatter_(1, order, torch.arange(index.nlist, device=device).expand_as(order))
    target = torch.from_numpy(np.asarray(target, dtype=np.int64)).to(device)
    y_star = torch.from_numpy(keys[target.cpu().numpy()].astype(np.float64)).to(device)
    s_target = (q * y_star).sum(1)
    above = torch.zeros(len(q), index.nlist, dtype=torch.float64, device=device)  # keys outscoring y*
    owner_t = torch.from_numpy(owner).to(device)
    rows_ = torch.arange(len(q), device=device)
    for start in range(0, len(keys), KEY_BLOCK):
        block = torch.from_numpy(keys[start:start + KEY_BLOCK].astype(np.float64)).to(device)
        beats = (q @ block.T > s_target[:, None]).to(torch.float64)
        own = (target >= start) & (target < start + len(block))  # y* never outscores itself,
        beats[rows_[own], target[own] - start] = 0.0  # whatever the GEMM's rounding
        above.index_add_(1, owner_t[start:start + KEY_BLOCK], beats)
    sizes = torch.bincount(owner_t, minlength=index.nlist).to(torch.float64)
    in_order = torch.gather(above, 1, order).cumsum(1)  # outscoring keys in the first p lists
    scanned = torch.gather(sizes.expand(len(q), -1), 1, order).cumsum(1)
    target_position = torch.gather(position, 1, owner_t[target][:, None])[:, 0]
    columns = torch.tensor([p - 1 for p in nprobes], device=device)
    found = target_position[:, None] <= columns[None, :]
    rank = torch.where(found, in_order[:, columns] + 1, torch.full_like(in_order[:, columns], np.inf))
    return rank.T.cpu().numpy(), scanned[:, columns].T.cpu().numpy()


def rank_metrics(rank: np.ndarray, ks: list[int], returned: int | None = None) -> dict[str, float]:
    """Recall@k and MRR of y* from its rank per query (inf: not found); a rank beyond the
    `returned` results of a search counts as not found for the MRR, and recall@k is NaN for a
    k beyond them."""
    returned = max(ks) if returned is None else returned
    rank = np.asarray(rank, dtype=np.float64)
    out = {f"recall@{k}": float((rank <= k).mean()) if k <= returned else float("nan") for k in ks}
    out["mrr"] = float(np.where(rank <= returned, 1.0 / rank, 0.0).mean())
    return out


def all_nprobe_metrics(index: faiss.IndexIVF, queries: np.ndarray, target: np.ndarray,
                       nprobes: list[int], ks: list[int],
                       device: torch.device | str = "cpu") -> list[dict[str, float]]:
    """Per nprobe: recall@k and MRR of y* (as `ivf.recall_and_mrr` of a search returning
    max(ks) ids) and the scanned codes per query, all from one pass over the keys."""
    rank, scanned = all_nprobe_ranks(index, queries, target, nprobes, device)
    return [{**rank_metrics(r, ks), "ndis_per_query": float(s.mean())} for r, s in zip(rank, scanned)]
