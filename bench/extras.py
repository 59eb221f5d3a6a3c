"""Two extra sections of the report: optimizer updates, and two trainers in two threads.

Run through ``python -m bench.report --optimizers`` and ``--threads``.

Optimizer updates
    One epoch of every update rule (``RULES``) on the nielsen and medium
    workloads, fastbp (``Trainer.fit(X, Y, epochs=1)``) and the NumPy
    baseline (``baseline.train_epoch(..., state=...)``) interleaved in one
    process, each runner continuing its own training between rounds. The
    cost of a rule's update per step is (epoch with the rule - epoch with
    plain SGD) / updates per epoch, for each implementation, from the
    medians of the same run. fastbp's plain-SGD update is the weight-gradient
    GEMM itself (it accumulates into W, beta = 1), so for fastbp this
    difference is the rule's whole update. The baseline's plain SGD has an
    update of its own (``W += -eta g`` per parameter), so the report also
    times the baseline's epoch without any update (``gradients only``): its
    full update of a rule costs (epoch with the rule - gradients only) per
    step, and that is what "fused update cheaper" compares fastbp with.
    Plain SGD's epoch is checked against the recorded epoch table
    (bench/results/latest.json) for a slowdown.

Two trainers in two threads
    fastbp releases the GIL for the whole epoch kernel. For each workload
    and dtype, ``fit(epochs=1)`` of one trainer alone in a Python thread is
    timed against two trainers (two networks, each its own copy of the
    data) in two threads started together, interleaved, once with BLAS
    threads as they are and once under ``threadpoolctl.threadpool_limits(1)``.
    All trainers are the same (same seeds, same data, same epochs), so both
    threads must end with the weights of the trainer run alone, bit for bit
    with one BLAS thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass

import numpy as np

from fastbp import Trainer, baseline

from .formatting import format_table
from .runners import FastbpRunner, _initial_network
from .timing import measure, median
from .workloads import SEED, WORKLOADS, make_data

__all__ = [
    "DEFAULT_SAMPLES",
    "Rule",
    "RULES",
    "OPTIMIZER_WORKLOADS",
    "FastbpRuleRunner",
    "BaselineRuleRunner",
    "BaselineGradientsRunner",
    "ThreadedFits",
    "run_optimizers",
    "run_threads",
]

# n_samples of both sections unless --samples or FASTBP_BENCH_SAMPLES says
# otherwise: each section then takes 2-3 minutes on a 2-core machine
DEFAULT_SAMPLES = 10000

# A slowdown of plain SGD is flagged beyond this fraction of the recorded
# epoch, in time per sample and in speed-up over the baseline alike
SLOWDOWN_TOLERANCE = 0.10


@dataclass(frozen=True)
class Rule:
    """An update rule and the hyperparameters both implementations get."""

    name: str
    optimizer: str
    learning_rate: float
    momentum: float = 0.0
    nesterov: bool = False

    def options(self):
        """Keyword arguments of both Trainer and baseline.train_epoch."""
        return {"optimizer": self.optimizer, "learning_rate": self.learning_rate,
                "momentum": self.momentum, "nesterov": self.nesterov}


# Momentum's learning rate 0.01 makes its long-run step eta / (1 - mu) = 0.1,
# plain SGD's; the adaptive rules take steps of about eta per parameter.
RULES = {
    rule.name: rule
    for rule in (
        Rule("sgd", "sgd", 0.1),
        Rule("sgd+momentum", "sgd", 0.01, momentum=0.9),
        Rule("sgd+nesterov", "sgd", 0.01, momentum=0.9, nesterov=True),
        Rule("rmsprop", "rmsprop", 0.01),
        Rule("adam", "adam", 0.01),
        Rule("adamw", "adamw", 0.01),
    )
}
OPTIMIZER_WORKLOADS = ("nielsen", "medium")
GRADIENTS_ONLY = "gradients only"
SINGLE_BLAS_THREAD = "1 (threadpool_limits)"


# ----------------------------------------------------------------- runners


class FastbpRuleRunner(FastbpRunner):
    """FastbpRunner with one update rule and its learning rate; the trainer carries on."""

    def __init__(self, workload, rule, X, Y):
        self.network = _initial_network(workload, X.dtype)
        self.trainer = Trainer(self.network, loss=workload.loss,
                               batch_size=workload.batch_size, seed=SEED, **rule.options())
        self.X, self.Y = X, Y


class BaselineRuleRunner:
    """baseline.train_epoch with one update rule, its state kept across epochs."""

    name = "baseline"

    def __init__(self, workload, rule, X, Y):
        network = _initial_network(workload, X.dtype)
        self.weights = [weight.copy() for weight in network.weights]
        self.biases = [bias.copy() for bias in network.biases]
        self.workload, self.rule = workload, rule
        self.state = {}
        self.rng = np.random.default_rng(SEED)
        self.X, self.Y = X, Y

    def run_epoch(self):
        workload = self.workload
        return baseline.train_epoch(
            self.weights, self.biases, self.X, self.Y, activation=workload.activation,
            output=workload.output, loss=workload.loss, batch_size=workload.batch_size,
            order=self.rng.permutation(self.X.shape[0]), state=self.state,
            **self.rule.options(),
        )

    def parameters(self):
        return self.weights, self.biases


class BaselineGradientsRunner:
    """The baseline's epoch without its update: train_epoch's loop, gradients only.

    The same shuffled gather and the same loss_and_gradients per batch as
    baseline.train_epoch, and nothing done with the gradients, so that
    (baseline epoch with a rule - this epoch) is the cost of the rule's
    NumPy update, plain SGD's included.
    """

    name = "baseline"

    def __init__(self, workload, X, Y):
        network = _initial_network(workload, X.dtype)
        self.weights = [weight.copy() for weight in network.weights]
        self.biases = [bias.copy() for bias in network.biases]
        self.workload = workload
        self.rng = np.random.default_rng(SEED)
        self.X, self.Y = X, Y

    def run_epoch(self):
        workload, batch_size = self.workload, self.workload.batch_size
        order = self.rng.permutation(self.X.shape[0])
        X, Y = self.X[order], self.Y[order]
        total = 0.0
        for start in range(0, X.shape[0], batch_size):
            X_batch, Y_batch = X[start:start + batch_size], Y[start:start + batch_size]
            J, _, _ = baseline.loss_and_gradients(
                self.weights, self.biases, X_batch, Y_batch, activation=workload.activation,
                output=workload.output, loss=workload.loss, l2=0.0,
            )
            total += X_batch.shape[0] * J
        return total / X.shape[0]

    def parameters(self):
        return self.weights, self.biases


class ThreadedFits:
    """fit(epochs=1) of each runner's trainer in its own Python thread, started together.

    ``run_epoch()`` returns when every thread is done, so timing it gives the
    wall time of the slowest; an exception in a thread is raised here.
    """

    def __init__(self, runners):
        self.runners = list(runners)

    def run_epoch(self):
        # the main thread is the last party: all workers are waiting when it passes
        barrier = threading.Barrier(len(self.runners) + 1)
        losses = [None] * len(self.runners)
        errors = []

        def work(index, runner):
            try:
                barrier.wait()
                losses[index] = runner.run_epoch()
            except BaseException as exc:    # raised below, in the calling thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(index, runner))
                   for index, runner in enumerate(self.runners)]
        for thread in threads:
            thread.start()
        barrier.wait()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return losses

    def parameters(self):
        """Each runner's flat parameter vector (a copy)."""
        return [runner.network.get_parameters() for runner in self.runners]


