"""fastbp.sklearn's estimators against scikit-learn's own, with identical parameters.

    python -m bench.report --estimators [--samples N] [--repeats R] [--dtypes ...]
    python -m bench.estimators compare [--samples N] [--repeats R] ...   # the same, alone
    python -m bench.estimators digits [--seeds 0 1 2] [--max-iter 300]
    python -m bench.estimators profile [--samples N] [--batch auto]      # fastbp only
    python -m bench.estimators run LIBRARY ESTIMATOR DTYPE --batch B ... # one process, JSON

What is timed
    ``fastbp.sklearn.MLPClassifier`` / ``MLPRegressor`` against
    ``sklearn.neural_network``'s of the same names, built with the same
    parameters (the defaults: hidden (100,), relu, adam 1e-3, alpha 1e-4,
    batch 'auto' = 200; or batch_size=32) and ``random_state=0``, on the
    suite's MNIST-shaped data (``workloads.make_data``: N x 784 uniform in
    [0, 1), seed 0; N = ``FASTBP_BENCH_SAMPLES`` or 60000). The classifier
    gets the 10 class labels; the regressor 10 targets, a fixed random
    linear map of X with unit variance per output plus Gaussian noise
    (``regression_targets``). Both libraries keep float32 data in float32.

    per epoch   ``fit`` with ``max_iter=k`` (default 3), ``tol=0`` and
                ``n_iter_no_change=inf``, so that it runs exactly k epochs
                (ConvergenceWarning ignored); seconds per epoch = the fit's
                time / k (the fit's setup, input validation included, is
                amortized over the k epochs), median over the repeats.
                Both must end with ``n_iter_ == k``.
    whole fit   ``fit`` at the defaults (``max_iter=200``, ``tol=1e-4``,
                ``n_iter_no_change=10``) on the same N samples; both must
                stop at the same ``n_iter_`` (same maths, same stopping
                rule), which is asserted, so that the ratio compares equal
                work. ``--fit-max-iter`` caps it (said in the output). The
                whole fits run with ``verbose=True`` (both libraries alike),
                whose "Iteration k, loss = ..." lines, captured, clock each
                epoch: a whole fit whose first epochs do not take what the
                per-epoch fits took, or with an epoch far over its
                neighbours, is flagged NOISY; epochs that get steadily
                slower or faster during the fit are described under the
                table (scikit-learn's do at batch 32: subnormal numbers).

Processes
    Every measurement runs in a fresh process of its own, ``python -m
    bench.estimators run ...`` (one untimed warm-up ``fit`` with
    ``max_iter=1`` first), which prints JSON. The repeats are split into
    blocks (``--blocks``); per block the two libraries' processes run one
    after the other, fastbp first in odd blocks and scikit-learn first in
    even ones. The whole fits run in the last block's processes.

Accuracy
    ``digits_accuracy``: ``load_digits``, X / 16, a stratified 75 / 25
    split by ``train_test_split(random_state=seed)``, both classifiers at
    their defaults with ``random_state=seed`` and ``max_iter=300``; the test
    accuracies and their difference in percentage points, per seed and dtype.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

from .formatting import format_table
from .extras import _blas_threads
from .peer import run_json_child
from .workloads import DTYPES, SEED, bench_samples, make_data

__all__ = [
    "Case",
    "CASES",
    "DEFAULT_CASES",
    "LIBRARIES",
    "estimator_class",
    "regression_targets",
    "make_estimator_data",
    "time_estimator",
    "run_estimator_peer",
    "run_estimators",
    "estimators_table",
    "digits_accuracy",
    "digits_table",
    "profile_fastbp",
    "main",
]

LIBRARIES = ("fastbp", "sklearn")
ESTIMATORS = ("MLPClassifier", "MLPRegressor")
NOISY = 0.25        # the report's: a row whose +- (half range / median) is larger is flagged
EPOCHS = 3          # epochs of each per-epoch fit
DEFAULT_MAX_ITER = 200  # scikit-learn's default max_iter: the whole fit's
REGRESSION_OUTPUTS = 10
REGRESSION_NOISE = 0.5
DIGITS_SEEDS = (0, 1, 2)
DIGITS_MAX_ITER = 300
DIGITS_TOLERANCE_PP = 1.0


@dataclass(frozen=True)
class Case:
    """An estimator at one batch size, and the issue's speed-up goal for it."""

    name: str
    estimator: str
    batch_size: object      # "auto" or an int
    goal: float

    @property
    def batch_label(self):
        return "auto (200)" if self.batch_size == "auto" else str(self.batch_size)


CASES = {
    case.name: case
    for case in (
        Case("classifier", "MLPClassifier", "auto", 3.0),
        Case("classifier-b32", "MLPClassifier", 32, 5.0),
        Case("regressor", "MLPRegressor", "auto", 3.0),
        Case("regressor-b32", "MLPRegressor", 32, 5.0),
    )
}
# the rows: the classifier at its defaults and at batch 32, the regressor's defaults
DEFAULT_CASES = ("classifier", "classifier-b32", "regressor")


