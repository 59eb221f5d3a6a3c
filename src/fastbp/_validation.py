"""Checks at the Python boundary: hyperparameter constraints and input arrays.

Everything a kernel receives passes through here first, so that the kernels
can trust their arguments. Every failure is a ValueError or TypeError that
names the argument and says what was expected.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import _kernels

__all__ = [
    "Interval",
    "Options",
    "check_params",
    "check_inputs",
    "non_finite_message",
    "check_targets",
    "check_dtype",
]


@dataclass(frozen=True)
class Interval:
    """A real (or integer) number in [low, high], each end open or closed.

    ``None`` for an end means unbounded on that side.
    """

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right" or "neither"

    def describe(self):
        kind = "an integer" if self.kind is numbers.Integral else "a real number"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        low = "-inf" if self.low is None else repr(self.low)
        high = "inf" if self.high is None else repr(self.high)
        return f"{kind} in {left}{low}, {high}{right}"

    def accepts_type(self, value):
        if isinstance(value, (bool, np.bool_)):
            return False
        if self.kind is numbers.Integral:
            return isinstance(value, numbers.Integral)
        return isinstance(value, numbers.Real)

    def contains(self, value):
        if self.kind is not numbers.Integral and not np.isfinite(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings (or booleans, or None)."""

    values: tuple

    def describe(self):
        return "one of " + ", ".join(repr(v) for v in self.values)


def check_params(params, constraints):
    """Check each named value against its constraint.

    Parameters
    ----------
    params : dict
        Parameter name -> value.
    constraints : dict
        Parameter name -> Interval or Options.

    Raises
    ------
    TypeError
        When a value has the wrong type (a string where a number is wanted).
    ValueError
        When a value has the right type but lies outside its constraint.
    """
    for name, constraint in constraints.items():
        if name not in params:
            continue
        value = params[name]
        if isinstance(constraint, Interval):
            if not constraint.accepts_type(value):
                raise TypeError(
                    f"{name} must be {constraint.describe()}, got {value!r} "
                    f"of type {type(value).__name__}"
                )
            if not constraint.contains(value):
                raise ValueError(f"{name} must be {constraint.describe()}, got {value!r}")
        else:
            if any(type(value) is type(v) and value == v for v in constraint.values):
                continue
            raise ValueError(f"{name} must be {constraint.describe()}, got {value!r}")


def check_dtype(dtype):
    """Return np.float32 or np.float64 for a dtype-like, or raise naming `dtype`."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from exc
    if resolved not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved.type


def _all_finite(array):
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


def _as_real_array(value, name):
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


def non_finite_message(name, dtype):
    """The error of inputs that hold NaN or infinity (after the cast to `dtype`)."""
    return f"{name} contains NaN or infinity (or values too large for {np.dtype(dtype).name})"


def check_inputs(X, n_features, dtype, name="X", check_finite=True):
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
    if check_finite and not _all_finite(array):
        raise ValueError(non_finite_message(name, dtype))
    return array


def check_targets(Y, n_samples, n_outputs, dtype, name="Y"):
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
    if not _all_finite(targets):
        raise ValueError(f"{name} contains NaN or infinity")
    if n_outputs == 1:
        is_labels = bool(np.isin(targets, (0, 1)).all())
    else:
        is_labels = _kernels.one_hot_rows(targets)
    return targets, is_labels
