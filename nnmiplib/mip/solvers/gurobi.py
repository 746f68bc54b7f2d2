"""Gurobi backend (``gurobipy``), used when its licence admits the model.

``gurobipy`` is imported lazily. The pip licence is size-limited (2000 variables and
2000 linear constraints; 200 variables once a nonlinear constraint is present) and
fails at ``optimize()`` with GurobiError 10010; :meth:`GurobiBackend._solve` turns that
into a :class:`~nnmiplib.mip.solvers.base.ModelTooLargeError` that says what to do.
Range rows ``lo < A v < hi`` become two linear constraints.
"""

from __future__ import annotations

import numpy as np

from .base import Backend, ModelTooLargeError, Solution, SolverError, Status, relative_gap

PIP_LIMIT_VARS = 2000
PIP_LIMIT_CONSTRS = 2000
PIP_LIMIT_NONLINEAR = 200


class GurobiBackend(Backend):
    name = "gurobi"
    module = "gurobipy"
    capabilities = frozenset({"lp", "milp", "warm_start", "threads", "nonlinear", "dual_stop"})


    def _build(self) -> None:
        import gurobipy as gp
        from gurobipy import GRB

        self._gp, self._GRB = gp, GRB
        m = self.model
        try:
            env = gp.Env(empty=True)
            env.setParam("OutputFlag", 1 if self.verbose else 0)
            env.start()
        except gp.GurobiError as exc:
            raise SolverError(f"Gurobi could not start an environment: {exc}") from None
        self._env = env
        g = gp.Model(env=env)
        g.Params.Threads = max(1, self.threads)
        g.Params.MIPGap = self.mip_gap
        for k, v in self.options.items():
            try:
                g.setParam(k, v)
            except gp.GurobiError as exc:
                raise SolverError(f"Gurobi rejected parameter {k}={v!r}: {exc}") from None
        vt = np.where(m.integrality & (not m.relax), GRB.BINARY, GRB.CONTINUOUS)
        vt = np.where(m.integrality & (not m.relax) & ((m.col_lo != 0) | (m.col_hi != 1)), GRB.INTEGER, vt)
        lo = np.where(np.isfinite(m.col_lo), m.col_lo, -GRB.INFINITY)
        hi = np.where(np.isfinite(m.col_hi), m.col_hi, GRB.INFINITY)
        self.v = g.addMVar(m.n_vars, lb=lo, ub=hi, vtype=vt)
        self._rowmap: list[tuple[int, object]] = []
        self.g = g
        self._add_rows(m.A, np.arange(m.n_rows))
        self._set_objective()

    def _add_rows(self, block, idx) -> None:
        if block is None or block.shape[0] == 0:
            return
        m = self.model
        A = block.tocsr()
        lo, hi = m.row_lo[idx], m.row_hi[idx]
        eq = lo == hi
        for mask, sense, rhs in ((eq, "=", hi), (~eq & np.isfinite(hi), "<", hi), (~eq & np.isfinite(lo), ">", lo)):
            rows = np.flatnonzero(mask)
            if rows.size:
                c = self.g.addMConstr(A[rows], self.v, sense, rhs[rows])
                self._rowmap.append((idx[rows], c))
        self.g.update()

    def _set_objective(self) -> None:
        m = self.model
        self.v.Obj = m.c
        self.g.ModelSense = self._GRB.MAXIMIZE if m.sense == "max" else self._GRB.MINIMIZE
        self.g.ObjCon = m.offset

    def _set_col_bounds(self, idx, lo, hi) -> None:
        inf = self._GRB.INFINITY
        for j, a, b in zip(idx, lo, hi):
            self.v[int(j)].LB = a if np.isfinite(a) else -inf
            self.v[int(j)].UB = b if np.isfinite(b) else inf

    def _solve(self, time_limit, start, objective_target=None, dual_stop=None, **kw) -> Solution:
        gp, GRB, g, m = self._gp, self._GRB, self.g, self.model
        g.Params.TimeLimit = GRB.INFINITY if time_limit is None else float(time_limit)
        g.Params.BestObjStop = (GRB.INFINITY if m.sense == "max" else -GRB.INFINITY) \
            if objective_target is None else float(objective_target)
        g.Params.BestBdStop = (-GRB.INFINITY if m.sense == "max" else GRB.INFINITY) \
            if dual_stop is None else float(dual_stop)
        if start is not None and g.IsMIP:
            self.v.Start = np.asarray(start, dtype=np.float64)
        try:
            g.optimize()
        except gp.GurobiError as exc:
            if getattr(exc, "errno", None) == 10010:
                nl = " (200 with nonlinear constraints)"
                raise ModelTooLargeError(
                    f"the model has {g.NumVars} variables / {g.NumConstrs} constraints, the installed Gurobi "
                    f"licence allows {PIP_LIMIT_VARS}/{PIP_LIMIT_CONSTRS}{nl}; install a full licence or use "
                    "solver='highs'"
                ) from None
            raise SolverError(f"Gurobi failed: {exc}") from None
        st = g.Status
        status = {
            GRB.OPTIMAL: Status.OPTIMAL,
            GRB.INFEASIBLE: Status.INFEASIBLE,
            GRB.UNBOUNDED: Status.UNBOUNDED,
            GRB.INF_OR_UNBD: Status.UNBOUNDED,
            GRB.TIME_LIMIT: Status.TIME_LIMIT,
            GRB.NODE_LIMIT: Status.TIME_LIMIT,
            GRB.ITERATION_LIMIT: Status.TIME_LIMIT,
            GRB.SOLUTION_LIMIT: Status.TIME_LIMIT,
            GRB.INTERRUPTED: Status.INTERRUPTED,
            GRB.USER_OBJ_LIMIT: Status.INTERRUPTED,
        }.get(st, Status.ERROR)
        x = np.asarray(self.v.X, dtype=np.float64) if g.SolCount > 0 else None
        obj = float(g.ObjVal) if x is not None else None
        if g.IsMIP:
            try:
                db = float(g.ObjBound)
            except (gp.GurobiError, AttributeError):
                db = np.nan
            dual = db if np.isfinite(db) and abs(db) < 1e99 else None
            nodes = int(g.NodeCount)
        else:
            dual, nodes = (obj if status is Status.OPTIMAL else None), 0
        out = Solution(status=status, objective=obj, dual_bound=dual, x=x, nodes=nodes,
                       gap=relative_gap(obj, dual), message=f"gurobi status {st}")
        if not g.IsMIP and status is Status.OPTIMAL:
            y = np.zeros(m.n_rows)
            for rows, c in self._rowmap:
                y[rows] += np.asarray(c.Pi)
            out.row_dual = y
        return out

    def __del__(self):
        try:
            self.g.dispose()
            self._env.dispose()
        except Exception:  # noqa: BLE001, S110 -- best effort at interpreter exit
            pass
