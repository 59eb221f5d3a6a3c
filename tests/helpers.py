"""Shared helpers of the fastbp tests: data, parameters, tolerances, finite
differences, hypothesis strategies, and the one place that reaches into
fastbp's private attributes and raw kernels.

The NumPy oracle `fastbp.baseline` takes lists of arrays; the helpers here
copy a Network's parameters into such lists and compare the results with a
per-dtype tolerance, relative to the scale of each compared array.

Imported by the test modules as ``from helpers import ...`` (pytest's
rootdir-relative import puts tests/ on sys.path). conftest.py holds only
pytest configuration and fixtures.
"""

import contextlib
import copy

import numpy as np
from hypothesis import strategies as st

from fastbp import Network, Trainer, _kernels, baseline
from fastbp._contract import ACTIVATION_CODES, LOSS_CODES
from fastbp._data import held_out_split

# ------------------------------------------------------------------ constants

DTYPES = [np.float64, np.float32]

# Relative tolerance of a kernel result against the NumPy oracle, measured
# against the largest magnitude of the compared array (entries near zero
# cannot be compared one by one). float64: both sides round differently
# (BLAS vs. register-blocked products, fused vs. separate bias passes, a
# lane-wise exp) but agree to a few ulp, compounded over an epoch of updates.
# float32: the same differences at float32's epsilon (~1.2e-7), compounded
# over a few dozen updates.
RTOL = {np.float32: 2e-4, np.float64: 1e-10}

HIDDEN_ACTIVATIONS = ["sigmoid", "tanh", "relu", "identity"]

# (output, loss) pairs the Trainer accepts with outputs of bounded scale (cross_entropy
# needs a sigmoid or softmax output); the exp output of Poisson regression, which
# overflows where these tests push the preactivations, has tests/test_poisson.py.
OUTPUT_LOSS_PAIRS = [
    ("sigmoid", "mse"),
    ("sigmoid", "cross_entropy"),
    ("softmax", "mse"),
    ("softmax", "cross_entropy"),
    ("identity", "mse"),
]


def pair_id(pair):
    return "-".join(pair)


# ------------------------------------------------------------------ hypothesis


def draw_architecture(draw, max_width, max_samples):
    """Draw (sizes, hidden activations, output, loss, dtype, n_samples, batch_size).

    For hypothesis composites: 2 to 5 layers of 1 to max_width units, an
    (output, loss) pair the Trainer accepts, 1 to max_samples samples and a
    batch size up to 3 beyond them (so batch > n_samples comes up).
    """
    sizes = draw(st.lists(st.integers(1, max_width), min_size=2, max_size=5))
    hidden = draw(st.lists(st.sampled_from(HIDDEN_ACTIVATIONS),
                           min_size=len(sizes) - 2, max_size=len(sizes) - 2))
    output, loss = draw(st.sampled_from(OUTPUT_LOSS_PAIRS))
    dtype = draw(st.sampled_from(DTYPES))
    n_samples = draw(st.integers(1, max_samples))
    batch_size = draw(st.integers(1, n_samples + 3))
    return sizes, hidden, output, loss, dtype, n_samples, batch_size


# ------------------------------------------------------------------ data


def make_data(rng, n, sizes, dtype=np.float64, labels=False):
    """A random data set (X, Y) for a network with layer sizes `sizes`.

    X is uniform in [-1, 1). With ``labels=True`` Y holds integer class
    labels in [0, n_L); otherwise Y is (n, n_L) with rows on the probability
    simplex, which is a valid target for every (output, loss) pair: softmax
    + cross_entropy needs sum_k y_k = 1 for delta^L = A^L - Y to be the
    gradient, the sigmoid cross-entropy needs y in [0, 1].
    """
    n_in, n_out = sizes[0], sizes[-1]
    X = rng.uniform(-1.0, 1.0, size=(n, n_in)).astype(dtype)
    if labels:
        return X, rng.integers(0, n_out, size=n)
    Y = rng.uniform(0.05, 1.0, size=(n, n_out))
    Y /= Y.sum(axis=1, keepdims=True)
    return X, Y.astype(dtype)


def classification(n_samples, n_features, n_classes, seed=0):
    """Inputs uniform in [0, 1) and random class labels."""
    rng = np.random.default_rng(seed)
    return rng.random((n_samples, n_features)), rng.integers(0, n_classes, n_samples)


