"""Bad arguments at the public boundary: what is refused, how, and what it leaves.

The design card: "A bad argument raises ValueError or TypeError naming the argument
and what was expected, before anything is changed: a rejected call leaves the
network and trainer exactly as they were." Every rejection below checks the
exception type and that the message names the argument; every rejection of a
call on an existing object also checks that the parameters, the history, the
epoch count and the trainer's random generator are untouched, and that the
next valid fit trains exactly like one on a twin that never saw the bad call.
"""

import copy

import numpy as np
import pytest

import fastbp
from fastbp import Network, Trainer
from helpers import (
    optimizer_state,
    rng_state,
    trainer_rng,
    update_count,
    validation_split_rows,
)

SIZES = [4, 5, 3]
N_SAMPLES = 12


def make_data(n_samples=N_SAMPLES, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n_samples, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], size=n_samples)
    return X, labels


def make_trained_pair(dtype="float64", output="sigmoid", **options):
    """A network and trainer that have already run one epoch.

    Momentum gives the trainer optimizer state and shuffle=True makes each
    epoch draw from its generator, so a call that touched either would show
    in the next fit.
    """
    net = Network(SIZES, output=output, dtype=dtype, seed=1)
    settings = dict(loss="mse", learning_rate=0.5, batch_size=5, momentum=0.5,
                    shuffle=True, seed=2)
    settings.update(options)
    trainer = Trainer(net, **settings)
    X, labels = make_data()
    trainer.fit(X, labels, epochs=1)
    return net, trainer


def snapshot(trainer):
    return {
        "parameters": trainer.network.get_parameters(),
        "history": copy.deepcopy(trainer.history),
        "epoch": trainer.epoch,
        "rng": rng_state(trainer),
    }


def assert_same_snapshot(after, before):
    assert after["parameters"].dtype == before["parameters"].dtype
    # bit-identical, not merely close
    assert after["parameters"].tobytes() == before["parameters"].tobytes()
    assert after["history"] == before["history"]
    assert after["epoch"] == before["epoch"]
    assert after["rng"] == before["rng"]


def assert_next_fit_unaffected(trainer, dtype="float64", output="sigmoid", **options):
    """The next valid fit of `trainer` matches one of an untouched twin, bit for bit."""
    _, twin = make_trained_pair(dtype=dtype, output=output, **options)
    X, labels = make_data(seed=4)
    history = trainer.fit(X, labels, epochs=2)
    twin_history = twin.fit(X, labels, epochs=2)
    assert trainer.network.get_parameters().tobytes() == twin.network.get_parameters().tobytes()
    assert history["loss"] == twin_history["loss"]
    assert trainer.epoch == twin.epoch == 3


def assert_rejected_without_change(call, exception, match, *, restore=None, dtype="float64"):
    """`call(net, trainer)` on a trained pair raises and changes nothing."""
    net, trainer = make_trained_pair(dtype=dtype)
    before = snapshot(trainer)
    with pytest.raises(exception, match=match):
        call(net, trainer)
    assert_same_snapshot(snapshot(trainer), before)
    if restore is not None:
        restore(trainer)
    assert_next_fit_unaffected(trainer, dtype=dtype)


def test_the_helpers_notice_a_change():
    """The state checks above can fail: one more step or one shuffle shows."""
    _, trainer = make_trained_pair()
    before = snapshot(trainer)
    trainer_rng(trainer).permutation(3)
    with pytest.raises(AssertionError):
        assert_same_snapshot(snapshot(trainer), before)

    _, trainer = make_trained_pair()
    X, labels = make_data()
    trainer.step(X[:2], labels[:2])
    with pytest.raises(AssertionError):
        assert_next_fit_unaffected(trainer)


# ------------------------------------------------------------------ Network()


@pytest.mark.parametrize(
    "layer_sizes, exception",
    [
        (5, TypeError),                     # not a sequence
        (None, TypeError),
        ("345", TypeError),                 # a string is not a list of sizes
        (b"\x03\x02", TypeError),
        ((size for size in [3, 2]), TypeError),   # a generator
        ([], ValueError),
        ([4], ValueError),                  # fewer than two entries
        ([4, 0], ValueError),
        ([4, 0, 3], ValueError),
        ([4, -2, 3], ValueError),
        ([4.0, 3], TypeError),
        ([4, 2.5, 3], TypeError),
        ([True, 3], TypeError),
        ([4, np.True_], TypeError),
        ([4, "3"], TypeError),
        ([4, None], TypeError),
    ],
    ids=repr,
)
def test_bad_layer_sizes(layer_sizes, exception):
    with pytest.raises(exception, match="layer_sizes"):
        Network(layer_sizes)


def test_layer_sizes_accept_numpy_integers_and_arrays():
    net = Network(np.array([4, 5, 3]), seed=0)
    assert net.layer_sizes == SIZES
    assert all(type(size) is int for size in net.layer_sizes)
    assert Network([np.int32(4), np.int64(3)], seed=0).layer_sizes == [4, 3]


