"""Per-sample weights: J = sum_i w_i C_i / sum_i w_i + penalties, scikit-learn's rule.

Checked against the NumPy oracle (fastbp.baseline, which weights its costs
and deltas on its own), against row duplication (a weight of 2 is a row
counted twice), against finite differences of the weighted J, and for
refusals that leave everything as it was.
"""

import copy

import numpy as np
import pytest

from fastbp import Trainer, baseline
from helpers import (
    DTYPES,
    OUTPUT_LOSS_PAIRS,
    assert_close,
    assert_parameters_close,
    central_differences,
    make_data,
    make_network,
    one_hot,
    pair_id,
    parameters_of,
    trainer_rng,
    validation_split_rows,
)

SIZES = [4, 6, 3]


def problem(dtype=np.float64, output="softmax", n_samples=11, seed=0, labels=False):
    rng = np.random.default_rng(seed)
    net = make_network(SIZES, "tanh", output, dtype, seed=seed)
    X, Y = make_data(rng, n_samples, SIZES, dtype, labels=labels)
    weights = rng.uniform(0.0, 3.0, n_samples)
    return net, X, Y, weights


def oracle_options(trainer):
    net = trainer.network
    return dict(activation=net.activation, output=net.output, loss=trainer.loss)


@pytest.mark.parametrize("output, loss_name", OUTPUT_LOSS_PAIRS, ids=pair_id)
def test_weighted_objective_and_gradients_match_the_oracle(output, loss_name):
    net, X, Y, weights = problem(output=output)
    trainer = Trainer(net, loss=loss_name, l2=0.03, l1=0.01)

    J, grad_weights, grad_biases = trainer.loss_and_gradients(X, Y, weights)
    expected = baseline.loss_and_gradients(*parameters_of(net), X, Y, l2=0.03, l1=0.01,
                                           sample_weight=weights, **oracle_options(trainer))

    assert_close(J, expected[0], np.float64, what="J")
    for k in range(net.n_layers):
        assert_close(grad_weights[k], expected[1][k], np.float64, what=f"dJ/dW[{k}]")
        assert_close(grad_biases[k], expected[2][k], np.float64, what=f"dJ/db[{k}]")
    # the data term is the weighted mean of the oracle's costs
    assert trainer.evaluate(X, Y, weights)["loss"] == pytest.approx(J, rel=1e-12)


