"""Cutting planes of the branch and bound: the convex hull of each ReLU over its input box."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from random_nets import rnet, softmax_instance
from scipy.optimize import linprog
from test_bab import ROWS, assert_above_node_maxima, grid2, random_split_nodes

import nnmiplib as nm
from nnmiplib.bab import relax, solve
from nnmiplib.bab.cuts import Cuts, hull_cuts, relaxation_cuts, root_cuts
from nnmiplib.bab.tightening import tighten_layer
from nnmiplib.bounds import crown_bounds, interval_bounds


def envelope(w, b, lo, hi, p):
    """The concave envelope of max(0, w·x + b) over the box at p, by an LP over the box's vertices."""
    V = np.array(list(itertools.product(*zip(lo, hi))))
    f = np.maximum(V @ w + b, 0.0)
    A_eq = np.vstack([V.T, np.ones(len(V))])
    r = linprog(-f, A_eq=A_eq, b_eq=np.append(p, 1.0), bounds=(0, None), method="highs")
    assert r.status == 0
    return -r.fun


def random_neurons(rng, m, n):
    """``m`` neurons on ``n`` inputs that are unstable on a random box."""
    lo = rng.uniform(-1.0, 0.5, n)
    hi = lo + rng.uniform(0.1, 1.5, n)
    W = rng.normal(size=(m, n))
    mid = W @ ((lo + hi) / 2)
    return W, -mid + rng.normal(scale=0.2, size=m), lo, hi


@pytest.mark.parametrize("seed", range(6))
def test_a_cut_holds_on_the_whole_box_and_is_the_envelope_at_its_point(seed):
    """Valid for every input of the box (vertices and random points), and at the point it
    was separated at, its right-hand side is the concave envelope there: the tightest cut."""
    rng = np.random.default_rng(seed)
    m, n = 6, 4
    W, b, lo, hi = random_neurons(rng, m, n)
    lmin, lmax = np.clip(W, None, 0) @ hi + np.clip(W, 0, None) @ lo + b, np.clip(W, 0, None) @ hi + np.clip(W, None, 0) @ lo + b
    assert np.all((lmin < 0) & (lmax > 0))
    p = rng.uniform(lo, hi)
    chord = lmax / (lmax - lmin) * (W @ p + b - lmin)  # the triangle's upper chord at p
    rows, G, e = hull_cuts(W, b, lo, hi, p, chord + 10.0)  # h far above: every neuron's cut is returned
    assert rows.tolist() == list(range(m))
    X = np.vstack([np.array(list(itertools.product(*zip(lo, hi)))), rng.uniform(lo, hi, size=(2000, n))])
    H = np.maximum(X @ W.T + b, 0.0)
    assert np.all(H <= X @ G.T + e + 1e-12)
    for i in range(m):
        env = envelope(W[i], b[i], lo, hi, p)
        assert G[i] @ p + e[i] == pytest.approx(env, abs=1e-7)
        assert env <= chord[i] + 1e-9  # never looser than the triangle
    # a point on the graph of every ReLU violates no cut
    rows2, _, _ = hull_cuts(W, b, lo, hi, p, np.maximum(W @ p + b, 0.0))
    assert rows2.size == 0


def test_hull_cuts_skip_stable_neurons_and_empty_layers():
    rng = np.random.default_rng(0)
    W, b, lo, hi = random_neurons(rng, 3, 3)
    b = b + 100.0  # stably active on the box
    rows, G, e = hull_cuts(W, b, lo, hi, (lo + hi) / 2, np.full(3, 1e3))
    assert rows.size == 0 and G.shape == (0, 3) and e.shape == (0,)
    rows, G, e = hull_cuts(np.zeros((0, 3)), np.zeros(0), lo, hi, lo, np.zeros(0))
    assert rows.size == 0 and G.shape == (0, 3)
    # neurons without inputs (every input of the layer pinned by the box): constant, no cut
    rows, G, e = hull_cuts(np.zeros((2, 0)), np.array([1.0, -1.0]), np.zeros(0), np.zeros(0), np.zeros(0),
                           np.full(2, 1e3))
    assert rows.size == 0 and G.shape == (0, 0) and e.shape == (0,)


