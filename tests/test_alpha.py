"""α-optimised linear bounds (nnmiplib.bounds.alpha): soundness, nesting, tightness, arguments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnmiplib as nm
from nnmiplib.bounds import alpha_bounds, compute_bounds, crown_bounds, interval_bounds
from nnmiplib.bounds.alpha import alpha_arrays
from nnmiplib.bounds.cheap import backsub_upper, crown_arrays, relu_relaxation
from nnmiplib.domains import box
from nnmiplib.mip.encode import encode
from nnmiplib.mip.solvers import get_backend


def random_net(sizes, seed, *, zero_frac=0.0, stable_frac=0.0, scale=1.0):
    """He-like random net; ``zero_frac`` of the weights zeroed; ``stable_frac`` of the hidden
    neurons made stable by a large bias (half active, half inactive)."""
    rng = np.random.default_rng(seed)
    W, b = [], []
    for i in range(len(sizes) - 1):
        w = rng.normal(size=(sizes[i + 1], sizes[i])) * scale * np.sqrt(2.0 / sizes[i])
        w[rng.random(w.shape) < zero_frac] = 0.0
        bb = rng.normal(size=sizes[i + 1]) * 0.3 * scale
        if i < len(sizes) - 2 and stable_frac:
            pick = rng.random(sizes[i + 1]) < stable_frac
            bb[pick] = np.where(rng.random(pick.sum()) < 0.5, 50.0, -50.0) * scale
        W.append(w)
        b.append(bb)
    return nm.Network(W, b, name=f"rand-{seed}")


def random_box(n, seed, degenerate=False):
    rng = np.random.default_rng(seed + 1000)
    lo = rng.uniform(-1, 0.5, n)
    hi = lo + rng.uniform(0.1, 1.5, n)
    if degenerate:
        hi[0] = lo[0]
    return box(lo, hi)


CASES = [  # (sizes, seed, zero_frac, stable_frac, scale, degenerate box)
    ((3, 8, 2), 0, 0.0, 0.0, 1.0, False),
    ((5, 16, 16, 4), 1, 0.0, 0.0, 1.0, False),
    ((4, 10, 10, 10, 10, 3), 2, 0.5, 0.0, 1.0, False),
    ((6, 12, 8, 12, 5), 3, 0.0, 0.3, 1.0, True),
    ((2, 6, 6, 6, 6, 6, 6, 6, 6, 2), 5, 0.0, 0.0, 1.0, False),
    ((8, 30, 30, 3), 6, 0.3, 0.3, 1e3, False),  # large magnitudes stress the rounding margins
]
IDS = [f"{'-'.join(map(str, c[0]))}-s{c[1]}" for c in CASES]


@pytest.fixture(scope="module", params=range(len(CASES)), ids=IDS)
def case(request):
    sizes, seed, zf, sf, sc, deg = CASES[request.param]
    net = random_net(sizes, seed, zero_frac=zf, stable_frac=sf, scale=sc)
    dom = random_box(sizes[0], seed, degenerate=deg)
    b = {"interval": interval_bounds(net, dom), "crown": crown_bounds(net, dom),
         "alpha": alpha_bounds(net, dom), "alpha-all": alpha_bounds(net, dom, skip_stable=False, iterations=30),
         "alpha-shared": alpha_bounds(net, dom, shared=True)}
    return net, dom, b


# ------------------------------------------------------------------ a known answer
def test_known_answer_where_no_crown_rule_is_optimal():
    """y = −ReLU(x) + ½·ReLU(x + 1) on x ∈ [−1, 2]: max y = ½ (at x = 0).

    With h ≥ αx the bound is max_x (½ − α)x + ½ = ½ + 2(½ − α) for α ≤ ½, α for α ≥ ½:
    CROWN's slopes give 1.5 (α = 0) and 1 (α = 1, adaptive), the optimum α = ½ gives ½.
    """
    net = nm.Network([np.array([[1.0], [1.0]]), np.array([[-1.0, 0.5]])], [np.array([0.0, 1.0]), np.array([0.0])])
    dom = box([-1.0], [2.0])
    c, a = crown_bounds(net, dom), alpha_bounds(net, dom, iterations=100)
    assert c.upper[1][0] == pytest.approx(1.0, abs=1e-8)
    assert 0.5 <= a.upper[1][0] <= 0.5 + 1e-3
    assert a.source[1][0].endswith("/alpha")
    assert a.lower[1][0] == pytest.approx(-0.5, abs=1e-8) and a.lower[1][0] <= -0.5  # min at x = 2, exact


# ------------------------------------------------------------------ soundness
def test_samples_and_vertices_never_leave_alpha(case):
    net, dom, b = case
    rng = np.random.default_rng(7)
    pre = net.preactivations(np.vstack([dom.sample(20_000, rng), dom.vertices()]))
    for name in ("alpha", "alpha-all", "alpha-shared"):
        for l, a in enumerate(pre):
            over = max(float(np.max(a - b[name].upper[l])), float(np.max(b[name].lower[l] - a)))
            assert over <= 0.0, f"{name} layer {l}: a sample leaves the bound by {over}"


def test_nesting_interval_crown_alpha(case):
    net, _, b = case
    assert b["interval"].contains(b["crown"])
    for name in ("alpha", "alpha-all", "alpha-shared"):
        assert b["crown"].contains(b[name]), name  # never looser than CROWN, not even by rounding
    assert b["alpha"].method == "alpha" and b["alpha"].net_digest == net.digest()


def test_alpha_strictly_tighter_than_crown_somewhere(case):
    net, _, b = case
    gains = [float(np.max(b["crown"].width(l) - b["alpha-all"].width(l))) for l in range(1, net.depth + 1)]
    assert max(gains) > 1e-6 * (1 + max(float(b["crown"].width(l).max()) for l in range(net.depth + 1)))
    srcs = np.concatenate([s for s in b["alpha-all"].source])
    assert any("alpha" in s for s in srcs)


def test_per_neuron_alpha_beats_shared_on_average(case):
    """The measured choice: one α per (row, neuron) is at least as tight as one per layer."""
    net, _, b = case
    tot = lambda x: sum(float(x.width(l).sum()) for l in range(1, net.depth + 1))
    assert tot(b["alpha"]) <= tot(b["alpha-shared"]) * (1 + 1e-9)


# ------------------------------------------------------------------ exact values on tiny nets
TINY = [((2, 5, 4, 2), 11, 0.0, 0.0), ((2, 6, 5, 3), 13, 0.0, 0.3), ((2, 8, 8, 1), 14, 0.2, 0.0)]


@pytest.fixture(scope="module", params=range(len(TINY)), ids=[str(c[0]) for c in TINY])
def tiny(request):
    sizes, seed, zf, sf = TINY[request.param]
    net = random_net(sizes, seed, zero_frac=zf, stable_frac=sf)
    dom = random_box(2, seed)
    g = np.linspace(0.0, 1.0, 401)
    X = dom.lo + (dom.hi - dom.lo) * np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)  # 160 801 points incl. corners
    return net, dom, net.preactivations(X), alpha_bounds(net, dom, iterations=50)


def test_fine_grid_inside_alpha(tiny):
    _, _, pre, a = tiny
    for l, x in enumerate(pre):
        assert np.all(x <= a.upper[l]) and np.all(x >= a.lower[l]), l


def test_alpha_contains_exact_milp_bounds(tiny):
    """The MILP of the thesis's model (Big-M constants from alpha itself) solved by HiGHS gives
    each logit's exact range; alpha contains it, and the grid attains it (the check is not vacuous)."""
    net, dom, pre, a = tiny
    L = net.depth
    model = encode(net, dom, a)
    for j in range(net.n_outputs):
        for sense in ("max", "min"):
            c = np.zeros(model.n_vars)
            c[model.nets[0].a[L][j]] = 1.0
            model.set_objective(c, sense)
            # presolve off: on the all-stable net (2, 6, 5, 3) HiGHS's presolve declares this feasible
            # model (a forward pass satisfies every row to 3e-15) infeasible when its bounds are tight
            s = get_backend("highs")(model, mip_gap=1e-9, options={"presolve": "off"}).solve()
            assert s.ok, s.message
            v = s.objective
            grid = pre[L][:, j].max() if sense == "max" else pre[L][:, j].min()
            if sense == "max":
                assert a.upper[L][j] >= v - 1e-7 and grid <= v + 1e-6
            else:
                assert a.lower[L][j] <= v + 1e-7 and grid >= v - 1e-6
            assert abs(grid - v) <= 0.02 * (a.upper[L][j] - a.lower[L][j]) + 1e-6


