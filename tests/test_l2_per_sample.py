"""Trainer(l2_per_sample=True): l2 / m_B per batch, scikit-learn's alpha.

scikit-learn adds (alpha / 2) ||W||^2 / m_B to the loss of a batch of m_B
samples (its weight sum with sample weights) and alpha W / m_B to the
gradient, so the shorter last batch is penalised more. Checked against the
NumPy oracle with an uneven last batch on every update path, and against
scikit-learn's own _backprop.
"""

import copy

import numpy as np
import pytest

from fastbp import Network, Trainer, baseline
from helpers import (
    DTYPES,
    assert_close,
    assert_parameters_close,
    make_data,
    make_network,
    one_hot,
    parameters_of,
)

SIZES = [4, 6, 3]


def problem(dtype=np.float64, n_samples=11, seed=0):
    rng = np.random.default_rng(seed)
    net = make_network(SIZES, "tanh", "softmax", dtype, seed=seed)
    X, Y = make_data(rng, n_samples, SIZES, dtype)
    return net, X, Y, rng.uniform(0.0, 3.0, n_samples)


OPTIONS = dict(activation="tanh", output="softmax", loss="cross_entropy")


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_objective_and_gradients_divide_l2_by_the_batch(weighted):
    net, X, Y, weights = problem()
    sample_weight = weights if weighted else None
    trainer = Trainer(net, loss="cross_entropy", l2=0.3, l1=0.01, l2_per_sample=True)

    J, grad_weights, grad_biases = trainer.loss_and_gradients(X, Y, sample_weight)
    expected = baseline.loss_and_gradients(*parameters_of(net), X, Y, l2=0.3, l1=0.01,
                                           sample_weight=sample_weight, l2_per_sample=True,
                                           **OPTIONS)
    # the same as a plain l2 of 0.3 / m (or 0.3 / W)
    total = weights.sum() if weighted else len(X)
    plain = Trainer(net, loss="cross_entropy", l2=0.3 / total, l1=0.01).loss_and_gradients(
        X, Y, sample_weight)

    for reference in (expected, plain):
        assert_close(J, reference[0], np.float64, what="J")
        for k in range(net.n_layers):
            assert_close(grad_weights[k], reference[1][k], np.float64, what=f"dJ/dW[{k}]")
            assert_close(grad_biases[k], reference[2][k], np.float64, what=f"dJ/db[{k}]")
    assert trainer.evaluate(X, Y, sample_weight)["loss"] == pytest.approx(J, rel=1e-12)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("settings", [
    dict(optimizer="sgd"),                              # fused SGD: the decay is the GEMM's beta
    dict(optimizer="sgd", momentum=0.9),                # fused momentum
    dict(optimizer="sgd", momentum=0.9, nesterov=True),  # gradient then rule
    dict(optimizer="rmsprop", learning_rate=0.01),
    dict(optimizer="adam", learning_rate=0.01),
], ids=["sgd", "momentum", "nesterov", "rmsprop", "adam"])
def test_epochs_with_an_uneven_last_batch_match_the_oracle(settings, dtype, weighted):
    # 11 samples in batches of 4: the last batch of 3 gets l2 / 3, the others l2 / 4
    net, X, Y, weights = problem(dtype)
    sample_weight = weights if weighted else None
    settings = {"learning_rate": 0.3, "l2": 0.5, **settings}
    trainer = Trainer(net, loss="cross_entropy", batch_size=4, shuffle=False,
                      l2_per_sample=True, **settings)
    weights_, biases_ = parameters_of(net)
    state: dict = {}

    history = trainer.fit(X, Y, epochs=3, sample_weight=sample_weight)
    losses = [baseline.train_epoch(weights_, biases_, X, Y, batch_size=4, state=state,
                                   sample_weight=sample_weight, l2_per_sample=True,
                                   **OPTIONS, **settings)
              for _ in range(3)]

    assert_parameters_close(net, weights_, biases_, dtype)
    assert_close(history["loss"], losses, dtype, what="history loss")


