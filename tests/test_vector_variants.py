"""The small-batch GEMM's AVX-512 twins against the AVX2 kernels they stand in for,
and against the generic path (BLAS).

Run where the CPU has AVX-512 F, skipped with the reason elsewhere (no test
assumes a CPU feature). Both twins sum each element in their own fixed
order, so they agree to rounding, and each alone gives a row the same bits
whatever batch it is in.
"""

import contextlib

import numpy as np
import pytest

from fastbp import Network, Trainer, _kernels

pytestmark = pytest.mark.skipif(
    _kernels.small_batch_kernels() != "avx512",
    reason=f"this CPU runs the {_kernels.small_batch_kernels()} small-batch kernels, "
           f"not AVX-512",
)

TOLERANCE = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


@contextlib.contextmanager
def avx512(on):
    old = _kernels._set_avx512_gemm(on)
    try:
        yield
    finally:
        _kernels._set_avx512_gemm(old)


# widths around the vector lengths (8 doubles, 16 floats) and the register
# blocks (4 rows x 6 columns), and the digits and MNIST input widths
SHAPES = [(1, 1, 1), (3, 5, 7), (4, 6, 16), (5, 7, 17), (10, 30, 784), (17, 13, 33),
          (32, 10, 30), (7, 1, 1000), (2, 100, 64)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, n_hidden, n_in", SHAPES)
def test_gradients_agree_with_the_avx2_kernels(m, n_hidden, n_in, dtype):
    rng = np.random.default_rng(m * 1000 + n_in)
    net = Network([n_in, n_hidden, 3], activation="tanh", output="softmax", dtype=dtype,
                  seed=1)
    X = rng.standard_normal((m, n_in)).astype(dtype)
    y = rng.integers(0, 3, m)
    trainer = Trainer(net, loss="cross_entropy", l2=1e-3)
    results = {}
    for on in (True, False):
        with avx512(on):
            results[on] = trainer.loss_and_gradients(X, y)
    (J1, w1, b1), (J0, w0, b0) = results[True], results[False]
    assert J1 == pytest.approx(J0, rel=TOLERANCE[dtype]["rtol"])
    for new, old in zip(w1 + b1, w0 + b0):
        np.testing.assert_allclose(new, old, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_epoch_agrees_with_the_avx2_kernels(dtype):
    rng = np.random.default_rng(0)
    X = rng.random((300, 64)).astype(dtype)
    y = rng.integers(0, 10, 300)
    nets = {}
    for on in (True, False):
        net = Network([64, 30, 10], dtype=dtype, seed=0)
        with avx512(on):
            Trainer(net, loss="cross_entropy", learning_rate=0.5, batch_size=10,
                    momentum=0.9, seed=0).fit(X, y, epochs=2)
        nets[on] = net
    loose = dict(rtol=TOLERANCE[dtype]["rtol"] * 50, atol=TOLERANCE[dtype]["atol"] * 50)
    np.testing.assert_allclose(nets[True].get_parameters(), nets[False].get_parameters(),
                               **loose)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_row_gets_the_same_bits_in_any_batch(dtype):
    rng = np.random.default_rng(3)
    net = Network([37, 13, 5], activation="relu", output="identity", dtype=dtype, seed=2)
    X = rng.standard_normal((29, 37)).astype(dtype)
    with avx512(True):
        whole = net.forward(X)
        rows = np.vstack([net.forward(X[i:i + 1]) for i in range(len(X))])
    np.testing.assert_array_equal(whole, rows)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, n_hidden, n_in", SHAPES[:6])
def test_gradients_agree_with_blas(m, n_hidden, n_in, dtype):
    # the generic path: every product through BLAS (small-batch kernels off)
    rng = np.random.default_rng(m + n_in)
    net = Network([n_in, n_hidden, 4], activation="sigmoid", output="sigmoid", dtype=dtype,
                  seed=3)
    X = rng.random((m, n_in)).astype(dtype)
    Y = rng.random((m, 4)).astype(dtype)
    trainer = Trainer(net, loss="cross_entropy", l2=1e-3)
    with avx512(True):
        J1, w1, b1 = trainer.loss_and_gradients(X, Y)
    old = _kernels._set_small_batch(0)
    try:
        J0, w0, b0 = trainer.loss_and_gradients(X, Y)
    finally:
        _kernels._set_small_batch(old)
    assert J1 == pytest.approx(J0, rel=TOLERANCE[dtype]["rtol"])
    for new, ref in zip(w1 + b1, w0 + b0):
        np.testing.assert_allclose(new, ref, **TOLERANCE[dtype])


def test_the_knob_reports_and_restores():
    assert _kernels.small_batch_kernels() == "avx512"
    with avx512(False):
        assert _kernels.small_batch_kernels() == "avx2"
    assert _kernels.small_batch_kernels() == "avx512"
