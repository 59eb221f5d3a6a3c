"""Tables for the command line: reading CSV and .npz data, labels, task, scaling.

Everything the ``fastbp`` subcommands need between a file on disk and the
arrays a `Model` takes, with no pandas: CSV files go through the csv module.
Every problem with the user's data is a `DataError` whose message names the
file, column or row, so that the command line can print it as one line.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DataError",
    "Table",
    "read_table",
    "parse_labels",
    "infer_task",
    "encode_labels",
    "fit_scaling",
    "MAX_CLASSES",
]

# Integer labels with at most this many distinct values are classes by
# default; more distinct integers (or any non-integer number) are regressed.
MAX_CLASSES = 20

DIGITS = "digits"


class DataError(ValueError):
    """A user's data file that cannot be used, with the reason in one line."""


@dataclass
class Table:
    """Features and (optionally) targets read from one data source.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,) or None
        The target column as labels (int, float or str), None when the
        source has none or none was asked for.
    feature_names : list of str or None
    target_name : str or None
    source : str
        The name to use in messages.
    raw_target : list of str or None
        A CSV target column as it was written, for re-parsing to a model's labels.
    """

    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str] | None
    target_name: str | None
    source: str
    raw_target: list[str] | None = field(default=None, repr=False)

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return self.X.shape[0]


# ------------------------------------------------------------------ labels

def parse_labels(values: list[str], like: np.ndarray | None = None) -> np.ndarray:
    """A CSV column of labels as integers, floats or strings.

    Parameters
    ----------
    values : list of str
        The column's cells.
    like : ndarray, optional
        A model's classes: the labels are parsed to their kind (numbers or
        strings), so that "1" matches the class 1 or the class "1".

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        int64 when every cell is an integer, float64 when every cell is a
        number, str otherwise (or the kind of `like`).
    """
    if like is not None and like.dtype.kind == "U":
        return np.asarray(values, dtype=str)
    try:
        as_int = np.asarray([int(value) for value in values], dtype=np.int64)
        if like is None or like.dtype.kind in "iub":
            return as_int
    except (ValueError, OverflowError):
        pass
    try:
        return np.asarray([float(value) for value in values], dtype=np.float64)
    except ValueError:
        return np.asarray(values, dtype=str)


def infer_task(y: np.ndarray) -> str:
    """'classify' for strings or few distinct integers, 'regress' otherwise.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)

    Returns
    -------
    task : {'classify', 'regress'}
    """
    if y.dtype.kind in "USb":
        return "classify"
    if y.dtype.kind in "iu" and np.unique(y).size <= MAX_CLASSES:
        return "classify"
    return "regress"


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct labels and each row's index among them.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)

    Returns
    -------
    classes : ndarray of shape (n_classes,)
    indices : ndarray of shape (n_samples,), intp
    """
    classes, indices = np.unique(y, return_inverse=True)
    return classes, indices.reshape(-1).astype(np.intp)


def fit_scaling(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each column for ``(X - mean) / scale``.

    A constant column gets scale 1 (it becomes 0 everywhere) instead of a
    division by zero.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)

    Returns
    -------
    mean, scale : ndarray of shape (n_features,), float64
    """
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[~(scale > 1e-12 * np.maximum(1.0, np.abs(mean)))] = 1.0
    return mean, scale


# ----------------------------------------------------------------- reading

def read_table(source: str, target: str | None = None, want_target: bool = True,
               features: list[str] | None = None, n_features: int | None = None) -> Table:
    """Read features (and the target) from a CSV file, an .npz file or ``digits``.

    Parameters
    ----------
    source : str
        ``digits`` (scikit-learn's bundled handwritten digits), a path ending
        in ``.npz`` (arrays ``X`` and, optionally, ``y`` and
        ``feature_names``), or a CSV file with a header row.
    target : str, optional
        The CSV column holding the target; default the last column. Only
        for CSV files.
    want_target : bool
        Whether a target is required (train, evaluate) or ignored (predict).
    features : list of str, optional
        A model's feature names: the CSV columns are picked by these names
        when all are present (any other column, such as the target, is left
        out).
    n_features : int, optional
        The feature count a model expects; a mismatch is a DataError.

    Returns
    -------
    table : Table

    Raises
    ------
    DataError
        For a missing or unreadable file, an unknown column, a non-numeric
        or non-finite feature cell, an empty table or a feature count that
        does not match `n_features`.
    """
    if source == DIGITS and not os.path.exists(source):
        if target is not None:
            raise DataError("--target applies to CSV files; the digits have their own labels")
        table = _read_digits(want_target)
    elif source.lower().endswith(".npz"):
        if target is not None:
            raise DataError(f"--target applies to CSV files; {source} holds arrays X and y")
        table = _read_npz(source, want_target)
    else:
        table = _read_csv(source, target, want_target, features)
    if table.n_samples == 0:
        raise DataError(f"{source} has no data rows")
    if n_features is not None and table.X.shape[1] != n_features:
        raise DataError(f"{source} has {table.X.shape[1]} feature columns, the model expects "
                        f"{n_features}")
    return table