def test_the_last_batch_is_penalised_more():
    # an epoch of batches 4, 4, 3 differs from the same epoch with l2 / 4 throughout
    net, X, Y, _ = problem()
    per_sample = Trainer(copy.deepcopy(net), loss="cross_entropy", batch_size=4,
                         shuffle=False, l2=0.5, l2_per_sample=True)
    fixed = Trainer(copy.deepcopy(net), loss="cross_entropy", batch_size=4, shuffle=False,
                    l2=0.5 / 4)
    per_sample.fit(X[:8], Y[:8], epochs=1)
    fixed.fit(X[:8], Y[:8], epochs=1)
    assert_parameters_close(per_sample.network, fixed.network.weights, fixed.network.biases,
                            np.float64)
    per_sample.fit(X, Y, epochs=1)
    fixed.fit(X, Y, epochs=1)
    assert not np.allclose(per_sample.network.get_parameters(),
                           fixed.network.get_parameters(), rtol=1e-6, atol=0)


def test_grad_norms_include_the_per_batch_penalty():
    net, X, Y, _ = problem(n_samples=9)
    trainer = Trainer(net, loss="cross_entropy", batch_size=9, l2=0.5, l2_per_sample=True,
                      learning_rate=0.1)
    _, grad_weights, _ = trainer.loss_and_gradients(X, Y)

    history = trainer.fit(X, Y, epochs=1, grad_norms=True)

    np.testing.assert_allclose(history["grad_norms"][0],
                               [np.linalg.norm(g) for g in grad_weights], rtol=1e-10)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_matches_scikit_learns_backprop(weighted):
    neural_network = pytest.importorskip("sklearn.neural_network")
    rng = np.random.default_rng(4)
    net = make_network([5, 7, 4, 3], "tanh", "softmax", np.float64, seed=4)
    X, y = rng.uniform(-1, 1, (13, 5)), rng.integers(0, 3, 13)
    sample_weight = rng.uniform(0, 2, 13) if weighted else None
    alpha = 0.7
    trainer = Trainer(net, loss="cross_entropy", l2=alpha, l2_per_sample=True)

    mlp = neural_network.MLPClassifier(hidden_layer_sizes=(7, 4), activation="tanh",
                                       alpha=alpha)
    mlp.coefs_ = [W.T.copy() for W in net.weights]     # scikit-learn: (fan_in, fan_out)
    mlp.intercepts_ = [b.copy() for b in net.biases]
    mlp.n_layers_, mlp.out_activation_, mlp.n_outputs_ = 4, "softmax", 3
    sizes = [5, 7, 4, 3]
    activations = [X] + [np.empty((13, n)) for n in sizes[1:]]
    deltas = [np.empty_like(a) for a in activations[1:]]
    coef_grads = [np.empty((a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    intercept_grads = [np.empty(b) for b in sizes[1:]]
    loss, coef_grads, intercept_grads = mlp._backprop(
        X, one_hot(y, 3), sample_weight, activations, deltas, coef_grads, intercept_grads)

    J, grad_weights, grad_biases = trainer.loss_and_gradients(X, y, sample_weight)
    assert J == pytest.approx(loss, rel=1e-12)
    for k in range(3):
        np.testing.assert_allclose(grad_weights[k], coef_grads[k].T, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(grad_biases[k], intercept_grads[k], rtol=1e-10, atol=1e-14)


def test_is_refused_unless_a_bool():
    with pytest.raises(ValueError, match="l2_per_sample"):
        Trainer(Network([3, 2], seed=0), l2_per_sample="yes")


def test_checkpoints_keep_it_and_leave_default_files_unchanged(tmp_path):
    net, X, Y, _ = problem()
    trainer = Trainer(net, loss="cross_entropy", l2=0.5, l2_per_sample=True, seed=0)
    trainer.fit(X, Y, epochs=1)
    trainer.save_checkpoint(tmp_path / "on.npz")
    resumed = Trainer.load_checkpoint(tmp_path / "on.npz")
    assert resumed.l2_per_sample is True
    trainer.fit(X, Y, epochs=1)
    resumed.fit(X, Y, epochs=1)
    np.testing.assert_array_equal(trainer.network.get_parameters(),
                                  resumed.network.get_parameters())

    # off (the default), the setting is not written, so older versions read the file
    Trainer(net, loss="cross_entropy").save_checkpoint(tmp_path / "off.npz")
    with np.load(tmp_path / "off.npz", allow_pickle=False) as files:
        assert "l2_per_sample" not in str(files["meta"])
    assert Trainer.load_checkpoint(tmp_path / "off.npz").l2_per_sample is False
    assert "l2_per_sample" not in repr(Trainer(net))
    assert "l2_per_sample=True" in repr(trainer)