def log(message):
    print(message, file=sys.stderr, flush=True)


def estimator_class(library, estimator):
    """fastbp.sklearn's or sklearn.neural_network's MLPClassifier / MLPRegressor."""
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if library == "fastbp":
        import fastbp.sklearn as module
    else:
        import sklearn.neural_network as module
    return getattr(module, estimator)


def regression_targets(X, n_outputs=REGRESSION_OUTPUTS, noise=REGRESSION_NOISE, seed=SEED + 1,
                       chunk=4096):
    """n_outputs regression targets for X (in [0, 1)): a linear map plus noise, X's dtype.

    y = sqrt(12) (X - 1/2) P + noise * e, P ~ N(0, 1/n_features) and e ~ N(0, 1)
    drawn from default_rng(seed): each output has variance about 1 + noise^2.
    Computed in float64 row block by row block, so that the float32 targets
    are the rounded float64 ones of the same data.
    """
    n_samples, n_features = X.shape
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((n_features, n_outputs)) * np.sqrt(12.0 / n_features)
    offset = 0.5 * P.sum(axis=0)
    T = np.empty((n_samples, n_outputs), dtype=X.dtype)
    for start in range(0, n_samples, chunk):
        rows = slice(start, min(start + chunk, n_samples))
        T[rows] = np.asarray(X[rows], dtype=np.float64) @ P - offset
    T += (noise * rng.standard_normal(T.shape)).astype(X.dtype)
    return T


def make_estimator_data(estimator, n_samples, dtype):
    """(X, y) of the suite's data for `estimator`: class labels, or regression targets."""
    X, Y = make_data(n_samples, dtype)
    if estimator == "MLPClassifier":
        return X, Y.argmax(axis=1)
    return X, regression_targets(X)


def _parameters(batch_size, max_iter, stop_early):
    """The same keyword arguments for both libraries: the defaults but these."""
    parameters = {"batch_size": batch_size, "max_iter": int(max_iter), "random_state": SEED}
    if not stop_early:
        parameters.update(tol=0.0, n_iter_no_change=np.inf)
    return parameters




class _EpochClock(io.TextIOBase):
    """stdout during a verbose fit: the time of each "Iteration k, loss = ..." line.

    Both libraries print that line after every epoch with verbose=True, so
    the differences of these times are the epochs' times (the first one
    also holds the fit's setup).
    """

    def __init__(self):
        super().__init__()
        self.stamps = []

    def writable(self):
        return True

    def write(self, text):
        if text.startswith("Iteration"):
            self.stamps.append(time.perf_counter())
        return len(text)


def _timed_fit(cls, parameters, X, y, clock_epochs=False):
    """(seconds, fitted model, seconds of each epoch or None) of one fit."""
    from sklearn.exceptions import ConvergenceWarning

    model = cls(**parameters, verbose=bool(clock_epochs))
    clock = _EpochClock()
    gc.collect()
    with warnings.catch_warnings(), contextlib.redirect_stdout(clock if clock_epochs
                                                               else sys.stdout):
        warnings.simplefilter("ignore", ConvergenceWarning)
        started = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - started
    epochs = None
    if clock_epochs:
        epochs = np.diff([started] + clock.stamps).tolist()
    return seconds, model, epochs


def time_estimator(library, estimator, dtype, batch_size, n_samples, epochs=EPOCHS, repeats=3,
                   fit_repeats=1, fit_max_iter=DEFAULT_MAX_ITER, warmup=1):
    """Time one library's estimator here; the dict `main run` prints as JSON.

    `warmup` untimed fits with max_iter=1, then `repeats` fits of exactly
    `epochs` epochs (their times and time / epochs), then `fit_repeats` whole
    fits at the default tol and n_iter_no_change with max_iter=fit_max_iter.
    """
    import sklearn

    import fastbp

    cls = estimator_class(library, estimator)
    X, y = make_estimator_data(estimator, n_samples, dtype)
    result = {"library": library, "estimator": estimator, "dtype": dtype,
              "batch_size": batch_size, "n_samples": n_samples, "epochs": epochs,
              "epoch_fit_times": [], "epoch_times": [], "epoch_n_iter": [], "loss_curve": None,
              "fit_max_iter": fit_max_iter, "fit_times": [], "fit_n_iter": [], "fit_loss": [],
              "fit_epoch_times": None,
              "version": (fastbp if library == "fastbp" else sklearn).__version__,
              "threads": None, "pid": os.getpid()}
    for _ in range(warmup):
        _timed_fit(cls, _parameters(batch_size, 1, stop_early=False), X, y)
    for _ in range(repeats):
        seconds, model, _ = _timed_fit(cls, _parameters(batch_size, epochs, stop_early=False),
                                       X, y)
        result["epoch_fit_times"].append(seconds)
        result["epoch_times"].append(seconds / epochs)
        result["epoch_n_iter"].append(int(model.n_iter_))
        result["loss_curve"] = [float(value) for value in model.loss_curve_]
    for _ in range(fit_repeats):
        seconds, model, epoch_seconds = _timed_fit(
            cls, _parameters(batch_size, fit_max_iter, stop_early=True), X, y, clock_epochs=True)
        result["fit_times"].append(seconds)
        result["fit_epoch_times"] = epoch_seconds
        result["fit_n_iter"].append(int(model.n_iter_))
        result["fit_loss"].append(float(model.loss_))
    result["threads"] = _blas_threads()
    return result


