"""Training as a user sees it: dtypes, input layouts, labels, history,
continuation, and learning real data.

Determinism is in test_determinism.py, divergence in test_divergence.py,
the demo command in test_cli.py.
"""

import numpy as np
import pytest
from helpers import DTYPES, make_data, one_hot

from fastbp import Network, Trainer

SIZES = [6, 9, 4]


# ---------------------------------------------------------------- dtypes


def relu_softmax_trainer(dtype):
    net = Network(SIZES, activation="relu", output="softmax", dtype=dtype, seed=0)
    return Trainer(net, loss="cross_entropy", learning_rate=0.1, batch_size=4,
                   momentum=0.5, seed=0)


def test_float32_network_stays_float32():
    X, labels = make_data(np.random.default_rng(1), 30, SIZES, np.float64, labels=True)
    trainer = relu_softmax_trainer("float32")
    net = trainer.network

    history = trainer.fit(X, labels, epochs=2, validation_data=(X, labels))
    after_fit = net.get_parameters()
    outputs = net.forward(X)        # float64 input to a float32 network
    _, grad_weights, grad_biases = trainer.loss_and_gradients(X, labels)
    trainer.step(X[:5], labels[:5])

    assert net.dtype == np.float32
    assert outputs.dtype == np.float32
    for array in [*net.weights, *net.biases, *grad_weights, *grad_biases,
                  net.get_parameters()]:
        assert array.dtype == np.float32
    assert all(isinstance(value, float) for value in history["loss"] + history["val_loss"])
    # a float32 run: close to the float64 run, but its own numbers
    twin = relu_softmax_trainer("float64")
    twin.fit(X, labels, epochs=2, validation_data=(X, labels))
    in_float64 = twin.network.get_parameters()
    np.testing.assert_allclose(after_fit, in_float64, rtol=1e-3, atol=1e-4)
    assert not np.array_equal(after_fit, in_float64.astype(np.float32))


# ---------------------------------------------------------------- input layouts


def run_everything(X, Y, dtype="float64"):
    """Parameters after a shuffled fit, plus forward / J / gradients / evaluate."""
    net = Network(SIZES, activation="sigmoid", output="sigmoid", dtype=dtype, seed=2)
    trainer = Trainer(net, loss="cross_entropy", learning_rate=0.5, batch_size=4, l2=1e-3,
                      momentum=0.3, seed=2)
    history = trainer.fit(X, Y, epochs=2, validation_data=(X, Y))
    J, grad_weights, grad_biases = trainer.loss_and_gradients(X, Y)
    trainer.step(X, Y)
    return {
        "parameters": net.get_parameters(),
        "forward": net.forward(X),
        "loss": np.array(history["loss"]),
        "val_loss": np.array(history["val_loss"]),
        "J": np.array(J),
        "gradients": np.concatenate([g.ravel() for g in grad_weights + grad_biases]),
        "evaluate": np.array(trainer.evaluate(X, Y)["loss"]),
    }


def assert_bit_identical(results, reference):
    for key in reference:
        assert results[key].dtype == reference[key].dtype, key
        np.testing.assert_array_equal(results[key], reference[key], err_msg=key)


def base_data(rng, n_samples=21):
    X, Y = make_data(rng, n_samples, SIZES)
    return X, Y


def as_fortran(X, Y):
    return np.asfortranarray(X), np.asfortranarray(Y)


def as_strided_views(X, Y):
    # every other row of a bigger array, and every other column of a wider one
    rows = np.zeros((2 * X.shape[0], X.shape[1]))
    rows[::2] = X
    columns = np.zeros((Y.shape[0], 2 * Y.shape[1]))
    columns[:, 1::2] = Y
    X_view, Y_view = rows[::2], columns[:, 1::2]
    assert not X_view.flags.c_contiguous and not Y_view.flags.c_contiguous
    return X_view, Y_view


def as_reversed_views(X, Y):
    # negative strides
    return X[::-1].copy()[::-1], Y[::-1].copy()[::-1]


def as_read_only(X, Y):
    X, Y = X.copy(), Y.copy()
    X.flags.writeable = False
    Y.flags.writeable = False
    return X, Y


def as_lists(X, Y):
    return X.tolist(), Y.tolist()


