"""Update rules as objects: each owns its hyperparameters, its named state and its update.

The update itself runs in the epoch kernel; an optimizer object tells the
kernel which rule to apply (`rule`), hands it the state arrays by role
(`moments`) and keeps the count of updates made (Adam's t). State is
allocated once, in the layout of the network's flat parameters, the first
time a rule needs it.

With g = dJ/dW (penalties included) and eta the learning rate:

- SGD: ``W <- W - eta g``; with momentum mu, ``v <- mu v - eta g; W <- W + v``
  (Nesterov: ``W <- W + mu v - eta g``). State: ``velocity``.
- RMSprop: ``s <- rho s + (1 - rho) g^2; W <- W - eta g / (sqrt(s) + epsilon)``.
  State: ``square_average``.
- Adam: ``m <- beta1 m + (1 - beta1) g; v <- beta2 v + (1 - beta2) g^2;
  W <- W - eta mhat / (sqrt(vhat) + epsilon)``. State: ``first_moment``,
  ``second_moment``.
- AdamW: Adam with decoupled weight decay 0.01 by default.

A decoupled ``weight_decay`` multiplies the weights by ``1 - eta weight_decay``
at each update beside every rule's own step.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike

from . import _kernels

if TYPE_CHECKING:
    from ._typing import FloatArray

    #: Optimizer.snapshot's value: the state arrays by name and the update count
    Snapshot = tuple[dict[str, FloatArray], int]

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "OPTIMIZER_CLASSES",
           "make_optimizer"]


class Optimizer:
    """Base class of the update rules.

    Subclasses set `name`, `kind` (the kernel's code of the rule) and
    `state_names` (in the order of a checkpoint's state slots), take their
    hyperparameters as keyword arguments, and say which state they need.
    """

    name: ClassVar[str | None] = None
    kind: ClassVar[int | None] = None
    state_names: ClassVar[tuple[str, ...]] = ()
    default_weight_decay: ClassVar[float] = 0.0
    _hyperparameters: ClassVar[tuple[str, ...]] = ()
    # set by configure: None is default_weight_decay
    weight_decay: float | None

    def __init__(self, dtype: DTypeLike, **settings: Any) -> None:
        self.updates = 0
        self._empty: FloatArray = np.empty(0, dtype=dtype)
        self.state: dict[str, FloatArray] = {name: self._empty for name in self.state_names}
        self.configure(**settings)

    def configure(self, **settings: Any) -> None:
        """Set hyperparameters (the keyword arguments of the constructor); state is kept."""
        for name, value in settings.items():
            setattr(self, name, value)

    @classmethod
    def hyperparameters(cls) -> tuple[str, ...]:
        """Names of the hyperparameters the rule takes (the keywords of `configure`)."""
        return cls._hyperparameters

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # read once per class: inspect.signature costs more than a small step
        cls._hyperparameters = tuple(name for name in inspect.signature(cls.configure).parameters
                                     if name not in ("self", "settings"))

    @property
    def decay(self) -> float:
        """The decoupled weight decay in force."""
        if self.weight_decay is None:
            return self.default_weight_decay
        return float(self.weight_decay)

    def needed_state(self) -> tuple[str, ...]:
        """Names of the state arrays the current settings use."""
        return self.state_names

    def allocate(self, params: FloatArray) -> None:
        """Zeros for every state array the current settings need and lack, once."""
        for name in self.needed_state():
            if self.state[name].size == 0:
                self.state[name] = np.zeros_like(params)

    def rule(self, learning_rate: float, l2: float, l1: float) -> dict[str, Any]:
        """The kernel's description of one update with these rates (a dict of its fields)."""
        return {
            "kind": self.kind, "learning_rate": float(learning_rate), "l2": float(l2),
            "l1": float(l1), "weight_decay": self.decay, "momentum": 0.0, "nesterov": False,
            "rho": 0.9, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
            "bias_corrected_epsilon": True,
        }

    def moments(self) -> tuple[FloatArray, FloatArray]:
        """(moment1, moment2) for the kernel: running sums of g and of g^2 (or empty)."""
        return self._empty, self._empty

    def snapshot(self) -> Snapshot:
        """A copy of the state and update count, for `restore`."""
        return {name: array.copy() for name, array in self.state.items()}, self.updates

    def restore(self, snapshot: Snapshot) -> None:
        """Put back the state and update count of `snapshot` (in place)."""
        arrays, self.updates = snapshot
        for name, array in arrays.items():
            self.state[name][...] = array

    def slots(self) -> tuple[FloatArray, ...]:
        """The state as a checkpoint stores it: (state1, state2), empty where unused."""
        arrays = [self.state[name] for name in self.state_names]
        arrays += [self._empty] * (2 - len(arrays))
        return tuple(arrays)

    def load_slots(self, slots: Sequence[FloatArray]) -> None:
        """Take the state from a checkpoint's (state1, state2), already checked."""
        for name, array in zip(self.state_names, slots):
            self.state[name] = array.copy()

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.hyperparameters())
        return f"{type(self).__name__}({settings}, updates={self.updates})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum."""

    name = "sgd"
    kind = _kernels.SGD
    state_names = ("velocity",)
    momentum: float
    nesterov: bool

    def configure(  # type: ignore[override]  # its own keywords, not **settings
        self, *, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float | None = None,
    ) -> None:
        super().configure(momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    def needed_state(self) -> tuple[str, ...]:
        return ("velocity",) if self.momentum else ()

    def rule(self, learning_rate: float, l2: float, l1: float) -> dict[str, Any]:
        rule = super().rule(learning_rate, l2, l1)
        rule.update(momentum=float(self.momentum), nesterov=bool(self.nesterov))
        return rule

    def moments(self) -> tuple[FloatArray, FloatArray]:
        return self.state["velocity"], self._empty


class RMSprop(Optimizer):
    """RMSprop: steps scaled by a running average of squared gradients."""

    name = "rmsprop"
    kind = _kernels.RMSPROP
    state_names = ("square_average",)
    rho: float
    epsilon: float

    def configure(  # type: ignore[override]  # its own keywords, not **settings
        self, *, rho: float = 0.9, epsilon: float = 1e-8, weight_decay: float | None = None,
    ) -> None:
        super().configure(rho=rho, epsilon=epsilon, weight_decay=weight_decay)

    def rule(self, learning_rate: float, l2: float, l1: float) -> dict[str, Any]:
        rule = super().rule(learning_rate, l2, l1)
        rule.update(rho=float(self.rho), epsilon=float(self.epsilon))
        return rule

    def moments(self) -> tuple[FloatArray, FloatArray]:
        return self._empty, self.state["square_average"]


class Adam(Optimizer):
    """Adam: bias-corrected running moments of the gradient and its square."""

    name = "adam"
    kind = _kernels.ADAM
    state_names = ("first_moment", "second_moment")
    beta1: float
    beta2: float
    epsilon: float

    def configure(  # type: ignore[override]  # its own keywords, not **settings
        self, *, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
        weight_decay: float | None = None,
    ) -> None:
        super().configure(beta1=beta1, beta2=beta2, epsilon=epsilon,
                          weight_decay=weight_decay)

    def rule(self, learning_rate: float, l2: float, l1: float) -> dict[str, Any]:
        rule = super().rule(learning_rate, l2, l1)
        rule.update(beta1=float(self.beta1), beta2=float(self.beta2),
                    epsilon=float(self.epsilon))
        return rule

    def moments(self) -> tuple[FloatArray, FloatArray]:
        return self.state["first_moment"], self.state["second_moment"]


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter), 0.01 by default."""

    name = "adamw"
    default_weight_decay = 0.01


OPTIMIZER_CLASSES: dict[str, type[Optimizer]] = {
    str(cls.name): cls for cls in (SGD, RMSprop, Adam, AdamW)
}


def make_optimizer(current: Optimizer | None, name: str, dtype: DTypeLike,
                   settings: Mapping[str, Any]) -> Optimizer:
    """The optimizer `name` with `settings`, keeping `current`'s state if it is that rule.

    State belongs to one rule: switching rule starts afresh (zeros, no
    updates); anything else (more fit calls, new hyperparameters) keeps it.

    Parameters
    ----------
    current : Optimizer or None
    name : str
        One of OPTIMIZER_CLASSES.
    dtype : numpy dtype
        The network's.
    settings : dict
        Hyperparameters by name; each rule takes the ones it knows.
    """
    cls = OPTIMIZER_CLASSES[name]
    own = {key: settings[key] for key in cls.hyperparameters()}
    if current is not None and current.name == name:
        current.configure(**own)
        return current
    return cls(dtype, **own)
