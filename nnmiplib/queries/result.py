"""The answer of every query: :class:`Result`, with its float64 re-check and JSON form.

Soundness rule 2 (GUIDE §4): every reported solution is re-run through the networks in
float64. A :class:`Result` carries the input ``x`` the solver (or an attack) produced,
the objective *recomputed* from the networks (``objective``), the solver's own value
(``solver_objective``), a valid ``dual_bound`` and whether the two values agree
(``verified``, with the tolerance used stored in ``tolerance``).

Statuses
--------
``optimal``                 the dual bound meets the incumbent within the solver's gap.
``time_limit_feasible``     stopped by the time limit with an incumbent.
``time_limit_infeasible``   stopped by the time limit without any incumbent.
``infeasible``              the model is proven infeasible (no input satisfies the query).
``feasible``                a verified input, optimality not proven although no limit was hit
                            (maxflip: the solver's optimum counted a ReLU at a = 0 as active).
``decided``                 stopped once the yes/no question was settled (``decide=True``):
                            a verified witness beyond the threshold, or a dual bound below it.
``error``                   the solver failed; ``message`` says why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..network import Network, softmax

__all__ = ["STATUSES", "Result", "rel_tol", "relative_gap"]

STATUSES = ("optimal", "time_limit_feasible", "time_limit_infeasible", "infeasible", "feasible", "decided", "error")

#: relative tolerance for "the solver's value is reproduced in float64": |v − w| ≤ REL·(1 + |w|)
VERIFY_REL_TOL = 1e-5
#: how far outside the domain box an input may lie (absolute, per coordinate)
DOMAIN_TOL = 1e-9


def rel_tol(v: float, rel: float = VERIFY_REL_TOL) -> float:
    """The absolute tolerance ``rel·(1 + |v|)`` used by :attr:`Result.verified`."""
    return rel * (1.0 + abs(float(v)))


def relative_gap(primal: float | None, dual: float | None) -> float:
    """SPEC §6 optimality gap |dual − primal| / |primal| (∞ without an incumbent)."""
    if primal is None or dual is None or not np.isfinite(primal) or not np.isfinite(dual):
        return math.inf
    return abs(dual - primal) / max(abs(primal), 1e-10)


def _enc(v: Any) -> Any:
    """JSON-safe encoding: arrays → lists, ±inf/nan → strings."""
    if isinstance(v, np.ndarray):
        return {"__array__": [_enc(x) for x in v.tolist()] if v.ndim else _enc(v.item()), "dtype": str(v.dtype)}
    if isinstance(v, (np.floating, float)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, dict):
        return {str(k): _enc(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    return v


def _dec_float(v: Any) -> Any:
    if isinstance(v, str) and v in ("inf", "-inf", "nan"):
        return float(v)
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict) and "__array__" in v:
        data = v["__array__"]

        def fix(x):
            return [fix(y) for y in x] if isinstance(x, list) else _dec_float(x)

        return np.asarray(fix(data), dtype=v.get("dtype", "float64"))
    if isinstance(v, dict):
        return {k: _dec(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return _dec_float(v)


@dataclass
class Result:
    """Outcome of one query (PV, maxdiff, maxout, maxflip, mineps).

    Attributes
    ----------
    query : str
        Query name, e.g. ``"maxdiff"``.
    sense : str
        ``"max"`` or ``"min"`` (the direction in which ``dual_bound`` bounds ``objective``).
    x : ndarray or None
        The best input found (None when there is no incumbent).
    objective : float or None
        The query's value at ``x`` recomputed in float64 from the networks.
    solver_objective : float or None
        The value the solver reported for its incumbent (for relaxed softmax objectives:
        the relaxation's value at the incumbent).
    dual_bound : float or None
        A valid bound: every feasible input has value ≤ ``dual_bound`` (``sense="max"``)
        or ≥ it (``sense="min"``).
    gap : float
        |dual − objective| / |objective| (∞ without incumbent).
    status : str
        One of :data:`STATUSES`.
    verified : bool
        ``x`` lies in the domain (±1e-9), the solver's value is reproduced within
        ``tolerance`` and the query's strict conditions hold at ``x`` (with ``margin``).
    """

    query: str
    sense: str = "max"
    x: np.ndarray | None = None
    objective: float | None = None
    solver_objective: float | None = None
    dual_bound: float | None = None
    gap: float = math.inf
    status: str = "time_limit_infeasible"
    time: float = 0.0
    nodes: int = 0
    logits: list = field(default_factory=list)
    probabilities: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    verified: bool = False
    tolerance: float = VERIFY_REL_TOL
    margin: float = 0.0
    solver: str = "highs"
    incumbent_source: str | None = None
    message: str = ""
    nets: list = field(default_factory=list)      # digests of the networks, in order
    extra: dict = field(default_factory=dict)     # query-specific data (eps, iterations, …)

    # ------------------------------------------------------------------ helpers
    @property
    def has_solution(self) -> bool:
        return self.x is not None

    @property
    def is_optimal(self) -> bool:
        return self.status == "optimal"

    def fill_outputs(self, nets: Sequence[Network]) -> None:
        """Set ``logits``, ``probabilities``, ``classes`` and ``nets`` from ``x`` (float64)."""
        self.nets = [n.digest() for n in nets]
        if self.x is None:
            self.logits, self.probabilities, self.classes = [], [], []
            return
        self.logits = [np.asarray(n.forward(self.x), dtype=np.float64) for n in nets]
        self.probabilities = [softmax(a) for a in self.logits]
        self.classes = [int(np.argmax(a)) for a in self.logits]

    def summary(self) -> str:
        obj = "—" if self.objective is None else f"{self.objective:.6g}"
        db = "—" if self.dual_bound is None else f"{self.dual_bound:.6g}"
        return (f"{self.query}: {self.status}, objective {obj}, dual bound {db}, gap {self.gap:.3g}, "
                f"{self.time:.2f}s, verified={self.verified}, classes={self.classes}")

    def __repr__(self) -> str:
        return f"<Result {self.summary()}>"

    # --------------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        return _enc(asdict(self))

    def to_json(self, **kw) -> str:
        """Strict JSON (arrays as lists, ±inf as strings)."""
        return json.dumps(self.to_dict(), allow_nan=False, **kw)

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        d = _dec(dict(d))
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown Result fields {sorted(unknown)}; was this written by another version?")
        if d.get("x") is not None:
            d["x"] = np.asarray(d["x"], dtype=np.float64)
        for k in ("logits", "probabilities"):
            d[k] = [np.asarray(v, dtype=np.float64) for v in d.get(k, [])]
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> Result:
        return cls.from_dict(json.loads(s))
