"""Rows of arrays too large to hold, streamed to training: read by system call a row at a time
(`NpyRows`), shared among reader processes (`ParallelRows`), sampled per epoch
(`EpochSampler`) and gathered one step ahead (`StreamedBatches`)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError

_LIBC = None  # libc handle, loaded on first use


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc malloc_trim).

    A training step allocates and frees the same few MB-sized tensors; glibc's adaptive mmap
    threshold then serves them from the heap, which fragments and grows by megabytes per
    step on CPU (1.8 GB after 600 KeyNet steps). Trimming every few dozen steps keeps the
    resident memory flat for a few percent of time. A no-op where glibc is absent.
    """
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 - probe that the symbol exists
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


class NpyRows:
    """Rows of a 2-D .npy file read with pread, never memory-mapped.

    Large training sets are read this way so that the pages of the file stay in the kernel's
    page cache and out of this process's resident memory (a memory map's touched pages count
    as resident), which keeps memory flat however many rows the file has.
    """

    def __init__(self, path: str | os.PathLike, *, dtype: str, ncols: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: file not found")
        with open(self.path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, found = read_header(fh)
            except ValueError as exc:
                raise InputError(f"{self.path}: not a readable .npy file ({exc})") from None
            self.offset = fh.tell()
        if found != np.dtype(dtype) or fortran or len(shape) != 2:
            raise InputError(f"{self.path}: expected a C-ordered 2-D {dtype} array, found "
                             f"{found} of shape {shape}")
        if ncols is not None and shape[1] != ncols:
            raise InputError(f"{self.path}: {shape[1]} columns, expected {ncols}")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) in one read."""
        stop = min(stop, self.shape[0])
        out = np.empty((max(0, stop - start), self.shape[1]), dtype=self.dtype)
        view, done = memoryview(out).cast("B"), 0
        while done < len(view):  # straight into the array: no intermediate bytes object
            got = os.preadv(self._fd, [view[done:]], self.offset + start * self.row_bytes + done)
            if got == 0:
                raise InputError(f"{self.path}: file ends before row {stop}")
            done += got
        return out

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows at `index` (any order, repeats allowed), in that order."""
        out = np.empty((len(index), self.shape[1]), dtype=self.dtype)
        self.read_into(index, out)
        return out

    def read_into(self, index: np.ndarray, out: np.ndarray) -> None:
        """Rows at `index` into `out` (a C-ordered array of len(index) rows), one system call
        per row straight into place: no intermediate bytes object, so the Python work per row
        is small next to the call itself."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) and (index.min() < 0 or index.max() >= self.shape[0]):
            raise InputError(f"{self.path}: row indices must lie in [0, {self.shape[0]}), found "
                             f"[{index.min()}, {index.max()}]")
        buffer = memoryview(out.reshape(-1).view(np.uint8))
        size, fd, preadv = self.row_bytes, self._fd, os.preadv
        for i, offset in enumerate((self.offset + index * size).tolist()):
            if preadv(fd, [buffer[i * size:(i + 1) * size]], offset) != size:
                raise InputError(f"{self.path}: file ends before row {index[i]}")


_REQUEST = np.dtype([("start", "<i8"), ("rows", "<i8")])  # then `rows` int64 row indices


def _shared_buffer(size: int) -> int:
    """A file descriptor of `size` bytes of memory that a child process can map: memfd where
    the system has it (memory only), else an unnamed temporary file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("amips-rows", os.MFD_CLOEXEC)
    else:
        handle = tempfile.TemporaryFile()
        fd = os.dup(handle.fileno())
        handle.close()
    os.ftruncate(fd, max(1, size))
    return fd


def _mapped_rows(fd: int, rows: NpyRows) -> np.ndarray:
    """The shared buffer behind `fd` as an array of `rows`' rows (parent and readers alike)."""
    import mmap

    return np.frombuffer(mmap.mmap(fd, os.fstat(fd).st_size), dtype=rows.dtype).reshape(-1, rows.shape[1])


def serve_rows(spec: str) -> None:
    """A reader process (ParallelRows): for each request on stdin, the rows at its indices of
    every file into that file's shared buffer from row `start`; one status byte back (0, or 1
    and a length-prefixed message)."""
    import sys

    readers = []
    for path, dtype, fd in json.loads(spec):
        rows = NpyRows(path, dtype=dtype)
        readers.append((rows, _mapped_rows(fd, rows)))
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    while header := requests.read(_REQUEST.itemsize):
        start, n = (int(v) for v in np.frombuffer(header, _REQUEST)[0])
        index = np.frombuffer(requests.read(8 * n), dtype="<i8")
        try:
            for rows, out in readers:
                rows.read_into(index, out[start:start + n])
            replies.write(b"\0")
        except Exception as exc:  # the parent raises it, naming the file
            message = str(exc).encode()
            replies.write(b"\1" + len(message).to_bytes(4, "little") + message)
        replies.flush()


class ParallelRows:
    """The same rows of several NpyRows files, read by `processes` reader processes at once.

    A row costs one system call per file (about 2 µs from the page cache, far more from disk),
    so one reader of queries and targets delivers some 300,000 rows/s (of queries alone,
    540,000), while a GPU step of a small model consumes 4,096 rows in 2 ms. Processes rather
    than threads, because each row's Python work holds the GIL; each reads a slice of the
    batch into one shared buffer per file, and together they keep as many requests in flight
    on a disk. The rows and their order are exactly NpyRows.take's.

    The readers are plain `python -c` processes that import only this module (not the
    caller's script, as multiprocessing's spawn would); the buffers are memory file
    descriptors they inherit, so nothing is left behind by a killed run.
    """

    def __init__(self, files: Sequence[NpyRows], max_rows: int, processes: int) -> None:
        import subprocess
        import sys
        import weakref

        if processes < 1:
            raise InputError(f"reader processes: must be >= 1, got {processes}")
        self.files, self.max_rows, self.processes = list(files), max_rows, processes
        fds = [_shared_buffer(max_rows * f.row_bytes) for f in self.files]
        self._buffers = [_mapped_rows(fd, f) for fd, f in zip(fds, self.files)]
        spec = json.dumps([[str(f.path), f.dtype.str, fd] for f, fd in zip(self.files, fds)])
        command = [sys.executable, "-c", "import sys; from amips_bench.core.rows import serve_rows; "
                   "serve_rows(sys.argv[1])", spec]
        package_root = str(Path(__file__).resolve().parents[1])  # however the caller found it
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        try:
            self._readers = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              pass_fds=fds, env=env) for _ in range(processes)]
        finally:
            for fd in fds:  # the mappings and the children's copies keep the memory
                os.close(fd)
        self._finalizer = weakref.finalize(self, ParallelRows._stop, self._readers)

    @staticmethod
    def _stop(readers: list[Any]) -> None:
        for reader in readers:
            with contextlib.suppress(OSError):
                reader.stdin.close()  # end of requests: the reader returns
        for reader in readers:
            try:
                reader.wait(timeout=10)
            except Exception:
                reader.kill()
                reader.wait()
            reader.stdout.close()

    def close(self) -> None:
        """Stop the reader processes (also done on collection and at exit)."""
        self._finalizer()

    def take_into(self, index: np.ndarray, outs: Sequence[np.ndarray]) -> None:
        """Rows at `index` of each file into the matching array of `outs` (len(index) rows)."""
        index = np.ascontiguousarray(index, dtype="<i8")
        if len(index) > self.max_rows:
            raise InputError(f"reader processes: {len(index)} rows asked, at most {self.max_rows}")
        bounds = np.linspace(0, len(index), self.processes + 1).round().astype(int)
        busy, errors = [], []
        for reader, lo, hi in zip(self._readers, bounds[:-1], bounds[1:]):
            if hi > lo:
                header = np.array([(lo, hi - lo)], dtype=_REQUEST).tobytes()
                try:
                    reader.stdin.write(header + index[lo:hi].tobytes())
                    reader.stdin.flush()
                    busy.append(reader)
                except (BrokenPipeError, ValueError):  # ended, or closed by close()
                    errors.append(f"reader process {reader.pid} ended (exit status {reader.poll()})")
        for reader in busy:  # every reply is read, so the next batch starts clean
            status = reader.stdout.read(1)
            if status == b"\1":
                errors.append(reader.stdout.read(int.from_bytes(reader.stdout.read(4), "little")).decode())
            elif status != b"\0":
                errors.append(f"reader process {reader.pid} ended (exit status {reader.poll()})")
        if errors:
            raise InputError(errors[0])
        for buffer, out in zip(self._buffers, outs):
            out[...] = buffer[:len(index)]

    def take(self, index: np.ndarray) -> list[np.ndarray]:
        """Rows at `index` of each file, as new arrays."""
        outs = [np.empty((len(index), f.shape[1]), dtype=f.dtype) for f in self.files]
        self.take_into(index, outs)
        return outs


