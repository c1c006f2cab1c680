"""Reading and writing the results contract: atomic writes, validated arrays, provenance.

Every file a stage produces is written to a temporary name in the same folder and renamed
into place, so an interrupted or failed stage never leaves a half-written output that a
later stage (or Snakemake) could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .layout import DatasetFiles

_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(ValueError):
    """A bad input file, array or config value; the message names the culprit in one line."""


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual mode
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def save_questions(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Per-question outcomes (compressed .npz of named arrays), written under a temporary name."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})


def load_questions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a per-question outcomes file; a missing or unreadable one in one line."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError(f"{path}: per-question outcomes not found; re-run the stage that "
                         f"writes the table beside it") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: unreadable per-question outcomes ({exc}); delete it and "
                         f"re-run the stage that writes it") from None


def save_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
             columns: Sequence[str] | None = None) -> None:
    """Write tidy rows; columns default to the union of keys in first-seen order."""
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(key, None)
        columns = list(seen)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="raise")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_value(row.get(k, "")) for k in columns})


def _csv_value(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


def share_files(sources: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> list[str]:
    """Each source file under its own name in out_dir, as a relative symbolic link (a copy
    where the file system has none), made under a temporary name and renamed into place; a
    file named manifest*.json goes last, so a folder with its manifest is whole. Returns how
    each was made. Two datasets with the same keys hold them once this way (the 8 GB keys and
    IVF of a 5.2M-key dataset), and a results folder moved whole keeps its links."""
    sources = [Path(s) for s in sources]
    for source in sources:
        if not source.is_file():
            raise InputError(f"{source}: file not found (nothing to share)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for source in sorted(sources, key=lambda s: s.name.startswith("manifest")):
        target = out / source.name
        staged = out / f".{source.name}.{os.getpid()}.link"
        staged.unlink(missing_ok=True)
        try:
            try:
                os.symlink(os.path.relpath(os.path.abspath(source), os.path.abspath(out)), staged)
                how = "linked"
            except OSError:
                shutil.copyfile(source, staged)
                how = "copied (no symbolic links here)"
            os.replace(staged, target)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        made.append(f"{target}: {how} from {source}")
    return made


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


# --------------------------------------------------------------------------- checksums


def file_digest(path: str | os.PathLike, algorithm: str, chunk: int = 1 << 20) -> str:
    """Hex digest of a file read in chunks (archives and embeddings are larger than memory)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def md5_file(path: str | os.PathLike) -> str:
    return file_digest(path, "md5")


# --------------------------------------------------------------------------- validated arrays


def load_array(path: str | os.PathLike, *, dtype: str, ndim: int, mmap: bool = False,
               name: str | None = None) -> np.ndarray:
    """Load an .npy file and check its dtype and rank; errors name the file."""
    path = Path(path)
    label = name or str(path)
    if not path.exists():
        raise InputError(f"{label}: file not found")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{label}: not a readable .npy file ({exc})") from None
    if array.dtype != np.dtype(dtype):
        raise InputError(f"{label}: dtype {array.dtype}, expected {dtype}")
    if array.ndim != ndim:
        raise InputError(f"{label}: {array.ndim}-D array of shape {array.shape}, expected {ndim}-D")
    return array


def check_unit_rows(array: np.ndarray, label: str, *, tol: float = 1e-3,
                    chunk: int = 262_144) -> None:
    """Reject empty arrays, NaN/Inf, zero rows and rows that are not unit-norm."""
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{label}: empty array of shape {array.shape}")
    for start in range(0, array.shape[0], chunk):
        block = np.asarray(array[start:start + chunk], dtype=np.float32)
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise InputError(f"{label}: row {row} contains NaN or Inf")
        norms = np.linalg.norm(block, axis=1)
        if (norms == 0).any():
            row = start + int(np.flatnonzero(norms == 0)[0])
            raise InputError(f"{label}: row {row} has zero norm")
        bad = np.abs(norms - 1.0) > tol
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            raise InputError(f"{label}: row {row} has norm {norms[bad][0]:.4f}, expected unit L2 norm")


def load_embeddings(path: str | os.PathLike, *, mmap: bool = False, d: int | None = None,
                    check: bool = True) -> np.ndarray:
    """Load a float32 [n, d] unit-norm embedding file of the results contract."""
    array = load_array(path, dtype="float32", ndim=2, mmap=mmap)
    if check:
        check_unit_rows(array, str(path))
    if d is not None and array.shape[1] != d:
        raise InputError(f"{path}: dimension {array.shape[1]} does not match the keys' dimension {d}")
    return array


