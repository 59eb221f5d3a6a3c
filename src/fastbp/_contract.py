"""The parameter contract: every option name, constraint and cross-parameter rule.

Declared here once and read by the classes that take the parameters (their
checks and errors), by `get_config`, `__repr__` and checkpoints (which read
the names and defaults from the signatures), by the command line (its
``choices``) and by the kernels' codes. `fastbp.baseline`, the test oracle,
keeps its own names on purpose; a test checks that they agree.
"""

from __future__ import annotations

import inspect
import numbers
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union, cast
from numbers import Integral, Real

import numpy as np

from . import _kernels

__all__ = [
    "Interval",
    "Options",
    "check_params",
    "check_rules",
    "check_seed",
    "check_layer_sizes",
    "check_activations",
    "signature_defaults",
    "improved",
    "unrecorded_monitor",
    "HIDDEN_ACTIVATIONS",
    "OUTPUT_ACTIVATIONS",
    "LOSSES",
    "OPTIMIZERS",
    "MONITORS",
    "DTYPES",
    "INITS",
    "ACTIVATION_CODES",
    "LOSS_CODES",
    "LOSS_OUTPUTS",
    "check_loss_output",
    "NETWORK_CONSTRAINTS",
    "TRAINER_CONSTRAINTS",
    "TRAINER_RULES",
    "FIT_CONSTRAINTS",
]

# ------------------------------------------------------------------- names

HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
# exp is the log link of Poisson regression: outputs in (0, inf)
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "identity", "exp")
LOSSES = ("mse", "cross_entropy", "poisson")
OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
MONITORS = ("val_loss", "loss", "val_accuracy", "accuracy")
DTYPES = ("float32", "float64")
# weight initialisations of Network(init=...): the scaled Gaussian (Nielsen's,
# He's for relu) and scikit-learn's Glorot uniform
INITS = ("normal", "glorot_uniform")

# What the kernels call them
ACTIVATION_CODES = {"identity": _kernels.IDENTITY, "sigmoid": _kernels.SIGMOID,
                    "tanh": _kernels.TANH, "relu": _kernels.RELU,
                    "softmax": _kernels.SOFTMAX, "exp": _kernels.EXP}
LOSS_CODES = {"mse": _kernels.MSE, "cross_entropy": _kernels.CROSS_ENTROPY,
              "poisson": _kernels.POISSON}
#: the outputs each loss is defined on (None: any)
LOSS_OUTPUTS: dict[str, tuple[str, ...] | None] = {
    "mse": None, "cross_entropy": ("sigmoid", "softmax"), "poisson": ("exp",)}

# ------------------------------------------------------------ constraints

#: what check_params takes per name: a constraint, or a list of one and None
Constraint = Union["Interval", "Options", "list[Interval | Options | None]"]
#: a rule between parameters: (broken(params), message formatted with them)
Rule = tuple[Callable[[dict[str, Any]], bool], str]


