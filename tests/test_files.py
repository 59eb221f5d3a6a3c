"""Model and checkpoint files: Network.save / Network.load round trips are
exact, saves are atomic, loads refuse anything that is not a sound fastbp
file, and a checkpoint resumes training bit for bit in another process.

Round trips: every kind of network, the activation attribute as spelled,
files from before the 'activation' entry, path types and suffixes, the
plain-npz layout.

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
import zipfile

import numpy as np
import pytest

from fastbp import Network, ReduceOnPlateau, StepDecay, Trainer
from helpers import random_classification, softmax_trainer, without_times



def tolerating_unclosed_files(test):
    """A refused load may leave numpy's file object to the garbage collector
    (test_a_refused_load_closes_its_file is about that); in the tests marked
    with this the ResourceWarning it gives would only blur what is tested."""
    test = pytest.mark.filterwarnings("ignore::ResourceWarning")(test)
    return pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")(test)


@pytest.fixture(scope="module", autouse=True)
def _collect_within_this_module():
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


CONFIGS = [
    # layer_sizes, activation, output, dtype
    ([5, 7, 3], "sigmoid", "sigmoid", "float64"),
    ([5, 7, 3], "sigmoid", "sigmoid", "float32"),
    ([5, 8, 6, 4], ["relu", "tanh"], "softmax", "float64"),
    ([5, 8, 6, 4], ["tanh", "relu"], "identity", "float32"),
    ([5, 9, 4], "relu", "softmax", "float32"),
    ([5, 9, 4], "tanh", "identity", "float64"),
    ([5, 6, 6, 6, 2], ["identity", "relu", "sigmoid"], "sigmoid", "float64"),
    ([5, 3], "sigmoid", "softmax", "float64"),        # no hidden layer
    ([5, 1], "sigmoid", "identity", "float32"),
]


def config_id(config):
    sizes, activation, output, dtype = config
    return f"{sizes}-{activation}-{output}-{dtype}".replace(" ", "")


def configured_network(config=CONFIGS[2], seed=0):
    sizes, activation, output, dtype = config
    net = Network(sizes, activation=activation, output=output, dtype=dtype, seed=seed)
    # non-zero biases, so that a lost bias would show
    rng = np.random.default_rng(seed + 100)
    for bias in net.biases:
        bias[...] = rng.normal(size=bias.shape)
    return net


def inputs(net, n_samples=9):
    return np.random.default_rng(1).uniform(-2, 2, size=(n_samples, net.layer_sizes[0]))


def hidden_activations(net):
    """The activation of each hidden layer, however it was spelled."""
    n_hidden = len(net.layer_sizes) - 2
    if isinstance(net.activation, str):
        return [net.activation] * n_hidden
    return list(net.activation)


def assert_same_network(loaded, net):
    assert type(loaded) is Network
    assert loaded.layer_sizes == net.layer_sizes
    assert loaded.dtype == net.dtype
    assert loaded.output == net.output
    assert hidden_activations(loaded) == hidden_activations(net)
    assert loaded.get_parameters().dtype == net.get_parameters().dtype
    assert loaded.get_parameters().tobytes() == net.get_parameters().tobytes()
    for mine, theirs in zip(loaded.weights + loaded.biases, net.weights + net.biases):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
    X = inputs(net)
    assert loaded.forward(X).tobytes() == net.forward(X).tobytes()


def listing(directory):
    return sorted(os.listdir(directory))


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


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_round_trip_is_exact(tmp_path, config):
    net = configured_network(config)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = Network.load(path)
    assert_same_network(loaded, net)
    # the loaded network is independent, with live weights of its own
    loaded.weights[0][...] = 0
    assert not np.shares_memory(loaded.weights[0], net.weights[0])
    assert loaded.get_parameters()[:loaded.weights[0].size].tolist() == [0.0] * net.weights[0].size
    assert net.get_parameters().tobytes() != loaded.get_parameters().tobytes()


# spellings whose hidden activations are the same but whose `activation`
# attribute differs: a round trip should give back what was given
ACTIVATION_SPELLINGS = CONFIGS + [
    ([5, 4, 4, 2], ["tanh", "tanh"], "sigmoid", "float64"),
    ([5, 3], "relu", "softmax", "float64"),
    ([5, 3], [], "sigmoid", "float32"),
]


@pytest.mark.parametrize("config", ACTIVATION_SPELLINGS, ids=config_id)
def test_round_trip_keeps_the_activation_attribute(tmp_path, config):
    net = configured_network(config)
    net.save(tmp_path / "net.npz")
    assert Network.load(tmp_path / "net.npz").activation == net.activation


def test_round_trip_keeps_a_uniform_activation_list(tmp_path):
    net = Network([5, 4, 4, 2], activation=["tanh", "tanh"], seed=0)
    net.save(tmp_path / "net.npz")
    loaded = Network.load(tmp_path / "net.npz")
    assert loaded.activation == net.activation == ["tanh", "tanh"]
    assert repr(loaded) == repr(net)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_files_from_before_the_activation_entry_still_load(tmp_path, config):
    """Version-1 files written before `activation` was stored hold only
    `activations`; they load, with the activation that version read."""
    net = configured_network(config)
    net.save(tmp_path / "net.npz")
    with np.load(tmp_path / "net.npz") as archive:
        arrays = {key: archive[key] for key in archive.files if key != "activation"}
    np.savez(tmp_path / "old.npz", **arrays)
    loaded = Network.load(tmp_path / "old.npz")
    assert_same_network(loaded, net)
    hidden = hidden_activations(net)
    expected = hidden if len(set(hidden)) > 1 else (hidden[0] if hidden else "sigmoid")
    assert loaded.activation == expected


def test_round_trip_after_training_and_edits(tmp_path):
    from fastbp import Trainer

    net = configured_network(CONFIGS[1])
    X = inputs(net, 30)
    labels = np.arange(30) % 3
    Trainer(net, learning_rate=0.5, batch_size=7, seed=0).fit(X, labels, epochs=2)
    net.weights[1][0, 0] = 123.25
    net.save(tmp_path / "trained.npz")
    loaded = Network.load(tmp_path / "trained.npz")
    assert_same_network(loaded, net)
    assert loaded.weights[1][0, 0] == np.float32(123.25)


@pytest.mark.parametrize("kind", ["str", "pathlib", "bytes-free-os-path"])
def test_path_types(tmp_path, kind):
    net = configured_network()
    target = tmp_path / "net.npz"
    path = {"str": str(target), "pathlib": target,
            "bytes-free-os-path": os.path.relpath(target)}[kind]
    net.save(path)
    assert_same_network(Network.load(path), net)


def test_saved_file_is_a_plain_npz(tmp_path):
    net = configured_network(CONFIGS[3])
    path = tmp_path / "net.npz"
    net.save(path)
    assert zipfile.is_zipfile(path)
    with np.load(path, allow_pickle=False) as archive:
        assert "format_version" in archive.files
        version = archive["format_version"]
        assert version.shape == () and np.issubdtype(version.dtype, np.integer)
        assert int(version) >= 1
        arrays = {key: archive[key] for key in archive.files}
    assert all(value.dtype != object for value in arrays.values())
    # the parameters are in there, with the network's dtype
    stored = [value for key, value in arrays.items() if value.dtype == np.float32]
    assert sum(value.size for value in stored) == net.n_parameters


@pytest.mark.parametrize("name", ["model", "model.bin", "model.npz.tmp", "model.NPZ"])
def test_path_without_npz_suffix_is_written_exactly(tmp_path, name):
    net = configured_network()
    path = tmp_path / name
    net.save(path)
    assert listing(tmp_path) == [name]
    assert_same_network(Network.load(path), net)


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
    "savez fails at once": ("savez", _fail, OSError),
    "savez fails midway (disk full)": ("savez", _savez_that_fails_midway, OSError),
    "KeyboardInterrupt during the write": ("savez", _savez_interrupted, KeyboardInterrupt),
    "fsync fails": ("fsync", _fail, OSError),
    "rename fails": ("replace", _fail, OSError),
}


@tolerating_unclosed_files
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
    (tmp_path / "neighbour.txt").write_text("untouched")

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
    assert leftovers(tmp_path, {target.name, "neighbour.txt"}) == []
    assert (tmp_path / "neighbour.txt").read_text() == "untouched"
    if kind == "network":
        assert same_network(Network.load(target), make_trainer().network)
    else:
        restored = Trainer.load_checkpoint(target)
        assert restored.epoch == 2


@tolerating_unclosed_files
def test_a_save_onto_a_directory_fails_cleanly(tmp_path):
    (tmp_path / "model.npz").mkdir()
    with pytest.raises(OSError):
        make_network().save(tmp_path / "model.npz")
    assert leftovers(tmp_path, {"model.npz"}) == []
    assert (tmp_path / "model.npz").is_dir()


@tolerating_unclosed_files
def test_a_save_into_a_missing_directory_raises_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        make_network().save(tmp_path / "missing" / "model.npz")
    assert list(tmp_path.iterdir()) == []


@tolerating_unclosed_files
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


@tolerating_unclosed_files
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


def test_saving_over_an_existing_file_replaces_it(tmp_path):
    path = tmp_path / "net.npz"
    first, second = configured_network(seed=1), configured_network(seed=2)
    first.save(path)
    second.save(path)
    assert_same_network(Network.load(path), second)
    assert listing(tmp_path) == ["net.npz"]


def test_a_failed_first_save_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez", _fail)
    with pytest.raises(OSError):
        configured_network().save(tmp_path / "net.npz")
    assert listing(tmp_path) == []


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


@tolerating_unclosed_files
def test_the_valid_files_load(valid_files):
    assert same_network(Network.load(valid_files["network"]), make_trainer().network)
    restored = Trainer.load_checkpoint(valid_files["checkpoint"])
    assert same_network(restored.network, make_trainer().network)


@tolerating_unclosed_files
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


@tolerating_unclosed_files
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


@tolerating_unclosed_files
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


@tolerating_unclosed_files
@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_refused_load_closes_its_file(valid_files, tmp_path, kind):
    # A program that tries many files (or keeps the exceptions) must not
    # run out of file descriptors: nothing is left for the garbage
    # collector to close.
    data = valid_files[kind].read_bytes()
    rng = np.random.default_rng(0)
    contents = {
        "cut.npz": data[:-1],
        "cut-300.npz": data[:300],
        "zeros.npz": b"PK\x03\x04" + bytes(300),
        "zip-garbage.npz": b"PK\x03\x04" + rng.bytes(2048),
        "garbage.npz": rng.bytes(4096),
        "empty.npz": b"",
    }
    bad_files = []
    for name, content in contents.items():
        bad_files.append(tmp_path / name)
        bad_files[-1].write_bytes(content)
    np.save(tmp_path / "bad.npz.npy", np.arange(30.0).reshape(5, 6))
    bad_files.append(tmp_path / "bad.npz.npy")
    refused = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()        # what earlier tests left
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for bad in bad_files:
            try:
                LOADERS[kind](bad)
            except ValueError:
                refused.append(bad)
        gc.collect()
    assert refused == bad_files
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []


@tolerating_unclosed_files
def test_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "nowhere.npz")
    with pytest.raises(FileNotFoundError):
        Network.load(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError):
        Trainer.load_checkpoint(tmp_path / "nowhere.npz")
    assert list(tmp_path.iterdir()) == []


class Hostile:
    """Unpickling this creates the marker file: proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = os.fspath(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@tolerating_unclosed_files
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
    prefix = "network_" if kind == "checkpoint" else ""
    for key in ("format", "format_version", prefix + "W0", prefix + "layer_sizes",
                prefix + "activations", "meta" if kind == "checkpoint" else "dtype"):
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
    "version 3": (dict(format_version=np.array(3)), (), "format_version"),
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


@tolerating_unclosed_files
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


@tolerating_unclosed_files
@pytest.mark.parametrize("defect", list(CHECKPOINT_DEFECTS))
def test_wrong_checkpoint_entries_are_refused(valid_files, tmp_path, defect):
    changes = CHECKPOINT_DEFECTS[defect](_meta(valid_files), make_network().n_parameters)
    path = _tampered(valid_files["checkpoint"], tmp_path, "bad", **changes)
    assert_refused("checkpoint", path)


@pytest.fixture
def saved(tmp_path):
    """A valid file and its arrays, for tampering."""
    net = configured_network(CONFIGS[2])
    path = tmp_path / "good.npz"
    net.save(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return net, path, arrays


def write_npz(path, arrays, **kwargs):
    with open(path, "wb") as stream:
        np.savez(stream, **arrays, **kwargs)
    return path


def test_the_fixture_file_loads(saved):
    net, path, arrays = saved
    assert_same_network(Network.load(path), net)
    copy_path = write_npz(path.with_name("copy.npz"), arrays)
    assert_same_network(Network.load(copy_path), net)


@tolerating_unclosed_files
def test_zip_without_arrays_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not an array")
    assert_refused("network", path)


@tolerating_unclosed_files
def test_empty_npz_is_refused(tmp_path):
    assert_refused("network", write_npz(tmp_path / "empty.npz", {}))


def test_directory_is_refused_or_raises_os_error(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises((ValueError, OSError)):
        Network.load(tmp_path / "dir.npz")


def _drop(*keys):
    def change(arrays):
        for key in keys:
            del arrays[key]
    return change


def _set(key, value):
    def change(arrays):
        arrays[key] = value(arrays) if callable(value) else value
    return change


# Defects beyond NETWORK_DEFECTS above, on another network ([5, 8, 6, 4]).
TAMPERINGS = {
    # keys
    "no layer_sizes": _drop("layer_sizes"),
    "no activations": _drop("activations"),
    "no output": _drop("output"),
    "no dtype": _drop("dtype"),
    "no W1": _drop("W1"),
    "no b2": _drop("b2"),
    # format and version
    "format other": _set("format", np.array("fastbp.checkpoint")),
    "format bytes": _set("format", np.array(b"fastbp.network")),
    "version 999": _set("format_version", np.array(999, dtype=np.int64)),
    # structure
    "layer_sizes longer": _set("layer_sizes", np.array([5, 8, 6, 4, 2])),
    "layer_sizes mismatch": _set("layer_sizes", np.array([5, 8, 7, 4])),
    "activation softmax": _set("activations", np.array(["softmax", "tanh"])),
    "activation too many": _set("activations", np.array(["relu", "tanh", "relu"])),
    "output hidden-only": _set("output", np.array("tanh")),
    "dtype junk": _set("dtype", np.array("nonsense")),
    # parameters
    "b1 float16": _set("b1", lambda a: a["b1"].astype(np.float16)),
    "W1 flat": _set("W1", lambda a: a["W1"].ravel()),
    "W2 extra row": _set("W2", lambda a: np.vstack([a["W2"], a["W2"][:1]])),
    "b0 short": _set("b0", lambda a: a["b0"][:-1]),
    "b2 scalar": _set("b2", np.array(0.0)),
    "W0 NaN": _set("W0", lambda a: np.where(np.arange(5) == 2, np.nan, a["W0"])),
    "W2 inf": _set("W2", lambda a: np.where(np.arange(6) == 0, np.inf, a["W2"])),
    "b1 -inf": _set("b1", lambda a: np.where(np.arange(6) == 5, -np.inf, a["b1"])),
}


@tolerating_unclosed_files
@pytest.mark.parametrize("defect", list(TAMPERINGS))
def test_invalid_entries_are_refused(saved, tmp_path, defect):
    _, _, arrays = saved
    arrays = dict(arrays)
    TAMPERINGS[defect](arrays)
    assert_refused("network", write_npz(tmp_path / "bad.npz", arrays))


@tolerating_unclosed_files
def test_pickled_network_is_refused(tmp_path):
    """Even a genuine pickled Network is not a model file."""
    path = tmp_path / "net.pkl"
    with open(path, "wb") as stream:
        pickle.dump(configured_network(), stream)
    assert_refused("network", path)


# ------------------------------------------------------------------ checkpoints

TRAIN = random_classification(0)
VALID = random_classification(1)

RESUME = textwrap.dedent("""
    import sys
    import numpy as np
    from fastbp import Trainer

    checkpoint, data, out, epochs = sys.argv[1:]
    trainer = Trainer.load_checkpoint(checkpoint)
    with np.load(data) as arrays:
        X, y, X_val, y_val = (arrays[key] for key in ("X", "y", "X_val", "y_val"))
    trainer.fit(X, y, epochs=int(epochs), validation_data=(X_val, y_val))
    trainer.save_checkpoint(out)
""")

# Settings, made afresh for each trainer: a schedule object holds its
# position, so two trainers must not share one.
CHECKPOINTED = {
    "momentum-plateau": lambda: dict(
        learning_rate=0.2, momentum=0.9, l2=1e-3,
        schedule=ReduceOnPlateau(patience=1, factor=0.5, min_delta=0.0)),
    "adam-step": lambda: dict(
        optimizer="adam", learning_rate=0.02, l1=1e-4,
        schedule=StepDecay(step_size=3, gamma=0.5)),
}


@pytest.mark.parametrize("name", CHECKPOINTED)
def test_resuming_in_a_new_process_is_bit_exact(tmp_path, name):
    settings = CHECKPOINTED[name]
    full, part = softmax_trainer(seed=3, **settings()), softmax_trainer(seed=3, **settings())
    full.fit(*TRAIN, epochs=10, validation_data=VALID)
    assert len(set(full.history["learning_rate"])) > 1     # the schedule had work to do

    part.fit(*TRAIN, epochs=4, validation_data=VALID)
    checkpoint = tmp_path / "epoch4.npz"
    part.save_checkpoint(checkpoint)

    # the checkpoint alone restores epoch, history and schedule position
    restored = Trainer.load_checkpoint(checkpoint)
    assert restored.epoch == 4 and restored.history == part.history
    assert restored.current_learning_rate == part.current_learning_rate
    assert repr(restored) == repr(part)

    data = tmp_path / "data.npz"
    np.savez(data, X=TRAIN[0], y=TRAIN[1], X_val=VALID[0], y_val=VALID[1])
    out = tmp_path / "epoch10.npz"
    result = subprocess.run([sys.executable, "-c", RESUME, str(checkpoint), str(data), str(out),
                             "6"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr

    resumed = Trainer.load_checkpoint(out)
    np.testing.assert_array_equal(resumed.network.get_parameters(),
                                  full.network.get_parameters())
    assert resumed.epoch == full.epoch == 10
    assert without_times(resumed.history) == without_times(full.history)
    assert len(resumed.history["epoch_seconds"]) == 10
    # and both go on alike: optimizer state and generator came through too
    resumed.fit(*TRAIN, epochs=2, validation_data=VALID)
    full.fit(*TRAIN, epochs=2, validation_data=VALID)
    np.testing.assert_array_equal(resumed.network.get_parameters(),
                                  full.network.get_parameters())


def test_checkpoint_is_a_plain_npz_without_pickles(tmp_path):
    trainer = softmax_trainer(optimizer="adam", learning_rate=0.01)
    trainer.fit(*TRAIN, epochs=2)
    path = tmp_path / "checkpoint.npz"
    trainer.save_checkpoint(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    assert str(arrays["format"]) == "fastbp.checkpoint"
    assert all(array.dtype != object for array in arrays.values())
    meta = json.loads(str(arrays["meta"]))
    assert meta["epoch"] == 2 and meta["config"]["optimizer"] == "adam"
    assert arrays["state1"].shape == arrays["state2"].shape == (trainer.network.n_parameters,)


@tolerating_unclosed_files
def test_a_checkpoint_with_a_run_of_zeroed_bytes_is_refused(tmp_path):
    trainer = softmax_trainer(optimizer="adam", learning_rate=0.01)
    trainer.fit(*TRAIN, epochs=1)
    good = tmp_path / "good.npz"
    trainer.save_checkpoint(good)
    content = bytearray(good.read_bytes())
    content[len(content) // 3: len(content) // 3 + 64] = bytes(64)
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(content))
    assert_refused("checkpoint", path)
