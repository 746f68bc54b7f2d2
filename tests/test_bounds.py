"""Unit and known-answer tests of nnmiplib.bounds (Prop 2.1, Prop 2.2, interval, crown, Bounds)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import nnmiplib as nm
from nnmiplib.bounds import (
    Bounds,
    compute_bounds,
    crown_bounds,
    interval_bounds,
    naive_bounds,
    prop22_bounds,
    prop22_layer,
    ro_gap,
)
from nnmiplib.domains import Box, box, unit_box


@pytest.fixture
def hand_net():
    """y = ReLU(x1 − x2) + ReLU(x1 + x2 − 1) on [0, 1]²: true range of y is [0, 1]."""
    return nm.Network([np.array([[1.0, -1.0], [1.0, 1.0]]), np.array([[1.0, 1.0]])],
                      [np.array([0.0, -1.0]), np.array([0.0])], name="hand")


def test_naive_known_answer(hand_net):
    b = naive_bounds(hand_net, unit_box(2))
    # ‖W⁰‖∞ = 2, ‖h⁰‖∞ = 1, ‖b⁰‖∞ = 1 → M₀ = 3; ‖W¹‖∞ = 2 → M₁ = 6
    np.testing.assert_allclose(b.upper[0], [3, 3], rtol=1e-8)
    np.testing.assert_allclose(b.lower[0], [-3, -3], rtol=1e-8)
    np.testing.assert_allclose(b.upper[1], [6], rtol=1e-8)
    assert np.all(b.upper[1] >= 6) and np.all(b.lower[0] <= -3)  # widened outward, never inward


def test_interval_and_crown_known_answer(hand_net):
    bi = interval_bounds(hand_net, unit_box(2))
    np.testing.assert_allclose(bi.lower[0], [-1, -1], atol=1e-8)
    np.testing.assert_allclose(bi.upper[0], [1, 1], atol=1e-8)
    np.testing.assert_allclose([bi.lower[1][0], bi.upper[1][0]], [0, 2], atol=1e-8)
    bc = crown_bounds(hand_net, unit_box(2))
    # chords 0.5·(a + 1) on both neurons: y ≤ x1 + 0.5 ≤ 1.5; lower slopes 0 (|l| ≥ u) → y ≥ 0
    np.testing.assert_allclose([bc.lower[1][0], bc.upper[1][0]], [0, 1.5], atol=1e-8)
    assert bc.source[1][0] == "interval/crown"
    assert bc.lower[1][0] <= 0 and bc.upper[1][0] >= 1  # contains the true range [0, 1]


def test_crown_lower_slope_options(hand_net):
    same = crown_bounds(hand_net, unit_box(2), lower_slope="same")
    # parallel lower relaxation 0.5·a: y ≥ 0.5(x1 − x2) + 0.5(x1 + x2 − 1) = x1 − 0.5 ≥ −0.5, clipped by interval at 0
    assert same.lower[1][0] == pytest.approx(0, abs=1e-8)
    with pytest.raises(ValueError, match="lower_slope"):
        crown_bounds(hand_net, unit_box(2), lower_slope="bogus")
    assert crown_bounds(hand_net, unit_box(2), lower_slope="adaptive").upper[1][0] == pytest.approx(1.5, abs=1e-8)


def test_prop22_layer_known_answer():
    lo, hi = prop22_layer(np.array([[1.0, -2.0], [0.5, 0.5]]), np.array([1.0, -3.0]),
                          np.array([1.0, 0.0]), np.array([0.0, 2.0]))
    # ‖W‖∞ = 3, max(H, H̄) = 2, ‖b‖∞ = 3 → 9
    np.testing.assert_allclose(hi, [9, 9], rtol=1e-8)
    np.testing.assert_allclose(lo, [-9, -9], rtol=1e-8)
    with pytest.raises(ValueError, match="shapes"):
        prop22_layer(np.ones((2, 3)), np.ones(2), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="≥ 0"):
        prop22_layer(np.ones((2, 2)), np.ones(2), -np.ones(2), np.ones(2))


def test_prop22_equals_naive_from_box(hand_net):
    a, b = naive_bounds(hand_net, unit_box(2)), prop22_bounds(hand_net, unit_box(2))
    for l in range(a.n_layers):
        np.testing.assert_allclose(a.upper[l], b.upper[l], rtol=1e-7)


def test_bounds_helpers(hand_net):
    b = crown_bounds(hand_net, box([0.6, 0.0], [1.0, 0.1]))
    # x1 − x2 ∈ [0.5, 1] stably active; x1 + x2 − 1 ∈ [−0.4, 0.1] unstable
    assert b.stable_active(0).tolist() == [True, False]
    assert b.unstable(0).tolist() == [False, True]
    assert b.stable_counts() == [{"layer": 0, "n": 2, "active": 1, "inactive": 0, "unstable": 1}]
    H, Hb = b.big_m(0)
    assert H[0] == pytest.approx(1.0, abs=1e-8) and Hb[0] == 0.0 and Hb[1] == pytest.approx(0.4, abs=1e-8)
    assert np.all(b.width(0) > 0)
    assert b.n_layers == 2 and "crown" in repr(b)


def test_intersect_keeps_tightest_and_sources(hand_net):
    bn, bc = naive_bounds(hand_net, unit_box(2)), crown_bounds(hand_net, unit_box(2))
    bx = bn.intersect(bc)
    assert bx.contains(bc) and bc.contains(bx)
    assert bx.source[1][0] == "interval/crown"
    assert bx.method == "naive&crown"
    with pytest.raises(ValueError, match="different networks"):
        bn.intersect(crown_bounds(nm.Network([np.eye(2), np.ones((1, 2))], [np.zeros(2), np.zeros(1)]), unit_box(2)))
    with pytest.raises(ValueError, match="different input domains"):
        bn.intersect(crown_bounds(hand_net, box([0, 0], [0.5, 0.5])))


def test_save_load_roundtrip_and_digest(tmp_path, hand_net):
    b = crown_bounds(hand_net, box([0.0, 0.2], [1.0, 0.9], name="mine"))
    p = b.save(tmp_path / "b")
    assert p.suffix == ".npz" and not list(tmp_path.glob("*.tmp"))
    c = Bounds.load(p, net=hand_net)
    for l in range(b.n_layers):
        assert np.array_equal(b.lower[l], c.lower[l]) and np.array_equal(b.upper[l], c.upper[l])
        assert b.source[l].tolist() == c.source[l].tolist()
    assert c.domain.name == "mine" and np.array_equal(c.domain.hi, b.domain.hi)
    assert c.method == "crown" and c.stats["stable"] == b.stats["stable"]
    other = hand_net.with_parameters(biases=[np.array([0.0, -0.5]), np.array([0.0])])
    with pytest.raises(ValueError, match="not valid for another"):
        Bounds.load(p, net=other)
    with pytest.raises(ValueError, match="not to"):
        c.violation(other, np.zeros((1, 2)))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        Bounds.load(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        Bounds.load(tmp_path / "missing.npz")


def test_ro_gap_known_answer(hand_net):
    b = crown_bounds(hand_net, unit_box(2))
    lp = Bounds([l.copy() for l in b.lower], [u.copy() for u in b.upper], b.source, b.time, "lp", b.net_digest, b.domain)
    milp = Bounds([l.copy() for l in b.lower], [u.copy() for u in b.upper], b.source, b.time, "milp", b.net_digest,
                  b.domain)
    lp.upper[1][:] = 2.0
    milp.upper[1][:] = 1.0
    g = ro_gap(lp, milp)
    assert g[1].shape == (2, 1)
    assert g[1][1, 0] == pytest.approx(1.0) and g[1][0, 0] == 0.0
    assert ro_gap(lp, milp, "upper")[1][0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="which"):
        ro_gap(lp, milp, "middle")


@pytest.mark.parametrize("method", ["naive", "prop22", "interval", "crown"])
def test_compute_bounds_dispatch_and_bad_inputs(hand_net, method):
    b = compute_bounds(hand_net, unit_box(2), method=method)
    assert b.method == method and b.net_digest == hand_net.digest()
    b2 = compute_bounds(hand_net, ([0, 0], [1, 1]), method=method)  # a (lo, hi) pair works too
    assert np.allclose(b2.upper[1], b.upper[1])
    with pytest.raises(ValueError, match="takes 2 inputs"):
        compute_bounds(hand_net, unit_box(3), method=method)
    with pytest.raises(ValueError, match="inverted"):
        compute_bounds(hand_net, ([0, 1], [1, 0]), method=method)
    with pytest.raises(ValueError, match="NaN"):
        compute_bounds(hand_net, ([0, np.nan], [1, 1]), method=method)
    with pytest.raises(ValueError, match="empty"):
        compute_bounds(hand_net, ([], []), method=method)


def test_compute_bounds_rejects_unknown_method_and_non_network(hand_net):
    with pytest.raises(ValueError, match="unknown bound method"):
        compute_bounds(hand_net, unit_box(2), method="magic")
    with pytest.raises(ValueError, match="Network"):
        compute_bounds([np.eye(2)], unit_box(2), method="interval")
    with pytest.raises(ValueError, match="Box"):
        compute_bounds(hand_net, np.zeros(2), method="interval")
    with pytest.raises(ValueError, match="NaN"):
        Box(np.array([0.0, np.nan]), np.ones(2))


def test_bounds_rejects_crossed_or_nan():
    with pytest.raises(ValueError, match="lower"):
        Bounds([np.array([1.0])], [np.array([0.0])], [np.array(["x"])], [np.zeros(1)], "x", "d", unit_box(1))
    with pytest.raises(ValueError, match="NaN"):
        Bounds([np.array([np.nan])], [np.array([0.0])], [np.array(["x"])], [np.zeros(1)], "x", "d", unit_box(1))


@pytest.mark.parametrize("seed", range(3))
def test_crown_on_unstable_neurons_only_is_sound_and_no_looser_where_it_matters(seed):
    """``unstable_only``: sound on samples; every neuron the full CROWN leaves unstable and every
    logit is bounded at least as tightly; a neuron the full CROWN proves stable stays so."""
    rng = np.random.default_rng(seed)
    sizes = [6, 30, 30, 30, 4]
    W = [rng.normal(size=(o, i)) / np.sqrt(i) * 1.5 for i, o in itertools.pairwise(sizes)]
    net = nm.Network(W, [rng.normal(size=o) * 0.5 for o in sizes[1:]])
    x0 = rng.random(6)
    dom = box(x0 - 0.1, x0 + 0.1)
    full, quick = crown_bounds(net, dom), crown_bounds(net, dom, unstable_only=True)
    P = net.preactivations(np.vstack([dom.sample(5000, rng), dom.vertices()]))
    for l, p in enumerate(P):
        assert np.all(p >= quick.lower[l]) and np.all(p <= quick.upper[l])
        tol = 1e-9 * (1 + np.abs(full.lower[l]) + np.abs(full.upper[l]))
        key = np.ones(p.shape[1], bool) if l == len(P) - 1 else (full.lower[l] < 0) & (full.upper[l] > 0)
        assert np.all(quick.lower[l][key] >= full.lower[l][key] - tol[key])
        assert np.all(quick.upper[l][key] <= full.upper[l][key] + tol[key])
        if l < len(P) - 1:
            assert np.all(quick.lower[l][full.lower[l] >= 0] >= 0)
            assert np.all(quick.upper[l][full.upper[l] <= 0] <= 0)
    assert quick.stats["unstable_only"] is True
    with pytest.raises(ValueError, match="unstable_only"):
        crown_bounds(net, dom, unstable_only="yes")


def test_back_substitution_skips_inactive_neurons_without_changing_a_bound(monkeypatch):
    """CROWN and α bounds with the columns of inactive neurons dropped from every product
    (forced) equal those computed without dropping any, to rounding."""
    from nnmiplib.bounds import cheap

    rng = np.random.default_rng(3)
    sizes = (8, 40, 40, 40, 5)
    W = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in itertools.pairwise(sizes)]
    b = [rng.normal(size=o) * 0.3 - 0.2 for o in sizes[1:]]
    net = nm.Network(W, b)
    dom = nm.domains.box(-np.ones(8) * 0.3, np.ones(8) * 0.3)
    out = {}
    for frac in (0.0, 2.0):
        monkeypatch.setattr(cheap, "LIVE_FRACTION", frac)
        monkeypatch.setattr(cheap, "LIVE_MIN_SIZE", 0)
        out[frac] = [nm.bounds.crown_bounds(net, dom), nm.bounds.compute_bounds(net, dom, method="alpha")]
    assert sum(int(np.sum(u <= 0)) for u in out[2.0][0].upper[:-1]) > 0  # some neurons are inactive
    for x, y in zip(out[0.0], out[2.0]):
        for l in range(len(x.lower)):
            np.testing.assert_allclose(x.lower[l], y.lower[l], rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(x.upper[l], y.upper[l], rtol=1e-9, atol=1e-9)


def test_abs_weights_are_kept_only_for_arrays_that_cannot_change():
    from nnmiplib.bounds.cheap import abs_weights

    net = nm.Network([np.array([[1.0, -2.0], [-3.0, 4.0]])], [np.zeros(2)])
    A1, n1 = abs_weights(net.weights[0])
    assert abs_weights(net.weights[0])[0] is A1 and n1 == 7.0  # a Network's array: kept
    W = np.array([[1.0, -2.0]])
    assert abs_weights(W)[1] == 3.0
    W[0, 1] = -5.0  # writable: recomputed
    assert abs_weights(W)[1] == 6.0
    base = np.array([[1.0, -1.0]])
    view = base[:]
    view.setflags(write=False)  # a read-only view of a writable array: recomputed too
    assert abs_weights(view)[1] == 2.0
    base[0, 0] = 10.0
    assert abs_weights(view)[1] == 11.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crown_best_intersects_both_slope_rules_layer_by_layer(seed):
    """``lower_slope="best"`` gives the bounds of a reference that pushes each rule back on its own
    and intersects them layer by layer (to rounding), each at least as tight as either rule alone."""
    from nnmiplib.bounds import cheap

    rng = np.random.default_rng(seed)
    sizes = [7, 25, 25, 25, 3]
    W = [rng.normal(size=(o, i)) / np.sqrt(i) * 1.5 for i, o in itertools.pairwise(sizes)]
    b = [rng.normal(size=o) * 0.5 for o in sizes[1:]]
    x0 = rng.random(7)
    lo, hi = x0 - 0.3, x0 + 0.3
    ilo, ihi = cheap.interval_arrays(W, b, lo, hi)
    best = cheap.crown_arrays(W, b, lo, hi, (ilo, ihi))
    lows, ups, relax = [ilo[0]], [ihi[0]], {"adaptive": [], "zero": []}
    for m in range(1, len(W)):
        for r, rel in relax.items():
            rel.append(cheap.relu_relaxation(lows[-1], ups[-1], r))
        low, up = ilo[m], ihi[m]
        for rel in relax.values():
            v = cheap.backsub_upper(np.vstack([W[m], -W[m]]), np.concatenate([b[m], -b[m]]), W[:m], b[:m],
                                    rel, lo, hi)
            low, up = np.maximum(low, -v[sizes[m + 1]:]), np.minimum(up, v[:sizes[m + 1]])
        lows.append(low), ups.append(up)
    singles = [cheap.crown_arrays(W, b, lo, hi, (ilo, ihi), lower_slope=r) for r in relax]
    assert any(((l < 0) & (u > 0)).sum() for l, u in zip(lows[1:-1], ups[1:-1]))  # some neuron is unstable
    for m in range(len(W)):
        np.testing.assert_allclose(best[0][m], lows[m], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(best[1][m], ups[m], rtol=1e-12, atol=1e-12)
        for s in singles:
            assert np.all(best[0][m] >= s[0][m] - 1e-12) and np.all(best[1][m] <= s[1][m] + 1e-12)
    assert any(np.any(best[1][m] < s[1][m] - 1e-6) for s in singles for m in range(2, len(W)))  # rules differ
