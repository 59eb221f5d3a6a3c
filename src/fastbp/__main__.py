"""The digits demo: ``python -m fastbp`` (or the ``fastbp`` command, or ``fastbp demo``).

A first argument naming a subcommand (``train``, ``predict``, ``evaluate``,
``info``, ``export``, ``bench``) goes to fastbp.cli instead.

Trains a sigmoid network on scikit-learn's bundled 8x8 handwritten digits
(no download) with a held-out test set, printing train and test loss and
accuracy after every epoch.

``--learning-curve`` instead trains twice on a small training subset, without
and with an L2 penalty, and prints train and test loss side by side: the gap
between them is overfitting, and L2 narrows it.

``--deep`` instead trains a deep sigmoid network and the same network with
relu units for a few epochs and prints, layer by layer, the norm of dJ/dW^l
(``fit(grad_norms=True)``): the sigmoid net's gradients shrink on the way
down to its first layers (the vanishing gradient), the relu net's do not.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any
import os
import sys
import time

import numpy as np

from . import Callback, EarlyStopping, LambdaCallback, Network, Trainer
from ._contract import DTYPES, HIDDEN_ACTIVATIONS, LOSSES, OPTIMIZERS, OUTPUT_ACTIVATIONS
from .cli import COMMANDS
from .schedules import SCHEDULES

# Learning rate when --learning-rate is not given: the adaptive rules take
# steps of about eta per weight, so they want a much smaller eta than SGD.
DEFAULT_LEARNING_RATES = {"sgd": 0.5, "rmsprop": 0.01, "adam": 0.01, "adamw": 0.01}

# --deep: hidden layers of both networks, and epochs when --epochs is not given
DEEP_HIDDEN = [30, 30, 30, 30]
DEEP_EPOCHS = 3

# Held out of the training set for --patience and --schedule plateau, which
# must not look at the test set.
VALIDATION_SPLIT = 0.1


def load_digits_split(test_size: float = 0.25, seed: int = 0,
                      dtype: str = "float64") -> list[np.ndarray]:
    """Digits scaled to [0, 1], split into a stratified train and test set.

    Returns
    -------
    X_train : ndarray of shape (n_train, 64)
    X_test : ndarray of shape (n_test, 64)
    y_train : ndarray of shape (n_train,) of int
    y_test : ndarray of shape (n_test,) of int
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit(
            "the demo needs scikit-learn for its bundled digits: pip install 'fastbp[demo]'"
        ) from exc
    digits = load_digits()
    X = (digits.data / 16.0).astype(dtype)
    return train_test_split(X, digits.target, test_size=test_size, random_state=seed,
                            stratify=digits.target)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastbp",
        description="Train a fully connected network on scikit-learn's handwritten digits.",
        epilog="Commands: fastbp {train,predict,evaluate,info,export,bench} ... "
               "(fastbp COMMAND --help); 'fastbp demo [options]' is this demo.",
    )
    parser.add_argument("--hidden", type=int, nargs="*", default=[30],
                        help="hidden layer sizes (default: 30)")
    parser.add_argument("--activation", default="sigmoid",
                        choices=HIDDEN_ACTIVATIONS)
    parser.add_argument("--output", default="sigmoid", choices=OUTPUT_ACTIVATIONS)
    parser.add_argument("--loss", default="cross_entropy", choices=LOSSES)
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the training data (default: 30, or 200 with "
                             "--learning-curve)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="step size eta (default: 0.5 for sgd, 0.01 for rmsprop, adam "
                             "and adamw)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--l2", type=float, default=1e-4,
                        help="L2 penalty lambda on the weights (default: 1e-4)")
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS,
                        help="update rule (default: sgd)")
    parser.add_argument("--schedule", default="constant", choices=list(SCHEDULES),
                        help="learning-rate schedule, with its default settings (default: "
                             "constant); plateau watches the loss on a validation split "
                             "of the training data")
    parser.add_argument("--patience", type=int, default=None, metavar="N",
                        help="stop after N epochs without a lower loss on a validation split "
                             f"({VALIDATION_SPLIT * 100:.0f}%% of the training data) and keep the "
                             "best epoch's parameters")
    parser.add_argument("--dtype", default="float64", choices=DTYPES)
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="PATH", help="write the trained network to PATH (.npz)")
    curve = parser.add_argument_group(
        "learning curve",
        "train twice on a small training subset, without and with L2, and compare "
        "train and test loss epoch by epoch",
    )
    curve.add_argument("--learning-curve", action="store_true",
                       help="print the learning curves instead of the usual run")
    curve.add_argument("--train-size", type=int, default=300,
                       help="training samples for the learning curve (default: 300)")
    curve.add_argument("--curve-l2", type=float, default=3e-4,
                       help="L2 penalty of the second run (default: 3e-4)")
    curve.add_argument("--every", type=int, default=None, metavar="K",
                       help="print every K-th epoch (default: about 20 rows)")
    curve.add_argument("--plot", metavar="PATH",
                       help="also draw the curves into a PNG file (needs matplotlib)")
    deep = parser.add_argument_group(
        "deep networks",
        "train a deep sigmoid and a deep relu network and compare their gradient norms "
        "layer by layer",
    )
    deep.add_argument("--deep", action="store_true",
                      help="print the gradient norms per layer instead of the usual run")
    deep.add_argument("--deep-hidden", type=int, nargs="+", default=DEEP_HIDDEN,
                      metavar="N", help="hidden layer sizes of both networks (default: "
                                        + " ".join(map(str, DEEP_HIDDEN)) + ")")
    return parser


