"""Solver-independent pieces: the status enum, the solution record, the backend base class.

Every backend solves a :class:`~nnmiplib.mip.encode.MipModel`. The contract (GUIDE §5):

* one :class:`Status` mapped from each solver's own codes;
* ``dual_bound`` is a bound valid in the model's sense (``≥`` every feasible objective
  for ``max``, ``≤`` for ``min``) *as reported by the solver*, i.e. exact up to the
  solver's tolerances; :mod:`nnmiplib.bounds.bounder` widens it before calling it a proof;
* ``objective`` is the incumbent's value (never a bound);
* a time limit applies to each :meth:`Backend.solve` call separately.
"""

from __future__ import annotations

import enum
import importlib
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["Backend", "ModelTooLargeError", "Solution", "SolverError", "Status", "safe_lp_bound"]


class Status(enum.Enum):
    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    TIME_LIMIT = "time_limit"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class SolverError(RuntimeError):
    """A backend could not build or solve a model."""


class ModelTooLargeError(SolverError):
    """The installed licence does not admit a model this large (Gurobi's pip licence)."""


@dataclass
class Solution:
    """Outcome of one solve.

    ``objective``: incumbent value (None without incumbent); ``dual_bound``: solver's
    bound in the model's sense (None when unknown); ``x``: incumbent (None without);
    ``time``: wall seconds of this solve; ``nodes``: branch-and-bound nodes (0 for LP);
    ``gap``: relative gap |dual − primal| / |primal| (inf without incumbent);
    ``row_dual`` / ``col_dual``: LP duals when the backend provides them (used for the
    safe LP bound of :func:`safe_lp_bound`).
    """

    status: Status
    objective: float | None = None
    dual_bound: float | None = None
    x: np.ndarray | None = None
    time: float = 0.0
    nodes: int = 0
    gap: float = float("inf")
    message: str = ""
    row_dual: np.ndarray | None = None
    col_dual: np.ndarray | None = None
    solver: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.OPTIMAL


def relative_gap(primal: float | None, dual: float | None) -> float:
    if primal is None or dual is None or not np.isfinite(primal) or not np.isfinite(dual):
        return float("inf")
    return abs(dual - primal) / max(abs(primal), 1e-10)


class Backend:
    """Base class: keeps the model in sync and defines the interface.

    Subclasses implement ``_build``, ``_set_objective``, ``_add_rows``,
    ``_set_col_bounds`` and ``_solve``. ``options`` are the solver's own parameters by
    its own names (e.g. HiGHS ``{"simplex_strategy": 1}``, Gurobi ``{"Method": 1}``),
    applied after the backend's defaults; an unknown name or bad value raises
    :class:`SolverError`.
    """

    name = "base"
    capabilities: frozenset = frozenset()

    def __init__(self, model, *, threads: int = 1, mip_gap: float = 1e-6, verbose: bool = False,
                 options: dict | None = None):
        if model.n_vars == 0:
            raise ValueError("the model has no variables")
        self.model = model
        self.threads = int(threads)
        self.mip_gap = float(mip_gap)
        self.verbose = bool(verbose)
        self.options = dict(options or {})
        self._build()

    #: the Python module the backend drives, imported lazily (``None``: no solver behind it)
    module: str | None = None

    @classmethod
    def is_available(cls) -> bool:
        """Whether the backend's solver module imports here."""
        if cls.module is None:
            return False
        try:
            importlib.import_module(cls.module)
        except ImportError:
            return False
        return True

    # -- public interface ------------------------------------------------------------
    def set_objective(self, c, sense: str = "max", offset: float = 0.0) -> None:
        """Replace the objective (the model and the solver); keeps the solver's basis."""
        self.model.set_objective(c, sense, offset)
        self._set_objective()

    def add_rows(self, A, lo, hi) -> np.ndarray:
        idx = self.model.add_rows(A, lo, hi)
        self._add_rows(self.model.A[idx[0]:idx[-1] + 1] if idx.size else None, idx)
        return idx

    def set_col_bounds(self, idx, lo, hi) -> None:
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), idx.shape).copy()
        hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), idx.shape).copy()
        if (lo > hi).any():
            raise ValueError("set_col_bounds: lo > hi")
        self.model.col_lo[idx] = lo
        self.model.col_hi[idx] = hi
        self._set_col_bounds(idx, lo, hi)

    def solve(self, time_limit: float | None = None, *, start: np.ndarray | None = None, **kw) -> Solution:
        """Solve the current model; ``time_limit`` (seconds) applies to this call only.

        Optional keywords: ``objective_target`` (MIP: stop once an incumbent is at least
        this good, status INTERRUPTED); ``dual_stop`` (MIP, backends with the
        ``"dual_stop"`` capability: stop once the dual bound is at least this good for the
        question asked — ``≤ dual_stop`` for max — status INTERRUPTED with that dual
        bound; other backends solve on, which is slower but never wrong).
        """
        if time_limit is not None and not time_limit > 0:
            raise ValueError(f"time_limit must be positive seconds or None, got {time_limit!r}")
        t0 = time.perf_counter()
        sol = self._solve(time_limit, start, **kw)
        sol.time = time.perf_counter() - t0
        sol.solver = self.name
        if sol.gap == float("inf") and sol.status is Status.OPTIMAL and sol.objective is not None:
            sol.gap = relative_gap(sol.objective, sol.dual_bound)
        return sol

    # -- to implement ----------------------------------------------------------------
    def _build(self) -> None:
        raise NotImplementedError

    def _set_objective(self) -> None:
        raise NotImplementedError

    def _add_rows(self, block, idx) -> None:
        raise NotImplementedError

    def _set_col_bounds(self, idx, lo, hi) -> None:
        raise NotImplementedError

    def _solve(self, time_limit, start, **kw) -> Solution:
        raise NotImplementedError


