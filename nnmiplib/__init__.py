"""nnmiplib: mixed-integer programming over trained ReLU networks.

One subpackage a concern, imported on first use (``nm.bounds``, ``nm.queries`` …), so
``import nnmiplib`` stays light and never needs torch or an optional solver:

- the objects of thesis chapter 1: :mod:`~nnmiplib.network` (``Network``),
  :mod:`~nnmiplib.domains` (input boxes), :mod:`~nnmiplib.data` (MNIST),
  :mod:`~nnmiplib.train` (the net zoo), :mod:`~nnmiplib.prune` (Algorithm 2);
- :mod:`~nnmiplib.bounds` — activation bounds (chapter 2);
- :mod:`~nnmiplib.mip` — the Big-M model and the solver backends;
- :mod:`~nnmiplib.queries` — PV and the comparator's queries (chapters 3–4);
- :mod:`~nnmiplib.vnnlib` — VNN-LIB queries on ONNX networks;
- :mod:`~nnmiplib.experiments` — cached, resumable grids on a pool or Dask;
- :mod:`~nnmiplib.study` — the book's chapter computations, verdicts and build;
- :mod:`~nnmiplib.cli` — the ``nnmiplib`` command.
"""

from __future__ import annotations

import importlib

from .domains import Box
from .network import Network, softmax

__version__ = "0.1.0"

__all__ = [
    "Box", "Network", "__version__", "bounds", "cli", "data", "domains", "experiments", "mip", "network",
    "onnx_io", "paths", "prune", "queries", "softmax", "study", "train", "vnnlib",
]
_SUBMODULES = set(__all__) - {"Box", "Network", "__version__", "softmax"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nnmiplib' has no attribute {name!r}")
