"""Solver backends for :class:`~nnmiplib.mip.encode.MipModel` (GUIDE §5).

Preference order (cvxpy style): ``highs`` (default, always installed), ``gurobi``
(when ``gurobipy`` is importable; the pip licence caps the model size), ``scip``
(``pyscipopt``, optional). Optional backends are imported only when used, so
``import nnmiplib`` works without them.
"""

from __future__ import annotations

import importlib
import time

from .base import Backend, ModelTooLargeError, Solution, SolverError, Status, safe_lp_bound

__all__ = [
    "PREFERENCE",
    "Backend",
    "ModelTooLargeError",
    "Solution",
    "SolverError",
    "Status",
    "available",
    "get_backend",
    "safe_lp_bound",
    "solve",
]

PREFERENCE = ("highs", "gurobi", "scip")
_CLASSES = {"highs": ("highs", "HighsBackend"), "gurobi": ("gurobi", "GurobiBackend"), "scip": ("scip", "ScipBackend")}


def get_backend(name: str = "highs") -> type[Backend]:
    """The backend class for ``name`` (``highs``, ``gurobi`` or ``scip``)."""
    key = str(name).lower()
    if key not in _CLASSES:
        raise ValueError(f"unknown solver {name!r}; choose one of {sorted(_CLASSES)}")
    mod, cls = _CLASSES[key]
    backend = getattr(importlib.import_module(f".{mod}", __name__), cls)
    if not backend.is_available():
        raise SolverError(f"solver {name!r} is not installed (pip install "
                          f"{ {'gurobi': 'gurobipy', 'scip': 'pyscipopt'}.get(key, 'highspy') }); "
                          f"installed: {available()}")
    return backend


def available() -> list[str]:
    """Installed backends, in preference order."""
    out = []
    for key in PREFERENCE:
        mod, cls = _CLASSES[key]
        if getattr(importlib.import_module(f".{mod}", __name__), cls).is_available():
            out.append(key)
    return out


#: the least time limit :func:`solve` gives the solver once building the backend is counted
MIN_LIMIT = 0.05


def solve(model, solver: str = "highs", time_limit: float | None = None, **kw) -> Solution:
    """Build ``solver``'s backend for ``model`` and solve once.

    A positive ``time_limit`` counts the build (passing the model: 0.3 s for a 3000x1 pair's
    joint model); the solver gets at least :data:`MIN_LIMIT` of it (or the whole of a smaller
    one); any other value goes to the backend as it is, which refuses it. Keyword arguments go
    to the backend (``threads``, ``mip_gap``, ``verbose``) or to :meth:`Backend.solve`
    (``start``, ``objective_target``).
    """
    t0 = time.perf_counter()
    init = {k: kw.pop(k) for k in ("threads", "mip_gap", "verbose") if k in kw}
    be = get_backend(solver)(model, **init)
    if time_limit is not None and time_limit > 0:
        time_limit = max(float(time_limit) - (time.perf_counter() - t0), min(float(time_limit), MIN_LIMIT))
    return be.solve(time_limit, **kw)
