r"""The questions nnmiplib answers with its models (thesis §3–§4): PV, maxdiff, maxout,
maxflip, mineps. Each returns a :class:`~nnmiplib.result.Result`.

Common behaviour of every query
-------------------------------
* **Bounds**: pass ``bounds`` (one :class:`~nnmiplib.bounds.Bounds` per network, computed
  on the query's domain) or let the query compute them with
  ``compute_bounds(net, domain, method=bounds_method)`` (default ``"lp"``; ``"crown"`` is
  fast and fine for tests). Bound time is reported in ``result.extra["bounds_time"]``
  and is **not** charged to ``time_limit``.
* **Time limit**: ``time_limit`` is a wall-clock budget for everything after the
  bounds — attacks, model building, the difference LPs and every refinement round of
  the softmax queries, every solve (maxflip's strict re-solve, mineps's LP fallback) and
  the polishing of the solver's point — measured from one start time. Overruns are
  limited to the solver's own reaction time to its limit plus the final float64
  checks (≈ 0.1 s on the test machine; the tests allow 2·limit + 2 s under load).
  ``result.time`` includes the bounds.
* **Dual bound always reported** (unless the query is proven infeasible): the solver's
  bound widened by 1e-6·(1+|bound|) (``extra["dual_source"] = "solver"``); when the
  solver gives none (a time limit before the root, NaN), the bound implied by the
  model's column bounds (``"column-bounds"``: PV margin max_k(u_k − ℓ_c) from the logit
  bounds, maxflip the neuron pairs that can flip plus the stable flips, mineps 0); mineps
  then tries its LP relaxation (``"lp-relaxation"``). The softmax queries always hold
  a relaxation bound (≤ 2).
* **Primal heuristics**: random sampling + projected gradient (:mod:`nnmiplib.attacks`)
  run first; the best input is handed to the solver as a MIP start after checking that
  the model reproduces it (:meth:`MipModel.point` satisfies every row within 1e-6).
  ``result.incumbent_source`` says which source gave the reported input.
* **Soundness**: the reported ``x`` is re-evaluated in float64; ``verified`` requires
  x ∈ domain (±1e-9), |objective − solver_objective| ≤ 1e-5·(1+|objective|) and the
  query's strict conditions at x (decisions with ``margin``; ties are not findings).
  The solver's dual bound is widened by 1e-6·(1+|bound|) before it is reported.

Statuses: ``optimal`` / ``time_limit_feasible`` / ``time_limit_infeasible`` /
``infeasible`` / ``feasible`` (maxflip only: the solver's optimum sat on ReLU ties and
did not reproduce) / ``error`` (see :mod:`nnmiplib.result`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from . import attacks as atk
from .domains import Box, unit_box
from .network import Network, softmax
from .query_core import (  # noqa: F401  (re-exported for softmax_pwl and users)
    DOMAIN_TOL,
    DUAL_SAFETY,
    START_TOL,
    _check_nets,
    _finish,
    _logit_cols,
    _rows,
    _run,
    _solve_linear,
    _widen,
    get_bounds,
    lp_objective_bound,
    solver_input,
    start_violation,
)
from .result import Result, relative_gap
from .solvers.base import Solution, Status

__all__ = ["RESULTS_VERSION", "Result", "cache_version", "get_bounds", "max_output_change",
           "maxdiff", "maxflip", "maxout", "mineps"]

#: Bump when a query can return a different result for the same inputs (a new relaxation,
#: another time budget rule): cached experiment cells computed by older code are then not reused.
RESULTS_VERSION = "2"


def cache_version() -> str:
    """Version tag for experiment grids whose cells run queries."""
    from . import __version__

    return f"{__version__}+queries{RESULTS_VERSION}"

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ (PV), margin form
def _margin_max_model(model, a_cols: np.ndarray, lo: np.ndarray, hi: np.ndarray, c: int):
    """v ≤ a_k − a_c + M_k(1 − y_k), Σ y_k = 1 (k ≠ c): max v = max_k a_k − a_c exactly."""
    K = a_cols.size
    others = [k for k in range(K) if k != c]
    v_lo = min(lo[k] - hi[c] for k in others)
    v_hi = max(hi[k] - lo[c] for k in others)
    v = int(model.add_vars(1, v_lo, v_hi)[0])
    y = model.add_vars(len(others), 0.0, 1.0, integer=True)
    rows, rl, rh = [], [], []
    for yk, k in zip(y, others):
        M = max(v_hi - (lo[k] - hi[c]), 0.0)
        rows.append({v: 1.0, int(a_cols[k]): -1.0, int(a_cols[c]): 1.0, int(yk): M})
        rl.append(-np.inf)
        rh.append(M)
    rows.append({int(j): 1.0 for j in y})
    rl.append(1.0)
    rh.append(1.0)
    _rows(model, rows, rl, rh)

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
                      decide: bool = False) -> Result:
    r"""Problem (PV), SPEC §3: the largest output change of ``net`` on ``domain``.

    ``form="softmax"``: :math:`\max_{x\in X} \lVert\operatorname{softmax}(a^{L+1}(x)) - y_0\rVert_1`
    with :math:`y_0 = N(x_0)` (thesis (3.1)), solved with the sound PWL relaxation of
    :mod:`nnmiplib.softmax_pwl` (the dual bound is the relaxation's; ``tol`` is the
    absolute gap at which refinement stops).
    ``form="margin"``: :math:`\max_{x\in X}\max_{k\ne c} a_k(x) - a_c(x)` with ``c`` the
    class of ``x0`` — the verifiers' linear form; a dual bound < 0 proves that no input of
    the domain changes the class. ``extra["class_changed"]`` is True when the verified
    witness has value ≥ ``margin``.
    ``decide=True`` (margin form) answers the yes/no question instead of the optimum: the
    search stops as soon as an incumbent reaches ``margin`` (the class changes; the
    attack's point counts) or the dual bound falls to ``−margin`` (robust, proven), so
    ``objective`` is then a witness, not the maximum.
    """
    t0 = time.perf_counter()
    _check_nets([net], domain)
    x0 = np.asarray(x0, dtype=np.float64).ravel()
    if x0.size != net.n_inputs:
        raise ValueError(f"x0 has {x0.size} entries; the network takes {net.n_inputs}")
    if form not in ("margin", "softmax"):
        raise ValueError(f"form must be 'margin' or 'softmax', got {form!r}")
    bds, tb = get_bounds([net], domain, bounds, bounds_method)
    t1 = time.perf_counter()  # the time limit starts after the bounds
    deadline = None if time_limit is None else t1 + time_limit
    c = int(np.argmax(net.forward(x0)))
    if form == "softmax":
        from .softmax_pwl import softmax_l1_query

        y0 = softmax(net.forward(x0))
        res = softmax_l1_query([net], domain, bds, y0=y0, time_limit=time_limit, solver=solver, tol=tol,
                               attack=attack, rng=rng, query="pv-softmax", t_start=t1)
        res.extra.update(bounds_time=tb, reference_class=c)
        res.time = time.perf_counter() - t0
        return res
    from .encode import encode

    res = Result("pv-margin", "max", solver=solver, margin=margin)
    res.extra.update(bounds_time=tb, reference_class=c)
    obj = atk.obj_margin(c)
    cands = []
    model = encode(net, domain, bds[0])
    a = _logit_cols(model, 0)
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
        sol = _run(model, solver, None if deadline is None else deadline - time.perf_counter(), start, **stops)
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

    res = _finish(res, [net], domain, evaluate=evaluate, check=None, cands=cands, sol=sol,
                  model_value=model_value, t0=t0, model=model, deadline=deadline)
    res.extra["class_changed"] = bool(res.verified and res.objective is not None and res.objective >= margin)
    res.extra["robust_proven"] = bool(res.dual_bound is not None and res.dual_bound < 0)
    return res


# ------------------------------------------------------------------------- maxdiff
def maxdiff(net1: Network, net2: Network, domain: Box, *, form: str = "softmax", bounds=None,
            time_limit: float | None = 60.0, solver: str = "highs", bounds_method: str = "lp",
            tol: float = 1e-3, attack: bool = True, rng=0) -> Result:
    r"""maxdiff (SPEC §4): :math:`\max_{x\in X}\lVert\operatorname{softmax}(a_1) - \operatorname{softmax}(a_2)\rVert_1`.

    One shared input, the two Big-M models otherwise independent (architectures may
    differ). ``form="softmax"`` uses the sound PWL relaxation (:mod:`nnmiplib.softmax_pwl`;
    ``tol`` = absolute gap target). ``form="logits"`` (alias ``"margin"``) is the linear
    variant :math:`\max_x \max_k |a_{1,k} - a_{2,k}|` (same number of classes needed).
    ``bounds``: (b1, b2) computed on ``domain`` for exactly these networks.
    """
    t0 = time.perf_counter()
    nets = [net1, net2]
    _check_nets(nets, domain)
    bds, tb = get_bounds(nets, domain, bounds, bounds_method)
    t1 = time.perf_counter()  # the time limit starts after the bounds
    if form == "softmax":
        from .softmax_pwl import softmax_l1_query

        res = softmax_l1_query(nets, domain, bds, time_limit=time_limit, solver=solver, tol=tol, attack=attack,
                               rng=rng, query="maxdiff", t_start=t1)
        res.extra["bounds_time"] = tb
        res.time = time.perf_counter() - t0
        return res
    if form not in ("logits", "margin"):
        raise ValueError(f"form must be 'softmax' or 'logits' (alias 'margin'), got {form!r}")
    if net1.n_outputs != net2.n_outputs:
        raise ValueError("the logits form needs the same number of classes in both networks")
    from .encode import encode

    res = Result("maxdiff-logits", "max", solver=solver)
    res.extra["bounds_time"] = tb
    model = encode(nets, domain, bds)
    a1, a2 = _logit_cols(model, 0), _logit_cols(model, 1)
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
    _rows(model, rows, rl, rh)
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

    res = _solve_linear(res, nets, domain, model, fill, w, fobj, None, time_limit, solver, attack, rng, t1)
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
    """
    t0 = time.perf_counter()
    nets = [net1, net2]
    _check_nets(nets, domain)
    for c, n, nm_ in ((c1, net1, "c1"), (c2, net2, "c2")):
        if not 0 <= int(c) < n.n_outputs:
            raise ValueError(f"{nm_}={c} is not a class of a network with {n.n_outputs} outputs")
    if tau < 0:
        raise ValueError(f"tau must be ≥ 0, got {tau}")
    c1, c2 = int(c1), int(c2)
    bds, tb = get_bounds(nets, domain, bounds, bounds_method)
    t1 = time.perf_counter()  # the time limit starts after the bounds
    from .encode import encode

    res = Result("maxout", "max", solver=solver, margin=margin)
    res.extra.update(bounds_time=tb, c1=c1, c2=c2, tau=float(tau))
    model = encode(nets, domain, bds)
    a1, a2 = _logit_cols(model, 0), _logit_cols(model, 1)
    tau_m = float(tau) + 2 * margin
    rows = []
    for a, c in ((a1, c1), (a2, c2)):
        for k in range(a.size):
            if k != c:
                rows.append({int(a[c]): 1.0, int(a[k]): -1.0})
    _rows(model, rows, tau_m, np.inf)
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

    res = _solve_linear(res, nets, domain, model, lambda v: None, None, atk.obj_maxout(c1, c2, tau_m), check,
                        time_limit, solver, attack, rng, t1, feasible=feasible, evaluate=evaluate)
    if res.x is not None:
        res.extra["class_margins"] = [float(m) for m in margins(res.x)]
    res.time = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------------- maxflip
def _z_or_const(nv, bd, l: int):
    """Per neuron of hidden layer l: binary column (or -1) and its fixed value when stable."""
    z = np.asarray(nv.z[l])
    const = np.where(np.asarray(bd.lower[l]) >= 0, 1.0, 0.0)
    return z, const


def flip_count(net1: Network, net2: Network, x) -> int:
    """Number of hidden neurons active (a > 0) in exactly one of the two networks at x."""
    p1, p2 = net1.preactivations(x), net2.preactivations(x)
    return int(sum(np.sum((p1[l] > 0) != (p2[l] > 0)) for l in range(net1.depth)))


def maxflip(net1: Network, net2: Network, domain: Box, *, bounds=None, time_limit: float | None = 60.0,
            solver: str = "highs", bounds_method: str = "lp", attack: bool = True, rng=0,
            n_samples: int = 512) -> Result:
    r"""maxflip (SPEC §4): the most hidden neurons whose activity differs between two
    networks of the same architecture on one input.

    .. math::
        \max_{x\in X} \sum_{l,i} \omega^l_i,\quad \omega \le z_1 + z_2,\;
        \omega + z_1 + z_2 \le 2,\; \omega\in[0,1]

    Under maximisation ω = z₁ XOR z₂ at an optimum; because the z are binary the
    right-hand sides are integers, so ω may be continuous (no extra binaries). A stable
    neuron has a fixed z (1 if its lower bound ≥ 0, else 0): it enters the rows as a
    constant, and a neuron stable in both networks adds a constant to the objective.
    The float64 objective counts neurons with (a₁ > 0) ≠ (a₂ > 0); ``verified`` requires
    it to equal the solver's count (a flip the solver claims at a = 0 exactly does not count).
    """
    t0 = time.perf_counter()
    nets = [net1, net2]
    _check_nets(nets, domain)
    if net1.layer_sizes != net2.layer_sizes:
        raise ValueError(f"maxflip compares neurons one to one: architectures differ "
                         f"({net1.layer_sizes} vs {net2.layer_sizes})")
    bds, tb = get_bounds(nets, domain, bounds, bounds_method)

    t1 = time.perf_counter()  # the time limit starts after the bounds
    res = Result("maxflip", "max", solver=solver)
    res.extra["bounds_time"] = tb
    model, omegas, const_obj = _flip_model(nets, domain, bds, strict=0.0)
    ar = None
    if attack:
        rng_ = np.random.default_rng(rng)
        X = np.vstack([domain.center[None, :], domain.sample(n_samples, rng_)])
        counts = np.array([flip_count(net1, net2, x) for x in X])
        i = int(np.argmax(counts))
        ar = atk.AttackResult(X[i].copy(), float(counts[i]), "sampling", len(X))

    def evaluate(x):
        return float(flip_count(net1, net2, x))

    res = _solve_linear(res, nets, domain, model, _flip_fill(model, omegas, bds), None, None, None, time_limit,
                        solver, attack, rng, t1, evaluate=evaluate, attack_result=ar)
    left = None if time_limit is None else time_limit - (time.perf_counter() - t1)
    if (res.dual_bound is not None and (res.objective is None or res.objective < res.dual_bound - 0.5)
            and (left is None or left > 0.1)):
        # the solver's optimum sat on a ReLU tie (a = 0 counted as active): re-solve with
        # "active ⇒ a ≥ 1e-5" so that its point reproduces; keep the first dual bound (valid
        # for the thesis's model), take the better verified input
        m2, om2, _ = _flip_model(nets, domain, bds, strict=1e-5)
        prev = res
        cand = atk.AttackResult(prev.x, prev.objective or 0.0, prev.incumbent_source or "none", 0)
        res2 = _solve_linear(Result("maxflip", "max", solver=solver), nets, domain, m2, _flip_fill(m2, om2, bds),
                             None, None, None, time_limit, solver, prev.x is not None, rng, t1, evaluate=evaluate,
                             attack_result=cand if prev.x is not None else None)
        prev.extra["strict_dual_bound"] = res2.dual_bound  # valid if "active" means a ≥ 1e-5
        if res2.x is not None and res2.verified and (prev.objective is None or res2.objective > prev.objective):
            prev.x, prev.objective, prev.solver_objective = res2.x, res2.objective, res2.solver_objective
            prev.verified, prev.incumbent_source = True, f"{res2.incumbent_source} (strict re-solve)"
            prev.nodes += res2.nodes
            prev.fill_outputs(nets)
        res = prev
    if res.dual_bound is not None and res.objective is not None and res.verified:
        res.gap = relative_gap(res.objective, res.dual_bound)
        if res.status == "optimal" and res.objective < res.dual_bound - 0.5:
            res.status = "feasible"
            res.message += "; the solver's optimum did not reproduce in float64 (ReLU ties)"
    res.extra["n_hidden"] = int(sum(net1.hidden_sizes))
    res.extra["stable_constant"] = const_obj
    res.time = time.perf_counter() - t0
    return res


def _flip_model(nets, domain, bds, strict: float = 0.0):
    """The maxflip model; ``strict`` > 0 adds a ≥ strict·z − M(1 − z) (active means a ≥ strict)."""
    from .encode import encode

    net1 = nets[0]
    model = encode(nets, domain, bds)
    const_obj = 0.0
    rows, rl, rh, omegas = [], [], [], []
    for l in range(net1.depth):
        z1, s1 = _z_or_const(model.nets[0], bds[0], l)
        z2, s2 = _z_or_const(model.nets[1], bds[1], l)
        free = (z1 >= 0) | (z2 >= 0)
        const_obj += float(np.sum(~free & (s1 != s2)))
        idx = np.flatnonzero(free)
        om = model.add_vars(idx.size, 0.0, 1.0)
        omegas.append((l, idx, om))
        for j, o in zip(idx, om):
            cz, cs = {int(o): 1.0}, 0.0
            for z, s in ((z1, s1), (z2, s2)):
                if z[j] >= 0:
                    cz[int(z[j])] = cz.get(int(z[j]), 0.0) - 1.0
                else:
                    cs += s[j]
            rows.append(cz)  # ω − Σ z_free ≤ Σ z_const
            rl.append(-np.inf)
            rh.append(cs)
            rows.append({k: (1.0 if k == int(o) else -v) for k, v in cz.items()})  # ω + Σ z_free ≤ 2 − Σ z_const
            rl.append(-np.inf)
            rh.append(2.0 - cs)
    if rows:
        _rows(model, rows, rl, rh)
    c = np.zeros(model.n_vars)
    for _, _, om in omegas:
        c[om] = 1.0
    model.set_objective(c, "max", offset=const_obj)

    if strict > 0:
        srows, slo = [], []
        for i, nv in enumerate(model.nets):
            for l in range(net1.depth):
                z = np.asarray(nv.z[l])
                for j in np.flatnonzero(z >= 0):
                    lo = float(bds[i].lower[l][j])
                    # a ≥ lo + (strict − lo)·z: z = 0 gives the bound, z = 1 gives a ≥ strict
                    srows.append({int(nv.a[l][j]): 1.0, int(z[j]): -(strict - lo)})
                    slo.append(lo)
        if srows:
            _rows(model, srows, slo, np.inf)
    return model, omegas, const_obj


def _flip_fill(model, omegas, bds):
    def fill(vec):
        for l, idx, om in omegas:
            zz = []
            for i, nv in enumerate(model.nets):
                z = np.asarray(nv.z[l])
                zv = np.where(z >= 0, vec[np.maximum(z, 0)], np.where(np.asarray(bds[i].lower[l]) >= 0, 1.0, 0.0))
                zz.append(zv[idx])
            vec[om] = (zz[0] != zz[1]).astype(float)

    return fill


# -------------------------------------------------------------------------- mineps
def mineps(original: Network, pruned: Network, x0, label: int | None = None, *, domain: Box | None = None,
           bounds=None, time_limit: float | None = 60.0, solver: str = "highs", bounds_method: str = "lp",
           keep_margin: float = 1e-6, flip_margin: float = 1e-6, attack: bool = True, rng=0) -> Result:
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
    """
    t0 = time.perf_counter()
    nets = [original, pruned]
    x0 = np.asarray(x0, dtype=np.float64).ravel()
    if domain is None:
        domain = unit_box(x0.size)
    _check_nets(nets, domain)
    if original.layer_sizes[0] != x0.size:
        raise ValueError(f"x0 has {x0.size} entries; the networks take {original.n_inputs}")
    if not domain.contains(x0, DOMAIN_TOL):
        raise ValueError("x0 lies outside the input domain; mineps perturbs x0 inside the domain")
    c0 = int(np.argmax(original.forward(x0)))
    if label is None:
        label = c0
    label = int(label)
    if not 0 <= label < original.n_outputs or pruned.n_outputs != original.n_outputs:
        raise ValueError(f"label {label} must be a class of both networks ({original.n_outputs} outputs)")
    if c0 != label:
        raise ValueError(f"the original network answers {c0} at x0, not the label {label}; "
                         "mineps needs N₁(x₀) = C₀ (SPEC §4)")
    bds, tb = get_bounds(nets, domain, bounds, bounds_method)
    t1 = time.perf_counter()  # the time limit starts after the bounds
    from .encode import encode

    res = Result("mineps", "min", solver=solver, margin=flip_margin)
    res.extra.update(bounds_time=tb, label=label, keep_margin=keep_margin, flip_margin=flip_margin)
    model = encode(nets, domain, bds)
    a1, a2 = _logit_cols(model, 0), _logit_cols(model, 1)
    K = a1.size
    m1, m2 = 2 * keep_margin, 2 * flip_margin
    emax = float(max(np.max(x0 - domain.lo), np.max(domain.hi - x0), 0.0))
    eps = int(model.add_vars(1, 0.0, emax)[0])
    n = x0.size
    I = sp.identity(n, format="csr")
    e_col = sp.csr_matrix((np.ones(n), (np.arange(n), np.full(n, eps))), shape=(n, model.n_vars))
    X = sp.csr_matrix((np.ones(n), (np.arange(n), model.x)), shape=(n, model.n_vars))
    del I
    model.add_rows(X + e_col, x0, np.inf)    # x + ε ≥ x0
    model.add_rows(X - e_col, -np.inf, x0)   # x − ε ≤ x0
    others = [k for k in range(K) if k != label]
    rows = [{int(a1[label]): 1.0, int(a1[k]): -1.0} for k in others]
    _rows(model, rows, m1, np.inf)
    b = model.add_vars(len(others), 0.0, 1.0, integer=True)
    lo2, hi2 = bds[1].lower[-1], bds[1].upper[-1]
    rows, rl = [], []
    for bk, k in zip(b, others):
        M = max(m2 - (lo2[k] - hi2[label]), 0.0)
        rows.append({int(a2[k]): 1.0, int(a2[label]): -1.0, int(bk): -M})
        rl.append(m2 - M)
    rows.append({int(j): 1.0 for j in b})
    rl.append(1.0)
    _rows(model, rows, rl, np.inf)
    model.set_objective({eps: 1.0}, "min")

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

    def evaluate(x):
        return float(np.max(np.abs(np.asarray(x) - x0)))

    ar = _mineps_attack(original, pruned, x0, label, domain, m1, m2, rng) if attack else None
    res = _solve_linear(res, nets, domain, model, fill, None, None, check, time_limit, solver, attack, rng, t1,
                        evaluate=evaluate, attack_result=ar, agree=lambda v, s, tol: v <= s + tol)
    left = None if time_limit is None else time_limit - (time.perf_counter() - t1)
    if res.extra.get("dual_source") == "column-bounds" and (left is None or left > 0.1):
        lb = lp_objective_bound(model, solver, left)  # the LP relaxation beats ε ≥ 0
        if lb is not None and lb > (res.dual_bound if res.dual_bound is not None else -np.inf):
            res.dual_bound = _widen(lb, "min")
            res.extra["dual_source"] = "lp-relaxation"
    if res.dual_bound is not None:
        res.dual_bound = max(0.0, res.dual_bound)  # ε ≥ 0 anyway
        if res.objective is not None and res.verified:
            res.gap = relative_gap(res.objective, res.dual_bound) if res.objective > 0 else abs(res.dual_bound)
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
