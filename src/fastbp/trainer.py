"""Trainer: loss, optimizer, regularization and the fit loop around the kernels."""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import time
import warnings
from numbers import Integral, Real

import numpy as np

from . import _kernels
from ._validation import (
    Interval,
    Options,
    _all_finite,
    check_inputs,
    check_params,
    check_targets,
    non_finite_message,
)
from .network import (
    Network,
    _atomic_savez,
    _check_seed,
    _in_main_thread,
    _read_npz,
    _UsageGuard,
)
from .schedules import Schedule, make_schedule, schedule_from_config

__all__ = ["Trainer", "DivergenceError"]

logger = logging.getLogger("fastbp")

# Checkpoint file layout (.npz, read with allow_pickle=False):
#   format, format_version   "fastbp.checkpoint", CHECKPOINT_VERSION
#   meta                     JSON: config, schedule [class, config, state], epoch,
#                            updates, state_owner, rng (bit generator state), history
#   state1, state2           optimizer state in the flat parameter layout (or empty)
#   network_*                the network, as in a network file
CHECKPOINT_FORMAT = "fastbp.checkpoint"
CHECKPOINT_VERSION = 1


class DivergenceError(FloatingPointError):
    """Training produced NaN or infinite parameters or loss.

    Raised after the parameters (and optimizer state) from before the
    failing epoch or step have been restored.
    """