@pytest.mark.parametrize("sizes", [[2**40, 2**40], [2**62, 3], [3, 2**62, 2], [2**31, 2**33]])
def test_layer_sizes_too_large_for_memory_are_refused_cleanly(sizes):
    # The parameter count is computed in C (Py_ssize_t); a product that
    # overflows is undefined behaviour, which the UBSan build reports.
    with pytest.raises((ValueError, MemoryError)):
        Network(sizes)


@pytest.mark.parametrize(
    "activation, exception",
    [
        ("bogus", ValueError),
        ("softmax", ValueError),            # an output activation, not a hidden one
        ("Sigmoid", ValueError),
        (["relu"], ValueError),             # two hidden layers need two entries
        (["relu", "tanh", "relu"], ValueError),
        (["relu", "bogus"], ValueError),
        ([1, 2], ValueError),               # entries that are not strings
        (["relu", None], ValueError),
        (None, TypeError),
        (3, TypeError),
        ({"relu", "tanh"}, TypeError),
    ],
    ids=repr,
)
def test_bad_activation(activation, exception):
    with pytest.raises(exception, match="activation"):
        Network([4, 5, 6, 3], activation=activation)


def test_activation_list_for_a_network_without_hidden_layers_must_be_empty():
    assert Network([4, 3], activation=[], seed=0).layer_sizes == [4, 3]
    with pytest.raises(ValueError, match="activation"):
        Network([4, 3], activation=["relu"])


@pytest.mark.parametrize("output", ["bogus", "tanh", "relu", "Softmax", None, 5])
def test_bad_output(output):
    with pytest.raises(ValueError, match="output"):
        Network(SIZES, output=output)


@pytest.mark.parametrize(
    "dtype, exception",
    [
        ("float16", ValueError),
        (np.float16, ValueError),
        ("int32", ValueError),
        (np.int64, ValueError),
        ("complex128", ValueError),
        (np.complex64, ValueError),
        (complex, ValueError),
        ("nonsense", TypeError),
        ("bool", ValueError),
        (object, ValueError),
    ],
    ids=repr,
)
def test_bad_dtype(dtype, exception):
    with pytest.raises(exception, match="dtype"):
        Network(SIZES, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.dtype("float64")])
def test_good_dtype_spellings(dtype):
    net = Network(SIZES, dtype=dtype, seed=0)
    assert net.dtype == np.dtype(dtype)
    assert all(weight.dtype == np.dtype(dtype) for weight in net.weights)


@pytest.mark.parametrize(
    "seed, exception",
    [(-1, ValueError), (1.5, TypeError), (2.0, TypeError), ("0", TypeError),
     (True, TypeError), ([1], TypeError)],
    ids=repr,
)
def test_bad_network_seed(seed, exception):
    with pytest.raises(exception, match="seed"):
        Network(SIZES, seed=seed)


# ------------------------------------------------------------------ Trainer()


@pytest.mark.parametrize("network", [None, "net", [4, 5, 3], object()], ids=repr)
def test_trainer_needs_a_network(network):
    with pytest.raises(TypeError, match="network"):
        Trainer(network)


TRAINER_CASES = [
    ("loss", "hinge", ValueError),
    ("loss", "MSE", ValueError),
    ("loss", None, ValueError),
    ("learning_rate", 0, ValueError),
    ("learning_rate", 0.0, ValueError),
    ("learning_rate", -0.1, ValueError),
    ("learning_rate", float("nan"), ValueError),
    ("learning_rate", float("inf"), ValueError),
    ("learning_rate", np.float32("nan"), ValueError),
    ("learning_rate", "0.1", TypeError),
    ("learning_rate", True, TypeError),
    ("learning_rate", None, TypeError),
    ("batch_size", 0, ValueError),
    ("batch_size", -4, ValueError),
    ("batch_size", 4.0, TypeError),
    ("batch_size", 2.5, TypeError),
    ("batch_size", True, TypeError),
    ("batch_size", "4", TypeError),
    ("l2", -1e-3, ValueError),
    ("l2", float("nan"), ValueError),
    ("l2", float("inf"), ValueError),
    ("l2", "0", TypeError),
    ("optimizer", "lbfgs", ValueError),
    ("optimizer", None, ValueError),
    ("momentum", -0.1, ValueError),
    ("momentum", 1.0001, ValueError),
    ("momentum", 2, ValueError),
    ("momentum", 1.5, ValueError),
    ("momentum", float("nan"), ValueError),
    ("momentum", "0.9", TypeError),
    ("shuffle", 1, ValueError),
    ("shuffle", 0, ValueError),
    ("shuffle", "yes", ValueError),
    ("shuffle", None, ValueError),
    ("seed", -1, ValueError),
    ("seed", 1.5, TypeError),
    ("seed", "7", TypeError),
    ("seed", True, TypeError),
]


@pytest.mark.parametrize("name, value, exception", TRAINER_CASES,
                         ids=[f"{name}={value!r}" for name, value, _ in TRAINER_CASES])
def test_bad_trainer_argument(name, value, exception):
    net = Network(SIZES, seed=1)
    before = net.get_parameters()
    with pytest.raises(exception, match=name):
        Trainer(net, **{name: value})
    assert net.get_parameters().tobytes() == before.tobytes()


