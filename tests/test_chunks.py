"""fastbp.chunks.iter_chunks: row blocks of data larger than memory, for partial_fit.

- the chunks put together are the data, exactly, for NumPy arrays, memmaps
  and Dask arrays (and sparse matrices, data frames), y and sample_weight
  aligned with X; NumPy and memmap chunks are views (read in place), a Dask
  array gives its own blocks by default; bad arguments raise ValueError or
  TypeError when iter_chunks is called, before anything is read;
- releasing a chunk's pages loses nothing: a shared map's chunks read (and
  keep what was written) after their release, and a copy-on-write map,
  whose changes live only in its pages, is never released;
- partial_fit over the chunks (sgd and adam, shuffle=False) equals
  partial_fit on the same row blocks cut by hand, from memmaps and from Dask
  arrays; with whole batches per chunk an epoch of chunks equals one
  partial_fit on the whole data, bit for bit;
- the resident set: in a fresh interpreter, an epoch of partial_fit over a
  400 MB float32 memmap in chunks of 20,000 rows (8 MB) raises the peak
  resident set by a few chunks (< 25% of the file), while the same loop
  without releasing the pages takes it above the file's size:
  the measurement does see file-backed pages.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastbp.chunks import DEFAULT_CHUNK_BYTES, Chunk, iter_chunks
from fastbp.sklearn import MLPClassifier

da = pytest.importorskip("dask.array")


def _data(n=103, features=4, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features)).astype(dtype)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    weights = rng.uniform(0.5, 2.0, n)
    return X, y, weights


def _memmap(tmp_path, array, name, mode="r"):
    path = tmp_path / f"{name}.npy"
    np.save(path, array)
    return np.load(path, mmap_mode=mode)


def _inputs(kind, tmp_path, X, y, weights, block_rows=17):
    if kind == "ndarray":
        return X, y, weights
    if kind == "memmap":
        return (_memmap(tmp_path, X, "X"), _memmap(tmp_path, y, "y"),
                _memmap(tmp_path, weights, "w"))
    return (da.from_array(X, chunks=(block_rows, 2)), da.from_array(y, chunks=block_rows),
            da.from_array(weights, chunks=block_rows))


# ---------------------------------------------------------------- the chunks


@pytest.mark.parametrize("kind", ["ndarray", "memmap", "dask"])
@pytest.mark.parametrize("rows", [1, 10, 17, 50, 103, 1000])
def test_the_chunks_put_together_are_the_data_with_y_and_weights_aligned(kind, rows, tmp_path):
    X, y, weights = _data()
    Xk, yk, wk = _inputs(kind, tmp_path, X, y, weights)
    chunks = list(iter_chunks(Xk, yk, rows=rows, sample_weight=wk))
    assert all(isinstance(chunk, Chunk) for chunk in chunks)
    sizes = [len(chunk.X) for chunk in chunks]
    assert sizes == [min(rows, 103 - start) for start in range(0, 103, rows)]
    for chunk in chunks:
        assert len(chunk.y) == len(chunk.sample_weight) == len(chunk.X)
        assert all(isinstance(part, np.ndarray) for part in chunk)
    np.testing.assert_array_equal(np.concatenate([chunk.X for chunk in chunks]), X)
    np.testing.assert_array_equal(np.concatenate([chunk.y for chunk in chunks]), y)
    np.testing.assert_array_equal(np.concatenate([chunk.sample_weight for chunk in chunks]),
                                  weights)


@pytest.mark.parametrize("kind", ["ndarray", "memmap"])
def test_numpy_and_memmap_chunks_are_views_read_in_place(kind, tmp_path):
    X, y, weights = _data()
    Xk, yk, wk = _inputs(kind, tmp_path, X, y, weights)
    for start, chunk in zip(range(0, 103, 25), iter_chunks(Xk, yk, rows=25,
                                                            sample_weight=wk)):
        for part, whole in zip(chunk, (Xk, yk, wk)):
            assert np.shares_memory(part, whole)
            assert part.__array_interface__["data"][0] == \
                whole[start:].__array_interface__["data"][0]
            if kind == "memmap":
                assert isinstance(part, np.memmap)


def test_a_dask_array_gives_its_own_blocks_by_default_one_computed_at_a_time():
    X, y, weights = _data()
    dX = da.from_array(X, chunks=((30, 30, 43), (4,)))
    sizes = [len(chunk.X) for chunk in iter_chunks(dX, y, sample_weight=weights)]
    assert sizes == [30, 30, 43]
    # a block computed per chunk: the i-th chunk is X's i-th block
    for block, chunk in zip(dX.blocks, iter_chunks(dX)):
        np.testing.assert_array_equal(chunk.X, block.compute())
        assert chunk.y is None and chunk.sample_weight is None
    # y and weights dask or NumPy, each on its own terms
    mixed = list(iter_chunks(X, da.from_array(y, chunks=7), rows=40,
                             sample_weight=da.from_array(weights, chunks=50)))
    np.testing.assert_array_equal(np.concatenate([chunk.y for chunk in mixed]), y)
    np.testing.assert_array_equal(np.concatenate([c.sample_weight for c in mixed]), weights)


def test_default_rows_of_numpy_input_are_about_64_mib():
    X = np.broadcast_to(np.zeros(100), (3 * DEFAULT_CHUNK_BYTES // 800 + 5, 100))  # 800 B rows
    sizes = [len(chunk.X) for chunk in iter_chunks(X)]
    assert sizes == [DEFAULT_CHUNK_BYTES // 800] * 3 + [5]


def test_sparse_matrices_and_data_frames_are_sliced_by_rows():
    import pandas as pd
    import scipy.sparse as sp

    X, y, weights = _data()
    sparse = sp.random(103, 6, density=0.3, format="coo", random_state=0)
    chunks = list(iter_chunks(sparse, y, rows=20))
    assert all(sp.issparse(chunk.X) for chunk in chunks)
    np.testing.assert_array_equal(sp.vstack([c.X for c in chunks]).toarray(), sparse.toarray())
    frame = pd.DataFrame(X, columns=list("abcd"))
    chunks = list(iter_chunks(frame, pd.Series(y), rows=50))
    assert [list(chunk.X.columns) for chunk in chunks] == [list("abcd")] * 3
    pd.testing.assert_frame_equal(pd.concat([chunk.X for chunk in chunks]), frame)
    np.testing.assert_array_equal(pd.concat([chunk.y for chunk in chunks]), y)


def test_empty_data_give_no_chunks():
    assert list(iter_chunks(np.empty((0, 3)), np.empty(0), rows=5)) == []


@pytest.mark.parametrize("call, error, match", [
    (lambda X, y: iter_chunks(X.tolist()), TypeError, "got a list.*np.asarray"),
    (lambda X, y: iter_chunks(None), TypeError, "X must be an array"),
    (lambda X, y: iter_chunks(np.float64(3.0)), ValueError, "at least one dimension"),
    (lambda X, y: iter_chunks(X, y[:-1]), ValueError, "y has 102 rows but X has 103"),
    (lambda X, y: iter_chunks(X, tuple(y)), TypeError, "y must be an array"),
    (lambda X, y: iter_chunks(X, y, sample_weight=np.ones(5)), ValueError,
     "sample_weight has 5 entries but X has 103 rows"),
    (lambda X, y: iter_chunks(X, rows=0), ValueError, "rows must be at least 1"),
    (lambda X, y: iter_chunks(X, rows=-3), ValueError, "rows must be at least 1"),
    (lambda X, y: iter_chunks(X, rows=2.5), TypeError, "rows must be a positive int"),
    (lambda X, y: iter_chunks(X, rows="10"), TypeError, "rows must be a positive int"),
    (lambda X, y: iter_chunks(X, rows=True), TypeError, "rows must be a positive int"),
    (lambda X, y: iter_chunks(X, release="yes"), TypeError, "release must be True or False"),
    (lambda X, y: iter_chunks(da.from_array(X, chunks=10)[da.from_array(y, chunks=10) > 0]),
     ValueError, "unknown chunk sizes.*compute_chunk_sizes"),
    (lambda X, y: iter_chunks(X, 10, 20), TypeError, "positional"),
])
def test_bad_arguments_are_refused_at_the_call_before_anything_is_read(call, error, match):
    X, y, _ = _data()
    with pytest.raises(error, match=match):
        call(X, y)      # no next(): the generator is not started


def test_rows_take_numpy_integers():
    X, _, _ = _data()
    assert [len(chunk.X) for chunk in iter_chunks(X, rows=np.int32(50))] == [50, 50, 3]


# ------------------------------------------------------- releasing the pages


def test_released_chunks_of_a_shared_map_read_and_keep_what_was_written(tmp_path):
    X, _, _ = _data(n=5000, features=100)          # ~4 MB: many pages per chunk
    mapped = _memmap(tmp_path, X, "X", mode="r+")
    kept = []
    for chunk in iter_chunks(mapped, rows=700):
        chunk.X[0, 0] = -1234.5                    # a write into the file's pages
        kept.append(chunk.X)
    # every chunk was released when the next was asked for (the last on exhaustion)
    expected = X.copy()
    expected[::700, 0] = -1234.5
    np.testing.assert_array_equal(np.concatenate(kept), expected)
    mapped.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "X.npy"), expected)


def test_a_copy_on_write_map_is_never_released(tmp_path):
    X, _, _ = _data(n=5000, features=100)
    mapped = _memmap(tmp_path, X, "X", mode="c")
    for chunk in iter_chunks(mapped, rows=700):
        chunk.X[...] = 7.0           # private pages: releasing them would lose this
    np.testing.assert_array_equal(mapped, 7.0)
    np.testing.assert_array_equal(np.load(tmp_path / "X.npy"), X)


def test_stopping_early_releases_the_last_chunk_and_loses_nothing(tmp_path):
    X, _, _ = _data(n=5000, features=100)
    mapped = _memmap(tmp_path, X, "X")
    chunks = iter_chunks(mapped, rows=700)
    first = next(chunks)
    chunks.close()
    np.testing.assert_array_equal(first.X, X[:700])


# ------------------------------------------------------------- partial_fit


def _classifier(solver):
    return MLPClassifier(hidden_layer_sizes=(7,), solver=solver, shuffle=False, batch_size=20,
                         learning_rate_init=0.05, random_state=0)


def _same_fit(a, b):
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)
    assert a.t_ == b.t_


@pytest.mark.parametrize("kind", ["ndarray", "memmap", "dask"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_over_the_chunks_equals_partial_fit_on_the_same_blocks(kind, solver,
                                                                           tmp_path):
    X, y, weights = _data(n=300, dtype=np.float32)
    Xk, yk, wk = _inputs(kind, tmp_path, X, y, weights, block_rows=64)
    chunked, by_hand = _classifier(solver), _classifier(solver)
    rows = None if kind == "dask" else 64               # dask: its own blocks of 64 rows
    for epoch in range(2):
        for chunk in iter_chunks(Xk, yk, rows=rows, sample_weight=wk):
            chunked.partial_fit(chunk.X, chunk.y, sample_weight=chunk.sample_weight,
                                classes=[0, 1])
        for start in range(0, 300, 64):
            rows_ = slice(start, start + 64)
            by_hand.partial_fit(X[rows_], y[rows_], sample_weight=weights[rows_],
                                classes=[0, 1])
    _same_fit(chunked, by_hand)
    assert chunked.coefs_[0].dtype == np.float32
    assert chunked.loss_curve_ == by_hand.loss_curve_


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_an_epoch_of_chunks_of_whole_batches_is_an_epoch_on_the_whole_data(solver, tmp_path):
    X, y, _ = _data(n=600, dtype=np.float32)
    mapped, labels = _memmap(tmp_path, X, "X"), _memmap(tmp_path, y, "y")
    chunked, whole = _classifier(solver), _classifier(solver)
    for epoch in range(3):
        for chunk in iter_chunks(mapped, labels, rows=5 * 20):     # 5 batches per chunk
            chunked.partial_fit(chunk.X, chunk.y, classes=[0, 1])
        whole.partial_fit(X, y, classes=[0, 1])
    _same_fit(chunked, whole)


def test_partial_fit_over_the_blocks_of_a_random_dask_array():
    generator = da.random.default_rng(5)
    dX = generator.standard_normal((2_000, 6), chunks=(400, 3)).astype(np.float32)
    dy = (dX[:, 0] - dX[:, 1] > 0).astype(np.int64)
    X, y = (np.asarray(part) for part in da.compute(dX, dy))
    chunked, by_hand = _classifier("adam"), _classifier("adam")
    for chunk in iter_chunks(dX, dy):
        assert chunk.X.shape == (400, 6)
        chunked.partial_fit(chunk.X, chunk.y, classes=[0, 1])
    for start in range(0, 2_000, 400):
        by_hand.partial_fit(X[start:start + 400], y[start:start + 400], classes=[0, 1])
    _same_fit(chunked, by_hand)
    assert chunked.score(X, y) > 0.8


# ------------------------------------------------------------ resident set

N_ROWS, N_FEATURES, CHUNK_ROWS = 1_000_000, 100, 20_000     # 400 MB of float32, 8 MB chunks

# In a fresh interpreter. Linux folds the parent's peak into a child's
# ru_maxrss at exec (and subprocess forks from pytest, whose peak may be
# large), so the peak is VmHWM, the high-water mark of the child's own
# address space, from /proc/self/status; ru_maxrss is reported beside it.
CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from fastbp.chunks import iter_chunks
    from fastbp.sklearn import MLPClassifier

    def peak():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

    X = np.load(sys.argv[1], mmap_mode="r")
    y = np.load(sys.argv[2])
    release = sys.argv[3] == "release"
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", shuffle=False,
                        batch_size=200, random_state=0)
    before = peak()
    for chunk in iter_chunks(X, y, rows=int(sys.argv[4]), release=release):
        clf.partial_fit(chunk.X, chunk.y, classes=[0, 1])
    print(json.dumps({"before": before, "peak": peak(), "t": clf.t_,
                      "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "accuracy": clf.score(X[:20000], y[:20000])}))
""")


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """A 400 MB float32 .npy of random rows and its labels, written a block at a time."""
    folder = tmp_path_factory.mktemp("big")
    X_path, y_path = folder / "X.npy", folder / "y.npy"
    rng = np.random.default_rng(0)
    labels = np.empty(N_ROWS, dtype=np.int8)
    with open(X_path, "wb") as stream:
        np.lib.format.write_array_header_1_0(stream, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False, "shape": (N_ROWS, N_FEATURES)})
        for start in range(0, N_ROWS, CHUNK_ROWS):
            block = rng.standard_normal((CHUNK_ROWS, N_FEATURES), dtype=np.float32)
            labels[start:start + CHUNK_ROWS] = block[:, 0] + block[:, 1] > 0
            stream.write(block.tobytes())
    np.save(y_path, labels)
    yield X_path, y_path, os.path.getsize(X_path)
    X_path.unlink()
    y_path.unlink()


def _epoch_in_a_fresh_interpreter(big_file, mode):
    X_path, y_path, _ = big_file
    done = subprocess.run([sys.executable, "-c", CHILD, str(X_path), str(y_path), mode,
                           str(CHUNK_ROWS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["t"] == N_ROWS and report["accuracy"] > 0.9    # a real epoch, all rows
    return report


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="/proc/self/status and MADV_DONTNEED semantics")


@linux_only
def test_an_epoch_over_a_memmap_keeps_the_resident_set_to_a_few_chunks(big_file):
    size = big_file[2]
    assert size > 399_000_000
    report = _epoch_in_a_fresh_interpreter(big_file, "release")
    growth = report["peak"] - report["before"]
    assert growth < 0.25 * size, report           # ~ 4 chunks of 8 MB here
    assert report["peak"] < 0.75 * size, report   # the interpreter and imports included


@linux_only
def test_without_releasing_the_pages_the_resident_set_grows_by_the_file(big_file):
    # the control: the same loop, pages kept; proves the peak counts file-backed pages
    size = big_file[2]
    report = _epoch_in_a_fresh_interpreter(big_file, "keep")
    assert report["peak"] > size, report
    assert report["peak"] - report["before"] > 0.9 * size, report
