"""Tightened intermediate bounds (nnmiplib.bab.tightening): never exclude a reachable activation
(against the exact MILP range and a grid), never loosen what they were given, and tighten
what α-CROWN leaves; nodes bounding different rows side by side give each row's own bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from random_nets import rnet, two_row_instance

import nnmiplib as nm
from nnmiplib.bab import relax
from nnmiplib.bab.tightening import tighten, tighten_layer
from nnmiplib.bounds import alpha_bounds, compute_bounds, interval_bounds


def grid2(n=201):
    g = np.linspace(0.0, 1.0, n)
    return np.array(np.meshgrid(g, g)).reshape(2, -1).T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tightened_bounds_contain_the_exact_range_and_tighten_alpha(seed):
    net = rnet([2, 10, 10, 10, 3], seed)
    dom = nm.domains.unit_box(2)
    a = alpha_bounds(net, dom)
    lower, upper, stats = tighten(net, dom.lo, dom.hi, a.lower, a.upper, time_limit=6.0)
    assert [s["layer"] for s in stats] == [1, 2]
    exact = compute_bounds(net, dom, method="milp", time_limit=120, n_jobs=1, progress=False)
    pre = net.preactivations(grid2())
    for m in range(net.depth + 1):
        # never looser than given; the first layer and the logits are not touched
        assert np.all(lower[m] >= a.lower[m]) and np.all(upper[m] <= a.upper[m])
        if m in (0, net.depth):
            assert np.array_equal(lower[m], a.lower[m]) and np.array_equal(upper[m], a.upper[m])
            continue
        # sound: the MILP's range (solved to its 1e-6 gap here: its bounds are that close to the
        # exact ones) and every grid point inside
        # (on the neurons tightened: those α-CROWN leaves unstable)
        tol = 1e-5 * (1 + np.abs(exact.lower[m]) + np.abs(exact.upper[m]))
        j = (a.lower[m] < 0) & (a.upper[m] > 0)
        assert j.any()
        assert np.all(lower[m][j] <= (exact.lower[m] + tol)[j]) and np.all(upper[m][j] >= (exact.upper[m] - tol)[j])
        assert np.all(lower[m] <= pre[m].min(0) + 1e-9) and np.all(upper[m] >= pre[m].max(0) - 1e-9)
    width = lambda lo, up: sum(float(np.sum(u - l)) for l, u in zip(lo[1:-1], up[1:-1]))
    assert width(lower, upper) < 0.98 * width(a.lower, a.upper)  # 0.70–0.97 of α-CROWN's on these seeds


def test_sign_proofs_make_neurons_stable_and_are_counted():
    net = rnet([2, 12, 12, 3], 5)
    dom = nm.domains.unit_box(2)
    b = interval_bounds(net, dom)
    r = tighten_layer(net, dom.lo, dom.hi, b.lower, b.upper, 1, time_limit=5.0)
    unstable_before = (b.lower[1] < 0) & (b.upper[1] > 0)
    now_stable = unstable_before & ((r["upper"] <= 0) | (r["lower"] >= 0))
    assert r["neurons"] == int(unstable_before.sum()) and r["stable"] == int(now_stable.sum())
    pre = net.preactivations(grid2())[1]
    assert np.all(r["lower"] <= pre.min(0) + 1e-9) and np.all(r["upper"] >= pre.max(0) - 1e-9)
    assert r["nodes"] >= 2 * r["neurons"] and r["seconds"] <= 5.0 + 2.0


def test_a_short_time_limit_still_gives_sound_bounds_and_bad_layers_are_refused():
    net = rnet([2, 16, 16, 16, 3], 7)
    dom = nm.domains.unit_box(2)
    b = interval_bounds(net, dom)
    lower, upper, _ = tighten(net, dom.lo, dom.hi, b.lower, b.upper, time_limit=0.05)
    pre = net.preactivations(grid2(101))
    for m in range(net.depth):
        assert np.all(lower[m] <= pre[m].min(0) + 1e-9) and np.all(upper[m] >= pre[m].max(0) - 1e-9)
    for bad in (0, net.depth):
        with pytest.raises(ValueError, match="layer must lie"):
            tighten_layer(net, dom.lo, dom.hi, b.lower, b.upper, bad, time_limit=1.0)


def test_per_node_rows_give_each_rows_own_bound():
    """A batch whose nodes carry their own objective rows bounds each as a batch of that row alone."""
    net = rnet([2, 8, 8, 4], 2)
    dom = nm.domains.unit_box(2)
    b = interval_bounds(net, dom)
    C = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.5, 0.0, -1.0], [-1.0, 0.0, 1.0, 0.0]])
    shared = relax.Layers.build(net, b.lower[:-1], b.upper[:-1], dom.lo, dom.hi, C[:1], np.zeros(1))
    nodes = relax.NodeBatch.root(shared, 3)
    nodes.rows = torch.as_tensor(C)[:, None, :]
    rng = np.random.default_rng(0)
    for k, s in enumerate(shared.sizes):
        nodes.split[k] = torch.as_tensor(rng.choice([-1, 0, 1], size=(3, s)).astype(np.int8))
    got, _ = relax.optimise(shared, nodes, iterations=0)
    for r in range(3):
        alone = relax.Layers.build(net, b.lower[:-1], b.upper[:-1], dom.lo, dom.hi, C[r:r + 1], np.zeros(1))
        one = nodes.take([r])
        one.rows = None
        want, _ = relax.optimise(alone, one, iterations=0)
        assert torch.allclose(got[r], want[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="objective rows"):
        relax.NodeBatch.cat([nodes.take([0]), relax.NodeBatch.root(shared, 1)])


def test_search_after_tightening_reaches_the_brute_force_maximum():
    """``solve(tighten=…)``: rows the root leaves open are searched on tightened bounds; the
    dual bound stays above the true maximum of every row and the search still closes the gap."""
    from nnmiplib.bab import solve

    net, dom, b, C, d = two_row_instance()
    truth = float((net.forward(grid2(401)) @ C.T + d).max())
    r = solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1], time_limit=20, tighten=0.5,
              rel_gap=1e-3, abs_gap=1e-4)
    assert [s["layer"] for s in r.stats["tightened"]] == [1, 2]
    assert r.dual_bound >= truth - 1e-9 and r.value <= r.dual_bound + 1e-9
    assert r.status == "optimal" and r.value >= truth - 1e-3 * (1 + abs(truth))
    with pytest.raises(ValueError, match="share of the time limit"):
        solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1], time_limit=1, tighten=1.0)


def test_a_full_queue_stops_the_layer_with_sound_bounds(monkeypatch):
    from nnmiplib.bab import tightening as T

    net = rnet([2, 16, 16, 3], 6)
    dom = nm.domains.unit_box(2)
    b = interval_bounds(net, dom)
    free = T.tighten_layer(net, dom.lo, dom.hi, b.lower, b.upper, 1, time_limit=2.0)
    monkeypatch.setattr(T, "MEMORY", 1)  # the roots alone fill it: no round runs
    capped = T.tighten_layer(net, dom.lo, dom.hi, b.lower, b.upper, 1, time_limit=2.0)
    assert capped["rounds"] == 0 and capped["nodes"] == 2 * capped["neurons"] and free["rounds"] > 0
    pre = net.preactivations(grid2())[1]
    for r in (free, capped):
        assert np.all(r["lower"] <= pre.min(0) + 1e-9) and np.all(r["upper"] >= pre.max(0) - 1e-9)


def test_stop_ends_the_tightening_with_the_bounds_proven_so_far():
    """``stop`` sees whole, sound lists (one array per affine layer, within the given bounds);
    its True ends the search there, and what is returned is still sound."""
    net = rnet([2, 16, 16, 16, 3], 8)
    dom = nm.domains.unit_box(2)
    b = interval_bounds(net, dom)
    pre = net.preactivations(grid2())
    seen = []

    def stop(lower, upper):
        assert len(lower) == len(upper) == net.depth + 1
        for m in range(net.depth + 1):
            assert np.all(lower[m] >= b.lower[m]) and np.all(upper[m] <= b.upper[m])
            assert np.all(lower[m] <= pre[m].min(0) + 1e-9) and np.all(upper[m] >= pre[m].max(0) - 1e-9)
        seen.append(len(seen))
        return len(seen) == 2

    lower, upper, stats = tighten(net, dom.lo, dom.hi, b.lower, b.upper, time_limit=30.0, stop=stop, first_check=0.0)
    assert len(seen) == 2 and stats[-1]["stopped"] and sum(s["seconds"] for s in stats) < 30.0
    assert all(not s["stopped"] for s in stats[:-1])
    for m in range(net.depth):
        assert np.all(lower[m] <= pre[m].min(0) + 1e-9) and np.all(upper[m] >= pre[m].max(0) - 1e-9)
    # never asked before first_check: a long first_check means no question at all
    asked = []
    tighten(net, dom.lo, dom.hi, b.lower, b.upper, time_limit=1.0, stop=lambda lo, up: asked.append(1) or True,
            first_check=60.0)
    assert asked == []


def test_a_decision_ends_the_tightening_early_and_the_bounds_come_back(monkeypatch):
    """``solve(threshold=…, tighten=…)``: once the bounds tightened so far decide every row (root
    bound or a short search), the tightening stops instead of spending its whole share; the
    tightened bounds are returned (``BabResult.bounds``) and are sound on the box."""
    from nnmiplib.bab import solve
    from nnmiplib.bab import tightening as T

    net, dom, b, C, d = two_row_instance()
    rows = net.forward(grid2(401)) @ C.T + d
    truth = float(rows.max())
    root = solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1], time_limit=1, max_nodes=2,
                 attack_starts=0)
    level = truth + 0.02 * (rows.max() - rows.min())
    assert max(root.stats["root_bounds"]) > level  # the root alone does not decide it
    monkeypatch.setattr(T, "FIRST_CHECK", 0.0)  # this small net's layers would close within the default
    r = solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1], threshold=level, time_limit=60,
              tighten=0.9)
    assert r.status == "proved" and r.dual_bound <= level
    assert r.stats["tightened"][-1]["stopped"] and r.time < 0.9 * 60
    lower, upper = r.bounds
    pre = net.preactivations(grid2())
    assert len(lower) == net.depth
    for m in range(net.depth):
        assert np.all(lower[m] >= b.lower[m]) and np.all(upper[m] <= b.upper[m])
        assert np.all(lower[m] <= pre[m].min(0) + 1e-9) and np.all(upper[m] >= pre[m].max(0) - 1e-9)
    # no tightening asked: no bounds come back
    assert solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1], threshold=level,
                 time_limit=5).bounds is None


@pytest.mark.parametrize("threshold", [None, "above"])
def test_one_tree_with_tightening_keeps_the_brute_force_answer(monkeypatch, threshold):
    """``solve(tighten=…)`` on a query searched as one tree (here F = the smaller of two rows):
    a first look, then tightened bounds (tried now and then), then the search on them — the dual
    bound stays above the true maximum, the answer is the brute-force one, and the tightened
    bounds come back sound."""
    from nnmiplib.bab import search, solve

    monkeypatch.setattr(search, "PROBE", 0.02)  # so short that the first look leaves it open
    net = rnet([2, 12, 12, 12, 3], 9)
    dom = nm.domains.unit_box(2)
    b = interval_bounds(net, dom)
    C, d = np.array([[1.0, -1.0, 0.0], [0.0, -1.0, 1.0]]), np.zeros(2)
    F = (net.forward(grid2(401)) @ C.T + d).min(1)
    truth = float(F.max())
    level = None if threshold is None else truth + 0.05 * (F.max() - F.min())
    r = solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1], groups=np.zeros(2, dtype=int),
              threshold=level, time_limit=30, tighten=0.5, rel_gap=1e-3, abs_gap=1e-4)
    assert r.stats["looks"] >= 2 and r.stats["tightened"] and r.bounds is not None
    assert r.dual_bound >= truth - 1e-9
    if threshold is None:
        assert r.status == "optimal" and truth - 1e-3 * (1 + abs(truth)) <= r.value <= truth + 1e-9
    else:
        assert r.status == "proved" and r.dual_bound <= level
    pre = net.preactivations(grid2())
    for m, (lo_m, up_m) in enumerate(zip(*r.bounds)):
        assert np.all(lo_m <= pre[m].min(0) + 1e-9) and np.all(up_m >= pre[m].max(0) - 1e-9)


def test_passes_start_every_layer_again_from_the_earlier_bounds():
    net = rnet([2, 16, 16, 16, 3], 10)
    dom = nm.domains.unit_box(2)
    b = interval_bounds(net, dom)
    lower, upper, stats = tighten(net, dom.lo, dom.hi, b.lower, b.upper, time_limit=4.0, passes=(0.25, 1.0))
    assert [(s["pass"], s["layer"]) for s in stats] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    # the second pass starts from the first pass's bounds: it counts as unstable only what is left
    assert stats[2]["neurons"] == stats[0]["neurons"] - stats[0]["stable"]
    assert stats[3]["neurons"] <= stats[1]["neurons"] - stats[1]["stable"]
    pre = net.preactivations(grid2())
    for m in range(net.depth):
        assert np.all(lower[m] >= b.lower[m]) and np.all(upper[m] <= b.upper[m])
        assert np.all(lower[m] <= pre[m].min(0) + 1e-9) and np.all(upper[m] >= pre[m].max(0) - 1e-9)
    for bad in ((), (0.5, 0.25), (0.0, 1.0), (1.5,)):
        with pytest.raises(ValueError, match="passes must be increasing shares"):
            tighten(net, dom.lo, dom.hi, b.lower, b.upper, time_limit=1.0, passes=bad)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_stable_neurons_bounds_enter_the_root_bound(seed):
    """γ: the bounds of stably active neurons (here exact, from the MILP) are constraints the
    back-substitution does not imply. With their multipliers the root bound stays sound
    (≥ the grid's maximum and ≥ the LP relaxation's optimum, a weaker-or-equal dual) and on
    seed 3 comes down to about the LP's, far below the bound without them."""
    from nnmiplib.mip import encode
    from nnmiplib.mip.solvers import get_backend

    net = rnet([2, 10, 10, 10, 3], seed)
    dom = nm.domains.unit_box(2)
    exact = compute_bounds(net, dom, method="milp", time_limit=60, n_jobs=1, progress=False)
    C, d = np.array([[1.0, -1.0, 0.0]]), np.zeros(1)
    layers = relax.Layers.build(net, exact.lower[:-1], exact.upper[:-1], dom.lo, dom.hi, C, d)
    root = relax.NodeBatch.root(layers)
    assert root.gamma is not None  # some neuron is stably active
    with_g, _ = relax.optimise(layers, root, iterations=200)
    without, _ = relax.optimise(layers, relax.without_gamma(root), iterations=200)
    model = encode(net, dom, exact, relax=True)
    y = model.nets[0].a[-1]
    c = np.zeros(model.n_vars)
    c[y[0]], c[y[1]] = 1.0, -1.0
    model.set_objective(c, "max")
    lp = get_backend("highs")(model, threads=1).solve(60).objective
    out = net.forward(grid2())
    assert float(with_g[0, 0]) >= (out[:, 0] - out[:, 1]).max()
    assert float(with_g[0, 0]) >= lp - 1e-6 * (1 + abs(lp))
    if seed == 3:
        assert float(without[0, 0]) > -0.3 and float(with_g[0, 0]) < lp + 0.1 < -0.7


