"""HiGHS backend (``highspy``), the default solver.

The model is passed once (``passModel``); objective changes use ``changeColsCost`` and
keep the basis, so a re-solve of an LP is warm-started (GUIDE §5: one model per layer,
re-solved per neuron). Measured on highspy 1.16: the ``time_limit`` option applies to
each ``run()`` (not cumulative over the object's lifetime as in some older versions);
:meth:`HighsBackend._solve` detects a cumulative timer anyway and then offsets the
limit by the run time already spent.
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np

from .base import Backend, Solution, SolverError, Status, relative_gap

log = logging.getLogger(__name__)

_BANNER_DONE = False


def new_highs():
    """A silent ``highspy.Highs``; the C++ banner printed at the first construction in
    a process is sent to /dev/null (it bypasses ``output_flag``)."""
    global _BANNER_DONE
    import highspy

    if _BANNER_DONE:
        h = highspy.Highs()
    else:
        try:
            sys.stdout.flush()
            fd = os.dup(1)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            try:
                h = highspy.Highs()
            finally:
                os.dup2(fd, 1)
                os.close(fd)
                os.close(null)
        except OSError:  # no real fd 1 (unusual embeddings)
            h = highspy.Highs()
        _BANNER_DONE = True
    h.setOptionValue("output_flag", False)
    return h


class HighsBackend(Backend):
    """HiGHS via highspy: LP (simplex, warm start) and MILP (branch and cut)."""

    name = "highs"
    module = "highspy"
    capabilities = frozenset({"lp", "milp", "warm_start", "threads", "dual_stop"})


    def _build(self) -> None:
        import highspy

        m = self.model
        self._hs = highspy
        self._cumulative = False
        h = new_highs()
        h.setOptionValue("threads", max(1, self.threads))
        h.setOptionValue("mip_rel_gap", self.mip_gap)
        h.setOptionValue("mip_abs_gap", 1e-9)
        if self.verbose:
            h.setOptionValue("output_flag", True)
        for k, v in self.options.items():
            if h.setOptionValue(k, v) == highspy.HighsStatus.kError:
                raise SolverError(f"HiGHS rejected option {k}={v!r} (unknown name or bad value; see "
                                  "https://ergo-code.github.io/HiGHS/stable/options/definitions/)")
        lp = highspy.HighsLp()
        lp.num_col_ = m.n_vars
        lp.num_row_ = m.n_rows
        lp.col_cost_ = m.c.copy()
        lp.col_lower_ = m.col_lo.copy()
        lp.col_upper_ = m.col_hi.copy()
        lp.row_lower_ = m.row_lo.copy()
        lp.row_upper_ = m.row_hi.copy()
        A = m.A.tocsc()
        A.sort_indices()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data.astype(np.float64)
        lp.sense_ = highspy.ObjSense.kMaximize if m.sense == "max" else highspy.ObjSense.kMinimize
        lp.offset_ = float(m.offset)
        if m.integrality.any() and not m.relax:
            kint, kcont = highspy.HighsVarType.kInteger, highspy.HighsVarType.kContinuous
            lp.integrality_ = [kint if b else kcont for b in m.integrality]
        self._is_mip = bool(m.integrality.any() and not m.relax)
        st = h.passModel(lp)
        if st == highspy.HighsStatus.kError:
            raise SolverError("HiGHS rejected the model (passModel returned an error)")
        self.h = h

    def _set_objective(self) -> None:
        m, hs = self.model, self._hs
        idx = np.arange(m.n_vars, dtype=np.int32)
        self.h.changeColsCost(m.n_vars, idx, m.c.astype(np.float64))
        self.h.changeObjectiveSense(hs.ObjSense.kMaximize if m.sense == "max" else hs.ObjSense.kMinimize)
        self.h.changeObjectiveOffset(float(m.offset))

    def _add_rows(self, block, idx) -> None:
        if block is None:
            return
        b = block.tocsr()
        self.h.addRows(b.shape[0], self.model.row_lo[idx], self.model.row_hi[idx], b.nnz,
                       b.indptr[:-1].astype(np.int32), b.indices.astype(np.int32), b.data)

    def _set_col_bounds(self, idx, lo, hi) -> None:
        self.h.changeColsBounds(idx.size, idx.astype(np.int32), lo, hi)

    def _confirm_infeasible(self, ms):
        """Re-run without presolve before calling a model infeasible (or giving up on a solve error).

        highspy 1.16's presolve has declared feasible Big-M models infeasible when their
        bounds are tight (a forward pass satisfied every row to 3e-15); callers take
        INFEASIBLE as a proof (an empty node, a refuted disjunct), so it must hold without
        presolve too. The status of the confirming run is returned.
        """
        h = self.h
        prev = h.getOptionValue("presolve")
        prev = prev[1] if isinstance(prev, tuple) else prev
        if prev == "off":
            return ms
        h.setOptionValue("presolve", "off")
        try:
            h.run()
        finally:
            h.setOptionValue("presolve", prev)
        new = h.getModelStatus()
        if new != ms:
            log.info("HiGHS presolve said %s; without presolve: %s", h.modelStatusToString(ms),
                     h.modelStatusToString(new))
        return new

    def _solve(self, time_limit, start, objective_target=None, dual_stop=None, **kw) -> Solution:
        # HiGHS's own ``objective_bound`` option is not used for dual_stop: with it, highspy
        # 1.16 reported "Optimal" with a dual bound below the true maximum of a test MIP;
        # the MIP-interrupt callback stops on the dual bound it reports, which stays valid.
        hs, h = self._hs, self.h
        limit = np.inf if time_limit is None else float(time_limit)
        run0 = h.getRunTime()
        h.setOptionValue("time_limit", limit + (run0 if self._cumulative and np.isfinite(limit) else 0.0))
        h.setOptionValue("objective_target", -np.inf if objective_target is None or not self._is_mip
                         else float(objective_target))
        if start is not None and self._is_mip:
            s = hs.HighsSolution()
            s.col_value = list(np.asarray(start, dtype=np.float64))
            s.value_valid = True
            h.setSolution(s)
        import time as _t

        stop_cb = None
        if dual_stop is not None and self._is_mip:
            lim, is_max = float(dual_stop), self.model.sense == "max"

            def stop_cb(e):
                db = e.data_out.mip_dual_bound
                if np.isfinite(db) and (db <= lim if is_max else db >= lim):
                    e.data_in.user_interrupt = True

            h.cbMipInterrupt.subscribe(stop_cb)
        t0 = _t.perf_counter()
        try:
            h.run()
        finally:
            if stop_cb is not None:
                h.cbMipInterrupt.unsubscribe(stop_cb)
        wall = _t.perf_counter() - t0
        ms = h.getModelStatus()
        MS = hs.HighsModelStatus
        if ms == MS.kTimeLimit and np.isfinite(limit) and wall < 0.5 * limit and h.getRunTime() >= limit:
            # the timer is cumulative over the object's lifetime: offset it from now on
            self._cumulative = True
            log.info("HiGHS time_limit is cumulative in this version; offsetting it by the run time")
            h.setOptionValue("time_limit", h.getRunTime() + limit - wall)
            h.run()
            ms = h.getModelStatus()
        if ms in (MS.kInfeasible, MS.kUnboundedOrInfeasible):
            ms = self._confirm_infeasible(ms)
        elif ms == MS.kSolveError:
            # highspy 1.16 has ended a small feasible Big-M MIP (a Bounder solve) in "Solve
            # error"; the same model without presolve solved: retry once that way
            log.info("HiGHS: solve error; running again without presolve")
            ms = self._confirm_infeasible(ms)
        status = {
            MS.kOptimal: Status.OPTIMAL,
            MS.kInfeasible: Status.INFEASIBLE,
            MS.kUnbounded: Status.UNBOUNDED,
            MS.kUnboundedOrInfeasible: Status.UNBOUNDED,
            MS.kTimeLimit: Status.TIME_LIMIT,
            MS.kIterationLimit: Status.TIME_LIMIT,
            MS.kSolutionLimit: Status.TIME_LIMIT,
            MS.kObjectiveTarget: Status.INTERRUPTED,
            MS.kObjectiveBound: Status.INTERRUPTED,
            MS.kInterrupt: Status.INTERRUPTED,  # only dual_stop interrupts
        }.get(ms, Status.ERROR)
        info = h.getInfo()
        sol = h.getSolution()
        x = np.asarray(sol.col_value, dtype=np.float64) if sol.value_valid else None
        obj = float(info.objective_function_value) if x is not None else None
        if self._is_mip:
            db = float(info.mip_dual_bound)
            dual = db if np.isfinite(db) else None
            nodes = int(info.mip_node_count)
            gap = relative_gap(obj, dual)
        else:
            dual = obj if status is Status.OPTIMAL else None
            nodes, gap = 0, (0.0 if status is Status.OPTIMAL else float("inf"))
        out = Solution(status=status, objective=obj, dual_bound=dual, x=x, nodes=nodes, gap=gap,
                       message=h.modelStatusToString(ms))
        if not self._is_mip and sol.dual_valid:
            out.row_dual = np.asarray(sol.row_dual, dtype=np.float64)
            out.col_dual = np.asarray(sol.col_dual, dtype=np.float64)
        return out