def test_momentum_with_another_optimizer_is_refused():
    with pytest.raises(ValueError, match="momentum"):
        Trainer(Network(SIZES, seed=1), optimizer="adam", momentum=0.9)


def test_good_trainer_arguments_are_kept():
    trainer = Trainer(Network(SIZES, seed=1), loss="cross_entropy", learning_rate=np.float32(0.25),
                      batch_size=np.int64(7), l2=0, momentum=0.0, shuffle=False, seed=np.int64(3))
    assert (trainer.loss, trainer.batch_size, trainer.l2, trainer.shuffle, trainer.seed) == (
        "cross_entropy", 7, 0, False, 3)
    assert trainer.learning_rate == pytest.approx(0.25)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_with_identity_output_is_refused_at_creation(dtype):
    net = Network(SIZES, output="identity", dtype=dtype, seed=1)
    before = net.get_parameters()
    with pytest.raises(ValueError, match="cross_entropy") as info:
        Trainer(net, loss="cross_entropy")
    assert "identity" in str(info.value) or "output" in str(info.value)
    assert net.get_parameters().tobytes() == before.tobytes()
    # the same network trains with mse
    Trainer(net, loss="mse")


# ------------------------------------------- hyperparameters set as attributes

ATTRIBUTE_CASES = [
    ("learning_rate", -1, ValueError),
    ("learning_rate", 0.0, ValueError),
    ("learning_rate", float("nan"), ValueError),
    ("learning_rate", "fast", TypeError),
    ("batch_size", 0, ValueError),
    ("batch_size", 2.5, TypeError),
    ("l2", -0.5, ValueError),
    ("momentum", 1.5, ValueError),
    ("shuffle", "yes", ValueError),
    ("optimizer", "bogus", ValueError),
    ("loss", "hinge", ValueError),
    ("schedule", "not a schedule", TypeError),
]

ENTRY_POINTS = {
    "fit": lambda trainer, X, labels: trainer.fit(X, labels, epochs=1),
    "step": lambda trainer, X, labels: trainer.step(X[:5], labels[:5]),
    "loss_and_gradients": lambda trainer, X, labels: trainer.loss_and_gradients(X, labels),
    "evaluate": lambda trainer, X, labels: trainer.evaluate(X, labels),
}


@pytest.mark.parametrize("entry", ["fit", "step"])
@pytest.mark.parametrize("name, value, exception", ATTRIBUTE_CASES,
                         ids=[f"{name}={value!r}" for name, value, _ in ATTRIBUTE_CASES])
def test_bad_value_assigned_as_attribute_is_refused_at_next_call(entry, name, value, exception):
    X, labels = make_data()
    saved = {}

    def call(net, trainer):
        saved[name] = getattr(trainer, name)
        setattr(trainer, name, value)
        ENTRY_POINTS[entry](trainer, X, labels)

    def restore(trainer):
        setattr(trainer, name, saved[name])

    assert_rejected_without_change(call, exception, name, restore=restore)


@pytest.mark.parametrize("entry", ["loss_and_gradients", "evaluate"])
def test_bad_attribute_is_refused_by_the_read_only_calls_too(entry):
    X, labels = make_data()

    def call(net, trainer):
        trainer.l2 = float("nan")
        ENTRY_POINTS[entry](trainer, X, labels)

    assert_rejected_without_change(call, ValueError, "l2",
                                   restore=lambda trainer: setattr(trainer, "l2", 0.0))


def test_cross_entropy_assigned_to_an_identity_network_is_refused_at_next_fit():
    net = Network(SIZES, output="identity", seed=1)
    trainer = Trainer(net, loss="mse", learning_rate=0.1, batch_size=5, seed=2)
    X, labels = make_data()
    trainer.fit(X, labels, epochs=1)
    before = snapshot(trainer)
    trainer.loss = "cross_entropy"
    for entry in ("fit", "step"):
        with pytest.raises(ValueError, match="cross_entropy"):
            ENTRY_POINTS[entry](trainer, X, labels)
        assert_same_snapshot(snapshot(trainer), before)


def test_a_non_network_assigned_as_attribute_is_refused_at_next_fit():
    X, labels = make_data()

    def call(net, trainer):
        trainer.network = "not a network"
        trainer.fit(X, labels, epochs=1)

    net, trainer = make_trained_pair()
    before = net.get_parameters()
    generator = rng_state(trainer)
    with pytest.raises(TypeError, match="network"):
        call(net, trainer)
    assert net.get_parameters().tobytes() == before.tobytes()
    assert rng_state(trainer) == generator
    assert trainer.epoch == 1


# ------------------------------------------------------------- fit arguments


@pytest.mark.parametrize(
    "name, value, exception",
    [
        ("epochs", -1, ValueError),
        ("epochs", 2.5, TypeError),
        ("epochs", 1.5, TypeError),
        ("epochs", "3", TypeError),
        ("epochs", None, TypeError),
        ("verbose", 3, ValueError),
        ("verbose", -1, ValueError),
        ("verbose", "loud", TypeError),
        ("verbose", 1.0, TypeError),
    ],
    ids=repr,
)
def test_bad_fit_arguments(name, value, exception):
    X, labels = make_data()
    assert_rejected_without_change(
        lambda net, trainer: trainer.fit(X, labels, **{name: value}), exception, name
    )


