r"""ReLU branch and bound: the anytime search over phase decisions.

The question is ``max_{x ∈ [lo, hi]} F(x)`` with ``F(x) = max_g min_{r ∈ g} (C_r·y(x) + d_r)``
over the logits ``y`` of one network: rows grouped into disjuncts (each group a
conjunction). PV's margin form is one row ``e_k − e_c`` per class ``k ≠ c``, each its own
group; a VNN-LIB disjunct of several rows is one group. A *node* fixes the phase of some
hidden neurons; its upper bound comes from :mod:`nnmiplib.bab.relax` (α-β-CROWN bounds
with the intermediate bounds it was given, never re-tightened), and

* **bounding** is batched: up to ``batch`` nodes are expanded together, their children
  bounded in one call and improved by a few projected-Adam steps on α and β, the batch split
  among the cores the search is given (``workers``; the nodes' bounds are independent);
* **branching** takes the free unstable neuron with the best score of the BaBSR kind
  (the intercept its upper chord adds to the bound, ``Λ⁺ t_u``), weighed by its pseudocost:
  what splitting that neuron has taken off children's bounds so far in the tree, against the
  scores it was chosen on (:class:`~nnmiplib.bab.branch.Pseudocosts`); with ``k_candidates`` > 1
  a filtered look-ahead tries the top candidates on both children with the parent's α, β
  and keeps the one whose worse child has the smallest bound. The default is width 1 (no
  look-ahead): its extra bound passes cost more nodes than its choices save
  (measured, :data:`K_CANDIDATES`);
* **leaves** (no free unstable neuron left) are solved exactly: the network is affine on
  the node's region, so an LP over the inputs alone (HiGHS, one row per decided neuron, its
  bound made safe from the duals and raised against the rounding of the composed maps) gives
  the node's maximum and a point, or proves that no input takes the node's phases; a leaf is
  closed with the smaller of that and its own relaxation bound;
* **the primal side** runs projected gradient ascent on ``F`` from many starts at the root,
  and evaluates at every batch the input vertex each node's relaxation points to, polished
  by a few gradient steps; every incumbent is ``F`` recomputed in float64 by
  :meth:`Network.forward`;
* **cuts** (``cuts`` > 0): once the root (and any tightening) leaves rows open, cutting planes
  — the convex hull of each ReLU over its input box — are separated at the LP relaxation's
  optima and every node's bound carries them with its own multipliers
  (:mod:`nnmiplib.bab.cuts`);
* **row caps** (``row_caps`` > 0; an objective over several rows, e.g. PV's softmax form,
  optimising): each row's own tree first bounds that row's maximum over the box, and those
  bounds cap the rows' bounds at every node of the tree over the objective
  (:class:`CappedObjective`). One row's tree branches on what matters to that row alone, so
  it gets the row far lower than the tree over the objective does in the same time;
* **anytime**: the global dual bound is the largest bound of an open node (or the
  incumbent once the tree is closed) and is recorded with the incumbent over time; the
  search stops at a decision (``threshold``: a point with ``F > threshold``, or every node
  bounded by it), at the gap ``rel_gap``/``abs_gap``, at the deadline (near it a batch takes
  only the nodes the time left can bound at the last batch's pace: :data:`DEADLINE_FIT`), or
  when the queue holds ``max_nodes`` nodes (then the open nodes' bound is still reported).

Open nodes are kept in chunks (the children of one batch, halved by bound) in a heap keyed
by each chunk's largest bound, so selection is close to best-first without sorting every
node; when the queue passes ``max_nodes`` the deepest chunks are expanded first, which
closes nodes fastest.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..machine import available_memory, quiet_blas, search_workers
from . import relax as R
from .branch import Pseudocosts, children, choose
from .cuts import relaxation_cuts, root_cuts
from .tightening import split_time
from .tightening import tighten as tighten_bounds

__all__ = ["BabResult", "CappedObjective", "GroupObjective", "SoftmaxL1Objective", "group_value", "solve"]

log = logging.getLogger(__name__)

#: look-ahead width of the branching (:func:`solve`'s ``k_candidates``) and Adam steps per batch
#: of children (``iterations``). Measured on tightened bounds, one row, the dual bound after the
#: same time (lower is better), widths 1 / 4 and 6 / 12 steps: 256x4 MNIST ε = 0.03 (image 0
#: rows 2, 3, 60 s; image 9 rows 4, 7, 40 s) 1.91 / 1.98, 1.06 / 1.15, 1.00 / 1.13, 1.18 / 1.49;
#: PV's margin rows, 40 s, 12 steps: 800x2 digit 8 row 5 3.51 / 4.22, 200x5 digit 1 row 3
#: 4.70 / 4.75; width 1, 6 / 12 steps: 3.21 / 3.51 and 4.63 / 4.70
K_CANDIDATES = 1
ITERATIONS = 6

#: Adam steps per batch of children when ``iterations`` is None (the default): :data:`ITERATIONS`,
#: or :data:`ITERATIONS_SMALL` where a step is cheap — the weights (inputs fixed by the box left
#: out) hold at most :data:`SMALL_WORK` entries — since the other costs of a node (branching,
#: children, the float64 bound, the queue) do not shrink with the step. Measured once the steps
#: had become twice as cheap, one row on tightened bounds, 40 s, dual bound with 6 / 12 steps
#: (lower is better): PV 200x5 (190 k weights) digit 1 row 6 0.68 / 0.45 (10 steps; 15: 0.41),
#: digit 2 row 0 4.75 / 4.24; PV 100x10 (105 k) digit 1 row 7 4.41 / 3.39, digit 8 row 3
#: 13.74 / 12.28; but PV 800x2 (760 k) digit 8 row 0 1.98 / 2.23 (4 steps: 1.99) and 256x4 MNIST
#: ε = 0.03 (400 k) image 0 rows 2, 3 1.11 / 1.17, 2.81 / 3.02, image 9 row 7 0.18 / 0.31.
ITERATIONS_SMALL = 12
SMALL_WORK = 250_000


def _count(workers) -> int:
    """:func:`solve`'s ``workers`` now: an int, or a function returning one."""
    return max(1, int(workers() if callable(workers) else workers))


def weight_entries(layers) -> int:
    """Entries of the layers' weight matrices (the box's fixed inputs and the stably inactive
    neurons left out): a node's multiply-adds per row and pass."""
    return sum(int(w.shape[0]) * int(w.shape[1]) for w in layers.W)


def default_iterations(layers) -> int:
    """Adam steps per batch of children for these layers (the rule above :data:`ITERATIONS_SMALL`)."""
    return ITERATIONS_SMALL if weight_entries(layers) <= SMALL_WORK else ITERATIONS

#: :func:`solve` row by row, optimising to a relative gap finer than this: a first pass takes every
#: open row to this gap (the time left shared among them, what one leaves passing on), then each
#: row still above the finer gap gets the time left, worst first. Without it the row with the
#: largest bound took the whole time towards the fine gap while the others kept their root bounds
COARSE_GAP = 1e-2

#: seconds of search (shared by the open rows) with which :func:`solve` asks, while it tightens the
#: intermediate bounds, whether the bounds proven so far already decide the query
PROBE = 1.0

#: share of the time left that :func:`solve`'s targeted ascents, one per open row (row by row, at
#: the start), may take together: on 3000x1 each takes 1.1 s, so a 10 s PV margin query spent its
#: whole limit on them and searched nothing (and ended at 10.7 s)
ROW_ATTACKS = 0.25

#: near the deadline a batch is cut to the nodes whose children the time left can bound at the last
#: batches' pace (seconds per child), times this margin: one batch of 400 nodes of PV's softmax form
#: on 3000x1 (18 rows) takes 13 s, and the check between batches let a 30 s search end at 34 s
DEADLINE_FIT = 0.8


@dataclass
class BabResult:
    """Outcome of :func:`solve`.

    ``status``: ``"proved"`` (every node bounded by the threshold), ``"violated"`` (a point
    with ``F > threshold`` found), ``"optimal"`` (gap closed), ``"time_limit"``,
    ``"node_limit"``. ``value``/``x``: the incumbent (``F`` in float64) or None;
    ``dual_bound``: a proven upper bound on ``max F``; ``nodes``: nodes bounded;
    ``trajectory``: ``(seconds, dual_bound, incumbent)`` after each batch. ``bounds``: when the
    search tightened the intermediate bounds first (``tighten``), the ``(lower, upper)`` lists it
    got (sound on the whole box: a caller may keep them for its next query there), else None.
    """

    status: str
    value: float | None
    x: np.ndarray | None
    dual_bound: float
    nodes: int
    time: float
    trajectory: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    bounds: tuple | None = None


