"""Network.save / Network.load: faithful round trips, atomic writes, and
refusal (ValueError, never code execution) of anything that is not a valid
fastbp network file."""

import gc
import io
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest

from fastbp import Network

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


def make_network(config=CONFIGS[2], seed=0):
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


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_round_trip_is_exact(tmp_path, config):
    net = make_network(config)
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
    net = make_network(config)
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
    net = make_network(config)
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

    net = make_network(CONFIGS[1])
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
    net = make_network()
    target = tmp_path / "net.npz"
    path = {"str": str(target), "pathlib": target,
            "bytes-free-os-path": os.path.relpath(target)}[kind]
    net.save(path)
    assert_same_network(Network.load(path), net)


def test_saved_file_is_a_plain_npz(tmp_path):
    net = make_network(CONFIGS[3])
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
    net = make_network()
    path = tmp_path / name
    net.save(path)
    assert listing(tmp_path) == [name]
    assert_same_network(Network.load(path), net)


# --------------------------------------------------------------- atomic save


def test_saving_over_an_existing_file_replaces_it(tmp_path):
    path = tmp_path / "net.npz"
    first, second = make_network(seed=1), make_network(seed=2)
    first.save(path)
    second.save(path)
    assert_same_network(Network.load(path), second)
    assert listing(tmp_path) == ["net.npz"]


def _raise(*args, **kwargs):
    raise OSError("simulated failure (disk full)")


def _write_half_then_raise(file, *args, **kwargs):
    file.write(b"PK\x03\x04 half an archive")
    raise OSError("simulated failure midway")


@pytest.mark.parametrize(
    "module, name, replacement",
    [(np, "savez", _raise), (np, "savez", _write_half_then_raise), (os, "replace", _raise),
     (os, "fsync", _raise)],
    ids=["savez", "savez-midway", "replace", "fsync"],
)
def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch, module, name,
                                               replacement):
    path = tmp_path / "net.npz"
    old = make_network(seed=1)
    old.save(path)
    old_bytes = path.read_bytes()
    (tmp_path / "neighbour.txt").write_text("untouched")

    monkeypatch.setattr(module, name, replacement)
    with pytest.raises(OSError, match="simulated"):
        make_network(seed=2).save(path)
    monkeypatch.undo()

    assert path.read_bytes() == old_bytes
    assert_same_network(Network.load(path), old)
    assert listing(tmp_path) == ["neighbour.txt", "net.npz"]      # no temporary left


def test_a_failed_first_save_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez", _raise)
    with pytest.raises(OSError):
        make_network().save(tmp_path / "net.npz")
    assert listing(tmp_path) == []


def test_save_into_a_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        make_network().save(tmp_path / "missing" / "net.npz")
    assert listing(tmp_path) == []


# ------------------------------------------------------------------- refusals


def load_collecting_leaks(path):
    """Network.load(path); returns (exception or None, ResourceWarnings seen).

    A file left open by a refused load shows as a ResourceWarning when it is
    collected; collect here so that it is counted by the test that caused it
    (test_a_refused_load_closes_its_file) instead of surfacing in a later one.
    """
    raised = None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        try:
            Network.load(path)
        except ValueError as exc:
            # keep a detached copy: the exception's context and traceback
            # would keep whatever the failed load left open alive
            raised = ValueError(str(exc))
        gc.collect()
    leaks = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    return raised, leaks


def assert_refused(path, match=None):
    raised, _ = load_collecting_leaks(path)
    assert isinstance(raised, ValueError), f"{path} was not refused"
    if match is not None:
        assert match in str(raised), str(raised)
    # the message says which file it is about
    assert os.path.basename(str(path)) in str(raised)
    return raised


@pytest.fixture
def saved(tmp_path):
    """A valid file and its arrays, for tampering."""
    net = make_network(CONFIGS[2])
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


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file_is_refused(saved, tmp_path, fraction):
    _, path, _ = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[:max(1, int(len(data) * fraction))] if fraction else b"P")
    assert_refused(cut)


