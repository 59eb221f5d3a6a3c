"""fastbp: backpropagation and gradient descent for fully connected networks.

The hot loops (fused forward pass, delta recursion, gradients and updates,
a whole epoch per GIL-free call) are Cython kernels; `Network` and `Trainer`
are a thin Python layer that validates input and keeps state.
"""

import logging

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

__all__ = [
    "Network",
    "Trainer",
    "Model",
    "DivergenceError",
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
