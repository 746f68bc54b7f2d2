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

Lower bounds on the probabilities (S5)–(S8). Write :math:`d_{jk} = a_j - a_k` and
:math:`p_k = 1/D_k` with :math:`D_k = 1 + \sum_{j\ne k} e^{d_{jk}}`. Let
:math:`d_{jk} \in [\ell_{jk}, u_{jk}]` on the domain: from the logit box
(:math:`[\ell_j - u_k, u_j - \ell_k]`, :func:`diff_box`) or, tighter, from one LP per pair
over the LP relaxation of the network (:func:`~nnmiplib.queries.softmax.lp_diff_bounds`,
rigorous Neumaier–Shcherbina bounds).

.. math::

    e^{r^-_k} \le P_k \le e^{r^+_k},\quad
      r^-_k = -\log(1 + \textstyle\sum_j e^{u_{jk}}),\ r^+_k = -\log(1 + \sum_j e^{\ell_{jk}}),
      \qquad P_j \le e^{u_{jk}} P_k                                                   &(\text{S5})\\
    e^{d} \le \chi_{jk}(d) = e^{\ell_{jk}} + s_{jk}(d - \ell_{jk}),\quad
      s_{jk} = \frac{e^{u_{jk}} - e^{\ell_{jk}}}{u_{jk} - \ell_{jk}}
      \quad (d\in[\ell_{jk}, u_{jk}])                                                  &(\text{S6})\\
    P_k \ge \frac1{t^\circ} - \frac{1 + \sum_{j\ne k}\chi_{jk}(a_j - a_k) - t^\circ}{(t^\circ)^2}
      \quad \forall t^\circ \in T_k                                                    &(\text{S7})

* (S5): :math:`p_j / p_k = e^{d_{jk}} \le e^{u_{jk}}`, and the constants are (S2) with the
  difference bounds (the old relaxation had only :math:`P_k \ge 0` and the sum (S4)).
* (S6): the chord (secant) of the convex ``exp`` lies above it on the interval, so
  :math:`D_k \le \bar D_k := 1 + \sum_j \chi_{jk}(d_{jk})`, linear in the logits.
* (S7): :math:`t \mapsto 1/t` is convex and decreasing on :math:`t > 0`, so
  :math:`p_k = 1/D_k \ge 1/\bar D_k \ge` its tangent at any :math:`t^\circ > 0`.
  :math:`T_k` starts geometric over :math:`[1 + \sum_j e^{\ell_{jk}}, \min(1 + \sum_j e^{u_{jk}}, 10^8)]`
  and grows with :math:`\bar D_k` and :math:`D_k` at the refinement points.
* (S8) for up to two *focus* classes per network (the winning class at the refinement
  points — e.g. the reference class of (PV)): :math:`\chi_{jk}` is replaced by the
  piecewise-linear interpolant :math:`\hat e_{jk}` of ``exp`` on breakpoints at the
  refinement points' :math:`d_{jk}` (multiple-choice binaries as in (S3); still
  :math:`\ge e^{d}`), so at a refinement point (S7)+(S8) give exactly :math:`P_k \ge p_k`.

Upper bounds on :math:`P_k` come from (S3) (the concave side: chords of ``exp`` in
:math:`r_k`) and the constant/ratio rows (S5); the chord of :math:`1/t` over the range of
:math:`D_k` is not used (over the ranges met on MNIST it is flat near :math:`1/D^-`).
Every row holds at every true point :math:`(a, \operatorname{softmax}(a))`, so soundness
is unchanged. The L1 block fixes :math:`\sigma_k` where the sign of :math:`u_k` is known
from the (S5) column bounds (total variation :math:`\lVert u\rVert_1 = 2\max_S u(S)`:
class k is then in, or out of, every maximising S).

Measured (MNIST 15x2 zoo net vs its 90 %-pruned copy, L∞ ball δ = 0.05 around test image
0, LP bounds, 20 s): maxdiff dual bound 2.000 → 1.966 (incumbent 1.898); PV softmax
1.970 → see the project report for the (S8) numbers. On 2-input toy pairs the gap closes
as before. The bound can still stall above the optimum: (S6)–(S8) are only exact at
refinement points, and each round is a MILP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from ..network import softmax

__all__ = ["SAFETY", "L1Block", "SoftmaxBlock", "SoftmaxState", "diff_box", "exp_chords", "r_range"]

log = logging.getLogger(__name__)

#: outward slack on every relaxation row, against solver feasibility tolerances
SAFETY = 1e-9
#: breakpoints closer than this are merged
MIN_SPACING = 1e-6
#: below this r, exp(r) ≤ 1.4e-17 — one segment [r_lo, R_FLOOR] is enough there
R_FLOOR = -40.0
#: ratio rows P_j ≤ e^{d} P_k only while d ≤ this (larger coefficients only hurt numerics)
RATIO_MAX_LOG = np.log(1e6)
#: largest tangent point t° of 1/t in (S7) (beyond it the cut only says P_k ≥ ~0)
LB_T_MAX = 1e8
#: largest coefficient of a logit in a (S7) row
CUT_MAX_COEF = 1e4


