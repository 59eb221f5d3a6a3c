"""Backpropagation against central finite differences, and one network by hand.

The finite differences perturb the Network's live parameters and read J back
through Trainer.loss_and_gradients (L2 penalty included), so they check the
kernels' gradients against the kernels' own objective, with no oracle in
between. The hand-worked network pins forward, delta, gradient and one SGD
step to numbers written out in the comments.
"""

import math

import numpy as np
import pytest

from fastbp import Network, Trainer
from helpers import (
    OUTPUT_LOSS_PAIRS,
    central_differences,
    hidden_preactivations,
    make_data,
    make_network,
    pair_id,
    parameters_of,
)

STEP = 1e-6

ARCHITECTURES = {
    "one-hidden-sigmoid": ([3, 4, 2], "sigmoid"),
    "one-hidden-relu": ([4, 5, 3], "relu"),
    "no-hidden": ([3, 2], "sigmoid"),
    "per-layer-tanh-relu": ([3, 5, 4, 3], ["tanh", "relu"]),
    "per-layer-identity-sigmoid": ([2, 3, 4, 2], ["identity", "sigmoid"]),
    "three-hidden-tanh": ([3, 4, 3, 5, 2], "tanh"),
    "three-hidden-mixed": ([4, 3, 5, 4, 3], ["relu", "sigmoid", "tanh"]),
    "single-output": ([3, 4, 1], "tanh"),
}


def kink_free_problem(sizes, activation, output, n_samples, margin=1e-3):
    """Network and data whose hidden |z| all exceed margin >> STEP.

    A central difference straddling relu's kink at z = 0 would measure an
    average of two slopes; away from it, J is smooth in every parameter.
    """
    for seed in range(200):
        rng = np.random.default_rng(seed)
        net = make_network(sizes, activation, output, np.float64, seed=seed)
        X, Y = make_data(rng, n_samples, sizes)
        weights, biases = parameters_of(net)
        Z_hidden = hidden_preactivations(weights, biases, X, net.activation)
        if all(np.abs(Z).min() > margin for Z in Z_hidden):
            return net, X, Y
    raise RuntimeError("no kink-free problem found")  # pragma: no cover


def finite_differences(trainer, X, Y):
    """Central differences of J as Trainer.loss_and_gradients computes it."""
    net = trainer.network
    return central_differences(lambda: trainer.loss_and_gradients(X, Y)[0],
                               net.weights, net.biases, STEP)


@pytest.mark.parametrize("l2", [0.0, 0.07])
@pytest.mark.parametrize("output, loss_name", OUTPUT_LOSS_PAIRS, ids=pair_id)
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_gradients_match_central_differences(architecture, output, loss_name, l2):
    sizes, activation = ARCHITECTURES[architecture]
    net, X, Y = kink_free_problem(sizes, activation, output, n_samples=7)
    trainer = Trainer(net, loss=loss_name, l2=l2)
    before = net.get_parameters()

    J, grad_weights, grad_biases = trainer.loss_and_gradients(X, Y)
    fd_weights, fd_biases = finite_differences(trainer, X, Y)

    assert np.array_equal(net.get_parameters(), before)
    assert J == trainer.loss_and_gradients(X, Y)[0]
    for k in range(net.n_layers):
        # truncation O(h^2) and rounding O(eps J / h) are both ~1e-10 here
        np.testing.assert_allclose(grad_weights[k], fd_weights[k], rtol=1e-6, atol=1e-8,
                                   err_msg=f"dJ/dW[{k}]")
        np.testing.assert_allclose(grad_biases[k], fd_biases[k], rtol=1e-6, atol=1e-8,
                                   err_msg=f"dJ/db[{k}]")


@pytest.mark.parametrize("output, loss_name", OUTPUT_LOSS_PAIRS, ids=pair_id)
def test_evaluate_is_the_same_objective_as_loss_and_gradients(output, loss_name):
    net, X, Y = kink_free_problem([3, 4, 2], "tanh", output, n_samples=9)
    trainer = Trainer(net, loss=loss_name, l2=0.05)

    J = trainer.loss_and_gradients(X, Y)[0]

    np.testing.assert_allclose(trainer.evaluate(X, Y)["loss"], J, rtol=1e-12)


