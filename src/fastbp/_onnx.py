"""ONNX export of a Network or a Model: `export_onnx`.

The graph computes what fastbp computes, with standard operators of the
default ONNX domain that onnxruntime's CPU provider runs in float and double:

``X`` (N, n_0), in the network's dtype
    -> ``Sub(X, feature_mean)``, ``Div(., feature_scale)``  (a Model with a scaling)
    -> per layer ``Gemm(A, W^l, b^l, transB=1)`` (W as stored, shape (n_l, n_{l-1}))
       and the activation: sigmoid, ``Tanh``, ``Relu``, or none (identity);
       the output layer sigmoid, ``Softmax(axis=1)`` or none. The sigmoid is
       fastbp's own split ``Where(z < 0, e, 1) / (1 + e)`` with
       ``e = Exp(Neg(Abs(z)))`` (Abs, Neg, Exp, Add, Less, Where, Div), which
       keeps to a few ulp everywhere; onnxruntime's ``Sigmoid`` operator
       (``sigmoid_operator=True``) is an approximation (see `export_onnx`)
    -> ``outputs`` (N, n_L): A^L, as `Network.forward` gives it.

A classifier Model adds

``probabilities`` (N, n_classes)
    as `Model.predict_proba`: ``Concat(1 - p, p)`` for one sigmoid output,
    the outputs themselves otherwise;
``label`` (N,)
    as `Model.predict`: ``Gather(classes, index)`` with index
    ``Cast(Greater(p, 0.5), int64)`` for one sigmoid output (the argmax of
    (1 - p, p), ties to the first class as NumPy's argmax) or
    ``ArgMax(outputs, axis=1, keepdims=0)``; the labels are a constant tensor
    of int64, double, bool or string, as the model's classes are.

A regressor Model adds

``predictions`` (N,) for one output, (N, n_L) for several
    as `Model.predict`: ``Add(Mul(outputs, target_scale), target_mean)``
    when the model scales its targets, and a ``Squeeze`` of the one column.

All arithmetic is in the network's dtype (a float32 Model standardises and
unscales in float32, where `Model` itself works in float64; the difference
is float32 rounding).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from . import _io
from .model import Model
from .network import Network

if TYPE_CHECKING:   # pragma: no cover
    import onnx

__all__ = ["export_onnx", "DEFAULT_OPSET", "MIN_OPSET"]

#: The opset written unless asked otherwise: recent enough for every operator
#: used here in its current form, old enough for any onnxruntime since 1.12.
DEFAULT_OPSET = 17
#: Softmax(axis=1) over a row and Squeeze with axes as an input need opset 13.
MIN_OPSET = 13

_HIDDEN_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "identity": None}
_OUTPUT_OPS = {"sigmoid": "Sigmoid", "softmax": "Softmax", "identity": None, "exp": "Exp"}

Source = Union[Network, Model, str, "os.PathLike[str]"]


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise ImportError(
            "fastbp.export_onnx needs onnx: pip install 'fastbp[onnx]'") from exc
    return onnx, helper, numpy_helper


def _as_model(source: Any) -> tuple[Model | None, Network]:
    """(the Model or None, its Network) of an export's source, or a clear error."""
    if isinstance(source, Model):
        return source, source.network
    if isinstance(source, Network):
        return None, source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no model file at {str(path)!r}")
        model = Model.load(path)
        return model, model.network
    raise TypeError("export_onnx exports a fastbp.Network, a fastbp.Model or the path of "
                    f"a model file, got {type(source).__name__}")


def _check_opset(opset: Any) -> int:
    import onnx.defs

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an int, got {type(opset).__name__}")
    if not MIN_OPSET <= int(opset) <= newest:
        raise ValueError(f"opset must be between {MIN_OPSET} and {newest} (the newest this "
                         f"onnx knows), got {opset}")
    return int(opset)


