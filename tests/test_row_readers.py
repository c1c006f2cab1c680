"""Reading rows of a large .npy file by index (the streamed training split): one reader, and
reader processes sharing a batch. Reference: NumPy's own fancy indexing of the loaded array."""

from __future__ import annotations

import numpy as np
import pytest

from amips_bench.core.errors import InputError
from amips_bench.core.rows import NpyRows, ParallelRows


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(11)
    folder = tmp_path_factory.mktemp("rows")
    queries = rng.standard_normal((5_000, 24)).astype(np.float32)
    top1 = rng.integers(0, 1 << 40, (5_000, 3), dtype=np.int64)
    np.save(folder / "queries.npy", queries)
    np.save(folder / "top1.npy", top1)
    return folder, queries, top1


def _indices(rng, n):
    """A batch in random order with repeats, and both ends of the file."""
    return np.concatenate([[0, n - 1], rng.integers(0, n, 700), [17, 17]])


def test_one_reader_takes_the_rows_numpy_indexing_takes(files):
    folder, queries, top1 = files
    idx = _indices(np.random.default_rng(0), len(queries))
    assert np.array_equal(NpyRows(folder / "queries.npy", dtype="float32").take(idx), queries[idx])
    assert np.array_equal(NpyRows(folder / "top1.npy", dtype="int64").take(idx), top1[idx])
    assert NpyRows(folder / "queries.npy", dtype="float32").take(np.array([], int)).shape == (0, 24)


@pytest.mark.parametrize("processes", [1, 3])
def test_reader_processes_take_the_same_rows_in_the_same_order(files, processes):
    """Several files at the same indices, batches of any size up to the buffer's, in place."""
    folder, queries, top1 = files
    rows = [NpyRows(folder / "queries.npy", dtype="float32"), NpyRows(folder / "top1.npy", dtype="int64")]
    readers = ParallelRows(rows, max_rows=704, processes=processes)
    rng = np.random.default_rng(processes)
    try:
        for _ in range(3):
            idx = _indices(rng, len(queries))
            x, t = readers.take(idx)
            assert np.array_equal(x, queries[idx]) and np.array_equal(t, top1[idx])
        small = rng.integers(0, len(queries), 2)  # fewer rows than processes
        out = [np.empty((2, 24), np.float32), np.empty((2, 3), np.int64)]
        readers.take_into(small, out)
        assert np.array_equal(out[0], queries[small]) and np.array_equal(out[1], top1[small])
    finally:
        readers.close()


def test_reader_processes_stop_on_close_and_are_refused_after(files):
    folder, queries, _ = files
    readers = ParallelRows([NpyRows(folder / "queries.npy", dtype="float32")], 64, processes=2)
    assert np.array_equal(readers.take(np.arange(64))[0], queries[:64])
    processes = list(readers._readers)
    readers.close()
    assert [p.poll() for p in processes] == [0, 0]  # ended on their own at the end of requests
    with pytest.raises(InputError, match=r"reader process \d+ ended \(exit status 0\)"):
        readers.take(np.arange(4))


def test_reader_processes_do_not_run_the_callers_script(files, tmp_path):
    """multiprocessing's spawn would run the main script again in every reader; a script
    without a main guard, or fed on stdin, must not matter."""
    import subprocess
    import sys

    folder, queries, _ = files
    script = (f"import numpy as np\nfrom amips_bench.core.rows import NpyRows, ParallelRows\n"
              f"print('script ran')\n"
              f"r = ParallelRows([NpyRows({str(folder / 'queries.npy')!r}, dtype='float32')], 8, 2)\n"
              f"print(r.take(np.arange(8))[0].sum())\n")
    run = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["script ran", str(queries[:8].sum())]


def test_bad_indices_and_short_files_are_named(files, tmp_path):
    folder, queries, _ = files
    rows = NpyRows(folder / "queries.npy", dtype="float32")
    with pytest.raises(InputError, match=r"queries\.npy: row indices must lie in \[0, 5000\), found \[3, 5000\]"):
        rows.take(np.array([3, 5000]))
    # a file cut short after its header was read: the reader process's error reaches the caller
    cut = tmp_path / "cut.npy"
    cut.write_bytes((folder / "queries.npy").read_bytes()[:-24 * 4 * 10])
    readers = ParallelRows([NpyRows(cut, dtype="float32")], 16, processes=2)
    try:
        assert np.array_equal(readers.take(np.arange(16))[0], queries[:16])
        with pytest.raises(InputError, match=r"cut\.npy: file ends before row 4995"):
            readers.take(np.array([1, 4995]))
        with pytest.raises(InputError, match="17 rows asked, at most 16"):
            readers.take(np.arange(17))
    finally:
        readers.close()
    with pytest.raises(InputError, match="reader processes: must be >= 1, got 0"):
        ParallelRows([rows], 16, processes=0)
