"""One epoch of each implementation under test, ready to time.

Every runner is built outside the timed region (network, buffers, data
conversion) and then exposes ``run_epoch()``: one epoch of shuffled
mini-batch SGD (plain SGD, no momentum, no L2, learning rate 0.1) that
returns the epoch's mean loss. All runners start from the same weights,
those of ``fastbp.Network(..., seed=SEED)``.

- ``fastbp``:   ``Trainer.fit(X, Y, epochs=1)``, what users call.
- ``baseline``: ``fastbp.baseline.train_epoch``, the plain NumPy reference.
- ``torch``:    a hand-written loop of torch.addmm / torch.mm with in-place
                updates and preallocated buffers (no autograd), on all cores.
- ``roof``:     the epoch's GEMMs alone through BLAS, into preallocated
                buffers: the time fastbp would take if everything but the
                matrix products were free.
"""

from __future__ import annotations

import os

import numpy as np

from fastbp import Network, Trainer, baseline

from .workloads import LEARNING_RATE, SEED

__all__ = [
    "IMPLEMENTATIONS",
    "torch_available",
    "make_runner",
    "FastbpRunner",
    "BaselineRunner",
    "TorchRunner",
    "RoofRunner",
]

IMPLEMENTATIONS = ("fastbp", "baseline", "torch", "roof")


def torch_available():
    """True when PyTorch imports (the torch runner is skipped otherwise)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _initial_network(workload, dtype):
    return Network(list(workload.layer_sizes), activation=workload.activation,
                   output=workload.output, dtype=dtype, seed=SEED)


class FastbpRunner:
    """fastbp as a user runs it: Trainer.fit on C-contiguous arrays of the net's dtype."""

    name = "fastbp"

    def __init__(self, workload, X, Y, shuffle=True):
        self.network = _initial_network(workload, X.dtype)
        self.trainer = Trainer(self.network, loss=workload.loss, learning_rate=LEARNING_RATE,
                               batch_size=workload.batch_size, shuffle=shuffle, seed=SEED)
        self.X, self.Y = X, Y

    def run_epoch(self):
        return self.trainer.fit(self.X, self.Y, epochs=1)["loss"][-1]

    def parameters(self):
        return list(self.network.weights), list(self.network.biases)


class BaselineRunner:
    """fastbp.baseline.train_epoch: one NumPy matmul per layer per batch."""

    name = "baseline"

    def __init__(self, workload, X, Y, shuffle=True):
        network = _initial_network(workload, X.dtype)
        self.weights = [weight.copy() for weight in network.weights]
        self.biases = [bias.copy() for bias in network.biases]
        self.workload = workload
        self.shuffle = shuffle
        self.rng = np.random.default_rng(SEED)
        self.X, self.Y = X, Y

    def run_epoch(self):
        order = self.rng.permutation(self.X.shape[0]) if self.shuffle else None
        workload = self.workload
        return baseline.train_epoch(
            self.weights, self.biases, self.X, self.Y, activation=workload.activation,
            output=workload.output, loss=workload.loss, learning_rate=LEARNING_RATE,
            batch_size=workload.batch_size, l2=0.0, momentum=0.0, order=order,
        )

    def parameters(self):
        return self.weights, self.biases


