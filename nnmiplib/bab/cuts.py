r"""Cutting planes for the branch and bound's relaxation: the convex hull of each ReLU over its box.

The triangle relaxation of an unstable neuron ``h = max(0, w·p + b)`` looks at its
pre-activation ``a = w·p + b`` only; on the box ``p ∈ [L, U]`` of its inputs (the input box for
the first hidden layer, the previous layer's post-activation bounds for the others) the convex
hull of the neuron's graph is much smaller. Anderson et al. (2020, *Strong mixed-integer
programming formulations for trained neural networks*, Thm. 1) describe it in ``(p, h)`` by
``h ≥ 0``, ``h ≥ w·p + b`` and, for every ``I ⊆ [n]`` and ``ĵ ∉ I`` with ``ℓ(I) ≥ 0 > ℓ(I ∪ {ĵ})``,

.. math::

    h \le \sum_{i \in I} w_i (p_i - \breve L_i) + \frac{\ell(I)}{\breve U_ĵ - \breve L_ĵ} (p_ĵ - \breve L_ĵ),
    \qquad \ell(I) = \sum_{i \in I} w_i \breve L_i + \sum_{i \notin I} w_i \breve U_i + b,

with ``L̆_i = L_i, Ŭ_i = U_i`` where ``w_i ≥ 0`` and the other way round where ``w_i < 0``.
Each such cut is valid on the whole box (its right-hand side is ≥ 0 and ≥ ``w·p + b``
there), so it is valid at every node of a search on that box, whatever the node decides.

**Separation.** At a point ``p`` the tightest cut is a fractional knapsack: order the
inputs by ``r_i = (p_i − L̆_i)/(Ŭ_i − L̆_i)`` and take them into ``I`` while ``ℓ`` stays
≥ 0; the next one is ``ĵ`` (:func:`hull_cuts`).

**Where the points come from.** :func:`relaxation_cuts` (the default) separates at the
relaxation's own optimum, without an LP (the active-set idea of De Palma et al., 2021): the
back-substituted bound of :mod:`nnmiplib.bab.relax` is the maximum of a linear function of
the input, and :func:`~nnmiplib.bab.relax.relaxation_point` turns its coefficients into a
point of the triangle relaxation (inputs between the box's centre and the vertex, every
neuron on the line its coefficient chose). Each round adds the cuts violated there, and
α, β, π are optimised again; the separation costs milliseconds, so it also runs at the
roots of the tightening's per-neuron searches (:mod:`nnmiplib.bab.tightening`) and in
``verify``. :func:`root_cuts` separates at the LP relaxation's optima instead (the Big-M
model with ``z ∈ [0, 1]``, HiGHS, per open row): as tight, but an LP round on a
5-layer net takes seconds where the whole separation here takes one.

**Two neurons.** The hull of one ReLU cannot see that two neurons of a layer move together.
:func:`pair_facets` gives the facets of the exact hull of two ReLUs over an octagon of their
pre-activations (bounds of ``a_i``, ``a_j``, ``a_i ± a_j``: :func:`pair_octagons`; PRIMA's
two-neuron relaxation, Müller et al. 2022), and :func:`pair_cuts` writes them over the layer's
inputs like the others; :func:`relaxation_cuts` separates them with ``pairs``. PV's margin
form, 800x2 digit 1, α bounds, the worst row's LP relaxation: 10.21, 4.98 once the single-neuron
hull cuts stop gaining, 3.60 with pair facets too (the 40 neurons of each layer with the
largest relaxation gap); the search does not gain from them yet (:data:`~nnmiplib.bab.search.PAIR_CUTS`).

The cuts are handed to :mod:`nnmiplib.bab.relax`, which adds each with a multiplier
``π ≥ 0`` to every node's back-substitution (``f ≤ f + π (g·p + e − h)``) and optimises π
with α, β — the general cutting planes of GCP-CROWN (Zhang et al., 2022), here with the
single-neuron hull as the cut family. PV's margin rows, root bound of the worst row on
tightened bounds: 800x2 digit 1 6.87 without cuts, 1.97 with :func:`relaxation_cuts` (235
cuts, 0.8 s), 2.20 with 8 LP rounds of :func:`root_cuts`; 200x5 digit 1 7.31, 5.50
(2 288 cuts, 1.7 s), 5.41 (21 s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ..bounds.cheap import MARGIN

__all__ = ["Cuts", "hull_cuts", "pair_cuts", "pair_facets", "pair_octagons", "relaxation_cuts", "root_cuts",
           "with_logit_bounds"]


@dataclass
class Cuts:
    """Cuts ``Σ_t H_t h_{J_t} ≤ G p + e`` of one hidden layer of a
    :class:`~nnmiplib.bab.relax.Layers` (reduced indices): ``J`` ``(m, q)`` the neurons of each
    cut and ``H`` ``(m, q)`` their coefficients (a 1-D ``J`` and ``H=None``: one neuron per cut
    with coefficient 1, ``h_J ≤ G p + e``, as the single-neuron hull gives), ``G`` ``(m, n_prev)``
    over the layer's inputs ``p`` (the free input coordinates for the first hidden layer, else
    the previous layer's post-activations), ``e`` ``(m,)``; numpy float64, valid on the whole box."""

    J: np.ndarray
    G: np.ndarray
    e: np.ndarray
    H: np.ndarray | None = None

    def __post_init__(self):
        self.J = np.asarray(self.J, dtype=np.int64).reshape(len(self.e), -1)
        self.H = np.ones(self.J.shape) if self.H is None else np.asarray(self.H, dtype=np.float64).reshape(
            self.J.shape)

    @property
    def m(self) -> int:
        return int(self.J.shape[0])

    def extend(self, other: Cuts) -> Cuts:
        q = max(self.J.shape[1], other.J.shape[1])

        def pad(c):  # extra terms on the cut's first neuron, with coefficient 0
            k = q - c.J.shape[1]
            return (np.hstack([c.J, np.repeat(c.J[:, :1], k, 1)]), np.hstack([c.H, np.zeros((c.m, k))]))

        (J1, H1), (J2, H2) = pad(self), pad(other)
        return Cuts(np.vstack([J1, J2]), np.vstack([self.G, other.G]), np.concatenate([self.e, other.e]),
                    np.vstack([H1, H2]))

    def take(self, keep) -> Cuts:
        return Cuts(self.J[keep], self.G[keep], self.e[keep], self.H[keep])

    def lhs(self, h: np.ndarray) -> np.ndarray:
        """``Σ_t H_t h_{J_t}`` for post-activations ``h`` ``(..., n)``: ``(..., m)``."""
        return (h[..., self.J] * self.H).sum(-1)