def test_random_garbage_is_refused(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_refused(path)


def test_garbage_behind_a_zip_signature_is_refused(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(2048))
    assert_refused(path)


@pytest.mark.parametrize("content", ["truncated", "zip-signature-garbage", "garbage", "empty",
                                     "npy"])
def test_a_refused_load_closes_its_file(saved, tmp_path, content):
    _, path, arrays = saved
    bad = tmp_path / "bad.npz"
    if content == "truncated":
        bad.write_bytes(path.read_bytes()[:300])
    elif content == "zip-signature-garbage":
        bad.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(2048))
    elif content == "garbage":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "empty":
        bad.write_bytes(b"")
    else:
        np.save(bad, arrays["W0"])
        bad = tmp_path / "bad.npz.npy"
    raised, leaks = load_collecting_leaks(bad)
    assert isinstance(raised, ValueError)
    assert leaks == []


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    assert_refused(path)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("layer_sizes: [5, 8, 6, 4]\n")
    assert_refused(path)


def test_plain_npy_file_is_refused(saved, tmp_path):
    _, _, arrays = saved
    path = tmp_path / "weights.npy"
    np.save(path, arrays["W0"])
    assert_refused(path)


def test_zip_without_arrays_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not an array")
    assert_refused(path)


def test_empty_npz_is_refused(tmp_path):
    assert_refused(write_npz(tmp_path / "empty.npz", {}))


