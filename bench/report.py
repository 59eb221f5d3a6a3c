"""Benchmark report: fastbp against the fast NumPy baseline, its peers and the physical roof.

    python -m bench.report [--samples N] [--repeats R] [--blocks B] [--workloads ...]
                           [--dtypes ...] [--peers ...] [--no-peers] [--json PATH]
                           [--plot PATH]
    python -m bench.report --scaling      # epoch time vs samples, batch size, width
    python -m bench.report --memory       # peak RSS of a fit, allocations per step
    python -m bench.report --optimizers   # one epoch per update rule, cost of each update
    python -m bench.report --threads      # two trainers in two threads vs one alone
    python -m bench.report --estimators   # fastbp.sklearn vs scikit-learn's MLP estimators
    python -m bench.report --all          # all six sections

The epoch table: fastbp, the fast NumPy baseline (``numpy``) and the oracle
(``fastbp.baseline``) run in this process, interleaved (A B C A B C ...)
after one warm-up epoch each. Each peer (PyTorch eager, JAX jit,
scikit-learn's MLPClassifier) runs in a process of its own
(``python -m bench.peer``, one warm-up epoch each: jit compilation is not
timed); the rounds are split into blocks, and each block runs this
process's rounds and then every peer's process, so fastbp and the peers
alternate. Tables quote medians. Unset OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE first (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``).

The roof (bench/roof.py) is measured in this process, per dtype: the
epoch's GEMM FLOPs at the rate of a large square GEMM, or the bytes each
step must move at a measured copy bandwidth, whichever takes longer.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

from .estimators import CASES as ESTIMATOR_CASES
from .estimators import DEFAULT_CASES as DEFAULT_ESTIMATOR_CASES
from .estimators import DEFAULT_MAX_ITER, DIGITS_MAX_ITER, DIGITS_SEEDS
from .estimators import EPOCHS as ESTIMATOR_EPOCHS
from .extras import DEFAULT_SAMPLES, OPTIMIZER_WORKLOADS
from .formatting import format_table
from .machine import format_header, machine_info
from .peer import run_peer
from .roof import GEMM_SIZE, measure_roof
from .runners import PEERS, make_runner, unavailable
from .timing import measure, median
from .workloads import DTYPES, WORKLOADS, bench_samples, epoch_flops, make_data

__all__ = ["GOALS", "LABELS", "main", "run_epochs", "epoch_table", "goals_table"]

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

IN_PROCESS = ("fastbp", "numpy", "oracle")

LABELS = {
    "fastbp": "fastbp",
    "numpy": "numpy (fast baseline)",
    "oracle": "oracle (fastbp.baseline, checks and recomputes)",
    "torch": "torch eager (own process)",
    "jax": "jax jit (own process)",
    "sklearn": "sklearn MLPClassifier (own process)",
    "roof": "roof",
}

# The speed goals for fastbp, per workload and dtype: the minimum
# speed-up over the fast NumPy baseline ("numpy") or over MLPClassifier
# ("sklearn"), and the minimum fraction of the physical roof (or None).
# Every row must also be faster than PyTorch eager and JAX jit (PEER_GOALS).
GOALS = {
    ("nielsen", "float32"): ("numpy", 8.0, None),
    ("nielsen", "float64"): ("numpy", 6.0, None),
    ("medium", "float32"): ("numpy", 3.0, None),
    ("medium", "float64"): ("numpy", 3.0, None),
    ("large", "float32"): ("numpy", 1.5, 0.9),
    ("large", "float64"): ("numpy", 1.5, 0.9),
    ("sklearn-default", "float32"): ("sklearn", 3.0, None),
    ("sklearn-default", "float64"): ("sklearn", 3.0, None),
}
PEER_GOALS = ("torch", "jax")


def log(message):
    print(message, file=sys.stderr, flush=True)


def _goal(workload, dtype, seconds, roof_fraction):
    """The goal criteria of one workload and dtype: a list of (text, met or None).

    `seconds` maps implementation -> median seconds (the ones measured);
    met is None when the implementation compared with was not measured.
    """
    goal = GOALS.get((workload, dtype))
    if goal is None:
        return []
    reference, min_speedup, min_roof = goal
    fastbp = seconds["fastbp"]
    criteria = []
    label = {"numpy": "fast baseline", "sklearn": "MLPClassifier"}[reference]
    if reference in seconds:
        speedup = seconds[reference] / fastbp
        criteria.append((f">= {min_speedup:g}x {label} ({speedup:.2f}x)",
                         speedup >= min_speedup))
    else:
        criteria.append((f">= {min_speedup:g}x {label} (not measured)", None))
    if min_roof is not None:
        criteria.append((f">= {min_roof:.0%} of roof ({roof_fraction:.0%})",
                         roof_fraction >= min_roof))
    for peer in PEER_GOALS:
        if peer in seconds:
            ratio = seconds[peer] / fastbp
            criteria.append((f"faster than {peer} ({ratio:.2f}x)", ratio > 1.0))
        else:
            criteria.append((f"faster than {peer} (not measured)", None))
    return criteria


def _goal_met(criteria):
    """True, False, or None (some criterion not measured and none failed)."""
    if not criteria:
        return None
    if any(met is False for _, met in criteria):
        return False
    if any(met is None for _, met in criteria):
        return None
    return True


def _split(rounds, blocks):
    blocks = max(1, min(blocks, rounds))
    return [rounds // blocks + (1 if index < rounds % blocks else 0) for index in range(blocks)]


def run_epochs(workload_names, dtypes, n_samples, repeats, large_repeats, peers=PEERS,
               blocks=2, gemm_size=GEMM_SIZE, peer_runner=run_peer):
    """Time one epoch of every implementation; (rows, roofs, notes).

    rows: one dict per implementation, workload and dtype, plus a "roof" row
    each; roofs: dtype -> the measured rates; notes: peers that were skipped,
    and why.
    """
    rows, roofs, notes = [], {}, []
    for dtype in dtypes:
        log(f"roof rates, {dtype}: {gemm_size}^3 GEMM, copy bandwidth")
        roof = measure_roof(dtype, gemm_size=gemm_size)
        log(f"making data: {n_samples} x 784, {dtype}")
        X, Y = make_data(n_samples, dtype)
        for name in workload_names:
            workload = WORKLOADS[name]
            rounds = large_repeats if name == "large" else repeats
            runnable = []
            for peer in peers:
                reason = unavailable(peer, workload)
                if reason is None:
                    runnable.append(peer)
                else:
                    notes.append(f"{peer} skipped on {name} {dtype}: {reason}")
            log(f"{workload}, {dtype}: {', '.join(IN_PROCESS)} here, "
                f"{', '.join(runnable) or 'no peers'} in their own processes; "
                f"{rounds} rounds in blocks {_split(rounds, blocks)}")
            runners = {implementation: make_runner(implementation, workload, X, Y)
                       for implementation in IN_PROCESS}
            times = {implementation: [] for implementation in list(IN_PROCESS) + runnable}
            peer_info = {}
            for index, block_rounds in enumerate(_split(rounds, blocks)):
                block = measure(runners, block_rounds, warmup=1 if index == 0 else 0, log=log)
                for implementation, values in block.items():
                    times[implementation] += values
                for peer in list(runnable):
                    result = peer_runner(peer, name, dtype, n_samples, block_rounds)
                    if result.get("skipped"):
                        notes.append(f"{peer} skipped on {name} {dtype}: {result['skipped']}")
                        times.pop(peer, None)
                        runnable.remove(peer)
                        continue
                    times[peer] += result["times"]
                    peer_info[peer] = {key: result.get(key) for key in
                                       ("version", "threads", "loss")}
                    log(f"  block {index + 1} {peer} (pid {result.get('pid')}): "
                        + ", ".join(f"{value:.4f}" for value in result["times"]) + " s")
            del runners
            flops = epoch_flops(workload.layer_sizes, n_samples, workload.batch_size)
            compute, memory, roof_time = roof.bounds(workload, n_samples)
            medians = {key: median(values) for key, values in times.items() if values}
            criteria = _goal(name, dtype, medians, roof_time / medians["fastbp"])
            common = {
                "workload": name, "layer_sizes": list(workload.layer_sizes),
                "batch_size": workload.batch_size, "activation": workload.activation,
                "output": workload.output, "loss": workload.loss,
                "rule": workload.describe_rule(), "dtype": dtype, "n_samples": n_samples,
                "epoch_gflop": flops / 1e9,
            }
            for implementation, seconds in medians.items():
                values = times[implementation]
                row = dict(common, implementation=implementation,
                           label=LABELS[implementation],
                           process="own" if implementation in PEERS else "report",
                           times=values, seconds=seconds,
                           spread=(max(values) - min(values)) / (2 * seconds),
                           samples_per_second=n_samples / seconds,
                           gflops=flops / seconds / 1e9,
                           speedup=medians["numpy"] / seconds,
                           speedup_vs_oracle=medians["oracle"] / seconds,
                           fastbp_speedup=seconds / medians["fastbp"],
                           roof_fraction=roof_time / seconds,
                           beats_roof=seconds < roof_time,
                           peer=peer_info.get(implementation),
                           goal=[], goal_met=None)
                if implementation == "fastbp":
                    row["goal"] = [{"criterion": text, "met": met} for text, met in criteria]
                    row["goal_met"] = _goal_met(criteria)
                rows.append(row)
            rows.append(dict(common, implementation="roof", label=LABELS["roof"],
                             process="report", times=[], seconds=roof_time, spread=0.0,
                             samples_per_second=n_samples / roof_time,
                             gflops=flops / roof_time / 1e9,
                             speedup=medians["numpy"] / roof_time,
                             speedup_vs_oracle=medians["oracle"] / roof_time,
                             fastbp_speedup=roof_time / medians["fastbp"],
                             roof_fraction=1.0, beats_roof=False,
                             roof_compute_seconds=compute, roof_memory_seconds=memory,
                             roof_bound="compute" if compute >= memory else "memory",
                             peer=None, goal=[], goal_met=None))
            for row in rows[-len(medians) - 1:-1]:
                if row["beats_roof"]:
                    log(f"WARNING: {row['label']} on {name} {dtype} took {row['seconds']:.4f} s, "
                        f"less than the roof {roof_time:.4f} s: the roof is wrong")
        roofs[dtype] = roof.as_dict()
        del X, Y
    return rows, roofs, notes


def epoch_table(rows):
    headers = ["workload", "dtype", "implementation", "s/epoch", "+-", "best", "samples/s",
               "GFLOP/s", "vs numpy", "fastbp faster", "% of roof"]
    body = []
    for row in rows:
        roof = row["implementation"] == "roof"
        if roof:
            label = f"roof ({row['roof_bound']} bound)"
            share = "-"
        else:
            label = row["label"]
            share = f"{row['roof_fraction']:.0%}" + (" ROOF WRONG" if row["beats_roof"] else "")
        body.append([
            row["workload"], row["dtype"], label,
            f"{row['seconds']:.4f}", "-" if roof else f"{row['spread']:.0%}",
            "-" if roof else f"{min(row['times']):.4f}",
            f"{row['samples_per_second']:,.0f}", f"{row['gflops']:.1f}",
            f"{row['speedup']:.2f}x",
            "-" if row["implementation"] == "fastbp" else f"{row['fastbp_speedup']:.2f}x",
            share,
        ])
    return format_table(headers, body, right=range(3, 11))


NOISY = 0.25     # a goal's rows with a larger +- (half range / median) are flagged


def goals_table(rows):
    headers = ["workload", "dtype", "goal", "status", "noise"]
    body = []
    for row in rows:
        if row["implementation"] != "fastbp" or not row["goal"]:
            continue
        spreads = {other["implementation"]: other["spread"] for other in rows
                   if (other["workload"], other["dtype"]) == (row["workload"], row["dtype"])
                   and other["implementation"] in ("fastbp", "numpy", "sklearn") + PEER_GOALS}
        worst = max(spreads, key=spreads.get)
        noise = (f"NOISY: {worst} +-{spreads[worst]:.0%}" if spreads[worst] > NOISY
                 else f"max +-{spreads[worst]:.0%}")
        texts = []
        for item in row["goal"]:
            mark = {True: "met", False: "NOT met", None: "?"}[item["met"]]
            texts.append(f"{item['criterion']}: {mark}")
        status = {True: "met", False: "NOT met", None: "incomplete"}[row["goal_met"]]
        body.append([row["workload"], row["dtype"], "; ".join(texts), status, noise])
    return format_table(headers, body, right=())


def roof_lines(roofs):
    lines = []
    for dtype, roof in roofs.items():
        caches = ", ".join(f"{int(size) / 1024:,.0f} KiB: {rate / 1e9:.0f} GB/s"
                           for size, rate in sorted(roof["cache_bandwidth"].items(),
                                                    key=lambda item: int(item[0])))
        lines.append(f"Roof {dtype}: {roof['gemm_size']}^3 GEMM {roof['gemm_flops'] / 1e9:.0f} "
                     f"GFLOP/s; copy {roof['dram_bandwidth'] / 1e9:.0f} GB/s (DRAM), "
                     f"at the parameters' footprint {caches}")
    return lines


def _plot_payload(payload):
    """The payload with the fast baseline as fastbp.plots' 'baseline' (and no oracle)."""
    epochs = []
    for row in payload.get("epochs", []):
        if row["implementation"] == "oracle":
            continue
        if row["implementation"] == "numpy":
            row = dict(row, implementation="baseline")
        epochs.append(row)
    return dict(payload, epochs=epochs)


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
        description="Time fastbp against the fast NumPy baseline, its peers (each in its own "
                    "process) and the physical roof.",
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
    parser.add_argument("--peers", nargs="*", choices=list(PEERS), default=list(PEERS),
                        help="peers to time, each in its own process (default: all; those "
                             "not installed are skipped with a note)")
    parser.add_argument("--no-peers", action="store_true", help="time no peers")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--blocks", type=int, default=2,
                        help="split the rounds into this many blocks, alternating this "
                             "process's rounds with each peer's process (default 2)")
    parser.add_argument("--gemm-size", type=int, default=GEMM_SIZE,
                        help=f"n of the n^3 GEMM whose rate is the roof (default {GEMM_SIZE})")
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
    parser.add_argument("--estimators", action="store_true",
                        help="fastbp.sklearn's MLPClassifier / MLPRegressor against "
                             "scikit-learn's with the same parameters, each in its own "
                             "processes: s/epoch and a whole fit at the defaults, and the "
                             "accuracy on the digits (bench/estimators.py)")
    parser.add_argument("--estimator-cases", nargs="+", choices=list(ESTIMATOR_CASES),
                        default=list(DEFAULT_ESTIMATOR_CASES),
                        help="--estimators: the estimators and batch sizes (default: "
                             + " ".join(DEFAULT_ESTIMATOR_CASES) + ")")
    parser.add_argument("--estimator-repeats", type=int, default=3,
                        help="--estimators: timed fits of --estimator-epochs epochs per "
                             "library (default 3; medians are quoted)")
    parser.add_argument("--estimator-epochs", type=int, default=ESTIMATOR_EPOCHS,
                        help=f"--estimators: epochs of each timed fit (default "
                             f"{ESTIMATOR_EPOCHS})")
    parser.add_argument("--fit-repeats", type=int, default=1,
                        help="--estimators: whole fits at the defaults per library (default "
                             "1; 0 leaves them out)")
    parser.add_argument("--fit-max-iter", type=int, default=DEFAULT_MAX_ITER,
                        help=f"--estimators: max_iter of the whole fits (default "
                             f"{DEFAULT_MAX_ITER}, scikit-learn's; a smaller cap is said in "
                             f"the output)")
    parser.add_argument("--estimator-blas-threads", type=int, default=None,
                        help="--estimators: OPENBLAS_NUM_THREADS of both libraries' processes "
                             "(default: as they are; 1 is steadier on a busy machine)")
    parser.add_argument("--digits-seeds", type=int, nargs="*", default=list(DIGITS_SEEDS),
                        help="--estimators: seeds of the digits accuracy comparison (default "
                             "0 1 2; none leaves it out)")
    parser.add_argument("--digits-max-iter", type=int, default=DIGITS_MAX_ITER,
                        help=f"--estimators: max_iter of the digits fits (default "
                             f"{DIGITS_MAX_ITER})")
    parser.add_argument("--all", action="store_true",
                        help="the epoch table, --scaling, --memory, --optimizers, --threads "
                             "and --estimators")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    n_samples = args.samples if args.samples is not None else bench_samples()
    if n_samples < 1 or args.repeats < 1:
        raise SystemExit("--samples and --repeats must be >= 1")
    # the optimizer and thread sections run many epochs each: fewer samples by default
    extra_samples = args.samples if args.samples is not None else bench_samples(DEFAULT_SAMPLES)
    large_repeats = args.large_repeats or min(args.repeats, 3)
    extras = ("scaling", "memory", "optimizers", "threads", "estimators")
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
    peers = [] if args.no_peers else [peer for peer in args.peers
                                      if not (args.no_torch and peer == "torch")]
    if args.blocks < 1:
        raise SystemExit("--blocks must be >= 1")
    if (args.estimator_repeats < 1 or args.estimator_epochs < 1 or args.fit_repeats < 0
            or args.fit_max_iter < 1 or args.digits_max_iter < 1
            or (args.estimator_blas_threads is not None and args.estimator_blas_threads < 1)):
        raise SystemExit("--estimator-repeats, --estimator-epochs, --fit-max-iter, "
                         "--digits-max-iter and --estimator-blas-threads must be >= 1, "
                         "--fit-repeats >= 0")

    info = machine_info()
    started = time.perf_counter()
    payload = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": info,
        "settings": {
            "n_samples": n_samples, "repeats": args.repeats, "large_repeats": large_repeats,
            "workloads": args.workloads, "dtypes": args.dtypes, "peers": peers,
            "blocks": args.blocks, "gemm_size": args.gemm_size, "sections": sections,
            "estimator_cases": args.estimator_cases,
            "estimator_repeats": args.estimator_repeats,
            "estimator_epochs": args.estimator_epochs, "fit_repeats": args.fit_repeats,
            "fit_max_iter": args.fit_max_iter, "digits_seeds": args.digits_seeds,
            "estimator_blas_threads": args.estimator_blas_threads,
            "digits_max_iter": args.digits_max_iter,
        },
    }
    output = [f"fastbp benchmark report, {payload['date']}"] + format_header(info)
    if set(sections) <= {"optimizers", "threads"}:
        output.append(f"Data:     {extra_samples} samples x 784 features in [0, 1), 10 classes "
                      f"one-hot, seed 0; shuffled batches")
    else:
        output.append(f"Data:     {n_samples} samples x 784 features in [0, 1), 10 classes "
                      f"one-hot, seed 0; shuffled batches")
    if "epochs" in sections:
        output.append(f"Timing:   median of {args.repeats} rounds ({large_repeats} for large) "
                      f"after 1 warm-up; fastbp, numpy and oracle interleaved in this process, "
                      f"each peer in its own process (1 warm-up epoch there, compile "
                      f"excluded), alternated with this process's rounds in "
                      f"{args.blocks} block(s)")

    if "epochs" in sections:
        rows, roofs, notes = run_epochs(args.workloads, args.dtypes, n_samples, args.repeats,
                                        large_repeats, peers, args.blocks, args.gemm_size)
        payload["epochs"] = rows
        payload["roofs"] = roofs
        payload["notes"] = notes
        workloads = [WORKLOADS[name] for name in args.workloads]
        beaten = [row for row in rows if row.get("beats_roof")]
        output += roof_lines(roofs)
        output += ["Workloads: " + "; ".join(str(workload) for workload in workloads), "",
                   epoch_table(rows), "",
                   "+- is half the min-max range over rounds, relative to the median; best is "
                   "the fastest round (s). "
                   "vs numpy = the fast NumPy baseline's time / this time; fastbp faster = "
                   "this time / fastbp's; % of roof = roof time / this time. The roof is the "
                   "larger of two lower bounds measured in this process: the epoch's GEMM "
                   "FLOPs at the large square GEMM's rate, and the bytes each step must move "
                   "(every W, b read twice and written once, the batch read once) at the "
                   "copy bandwidth (bench/roof.py)."]
        output += [("WARNING: " + ", ".join(f"{row['label']} on {row['workload']} "
                                            f"{row['dtype']}" for row in beaten)
                    + " ran faster than the roof: the roof is wrong (flagged ROOF WRONG).")
                   if beaten else "No measured time beat its roof."]
        if notes:
            output += [""] + [f"Note: {note}" for note in dict.fromkeys(notes)]
        output += ["", "Goals (the issue's; fastbp rows, on the medians):", "", goals_table(rows),
                   "", f"noise: the largest +- among the rows the goal compares (fastbp, the fast "
                   "baseline or MLPClassifier, torch, jax); "
                   f"NOISY above {NOISY:.0%}: a busy spell of the machine hit some rounds, "
                   "and the ratios of that row are not reliable (compare the best column)."]
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
    if "estimators" in sections:
        from .estimators import digits_accuracy, run_estimators

        result, text = run_estimators(args.dtypes, n_samples, args.estimator_cases,
                                      args.estimator_epochs, args.estimator_repeats,
                                      args.blocks, args.fit_repeats, args.fit_max_iter, log,
                                      blas_threads=args.estimator_blas_threads)
        payload["estimators"] = result
        output += ["", text]
        if args.digits_seeds:
            result, text = digits_accuracy(args.digits_seeds, args.digits_max_iter,
                                           args.dtypes, log)
            payload["digits"] = result
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

        log(f"wrote {plot_benchmark(_plot_payload(payload), args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