def run_estimator_peer(library, estimator, dtype, batch_size, n_samples, epochs, repeats,
                       fit_repeats, fit_max_iter, warmup=1, timeout=None, env=None):
    """``python -m bench.estimators run ...`` in a subprocess; its JSON as a dict."""
    command = [sys.executable, "-m", "bench.estimators", "run", library, estimator, dtype,
               "--batch", str(batch_size), "--samples", str(n_samples), "--epochs", str(epochs),
               "--repeats", str(repeats), "--fit-repeats", str(fit_repeats),
               "--fit-max-iter", str(fit_max_iter), "--warmup", str(warmup)]
    return run_json_child(command, timeout=timeout, env=env)


def _split(rounds, blocks):
    blocks = max(1, min(blocks, rounds)) if rounds else 1
    return [rounds // blocks + (1 if index < rounds % blocks else 0) for index in range(blocks)]


def _spread(values):
    """Half the min-max range relative to the median (the report's +-)."""
    if len(values) < 2:
        return 0.0
    return (max(values) - min(values)) / 2 / statistics.median(values)


def _relative_difference(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or not a.size:
        return None
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)))


def _goal_status(ratio, fit_ratio, goal):
    """met / NOT met / ? (whole fit not measured): both ratios must reach the goal."""
    if ratio < goal or (fit_ratio is not None and fit_ratio < goal):
        return False
    if fit_ratio is None:
        return None
    return True


def _row(case, dtype, n_samples, results, fit_max_iter):
    fastbp, sklearn = results["fastbp"], results["sklearn"]
    for name, result in results.items():
        bad = [n for n in result["epoch_n_iter"] if n != result["epochs"]]
        if bad:
            raise AssertionError(f"{name} {case.estimator} {dtype} batch {case.batch_size}: a "
                                 f"per-epoch fit ran {bad[0]} epochs, not {result['epochs']}")
    seconds = {name: statistics.median(result["epoch_times"]) for name, result in results.items()}
    row = {
        "case": case.name, "estimator": case.estimator, "batch_size": case.batch_size,
        "dtype": dtype, "n_samples": n_samples, "epochs": fastbp["epochs"], "goal": case.goal,
        "fastbp_epoch_times": fastbp["epoch_times"], "sklearn_epoch_times": sklearn["epoch_times"],
        "fastbp_seconds_per_epoch": seconds["fastbp"],
        "sklearn_seconds_per_epoch": seconds["sklearn"],
        "ratio": seconds["sklearn"] / seconds["fastbp"],
        "best_ratio": min(sklearn["epoch_times"]) / min(fastbp["epoch_times"]),
        "fastbp_spread": _spread(fastbp["epoch_times"]),
        "sklearn_spread": _spread(sklearn["epoch_times"]),
        "loss_curve_relative_difference": _relative_difference(fastbp["loss_curve"],
                                                               sklearn["loss_curve"]),
        "fit_max_iter": fit_max_iter,
        "fastbp_fit_times": fastbp["fit_times"], "sklearn_fit_times": sklearn["fit_times"],
        "fit_n_iter": None, "fastbp_fit_seconds": None, "sklearn_fit_seconds": None,
        "fit_ratio": None, "fit_stopped_by": None, "fit_loss_relative_difference": None,
        "versions": {name: result["version"] for name, result in results.items()},
        "threads": {name: result["threads"] for name, result in results.items()},
    }
    if fastbp["fit_times"] and sklearn["fit_times"]:
        iterations = set(fastbp["fit_n_iter"]) | set(sklearn["fit_n_iter"])
        if len(iterations) != 1:
            raise AssertionError(
                f"{case.estimator} {dtype} batch {case.batch_size}: the whole fits stopped at "
                f"different n_iter_ (fastbp {fastbp['fit_n_iter']}, scikit-learn "
                f"{sklearn['fit_n_iter']}): the same maths should stop at the same epoch, and "
                f"the whole-fit ratio would compare unequal work")
        n_iter = iterations.pop()
        row.update(
            fit_n_iter=n_iter,
            fastbp_fit_seconds=statistics.median(fastbp["fit_times"]),
            sklearn_fit_seconds=statistics.median(sklearn["fit_times"]),
            fit_stopped_by="max_iter" if n_iter >= fit_max_iter else "tol",
            fit_loss_relative_difference=_relative_difference(fastbp["fit_loss"][-1:],
                                                              sklearn["fit_loss"][-1:]),
            fastbp_fit_spread=_spread(fastbp["fit_times"]),
            sklearn_fit_spread=_spread(sklearn["fit_times"]),
            fastbp_fit_epoch_times=fastbp.get("fit_epoch_times"),
            sklearn_fit_epoch_times=sklearn.get("fit_epoch_times"))
        row["fit_ratio"] = row["sklearn_fit_seconds"] / row["fastbp_fit_seconds"]
    row["met"] = _goal_status(row["ratio"], row["fit_ratio"], case.goal)
    row["noise"] = _noise(row, seconds)
    return row


