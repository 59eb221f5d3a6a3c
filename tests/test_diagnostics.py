"""Gradient diagnostics: fit(grad_norms=True) against the NumPy oracle, and
fastbp.gradient_check on correct and on deliberately wrong gradients.

The gradient norms are replayed batch by batch: a copy of the trainer takes
the same batches one `step` at a time, and before each step the oracle's
loss_and_gradients gives dJ/dW^l at the parameters the epoch kernel saw.
"""

import copy

import numpy as np
import pytest

import fastbp
from fastbp import Network, Trainer, _kernels, baseline, gradient_check
from helpers import (
    DTYPES,
    HIDDEN_ACTIVATIONS,
    OUTPUT_LOSS_PAIRS,
    kernel_rule,
    make_data,
    parameters_of,
    small_batch_rows,
)

# One per update mode of the epoch kernel: fused SGD (with its L2 decay on
# the GEMM), fused heavy-ball momentum, and gradient-then-rule (Nesterov,
# Adam, SGD with L1).
MODES = {
    "sgd": dict(learning_rate=0.5),
    "sgd-l2": dict(learning_rate=0.5, l2=0.01),
    "momentum": dict(learning_rate=0.2, momentum=0.9, l2=0.01),
    "nesterov": dict(learning_rate=0.2, momentum=0.9, nesterov=True),
    "adam": dict(optimizer="adam", learning_rate=0.01, l2=0.01),
    "sgd-l1": dict(learning_rate=0.5, l1=0.001),
}
# 10-row batches take the register-blocked kernels (with AVX2), 40-row ones BLAS
BATCHES = {"small-batch": 10, "blas-batch": 40}
NORM_RTOL = {np.float64: 1e-9, np.float32: 1e-4}


def _trainer(dtype, options, batch_size, sizes=(12, 9, 7, 4), seed=0):
    net = Network(list(sizes), activation="tanh", output="softmax", dtype=dtype, seed=seed)
    return Trainer(net, loss="cross_entropy", batch_size=batch_size, shuffle=False,
                   seed=seed, **options)


