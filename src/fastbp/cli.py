"""The ``fastbp`` command line: train, predict, evaluate, info, export, bench.

``fastbp train DATA --model OUT.npz`` fits a network to a table (a CSV file
with a header, an .npz file with arrays X and y, or ``digits``) and writes a
`fastbp.Model` (network, task, class labels, feature names, standardisation,
history: model file version 2); the other subcommands read that file.
``fastbp`` alone, ``fastbp demo`` and ``fastbp --epochs 5`` run the digits
demo of ``fastbp.__main__``, which dispatches here when its first argument
names one of `COMMANDS`.

A user's mistake (a missing file, an unknown column, a bad option value, a
model that does not fit the data) prints one line ``fastbp: error: ...`` on
stderr and exits with status 2; Ctrl-C exits with status 130, and an
interrupted ``train`` writes nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Callable, NoReturn, Sequence, TextIO

import numpy as np

from . import EarlyStopping, Model, Network, Trainer
from ._contract import DTYPES, HIDDEN_ACTIVATIONS, OPTIMIZERS
from ._data import held_out_split
from ._tabular import DataError, Table, encode_labels, fit_scaling, infer_task, parse_labels
from ._tabular import read_table
from .trainer import DivergenceError

__all__ = ["COMMANDS", "UsageError", "build_parser", "main"]

COMMANDS = ("train", "predict", "evaluate", "info", "export", "bench")

# fastbp bench --quick: small sizes, no PyTorch; a smoke run of the report
QUICK_BENCH = ["--samples", "2000", "--repeats", "2", "--no-torch"]

# early stopping on the validation loss, unless --patience says otherwise
DEFAULT_PATIENCE = 10

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130      # 128 + SIGINT, what a shell reports for Ctrl-C


class UsageError(Exception):
    """A mistake of the user's: reported as one ``fastbp: error:`` line, status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``fastbp: error: ...``."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split()[-1] if " " in self.prog else None
        hint = f" (see fastbp {command} --help)" if command else " (see fastbp --help)"
        _print_error(message + hint)
        sys.exit(EXIT_USAGE)


def _target_of(table: Table) -> np.ndarray:
    """The table's target column, which a table read with its target has."""
    if table.y is None:
        raise UsageError(f"{table.source} has no target column")
    return table.y


def _classes_of(model: Model) -> np.ndarray:
    """A classifier's class labels."""
    if model.classes is None:
        raise UsageError("this model has no classes: it regresses")
    return model.classes


def _print_error(message: object) -> None:
    print(f"fastbp: error: {' '.join(str(message).split())}", file=sys.stderr)


# ------------------------------------------------------------------ options

def _hidden_sizes(text: str) -> list[int]:
    """``100,50`` -> [100, 50]; an empty string is no hidden layer."""
    if not text.strip():
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes such as 100,50, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be >= 1, got {text!r}")
    return sizes


