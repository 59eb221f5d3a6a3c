"""Files: saves are atomic, loads refuse anything that is not a sound fastbp file.

Faults injected into saving: the writer failing part-way (disk full), the
fsync or the final rename failing, a KeyboardInterrupt mid-write, the
target being a directory, and a process killed with SIGKILL while it saves
a large network over and over. Each time the previous file must survive
complete and loadable; where the process lives on, no temporary file may
be left behind.

Files fed to the loaders: truncations at many lengths, single-byte
corruptions, garbage, empty files, other .npy/.npz content, pickles (raw
and inside an object array) whose unpickling would create a marker file,
and valid archives with one entry made wrong (format, version, dtype,
shape, sizes, names, NaN, huge sizes, checkpoint metadata). Every one must
give a ValueError naming the file, for Network.load and
Trainer.load_checkpoint alike; no pickle is ever run.
"""

import gc
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

from fastbp import Network, Trainer

# A refused load may leave numpy's file object to the garbage collector
# (test_a_refused_load_closes_its_file is about that); elsewhere in this
# module the ResourceWarning it gives would only blur what is tested.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def _collect_within_this_module():
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def make_network():
    net = Network([6, 5, 4, 3], activation=["tanh", "relu"], output="softmax", seed=0)
    for bias in net.biases:
        bias[...] = np.linspace(-0.5, 0.5, bias.size)
    return net


def make_trainer():
    net = make_network()
    trainer = Trainer(net, loss="cross_entropy", learning_rate=0.05, batch_size=7,
                      optimizer="adam", seed=3, schedule="step")
    rng = np.random.default_rng(0)
    trainer.fit(rng.random((50, 6)), rng.integers(0, 3, 50), epochs=2)
    return trainer


def same_network(a, b):
    return (a.layer_sizes == b.layer_sizes and a.activation == b.activation
            and a.output == b.output and a.dtype == b.dtype
            and np.array_equal(a.get_parameters(), b.get_parameters()))


def leftovers(directory, keep):
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


# ------------------------------------------------------------------ atomic saves


class DiskFull(OSError):
    pass


def _savez_that_fails_midway(stream, **arrays):
    # a real partial archive: a local header and a few bytes, then the error
    stream.write(b"PK\x03\x04" + b"\x00" * 200)
    raise DiskFull(28, "No space left on device")


def _savez_interrupted(stream, **arrays):
    stream.write(b"PK\x03\x04" + b"\x01" * 100)
    raise KeyboardInterrupt


def _fail(*args, **kwargs):
    raise OSError(5, "Input/output error")


