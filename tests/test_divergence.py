"""Divergence: huge learning rates stop training cleanly, for every optimizer.

A regression problem with targets around 1e3, a relu/identity network (no
squashing anywhere) and a learning rate of 1e100 overflows within a few
updates for every rule: plain and momentum SGD multiply the error each step,
and the adaptive rules (rmsprop, adam, adamw), whose steps are about the
learning rate in size, take weights to ~1e100 and outputs past the float
range. The first epochs run at a sane rate; then the rate is raised, so the
failing epoch has finished epochs and optimizer state before it.
"""

import re

import numpy as np
import pytest

from fastbp import DivergenceError, LambdaCallback, Network, Trainer
from helpers import make_data, optimizer_state, rng_state, update_count

HUGE = 1e100

OPTIMIZERS = {
    "sgd": dict(optimizer="sgd"),
    "sgd+momentum": dict(optimizer="sgd", momentum=0.9),
    "nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True),
    "rmsprop": dict(optimizer="rmsprop"),
    "adam": dict(optimizer="adam"),
    "adamw": dict(optimizer="adamw"),
}
SANE_RATE = {"sgd": 1e-6, "sgd+momentum": 1e-7, "nesterov": 1e-7, "rmsprop": 1e-3,
             "adam": 1e-3, "adamw": 1e-3}

ADVICE = re.compile(r"decreas\w* the learning rate", re.IGNORECASE)


def regression(dtype, n_samples=200):
    rng = np.random.default_rng(7)
    X = rng.uniform(-1, 1, (n_samples, 8)).astype(dtype)
    Y = (1e3 * rng.uniform(-1, 1, (n_samples, 3))).astype(dtype)
    return X, Y


def make_trainer(name, dtype, **extra):
    net = Network([8, 16, 3], activation="relu", output="identity", dtype=dtype, seed=0)
    trainer = Trainer(net, loss="mse", learning_rate=SANE_RATE[name], batch_size=10,
                      shuffle=True, seed=1, **OPTIMIZERS[name], **extra)
    return net, trainer


def snapshot(trainer):
    state1, state2 = optimizer_state(trainer)
    return dict(
        params=trainer.network.get_parameters(),
        state1=state1.copy(),
        state2=state2.copy(),
        updates=update_count(trainer),
        epoch=trainer.epoch,
        rng=rng_state(trainer),
        history={key: list(values) for key, values in trainer.history.items()},
    )


