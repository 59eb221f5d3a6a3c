"""The maths of fastbp (README: "The maths in brief") in plain, vectorized NumPy.

This module is the *oracle* for the tests and the *baseline* for the
benchmarks, so it is written for clarity, straight from the formulas: one
matmul per layer per batch, new arrays allocated freely. It imports nothing
from the rest of fastbp.

Notation (the seed texts'): layers l = 1..L with sizes n_0 .. n_L, weights
W^l of shape (n_l, n_{l-1}), biases b^l of shape (n_l,), a batch stored as
rows, A^0 = X of shape (m, n_0), and

    Z^l = A^{l-1} (W^l)^T + b^l,    A^l = f_l(Z^l)

with f a hidden activation and g = f_L the output function. The objective on
a batch of m samples is

    J = (1/m) sum_i C_i + (l2 / 2) sum_l ||W^l||_F^2 + l1 sum_l |W^l|_1

and biases are never regularized. `train_epoch` implements the optimizers of
`fastbp.Trainer` (sgd with momentum or Nesterov momentum, rmsprop, adam,
adamw) from their published update rules.

Every computation stays in the parameters' dtype: X, Y and the scalar
hyperparameters are cast to it, so float32 is never upcast to float64.
Underflow to zero (e.g. sigmoid(-1e4), exp of a very negative softmax
argument) is the correct saturated value and is silenced locally; overflow
cannot happen because every exponential takes a non-positive argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

# (type names only: the oracle imports nothing from the rest of fastbp)
Array = NDArray[Any]

__all__ = [
    "ACTIVATIONS",
    "OUTPUTS",
    "LOSSES",
    "OPTIMIZERS",
    "forward",
    "loss",
    "loss_and_gradients",
    "train_epoch",
]

ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")  # hidden layers
OUTPUTS = ("sigmoid", "softmax", "identity", "exp")
LOSSES = ("mse", "cross_entropy", "poisson")
OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")


# --------------------------------------------------------------------------
# Validation of the string arguments (the only validation this oracle does)
# --------------------------------------------------------------------------


def _check_option(name: str, value: object, options: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")


def _hidden_activations(activation: str | Sequence[str], n_layers: int) -> list[str]:
    """Return the list of the L-1 hidden activation names."""
    if isinstance(activation, str):
        _check_option("activation", activation, ACTIVATIONS)
        return [activation] * (n_layers - 1)
    names = list(activation)
    if len(names) != n_layers - 1:
        raise ValueError(
            f"activation must be a str or a list of one str per hidden layer "
            f"({n_layers - 1}), got a list of length {len(names)}"
        )
    for name in names:
        _check_option("activation", name, ACTIVATIONS)
    return names


def _check_output_and_loss(output: str, loss_name: str) -> None:
    _check_option("output", output, OUTPUTS)
    _check_option("loss", loss_name, LOSSES)
    if loss_name == "cross_entropy" and output not in ("sigmoid", "softmax"):
        raise ValueError(
            "loss='cross_entropy' needs output 'sigmoid' or 'softmax' "
            f"(outputs in (0, 1)), got output={output!r}; use loss='mse' "
            "for an identity output"
        )
    if loss_name == "poisson" and output != "exp":
        raise ValueError(f"loss='poisson' needs output 'exp' (the log link), got {output!r}")


def _as_dtype(array: ArrayLike, dtype: DTypeLike) -> Array:
    return np.asarray(array, dtype=dtype)


# --------------------------------------------------------------------------
# Element-wise functions, numerically stable
# --------------------------------------------------------------------------


def _sigmoid(Z: Array) -> Array:
    """sigma(z) = 1 / (1 + exp(-z)), with exp only of -|z| <= 0."""
    exp_minus_abs = np.exp(-np.abs(Z))
    # z >= 0: 1 / (1 + e^{-z});  z < 0: e^{z} / (1 + e^{z})
    return np.where(Z >= 0, 1 / (1 + exp_minus_abs), exp_minus_abs / (1 + exp_minus_abs))


def _softmax(Z: Array) -> Array:
    """softmax(z)_k = exp(z_k - max z) / sum_j exp(z_j - max z), row by row."""
    exp_shifted = np.exp(Z - Z.max(axis=1, keepdims=True))
    return exp_shifted / exp_shifted.sum(axis=1, keepdims=True)


def _log_softmax(Z: Array) -> Array:
    """log a_k = (z_k - max z) - log sum_j exp(z_j - max z), row by row."""
    shifted = Z - Z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _softplus(T: Array) -> Array:
    """softplus(t) = log(1 + e^t) = max(t, 0) + log1p(exp(-|t|))."""
    return np.maximum(T, 0) + np.log1p(np.exp(-np.abs(T)))


def _apply(name: str, Z: Array) -> Array:
    if name == "sigmoid":
        return _sigmoid(Z)
    if name == "tanh":
        return np.tanh(Z)
    if name == "relu":
        return np.maximum(Z, 0)
    if name == "softmax":
        return _softmax(Z)
    if name == "exp":
        return np.exp(Z)
    return Z  # identity: Z^l is a fresh array already


def _derivative_from_activation(name: str, A: Array) -> Array:
    """f'(z) expressed through the cached activation a = f(z)."""
    if name == "sigmoid":
        return A * (1 - A)
    if name == "tanh":
        return 1 - A * A
    if name == "relu":
        return (A > 0).astype(A.dtype)
    return np.ones_like(A)  # identity