def _bounded(kind: type, low: float, high: float | None = None, low_open: bool = False,
             what: str = "") -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not np.isfinite(value) or value < low or (low_open and value == low) or (
                high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the subcommands (``fastbp COMMAND ...``).

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    parser = _Parser(
        prog="fastbp",
        description="Fully connected networks trained by backpropagation: train on a CSV "
                    "or .npz table, predict, evaluate, inspect and export the model file. "
                    "'fastbp' alone (or 'fastbp demo') runs the digits demo.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train", help="train a network on a table and write the model file",
        description="Train a network on DATA and write the model (network, label encoding, "
                    "feature names and standardisation) to --model. A progress bar goes to "
                    "stderr, one summary line to stdout.")
    train.add_argument("data", metavar="DATA",
                       help="a CSV file with a header row, an .npz file with arrays X and y, "
                            "or 'digits' (scikit-learn's handwritten digits)")
    train.add_argument("--target", metavar="COLUMN",
                       help="the CSV column to predict (default: the last column)")
    train.add_argument("--model", metavar="OUT.npz", required=True,
                       help="where to write the model file (written only once training ends)")
    train.add_argument("--hidden", type=_hidden_sizes, default=[100], metavar="SIZES",
                       help="hidden layer sizes, comma-separated, e.g. 100,50; '' for none "
                            "(default: 100)")
    train.add_argument("--activation", default="relu", choices=HIDDEN_ACTIVATIONS,
                       help="hidden activation (default: relu)")
    train.add_argument("--task", choices=("classify", "regress"), default=None,
                       help="default: classify for string labels or integer labels with at "
                            "most 20 distinct values, regress otherwise. Classifiers get a "
                            "softmax output (one sigmoid output for 2 classes) and "
                            "cross-entropy, regressors an identity output and mse on "
                            "standardised targets")
    train.add_argument("--optimizer", default="adam", choices=OPTIMIZERS,
                       help="update rule (default: adam)")
    train.add_argument("--learning-rate", type=_bounded(float, 0, low_open=True, what="> 0"),
                       default=1e-3, metavar="R", help="step size (default: 1e-3)")
    train.add_argument("--batch-size", type=_bounded(int, 1, what=">= 1"), default=32,
                       metavar="B", help="samples per update (default: 32)")
    train.add_argument("--epochs", type=_bounded(int, 1, what=">= 1"), default=200,
                       metavar="E", help="most passes over the training rows (default: 200; "
                                         "early stopping usually ends sooner)")
    train.add_argument("--l2", type=_bounded(float, 0, what=">= 0"), default=1e-4, metavar="L",
                       help="L2 penalty on the weights (default: 1e-4)")
    train.add_argument("--validation-split", type=_bounded(float, 0, 1, what="in [0, 1)"),
                       default=0.1, metavar="F",
                       help="fraction of the rows held out (stratified for classes) to watch "
                            "for early stopping; 0 trains on every row without early "
                            "stopping (default: 0.1)")
    train.add_argument("--patience", type=_bounded(int, 0, what=">= 0"), default=None,
                       metavar="P",
                       help="stop after P epochs without a lower validation loss and keep the "
                            "best epoch's weights; 0 never stops early (default: 10)")
    train.add_argument("--dtype", default="float64", choices=DTYPES,
                       help="the network's float type (default: float64)")
    train.add_argument("--seed", type=_bounded(int, 0, what=">= 0"), default=0, metavar="S",
                       help="seed of the weights, the split and the shuffling (default: 0)")
    train.add_argument("--no-scale", action="store_true",
                       help="do not standardise the features (by default they are, with the "
                            "training rows' mean and standard deviation; a regressor's "
                            "targets are standardised always)")
    train.add_argument("--curve", metavar="CURVE.png",
                       help="also draw the loss per epoch into a PNG file (needs matplotlib)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=train_command)

    predict = commands.add_parser(
        "predict", help="predict with a model file",
        description="One prediction per row of DATA, in the original labels (or target "
                    "units), as CSV on stdout or into --out. A target column in DATA is "
                    "ignored when the model knows its feature names.")
    predict.add_argument("model", metavar="MODEL", help="a model file from fastbp train")
    predict.add_argument("data", metavar="DATA", help="CSV file, .npz file or 'digits'")
    predict.add_argument("--out", metavar="PRED.csv", help="write the predictions here")
    predict.add_argument("--proba", action="store_true",
                         help="class probabilities instead, one column per class")
    predict.set_defaults(run=predict_command)

    evaluate = commands.add_parser(
        "evaluate", help="loss, accuracy or R^2, confusion matrix of a model on a table",
        description="Score MODEL on the labelled rows of DATA: the loss (cross-entropy, or "
                    "mse on standardised targets), accuracy and confusion matrix for a "
                    "classifier, R^2, RMSE and MAE for a regressor.")
    evaluate.add_argument("model", metavar="MODEL")
    evaluate.add_argument("data", metavar="DATA")
    evaluate.add_argument("--target", metavar="COLUMN",
                          help="the CSV column with the true values (default: the column "
                               "that is not a feature of the model, else the last)")
    evaluate.set_defaults(run=evaluate_command)

    info = commands.add_parser(
        "info", help="describe a model file",
        description="Architecture, dtype, classes, preprocessing and training history.")
    info.add_argument("model", metavar="MODEL")
    info.set_defaults(run=info_command)

    export = commands.add_parser("export", help="write a model as ONNX",
                                 description="Write MODEL as an ONNX graph to OUT.onnx.")
    export.add_argument("model", metavar="MODEL")
    export.add_argument("out", metavar="OUT.onnx")
    export.set_defaults(run=export_command)

    bench = commands.add_parser(
        "bench", help="the benchmark report (from a source checkout)",
        description="Run 'python -m bench.report' from the repository's bench/ directory, "
                    "which must be under the current directory.")
    bench.add_argument("--quick", action="store_true",
                       help="small sizes, no PyTorch (" + " ".join(QUICK_BENCH) + "), results "
                            "to a temporary file, not bench/results/latest.json")
    bench.set_defaults(run=bench_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default ``sys.argv[1:]``),
        starting with the subcommand.

    Returns
    -------
    status : int
        0 on success, 2 for a user's mistake (after one ``fastbp: error:``
        line on stderr), 130 after Ctrl-C, or the benchmark's own status.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, DataError) as exc:
        _print_error(exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        saved = "; nothing was saved" if args.command == "train" else ""
        print(f"fastbp: interrupted{saved}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:     # `fastbp predict ... | head`
        sys.stderr.close()
        return 1


# ------------------------------------------------------------------ helpers

def _load_model(path: str) -> Model:
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a model file")
    if not zipfile.is_zipfile(path):    # a CSV given for the model, say
        raise UsageError(f"{path} is not a fastbp model file (not an .npz archive)")
    try:
        return Model.load(path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{path} cannot be read: {exc.strerror or exc}") from None


def _check_output(path: str, option: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a directory")
    if not os.path.isdir(directory):
        raise UsageError(f"{option} {path}: the directory {directory} does not exist")


def _loss_name(model: Model) -> str:
    return "cross_entropy" if model.task == "classify" else "mse"


def _network_targets(model: Model, y: np.ndarray) -> np.ndarray:
    """`y` as the Trainer takes it: class indices (a 0/1 column for one output) or values."""
    encoded = model.encode_targets(y)
    if model.task == "classify" and model.network.layer_sizes[-1] > 1:
        return encoded
    return np.asarray(encoded, dtype=np.float64).reshape(len(encoded), -1)


def _scores(model: Model, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Data loss (no penalty), and accuracy or R^2, of `model` on (X, y)."""
    measure = Trainer(model.network, loss=_loss_name(model))
    scores = {"loss": measure.evaluate(model.transform(X), _network_targets(model, y))["loss"]}
    predicted = model.predict(X)
    if model.task == "classify":
        scores["accuracy"] = float(np.mean(predicted == y))
    else:
        y = np.asarray(y, dtype=np.float64)
        total = float(np.sum((y - y.mean()) ** 2))
        residual = float(np.sum((y - predicted) ** 2))
        scores["r2"] = 1 - residual / total if total > 0 else float("nan")
        scores["rmse"] = float(np.sqrt(np.mean((y - predicted) ** 2)))
        scores["mae"] = float(np.mean(np.abs(y - predicted)))
    return scores


def _describe_scores(scores: dict[str, float]) -> str:
    if "accuracy" in scores:
        return f"loss {scores['loss']:.4f}, accuracy {scores['accuracy']:.4f}"
    return f"loss {scores['loss']:.4f}, R^2 {scores['r2']:.4f}"


def _format_value(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10g}"
    return str(value.item() if isinstance(value, np.generic) else value)


# -------------------------------------------------------------------- train

def train_command(args: argparse.Namespace) -> int:
    """``fastbp train``: fit a network to a table and write the model file.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (see ``fastbp train --help``).

    Returns
    -------
    status : int
    """
    _check_output(args.model, "--model")
    if args.patience is None:
        args.patience = DEFAULT_PATIENCE if args.validation_split else 0
    elif args.patience and not args.validation_split:
        raise UsageError("--patience needs a validation split (--validation-split > 0)")
    if args.curve is not None:
        _check_output(args.curve, "--curve")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--curve needs matplotlib (pip install 'fastbp[plot]')") from None

    table = read_table(args.data, target=args.target)
    X, y = table.X, _target_of(table)
    if table.n_samples < 2:
        raise UsageError(f"too few rows: {table.source} has {table.n_samples}; training "
                         f"needs at least 2")
    task = args.task or infer_task(y)
    classes: np.ndarray | None = None
    target_mean: float | None = None
    target_scale: float | None = None
    if task == "classify":
        classes, _ = encode_labels(y)
        if classes.size < 2:
            raise UsageError(f"the target column {table.target_name!r} holds one class only "
                             f"({_format_value(classes[0])}); a classifier needs two or more")
        n_outputs = 1 if classes.size == 2 else classes.size
        output = "sigmoid" if classes.size == 2 else "softmax"
    else:
        if y.dtype.kind not in "iufb":
            raise UsageError(f"cannot regress on the target column {table.target_name!r}: it "
                             f"is not numeric (use --task classify)")
        y = y.astype(np.float64)
        mean, scale = fit_scaling(y.reshape(-1, 1))
        target_mean, target_scale = float(mean[0]), float(scale[0])
        n_outputs, output = 1, "identity"

    # the split first, so that the scaling is fitted on the training rows only
    rng = np.random.default_rng(args.seed)
    if args.validation_split:
        if classes is not None:
            index = np.searchsorted(classes, y)
            Y = np.eye(max(n_outputs, 2))[index][:, -n_outputs:]
        else:
            Y = y.reshape(-1, 1)
        try:
            train_rows, val_rows = held_out_split(Y, task == "classify",
                                                  args.validation_split, rng)
        except ValueError:
            raise UsageError(f"too few rows: the {table.n_samples} rows of {table.source} "
                             f"leave none for training or validation with --validation-split "
                             f"{args.validation_split:g}; add rows or give "
                             f"--validation-split 0") from None
    else:
        train_rows, val_rows = np.arange(table.n_samples), None
    feature_mean = feature_scale = None
    if not args.no_scale:
        feature_mean, feature_scale = fit_scaling(X[train_rows])

    try:
        network = Network([X.shape[1], *args.hidden, n_outputs], activation=args.activation,
                          output=output, dtype=args.dtype, seed=args.seed)
        model = Model(network, task=task, classes=classes, feature_names=table.feature_names,
                      feature_mean=feature_mean, feature_scale=feature_scale,
                      target_mean=target_mean, target_scale=target_scale)
        trainer = Trainer(network, loss=_loss_name(model), optimizer=args.optimizer,
                          learning_rate=args.learning_rate, batch_size=args.batch_size,
                          l2=args.l2, seed=args.seed)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    inputs, targets = model.transform(X), _network_targets(model, y)
    validation, callbacks, stopper = None, [], None
    if val_rows is not None:
        validation = (inputs[val_rows], targets[val_rows])
        if args.patience:
            stopper = EarlyStopping(monitor="val_loss", patience=args.patience)
            callbacks.append(stopper)
    started = time.perf_counter()
    try:
        trainer.fit(inputs[train_rows], targets[train_rows], epochs=args.epochs,
                    validation_data=validation, verbose=0 if args.quiet else 1,
                    callbacks=callbacks)
    except DivergenceError as exc:
        raise UsageError(f"training diverged ({exc}); try a smaller --learning-rate") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    seconds = time.perf_counter() - started
    model.history = {key: list(values) for key, values in trainer.history.items()}

    try:
        model.save(args.model)
    except OSError as exc:
        raise UsageError(f"could not write --model {args.model}: {exc.strerror or exc}") \
            from None
    summary = f"trained {trainer.epoch} epochs in {seconds:.2f} s"
    if stopper is not None and stopper.stopped_epoch is not None:
        summary += f" (early stop; best epoch {stopper.best_epoch})"
    summary += f": train {_describe_scores(_scores(model, X[train_rows], y[train_rows]))}"
    if val_rows is not None:
        summary += f"; validation {_describe_scores(_scores(model, X[val_rows], y[val_rows]))}"
    summary += f"; wrote {args.model}"
    if args.curve is not None:
        _draw_curve(model.history, args.curve, table.source)
        summary += f" and {args.curve}"
    print(summary)
    return 0


def _draw_curve(history: dict[str, list[float]], path: str, source: str) -> None:
    """Learning curves (loss and accuracy, train and validation) into a PNG."""
    from .plots import plot_learning_curves

    try:
        plot_learning_curves(history, path, title=os.path.basename(source))
    except OSError as exc:
        raise UsageError(f"could not write --curve {path}: {exc.strerror or exc}") from None


# ------------------------------------------------------------ predict, evaluate

def _read_for(model: Model, data: str, want_target: bool, target: str | None = None) -> Table:
    return read_table(data, target=target, want_target=want_target,
                      features=model.feature_names, n_features=model.n_features)


def predict_command(args: argparse.Namespace) -> int:
    """``fastbp predict``: predictions (or probabilities) for every row, as CSV.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    status : int
    """
    model = _load_model(args.model)
    if args.out is not None:
        _check_output(args.out, "--out")
    if args.proba and model.task != "classify":
        raise UsageError("--proba needs a classifier; this model regresses")
    table = _read_for(model, args.data, want_target=False)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if args.proba:
        writer.writerow([_format_value(label) for label in _classes_of(model)])
        for row in model.predict_proba(table.X):
            writer.writerow([f"{p:.6g}" for p in row])
    else:
        predictions = model.predict(table.X)
        if predictions.ndim == 1:
            writer.writerow(["prediction"])
            writer.writerows([_format_value(value)] for value in predictions)
        else:
            writer.writerow([f"prediction_{k}" for k in range(predictions.shape[1])])
            writer.writerows([_format_value(v) for v in row] for row in predictions)
    if args.out is None:
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
        return 0
    try:
        with open(args.out, "w", newline="", encoding="utf-8") as stream:
            stream.write(buffer.getvalue())
    except OSError as exc:
        raise UsageError(f"could not write --out {args.out}: {exc.strerror or exc}") from None
    print(f"wrote {table.n_samples} {'probabilities' if args.proba else 'predictions'} "
          f"to {args.out}", file=sys.stderr)
    return 0


def _true_values(model: Model, table: Table) -> np.ndarray:
    y = _target_of(table)
    if table.raw_target is not None and model.task == "classify":
        y = parse_labels(table.raw_target, like=_classes_of(model))
    if model.task == "regress":
        if y.dtype.kind not in "iufb":
            raise UsageError(f"the target column {table.target_name!r} is not numeric, and "
                             f"this model regresses")
        return y.astype(np.float64)
    try:
        model.encode_targets(y)
    except ValueError as exc:
        raise UsageError(f"{table.source}: {exc}") from None
    return y


def confusion_matrix(classes: np.ndarray, y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Counts of (true, predicted) label pairs.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
    y, predicted : ndarray of shape (n_samples,)
        Labels among `classes`.

    Returns
    -------
    counts : ndarray of shape (n_classes, n_classes)
        ``counts[i, j]`` rows with true label ``classes[i]`` predicted ``classes[j]``.
    """
    index = {label: k for k, label in enumerate(classes.tolist())}
    counts = np.zeros((classes.size, classes.size), dtype=np.int64)
    for true, guess in zip(y.tolist(), predicted.tolist()):
        counts[index[true], index[guess]] += 1
    return counts


def _print_confusion(classes: np.ndarray, counts: np.ndarray, out: TextIO) -> None:
    labels = [_format_value(label) for label in classes]
    width = max(len(label) for label in labels + [str(counts.max())])
    first = max(len(label) for label in labels)
    print("confusion matrix (rows: true label, columns: predicted label):", file=out)
    print(" " * first + " " + " ".join(f"{label:>{width}}" for label in labels), file=out)
    for label, row in zip(labels, counts):
        print(f"{label:>{first}} " + " ".join(f"{count:>{width}}" for count in row), file=out)


def evaluate_command(args: argparse.Namespace) -> int:
    """``fastbp evaluate``: the model's loss and accuracy (or R^2) on a labelled table.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    status : int
    """
    model = _load_model(args.model)
    table = _read_for(model, args.data, want_target=True, target=args.target)
    y = _true_values(model, table)
    scores = _scores(model, table.X, y)
    print(f"{table.source}: {table.n_samples} rows, target {table.target_name!r}")
    if model.task == "classify":
        print(f"loss {scores['loss']:.4f} (cross-entropy)")
        correct = int(round(scores["accuracy"] * table.n_samples))
        print(f"accuracy {scores['accuracy']:.4f} ({correct} of {table.n_samples})")
        classes = _classes_of(model)
        _print_confusion(classes, confusion_matrix(classes, y, model.predict(table.X)),
                         sys.stdout)
    else:
        print(f"loss {scores['loss']:.4f} (mse on standardised targets)")
        print(f"R^2 {scores['r2']:.4f}")
        print(f"RMSE {scores['rmse']:.6g}, MAE {scores['mae']:.6g}")
    return 0


# --------------------------------------------------------------- info, export

def info_command(args: argparse.Namespace) -> int:
    """``fastbp info``: what a model file holds.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    status : int
    """
    model = _load_model(args.model)
    with np.load(args.model, allow_pickle=False) as archive:
        version = int(archive["format_version"])
    network = model.network
    print(f"{args.model}: fastbp model file, version {version}")
    print(f"network: {network!r}")
    hidden = network.layer_sizes[1:-1]
    print(f"layers: {network.layer_sizes[0]} inputs, hidden {hidden or 'none'} "
          f"({network.activation}), {network.layer_sizes[-1]} {network.output} "
          f"output{'s' if network.layer_sizes[-1] > 1 else ''}; "
          f"dtype {np.dtype(network.dtype).name}")
    if model.task == "classify":
        classes = _classes_of(model)
        labels = ", ".join(_format_value(label) for label in classes)
        print(f"task: classify, {classes.size} classes: {labels}")
    else:
        print("task: regress")
    if model.feature_names is not None:
        names = model.feature_names
        shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10
                                         else "")
        print(f"features: {shown}")
    else:
        print(f"features: {model.n_features}, unnamed")
    scaling = ("inputs standardised with the training rows' mean and scale"
               if model.feature_mean is not None else "inputs used as given")
    if model.target_mean is not None and model.target_scale is not None:
        scaling += (f"; targets standardised (mean {float(np.mean(model.target_mean)):.6g}, "
                    f"scale {float(np.mean(model.target_scale)):.6g})")
    print(f"preprocessing: {scaling}")
    history = model.history
    if history.get("loss"):
        epochs = len(history["loss"])
        seconds = sum(history.get("epoch_seconds", []))
        last = ", ".join(f"{key} {history[key][-1]:.4f}"
                         for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                         if history.get(key))
        line = f"training: {epochs} epochs in {seconds:.2f} s; last epoch: {last}"
        if history.get("val_loss"):
            best = int(np.argmin(history["val_loss"]))
            line += f"; lowest val_loss {history['val_loss'][best]:.4f} at epoch {best + 1}"
        print(line)
    else:
        print("training: no history recorded")
    return 0


def export_command(args: argparse.Namespace) -> int:
    """``fastbp export``: write the model as ONNX (through fastbp._onnx.export_onnx).

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    status : int
    """
    model = _load_model(args.model)
    _check_output(args.out, "export")
    try:
        from ._onnx import export_onnx
    except ImportError as exc:
        raise UsageError(f"ONNX export is not available: {exc}") from None
    try:
        export_onnx(model, args.out)
    except ImportError as exc:
        raise UsageError(f"ONNX export needs the onnx package ({exc})") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"could not export to {args.out}: {exc}") from None
    print(f"wrote {args.out}")
    return 0


# -------------------------------------------------------------------- bench

def bench_command(args: argparse.Namespace) -> int:
    """``fastbp bench``: run ``python -m bench.report`` of the source checkout here.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    status : int
        The report's own exit status.
    """
    here = os.getcwd()
    if not os.path.isfile(os.path.join(here, "bench", "report.py")):
        raise UsageError("the benchmarks live in the source repository, not in the installed "
                         "package: run 'fastbp bench' from the top of a fastbp checkout "
                         "(where bench/report.py is)")
    command = [sys.executable, "-m", "bench.report"]
    if args.quick:
        # a smoke run: its numbers must not replace the checkout's bench/results/latest.json
        quick_json = os.path.join(tempfile.gettempdir(), "fastbp-bench-quick.json")
        command += [*QUICK_BENCH, "--json", quick_json]
    return subprocess.call(command, cwd=here)
