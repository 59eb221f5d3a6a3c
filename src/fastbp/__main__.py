"""The digits demo: ``python -m fastbp`` (or the ``fastbp`` command).

Trains a sigmoid network on scikit-learn's bundled 8x8 handwritten digits
(no download) with a held-out test set, printing train and test loss and
accuracy after every epoch.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import Network, Trainer


def load_digits_split(test_size=0.25, seed=0, dtype="float64"):
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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastbp",
        description="Train a fully connected network on scikit-learn's handwritten digits.",
    )
    parser.add_argument("--hidden", type=int, nargs="*", default=[30],
                        help="hidden layer sizes (default: 30)")
    parser.add_argument("--activation", default="sigmoid",
                        choices=["sigmoid", "tanh", "relu", "identity"])
    parser.add_argument("--output", default="sigmoid", choices=["sigmoid", "softmax", "identity"])
    parser.add_argument("--loss", default="cross_entropy", choices=["mse", "cross_entropy"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--l2", type=float, default=1e-4,
                        help="L2 penalty lambda on the weights (default: 1e-4)")
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="PATH", help="write the trained network to PATH (.npz)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    X_train, X_test, y_train, y_test = load_digits_split(args.test_size, args.seed, args.dtype)
    try:
        net = Network([X_train.shape[1], *args.hidden, 10], activation=args.activation,
                      output=args.output, dtype=args.dtype, seed=args.seed)
        trainer = Trainer(net, loss=args.loss, learning_rate=args.learning_rate,
                          batch_size=args.batch_size, l2=args.l2, momentum=args.momentum,
                          seed=args.seed)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"fastbp: {exc}") from None
    print(f"{net}")
    print(f"{trainer}")
    print(f"digits: {len(X_train)} training and {len(X_test)} test samples")
    started = time.perf_counter()
    history = trainer.fit(X_train, y_train, epochs=args.epochs,
                          validation_data=(X_test, y_test))
    seconds = time.perf_counter() - started
    print(f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'test loss':>9} {'test acc':>8}")
    for epoch in range(len(history["loss"])):
        print(f"{epoch + 1:>5} {history['loss'][epoch]:>10.4f} "
              f"{history['accuracy'][epoch]:>9.2%} {history['val_loss'][epoch]:>9.4f} "
              f"{history['val_accuracy'][epoch]:>8.2%}")
    accuracy = float(np.mean(net.predict(X_test) == y_test))
    print(f"trained {args.epochs} epochs in {seconds:.2f} s")
    print(f"final test accuracy: {accuracy:.2%}")
    if args.save:
        net.save(args.save)
        print(f"saved the network to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