def _count(value, name):
    """A checkpoint's non-negative integer count, refused in any other form."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


class Trainer:
    """Mini-batch gradient descent on a Network.

    The objective on a batch B of m samples is

        J = (1/m) sum_{i in B} C_i + (l2 / 2) sum_l ||W^l||_F^2

    with C the per-sample cost (``mse``: 1/2 ||a - y||^2; ``cross_entropy``:
    -sum y log a for softmax, the binary form for sigmoid outputs). Biases are
    never regularized.

    Parameters
    ----------
    network : Network
        The network to train; its parameters are updated in place.
    loss : {'mse', 'cross_entropy'}
        Per-sample cost C. cross_entropy needs a sigmoid or softmax output.
    learning_rate : float > 0
        Step size eta.
    batch_size : int >= 1
        Mini-batch size m; the last batch of an epoch may be shorter.
    l2 : float >= 0
        L2 penalty lambda on the weights, as in J above. Nielsen's lambda
        over n training samples is ``l2 = lambda_N / n``; scikit-learn's
        ``alpha`` with batch size m is ``l2 = alpha / m``.
    optimizer : {'sgd', 'rmsprop', 'adam', 'adamw'}
        Update rule, with g = dJ/dW (penalties included) and eta the
        learning rate:

        - ``sgd``: ``W <- W - eta g``; with momentum mu,
          ``v <- mu v - eta g; W <- W + v`` (Nesterov: ``W <- W + mu v - eta g``).
        - ``rmsprop``: ``s <- rho s + (1 - rho) g^2; W <- W - eta g / (sqrt(s) + epsilon)``.
        - ``adam``: ``m <- beta1 m + (1 - beta1) g; v <- beta2 v + (1 - beta2) g^2;
          W <- W - eta mhat / (sqrt(vhat) + epsilon)`` with the bias-corrected
          ``mhat = m / (1 - beta1^t)``, ``vhat = v / (1 - beta2^t)``.
        - ``adamw``: adam with decoupled weight decay (default 0.01).
    momentum : float in [0, 1)
        Momentum of ``sgd``; 0 is plain SGD,
        ``W <- (1 - eta l2) W - (eta/m) delta^T A``.
    shuffle : bool
        Draw a fresh permutation of the samples each epoch from the trainer's
        own generator; False takes the batches in order.
    seed : int or None
        Seed of the trainer's generator (shuffling); None draws fresh entropy.
    l1 : float >= 0
        L1 penalty on the weights: J gains ``l1 sum_l |W^l|_1`` and the
        gradient its subgradient ``l1 sign(W)``. Biases are never penalized.
    nesterov : bool
        Nesterov momentum (``sgd`` with momentum > 0 only).
    weight_decay : float >= 0 or None
        Decoupled weight decay, ``W <- W - eta weight_decay W`` at each update
        beside the optimizer's own step (Loshchilov and Hutter's AdamW); it is
        not part of J, unlike ``l2``. None means 0.01 for ``adamw`` and 0
        otherwise. Biases are never decayed.
    rho : float in [0, 1)
        RMSprop's decay of the squared-gradient average.
    beta1, beta2 : float in [0, 1)
        Adam's decays of the first and second moment estimates.
    epsilon : float > 0
        Adam's and RMSprop's guard against division by zero.
    on_divergence : {'raise', 'warn'}
        When an epoch (or step) ends with NaN or infinite loss or parameters,
        the parameters and optimizer state from before it are restored; then
        'raise' raises DivergenceError, 'warn' issues a RuntimeWarning and
        ends the fit (keeping the finished epochs' history).
    schedule : None, str or fastbp.schedules.Schedule
        Learning rate per epoch: None or 'constant' keeps `learning_rate`;
        'step', 'exponential', 'invscaling', 'plateau' (on val_loss) take
        the default settings of StepDecay, ExponentialDecay, InverseScaling
        and ReduceOnPlateau; pass an instance to choose them.

    Attributes
    ----------
    history : dict of list
        Per-epoch metrics over every `fit` call so far.
    epoch : int
        Number of epochs trained by `fit`.
    current_learning_rate : float
        The rate the schedule gives the next epoch.
    stop_training : bool
        Set it to True (from a callback) to end the running fit after the
        current epoch.
    """

    _parameter_constraints = {
        "loss": Options(("mse", "cross_entropy")),
        "learning_rate": Interval(Real, 0, None, closed="neither"),
        "batch_size": Interval(Integral, 1, None, closed="left"),
        "l2": Interval(Real, 0, None, closed="left"),
        "optimizer": Options(("sgd", "rmsprop", "adam", "adamw")),
        "momentum": Interval(Real, 0, 1, closed="left"),
        "shuffle": Options((True, False)),
        "l1": Interval(Real, 0, None, closed="left"),
        "nesterov": Options((True, False)),
        "rho": Interval(Real, 0, 1, closed="left"),
        "beta1": Interval(Real, 0, 1, closed="left"),
        "beta2": Interval(Real, 0, 1, closed="left"),
        "epsilon": Interval(Real, 0, None, closed="neither"),
        "on_divergence": Options(("raise", "warn")),
    }

    def __init__(self, network, loss="mse", learning_rate=3.0, batch_size=10, l2=0.0,
                 optimizer="sgd", momentum=0.0, shuffle=True, seed=None, *, l1=0.0,
                 nesterov=False, weight_decay=None, rho=0.9, beta1=0.9, beta2=0.999,
                 epsilon=1e-8, schedule=None, on_divergence="raise"):
        if not isinstance(network, Network):
            raise TypeError(f"network must be a fastbp.Network, got {type(network).__name__}")
        self.network = network
        self.loss = loss
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.l2 = l2
        self.optimizer = optimizer
        self.momentum = momentum
        self.shuffle = shuffle
        self.seed = _check_seed(seed)
        self.l1 = l1
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.rho = rho
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.schedule = make_schedule(schedule)
        self.on_divergence = on_divergence
        self._validate_params()
        self._guard = _UsageGuard("Trainer")
        self._rng = np.random.default_rng(self.seed)
        empty = np.empty(0, dtype=network.dtype)
        # optimizer state, in the layout of the network's flat parameters
        self._state1 = empty        # velocity, squared-gradient average, or first moment
        self._state2 = empty        # Adam's second moment
        self._state_owner = None    # the optimizer the state belongs to
        self._grads = empty         # gradient scratch for the non-fused rules
        self._updates = 0           # updates made, Adam's t
        self._work = empty
        self.history = {}
        self.epoch = 0
        self.stop_training = False

    # ------------------------------------------------------------- validation

    def _validate_params(self):
        """Check every hyperparameter; raises before anything changes."""
        if not isinstance(self.network, Network):
            raise TypeError(f"network must be a fastbp.Network, got {self.network!r}")
        params = {name: getattr(self, name) for name in self._parameter_constraints}
        check_params(params, self._parameter_constraints)
        if not isinstance(self.schedule, Schedule):
            raise TypeError(f"schedule must be a fastbp.schedules.Schedule, got {self.schedule!r}")
        if self.weight_decay is not None:
            check_params({"weight_decay": self.weight_decay},
                         {"weight_decay": Interval(Real, 0, None, closed="left")})
        if self.momentum != 0 and self.optimizer != "sgd":
            raise ValueError(
                f"momentum applies to optimizer='sgd' only, got momentum={self.momentum!r} "
                f"with optimizer={self.optimizer!r}"
            )
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs optimizer='sgd' with momentum > 0")
        if self.loss == "cross_entropy" and self.network.output == "identity":
            raise ValueError(
                "loss='cross_entropy' needs outputs in (0, 1): use output='sigmoid' or "
                "'softmax' in the Network, or loss='mse'"
            )

    def _check_data(self, X, Y, names=("X", "Y"), check_finite=True):
        net = self.network
        X = check_inputs(X, int(net._sizes[0]), net.dtype.type, name=names[0],
                         check_finite=check_finite)
        Y, is_labels = check_targets(Y, X.shape[0], int(net._sizes[-1]), net.dtype.type,
                                     name=names[1])
        return X, Y, is_labels

    def _workspace(self, capacity):
        """The work vector for batches of `capacity` rows, grown only when needed."""
        size = _kernels.workspace_size(self.network._sizes, capacity)
        if self._work.size < size or self._work.dtype != self.network.dtype:
            self._work = np.empty(size, dtype=self.network.dtype)
        return self._work

    def _penalty(self):
        """(l2 / 2) sum ||W||_F^2 + l1 sum |W|_1 at the current weights."""
        total = 0.0
        for weight in self.network.weights:
            if self.l2:
                total += 0.5 * self.l2 * float(np.dot(weight.ravel(), weight.ravel()))
            if self.l1:
                total += self.l1 * float(np.abs(weight).sum())
        return total

    @property
    def _decay(self):
        """The decoupled weight decay in force."""
        if self.weight_decay is None:
            return 0.01 if self.optimizer == "adamw" else 0.0
        return float(self.weight_decay)

    def _prepare_state(self):
        """Allocate the optimizer state the current settings need, once.

        State belongs to one optimizer: switching optimizer starts it afresh
        (zeros); everything else (more fit calls, a new learning rate) keeps it.
        """
        params = self.network._params
        if self._state_owner != self.optimizer:
            empty = np.empty(0, dtype=params.dtype)
            self._state1 = self._state2 = empty
            self._updates = 0
            self._state_owner = self.optimizer
        if self._state1.size == 0 and (self.optimizer != "sgd" or self.momentum):
            self._state1 = np.zeros_like(params)
        if self._state2.size == 0 and self.optimizer in ("adam", "adamw"):
            self._state2 = np.zeros_like(params)
        fused = (self.optimizer == "sgd" and not self.l1 and not self._decay
                 and not self.nesterov)
        if self._grads.size == 0 and not fused:
            self._grads = np.empty_like(params)

    @property
    def _loss_code(self):
        return _kernels.LOSS_CODES[self.loss]

    # ------------------------------------------------------------------ API

    def loss_and_gradients(self, X, Y):
        """The objective J and its gradients on one batch, without an update.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)
        Y : array-like of shape (n_samples, n_L), or (n_samples,) class labels

        Returns
        -------
        loss : float
            J on the batch, L2 penalty included.
        grad_weights : list of ndarray of shape (n_l, n_{l-1})
            dJ/dW^l.
        grad_biases : list of ndarray of shape (n_l,)
            dJ/db^l.
        """
        self._validate_params()
        X, Y, _ = self._check_data(X, Y)
        net = self.network
        grads = np.empty_like(net._params)
        with self._guard.writing("loss_and_gradients"), net._guard.reading("loss_and_gradients"):
            loss, _ = _kernels.loss_and_gradients(
                net._params, grads, net._sizes, net._codes, self._loss_code, X, Y,
                self._workspace(X.shape[0]), float(self.l2), float(self.l1),
            )
        grad_weights, grad_biases, offset = [], [], 0
        for weight, bias in zip(net.weights, net.biases):
            grad_weights.append(grads[offset:offset + weight.size].reshape(weight.shape))
            offset += weight.size
            grad_biases.append(grads[offset:offset + bias.size])
            offset += bias.size
        return float(loss), grad_weights, grad_biases

    def step(self, X, Y):
        """One update from one mini-batch (all of X and Y).

        Returns
        -------
        loss : float
            J on the batch before the update.
        """
        self._validate_params()
        X, Y, _ = self._check_data(X, Y)
        with self._guard.writing("step"), self.network._guard.writing("step"):
            total, _, _ = self._run_epoch(X, Y, np.empty(0, dtype=np.intp), X.shape[0],
                                       "this step", self.current_learning_rate)
        if total is None:       # diverged with on_divergence="warn"
            return float("nan")
        return total / X.shape[0]

    def evaluate(self, X, Y):
        """Objective and accuracy on a data set, without any update.

        Returns
        -------
        metrics : dict
            ``loss`` (J with the L2 penalty, as in training) and, when Y holds
            class labels or one-hot rows, ``accuracy``.
        """
        self._validate_params()
        X, Y, is_labels = self._check_data(X, Y)
        with self._guard.reading("evaluate"), self.network._guard.reading("evaluate"):
            return self._evaluate(X, Y, is_labels)

    def _evaluate(self, X, Y, is_labels):
        _, cost, n_correct = self.network._forward(X, Y, self._loss_code)
        metrics = {"loss": cost / X.shape[0] + self._penalty()}
        if is_labels:
            metrics["accuracy"] = n_correct / X.shape[0]
        return metrics

    @property
    def current_learning_rate(self):
        return float(self.schedule.rate(self.epoch, float(self.learning_rate)))

    def fit(self, X, Y, epochs=30, validation_data=None, verbose=0, *,
            validation_split=0.0, callbacks=None):
        """Train for `epochs` epochs of mini-batch gradient descent.

        Calling `fit` again continues where the last call stopped: the
        parameters, optimizer state, schedule position, epoch count and
        random generator carry on; nothing is reset.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)
            Training inputs, any memory layout.
        Y : array-like of shape (n_samples, n_L), or (n_samples,) class labels
            Training targets; integer labels in [0, n_L) are one-hot encoded.
        epochs : int >= 0
            Number of passes over the data.
        validation_data : tuple (X_val, Y_val), optional
            Held-out data evaluated after every epoch (one forward pass).
        verbose : {0, 1, 2}
            0 prints nothing; 1 shows a live progress bar (tqdm) with the
            latest metrics; 2 prints one line per epoch. Every epoch is also
            logged at INFO level on the "fastbp" logger.
        validation_split : float in [0, 1)
            Hold out this fraction of (X, Y) as validation data instead,
            drawn from the trainer's generator, stratified by class when Y
            holds class labels. Not with `validation_data`.
        callbacks : list of callback objects, optional
            See fastbp.callbacks (EarlyStopping, LambdaCallback, ...).

        Returns
        -------
        history : dict of list
            One value per epoch of this call: ``loss`` (mean J over the
            epoch's batches, each measured before its update, computed in
            the training pass itself), ``accuracy`` when Y holds class
            labels, ``val_loss`` and ``val_accuracy`` with validation data,
            ``learning_rate`` and ``epoch_seconds``.

        Raises
        ------
        DivergenceError
            When an epoch ends with NaN or infinite loss or parameters; the
            parameters and optimizer state from before that epoch are
            restored first, and the history keeps every finished epoch.
        """
        self._validate_params()
        check_params({"epochs": epochs, "verbose": verbose, "validation_split": validation_split}, {
            "epochs": Interval(Integral, 0, None, closed="left"),
            "verbose": Interval(Integral, 0, 2, closed="both"),
            "validation_split": Interval(Real, 0, 1, closed="left"),
        })
        callbacks = self._check_callbacks(callbacks)
        # NaN or infinity in X: found by the first epoch's kernel in the rows
        # of each batch it reads (in cache) instead of by a pass of its own
        # over X; the fit is then undone (below) and refused like any other
        deferred = int(epochs) > 0
        X, Y, is_labels = self._check_data(X, Y, check_finite=not deferred)
        if validation_data is not None:
            if validation_split:
                raise ValueError("give validation_data or validation_split, not both")
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a tuple (X_val, Y_val)")
            X_val, Y_val, val_is_labels = self._check_data(
                *validation_data, names=("validation_data[0]", "validation_data[1]")
            )
        else:
            val_is_labels = is_labels

        validating = validation_data is not None or bool(validation_split)
        keys = ["loss"] + (["accuracy"] if is_labels else [])
        if validating:
            keys += ["val_loss"] + (["val_accuracy"] if val_is_labels else [])
        keys += ["learning_rate", "epoch_seconds"]
        history = {key: [] for key in keys}
        for watcher in [self.schedule, *callbacks]:
            monitor = getattr(watcher, "monitor", None)
            if monitor is not None and monitor not in history:
                raise ValueError(
                    f"{type(watcher).__name__} monitors {monitor!r}, which this fit does "
                    f"not record (it records {keys}); pass validation_data or "
                    f"validation_split, or choose another monitor"
                )

        with self._guard.writing("fit"), self.network._guard.writing("fit"):
            # the fit draws (split, permutations) from a copy of the generator,
            # which replaces it once the fit is accepted: a refused fit, also
            # one refused by the kernel, leaves the original as it was
            rng_before = self._rng
            rng = copy.deepcopy(rng_before)
            if validation_split:
                train, held_out = self._split(Y, is_labels, float(validation_split), rng)
                X, X_val = X[train], X[held_out]
                Y, Y_val = Y[train], Y[held_out]
                if deferred and not _all_finite(X_val):     # the kernel reads X only
                    raise ValueError(non_finite_message("X", self.network.dtype))
            self._rng = rng
            try:
                self._fit_loop(X, Y, is_labels, X_val if validating else None,
                               Y_val if validating else None,
                               val_is_labels if validating else False,
                               int(epochs), verbose, callbacks, history, deferred)
            except _kernels.NonFiniteInput:
                # _run_epoch has put back the parameters and optimizer state
                self._rng = rng_before
                raise ValueError(non_finite_message("X", self.network.dtype)) from None
        return history

    def _fit_loop(self, X, Y, is_labels, X_val, Y_val, val_is_labels, epochs, verbose,
                  callbacks, history, check_inputs):
        validating = X_val is not None
        n_samples = X.shape[0]
        no_order = np.empty(0, dtype=np.intp)
        progress = self._progress(epochs) if verbose == 1 else None
        self.stop_training = False
        for callback in callbacks:
            if hasattr(callback, "on_fit_begin"):
                callback.on_fit_begin(self, history)
        try:
            for _ in range(epochs):
                started = time.perf_counter()
                rate = self.current_learning_rate
                order = self._rng.permutation(n_samples) if self.shuffle else no_order
                validate = (lambda: self._evaluate(X_val, Y_val, val_is_labels)) \
                    if validating else None
                total, n_correct, metrics = self._run_epoch(
                    X, Y, order, int(self.batch_size), f"epoch {self.epoch + 1}", rate,
                    validate, check_inputs,
                )
                check_inputs = False        # the first epoch has read every row
                # drop this epoch's permutation before the next one is drawn:
                # one alive at a time, so a fit's peak memory does not grow
                order = None
                if total is None:       # diverged with on_divergence="warn"
                    break
                self.epoch += 1
                record = {"loss": total / n_samples}
                if is_labels:
                    record["accuracy"] = n_correct / n_samples
                if validating:
                    record["val_loss"] = metrics["loss"]
                    if val_is_labels:
                        record["val_accuracy"] = metrics["accuracy"]
                record["learning_rate"] = rate
                record["epoch_seconds"] = time.perf_counter() - started
                for key, value in record.items():
                    history[key].append(value)
                    self.history.setdefault(key, []).append(value)
                self.schedule.update(self.epoch - 1, record)
                self._report(record, verbose, progress)
                for callback in callbacks:
                    if hasattr(callback, "on_epoch_end"):
                        if callback.on_epoch_end(self, self.epoch, history):
                            self.stop_training = True
                if self.stop_training:
                    break
        finally:
            if progress is not None:
                progress.close()
        for callback in callbacks:
            if hasattr(callback, "on_fit_end"):
                callback.on_fit_end(self, history)

    def partial_fit(self, X, Y, validation_data=None, verbose=0, *, callbacks=None):
        """One more epoch over (X, Y): ``fit(X, Y, epochs=1, ...)``.

        The optimizer state, schedule and epoch count carry on, so repeated
        calls train exactly like one `fit` call with as many epochs.
        """
        return self.fit(X, Y, epochs=1, validation_data=validation_data, verbose=verbose,
                        callbacks=callbacks)

    def _check_callbacks(self, callbacks):
        if callbacks is None:
            return []
        if not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks must be a list of callback objects, got {callbacks!r}")
        hooks = ("on_fit_begin", "on_epoch_end", "on_fit_end")
        for callback in callbacks:
            if not any(callable(getattr(callback, hook, None)) for hook in hooks):
                raise TypeError(
                    f"callbacks entries need at least one of the methods {hooks}, "
                    f"got {callback!r}"
                )
        return list(callbacks)

    def _split(self, Y, is_labels, fraction, rng):
        """Index arrays (train, held_out), drawn from the generator `rng`.

        With class labels every class gives round(fraction * its count)
        samples (at least one when it has two or more), so both parts keep
        the class proportions.
        """
        n_samples = Y.shape[0]
        if is_labels:
            labels = Y.argmax(axis=1) if Y.shape[1] > 1 else (Y[:, 0] >= 0.5).astype(np.intp)
            held = []
            for label in np.unique(labels):
                members = np.flatnonzero(labels == label)
                count = int(round(fraction * members.size))
                if count == 0 and members.size > 1:
                    count = 1
                held.append(rng.permutation(members)[:count])
            held_out = np.sort(np.concatenate(held))
        else:
            count = int(round(fraction * n_samples))
            held_out = np.sort(rng.permutation(n_samples)[:count])
        if held_out.size == 0 or held_out.size == n_samples:
            raise ValueError(
                f"validation_split={fraction} leaves {n_samples - held_out.size} training and "
                f"{held_out.size} validation samples of {n_samples}; both must be non-empty"
            )
        train = np.setdiff1d(np.arange(n_samples), held_out, assume_unique=True)
        return train, held_out

    def _progress(self, epochs):
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return None
        return tqdm(total=epochs, unit="epoch", desc="fastbp", leave=True)

    def _report(self, record, verbose, progress):
        line = f"epoch {self.epoch}: " + ", ".join(
            f"{key} {value:.4g}" for key, value in record.items()
        )
        logger.info(line)
        if progress is not None:
            progress.set_postfix({key: f"{value:.4g}" for key, value in record.items()
                                  if key != "epoch_seconds"}, refresh=False)
            progress.update(1)
        elif verbose:
            print(line, file=sys.stdout, flush=True)

    # ------------------------------------------------------------- checkpoints

    def get_config(self):
        """The constructor arguments (bar the network) as a JSON-serializable dict."""
        config = {name: getattr(self, name) for name in self._parameter_constraints}
        config.update(seed=self.seed, weight_decay=self.weight_decay)
        return config

    def save_checkpoint(self, path):
        """Write everything needed to resume training bit for bit.

        The .npz file (read with allow_pickle=False) holds the network, the
        hyperparameters, the optimizer state and update count, the schedule
        and its position, the epoch count, the random generator's state and
        the history. Saved atomically, like `Network.save`.
        """
        with self._guard.reading("save_checkpoint"), \
                self.network._guard.reading("save_checkpoint"):
            self._prepare_state()
            meta = {
                "config": self.get_config(),
                "schedule": [type(self.schedule).__name__, self.schedule.get_config(),
                             self.schedule.get_state()],
                "epoch": self.epoch,
                "updates": self._updates,
                "state_owner": self._state_owner,
                "rng": self._rng.bit_generator.state,
                "history": self.history,
            }
            arrays = {
                "format": np.array(CHECKPOINT_FORMAT),
                "format_version": np.array(CHECKPOINT_VERSION, dtype=np.int64),
                "meta": np.array(json.dumps(meta)),
                "state1": self._state1,
                "state2": self._state2,
            }
            arrays.update(self.network._to_arrays(prefix="network_"))
            _atomic_savez(path, arrays)

    @classmethod
    def load_checkpoint(cls, path):
        """A Trainer (with its Network) restored from `save_checkpoint`'s file."""
        source = os.fspath(path)
        arrays = _read_npz(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
        network = Network._from_arrays(arrays, source, prefix="network_")
        try:
            meta = json.loads(str(arrays["meta"]))
            config = dict(meta["config"])
            name, schedule_config, schedule_state = meta["schedule"]
            config["schedule"] = schedule_from_config(name, schedule_config, schedule_state)
            trainer = cls(network, **config)
            trainer.epoch = _count(meta["epoch"], "epoch")
            trainer._updates = _count(meta["updates"], "updates")
            owner = meta["state_owner"]
            if owner is not None and owner not in _kernels.OPTIMIZER_CODES:
                raise ValueError(f"unknown optimizer {owner!r}")
            trainer._state_owner = owner
            for key in ("state1", "state2"):
                value = arrays[key]
                if value.dtype != network.dtype or value.shape not in ((0,), network._params.shape):
                    raise ValueError(f"{key} has dtype {value.dtype} and shape {value.shape}")
                if not np.isfinite(value).all():
                    raise ValueError(f"{key} contains NaN or infinity")
                setattr(trainer, "_" + key, value.copy())
            trainer._rng.bit_generator.state = meta["rng"]
            history = meta["history"]
            if not isinstance(history, dict) or not all(
                isinstance(values, list) for values in history.values()
            ):
                raise ValueError("history must map names to lists")
            trainer.history = {key: [float(v) for v in values] for key, values in history.items()}
        except KeyError as exc:
            raise ValueError(f"{source!r} is not a fastbp checkpoint: missing {exc}") from None
        except (TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{source!r} is not a valid fastbp checkpoint: {exc}") from None
        return trainer

    def _run_epoch(self, X, Y, order, batch_size, what, learning_rate, validate=None,
                   check_inputs=False):
        """Run the epoch kernel and account for how it ended.

        Normal end: returns (sum of m_B J_B, correct predictions, metrics),
        where metrics is what `validate()` returns after the epoch, or None
        without `validate`. NaN or inf in the loss, the parameters or the
        metrics: restores the parameters and optimizer
        state from before the epoch, then raises DivergenceError (or, with
        on_divergence="warn", warns and returns (None, None)). Interrupted
        (KeyboardInterrupt between two batches): keeps the parameters of the
        last completed batch, counts its updates, and re-raises. With
        check_inputs, NaN or infinity in X raises _kernels.NonFiniteInput
        after the parameters and optimizer state from before the epoch are
        restored.
        """
        net = self.network
        # a batch never holds more rows than the data (nor the work more room)
        batch_size = min(int(batch_size), max(X.shape[0], 1))
        self._prepare_state()
        saved = [net._params.copy(), self._state1.copy(), self._state2.copy(), self._updates]
        progress = np.zeros(3)
        try:
            total, n_correct = _kernels.train_epoch(
                net._params, self._grads, self._state1, self._state2, net._sizes,
                net._codes, self._loss_code, X, Y, order, batch_size,
                self._workspace(batch_size), progress,
                learning_rate=float(learning_rate), l2=float(self.l2), l1=float(self.l1),
                optimizer=_kernels.OPTIMIZER_CODES[self.optimizer],
                momentum=float(self.momentum), nesterov=bool(self.nesterov),
                weight_decay=self._decay, rho=float(self.rho), beta1=float(self.beta1),
                beta2=float(self.beta2), epsilon=float(self.epsilon), step=self._updates,
                check_signals=_in_main_thread(), check_inputs=check_inputs,
            )
        except _kernels.NonFiniteInput:
            self._restore(saved)
            raise
        except KeyboardInterrupt:
            self._updates += int(progress[0])
            if not np.isfinite(net._params).all():
                self._restore(saved)
            logger.info("interrupted in %s after %d batches", what, int(progress[0]))
            raise
        self._updates += int(progress[0])
        if np.isfinite(total) and np.isfinite(net._params).all():
            if validate is None:
                return total, n_correct, None
            # finite weights can still overflow the outputs: a NaN or infinite
            # validation loss right after the epoch is divergence too
            with np.errstate(over="ignore", invalid="ignore"):
                metrics = validate()
            if all(np.isfinite(value) for value in metrics.values()):
                return total, n_correct, metrics
        self._restore(saved)
        message = (
            f"training diverged in {what}: the loss, validation loss or parameters became "
            f"NaN or infinite. The parameters from before it were restored. Try decreasing "
            f"the learning rate (now {learning_rate}), scaling the inputs, or "
            f"using loss='cross_entropy' with a softmax or sigmoid output."
        )
        if self.on_divergence == "warn":
            warnings.warn(message, RuntimeWarning, stacklevel=4)
            self.stop_training = True
            return None, None, None
        raise DivergenceError(message)

    def _restore(self, saved):
        params, state1, state2, updates = saved
        self.network._params[...] = params
        self._state1[...] = state1
        self._state2[...] = state2
        self._updates = updates

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_guard"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._guard = _UsageGuard("Trainer")

    _extra_defaults = {"l1": 0.0, "nesterov": False, "weight_decay": None, "rho": 0.9,
                       "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
                       "on_divergence": "raise"}

    def __repr__(self):
        extras = "".join(
            f", {name}={getattr(self, name)!r}"
            for name, default in self._extra_defaults.items()
            if getattr(self, name) != default
        )
        if type(self.schedule).__name__ != "Constant":
            extras += f", schedule={self.schedule!r}"
        return (
            f"Trainer(network={self.network!r}, loss={self.loss!r}, "
            f"learning_rate={self.learning_rate!r}, batch_size={self.batch_size!r}, "
            f"l2={self.l2!r}, optimizer={self.optimizer!r}, momentum={self.momentum!r}, "
            f"shuffle={self.shuffle!r}, seed={self.seed!r}{extras}, "
            f"epochs_trained={self.epoch})"
        )
