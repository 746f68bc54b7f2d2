"""Difference bounds of two networks of one shape (nnmiplib.bounds.difference): soundness by
sampling and exhaustive enumeration, the ReLU-step relaxation case by case, tightness
against the interval difference of the separate bounds, the model rows, arguments."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import nnmiplib as nm
from nnmiplib.bounds import DifferenceBounds, crown_bounds, difference_bounds, interval_bounds
from nnmiplib.bounds.difference import relu_difference_relaxation
from nnmiplib.domains import box
from nnmiplib.mip.encode import add_difference, encode, fill_difference
from nnmiplib.queries.core import start_violation


def random_net(sizes, seed, *, tiny=0.0):
    """Random net; with ``tiny`` > 0 a third of the weights are shrunk by that factor (many
    small weights, as an L1-trained net has: a light pruning then removes little)."""
    rng = np.random.default_rng(seed)
    W, b = [], []
    for i in range(len(sizes) - 1):
        w = rng.normal(size=(sizes[i + 1], sizes[i])) * np.sqrt(2.0 / sizes[i])
        if tiny:
            w[rng.random(w.shape) < 1 / 3] *= tiny
        W.append(w)
        b.append(rng.normal(size=sizes[i + 1]) * 0.2)
    return nm.Network(W, b, name=f"rand-{seed}")


def copies(net):
    """The net pruned 10–95 % and rounded at two thresholds."""
    out = [nm.prune.prune_fraction(net, p)[0] for p in (0.1, 0.3, 0.5, 0.7, 0.95)]
    out += [nm.prune.round_weights(net, eps)[0] for eps in (0.02, 0.2)]
    return out


def diffs_at(net1, net2, X):
    p1, p2 = net1.preactivations(X), net2.preactivations(X)
    return [a - b for a, b in zip(p1, p2)], [np.maximum(a, 0) - np.maximum(b, 0) for a, b in zip(p1[:-1], p2[:-1])]


# ------------------------------------------------------------------ the ReLU step
CASES = {"active": (0.5, 3.0), "inactive": (-3.0, -0.5), "unstable": (-2.0, 1.5)}


@pytest.mark.parametrize("separate", [True, False])
@pytest.mark.parametrize("pa, pb", list(itertools.product(CASES, CASES)))
@pytest.mark.parametrize("f0, f1", [(0.0, 1.0), (0.0, 0.3), (0.7, 1.0), (0.4, 0.6), (-0.5, 1.5)])
def test_relu_step_lines_hold_on_a_grid_of_every_phase_pair(pa, pb, f0, f1, separate):
    """∂h = ReLU(a^A) − ReLU(a^B) lies between the two lines for every (a^A, a^B) of the boxes
    with a^A − a^B in [dl, du] (a 301 × 301 grid), and inside the concrete bounds; [dl, du] is a
    part of the reachable range of differences (or wider than it)."""
    (lA, uA), (lB, uB) = CASES[pa], CASES[pb]
    Dl, Du = lA - uB, uA - lB
    dl, du = Dl + f0 * (Du - Dl), Dl + f1 * (Du - Dl)
    one = lambda v: np.array([v], float)
    rel = relu_difference_relaxation(one(lA), one(uA), one(lB), one(uB), one(dl), one(du), separate=separate)
    aA, aB = np.meshgrid(np.linspace(lA, uA, 301), np.linspace(lB, uB, 301))
    d = aA - aB
    ok = (d >= dl) & (d <= du)
    assert ok.sum() > 100
    aA, aB, d = aA[ok], aB[ok], d[ok]
    g = np.maximum(aA, 0) - np.maximum(aB, 0)
    up = rel["pu"][0] * d + rel["qu"][0] * aB + rel["ru"][0]
    low = rel["pl"][0] * d + rel["ql"][0] * aB + rel["rl"][0]
    assert np.all(g <= up + 1e-12) and np.all(g >= low - 1e-12)
    assert np.all(g <= rel["hi"][0]) and np.all(g >= rel["lo"][0])
    # the lines are attained where ∂h is a linear function
    if pa != "unstable" and pb != "unstable":
        assert np.allclose(up, g) and np.allclose(low, g)


def test_relu_step_is_exact_where_both_phases_are_stable():
    lo, hi = np.array([0.5, -3.0, 0.5, -3.0]), np.array([3.0, -0.5, 3.0, -0.5])
    lB, uB = np.array([1.0, -2.0, -2.0, 1.0]), np.array([2.0, -1.0, -1.0, 2.0])
    rel = relu_difference_relaxation(lo, hi, lB, uB, lo - uB, hi - lB)
    for k in ("p", "q", "r"):
        assert np.array_equal(rel[k + "u"], rel[k + "l"])
    assert rel["pu"].tolist() == [1, 0, 1, 0] and rel["qu"].tolist() == [0, 0, 1, -1]


# ------------------------------------------------------------------ containment
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_pairs_never_leave_the_bounds(seed):
    net = random_net((5, 16, 16, 16, 4), seed, tiny=0.05)
    dom = box(-np.ones(5), np.ones(5) * 0.5)
    X = np.vstack([dom.sample(4000, np.random.default_rng(seed)), dom.vertices()])
    for other in copies(net):
        for ref in ("both", "2", "1"):
            db = difference_bounds(net, other, dom, reference=ref)
            assert db.violation(net, other, X) <= 0.0, (other.name, ref)


def test_exhaustive_grid_on_tiny_two_input_nets():
    """A 301 × 301 grid of the box: every δ and ∂h lies inside, for pruned and rounded copies."""
    g = np.linspace(0.0, 1.0, 301)
    X = np.array(np.meshgrid(g, g)).reshape(2, -1).T
    dom = box([0.0, 0.0], [1.0, 1.0])
    for seed in range(2):
        net = random_net((2, 8, 8, 3), seed, tiny=0.1)
        for other in copies(net):
            db = difference_bounds(net, other, dom)
            assert db.violation(net, other, X) <= 0.0
            d, _ = diffs_at(net, other, X)
            # and the logit bound is not absurd: within 50× of the grid's range plus slack
            spread = d[-1].max(0) - d[-1].min(0)
            assert np.all(db.width(-1) <= 50 * spread + 1.0)


def test_identical_networks_have_zero_difference():
    net = random_net((4, 10, 10, 3), 5)
    dom = box(-np.ones(4), np.ones(4))
    db = difference_bounds(net, nm.Network(net.weights, net.biases), dom)
    for l in range(db.n_layers):
        assert np.all(np.abs(db.lower[l]) < 1e-6) and np.all(np.abs(db.upper[l]) < 1e-6)


# ------------------------------------------------------------------ tightness
def test_never_looser_than_the_interval_difference_of_the_separate_bounds():
    net = random_net((6, 20, 20, 5), 3, tiny=0.05)
    dom = box(-np.ones(6), np.ones(6))
    for other in copies(net):
        b1, b2 = crown_bounds(net, dom), crown_bounds(other, dom)
        db = difference_bounds(net, other, dom, bounds=(b1, b2))
        for l in range(db.n_layers):
            ilo, ihi = b1.lower[l] - b2.upper[l], b1.upper[l] - b2.lower[l]
            tol = 1e-8 * (1 + np.abs(ilo) + np.abs(ihi))
            assert np.all(db.lower[l] >= ilo - tol) and np.all(db.upper[l] <= ihi + tol)


def test_ten_times_tighter_than_separate_bounds_on_a_lightly_pruned_copy():
    net = random_net((8, 24, 24, 24, 5), 7, tiny=0.01)
    dom = box(np.zeros(8), np.full(8, 0.3))
    other = nm.prune.prune_fraction(net, 0.2)[0]  # removes only the shrunk weights
    db = difference_bounds(net, other, dom)
    ratio = db.interval_width(-1).mean() / db.width(-1).mean()
    assert ratio >= 10, ratio
    # and at least as tight with the separate *interval* bounds as input
    b = (interval_bounds(net, dom), interval_bounds(other, dom))
    db2 = difference_bounds(net, other, dom, bounds=b)
    assert np.all(db2.width(-1) <= db2.interval_width(-1) * (1 + 1e-9) + 1e-8)
    assert db.summary()[-1]["ratio"] == pytest.approx(ratio)


def test_upper_rows_bounds_differences_of_logit_differences():
    net = random_net((5, 16, 16, 4), 11, tiny=0.05)
    other = nm.prune.prune_fraction(net, 0.4)[0]
    dom = box(-np.ones(5), np.ones(5))
    db = difference_bounds(net, other, dom)
    K = 4
    C = (np.eye(K)[:, None, :] - np.eye(K)[None, :, :]).reshape(K * K, K)
    U = db.upper_rows(C)
    X = np.vstack([dom.sample(5000, np.random.default_rng(0)), dom.vertices()])
    d = net.forward(X) - other.forward(X)
    assert np.all((d @ C.T).max(0) <= U)
    box_bound = np.maximum(C, 0) @ db.upper[-1] + np.minimum(C, 0) @ db.lower[-1]
    assert np.all(U <= box_bound + 1e-6)


def test_a_net_and_its_lightly_pruned_copy_run_fast():
    import time

    net = random_net((50, 64, 64, 64, 10), 2, tiny=0.01)
    other = nm.prune.prune_fraction(net, 0.3)[0]
    dom = box(np.zeros(50), np.full(50, 0.1))
    t = time.perf_counter()
    db = difference_bounds(net, other, dom)
    assert time.perf_counter() - t < 5.0
    assert isinstance(db, DifferenceBounds) and db.time > 0 and "own_bounds_time" in db.stats


# ------------------------------------------------------------------ model rows
def test_model_rows_reproduce_every_sampled_point():
    """The δ and ∂h columns with their lines (add_difference) hold at the forward pass of
    sampled inputs: the rows remove no point of the two networks' graph."""
    net = random_net((4, 12, 12, 3), 4, tiny=0.05)
    other = nm.prune.prune_fraction(net, 0.5)[0]
    dom = box(-np.ones(4), np.ones(4))
    db = difference_bounds(net, other, dom)
    model = encode([net, other], dom, list(db.bounds))
    L = db.n_layers - 1
    dv = add_difference(model, db.lower, db.upper, layers=range(L + 1), h_lower=db.h_lower, h_upper=db.h_upper,
                        lines={l: db.lines(l) for l in range(L)})
    assert all(d is not None for d in dv.d) and all(g is not None for g in dv.g)
    for x in np.vstack([dom.sample(300, np.random.default_rng(1)), dom.vertices()]):
        v = model.point(x)
        fill_difference(v, model, dv)
        assert start_violation(model, v) <= 1e-9


