"""The Cython kernels, through Network and Trainer, against the NumPy oracle.

Every hidden activation x every valid (output, loss) pair x both dtypes:
forward, J and its gradients, evaluate, and whole fit epochs (plain, L2,
momentum, a last partial batch, a batch larger than the data, shuffled)
must equal `fastbp.baseline` to RTOL. A few tests call `fastbp._kernels`
directly for its buffer arithmetic and its size checks.
"""

import itertools

import numpy as np
import pytest
from helpers import (
    DTYPES,
    HIDDEN_ACTIVATIONS,
    OUTPUT_LOSS_PAIRS,
    activation_codes,
    assert_close,
    assert_parameters_close,
    avx2_rules,
    loss_code,
    make_data,
    make_network,
    one_hot,
    optimizer_state,
    pair_id,
    parameters_of,
    small_batch_rows,
    zero_velocities,
)

from fastbp import Trainer, _kernels, baseline

# Two hidden layers, so the delta recursion runs through f' twice.
SIZES = [5, 8, 6, 3]

COMBINATIONS = [
    pytest.param(activation, output, loss_name, dtype,
                 id=f"{activation}-{output}-{loss_name}-{np.dtype(dtype).name}")
    for activation, (output, loss_name), dtype in itertools.product(
        HIDDEN_ACTIVATIONS, OUTPUT_LOSS_PAIRS, DTYPES)
]


def setup(activation, output, dtype, n_samples, seed=0, labels=False):
    rng = np.random.default_rng(seed)
    net = make_network(SIZES, activation, output, dtype, seed=seed + 1)
    X, Y = make_data(rng, n_samples, SIZES, dtype, labels=labels)
    return net, X, Y


# ---------------------------------------------------------------- forward & J


@pytest.mark.parametrize("activation, output, loss_name, dtype", COMBINATIONS)
def test_forward_matches_baseline(activation, output, loss_name, dtype):
    # 300 rows: more than one 256-row chunk of Network.forward, the last one short
    net, X, _ = setup(activation, output, dtype, n_samples=300)
    weights, biases = parameters_of(net)

    got = net.forward(X)

    expected = baseline.forward(weights, biases, X, activation, output)[-1]
    assert got.dtype == np.dtype(dtype)
    assert_close(got, expected, dtype, what="A^L")


@pytest.mark.parametrize("activation, output, loss_name, dtype", COMBINATIONS)
def test_loss_and_gradients_match_baseline(activation, output, loss_name, dtype):
    net, X, Y = setup(activation, output, dtype, n_samples=17)
    trainer = Trainer(net, loss=loss_name, l2=0.03)
    weights, biases = parameters_of(net)

    J, grad_weights, grad_biases = trainer.loss_and_gradients(X, Y)

    J_expected, gw_expected, gb_expected = baseline.loss_and_gradients(
        weights, biases, X, Y, activation, output, loss_name, l2=0.03)
    assert isinstance(J, float)
    assert_close(J, J_expected, dtype, what="J")
    assert len(grad_weights) == len(grad_biases) == len(SIZES) - 1
    for k in range(len(SIZES) - 1):
        assert grad_weights[k].dtype == grad_biases[k].dtype == np.dtype(dtype)
        assert_close(grad_weights[k], gw_expected[k], dtype, what=f"dJ/dW[{k}]")
        assert_close(grad_biases[k], gb_expected[k], dtype, what=f"dJ/db[{k}]")
    # no update happened
    assert_parameters_close(net, weights, biases, dtype, rtol=0)


@pytest.mark.parametrize("activation, output, loss_name, dtype", COMBINATIONS)
def test_evaluate_matches_baseline(activation, output, loss_name, dtype):
    net, X, labels = setup(activation, output, dtype, n_samples=41, labels=True)
    trainer = Trainer(net, loss=loss_name, l2=0.02)
    weights, biases = parameters_of(net)
    Y = one_hot(labels, SIZES[-1], dtype)

    metrics = trainer.evaluate(X, labels)

    expected = baseline.loss(weights, biases, X, Y, activation, output, loss_name, l2=0.02)
    assert_close(metrics["loss"], expected, dtype, what="loss")
    predicted = baseline.forward(weights, biases, X, activation, output)[-1].argmax(axis=1)
    assert metrics["accuracy"] == np.mean(predicted == labels)


# ---------------------------------------------------------------- fit epochs

