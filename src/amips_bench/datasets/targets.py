"""Exact per-cluster top-1 keys: the supervision targets of both models (paper §3.3).

Streaming over key blocks with a running argmax keeps memory at O(n·d + query_block·key_block):
no [N, n] score matrix is ever formed. On the CPU, blocks of 4096 queries × 2048 keys keep each
score tile (32 MiB) close to the cache, which is what lets a plain GEMM + max match FAISS's flat
index; on a GPU, tiles of 16384 × 16384 (1 GiB) keep the GEMM large enough to fill the device.
Products are exact float32 on every device: TF32 is switched off for the duration, and the
running argmax is updated with `torch.where` (no boolean indexing), so a GPU never waits for the
host inside a block.

Ties are broken towards the lowest global key index: keys are visited cluster by cluster in
ascending index order, `torch.max` returns the first maximum inside a tile, and a later tile
replaces the running best only when strictly larger.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core import devices
from ..core.devices import pick_device
from ..core.disk import require_free, target_file_bytes
from ..core.errors import InputError
from ..core.runs import split_mode_named
from ..core.storage import (
    load_embeddings,
    load_index_array,
    load_json,
    npy_row_writer,
    save_json,
    sha256_file,
    share_files,
)
from .splits import NOISE_BLOCK, SPLIT_NAMES, SplitPlan, load_plan, materialized_blocks


@dataclass(frozen=True)
class ClusterLayout:
    """Keys regrouped so that every cluster is a contiguous run in ascending global index."""

    order: np.ndarray  # int64 [n]: global key index at each sorted position
    offsets: np.ndarray  # int64 [C + 1]: cluster j occupies order[offsets[j]:offsets[j+1]]

    @classmethod
    def from_assignments(cls, assignments: np.ndarray | None, n_keys: int,
                         n_clusters: int) -> ClusterLayout:
        if assignments is None or n_clusters == 1:
            if n_clusters != 1:
                raise InputError(f"clusters: {n_clusters} clusters need an assignments array")
            return cls(np.arange(n_keys, dtype=np.int64), np.array([0, n_keys], dtype=np.int64))
        assignments = np.asarray(assignments)
        if assignments.shape != (n_keys,):
            raise InputError(f"assignments: shape {assignments.shape} does not match {n_keys} keys")
        if assignments.min() < 0 or assignments.max() >= n_clusters:
            raise InputError(f"assignments: cluster ids must lie in [0, {n_clusters})")
        order = np.argsort(assignments, kind="stable").astype(np.int64)
        counts = np.bincount(assignments, minlength=n_clusters)
        if (counts == 0).any():
            raise InputError(f"assignments: cluster {int(np.flatnonzero(counts == 0)[0])} is empty")
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(order, offsets)

    @property
    def n_clusters(self) -> int:
        return len(self.offsets) - 1

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


@contextlib.contextmanager
def cuda_matmul_mode(mode: str):
    """Float32 matmuls on CUDA as 'ieee' (exact float32) or 'tf32' inside the block.

    Uses torch's per-backend setting where it exists (torch >= 2.9, which refuses to mix it
    with the legacy flag) and the legacy allow_tf32 flag otherwise; restored on exit.
    """
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        previous = matmul.fp32_precision
        matmul.fp32_precision = mode
        try:
            yield
        finally:
            matmul.fp32_precision = previous
        return
    previous = matmul.allow_tf32
    matmul.allow_tf32 = mode == "tf32"
    try:
        yield
    finally:
        matmul.allow_tf32 = previous


def full_fp32_matmul():
    """IEEE float32 matrix products (no TF32) inside the block, whatever the caller set."""
    return cuda_matmul_mode("ieee")


BLOCKS = {"cpu": (4096, 2048), "cuda": (16384, 16384)}  # (query_block, key_block) per device type


class ExactTop1:
    """Exact maximum inner product per cluster against fixed keys, prepared once.

    The keys are regrouped by cluster and moved to the device when the object is made, so a
    stream of query chunks (the targets stage) pays for that once. Calling it with queries
    returns (scores float32 [N, C], indices int64 [N, C]) where indices are global key indices
    (rows of `keys`); `queries` may be a memory map, read one block at a time. Block sizes
    default to the device's entry in BLOCKS.
    """

    def __init__(self, keys: np.ndarray, assignments: np.ndarray | None = None,
                 n_clusters: int = 1, *, query_block: int | None = None,
                 key_block: int | None = None, device: str | torch.device | None = None) -> None:
        if keys.ndim != 2:
            raise InputError("exact_top1: queries and keys must be 2-D arrays")
        if len(keys) == 0:
            raise InputError("exact_top1: the key array is empty")
        self.device = pick_device(device)
        default_q, default_k = BLOCKS.get(self.device.type, BLOCKS["cpu"])
        self.query_block, self.key_block = query_block or default_q, key_block or default_k
        self.layout = ClusterLayout.from_assignments(assignments, len(keys), n_clusters)
        sorted_keys = keys if n_clusters == 1 else np.asarray(keys)[self.layout.order]
        self.keys = torch.from_numpy(np.ascontiguousarray(sorted_keys, dtype=np.float32)).to(self.device)
        self.order = torch.from_numpy(self.layout.order).to(self.device)
        self.d = keys.shape[1]
        self._tile: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, queries: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if queries.ndim != 2:
            raise InputError("exact_top1: queries and keys must be 2-D arrays")
        if queries.shape[1] != self.d:
            raise InputError(f"exact_top1: query dimension {queries.shape[1]} does not match key "
                             f"dimension {self.d}")
        n_queries = len(queries)
        n_clusters = self.layout.n_clusters
        best_scores = np.empty((n_queries, n_clusters), dtype=np.float32)
        best_index = np.empty((n_queries, n_clusters), dtype=np.int64)
        tile_size = (max(1, min(self.query_block, n_queries))
                     * min(self.key_block, int(self.layout.sizes().max())))
        if self._tile is None or self._tile.numel() < tile_size:
            self._tile = torch.empty(tile_size, device=self.device)  # reused score tile
        blocks = range(0, n_queries, self.query_block)
        with full_fp32_matmul():
            for start in tqdm(blocks, desc="exact top-1", unit="block", disable=not progress,
                              mininterval=10):
                q = torch.from_numpy(np.ascontiguousarray(queries[start:start + self.query_block],
                                                          dtype=np.float32)).to(self.device)
                scores, positions = _blocked_argmax(q, self.keys, self.layout.offsets, self._tile,
                                                    self.key_block)
                best_scores[start:start + len(q)] = scores.cpu().numpy()
                best_index[start:start + len(q)] = self.order[positions].cpu().numpy()
        return best_scores, best_index


def exact_top1(queries: np.ndarray, keys: np.ndarray, assignments: np.ndarray | None = None,
               n_clusters: int = 1, *, query_block: int | None = None,
               key_block: int | None = None, device: str | torch.device | None = None,
               progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact maximum inner product per cluster (see ExactTop1): (scores [N, C], indices [N, C])."""
    if queries.ndim != 2 or keys.ndim != 2:
        raise InputError("exact_top1: queries and keys must be 2-D arrays")
    if queries.shape[1] != keys.shape[1]:
        raise InputError(f"exact_top1: query dimension {queries.shape[1]} does not match key "
                         f"dimension {keys.shape[1]}")
    search = ExactTop1(keys, assignments, n_clusters, query_block=query_block,
                       key_block=key_block, device=device)
    return search(queries, progress)


