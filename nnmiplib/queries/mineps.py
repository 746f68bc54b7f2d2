"""mineps (thesis §4): the smallest L∞ perturbation on which a pruned copy disagrees with its original.

Common behaviour of every query: see :mod:`nnmiplib.queries`.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..domains import Box, unit_box
from ..network import Network
from . import attacks as atk
from .core import (
    add_rows,
    add_selection,
    check_class,
    check_nets,
    check_query_arguments,
    check_x0,
    logit_cols,
    lp_objective_bound,
    solve_linear,
    widen_dual,
)
from .pairs import (
    add_pair_difference,
    check_difference,
    difference_summary,
    pair_bounds,
    report_difference,
)
from .result import DOMAIN_TOL, Result, relative_gap

__all__ = ['mineps']


# -------------------------------------------------------------------------- mineps
def mineps(original: Network, pruned: Network, x0, label: int | None = None, *, domain: Box | None = None,
           bounds=None, time_limit: float | None = 60.0, solver: str = "highs", bounds_method: str = "lp",
           keep_margin: float = 1e-6, flip_margin: float = 1e-6, attack: bool = True, rng=0,
           difference: bool | None = None, hidden: bool = False, report: bool = True) -> Result:
    r"""mineps (SPEC §4): the smallest L∞ perturbation of x₀ on which N₁ (original) still
    answers the label C₀ but N₂ (pruned) answers something else.

    .. math::
        \min\ \varepsilon\quad\text{s.t.}\quad x \ge x_0 - \varepsilon,\ x \le x_0 + \varepsilon,\
        x \in X\ (\text{default } [0,1]^n),\\
        a_{1,C_0} - a_{1,k} \ge m_1\ \forall k\ne C_0 \quad(\text{4.17, typo corrected: net 1 on both sides}),\\
        a_{2,k} - a_{2,C_0} \ge m_2 - M_k (1 - b_k),\quad \textstyle\sum_{k\ne C_0} b_k \ge 1,\ b_k\in\{0,1\}

    with :math:`M_k = m_2 - (\ell_{2,k} - u_{2,C_0})` from the logit bounds (computed on
    X, SPEC §6). The thesis's (4.18) also has :math:`a_{2,k} - a_{2,C_0} \le M b_k`; it only
    forces b_k = 1 where class k already wins and does not change the feasible inputs,
    so it is left out. Ties are not findings: the model uses m₁ = 2·keep_margin and
    m₂ = 2·flip_margin, a witness is verified when both margins hold (≥ keep_margin,
    ≥ flip_margin) in float64 and ‖x − x₀‖∞ ≤ the solver's ε (+ tolerance). ``objective``
    is ‖x − x₀‖∞ of the witness, ``dual_bound`` a lower bound on ε* (for the m₁, m₂ model).

    Difference bounds (``difference=None``: used when the two networks have the same layer
    sizes): the logit differences δ = a₁ − a₂ as columns bounded on the domain by
    :func:`nnmiplib.bounds.difference_bounds` (all layers with ``hidden``), and per class
    k ≠ C₀ the sum of N₁'s and N₂'s conditions,
    :math:`\delta_{C_0} - \delta_k \ge m_1 + m_2 - M'_k (1 - b_k)` with
    :math:`M'_k = m_1 + m_2 - \ell_k` from the back-substituted bounds
    :math:`\ell_k \le \delta_{C_0} - \delta_k \le U_k`; a class with :math:`U_k < m_1 + m_2`
    cannot be N₂'s answer and its b_k is fixed to 0. ``report`` measures the root LP bound
    without and with them.

    Raises
    ------
    ValueError
        Before any work, for an argument that means nothing: ``label`` not an integer class
        (``1.7``) or not N₁(x₀), ``x0`` outside the domain, ``time_limit`` ≤ 0 or NaN (None:
        no limit), an unknown ``solver``/``bounds_method``, a negative margin.
    """
    t0 = time.perf_counter()
    time_limit = check_query_arguments(domain=domain, time_limit=time_limit, solver=solver, bounds=bounds,
                                       bounds_method=bounds_method, attack=attack, rng=rng,
                                       keep_margin=keep_margin, flip_margin=flip_margin)
    nets = [original, pruned]
    for n in nets:
        if not isinstance(n, Network):
            raise ValueError(f"expected nnmiplib.Network objects, got {type(n).__name__}")
    x0 = check_x0(x0, original.n_inputs)
    if domain is None:
        domain = unit_box(x0.size)
    check_nets(nets, domain)
    if not domain.contains(x0, DOMAIN_TOL):
        raise ValueError("x0 lies outside the input domain; mineps perturbs x0 inside the domain")
    if pruned.n_outputs != original.n_outputs:
        raise ValueError(f"the networks have {original.n_outputs} and {pruned.n_outputs} classes; mineps compares "
                         "a network with its pruned copy (same classes)")
    c0 = int(np.argmax(original.forward(x0)))
    label = c0 if label is None else check_class(label, original.n_outputs, "label")
    if c0 != label:
        raise ValueError(f"the original network answers {c0} at x0, not the label {label}; "
                         "mineps needs N₁(x₀) = C₀ (SPEC §4)")
    check_difference(None, nets, hidden=hidden, report=report)
    bds, tb, db, td = pair_bounds(nets, domain, bounds, bounds_method, difference)
    t1 = time.perf_counter()  # the time limit starts after the bounds
    from ..mip.encode import encode, fill_difference

    res = Result("mineps", "min", solver=solver, margin=flip_margin)
    res.extra.update(bounds_time=tb, label=label, keep_margin=keep_margin, flip_margin=flip_margin,
                     difference=db is not None, difference_time=td)
    K = original.n_outputs
    m1, m2 = 2 * keep_margin, 2 * flip_margin
    emax = float(max(np.max(x0 - domain.lo), np.max(domain.hi - x0), 0.0))
    others = [k for k in range(K) if k != label]
    if db is not None:
        res.extra["difference_bounds"] = difference_summary(db)
        C = np.array([np.eye(K)[label] - np.eye(K)[k] for k in others])
        U = db.upper_rows(C)            # ≥ δ_C0 − δ_k
        Lk = -db.upper_rows(-C)         # ≤ δ_C0 − δ_k
        res.extra["excluded_classes"] = [k for k, u in zip(others, U) if u < m1 + m2]

    def build(with_difference: bool):
        model = encode(nets, domain, bds)
        a1, a2 = logit_cols(model, 0), logit_cols(model, 1)
        eps = int(model.add_vars(1, 0.0, emax)[0])
        n = x0.size
        e_col = sp.csr_matrix((np.ones(n), (np.arange(n), np.full(n, eps))), shape=(n, model.n_vars))
        X = sp.csr_matrix((np.ones(n), (np.arange(n), model.x)), shape=(n, model.n_vars))
        model.add_rows(X + e_col, x0, np.inf)    # x + ε ≥ x0
        model.add_rows(X - e_col, -np.inf, x0)   # x − ε ≤ x0
        rows = [{int(a1[label]): 1.0, int(a1[k]): -1.0} for k in others]
        add_rows(model, rows, m1, np.inf)
        lo2, hi2 = bds[1].lower[-1], bds[1].upper[-1]
        # network 2: some class k ≠ label beats the label by m2
        b = add_selection(model, [{int(a2[k]): 1.0, int(a2[label]): -1.0} for k in others],
                          [lo2[k] - hi2[label] for k in others], m2, level=m2)
        dv = None
        if with_difference and db is not None:
            dv = add_pair_difference(model, db, hidden)
            d = dv.d[-1]
            rows, rl, rh = [], [], []
            for bk, k, u, lk in zip(b, others, U, Lk):
                Mk = max(m1 + m2 - lk, 0.0)
                # δ_C0 − δ_k + M'(1 − b_k) ≥ m1 + m2, δ_C0 − δ_k ≤ U_k
                rows.append({int(d[label]): 1.0, int(d[k]): -1.0, int(bk): -Mk})
                rl.append(m1 + m2 - Mk)
                rh.append(max(u, m1 + m2 - Mk))
                if u < m1 + m2:
                    model.col_hi[bk] = 0.0
            add_rows(model, rows, rl, rh)
        model.set_objective({eps: 1.0}, "min")
        return model, eps, b, a2, dv

    model, eps, b, a2, dv = build(True)

    def margins(x):
        l1, l2 = original.forward(x), pruned.forward(x)
        return l1[label] - np.max(np.delete(l1, label)), np.max(np.delete(l2, label)) - l2[label]

    def check(x):
        k1, f2 = margins(x)
        return k1 >= keep_margin and f2 >= flip_margin

    def fill(vec):
        x = vec[model.x]
        vec[eps] = min(float(np.max(np.abs(x - x0))), emax)
        d = vec[a2] - vec[a2[label]]
        vec[b] = 0.0
        vec[b[int(np.argmax(d[others]))]] = 1.0
        if dv is not None:
            fill_difference(vec, model, dv)

    def evaluate(x):
        return float(np.max(np.abs(np.asarray(x) - x0)))

    ar = _mineps_attack(original, pruned, x0, label, domain, m1, m2, rng) if attack else None
    res = solve_linear(res, nets, domain, model, fill, None, None, check, time_limit, solver, attack, rng, t1,
                        evaluate=evaluate, attack_result=ar, agree=lambda v, s, tol: v <= s + tol)
    left = None if time_limit is None else time_limit - (time.perf_counter() - t1)
    if res.extra.get("dual_source") == "column-bounds" and (left is None or left > 0.1):
        lb = lp_objective_bound(model, solver, left)  # the LP relaxation beats ε ≥ 0
        if lb is not None and lb > (res.dual_bound if res.dual_bound is not None else -np.inf):
            res.dual_bound = widen_dual(lb, "min")
            res.extra["dual_source"] = "lp-relaxation"
    if res.dual_bound is not None:
        res.dual_bound = max(0.0, res.dual_bound)  # ε ≥ 0 anyway
        if res.objective is not None and res.verified:
            res.gap = relative_gap(res.objective, res.dual_bound) if res.objective > 0 else abs(res.dual_bound)
    if db is not None and report:
        report_difference(res, lambda f: build(f)[0], solver, time_limit, t1)
    if res.x is not None:
        k1, f2 = margins(res.x)
        res.extra.update(keep=float(k1), flip=float(f2))
    if ar is not None:
        res.extra["attack_eps"] = ar.value if ar.x is not None else None
    res.time = time.perf_counter() - t0
    return res


def _mineps_attack(n1: Network, n2: Network, x0, label, domain: Box, m1, m2, rng, steps: int = 10):
    """Bisection on ε with PGD on N₂'s margin inside the L∞ ball, keeping N₁'s label."""
    def feasible(logits):
        l1, l2 = logits
        k1 = l1[:, label] - np.max(np.delete(l1, label, axis=1), axis=1)
        f2 = np.max(np.delete(l2, label, axis=1), axis=1) - l2[:, label]
        return (k1 >= m1) & (f2 >= m2)

    margin_obj = atk.obj_margin(label)

    def obj(logits):  # N₂'s "other beats label" margin, minus a penalty when N₁ drifts
        v, g = margin_obj([logits[1]])
        k1 = logits[0][:, label] - np.max(np.delete(logits[0], label, axis=1), axis=1)
        pen = np.minimum(k1 - m1, 0.0)
        _, gk = atk._class_margin(np.asarray(logits[0], float), label)
        g1 = 10.0 * (k1 < m1)[:, None] * gk
        return v + 10 * pen, [g1, g[0]]

    def ball(e):
        lo, hi = np.maximum(domain.lo, x0 - e), np.minimum(domain.hi, x0 + e)
        return Box(lo, np.maximum(lo, hi))

    best = atk.AttackResult(None, np.inf, "pgd", 0)
    lo_e, hi_e = 0.0, float(max(np.max(x0 - domain.lo), np.max(domain.hi - x0)))
    for it in range(steps):
        e = hi_e if it == 0 else (lo_e + hi_e) / 2
        r = atk.attack([n1, n2], ball(e), obj, n_samples=64, restarts=4, steps=40, rng=rng, feasible=feasible,
                       extra=x0)
        if r.x is not None:
            ex = float(np.max(np.abs(r.x - x0)))
            if ex < best.value:
                best = atk.AttackResult(r.x, ex, f"attack:{r.source}", r.evaluations)
            hi_e = min(e, ex)
        elif it == 0:
            break
        else:
            lo_e = e
    best.source = best.source.replace("attack:", "")
    return best
