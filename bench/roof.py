"""The physical roof of an epoch: the least time the machine could take for it.

Two lower bounds, each from a rate measured in this process, and the roof
time is the larger:

compute
    The epoch's FLOPs (`workloads.epoch_flops`: 2 m n k for every GEMM of
    every step, forward, delta products below the output layer and weight
    gradients; no input-layer delta) at the rate of a large square GEMM
    (n^3, n = 2048 by default) of the same dtype, through BLAS at its own
    thread count (all cores here). The best of numpy.matmul and scipy's
    ?gemm (each bundles an OpenBLAS) over a few repeats, and the same at one
    BLAS thread times the number of cores (on a shared machine a threaded
    GEMM waits for its busiest core): the fastest GEMM this process can do. Small, skinny GEMMs run slower than this, so the
    bound is optimistic, as a roof must be.

memory
    The bytes each step must move at the least (`workloads.step_bytes`:
    every W^l and b^l read twice, for the forward pass and the update, and
    written once; the batch's inputs and targets read once), at a
    STREAM-like copy bandwidth measured here: the parameters' traffic at the
    bandwidth of a copy whose working set is the parameters' size (it stays
    in the cache that holds them: L2 for nielsen, L3 or DRAM for large), the
    inputs' traffic at the bandwidth of a large (DRAM) copy. Each rate is the
    best of a copy (bytes read + written) and an accumulation acc += a in one
    NumPy call (two reads and one write per element, like W's traffic, with
    no per-pass call overhead), with one thread and with one thread per core
    (each on its own share), over a few repeats.

A measured epoch can never take less than its roof; when one does, the roof
is wrong, and the report flags the row (``check_roof``).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from .workloads import epoch_bytes, epoch_flops

__all__ = ["gemm_rate", "copy_bandwidth", "Roof", "measure_roof", "roof_seconds"]

GEMM_SIZE = 2048
DRAM_BYTES = 256 * 2**20     # per array of the large copy: far above any cache


def gemm_rate(dtype, size=GEMM_SIZE, repeats=3):
    """FLOP/s of the fastest n^3 GEMM here (numpy.matmul or scipy ?gemm, BLAS threads as set)."""
    from scipy.linalg import blas as scipy_blas

    rng = np.random.default_rng(0)
    A = rng.random((size, size)).astype(dtype)
    B = rng.random((size, size)).astype(dtype)
    C = np.empty((size, size), dtype=dtype)
    gemm = scipy_blas.get_blas_funcs("gemm", dtype=A.dtype)
    Cf = np.asfortranarray(C)
    candidates = [lambda: np.matmul(A, B, out=C),
                  lambda: gemm(1.0, A.T, B.T, 0.0, Cf, overwrite_c=1)]

    def best_seconds():
        best = float("inf")
        for run in candidates:
            run()                           # warm-up: threads, pages
            for _ in range(repeats):
                started = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - started)
        return best

    rate = 2.0 * size**3 / best_seconds()
    cores = os.cpu_count() or 1
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return rate
    if cores > 1:
        # one core's rate times the cores: what BLAS at its thread count would do
        # on an idle machine (a busy neighbour slows a threaded GEMM far more)
        with threadpool_limits(1, user_api="blas"):
            rate = max(rate, cores * 2.0 * size**3 / best_seconds())
    return rate


def _best_parallel_seconds(pairs, kernel, repeats, warm=False):
    """Best wall time of kernel(source, target) run on every pair at once, one thread each.

    One pair runs in this thread (after a warm-up call when `warm`); several
    start together at a barrier and the clock stops when the last finishes.
    """
    if len(pairs) == 1:
        source, target = pairs[0]
        if warm:
            kernel(source, target)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            kernel(source, target)
            best = min(best, time.perf_counter() - started)
        return best
    barrier = threading.Barrier(len(pairs) + 1)

    def work(source, target):
        barrier.wait()
        kernel(source, target)
        barrier.wait()

    best = float("inf")
    for _ in range(repeats):
        workers = [threading.Thread(target=work, args=pair) for pair in pairs]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.perf_counter()
        barrier.wait()
        best = min(best, time.perf_counter() - started)
        for worker in workers:
            worker.join()
    return best


def _copy_seconds(n_bytes, threads, repeats, inner):
    """Best wall time of `inner` copies of n_bytes in total, split over `threads` threads."""
    share = max(n_bytes // threads // 8, 1)
    pairs = [(np.ones(share), np.empty(share)) for _ in range(threads)]

    def copies(source, target):
        for _ in range(inner):
            np.copyto(target, source)

    return _best_parallel_seconds(pairs, copies, repeats, warm=True), share * 8 * threads


def _accumulate_seconds(n_bytes, threads, repeats, rows):
    """Best wall time of acc += a, `rows` times in one call, over `threads` threads.

    One ``np.add.reduce`` of a (rows, n) broadcast view of `a` (stride 0)
    into `acc`: each row reads a and acc and writes acc, the W traffic of a
    step (read twice, write once), with no Python call per pass; a and acc
    together hold n_bytes.
    """
    share = max(n_bytes // threads // 16, 1)
    pairs = [(np.ones(share), np.zeros(share)) for _ in range(threads)]

    def accumulate(source, target):
        np.add.reduce(np.broadcast_to(source, (rows, share)), axis=0, out=target)

    return _best_parallel_seconds(pairs, accumulate, repeats), 3 * share * 8 * threads * rows


def copy_bandwidth(working_set, repeats=3, target_seconds=0.02):
    """Bytes/s moved by the best STREAM-like kernel whose arrays hold `working_set` bytes.

    The best of a copy (bytes read + written) and an accumulation acc += a
    (two reads and a write per element, see `_accumulate_seconds`), each with
    one thread and with one thread per core, over `repeats` tries.
    """
    n_bytes = max(int(working_set), 8192)
    inner = max(1, int(target_seconds * 20e9 / n_bytes))
    rows = max(1, int(target_seconds * 60e9 / (1.5 * n_bytes)))
    best = 0.0
    for threads in sorted({1, os.cpu_count() or 1}):
        seconds, copied = _copy_seconds(n_bytes // 2, threads, repeats, inner)
        best = max(best, 2.0 * copied * inner / seconds)
        seconds, moved = _accumulate_seconds(n_bytes, threads, repeats, rows)
        best = max(best, moved / seconds)
    return best


class Roof:
    """The rates of one dtype, measured once per report process."""

    def __init__(self, dtype, gemm_flops, dram_bandwidth, cache_bandwidth, gemm_size=GEMM_SIZE):
        self.dtype = np.dtype(dtype).name
        self.gemm_size = gemm_size
        self.gemm_flops = gemm_flops            # FLOP/s of the large square GEMM
        self.dram_bandwidth = dram_bandwidth    # bytes/s of a large copy
        self.cache_bandwidth = cache_bandwidth  # working set (bytes) -> bytes/s

    def bandwidth(self, working_set):
        key = int(working_set)
        if key not in self.cache_bandwidth:
            self.cache_bandwidth[key] = max(copy_bandwidth(working_set), self.dram_bandwidth)
        return self.cache_bandwidth[key]

    def bounds(self, workload, n_samples):
        """(compute seconds, memory seconds, roof seconds) of one epoch."""
        itemsize = np.dtype(self.dtype).itemsize
        flops = epoch_flops(workload.layer_sizes, n_samples, workload.batch_size)
        compute = flops / self.gemm_flops
        parameter_bytes, input_bytes = epoch_bytes(workload.layer_sizes, n_samples,
                                                   workload.batch_size, itemsize)
        parameter_count = sum(n * (m + 1) for m, n in zip(workload.layer_sizes[:-1],
                                                          workload.layer_sizes[1:]))
        # the copy that stands for the parameters' traffic has the parameters'
        # footprint: its source and target together hold as many bytes
        working_set = parameter_count * itemsize
        memory = (parameter_bytes / self.bandwidth(working_set)
                  + input_bytes / self.dram_bandwidth)
        return compute, memory, max(compute, memory)

    def as_dict(self):
        return {"dtype": self.dtype, "gemm_flops": self.gemm_flops,
                "gemm_size": self.gemm_size, "dram_bandwidth": self.dram_bandwidth,
                "cache_bandwidth": {str(k): v for k, v in self.cache_bandwidth.items()}}


def measure_roof(dtype, gemm_size=GEMM_SIZE, dram_bytes=DRAM_BYTES, repeats=3):
    """Measure the GEMM rate and the DRAM copy bandwidth for `dtype`."""
    flops = gemm_rate(dtype, gemm_size, repeats)
    dram = copy_bandwidth(2 * dram_bytes, repeats=repeats, target_seconds=0.0)
    return Roof(dtype, flops, dram, {}, gemm_size)


def roof_seconds(roof, workload, n_samples):
    """The roof time of one epoch (the larger bound)."""
    return roof.bounds(workload, n_samples)[2]
