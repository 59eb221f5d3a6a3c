"""Network: layer sizes, parameters, forward pass, and model files."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import zipfile
from contextlib import contextmanager
from numbers import Integral

import numpy as np

from . import _kernels
from ._validation import check_dtype, check_inputs

__all__ = ["Network", "HIDDEN_ACTIVATIONS", "OUTPUT_ACTIVATIONS"]

HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "identity")

# Model file layout (.npz, read with allow_pickle=False):
#   format          str   "fastbp.network"
#   format_version  int   FORMAT_VERSION
#   layer_sizes     int64 (L + 1,)
#   activations     str   (L - 1,) hidden activations, one per hidden layer
#   activation      str   the `activation` argument: its name when one name was
#                         given, "list" when a list was (kept through a round trip);
#                         optional: files without it are read as one name when
#                         all hidden layers share it, else as a list
#   output          str   output activation
#   dtype           str   "float32" or "float64"
#   W0 .. W{L-1}    dtype (n_l, n_{l-1})
#   b0 .. b{L-1}    dtype (n_l,)
FILE_FORMAT = "fastbp.network"
FORMAT_VERSION = 1

# Rows per forward-pass chunk: bounds the workspace of `forward` on big inputs.
_FORWARD_CHUNK = 256


class _UsageGuard:
    """Detects use of one Network from two threads at once, instead of racing.

    Any number of concurrent readers (forward passes) are fine; a writer
    (training) needs the network to itself. The thread that is training may
    still read (a callback's forward pass). A conflict raises RuntimeError at
    once rather than blocking.
    """

    def __init__(self, owner="Network"):
        self._owner = owner
        self._lock = threading.Lock()
        self._readers = 0
        self._writer = None

    def _busy(self, what):
        return RuntimeError(
            f"this {self._owner} is in use by another thread ({what} would race with it); "
            f"fastbp objects are not shared between threads: give each thread its own "
            f"Network and Trainer (Network.copy()), or serialize the calls with a lock"
        )

    @contextmanager
    def reading(self, what):
        with self._lock:
            if self._writer is not None and self._writer != threading.get_ident():
                raise self._busy(what)
            self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers -= 1

    @contextmanager
    def writing(self, what):
        with self._lock:
            if self._writer is not None or self._readers:
                raise self._busy(what)
            self._writer = threading.get_ident()
        try:
            yield
        finally:
            with self._lock:
                self._writer = None


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


class _ParameterList(list):
    """The live per-layer arrays; item assignment copies into the parameters.

    ``net.weights[0] = new`` writes `new` into the network (after checking its
    shape and finiteness) instead of rebinding a list slot the kernels never
    see. The list cannot grow or shrink.
    """

    def __init__(self, arrays, kind):
        super().__init__(arrays)
        self._kind = kind

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            raise TypeError(f"assign {self._kind} one layer at a time")
        target = list.__getitem__(self, index)
        target[...] = _checked_parameter(value, target.shape, target.dtype,
                                         f"{self._kind}[{index}]")

    def _fixed(self, *args, **kwargs):
        raise TypeError(f"the list of {self._kind} has one entry per layer and cannot change length")

    append = extend = insert = pop = remove = clear = _fixed
    __delitem__ = __iadd__ = __imul__ = _fixed
    sort = reverse = _fixed


def _checked_parameter(value, shape, dtype, name):
    """`value` as an array of `shape` and `dtype`, finite once in that dtype."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers: {exc}") from exc
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    with np.errstate(over="ignore"):
        # 1e300 is finite as float64 and infinite as float32: check what is stored
        array = array.astype(dtype, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} contains NaN or infinity (or values beyond the range of {np.dtype(dtype)})"
        )
    return array


def _check_layer_sizes(layer_sizes):
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


def _check_activations(activation, n_hidden):
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