def layers_of(net, dom, b, rows=ROWS):
    return relax.Layers.build(net, b.lower[:-1], b.upper[:-1], dom.lo, dom.hi, *rows)


@pytest.mark.parametrize("seed", range(4))
def test_node_bounds_with_cuts_contain_every_point_of_the_node(seed):
    """Cuts from the LP's optima, any π ≥ 0 and any decisions: the bound is above every input
    whose phases match the node (cuts hold on the whole box, so at every node)."""
    net = rnet([2, 8, 8, 4], seed)
    dom = nm.domains.unit_box(2)
    b = interval_bounds(net, dom)
    rng = np.random.default_rng(seed)
    cuts, stats = root_cuts(net, layers_of(net, dom, b), [0, 1, 2], rounds=4)
    assert stats["kept"] > 0
    N = 24
    layers, nodes = random_split_nodes(net, b, N, rng)
    layers = layers.with_cuts(cuts)
    nodes = relax.with_cut_multipliers(layers, nodes)
    for k, s in enumerate(layers.sizes):
        nodes.alpha[k] = torch.as_tensor(rng.uniform(0, 1, size=(N, 3, s)))
        nodes.beta[k] = torch.as_tensor(rng.exponential(0.5, size=(N, 3, s)))
    nodes.pi = [torch.as_tensor(rng.exponential(0.5, size=p.shape)) for p in nodes.pi]
    val, mag, _ = relax.bound(layers, nodes)
    ub = relax.certified(val, mag).numpy()
    X = grid2(201)
    assert_above_node_maxima(net, layers, nodes, net.preactivations(X), net.forward(X) @ ROWS[0].T + ROWS[1], ub)


@pytest.mark.parametrize("seed", range(3))
def test_cuts_bring_the_root_bound_down_and_never_below_the_maximum(seed):
    """A shallow net whose first layer is unstable on a wide box: the hull cuts of the first
    layer tighten the optimised root bound, which stays above the grid maximum."""
    net = rnet([2, 16, 8, 4], seed + 20)
    dom = nm.domains.unit_box(2)
    b = crown_bounds(net, dom)
    layers = layers_of(net, dom, b)
    plain, _ = relax.optimise(layers, relax.NodeBatch.root(layers), iterations=100)
    cuts, stats = root_cuts(net, layers, [0, 1, 2], rounds=6)
    with_cuts = layers.with_cuts(cuts)
    tight, _ = relax.optimise(with_cuts, relax.NodeBatch.root(with_cuts), iterations=100)
    brute = (net.forward(grid2(601)) @ ROWS[0].T + ROWS[1]).max(0)
    assert np.all(tight[0].numpy() >= brute - 1e-9)
    assert np.all(tight[0].numpy() <= plain[0].numpy() + 1e-6)
    assert (plain[0] - tight[0]).max() > 1e-3, (plain, tight, stats)
    for r, first, last in stats["lp"]:
        assert last <= first + 1e-9 and last >= brute[r] - 1e-6


def test_with_cuts_rejects_cuts_of_other_layers():
    net = rnet([2, 8, 8, 4], 0)
    dom = nm.domains.unit_box(2)
    layers = layers_of(net, dom, interval_bounds(net, dom))
    with pytest.raises(ValueError, match="2 hidden layers"):
        layers.with_cuts([None])
    bad = Cuts(np.array([0]), np.zeros((1, 5)), np.zeros(1))
    with pytest.raises(ValueError, match="do not fit"):
        layers.with_cuts([bad, None])
    assert layers.with_cuts(None) is layers and layers.with_cuts([None, None]) is layers