@dataclass(frozen=True)
class Interval:
    """A real (or integer) number in [low, high], each end open or closed.

    ``None`` for an end means unbounded on that side.
    """

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right" or "neither"

    def describe(self) -> str:
        kind = "an integer" if self.kind is numbers.Integral else "a real number"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        low = "-inf" if self.low is None else repr(self.low)
        high = "inf" if self.high is None else repr(self.high)
        return f"{kind} in {left}{low}, {high}{right}"

    def accepts_type(self, value: object) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return False
        if self.kind is numbers.Integral:
            return isinstance(value, numbers.Integral)
        return isinstance(value, numbers.Real)

    def contains(self, value: Any) -> bool:
        if self.kind is not numbers.Integral and not np.isfinite(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings (or booleans)."""

    values: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


def check_params(params: Mapping[str, Any], constraints: Mapping[str, Constraint]) -> None:
    """Check each named value against its constraint.

    Parameters
    ----------
    params : dict
        Parameter name -> value; names without a constraint are not checked.
    constraints : dict
        Parameter name -> Interval, Options, or a list of those that may
        also hold None (scikit-learn's form for "or None"): ``[Interval(...),
        None]`` accepts None and otherwise checks the value against the
        Interval.

    Raises
    ------
    TypeError
        When a value has the wrong type (a string where a number is wanted).
    ValueError
        When a value has the right type but lies outside its constraint.
    """
    for name, constraint in constraints.items():
        if name not in params:
            continue
        value = params[name]
        if type(constraint) is list:
            if value is None and None in constraint:
                continue
            (constraint,) = [entry for entry in constraint if entry is not None]
        if isinstance(constraint, Interval):
            if not constraint.accepts_type(value):
                raise TypeError(
                    f"{name} must be {constraint.describe()}, got {value!r} "
                    f"of type {type(value).__name__}"
                )
            if not constraint.contains(value):
                raise ValueError(f"{name} must be {constraint.describe()}, got {value!r}")
        else:
            options = cast(Options, constraint)
            if any(type(value) is type(v) and value == v for v in options.values):
                continue
            raise ValueError(f"{name} must be {options.describe()}, got {value!r}")


def check_rules(params: dict[str, Any], rules: Iterable[Rule]) -> None:
    """Check the rules between parameters: ValueError with the first broken rule's message.

    Each rule is ``(broken, message)``: `broken(params)` is true when the
    combination is refused, and `message` is formatted with the parameters.
    """
    for broken, message in rules:
        if broken(params):
            raise ValueError(message.format(**params))


def check_seed(seed: object, name: str = "seed") -> int | None:
    """`seed` as None or a non-negative int, or TypeError/ValueError naming it."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, Integral):
        raise TypeError(f"{name} must be None or a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be None or a non-negative integer, got {seed!r}")
    return int(seed)


def signature_defaults(function: Callable[..., Any],
                       skip: Sequence[str] = ("self",)) -> dict[str, tuple[Any, bool]]:
    """Parameter name -> (default, keyword-only) for `function`, in signature order."""
    return {
        name: (parameter.default, parameter.kind is inspect.Parameter.KEYWORD_ONLY)
        for name, parameter in inspect.signature(function).parameters.items()
        if name not in skip
    }


# ---------------------------------------------------------------- Network

# layer_sizes and activation have structure of their own (check_layer_sizes,
# check_activations), dtype is resolved by _data.check_dtype, seed by check_seed
NETWORK_CONSTRAINTS: dict[str, Constraint] = {"output": Options(OUTPUT_ACTIVATIONS),
                                               "init": Options(INITS)}


def check_layer_sizes(layer_sizes: Sequence[int]) -> list[int]:
    """`layer_sizes` as a list of at least two positive ints that the machine can address."""
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
        raise TypeError(
            f"layer_sizes must be a sequence of positive integers, got {layer_sizes!r}"
        )
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"layer_sizes needs at least an input and an output size, got {sizes!r}"
        )
    for size in sizes:
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, Integral):
            raise TypeError(f"layer_sizes must hold positive integers, got {sizes!r}")
        if size < 1:
            raise ValueError(f"layer_sizes must hold positive integers, got {sizes!r}")
    sizes = [int(size) for size in sizes]
    # counted in Python integers: the C count must never overflow
    count = sum(fan_out * (fan_in + 1) for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
    if count > sys.maxsize // 8 or max(sizes) > sys.maxsize // 8:
        raise ValueError(
            f"layer_sizes {sizes} need {count} parameters, more than this machine can address"
        )
    return sizes


def check_activations(activation: str | Sequence[str],
                      n_hidden: int) -> tuple[str | list[str], list[str]]:
    """(the `activation` argument as kept, one name per hidden layer), or an error naming it."""
    if isinstance(activation, str):
        names = [activation] * n_hidden
        if activation not in HIDDEN_ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {HIDDEN_ACTIVATIONS} or a list of them, "
                f"got {activation!r}"
            )
        return activation, names
    if not isinstance(activation, (list, tuple)):
        raise TypeError(
            f"activation must be a string or a list of strings, got {activation!r}"
        )
    names = list(activation)
    if len(names) != n_hidden:
        raise ValueError(
            f"activation as a list needs one entry per hidden layer ({n_hidden}), "
            f"got {len(names)}"
        )
    for name in names:
        if name not in HIDDEN_ACTIVATIONS:
            raise ValueError(
                f"activation entries must be one of {HIDDEN_ACTIVATIONS}, got {name!r}"
            )
    return names, names