def _check_seed(seed, name="seed"):
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, Integral):
        raise TypeError(f"{name} must be None or a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be None or a non-negative integer, got {seed!r}")
    return int(seed)


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
    output : {'sigmoid', 'softmax', 'identity'}
        Output activation g.
    dtype : {'float64', 'float32'}
        Precision of the parameters and of every computation.
    seed : int or None
        Seed of the weight initialization; None draws fresh entropy.

    Attributes
    ----------
    weights : list of ndarray of shape (n_l, n_{l-1})
        The live weights: row k holds the weights into node k. Writable in
        place (``net.weights[0][...] = 0``, or ``net.weights[0] = W``).
    biases : list of ndarray of shape (n_l,)
        The live biases.

    Notes
    -----
    Weights start as N(0, 1/fan_in) (Nielsen's scaled Gaussian) for a layer
    with a sigmoid, tanh, softmax or identity activation and as He's
    N(0, 2/fan_in) for relu; biases start at zero.
    """

    def __init__(self, layer_sizes, activation="sigmoid", output="sigmoid",
                 dtype="float64", seed=None):
        sizes = _check_layer_sizes(layer_sizes)
        activation, hidden = _check_activations(activation, len(sizes) - 2)
        if not isinstance(output, str) or output not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output must be one of {OUTPUT_ACTIVATIONS}, got {output!r}")
        dtype = check_dtype(dtype)
        seed = _check_seed(seed)

        self._setup(sizes, activation, hidden, output, dtype)
        rng = np.random.default_rng(seed)
        for k, weight in enumerate(self._weights):
            fan_in = sizes[k]
            gain = 2.0 if k < len(hidden) and hidden[k] == "relu" else 1.0
            weight[...] = rng.standard_normal(weight.shape) * np.sqrt(gain / fan_in)
        for bias in self._biases:
            bias[...] = 0

    def _setup(self, sizes, activation, hidden, output, dtype):
        """Allocate the flat parameter vector and its per-layer views."""
        self._guard = _UsageGuard()
        self._sizes = np.asarray(sizes, dtype=np.intp)
        self._activation = activation
        self._hidden = list(hidden)
        self._output = output
        self._dtype = np.dtype(dtype)
        codes = [_kernels.ACTIVATION_CODES[name] for name in self._hidden]
        codes.append(_kernels.ACTIVATION_CODES[output])
        self._codes = np.asarray(codes, dtype=np.intc)
        self._params = np.zeros(_kernels.parameter_count(self._sizes), dtype=self._dtype)
        weights, biases, offset = [], [], 0
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            weights.append(self._params[offset:offset + fan_out * fan_in].reshape(fan_out, fan_in))
            offset += fan_out * fan_in
            biases.append(self._params[offset:offset + fan_out])
            offset += fan_out
        self._weights = _ParameterList(weights, "weights")
        self._biases = _ParameterList(biases, "biases")

    # ------------------------------------------------------------------ state

    @property
    def layer_sizes(self):
        """Sizes ``[n_0, ..., n_L]`` (a new list)."""
        return [int(size) for size in self._sizes]

    @property
    def activation(self):
        """Hidden activation: a string, or a list with one per hidden layer."""
        return list(self._activation) if isinstance(self._activation, list) else self._activation

    @property
    def output(self):
        """Output activation."""
        return self._output

    @property
    def dtype(self):
        """Floating-point type of the parameters and computations."""
        return self._dtype

    @property
    def n_layers(self):
        """Number of weight layers L."""
        return len(self._sizes) - 1

    @property
    def n_parameters(self):
        """Total count of weights and biases."""
        return int(self._params.size)

    @property
    def weights(self):
        return self._weights

    @weights.setter
    def weights(self, values):
        self._assign_all(values, self._weights, "weights")

    @property
    def biases(self):
        return self._biases

    @biases.setter
    def biases(self, values):
        self._assign_all(values, self._biases, "biases")

    def _assign_all(self, values, targets, name):
        if isinstance(values, np.ndarray) or not hasattr(values, "__len__"):
            raise TypeError(f"{name} must be a list of {len(targets)} arrays")
        if len(values) != len(targets):
            raise ValueError(f"{name} must be a list of {len(targets)} arrays, got {len(values)}")
        checked = [
            _checked_parameter(value, target.shape, target.dtype, f"{name}[{k}]")
            for k, (value, target) in enumerate(zip(values, targets))
        ]
        for target, value in zip(targets, checked):
            target[...] = value

    def get_parameters(self):
        """A copy of all parameters as one flat vector [W^1, b^1, W^2, b^2, ...]."""
        return self._params.copy()

    def set_parameters(self, flat):
        """Set all parameters from a flat vector laid out as `get_parameters` returns."""
        flat = _checked_parameter(flat, self._params.shape, self._dtype, "flat")
        self._params[...] = flat

    def copy(self):
        """An independent copy of the network."""
        clone = Network.__new__(Network)
        clone.__setstate__(self.__getstate__())
        return clone

    def __getstate__(self):
        return {
            "layer_sizes": self.layer_sizes,
            "activation": self.activation,
            "output": self._output,
            "dtype": self._dtype.name,
            "parameters": self._params.copy(),
        }

    def __setstate__(self, state):
        sizes = state["layer_sizes"]
        activation, hidden = _check_activations(state["activation"], len(sizes) - 2)
        self._setup(sizes, activation, hidden, state["output"], check_dtype(state["dtype"]))
        self._params[...] = state["parameters"]

    def __deepcopy__(self, memo):
        return self.copy()

    def __repr__(self):
        return (
            f"Network({self.layer_sizes}, activation={self.activation!r}, "
            f"output={self._output!r}, dtype={self._dtype.name!r}, "
            f"n_parameters={self.n_parameters})"
        )

    # ---------------------------------------------------------------- compute

    def forward(self, X):
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
        X = check_inputs(X, int(self._sizes[0]), self._dtype.type)
        with self._guard.reading("forward"):
            return self._forward(X)[0]

    def _forward(self, X, Y=None, loss_code=0):
        """Validated arrays in: (A^L, sum of costs, number correct)."""
        n_samples = X.shape[0]
        capacity = min(n_samples, _FORWARD_CHUNK)
        out = np.empty((n_samples, int(self._sizes[-1])), dtype=self._dtype)
        work = np.empty(_kernels.workspace_size(self._sizes, capacity), dtype=self._dtype)
        if Y is None:
            Y = np.empty((0, int(self._sizes[-1])), dtype=self._dtype)
        cost, n_correct = _kernels.forward(
            self._params, self._sizes, self._codes, loss_code, X, Y, out, work, capacity,
            check_signals=_in_main_thread(),
        )
        return out, cost, n_correct

    def predict(self, X):
        """Predicted class of each sample: argmax of the outputs (0/1 for one output).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_0)

        Returns
        -------
        labels : ndarray of shape (n_samples,) of int
        """
        outputs = self.forward(X)
        if outputs.shape[1] == 1:
            return (outputs[:, 0] >= 0.5).astype(np.intp)
        return outputs.argmax(axis=1)

    # ------------------------------------------------------------------ files

    def save(self, path):
        """Write the network to `path` as an .npz file (layout: see FILE_FORMAT).

        The write is atomic: the file appears complete or not at all, and an
        existing file is only replaced once the new one is fully written.
        """
        arrays = {
            "format": np.array(FILE_FORMAT),
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        }
        with self._guard.reading("save"):
            arrays.update(self._to_arrays())
            _atomic_savez(path, arrays)

    @classmethod
    def load(cls, path):
        """Read a network written by `save`.

        Refuses pickled content, unknown format versions, and arrays whose
        dtype, shape or values (NaN, infinity) do not fit: ValueError.
        """
        arrays = _read_npz(path, FILE_FORMAT, FORMAT_VERSION)
        return cls._from_arrays(arrays, os.fspath(path))

    def _to_arrays(self, prefix=""):
        """The network as named arrays (no pickles), for `save` and checkpoints."""
        arrays = {
            "layer_sizes": self._sizes.astype(np.int64),
            "activations": np.array(self._hidden, dtype="U16").reshape(len(self._hidden)),
            "activation": np.array(
                "list" if isinstance(self._activation, list) else self._activation),
            "output": np.array(self._output),
            "dtype": np.array(self._dtype.name),
        }
        for k, (weight, bias) in enumerate(zip(self._weights, self._biases)):
            arrays[f"W{k}"] = weight
            arrays[f"b{k}"] = bias
        return {prefix + key: value for key, value in arrays.items()}

    @classmethod
    def _from_arrays(cls, arrays, source, prefix=""):
        """Rebuild a network from `_to_arrays` output, checking every entry.

        Every stored array is checked against the layer sizes before anything
        is allocated, so a file cannot make the loader reserve memory its
        arrays do not hold.
        """
        def text(key):
            value = arrays[prefix + key]
            if value.dtype.kind != "U" or value.ndim != 0:
                raise ValueError(f"{key} must be a string")
            return str(value)

        try:
            sizes = arrays[prefix + "layer_sizes"]
            if sizes.ndim != 1 or not np.issubdtype(sizes.dtype, np.integer):
                raise ValueError("layer_sizes must be a 1-D integer array")
            sizes = _check_layer_sizes([int(size) for size in sizes])
            n_hidden = len(sizes) - 2
            names = arrays[prefix + "activations"]
            if names.dtype.kind != "U" or names.ndim != 1:
                raise ValueError("activations must be a 1-D array of strings")
            hidden = [str(name) for name in names]
            if len(hidden) != n_hidden:
                raise ValueError(
                    f"activations holds {len(hidden)} names for {n_hidden} hidden layers"
                )
            # files written before the `activation` entry existed (same
            # format version) say only `activations`: read them as that
            # version's loader did, one name when all hidden layers share it
            if prefix + "activation" not in arrays:
                form = "list" if len(set(hidden)) > 1 else (hidden[0] if hidden else "sigmoid")
            else:
                form = text("activation")
            if form == "list":
                activation = hidden
            elif any(name != form for name in hidden):
                raise ValueError(f"activation {form!r} disagrees with activations {hidden}")
            else:
                activation = form
            activation, hidden = _check_activations(activation, n_hidden)
            output = text("output")
            if output not in OUTPUT_ACTIVATIONS:
                raise ValueError(f"unknown output activation {output!r}")
            dtype = check_dtype(text("dtype"))
            values = []
            for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                for key, shape in ((f"W{k}", (fan_out, fan_in)), (f"b{k}", (fan_out,))):
                    value = arrays[prefix + key]
                    if value.dtype != dtype:
                        raise ValueError(f"{key} has dtype {value.dtype}, expected {dtype}")
                    if value.shape != shape:
                        raise ValueError(
                            f"{key} has shape {value.shape}, but layer_sizes {sizes} "
                            f"needs {shape}"
                        )
                    if not np.isfinite(value).all():
                        raise ValueError(f"{key} contains NaN or infinity")
                    values.append(value)
            net = cls.__new__(cls)
            net._setup(sizes, activation, hidden, output, dtype)
        except KeyError as exc:
            raise ValueError(f"{source!r} is not a fastbp network file: missing {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{source!r} is not a valid fastbp network file: {exc}") from None
        targets = [array for pair in zip(net._weights, net._biases) for array in pair]
        for target, value in zip(targets, values):
            target[...] = value
        return net


def _current_umask():
    """The process umask.

    Linux tells it in /proc; elsewhere it is read by setting and restoring
    it, the only portable way (POSIX has no getter).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_savez(path, arrays):
    """np.savez to a temporary file beside `path`, then rename over it.

    The file gets the mode a plain ``open(path, "w")`` would give it
    (0666 less the umask), not mkstemp's owner-only 0600.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".fastbp-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
            stream.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(stream.fileno(), 0o666 & ~_current_umask())
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _read_npz(path, file_format, version):
    """All arrays of a fastbp .npz file, checked for format and version.

    Anything unreadable (truncated, corrupt, foreign, pickle-bearing) is a
    ValueError naming the file; the file is closed whatever happens.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as stream:
            loaded = np.load(stream, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with loaded as archive:
                arrays = {key: archive[key] for key in archive.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError,
            NotImplementedError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise ValueError(f"{name!r} is not a readable fastbp file: {exc}") from None
    if "format" not in arrays:
        raise ValueError(f"{name!r} is not a fastbp file (no 'format' entry)")
    if arrays["format"].dtype.kind != "U" or str(arrays["format"]) != file_format:
        raise ValueError(f"{name!r} holds {arrays['format']!r}, not a {file_format!r} file")
    found = arrays.get("format_version")
    if found is None or found.shape != () or not np.issubdtype(found.dtype, np.integer):
        raise ValueError(f"{name!r} has no valid format_version")
    if int(found) != version:
        raise ValueError(
            f"{name!r} has format_version {int(found)}; this fastbp reads version {version}"
        )
    return arrays