@pytest.mark.parametrize(("seed", "pairs"), [(0, 0), (1, 0), (2, 0), (0, 6), (1, 6)])
def test_search_with_cuts_agrees_with_brute_force(seed, pairs, monkeypatch):
    """Row by row with cuts (one-neuron, and two-neuron with ``pairs``): the optimum is the grid's,
    and decisions go the right way."""
    from nnmiplib.bab import search

    monkeypatch.setattr(search, "PAIR_CUTS", pairs)
    net = rnet([2, 16, 8, 4], seed + 30)
    dom = nm.domains.unit_box(2)
    b = crown_bounds(net, dom)
    C, d = ROWS
    F = net.forward(grid2(601)) @ C.T + d
    brute = float(F.max())
    r = solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1], time_limit=60, rel_gap=1e-6,
              abs_gap=1e-7, cuts=0.5)
    assert r.status == "optimal" and r.dual_bound >= brute - 1e-9 and r.value >= brute - 1e-3
    assert r.value == pytest.approx(float((net.forward(r.x[None]) @ C.T + d).max()), abs=1e-12)
    assert "cuts" in r.stats and r.stats["cuts"]["rounds"] >= 1
    above = solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1], threshold=brute + 0.05,
                  time_limit=60, cuts=0.5)
    assert above.status == "proved" and above.dual_bound <= brute + 0.05 + 1e-9


def test_softmax_objective_with_cuts_stays_above_the_grid():
    """An objective that is not a group of rows (softmax-L1 over logit differences): the cuts
    are separated for every row, whatever the objective's scale, and the bound stays sound."""
    from scipy.special import softmax

    from nnmiplib.bab import SoftmaxL1Objective

    net, dom, b, y0, c, C, d = softmax_instance([2, 16, 8, 4], 41)
    brute = float(np.abs(softmax(net.forward(grid2(401)), axis=1) - y0).sum(1).max())
    r = solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1],
              objective=SoftmaxL1Objective(y0, c), rel_gap=1e-3, abs_gap=1e-9, time_limit=5, cuts=0.5)
    assert r.dual_bound >= brute - 1e-9 and r.value <= r.dual_bound
    assert r.stats["cuts"]["rounds"] >= 1 and r.stats["cuts"]["rows"] == list(range(len(C)))


def linearised_rows(layers, nodes, x, hs):
    """The objective rows at a relaxation point: the last layer applied to its last hidden layer."""
    y = hs[-1] @ layers.W[-1].T + layers.b[-1]
    return (y * layers.C[None]).sum(-1) + layers.d


@pytest.mark.parametrize("seed", range(4))
def test_the_relaxation_point_reaches_the_bound_at_a_vertex(seed):
    """With no β, γ, π, the rows at the vertex point (saturate 0) equal the bound: the point is
    where the relaxation's maximum is; with saturate > 0 the input stays in the box."""
    net = rnet([3, 10, 8, 4], seed + 50)
    dom = nm.domains.unit_box(3)
    layers = layers_of(net, dom, crown_bounds(net, dom))
    rng = np.random.default_rng(seed)
    nodes = relax.NodeBatch.root(layers, 5)
    nodes.gamma = None
    nodes.alpha = [torch.as_tensor(rng.uniform(0, 1, size=a.shape)) for a in nodes.alpha]
    val, _, lams = relax.bound(layers, nodes, keep_lambdas=True)
    x, hs = relax.relaxation_point(layers, nodes, lams, saturate=0.0)
    assert torch.allclose(linearised_rows(layers, nodes, x, hs), val, atol=1e-9)
    assert bool(((x == layers.lo) | (x == layers.hi)).all())
    x2, hs2 = relax.relaxation_point(layers, nodes, lams, saturate=0.8)
    assert bool(((x2 >= layers.lo) & (x2 <= layers.hi)).all())
    assert bool(((x2 > layers.lo) & (x2 < layers.hi)).any())  # some coordinates stay inside
    assert (linearised_rows(layers, nodes, x2, hs2) <= val + 1e-9).all()  # never above the maximum


