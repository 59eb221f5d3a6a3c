"""Data larger than memory: row blocks of an array, for ``partial_fit`` one chunk at a time.

``iter_chunks(X, y, rows=...)`` yields ``Chunk(X, y, sample_weight)``
tuples of consecutive row blocks, the targets and weights aligned with
them::

    X = np.load("train_X.npy", mmap_mode="r")          # 40 GB on disk
    y = np.load("train_y.npy", mmap_mode="r")
    clf = MLPClassifier(solver="sgd", batch_size=200)
    for epoch in range(10):
        for chunk in iter_chunks(X, y, rows=20_000):
            clf.partial_fit(chunk.X, chunk.y, classes=classes)

What each kind of input costs:

- a NumPy array: the chunks are views, nothing is copied;
- an ``np.memmap`` (``np.load(..., mmap_mode="r")``, ``np.memmap(...)``): the
  chunks are views of the mapping, read in place from the file's pages; once
  the consumer asks for the next chunk, the pages of the last one are
  dropped from the process (``madvise(MADV_DONTNEED)`` where the platform
  has it), so the resident set stays at a few chunks however large the file
  is. The data stay valid: touching a released page reads it again (from
  the page cache, or the disk). Copy-on-write maps (``mode="c"``), whose
  pages may hold changes that exist nowhere else, are never released;
- a Dask array: one chunk is computed at a time (``dask.compute``, with
  whatever scheduler is configured), by default one block of rows of X;
- a SciPy sparse matrix (CSR row slices) or a pandas DataFrame / Series
  (``.iloc``) is sliced by rows.
"""

from __future__ import annotations

import math
import mmap
import sys
from collections import namedtuple
from collections.abc import Iterator
from numbers import Integral
from typing import Any

import numpy as np

__all__ = ["Chunk", "iter_chunks"]

#: Rows per chunk when `rows` is not given (NumPy, sparse, pandas): about this many bytes of X
DEFAULT_CHUNK_BYTES = 64 << 20

_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)

if hasattr(np, "lib") and hasattr(np.lib, "array_utils"):       # NumPy >= 2.0
    _byte_bounds = np.lib.array_utils.byte_bounds
else:  # pragma: no cover - NumPy 1.x
    _byte_bounds = np.byte_bounds  # type: ignore[attr-defined]


class Chunk(namedtuple("Chunk", ["X", "y", "sample_weight"])):
    """One block of consecutive rows, as `iter_chunks` yields it: a named tuple.

    Attributes
    ----------
    X : array
        The rows ``X[start:stop]`` (a view for NumPy arrays and memmaps, a
        computed NumPy array for Dask arrays).
    y : array or None
        The same rows of y, or None when no y was given.
    sample_weight : array or None
        The same entries of sample_weight, or None when none was given.
    """

    __slots__ = ()


def _is_dask_array(value: Any) -> bool:
    dask_array = sys.modules.get("dask.array")     # a dask array has imported it
    return dask_array is not None and isinstance(value, dask_array.Array)


def _is_pandas(value: Any) -> bool:
    return hasattr(value, "iloc") and type(value).__module__.startswith("pandas")


def _is_sparse(value: Any) -> bool:
    scipy_sparse = sys.modules.get("scipy.sparse")
    return scipy_sparse is not None and scipy_sparse.issparse(value)


def _checked_array(value: Any, name: str) -> Any:
    """`value` if it is a sliceable array of at least one dimension, else TypeError/ValueError."""
    if isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name} must be an array (NumPy array, np.memmap, Dask array, SciPy sparse "
            f"matrix or pandas object), got a {type(value).__name__}: pass np.asarray({name})")
    if _is_sparse(value):
        return value if value.format == "csr" else value.tocsr()
    shape = getattr(value, "shape", None)
    if not isinstance(shape, tuple) or not hasattr(value, "__getitem__"):
        raise TypeError(
            f"{name} must be an array (NumPy array, np.memmap, Dask array, SciPy sparse "
            f"matrix or pandas object), got {type(value).__name__}")
    if len(shape) == 0:
        raise ValueError(f"{name} must have at least one dimension (rows), got a 0-d array")
    if _is_dask_array(value) and math.isnan(shape[0]):
        raise ValueError(
            f"{name} is a Dask array of unknown chunk sizes (shape {shape}): call "
            f"{name}.compute_chunk_sizes() first, or make it with lengths=True")
    return value