def group_value(rows: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """``max_g min_{r∈g} rows[..., r]`` over the last axis (rows grouped by ``groups``)."""
    out = np.full(rows.shape[:-1] + (n_groups,), np.inf)
    for g in range(n_groups):
        out[..., g] = rows[..., groups == g].min(-1)
    return out.max(-1)


class GroupObjective:
    """``F = max_g min_{r∈g} row_r``: disjuncts (groups) of conjunctions of rows.

    :meth:`value` maps the rows' values — or, at a node, their upper bounds — to ``F`` (or an
    upper bound of it: the map is non-decreasing in every row); :meth:`worst` names the row
    that decides a node's value (what branching works on).
    """

    def __init__(self, groups):
        self.groups = np.asarray(groups, dtype=np.int64)
        self.G = int(self.groups.max()) + 1

    def value(self, rows):
        import torch

        vals = [rows[..., torch.as_tensor(self.groups == g)].min(-1).values for g in range(self.G)]
        return torch.stack(vals, -1).max(-1).values

    def worst(self, ub):
        """Per node, the binding (smallest) row of its largest group."""
        import torch

        best_g, best_r = None, None
        for g in range(self.G):
            cols = torch.as_tensor(np.flatnonzero(self.groups == g))
            v, i = ub[:, cols].min(1)
            r = cols[i]
            if best_g is None:
                best_g, best_r = v, r
            else:
                take = v > best_g
                best_g, best_r = torch.where(take, v, best_g), torch.where(take, r, best_r)
        return best_r


class SoftmaxL1Objective:
    r"""``F = ‖softmax(y) − y₀‖₁`` from the rows ``d_k = y_k − y_c`` and ``−d_k`` (``k ≠ c``).

    Rows ``0..K−2`` are ``d_k`` for the classes ``k ≠ c`` in order, rows ``K−1..2K−3`` are
    ``−d_k``; at a node their upper bounds give ``d_k ∈ [l_k, u_k]``, hence
    ``p_k ≤ σ(u_k − \log(1 + Σ_{j≠k} e^{l_j}))``, ``p_k ≥ σ(l_k − \log(1 + Σ_{j≠k} e^{u_j}))``
    (σ the logistic function, ``p_c`` alike with ``d_c = 0``), and with
    ``‖p − y₀‖₁ = 2 Σ_k (p_k − y₀_k)⁺ = 2 Σ_k (y₀_k − p_k)⁺`` the bound
    ``min(2 Σ_k (p̄_k − y₀_k)⁺, 2 Σ_k (y₀_k − p_k)⁺, 2)``, non-decreasing in every row bound.
    At a point (``l = u = d``) it is the objective itself. A node value is raised by 1e-12
    against the rounding of these few operations.
    """

    def __init__(self, y0, c: int):
        self.y0 = np.asarray(y0, dtype=np.float64)
        self.c = int(c)
        self.K = self.y0.size
        self.others = [k for k in range(self.K) if k != self.c]

    @staticmethod
    def rows(K: int, c: int):
        """``(C, d)`` of the rows the objective reads: ``e_k − e_c`` then ``e_c − e_k`` for ``k ≠ c``."""
        E = np.eye(K)
        up = np.array([E[k] - E[c] for k in range(K) if k != c])
        return np.vstack([up, -up]), np.zeros(2 * (K - 1))

    def value(self, rows):
        import torch

        m = self.K - 1
        u = rows[..., :m]
        l = -rows[..., m:]
        l = torch.minimum(l, u)  # crossing bounds only from rounding: keep the hull
        zero = torch.zeros_like(u[..., :1])
        lu, ll = torch.cat([zero, u], -1), torch.cat([zero, l], -1)  # index 0: the class c (d_c = 0)
        hi, lo = [], []
        for k in range(m + 1):
            rest = [j for j in range(m + 1) if j != k]
            hi.append(torch.sigmoid(lu[..., k] - torch.logsumexp(ll[..., rest], -1)))
            lo.append(torch.sigmoid(ll[..., k] - torch.logsumexp(lu[..., rest], -1)))
        p_hi, p_lo = torch.stack(hi, -1), torch.stack(lo, -1)
        y0 = torch.as_tensor(self.y0[[self.c, *self.others]])
        a = 2.0 * (p_hi - y0).clamp(min=0.0).sum(-1)
        b = 2.0 * (y0 - p_lo).clamp(min=0.0).sum(-1)
        return torch.minimum(torch.minimum(a, b), torch.full_like(a, 2.0)) + 1e-12

    def worst(self, ub):
        """The row whose bound the node's value is most sensitive to."""
        import torch

        x = ub.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.value(x).sum(), x)
        return g.argmax(1)


class CappedObjective:
    r"""An objective over rows each proven bounded on the whole box: ``value(min(rows, caps))``.

    ``caps[r]`` is an upper bound of row ``r`` over the box (e.g. the dual bound of that row's
    own search: :func:`solve`'s ``row_caps``), so capping a node's row bounds keeps its value an upper
    bound of ``F`` on the node, never a larger one than the inner objective gives. At a point
    the rows are below their caps and the value is the inner objective's (``uncapped``, which
    the incumbent is computed with). :meth:`worst` is the inner objective's row on the
    uncapped bounds: the capped value is flat in a row at its cap, which at most nodes is every
    row the value depends on. Measured at 300 s (PV softmax, row caps 0.3), against the row the
    capped value is most sensitive to (the inner choice where it is flat): 3000x1 digit 8 dual
    bound 1.202 against 1.209, 100x10 digit 4 optimal in 174 s against 200 s.
    """

    def __init__(self, inner, caps):
        self.uncapped = inner
        self.caps = np.asarray(caps, dtype=np.float64)

    def value(self, rows):
        import torch

        return self.uncapped.value(torch.minimum(rows, torch.as_tensor(self.caps, dtype=rows.dtype)))

    def worst(self, ub):
        return self.uncapped.worst(ub)


class _Primal:
    """The incumbent: best ``F`` over every point tried, recomputed in float64."""

    def __init__(self, net, C, d, objective, lo, hi):
        self.net, self.C, self.d, self.obj = net, C, d, getattr(objective, "uncapped", objective)
        self.lo, self.hi = lo, hi
        self.value, self.x, self.source = -math.inf, None, None

    def F(self, X: np.ndarray) -> np.ndarray:
        import torch

        y = self.net.forward(X)
        with torch.no_grad():
            return self.obj.value(torch.as_tensor(y @ self.C.T + self.d)).numpy()

    def offer(self, X: np.ndarray, source: str) -> None:
        X = np.clip(np.atleast_2d(np.asarray(X, dtype=np.float64)), self.lo, self.hi)
        f = self.F(X)
        i = int(np.argmax(f))
        if f[i] > self.value:
            x = X[i].copy()
            v = float(self.F(x[None])[0])  # the reported value: this point alone, in float64
            if v > self.value:
                self.value, self.x, self.source = v, x, source

    def ascend(self, X0: np.ndarray, steps: int = 20, lr: float | None = None, until: float | None = None) -> np.ndarray:
        """Projected gradient ascent on F (signed steps, shrinking) from the rows of ``X0``; no
        step starts after ``until`` (a ``time.perf_counter()`` value) but the first."""
        import torch

        lo, hi = torch.tensor(self.lo), torch.tensor(self.hi)  # copies: the box's arrays are read-only
        width = (hi - lo).clamp(min=0.0)
        X = torch.tensor(np.asarray(X0, dtype=np.float64)).requires_grad_(True)
        C, d = torch.as_tensor(self.C), torch.as_tensor(self.d)
        Ws = [torch.tensor(np.asarray(w)) for w in self.net.weights]
        bs = [torch.tensor(np.asarray(b)) for b in self.net.biases]
        step = 0.25 if lr is None else lr
        for s in range(steps):
            if until is not None and s and time.perf_counter() >= until:
                break
            h = X
            for k, (w, b) in enumerate(zip(Ws, bs)):
                h = h @ w.T + b
                if k < len(Ws) - 1:
                    h = torch.relu(h)
            f = self.obj.value(h @ C.T + d)
            (g,) = torch.autograd.grad(f.sum(), X)
            with torch.no_grad():
                X += step * (0.5 ** (s * 4 / steps)) * width * torch.sign(g)
                X.copy_(torch.maximum(torch.minimum(X, hi), lo))
        return X.detach().numpy()


@dataclass(order=True)
class _Chunk:
    key: tuple
    nodes: R.NodeBatch = field(compare=False)
    ub: object = field(compare=False)  # (N, R) certified row bounds
    depth: object = field(compare=False)  # (N,) number of decisions


def _free_count(layers, nodes) -> object:
    import torch

    n = torch.zeros(nodes.n, dtype=torch.int64)
    for k in range(layers.depth):
        *_, free = R.phase_relaxation(*nodes.bounds(layers, k), nodes.split[k])
        n += free.sum(-1)
    return n