def test_lines_hold_on_samples_where_a_neuron_is_unstable():
    net = random_net((3, 10, 10, 2), 8, tiny=0.1)
    other = nm.prune.round_weights(net, 0.2)[0]
    dom = box(-np.ones(3), np.ones(3))
    db = difference_bounds(net, other, dom)
    X = dom.sample(3000, np.random.default_rng(2))
    p1, p2 = net.preactivations(X), other.preactivations(X)
    for l in range(db.n_layers - 1):
        d, g = p1[l] - p2[l], np.maximum(p1[l], 0) - np.maximum(p2[l], 0)
        for ln in db.lines(l):
            v = ln["p"] * d + ln["q1"] * p1[l] + ln["q2"] * p2[l] + ln["r"]
            m = ln["mask"]
            bad = (g - v)[:, m] if ln["side"] == "upper" else (v - g)[:, m]
            assert np.all(bad <= 1e-9)


# ------------------------------------------------------------------ arguments
def test_bad_arguments_are_value_errors():
    net = random_net((3, 5, 2), 0)
    dom = box(-np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="layer sizes differ"):
        difference_bounds(net, random_net((3, 6, 2), 0), dom)
    with pytest.raises(ValueError, match="method"):
        difference_bounds(net, net, dom, method="lp")
    with pytest.raises(ValueError, match="reference"):
        difference_bounds(net, net, dom, reference="3")
    with pytest.raises(ValueError, match="lower_slope"):
        difference_bounds(net, net, dom, lower_slope="steep")
    other = nm.prune.prune_fraction(net, 0.5)[0]
    with pytest.raises(ValueError, match="not valid for another"):
        difference_bounds(net, other, dom, bounds=(crown_bounds(other, dom), crown_bounds(other, dom)))
    small = box(-np.ones(3) * 0.5, np.ones(3) * 0.5)
    with pytest.raises(ValueError, match="smaller domain"):
        difference_bounds(net, other, dom, bounds=(crown_bounds(net, small), crown_bounds(other, small)))
    with pytest.raises(ValueError, match="Networks"):
        difference_bounds(net, "net", dom)
    with pytest.raises(ValueError, match="dimension|inputs|coordinates"):
        difference_bounds(net, other, box(np.zeros(2), np.ones(2)))
    db = difference_bounds(net, other, dom)
    with pytest.raises(ValueError, match="another pair"):
        db.violation(other, net, dom.center)
    with pytest.raises(ValueError, match="columns"):
        db.upper_rows(np.ones((1, 3)))