FAULTS = {
    "savez fails midway (disk full)": ("savez", _savez_that_fails_midway, OSError),
    "KeyboardInterrupt during the write": ("savez", _savez_interrupted, KeyboardInterrupt),
    "fsync fails": ("fsync", _fail, OSError),
    "rename fails": ("replace", _fail, OSError),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("kind", ["network", "checkpoint"])
def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary(
        tmp_path, monkeypatch, fault, kind):
    target = tmp_path / f"{kind}.npz"
    trainer = make_trainer()
    if kind == "network":
        trainer.network.save(target)
    else:
        trainer.save_checkpoint(target)
    original = target.read_bytes()

    # change the model so that a successful save would change the file
    trainer.network.weights[0][...] += 1.0
    trainer.fit(np.random.default_rng(1).random((20, 6)), np.zeros(20, dtype=int), epochs=1)
    where, replacement, error = FAULTS[fault]
    monkeypatch.setattr(np if where == "savez" else os, where, replacement)
    with pytest.raises(error):
        if kind == "network":
            trainer.network.save(target)
        else:
            trainer.save_checkpoint(target)
    monkeypatch.undo()

    assert target.read_bytes() == original
    assert leftovers(tmp_path, {target.name}) == []
    if kind == "network":
        assert same_network(Network.load(target), make_trainer().network)
    else:
        restored = Trainer.load_checkpoint(target)
        assert restored.epoch == 2


def test_a_save_onto_a_directory_fails_cleanly(tmp_path):
    (tmp_path / "model.npz").mkdir()
    with pytest.raises(OSError):
        make_network().save(tmp_path / "model.npz")
    assert leftovers(tmp_path, {"model.npz"}) == []
    assert (tmp_path / "model.npz").is_dir()


def test_a_save_into_a_missing_directory_raises_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        make_network().save(tmp_path / "missing" / "model.npz")
    assert list(tmp_path.iterdir()) == []


def test_saved_files_get_the_usual_permissions(tmp_path):
    # The temporary file behind the atomic rename must not leave the model
    # readable by its owner only (mkstemp's 0600), unlike any other file the
    # program writes: others that could read a plain np.savez file can read
    # this one.
    mask = os.umask(0o022)
    try:
        make_network().save(tmp_path / "model.npz")
        make_trainer().save_checkpoint(tmp_path / "checkpoint.npz")
    finally:
        os.umask(mask)
    for name in ("model.npz", "checkpoint.npz"):
        mode = (tmp_path / name).stat().st_mode & 0o777
        assert mode == 0o644, f"{name} has mode {mode:o}"


SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from fastbp import Network

    path = sys.argv[1]
    net = Network([1000, 1000, 1000], seed=0)      # 2 million parameters, 16 MB
    version = 0
    while True:
        net.set_parameters(np.full(net.n_parameters, float(version)))
        print("BEGIN", version, flush=True)
        net.save(path)
        print("SAVED", version, flush=True)
        version += 1
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_while_saving_never_destroys_the_previous_file(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    target = tmp_path / "model.npz"
    rng = np.random.default_rng(0)
    killed_mid_save = 0
    for trial in range(4):
        child = subprocess.Popen([sys.executable, str(script), str(target)], cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            last_saved = None
            # let a few saves complete, then kill just after a save begins
            wanted = 1 + trial
            for line in child.stdout:
                word, version = line.split()
                if word == "SAVED":
                    last_saved = int(version)
                elif word == "BEGIN" and int(version) == wanted:
                    break
            else:
                raise AssertionError(child.stderr.read())
            time.sleep(rng.uniform(0, 0.02))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        temporaries = leftovers(tmp_path, {target.name, script.name})
        killed_mid_save += bool(temporaries)
        loaded = Network.load(target)
        values = np.unique(loaded.get_parameters())
        # one complete version, not older than the last one reported saved
        # (later ones may have completed before the kill landed)
        assert values.size == 1 and int(values[0]) >= last_saved, values[:5]
        assert loaded.layer_sizes == [1000, 1000, 1000]
        for name in temporaries:
            (tmp_path / name).unlink()
        target.unlink()
    # The kills must have hit saves in progress, or this proved nothing.
    assert killed_mid_save >= 1


# ------------------------------------------------------------------ loading


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("valid")
    trainer = make_trainer()
    trainer.network.save(directory / "network.npz")
    trainer.save_checkpoint(directory / "checkpoint.npz")
    return {"network": directory / "network.npz", "checkpoint": directory / "checkpoint.npz"}


LOADERS = {"network": Network.load, "checkpoint": Trainer.load_checkpoint}


def assert_refused(kind, path, match=None):
    """The loader raises a ValueError that names the file (and matches `match`)."""
    with pytest.raises(ValueError) as info:
        LOADERS[kind](path)
    message = str(info.value)
    assert os.fspath(path) in message, message
    # drop the traceback now (it holds this frame): whatever the failed load
    # left open is then closed here, not in some later test
    del info
    if match is not None:
        assert any(word in message for word in match.split("|")), message
    return message


def test_the_valid_files_load(valid_files):
    assert same_network(Network.load(valid_files["network"]), make_trainer().network)
    restored = Trainer.load_checkpoint(valid_files["checkpoint"])
    assert same_network(restored.network, make_trainer().network)


@pytest.mark.parametrize("kind", list(LOADERS))
def test_truncated_files_are_refused(valid_files, tmp_path, kind):
    data = valid_files[kind].read_bytes()
    lengths = sorted({0, 1, 2, 4, 10, 30, 64, 100, 512, len(data) // 4, len(data) // 2,
                      3 * len(data) // 4, len(data) - 100, len(data) - 22, len(data) - 10,
                      len(data) - 1})
    for length in lengths:
        path = tmp_path / f"cut-{length}.npz"
        path.write_bytes(data[:length])
        assert_refused(kind, path)


@pytest.mark.parametrize("kind", list(LOADERS))
def test_single_byte_corruptions_are_refused_or_harmless(valid_files, tmp_path, kind):
    # zip checks CRCs and names; whatever a flipped byte breaks, the result
    # is a ValueError (not NotImplementedError, OSError, ...) or, where the
    # byte does not matter, the very same model.
    data = valid_files[kind].read_bytes()
    reference = LOADERS[kind](valid_files[kind])
    reference_net = reference if kind == "network" else reference.network
    # every byte of the central directory and the last entries, a sample elsewhere
    positions = sorted(set(range(0, len(data), 13)) | set(range(len(data) - 900, len(data))))
    path = tmp_path / "flipped.npz"
    for position in positions:
        corrupt = bytearray(data)
        corrupt[position] ^= 0x55
        path.write_bytes(bytes(corrupt))
        try:
            loaded = LOADERS[kind](path)
        except ValueError as exc:
            assert os.fspath(path) in str(exc)
            continue
        except Exception as exc:  # pragma: no cover - the failure being tested
            raise AssertionError(
                f"byte {position} flipped: {type(exc).__name__}: {exc}") from exc
        loaded_net = loaded if kind == "network" else loaded.network
        assert same_network(loaded_net, reference_net), f"byte {position} flipped"


@pytest.mark.parametrize("kind", list(LOADERS))
def test_garbage_empty_and_foreign_files_are_refused(tmp_path, kind):
    rng = np.random.default_rng(0)
    samples = {
        "empty": b"",
        "garbage": rng.bytes(5000),
        "text": b"W0 = [[1, 2], [3, 4]]\n" * 20,
        "zip magic then garbage": b"PK\x03\x04" + rng.bytes(500),
    }
    for name, content in samples.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(content)
        assert_refused(kind, path)
    # a lone .npy array, and an .npz that is not a fastbp file
    np.save(tmp_path / "array.npy", np.arange(10.0))
    assert_refused(kind, tmp_path / "array.npy", "npz")
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    assert_refused(kind, tmp_path / "other.npz", "format")
    # the other kind of fastbp file
    other_kind = {"network": "checkpoint", "checkpoint": "network"}[kind]
    path = tmp_path / "other-kind.npz"
    if other_kind == "network":
        make_network().save(path)
    else:
        make_trainer().save_checkpoint(path)
    assert_refused(kind, path, "fastbp.network|fastbp.checkpoint")


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_refused_load_closes_its_file(valid_files, tmp_path, kind):
    # A program that tries many files (or keeps the exceptions) must not
    # run out of file descriptors: nothing is left for the garbage
    # collector to close.
    path = tmp_path / "cut.npz"
    path.write_bytes(valid_files[kind].read_bytes()[:-1])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04" + bytes(300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()        # what earlier tests left
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for bad in (path, garbage):
            try:
                LOADERS[kind](bad)
            except ValueError:
                pass
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []


def test_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "nowhere.npz")
    with pytest.raises(FileNotFoundError):
        Trainer.load_checkpoint(tmp_path / "nowhere.npz")


class Hostile:
    """Unpickling this creates the marker file: proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = os.fspath(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", list(LOADERS))
def test_pickles_are_never_loaded(valid_files, tmp_path, kind):
    marker = tmp_path / "pickle-ran"
    payload = np.array([Hostile(marker)], dtype=object)

    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Hostile(marker)))
    np.save(tmp_path / "object.npy", payload, allow_pickle=True)
    paths = [raw, tmp_path / "object.npy"]

    # valid archives with one entry replaced by a pickle-bearing object array
    with np.load(valid_files[kind]) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key in ("format", "format_version", "W0" if kind == "network" else "network_W0",
                "meta" if kind == "checkpoint" else "dtype"):
        tampered = dict(arrays, **{key: payload})
        path = tmp_path / f"object-{key}.npz"
        np.savez(path, **tampered)
        paths.append(path)
    # and one with an extra pickle-bearing entry
    path = tmp_path / "object-extra.npz"
    np.savez(path, **arrays, extra=payload)
    paths.append(path)

    for path in paths:
        assert_refused(kind, path)
        assert not marker.exists(), f"loading {path.name} ran a pickle"
    # the payload is real: unpickling it does create the marker
    pickle.loads(raw.read_bytes()).close()
    assert marker.exists()


def _tampered(source, tmp_path, name, prefix="", drop=(), **changes):
    """A copy of the archive `source` with entries dropped or replaced.

    Network entries take `prefix` (a checkpoint's "network_"); the format
    entries and the checkpoint's own entries do not.
    """
    def entry(key):
        own = key.startswith("format") or key in ("meta", "state1", "state2")
        return key if own else prefix + key

    with np.load(source) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key in drop:
        del arrays[entry(key)]
    for key, value in changes.items():
        arrays[entry(key)] = value
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return path


NETWORK_DEFECTS = {
    # name: (changes, entries to drop, words of which the message has one)
    "version 2": (dict(format_version=np.array(2)), (), "format_version"),
    "version 0": (dict(format_version=np.array(0)), (), "format_version"),
    "version -1": (dict(format_version=np.array(-1)), (), "format_version"),
    "version as text": (dict(format_version=np.array("1")), (), "format_version"),
    "version as float": (dict(format_version=np.array(1.0)), (), "format_version"),
    "version as array": (dict(format_version=np.array([1])), (), "format_version"),
    "no version": ({}, ("format_version",), "format_version"),
    "foreign format": (dict(format=np.array("something.else")), (), "format|something"),
    "format as number": (dict(format=np.array(3)), (), "fastbp.network|fastbp.checkpoint"),
    "no format": ({}, ("format",), "format"),
    "W0 float32": (dict(W0=np.zeros((5, 6), np.float32)), (), "W0"),
    "W0 int": (dict(W0=np.zeros((5, 6), np.int64)), (), "W0"),
    "W0 complex": (dict(W0=np.zeros((5, 6), np.complex128)), (), "W0"),
    "W0 transposed": (dict(W0=np.zeros((6, 5))), (), "W0"),
    "W0 flat": (dict(W0=np.zeros(30)), (), "W0"),
    "b0 2-D": (dict(b0=np.zeros((5, 1))), (), "b0"),
    "b2 too long": (dict(b2=np.zeros(4)), (), "b2"),
    "W0 NaN": (dict(W0=np.full((5, 6), np.nan)), (), "NaN"),
    "b1 infinite": (dict(b1=np.array([0, 0, 0, np.inf])), (), "NaN|inf"),
    "missing W2": ({}, ("W2",), "W2"),
    "missing b1": ({}, ("b1",), "b1"),
    "sizes float": (dict(layer_sizes=np.array([6.0, 5.0, 4.0, 3.0])), (), "layer_sizes"),
    "sizes 2-D": (dict(layer_sizes=np.array([[6, 5], [4, 3]])), (), "layer_sizes"),
    "sizes with 0": (dict(layer_sizes=np.array([6, 0, 4, 3])), (), "layer_sizes"),
    "sizes negative": (dict(layer_sizes=np.array([6, -5, 4, 3])), (), "layer_sizes"),
    "sizes too few": (dict(layer_sizes=np.array([6])), (), "layer_sizes"),
    "sizes disagree with W": (dict(layer_sizes=np.array([6, 5, 4, 2])), (), "W2|b2"),
    "activation unknown": (dict(activations=np.array(["tanh", "swish"])), (), "swish"),
    # one name for two hidden layers, or none, must not be read as "all tanh"
    # or "all sigmoid": the file says something else than the saved model
    "activation count": (dict(activations=np.array(["tanh"])), (), "activation"),
    "activations empty": (dict(activations=np.array([], dtype="U16")), (), "activation"),
    "activations as ints": (dict(activations=np.array([1, 2])), (), "activation"),
    "output unknown": (dict(output=np.array("gelu")), (), "gelu"),
    "dtype float16": (dict(dtype=np.array("float16")), (), "float16|dtype"),
    "dtype object": (dict(dtype=np.array("object")), (), "object|dtype"),
    "dtype unknown": (dict(dtype=np.array("float128x")), (), "dtype"),
    # A hostile file must not make the loader allocate whatever it asks for:
    # terabytes of parameters for sizes that the stored arrays do not match.
    "sizes huge": (dict(layer_sizes=np.array([10**6, 10**6, 4, 3])), (), "W0|layer_sizes"),
    "sizes overflow": (dict(layer_sizes=np.array([2**40, 2**40, 4, 3])), (), "W0|layer_sizes"),
}


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("defect", list(NETWORK_DEFECTS))
def test_wrong_entries_are_refused(valid_files, tmp_path, kind, defect):
    changes, drop, words = NETWORK_DEFECTS[defect]
    prefix = "network_" if kind == "checkpoint" else ""
    path = _tampered(valid_files[kind], tmp_path, "bad", prefix=prefix, drop=drop, **changes)
    assert_refused(kind, path, words)


def _meta(valid_files):
    with np.load(valid_files["checkpoint"]) as archive:
        return json.loads(str(archive["meta"]))


def _with_meta(meta, **changes):
    meta = json.loads(json.dumps(meta))
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = meta
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return np.array(json.dumps(meta))


CHECKPOINT_DEFECTS = {
    # name: entry -> replacement, from (meta, number of parameters)
    "meta not JSON": lambda meta, n: dict(meta=np.array("{not json")),
    "meta a list": lambda meta, n: dict(meta=np.array("[1, 2, 3]")),
    "meta a number": lambda meta, n: dict(meta=np.array(3.5)),
    "meta without config": lambda meta, n: dict(meta=_with_meta(meta, config=KeyError)),
    "meta without rng": lambda meta, n: dict(meta=_with_meta(meta, rng=KeyError)),
    "config unknown key": lambda meta, n: dict(meta=_with_meta(meta, **{"config.evil": 1})),
    "config bad rate": lambda meta, n: dict(
        meta=_with_meta(meta, **{"config.learning_rate": -1})),
    "config bad optimizer": lambda meta, n: dict(
        meta=_with_meta(meta, **{"config.optimizer": "os.system"})),
    "schedule unknown": lambda meta, n: dict(meta=_with_meta(meta, schedule=["Evil", {}, {}])),
    "schedule malformed": lambda meta, n: dict(meta=_with_meta(meta, schedule="step")),
    "rng garbage": lambda meta, n: dict(meta=_with_meta(meta, rng={"bit_generator": "Nope"})),
    "rng state wrong": lambda meta, n: dict(meta=_with_meta(meta, **{"rng.state": "x"})),
    "history not a dict": lambda meta, n: dict(meta=_with_meta(meta, history=[1, 2])),
    "history values": lambda meta, n: dict(meta=_with_meta(meta, history={"loss": ["a"]})),
    "epoch text": lambda meta, n: dict(meta=_with_meta(meta, epoch="two")),
    # counts that no training produces; a negative update count makes
    # Adam's bias correction 1 / (1 - beta^0) on the next step
    "epoch negative": lambda meta, n: dict(meta=_with_meta(meta, epoch=-1)),
    "updates negative": lambda meta, n: dict(meta=_with_meta(meta, updates=-1)),
    "updates fractional": lambda meta, n: dict(meta=_with_meta(meta, updates=1.5)),
    "state owner unknown": lambda meta, n: dict(meta=_with_meta(meta, state_owner="bogus")),
    "state1 wrong shape": lambda meta, n: dict(state1=np.zeros(n + 1)),
    "state1 wrong dtype": lambda meta, n: dict(state1=np.zeros(n, np.float32)),
    "state2 NaN": lambda meta, n: dict(state2=np.full(n, np.nan)),
    "state1 2-D": lambda meta, n: dict(state1=np.zeros((1, n))),
}


@pytest.mark.parametrize("defect", list(CHECKPOINT_DEFECTS))
def test_wrong_checkpoint_entries_are_refused(valid_files, tmp_path, defect):
    changes = CHECKPOINT_DEFECTS[defect](_meta(valid_files), make_network().n_parameters)
    path = _tampered(valid_files["checkpoint"], tmp_path, "bad", **changes)
    assert_refused("checkpoint", path)