def _input_vertices(layers, nodes, worst):
    """The input corner that maximises each node's relaxation of its worst row."""
    import torch

    Lam = _input_coefficients(layers, nodes)[torch.arange(nodes.n), worst]
    return layers.full_input(torch.where(Lam > 0, layers.hi, layers.lo).numpy())


def _input_coefficients(layers, nodes):
    """Each node's and row's coefficients on the (reduced) input in its relaxation's bound."""
    return R.bound(layers, nodes, keep_lambdas=True)[2][layers.depth]


#: a leaf's phase rows (:func:`_leaf_region`) are loosened by this much relative to their terms'
#: magnitudes, and its objective rows' LP bounds raised alike — far above the rounding of
#: composing the affine maps — so the LP's region holds the leaf's and its bound the leaf's maximum
LEAF_MARGIN = 1e-9


def _leaf_region(net, phases, decided, lo, hi):
    """A leaf's region as an LP over the inputs, and its logits as an affine map of them.

    With every phase fixed (``phases[k]``: 1 active, 0 inactive, per hidden layer of the full
    network) each pre-activation is an affine map of the input ``x``; the leaf's region is the
    box cut by ``σ_i a_i(x) ≥ 0`` for its decided neurons (``decided[k]``: +1 / −1 / 0) — the
    stable ones' phases hold on the whole box. Returns ``(model, A, c, mag)``: the
    :class:`~nnmiplib.mip.encode.MipModel` with the inputs as columns and one dense row per
    decided neuron, each loosened by :data:`LEAF_MARGIN` × (1 + its terms' magnitudes) so that
    it holds every input of the leaf whatever the rounding of the composed maps (an infeasible
    model proves the leaf empty); the logits ``y = A x + c`` on the leaf, and ``mag`` the
    magnitudes of their terms (what a bound on them is raised by, times :data:`LEAF_MARGIN`).
    On PV's 3000x1 net it is 784 columns × 186 rows where the network's own LP has a column per
    neuron, and its infeasible answer, confirmed without presolve
    (:mod:`nnmiplib.mip.solvers.highs`), comes in about 0.1 s against 7.4 s.
    """
    from ..mip.encode import MipModel

    M = c = Mabs = cabs = None  # a = M x + c, with the magnitudes of its terms alongside
    rows, r_lo = [], []
    xmag = np.maximum(np.abs(lo), np.abs(hi))
    for k, (w, b) in enumerate(zip(net.weights, net.biases)):
        w, b = np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if M is None:
            M, c, Mabs, cabs = w, b, np.abs(w), np.abs(b)
        else:
            M, c = w @ M, w @ c + b
            Mabs, cabs = np.abs(w) @ Mabs, np.abs(w) @ cabs + np.abs(b)
        if k == len(net.weights) - 1:
            break
        sig = np.asarray(decided[k])
        idx = np.flatnonzero(sig)
        if idx.size:
            tol = LEAF_MARGIN * (1.0 + cabs[idx] + Mabs[idx] @ xmag)
            rows.append(sig[idx, None] * M[idx])  # σ (M x + c) ≥ −tol
            r_lo.append(-tol - sig[idx] * c[idx])
        keep = np.asarray(phases[k], dtype=np.float64)
        M, c, Mabs, cabs = keep[:, None] * M, keep * c, keep[:, None] * Mabs, keep * cabs
    model = MipModel()
    model.add_vars(lo.size, lo, hi)
    if rows:
        model.add_rows(np.vstack(rows), np.concatenate(r_lo), np.inf)
    return model, M, c, cabs + Mabs @ xmag


def _leaf_lp(net, layers, node, lo, hi, C, d, obj, time_limit, leaf=None):
    """Maximum of F on a leaf (every neuron's phase known) by LPs over the inputs (HiGHS).

    With every phase fixed the network is affine on the node's region (:func:`_leaf_region`).
    For a :class:`GroupObjective`, ``t ≤ C_r y + d_r`` for the rows of a group and ``max t``
    give the group's exact maximum; for another objective each row is maximised alone and the
    objective's bound is taken at those maxima (valid, not always exact), tightened by
    ``leaf`` when given: ``leaf(lower, upper, time_limit) -> (bound, x)`` with the full
    network's hidden-layer bounds clipped to the node's phases (called only on a leaf the LPs
    found non-empty). Returns the safe bound (from the duals, raised by :data:`LEAF_MARGIN`
    times the rows' magnitudes) and the input of the best LP point; ``(-inf, None)`` for a leaf
    no input reaches.
    """
    import torch

    from ..mip.solvers import get_backend
    from ..mip.solvers.base import Status, safe_lp_bound

    lower, upper = [], []
    splits = layers.full_split([s[0] for s in node.split])
    for k, s in enumerate(splits):
        fl, fu = layers.full_lower[k].copy(), layers.full_upper[k].copy()
        if node.lower is not None:  # the node's own (tightened) bounds on the kept neurons
            kp = layers.keep[k]
            fl[kp] = np.maximum(fl[kp], node.lower[k][0].numpy())
            fu[kp] = np.minimum(fu[kp], node.upper[k][0].numpy())
        l, u, *_ = R.phase_relaxation(torch.as_tensor(fl), torch.as_tensor(fu), torch.as_tensor(s)[None])
        lower.append(l[0].numpy())
        upper.append(u[0].numpy())
    region, A, c, mag = _leaf_region(net, [u > 0 for u in upper], splits, lo, hi)
    G, e = C @ A, C @ c + d  # the rows on the leaf: G x + e
    err = LEAF_MARGIN * (1.0 + np.abs(C) @ mag + np.abs(d))  # their composition's rounding, and more
    n_in = lo.size
    # each row's range over the box bounds t (finite column bounds keep the safe bound finite)
    r_hi = np.clip(G, 0, None) @ hi + np.clip(G, None, 0) @ lo + e
    r_lo = np.clip(G, 0, None) @ lo + np.clip(G, None, 0) @ hi + e
    big = float(np.max(np.abs(np.concatenate([r_lo, r_hi])))) + 1.0
    best, best_x = -math.inf, None
    grouped = isinstance(obj, GroupObjective)
    sets = [np.flatnonzero(obj.groups == g) for g in range(obj.G)] if grouped else [[r] for r in range(len(C))]
    row_max = np.full(len(C), -math.inf)
    for rows in sets:
        model = region.copy()
        t = int(model.add_vars(1, -big, big)[0])
        block = np.zeros((len(rows), model.n_vars))
        block[:, :n_in] = -G[rows]
        block[:, t] = 1.0
        model.add_rows(block, -np.inf, e[rows])  # t ≤ G_r x + e_r
        obj_c = np.zeros(model.n_vars)
        obj_c[t] = 1.0
        model.set_objective(obj_c, "max")
        sol = get_backend("highs")(model, threads=1).solve(time_limit)
        if sol.status is Status.INFEASIBLE:  # the decisions contradict each other: an empty node
            return -math.inf, None
        ub = safe_lp_bound(model, obj_c, "max", sol.row_dual) if sol.row_dual is not None else math.inf
        ub += float(err[rows].max())
        if sol.x is not None and (best_x is None or ub > best):
            best_x = np.asarray(sol.x)[:n_in]
        best = max(best, ub)
        row_max[rows] = ub
    if not grouped:
        with torch.no_grad():
            best = float(obj.value(torch.as_tensor(row_max)[None])[0])
        if leaf is not None:  # a feasible leaf (the LPs above would have found it empty)
            v, x = leaf(lower, upper, time_limit)
            best, best_x = min(best, v), (x if x is not None else best_x)
    return best, best_x


