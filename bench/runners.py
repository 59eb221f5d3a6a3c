"""One epoch of each implementation under test, ready to time.

Every runner is built outside the timed region (network, buffers, data
conversion) and then exposes ``run_epoch()``: one epoch of the workload's
mini-batch training (its update rule: plain SGD, or adam for
sklearn-default) that returns the epoch's mean loss, sum_B m_B J_B / n, as
fastbp does. All runners but sklearn's start from the weights of
``fastbp.Network(..., seed=SEED)``.

- ``fastbp``: ``Trainer.fit(X, Y, epochs=1)``, what users call.
- ``numpy``:  the fast NumPy baseline, what a skilled user writes: one
              matmul per layer per batch into preallocated buffers
              (``np.matmul(..., out=)``), activation, deltas and update in
              place, no per-batch checks, the batch's J from the training
              pass. Ratios and goals are against it.
- ``oracle``: ``fastbp.baseline.train_epoch``, the test oracle: it checks
              its arguments, recomputes J and makes fresh arrays each batch
              (shown for reference; ``baseline`` is an alias).
- ``torch``:  PyTorch eager, written by hand (addmm/mm, in-place updates,
              preallocated buffers, no autograd), on all cores.
- ``jax``:    a jit-compiled JAX epoch: ``jax.lax.scan`` over the batches
              of ``jax.value_and_grad`` steps, parameters donated, XLA on the
              CPU; compiled in the warm-up epoch.
- ``sklearn``: scikit-learn's MLPClassifier, one ``partial_fit`` epoch
              (sklearn-default only: its maths matches no other workload).
- ``roof``:   the epoch's GEMMs alone through BLAS (``RoofRunner``; kept for
              the --scaling section; the report's roof is bench/roof.py's).

Peers (torch, jax, sklearn) are timed in their own processes by the report
(``python -m bench.peer``); `unavailable` says why one cannot run.
"""

from __future__ import annotations

import os

import numpy as np

from fastbp import Network, Trainer, baseline

from .workloads import SEED

__all__ = [
    "IMPLEMENTATIONS",
    "PEERS",
    "torch_available",
    "unavailable",
    "make_runner",
    "FastbpRunner",
    "NumpyRunner",
    "OracleRunner",
    "BaselineRunner",
    "TorchRunner",
    "JaxRunner",
    "SklearnRunner",
    "RoofRunner",
]

IMPLEMENTATIONS = ("fastbp", "numpy", "oracle", "torch", "jax", "sklearn", "roof")
PEERS = ("torch", "jax", "sklearn")