def _check_arguments(parser, args):
    """Usage errors (exit status 2) for option combinations that make no sense."""
    if args.deep and args.learning_curve:
        parser.error("--deep does not go with --learning-curve")
    if args.epochs is None:
        args.epochs = 200 if args.learning_curve else DEEP_EPOCHS if args.deep else 30
    if args.learning_rate is None:
        args.learning_rate = DEFAULT_LEARNING_RATES[args.optimizer]
    if args.epochs < 0:
        parser.error(f"--epochs must be >= 0, got {args.epochs}")
    if not 0 < args.test_size < 1:
        parser.error(f"--test-size must be a fraction in (0, 1), got {args.test_size}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.save is not None:
        directory = os.path.dirname(os.path.abspath(args.save))
        if not os.path.isdir(directory):
            parser.error(f"--save {args.save}: the directory {directory} does not exist")
    if args.patience is not None and args.patience < 0:
        parser.error(f"--patience must be >= 0, got {args.patience}")
    if args.deep:
        if any(size < 1 for size in args.deep_hidden):
            parser.error(f"--deep-hidden sizes must be >= 1, got {args.deep_hidden}")
        for option, given in (("--patience", args.patience is not None),
                              ("--save", args.save is not None),
                              ("--schedule plateau", args.schedule == "plateau")):
            if given:
                parser.error(f"{option} does not go with --deep")
    if args.learning_curve:
        for option, given in (("--patience", args.patience is not None),
                              ("--save", args.save is not None),
                              ("--schedule plateau", args.schedule == "plateau")):
            if given:
                parser.error(f"{option} does not go with --learning-curve")
        if args.train_size < 1:
            parser.error(f"--train-size must be >= 1, got {args.train_size}")
        if args.every is not None and args.every < 1:
            parser.error(f"--every must be >= 1, got {args.every}")
    else:
        for option, given in (("--plot", args.plot is not None),
                              ("--every", args.every is not None)):
            if given:
                parser.error(f"{option} needs --learning-curve")


def _make_trainer(args, n_inputs, l2, hidden=None, activation=None):
    """Network and Trainer from the command line, or SystemExit with the reason."""
    hidden = args.hidden if hidden is None else hidden
    activation = args.activation if activation is None else activation
    try:
        net = Network([n_inputs, *hidden, 10], activation=activation,
                      output=args.output, dtype=args.dtype, seed=args.seed)
        trainer = Trainer(net, loss=args.loss, learning_rate=args.learning_rate,
                          batch_size=args.batch_size, l2=l2, momentum=args.momentum,
                          seed=args.seed, optimizer=args.optimizer,
                          schedule=None if args.schedule == "constant" else args.schedule)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"fastbp: {exc}") from None
    return net, trainer


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:        # fastbp train ..., predict, evaluate, ...
        from .cli import main as command_main

        return command_main(argv)
    if argv and argv[0] == "demo":          # fastbp demo [options]: this demo
        argv = argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    X_train, X_test, y_train, y_test = load_digits_split(args.test_size, args.seed, args.dtype)
    if args.learning_curve:
        return learning_curve(args, X_train, X_test, y_train, y_test)
    if args.deep:
        return deep_gradients(args, X_train, y_train)
    net, trainer = _make_trainer(args, X_train.shape[1], args.l2)
    print(f"{net}")
    print(f"{trainer}")
    print(f"digits: {len(X_train)} training and {len(X_test)} test samples")

    # --patience and --schedule plateau watch val_loss: on a split of the
    # training data then, with the test metrics taken by a callback
    watching = args.patience is not None or args.schedule == "plateau"
    callbacks: list[Callback] = []
    test_metrics: dict[str, list[float]] = {"loss": [], "accuracy": []}
    stopper: EarlyStopping | None = None
    if watching:
        def on_epoch_end(trainer, epoch, history):
            for key, value in trainer.evaluate(X_test, y_test).items():
                test_metrics[key].append(value)

        callbacks.append(LambdaCallback(on_epoch_end=on_epoch_end))
        print(f"validation: {VALIDATION_SPLIT:.0%} of the training samples, held out for "
              + " and ".join(what for what, given in (
                  (f"early stopping (patience {args.patience})", args.patience is not None),
                  ("the plateau schedule", args.schedule == "plateau")) if given))
    if args.patience is not None:
        stopper = EarlyStopping(monitor="val_loss", patience=args.patience)
        callbacks.insert(0, stopper)

    started = time.perf_counter()
    try:
        if watching:
            history = trainer.fit(X_train, y_train, epochs=args.epochs,
                                  validation_split=VALIDATION_SPLIT, callbacks=callbacks)
        else:
            history = trainer.fit(X_train, y_train, epochs=args.epochs,
                                  validation_data=(X_test, y_test))
    except ValueError as exc:
        raise SystemExit(f"fastbp: {exc}") from None
    seconds = time.perf_counter() - started
    if watching:
        test_loss, test_accuracy = test_metrics["loss"], test_metrics["accuracy"]
    else:
        test_loss, test_accuracy = history["val_loss"], history["val_accuracy"]

    header = f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'test loss':>9} {'test acc':>8}"
    print(header + (f" {'val loss':>9} {'val acc':>8} {'rate':>9}" if watching else ""))
    for epoch in range(len(history["loss"])):
        line = (f"{epoch + 1:>5} {history['loss'][epoch]:>10.4f} "
                f"{history['accuracy'][epoch]:>9.2%} {test_loss[epoch]:>9.4f} "
                f"{test_accuracy[epoch]:>8.2%}")
        if watching:
            line += (f" {history['val_loss'][epoch]:>9.4f} {history['val_accuracy'][epoch]:>8.2%}"
                     f" {history['learning_rate'][epoch]:>9.3g}")
        print(line)
    if stopper is not None and stopper.stopped_epoch is not None:
        print(f"early stopping after epoch {stopper.stopped_epoch}: the best val_loss "
              f"{stopper.best:.4f} was at epoch {stopper.best_epoch}, whose parameters "
              f"were restored")
    # argmax of the outputs: also right for an identity output trained on one-hot rows
    accuracy = float(np.mean(net.forward(X_test).argmax(axis=1) == y_test))
    print(f"trained {len(history['loss'])} epochs in {seconds:.2f} s")
    print(f"final test accuracy: {accuracy:.2%}")
    if args.save:
        try:
            net.save(args.save)
        except OSError as exc:
            raise SystemExit(f"fastbp: could not save the network to {args.save}: {exc}") from None
        print(f"saved the network to {args.save}")
    return 0