def solve(net, lo, hi, C, d, *, lower, upper, groups=None, objective=None, threshold: float | None = None,
          rel_gap: float = 1e-2, abs_gap: float = 1e-6, time_limit: float | None = 60.0, batch: int | None = None,
          root_iterations: int = 60, iterations: int | None = None, k_candidates: int = K_CANDIDATES,
          pseudocosts: bool = True, max_nodes: int | None = None,
          attack_starts: int = 64, threads: int | None = None, workers: int | None = None, seed: int = 0,
          initial_points=None, split_rows: bool | None = None, refine: bool = False,
          witness: float | None = None, leaf=None, links=None, tighten: float = 0.0, cuts: float = 0.0,
          row_caps: float = 0.0, cancel=None) -> BabResult:
    """Branch and bound on ReLU phases for ``max F`` (see the module doc).

    Parameters
    ----------
    net : Network.
    lo, hi : the input box.
    C, d : objective rows ``C y + d`` over the logits (``R × K``, ``R``).
    lower, upper : intermediate pre-activation bounds of the hidden layers (the Big-M
        constants; e.g. ``Bounds.lower[:-1]``) — used as they are at every node.
    groups : group (disjunct) of each row (default: every row its own group).
    objective : instead of ``groups``, an objective over the rows with ``value`` (torch,
        non-decreasing in every row) and ``worst`` (e.g. :class:`SoftmaxL1Objective`).
    threshold : decision mode: stop at a point with ``F > threshold`` or once every node is
        bounded by it. None: optimise to ``rel_gap``/``abs_gap``.
    witness : with ``threshold``, the level a point must pass to end the search (default the
        threshold), e.g. ``threshold = −τ`` to prove ``F < 0`` beyond a tolerance while a
        point with ``F > witness`` is what counts as found.
    leaf : for an objective that is not linear in the rows, how a leaf is closed (see
        :func:`_leaf_lp`); default: the objective's bound at each row's LP maximum.
    time_limit : seconds (wall clock, from the call).
    batch : nodes expanded per step (default: by network size).
    root_iterations, iterations : Adam steps on α, β at the root and per batch of children
        (``iterations`` default: by the size of the network, :func:`default_iterations`).
    k_candidates : look-ahead width of the branching (1, the default: no look-ahead).
    pseudocosts : weigh each neuron's branching score by what splitting it has gained so far in
        this tree (:class:`nnmiplib.bab.branch.Pseudocosts`; default). False: the score alone.
    max_nodes : cap on open nodes (default: :func:`node_budget`, a quarter of the available
        memory, 1–8 GiB).
    attack_starts : gradient-ascent starts at the root.
    threads : torch threads (default 1: small batches lose more to thread start-up than they gain).
    workers : cores the search uses: each batch's bound optimisation is split among that many
        threads of one torch thread each, one chunk of nodes each
        (:func:`nnmiplib.bab.relax.optimise`), and the tightening runs that many torch threads
        (``tighten``). An int, or a function returning one, asked at every batch (e.g. by
        searches side by side, as the others end). Default :func:`nnmiplib.machine.search_workers`:
        every core this process is given. One PV row (200x5 digit 1, tightened bounds, 30 s, two
        runs each): 127 k and 119 k nodes with 1, 189 k and 171 k with 2 (two torch threads
        instead: 185 k, 179 k); one row of 256x4 MNIST, ε = 0.03, image 0: 69 k (both runs),
        108 k and 101 k (two torch threads: 83 k, 99 k).
    initial_points : inputs to offer as incumbents first (e.g. a reference image).
    split_rows : when every group is one row, search one row at a time (default): a tree
        per row, rows in decreasing order of their root bound, each row's α and β only,
        and rows the root already settles skipped — ``R`` times less work per node than
        carrying every row through every node. The incumbent and the deadline are shared.
        Optimising to a ``rel_gap`` finer than :data:`COARSE_GAP`, a first pass takes every open
        row to that gap in its share of the time, so that no row keeps its root bound.
    refine : re-tighten each child's intermediate bounds after its decision
        (:func:`nnmiplib.bab.relax.refine`): tighter nodes at a cost per node that grows with
        depth. Without it the given bounds are the Big-M constants of every node's
        relaxation (an exact solve of the thesis's MIP with those constants).
    tighten : share of the time limit spent at most, when the root leaves some row open,
        tightening the intermediate bounds first (:func:`nnmiplib.bab.tightening.tighten`; the
        trees then start from them, returned as ``BabResult.bounds``). Now and then the bounds
        proven so far are tried on the open rows (root bound, then a :data:`PROBE`-second
        search; one tree, not row by row: a first look of that long, then such a search) and
        once the query is settled the tightening stops. Only with a time limit and two or more
        hidden layers; 0 (default): the given bounds are used as they are.
    links : per hidden layer ``None`` or ``(i, j, dl, du)`` (index arrays and bounds, full
        indices): ``dl ≤ a_i − a_j ≤ du`` holds on the whole box; every child's bounds of linked
        neurons are then tightened from each other's (:func:`nnmiplib.bab.relax.imply`), e.g.
        a network and its pruned copy stacked into one (:func:`nnmiplib.bab.pair.solve_pair`).
    cuts : share of the time left, after any tightening, spent at most on cutting planes for
        the rows the root leaves open — the convex hull of each ReLU over its input box
        (:mod:`nnmiplib.bab.cuts`), separated at the relaxation's own optimum
        (:data:`CUT_METHOD`) and added to every node's bound with optimised multipliers (row
        by row: once, for every open row, each row's tree keeping the cuts its root bound
        uses; one tree: at its root, after the tightening's last look). With ``tighten``, the
        tightening's per-neuron searches also cut at their roots if :data:`TIGHTEN_CUTS` > 0.
        0 (default): none.
    row_caps : with an ``objective`` and a time limit, optimising: share of the time left (after
        any tightening) spent first on the rows one at a time, each row's own tree bounding its
        maximum over the box (rows in decreasing order of the objective's sensitivity to them
        at the root, those under :data:`CAP_SENSITIVITY` of the largest skipped); the tree over
        the objective then caps every node's row bounds by them (:class:`CappedObjective`) and
        starts from the rows' points. 0 (default): none.
    cancel : optional :class:`threading.Event`; once it is set the search stops at its next
        batch as at its deadline (status ``"time_limit"``, the open nodes' bound reported), e.g.
        when another search running beside it has settled the question (a tightening under
        way, ``tighten``, first runs on to its share).
    """
    t0 = time.perf_counter()  # before torch's first import (1–2 s), which the limit counts too
    deadline = None if time_limit is None else t0 + float(time_limit)
    import torch

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads or 1))
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    C, d = np.atleast_2d(np.asarray(C, dtype=np.float64)), np.ravel(np.asarray(d, dtype=np.float64))
    if objective is not None and groups is not None:
        raise ValueError("give groups or an objective, not both")
    single = objective is None and (groups is None or len(set(np.asarray(groups).tolist())) == C.shape[0])
    obj = objective or GroupObjective(np.arange(C.shape[0]) if groups is None else groups)
    if not net.hidden_sizes:
        # an affine network: give it the hidden layer ReLU(x − lo), active on the whole box
        # (x − lo ≥ 0), so the search (whose root is then exact) has a layer to work on
        from ..network import Network

        W, b = net.weights[0], net.biases[0]
        net = Network([np.eye(lo.size), W], [-lo, b + W @ lo], name=net.name)
        lower, upper = [np.zeros(lo.size)], [hi - lo]
    if not 0.0 <= float(tighten) < 1.0:
        raise ValueError(f"tighten is a share of the time limit in [0, 1), got {tighten!r}")
    if not 0.0 <= float(row_caps) < 1.0:
        raise ValueError(f"row_caps is a share of the time left in [0, 1), got {row_caps!r}")
    row_caps = float(row_caps) if objective is not None and threshold is None and deadline is not None else 0.0
    if links is not None and len(links) != len(lower):
        raise ValueError(f"links must hold one entry per hidden layer ({len(lower)}), got {len(links)}")
    args = (rel_gap, abs_gap, deadline, batch, root_iterations, iterations, k_candidates, pseudocosts, max_nodes, refine,
            search_workers() if workers is None else workers)
    try:
        with quiet_blas():  # numpy's idle BLAS threads off the workers' cores
            if (split_rows is None or split_rows) and single and C.shape[0] > 1:
                return _solve_by_rows(net, lo, hi, C, d, lower, upper, threshold, args, attack_starts, seed,
                                      initial_points, t0, links=links, tighten=tighten, cuts=cuts, cancel=cancel)
            if tighten > 0 and deadline is not None and len(lower) >= 2:
                return _solve_tightened(net, lo, hi, C, d, lower, upper, obj, threshold, args, attack_starts, seed,
                                        initial_points, t0, tighten, witness=witness, leaf=leaf, links=links,
                                        cancel=cancel, cut_share=cuts, row_caps=row_caps)
            capped = None
            if row_caps > 0:
                capped = _cap_rows(net, lo, hi, C, d, lower, upper, obj, row_caps, args, attack_starts, seed,
                                   initial_points, t0, links=links, cancel=cancel, cut_share=cuts)
                obj, initial_points = capped["objective"], capped["points"]
            res = _solve(net, lo, hi, C, d, lower, upper, obj, threshold, *args, attack_starts, seed, initial_points,
                         t0, witness=witness, leaf=leaf, links=links, cancel=cancel, cut_share=cuts)
            return res if capped is None else _with_caps(res, capped)
    finally:
        torch.set_num_threads(prev_threads)


