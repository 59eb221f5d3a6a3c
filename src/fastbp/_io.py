"""Model and checkpoint files: their formats, the atomic write and the safe read.

Both are .npz archives of plain arrays, read with ``allow_pickle=False``, so
that opening a file can never run code. Every entry is checked (dtype,
shape, finiteness, counts) before anything is allocated from it, and every
defect is a ValueError naming the file.

Model file (``Network.save``), format "fastbp.network", version 1::

    format          str   "fastbp.network"
    format_version  int   1
    layer_sizes     int64 (L + 1,)
    activations     str   (L - 1,) hidden activations, one per hidden layer
    activation      str   the `activation` argument: its name when one name was
                          given, "list" when a list was (kept through a round trip);
                          optional: files without it are read as one name when
                          all hidden layers share it, else as a list
    output          str   output activation
    dtype           str   "float32" or "float64"
    W0 .. W{L-1}    dtype (n_l, n_{l-1})
    b0 .. b{L-1}    dtype (n_l,)

Model file with preprocessing (``fastbp.Model.save``), the same format,
version 2: every entry of version 1, and::

    task            str   "classify" or "regress"
    classes         (n_classes,) the original class labels (numbers or strings),
                          classifiers only; output k is classes[k]
    feature_names   str   (n_0,) optional: the input columns, in order
    feature_mean    float64 (n_0,) optional: X is standardised as
    feature_scale   float64 (n_0,)   (X - feature_mean) / feature_scale
    target_mean     float64 () or (n_L,) optional, regressors: the network
    target_scale    float64 () or (n_L,)   predicts (y - target_mean) / target_scale
    history         str   JSON: the training history (per-epoch lists), or {}

Version-1 files load as models too (no preprocessing); `Network.load` reads
both versions, ignoring the version-2 entries.

Checkpoint (``Trainer.save_checkpoint``), format "fastbp.checkpoint", version 1::

    format, format_version   "fastbp.checkpoint", 1
    meta                     JSON: config (the Trainer's arguments), schedule
                             [class name, config, state], epoch, updates,
                             state_owner (the optimizer the state belongs to),
                             rng (bit generator state), history,
                             feature_names_in (the columns fitted on, or null;
                             absent in older checkpoints)
    state1, state2           the optimizer's state arrays in its order
                             (velocity | square_average | first_moment, and
                             second_moment), in the flat parameter layout, or empty
    network_*                the network, as in a model file
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import numpy as np
from numpy.typing import NDArray

from ._contract import OUTPUT_ACTIVATIONS, check_activations, check_layer_sizes
from ._data import check_dtype
from ._optimizers import OPTIMIZER_CLASSES

if TYPE_CHECKING:
    from ._typing import PathLike
    from .model import Model
    from .network import Network
    from .trainer import Trainer

    _TrainerT = TypeVar("_TrainerT", bound=Trainer)

#: a file's entries by name
Arrays = dict[str, NDArray[Any]]

__all__ = [
    "NETWORK_FORMAT",
    "NETWORK_VERSION",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "atomic_savez",
    "read_npz",
    "save_network",
    "load_network",
    "save_model",
    "load_model",
    "save_checkpoint",
    "load_checkpoint",
]

NETWORK_FORMAT = "fastbp.network"
NETWORK_VERSION = 1         # what Network.save writes: the network alone
MODEL_VERSION = 2           # what Model.save writes: the network and its preprocessing
CHECKPOINT_FORMAT = "fastbp.checkpoint"
CHECKPOINT_VERSION = 1


# ------------------------------------------------------------ write and read

def _current_umask() -> int:
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


def atomic_write(path: PathLike, write: Callable[[BinaryIO], object],
                 suffix: str = ".tmp") -> None:
    """`write(stream)` into a temporary file beside `path`, then rename it over `path`.

    The file appears complete or not at all, and an existing file is only
    replaced once the new one is fully written (and synced); on any failure,
    also an interrupt, the temporary file is removed. The file gets the mode
    a plain ``open(path, "w")`` would give it (0666 less the umask), not
    mkstemp's owner-only 0600.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".fastbp-", suffix=suffix, dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
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


