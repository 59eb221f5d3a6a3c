"""Data at the Python boundary: input and target arrays, and held-out splits.

Every array a kernel receives passes through here first, so that the kernels
can trust their arguments. Every failure is a ValueError or TypeError that
names the argument and says what was expected. (Hyperparameters are checked
by the contract in _contract.py.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _kernels

if TYPE_CHECKING:
    from ._typing import FloatArray, IntArray

__all__ = [
    "all_finite",
    "column_names",
    "check_dtype",
    "check_inputs",
    "check_sample_weight",
    "check_targets",
    "held_out_split",
    "non_finite_message",
]


def check_dtype(dtype: DTypeLike) -> type[np.floating[Any]]:
    """Return np.float32 or np.float64 for a dtype-like, or raise naming `dtype`."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from exc
    if resolved not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return cast("type[np.floating[Any]]", resolved.type)


def all_finite(array: NDArray[Any]) -> bool:
    """True when no entry is NaN or infinite.

    C-contiguous float32/float64 data (what the kernels run on) goes through
    the kernels' one-pass check. Otherwise one summing pass settles the usual case without allocating an array of
    the data's size, as np.isfinite(array).all() would: a finite sum means
    every entry is finite. A sum that is not finite may come from NaN or
    infinity, or from finite entries whose total overflows; min and max
    (which propagate NaN and expose infinities) tell which.
    """
    if array.size == 0:
        return True
    if array.dtype in (np.float64, np.float32) and array.flags.c_contiguous:
        # the usual case: one vectorized pass, no allocation, no GIL
        return _kernels.all_finite(array.reshape(-1))
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(array.sum()):
            return True
    return bool(np.isfinite(array.min()) and np.isfinite(array.max()))


def _as_real_array(value: ArrayLike, name: str) -> NDArray[Any]:
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be array-like of numbers: {exc}") from exc
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


def column_names(X: object) -> list[str] | None:
    """The column names of a data frame (anything with string `columns`), or None.

    Parameters
    ----------
    X : array-like
        A NumPy array (no names), a pandas or polars DataFrame, or any
        object with a `columns` sequence.

    Returns
    -------
    names : list of str, or None
        None when X has no columns attribute or its names are not all strings
        (a frame with default integer column labels has no names to keep).
    """
    columns = getattr(X, "columns", None)
    if columns is None or isinstance(X, np.ndarray):
        return None
    try:
        names = list(columns)
    except TypeError:
        return None
    if not names or not all(isinstance(name, str) for name in names):
        return None
    return names


def non_finite_message(name: str, dtype: DTypeLike) -> str:
    """The error of inputs that hold NaN or infinity (after the cast to `dtype`)."""
    return f"{name} contains NaN or infinity (or values too large for {np.dtype(dtype).name})"


def check_inputs(X: ArrayLike, n_features: int, dtype: DTypeLike, name: str = "X",
                 check_finite: bool = True) -> FloatArray:
    """Return X as a finite C-contiguous 2-D array of `dtype`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Any memory layout; read-only arrays are fine (never written).
    n_features : int
        Width the network expects.
    dtype : type
        np.float32 or np.float64.
    check_finite : bool
        False leaves the check for NaN and infinity to the caller (Trainer.fit
        has the epoch kernel do it as it reads the batches).
    """
    array = _as_real_array(X, name)
    if array.ndim == 1 and array.shape[0] == n_features:
        raise ValueError(
            f"{name} must be 2-D of shape (n_samples, {n_features}), got shape {array.shape}: "
            f"for a single sample use {name}.reshape(1, -1)"
        )
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D of shape (n_samples, {n_features}), got shape {array.shape}"
        )
    if array.shape[0] < 1:
        raise ValueError(f"{name} must have at least one sample, got shape {array.shape}")
    if array.shape[1] != n_features:
        raise ValueError(
            f"{name} must have {n_features} features (columns) for this network, "
            f"got shape {array.shape}"
        )
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, dtype=dtype)
    if check_finite and not all_finite(array):
        raise ValueError(non_finite_message(name, dtype))
    return array