@pytest.mark.parametrize("output, loss_name", OUTPUT_LOSS_PAIRS, ids=pair_id)
def test_weighted_gradients_match_central_differences(output, loss_name):
    net, X, Y, weights = problem(output=output, n_samples=7)
    trainer = Trainer(net, loss=loss_name, l2=0.05)

    _, grad_weights, grad_biases = trainer.loss_and_gradients(X, Y, weights)
    fd_weights, fd_biases = central_differences(
        lambda: trainer.loss_and_gradients(X, Y, weights)[0], net.weights, net.biases, 1e-6)

    for k in range(net.n_layers):
        np.testing.assert_allclose(grad_weights[k], fd_weights[k], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(grad_biases[k], fd_biases[k], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_weight_of_two_is_a_duplicated_row(dtype):
    net, X, Y, _ = problem(dtype)
    trainer = Trainer(net, loss="cross_entropy", l2=0.02)
    weights = np.ones(len(X))
    weights[3] = 2.0
    doubled_X = np.vstack([X, X[3:4]])
    doubled_Y = np.vstack([Y, Y[3:4]])

    weighted = trainer.loss_and_gradients(X, Y, weights)
    duplicated = trainer.loss_and_gradients(doubled_X, doubled_Y)

    assert_close(weighted[0], duplicated[0], dtype, what="J")
    for got, want in zip(weighted[1] + weighted[2], duplicated[1] + duplicated[2]):
        assert_close(got, want, dtype)

    # one full-batch step of plain SGD from each: the same parameters
    twin = copy.deepcopy(trainer)
    trainer.step(X, Y, weights)
    twin.step(doubled_X, doubled_Y)
    assert_parameters_close(trainer.network, twin.network.weights, twin.network.biases, dtype)


def test_zero_weights_ignore_their_rows():
    net, X, Y, weights = problem(labels=True)
    weights[[1, 4, 5]] = 0.0
    keep = weights > 0
    trainer = Trainer(net, loss="cross_entropy", l2=0.01)

    weighted = trainer.loss_and_gradients(X, Y, weights)
    kept = trainer.loss_and_gradients(X[keep], Y[keep], weights[keep])
    assert weighted[0] == pytest.approx(kept[0], rel=1e-13)
    for got, want in zip(weighted[1] + weighted[2], kept[1] + kept[2]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert trainer.evaluate(X, Y, weights) == pytest.approx(
        trainer.evaluate(X[keep], Y[keep], weights[keep]), rel=1e-13)
    # garbage in a zero-weighted target row changes nothing (a finite one)
    Y_other = Y.copy()
    Y_other[1] = (Y[1] + 1) % SIZES[-1]
    assert trainer.loss_and_gradients(X, Y_other, weights)[0] == weighted[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("settings", [
    dict(optimizer="sgd"),                              # fused SGD, decay in the GEMM's beta
    dict(optimizer="sgd", momentum=0.9),                # fused momentum
    dict(optimizer="sgd", l1=0.01),                     # gradient then rule
    dict(optimizer="adam", learning_rate=0.01),
], ids=["sgd", "momentum", "sgd-l1", "adam"])
def test_weighted_epochs_match_the_oracle(dtype, settings):
    # 11 samples in batches of 4: a shorter last batch, whose weight sum differs
    net, X, Y, weights = problem(dtype)
    settings = {"learning_rate": 0.3, "l2": 0.02, **settings}
    trainer = Trainer(net, loss="cross_entropy", batch_size=4, shuffle=False, **settings)
    weights_, biases_ = parameters_of(net)
    state: dict = {}

    history = trainer.fit(X, Y, epochs=3, sample_weight=weights)
    losses = [baseline.train_epoch(weights_, biases_, X, Y, batch_size=4, state=state,
                                   sample_weight=weights, **oracle_options(trainer),
                                   **settings)
              for _ in range(3)]

    assert_parameters_close(net, weights_, biases_, dtype)
    assert_close(history["loss"], losses, dtype, what="history loss")


@pytest.mark.parametrize("dtype", DTYPES)
def test_shuffled_weights_travel_with_their_rows(dtype):
    net, X, Y, weights = problem(dtype, n_samples=13)
    trainer = Trainer(net, loss="cross_entropy", learning_rate=0.4, batch_size=5, seed=3)
    order = copy.deepcopy(trainer_rng(trainer)).permutation(len(X))
    weights_, biases_ = parameters_of(net)

    trainer.fit(X, Y, epochs=1, sample_weight=weights)
    baseline.train_epoch(weights_, biases_, X, Y, batch_size=5, learning_rate=0.4,
                         order=order, sample_weight=weights, **oracle_options(trainer))

    assert_parameters_close(net, weights_, biases_, dtype)


def test_weights_of_one_are_bit_identical_to_none():
    net, X, Y, _ = problem(labels=True, n_samples=23)
    trainer = Trainer(net, loss="cross_entropy", learning_rate=0.5, batch_size=5, seed=1,
                      l2=0.01)
    twin = copy.deepcopy(trainer)

    history = trainer.fit(X, Y, epochs=2, sample_weight=np.ones(len(X)))
    expected = twin.fit(X, Y, epochs=2)

    np.testing.assert_array_equal(trainer.network.get_parameters(),
                                  twin.network.get_parameters())
    assert history["loss"] == expected["loss"]
    assert history["accuracy"] == expected["accuracy"]


def test_a_scalar_weighs_every_sample_alike():
    net, X, Y, _ = problem()
    trainer = Trainer(net, loss="cross_entropy", l2=0.1)
    scalar = trainer.loss_and_gradients(X, Y, 2.5)
    ones = trainer.loss_and_gradients(X, Y, np.full(len(X), 2.5))
    assert scalar[0] == ones[0]
    # weights are normalised by their sum: a constant weight changes nothing here
    assert scalar[0] == pytest.approx(trainer.loss_and_gradients(X, Y)[0], rel=1e-14)


def test_evaluate_weights_every_forward_chunk():
    # more rows than one forward chunk (256): the weights follow their rows
    net, X, Y, _ = problem(n_samples=700)
    weights = np.random.default_rng(5).uniform(0, 2, 700)
    trainer = Trainer(net, loss="cross_entropy", l2=0.01)
    expected = baseline.loss(*parameters_of(net), X, Y, l2=0.01, sample_weight=weights,
                             **oracle_options(trainer))
    assert trainer.evaluate(X, Y, weights)["loss"] == pytest.approx(expected, rel=1e-12)


def test_a_batch_of_zero_weights_is_skipped():
    net, X, Y, weights = problem(n_samples=12)
    weights[4:8] = 0.0                      # the whole second batch of 4
    trainer = Trainer(net, loss="cross_entropy", learning_rate=0.3, batch_size=4,
                      shuffle=False)
    weights_, biases_ = parameters_of(net)

    history = trainer.fit(X, Y, epochs=1, sample_weight=weights)
    loss = baseline.train_epoch(weights_, biases_, X, Y, batch_size=4, learning_rate=0.3,
                                sample_weight=weights, **oracle_options(trainer))

    assert_parameters_close(net, weights_, biases_, np.float64)
    assert history["loss"][0] == pytest.approx(loss, rel=1e-10)
    assert np.isfinite(history["loss"][0])


def test_weighted_accuracy_is_the_weight_share_of_correct_predictions():
    net, X, y, weights = problem(labels=True, n_samples=30)
    trainer = Trainer(net, loss="cross_entropy")
    correct = net.predict(X) == y

    metrics = trainer.evaluate(X, y, weights)

    assert metrics["accuracy"] == pytest.approx(weights[correct].sum() / weights.sum())


def test_grad_norms_use_the_weighted_gradient():
    # one full batch: the recorded norm is ||dJ/dW^l||_F at the starting weights,
    # both by the Gram identity (l2 = 0) and by the explicit product (l2 > 0)
    for l2 in (0.0, 0.05):
        net, X, Y, weights = problem(n_samples=9)
        trainer = Trainer(net, loss="cross_entropy", batch_size=9, l2=l2, learning_rate=0.1)
        _, grad_weights, _ = trainer.loss_and_gradients(X, Y, weights)

        history = trainer.fit(X, Y, epochs=1, sample_weight=weights, grad_norms=True)

        np.testing.assert_allclose(history["grad_norms"][0],
                                   [np.linalg.norm(g) for g in grad_weights], rtol=1e-10)


def test_validation_split_keeps_the_held_out_weights():
    net, X, y, weights = problem(labels=True, n_samples=40)
    trainer = Trainer(net, loss="cross_entropy", learning_rate=0.1, seed=2)
    twin = copy.deepcopy(trainer)

    history = trainer.fit(X, y, epochs=1, validation_split=0.25, sample_weight=weights)

    train, held_out = _split_rows(twin, y)
    twin.fit(X[train], y[train], epochs=1, sample_weight=weights[train])
    np.testing.assert_array_equal(trainer.network.get_parameters(),
                                  twin.network.get_parameters())
    assert history["val_loss"][0] == pytest.approx(
        twin.evaluate(X[held_out], y[held_out], weights[held_out])["loss"], rel=1e-12)


def _split_rows(trainer, y):
    """The rows a fit with validation_split=0.25 draws, from the trainer's generator."""
    return validation_split_rows(trainer, one_hot(y, SIZES[-1]), True, 0.25,
                                 trainer_rng(trainer))


BAD_WEIGHTS = {
    "2-D": (np.ones((11, 1)), ValueError, "1-D"),
    "too few": (np.ones(10), ValueError, "10 weights for 11 samples"),
    "NaN": (np.r_[np.ones(10), np.nan], ValueError, "NaN"),
    "infinite": (np.r_[np.ones(10), np.inf], ValueError, "infinity"),
    "negative": (np.r_[np.ones(10), -1.0], ValueError, "negative"),
    "all zero": (np.zeros(11), ValueError, "all zeros"),
    "strings": (np.array(["a"] * 11), TypeError, "real numbers"),
    "negative scalar": (-2.0, ValueError, "negative"),
    "zero scalar": (0.0, ValueError, "all zeros"),
}


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_bad_weights_are_refused_before_anything_changes(case):
    bad, kind, message = BAD_WEIGHTS[case]
    net, X, Y, _ = problem(labels=True)
    trainer = Trainer(net, loss="cross_entropy", seed=0)
    before = net.get_parameters()
    state = copy.deepcopy(trainer_rng(trainer).bit_generator.state)

    calls = {
        "fit": lambda: trainer.fit(X, Y, epochs=1, sample_weight=bad),
        "step": lambda: trainer.step(X, Y, bad),
        "evaluate": lambda: trainer.evaluate(X, Y, sample_weight=bad),
        "loss_and_gradients": lambda: trainer.loss_and_gradients(X, Y, sample_weight=bad),
        "partial_fit": lambda: trainer.partial_fit(X, Y, sample_weight=bad),
    }
    for name, call in calls.items():
        with pytest.raises(kind, match="sample_weight") as error:
            call()
        assert message in str(error.value), name
    np.testing.assert_array_equal(net.get_parameters(), before)
    assert trainer_rng(trainer).bit_generator.state == state
    assert trainer.epoch == 0 and trainer.history == {}


def test_float32_weights_that_overflow_are_refused():
    net, X, Y, _ = problem(np.float32, labels=True)
    trainer = Trainer(net, loss="cross_entropy")
    with pytest.raises(ValueError, match="sample_weight holds NaN or infinity"):
        trainer.step(X, Y, np.full(len(X), 1e300))
