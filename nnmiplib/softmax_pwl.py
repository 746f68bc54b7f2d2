r"""A sound piecewise-linear relaxation of softmax objectives (no ``exp`` in the solver).

The (PV) and maxdiff objectives (SPEC §3–§4) are :math:`\lVert p - y_0\rVert_1` and
:math:`\lVert p^1 - p^2\rVert_1` with :math:`p = \operatorname{softmax}(a)` of the logits.
HiGHS takes only linear constraints, so each softmax is replaced by a *relaxation*: a
set of linear constraints (with a few binaries) that every true point
:math:`(a, \operatorname{softmax}(a))` satisfies. Maximising the objective over the
relaxation therefore gives an **upper bound** on the true maximum (the reported dual
bound), while every incumbent input is re-evaluated exactly in float64 (the primal
value). The relaxation is refined around the points it proposes until the two meet.

Relaxation of :math:`p = \operatorname{softmax}(a)` for one network, logits
:math:`a \in [\ell, u]` (logit bounds from the Bounder):

.. math::

    L &\ge a_j \quad \forall j, \qquad
    L \ge \operatorname{LSE}(a^\circ) + \operatorname{softmax}(a^\circ)^\top (a - a^\circ)
      \quad \forall a^\circ \in T                                   &(\text{S1})\\
    r_k &= a_k - L \in [\underline r_k, \overline r_k]              &(\text{S2})\\
    P_k &\le \hat e_k(r_k) + 10^{-9}                                 &(\text{S3})\\
    \textstyle\sum_k P_k &= 1, \quad P_k \ge 0                       &(\text{S4})

* (S1): :math:`\operatorname{LSE}(a) = \log\sum_j e^{a_j}` is convex and
  :math:`\ge \max_j a_j`, so every tangent plane is below it: the true value
  :math:`L = \operatorname{LSE}(a)` satisfies (S1) for any set ``T`` of tangent points.
* (S2): :math:`r_k = a_k - \operatorname{LSE}(a) = -\log(1 + \sum_{j\ne k} e^{a_j - a_k})`
  lies between :math:`\underline r_k = -\log(1 + \sum_{j\ne k} e^{u_j - \ell_k})` and
  :math:`\overline r_k = -\log(1 + \sum_{j\ne k} e^{\ell_j - u_k})`.
* (S3): :math:`p_k = e^{r_k}`; :math:`\hat e_k` is the piecewise-linear interpolation of
  ``exp`` at breakpoints :math:`\underline r_k = t_0 < \dots < t_m = \overline r_k`.
  ``exp`` is convex, so on each segment its chord lies above it: :math:`\hat e_k \ge
  \exp`. More than one segment needs the segment choice as binaries (the disaggregated
  "multiple choice" formulation: :math:`y_i \in \{0,1\}`, :math:`\sum_i y_i = 1`,
  :math:`t_i y_i \le \rho_i \le t_{i+1} y_i`, :math:`r_k = \sum_i \rho_i`,
  :math:`\hat e_k = \sum_i (e^{t_i} - s_i t_i) y_i + s_i \rho_i` with chord slopes
  :math:`s_i`), which is exact for the interpolant.
  A relaxation of (S3) could only *raise* :math:`P_k` where :math:`L` is below the
  true LSE; the lower bounds on :math:`P_k` come from (S4) and the upper bounds of
  the other classes.
* (S4) holds for every softmax output.

So the true point is feasible: **the relaxation's optimum (or any valid MILP dual
bound of it) bounds the true maximum from above.** At a point :math:`a^\star` whose
logits are in ``T`` and whose :math:`r_k(a^\star)` are breakpoints, (S1)–(S3) force
:math:`P_k \le p_k(a^\star) + 10^{-9}` and (S4) then gives :math:`P = p(a^\star)`: the
relaxation is exact there. Refinement adds :math:`a^\star` of each relaxation optimum
(and of the incumbent) to ``T`` and its :math:`r_k` to the breakpoints, so the bound
falls to the true maximum (outer approximation).

The L1 objective, with :math:`u = P^1 - P^2` (or :math:`P - y_0`), uses
:math:`\lVert u\rVert_1 = 2\sum_k \max(u_k, 0)` when :math:`\sum_k u_k = 0` (true by
S4): binaries :math:`\sigma_k` and :math:`0 \le \tau_k \le \sigma_k`,
:math:`\tau_k \le u_k + 1 - \sigma_k`, maximise :math:`2\sum_k \tau_k` — exactly
:math:`2\max_S \sum_{k\in S} u_k`. Valid cuts :math:`\tau_k \le P^1_k` and
:math:`\tau_k \le 1 - P^2_k` keep its LP relaxation at ≤ 2 instead of K.

Limitations (measured): the lower bounds on :math:`P_k` come only from (S4), so between
breakpoints the relaxation is first-order loose and its optimum can "crawl" next to the
best point, each round gaining a little; on 2-input (5)/(4)-hidden pairs the gap closed
to 2·10⁻³ in 1–15 s for some instances and stalled at 0.4–2 % after 25 s for others. On
MNIST-size nets (K = 10) the first rounds often keep the trivial bound 2. Every reported
bound stays valid; SCIP (:func:`scip_exact_l1`) is the exact reference on small cases.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from .network import softmax

__all__ = ["SAFETY", "L1Block", "SoftmaxBlock", "SoftmaxState", "r_range", "scip_exact_l1", "softmax_l1_query"]

log = logging.getLogger(__name__)

#: outward slack on every relaxation row, against solver feasibility tolerances
SAFETY = 1e-9
#: breakpoints closer than this are merged
MIN_SPACING = 1e-6
#: below this r, exp(r) ≤ 1.4e-17 — one segment [r_lo, R_FLOOR] is enough there
R_FLOOR = -40.0


def r_range(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on r_k = a_k − LSE(a) = log p_k for logits in the box [lo, hi] (S2)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    K = lo.size
    r_lo, r_hi = np.empty(K), np.empty(K)
    for k in range(K):
        other = np.arange(K) != k
        r_lo[k] = -logsumexp(np.concatenate([[0.0], hi[other] - lo[k]]))
        r_hi[k] = -logsumexp(np.concatenate([[0.0], lo[other] - hi[k]]))
    r_hi = np.minimum(r_hi, 0.0)
    r_lo = np.minimum(r_lo, r_hi)
    return r_lo, r_hi


@dataclass
class SoftmaxState:
    """Refinement state of one network's softmax relaxation: tangent points and breakpoints."""

    lo: np.ndarray
    hi: np.ndarray
    tangents: list = field(default_factory=list)       # logit vectors a° (S1)
    breakpoints: list = field(default_factory=list)    # per class, sorted array (S3)
    max_breakpoints: int = 12

    @classmethod
    def initial(cls, lo, hi, n_segments: int = 2) -> SoftmaxState:
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        r_lo, r_hi = r_range(lo, hi)
        bps = []
        for k in range(lo.size):
            a, b = r_lo[k], r_hi[k]
            pts = [a, b]
            if b - a > MIN_SPACING:
                # geometric-ish spacing in p: interior points at p = e^{t}
                inner = np.linspace(max(a, R_FLOOR), b, n_segments + 1)[1:-1] if n_segments > 1 else []
                if a < R_FLOOR < b:
                    pts.append(R_FLOOR)
                pts.extend(inner)
            bps.append(np.unique(np.clip(pts, a, b)))
        st = cls(lo, hi, [], bps)
        st.tangents.append((lo + hi) / 2)
        return st

    def add_tangents(self, logits: np.ndarray) -> None:
        """Add LSE tangent planes (S1) at each row of ``logits`` (cheap: rows, no binaries)."""
        for a in np.atleast_2d(logits):
            self.tangents.append(np.clip(np.asarray(a, float), self.lo, self.hi))

    def refine(self, a_star: np.ndarray, protect: np.ndarray | None = None, spread: tuple = ()) -> int:
        """Add the tangent at logits ``a_star`` and breakpoints at its r_k (and r_k ± h for
        h in ``spread``); return how many were new.

        Past ``max_breakpoints`` per class, the interior breakpoint whose removal changes
        the interpolant least (smallest chord error at it) is dropped, never the new
        ones nor those within 0.1 of ``protect[k]`` (the best point's r_k).
        """
        a_star = np.clip(np.asarray(a_star, float), self.lo, self.hi)
        added = 0
        if not any(np.max(np.abs(t - a_star)) < 1e-9 for t in self.tangents):
            self.tangents.append(a_star)
            added += 1
        r = a_star - logsumexp(a_star)
        for k, t in enumerate(self.breakpoints):
            new = [float(np.clip(r[k] + d, t[0], t[-1])) for d in (0.0,) + tuple(spread) + tuple(-h for h in spread)]
            if r[k] < R_FLOOR:
                new = new[:1]
            for q in new:
                if np.min(np.abs(t - q)) > MIN_SPACING:
                    t = np.sort(np.append(t, q))
                    added += 1
            guard = list(new) + ([float(protect[k])] if protect is not None else [])
            radius = [MIN_SPACING] * len(new) + [0.1 + MIN_SPACING] * (len(guard) - len(new))
            while t.size > self.max_breakpoints:
                inner = [i for i in range(1, t.size - 1)
                         if not any(abs(t[i] - q) <= rad for q, rad in zip(guard, radius))]
                if not inner:
                    break
                err = [np.exp(t[i - 1]) + (np.exp(t[i + 1]) - np.exp(t[i - 1])) * (t[i] - t[i - 1])
                       / (t[i + 1] - t[i - 1]) - np.exp(t[i]) for i in inner]
                t = np.delete(t, inner[int(np.argmin(err))])
            self.breakpoints[k] = t
        return added


