"""Model: a trained Network with what it needs to answer in the user's terms.

A Network maps standardised numbers to output activations. A Model adds the
rest of what came with the data: the task (classify or regress), the class
labels (numbers or strings) that the outputs stand for, the feature names,
the standardisation of the inputs (and of a regressor's targets), and the
training history. ``fastbp train`` writes one; ``predict``, ``evaluate``,
``info`` and ``export`` read it. The file is fastbp's safe .npz model format,
version 2 (documented in fastbp._io); version-1 files (``Network.save``)
load as models without preprocessing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _io
from ._data import check_inputs
from .network import Network

if TYPE_CHECKING:
    from ._typing import FloatArray, PathLike

__all__ = ["Model"]

TASKS = ("classify", "regress")


class Model:
    """A Network with its task, labels, feature names and scaling.

    Parameters
    ----------
    network : Network
    task : {'classify', 'regress'} or None
        None infers it from the output activation: identity regresses,
        sigmoid and softmax classify.
    classes : array-like of shape (n_classes,), optional
        The labels the outputs stand for (output k is ``classes[k]``; with
        one sigmoid output, ``classes[1]`` is the positive class). Default
        ``0 .. n_classes - 1``.
    feature_names : sequence of str of length n_0, optional
    feature_mean, feature_scale : array-like of shape (n_0,), optional
        Inputs are standardised as ``(X - feature_mean) / feature_scale``
        before the network sees them.
    target_mean, target_scale : float or array-like of shape (n_L,), optional
        A regressor's network predicts ``(y - target_mean) / target_scale``;
        `predict` undoes it.
    history : dict, optional
        The training history (per-epoch lists), for `fastbp info`.
    """

    def __init__(self, network: Network, task: str | None = None,
                 classes: ArrayLike | None = None, feature_names: Sequence[str] | None = None,
                 feature_mean: ArrayLike | None = None, feature_scale: ArrayLike | None = None,
                 target_mean: ArrayLike | None = None, target_scale: ArrayLike | None = None,
                 history: Mapping[str, Any] | None = None) -> None:
        if not isinstance(network, Network):
            raise TypeError(f"network must be a fastbp.Network, got {type(network).__name__}")
        n_inputs, n_outputs = network.layer_sizes[0], network.layer_sizes[-1]
        if task is None:
            task = "regress" if network.output in ("identity", "exp") else "classify"
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if task == "classify" and network.output not in ("sigmoid", "softmax"):
            raise ValueError(f"a classifier needs a sigmoid or softmax output, not "
                             f"{network.output}")
        labels: NDArray[Any] | None = None
        if task == "classify":
            n_classes = 2 if n_outputs == 1 else n_outputs
            labels = np.arange(n_classes) if classes is None else np.asarray(classes)
            if labels.shape != (n_classes,):
                raise ValueError(f"classes must hold {n_classes} labels for this network, "
                                 f"got shape {labels.shape}")
        elif classes is not None:
            raise ValueError("classes belong to classifiers; a regressor has none")
        names: list[str] | None = None
        if feature_names is not None:
            names = [str(name) for name in feature_names]
            if len(names) != n_inputs:
                raise ValueError(f"feature_names must name the {n_inputs} inputs, got "
                                 f"{len(names)}")
        mean = self._vector(feature_mean, (n_inputs,), "feature_mean")
        scale = self._vector(feature_scale, (n_inputs,), "feature_scale", positive=True)
        if (mean is None) != (scale is None):
            raise ValueError("give feature_mean and feature_scale together, or neither")
        if task == "classify" and (target_mean is not None or target_scale is not None):
            raise ValueError("target_mean and target_scale belong to regressors")
        y_mean = self._vector(target_mean, None, "target_mean", n_outputs=n_outputs)
        y_scale = self._vector(target_scale, None, "target_scale", positive=True,
                               n_outputs=n_outputs)
        if (y_mean is None) != (y_scale is None):
            raise ValueError("give target_mean and target_scale together, or neither")
        self.network = network
        self.task: str = task
        self.classes = labels
        self.feature_names = names
        self.feature_mean = mean
        self.feature_scale = scale
        self.target_mean = y_mean
        self.target_scale = y_scale
        self.history: dict[str, Any] = dict(history or {})

    @staticmethod
    def _vector(value: ArrayLike | None, shape: tuple[int, ...] | None, name: str,
                positive: bool = False,
                n_outputs: int | None = None) -> NDArray[np.float64] | None:
        if value is None:
            return None
        array = np.asarray(value, dtype=np.float64)
        if shape is None:   # a target scaling: one value, or one per output
            if array.shape not in ((), (n_outputs,)):
                raise ValueError(f"{name} must be one number or {n_outputs} numbers")
        elif array.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
        if not np.isfinite(array).all() or (positive and not np.all(array > 0)):
            raise ValueError(f"{name} must be finite{' and positive' if positive else ''}")
        return array

    # ------------------------------------------------------------ compute

    @property
    def n_features(self) -> int:
        """Number of input columns n_0."""
        return self.network.layer_sizes[0]

    def transform(self, X: ArrayLike) -> FloatArray:
        """Inputs as the network sees them: standardised when the model has a scaling.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)

        Returns
        -------
        X : ndarray of shape (n_samples, n_0), of the network's dtype
        """
        inputs = check_inputs(X, self.n_features, np.float64)
        if self.feature_mean is not None:
            inputs = (inputs - self.feature_mean) / cast("FloatArray", self.feature_scale)
        return inputs.astype(self.network.dtype, copy=False)

    def decision(self, X: ArrayLike) -> FloatArray:
        """The network's outputs on `X` (after `transform`), in its own units.

        Returns
        -------
        outputs : ndarray of shape (n_samples, n_L)
        """
        return self.network.forward(self.transform(X))

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Class probabilities, one column per class in the order of `classes`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)

        Returns
        -------
        probabilities : ndarray of shape (n_samples, n_classes)
            Rows sum to 1 for a softmax output; with one sigmoid output the
            columns are (1 - p, p); with several sigmoid outputs each column
            is that class's own probability.
        """
        if self.task != "classify":
            raise ValueError("predict_proba needs a classifier; this model regresses")
        outputs = self.decision(X).astype(np.float64)
        if outputs.shape[1] == 1:
            return np.hstack([1 - outputs, outputs])
        return outputs

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """Predictions in the user's terms: class labels, or values in the targets' units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)

        Returns
        -------
        predictions : ndarray of shape (n_samples,), or (n_samples, n_L) for
            a regressor with several outputs
        """
        if self.task == "classify":
            classes = cast("NDArray[Any]", self.classes)  # every classifier has them
            probabilities = self.predict_proba(X)
            return classes[np.argmax(probabilities, axis=1)]
        values = self.decision(X).astype(np.float64)
        if self.target_mean is not None:
            values = values * cast("FloatArray", self.target_scale) + self.target_mean
        return values[:, 0] if values.shape[1] == 1 else values

    def encode_targets(self, y: ArrayLike) -> NDArray[Any]:
        """Targets as the network trains on them: class indices, or scaled values.

        Parameters
        ----------
        y : array-like of shape (n_samples,) or (n_samples, n_L)

        Returns
        -------
        targets : ndarray
            For a classifier, the index of each label in `classes` (a
            ValueError names labels the model does not know); for a
            regressor, ``(y - target_mean) / target_scale`` as float64.
        """
        targets = np.asarray(y)
        if self.task == "classify":
            classes = cast("NDArray[Any]", self.classes)  # every classifier has them
            index = {label: k for k, label in enumerate(classes.tolist())}
            unknown = sorted({label for label in targets.tolist() if label not in index}, key=str)
            if unknown:
                raise ValueError(f"labels {unknown[:5]} are not among the model's classes "
                                 f"{classes.tolist()}")
            return np.asarray([index[label] for label in targets.tolist()], dtype=np.intp)
        values = targets.astype(np.float64)
        if self.target_mean is not None:
            values = (values - self.target_mean) / cast("FloatArray", self.target_scale)
        return values

    # -------------------------------------------------------------- files

    def save(self, path: PathLike) -> None:
        """Write the model to a .npz model file, version 2 (atomic; format in fastbp._io).

        Parameters
        ----------
        path : str or os.PathLike
        """
        with self.network._guard.reading("save"):
            _io.save_model(self, path)

    @classmethod
    def load(cls, path: PathLike) -> Model:
        """Read a model file (version 2, or a version-1 `Network.save` file).

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        model : Model

        Raises
        ------
        ValueError
            For anything but a valid model file, naming the file.
        """
        fields = _io.load_model(path)
        try:
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{str(path)!r} is not a valid fastbp model file: {exc}") from None

    def __repr__(self) -> str:
        parts = [f"task={self.task!r}", f"network={self.network!r}"]
        if self.classes is not None:
            parts.append(f"classes={self.classes.tolist()!r}")
        if self.feature_names is not None:
            parts.append(f"features={len(self.feature_names)}")
        parts.append(f"scaled={self.feature_mean is not None}")
        return f"Model({', '.join(parts)})"
