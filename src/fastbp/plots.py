"""Pictures of a fit and of the benchmark report (the ``plot`` extra).

Three functions, each drawing one figure into a PNG file and returning its
path:

- `plot_learning_curves`: training and validation loss and accuracy per
  epoch, the overfitting diagnosis (validation loss turning up while the
  training loss keeps falling), with the best validation epoch marked;
- `plot_gradient_norms`: the norm of dJ/dW^l of every layer per epoch
  (``history["grad_norms"]``), on a log axis, to see vanishing or exploding
  gradients;
- `plot_benchmark`: the speed-up over the NumPy baseline of every other
  implementation, per workload and dtype, from ``python -m bench.report``'s
  JSON.

They need matplotlib (``pip install 'fastbp[plot]'``), imported only when
one of them is called. They draw on a `matplotlib.figure.Figure` with the
Agg canvas directly, without pyplot: no global figure state, no GUI backend
(they work headless and leave the user's backend choice alone), and a figure
per call, so two threads may draw at once.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

__all__ = ["plot_learning_curves", "plot_gradient_norms", "plot_benchmark"]

PathLike = Union[str, "os.PathLike[str]"]

_DPI = 100
# The implementation the speed-ups are over: the report's fast NumPy baseline
# ("numpy"); reports written before it existed call their baseline "baseline"
_BASELINES = ("numpy", "baseline")
# colours of the implementations in the benchmark chart; float32 a lighter shade
_IMPLEMENTATION_COLORS = {
    "fastbp": ("#1f77b4", "#8fbbd9"),
    "torch": ("#ff7f0e", "#ffbf86"),
    "roof": ("#7f7f7f", "#c7c7c7"),
}
_OTHER_COLORS = [("#2ca02c", "#95cf95"), ("#9467bd", "#c9b3de"), ("#8c564b", "#c5aaa5")]
_IMPLEMENTATION_LABELS = {"roof": "roof (GEMMs alone)"}


def _matplotlib():
    """(Figure, FigureCanvasAgg), or an ImportError saying how to install them."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "fastbp.plots needs matplotlib: pip install 'fastbp[plot]'") from error
    return Figure, FigureCanvasAgg


def _save(figure, canvas_class, path):
    path = os.fspath(path)
    canvas_class(figure)
    figure.savefig(path, dpi=_DPI, format="png")
    return path


def _series(history, key, n_epochs):
    """The history's list under key as floats (None -> nan), or None if absent/empty."""
    values = history.get(key)
    if values is None or len(values) == 0:
        return None
    if all(value is None for value in values):
        return None
    if len(values) != n_epochs:
        raise ValueError(f"history[{key!r}] has {len(values)} entries, history['loss'] "
                         f"{n_epochs}: one per epoch expected in both")
    try:
        return [math.nan if value is None else float(value) for value in values]
    except (TypeError, ValueError):
        raise ValueError(f"history[{key!r}] must hold one number per epoch") from None


def _check_history(history):
    if not isinstance(history, Mapping):
        raise TypeError(f"history must be a dict of per-epoch lists (what Trainer.fit "
                        f"returns), not {type(history).__name__}")


def _best(values, larger_is_better):
    """Index of the best finite value, or None."""
    finite = [(value, index) for index, value in enumerate(values) if math.isfinite(value)]
    if not finite:
        return None
    if larger_is_better:
        return max(finite, key=lambda pair: (pair[0], -pair[1]))[1]
    return min(finite)[1]