class TorchRunner:
    """The same SGD epoch in PyTorch, by hand: addmm/mm, in-place updates, no autograd.

    Hidden layers must be sigmoid; supported output/loss pairs are
    sigmoid/mse, sigmoid/cross_entropy and softmax/cross_entropy.
    """

    name = "torch"

    def __init__(self, workload, X, Y, shuffle=True):
        import torch

        if workload.activation != "sigmoid":
            raise NotImplementedError("the torch runner implements sigmoid hidden layers only")
        if (workload.output, workload.loss) not in (
            ("sigmoid", "mse"), ("sigmoid", "cross_entropy"), ("softmax", "cross_entropy")
        ):
            raise NotImplementedError(f"torch runner: no {workload.output}/{workload.loss}")
        torch.set_num_threads(os.cpu_count())
        self.torch = torch
        self.workload = workload
        self.shuffle = shuffle
        network = _initial_network(workload, X.dtype)
        # torch tensors own copies; .numpy() views them for parameters()
        self.weights = [torch.from_numpy(weight.copy()) for weight in network.weights]
        self.biases = [torch.from_numpy(bias.copy()) for bias in network.biases]
        self.X = torch.from_numpy(X)
        self.Y = torch.from_numpy(Y)
        self.generator = torch.Generator().manual_seed(SEED)
        b, sizes = workload.batch_size, workload.layer_sizes
        dtype = self.X.dtype
        self.x_rows = torch.empty((b, sizes[0]), dtype=dtype)
        self.y_rows = torch.empty((b, sizes[-1]), dtype=dtype)
        # A^l (l >= 1), delta^l, and a^l (1 - a^l), one buffer each per layer
        self.activations = [torch.empty((b, n), dtype=dtype) for n in sizes[1:]]
        self.deltas = [torch.empty((b, n), dtype=dtype) for n in sizes[1:]]
        self.derivatives = [torch.empty((b, n), dtype=dtype) for n in sizes[1:]]
        self.column_sums = [torch.empty(n, dtype=dtype) for n in sizes[1:]]

    def run_epoch(self):
        torch = self.torch
        n_samples, batch_size = self.X.shape[0], self.workload.batch_size
        order = torch.randperm(n_samples, generator=self.generator) if self.shuffle else None
        total = torch.zeros((), dtype=torch.float64)
        with torch.inference_mode():
            for start in range(0, n_samples, batch_size):
                stop = min(start + batch_size, n_samples)
                if order is None:
                    x_batch, y_batch = self.X[start:stop], self.Y[start:stop]
                else:
                    rows = order[start:stop]
                    x_batch = torch.index_select(self.X, 0, rows, out=self.x_rows[:stop - start])
                    y_batch = torch.index_select(self.Y, 0, rows, out=self.y_rows[:stop - start])
                total += self._step(x_batch, y_batch)
        return float(total) / n_samples

    def _step(self, x_batch, y_batch):
        torch = self.torch
        m = x_batch.shape[0]
        n_layers = len(self.weights)
        output, loss = self.workload.output, self.workload.loss
        A = [x_batch]
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            # Z^l = A^{l-1} (W^l)^T + b^l, activated in place
            Z = torch.addmm(bias, A[k], weight.t(), out=self.activations[k][:m])
            if k < n_layers - 1 or output == "sigmoid":
                Z.sigmoid_()
            else:
                Z = torch.softmax(Z, dim=1)
            A.append(Z)
        out = A[-1]
        delta = torch.sub(out, y_batch, out=self.deltas[-1][:m])   # A^L - Y
        if loss == "mse":
            cost = 0.5 * torch.dot(delta.view(-1), delta.view(-1))
            delta.mul_(out).mul_(1 - out)                          # (A - Y) a (1 - a)
        elif output == "softmax":
            cost = -torch.sum(y_batch * torch.log(out.clamp_min(torch.finfo(out.dtype).tiny)))
        else:
            tiny = torch.finfo(out.dtype).tiny
            cost = -torch.sum(y_batch * torch.log(out.clamp_min(tiny))
                              + (1 - y_batch) * torch.log((1 - out).clamp_min(tiny)))
        step = LEARNING_RATE / m
        for k in range(n_layers - 1, -1, -1):
            if k > 0:
                # delta^{l-1} = (delta^l W^l) * a^{l-1} (1 - a^{l-1}), before W^l changes
                previous = torch.mm(delta, self.weights[k], out=self.deltas[k - 1][:m])
                slope = self.derivatives[k - 1][:m]
                torch.mul(A[k], A[k], out=slope)
                torch.sub(A[k], slope, out=slope)
                previous.mul_(slope)
            # W^l <- W^l - (eta/m) (delta^l)^T A^{l-1};  b^l <- b^l - (eta/m) sum_rows delta^l
            self.weights[k].addmm_(delta.t(), A[k], alpha=-step)
            column_sums = torch.sum(delta, dim=0, out=self.column_sums[k])
            self.biases[k].sub_(column_sums, alpha=step)
            if k > 0:
                delta = previous
        return cost.double()

    def parameters(self):
        return ([weight.numpy() for weight in self.weights],
                [bias.numpy() for bias in self.biases])


