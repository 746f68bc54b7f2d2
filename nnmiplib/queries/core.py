"""Machinery shared by the queries (:mod:`nnmiplib.queries`).

Bounds handling, MIP starts checked against the model, the solver call, the widening of
dual bounds, the status map, and :func:`finish_result`, which picks the best candidate input
(solver incumbent, attack points, a polished solver point), re-evaluates it in float64
and fills the :class:`~nnmiplib.queries.result.Result` (GUIDE §4 rule 2), and the version tag of cached query results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from ..bounds.base import Bounds
from ..domains import Box
from ..network import Network
from . import attacks as atk
from .result import DOMAIN_TOL, Result, rel_tol, relative_gap

__all__ = [
    "DUAL_SAFETY",
    "RESULTS_VERSION",
    "START_TOL",
    "add_rows",
    "add_selection",
    "cache_version",
    "check_class",
    "check_nets",
    "check_query_arguments",
    "check_time_limit",
    "check_x0",
    "fill_dual",
    "finish_result",
    "get_bounds",
    "interval_objective_bound",
    "logit_cols",
    "lp_objective_bound",
    "run_model",
    "solve_linear",
    "solver_input",
    "start_violation",
    "widen_dual",
]

log = logging.getLogger("nnmiplib.queries")

#: Bump when a query can return a different result for the same inputs (a new relaxation,
#: another time budget rule): cached experiment cells computed by older code are then not reused.
RESULTS_VERSION = "2"

#: outward widening of a solver's dual bound (relative), against its tolerances
DUAL_SAFETY = 1e-6
#: largest row violation for a MIP start to be passed to the solver
START_TOL = 1e-6


def cache_version() -> str:
    """Version tag for experiment grids whose cells run queries."""
    from .. import __version__

    return f"{__version__}+queries{RESULTS_VERSION}"


# -------------------------------------------------------------------- argument checks
def check_time_limit(time_limit) -> float | None:
    """``time_limit`` as positive seconds, or None for no limit (``inf`` is read as None).

    Raises
    ------
    ValueError
        For 0, a negative number, NaN, a bool or anything that is not a number.
    """
    if time_limit is None:
        return None
    if isinstance(time_limit, (bool, np.bool_)) or not isinstance(time_limit, (int, float, np.integer, np.floating)) \
            or np.isnan(time_limit) or not time_limit > 0:
        raise ValueError(f"time_limit must be positive seconds, or None for no limit; got {time_limit!r}")
    return None if np.isinf(time_limit) else float(time_limit)


def check_class(value, n_classes: int, what: str = "label") -> int:
    """``value`` as a class index 0 ≤ value < ``n_classes``.

    Raises
    ------
    ValueError
        Naming ``what``, for a bool, a non-integer (``1.7``, ``"3"``) or an index out of range.
    """
    ok = isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer())
    if isinstance(value, (bool, np.bool_)) or not ok:
        raise ValueError(f"{what} must be an integer class index in 0..{n_classes - 1}, got {value!r}")
    if not 0 <= int(value) < n_classes:
        raise ValueError(f"{what}={int(value)} is not a class of a network with {n_classes} outputs "
                         f"(0..{n_classes - 1})")
    return int(value)


def check_query_arguments(*, domain=None, time_limit=None, solver: str = "highs", bounds=None,
                          bounds_method: str = "lp", attack: bool = True, rng=0, counts: dict | None = None,
                          **numbers) -> float | None:
    """Validate the arguments every query shares, before any work; return ``time_limit`` (see
    :func:`check_time_limit`).

    Parameters
    ----------
    domain : Box
        Must be a :class:`~nnmiplib.domains.Box`.
    time_limit, solver, bounds, bounds_method, attack, rng
        As in the queries: ``solver`` must name an installed backend
        (:func:`nnmiplib.mip.solvers.get_backend`), ``bounds_method`` one of
        :data:`nnmiplib.bounds.compute.METHODS` when ``bounds`` is None, ``attack`` a bool,
        ``rng`` anything :func:`numpy.random.default_rng` accepts.
    counts : dict, optional
        Name → value of arguments that must be integers ≥ 1 (e.g. ``n_samples``).
    **numbers
        Name → value of arguments that must be finite numbers ≥ 0 (margins, ``tol``, ``tau``).

    Raises
    ------
    ValueError
        Naming the first argument that means nothing (``SolverError`` for a solver that is
        known but not installed).
    """
    from ..bounds.compute import METHODS
    from ..domains import count
    from ..mip.solvers import get_backend

    if domain is not None and not isinstance(domain, Box):
        raise ValueError(f"domain must be an nnmiplib.domains.Box (e.g. unit_box(n), linf_ball(x0, δ), box(lo, hi)), "
                         f"got {type(domain).__name__}")
    time_limit = check_time_limit(time_limit)
    if not isinstance(solver, str):
        raise ValueError(f"solver must be a solver name such as 'highs', got {solver!r}")
    get_backend(solver)
    if bounds is None and bounds_method not in METHODS:
        raise ValueError(f"bounds_method must be one of {', '.join(METHODS)}, got {bounds_method!r}")
    if not isinstance(attack, (bool, np.bool_)):
        raise ValueError(f"attack must be True or False, got {attack!r}")
    try:
        np.random.default_rng(rng)  # returns a Generator itself unchanged: no state is drawn
    except (TypeError, ValueError) as exc:
        raise ValueError(f"rng must be a seed (a non-negative integer), a numpy Generator or None, got {rng!r} "
                         f"({exc})") from None
    for name, v in numbers.items():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number ≥ 0, got {v!r}")
    for name, v in (counts or {}).items():
        count(v, name)
    return time_limit


def check_x0(x0, n_inputs: int) -> np.ndarray:
    """``x0`` as a flat float64 vector of ``n_inputs`` finite real numbers (``ValueError`` otherwise)."""
    from ..domains import real_vector

    x = real_vector(x0, "x0")
    if x.size != n_inputs:
        raise ValueError(f"x0 has {x.size} entries; the network takes {n_inputs}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x0 contains NaN or infinite values")
    return x


# ----------------------------------------------------------------------------- helpers
def get_bounds(nets: Sequence[Network], domain: Box, bounds=None, method: str = "lp", **kw) -> tuple[list, float]:
    """One Bounds per network on ``domain`` (given or computed); returns (bounds, seconds)."""
    t0 = time.perf_counter()
    if bounds is None:
        from ..bounds.compute import compute_bounds

        bounds = [compute_bounds(n, domain, method=method, progress=False, **kw) for n in nets]
    elif not isinstance(bounds, (list, tuple)):
        bounds = [bounds]
    bounds = list(bounds)
    if len(bounds) != len(nets):
        raise ValueError(f"got {len(bounds)} bounds for {len(nets)} networks; pass one Bounds per network")
    for n, b in zip(nets, bounds):
        if not isinstance(b, Bounds):
            raise ValueError(f"bounds must be nnmiplib Bounds objects (from compute_bounds), one per network, or None; "
                             f"got {type(b).__name__}")
        dig = getattr(b, "net_digest", None)
        if dig is not None and dig != n.digest():
            raise ValueError(f"bounds were computed for another network (digest {dig[:10]} ≠ {n.digest()[:10]}); "
                             "bounds of a pruned network are not valid for the original (SPEC §6)")
        bd = getattr(b, "domain", None)
        if isinstance(bd, Box) and bd.n == domain.n and (np.any(domain.lo < bd.lo - 1e-12) or np.any(domain.hi > bd.hi + 1e-12)):
            raise ValueError("bounds were computed on a smaller domain than the query's; recompute them on this domain")
    return bounds, time.perf_counter() - t0


def check_nets(nets: Sequence[Network], domain: Box) -> None:
    """Each of ``nets`` is a :class:`~nnmiplib.Network` taking ``domain``'s number of inputs."""
    if not isinstance(domain, Box):
        raise ValueError(f"domain must be an nnmiplib.domains.Box, got {type(domain).__name__}")
    for n in nets:
        if not isinstance(n, Network):
            raise ValueError(f"expected nnmiplib.Network objects, got {type(n).__name__}")
        domain.check_dim(n.n_inputs)