def plot_learning_curves(history: Mapping[str, Sequence[Any]], path: PathLike,
                         title: str | None = None) -> str:
    """Draw training and validation loss and accuracy per epoch into a PNG.

    The left panel shows the loss, the right one the accuracy, each with the
    training curve (solid) and, when the history has them, the validation
    curve (dashed). The epoch with the lowest validation loss is marked on
    both panels by a dotted vertical line: a validation loss that rises after
    it while the training loss keeps falling is overfitting. A history
    without accuracy (a regression) gets the loss panel alone.

    Parameters
    ----------
    history : mapping of str to sequence of float
        What `Trainer.fit` returns (or `Trainer.history`): ``"loss"`` is
        required, ``"val_loss"``, ``"accuracy"`` and ``"val_accuracy"`` are
        drawn when present and non-empty; other keys are ignored. Each list
        holds one value per epoch.
    path : str or os.PathLike
        The PNG file to write (its directory must exist).
    title : str, optional
        The figure's title; default "Learning curves".

    Returns
    -------
    str
        `path`, as a string.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    TypeError
        If `history` is not a mapping.
    ValueError
        If the history has no ``"loss"`` values, or a list whose length is
        not the number of epochs, or values that are not numbers.

    Examples
    --------
    >>> history = trainer.fit(X, y, epochs=30, validation_split=0.2)  # doctest: +SKIP
    >>> plot_learning_curves(history, "curves.png")                  # doctest: +SKIP
    'curves.png'
    """
    _check_history(history)
    if not history.get("loss"):
        raise ValueError("history has no 'loss' values: nothing to plot (pass what "
                         "Trainer.fit returned after at least one epoch)")
    n_epochs = len(history["loss"])
    loss = _series(history, "loss", n_epochs)
    val_loss = _series(history, "val_loss", n_epochs)
    accuracy = _series(history, "accuracy", n_epochs)
    val_accuracy = _series(history, "val_accuracy", n_epochs)
    Figure, Canvas = _matplotlib()

    panels = 2 if accuracy is not None or val_accuracy is not None else 1
    figure = Figure(figsize=(5.2 * panels + 0.6, 4.2), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    epochs = list(range(1, n_epochs + 1))
    best = _best(val_loss, larger_is_better=False) if val_loss is not None else None
    marker = "o" if n_epochs <= 40 else None
    train_color, validation_color = "#1f77b4", "#d62728"

    def draw(axis, train, validation, name, percent):
        scale = 100.0 if percent else 1.0
        if train is not None:
            axis.plot(epochs, [value * scale for value in train], color=train_color,
                      marker=marker, markersize=3, label=f"training {name}")
        if validation is not None:
            axis.plot(epochs, [value * scale for value in validation], "--",
                      color=validation_color, marker=marker, markersize=3,
                      label=f"validation {name}")
        if best is not None:
            axis.axvline(best + 1, color="#555555", linestyle=":", linewidth=1.2,
                         label=f"lowest validation loss (epoch {best + 1})")
            if validation is not None and math.isfinite(validation[best]):
                axis.plot([best + 1], [validation[best] * scale], "o", markersize=8,
                          markerfacecolor="none", markeredgecolor="black")
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"{name} (%)" if percent else name)
        axis.set_title(name.capitalize())
        axis.grid(True, alpha=0.3)
        axis.set_xlim(0.5, n_epochs + 0.5)
        _integer_epochs(axis)
        axis.legend(fontsize=8, loc="best")

    draw(axes[0], loss, val_loss, "loss", percent=False)
    if panels == 2:
        draw(axes[1], accuracy, val_accuracy, "accuracy", percent=True)
    figure.suptitle(title if title is not None else "Learning curves")
    return _save(figure, Canvas, path)


def plot_gradient_norms(history: Mapping[str, Sequence[Any]], path: PathLike,
                        title: str | None = None) -> str:
    """Draw the per-layer gradient norms per epoch into a PNG, on a log axis.

    One line per layer, "layer 1" (the first weight matrix, next to the
    input) to "layer L" (the output layer), so vanishing gradients show as
    the low layers' lines lying decades below the output layer's, and
    exploding ones as lines climbing. Norms that are zero or not finite are
    left out of the log axis (gaps in the line).

    Parameters
    ----------
    history : mapping of str to sequence
        A fit's history holding ``"grad_norms"``: one sequence per epoch of
        one float per layer, the norm of dJ/dW^l averaged over the epoch's
        batches. Other keys are ignored.
    path : str or os.PathLike
        The PNG file to write (its directory must exist).
    title : str, optional
        The figure's title; default "Gradient norms per layer".

    Returns
    -------
    str
        `path`, as a string.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    TypeError
        If `history` is not a mapping.
    ValueError
        If the history has no ``"grad_norms"`` (or they are empty), or the
        epochs do not all have the same number of layers, or an entry is
        not a number.
    """
    _check_history(history)
    norms = history.get("grad_norms")
    if norms is None or len(norms) == 0:
        raise ValueError("history has no 'grad_norms': nothing to plot (the Trainer "
                         "records them per epoch as history['grad_norms'], one list of "
                         "per-layer norms per epoch)")
    rows = []
    for epoch, row in enumerate(norms, start=1):
        try:
            values = [float(value) for value in row]
        except (TypeError, ValueError):
            raise ValueError(f"history['grad_norms'][{epoch - 1}] must be a sequence of "
                             f"per-layer numbers, got {row!r}") from None
        rows.append(values)
    n_layers = len(rows[0])
    if n_layers == 0:
        raise ValueError("history['grad_norms'] has no layers")
    for epoch, values in enumerate(rows):
        if len(values) != n_layers:
            raise ValueError(f"history['grad_norms'][{epoch}] has {len(values)} layers, "
                             f"epoch 1 had {n_layers}: one norm per layer in every epoch")
    Figure, Canvas = _matplotlib()

    figure = Figure(figsize=(8.0, 4.4), layout="constrained")
    axis = figure.subplots()
    n_epochs = len(rows)
    epochs = list(range(1, n_epochs + 1))
    colors = _layer_colors(n_layers)
    marker = "o" if n_epochs <= 40 else None
    any_positive = False
    for layer in range(n_layers):
        values = [row[layer] if math.isfinite(row[layer]) and row[layer] > 0 else math.nan
                  for row in rows]
        any_positive = any_positive or any(math.isfinite(value) for value in values)
        axis.plot(epochs, values, color=colors[layer], marker=marker, markersize=3,
                  label=f"layer {layer + 1}")
    if any_positive:
        axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel(r"$\|\partial J / \partial W^l\|$ (mean over batches)")
    axis.set_xlim(0.5, n_epochs + 0.5)
    _integer_epochs(axis)
    axis.grid(True, which="major", alpha=0.35)
    axis.grid(True, which="minor", alpha=0.12)
    # beside the axes, layer 1 at the bottom like its line usually is: never over a line
    handles, labels = axis.get_legend_handles_labels()
    axis.legend(handles[::-1], labels[::-1], fontsize=8 if n_layers <= 12 else 7,
                loc="center left", bbox_to_anchor=(1.01, 0.5),
                ncol=1 if n_layers <= 16 else 2)
    figure.suptitle(title if title is not None else "Gradient norms per layer")
    return _save(figure, Canvas, path)


