"""ONNX export (fastbp.export_onnx): the graph run by onnxruntime equals
fastbp's own forward pass, probabilities, labels and predictions.

onnx and onnxruntime are in the ``test`` extra, so these tests import them
plainly: a CI without them fails here instead of skipping silently.

Tolerance: relative, measured against the largest magnitude of the compared
array (as in helpers.RTOL: outputs near zero, e.g. an identity output whose
terms cancel, cannot be compared one by one): 1e-5 for float32, 1e-12 for
float64. Sigmoid and softmax outputs are also compared entry by entry.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

import fastbp
from fastbp import Model, Network
from fastbp._onnx import DEFAULT_OPSET, MIN_OPSET, build_onnx

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]
HIDDEN = ["sigmoid", "tanh", "relu", "identity"]
OUTPUTS = ["sigmoid", "softmax", "identity"]


def run(path, X):
    """All graph outputs of the ONNX file at `path` on `X`, by name."""
    session = onnxruntime.InferenceSession(os.fspath(path),
                                           providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {"X": X})))


def scaled_error(actual, expected):
    """max |actual - expected| / max |expected| (0 for two zero arrays)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.max(np.abs(expected), initial=0.0)
    error = np.max(np.abs(actual - expected), initial=0.0)
    return error / scale if scale > 0 else error


