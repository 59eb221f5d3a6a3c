"""One epoch of each workload, per implementation (pytest-benchmark).

Each test is parametrized by ``case`` = 'workload-dtype' only, and the
implementations are separate test functions, so

    pytest bench --benchmark-group-by=param

puts fastbp, the fast NumPy baseline, the oracle, the peers and the GEMM-only
runner of one workload and dtype in one table. These run in one process
(the report runs each peer in its own; see bench/peer.py). Every round is
one full epoch (construction is not timed); ``FASTBP_BENCH_ROUNDS``
(default 3) sets the rounds after one warm-up. With ``--benchmark-disable``
each body runs exactly once (the CI smoke run). A peer that is not
installed, or whose maths does not match the workload, is skipped.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from .runners import make_runner, unavailable

ROUNDS = int(os.environ.get("FASTBP_BENCH_ROUNDS", "3"))


def _time_epochs(benchmark, implementation, case):
    workload, X, Y = case
    reason = unavailable(implementation, workload)
    if reason is not None:
        pytest.skip(reason)
    runner = make_runner(implementation, workload, X, Y)
    benchmark.extra_info.update(workload=str(workload), dtype=X.dtype.name,
                                n_samples=X.shape[0], implementation=implementation)
    loss = benchmark.pedantic(runner.run_epoch, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    weights, biases = runner.parameters()
    assert all(np.isfinite(array).all() for array in list(weights) + list(biases))
    return loss


def test_fastbp(benchmark, case):
    assert math.isfinite(_time_epochs(benchmark, "fastbp", case))


def test_numpy(benchmark, case):
    assert math.isfinite(_time_epochs(benchmark, "numpy", case))


def test_oracle(benchmark, case):
    assert math.isfinite(_time_epochs(benchmark, "oracle", case))


def test_torch(benchmark, case):
    assert math.isfinite(_time_epochs(benchmark, "torch", case))


def test_jax(benchmark, case):
    assert math.isfinite(_time_epochs(benchmark, "jax", case))


def test_sklearn(benchmark, case):
    assert math.isfinite(_time_epochs(benchmark, "sklearn", case))


def test_roof(benchmark, case):
    _time_epochs(benchmark, "roof", case)
