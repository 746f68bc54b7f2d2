r"""Batched linear bounds of a network's objective rows under ReLU phase splits (α-β-CROWN style).

A *node* of the branch and bound is a set of phase decisions: hidden neuron ``i`` of layer
``k`` is free, forced active (``a_i ≥ 0``, then ``h_i = a_i``) or forced inactive (``a_i ≤ 0``,
then ``h_i = 0``). For a batch of nodes, each objective row ``c·y + d`` (``y`` the logits) is
bounded from above by back-substitution through the layers:

* through the affine layer ``a^{k+1} = W^k h^k + b^k``: ``Λ ← Λ W^k``, ``c ← c + Λ b^k``;
* through ``h = ReLU(a)`` with pre-activation bounds ``[l, u]`` (the node's: the given
  intermediate bounds clipped by the node's decisions): a positive coefficient takes the
  upper chord ``h ≤ s_u a + t_u`` (``s_u = u/(u−l)``, ``t_u = −s_u l``), a negative one the
  lower line ``h ≥ α a`` with a free slope ``α ∈ [0, 1]``; stable and decided neurons are
  linear (``h = a`` or ``h = 0``);
* each decision ``σ_i a_i ≥ 0`` (σ = +1 active, −1 inactive) enters with a Lagrange
  multiplier ``β_i ≥ 0``: ``max f ≤ max (f + Σ β_i σ_i a_i)`` over the relaxation, i.e.
  ``β σ`` is added to the coefficients of ``a^k`` (β-CROWN);
* the bound of a *stable* neuron — ``a_i ≥ l_i`` if stably active, ``a_i ≤ u_i`` if stably
  inactive, which its linear relaxation (``h = a`` or ``h = 0``) does not imply, unlike an
  unstable neuron's triangle — enters with a multiplier ``γ_i ≥ 0``:
  ``max f ≤ max (f + γ_i (a_i − l_i))`` (``γ_i (u_i − a_i)`` if inactive). Bounds
  tightened by a search (:mod:`nnmiplib.bab.tightening`) often raise a stably active
  neuron's lower bound far above what back-substitution through the earlier layers gives,
  and the LP relaxation uses it as a constraint; with γ the bound here comes close to the
  LP's (PV's margin rows, root bound on tightened bounds, 60 Adam steps: 800x2 digit 8
  13.59 without γ, 12.34 with, LP 12.27; 200x5 digit 1 7.75, 7.48, LP 7.42);
* a cutting plane ``h_j ≤ g·p + e`` valid on the whole box (``p`` the inputs of ``h_j``'s layer;
  the convex hull of each ReLU over its input box, :mod:`nnmiplib.bab.cuts`) enters with a
  multiplier ``π ≥ 0``: ``max f ≤ max (f + π (g·p + e − h_j))`` (GCP-CROWN's general cuts). PV's
  margin rows on the 800x2 net, digit 1, tightened bounds, 60 Adam steps: the worst row's root
  bound 6.87 without cuts, 2.20 with 201 cuts (the LP with the same cuts: 2.12);
* at the input box ``[lo, hi]``: ``max Λx + c = Λ⁺ hi + Λ⁻ lo + c``.

Every ``α ∈ [0,1]``, ``β ≥ 0``, ``γ ≥ 0`` and ``π ≥ 0`` gives a valid upper bound, so :func:`optimise` runs
projected Adam on them (per node and row, warm-started from the parent) — its steps in
float32, which only need to find good multipliers — and reports, per node and row, the
bound of the multipliers it ends with (or of its start, or the parent's, if smaller),
evaluated in float64 and widened outward by ``1e-9·(1 + |v| + S)`` as the cheap bounds are
(:mod:`nnmiplib.bounds.cheap`), ``S`` the sum of the magnitudes of the terms added. (One
robustness row of a 4×256 MNIST net at ε = 0.03, 20 s on one core: 40 700 nodes with
float64 steps, 67 300 with float32 steps and the relaxations computed once per call.) The intermediate bounds are never
re-tightened here: a node's relaxation uses exactly the Big-M constants it was given
(chapter 3 compares bound types this way).

The computations are batched over nodes and rows in torch so that one call
bounds hundreds of nodes with a few large matrix products.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..bounds.cheap import MARGIN

__all__ = ["Layers", "NodeBatch", "bound", "imply", "optimise", "phase_relaxation", "relaxation_point",
           "stable_multipliers", "without_gamma"]


@dataclass
class Layers:
    """A network and its intermediate bounds as torch float64 tensors (built once per query).

    ``W[k]``, ``b[k]``: affine layer ``k`` (``k = 0..L``, the last gives the logits);
    ``lower[k]``, ``upper[k]``: bounds of the pre-activations of hidden layer ``k + 1``
    (``k = 0..L−1``), i.e. of ``a^{k+1} = W^k h^k + b^k``; ``lo``, ``hi``: the input box.
    ``C``, ``d``: the objective rows ``C y + d`` over the logits ``y``.

    :meth:`build` removes what the bounds already settle, exactly: input coordinates the
    box pins (``lo = hi``) are folded into the first bias, and neurons that are stably
    inactive (``upper ≤ 0``: ``h = 0`` on the whole box) leave their layer. ``keep[k]`` and
    ``in_free`` map the reduced network back (:meth:`full_input`, :meth:`full_split`).
    """

    W: list
    b: list
    lower: list
    upper: list
    lo: object
    hi: object
    C: object
    d: object
    keep: list = None
    in_free: np.ndarray = None
    x_fixed: np.ndarray = None
    full_lower: list = None
    full_upper: list = None
    cuts: list = None
    _cast: dict = field(default=None, repr=False, compare=False)

    def cast(self, dtype) -> Layers:
        """The same layers with ``W``, ``b``, bounds, box and rows in ``dtype`` (kept: a
        search casts once). For the gradient steps of :func:`optimise` only — every bound
        it reports is evaluated on the float64 layers."""
        import torch

        if dtype == torch.float64:
            return self
        src = [*self.W, *self.b, *self.lower, *self.upper, self.lo, self.hi, self.C, self.d,
               *[t for cut in (self.cuts or []) if cut is not None for t in cut[1:]]]
        hit = (self._cast or {}).get(dtype)
        if hit is None or len(hit[0]) != len(src) or any(a is not b for a, b in zip(hit[0], src)):
            c = lambda xs: [x.to(dtype) for x in xs]  # (a Layers made by replace() may carry a stale entry)
            out = replace(self, W=c(self.W), b=c(self.b), lower=c(self.lower), upper=c(self.upper),
                          lo=self.lo.to(dtype), hi=self.hi.to(dtype), C=self.C.to(dtype), d=self.d.to(dtype),
                          cuts=None if self.cuts is None else [
                              None if cut is None else (cut[0], cut[1].to(dtype), cut[2].to(dtype), cut[3].to(dtype))
                              for cut in self.cuts],
                          _cast=None)
            self._cast = {**(self._cast or {}), dtype: (src, out)}
            return out
        return hit[1]

    @classmethod
    def build(cls, net, lower, upper, lo, hi, C, d) -> Layers:
        import torch

        t = lambda a: torch.as_tensor(np.array(a, dtype=np.float64))
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        lower = [np.asarray(x, dtype=np.float64) for x in lower]
        upper = [np.asarray(x, dtype=np.float64) for x in upper]
        Ws = [np.asarray(w, dtype=np.float64) for w in net.weights]
        bs = [np.asarray(b, dtype=np.float64) for b in net.biases]
        free = hi > lo
        bs[0] = bs[0] + Ws[0][:, ~free] @ lo[~free]
        Ws[0] = Ws[0][:, free]
        keep = [u > 0 for u in upper]
        for k, kp in enumerate(keep):
            Ws[k], bs[k] = Ws[k][kp], bs[k][kp]
            Ws[k + 1] = Ws[k + 1][:, kp]
        return cls([t(w) for w in Ws], [t(b) for b in bs], [t(x[kp]) for x, kp in zip(lower, keep)],
                   [t(x[kp]) for x, kp in zip(upper, keep)], t(lo[free]), t(hi[free]), t(np.atleast_2d(C)),
                   t(np.ravel(d)), keep, free, lo.copy(), lower, upper)

    def with_cuts(self, cuts) -> Layers:
        """The same layers with cutting planes ``Σ H h_J ≤ G p + e`` per hidden layer
        (:class:`nnmiplib.bab.cuts.Cuts` or None each, on these layers' reduced indices), valid
        on the whole box; :func:`bound` adds each with a multiplier π ≥ 0 (``NodeBatch.pi``)."""
        import torch

        if cuts is not None and len(cuts) != self.depth:
            raise ValueError(f"with_cuts: {len(cuts)} layers of cuts for {self.depth} hidden layers")
        if cuts is None or all(c is None for c in cuts):
            return self if self.cuts is None else replace(self, cuts=None, _cast=None)
        out = []
        for k, cut in enumerate(cuts):
            if cut is None or cut.m == 0:
                out.append(None)
                continue
            n_prev = int(self.W[k].shape[1])
            if cut.G.shape[1] != n_prev or int(cut.J.max()) >= self.sizes[k]:
                raise ValueError(f"with_cuts: layer {k}'s cuts do not fit its {self.sizes[k]} neurons "
                                 f"and {n_prev} inputs")
            out.append((torch.as_tensor(np.asarray(cut.J, dtype=np.int64)),
                        torch.as_tensor(np.asarray(cut.G, dtype=np.float64)),
                        torch.as_tensor(np.asarray(cut.e, dtype=np.float64)),
                        torch.as_tensor(np.asarray(cut.H, dtype=np.float64))))
        return replace(self, cuts=out, _cast=None)

    @property
    def cut_counts(self) -> list[int]:
        """Number of cuts per hidden layer (0 where none)."""
        return [0 if c is None else int(c[0].shape[0]) for c in (self.cuts or [None] * self.depth)]

    @property
    def depth(self) -> int:
        return len(self.W) - 1

    @property
    def sizes(self) -> list[int]:
        return [int(w.shape[0]) for w in self.W[:-1]]

    @property
    def n_rows(self) -> int:
        return int(self.C.shape[0])

    def full_input(self, x_reduced: np.ndarray) -> np.ndarray:
        """Inputs of the full network from points of the reduced input space (rows)."""
        x_reduced = np.atleast_2d(np.asarray(x_reduced, dtype=np.float64))
        out = np.repeat(self.x_fixed[None], len(x_reduced), axis=0)
        out[:, self.in_free] = x_reduced
        return out

    def reduce_links(self, links) -> list:
        """Links between neurons (see :func:`imply`) from the full network's indices to the
        reduced layers': per hidden layer ``k`` ``(i, j, dl, du)`` with ``dl ≤ a_i − a_j ≤ du``
        on the whole box. Pairs with a neuron :meth:`build` removed are left out."""
        import torch

        out = []
        for k, link in enumerate(links):
            if link is None:
                out.append(None)
                continue
            i, j, dl, du = (np.asarray(v) for v in link)
            kp = self.keep[k]
            pos = np.cumsum(kp) - 1
            ok = kp[i] & kp[j]
            out.append((torch.as_tensor(pos[i[ok]]), torch.as_tensor(pos[j[ok]]),
                        torch.as_tensor(np.asarray(dl[ok], dtype=np.float64)),
                        torch.as_tensor(np.asarray(du[ok], dtype=np.float64))) if ok.any() else None)
        return out

    def full_split(self, split_row: list) -> list[np.ndarray]:
        """One node's decisions on the full network's hidden layers (dropped neurons: 0)."""
        out = []
        for s, kp in zip(split_row, self.keep):
            full = np.zeros(kp.size, dtype=np.int8)
            full[kp] = np.asarray(s)
            out.append(full)
        return out


@dataclass
class NodeBatch:
    """Phase decisions and relaxation parameters of ``N`` nodes.

    ``split[k]``: int8 tensor ``(N, n_k)`` with ``+1`` active, ``−1`` inactive, ``0`` free;
    ``alpha[k]``: ``(N, R, n_k)`` lower slopes; ``beta[k]``: ``(N, R, n_k)`` multipliers of
    the decisions (zero where free); ``lower``/``upper``: per-node intermediate bounds
    ``(N, n_k)`` once :func:`refine` has tightened them (None: the shared ones of ``Layers``);
    ``rows``: per-node objective rows ``(N, R, K)`` over the outputs, for a batch whose nodes
    bound different quantities (None: the shared ``Layers.C``; ``Layers.d`` is added either way).
    ``gamma[k]``: ``(N, R, n_k)`` multipliers of the bounds ``l ≤ a ≤ u`` of the *stable* neurons
    (None: not used; see :func:`bound`). ``pi[k]``: ``(N, R, m_k)`` multipliers of the cuts of
    ``Layers.cuts`` (None: the cuts are not used; see :func:`with_cut_multipliers`).
    """

    split: list
    alpha: list
    beta: list
    lower: list | None = None
    upper: list | None = None
    rows: object = None
    gamma: list | None = None
    pi: list | None = None

    @property
    def n(self) -> int:
        return int(self.split[0].shape[0]) if self.split else 0

    def take(self, idx) -> NodeBatch:
        own = self.lower is not None
        return NodeBatch([s[idx] for s in self.split], [a[idx] for a in self.alpha], [b[idx] for b in self.beta],
                         [x[idx] for x in self.lower] if own else None, [x[idx] for x in self.upper] if own else None,
                         None if self.rows is None else self.rows[idx],
                         None if self.gamma is None else [g[idx] for g in self.gamma],
                         None if self.pi is None else [p[idx] for p in self.pi])

    def bounds(self, layers: Layers, k: int):
        """``(lower, upper)`` of hidden layer ``k`` for these nodes (their own, or the shared ones)."""
        if self.lower is None:
            return layers.lower[k], layers.upper[k]
        return self.lower[k], self.upper[k]

    @staticmethod
    def cat(batches) -> NodeBatch:
        import torch

        batches = [b for b in batches if b.n]
        own = any(b.lower is not None for b in batches)
        if own:  # a batch without its own bounds carries the shared ones
            raise_missing = [b for b in batches if b.lower is None]
            if raise_missing:
                raise ValueError("NodeBatch.cat: mix of nodes with and without their own bounds; "
                                 "use NodeBatch.with_bounds first")
        if len({b.rows is None for b in batches}) > 1:
            raise ValueError("NodeBatch.cat: mix of nodes with and without their own objective rows")
        if len({b.gamma is None for b in batches}) > 1:
            raise ValueError("NodeBatch.cat: mix of nodes with and without bound multipliers (gamma)")
        if len({b.pi is None for b in batches}) > 1:
            raise ValueError("NodeBatch.cat: mix of nodes with and without cut multipliers (pi)")
        cat = lambda lists: [torch.cat(z) for z in zip(*lists)]
        return NodeBatch(cat([b.split for b in batches]), cat([b.alpha for b in batches]),
                         cat([b.beta for b in batches]), cat([b.lower for b in batches]) if own else None,
                         cat([b.upper for b in batches]) if own else None,
                         torch.cat([b.rows for b in batches]) if batches and batches[0].rows is not None else None,
                         cat([b.gamma for b in batches]) if batches and batches[0].gamma is not None else None,
                         cat([b.pi for b in batches]) if batches and batches[0].pi is not None else None)

    def with_bounds(self, layers: Layers) -> NodeBatch:
        """The same nodes carrying their own copies of the intermediate bounds."""
        if self.lower is not None:
            return self
        lo = [x.expand(self.n, -1).clone() for x in layers.lower]
        up = [x.expand(self.n, -1).clone() for x in layers.upper]
        return replace(self, lower=lo, upper=up)

    @staticmethod
    def root(layers: Layers, n: int = 1) -> NodeBatch:
        import torch

        R = layers.n_rows
        split = [torch.zeros((n, s), dtype=torch.int8) for s in layers.sizes]
        alpha = []
        for lo, up in zip(layers.lower, layers.upper):
            a0 = (up > -lo).to(torch.float64)  # DeepPoly's adaptive slope as the start
            alpha.append(a0.expand(n, R, -1).clone())
        beta = [torch.zeros((n, R, s), dtype=torch.float64) for s in layers.sizes]
        # bound multipliers only where some neuron is stably active (stably inactive ones left the layers)
        gamma = None
        if any(bool((lo >= 0).any()) for lo in layers.lower):
            gamma = [torch.zeros((n, R, s), dtype=torch.float64) for s in layers.sizes]
        return with_cut_multipliers(layers, NodeBatch(split, alpha, beta, gamma=gamma))


def with_cut_multipliers(layers: Layers, nodes: NodeBatch) -> NodeBatch:
    """The nodes with zero multipliers π for the cuts of ``layers`` (one tensor ``(N, R, m_k)``
    per hidden layer, empty where it has none), or without any when ``layers`` has no cuts."""
    import torch

    if layers.cuts is None:
        return replace(nodes, pi=None)
    R = layers.n_rows
    return replace(nodes, pi=[torch.zeros((nodes.n, R, m), dtype=torch.float64) for m in layers.cut_counts])


def cast_nodes(nodes: NodeBatch, dtype) -> NodeBatch:
    """The nodes with α, β, γ, their own bounds and rows in ``dtype`` (the decisions stay int8)."""
    c = lambda xs: None if xs is None else [x.to(dtype) for x in xs]
    return replace(nodes, alpha=c(nodes.alpha), beta=c(nodes.beta), gamma=c(nodes.gamma), pi=c(nodes.pi),
                   lower=c(nodes.lower),
                   upper=c(nodes.upper), rows=None if nodes.rows is None else nodes.rows.to(dtype))


def phase_relaxation(lower, upper, split):
    """Per-node ``(l, u, s_u, t_u, linear_slope, free)`` of one hidden layer under ``split``.

    ``l``, ``u``: the node's bounds (``max(l, 0)`` where active, ``min(u, 0)`` where inactive);
    ``linear_slope`` is 1 on (stably or forced) active neurons, 0 on inactive ones and on free
    unstable ones (whose lower slope is α); ``free`` marks the unstable undecided neurons.
    """
    import torch

    # masks mixed in by products and sums that are exact (x·1, x·0, x + 0, x + (−x) = 0), not
    # by torch.where: several times slower on a CPU, and this runs for every batch of nodes
    on, off = (split > 0).to(lower.dtype), (split < 0).to(upper.dtype)
    l = lower + on * torch.relu(-lower)  # max(l, 0) where forced active
    u = upper - off * torch.relu(upper)  # min(u, 0) where forced inactive
    active = l >= 0
    free = ~active & (u > 0)
    lin, f = active.to(u.dtype), free.to(u.dtype)
    su = lin + f * (u / ((u - l) * f + (1.0 - f)))  # 1 active, u/(u − l) free, 0 inactive
    tu = -(su * l) * f
    return l, u, su, tu, lin, free


def stable_multipliers(layers: Layers, nodes: NodeBatch, k: int, projected: bool = False):
    """``(coefficients, constants)`` that the bound multipliers γ ≥ 0 of hidden layer ``k`` add:
    ``γ (a − l)`` on stably active neurons (``l ≥ 0``), ``γ (u − a)`` on stably inactive ones
    (``u ≤ 0``), both ≥ 0 on the box; ``(N, R, n_k)`` and ``(N, R)``. Unstable neurons take
    none: their triangle relaxation implies ``l ≤ a ≤ u``, and a decision is β's."""

    l, u = nodes.bounds(layers, k)
    N = nodes.n
    l, u = l.expand(N, -1)[:, None, :], u.expand(N, -1)[:, None, :]
    sign = (l >= 0).to(l.dtype) - ((u <= 0) & (l < 0)).to(l.dtype)
    g = (nodes.gamma[k] if projected else nodes.gamma[k].clamp(min=0.0)) * sign
    return g, -(g * (l * (sign > 0) + u * (sign < 0))).sum(-1)


def without_gamma(nodes: NodeBatch) -> NodeBatch:
    """The nodes without their stable neurons' multipliers γ (:func:`bound`).

    The searches use γ at their roots only: there it brings the bound to about the LP
    relaxation's, while in the tree it costs about a fifth of the nodes and brought no
    bound down (PV's margin rows on tightened bounds, 20 s: 800x2 digit 8 dual bound 4.80
    with γ against 4.56 without; 200x5 digit 1 5.07 against 4.94; the tightening of the
    200x5's bounds in 40 s stabilised 90 neurons against 96). A child's bound is capped by
    its parent's, so the root's gain is kept.
    """
    return replace(nodes, gamma=None)


def node_relaxations(layers: Layers, nodes: NodeBatch) -> list:
    """Per hidden layer, what :func:`bound` reads of the nodes' phases and bounds:
    ``(s_u, t_u, linear_slope, free, σ)`` shaped ``(N, 1, n_k)`` (``free`` 1.0 on the free
    unstable neurons and 0.0 elsewhere, σ the decisions, both as floats: :func:`bound` mixes
    them in by products, which are exact on 0 and 1, rather than by ``torch.where``, which is
    several times slower on a CPU). They depend on neither α, β nor γ, so :func:`optimise`
    computes them once."""
    out = []
    for k in range(layers.depth):
        _l, _u, su, tu, lin, free = phase_relaxation(*nodes.bounds(layers, k), nodes.split[k])
        sgn = nodes.split[k].to(su.dtype)
        out.append(tuple(x[:, None, :] for x in (su, tu, lin, free.to(su.dtype), sgn)))
    return out


def bound(layers: Layers, nodes: NodeBatch, *, need_grad: bool = False, keep_lambdas: bool = False,
          relax: list | None = None, need_mag: bool = True, projected: bool = False):
    """Upper bounds ``(N, R)`` of every objective row at every node, and their magnitudes ``S``.

    ``relax``: :func:`node_relaxations` of these nodes, if already computed. ``need_mag=False``
    skips the magnitudes (``mag`` is then ``None``): a gradient step only needs the value.
    ``projected=True`` trusts that α ∈ [0, 1] and β, γ, π ≥ 0 already (:func:`optimise`
    projects them after every step) and skips their clamps and the clamps' gradients; a bound
    to be certified must not (a multiplier out of its range gives no bound).

    Returns ``(value, mag, lambdas)``: ``value`` the back-substituted bound (a torch tensor,
    differentiable in α and β when ``need_grad``), ``mag`` the sum of the magnitudes of its
    terms (for the floating-point widening, no gradient), and — with ``keep_lambdas`` — the
    coefficients ``Λ_k`` ``(N, R, n_k)`` on the post-activations ``h^k`` of every hidden layer
    (what branching scores read) followed by those on the (reduced) input, else ``None``.

    Cuts ``Σ H h_J ≤ G p + e`` of ``layers.cuts`` (``p`` the layer's inputs) enter with their
    multipliers ``π = nodes.pi`` ≥ 0: ``max f ≤ max (f + π (G p + e − Σ H h_J))``.
    """
    import torch

    N, R, L = nodes.n, layers.n_rows, layers.depth
    ctx = torch.enable_grad() if need_grad else torch.no_grad()
    with ctx:
        C = layers.C.expand(N, R, -1) if nodes.rows is None else nodes.rows
        Lam = C @ layers.W[L]  # (N, R, n_L): coefficients on h^L
        c = (C @ layers.b[L] + layers.d).expand(N, R).clone()
        cmag = None
        if need_mag:
            with torch.no_grad():
                cmag = (C.abs() @ layers.b[L].abs() + layers.d.abs()).expand(N, R).clone()
        lams = [None] * (L + 1)
        cuts = layers.cuts if nodes.pi is not None else None
        if relax is None:
            relax = node_relaxations(layers, nodes)
        for k in range(L - 1, -1, -1):  # hidden layer k+1: h = ReLU(a), a = W^k h^k + b^k
            cut = None if cuts is None else cuts[k]
            if cut is not None:  # π (G p + e − Σ H h_J): −π H on the cut neurons' h
                P = nodes.pi[k] if projected else nodes.pi[k].clamp(min=0.0)
                for t in range(cut[0].shape[1]):
                    Lam = Lam.index_add(-1, cut[0][:, t], -P * cut[3][:, t])
            if keep_lambdas:
                lams[k] = Lam.detach()
            su, tu, lin, free, sgn = relax[k]
            alpha, beta = nodes.alpha[k], nodes.beta[k]
            if not projected:
                alpha, beta = alpha.clamp(0.0, 1.0), beta.clamp(min=0.0)
            slope_lo = alpha * free + lin  # α on free neurons, the linear phase's slope elsewhere (lin = 0 on free ones)
            Lpos = torch.relu(Lam)
            Lneg = Lam - Lpos  # exact: one of the two is 0
            up_line = (Lpos * tu).sum(-1)  # Λ⁺ t_u ≥ 0: the upper chords' intercepts
            c = c + up_line
            # coefficients on a^{k+1}: the upper chord's slope where Λ > 0, the lower line's where not
            # (each entry is one product plus an exact 0, the same value as choosing with a mask)
            A = Lpos * su + Lneg * slope_lo
            A = A + beta * sgn  # β σ a ≥ 0 on decided neurons
            if nodes.gamma is not None:  # γ (a − l) ≥ 0, γ (u − a) ≥ 0 on stable neurons
                g, gc = stable_multipliers(layers, nodes, k, projected)
                A = A + g
                c = c + gc
                if need_mag:
                    cmag = cmag + gc.detach().abs()
            c = c + A @ layers.b[k]
            if need_mag:
                with torch.no_grad():
                    cmag = cmag + up_line + A.abs() @ layers.b[k].abs()
            Lam = A @ layers.W[k]
            if cut is not None:  # … and π G on the layer's inputs, π e in the constant
                Lam = Lam + P @ cut[1]
                c = c + P @ cut[2]
                if need_mag:
                    with torch.no_grad():
                        cmag = cmag + P @ cut[2].abs()
        if keep_lambdas:
            lams[L] = Lam.detach()
        Lpos = torch.relu(Lam)  # (a clamp's gradient goes through torch.where: slow on a CPU)
        val = Lpos @ layers.hi + (Lam - Lpos) @ layers.lo + c
        mag = None
        if need_mag:
            with torch.no_grad():
                xmag = torch.maximum(layers.lo.abs(), layers.hi.abs())
                mag = Lam.abs() @ xmag + cmag
    return val, mag, (lams if keep_lambdas else None)


def relaxation_point(layers: Layers, nodes: NodeBatch, lams: list, relax: list | None = None, *,
                     saturate: float = 0.8):
    """A point of the relaxation where :func:`bound` is (nearly) reached, per node and row.

    With the coefficients ``lams`` of ``bound(..., keep_lambdas=True)``, the bound is the
    maximum over the input box of a linear function ``Λ·x`` (plus the linearised layers). The
    input taken is the maximiser of ``Λ·x − (s/2) Σ_i (x_i − c_i)² / r_i`` over the box (``c``
    its centre, ``r`` its half-widths): ``x = clip(c + r Λ / s)``, with ``s`` the ``saturate``
    quantile of ``|Λ|`` — the coordinates whose coefficient is in the top ``1 − saturate`` go to
    the box's vertex, the others stay between in proportion (0: the vertex itself, where the
    bound is reached). Going forward from ``x``, each free unstable neuron takes the line its
    coefficient chose (the upper chord where positive, the lower line ``α a`` where not) and a
    decided or stable neuron its linear phase. The point is in the triangle relaxation (not
    clipped to the intermediate bounds). :mod:`nnmiplib.bab.cuts` separates its hull cuts
    there: an LP optimum is seldom a vertex, and cuts separated at vertices alone leave more
    of the gap (PV's 800x2 net, digit 1, tightened bounds: the worst row's root bound 6.87
    without cuts, 2.77 with cuts from vertices, 1.97 with ``saturate`` 0.8; the LP's own
    cuts, 8 rounds: 2.20). Returns ``(x, hs)``: ``x`` ``(N, R, n_in)`` the reduced inputs,
    ``hs[k]`` ``(N, R, n_k)`` the post-activations of hidden layer ``k``; float64 tensors.
    """
    import torch

    with torch.no_grad():
        lam_in = lams[layers.depth]
        centre, half = (layers.lo + layers.hi) / 2, (layers.hi - layers.lo) / 2
        if saturate > 0 and lam_in.shape[-1] > 0:
            s = torch.quantile(lam_in.abs(), saturate, dim=-1, keepdim=True).clamp(min=1e-12)
            x = torch.minimum(torch.maximum(centre + half * lam_in / s, layers.lo), layers.hi)
        else:
            x = torch.where(lam_in > 0, layers.hi, torch.where(lam_in < 0, layers.lo, centre))
        if relax is None:
            relax = node_relaxations(layers, nodes)
        h, hs = x, []
        for k in range(layers.depth):
            a = h @ layers.W[k].T + layers.b[k]
            su, tu, lin, free, _sgn = relax[k]
            free = free > 0
            lower_line = torch.where(free, nodes.alpha[k].clamp(0.0, 1.0), lin) * a
            h = torch.where(free & (lams[k] > 0), su * a + tu, lower_line)
            hs.append(h)
    return x, hs


def certified(val, mag):
    """The float64 bound widened outward against rounding: ``v + 1e-9·(1 + |v| + S)``."""
    v = val.detach()
    return v + MARGIN * (1.0 + v.abs() + mag)


STEP_DTYPE = "float32"


#: :func:`optimise` with ``workers > 1`` splits a batch into chunks of at least this many nodes
#: (a smaller batch runs in the calling thread: a chunk's fixed costs would outweigh the gain)
MIN_CHUNK = 16

_POOL: dict = {}  # worker count → its thread pool, made on first use and kept


def _pool(workers: int):
    from concurrent.futures import ThreadPoolExecutor

    if workers not in _POOL:
        _POOL[workers] = ThreadPoolExecutor(workers, thread_name_prefix="nnmiplib-relax")
    return _POOL[workers]


def optimise(layers: Layers, nodes: NodeBatch, *, iterations: int = 20, lr: float = 0.1, best=None,
             stop_below=None, deadline: float | None = None, dtype: str | None = None, workers: int = 1):
    """Tighten the bounds of ``nodes`` by projected Adam on α (∈ [0,1]), β, γ and π (≥ 0).

    Parameters
    ----------
    iterations : gradient steps (0: just evaluate the current α, β).
    lr : Adam step size.
    best : ``(N, R)`` bounds already proven for these nodes (e.g. the parent's); the result is
        never looser.
    stop_below : ``(N,)`` thresholds; the loop ends early once every node's bound (max over
        its rows' groups is taken by the caller) is below — a node proven is done.
    deadline : ``time.perf_counter()`` value after which no further step starts.
    dtype : "float32" or "float64", the precision of the gradient steps (default
        :data:`STEP_DTYPE`). Every α ∈ [0, 1], β ≥ 0, γ ≥ 0 gives a valid bound, so the
        steps only need to find good ones: in float32 they take about half the time of
        float64 on a CPU. The bounds returned are always evaluated in float64 and widened
        (:func:`certified`): for the multipliers the steps end with, and for the ones they
        start from when ``best`` is not given.
    workers : threads the batch is split among, each chunk of nodes optimised on its own (the
        nodes' bounds are independent, so the result is the one of a single call, each chunk
        only stopping on its own nodes' ``stop_below``), with one torch thread each while they
        run. 1 (default): in the calling thread, with the torch threads as they are set.

    Returns
    -------
    ``(ub, nodes)``: the certified ``(N, R)`` upper bounds (the smaller of ``best`` and those
    evaluated) and the batch with the α, β, γ of the last step (warm start for children).
    """
    import torch

    chunks = min(int(workers), nodes.n // MIN_CHUNK)
    if chunks > 1:
        cuts = np.linspace(0, nodes.n, chunks + 1).astype(int)

        def part(x, i):  # chunk i of a per-node argument (one shared by every node stays whole)
            x = None if x is None else torch.as_tensor(x)
            return x if x is None or x.dim() == 0 or x.shape[0] != nodes.n else x[cuts[i]:cuts[i + 1]]

        prev = torch.get_num_threads()
        torch.set_num_threads(1)  # one torch thread per chunk (the setting is the process's)
        try:
            futures = [_pool(int(workers)).submit(
                optimise, layers, nodes.take(slice(cuts[i], cuts[i + 1])), iterations=iterations, lr=lr,
                best=part(best, i), stop_below=part(stop_below, i), deadline=deadline, dtype=dtype)
                for i in range(chunks)]
            done = [f.result() for f in futures]
        finally:
            torch.set_num_threads(prev)
        return torch.cat([u for u, _ in done]), NodeBatch.cat([b for _, b in done])
    dt = getattr(torch, STEP_DTYPE if dtype is None else dtype)
    if dt not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    fast = layers.cast(dt)
    start = cast_nodes(nodes, dt) if dt != torch.float64 else nodes
    alpha = [a.detach().clone().requires_grad_(True) for a in start.alpha]
    beta = [b.detach().clone().requires_grad_(True) for b in start.beta]
    gamma = None if start.gamma is None else [g.detach().clone().requires_grad_(True) for g in start.gamma]
    pi = None if start.pi is None else [p.detach().clone().requires_grad_(True) for p in start.pi]
    params = [*alpha, *beta, *(gamma or []), *(pi or [])]

    def project():  # onto α ∈ [0, 1], β, γ, π ≥ 0: the steps' bounds trust it (projected=True)
        with torch.no_grad():
            for a in alpha:
                a.clamp_(0.0, 1.0)
            for b in (*beta, *(gamma or []), *(pi or [])):
                b.clamp_(min=0.0)

    project()
    work = replace(start, alpha=alpha, beta=beta, gamma=gamma, pi=pi)
    relax = node_relaxations(layers, nodes)
    # the steps' relaxations: the float64 ones rounded (computing them anew in float32 costs more)
    relax_fast = relax if dt == torch.float64 else [tuple(x.to(dt) for x in r) for r in relax]

    def current():  # the nodes with the current multipliers in float64
        f64 = lambda ps: None if ps is None else [p.detach().to(torch.float64) for p in ps]
        return replace(nodes, alpha=f64(alpha), beta=f64(beta), gamma=f64(gamma), pi=f64(pi))

    def certify(w):  # the float64 bound of the nodes w
        val, mag, _ = bound(layers, w, relax=relax)
        return certified(val, mag)

    ub = None if best is None else torch.as_tensor(best, dtype=torch.float64).clone()
    if ub is None:
        ub = certify(nodes if dt == torch.float64 else current())
    # Adam by hand (torch.optim's first use imports the compiler stack: seconds)
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    for it in range(iterations):
        if deadline is not None and time.perf_counter() >= deadline:
            break
        val, _, _ = bound(fast, work, need_grad=True, relax=relax_fast, need_mag=False, projected=True)
        if stop_below is not None:  # proven at the working precision: certify below
            v = val.detach().to(torch.float64)
            if bool(((v + 1e-5 * (1.0 + v.abs())).max(-1).values <= torch.as_tensor(stop_below)).all()):
                break
        grads = torch.autograd.grad(val.sum(), params, allow_unused=True)
        with torch.no_grad():
            step = lr * (1 - b2 ** (it + 1)) ** 0.5 / (1 - b1 ** (it + 1))
            used = [i for i, g in enumerate(grads) if g is not None]
            ps, gs, a, v = ([x[i] for i in used] for x in (params, grads, m1, m2))
            # the update on every tensor at once (torch's list kernels, as torch.optim's Adam uses)
            torch._foreach_mul_(a, b1)
            torch._foreach_add_(a, gs, alpha=1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, gs, gs, value=1 - b2)
            # √(v + ε²) rather than √v + ε: v is 0 or subnormal wherever the gradients are 0 or tiny
            # (a stable neuron's α), and a square root of those takes 5–20 times as long on a CPU
            denom = torch._foreach_add(v, eps * eps)
            torch._foreach_sqrt_(denom)
            torch._foreach_addcdiv_(ps, a, denom, value=-step)
        project()
    done = current()
    if iterations > 0 or best is not None:
        ub = torch.minimum(ub, certify(done))
    return ub, done


def imply(layers: Layers, nodes: NodeBatch, links: list) -> tuple[NodeBatch, object]:
    r"""Tighten each node's bounds of linked neurons from each other's (the phase decisions
    included).

    ``links[k]`` (reduced indices, :meth:`Layers.reduce_links`) pairs neurons ``i`` and ``j``
    of hidden layer ``k`` with ``dl ≤ a_i − a_j ≤ du`` on the whole box — for a network and
    its pruned copy stacked into one (:mod:`nnmiplib.bab.pair`), a neuron and its copy with
    the difference bounds. On a node where ``a_i ∈ [l_i, u_i]`` (clipped by its decisions),
    ``a_j = a_i − (a_i − a_j) ∈ [l_i − du, u_i − dl]``, and the other way round; the new
    bounds are widened outward like every bound here. Deciding a neuron's phase then often
    decides its copy's. A node whose bounds cross is empty.

    Returns ``(nodes with their own bounds, empty)`` with ``empty`` a bool ``(N,)``.
    """
    import torch

    nodes = nodes.with_bounds(layers)
    lowers, uppers = [x.clone() for x in nodes.lower], [x.clone() for x in nodes.upper]
    empty = torch.zeros(nodes.n, dtype=torch.bool)
    pad = lambda v: MARGIN * (1.0 + v.abs())
    for k, link in enumerate(links):
        if link is None:
            continue
        i, j, dl, du = link
        l, u, *_ = phase_relaxation(lowers[k], uppers[k], nodes.split[k])
        jl, ju = l[:, i] - du, u[:, i] - dl  # a_j = a_i − δ
        il, iu = l[:, j] + dl, u[:, j] + du  # a_i = a_j + δ
        lowers[k][:, j] = torch.maximum(lowers[k][:, j], jl - pad(jl))
        uppers[k][:, j] = torch.minimum(uppers[k][:, j], ju + pad(ju))
        lowers[k][:, i] = torch.maximum(lowers[k][:, i], il - pad(il))
        uppers[k][:, i] = torch.minimum(uppers[k][:, i], iu + pad(iu))
        l, u, *_ = phase_relaxation(lowers[k], uppers[k], nodes.split[k])
        empty |= (l > u).any(1)
        uppers[k] = torch.maximum(uppers[k], lowers[k])  # keep crossings valid; the node is empty
    return replace(nodes, lower=lowers, upper=uppers), empty


def refine(layers: Layers, nodes: NodeBatch, first: int = 1) -> tuple[NodeBatch, object]:
    """Re-tighten the intermediate bounds of every node from hidden layer ``first`` on.

    For hidden layer ``m`` each node's free unstable neurons are bounded again by
    back-substitution (CROWN: the chord above, DeepPoly's adaptive line below) through the
    node's own relaxations of the layers before — where its decisions make neurons linear —
    and intersected with the bounds it had; deeper layers then use the tightened ones.
    Sound like :func:`bound` (float64, widened outward). A node whose bounds cross is empty
    (no input satisfies its decisions).

    Returns ``(nodes with their own bounds, empty)`` with ``empty`` a bool ``(N,)``.
    """
    import torch

    nodes = nodes.with_bounds(layers)
    N = nodes.n
    lowers, uppers = [x.clone() for x in nodes.lower], [x.clone() for x in nodes.upper]
    empty = torch.zeros(N, dtype=torch.bool)
    xmag = torch.maximum(layers.lo.abs(), layers.hi.abs())
    for m in range(max(first, 1), layers.depth):
        cur = replace(nodes, lower=lowers, upper=uppers)
        *_, free = phase_relaxation(lowers[m], uppers[m], nodes.split[m])
        counts = free.sum(1)
        M = int(counts.max()) if N else 0
        if M == 0:
            continue
        order = torch.argsort((~free).to(torch.int8), dim=1, stable=True)[:, :M]  # free neurons first
        valid = torch.arange(M)[None, :] < counts[:, None]
        Wm, bm = layers.W[m], layers.b[m]
        rows = Wm[order]  # (N, M, n_m): coefficients on h^m
        Lam = torch.cat([rows, -rows], dim=1)
        c = torch.cat([bm[order], -bm[order]], dim=1)
        cmag = c.abs()
        with torch.no_grad():
            for k in range(m - 1, -1, -1):
                l, u, su, tu, lin, fr = phase_relaxation(*cur.bounds(layers, k), nodes.split[k])
                su, tu, lin, fr = su[:, None, :], tu[:, None, :], lin[:, None, :], fr[:, None, :]
                adaptive = (u > -l).to(torch.float64)[:, None, :]
                slope_lo = torch.where(fr, adaptive, lin)
                pos = Lam > 0
                Lpos = torch.where(pos, Lam, torch.zeros_like(Lam))
                c = c + (Lpos * tu).sum(-1)
                A = torch.where(pos, Lam * su, Lam * slope_lo)
                c = c + A @ layers.b[k]
                cmag = cmag + (Lpos * tu).sum(-1) + A.abs() @ layers.b[k].abs()
                Lam = A @ layers.W[k]
            val = torch.clamp(Lam, min=0.0) @ layers.hi + torch.clamp(Lam, max=0.0) @ layers.lo + c
            mag = Lam.abs() @ xmag + cmag
            up = val[:, :M] + MARGIN * (1.0 + val[:, :M].abs() + mag[:, :M])
            lo = -val[:, M:] - MARGIN * (1.0 + val[:, M:].abs() + mag[:, M:])
            new_u, new_l = uppers[m].clone(), lowers[m].clone()
            idx_n = torch.arange(N)[:, None].expand(N, M)
            cu = torch.where(valid, torch.minimum(new_u[idx_n, order], up), new_u[idx_n, order])
            cl = torch.where(valid, torch.maximum(new_l[idx_n, order], lo), new_l[idx_n, order])
            new_u[idx_n, order] = cu
            new_l[idx_n, order] = cl
            empty |= (new_l > new_u).any(1)
            uppers[m], lowers[m] = torch.maximum(new_u, new_l), new_l  # keep crossings valid; node is empty
    return replace(nodes, lower=lowers, upper=uppers), empty