@pytest.mark.parametrize("memory", [0, 2**20])
@pytest.mark.parametrize("case", ["fewer", "as many", "more", "grow"])
def test_the_pool_replaces_parents_by_children_as_a_set(case, memory):
    """The open nodes of a layer's search (tightening._Pool): after a round the pool holds exactly
    the nodes it kept and the children, each with its own bound, target and leaf flag — whether
    its storage grows (``memory`` 0) or was reserved for the budget up front (then never moved)."""
    from nnmiplib.bab.tightening import _Pool

    net = rnet([2, 6, 5, 1], 0)
    dom = nm.domains.unit_box(2)
    a = alpha_bounds(net, dom)
    lay = relax.Layers.build(net, a.lower[:-1], a.upper[:-1], dom.lo, dom.hi, np.eye(1), np.zeros(1))
    n = 12
    nodes = relax.NodeBatch.root(lay, n)
    nodes.alpha[0][:] = torch.arange(n, dtype=torch.float64)[:, None, None]  # node i's mark: α = i
    nodes = relax.without_gamma(nodes)
    pool = _Pool(nodes, torch.arange(n, dtype=torch.float64), torch.arange(n) % 3, torch.arange(n) % 2 == 0,
                 memory=memory)
    where = [t.data_ptr() for t in pool._data]
    assert (pool._data[0].shape[0] > 100) == (memory > 0)
    slots = torch.tensor([0, 5, 11, 7])
    m = {"fewer": 2, "as many": 4, "more": 7, "grow": 40}[case]
    kids = relax.NodeBatch.root(lay, m)
    kids.alpha[0][:] = 100 + torch.arange(m, dtype=torch.float64)[:, None, None]
    kids = relax.without_gamma(kids)
    pool.replace(slots, kids, 100 + torch.arange(m, dtype=torch.float64), torch.full((m,), 7))
    kept = [i for i in range(n) if i not in slots.tolist()]
    assert pool.n == len(kept) + m and pool.nodes.n == pool.n
    marks = pool.nodes.alpha[0][:, 0, 0]
    assert sorted(marks.tolist()) == sorted(kept + [100 + j for j in range(m)])
    # every node keeps its own bound, target and flag (the kept ones theirs, the children fresh)
    assert torch.equal(pool.ub, marks)
    assert torch.equal(pool.tid, torch.where(marks >= 100, 7, marks.long() % 3))
    assert torch.equal(pool.leaf, (marks < 100) & (marks.long() % 2 == 0))
    assert all(t.shape[0] == pool.n for t in (*pool.nodes.split, *pool.nodes.beta))
    if memory:
        assert [t.data_ptr() for t in pool._data] == where