# ------------------------------------------------------------------ deep networks


def deep_norms(args: argparse.Namespace, X_train: np.ndarray, y_train: np.ndarray,
               activation: str) -> tuple[Network, Trainer, dict[str, list[Any]]]:
    """Train the --deep network with `activation`.

    Returns
    -------
    net : Network
    trainer : Trainer
    history : dict of list
        The fit's history, ``grad_norms`` included.
    """
    net, trainer = _make_trainer(args, X_train.shape[1], args.l2, hidden=args.deep_hidden,
                                 activation=activation)
    return net, trainer, trainer.fit(X_train, y_train, epochs=args.epochs, grad_norms=True)


def deep_gradients(args: argparse.Namespace, X_train: np.ndarray,
                   y_train: np.ndarray) -> int:
    """--deep: per-layer gradient norms of a sigmoid and a relu network, side by side.

    The norms are the last epoch's ||dJ/dW^l||_F, averaged over its batches.
    """
    runs = {}
    for activation in ("sigmoid", "relu"):
        _, trainer, history = deep_norms(args, X_train, y_train, activation)
        runs[activation] = history
        print(f"{trainer}")
    print(f"digits: {len(X_train)} training samples; ||dJ/dW^l||_F averaged over the batches "
          f"of epoch {args.epochs}")
    if not args.epochs:
        return 0
    norms = {activation: history["grad_norms"][-1] for activation, history in runs.items()}
    print(f"{'layer':>5} {'sizes':>9} {'sigmoid':>10} {'relu':>10}")
    sizes = [X_train.shape[1], *args.deep_hidden, 10]
    for l in range(len(sizes) - 1):
        print(f"{l + 1:>5} {f'{sizes[l + 1]}x{sizes[l]}':>9} {norms['sigmoid'][l]:>10.3e} "
              f"{norms['relu'][l]:>10.3e}")
    for activation in ("sigmoid", "relu"):
        values = norms[activation]
        print(f"{activation}: first / last layer {values[0] / values[-1]:.3g}, "
              f"final training loss {runs[activation]['loss'][-1]:.4f}")
    return 0