def _noise(row, seconds):
    """The row's noise: the largest +- of its fits, and the whole fits' epoch clocks.

    A single whole fit has no +-, and a busy spell lasting a whole block
    slows all its fits alike, so each whole fit's epochs (clocked through
    verbose=True) are checked too: its first `epochs` epochs are the same
    work as the per-epoch fits (same random_state and data) and must take
    as long within NOISY, and no epoch may take over 1 + 2 NOISY times the
    median of its neighbours (a spike). A steady trend, epochs getting
    slower or faster during the fit, is not noise: it is described under
    the table (`_trend`).
    """
    spreads = {"fastbp": row["fastbp_spread"], "sklearn": row["sklearn_spread"],
               "fastbp whole fit": row.get("fastbp_fit_spread", 0.0),
               "sklearn whole fit": row.get("sklearn_fit_spread", 0.0)}
    worst = max(spreads, key=spreads.get)
    reasons = [f"{worst} +-{spreads[worst]:.0%}"] if spreads[worst] > NOISY else []
    if row["fit_ratio"] is not None:
        k = row["epochs"]
        for library in LIBRARIES:
            clocked = row.get(f"{library}_fit_epoch_times")
            if not clocked or len(clocked) != row["fit_n_iter"]:
                per_epoch = row[f"{library}_fit_seconds"] / row["fit_n_iter"]
                if not 1 / (1 + NOISY) <= per_epoch / seconds[library] <= 1 + NOISY:
                    reasons.append(f"{library} whole fit {per_epoch:.3g} s/epoch vs "
                                   f"{seconds[library]:.3g}")
                continue
            first = sum(clocked[:k]) / min(k, len(clocked))
            if len(clocked) >= k and not 1 / (1 + NOISY) <= first / seconds[library] <= 1 + NOISY:
                reasons.append(f"{library} whole fit's first {k} epochs {first:.3g} s/epoch vs "
                               f"{seconds[library]:.3g}")
            spikes = [index for index in range(1, len(clocked)) if clocked[index] > (
                1 + 2 * NOISY) * statistics.median(clocked[max(1, index - 2):index + 3])]
            if spikes:
                reasons.append(f"{library} whole fit: {len(spikes)} epoch(s) over "
                               f"{1 + 2 * NOISY:g}x their neighbours")
    return {"worst": worst, "spread": spreads[worst], "noisy": bool(reasons),
            "reasons": reasons}


def _trend(row):
    """'sklearn 1.3 -> 14.6 s/epoch' for each library whose whole-fit epochs drift, or None."""
    k = row["epochs"]
    parts = []
    for library in LIBRARIES:
        clocked = row.get(f"{library}_fit_epoch_times")
        if not clocked or len(clocked) < 2 * k + 1:
            continue
        first = statistics.median(clocked[1:k + 1])     # the first epoch holds the setup
        last = statistics.median(clocked[-k:])
        if not 1 / (1 + NOISY) <= last / first <= 1 + NOISY:
            parts.append(f"{library}'s epochs went from {first:.3g} s (epochs 2-{k + 1}) to "
                         f"{last:.3g} s (the last {k}), {last / first:.1f}x")
    return "; ".join(parts) or None


def _blas_env(blas_threads):
    """The child processes' environment: BLAS (both OpenBLAS copies) at `blas_threads`."""
    if blas_threads is None:
        return None
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        env[name] = str(int(blas_threads))
    return env