def add_rows(model, coefs: list[dict], lo, hi) -> None:
    r, c, d = [], [], []
    for i, row in enumerate(coefs):
        for j, v in row.items():
            r.append(i)
            c.append(int(j))
            d.append(float(v))
    model.add_rows(sp.csr_matrix((d, (r, c)), shape=(len(coefs), model.n_vars)), lo, hi)


def add_selection(model, exprs: list[dict], lows, top: float, v: int | None = None, level: float = 0.0
                  ) -> np.ndarray:
    """Big-M selection rows: ``v + level ≤ e_k + M_k (1 − y_k)`` for every ``k``, ``Σ_k y_k = 1``.

    Together they say ``v + level ≤ max_k e_k`` and let it hold with equality, so maximising
    the column ``v`` maximises ``max_k e_k`` (PV's margin, max_logit_change), and without a
    column (``v=None``) they say "some ``e_k ≥ level``" (mineps's second network).

    Parameters
    ----------
    exprs : the ``e_k`` as ``{column: coefficient}``.
    lows : valid lower bounds, ``e_k ≥ low_k`` on the whole domain.
    top : an upper bound of ``v + level``; ``M_k = max(top − low_k, 0)`` makes row ``k``
        void where ``y_k = 0``.
    v, level : the column (or None) and a constant.

    Returns the binary columns ``y`` (one per expression, in order).
    """
    y = model.add_vars(len(exprs), 0.0, 1.0, integer=True)
    rows, rhs = [], []
    for e, low, yk in zip(exprs, lows, y):
        M = max(float(top) - float(low), 0.0)
        row = {j: -c for j, c in e.items()}
        row[int(yk)] = M
        if v is not None:
            row[int(v)] = row.get(int(v), 0.0) + 1.0
        rows.append(row)
        rhs.append(M - level)
    rows.append({int(j): 1.0 for j in y})
    add_rows(model, rows, [-np.inf] * len(exprs) + [1.0], [*rhs, 1.0])
    return y


