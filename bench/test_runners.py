"""The benchmark runners do the same work: checked on small data (no timing)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from .peer import run_peer
from .roof import measure_roof
from .runners import RoofRunner, make_runner, unavailable
from .workloads import WORKLOADS, batch_gemm_shapes, epoch_flops, make_data, step_bytes

RTOL = {"float64": 1e-9, "float32": 2e-4}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_same_epoch_as_fastbp(name, dtype):
    # the fast NumPy baseline (and the oracle, torch and jax when installed)
    # end one unshuffled epoch with fastbp's weights and loss, to rounding;
    # 300 samples leave a short last batch for every workload's batch size
    workload = WORKLOADS[name]
    X, Y = make_data(300 if workload.batch_size < 256 else 600, dtype)
    implementations = ["fastbp", "numpy", "oracle"] + [
        peer for peer in ("torch", "jax") if unavailable(peer, workload) is None]
    runners = {name: make_runner(name, workload, X, Y, shuffle=False)
               for name in implementations}
    losses = {name: runner.run_epoch() for name, runner in runners.items()}
    reference_weights, reference_biases = runners["fastbp"].parameters()
    for name, runner in runners.items():
        assert losses[name] == pytest.approx(losses["fastbp"], rel=RTOL[dtype]), name
        weights, biases = runner.parameters()
        for got, expected in zip(list(weights) + list(biases),
                                 list(reference_weights) + list(reference_biases)):
            got = np.asarray(got)
            assert got.dtype == np.dtype(dtype)
            scale = np.abs(expected).max()
            np.testing.assert_allclose(got, expected, rtol=0, atol=RTOL[dtype] * scale,
                                       err_msg=name)


@pytest.mark.parametrize("blas", ["scipy", "numpy"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_roof_products(blas, dtype):
    workload = WORKLOADS["medium"]
    X, _ = make_data(100, dtype)            # one full batch of 64, one of 36
    roof = RoofRunner(workload, X, blas=blas)
    roof.run_epoch()
    x_last = X[64:]
    m = x_last.shape[0]
    rtol = 1e-5 if dtype == "float32" else 1e-12
    # the last batch's products, recomputed with plain matmul
    previous = x_last
    for k, weight in enumerate(roof.weights):
        expected = previous @ weight.T
        np.testing.assert_allclose(roof.outputs[k][:m], expected, rtol=rtol, atol=rtol)
        previous = expected
    for k in range(len(roof.weights)):
        inputs = x_last if k == 0 else roof.outputs[k - 1][:m]
        delta = roof.deltas[k][:m]
        np.testing.assert_allclose(roof.gradients[k], delta.T @ inputs, rtol=rtol, atol=rtol)
        if k > 0:
            np.testing.assert_allclose(roof.propagated[k - 1][:m], delta @ roof.weights[k],
                                       rtol=rtol, atol=rtol)


def test_flop_count():
    # [784, 30, 10], one batch of 10: forward 2*10*30*784 + 2*10*10*30,
    # gradients the same, propagation 2*10*30*10 (second layer only)
    sizes = (784, 30, 10)
    per_batch = 2 * (10 * 30 * 784 + 10 * 10 * 30) * 2 + 2 * 10 * 30 * 10
    assert epoch_flops(sizes, 10, 10) == per_batch
    assert epoch_flops(sizes, 25, 10) == per_batch * 25 // 10
    assert len(batch_gemm_shapes((784, 1024, 1024, 10), 256)) == 3 * 3 - 1


def test_step_bytes():
    # [784, 30, 10], batch 10, float32: parameters 30*785 + 10*31, read twice
    # and written once; inputs and targets 10 * (784 + 10), read once
    parameters = 30 * 785 + 10 * 31
    assert step_bytes((784, 30, 10), 10, 4) == (3 * parameters * 4, 10 * 794 * 4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_roof_is_below_every_measured_time(dtype):
    # a tiny run: fastbp and the fast baseline can never beat the physical roof
    roof = measure_roof(dtype, gemm_size=1024, dram_bytes=32 * 2**20, repeats=2)
    for name, workload in WORKLOADS.items():
        n_samples = 1000
        X, Y = make_data(n_samples, dtype)
        compute, memory, roof_time = roof.bounds(workload, n_samples)
        assert 0 < compute <= roof_time and 0 < memory <= roof_time
        for implementation in ("fastbp", "numpy"):
            runner = make_runner(implementation, workload, X, Y)
            runner.run_epoch()
            started = time.perf_counter()
            runner.run_epoch()
            seconds = time.perf_counter() - started
            assert roof_time < seconds, (name, implementation, roof_time, seconds)


def test_peer_runner_in_a_subprocess():
    # the fast NumPy baseline is always available: time it in its own process
    result = run_peer("numpy", "nielsen", "float32", 200, 2, warmup=1, timeout=120)
    assert result["skipped"] is None and result["implementation"] == "numpy"
    assert len(result["times"]) == 2 and all(t > 0 for t in result["times"])
    assert result["median"] > 0 and np.isfinite(result["loss"])
    assert result["pid"] != os.getpid()
    skipped = run_peer("sklearn", "nielsen", "float32", 50, 1, timeout=120)
    assert skipped["times"] == [] and skipped["skipped"]