def test_alpha_contains_milp_bounder_and_lp(tiny):
    net, dom, _, a = tiny
    kw = {"time_limit": 60, "n_jobs": 1, "progress": False, "skip_stable": False}
    milp = compute_bounds(net, dom, method="milp", **kw)
    lp = compute_bounds(net, dom, method="lp", **kw)
    assert a.contains(milp, tol=1e-7)
    assert a.contains(lp, tol=1e-6)  # for fixed intermediate bounds the best α is the LP's dual


@pytest.mark.parametrize("idx", [1, 2, 4])
def test_optimised_alpha_reaches_the_lp(idx):
    """With enough steps alpha converges to the Bounder's LP (strong duality): within 1 %."""
    sizes, seed, zf, sf, sc, deg = CASES[idx]
    net = random_net(sizes, seed, zero_frac=zf, stable_frac=sf, scale=sc)
    dom = random_box(sizes[0], seed, degenerate=deg)
    lp = compute_bounds(net, dom, method="lp", n_jobs=1, progress=False)
    a, c = alpha_bounds(net, dom, iterations=200, lr=0.1), crown_bounds(net, dom)
    L = net.depth
    assert a.contains(lp, tol=1e-6)
    assert a.width(L).mean() <= lp.width(L).mean() * 1.01 + 1e-9
    assert a.width(L).mean() < c.width(L).mean()


# ------------------------------------------------------------------ the float64 evaluation
def test_backsub_upper_with_per_row_slopes_matches_crown_rules():
    """backsub_upper with a slope matrix whose rows repeat one rule equals that rule's vector form."""
    net = random_net((4, 9, 7, 3), 21)
    dom = random_box(4, 21)
    lo, hi = crown_arrays(net.weights, net.biases, dom.lo, dom.hi)
    W, b = net.weights[2], net.biases[2]
    Lam, c = np.vstack([W, -W]), np.concatenate([b, -b])
    for rule in ("adaptive", "zero"):
        rel = [relu_relaxation(lo[k], hi[k], rule) for k in range(2)]
        relm = [(su, tu, np.tile(sl, (Lam.shape[0], 1))) for su, tu, sl in rel]
        v1 = backsub_upper(Lam, c, net.weights[:2], net.biases[:2], rel, dom.lo, dom.hi)
        v2 = backsub_upper(Lam, c, net.weights[:2], net.biases[:2], relm, dom.lo, dom.hi)
        np.testing.assert_array_equal(v1, v2)


def test_chunking_and_determinism():
    net = random_net((5, 16, 16, 4), 1)
    dom = random_box(5, 1)
    a1 = alpha_arrays(net.weights, net.biases, dom.lo, dom.hi, skip_stable=False)
    a2 = alpha_arrays(net.weights, net.biases, dom.lo, dom.hi, skip_stable=False)
    a3 = alpha_arrays(net.weights, net.biases, dom.lo, dom.hi, skip_stable=False, chunk_rows=6)
    for x, y, z in zip(a1[0] + a1[1], a2[0] + a2[1], a3[0] + a3[1]):
        np.testing.assert_array_equal(x, y)  # deterministic
        np.testing.assert_allclose(x, z, rtol=1e-9, atol=1e-9)  # rows are independent: chunks change nothing