@pytest.mark.parametrize("seed", range(3))
def test_relaxation_cuts_hold_on_the_box_and_bring_the_root_bound_down(seed):
    """Cuts separated at the relaxation's optimum (no LP): each holds at every grid point of the
    box, the root bound drops and stays above the grid maximum, kept cuts are used (π > 0) and
    capped by ``max_cuts``."""
    net = rnet([2, 16, 8, 4], seed + 20)
    dom = nm.domains.unit_box(2)
    layers = layers_of(net, dom, crown_bounds(net, dom))
    ub, root = relax.optimise(layers, relax.NodeBatch.root(layers), iterations=100)
    cuts, nodes, tight, stats = relaxation_cuts(layers, root, ub)
    assert stats["kept"] > 0 and stats["rounds"] >= 1 and stats["rows"] == [0, 1, 2]
    X = grid2(301)
    pre = net.preactivations(X)
    kept = [np.flatnonzero(kp) for kp in layers.keep]
    inputs = [X] + [np.maximum(pre[k - 1][:, kept[k - 1]], 0.0) for k in range(1, layers.depth)]
    for k, cut in enumerate(cuts):
        if cut is None:
            continue
        h = cut.lhs(np.maximum(pre[k][:, kept[k]], 0.0))
        assert np.all(h <= inputs[k] @ cut.G.T + cut.e + 1e-12)
        assert bool((nodes.pi[k] > 0).flatten(0, 1).any(0).all())  # every kept cut is used
    brute = (net.forward(X) @ ROWS[0].T + ROWS[1]).max(0)
    assert np.all(tight[0].numpy() >= brute - 1e-9) and np.all(tight[0].numpy() <= ub[0].numpy() + 1e-12)
    assert (ub[0] - tight[0]).max() > 1e-3, (ub, tight, stats)
    # the bound of the returned nodes on the kept cuts alone is sound and close to the one returned
    w = layers.with_cuts(cuts)
    again, _ = relax.optimise(w, nodes, iterations=0)
    assert np.all(again[0].numpy() >= brute - 1e-9)
    capped, _, _, st2 = relaxation_cuts(layers, root, ub, max_cuts=3, per_point=1)
    assert st2["kept"] <= 3 and sum(0 if c is None else c.m for c in capped) == st2["kept"]


def test_relaxation_cuts_stop_once_every_row_is_below_its_level():
    net = rnet([2, 16, 8, 4], 21)
    dom = nm.domains.unit_box(2)
    layers = layers_of(net, dom, crown_bounds(net, dom))
    ub, root = relax.optimise(layers, relax.NodeBatch.root(layers), iterations=100)
    cuts, nodes, same, stats = relaxation_cuts(layers, root, ub, level=torch.tensor([float(ub.max()) + 1.0]))
    assert stats["rounds"] == 0 and stats["kept"] == 0 and all(c is None for c in cuts) and nodes.pi is None
    assert torch.equal(same, ub)
    with pytest.raises(ValueError, match="already carry cuts"):
        found, *_ = relaxation_cuts(layers, root, ub)
        relaxation_cuts(layers.with_cuts(found), root, ub)


@pytest.mark.parametrize("seed", range(3))
def test_tightening_with_cuts_keeps_every_reachable_preactivation(seed):
    """A layer's bounds tightened with cuts at its targets' roots contain every grid point's
    pre-activation and lie inside the given ones."""
    net = rnet([2, 12, 10, 8, 3], seed + 60)
    dom = nm.domains.unit_box(2)
    b = interval_bounds(net, dom)
    lower, upper = [np.array(v) for v in b.lower[:-1]], [np.array(v) for v in b.upper[:-1]]
    pre = net.preactivations(grid2(201))
    for m in (1, 2):
        r = tighten_layer(net, dom.lo, dom.hi, lower, upper, m, time_limit=3.0, cuts=0.3)
        assert np.all(r["lower"] <= pre[m].min(0) + 1e-9) and np.all(r["upper"] >= pre[m].max(0) - 1e-9)
        assert np.all(r["lower"] >= lower[m]) and np.all(r["upper"] <= upper[m])
        assert "cuts" in r
        lower[m], upper[m] = r["lower"], r["upper"]