class SoftmaxBlock:
    """Columns and rows (S1)–(S4) for one network's softmax inside a MipModel."""

    def __init__(self, model, a_cols: np.ndarray, state: SoftmaxState):
        self.a = np.asarray(a_cols)
        K = self.a.size
        lo, hi = state.lo, state.hi
        r_lo, r_hi = r_range(lo, hi)
        self.state = state
        self.L = int(model.add_vars(1, logsumexp(lo) - SAFETY, logsumexp(hi) + SAFETY)[0])
        self.P = model.add_vars(K, 0.0, np.minimum(1.0, np.exp(r_hi) + SAFETY))
        self.y, self.rho = [], []
        rows, lo_r, hi_r = [], [], []

        def row(coefs: dict, lo_v, hi_v):
            rows.append(coefs)
            lo_r.append(lo_v)
            hi_r.append(hi_v)

        for j in range(K):  # L ≥ a_j
            row({self.L: 1.0, self.a[j]: -1.0}, -SAFETY, np.inf)
        for t in state.tangents:  # (S1) tangent planes of LSE
            p = softmax(t)
            c = {self.L: 1.0}
            for j in range(K):
                c[self.a[j]] = c.get(self.a[j], 0.0) - p[j]
            row(c, float(logsumexp(t) - p @ t) - SAFETY, np.inf)
        for k in range(K):
            bp = state.breakpoints[k]
            # r_k = a_k − L within its range (S2)
            row({self.a[k]: 1.0, self.L: -1.0}, r_lo[k] - SAFETY, r_hi[k] + SAFETY)
            m = bp.size - 1
            if m <= 1:
                t0, t1 = bp[0], bp[-1]
                s = (np.exp(t1) - np.exp(t0)) / (t1 - t0) if t1 > t0 else 0.0
                # P ≤ e^{t0} + s (a_k − L − t0)
                row({self.P[k]: 1.0, self.a[k]: -s, self.L: s}, -np.inf, np.exp(t0) - s * t0 + SAFETY)
                self.y.append(np.zeros(0, dtype=np.int64))
                self.rho.append(np.zeros(0, dtype=np.int64))
                continue
            y = model.add_vars(m, 0.0, 1.0, integer=True)
            rho = model.add_vars(m, min(bp[0], 0.0), max(bp[-1], 0.0))
            self.y.append(y)
            self.rho.append(rho)
            row({int(i): 1.0 for i in y}, 1.0, 1.0)
            c = {self.a[k]: 1.0, self.L: -1.0}
            for i in rho:
                c[int(i)] = -1.0
            row(c, 0.0, 0.0)  # r_k = Σ ρ_i
            cP = {self.P[k]: 1.0}
            for i in range(m):
                t0, t1 = bp[i], bp[i + 1]
                row({int(rho[i]): 1.0, int(y[i]): -t0}, 0.0, np.inf)
                row({int(rho[i]): 1.0, int(y[i]): -t1}, -np.inf, 0.0)
                s = (np.exp(t1) - np.exp(t0)) / (t1 - t0)
                cP[int(y[i])] = -(np.exp(t0) - s * t0)
                cP[int(rho[i])] = -s
            row(cP, -np.inf, SAFETY)  # (S3)
        row({int(i): 1.0 for i in self.P}, 1.0, 1.0)  # (S4)
        _add_dict_rows(model, rows, lo_r, hi_r)

    def fill(self, v: np.ndarray) -> None:
        """Set this block's columns in ``v`` consistently with the logits already in ``v``."""
        a = v[self.a]
        L = float(logsumexp(a))
        v[self.L] = L
        v[self.P] = softmax(a)
        r = a - L
        for k, (y, rho) in enumerate(zip(self.y, self.rho)):
            if y.size == 0:
                continue
            bp = self.state.breakpoints[k]
            i = int(np.clip(np.searchsorted(bp, r[k], side="right") - 1, 0, y.size - 1))
            v[y] = 0.0
            v[rho] = 0.0
            v[y[i]] = 1.0
            v[rho[i]] = np.clip(r[k], bp[i], bp[i + 1])