def _solve_by_rows(net, lo, hi, C, d, lower, upper, threshold, args, attack_starts, seed, initial_points, t0,
                   links=None, tighten=0.0, cuts=0.0, cancel=None):
    """:func:`solve` one row at a time (every group a single row): see ``split_rows``."""
    import torch

    (rel_gap, abs_gap, deadline, batch, root_iterations, iterations, k_candidates, pseudocosts, max_nodes, refine,
     workers) = args
    R_ = C.shape[0]
    everything = np.arange(R_)
    primal = _Primal(net, C, d, GroupObjective(everything), lo, hi)
    if initial_points is not None:
        primal.offer(initial_points, "given")
    rng = np.random.default_rng(seed)
    if attack_starts:
        starts = rng.uniform(lo, hi, size=(attack_starts, lo.size))
        starts[0] = (lo + hi) / 2
        primal.offer(primal.ascend(starts, steps=30, until=deadline), "attack")
    root_ub = _root_bound(net, lo, hi, C, d, lower, upper, root_iterations, None)
    if attack_starts:  # a targeted ascent per open row: the joint one follows only the largest row
        until = None if deadline is None else time.perf_counter() + ROW_ATTACKS * (deadline - time.perf_counter())
        for r in np.argsort(-root_ub):
            floor = threshold if threshold is not None else primal.value
            if (threshold is not None and primal.value > threshold) or root_ub[r] <= floor:
                continue
            if until is not None and time.perf_counter() >= until:
                break
            one = _Primal(net, C[r:r + 1], d[r:r + 1], GroupObjective(np.zeros(1)), lo, hi)
            starts = rng.uniform(lo, hi, size=(attack_starts, lo.size))
            starts[0] = primal.x if primal.x is not None else (lo + hi) / 2
            primal.offer(one.ascend(starts, steps=60, until=until), f"attack on row {int(r)}")
    # the gap around an incumbent; with none yet (−∞) the absolute one, so that −∞ + gap stays −∞
    # (every row open, no gap closed) instead of −∞ + ∞ = NaN, which no comparison passes
    gap = lambda v, rel=rel_gap: max(abs_gap, rel * abs(v)) if math.isfinite(v) else abs_gap

    def level(rel=rel_gap):  # a row bounded by this is settled: the threshold, or the incumbent plus the gap
        return threshold if threshold is not None else primal.value + gap(primal.value, rel)

    def search_row(r, low, up, until, cut=(None, None), row_gap=None):
        """Row ``r``'s own tree on intermediate bounds ``low``/``up`` until ``until`` (optimising: to
        the relative gap ``row_gap``, default ``rel_gap``), with the cuts ``cut`` (``(found, root)``
        of :func:`_find_cuts` on those bounds); its point is offered."""
        row_cuts = _row_cuts(*cut, r)
        res = _solve(net, lo, hi, C[r:r + 1], d[r:r + 1], low, up, GroupObjective(np.zeros(1)), threshold,
                     rel_gap if row_gap is None else row_gap,
                     abs_gap, until, batch, root_iterations, iterations, k_candidates, pseudocosts, max_nodes, refine,
                     workers, 0, seed, primal.x, t0, floor=None if threshold is not None else primal.value, links=links, cancel=cancel,
                     cuts=row_cuts[0], start=row_cuts[1])
        if res.x is not None:
            primal.offer(res.x, f"row {int(r)}: {res.stats.get('incumbent_source')}")
        return res

    tightened, probe_nodes, found, cut_stats, cut_root = None, 0, None, None, None
    if (tighten > 0 and deadline is not None and len(lower) >= 2 and (root_ub > level()).any()
            and not (threshold is not None and primal.value > threshold)):
        left = deadline - time.perf_counter()
        floor = level()

        def decided(low, up):
            """Every row bounded ≤ the floor on these intermediate bounds: by the root bound, then
            by a short search (PROBE seconds shared by the rows still open, easiest first; with
            ``cuts``, cuts separated at the relaxation first, in up to half of PROBE). A row's bound
            stays proven whatever the tightening does next."""
            nonlocal root_ub, probe_nodes
            layers = R.Layers.build(net, low, up, lo, hi, C, d)
            ub, root = R.optimise(layers, R.NodeBatch.root(layers), iterations=root_iterations, deadline=deadline)
            root_ub = np.minimum(root_ub, ub[0].numpy())
            cut = (None, None)
            if cuts > 0 and CUT_METHOD == "relaxation" and (root_ub > floor).any():
                until = min(time.perf_counter() + PROBE / 2, deadline)
                found_now, _, root_now = _find_cuts(net, layers, root_ub, floor, 1.0, until, root=root)
                if found_now is not None:
                    root_ub = np.minimum(root_ub, root_now[1][0].numpy())
                    cut = (found_now, root_now)
            rows = [r for r in np.argsort(root_ub) if root_ub[r] > floor]
            for r, share in split_time(rows, min(PROBE, deadline - time.perf_counter())):
                res = search_row(r, low, up, time.perf_counter() + share, cut)
                probe_nodes += res.nodes
                root_ub[r] = min(root_ub[r], res.dual_bound)
            return bool((root_ub <= floor).all())

        lower, upper, tightened = tighten_bounds(net, lo, hi, lower, upper, time_limit=tighten * left, stop=decided,
                                                 threads=_count(workers), cuts=TIGHTEN_CUTS if cuts > 0 else 0.0)
        if not (tightened and tightened[-1]["stopped"]):
            decided(lower, upper)
    if (cuts > 0 and deadline is not None and (root_ub > level()).any()
            and not (threshold is not None and primal.value > threshold)):
        open_rows = np.flatnonzero(root_ub > level())
        found, cut_stats, cut_root = _find_cuts(net, R.Layers.build(net, lower, upper, lo, hi, C, d), root_ub,
                                                level(), cuts, deadline)
        if found is not None and cut_root is not None:
            root_ub = np.minimum(root_ub, cut_root[1][0].numpy())
        elif found is not None:
            root_ub = np.minimum(root_ub, _root_bound(net, lo, hi, C, d, lower, upper, root_iterations, deadline,
                                                      cuts=found))
        log.info("cuts: %d kept of %d found in %d rounds, %.1f s; root bounds of the open rows now %s",
                 cut_stats["kept"], cut_stats["found"], cut_stats["rounds"], cut_stats["time"],
                 np.round(root_ub[open_rows], 3).tolist())
    traj = [(time.perf_counter() - t0, float(max(root_ub.max(), primal.value)), primal.value)]
    duals, nodes, status, parts = root_ub.copy(), 1 + probe_nodes, None, {}
    # optimising to a gap finer than COARSE_GAP: first every open row to COARSE_GAP, the time shared
    passes = [rel_gap] if threshold is not None or rel_gap >= COARSE_GAP else [COARSE_GAP, rel_gap]
    for p, row_gap in enumerate(passes):
        coarse = p < len(passes) - 1
        rows = [r for r in np.argsort(-duals) if duals[r] > level(row_gap)]
        shares = split_time(rows, deadline - time.perf_counter()) if coarse and deadline is not None \
            else ((r, None) for r in rows)
        for r, share in shares:
            if threshold is not None and primal.value > threshold:
                status = "violated"
                break
            if duals[r] <= level(row_gap):
                continue
            if deadline is not None and time.perf_counter() >= deadline:
                status = "time_limit"
                break
            until = deadline if share is None else time.perf_counter() + share
            known = primal.value
            res = search_row(r, lower, upper, until, (found, cut_root), row_gap)
            nodes += res.nodes
            # the row's tree starts again from its root: what a pass before proved still holds
            traj += [(tt, max(min(dd, duals[r]), *(duals[q] for q in everything if q != r)), max(pp, known))
                     for tt, dd, pp in res.trajectory]
            duals[r] = min(duals[r], res.dual_bound)
            parts[int(r)] = res.status
            # and the state once the row is done: an incumbent the row's points gave F is dated here
            traj.append((time.perf_counter() - t0, float(max(duals.max(), primal.value)), primal.value))
            if res.status in ("time_limit", "node_limit") and not coarse:
                status = res.status
                break
        if status is not None:
            break
    dual = float(max(duals.max(), primal.value))
    closed = dual - primal.value <= gap(primal.value)  # optimising: the gap closed (never without a point)
    if status in ("time_limit", "node_limit") and threshold is None and closed:
        status = None  # a row stopped by the limit, but the rows' bounds together close the gap
    if status is None:
        if threshold is not None:
            status = "violated" if primal.value > threshold else ("proved" if dual <= threshold else "time_limit")
        else:
            status = "optimal" if closed else "time_limit"
    del torch
    return BabResult(status, primal.value if primal.x is not None else None, primal.x, dual, nodes,
                     time.perf_counter() - t0, traj, {"rows": parts, "root_bounds": root_ub.tolist(),
                                                      "incumbent_source": primal.source, "split_rows": True,
                                                      **({"tightened": tightened} if tightened else {}),
                                                      **({"cuts": cut_stats} if cut_stats else {})},
                     bounds=(lower, upper) if tightened else None)


QUEUE_MEMORY = (2**30, 8 * 2**30)  # bytes the open nodes may take: a quarter of what is available, clamped


_SETTLED = ("optimal", "proved", "violated")


