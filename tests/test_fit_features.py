"""The fit loop's features: schedules, validation_split, early stopping,
callbacks, progress output and logging, partial_fit.

Checkpoint files are in test_files.py; bad fit arguments in test_arguments.py.
"""

import logging
import re

import numpy as np
import pytest

from fastbp import (
    Callback,
    EarlyStopping,
    ExponentialDecay,
    InverseScaling,
    LambdaCallback,
    Network,
    ReduceOnPlateau,
    StepDecay,
    Trainer,
)
from fastbp.schedules import Constant
from helpers import random_classification, softmax_trainer, watching_fit, without_times

TRAIN = random_classification(0)
VALID = random_classification(1)


# --------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------

BASE = 0.3

SCHEDULES = {
    "constant": (Constant(), lambda e: BASE),
    "step": (StepDecay(step_size=3, gamma=0.5), lambda e: BASE * 0.5 ** (e // 3)),
    "exponential": (ExponentialDecay(gamma=0.8), lambda e: BASE * 0.8 ** e),
    "invscaling": (InverseScaling(power=0.75), lambda e: BASE / (e + 1) ** 0.75),
    # the names give the documented default settings
    "step-default": ("step", lambda e: BASE * 0.5 ** (e // 10)),
    "exponential-default": ("exponential", lambda e: BASE * 0.95 ** e),
    "invscaling-default": ("invscaling", lambda e: BASE / (e + 1) ** 0.5),
    "constant-default": ("constant", lambda e: BASE),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_rates_are_as_documented_and_used(name):
    schedule, expected_rate = SCHEDULES[name]
    epochs = 12
    trainer = softmax_trainer(learning_rate=BASE, schedule=schedule)
    history = trainer.fit(*TRAIN, epochs=5)
    history_more = trainer.fit(*TRAIN, epochs=epochs - 5)     # the position carries on
    expected = [expected_rate(e) for e in range(epochs)]
    assert history["learning_rate"] + history_more["learning_rate"] == expected
    assert trainer.history["learning_rate"] == expected
    assert trainer.current_learning_rate == expected_rate(epochs)

    # the rates are really the ones used: a constant-rate twin given the
    # same rate epoch by epoch ends with the very same parameters
    twin = softmax_trainer(learning_rate=BASE)
    for rate in expected:
        twin.learning_rate = rate
        twin.fit(*TRAIN, epochs=1)
    np.testing.assert_array_equal(trainer.network.get_parameters(),
                                  twin.network.get_parameters())


def test_learning_rate_is_in_the_history_of_every_fit():
    history = softmax_trainer().fit(*TRAIN, epochs=3)
    assert history["learning_rate"] == [0.5, 0.5, 0.5]
    history = softmax_trainer().fit(*TRAIN, epochs=2, validation_data=VALID)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                            "epoch_seconds"}
    assert all(seconds > 0 for seconds in history["epoch_seconds"])


def plateau_rates(schedule, values, base=1.0):
    """Feed `values` of the monitored metric; the rate of each epoch."""
    rates = []
    for epoch, value in enumerate(values):
        rates.append(schedule.rate(epoch, base))
        schedule.update(epoch, {schedule.monitor: value})
    return rates


def test_reduce_on_plateau_reduces_after_patience_epochs():
    schedule = ReduceOnPlateau(monitor="val_loss", factor=0.5, patience=2, min_delta=0.0)
    # epoch 0 and 1 improve; 2, 3 do not -> the rate halves from epoch 4;
    # 4 improves (resets the count); 5, 6 do not -> halves from epoch 7
    values = [1.0, 0.9, 0.95, 0.9, 0.8, 0.85, 0.81, 0.82]
    assert plateau_rates(schedule, values) == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25]


def test_reduce_on_plateau_min_delta_and_accuracy_monitor():
    # improvements smaller than min_delta do not count
    schedule = ReduceOnPlateau(monitor="loss", factor=0.1, patience=1, min_delta=0.05)
    assert plateau_rates(schedule, [1.0, 0.97, 0.9, 0.89]) == pytest.approx([1, 1, 0.1, 0.1])
    # accuracies must increase
    schedule = ReduceOnPlateau(monitor="val_accuracy", factor=0.5, patience=1, min_delta=0.0)
    assert plateau_rates(schedule, [0.5, 0.6, 0.55, 0.7, 0.7]) == [1, 1, 1, 0.5, 0.5]


def test_reduce_on_plateau_never_goes_below_min_rate():
    schedule = ReduceOnPlateau(factor=0.5, patience=1, min_delta=0.0, min_rate=0.2)
    rates = plateau_rates(schedule, [1.0] * 8)
    assert rates == [1, 1, 0.5, 0.25, 0.2, 0.2, 0.2, 0.2]


@pytest.mark.parametrize("cooldown", [1, 3])
def test_reduce_on_plateau_ignores_cooldown_epochs(cooldown):
    # Documented: after a reduction "the count starts again after `cooldown`
    # epochs", so the `cooldown` epochs right after a reduction do not count
    # towards patience. On a flat metric with patience 2 the rate is reduced
    # after epoch 2, then after 2 + cooldown + 2, and so on.
    patience, epochs = 2, 16
    schedule = ReduceOnPlateau(factor=0.5, patience=patience, min_delta=0.0, cooldown=cooldown)
    rates = plateau_rates(schedule, [1.0] * epochs)
    expected, scale, bad, cooling = [], 1.0, 0, 0
    for epoch in range(epochs):
        expected.append(scale)
        if epoch == 0:
            continue                     # the first value is the best so far
        if cooling:
            cooling -= 1                 # a cooldown epoch: not counted
            continue
        bad += 1
        if bad == patience:
            scale, bad, cooling = scale * 0.5, 0, cooldown
    assert rates == expected


def test_cooldown_one_differs_from_no_cooldown():
    flat = [1.0] * 10
    without = plateau_rates(ReduceOnPlateau(factor=0.5, patience=2, min_delta=0.0), flat)
    with_cooldown = plateau_rates(
        ReduceOnPlateau(factor=0.5, patience=2, min_delta=0.0, cooldown=1), flat)
    assert with_cooldown != without


def test_reduce_on_plateau_in_a_fit():
    # A learning rate so small that val_loss is flat to far below min_delta:
    # with patience 2 the rate halves after epochs 2, 4, 6 ... down to min_rate.
    base = 1e-9
    schedule = ReduceOnPlateau(monitor="val_loss", factor=0.5, patience=2, min_delta=1e-4,
                               min_rate=0.2 * base)
    trainer = softmax_trainer(learning_rate=base, schedule=schedule)
    history = trainer.fit(*TRAIN, epochs=9, validation_data=VALID)
    assert history["learning_rate"] == [base, base, base, base / 2, base / 2, base / 4,
                                        base / 4, 0.2 * base, 0.2 * base]


def test_schedule_position_survives_a_checkpoint(tmp_path):
    # a flat val_loss (see above): the rate halves after epochs 1 and 2 and 3
    schedule = ReduceOnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=1e-4)
    trainer = softmax_trainer(learning_rate=1e-9, schedule=schedule, shuffle=False)
    trainer.fit(*TRAIN, epochs=4, validation_data=VALID)
    path = tmp_path / "checkpoint.npz"
    trainer.save_checkpoint(path)
    loaded = Trainer.load_checkpoint(path)
    assert loaded.schedule.get_state() == trainer.schedule.get_state()
    assert loaded.current_learning_rate == trainer.current_learning_rate == 1e-9 / 8
    more = trainer.fit(*TRAIN, epochs=4, validation_data=VALID)
    more_loaded = loaded.fit(*TRAIN, epochs=4, validation_data=VALID)
    assert more_loaded["learning_rate"] == more["learning_rate"]
    assert more["learning_rate"] == [1e-9 / 8, 1e-9 / 16, 1e-9 / 32, 1e-9 / 64]


# --------------------------------------------------------------------------
# validation_split
# --------------------------------------------------------------------------


def labelled_rows(counts, seed=0):
    """Inputs whose first feature is the row number, and unbalanced labels."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    X = rng.uniform(-1, 1, size=(len(y), 8))
    X[:, 0] = np.arange(len(y))
    return X, y


def spy_split(trainer, X, y, **fit_options):
    """(training rows, validation rows) that fit used, read from the data it was given."""
    seen = {}

    def on_train(X_train):
        seen["train"] = X_train[:, 0].astype(int)

    def on_validate(X_val):
        seen["valid"] = X_val[:, 0].astype(int)

    with watching_fit(trainer, on_train, on_validate):
        trainer.fit(X, y, epochs=1, **fit_options)
    return seen["train"], seen["valid"]


@pytest.mark.parametrize("split", [0.1, 0.2, 0.35])
def test_validation_split_is_stratified_and_partitions_the_data(split):
    counts = [50, 30, 15, 5]
    X, y = labelled_rows(counts)
    trainer = softmax_trainer(sizes=(8, 6, 4))
    train, valid = spy_split(trainer, X, y, validation_split=split)
    assert np.intersect1d(train, valid).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, valid])), np.arange(len(y)))
    assert abs(valid.size - split * len(y)) <= len(counts) / 2
    for label, count in enumerate(counts):
        held = np.sum(y[valid] == label)
        assert abs(held - split * count) <= 1, (label, held)
        assert np.sum(y[train] == label) == count - held
    history = trainer.history
    assert len(history["val_loss"]) == 1 and len(history["val_accuracy"]) == 1


def test_validation_split_with_2d_targets_holds_out_the_fraction():
    X, _ = labelled_rows([40, 40])
    Y = np.random.default_rng(0).uniform(0, 1, size=(80, 4))
    net = Network([8, 6, 4], seed=0)
    trainer = Trainer(net, learning_rate=0.5, seed=0)
    train, valid = spy_split(trainer, X, Y, validation_split=0.25)
    assert valid.size == 20 and train.size == 60
    assert "val_accuracy" not in trainer.history


def test_validation_split_is_deterministic_per_seed():
    X, y = labelled_rows([30, 30, 20])
    splits = [spy_split(softmax_trainer(seed=seed, sizes=(8, 6, 3)), X, y, validation_split=0.2)[1]
              for seed in (4, 4, 5)]
    np.testing.assert_array_equal(splits[0], splits[1])
    assert not np.array_equal(splits[0], splits[2])
    # and the whole fit with it, bit for bit
    first, second = softmax_trainer(seed=4), softmax_trainer(seed=4)
    h1 = first.fit(X, y, epochs=3, validation_split=0.2)
    h2 = second.fit(X, y, epochs=3, validation_split=0.2)
    assert without_times(h1) == without_times(h2)
    np.testing.assert_array_equal(first.network.get_parameters(),
                                  second.network.get_parameters())


def twins(**options):
    return softmax_trainer(seed=3, **options), softmax_trainer(seed=3, **options)


def assert_untouched(trainer, twin):
    """`trainer` saw rejected calls, `twin` did not: both train alike from here."""
    assert trainer.epoch == twin.epoch and trainer.history == twin.history
    np.testing.assert_array_equal(trainer.network.get_parameters(),
                                  twin.network.get_parameters())
    trainer.fit(*TRAIN, epochs=2, validation_data=VALID)
    twin.fit(*TRAIN, epochs=2, validation_data=VALID)
    np.testing.assert_array_equal(trainer.network.get_parameters(),
                                  twin.network.get_parameters())


@pytest.mark.parametrize("n_samples, split", [
    (3, 0.01),       # one sample per class, rounding to none: no validation part
    (6, 0.999),      # two per class, all held out: no training part
], ids=["empty-validation", "empty-training"])
def test_validation_split_leaving_an_empty_part_is_rejected(n_samples, split):
    # The rejected call must change nothing, the trainer's generator included
    # (which the shuffling of later epochs draws from).
    X, y = TRAIN[0][:n_samples], np.arange(n_samples) % 3
    trainer, twin = twins()
    with pytest.raises(ValueError, match="validation_split"):
        trainer.fit(X, y, epochs=1, validation_split=split)
    assert trainer.epoch == 0 and trainer.history == {}
    assert_untouched(trainer, twin)


# --------------------------------------------------------------------------
# EarlyStopping
# --------------------------------------------------------------------------


def recorder():
    """A LambdaCallback storing the parameters after each epoch, by epoch."""
    snapshots = {}

    def record(trainer, epoch, history):
        snapshots[epoch] = trainer.network.get_parameters()

    return snapshots, LambdaCallback(on_epoch_end=record)


@pytest.mark.parametrize("patience", [1, 3])
def test_early_stopping_stops_after_patience_and_restores_the_best_weights(patience):
    trainer = softmax_trainer()
    stopper = EarlyStopping(monitor="val_loss", patience=patience)
    snapshots, record = recorder()
    history = trainer.fit(*TRAIN, epochs=100, validation_data=VALID,
                          callbacks=[stopper, record])
    val_loss = history["val_loss"]
    best = int(np.argmin(val_loss))
    # it stopped early, exactly `patience` epochs after the best one
    assert len(val_loss) < 100
    assert len(val_loss) == best + 1 + patience
    assert all(value >= val_loss[best] for value in val_loss[best + 1:])
    assert stopper.best_epoch == best + 1 and stopper.best == val_loss[best]
    assert stopper.stopped_epoch == trainer.epoch == len(val_loss)
    # the parameters after fit are those of the best epoch, bit for bit
    np.testing.assert_array_equal(trainer.network.get_parameters(), snapshots[best + 1])
    assert not np.array_equal(snapshots[best + 1], snapshots[len(val_loss)])
    assert trainer.evaluate(*VALID)["loss"] == pytest.approx(val_loss[best], rel=1e-12)


def test_early_stopping_patience_counts_from_the_last_improvement():
    # in this run the validation loss gets worse at epoch 5 and better again
    # at epoch 6: patience 3 must not stop at epoch 7
    trainer = softmax_trainer()
    stopper = EarlyStopping(patience=3)
    history = trainer.fit(*TRAIN, epochs=100, validation_data=VALID, callbacks=[stopper])
    val_loss = history["val_loss"]
    worse_then_better = [e for e in range(1, len(val_loss) - 1)
                         if val_loss[e] > min(val_loss[:e]) and val_loss[e + 1] < min(val_loss[:e])]
    assert worse_then_better, "the run should have a recovery to test this"
    assert len(val_loss) == int(np.argmin(val_loss)) + 4


def test_early_stopping_without_restoring_keeps_the_last_weights():
    trainer = softmax_trainer()
    snapshots, record = recorder()
    history = trainer.fit(*TRAIN, epochs=100, validation_data=VALID,
                          callbacks=[EarlyStopping(patience=2, restore_best_weights=False),
                                     record])
    np.testing.assert_array_equal(trainer.network.get_parameters(),
                                  snapshots[len(history["loss"])])


def test_early_stopping_on_training_loss_and_accuracy():
    # training accuracy on random labels climbs to 1 and then cannot improve
    trainer = softmax_trainer()
    stopper = EarlyStopping(monitor="accuracy", patience=2)
    history = trainer.fit(*TRAIN, epochs=200, callbacks=[stopper])
    accuracy = history["accuracy"]
    assert len(accuracy) < 200 and len(accuracy) == int(np.argmax(accuracy)) + 3


@pytest.mark.parametrize("watcher", [
    EarlyStopping(monitor="val_loss"),
    EarlyStopping(monitor="val_accuracy"),
    "plateau-schedule",
])
def test_a_missing_monitor_is_rejected_before_any_training(watcher):
    options = {"schedule": "plateau"} if watcher == "plateau-schedule" else {}
    callbacks = [] if watcher == "plateau-schedule" else [watcher]
    trainer, twin = twins(**options)
    with pytest.raises(ValueError, match="monitors"):
        trainer.fit(*TRAIN, epochs=3, callbacks=callbacks)
    assert trainer.epoch == 0 and trainer.history == {}
    assert_untouched(trainer, twin)


def test_a_missing_monitor_with_a_validation_split_leaves_the_generator_alone():
    # 2-D targets record no val_accuracy; the rejected call must not have
    # drawn a split (or anything else) from the trainer's generator
    Y = np.random.default_rng(0).uniform(size=(40, 3))
    trainer, twin = twins(loss="mse")
    with pytest.raises(ValueError, match="monitors"):
        trainer.fit(TRAIN[0], Y, epochs=1, validation_split=0.2,
                    callbacks=[EarlyStopping(monitor="val_accuracy")])
    assert_untouched(trainer, twin)


# --------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------


class Recorder(Callback):
    def __init__(self, name, events):
        self.name, self.events = name, events

    def on_fit_begin(self, trainer, history):
        self.events.append((self.name, "begin", len(history.get("loss", []))))

    def on_epoch_end(self, trainer, epoch, history):
        # the epoch is already in the history the hook sees
        self.events.append((self.name, epoch, len(history["loss"])))

    def on_fit_end(self, trainer, history):
        self.events.append((self.name, "end", len(history["loss"])))


def test_callback_hooks_run_in_order():
    events = []
    trainer = softmax_trainer()
    trainer.fit(*TRAIN, epochs=2, callbacks=[Recorder("a", events), Recorder("b", events)])
    assert events == [
        ("a", "begin", 0), ("b", "begin", 0),
        ("a", 1, 1), ("b", 1, 1),
        ("a", 2, 2), ("b", 2, 2),
        ("a", "end", 2), ("b", "end", 2),
    ]
    # epochs count on across fit calls; each call's history is its own
    events.clear()
    trainer.fit(*TRAIN, epochs=1, callbacks=[Recorder("a", events)])
    assert events == [("a", "begin", 0), ("a", 3, 1), ("a", "end", 1)]


def test_an_object_with_some_of_the_hooks_is_a_callback():
    seen = []

    class OnlyEnd:
        def on_fit_end(self, trainer, history):
            seen.append(len(history["loss"]))

    softmax_trainer().fit(*TRAIN, epochs=3, callbacks=[OnlyEnd()])
    assert seen == [3]


def test_returning_true_stops_training_cleanly():
    events = []
    trainer = softmax_trainer()
    stop_at_3 = LambdaCallback(on_epoch_end=lambda trainer, epoch, history: epoch == 3)
    history = trainer.fit(*TRAIN, epochs=10, callbacks=[stop_at_3, Recorder("r", events)])
    assert len(history["loss"]) == 3 and trainer.epoch == 3
    assert events[-1] == ("r", "end", 3)
    # the next fit runs in full
    assert len(trainer.fit(*TRAIN, epochs=2)["loss"]) == 2


def test_setting_stop_training_stops_training():
    def stop_at_2(trainer, epoch, history):
        if epoch == 2:
            trainer.stop_training = True

    trainer = softmax_trainer()
    history = trainer.fit(*TRAIN, epochs=10, callbacks=[LambdaCallback(on_epoch_end=stop_at_2)])
    assert len(history["loss"]) == 2 and trainer.epoch == 2
    assert len(trainer.fit(*TRAIN, epochs=3)["loss"]) == 3


@pytest.mark.parametrize("callbacks", [
    [object()],
    [lambda trainer, epoch, history: False],
    [EarlyStopping(), "not a callback"],
    EarlyStopping(),                       # a callback, not a list of them
])
def test_a_non_callback_is_a_type_error(callbacks):
    trainer, twin = twins()
    with pytest.raises(TypeError, match="callbacks"):
        trainer.fit(*TRAIN, epochs=2, validation_data=VALID, callbacks=callbacks)
    assert_untouched(trainer, twin)


def test_lambda_callback_rejects_non_callables():
    with pytest.raises(TypeError, match="on_epoch_end"):
        LambdaCallback(on_epoch_end=3)


@pytest.mark.parametrize("callbacks", [None, [], ()])
def test_no_callbacks(callbacks):
    trainer, twin = twins()
    history = trainer.fit(*TRAIN, epochs=3, callbacks=callbacks)
    twin_history = twin.fit(*TRAIN, epochs=3, callbacks=[Callback()])
    assert without_times(history) == without_times(twin_history)
    np.testing.assert_array_equal(trainer.network.get_parameters(),
                                  twin.network.get_parameters())


# --------------------------------------------------------------------------
# verbose and logging
# --------------------------------------------------------------------------


def test_verbose_0_prints_nothing(capfd):
    softmax_trainer().fit(*TRAIN, epochs=3, validation_data=VALID, verbose=0)
    softmax_trainer().fit(*TRAIN, epochs=3)         # the default
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_verbose_2_prints_one_line_per_epoch(capfd):
    softmax_trainer().fit(*TRAIN, epochs=4, validation_data=VALID, verbose=2)
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert len(lines) == 4 and err == ""
    for epoch, line in enumerate(lines, start=1):
        assert re.match(rf"epoch {epoch}: loss [0-9.e+-]+, accuracy [0-9.e+-]+, "
                        rf"val_loss [0-9.e+-]+, val_accuracy [0-9.e+-]+, learning_rate", line)


def test_verbose_1_renders_a_progress_bar_on_stderr(capfd):
    softmax_trainer().fit(*TRAIN, epochs=3, validation_data=VALID, verbose=1)
    out, err = capfd.readouterr()
    assert out == ""
    assert "fastbp" in err and "3/3" in err and "epoch" in err
    assert "val_loss=" in err


@pytest.mark.parametrize("verbose", [0, 2])
def test_each_epoch_is_logged_at_info_level(caplog, capfd, verbose):
    with caplog.at_level(logging.INFO, logger="fastbp"):
        softmax_trainer().fit(*TRAIN, epochs=3, validation_data=VALID, verbose=verbose)
    records = [r for r in caplog.records if r.name == "fastbp"]
    assert len(records) == 3
    for epoch, record in enumerate(records, start=1):
        assert record.levelno == logging.INFO
        assert record.getMessage().startswith(f"epoch {epoch}: loss ")


def test_nothing_is_logged_above_info(caplog):
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        softmax_trainer().fit(*TRAIN, epochs=2)
    assert caplog.records == []


# --------------------------------------------------------------------------
# partial_fit
# --------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    dict(),
    dict(optimizer="adam", learning_rate=0.01, schedule=StepDecay(step_size=2, gamma=0.5)),
    dict(momentum=0.9, learning_rate=0.05, nesterov=True, l1=1e-3),
])
def test_n_partial_fits_equal_one_fit_bit_for_bit(options):
    trainer, twin = twins(**options)
    history = trainer.fit(*TRAIN, epochs=5, validation_data=VALID)
    for _ in range(5):
        one = twin.partial_fit(*TRAIN, validation_data=VALID)
        assert len(one["loss"]) == 1
    np.testing.assert_array_equal(trainer.network.get_parameters(),
                                  twin.network.get_parameters())
    assert without_times(twin.history) == without_times(history)
    assert twin.epoch == 5
