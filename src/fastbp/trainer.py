"""Trainer: the driver of training. It checks, runs epochs, and decides.

The maths lives elsewhere: the epoch kernel computes (forward, delta
recursion, gradients, updates), the optimizer objects of _optimizers.py own
the update rules and their state, _io.py the files, _contract.py the
parameters. The fit loop decides what an epoch's outcome means: keep it,
roll it back (one context manager), stop, report.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import _io, _kernels
from ._concurrency import UsageGuard, in_main_thread
from ._contract import (
    FIT_CONSTRAINTS,
    LOSS_CODES,
    TRAINER_CONSTRAINTS,
    TRAINER_RULES,
    check_loss_output,
    check_params,
    check_rules,
    check_seed,
    signature_defaults,
    unrecorded_monitor,
)
from ._data import (
    all_finite,
    column_names,
    check_inputs,
    check_sample_weight,
    check_targets,
    held_out_split,
    non_finite_message,
)
from ._optimizers import Optimizer, make_optimizer
from ._parameters import layer_views
from .callbacks import check_callbacks
from .network import Network
from .schedules import Constant, Schedule, make_schedule

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ._typing import FloatArray, PathLike

__all__ = ["Trainer", "DivergenceError"]

logger = logging.getLogger("fastbp")

# Trainer arguments that configure the update rules (each rule takes its own)
_OPTIMIZER_SETTINGS = ("momentum", "nesterov", "weight_decay", "rho", "beta1", "beta2",
                       "epsilon")


class DivergenceError(FloatingPointError):
    """Training produced NaN or infinite parameters or loss.

    Raised after the parameters (and optimizer state) from before the
    failing epoch or step have been restored.
    """


def _weight_total(sample_weight, n_samples):
    """What per-sample sums are divided by: n_samples, or the sum of the weights."""
    return n_samples if sample_weight is None else float(np.sum(sample_weight, dtype=np.float64))


class _Outcome(NamedTuple):
    """What one run of the epoch kernel did."""

    total: float        # sum over batches of m_B J_B
    n_correct: float    # correct predictions (their weight sum), each before its batch's update
    finite: bool        # loss and parameters finite at the end
    grad_norms: list | None = None  # per layer, ||dJ/dW^l||_F averaged over the batches
    # J_B's data and penalty terms summed with weights m_B, the row counts even with
    # sample weights (what scikit-learn's loss_ sums)
    rows_data: float = 0.0
    rows_penalty: float = 0.0


def _formatted(value):
    """A metric for the epoch line: 4 significant digits, lists (grad_norms) in brackets."""
    if isinstance(value, list):
        return "[" + " ".join(f"{item:.3g}" for item in value) + "]"
    return f"{value:.4g}"


class _Rollback:
    """The parameters and optimizer state at the start of an epoch, to put back.

    As a context manager around the epoch kernel: NaN or infinity found in X
    (NonFiniteInput) undoes the epoch before the error propagates; so does
    an interrupt that leaves non-finite parameters (one that leaves finite
    ones keeps the completed batches). For divergence the caller decides,
    with `undo()`.
    """

    def __init__(self, network, optimizer):
        self._params = network._params
        self._saved = network._params.copy()
        self._optimizer = optimizer
        self._optimizer_saved = optimizer.snapshot()

    def undo(self):
        self._params[...] = self._saved
        self._optimizer.restore(self._optimizer_saved)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is not None and (issubclass(kind, _kernels.NonFiniteInput) or (
                issubclass(kind, KeyboardInterrupt) and not all_finite(self._params))):
            self.undo()
        return False


class Trainer:
    """Mini-batch gradient descent on a Network.

    The objective on a batch B of m samples is

        J = (1/m) sum_{i in B} C_i + (l2 / 2) sum_l ||W^l||_F^2

    with C the per-sample cost (``mse``: 1/2 ||a - y||^2; ``cross_entropy``:
    -sum y log a for softmax, the binary form for sigmoid outputs). Biases are
    never regularized. With per-sample weights w_i (the ``sample_weight`` of
    `fit`, `step`, `evaluate` and `loss_and_gradients`), the data term is the
    weighted mean ``sum_{i in B} w_i C_i / sum_{i in B} w_i``, and so are its
    gradients: scikit-learn 1.9's MLP normalisation (``np.average(...,
    weights=sample_weight)`` in its losses, ``deltas[last] *= sample_weight``
    and ``coef_grads /= sw_sum`` in ``_backprop``).

    Parameters
    ----------
    network : Network
        The network to train; its parameters are updated in place.
    loss : {'mse', 'cross_entropy', 'poisson'}
        Per-sample cost C. cross_entropy needs a sigmoid or softmax output;
        poisson, the half Poisson deviance ``sum_k y_k log(y_k / a_k) - y_k +
        a_k`` of counts or rates y >= 0, an exp output.
    learning_rate : float > 0
        Step size eta.
    batch_size : int >= 1
        Mini-batch size m; the last batch of an epoch may be shorter.
    l2 : float >= 0
        L2 penalty lambda on the weights, as in J above. Nielsen's lambda
        over n training samples is ``l2 = lambda_N / n``; scikit-learn's
        ``alpha`` with batch size m is ``l2 = alpha / m`` for the full
        batches, or exactly, short last batch included, ``l2 = alpha`` with
        ``l2_per_sample=True``.
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
    momentum : float in [0, 1]
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
    l2_per_sample : bool
        Divide `l2` by each batch's size m_B (its weight sum with sample
        weights): J_B's penalty is then ``(l2 / (2 m_B)) sum_l ||W^l||_F^2``
        and its gradient ``(l2 / m_B) W^l``, so `l2` is scikit-learn's
        ``alpha`` (``loss += (0.5 * alpha) * values / sw_sum`` and
        ``coef_grads += alpha * coefs; coef_grads /= sw_sum`` in its MLP's
        ``_backprop``, sw_sum = m_B without weights), and a shorter last
        batch is penalised more. `evaluate` and `loss_and_gradients` treat
        their data as one batch. Default False: l2 is the lambda of J.
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
    feature_names_in_ : list of str or None
        The column names of the first data frame `fit` was given (pandas,
        polars or anything with string `columns`). Later calls with a frame
        must have the same columns in the same order; plain arrays are
        taken as they are.
    """

    _parameter_constraints = TRAINER_CONSTRAINTS

    def __init__(self, network: Network, loss: str = "mse", learning_rate: float = 3.0,
                 batch_size: int = 10, l2: float = 0.0, optimizer: str = "sgd",
                 momentum: float = 0.0, shuffle: bool = True, seed: int | None = None, *,
                 l1: float = 0.0, l2_per_sample: bool = False, nesterov: bool = False,
                 weight_decay: float | None = None,
                 rho: float = 0.9, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, on_divergence: str = "raise",
                 schedule: str | Schedule | None = None) -> None:
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
        self.seed = check_seed(seed)
        self.l1 = l1
        self.l2_per_sample = l2_per_sample
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.rho = rho
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.schedule = make_schedule(schedule)
        self.on_divergence = on_divergence
        self._valid_settings: tuple[object, ...] | None = None
        self._validate_params()
        self._guard = UsageGuard("Trainer")
        self._rng = np.random.default_rng(self.seed)
        self._optimizer: Optimizer | None = None    # the update rule's object, with its state
        # the settings it was last configured with
        self._optimizer_settings: tuple[Any, ...] | None = None
        empty = np.empty(0, dtype=network.dtype)
        self._gradients = empty     # gradient scratch of the rules that need one
        self._work = empty          # the kernels' work vector
        self.history: dict[str, list[float]] = {}
        self.epoch = 0
        self.stop_training = False
        # the column names of the first frame fitted on
        self.feature_names_in_: list[str] | None = None

    # ------------------------------------------------------------- checks

    def _validate_params(self):
        """Check every hyperparameter; raises before anything changes.

        Every public call starts here, since the hyperparameters are plain
        attributes that may have been reassigned. The settings last found
        valid are remembered (each value with its type, and the network and
        schedule objects), so an unchanged trainer skips the checks: they
        cost more than a small step's arithmetic.
        """
        settings = (self.network, self.schedule, *(
            (type(value), value)
            for value in map(self.__getattribute__, self._parameter_constraints)))
        if settings == self._valid_settings:
            return
        if not isinstance(self.network, Network):
            raise TypeError(f"network must be a fastbp.Network, got {self.network!r}")
        params = {name: getattr(self, name) for name in self._parameter_constraints}
        check_params(params, self._parameter_constraints)
        if not isinstance(self.schedule, Schedule):
            raise TypeError(f"schedule must be a fastbp.schedules.Schedule, got {self.schedule!r}")
        check_rules(params, TRAINER_RULES)
        check_loss_output(self.loss, self.network.output)
        self._valid_settings = settings

    def _check_data(self, X, Y, names=("X", "Y"), check_finite=True):
        net = self.network
        columns = column_names(X)
        if (columns is not None and self.feature_names_in_ is not None
                and columns != self.feature_names_in_):
            raise ValueError(
                f"{names[0]} has the columns {columns}, but this trainer was fitted on "
                f"{self.feature_names_in_}: give the same columns in the same order "
                f"(frame[trainer.feature_names_in_])"
            )
        X = check_inputs(X, int(net._sizes[0]), net.dtype.type, name=names[0],
                         check_finite=check_finite)
        Y, is_labels = check_targets(Y, X.shape[0], int(net._sizes[-1]), net.dtype.type,
                                     name=names[1])
        if net.output == "exp" and not is_labels and (low := float(Y.min())) < 0:
            # exp outputs are positive: Poisson counts and rates are >= 0
            raise ValueError(
                f"{names[1]} holds negative values (down to {low:g}), outside "
                f"the (0, inf) of an exp output: Poisson targets are counts or rates >= 0; "
                f"for signed targets use output='identity' with loss='mse'"
            )
        if net.output in ("sigmoid", "softmax") and not is_labels:
            low, high = float(Y.min()), float(Y.max())
            if low < 0 or high > 1:
                # sigmoid and softmax outputs live in (0, 1): such targets are
                # unreachable, and cross-entropy of them is meaningless
                raise ValueError(
                    f"{names[1]} holds values in [{low:g}, {high:g}], outside the (0, 1) of "
                    f"a {net.output} output: for class labels 0..K-1 use a network with K "
                    f"outputs (or one sigmoid output for 0/1 labels); for regression use "
                    f"output='identity' with loss='mse'"
                )
        return X, Y, is_labels

    # ------------------------------------------------------------ buffers

    def _workspace(self, capacity):
        """The work vector for batches of `capacity` rows, grown only when needed."""
        size = _kernels.workspace_size(self.network._sizes, capacity)
        if self._work.size < size or self._work.dtype != self.network.dtype:
            self._work = np.empty(size, dtype=self.network.dtype)
        return self._work

    def _gradient_buffer(self, rule, needed=False):
        """Gradient scratch in the parameter layout where the rule (or `needed`) wants one."""
        params = self.network._params
        if self._gradients.size != params.size and (needed or _kernels.needs_gradients(rule)):
            self._gradients = np.empty_like(params)
        return self._gradients

    def _ready_optimizer(self):
        """The current rule's object with the current settings, its state allocated."""
        settings = tuple(getattr(self, name) for name in _OPTIMIZER_SETTINGS)
        if (self._optimizer is None or self._optimizer.name != self.optimizer
                or settings != self._optimizer_settings):
            self._optimizer = make_optimizer(self._optimizer, self.optimizer,
                                             self.network.dtype,
                                             dict(zip(_OPTIMIZER_SETTINGS, settings)))
            self._optimizer_settings = settings
        self._optimizer.allocate(self.network._params)
        return self._optimizer

    def _resume_optimizer(self, owner, updates, slots):
        """The optimizer of a checkpoint: rule `owner` (or None), its count and state."""
        self._optimizer = None
        if owner is not None:
            settings = {name: getattr(self, name) for name in _OPTIMIZER_SETTINGS}
            self._optimizer = make_optimizer(None, owner, self.network.dtype, settings)
            self._optimizer.updates = updates
            self._optimizer.load_slots(slots)
            self._optimizer_settings = tuple(settings.values())

    @property
    def _loss_code(self):
        return LOSS_CODES[self.loss]

    def _penalty(self, batch_total=1.0):
        """(l2 / 2) sum ||W||_F^2 + l1 sum |W|_1 at the current weights, as J has it.

        With l2_per_sample, l2 is divided by `batch_total`, the size (or
        weight sum) of the batch J is taken on.
        """
        net = self.network
        l2 = float(self.l2) / batch_total if self.l2_per_sample else float(self.l2)
        return _kernels.penalty(net._params, net._sizes, l2, float(self.l1))

    # ------------------------------------------------------------------ API

    @property
    def current_learning_rate(self) -> float:
        return float(self.schedule.rate(self.epoch, float(self.learning_rate)))

    def loss_and_gradients(self, X: ArrayLike, Y: ArrayLike,
                           sample_weight: ArrayLike | None = None,
                           ) -> tuple[float, list[FloatArray], list[FloatArray]]:
        """The objective J and its gradients on one batch, without an update.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)
        Y : array-like of shape (n_samples, n_L), or (n_samples,) class labels
        sample_weight : array-like of shape (n_samples,) or float, optional
            Weights w_i >= 0, finite, not all zero: J's data term is then
            ``sum_i w_i C_i / sum_i w_i``, and its gradients
            ``(delta^T A) / sum_i w_i`` with each row of delta^L scaled by
            its w_i (scikit-learn's ``_backprop``). None weighs every sample 1;
            a scalar weighs every sample alike.

        Returns
        -------
        loss : float
            J on the batch, L2 and L1 penalties included.
        grad_weights : list of ndarray of shape (n_l, n_{l-1})
            dJ/dW^l.
        grad_biases : list of ndarray of shape (n_l,)
            dJ/db^l.
        """
        self._validate_params()
        inputs, targets, _ = self._check_data(X, Y)
        net = self.network
        weights = check_sample_weight(sample_weight, inputs.shape[0], net.dtype.type)
        grads = np.empty_like(net._params)
        with self._guard.writing("loss_and_gradients"), net._guard.reading("loss_and_gradients"):
            loss, _ = _kernels.loss_and_gradients(
                net._params, grads, net._sizes, net._codes, self._loss_code, inputs, targets,
                self._workspace(inputs.shape[0]), float(self.l2), float(self.l1),
                sample_weight=weights, l2_per_sample=bool(self.l2_per_sample),
            )
        grad_weights, grad_biases = layer_views(grads, net._sizes)
        return float(loss), grad_weights, grad_biases

    def step(self, X: ArrayLike, Y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """One update from one mini-batch (all of X and Y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)
            The batch's inputs.
        Y : array-like of shape (n_samples, n_L), or (n_samples,) class labels
            The batch's targets.
        sample_weight : array-like of shape (n_samples,) or float, optional
            Per-sample weights, as in `loss_and_gradients`.

        Returns
        -------
        loss : float
            J on the batch before the update; NaN when the step diverged and
            ``on_divergence='warn'`` (the parameters were then restored).

        Raises
        ------
        DivergenceError
            When the update makes the loss or parameters NaN or infinite
            (after restoring them), unless ``on_divergence='warn'``.
        """
        self._validate_params()
        inputs, targets, _ = self._check_data(X, Y)
        weights = check_sample_weight(sample_weight, inputs.shape[0], self.network.dtype.type)
        with self._guard.writing("step"), self.network._guard.writing("step"):
            rate = self.current_learning_rate
            with self._rollback() as rollback:
                outcome = self._run_epoch(inputs, targets, np.empty(0, dtype=np.intp),
                                          inputs.shape[0], rate,
                                          "this step", sample_weight=weights)
            if not outcome.finite:
                rollback.undo()
                self._diverged("this step", rate, stacklevel=3, X=inputs, Y=targets)
                return float("nan")
        return outcome.total / _weight_total(weights, inputs.shape[0])

    def evaluate(self, X: ArrayLike, Y: ArrayLike,
                 sample_weight: ArrayLike | None = None) -> dict[str, float]:
        """Objective and accuracy on a data set, without any update.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)
        Y : array-like of shape (n_samples, n_L), or (n_samples,) class labels
        sample_weight : array-like of shape (n_samples,) or float, optional
            Per-sample weights: the loss's data term is then
            ``sum_i w_i C_i / sum_i w_i`` and the accuracy the weight share
            of the correct predictions (scikit-learn's weighted score).

        Returns
        -------
        metrics : dict
            ``loss`` (J with the penalties, as in training) and, when Y holds
            class labels or one-hot rows, ``accuracy``.
        """
        self._validate_params()
        inputs, targets, is_labels = self._check_data(X, Y)
        weights = check_sample_weight(sample_weight, inputs.shape[0], self.network.dtype.type)
        with self._guard.reading("evaluate"), self.network._guard.reading("evaluate"):
            return self._evaluate(inputs, targets, is_labels, weights)

    def _evaluate(self, X, Y, is_labels, sample_weight=None):
        _, cost, n_correct = self.network._forward(X, Y, self._loss_code,
                                                   sample_weight=sample_weight)
        total = _weight_total(sample_weight, X.shape[0])
        metrics = {"loss": cost / total + self._penalty(total)}
        if is_labels:
            metrics["accuracy"] = n_correct / total
        return metrics

    def fit(self, X: ArrayLike, Y: ArrayLike, epochs: int = 30,
            validation_data: tuple[ArrayLike, ArrayLike] | None = None, verbose: int = 0, *,
            validation_split: float = 0.0, callbacks: Sequence[Any] | None = None,
            grad_norms: bool = False,
            sample_weight: ArrayLike | None = None) -> dict[str, list[Any]]:
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
            Number of passes over the data (a float that is a whole number,
            such as 5.0, counts as that integer).
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
        grad_norms : bool
            Also record ``grad_norms``: per epoch, one value per layer, the
            Frobenius norm of dJ/dW^l (penalties included, at the
            parameters before each update) averaged over the epoch's
            batches. Computed in the epoch kernel; the updates are the same
            bit for bit, and off (the default) the epoch is unchanged. On,
            it costs one pass over each gradient for the rules that form it
            anyway (rmsprop, adam, Nesterov, sgd with l1 or weight decay):
            about 1-3% of the epoch. Plain SGD and heavy-ball momentum,
            whose fused updates never form dJ/dW, take the norm from the
            Gram identity ||delta^T A||^2 = sum_ij (a_i . a_j)(d_i . d_j)
            where it is cheaper than the product and l2 = 0, and otherwise
            from one more outer product per layer and batch (up to ~1.5x
            the epoch's arithmetic).
        sample_weight : array-like of shape (n_samples,) or float, optional
            Per-sample weights w_i (finite, >= 0, not all zero), gathered
            with their rows into each batch: each batch's J is
            ``sum_{i in B} w_i C_i / sum_{i in B} w_i`` + penalties, with
            gradients normalised alike (scikit-learn 1.9's MLP). A batch
            whose weights sum to 0 is skipped (no update). ``loss`` and
            ``accuracy`` in the history are then weighted means over the
            epoch. With `validation_split`, the held-out samples keep their
            weights for ``val_loss`` and ``val_accuracy``; `validation_data`
            is unweighted.

        Returns
        -------
        history : dict of list
            One value per epoch of this call: ``loss`` (mean J over the
            epoch's batches, each measured before its update, computed in
            the training pass itself), ``accuracy`` when Y holds class
            labels, ``val_loss`` and ``val_accuracy`` with validation data,
            ``grad_norms`` (a list of L floats per epoch) when asked for,
            ``learning_rate`` and ``epoch_seconds``. ``grad_norms`` is kept
            in the returned history only, not in `Trainer.history`.

        Raises
        ------
        DivergenceError
            When an epoch ends with NaN or infinite loss or parameters; the
            parameters and optimizer state from before that epoch are
            restored first, and the history keeps every finished epoch.
        """
        self._validate_params()
        if isinstance(epochs, (float, np.floating)) and float(epochs).is_integer():
            epochs = int(epochs)        # 5.0 epochs are 5; 5.5 are refused below
        check_params({"epochs": epochs, "verbose": verbose, "validation_split": validation_split},
                     FIT_CONSTRAINTS)
        if not isinstance(grad_norms, (bool, np.bool_)):
            raise TypeError(f"grad_norms must be True or False, got {grad_norms!r}")
        callbacks = check_callbacks(callbacks)
        # NaN or infinity in X: found by the first epoch's kernel in the rows
        # of each batch it reads (in cache) instead of by a pass of its own
        # over X; the fit is then undone (below) and refused like any other
        deferred = int(epochs) > 0
        columns = column_names(X)
        inputs, targets, is_labels = self._check_data(X, Y, check_finite=not deferred)
        weights = check_sample_weight(sample_weight, inputs.shape[0], self.network.dtype.type)
        validation = None
        if validation_data is not None:
            if validation_split:
                raise ValueError("give validation_data or validation_split, not both")
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a tuple (X_val, Y_val)")
            X_val, Y_val = validation_data
            validation = self._check_data(
                X_val, Y_val, names=("validation_data[0]", "validation_data[1]")
            )
        validating = validation_data is not None or bool(validation_split)
        val_is_labels = validation[2] if validation is not None else is_labels

        keys = ["loss"] + (["accuracy"] if is_labels else [])
        if validating:
            keys += ["val_loss"] + (["val_accuracy"] if val_is_labels else [])
        keys += (["grad_norms"] if grad_norms else []) + ["learning_rate", "epoch_seconds"]
        history: dict[str, list] = {key: [] for key in keys}
        for watcher in [self.schedule, *callbacks]:
            monitor = getattr(watcher, "monitor", None)
            if monitor is not None and monitor not in history:
                raise unrecorded_monitor(type(watcher).__name__, monitor, keys)

        with self._guard.writing("fit"), self.network._guard.writing("fit"):
            # the fit draws (split, permutations) from a copy of the generator,
            # which replaces it once the fit is accepted: a refused fit, also
            # one refused by the kernel, leaves the original as it was
            rng_before = self._rng
            rng = copy.deepcopy(rng_before)
            if validation_split:
                train, held_out = held_out_split(targets, is_labels, float(validation_split), rng)
                if weights is None:
                    validation = (inputs[held_out], targets[held_out], is_labels)
                else:
                    validation = (inputs[held_out], targets[held_out], is_labels,
                                  weights[held_out])
                    weights = weights[train]
                    if not (weights.max() > 0 and validation[3].max() > 0):
                        raise ValueError(
                            "sample_weight is all zeros on the training or the held-out "
                            "part of validation_split: give positive weights to both")
                inputs, targets = inputs[train], targets[train]
                if deferred and not all_finite(validation[0]):     # the kernel reads X only
                    raise ValueError(non_finite_message("X", self.network.dtype))
            self._rng = rng
            names_before = self.feature_names_in_
            if columns is not None and names_before is None:
                self.feature_names_in_ = columns
            try:
                self._fit_loop(inputs, targets, is_labels, validation, int(epochs), verbose,
                               callbacks,
                               history, check_inputs=deferred, grad_norms=bool(grad_norms),
                               sample_weight=weights)
            except _kernels.NonFiniteInput:
                # the rollback has put back the parameters and optimizer state
                self._rng = rng_before
                self.feature_names_in_ = names_before
                raise ValueError(non_finite_message("X", self.network.dtype)) from None
        return history

    def _fit_loop(self, X, Y, is_labels, validation, epochs, verbose, callbacks, history,
                  check_inputs, grad_norms=False, sample_weight=None):
        n_samples = _weight_total(sample_weight, X.shape[0])
        no_order = np.empty(0, dtype=np.intp)
        bar = self._progress_bar(epochs) if verbose == 1 else None
        self.stop_training = False
        for callback in callbacks:
            if hasattr(callback, "on_fit_begin"):
                callback.on_fit_begin(self, history)
        try:
            for _ in range(epochs):
                started = time.perf_counter()
                rate = self.current_learning_rate
                where = f"epoch {self.epoch + 1}"
                order: np.ndarray | None = (self._rng.permutation(X.shape[0]) if self.shuffle
                                            else no_order)
                kept = self._epoch(X, Y, order, rate, where, validation, check_inputs,
                                   grad_norms, sample_weight)
                check_inputs = False        # the first epoch has read every row
                # drop this epoch's permutation before the next one is drawn:
                # one alive at a time, so a fit's peak memory does not grow
                order = None
                if kept is None:
                    self._diverged(where, rate, stacklevel=4, X=X, Y=Y)
                    break
                outcome, metrics = kept
                self.epoch += 1
                record = self._record(outcome, n_samples, is_labels, metrics, rate, started)
                for key, value in record.items():
                    history[key].append(value)
                    if key != "grad_norms":     # the checkpoints' history is flat
                        self.history.setdefault(key, []).append(value)
                self.schedule.update(self.epoch - 1, record)
                self._report(record, verbose, bar)
                for callback in callbacks:
                    if hasattr(callback, "on_epoch_end"):
                        if callback.on_epoch_end(self, self.epoch, history):
                            self.stop_training = True
                if self.stop_training:
                    break
        finally:
            if bar is not None:
                bar.close()
        for callback in callbacks:
            if hasattr(callback, "on_fit_end"):
                callback.on_fit_end(self, history)

    def partial_fit(self, X: ArrayLike, Y: ArrayLike,
                    validation_data: tuple[ArrayLike, ArrayLike] | None = None,
                    verbose: int = 0, *, callbacks: Sequence[Any] | None = None,
                    grad_norms: bool = False,
                    sample_weight: ArrayLike | None = None) -> dict[str, list[Any]]:
        """One more epoch over (X, Y): ``fit(X, Y, epochs=1, ...)``.

        The optimizer state, schedule and epoch count carry on, so repeated
        calls train exactly like one `fit` call with as many epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)
        Y : array-like of shape (n_samples, n_L), or (n_samples,) class labels
        validation_data, verbose, callbacks, grad_norms, sample_weight
            As for `fit`.

        Returns
        -------
        history : dict of list
            As `fit` returns it, for this one epoch.
        """
        return self.fit(X, Y, epochs=1, validation_data=validation_data, verbose=verbose,
                        callbacks=callbacks, grad_norms=grad_norms,
                        sample_weight=sample_weight)

    # ---------------------------------------------------------- one epoch

    def _epoch(self, X, Y, order, rate, where, validation, check_inputs, grad_norms=False,
               sample_weight=None):
        """One epoch of `fit`, kept or undone.

        Returns (outcome, validation metrics or None); or None when the
        epoch diverged, after putting back the parameters and optimizer
        state from before it. The snapshot dies with this call, so a fit
        holds one at a time.
        """
        with self._rollback() as rollback:
            outcome = self._run_epoch(X, Y, order, int(self.batch_size), rate, where,
                                      check_inputs, grad_norms, sample_weight)
        metrics = None
        finite = outcome.finite
        if finite and validation is not None:
            # finite weights can still overflow the outputs: a NaN or infinite
            # validation loss right after the epoch is divergence too
            with np.errstate(over="ignore", invalid="ignore"):
                metrics = self._evaluate(*validation)
            finite = all(np.isfinite(value) for value in metrics.values())
        if not finite:
            rollback.undo()
            return None
        return outcome, metrics

    def _rollback(self):
        """A _Rollback of the parameters and optimizer state as they are now."""
        return _Rollback(self.network, self._ready_optimizer())

    def _run_epoch(self, X, Y, order, batch_size, learning_rate, where, check_inputs=False,
                   grad_norms=False, sample_weight=None):
        """Run the epoch kernel once over (X, Y) and say what happened.

        Batches follow `order` (empty: in order). Updates made count toward
        the optimizer's t, also when an interrupt (KeyboardInterrupt between
        two batches) ends the epoch early. With `check_inputs`, NaN or
        infinity in X raises _kernels.NonFiniteInput before the batch that
        holds it. With `grad_norms`, the outcome carries the per-layer
        ||dJ/dW^l||_F averaged over the batches.
        """
        net = self.network
        # a batch never holds more rows than the data (nor the work more room)
        batch_size = min(int(batch_size), max(X.shape[0], 1))
        optimizer = self._optimizer
        assert optimizer is not None, "_run_epoch runs inside _rollback, which readies it"
        rule = optimizer.rule(learning_rate, self.l2, self.l1)
        moment1, moment2 = optimizer.moments()
        # batches done, sum of m_B J_B, correct predictions, and J_B's data and
        # penalty terms weighed by row counts
        counts = np.zeros(5)
        norms = np.zeros(len(net._sizes) - 1) if grad_norms else None
        try:
            total, n_correct = _kernels.train_epoch(
                net._params, self._gradient_buffer(rule, needed=grad_norms), moment1, moment2,
                net._sizes, net._codes, self._loss_code, X, Y, order, batch_size,
                self._workspace(batch_size), counts, rule, step=optimizer.updates,
                check_signals=in_main_thread(), check_inputs=check_inputs, grad_norms=norms,
                sample_weight=sample_weight, l2_per_sample=bool(self.l2_per_sample),
            )
        except KeyboardInterrupt:
            optimizer.updates += int(counts[0])
            logger.info("interrupted in %s after %d batches", where, int(counts[0]))
            raise
        optimizer.updates += int(counts[0])
        if norms is not None:
            norms = (norms / max(int(counts[0]), 1)).tolist()
        return _Outcome(total, n_correct, bool(np.isfinite(total)) and all_finite(net._params),
                        norms, float(counts[3]), float(counts[4]))

    def _diverged(self, where, learning_rate, stacklevel, X, Y):
        """Raise DivergenceError, or with on_divergence='warn' warn and stop the fit.

        The advice is drawn from the model and the data (X, Y the arrays
        trained on): what could have made the steps too large here.
        """
        advice = [f"decreasing the learning rate (now {learning_rate})"]
        with np.errstate(over="ignore", invalid="ignore"):
            input_scale = float(np.max(np.abs(X))) if X.size else 0.0
            target_spread = float(np.max(np.std(Y, axis=0))) if Y.size else 0.0
        if input_scale > 10:
            advice.append(f"scaling the inputs (values up to {input_scale:.3g}; standardise "
                          f"each column to mean 0 and standard deviation 1)")
        if self.network.output == "identity" and target_spread > 10:
            advice.append(f"scaling the targets (standard deviation up to {target_spread:.3g}; "
                          f"standardise them and undo it on the predictions)")
        if self.loss == "mse" and self.network.output in ("sigmoid", "softmax"):
            advice.append("using loss='cross_entropy', the usual cost of sigmoid and softmax "
                          "outputs")
        message = (
            f"training diverged in {where}: the loss, validation loss or parameters became "
            f"NaN or infinite. The parameters from before it were restored. Try "
            + "; ".join(advice) + "."
        )
        if self.on_divergence == "warn":
            # stacklevel: the frame that called fit or step
            warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)
            self.stop_training = True
            return
        raise DivergenceError(message)

    # ---------------------------------------------------------- reporting

    def _record(self, outcome, n_samples, is_labels, metrics, rate, started):
        # n_samples: the sample count, or the weight sum with sample weights
        record = {"loss": outcome.total / n_samples}
        if is_labels:
            record["accuracy"] = outcome.n_correct / n_samples
        if metrics is not None:
            record["val_loss"] = metrics["loss"]
            if "accuracy" in metrics:
                record["val_accuracy"] = metrics["accuracy"]
        if outcome.grad_norms is not None:
            record["grad_norms"] = outcome.grad_norms
        record["learning_rate"] = rate
        record["epoch_seconds"] = time.perf_counter() - started
        return record

    def _progress_bar(self, epochs):
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return None
        return tqdm(total=epochs, unit="epoch", desc="fastbp", leave=True)

    def _report(self, record, verbose, bar):
        line = f"epoch {self.epoch}: " + ", ".join(
            f"{key} {_formatted(value)}" for key, value in record.items()
        )
        logger.info(line)
        if bar is not None:
            bar.set_postfix({key: _formatted(value) for key, value in record.items()
                             if key not in ("epoch_seconds", "grad_norms")}, refresh=False)
            bar.update(1)
        elif verbose:
            print(line, file=sys.stdout, flush=True)

    # --------------------------------------------------------- checkpoints

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, bar the network and schedule.

        Returns
        -------
        config : dict
            Argument name -> value, JSON-serializable; ``Trainer(network,
            **config)`` makes a trainer with the same settings.
        """
        return {name: getattr(self, name)
                for name in signature_defaults(Trainer.__init__, skip=("self", "network",
                                                                        "schedule"))}

    def save_checkpoint(self, path: PathLike) -> None:
        """Write everything needed to resume training bit for bit.

        The .npz file (read with allow_pickle=False; format in fastbp._io)
        holds the network, the hyperparameters, the optimizer state and
        update count, the schedule and its position, the epoch count, the
        random generator's state and the history. Saved atomically, like
        `Network.save`.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write the .npz file.
        """
        with self._guard.reading("save_checkpoint"), \
                self.network._guard.reading("save_checkpoint"):
            _io.save_checkpoint(self, path)

    @classmethod
    def load_checkpoint(cls, path: PathLike) -> Trainer:
        """A Trainer (with its Network) restored from `save_checkpoint`'s file.

        Parameters
        ----------
        path : str or os.PathLike
            A checkpoint written by `save_checkpoint`.

        Returns
        -------
        trainer : Trainer
            Training it further gives, bit for bit, what the saved trainer
            would have given.

        Raises
        ------
        ValueError
            For anything but a valid checkpoint (pickles included), naming the file.
        """
        return _io.load_checkpoint(cls, path)

    # ------------------------------------------------------------- Python

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_guard"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._guard = UsageGuard("Trainer")

    def __repr__(self) -> str:
        parts = [f"network={self.network!r}"]
        for name, (default, keyword_only) in signature_defaults(
                Trainer.__init__, skip=("self", "network")).items():
            value = getattr(self, name)
            if name == "schedule":
                if isinstance(value, Constant):
                    continue
            elif keyword_only and value == default:
                continue
            parts.append(f"{name}={value!r}")
        return f"Trainer({', '.join(parts)}, epochs_trained={self.epoch})"
