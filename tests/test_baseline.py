"""Tests of the pure-NumPy oracle `fastbp.baseline`, on its own.

The oracle checks everything else, so it is checked here against things that
do not share its code: central finite differences of its own objective, a
network worked by hand, and an explicit SGD / momentum loop.
"""

import warnings

import numpy as np
import pytest

from fastbp import baseline
from helpers import central_differences, copy_parameters, hidden_preactivations

# (output, loss) pairs that make sense: cross_entropy needs a sigmoid or softmax
# output and poisson the exp output; the rest are rejected.
PAIRS = [
    (output, loss_name)
    for output in baseline.OUTPUTS
    for loss_name in baseline.LOSSES
    if (loss_name != "cross_entropy" or output in ("sigmoid", "softmax"))
    and (loss_name != "poisson" or output == "exp")
]
# the pairs whose outputs stay finite for any pre-activation (exp overflows past ~88
# in float32 and ~709 in float64, as it must)
BOUNDED_PAIRS = [pair for pair in PAIRS if pair[0] != "exp"]


def make_parameters(layer_sizes, rng, dtype=np.float64, scale=0.8):
    weights = [
        (scale * rng.standard_normal((fan_out, fan_in))).astype(dtype)
        for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:])
    ]
    biases = [(0.3 * rng.standard_normal(fan_out)).astype(dtype) for fan_out in layer_sizes[1:]]
    return weights, biases


def make_targets(n_samples, n_outputs, rng, dtype=np.float64):
    # Rows on the probability simplex: valid soft targets for softmax + CE
    # (whose delta^L = A - Y needs sum_k y_k = 1) and, being in [0, 1], for
    # sigmoid + CE as well.
    Y = rng.uniform(0.1, 1.0, size=(n_samples, n_outputs))
    return (Y / Y.sum(axis=1, keepdims=True)).astype(dtype)


def kink_free_problem(layer_sizes, n_samples, activation, margin=1e-2):
    """A deterministic (weights, biases, X, Y) with every hidden |z| > margin.

    Finite differences with step 1e-6 then never straddle relu's kink at 0.
    """
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        weights, biases = make_parameters(layer_sizes, rng)
        X = rng.standard_normal((n_samples, layer_sizes[0]))
        Z_hidden = hidden_preactivations(weights, biases, X, activation)
        if all(np.abs(Z).min() > margin for Z in Z_hidden):
            return weights, biases, X, make_targets(n_samples, layer_sizes[-1], rng)
    raise RuntimeError("no kink-free problem found")  # pragma: no cover


# --------------------------------------------------------------------------
# (a) gradients against finite differences
# --------------------------------------------------------------------------


@pytest.mark.parametrize("activation", list(baseline.ACTIVATIONS) + [["tanh", "relu"]])
@pytest.mark.parametrize("output, loss_name", PAIRS)
def test_gradients_match_finite_differences(activation, output, loss_name):
    layer_sizes = [3, 4, 3, 2]
    weights, biases, X, Y = kink_free_problem(layer_sizes, 5, activation)
    options = dict(activation=activation, output=output, loss=loss_name, l2=0.07)

    J, grad_weights, grad_biases = baseline.loss_and_gradients(weights, biases, X, Y, **options)
    numeric_weights, numeric_biases = central_differences(
        lambda: baseline.loss(weights, biases, X, Y, **options), weights, biases
    )

    assert J == pytest.approx(baseline.loss(weights, biases, X, Y, **options), rel=1e-14)
    for analytic, numeric in zip(grad_weights + grad_biases, numeric_weights + numeric_biases):
        assert analytic.shape == numeric.shape
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_relu_gradient_is_zero_for_inactive_units():
    # A hidden unit with z < 0 everywhere gets no gradient (besides l2 W).
    weights = [np.array([[1.0, 0.5], [-1.0, -1.0]]), np.array([[0.3, 0.7]])]
    biases = [np.array([0.1, -0.5]), np.array([0.0])]
    X = np.array([[0.2, 0.4], [1.0, 0.3]])  # unit 2: z = -x1 - x2 - 0.5 < 0
    Y = np.array([[1.0], [0.0]])
    _, grad_weights, grad_biases = baseline.loss_and_gradients(
        weights, biases, X, Y, activation="relu", output="sigmoid", loss="mse", l2=0.0
    )
    np.testing.assert_array_equal(grad_weights[0][1], [0.0, 0.0])
    assert grad_biases[0][1] == 0.0
    assert grad_weights[1][0, 1] == 0.0  # its activation is 0 too


