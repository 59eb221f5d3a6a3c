"""Old build against new: fastbp epoch times under two interpreters, alternated.

Each interpreter (a virtual environment with one build of fastbp installed)
runs the same cases in its own process, A B A B ..., so that a slow spell of
the machine hits both; the table gives each case's median per run and the
ratio B/A of each pair. Run from the repository root (it imports bench/):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python tools/epoch_ab.py OLD/bin/python NEW/bin/python --pairs 3

Cases: the three bench workloads (nielsen, medium, large; large on a
quarter of the samples) in both dtypes, Adam at scikit-learn's default
shape, RMSprop and Nesterov momentum on the nielsen network, and
`Trainer.step` on one batch of 10 rows (plain SGD and Adam).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(samples, repeats):
    """Median seconds of each case in this process, as a dict."""
    sys.path.insert(0, ROOT)
    import numpy as np

    from bench.runners import FastbpRunner
    from bench.workloads import WORKLOADS, make_data
    from fastbp import Network, Trainer

    def median_of(function, count):
        function()                                  # warm-up
        times = []
        for _ in range(count):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        return float(np.median(times))

    out = {}
    for name in ("nielsen", "medium", "large"):
        for dtype in ("float32", "float64"):
            n = samples if name != "large" else samples // 4
            X, Y = make_data(n, dtype)
            runner = FastbpRunner(WORKLOADS[name], X, Y)
            out[f"{name}/{dtype}"] = median_of(runner.run_epoch,
                                               repeats if name != "large" else 3)
    rules = (
        ("adam-sklearn-shape", [784, 100, 10], "relu", "softmax", "cross_entropy", 200,
         dict(optimizer="adam", learning_rate=1e-3, l2=1e-4 / 200)),
        ("rmsprop-nielsen", [784, 30, 10], "sigmoid", "sigmoid", "mse", 10,
         dict(optimizer="rmsprop", learning_rate=1e-3)),
        ("nesterov-nielsen", [784, 30, 10], "sigmoid", "sigmoid", "mse", 10,
         dict(momentum=0.9, nesterov=True, learning_rate=0.1)),
    )
    for label, sizes, activation, output, loss, batch, options in rules:
        for dtype in ("float32", "float64"):
            X, Y = make_data(samples, dtype)
            net = Network(sizes, activation=activation, output=output, dtype=dtype, seed=0)
            trainer = Trainer(net, loss=loss, batch_size=batch, seed=0, **options)
            out[f"{label}/{dtype}"] = median_of(lambda: trainer.fit(X, Y, epochs=1), repeats)
    X, Y = make_data(10, "float64")
    for label, options in (("step-sgd", {}), ("step-adam", dict(optimizer="adam"))):
        trainer = Trainer(Network([784, 30, 10], seed=0), learning_rate=1e-3, seed=0, **options)

        def steps():
            for _ in range(200):
                trainer.step(X, Y)
        out[f"{label}/float64 (per step)"] = median_of(steps, repeats) / 200
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pythons", nargs="*", metavar="PYTHON",
                        help="two interpreters: A (old) and B (new)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.samples, args.repeats)))
        return 0
    if len(args.pythons) != 2:
        parser.error("give two interpreters, A (old) and B (new)")
    runs = {python: [] for python in args.pythons}
    for _ in range(args.pairs):
        for python in args.pythons:
            done = subprocess.run(
                [python, os.path.abspath(__file__), "--measure", "--samples",
                 str(args.samples), "--repeats", str(args.repeats)],
                capture_output=True, text=True, check=True, cwd="/")
            runs[python].append(json.loads(done.stdout))
    old, new = (runs[python] for python in args.pythons)
    print(f"{'case':32s} {'A ms, per run':>24s} {'B ms, per run':>24s} "
          f"{'B/A per pair':>20s} {'median':>7s}")
    for case in old[0]:
        a = [run[case] * 1e3 for run in old]
        b = [run[case] * 1e3 for run in new]
        ratios = [y / x for x, y in zip(a, b)]
        print(f"{case:32s} {' '.join(f'{x:7.3g}' for x in a):>24s} "
              f"{' '.join(f'{x:7.3g}' for x in b):>24s} "
              f"{' '.join(f'{r:.3f}' for r in ratios):>20s} {statistics.median(ratios):7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