def run_estimators(dtypes, n_samples, case_names=DEFAULT_CASES, epochs=EPOCHS, repeats=3,
                   blocks=2, fit_repeats=1, fit_max_iter=DEFAULT_MAX_ITER, log=log,
                   runner=run_estimator_peer, blas_threads=None):
    """Time every case and dtype, each library in processes of its own; (result, text).

    blas_threads: None leaves the processes' BLAS thread count as it is;
    a number sets OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) in both
    libraries' processes alike.
    """
    env = _blas_env(blas_threads)
    rows = []
    for dtype in dtypes:
        for name in case_names:
            case = CASES[name]
            plan = _split(repeats, blocks)
            log(f"estimators: {case.estimator} batch {case.batch_size} {dtype}, {n_samples} "
                f"samples: {repeats} fits of {epochs} epochs in blocks {plan}, then "
                f"{fit_repeats} whole fit(s) (max_iter={fit_max_iter}), each library in its "
                f"own processes")
            merged = {library: None for library in LIBRARIES}
            for index, block_repeats in enumerate(plan):
                last = index == len(plan) - 1
                order = LIBRARIES if index % 2 == 0 else LIBRARIES[::-1]
                for library in order:
                    result = runner(library, case.estimator, dtype, case.batch_size, n_samples,
                                    epochs, block_repeats, fit_repeats if last else 0,
                                    fit_max_iter, env=env)
                    log(f"  block {index + 1} {library} (pid {result.get('pid')}): "
                        + ", ".join(f"{t:.4f}" for t in result["epoch_times"]) + " s/epoch"
                        + (f"; whole fit " + ", ".join(f"{t:.2f} s" for t in result["fit_times"])
                           + f" ({result['fit_n_iter']} epochs)" if result["fit_times"] else ""))
                    if merged[library] is None:
                        merged[library] = result
                    else:
                        kept = merged[library]
                        for key in ("epoch_fit_times", "epoch_times", "epoch_n_iter",
                                    "fit_times", "fit_n_iter", "fit_loss"):
                            kept[key] = kept[key] + result[key]
                        kept["loss_curve"] = result["loss_curve"] or kept["loss_curve"]
                        kept["fit_epoch_times"] = (result.get("fit_epoch_times")
                                                   or kept.get("fit_epoch_times"))
            rows.append(_row(case, dtype, n_samples, merged, fit_max_iter))
    result = {"n_samples": n_samples, "epochs": epochs, "repeats": repeats, "blocks": blocks,
              "fit_repeats": fit_repeats, "fit_max_iter": fit_max_iter,
              "blas_threads": blas_threads, "rows": rows}
    return result, estimators_table(result)


def _status(met):
    return {True: "met", False: "NOT met", None: "?"}[met]


def estimators_table(result):
    """The section's text: the table and what its columns mean."""
    headers = ["estimator", "dtype", "batch", "fastbp s/epoch", "sklearn s/epoch", "ratio",
               "best ratio", "whole fit epochs", "fastbp fit s", "sklearn fit s",
               "whole-fit ratio", "same loss", "goal", "met?", "noise"]
    body = []
    for row in result["rows"]:
        fitted = row["fit_ratio"] is not None
        noise = row["noise"]
        losses = [d for d in (row["loss_curve_relative_difference"],
                              row["fit_loss_relative_difference"]) if d is not None]
        body.append([
            row["estimator"], row["dtype"], CASES[row["case"]].batch_label,
            f"{row['fastbp_seconds_per_epoch']:.4f}", f"{row['sklearn_seconds_per_epoch']:.4f}",
            f"{row['ratio']:.2f}x", f"{row['best_ratio']:.2f}x",
            f"{row['fit_n_iter']} ({row['fit_stopped_by']})" if fitted else "-",
            f"{row['fastbp_fit_seconds']:.2f}" if fitted else "-",
            f"{row['sklearn_fit_seconds']:.2f}" if fitted else "-",
            f"{row['fit_ratio']:.2f}x" if fitted else "not measured",
            f"{max(losses):.0e}" if losses else "-",
            f">= {row['goal']:g}x", _status(row["met"]),
            ("NOISY: " + "; ".join(noise["reasons"]) if noise["noisy"]
             else f"max +-{noise['spread']:.0%}"),
        ])
    n, k = result["n_samples"], result["epochs"]
    cap = result["fit_max_iter"]
    threads = sorted({f"{library} {row['threads'][library]}" for row in result["rows"]
                      for library in LIBRARIES})
    setting = result.get("blas_threads")
    threads_text = (f"BLAS threads in the processes (threadpoolctl): {', '.join(threads)}"
                    + (" (as they are)." if setting is None
                       else f" (OPENBLAS_NUM_THREADS={setting} for both)."))
    lines = [
        f"## fastbp.sklearn against scikit-learn ({n} samples x 784, same parameters and "
        f"random_state=0, each library in its own processes)", "",
        format_table(headers, body, right=range(3, 12)), "",
        f"s/epoch: a fit of exactly {k} epochs (max_iter={k}, tol=0, n_iter_no_change=inf) / "
        f"{k}, its setup and input validation included; median of {result['repeats']} fits "
        f"after 1 warm-up fit, in {len(_split(result['repeats'], result['blocks']))} block(s) "
        f"alternating the two libraries' processes. ratio = sklearn / fastbp (medians); best "
        f"ratio = sklearn's fastest fit / fastbp's fastest. Whole fit: the "
        f"defaults (tol=1e-4, n_iter_no_change=10, verbose=True to clock the epochs, "
        f"max_iter={cap}"
        + (")" if cap == DEFAULT_MAX_ITER else f", capped from the default {DEFAULT_MAX_ITER})")
        + f" on the same {n} samples, median of {result['fit_repeats']}; both libraries "
        "stopped at the epoch shown (checked), '(tol)' by the stopping rule, '(max_iter)' at "
        "the cap. The data: random class labels, or 10 regression targets (a random linear "
        "map of X plus noise), so the tol rule stops the fits within a few tens of epochs. "
        "same loss: the largest relative difference between the two libraries' loss curves "
        "(per-epoch fits) and final losses (whole fits). met?: both ratios reach the goal "
        f"('?' when the whole fit was not measured). NOISY: some library's +- above "
        f"{NOISY:.0%}; or a whole fit's first {k} epochs (the per-epoch fits' work) off that "
        f"library's s/epoch by more than {NOISY:.0%}, or an epoch of it over "
        f"{1 + 2 * NOISY:g}x its neighbours (the whole fits run with verbose=True, whose "
        "lines clock each epoch): a busy spell hit some fits and the row's ratios are not "
        "reliable (compare the best ratio). " + threads_text,
    ]
    trends = [(row, _trend(row)) for row in result["rows"]]
    trends = [(row, text) for row, text in trends if text]
    if trends:
        lines += ["", "Whole fits whose epochs changed speed during the fit (clocked through "
                  "verbose=True; a steady trend, not noise, so the whole-fit ratio differs "
                  "from the per-epoch one):", ""]
        lines += [f"- {row['estimator']} {row['dtype']} batch {CASES[row['case']].batch_label}: "
                  f"{text}" for row, text in trends]
    return "\n".join(lines)