# --------------------------------------------------------------------------
# Forward pass and cost
# --------------------------------------------------------------------------


def _forward(weights: Sequence[Array], biases: Sequence[Array], X: Array, hidden: Sequence[str],
             output: str) -> tuple[list[Array], Array]:
    """Return ([A^0, ..., A^L], Z^L); Z^L is kept for the stable log terms."""
    activations = [X]
    n_layers = len(weights)
    for layer, (W, b) in enumerate(zip(weights, biases), start=1):
        # Z^l = A^{l-1} (W^l)^T + b^l
        Z = activations[-1] @ W.T + b
        name = output if layer == n_layers else hidden[layer - 1]
        activations.append(_apply(name, Z))
    return activations, Z


def _costs(A_out: Array, Z_out: Array, Y: Array, output: str, loss_name: str) -> Array:
    """Per-sample costs C_i, shape (m,)."""
    if loss_name == "mse":
        # C = 1/2 sum_k (a_k - y_k)^2
        return 0.5 * np.sum((A_out - Y) ** 2, axis=1)
    if loss_name == "poisson":
        # half deviance C = sum_k y_k log(y_k / a_k) - y_k + a_k, log a_k = z_k
        log_y = np.log(np.where(Y > 0, Y, 1))
        return np.sum(Y * (log_y - Z_out) - Y + A_out, axis=1)
    if output == "softmax":
        # C = -sum_k y_k log a_k, log a from Z by log-sum-exp
        return -np.sum(Y * _log_softmax(Z_out), axis=1)
    # sigmoid: C = -sum_k [y_k log a_k + (1 - y_k) log(1 - a_k)]
    # with -log a = softplus(-z) and -log(1 - a) = softplus(z)
    return np.sum(Y * _softplus(-Z_out) + (1 - Y) * _softplus(Z_out), axis=1)


def _objective(weights: Sequence[Array], costs: Array, l2: Any, l1: Any = 0.0,
               sample_weight: Array | None = None) -> Any:
    """J = (1/m) sum_i C_i + (l2 / 2) sum_l ||W^l||_F^2 + l1 sum_l |W^l|_1.

    With sample weights the data term is the weighted mean
    sum_i w_i C_i / sum_i w_i.
    """
    penalty = sum(np.sum(W * W) for W in weights)
    data = costs.mean() if sample_weight is None else (
        np.dot(sample_weight, costs) / np.sum(sample_weight))
    J = data + (l2 / 2) * penalty
    if l1:
        J = J + l1 * sum(np.sum(np.abs(W)) for W in weights)
    return J


