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
from .result import Result

__all__ = ['maxdiff', 'maxout']


# ------------------------------------------------------------------------- maxdiff
def maxdiff(net1: Network, net2: Network, domain: Box, *, form: str = "softmax", bounds=None,
            time_limit: float | None = 60.0, solver: str = "highs", bounds_method: str = "lp",
            tol: float = 1e-3, attack: bool = True, rng=0) -> Result:
    r"""maxdiff (SPEC §4): :math:`\max_{x\in X}\lVert\operatorname{softmax}(a_1) - \operatorname{softmax}(a_2)\rVert_1`.

    One shared input, the two Big-M models otherwise independent (architectures may
    differ). ``form="softmax"`` uses the sound PWL relaxation (:mod:`nnmiplib.queries.softmax_pwl`;
    ``tol`` = absolute gap target). ``form="logits"`` (alias ``"margin"``) is the linear
    variant :math:`\max_x \max_k |a_{1,k} - a_{2,k}|` (same number of classes needed).
    ``bounds``: (b1, b2) computed on ``domain`` for exactly these networks.

    Raises
    ------
    ValueError
        Before any work, for an argument that means nothing: ``time_limit`` ≤ 0 or NaN
        (None: no limit), an unknown ``solver``/``bounds_method``/``form``, a negative ``tol``
        (:func:`nnmiplib.queries.core.check_query_arguments`).
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
    bds, tb = get_bounds(nets, domain, bounds, bounds_method)
    t1 = time.perf_counter()  # the time limit starts after the bounds
    if form == "softmax":
        from .softmax import softmax_l1_query

        res = softmax_l1_query(nets, domain, bds, time_limit=time_limit, solver=solver, tol=tol, attack=attack,
                               rng=rng, query="maxdiff", t_start=t1)
        res.extra["bounds_time"] = tb
        res.time = time.perf_counter() - t0
        return res
    from ..mip.encode import encode

    res = Result("maxdiff-logits", "max", solver=solver)
    res.extra["bounds_time"] = tb
    model = encode(nets, domain, bds)
    a1, a2 = logit_cols(model, 0), logit_cols(model, 1)
    K = a1.size
    dlo = bds[0].lower[-1] - bds[1].upper[-1]
    dhi = bds[0].upper[-1] - bds[1].lower[-1]
    # d_k = a1_k − a2_k; w ≤ σ_k d_k-type selection: w ≤ s·d_k + M(1 − y_ks) over (k, sign)
    vhi = float(max(np.max(np.abs(dlo)), np.max(np.abs(dhi))))
    w = int(model.add_vars(1, 0.0, vhi)[0])
    y = model.add_vars(2 * K, 0.0, 1.0, integer=True)
    rows, rl, rh = [], [], []
    for k in range(K):
        for s, yk in ((1.0, y[2 * k]), (-1.0, y[2 * k + 1])):
            low = dlo[k] if s > 0 else -dhi[k]
            M = max(vhi - low, 0.0)
            rows.append({w: 1.0, int(a1[k]): -s, int(a2[k]): s, int(yk): M})
            rl.append(-np.inf)
            rh.append(M)
    rows.append({int(j): 1.0 for j in y})
    rl.append(1.0)
    rh.append(1.0)
    add_rows(model, rows, rl, rh)
    model.set_objective({w: 1.0}, "max")

    def fill(vec):
        d = vec[a1] - vec[a2]
        k = int(np.argmax(np.abs(d)))
        vec[y] = 0.0
        vec[y[2 * k + (0 if d[k] >= 0 else 1)]] = 1.0
        vec[w] = abs(d[k])

    def fobj(logits):
        d = logits[0] - logits[1]
        k = np.argmax(np.abs(d), axis=1)
        r = np.arange(len(d))
        g = np.zeros_like(d)
        g[r, k] = np.sign(d[r, k])
        return np.abs(d[r, k]), [g, -g]

    res = solve_linear(res, nets, domain, model, fill, w, fobj, None, time_limit, solver, attack, rng, t1)
    res.time = time.perf_counter() - t0
    return res


# -------------------------------------------------------------------------- maxout
def maxout(net1: Network, net2: Network, domain: Box, c1: int, c2: int, tau: float = 0.0, *, bounds=None,
           time_limit: float | None = 60.0, solver: str = "highs", bounds_method: str = "lp",
           margin: float = 1e-6, attack: bool = True, rng=0) -> Result:
    r"""maxout (SPEC §4): N₁ answers C₁ and N₂ answers C₂ with the largest logits.

    .. math::
        \max_{x\in X}\; a_{1,C_1} + a_{2,C_2}\quad\text{s.t.}\quad
        a_{1,k} \le a_{1,C_1} - \tau',\; a_{2,k} \le a_{2,C_2} - \tau' \;\;\forall k

    (thesis eq. 4.13 with its typo corrected: the second family is network 2's.)
    Ties are not findings: the model uses :math:`\tau' = \tau + 2\,\text{margin}` and a
    witness is ``verified`` only if both class margins are ≥ τ + margin in float64; the
    dual bound is valid for the τ' problem. ``infeasible`` means no input makes the nets
    answer (C₁, C₂) with that margin.

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
    bds, tb = get_bounds(nets, domain, bounds, bounds_method)
    t1 = time.perf_counter()  # the time limit starts after the bounds
    from ..mip.encode import encode

    res = Result("maxout", "max", solver=solver, margin=margin)
    res.extra.update(bounds_time=tb, c1=c1, c2=c2, tau=float(tau))
    model = encode(nets, domain, bds)
    a1, a2 = logit_cols(model, 0), logit_cols(model, 1)
    tau_m = float(tau) + 2 * margin
    rows = []
    for a, c in ((a1, c1), (a2, c2)):
        for k in range(a.size):
            if k != c:
                rows.append({int(a[c]): 1.0, int(a[k]): -1.0})
    add_rows(model, rows, tau_m, np.inf)
    model.set_objective({int(a1[c1]): 1.0, int(a2[c2]): 1.0}, "max")

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

    res = solve_linear(res, nets, domain, model, lambda v: None, None, atk.obj_maxout(c1, c2, tau_m), check,
                        time_limit, solver, attack, rng, t1, feasible=feasible, evaluate=evaluate)
    if res.x is not None:
        res.extra["class_margins"] = [float(m) for m in margins(res.x)]
    res.time = time.perf_counter() - t0
    return res
