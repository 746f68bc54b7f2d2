"""A network and its pruned copy (nnmiplib.queries.pairs): max_logit_change and
top1_equivalent against brute force on 2-input grids and against the plain comparator;
the difference rows in maxdiff, maxout, maxflip and mineps; arguments."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import random_nets

import nnmiplib as nm
from nnmiplib import queries as Q
from nnmiplib.bounds import crown_bounds
from nnmiplib.queries.pairs import class_margin_bounds, disagreement, segment_search

G = np.linspace(0, 1, 401)
X = np.array(np.meshgrid(G, G)).reshape(2, -1).T
UNIT = nm.domains.unit_box(2)


def rnet(sizes, seed, scale=3.0):
    return random_nets.rnet(sizes, seed, scale)


def pair(seed, p=0.3, sizes=(2, 10, 8, 3)):
    net = rnet(list(sizes), seed)
    return net, nm.prune.prune_fraction(net, p)[0]


def threshold_pair(b1=0.5, b2=0.52):
    """Two 1-input nets answering class 0 iff x > b (b1, b2): they disagree on (b1, b2)."""
    W = [np.array([[1.0], [-1.0]]), np.eye(2)]

    def net(b):
        return nm.Network(W, [np.array([0.0, 1.0]), np.array([-b, b - 1.0])])

    return net(b1), net(b2)


# ------------------------------------------------------------------ max_logit_change
@pytest.mark.parametrize("seed", range(3))
def test_max_logit_change_matches_grid(seed):
    n1, n2 = pair(seed)
    gmax = np.abs(n1.forward(X) - n2.forward(X)).max()
    r = Q.max_logit_change(n1, n2, UNIT, bounds_method="crown", time_limit=30)
    assert r.status == "optimal" and r.verified and r.extra["difference"]
    assert r.objective == pytest.approx(np.abs(n1.forward(r.x) - n2.forward(r.x)).max(), abs=1e-12)
    assert r.objective >= gmax - 1e-7 and r.dual_bound >= gmax
    assert r.dual_bound - r.objective <= 1e-4 * (1 + r.objective)
    # the measured gain: both root LPs reported, the one with the difference rows no larger
    lp_with, lp_without = r.extra["root_lp_bound_with_difference"], r.extra["dual_bound_without_difference"]
    assert lp_with is not None and lp_without is not None
    assert gmax <= lp_with <= lp_without + 1e-6
    db = r.extra["difference_bounds"]
    assert np.all(n1.forward(X) - n2.forward(X) <= db["logit_upper"]) and db["mean_width"] <= db["interval_mean_width"]


def test_difference_report_skips_its_lps_when_the_limit_is_spent():
    """A query that used its whole time limit reports the column bounds only: the two root LPs
    are skipped (they would overrun the limit), and the report says so."""
    import time

    from nnmiplib.queries.pairs import logit_change_model, report_difference

    n1, n2 = pair(0)
    b = (crown_bounds(n1, UNIT), crown_bounds(n2, UNIT))
    db = nm.bounds.difference_bounds(n1, n2, UNIT, bounds=b)
    build = lambda f: logit_change_model([n1, n2], UNIT, list(b), db if f else None)[0]
    for spent, has_lp in ((10.0, False), (0.0, True)):
        res = Q.Result("max-logit-change", "max")
        t = time.perf_counter()
        report_difference(res, build, "highs", 10.0, t - spent)
        assert (res.extra["dual_bound_without_difference"] is not None) == has_lp
        assert (res.extra["root_lp_bound_with_difference"] is not None) == has_lp
        assert np.isfinite(res.extra["column_bound_without_difference"])
        assert np.isfinite(res.extra["column_bound_with_difference"])
        assert ("no time left" in res.extra.get("difference_report", "")) == (not has_lp)
        if not has_lp:
            assert time.perf_counter() - t < 1.0


def test_max_logit_change_without_difference_and_maxdiff_logits_agree():
    n1, n2 = pair(4)
    b = (crown_bounds(n1, UNIT), crown_bounds(n2, UNIT))
    r1 = Q.max_logit_change(n1, n2, UNIT, bounds=b, time_limit=30)
    r2 = Q.max_logit_change(n1, n2, UNIT, bounds=b, time_limit=30, difference=False)
    r3 = Q.maxdiff(n1, n2, UNIT, form="logits", bounds=b, time_limit=30)
    assert not r2.extra["difference"] and "difference_bounds" not in r2.extra and r3.extra["difference"]
    for r in (r2, r3):
        assert r.status == "optimal" and r.objective == pytest.approx(r1.objective, abs=1e-6)
    assert r3.extra["dual_bound_without_difference"] == pytest.approx(r1.extra["dual_bound_without_difference"])


def test_max_logit_change_of_a_constant_shift_is_exact():
    n1, n2 = threshold_pair(0.5, 0.52)
    dom = nm.domains.box([0.0], [1.0])
    r = Q.max_logit_change(n1, n2, dom, bounds_method="crown", time_limit=10)
    assert r.objective == pytest.approx(0.02, abs=1e-12) and r.dual_bound == pytest.approx(0.02, abs=1e-5)
    assert r.extra["difference_bounds"]["mean_width"] < 1e-6  # δ is the constant (0.02, −0.02)


def test_max_logit_change_of_networks_of_different_shapes_runs_without_difference():
    n1, n2 = rnet([2, 10, 3], 0), rnet([2, 6, 6, 3], 1)
    gmax = np.abs(n1.forward(X) - n2.forward(X)).max()
    r = Q.max_logit_change(n1, n2, UNIT, bounds_method="crown", time_limit=30)
    assert not r.extra["difference"] and r.status == "optimal" and r.dual_bound >= gmax
    with pytest.raises(ValueError, match="one shape"):
        Q.max_logit_change(n1, n2, UNIT, bounds_method="crown", difference=True)


# ------------------------------------------------------------------ top1_equivalent
def test_disagreement_by_hand():
    l1 = np.array([[3.0, 1.0, 0.0], [3.0, 1.0, 0.0], [2.0, 2.0, 0.0]])
    l2 = np.array([[0.0, 2.0, 1.5], [4.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert disagreement(l1, l2).tolist() == [0.5, -2.0, -0.0]


def test_segment_search_finds_the_sliver_between_two_boundaries():
    n1, n2 = threshold_pair(0.5, 0.52)
    x, g = segment_search([n1, n2], np.array([0.0]), np.array([1.0]))
    assert 0.5 < x[0] < 0.52 and g == pytest.approx(0.02, abs=1e-3)


def test_class_margin_bounds_hold_on_the_grid():
    net = rnet([2, 10, 8, 4], 3)
    U = class_margin_bounds(net, crown_bounds(net, UNIT), UNIT)
    A = net.forward(X)
    for c, k in itertools.permutations(range(4), 2):
        assert (A[:, c] - A[:, k]).max() <= U[c, k]


def _grid_disagreement(n1, n2, pts):
    return disagreement(n1.forward(pts), n2.forward(pts))


@pytest.mark.parametrize("engine", ["auto", "mip"])
@pytest.mark.parametrize("seed", range(3))
def test_top1_equivalent_against_the_grid(seed, engine):
    n1, n2 = pair(seed, p=0.5)
    g = _grid_disagreement(n1, n2, X)
    r = Q.top1_equivalent(n1, n2, UNIT, bounds_method="crown", time_limit=60, engine=engine)
    assert r.status == "decided" and r.dual_bound >= g.max() - 1e-12
    if r.extra["equivalent"]:
        assert g.max() < r.extra["tau"]
    else:
        assert r.verified and r.objective >= r.margin
        assert r.objective == pytest.approx(float(_grid_disagreement(n1, n2, r.x[None])[0]), abs=0)
        c1, c2 = r.classes
        assert c1 != c2
    if g.max() >= 1e-3:  # a disagreement the grid sees must be found
        assert r.extra["equivalent"] is False


def test_top1_equivalent_finds_a_thin_disagreement():
    n1, n2 = threshold_pair(0.5, 0.5001)
    dom = nm.domains.box([0.0], [1.0])
    r = Q.top1_equivalent(n1, n2, dom, bounds_method="crown", time_limit=30)
    assert r.extra["equivalent"] is False and r.verified and 0.5 < r.x[0] < 0.5001


def test_top1_equivalent_proves_agreement_on_a_small_ball():
    n1, n2 = pair(1, p=0.2)
    x0 = np.array([0.2, 0.7])
    dom = nm.domains.linf_ball(x0, 0.01)
    g = _grid_disagreement(n1, n2, dom.lo + (dom.hi - dom.lo) * X)
    r = Q.top1_equivalent(n1, n2, dom, bounds_method="crown", time_limit=30)
    assert g.max() < 0 and r.extra["equivalent"] is True and r.status == "decided" and r.dual_bound < r.extra["tau"]


@pytest.mark.parametrize("engine", ["auto", "mip"])
def test_a_shifted_copy_is_equivalent_by_the_pair_searches(engine):
    """Every logit shifted by the same 1e-3: the classes never differ, but without the difference
    bounds nothing cheap shows it, so the pairs go to the pair searches (MIP, then the stacked
    branch and bound for what the MIP leaves open)."""
    net = rnet([2, 10, 8, 3], 2)
    shift = nm.Network(net.weights, [*net.biases[:-1], net.biases[-1] + 1e-3])
    r = Q.top1_equivalent(net, shift, UNIT, bounds_method="crown", time_limit=60, engine=engine, difference=False)
    assert r.status == "decided" and r.extra["equivalent"] is True
    assert {p["outcome"] for p in r.extra["pairs"]} <= {"bounds", "class", "solver", "bab"}
    assert any(p["outcome"] in ("solver", "bab") for p in r.extra["pairs"])


def test_top1_equivalent_of_networks_of_different_shapes_against_the_grid():
    n1, n2 = rnet([2, 10, 3], 0), rnet([2, 6, 6, 3], 0)
    g = _grid_disagreement(n1, n2, X)
    r = Q.top1_equivalent(n1, n2, UNIT, bounds_method="crown", time_limit=30)
    assert r.status == "decided" and not r.extra["difference"]
    assert r.extra["equivalent"] is (False if g.max() >= 1e-3 else r.extra["equivalent"])
    if not r.extra["equivalent"]:
        assert r.verified


def test_identical_networks_are_equivalent_only_with_the_difference_bounds():
    """Across a decision boundary two copies of one net tie on it (t* = 0): the difference
    bounds (δ ≡ 0) prove every pair empty at once; without them every pair needs its MIP."""
    net = rnet([2, 10, 8, 3], 1)
    copy = nm.Network(net.weights, net.biases)
    A = net.forward(X)
    assert len(set(np.argmax(A, axis=1).tolist())) > 1  # the box crosses a boundary
    r = Q.top1_equivalent(net, copy, UNIT, bounds_method="crown", time_limit=20)
    assert r.extra["equivalent"] is True and r.extra["refuted_by_bounds"] == 6
    assert r.extra["refuted_by_bounds_without_difference"] < 6 and r.dual_bound < r.extra["tau"]
    r2 = Q.top1_equivalent(net, copy, UNIT, bounds_method="crown", time_limit=3, difference=False)
    # without them the bounds refute no pair: what is decided (within the limit, or not) is
    # decided by the pair MIPs, and never wrongly
    assert r2.extra["refuted_by_bounds"] == 0 and r2.extra["equivalent"] is not False
    if r2.extra["equivalent"] is True:
        assert r2.extra["pairs_solved"] == 6 and r2.dual_bound < r2.extra["tau"]
    else:
        assert r2.dual_bound >= r2.extra["tau"]


def test_top1_computes_the_difference_bounds_only_where_they_can_matter():
    """A small box where both networks answer one class by a wide margin: their own bounds
    refute every pair, so the difference bounds are not computed (they would only cost time);
    across a boundary they are."""
    net, small = pair(3)
    m = [np.sort(n.forward(X), axis=1) for n in (net, small)]
    same = np.argmax(net.forward(X), 1) == np.argmax(small.forward(X), 1)
    x0 = X[np.argmax(np.where(same, np.minimum(m[0][:, -1] - m[0][:, -2], m[1][:, -1] - m[1][:, -2]), -np.inf))]
    tiny = nm.domains.box(x0 - 1e-3, x0 + 1e-3)
    r = Q.top1_equivalent(net, small, tiny, bounds_method="crown", difference=True, time_limit=20)
    assert r.extra["equivalent"] is True and r.extra["refuted_by_bounds"] == 6
    assert not r.extra["difference"] and "difference_bounds" not in r.extra
    assert r.extra["difference_skipped"] == "every pair refuted by each network's own bounds"
    r1 = Q.top1_equivalent(net, small, UNIT, bounds_method="crown", difference=True, time_limit=20)
    assert r1.extra["equivalent"] is False and r1.verified  # they disagree somewhere on the box
    assert r1.extra["difference"] is (r1.extra["difference_skipped"] is None)
    if not r1.extra["difference"]:
        assert r1.extra["difference_skipped"] == "witness found by the attacks"
    copy = nm.Network(net.weights, net.biases)  # never disagrees, but the box crosses a boundary
    r2 = Q.top1_equivalent(net, copy, UNIT, bounds_method="crown", difference=True, time_limit=20)
    assert r2.extra["refuted_by_bounds_without_difference"] < 6 and r2.extra["equivalent"] is True
    assert r2.extra["difference"] and r2.extra["difference_skipped"] is None


@pytest.mark.parametrize("seed", [0, 5])
def test_top1_equivalent_agrees_with_maxout_over_every_pair(seed):
    n1, n2 = pair(seed, p=0.6)
    b = (crown_bounds(n1, UNIT), crown_bounds(n2, UNIT))
    r = Q.top1_equivalent(n1, n2, UNIT, bounds=b, time_limit=60)
    found = []
    for c1, c2 in itertools.permutations(range(3), 2):
        m = Q.maxout(n1, n2, UNIT, c1, c2, bounds=b, time_limit=30, difference=False)
        assert m.status in ("optimal", "infeasible")
        found.append(m.status == "optimal" and m.verified)
    assert r.extra["equivalent"] is (not any(found))


# ------------------------------------------------------------------ the comparator's rows
@pytest.mark.parametrize("seed", range(2))
def test_maxout_with_and_without_difference_agree_with_the_grid(seed):
    n1, n2 = pair(seed, p=0.4)
    b = (crown_bounds(n1, UNIT), crown_bounds(n2, UNIT))
    A1, A2 = n1.forward(X), n2.forward(X)
    for c1, c2 in [(0, 1), (1, 2), (2, 2)]:
        m1 = A1[:, c1] - np.max(np.delete(A1, c1, axis=1), axis=1)
        m2 = A2[:, c2] - np.max(np.delete(A2, c2, axis=1), axis=1)
        ok = (m1 >= 1e-3) & (m2 >= 1e-3)
        res = [Q.maxout(n1, n2, UNIT, c1, c2, bounds=b, time_limit=30, difference=d, hidden=h)
               for d, h in ((False, False), (True, False), (True, True))]
        assert [r.extra["difference"] for r in res] == [False, True, True]
        for r in res:
            if ok.any():
                gbest = (A1[ok, c1] + A2[ok, c2]).max()
                assert r.status == "optimal" and r.dual_bound >= gbest - 1e-9
                assert r.objective == pytest.approx(res[0].objective, abs=1e-5)
        if ok.any() and c1 != c2:
            assert res[1].extra["root_lp_bound_with_difference"] <= res[1].extra["dual_bound_without_difference"] + 1e-6


@pytest.mark.parametrize("seed", range(2))
def test_maxflip_with_phase_implications_bounds_the_grid(seed):
    n1, n2 = pair(seed, p=0.3)
    p1, p2 = n1.preactivations(X), n2.preactivations(X)
    flips = sum(((a > 0) != (b > 0)).sum(axis=1) for a, b in zip(p1[:-1], p2[:-1]))
    r = Q.maxflip(n1, n2, UNIT, bounds_method="crown", time_limit=30)
    r0 = Q.maxflip(n1, n2, UNIT, bounds_method="crown", time_limit=30, difference=False)
    assert r.extra["difference"] and "phase_implications" in r.extra
    for q in (r, r0):
        assert q.dual_bound >= flips.max() and q.objective >= flips.max() - 1  # ties on the grid aside
    assert r.extra["root_lp_bound_with_difference"] <= r.extra["dual_bound_without_difference"] + 1e-6


@pytest.mark.parametrize("seed", range(2))
def test_mineps_with_and_without_difference_agree(seed):
    n1, n2 = pair(seed, p=0.5)
    x0 = np.array([0.4, 0.6])
    r = Q.mineps(n1, n2, x0, bounds_method="crown", time_limit=30)
    r0 = Q.mineps(n1, n2, x0, bounds_method="crown", time_limit=30, difference=False)
    assert r.extra["difference"] and not r0.extra["difference"]
    assert r.status == r0.status
    if r.status == "optimal":
        assert r.objective == pytest.approx(r0.objective, abs=1e-5)
        assert r.dual_bound <= r.objective + 1e-9


def test_mineps_excludes_classes_the_difference_bounds_rule_out():
    """Two copies of one net never disagree: every class is excluded and the query is infeasible."""
    net = rnet([2, 10, 8, 3], 2)
    copy = nm.Network(net.weights, net.biases)
    x0 = np.array([0.4, 0.6])
    r = Q.mineps(net, copy, x0, bounds_method="crown", time_limit=20, attack=False)
    assert sorted(r.extra["excluded_classes"]) == sorted(set(range(3)) - {int(np.argmax(net.forward(x0)))})
    assert r.status == "infeasible"


# ------------------------------------------------------------------ arguments
def test_bad_arguments():
    n1, n2 = pair(0)
    for q in (Q.max_logit_change, Q.top1_equivalent):
        with pytest.raises(ValueError, match="time_limit"):
            q(n1, n2, UNIT, time_limit=0)
        with pytest.raises(ValueError, match="difference"):
            q(n1, n2, UNIT, difference="yes", bounds_method="crown")
        with pytest.raises(ValueError, match="classes"):
            q(n1, rnet([2, 10, 8, 4], 0), UNIT, bounds_method="crown")
        with pytest.raises(ValueError, match="hidden"):
            q(n1, n2, UNIT, hidden=1)
        with pytest.raises(ValueError, match="bounds_method"):
            q(n1, n2, UNIT, bounds_method="exact")
    with pytest.raises(ValueError, match="margin"):
        Q.top1_equivalent(n1, n2, UNIT, margin=-1.0)
    with pytest.raises(ValueError, match="engine"):
        Q.top1_equivalent(n1, n2, UNIT, engine="cplex")
    with pytest.raises(ValueError, match="report"):
        Q.max_logit_change(n1, n2, UNIT, report="no")
    with pytest.raises(ValueError, match="softmax"):
        Q.maxdiff(n1, n2, UNIT, difference=True)
    with pytest.raises(ValueError, match="difference"):
        Q.maxout(n1, n2, UNIT, 0, 1, difference=2)