# --------------------------------------------------------- optimizer updates


def _updates_per_epoch(n_samples, batch_size):
    return -(-n_samples // batch_size)


def _recorded_sgd(path):
    """(workload, dtype) -> fastbp plain-SGD row of a recorded epoch table, and its date."""
    try:
        with open(path, encoding="utf-8") as stream:
            payload = json.load(stream)
    except (OSError, ValueError):
        return {}, None
    rows = {(row["workload"], row["dtype"]): row for row in payload.get("epochs", [])
            if row.get("implementation") == "fastbp"}
    return rows, payload.get("date")


def _sgd_check(row, recorded):
    """Plain SGD of this run against the recorded epoch table; a dict, or None."""
    reference = recorded.get((row["workload"], row["dtype"]))
    if reference is None:
        return None
    us_per_sample = row["fastbp_seconds"] / row["n_samples"] * 1e6
    recorded_us = reference["seconds"] / reference["n_samples"] * 1e6
    # this section's speed-up is over the oracle (fastbp.baseline); the epoch
    # table's "speedup" is over the fast NumPy baseline since it has one
    recorded_speedup = reference.get("speedup_vs_oracle", reference["speedup"])
    # either measure within tolerance: a slow spell of the machine moves the
    # first, a slow spell of the baseline the second; a real slowdown both
    slowdown = min(us_per_sample / recorded_us, recorded_speedup / row["speedup"])
    return {
        "us_per_sample": us_per_sample, "recorded_us_per_sample": recorded_us,
        "speedup": row["speedup"], "recorded_speedup": recorded_speedup,
        "slowdown": slowdown, "slower": slowdown > 1 + SLOWDOWN_TOLERANCE,
    }


def _rule_rows(workload, dtype, n_samples, times):
    """One row per rule (and one for the gradients-only baseline) from timed epochs."""
    n_updates = _updates_per_epoch(n_samples, workload.batch_size)
    seconds = {name: median(values) for name, values in times.items()}

    def per_step(difference):
        return difference / n_updates * 1e6

    gradients_only = seconds[f"baseline {GRADIENTS_ONLY}"]
    common = {
        "workload": workload.name, "layer_sizes": list(workload.layer_sizes),
        "batch_size": workload.batch_size, "output": workload.output, "loss": workload.loss,
        "dtype": dtype, "n_samples": n_samples, "n_updates": n_updates,
        "baseline_gradients_only_seconds": gradients_only,
    }
    rows = []
    for rule in RULES.values():
        fastbp_key, baseline_key = f"fastbp {rule.name}", f"baseline {rule.name}"
        fastbp, numpy_ = seconds[fastbp_key], seconds[baseline_key]
        row = dict(common, rule=rule.name, **rule.options())
        row.update(
            fastbp_times=times[fastbp_key], baseline_times=times[baseline_key],
            fastbp_seconds=fastbp, baseline_seconds=numpy_, speedup=numpy_ / fastbp,
            # NumPy's whole update of the rule: the epoch beyond its gradients alone
            baseline_full_update_us=per_step(numpy_ - gradients_only),
            fastbp_update_us=None, baseline_update_us=None, fused_cheaper=None,
            cheaper_than_baseline_difference=None,
        )
        if rule.name != "sgd":
            row["fastbp_update_us"] = per_step(fastbp - seconds["fastbp sgd"])
            row["baseline_update_us"] = per_step(numpy_ - seconds["baseline sgd"])
            row["fused_cheaper"] = row["fastbp_update_us"] < row["baseline_full_update_us"]
            row["cheaper_than_baseline_difference"] = (
                row["fastbp_update_us"] < row["baseline_update_us"])
        rows.append(row)
    rows.append(dict(common, rule=GRADIENTS_ONLY,
                     baseline_times=times[f"baseline {GRADIENTS_ONLY}"],
                     baseline_seconds=gradients_only))
    return rows


def _us(value):
    return "-" if value is None else f"{value:.1f}"


def _optimizer_table(rows):
    headers = ["workload", "dtype", "rule", "fastbp s/epoch", "baseline s/epoch", "speed-up",
               "fastbp update us/step", "baseline update us/step",
               "baseline full update us/step", "fused update cheaper"]
    body = []
    for row in rows:
        if row["rule"] == GRADIENTS_ONLY:
            body.append([row["workload"], row["dtype"], f"({GRADIENTS_ONLY})", "-",
                         f"{row['baseline_seconds']:.3f}", "-", "-", "-", "-", ""])
            continue
        cheaper = row["fused_cheaper"]
        body.append([
            row["workload"], row["dtype"], row["rule"], f"{row['fastbp_seconds']:.3f}",
            f"{row['baseline_seconds']:.3f}", f"{row['speedup']:.2f}x",
            _us(row["fastbp_update_us"]), _us(row["baseline_update_us"]),
            _us(row["baseline_full_update_us"]),
            "" if cheaper is None else ("yes" if cheaper else "NO"),
        ])
    return format_table(headers, body, right=range(3, 9))


def _sgd_table(checks):
    headers = ["workload", "dtype", "fastbp us/sample", "recorded us/sample", "speed-up",
               "recorded speed-up", "plain SGD"]
    body = []
    for (workload, dtype), check in checks.items():
        verdict = (f"SLOWER ({check['slowdown'] - 1:+.0%})" if check["slower"]
                   else "no slowdown")
        body.append([workload, dtype, f"{check['us_per_sample']:.2f}",
                     f"{check['recorded_us_per_sample']:.2f}", f"{check['speedup']:.2f}x",
                     f"{check['recorded_speedup']:.2f}x", verdict])
    return format_table(headers, body, right=range(2, 6))


def run_optimizers(workload_names, dtypes, n_samples, repeats, log, reference=None):
    """Time one epoch of every rule, fastbp and baseline interleaved.

    Parameters
    ----------
    workload_names : list of str
        Names in WORKLOADS (the report passes those of OPTIMIZER_WORKLOADS).
    dtypes : list of str
    n_samples : int
    repeats : int
        Timed rounds after one warm-up round; medians are quoted.
    log : callable
        Progress messages.
    reference : str, optional
        A recorded epoch table (bench/results/latest.json) to check plain
        SGD's epoch against; None or a missing file skips the check.

    Returns
    -------
    result : dict
        JSON-able: settings, one row per workload, dtype and rule, and the
        plain-SGD check.
    text : str
        The section of the report.
    """
    recorded, recorded_date = _recorded_sgd(reference) if reference else ({}, None)
    rows, checks = [], {}
    for dtype in dtypes:
        X, Y = make_data(n_samples, dtype)
        for name in workload_names:
            workload = WORKLOADS[name]
            log(f"optimizers, {workload}, {dtype}: {', '.join(RULES)} and the baseline's "
                f"gradients alone; 1 warm-up + {repeats} rounds")
            runners = {}
            for rule in RULES.values():
                runners[f"fastbp {rule.name}"] = FastbpRuleRunner(workload, rule, X, Y)
                runners[f"baseline {rule.name}"] = BaselineRuleRunner(workload, rule, X, Y)
            runners[f"baseline {GRADIENTS_ONLY}"] = BaselineGradientsRunner(workload, X, Y)
            times = measure(runners, repeats, warmup=1, log=log)
            for key, runner in runners.items():
                weights, biases = runner.parameters()
                if not all(np.isfinite(array).all() for array in list(weights) + list(biases)):
                    raise RuntimeError(f"{key} diverged on {workload}, {dtype}")
            del runners
            workload_rows = _rule_rows(workload, dtype, n_samples, times)
            check = _sgd_check(workload_rows[0], recorded)
            if check is not None:
                checks[(name, dtype)] = check
            rows += workload_rows
        del X, Y

    compared = [row for row in rows if row.get("fused_cheaper") is not None]
    cheaper = sum(row["fused_cheaper"] for row in compared)
    strictly = sum(row["cheaper_than_baseline_difference"] for row in compared)
    lines = [
        f"## Optimizer updates ({n_samples} samples, median of {repeats} rounds after 1 warm-up, "
        "fastbp and baseline of every rule interleaved)",
        "",
        "Learning rates: " + ", ".join(f"{rule.name} {rule.learning_rate:g}"
                                       for rule in RULES.values())
        + "; momentum 0.9; rho, betas, epsilon and adamw's weight decay at their defaults.",
        "",
        _optimizer_table(rows),
        "",
        "update us/step = (epoch with the rule - epoch with plain SGD) / updates per epoch; "
        "fastbp's plain-SGD update is its weight-gradient GEMM (beta = 1), so this is its "
        "whole update. baseline full update = (epoch with the rule - the baseline's epoch of "
        "gradients alone) / updates, NumPy's plain SGD step included. "
        "fused update cheaper: fastbp update < baseline full update.",
        "",
        f"Fused update cheaper than NumPy's update of the same rule: {cheaper} of "
        f"{len(compared)} (and {strictly} of {len(compared)} against the baseline's "
        "rule - plain SGD difference alone).",
    ]
    if checks:
        lines += [
            "",
            f"Plain SGD against the recorded epoch table ({os.path.relpath(reference)}, "
            f"{recorded_date}); slower when both the time per sample and the speed-up over "
            f"the baseline are more than {SLOWDOWN_TOLERANCE:.0%} worse:",
            "",
            _sgd_table(checks),
        ]
    elif reference:
        lines += ["", f"Plain SGD: no recorded epoch table in {reference} to compare with."]
    result = {
        "n_samples": n_samples, "repeats": repeats, "workloads": list(workload_names),
        "dtypes": list(dtypes), "rules": {name: rule.options() for name, rule in RULES.items()},
        "rows": rows,
        "sgd_check": {
            "reference": reference, "reference_date": recorded_date,
            "tolerance": SLOWDOWN_TOLERANCE,
            "rows": [dict(workload=workload, dtype=dtype, **check)
                     for (workload, dtype), check in checks.items()],
        },
        "fused_cheaper": cheaper, "cheaper_than_baseline_difference": strictly,
        "compared": len(compared),
    }
    return result, "\n".join(lines)


# ---------------------------------------------------------------- threads


def _blas_threads():
    """The largest BLAS thread count threadpoolctl reports (None without it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return max(counts) if counts else None


def _blas_settings():
    """(label, context factory) for BLAS as it is and BLAS at 1 thread."""
    from threadpoolctl import threadpool_limits

    return [
        (f"as is ({_blas_threads()})", contextlib.nullcontext),
        (SINGLE_BLAS_THREAD, lambda: threadpool_limits(1)),
    ]


def _thread_row(workload, dtype, blas, n_samples, times, identical):
    alone, pair = median(times["1 thread"]), median(times["2 threads"])
    return {
        "workload": workload.name, "layer_sizes": list(workload.layer_sizes),
        "batch_size": workload.batch_size, "dtype": dtype, "blas_threads": blas,
        "n_samples": n_samples, "times_1_thread": times["1 thread"],
        "times_2_threads": times["2 threads"], "seconds_1_thread": alone,
        "seconds_2_threads": pair, "samples_per_second_1_thread": n_samples / alone,
        "samples_per_second_2_threads": 2 * n_samples / pair,
        "ratio": 2 * alone / pair, "weights_identical": identical,
    }


def _threads_table(rows):
    headers = ["workload", "dtype", "BLAS threads", "1 trainer samples/s",
               "2 trainers samples/s", "ratio", "weights = alone"]
    body = [[row["workload"], row["dtype"], row["blas_threads"],
             f"{row['samples_per_second_1_thread']:,.0f}",
             f"{row['samples_per_second_2_threads']:,.0f}", f"{row['ratio']:.2f}x",
             "identical" if row["weights_identical"] else "DIFFER"] for row in rows]
    return format_table(headers, body, right=range(3, 6))


def run_threads(workload_names, dtypes, n_samples, repeats, large_repeats, log):
    """Two trainers in two threads against one alone, BLAS as is and at 1 thread.

    Parameters
    ----------
    workload_names : list of str
    dtypes : list of str
    n_samples : int
        Samples per trainer and epoch.
    repeats, large_repeats : int
        Timed rounds after one warm-up (large_repeats for the large workload).
    log : callable

    Returns
    -------
    result : dict
        JSON-able: one row per workload, dtype and BLAS setting.
    text : str
        The section of the report.
    """
    rows = []
    for dtype in dtypes:
        X, Y = make_data(n_samples, dtype)
        for name in workload_names:
            workload = WORKLOADS[name]
            rounds = large_repeats if name == "large" else repeats
            for blas, limits in _blas_settings():
                log(f"threads, {workload}, {dtype}, BLAS threads {blas}: 1 trainer, 2 trainers; "
                    f"1 warm-up + {rounds} rounds")
                with limits():
                    # identical trainers, each on its own copy of the data
                    alone, first, second = (FastbpRunner(workload, X.copy(), Y.copy())
                                            for _ in range(3))
                    runners = {"1 thread": ThreadedFits([alone]),
                               "2 threads": ThreadedFits([first, second])}
                    times = measure(runners, rounds, warmup=1, log=log)
                (expected,) = runners["1 thread"].parameters()
                together = runners["2 threads"].parameters()
                identical = all(np.array_equal(got, expected) for got in together)
                row = _thread_row(workload, dtype, blas, n_samples, times, identical)
                if not identical and blas == SINGLE_BLAS_THREAD:
                    log(f"WARNING: {workload}, {dtype}, BLAS threads {blas}: the weights of "
                        "the two threads differ from those of the trainer run alone")
                rows.append(row)
                del runners, alone, first, second
        del X, Y

    single_blas = [row for row in rows if row["blas_threads"] == SINGLE_BLAS_THREAD]
    differ = [row for row in single_blas if not row["weights_identical"]]
    lines = [
        f"## Two trainers in two threads ({n_samples} samples per trainer, median of "
        f"{repeats} rounds ({large_repeats} for large) after 1 warm-up, 1 and 2 threads "
        "interleaved)",
        "",
        _threads_table(rows),
        "",
        "1 trainer: fit(epochs=1) alone in one Python thread; 2 trainers: two networks, two "
        "trainers, two copies of the data, fit(epochs=1) in two threads started together; "
        "samples/s counts both (2 n / wall time); ratio = 2 trainers / 1 trainer. "
        "BLAS threads 'as is' leaves OpenBLAS its own thread count per call (two trainers "
        "then run that many BLAS threads each); '1' runs both under "
        "threadpoolctl.threadpool_limits(1). weights = alone: both threads end with the "
        "parameters of the trainer run alone (the same seeds, data and epochs), bit for bit.",
        "",
        ("Weights with BLAS at 1 thread: identical to the trainer run alone in every case."
         if not differ else
         "WARNING: with BLAS at 1 thread the weights of two threads DIFFER from the trainer "
         "run alone in: " + ", ".join(f"{row['workload']} {row['dtype']}" for row in differ)),
    ]
    result = {
        "n_samples": n_samples, "repeats": repeats, "large_repeats": large_repeats,
        "workloads": list(workload_names), "dtypes": list(dtypes), "rows": rows,
        "weights_identical_with_1_blas_thread": not differ,
        "cpu_count": os.cpu_count(),
    }
    return result, "\n".join(lines)
