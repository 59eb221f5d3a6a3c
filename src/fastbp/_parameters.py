"""The flat parameter vector: its per-layer views and checked assignment.

Every parameter-shaped vector of a network (the parameters, gradients and
optimizer state) is laid out as [W^1, b^1, W^2, b^2, ...], with W^l of
shape (n_l, n_{l-1}) in C order. `layer_views` is the one Python place that
knows the layout (the kernels' `_layer_views` is its C twin).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, SupportsIndex, TypeVar

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

if TYPE_CHECKING:
    from ._typing import FloatArray

__all__ = ["layer_views", "ParameterList", "checked_parameter"]

_Scalar = TypeVar("_Scalar", bound=np.generic)


def layer_views(
    vector: NDArray[_Scalar], sizes: Sequence[int] | NDArray[np.integer[Any]]
) -> tuple[list[NDArray[_Scalar]], list[NDArray[_Scalar]]]:
    """Per-layer views into a vector with the flat parameter layout.

    Parameters
    ----------
    vector : ndarray of shape (n_parameters,)
    sizes : sequence of int
        ``[n_0, ..., n_L]``.

    Returns
    -------
    weights : list of ndarray of shape (n_l, n_{l-1})
    biases : list of ndarray of shape (n_l,)
        Views (not copies) into `vector`.
    """
    weights: list[NDArray[_Scalar]] = []
    biases: list[NDArray[_Scalar]] = []
    offset = 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        fan_in, fan_out = int(fan_in), int(fan_out)
        weights.append(vector[offset:offset + fan_out * fan_in].reshape(fan_out, fan_in))
        offset += fan_out * fan_in
        biases.append(vector[offset:offset + fan_out])
        offset += fan_out
    return weights, biases


def checked_parameter(value: ArrayLike, shape: tuple[int, ...], dtype: DTypeLike,
                      name: str) -> FloatArray:
    """`value` as an array of `shape` and `dtype`, finite once in that dtype."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers: {exc}") from exc
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    with np.errstate(over="ignore"):
        # 1e300 is finite as float64 and infinite as float32: check what is stored
        array = array.astype(dtype, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} contains NaN or infinity (or values beyond the range of {np.dtype(dtype)})"
        )
    return array


class ParameterList(list["FloatArray"]):
    """The live per-layer arrays; item assignment copies into the parameters.

    ``net.weights[0] = new`` writes `new` into the network (after checking its
    shape and finiteness) instead of rebinding a list slot the kernels never
    see. The list cannot grow or shrink.
    """

    def __init__(self, arrays: Sequence[FloatArray], kind: str) -> None:
        super().__init__(arrays)
        self._kind = kind

    def __setitem__(self, index: SupportsIndex | slice, value: ArrayLike) -> None:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError(f"assign {self._kind} one layer at a time")
        target = list.__getitem__(self, index)
        target[...] = checked_parameter(value, target.shape, target.dtype,
                                        f"{self._kind}[{index}]")

    def _fixed(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"the list of {self._kind} has one entry per layer and cannot change length")

    append = extend = insert = pop = remove = clear = _fixed
    __delitem__ = __iadd__ = __imul__ = _fixed
    sort = reverse = _fixed
