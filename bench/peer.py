"""Time one implementation in a process of its own; print JSON.

    python -m bench.peer IMPL WORKLOAD DTYPE --samples N --repeats R [--warmup W]

IMPL is any of bench.runners.IMPLEMENTATIONS (torch, jax, sklearn, and
also numpy, fastbp, oracle). The process makes the workload's data
(make_data, seed 0), builds the runner, runs W untimed warm-up epochs
(default 1: jit compilation, thread pools, buffers) and R timed epochs, and
prints one JSON object on its last line of stdout:

    {"implementation", "workload", "dtype", "n_samples", "times", "median",
     "loss", "version", "threads", "skipped"}

``skipped`` is null, or the reason the implementation cannot run (not
installed, maths does not match); then ``times`` is empty and the exit
status 0. The report (bench/report.py) calls this for every peer, so that
XLA's, PyTorch's and OpenBLAS's thread pools never share a process.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

__all__ = ["run_peer", "main"]

BENCH_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _version(implementation):
    module = {"torch": "torch", "jax": "jax", "sklearn": "sklearn", "numpy": "numpy",
              "oracle": "fastbp", "fastbp": "fastbp"}.get(implementation)
    if module is None:
        return None
    try:
        return getattr(__import__(module), "__version__", "unknown")
    except ImportError:
        return None


def _threads(implementation):
    if implementation == "torch":
        import torch

        return torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return max(counts) if counts else None


def time_in_process(implementation, workload_name, dtype, n_samples, repeats, warmup=1,
                    shuffle=True):
    """Run the timing here; the dict that `main` prints."""
    from .runners import make_runner, unavailable
    from .workloads import WORKLOADS, make_data

    workload = WORKLOADS[workload_name]
    result = {"implementation": implementation, "workload": workload_name, "dtype": dtype,
              "n_samples": n_samples, "times": [], "median": None, "loss": None,
              "version": None, "threads": None, "pid": os.getpid(), "skipped": None}
    reason = unavailable(implementation, workload)
    if reason is not None:
        result["skipped"] = reason
        return result
    X, Y = make_data(n_samples, dtype)
    runner = make_runner(implementation, workload, X, Y, shuffle=shuffle)
    for _ in range(warmup):
        runner.run_epoch()
    loss = None
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        loss = runner.run_epoch()
        result["times"].append(time.perf_counter() - started)
    result.update(median=statistics.median(result["times"]) if result["times"] else None,
                  loss=float(loss) if loss is not None else None,
                  version=_version(implementation), threads=_threads(implementation))
    return result


def run_peer(implementation, workload_name, dtype, n_samples, repeats, warmup=1,
             timeout=None, env=None):
    """Run ``python -m bench.peer`` in a subprocess; its JSON as a dict.

    The child inherits this process's environment (OPENBLAS_* included: the
    report's caller unsets the skewing ones for all alike).
    """
    command = [sys.executable, "-m", "bench.peer", implementation, workload_name, dtype,
               "--samples", str(n_samples), "--repeats", str(repeats), "--warmup", str(warmup)]
    return run_json_child(command, timeout=timeout, env=env)


def run_json_child(command, timeout=None, env=None):
    """Run `command` (a ``python -m bench.<module> ...`` list) with bench/ importable, in
    `env` (default this process's); the JSON of its last non-empty output line."""
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        [BENCH_ROOT] + [p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p])
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                               cwd=BENCH_ROOT, env=child_env)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed ({completed.returncode}):\n"
                           f"{completed.stderr[-2000:]}")
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def main(argv=None):
    from .runners import IMPLEMENTATIONS
    from .workloads import DTYPES, WORKLOADS

    parser = argparse.ArgumentParser(prog="python -m bench.peer",
                                     description="Time one implementation in its own process.")
    parser.add_argument("implementation", choices=[i for i in IMPLEMENTATIONS if i != "roof"])
    parser.add_argument("workload", choices=list(WORKLOADS))
    parser.add_argument("dtype", choices=list(DTYPES))
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    if args.samples < 1 or args.repeats < 0 or args.warmup < 0:
        parser.error("--samples must be >= 1, --repeats and --warmup >= 0")
    result = time_in_process(args.implementation, args.workload, args.dtype, args.samples,
                             args.repeats, args.warmup)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
