"""fastbp: backpropagation and gradient descent for fully connected networks.

The hot loops (fused forward pass, delta recursion, gradients and updates,
a whole epoch per GIL-free call) are Cython kernels; `Network` and `Trainer`
are a thin Python layer that validates input and keeps state.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from . import callbacks, schedules
from .callbacks import Callback, EarlyStopping, LambdaCallback
from .diagnostics import LayerCheck, gradient_check
from .model import Model
from .network import Network
from .schedules import (
    Constant,
    ExponentialDecay,
    InverseScaling,
    ReduceOnPlateau,
    StepDecay,
)
from .trainer import DivergenceError, Trainer


def export_onnx(source: Network | Model | str | os.PathLike[str],
                path: str | os.PathLike[str], *, opset: int = 17,
                sigmoid_operator: bool = False) -> Any:
    """Write an ONNX graph of a Network, a Model or a model file (needs ``fastbp[onnx]``).

    A thin wrapper that imports onnx only when called; the full
    documentation is that of `fastbp._onnx.export_onnx`.

    Parameters
    ----------
    source : Network, Model, str or os.PathLike
        The network, the model, or the path of a model file (version 1 or 2).
    path : str or os.PathLike
        Where to write the .onnx file (atomically).
    opset : int, default 17
        ONNX opset of the default domain, at least 13.
    sigmoid_operator : bool, default False
        Write sigmoids as ONNX's ``Sigmoid`` operator (onnxruntime's is an
        approximation) instead of an exact Exp-based formula.

    Returns
    -------
    onnx.ModelProto
        The model written, checked with ``onnx.checker.check_model``.
    """
    from ._onnx import export_onnx as _export_onnx

    return _export_onnx(source, path, opset=opset, sigmoid_operator=sigmoid_operator)

__all__ = [
    "Network",
    "Trainer",
    "Model",
    "DivergenceError",
    "export_onnx",
    "Callback",
    "EarlyStopping",
    "LambdaCallback",
    "gradient_check",
    "LayerCheck",
    "Constant",
    "StepDecay",
    "ExponentialDecay",
    "InverseScaling",
    "ReduceOnPlateau",
    "callbacks",
    "schedules",
    "__version__",
]

# A library logs but never prints: messages go nowhere unless the
# application configures logging.
logging.getLogger("fastbp").addHandler(logging.NullHandler())

__version__ = "0.1.0"