# ------------------------------------------------------------------ learning curve


def _curve(args, l2, X_train, y_train, X_test, y_test):
    """Train one run; per epoch (train loss, test loss, test accuracy).

    The losses are the mean per-sample cost without the penalty, so that the
    runs with and without L2 compare on the same scale.
    """
    net, trainer = _make_trainer(args, X_train.shape[1], l2)
    measure = Trainer(net, loss=args.loss)          # l2 = 0: the data cost alone
    rows = []

    def on_epoch_end(trainer, epoch, history):
        test = measure.evaluate(X_test, y_test)
        rows.append((measure.evaluate(X_train, y_train)["loss"], test["loss"],
                     test["accuracy"]))

    trainer.fit(X_train, y_train, epochs=args.epochs,
                callbacks=[LambdaCallback(on_epoch_end=on_epoch_end)])
    return net, trainer, rows


def learning_curve(args: argparse.Namespace, X_train: np.ndarray, X_test: np.ndarray,
                   y_train: np.ndarray, y_test: np.ndarray) -> int:
    from sklearn.model_selection import train_test_split

    if args.train_size >= len(X_train):
        raise SystemExit(f"fastbp: --train-size must be below the {len(X_train)} training "
                         f"samples, got {args.train_size}")
    try:
        X_small, _, y_small, _ = train_test_split(X_train, y_train, train_size=args.train_size,
                                                  random_state=args.seed, stratify=y_train)
    except ValueError as exc:
        raise SystemExit(f"fastbp: --train-size {args.train_size}: {exc}") from None
    net, trainer, plain = _curve(args, 0.0, X_small, y_small, X_test, y_test)
    _, _, penalized = _curve(args, args.curve_l2, X_small, y_small, X_test, y_test)
    print(f"{net}")
    print(f"{trainer}")
    print(f"second run: the same with l2={args.curve_l2!r}")
    print(f"digits: {len(X_small)} of {len(X_train)} training samples, {len(X_test)} test "
          f"samples; {args.loss} per sample without the penalty")

    every = args.every or max(1, args.epochs // 20)
    width = 30
    print(f"{'':5} | {'l2 = 0':^{width}} | {f'l2 = {args.curve_l2:g}':^{width}}")
    columns = f"{'train loss':>10} {'test loss':>9} {'test acc':>9}"
    print(f"{'epoch':>5} | {columns} | {columns}")
    for epoch in range(args.epochs):
        if (epoch + 1) % every and epoch not in (0, args.epochs - 1):
            continue
        cells = [f"{train:>10.4f} {test:>9.4f} {accuracy:>9.2%}"
                 for train, test, accuracy in (plain[epoch], penalized[epoch])]
        print(f"{epoch + 1:>5} | {cells[0]} | {cells[1]}")
    if args.epochs:
        for name, rows in (("l2 = 0", plain), (f"l2 = {args.curve_l2:g}", penalized)):
            train, test, accuracy = rows[-1]
            best = min(range(len(rows)), key=lambda e: rows[e][1])
            print(f"{name}: test - train loss gap {test - train:.4f} after {args.epochs} "
                  f"epochs; lowest test loss {rows[best][1]:.4f} at epoch {best + 1}; "
                  f"final test accuracy {accuracy:.2%}")
    if args.plot:
        return _plot(args, plain, penalized)
    return 0


def _plot(args, plain, penalized):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(f"fastbp: --plot needs matplotlib, which is not installed (pip install "
              f"matplotlib); {args.plot} was not written", file=sys.stderr)
        return 1
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    epochs = np.arange(1, len(plain) + 1)
    for rows, label, color in ((plain, "l2 = 0", "C0"),
                               (penalized, f"l2 = {args.curve_l2:g}", "C1")):
        rows = np.asarray(rows).reshape(-1, 3)
        axes.plot(epochs, rows[:, 0], color=color, linestyle="--", label=f"train, {label}")
        axes.plot(epochs, rows[:, 1], color=color, label=f"test, {label}")
    axes.set_xlabel("epoch")
    axes.set_yscale("log")          # the gap at the end, not the first epochs, matters
    axes.set_ylabel(f"{args.loss} per sample")
    axes.set_title(f"digits, {args.train_size} training samples")
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(args.plot, format="png")
    except OSError as exc:
        raise SystemExit(f"fastbp: could not write {args.plot}: {exc}") from None
    print(f"wrote the learning curves to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
