"""Gradient diagnostics: check backpropagation against finite differences.

`gradient_check` is for users who change the maths (a new activation, loss
or penalty): like PyTorch's ``torch.autograd.gradcheck``, it compares the
analytic gradients of `Trainer.loss_and_gradients` with central differences
of the objective J, penalties included, and reports the largest relative
error of each layer. The per-epoch gradient norms of training are
``Trainer.fit(..., grad_norms=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["LayerCheck", "gradient_check"]


@dataclass(frozen=True)
class LayerCheck:
    """The outcome of `gradient_check` for one layer.

    Attributes
    ----------
    layer : int
        l, from 1 (the first hidden layer) to L (the output layer).
    weights : float
        Largest relative error |g - g_fd| / max(|g|, |g_fd|, tiny) over the
        checked entries of dJ/dW^l.
    biases : float
        The same over the checked entries of dJ/db^l.
    checked_weights, checked_biases : int
        How many entries were checked.
    n_weights, n_biases : int
        How many there are.
    """

    layer: int
    weights: float
    biases: float
    checked_weights: int
    checked_biases: int
    n_weights: int
    n_biases: int

    @property
    def max_error(self) -> float:
        """The larger of the weights' and the biases' errors."""
        return max(self.weights, self.biases)

    def __repr__(self) -> str:
        return (f"LayerCheck(layer={self.layer}, weights={self.weights:.2e}, "
                f"biases={self.biases:.2e}, checked {self.checked_weights} of "
                f"{self.n_weights} weights and {self.checked_biases} of {self.n_biases} "
                f"biases)")


def _float64_twin(trainer: Trainer) -> Trainer:
    """The trainer and its network in float64, same parameters and settings."""
    from .network import Network
    from .trainer import Trainer

    net = trainer.network
    twin = Network(net.layer_sizes, activation=net.activation, output=net.output,
                   dtype="float64")
    twin.set_parameters(net.get_parameters().astype(np.float64))
    return Trainer(twin, **trainer.get_config())


def _entries(size: int, max_entries: int | None, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to check: all of them, or `max_entries` drawn without replacement."""
    if max_entries is None or size <= max_entries:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_entries, replace=False))


def gradient_check(trainer: Trainer, X: ArrayLike, Y: ArrayLike, epsilon: float = 1e-6, *,
                   max_entries: int | None = 200, tiny: float = 1e-3,
                   seed: int | None = 0) -> list[LayerCheck]:
    """Compare `trainer.loss_and_gradients` with central differences of J.

    For each checked parameter p (an entry of W^l or b^l), the finite
    difference is ``g_fd = (J(p + epsilon) - J(p - epsilon)) / (2 epsilon)``
    with J the objective on the batch (X, Y) as `loss_and_gradients` returns
    it (L2 and L1 penalties included), and the error is
    ``|g - g_fd| / max(|g|, |g_fd|, tiny)``. The parameters are put back
    exactly afterwards; nothing else changes.

    Parameters
    ----------
    trainer : Trainer
        The trainer whose loss, penalties and network are checked.
    X : array-like of shape (n_samples, n_0)
        A batch of inputs; a few dozen rows are plenty.
    Y : array-like of shape (n_samples, n_L), or (n_samples,) class labels
        Its targets.
    epsilon : float > 0
        Step of the central differences. Their error is about
        ``epsilon**2 |J'''|`` plus the rounding of J over epsilon,
        ~1e-16 |J| / epsilon in float64: 1e-6 balances the two.
    max_entries : int >= 1 or None
        Check at most this many weights and this many biases per layer,
        drawn at random without replacement (two evaluations of J each);
        None checks every entry.
    tiny : float > 0
        Floor of the denominator: entries whose gradients are both below it
        are compared in absolute terms, relative to `tiny`, since the finite
        differences cannot resolve them better: the rounding of J gives g_fd
        about 1e-9 (|J| + 1) of noise at epsilon = 1e-6 (measured on small
        float64 networks), 1e-6 of the default floor.
    seed : int or None
        Seed of the draw of entries.

    Returns
    -------
    checks : list of LayerCheck
        One per layer, l = 1..L; a correct float64 network gives errors
        around 1e-8 and below, a wrong gradient errors near 1.

    Notes
    -----
    float64 networks are recommended. For a float32 network the check runs
    on a float64 copy of the network and trainer (the same kernels in
    double precision, with the same settings and parameters), since float32
    rounding (~1e-7 of J) would swamp the differences; the maths checked is
    the same, the float32 rounding is not.
    """
    from .trainer import Trainer

    if not isinstance(trainer, Trainer):
        raise TypeError(f"trainer must be a fastbp.Trainer, got {type(trainer).__name__}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"epsilon must be a float > 0, got {epsilon!r}")
    if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(
            max_entries, (int, np.integer)) or max_entries < 1):
        raise ValueError(f"max_entries must be an int >= 1 or None, got {max_entries!r}")
    if isinstance(tiny, bool) or not isinstance(tiny, (int, float)) or not tiny > 0:
        raise ValueError(f"tiny must be a float > 0, got {tiny!r}")
    if trainer.network.dtype != np.float64:
        trainer = _float64_twin(trainer)
    # checked and converted once, by the trainer's own rules
    X, Y, _ = trainer._check_data(X, Y)
    _, grad_weights, grad_biases = trainer.loss_and_gradients(X, Y)
    rng = np.random.default_rng(seed)
    net = trainer.network

    def objective() -> float:
        return trainer.loss_and_gradients(X, Y)[0]

    def worst(parameter: np.ndarray, gradient: np.ndarray) -> tuple[float, int]:
        flat = parameter.reshape(-1)            # a view: the live parameters
        analytic = np.asarray(gradient, dtype=np.float64).reshape(-1)
        indices = _entries(flat.size, max_entries, rng)
        largest = 0.0
        for index in indices:
            kept = flat[index]
            flat[index] = kept + epsilon
            above = objective()
            flat[index] = kept - epsilon
            below = objective()
            flat[index] = kept
            numeric = (above - below) / (2 * epsilon)
            g = analytic[index]
            error = abs(g - numeric) / max(abs(g), abs(numeric), tiny)
            largest = max(largest, error)
        return largest, len(indices)

    checks = []
    for l, (weights, biases) in enumerate(zip(net.weights, net.biases), start=1):
        weight_error, n_w = worst(weights, grad_weights[l - 1])
        bias_error, n_b = worst(biases, grad_biases[l - 1])
        checks.append(LayerCheck(l, weight_error, bias_error, n_w, n_b, weights.size,
                                 biases.size))
    return checks
