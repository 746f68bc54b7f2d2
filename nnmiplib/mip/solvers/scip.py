"""SCIP backend (``pyscipopt``), optional, imported lazily.

Row-by-row model building (fine for the small models it is meant for: known-answer
tests and exact MINLP routes). Changing the objective needs ``freeTransform()``, so a
re-solve is not warm-started (capability ``warm_start`` absent).
"""

from __future__ import annotations

import numpy as np

from .base import Backend, Solution, SolverError, Status, relative_gap


class ScipBackend(Backend):
    name = "scip"
    module = "pyscipopt"
    capabilities = frozenset({"lp", "milp", "nonlinear"})


    def _build(self) -> None:
        import pyscipopt

        self._ps = pyscipopt
        m = self.model
        s = pyscipopt.Model()
        if not self.verbose:
            s.hideOutput()
        s.setParam("limits/gap", self.mip_gap)
        s.setParam("limits/absgap", 1e-9)
        for k, v in self.options.items():
            try:
                s.setParam(k, v)
            except (KeyError, LookupError, ValueError, TypeError) as exc:
                raise SolverError(f"SCIP rejected parameter {k}={v!r}: {exc}") from None
        self.s = s
        self.vars = []
        for j in range(m.n_vars):
            integer = bool(m.integrality[j]) and not m.relax
            lo = m.col_lo[j] if np.isfinite(m.col_lo[j]) else None
            hi = m.col_hi[j] if np.isfinite(m.col_hi[j]) else None
            self.vars.append(s.addVar(f"v{j}", vtype="I" if integer else "C", lb=lo, ub=hi))
        self._add_rows(m.A, np.arange(m.n_rows))
        self._set_objective()

    def _add_rows(self, block, idx) -> None:
        if block is None:
            return
        ps, m = self._ps, self.model
        self.s.freeTransform()
        A = block.tocsr()
        for k, r in enumerate(idx):
            sl = slice(A.indptr[k], A.indptr[k + 1])
            expr = ps.quicksum(float(a) * self.vars[int(j)] for j, a in zip(A.indices[sl], A.data[sl]))
            lo = m.row_lo[r] if np.isfinite(m.row_lo[r]) else None
            hi = m.row_hi[r] if np.isfinite(m.row_hi[r]) else None
            if A.indptr[k + 1] == A.indptr[k]:
                if (lo is not None and lo > 0) or (hi is not None and hi < 0):
                    raise SolverError(f"row {r} is empty and infeasible")
                continue
            self.s.addCons(self._ranged(expr, lo, hi))

    def _ranged(self, expr, lo, hi):
        if lo is not None and hi is not None and lo == hi:
            return expr == hi
        if lo is not None and hi is not None:
            return (lo <= (expr <= hi))
        if hi is not None:
            return expr <= hi
        if lo is not None:
            return expr >= lo
        raise SolverError("a row with no finite side")

    def _set_objective(self) -> None:
        m, ps = self.model, self._ps
        self.s.freeTransform()
        nz = np.flatnonzero(m.c)
        expr = ps.quicksum(float(m.c[j]) * self.vars[j] for j in nz) + float(m.offset)
        if nz.size == 0:
            expr = ps.Expr() + float(m.offset)
        self.s.setObjective(expr, "maximize" if m.sense == "max" else "minimize")

    def _set_col_bounds(self, idx, lo, hi) -> None:
        self.s.freeTransform()
        for j, a, b in zip(idx, lo, hi):
            self.s.chgVarLb(self.vars[int(j)], a if np.isfinite(a) else None)
            self.s.chgVarUb(self.vars[int(j)], b if np.isfinite(b) else None)

    def _solve(self, time_limit, start, objective_target=None, **kw) -> Solution:
        s, m = self.s, self.model
        s.freeTransform()
        s.setParam("limits/time", 1e20 if time_limit is None else float(time_limit))
        if start is not None and m.integrality.any() and not m.relax:
            sol = s.createSol()
            for v, val in zip(self.vars, np.asarray(start, dtype=float)):
                s.setSolVal(sol, v, float(val))
            s.addSol(sol, free=True)
        s.optimize()
        st = s.getStatus()
        status = {
            "optimal": Status.OPTIMAL, "infeasible": Status.INFEASIBLE, "unbounded": Status.UNBOUNDED,
            "inforunbd": Status.UNBOUNDED, "timelimit": Status.TIME_LIMIT, "nodelimit": Status.TIME_LIMIT,
            "gaplimit": Status.OPTIMAL, "userinterrupt": Status.INTERRUPTED,
        }.get(st, Status.ERROR)
        x = obj = None
        if s.getNSols() > 0:
            best = s.getBestSol()
            x = np.array([s.getSolVal(best, v) for v in self.vars])
            obj = float(s.getObjVal())
        db = float(s.getDualbound())
        dual = db if np.isfinite(db) and abs(db) < 1e19 else None
        return Solution(status=status, objective=obj, dual_bound=dual, x=x, nodes=int(s.getNTotalNodes()),
                        gap=relative_gap(obj, dual), message=f"scip status {st}")