def test_directory_is_refused_or_raises_os_error(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises((ValueError, OSError)):
        Network.load(tmp_path / "dir.npz")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        Network.load(str(tmp_path / "nope"))
    assert listing(tmp_path) == []


def _drop(*keys):
    def change(arrays):
        for key in keys:
            del arrays[key]
    return change


def _set(key, value):
    def change(arrays):
        arrays[key] = value(arrays) if callable(value) else value
    return change


TAMPERINGS = {
    # keys
    "no format": _drop("format"),
    "no format_version": _drop("format_version"),
    "no layer_sizes": _drop("layer_sizes"),
    "no activations": _drop("activations"),
    "no output": _drop("output"),
    "no dtype": _drop("dtype"),
    "no W1": _drop("W1"),
    "no b2": _drop("b2"),
    # format and version
    "format other": _set("format", np.array("fastbp.checkpoint")),
    "format junk": _set("format", np.array("hello")),
    "format bytes": _set("format", np.array(b"fastbp.network")),
    "format number": _set("format", np.array(1)),
    "version 0": _set("format_version", np.array(0, dtype=np.int64)),
    "version 2": _set("format_version", np.array(2, dtype=np.int64)),
    "version 999": _set("format_version", np.array(999, dtype=np.int64)),
    "version -1": _set("format_version", np.array(-1, dtype=np.int64)),
    "version float": _set("format_version", np.array(1.0)),
    "version string": _set("format_version", np.array("1")),
    "version array": _set("format_version", np.array([1], dtype=np.int64)),
    # structure
    "layer_sizes float": _set("layer_sizes", lambda a: a["layer_sizes"].astype(float)),
    "layer_sizes zero": _set("layer_sizes", np.array([5, 0, 6, 4])),
    "layer_sizes 2-D": _set("layer_sizes", lambda a: a["layer_sizes"].reshape(2, 2)),
    "layer_sizes longer": _set("layer_sizes", np.array([5, 8, 6, 4, 2])),
    "layer_sizes mismatch": _set("layer_sizes", np.array([5, 8, 7, 4])),
    "activation unknown": _set("activations", np.array(["relu", "swish"])),
    "activation softmax": _set("activations", np.array(["softmax", "tanh"])),
    "activation count": _set("activations", np.array(["relu"])),
    "activation too many": _set("activations", np.array(["relu", "tanh", "relu"])),
    "activation none": _set("activations", np.array([], dtype="U16")),
    "activation numbers": _set("activations", np.array([1, 2])),
    "output unknown": _set("output", np.array("swish")),
    "output hidden-only": _set("output", np.array("tanh")),
    "dtype float16": _set("dtype", np.array("float16")),
    "dtype junk": _set("dtype", np.array("nonsense")),
    # parameters
    "W0 int": _set("W0", lambda a: np.round(a["W0"]).astype(np.int64)),
    "W0 float32": _set("W0", lambda a: a["W0"].astype(np.float32)),
    "b1 float16": _set("b1", lambda a: a["b1"].astype(np.float16)),
    "W0 complex": _set("W0", lambda a: a["W0"].astype(np.complex128)),
    "W0 transposed": _set("W0", lambda a: a["W0"].T.copy()),
    "W1 flat": _set("W1", lambda a: a["W1"].ravel()),
    "W2 extra row": _set("W2", lambda a: np.vstack([a["W2"], a["W2"][:1]])),
    "b0 short": _set("b0", lambda a: a["b0"][:-1]),
    "b2 scalar": _set("b2", np.array(0.0)),
    "W0 NaN": _set("W0", lambda a: np.where(np.arange(5) == 2, np.nan, a["W0"])),
    "W2 inf": _set("W2", lambda a: np.where(np.arange(6) == 0, np.inf, a["W2"])),
    "b1 -inf": _set("b1", lambda a: np.where(np.arange(6) == 5, -np.inf, a["b1"])),
}


@pytest.mark.parametrize("defect", list(TAMPERINGS))
def test_invalid_entries_are_refused(saved, tmp_path, defect):
    _, _, arrays = saved
    arrays = dict(arrays)
    TAMPERINGS[defect](arrays)
    assert_refused(write_npz(tmp_path / "bad.npz", arrays))


def test_the_messages_say_what_is_wrong(saved, tmp_path):
    _, _, arrays = saved
    cases = {
        "W0": _set("W0", lambda a: a["W0"].astype(np.int64)),
        "format_version": _set("format_version", np.array(7, dtype=np.int64)),
        "swish": _set("activations", np.array(["relu", "swish"])),
        "NaN": _set("W2", lambda a: np.full_like(a["W2"], np.nan)),
        "b1": _drop("b1"),
    }
    for word, change in cases.items():
        tampered = dict(arrays)
        change(tampered)
        assert_refused(write_npz(tmp_path / f"bad-{word}.npz", tampered), match=word)


# ----------------------------------------------------- pickles never execute

MARKER = {"executed": False}


def _payload(marker_path):
    """What a malicious pickle would run: leave a trace we can look for."""
    MARKER["executed"] = True
    with open(marker_path, "w") as stream:
        stream.write("pwned")
    return np.zeros((8, 5))


class Exploit:
    def __init__(self, marker_path):
        self.marker_path = str(marker_path)

    def __reduce__(self):
        return (_payload, (self.marker_path,))


@pytest.fixture
def marker(tmp_path):
    MARKER["executed"] = False
    path = tmp_path / "marker.txt"
    yield path
    MARKER["executed"] = False


def assert_not_executed(marker):
    assert not MARKER["executed"]
    assert not marker.exists()


def test_the_exploit_does_run_when_unpickled(marker):
    """The payload is real: plain unpickling runs it (so the tests below can fail)."""
    pickle.loads(pickle.dumps(Exploit(marker)))
    assert MARKER["executed"] and marker.exists()


@pytest.mark.parametrize("key", ["W0", "layer_sizes", "activations", "format", "extra"])
def test_npz_with_a_pickled_object_array_is_refused(saved, tmp_path, marker, key):
    _, _, arrays = saved
    arrays = dict(arrays)
    evil = np.empty(1, dtype=object)
    evil[0] = Exploit(marker)
    arrays[key] = evil
    path = write_npz(tmp_path / "evil.npz", arrays, allow_pickle=True)
    assert_refused(path)
    assert_not_executed(marker)


def test_raw_pickle_file_is_refused(tmp_path, marker):
    path = tmp_path / "evil.npz"
    with open(path, "wb") as stream:
        pickle.dump({"W0": Exploit(marker)}, stream)
    assert_refused(path)
    assert_not_executed(marker)


def test_pickled_network_is_refused(tmp_path, marker):
    """Even a genuine pickled Network is not a model file."""
    path = tmp_path / "net.pkl"
    with open(path, "wb") as stream:
        pickle.dump(make_network(), stream)
    assert_refused(path)


def test_npy_with_a_pickled_object_is_refused(tmp_path, marker):
    path = tmp_path / "evil.npy"
    evil = np.empty(2, dtype=object)
    evil[0] = Exploit(marker)
    buffer = io.BytesIO()
    np.save(buffer, evil, allow_pickle=True)
    path.write_bytes(buffer.getvalue())
    assert_refused(path)
    assert_not_executed(marker)
