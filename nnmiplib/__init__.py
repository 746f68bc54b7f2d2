"""nnmiplib: mixed-integer programming over trained ReLU networks.

Submodules load on first use (``nm.bounds``, ``nm.queries`` …), so ``import nnmiplib``
stays light and never needs torch or an optional solver.
"""

from __future__ import annotations

import importlib

from .domains import Box
from .network import Network, softmax

__version__ = "0.1.0"

_SUBMODULES = {
    "data", "train", "network", "prune", "domains", "bounds", "encode", "bounder", "queries",
    "solvers", "experiments", "plots", "cli", "onnx_io", "vnnlib_io", "softmax_pwl", "attacks",
    "verdicts", "study", "bookbuild", "result", "query_core", "softmax_query", "verify", "paths",
}

__all__ = ["Network", "Box", "softmax", "__version__", *sorted(_SUBMODULES)]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nnmiplib' has no attribute {name!r}")
