"""fastbp: backpropagation and gradient descent for fully connected networks.

The hot loops (fused forward pass, delta recursion, gradients and updates,
a whole epoch per GIL-free call) are Cython kernels; `Network` and `Trainer`
are a thin Python layer that validates input and keeps state.
"""

from .network import Network
from .trainer import DivergenceError, Trainer

__all__ = ["Network", "Trainer", "DivergenceError", "__version__"]

__version__ = "0.1.0"