def _solve_tightened(net, lo, hi, C, d, lower, upper, obj, threshold, args, attack_starts, seed, initial_points, t0,
                     tighten, cut_share=0.0, row_caps=0.0, **kw) -> BabResult:
    """:func:`solve` of one tree (not row by row) with ``tighten``: a first look of :data:`PROBE`
    seconds; if it does not settle the query, the intermediate bounds are tightened (up to
    ``tighten`` of the time left), the bounds proven so far tried now and then by another
    :data:`PROBE`-second search (the tightening stops once one settles it), then the search
    goes on with the tightened bounds (with cuts, ``cut_share``, at its root). The incumbent
    passes from each search to the next."""
    deadline = args[2]

    def run(low, up, until, starts, points, cut_share=0.0, objective=obj):
        return _solve(net, lo, hi, C, d, low, up, objective, threshold, *args[:2], min(until, deadline), *args[3:],
                      starts, seed, points, t0, cut_share=cut_share, **kw)

    looks = [run(lower, upper, time.perf_counter() + PROBE, attack_starts, initial_points)]

    def best_points():
        xs = [r.x for r in looks if r.x is not None]
        if initial_points is not None:
            xs += list(np.atleast_2d(initial_points))
        return np.array(xs) if xs else None

    def settled(low, up):
        looks.append(run(low, up, time.perf_counter() + PROBE, 0, best_points(),
                         cut_share if CUT_METHOD == "relaxation" else 0.0))
        return looks[-1].status in _SETTLED

    tightened, bounds, capped = None, None, None
    if looks[0].status not in _SETTLED:
        left = deadline - time.perf_counter()
        low, up, tightened = tighten_bounds(net, lo, hi, lower, upper, time_limit=tighten * left, stop=settled,
                                            threads=_count(args[-1]), cuts=TIGHTEN_CUTS if cut_share > 0 else 0.0)
        bounds = (low, up)
        if not (tightened and tightened[-1]["stopped"]):
            objective, points = obj, best_points()
            if row_caps > 0:
                capped = _cap_rows(net, lo, hi, C, d, low, up, obj, row_caps, args, attack_starts, seed, points, t0,
                                   cut_share=cut_share, links=kw.get("links"), cancel=kw.get("cancel"))
                objective, points = capped["objective"], capped["points"]
            looks.append(run(low, up, deadline, 0, points, cut_share, objective))
    last = looks[-1]
    best = max((r for r in looks if r.x is not None), key=lambda r: r.value, default=last)
    # every look's dual bound is sound on the box (the tightened bounds are): keep the smallest
    dual = min(r.dual_bound for r in looks)
    stats = {**last.stats, "looks": len(looks), **({"tightened": tightened} if tightened else {}),
             "incumbent_source": best.stats.get("incumbent_source")}
    traj, low, high = [], np.inf, -np.inf  # the looks one after the other: the best of each so far
    for tt, dd, pp in (p for r in looks for p in r.trajectory):
        low, high = min(low, dd), max(high, pp)
        traj.append((tt, low, high))
    res = BabResult(last.status, best.value, best.x, float(max(dual, best.value if best.x is not None else -np.inf)),
                    sum(r.nodes for r in looks), time.perf_counter() - t0, traj, stats, bounds)
    return res if capped is None else _with_caps(res, capped)


#: :func:`solve`'s ``row_caps``: rows to which the objective's value at the root is less sensitive
#: than this share of the most sensitive row's are not searched one by one (for PV's softmax form,
#: the classes far below the reference class, and the rows bounding the differences from below)
CAP_SENSITIVITY = 1e-2


def _cap_rows(net, lo, hi, C, d, lower, upper, obj, share, args, attack_starts, seed, points, t0, cut_share=0.0,
              links=None, cancel=None) -> dict:
    """:func:`solve`'s ``row_caps``: each row's own tree (its own incumbent and gap) for up to
    ``share`` of the time left, the rows the objective's root value is most sensitive to first,
    the time split evenly among the rows still to do. Returns the :class:`CappedObjective`
    (``"objective"``), the starting points for the tree over the objective (``"points"``: the
    rows' incumbents and ``points``) and what each row's search did (``"rows"``)."""
    import torch

    (rel_gap, abs_gap, deadline, batch, root_iterations, iterations, k_candidates, pseudocosts, max_nodes, refine,
     workers) = args
    t = time.perf_counter()
    until = t + share * max(deadline - t, 0.0)
    ub = _root_bound(net, lo, hi, C, d, lower, upper, root_iterations, until)
    x = torch.as_tensor(ub[None]).requires_grad_(True)
    (g,) = torch.autograd.grad(obj.value(x).sum(), x)
    g = g[0].numpy()
    rows = [int(r) for r in np.argsort(-g) if g[r] > 0 and g[r] >= CAP_SENSITIVITY * g.max()]
    caps, xs, done = ub.copy(), [], {}
    for r, part in split_time(rows, until - time.perf_counter()):
        t = time.perf_counter()
        res = _solve(net, lo, hi, C[r:r + 1], d[r:r + 1], lower, upper, GroupObjective(np.zeros(1)), None, rel_gap,
                     abs_gap, min(time.perf_counter() + part, until), batch, root_iterations, iterations,
                     k_candidates, pseudocosts, max_nodes, refine, workers, attack_starts, seed, points, t0,
                     links=links, cancel=cancel, cut_share=cut_share)
        caps[r] = min(caps[r], res.dual_bound)
        if res.x is not None:
            xs.append(res.x)
        done[r] = {"status": res.status, "bound": float(caps[r]), "root": float(ub[r]),
                   "value": None if res.value is None else float(res.value), "nodes": int(res.nodes),
                   "seconds": time.perf_counter() - t}
    given = [] if points is None else list(np.atleast_2d(points))
    log.info("row caps: %d rows searched one by one in %.1f s, bounds %s", len(done), time.perf_counter() - t0,
             {r: round(v["bound"], 4) for r, v in done.items()})
    return {"objective": CappedObjective(obj, caps), "points": np.array(xs + given) if xs or given else None,
            "rows": done, "caps": caps.tolist()}


def _with_caps(res: BabResult, capped: dict) -> BabResult:
    """``res`` with what :func:`_cap_rows` did in its stats."""
    res.stats = {**res.stats, "row_caps": {"rows": capped["rows"], "caps": capped["caps"]}}
    res.nodes += sum(v["nodes"] for v in capped["rows"].values())
    return res


#: where :func:`solve`'s cuts are separated: ``"relaxation"``, at the relaxation's own optimum
#: (:func:`nnmiplib.bab.cuts.relaxation_cuts`), or ``"lp"``, at the LP relaxation's optima
#: (:func:`nnmiplib.bab.cuts.root_cuts`). PV's margin form, the 40 instances, 120 s, same nets:
#: 30 decided against 31 with the LP's cuts (28 without cuts); the one lost, 100x10 digit 6,
#: is robust in 83 s when run alone. The decided come sooner (3000x1: 42 s in all against 98 s;
#: 800x2 digit 6 in 23 s against 67 s: the tightening's probes cut too) and the undecided end
#: lower (800x2 digit 9 at a dual bound of 1.46 against 3.59, digit 8 10.2 against 13.6; 200x5
#: digit 8 32.9 against 36.7); the LP cannot run in ``verify``'s time at all.
CUT_METHOD = "relaxation"

#: with cuts separated at the relaxation's optimum: the two-neuron hull's facets too, for the pairs
#: among this many unstable neurons of each layer at each point (:func:`nnmiplib.bab.cuts.relaxation_cuts`'s
#: ``pairs``; 0: single-neuron cuts only). They lower the root, not the search's end: PV's margin
#: form on 800x2 (α bounds on the neighbours box), 10 rounds at the root, worst row 5.01 without
#: (23 rounds, 2.6 s) and 3.74 with 8 (3.3 s); optimised for 120 s (tightening first), digits 1 / 3 / 8
#: end at dual bounds −0.955 / 8.14 / 3.54 with 8 against −0.908 / 7.63 / 3.28 without (incumbents
#: −1.314 / 2.00 / −2.278): the tightened bounds leave the pairs less to cut, and every node carries
#: the extra cuts (131–218 k nodes against 150–236 k)
PAIR_CUTS = 0

#: with cuts (``solve(..., cuts=…)``), the share of each layer's tightening spent on hull cuts at
#: its targets' roots (:func:`nnmiplib.bab.tightening.tighten_layer`). 0: none — it depends on the
#: net. PV's margin form, 120 s, with 0.2: 200x5 digit 1 ends at a dual bound of 3.68 against 5.12
#: and digit 5 at 8.25 against 8.95, but 100x10 digit 6 is no longer decided (dual 21.8; robust in
#: 89 s with 0): on 100x10 the cuts lower the targets' root bounds by 10–30 % yet fewer neurons
#: are proven stable in the same time (15 s per layer: 403 of 604 against 439), each cut over the
#: 784 inputs costing a node as much as a neuron of the first layer.
TIGHTEN_CUTS = 0.0


