"""The comparator of two networks (thesis §4): maxdiff (difference in probability) and maxout
(difference in selected class).

Common behaviour of every query: see :mod:`nnmiplib.queries`.
"""

from __future__ import annotations

import time

import numpy as np

from ..domains import Box
from ..network import Network
from . import attacks as atk
from .core import (
    add_rows,
    check_class,
    check_nets,
    check_query_arguments,
    get_bounds,
    logit_cols,
    solve_linear,
)
from .pairs import (
    add_pair_difference,
    check_difference,
    difference_summary,
    logit_change_model,
    max_abs_change,
    pair_difference,
    report_difference,
)
from .result import Result

__all__ = ['maxdiff', 'maxout']


# ------------------------------------------------------------------------- maxdiff
def maxdiff(net1: Network, net2: Network, domain: Box, *, form: str = "softmax", bounds=None,
            time_limit: float | None = 60.0, solver: str = "highs", bounds_method: str = "lp",
            tol: float = 1e-3, attack: bool = True, rng=0, difference: bool | None = None,
            report: bool = True) -> Result:
    r"""maxdiff (SPEC §4): :math:`\max_{x\in X}\lVert\operatorname{softmax}(a_1) - \operatorname{softmax}(a_2)\rVert_1`.

    One shared input, the two Big-M models otherwise independent (architectures may
    differ). ``form="softmax"`` uses the sound PWL relaxation (:mod:`nnmiplib.queries.softmax_pwl`;
    ``tol`` = absolute gap target). ``form="logits"`` (alias ``"margin"``) is the linear
    variant :math:`\max_x \max_k |a_{1,k} - a_{2,k}|` (same number of classes needed).
    ``bounds``: (b1, b2) computed on ``domain`` for exactly these networks.

    Difference bounds (logits form): when the two networks have the same layer sizes
    (``difference=None``, automatic; True requires it, False turns it off) the bounds of
    :math:`a_1 - a_2` from :func:`nnmiplib.bounds.difference_bounds` (computed after the
    networks' bounds, not charged to ``time_limit``) give the Big-M constants of the |·|
    selection and the δ columns of :func:`~nnmiplib.queries.pairs.logit_change_model`; with
    ``report`` the root LP bound of the model without and with them is measured
    (:func:`~nnmiplib.queries.pairs.report_difference`). ``extra["difference"]`` says whether
    they were used, ``extra["difference_bounds"]`` holds them. The softmax form's relaxation
    (:mod:`nnmiplib.queries.softmax`) does not take them: there ``difference=True`` is an error.

    Raises
    ------
    ValueError
        Before any work, for an argument that means nothing: ``time_limit`` ≤ 0 or NaN
        (None: no limit), an unknown ``solver``/``bounds_method``/``form``, a negative ``tol``
        (:func:`nnmiplib.queries.core.check_query_arguments`), ``difference=True`` with the
        softmax form or networks of different shapes.
    """
    t0 = time.perf_counter()
    time_limit = check_query_arguments(domain=domain, time_limit=time_limit, solver=solver, bounds=bounds,
                                       bounds_method=bounds_method, attack=attack, rng=rng, tol=tol)
    nets = [net1, net2]
    check_nets(nets, domain)
    if form not in ("softmax", "logits", "margin"):
        raise ValueError(f"form must be 'softmax' or 'logits' (alias 'margin'), got {form!r}")
    if form != "softmax" and net1.n_outputs != net2.n_outputs:
        raise ValueError("the logits form needs the same number of classes in both networks")
    check_difference(difference, nets, report=report)
    if difference and form == "softmax":
        raise ValueError("difference=True: the softmax form's relaxation does not take the difference rows; "
                         "use form='logits' (or difference=None)")
    bds, tb = get_bounds(nets, domain, bounds, bounds_method)
    if form == "softmax":
        from .softmax import softmax_l1_query

        t1 = time.perf_counter()  # the time limit starts after the bounds
        res = softmax_l1_query(nets, domain, bds, time_limit=time_limit, solver=solver, tol=tol, attack=attack,
                               rng=rng, query="maxdiff", t_start=t1)
        res.extra["bounds_time"] = tb
        res.extra["difference"] = False
        res.time = time.perf_counter() - t0
        return res
    t = time.perf_counter()
    db = pair_difference(nets, domain, bds, difference)
    td = time.perf_counter() - t
    t1 = time.perf_counter()  # the time limit starts after the bounds

    res = Result("maxdiff-logits", "max", solver=solver)
    res.extra.update(bounds_time=tb, difference=db is not None, difference_time=td)
    if db is not None:
        res.extra["difference_bounds"] = difference_summary(db)
    # d_k = a1_k − a2_k; w ≤ σ_k d_k-type selection: w ≤ s·d_k + M(1 − y_ks) over (k, sign)
    model, w, fill = logit_change_model(nets, domain, bds, db)

    res = solve_linear(res, nets, domain, model, fill, w, max_abs_change, None, time_limit, solver, attack, rng, t1)
    if db is not None and report:
        report_difference(res, lambda f: logit_change_model(nets, domain, bds, db if f else None)[0], solver,
                          time_limit, t1)
    res.time = time.perf_counter() - t0
    return res


# -------------------------------------------------------------------------- maxout
def maxout(net1: Network, net2: Network, domain: Box, c1: int, c2: int, tau: float = 0.0, *, bounds=None,
           time_limit: float | None = 60.0, solver: str = "highs", bounds_method: str = "lp",
           margin: float = 1e-6, attack: bool = True, rng=0, difference: bool | None = None,
           hidden: bool = False, report: bool = True) -> Result:
    r"""maxout (SPEC §4): N₁ answers C₁ and N₂ answers C₂ with the largest logits.

    .. math::
        \max_{x\in X}\; a_{1,C_1} + a_{2,C_2}\quad\text{s.t.}\quad
        a_{1,k} \le a_{1,C_1} - \tau',\; a_{2,k} \le a_{2,C_2} - \tau' \;\;\forall k

    (thesis eq. 4.13 with its typo corrected: the second family is network 2's.)
    Ties are not findings: the model uses :math:`\tau' = \tau + 2\,\text{margin}` and a
    witness is ``verified`` only if both class margins are ≥ τ + margin in float64; the
    dual bound is valid for the τ' problem. ``infeasible`` means no input makes the nets
    answer (C₁, C₂) with that margin.

    Difference bounds: when the two networks have the same layer sizes (``difference=None``,
    automatic) the model also holds the logit differences δ = a₁ − a₂ as columns bounded by
    :func:`nnmiplib.bounds.difference_bounds` (all layers with ``hidden``, and the ReLU-step
    lines), and for C₁ ≠ C₂ the row :math:`2\tau' \le \delta_{C_1} - \delta_{C_2} \le U`
    (the two class constraints added up; U by back-substitution,
    :meth:`~nnmiplib.bounds.DifferenceBounds.upper_rows`). ``report`` measures the root LP
    bound without and with them (``extra["dual_bound_without_difference"]``,
    ``extra["root_lp_bound_with_difference"]``).

    Raises
    ------
    ValueError
        Before any work, for an argument that means nothing: ``time_limit`` ≤ 0 or NaN
        (None: no limit), an unknown ``solver``/``bounds_method``, ``c1``/``c2`` not
        integer classes (``1.7``), a negative or NaN ``tau``/``margin``
        (:func:`nnmiplib.queries.core.check_query_arguments`).
    """
    t0 = time.perf_counter()
    time_limit = check_query_arguments(domain=domain, time_limit=time_limit, solver=solver, bounds=bounds,
                                       bounds_method=bounds_method, attack=attack, rng=rng, tau=tau, margin=margin)
    nets = [net1, net2]
    check_nets(nets, domain)
    c1, c2 = check_class(c1, net1.n_outputs, "c1"), check_class(c2, net2.n_outputs, "c2")
    check_difference(difference, nets, report=report)
    if not isinstance(hidden, (bool, np.bool_)):
        raise ValueError(f"hidden must be True or False, got {hidden!r}")
    bds, tb = get_bounds(nets, domain, bounds, bounds_method)
    t = time.perf_counter()
    db = pair_difference(nets, domain, bds, difference)
    td = time.perf_counter() - t
    t1 = time.perf_counter()  # the time limit starts after the bounds
    from ..mip.encode import encode, fill_difference

    res = Result("maxout", "max", solver=solver, margin=margin)
    res.extra.update(bounds_time=tb, c1=c1, c2=c2, tau=float(tau), difference=db is not None, difference_time=td)
    tau_m = float(tau) + 2 * margin
    u12 = None
    if db is not None:
        res.extra["difference_bounds"] = difference_summary(db)
        if c1 != c2:
            u12 = float(db.upper_rows(np.eye(net1.n_outputs)[c1] - np.eye(net1.n_outputs)[c2])[0])
            res.extra["difference_c1_c2_upper"] = u12

    def build(with_difference: bool):
        model = encode(nets, domain, bds, inactive_rows=False)
        a1, a2 = logit_cols(model, 0), logit_cols(model, 1)
        rows = []
        for a, c in ((a1, c1), (a2, c2)):
            for k in range(a.size):
                if k != c:
                    rows.append({int(a[c]): 1.0, int(a[k]): -1.0})
        add_rows(model, rows, tau_m, np.inf)
        dv = None
        if with_difference and db is not None:
            dv = add_pair_difference(model, db, hidden)
            if u12 is not None:  # (a1_c1 − a1_c2) + (a2_c2 − a2_c1) ≥ 2τ'
                d = dv.d[-1]
                add_rows(model, [{int(d[c1]): 1.0, int(d[c2]): -1.0}], 2 * tau_m, max(u12, 2 * tau_m))
        model.set_objective({int(a1[c1]): 1.0, int(a2[c2]): 1.0}, "max")
        return model, dv

    model, dv = build(True)

    def fill(vec):
        if dv is not None:
            fill_difference(vec, model, dv)

    def margins(x):
        l1, l2 = net1.forward(x), net2.forward(x)
        return (l1[c1] - np.max(np.delete(l1, c1)), l2[c2] - np.max(np.delete(l2, c2)))

    def check(x):
        m1, m2 = margins(x)
        return m1 >= tau + margin and m2 >= tau + margin

    def feasible(logits):
        m1 = logits[0][:, c1] - np.max(np.delete(logits[0], c1, axis=1), axis=1)
        m2 = logits[1][:, c2] - np.max(np.delete(logits[1], c2, axis=1), axis=1)
        return (m1 >= tau_m) & (m2 >= tau_m)

    def evaluate(x):
        return float(net1.forward(x)[c1] + net2.forward(x)[c2])

    res = solve_linear(res, nets, domain, model, fill, None, atk.obj_maxout(c1, c2, tau_m), check,
                        time_limit, solver, attack, rng, t1, feasible=feasible, evaluate=evaluate)
    if db is not None and report:
        report_difference(res, lambda f: build(f)[0], solver, time_limit, t1)
    if res.x is not None:
        res.extra["class_margins"] = [float(m) for m in margins(res.x)]
    res.time = time.perf_counter() - t0
    return res