def test_skipping_neurons_inactive_in_both_changes_no_bound(monkeypatch):
    """Back-substitution drops the columns of neurons inactive in both networks (their
    relaxation lines are 0); forced on every layer or off, the bounds agree to rounding and
    hold on samples."""
    from nnmiplib.bounds import cheap

    base = random_net((6, 24, 24, 24, 4), 7, tiny=0.05)
    net = nm.Network(base.weights, [b - 0.4 for b in base.biases])  # many neurons inactive on the box
    dom = box(-np.ones(6) * 0.3, np.ones(6) * 0.3)
    X = dom.sample(3000, np.random.default_rng(7))
    out = {}
    for frac in (0.0, 2.0):  # 0: always slice (whenever any neuron is inactive); 2: never
        monkeypatch.setattr(cheap, "LIVE_FRACTION", frac)
        monkeypatch.setattr(cheap, "LIVE_MIN_SIZE", 0)
        out[frac] = [difference_bounds(net, other, dom) for other in copies(net)]
        for other, db in zip(copies(net), out[frac]):
            assert db.violation(net, other, X) <= 0.0
    dead = [int(np.sum(b.upper[l] <= 0)) for b in out[0.0][0].bounds for l in range(3)]
    assert min(dead) > 0  # the test exercises the slicing
    for a, b in zip(out[0.0], out[2.0]):
        for l in range(a.n_layers):
            for x, y in ((a.lower[l], b.lower[l]), (a.upper[l], b.upper[l])):
                np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("ref", ["both", "2", "1"])
