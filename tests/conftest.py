"""Shared helpers of the fastbp tests: data, parameters, tolerances, hypothesis.

The NumPy oracle `fastbp.baseline` takes lists of arrays; the helpers here
copy a Network's parameters into such lists and compare the results with a
per-dtype tolerance, relative to the scale of each compared array.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from fastbp import Network

# ------------------------------------------------------------------ hypothesis

# deadline=None: the first example of a run pays for imports and workspace
# allocation, which is not what these tests are about. database=None keeps
# test runs from writing a .hypothesis directory into the checkout.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=150,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=1000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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

# (output, loss) pairs the Trainer accepts; identity + cross_entropy is rejected.
OUTPUT_LOSS_PAIRS = [
    ("sigmoid", "mse"),
    ("sigmoid", "cross_entropy"),
    ("softmax", "mse"),
    ("softmax", "cross_entropy"),
    ("identity", "mse"),
]


def pair_id(pair):
    return "-".join(pair)


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


def parameters_of(net):
    """Independent copies (weights, biases) of a Network's parameters, for the oracle."""
    return [W.copy() for W in net.weights], [b.copy() for b in net.biases]


def zero_velocities(weights, biases):
    return [np.zeros_like(W) for W in weights] + [np.zeros_like(b) for b in biases]


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


def pytest_configure(config):
    # hypothesis's failure report imports a module that emits this
    # DeprecationWarning; with filterwarnings = error it would replace the
    # falsifying example by an INTERNALERROR. Ignore just this one.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