def start_violation(model, v: np.ndarray) -> float:
    """Largest violation of rows, column bounds and integrality by the full vector ``v``."""
    act = model.A @ v
    viol = [np.max(np.maximum(model.row_lo - act, 0), initial=0), np.max(np.maximum(act - model.row_hi, 0), initial=0),
            np.max(np.maximum(model.col_lo - v, 0), initial=0), np.max(np.maximum(v - model.col_hi, 0), initial=0)]
    ints = model.integrality
    if ints.any():
        viol.append(np.max(np.abs(v[ints] - np.round(v[ints]))))
    return float(max(viol))


def run_model(model, solver: str, time_limit: float | None, start: np.ndarray | None, mip_gap: float = 1e-6,
         **stops):
    """Solve ``model`` with a MIP start if it is feasible; returns the Solution.

    ``stops``: ``objective_target`` / ``dual_stop`` for :meth:`Backend.solve`.
    """
    from ..mip.solvers import MIN_LIMIT, solve

    t0 = time.perf_counter()  # checking the start counts in the limit (and passing the model: solve)
    if start is not None:
        viol = start_violation(model, start)
        if viol > START_TOL:
            log.warning("MIP start rejected: the model does not reproduce it (violation %.3g)", viol)
            start = None
    tl = None if time_limit is None else max(float(time_limit) - (time.perf_counter() - t0), MIN_LIMIT)
    return solve(model, solver, tl, threads=1, mip_gap=mip_gap, start=start, **stops)


def solver_input(model, v: np.ndarray, domain: Box, tol: float = 1e-6) -> np.ndarray | None:
    """The input part of a solver vector, clipped into the domain if it is off by ≤ ``tol``
    (solver feasibility tolerance); None if it is farther out."""
    x = np.asarray(v)[model.x]
    if not domain.contains(x, tol):
        log.warning("solver input lies %.3g outside the domain; ignored",
                    float(max(np.max(domain.lo - x), np.max(x - domain.hi))))
        return None
    return domain.clip(x)


def widen_dual(dual: float | None, sense: str) -> float | None:
    if dual is None or not np.isfinite(dual):
        return dual
    d = DUAL_SAFETY * (1 + abs(dual))
    return dual + d if sense == "max" else dual - d