def forward(weights: Sequence[Array], biases: Sequence[Array], X: ArrayLike,
            activation: str | Sequence[str] = "sigmoid", output: str = "sigmoid") -> list[Array]:
    """Run the network forward and return every layer's activations.

    Parameters
    ----------
    weights : list of L ndarrays of shape (n_l, n_{l-1})
        W^l; row k holds the weights into node k of layer l.
    biases : list of L ndarrays of shape (n_l,)
        b^l.
    X : ndarray of shape (n_samples, n_0)
        Inputs, one sample per row; cast to the parameters' dtype.
    activation : str or list of str
        Hidden activation f, one of ``ACTIVATIONS``: a str for every hidden
        layer, or a list of L - 1 names, one per hidden layer.
    output : str
        Output function g, one of ``OUTPUTS``.

    Returns
    -------
    activations : list of L + 1 ndarrays of shape (n_samples, n_l)
        [A^0 = X, A^1, ..., A^L].
    """
    hidden = _hidden_activations(activation, len(weights))
    _check_option("output", output, OUTPUTS)
    inputs = _as_dtype(X, weights[0].dtype)
    with np.errstate(under="ignore"):
        activations, _ = _forward(weights, biases, inputs, hidden, output)
    return activations


def loss(weights: Sequence[Array], biases: Sequence[Array], X: ArrayLike, Y: ArrayLike,
         activation: str | Sequence[str] = "sigmoid", output: str = "sigmoid",
         loss: str = "mse", l2: float = 0.0, l1: float = 0.0,
         sample_weight: ArrayLike | None = None) -> float:
    """Objective J on the batch (X, Y).

    J = (1/m) sum_i C_i + (l2 / 2) sum_l ||W^l||_F^2 + l1 sum_l |W^l|_1,
    with C the per-sample cost (mse: 1/2 ||a - y||^2; cross_entropy: -sum y log a for a softmax
    output, -sum [y log a + (1 - y) log(1 - a)] for a sigmoid output).

    Parameters
    ----------
    weights : list of L ndarrays of shape (n_l, n_{l-1})
        W^l.
    biases : list of L ndarrays of shape (n_l,)
        b^l.
    X : ndarray of shape (m, n_0)
        Inputs.
    Y : ndarray of shape (m, n_L)
        Targets.
    activation : str or list of str
        Hidden activation(s), see `forward`.
    output : str
        Output function, one of ``OUTPUTS``.
    loss : str
        Per-sample cost, one of ``LOSSES``; cross_entropy needs a sigmoid or
        softmax output.
    l2 : float >= 0
        L2 penalty lambda on the weights (not the biases).
    l1 : float >= 0
        L1 penalty on the weights (not the biases).
    sample_weight : ndarray of shape (m,), optional
        Weights w_i >= 0 (not all 0): the data term becomes
        sum_i w_i C_i / sum_i w_i.

    Returns
    -------
    J : float
        The objective, computed in the parameters' dtype.
    """
    loss_name = loss
    hidden = _hidden_activations(activation, len(weights))
    _check_output_and_loss(output, loss_name)
    dtype = weights[0].dtype
    inputs, targets = _as_dtype(X, dtype), _as_dtype(Y, dtype)
    with np.errstate(under="ignore"):
        activations, Z_out = _forward(weights, biases, inputs, hidden, output)
        costs = _costs(activations[-1], Z_out, targets, output, loss_name)
        sw = None if sample_weight is None else _as_dtype(sample_weight, dtype)
        return float(_objective(weights, costs, dtype.type(l2), dtype.type(l1), sw))


def _output_delta(A_out: Array, Y: Array, output: str, loss_name: str) -> Array:
    """delta^L = g'(A^L) * dC/dA^L, shape (m, n_L)."""
    G = A_out - Y  # dC/dA^L for mse
    if loss_name in ("cross_entropy", "poisson") or output == "identity":
        # softmax + CE, sigmoid + CE, exp + poisson and identity + mse: the
        # canonical links, all A^L - Y
        return G
    if output == "exp":
        # exp + mse: delta^L = (A^L - Y) * a
        return G * A_out
    if output == "sigmoid":
        # delta^L = (A^L - Y) * a (1 - a)
        return G * A_out * (1 - A_out)
    # softmax + mse: the softmax Jacobian diag(a) - a a^T applied to G
    # delta^L = A^L * (G - rowsum(A^L * G))
    return A_out * (G - np.sum(A_out * G, axis=1, keepdims=True))