LAYOUTS = {
    "fortran": as_fortran,
    "strided-views": as_strided_views,
    "negative-strides": as_reversed_views,
    "read-only": as_read_only,
    "nested-lists": as_lists,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_any_memory_layout_gives_bit_identical_results(layout):
    X, Y = base_data(np.random.default_rng(7))
    reference = run_everything(X, Y)
    X_layout, Y_layout = LAYOUTS[layout](X, Y)
    snapshot = (np.array(X_layout, copy=True), np.array(Y_layout, copy=True))

    results = run_everything(X_layout, Y_layout)

    assert_bit_identical(results, reference)
    # the caller's arrays are never written
    np.testing.assert_array_equal(np.asarray(X_layout), snapshot[0])
    np.testing.assert_array_equal(np.asarray(Y_layout), snapshot[1])


@pytest.mark.parametrize("input_dtype", [np.int64, np.int32, np.uint8, np.float32, np.bool_])
def test_other_input_dtypes_equal_their_float64_values(input_dtype):
    rng = np.random.default_rng(8)
    if input_dtype == np.float32:
        X = rng.uniform(-1, 1, size=(21, SIZES[0])).astype(np.float32)
    else:
        X = rng.integers(0, 2 if input_dtype == np.bool_ else 4,
                         size=(21, SIZES[0])).astype(input_dtype)
    _, Y = base_data(rng)

    # targets in float32 too: cast up, they must act as their exact float64 values
    Y32 = Y.astype(np.float32)

    results = run_everything(X, Y32)

    reference = run_everything(X.astype(np.float64), Y32.astype(np.float64))
    assert_bit_identical(results, reference)


def test_float64_input_to_float32_network_equals_float32_input():
    X, Y = base_data(np.random.default_rng(9))
    reference = run_everything(X.astype(np.float32), Y.astype(np.float32), dtype="float32")

    results = run_everything(X, Y, dtype="float32")

    assert reference["parameters"].dtype == np.float32
    assert_bit_identical(results, reference)


# ---------------------------------------------------------------- labels


LABEL_FORMS = {
    "int64": lambda labels: labels.astype(np.int64),
    "int32": lambda labels: labels.astype(np.int32),
    "uint8": lambda labels: labels.astype(np.uint8),
    "float-integers": lambda labels: labels.astype(np.float64),
    "list": lambda labels: labels.tolist(),
}


@pytest.mark.parametrize("form", list(LABEL_FORMS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_labels_equal_explicit_one_hot(dtype, form):
    X, labels = make_data(np.random.default_rng(10), 27, SIZES, dtype, labels=True)
    Y = one_hot(labels, SIZES[-1], dtype)
    runs = []
    for targets in (Y, LABEL_FORMS[form](labels)):
        net = Network(SIZES, activation="relu", output="softmax", dtype=np.dtype(dtype).name,
                      seed=1)
        trainer = Trainer(net, loss="cross_entropy", learning_rate=0.3, batch_size=6, seed=1)
        history = trainer.fit(X, targets, epochs=2, validation_data=(X, targets))
        J, grad_weights, _ = trainer.loss_and_gradients(X, targets)
        runs.append((net.get_parameters(), history, J, grad_weights[0],
                     trainer.evaluate(X, targets)))

    (params_1h, history_1h, J_1h, grad_1h, eval_1h), (params, history, J, grad, evaluated) = runs
    np.testing.assert_array_equal(params, params_1h)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert history[key] == history_1h[key], key
    assert J == J_1h
    np.testing.assert_array_equal(grad, grad_1h)
    assert evaluated == eval_1h
    assert set(evaluated) == {"loss", "accuracy"}


# ---------------------------------------------------------------- history


def test_history_keys_and_lengths_for_classification():
    X, labels = make_data(np.random.default_rng(11), 30, SIZES, labels=True)
    X_val, labels_val = make_data(np.random.default_rng(12), 9, SIZES, labels=True)
    trainer = Trainer(Network(SIZES, output="softmax", seed=0), loss="cross_entropy",
                      learning_rate=0.5, seed=0)

    history = trainer.fit(X, labels, epochs=4, validation_data=(X_val, labels_val))

    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(history[key]) == 4, key
        assert all(np.isfinite(value) for value in history[key]), key
    assert all(0 <= value <= 1 for value in history["accuracy"] + history["val_accuracy"])
    assert all(len(values) == 4 for values in history.values())
    # val_* are the trained network's metrics on the validation data
    final = trainer.evaluate(X_val, labels_val)
    assert history["val_loss"][-1] == final["loss"]
    assert history["val_accuracy"][-1] == final["accuracy"]
    # learning does something on separable-ish data: the loss goes down
    assert history["loss"][-1] < history["loss"][0]


def test_history_has_no_accuracy_for_regression_targets():
    rng = np.random.default_rng(13)
    X = rng.uniform(-1, 1, size=(25, SIZES[0]))
    Y = rng.uniform(-2, 2, size=(25, SIZES[-1]))
    trainer = Trainer(Network(SIZES, output="identity", seed=0), loss="mse",
                      learning_rate=0.05, seed=0)

    history = trainer.fit(X, Y, epochs=3, validation_data=(X[:7], Y[:7]))

    assert "accuracy" not in history and "val_accuracy" not in history
    assert len(history["loss"]) == len(history["val_loss"]) == 3
    assert "accuracy" not in trainer.evaluate(X, Y)
    assert "accuracy" not in trainer.history


def test_history_without_validation_data_has_no_val_keys():
    X, labels = make_data(np.random.default_rng(14), 20, SIZES, labels=True)
    history = Trainer(Network(SIZES, seed=0), seed=0).fit(X, labels, epochs=2)

    assert len(history["loss"]) == len(history["accuracy"]) == 2
    assert not any(key.startswith("val_") for key in history)


def test_trainer_history_accumulates_and_epoch_counts():
    X, labels = make_data(np.random.default_rng(15), 20, SIZES, labels=True)
    trainer = Trainer(Network(SIZES, seed=0), learning_rate=1.0, seed=0)
    assert trainer.epoch == 0

    first = trainer.fit(X, labels, epochs=2, validation_data=(X, labels))
    assert trainer.epoch == 2
    second = trainer.fit(X, labels, epochs=3, validation_data=(X, labels))
    assert trainer.epoch == 5
    nothing = trainer.fit(X, labels, epochs=0)
    assert trainer.epoch == 5

    assert len(first["loss"]) == 2 and len(second["loss"]) == 3
    assert nothing["loss"] == []
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert trainer.history[key] == first[key] + second[key], key


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_continuing_fit_equals_one_longer_fit(dtype, shuffle):
    X, labels = make_data(np.random.default_rng(16), 23, SIZES, dtype, labels=True)

    def new_trainer():
        net = Network(SIZES, activation="tanh", output="softmax",
                      dtype=np.dtype(dtype).name, seed=4)
        return Trainer(net, loss="cross_entropy", learning_rate=0.3, batch_size=5,
                       l2=1e-3, momentum=0.7, shuffle=shuffle, seed=4)

    pieces = new_trainer()
    pieces.fit(X, labels, epochs=2)
    pieces.fit(X, labels, epochs=1)
    pieces.fit(X, labels, epochs=2)
    whole = new_trainer()
    whole.fit(X, labels, epochs=5)

    np.testing.assert_array_equal(pieces.network.get_parameters(),
                                  whole.network.get_parameters())
    assert pieces.history["loss"] == whole.history["loss"]
    assert pieces.history["accuracy"] == whole.history["accuracy"]
    assert pieces.epoch == whole.epoch == 5


# ---------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def digits():
    from sklearn import datasets, model_selection

    data = datasets.load_digits()
    X = data.data / 16.0
    return model_selection.train_test_split(X, data.target, random_state=0,
                                            stratify=data.target)


@pytest.mark.parametrize("dtype", DTYPES)
def test_digits_cross_entropy_reaches_95_percent(digits, dtype):
    X_train, X_test, y_train, y_test = digits
    net = Network([64, 30, 10], activation="sigmoid", dtype=np.dtype(dtype).name, seed=0)
    trainer = Trainer(net, loss="cross_entropy", learning_rate=0.5, batch_size=10,
                      l2=1e-4, seed=0)

    history = trainer.fit(X_train.astype(dtype), y_train, epochs=30,
                          validation_data=(X_test, y_test))

    accuracy = np.mean(net.predict(X_test) == y_test)
    assert accuracy >= 0.95
    assert history["val_accuracy"][-1] == accuracy
    assert history["loss"][-1] < 0.5 * history["loss"][0]


def test_digits_mse_with_sigmoid_output_learns(digits):
    X_train, X_test, y_train, y_test = digits
    net = Network([64, 30, 10], activation="sigmoid", output="sigmoid", seed=0)
    trainer = Trainer(net, loss="mse", learning_rate=3.0, batch_size=10, seed=0)

    trainer.fit(X_train, y_train, epochs=30)

    assert np.mean(net.predict(X_test) == y_test) >= 0.9
