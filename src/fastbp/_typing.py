"""Type aliases shared by the annotations of the package (for type checkers only).

Modules import these under ``typing.TYPE_CHECKING``; nothing here runs in
the package's normal use.
"""

from __future__ import annotations

import os
from typing import Any, TypeAlias, Union

import numpy as np
from numpy.typing import NDArray

__all__ = ["FloatArray", "IntArray", "PathLike", "History"]

#: a float32 or float64 array (a network's dtype)
FloatArray: TypeAlias = NDArray[np.floating[Any]]
#: row indices, layer sizes and labels
IntArray: TypeAlias = NDArray[np.intp]
#: what a file argument takes
PathLike: TypeAlias = Union[str, "os.PathLike[str]"]
#: a fit's per-epoch values by metric name
History: TypeAlias = "dict[str, list[float]]"