def _find_cuts(net, layers, row_ub: np.ndarray, level: float | None, share: float, deadline: float, root=None):
    """Cuts for the rows of ``layers`` whose root bound ``row_ub`` is above ``level`` (every
    row when None), in up to ``share`` of the time left: ``(cuts, stats, root)``, ``cuts`` None
    when none was kept. With :data:`CUT_METHOD` ``"relaxation"`` they are separated at the
    relaxation's own optimum (:func:`nnmiplib.bab.cuts.relaxation_cuts`; ``root``, the root
    node with its multipliers, is optimised on and returned with its bounds as ``(nodes, ub)``),
    with ``"lp"`` at the LP relaxation's optima (:func:`nnmiplib.bab.cuts.root_cuts`, worst row
    first; the root returned is None)."""
    import torch

    until = time.perf_counter() + share * max(deadline - time.perf_counter(), 0.0)
    if CUT_METHOD == "lp":
        open_rows = [int(r) for r in np.argsort(-row_ub) if level is None or row_ub[r] > level]
        found, stats = root_cuts(net, layers, open_rows, deadline=until, stop_below=level)
        return (found if stats["kept"] else None), stats, None
    ub = torch.as_tensor(np.asarray(row_ub, dtype=np.float64))[None]
    if root is None:
        ub, root = R.optimise(layers, R.NodeBatch.root(layers), iterations=60, deadline=until)
    found, root, ub, stats = relaxation_cuts(layers, root, ub, deadline=until, pairs=PAIR_CUTS,
                                             level=None if level is None else torch.tensor([float(level)]))
    return (found if stats["kept"] else None), stats, (root, ub)


def _row_cuts(found, cut_root, r: int):
    """The cuts of ``found`` that row ``r``'s bound uses at the root (π > 0 in ``cut_root``'s
    nodes), for its own tree — a cut only another row uses would cost every node of this tree
    and lower none of its bounds — and the root node of that tree: row ``r``'s α, β, γ and the
    π of those cuts, whose bound is the one ``cut_root`` reached for the row. ``(found, None)``
    when ``cut_root`` is None (the LP's cuts)."""
    import torch

    if found is None or cut_root is None or cut_root[0].pi is None:
        return found, None
    nodes = cut_root[0]
    out, pis = [], []
    for cut, pi in zip(found, nodes.pi):
        used = (pi[:, r, :] > 0).any(0) if pi.numel() else np.zeros(0, dtype=bool)
        used = np.asarray(used, dtype=bool)
        if cut is None or not used.any():
            out.append(None)
            pis.append(pi[:, r:r + 1, :0])
            continue
        out.append(cut.take(used))
        pis.append(pi[:, r:r + 1][..., torch.as_tensor(used)])
    if all(c is None for c in out):
        return None, None
    one = lambda xs: None if xs is None else [x[:, r:r + 1] for x in xs]
    start = R.NodeBatch([s.clone() for s in nodes.split], one(nodes.alpha), one(nodes.beta), gamma=one(nodes.gamma),
                        pi=pis)
    return out, start


def _root_bound(net, lo, hi, C, d, lower, upper, iterations, deadline, cuts=None) -> np.ndarray:
    """Every row's α-optimised bound at the root on intermediate bounds ``lower``/``upper``
    (and ``cuts``, :func:`nnmiplib.bab.cuts.root_cuts`, when given)."""
    layers = R.Layers.build(net, lower, upper, lo, hi, C, d).with_cuts(cuts)
    ub, _ = R.optimise(layers, R.NodeBatch.root(layers), iterations=iterations, deadline=deadline)
    return ub[0].numpy()


