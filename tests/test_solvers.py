"""Solver backends: the same known-answer tests on every installed backend; time limits; licences."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

from nnmiplib.mip.encode import MipModel
from nnmiplib.mip.solvers import (
    ModelTooLargeError,
    SolverError,
    Status,
    available,
    get_backend,
    safe_lp_bound,
    solve,
)

BACKENDS = available()


def lp_model(integer: bool = False) -> MipModel:
    """max 5x+4y+3z s.t. 2x+3y+z ≤ 5, 4x+y+2z ≤ 11, 3x+4y+2z ≤ 8, x,y,z ≥ 0 (optimum 13 at (2,0,1))."""
    m = MipModel()
    m.add_vars(3, 0.0, 10.0, integer=integer)
    m.add_rows(np.array([[2.0, 3, 1], [4, 1, 2], [3, 4, 2]]), -np.inf, [5.0, 11, 8])
    m.set_objective([5.0, 4, 3], "max")
    return m


def gap_model(relax: bool) -> MipModel:
    """max x + y s.t. 2x + 2y ≤ 3, x, y ∈ {0..5}: LP 1.5, MILP 1."""
    m = MipModel()
    m.add_vars(2, 0.0, 5.0, integer=True)
    m.add_rows(np.array([[2.0, 2.0]]), -np.inf, 3.0)
    m.set_objective([1.0, 1.0], "max")
    m.relax = relax
    return m


def hard_mip(n: int = 60, m: int = 30, seed: int = 0) -> MipModel:
    """A multi-dimensional integer knapsack HiGHS does not close in seconds."""
    rng = np.random.default_rng(seed)
    mod = MipModel()
    mod.add_vars(n, 0.0, 5.0, integer=True)
    A = rng.integers(1, 100, (m, n)).astype(float)
    mod.add_rows(A, -np.inf, A.sum(1) / 3)
    mod.set_objective(rng.integers(1, 100, n).astype(float), "max")
    return mod


@pytest.mark.parametrize("solver", BACKENDS)
def test_known_answers(solver):
    B = get_backend(solver)
    assert {"lp", "milp"} <= B.capabilities
    sol = B(lp_model()).solve()
    assert sol.status is Status.OPTIMAL and sol.objective == pytest.approx(13.0)
    np.testing.assert_allclose(sol.x, [2, 0, 1], atol=1e-7)
    assert sol.dual_bound == pytest.approx(13.0)
    assert B(gap_model(relax=True)).solve().objective == pytest.approx(1.5)
    s = B(gap_model(relax=False)).solve()
    assert s.status is Status.OPTIMAL and s.objective == pytest.approx(1.0) and s.dual_bound == pytest.approx(1.0)
    assert s.gap == pytest.approx(0.0, abs=1e-6) and s.nodes >= 0 and s.time > 0


@pytest.mark.parametrize("solver", BACKENDS)
def test_infeasible_and_unbounded(solver):
    m = MipModel()
    m.add_vars(1, 0.0, 1.0)
    m.add_rows(np.array([[1.0]]), 2.0, np.inf)
    assert solve(m, solver).status is Status.INFEASIBLE
    u = MipModel()
    u.add_vars(1, 0.0, np.inf)
    u.add_rows(np.array([[1.0]]), 0.0, np.inf)
    u.set_objective([1.0])
    assert solve(u, solver).status is Status.UNBOUNDED


@pytest.mark.parametrize("solver", BACKENDS)
def test_objective_changes_and_added_rows(solver):
    """Re-solving after changing the objective (warm start) matches a fresh model."""
    be = get_backend(solver)(lp_model())
    rng = np.random.default_rng(0)
    for _ in range(4):
        c = rng.normal(size=3)
        sense = "max" if rng.random() < 0.5 else "min"
        be.set_objective(c, sense, offset=1.0)
        fresh = lp_model()
        fresh.set_objective(c, sense, offset=1.0)
        assert be.solve().objective == pytest.approx(solve(fresh, solver).objective, abs=1e-7)
    be.set_objective([5.0, 4, 3], "max")
    be.add_rows(sp.csr_matrix(np.array([[1.0, 0, 0]])), -np.inf, 1.0)  # x ≤ 1
    s = be.solve()
    assert s.objective == pytest.approx(solve(_with_cut(), solver).objective) and s.x[0] <= 1 + 1e-9
    be.set_col_bounds([2], 0.0, 0.0)
    assert be.solve().x[2] == pytest.approx(0.0)


def _with_cut() -> MipModel:
    m = lp_model()
    m.add_rows(np.array([[1.0, 0, 0]]), -np.inf, 1.0)
    return m


def test_highs_time_limit_applies_to_each_solve():
    """Three 0.3 s solves of the same HiGHS object each stop after ≈0.3 s (not cumulative)."""
    be = get_backend("highs")(hard_mip())
    for _ in range(3):
        t = time.perf_counter()
        s = be.solve(time_limit=0.3)
        wall = time.perf_counter() - t
        assert s.status is Status.TIME_LIMIT
        assert 0.2 <= wall <= 1.0, wall
        assert s.dual_bound is not None and s.objective is not None and s.dual_bound >= s.objective - 1e-6
        assert s.gap > 0 and np.isfinite(s.gap)


@pytest.mark.parametrize("solver", BACKENDS)
def test_time_limit_respected(solver):
    m = hard_mip(40, 20, seed=1)
    t = time.perf_counter()
    s = solve(m, solver, time_limit=0.4)
    assert time.perf_counter() - t < 3.0
    assert s.status in (Status.TIME_LIMIT, Status.OPTIMAL)
    if s.dual_bound is not None and s.objective is not None:
        assert s.dual_bound >= s.objective - 1e-6


@pytest.mark.parametrize("solver", BACKENDS)
def test_mip_start_accepted(solver):
    m = gap_model(relax=False)
    s = solve(m, solver, start=np.array([1.0, 0.0]))
    assert s.objective == pytest.approx(1.0)


def test_gurobi_size_limit_message():
    """The pip licence rejects > 2000 variables at optimize(); the error says what to do."""
    m = MipModel()
    m.add_vars(2100, 0.0, 1.0)
    m.add_rows(sp.csr_matrix(np.ones((1, 2100))), -np.inf, 10.0)
    m.set_objective(np.ones(2100))
    if "gurobi" not in BACKENDS:
        with pytest.raises(SolverError, match="not installed"):
            get_backend("gurobi")
        return
    with pytest.raises(ModelTooLargeError) as err:
        solve(m, "gurobi")
    msg = str(err.value)
    assert "2100 variables" in msg and "2000/2000" in msg and "solver='highs'" in msg


def test_unknown_solver():
    with pytest.raises(ValueError, match="unknown solver"):
        get_backend("cplex")
    with pytest.raises(ValueError, match="time_limit"):
        solve(lp_model(), "highs", time_limit=-1)


def test_safe_lp_bound_valid_for_any_duals():
    """Neumaier–Shcherbina: exact duals give the optimum (tiny margin); any duals stay ≥ it."""
    m = lp_model()
    s = get_backend("highs")(m).solve()
    c = m.c
    b = safe_lp_bound(m, c, "max", s.row_dual)
    assert 13.0 <= b <= 13.0 + 1e-9
    rng = np.random.default_rng(0)
    for _ in range(200):
        y = s.row_dual + rng.normal(scale=0.5, size=3)
        assert safe_lp_bound(m, c, "max", y) >= 13.0 - 1e-12
    mn = lp_model()
    mn.set_objective([1.0, -2.0, 1.0], "min")
    s = get_backend("highs")(mn).solve()
    lo = safe_lp_bound(mn, mn.c, "min", s.row_dual)
    assert lo <= s.objective + 1e-12 and lo >= s.objective - 1e-8


SOLVER_OPTIONS = {"highs": ({"simplex_strategy": 4}, {"no_such_option": 1}),
                  "gurobi": ({"Method": 1}, {"NoSuchParameter": 1}),
                  "scip": ({"lp/initalgorithm": "d"}, {"no/such/param": 1})}


@pytest.mark.parametrize("solver", BACKENDS)
def test_solver_options_are_applied_and_unknown_ones_named(solver):
    good, bad = SOLVER_OPTIONS[solver]
    B = get_backend(solver)
    sol = B(lp_model(), options=good).solve()
    assert sol.status is Status.OPTIMAL and sol.objective == pytest.approx(13.0)
    with pytest.raises(SolverError, match=next(iter(bad))):
        B(lp_model(), options=bad)


@pytest.mark.parametrize("solver", BACKENDS)
def test_dual_stop_ends_the_search_with_a_valid_dual_bound(solver):
    """max: stop once the dual bound is ≤ the value asked; the reported bound stays ≥ the optimum."""
    B = get_backend(solver)
    exact = B(hard_mip(n=30, m=15)).solve()
    assert exact.status is Status.OPTIMAL
    stop = exact.objective + 0.25 * (B(_relaxed(hard_mip(n=30, m=15))).solve().objective - exact.objective)
    for sense, sign in (("max", 1.0), ("min", -1.0)):
        m = hard_mip(n=30, m=15)
        if sense == "min":
            m.set_objective(-m.c, "min")
        s = B(m).solve(dual_stop=sign * stop)
        assert s.status in (Status.INTERRUPTED, Status.OPTIMAL)
        assert s.dual_bound is not None
        assert sign * s.dual_bound >= exact.objective - 1e-6  # still a valid bound
        if s.status is Status.INTERRUPTED:
            assert sign * s.dual_bound <= stop + 1e-9
        if "dual_stop" not in B.capabilities:  # solves on to the optimum
            assert s.status is Status.OPTIMAL and sign * s.objective == pytest.approx(exact.objective)


def _relaxed(m):
    m.relax = True
    return m


def test_highs_infeasible_is_confirmed_without_presolve():
    """highspy 1.16's presolve declares this feasible all-stable Big-M model infeasible (tight
    bounds); the backend re-runs without presolve before reporting INFEASIBLE."""
    import numpy as np
    from test_alpha import random_box, random_net

    from nnmiplib.bounds import crown_bounds
    from nnmiplib.mip import encode
    from nnmiplib.mip.solvers import get_backend

    net, dom = random_net((2, 6, 5, 3), 13, zero_frac=0.0, stable_frac=0.3), random_box(2, 13)
    model = encode(net, dom, crown_bounds(net, dom))
    X = dom.lo + (dom.hi - dom.lo) * np.random.default_rng(0).uniform(size=(2000, 2))
    for j in range(net.n_outputs):
        for sense in ("max", "min"):
            c = np.zeros(model.n_vars)
            c[model.nets[0].a[-1][j]] = 1.0
            model.set_objective(c, sense)
            s = get_backend("highs")(model, mip_gap=1e-9).solve()
            assert s.ok, s.message
            y = net.forward(X)[:, j]
            assert (s.objective >= y.max() - 1e-6) if sense == "max" else (s.objective <= y.min() + 1e-6)


def test_a_query_solve_counts_passing_the_model_in_its_limit(monkeypatch):
    """``run_model`` (every linear query's solve) gives the solver its limit less the time spent
    checking the MIP start and passing the model (about 1 s for the 3000x1 pair's joint model),
    not the whole limit again."""
    from nnmiplib.mip import solvers
    from nnmiplib.queries import core

    seen = {}
    real = solvers.get_backend("highs")

    class SlowToBuild(real):
        def __init__(self, *a, **kw):
            time.sleep(0.3)
            super().__init__(*a, **kw)

        def solve(self, time_limit=None, **kw):
            seen["limit"] = time_limit
            return super().solve(time_limit, **kw)

    monkeypatch.setattr(solvers, "get_backend", lambda name: SlowToBuild)
    sol = core.run_model(lp_model(), "highs", 2.0, None)
    assert sol.status is Status.OPTIMAL and sol.objective == pytest.approx(13.0)
    assert seen["limit"] <= 1.7 + 1e-9, seen