def diff_box(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``(D_lo, D_hi)`` on the logit differences d_jk = a_j − a_k ([j, k] entries)
    implied by the logit box alone: d_jk ∈ [ℓ_j − u_k, u_j − ℓ_k] (0 on the diagonal)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    d_hi = hi[:, None] - lo[None, :]
    d_lo = lo[:, None] - hi[None, :]
    np.fill_diagonal(d_hi, 0.0)
    np.fill_diagonal(d_lo, 0.0)
    return d_lo, d_hi


def r_range(lo: np.ndarray, hi: np.ndarray, d_lo: np.ndarray | None = None,
            d_hi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on r_k = a_k − LSE(a) = log p_k (S2): r_k = −log(1 + Σ_{j≠k} e^{d_jk}), so
    r_k ∈ [−log(1 + Σ e^{D_hi[j,k]}), −log(1 + Σ e^{D_lo[j,k]})] for any valid difference
    bounds (default: those of the logit box, :func:`diff_box`)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    if d_lo is None or d_hi is None:
        d_lo, d_hi = diff_box(lo, hi)
    K = lo.size
    r_lo, r_hi = np.empty(K), np.empty(K)
    for k in range(K):
        other = np.arange(K) != k
        r_lo[k] = -logsumexp(np.concatenate([[0.0], d_hi[other, k]]))
        r_hi[k] = -logsumexp(np.concatenate([[0.0], d_lo[other, k]]))
    r_hi = np.minimum(r_hi, 0.0)
    r_lo = np.minimum(r_lo, r_hi)
    return r_lo, r_hi


def exp_chords(d_lo: np.ndarray, d_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Secants ``e^d ≤ c0 + s·d`` on [D_lo, D_hi] entrywise (exp is convex: its chord lies above)."""
    w = d_hi - d_lo
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        s = np.where(w > 1e-9, (np.exp(d_hi) - np.exp(d_lo)) / np.where(w > 1e-9, w, 1.0), 0.0)
        c0 = np.where(w > 1e-9, np.exp(d_lo) - s * d_lo, np.exp(d_hi))
    return c0, s


@dataclass
class SoftmaxState:
    """Refinement state of one network's softmax relaxation: tangent points and breakpoints."""

    lo: np.ndarray
    hi: np.ndarray
    tangents: list = field(default_factory=list)       # logit vectors a° (S1)
    breakpoints: list = field(default_factory=list)    # per class, sorted array (S3)
    max_breakpoints: int = 12
    d_lo: np.ndarray | None = None                     # bounds on d_jk = a_j − a_k (S5)
    d_hi: np.ndarray | None = None
    lb_points: list = field(default_factory=list)      # per class, tangent points t° of 1/t (S7)
    max_lb_points: int = 12
    focus: dict = field(default_factory=dict)          # class k -> per j, breakpoints of exp(d_jk) (S8)
    max_focus: int = 2                                 # classes given (S8), chosen at refinement points
    max_exp_breakpoints: int = 6

    def add_focus(self, k: int) -> bool:
        """Give class k the piecewise-linear (S8) overestimator of each e^{d_jk} (one segment to start)."""
        k = int(k)
        if k in self.focus or len(self.focus) >= self.max_focus or self.d_lo is None:
            return False
        self.focus[k] = [None if j == k else np.unique([self.d_lo[j, k], self.d_hi[j, k]])
                         for j in range(self.lo.size)]
        return True

    @classmethod
    def initial(cls, lo, hi, n_segments: int = 2, d_lo=None, d_hi=None, n_lb: int = 6) -> SoftmaxState:
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        b_lo, b_hi = diff_box(lo, hi)
        if d_lo is not None and d_hi is not None:  # intersect with the given (e.g. LP) bounds
            b_hi = np.minimum(b_hi, np.asarray(d_hi, float))
            b_lo = np.maximum(b_lo, np.asarray(d_lo, float))
            b_lo = np.minimum(b_lo, b_hi)
        r_lo, r_hi = r_range(lo, hi, b_lo, b_hi)
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
        lbp = []
        for k in range(lo.size):  # tangent points of 1/t spread geometrically over the chord-D range
            other = np.arange(lo.size) != k
            D1 = 1.0 + float(np.sum(np.exp(b_lo[other, k])))
            D2 = 1.0 + float(np.sum(np.exp(np.minimum(b_hi[other, k], 700.0))))
            D1 = min(D1, LB_T_MAX)
            lbp.append(np.unique(np.geomspace(D1, max(D1, min(D2, LB_T_MAX)), n_lb)))
        st = cls(lo, hi, [], bps, d_lo=b_lo, d_hi=b_hi, lb_points=lbp)
        st.tangents.append((lo + hi) / 2)
        return st

    def chord_denominators(self, a: np.ndarray) -> np.ndarray:
        """Per class k, 1 + Σ_{j≠k} chord_jk(a_j − a_k) ≥ 1/p_k at logits ``a`` (S6)."""
        a = np.asarray(a, float)
        c0, s = exp_chords(self.d_lo, self.d_hi)
        d = np.clip(a[:, None] - a[None, :], self.d_lo, self.d_hi)
        with np.errstate(over="ignore", invalid="ignore"):
            val = c0 + s * d
        np.fill_diagonal(val, 0.0)
        return 1.0 + val.sum(axis=0)

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
        if self.d_lo is not None:
            added += int(self.add_focus(int(np.argmax(a_star))))
            for k, bps in self.focus.items():  # (S8) breakpoints at the point's differences
                for j, t in enumerate(bps):
                    q = float(np.clip(a_star[j] - a_star[k], t[0], t[-1])) if t is not None else None
                    if q is not None and np.min(np.abs(t - q)) > MIN_SPACING and t.size < self.max_exp_breakpoints:
                        bps[j] = np.sort(np.append(t, q))
                        added += 1
            p_star = softmax(a_star)
            for k in self.focus:  # (S8) is exact at the point: a tangent of 1/t at its true denominator
                t, t0 = self.lb_points[k], 1.0 / max(p_star[k], 1e-300)
                if t0 <= LB_T_MAX and np.min(np.abs(t - t0) / t0) > 1e-6 and t.size < self.max_lb_points + 4:
                    self.lb_points[k] = np.sort(np.append(t, t0))
                    added += 1
            for k, t0 in enumerate(self.chord_denominators(a_star)):  # (S7) tangent at the point
                t = self.lb_points[k]
                if (np.isfinite(t0) and t0 <= LB_T_MAX and np.min(np.abs(t - t0) / t0) > 1e-6
                        and t.size < self.max_lb_points):
                    self.lb_points[k] = np.sort(np.append(t, t0))
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
        if state.d_lo is None or state.d_hi is None:
            state.d_lo, state.d_hi = diff_box(lo, hi)
        d_lo, d_hi = state.d_lo, state.d_hi
        r_lo, r_hi = r_range(lo, hi, d_lo, d_hi)
        self.state = state
        self.L = int(model.add_vars(1, logsumexp(lo) - SAFETY, logsumexp(hi) + SAFETY)[0])
        # (S5) constant two-sided bounds e^{r_lo} ≤ P_k ≤ e^{r_hi}
        self.P = model.add_vars(K, np.maximum(0.0, np.exp(r_lo) - SAFETY), np.minimum(1.0, np.exp(r_hi) + SAFETY))
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
        for k in range(K):  # (S5) ratios: P_j ≤ e^{D_hi[j,k]} P_k
            for j in range(K):
                if j != k and d_hi[j, k] <= RATIO_MAX_LOG:
                    row({self.P[j]: 1.0, self.P[k]: -float(np.exp(d_hi[j, k]))}, -np.inf, SAFETY)
        c0, s = exp_chords(d_lo, d_hi)
        amax = float(max(np.max(np.abs(lo)), np.max(np.abs(hi))))
        for k in range(K):  # (S6)+(S7): P_k ≥ 1/t° − (1 + Σ_j chord_jk(a_j − a_k) − t°)/t°²
            other = [j for j in range(K) if j != k]
            C = float(np.sum(c0[other, k]))
            S = float(np.sum(s[other, k]))
            if not (np.all(np.isfinite(s[other, k])) and np.isfinite(C) and np.isfinite(S)):
                continue
            for t0 in state.lb_points[k]:
                if not 1.0 <= t0 <= LB_T_MAX or S / t0**2 > CUT_MAX_COEF:
                    continue
                c = {self.P[k]: 1.0}
                for j in other:
                    c[self.a[j]] = c.get(self.a[j], 0.0) + s[j, k] / t0**2
                c[self.a[k]] = c.get(self.a[k], 0.0) - S / t0**2
                row(c, (2 * t0 - 1.0 - C) / t0**2 - _cut_slack(C, S, t0, amax), np.inf)
        self.focus = {}
        for k, bps in state.focus.items():  # (S8): E_jk = interpolant of exp on d_jk's breakpoints
            E, parts = {}, []
            for j, bp in enumerate(bps):
                if bp is None or bp.size < 3 or bp[-1] > RATIO_MAX_LOG:
                    continue  # e^{d} up to 1e6 only: larger coefficients break the solver's arithmetic
                m = bp.size - 1
                y = model.add_vars(m, 0.0, 1.0, integer=True)
                rho = model.add_vars(m, min(bp[0], 0.0), max(bp[-1], 0.0))
                e = int(model.add_vars(1, 0.0, np.exp(bp[-1]) * (1 + 1e-12) + SAFETY)[0])
                row({int(i): 1.0 for i in y}, 1.0, 1.0)
                cd = {self.a[j]: 1.0, self.a[k]: -1.0}
                for i in rho:
                    cd[int(i)] = -1.0
                row(cd, 0.0, 0.0)  # d_jk = Σ ρ_i
                ce = {e: 1.0}
                for i in range(m):
                    t0_, t1_ = bp[i], bp[i + 1]
                    row({int(rho[i]): 1.0, int(y[i]): -t0_}, 0.0, np.inf)
                    row({int(rho[i]): 1.0, int(y[i]): -t1_}, -np.inf, 0.0)
                    sl = (np.exp(t1_) - np.exp(t0_)) / (t1_ - t0_)
                    ce[int(y[i])] = -(np.exp(t0_) - sl * t0_)
                    ce[int(rho[i])] = -sl
                # E ≤ ê(d) (E = ê(d) ≥ e^{d} is feasible; a larger E would only loosen the cut)
                row(ce, -np.inf, SAFETY + 1e-12 * (np.exp(bp[-1]) + np.max(np.abs(list(ce.values()))) * (1 + np.max(np.abs(bp)))))
                E[j] = e
                parts.append((j, y, rho, e, bp))
            if not E:
                continue
            self.focus[k] = parts
            other = [j for j in range(K) if j != k and j not in E]
            C = float(np.sum(c0[other, k])) if other else 0.0
            if not (np.isfinite(C) and np.all(np.isfinite(s[other, k]))):
                continue
            for t0 in state.lb_points[k]:  # P_k ≥ 1/t° − (1 + Σ_{PWL} E_jk + Σ_{rest} chord_jk − t°)/t°²
                S = float(np.sum(s[other, k])) if other else 0.0
                if not 1.0 <= t0 <= LB_T_MAX or max(S, 1.0) / t0**2 > CUT_MAX_COEF:
                    continue
                c = {self.P[k]: 1.0}
                for j, e in E.items():
                    c[e] = 1.0 / t0**2
                for j in other:
                    c[self.a[j]] = c.get(self.a[j], 0.0) + s[j, k] / t0**2
                c[self.a[k]] = c.get(self.a[k], 0.0) - S / t0**2
                row(c, (2 * t0 - 1.0 - C) / t0**2 - _cut_slack(C + len(E) * 1e6, S, t0, amax), np.inf)
        _add_dict_rows(model, rows, lo_r, hi_r)

    def fill(self, v: np.ndarray) -> None:
        """Set this block's columns in ``v`` consistently with the logits already in ``v``."""
        a = v[self.a]
        for k, parts in self.focus.items():
            for j, y, rho, e, bp in parts:
                d = float(np.clip(a[j] - a[k], bp[0], bp[-1]))
                i = int(np.clip(np.searchsorted(bp, d, side="right") - 1, 0, y.size - 1))
                v[y], v[rho] = 0.0, 0.0
                v[y[i]], v[rho[i]] = 1.0, d
                sl = (np.exp(bp[i + 1]) - np.exp(bp[i])) / (bp[i + 1] - bp[i])
                v[e] = np.exp(bp[i]) + sl * (d - bp[i])
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
        # total variation: ‖u‖₁ = 2 max_S u(S); where the sign of u_k is known from the
        # column bounds of P (S5), σ_k is fixed (no branching on it)
        p1_lo, p1_hi = model.col_lo[self.P1], model.col_hi[self.P1]
        o_lo = model.col_lo[self.P2] if self.P2 is not None else self.y0
        o_hi = model.col_hi[self.P2] if self.P2 is not None else self.y0
        self.fixed = np.where(p1_hi <= o_lo, 0, np.where(p1_lo >= o_hi, 1, -1))
        for k in np.flatnonzero(self.fixed >= 0):
            model.col_lo[self.sigma[k]] = model.col_hi[self.sigma[k]] = float(self.fixed[k])
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
        pos = np.where(self.fixed >= 0, self.fixed == 1, u > 0)
        v[self.sigma] = pos.astype(float)
        v[self.tau] = np.where(pos, np.clip(u, 0, 1), 0.0)  # u_k ≤ 0 with σ_k = 1 fixed: τ_k = 0 stays ≤ u_k + SAFETY


def _cut_slack(C: float, S: float, t0: float, amax: float) -> float:
    """Outward slack of an (S7)/(S8) row: SAFETY plus 1e-12 × the size of its terms (their
    rounding error is ~1e-16 relative), so a true point is never cut off by rounding."""
    return SAFETY + 1e-12 * (abs(C) + 2.0 * S * amax + 1.0) / t0**2


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