def node_budget(n_rows: int, sizes, *, own_bounds: bool, memory: int | None = None, cuts: int = 0) -> int:
    """Open nodes the queue may hold: the queue's share of ``memory`` (default: what
    :func:`nnmiplib.machine.available_memory` reports) over a node's bytes — α and β (float64,
    one per row and neuron), its decisions (int8), with ``own_bounds`` its own bounds, and the
    multipliers π of ``cuts`` cuts (one per row and cut; the tree's nodes carry no γ:
    :func:`nnmiplib.bab.relax.without_gamma`).

    The share is a quarter of the available memory, at least 1 GiB and at most 8 GiB
    (a second search or the solver's own memory keep the rest); the cap is 2 000–2 000 000
    nodes.
    """
    n = int(sum(sizes))
    per_node = 16 * int(n_rows) * n + n + (16 * n if own_bounds else 0) + 8 * int(n_rows) * int(cuts)
    memory = available_memory() if memory is None else int(memory)
    share = QUEUE_MEMORY[0] if memory is None else min(max(memory // 4, QUEUE_MEMORY[0]), QUEUE_MEMORY[1])
    return int(max(2_000, min(2_000_000, share // max(per_node, 1))))


def _solve(net, lo, hi, C, d, lower, upper, obj, threshold, rel_gap, abs_gap, deadline, batch, root_iterations,
           iterations, k_candidates, pseudocosts, max_nodes, refine, workers, attack_starts, seed, initial_points, t0,
           floor=None, witness=None, leaf=None, links=None, cancel=None, cuts=None, cut_share=0.0, start=None):
    import torch

    layers = R.Layers.build(net, lower, upper, lo, hi, C, d).with_cuts(cuts)
    links = None if links is None else layers.reduce_links(links)
    if iterations is None:
        iterations = default_iterations(layers)
    n_rows = layers.n_rows
    own_budget = max_nodes is None

    def budget():  # the queue's default cap for the current layers (their cuts included)
        return node_budget(n_rows, layers.sizes, own_bounds=refine or links is not None, cuts=sum(layers.cut_counts))

    if own_budget:
        max_nodes = budget()
    if batch is None:
        work = n_rows * weight_entries(layers)  # flops per node per pass
        if refine:  # re-tightening bounds every free neuron of the deeper layers again
            work += 2 * sum(int(w.shape[0]) for w in layers.W[1:-1]) * sum(
                int(w.shape[0]) * int(w.shape[1]) for w in layers.W[:-1]) // 4
        batch = int(max(8, min(512, 4e8 / max(work, 1))))
    rng = np.random.default_rng(seed)
    primal = _Primal(net, C, d, obj, lo, hi)
    traj, stats = [], {"batches": 0, "leaves": 0, "max_open": 0, "batch": batch}

    def now():
        return time.perf_counter() - t0

    def out_of_time():
        return (deadline is not None and time.perf_counter() >= deadline) or (cancel is not None and cancel.is_set())

    def decided_by_point():
        return threshold is not None and primal.value > (threshold if witness is None else witness)

    # ---------------------------------------------------------------- root
    if initial_points is not None:
        primal.offer(initial_points, "given")
    if attack_starts:
        starts = rng.uniform(lo, hi, size=(attack_starts, lo.size))
        starts[0], starts[1 % attack_starts] = (lo + hi) / 2, primal.x if primal.x is not None else (lo + hi) / 2
        primal.offer(primal.ascend(starts, steps=30, until=deadline), "attack")
    root = R.NodeBatch.root(layers) if start is None else start  # start: the root's multipliers, found earlier
    if refine or links is not None:
        root = root.with_bounds(layers)
    ub, root = R.optimise(layers, root, iterations=root_iterations,
                          stop_below=None if threshold is None else torch.tensor([threshold]))
    cut_stats = None
    if cut_share > 0 and cuts is None and deadline is not None and not decided_by_point():
        level = threshold if threshold is not None else primal.value
        if float(obj.value(ub)[0]) > level:  # open at the root: cuts for its open rows, worst first
            # rows and F share a scale for groups of rows (a row bounded by the level settles its
            # group); for another objective (softmax-L1 over logit differences) every row counts
            rows_level = level if isinstance(obj, GroupObjective) else None
            found, cut_stats, cut_root = _find_cuts(net, layers, ub[0].numpy(), rows_level, cut_share, deadline,
                                                    root=root)
            if found is not None:
                layers = layers.with_cuts(found)
                if own_budget:
                    max_nodes = budget()
                if cut_root is not None:
                    root, ub = cut_root
                else:
                    ub, root = R.optimise(layers, R.with_cut_multipliers(layers, root), iterations=root_iterations,
                                          best=ub, stop_below=None if threshold is None else torch.tensor([threshold]))
    root = R.without_gamma(root)  # the stable neurons' multipliers pay at the root only (measured)
    root_value = float(obj.value(ub)[0])
    root_rows = ub[0].detach().cpu().numpy().astype(float).tolist()
    nodes_bounded = 1
    heap: list[_Chunk] = []
    open_count = 0
    counter = 0
    pruned = -math.inf  # largest bound of a node dropped (at the threshold or the incumbent)

    def push(nodes, rows_ub, depth):
        nonlocal open_count, counter
        if nodes.n == 0:
            return
        v = obj.value(rows_ub)
        order = torch.argsort(v, descending=True)
        halves = [order[: (len(order) + 1) // 2], order[(len(order) + 1) // 2:]] if len(order) > 8 else [order]
        for h in halves:
            if len(h) == 0:
                continue
            counter += 1
            key = (-float(v[h].max()), -int(depth[h].max()), counter)
            heapq.heappush(heap, _Chunk(key, nodes.take(h), rows_ub[h], depth[h]))
            open_count += len(h)

    def global_bound():
        """max F ≤ the largest bound of an open or dropped node (or the incumbent)."""
        top = -heap[0].key[0] if heap else -math.inf
        return max(top, pruned, primal.value)

    def drop(rows_ub, keep):
        nonlocal pruned
        if (~keep).any():
            pruned = max(pruned, float(obj.value(rows_ub[~keep]).max()))

    def finished():
        if decided_by_point():
            return "violated"
        if threshold is not None and global_bound() <= threshold:
            return "proved"
        if threshold is None and (primal.x is not None or floor is not None):
            gb, best = global_bound(), max(primal.value, -math.inf if floor is None else floor)
            if gb - best <= max(abs_gap, rel_gap * abs(best)):
                return "optimal"
        if not heap and threshold is None:  # every node closed: exact leaves leave no gap but their margin
            if primal.x is None:
                return "proved"
            return "optimal" if isinstance(obj, GroupObjective) else "gap_left"
        return None

    worst = obj.worst(ub)
    pseudo = Pseudocosts(layers.sizes) if pseudocosts else None
    primal.offer(_input_vertices(layers, root, worst), "relaxation")
    keep = _keep_mask(ub, obj, threshold, primal, abs_gap, rel_gap, floor)
    drop(ub, keep)
    if bool(keep[0]):
        push(root, ub, torch.zeros(1, dtype=torch.int64))
    traj.append((now(), global_bound(), primal.value))
    status = finished()
    per_child = None  # wall seconds per child of the last batch (its whole step), for the cap near the deadline
    # ---------------------------------------------------------------- loop
    while status is None and heap:
        if out_of_time():
            status = "time_limit"
            break
        if open_count >= max_nodes:
            status = "node_limit"
            break
        started = time.perf_counter()
        cap = batch if deadline is None or per_child is None else \
            max(1, min(batch, int(DEADLINE_FIT * (deadline - started) / (2 * per_child))))
        take, got = [], 0
        deep = open_count > max_nodes // 2  # memory pressure: the deepest chunks first (they close fastest)
        while heap and got < cap:
            if deep:
                i = max(range(len(heap)), key=lambda j: int(heap[j].depth.max()))
                ch = heap.pop(i)
                heapq.heapify(heap)
            else:
                ch = heapq.heappop(heap)
            open_count -= ch.nodes.n
            if got + ch.nodes.n > cap:  # the chunk's best nodes (it is ordered by bound); the rest back
                k = cap - got
                rest = torch.arange(k, ch.nodes.n)
                push(ch.nodes.take(rest), ch.ub[rest], ch.depth[rest])
                ch = _Chunk(ch.key, ch.nodes.take(torch.arange(k)), ch.ub[:k], ch.depth[:k])
            take.append(ch)
            got += ch.nodes.n
        nodes = R.NodeBatch.cat([c.nodes for c in take])
        rows_ub = torch.cat([c.ub for c in take])
        depth = torch.cat([c.depth for c in take])
        # re-check against the incumbent found since these were queued
        keep = _keep_mask(rows_ub, obj, threshold, primal, abs_gap, rel_gap, floor)
        drop(rows_ub, keep)
        nodes, rows_ub, depth = nodes.take(keep), rows_ub[keep], depth[keep]
        if nodes.n == 0:
            continue
        if out_of_time():
            push(nodes, rows_ub, depth)  # back to the queue: they stay open in the dual bound
            status = "time_limit"
            break
        layer, index, has_free, score = choose(layers, nodes, rows_ub, obj, k_candidates, pseudo)
        leaves = ~has_free
        if leaves.any():  # every phase known: solve the node exactly
            solved = torch.zeros_like(leaves)
            for n in torch.nonzero(leaves).flatten().tolist():
                if out_of_time():  # this leaf and the rest of the batch stay open
                    break
                solved[n] = True
                left = None if deadline is None else max(deadline - time.perf_counter(), 0.1)
                val, x = _leaf_lp(net, layers, nodes.take([n]), lo, hi, C, d, obj, left, leaf)
                stats["leaves"] += 1
                # the leaf is closed with its exact (safe) maximum; an LP stopped by the time limit
                # gives a looser safe bound than the node's own, which holds as well
                val = min(val, float(obj.value(rows_ub[n:n + 1])[0]))
                pruned = max(pruned, val)
                if x is not None:
                    primal.offer(x, "leaf-lp")
                if threshold is None and val > primal.value + abs_gap:
                    log.debug("leaf LP bound %.6g above its point %.6g", val, primal.value)
            if out_of_time():  # the nodes not solved or expanded stay open
                rest = ~solved
                push(nodes.take(rest), rows_ub[rest], depth[rest])
                status = "time_limit"
                break
            nodes, rows_ub, depth, layer, index, score = (nodes.take(has_free), rows_ub[has_free], depth[has_free],
                                                          layer[has_free], index[has_free], score[has_free])
        if nodes.n:
            kids = children(nodes, layer, index, torch.ones(nodes.n, dtype=torch.bool))
            parent_ub = rows_ub.repeat_interleave(2, 0)
            kdepth = depth.repeat_interleave(2) + 1
            if links is not None:
                kids, parent_ub, kdepth = _drop_empty(*R.imply(layers, kids, links), parent_ub, kdepth, stats)
            if refine:
                kids, parent_ub, kdepth = _drop_empty(*R.refine(layers, kids, first=int(layer.min()) + 1),
                                                      parent_ub, kdepth, stats)
        if nodes.n and kids.n:
            stop = None if threshold is None else torch.full((kids.n,), float(threshold))
            kub, kids = R.optimise(layers, kids, iterations=iterations, best=parent_ub, stop_below=stop,
                                   deadline=deadline, workers=_count(workers))
            nodes_bounded += kids.n
            if pseudo is not None and kids.n == 2 * nodes.n:  # every child kept: pairs line up
                pseudo.record(layer, index, score, obj.value(rows_ub), obj.value(kub), threshold)
            worst = obj.worst(kub)
            # primal: the relaxation's corner of the most promising children, polished
            v = obj.value(kub)
            top = torch.argsort(v, descending=True)[: min(16, kids.n)]
            X = _input_vertices(layers, kids.take(top), worst[top])
            primal.offer(X, "relaxation")
            if not decided_by_point():
                primal.offer(primal.ascend(X, steps=10), "relaxation+ascent")
            keep = _keep_mask(kub, obj, threshold, primal, abs_gap, rel_gap, floor)
            drop(kub, keep)
            push(kids.take(keep), kub[keep], kdepth[keep])
        if nodes.n:
            per_child = (time.perf_counter() - started) / (2 * nodes.n)
        stats["batches"] += 1
        stats["max_open"] = max(stats["max_open"], open_count)
        traj.append((now(), global_bound(), primal.value))
        status = finished()
    if status is None:
        status = finished() or ("time_limit" if heap else "proved")
    dual = global_bound()
    res = BabResult(status, primal.value if primal.x is not None else None, primal.x, float(dual), nodes_bounded,
                    now(), traj, {**stats, "open": open_count, "root_bound": root_value,
                                  "root_rows": root_rows, "incumbent_source": primal.source,
                                  **({"cuts": cut_stats} if cut_stats else {})})
    return res


def _drop_empty(kids, empty, parent_ub, kdepth, stats):
    """Children without the empty ones (decisions no input satisfies: nothing to search there)."""
    if not empty.any():
        return kids, parent_ub, kdepth
    stats["empty"] = stats.get("empty", 0) + int(empty.sum())
    ok = ~empty
    return kids.take(ok), parent_ub[ok], kdepth[ok]


def _keep_mask(rows_ub, obj, threshold, primal, abs_gap, rel_gap, floor=None):
    """Nodes whose bound can still matter: above the threshold, or above the incumbent (or a
    ``floor`` known from elsewhere, e.g. another row's incumbent) plus the gap."""
    v = obj.value(rows_ub)
    if threshold is not None:
        return v > threshold
    best = max(primal.value if primal.x is not None else -math.inf, -math.inf if floor is None else floor)
    if best == -math.inf:
        return v > -math.inf
    return v > best + max(abs_gap, rel_gap * abs(best))