def _read_digits(want_target: bool) -> Table:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits data set needs scikit-learn (pip install scikit-learn)") \
            from None
    digits = load_digits()
    names = list(getattr(digits, "feature_names", [f"pixel_{k}" for k in range(64)]))
    return Table(X=np.asarray(digits.data, dtype=np.float64),
                 y=np.asarray(digits.target) if want_target else None,
                 feature_names=names, target_name="digit", source=DIGITS)


def _read_npz(path: str, want_target: bool) -> Table:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file: {_one_line(exc)}") from None
    if "X" not in arrays:
        raise DataError(f"{path} has no array 'X' (it holds {sorted(arrays)})")
    X = arrays["X"]
    if X.ndim != 2 or X.dtype.kind not in "iufb":
        raise DataError(f"{path}: X must be a 2-D array of numbers, got {X.dtype} of shape "
                        f"{X.shape}")
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise DataError(f"{path}: X holds NaN or infinity")
    y = None
    if want_target:
        if "y" not in arrays:
            raise DataError(f"{path} has no array 'y' with the targets")
        y = arrays["y"]
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != X.shape[0] or y.dtype.kind not in "iufbU":
            raise DataError(f"{path}: y must be 1-D numbers or strings, one per row of X, got "
                            f"{y.dtype} of shape {y.shape}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise DataError(f"{path}: y holds NaN or infinity")
    names = None
    if "feature_names" in arrays:
        names = arrays["feature_names"]
        if names.dtype.kind != "U" or names.shape != (X.shape[1],):
            raise DataError(f"{path}: feature_names must be {X.shape[1]} strings")
        names = [str(name) for name in names]
    return Table(X=X, y=y, feature_names=names, target_name="y", source=path)


def _read_rows(path: str) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            rows = [row for row in csv.reader(stream) if row]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a data file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 text CSV file") from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"{path} cannot be read: {_one_line(exc)}") from None
    if not rows:
        raise DataError(f"{path} is empty (a CSV file needs a header row)")
    header = [name.strip() for name in rows[0]]
    seen = set()
    for number, name in enumerate(header, start=1):
        if not name:
            raise DataError(f"{path}: column {number} of the header has no name")
        if name in seen:
            raise DataError(f"{path}: the header names column {name!r} twice")
        seen.add(name)
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: row {line} has {len(row)} fields, the header has "
                            f"{len(header)}")
    return header, rows[1:]


def _read_csv(path: str, target: str | None, want_target: bool,
              features: list[str] | None) -> Table:
    header, rows = _read_rows(path)
    columns = {name: k for k, name in enumerate(header)}
    if target is not None and target not in columns:
        raise DataError(f"{path} has no column {target!r} (columns: {_names(header)})")
    if features is not None and all(name in columns for name in features):
        if target is not None and target in features:
            raise DataError(f"--target {target!r} is one of the model's feature columns")
        feature_names = list(features)
        if want_target and target is None:
            others = [name for name in header if name not in features]
            if not others:
                raise DataError(f"{path} has no target column besides the model's features")
            target = others[-1]
    elif features is not None:
        missing = [name for name in features if name not in columns]
        raise DataError(f"{path} lacks the model's feature columns {_names(missing)}")
    else:
        if want_target and target is None:
            target = header[-1]
        feature_names = [name for name in header if name != target]
    if not feature_names:
        raise DataError(f"{path} has no feature columns besides the target {target!r}")
    X = np.empty((len(rows), len(feature_names)), dtype=np.float64)
    for j, name in enumerate(feature_names):
        k = columns[name]
        cells = [row[k] for row in rows]
        try:
            X[:, j] = np.asarray(cells, dtype=np.float64)   # numpy parses in C
        except ValueError:
            X[:, j] = [_number(path, name, i, cell) for i, cell in enumerate(cells)]
        if not np.isfinite(X[:, j]).all():
            i = int(np.flatnonzero(~np.isfinite(X[:, j]))[0])
            raise DataError(f"{path}: feature column {name!r} holds {cells[i].strip()!r} "
                            f"(row {i + 2}); features must be finite numbers")
    y = raw = None
    if want_target and target is not None:
        k = columns[target]
        raw = [row[k].strip() for row in rows]
        for i, cell in enumerate(raw):
            if not cell:
                raise DataError(f"{path}: target column {target!r} is empty in row {i + 2}")
        y = parse_labels(raw)
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise DataError(f"{path}: target column {target!r} holds NaN or infinity")
    return Table(X=X, y=y, feature_names=feature_names, target_name=target, source=path,
                 raw_target=raw)


def _number(path: str, name: str, i: int, cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        shown = repr(cell.strip()) if cell.strip() else "empty"
        raise DataError(f"{path}: feature column {name!r} is not numeric (row {i + 2}: "
                        f"{shown})") from None


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