def _replayed_norms(trainer, X, y, batch_size):
    """Per layer, ||dJ/dW^l||_F averaged over one epoch's in-order batches, by the oracle."""
    net = trainer.network
    Y = np.eye(net.layer_sizes[-1], dtype=net.dtype)[y]
    sums = np.zeros(net.n_layers)
    batches = 0
    for start in range(0, len(X), batch_size):
        Xb, Yb = X[start:start + batch_size], Y[start:start + batch_size]
        weights, biases = parameters_of(net)
        _, grad_weights, _ = baseline.loss_and_gradients(
            [w.astype(np.float64) for w in weights], [b.astype(np.float64) for b in biases],
            Xb.astype(np.float64), Yb.astype(np.float64), activation=net.activation,
            output=net.output, loss=trainer.loss, l2=trainer.l2, l1=trainer.l1)
        sums += [np.linalg.norm(g) for g in grad_weights]
        trainer.step(Xb, Yb)
        batches += 1
    return sums / batches


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("batch", BATCHES.values(), ids=BATCHES.keys())
@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_grad_norms_match_the_oracle(mode, batch, dtype):
    rng = np.random.default_rng(1)
    X, y = make_data(rng, 100, (12, 4), dtype, labels=True)
    trainer = _trainer(dtype, mode, batch)
    replay = copy.deepcopy(trainer)
    history = trainer.fit(X, y, epochs=1, grad_norms=True)
    (norms,) = history["grad_norms"]
    assert len(norms) == 3 and all(isinstance(value, float) for value in norms)
    expected = _replayed_norms(replay, X, y, batch)
    np.testing.assert_allclose(norms, expected, rtol=NORM_RTOL[dtype])
    # the replay took the same steps: the kernel's own trajectory
    np.testing.assert_allclose(trainer.network.get_parameters(),
                               replay.network.get_parameters(), rtol=NORM_RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_grad_norms_leave_training_bit_for_bit(mode, dtype):
    rng = np.random.default_rng(2)
    X, y = make_data(rng, 90, (12, 4), dtype, labels=True)
    for batch in BATCHES.values():
        plain, watched = _trainer(dtype, mode, batch), _trainer(dtype, mode, batch)
        plain.shuffle = watched.shuffle = True
        without = plain.fit(X, y, epochs=3)
        with_norms = watched.fit(X, y, epochs=3, grad_norms=True)
        assert "grad_norms" not in without
        assert len(with_norms["grad_norms"]) == 3
        assert np.array_equal(plain.network.get_parameters(),
                              watched.network.get_parameters())
        assert without["loss"] == with_norms["loss"]
        # the trainer's own history stays flat (checkpoints store it as such)
        assert "grad_norms" not in watched.history


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("batch", [1, 4, 10])
@pytest.mark.parametrize("mode", [MODES["sgd"], dict(learning_rate=0.2, momentum=0.9)],
                         ids=["sgd", "momentum"])
def test_grad_norms_by_the_gram_identity(mode, batch, dtype):
    # a wide first layer and no L2: the fused updates' norms of layers 1 and 2
    # come from the Gram identity ((m + 1)(n_in + n_out) < n_in n_out), not a product
    rng = np.random.default_rng(10)
    X, y = make_data(rng, 40, (60, 4), dtype, labels=True)
    trainer = _trainer(dtype, mode, batch, sizes=(60, 40, 30, 4))
    replay = copy.deepcopy(trainer)
    (norms,) = trainer.fit(X, y, epochs=1, grad_norms=True)["grad_norms"]
    expected = _replayed_norms(replay, X, y, batch)
    np.testing.assert_allclose(norms, expected, rtol=NORM_RTOL[dtype])


def test_grad_norms_on_blas_for_every_batch():
    # the fused modes' extra product on BLAS also for 10-row batches
    rng = np.random.default_rng(3)
    X, y = make_data(rng, 60, (12, 4), np.float64, labels=True)
    with small_batch_rows(0):
        trainer = _trainer(np.float64, MODES["sgd-l2"], 10)
        replay = copy.deepcopy(trainer)
        (norms,) = trainer.fit(X, y, epochs=1, grad_norms=True)["grad_norms"]
        expected = _replayed_norms(replay, X, y, 10)
    np.testing.assert_allclose(norms, expected, rtol=1e-9)


def test_grad_norms_refusals_and_verbose(capsys):
    rng = np.random.default_rng(4)
    X, y = make_data(rng, 30, (12, 4), np.float64, labels=True)
    trainer = _trainer(np.float64, {}, 10)
    before = trainer.network.get_parameters()
    with pytest.raises(TypeError, match="grad_norms"):
        trainer.fit(X, y, epochs=1, grad_norms="yes")
    assert np.array_equal(before, trainer.network.get_parameters())
    history = trainer.partial_fit(X, y, verbose=2, grad_norms=True)
    assert len(history["grad_norms"]) == 1
    assert "grad_norms [" in capsys.readouterr().out


def test_kernel_checks_the_grad_norms_buffer():
    sizes = np.array([3, 4, 2], dtype=np.intp)
    codes = np.array([1, 1], dtype=np.intc)
    rng = np.random.default_rng(9)
    params = rng.standard_normal(_kernels.parameter_count(sizes))
    X, Y = rng.random((5, 3)), rng.random((5, 2))
    work = np.empty(_kernels.workspace_size(sizes, 5))
    empty = np.empty(0)
    order = np.empty(0, dtype=np.intp)

    def run(grads, norms):
        return _kernels.train_epoch(params, grads, empty, empty, sizes, codes, 0, X, Y,
                                    order, 5, work, np.zeros(3), kernel_rule(),
                                    grad_norms=norms)

    with pytest.raises(ValueError, match="one entry per layer"):
        run(np.empty_like(params), np.zeros(3))
    with pytest.raises(ValueError, match="grads must have the layout"):
        run(empty, np.zeros(2))
    norms = np.zeros(2)
    run(np.empty_like(params), norms)
    assert np.all(norms > 0)


# ------------------------------------------------------------- gradient_check


def _checked_trainer(activation, output, loss, dtype=np.float64, **options):
    net = Network([6, 5, 4, 3], activation=activation, output=output, dtype=dtype, seed=1)
    return Trainer(net, loss=loss, **options)


@pytest.mark.parametrize("pair", OUTPUT_LOSS_PAIRS, ids="-".join)
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_gradient_check_passes_a_correct_network(activation, pair):
    rng = np.random.default_rng(5)
    X, Y = make_data(rng, 12, (6, 3))
    trainer = _checked_trainer(activation, *pair, l2=0.01, l1=0.001)
    before = trainer.network.get_parameters()
    # epsilon 1e-5: the rounding noise of J over epsilon stays well below 1e-6
    checks = gradient_check(trainer, X, Y, epsilon=1e-5)
    assert [check.layer for check in checks] == [1, 2, 3]
    assert max(check.max_error for check in checks) < 1e-6, checks
    # the defaults: within the noise that epsilon = 1e-6 leaves
    assert max(check.max_error for check in gradient_check(trainer, X, Y)) < 1e-5
    assert np.array_equal(before, trainer.network.get_parameters())


def test_gradient_check_finds_a_wrong_layer(monkeypatch):
    rng = np.random.default_rng(6)
    X, Y = make_data(rng, 12, (6, 3))
    trainer = _checked_trainer("sigmoid", "softmax", "cross_entropy")
    correct = trainer.loss_and_gradients

    def wrong(X, Y):
        loss, grad_weights, grad_biases = correct(X, Y)
        grad_weights[1] = grad_weights[1] * 1.05      # a 5% mistake in layer 2's dJ/dW
        return loss, grad_weights, grad_biases

    monkeypatch.setattr(trainer, "loss_and_gradients", wrong)
    checks = gradient_check(trainer, X, Y)
    assert checks[1].weights > 0.04
    assert checks[0].max_error < 1e-5 and checks[2].max_error < 1e-5
    assert checks[1].biases < 1e-5


def test_gradient_check_samples_and_float32():
    rng = np.random.default_rng(7)
    X, y = make_data(rng, 20, (30, 3), np.float32, labels=True)
    net = Network([30, 20, 3], activation="relu", output="softmax", dtype="float32", seed=0)
    trainer = Trainer(net, loss="cross_entropy", l2=0.01)
    before = net.get_parameters()
    checks = gradient_check(trainer, X, y, max_entries=25, epsilon=1e-5)
    assert [(c.checked_weights, c.n_weights, c.checked_biases, c.n_biases)
            for c in checks] == [(25, 600, 20, 20), (25, 60, 3, 3)]
    # checked on a float64 twin: the maths, not float32's rounding
    assert max(check.max_error for check in checks) < 1e-6
    assert np.array_equal(before, net.get_parameters()) and net.dtype == np.float32
    assert "checked 25 of 600 weights" in repr(checks[0])


@pytest.mark.parametrize("bad", [dict(epsilon=0), dict(epsilon=-1.0), dict(max_entries=0),
                                 dict(tiny=0.0), dict(max_entries=2.5)])
def test_gradient_check_refuses_bad_settings(bad):
    trainer = _checked_trainer("sigmoid", "sigmoid", "mse")
    X, Y = make_data(np.random.default_rng(8), 4, (6, 3))
    with pytest.raises(ValueError):
        gradient_check(trainer, X, Y, **bad)
    with pytest.raises(TypeError):
        gradient_check(trainer.network, X, Y)


def test_gradient_check_is_public():
    assert "gradient_check" in fastbp.__all__
    assert fastbp.gradient_check is gradient_check