def random_classification(seed=0, n_samples=40, n_features=8, n_classes=3):
    """Inputs uniform in [-1, 1) with random labels: the training set can only
    be memorized, so the validation loss soon rises (overfitting on cue)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n_samples, n_features))
    y = rng.integers(0, n_classes, size=n_samples)
    return X, y


def softmax_trainer(seed=0, sizes=(8, 20, 3), **options):
    """A Trainer of a fresh softmax Network with cross-entropy; `options` override."""
    net = Network(list(sizes), output="softmax", seed=seed)
    options = {"loss": "cross_entropy", "learning_rate": 0.5, "batch_size": 5, "seed": seed,
               **options}
    return Trainer(net, **options)


def without_times(history):
    """A history without its wall-clock entry, for exact comparisons."""
    return {key: value for key, value in history.items() if key != "epoch_seconds"}


def one_hot(labels, n_classes, dtype=np.float64):
    Y = np.zeros((len(labels), n_classes), dtype=dtype)
    Y[np.arange(len(labels)), labels] = 1
    return Y


def make_network(sizes, activation="sigmoid", output="sigmoid", dtype=np.float64,
                 seed=0, weight_scale=1.0, bias_scale=0.3):
    """A Network with its seeded initial weights scaled and random biases.

    The Network starts its biases at zero; random ones make the bias
    gradients and updates matter in every comparison.
    """
    net = Network(sizes, activation=activation, output=output,
                  dtype=np.dtype(dtype).name, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    for k in range(net.n_layers):
        net.weights[k][...] *= weight_scale
        net.biases[k][...] = bias_scale * rng.standard_normal(net.biases[k].shape)
    return net


# ------------------------------------------------------------------ parameters


def copy_parameters(weights, biases):
    """Independent copies of lists of weights and biases."""
    return [W.copy() for W in weights], [b.copy() for b in biases]


def parameters_of(net):
    """Independent copies (weights, biases) of a Network's parameters, for the oracle."""
    return copy_parameters(net.weights, net.biases)


def zero_velocities(weights, biases):
    return [np.zeros_like(W) for W in weights] + [np.zeros_like(b) for b in biases]


def hidden_preactivations(weights, biases, X, activation):
    """Z^l of the hidden layers, recomputed in NumPy (to steer clear of relu kinks)."""
    activations = baseline.forward(weights, biases, X, activation, "identity")
    return [A @ W.T + b for A, W, b in zip(activations[:-2], weights[:-1], biases[:-1])]


def central_differences(objective, weights, biases, step=1e-6):
    """(J(theta + h e_i) - J(theta - h e_i)) / 2h for every entry theta_i.

    `weights` and `biases` are the arrays `objective()` reads (lists of
    arrays for the oracle, or a Network's live lists); each entry is moved
    in place and put back. Returns (weight gradients, bias gradients).
    """
    gradients = []
    for parameter in list(weights) + list(biases):
        gradient = np.zeros_like(parameter)
        for index in np.ndindex(parameter.shape):
            saved = parameter[index]
            parameter[index] = saved + step
            J_plus = objective()
            parameter[index] = saved - step
            J_minus = objective()
            parameter[index] = saved
            gradient[index] = (J_plus - J_minus) / (2 * step)
        gradients.append(gradient)
    n_weights = len(weights)
    return gradients[:n_weights], gradients[n_weights:]


# ------------------------------------------------------------------ comparison


def tolerance(dtype):
    return RTOL[np.dtype(dtype).type]


def assert_close(actual, expected, dtype, rtol=None, what="", scale=None):
    """actual == expected to rtol relative to `scale` (default max|expected|).

    Elementwise: |actual - expected| <= rtol * (|expected| + scale).
    """
    rtol = tolerance(dtype) if rtol is None else rtol
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, what
    assert np.isfinite(actual).all(), f"{what}: non-finite values {actual}"
    if scale is None:
        scale = float(np.max(np.abs(expected), initial=0.0))
    scale = max(1e-30, scale)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale,
                               err_msg=what)


def flat(arrays):
    """One float64 vector of a list of arrays, e.g. all gradients of a network."""
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def assert_parameters_close(net, weights, biases, dtype, rtol=None):
    for k, (W, b) in enumerate(zip(weights, biases)):
        assert net.weights[k].dtype == np.dtype(dtype)
        assert net.biases[k].dtype == np.dtype(dtype)
        assert_close(net.weights[k], W, dtype, rtol, what=f"weights[{k}]")
        assert_close(net.biases[k], b, dtype, rtol, what=f"biases[{k}]")


