r"""The softmax-objective query loop (:func:`softmax_l1_query`) and its exact SCIP
reference (:func:`scip_exact_l1`). The relaxation itself, with its maths, is in
:mod:`nnmiplib.queries.softmax_pwl`.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.special import logsumexp

from ..network import softmax

__all__ = ["forced_class", "l1_value", "lp_diff_bounds", "r_of", "scip_exact_l1", "softmax_l1_query"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------- logit-difference bounds
def lp_diff_bounds(net, domain, bounds, *, solver: str = "highs", time_limit: float | None = None,
                   order=None) -> tuple[np.ndarray, np.ndarray, dict]:
    r"""Bounds on the logit differences :math:`d_{jk} = a_j - a_k` over the LP relaxation of
    ``net`` on ``domain`` (relaxation of (1.2)–(1.5) with ``bounds``), intersected with the
    box bounds :func:`~nnmiplib.queries.softmax_pwl.diff_box`.

    One LP per ordered pair (j, k), warm-started; :math:`D_{lo}[j,k] = -D_{hi}[k,j]`. Each
    bound is the rigorous Neumaier–Shcherbina bound from the LP's row duals
    (:func:`nnmiplib.mip.solvers.base.safe_lp_bound`), so it is valid even for an imprecise
    solve; pairs left when ``time_limit`` runs out keep the box bound. Classes in
    ``order`` (e.g. the class at the domain's centre first) are done first.
    Returns (D_lo, D_hi, info) with info = {"lp_solved", "lp_pairs", "time"}.
    """
    import time as _time

    from ..mip.encode import encode
    from ..mip.solvers import get_backend
    from ..mip.solvers.base import safe_lp_bound
    from .softmax_pwl import diff_box

    t0 = _time.perf_counter()
    lo, hi = np.asarray(bounds.lower[-1], float), np.asarray(bounds.upper[-1], float)
    d_lo, d_hi = diff_box(lo, hi)
    K = lo.size
    m = encode(net, domain, bounds, relax=True)
    a = np.asarray(m.nets[0].a[-1])
    be = get_backend(solver)(m, threads=1)
    ks = list(order) if order is not None else []
    ks += [k for k in range(K) if k not in ks]
    solved, pairs = 0, [(j, k) for k in ks for j in range(K) if j != k]
    for j, k in pairs:
        left = None if time_limit is None else time_limit - (_time.perf_counter() - t0)
        if left is not None and left <= 0.02:
            break
        c = np.zeros(m.n_vars)
        c[a[j]], c[a[k]] = 1.0, -1.0
        be.set_objective(c, "max")
        try:
            sol = be.solve(left)
        except Exception as e:  # noqa: BLE001 -- a failed LP keeps the box bound
            log.debug("difference LP (%d, %d) failed: %s", j, k, e)
            continue
        rd = getattr(sol, "row_dual", None)
        if rd is None:
            continue
        ub = safe_lp_bound(m, c, "max", rd)
        if np.isfinite(ub):
            d_hi[j, k] = min(d_hi[j, k], ub)
            d_lo[k, j] = max(d_lo[k, j], -ub)
            solved += 1
    d_lo = np.minimum(d_lo, d_hi)
    return d_lo, d_hi, {"lp_solved": solved, "lp_pairs": len(pairs), "time": _time.perf_counter() - t0}


def forced_class(d_hi: np.ndarray) -> int | None:
    """The class k with d_jk < 0 for every j ≠ k (it wins on the whole domain), or None."""
    K = d_hi.shape[0]
    for k in range(K):
        if all(d_hi[j, k] < 0 for j in range(K) if j != k):
            return k
    return None


# ------------------------------------------------------------------ the refinement loop
def r_of(net, x) -> np.ndarray | None:
    if x is None:
        return None
    a = net.forward(x)
    return a - logsumexp(a)


def l1_value(nets, x, y0=None) -> float:
    ps = [softmax(n.forward(x)) for n in nets]
    other = ps[1] if y0 is None else y0
    return float(np.abs(ps[0] - other).sum())


def softmax_l1_query(nets, domain, bounds, *, y0=None, time_limit: float | None = 60.0, solver: str = "highs",
                     tol: float = 1e-3, attack: bool = True, rng=0, query: str = "maxdiff",
                     max_iter: int = 50, n_segments: int = 2, n_tangents: int = 32,
                     max_breakpoints: int = 12, spread: tuple = (0.01, 0.1), round_share: float = 0.5,
                     diff_bounds: str = "lp", diff_share: float = 0.25, t_start: float | None = None):
    r"""Maximise :math:`\lVert p^1 - p^2\rVert_1` (two nets) or :math:`\lVert p - y_0\rVert_1`
    (one net, ``y0`` given) over the shared input box, soundly, with linear solvers only.

    Loop: solve the MILP of the networks plus the relaxation (S1)–(S4) and the L1 block;
    its dual bound (widened by 1e-6·(1+|bound|)) bounds the true maximum; its incumbent
    input is re-evaluated exactly; the relaxation is refined at the incumbent's and the
    best point's logits; stop when ``dual − best ≤ tol`` (status ``optimal``), at
    ``time_limit`` or after ``max_iter`` rounds. Every round's dual bound is valid; the
    smallest one is reported (and never more than 2, the largest L1 distance of two
    probability vectors). ``result.extra["history"]`` lists (seconds, dual, best) per round.

    ``diff_bounds="lp"`` first bounds the logit differences by LP (:func:`lp_diff_bounds`,
    at most ``diff_share`` of ``time_limit``) for the (S5)–(S7) rows; ``"box"`` uses the
    logit box only. ``extra["forced_class"]`` lists, per network, the class that wins on
    the whole domain (proved by the difference bounds) or None.

    ``time_limit`` is a wall-clock budget from ``t_start`` (default: the call) shared by
    the difference LPs, the attack, every model build and every solver round; the
    network bounds are computed before and are not charged.

    Raises
    ------
    ValueError
        Before any work, for an argument that means nothing (``time_limit`` ≤ 0 or NaN,
        a negative ``tol``, ``max_iter`` < 1, a share outside [0, 1], an unknown
        ``solver`` or ``diff_bounds``; see :func:`nnmiplib.queries.core.check_query_arguments`).
    """
    import time as _time

    from ..domains import count
    from ..mip.encode import encode
    from ..mip.solvers import Status
    from . import attacks as atk
    from .core import check_query_arguments, run_model, solver_input, start_violation, widen_dual
    from .result import DOMAIN_TOL, Result, rel_tol, relative_gap
    from .softmax_pwl import L1Block, SoftmaxBlock, SoftmaxState

    time_limit = check_query_arguments(domain=domain, time_limit=time_limit, solver=solver, bounds=bounds,
                                       attack=attack, rng=rng, tol=tol, round_share=round_share,
                                       diff_share=diff_share,
                                       counts={"max_iter": max_iter, "n_segments": n_segments,
                                               "max_breakpoints": max_breakpoints})
    count(n_tangents, "n_tangents", minimum=0)
    if not 0 < round_share <= 1 or diff_share > 1:
        raise ValueError(f"round_share must lie in (0, 1] and diff_share in [0, 1], got {round_share!r} and "
                         f"{diff_share!r}")
    if diff_bounds not in ("lp", "box"):
        raise ValueError(f"diff_bounds must be 'lp' or 'box', got {diff_bounds!r}")
    t0 = _time.perf_counter() if t_start is None else float(t_start)
    nets = list(nets)
    if y0 is None and len(nets) != 2:
        raise ValueError("the softmax L1 objective compares two networks, or one network with a fixed y0")
    if y0 is not None:
        y0 = np.asarray(y0, float)
        if len(nets) != 1 or y0.size != nets[0].n_outputs:
            raise ValueError(f"y0 must have one entry per class of the single network ({nets[0].n_outputs})")
    res = Result(query, "max", solver=solver)
    res.extra.update(tol=tol, method="pwl-relaxation")
    dbs, forced, dinfo = [], [], []
    for i, (n, b) in enumerate(zip(nets, bounds)):
        if diff_bounds == "lp":
            left = None if time_limit is None else max(0.0, diff_share * time_limit - (_time.perf_counter() - t0))
            left = None if left is None else left / (len(nets) - i)
            order = [int(np.argmax(n.forward(domain.center)))]
            d_lo, d_hi, info = lp_diff_bounds(n, domain, b, solver=solver, time_limit=left, order=order)
        elif diff_bounds == "box":
            from .softmax_pwl import diff_box

            (d_lo, d_hi), info = diff_box(b.lower[-1], b.upper[-1]), {"lp_solved": 0}
        else:
            raise ValueError(f"diff_bounds must be 'lp' or 'box', got {diff_bounds!r}")
        dbs.append((d_lo, d_hi))
        forced.append(forced_class(d_hi))
        dinfo.append(info)
    res.extra.update(forced_class=forced, diff_bounds=dinfo)
    states = [SoftmaxState.initial(b.lower[-1], b.upper[-1], n_segments, d_lo=dl, d_hi=dh)
              for b, (dl, dh) in zip(bounds, dbs)]
    for st in states:
        st.max_breakpoints = max_breakpoints
    base = encode(nets, domain, bounds)
    best_x, best_val, best_src, best_solver_logits = None, -np.inf, None, None
    if n_tangents:
        Xs = domain.sample(n_tangents, np.random.default_rng(rng))
        for st, n in zip(states, nets):
            st.add_tangents(n.forward(Xs))
    if attack:
        obj = atk.obj_maxdiff() if y0 is None else atk.obj_softmax_l1(y0)
        ar = atk.attack(nets, domain, obj, rng=rng)
        if ar.x is not None:
            best_x, best_val, best_src = ar.x, l1_value(nets, ar.x, y0), f"attack:{ar.source}"
            for st, n in zip(states, nets):
                st.refine(n.forward(best_x), spread=spread)
    dual, history, nodes, last = 2.0 + 1e-12, [], 0, None
    dual_src = "trivial (an L1 distance of probability vectors is ≤ 2)"
    stop_reason = "iteration limit"
    mip_gap = min(1e-4, tol / 4)
    share = round_share
    for it in range(max_iter):
        remaining = None if time_limit is None else time_limit - (_time.perf_counter() - t0)
        if remaining is not None and remaining <= 0.05:
            stop_reason = "time limit"
            break
        m = base.copy()
        blocks = [SoftmaxBlock(m, nv.a[-1], st) for nv, st in zip(m.nets, states)]
        l1 = L1Block(m, blocks[0].P, blocks[1].P if y0 is None else None, y0=y0)
        m.set_objective(l1.objective(m.n_vars), "max")
        start = None
        if best_x is not None:
            start = m.point(best_x)
            for blk in blocks:
                blk.fill(start)
            l1.fill(start)
            if start_violation(m, start) > 1e-6:
                log.debug("relaxation start violates rows by %.3g", start_violation(m, start))
        # a round gets at most ``round_share`` of the time left (≥ 2 s): a timed-out round still gives a
        # valid dual bound and an incumbent to refine at
        remaining = None if time_limit is None else time_limit - (_time.perf_counter() - t0)  # after the build
        if remaining is not None and remaining <= 0.05:
            stop_reason = "time limit"
            break
        budget = None if remaining is None else min(remaining, max(2.0, share * remaining))
        sol = run_model(m, solver, budget, start, mip_gap=mip_gap)
        last = sol
        nodes += int(sol.nodes)
        if sol.status is Status.INFEASIBLE:
            res.message = "the relaxation was reported infeasible (numerical trouble: the true problem is feasible)"
            stop_reason = "error"
            break
        if (sol.dual_bound is not None and np.isfinite(sol.dual_bound)
                and sol.status in (Status.OPTIMAL, Status.TIME_LIMIT, Status.INTERRUPTED)
                and widen_dual(sol.dual_bound, "max") < dual):
            dual, dual_src = widen_dual(sol.dual_bound, "max"), "pwl-relaxation"
        added = 0
        if sol.x is not None:
            x = solver_input(m, sol.x, domain)
            if x is not None:
                val = l1_value(nets, x, y0)
                if val > best_val:
                    best_x, best_val, best_src = x, val, "solver"
                    best_solver_logits = [sol.x[nv.a[-1]] for nv in m.nets]
                for st, n in zip(states, nets):
                    added += st.refine(n.forward(x), protect=r_of(n, best_x))
        history.append((_time.perf_counter() - t0, dual, best_val))
        log.info("%s round %d: dual %.6g best %.6g (%d binaries)", query, it, dual, best_val, m.n_integer)
        if best_x is not None and dual - best_val <= tol:
            stop_reason = "gap closed"
            break
        if best_x is not None:
            for st, n in zip(states, nets):
                added += st.refine(n.forward(best_x), protect=r_of(n, best_x), spread=spread)
        if sol.status is Status.TIME_LIMIT and (remaining is None or budget >= remaining - 1e-9):
            stop_reason = "time limit"
            break
        if sol.status not in (Status.OPTIMAL, Status.TIME_LIMIT):
            stop_reason = f"solver status {sol.status.value}"
            break
        if added == 0 and sol.status is Status.TIME_LIMIT and share < 1.0:
            share = 1.0  # nothing new to refine at: give the next round all the time left
            continue
        if added == 0:
            stop_reason = "no new refinement point (the solver's MIP gap limits the bound)"
            break
    res.nodes = nodes
    res.dual_bound = dual
    res.extra.update(history=history, iterations=len(history), stop=stop_reason, dual_source=dual_src,
                     binaries=int(m.n_integer) if last is not None else 0)
    if best_x is not None:
        res.x = np.asarray(best_x, float)
        res.objective = best_val
        res.incumbent_source = best_src
        if best_solver_logits is not None and best_src == "solver":
            ps = [softmax(a) for a in best_solver_logits]
            res.solver_objective = float(np.abs(ps[0] - (ps[1] if y0 is None else y0)).sum())
        else:
            res.solver_objective = best_val
        res.verified = bool(domain.contains(res.x, DOMAIN_TOL)
                            and abs(res.solver_objective - best_val) <= rel_tol(best_val, res.tolerance))
        res.gap = relative_gap(best_val, dual)
    closed = best_x is not None and dual - best_val <= tol
    if stop_reason == "error":
        res.status = "error"
    elif closed and res.verified:
        res.status = "optimal"
    else:
        res.status = "time_limit_feasible" if (res.x is not None and res.verified) else "time_limit_infeasible"
    res.message = (res.message + "; " if res.message else "") + stop_reason
    res.fill_outputs(nets)
    res.time = _time.perf_counter() - t0
    return res


# ------------------------------------------------------------- exact reference (SCIP)
def scip_exact_l1(nets, domain, bounds, *, y0=None, time_limit: float = 30.0) -> dict:
    r"""The exact MINLP of the softmax L1 objective with SCIP's native ``exp`` (small cases).

    Same network model and L1 block as the PWL route, but :math:`p = \operatorname{softmax}(a)`
    is imposed exactly: :math:`E_k = e^{a_k - s}` (shift ``s`` = the largest logit upper
    bound, against overflow) and :math:`P_k \sum_j E_j = E_k`. Meant as an independent
    cross-check of :func:`softmax_l1_query` on tiny networks.

    Returns
    -------
    dict with ``status``, ``primal``, ``dual`` (SCIP's bounds), ``x`` (or None), ``time``.
    """
    import time as _time

    from pyscipopt import Model, exp, quicksum

    from ..mip.encode import encode
    from .softmax_pwl import L1Block

    t0 = _time.perf_counter()
    nets = list(nets)
    mm = encode(nets, domain, bounds)
    Ps = [mm.add_vars(n.n_outputs, 0.0, 1.0) for n in nets]
    l1 = L1Block(mm, Ps[0], Ps[1] if y0 is None else None, y0=y0)
    mm.set_objective(l1.objective(mm.n_vars), "max")
    m = Model()
    m.hideOutput()
    m.setParam("limits/time", float(time_limit))
    m.setParam("parallel/maxnthreads", 1)
    v = [m.addVar(lb=None if not np.isfinite(lo) else float(lo), ub=None if not np.isfinite(hi) else float(hi),
                  vtype="B" if (integ and lo >= 0 and hi <= 1) else ("I" if integ else "C"))
         for lo, hi, integ in zip(mm.col_lo, mm.col_hi, mm.integrality)]
    A = mm.A.tocsr()
    for i in range(A.shape[0]):
        cols, vals = A.indices[A.indptr[i]:A.indptr[i + 1]], A.data[A.indptr[i]:A.indptr[i + 1]]
        expr = quicksum(float(c) * v[j] for j, c in zip(cols, vals))
        lo, hi = mm.row_lo[i], mm.row_hi[i]
        if np.isfinite(lo) and np.isfinite(hi) and lo == hi:
            m.addCons(expr == float(lo))
        else:
            if np.isfinite(lo):
                m.addCons(expr >= float(lo))
            if np.isfinite(hi):
                m.addCons(expr <= float(hi))
    for nv, P, b in zip(mm.nets, Ps, bounds):
        s = float(np.max(b.upper[-1]))
        E = [m.addVar(lb=0.0, ub=None) for _ in P]
        for k, (ek, col) in enumerate(zip(E, nv.a[-1])):
            m.addCons(ek == exp(v[int(col)] - s))
        S = quicksum(E)
        for k, col in enumerate(P):
            m.addCons(v[int(col)] * S == E[k])
    m.setObjective(quicksum(float(c) * v[j] for j, c in enumerate(mm.c) if c != 0.0), "maximize")
    m.optimize()
    status = m.getStatus()
    x = None
    if m.getNSols() > 0:
        sol = m.getBestSol()
        x = np.array([m.getSolVal(sol, v[int(j)]) for j in mm.x])
    return {"status": status, "primal": m.getPrimalbound() if x is not None else None,
            "dual": m.getDualbound(), "x": x, "time": _time.perf_counter() - t0}
