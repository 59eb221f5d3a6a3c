"""The public objects as a user handles them: live parameters, repr, exports, copies.

The live-parameter lists (`net.weights[k] = ...` and in-place edits, seen by
forward and by training), the reprs of Network and Trainer, the package's
exports, and copy, deepcopy and pickle of a Network and a Trainer.
"""

import copy
import pickle

import numpy as np
import pytest

import fastbp
from fastbp import Network, Trainer

SIZES = [4, 5, 3]


def make_data(n_samples=12, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n_samples, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], size=n_samples)
    return X, labels


def make_trained_pair():
    """A network and a momentum trainer that have already run one epoch."""
    net = Network(SIZES, dtype="float64", seed=1)
    trainer = Trainer(net, loss="mse", learning_rate=0.5, batch_size=5, momentum=0.5,
                      shuffle=True, seed=2)
    X, labels = make_data()
    trainer.fit(X, labels, epochs=1)
    return net, trainer


# ------------------------------------------------- live parameters (positive)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_forward(weights, biases, X):
    A = X
    for W, b in zip(weights, biases):
        A = _sigmoid(A @ W.T + b)
    return A


def test_assigning_a_layer_writes_into_the_live_parameters():
    net = Network(SIZES, seed=1)
    X, _ = make_data()
    view = net.weights[0]
    new = np.arange(20, dtype=float).reshape(5, 4) / 20
    net.weights[0] = new
    net.biases[1] = [0.1, -0.2, 0.3]

    assert net.weights[0] is view                 # the same live array, now holding `new`
    np.testing.assert_array_equal(view, new)
    np.testing.assert_array_equal(net.get_parameters()[:20], new.ravel())
    expected = _numpy_forward(net.weights, net.biases, X)
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-12)
    assert net.biases[1].tolist() == [0.1, -0.2, 0.3]

    new[...] = 0                                  # the value was copied in, not aliased
    assert net.weights[0][0, 1] == 1 / 20


def test_assigning_lists_accepts_other_dtypes_and_layouts():
    net = Network(SIZES, dtype="float32", seed=1)
    fortran = np.asfortranarray(np.linspace(-1, 1, 20).reshape(5, 4))
    net.weights = [fortran, np.ones((3, 5), dtype=np.int64)]
    assert net.weights[0].dtype == np.float32
    np.testing.assert_array_equal(net.weights[0], fortran.astype(np.float32))
    np.testing.assert_array_equal(net.weights[1], 1)


