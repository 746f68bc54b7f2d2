r"""A network and its pruned copy: difference bounds in the comparator, and two pair queries.

* :func:`max_logit_change` — :math:`\max_{x\in X}\max_k |a^1_k(x) - a^2_k(x)|`, the
  ε-equivalence of the differential-verification literature, with a certified dual bound;
* :func:`top1_equivalent` — can the predicted classes of the two networks differ anywhere
  on X? A witness re-checked in float64, or a proof.

Both use the difference bounds of :func:`nnmiplib.bounds.difference_bounds` when the two
networks have the same layer sizes. The helpers here put those bounds into a joint Big-M
model for every comparator query (maxdiff, maxout, maxflip, mineps as well):
:func:`pair_difference` computes them, :func:`add_pair_difference` adds the columns
δ = a¹ − a² (and ∂h = h¹ − h² with the ReLU-step lines for hidden layers) to a model of
:func:`nnmiplib.mip.encode.encode`, and :func:`report_difference` measures the root LP
bound of a query's model with and without them, so the gain is a number in
``Result.extra``, not an assumption.

Common behaviour of every query: see :mod:`nnmiplib.queries`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ..bounds.cheap import backsub_upper, relu_relaxation
from ..bounds.difference import DifferenceBounds, difference_bounds
from ..domains import Box
from ..mip.encode import DiffVars, add_difference, encode, fill_difference
from ..network import Network
from . import attacks as atk
from .core import (
    DUAL_SAFETY,
    add_rows,
    add_selection,
    check_nets,
    check_query_arguments,
    get_bounds,
    interval_objective_bound,
    logit_cols,
    lp_objective_bound,
    run_model,
    solve_linear,
    solver_input,
    widen_dual,
)
from .result import DOMAIN_TOL, Result, relative_gap

__all__ = [
    "add_pair_difference",
    "check_difference",
    "class_margin_bounds",
    "difference_summary",
    "disagreement",
    "logit_change_model",
    "max_abs_change",
    "max_logit_change",
    "pair_bounds",
    "pair_difference",
    "report_difference",
    "segment_search",
    "timed_pair_difference",
    "top1_equivalent",
    "wants_difference",
]

log = logging.getLogger("nnmiplib.queries")

#: share of a network's robustness search (top-1 equivalence, networks of two or more hidden
#: layers, a time limit) spent first tightening its intermediate bounds
#: (:func:`nnmiplib.bab.tightening.tighten`, stopped once they decide the rows); the tightened
#: bounds then serve every later search and model of that network. Measured on the 50-epoch
#: 100x10, test image 2, ε = 0.02: robustness proven in 30 s, against root bounds of 29–65
#: still open after 60 s without it.
BAB_TIGHTEN = 0.5


# ------------------------------------------------------------------ shared machinery
def pair_difference(nets, domain: Box, bds, difference) -> DifferenceBounds | None:
    """Difference bounds of the two networks on ``domain`` from their bounds ``bds``, or None.

    ``difference``: None (automatic: used when the layer sizes agree), True (required: a
    ``ValueError`` if the shapes differ) or False (not used).
    """
    check_difference(difference, nets)
    if not wants_difference(difference, nets):
        return None
    return difference_bounds(nets[0], nets[1], domain, bounds=tuple(bds))


def wants_difference(difference, nets) -> bool:
    """Whether a pair query uses difference bounds: asked for (True), or automatic (None) and
    the two networks have the same layer sizes."""
    return bool(difference) or (difference is None and nets[0].layer_sizes == nets[1].layer_sizes)


def timed_pair_difference(nets, domain: Box, bds, difference) -> tuple[DifferenceBounds | None, float]:
    """:func:`pair_difference` and the seconds it took."""
    t = time.perf_counter()
    db = pair_difference(nets, domain, bds, difference)
    return db, time.perf_counter() - t


def check_difference(difference, nets, **flags) -> None:
    """A pair query's argument checks, before any work: ``difference`` is True, False or None,
    every flag in ``flags`` is a bool, and ``difference=True`` has two networks of one shape."""
    if difference is not None and not isinstance(difference, (bool, np.bool_)):
        raise ValueError(f"difference must be True, False or None (automatic), got {difference!r}")
    for name, v in flags.items():
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {v!r}")
    if difference and nets[0].layer_sizes != nets[1].layer_sizes:
        raise ValueError(f"difference=True needs networks of one shape (difference bounds pair neurons one "
                         f"to one): {nets[0].layer_sizes} vs {nets[1].layer_sizes}")


def pair_bounds(nets, domain: Box, bounds, bounds_method: str, difference):
    """``(bounds, seconds, difference bounds or None, seconds)``: each network's bounds
    (:func:`~nnmiplib.queries.core.get_bounds`), then :func:`pair_difference` from them."""
    bds, tb = get_bounds(nets, domain, bounds, bounds_method)
    return (bds, tb, *timed_pair_difference(nets, domain, bds, difference))


def add_pair_difference(model, db: DifferenceBounds, hidden: bool = False) -> DiffVars:
    """Add δ (logits; every layer with ``hidden``) and, with ``hidden``, ∂h and the ReLU-step
    lines to a model whose ``nets[0]``, ``nets[1]`` are the pair (:func:`~nnmiplib.mip.encode.add_difference`)."""
    L = db.n_layers - 1
    layers = list(range(L + 1)) if hidden else [L]
    lines = {l: db.lines(l) for l in range(L)} if hidden else None
    return add_difference(model, db.lower, db.upper, layers=layers, h_lower=db.h_lower if hidden else None,
                          h_upper=db.h_upper if hidden else None, lines=lines)


def difference_summary(db: DifferenceBounds) -> dict:
    """What ``Result.extra["difference_bounds"]`` holds: the logit-difference bounds and widths."""
    return {"logit_lower": db.lower[-1].copy(), "logit_upper": db.upper[-1].copy(),
            "mean_width": float(db.width(-1).mean()), "interval_mean_width": float(db.interval_width(-1).mean()),
            "time": float(db.time), "method": db.method}


def report_difference(res: Result, build: Callable[[bool], object], solver: str, time_limit: float | None,
                      t_start: float) -> None:
    """Root LP bounds (rigorous, :func:`~nnmiplib.queries.core.lp_objective_bound`) of the query's
    model without and with the difference rows, into ``res.extra``.

    ``build(with_difference)`` returns the model. ``extra["dual_bound_without_difference"]``
    and ``extra["root_lp_bound_with_difference"]`` (both widened like every dual bound) are
    computed after the query's own solve, each with the time left of ``time_limit`` (counted
    from ``t_start``), and only if at least ``min(2 s, 0.1·time_limit)`` is left: a query
    that used its whole limit skips them (a 2-second LP of the 3000x1 pair's joint model ran
    4.4 s in HiGHS and gave no bound, and each such LP overran the query's limit). An LP
    skipped or without an answer in its time leaves None (``extra["difference_report"]``
    says why). The root LP of a joint model is not cheap (the 200x5 pair on an L∞ ball:
    30–60 s with HiGHS on a busy core), so ``extra["column_bound_without_difference"]`` and
    ``…_with_difference`` always give the bound implied by the column bounds alone
    (instant; e.g. max_logit_change's largest |δ_k|).
    """
    floor = None if time_limit is None else min(2.0, 0.1 * time_limit)
    for key, flag in (("dual_bound_without_difference", False), ("root_lp_bound_with_difference", True)):
        left = None if time_limit is None else time_limit - (time.perf_counter() - t_start)
        t = time.perf_counter()
        model = build(flag)
        res.extra["column_bound_" + ("with" if flag else "without") + "_difference"] = interval_objective_bound(model)
        if left is not None and left < floor:
            res.extra[key], res.extra[key.replace("bound", "time")] = None, 0.0
            res.extra["difference_report"] = "no time left for the root LPs (the column bounds are reported)"
            continue
        b = lp_objective_bound(model, solver, left)
        res.extra[key] = None if b is None else widen_dual(b, res.sense)
        res.extra[key.replace("bound", "time")] = time.perf_counter() - t
        if b is None:
            res.extra["difference_report"] = "a root LP gave no bound in its time"


def class_margin_bounds(net: Network, bounds, domain: Box) -> np.ndarray:
    r"""``U[c, k]`` ≥ :math:`\max_{x\in X} a_c(x) - a_k(x)` for every ordered pair of classes
    (CROWN back-substitution of the rows :math:`e_c - e_k` with the net's bounds, the better of
    the "adaptive" and "zero" lower slopes; widened). ``U[c, c] = 0``."""
    K = net.n_outputs
    W, b = np.asarray(net.weights[-1]), np.asarray(net.biases[-1])
    C = (np.eye(K)[:, None, :] - np.eye(K)[None, :, :]).reshape(K * K, K)
    best = np.full(K * K, np.inf)
    for rule in ("adaptive", "zero"):
        relax = [relu_relaxation(bounds.lower[l], bounds.upper[l], rule) for l in range(net.depth)]
        v = backsub_upper(C @ W, C @ b, list(net.weights[:-1]), list(net.biases[:-1]), relax, domain.lo,
                          domain.hi)
        best = np.minimum(best, v)
    U = best.reshape(K, K)
    np.fill_diagonal(U, 0.0)
    return U


# ------------------------------------------------------------------ max_logit_change
def logit_change_model(nets, domain: Box, bds, db: DifferenceBounds | None = None, hidden: bool = False):
    r"""The model of :math:`\max_x \max_k |a^1_k - a^2_k|` (maxdiff's logits form).

    ``w ≤ s(a^1_k − a^2_k) + M_{ks}(1 − y_{ks})`` over (class k, sign s), ``Σ y = 1``, with
    :math:`[d_k^-, d_k^+]` the bounds of :math:`a^1_k - a^2_k` — the interval difference of
    the two networks' bounds, intersected with ``db``'s logit bounds when given (then also
    the δ columns of :func:`add_pair_difference`) — :math:`M_{ks} = \bar w - s\,d^{\mp}_k` and
    :math:`\bar w = \max_k \max(|d_k^-|, |d_k^+|)`.

    Returns (model, w column, fill) with ``fill(vec)`` completing a point of :meth:`MipModel.point`.
    """
    model = encode(nets, domain, bds, inactive_rows=False)
    a1, a2 = logit_cols(model, 0), logit_cols(model, 1)
    K = a1.size
    dlo = bds[0].lower[-1] - bds[1].upper[-1]
    dhi = bds[0].upper[-1] - bds[1].lower[-1]
    dv = None
    if db is not None:
        dlo, dhi = np.maximum(dlo, db.lower[-1]), np.minimum(dhi, db.upper[-1])
        dlo, dhi = np.minimum(dlo, dhi), np.maximum(dlo, dhi)
        dv = add_pair_difference(model, db, hidden)
    vhi = float(max(np.max(np.abs(dlo)), np.max(np.abs(dhi))))
    w = int(model.add_vars(1, 0.0, vhi)[0])
    signs = [(k, s) for k in range(K) for s in (1.0, -1.0)]  # y[2k]: a¹_k − a²_k, y[2k + 1]: its negative
    y = add_selection(model, [{int(a1[k]): s, int(a2[k]): -s} for k, s in signs],
                      [dlo[k] if s > 0 else -dhi[k] for k, s in signs], vhi, w)
    model.set_objective({w: 1.0}, "max")

    def fill(vec):
        d = vec[a1] - vec[a2]
        k = int(np.argmax(np.abs(d)))
        vec[y] = 0.0
        vec[y[2 * k + (0 if d[k] >= 0 else 1)]] = 1.0
        vec[w] = min(abs(d[k]), vhi)
        if dv is not None:
            fill_difference(vec, model, dv)

    return model, w, fill


def max_abs_change(logits):
    """``max_k |a¹_k − a²_k|`` per row of a logit pair and its gradient (the attacks' objective)."""
    d = logits[0] - logits[1]
    k = np.argmax(np.abs(d), axis=1)
    r = np.arange(len(d))
    g = np.zeros_like(d)
    g[r, k] = np.sign(d[r, k])
    return np.abs(d[r, k]), [g, -g]


def max_logit_change(original: Network, pruned: Network, domain: Box, *, bounds=None,
                     time_limit: float | None = 60.0, solver: str = "highs", bounds_method: str = "alpha",
                     difference: bool | None = None, hidden: bool = False, report: bool = True,
                     attack: bool = True, rng=0) -> Result:
    r"""The largest change of any logit between a network and its pruned copy on ``domain``:

    .. math:: \max_{x\in X}\ \max_k\ |a^1_k(x) - a^2_k(x)|

    (ε-equivalence: the two networks are ε-equivalent on X iff the value is ≤ ε). ``objective``
    is the value at the best input, re-computed in float64; ``dual_bound`` a certified
    upper bound (the solver's, widened; at worst the largest :math:`|δ_k|` the difference
    bounds allow). The model is :func:`logit_change_model`.

    Parameters
    ----------
    original, pruned : Network
        Same number of classes; with the same layer sizes the difference bounds are used.
    domain : Box
    bounds : (Bounds, Bounds), optional
        Each network's bounds on ``domain``; default ``compute_bounds(…, bounds_method)``
        ("alpha": cheap and close to the LP bounds; not charged to ``time_limit``).
    difference : None (automatic), True or False — use the difference bounds (the Big-M
        constants of the |·| selection come from them, and the δ columns are added).
    hidden : also add the hidden layers' δ and ∂h columns with their ReLU-step lines.
    report : measure the root LP bound without and with the difference rows
        (:func:`report_difference`, after the solve).

    Returns
    -------
    Result
        ``extra``: ``difference`` (used or not), ``difference_bounds``
        (:func:`difference_summary`), ``difference_time``, ``bounds_time`` and, with
        ``report``, the two root LP bounds.

    Raises
    ------
    ValueError
        Before any work, for an argument that means nothing (``time_limit`` ≤ 0 or NaN, an
        unknown ``solver``/``bounds_method``, networks with different numbers of classes,
        ``difference=True`` for networks of different shapes).
    """
    t0 = time.perf_counter()
    time_limit = check_query_arguments(domain=domain, time_limit=time_limit, solver=solver, bounds=bounds,
                                       bounds_method=bounds_method, attack=attack, rng=rng)
    nets = [original, pruned]
    check_nets(nets, domain)
    check_difference(None, nets, hidden=hidden, report=report)
    if original.n_outputs != pruned.n_outputs:
        raise ValueError(f"the networks have {original.n_outputs} and {pruned.n_outputs} classes; "
                         "max_logit_change compares logits one to one")
    check_difference(difference, nets)
    bds, tb, db, td = pair_bounds(nets, domain, bounds, bounds_method, difference)
    t1 = time.perf_counter()  # the time limit starts after the bounds
    res = Result("max-logit-change", "max", solver=solver)
    res.extra.update(bounds_time=tb, difference=db is not None, difference_time=td, hidden=bool(hidden))
    if db is not None:
        res.extra["difference_bounds"] = difference_summary(db)
    model, w, fill = logit_change_model(nets, domain, bds, db, hidden)
    res = solve_linear(res, nets, domain, model, fill, w, max_abs_change, None, time_limit, solver, attack, rng, t1)
    if db is not None:
        vb = float(max(np.max(np.abs(db.lower[-1])), np.max(np.abs(db.upper[-1]))))
        if res.dual_bound is None or not np.isfinite(res.dual_bound) or res.dual_bound > vb:
            res.dual_bound, res.extra["dual_source"] = vb, "difference-bounds"
            if res.objective is not None and res.verified:
                res.gap = relative_gap(res.objective, res.dual_bound)
        if report:
            report_difference(res, lambda f: logit_change_model(nets, domain, bds, db if f else None, hidden)[0],
                              solver, time_limit, t1)
    res.time = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------ top1_equivalent
def disagreement(l1: np.ndarray, l2: np.ndarray) -> np.ndarray:
    r"""The disagreement margin of two logit batches (one row per input), float64:

    .. math::
        g = \max_{c_1 \ne c_2} \min\big(a^1_{c_1} - \max_{k\ne c_1} a^1_k,\
        a^2_{c_2} - \max_{k\ne c_2} a^2_k\big)

    — positive iff both networks have a strict winner and the winners differ (then it is
    the smaller of the two winning margins); otherwise ≤ 0 (when the winners agree, minus
    the smaller of their margins).
    """
    l1, l2 = np.atleast_2d(l1), np.atleast_2d(l2)
    c1, c2 = np.argmax(l1, axis=1), np.argmax(l2, axis=1)
    s1, s2 = np.sort(l1, axis=1), np.sort(l2, axis=1)
    m1, m2 = s1[:, -1] - s1[:, -2], s2[:, -1] - s2[:, -2]
    return np.where(c1 != c2, np.minimum(m1, m2), -np.minimum(m1, m2))


def _obj_disagreement(logits):
    """:func:`disagreement` and its gradient (for the attacks)."""
    a1, a2 = np.asarray(logits[0], float), np.asarray(logits[1], float)
    r = np.arange(len(a1))
    o1, o2 = np.argsort(a1, axis=1), np.argsort(a2, axis=1)
    t1, s1, t2, s2 = o1[:, -1], o1[:, -2], o2[:, -1], o2[:, -2]
    m1, m2 = a1[r, t1] - a1[r, s1], a2[r, t2] - a2[r, s2]
    # the winners differ: g = min(m1, m2), raise the smaller margin; they agree: g = −min(m1, m2)
    sign = np.where(t1 != t2, 1.0, -1.0)
    use1 = m1 <= m2
    g1, g2 = np.zeros_like(a1), np.zeros_like(a2)
    g1[r, t1] += sign * use1
    g1[r, s1] -= sign * use1
    g2[r, t2] += sign * ~use1
    g2[r, s2] -= sign * ~use1
    return sign * np.minimum(m1, m2), [g1, g2]


def segment_search(nets, x_p: np.ndarray, x_q: np.ndarray, *, n: int = 65, refine: int = 60) -> tuple:
    r"""Look for a disagreement on the segment from ``x_p`` to ``x_q`` (both in the domain).

    Where a network's predicted class changes between two samples of the segment its switch
    point is located by bisection, for each network; between consecutive switch points (of
    either network) the networks may disagree (by margins of the order of the logit
    difference there), and each such stretch is sampled finely. Returns ``(x, g)``: the input of the largest :func:`disagreement` met.
    """
    n1, n2 = nets
    d = x_q - x_p

    def at(s):
        X = x_p[None, :] + np.atleast_1d(s)[:, None] * d[None, :]
        return X, n1.forward(X), n2.forward(X)

    S = np.linspace(0.0, 1.0, n)
    X, l1, l2 = at(S)
    g = disagreement(l1, l2)
    best = (X[int(np.argmax(g))], float(np.max(g)))
    k1, k2 = np.argmax(l1, axis=1), np.argmax(l2, axis=1)
    switches = []  # where a network's predicted class changes, located by bisection
    for net, k in ((n1, k1), (n2, k2)):
        for i in np.flatnonzero(k[:-1] != k[1:]):
            lo, hi, c0 = S[i], S[i + 1], k[i]
            for _ in range(refine):
                mid = (lo + hi) / 2
                if int(np.argmax(net.forward(x_p + mid * d))) == c0:
                    lo = mid
                else:
                    hi = mid
            switches.append((lo + hi) / 2)
    sw = np.unique(np.clip(switches, 0.0, 1.0))
    for a, b in itertools.pairwise(sw):  # the stretches between consecutive switch points
        w = max(b - a, 1e-15)
        T = np.clip(np.concatenate([np.linspace(a, b, 33), a + w * np.array([1e-6, 1e-3]),
                                    b - w * np.array([1e-6, 1e-3])]), 0.0, 1.0)
        Xt, m1, m2 = at(T)
        gt = disagreement(m1, m2)
        j = int(np.argmax(gt))
        if gt[j] > best[1]:
            best = (Xt[j], float(gt[j]))
    return best


def _decide(model, tcol, solver, budget, start, tau, first_only, lower=0.0):
    """Solve ``max t`` until it is settled against τ': an input with t ≥ τ' (stop there when
    ``first_only``) or a dual bound whose widening is < τ' − ``lower``. Returns the Solution."""
    # the largest dual bound whose widening (widen_dual) stays below τ' − lower
    thr = tau - lower
    s = (thr - DUAL_SAFETY) / (1 + DUAL_SAFETY) if thr >= DUAL_SAFETY else (thr - DUAL_SAFETY) / (1 - DUAL_SAFETY)
    s -= 1e-12 * (1.0 + abs(thr))
    stops = {"dual_stop": s}
    if first_only:
        stops["objective_target"] = tau
    return run_model(model, solver, None if budget is None else max(budget, 0.05), start, **stops)


def _winner_model(net, domain, bd, k, hi_t):
    """max t s.t. a_k − a_j ≥ t (j ≠ k), t ≤ ``hi_t``: can ``net`` answer k by a margin t?"""
    model = encode(net, domain, bd, inactive_rows=False)
    a = logit_cols(model, 0)
    t = int(model.add_vars(1, -np.inf, hi_t)[0])
    add_rows(model, [{int(a[k]): 1.0, int(a[j]): -1.0, t: -1.0} for j in range(a.size) if j != k], 0.0, np.inf)
    model.set_objective({t: 1.0}, "max")

    def fill(vec):
        la = vec[a]
        vec[t] = min(float(la[k] - np.max(np.delete(la, k))), hi_t)

    return model, t, fill


def _pair_model(nets, domain, bds, db, hidden, c1, c2, hi_t, ud):
    """max t s.t. a¹_{c1} − a¹_k ≥ t (k ≠ c1), a²_{c2} − a²_k ≥ t (k ≠ c2), t ≤ ``hi_t``;
    with ``db`` also the δ columns and 2t ≤ δ_{c1} − δ_{c2} ≤ ``ud``."""
    model = encode(nets, domain, bds, inactive_rows=False)
    a1, a2 = logit_cols(model, 0), logit_cols(model, 1)
    dv = add_pair_difference(model, db, hidden) if db is not None else None
    t = int(model.add_vars(1, -np.inf, hi_t)[0])
    rows = [{int(a1[c1]): 1.0, int(a1[k]): -1.0, t: -1.0} for k in range(a1.size) if k != c1]
    rows += [{int(a2[c2]): 1.0, int(a2[k]): -1.0, t: -1.0} for k in range(a2.size) if k != c2]
    lo, hi = [0.0] * len(rows), [np.inf] * len(rows)
    if dv is not None:
        d = dv.d[-1]
        rows += [{int(d[c1]): 1.0, int(d[c2]): -1.0, t: -2.0}, {int(d[c1]): 1.0, int(d[c2]): -1.0}]
        lo += [0.0, -np.inf]
        hi += [np.inf, float(ud)]
    add_rows(model, rows, lo, hi)
    model.set_objective({t: 1.0}, "max")

    def fill(vec):
        l1, l2 = vec[a1], vec[a2]
        vec[t] = min(float(min(l1[c1] - np.max(np.delete(l1, c1)), l2[c2] - np.max(np.delete(l2, c2)))), hi_t)
        if dv is not None:
            fill_difference(vec, model, dv)

    return model, t, fill


def top1_equivalent(original: Network, pruned: Network, domain: Box, *, bounds=None,
                    time_limit: float | None = 120.0, solver: str = "highs", bounds_method: str = "alpha",
                    difference: bool | None = None, hidden: bool = False, margin: float = 1e-6,
                    engine: str = "auto", attack: bool = True, rng=0) -> Result:
    r"""Can the predicted classes of a network and its pruned copy differ anywhere on ``domain``?

    maxout (SPEC §4) over every ordered pair of classes :math:`c_1 \ne c_2`, answered as one
    decision: is there an input with

    .. math::
        t(x) = \min\big(a^1_{c_1} - \max_{k\ne c_1} a^1_k,\ a^2_{c_2} - \max_{k\ne c_2} a^2_k\big)
        \ge \tau' = 2\,\text{margin}\ ?

    A tie is not a difference: a witness counts when the winners differ and both winning
    margins are ≥ ``margin`` in float64 (:func:`disagreement` ≥ ``margin``, the solver's
    τ' leaves room for its tolerances); a proof shows that no input has :math:`t \ge \tau'`
    for any pair.

    Steps, each stopping at the first verified witness:

    1. attacks on :func:`disagreement` (projected gradient, then :func:`segment_search`
       between inputs the networks classify differently);
    2. cheap bounds per pair: :math:`t \le \min_{k\ne c_1} U^1_{c_1 k}` and
       :math:`t \le \min_{k\ne c_2} U^2_{c_2 k}` (each network's own class margins,
       :func:`class_margin_bounds`) and, with the difference bounds (computed only if a pair
       survives the networks' own bounds and the attacks found no witness),
       :math:`2t \le \delta_{c_1} - \delta_{c_2} \le U^\delta_{c_1 c_2}`
       (:meth:`~nnmiplib.bounds.DifferenceBounds.upper_rows`); a pair bounded below τ' is refuted;
    3. per network and class k still in a live pair, the single-network MIP
       :math:`\max t: a_k - a_j \ge t` (smaller than the joint model): a dual bound below τ'
       removes k and its pairs; an input where the network answers k is checked against the
       other network and searched along segments;
    4. every pair still alive, most promising first: the joint MIP; in the second round,
       for a pair it left open, with ``engine="auto"`` first the branch and bound over both
       networks stacked into one (:func:`nnmiplib.bab.solve_pair`, each neuron linked to its
       copy by the difference bounds) with half the pair's share, then the joint MIP
       (:math:`\max t`, both networks, with the δ columns and
       :math:`2t \le \delta_{c_1} - \delta_{c_2} \le U^\delta` when the difference bounds
       are used).

    Steps 3–4 share the time left: a fair share per MIP first, then what remains for the
    undecided ones. Solves stop as soon as they are settled (an input with t ≥ τ', or a dual
    bound whose widening is < τ').

    Returns
    -------
    Result
        ``extra["equivalent"]``: True (proven), False (``x`` is a verified witness) or None
        (undecided at the time limit); ``status`` is ``decided`` in the first two cases.
        ``objective``: :func:`disagreement` at ``x`` (the best input found; < 0 where the
        classes agree); ``dual_bound``: an upper bound on the disagreement margin t over the
        domain (max over pairs of what refuted or bounded each). ``extra["pairs"]``: per pair
        the cheap bound, the outcome ("bounds", "class", "solver", "bab", "witness", "undecided",
        "not solved") and the bound; ``extra["classes"]``: per network the classes it may
        answer after steps 2–3; ``extra["difference"]`` (whether difference bounds were used),
        ``extra["difference_skipped"]`` (why not, when asked for but not needed),
        ``extra["cheap_bound_without_difference"]``,
        ``extra["refuted_by_bounds"]`` and ``extra["refuted_by_bounds_without_difference"]``
        measure what the difference bounds gave.

    Raises
    ------
    ValueError
        Before any work, for an argument that means nothing (``time_limit`` ≤ 0 or NaN, an
        unknown ``solver``/``bounds_method``, a negative ``margin``, networks with different
        numbers of classes, ``difference=True`` for networks of different shapes).
    """
    t0 = time.perf_counter()
    time_limit = check_query_arguments(domain=domain, time_limit=time_limit, solver=solver, bounds=bounds,
                                       bounds_method=bounds_method, attack=attack, rng=rng, margin=margin)
    nets = [original, pruned]
    check_nets(nets, domain)
    check_difference(None, nets, hidden=hidden)
    if engine not in ("auto", "mip"):
        raise ValueError(f"engine must be 'auto' or 'mip', got {engine!r}")
    K = original.n_outputs
    if pruned.n_outputs != K:
        raise ValueError(f"the networks have {K} and {pruned.n_outputs} classes; top-1 equivalence compares "
                         "class decisions one to one")
    if K < 2:
        raise ValueError("top-1 equivalence needs at least two classes")
    check_difference(difference, nets)
    bds, tb = get_bounds(nets, domain, bounds, bounds_method)
    t1 = time.perf_counter()  # the time limit starts after the bounds
    deadline = None if time_limit is None else t1 + time_limit
    tau = 2.0 * float(margin)
    res = Result("top1-equivalent", "max", solver=solver, margin=margin)
    res.extra.update(bounds_time=tb, hidden=bool(hidden), tau=tau, equivalent=None)
    st = _Top1(nets, domain, margin, rng)

    # 1. attacks
    if attack:
        ar = atk.attack(nets, domain, _obj_disagreement, rng=rng, extra=domain.center)
        if ar.x is not None:
            st.offer(ar.x, f"attack:{ar.source}")
        if not st.witness:
            st.segments([domain.center, ar.x] if ar.x is not None else [domain.center])
    # 2. cheap bounds: D[i][k] ≥ the largest margin by which network i can answer class k
    U = [class_margin_bounds(n, b, domain) for n, b in zip(nets, bds)]
    D = [np.array([np.min(np.delete(u[k], k)) for k in range(K)]) for u in U]
    off = ~np.eye(K, dtype=bool)
    own_pair = np.minimum(D[0][:, None], D[1][None, :])
    # the difference bounds only where they can matter: some pair survives each network's
    # own bounds and no witness is known (else they would only cost their time)
    db, td, skipped = None, 0.0, None
    same_shape = original.layer_sizes == pruned.layer_sizes
    if wants_difference(difference, nets) and (st.witness or not np.any(own_pair[off] >= tau)):
        skipped = "witness found by the attacks" if st.witness else "every pair refuted by each network's own bounds"
    else:
        db, td = timed_pair_difference(nets, domain, bds, difference)
    res.extra.update(difference=db is not None, difference_time=td, difference_skipped=skipped)
    if db is not None:
        res.extra["difference_bounds"] = difference_summary(db)
    ud = np.full((K, K), np.inf)
    trans = [np.full(K, np.inf), np.full(K, np.inf)]
    if db is not None:
        C = (np.eye(K)[:, None, :] - np.eye(K)[None, :, :]).reshape(K * K, K)
        ud = db.upper_rows(C).reshape(K, K)  # ud[c, k] ≥ δ_c − δ_k
        # t₁(k) ≤ t₂(k) + max_j ud[k, j] and t₂(k) ≤ t₁(k) + max_j ud[j, k]: a bound on one
        # network's margin for class k carries over to the other
        trans = [np.array([np.max(np.delete(ud[k], k)) for k in range(K)]),
                 np.array([np.max(np.delete(ud[:, k], k)) for k in range(K)])]
    D_own = [d.copy() for d in D]
    D = [np.minimum(D_own[0], D_own[1] + trans[0]), np.minimum(D_own[1], D_own[0] + trans[1])]
    cheap = np.minimum(np.minimum(D[0][:, None], D[1][None, :]), ud / 2)
    res.extra.update(cheap_bound=float(cheap[off].max()), cheap_bound_without_difference=float(own_pair[off].max()),
                     refuted_by_bounds=int(np.sum(cheap[off] < tau)),
                     refuted_by_bounds_without_difference=int(np.sum(own_pair[off] < tau)))
    pairs = {(c1, c2): {"c1": c1, "c2": c2, "cheap_bound": float(cheap[c1, c2]), "bound": float(cheap[c1, c2]),
                        "outcome": "bounds" if cheap[c1, c2] < tau else "todo", "seconds": 0.0, "nodes": 0}
             for c1 in range(K) for c2 in range(K) if c1 != c2}
    cls_state = [{}, {}]  # (i, k) → "possible" | "undecided" once its MIP ran
    nodes = 0

    def settle():
        """Refresh the pairs from the class bounds D (a refuted class closes its pairs)."""
        for p in pairs.values():
            if p["outcome"] in ("todo", "undecided"):
                bnd = min(D[0][p["c1"]], D[1][p["c2"]])
                if bnd < tau:
                    p["outcome"], p["bound"] = "class", float(min(p["bound"], bnd))

    def open_pairs():
        return [p for p in pairs.values() if p["outcome"] in ("todo", "undecided")]

    def needed(i, k):
        key = "c1" if i == 0 else "c2"
        return D[i][k] >= tau and any(p[key] == k for p in open_pairs()) and not st.answers(i, k, tau)

    # 3.–4. each network's robustness, its single classes, then the pairs — in two rounds
    def time_left():
        return None if deadline is None else deadline - time.perf_counter()

    def class_bound(i, k, dual):
        D[i][k] = min(D[i][k], dual)
        D[1 - i][k] = min(D[1 - i][k], dual + trans[1 - i][k])

    def robust_job(i, budget):
        """Network i: can a class k ≠ c_i (c_i its class at the best input) beat c_i by τ'?"""
        c = st.class_at(i)
        ks = [k for k in range(K) if k != c and needed(i, k)]
        if c is None or not ks:
            return 0
        found, dual, n, tight = _rows_bab(st, i, np.array([np.eye(K)[k] - np.eye(K)[c] for k in ks]), None,
                                          bds[i], tau, budget, rng)
        if tight is not None:  # sound on the whole domain: every later search and model of network i uses them
            bds[i] = tight
        if dual is not None:
            for k in ks:
                class_bound(i, k, dual)
        robust_state[i] = "proved" if dual is not None and dual < tau else ("found" if found else "undecided")
        return n

    def class_job(i, k, budget):
        if engine == "auto":
            # the branch and bound aims at τ' only: aiming below it (so that the bound carries
            # over to the other network through the difference bounds) leaves every node whose
            # bound lies between the two open, and a near-tie never closes (measured on 100x10
            # image 8: proven at 29 s aiming at τ', open at 30 s aiming at τ' − 0.13)
            C = np.array([np.eye(K)[k] - np.eye(K)[j] for j in range(K) if j != k])
            found, dual, n, _ = _rows_bab(st, i, C, np.zeros(K - 1, dtype=np.int64), bds[i], tau, budget, rng)
        else:
            lower = float(trans[1 - i][k]) if np.isfinite(trans[1 - i][k]) and D[1 - i][k] >= tau else 0.0
            model, tcol, fill = _winner_model(nets[i], domain, bds[i], k, float(max(D[i][k], tau)))
            start = st.start_for(model, fill, lambda l: int(np.argmax(l[i])) == k)
            sol = _decide(model, tcol, solver, budget, start, tau, first_only=True, lower=lower)
            found, dual = _settle_solution(st, model, sol, tcol, domain, tau)
            n = int(sol.nodes)
        cls_state[i][k] = "possible" if found else "undecided"
        if dual is not None:
            class_bound(i, k, dual)
        return n

    def pair_job(p, budget, first_only):
        a, b = p["c1"], p["c2"]
        ts = time.perf_counter()
        n_bab = 0
        if engine == "auto" and same_shape and not first_only:
            # a pair the first round's MIP left open: the branch and bound over both networks
            # first, with half the budget (the MIP settles easy pairs faster, so it goes first)
            _, dual, n_bab = _pair_bab(st, a, b, bds, db, tau, None if budget is None else budget / 2, rng)
            p["seconds"] += time.perf_counter() - ts
            p["nodes"] += n_bab
            if st.witness:
                p["outcome"] = "witness"
                return n_bab
            if dual is not None and dual < tau:
                p["outcome"], p["bound"] = "bab", dual
                return n_bab
            if dual is not None:
                p["bound"] = min(p["bound"], dual)
            if budget is not None:
                budget = max(budget - (time.perf_counter() - ts), 0.05)
            ts = time.perf_counter()
        model, tcol, fill = _pair_model(nets, domain, bds, db, hidden, a, b, float(max(p["bound"], tau)), ud[a, b])
        start = st.start_for(model, fill, lambda l: int(np.argmax(l[0])) == a and int(np.argmax(l[1])) == b)
        sol = _decide(model, tcol, solver, budget, start, tau, first_only=first_only)
        _, dual = _settle_solution(st, model, sol, tcol, domain, tau)
        p["seconds"] += time.perf_counter() - ts
        p["nodes"] += int(sol.nodes)
        if st.witness:
            p["outcome"] = "witness"
        elif dual is not None and dual < tau:
            p["outcome"], p["bound"] = "solver", dual
        else:
            p["outcome"] = "undecided"
            if dual is not None:
                p["bound"] = min(p["bound"], dual)
        return n_bab + int(sol.nodes)

    robust_state = [None, None]
    for rnd in (0, 1):
        phases = [("robust", [i for i in (0, 1) if engine == "auto" and robust_state[i] in (None, "undecided")], 0.5),
                  ("class", None, 0.5), ("pair", None, 1.0)]
        for phase, items, share in phases:
            if phase == "class":
                items = [(i, k) for k in range(K) for i in (0, 1) if needed(i, k)
                         and cls_state[i].get(k) in (None, "undecided")]
            elif phase == "pair":
                items = sorted(open_pairs(), key=lambda p: -p["bound"])
            for n_done, item in enumerate(items):
                left = time_left()
                if st.witness or (left is not None and left <= 0.05) or not open_pairs():
                    break
                budget = None if left is None else left * (share if rnd == 0 else 1.0) / (len(items) - n_done)
                ts = time.perf_counter()
                if phase == "robust":
                    nodes += robust_job(item, budget)
                elif phase == "class":
                    if not needed(*item):
                        continue
                    nodes += class_job(*item, budget)
                elif item in open_pairs():
                    nodes += pair_job(item, budget, first_only=(rnd == 0))
                settle()
                log.debug("top1 round %d %s %s: %.2fs (budget %s)", rnd, phase,
                          item if phase != "pair" else (item["c1"], item["c2"]), time.perf_counter() - ts, budget)
    for p in pairs.values():
        if p["outcome"] == "todo":
            p["outcome"] = "not solved"
    res.nodes = nodes
    res.dual_bound = float(max(p["bound"] for p in pairs.values()))
    res.extra["pairs"] = list(pairs.values())
    res.extra["class_bounds"] = [d.tolist() for d in D]
    res.extra["classes"] = [[k for k in range(K) if D[i][k] >= tau] for i in (0, 1)]
    res.extra["pairs_solved"] = int(sum(p["seconds"] > 0 for p in pairs.values()))
    if st.best_x is not None:
        res.x = np.asarray(st.best_x, float)
        res.objective = st.best_g
        res.solver_objective = st.solver_t if st.best_src == "solver" and st.solver_t is not None else st.best_g
        res.incumbent_source = st.best_src
        res.verified = bool(domain.contains(res.x, DOMAIN_TOL) and st.best_g >= margin)
        if not res.verified:
            res.message = "best input: the classes agree there, or a winning margin is below `margin` (no witness)"
    if res.verified:
        res.extra["equivalent"], res.status = False, "decided"
    elif all(p["outcome"] in ("bounds", "class", "solver", "bab") for p in pairs.values()):
        res.extra["equivalent"], res.status = True, "decided"
    else:
        res.status = "time_limit_infeasible"
    if res.objective is not None:
        res.gap = relative_gap(res.objective, res.dual_bound)
    res.fill_outputs(nets)
    res.time = time.perf_counter() - t0
    return res


def _pair_bab(st, a: int, b: int, bds, db, tau: float, budget, rng):
    """Can network 1 answer ``a`` and network 2 answer ``b``, each by τ'? ``max min(y¹_a − y¹_k,
    y²_b − y²_k)`` by the branch and bound over both networks stacked into one
    (:func:`nnmiplib.bab.solve_pair`, linked by the difference bounds ``db`` when given). The
    incumbent is offered to ``st``. Returns (found, dual bound or None, nodes)."""
    from ..bab import solve_pair

    n1, n2 = st.nets
    K = n1.n_outputs
    E = np.eye(K)
    rows = [np.concatenate([E[a] - E[k], np.zeros(K)]) for k in range(K) if k != a]
    rows += [np.concatenate([np.zeros(K), E[b] - E[k]]) for k in range(K) if k != b]
    C = np.array(rows)
    seed = rng if isinstance(rng, (int, np.integer)) else 0
    r = solve_pair(n1, n2, st.domain.lo, st.domain.hi, C, np.zeros(len(C)), bounds=bds, difference=db,
                   groups=np.zeros(len(C), dtype=np.int64), threshold=tau, witness=tau,
                   time_limit=None if budget is None else max(budget, 0.05), attack_starts=16, seed=int(seed),
                   refine=True, initial_points=np.asarray(st.seen[-4:]) if st.seen else None)
    found = False
    if r.x is not None and st.domain.contains(r.x, DOMAIN_TOL):
        F = float((C @ np.concatenate([n1.forward(r.x), n2.forward(r.x)])).min())
        st.offer(r.x, "bab", F)
        found = F >= tau
    dual = float(r.dual_bound) if (np.isfinite(r.dual_bound) and not found) else None
    log.debug("top1 pair bab (%d, %d): %s, dual %s, %d nodes", a, b, r.status, r.dual_bound, r.nodes)
    return found, dual, int(r.nodes)


def _rows_bab(st, i: int, C, groups, bd, tau: float, budget, rng):
    """``max F`` over network ``i``'s logits by branch and bound (:func:`nnmiplib.bab.solve`):
    rows ``C`` (``groups`` None: F = the largest row; one group: F = the smallest row), stopping
    at a point with F > τ' or once every node is bounded by τ'. The incumbent is
    offered to ``st``. With ``groups`` None, a time limit and two or more hidden layers, the
    search first tightens the intermediate bounds (:data:`BAB_TIGHTEN` of its time, stopped
    early once they decide the rows). Returns (found: a point with F ≥ τ', dual bound or None,
    nodes, the tightened Bounds or None)."""
    from ..bab import solve

    net, domain = st.nets[i], st.domain
    seed = rng if isinstance(rng, (int, np.integer)) else 0
    init = np.asarray(st.seen[-4:]) if st.seen else None
    r = solve(net, domain.lo, domain.hi, C, np.zeros(C.shape[0]), lower=bd.lower[:-1], upper=bd.upper[:-1],
              groups=groups, threshold=tau, witness=tau,
              time_limit=None if budget is None else max(budget, 0.05), attack_starts=16, seed=int(seed),
              refine=True, initial_points=init, tighten=BAB_TIGHTEN if budget is not None else 0.0)
    tight = None
    if r.bounds is not None:
        tight = replace(bd, lower=[*r.bounds[0], bd.lower[-1]], upper=[*r.bounds[1], bd.upper[-1]],
                        method=f"{bd.method}+bab-tighten")
    found = False
    if r.x is not None and domain.contains(r.x, DOMAIN_TOL):
        rows = C @ net.forward(r.x)
        F = float(rows.max() if groups is None else rows.min())
        st.offer(r.x, "bab", F)
        found = F >= tau
        if found and not st.witness:
            st.segments([r.x, domain.center])
    dual = float(r.dual_bound) if (np.isfinite(r.dual_bound) and not found) else None
    log.debug("top1 bab on network %d, %d rows: %s, dual %s, incumbent %s, %d nodes", i, C.shape[0], r.status,
              r.dual_bound, r.value, r.nodes)
    return found, dual, int(r.nodes), tight


def _settle_solution(st, model, sol, tcol, domain, tau):
    """Offer a MIP's input to ``st`` (polish and segment searches if it claims t ≥ τ'); return
    (found, widened dual bound or None)."""
    found = False
    if sol.x is not None:
        x = solver_input(model, sol.x, domain)
        if x is not None:
            st.offer(x, "solver", float(sol.x[tcol]))
            found = float(sol.x[tcol]) >= tau
            if found and not st.witness:
                st.polish(x)
                if not st.witness:
                    st.segments([x, domain.center])
    dual = widen_dual(sol.dual_bound, "max") if sol.dual_bound is not None else None
    dual = float(dual) if dual is not None and np.isfinite(dual) and not found else None
    return found, dual


class _Top1:
    """The best input of :func:`top1_equivalent` so far and the searches around inputs."""

    def __init__(self, nets, domain, margin, rng):
        self.nets, self.domain, self.margin = nets, domain, margin
        self.rng = np.random.default_rng(rng)
        self.best_x, self.best_g, self.best_src, self.solver_t = None, -np.inf, None, None
        self.seen: list = []

    @property
    def witness(self) -> bool:
        return self.best_x is not None and self.best_g >= self.margin

    def g(self, x) -> float:
        return float(disagreement(self.nets[0].forward(x)[None, :], self.nets[1].forward(x)[None, :])[0])

    def offer(self, x, src, solver_t=None):
        x = self.domain.clip(np.asarray(x, float))
        gx = self.g(x)
        self.seen.append(x)
        if gx > self.best_g:
            self.best_x, self.best_g, self.best_src = x, gx, src
            self.solver_t = solver_t

    def class_at(self, i: int):
        """Network ``i``'s class at the best input so far (None before any input)."""
        return None if self.best_x is None else int(np.argmax(self.nets[i].forward(self.best_x)))

    def answers(self, i: int, k: int, tau: float) -> bool:
        """Some input seen so far has network ``i`` answer ``k`` by a margin ≥ τ'."""
        if not self.seen:
            return False
        y = self.nets[i].forward(np.asarray(self.seen))
        m = y[:, k] - np.max(np.delete(y, k, axis=1), axis=1)
        return bool(np.any(m >= tau))

    def polish(self, x):
        """Points near a solver input (radii 1e-7..1e-3 of the box width): ties and tolerances."""
        for rad in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3):
            P = self.domain.clip(x + rad * self.domain.width * self.rng.uniform(-1, 1, size=(32, self.domain.n)))
            l1, l2 = self.nets[0].forward(P), self.nets[1].forward(P)
            g = disagreement(l1, l2)
            j = int(np.argmax(g))
            if g[j] > self.best_g:
                self.best_x, self.best_g, self.best_src, self.solver_t = P[j], float(g[j]), "solver+polish", None
            if self.witness:
                return

    def segments(self, anchors):
        """:func:`segment_search` between the anchors and every input seen so far."""
        pts = [self.domain.clip(np.asarray(a, float)) for a in anchors if a is not None]
        for p in pts:
            for q in self.seen[-8:] + pts:
                if self.witness:
                    return
                if np.array_equal(p, q):
                    continue
                x, gx = segment_search(self.nets, p, q)
                if gx > self.best_g:
                    self.best_x, self.best_g, self.best_src, self.solver_t = x, gx, "segment", None

    def start_for(self, model, fill, wanted):
        """A MIP start from the best input if the networks answer as ``wanted`` there."""
        if self.best_x is None:
            return None
        if not wanted([n.forward(self.best_x) for n in self.nets]):
            return None
        v = model.point(self.best_x)
        fill(v)
        return v