def hull_cuts(W, b, plo, phi, p, h, tol: float = 1e-6):
    """The most violated hull cut of each neuron at a point, where it is violated.

    ``W`` ``(m, n)``, ``b`` ``(m,)``: the neurons' weights (unstable ones: ``max_p w·p + b > 0 >
    min_p w·p + b`` on the box); ``plo``, ``phi`` ``(n,)``: the box of their inputs; ``p``
    ``(n,)`` and ``h`` ``(m,)``: the point. Returns ``(rows, G, e)``: the neurons (row indices
    of ``W``) whose ``h`` exceeds the cut's right-hand side by more than ``tol``, and the cuts
    ``h ≤ G p + e``, their constants widened outward against rounding.
    """
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    plo, phi, p = (np.asarray(v, dtype=np.float64) for v in (plo, phi, p))
    m, n = W.shape
    if m == 0 or n == 0:  # no neuron, or neurons without inputs (constant on the box: none unstable)
        return np.zeros(0, dtype=np.int64), np.zeros((0, n)), np.zeros(0)
    pos = W >= 0
    Lb = np.where(pos, plo, phi)  # L̆: where w·p is smallest
    Ub = np.where(pos, phi, plo)
    span = Ub - Lb
    D = W * span  # ≥ 0: how much ℓ drops when i joins I
    r = np.where(span != 0, (p[None, :] - Lb) / np.where(span != 0, span, 1.0), 0.0)
    r = np.clip(r, 0.0, 1.0)
    order = np.argsort(r, axis=1, kind="stable")
    Ds = np.take_along_axis(D, order, axis=1)
    ell0 = (W * Ub).sum(1) + b  # ℓ(∅): the largest pre-activation on the box
    after = ell0[:, None] - np.cumsum(Ds, axis=1)  # ℓ once the first q+1 inputs are in I
    neg = after < 0
    ok = neg.any(1) & (ell0 >= 0)  # not unstable on the box: no cut
    q = np.where(ok, neg.argmax(1), 0)  # position of ĵ in the order
    rows = np.arange(m)
    jhat = order[rows, q]
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(n)[None, :].repeat(m, 0), axis=1)
    inI = ranks < q[:, None]
    ellI = np.where(q > 0, after[rows, np.maximum(q - 1, 0)], ell0)
    ellI = np.maximum(ellI, 0.0)
    G = np.where(inI, W, 0.0)
    sj = span[rows, jhat]
    gj = np.where(sj != 0, ellI / np.where(sj != 0, sj, 1.0), 0.0)
    G[rows, jhat] = gj
    e = -(np.where(inI, W * Lb, 0.0)).sum(1) - gj * Lb[rows, jhat]
    # widen against rounding: the cut is exact in real arithmetic (module docstring)
    pmag = np.maximum(np.abs(plo), np.abs(phi))
    e = e + MARGIN * (1.0 + np.abs(e) + np.abs(G) @ pmag + np.abs(b) + np.abs(W) @ pmag)
    viol = np.asarray(h, dtype=np.float64) - (G @ p + e)
    sel = np.flatnonzero(ok & (viol > tol))
    return sel, G[sel], e[sel]


