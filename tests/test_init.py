"""Network(init=...): the default scaled Gaussian and scikit-learn's Glorot uniform.

Glorot uniform is scikit-learn 1.9's _init_coef: W^l and b^l uniform in
[-bound, bound], bound = sqrt(factor / (fan_in + fan_out)), factor 2 for a
sigmoid ('logistic') network and 6 otherwise. The generator differs from
scikit-learn's; the distribution must not.
"""

import numpy as np
import pytest

from fastbp import Network
from helpers import DTYPES


def glorot_bound(fan_in, fan_out, activation):
    factor = 2.0 if activation == "sigmoid" else 6.0
    return np.sqrt(factor / (fan_in + fan_out))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
def test_glorot_uniform_fills_weights_and_biases_within_the_bound(activation, dtype):
    sizes = [300, 200, 10]
    net = Network(sizes, activation=activation, output="softmax", dtype=np.dtype(dtype).name,
                  seed=0, init="glorot_uniform")
    for k, (W, b) in enumerate(zip(net.weights, net.biases)):
        bound = glorot_bound(sizes[k], sizes[k + 1], activation)
        # the float32 rounding of a draw just inside the bound may reach the bound's own
        limit = np.asarray(bound, dtype=dtype)
        for values in (W, b):
            assert values.dtype == np.dtype(dtype)
            assert np.abs(values).max() <= limit
        # uniform on [-bound, bound]: the extremes are reached, mean 0, variance
        # bound^2 / 3, each to 5 standard errors of its estimate over n draws
        n = W.size
        assert np.abs(W).max() > 0.99 * bound and np.abs(W).min() < 0.01 * bound
        assert abs(W.mean()) < 5 * bound / np.sqrt(3 * n)
        assert W.var() == pytest.approx(bound ** 2 / 3, rel=5 * np.sqrt(0.8 / n))
        assert np.any(b != 0)


def test_glorot_uniform_is_scikit_learns_distribution():
    neural_network = pytest.importorskip("sklearn.neural_network")
    stats = pytest.importorskip("scipy.stats")
    for activation, sklearn_name in [("sigmoid", "logistic"), ("relu", "relu")]:
        net = Network([120, 80, 5], activation=activation, output="softmax", seed=1,
                      init="glorot_uniform")
        mlp = neural_network.MLPClassifier(activation=sklearn_name)
        mlp._random_state = np.random.RandomState(1)
        for k, (fan_in, fan_out) in enumerate([(120, 80), (80, 5)]):
            coef, intercept = mlp._init_coef(fan_in, fan_out, np.float64)
            assert coef.shape == net.weights[k].T.shape
            # same support and the same law (two-sample Kolmogorov-Smirnov)
            bound = glorot_bound(fan_in, fan_out, activation)
            assert np.abs(coef).max() <= bound and np.abs(net.weights[k]).max() <= bound
            assert stats.ks_2samp(coef.ravel(), net.weights[k].ravel()).pvalue > 1e-3
            assert np.abs(intercept).max() <= bound and np.abs(net.biases[k]).max() <= bound


def test_glorot_factor_per_hidden_layer_and_for_the_output():
    # a list of activations: each hidden layer by its own, the output by the last hidden's
    sizes = [50, 40, 30, 20]
    net = Network(sizes, activation=["relu", "sigmoid"], output="sigmoid", seed=2,
                  init="glorot_uniform")
    for k, kind in enumerate(["relu", "sigmoid", "sigmoid"]):
        bound = glorot_bound(sizes[k], sizes[k + 1], kind)
        assert bound * 0.9 < np.abs(net.weights[k]).max() <= bound
    # no hidden layer: the `activation` string decides, as in scikit-learn
    lone = Network([400, 300], activation="sigmoid", seed=0, init="glorot_uniform")
    bound = glorot_bound(400, 300, "sigmoid")
    assert bound * 0.99 < np.abs(lone.weights[0]).max() <= bound


def test_glorot_uniform_is_seeded():
    first = Network([6, 5, 3], seed=7, init="glorot_uniform")
    again = Network([6, 5, 3], seed=7, init="glorot_uniform")
    other = Network([6, 5, 3], seed=8, init="glorot_uniform")
    np.testing.assert_array_equal(first.get_parameters(), again.get_parameters())
    assert not np.array_equal(first.get_parameters(), other.get_parameters())


def test_the_default_is_normal_and_unchanged():
    implicit = Network([20, 15, 4], activation=["relu"], seed=3)
    named = Network([20, 15, 4], activation=["relu"], seed=3, init="normal")
    np.testing.assert_array_equal(implicit.get_parameters(), named.get_parameters())
    # N(0, 1/fan_in), He's N(0, 2/fan_in) for relu; biases zero
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(named.weights[0], rng.standard_normal((15, 20)) * np.sqrt(2 / 20))
    np.testing.assert_array_equal(named.weights[1], rng.standard_normal((4, 15)) * np.sqrt(1 / 15))
    assert not any(b.any() for b in named.biases)


@pytest.mark.parametrize("init", ["xavier", "Glorot_Uniform", None, 1])
def test_unknown_inits_are_refused(init):
    with pytest.raises(ValueError, match="init"):
        Network([3, 2], init=init)