def loss_and_gradients(
    weights: Sequence[Array], biases: Sequence[Array], X: ArrayLike, Y: ArrayLike,
    activation: str | Sequence[str] = "sigmoid", output: str = "sigmoid", loss: str = "mse",
    l2: float = 0.0, l1: float = 0.0, sample_weight: ArrayLike | None = None,
    l2_per_sample: bool = False,
) -> tuple[float, list[Array], list[Array]]:
    """Objective J on the batch (X, Y) and its gradients, by backpropagation.

    Parameters
    ----------
    weights : list of L ndarrays of shape (n_l, n_{l-1})
        W^l.
    biases : list of L ndarrays of shape (n_l,)
        b^l.
    X : ndarray of shape (m, n_0)
        Inputs.
    Y : ndarray of shape (m, n_L)
        Targets.
    activation : str or list of str
        Hidden activation(s), see `forward`.
    output : str
        Output function, one of ``OUTPUTS``.
    loss : str
        Per-sample cost, one of ``LOSSES``.
    l2 : float >= 0
        L2 penalty lambda on the weights (not the biases).
    l1 : float >= 0
        L1 penalty on the weights; its subgradient is l1 sign(W) (0 at 0).
    sample_weight : ndarray of shape (m,), optional
        Weights w_i >= 0 (not all 0). J's data term is sum_i w_i C_i / W
        with W = sum_i w_i, and its gradients follow: the data gradients
        are those of J, with each sample's contribution scaled by w_i and
        the sum divided by W instead of m.
    l2_per_sample : bool
        Use l2 / m (l2 / W with weights) as the L2 coefficient, in J and in
        its gradient: scikit-learn's alpha.

    Returns
    -------
    J : float
        The objective, as in `loss`.
    grad_weights : list of L ndarrays of shape (n_l, n_{l-1})
        dJ/dW^l, new arrays.
    grad_biases : list of L ndarrays of shape (n_l,)
        dJ/db^l, new arrays.
    """
    loss_name = loss
    n_layers = len(weights)
    hidden = _hidden_activations(activation, n_layers)
    _check_output_and_loss(output, loss_name)
    dtype = weights[0].dtype
    inputs, targets = _as_dtype(X, dtype), _as_dtype(Y, dtype)
    l2_ = dtype.type(l2)
    l1_ = dtype.type(l1)
    # the normaliser of the data terms: m, or the weight sum W
    sw = None if sample_weight is None else _as_dtype(sample_weight, dtype)
    m = inputs.shape[0] if sw is None else np.sum(sw)
    if l2_per_sample:
        # scikit-learn: (alpha / 2) ||W||^2 / m in J, alpha W / m in dJ/dW
        l2_ = dtype.type(l2 / (inputs.shape[0] if sw is None else float(np.sum(sw))))

    with np.errstate(under="ignore"):
        activations, Z_out = _forward(weights, biases, inputs, hidden, output)
        costs = _costs(activations[-1], Z_out, targets, output, loss_name)
        J = float(_objective(weights, costs, l2_, l1_, sw))

        grad_weights: list[Array] = [None] * n_layers  # type: ignore[list-item]  # filled below
        grad_biases: list[Array] = [None] * n_layers  # type: ignore[list-item]
        delta = _output_delta(activations[-1], targets, output, loss_name)
        if sw is not None:
            # dC_i/dz^L_i weighted by w_i: every layer's delta row i carries w_i
            delta = delta * sw[:, None]
        # Walk l = L..1; list index i = l - 1, so activations[i] is A^{l-1}.
        for i in range(n_layers - 1, -1, -1):
            # dJ/dW^l = (1/m) (delta^l)^T A^{l-1} + l2 W^l
            grad_weights[i] = (delta.T @ activations[i]) / m + l2_ * weights[i]
            if l1_:
                # + l1 sign(W^l), the subgradient of l1 |W^l|_1
                grad_weights[i] += l1_ * np.sign(weights[i])
            # dJ/db^l = (1/m) sum over rows of delta^l
            grad_biases[i] = delta.sum(axis=0) / m
            if i > 0:
                # delta^{l-1} = (delta^l W^l) * f'(A^{l-1})
                delta = (delta @ weights[i]) * _derivative_from_activation(
                    hidden[i - 1], activations[i]
                )
    return J, grad_weights, grad_biases