# --------------------------------------------------------------------------
# (b) a [2, 2, 1] network worked by hand
# --------------------------------------------------------------------------


def test_hand_worked_sigmoid_mse_network():
    # Chosen so that every pre-activation is exactly 0 and sigma(0) = 1/2.
    W1 = np.array([[0.2, -0.1], [0.4, -0.3]])
    b1 = np.array([0.0, 0.2])
    W2 = np.array([[0.6, -0.2]])
    b2 = np.array([-0.2])
    x = np.array([[1.0, 2.0]])
    y = np.array([[1.0]])
    l2 = 0.1
    weights, biases = [W1, W2], [b1, b2]
    options = dict(activation="sigmoid", output="sigmoid", loss="mse", l2=l2)

    # Forward:
    # z^1 = x W1^T + b1 = [0.2*1 - 0.1*2 + 0.0, 0.4*1 - 0.3*2 + 0.2] = [0, 0]
    # a^1 = sigma(z^1) = [0.5, 0.5]
    # z^2 = 0.6*0.5 - 0.2*0.5 - 0.2 = 0.3 - 0.1 - 0.2 = 0
    # a^2 = sigma(0) = 0.5
    A0, A1, A2 = baseline.forward(weights, biases, x)
    np.testing.assert_array_equal(A0, x)
    np.testing.assert_allclose(A1, [[0.5, 0.5]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(A2, [[0.5]], rtol=0, atol=1e-12)

    # Loss (m = 1):
    # C = 1/2 (0.5 - 1)^2 = 0.125
    # ||W||^2 = (0.04 + 0.01 + 0.16 + 0.09) + (0.36 + 0.04) = 0.70
    # J = 0.125 + (0.1 / 2) * 0.70 = 0.125 + 0.035 = 0.16
    J, grad_weights, grad_biases = baseline.loss_and_gradients(weights, biases, x, y, **options)
    assert J == pytest.approx(0.16, rel=0, abs=1e-12)
    assert baseline.loss(weights, biases, x, y, **options) == pytest.approx(0.16, rel=0, abs=1e-12)

    # Backward:
    # delta^2 = (a^2 - y) a^2 (1 - a^2) = (-0.5)(0.5)(0.5) = -0.125
    # dJ/dW2 = delta^2 a^1 + l2 W2 = [-0.0625, -0.0625] + [0.06, -0.02] = [-0.0025, -0.0825]
    # dJ/db2 = delta^2 = -0.125
    # delta^1 = (delta^2 W2) * a^1 (1 - a^1) = [-0.075, 0.025] * 0.25 = [-0.01875, 0.00625]
    # dJ/dW1 = (delta^1)^T x + l2 W1
    #        = [[-0.01875, -0.0375], [0.00625, 0.0125]] + [[0.02, -0.01], [0.04, -0.03]]
    #        = [[0.00125, -0.0475], [0.04625, -0.0175]]
    # dJ/db1 = delta^1 = [-0.01875, 0.00625]
    np.testing.assert_allclose(grad_weights[1], [[-0.0025, -0.0825]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(grad_biases[1], [-0.125], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        grad_weights[0], [[0.00125, -0.0475], [0.04625, -0.0175]], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(grad_biases[0], [-0.01875, 0.00625], rtol=0, atol=1e-12)


def test_softmax_rows_sum_to_one_and_match_definition():
    rng = np.random.default_rng(3)
    weights, biases = make_parameters([4, 5, 3], rng)
    X = rng.standard_normal((6, 4))
    A = baseline.forward(weights, biases, X, "tanh", "softmax")
    Z = A[1] @ weights[1].T + biases[1]
    expected = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(A[2], expected, rtol=1e-14)


# --------------------------------------------------------------------------
# (c) train_epoch against explicit gradient steps
# --------------------------------------------------------------------------


@pytest.mark.parametrize("output, loss_name", [("sigmoid", "mse"), ("softmax", "cross_entropy")])
def test_full_batch_epoch_is_one_gradient_step(output, loss_name):
    rng = np.random.default_rng(4)
    weights, biases = make_parameters([3, 4, 2], rng)
    X = rng.standard_normal((7, 3))
    Y = make_targets(7, 2, rng)
    options = dict(activation="tanh", output=output, loss=loss_name, l2=0.05)
    learning_rate = 0.7

    J, grad_weights, grad_biases = baseline.loss_and_gradients(weights, biases, X, Y, **options)
    expected_weights = [W - learning_rate * g for W, g in zip(weights, grad_weights)]
    expected_biases = [b - learning_rate * g for b, g in zip(biases, grad_biases)]

    for batch_size in (7, 100):
        trained_weights, trained_biases = copy_parameters(weights, biases)
        live = [id(a) for a in trained_weights + trained_biases]
        mean_loss = baseline.train_epoch(
            trained_weights, trained_biases, X, Y, learning_rate=learning_rate,
            batch_size=batch_size, **options,
        )
        assert [id(a) for a in trained_weights + trained_biases] == live  # in place
        assert mean_loss == pytest.approx(J, rel=1e-14)
        for got, expected in zip(trained_weights + trained_biases,
                                 expected_weights + expected_biases):
            np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)

    # A permutation of one full batch gives the same step, up to rounding.
    trained_weights, trained_biases = copy_parameters(weights, biases)
    baseline.train_epoch(
        trained_weights, trained_biases, X, Y, learning_rate=learning_rate,
        batch_size=7, order=rng.permutation(7), **options,
    )
    for got, expected in zip(trained_weights + trained_biases, expected_weights + expected_biases):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def hand_loop(weights, biases, X, Y, options, learning_rate, batch_size, momentum,
              velocities, order):
    """Mini-batch SGD with heavy-ball momentum, written out explicitly."""
    X, Y = X[order], Y[order]
    n_samples = X.shape[0]
    weighted_losses = 0.0
    for start in range(0, n_samples, batch_size):
        stop = min(start + batch_size, n_samples)
        J, grad_weights, grad_biases = baseline.loss_and_gradients(
            weights, biases, X[start:stop], Y[start:stop], **options
        )
        weighted_losses += (stop - start) * J
        L = len(weights)
        for l in range(L):
            velocities[l] = momentum * velocities[l] - learning_rate * grad_weights[l]
            weights[l] = weights[l] + velocities[l]
            velocities[L + l] = momentum * velocities[L + l] - learning_rate * grad_biases[l]
            biases[l] = biases[l] + velocities[L + l]
    return weighted_losses / n_samples


def test_momentum_over_two_epochs_matches_hand_loop():
    rng = np.random.default_rng(5)
    weights, biases = make_parameters([3, 4, 3, 2], rng)
    X = rng.standard_normal((11, 3))
    Y = make_targets(11, 2, rng)
    options = dict(activation=["relu", "sigmoid"], output="softmax", loss="cross_entropy", l2=0.01)
    learning_rate, momentum, batch_size = 0.3, 0.9, 4  # batches of 4, 4, 3
    orders = [rng.permutation(11), rng.permutation(11)]

    expected_weights, expected_biases = copy_parameters(weights, biases)
    expected_velocities = [np.zeros_like(a) for a in expected_weights + expected_biases]
    trained_weights, trained_biases = copy_parameters(weights, biases)
    velocities = [np.zeros_like(a) for a in trained_weights + trained_biases]
    velocity_ids = [id(v) for v in velocities]

    for order in orders:
        expected_loss = hand_loop(
            expected_weights, expected_biases, X, Y, options, learning_rate, batch_size,
            momentum, expected_velocities, order,
        )
        mean_loss = baseline.train_epoch(
            trained_weights, trained_biases, X, Y, learning_rate=learning_rate,
            batch_size=batch_size, momentum=momentum, velocities=velocities, order=order,
            **options,
        )
        assert mean_loss == pytest.approx(expected_loss, rel=1e-12)

    assert [id(v) for v in velocities] == velocity_ids  # updated in place
    for got, expected in zip(trained_weights + trained_biases + velocities,
                             expected_weights + expected_biases + expected_velocities):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    assert not np.allclose(velocities[0], 0.0)


def test_momentum_without_velocities_starts_from_zero():
    rng = np.random.default_rng(6)
    weights, biases = make_parameters([3, 4, 2], rng)
    X = rng.standard_normal((9, 3))
    Y = make_targets(9, 2, rng)
    options = dict(activation="sigmoid", output="sigmoid", loss="mse", l2=0.02)

    expected_weights, expected_biases = copy_parameters(weights, biases)
    hand_loop(expected_weights, expected_biases, X, Y, options, 1.5, 4, 0.5,
              [np.zeros_like(a) for a in weights + biases], np.arange(9))
    baseline.train_epoch(weights, biases, X, Y, learning_rate=1.5, batch_size=4,
                         momentum=0.5, **options)
    for got, expected in zip(weights + biases, expected_weights + expected_biases):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_plain_sgd_epoch_with_short_last_batch_matches_hand_loop():
    rng = np.random.default_rng(7)
    weights, biases = make_parameters([3, 4, 2], rng)
    X = rng.standard_normal((7, 3))
    Y = make_targets(7, 2, rng)
    options = dict(activation="identity", output="identity", loss="mse", l2=0.1)

    expected_weights, expected_biases = copy_parameters(weights, biases)
    # momentum 0 in the hand loop: v = -eta g, theta <- theta - eta g
    expected_loss = hand_loop(expected_weights, expected_biases, X, Y, options, 0.2, 3, 0.0,
                              [np.zeros_like(a) for a in weights + biases], np.arange(7))
    mean_loss = baseline.train_epoch(weights, biases, X, Y, learning_rate=0.2, batch_size=3,
                                     **options)
    assert mean_loss == pytest.approx(expected_loss, rel=1e-13)
    for got, expected in zip(weights + biases, expected_weights + expected_biases):
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------
# (d) numerical stability and dtype
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", baseline.ACTIVATIONS)
@pytest.mark.parametrize("output, loss_name", BOUNDED_PAIRS)
def test_huge_preactivations_give_no_warnings_and_finite_values(
    dtype, activation, output, loss_name
):
    # Inputs +-1, weights +-1e4 / n: pre-activations of order 1e4 in both signs.
    weights = [
        np.array([[1e4, 0.0], [-1e4, 0.0], [0.0, 1e4]], dtype=dtype),
        np.array([[1e0, -1e0, 1e0], [-1e0, 1e0, -1e0]], dtype=dtype) * dtype(1e4),
    ]
    biases = [np.zeros(3, dtype), np.zeros(2, dtype)]
    if activation in ("relu", "identity"):
        # keep the output pre-activations near 1e4 rather than 1e8 (finite in float32)
        weights[1] /= dtype(1e4)
    X = np.array([[1.0, -1.0], [-1.0, 1.0]], dtype=dtype)
    Y = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    options = dict(activation=activation, output=output, loss=loss_name, l2=1e-6)

    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        activations = baseline.forward(weights, biases, X, activation, output)
        J = baseline.loss(weights, biases, X, Y, **options)
        J2, grad_weights, grad_biases = baseline.loss_and_gradients(
            weights, biases, X, Y, **options
        )
        mean_loss = baseline.train_epoch(weights, biases, X, Y, learning_rate=1e-9,
                                         batch_size=1, **options)

    assert np.isfinite(J) and J == J2 and np.isfinite(mean_loss)
    for array in activations + grad_weights + grad_biases + weights + biases:
        assert array.dtype == dtype
        assert np.all(np.isfinite(array))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_cross_entropy_is_exact_not_infinite(dtype):
    # One layer, Z = X W^T: the output pre-activations are +-1e4 exactly.
    weights = [np.array([[1e4], [-1e4]], dtype=dtype)]
    biases = [np.zeros(2, dtype)]
    X = np.ones((1, 1), dtype=dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        # softmax, z = [1e4, -1e4], y = [0, 1]: C = -log a_2 = 1e4 - (-1e4) + log(1 + e^-2e4) = 2e4
        J_softmax = baseline.loss(weights, biases, X, np.array([[0.0, 1.0]], dtype),
                                  output="softmax", loss="cross_entropy")
        # sigmoid, z = [1e4, -1e4], y = [0, 0]: C = softplus(1e4) + softplus(-1e4) = 1e4 + 0
        J_sigmoid = baseline.loss(weights, biases, X, np.array([[0.0, 0.0]], dtype),
                                  output="sigmoid", loss="cross_entropy")
        A = baseline.forward(weights, biases, X, output="sigmoid")[-1]
    assert J_softmax == pytest.approx(2e4, rel=1e-6)
    assert J_sigmoid == pytest.approx(1e4, rel=1e-6)
    np.testing.assert_array_equal(A, [[1.0, 0.0]])


def test_float32_stays_float32():
    rng = np.random.default_rng(8)
    weights, biases = make_parameters([3, 4, 2], rng, dtype=np.float32)
    X = rng.standard_normal((5, 3))  # float64 inputs and targets are cast down
    Y = make_targets(5, 2, rng)
    options = dict(activation="tanh", output="softmax", loss="mse", l2=np.float64(0.1))
    for A in baseline.forward(weights, biases, X, "tanh", "softmax"):
        assert A.dtype == np.float32
    _, grad_weights, grad_biases = baseline.loss_and_gradients(weights, biases, X, Y, **options)
    assert all(g.dtype == np.float32 for g in grad_weights + grad_biases)
    baseline.train_epoch(weights, biases, X, Y, learning_rate=np.float64(0.5), batch_size=2,
                         momentum=np.float64(0.9), **options)
    assert all(a.dtype == np.float32 for a in weights + biases)


# --------------------------------------------------------------------------
# String arguments
# --------------------------------------------------------------------------


def test_bad_string_arguments_raise_value_error_naming_them():
    rng = np.random.default_rng(9)
    weights, biases = make_parameters([3, 4, 2], rng)
    X = rng.standard_normal((2, 3))
    Y = make_targets(2, 2, rng)
    with pytest.raises(ValueError, match="cross_entropy.*'sigmoid' or 'softmax'"):
        baseline.loss(weights, biases, X, Y, output="identity", loss="cross_entropy")
    with pytest.raises(ValueError, match="cross_entropy"):
        baseline.train_epoch(weights, biases, X, Y, output="identity", loss="cross_entropy")
    with pytest.raises(ValueError, match="activation"):
        baseline.forward(weights, biases, X, activation="softplus")
    with pytest.raises(ValueError, match="activation"):
        baseline.forward(weights, biases, X, activation=["tanh", "tanh"])
    with pytest.raises(ValueError, match="output"):
        baseline.forward(weights, biases, X, output="relu")
    with pytest.raises(ValueError, match="loss"):
        baseline.loss_and_gradients(weights, biases, X, Y, loss="hinge")