#: the octagon's sides as ``n·(a_i, a_j) ≤ rhs``: ``a_i ≤ u_i``, ``−a_i ≤ −l_i``, ``a_j ≤ u_j``,
#: ``−a_j ≤ −l_j``, ``a_i + a_j ≤ us``, ``−(a_i + a_j) ≤ −ls``, ``a_i − a_j ≤ ud``, ``−(a_i − a_j) ≤ −ld``
_OCTAGON = np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=np.float64)


def _orthant_systems():
    """The 2×2 systems of :func:`pair_facets`: for each sign orthant ``(s_i, s_j)``, its ten sides
    (the octagon's and ``−s_i a_i ≤ 0``, ``−s_j a_j ≤ 0``) and every pair of non-parallel ones, with
    the pair's inverse (its entries are 0, ±1 and ±½: exact in floating point)."""
    signs = [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)]
    sides = np.stack([np.vstack([_OCTAGON, [[-si, 0.0], [0.0, -sj]]]) for si, sj in signs])
    q, a, b, inv = [], [], [], []
    for o in range(4):
        for x in range(10):
            for y in range(x + 1, 10):
                M = sides[o, [x, y]]
                det = M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]
                if det != 0.0:
                    q.append(o), a.append(x), b.append(y)
                    inv.append(np.array([[M[1, 1], -M[0, 1]], [-M[1, 0], M[0, 0]]]) / det)
    keep_i = np.array([1.0 if si > 0 else 0.0 for si, _ in signs])  # h_i = a_i where s_i = +1, else 0
    keep_j = np.array([1.0 if sj > 0 else 0.0 for _, sj in signs])
    return (np.array(inv), keep_i, keep_j), (np.array(q), np.array(a), np.array(b)), sides


_ORTHANT_SYSTEMS, _ORTHANT_PAIRS, _ORTHANT_SIDES = _orthant_systems()


