"""Interleaved timing: every runner once per round, medians over rounds."""

from __future__ import annotations

import gc
import statistics
import time

__all__ = ["measure", "median"]


def median(values):
    return statistics.median(values)


def measure(runners, repeats, warmup=1, log=None):
    """Time ``run_epoch()`` of every runner, interleaved A B C A B C ...

    Parameters
    ----------
    runners : dict of name -> runner
        Objects with a ``run_epoch()`` method.
    repeats : int >= 1
        Timed rounds; each round runs every runner once, in the dict's order.
    warmup : int >= 0
        Untimed rounds before (BLAS thread pools, caches, lazily made buffers).
    log : callable, optional
        Called with a progress message after each timed run.

    Returns
    -------
    times : dict of name -> list of float
        Seconds per run_epoch, one per round.
    """
    for _ in range(warmup):
        for runner in runners.values():
            runner.run_epoch()
    times = {name: [] for name in runners}
    for round_index in range(repeats):
        for name, runner in runners.items():
            gc.collect()
            started = time.perf_counter()
            runner.run_epoch()
            times[name].append(time.perf_counter() - started)
            if log is not None:
                log(f"  round {round_index + 1}/{repeats} {name}: {times[name][-1]:.4f} s")
    return times
