"""scikit-learn's MLPClassifier and MLPRegressor, trained by fastbp's kernels.

Change one import::

    from fastbp.sklearn import MLPClassifier    # was: from sklearn.neural_network

and the same code (pipelines, grid searches, pickles) trains in fastbp's
epoch kernel. The estimators take scikit-learn 1.9's parameters with their
defaults and meanings, set the fitted attributes it sets, and follow its
maths so that tuned hyperparameters carry over:

- the losses: log-loss with a softmax output for multiclass targets, the
  logistic output (binary log-loss) for binary and multilabel ones; half
  squared error (identity output) and half Poisson deviance (exp output)
  for regression, each a weighted mean over the samples with ``sample_weight``;
- the penalty ``0.5 * alpha * sum ||W||^2 / n_B`` per batch of n_B samples
  (its weight sum with sample weights), biases free;
- Glorot-uniform initialisation drawn from ``random_state`` exactly as
  scikit-learn draws it, and the batches shuffled, and the early-stopping
  split made, by the same calls on the same generator: with the same
  ``random_state`` both libraries start from the same weights and see the
  same batches, so their fits differ by floating-point rounding only;
- sgd with (Nesterov) momentum and the 'constant', 'invscaling' and
  'adaptive' rates; Adam in scikit-learn's form (epsilon beside sqrt(v)
  before the bias correction); the ``tol`` / ``n_iter_no_change`` stopping
  rule on the training loss or, with ``early_stopping``, the validation
  score; lbfgs through ``scipy.optimize.minimize(method='L-BFGS-B')`` with
  one GIL-free full-batch loss-and-gradient call per evaluation.

What differs, on purpose: a call that is refused (bad input, a solver that
produced non-finite weights) leaves a fitted estimator as it was;
``partial_fit`` is refused for lbfgs by the regressor too; sparse input is
densified a block of rows at a time, never whole.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy
import scipy.optimize
import scipy.sparse as sp

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
except ImportError as error:  # pragma: no cover - exercised without scikit-learn only
    raise ImportError(
        "fastbp.sklearn needs scikit-learn >= 1.6: pip install 'fastbp[sklearn]'"
    ) from error
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils import shuffle as _shuffle
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _kernels
from ._contract import LOSS_CODES
from ._optimizers import SGD, Adam, Optimizer
from ._parameters import layer_views
from .network import Network
from .trainer import Trainer

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's names -> fastbp's
_HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_OUTPUT = {"identity": "identity", "logistic": "sigmoid", "softmax": "softmax", "exp": "exp"}
_LOSS = {"log_loss": "cross_entropy", "squared_error": "mse", "poisson": "poisson"}

# Sparse X is densified this many bytes of rows at a time (whole batches)
_DENSE_BLOCK_BYTES = 32 << 20
# lbfgs takes the full batch in blocks of at most this many rows (one kernel call)
_LBFGS_BLOCK_ROWS = 4096

_EMPTY_ORDER = np.empty(0, dtype=np.intp)
# warnings from a solver point at the user's fit or partial_fit: solver <
# _fit_checked < _fit < fit < the caller
_USER = 5


class _EpsilonHatAdam(Adam):
    """Adam as scikit-learn writes it: lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)."""

    def rule(self, learning_rate: float, l2: float, l1: float) -> dict[str, Any]:
        rule = super().rule(learning_rate, l2, l1)
        rule["bias_corrected_epsilon"] = False
        return rule


def _rows_per_block(n_features: int, itemsize: int, batch_size: int) -> int:
    """Rows of a dense block of sparse X: whole batches within _DENSE_BLOCK_BYTES."""
    fit = max(1, _DENSE_BLOCK_BYTES // max(1, n_features * itemsize))
    return max(batch_size, fit // batch_size * batch_size)


def _dense(X: Any, rows: Any, dtype: np.dtype[Any]) -> np.ndarray:
    """X[rows] (all rows for None) as a C-contiguous array of `dtype`."""
    block = X if rows is None else X[rows]
    if sp.issparse(block):
        return np.ascontiguousarray(block.toarray(), dtype=dtype)
    return np.ascontiguousarray(block, dtype=dtype)


class _BaseMLP(BaseEstimator):
    """What the two estimators share: parameters, the network, the solvers."""

    # scikit-learn 1.9's constraints, so that a bad value raises its InvalidParameterError
    _parameter_constraints: dict[str, list[Any]] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"),
                             Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
    }

    # set by the subclasses' __init__
    hidden_layer_sizes: Any
    activation: str
    solver: str
    alpha: float
    batch_size: Any
    learning_rate: str
    learning_rate_init: float
    power_t: float
    max_iter: int
    loss: str
    shuffle: bool
    random_state: Any
    tol: float
    verbose: Any
    warm_start: bool
    momentum: float
    nesterovs_momentum: bool
    early_stopping: bool
    validation_fraction: float
    beta_1: float
    beta_2: float
    epsilon: float
    n_iter_no_change: Any
    max_fun: int
    # fitted
    coefs_: list[Any]
    intercepts_: list[Any]
    loss_curve_: list[float]
    validation_scores_: list[float] | None
    best_validation_score_: float | None
    best_loss_: float | None

    def _set_params_of(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    # ----------------------------------------------------------- the network

    def _network_for(self, dtype: Any = None, rebind: bool = True) -> Network:
        """The Network holding coefs_ and intercepts_, built or refreshed from them.

        After training, coefs_[i] (n_in, n_out) and intercepts_[i] are views
        into the network's parameters; arrays a user put in their place are
        checked and copied in, so that training and prediction start from
        them. With rebind (training), coefs_ and intercepts_ become the views
        again; without (prediction), the estimator's attributes are left as
        they are.
        """
        coefs, intercepts = list(self.coefs_), list(self.intercepts_)
        if len(coefs) < 1 or len(coefs) != len(intercepts):
            raise ValueError(
                f"coefs_ and intercepts_ must be lists of one array per layer, got "
                f"{len(coefs)} and {len(intercepts)}"
            )
        arrays = [np.asarray(c) for c in coefs]
        for k, coef in enumerate(arrays):
            if coef.ndim != 2:
                raise ValueError(f"coefs_[{k}] must be 2-D (n_in, n_out), got shape "
                                 f"{coef.shape}")
            if k and coef.shape[0] != arrays[k - 1].shape[1]:
                raise ValueError(f"coefs_[{k}] must have {arrays[k - 1].shape[1]} rows, the "
                                 f"columns of coefs_[{k - 1}] {arrays[k - 1].shape}, got "
                                 f"shape {coef.shape}")
        # the ends are the fitted data's: n_features_in_ inputs, n_outputs_ outputs
        ends = ((0, 0, "rows", "n_features_in_"), (len(arrays) - 1, 1, "columns", "n_outputs_"))
        for k, axis, what, name in ends:
            expected_size = self.__dict__.get(name)
            if expected_size is not None and arrays[k].shape[axis] != expected_size:
                raise ValueError(f"coefs_[{k}] must have {name}={expected_size} {what}, got "
                                 f"shape {arrays[k].shape}")
        sizes = [int(arrays[0].shape[0])] + [int(c.shape[1]) for c in arrays]
        net = self.__dict__.get("_network")
        if dtype is None:
            dtype = net.dtype if net is not None else (
                arrays[0].dtype if arrays[0].dtype in (np.float32, np.float64) else np.float64)
        hidden = _HIDDEN[self.activation]
        output = _OUTPUT[self._out_activation()]
        views = self.__dict__.get("_views")
        if (net is None or net.layer_sizes != sizes or net.dtype != dtype
                or net.activation != hidden or net.output != output or views is None):
            net = Network(sizes, activation=hidden, output=output, dtype=dtype, seed=0)
            views = None
        for k in range(len(sizes) - 1):
            expected = (sizes[k], sizes[k + 1])
            if views is None or coefs[k] is not views[0][k]:
                if arrays[k].shape != expected:
                    raise ValueError(f"coefs_[{k}] must have shape {expected}, got "
                                     f"{arrays[k].shape}")
                net.weights[k][...] = arrays[k].T
            if views is None or intercepts[k] is not views[1][k]:
                bias = np.asarray(intercepts[k])
                if bias.shape not in ((sizes[k + 1],), ()):
                    raise ValueError(f"intercepts_[{k}] must have shape ({sizes[k + 1]},), "
                                     f"got {bias.shape}")
                net.biases[k][...] = bias
        if views is not None and not rebind:
            return net
        if views is None:
            views = ([W.T for W in net.weights], list(net.biases))
            self._network = net
            self._views = views
        if rebind:
            self.coefs_ = list(views[0])
            self.intercepts_ = list(views[1])
        return net

    def _out_activation(self) -> str:
        return self.out_activation_

    def __getstate__(self) -> dict[str, Any]:
        # the weights and settings: never the network's buffers or workspace
        state = super().__getstate__()
        state = dict(state)
        state.pop("_network", None)
        state.pop("_views", None)
        if "coefs_" in state:
            state["coefs_"] = [np.array(c) for c in state["coefs_"]]
            state["intercepts_"] = [np.array(b) for b in state["intercepts_"]]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "coefs_" in state:
            self._network_for()

    # ---------------------------------------------------------------- fitting

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if np.any(np.array(sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(size) for size in sizes]

    def _initialize(self, Y: np.ndarray, layer_units: list[int], dtype: Any) -> None:
        """Fresh weights and bookkeeping, as scikit-learn's _initialize sets them."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_for(Y)
        # Glorot uniform, the draws of scikit-learn's _init_coef in its order
        factor = 2.0 if self.activation == "logistic" else 6.0
        coefs, intercepts = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)))
            intercepts.append(self._random_state.uniform(-bound, bound, fan_out))
        self.__dict__.pop("_network", None)
        self.__dict__.pop("_views", None)
        self.coefs_, self.intercepts_ = coefs, intercepts
        net = self._network_for(dtype)
        # the best epoch's weights: kept (and pickled) only where early stopping uses them
        self.__dict__.pop("_best_params", None)
        if self.early_stopping:
            self._best_params = net.get_parameters()
        if self.solver in ("sgd", "adam"):
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False,
             classes: Any = None) -> _BaseMLP:
        """fit and partial_fit: all checks first; a refused call changes nothing."""
        saved: dict[str, Any] = dict(self.__dict__)
        # training appends to these lists: their lengths say what to cut back to
        lengths = {name: len(saved[name]) for name in ("loss_curve_", "validation_scores_")
                   if isinstance(saved.get(name), list)}
        net: Network | None = saved.get("_network")
        params = None if net is None else net.get_parameters()
        optimizer: Optimizer | None = saved.get("_optimizer")
        snapshot = None if optimizer is None else optimizer.snapshot()
        try:
            return self._fit_checked(X, y, sample_weight, incremental, classes)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            for name, length in lengths.items():
                del saved[name][length:]
            if net is not None and params is not None:
                net.set_parameters(params)
            if optimizer is not None and snapshot is not None:
                optimizer.restore(snapshot)
            raise

    def _fit_checked(self, X: Any, y: Any, sample_weight: Any, incremental: bool,
                     classes: Any) -> _BaseMLP:
        self._validate_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if incremental:
            self._partial_fit_classes(y, classes)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        layer_units = [X.shape[1]] + hidden + [Y.shape[1]]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, layer_units, X.dtype)
        net = self._network_for()
        if net.layer_sizes != layer_units:
            raise ValueError(
                f"the network has layers {net.layer_sizes}, but hidden_layer_sizes="
                f"{self.hidden_layer_sizes!r} and this data need {layer_units}: refit "
                f"without warm_start to change the architecture"
            )
        self.n_outputs_ = Y.shape[1]
        Y = np.ascontiguousarray(Y, dtype=net.dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=net.dtype)
        if self.solver == "lbfgs":
            self._fit_lbfgs(net, X, Y, sample_weight)
        else:
            self._fit_stochastic(net, X, Y, sample_weight, incremental)
        if not np.isfinite(net._params).all():
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed."
            )
        return self

    def _partial_fit_classes(self, y: Any, classes: Any) -> None:
        """The classifier's classes on partial_fit calls (nothing for a regressor)."""

    def _loss_scale(self) -> float:
        """The factor on J's data term that scikit-learn's reported loss has (1 here)."""
        return 1.0

    def _trainer(self, net: Network, loss: str, batch_size: int) -> Trainer:
        """A Trainer over `net` for this call, with the solver's kept optimizer."""
        sgd = self.solver == "sgd"
        momentum = float(self.momentum) if sgd else 0.0
        trainer = Trainer(net, loss=loss, learning_rate=float(self.learning_rate_init),
                          batch_size=batch_size, l2=float(self.alpha), optimizer=self.solver
                          if self.solver in ("sgd", "adam") else "sgd",
                          momentum=momentum, shuffle=False, seed=0, l2_per_sample=True,
                          nesterov=bool(self.nesterovs_momentum) and momentum > 0,
                          beta1=float(self.beta_1), beta2=float(self.beta_2),
                          epsilon=float(self.epsilon))
        trainer._optimizer = self.__dict__.get("_optimizer")
        return trainer

    def _new_optimizer(self, dtype: Any) -> Optimizer:
        """The stochastic solver's state from scratch, as a new fit starts it."""
        self._learning_rate = float(self.learning_rate_init)
        if self.solver == "sgd":
            return SGD(dtype, momentum=float(self.momentum),
                       nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        return _EpsilonHatAdam(dtype, beta1=float(self.beta_1), beta2=float(self.beta_2),
                               epsilon=float(self.epsilon))

    def _fit_stochastic(self, net: Network, X: Any, Y: np.ndarray, sample_weight: Any,
                        incremental: bool) -> None:
        if not incremental or self.__dict__.get("_optimizer") is None:
            self._optimizer = self._new_optimizer(net.dtype)
        for name, value in (("loss_curve_", []), ("_no_improvement_count", 0),
                            ("t_", 0), ("n_iter_", 0)):
            if not hasattr(self, name):
                setattr(self, name, value)
        if not hasattr(self, "best_loss_"):
            self.best_loss_ = None if self.early_stopping else np.inf
        if self.early_stopping and getattr(self, "validation_scores_", None) is None:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
        if self.early_stopping and not hasattr(self, "_best_params"):
            self._best_params = net.get_parameters()
        (X_train, Y_train, sw_train), validation = self._split(X, Y, sample_weight)
        n_samples = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It "
                              "is going to be clipped", stacklevel=_USER)
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        if not sp.issparse(X_train):
            X_train = np.ascontiguousarray(X_train, dtype=net.dtype)
        trainer = self._trainer(net, _LOSS[self.loss], batch_size)
        optimizer = trainer._ready_optimizer()
        self._optimizer = optimizer
        sample_idx = np.arange(n_samples, dtype=np.intp)
        scale = self._loss_scale()
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = _shuffle(sample_idx, random_state=self._random_state)
                rate = self._learning_rate if self.solver == "sgd" else float(
                    self.learning_rate_init)
                data, penalty = self._epoch(trainer, X_train, Y_train, sw_train,
                                            sample_idx if self.shuffle else None,
                                            batch_size, rate)
                self.n_iter_ += 1
                self.loss_ = (scale * data + penalty) / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(net, validation)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._learning_rate = (float(self.learning_rate_init)
                                           / (self.t_ + 1) ** self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    what = ("Validation score" if self.early_stopping else "Training loss")
                    message = (f"{what} did not improve more than tol={self.tol:f} for "
                               f"{self.n_iter_no_change} consecutive epochs.")
                    if self._stop(message):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                        f"and the optimization hasn't converged yet.", ConvergenceWarning,
                        stacklevel=_USER)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=_USER)
        if self.early_stopping:
            net.set_parameters(self._best_params)

    def _stop(self, message: str) -> bool:
        """After n_iter_no_change epochs without progress: stop, or (adaptive) slow down."""
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(message + " Stopping.")
            return True
        if self._learning_rate <= 1e-6:
            if self.verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self._learning_rate /= 5.0
        if self.verbose:
            print(message + f" Setting learning rate to {self._learning_rate:f}")
        return False

    def _split(self, X: Any, Y: np.ndarray, sample_weight: Any) -> tuple[tuple[Any, ...], Any]:
        """(training part, validation part or None): scikit-learn's early-stopping split."""
        if not self.early_stopping:
            return (X, Y, sample_weight), None
        n = X.shape[0]
        n_val = int(np.ceil(self.validation_fraction * n))
        if n_val < 2 or n - n_val < 1:
            raise ValueError(
                f"The validation set is too small: validation_fraction="
                f"{self.validation_fraction} of n_samples={n} holds {n_val} sample(s), and "
                f"early stopping needs at least 2 (and 1 left to train on). Increase "
                f"'validation_fraction' or the size of your dataset.")
        stratify = None
        if is_classifier(self) and self.n_outputs_ == 1:
            # scikit-learn's stratified split (binary targets) where one can be
            # made; on data too small for one, a plain random split
            counts = np.bincount(Y[:, 0].astype(np.intp), minlength=2)
            classes = int(np.count_nonzero(counts))
            if counts[counts > 0].min() >= 2 and min(n_val, n - n_val) >= classes:
                stratify = Y
        arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
        parts = train_test_split(*arrays, random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X_train, X_val, Y_train, Y_val = parts[:4]
        sw_train, sw_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
        return ((X_train, np.ascontiguousarray(Y_train), sw_train),
                (X_val, self._validation_targets(Y_val), sw_val))

    def _validation_targets(self, Y_val: np.ndarray) -> np.ndarray:
        return Y_val[:, 0] if Y_val.shape[1] == 1 else Y_val

    def _update_no_improvement_count(self, net: Network, validation: Any) -> None:
        if validation is not None:
            assert self.validation_scores_ is not None and self.best_validation_score_ is not None
            X_val, y_val, sw_val = validation
            score = self._score_unchecked(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = net.get_parameters()
            return
        if self.best_loss_ is None:     # a warm start after a fit with early stopping
            self.best_loss_ = np.inf
        if self.loss_curve_[-1] > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if self.loss_curve_[-1] < self.best_loss_:
            self.best_loss_ = self.loss_curve_[-1]

    def _epoch(self, trainer: Trainer, X: Any, Y: np.ndarray, sample_weight: Any,
               order: np.ndarray | None, batch_size: int, rate: float) -> tuple[float, float]:
        """One epoch in the kernel: (sum of m_B * data term, sum of m_B * penalty)."""
        if not sp.issparse(X):
            outcome = trainer._run_epoch(X, Y, _EMPTY_ORDER if order is None else order,
                                         batch_size, rate, "an epoch",
                                         sample_weight=sample_weight)
            return outcome.rows_data, outcome.rows_penalty
        # sparse: whole batches densified a block at a time, in the epoch's order
        n = X.shape[0]
        order = np.arange(n, dtype=np.intp) if order is None else order
        block = _rows_per_block(X.shape[1], trainer.network.dtype.itemsize, batch_size)
        data = penalty = 0.0
        for start in range(0, n, block):
            rows = order[start:start + block]
            outcome = trainer._run_epoch(
                _dense(X, rows, trainer.network.dtype), np.ascontiguousarray(Y[rows]),
                _EMPTY_ORDER, batch_size, rate, "an epoch",
                sample_weight=None if sample_weight is None else np.ascontiguousarray(
                    sample_weight[rows]))
            data += outcome.rows_data
            penalty += outcome.rows_penalty
        return data, penalty

    def _fit_lbfgs(self, net: Network, X: Any, Y: np.ndarray, sample_weight: Any) -> None:
        """scipy's L-BFGS-B on J, one GIL-free full-batch kernel call per evaluation."""
        loss_code = LOSS_CODES[_LOSS[self.loss]]
        dtype = net.dtype
        n = X.shape[0]
        weight_sum = float(n if sample_weight is None else np.sum(sample_weight, dtype=float))
        alpha = float(self.alpha)
        scale = self._loss_scale()
        grads = np.empty_like(net._params)
        sparse = sp.issparse(X)
        if sparse:
            capacity = min(n, _rows_per_block(X.shape[1], dtype.itemsize, 1))
            X = X.tocsr()
        else:
            X = np.ascontiguousarray(X, dtype=dtype)
            capacity = min(n, _LBFGS_BLOCK_ROWS)
        work = np.empty(_kernels.workspace_size(net._sizes, capacity), dtype=dtype)
        block_grads = np.empty_like(grads) if sparse else grads

        def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
            net._params[...] = x
            # (alpha / 2) sum ||W||^2 / W_total: J's penalty, where it is needed apart
            penalty = (_kernels.penalty(net._params, net._sizes, alpha / weight_sum, 0.0)
                       if sparse or scale != 1.0 else 0.0)
            if not sparse:
                J, _ = _kernels.loss_and_gradients(
                    net._params, grads, net._sizes, net._codes, loss_code, X, Y, work, alpha,
                    sample_weight=sample_weight, l2_per_sample=True, capacity=capacity)
            else:
                # block by block: each block's objective without the penalty, by its weight
                J, grads[...] = 0.0, 0
                for start in range(0, n, capacity):
                    rows = slice(start, start + capacity)
                    weights = None if sample_weight is None else sample_weight[rows]
                    share = float(min(capacity, n - start) if weights is None
                                  else np.sum(weights, dtype=float))
                    if share == 0:
                        continue
                    J_block, _ = _kernels.loss_and_gradients(
                        net._params, block_grads, net._sizes, net._codes, loss_code,
                        _dense(X, rows, dtype), np.ascontiguousarray(Y[rows]), work, 0.0,
                        sample_weight=weights)
                    J += J_block * share / weight_sum
                    np.add(grads, block_grads * dtype.type(share / weight_sum), out=grads)
                J += penalty
                for W, G in zip(net.weights, layer_views(grads, net.layer_sizes)[0]):
                    G += dtype.type(alpha / weight_sum) * W
            if scale != 1.0:
                J = scale * (J - penalty) + penalty
            return float(J), grads.astype(np.float64)

        callback = None
        if self.verbose:
            def callback(intermediate_result: Any) -> None:
                callback.iterations += 1  # type: ignore[attr-defined]
                print(f"Iteration {callback.iterations}, "  # type: ignore[attr-defined]
                      f"loss = {intermediate_result.fun:.8f}")
            callback.iterations = 0  # type: ignore[attr-defined]
        options: dict[str, Any] = {"maxfun": self.max_fun, "maxiter": self.max_iter,
                                   "gtol": self.tol}
        result = scipy.optimize.minimize(objective, net._params.astype(np.float64),
                                         method="L-BFGS-B", jac=True, options=options,
                                         callback=callback)
        self.n_iter_ = min(int(result.nit), self.max_iter)
        if result.status != 0:
            message = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                       f"(status={result.status}):\n{result.message}\n")
            if self.n_iter_ == self.max_iter:
                message += ("\nIncrease the number of iterations to improve the convergence "
                            f"(max_iter={self.max_iter}).")
            warnings.warn(message, ConvergenceWarning, stacklevel=_USER)
        self.loss_ = float(result.fun)
        net._params[...] = result.x

    # ------------------------------------------------------------- predicting

    def _forward(self, X: Any, check_input: bool = True) -> np.ndarray:
        """The output activations of X (validated unless check_input is False)."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        net = self._network_for(rebind=False)
        if not sp.issparse(X):
            return net._forward(np.ascontiguousarray(X, dtype=net.dtype))[0]
        X = X.tocsr()
        block = _rows_per_block(X.shape[1], net.dtype.itemsize, 1)
        out = np.empty((X.shape[0], net.layer_sizes[-1]), dtype=net.dtype)
        for start in range(0, X.shape[0], block):
            rows = slice(start, start + block)
            out[rows] = net._forward(_dense(X, rows, net.dtype))[0]
        return out

    def _score_unchecked(self, X: Any, y: Any, sample_weight: Any) -> float:
        """The validation score of early stopping: NaN when the predictions are not finite."""
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return float(self._score_function(y, y_pred, sample_weight=sample_weight))

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        raise NotImplementedError

    _score_function = staticmethod(accuracy_score)

    def _incremental(self) -> bool:
        """partial_fit's availability: stochastic solvers, without early stopping."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        if self.early_stopping:
            raise AttributeError("partial_fit is not available with early_stopping=True: "
                                 "an epoch of one chunk has no validation set to stop on")
        return True

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_DOC_PARAMETERS = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Hidden-layer activation.
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        'lbfgs': scipy's L-BFGS-B on the full batch; 'sgd': mini-batch SGD with
        (Nesterov) momentum; 'adam': Adam.
    alpha : float, default=0.0001
        L2 penalty: ``0.5 * alpha * sum ||W||^2 / n_B`` joins each batch's loss.
    batch_size : int or 'auto', default='auto'
        Mini-batch size of the stochastic solvers; 'auto' is min(200, n_samples).
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        sgd's rate schedule: 'invscaling' is ``learning_rate_init / (t + 1) ** power_t``
        after each epoch (t the samples seen); 'adaptive' divides the rate by 5 when
        n_iter_no_change epochs did not improve by tol.
    learning_rate_init : float, default=0.001
        Initial learning rate (sgd and adam).
    power_t : float, default=0.5
        Exponent of 'invscaling'.
    max_iter : int, default=200
        Epochs of the stochastic solvers; iterations of lbfgs.
    shuffle : bool, default=True
        Shuffle the samples each epoch (sgd and adam).
    random_state : int, RandomState instance or None, default=None
        The initial weights, the shuffles and the early-stopping split, drawn as
        scikit-learn draws them.
    tol : float, default=1e-4
        Improvement that counts for the stopping rule (and lbfgs's gtol).
    verbose : bool, default=False
        Print "Iteration k, loss = ..." per epoch (per iteration for lbfgs).
    warm_start : bool, default=False
        Continue from the previous fit's weights.
    momentum : float, default=0.9
        sgd's momentum, in [0, 1].
    nesterovs_momentum : bool, default=True
        Nesterov's momentum (sgd with momentum > 0).
    early_stopping : bool, default=False
        Hold out validation_fraction of the data and stop on its score.
    validation_fraction : float, default=0.1
        Share held out by early_stopping.
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's moment decays.
    epsilon : float, default=1e-8
        Adam's epsilon (beside sqrt(v), before the bias correction).
    n_iter_no_change : int, default=10
        Epochs without tol improvement before stopping (or slowing, 'adaptive').
    max_fun : int, default=15000
        lbfgs's bound on loss evaluations.
"""

_DOC_ATTRIBUTES = """
    Attributes
    ----------
    loss_ : float
        The loss of the last epoch (the final loss for lbfgs).
    best_loss_ : float or None
        The lowest epoch loss (None with early_stopping).
    loss_curve_ : list of float
        The loss of each epoch (stochastic solvers).
    validation_scores_ : list of float or None
        The validation score of each epoch with early_stopping, else None.
    best_validation_score_ : float or None
        The best of them, whose weights are kept.
    t_ : int
        Samples seen by the solver.
    coefs_ : list of ndarray of shape (n_in, n_out)
        The weights of each layer. Assign new arrays to train (partial_fit) or
        predict from them.
    intercepts_ : list of ndarray of shape (n_out,)
        The biases of each layer.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when X had string column names.
    n_iter_ : int
        Epochs (iterations) run by the last fit.
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = ("""Multi-layer perceptron classifier: scikit-learn's, trained by fastbp's kernels.

    Optimizes the log-loss (softmax output for multiclass targets, logistic
    for binary and multilabel) with lbfgs, sgd or adam; see the module
    documentation for what it shares with scikit-learn's MLPClassifier.
""" + _DOC_PARAMETERS + _DOC_ATTRIBUTES + """    classes_ : ndarray or list of ndarray
        The class labels (per output for multilabel targets).
    """)

    #: the loss is not a parameter of the classifier: always the log-loss
    loss = "log_loss"

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: Any = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: Any = False,
                 warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: Any = 10,
                 max_fun: int = 15000) -> None:
        self._set_params_of(dict(locals()))

    def _output_for(self, Y: np.ndarray) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Any:
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        f"warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _partial_fit_classes(self, y: Any, classes: Any) -> None:
        known = getattr(self, "classes_", None)
        if known is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is None:
            return
        if known is not None:
            if not np.array_equal(known, unique_labels(classes)):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {known!r}")
            return
        self.classes_ = unique_labels(classes)
        self._label_binarizer = LabelBinarizer()
        if type_of_target(y).startswith("multilabel"):
            self._label_binarizer.fit(y)
        else:
            self._label_binarizer.fit(classes)

    def _validation_targets(self, Y_val: np.ndarray) -> np.ndarray:
        return self._label_binarizer.inverse_transform(Y_val)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Fit the model to X and the labels y (class labels or a label indicator matrix).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_BaseMLP._incremental)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None,
                    classes: Any = None) -> MLPClassifier:
        """One epoch over (X, y) from the current weights (sgd and adam).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Every class of the whole data; required on the first call.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        y_pred = self._forward(X, check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict(self, X: Any) -> np.ndarray:
        """The predicted class labels of X."""
        check_is_fitted(self)
        return self._predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each class in classes_ (columns), per sample (rows)."""
        check_is_fitted(self)
        y_pred = self._forward(X)
        if self.out_activation_ == "logistic":
            # a logistic output lies in (0, 1), but rounds to 0 or 1 past |z| ~ 37 (float64)
            # or ~ 17 (float32): kept inside by one unit in the last place
            tiny = np.finfo(y_pred.dtype)
            np.clip(y_pred, tiny.tiny, 1 - tiny.epsneg, out=y_pred)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The log of predict_proba."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = ("""Multi-layer perceptron regressor: scikit-learn's, trained by fastbp's kernels.

    Optimizes half the squared error (identity output) or, with
    loss='poisson', half the Poisson deviance (exp output, y >= 0); see the
    module documentation for what it shares with scikit-learn's MLPRegressor.

    loss : {'squared_error', 'poisson'}, default='squared_error'
        The loss. Its reported value (loss_, loss_curve_) is scikit-learn's:
        the squared error averaged over the outputs.
""" + _DOC_PARAMETERS + _DOC_ATTRIBUTES)

    _parameter_constraints = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }
    _score_function = staticmethod(r2_score)

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: Any = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Any = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5,
                 max_iter: int = 200, shuffle: bool = True, random_state: Any = None,
                 tol: float = 1e-4, verbose: Any = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: Any = 10, max_fun: int = 15000) -> None:
        self._set_params_of(dict(locals()))

    def _output_for(self, Y: np.ndarray) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _out_activation(self) -> str:
        return getattr(self, "out_activation_", self._output_for(np.empty((0, 1))))

    def _loss_scale(self) -> float:
        # scikit-learn reports the squared error averaged over the outputs (its
        # gradient is that of the sum, delta = a - y): loss_ and loss_curve_ agree
        return 1.0 / self.n_outputs_ if self.loss == "squared_error" else 1.0

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Any:
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.min(y) < 0:
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        return X, y

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Fit the model to X and the targets y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_BaseMLP._incremental)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over (X, y) from the current weights (sgd and adam)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        y_pred = self._forward(X, check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def predict(self, X: Any) -> np.ndarray:
        """The predicted targets of X: shape (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags
