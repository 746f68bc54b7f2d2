"""PV (thesis §3): the largest change of a network's output on an input region, :func:`max_output_change`.

Common behaviour of every query: see :mod:`nnmiplib.queries`.
"""

from __future__ import annotations

import time

import numpy as np

from ..domains import Box
from ..mip.solvers.base import Solution, Status
from ..network import Network, softmax
from . import attacks as atk
from .core import (
    add_selection,
    check_nets,
    check_query_arguments,
    check_x0,
    finish_result,
    get_bounds,
    logit_cols,
    run_model,
    solver_input,
)
from .result import DOMAIN_TOL, Result, rel_tol, relative_gap

__all__ = ['max_output_change']


# ------------------------------------------------------------------ (PV), margin form
def _margin_max_model(model, a_cols: np.ndarray, lo: np.ndarray, hi: np.ndarray, c: int):
    """v ≤ a_k − a_c + M_k(1 − y_k), Σ y_k = 1 (k ≠ c): max v = max_k a_k − a_c exactly."""
    K = a_cols.size
    others = [k for k in range(K) if k != c]
    v_lo = min(lo[k] - hi[c] for k in others)
    v_hi = max(hi[k] - lo[c] for k in others)
    v = int(model.add_vars(1, v_lo, v_hi)[0])
    y = add_selection(model, [{int(a_cols[k]): 1.0, int(a_cols[c]): -1.0} for k in others],
                      [lo[k] - hi[c] for k in others], v_hi, v)

    def fill(vec):
        a = vec[a_cols]
        m = np.array([a[k] - a[c] for k in others])
        i = int(np.argmax(m))
        vec[y] = 0.0
        vec[y[i]] = 1.0
        vec[v] = m[i]

    return v, fill