def interval_objective_bound(model) -> float:
    """A bound on the model's objective from its column bounds alone (valid for any
    feasible point): Σ_i c_i·(hi_i if c_i > 0 else lo_i) + offset for ``max`` (``lo``/``hi``
    swapped for ``min``); ±inf if a needed column bound is infinite."""
    c = np.asarray(model.c, float)
    nz = c != 0
    up = model.col_hi if model.sense == "max" else model.col_lo
    dn = model.col_lo if model.sense == "max" else model.col_hi
    with np.errstate(invalid="ignore"):
        v = float(np.sum(np.where(c[nz] > 0, c[nz] * up[nz], c[nz] * dn[nz])) + model.offset)
    return v if np.isfinite(v) else (np.inf if model.sense == "max" else -np.inf)


def lp_objective_bound(model, solver: str = "highs", time_limit: float | None = None) -> float | None:
    """The LP relaxation's rigorous bound on the objective (Neumaier–Shcherbina from the row
    duals, :func:`nnmiplib.mip.solvers.base.safe_lp_bound`), or None if the LP gave no duals."""
    from ..mip.solvers import MIN_LIMIT, solve
    from ..mip.solvers.base import safe_lp_bound

    m = model.copy()
    m.integrality = np.zeros(m.n_vars, dtype=bool)
    try:
        sol = solve(m, solver, None if time_limit is None else max(time_limit, MIN_LIMIT), threads=1)
    except Exception as e:  # noqa: BLE001 -- no LP bound then
        log.debug("LP relaxation for a fallback bound failed: %s", e)
        return None
    rd = getattr(sol, "row_dual", None)
    if rd is None:
        return None
    b = safe_lp_bound(m, m.c, m.sense, rd)
    if not np.isfinite(b):
        return None
    return float(b + m.offset)


def fill_dual(res: Result, model, source: str | None = None) -> None:
    """Make sure ``res.dual_bound`` is a finite valid bound (GUIDE: every query reports one).

    A finite solver bound is kept (``extra["dual_source"] = "solver"``); otherwise the
    bound implied by the model's column bounds is used (``"column-bounds"``: e.g. PV margin
    max_k(u_k − ℓ_c) from the logit bounds, maxflip the number of neuron pairs that can
    flip, mineps 0). Not applied to proven-infeasible queries.
    """
    if res.dual_bound is not None and np.isfinite(res.dual_bound):
        res.extra.setdefault("dual_source", source or "solver")
        return
    if res.status == "infeasible" or model is None:
        return
    b = interval_objective_bound(model)
    if np.isfinite(b):
        res.dual_bound = widen_dual(b, res.sense)
        res.extra["dual_source"] = "column-bounds"
        if res.objective is not None and res.verified:
            res.gap = relative_gap(res.objective, res.dual_bound)


def _status(sol_status, has_x: bool) -> str:
    from ..mip.solvers import Status

    if sol_status is Status.OPTIMAL:
        return "optimal" if has_x else "infeasible"
    if sol_status is Status.INFEASIBLE:
        return "infeasible"
    if sol_status is Status.INTERRUPTED:  # queries are interrupted only by decide=True's stops
        return "decided"
    if sol_status is Status.TIME_LIMIT:
        return "time_limit_feasible" if has_x else "time_limit_infeasible"
    return "error"


