"""Memory of a fit: peak RSS in a fresh process, and Python-heap allocations per epoch.

Run through ``python -m bench.report --memory``. For each workload, dtype
and implementation (fastbp, baseline) a fresh interpreter (this module run
as ``python -m bench.memory WORKLOAD DTYPE N_SAMPLES IMPLEMENTATION``)

1. imports everything and warms both BLAS libraries up (their buffers are
   allocated on first use, and belong to no fit),
2. makes the data chunk by chunk (so making it peaks at the data itself),
   hands the freed heap back to the OS (glibc malloc_trim) and reads the
   resident set size, ``rss_after_data``,
3. resets the kernel's peak-RSS mark, builds the network and trainer and
   runs one epoch, then reads the peak: ``growth = peak - rss_after_data``
   is what the fit needed beyond the data, to compare with the parameters
   plus the kernel workspace.

The peak is Linux's VmHWM of /proc/self/status, reset through
/proc/self/clear_refs. ``resource.getrusage(...).ru_maxrss`` is recorded too
but not used: Linux carries the parent's peak into ru_maxrss across
vfork + exec, so a child of a big process would report the parent's peak.

For fastbp the child then traces the Python heap (tracemalloc, which sees
NumPy's buffers) around ``fit(epochs=1)`` and ``fit(epochs=3)`` on the same
trainer: with all buffers allocated once per (network, batch size), the
peak must not grow with the number of batches.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

__all__ = ["run_memory"]

MiB = 1024 * 1024


def _status_kib(field):
    """A 'kB' field of /proc/self/status (VmRSS, VmHWM), in KiB; None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _release_free_heap():
    """Give freed heap pages back to the OS (glibc), so RSS counts live memory only.

    Making the data frees 25 MB chunks that glibc keeps in its heap; without
    this the fit would reuse them unseen and look smaller than it is.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def _warm_blas(dtype):
    import numpy as np
    from scipy.linalg import blas

    for kind in (np.float64, np.float32, dtype):
        a = np.ones((1024, 1024), dtype=kind)
        np.matmul(a, a)
        blas.get_blas_funcs("gemm", dtype=kind)(1.0, a, a)


def _child(workload_name, dtype, n_samples, implementation):
    import tracemalloc

    import numpy as np

    from fastbp import _kernels

    from .runners import make_runner
    from .workloads import WORKLOADS, make_data

    workload = WORKLOADS[workload_name]
    _warm_blas(np.dtype(dtype))
    _release_free_heap()
    rss_before_data = _status_kib("VmRSS") * 1024
    X, Y = make_data(n_samples, dtype)
    trimmed = _release_free_heap()
    result = {
        "workload": workload_name, "dtype": dtype, "implementation": implementation,
        "n_samples": n_samples, "data_bytes": X.nbytes + Y.nbytes,
        "rss_before_data": rss_before_data,
        "rss_after_data": _status_kib("VmRSS") * 1024,
        "peak_before_fit": _status_kib("VmHWM") * 1024,
        "heap_trimmed": trimmed,
    }
    result["peak_reset"] = _reset_peak()
    runner = make_runner(implementation, workload, X, Y)
    runner.run_epoch()
    result["peak_during_fit"] = _status_kib("VmHWM") * 1024
    result["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["growth"] = result["peak_during_fit"] - result["rss_after_data"]
    weights, biases = runner.parameters()
    result["parameter_bytes"] = sum(array.nbytes for array in list(weights) + list(biases))
    result["workspace_bytes"] = 0
    if implementation == "fastbp":
        network, trainer = runner.network, runner.trainer
        result["workspace_bytes"] = (
            _kernels.workspace_size(network._sizes, workload.batch_size) * X.itemsize
        )
        # Python heap (NumPy buffers included) around 1 and 3 more epochs
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        trainer.fit(X, Y, epochs=1)
        after_one, peak_one = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        trainer.fit(X, Y, epochs=3)
        after_three, peak_three = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result["batches_per_epoch"] = -(-n_samples // workload.batch_size)
        result["heap_peak_1_epoch"] = peak_one - base
        result["heap_peak_3_epochs"] = peak_three - after_one
        result["heap_retained_3_epochs"] = after_three - after_one
    print(json.dumps(result))


def _measure(workload, dtype, n_samples, implementation, log):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "bench.memory", workload, dtype, str(n_samples),
               implementation]
    log(f"memory: {implementation} {workload} {dtype} in a fresh process")
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mib(n_bytes):
    return f"{n_bytes / MiB:.1f}"


def run_memory(workloads, dtypes, n_samples, log):
    """Measure every workload x dtype x {fastbp, baseline}; returns (rows, report text)."""
    from .formatting import format_table

    rows = [_measure(workload, dtype, n_samples, implementation, log)
            for workload in workloads for dtype in dtypes
            for implementation in ("fastbp", "baseline")]
    rss_rows = []
    for row in rows:
        accounted = row["data_bytes"] + row["parameter_bytes"] + row["workspace_bytes"]
        used = row["peak_during_fit"] - row["rss_before_data"]
        rss_rows.append([
            row["workload"], row["dtype"], row["implementation"], _mib(row["data_bytes"]),
            _mib(row["parameter_bytes"]), _mib(row["workspace_bytes"]),
            _mib(row["rss_after_data"]), _mib(row["peak_during_fit"]), _mib(row["growth"]),
            _mib(used), f"{used / accounted:.2f}",
        ])
    heap_rows = []
    for row in rows:
        if row["implementation"] != "fastbp":
            continue
        grows = row["heap_peak_3_epochs"] > row["heap_peak_1_epoch"] + 64 * 1024
        heap_rows.append([
            row["workload"], row["dtype"], row["batches_per_epoch"],
            f"{row['heap_peak_1_epoch']:,}", f"{row['heap_peak_3_epochs']:,}",
            f"{row['heap_retained_3_epochs']:,}", "GROWS" if grows else "flat",
        ])
    peak_note = ("peak = VmHWM after a reset through /proc/self/clear_refs"
                 if all(row["peak_reset"] for row in rows)
                 else "peak = VmHWM (could not be reset: includes making the data)")
    text = "\n".join([
        f"### Memory of one epoch ({n_samples} samples), MiB", "",
        format_table(["workload", "dtype", "implementation", "data", "params", "workspace",
                      "RSS after data", "peak in fit", "growth", "peak - RSS before data",
                      "/ (data + params + workspace)"], rss_rows, right=range(3, 11)),
        "",
        f"Fresh process per row, BLAS warmed up and free heap trimmed first; {peak_note}. "
        "growth = peak in fit - RSS after data: the network, the trainer and what "
        "one epoch allocates (fastbp: workspace, the shuffling permutation, the "
        "parameter copy kept to undo a diverged epoch; baseline: the shuffled copy "
        "of the data and per-batch temporaries). The last column compares all the "
        "memory added since before the data with data + parameters + workspace.",
        "",
        "### Python-heap allocation peak (tracemalloc) of fastbp fit, bytes", "",
        format_table(["workload", "dtype", "batches/epoch", "peak, fit(epochs=1)",
                      "peak, fit(epochs=3)", "retained after 3", "with batches"],
                     heap_rows, right=range(2, 6)),
        "",
        "Same trainer, after a first epoch; 'flat' when the 3-epoch peak is within "
        "64 KiB of the 1-epoch peak.",
    ])
    return rows, text


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit("usage: python -m bench.memory WORKLOAD DTYPE N_SAMPLES IMPLEMENTATION")
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