# ------------------------------------------------------- Trainer and fit

TRAINER_CONSTRAINTS: dict[str, Constraint] = {
    "loss": Options(LOSSES),
    "learning_rate": Interval(Real, 0, None, closed="neither"),
    "batch_size": Interval(Integral, 1, None, closed="left"),
    "l2": Interval(Real, 0, None, closed="left"),
    "optimizer": Options(OPTIMIZERS),
    # 1 included, as scikit-learn's MLP momentum is (no friction: rarely wise)
    "momentum": Interval(Real, 0, 1, closed="both"),
    "shuffle": Options((True, False)),
    "l1": Interval(Real, 0, None, closed="left"),
    "l2_per_sample": Options((True, False)),
    "nesterov": Options((True, False)),
    "weight_decay": [Interval(Real, 0, None, closed="left"), None],
    "rho": Interval(Real, 0, 1, closed="left"),
    "beta1": Interval(Real, 0, 1, closed="left"),
    "beta2": Interval(Real, 0, 1, closed="left"),
    "epsilon": Interval(Real, 0, None, closed="neither"),
    "on_divergence": Options(("raise", "warn")),
}

TRAINER_RULES: tuple[Rule, ...] = (
    (lambda p: p["momentum"] != 0 and p["optimizer"] != "sgd",
     "momentum applies to optimizer='sgd' only, got momentum={momentum!r} "
     "with optimizer={optimizer!r}"),
    (lambda p: bool(p["nesterov"]) and p["momentum"] == 0,
     "nesterov=True needs optimizer='sgd' with momentum > 0"),
)

FIT_CONSTRAINTS: dict[str, Constraint] = {
    "epochs": Interval(Integral, 0, None, closed="left"),
    "verbose": Interval(Integral, 0, 2, closed="both"),
    "validation_split": Interval(Real, 0, 1, closed="left"),
}


def check_loss_output(loss: str, output: str) -> None:
    """ValueError unless `loss` is defined on a network with output `output`."""
    allowed = LOSS_OUTPUTS[loss]
    if allowed is None or output in allowed:
        return
    if loss == "cross_entropy":
        raise ValueError(
            f"loss='cross_entropy' needs outputs in (0, 1): use output='sigmoid' or "
            f"'softmax' in the Network, or loss='mse' (the network has output={output!r})"
        )
    raise ValueError(
        f"loss='poisson' needs the exp output (the log link): use output='exp' in the "
        f"Network (the network has output={output!r})"
    )


# ------------------------------------------------------------- monitoring


def improved(monitor: str, best: float | None, value: float, min_delta: float) -> bool:
    """Whether `value` of metric `monitor` improves on `best` by more than `min_delta`.

    Losses improve by decreasing, accuracies by increasing; the first value
    (`best` None) always improves.
    """
    sign = 1.0 if "loss" in monitor else -1.0
    return best is None or sign * (best - value) > min_delta


def unrecorded_monitor(watcher: str, monitor: str, recorded: Iterable[str]) -> ValueError:
    """The error of a callback or schedule that monitors a metric the fit does not record."""
    return ValueError(
        f"{watcher} monitors {monitor!r}, which this fit does not record (it records "
        f"{list(recorded)}); pass validation_data or validation_split, or choose another "
        f"monitor"
    )