def _label_tensor(classes: np.ndarray, helper: Any, numpy_helper: Any) -> Any:
    """The class labels as a constant ONNX tensor named 'classes'."""
    from onnx import TensorProto

    kind = classes.dtype.kind
    if kind in "US":
        values = [str(label).encode("utf-8") for label in classes.tolist()]
        return helper.make_tensor("classes", TensorProto.STRING, [len(values)], values)
    if kind == "b":
        array = classes.astype(np.bool_)
    elif kind == "i" or (kind == "u" and classes.size and int(classes.max()) < 2**63):
        array = classes.astype(np.int64)
    elif kind == "u":
        array = classes.astype(np.uint64)
    elif kind == "f":
        array = classes.astype(np.float64)
    else:
        raise ValueError(f"cannot write class labels of dtype {classes.dtype} to ONNX")
    return numpy_helper.from_array(np.ascontiguousarray(array), "classes")


class _GraphBuilder:
    """Nodes and constant initializers of one graph, with unique tensor names."""

    def __init__(self, helper: Any, numpy_helper: Any, dtype: np.dtype) -> None:
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.dtype = dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = {"X"}

    def _unique(self, hint: str) -> str:
        name, k = hint, 1
        while name in self._names:
            k += 1
            name = f"{hint}_{k}"
        self._names.add(name)
        return name

    def constant(self, hint: str, values: Any, dtype: Any = None) -> str:
        name = self._unique(hint)
        array = np.ascontiguousarray(np.asarray(values, dtype=dtype or self.dtype))
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def tensor(self, tensor: Any) -> str:
        self._names.add(tensor.name)
        self.initializers.append(tensor)
        return tensor.name

    def node(self, op: str, inputs: list[str], hint: str, output: str | None = None,
             **attributes: Any) -> str:
        out = output if output is not None else self._unique(hint)
        self._names.add(out)
        self.nodes.append(self.helper.make_node(
            op, inputs, [out], name=self._unique(f"{hint}_{op}"), **attributes))
        return out


def _sigmoid(g: _GraphBuilder, z: str, hint: str, output: str | None = None) -> str:
    """The logistic function as fastbp computes it, from exact operators.

    ``e = exp(-|z|)``, then ``1 / (1 + e)`` for z >= 0 and ``e / (1 + e)``
    for z < 0: the split that never overflows, accurate to a few ulp over
    the whole range (onnxruntime's CPU Sigmoid is a rational approximation
    with relative errors up to 1.8e-3 at z = -10 and beyond 1 below z = -10
    in float, and of 3e-12 at z = -10, 1e-8 at z = -18 in double).
    """
    if "one" not in g._names:
        g.constant("one", 1.0)
        g.constant("zero", 0.0)
    e = g.node("Exp", [g.node("Neg", [g.node("Abs", [z], f"{hint}_abs")], f"{hint}_negabs")],
               f"{hint}_exp")
    denominator = g.node("Add", ["one", e], f"{hint}_denominator")
    negative = g.node("Less", [z, "zero"], f"{hint}_negative")
    numerator = g.node("Where", [negative, e, "one"], f"{hint}_numerator")
    return g.node("Div", [numerator, denominator], hint, output=output)