def test_each_row_tree_starts_from_the_bound_the_cuts_reached():
    """Row by row: a row's tree keeps only the cuts its bound uses, and its root starts with the
    row's multipliers, whose bound is the one these multipliers give the row with every cut."""
    from nnmiplib.bab.search import _row_cuts

    net = rnet([2, 16, 8, 4], 22)
    dom = nm.domains.unit_box(2)
    b = crown_bounds(net, dom)
    layers = layers_of(net, dom, b)
    ub, root = relax.optimise(layers, relax.NodeBatch.root(layers), iterations=100)
    found, nodes, tight, stats = relaxation_cuts(layers, root, ub)
    assert stats["kept"] > 0
    C, d = ROWS
    full = relax.certified(*relax.bound(layers.with_cuts(found), nodes)[:2])
    assert (full >= tight - 1e-12).all()
    for r in range(3):
        cuts, start = _row_cuts(found, (nodes, tight), r)
        if cuts is None:
            continue
        assert sum(c.m for c in cuts if c is not None) <= stats["kept"]
        one = relax.Layers.build(net, b.lower[:-1], b.upper[:-1], dom.lo, dom.hi, C[r:r + 1], d[r:r + 1]).with_cuts(cuts)
        val, mag, _ = relax.bound(one, start)
        assert float(relax.certified(val, mag)[0, 0]) == pytest.approx(float(full[0, r]), abs=1e-7)


def test_tightening_probes_with_cuts_agree_with_brute_force():
    """Row by row with a tightening whose probes cut (``tighten`` and ``cuts`` together): the
    threshold just above the grid maximum is proved, just below it is violated by a point."""
    net = rnet([2, 16, 12, 8, 4], 33)
    dom = nm.domains.unit_box(2)
    b = crown_bounds(net, dom)
    C, d = ROWS
    brute = float((net.forward(grid2(601)) @ C.T + d).max())
    for thr, want in ((brute + 0.05, "proved"), (brute - 0.05, "violated")):
        r = solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1], threshold=thr, time_limit=20,
                  tighten=0.5, cuts=0.5)
        assert r.status == want, (thr, r.status, r.dual_bound)
        assert r.dual_bound >= brute - 1e-9
        if want == "proved":  # the root leaves it open: decided on the way, by the probes
            assert "tightened" in r.stats


def random_octagon(rng):
    """A random octagon in (a_i, a_j) with both neurons unstable, and points sampled in it."""
    li, lj = -rng.uniform(0.2, 2.0, 2)
    ui, uj = rng.uniform(0.2, 2.0, 2)
    ls, us = li + lj + rng.uniform(0, 0.6) * (ui + uj - li - lj) * rng.uniform(0, 0.5), ui + uj - rng.uniform(0, 0.4) * (ui + uj - li - lj)
    ld, ud = li - uj + rng.uniform(0, 0.4) * (ui + uj - li - lj), ui - lj - rng.uniform(0, 0.4) * (ui + uj - li - lj)
    A = rng.uniform([li, lj], [ui, uj], size=(200_000, 2))
    s, d = A.sum(1), A[:, 0] - A[:, 1]
    A = A[(s >= ls) & (s <= us) & (d >= ld) & (d <= ud)]
    return (li, ui, lj, uj, ls, us, ld, ud), A


@pytest.mark.parametrize("seed", range(8))
def test_two_neuron_facets_hold_on_the_octagon_and_cut_the_triangles(seed):
    """Every facet holds at every sampled point of the octagon's graph and is nearly touched by
    one; some point of the product of the two triangle relaxations violates a facet (the pair
    hull is tighter than the single-neuron relaxations)."""
    from nnmiplib.bab.cuts import pair_facets

    rng = np.random.default_rng(seed)
    (li, ui, lj, uj, ls, us, ld, ud), A = random_octagon(rng)
    N, r = pair_facets(li, ui, lj, uj, ls, us, ld, ud)
    assert len(r) > 0 and np.allclose(np.abs(N[:, 2:]).max(1), 1.0)
    V = np.c_[A, np.maximum(A, 0.0)]
    slack = r - V @ N.T
    assert slack.min() >= 0.0
    assert np.all(slack.min(0) <= 0.02 * (1 + np.abs(r)))  # each facet is (nearly) reached by a sample
    chord = lambda a, l, u: u / (u - l) * (a - l)
    T = np.c_[A, chord(A[:, 0], li, ui), chord(A[:, 1], lj, uj)]  # both neurons on their triangle's chord
    assert (T @ N.T - r).max() > 1e-3