def assert_same_state(trainer, saved):
    state1, state2 = optimizer_state(trainer)
    np.testing.assert_array_equal(trainer.network.get_parameters(), saved["params"])
    np.testing.assert_array_equal(state1, saved["state1"])
    np.testing.assert_array_equal(state2, saved["state2"])
    assert update_count(trainer) == saved["updates"]
    assert trainer.epoch == saved["epoch"]
    assert trainer.history == saved["history"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_divergence_raises_naming_the_epoch_and_restores_everything(name, dtype):
    X, Y = regression(dtype)
    net, trainer = make_trainer(name, dtype)
    trainer.fit(X, Y, epochs=2)
    saved = snapshot(trainer)
    assert np.isfinite(saved["params"]).all()
    if name != "sgd":
        assert np.any(saved["state1"] != 0), "the optimizer state should be in use"

    trainer.learning_rate = HUGE
    with pytest.raises(DivergenceError, match=r"\bepoch 3\b") as info:
        trainer.fit(X, Y, epochs=4)
    message = str(info.value)
    assert ADVICE.search(message), message
    assert str(HUGE) in message              # the rate that failed
    assert isinstance(info.value, FloatingPointError)
    # Parameters, optimizer state, update count, epoch and history are
    # exactly as after epoch 2. The generator has moved on (it drew the
    # failing epoch's permutation), so a retry does not repeat the same order.
    assert_same_state(trainer, saved)

    # the trainer is usable again at a sane rate
    trainer.learning_rate = SANE_RATE[name]
    history = trainer.fit(X, Y, epochs=1)
    assert np.isfinite(history["loss"][0]) and trainer.epoch == 3


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_divergence_with_warn_returns_the_finished_epochs(name):
    X, Y = regression("float64")
    net, trainer = make_trainer(name, "float64", on_divergence="warn")
    after_two = {}

    def raise_rate(trainer_, epoch, history):
        if epoch == 2:
            after_two.update(snapshot(trainer_))
            trainer_.learning_rate = HUGE

    with pytest.warns(RuntimeWarning, match=r"\bepoch 3\b") as record:
        history = trainer.fit(X, Y, epochs=6, callbacks=[LambdaCallback(on_epoch_end=raise_rate)])
    assert any(ADVICE.search(str(warning.message)) for warning in record)
    # the warning points at the line that called fit, not into fastbp
    assert all(warning.filename == __file__ for warning in record)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    assert_same_state(trainer, after_two)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_diverging_step_raises_and_restores(name):
    X, Y = regression("float64", n_samples=40)
    net, trainer = make_trainer(name, "float64")
    for start in range(0, 40, 10):
        trainer.step(X[start:start + 10], Y[start:start + 10])
    saved = snapshot(trainer)
    trainer.learning_rate = HUGE
    # one update at 1e100 is not always enough on its own; a few are
    with pytest.raises(DivergenceError, match="this step") as info:
        for start in [0, 10, 20, 30] * 5:
            trainer.step(X[start:start + 10], Y[start:start + 10])
            saved = snapshot(trainer)
    assert ADVICE.search(str(info.value))
    assert_same_state(trainer, saved)
    assert np.isfinite(trainer.network.get_parameters()).all()


def test_a_diverging_step_with_warn_returns_nan_and_restores():
    X, Y = regression("float64", n_samples=10)
    net, trainer = make_trainer("sgd", "float64", on_divergence="warn")
    trainer.learning_rate = HUGE
    with pytest.warns(RuntimeWarning, match="this step") as record:
        for _ in range(5):
            saved = snapshot(trainer)
            loss = trainer.step(X, Y)
            if np.isnan(loss):
                break
    assert np.isnan(loss)
    # the warning points at the line that called step, not into fastbp
    assert all(warning.filename == __file__ for warning in record)
    assert_same_state(trainer, saved)
    assert np.isfinite(trainer.network.get_parameters()).all()


def test_divergence_in_the_first_epoch_leaves_the_initial_parameters():
    X, Y = regression("float32")
    net, trainer = make_trainer("adam", "float32")
    initial = net.get_parameters()
    trainer.learning_rate = HUGE
    with pytest.raises(DivergenceError, match=r"\bepoch 1\b"):
        trainer.fit(X, Y, epochs=3)
    np.testing.assert_array_equal(net.get_parameters(), initial)
    assert trainer.epoch == 0 and trainer.history.get("loss", []) == []
    assert update_count(trainer) == 0
    assert not any(np.any(state) for state in optimizer_state(trainer))


def test_a_non_finite_validation_loss_is_divergence_too():
    # One update at 1e200 leaves finite weights (~1e203) whose outputs
    # overflow: the epoch's own loss, measured before its update, is finite,
    # but the validation loss right after it is not. That is divergence.
    X, Y = regression("float64", n_samples=10)
    net = Network([8, 16, 3], activation="relu", output="identity", dtype="float64", seed=0)
    trainer = Trainer(net, learning_rate=1e200, batch_size=10, shuffle=False, seed=0)
    initial = net.get_parameters()
    with pytest.raises(DivergenceError, match=r"\bepoch 1\b"):
        trainer.fit(X, Y, epochs=1, validation_data=(X, Y))
    np.testing.assert_array_equal(net.get_parameters(), initial)
    assert trainer.epoch == 0 and trainer.history.get("val_loss", []) == []


def test_training_continues_correctly_after_a_divergence():
    """The optimizer state (momentum velocity) is restored along with the weights."""
    sizes = [6, 9, 4]
    X, labels = make_data(np.random.default_rng(18), 40, sizes, labels=True)
    X_wild = 1e3 * X

    def trained_once():
        # identity hidden layer: nothing saturates, so eta = 1e8 surely overflows
        net = Network(sizes, activation="identity", output="identity", seed=0)
        trainer = Trainer(net, loss="mse", learning_rate=0.1, batch_size=8, momentum=0.9,
                          shuffle=False)
        trainer.fit(X, labels, epochs=1)
        return net, trainer

    net, trainer = trained_once()
    before = net.get_parameters()
    trainer.learning_rate = 1e8
    with pytest.raises(DivergenceError):
        trainer.fit(X_wild, labels, epochs=1)
    np.testing.assert_array_equal(net.get_parameters(), before)
    assert trainer.epoch == 1
    assert len(trainer.history["loss"]) == 1
    trainer.learning_rate = 0.1
    trainer.fit(X, labels, epochs=2)

    reference, reference_trainer = trained_once()
    reference_trainer.fit(X, labels, epochs=2)
    np.testing.assert_array_equal(net.get_parameters(), reference.get_parameters())
    assert trainer.history["loss"] == reference_trainer.history["loss"]