def max_output_change(net: Network, domain: Box, x0, *, form: str = "margin", bounds=None,
                      time_limit: float | None = 60.0, solver: str = "highs", bounds_method: str = "lp",
                      tol: float = 1e-3, attack: bool = True, rng=0, margin: float = 1e-6,
                      decide: bool = False, engine: str = "auto", refine: bool = True) -> Result:
    r"""Problem (PV), SPEC §3: the largest output change of ``net`` on ``domain``.

    ``form="softmax"``: :math:`\max_{x\in X} \lVert\operatorname{softmax}(a^{L+1}(x)) - y_0\rVert_1`
    with :math:`y_0 = N(x_0)` (thesis (3.1)), solved with the sound PWL relaxation of
    :mod:`nnmiplib.queries.softmax_pwl` (the dual bound is the relaxation's; ``tol`` is the
    absolute gap at which refinement stops).
    ``form="margin"``: :math:`\max_{x\in X}\max_{k\ne c} a_k(x) - a_c(x)` with ``c`` the
    class of ``x0`` — the verifiers' linear form; a dual bound < 0 proves that no input of
    the domain changes the class. ``extra["class_changed"]`` is True when the verified
    witness has value ≥ ``margin``.
    ``decide=True`` (margin form) answers the yes/no question instead of the optimum: the
    search stops as soon as an incumbent reaches ``margin`` (the class changes; the
    attack's point counts) or the dual bound falls to ``margin`` (no input reaches it;
    ``extra["robust_proven"]`` when the dual bound is below 0), so ``objective`` is then a
    witness, not the maximum. A dual bound in ``[0, margin)`` — e.g. two logits tied on the
    whole domain — gives status ``"decided"`` with both flags False: no input changes the
    class by ``margin``, and robustness (a dual bound < 0) is not proven.

    ``engine``: ``"bab"`` (and ``"auto"``, the default) — branch and bound over ReLU phases
    (:mod:`nnmiplib.bab`) with the given bounds as the intermediate bounds of every node's
    relaxation — with ``refine``, in either form, tightened once before the search by a
    batched branch and bound over the hidden neurons (up to :data:`BAB_TIGHTEN` of the
    time, when the root or a first look leaves the query open; it stops once the bounds
    proven so far settle it) and helped by cutting planes for the rows still open (the
    convex hull of each ReLU over its input box, up to :data:`BAB_CUTS` of the time left:
    :mod:`nnmiplib.bab.cuts`), and with ``refine=False`` an exact solve of the thesis's Big-M
    MIP with those constants. (The nodes' bounds are not re-tightened one by one:
    :func:`nnmiplib.bab.solve`'s ``refine`` left PV's margin rows at dual bounds 5.49 and
    5.18 after 40 s on tightened bounds, against 3.19 and 4.61 without, on 800x2 digit 8 and
    200x5 digit 1.) The
    softmax form is bounded at each node from the node's bounds on the logit differences
    (:class:`~nnmiplib.bab.SoftmaxL1Objective`) and optimised to the relative gap ``tol``;
    ``"mip"`` — the thesis's Big-M model solved by ``solver`` (the softmax form through its
    PWL relaxation). ``extra["engine"]`` says which answered; with ``"bab"``,
    ``extra["trajectory"]`` holds ``(seconds, dual bound, incumbent)`` over the search (the softmax
    form's dual bound at most 2, the largest L1 distance of two distributions).

    Raises
    ------
    ValueError
        Before any work, for an argument that means nothing: ``time_limit`` ≤ 0 or NaN
        (None: no limit), an unknown ``solver``/``bounds_method``/``form``, a negative
        ``tol``/``margin``, an ``x0`` of the wrong size or with NaN
        (:func:`nnmiplib.queries.core.check_query_arguments`).
    """
    t0 = time.perf_counter()
    time_limit = check_query_arguments(domain=domain, time_limit=time_limit, solver=solver, bounds=bounds,
                                       bounds_method=bounds_method, attack=attack, rng=rng, tol=tol, margin=margin)
    check_nets([net], domain)
    x0 = check_x0(x0, net.n_inputs)
    if form not in ("margin", "softmax"):
        raise ValueError(f"form must be 'margin' or 'softmax', got {form!r}")
    if engine not in ("auto", "bab", "mip"):
        raise ValueError(f"engine must be 'auto', 'bab' or 'mip', got {engine!r}")
    if not isinstance(refine, (bool, np.bool_)):
        raise ValueError(f"refine must be True or False, got {refine!r}")
    if not isinstance(decide, (bool, np.bool_)):
        raise ValueError(f"decide must be True or False, got {decide!r}")
    bds, tb = get_bounds([net], domain, bounds, bounds_method)
    t1 = time.perf_counter()  # the time limit starts after the bounds
    deadline = None if time_limit is None else t1 + time_limit
    c = int(np.argmax(net.forward(x0)))
    if form == "softmax" and engine in ("auto", "bab"):
        return _softmax_bab(net, domain, x0, c, bds[0], tb, t0, t1, time_limit, tol, attack, rng, refine)
    if form == "softmax":
        from .softmax import softmax_l1_query

        y0 = softmax(net.forward(x0))
        res = softmax_l1_query([net], domain, bds, y0=y0, time_limit=time_limit, solver=solver, tol=tol,
                               attack=attack, rng=rng, query="pv-softmax", t_start=t1)
        res.extra.update(bounds_time=tb, reference_class=c, engine="mip")
        res.time = time.perf_counter() - t0
        return res
    if engine in ("auto", "bab"):
        return _margin_bab(net, domain, x0, c, bds[0], tb, t0, t1, time_limit, margin, decide, attack, rng, refine)
    from ..mip.encode import encode

    res = Result("pv-margin", "max", solver=solver, margin=margin)
    res.extra.update(bounds_time=tb, reference_class=c)
    obj = atk.obj_margin(c)
    cands = []
    model = encode(net, domain, bds[0])
    a = logit_cols(model, 0)
    v, fill = _margin_max_model(model, a, bds[0].lower[-1], bds[0].upper[-1], c)
    model.set_objective({v: 1.0}, "max")
    start = None
    if attack:
        ar = atk.attack([net], domain, obj, rng=rng, extra=x0 if domain.contains(x0) else None)
        if ar.x is not None:
            cands.append((ar.x, f"attack:{ar.source}", False))
            start = model.point(ar.x)
            fill(start)
    if decide and start is not None and start[v] >= margin:  # the attack already changed the class
        sol = Solution(Status.INTERRUPTED, message="decided by the attack")
    else:
        stops = {"objective_target": margin, "dual_stop": -margin} if decide else {}
        sol = run_model(model, solver, None if deadline is None else deadline - time.perf_counter(), start, **stops)
    if sol.x is not None:
        cands.insert(0, (solver_input(model, sol.x, domain), "solver", True))

    def evaluate(x):
        return float(obj([net.forward(x)[None, :]])[0][0])

    def model_value(x, from_solver):
        if from_solver and sol.x is not None:
            return float(sol.x[v])
        p = model.point(x)
        fill(p)
        return float(p[v])

    res = finish_result(res, [net], domain, evaluate=evaluate, check=None, cands=cands, sol=sol,
                  model_value=model_value, t0=t0, model=model, deadline=deadline)
    res.extra["class_changed"] = bool(res.verified and res.objective is not None and res.objective >= margin)
    res.extra["robust_proven"] = bool(res.dual_bound is not None and res.dual_bound < 0)
    res.extra["engine"] = "mip"
    return res