@dataclass
class StreamedSplit:
    """A split too large to hold in memory: its queries are read from disk batch by batch; its
    targets too, unless they are held in host memory (8·c bytes a row: one system call a row
    fewer: 1.6× the rows a reading thread delivers)."""

    queries: NpyRows  # float32 [N, d]
    top1: NpyRows | np.ndarray  # int64 [N, c]

    @property
    def files(self) -> list[NpyRows]:
        """What a batch reads from disk, in the order of its outputs."""
        return [rows for rows in (self.queries, self.top1) if isinstance(rows, NpyRows)]


class EpochSampler:
    """Batch indices of step t: slice of a per-epoch permutation seeded by (seed, epoch)."""

    def __init__(self, n: int, batch: int, seed: int, device: torch.device) -> None:
        if batch > n:
            raise InputError(f"train.batch_size: {batch} is larger than the {n} training queries")
        self.n, self.batch, self.seed, self.device = n, batch, seed, device
        self.per_epoch = n // batch
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            # drawn on the CPU, so every device trains on the same batches; on a GPU the copy
            # leaves from pinned memory without blocking the host
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.n, generator=gen)
            if self.device.type == "cuda":
                perm = perm.pin_memory()
            self._perm = perm.to(self.device, non_blocking=True)
            self._epoch = epoch
        return self._perm[position * self.batch:(position + 1) * self.batch]