# --------------------------------------------------------------------------
# One epoch of mini-batch gradient descent
# --------------------------------------------------------------------------

# The state lists each optimizer keeps in `state`, every one holding 2L arrays
# [W^1, ..., W^L, b^1, ..., b^L]-shaped like `velocities`.
_STATE_NAMES: dict[str, tuple[str, ...]] = {
    "sgd": ("velocity",),
    "rmsprop": ("square_average",),
    "adam": ("first_moment", "second_moment"),
    "adamw": ("first_moment", "second_moment"),
}


def _check_optimizer_arguments(optimizer: str, momentum: float, nesterov: bool, l1: float,
                               weight_decay: float | None, rho: float, beta1: float,
                               beta2: float, epsilon: float, velocities: object,
                               state: object) -> None:
    """ValueError naming the first bad optimizer argument; changes nothing."""
    _check_option("optimizer", optimizer, OPTIMIZERS)
    checks = [
        ("momentum", momentum, 0 <= momentum <= 1, "in [0, 1]"),
        ("l1", l1, l1 >= 0, ">= 0"),
        ("weight_decay", weight_decay, weight_decay is None or weight_decay >= 0,
         "None or >= 0"),
        ("rho", rho, 0 <= rho < 1, "in [0, 1)"),
        ("beta1", beta1, 0 <= beta1 < 1, "in [0, 1)"),
        ("beta2", beta2, 0 <= beta2 < 1, "in [0, 1)"),
        ("epsilon", epsilon, epsilon > 0, "> 0"),
    ]
    for name, value, valid, expected in checks:
        if not valid:
            raise ValueError(f"{name} must be {expected}, got {value!r}")
    if momentum > 0 and optimizer != "sgd":
        raise ValueError(f"momentum applies to optimizer='sgd' only, got momentum={momentum!r} "
                         f"with optimizer={optimizer!r}")
    if nesterov not in (True, False):
        raise ValueError(f"nesterov must be True or False, got {nesterov!r}")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs optimizer='sgd' with momentum > 0")
    if state is not None and not isinstance(state, dict):
        raise ValueError(f"state must be a dict or None, got {type(state).__name__}")
    if state is not None and velocities is not None:
        raise ValueError("give velocities or state, not both")


def _optimizer_state(state: dict[str, Any], optimizer: str, names: Sequence[str],
                     parameters: Sequence[Array]) -> list[list[Array]]:
    """The state lists `names` of `optimizer` in `state`, created (zeros) when missing.

    State belongs to one optimizer: a dict last used by another one is
    started afresh, step count included.
    """
    if state.get("optimizer") != optimizer:
        state.clear()
        state.update(optimizer=optimizer, step=0)
    for name in names:
        if name not in state:
            state[name] = [np.zeros_like(p) for p in parameters]
    return [state[name] for name in names]