def test_in_place_edits_are_seen_by_forward():
    net = Network(SIZES, seed=1)
    X, _ = make_data()
    before = net.forward(X)
    net.weights[0][...] = 0
    net.biases[0][...] = 0
    # every hidden activation is sigmoid(0) = 1/2, so every row is the same
    after = net.forward(X)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, np.broadcast_to(after[0], after.shape), rtol=0, atol=0)
    expected = _sigmoid(0.5 * net.weights[1].sum(axis=1) + net.biases[1])
    np.testing.assert_allclose(after[0], expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_in_place_edits_are_seen_by_training(dtype):
    """One plain SGD step on a [2, 1] identity network with mse, started from zero.

    With W = 0 and b = 0 the output is 0, so delta = A - Y = -Y and the step is
    W <- eta/m Y^T X, b <- eta/m sum Y: it depends on the zeros written in place.
    """
    net = Network([2, 1], output="identity", dtype=dtype, seed=5)
    trainer = Trainer(net, loss="mse", learning_rate=0.5, batch_size=4, shuffle=False, seed=0)
    X = np.array([[1.0, 2.0], [0.0, 1.0], [-1.0, 0.5], [2.0, -1.0]])
    Y = np.array([[1.0], [0.0], [2.0], [-1.0]])
    net.weights[0][...] = 0
    net.biases[0][...] = 0

    loss = trainer.step(X, Y)

    assert loss == pytest.approx(0.5 * np.mean(Y ** 2))
    rtol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(net.weights[0], 0.5 / 4 * Y.T @ X, rtol=rtol)
    np.testing.assert_allclose(net.biases[0], 0.5 / 4 * Y.sum(axis=0), rtol=rtol)


def test_training_updates_the_arrays_handed_out_before():
    net, trainer = make_trained_pair()
    weights, biases = net.weights[0], net.biases[1]
    before = weights.copy()
    X, labels = make_data()
    trainer.fit(X, labels, epochs=1)
    assert not np.array_equal(weights, before)
    np.testing.assert_array_equal(weights, net.weights[0])
    np.testing.assert_array_equal(biases, net.biases[1])
    np.testing.assert_array_equal(net.get_parameters()[:20], weights.ravel())


# ------------------------------------------------------------------- repr


def test_network_repr_names_sizes_and_settings():
    text = repr(Network([4, 7, 6, 3], activation=["relu", "tanh"], output="softmax",
                        dtype="float32", seed=0))
    assert "[4, 7, 6, 3]" in text
    for word in ("relu", "tanh", "softmax", "float32"):
        assert word in text


def test_trainer_repr_names_the_hyperparameters():
    net = Network([4, 7, 3], seed=0)
    text = repr(Trainer(net, loss="cross_entropy", learning_rate=0.125, batch_size=17,
                        l2=0.0625, momentum=0.375, shuffle=False, seed=11))
    assert "[4, 7, 3]" in text
    for part in ("cross_entropy", "learning_rate=0.125", "batch_size=17", "l2=0.0625",
                 "momentum=0.375", "shuffle=False", "seed=11", "sgd"):
        assert part in text


def test_repr_follows_attribute_changes():
    net = Network([4, 7, 3], seed=0)
    trainer = Trainer(net, learning_rate=0.5)
    trainer.learning_rate = 0.03125
    assert "learning_rate=0.03125" in repr(trainer)


# ---------------------------------------------------------------- exports


def test_package_exports():
    assert "Network" in fastbp.__all__
    assert "Trainer" in fastbp.__all__
    assert len(set(fastbp.__all__)) == len(fastbp.__all__)
    for name in fastbp.__all__:
        assert hasattr(fastbp, name), name
    assert fastbp.Network is Network
    assert fastbp.Trainer is Trainer
    namespace = {}
    exec("from fastbp import *", namespace)
    assert {"Network", "Trainer"} <= set(namespace)
    assert not any(name.startswith("_") and name != "__version__" for name in fastbp.__all__)


# ------------------------------------------------------------ copy and pickle


COPIERS = {
    "deepcopy": copy.deepcopy,
    "copy-method": lambda net: net.copy(),
    "pickle": lambda net: pickle.loads(pickle.dumps(net)),
    "pickle-protocol-2": lambda net: pickle.loads(pickle.dumps(net, protocol=2)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("how", list(COPIERS))
def test_copies_are_independent_with_live_weights(how, dtype):
    net = Network([4, 6, 5, 3], activation=["relu", "tanh"], output="softmax", dtype=dtype,
                  seed=1)
    X, _ = make_data()
    original_out = net.forward(X)
    original_params = net.get_parameters()

    clone = COPIERS[how](net)

    assert clone is not net
    assert clone.layer_sizes == net.layer_sizes
    assert clone.activation == net.activation
    assert clone.output == net.output
    assert clone.dtype == net.dtype
    assert clone.get_parameters().tobytes() == original_params.tobytes()
    assert clone.forward(X).tobytes() == original_out.tobytes()
    assert not np.shares_memory(clone.weights[0], net.weights[0])

    # editing the copy's weights in place changes the copy's forward only
    clone.weights[0][...] = 0
    clone.biases[0][...] = 1
    assert not np.allclose(clone.forward(X), original_out)
    assert clone.get_parameters()[:24].tolist() == [0.0] * 24
    assert net.forward(X).tobytes() == original_out.tobytes()
    assert net.get_parameters().tobytes() == original_params.tobytes()

    # assigning through the copy's list is live too
    clone.weights[2] = np.zeros((3, 5))
    np.testing.assert_allclose(clone.forward(X), 1 / 3, rtol=1e-6)

    # training the copy leaves the original alone, and vice versa
    Xt, labels = make_data()
    Trainer(clone, loss="cross_entropy", learning_rate=0.1, seed=0).fit(Xt, labels, epochs=1)
    assert net.get_parameters().tobytes() == original_params.tobytes()
    copied = clone.get_parameters()
    Trainer(net, loss="cross_entropy", learning_rate=0.1, seed=0).fit(Xt, labels, epochs=1)
    assert clone.get_parameters().tobytes() == copied.tobytes()


def test_a_trainer_deepcopy_trains_like_the_original():
    _, trainer = make_trained_pair()
    clone = copy.deepcopy(trainer)
    assert clone.network is not trainer.network
    X, labels = make_data(seed=5)
    first = trainer.fit(X, labels, epochs=2)
    second = clone.fit(X, labels, epochs=2)
    assert first["loss"] == second["loss"]
    assert clone.network.get_parameters().tobytes() == trainer.network.get_parameters().tobytes()


def test_predict_of_a_regressor_gives_its_values_not_labels():
    one = Network([3, 4, 1], output="identity", seed=0)
    X = np.random.default_rng(0).random((5, 3))
    np.testing.assert_array_equal(one.predict(X), one.forward(X)[:, 0])
    several = Network([3, 4, 2], output="identity", seed=0)
    np.testing.assert_array_equal(several.predict(X), several.forward(X))
    classifier = Network([3, 4, 2], output="softmax", seed=0)
    np.testing.assert_array_equal(classifier.predict(X), classifier.forward(X).argmax(axis=1))