# ------------------------------------------------------------------------- accuracy


def digits_accuracy(seeds=DIGITS_SEEDS, max_iter=DIGITS_MAX_ITER, dtypes=("float64",), log=log):
    """Test accuracy of both MLPClassifiers on load_digits, per seed and dtype; (result, text)."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    rows = []
    for dtype in dtypes:
        X = (digits.data / 16.0).astype(dtype)
        for seed in seeds:
            X_train, X_test, y_train, y_test = train_test_split(
                X, digits.target, test_size=0.25, stratify=digits.target, random_state=seed)
            row = {"dtype": dtype, "seed": int(seed), "max_iter": int(max_iter),
                   "n_train": int(X_train.shape[0]), "n_test": int(X_test.shape[0])}
            for library in LIBRARIES:
                model = estimator_class(library, "MLPClassifier")(max_iter=max_iter,
                                                                  random_state=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    started = time.perf_counter()
                    model.fit(X_train, y_train)
                    row[f"{library}_seconds"] = time.perf_counter() - started
                row[f"{library}_accuracy"] = float(model.score(X_test, y_test))
                row[f"{library}_n_iter"] = int(model.n_iter_)
            row["difference_pp"] = 100 * (row["fastbp_accuracy"] - row["sklearn_accuracy"])
            log(f"digits {dtype} seed {seed}: fastbp {row['fastbp_accuracy']:.4f} "
                f"({row['fastbp_n_iter']} epochs), sklearn {row['sklearn_accuracy']:.4f} "
                f"({row['sklearn_n_iter']} epochs)")
            rows.append(row)
    worst = max(abs(row["difference_pp"]) for row in rows)
    result = {"seeds": list(seeds), "max_iter": max_iter, "dtypes": list(dtypes), "rows": rows,
              "max_abs_difference_pp": worst, "within_tolerance": worst <= DIGITS_TOLERANCE_PP,
              "tolerance_pp": DIGITS_TOLERANCE_PP}
    return result, digits_table(result)


def digits_table(result):
    headers = ["dtype", "seed", "fastbp accuracy", "sklearn accuracy", "difference (pp)",
               "fastbp n_iter_", "sklearn n_iter_", "fastbp fit s", "sklearn fit s"]
    body = [[row["dtype"], row["seed"], f"{row['fastbp_accuracy']:.2%}",
             f"{row['sklearn_accuracy']:.2%}", f"{row['difference_pp']:+.2f}",
             row["fastbp_n_iter"], row["sklearn_n_iter"], f"{row['fastbp_seconds']:.2f}",
             f"{row['sklearn_seconds']:.2f}"] for row in result["rows"]]
    rows = result["rows"]
    first = rows[0]
    means = {library: statistics.mean(row[f"{library}_accuracy"] for row in rows)
             for library in LIBRARIES}
    verdict = "yes" if result["within_tolerance"] else "NO"
    return "\n".join([
        f"## Accuracy on the digits (load_digits, X / 16, stratified split "
        f"{first['n_train']} / {first['n_test']}, defaults with max_iter={result['max_iter']})",
        "", format_table(headers, body, right=range(2, 9)), "",
        f"Mean test accuracy: fastbp {means['fastbp']:.2%}, scikit-learn {means['sklearn']:.2%}; "
        f"largest |difference| {result['max_abs_difference_pp']:.2f} pp; within "
        f"{result['tolerance_pp']:g} pp on every seed: {verdict}. Each seed is both the split's "
        "and the estimators' random_state; fit s is one fit, in this process (not a timing "
        "claim)."])


# -------------------------------------------------------------------------- profile


def profile_fastbp(n_samples, dtype="float64", batch_size="auto", epochs=EPOCHS, repeats=3,
                   log=log):
    """Where fastbp.sklearn's epoch goes, in this process; (result, text).

    Times, interleaved, median of `repeats`: (a) the estimator's fit of
    `epochs` epochs / epochs; (b) its fit of 1 epoch (setup + 1 epoch); (c)
    fastbp's own Trainer.fit(epochs=1) on the same layers, batch and adam
    (the suite's sklearn-default runner, shuffled); (d) the epoch kernel
    alone (``Trainer._run_epoch`` over a fixed permutation, what the
    estimator calls per epoch); and the estimator's input checks
    (``validate_data``) alone. Then one cProfile of a fit of `epochs` epochs.
    """
    from dataclasses import replace

    from sklearn.exceptions import ConvergenceWarning

    from fastbp.sklearn import MLPClassifier

    from .runners import FastbpRunner
    from .workloads import WORKLOADS

    X, Y = make_data(n_samples, dtype)
    y = Y.argmax(axis=1)
    b = 200 if batch_size == "auto" else int(batch_size)
    workload = replace(WORKLOADS["sklearn-default"], batch_size=b, l2=1e-4 / b)
    raw = FastbpRunner(workload, X, Y)
    fitted = MLPClassifier(batch_size=batch_size, max_iter=1, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted.fit(X, y)
    trainer = fitted._trainer(fitted._network, "cross_entropy", min(b, n_samples))
    trainer._optimizer = fitted._optimizer
    Y_float = np.ascontiguousarray(fitted._label_binarizer.transform(y), dtype=X.dtype)
    order = np.random.default_rng(SEED).permutation(n_samples).astype(np.intp)

    def estimator_fit(k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            MLPClassifier(batch_size=batch_size, max_iter=k, tol=0.0, n_iter_no_change=np.inf,
                          random_state=SEED).fit(X, y)

    def kernel_epoch():
        trainer._run_epoch(X, Y_float, order, min(b, n_samples), 1e-3, "an epoch")

    def checks():
        from sklearn.utils.validation import validate_data

        validate_data(MLPClassifier(), X, y, accept_sparse=["csr", "csc"], multi_output=True,
                      dtype=(np.float64, np.float32), reset=True)

    parts = {
        f"estimator fit({epochs} epochs) / {epochs}": (lambda: estimator_fit(epochs), epochs),
        "estimator fit(1 epoch)": (lambda: estimator_fit(1), 1),
        "Trainer.fit(epochs=1)": (raw.run_epoch, 1),
        "kernel epoch (Trainer._run_epoch)": (kernel_epoch, 1),
        "validate_data(X, y)": (checks, 1),
    }
    for function, _ in parts.values():        # warm-up
        function()
    times = {name: [] for name in parts}
    for _ in range(repeats):
        for name, (function, divisor) in parts.items():
            gc.collect()
            started = time.perf_counter()
            function()
            times[name].append((time.perf_counter() - started) / divisor)
    seconds = {name: statistics.median(values) for name, values in times.items()}
    log("profile: " + ", ".join(f"{name} {value:.4f} s" for name, value in seconds.items()))

    profiler = cProfile.Profile()
    profiler.enable()
    estimator_fit(epochs)
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(12)
    total = stats.total_tt
    # the Cython kernel is invisible to cProfile: Trainer._run_epoch's cumulative time is the
    # kernel call with its few lines of bookkeeping (optimizer rule, counters, finite check)
    kernel = sum(stat[3] for key, stat in stats.stats.items() if key[2] == "_run_epoch")

    per_epoch = seconds[f"estimator fit({epochs} epochs) / {epochs}"]
    kernel_epoch_s = seconds["kernel epoch (Trainer._run_epoch)"]
    trainer_epoch = seconds["Trainer.fit(epochs=1)"]
    setup = seconds["estimator fit(1 epoch)"] - kernel_epoch_s
    body = [[name, f"{value:.4f}", f"{value / kernel_epoch_s:.2f}"]
            for name, value in seconds.items()]
    text = "\n".join([
        f"## Where fastbp.sklearn's epoch goes (MLPClassifier, batch {batch_size}, {dtype}, "
        f"{n_samples} samples; median of {repeats}, interleaved, this process)", "",
        format_table(["what", "seconds", "/ kernel epoch"], body), "",
        f"Estimator per epoch over the kernel epoch: {per_epoch / kernel_epoch_s:.3f}; over "
        f"Trainer.fit(epochs=1): {per_epoch / trainer_epoch:.3f}. A fit's one-off setup "
        f"(checks, labels, initial weights, optimizer), fit(1 epoch) - kernel epoch: "
        f"{setup:.4f} s. cProfile of one fit({epochs} epochs): {total:.3f} s, of which "
        f"Trainer._run_epoch (the kernel call) {kernel:.3f} s ({kernel / total:.1%}).", "",
        "```", stream.getvalue().strip(), "```"])
    result = {"n_samples": n_samples, "dtype": dtype, "batch_size": batch_size,
              "epochs": epochs, "repeats": repeats, "times": times, "seconds": seconds,
              "setup_seconds": setup, "cprofile_total": total, "cprofile_kernel": kernel}
    return result, text


# ---------------------------------------------------------------------------- CLI


def _batch(value):
    return value if value == "auto" else int(value)


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m bench.estimators",
        description="fastbp.sklearn's estimators against scikit-learn's, same parameters.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="time one library's estimator here; print JSON")
    run.add_argument("library", choices=LIBRARIES)
    run.add_argument("estimator", choices=ESTIMATORS)
    run.add_argument("dtype", choices=DTYPES)
    run.add_argument("--batch", type=_batch, default="auto")
    run.add_argument("--samples", type=int, default=None)
    run.add_argument("--epochs", type=int, default=EPOCHS)
    run.add_argument("--repeats", type=int, default=3)
    run.add_argument("--fit-repeats", type=int, default=1)
    run.add_argument("--fit-max-iter", type=int, default=DEFAULT_MAX_ITER)
    run.add_argument("--warmup", type=int, default=1)
    compare = commands.add_parser("compare", help="the report's section alone")
    compare.add_argument("--samples", type=int, default=None,
                         help="default: FASTBP_BENCH_SAMPLES or 60000")
    compare.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    compare.add_argument("--cases", nargs="+", choices=list(CASES), default=list(DEFAULT_CASES))
    compare.add_argument("--epochs", type=int, default=EPOCHS)
    compare.add_argument("--repeats", type=int, default=3)
    compare.add_argument("--blocks", type=int, default=2)
    compare.add_argument("--fit-repeats", type=int, default=1)
    compare.add_argument("--fit-max-iter", type=int, default=DEFAULT_MAX_ITER)
    compare.add_argument("--blas-threads", type=int, default=None,
                         help="OPENBLAS_NUM_THREADS of both libraries' processes (default: "
                              "as they are)")
    compare.add_argument("--no-digits", action="store_true")
    compare.add_argument("--json", metavar="PATH", default=None)
    digits = commands.add_parser("digits", help="accuracy on load_digits")
    digits.add_argument("--seeds", type=int, nargs="+", default=list(DIGITS_SEEDS))
    digits.add_argument("--max-iter", type=int, default=DIGITS_MAX_ITER)
    digits.add_argument("--dtypes", nargs="+", choices=DTYPES, default=["float64"])
    profile = commands.add_parser("profile", help="where fastbp.sklearn's epoch goes")
    profile.add_argument("--samples", type=int, default=None)
    profile.add_argument("--dtype", choices=DTYPES, default="float64")
    profile.add_argument("--batch", type=_batch, default="auto")
    profile.add_argument("--epochs", type=int, default=EPOCHS)
    profile.add_argument("--repeats", type=int, default=3)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.command == "run":
        n_samples = args.samples if args.samples is not None else bench_samples()
        result = time_estimator(args.library, args.estimator, args.dtype, args.batch, n_samples,
                                args.epochs, args.repeats, args.fit_repeats, args.fit_max_iter,
                                args.warmup)
        print(json.dumps(result), flush=True)
        return 0
    if args.command == "digits":
        _, text = digits_accuracy(args.seeds, args.max_iter, args.dtypes)
        print(text, flush=True)
        return 0
    if args.command == "profile":
        n_samples = args.samples if args.samples is not None else bench_samples()
        _, text = profile_fastbp(n_samples, args.dtype, args.batch, args.epochs, args.repeats)
        print(text, flush=True)
        return 0
    from .machine import format_header, machine_info

    n_samples = args.samples if args.samples is not None else bench_samples()
    output = format_header(machine_info())
    result, text = run_estimators(args.dtypes, n_samples, args.cases, args.epochs, args.repeats,
                                  args.blocks, args.fit_repeats, args.fit_max_iter,
                                  blas_threads=args.blas_threads)
    output += ["", text]
    payload = {"estimators": result}
    if not args.no_digits:
        accuracy, accuracy_text = digits_accuracy(dtypes=args.dtypes)
        output += ["", accuracy_text]
        payload["digits"] = accuracy
    print("\n".join(output), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, indent=1, default=float)
            stream.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