def test_zero_epochs_is_a_valid_no_op():
    net, trainer = make_trained_pair()
    before = snapshot(trainer)
    X, labels = make_data()
    history = trainer.fit(X, labels, epochs=0)
    assert history["loss"] == []
    assert_same_snapshot(snapshot(trainer), before)


@pytest.mark.parametrize(
    "value, exception",
    [(-0.1, ValueError), (1.0, ValueError), (1.5, ValueError), (float("nan"), ValueError),
     ("0.2", TypeError), (True, TypeError)],
    ids=repr,
)
def test_bad_validation_split(value, exception):
    X, labels = make_data()
    assert_rejected_without_change(
        lambda net, trainer: trainer.fit(X, labels, epochs=1, validation_split=value),
        exception, "validation_split",
    )


def test_validation_split_with_validation_data_is_refused():
    X, labels = make_data()
    assert_rejected_without_change(
        lambda net, trainer: trainer.fit(X, labels, epochs=1, validation_split=0.25,
                                         validation_data=make_data(6, seed=9)),
        ValueError, "validation_data or validation_split",
    )


def test_validation_split_that_leaves_a_part_empty_is_refused_without_change():
    """0.01 of 12 samples holds out none: refused, and the generator untouched."""
    X, _ = make_data()
    targets = np.random.default_rng(8).uniform(0.2, 0.8, size=(N_SAMPLES, SIZES[-1]))
    assert_rejected_without_change(
        lambda net, trainer: trainer.fit(X, targets, epochs=1, validation_split=0.01),
        ValueError, "validation_split",
    )


# ------------------------------------------------------------------- bad X


def _ragged():
    return [[0.1, 0.2, 0.3, 0.4]] * (N_SAMPLES - 1) + [[0.1, 0.2]]


def _with(value, position=(3, 1)):
    X, _ = make_data()
    X[position] = value
    return X


BAD_X = {
    "1-D": (lambda: make_data()[0].ravel(), ValueError),
    "3-D": (lambda: make_data()[0].reshape(N_SAMPLES, 2, 2), ValueError),
    "scalar": (lambda: 1.0, ValueError),
    "too few features": (lambda: make_data()[0][:, :3], ValueError),
    "too many features": (lambda: np.ones((N_SAMPLES, 5)), ValueError),
    "zero samples": (lambda: np.empty((0, SIZES[0])), ValueError),
    "NaN": (lambda: _with(np.nan), ValueError),
    "inf": (lambda: _with(np.inf), ValueError),
    "-inf": (lambda: _with(-np.inf, (0, 0)), ValueError),
    "strings": (lambda: np.full((N_SAMPLES, SIZES[0]), "0.5"), TypeError),
    "object": (lambda: make_data()[0].astype(object), TypeError),
    "complex": (lambda: make_data()[0] + 0j, TypeError),
    "ragged": (_ragged, ValueError),
}


def _call_with_X(entry, X):
    _, labels = make_data()
    if entry == "forward":
        return lambda net, trainer: net.forward(X)
    if entry == "predict":
        return lambda net, trainer: net.predict(X)
    if entry == "step":
        return lambda net, trainer: trainer.step(X, labels)
    return lambda net, trainer: ENTRY_POINTS[entry](trainer, X, labels)


@pytest.mark.parametrize("entry", ["forward", "predict", "fit", "step", "loss_and_gradients",
                                   "evaluate"])
@pytest.mark.parametrize("case", list(BAD_X))
def test_bad_X_is_refused(entry, case):
    make, exception = BAD_X[case]
    assert_rejected_without_change(_call_with_X(entry, make()), exception, r"\bX\b")


