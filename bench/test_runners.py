"""The benchmark runners do the same work: checked on small data (no timing)."""

from __future__ import annotations

import numpy as np
import pytest

from .runners import RoofRunner, make_runner, torch_available
from .workloads import WORKLOADS, batch_gemm_shapes, epoch_flops, make_data

RTOL = {"float64": 1e-9, "float32": 2e-4}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_same_epoch_as_baseline(name, dtype):
    # 300 samples leave a short last batch for every workload's batch size
    workload = WORKLOADS[name]
    X, Y = make_data(300 if workload.batch_size < 256 else 600, dtype)
    implementations = ["fastbp", "baseline"] + (["torch"] if torch_available() else [])
    runners = {name: make_runner(name, workload, X, Y, shuffle=False)
               for name in implementations}
    losses = {name: runner.run_epoch() for name, runner in runners.items()}
    reference_weights, reference_biases = runners["baseline"].parameters()
    for name, runner in runners.items():
        assert losses[name] == pytest.approx(losses["baseline"], rel=RTOL[dtype]), name
        weights, biases = runner.parameters()
        for got, expected in zip(list(weights) + list(biases),
                                 list(reference_weights) + list(reference_biases)):
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
