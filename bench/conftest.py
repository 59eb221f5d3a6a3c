"""Session data and machine description for the pytest-benchmark suite.

``FASTBP_BENCH_SAMPLES`` (default 60000) sets the number of samples; the
data are made once per session and per dtype.
"""

from __future__ import annotations

import pytest

from .machine import machine_info
from .workloads import DTYPES, WORKLOADS, bench_samples, make_data

CASES = [(name, dtype) for name in WORKLOADS for dtype in DTYPES]


def pytest_report_header(config):
    info = machine_info()
    blas = "; ".join(info["blas_summary"]) or "unknown"
    return [
        f"fastbp bench: {bench_samples()} samples (FASTBP_BENCH_SAMPLES), "
        f"CPU {info['cpu']}, {info['cores']} cores",
        f"fastbp bench: BLAS {blas}",
    ] + [f"fastbp bench: WARNING {warning}" for warning in info["warnings"]]


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the BLAS libraries and versions beside pytest-benchmark's own machine info."""
    from .machine import machine_info as describe

    machine_info["fastbp_bench"] = describe()


@pytest.fixture(scope="session")
def n_samples():
    return bench_samples()


@pytest.fixture(scope="session")
def datasets(n_samples):
    """dtype -> (X, Y), made on first use and kept for the session."""
    cache = {}

    def get(dtype):
        if dtype not in cache:
            cache[dtype] = make_data(n_samples, dtype)
        return cache[dtype]

    return get


@pytest.fixture(params=CASES, ids=[f"{name}-{dtype}" for name, dtype in CASES])
def case(request, datasets):
    """(workload, X, Y) for one workload and dtype; the test id is 'workload-dtype'."""
    name, dtype = request.param
    X, Y = datasets(dtype)
    return WORKLOADS[name], X, Y