@pytest.mark.parametrize("output, loss_name", OUTPUT_LOSS_PAIRS, ids=pair_id)
def test_l2_adds_lambda_w_to_weight_gradients_only(output, loss_name):
    net, X, Y = kink_free_problem([3, 4, 2], "sigmoid", output, n_samples=5)
    plain = Trainer(net, loss=loss_name, l2=0.0).loss_and_gradients(X, Y)
    penalized = Trainer(net, loss=loss_name, l2=0.25).loss_and_gradients(X, Y)

    penalty = 0.125 * sum(float(np.sum(W * W)) for W in net.weights)
    np.testing.assert_allclose(penalized[0], plain[0] + penalty, rtol=1e-12)
    for k in range(net.n_layers):
        np.testing.assert_allclose(penalized[1][k], plain[1][k] + 0.25 * net.weights[k],
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(penalized[2][k], plain[2][k])


def test_hand_worked_network():
    """[2, 2, 1], sigmoid hidden, identity output, mse, l2 = 0.1, one sample.

    Inputs and parameters:
        x    = [1, 2],            y = 1
        W^1  = [[1, -0.5],        b^1 = [0, ln 3]
                [0,  0  ]]
        W^2  = [[2, -4]],         b^2 = [1]

    Forward:
        z^1 = W^1 x + b^1 = [1*1 - 0.5*2 + 0, 0*1 + 0*2 + ln 3] = [0, ln 3]
        a^1 = sigmoid(z^1) = [1/2, 1/(1 + 1/3)] = [0.5, 0.75]
        z^2 = W^2 a^1 + b^2 = 2*0.5 - 4*0.75 + 1 = -1
        a^2 = z^2 = -1                                   (identity output)

    Objective:
        C = 1/2 (a^2 - y)^2 = 1/2 (-2)^2 = 2
        penalty = (l2/2) (||W^1||^2 + ||W^2||^2)
                = 0.05 * ((1 + 0.25 + 0 + 0) + (4 + 16)) = 0.05 * 21.25 = 1.0625
        J = 2 + 1.0625 = 3.0625

    Backward (m = 1):
        delta^2 = a^2 - y = -2
        dJ/dW^2 = delta^2 a^1 + l2 W^2 = [-1, -1.5] + [0.2, -0.4] = [-0.8, -1.9]
        dJ/db^2 = delta^2 = -2
        f'(z^1) = a^1 (1 - a^1) = [0.25, 0.1875]
        delta^1 = (delta^2 W^2) * f'(z^1) = [-4, 8] * [0.25, 0.1875] = [-1, 1.5]
        dJ/dW^1 = (delta^1)^T x + l2 W^1
                = [[-1, -2], [1.5, 3]] + [[0.1, -0.05], [0, 0]]
                = [[-0.9, -2.05], [1.5, 3]]
        dJ/db^1 = delta^1 = [-1, 1.5]

    One SGD step, eta = 0.5 (theta <- theta - eta dJ/dtheta):
        W^2 <- [2, -4] - 0.5 [-0.8, -1.9]              = [2.4, -3.05]
        b^2 <- 1 - 0.5 (-2)                           = 2
        W^1 <- [[1, -0.5], [0, 0]] - 0.5 dJ/dW^1      = [[1.45, 0.525], [-0.75, -1.5]]
        b^1 <- [0, ln 3] - 0.5 [-1, 1.5]              = [0.5, ln 3 - 0.75]
    and step() returns J before the update, 3.0625.
    """
    net = Network([2, 2, 1], activation="sigmoid", output="identity", seed=0)
    net.weights = [np.array([[1.0, -0.5], [0.0, 0.0]]), np.array([[2.0, -4.0]])]
    net.biases = [np.array([0.0, math.log(3.0)]), np.array([1.0])]
    trainer = Trainer(net, loss="mse", learning_rate=0.5, batch_size=1, l2=0.1)
    X = np.array([[1.0, 2.0]])
    Y = np.array([[1.0]])
    exact = {"rtol": 1e-12, "atol": 1e-14}

    np.testing.assert_allclose(net.forward(X), [[-1.0]], **exact)
    J, grad_weights, grad_biases = trainer.loss_and_gradients(X, Y)
    np.testing.assert_allclose(J, 3.0625, **exact)
    np.testing.assert_allclose(grad_weights[1], [[-0.8, -1.9]], **exact)
    np.testing.assert_allclose(grad_biases[1], [-2.0], **exact)
    np.testing.assert_allclose(grad_weights[0], [[-0.9, -2.05], [1.5, 3.0]], **exact)
    np.testing.assert_allclose(grad_biases[0], [-1.0, 1.5], **exact)

    J_step = trainer.step(X, Y)

    np.testing.assert_allclose(J_step, 3.0625, **exact)
    np.testing.assert_allclose(net.weights[1], [[2.4, -3.05]], **exact)
    np.testing.assert_allclose(net.biases[1], [2.0], **exact)
    np.testing.assert_allclose(net.weights[0], [[1.45, 0.525], [-0.75, -1.5]], **exact)
    np.testing.assert_allclose(net.biases[0], [0.5, math.log(3.0) - 0.75], **exact)


def test_hand_worked_softmax_cross_entropy_batch():
    """[1, 2] softmax + cross_entropy, no hidden layer, a batch of m = 2.

        W = [[ln 3], [0]],  b = [0, 0]
        x_1 = 1, y_1 = [1, 0];   x_2 = 0, y_2 = [0, 1]

    Forward:
        z_1 = [ln 3, 0]  ->  a_1 = [3/4, 1/4]     (e^{ln 3} = 3, 3 / (3 + 1))
        z_2 = [0, 0]     ->  a_2 = [1/2, 1/2]
    Objective:
        C_1 = -ln(3/4),  C_2 = -ln(1/2)
        J = (C_1 + C_2) / 2 = (ln(4/3) + ln 2) / 2 = ln(8/3) / 2
    Backward (delta = a - y):
        delta_1 = [-1/4, 1/4],  delta_2 = [1/2, -1/2]
        dJ/dW = (1/2)(delta_1^T x_1 + delta_2^T x_2) = (1/2)[[-1/4], [1/4]] = [[-1/8], [1/8]]
        dJ/db = (1/2)(delta_1 + delta_2) = (1/2)[1/4, -1/4] = [1/8, -1/8]
    One SGD step, eta = 4:
        W <- [[ln 3 + 1/2], [-1/2]],  b <- [-1/2, 1/2]
    """
    net = Network([1, 2], output="softmax", seed=0)
    net.weights = [np.array([[math.log(3.0)], [0.0]])]
    net.biases = [np.zeros(2)]
    trainer = Trainer(net, loss="cross_entropy", learning_rate=4.0, batch_size=2)
    X = np.array([[1.0], [0.0]])
    labels = np.array([0, 1])
    exact = {"rtol": 1e-12, "atol": 1e-14}

    np.testing.assert_allclose(net.forward(X), [[0.75, 0.25], [0.5, 0.5]], **exact)
    J, grad_weights, grad_biases = trainer.loss_and_gradients(X, labels)
    np.testing.assert_allclose(J, math.log(8 / 3) / 2, **exact)
    np.testing.assert_allclose(grad_weights[0], [[-0.125], [0.125]], **exact)
    np.testing.assert_allclose(grad_biases[0], [0.125, -0.125], **exact)

    history = trainer.fit(X, labels, epochs=1)

    np.testing.assert_allclose(history["loss"], [math.log(8 / 3) / 2], **exact)
    # accuracy before the update: argmax a_1 = 0 = y_1; a_2 is a tie, which
    # goes to the first class as with np.argmax, and y_2 = 1: one of two right
    assert history["accuracy"] == [0.5]
    np.testing.assert_allclose(net.weights[0], [[math.log(3.0) + 0.5], [-0.5]], **exact)
    np.testing.assert_allclose(net.biases[0], [-0.5, 0.5], **exact)