def _importable(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def torch_available():
    """True when PyTorch imports (the torch runner is skipped otherwise)."""
    return _importable("torch")


def unavailable(implementation, workload):
    """None when `implementation` can run `workload`, else the reason (a short note)."""
    module = {"torch": "torch", "jax": "jax", "sklearn": "sklearn"}.get(implementation)
    if module is not None and not _importable(module):
        return f"{module} not installed (pip install '.[bench]')"
    if implementation == "sklearn" and workload.name != "sklearn-default":
        return "MLPClassifier's maths matches sklearn-default only"
    if implementation == "roof" and workload.optimizer != "sgd":
        return "GEMM-only runner: plain SGD workloads"
    return None


def _initial_network(workload, dtype):
    return Network(list(workload.layer_sizes), activation=workload.activation,
                   output=workload.output, dtype=dtype, seed=SEED)


def _check_maths(workload, who):
    if workload.activation not in ("sigmoid", "relu"):
        raise NotImplementedError(f"{who}: hidden activation {workload.activation!r}")
    if (workload.output, workload.loss) not in (("sigmoid", "mse"), ("softmax", "cross_entropy")):
        raise NotImplementedError(f"{who}: no {workload.output}/{workload.loss}")
    if workload.optimizer not in ("sgd", "adam"):
        raise NotImplementedError(f"{who}: optimizer {workload.optimizer!r}")


class FastbpRunner:
    """fastbp as a user runs it: Trainer.fit on C-contiguous arrays of the net's dtype."""

    name = "fastbp"

    def __init__(self, workload, X, Y, shuffle=True):
        self.network = _initial_network(workload, X.dtype)
        self.trainer = Trainer(self.network, shuffle=shuffle, seed=SEED,
                               **workload.trainer_options())
        self.X, self.Y = X, Y

    def run_epoch(self):
        return self.trainer.fit(self.X, self.Y, epochs=1)["loss"][-1]

    def parameters(self):
        return list(self.network.weights), list(self.network.biases)


class NumpyRunner:
    """The fast NumPy baseline: what a skilled user writes for this epoch.

    Per batch: the rows gathered with ``np.take(..., out=)`` (shuffled) or
    sliced (in order); per layer one ``np.matmul(A, W.T, out=Z)``, the bias
    and activation in place; the output delta and the batch's cost from the
    same arrays (mse: 1/2 <D, D>; softmax + cross-entropy: -<Y, log A>, on
    the (m, 10) output only); per layer below the output one
    ``np.matmul(D, W, out=)`` times the activation's derivative, in place;
    the weight gradient ``np.matmul(D.T, A, out=G)`` and the update in
    place (SGD: D scaled by eta/m first, then W -= G; adam: moments and
    step into preallocated buffers). No checks, no fresh arrays but a few
    (m, 1) and (n,) reductions. With l2 > 0 the batch's J adds
    l2/2 sum ||W||^2, as fastbp's does.
    """

    name = "numpy"

    def __init__(self, workload, X, Y, shuffle=True):
        _check_maths(workload, "numpy runner")
        network = _initial_network(workload, X.dtype)
        dtype = X.dtype
        self.dtype = dtype
        self.workload = workload
        self.weights = [weight.copy() for weight in network.weights]
        self.biases = [bias.copy() for bias in network.biases]
        self.shuffle = shuffle
        self.rng = np.random.default_rng(SEED)
        self.X, self.Y = X, Y
        b, sizes = workload.batch_size, workload.layer_sizes
        self.x_rows = np.empty((b, sizes[0]), dtype)
        self.y_rows = np.empty((b, sizes[-1]), dtype)
        self.activations = [np.empty((b, n), dtype) for n in sizes[1:]]
        self.deltas = [np.empty((b, n), dtype) for n in sizes[1:]]
        self.scratch = [np.empty((b, n), dtype) for n in sizes[1:]]
        self.masks = [np.empty((b, n), bool) for n in sizes[1:]]
        self.gradients = [np.empty_like(weight) for weight in self.weights]
        self.bias_gradients = [np.empty_like(bias) for bias in self.biases]
        self.tiny = np.finfo(dtype).tiny
        self.adam = workload.optimizer == "adam"
        if self.adam:
            parameters = self.weights + self.biases
            self.first = [np.zeros_like(p) for p in parameters]
            self.second = [np.zeros_like(p) for p in parameters]
            self.work = [np.empty_like(p) for p in parameters]
            self.t = 0

    def run_epoch(self):
        X, Y, b = self.X, self.Y, self.workload.batch_size
        n_samples = X.shape[0]
        order = self.rng.permutation(n_samples) if self.shuffle else None
        total = 0.0
        with np.errstate(over="ignore"):
            for start in range(0, n_samples, b):
                stop = min(start + b, n_samples)
                m = stop - start
                if order is None:
                    x_batch, y_batch = X[start:stop], Y[start:stop]
                else:
                    rows = order[start:stop]
                    x_batch = np.take(X, rows, axis=0, out=self.x_rows[:m])
                    y_batch = np.take(Y, rows, axis=0, out=self.y_rows[:m])
                total += self._step(x_batch, y_batch, m)
        return total / n_samples

    def _step(self, x_batch, y_batch, m):
        workload = self.workload
        weights, biases = self.weights, self.biases
        n_layers = len(weights)
        hidden_sigmoid = workload.activation == "sigmoid"
        A = [x_batch]
        for k in range(n_layers):
            Z = np.matmul(A[k], weights[k].T, out=self.activations[k][:m])
            Z += biases[k]
            if k < n_layers - 1:
                if hidden_sigmoid:
                    _sigmoid_in_place(Z)
                else:
                    np.maximum(Z, 0, out=Z)
            elif workload.output == "sigmoid":
                _sigmoid_in_place(Z)
            else:
                Z -= Z.max(axis=1, keepdims=True)
                np.exp(Z, out=Z)
                Z /= Z.sum(axis=1, keepdims=True)
            A.append(Z)
        out = A[-1]
        delta = np.subtract(out, y_batch, out=self.deltas[-1][:m])        # A^L - Y
        scratch = self.scratch[-1][:m]
        if workload.loss == "mse":
            cost = 0.5 * float(np.vdot(delta, delta))
            np.subtract(1, out, out=scratch)
            scratch *= out
            delta *= scratch                                              # (A - Y) a (1 - a)
        else:
            np.maximum(out, self.tiny, out=scratch)
            np.log(scratch, out=scratch)
            cost = -float(np.vdot(y_batch, scratch))
        l2 = workload.l2
        if l2:
            cost += m * l2 / 2 * sum(float(np.vdot(W, W)) for W in weights)
        eta = workload.learning_rate
        if self.adam:
            self.t += 1
        for k in range(n_layers - 1, -1, -1):
            if k > 0:
                # delta^{k} = (delta^{k+1} W) * f'(A), before W changes
                previous = np.matmul(delta, weights[k], out=self.deltas[k - 1][:m])
                activation = A[k]
                if hidden_sigmoid:
                    slope = self.scratch[k - 1][:m]
                    np.subtract(1, activation, out=slope)
                    slope *= activation
                    previous *= slope
                else:
                    mask = np.less_equal(activation, 0, out=self.masks[k - 1][:m])
                    np.copyto(previous, 0, where=mask)
            if self.adam:
                delta *= 1 / m
                gradient = np.matmul(delta.T, A[k], out=self.gradients[k])
                if l2:
                    work = np.multiply(weights[k], l2, out=self.work[k])
                    gradient += work
                self._adam(k, gradient)
                bias_gradient = np.sum(delta, axis=0, out=self.bias_gradients[k])
                self._adam(n_layers + k, bias_gradient)
            else:
                if l2:
                    weights[k] *= 1 - eta * l2
                delta *= eta / m
                gradient = np.matmul(delta.T, A[k], out=self.gradients[k])
                weights[k] -= gradient
                biases[k] -= np.sum(delta, axis=0, out=self.bias_gradients[k])
            if k > 0:
                delta = previous
        return cost

    def _adam(self, index, gradient):
        """m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2; p -= eta mhat / (sqrt(vhat) + eps)."""
        workload = self.workload
        parameter = (self.weights + self.biases)[index]
        first, second, work = self.first[index], self.second[index], self.work[index]
        beta1, beta2 = workload.beta1, workload.beta2
        first *= beta1
        np.multiply(gradient, 1 - beta1, out=work)
        first += work
        second *= beta2
        np.multiply(gradient, gradient, out=work)
        work *= 1 - beta2
        second += work
        np.multiply(second, 1 / (1 - beta2 ** self.t), out=work)
        np.sqrt(work, out=work)
        work += workload.epsilon
        np.divide(first, work, out=work)
        work *= workload.learning_rate / (1 - beta1 ** self.t)
        parameter -= work

    def parameters(self):
        return self.weights, self.biases


def _sigmoid_in_place(Z):
    """1 / (1 + exp(-z)) in place (exp may overflow to inf for z << 0: 1/inf = 0)."""
    np.negative(Z, out=Z)
    np.exp(Z, out=Z)
    Z += 1
    np.reciprocal(Z, out=Z)


class OracleRunner:
    """fastbp.baseline.train_epoch, the test oracle: checks, recomputes J, fresh arrays."""

    name = "oracle"

    def __init__(self, workload, X, Y, shuffle=True):
        network = _initial_network(workload, X.dtype)
        self.weights = [weight.copy() for weight in network.weights]
        self.biases = [bias.copy() for bias in network.biases]
        self.workload = workload
        self.shuffle = shuffle
        self.rng = np.random.default_rng(SEED)
        self.state = {}
        self.X, self.Y = X, Y

    def run_epoch(self):
        order = self.rng.permutation(self.X.shape[0]) if self.shuffle else None
        workload = self.workload
        options = workload.trainer_options()
        del options["loss"]
        return baseline.train_epoch(
            self.weights, self.biases, self.X, self.Y, activation=workload.activation,
            output=workload.output, loss=workload.loss, order=order, state=self.state,
            **options,
        )

    def parameters(self):
        return self.weights, self.biases


BaselineRunner = OracleRunner


class TorchRunner:
    """The same epoch in PyTorch eager, by hand: addmm/mm, in-place updates, no autograd.

    Hidden layers sigmoid or relu; sigmoid/mse or softmax/cross_entropy;
    plain SGD or adam (the in-place arithmetic of torch.optim.Adam).
    """

    name = "torch"

    def __init__(self, workload, X, Y, shuffle=True):
        import torch

        _check_maths(workload, "torch runner")
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
        # A^l (l >= 1), delta^l, and f'(A^l), one buffer each per layer
        self.activations = [torch.empty((b, n), dtype=dtype) for n in sizes[1:]]
        self.deltas = [torch.empty((b, n), dtype=dtype) for n in sizes[1:]]
        self.derivatives = [torch.empty((b, n), dtype=dtype) for n in sizes[1:]]
        self.column_sums = [torch.empty(n, dtype=dtype) for n in sizes[1:]]
        self.adam = workload.optimizer == "adam"
        if self.adam:
            parameters = self.weights + self.biases
            self.gradients = [torch.empty_like(p) for p in self.weights]
            self.first = [torch.zeros_like(p) for p in parameters]
            self.second = [torch.zeros_like(p) for p in parameters]
            self.work = [torch.empty_like(p) for p in parameters]
            self.t = 0

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
        workload = self.workload
        m = x_batch.shape[0]
        n_layers = len(self.weights)
        output, loss = workload.output, workload.loss
        sigmoid_hidden = workload.activation == "sigmoid"
        A = [x_batch]
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            # Z^l = A^{l-1} (W^l)^T + b^l, activated in place
            Z = torch.addmm(bias, A[k], weight.t(), out=self.activations[k][:m])
            if k < n_layers - 1:
                Z.sigmoid_() if sigmoid_hidden else Z.relu_()
            elif output == "sigmoid":
                Z.sigmoid_()
            else:
                Z = torch.softmax(Z, dim=1)
            A.append(Z)
        out = A[-1]
        delta = torch.sub(out, y_batch, out=self.deltas[-1][:m])   # A^L - Y
        if loss == "mse":
            cost = 0.5 * torch.dot(delta.view(-1), delta.view(-1))
            delta.mul_(out).mul_(1 - out)                          # (A - Y) a (1 - a)
        else:
            cost = -torch.sum(y_batch * torch.log(out.clamp_min(torch.finfo(out.dtype).tiny)))
        l2 = workload.l2
        if l2:
            cost = cost + m * l2 / 2 * sum(torch.dot(W.view(-1), W.view(-1))
                                           for W in self.weights)
        eta = workload.learning_rate
        step = eta / m
        if self.adam:
            self.t += 1
        for k in range(n_layers - 1, -1, -1):
            if k > 0:
                # delta^{l-1} = (delta^l W^l) * f'(a^{l-1}), before W^l changes
                previous = torch.mm(delta, self.weights[k], out=self.deltas[k - 1][:m])
                if sigmoid_hidden:
                    slope = self.derivatives[k - 1][:m]
                    torch.mul(A[k], A[k], out=slope)
                    torch.sub(A[k], slope, out=slope)
                    previous.mul_(slope)
                else:
                    previous.masked_fill_(A[k] <= 0, 0)
            if self.adam:
                gradient = torch.mm(delta.t(), A[k], out=self.gradients[k]).mul_(1 / m)
                if l2:
                    gradient.add_(self.weights[k], alpha=l2)
                self._adam(k, self.weights[k], gradient)
                column_sums = torch.sum(delta, dim=0, out=self.column_sums[k]).mul_(1 / m)
                self._adam(n_layers + k, self.biases[k], column_sums)
            else:
                # W^l <- (1 - eta l2) W^l - (eta/m) (delta^l)^T A^{l-1};  b^l -= (eta/m) sum delta^l
                if l2:
                    self.weights[k].mul_(1 - eta * l2)
                self.weights[k].addmm_(delta.t(), A[k], alpha=-step)
                column_sums = torch.sum(delta, dim=0, out=self.column_sums[k])
                self.biases[k].sub_(column_sums, alpha=step)
            if k > 0:
                delta = previous
        return cost.double()

    def _adam(self, index, parameter, gradient):
        workload = self.workload
        first, second, work = self.first[index], self.second[index], self.work[index]
        first.mul_(workload.beta1).add_(gradient, alpha=1 - workload.beta1)
        second.mul_(workload.beta2).addcmul_(gradient, gradient, value=1 - workload.beta2)
        correction1 = 1 - workload.beta1 ** self.t
        correction2 = 1 - workload.beta2 ** self.t
        # torch.optim.Adam's arithmetic: p -= eta/c1 * m / (sqrt(v)/sqrt(c2) + eps)
        torch = self.torch
        torch.sqrt(second, out=work).div_(correction2 ** 0.5).add_(workload.epsilon)
        parameter.addcdiv_(first, work, value=-workload.learning_rate / correction1)

    def parameters(self):
        return ([weight.numpy() for weight in self.weights],
                [bias.numpy() for bias in self.biases])


class JaxRunner:
    """A jit-compiled JAX epoch: lax.scan over the batches, parameters donated.

    Each step is ``jax.value_and_grad`` of the batch's J (the same J as
    fastbp's) and the update (plain SGD, or adam by hand). The batches of
    the shuffled order are gathered inside the compiled epoch; a short last
    batch runs as one more compiled step. XLA on the CPU; float64 turns on
    ``jax_enable_x64``. The first epoch compiles (the warm-up).
    """

    name = "jax"

    def __init__(self, workload, X, Y, shuffle=True):
        import jax

        _check_maths(workload, "jax runner")
        if X.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.workload = workload
        self.shuffle = shuffle
        self.rng = np.random.default_rng(SEED)
        network = _initial_network(workload, X.dtype)
        self.params = (tuple(jnp.asarray(w) for w in network.weights),
                       tuple(jnp.asarray(b) for b in network.biases))
        zeros = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.opt_state = (jnp.zeros((), jnp.int32), zeros,
                          jax.tree_util.tree_map(jnp.zeros_like, self.params))
        self.X, self.Y = jnp.asarray(X), jnp.asarray(Y)
        self.n_samples = X.shape[0]
        self._epoch = jax.jit(self._make_epoch(), donate_argnums=(0, 1))
        self._tail = jax.jit(self._make_tail(), donate_argnums=(0, 1))

    def _loss(self, params, x_batch, y_batch):
        jax, jnp = self.jax, self.jnp
        workload = self.workload
        weights, biases = params
        a = x_batch
        n_layers = len(weights)
        for k in range(n_layers):
            z = a @ weights[k].T + biases[k]
            if k < n_layers - 1:
                a = jax.nn.sigmoid(z) if workload.activation == "sigmoid" else jax.nn.relu(z)
        m = x_batch.shape[0]
        if workload.loss == "mse":
            cost = 0.5 * jnp.sum((jax.nn.sigmoid(z) - y_batch) ** 2) / m
        else:
            cost = -jnp.sum(y_batch * jax.nn.log_softmax(z, axis=1)) / m
        if workload.l2:
            cost = cost + workload.l2 / 2 * sum(jnp.sum(w * w) for w in weights)
        return cost

    def _update(self, params, opt_state, grads):
        jax, jnp = self.jax, self.jnp
        workload = self.workload
        eta = workload.learning_rate
        if workload.optimizer == "sgd":
            return jax.tree_util.tree_map(lambda p, g: p - eta * g, params, grads), opt_state
        t, first, second = opt_state
        t = t + 1
        beta1, beta2, epsilon = workload.beta1, workload.beta2, workload.epsilon
        first = jax.tree_util.tree_map(lambda m, g: beta1 * m + (1 - beta1) * g, first, grads)
        second = jax.tree_util.tree_map(lambda v, g: beta2 * v + (1 - beta2) * g * g,
                                        second, grads)
        tf = t.astype(self.X.dtype)
        correction1, correction2 = 1 - beta1 ** tf, 1 - beta2 ** tf
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - eta * (m / correction1) / (jnp.sqrt(v / correction2) + epsilon),
            params, first, second)
        return params, (t, first, second)

    def _step(self, params, opt_state, x_batch, y_batch):
        J, grads = self.jax.value_and_grad(self._loss)(params, x_batch, y_batch)
        params, opt_state = self._update(params, opt_state, grads)
        return params, opt_state, J * x_batch.shape[0]

    def _make_epoch(self):
        jax = self.jax

        def epoch(params, opt_state, X, Y, batches):
            def body(carry, rows):
                params, opt_state = carry
                params, opt_state, cost = self._step(params, opt_state, X[rows], Y[rows])
                return (params, opt_state), cost

            (params, opt_state), costs = jax.lax.scan(body, (params, opt_state), batches)
            return params, opt_state, costs.sum()

        return epoch

    def _make_tail(self):
        def tail(params, opt_state, X, Y, rows):
            return self._step(params, opt_state, X[rows], Y[rows])

        return tail

    def run_epoch(self):
        jnp = self.jnp
        n, b = self.n_samples, self.workload.batch_size
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        order = order.astype(np.int32)
        full = n // b
        params, opt_state = self.params, self.opt_state
        total = 0.0
        if full:
            params, opt_state, cost = self._epoch(params, opt_state, self.X, self.Y,
                                                  jnp.asarray(order[:full * b].reshape(full, b)))
            total += float(cost)
        if full * b < n:
            params, opt_state, cost = self._tail(params, opt_state, self.X, self.Y,
                                                 jnp.asarray(order[full * b:]))
            total += float(cost)
        self.params, self.opt_state = params, opt_state
        return total / n

    def parameters(self):
        weights, biases = self.params
        return [np.asarray(w) for w in weights], [np.asarray(b) for b in biases]