@pytest.mark.parametrize("options", [
    dict(), dict(shuffle=False), dict(optimizer="adam", momentum=0.0),
    dict(optimizer="rmsprop", momentum=0.0, l1=0.01),
], ids=["momentum", "in-place-rows", "adam", "rmsprop"])
@pytest.mark.parametrize("position", [(N_SAMPLES - 1, 2), (0, 0)], ids=["last-row", "first-row"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fit_undoes_the_batches_before_a_bad_row(options, position, dtype):
    """fit finds NaN in X as its first epoch reads the batches: the batches
    before the bad one have been trained on by then, and all of it is undone
    (parameters, optimizer state and update count, generator, history)."""
    net, trainer = make_trained_pair(dtype=dtype, **options)
    before = snapshot(trainer)
    state1, state2 = optimizer_state(trainer)
    state = [state1.copy(), state2.copy(), update_count(trainer)]
    _, labels = make_data()
    with pytest.raises(ValueError, match=r"^X contains NaN or infinity"):
        trainer.fit(_with(np.nan, position), labels, epochs=3)
    assert_same_snapshot(snapshot(trainer), before)
    np.testing.assert_array_equal(optimizer_state(trainer)[0], state[0])
    np.testing.assert_array_equal(optimizer_state(trainer)[1], state[1])
    assert update_count(trainer) == state[2]
    assert_next_fit_unaffected(trainer, dtype=dtype, **options)


@pytest.mark.parametrize("epochs", [0, 1])
def test_fit_refuses_inf_in_either_part_of_a_split_and_with_no_epochs(epochs):
    _, labels = make_data()
    _, trainer = make_trained_pair()
    # the rows this trainer's next split holds out, which the kernel never reads
    train, held_out = validation_split_rows(trainer, np.eye(SIZES[-1])[labels], True, 0.5,
                                            copy.deepcopy(trainer_rng(trainer)))
    for row in (train[-1], held_out[0]):
        X = _with(np.inf, (row, 3))
        for settings in (dict(epochs=epochs), dict(epochs=epochs, validation_split=0.5)):
            assert_rejected_without_change(
                lambda net, trainer: trainer.fit(X, labels, **settings), ValueError,
                r"^X contains NaN or infinity")


@pytest.mark.parametrize("entry", ["forward", "fit", "step", "evaluate"])
def test_values_beyond_float32_are_refused_by_a_float32_network(entry):
    """1e300 overflows to infinity when cast to float32: not finite, refused."""
    X = _with(1e300)
    assert_rejected_without_change(_call_with_X(entry, X), ValueError, r"\bX\b",
                                   dtype="float32")


def test_values_beyond_float32_are_fine_for_a_float64_network():
    net = Network(SIZES, seed=1)
    assert np.isfinite(net.forward(_with(1e300))).all()


@pytest.mark.parametrize("value", [1e300, -1e300, 1e39, np.finfo(np.float64).max])
def test_values_beyond_float32_are_refused_by_float32_networks(value):
    net = Network([3, 4, 2], dtype="float32", seed=0)
    trainer = Trainer(net, learning_rate=0.1)
    X = np.zeros((5, 3))
    X[2, 1] = value
    before = net.get_parameters()
    for call in (lambda: net.forward(X), lambda: trainer.fit(X, np.zeros(5, int), epochs=1),
                 lambda: trainer.step(X, np.zeros(5, int)),
                 lambda: trainer.loss_and_gradients(X, np.zeros(5, int)),
                 lambda: trainer.evaluate(X, np.zeros(5, int))):
        with pytest.raises(ValueError, match="too large for float32"):
            call()
    np.testing.assert_array_equal(net.get_parameters(), before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_and_targets_are_refused_before_anything_changes(bad):
    net = Network([3, 4, 2], seed=0)
    trainer = Trainer(net, learning_rate=0.1, optimizer="adam", seed=0)
    X, Y = np.zeros((6, 3)), np.full((6, 2), 0.5)
    trainer.fit(X, Y, epochs=1)
    before = (net.get_parameters(), optimizer_state(trainer)[0].copy(), update_count(trainer),
              rng_state(trainer))
    bad_X, bad_Y = X.copy(), Y.copy()
    bad_X[3, 2] = bad
    bad_Y[1, 0] = bad
    for call in (lambda: net.forward(bad_X), lambda: trainer.fit(bad_X, Y),
                 lambda: trainer.fit(X, bad_Y), lambda: trainer.step(bad_X, Y),
                 lambda: trainer.step(X, bad_Y), lambda: trainer.loss_and_gradients(X, bad_Y),
                 lambda: trainer.evaluate(bad_X, Y),
                 lambda: trainer.fit(X, Y, validation_data=(bad_X, Y))):
        with pytest.raises(ValueError, match="NaN or infinity"):
            call()
    after = (net.get_parameters(), optimizer_state(trainer)[0], update_count(trainer),
             rng_state(trainer))
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2:] == before[2:]


# ------------------------------------------------------------------- bad Y


def _labels_with(value, position=2):
    _, labels = make_data()
    labels = labels.astype(float)
    labels[position] = value
    return labels


def _one_hot(labels, n_outputs=SIZES[-1]):
    return np.eye(n_outputs)[labels]


BAD_Y = {
    "too few labels": (lambda: make_data()[1][:-1], ValueError),
    "too many labels": (lambda: np.zeros(N_SAMPLES + 1, dtype=int), ValueError),
    "too few rows": (lambda: _one_hot(make_data()[1])[:-1], ValueError),
    "label too large": (lambda: np.full(N_SAMPLES, SIZES[-1]), ValueError),
    "label far too large": (lambda: np.full(N_SAMPLES, 10**6), ValueError),
    "negative label": (lambda: np.r_[-1, np.zeros(N_SAMPLES - 1, dtype=int)], ValueError),
    "non-integer label": (lambda: _labels_with(0.5), ValueError),
    "NaN label": (lambda: _labels_with(np.nan), ValueError),
    "inf label": (lambda: _labels_with(np.inf), ValueError),
    "NaN target": (lambda: np.where(np.arange(3) == 1, np.nan, _one_hot(make_data()[1])),
                   ValueError),
    "inf target": (lambda: np.where(np.arange(3) == 0, np.inf, _one_hot(make_data()[1])),
                   ValueError),
    "too few columns": (lambda: _one_hot(make_data()[1])[:, :2], ValueError),
    "too many columns": (lambda: np.zeros((N_SAMPLES, 4)), ValueError),
    "3-D": (lambda: _one_hot(make_data()[1]).reshape(N_SAMPLES, 3, 1), ValueError),
    "strings": (lambda: make_data()[1].astype(str), TypeError),
    "object": (lambda: make_data()[1].astype(object), TypeError),
    "complex": (lambda: _one_hot(make_data()[1]) + 0j, TypeError),
}


@pytest.mark.parametrize("entry", ["fit", "step", "loss_and_gradients", "evaluate"])
@pytest.mark.parametrize("case", list(BAD_Y))
def test_bad_Y_is_refused(entry, case):
    make, exception = BAD_Y[case]
    X, _ = make_data()
    Y = make()
    if entry == "step":
        call = lambda net, trainer: trainer.step(X, Y)  # noqa: E731
    else:
        call = lambda net, trainer: ENTRY_POINTS[entry](trainer, X, Y)  # noqa: E731
    assert_rejected_without_change(call, exception, r"\bY\b")


@pytest.mark.parametrize("Y", [
    lambda labels: labels,
    lambda labels: labels.astype(np.float32),        # integer-valued floats are labels
    lambda labels: labels.astype(np.uint8),
    lambda labels: list(labels),
    lambda labels: _one_hot(labels),
    lambda labels: _one_hot(labels).tolist(),
], ids=["int", "float-int", "uint8", "list", "one-hot", "one-hot-list"])
def test_good_target_spellings_train_the_same(Y):
    X, labels = make_data()
    _, reference = make_trained_pair()
    _, trainer = make_trained_pair()
    expected = reference.fit(X, labels, epochs=1)
    got = trainer.fit(X, Y(labels), epochs=1)
    assert got["loss"] == expected["loss"]
    assert got["accuracy"] == expected["accuracy"]
    assert (trainer.network.get_parameters().tobytes()
            == reference.network.get_parameters().tobytes())


# --------------------------------------------------------- validation_data


@pytest.mark.parametrize(
    "validation_data",
    [
        lambda X, y: (X,),
        lambda X, y: (X, y, y),
        lambda X, y: X,                      # an array, not a pair
        lambda X, y: "Xy",
        lambda X, y: 5,
        lambda X, y: {"X": X, "y": y},
    ],
    ids=["one", "three", "array", "string", "int", "dict"],
)
def test_validation_data_must_be_a_pair(validation_data):
    X, labels = make_data()
    Xv, yv = make_data(6, seed=9)
    assert_rejected_without_change(
        lambda net, trainer: trainer.fit(X, labels, epochs=1,
                                         validation_data=validation_data(Xv, yv)),
        TypeError, "validation_data",
    )


@pytest.mark.parametrize(
    "validation_data",
    [
        lambda X, y: (X[:, :3], y),          # wrong number of features
        lambda X, y: (X, y[:-1]),            # fewer labels than samples
        lambda X, y: (X, _one_hot(y)[:, :2]),
        lambda X, y: (X, np.full(len(y), 7)),
        lambda X, y: (np.where(X > 0.5, np.nan, X), y),
        lambda X, y: (X[:0], y[:0]),
        lambda X, y: (X.astype(str), y),
    ],
    ids=["features", "length", "columns", "label-range", "nan", "empty", "strings"],
)
def test_validation_data_with_bad_arrays(validation_data):
    X, labels = make_data()
    Xv, yv = make_data(6, seed=9)
    bad = validation_data(Xv, yv)

    def call(net, trainer):
        trainer.fit(X, labels, epochs=1, validation_data=bad)

    assert_rejected_without_change(call, (ValueError, TypeError), "validation_data")


# ------------------------------------------------------ the parameter lists


def _assign(kind, index, value):
    def call(net, trainer):
        getattr(net, kind)[index] = value
    return call


@pytest.mark.parametrize(
    "kind, index, value, exception",
    [
        ("weights", 0, np.zeros((4, 5)), ValueError),       # transposed
        ("weights", 0, np.zeros((5, 4, 1)), ValueError),
        ("weights", 1, np.zeros(15), ValueError),
        ("weights", 0, 0.0, ValueError),                    # a scalar is not broadcast
        ("weights", 0, np.full((5, 4), np.nan), ValueError),
        ("weights", -1, np.where(np.eye(3, 5) > 0, np.inf, 0.0), ValueError),
        ("weights", 0, np.full((5, 4), "a"), TypeError),
        ("weights", 0, [[1, 2], [3]], TypeError),
        ("biases", 0, np.zeros(4), ValueError),
        ("biases", 1, np.array([0.0, np.nan, 0.0]), ValueError),
    ],
    ids=["transposed", "3-D", "flat", "scalar", "nan", "inf", "strings", "ragged",
         "bias-shape", "bias-nan"],
)
def test_bad_parameter_assignment_is_refused(kind, index, value, exception):
    assert_rejected_without_change(_assign(kind, index, value), exception, kind)


def test_out_of_range_layer_index_is_an_index_error():
    net, trainer = make_trained_pair()
    before = snapshot(trainer)
    with pytest.raises(IndexError):
        net.weights[2] = np.zeros((3, 5))
    assert_same_snapshot(snapshot(trainer), before)


def _set_all_weights(net, trainer):
    net.weights = [np.full((5, 4), 1e300), np.zeros((3, 5))]


def _set_parameters(net, trainer):
    net.set_parameters(np.full(net.n_parameters, -1e300))


@pytest.mark.parametrize(
    "call, name",
    [(_assign("weights", 0, np.full((5, 4), 1e300)), "weights"),
     (_assign("biases", 1, [0.0, 1e39, 0.0]), "biases"),
     (_set_all_weights, "weights"),
     (_set_parameters, "flat")],
    ids=["weights[0]", "biases[1]", "weights-list", "set_parameters"],
)
def test_parameters_beyond_float32_are_refused_by_a_float32_network(call, name):
    """1e300 is finite as given but infinite once stored as float32: refused,
    like NaN, before anything is written."""
    assert_rejected_without_change(call, ValueError, name, dtype="float32")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda weights: weights.append(np.zeros((3, 3))),
        lambda weights: weights.extend([np.zeros((3, 3))]),
        lambda weights: weights.insert(0, np.zeros((3, 3))),
        lambda weights: weights.pop(),
        lambda weights: weights.remove(weights[0]),
        lambda weights: weights.clear(),
        lambda weights: weights.__delitem__(0),
        lambda weights: weights.__iadd__([np.zeros((3, 3))]),
        lambda weights: weights.__setitem__(slice(0, 2), [np.zeros((5, 4)), np.zeros((3, 5))]),
    ],
    ids=["append", "extend", "insert", "pop", "remove", "clear", "del", "iadd", "slice"],
)
def test_the_parameter_lists_cannot_change_length(mutate):
    def call(net, trainer):
        mutate(net.weights)
    assert_rejected_without_change(call, TypeError, "weights")
    net = Network(SIZES, seed=0)
    assert len(net.weights) == len(net.biases) == 2


