"""Type stubs of the compiled kernel module (_kernels.pyx).

Each entry point taking a ``floating`` memoryview is a Cython fused function:
all of its float arrays share one dtype, float32 or float64 (the overloads
say so). Sizes are ``intp`` vectors, activation codes ``intc`` vectors, and
every array must be C-contiguous.
"""

from typing import Any, Final, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)
_Sizes = NDArray[np.intp]
_Codes = NDArray[np.intc]

# activation codes f_l
IDENTITY: Final[int]
SIGMOID: Final[int]
TANH: Final[int]
RELU: Final[int]
SOFTMAX: Final[int]
EXP: Final[int]
# loss codes
MSE: Final[int]
CROSS_ENTROPY: Final[int]
POISSON: Final[int]
# update-rule kinds (the `kind` of a rule dict)
SGD: Final[int]
RMSPROP: Final[int]
ADAM: Final[int]

_RULE_KEYS: frozenset[str]

class NonFiniteInput(ValueError):
    """train_epoch(check_inputs=True) met NaN or infinity in X."""

def _set_small_batch(rows: int) -> int: ...
def _set_avx2_rules(on: bool) -> bool: ...
def _set_avx512_gemm(on: bool) -> bool: ...
def small_batch_kernels() -> str: ...
def all_finite(values: NDArray[np.float32] | NDArray[np.float64]) -> bool: ...
def one_hot_rows(Y: NDArray[np.float32] | NDArray[np.float64]) -> bool: ...
def parameter_count(sizes: _Sizes) -> int: ...
def workspace_size(sizes: _Sizes, capacity: int) -> int: ...
def needs_gradients(rule: dict[str, Any]) -> bool: ...
def penalty(params: NDArray[np.float32] | NDArray[np.float64], sizes: _Sizes,
            l2: float, l1: float) -> float: ...
def train_epoch(
    params: NDArray[_F],
    grads: NDArray[_F],
    moment1: NDArray[_F],
    moment2: NDArray[_F],
    sizes: _Sizes,
    activations: _Codes,
    loss: int,
    X: NDArray[_F],
    Y: NDArray[_F],
    order: _Sizes,
    batch_size: int,
    work: NDArray[_F],
    progress: NDArray[np.float64],
    rule: dict[str, Any],
    step: int = 0,
    check_signals: bool = False,
    check_inputs: bool = False,
    grad_norms: NDArray[np.float64] | None = None,
    sample_weight: NDArray[_F] | None = None,
    l2_per_sample: bool = False,
) -> tuple[float, float]: ...
def loss_and_gradients(
    params: NDArray[_F],
    grads: NDArray[_F],
    sizes: _Sizes,
    activations: _Codes,
    loss: int,
    X: NDArray[_F],
    Y: NDArray[_F],
    work: NDArray[_F],
    l2: float,
    l1: float = 0.0,
    sample_weight: NDArray[_F] | None = None,
    l2_per_sample: bool = False,
    capacity: int = 0,
) -> tuple[float, float]: ...
def forward(
    params: NDArray[_F],
    sizes: _Sizes,
    activations: _Codes,
    loss: int,
    X: NDArray[_F],
    Y: NDArray[_F],
    out: NDArray[_F],
    work: NDArray[_F],
    capacity: int,
    check_signals: bool = False,
    sample_weight: NDArray[_F] | None = None,
) -> tuple[float, float]: ...