#: relative gap at which the branch and bound calls the margin optimum found
BAB_REL_GAP = 1e-4
#: with ``refine`` (either form, networks of two or more hidden layers, a time limit):
#: share of the time spent tightening the intermediate bounds once the root leaves a class
#: open (:func:`nnmiplib.bab.tightening.tighten`)
BAB_TIGHTEN = 0.5
#: with ``refine``: share of the time left after the tightening spent at most on cutting planes
#: (the convex hull of each ReLU over its input box, :mod:`nnmiplib.bab.cuts`) for the classes
#: still open (margin form) or for every logit difference (softmax form, at the last look's
#: root). Measured at 120 s (margin, 40 instances): 31 decided against 28 without; softmax at
#: 300 s, 800x2 digit 1: dual bound 1.25 against 1.67 (incumbent 0.424), 100x10 digit 4: both
#: optimal, 169 s against 155 s
BAB_CUTS = 0.1
#: the softmax form: share of the time left (after any tightening) spent first on each logit
#: difference's own maximum, whose bounds then cap the rows at every node of the tree over the
#: softmax (:func:`nnmiplib.bab.solve`'s ``row_caps``). Measured at 300 s, one instance at a time
#: (not tuned: 0.3 only), against the tree alone: 3000x1 digits 5 / 8 / 9 end with dual bounds
#: 1.360 / 1.209 / 0.311 against 1.603 / 1.540 / 0.398 (incumbents 1.219 / 0.910 / 0.143), 800x2
#: digit 9 0.283 against 0.439 (0.030); 3000x1 digits 6 / 7 and 100x10 digit 4 still reach the
#: 1 % gap, in 17 / 47 / 200 s against 81 / 22 (two instances side by side) / 147 s. (Branching then
#: on the row the capped value is most sensitive to; on the uncapped bounds' row, now
#: :meth:`~nnmiplib.bab.CappedObjective.worst`: digit 8 1.202, 100x10 digit 4 in 174 s.)
BAB_ROW_CAPS = 0.3


def _softmax_bab(net, domain, x0, c, bd, tb, t0, t1, time_limit, tol, attack, rng, refine) -> Result:
    """PV's softmax form by :func:`nnmiplib.bab.solve` with :class:`~nnmiplib.bab.SoftmaxL1Objective`."""
    from ..bab import SoftmaxL1Objective, solve

    y0 = softmax(net.forward(x0))
    K = net.n_outputs
    C, d = SoftmaxL1Objective.rows(K, c)
    left = None if time_limit is None else max(time_limit - (time.perf_counter() - t1), 1e-3)
    seed = rng if isinstance(rng, (int, np.integer)) else 0

    def leaf(lower, upper, limit):
        """A leaf (the network linear on it): the PWL relaxation of the softmax query, to ``tol``."""
        from ..bounds import Bounds, interval_bounds
        from .softmax import softmax_l1_query

        ib = interval_bounds(net, domain)
        lo_ = [np.maximum(a, b) for a, b in zip(lower, ib.lower[:-1])] + [ib.lower[-1]]
        up_ = [np.minimum(a, b) for a, b in zip(upper, ib.upper[:-1])] + [ib.upper[-1]]
        leaf_b = Bounds(lo_, up_, [np.full(a.size, "leaf") for a in lo_], [np.zeros(a.size) for a in lo_], "leaf",
                        net.digest(), domain)
        q = softmax_l1_query([net], domain, [leaf_b], y0=y0, time_limit=max(limit or 10.0, 0.1), tol=tol * 0.5,
                             attack=False, query="pv-softmax-leaf")
        return (2.0 if q.dual_bound is None else float(q.dual_bound)), q.x

    r = solve(net, domain.lo, domain.hi, C, d, lower=bd.lower[:-1], upper=bd.upper[:-1],
              objective=SoftmaxL1Objective(y0, c), rel_gap=tol, abs_gap=1e-9, time_limit=left,
              attack_starts=64 if attack else 0, seed=int(seed), leaf=leaf,
              initial_points=x0[None] if domain.contains(x0) else None, tighten=BAB_TIGHTEN if refine else 0.0,
              cuts=BAB_CUTS if refine else 0.0, row_caps=BAB_ROW_CAPS)
    res = Result("pv-softmax", "max", solver="bab")
    res.nodes, res.dual_bound = int(r.nodes), float(min(r.dual_bound, 2.0))
    if r.x is not None and domain.contains(r.x, DOMAIN_TOL):
        res.x, res.incumbent_source = np.asarray(r.x, dtype=np.float64), f"bab:{r.stats.get('incumbent_source')}"
        res.objective = float(np.abs(softmax(net.forward(res.x)) - y0).sum())
        res.solver_objective = float(r.value)
        res.verified = abs(res.objective - res.solver_objective) <= rel_tol(res.objective, res.tolerance)
        res.gap = relative_gap(res.objective, res.dual_bound)
    # "gap_left": every node closed before the limit, the leaves' relaxation leaving a gap above tol
    res.status = ({"optimal": "optimal", "gap_left": "feasible"}.get(r.status, "time_limit_feasible")
                  if res.x is not None else "time_limit_infeasible")
    res.message = f"branch and bound: {r.status}"
    res.fill_outputs([net])
    # class c wins on the whole domain when the root bounds every y_k − y_c (k ≠ c) below 0
    rows = r.stats.get("root_rows")
    forced = c if rows is not None and max(rows[:K - 1]) < 0 else None
    res.extra.update(bounds_time=tb, reference_class=c, engine="bab", bab_status=r.status, dual_source="branch-and-bound",
                     forced_class=[forced],
                     trajectory=[[float(t), float(min(db, 2.0)), float(v)] for t, db, v in r.trajectory],
                     bab={k: v for k, v in r.stats.items() if isinstance(v, (int, float, str, list, dict))})
    res.time = time.perf_counter() - t0
    return res