class L1Block:
    """2 Σ_k max(u_k, 0) = ‖u‖₁ with u = P¹ − P² (or P − y₀), via sign binaries σ_k."""

    def __init__(self, model, P1: np.ndarray, P2: np.ndarray | None = None, y0: np.ndarray | None = None):
        if (P2 is None) == (y0 is None):
            raise ValueError("L1Block needs exactly one of P2 (a second softmax) or y0 (a fixed vector)")
        K = len(P1)
        self.P1, self.P2 = np.asarray(P1), None if P2 is None else np.asarray(P2)
        self.y0 = None if y0 is None else np.asarray(y0, float)
        self.sigma = model.add_vars(K, 0.0, 1.0, integer=True)
        self.tau = model.add_vars(K, 0.0, 1.0)
        rows, lo_r, hi_r = [], [], []
        for k in range(K):
            rows.append({int(self.tau[k]): 1.0, int(self.sigma[k]): -1.0})
            lo_r.append(-np.inf)
            hi_r.append(0.0)
            c = {int(self.tau[k]): 1.0, int(self.P1[k]): -1.0, int(self.sigma[k]): 1.0}
            rhs = 1.0
            if self.P2 is not None:
                c[int(self.P2[k])] = 1.0
            else:
                rhs -= self.y0[k]
            rows.append(c)
            lo_r.append(-np.inf)
            hi_r.append(rhs)
            # valid cuts: u_k^+ ≤ P1_k and u_k^+ ≤ 1 − P2_k (resp. 1 − y0_k); they make the LP
            # relaxation's objective ≤ 2 instead of K
            rows.append({int(self.tau[k]): 1.0, int(self.P1[k]): -1.0})
            lo_r.append(-np.inf)
            hi_r.append(0.0)
            if self.P2 is not None:
                rows.append({int(self.tau[k]): 1.0, int(self.P2[k]): 1.0})
                lo_r.append(-np.inf)
                hi_r.append(1.0)
            else:
                model.col_hi[self.tau[k]] = min(1.0, max(0.0, 1.0 - self.y0[k]) + SAFETY)
        _add_dict_rows(model, rows, lo_r, hi_r)

    def objective(self, n_vars: int) -> np.ndarray:
        c = np.zeros(n_vars)
        c[self.tau] = 2.0
        return c

    def fill(self, v: np.ndarray) -> None:
        other = v[self.P2] if self.P2 is not None else self.y0
        u = v[self.P1] - other
        pos = u > 0
        v[self.sigma] = pos.astype(float)
        v[self.tau] = np.where(pos, np.clip(u, 0, 1), 0.0)


def _add_dict_rows(model, rows: list[dict], lo, hi) -> None:
    if not rows:
        return
    r, c, d = [], [], []
    for i, coefs in enumerate(rows):
        for j, val in coefs.items():
            r.append(i)
            c.append(int(j))
            d.append(float(val))
    A = sp.csr_matrix((d, (r, c)), shape=(len(rows), model.n_vars))
    model.add_rows(A, np.asarray(lo, float), np.asarray(hi, float))


# the query loop and the SCIP reference live in softmax_query (re-exported here)
from .softmax_query import _l1_value, _r_of, scip_exact_l1, softmax_l1_query  # noqa: F401
