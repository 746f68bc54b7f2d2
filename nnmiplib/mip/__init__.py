"""The Big-M model of thesis equations (1.1)–(1.8) and the solvers that answer it.

- :func:`encode` — one or more networks sharing an input box as a :class:`MipModel`
  (binaries only for unstable neurons), or its LP relaxation; :func:`encode_triangle` —
  the triangle LP relaxation the Bounder uses (``encode``);
- :mod:`~nnmiplib.mip.solvers` — HiGHS (default), Gurobi and SCIP backends behind one
  :class:`~nnmiplib.mip.solvers.Backend` interface and one status enum.
"""

from . import solvers
from .encode import MipModel, NetVars, encode, encode_triangle

__all__ = ["MipModel", "NetVars", "encode", "encode_triangle", "solvers"]