# ------------------------------------------------------------------ internals
#
# Everything below reaches into fastbp's private attributes or calls its raw
# kernels. It is here, in one place, so that a rename inside fastbp is one
# edit of this section.


def optimizer_state(trainer):
    """The trainer's live optimizer state as a checkpoint stores it: (state1, state2).

    state1 is the velocity (sgd with momentum), the square average (rmsprop)
    or the first moment (adam); state2 the second moment (adam). Empty
    arrays where the rule keeps none, or before any training.
    """
    if trainer._optimizer is None:
        empty = np.empty(0, dtype=trainer.network.dtype)
        return empty, empty
    return trainer._optimizer.slots()


def update_count(trainer):
    """How many parameter updates the trainer has made (Adam's bias correction t)."""
    return 0 if trainer._optimizer is None else trainer._optimizer.updates


def trainer_rng(trainer):
    """The trainer's live random generator (shuffling, validation splits)."""
    return trainer._rng


def rng_state(trainer):
    """A copy of the state of the trainer's random generator."""
    return copy.deepcopy(trainer._rng.bit_generator.state)


def trainer_buffers(trainer):
    """The trainer's preallocated arrays: workspace, optimizer state, gradients."""
    state1, state2 = optimizer_state(trainer)
    return {"work": trainer._work, "state1": state1, "state2": state2,
            "grads": trainer._gradients}


def parameter_buffer(net):
    """The one flat array that holds all of a Network's parameters."""
    return net._params


def validation_split_rows(trainer, Y, stratify, fraction, rng):
    """(training rows, held-out rows) that a fit with validation_split draws."""
    return held_out_split(Y, stratify, fraction, rng)


@contextlib.contextmanager
def watching_fit(trainer, on_train, on_validate):
    """Within the block, `trainer.fit` calls on_train(X_train) before each
    epoch's training and on_validate(X_val) before each evaluation."""
    run_epoch, evaluate = trainer._run_epoch, trainer._evaluate

    def watched_run_epoch(X_train, *args, **kwargs):
        on_train(X_train)
        return run_epoch(X_train, *args, **kwargs)

    def watched_evaluate(X_val, *args, **kwargs):
        on_validate(X_val)
        return evaluate(X_val, *args, **kwargs)

    trainer._run_epoch, trainer._evaluate = watched_run_epoch, watched_evaluate
    try:
        yield
    finally:
        del trainer._run_epoch, trainer._evaluate


@contextlib.contextmanager
def small_batch_rows(rows):
    """Within the block, batches of up to `rows` rows take the register-blocked
    small-batch kernels and larger ones BLAS."""
    old = _kernels._set_small_batch(rows)
    try:
        yield
    finally:
        _kernels._set_small_batch(old)


@contextlib.contextmanager
def avx2_rules(enabled):
    """Within the block, the adaptive update rules run their AVX2 (True) or
    SSE2 (False) loops."""
    old = _kernels._set_avx2_rules(enabled)
    try:
        yield
    finally:
        _kernels._set_avx2_rules(old)


def activation_codes(*names):
    """The raw kernels' activation codes of `names` (hidden layers, then output)."""
    return np.asarray([ACTIVATION_CODES[name] for name in names], dtype=np.intc)


def loss_code(name):
    """The raw kernels' code of the loss `name`."""
    return LOSS_CODES[name]


# The raw epoch kernel's positional arguments, in order (the update rule follows).
EPOCH_KERNEL_ARGUMENTS = ["params", "grads", "moment1", "moment2", "sizes", "activations",
                          "loss", "X", "Y", "order", "batch_size", "work", "progress"]


def kernel_rule(optimizer=0, momentum=0.0, nesterov=False, learning_rate=0.1, **settings):
    """The epoch kernel's rule dict: kind `optimizer` (0 sgd, 1 rmsprop, 2 adam)."""
    rule = {"kind": optimizer, "learning_rate": learning_rate, "l2": 0.0, "l1": 0.0,
            "weight_decay": 0.0, "momentum": momentum, "nesterov": nesterov, "rho": 0.9,
            "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "bias_corrected_epsilon": True}
    rule.update(settings)
    return rule


def epoch_kernel(arguments, **options):
    """_kernels.train_epoch on the dict `arguments` (EPOCH_KERNEL_ARGUMENTS), with
    the rule `kernel_rule(**options)`."""
    return _kernels.train_epoch(*[arguments[name] for name in EPOCH_KERNEL_ARGUMENTS],
                                kernel_rule(**options))