def test_intermediate_crown_and_skip_stable():
    net = random_net((6, 12, 8, 12, 5), 3, stable_frac=0.3)
    dom = random_box(6, 3)
    c = crown_bounds(net, dom)
    a = alpha_bounds(net, dom, intermediate="crown")
    for l in range(net.depth):  # hidden layers keep CROWN's bounds exactly
        np.testing.assert_array_equal(a.lower[l], c.lower[l])
        np.testing.assert_array_equal(a.upper[l], c.upper[l])
    assert c.contains(a) and a.width(net.depth).sum() <= c.width(net.depth).sum()
    skip = alpha_bounds(net, dom)
    for l in range(net.depth):  # neurons CROWN proves stable keep CROWN's bounds
        stable = ~c.unstable(l)
        assert stable.any()
        np.testing.assert_array_equal(skip.lower[l][stable], c.lower[l][stable])
    assert compute_bounds(net, dom, method="alpha").contains(skip) and skip.contains(
        compute_bounds(net, dom, method="alpha"))


def test_zero_iterations_is_crown_rules_with_tighter_intermediates():
    net = random_net((4, 10, 10, 10, 10, 3), 2, zero_frac=0.5)
    dom = random_box(4, 2)
    c = crown_bounds(net, dom)
    a0 = alpha_bounds(net, dom, iterations=0)
    a = alpha_bounds(net, dom)
    assert c.contains(a0) and c.contains(a)
    np.testing.assert_array_equal(a0.upper[1], c.upper[1])  # layer 1: same intermediates, same rules


# ------------------------------------------------------------------ arguments
def test_bad_arguments_raise_value_error():
    net = random_net((3, 8, 2), 0)
    dom = random_box(3, 0)
    for kw in ({"iterations": -1}, {"iterations": 2.5}, {"lr": 0.0}, {"lr": float("nan")}, {"lr": -1.0},
               {"intermediate": "lp"}, {"chunk_rows": 1}):
        with pytest.raises(ValueError):
            alpha_bounds(net, dom, **kw)
    with pytest.raises(ValueError, match="Network"):
        alpha_bounds([np.eye(3)], dom)
    with pytest.raises(ValueError):
        alpha_bounds(net, random_box(4, 0))  # wrong dimension
    with pytest.raises(ValueError, match="domain"):
        alpha_bounds(net, "unit")
    with pytest.raises(ValueError):
        compute_bounds(net, dom, method="alpha", lr=0)
    assert alpha_bounds(net, (dom.lo, dom.hi)).contains(alpha_bounds(net, dom))


def test_cli_offers_alpha():
    from nnmiplib.cli import build_parser

    args = build_parser().parse_args(["bounds", "net.onnx", "--method", "alpha"])
    assert args.method == "alpha"
    assert "alpha" in nm.bounds.METHODS


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_in=st.integers(1, 5), hidden=st.lists(st.integers(1, 8), min_size=1, max_size=4),
       seed=st.integers(0, 2**31 - 1), zero=st.sampled_from([0.0, 0.5]),
       stable=st.sampled_from([0.0, 0.4]), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_hypothesis_random_nets_sound_and_nested(n_in, hidden, seed, zero, stable, scale):
    net = random_net((n_in, *hidden, 2), seed, zero_frac=zero, stable_frac=stable, scale=scale)
    dom = random_box(n_in, seed % 1000)
    pre = net.preactivations(np.vstack([dom.sample(3000, np.random.default_rng(seed)), dom.vertices()]))
    c, a = crown_bounds(net, dom), alpha_bounds(net, dom, iterations=5, skip_stable=bool(seed % 2))
    assert c.contains(a)
    for l, x in enumerate(pre):
        assert np.all(x <= a.upper[l]) and np.all(x >= a.lower[l]), l