# (n_samples, batch_size, l2, momentum): every epoch shape the kernel handles.
EPOCH_CASES = {
    "plain-partial-last-batch": (23, 5, 0.0, 0.0),
    "l2-exact-batches": (20, 4, 0.05, 0.0),
    "momentum": (23, 6, 0.0, 0.6),
    "momentum-l2": (22, 7, 0.01, 0.5),
    "batch-larger-than-data": (23, 30, 0.01, 0.0),
    "single-sample-batches": (9, 1, 0.01, 0.0),
    # 40 rows go through BLAS, the last 7 through the small-batch kernels
    "blas-sized-batch": (47, 40, 0.01, 0.5),
}
LEARNING_RATE = 0.3


@pytest.mark.parametrize("case", list(EPOCH_CASES))
@pytest.mark.parametrize("activation, output, loss_name, dtype", COMBINATIONS)
def test_fit_epochs_match_baseline(activation, output, loss_name, dtype, case):
    n_samples, batch_size, l2, momentum = EPOCH_CASES[case]
    net, X, Y = setup(activation, output, dtype, n_samples)
    weights, biases = parameters_of(net)
    velocities = zero_velocities(weights, biases)
    trainer = Trainer(net, loss=loss_name, learning_rate=LEARNING_RATE,
                      batch_size=batch_size, l2=l2, momentum=momentum, shuffle=False)

    # two epochs: the momentum velocity must carry over from the first
    history = trainer.fit(X, Y, epochs=2)

    expected_losses = [
        baseline.train_epoch(
            weights, biases, X, Y, activation=activation, output=output,
            loss=loss_name, learning_rate=LEARNING_RATE, batch_size=batch_size,
            l2=l2, momentum=momentum, velocities=velocities)
        for _ in range(2)
    ]
    assert len(history["loss"]) == 2
    assert_close(history["loss"], expected_losses, dtype, what="history['loss']")
    assert_parameters_close(net, weights, biases, dtype)


@pytest.mark.parametrize("activation, output, loss_name, dtype", COMBINATIONS)
def test_shuffled_fit_matches_baseline_with_same_permutations(
        activation, output, loss_name, dtype):
    n_samples, batch_size, seed = 26, 4, 7
    net, X, Y = setup(activation, output, dtype, n_samples)
    weights, biases = parameters_of(net)
    velocities = zero_velocities(weights, biases)
    trainer = Trainer(net, loss=loss_name, learning_rate=LEARNING_RATE,
                      batch_size=batch_size, l2=0.01, momentum=0.3, shuffle=True,
                      seed=seed)

    history = trainer.fit(X, Y, epochs=2)

    # Trainer draws one permutation per epoch from default_rng(seed)
    generator = np.random.default_rng(seed)
    expected_losses = []
    for _ in range(2):
        order = generator.permutation(n_samples)
        expected_losses.append(baseline.train_epoch(
            weights, biases, X, Y, activation=activation, output=output,
            loss=loss_name, learning_rate=LEARNING_RATE, batch_size=batch_size,
            l2=0.01, momentum=0.3, velocities=velocities, order=order))
    assert_close(history["loss"], expected_losses, dtype, what="history['loss']")
    assert_parameters_close(net, weights, biases, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [0, 64], ids=["all-blas", "all-small-kernels"])
