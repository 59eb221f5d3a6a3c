"""Benchmark report: fastbp against the NumPy baseline, PyTorch and the BLAS roof.

    python -m bench.report [--samples N] [--repeats R] [--workloads ...]
                           [--dtypes ...] [--json PATH] [--plot PATH] [--no-torch]
    python -m bench.report --scaling      # epoch time vs samples, batch size, width
    python -m bench.report --memory       # peak RSS of a fit, allocations per step
    python -m bench.report --optimizers   # one epoch per update rule, cost of each update
    python -m bench.report --threads      # two trainers in two threads vs one alone
    python -m bench.report --all          # all five sections

Every implementation runs in this one process, interleaved (A B C A B C ...)
after one warm-up epoch each, and the table quotes medians, so a slow spell of
a shared machine hits all of them alike. Unset OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE first (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``).

Columns: seconds per epoch (median), samples/s, GFLOP/s counting 2 m n k for
each of the epoch's GEMMs (forward, delta propagation below the output
layer, weight gradients), speed-up over the baseline, and roof = time of the
same GEMMs alone through BLAS divided by the implementation's time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

from .extras import DEFAULT_SAMPLES, OPTIMIZER_WORKLOADS
from .formatting import format_table
from .machine import format_header, machine_info
from .runners import make_runner, torch_available
from .timing import measure, median
from .workloads import DTYPES, WORKLOADS, bench_samples, epoch_flops, make_data

__all__ = ["GOALS", "main", "run_epochs", "epoch_table"]

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# The speed goals for fastbp: (minimum speed-up over the baseline,
# minimum fraction of the roof or None), per workload and dtype.
GOALS = {
    ("nielsen", "float64"): (6.0, None),
    ("nielsen", "float32"): (8.0, None),
    ("medium", "float64"): (2.0, None),
    ("medium", "float32"): (3.0, None),
    ("large", "float64"): (1.3, 0.9),
    ("large", "float32"): (1.4, 0.9),
}


def log(message):
    print(message, file=sys.stderr, flush=True)


def _goal(workload, dtype, speedup, roof_fraction):
    """(text, met) for a fastbp row, or ("", None) without a goal."""
    goal = GOALS.get((workload, dtype))
    if goal is None:
        return "", None
    min_speedup, min_roof = goal
    met = speedup >= min_speedup
    target = f">= {min_speedup:g}x"
    if min_roof is not None:
        met = met and roof_fraction >= min_roof
        target += f", >= {min_roof:.0%} roof"
    return f"{target}: {'met' if met else 'NOT met'}", met


def run_epochs(workload_names, dtypes, n_samples, repeats, large_repeats, use_torch,
               roof_blas="scipy"):
    """Time one epoch of every implementation; one result dict per row."""
    implementations = ["fastbp", "baseline"] + (["torch"] if use_torch else []) + ["roof"]
    rows = []
    for dtype in dtypes:
        log(f"making data: {n_samples} x 784, {dtype}")
        X, Y = make_data(n_samples, dtype)
        for name in workload_names:
            workload = WORKLOADS[name]
            rounds = large_repeats if name == "large" else repeats
            log(f"{workload}, {dtype}: {', '.join(implementations)}; "
                f"1 warm-up + {rounds} rounds")
            runners = {}
            for implementation in implementations:
                options = {"blas": roof_blas} if implementation == "roof" else {}
                runners[implementation] = make_runner(implementation, workload, X, Y, **options)
            times = measure(runners, rounds, warmup=1, log=log)
            del runners
            flops = epoch_flops(workload.layer_sizes, n_samples, workload.batch_size)
            medians = {key: median(values) for key, values in times.items()}
            for implementation in implementations:
                seconds = medians[implementation]
                row = {
                    "workload": name,
                    "layer_sizes": list(workload.layer_sizes),
                    "batch_size": workload.batch_size,
                    "output": workload.output,
                    "loss": workload.loss,
                    "dtype": dtype,
                    "implementation": implementation,
                    "n_samples": n_samples,
                    "times": times[implementation],
                    "seconds": seconds,
                    "spread": (max(times[implementation]) - min(times[implementation]))
                    / (2 * seconds),
                    "samples_per_second": n_samples / seconds,
                    "gflops": flops / seconds / 1e9,
                    "epoch_gflop": flops / 1e9,
                    "speedup": medians["baseline"] / seconds,
                    "roof_fraction": medians["roof"] / seconds,
                    "goal": "",
                    "goal_met": None,
                }
                if implementation == "fastbp":
                    row["goal"], row["goal_met"] = _goal(name, dtype, row["speedup"],
                                                         row["roof_fraction"])
                rows.append(row)
        del X, Y
    return rows


def epoch_table(rows):
    headers = ["workload", "dtype", "implementation", "s/epoch", "+-", "samples/s",
               "GFLOP/s", "vs baseline", "of roof", "goal"]
    body = []
    for row in rows:
        roof = row["implementation"] == "roof"
        body.append([
            row["workload"], row["dtype"], row["implementation"],
            f"{row['seconds']:.3f}", f"{row['spread']:.0%}",
            f"{row['samples_per_second']:,.0f}", f"{row['gflops']:.1f}",
            f"{row['speedup']:.2f}x", "-" if roof else f"{row['roof_fraction']:.0%}",
            row["goal"],
        ])
    return format_table(headers, body, right=range(3, 9))


def _write_json(path, payload):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(payload, stream, indent=1, default=float)
        stream.write("\n")
    log(f"wrote {path}")


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Time fastbp against the NumPy baseline, PyTorch and the BLAS roof.",
    )
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per epoch (default: FASTBP_BENCH_SAMPLES or 60000)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed rounds after one warm-up; medians are quoted "
                             "(default 5; use >= 3)")
    parser.add_argument("--large-repeats", type=int, default=None,
                        help="rounds for the large workload (default: min(repeats, 3))")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS),
                        default=list(WORKLOADS))
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="results file (default bench/results/latest.json, or "
                             "scaling.json / memory.json / optimizers.json / threads.json "
                             "for those sections alone)")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="also draw the epoch table's speed-ups over the baseline as a "
                             "bar chart into this PNG (fastbp.plots.plot_benchmark; needs "
                             "matplotlib)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--roof-blas", choices=("scipy", "numpy"), default="scipy",
                        help="GEMMs of the roof through scipy.linalg.blas (the BLAS "
                             "fastbp calls; default) or numpy.matmul")
    parser.add_argument("--scaling", action="store_true",
                        help="epoch time vs n_samples, batch size and hidden width")
    parser.add_argument("--memory", action="store_true",
                        help="peak RSS of a fit and Python-heap allocations per epoch")
    parser.add_argument("--optimizers", action="store_true",
                        help="one epoch of sgd, momentum, nesterov, rmsprop, adam and adamw "
                             "(nielsen, medium), fastbp and baseline, and each update's cost "
                             "per step (default samples: FASTBP_BENCH_SAMPLES or "
                             f"{DEFAULT_SAMPLES})")
    parser.add_argument("--threads", action="store_true",
                        help="two trainers in two threads against one alone, BLAS threads as "
                             "they are and at 1 (default samples: FASTBP_BENCH_SAMPLES or "
                             f"{DEFAULT_SAMPLES})")
    parser.add_argument("--all", action="store_true",
                        help="the epoch table, --scaling, --memory, --optimizers and --threads")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    n_samples = args.samples if args.samples is not None else bench_samples()
    if n_samples < 1 or args.repeats < 1:
        raise SystemExit("--samples and --repeats must be >= 1")
    # the optimizer and thread sections run many epochs each: fewer samples by default
    extra_samples = args.samples if args.samples is not None else bench_samples(DEFAULT_SAMPLES)
    large_repeats = args.large_repeats or min(args.repeats, 3)
    extras = ("scaling", "memory", "optimizers", "threads")
    sections = ["epochs"] if args.all or not any(getattr(args, name) for name in extras) else []
    sections += [name for name in extras if args.all or getattr(args, name)]
    if args.plot is not None and "epochs" not in sections:
        raise SystemExit("--plot draws the epoch table: run it with the epoch section "
                         "(no section option, or --all)")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401  (fail now, not after the timings)
        except ImportError:
            raise SystemExit("--plot needs matplotlib: pip install 'fastbp[plot]'") from None
    use_torch = not args.no_torch and torch_available()
    if not args.no_torch and not use_torch:
        log("PyTorch is not installed: no torch rows")

    info = machine_info()
    started = time.perf_counter()
    payload = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": info,
        "settings": {
            "n_samples": n_samples, "repeats": args.repeats, "large_repeats": large_repeats,
            "workloads": args.workloads, "dtypes": args.dtypes, "torch": use_torch,
            "roof_blas": args.roof_blas, "learning_rate": 0.1, "sections": sections,
        },
    }
    output = [f"fastbp benchmark report, {payload['date']}"] + format_header(info)
    if set(sections) <= {"optimizers", "threads"}:
        output.append(f"Data:     {extra_samples} samples x 784 features in [0, 1), 10 classes "
                      f"one-hot, seed 0; shuffled batches")
    else:
        output.append(f"Data:     {n_samples} samples x 784 features in [0, 1), 10 classes "
                      f"one-hot, seed 0; learning rate 0.1, shuffled batches")
    if "epochs" in sections:
        output.append(f"Timing:   median of {args.repeats} rounds ({large_repeats} for large) "
                      f"after 1 warm-up, implementations interleaved in each round")

    if "epochs" in sections:
        rows = run_epochs(args.workloads, args.dtypes, n_samples, args.repeats,
                          large_repeats, use_torch, args.roof_blas)
        payload["epochs"] = rows
        output += ["", epoch_table(rows), "",
                   "+- is half the min-max range over rounds, relative to the median; "
                   "roof = BLAS-only time of the epoch's GEMMs / time "
                   f"(roof GEMMs via {args.roof_blas})."]
    if "scaling" in sections:
        from .scaling import run_scaling

        scaling_repeats = min(args.repeats, 3)
        result, text = run_scaling(args.dtypes, n_samples, scaling_repeats, RESULTS_DIR, log)
        output += ["", f"Scaling: median of {scaling_repeats} rounds after 1 warm-up, "
                   "fastbp and baseline interleaved."]
        payload["scaling"] = result
        output += ["", text]
    if "memory" in sections:
        from .memory import run_memory

        result, text = run_memory(args.workloads, args.dtypes, n_samples, log)
        payload["memory"] = result
        output += ["", text]
    if "optimizers" in sections:
        from .extras import run_optimizers

        names = [name for name in args.workloads if name in OPTIMIZER_WORKLOADS]
        result, text = run_optimizers(names, args.dtypes, extra_samples, args.repeats, log,
                                      reference=os.path.join(RESULTS_DIR, "latest.json"))
        payload["optimizers"] = result
        output += ["", text]
    if "threads" in sections:
        from .extras import run_threads

        result, text = run_threads(args.workloads, args.dtypes, extra_samples, args.repeats,
                                   large_repeats, log)
        payload["threads"] = result
        output += ["", text]
    payload["report_seconds"] = time.perf_counter() - started
    output.append(f"\n(report took {payload['report_seconds']:.0f} s)")
    print("\n".join(output), flush=True)

    if args.json is not None:
        path = args.json
    elif len(sections) == 1 and sections != ["epochs"]:
        path = os.path.join(RESULTS_DIR, f"{sections[0]}.json")
    else:
        path = os.path.join(RESULTS_DIR, "latest.json")
    _write_json(path, payload)
    if args.plot is not None:
        from fastbp.plots import plot_benchmark

        log(f"wrote {plot_benchmark(payload, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