def _network_arrays(network: Network) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Copies of the weights and biases, read while no training writes them."""
    with network._guard.reading("export_onnx"):
        return ([np.array(w, copy=True) for w in network.weights],
                [np.array(b, copy=True) for b in network.biases])


def build_onnx(source: Source, *, opset: int = DEFAULT_OPSET,
               sigmoid_operator: bool = False) -> "onnx.ModelProto":
    """The checked ONNX model of `source`, in memory (see `export_onnx`).

    Parameters
    ----------
    source : Network, Model, str or os.PathLike
    opset : int, default DEFAULT_OPSET
    sigmoid_operator : bool, default False

    Returns
    -------
    onnx.ModelProto
    """
    onnx, helper, numpy_helper = _import_onnx()
    from onnx import TensorProto

    model, network = _as_model(source)
    opset = _check_opset(opset)
    if not isinstance(sigmoid_operator, (bool, np.bool_)):
        raise TypeError(f"sigmoid_operator must be a bool, got {type(sigmoid_operator).__name__}")
    dtype = np.dtype(network.dtype)
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    sizes = network.layer_sizes
    hidden = network.activation
    hidden = [hidden] * (len(sizes) - 2) if isinstance(hidden, str) else list(hidden)
    weights, biases = _network_arrays(network)

    g = _GraphBuilder(helper, numpy_helper, dtype)
    current = "X"
    if model is not None and model.feature_mean is not None:
        mean = g.constant("feature_mean", model.feature_mean)
        scale = g.constant("feature_scale", model.feature_scale)
        current = g.node("Sub", [current, mean], "centred")
        current = g.node("Div", [current, scale], "standardised")

    n_layers = len(weights)
    for k in range(n_layers):
        last = k == n_layers - 1
        W = g.constant(f"W{k + 1}", weights[k])
        b = g.constant(f"b{k + 1}", biases[k])
        op = _OUTPUT_OPS[network.output] if last else _HIDDEN_OPS[hidden[k]]
        current = g.node("Gemm", [current, W, b], f"Z{k + 1}", transB=1,
                         output="outputs" if last and op is None else None)
        if op == "Sigmoid" and not sigmoid_operator:
            current = _sigmoid(g, current, f"A{k + 1}", output="outputs" if last else None)
        elif op is not None:
            attributes = {"axis": 1} if op == "Softmax" else {}
            current = g.node(op, [current], f"A{k + 1}",
                             output="outputs" if last else None, **attributes)

    n_outputs = sizes[-1]
    outputs = [helper.make_tensor_value_info("outputs", elem, ["N", n_outputs])]
    metadata = {"fastbp_layer_sizes": json.dumps(sizes),
                "fastbp_hidden_activations": json.dumps(hidden),
                "fastbp_output_activation": network.output}

    if model is not None and model.task == "classify":
        labels = g.tensor(_label_tensor(np.asarray(model.classes), helper, numpy_helper))
        if n_outputs == 1:
            if "one" not in g._names:
                g.constant("one", 1.0)
            half = g.constant("half", 0.5)
            complement = g.node("Sub", ["one", "outputs"], "complement")
            g.node("Concat", [complement, "outputs"], "probabilities", axis=1,
                   output="probabilities")
            above = g.node("Greater", ["outputs", half], "above_half")
            above = g.node("Squeeze", [above, g.constant("axis1", [1], np.int64)],
                           "above_half_row")
            index = g.node("Cast", [above], "class_index", to=TensorProto.INT64)
        else:
            g.node("Identity", ["outputs"], "probabilities", output="probabilities")
            index = g.node("ArgMax", ["outputs"], "class_index", axis=1, keepdims=0)
        g.node("Gather", [labels, index], "label", axis=0, output="label")
        n_classes = 2 if n_outputs == 1 else n_outputs
        label_type = next(t for t in g.initializers if t.name == labels).data_type
        outputs.append(helper.make_tensor_value_info("label", label_type, ["N"]))
        outputs.append(helper.make_tensor_value_info("probabilities", elem, ["N", n_classes]))
        metadata["fastbp_task"] = "classify"
        metadata["fastbp_classes"] = json.dumps(np.asarray(model.classes).tolist())
    elif model is not None:   # a regressor
        current = "outputs"
        if model.target_mean is not None:
            scale = g.constant("target_scale", model.target_scale)
            mean = g.constant("target_mean", model.target_mean)
            current = g.node("Mul", [current, scale], "unscaled")
            current = g.node("Add", [current, mean], "uncentred",
                             output=None if n_outputs == 1 else "predictions")
        if n_outputs == 1:
            g.node("Squeeze", [current, g.constant("axis1", [1], np.int64)], "predictions",
                   output="predictions")
        elif current == "outputs":
            g.node("Identity", [current], "predictions", output="predictions")
        shape = ["N"] if n_outputs == 1 else ["N", n_outputs]
        outputs.append(helper.make_tensor_value_info("predictions", elem, shape))
        metadata["fastbp_task"] = "regress"
    if model is not None and model.feature_names is not None:
        metadata["fastbp_feature_names"] = json.dumps(model.feature_names)

    inputs = [helper.make_tensor_value_info("X", elem, ["N", sizes[0]])]
    graph = helper.make_graph(g.nodes, "fastbp", inputs, outputs, g.initializers,
                              doc_string=repr(model if model is not None else network))
    opsets = [helper.make_opsetid("", opset)]
    from . import __version__

    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastbp",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(source: Source, path: str | os.PathLike[str], *,
                opset: int = DEFAULT_OPSET, sigmoid_operator: bool = False) -> "onnx.ModelProto":
    """Write an ONNX graph of a network or model that computes what fastbp computes.

    Parameters
    ----------
    source : Network, Model, str or os.PathLike
        What to export: a Network (graph output ``outputs`` only), a Model
        (with its input standardisation and the ``label`` and
        ``probabilities`` of a classifier or the ``predictions`` of a
        regressor), or the path of a model file (version 1 or 2, read with
        `Model.load`).
    path : str or os.PathLike
        Where to write the .onnx file. The write is atomic: a temporary
        file beside `path` renamed over it once complete.
    opset : int, default 17
        The ONNX opset of the default domain, at least 13.
    sigmoid_operator : bool, default False
        Write each sigmoid as ONNX's one ``Sigmoid`` operator instead of
        fastbp's formula ``Where(z < 0, e, 1) / (1 + e)``, ``e = Exp(-|z|)``.
        Smaller and fused by some runtimes, but onnxruntime's CPU Sigmoid is
        an approximation: in float its relative error reaches 1.8e-3 at
        z = -10 and exceeds 1 below (absolute error 1.5e-7), in double 3e-12
        at z = -10 and 1e-8 at z = -18, beyond the 1e-5 and 1e-12 that the
        default graph keeps to.

    Returns
    -------
    onnx.ModelProto
        The model written (checked with ``onnx.checker.check_model``).

    Raises
    ------
    ImportError
        Without the onnx package (``pip install 'fastbp[onnx]'``).
    TypeError
        For a source that is none of the above, or an opset that is no int.
    FileNotFoundError
        For a path with no file.
    ValueError
        For a file that is no valid model file, or an opset out of range.

    Notes
    -----
    The graph's input is ``X`` of shape (N, n_0) in the network's dtype
    (tensor(float) or tensor(double)); its outputs are ``outputs``
    (N, n_L), equal to ``Network.forward`` of the standardised inputs, and
    for a Model ``label`` (N,) and ``probabilities`` (N, n_classes), as
    `Model.predict` and `Model.predict_proba` give them, or
    ``predictions`` as `Model.predict`. Operators: Sub, Div, Gemm, Abs, Neg,
    Exp, Add, Less, Where (the sigmoid; or Sigmoid), Tanh, Relu, Softmax,
    Concat, Greater, Squeeze, Cast, ArgMax, Gather, Identity, Mul. All run in
    float and double on onnxruntime's CPU provider. The model's metadata holds the layer sizes, the
    activations, the task, the classes and the feature names (JSON).

    Examples
    --------
    >>> import fastbp
    >>> net = fastbp.Network([2, 3, 1], seed=0)
    >>> proto = fastbp.export_onnx(net, "net.onnx")          # doctest: +SKIP
    >>> import onnxruntime                                   # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("net.onnx")   # doctest: +SKIP
    >>> session.run(["outputs"], {"X": X})[0]                # doctest: +SKIP
    """
    proto = build_onnx(source, opset=opset, sigmoid_operator=sigmoid_operator)
    _io.atomic_write(path, lambda stream: stream.write(proto.SerializeToString()),
                     suffix=".onnx.tmp")
    return proto