class RoofRunner:
    """The epoch's GEMMs alone, in batch order, into preallocated buffers.

    Per batch and layer: forward Z^l = A^{l-1} (W^l)^T, propagation
    delta^l W^l for l > 1, weight gradient (delta^l)^T A^{l-1}; no bias,
    activation, loss, gather or update. ``blas="scipy"`` calls
    scipy.linalg.blas ?gemm, the library fastbp's kernels call through
    scipy.linalg.cython_blas; ``blas="numpy"`` uses np.matmul(..., out=).
    """

    name = "roof"

    def __init__(self, workload, X, Y=None, shuffle=True, blas="scipy"):
        if blas not in ("scipy", "numpy"):
            raise ValueError(f"blas must be 'scipy' or 'numpy', got {blas!r}")
        network = _initial_network(workload, X.dtype)
        b, sizes = workload.batch_size, workload.layer_sizes
        rng = np.random.default_rng(SEED)
        self.X = X
        self.batch_size = b
        self.weights = [weight.copy() for weight in network.weights]
        self.outputs = [np.empty((b, n), dtype=X.dtype) for n in sizes[1:]]
        # deltas hold small fixed values: their content does not change the work
        self.deltas = [(0.01 * rng.standard_normal((b, n))).astype(X.dtype) for n in sizes[1:]]
        self.propagated = [np.empty((b, n), dtype=X.dtype) for n in sizes[1:-1]]
        self.gradients = [np.empty_like(weight) for weight in self.weights]
        if blas == "scipy":
            from scipy.linalg import blas as scipy_blas

            self._gemm = self._scipy_gemm
            self._scipy = scipy_blas.get_blas_funcs("gemm", dtype=X.dtype)
        else:
            self._gemm = self._numpy_gemm
        self.blas = blas

    def _scipy_gemm(self, C, A, B, trans_a, trans_b):
        """Row-major C := op(A) op(B), as the column-major C^T := op(B)^T op(A)^T."""
        self._scipy(1.0, B.T, A.T, 0.0, C.T, trans_a=trans_b, trans_b=trans_a, overwrite_c=1)

    @staticmethod
    def _numpy_gemm(C, A, B, trans_a, trans_b):
        np.matmul(A.T if trans_a else A, B.T if trans_b else B, out=C)

    def run_epoch(self):
        gemm, X, b = self._gemm, self.X, self.batch_size
        n_layers = len(self.weights)
        for start in range(0, X.shape[0], b):
            x_batch = X[start:start + b]
            m = x_batch.shape[0]
            previous = x_batch
            for k in range(n_layers):
                Z = self.outputs[k][:m]
                gemm(Z, previous, self.weights[k], False, True)        # A W^T
                previous = Z
            for k in range(n_layers - 1, -1, -1):
                delta = self.deltas[k][:m]
                if k > 0:
                    gemm(self.propagated[k - 1][:m], delta, self.weights[k], False, False)
                inputs = x_batch if k == 0 else self.outputs[k - 1][:m]
                gemm(self.gradients[k], delta, inputs, True, False)     # delta^T A
        return float("nan")

    def parameters(self):
        return self.weights, []


_RUNNERS = {
    "fastbp": FastbpRunner,
    "baseline": BaselineRunner,
    "torch": TorchRunner,
    "roof": RoofRunner,
}


def make_runner(implementation, workload, X, Y, shuffle=True, **options):
    """A runner of `implementation` (one of IMPLEMENTATIONS) on (X, Y)."""
    try:
        cls = _RUNNERS[implementation]
    except KeyError:
        raise ValueError(
            f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}"
        ) from None
    return cls(workload, X, Y, shuffle=shuffle, **options)