def atomic_savez(path: PathLike, arrays: Mapping[str, NDArray[Any]]) -> None:
    """np.savez of `arrays` to `path`, atomically (see `atomic_write`)."""
    # (no entry is called allow_pickle, savez's one keyword)
    atomic_write(path, lambda stream: np.savez(stream, **arrays))  # type: ignore[arg-type]


def read_npz(path: PathLike, file_format: str, version: int | tuple[int, ...]) -> Arrays:
    """All arrays of a fastbp .npz file, checked for format and version.

    `version` is the one version this reader takes, or a tuple of them.

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
        found = str(arrays["format"]) if arrays["format"].dtype.kind == "U" else ""
        hint = {CHECKPOINT_FORMAT: ": it is a training checkpoint, read it with "
                                   "Trainer.load_checkpoint",
                NETWORK_FORMAT: ": it is a model file, read it with Network.load "
                                "(or fastbp.Model.load)"}.get(found, "")
        held = repr(found) if found else repr(arrays["format"])
        raise ValueError(f"{name!r} holds {held}, not a {file_format!r} file{hint}")
    stored = arrays.get("format_version")
    if stored is None or stored.shape != () or not np.issubdtype(stored.dtype, np.integer):
        raise ValueError(f"{name!r} has no valid format_version")
    versions = version if isinstance(version, tuple) else (version,)
    if int(stored) not in versions:
        readable = " and ".join(str(v) for v in versions)
        raise ValueError(
            f"{name!r} has format_version {int(stored)}; this fastbp reads version {readable}"
        )
    return arrays


def _header(file_format: str, version: int) -> Arrays:
    return {"format": np.array(file_format),
            "format_version": np.array(version, dtype=np.int64)}


# ------------------------------------------------------------------ networks

def network_arrays(network: Network, prefix: str = "") -> Arrays:
    """The network as named arrays (no pickles), for model files and checkpoints."""
    arrays = {
        "layer_sizes": network._sizes.astype(np.int64),
        "activations": np.array(network._hidden, dtype="U16").reshape(len(network._hidden)),
        "activation": np.array(
            "list" if isinstance(network._activation, list) else network._activation),
        "output": np.array(network._output),
        "dtype": np.array(network._dtype.name),
    }
    for k, (weight, bias) in enumerate(zip(network._weights, network._biases)):
        arrays[f"W{k}"] = weight
        arrays[f"b{k}"] = bias
    return {prefix + key: value for key, value in arrays.items()}


def network_from_arrays(arrays: Mapping[str, NDArray[Any]], source: str,
                        prefix: str = "") -> Network:
    """Rebuild a network from `network_arrays` output, checking every entry.

    Every stored array is checked against the layer sizes before anything
    is allocated, so a file cannot make the loader reserve memory its
    arrays do not hold.
    """
    from .network import Network

    def text(key: str) -> str:
        value = arrays[prefix + key]
        if value.dtype.kind != "U" or value.ndim != 0:
            raise ValueError(f"{key} must be a string")
        return str(value)

    try:
        stored = arrays[prefix + "layer_sizes"]
        if stored.ndim != 1 or not np.issubdtype(stored.dtype, np.integer):
            raise ValueError("layer_sizes must be a 1-D integer array")
        sizes = check_layer_sizes([int(size) for size in stored])
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
        activation: str | list[str]
        if form == "list":
            activation = hidden
        elif any(name != form for name in hidden):
            raise ValueError(f"activation {form!r} disagrees with activations {hidden}")
        else:
            activation = form
        activation, hidden = check_activations(activation, n_hidden)
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
        net = Network.__new__(Network)
        net._setup(sizes, activation, hidden, output, dtype)
    except KeyError as exc:
        raise ValueError(f"{source!r} is not a fastbp network file: missing {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{source!r} is not a valid fastbp network file: {exc}") from None
    targets = [array for pair in zip(net._weights, net._biases) for array in pair]
    for target, value in zip(targets, values):
        target[...] = value
    return net


def save_network(network: Network, path: PathLike) -> None:
    """Write `network` to `path` as a model file (atomic)."""
    arrays = _header(NETWORK_FORMAT, NETWORK_VERSION)
    arrays.update(network_arrays(network))
    atomic_savez(path, arrays)


def load_network(path: PathLike) -> Network:
    """The Network in the model file at `path` (version 1 or 2)."""
    arrays = read_npz(path, NETWORK_FORMAT, (NETWORK_VERSION, MODEL_VERSION))
    return network_from_arrays(arrays, os.fspath(path))


# ------------------------------------------------------------------ models

_MODEL_TEXT = ("task",)
_MODEL_VECTORS = ("feature_mean", "feature_scale")
_MODEL_SCALARS = ("target_mean", "target_scale")


def save_model(model: Model, path: PathLike) -> None:
    """Write `model` (network, task, classes, feature names, scaling, history) to `path`."""
    arrays = _header(NETWORK_FORMAT, MODEL_VERSION)
    arrays.update(network_arrays(model.network))
    arrays["task"] = np.array(model.task)
    if model.classes is not None:
        arrays["classes"] = np.asarray(model.classes)
    if model.feature_names is not None:
        arrays["feature_names"] = np.asarray(model.feature_names, dtype=str)
    for key in _MODEL_VECTORS + _MODEL_SCALARS:
        value = getattr(model, key)
        if value is not None:
            arrays[key] = np.asarray(value, dtype=np.float64)
    arrays["history"] = np.array(json.dumps(model.history or {}))
    atomic_savez(path, arrays)


def load_model(path: PathLike) -> dict[str, Any]:
    """The fields of the Model in the file at `path`, checked: a dict for Model().

    A version-1 file (a bare `Network.save`) gives the network with the
    task its output implies and no preprocessing.
    """
    source = os.fspath(path)
    arrays = read_npz(path, NETWORK_FORMAT, (NETWORK_VERSION, MODEL_VERSION))
    network = network_from_arrays(arrays, source)
    n_inputs, n_outputs = network.layer_sizes[0], network.layer_sizes[-1]
    fields: dict[str, Any] = {"network": network, "task": None, "classes": None, "feature_names": None,
              "feature_mean": None, "feature_scale": None, "target_mean": None,
              "target_scale": None, "history": {}}
    if int(arrays["format_version"]) == NETWORK_VERSION:
        return fields
    try:
        task = arrays["task"]
        if task.dtype.kind != "U" or task.ndim != 0 or str(task) not in ("classify", "regress"):
            raise ValueError("task must be 'classify' or 'regress'")
        fields["task"] = str(task)
        if "classes" in arrays:
            classes = arrays["classes"]
            if classes.ndim != 1 or classes.dtype.kind not in "iufUb":
                raise ValueError("classes must be a 1-D array of numbers or strings")
            fields["classes"] = classes
        if "feature_names" in arrays:
            names = arrays["feature_names"]
            if names.dtype.kind != "U" or names.shape != (n_inputs,):
                raise ValueError(f"feature_names must hold {n_inputs} strings")
            fields["feature_names"] = [str(name) for name in names]
        for key in _MODEL_VECTORS:
            if key in arrays:
                value = arrays[key]
                if value.dtype != np.float64 or value.shape != (n_inputs,):
                    raise ValueError(f"{key} must be float64 of shape ({n_inputs},)")
                if not np.isfinite(value).all() or (key == "feature_scale"
                                                    and not np.all(value > 0)):
                    raise ValueError(f"{key} holds values that cannot scale features")
                fields[key] = value
        for key in _MODEL_SCALARS:
            if key in arrays:
                value = arrays[key]
                if value.dtype != np.float64 or value.shape not in ((), (n_outputs,)):
                    raise ValueError(f"{key} must be float64, one value or one per output")
                if not np.isfinite(value).all() or (key == "target_scale"
                                                    and not np.all(value > 0)):
                    raise ValueError(f"{key} holds values that cannot scale targets")
                fields[key] = value
        history = json.loads(str(arrays["history"]))
        if not isinstance(history, dict):
            raise ValueError("history must be a JSON object")
        fields["history"] = history
    except KeyError as exc:
        raise ValueError(f"{source!r} is not a fastbp model file: missing {exc}") from None
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source!r} is not a valid fastbp model file: {exc}") from None
    return fields


# --------------------------------------------------------------- checkpoints

def _non_negative_int(value: object, name: str) -> int:
    """A checkpoint's non-negative integer count, refused in any other form."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


