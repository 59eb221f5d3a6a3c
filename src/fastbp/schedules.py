"""Learning-rate schedules, applied once per epoch by the Trainer.

A schedule maps the epoch index (0 for the first epoch a trainer runs) and
the trainer's base ``learning_rate`` to the rate used in that epoch. The
plateau schedule also looks at a monitored metric after each epoch. Every
schedule's position can be read and restored (`get_state` / `set_state`), so
checkpoints resume it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

from ._contract import (
    MONITORS,
    Constraint,
    Interval,
    Options,
    check_params,
    improved,
    unrecorded_monitor,
)

__all__ = [
    "Schedule",
    "Constant",
    "StepDecay",
    "ExponentialDecay",
    "InverseScaling",
    "ReduceOnPlateau",
    "make_schedule",
]


class Schedule:
    """Base class: a constant rate. Subclasses override `rate`."""

    _parameter_constraints: dict[str, Constraint] = {}

    def _check(self) -> None:
        check_params(vars(self), self._parameter_constraints)

    def rate(self, epoch: int, base_rate: float) -> float:
        """The learning rate of one epoch.

        Parameters
        ----------
        epoch : int
            The epoch's index, 0 for the trainer's first.
        base_rate : float
            The trainer's ``learning_rate``.

        Returns
        -------
        rate : float
        """
        return base_rate

    def update(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Called after each epoch with what it recorded.

        Parameters
        ----------
        epoch : int
            The index of the epoch just finished (0-based).
        metrics : dict
            That epoch's values (``loss``, ``val_loss``, ...).
        """

    def get_state(self) -> dict[str, Any]:
        """The schedule's position, for checkpoints.

        Returns
        -------
        state : dict
            JSON-serializable; `set_state` takes it back.
        """
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore a position.

        Parameters
        ----------
        state : dict
            As `get_state` returned it.
        """

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments.

        Returns
        -------
        config : dict
            JSON-serializable; ``type(self)(**config)`` makes the same schedule.
        """
        return {name: value for name, value in vars(self).items() if not name.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The base rate in every epoch."""

    def __init__(self) -> None:
        pass


class StepDecay(Schedule):
    """Multiply the rate by `gamma` every `step_size` epochs.

    ``rate = base_rate * gamma ** (epoch // step_size)``
    """

    _parameter_constraints: dict[str, Constraint] = {
        "step_size": Interval(Integral, 1, None, closed="left"),
        "gamma": Interval(Real, 0, 1, closed="right"),
    }

    def __init__(self, step_size: int = 10, gamma: float = 0.5) -> None:
        self.step_size = step_size
        self.gamma = gamma
        self._check()

    def rate(self, epoch: int, base_rate: float) -> float:
        return base_rate * self.gamma ** (epoch // self.step_size)


class ExponentialDecay(Schedule):
    """``rate = base_rate * gamma ** epoch``."""

    _parameter_constraints: dict[str, Constraint] = {"gamma": Interval(Real, 0, 1, closed="right")}

    def __init__(self, gamma: float = 0.95) -> None:
        self.gamma = gamma
        self._check()

    def rate(self, epoch: int, base_rate: float) -> float:
        return base_rate * self.gamma ** epoch


class InverseScaling(Schedule):
    """``rate = base_rate / (epoch + 1) ** power`` (scikit-learn's 'invscaling')."""

    _parameter_constraints: dict[str, Constraint] = {"power": Interval(Real, 0, None, closed="left")}

    def __init__(self, power: float = 0.5) -> None:
        self.power = power
        self._check()

    def rate(self, epoch: int, base_rate: float) -> float:
        return base_rate / (epoch + 1) ** self.power


class ReduceOnPlateau(Schedule):
    """Multiply the rate by `factor` when `monitor` stops improving.

    After `patience` epochs without an improvement of at least `min_delta`
    (a decrease for losses, an increase for accuracies), the rate is
    multiplied by `factor`, never below `min_rate`, and the count starts
    again after `cooldown` epochs (epochs of the cooldown do not count toward
    patience; an improvement during them still sets the best value).
    """

    _parameter_constraints: dict[str, Constraint] = {
        "monitor": Options(MONITORS),
        "factor": Interval(Real, 0, 1, closed="neither"),
        "patience": Interval(Integral, 0, None, closed="left"),
        "min_delta": Interval(Real, 0, None, closed="left"),
        "cooldown": Interval(Integral, 0, None, closed="left"),
        "min_rate": Interval(Real, 0, None, closed="left"),
    }

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 5,
                 min_delta: float = 1e-4, cooldown: int = 0, min_rate: float = 0.0) -> None:
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.min_delta = min_delta
        self.cooldown = cooldown
        self.min_rate = min_rate
        self._check()
        self._scale = 1.0
        self._best: float | None = None
        self._wait = 0
        self._cooling = 0

    def rate(self, epoch: int, base_rate: float) -> float:
        return max(base_rate * self._scale, self.min_rate)

    def update(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self.monitor not in metrics:
            raise unrecorded_monitor("ReduceOnPlateau", self.monitor, metrics)
        value = float(metrics[self.monitor])
        better = improved(self.monitor, self._best, value, self.min_delta)
        if better:
            self._best = value
            self._wait = 0
        if self._cooling > 0:
            # an epoch of the cooldown after a reduction: never counts toward patience
            self._cooling -= 1
        elif not better:
            self._wait += 1
            if self._wait >= self.patience:
                self._scale *= self.factor
                self._wait = 0
                self._cooling = self.cooldown

    def get_state(self) -> dict[str, Any]:
        return {"scale": self._scale, "best": self._best, "wait": self._wait,
                "cooling": self._cooling}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._scale = float(state["scale"])
        self._best = None if state["best"] is None else float(state["best"])
        self._wait = int(state["wait"])
        self._cooling = int(state["cooling"])


SCHEDULES: dict[str, type[Schedule]] = {
    "constant": Constant,
    "step": StepDecay,
    "exponential": ExponentialDecay,
    "invscaling": InverseScaling,
    "plateau": ReduceOnPlateau,
}


def make_schedule(schedule: str | Schedule | None) -> Schedule:
    """A Schedule from a name, an instance or None.

    Parameters
    ----------
    schedule : None, str or Schedule
        None or 'constant': the base rate throughout; 'step', 'exponential',
        'invscaling', 'plateau': that schedule with its default settings; a
        Schedule instance is returned as it is.

    Returns
    -------
    schedule : Schedule
    """
    if schedule is None:
        return Constant()
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, str) and schedule in SCHEDULES:
        return SCHEDULES[schedule]()
    raise ValueError(
        f"schedule must be None, one of {sorted(SCHEDULES)} or a fastbp.schedules.Schedule, "
        f"got {schedule!r}"
    )


def schedule_from_config(name: str, config: Mapping[str, Any],
                         state: Mapping[str, Any]) -> Schedule:
    """Rebuild a schedule saved as (class name, get_config(), get_state()).

    Parameters
    ----------
    name : str
        The class name, one of the classes of SCHEDULES.
    config : dict
        Its `get_config`.
    state : dict
        Its `get_state`.

    Returns
    -------
    schedule : Schedule
    """
    classes = {cls.__name__: cls for cls in SCHEDULES.values()}
    if name not in classes:
        raise ValueError(f"unknown schedule {name!r}")
    schedule = classes[name](**config)
    schedule.set_state(state)
    return schedule