def check_targets(Y: ArrayLike, n_samples: int, n_outputs: int, dtype: DTypeLike,
                  name: str = "Y") -> tuple[FloatArray, bool]:
    """Return targets as a finite C-contiguous (n_samples, n_outputs) array.

    A 1-D array of integer class labels in [0, n_outputs) is one-hot encoded;
    with a single output a 1-D array is taken as that output's column.

    Returns
    -------
    targets : ndarray of shape (n_samples, n_outputs)
    is_labels : bool
        True when Y was given as class labels (or one output of 0/1 values).
    """
    array = _as_real_array(Y, name)
    if array.ndim == 1 and n_outputs > 1:
        if array.shape[0] != n_samples:
            raise ValueError(f"{name} has {array.shape[0]} labels for {n_samples} samples in X")
        if np.issubdtype(array.dtype, np.floating):
            if not np.isfinite(array).all() or not np.all(array == np.round(array)):
                raise ValueError(
                    f"{name} as a 1-D array must hold integer class labels in [0, {n_outputs})"
                )
        elif array.dtype == np.bool_:
            array = array.astype(np.intp)
        if array.size and (array.min() < 0 or array.max() >= n_outputs):
            raise ValueError(
                f"{name} labels must lie in [0, {n_outputs}) for a network with "
                f"{n_outputs} outputs, got values in [{array.min()}, {array.max()}]"
            )
        targets = np.zeros((n_samples, n_outputs), dtype=dtype)
        targets[np.arange(n_samples), array.astype(np.intp)] = 1
        return targets, True
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 1-D class labels or 2-D of shape (n_samples, {n_outputs}), "
            f"got shape {array.shape}"
        )
    if array.shape != (n_samples, n_outputs):
        raise ValueError(
            f"{name} must have shape ({n_samples}, {n_outputs}) to match X and the "
            f"network's outputs, got {array.shape}"
        )
    with np.errstate(over="ignore"):
        targets = np.ascontiguousarray(array, dtype=dtype)
    if not all_finite(targets):
        raise ValueError(f"{name} contains NaN or infinity")
    if n_outputs == 1:
        is_labels = bool(np.isin(targets, (0, 1)).all())
    else:
        is_labels = _kernels.one_hot_rows(targets)
    return targets, is_labels


def check_sample_weight(sample_weight: ArrayLike | None, n_samples: int, dtype: DTypeLike,
                        name: str = "sample_weight") -> FloatArray | None:
    """Per-sample weights as the kernels take them, or None for None.

    The rules of scikit-learn's ``_check_sample_weight`` (with
    ``ensure_non_negative=True``): a 1-D array of real numbers, one per
    sample, finite, non-negative and not all zero; a scalar weighs every
    sample alike (as scikit-learn broadcasts it).

    Parameters
    ----------
    sample_weight : array-like of shape (n_samples,), float or None
        The weights w_i.
    n_samples : int
        The number of samples they must match.
    dtype : np.float32 or np.float64
        The network's dtype, which the returned array has.
    name : str
        The argument's name in error messages.

    Returns
    -------
    sample_weight : ndarray of shape (n_samples,) or None
        C-contiguous, of `dtype`; None when `sample_weight` is None.
    """
    if sample_weight is None:
        return None
    weights = _as_real_array(sample_weight, name)
    if weights.ndim == 0:
        weights = np.full(n_samples, weights)
    if weights.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of one weight per sample or a scalar, "
                         f"got "
                         f"{weights.ndim} dimensions (shape {weights.shape})")
    if weights.shape[0] != n_samples:
        raise ValueError(f"{name} has {weights.shape[0]} weights for {n_samples} samples: "
                         f"give one weight per sample")
    with np.errstate(over="ignore", invalid="ignore"):   # refused just below
        weights = np.ascontiguousarray(weights, dtype=dtype)
    if not all_finite(weights):
        raise ValueError(f"{name} holds NaN or infinity (in {np.dtype(dtype).name}): "
                         f"weights must be finite")
    if n_samples and float(weights.min()) < 0:
        raise ValueError(f"{name} holds negative weights (down to "
                         f"{float(weights.min()):g}): weights must be >= 0")
    if n_samples and not float(weights.max()) > 0:
        raise ValueError(f"{name} is all zeros: at least one sample needs a positive weight")
    return weights


def held_out_split(Y: NDArray[Any], is_labels: bool, fraction: float,
                   rng: np.random.Generator) -> tuple[IntArray, IntArray]:
    """Index arrays (train, held_out) of a validation split, drawn from the generator `rng`.

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_outputs)
        Targets as `check_targets` returns them.
    is_labels : bool
        Whether Y holds classes (one-hot rows, or one 0/1 output).
    fraction : float in (0, 1)
        Share of the samples to hold out.
    rng : numpy.random.Generator

    Returns
    -------
    train, held_out : ndarray of int
        Sorted row indices. With class labels every class gives
        round(fraction * its count) samples (at least one when it has two or
        more), so both parts keep the class proportions.
    """
    n_samples = Y.shape[0]
    if is_labels:
        labels = Y.argmax(axis=1) if Y.shape[1] > 1 else (Y[:, 0] >= 0.5).astype(np.intp)
        held = []
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            count = int(round(fraction * members.size))
            if count == 0 and members.size > 1:
                count = 1
            held.append(rng.permutation(members)[:count])
        held_out = np.sort(np.concatenate(held))
    else:
        count = int(round(fraction * n_samples))
        held_out = np.sort(rng.permutation(n_samples)[:count])
    if held_out.size == 0 or held_out.size == n_samples:
        raise ValueError(
            f"validation_split={fraction} leaves {n_samples - held_out.size} training and "
            f"{held_out.size} validation samples of {n_samples}; both must be non-empty"
        )
    train = np.setdiff1d(np.arange(n_samples), held_out, assume_unique=True)
    return train, held_out