def finish_result(res: Result, nets, domain: Box, *, evaluate: Callable, check: Callable | None,
            cands: list, sol, model_value: Callable, t0: float, agree: Callable | None = None,
            polish: bool = True, rng=0, model=None, deadline: float | None = None) -> Result:
    """Choose the best candidate input, re-evaluate it in float64, fill the Result.

    ``cands``: list of (x, source, from_solver) — the solver's incumbent and attack
    points. ``evaluate(x)`` gives the query's float64 value; ``check(x)`` the strict
    conditions; ``model_value(x, from_solver)`` the model's objective at that point.
    A candidate is *verified* when it passes ``check`` and its value agrees with the
    model's (``agree``, default |v − w| ≤ 1e-5·(1+|v|)). Verified candidates win over
    unverified ones, then the better value wins. When the solver's point does not
    verify (typically a tie: a ReLU or a class decision exactly at the boundary),
    ``polish`` samples points around it at radii 1e-7..1e-3 of the box width and adds
    the best verified one ("solver+polish").
    """
    sign = 1.0 if res.sense == "max" else -1.0

    def judge(x, src, from_solver):
        ok = True if check is None else bool(check(x))
        val = float(evaluate(x))
        mv = float(model_value(x, from_solver))
        tol = rel_tol(val, res.tolerance)
        same = agree(val, mv, tol) if agree else abs(val - mv) <= tol
        return ((ok and same), sign * val), x, src, ok and same, val, mv, ok

    judged = []
    for x, src, from_solver in cands:
        if x is None:
            continue
        if not domain.contains(x, DOMAIN_TOL):
            log.warning("%s: candidate from %s lies outside the domain; ignored", res.query, src)
            continue
        judged.append(judge(x, src, from_solver))
    sol_j = [j for j in judged if j[2] == "solver"]
    if polish and sol_j and not sol_j[0][3] and (deadline is None or time.perf_counter() < deadline):
        rng_ = np.random.default_rng(rng)
        x_s, w = sol_j[0][1], domain.width
        pts = [domain.clip(x_s + r * w * rng_.uniform(-1, 1, size=(32, domain.n)))
               for r in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)]
        pol = [judge(p, "solver+polish", False) for p in np.vstack(pts)]
        pol = [p for p in pol if p[3]]
        if pol:
            judged.append(max(pol, key=lambda j: j[0]))
    if sol is not None:
        res.nodes = int(sol.nodes)
        res.dual_bound = widen_dual(sol.dual_bound, res.sense) if sol.dual_bound is not None else None
        res.message = sol.message
    if judged:
        _, x, src, verified, val, mv, ok = max(judged, key=lambda j: j[0])
        res.x = np.asarray(x, dtype=np.float64)
        res.objective = val
        res.solver_objective = mv
        res.incumbent_source = src
        res.verified = bool(verified)
        if not verified:
            why = "fails the strict conditions" if not ok else "does not reproduce the solver's value"
            res.message = (res.message + "; " if res.message else "") + f"best input {why} (unverified)"
    has_x = res.x is not None
    res.status = _status(sol.status, has_x) if sol is not None else ("time_limit_feasible" if has_x else "error")
    if res.status == "infeasible" and res.x is not None:
        if res.verified:
            res.status = "error"
            res.message += "; solver says infeasible but an input satisfies the query (tolerances?)"
        else:
            res.status = "infeasible"
    if sol is not None and sol.status.value == "optimal" and res.x is None:
        res.status = "infeasible"
    if res.dual_bound is not None and res.objective is not None and res.verified:
        res.gap = relative_gap(res.objective, res.dual_bound)
    fill_dual(res, model)
    res.fill_outputs(nets)
    res.time = time.perf_counter() - t0
    return res


def logit_cols(model, i: int) -> np.ndarray:
    return np.asarray(model.nets[i].a[-1])


def solve_linear(res, nets, domain, model, fill, obj_col, fobj, check, time_limit, solver, attack, rng, t0,
                  feasible=None, evaluate=None, extra_start=None, attack_result=None, agree=None):
    """Attack → MIP start → solve → pick and verify the best input (linear objectives)."""
    cands, start = [], None
    if attack and (fobj is not None or attack_result is not None):
        ar = attack_result or atk.attack(nets, domain, fobj, rng=rng, feasible=feasible, extra=extra_start)
        if ar.x is not None:
            cands.append((ar.x, f"attack:{ar.source}", False))
            start = model.point(ar.x)
            fill(start)
    tl = None if time_limit is None else time_limit - (time.perf_counter() - t0)
    sol = run_model(model, solver, tl, start)
    if sol.x is not None:
        cands.insert(0, (solver_input(model, sol.x, domain), "solver", True))
    if evaluate is None:
        def evaluate(x):
            return float(fobj([n.forward(x)[None, :] for n in nets])[0][0])

    def model_value(x, from_solver):
        if from_solver and sol.x is not None:
            return float(model.c @ sol.x + model.offset)
        p = model.point(x)
        fill(p)
        return float(model.c @ p + model.offset)

    return finish_result(res, nets, domain, evaluate=evaluate, check=check, cands=cands, sol=sol,
                   model_value=model_value, t0=t0, agree=agree, model=model,
                   deadline=None if time_limit is None else t0 + time_limit)
