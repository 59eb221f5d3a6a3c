"""The cost of fit(grad_norms=True): epochs with it off and on, alternated in one process.

Run from the repository root (it imports bench/), with BLAS on one thread
for steadier numbers:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python tools/grad_norms_ab.py [n_samples] [repeats]

Prints the median epoch milliseconds off and on and the median of the
per-pair ratios on/off, per case (one per update mode) and dtype.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.workloads import make_data  # noqa: E402
from fastbp import Network, Trainer  # noqa: E402

CASES = [
    ("nielsen sgd b10", [784, 30, 10], "sigmoid", "sigmoid", "mse", 10, {}),
    ("medium sgd b64", [784, 128, 64, 10], "sigmoid", "softmax", "cross_entropy", 64, {}),
    ("nielsen sgd-l2 b10", [784, 30, 10], "sigmoid", "sigmoid", "mse", 10, dict(l2=1e-5)),
    ("nielsen momentum b10", [784, 30, 10], "sigmoid", "sigmoid", "mse", 10,
     dict(momentum=0.9)),
    ("nielsen nesterov b10", [784, 30, 10], "sigmoid", "sigmoid", "mse", 10,
     dict(momentum=0.9, nesterov=True)),
    ("sklearn adam b200", [784, 100, 10], "relu", "softmax", "cross_entropy", 200,
     dict(optimizer="adam", learning_rate=1e-3, l2=1e-4 / 200)),
]

def main():
    """Print the table."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    print(f"{'case':24s} {'dtype':8s} {'off ms':>8s} {'on ms':>8s} {'on/off':>7s}")
    for label, sizes, act, out, loss, batch, opts in CASES:
        for dtype in ("float32", "float64"):
            X, Y = make_data(n, dtype)
            times = {False: [], True: []}
            settings = {"learning_rate": 0.1, **opts}
            trainers = {flag: Trainer(Network(sizes, activation=act, output=out, dtype=dtype,
                                              seed=0), loss=loss, batch_size=batch, seed=0,
                                      **settings)
                        for flag in (False, True)}
            for flag in (False, True):
                trainers[flag].fit(X, Y, epochs=1, grad_norms=flag)
            for _ in range(reps):
                for flag in (False, True):
                    t0 = time.perf_counter(); trainers[flag].fit(X, Y, epochs=1, grad_norms=flag)
                    times[flag].append(time.perf_counter() - t0)
            off, on = statistics.median(times[False]) * 1e3, statistics.median(times[True]) * 1e3
            ratios = [b / a for a, b in zip(times[False], times[True])]
            print(f"{label:24s} {dtype:8s} {off:8.1f} {on:8.1f} {statistics.median(ratios):7.3f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