def load_index_array(path: str | os.PathLike, *, upper: int | None = None,
                     ndim: int = 1, mmap: bool = False) -> np.ndarray:
    """Load an int64 index array (memory-mapped with `mmap`) and check every entry lies in
    [0, upper)."""
    array = load_array(path, dtype="int64", ndim=ndim, mmap=mmap)
    if upper is not None and array.size and (array.min() < 0 or array.max() >= upper):
        raise InputError(f"{path}: indices must lie in [0, {upper}), found range "
                         f"[{array.min()}, {array.max()}]")
    return array


# --------------------------------------------------------------------------- provenance


def package_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour a number depends on."""
    from importlib import metadata

    names = ["amips-bench", "torch", "numpy", "faiss-cpu", "faiss-gpu", "fvcore",
             "sentence-transformers", "beir", "snakemake", "pandas", "matplotlib"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state() -> dict[str, Any]:
    """The commit of this checkout and whether it has uncommitted changes ("unknown" outside git),
    recorded next to every number so a result names the code that made it."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                                  cwd=Path(__file__).resolve().parent).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {"git_commit": git("rev-parse", "HEAD"),
            "git_dirty": git("status", "--porcelain") not in ("", "unknown")}


def relative_link(target: str | Path, folder: str | Path) -> str:
    """The path of `target` as seen from `folder`, so a written page keeps its links when the
    results tree is moved."""
    return os.path.relpath(Path(target).resolve(), Path(folder).resolve())


def device_name(device: Any) -> str:
    """Human-readable name of a torch device: the GPU model, or the CPU model and thread count."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu:{cpu_model()} ({torch.get_num_threads()} threads)"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def write_versions_sidecar(csv_path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """The package versions that produced a CSV, in `<name>.versions.json` beside it."""
    csv_path = Path(csv_path)
    sidecar = csv_path.with_suffix(".versions.json")
    payload = {"versions": package_versions(), "machine": platform.platform()}
    if extra:
        payload.update(extra)
    save_json(sidecar, payload)
    return sidecar


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


def split_mode_of(dataset_dir: str | os.PathLike) -> str:
    """The split mode of a dataset's targets (leak_free or paper), from any targets manifest."""
    for manifest in sorted(Path(dataset_dir).glob(str(DatasetFiles("").targets_manifest("*")))):
        return load_json(manifest).get("split_mode", "leak_free")
    return "leak_free"


# --------------------------------------------------------------------------- streamed .npy rows


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
        command = [sys.executable, "-c", "import sys; from amips_bench.core.files import serve_rows; "
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


@contextlib.contextmanager
def npy_row_writer(path: str | os.PathLike, n_rows: int, ncols: int | None, dtype: str):
    """Write a [n_rows, ncols] (or, with ncols None, a [n_rows]) .npy file block by block,
    appending in row order.

    Yields `append(block)`. The file is byte-identical to np.save of the whole array; it is
    written under a temporary name and renamed only when every row was written.
    """
    dtype = np.dtype(dtype)
    written = 0
    shape = (n_rows,) if ncols is None else (n_rows, ncols)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                  "shape": shape}
        np.lib.format.write_array_header_1_0(fh, header)

        def append(block: np.ndarray) -> None:
            nonlocal written
            block = np.ascontiguousarray(block, dtype=dtype)
            if block.shape[1:] != shape[1:] or written + len(block) > n_rows:
                raise InputError(f"{path}: block of shape {block.shape} does not fit "
                                 f"{list(shape)} after {written} rows")
            fh.write(block.tobytes())
            written += len(block)

        yield append
        if written != n_rows:
            raise InputError(f"{path}: {written} of {n_rows} rows written")


def save_result_rows(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
                     dataset_dir: str | os.PathLike | None = None,
                     questions: Mapping[str, np.ndarray] | None = None) -> None:
    """A result table and, beside it, the versions that produced it and (`questions`) the
    per-question outcomes its rows are means of, written before the table; rows of a dataset
    carry the split mode its targets were made with (leak_free, or the leaky paper mode)."""
    if dataset_dir is not None:
        mode = split_mode_of(dataset_dir)
        rows = [{**row, "split_mode": mode} for row in rows]
    if questions is not None:
        save_questions(DatasetFiles.questions_beside(path), questions)
    save_csv(path, rows)
    write_versions_sidecar(path)
