"""The Big-M encoding (thesis 1.1–1.8): the model reproduces the forward pass, on every backend."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import nnmiplib as nm
from nnmiplib.bounds import cheap_bounds, interval_bounds
from nnmiplib.mip.encode import MipModel, encode
from nnmiplib.mip.solvers import available, get_backend

BACKENDS = available()


def random_net(seed: int, sizes=(4, 6, 5, 3)) -> nm.Network:
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(sizes[i + 1], sizes[i])) for i in range(len(sizes) - 1)]
    bs = [rng.normal(size=sizes[i + 1]) * 0.5 for i in range(len(sizes) - 1)]
    return nm.Network(ws, bs, name=f"rand{seed}")


def test_highs_always_available():
    assert BACKENDS[0] == "highs"


@pytest.mark.parametrize("solver", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_input_reproduces_forward_pass(solver, seed):
    """Fix x; maximising (and minimising) any logit returns the network's float64 logit."""
    net = random_net(seed)
    dom = nm.domains.box(-np.ones(4), np.ones(4))
    b = interval_bounds(net, dom)
    model = encode(net, dom, b)
    assert model.n_vars < 200  # tiny: also fine for the size-limited Gurobi licence
    be = get_backend(solver)(model)
    rng = np.random.default_rng(100 + seed)
    for x0 in dom.sample(3, rng):
        be.set_col_bounds(model.x, x0, x0)
        want = net.preactivations(x0)
        for k in range(net.n_outputs):
            for sense in ("max", "min"):
                c = np.zeros(model.n_vars)
                c[model.nets[0].a[-1][k]] = 1.0
                be.set_objective(c, sense)
                sol = be.solve()
                assert sol.status is nm.mip.solvers.Status.OPTIMAL
                assert sol.objective == pytest.approx(want[-1][k], abs=1e-6)
                for l, cols in enumerate(model.nets[0].a):
                    np.testing.assert_allclose(sol.x[cols], want[l], atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_point_is_feasible_and_matches_forward(seed):
    net = random_net(seed, sizes=(3, 7, 7, 2))
    dom = nm.domains.unit_box(3)
    b = cheap_bounds(net, dom)
    model = encode(net, dom, b)
    for x in dom.sample(50, seed):
        v = model.point(x)
        Av = model.A @ v
        assert np.all(Av >= model.row_lo - 1e-9) and np.all(Av <= model.row_hi + 1e-9)
        assert np.all(v >= model.col_lo - 1e-9) and np.all(v <= model.col_hi + 1e-9)
        z = v[model.integrality]
        assert np.all((z == 0) | (z == 1))
        np.testing.assert_allclose(v[model.nets[0].a[-1]], net.forward(x), atol=1e-12)


def test_stable_neurons_get_no_binary():
    net = random_net(3, sizes=(3, 8, 8, 2))
    dom = nm.domains.unit_box(3)
    b = interval_bounds(net, dom)
    model = encode(net, dom, b)
    n_unstable = sum(int(b.unstable(l).sum()) for l in range(net.depth))
    n_stable = sum(int((~b.unstable(l)).sum()) for l in range(net.depth))
    assert n_stable > 0 and n_unstable > 0  # the fixture exercises both cases
    assert model.n_integer == n_unstable
    nv = model.nets[0]
    for l in range(net.depth):
        act, ina = b.stable_active(l), b.stable_inactive(l)
        assert np.all(nv.z[l][act | ina] == -1) and np.all(nv.hbar[l][act | ina] == -1)
        assert np.all(nv.h[l][act] == nv.a[l][act])  # h = a
        assert np.all(model.col_hi[nv.h[l][ina]] == 0) and np.all(model.col_lo[nv.h[l][ina]] == 0)
        # Big-M column bounds H = max(0, upper), H̄ = max(0, -lower) on unstable neurons (1.3–1.4)
        H, Hbar = b.big_m(l)
        u = b.unstable(l)
        np.testing.assert_array_equal(model.col_hi[nv.h[l][u]], H[u])
        np.testing.assert_array_equal(model.col_hi[nv.hbar[l][u]], Hbar[u])


def test_relax_and_stop_layer():
    net = random_net(4, sizes=(3, 6, 6, 6, 2))
    dom = nm.domains.unit_box(3)
    b = interval_bounds(net, dom)
    full = encode(net, dom, b)
    lp = encode(net, dom, b, relax=True)
    assert lp.relax and lp.n_vars == full.n_vars
    part = encode(net, dom, b, stop_layer=2)
    assert len(part.nets[0].a) == 3 and len(part.nets[0].h) == 2
    assert part.n_vars < full.n_vars
    x = dom.sample(1, 0)[0]
    v = part.point(x)
    np.testing.assert_allclose(v[part.nets[0].a[2]], net.preactivations(x)[2], atol=1e-12)


@pytest.mark.parametrize("solver", BACKENDS)
def test_two_networks_share_the_input(solver):
    n1, n2 = random_net(5, sizes=(3, 5, 2)), random_net(6, sizes=(3, 4, 4, 2))
    dom = nm.domains.unit_box(3)
    model = encode([n1, n2], dom, [interval_bounds(n1, dom), interval_bounds(n2, dom)])
    assert len(model.nets) == 2 and model.x.size == 3
    # max logit0(net1) - logit0(net2) at a fixed input equals the forward difference
    x0 = np.array([0.2, 0.7, 0.4])
    be = get_backend(solver)(model)
    be.set_col_bounds(model.x, x0, x0)
    c = np.zeros(model.n_vars)
    c[model.nets[0].a[-1][0]], c[model.nets[1].a[-1][0]] = 1.0, -1.0
    be.set_objective(c, "max", offset=0.5)
    sol = be.solve()
    assert sol.objective == pytest.approx(n1.forward(x0)[0] - n2.forward(x0)[0] + 0.5, abs=1e-6)


def test_model_building_api():
    m = MipModel()
    x = m.add_vars(2, 0.0, 4.0)
    y = m.add_vars(1, 0.0, 3.0, integer=True)
    m.add_rows(sp.csr_matrix(np.array([[1.0, 1.0, 1.0]])), -np.inf, 5.5)
    m.add_rows(np.array([[1.0, -1.0]]), 0.0, 0.0)  # block narrower than n_vars is padded
    m.set_objective({0: 1.0, 1: 1.0, 2: 2.0}, "max")
    sol = nm.mip.solvers.solve(m)
    assert sol.objective == pytest.approx(8.5)  # y = 3, x0 = x1 = 1.25
    assert m.n_integer == 1 and y[0] == 2 and list(x) == [0, 1]
    with pytest.raises(ValueError, match="objective has"):
        m.set_objective(np.ones(2))
    with pytest.raises(ValueError, match="sense"):
        m.set_objective(np.ones(3), "maximise")


def test_bad_inputs_raise_clear_errors():
    net = random_net(0)
    dom = nm.domains.unit_box(4)
    b = interval_bounds(net, dom)
    with pytest.raises(ValueError, match="coordinates"):
        encode(net, nm.domains.unit_box(5), b)
    other = random_net(1, sizes=(4, 3, 3))
    with pytest.raises(ValueError, match="another network"):
        encode(other, dom, b)
    bad = interval_bounds(net, dom)
    bad.lower[0] = bad.lower[0].copy()
    bad.lower[0][1] = bad.upper[0][1] + 1.0
    with pytest.raises(ValueError, match="empty at neuron 1"):
        encode(net, dom, bad)
    with pytest.raises(ValueError, match="stop_layer"):
        encode(net, dom, b, stop_layer=7)
    with pytest.raises(ValueError, match="one Bounds per network"):
        encode([net, net], dom, [b])


def test_import_needs_no_optional_solver():
    code = (
        "import sys, nnmiplib, nnmiplib.mip.encode, nnmiplib.mip.solvers, nnmiplib.bounds.bounder\n"
        "from nnmiplib.mip.solvers import get_backend; get_backend('highs')\n"
        "bad = [m for m in ('gurobipy', 'pyscipopt', 'torch', 'onnx', 'dask') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_triangle_model_contains_the_network_graph():
    """encode_triangle: every forward pass is a feasible point, and its objective is a[m]."""
    from nnmiplib.mip.encode import encode_triangle

    net = random_net(8, sizes=(3, 8, 8, 8, 2))
    dom = nm.domains.unit_box(3)
    b = cheap_bounds(net, dom)
    model, prev = encode_triangle(net, dom, b, stop_layer=3)
    assert model.n_integer == 0 and model.relax
    W = net.weights[3][:, model.triangle_keep]
    for x in dom.sample(50, 2):
        v = model.point(x)
        Av = model.A @ v
        assert np.all(Av >= model.row_lo - 1e-9) and np.all(Av <= model.row_hi + 1e-9)
        assert np.all(v >= model.col_lo - 1e-9) and np.all(v <= model.col_hi + 1e-9)
        np.testing.assert_allclose(W @ v[prev] + net.biases[3], net.preactivations(x)[3], atol=1e-10)


@pytest.mark.parametrize("relax", [False, True])
def test_inputs_fixed_by_the_box_fold_into_the_rows(relax):
    """Pinned inputs (lo = hi, e.g. the neighbours box's zero pixels) leave the rows; the
    optimum equals that of the network with those inputs folded into its first bias."""
    from nnmiplib.mip.encode import encode_triangle

    rng = np.random.default_rng(4)
    net = nm.Network([rng.normal(size=(7, 6)), rng.normal(size=(5, 7)), rng.normal(size=(3, 5))],
                     [rng.normal(size=7), rng.normal(size=5), rng.normal(size=3)])
    lo, hi = np.zeros(6), np.ones(6)
    pinned = np.array([True, False, True, False, False, True])
    lo[pinned] = hi[pinned] = [0.0, 0.7, 0.25]
    dom = nm.domains.box(lo, hi)
    W0 = net.weights[0]
    small = nm.Network([W0[:, ~pinned], *net.weights[1:]], [net.biases[0] + W0[:, pinned] @ lo[pinned], *net.biases[1:]])
    sdom = nm.domains.box(lo[~pinned], hi[~pinned])
    b, sb = cheap_bounds(net, dom), cheap_bounds(small, sdom)
    model, smodel = encode(net, dom, b, relax=relax), encode(small, sdom, sb, relax=relax)
    first = model.A[: net.layer_sizes[1]].tocsc()
    assert first[:, model.x[pinned]].nnz == 0  # pinned columns are in no row
    x = dom.sample(200, 1)
    for xi in x:  # every input of the box satisfies the rows
        v = model.point(xi)
        r = model.A @ v
        assert np.all(r >= model.row_lo - 1e-9) and np.all(r <= model.row_hi + 1e-9)
    B = get_backend("highs")
    for k in range(3):
        for sense in ("max", "min"):
            model.set_objective({int(model.nets[0].a[-1][k]): 1.0}, sense)
            smodel.set_objective({int(smodel.nets[0].a[-1][k]): 1.0}, sense)
            v1, v2 = B(model, threads=1).solve().objective, B(smodel, threads=1).solve().objective
            assert v1 == pytest.approx(v2, abs=1e-7)
    # the triangle LP of layer 2 sees the same fold
    tm, prev = encode_triangle(net, dom, b, stop_layer=2)
    stm, sprev = encode_triangle(small, sdom, sb, stop_layer=2)
    c = np.zeros(tm.n_vars)
    c[prev] = net.weights[2][0, tm.triangle_keep]
    sc = np.zeros(stm.n_vars)
    sc[sprev] = small.weights[2][0, stm.triangle_keep]
    tm.set_objective(c, "max")
    stm.set_objective(sc, "max")
    assert B(tm, threads=1).solve().objective == pytest.approx(B(stm, threads=1).solve().objective, abs=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_leaving_out_inactive_rows_keeps_every_logit_optimum(seed):
    """``inactive_rows=False`` drops the row of each stably inactive hidden neuron (and no other);
    every logit's maximum and minimum over the box are those of the full model, and with the
    input fixed the logits and every other neuron's pre-activation are the forward pass."""
    net = random_net(seed, sizes=(4, 12, 10, 3))
    nm_b = nm.Network([w for w in net.weights], [b - 0.8 * (l < 2) for l, b in enumerate(net.biases)])
    dom = nm.domains.box(-np.ones(4) * 0.5, np.ones(4) * 0.5)
    b = cheap_bounds(nm_b, dom)
    full, lean = encode(nm_b, dom, b), encode(nm_b, dom, b, inactive_rows=False)
    dead = sum(int(np.sum((b.upper[l] <= 0) & (b.lower[l] < 0))) for l in range(nm_b.depth))
    assert dead > 0 and lean.n_rows == full.n_rows - dead and lean.n_vars == full.n_vars
    for sense in ("max", "min"):
        for k in range(nm_b.n_outputs):
            vals = []
            for m in (full, lean):
                c = np.zeros(m.n_vars)
                c[m.nets[0].a[-1][k]] = 1.0
                be = get_backend("highs")(m, mip_gap=1e-9)
                be.set_objective(c, sense)
                vals.append(be.solve().objective)
            assert vals[1] == pytest.approx(vals[0], abs=1e-7)
    be = get_backend("highs")(lean)
    x0 = dom.sample(1, np.random.default_rng(seed))[0]
    be.set_col_bounds(lean.x, x0, x0)
    c = np.zeros(lean.n_vars)
    c[lean.nets[0].a[-1][0]] = 1.0
    be.set_objective(c, "max")
    sol = be.solve()
    want = nm_b.preactivations(x0)
    for l, cols in enumerate(lean.nets[0].a):
        live = np.ones(cols.size, bool) if l == nm_b.depth else ~((b.upper[l] <= 0) & (b.lower[l] < 0))
        np.testing.assert_allclose(sol.x[cols][live], want[l][live], atol=1e-6)
