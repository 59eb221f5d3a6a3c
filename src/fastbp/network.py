"""Network: layer sizes, parameters and the forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _io, _kernels
from ._concurrency import UsageGuard, in_main_thread
from ._contract import (
    ACTIVATION_CODES,
    HIDDEN_ACTIVATIONS,
    NETWORK_CONSTRAINTS,
    OUTPUT_ACTIVATIONS,
    check_activations,
    check_layer_sizes,
    check_params,
    check_seed,
)
from ._data import check_dtype, check_inputs
from ._parameters import ParameterList, checked_parameter, layer_views

if TYPE_CHECKING:
    from ._typing import FloatArray, IntArray, PathLike

__all__ = ["Network", "HIDDEN_ACTIVATIONS", "OUTPUT_ACTIVATIONS"]

# Rows per forward-pass chunk: bounds the workspace of `forward` on big inputs.
_FORWARD_CHUNK = 256


class Network:
    """A fully connected feed-forward network.

    Layer l computes ``Z^l = A^{l-1} (W^l)^T + b^l`` and ``A^l = f_l(Z^l)``
    on a batch stored as rows.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_0, n_1, ..., n_L]``: inputs, hidden layers, outputs.
    activation : {'sigmoid', 'tanh', 'relu', 'identity'} or list of them
        Hidden-layer activation, or one per hidden layer.
    output : {'sigmoid', 'softmax', 'identity', 'exp'}
        Output activation g; 'exp' (outputs in (0, inf)) is the log link of
        Poisson regression (``loss='poisson'``).
    dtype : {'float64', 'float32'}
        Precision of the parameters and of every computation.
    seed : int or None
        Seed of the weight initialization; None draws fresh entropy.
    init : {'normal', 'glorot_uniform'}
        How the parameters start (see Notes). ``'normal'`` is fastbp's
        scaled Gaussian; ``'glorot_uniform'`` is scikit-learn's MLP
        initialisation. A construction-time choice: it is not stored in
        files (the parameters are).

    Attributes
    ----------
    weights : list of ndarray of shape (n_l, n_{l-1})
        The live weights: row k holds the weights into node k. Writable in
        place (``net.weights[0][...] = 0``, or ``net.weights[0] = W``).
    biases : list of ndarray of shape (n_l,)
        The live biases.

    Notes
    -----
    ``init='normal'`` (the default): weights start as N(0, 1/fan_in)
    (Nielsen's scaled Gaussian) for a layer with a sigmoid, tanh, softmax or
    identity activation and as He's N(0, 2/fan_in) for relu; biases start
    at zero.

    ``init='glorot_uniform'``: weights *and* biases of layer l uniform in
    [-bound, bound] with ``bound = sqrt(factor / (fan_in + fan_out))``,
    factor 2 for a sigmoid network and 6 otherwise: scikit-learn 1.9's
    ``BaseMultilayerPerceptron._init_coef`` (factor 2.0 when
    ``activation == "logistic"``). Its factor follows the one hidden
    activation, for the output layer too; with one activation per hidden
    layer, each hidden layer takes its own and the output layer the last
    hidden layer's. The distribution is scikit-learn's, the generator
    fastbp's (NumPy's default_rng(seed)), drawn layer by layer as
    scikit-learn does: W^l in its (fan_in, fan_out) layout, then b^l.
    """

    _parameter_constraints = NETWORK_CONSTRAINTS

    def __init__(self, layer_sizes: Sequence[int], activation: str | Sequence[str] = "sigmoid",
                 output: str = "sigmoid", dtype: DTypeLike = "float64",
                 seed: int | None = None, *, init: str = "normal") -> None:
        sizes = check_layer_sizes(layer_sizes)
        activation, hidden = check_activations(activation, len(sizes) - 2)
        check_params({"output": output, "init": init}, self._parameter_constraints)
        dtype = check_dtype(dtype)
        seed = check_seed(seed)

        self._setup(sizes, activation, hidden, output, dtype)
        rng = np.random.default_rng(seed)
        if init == "glorot_uniform":
            self._glorot_uniform(rng, activation, hidden)
            return
        for k, weight in enumerate(self._weights):
            fan_in = sizes[k]
            gain = 2.0 if k < len(hidden) and hidden[k] == "relu" else 1.0
            weight[...] = rng.standard_normal(weight.shape) * np.sqrt(gain / fan_in)
        for bias in self._biases:
            bias[...] = 0

    def _glorot_uniform(self, rng: np.random.Generator, activation: str | list[str],
                        hidden: Sequence[str]) -> None:
        """W^l and b^l uniform in +-sqrt(factor / (fan_in + fan_out)): scikit-learn's _init_coef."""
        for k, (weight, bias) in enumerate(zip(self._weights, self._biases)):
            fan_out, fan_in = weight.shape
            # the activation whose kind sets the factor: layer k's own for a
            # hidden layer, the last hidden one's for the output layer (one
            # name for all, as scikit-learn has it, when `activation` is a string)
            if isinstance(activation, str):
                kind = activation
            else:
                kind = hidden[min(k, len(hidden) - 1)]
            factor = 2.0 if kind == "sigmoid" else 6.0
            bound = np.sqrt(factor / (fan_in + fan_out))
            # drawn as scikit-learn lays it out, (fan_in, fan_out), then transposed
            weight[...] = rng.uniform(-bound, bound, (fan_in, fan_out)).T
            bias[...] = rng.uniform(-bound, bound, fan_out)

    def _setup(self, sizes: Sequence[int], activation: str | list[str], hidden: Sequence[str],
               output: str, dtype: DTypeLike) -> None:
        """Allocate the flat parameter vector and its per-layer views."""
        self._guard = UsageGuard()
        self._sizes = np.asarray(sizes, dtype=np.intp)
        self._activation = activation
        self._hidden = list(hidden)
        self._output = output
        self._dtype = np.dtype(dtype)
        codes = [ACTIVATION_CODES[name] for name in self._hidden]
        codes.append(ACTIVATION_CODES[output])
        self._codes = np.asarray(codes, dtype=np.intc)
        self._params: FloatArray = np.zeros(_kernels.parameter_count(self._sizes), dtype=self._dtype)
        weights, biases = layer_views(self._params, sizes)
        self._weights = ParameterList(weights, "weights")
        self._biases = ParameterList(biases, "biases")

    # ------------------------------------------------------------------ state

    @property
    def layer_sizes(self) -> list[int]:
        """Sizes ``[n_0, ..., n_L]`` (a new list)."""
        return [int(size) for size in self._sizes]

    @property
    def activation(self) -> str | list[str]:
        """Hidden activation: a string, or a list with one per hidden layer."""
        return list(self._activation) if isinstance(self._activation, list) else self._activation

    @property
    def output(self) -> str:
        """Output activation."""
        return self._output

    @property
    def dtype(self) -> np.dtype[Any]:
        """Floating-point type of the parameters and computations."""
        return self._dtype

    @property
    def n_layers(self) -> int:
        """Number of weight layers L."""
        return len(self._sizes) - 1

    @property
    def n_parameters(self) -> int:
        """Total count of weights and biases."""
        return int(self._params.size)

    @property
    def weights(self) -> ParameterList:
        return self._weights

    @weights.setter
    def weights(self, values: Sequence[ArrayLike]) -> None:
        self._assign_all(values, self._weights, "weights")

    @property
    def biases(self) -> ParameterList:
        return self._biases

    @biases.setter
    def biases(self, values: Sequence[ArrayLike]) -> None:
        self._assign_all(values, self._biases, "biases")

    def _assign_all(self, values: Sequence[ArrayLike], targets: ParameterList, name: str) -> None:
        if isinstance(values, np.ndarray) or not hasattr(values, "__len__"):
            raise TypeError(f"{name} must be a list of {len(targets)} arrays")
        if len(values) != len(targets):
            raise ValueError(f"{name} must be a list of {len(targets)} arrays, got {len(values)}")
        checked = [
            checked_parameter(value, target.shape, target.dtype, f"{name}[{k}]")
            for k, (value, target) in enumerate(zip(values, targets))
        ]
        for target, value in zip(targets, checked):
            target[...] = value

    def get_parameters(self) -> FloatArray:
        """A copy of all parameters as one flat vector.

        Returns
        -------
        flat : ndarray of shape (n_parameters,)
            ``[W^1, b^1, W^2, b^2, ...]``, each W^l in C order.
        """
        return self._params.copy()

    def set_parameters(self, flat: ArrayLike) -> None:
        """Set all parameters from one flat vector.

        Parameters
        ----------
        flat : array-like of shape (n_parameters,)
            Laid out as `get_parameters` returns it; converted to the
            network's dtype, and refused (ValueError, nothing changed) when
            its shape is wrong or it holds NaN or infinity.
        """
        self._params[...] = checked_parameter(flat, self._params.shape, self._dtype, "flat")

    def copy(self) -> Network:
        """An independent copy of the network.

        Returns
        -------
        network : Network
            Same architecture, dtype and parameters, sharing no memory.
        """
        clone = Network.__new__(Network)
        clone.__setstate__(self.__getstate__())
        return clone

    def __getstate__(self) -> dict[str, Any]:
        return {
            "layer_sizes": self.layer_sizes,
            "activation": self.activation,
            "output": self._output,
            "dtype": self._dtype.name,
            "parameters": self._params.copy(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        sizes = state["layer_sizes"]
        activation, hidden = check_activations(state["activation"], len(sizes) - 2)
        self._setup(sizes, activation, hidden, state["output"], check_dtype(state["dtype"]))
        self._params[...] = state["parameters"]

    def __deepcopy__(self, memo: dict[int, Any]) -> Network:
        return self.copy()

    def __repr__(self) -> str:
        return (
            f"Network({self.layer_sizes}, activation={self.activation!r}, "
            f"output={self._output!r}, dtype={self._dtype.name!r}, "
            f"n_parameters={self.n_parameters})"
        )

    # ---------------------------------------------------------------- compute

    def forward(self, X: ArrayLike) -> FloatArray:
        """Output activations of the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)
            Inputs, any memory layout; converted to the network's dtype.

        Returns
        -------
        A : ndarray of shape (n_samples, n_L)
            The output activations A^L.
        """
        inputs = check_inputs(X, int(self._sizes[0]), self._dtype.type)
        with self._guard.reading("forward"):
            return self._forward(inputs)[0]

    def _forward(self, X: FloatArray, Y: FloatArray | None = None, loss_code: int = 0,
                 sample_weight: FloatArray | None = None) -> tuple[FloatArray, float, float]:
        """Validated arrays in: (A^L, sum of costs, number correct).

        With sample_weight (checked, of the network's dtype), the sums are
        weighted: sum_i w_i C_i and the weight sum of the correct predictions.
        """
        n_samples = X.shape[0]
        capacity = min(n_samples, _FORWARD_CHUNK)
        out = np.empty((n_samples, int(self._sizes[-1])), dtype=self._dtype)
        work = np.empty(_kernels.workspace_size(self._sizes, capacity), dtype=self._dtype)
        if Y is None:
            Y = np.empty((0, int(self._sizes[-1])), dtype=self._dtype)
        cost, n_correct = _kernels.forward(
            self._params, self._sizes, self._codes, loss_code, X, Y, out, work, capacity,
            check_signals=in_main_thread(), sample_weight=sample_weight,
        )
        return out, cost, n_correct

    def predict(self, X: ArrayLike) -> FloatArray | IntArray:
        """Predictions: class labels for a classifier, values for a regressor.

        With a sigmoid or softmax output, the class of each sample: the argmax
        of the outputs (with one sigmoid output, 1 where it is >= 0.5). With an
        identity or exp output the network regresses, and the predictions are
        its output values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)

        Returns
        -------
        predictions : ndarray of shape (n_samples,)
            Class labels (int) for sigmoid and softmax outputs; for an
            identity or exp output, the values: shape (n_samples,) with one output,
            (n_samples, n_L) with several.
        """
        outputs = self.forward(X)
        if self._output in ("identity", "exp"):
            return outputs[:, 0] if outputs.shape[1] == 1 else outputs
        if outputs.shape[1] == 1:
            return (outputs[:, 0] >= 0.5).astype(np.intp)
        return outputs.argmax(axis=1)

    # ------------------------------------------------------------------ files

    def save(self, path: PathLike) -> None:
        """Write the network to a model file (format: fastbp._io).

        The write is atomic: the file appears complete or not at all, and an
        existing file is only replaced once the new one is fully written.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write the .npz file.
        """
        with self._guard.reading("save"):
            _io.save_network(self, path)

    @classmethod
    def load(cls, path: PathLike) -> Network:
        """Read a network written by `save`.

        Refuses pickled content, unknown format versions, and arrays whose
        dtype, shape or values (NaN, infinity) do not fit: ValueError.

        Parameters
        ----------
        path : str or os.PathLike
            A model file written by `save`.

        Returns
        -------
        network : Network
        """
        return _io.load_network(path)