def _margin_bab(net, domain, x0, c, bd, tb, t0, t1, time_limit, margin, decide, attack, rng, refine) -> Result:
    """PV's margin form by :func:`nnmiplib.bab.solve`: rows ``e_k − e_c`` (k ≠ c), one group each."""
    from ..bab import solve

    K = net.n_outputs
    C = np.array([np.eye(K)[k] - np.eye(K)[c] for k in range(K) if k != c])
    left = None if time_limit is None else max(time_limit - (time.perf_counter() - t1), 1e-3)
    seed = rng if isinstance(rng, (int, np.integer)) else 0
    r = solve(net, domain.lo, domain.hi, C, np.zeros(K - 1), lower=bd.lower[:-1], upper=bd.upper[:-1],
              threshold=margin if decide else None, rel_gap=BAB_REL_GAP, abs_gap=1e-6, time_limit=left,
              attack_starts=64 if attack else 0, seed=int(seed),
              initial_points=x0[None] if domain.contains(x0) else None, tighten=BAB_TIGHTEN if refine else 0.0,
              cuts=BAB_CUTS if refine else 0.0)
    res = Result("pv-margin", "max", solver="bab", margin=margin)
    res.nodes, res.dual_bound = int(r.nodes), float(r.dual_bound)
    if r.x is not None and domain.contains(r.x, DOMAIN_TOL):
        y = net.forward(r.x)
        res.x, res.incumbent_source = np.asarray(r.x, dtype=np.float64), f"bab:{r.stats.get('incumbent_source')}"
        res.objective = float(np.max(np.delete(y, c)) - y[c])
        res.solver_objective = float(r.value)
        res.verified = abs(res.objective - res.solver_objective) <= rel_tol(res.objective, res.tolerance)
        res.gap = relative_gap(res.objective, res.dual_bound)
    decided = r.status in ("proved", "violated")
    if decide and decided:
        res.status = "decided"
    elif r.status == "optimal" or (not decide and decided):
        res.status = "optimal" if res.x is not None else "infeasible"
    else:
        res.status = "time_limit_feasible" if res.x is not None else "time_limit_infeasible"
    res.message = f"branch and bound: {r.status}"
    res.fill_outputs([net])
    res.extra.update(bounds_time=tb, reference_class=c, engine="bab", bab_status=r.status, dual_source="branch-and-bound",
                     trajectory=[list(map(float, p)) for p in r.trajectory],
                     bab={k: v for k, v in r.stats.items() if isinstance(v, (int, float, str, list, dict))})
    res.extra["class_changed"] = bool(res.verified and res.objective is not None and res.objective >= margin)
    res.extra["robust_proven"] = bool(res.dual_bound < 0)
    res.time = time.perf_counter() - t0
    return res
