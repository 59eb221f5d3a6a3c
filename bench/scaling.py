"""Scaling curves: epoch time against n_samples, batch size and hidden width.

Run through ``python -m bench.report --scaling``. fastbp and the NumPy
baseline are timed interleaved (median of the rounds after one warm-up);
the width sweep adds the BLAS roof. Tables go to the report, the numbers to
its JSON, and a figure to bench/results/scaling.png when matplotlib imports.
"""

from __future__ import annotations

import os

import numpy as np

from .formatting import format_table
from .runners import make_runner
from .timing import measure, median
from .workloads import Workload, epoch_flops, make_data

__all__ = ["run_scaling", "linear_fit"]

BATCH_SIZES = (1, 4, 16, 64, 256, 1024)
WIDTHS = (16, 64, 256, 1024, 2048)


def linear_fit(x, y):
    """Least-squares y = intercept + slope x; returns (slope, intercept, R^2)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r_squared = 1.0 - np.sum(residual ** 2) / total if total > 0 else 1.0
    return float(slope), float(intercept), float(r_squared)


def _time(workload, X, Y, implementations, repeats, log):
    runners = {name: make_runner(name, workload, X, Y) for name in implementations}
    times = measure(runners, repeats, warmup=1)
    result = {name: median(values) for name, values in times.items()}
    log("  " + ", ".join(f"{name} {seconds:.4f} s" for name, seconds in result.items()))
    return result


def _samples_sweep(X, Y, dtype, n_samples, repeats, log):
    workload = Workload("nielsen", (784, 30, 10), 10, "sigmoid", "mse")
    sizes = sorted({max(1, n_samples // 8), max(1, n_samples // 4),
                    max(1, n_samples // 2), n_samples})
    points = []
    for size in sizes:
        log(f"scaling, {dtype}: {workload}, n_samples {size}")
        seconds = _time(workload, X[:size], Y[:size], ("fastbp", "baseline"), repeats, log)
        points.append({"n_samples": size, "seconds": seconds})
    fits = {}
    for name in ("fastbp", "baseline"):
        x = [point["n_samples"] for point in points]
        y = [point["seconds"][name] for point in points]
        slope, intercept, r_squared = linear_fit(x, y) if len(x) > 2 else (0.0, 0.0, 1.0)
        fits[name] = {
            "slope_us_per_sample": slope * 1e6, "intercept_s": intercept,
            "r_squared": r_squared,
            # per-sample time at the largest over the smallest size: 1 = linear
            "per_sample_ratio": (y[-1] / x[-1]) / (y[0] / x[0]),
        }
    return {"workload": str(workload), "points": points, "fits": fits}


def _batch_sweep(X, Y, dtype, n_samples, repeats, log):
    points = []
    for batch_size in BATCH_SIZES:
        # small batches are slow per sample in NumPy: fewer samples, per-sample times
        size = {1: n_samples // 10, 4: n_samples // 4}.get(batch_size, n_samples)
        size = max(size, min(n_samples, batch_size))
        workload = Workload("nielsen", (784, 30, 10), batch_size, "sigmoid", "mse")
        log(f"scaling, {dtype}: {workload}, n_samples {size}")
        seconds = _time(workload, X[:size], Y[:size], ("fastbp", "baseline"), repeats, log)
        points.append({"batch_size": batch_size, "n_samples": size, "seconds": seconds})
    return {"layer_sizes": [784, 30, 10], "points": points}


def _width_sweep(X, Y, dtype, n_samples, repeats, log):
    size = max(1, n_samples // 4)
    points = []
    for width in WIDTHS:
        workload = Workload(f"width{width}", (784, width, 10), 64, "softmax", "cross_entropy")
        log(f"scaling, {dtype}: {workload}, n_samples {size}")
        seconds = _time(workload, X[:size], Y[:size], ("fastbp", "baseline", "roof"),
                        repeats, log)
        flops = epoch_flops(workload.layer_sizes, size, workload.batch_size)
        points.append({"width": width, "n_samples": size, "seconds": seconds,
                       "epoch_gflop": flops / 1e9})
    return {"batch_size": 64, "points": points}


def _us(seconds, n_samples):
    return f"{seconds / n_samples * 1e6:.2f}"


def _tables(dtype, samples, batches, widths):
    lines = [f"### Scaling, {dtype}", "",
             f"Epoch time vs n_samples ({samples['workload']}):", ""]
    rows = []
    for point in samples["points"]:
        n, seconds = point["n_samples"], point["seconds"]
        rows.append([n, f"{seconds['fastbp']:.4f}", _us(seconds["fastbp"], n),
                     f"{seconds['baseline']:.4f}", _us(seconds["baseline"], n),
                     f"{seconds['baseline'] / seconds['fastbp']:.2f}x"])
    lines.append(format_table(["n_samples", "fastbp s", "fastbp us/sample", "baseline s",
                               "baseline us/sample", "speed-up"], rows))
    fits = samples["fits"]
    lines += ["", "Linear fit t = a + b n: " + "; ".join(
        f"{name} b = {fit['slope_us_per_sample']:.3f} us/sample, a = {fit['intercept_s']:.4f} s, "
        f"R^2 = {fit['r_squared']:.5f}, per-sample time at the largest / smallest n = "
        f"{fit['per_sample_ratio']:.3f}"
        for name, fit in fits.items()), ""]

    lines += ["Per-sample time vs batch size ([784, 30, 10] sigmoid/mse):", ""]
    rows = []
    for point in batches["points"]:
        n, seconds = point["n_samples"], point["seconds"]
        rows.append([point["batch_size"], n, _us(seconds["fastbp"], n),
                     _us(seconds["baseline"], n),
                     f"{seconds['baseline'] / seconds['fastbp']:.2f}x"])
    lines.append(format_table(["batch", "n_samples", "fastbp us/sample",
                               "baseline us/sample", "speed-up"], rows))

    lines += ["", "Per-sample time vs hidden width ([784, w, 10], b=64, softmax/cross_entropy):",
              ""]
    rows = []
    for point in widths["points"]:
        n, seconds, gflop = point["n_samples"], point["seconds"], point["epoch_gflop"]
        rows.append([point["width"], n, _us(seconds["fastbp"], n), _us(seconds["baseline"], n),
                     f"{seconds['baseline'] / seconds['fastbp']:.2f}x",
                     f"{gflop / seconds['fastbp']:.1f}", f"{gflop / seconds['baseline']:.1f}",
                     f"{seconds['roof'] / seconds['fastbp']:.0%}"])
    lines.append(format_table(["width", "n_samples", "fastbp us/sample", "baseline us/sample",
                               "speed-up", "fastbp GFLOP/s", "baseline GFLOP/s",
                               "fastbp of roof"], rows))
    return "\n".join(lines)


def _plot(results, path, log):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    styles = {"float64": "-", "float32": "--"}
    colors = {"fastbp": "tab:blue", "baseline": "tab:orange", "roof": "tab:gray"}
    for dtype, result in results.items():
        samples = result["samples"]["points"]
        for name in ("fastbp", "baseline"):
            axes[0].plot([p["n_samples"] for p in samples],
                         [p["seconds"][name] for p in samples], styles[dtype], marker="o",
                         color=colors[name], label=f"{name} {dtype}")
            batches = result["batch_size"]["points"]
            axes[1].plot([p["batch_size"] for p in batches],
                         [p["seconds"][name] / p["n_samples"] * 1e6 for p in batches],
                         styles[dtype], marker="o", color=colors[name],
                         label=f"{name} {dtype}")
        widths = result["width"]["points"]
        for name in ("fastbp", "baseline", "roof"):
            axes[2].plot([p["width"] for p in widths],
                         [p["seconds"][name] / p["n_samples"] * 1e6 for p in widths],
                         styles[dtype], marker="o", color=colors[name],
                         label=f"{name} {dtype}")
    titles = ["[784,30,10] b=10: epoch time vs samples",
              "[784,30,10]: time per sample vs batch size",
              "[784,w,10] b=64: time per sample vs width"]
    xlabels = ["n_samples", "batch size", "hidden width w"]
    ylabels = ["seconds per epoch", "microseconds per sample", "microseconds per sample"]
    for axis, title, xlabel, ylabel in zip(axes, titles, xlabels, ylabels):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    log(f"wrote {path}")
    return path


def run_scaling(dtypes, n_samples, repeats, results_dir, log):
    """Run the three sweeps for each dtype; returns (JSON-able dict, report text)."""
    results, texts = {}, []
    for dtype in dtypes:
        X, Y = make_data(n_samples, dtype)
        samples = _samples_sweep(X, Y, dtype, n_samples, repeats, log)
        batches = _batch_sweep(X, Y, dtype, n_samples, repeats, log)
        widths = _width_sweep(X, Y, dtype, n_samples, repeats, log)
        results[dtype] = {"samples": samples, "batch_size": batches, "width": widths}
        texts.append(_tables(dtype, samples, batches, widths))
        del X, Y
    figure = _plot(results, os.path.join(results_dir, "scaling.png"), log)
    text = "\n\n".join(texts)
    if figure is not None:
        text += f"\n\nFigure: {os.path.relpath(figure)}"
    return {"repeats": repeats, "dtypes": results, "figure": figure}, text
