"""The queries (nnmiplib.queries) against brute force on 2-input networks."""

import itertools
import json
import math

import numpy as np
import pytest

import nnmiplib as nm
from nnmiplib import queries as Q
from nnmiplib.bounds import crown_bounds
from nnmiplib.queries import Result, core, pv


def rnet(sizes, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    W = [rng.normal(size=(o, i)) * scale / np.sqrt(i) for i, o in itertools.pairwise(sizes)]
    b = [rng.normal(size=o) * 0.3 for o in sizes[1:]]
    return nm.Network(W, b)


G = np.linspace(0, 1, 401)
X = np.array(np.meshgrid(G, G)).reshape(2, -1).T
UNIT = nm.domains.unit_box(2)


def check_common(r, nets, dom):
    assert r.verified
    assert dom.contains(r.x, 1e-9)
    for n, a in zip(nets, r.logits):
        assert np.array_equal(n.forward(r.x), a)
    assert r.classes == [int(np.argmax(n.forward(r.x))) for n in nets]


# ------------------------------------------------------------------------ PV margin
@pytest.mark.parametrize("engine", ["bab", "mip"])
@pytest.mark.parametrize("seed", range(3))
def test_pv_margin_matches_grid(seed, engine):
    net = rnet([2, 8, 6, 4], seed)
    x0 = np.array([0.3, 0.6])
    c = int(np.argmax(net.forward(x0)))
    A = net.forward(X)
    gmax = (np.max(np.delete(A, c, axis=1), axis=1) - A[:, c]).max()
    r = Q.max_output_change(net, UNIT, x0, form="margin", bounds_method="crown", time_limit=20, engine=engine)
    assert r.status == "optimal" and r.extra["engine"] == engine
    check_common(r, [net], UNIT)
    a = net.forward(r.x)
    assert r.objective == pytest.approx(np.max(np.delete(a, c)) - a[c], abs=1e-12)
    assert r.objective >= gmax - 1e-7 and r.dual_bound >= gmax
    assert r.dual_bound - r.objective <= 1e-4 * (1 + abs(r.objective))
    assert r.extra["class_changed"] == (r.objective >= 1e-6)


@pytest.mark.parametrize("engine", ["bab", "mip"])
def test_pv_margin_proves_robustness_on_a_small_ball(engine):
    """A dual bound < 0 proves no input of the ball changes the class."""
    net = rnet([2, 8, 4], 11)
    x0 = np.array([0.5, 0.5])
    dom = nm.domains.linf_ball(x0, 0.001)
    r = Q.max_output_change(net, dom, x0, form="margin", bounds_method="crown", time_limit=10, engine=engine)
    samples = dom.sample(2000, 0)
    c = int(np.argmax(net.forward(x0)))
    A = net.forward(samples)
    assert (np.max(np.delete(A, c, axis=1), axis=1) - A[:, c]).max() <= r.dual_bound
    assert r.extra["robust_proven"] and not r.extra["class_changed"]


@pytest.mark.parametrize("engine", ["bab", "mip"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("delta", [0.002, 0.3])
def test_pv_decide_agrees_with_the_optimum(seed, delta, engine):
    """decide=True answers the same yes/no question as the optimisation, with a witness or a proof."""
    net = rnet([2, 10, 8, 4], seed)
    x0 = np.array([0.45, 0.55])
    dom = nm.domains.linf_ball(x0, delta)
    full = Q.max_output_change(net, dom, x0, form="margin", bounds_method="crown", time_limit=20, engine="mip")
    fast = Q.max_output_change(net, dom, x0, form="margin", bounds_method="crown", time_limit=20, decide=True,
                               engine=engine)
    assert full.status == "optimal" and fast.status in ("decided", "optimal")
    changes = full.objective >= 1e-6
    assert fast.extra["class_changed"] == changes
    assert fast.extra["robust_proven"] == (not changes)
    if changes:
        check_common(fast, [net], dom)
        assert fast.objective >= 1e-6 and fast.objective <= full.dual_bound
    else:
        assert fast.dual_bound < 0 and fast.dual_bound >= full.objective - 1e-9


@pytest.mark.parametrize("engine", ["bab", "mip"])
@pytest.mark.parametrize("seed", range(3))
def test_pv_softmax_matches_grid(seed, engine):
    """The thesis's objective ‖softmax(a(x)) − y0‖₁: both engines reach the grid's maximum, soundly."""
    net = rnet([2, 10, 8, 5], seed)
    x0 = np.array([0.4, 0.6])
    dom = nm.domains.linf_ball(x0, 0.15)
    g = np.linspace(0, 1, 301)
    P = nm.softmax(net.forward(dom.lo + (dom.hi - dom.lo) * np.array(np.meshgrid(g, g)).reshape(2, -1).T))
    y0 = nm.softmax(net.forward(x0))
    gmax = float(np.abs(P - y0).sum(1).max())
    r = Q.max_output_change(net, dom, x0, form="softmax", bounds_method="crown", time_limit=30, engine=engine)
    check_common(r, [net], dom)
    assert r.extra["engine"] == engine
    assert r.objective == pytest.approx(float(np.abs(nm.softmax(net.forward(r.x)) - y0).sum()), abs=1e-12)
    assert r.dual_bound >= gmax - 1e-9 and r.objective >= gmax - 1e-3
    assert r.status == "optimal" and r.gap <= 2e-3


# --------------------------------------------------------------------- maxdiff logits
def test_maxdiff_logits_matches_grid():
    n1, n2 = rnet([2, 7, 3], 1), rnet([2, 5, 5, 3], 2)  # different architectures
    gmax = np.abs(n1.forward(X) - n2.forward(X)).max()
    r = Q.maxdiff(n1, n2, UNIT, form="logits", bounds_method="crown", time_limit=20)
    assert r.status == "optimal"
    check_common(r, [n1, n2], UNIT)
    assert r.objective >= gmax - 1e-7 and r.dual_bound >= gmax


def test_maxdiff_softmax_query_brackets_grid():
    n1, n2 = rnet([2, 5, 3], 1), rnet([2, 4, 3], 101)
    gmax = np.abs(n1.probabilities(X) - n2.probabilities(X)).sum(1).max()
    r = Q.maxdiff(n1, n2, UNIT, bounds_method="crown", time_limit=20, tol=2e-3)
    check_common(r, [n1, n2], UNIT)
    assert r.dual_bound >= gmax and r.objective >= gmax - 2e-3
    assert r.status == "optimal"
    assert "bounds_time" in r.extra


# ---------------------------------------------------------------------------- maxout
def _maxout_grid(n1, n2, c1, c2, tau, margin):
    A1, A2 = n1.forward(X), n2.forward(X)
    m1 = A1[:, c1] - np.max(np.delete(A1, c1, axis=1), axis=1)
    m2 = A2[:, c2] - np.max(np.delete(A2, c2, axis=1), axis=1)
    ok = (m1 >= tau + 2 * margin) & (m2 >= tau + 2 * margin)
    return (A1[:, c1] + A2[:, c2])[ok]


@pytest.mark.parametrize("seed,tau", [(0, 0.0), (1, 0.5), (2, 0.0)])
def test_maxout_matches_grid(seed, tau):
    n1, n2 = rnet([2, 8, 3], seed), rnet([2, 6, 6, 3], seed + 50)
    best = None
    for c1 in range(3):  # pick a feasible class pair from the grid
        for c2 in range(3):
            if c1 != c2 and _maxout_grid(n1, n2, c1, c2, tau, 1e-6).size > 40:
                best = (c1, c2)
                break
        if best:
            break
    assert best is not None
    c1, c2 = best
    vals = _maxout_grid(n1, n2, c1, c2, tau, 1e-6)
    r = Q.maxout(n1, n2, UNIT, c1, c2, tau, bounds_method="crown", time_limit=20)
    assert r.status == "optimal"
    check_common(r, [n1, n2], UNIT)
    m1, m2 = r.extra["class_margins"]
    assert m1 >= tau + 1e-6 and m2 >= tau + 1e-6 and r.classes == [c1, c2]
    assert r.objective >= vals.max() - 1e-7 and r.dual_bound >= vals.max()


def test_maxout_infeasible():
    """Net 1's class 2 never wins (its logit is 100 below): no witness exists."""
    n1 = nm.Network([np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])],
                    [np.zeros(2), np.array([0.0, 0.0, -100.0])])
    n2 = rnet([2, 4, 3], 3)
    r = Q.maxout(n1, n2, UNIT, 2, 0, bounds_method="crown", time_limit=10)
    assert r.status == "infeasible" and r.x is None and not r.verified
    assert math.isinf(r.gap)


# --------------------------------------------------------------------------- maxflip
def _flips_grid(n1, n2, pts):
    P1, P2 = n1.preactivations(pts), n2.preactivations(pts)
    return sum(((P1[l] > 0) != (P2[l] > 0)).sum(1) for l in range(n1.depth))


@pytest.mark.parametrize("seed", range(3))
def test_maxflip_matches_grid(seed):
    n1 = rnet([2, 6, 6, 3], seed)
    rng = np.random.default_rng(seed)
    # a "pruned" copy: same architecture, a third of the weights set to 0
    n2 = n1.with_parameters(weights=[np.where(rng.random(w.shape) < 0.33, 0.0, w) for w in n1.weights])
    gmax = _flips_grid(n1, n2, X).max()
    r = Q.maxflip(n1, n2, UNIT, bounds_method="crown", time_limit=20)
    # "feasible": the Big-M optimum counts a neuron with a = 0 (a dead neuron of the
    # pruned copy) as active; the float64 count cannot reach it
    assert r.status in ("optimal", "feasible")
    check_common(r, [n1, n2], UNIT)
    assert r.objective == Q.flip_count(n1, n2, r.x)
    assert r.dual_bound >= gmax and r.objective >= gmax
    if r.status == "optimal":
        assert r.dual_bound - r.objective < 1  # integer objective: optimal means equal


def test_maxflip_counts_stable_neurons_as_constants():
    """Hidden neurons stably active in net 1 and stably inactive in net 2 count without binaries."""
    W1 = [np.array([[0.0, 0.0], [1.0, -1.0]]), np.ones((2, 2))]
    b1 = [np.array([1.0, 0.0]), np.zeros(2)]
    n1 = nm.Network(W1, b1)
    n2 = n1.with_parameters(biases=[np.array([-1.0, 0.0]), np.zeros(2)])
    r = Q.maxflip(n1, n2, UNIT, bounds_method="crown", time_limit=10)
    assert r.extra["stable_constant"] == 1.0
    assert r.objective == _flips_grid(n1, n2, X).max() == 1


# ---------------------------------------------------------------------------- mineps
def _mineps_grid(n1, n2, x0, label, margin=1e-6):
    A1, A2 = n1.forward(X), n2.forward(X)
    keep = A1[:, label] - np.max(np.delete(A1, label, axis=1), axis=1) >= 2 * margin
    flip = np.max(np.delete(A2, label, axis=1), axis=1) - A2[:, label] >= 2 * margin
    d = np.max(np.abs(X - x0), axis=1)
    ok = keep & flip
    return d[ok].min() if ok.any() else None


def _mineps_case(seed):
    n1 = rnet([2, 8, 8, 3], seed)
    rng = np.random.default_rng(seed)
    n2 = n1.with_parameters(weights=[np.where(rng.random(w.shape) < 0.4, 0.0, w) for w in n1.weights])
    x0 = np.array([0.45, 0.55])
    return n1, n2, x0, int(np.argmax(n1.forward(x0)))


@pytest.mark.parametrize("seed", [0, 3, 10, 11])  # grid ε*: 0 (already disagrees), 0.3825, 0.385, 0.3
def test_mineps_matches_grid(seed):
    n1, n2, x0, label = _mineps_case(seed)
    geps = _mineps_grid(n1, n2, x0, label)
    r = Q.mineps(n1, n2, x0, label, bounds_method="crown", time_limit=20)
    assert geps is not None
    assert r.status == "optimal"
    check_common(r, [n1, n2], UNIT)
    assert r.sense == "min"
    assert r.objective == pytest.approx(np.max(np.abs(r.x - x0)), abs=1e-15)
    # grid points are feasible, so ε* ≤ grid ε; the dual bound is a lower bound on ε*
    assert r.dual_bound <= geps + 1e-9 and r.objective <= geps + 1e-6
    assert r.dual_bound <= r.objective + 1e-9
    assert r.extra["keep"] >= 1e-6 and r.extra["flip"] >= 1e-6
    assert r.classes[0] == label and r.classes[1] != label


@pytest.mark.parametrize("seed", [1, 2])
def test_mineps_infeasible_when_no_input_flips(seed):
    """No grid point makes the pruned copy disagree: mineps must not produce a witness."""
    n1, n2, x0, label = _mineps_case(seed)
    assert _mineps_grid(n1, n2, x0, label) is None
    r = Q.mineps(n1, n2, x0, label, bounds_method="crown", time_limit=20)
    assert r.status == "infeasible" and not r.verified


def test_mineps_agrees_with_bisection_on_milp_feasibility():
    """ε* from mineps vs a bisection over ε, each step a MILP feasibility test (maxout over the ball)."""
    n1, n2, x0, label = _mineps_case(11)
    r = Q.mineps(n1, n2, x0, label, bounds_method="crown", time_limit=20)
    assert r.status == "optimal"
    eps_star = r.objective

    def feasible(eps):
        dom = nm.domains.linf_ball(x0, eps)
        for k in range(3):  # some class k ≠ label of net 2 while net 1 keeps the label
            if k == label:
                continue
            # net 2 says k with margin: maxout(net1 → label, net2 → k) is feasible
            q = Q.maxout(n1, n2, dom, label, k, 0.0, bounds_method="crown", time_limit=10, attack=False)
            if q.status == "optimal":
                return True
        return False

    lo, hi = 0.0, 1.0
    for _ in range(12):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if feasible(mid) else (mid, hi)
    assert lo - 1e-6 <= eps_star <= hi + 1e-6


def test_mineps_trivial_when_pruned_already_disagrees():
    n1, _, x0, label = _mineps_case(2)
    W = [w.copy() for w in n1.weights]
    b = [v.copy() for v in n1.biases]
    b[-1][label] -= 100.0
    n2 = nm.Network(W, b)
    r = Q.mineps(n1, n2, x0, label, bounds_method="crown", time_limit=10)
    assert r.status == "optimal" and r.objective == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------ statuses, JSON
def test_time_limit_statuses():
    n1 = rnet([2, 40, 40, 40, 10], 5, scale=4.0)
    n2 = rnet([2, 40, 40, 40, 10], 6, scale=4.0)
    dom = nm.domains.box([-3, -3], [3, 3])
    b = [nm.bounds.interval_bounds(n, dom) for n in (n1, n2)]
    r = Q.maxflip(n1, n2, dom, bounds=b, time_limit=0.5)
    assert r.status in ("time_limit_feasible", "optimal")
    assert r.x is not None and r.verified and r.time < 5
    assert r.dual_bound >= r.objective
    r2 = Q.maxflip(n1, n2, dom, bounds=b, time_limit=0.3, attack=False)
    assert r2.status in ("time_limit_feasible", "time_limit_infeasible", "optimal")
    if r2.status == "time_limit_infeasible":
        assert r2.x is None and math.isinf(r2.gap)


def test_json_round_trip():
    n1, n2 = rnet([2, 6, 3], 1), rnet([2, 6, 3], 2)
    r = Q.maxflip(n1, n2, UNIT, bounds_method="crown", time_limit=10)
    s = r.to_json()
    json.loads(s)  # strict JSON
    back = Result.from_json(s)
    assert back.status == r.status and back.objective == r.objective and back.dual_bound == r.dual_bound
    assert np.array_equal(back.x, r.x) and back.classes == r.classes
    assert all(np.array_equal(a, b) for a, b in zip(back.logits, r.logits))
    empty = Result("maxout", status="infeasible")
    e2 = Result.from_json(empty.to_json())
    assert e2.x is None and math.isinf(e2.gap) and e2.status == "infeasible"
    with pytest.raises(ValueError, match="unknown Result fields"):
        Result.from_dict({**empty.to_dict(), "bogus": 1})


# ------------------------------------------------------------------------ bad inputs
def test_bad_inputs():
    n1, n2 = rnet([2, 5, 3], 0), rnet([2, 5, 3], 1)
    n3 = rnet([3, 5, 3], 2)
    x0 = np.array([0.2, 0.2])
    with pytest.raises(ValueError, match="coordinates"):
        Q.maxdiff(n1, n3, UNIT, bounds_method="crown")
    with pytest.raises(ValueError, match="c2"):
        Q.maxout(n1, n2, UNIT, 0, 7, bounds_method="crown")
    with pytest.raises(ValueError, match="tau"):
        Q.maxout(n1, n2, UNIT, 0, 1, -1.0, bounds_method="crown")
    with pytest.raises(ValueError, match="architectures differ"):
        Q.maxflip(n1, rnet([2, 4, 3], 3), UNIT, bounds_method="crown")
    wrong = (int(np.argmax(n1.forward(x0))) + 1) % 3
    with pytest.raises(ValueError, match="answers"):
        Q.mineps(n1, n2, x0, wrong, bounds_method="crown")
    with pytest.raises(ValueError, match="another network"):
        Q.maxdiff(n1, n2, UNIT, bounds=[crown_bounds(n2, UNIT), crown_bounds(n2, UNIT)])
    with pytest.raises(ValueError, match="form"):
        Q.max_output_change(n1, UNIT, x0, form="l2", bounds_method="crown")
    with pytest.raises(ValueError, match="x0"):
        Q.max_output_change(n1, UNIT, np.zeros(3), bounds_method="crown")
    with pytest.raises(ValueError, match="smaller domain"):
        Q.maxflip(n1, n2, UNIT, bounds=[crown_bounds(n, nm.domains.linf_ball(x0, 0.1)) for n in (n1, n2)])


# ------------------------------------------------------------ dual bounds always there
def test_fill_dual_uses_column_bounds_when_the_solver_gives_none():
    from nnmiplib.mip.encode import encode
    from nnmiplib.queries.core import fill_dual, interval_objective_bound

    net = rnet([2, 8, 6, 4], 1)
    x0 = np.array([0.3, 0.6])
    b = crown_bounds(net, UNIT)
    c = int(np.argmax(net.forward(x0)))
    model = encode(net, UNIT, b)
    a = core.logit_cols(model, 0)
    v, _ = pv._margin_max_model(model, a, b.lower[-1], b.upper[-1], c)
    model.set_objective({v: 1.0}, "max")
    ib = interval_objective_bound(model)
    lo, hi = b.lower[-1], b.upper[-1]
    assert ib == pytest.approx(max(hi[k] - lo[c] for k in range(4) if k != c))  # max_k (u_k − ℓ_c)
    A = net.forward(X)
    assert (np.max(np.delete(A, c, axis=1), axis=1) - A[:, c]).max() <= ib
    for missing in (None, float("nan"), float("inf")):
        r = Result("pv-margin", "max", dual_bound=missing, status="time_limit_feasible")
        fill_dual(r, model)
        assert r.dual_bound >= ib and np.isfinite(r.dual_bound) and r.extra["dual_source"] == "column-bounds"
    r = Result("mineps", "min", dual_bound=None, status="time_limit_infeasible")
    m2 = encode(net, UNIT, b)
    e = int(m2.add_vars(1, 0.0, 0.7)[0])
    m2.set_objective({e: 1.0}, "min")
    fill_dual(r, m2)
    assert r.dual_bound <= 0.0 and r.extra["dual_source"] == "column-bounds"
    r = Result("maxout", "max", status="infeasible")
    fill_dual(r, model)
    assert r.dual_bound is None  # infeasible: nothing to bound


def test_every_query_reports_a_finite_dual_bound():
    n1 = rnet([2, 8, 6, 3], 0)
    rng = np.random.default_rng(0)
    n2 = n1.with_parameters(weights=[np.where(rng.random(w.shape) < 0.4, 0.0, w) for w in n1.weights])
    x0 = np.array([0.45, 0.55])
    rs = [Q.max_output_change(n1, UNIT, x0, form="margin", bounds_method="crown", time_limit=10),
          Q.maxflip(n1, n2, UNIT, bounds_method="crown", time_limit=10),
          Q.mineps(n1, n2, x0, bounds_method="crown", time_limit=10),
          Q.maxdiff(n1, n2, UNIT, form="logits", bounds_method="crown", time_limit=10)]
    for r in rs:
        assert r.dual_bound is not None and np.isfinite(r.dual_bound), r.query
        assert r.extra["dual_source"] in ("solver", "column-bounds", "lp-relaxation", "branch-and-bound")
        if r.verified:
            assert (r.dual_bound >= r.objective - 1e-9) if r.sense == "max" else (r.dual_bound <= r.objective + 1e-9)


# ------------------------------------------------------------------ wall-clock budget
def _hard_pair():
    n1 = rnet([12, 40, 40, 40, 10], 5, scale=4.0)
    rng = np.random.default_rng(0)  # a pruned copy: the softmax objectives stay below 2
    n2 = n1.with_parameters(weights=[np.where(rng.random(w.shape) < 0.3, 0.0, w) for w in n1.weights])
    dom = nm.domains.box(-0.05 * np.ones(12), 0.05 * np.ones(12))
    return n1, n2, dom, [nm.bounds.interval_bounds(n, dom) for n in (n1, n2)]


@pytest.mark.parametrize("query", ["maxdiff", "pv-softmax", "pv-margin", "maxflip", "maxout", "mineps"])
def test_time_limit_is_a_wall_clock_budget(query):
    """The whole query (attacks, difference LPs, every round, polishing) fits in time_limit;
    generous factor for a loaded machine, but a 3× overrun fails: elapsed ≤ 2·limit + 2 s."""
    import time

    n1, n2, dom, b = _hard_pair()
    x0 = np.zeros(12)
    limit = 3.0
    t = time.perf_counter()
    if query == "maxdiff":
        r = Q.maxdiff(n1, n2, dom, bounds=b, time_limit=limit, tol=1e-9)
    elif query == "pv-softmax":
        r = Q.max_output_change(n1, dom, x0, form="softmax", bounds=b[0], time_limit=limit, tol=1e-9)
    elif query == "pv-margin":
        r = Q.max_output_change(n1, dom, x0, form="margin", bounds=b[0], time_limit=limit)
    elif query == "maxflip":
        r = Q.maxflip(n1, n2, dom, bounds=b, time_limit=limit)
    elif query == "maxout":
        r = Q.maxout(n1, n2, dom, int(np.argmax(n1.forward(x0))), int(np.argmax(n2.forward(x0))), bounds=b,
                     time_limit=limit)
    else:
        r = Q.mineps(n1, n2, x0, domain=nm.domains.box(-np.ones(12), np.ones(12)),
                     bounds=[nm.bounds.interval_bounds(n, nm.domains.box(-np.ones(12), np.ones(12))) for n in (n1, n2)],
                     time_limit=limit)
    elapsed = time.perf_counter() - t
    assert elapsed <= 2 * limit + 2.0, f"{query} took {elapsed:.1f}s for a {limit}s limit"
    assert r.dual_bound is not None and np.isfinite(r.dual_bound)
    if r.verified:
        assert (r.dual_bound >= r.objective - 1e-9) if r.sense == "max" else (r.dual_bound <= r.objective + 1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_selection_rows_pick_the_largest_expression(seed):
    """add_selection: maximising v under the selection rows gives max_k e_k exactly (each e_k a
    free column in [low_k, high_k]); with a level and no column the rows are feasible iff some
    e_k can reach it."""
    from nnmiplib.mip.encode import MipModel
    from nnmiplib.mip.solvers import get_backend

    rng = np.random.default_rng(seed)
    lows = rng.normal(size=4)
    highs = lows + rng.uniform(0.1, 2.0, size=4)
    m = MipModel()
    e = m.add_vars(4, lows, highs)
    top = float(highs.max()) + 1.0
    v = int(m.add_vars(1, -10.0, top)[0])
    y = core.add_selection(m, [{int(j): 1.0} for j in e], lows, top, v)
    m.set_objective({v: 1.0}, "max")
    sol = get_backend("highs")(m).solve(10)
    assert sol.objective == pytest.approx(highs.max(), abs=1e-5)  # the MIP solver's integrality tolerance × M
    assert np.isclose(sol.x[y], 1.0).sum() == 1 and np.isclose(sol.x[y], 0.0).sum() == 3
    for level, feasible in ((float(highs.max()) - 1e-3, True), (float(highs.max()) + 1e-3, False)):
        m = MipModel()
        e = m.add_vars(4, lows, highs)
        core.add_selection(m, [{int(j): 1.0} for j in e], lows, level, level=level)
        m.set_objective({int(e[0]): 1.0}, "max")
        sol = get_backend("highs")(m).solve(10)
        assert (sol.x is not None) == feasible, (level, sol.status)


def softmax_l1(net, X, x0):
    y0 = nm.softmax(net.forward(x0))
    return np.abs(nm.softmax(net.forward(X)) - y0).sum(-1)


def test_pv_softmax_branch_and_bound_on_dead_and_pinned_neurons():
    """Nets the search reduces to nothing to branch on: every hidden neuron of a layer stably
    inactive (dead), and a box pinning most inputs (a layer without free inputs). The branch
    and bound used to crash on both (no branching candidate; a cut layer without inputs);
    now it ends before its limit, its dual bound above every sampled point."""
    dead = nm.Network([np.array([[-4.0, -0.5, 0.0], [0.0, -1.7, 0.0]]),
                       np.array([[-2.1, 0.0], [2.4, 0.0], [0.9, 0.2], [0.0, 1.2]]),
                       np.array([[3.1, 0.0, -0.4, 0.0], [0.0, 0.0, 0.0, 4.1], [0.9, 3.0, 0.0, 0.0]])],
                      [np.array([-0.56, -0.47]), np.array([0.79, 0.16, 0.0, -0.2]), np.array([0.0, -1.0, 1.9])])
    rng = np.random.default_rng(3)
    pinned = nm.Network([rng.normal(size=(8, 4)), rng.normal(size=(6, 8)), rng.normal(size=(3, 6))],
                        [np.r_[-60.0, rng.normal(size=7)], rng.normal(size=6), rng.normal(size=3)])
    cases = [(dead, nm.domains.box([0.17, 0.65, 0.89], [0.64, 0.95, 1.34])),
             (pinned, nm.domains.box([-2.0, -1.0, -2.0, -1.0], [-2.0, -1.0, -2.0, 0.0]))]
    for net, dom in cases:
        x0 = dom.lo.copy()
        r = Q.max_output_change(net, dom, x0, form="softmax", engine="bab", bounds_method="crown", time_limit=20)
        assert r.status in ("optimal", "feasible") and r.time < 20
        S = dom.sample(20_000, 0)
        assert r.dual_bound >= softmax_l1(net, S, x0).max() - 1e-9
        assert r.objective == pytest.approx(softmax_l1(net, r.x[None], x0)[0], abs=1e-9)


def test_pv_decide_on_tied_logits_settles_without_either_flag():
    """Two logits equal on the whole domain: no input changes the class by ``margin``, and the
    maximum margin is 0, so robustness (a dual bound < 0) cannot be proven — "decided" with
    both flags False, as the docstring says."""
    rng = np.random.default_rng(0)
    W1, b1 = rng.normal(size=(6, 2)), rng.normal(size=6)
    row = rng.normal(size=6)
    W2 = np.vstack([row, row, row - 3.0])
    net = nm.Network([W1, W2], [b1, np.array([0.0, 0.0, -1.0])])
    x0 = np.array([0.5, 0.5])
    assert int(np.argmax(net.forward(x0))) == 0
    r = Q.max_output_change(net, UNIT, x0, engine="bab", decide=True, bounds_method="crown", time_limit=20)
    assert r.status == "decided"
    assert not r.extra["class_changed"] and not r.extra["robust_proven"]
    assert 0.0 <= r.dual_bound < 1e-6