def pair_facets(li, ui, lj, uj, ls, us, ld, ud) -> tuple[np.ndarray, np.ndarray]:
    r"""The facets of the convex hull of two ReLUs over an octagon that couple the two neurons.

    ``P = {(a_i, a_j): l_i ≤ a_i ≤ u_i, l_j ≤ a_j ≤ u_j, ls ≤ a_i + a_j ≤ us, ld ≤ a_i − a_j ≤ ud}``
    and ``S = {(a_i, a_j, ReLU(a_i), ReLU(a_j)): (a, ·) ∈ P}``. On each of the four sign orthants
    the map is linear, so ``conv S`` is the hull of the images of the vertices of the four
    polygons ``P ∩ orthant`` (PRIMA's 2-neuron relaxation, Müller et al. 2022, there
    approximated; here exact up to the hull's floating point). Qhull gives the normals; each
    facet's right-hand side is then recomputed as the largest value of its normal over those
    vertices, widened outward by ``MARGIN·(1 + S)`` (``S`` the magnitude of the terms), so a
    facet holds on all of ``S`` whatever rounding Qhull made: a slightly tilted normal only
    loosens it.

    Returns ``(N, r)``: ``N`` ``(f, 4)`` over ``(a_i, a_j, h_i, h_j)`` with ``N·v ≤ r`` on ``S``,
    normalised to ``max(|N_hi|, |N_hj|) = 1``; only facets with a coefficient on each neuron
    and on some ``h`` (the single-neuron lines — the triangle — are left out).
    """
    from scipy.spatial import ConvexHull, QhullError

    rhs = np.array([ui, -li, uj, -lj, us, -ls, ud, -ld], dtype=np.float64)
    empty = np.zeros((0, 4)), np.zeros(0)
    if not np.all(np.isfinite(rhs)) or not (li < 0 < ui and lj < 0 < uj):
        return empty
    # every vertex of P ∩ orthant is where two of its sides meet: solve all pairs of sides at once
    inv, keep_i, keep_j = _ORTHANT_SYSTEMS
    q, a, b = _ORTHANT_PAIRS
    rq = np.concatenate([np.tile(rhs, (4, 1)), np.zeros((4, 2))], axis=1)[q]  # each system's orthant's sides
    v = np.einsum("pij,pj->pi", inv, np.stack([rq[np.arange(len(q)), a], rq[np.arange(len(q)), b]], -1))
    sides = _ORTHANT_SIDES[q]  # (systems, 10, 2)
    lhs = np.einsum("psj,pj->ps", sides, v)
    tol = 1e-9 * (1.0 + np.abs(rq) + np.einsum("psj,pj->ps", np.abs(sides), np.abs(v)))
    ok = np.all(lhs <= rq + tol, axis=1)  # inside the orthant's polygon (a vertex computed to 1 ulp passes)
    v = v[ok]
    pts = np.c_[v, v[:, 0] * keep_i[q[ok]], v[:, 1] * keep_j[q[ok]]]
    if len(pts) < 5:
        return empty
    try:
        eq = ConvexHull(pts).equations
    except QhullError:
        try:
            eq = ConvexHull(pts, qhull_options="QJ").equations
        except QhullError:
            return empty
    N = eq[:, :4]
    scale = np.abs(N[:, 2:]).max(1)
    both = (np.abs(N[:, [0, 2]]).max(1) > 1e-9) & (np.abs(N[:, [1, 3]]).max(1) > 1e-9)
    keep = (scale > 1e-9) & both
    if not keep.any():
        return empty
    N = N[keep] / scale[keep, None]
    N = np.unique(np.round(N, 12), axis=0)
    vals = pts @ N.T  # (points, facets)
    mag = np.abs(pts) @ np.abs(N).T
    r = vals.max(0) + MARGIN * (1.0 + np.abs(vals).max(0) + mag.max(0))
    return N, r


def pair_octagons(Ws, bs, lower, upper, lo, hi, k: int, I: np.ndarray, J: np.ndarray):
    """Bounds ``(ls, us, ld, ud)`` of ``a_i + a_j`` and ``a_i − a_j`` for the pairs ``(I, J)`` of
    hidden layer ``k`` over the box (numpy, the reduced layers of :func:`_separation_data`):
    interval arithmetic over the input box for the first hidden layer (exact up to rounding),
    else back-substitution through the layers before with CROWN's two lower-slope rules (the
    smaller of both); widened outward like every bound here."""
    from ..bounds.cheap import backsub_upper, relu_relaxation

    S, D = Ws[k][I] + Ws[k][J], Ws[k][I] - Ws[k][J]
    rows = np.vstack([S, -S, D, -D])
    cs = np.concatenate([bs[k][I] + bs[k][J], -(bs[k][I] + bs[k][J]), bs[k][I] - bs[k][J], -(bs[k][I] - bs[k][J])])
    if k == 0:  # no layer to push back through: the box's maximum of each row, widened
        v = backsub_upper(rows, cs, [], [], [], lo, hi)
    else:
        v = np.minimum(*[backsub_upper(rows, cs, Ws[:k], bs[:k],
                                       [relu_relaxation(lower[t], upper[t], rule) for t in range(k)], lo, hi)
                         for rule in ("adaptive", "zero")])
    n = len(I)
    return -v[n:2 * n], v[:n], -v[3 * n:], v[2 * n:3 * n]