def test_fit_matches_baseline_on_either_gemm_path(dtype, rows):
    """The register-blocked small-batch products and BLAS give the same epoch."""
    net, X, Y = setup("tanh", "softmax", dtype, n_samples=50)
    weights, biases = parameters_of(net)
    trainer = Trainer(net, loss="cross_entropy", learning_rate=LEARNING_RATE,
                      batch_size=16, l2=0.01, shuffle=False)
    with small_batch_rows(rows):
        history = trainer.fit(X, Y, epochs=1)

    expected = baseline.train_epoch(
        weights, biases, X, Y, activation="tanh", output="softmax",
        loss="cross_entropy", learning_rate=LEARNING_RATE, batch_size=16, l2=0.01)
    assert_close(history["loss"][0], expected, dtype)
    assert_parameters_close(net, weights, biases, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("settings", [
    dict(optimizer="adam", l1=0.003, l2=0.01), dict(optimizer="adamw"),
    dict(optimizer="rmsprop", l1=0.003, weight_decay=0.02),
    dict(optimizer="sgd", momentum=0.9, nesterov=True, l1=0.003, l2=0.01),
    dict(optimizer="sgd", l1=0.003, weight_decay=0.02),
], ids=["adam", "adamw", "rmsprop", "nesterov", "sgd-l1"])
def test_adaptive_rules_give_the_same_bits_in_avx2_and_sse2(dtype, settings):
    """The two twins of each rule's loop (csrc/fbp_rules.h) agree bit for bit."""
    net, X, Y = setup("sigmoid", "softmax", dtype, n_samples=83)
    results = []
    for avx2 in (True, False):
        copy = net.copy()
        trainer = Trainer(copy, loss="cross_entropy", learning_rate=0.01, batch_size=8,
                          seed=3, **settings)
        with avx2_rules(avx2):
            history = trainer.fit(X, Y, epochs=3)
        results.append((copy.get_parameters(), optimizer_state(trainer)[0].copy(),
                        history["loss"]))
    (params, state, losses), (params_sse2, state_sse2, losses_sse2) = results
    assert not np.array_equal(params, net.get_parameters())
    np.testing.assert_array_equal(params, params_sse2)
    np.testing.assert_array_equal(state, state_sse2)
    assert losses == losses_sse2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output, loss_name", OUTPUT_LOSS_PAIRS, ids=pair_id)
def test_step_matches_one_baseline_batch(output, loss_name, dtype):
    net, X, Y = setup("relu", output, dtype, n_samples=12)
    weights, biases = parameters_of(net)
    trainer = Trainer(net, loss=loss_name, learning_rate=0.2, l2=0.01)

    J = trainer.step(X, Y)

    expected = baseline.train_epoch(
        weights, biases, X, Y, activation="relu", output=output, loss=loss_name,
        learning_rate=0.2, batch_size=12, l2=0.01)
    assert_close(J, expected, dtype)
    assert_parameters_close(net, weights, biases, dtype)


# ---------------------------------------------------------------- extremes


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output, loss_name", OUTPUT_LOSS_PAIRS, ids=pair_id)
def test_extreme_preactivations_stay_finite(output, loss_name, dtype, activation):
    """|z| ~ 1e4 saturates sigmoid and softmax: still finite J, no warnings.

    (pyproject turns every warning into an error, and np.errstate makes any
    floating-point trouble in the Python layer raise as well.)
    """
    rng = np.random.default_rng(3)
    sizes = [4, 6, 3]
    net = make_network(sizes, activation, output, dtype, seed=3)
    X = rng.choice([-1.0, 1.0], size=(10, 4)).astype(dtype)
    Y = one_hot(rng.integers(0, 3, size=10), 3, dtype)
    # hidden |z| ~ 1e4; the output weights are scaled so that |z^L| ~ 1e4
    # whether the hidden layer saturates at O(1) or passes 1e4 through
    net.weights[0][...] = 1e4 * rng.choice([-1.0, 1.0], size=(6, 4)) / 4
    hidden = baseline.forward(*parameters_of(net), X, activation, "identity")[1]
    net.weights[1][...] = (1e4 / max(1.0, np.abs(hidden).max())
                           * rng.choice([-1.0, 1.0], size=(3, 6)) / 6)
    weights, biases = parameters_of(net)
    output_z = hidden @ net.weights[1].T.astype(np.float64) + biases[1]
    assert np.abs(output_z).max() > 1e3
    trainer = Trainer(net, loss=loss_name, learning_rate=1e-12, batch_size=5, l2=1e-9)

    with np.errstate(all="raise"):
        outputs = net.forward(X)
        J, grad_weights, grad_biases = trainer.loss_and_gradients(X, Y)
        metrics = trainer.evaluate(X, Y)
        history = trainer.fit(X, Y, epochs=1)

    assert np.isfinite(outputs).all()
    assert np.isfinite(J) and np.isfinite(metrics["loss"])
    assert np.isfinite(history["loss"][0])
    for gradient in grad_weights + grad_biases:
        assert np.isfinite(gradient).all()
    if output == "sigmoid":
        assert ((outputs >= 0) & (outputs <= 1)).all()
    if output == "softmax":
        assert_close(outputs.sum(axis=1), np.ones(10), dtype)
    # the stable forms agree with the oracle's stable forms
    expected = baseline.loss(weights, biases, X, Y, activation, output, loss_name, l2=1e-9)
    assert_close(J, expected, dtype, rtol=1e-3)
    assert_close(metrics["loss"], expected, dtype, rtol=1e-3)


# ---------------------------------------------------------------- raw kernels


@pytest.mark.parametrize("sizes", [[1, 1], [3, 2], [5, 8, 6, 3], [784, 30, 10],
                                   [2, 9, 1, 4, 7]])
@pytest.mark.parametrize("capacity", [1, 10, 256])
def test_parameter_count_and_workspace_size(sizes, capacity):
    layer_sizes = np.asarray(sizes, dtype=np.intp)
    # [W_0, b_0, W_1, b_1, ...]: n_l * n_{l-1} weights and n_l biases per layer
    expected_parameters = sum(n_out * n_in + n_out for n_in, n_out in zip(sizes, sizes[1:]))
    # documented layout: A^1..A^L, three widest-layer buffers, a gathered
    # input and a gathered target batch (capacity rows each), column sums
    widest = max(sizes[1:])
    expected_work = capacity * (sum(sizes[1:]) + 3 * widest + sizes[0] + sizes[-1]) + widest

    assert _kernels.parameter_count(layer_sizes) == expected_parameters
    assert _kernels.workspace_size(layer_sizes, capacity) == expected_work


def raw_problem(dtype, sizes=(4, 5, 3), n_samples=6):
    rng = np.random.default_rng(4)
    net = make_network(list(sizes), "tanh", "softmax", dtype, seed=4)
    X, Y = make_data(rng, n_samples, sizes, dtype)
    layer_sizes = np.asarray(sizes, dtype=np.intp)
    return net, X, Y, layer_sizes


@pytest.mark.parametrize("dtype", DTYPES)
def test_raw_forward_kernel_and_its_buffer_check(dtype):
    net, X, Y, sizes = raw_problem(dtype)
    params = net.get_parameters()
    codes = activation_codes("tanh", "softmax")
    loss = loss_code("cross_entropy")
    out = np.full((6, 3), np.nan, dtype=dtype)
    capacity = 4    # two chunks: 4 rows, then 2

    work = np.zeros(_kernels.workspace_size(sizes, capacity), dtype=dtype)
    cost, _ = _kernels.forward(params, sizes, codes, loss, X, Y, out, work, capacity)

    weights, biases = parameters_of(net)
    assert_close(out, baseline.forward(weights, biases, X, "tanh", "softmax")[-1], dtype)
    # the kernel returns sum_i C_i; the oracle J is its mean
    expected = 6 * baseline.loss(weights, biases, X, Y, "tanh", "softmax", "cross_entropy")
    assert_close(cost, expected, dtype)

    too_small = np.zeros(work.size - 1, dtype=dtype)
    with pytest.raises(ValueError, match="work"):
        _kernels.forward(params, sizes, codes, loss, X, Y, out, too_small, capacity)
    with pytest.raises(ValueError, match="capacity"):
        _kernels.forward(params, sizes, codes, loss, X, Y, out, work, 0)
    with pytest.raises(ValueError, match="params"):
        _kernels.forward(params[:-1].copy(), sizes, codes, loss, X, Y, out, work,
                         capacity)


@pytest.mark.parametrize("dtype", DTYPES)
def test_raw_loss_and_gradients_kernel_and_its_buffer_check(dtype):
    net, X, Y, sizes = raw_problem(dtype)
    params = net.get_parameters()
    codes = activation_codes("tanh", "softmax")
    loss = loss_code("mse")
    grads = np.full_like(params, np.nan)

    work = np.zeros(_kernels.workspace_size(sizes, 6), dtype=dtype)
    J, _ = _kernels.loss_and_gradients(params, grads, sizes, codes, loss, X, Y,
                                       work, 0.1)

    weights, biases = parameters_of(net)
    J_expected, gw, gb = baseline.loss_and_gradients(
        weights, biases, X, Y, "tanh", "softmax", "mse", l2=0.1)
    assert_close(J, J_expected, dtype)
    # the flat gradient has the layout of params: [W_0, b_0, W_1, b_1]
    flat_expected = np.concatenate([gw[0].ravel(), gb[0], gw[1].ravel(), gb[1]])
    assert_close(grads, flat_expected, dtype)

    # a work buffer sized for 5 rows cannot take this 6-row batch
    too_small = np.zeros(_kernels.workspace_size(sizes, 5), dtype=dtype)
    with pytest.raises(ValueError, match="work"):
        _kernels.loss_and_gradients(params, grads, sizes, codes, loss, X, Y,
                                    too_small, 0.1)
    with pytest.raises(ValueError, match="shape"):
        _kernels.loss_and_gradients(params, grads, sizes, codes, loss, X[:, :3].copy(),
                                    Y, work, 0.1)
    with pytest.raises(ValueError, match="grads"):
        _kernels.loss_and_gradients(params, grads[:-1].copy(), sizes, codes, loss, X, Y,
                                    work, 0.1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("size", [1, 7, 31, 32, 33, 100_000])
def test_all_finite_finds_every_non_finite_value_wherever_it_is(dtype, size):
    info = np.finfo(dtype)
    values = np.random.default_rng(size).uniform(-1, 1, size).astype(dtype)
    values[::3] = info.max                     # huge but finite; sums would overflow
    values[1::5] = info.smallest_subnormal
    assert _kernels.all_finite(values)
    for position in sorted({0, size // 2, size - 1}):
        for bad in (np.nan, np.inf, -np.inf):
            spoiled = values.copy()
            spoiled[position] = bad
            assert not _kernels.all_finite(spoiled), (position, bad)
    assert _kernels.all_finite(values[:0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_hot_rows_agrees_with_its_definition(dtype):
    """One 1 and zeros elsewhere in every row; anything else, anywhere, is not."""
    def definition(Y):
        return bool(np.isin(Y, (0, 1)).all() and np.all(Y.sum(axis=1) == 1))

    rng = np.random.default_rng(7)
    Y = np.eye(4, dtype=dtype)[rng.integers(0, 4, 9)]
    assert _kernels.one_hot_rows(Y) and definition(Y)
    for row in (0, 4, 8):
        for change in ("second one", "no one", "half", "minus one", "two", "tiny"):
            spoiled = Y.copy()
            hot = int(spoiled[row].argmax())
            cold = (hot + 1) % 4
            if change == "second one":
                spoiled[row, cold] = 1
            elif change == "no one":
                spoiled[row, hot] = 0
            elif change == "half":
                spoiled[row, hot] = 0.5
            elif change == "minus one":
                spoiled[row, cold] = -1
            elif change == "two":
                spoiled[row, hot] = 2
            else:
                spoiled[row, cold] = np.finfo(dtype).smallest_subnormal
            assert not definition(spoiled)
            assert not _kernels.one_hot_rows(spoiled), (row, change)


@pytest.mark.parametrize("function", ["all_finite", "one_hot_rows", "parameter_count"])
def test_the_array_helpers_refuse_none(function):
    with pytest.raises(TypeError):
        getattr(_kernels, function)(None)
    with pytest.raises(TypeError):
        _kernels.workspace_size(None, 4)


# ------------------------------------------------------- penalty and update modes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_penalty_is_the_l2_and_l1_terms_of_J(dtype):
    sizes = np.asarray([5, 4, 3], dtype=np.intp)
    params = np.random.default_rng(0).standard_normal(_kernels.parameter_count(sizes)).astype(dtype)
    W1, W2 = params[:20], params[24:36]
    expected = sum(0.5 * 0.3 * float(np.dot(w.astype(float), w.astype(float)))
                   + 0.2 * float(np.abs(w.astype(float)).sum()) for w in (W1, W2))
    assert _kernels.penalty(params, sizes, 0.3, 0.2) == pytest.approx(expected, rel=1e-12)
    assert _kernels.penalty(params, sizes, 0.0, 0.0) == 0.0
    with pytest.raises(ValueError):
        _kernels.penalty(params[:-1].copy(), sizes, 0.3, 0.2)


def test_needs_gradients_only_outside_the_fused_sgd_paths():
    rule = dict(kind=_kernels.SGD, learning_rate=0.1, l2=1e-3, l1=0.0, weight_decay=0.0,
                momentum=0.9, nesterov=False, rho=0.9, beta1=0.9, beta2=0.999, epsilon=1e-8,
                bias_corrected_epsilon=True)
    assert not _kernels.needs_gradients(rule)
    assert not _kernels.needs_gradients(dict(rule, momentum=0.0))
    for change in (dict(l1=1e-4), dict(weight_decay=0.01), dict(nesterov=True),
                   dict(kind=_kernels.RMSPROP), dict(kind=_kernels.ADAM)):
        assert _kernels.needs_gradients(dict(rule, **change)), change
    with pytest.raises(ValueError):
        _kernels.needs_gradients(dict(rule, learning_rat=0.1))
