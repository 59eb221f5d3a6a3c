"""The exp output and the Poisson loss: regression of counts and rates (y >= 0).

The half Poisson deviance C = sum_k y_k log(y_k / a_k) - y_k + a_k with the
log link a = exp(z) is scikit-learn's MLPRegressor(loss='poisson'); its
output delta is a - y. Checked against the NumPy oracle (itself checked by
finite differences in test_baseline.py) and against scikit-learn's formula.
"""

import numpy as np
import pytest

from fastbp import Network, Trainer, baseline
from helpers import DTYPES, assert_close, assert_parameters_close, parameters_of

SIZES = [4, 5, 2]


def counts_problem(dtype=np.float64, n_samples=13, seed=0):
    rng = np.random.default_rng(seed)
    net = Network(SIZES, activation="tanh", output="exp", dtype=dtype, seed=seed)
    for W in net.weights:
        W *= 0.5
    X = rng.standard_normal((n_samples, SIZES[0])).astype(dtype)
    Y = rng.poisson(2.0, (n_samples, SIZES[-1])).astype(dtype)
    Y[0, 0] = 0     # a zero count: its y log y term is 0
    return net, X, Y


@pytest.mark.parametrize("loss", ["poisson", "mse"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_and_gradients_match_the_oracle(loss, dtype):
    net, X, Y = counts_problem(dtype)
    trainer = Trainer(net, loss=loss, l2=0.05)
    J, grad_w, grad_b = trainer.loss_and_gradients(X, Y)
    expected = baseline.loss_and_gradients(*parameters_of(net), X.astype(np.float64),
                                           Y.astype(np.float64), activation="tanh",
                                           output="exp", loss=loss, l2=0.05)
    assert_close(J, expected[0], dtype, what="J")
    for k in range(net.n_layers):
        assert_close(grad_w[k], expected[1][k], dtype, what=f"dJ/dW[{k}]")
        assert_close(grad_b[k], expected[2][k], dtype, what=f"dJ/db[{k}]")


def test_poisson_cost_is_scikit_learns_half_deviance():
    from scipy.special import xlogy
    net, X, Y = counts_problem()
    A = net.forward(X)
    expected = np.mean(np.sum(xlogy(Y, Y / A) - Y + A, axis=1))
    assert Trainer(net, loss="poisson").evaluate(X, Y)["loss"] == pytest.approx(expected,
                                                                               rel=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_epochs_match_the_oracle(optimizer, dtype):
    net, X, Y = counts_problem(dtype, n_samples=23)
    weights, biases = parameters_of(net)
    options = dict(activation="tanh", output="exp", loss="poisson", learning_rate=0.01,
                   batch_size=5, l2=1e-3, optimizer=optimizer)
    trainer = Trainer(net, loss="poisson", learning_rate=0.01, batch_size=5, l2=1e-3,
                      optimizer=optimizer, shuffle=False)
    state = {}
    for _ in range(3):
        history = trainer.fit(X, Y, epochs=1)
        expected = baseline.train_epoch(weights, biases, X, Y, state=state, **options)
        assert_close(history["loss"][-1], expected, dtype, what="epoch loss")
    assert_parameters_close(net, weights, biases, dtype)


def test_targets_and_pairings_are_checked():
    net, X, Y = counts_problem()
    with pytest.raises(ValueError, match="poisson.*exp"):
        Trainer(Network(SIZES, output="identity"), loss="poisson")
    with pytest.raises(ValueError, match="cross_entropy"):
        Trainer(net, loss="cross_entropy")
    trainer = Trainer(net, loss="poisson", learning_rate=0.01)
    before = net.get_parameters()
    with pytest.raises(ValueError, match="negative values.*counts or rates"):
        trainer.fit(X, -Y, epochs=1)
    np.testing.assert_array_equal(net.get_parameters(), before)


def test_predict_gives_the_rates():
    net, X, _ = counts_problem()
    rates = net.predict(X)
    np.testing.assert_array_equal(rates, net.forward(X))
    assert rates.dtype == np.float64 and np.all(rates > 0)


def test_onnx_export_applies_exp(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from fastbp import export_onnx
    net, X, _ = counts_problem()
    path = tmp_path / "rates.onnx"
    export_onnx(net, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (outputs,) = session.run(None, {session.get_inputs()[0].name: X})
    np.testing.assert_allclose(outputs, net.forward(X), rtol=1e-12)