def test_two_neuron_facets_of_a_stable_or_unbounded_pair_are_none():
    from nnmiplib.bab.cuts import pair_facets

    assert len(pair_facets(0.1, 1.0, -1.0, 1.0, -1.0, 2.0, -1.0, 2.0)[1]) == 0  # neuron i stably active
    assert len(pair_facets(-1.0, 1.0, -1.0, np.inf, -2.0, 2.0, -2.0, 2.0)[1]) == 0


@pytest.mark.parametrize("seed", range(3))
def test_pair_octagons_contain_every_reachable_sum_and_difference(seed):
    from nnmiplib.bab.cuts import _separation_data, pair_octagons

    net = rnet([2, 12, 10, 8, 3], seed + 80)
    dom = nm.domains.unit_box(2)
    layers = layers_of(net, dom, crown_bounds(net, dom))
    Ws, bs, unstable, _ = _separation_data(layers)
    lower, upper = [x.numpy() for x in layers.lower], [x.numpy() for x in layers.upper]
    pre = net.preactivations(grid2(201))
    kept = [np.flatnonzero(kp) for kp in layers.keep]
    for k in range(layers.depth):
        if unstable[k].size < 2:
            continue
        I, J = np.array(list(itertools.combinations(unstable[k], 2))).T
        ls, us, ld, ud = pair_octagons(Ws, bs, lower, upper, layers.lo.numpy(), layers.hi.numpy(), k, I, J)
        a = pre[k][:, kept[k]]
        s, d = a[:, I] + a[:, J], a[:, I] - a[:, J]
        assert np.all(s >= ls - 1e-12) and np.all(s <= us + 1e-12) and np.all(d >= ld - 1e-12) and np.all(d <= ud + 1e-12)
        assert np.any(us < upper[k][I] + upper[k][J] - 1e-6)  # tighter than the sum of the bounds somewhere


def test_cuts_of_one_and_two_neurons_mix_in_one_layer():
    one = Cuts(np.array([0, 2]), np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.5, 0.25]))
    two = Cuts(np.array([[1, 2]]), np.array([[2.0, 2.0]]), np.array([1.0]), np.array([[0.5, -1.0]]))
    both = one.extend(two)
    assert both.m == 3 and both.J.shape == (3, 2)
    h = np.array([[1.0, 2.0, 4.0]])
    assert both.lhs(h).tolist() == [[1.0, 4.0, 0.5 * 2.0 - 4.0]]
    assert both.take([False, True, True]).lhs(h).tolist() == [[4.0, -3.0]]


@pytest.mark.parametrize("seed", range(3))
def test_pair_cuts_hold_on_the_box_and_bound_the_root_at_least_as_low(seed):
    """With two-neuron facets: every kept cut (one- or two-neuron) holds at every grid point of the
    box, some two-neuron cut is kept, and the root bound stays above the grid maximum and is no
    higher than with single-neuron cuts alone, after the same rounds."""
    net = rnet([2, 16, 12, 4], seed + 90)
    dom = nm.domains.unit_box(2)
    layers = layers_of(net, dom, interval_bounds(net, dom))
    ub, root = relax.optimise(layers, relax.NodeBatch.root(layers), iterations=100)
    *_, tight1, _ = relaxation_cuts(layers, root, ub, rounds=6, min_gain=0.0)
    cuts, _, tight, stats = relaxation_cuts(layers, root, ub, rounds=6, min_gain=0.0, pairs=6)
    assert stats.get("pairs", 0) > 0
    assert any(c is not None and (c.H[:, 1] != 0).any() for c in cuts)  # a two-neuron cut is kept
    X = grid2(301)
    pre = net.preactivations(X)
    kept = [np.flatnonzero(kp) for kp in layers.keep]
    inputs = [X] + [np.maximum(pre[k - 1][:, kept[k - 1]], 0.0) for k in range(1, layers.depth)]
    for k, cut in enumerate(cuts):
        if cut is not None:
            assert np.all(cut.lhs(np.maximum(pre[k][:, kept[k]], 0.0)) <= inputs[k] @ cut.G.T + cut.e + 1e-12)
    brute = (net.forward(X) @ ROWS[0].T + ROWS[1]).max(0)
    assert np.all(tight[0].numpy() >= brute - 1e-9)
    assert float(tight.max()) <= float(tight1.max()) + 1e-6
