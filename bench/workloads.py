"""The benchmark workloads of DESIGN.md, their data and their GEMM flop counts."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Workload",
    "WORKLOADS",
    "DTYPES",
    "N_FEATURES",
    "N_CLASSES",
    "LEARNING_RATE",
    "SEED",
    "bench_samples",
    "make_data",
    "epoch_flops",
    "step_bytes",
    "epoch_bytes",
    "batch_gemm_shapes",
]

N_FEATURES = 784
N_CLASSES = 10
LEARNING_RATE = 0.1
SEED = 0
SKLEARN_ALPHA = 1e-4
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Workload:
    """One epoch of mini-batch training of a fully connected network.

    The three design-card workloads are plain SGD (learning rate 0.1, no L2)
    with sigmoid hidden layers; sklearn-default is scikit-learn's
    MLPClassifier's defaults (relu, adam 1e-3, alpha 1e-4 = l2 * batch).
    """

    name: str
    layer_sizes: tuple
    batch_size: int
    output: str
    loss: str
    activation: str = "sigmoid"
    optimizer: str = "sgd"
    learning_rate: float = LEARNING_RATE
    l2: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8

    def trainer_options(self):
        """The keyword arguments of fastbp.Trainer for this workload's update rule."""
        options = {"loss": self.loss, "learning_rate": self.learning_rate,
                   "batch_size": self.batch_size, "l2": self.l2, "optimizer": self.optimizer}
        if self.optimizer == "adam":
            options.update(beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon)
        return options

    def describe_rule(self):
        if self.optimizer == "sgd":
            text = f"sgd {self.learning_rate:g}"
        else:
            text = f"{self.optimizer} {self.learning_rate:g}"
        if self.l2:
            text += f", l2 {self.l2:g}"
        return text

    def __str__(self):
        sizes = ",".join(str(size) for size in self.layer_sizes)
        return (f"{self.name} [{sizes}] {self.activation} b={self.batch_size} "
                f"{self.output}/{self.loss} {self.describe_rule()}")


WORKLOADS = {
    workload.name: workload
    for workload in (
        Workload("nielsen", (784, 30, 10), 10, "sigmoid", "mse"),
        Workload("medium", (784, 128, 64, 10), 64, "softmax", "cross_entropy"),
        Workload("large", (784, 1024, 1024, 10), 256, "softmax", "cross_entropy"),
        # scikit-learn's MLPClassifier defaults: relu, adam 1e-3, batch 200,
        # alpha 1e-4 (sklearn's penalty alpha/2 ||W||^2 / m is fastbp's l2 = alpha / m)
        Workload("sklearn-default", (784, 100, 10), 200, "softmax", "cross_entropy",
                 activation="relu", optimizer="adam", learning_rate=1e-3,
                 l2=SKLEARN_ALPHA / 200),
    )
}


def bench_samples(default=60000):
    """n_samples for the benchmarks: ``FASTBP_BENCH_SAMPLES`` or `default`."""
    value = os.environ.get("FASTBP_BENCH_SAMPLES", "").strip()
    if not value:
        return default
    try:
        n_samples = int(value)
    except ValueError:
        raise ValueError(
            f"FASTBP_BENCH_SAMPLES must be a positive integer, got {value!r}"
        ) from None
    if n_samples < 1:
        raise ValueError(f"FASTBP_BENCH_SAMPLES must be a positive integer, got {value!r}")
    return n_samples


def make_data(n_samples, dtype="float64", seed=SEED, n_features=N_FEATURES,
              n_classes=N_CLASSES, chunk=4096):
    """Synthetic MNIST-shaped data: uniform inputs in [0, 1), one-hot targets.

    The float64 draws are made chunk by chunk straight into the output, so
    the peak memory is the data itself (the memory benchmark relies on it),
    and a float32 set holds the rounded values of the float64 set of the
    same seed.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), C-contiguous, `dtype`
    Y : ndarray of shape (n_samples, n_classes), C-contiguous, `dtype`, one-hot
    """
    rng = np.random.default_rng(seed)
    X = np.empty((n_samples, n_features), dtype=dtype)
    for start in range(0, n_samples, chunk):
        stop = min(start + chunk, n_samples)
        X[start:stop] = rng.random((stop - start, n_features))
    labels = rng.integers(0, n_classes, n_samples)
    Y = np.zeros((n_samples, n_classes), dtype=dtype)
    Y[np.arange(n_samples), labels] = 1
    return X, Y


def batch_gemm_shapes(layer_sizes, m):
    """The (m, n, k) of every GEMM of one SGD step on a batch of m rows.

    Per layer l = 1..L: forward Z^l = A^{l-1} (W^l)^T is (m, n_l, n_{l-1});
    weight gradient (delta^l)^T A^{l-1} is (n_l, n_{l-1}, m); for l > 1 the
    delta propagation delta^l W^l is (m, n_{l-1}, n_l).
    """
    shapes = []
    for layer in range(1, len(layer_sizes)):
        fan_in, fan_out = layer_sizes[layer - 1], layer_sizes[layer]
        shapes.append((m, fan_out, fan_in))
        shapes.append((fan_out, fan_in, m))
        if layer > 1:
            shapes.append((m, fan_in, fan_out))
    return shapes


def epoch_flops(layer_sizes, n_samples, batch_size):
    """Floating-point operations (2 m n k per GEMM) of one epoch's GEMMs."""
    full, rest = divmod(n_samples, batch_size)

    def per_batch(m):
        return sum(2 * a * b * c for a, b, c in batch_gemm_shapes(layer_sizes, m))

    return full * per_batch(batch_size) + (per_batch(rest) if rest else 0)


def step_bytes(layer_sizes, m, itemsize):
    """(parameter bytes, input bytes) one step on m rows must move, at the least.

    Every W^l and b^l is read twice (forward pass, update) and written once
    (the update); the batch's inputs and targets are read once. Nothing
    else (activations, deltas, optimizer state) is counted, so this is a
    lower bound on the traffic.
    """
    parameters = sum(fan_out * (fan_in + 1)
                     for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]))
    return 3 * parameters * itemsize, m * (layer_sizes[0] + layer_sizes[-1]) * itemsize


def epoch_bytes(layer_sizes, n_samples, batch_size, itemsize):
    """(parameter bytes, input bytes) of one epoch, summed over its steps (see step_bytes)."""
    steps = -(-n_samples // batch_size)
    parameter_bytes, _ = step_bytes(layer_sizes, batch_size, itemsize)
    _, input_bytes = step_bytes(layer_sizes, n_samples, itemsize)
    return steps * parameter_bytes, input_bytes