@pytest.mark.parametrize(
    "values, exception",
    [
        (lambda net: [net.weights[0].copy()], ValueError),              # one too few
        (lambda net: [w.copy() for w in net.weights] * 2, ValueError),  # too many
        (lambda net: [], ValueError),
        (lambda net: np.zeros((5, 4)), TypeError),                      # an array, not a list
        (lambda net: 0.0, TypeError),
        # the first entry is fine, the second not: nothing may be written
        (lambda net: [np.ones((5, 4)), np.zeros((5, 3))], ValueError),
        (lambda net: [np.ones((5, 4)), np.full((3, 5), np.nan)], ValueError),
    ],
    ids=["too-few", "too-many", "empty", "array", "scalar", "second-shape", "second-nan"],
)
def test_replacing_all_weights_with_a_bad_list_is_refused(values, exception):
    def call(net, trainer):
        net.weights = values(net)
    assert_rejected_without_change(call, exception, "weights")


def test_replacing_all_biases_with_a_bad_list_is_refused():
    def call(net, trainer):
        net.biases = [np.ones(5), np.ones(4)]
    assert_rejected_without_change(call, ValueError, "biases")


@pytest.mark.parametrize("flat", [np.zeros(7), np.full(43, np.nan), np.zeros((43, 1))],
                         ids=["length", "nan", "2-D"])