def _integer_epochs(axis):
    """Whole epochs on the x axis (also for a fit of one or two epochs)."""
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _layer_colors(n_layers):
    """Colours from a sequential colormap: layer 1 dark, layer L light."""
    from matplotlib import colormaps

    colormap = colormaps["viridis"]
    if n_layers == 1:
        return [colormap(0.0)]
    return [colormap(0.9 * index / (n_layers - 1)) for index in range(n_layers)]


def _load_report(report):
    if isinstance(report, (str, os.PathLike)):
        with open(report, encoding="utf-8") as stream:
            return json.load(stream)
    if not isinstance(report, Mapping):
        raise TypeError(f"report must be the benchmark report's dict or the path of its "
                        f"JSON file, not {type(report).__name__}")
    return report


def _speedups(rows):
    """{(workload, dtype, implementation): speed-up} and the orders of each."""
    seconds = {}
    workloads: list[str] = []
    dtypes: list[str] = []
    implementations: list[str] = []
    for index, row in enumerate(rows):
        try:
            key = (str(row["workload"]), str(row["dtype"]), str(row["implementation"]))
            value = float(row["seconds"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"report['epochs'][{index}] needs 'workload', 'dtype', "
                             f"'implementation' and a number 'seconds'") from None
        seconds[key] = value
        for name, order in zip(key, (workloads, dtypes, implementations)):
            if name not in order:
                order.append(name)
    present = {implementation for _, _, implementation in seconds}
    baseline = next((name for name in _BASELINES if name in present), _BASELINES[0])
    speedups = {}
    for (workload, dtype, implementation), value in seconds.items():
        if implementation == baseline:
            continue
        base = seconds.get((workload, dtype, baseline))
        if base is None or not value > 0 or not math.isfinite(base):
            continue
        speedups[workload, dtype, implementation] = base / value
    # the roof is a bound, not a rival, and its "speed-up" would flatten every
    # bar beside it: the report's table has it (as % of roof), the chart not
    others = [name for name in implementations if name not in (baseline, "roof")]
    others.sort(key=lambda name: name != "fastbp")      # fastbp first
    return speedups, workloads, dtypes, others


def plot_benchmark(report: Mapping[str, Any] | PathLike, path: PathLike,
                   title: str | None = None) -> str:
    """Draw the benchmark report's speed-ups over the baseline as a bar chart (PNG).

    One group of bars per workload (in the report's order); in each group one
    bar per implementation and dtype: fastbp, then the other implementations
    (the oracle, PyTorch, JAX, scikit-learn: those that ran), float64 in the
    darker and float32 in the lighter shade of the implementation's colour.
    The roof rows are left out: a bound, not a rival (the report's table
    gives each time as a fraction of it). Each
    bar's height is the baseline's median seconds per epoch divided by the
    implementation's, for the same workload and dtype, printed above the bar;
    a horizontal line marks 1x (as fast as the baseline).

    Parameters
    ----------
    report : mapping or str or os.PathLike
        The report as ``python -m bench.report`` writes it
        (``bench/results/latest.json``), parsed or as the path of the JSON
        file. Its ``"epochs"`` list is read: rows with ``"workload"``,
        ``"dtype"``, ``"implementation"`` (the fast baseline's is ``"numpy"``;
        older reports call theirs ``"baseline"``)
        and ``"seconds"``. ``"settings"`` and ``"machine"``, when present,
        go into the subtitle.
    path : str or os.PathLike
        The PNG file to write (its directory must exist).
    title : str, optional
        The figure's title; default "fastbp: speed-up over the NumPy
        baseline per epoch".

    Returns
    -------
    str
        `path`, as a string.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    TypeError
        If `report` is neither a mapping nor a path.
    ValueError
        If the report has no ``"epochs"`` rows, a row lacks a field, or no
        implementation has a baseline row to compare with.
    OSError, json.JSONDecodeError
        If the JSON file cannot be read or parsed.
    """
    parsed = _load_report(report)
    rows = parsed.get("epochs")
    if not rows:
        raise ValueError("the report has no 'epochs' rows: run python -m bench.report "
                         "with its epoch section (the default, or --all)")
    speedups, workloads, dtypes, implementations = _speedups(rows)
    if not speedups:
        raise ValueError("the report has no implementation timed beside the baseline "
                         "('numpy' rows) of the same workload and dtype: no speed-up "
                         "to plot")
    Figure, Canvas = _matplotlib()

    bars = [(implementation, dtype) for implementation in implementations
            for dtype in dtypes
            if any((w, dtype, implementation) in speedups for w in workloads)]
    n_bars = len(bars)
    group_width = 0.82
    width = group_width / n_bars
    figure = Figure(figsize=(max(7.0, 1.2 + 0.42 * n_bars * len(workloads)), 5.0),
                    layout="constrained")
    axis = figure.subplots()
    colors = {}
    extra = iter(_OTHER_COLORS * 4)
    for implementation in implementations:
        colors[implementation] = _IMPLEMENTATION_COLORS.get(implementation) or next(extra)
    top = max(value for (_, _, name), value in speedups.items() if name in implementations)
    label_size = 8 if n_bars <= 6 else 7
    for position, (implementation, dtype) in enumerate(bars):
        shades = colors[implementation]
        shade = shades[min(dtypes.index(dtype), len(shades) - 1)]
        xs, heights = [], []
        for group, workload in enumerate(workloads):
            value = speedups.get((workload, dtype, implementation))
            if value is None:
                continue
            xs.append(group - group_width / 2 + (position + 0.5) * width)
            heights.append(value)
        name = _IMPLEMENTATION_LABELS.get(implementation, implementation)
        drawn = axis.bar(xs, heights, width * 0.92, color=shade, edgecolor="#333333",
                         linewidth=0.6, hatch="//" if implementation == "roof" else None,
                         label=f"{name}, {dtype}")
        axis.bar_label(drawn, labels=[f"{value:.1f}x" for value in heights],
                       fontsize=label_size, padding=2)
    axis.axhline(1.0, color="black", linewidth=1.0, linestyle="--")
    # "1x" in the right margin, beside the line, where no bar can be
    axis.text(1.005, 1.0, "1x", transform=axis.get_yaxis_transform(), va="center",
              ha="left", fontsize=8)
    axis.set_xticks(range(len(workloads)), [_workload_label(rows, w) for w in workloads])
    axis.set_xlim(-0.5, len(workloads) - 0.5)
    axis.set_ylim(0, top * 1.15)
    axis.set_ylabel("speed-up over the NumPy baseline (x)")
    axis.grid(True, axis="y", alpha=0.3)
    axis.set_axisbelow(True)
    axis.yaxis.set_major_formatter(lambda value, _: f"{value:g}x")
    # below the axes, a column per implementation (its dtypes one under the
    # other): never over a bar
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17),
                ncol=len(implementations), frameon=False)
    figure.suptitle(title if title is not None else
                    "fastbp: speed-up over the NumPy baseline per epoch")
    subtitle = _subtitle(parsed)
    if subtitle:
        axis.set_title(subtitle, fontsize=8, color="#444444")
    return _save(figure, Canvas, path)


def _workload_label(rows, workload):
    """"name\\n[784, 30, 10], batch 10" from the workload's first row."""
    for row in rows:
        if str(row.get("workload")) == workload:
            sizes = row.get("layer_sizes")
            batch = row.get("batch_size")
            parts = []
            if sizes:
                parts.append("[" + ", ".join(str(size) for size in sizes) + "]")
            if batch:
                parts.append(f"batch {batch}")
            return workload + ("\n" + ", ".join(parts) if parts else "")
    return workload


def _subtitle(report):
    parts = []
    settings = report.get("settings") or {}
    machine = report.get("machine") or {}
    if settings.get("n_samples"):
        parts.append(f"{settings['n_samples']} samples per epoch")
    if settings.get("repeats"):
        repeats = settings["repeats"]
        parts.append(f"median of {repeats} round{'' if repeats == 1 else 's'}")
    if machine.get("cpu"):
        cores = f", {machine['cores']} cores" if machine.get("cores") else ""
        parts.append(f"{machine['cpu']}{cores}")
    if report.get("date"):
        parts.append(str(report["date"])[:10])
    return "; ".join(parts)