class SklearnRunner:
    """scikit-learn's MLPClassifier at its defaults, one epoch per ``partial_fit``.

    hidden_layer_sizes=(100,), relu, adam 1e-3, batch 200, alpha 1e-4,
    shuffled; labels are the one-hot targets' argmax (made outside the
    timed region). Its own initial weights (Glorot), set by the warm-up
    epoch. sklearn keeps float32 inputs in float32.
    """

    name = "sklearn"

    def __init__(self, workload, X, Y, shuffle=True):
        from sklearn.neural_network import MLPClassifier

        if workload.name != "sklearn-default":
            raise NotImplementedError(unavailable("sklearn", workload))
        self.model = MLPClassifier(
            hidden_layer_sizes=tuple(workload.layer_sizes[1:-1]), activation="relu",
            solver="adam", alpha=workload.l2 * workload.batch_size,
            batch_size=workload.batch_size, learning_rate_init=workload.learning_rate,
            beta_1=workload.beta1, beta_2=workload.beta2, epsilon=workload.epsilon,
            shuffle=shuffle, random_state=SEED)
        self.X = X
        self.labels = Y.argmax(axis=1)
        self.classes = np.arange(Y.shape[1])

    def run_epoch(self):
        self.model.partial_fit(self.X, self.labels, classes=self.classes)
        return float(self.model.loss_)

    def parameters(self):
        return ([c.T for c in self.model.coefs_], list(self.model.intercepts_))


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
    "numpy": NumpyRunner,
    "oracle": OracleRunner,
    "baseline": OracleRunner,       # the old name of the oracle (--scaling, --memory)
    "torch": TorchRunner,
    "jax": JaxRunner,
    "sklearn": SklearnRunner,
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