def pair_cuts(W, b, pmag, N, r, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Facets ``N·(a_i, a_j, h_i, h_j) ≤ r`` (:func:`pair_facets`) as cuts over the layer's inputs
    ``p`` (``a = W p + b``): ``N_hi h_i + N_hj h_j ≤ G p + e`` with ``G = −(N_ai W_i + N_aj W_j)``,
    ``e = r − N_ai b_i − N_aj b_j``, ``e`` widened against the rounding of ``G`` and ``e``
    (``pmag``: the largest magnitude of each input on the box). Returns ``(J, H, G, e)``."""
    G = -(N[:, :1] * W[i] + N[:, 1:2] * W[j])
    e = r - N[:, 0] * b[i] - N[:, 1] * b[j]
    e = e + MARGIN * (1.0 + np.abs(e) + (np.abs(N[:, :1] * W[i]) + np.abs(N[:, 1:2] * W[j])) @ pmag
                      + np.abs(N[:, 0] * b[i]) + np.abs(N[:, 1] * b[j]))
    J = np.tile(np.array([i, j], dtype=np.int64), (len(r), 1))
    return J, N[:, 2:].copy(), G, e


def with_logit_bounds(net, lower, upper):
    """Bounds of every affine layer for :func:`nnmiplib.mip.encode`: the given hidden layers'
    and the logits' by interval arithmetic from the last hidden layer, widened outward."""
    W, b = np.asarray(net.weights[-1]), np.asarray(net.biases[-1])
    h_lo, h_hi = np.maximum(lower[-1], 0.0), np.maximum(upper[-1], 0.0)
    y_lo = np.clip(W, None, 0) @ h_hi + np.clip(W, 0, None) @ h_lo + b
    y_hi = np.clip(W, 0, None) @ h_hi + np.clip(W, None, 0) @ h_lo + b
    pad = 1e-6 * (1.0 + np.abs(W) @ h_hi + np.abs(b))
    bd = type("LayerBounds", (), {})()
    bd.lower, bd.upper = [*lower, y_lo - pad], [*upper, y_hi + pad]
    return bd


def _separation_data(layers):
    """What :func:`hull_cuts` reads of ``layers`` per hidden layer, as numpy: the weights and
    biases, the unstable neurons, and the box of the layer's inputs (the input box, then the
    previous layer's post-activation bounds)."""
    lower = [x.numpy() for x in layers.lower]
    upper = [x.numpy() for x in layers.upper]
    box = [(layers.lo.numpy(), layers.hi.numpy())] + [
        (np.maximum(lower[k - 1], 0.0), np.maximum(upper[k - 1], 0.0)) for k in range(1, layers.depth)]
    return ([w.numpy() for w in layers.W], [v.numpy() for v in layers.b],
            [np.flatnonzero((lw < 0) & (up > 0)) for lw, up in zip(lower, upper)], box)


def root_cuts(net, layers, rows, *, rounds: int = 8, deadline: float | None = None, min_gain: float = 0.01,
              stop_below: float | None = None, max_per_layer: int | None = None) -> tuple[list, dict]:
    """Hull cuts that the LP relaxation's optima violate, for the objective rows ``rows``.

    For each row (in the order given) the LP relaxation of ``layers`` (its bounds, the full
    network's Big-M model with ``z ∈ [0, 1]``, HiGHS) plus the cuts found so far is solved, the
    cuts its optimum violates are added (:func:`hull_cuts`, every free unstable neuron), and so
    on for up to ``rounds`` rounds: until no cut is violated, a round lowers the LP's value by
    less than ``min_gain·(1 + |value|)``, the value is at most ``stop_below``, or ``deadline``
    passes. Cuts slack at every row's last LP optimum are dropped at the end (they would only
    cost the search time); at most ``max_per_layer`` per layer are kept (the tightest).

    Returns ``(cuts, stats)``: a :class:`Cuts` or None per hidden layer of ``layers``, and
    ``{"lp": [row, first, last value], "rows", "rounds", "found", "kept", "time"}`` (``rows``:
    those whose LP was solved). The LP values are
    not bounds here (floating-point optima, not certified); only the cuts are used.
    """
    from ..domains import Box
    from ..mip import encode
    from ..mip.solvers import get_backend
    from ..mip.solvers.base import Status

    t0 = time.perf_counter()
    L = layers.depth
    lo_full = layers.full_input(layers.lo.numpy()[None])[0]
    hi_full = layers.full_input(layers.hi.numpy()[None])[0]
    model = encode(net, Box(lo_full, hi_full), with_logit_bounds(net, layers.full_lower, layers.full_upper),
                   relax=True)
    nv = model.nets[0]
    backend = get_backend("highs")(model, threads=1)
    kept_idx = [np.flatnonzero(kp) for kp in layers.keep]
    Ws, bs, free, box = _separation_data(layers)
    p_cols = [model.x[np.flatnonzero(layers.in_free)]] + [nv.h[k - 1][kept_idx[k - 1]] for k in range(1, L)]
    h_cols = [nv.h[k][kept_idx[k]] for k in range(L)]
    C, d = layers.C.numpy(), layers.d.numpy()
    cuts: list = [None] * L
    stats = {"lp": [], "rows": [], "rounds": 0, "found": 0}
    last_points = []

    def out_of_time():
        return deadline is not None and time.perf_counter() >= deadline

    def lp(r):
        c = np.zeros(model.n_vars)
        c[nv.a[-1]] = C[r]
        backend.set_objective(c, "max", float(d[r]))
        left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
        sol = backend.solve(left)
        if sol.status is not Status.OPTIMAL or sol.x is None:
            return None, None
        return float(sol.objective), np.asarray(sol.x)

    def separate(xs):
        added = 0
        for k in range(L):
            fk = free[k]
            if fk.size == 0:
                continue
            sel, G, e = hull_cuts(Ws[k][fk], bs[k][fk], *box[k], xs[p_cols[k]], xs[h_cols[k][fk]])
            if sel.size == 0:
                continue
            new = Cuts(fk[sel], G, e)
            cuts[k] = new if cuts[k] is None else cuts[k].extend(new)
            A = np.zeros((sel.size, model.n_vars))
            A[:, p_cols[k]] = -G
            A[np.arange(sel.size), h_cols[k][fk[sel]]] = 1.0
            backend.add_rows(A, -np.inf, e)
            added += sel.size
        return added

    for r in rows:
        values, xs_last = [], None
        for rd in range(rounds + 1):
            if out_of_time():
                break
            v, xs = lp(r)
            if v is None:
                break
            values.append(v)
            xs_last = xs
            stats["rounds"] += rd < rounds
            if rd == rounds or (stop_below is not None and v <= stop_below):
                break
            if len(values) > 1 and values[-2] - v < min_gain * (1.0 + abs(values[-2])):
                break
            added = separate(xs)
            stats["found"] += added
            if added == 0:
                break
        if xs_last is not None:
            last_points.append(xs_last)
            stats["lp"].append([int(r), values[0], values[-1]])
            stats["rows"].append(int(r))
        if out_of_time():
            break
    kept = 0
    for k in range(L):  # keep the cuts that some row's last optimum makes (nearly) tight
        if cuts[k] is None:
            continue
        if last_points:
            Xp = np.stack([xs[p_cols[k]] for xs in last_points])
            Xh = np.stack([cuts[k].lhs(xs[h_cols[k]]) for xs in last_points])
            s = ((Xp @ cuts[k].G.T + cuts[k].e) - Xh).min(0)
            keep = s <= 1e-6 * (1.0 + np.abs(cuts[k].e))
            if max_per_layer is not None and keep.sum() > max_per_layer:
                keep = np.zeros_like(keep)
                keep[np.argsort(s, kind="stable")[:max_per_layer]] = True
            cuts[k] = cuts[k].take(keep) if keep.any() else None
        kept += 0 if cuts[k] is None else cuts[k].m
    stats.update(kept=kept, time=time.perf_counter() - t0)
    return cuts, stats


def relaxation_cuts(layers, nodes, ub, *, rounds: int = 40, iterations: int = 40, deadline: float | None = None,
                    level=None, min_gain: float = 0.002, patience: int = 3, lr: float = 0.05,
                    per_point: int | None = None, max_cuts: int | None = None,
                    pairs: int = 0) -> tuple[object, object, object, dict]:
    """Hull cuts separated at the relaxation's own optimum, without an LP (the active-set
    idea of De Palma et al., 2021, on the back-substituted bound).

    ``layers``, ``nodes`` (with their multipliers optimised) and ``ub`` ``(N, R)`` their
    bounds, as :func:`nnmiplib.bab.relax.optimise` returns them. Each round takes, for every
    node and every row whose bound is above ``level`` (``(N,)``; None: every row), the point
    where the relaxation reaches its bound (:func:`~nnmiplib.bab.relax.relaxation_point`),
    adds the hull cuts it violates (:func:`hull_cuts`, every unstable neuron of the box, each
    cut once) to ``layers``, and optimises the nodes' multipliers with the new cuts' π
    starting at 0 for ``iterations`` steps. It stops after ``rounds`` rounds, when no cut is
    violated, when no row is open, when ``patience`` rounds together lower the open rows'
    total excess over ``level`` (their total bound when None) by less than ``min_gain`` of
    it, or at ``deadline``. ``lr``: the Adam step of :func:`~nnmiplib.bab.relax.optimise`.
    ``per_point``: at most this many new cuts per layer at each point, those whose violation
    times the neuron's coefficient in the bound is largest (None: every violated one).
    ``max_cuts``: at most this many cuts kept at the end, those with the largest π (None: all
    with a π > 0). ``pairs``: also the two-neuron hull's facets (:func:`pair_facets`, over the
    octagons of :func:`pair_octagons`) violated at each point, for the pairs among the
    ``pairs`` unstable neurons of each layer whose relaxation gap there, weighed by their
    coefficient in the bound, is largest (0: none). Every cut costs each node of a search about
    ``n_prev`` multiply-adds per row, like a neuron of its layer. The cuts whose π ended 0 at
    every node and row are dropped: the bound without them is the same.

    Returns ``(cuts, nodes, ub, stats)``: a :class:`Cuts` or None per hidden layer (the kept
    ones; ``layers.with_cuts(cuts)`` carries them), the nodes with their π (None when no cut
    is kept), their bounds (never looser than ``ub``) and
    ``{"rounds", "found", "kept", "time", "first", "last", "rows", "gain"}`` (the largest bound
    before and after; the rows separated at; the share of the open rows' total excess over
    ``level`` that the cuts removed).
    """
    import torch

    from . import relax as R

    t0 = time.perf_counter()
    L = layers.depth
    Ws, bs, unstable, box = _separation_data(layers)
    have = [set() for _ in range(L)]  # cuts already held, by neuron and coefficients
    facets: dict = {}  # (layer, i, j) → the pair's facets (pair_facets), computed once
    lower_np, upper_np = [x.numpy() for x in layers.lower], [x.numpy() for x in layers.upper]
    lo_np, hi_np = layers.lo.numpy(), layers.hi.numpy()

    def pair_rows(k, p, hk_full, lam):
        """The most violated facet of each top pair at the point ``(p, h)``: ``(J, H, G, e)`` rows."""
        fk = unstable[k]
        a = Ws[k][fk] @ p + bs[k][fk]
        gap = hk_full[fk] - np.maximum(a, 0.0)
        score = np.abs(lam[fk]) * gap
        top = [t for t in np.argsort(-score, kind="stable")[:pairs] if score[t] > 1e-9]
        cand = [(top[x], top[y]) for x in range(len(top)) for y in range(x + 1, len(top))]
        missing = [(fk[x], fk[y]) for x, y in cand if (k, fk[x], fk[y]) not in facets]
        if missing:
            I, Jn = np.array([m[0] for m in missing]), np.array([m[1] for m in missing])
            octs = pair_octagons(Ws, bs, lower_np, upper_np, lo_np, hi_np, k, I, Jn)
            for q, (i, j) in enumerate(missing):
                facets[(k, i, j)] = pair_facets(lower_np[k][i], upper_np[k][i], lower_np[k][j], upper_np[k][j],
                                                *(o[q] for o in octs))
        out = []
        pmag = np.maximum(np.abs(box[k][0]), np.abs(box[k][1]))
        for x, y in cand:
            i, j = fk[x], fk[y]
            N, r = facets[(k, i, j)]
            if not len(r):
                continue
            viol = N @ np.array([a[x], a[y], hk_full[i], hk_full[j]]) - r
            f = int(np.argmax(viol))
            if viol[f] <= 1e-6 * (1.0 + abs(r[f])) or ("pair", int(i), int(j), f) in have[k]:
                continue
            have[k].add(("pair", int(i), int(j), f))
            out.append(pair_cuts(Ws[k], bs[k], pmag, N[f:f + 1], r[f:f + 1], int(i), int(j)))
        return out
    if layers.cuts is not None:
        raise ValueError("relaxation_cuts: the layers already carry cuts; pass them without")
    cuts: list = [None] * L
    stats = {"rounds": 0, "found": 0, "rows": set(), "first": float(ub.max()), "last": float(ub.max())}

    def open_mask(ub):
        return torch.ones_like(ub, dtype=torch.bool) if level is None else ub > torch.as_tensor(level)[:, None]

    def excess(ub):
        return float(ub.sum()) if level is None else float((ub - torch.as_tensor(level)[:, None]).clamp(min=0).sum())

    work, cur = layers, nodes
    history = [excess(ub)]
    for _ in range(rounds):
        if deadline is not None and time.perf_counter() >= deadline:
            break
        mask = open_mask(ub)
        if not bool(mask.any()):
            break
        _val, _mag, lams = R.bound(work, cur, keep_lambdas=True)
        x, hs = R.relaxation_point(work, cur, lams)
        pts = [p.numpy() for p in ([x] + hs)]
        lam_np = [lm.numpy() for lm in lams[:L]]
        where = np.argwhere(mask.numpy())
        stats["rows"].update(int(r) for r in where[:, 1])
        added = [0] * L
        for k in range(L):
            fk = unstable[k]
            if fk.size == 0:
                continue
            lo_k, hi_k = box[k]
            for n, r in where:
                p = np.clip(pts[k][n, r], lo_k, hi_k)
                hk = pts[k + 1][n, r][fk]
                sel, G, e = hull_cuts(Ws[k][fk], bs[k][fk], lo_k, hi_k, p, hk)
                order = range(sel.size)
                if per_point is not None and sel.size > per_point:
                    gain = np.abs(lam_np[k][n, r][fk[sel]]) * (hk[sel] - (G @ p + e))
                    order = np.argsort(-gain, kind="stable")
                keep = []
                for i in order:
                    if per_point is not None and len(keep) >= per_point:
                        break
                    key = (int(fk[sel[i]]), G[i].tobytes())
                    if key not in have[k]:
                        have[k].add(key)
                        keep.append(i)
                if not keep:
                    continue
                new = Cuts(fk[sel[keep]], G[keep], e[keep])
                cuts[k] = new if cuts[k] is None else cuts[k].extend(new)
                added[k] += len(keep)
            if pairs and fk.size >= 2:
                for n, r in where:
                    got = pair_rows(k, np.clip(pts[k][n, r], lo_k, hi_k), pts[k + 1][n, r], lam_np[k][n, r])
                    if got:
                        J2, H2, G2, e2 = (np.concatenate([g[t] for g in got]) for t in range(4))
                        new = Cuts(J2, G2, e2, H2)
                        cuts[k] = new if cuts[k] is None else cuts[k].extend(new)
                        added[k] += len(e2)
                        stats["pairs"] = stats.get("pairs", 0) + len(e2)
        if not any(added):
            break
        stats["rounds"] += 1
        stats["found"] += sum(added)
        old = cur.pi
        work = layers.with_cuts(cuts)
        cur = R.with_cut_multipliers(work, cur)
        if old is not None:  # the cuts held so far keep their π; the new ones start at 0
            cur.pi = [torch.cat([o, z[..., o.shape[-1]:]], -1) for o, z in zip(old, cur.pi)]
        ub, cur = R.optimise(work, cur, iterations=iterations, best=ub, deadline=deadline, lr=lr)
        stats["last"] = float(ub.max())
        history.append(excess(ub))
        if len(history) > patience and history[-1 - patience] - history[-1] < min_gain * abs(history[-1 - patience]):
            break
    kept = 0
    if cur.pi is not None:  # drop the cuts no node or row uses (and the least used beyond max_cuts)
        weight = [p.clamp(min=0.0).flatten(0, 1).amax(0).numpy() if p.numel() else np.zeros(0) for p in cur.pi]
        floor = 0.0
        every = np.concatenate(weight)
        if max_cuts is not None and (every > 0).sum() > max_cuts:
            floor = float(np.sort(every)[-max_cuts - 1])
        for k in range(L):
            if cuts[k] is None:
                continue
            used = weight[k] > floor
            cuts[k] = cuts[k].take(used) if used.any() else None
            cur.pi[k] = cur.pi[k][..., torch.as_tensor(used)]
            kept += int(used.sum())
        if not kept:
            cur = replace(cur, pi=None)
    stats.update(kept=kept, time=time.perf_counter() - t0, rows=sorted(stats["rows"]),
                 gain=0.0 if history[0] <= 0 else 1.0 - history[-1] / history[0])
    return cuts, cur, ub, stats