def test_back_substituting_only_unstable_neurons_keeps_the_logit_bounds(ref):
    """``unstable_only``: sound on samples for every copy; the logits bounded within 1 % of the
    full propagation's width (0.2 % at most on these nets: only the stable neurons' looser
    boxes, through the next layer's affine-step interval, can cost anything); some stable
    neurons' boxes are looser (the test exercises the shortcut)."""
    base = random_net((6, 24, 24, 24, 4), 11, tiny=0.05)
    net = nm.Network(base.weights, [b - 0.2 for b in base.biases])
    dom = box(-np.ones(6) * 0.2, np.ones(6) * 0.2)
    X = np.vstack([dom.sample(4000, np.random.default_rng(11)), dom.vertices()])
    looser = 0
    for other in copies(net):
        bds = (crown_bounds(net, dom), crown_bounds(other, dom))
        full = difference_bounds(net, other, dom, bounds=bds, reference=ref)
        quick = difference_bounds(net, other, dom, bounds=bds, reference=ref, unstable_only=True)
        assert quick.violation(net, other, X) <= 0.0, other.name
        assert quick.stats["unstable_only"] is True and full.stats["unstable_only"] is False
        assert np.all(quick.width(-1) <= 1.01 * full.width(-1) + 1e-9), other.name
        for l in range(1, full.n_layers - 1):
            stable = ~np.logical_or.reduce([(b.lower[l] < 0) & (b.upper[l] > 0) for b in bds])
            looser += int(np.sum(quick.width(l)[stable] > 1.001 * full.width(l)[stable]))
    assert looser > 0
    with pytest.raises(ValueError, match="unstable_only"):
        difference_bounds(net, net, dom, unstable_only=1)