def _checked_rows(rows: Any) -> int | None:
    if rows is None:
        return None
    if isinstance(rows, bool) or not isinstance(rows, Integral):
        raise TypeError(f"rows must be a positive int or None, got {rows!r}")
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    return int(rows)


def _default_rows(X: Any) -> int:
    """Rows of about DEFAULT_CHUNK_BYTES of X (at least one)."""
    n = int(X.shape[0])
    if _is_sparse(X):
        row_bytes = (X.data.nbytes + X.indices.nbytes) // max(n, 1) + X.indptr.itemsize
    else:
        itemsize = getattr(getattr(X, "dtype", None), "itemsize", 8)
        row_bytes = itemsize * math.prod(int(d) for d in X.shape[1:])
    return max(1, DEFAULT_CHUNK_BYTES // max(1, row_bytes))


def _bounds(X: Any, rows: int | None) -> Iterator[tuple[int, int]]:
    """(start, stop) of each chunk: X's own row blocks for a Dask array without `rows`."""
    n = int(X.shape[0])
    if rows is None and _is_dask_array(X):
        start = 0
        for size in X.chunks[0]:
            if size:
                yield start, start + int(size)
                start += int(size)
        return
    step = _default_rows(X) if rows is None else rows
    for start in range(0, n, step):
        yield start, min(start + step, n)


class _Releaser:
    """Drops the pages of row blocks of a shared np.memmap from the process's memory.

    For MAP_SHARED maps (np.memmap modes 'r', 'r+', 'w+'), MADV_DONTNEED only
    unmaps the pages: a later access reads them again from the file (or the
    page cache), so nothing is lost, written pages included. A private map
    (mode 'c') may hold the only copy of changed pages and is left alone.
    """

    def __init__(self, array: Any) -> None:
        self._map: mmap.mmap | None = None
        self._base = 0
        if _MADV_DONTNEED is None or not isinstance(array, np.memmap):
            return
        if getattr(array, "mode", None) not in ("r", "r+", "w+"):
            return
        owner: Any = array
        while owner is not None and not isinstance(owner, mmap.mmap):
            owner = getattr(owner, "base", None)
        if owner is None or owner.closed or not hasattr(owner, "madvise"):
            return
        try:
            view = np.frombuffer(owner, dtype=np.uint8)
        except (ValueError, TypeError, BufferError):     # an empty map
            return
        self._base = int(view.__array_interface__["data"][0])
        del view                                         # no buffer export kept
        self._map = owner

    def __call__(self, block: Any) -> None:
        """Release the pages spanned by `block`, a view into the map."""
        mapping = self._map
        if mapping is None or _MADV_DONTNEED is None or mapping.closed or block.size == 0:
            return
        low, high = _byte_bounds(block)
        start, stop = low - self._base, high - self._base
        if start < 0 or stop > len(mapping):
            return                                   # not a view of this map
        start -= start % mmap.PAGESIZE
        try:
            mapping.madvise(_MADV_DONTNEED, start, stop - start)
        except (OSError, ValueError):                # advice only: never fail the loop
            pass


def _piece(array: Any, start: int, stop: int) -> Any:
    if array is None:
        return None
    if _is_pandas(array):
        return array.iloc[start:stop]
    return array[start:stop]


def _chunks(X: Any, y: Any, sample_weight: Any, bounds: Iterator[tuple[int, int]],
            release: bool) -> Iterator[Chunk]:
    arrays = (X, y, sample_weight)
    lazy = [_is_dask_array(array) for array in arrays]
    releasers = [_Releaser(array) if release and array is not None else None
                 for array in arrays]
    compute = None
    if any(lazy):
        import dask

        compute = dask.compute
    for start, stop in bounds:
        pieces = [_piece(array, start, stop) for array in arrays]
        if compute is not None:
            # the chunk's dask pieces in one compute, so that they share their graph
            done = iter(compute(*[piece for piece, is_lazy in zip(pieces, lazy) if is_lazy]))
            pieces = [next(done) if is_lazy else piece for piece, is_lazy in zip(pieces, lazy)]
        try:
            yield Chunk(*pieces)
        finally:
            # the consumer is done with the chunk (it asked for the next one, or stopped)
            for piece, releaser in zip(pieces, releasers):
                if releaser is not None:
                    releaser(piece)
        del pieces


def iter_chunks(X: Any, y: Any = None, *, rows: int | None = None, sample_weight: Any = None,
                release: bool = True) -> Iterator[Chunk]:
    """Yield consecutive row blocks of X, y and sample_weight aligned, for out-of-core training.

    Each block goes to ``partial_fit`` (or ``predict``) as it comes, so that
    no more than a chunk of the data is ever in memory: ``X`` may be an
    ``np.memmap`` of a file larger than RAM, or a Dask array.

    Parameters
    ----------
    X : ndarray, np.memmap, dask.array.Array, scipy.sparse matrix or pandas DataFrame
        The data, rows first. A memmap is read in place, a chunk at a time,
        and the pages of each chunk are released from the process once the
        next chunk is asked for (see `release`); a Dask array is computed
        one chunk at a time; a NumPy array is sliced (views, no copies).
    y : array of the same kinds, optional
        Targets with one entry (row) per row of X; dask or not, independently
        of X.
    rows : int, optional
        Rows per chunk (the last chunk may be shorter). By default, a Dask X
        gives its own row blocks (one block computed per chunk), anything else
        chunks of about 64 MiB of X (``DEFAULT_CHUNK_BYTES``). For a Dask
        array, `rows` equal to (or a multiple of) its row block size avoids
        computing a block more than once. With a fixed ``batch_size`` and
        ``shuffle=False``, a multiple of the batch size makes an epoch of
        ``partial_fit`` calls over the chunks take the very batches of one
        call on the whole data.
    sample_weight : array of the same kinds, optional
        One weight per row of X.
    release : bool, default True
        Drop the pages of a memmap chunk from the process once the consumer
        has moved on to the next chunk (``madvise(MADV_DONTNEED)`` on the
        chunk's byte range where the platform offers it; a no-op elsewhere and
        for copy-on-write maps). Released pages remain readable: a later
        access reads them again from the file. Without it, every page read
        stays in the process's resident set until the map is closed.

    Yields
    ------
    Chunk
        A named tuple ``(X, y, sample_weight)``: the block of rows of X, and
        the same rows of y and sample_weight (None where not given). For
        NumPy input the members are views into the inputs.

    Raises
    ------
    TypeError
        If X, y or sample_weight is not an array (lists are refused: a list
        is in memory already, pass ``np.asarray`` of it), `rows` is not an
        int, or `release` is not a bool.
    ValueError
        If X is 0-d, y or sample_weight has another number of rows than X,
        `rows` is below 1, or a Dask array has unknown chunk sizes.

    Notes
    -----
    The arguments are checked when `iter_chunks` is called, before any chunk
    is read. A chunk shuffles nothing: for stochastic solvers over several
    epochs, keep ``shuffle=True`` in the estimator (it shuffles within each
    chunk) or store the rows in random order.

    Examples
    --------
    >>> import numpy as np
    >>> from fastbp.chunks import iter_chunks
    >>> X, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    >>> [chunk.y.tolist() for chunk in iter_chunks(X, y, rows=2)]
    [[0, 1], [2, 3], [4]]
    """
    X = _checked_array(X, "X")
    n = int(X.shape[0])
    if y is not None:
        y = _checked_array(y, "y")
        if int(y.shape[0]) != n:
            raise ValueError(f"y has {y.shape[0]} rows but X has {n}: they must match")
    if sample_weight is not None:
        sample_weight = _checked_array(sample_weight, "sample_weight")
        if int(sample_weight.shape[0]) != n:
            raise ValueError(f"sample_weight has {sample_weight.shape[0]} entries but X has "
                             f"{n} rows: they must match")
    step = _checked_rows(rows)
    if not isinstance(release, (bool, np.bool_)):
        raise TypeError(f"release must be True or False, got {release!r}")
    return _chunks(X, y, sample_weight, _bounds(X, step), bool(release))
