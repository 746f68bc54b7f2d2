"""Algorithms 1/3 (Bounder): soundness by sampling, exactness by enumerating activation patterns."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from scipy.optimize import linprog

import nnmiplib as nm
from nnmiplib.bounds import cheap_bounds, compute_bounds, interval_bounds
from nnmiplib.bounds.bounder import solver_bounds, time_split
from nnmiplib.mip.solvers import available


def random_net(seed: int, sizes) -> nm.Network:
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(sizes[i + 1], sizes[i])) for i in range(len(sizes) - 1)]
    bs = [rng.normal(size=sizes[i + 1]) * 0.5 for i in range(len(sizes) - 1)]
    return nm.Network(ws, bs, name=f"rand{seed}")


def exact_extremes(net: nm.Network, dom: nm.Box):
    """Exact min/max of every pre-activation over the box, by enumerating activation patterns.

    For a pattern of the hidden layers before layer m the network is affine on the
    polyhedron {x ∈ box : the pattern's sign constraints}; one LP per pattern and neuron.
    """
    lows, highs = [], []
    bnds = list(zip(dom.lo, dom.hi))
    for m in range(net.depth + 1):
        n_before = sum(net.hidden_sizes[:m])
        lo = np.full(net.layer_sizes[m + 1], np.inf)
        hi = np.full(net.layer_sizes[m + 1], -np.inf)
        for bits in itertools.product((0, 1), repeat=n_before):
            G, g = np.eye(dom.n), np.zeros(dom.n)  # h = G x + g
            A_ub, b_ub, k = [], [], 0
            for l in range(m):
                P, p = net.weights[l] @ G, net.weights[l] @ g + net.biases[l]  # a = P x + p
                on = np.array(bits[k:k + P.shape[0]], dtype=bool)
                k += P.shape[0]
                A_ub.append(np.where(on[:, None], -P, P))  # on: a ≥ 0 ; off: a ≤ 0
                b_ub.append(np.where(on, p, -p))
                G, g = P * on[:, None], p * on
            P, p = net.weights[m] @ G, net.weights[m] @ g + net.biases[m]
            Aub = np.vstack(A_ub) if A_ub else None
            bub = np.concatenate(b_ub) if b_ub else None
            feas = linprog(np.zeros(dom.n), A_ub=Aub, b_ub=bub, bounds=bnds, method="highs")
            if feas.status != 0:
                continue
            for j in range(P.shape[0]):
                for sgn in (1.0, -1.0):
                    r = linprog(-sgn * P[j], A_ub=Aub, b_ub=bub, bounds=bnds, method="highs",
                                options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
                    assert r.status == 0
                    v = sgn * (-r.fun) + p[j]
                    if sgn > 0:
                        hi[j] = max(hi[j], v)
                    else:
                        lo[j] = min(lo[j], v)
        lows.append(lo)
        highs.append(hi)
    return lows, highs


def assert_contains(b, net, x, tol=1e-6):
    for l, a in enumerate(net.preactivations(x)):
        assert np.all(a >= b.lower[l][None] - tol), f"layer {l}: a sample below the lower bound"
        assert np.all(a <= b.upper[l][None] + tol), f"layer {l}: a sample above the upper bound"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_milp_bounds_equal_exact_extremes(seed):
    net = random_net(seed, (2, 3, 3, 2))
    dom = nm.domains.box([-1.0, 0.0], [1.0, 2.0])
    init = cheap_bounds(net, dom)
    mi = solver_bounds(net, dom, relax=False, initial=init, progress=False)
    lp = solver_bounds(net, dom, relax=True, initial=init, progress=False)
    lo, hi = exact_extremes(net, dom)
    for l in range(net.depth + 1):
        tol = 1e-6 * np.maximum(1.0, np.abs(hi[l]))
        # exact where the MILP ran (unstable neurons and logits); elsewhere at least sound
        # layer 0 is exact by interval arithmetic; deeper, the MILP ran on unstable neurons and logits
        ran_hi = np.ones(hi[l].size, bool) if l in (0, net.depth) else init.unstable(l)
        assert np.all(mi.upper[l] >= hi[l] - 1e-9) and np.all(mi.lower[l] <= lo[l] + 1e-9)
        np.testing.assert_array_less(np.abs(mi.upper[l] - hi[l])[ran_hi], tol[ran_hi])
        np.testing.assert_array_less(np.abs(mi.lower[l] - lo[l])[ran_hi], 1e-6 * np.maximum(1, np.abs(lo[l]))[ran_hi])
        # nesting: initial ⊇ LP ⊇ MILP ⊇ exact
        assert np.all(init.lower[l] <= lp.lower[l]) and np.all(lp.upper[l] <= init.upper[l])
        # (up to the MILP's outward safety margin of 1e-7·(1 + |v|))
        assert np.all(lp.lower[l] <= mi.lower[l] + 1e-6) and np.all(mi.upper[l] <= lp.upper[l] + 1e-6)
    assert mi.method == "milp" and lp.method == "lp"
    assert sum(int((np.char.find(mi.source[l].astype(str), "milp") >= 0).sum()) for l in range(1, 3)) > 0


@pytest.mark.parametrize("relax", [True, False])
def test_bounds_contain_samples_and_vertices(relax):
    net = random_net(7, (4, 8, 8, 3))
    dom = nm.domains.box(np.zeros(4), [1.0, 2.0, 0.5, 1.0])
    init = cheap_bounds(net, dom)
    b = compute_bounds(net, dom, "lp" if relax else "milp", progress=False)
    x = np.vstack([dom.sample(100_000, 0), dom.vertices()])
    assert_contains(b, net, x)
    for l in range(net.depth + 1):
        assert np.all(b.lower[l] >= init.lower[l]) and np.all(b.upper[l] <= init.upper[l])
        assert b.time[l].shape == b.lower[l].shape
    assert b.width(net.depth - 1).mean() < init.width(net.depth - 1).mean()  # it did tighten
    assert sum(c["unstable"] for c in b.stable_counts()) <= sum(c["unstable"] for c in init.stable_counts())


@pytest.mark.parametrize(("relax", "n_jobs", "seed", "sizes", "atol"),
                         [(True, 2, 3, (5, 12, 12, 4), 1e-7), (False, 3, 5, (4, 10, 10, 3), 1e-6)])
def test_parallel_equals_serial_and_every_solve_runs_once(relax, n_jobs, seed, sizes, atol):
    net = random_net(seed, sizes)
    dom = nm.domains.unit_box(sizes[0])
    init = cheap_bounds(net, dom)
    one = solver_bounds(net, dom, relax=relax, initial=init, n_jobs=1, progress=False)
    many = solver_bounds(net, dom, relax=relax, initial=init, n_jobs=n_jobs, progress=False)
    for l in range(net.depth + 1):
        np.testing.assert_allclose(many.lower[l], one.lower[l], rtol=0, atol=atol)
        np.testing.assert_allclose(many.upper[l], one.upper[l], rtol=0, atol=atol)
    assert many.stats["n_jobs"] == n_jobs
    for s1, sm in zip(one.stats["layers"], many.stats["layers"]):
        assert s1["solves"] == sm["solves"]


@pytest.mark.parametrize("n_seg", [1, 2, 3, 5])
def test_work_stealing_takes_every_solve_once_in_contiguous_runs(n_seg):
    import multiprocessing as mp

    from nnmiplib.bounds.bounder import _take

    n = 103
    state = mp.get_context("spawn").Array("q", 2 * n_seg + 1)
    cuts = np.linspace(0, n, n_seg + 1).round().astype(int)
    for s in range(n_seg):
        state[2 * s], state[2 * s + 1] = int(cuts[s]), int(cuts[s + 1])
    rng = np.random.default_rng(n_seg)
    taken = {s: [] for s in range(n_seg)}
    active = list(range(n_seg))
    speed = rng.uniform(0.2, 1.0, n_seg)  # uneven workers: the fast ones steal
    while active:
        s = active[int(rng.choice(len(active), p=speed[active] / speed[active].sum()))]
        i = _take(state, s, n_seg)
        if i is None:
            active.remove(s)
        else:
            taken[s].append(i)
    allt = sorted(i for v in taken.values() for i in v)
    assert allt == list(range(n))  # each solve exactly once
    for s, v in taken.items():
        runs = 1 + sum(1 for a, b in itertools.pairwise(v) if b != a + 1)
        assert runs <= 1 + 2 * int(np.log2(n) + 1), (s, runs)  # a few contiguous runs, not scattered solves
    if n_seg > 1:
        assert max(len(v) for v in taken.values()) > n / n_seg + 1  # the fastest stole work


def test_time_limit_is_a_deadline_and_stays_sound():
    net = random_net(11, (6, 30, 30, 30, 4))
    dom = nm.domains.unit_box(6)
    init = cheap_bounds(net, dom)
    t = time.perf_counter()
    b = solver_bounds(net, dom, relax=False, initial=init, time_limit=1.5, progress=False)
    wall = time.perf_counter() - t
    assert wall < 1.5 + 2.0, wall  # deadline, plus model building and one solve's overshoot
    srcs = set(np.concatenate([s.astype(str) for s in b.source]))
    assert any(s.startswith("fallback-") or "milp-dual" in s for src in srcs for s in src.split("/")), srcs
    assert_contains(b, net, dom.sample(20_000, 1))
    for l in range(net.depth + 1):
        assert np.all(b.lower[l] >= init.lower[l]) and np.all(b.upper[l] <= init.upper[l])


def test_per_neuron_limit_and_skip_stable():
    net = random_net(12, (4, 16, 16, 3))
    b1 = net.biases[1].copy()
    b1[:3], b1[3:5] = -100.0, 100.0  # stably inactive / active in layer 1
    net = net.with_parameters(biases=[net.biases[0], b1, net.biases[2]])
    dom = nm.domains.unit_box(4)
    init = interval_bounds(net, dom)
    b = solver_bounds(net, dom, relax=True, initial=init, per_neuron_time_limit=5.0, progress=False)
    stable1 = ~init.unstable(1)
    assert stable1.any()
    np.testing.assert_array_equal(b.source[1][stable1], init.source[1][stable1])  # skipped: initial kept
    assert np.all(b.time[1][stable1] == 0)
    assert b.stats["layers"][0]["t_solve"] == 5.0


def test_time_split_formula():
    solves, n_c, r, T = [40, 30, 20, 10], 3, 2.0, 100.0
    t = []
    left = T
    for i in range(len(solves)):
        tm = time_split(left, solves[i:], n_c, r, i + 1)
        t.append(tm)
        left -= np.ceil(solves[i] / n_c) * tm
    assert sum(np.ceil(k / n_c) * tm for k, tm in zip(solves, t)) == pytest.approx(T)
    assert all(t[i + 1] == pytest.approx(r * t[i]) for i in range(3))  # deeper layers get r× more


@pytest.mark.parametrize("solver", [s for s in available() if s != "highs"])
def test_other_backends_give_the_same_lp_bounds(solver):
    net = random_net(5, (3, 6, 6, 2))
    dom = nm.domains.unit_box(3)
    init = cheap_bounds(net, dom)
    ref = solver_bounds(net, dom, relax=True, initial=init, progress=False)
    b = solver_bounds(net, dom, relax=True, initial=init, solver=solver, progress=False)
    for l in range(net.depth + 1):
        np.testing.assert_allclose(b.upper[l], ref.upper[l], atol=1e-5)
        np.testing.assert_allclose(b.lower[l], ref.lower[l], atol=1e-5)


def test_bad_arguments():
    net = random_net(0, (3, 4, 2))
    dom = nm.domains.unit_box(3)
    init = cheap_bounds(net, dom)
    with pytest.raises(ValueError, match="another network"):
        solver_bounds(random_net(1, (3, 4, 2)), dom, relax=True, initial=init)
    with pytest.raises(ValueError, match="another input domain"):
        solver_bounds(net, nm.domains.box(np.zeros(3), np.full(3, 2.0)), relax=True, initial=init)
    with pytest.raises(ValueError, match="time_limit"):
        solver_bounds(net, dom, relax=True, initial=init, time_limit=0)


def test_triangle_lp_equals_bigm_lp():
    """The projected LP (default) and the thesis's Big-M relaxation give the same bounds."""
    net = random_net(8, (4, 9, 9, 7, 3))
    dom = nm.domains.box(-np.ones(4), np.ones(4))
    init = cheap_bounds(net, dom)
    tri = solver_bounds(net, dom, relax=True, initial=init, progress=False)
    big = solver_bounds(net, dom, relax=True, initial=init, formulation="bigm", progress=False)
    assert tri.stats["formulation"] == "triangle" and big.stats["formulation"] == "bigm"
    for l in range(net.depth + 1):
        np.testing.assert_allclose(tri.lower[l], big.lower[l], atol=1e-6)
        np.testing.assert_allclose(tri.upper[l], big.upper[l], atol=1e-6)
    assert any(np.any(tri.width(l) < init.width(l) - 1e-3) for l in range(1, net.depth + 1))


def issue_net() -> nm.Network:
    """The 4-layer net (6, 10, 10, 8, 4) of issue 13, drawn layer by layer from default_rng(0)."""
    r = np.random.default_rng(0)
    sizes = (6, 10, 10, 8, 4)
    W, B = [], []
    for a, b in itertools.pairwise(sizes):
        W.append(r.normal(0, 1 / np.sqrt(a), (b, a)))
        B.append(r.normal(0, 0.3, b))
    return nm.Network(W, B)


def test_milp_budget_drops_no_neuron_in_advance():
    """Issue 13: t_m < min_solve_time used to cut neurons before solving anything (cut to CROWN,
    looser than LP). With 60 s for solves of ~25 ms, every unstable neuron is solved, no layer
    deadline passes, and LP ⊇ MILP up to the MILP's margins."""
    net, dom = issue_net(), nm.domains.unit_box(6)
    milp = compute_bounds(net, dom, method="milp", time_limit=60, progress=False)
    lp = compute_bounds(net, dom, method="lp", progress=False)
    lay = milp.stats["layers"]
    assert milp.total_time < 60
    assert any(st["t_m"] < 1.0 for st in lay)  # the case of the issue: t_m below min_solve_time (1 s)
    assert all(st["cut_by_deadline"] == 0 for st in lay), lay
    assert not any(s.startswith("fallback-") for src in milp.source for s in src.astype(str)), milp.source
    for l in range(milp.n_layers):
        tol = 1e-6 * (1 + np.abs(lp.upper[l])), 1e-6 * (1 + np.abs(lp.lower[l]))
        assert np.all(milp.upper[l] <= lp.upper[l] + tol[0]), l
        assert np.all(milp.lower[l] >= lp.lower[l] - tol[1]), l


def _slow_solves(monkeypatch, seconds: float):
    """Make every HiGHS solve take at least ``seconds`` more (in this process)."""
    from nnmiplib.mip.solvers.highs import HighsBackend

    real = HighsBackend._solve

    def slow(self, time_limit, start, **kw):
        time.sleep(seconds)
        return real(self, time_limit, start, **kw)

    monkeypatch.setattr(HighsBackend, "_solve", slow)


def test_budget_too_small_solves_widest_neurons_first(monkeypatch):
    """MILP whose solves outlast the budget: a layer stops only when its deadline has passed;
    what it cuts are the narrowest neurons, recorded and kept at their fallback; deeper layers
    keep a share and the bounds stay sound."""
    _slow_solves(monkeypatch, 0.1)
    net = random_net(9, (3, 12, 12, 2))
    dom = nm.domains.unit_box(3)
    init = cheap_bounds(net, dom)
    b = solver_bounds(net, dom, relax=False, initial=init, time_limit=2.0, min_solve_time=0.5, progress=False)
    lay = b.stats["layers"]
    assert lay[0]["t_m"] < 0.5 and lay[0]["t_solve"] == 0.5  # the per-solve limit is raised, nothing dropped
    assert lay[0]["cut_by_deadline"] > 0 and lay[0]["codes"].get("deadline", 0) > 0
    assert lay[0]["solves"] == 2 * int(init.unstable(1).sum())  # every solve was handed to the solver
    assert lay[0]["wall"] >= 0.1  # it stopped when its deadline had passed, after solving
    assert sum(n for c, n in lay[1]["codes"].items() if c != "deadline") > 0  # the logits kept a share
    cut = np.array(lay[0]["cut_neurons"], dtype=int)
    assert cut.size == lay[0]["cut_by_deadline"]
    assert all(s.startswith("fallback-") or "/fallback-" in s for s in b.source[1][cut].astype(str))
    todo = np.flatnonzero(init.unstable(1))
    started = np.setdiff1d(todo, cut)
    width = init.width(1)
    assert started.size > 0 and width[started].min() >= width[cut].max()  # widest first
    assert_contains(b, net, dom.sample(20_000, 3))


def test_bad_arguments_are_rejected_before_any_solve(monkeypatch):
    """Issue 17: arguments that mean nothing are a ValueError up front, not a warning per neuron."""
    from nnmiplib.bounds import compute

    def no_work(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(compute, "cheap_bounds", no_work)
    net = random_net(0, (3, 4, 2))
    dom = nm.domains.unit_box(3)
    bad = [{"per_neuron_time_limit": -1}, {"per_neuron_time_limit": 0}, {"time_limit": -1},
           {"time_limit": float("nan")}, {"n_jobs": 0}, {"n_jobs": 1.5}, {"solver": "gurobbi"},
           {"time_ratio": 0}, {"mip_gap": -1e-3}, {"max_neurons": 0}, {"solver_options": ["x"]}]
    for method in ("lp", "milp"):
        for kw in bad:
            with pytest.raises(ValueError, match=next(iter(kw)) if "solver" != next(iter(kw)) else "unknown solver"):
                compute_bounds(net, dom, method=method, progress=False, **kw)


def test_solver_options_that_make_every_solve_fail_raise(caplog):
    """Issue 17: a run whose solves all fail raises instead of returning fallbacks labelled ``milp``."""
    from nnmiplib.bounds.bounder import FAIL_SHARE, SolveFailureError

    net, dom = issue_net(), nm.domains.unit_box(6)
    assert 0 < FAIL_SHARE < 1
    with pytest.raises(SolveFailureError, match="failed-limit"):
        compute_bounds(net, dom, method="milp", solver_options={"mip_max_nodes": 0}, progress=False)
    with pytest.raises(RuntimeError, match="rejected option"):
        compute_bounds(net, dom, method="milp", solver_options={"no_such_option": 1}, progress=False)
    # a MILP that merely runs out of time keeps its fallbacks: that is not a failure
    b = compute_bounds(net, dom, method="milp", time_limit=0.2, progress=False)
    assert b.method == "milp"


@pytest.mark.parametrize("method", ["lp", "milp"])
def test_bounds_sound_when_the_box_pins_some_inputs(method):
    net = random_net(21, (6, 10, 10, 3))
    lo, hi = np.zeros(6), np.ones(6)
    lo[[0, 3]] = hi[[0, 3]] = [0.4, 0.9]
    dom = nm.domains.box(lo, hi)
    b = compute_bounds(net, dom, method, progress=False)
    assert_contains(b, net, np.vstack([dom.sample(50_000, 2), dom.vertices()]))


def test_restrict_limits_the_solves_to_given_neurons():
    net = random_net(8, (5, 12, 12, 12, 3))
    dom = nm.domains.unit_box(5)
    init = cheap_bounds(net, dom)
    allowed = [None, np.array([0, 1, 2, 3]), np.array([5]), None]
    b = solver_bounds(net, dom, relax=True, initial=init, restrict=allowed, progress=False)
    for l in (1, 2):
        touched = np.flatnonzero(b.time[l] > 0)
        assert set(touched) <= set(allowed[l].tolist())
    assert np.all(b.time[3] > 0)  # None: every logit
    with pytest.raises(ValueError, match="one entry per affine layer"):
        solver_bounds(net, dom, relax=True, initial=init, restrict=[None], progress=False)


def test_cheap_methods_reject_meaningless_arguments_too():
    net = random_net(0, (3, 4, 2))
    dom = nm.domains.unit_box(3)
    for kw in ({"time_limit": -1}, {"per_neuron_time_limit": -1}, {"n_jobs": 0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            compute_bounds(net, dom, method="crown", **kw)
    assert compute_bounds(net, dom, method="crown", time_limit=5, n_jobs=2).method == "crown"  # ignored, valid
    assert compute_bounds(net, dom, method="crown", time_limit=0.0).method == "crown"  # "no time": ignored too
    with pytest.raises(ValueError, match="time_limit"):
        compute_bounds(net, dom, method="lp", time_limit=0.0)
