"""The exp output and the Poisson loss: regression of counts and rates (y >= 0).

The half Poisson deviance C = sum_k y_k log(y_k / a_k) - y_k + a_k with the
log link a = exp(z) is scikit-learn's MLPRegressor(loss='poisson'); its
output delta is a - y. Checked against the NumPy oracle (itself checked by
finite differences in test_baseline.py) and against scikit-learn's formula.
"""

import numpy as np
import pytest

from fastbp import Network, Trainer, baseline
from fastbp import _kernels
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


# --------------------------------------------------------- the kernel's extras


def _rule(**settings):
    rule = {"kind": _kernels.ADAM, "learning_rate": 0.01, "l2": 0.0, "l1": 0.0,
            "weight_decay": 0.0, "momentum": 0.0, "nesterov": False, "rho": 0.9,
            "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-3, "bias_corrected_epsilon": True}
    rule.update(settings)
    return rule


def _epoch_arguments(net, X, Y):
    params = net._params
    Y = np.ascontiguousarray(Y)
    return dict(params=params, grads=np.empty_like(params), moment1=np.zeros_like(params),
                moment2=np.zeros_like(params), sizes=net._sizes, activations=net._codes,
                loss=_kernels.POISSON, X=X, Y=Y, order=np.empty(0, dtype=np.intp),
                batch_size=len(X), work=np.empty(_kernels.workspace_size(net._sizes, len(X))))


@pytest.mark.parametrize("steps", [1, 3])
def test_epsilon_hat_adam_is_scikit_learns_update(steps):
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer
    net, X, Y = counts_problem()
    reference = net.copy()
    arguments = _epoch_arguments(net, X, Y)
    # epsilon large enough that where it sits changes the step
    optimizer = AdamOptimizer([reference._params], learning_rate_init=0.01, epsilon=1e-3)
    trainer = Trainer(reference, loss="poisson")
    for step in range(steps):
        _kernels.train_epoch(**arguments, progress=np.zeros(3),
                             rule=_rule(bias_corrected_epsilon=False), step=step)
        _, grad_w, grad_b = trainer.loss_and_gradients(X, Y)
        gradient = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in
                                   zip(grad_w, grad_b)])
        optimizer.update_params([reference._params], [gradient])
    np.testing.assert_allclose(net._params, reference._params, rtol=1e-12, atol=1e-15)

    # the default form differs with this epsilon
    other, _, _ = counts_problem()
    _kernels.train_epoch(**_epoch_arguments(other, X, Y), progress=np.zeros(3), rule=_rule())
    if steps == 1:
        assert not np.allclose(other._params, net._params, rtol=1e-9, atol=0)


def test_progress_splits_the_loss_by_row_counts():
    net, X, Y = counts_problem(n_samples=11)
    arguments = _epoch_arguments(net, X, Y)
    arguments["batch_size"] = 4
    weights = np.linspace(0.5, 2.0, len(X))
    rule = _rule(kind=_kernels.SGD, l2=0.3, learning_rate=0.0)
    reference = Trainer(net.copy(), loss="poisson", l2=0.3, l2_per_sample=True)
    progress = np.zeros(5)
    total, _ = _kernels.train_epoch(**arguments, progress=progress, rule=rule,
                                    sample_weight=weights, l2_per_sample=True)
    data = penalty = weighted = 0.0
    for start in range(0, len(X), 4):
        rows = slice(start, start + 4)
        m, w = len(X[rows]), weights[rows]
        J = reference.evaluate(X[rows], Y[rows], w)["loss"]
        P = reference._penalty(w.sum())
        data += m * (J - P)
        penalty += m * P
        weighted += w.sum() * J
    assert progress[3] == pytest.approx(data, rel=1e-12)
    assert progress[4] == pytest.approx(penalty, rel=1e-12)
    assert total == pytest.approx(weighted, rel=1e-12)