def reader_processes(requested: int) -> int:
    """Reader processes for a streamed split: at most one per core this process may use (reading
    from the page cache is CPU work, and more readers than cores only take turns); none where
    that leaves one, which would only add a copy to what the prefetch thread does alone."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    processes = min(requested, usable)
    return processes if processes >= 2 else 0


class StreamedBatches:
    """Batches of a streamed split: rows gathered from disk (the targets from memory where they
    are held there) one step ahead on a worker thread (by `processes` reader processes when
    > 0), into pinned memory on a GPU, and copied without blocking the host; the same rows, in
    the same order, as indexing the resident split with the same sampler."""

    def __init__(self, split: StreamedSplit, sampler: EpochSampler, device: torch.device,
                 processes: int = 0) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.split, self.sampler, self.device = split, sampler, device
        self._readers = ParallelRows(split.files, sampler.batch, processes) if processes > 0 else None
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._ahead: tuple[int, Any] | None = None

    def _load(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.sampler.indices(step).numpy()
        pinned = self.device.type == "cuda"  # a page-locked source copies without blocking
        x = torch.empty((len(idx), self.split.queries.shape[1]), dtype=torch.float32, pin_memory=pinned)
        top1 = torch.empty((len(idx), self.split.top1.shape[1]), dtype=torch.int64, pin_memory=pinned)
        from_disk = []  # (file, output) in split.files' order, as the readers were given them
        for source, out in ((self.split.queries, x.numpy()), (self.split.top1, top1.numpy())):
            if isinstance(source, np.ndarray):
                np.take(source, idx, axis=0, out=out)
            else:
                from_disk.append((source, out))
        if self._readers is not None:
            self._readers.take_into(idx, [out for _, out in from_disk])
        else:
            for rows, out in from_disk:
                rows.read_into(idx, out)
        return x, top1

    def settle(self) -> None:
        """Wait for the batch being read ahead (a CUDA-graph capture forbids the pinned
        allocation it makes on its thread)."""
        if self._ahead is not None:
            self._ahead[1].result()

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._ahead is not None and self._ahead[0] == step:
            x, top1 = self._ahead[1].result()
        else:
            x, top1 = self._load(step)
        self._ahead = (step + 1, self._pool.submit(self._load, step + 1))
        return (x.to(self.device, non_blocking=True), top1.to(self.device, non_blocking=True))

    def close(self) -> None:
        """Finish the read ahead, stop the reader processes. A batch read ahead that failed was
        not needed (or the run is already failing): its error does not hide the run's."""
        with contextlib.suppress(Exception):
            self.settle()
        self._pool.shutdown()
        if self._readers is not None:
            self._readers.close()