def _blocked_argmax(q: torch.Tensor, keys: torch.Tensor, offsets: np.ndarray,
                    tile: torch.Tensor, key_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Running max over key tiles, per cluster segment; returns sorted-order positions."""
    n_q = q.shape[0]
    n_clusters = len(offsets) - 1
    best = torch.full((n_q, n_clusters), -torch.inf, device=q.device)
    where = torch.zeros((n_q, n_clusters), dtype=torch.int64, device=q.device)
    value = torch.empty(n_q, device=q.device)
    arg = torch.empty(n_q, dtype=torch.int64, device=q.device)
    for j in range(n_clusters):
        lo, hi = int(offsets[j]), int(offsets[j + 1])
        col_best = torch.full((n_q,), -torch.inf, device=q.device)
        col_where = torch.zeros(n_q, dtype=torch.int64, device=q.device)
        for k0 in range(lo, hi, key_block):
            k1 = min(k0 + key_block, hi)
            scores = tile[:n_q * (k1 - k0)].view(n_q, k1 - k0)
            torch.mm(q, keys[k0:k1].T, out=scores)
            torch.max(scores, dim=1, out=(value, arg))
            better = value > col_best  # strictly larger: ties keep the earlier (lower) index
            col_where = torch.where(better, arg + k0, col_where)
            col_best = torch.where(better, value, col_best)
        best[:, j], where[:, j] = col_best, col_where
    return best, where


#: the targets stage's settings: the exact float32 search, the certified bf16 one, or (auto) bf16
#: where the hardware has bf16 matrix units (a CPU listing amx_bf16 or avx512_bf16, a GPU of
#: compute capability 8 or more) and float32 elsewhere
TARGET_PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32 or bf16: the targets search a setting of TARGET_PRECISIONS runs on `device`."""
    if precision not in TARGET_PRECISIONS:
        raise InputError(f"targets.precision: unknown precision {precision!r}; expected one of "
                         f"{list(TARGET_PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp32"
    return "bf16" if devices.cpu_has_bf16_units() else "fp32"


def write_targets(embeddings_dir: str | Path, splits_dir: str | Path, out_dir: str | Path, *,
                  n_clusters: int, clusters_dir: str | Path | None = None,
                  splits: tuple[str, ...] = ("train", "val", "test"),
                  device: str | None = None, faiss_device: str = "auto",
                  queries_from: str | Path | None = None, disk_margin: float | None = 0.1,
                  chunk_blocks: int = 4, progress: bool = True,
                  reuse_from: str | Path | None = None, reuse_splits: str | Path | None = None,
                  precision: str = "fp32") -> dict:
    """targets/c{C}/{split}_queries.npy and {split}_top1.npy for every split, plus a manifest.

    Both files are streamed: chunks of `chunk_blocks` noise blocks (65,536 rows each) are
    materialised, searched and appended, so memory stays flat however many (augmented)
    training rows there are; the files are byte-identical to building them whole (test).

    The queries of a split are the same for every cluster count. With `queries_from` (the
    targets/c1 folder of the same splits) they are not written again: each chunk is checked
    equal to that folder's rows and {split}_queries.npy becomes a relative link to its file,
    which halves the disk of a dataset trained at c = 1 and c = 10 (the training queries are
    the bulk of it).

    The manifest records the checksums of the keys and of the cluster assignments the targets
    were computed against, so later stages can refuse to mix files from different runs.

    With `reuse_from` and `reuse_splits` (the targets/c{C} and splits folders of a twin dataset:
    the same keys, clusters, questions and noise, another split mode) a row the twin holds
    takes its top-1 from there (`TwinTargets`); only the others are searched.

    Before any search, the files' size (`targets_bytes`) plus `disk_margin` of it must be free
    under `out_dir` (None: no check): a short disk fails now, not after hours of search.

    `precision` (TARGET_PRECISIONS) picks the search: ExactTop1 in float32, or CertifiedTop1
    with bf16 products, whose answers are the float32 path's index for index; the manifest
    records the setting, the search it ran and the fraction of rows certified.
    """
    embeddings_dir, splits_dir, out = Path(embeddings_dir), Path(splits_dir), Path(out_dir)
    keys = load_embeddings(embeddings_dir / "keys.npy")
    queries = load_embeddings(embeddings_dir / "queries.npy", mmap=True, d=keys.shape[1])
    split_manifest = load_json(splits_dir / "manifest.json")
    if split_manifest.get("queries_sha256") != sha256_file(embeddings_dir / "queries.npy"):
        raise InputError(f"{splits_dir / 'manifest.json'}: splits were made from a different "
                         f"{embeddings_dir / 'queries.npy'}; re-run the split stage")
    assignments, assignments_sha = None, None
    if n_clusters > 1:
        if clusters_dir is None:
            raise InputError(f"targets: {n_clusters} clusters need a clusters directory")
        assignments_path = Path(clusters_dir) / "assignments.npy"
        assignments = load_index_array(assignments_path, upper=n_clusters)
        if len(assignments) != len(keys):
            raise InputError(f"{assignments_path}: {len(assignments)} assignments for {len(keys)} keys")
        assignments_sha = sha256_file(assignments_path)
    plans = {split: load_plan(splits_dir, split, len(queries)) for split in splits}
    need = targets_bytes({split: len(plan.source) for split, plan in plans.items()},
                         d=keys.shape[1], n_clusters=n_clusters,
                         queries_linked=queries_from is not None)
    checked = require_free(out, need, disk_margin, f"the targets of {', '.join(splits)}")
    if checked:
        print(checked, flush=True)
    resolved = resolve_precision(precision, pick_device(device))
    search = (CertifiedTop1(keys, assignments, n_clusters, precision=resolved, device=device)
              if resolved != "fp32" else ExactTop1(keys, assignments, n_clusters, device=device))
    twin = None
    if (reuse_from is None) != (reuse_splits is None):
        raise InputError("targets: --reuse-from and --reuse-splits go together")
    if reuse_from is not None:
        twin = TwinTargets(reuse_from, reuse_splits, len(queries),
                           keys_sha256=sha256_file(embeddings_dir / "keys.npy"),
                           assignments_sha256=assignments_sha, sigma=split_manifest["sigma"],
                           seed=split_manifest["seed"])
    rows, reused = {}, {}
    for split, plan in plans.items():
        same = Path(queries_from) / f"{split}_queries.npy" if queries_from else None
        rows[split], reused[split] = stream_split_targets(
            queries, plan, search, out, split, sigma=split_manifest["sigma"],
            seed=split_manifest["seed"], chunk_blocks=chunk_blocks, progress=progress,
            same_queries=same, twin=twin)
    manifest = {
        "n_clusters": n_clusters, "n_keys": len(keys), "d": int(keys.shape[1]), "rows": rows,
        "keys_sha256": sha256_file(embeddings_dir / "keys.npy"),
        "assignments_sha256": assignments_sha, "split_mode": split_mode_named(split_manifest["mode"]),
        "leaky": split_manifest["leaky"], "device": str(search.device),
        "search": ("torch GEMM + running argmax on `device` (fp32, tf32 off); FAISS not used"
                   if resolved == "fp32" else
                   f"{resolved} GEMM + running top-{CANDIDATES + 1}, candidates rescored in float64, "
                   f"certified against the fp32 path's error (uncertified rows: the fp32 search); "
                   f"FAISS not used"),
        "precision": {"setting": precision, "used": resolved,
                      **({"rows_searched": search.rows, "rows_certified": search.certified_rows,
                          "certified_fraction": (search.certified_rows / search.rows
                                                 if search.rows else None)}
                         if resolved != "fp32" else {})},
        "faiss_device_setting": faiss_device, "tie_break": "lowest global key index",
        "queries_files": (f"linked to {queries_from}, checked equal row for row"
                          if queries_from else "written here"),
        **({"reused_from": str(reuse_from), "reused_rows": reused} if twin is not None else {}),
    }
    save_json(out / "manifest.json", manifest)
    return manifest


def targets_bytes(rows: dict[str, int], *, d: int, n_clusters: int, queries_linked: bool) -> int:
    """What write_targets writes for splits of these row counts: each split's top-1 file and,
    unless they are links to c1's, its queries."""
    return sum(target_file_bytes("top1", n, d, n_clusters)
               + (0 if queries_linked else target_file_bytes("queries", n, d, n_clusters))
               for n in rows.values())


#: (question, copy) as one int64 key: question · COPY_KEY + copy (augment factors stay below it)
COPY_KEY = 1 << 20


class TwinTargets:
    """The targets a twin dataset already computed (the same keys, clusters, questions and
    noise, another split mode), looked up by (question, copy): a row both datasets hold is the
    same vector (splits.copy_noise), so its exact top-1 is copied instead of searched again."""

    def __init__(self, targets_dir: str | Path, splits_dir: str | Path, n_queries: int, *,
                 keys_sha256: str, assignments_sha256: str | None, sigma: float, seed: int):
        targets_dir, splits_dir = Path(targets_dir), Path(splits_dir)
        manifest = load_json(targets_dir / "manifest.json")
        split_manifest = load_json(splits_dir / "manifest.json")
        for what, theirs, ours in (("keys_sha256", manifest.get("keys_sha256"), keys_sha256),
                                   ("assignments_sha256", manifest.get("assignments_sha256"),
                                    assignments_sha256),
                                   ("sigma", split_manifest.get("sigma"), sigma),
                                   ("seed", split_manifest.get("seed"), seed)):
            if theirs != ours:
                raise InputError(f"{targets_dir}: its {what} differs from this dataset's; its "
                                 f"targets cannot be reused here")
        keys, top1 = [], []
        for split in SPLIT_NAMES:
            plan = load_plan(splits_dir, split, n_queries)
            keys.append(np.asarray(plan.source) * COPY_KEY + np.asarray(plan.copy))
            top1.append(load_index_array(targets_dir / f"{split}_top1.npy", ndim=2))
        keys_all = np.concatenate(keys)
        self.order = np.argsort(keys_all, kind="stable")
        self.sorted_keys = keys_all[self.order]
        self.top1 = np.concatenate(top1)
        self.source = targets_dir

    def lookup(self, sources: np.ndarray, copies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found bool [N], top-1 [found, C]) of these (question, copy) rows."""
        want = np.asarray(sources, dtype=np.int64) * COPY_KEY + np.asarray(copies, dtype=np.int64)
        at = np.searchsorted(self.sorted_keys, want)
        at = np.minimum(at, len(self.sorted_keys) - 1)
        found = self.sorted_keys[at] == want
        return found, self.top1[self.order[at[found]]]


def stream_split_targets(queries: np.ndarray, plan: SplitPlan, search: ExactTop1, out: Path,
                         split: str, *, sigma: float, seed: int, chunk_blocks: int = 4,
                         progress: bool = False, same_queries: Path | None = None,
                         twin: TwinTargets | None = None) -> tuple[int, int]:
    """Write {split}_queries.npy and {split}_top1.npy chunk by chunk; returns (rows, rows whose
    top-1 came from `twin` instead of a search). With `same_queries` (an earlier
    {split}_queries.npy of the same split) every chunk must equal its rows, and the queries
    file is a link to it instead of a second copy."""
    n_rows, d, n_clusters = len(plan.source), queries.shape[1], search.layout.n_clusters
    n_blocks = -(-n_rows // NOISE_BLOCK)
    same, reused = None, 0
    if same_queries is not None:
        same = load_embeddings(same_queries, mmap=True, d=d)
        if len(same) != n_rows:
            raise InputError(f"{same_queries}: {len(same)} rows but the {split} split has "
                             f"{n_rows}; re-run the targets stage that wrote it")
    with contextlib.ExitStack() as files:
        add_queries = (None if same is not None else files.enter_context(
            npy_row_writer(out / f"{split}_queries.npy", n_rows, d, "float32")))
        add_top1 = files.enter_context(
            npy_row_writer(out / f"{split}_top1.npy", n_rows, n_clusters, "int64"))
        buffer = np.empty((min(n_rows, chunk_blocks * NOISE_BLOCK), d), dtype=np.float32)
        for first in range(0, n_blocks, chunk_blocks):
            filled = 0
            for _, rows in materialized_blocks(queries, plan, sigma=sigma, seed=seed,
                                               split=split, first_block=first,
                                               n_blocks=chunk_blocks):
                buffer[filled:filled + len(rows)] = rows
                filled += len(rows)
            chunk = buffer[:filled]
            start = first * NOISE_BLOCK
            if twin is None:
                _, top1 = search(chunk, progress=progress and n_blocks <= chunk_blocks)
            else:
                found, known = twin.lookup(plan.source[start:start + filled],
                                           plan.copy[start:start + filled])
                top1 = np.empty((filled, n_clusters), dtype=np.int64)
                top1[found] = known
                if not found.all():
                    top1[~found] = search(chunk[~found], progress=False)[1]
                reused += int(found.sum())
            if same is None:
                add_queries(chunk)
            else:
                if not np.array_equal(chunk, same[start:start + filled]):
                    raise InputError(f"{same_queries}: rows {start} to {start + filled} differ "
                                     f"from the {split} split's queries; re-run the targets stage "
                                     f"that wrote it")
            add_top1(top1)
    if same_queries is not None:
        share_files([same_queries], out)
    return n_rows, reused


#: unit roundoff of each reduced precision's inputs (bf16: 8 significant bits; tf32: 11)
UNIT_ROUNDOFF = {"bf16": 2.0 ** -8, "tf32": 2.0 ** -11}
FLOAT32_ROUNDOFF = 2.0 ** -24
#: the hardware model of a GPU's reduced-precision products: its tensor cores may truncate
#: instead of rounding to nearest, both the inputs (TF32) and the float32 accumulation; a
#: truncation errs by up to twice the unit roundoff, so every roundoff of the bound is doubled
#: there (an assumption that covers round-toward-zero, not a vendor's guarantee)
GPU_ROUNDOFF_FACTOR = 2.0
CANDIDATES = 8  # keys per row and cluster rescored exactly


def reduced_score_bound(precision: str, d: int, norm: float = 1.0, *,
                        rounded_output: bool = False, factor: float = 1.0) -> float:
    """|reduced − real| of one inner product of two vectors of norm ≤ `norm` in dimension d:
    rounding both inputs to the precision moves each product by at most (2u + u²)·|q_i k_i|,
    and float32 accumulation adds γ_d = d·u32 / (1 − d·u32) of the sum of |products|; by
    Cauchy–Schwarz both sums are at most norm². With `rounded_output` (a bf16 matmul returns
    bf16) the score is rounded once more, by at most u·(|s| + that error) ≤ u·(norm² + error).
    `factor` scales every unit roundoff (GPU_ROUNDOFF_FACTOR on a GPU)."""
    u, u32 = factor * UNIT_ROUNDOFF[precision], factor * FLOAT32_ROUNDOFF
    gamma = d * u32 / (1 - d * u32)
    error = ((2 * u + u * u) + gamma * (1 + u) ** 2) * norm * norm
    return error + u * (norm * norm + error) if rounded_output else error


def fp32_score_bound(d: int, norm: float = 1.0) -> float:
    """|fp32 − real| of one inner product on the CPU's float32 path (round to nearest)."""
    u32 = FLOAT32_ROUNDOFF
    return d * u32 / (1 - d * u32) * norm * norm


#: keys per group of the two-level selection of `block_top`
SELECTION_GROUP = 128


def block_top(scores: torch.Tensor, k: int, group: int = SELECTION_GROUP
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, columns) of the k largest scores of each row [N, W], the k-th of them an upper
    bound of every other score of the row. Two levels where the row is long: the maximum of
    each group of `group` columns, the k groups of largest maximum, then the k best of their
    columns. Sound with ties too: the k chosen groups hold at least k scores of at least the
    smallest chosen group maximum, which bounds every column of every other group, so the k-th
    value returned bounds every score not returned."""
    n, width = scores.shape
    k = min(k, width)
    whole = (width // group) * group
    if whole < 4 * k * group:  # short rows: one selection is as cheap
        return torch.topk(scores, k, dim=1)
    maxima = scores[:, :whole].reshape(n, whole // group, group).amax(dim=2)
    groups = torch.topk(maxima, k, dim=1).indices  # [N, k]
    columns = (groups[:, :, None] * group
               + torch.arange(group, device=scores.device)).reshape(n, k * group)
    if whole < width:  # the columns after the last whole group compete directly
        tail = torch.arange(whole, width, device=scores.device).expand(n, -1)
        columns = torch.cat([columns, tail], dim=1)
    val, at = torch.topk(torch.gather(scores, 1, columns), k, dim=1)
    return val, torch.gather(columns, 1, at)


class CertifiedTop1:
    """The fp32 path's per-cluster top-1 (ExactTop1's answer, index for index), found with
    reduced-precision products and a certificate per row and cluster.

    Per query block and cluster: the `candidates` best keys by the reduced-precision score
    (keys converted once, when the object is made) are rescored in float64 (the real inner
    product, to float64 rounding); the best of them is certified when it beats every other
    candidate by more than twice the fp32 path's error, and the best non-candidate's reduced
    score by more than that score's error bound (`reduced_score_bound`, with the bf16 output's
    own rounding) plus twice the fp32 path's error (the fp32 path errs on both scores it
    compares) — then no key can win the fp32 path's comparison, and the index is the fp32
    path's. The rows of a block with any cluster not certified (near-ties) are searched again
    by the exact float32 path, in one batch. On the CPU the products are IEEE round-to-nearest
    (tf32 emulated by rounding the inputs' mantissas); on a GPU they are the hardware's (bf16
    inputs, or float32 inputs under TF32 matmuls) and the bound assumes GPU_ROUNDOFF_FACTOR.
    Counts of rows searched and rows certified accumulate in `rows` and `certified_rows`.
    """

    def __init__(self, keys: np.ndarray, assignments: np.ndarray | None = None,
                 n_clusters: int = 1, *, precision: str = "bf16", candidates: int = CANDIDATES,
                 query_block: int = 4096, key_block: int = 16384,
                 device: str | torch.device | None = None) -> None:
        if precision not in UNIT_ROUNDOFF:
            raise InputError(f"targets.precision: {precision!r} has no certified search; "
                             f"expected one of {list(UNIT_ROUNDOFF)}")
        self.exact = ExactTop1(keys, assignments, n_clusters, device=device)
        self.layout, self.device, self.d = self.exact.layout, self.exact.device, self.exact.d
        self.precision, self.candidates = precision, candidates
        self.query_block, self.key_block = query_block, key_block
        self.hardware_tf32 = precision == "tf32" and self.device.type == "cuda"
        keys32 = self.exact.keys  # float32, grouped by cluster, on the device
        self.reduced = (keys32.to(torch.bfloat16) if precision == "bf16"
                        else keys32 if self.hardware_tf32 else _tf32_round(keys32))
        self.key_norm = float(keys32.norm(dim=1).max())
        self.factor = GPU_ROUNDOFF_FACTOR if self.device.type == "cuda" else 1.0
        self.rows = self.certified_rows = 0
        self._tile: torch.Tensor | None = None  # the reused score tile
        self.last_certified = np.zeros(0, dtype=bool)  # per row of the last query block

    def _scores(self, qr: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """The reduced-precision scores of a query block against keys [lo, hi), written into
        one reused tile (allocating a fresh output for every block costs as much again as
        the product itself on a CPU)."""
        size = len(qr) * (hi - lo)
        if self._tile is None or self._tile.numel() < size:
            self._tile = torch.empty(len(qr) * self.key_block, dtype=self.reduced.dtype,
                                     device=self.device)
        out = self._tile[:size].view(len(qr), hi - lo)
        if self.precision == "bf16":
            return torch.mm(qr, self.reduced[lo:hi].T, out=out)
        mode = cuda_matmul_mode("tf32") if self.hardware_tf32 else full_fp32_matmul()
        with mode:
            return torch.mm(qr, self.reduced[lo:hi].T, out=out)

    def _segment(self, q32: torch.Tensor, qr: torch.Tensor, lo: int, hi: int,
                 bound: float, fp32: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(best score, sorted position, certified) of one cluster's keys [lo, hi) per row."""
        n = len(q32)
        m = min(self.candidates, hi - lo)
        top_val = torch.full((n, m + 1), -torch.inf, device=self.device)
        top_pos = torch.zeros((n, m + 1), dtype=torch.int64, device=self.device)
        for k0 in range(lo, hi, self.key_block):
            k1 = min(k0 + self.key_block, hi)
            val, pos = block_top(self._scores(qr, k0, k1), m + 1)
            merged_val = torch.cat([top_val, val.float()], 1)
            merged_pos = torch.cat([top_pos, pos + k0], 1)
            val, keep = torch.topk(merged_val, m + 1, dim=1)
            top_val, top_pos = val, torch.gather(merged_pos, 1, keep)
        cand, threshold = top_pos[:, :m], top_val[:, m]  # the best non-candidate's reduced score
        exact = torch.einsum("nd,nmd->nm", q32.double(), self.exact.keys[cand].double())
        order = torch.argsort(cand, dim=1)  # among exact ties the lowest position, as fp32
        exact_sorted, cand_sorted = torch.gather(exact, 1, order), torch.gather(cand, 1, order)
        best = torch.argmax(exact_sorted, dim=1)
        rows = torch.arange(n, device=self.device)
        best_exact = exact_sorted[rows, best]
        others = exact_sorted.clone()
        others[rows, best] = -torch.inf
        certified = ((best_exact - others.max(dim=1).values > 2 * fp32)
                     & (best_exact - threshold.double() > bound + 2 * fp32))
        return best_exact.float(), cand_sorted[rows, best], certified

    @torch.no_grad()
    def __call__(self, queries: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [N, C], global indices int64 [N, C]) as ExactTop1's, the scores
        rescored in float64."""
        n_clusters = self.layout.n_clusters
        scores = np.empty((len(queries), n_clusters), dtype=np.float32)
        index = np.empty((len(queries), n_clusters), dtype=np.int64)
        blocks = range(0, len(queries), self.query_block)
        for start in tqdm(blocks, desc="certified top-1", unit="block", disable=not progress,
                          mininterval=10):
            block = np.ascontiguousarray(queries[start:start + self.query_block], dtype=np.float32)
            q32 = torch.from_numpy(block).to(self.device)
            qr = (q32.to(torch.bfloat16) if self.precision == "bf16" else q32
                  if self.hardware_tf32 else _tf32_round(q32))
            norm = max(float(q32.norm(dim=1).max()), self.key_norm)
            bound = reduced_score_bound(self.precision, self.d, norm,
                                        rounded_output=self.precision == "bf16", factor=self.factor)
            fp32 = fp32_score_bound(self.d, norm)
            certified = torch.ones(len(q32), dtype=torch.bool, device=self.device)
            for j in range(n_clusters):
                lo, hi = int(self.layout.offsets[j]), int(self.layout.offsets[j + 1])
                best, position, sure = self._segment(q32, qr, lo, hi, bound, fp32)
                scores[start:start + len(q32), j] = best.cpu().numpy()
                index[start:start + len(q32), j] = self.exact.order[position].cpu().numpy()
                certified &= sure
            sure = certified.cpu().numpy()
            self.rows += len(sure)
            self.certified_rows += int(sure.sum())
            if not sure.all():  # the near-ties, in one batch, by the exact float32 path
                rows = np.flatnonzero(~sure)
                exact_scores, exact_index = self.exact(block[rows])
                scores[start + rows], index[start + rows] = exact_scores, exact_index
            self.last_certified = sure
        return scores, index


def certified_top1(queries: np.ndarray, keys: np.ndarray, *, precision: str = "bf16",
                   key_block: int = 16384, candidates: int = CANDIDATES,
                   device: str | torch.device | None = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The fp32 path's top-1 key of each query (c = 1) by `CertifiedTop1`: (top-1 global index
    int64 [N], certified bool [N])."""
    search = CertifiedTop1(keys, precision=precision, candidates=candidates, key_block=key_block,
                           query_block=max(1, len(queries)), device=device)
    _, index = search(queries)
    return index[:, 0], search.last_certified


def _tf32_round(x: torch.Tensor) -> torch.Tensor:
    """float32 values rounded to tf32's 10 stored mantissa bits (round to nearest even)."""
    bits = x.contiguous().view(torch.int32)
    rounded = (bits + 0x0FFF + ((bits >> 13) & 1)) & ~0x1FFF
    return rounded.view(torch.float32)