def train_epoch(weights: Sequence[Array], biases: Sequence[Array], X: ArrayLike, Y: ArrayLike,
                *, activation: str | Sequence[str] = "sigmoid", output: str = "sigmoid",
                loss: str = "mse", learning_rate: float = 3.0, batch_size: int = 10,
                l2: float = 0.0, momentum: float = 0.0, velocities: list[Array] | None = None,
                order: Sequence[int] | NDArray[np.integer[Any]] | None = None,
                optimizer: str = "sgd", nesterov: bool = False,
                l1: float = 0.0, weight_decay: float | None = None, rho: float = 0.9,
                beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                state: dict[str, Any] | None = None,
                sample_weight: ArrayLike | None = None, l2_per_sample: bool = False) -> float:
    """One epoch of mini-batch gradient descent, updating the parameters in place.

    The batches are X[order][0:b], X[order][b:2b], ... (b = batch_size), the
    last one possibly shorter. Each batch's J and gradients are taken at the
    parameters before that batch's update. With g = dJ/dW = data gradient
    + l2 W + l1 sign(W) for weights and the data gradient alone for biases,
    eta the learning rate and t the update count (1 for the first update):

    - ``sgd``: ``W <- W - eta g``; with momentum mu > 0 (heavy ball, each
      parameter its own velocity) ``v <- mu v - eta g; W <- W + v``, or with
      ``nesterov=True`` ``W <- W + mu v - eta g`` (v already updated);
    - ``rmsprop``: ``s <- rho s + (1 - rho) g^2; W <- W - eta g / (sqrt(s) + eps)``;
    - ``adam``: ``m <- beta1 m + (1 - beta1) g; v <- beta2 v + (1 - beta2) g^2;
      W <- W - eta mhat / (sqrt(vhat) + eps)``, ``mhat = m / (1 - beta1^t)``,
      ``vhat = v / (1 - beta2^t)``;
    - ``adamw``: adam with decoupled weight decay 0.01 by default.

    A decoupled weight decay wd > 0 (any optimizer) scales the weights, not
    the biases, before adding the optimizer's step: ``W <- W (1 - eta wd) + step``.

    Parameters
    ----------
    weights : list of L ndarrays of shape (n_l, n_{l-1})
        W^l, updated in place.
    biases : list of L ndarrays of shape (n_l,)
        b^l, updated in place.
    X : ndarray of shape (n_samples, n_0)
        Inputs.
    Y : ndarray of shape (n_samples, n_L)
        Targets.
    activation, output, loss : str
        As in `loss_and_gradients`.
    learning_rate : float > 0
        Step size eta.
    batch_size : int >= 1
        Mini-batch size b.
    l2 : float >= 0
        L2 penalty lambda on the weights.
    momentum : float in [0, 1]
        mu of ``sgd``; 0 is plain SGD.
    velocities : list of 2L ndarrays, optional
        [v_W1, ..., v_WL, v_b1, ..., v_bL], shapes matching the parameters,
        updated in place when ``momentum > 0``. None starts from zeros
        (allocated locally and discarded) unless `state` is given.
    order : ndarray of shape (n_samples,) of int, optional
        The permutation of the samples for this epoch; None is 0..n-1.
    optimizer : {'sgd', 'rmsprop', 'adam', 'adamw'}
        The update rule.
    nesterov : bool
        Nesterov momentum (``sgd`` with momentum > 0 only).
    l1 : float >= 0
        L1 penalty on the weights, subgradient l1 sign(W).
    weight_decay : float >= 0 or None
        Decoupled weight decay; None means 0.01 for ``adamw``, else 0.
    rho : float in [0, 1)
        RMSprop's decay.
    beta1, beta2 : float in [0, 1)
        Adam's moment decays.
    epsilon : float > 0
        RMSprop's and Adam's guard in the denominator.
    state : dict, optional
        The optimizer state, updated in place so that successive epochs
        continue: ``optimizer`` (name), ``step`` (updates made, t) and the
        rule's lists of 2L arrays shaped like `velocities` (``velocity``;
        ``square_average``; ``first_moment`` and ``second_moment``). An empty
        dict, or one left by another optimizer, starts from zeros. None
        keeps the state for this epoch only. Not together with `velocities`.
    sample_weight : ndarray of shape (n_samples,), optional
        Per-sample weights, permuted by `order` with the rows: each batch's
        J and gradients are those of `loss_and_gradients` with its weights.
        A batch whose weights sum to 0 is skipped (no update, no step).
    l2_per_sample : bool
        Each batch's L2 coefficient is l2 / m_B (l2 / W_B with weights), as
        in `loss_and_gradients`: the short last batch is penalised more.

    Returns
    -------
    mean_loss : float
        sum over batches of m_B J_B, divided by n_samples; with weights,
        sum over batches of W_B J_B divided by the total weight.

    Raises
    ------
    ValueError
        For a bad argument, naming it, before anything is changed.
    """
    n_layers = len(weights)
    _hidden_activations(activation, n_layers)
    _check_output_and_loss(output, loss)
    _check_optimizer_arguments(optimizer, momentum, nesterov, l1, weight_decay, rho,
                               beta1, beta2, epsilon, velocities, state)
    if weight_decay is None:
        weight_decay = 0.01 if optimizer == "adamw" else 0.0
    dtype = weights[0].dtype
    inputs, targets = _as_dtype(X, dtype), _as_dtype(Y, dtype)
    eta = dtype.type(learning_rate)
    mu = dtype.type(momentum)
    n_samples = inputs.shape[0]
    sw = None if sample_weight is None else _as_dtype(sample_weight, dtype)
    if order is not None:
        inputs, targets = inputs[order], targets[order]
        sw = None if sw is None else sw[order]
    parameters = list(weights) + list(biases)
    if state is None:
        state = {}
    if velocities is not None:
        state.update(optimizer="sgd", step=0, velocity=velocities)
    plain = optimizer == "sgd" and mu == 0
    moments = _optimizer_state(state, optimizer, () if plain else _STATE_NAMES[optimizer],
                               parameters)
    # the weights' decoupled decay factor (1 - eta wd); biases keep 1
    keep = dtype.type(1 - learning_rate * weight_decay)
    # Adam's bias corrections 1 - beta^t are taken in double precision
    decay1, decay2 = float(beta1), float(beta2)
    rho_, beta1_, beta2_, epsilon_ = (dtype.type(v) for v in (rho, beta1, beta2, epsilon))

    total = 0.0
    for start in range(0, n_samples, batch_size):
        X_batch = inputs[start:start + batch_size]
        Y_batch = targets[start:start + batch_size]
        w_batch = None if sw is None else sw[start:start + batch_size]
        if w_batch is not None and not np.sum(w_batch) > 0:
            continue
        J, grad_weights, grad_biases = loss_and_gradients(
            weights, biases, X_batch, Y_batch, activation=activation,
            output=output, loss=loss, l2=l2, l1=l1, sample_weight=w_batch,
            l2_per_sample=l2_per_sample,
        )
        total += (X_batch.shape[0] if w_batch is None else float(np.sum(w_batch))) * J
        state["step"] += 1
        t = state["step"]
        gradients = grad_weights + grad_biases
        for index, (parameter, gradient) in enumerate(zip(parameters, gradients)):
            if plain:
                # theta <- theta - eta g
                step = -eta * gradient
            elif optimizer == "sgd":
                # v <- mu v - eta g;  theta <- theta + v  (Nesterov: + mu v - eta g)
                velocity = moments[0][index]
                velocity *= mu
                velocity -= eta * gradient
                step = mu * velocity - eta * gradient if nesterov else velocity
            elif optimizer == "rmsprop":
                # s <- rho s + (1 - rho) g^2;  theta <- theta - eta g / (sqrt(s) + eps)
                average = moments[0][index]
                average *= rho_
                average += (1 - rho_) * gradient * gradient
                step = -eta * gradient / (np.sqrt(average) + epsilon_)
            else:
                # m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
                first, second = moments[0][index], moments[1][index]
                first *= beta1_
                first += (1 - beta1_) * gradient
                second *= beta2_
                second += (1 - beta2_) * gradient * gradient
                # theta <- theta - eta mhat / (sqrt(vhat) + eps)
                first_hat = first / dtype.type(1 - decay1 ** t)
                second_hat = second / dtype.type(1 - decay2 ** t)
                step = -eta * first_hat / (np.sqrt(second_hat) + epsilon_)
            if index < n_layers and weight_decay:
                # decoupled decay, weights only: W <- W (1 - eta wd) + step
                parameter *= keep
            parameter += step
    return total / (n_samples if sw is None else float(np.sum(sw)))
