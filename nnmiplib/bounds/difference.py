r"""Difference bounds of two networks of one shape on one input box (differential verification).

For an original network N¹ and its pruned or rounded copy N² (same layer sizes) on one
input box X, this module bounds the difference of their pre-activations

.. math:: \delta^{l} = a^{1,l} - a^{2,l},\qquad l = 0..L \quad(\delta^{L}\text{: the logits' difference})

and of their post-activations :math:`\partial h^{l} = h^{1,l} - h^{2,l}` directly, instead
of subtracting the two networks' own bounds. With one shared input the difference obeys

.. math::

    \delta^{l+1} = W^{1,l}\,\partial h^{l} + (W^{1,l} - W^{2,l})\,h^{2,l} + (b^{1,l} - b^{2,l}),
    \qquad \partial h^{0} = 0,

where :math:`W^1 - W^2` is sparse and small for a pruned copy: the second term is all that
drives the difference, while the separate bounds carry the full width of each network.

Symbolic propagation
--------------------
The pair is treated as one network whose hidden state is :math:`(\partial h^{l}, h^{2,l})`
and whose affine layers are :math:`(\partial h, h^2) \mapsto (\delta, a^2)`,
:math:`\begin{pmatrix} W^1 & W^1 - W^2 \\ 0 & W^2 \end{pmatrix}`. A row
:math:`\lambda^\top\delta^m` is bounded by back-substitution exactly as CROWN bounds one
network (:func:`nnmiplib.bounds.cheap.backsub_upper`), so every bound is linear in the
input until the last step, :math:`\max_{x\in X}\Lambda x + c = \Lambda^+ \mathrm{hi} +
\Lambda^- \mathrm{lo} + c`. Through the ReLUs two relaxations are used:

* :math:`h^2 = \mathrm{ReLU}(a^2)` takes CROWN's (chord above, slope ``s_l`` below), from
  network 2's own bounds ``[l², u²]``;
* :math:`\partial h = \mathrm{ReLU}(a^2 + \delta) - \mathrm{ReLU}(a^2)` takes linear bounds
  in :math:`(\delta, a^2)` chosen by the phases of the two neurons (active: l ≥ 0,
  inactive: u ≤ 0, unstable otherwise) and the bounds ``[d_l, d_u]`` of δ found for that
  layer. With :math:`M^+(\delta)` the chord of :math:`\max(0,\delta)` over
  :math:`[d_l, d_u]` (an upper line) and :math:`M^-(\delta)` the chord of
  :math:`\min(0, \delta)` (a lower line):

  ========================  ==========================  ==========================
  phases (net 1, net 2)     lower line of ∂h            upper line of ∂h
  ========================  ==========================  ==========================
  active, active            δ                           δ
  inactive, inactive        0                           0
  active, inactive          δ + a²                      δ + a²   (∂h = a¹)
  inactive, active          −a²                         −a²      (∂h = −a²)
  active, unstable          :math:`M^-(\delta)`         δ        (h² ≥ a²)
  unstable, active          δ        (h¹ ≥ a¹)          :math:`M^+(\delta)`
  inactive, unstable        :math:`M^-(\delta)`         0
  unstable, inactive        0                           :math:`M^+(\delta)`
  unstable, unstable        :math:`M^-(\delta)`         :math:`M^+(\delta)`
  ========================  ==========================  ==========================

  All rest on :math:`\min(0,\delta) \le \partial h \le \max(0,\delta)` (ReLU is monotone and
  1-Lipschitz) sharpened by the stable phase: e.g. a¹ ≥ 0 gives a² ≥ −δ, hence
  :math:`\mathrm{ReLU}(-a^2) \le \max(0, \delta)` and
  :math:`\partial h = \delta - \mathrm{ReLU}(-a^2) \ge \min(0, \delta)`.
  Where network 1 is unstable the upper line may instead be the two networks' own lines,
  :math:`h^1 \le s^1 (a^1 - l^1)` (chord) minus :math:`h^2 \ge \beta a^2`, written in
  :math:`(\delta, a^2)` as :math:`s^1\delta + (s^1 - \beta) a^2 - s^1 l^1`; where network 2
  is unstable the lower line may be :math:`h^1 \ge \alpha a^1` minus the chord of h²;
  each neuron takes the one lower (upper line) or higher (lower line) at the middle of the
  boxes of δ and a². On a net and its 50 %-pruned copy δ is so narrow that the chords of δ
  almost always win (the logit width changes by < 1 %); with wide δ the own lines win.

The roles of the two networks can be swapped (state :math:`(\partial h, h^1)`, rows on
:math:`-\delta`); ``reference="both"`` (default) runs both and keeps the tighter bound of
each neuron before the next layer uses it: on the logits, and on the hidden neurons where a
tighter δ can change a relaxation line (unstable in either network, δ of either sign after the
first orientation; ``_second_rows``). Each layer's result is intersected with the
interval difference of the separate bounds, :math:`[l^1 - u^2,\ u^1 - l^2]`, so it is never
looser than subtracting the two networks' own bounds.

What was taken from the literature
----------------------------------
* ReluDiff (Paulsen, Wang & Wang, ICSE 2020, "ReluDiff: Differential Verification of Deep
  Neural Networks"): propagate the difference neurons through the layer equation above
  alongside the two networks' own bounds, and split the ReLU step by the phases of the two
  neurons; its forward pass concretises the unstable cases to intervals.
* NeuroDiff (Paulsen, Wang, Wang & Wang, ASE 2020, "NeuroDiff: Scalable Differential
  Verification of Neural Networks using Fine-Grained Approximation"): keep the ReLU step of
  the difference symbolic with convex (linear) approximations of
  :math:`\mathrm{ReLU}(a^2 + \delta) - \mathrm{ReLU}(a^2)` in the difference instead of
  intervals — here the chords :math:`M^\pm` of the table.
* VeryDiff (Teuber, Kern, Janzen & Beckert, 2024, "Revisiting Differential Verification:
  Equivalence Verification with Confidence", differential zonotopes): carry the two
  networks and their difference together, the difference sharing the input's symbols so
  that stable and one-sided phases stay exact (the rows of the table that hold with
  equality), and only the doubly unstable case introduces new slack.
The back-substitution over the joint network (a CROWN pass rather than the papers' forward
symbolic intervals or zonotopes) is this module's choice: it reuses the single-network
machinery and its floating-point rules.

Floating-point soundness
------------------------
Every bound is widened outward by ``MARGIN · (1 + |v| + S)`` as in
:mod:`nnmiplib.bounds.cheap`, where S is the sum of the magnitudes of all terms that made
``v``: each affine step adds :math:`|\Lambda|\,(|W|\,\bar h + |b|)` with :math:`\bar h`
the magnitude bound of the layer's state, each relaxation
:math:`|\Lambda|\,(|p|\,\bar\delta + |q|\,\bar a + |r|)`, so the rounding of every product
(and of the chords' slopes) is covered with a factor ≥ 10⁵ to spare.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..domains import Box, box
from ..network import Network
from .alpha import alpha_bounds
from .base import Bounds, LayerBoxes
from .cheap import MARGIN, SLOPE_RULES, backsub_upper, clip_to, live_index, relu_relaxation, widen
from .compute import crown_bounds

__all__ = ["REFERENCES", "DifferenceBounds", "difference_arrays", "difference_bounds", "relu_difference_relaxation"]

REFERENCES = ("both", "2", "1")


# ------------------------------------------------------------------ the ReLU step
def _chord_max(dl, du):
    """Upper line p·δ + r of max(0, δ) on [dl, du]."""
    up = (dl < 0) & (du > 0)
    p = np.where(dl >= 0, 1.0, np.where(up, du / np.where(up, du - dl, 1.0), 0.0))
    return p, np.where(up, -p * dl, 0.0)


def _chord_min(dl, du):
    """Lower line p·δ + r of min(0, δ) on [dl, du]."""
    up = (dl < 0) & (du > 0)
    p = np.where(du <= 0, 1.0, np.where(up, -dl / np.where(up, du - dl, 1.0), 0.0))
    return p, np.where(up, -p * du, 0.0)


def relu_difference_relaxation(lA, uA, lB, uB, dl, du, separate: bool = True):
    r"""Linear bounds of :math:`\partial h = \mathrm{ReLU}(a^A) - \mathrm{ReLU}(a^B)` in
    :math:`(d, a^B)` with :math:`d = a^A - a^B` (the table of the module docstring).

    Parameters
    ----------
    lA, uA, lB, uB : bounds of the two pre-activations (one entry per neuron).
    dl, du : bounds of d.
    separate : also consider the two networks' own lines (module doc) and keep, per neuron
        and side, the better at the middle of the boxes.

    Returns
    -------
    dict with arrays ``pu, qu, ru`` (∂h ≤ pu·d + qu·a^B + ru) and ``pl, ql, rl``
    (∂h ≥ pl·d + ql·a^B + rl), and ``lo, hi``: the bounds of ∂h these lines give over the
    boxes of d and a^B, intersected with the interval difference of ReLU(a^A) and ReLU(a^B),
    widened (module doc).
    """
    actA, actB = lA >= 0, lB >= 0
    inA, inB = (uA <= 0) & ~actA, (uB <= 0) & ~actB
    unA, unB = ~(actA | inA), ~(actB | inB)
    cmp_, cmr = _chord_max(dl, du)
    cnp, cnr = _chord_min(dl, du)
    # upper line: slope 1 on d where A is active, the chord M⁺ where A is unstable, else 0
    pu = np.where(actA, 1.0, np.where(unA, cmp_, 0.0))
    ru = np.where(unA, cmr, 0.0)
    qu = (actA & inB).astype(np.float64) - (inA & actB)
    # lower line: slope 1 where the pair is (active, active | inactive) or (unstable, active),
    # the chord M⁻ where B is unstable, else 0
    pl = np.where(unB, cnp, ((actA & ~unB) | (unA & actB)).astype(np.float64))
    rl = np.where(unB, cnr, 0.0)
    ql = qu.copy()  # the two exact cases have the same line on both sides
    if separate:
        # the two networks' own lines, written in (d, a^B) (a^A = d + a^B): upper from
        # h^A ≤ s^A (a^A − l^A) and h^B ≥ β a^B (β = min(s^A, 1) on unstable B, exact otherwise);
        # lower from h^A ≥ α a^A and h^B ≤ s^B (a^B − l^B) (α = s^B on unstable A)
        sA = np.where(unA, uA / np.where(unA, uA - lA, 1.0), 0.0)
        sB = np.where(unB, uB / np.where(unB, uB - lB, 1.0), 0.0)
        # upper, where A is unstable: ∂h ≤ sA·d + (sA − b)·a^B − sA·lA, b the slope of h^B's lower line
        bB = np.where(actB, 1.0, np.where(inB, 0.0, sA))
        pu2, qu2, ru2 = sA, sA - bB, -sA * lA
        # lower, where B is unstable: ∂h ≥ a·d + (a − sB)·a^B + sB·lB, a the slope of h^A's lower line
        aA = np.where(actA, 1.0, np.where(inA, 0.0, sB))
        pl2, ql2, rl2 = aA, aA - sB, sB * lB
        mid_d, mid_a = (dl + du) / 2, (lB + uB) / 2
        take_u = unA & (pu2 * mid_d + qu2 * mid_a + ru2 < pu * mid_d + qu * mid_a + ru)
        take_l = unB & (pl2 * mid_d + ql2 * mid_a + rl2 > pl * mid_d + ql * mid_a + rl)
        pu, qu, ru = np.where(take_u, pu2, pu), np.where(take_u, qu2, qu), np.where(take_u, ru2, ru)
        pl, ql, rl = np.where(take_l, pl2, pl), np.where(take_l, ql2, ql), np.where(take_l, rl2, rl)
    # concrete bounds of ∂h: the lines over the boxes of d and a^B, ∩ the interval difference
    dmag = np.maximum(np.abs(dl), np.abs(du))
    amag = np.maximum(np.abs(lB), np.abs(uB))
    hi = np.maximum(pu * dl, pu * du) + np.maximum(qu * lB, qu * uB) + ru
    lo = np.minimum(pl * dl, pl * du) + np.minimum(ql * lB, ql * uB) + rl
    mag_u = np.abs(pu) * dmag + np.abs(qu) * amag + np.abs(ru)
    mag_l = np.abs(pl) * dmag + np.abs(ql) * amag + np.abs(rl)
    lo, hi = widen(lo, hi, mag_l, mag_u)
    ilo = np.maximum(lA, 0.0) - np.maximum(uB, 0.0)
    ihi = np.maximum(uA, 0.0) - np.maximum(lB, 0.0)
    ilo, ihi = widen(ilo, ihi, np.abs(lA) + np.abs(uB), np.abs(uA) + np.abs(lB))
    lo, hi = np.maximum(lo, ilo), np.minimum(hi, ihi)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)  # both valid: a crossing is rounding
    return {"pu": pu, "qu": qu, "ru": ru, "pl": pl, "ql": ql, "rl": rl, "lo": lo, "hi": hi}


# ------------------------------------------------------------------ back-substitution
@dataclass
class _Pair:
    """One orientation of the pair: d = a^A − a^B, state (∂h = h^A − h^B, h^B)."""

    WA: list
    dW: list
    db: list
    WB: list
    bB: list
    lA: list
    uA: list
    lB: list
    uB: list
    absWA: list
    absdW: list
    absWB: list
    relax: list = field(default_factory=list)   # per hidden layer: (∂h relaxation dict, {rule: (su, tu, sl)})
    vmag_d: list = field(default_factory=list)  # per affine layer: |W^A| ∂h̄ + |ΔW| h̄^B + |Δb|
    vmag_a: list = field(default_factory=list)  # per affine layer: |W^B| h̄^B + |b^B|
    sign: float = 1.0                           # d = sign · δ


_DERIVED: dict = {}  # (ids of two networks' read-only parameter arrays) → (the arrays, what _derived made)


def _derived(weights1, biases1, weights2, biases2):
    """W¹, W², b¹, b², ΔW, Δb, −ΔW, −Δb and |W¹|, |W²|, |ΔW| as float64 lists. A pair of networks is
    bounded on many domains (every image of a grid), so these are kept for the last few
    pairs — only when every array is read-only (a :class:`~nnmiplib.network.Network`'s
    are), so a cached entry can never go stale; the entry holds the arrays, so their ids
    stay theirs."""
    arrays = (*weights1, *biases1, *weights2, *biases2)
    frozen = all(isinstance(a, np.ndarray) and a.dtype == np.float64 and not a.flags.writeable for a in arrays)
    key = tuple(id(a) for a in arrays) + (len(weights1),)
    if frozen and key in _DERIVED:
        return _DERIVED[key][1]
    W1 = [np.asarray(w, float) for w in weights1]
    W2 = [np.asarray(w, float) for w in weights2]
    b1 = [np.asarray(b, float) for b in biases1]
    b2 = [np.asarray(b, float) for b in biases2]
    dW = [a - b for a, b in zip(W1, W2)]
    db = [a - b for a, b in zip(b1, b2)]
    out = (W1, W2, b1, b2, dW, db, [-w for w in dW], [-b for b in db],
           [np.abs(w) for w in W1], [np.abs(w) for w in W2], [np.abs(w) for w in dW])
    if frozen:
        for a in out[4:]:
            for x in a:
                x.setflags(write=False)
        while len(_DERIVED) >= 4:
            _DERIVED.pop(next(iter(_DERIVED)))
        _DERIVED[key] = (arrays, out)
    return out


def _pairs(weights1, biases1, weights2, biases2, bounds1, bounds2, reference):
    """The orientations asked for by ``reference``, sharing the weight arrays and their |·|."""
    W1, W2, b1, b2, dW, db, ndW, ndb, A1, A2, AD = _derived(weights1, biases1, weights2, biases2)
    out = []
    if reference in ("both", "2"):
        out.append(_Pair(W1, dW, db, W2, b2, *bounds1, *bounds2, A1, AD, A2, sign=1.0))
    if reference in ("both", "1"):
        out.append(_Pair(W2, ndW, ndb, W1, b1, *bounds2, *bounds1, A2, AD, A1, sign=-1.0))
    return out


def _joint_upper(P: _Pair, Ld, L2, c, cmag, m: int, rule: str, lo, hi, xmag) -> np.ndarray:
    """Upper bounds of the rows ``Ld·∂h^{m−1} + L2·h^{B,m−1} + c`` (state of hidden layer m−1)
    over the box, through the pair's relaxations of hidden layers m−1..0 (widened; ``cmag``:
    the magnitude of the terms summed so far)."""
    for k in range(m - 1, -1, -1):
        rel, hrel = P.relax[k]
        su, tu, sl = hrel[rule]
        pos = Ld > 0
        Ldp, Ldn = np.where(pos, Ld, 0.0), np.where(pos, 0.0, Ld)
        Lg = Ldp * rel["pu"] + Ldn * rel["pl"]                      # on d^k
        La = Ldp * rel["qu"] + Ldn * rel["ql"]                      # on a^{B,k}
        c = c + Ldp @ rel["ru"] + Ldn @ rel["rl"]
        cmag = cmag + Ldp @ rel["mag_u"] - Ldn @ rel["mag_l"]
        pos2 = L2 > 0
        L2p = np.where(pos2, L2, 0.0)
        La = La + L2 * np.where(pos2, su, sl)
        c = c + L2p @ tu
        cmag = cmag + np.abs(L2) @ rel["mag_h"]
        # affine layer k: d^k = W^A ∂h^{k−1} + ΔW h^{B,k−1} + Δb, a^{B,k} = W^B h^{B,k−1} + b^B
        live = rel["live"]  # neurons inactive in both networks carry nothing back
        if live is None:
            WA, dW, WB, db, bB, vd, va = P.WA[k], P.dW[k], P.WB[k], P.db[k], P.bB[k], P.vmag_d[k], P.vmag_a[k]
        else:
            Lg, La = Lg[:, live], La[:, live]
            WA, dW, WB = (P.WA[k][live] if k else None), P.dW[k][live], P.WB[k][live]
            db, bB, vd, va = P.db[k][live], P.bB[k][live], P.vmag_d[k][live], P.vmag_a[k][live]
        c = c + Lg @ db + La @ bB
        cmag = cmag + np.abs(Lg) @ vd + np.abs(La) @ va
        if k == 0:
            Ld, L2 = None, Lg @ dW + La @ WB
        else:
            Ld, L2 = Lg @ WA, Lg @ dW + La @ WB
    val = np.maximum(L2, 0.0) @ hi + np.minimum(L2, 0.0) @ lo + c
    mag = np.abs(L2) @ xmag + cmag
    return val + MARGIN * (1.0 + np.abs(val) + mag)


def _rows_upper(P: _Pair, C, c0, m, rules, lo, hi, xmag, idx=None):
    """Upper bounds of ``C·d^m + c0`` (d = a^A − a^B of affine layer m), the best over ``rules``;
    ``C=None`` stands for ``[I; −I]`` (upper bounds of d^m, then of −d^m) restricted to the
    neurons ``idx`` (default all; not for m = 0, which is cheap)."""
    if C is None and m == 0:
        Ld = L2 = c = cmag = None
    elif C is None:
        sel = slice(None) if idx is None else idx
        Ld, L2 = (np.vstack([M[m][sel], -M[m][sel]]) for M in (P.WA, P.dW))
        c = np.concatenate([P.db[m][sel], -P.db[m][sel]]) + c0
        cmag = np.concatenate([P.vmag_d[m][sel], P.vmag_d[m][sel]]) + np.abs(c0)
    else:
        Ld, L2, c = C @ P.WA[m], C @ P.dW[m], C @ P.db[m] + c0
        cmag = np.abs(C) @ P.vmag_d[m] + np.abs(c0)  # the affine step into layer m
    if m == 0:  # d^0 = ΔW x + Δb: exact up to rounding
        if C is None:  # centre ± radius: the maximum and minimum of each row at once
            mid, rad = (lo + hi) / 2, (hi - lo) / 2
            cen, r = P.dW[0] @ mid + P.db[0], P.absdW[0] @ rad
            v = np.concatenate([cen + r, r - cen]) + c0
            mag = np.concatenate([P.vmag_d[0], P.vmag_d[0]]) + np.abs(c0)
            return v + MARGIN * (1.0 + np.abs(v) + mag)
        return backsub_upper(L2, c, [], [], [], lo, hi, xmag)
    best = None
    for r in rules:
        v = _joint_upper(P, Ld, L2, c, cmag, m, r, lo, hi, xmag)
        best = v if best is None else np.minimum(best, v)
    return best


def _layer_magnitudes(P: _Pair, k: int, dh_mag, hB_mag):
    vd = P.absdW[k] @ hB_mag + np.abs(P.db[k])
    if np.any(dh_mag):
        vd = vd + P.absWA[k] @ dh_mag
    P.vmag_d.append(vd)
    P.vmag_a.append(P.absWB[k] @ hB_mag + np.abs(P.bB[k]))


def _add_relaxation(P: _Pair, k: int, dl, du, rules):
    """Relaxations of hidden layer k for the pair (d ∈ [dl, du] in the pair's orientation)."""
    lA, uA, lB, uB = P.lA[k], P.uA[k], P.lB[k], P.uB[k]
    rel = relu_difference_relaxation(lA, uA, lB, uB, dl, du)
    dmag = np.maximum(np.abs(dl), np.abs(du))
    amag = np.maximum(np.abs(lB), np.abs(uB))
    rel["mag_u"] = np.abs(rel["pu"]) * dmag + np.abs(rel["qu"]) * amag + np.abs(rel["ru"])
    rel["mag_l"] = np.abs(rel["pl"]) * dmag + np.abs(rel["ql"]) * amag + np.abs(rel["rl"])
    hrel = {r: relu_relaxation(lB, uB, r) for r in rules}
    nz = [rel[k] != 0 for k in ("pu", "pl", "qu", "ql")] + [x != 0 for r in rules for x in hrel[r][::2]]
    rel["live"] = live_index(np.logical_or.reduce(nz), P.dW[k].size)
    su0, tu0, _ = hrel[rules[0]]
    rel["mag_h"] = np.abs(su0) * amag + np.abs(tu0) + amag  # s_u·ā + t_u, or s_l·ā ≤ ā
    P.relax.append((rel, hrel))
    return rel


def _state_interval(P: _Pair, m: int, h_l, h_u, low, upp):
    """δ^m over the boxes of the state below (∂h ∈ [h_l, h_u], h^B ∈ [l^B⁺, u^B⁺]) by interval
    arithmetic on the orientation's affine step d^m = W^A (sign·∂h) + ΔW h^B + Δb in
    centre–radius form, widened by the magnitude of its terms (``P.vmag_d``: |W^A| |∂h̄| +
    |ΔW| h̄^B + |Δb| ≥ the sum of |each term|, since |mid| + radius = max(|l|, |u|)), and
    intersected with ``[low, upp]``."""
    g_l, g_u = (h_l, h_u) if P.sign > 0 else (-h_u, -h_l)
    hB_l, hB_u = np.maximum(P.lB[m - 1], 0.0), np.maximum(P.uB[m - 1], 0.0)
    cen = P.WA[m] @ ((g_l + g_u) / 2) + P.dW[m] @ ((hB_l + hB_u) / 2) + P.db[m]
    rad = P.absWA[m] @ ((g_u - g_l) / 2) + P.absdW[m] @ ((hB_u - hB_l) / 2)
    lo, hi = widen(cen - rad, cen + rad, P.vmag_d[m], P.vmag_d[m])
    if P.sign < 0:
        lo, hi = -hi, -lo
    return clip_to(lo, hi, low, upp)


def _second_rows(idx, dl, du, l1, u1, l2, u2):
    """The hidden neurons on which the second orientation's δ bounds can change a relaxation
    line: unstable in either network (a stable pair of phases relaxes ∂h exactly whatever
    δ's bounds) and with δ's bounds from the first orientation on both sides of 0 (where δ
    keeps one sign, the chords M± are δ and 0 whatever its bounds). Elsewhere the first
    orientation's δ bounds stand (they still bound δ for the report and the MIP). On a net
    and its 50 %-pruned copy this leaves a few neurons per layer and the logits' widths as
    with every neuron; on 90 %-pruned copies, where δ is wide, most unstable ones."""
    keep = (((l1 < 0) & (u1 > 0)) | ((l2 < 0) & (u2 > 0))) & (dl < 0) & (du > 0)
    return np.intersect1d(idx, np.flatnonzero(keep))


def difference_arrays(weights1, biases1, weights2, biases2, lo, hi, lowers1, uppers1, lowers2, uppers2, *,
                      reference: str = "both", lower_slope="adaptive", unstable_only: bool = False,
                      stats: dict | None = None):
    r"""Bounds of δ = a¹ − a² per affine layer and of ∂h = h¹ − h² per hidden layer (module doc).

    Parameters
    ----------
    weights1, biases1, weights2, biases2 : the two networks' layers (same shapes).
    lo, hi : the shared input box.
    lowers1, uppers1, lowers2, uppers2 : each network's own pre-activation bounds per layer.
    reference : "both" (default), "2" (state (∂h, h²)) or "1" (state (∂h, h¹), rows on −δ).
    lower_slope : CROWN's lower-slope rule(s) for the reference network's ReLUs: one of
        :data:`~nnmiplib.bounds.cheap.SLOPE_RULES` (default "adaptive"), a tuple of them, or
        "best" = ("adaptive", "zero") (each row keeps the better; twice the work, and on the
        thesis's nets at most 0.1 % narrower).
    unstable_only : on hidden layers after the first, back-substitute δ only for the neurons
        unstable in either network; the others keep the interval bound of the layer's affine
        step over the state's boxes (∂h from the layer below, h² ∈ [l²⁺, u²⁺]) ∩ the interval
        difference, which every neuron gets in any case. Only an unstable neuron's ReLU-step
        lines depend on δ's bounds (a stable pair of phases gives an exact line), so what is
        lost is the stable neurons' own δ and ∂h boxes, and through them a little of the next
        layer's affine-step interval — as ``crown_bounds(unstable_only=True)`` does for one
        network. On a small box, where most neurons are stable in both networks, it is faster
        with the logits' bounds unchanged to 1e-6 (``benchmarks/pairs.py``, the 50 %-pruned
        pairs at ε = 0.02, median over 15 images: 1.41× on 800x2 and 200x5, 1.26× on 100x10;
        nothing to skip on 3000x1, whose only hidden layer is the first).
    stats : if a dict, filled with per-layer seconds and rows.

    Returns
    -------
    (dlo, dhi, hlo, hhi, src, pairs) : lists of arrays — δ bounds for layers 0..L, ∂h bounds for
    hidden layers 0..L−1, per-neuron sources ("difference" where the symbolic bound beat the
    interval difference on either side, else "interval"), and the internal per-orientation
    relaxations (used by :meth:`DifferenceBounds.upper`).
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    rules = ("adaptive", "zero") if lower_slope == "best" else (
        (lower_slope,) if isinstance(lower_slope, str) else tuple(lower_slope))
    for r in rules:
        if r not in SLOPE_RULES:
            raise ValueError(f"lower_slope must be 'best', one of {SLOPE_RULES} or a tuple of them, got {r!r}")
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    xmag = np.maximum(np.abs(lo), np.abs(hi))
    L = len(weights1) - 1
    lw1 = [np.asarray(a, float) for a in lowers1]
    up1 = [np.asarray(a, float) for a in uppers1]
    lw2 = [np.asarray(a, float) for a in lowers2]
    up2 = [np.asarray(a, float) for a in uppers2]
    pairs = _pairs(weights1, biases1, weights2, biases2, (lw1, up1), (lw2, up2), reference)
    for P in pairs:
        _layer_magnitudes(P, 0, np.zeros(lo.size), xmag)
    dlo, dhi, hlo, hhi, src, layer_stats = [], [], [], [], [], []
    for m in range(L + 1):
        t0 = time.perf_counter()
        n = lw1[m].size
        ilo, ihi = widen(lw1[m] - up2[m], up1[m] - lw2[m], np.abs(lw1[m]) + np.abs(up2[m]),
                         np.abs(up1[m]) + np.abs(lw2[m]))
        low, upp = ilo.copy(), ihi.copy()
        # neurons inactive in both networks (∂h = 0 whatever δ) keep the interval difference
        idx = np.arange(n) if m == 0 or m == L else np.flatnonzero((up1[m] > 0) | (up2[m] > 0))
        if 0 < m < L:  # the affine step over the state's boxes: cheap, and at times tighter
            low, upp = _state_interval(pairs[0], m, hlo[-1], hhi[-1], low, upp)
        if unstable_only and 0 < m < L:
            idx = np.intersect1d(idx, np.flatnonzero(((lw1[m] < 0) & (up1[m] > 0)) | ((lw2[m] < 0) & (up2[m] > 0))))
        for i, P in enumerate(pairs if m > 0 else pairs[:1]):  # δ⁰ = ΔW x + Δb is exact already
            rows = idx if i == 0 or m == L else _second_rows(idx, low, upp, lw1[m], up1[m], lw2[m], up2[m])
            if not rows.size:
                continue
            v = _rows_upper(P, None, np.zeros(2 * rows.size), m, rules, lo, hi, xmag,
                            idx=None if rows.size == n else rows)
            u_d, l_d = v[:rows.size], -v[rows.size:]  # bounds of d = sign·δ
            l_p, u_p = (l_d, u_d) if P.sign > 0 else (-u_d, -l_d)
            low[rows], upp[rows] = np.maximum(low[rows], l_p), np.minimum(upp[rows], u_p)
        bad = low > upp  # every side is valid: a crossing is rounding, keep the hull
        if bad.any():
            low, upp = np.where(bad, np.minimum(low, upp), low), np.where(bad, np.maximum(low, upp), upp)
        tol = 1e-8 * (1.0 + np.abs(ilo) + np.abs(ihi))
        src.append(np.where((low > ilo + tol) | (upp < ihi - tol), "difference", "interval"))
        dlo.append(low)
        dhi.append(upp)
        if m < L:
            for P in pairs:
                dl_, du_ = (low, upp) if P.sign > 0 else (-upp, -low)
                rel = _add_relaxation(P, m, dl_, du_, rules)
                if P is pairs[0]:
                    h_l, h_u = (rel["lo"], rel["hi"]) if P.sign > 0 else (-rel["hi"], -rel["lo"])
                else:
                    o_l, o_u = (rel["lo"], rel["hi"]) if P.sign > 0 else (-rel["hi"], -rel["lo"])
                    h_l, h_u = np.maximum(h_l, o_l), np.minimum(h_u, o_u)
            h_l, h_u = np.minimum(h_l, h_u), np.maximum(h_l, h_u)
            hlo.append(h_l)
            hhi.append(h_u)
            for P in pairs:
                # magnitudes of the state: |∂h| and h^B ∈ [0, max(u^B, 0)]
                _layer_magnitudes(P, m + 1, np.maximum(np.abs(h_l), np.abs(h_u)), np.maximum(P.uB[m], 0.0))
        layer_stats.append({"layer": m, "rows": 2 * n, "seconds": time.perf_counter() - t0,
                            "mean_width": float(np.mean(upp - low)),
                            "mean_interval_width": float(np.mean(ihi - ilo))})
    if stats is not None:
        stats.update({"reference": reference, "lower_slope": list(rules), "unstable_only": unstable_only,
                      "layers": layer_stats})
    return dlo, dhi, hlo, hhi, src, (pairs, rules)


# ------------------------------------------------------------------ the result type
@dataclass
class DifferenceBounds(LayerBoxes):
    """Bounds on the difference of two networks of one shape on one input box.

    Attributes
    ----------
    lower, upper : list of float64 arrays, ``lower[l][j] ≤ a¹_j − a²_j ≤ upper[l][j]`` for
        every affine layer l = 0..L (``lower[-1]``, ``upper[-1]``: the logits' difference).
    h_lower, h_upper : the same for ``h¹ − h²`` on hidden layers l = 0..L−1.
    source : per layer, per neuron "difference" (the symbolic bound beat the interval
        difference of the separate bounds on at least one side) or "interval".
    time : seconds (the two networks' own bounds included).
    method : how each network's own bounds were obtained ("crown", "alpha", "given").
    net_digests : (digest of net 1, digest of net 2).
    domain : the input box.
    bounds : (Bounds of net 1, Bounds of net 2) used for the relaxations.
    stats : per-layer seconds and widths, the reference and slope rules, the nets' bound time.
    """

    lower: list
    upper: list
    h_lower: list
    h_upper: list
    source: list
    time: float
    method: str
    net_digests: tuple
    domain: Box
    bounds: tuple
    stats: dict = field(default_factory=dict)
    _state: tuple | None = field(default=None, repr=False)
    _lohi: tuple | None = field(default=None, repr=False)

    def interval_width(self, l: int) -> np.ndarray:
        """Width of the interval difference ``[l¹ − u², u¹ − l²]`` of the separate bounds."""
        b1, b2 = self.bounds
        return (b1.upper[l] - b2.lower[l]) - (b1.lower[l] - b2.upper[l])

    def check_nets(self, net1: Network, net2: Network) -> None:
        if (net1.digest(), net2.digest()) != tuple(self.net_digests):
            raise ValueError("these difference bounds belong to another pair of networks (or the pair swapped); "
                             "recompute them with difference_bounds(net1, net2, domain)")

    def violation(self, net1: Network, net2: Network, x) -> float:
        """Largest amount by which δ or ∂h of the inputs ``x`` leaves the bounds (≤ 0 if none)."""
        self.check_nets(net1, net2)
        X = np.atleast_2d(np.asarray(x, float))
        p1, p2 = net1.preactivations(X), net2.preactivations(X)
        worst = -np.inf
        for l in range(self.n_layers):
            d = p1[l] - p2[l]
            worst = max(worst, float(np.max(d - self.upper[l])), float(np.max(self.lower[l] - d)))
            if l < self.n_layers - 1:
                g = np.maximum(p1[l], 0.0) - np.maximum(p2[l], 0.0)
                worst = max(worst, float(np.max(g - self.h_upper[l])), float(np.max(self.h_lower[l] - g)))
        return worst

    def upper_rows(self, C, c=None) -> np.ndarray:
        r"""Upper bounds over the domain of the rows :math:`C\,\delta^L + c` (one per row of ``C``).

        By the same back-substitution as the bounds themselves (each orientation, each slope
        rule; the smallest), so e.g. ``C = e_i − e_j`` bounds :math:`\delta_i - \delta_j`
        far tighter than ``upper[-1][i] − lower[-1][j]``. Widened like every bound here.
        """
        if self._state is None:
            raise ValueError("these difference bounds carry no relaxation (loaded or built by hand)")
        C = np.atleast_2d(np.asarray(C, float))
        if C.shape[1] != self.lower[-1].size:
            raise ValueError(f"C has {C.shape[1]} columns; the logits have {self.lower[-1].size}")
        c = np.zeros(C.shape[0]) if c is None else np.broadcast_to(np.asarray(c, float), (C.shape[0],))
        pairs, rules = self._state
        lo, hi = self._lohi
        xmag = np.maximum(np.abs(lo), np.abs(hi))
        m = self.n_layers - 1
        best = np.maximum(C, 0) @ self.upper[-1] + np.minimum(C, 0) @ self.lower[-1] + c
        mag = np.abs(C) @ np.maximum(np.abs(self.lower[-1]), np.abs(self.upper[-1])) + np.abs(c)
        best = best + MARGIN * (1.0 + np.abs(best) + mag)
        for P in pairs:
            v = _rows_upper(P, C * P.sign, c, m, rules, lo, hi, xmag)
            best = np.minimum(best, v)
        return best

    def lines(self, l: int) -> list[dict]:
        r"""The ReLU-step lines of hidden layer ``l`` as rows for a model holding both networks.

        Each dict has ``side`` ("upper": ∂h ≤ …, "lower": ∂h ≥ …), arrays ``p, q1, q2, r`` of
        :math:`p\,\delta + q_1 a^1 + q_2 a^2 + r`, and ``mask``: the neurons where at least
        one of the two networks is unstable (elsewhere ∂h is an exact function the model
        already has). Orientation "2" gives its lines in (δ, a²); orientation "1" its lines
        in (−δ, a¹) turned into lines of ∂h = −(h² − h¹) (upper ↔ lower).
        """
        if self._state is None:
            raise ValueError("these difference bounds carry no relaxation (loaded or built by hand)")
        if not 0 <= l < self.n_layers - 1:
            raise ValueError(f"hidden layers are 0..{self.n_layers - 2}, got {l}")
        pairs, _ = self._state
        b1, b2 = self.bounds
        mask = ~(((b1.lower[l] >= 0) | (b1.upper[l] <= 0)) & ((b2.lower[l] >= 0) | (b2.upper[l] <= 0)))
        out = []
        for P in pairs:
            rel = P.relax[l][0]
            zero = np.zeros_like(rel["pu"])
            if P.sign > 0:
                out.append({"side": "upper", "p": rel["pu"], "q1": zero, "q2": rel["qu"], "r": rel["ru"], "mask": mask})
                out.append({"side": "lower", "p": rel["pl"], "q1": zero, "q2": rel["ql"], "r": rel["rl"], "mask": mask})
            else:  # −∂h ≤ pu·(−δ) + qu·a¹ + ru  ⇔  ∂h ≥ pu·δ − qu·a¹ − ru
                out.append({"side": "lower", "p": rel["pu"], "q1": -rel["qu"], "q2": zero, "r": -rel["ru"],
                            "mask": mask})
                out.append({"side": "upper", "p": rel["pl"], "q1": -rel["ql"], "q2": zero, "r": -rel["rl"],
                            "mask": mask})
        return out

    def summary(self) -> list[dict]:
        """One row per layer: mean width of δ, of the interval difference, their ratio."""
        rows = []
        for l in range(self.n_layers):
            w, iw = self.width(l), self.interval_width(l)
            rows.append({"layer": l, "n": int(w.size), "mean width": float(w.mean()),
                         "mean interval width": float(iw.mean()),
                         "ratio": float(iw.mean() / max(w.mean(), 1e-300)),
                         "difference": int(np.sum(self.source[l] == "difference"))})
        return rows

    def __repr__(self) -> str:
        w = float(self.width(-1).mean())
        return f"<DifferenceBounds {self.method} layers={self.sizes} logit width={w:.4g} {self.time:.2f}s>"


def _own_bounds(net: Network, dom: Box, b, method: str) -> Bounds:
    if b is None:
        # a stable neuron's ReLU is exact, so its lines do not depend on its bounds (only its
        # own ∂h box can be looser): back-substitute only the unstable ones (measured on the
        # thesis's nets at ε = 0.02: the same logit widths at 1/2.5–1/3.8 of the CROWN time)
        return crown_bounds(net, dom, unstable_only=True) if method == "crown" else alpha_bounds(net, dom)
    if not isinstance(b, Bounds):
        raise ValueError(f"bounds must be nnmiplib Bounds (one per network) or None, got {type(b).__name__}")
    b.check_net(net)
    if b.domain.n != dom.n or np.any(dom.lo < b.domain.lo - 1e-12) or np.any(dom.hi > b.domain.hi + 1e-12):
        raise ValueError("bounds were computed on a smaller domain than the one given; recompute them on it")
    return b


def difference_bounds(net1: Network, net2: Network, domain, *, bounds=None, method: str = "crown",
                      reference: str = "both", lower_slope="adaptive",
                      unstable_only: bool = False) -> DifferenceBounds:
    r"""Bounds on δ = a¹ − a² (every affine layer) and ∂h = h¹ − h² (every hidden layer) of two
    networks of one shape on one input box (module doc: the propagation and its ReLU cases).

    Parameters
    ----------
    net1, net2 : Network
        Same layer sizes (e.g. an original and its pruned or rounded copy).
    domain : Box or (lo, hi)
        The shared input box.
    bounds : (Bounds, Bounds), optional
        Each network's own pre-activation bounds on ``domain`` (e.g. LP bounds); tighter own
        bounds give tighter difference bounds. Default: computed with ``method``.
    method : "crown" (default) or "alpha": how the own bounds are computed when not given.
    reference, lower_slope, unstable_only : see :func:`difference_arrays`. ``unstable_only=True``
        gives nearly the same logit bounds faster where most neurons are stable in both
        networks, with looser boxes for the stable neurons' own δ and ∂h.

    Returns
    -------
    DifferenceBounds
        Never looser than the interval difference of the two networks' own bounds.

    Raises
    ------
    ValueError
        Networks that are not Networks or differ in layer sizes, a domain of the wrong
        dimension, bounds of other networks or a smaller domain, an unknown method.
    """
    for n in (net1, net2):
        if not isinstance(n, Network):
            raise ValueError(f"difference_bounds needs nnmiplib Networks, got {type(n).__name__}")
    if net1.layer_sizes != net2.layer_sizes:
        raise ValueError(f"difference bounds pair neurons one to one: layer sizes differ "
                         f"({net1.layer_sizes} vs {net2.layer_sizes})")
    if isinstance(domain, (tuple, list)) and len(domain) == 2:
        domain = box(*domain)
    if not isinstance(domain, Box):
        raise ValueError(f"domain must be a Box or a (lo, hi) pair, got {type(domain).__name__}")
    domain.check_dim(net1.n_inputs)
    if method not in ("crown", "alpha"):
        raise ValueError(f"method must be 'crown' or 'alpha', got {method!r}")
    if not isinstance(unstable_only, bool):
        raise ValueError(f"unstable_only must be True or False, got {unstable_only!r}")
    if bounds is not None and not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
        raise ValueError("bounds must be a pair (Bounds of net1, Bounds of net2) or None")
    t0 = time.perf_counter()
    b1 = _own_bounds(net1, domain, None if bounds is None else bounds[0], method)
    b2 = _own_bounds(net2, domain, None if bounds is None else bounds[1], method)
    t_own = time.perf_counter() - t0
    st: dict = {}
    dlo, dhi, hlo, hhi, src, state = difference_arrays(
        net1.weights, net1.biases, net2.weights, net2.biases, domain.lo, domain.hi, b1.lower, b1.upper,
        b2.lower, b2.upper, reference=reference, lower_slope=lower_slope, unstable_only=unstable_only, stats=st)
    total = time.perf_counter() - t0
    st.update(own_bounds_time=t_own, difference_time=total - t_own)
    return DifferenceBounds(dlo, dhi, hlo, hhi, src, total, "given" if bounds is not None else method,
                            (net1.digest(), net2.digest()), domain, (b1, b2), st, state,
                            (np.asarray(domain.lo, float), np.asarray(domain.hi, float)))