def entry_error(actual, expected):
    """max over entries of |actual - expected| / |expected|."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return np.max(np.abs(actual - expected) / np.abs(expected), initial=0.0)


def assert_close(actual, expected, dtype):
    assert np.shape(actual) == np.shape(expected)
    assert scaled_error(actual, expected) <= RTOL[dtype]


def inputs(n, n_inputs, dtype, seed=0, loc=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (loc + scale * rng.standard_normal((n, n_inputs))).astype(dtype)


def randomise_biases(network, seed=1):
    rng = np.random.default_rng(seed)
    for bias in network.biases:
        bias[...] = 0.5 * rng.standard_normal(bias.shape)


def opset_of(proto):
    return next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))


# ------------------------------------------------------------------ networks


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("sizes", [[5, 7, 3], [5, 8, 6, 3], [4, 6, 6, 5, 2]],
                         ids=["depth2", "depth3", "depth4"])
def test_network_outputs_equal_forward(tmp_path, sizes, hidden, output, dtype):
    net = Network(sizes, activation=hidden, output=output, dtype=dtype, seed=3)
    randomise_biases(net)
    path = tmp_path / "net.onnx"
    proto = fastbp.export_onnx(net, path)
    X = inputs(200, sizes[0], dtype)
    result = run(path, X)
    assert list(result) == ["outputs"]
    assert result["outputs"].dtype == dtype
    assert_close(result["outputs"], net.forward(X), dtype)
    if output != "identity":
        assert entry_error(result["outputs"], net.forward(X)) <= RTOL[dtype]
    onnx.checker.check_model(os.fspath(path), full_check=True)
    assert opset_of(proto) == opset_of(onnx.load(os.fspath(path))) == DEFAULT_OPSET >= 13


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("output", OUTPUTS)
def test_network_without_hidden_layer(tmp_path, output, dtype):
    net = Network([6, 4], output=output, dtype=dtype, seed=4)
    randomise_biases(net)
    fastbp.export_onnx(net, tmp_path / "net.onnx")
    X = inputs(50, 6, dtype)
    assert_close(run(tmp_path / "net.onnx", X)["outputs"], net.forward(X), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_mixed_hidden_activations(tmp_path, dtype):
    net = Network([3, 6, 6, 6, 6, 4], activation=["relu", "identity", "tanh", "sigmoid"],
                  output="softmax", dtype=dtype, seed=5)
    randomise_biases(net)
    fastbp.export_onnx(net, tmp_path / "net.onnx")
    X = inputs(300, 3, dtype, scale=3.0)
    result = run(tmp_path / "net.onnx", X)["outputs"]
    assert entry_error(result, net.forward(X)) <= RTOL[dtype]
    ops = [node.op_type for node in onnx.load(os.fspath(tmp_path / "net.onnx")).graph.node]
    sigmoid = ["Abs", "Neg", "Exp", "Add", "Less", "Where", "Div"]
    assert ops == ["Gemm", "Relu", "Gemm", "Gemm", "Tanh", "Gemm", *sigmoid, "Gemm", "Softmax"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_saturated_sigmoid_keeps_its_relative_accuracy(tmp_path, dtype):
    # z from -80 to 30: outputs down to 1e-35, where onnxruntime's Sigmoid
    # operator is off by more than 100% but fastbp's split formula is not.
    net = Network([1, 1], output="sigmoid", dtype=dtype, seed=0)
    net.weights[0][...] = 1
    X = np.linspace(-80, 30, 2001, dtype=dtype)[:, None]
    fastbp.export_onnx(net, tmp_path / "s.onnx")
    result = run(tmp_path / "s.onnx", X)["outputs"]
    assert entry_error(result, net.forward(X)) <= RTOL[dtype]
    assert result.min() < 1e-34


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_sigmoid_operator(tmp_path, dtype):
    net = Network([4, 6, 2], activation="sigmoid", output="sigmoid", dtype=dtype, seed=1)
    randomise_biases(net)
    proto = fastbp.export_onnx(net, tmp_path / "s.onnx", sigmoid_operator=True)
    assert [node.op_type for node in proto.graph.node] == ["Gemm", "Sigmoid", "Gemm", "Sigmoid"]
    X = inputs(100, 4, dtype)
    # onnxruntime's Sigmoid is an approximation: close in absolute terms only
    np.testing.assert_allclose(run(tmp_path / "s.onnx", X)["outputs"], net.forward(X),
                               rtol=0, atol=1e-6 if dtype == np.float32 else 1e-10)
    with pytest.raises(TypeError, match="sigmoid_operator"):
        fastbp.export_onnx(net, tmp_path / "s.onnx", sigmoid_operator="yes")


@pytest.mark.parametrize("opset", [MIN_OPSET, 15, DEFAULT_OPSET, 21])
def test_opsets(tmp_path, opset):
    net = Network([3, 4, 2], activation="tanh", output="softmax", seed=6)
    model = Model(net, classes=["a", "b"], feature_mean=[1, 2, 3], feature_scale=[1, 2, 4])
    proto = fastbp.export_onnx(model, tmp_path / "m.onnx", opset=opset)
    assert opset_of(proto) == opset
    X = inputs(20, 3, np.float64)
    result = run(tmp_path / "m.onnx", X)
    assert_close(result["probabilities"], model.predict_proba(X), np.float64)
    assert result["label"].tolist() == model.predict(X).tolist()


# -------------------------------------------------------------------- models


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_classifier_with_standardisation_and_string_labels(tmp_path, dtype):
    net = Network([4, 10, 3], activation="relu", output="softmax", dtype=dtype, seed=9)
    randomise_biases(net)
    model = Model(net, classes=["setosa", "versicolor", "virginica"],
                  feature_names=["a", "b", "c", "d"],
                  feature_mean=[10.0, -3.0, 0.5, 200.0], feature_scale=[2.0, 0.1, 1.0, 50.0])
    path = tmp_path / "model.onnx"
    fastbp.export_onnx(model, path)
    X = inputs(400, 4, np.float64, loc=np.array([10.0, -3.0, 0.5, 200.0]),
               scale=np.array([2.0, 0.1, 1.0, 50.0]) * 1.5)
    result = run(path, X.astype(dtype))
    assert set(result) == {"outputs", "label", "probabilities"}
    assert_close(result["outputs"], model.decision(X), dtype)
    assert entry_error(result["probabilities"], model.predict_proba(X)) <= RTOL[dtype]
    expected = model.predict(X)
    assert result["label"].dtype.kind in "OU"
    assert result["label"].tolist() == expected.tolist()
    assert len(set(expected.tolist())) == 3   # all three classes come up
    proto = onnx.load(os.fspath(path))
    ops = [node.op_type for node in proto.graph.node]
    assert ops[:2] == ["Sub", "Div"] and "ArgMax" in ops and ops[-1] == "Gather"
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    assert metadata["fastbp_task"] == "classify"
    assert "virginica" in metadata["fastbp_classes"]
    assert '"d"' in metadata["fastbp_feature_names"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_binary_classifier_with_int_labels(tmp_path, dtype):
    net = Network([3, 5, 1], activation="tanh", output="sigmoid", dtype=dtype, seed=8)
    randomise_biases(net)
    model = Model(net, classes=[-4, 17])
    path = tmp_path / "binary.onnx"
    fastbp.export_onnx(model, path)
    X = inputs(500, 3, dtype, scale=2.0)
    result = run(path, X)
    assert result["probabilities"].shape == (500, 2)
    assert entry_error(result["probabilities"], model.predict_proba(X)) <= RTOL[dtype]
    assert result["label"].dtype == np.int64
    assert result["label"].tolist() == model.predict(X).tolist()
    assert set(result["label"].tolist()) == {-4, 17}
    ops = [node.op_type for node in onnx.load(os.fspath(path)).graph.node]
    assert "Greater" in ops and "ArgMax" not in ops


@pytest.mark.parametrize("output, n_outputs", [("sigmoid", 1), ("softmax", 3), ("sigmoid", 3)])
def test_ties_go_to_the_first_class_as_in_model_predict(tmp_path, output, n_outputs):
    net = Network([2, n_outputs], output=output, seed=9)
    net.weights[0][...] = 0
    net.biases[0][...] = 0      # p = 0.5, or equal outputs: a tie on every row
    model = Model(net, classes=np.arange(10, 10 + max(n_outputs, 2)))
    fastbp.export_onnx(model, tmp_path / "tie.onnx")
    X = inputs(5, 2, np.float64)
    assert run(tmp_path / "tie.onnx", X)["label"].tolist() == model.predict(X).tolist() == [10] * 5


@pytest.mark.parametrize("classes", [[0.5, 1.5, 2.5], [True, False, True][:2] + [False]])
def test_float_and_bool_labels(tmp_path, classes):
    if isinstance(classes[0], (bool, np.bool_)):
        net = Network([3, 4, 1], output="sigmoid", seed=10)
        classes = [False, True]
    else:
        net = Network([3, 4, 3], output="softmax", seed=10)
    model = Model(net, classes=classes)
    fastbp.export_onnx(model, tmp_path / "m.onnx")
    X = inputs(100, 3, np.float64, scale=3.0)
    assert run(tmp_path / "m.onnx", X)["label"].tolist() == model.predict(X).tolist()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_regressor_with_target_scaling_and_several_outputs(tmp_path, dtype):
    net = Network([3, 8, 8, 4], activation=["tanh", "relu"], output="identity", dtype=dtype,
                  seed=11)
    randomise_biases(net)
    model = Model(net, feature_mean=[0.0, 5.0, -1.0], feature_scale=[1.0, 3.0, 0.25],
                  target_mean=[100.0, -2.0, 0.0, 1e4], target_scale=[10.0, 0.5, 1.0, 300.0])
    path = tmp_path / "regressor.onnx"
    fastbp.export_onnx(model, path)
    X = inputs(300, 3, np.float64, loc=np.array([0.0, 5.0, -1.0]))
    result = run(path, X.astype(dtype))
    assert set(result) == {"outputs", "predictions"}
    assert_close(result["outputs"], model.decision(X), dtype)
    expected = model.predict(X)
    assert result["predictions"].shape == expected.shape == (300, 4)
    for column in range(4):   # each output in its own units
        assert_close(result["predictions"][:, column], expected[:, column], dtype)
    ops = [node.op_type for node in onnx.load(os.fspath(path)).graph.node]
    assert ops[-2:] == ["Mul", "Add"]


@pytest.mark.parametrize("scaled", [True, False], ids=["scaled", "unscaled"])
def test_regressor_with_one_output(tmp_path, scaled):
    net = Network([2, 5, 1], activation="sigmoid", output="identity", seed=12)
    randomise_biases(net)
    scaling = {"target_mean": 3.5, "target_scale": 0.01} if scaled else {}
    model = Model(net, **scaling)
    fastbp.export_onnx(model, tmp_path / "r.onnx")
    X = inputs(100, 2, np.float64)
    result = run(tmp_path / "r.onnx", X)
    assert result["predictions"].shape == model.predict(X).shape == (100,)
    assert_close(result["predictions"], model.predict(X), np.float64)


# --------------------------------------------------------------------- files


@pytest.mark.parametrize("as_path", [str, Path], ids=["str", "Path"])
def test_model_file_version_2(tmp_path, as_path):
    net = Network([3, 6, 3], activation="tanh", output="softmax", dtype="float32", seed=13)
    randomise_biases(net)
    model = Model(net, classes=["x", "y", "z"], feature_mean=[1.0, 2.0, 3.0],
                  feature_scale=[0.5, 0.5, 2.0])
    model.save(tmp_path / "model.npz")
    proto = fastbp.export_onnx(as_path(tmp_path / "model.npz"), as_path(tmp_path / "m.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    X = inputs(100, 3, np.float64, loc=2.0)
    result = run(tmp_path / "m.onnx", X.astype(np.float32))
    assert entry_error(result["probabilities"], model.predict_proba(X)) <= RTOL[np.float32]
    assert result["label"].tolist() == model.predict(X).tolist()


def test_model_file_version_1(tmp_path):
    net = Network([4, 5, 2], activation="relu", output="softmax", seed=14)
    net.save(tmp_path / "net.npz")
    fastbp.export_onnx(tmp_path / "net.npz", tmp_path / "net.onnx")
    X = inputs(50, 4, np.float64)
    result = run(tmp_path / "net.onnx", X)
    assert_close(result["outputs"], net.forward(X), np.float64)
    assert result["label"].tolist() == net.predict(X).tolist()   # classes 0, 1


def test_export_replaces_a_file_atomically(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(b"old")
    fastbp.export_onnx(Network([2, 2], seed=15), path)
    onnx.checker.check_model(os.fspath(path))
    assert sorted(os.listdir(tmp_path)) == ["net.onnx"]   # no temporary file left


def test_unwritable_destination_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastbp.export_onnx(Network([2, 2], seed=15), tmp_path / "missing" / "net.onnx")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("source", [None, 3, np.zeros((2, 2)), [Network([2, 2], seed=0)]])
def test_not_a_network(tmp_path, source):
    with pytest.raises(TypeError, match="fastbp.Network, a fastbp.Model or the path"):
        fastbp.export_onnx(source, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file at .*nothing.npz"):
        fastbp.export_onnx(tmp_path / "nothing.npz", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_not_a_model_file(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a model file")
    with pytest.raises(ValueError, match="junk.npz"):
        fastbp.export_onnx(tmp_path / "junk.npz", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("opset, error", [(12, ValueError), (10_000, ValueError),
                                          ("17", TypeError), (True, TypeError),
                                          (17.0, TypeError)])
def test_bad_opset(tmp_path, opset, error):
    with pytest.raises(error, match="opset"):
        fastbp.export_onnx(Network([2, 2], seed=0), tmp_path / "x.onnx", opset=opset)


def test_build_onnx_in_memory():
    proto = build_onnx(Network([2, 3, 2], output="softmax", seed=0))
    onnx.checker.check_model(proto, full_check=True)
    assert [output.name for output in proto.graph.output] == ["outputs"]


# ------------------------------------------------------------------- imports


def test_importing_fastbp_does_not_import_onnx():
    code = ("import sys, fastbp; assert callable(fastbp.export_onnx); "
            "assert 'export_onnx' in fastbp.__all__; "
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_onnx_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"needs onnx: pip install 'fastbp\[onnx\]'"):
        fastbp.export_onnx(Network([2, 2], seed=0), tmp_path / "x.onnx")
