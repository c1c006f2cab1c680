"""Reading and writing the results contract: atomic writes, validated arrays and tables,
checksums.

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
import pickle
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .layout import DatasetFiles
from .provenance import package_versions
from .runs import split_mode_named

_UMASK = os.umask(0)  # the process's umask: files written here get its permissions
os.umask(_UMASK)


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
    def read(p: Path) -> dict[str, np.ndarray]:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    return read_file(path, read, kind="per-question outcomes",
                     remedy="delete it and re-run the stage that writes the table beside it")


#: what goes wrong reading a damaged file, by library: a truncated torch zip, FAISS's
#: "read error", NumPy's short read, pandas' parser, a bad zip or pickle
UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, KeyError, zipfile.BadZipFile,
              pickle.UnpicklingError, UnicodeDecodeError)


def read_file(path: str | os.PathLike, reader: Callable[[Path], Any], *, kind: str,
              remedy: str) -> Any:
    """`reader(path)`, with a missing, misplaced (a folder) or damaged file turned into one
    line that names the file, what it should be and what to do (`remedy`, e.g. "re-run the
    stage that writes it"); an InputError the reader raises passes unchanged."""
    path = Path(path)
    remedy = f"; {remedy}" if remedy else ""
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a {kind} file{remedy}")
    if not path.exists():
        raise InputError(f"{path}: {kind} file not found{remedy}")
    try:
        return reader(path)
    except InputError:
        raise
    except UNREADABLE as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:160]
        raise InputError(f"{path}: unreadable {kind} file, damaged or truncated "
                         f"({type(exc).__name__}: {detail}){remedy}") from None


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
    def read(p: Path) -> Any:
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}); re-run the "
                             f"stage that writes it") from None
    return read_file(path, read, kind="JSON", remedy="re-run the stage that writes it")


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


def load_array(path: str | os.PathLike, *, dtype: str, ndim: int, mmap: bool = False,
               name: str | None = None) -> np.ndarray:
    """Load an .npy file and check its dtype and rank; errors name the file."""
    path = Path(path)
    label = name or str(path)
    if not path.exists():
        raise InputError(f"{label}: file not found")
    array = read_file(path, lambda p: np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False),
                      kind=".npy array", remedy="re-run the stage that writes it")
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


def relative_link(target: str | Path, folder: str | Path) -> str:
    """The path of `target` as seen from `folder`, so a written page keeps its links when the
    results tree is moved."""
    return os.path.relpath(Path(target).resolve(), Path(folder).resolve())


def split_mode_of(dataset_dir: str | os.PathLike) -> str:
    """The split mode of a dataset's targets (leak_free or official), from any targets manifest."""
    for manifest in sorted(Path(dataset_dir).glob(str(DatasetFiles("").targets_manifest("*")))):
        return split_mode_named(load_json(manifest).get("split_mode", "leak_free"))
    return "leak_free"


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


def write_versions_sidecar(csv_path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """The package versions that produced a CSV, in `<name>.versions.json` beside it."""
    csv_path = Path(csv_path)
    sidecar = csv_path.with_suffix(".versions.json")
    payload = {"versions": package_versions(), "machine": platform.platform()}
    if extra:
        payload.update(extra)
    save_json(sidecar, payload)
    return sidecar


def save_result_rows(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
                     dataset_dir: str | os.PathLike | None = None,
                     questions: Mapping[str, np.ndarray] | None = None) -> None:
    """A result table and, beside it, the versions that produced it and (`questions`) the
    per-question outcomes its rows are means of, written before the table; rows of a dataset
    carry the split mode its targets were made with (leak_free, or the leaky official mode)."""
    if dataset_dir is not None:
        mode = split_mode_of(dataset_dir)
        rows = [{**row, "split_mode": mode} for row in rows]
    if questions is not None:
        save_questions(DatasetFiles.questions_beside(path), questions)
    save_csv(path, rows)
    write_versions_sidecar(path)