# Trainer settings added after the checkpoint format was fixed, with their
# defaults: written only when they differ, so that a default trainer's file
# is the same as before (and loads in older fastbp versions); a file without
# them loads with the default.
_LATER_SETTINGS: dict[str, Any] = {"l2_per_sample": False}


def _written_config(config: dict[str, Any]) -> dict[str, Any]:
    """The Trainer config as a checkpoint stores it: later settings only when set."""
    return {name: value for name, value in config.items()
            if name not in _LATER_SETTINGS or value != _LATER_SETTINGS[name]}


def save_checkpoint(trainer: Trainer, path: PathLike) -> None:
    """Write everything `trainer` needs to resume bit for bit to `path` (atomic)."""
    optimizer = trainer._ready_optimizer()
    schedule = trainer.schedule
    meta = {
        "config": _written_config(trainer.get_config()),
        "schedule": [type(schedule).__name__, schedule.get_config(), schedule.get_state()],
        "epoch": trainer.epoch,
        "updates": optimizer.updates,
        "state_owner": optimizer.name,
        "rng": trainer._rng.bit_generator.state,
        "history": trainer.history,
        "feature_names_in": trainer.feature_names_in_,
    }
    state1, state2 = optimizer.slots()
    arrays = _header(CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
    arrays.update({"meta": np.array(json.dumps(meta)), "state1": state1, "state2": state2})
    arrays.update(network_arrays(trainer.network, prefix="network_"))
    atomic_savez(path, arrays)


def load_checkpoint(cls: type[_TrainerT], path: PathLike) -> _TrainerT:
    """A `cls` (Trainer) with its Network, restored from the checkpoint at `path`."""
    from .schedules import schedule_from_config

    source = os.fspath(path)
    arrays = read_npz(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
    network = network_from_arrays(arrays, source, prefix="network_")
    try:
        meta = json.loads(str(arrays["meta"]))
        config = dict(meta["config"])
        name, schedule_config, schedule_state = meta["schedule"]
        config["schedule"] = schedule_from_config(name, schedule_config, schedule_state)
        trainer = cls(network, **config)
        trainer.epoch = _non_negative_int(meta["epoch"], "epoch")
        updates = _non_negative_int(meta["updates"], "updates")
        owner = meta["state_owner"]
        if owner is not None and owner not in OPTIMIZER_CLASSES:
            raise ValueError(f"unknown optimizer {owner!r}")
        slots = []
        for key in ("state1", "state2"):
            value = arrays[key]
            if value.dtype != network.dtype or value.shape not in ((0,), network._params.shape):
                raise ValueError(f"{key} has dtype {value.dtype} and shape {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"{key} contains NaN or infinity")
            slots.append(value)
        trainer._resume_optimizer(owner, updates, slots)
        trainer._rng.bit_generator.state = meta["rng"]
        history = meta["history"]
        if not isinstance(history, dict) or not all(
            isinstance(values, list) for values in history.values()
        ):
            raise ValueError("history must map names to lists")
        trainer.history = {key: [float(v) for v in values] for key, values in history.items()}
        # written since the trainer has kept them; older checkpoints have none
        names = meta.get("feature_names_in")
        if names is not None and (not isinstance(names, list)
                                  or not all(isinstance(name, str) for name in names)
                                  or len(names) != network.layer_sizes[0]):
            raise ValueError("feature_names_in must be a list of one string per input")
        trainer.feature_names_in_ = names
    except KeyError as exc:
        raise ValueError(f"{source!r} is not a fastbp checkpoint: missing {exc}") from None
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source!r} is not a valid fastbp checkpoint: {exc}") from None
    return trainer
