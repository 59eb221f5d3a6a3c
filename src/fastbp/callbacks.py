"""Callbacks: code that runs at the start and end of `fit` and after each epoch.

A callback is any object with some of these methods (each optional):

    on_fit_begin(trainer, history)
    on_epoch_end(trainer, epoch, history) -> True to stop training
    on_fit_end(trainer, history)

`epoch` is the trainer's epoch count (1 for its first epoch ever) and
`history` the dict of per-epoch lists of the running fit call. Returning True
from on_epoch_end, or setting ``trainer.stop_training = True``, ends the fit
cleanly after that epoch: its history is kept and on_fit_end still runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

import numpy as np

from ._contract import (
    MONITORS,
    Constraint,
    Interval,
    Options,
    check_params,
    improved,
    unrecorded_monitor,
)

if TYPE_CHECKING:
    from ._typing import FloatArray, History
    from .trainer import Trainer

__all__ = ["Callback", "EarlyStopping", "LambdaCallback", "check_callbacks"]

_HOOKS = ("on_fit_begin", "on_epoch_end", "on_fit_end")

logger = logging.getLogger("fastbp")


class Callback:
    """Base class with no-op hooks; subclass and override what you need."""

    def on_fit_begin(self, trainer: Trainer, history: History) -> None:
        """Called once when `fit` starts, before the first epoch.

        Parameters
        ----------
        trainer : Trainer
            The trainer that runs the fit.
        history : dict of list
            The fit's history, empty lists at this point.
        """

    def on_epoch_end(self, trainer: Trainer, epoch: int, history: History) -> bool:
        """Called after each epoch.

        Parameters
        ----------
        trainer : Trainer
        epoch : int
            The trainer's epoch count (1 after its first epoch ever).
        history : dict of list
            The running fit's per-epoch values, this epoch's last.

        Returns
        -------
        stop : bool
            True to end the fit after this epoch.
        """
        return False

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        """Called once when `fit` ends, also when a callback stopped it.

        Parameters
        ----------
        trainer : Trainer
        history : dict of list
            The fit's history.
        """


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=f)``."""

    def __init__(
        self,
        on_fit_begin: Callable[[Trainer, History], object] | None = None,
        on_epoch_end: Callable[[Trainer, int, History], object] | None = None,
        on_fit_end: Callable[[Trainer, History], object] | None = None,
    ) -> None:
        for name, function in (("on_fit_begin", on_fit_begin),
                               ("on_epoch_end", on_epoch_end), ("on_fit_end", on_fit_end)):
            if function is not None and not callable(function):
                raise TypeError(f"{name} must be callable or None, got {function!r}")
        self._begin, self._epoch, self._end = on_fit_begin, on_epoch_end, on_fit_end

    def on_fit_begin(self, trainer: Trainer, history: History) -> None:
        if self._begin is not None:
            self._begin(trainer, history)

    def on_epoch_end(self, trainer: Trainer, epoch: int, history: History) -> bool:
        return bool(self._epoch(trainer, epoch, history)) if self._epoch is not None else False

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        if self._end is not None:
            self._end(trainer, history)


class EarlyStopping(Callback):
    """Stop when a monitored metric has stopped improving.

    Parameters
    ----------
    monitor : {'val_loss', 'loss', 'val_accuracy', 'accuracy'}
        Metric of the history to watch; losses must decrease, accuracies
        increase.
    patience : int >= 0
        Epochs without improvement to accept before stopping.
    min_delta : float >= 0
        Smallest change that counts as an improvement.
    restore_best_weights : bool
        At the end of the fit, put back the parameters of the best epoch
        (only the network's parameters; the optimizer state stays as it is).

    Attributes
    ----------
    best : float or None
        Best monitored value seen in this fit.
    best_epoch : int or None
        Trainer epoch count at which it was seen.
    stopped_epoch : int or None
        Epoch after which training was stopped, None if it ran to the end.
    """

    _parameter_constraints: dict[str, Constraint] = {
        "monitor": Options(MONITORS),
        "patience": Interval(Integral, 0, None, closed="left"),
        "min_delta": Interval(Real, 0, None, closed="left"),
        "restore_best_weights": Options((True, False)),
    }

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 restore_best_weights: bool = True) -> None:
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.restore_best_weights = restore_best_weights
        check_params(vars(self), self._parameter_constraints)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._best_parameters: FloatArray | None = None
        self._wait = 0

    def on_fit_begin(self, trainer: Trainer, history: History) -> None:
        self.best = None
        self.best_epoch = None
        self.stopped_epoch = None
        self._best_parameters = None
        self._wait = 0

    def on_epoch_end(self, trainer: Trainer, epoch: int, history: History) -> bool:
        if self.monitor not in history:
            raise unrecorded_monitor("EarlyStopping", self.monitor, history)
        value = float(history[self.monitor][-1])
        if improved(self.monitor, self.best, value, self.min_delta):
            self.best = value
            self.best_epoch = epoch
            self._wait = 0
            if self.restore_best_weights:
                self._best_parameters = trainer.network.get_parameters()
            return False
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = epoch
            logger.info("early stopping after epoch %d: best %s %.6g at epoch %d",
                        epoch, self.monitor, self.best, self.best_epoch)
            return True
        return False

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        if self.restore_best_weights and self._best_parameters is not None:
            if not np.array_equal(self._best_parameters, trainer.network._params):
                trainer.network.set_parameters(self._best_parameters)
                logger.info("restored the parameters of epoch %d", self.best_epoch)

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience!r}, "
                f"min_delta={self.min_delta!r}, "
                f"restore_best_weights={self.restore_best_weights!r})")


def check_callbacks(callbacks: Sequence[Any] | None) -> list[Any]:
    """`callbacks` as a list, each entry with at least one hook, or TypeError.

    Parameters
    ----------
    callbacks : list or tuple of callback objects, or None

    Returns
    -------
    callbacks : list
    """
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of callback objects, got {callbacks!r}")
    for callback in callbacks:
        if not any(callable(getattr(callback, hook, None)) for hook in _HOOKS):
            raise TypeError(
                f"callbacks entries need at least one of the methods {_HOOKS}, "
                f"got {callback!r}"
            )
    return list(callbacks)