def test_bad_set_parameters_is_refused(flat):
    assert Network(SIZES).n_parameters == 43
    assert_rejected_without_change(lambda net, trainer: net.set_parameters(flat),
                                   ValueError, "flat")


# ------------------------------------------------- what a new user trips over


def test_epochs_as_a_whole_float_counts_as_that_integer():
    X, labels = make_data()
    a = Trainer(Network(SIZES, seed=1), learning_rate=0.5, seed=2)
    b = Trainer(Network(SIZES, seed=1), learning_rate=0.5, seed=2)
    assert len(a.fit(X, labels, epochs=3.0)["loss"]) == 3
    b.fit(X, labels, epochs=3)
    np.testing.assert_array_equal(a.network.get_parameters(), b.network.get_parameters())
    with pytest.raises(TypeError, match="epochs"):
        a.fit(X, labels, epochs=2.5)


@pytest.mark.parametrize("entry", ["forward", "predict", "fit"])
def test_a_single_sample_as_1d_is_told_to_reshape(entry):
    net = Network(SIZES, seed=0)
    X, labels = make_data()
    call = {"forward": lambda: net.forward(X[0]), "predict": lambda: net.predict(X[0]),
            "fit": lambda: Trainer(net).fit(X[0], labels[:1])}[entry]
    with pytest.raises(ValueError, match=r"reshape\(1, -1\)"):
        call()