_EPS = np.finfo(np.float64).eps


def _ns_max(model, c: np.ndarray, y: np.ndarray) -> float:
    """Neumaier–Shcherbina upper bound on max c·v over the model's LP for one dual vector y."""
    y = np.asarray(y, dtype=np.float64).copy()
    y[(y > 0) & ~np.isfinite(model.row_hi)] = 0.0  # a side at infinity cannot be used
    y[(y < 0) & ~np.isfinite(model.row_lo)] = 0.0
    y[~np.isfinite(y)] = 0.0
    A = model.A
    cache = getattr(model, "_ns_cache", None)
    if cache is None or cache[0] is not A:
        k = (np.diff(A.tocsc().indptr).max(initial=0) if A.nnz else 0) + 2
        cache = (A, abs(A).T.tocsr(), A.T.tocsr(), k)
        model._ns_cache = cache
    _, absAT, AT, k = cache
    r = c - AT @ y  # reduced costs: c·v = r·v + y·(A v)
    with np.errstate(invalid="ignore"):
        col = np.where(r > 0, r * model.col_hi, np.where(r < 0, r * model.col_lo, 0.0))
        row = np.where(y > 0, y * model.row_hi, np.where(y < 0, y * model.row_lo, 0.0))
    if not (np.isfinite(col).all() and np.isfinite(row).all()):
        return float("inf")
    # forward rounding-error bound of every sum above (k terms each: gamma_k ≤ 1.01·k·eps)
    vmax = np.maximum(np.abs(model.col_lo), np.abs(model.col_hi))
    vmax = np.where(np.isfinite(vmax), vmax, 0.0)  # r is exactly 0 there, or the bound is already inf
    err_r = (absAT @ np.abs(y) + np.abs(c)) * vmax
    n = col.size + row.size + 2
    margin = 1.01 * _EPS * (k * err_r.sum() + n * (np.abs(col).sum() + np.abs(row).sum()))
    return float(col.sum() + row.sum() + margin)


def safe_lp_bound(model, c, sense: str, row_dual) -> float:
    """A rigorous bound on the LP optimum of ``c·v`` (+ ``model.offset`` is *not* added).

    For any vector ``y``, ``c·v = (c − Aᵀy)·v + yᵀ(A v)``; maximising each term over
    the column box and the row range gives an upper bound on ``max c·v`` over the LP
    relaxation (Neumaier & Shcherbina 2004). Dual values from an imprecise or even
    non-optimal solve therefore still give a valid bound; only its tightness depends on
    their quality. Both ``y`` and ``−y`` are tried (solvers differ in sign convention)
    and the tighter is kept. A margin bounds the floating-point error of the sums.
    For ``sense="min"`` the bound is a lower bound on ``min c·v``. Columns must have
    finite bounds wherever the reduced cost is nonzero, else the bound is ±inf.
    """
    c = np.asarray(c, dtype=np.float64)
    if row_dual is None:
        return float("inf") if sense == "max" else float("-inf")
    if sense == "max":
        return min(_ns_max(model, c, row_dual), _ns_max(model, c, -np.asarray(row_dual)))
    return -min(_ns_max(model, -c, row_dual), _ns_max(model, -c, -np.asarray(row_dual)))
