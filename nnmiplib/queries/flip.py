"""maxflip (thesis §4): the most neurons whose phase differs between two networks of one architecture.

Common behaviour of every query: see :mod:`nnmiplib.queries`.
"""

from __future__ import annotations

import time

import numpy as np

from ..domains import Box
from ..network import Network
from . import attacks as atk
from .core import add_rows, check_nets, check_query_arguments, solve_linear
from .pairs import (
    add_pair_difference,
    check_difference,
    difference_summary,
    pair_bounds,
    report_difference,
)
from .result import Result, relative_gap

__all__ = ['flip_count', 'maxflip']


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
            n_samples: int = 512, difference: bool | None = None, report: bool = True) -> Result:
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

    Difference bounds (``difference=None``: used, the architectures being equal; False: not):
    the hidden layers' δ = a₁ − a₂ and ∂h = h₁ − h₂ columns of
    :func:`nnmiplib.bounds.difference_bounds` with their ReLU-step lines, and per neuron whose
    δ has a known sign the phase implication it forces: δ ≤ 0 everywhere means a₁ ≤ a₂, so
    a₁ > 0 ⇒ a₂ > 0, i.e. :math:`z_1 \le z_2` and then :math:`\omega \le z_2 - z_1` (δ ≥ 0:
    the mirror rows). Every input with z = [a > 0] satisfies them, so the dual bound still
    bounds the float64 count (it may cut points that count a flip at a = 0, which is not
    one). ``report`` measures the root LP bound without and with them.

    Raises
    ------
    ValueError
        Before any work, for an argument that means nothing: ``time_limit`` ≤ 0 or NaN
        (None: no limit), an unknown ``solver``/``bounds_method``, ``n_samples`` < 1,
        architectures that differ
        (:func:`nnmiplib.queries.core.check_query_arguments`).
    """
    t0 = time.perf_counter()
    time_limit = check_query_arguments(domain=domain, time_limit=time_limit, solver=solver, bounds=bounds,
                                       bounds_method=bounds_method, attack=attack, rng=rng,
                                       counts={"n_samples": n_samples})
    nets = [net1, net2]
    check_nets(nets, domain)
    if net1.layer_sizes != net2.layer_sizes:
        raise ValueError(f"maxflip compares neurons one to one: architectures differ "
                         f"({net1.layer_sizes} vs {net2.layer_sizes})")
    check_difference(difference, nets, report=report)
    bds, tb, db, td = pair_bounds(nets, domain, bounds, bounds_method, difference)

    t1 = time.perf_counter()  # the time limit starts after the bounds
    res = Result("maxflip", "max", solver=solver)
    res.extra.update(bounds_time=tb, difference=db is not None, difference_time=td)
    if db is not None:
        res.extra["difference_bounds"] = difference_summary(db)
    model, omegas, const_obj = _flip_model(nets, domain, bds, strict=0.0, db=db)
    ar = None
    if attack:
        rng_ = np.random.default_rng(rng)
        X = np.vstack([domain.center[None, :], domain.sample(n_samples, rng_)])
        counts = np.array([flip_count(net1, net2, x) for x in X])
        i = int(np.argmax(counts))
        ar = atk.AttackResult(X[i].copy(), float(counts[i]), "sampling", len(X))

    def evaluate(x):
        return float(flip_count(net1, net2, x))

    res = solve_linear(res, nets, domain, model, _flip_fill(model, omegas, bds), None, None, None, time_limit,
                        solver, attack, rng, t1, evaluate=evaluate, attack_result=ar)
    left = None if time_limit is None else time_limit - (time.perf_counter() - t1)
    if (res.dual_bound is not None and (res.objective is None or res.objective < res.dual_bound - 0.5)
            and (left is None or left > 0.1)):
        # the solver's optimum sat on a ReLU tie (a = 0 counted as active): re-solve with
        # "active ⇒ a ≥ 1e-5" so that its point reproduces; keep the first dual bound (valid
        # for the thesis's model), take the better verified input
        m2, om2, _ = _flip_model(nets, domain, bds, strict=1e-5, db=db)
        prev = res
        cand = atk.AttackResult(prev.x, prev.objective or 0.0, prev.incumbent_source or "none", 0)
        res2 = solve_linear(Result("maxflip", "max", solver=solver), nets, domain, m2, _flip_fill(m2, om2, bds),
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
    if db is not None:
        res.extra["phase_implications"] = int(model.phase_implications)
        if report:
            report_difference(res, lambda f: _flip_model(nets, domain, bds, db=db if f else None)[0], solver,
                              time_limit, t1)
    res.time = time.perf_counter() - t0
    return res


def _flip_model(nets, domain, bds, strict: float = 0.0, db=None):
    """The maxflip model; ``strict`` > 0 adds a ≥ strict·z − M(1 − z) (active means a ≥ strict);
    ``db`` (difference bounds) adds the hidden layers' difference columns and the phase
    implications of δ's sign (:func:`maxflip`)."""
    from ..mip.encode import encode

    net1 = nets[0]
    model = encode(nets, domain, bds, inactive_rows=False)
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
        add_rows(model, rows, rl, rh)
    model.phase_implications = 0
    model.diff_vars = None
    if db is not None:
        model.diff_vars = add_pair_difference(model, db, hidden=True)
        model.phase_implications = _phase_rows(model, omegas, bds, db)
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
            add_rows(model, srows, slo, np.inf)
    return model, omegas, const_obj


def _phase_rows(model, omegas, bds, db) -> int:
    """Rows z₁ ≤ z₂, ω ≤ z₂ − z₁ where δ ≤ 0 on the domain (z₂ ≤ z₁, ω ≤ z₁ − z₂ where δ ≥ 0);
    a stable neuron's z enters as its constant. Returns the number of neurons given rows."""
    rows, rh, n = [], [], 0
    for l, idx, om in omegas:
        zs = [_z_or_const(model.nets[i], bds[i], l) for i in (0, 1)]
        for j, o in zip(idx, om):
            for sign, cond in ((1.0, db.upper[l][j] <= 0), (-1.0, db.lower[l][j] >= 0)):
                if not cond:
                    continue
                # sign·(z₁ − z₂) ≤ 0 and ω − sign·(z₂ − z₁) ≤ 0, constants moved right
                row_z, row_w, const = {}, {int(o): 1.0}, 0.0
                for zi, coef in ((0, sign), (1, -sign)):
                    z, s = zs[zi]
                    if z[j] >= 0:
                        row_z[int(z[j])] = row_z.get(int(z[j]), 0.0) + coef
                        row_w[int(z[j])] = row_w.get(int(z[j]), 0.0) + coef
                    else:
                        const += coef * s[j]
                if row_z:
                    rows.append(row_z)
                    rh.append(-const)
                rows.append(row_w)
                rh.append(-const)
                n += 1
    if rows:
        add_rows(model, rows, -np.inf, rh)
    return n


def _flip_fill(model, omegas, bds):
    from ..mip.encode import fill_difference

    def fill(vec):
        for l, idx, om in omegas:
            zz = []
            for i, nv in enumerate(model.nets):
                z = np.asarray(nv.z[l])
                zv = np.where(z >= 0, vec[np.maximum(z, 0)], np.where(np.asarray(bds[i].lower[l]) >= 0, 1.0, 0.0))
                zz.append(zv[idx])
            vec[om] = (zz[0] != zz[1]).astype(float)
        if getattr(model, "diff_vars", None) is not None:
            fill_difference(vec, model, model.diff_vars)

    return fill