@pytest.mark.parametrize("labels, low, high", [([0, 1, 2, 1], 0, 2), ([-1, 1, 1, -1], -1, 1)])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_targets_outside_a_sigmoid_outputs_range_are_refused(labels, low, high, loss):
    # one sigmoid output: 3-class labels or -1/+1 labels cannot be reached
    net = Network([3, 4, 1], output="sigmoid", seed=0)
    trainer = Trainer(net, loss=loss, seed=0)
    before = net.get_parameters()
    X = np.zeros((4, 3))
    with pytest.raises(ValueError, match=rf"Y holds values in \[{low}, {high}\].*sigmoid"):
        trainer.fit(X, np.array(labels), epochs=1)
    np.testing.assert_array_equal(net.get_parameters(), before)
    with pytest.raises(ValueError, match="validation_data"):
        trainer.fit(X, np.array([0, 1, 1, 0]), epochs=1,
                    validation_data=(X, np.array(labels)))
    # 0/1 labels and probabilities in [0, 1] are fine; a softmax checks its rows too
    trainer.fit(X, np.array([0, 1, 1, 0]), epochs=1)
    trainer.fit(X, np.array([[0.2], [0.9], [1.0], [0.0]]), epochs=1)
    softmax = Trainer(Network([3, 4, 2], output="softmax", seed=0), loss="cross_entropy")
    with pytest.raises(ValueError, match="softmax"):
        softmax.fit(X, np.array([[2.0, -1.0]] * 4), epochs=1)


def test_an_identity_output_takes_any_targets():
    net = Network([3, 4, 1], output="identity", seed=0)
    Trainer(net, learning_rate=0.01, seed=0).fit(np.zeros((4, 3)), np.array([-5.0, 2, 170, 3]),
                                                 epochs=1)


def test_divergence_advice_fits_the_model_and_the_data():
    rng = np.random.default_rng(0)
    X = rng.random((200, 4))
    y = 170 * rng.standard_normal(200)          # a regression, targets of std 170
    trainer = Trainer(Network([4, 8, 1], output="identity", seed=0), loss="mse",
                      learning_rate=5.0, seed=0)
    with pytest.raises(fastbp.DivergenceError) as info:
        trainer.fit(X, y, epochs=20)
    message = str(info.value)
    assert "decreasing the learning rate (now 5.0)" in message
    assert "scaling the targets (standard deviation up to 1" in message
    assert "cross_entropy" not in message               # cannot apply to a regression
    assert "scaling the inputs" not in message          # they are in [0, 1)
    # a classifier with cross-entropy and wild inputs: no advice to use cross-entropy
    classifier = Trainer(Network([4, 8, 3], activation="identity", output="softmax", seed=0),
                         loss="cross_entropy", learning_rate=1e6, momentum=0.9, seed=0)
    with pytest.raises(fastbp.DivergenceError) as info:
        classifier.fit(X * 1e6, rng.integers(0, 3, 200), epochs=30)
    message = str(info.value)
    assert "scaling the inputs (values up to" in message
    assert "cross_entropy" not in message and "scaling the targets" not in message


def test_loading_the_other_kind_of_file_says_which_loader_to_use(tmp_path):
    trainer = Trainer(Network(SIZES, seed=0))
    trainer.save_checkpoint(tmp_path / "run.npz")
    trainer.network.save(tmp_path / "net.npz")
    with pytest.raises(ValueError, match="Trainer.load_checkpoint"):
        Network.load(tmp_path / "run.npz")
    with pytest.raises(ValueError, match="Network.load"):
        Trainer.load_checkpoint(tmp_path / "net.npz")


class Frame:
    """The little of a data frame that fastbp looks at: string `columns` and the values."""

    def __init__(self, values, columns):
        self.values, self.columns = np.asarray(values), list(columns)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def test_a_frame_with_reordered_columns_is_refused(tmp_path):
    X, labels = make_data()
    names = [f"f{k}" for k in range(SIZES[0])]
    trainer = Trainer(Network(SIZES, seed=1), learning_rate=0.5, seed=2)
    trainer.fit(Frame(X, names), labels, epochs=1)
    assert trainer.feature_names_in_ == names
    shuffled = Frame(X[:, ::-1], names[::-1])
    before = trainer.network.get_parameters()
    for call in (lambda: trainer.fit(shuffled, labels, epochs=1),
                 lambda: trainer.step(shuffled, labels),
                 lambda: trainer.evaluate(shuffled, labels),
                 lambda: trainer.fit(X, labels, epochs=1, validation_data=(shuffled, labels))):
        with pytest.raises(ValueError, match="same columns in the same order"):
            call()
    np.testing.assert_array_equal(trainer.network.get_parameters(), before)
    trainer.fit(Frame(X, names), labels, epochs=1)      # the same columns: fine
    trainer.fit(X, labels, epochs=1)                    # a plain array: taken as it is
    trainer.save_checkpoint(tmp_path / "c.npz")
    assert Trainer.load_checkpoint(tmp_path / "c.npz").feature_names_in_ == names


def test_a_refused_first_fit_of_a_frame_keeps_no_names():
    X, labels = make_data()
    X[5, 1] = np.nan                    # found by the epoch kernel, after the checks
    trainer = Trainer(Network(SIZES, seed=1), learning_rate=0.5, seed=2)
    with pytest.raises(ValueError, match="NaN"):
        trainer.fit(Frame(X, [f"f{k}" for k in range(SIZES[0])]), labels, epochs=1)
    assert trainer.feature_names_in_ is None
