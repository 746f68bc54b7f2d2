r"""The Big-M model of trained ReLU networks (thesis model 1.1–1.8) in matrix form.

A :class:`MipModel` is the solver-independent problem

.. math::

    \max / \min \; c^\top v + \text{offset} \quad\text{s.t.}\quad
    \ell_r \le A v \le u_r,\qquad \ell_c \le v \le u_c,\qquad v_j \in \mathbb{Z}
    \text{ for } j \in \mathcal{I},

with ``A`` a ``scipy.sparse.csr_matrix``. :func:`encode` fills it with the thesis's
model of one network, or of several networks sharing one input (chapter 4):

.. math::

    a^{l+1} &= W^{l} h^{l} + b^{l}                  &\quad (1.1),\; l = 0..L \\
    a^{l}   &= h^{l} - \bar h^{l}                   &\quad (1.2) \\
    h^{l}_j &\le H^{l}_j z^{l}_j                    &\quad (1.3) \\
    \bar h^{l}_j &\le \bar H^{l}_j (1 - z^{l}_j)    &\quad (1.4) \\
    z^{l}_j &\in \{0, 1\},\; h^{l} \ge 0,\; \bar h^{l} \ge 0 &\quad (1.5\text{–}1.7) \\
    h^{0} &= x \in [\text{lo}, \text{hi}]           &\quad (1.8)

The Big-M constants come from signed pre-activation bounds ``lower ≤ a ≤ upper``
(SPEC §6): :math:`H = \max(0, \text{upper})`, :math:`\bar H = \max(0, -\text{lower})`.
Stable neurons get no binary (GUIDE §4 rule 3):

* stably active (``lower ≥ 0``): :math:`h = a` — the ``h`` column *is* the ``a`` column;
* stably inactive (``upper ≤ 0``): :math:`h = 0` — a column fixed to 0 (its coefficients
  in the next layer are dropped);
* unstable: rows (1.2)–(1.4) and a binary (a continuous ``z ∈ [0, 1]`` with
  ``relax=True``, the LP relaxation used by Algorithm 3 with relax = 1).

Every ``a``, ``h``, ``h̄`` column also carries its bounds as column bounds (valid, and
they help the solver).

:func:`encode_triangle` gives the same LP relaxation projected onto ``(x, h)`` (fewer
rows; used by the LP Bounder).

Indexing follows :class:`~nnmiplib.network.Network`: affine layer ``l = 0..L`` produces
``a[l]`` (thesis :math:`a^{l+1}`), ``a[L]`` are the logits; hidden layer ``l = 0..L-1``
has ``h[l]``, ``hbar[l]``, ``z[l]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..domains import Box
from ..network import Network

__all__ = ["DiffVars", "MipModel", "NetVars", "add_difference", "encode", "encode_triangle", "fill_difference"]


@dataclass
class NetVars:
    """Column indices of one network's variables inside a :class:`MipModel`.

    ``a[l]`` pre-activations of affine layer ``l`` (last = logits); ``h[l]`` post-ReLU of
    hidden layer ``l`` (for a stably active neuron it equals the ``a`` column, for a
    stably inactive one it is a column fixed to 0); ``hbar[l]`` negative parts (1.2) and
    ``z[l]`` binaries (1.5), both ``-1`` where the neuron is stable.
    """

    a: list[np.ndarray] = field(default_factory=list)
    h: list[np.ndarray] = field(default_factory=list)
    hbar: list[np.ndarray] = field(default_factory=list)
    z: list[np.ndarray] = field(default_factory=list)
    net: Network | None = None


def _as_csr(block, n_cols: int) -> sp.csr_matrix:
    m = sp.csr_matrix(block, dtype=np.float64)
    if m.shape[1] > n_cols:
        raise ValueError(f"row block has {m.shape[1]} columns but the model has only {n_cols} variables")
    if m.shape[1] < n_cols:
        m = sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], n_cols))
    return m


class MipModel:
    """A linear (mixed-integer) model: ``row_lo ≤ A v ≤ row_hi``, ``col_lo ≤ v ≤ col_hi``.

    Build it with :meth:`add_vars` / :meth:`add_rows` / :meth:`set_objective`, or get the
    thesis's network model from :func:`encode`. Backends in :mod:`nnmiplib.mip.solvers`
    solve it; queries extend it with their own columns and rows.
    """

    def __init__(self) -> None:
        self.col_lo = np.zeros(0)
        self.col_hi = np.zeros(0)
        self.integrality = np.zeros(0, dtype=bool)
        self.A = sp.csr_matrix((0, 0))
        self.row_lo = np.zeros(0)
        self.row_hi = np.zeros(0)
        self.c = np.zeros(0)
        self.sense = "max"
        self.offset = 0.0
        self.x = np.zeros(0, dtype=np.int64)
        self.nets: list[NetVars] = []
        self.relax = False

    @property
    def n_vars(self) -> int:
        return self.col_lo.size

    @property
    def n_rows(self) -> int:
        return self.row_lo.size

    @property
    def n_integer(self) -> int:
        return int(self.integrality.sum())

    def add_vars(self, n: int, lo=0.0, hi=np.inf, integer: bool = False) -> np.ndarray:
        """Append ``n`` columns with bounds ``[lo, hi]`` (scalars broadcast); return their indices."""
        n = int(n)
        lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (n,))
        hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (n,))
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise ValueError("column bounds contain NaN")
        if (lo > hi).any():
            raise ValueError(f"column bounds inverted (lo > hi) for {(lo > hi).sum()} new variables")
        start = self.n_vars
        self.col_lo = np.concatenate([self.col_lo, lo])
        self.col_hi = np.concatenate([self.col_hi, hi])
        self.integrality = np.concatenate([self.integrality, np.full(n, bool(integer))])
        self.c = np.concatenate([self.c, np.zeros(n)])
        A = self.A.tocsr()
        self.A = sp.csr_matrix((A.data, A.indices, A.indptr), shape=(A.shape[0], self.n_vars))
        return np.arange(start, start + n)

    def add_rows(self, A_block, lo, hi) -> np.ndarray:
        """Append rows ``lo ≤ A_block v ≤ hi`` (``A_block`` k × n_vars, sparse or dense)."""
        block = _as_csr(A_block, self.n_vars)
        k = block.shape[0]
        lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (k,))
        hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (k,))
        if np.isnan(lo).any() or np.isnan(hi).any() or not np.isfinite(block.data).all():
            raise ValueError("rows contain NaN or infinite coefficients")
        start = self.n_rows
        self.A = sp.vstack([self.A, block], format="csr")
        self.row_lo = np.concatenate([self.row_lo, lo])
        self.row_hi = np.concatenate([self.row_hi, hi])
        return np.arange(start, start + k)

    def set_objective(self, c, sense: str = "max", offset: float = 0.0) -> None:
        """Objective ``c·v + offset``; ``c`` dense of length n_vars, or a dict {column: coefficient}."""
        if sense not in ("max", "min"):
            raise ValueError(f"sense must be 'max' or 'min', got {sense!r}")
        if isinstance(c, dict):
            vec = np.zeros(self.n_vars)
            for j, v in c.items():
                vec[j] += v
            c = vec
        c = np.asarray(c, dtype=np.float64).ravel()
        if c.size != self.n_vars:
            raise ValueError(f"objective has {c.size} coefficients but the model has {self.n_vars} variables")
        self.c = c.copy()
        self.sense = sense
        self.offset = float(offset)

    def point(self, x_input) -> np.ndarray:
        """The full variable vector for input ``x_input`` (forward pass of every network).

        ``z = 1`` where ``a > 0``. Columns not created by :func:`encode` are set to
        0 clipped into their bounds; the caller fills them (e.g. a query's objective
        auxiliaries) before using the point as a MIP start.
        """
        x = np.asarray(x_input, dtype=np.float64).ravel()
        if x.size != self.x.size:
            raise ValueError(f"input has {x.size} entries, the model has {self.x.size} input columns")
        v = np.clip(np.zeros(self.n_vars), self.col_lo, self.col_hi)
        v[self.x] = x
        def put(cols, vals):
            ok = cols >= 0
            v[cols[ok]] = np.broadcast_to(vals, cols.shape)[ok]

        for nv in self.nets:
            pre = nv.net.preactivations(x)
            for l, cols in enumerate(nv.a):
                put(cols, pre[l])
            for l in range(len(nv.h)):
                a = pre[l]
                put(nv.h[l], np.maximum(a, 0.0))
                put(nv.hbar[l], np.maximum(-a, 0.0))
                put(nv.z[l], (a > 0).astype(float))
        return v

    def copy(self) -> MipModel:
        import copy

        return copy.deepcopy(self)

    def __repr__(self) -> str:
        return (
            f"<MipModel {self.n_vars} vars ({self.n_integer} integer), {self.n_rows} rows, "
            f"{self.A.nnz} nonzeros, {len(self.nets)} net(s)>"
        )


def _check_bounds(net: Network, bounds, upto: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    lower, upper = list(bounds.lower), list(bounds.upper)
    sizes = net.layer_sizes[1:]
    if len(lower) < upto + 1 or len(upper) < upto + 1:
        raise ValueError(f"bounds cover {len(lower)} layers but the model needs layers 0..{upto}")
    lo_out, hi_out = [], []
    for l in range(upto + 1):
        lo = np.asarray(lower[l], dtype=np.float64)
        hi = np.asarray(upper[l], dtype=np.float64)
        if lo.shape != (sizes[l],) or hi.shape != (sizes[l],):
            raise ValueError(
                f"bounds of layer {l} have shapes {lo.shape}/{hi.shape}, the network's layer has {sizes[l]} neurons; "
                "were the bounds computed for another network?"
            )
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise ValueError(f"bounds of layer {l} contain NaN")
        if (lo > hi).any():
            j = int(np.flatnonzero(lo > hi)[0])
            raise ValueError(f"bounds of layer {l} are empty at neuron {j}: lower {lo[j]!r} > upper {hi[j]!r}")
        if l < upto and not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError(f"hidden layer {l} needs finite bounds for its Big-M constants (1.3)-(1.4)")
        lo_out.append(lo)
        hi_out.append(hi)
    return lo_out, hi_out


def _fold_fixed(model: MipModel, prev: np.ndarray, W: np.ndarray, b: np.ndarray):
    """Move the columns of ``prev`` that their bounds fix (lo = hi) out of the rows ``a = W v + b``.

    Their contribution ``W_F v_F`` joins the right-hand side of ``a − W_K v_K = b + W_F v_F``,
    which becomes the range ``[b + s − δ, b + s + δ]`` with ``s = fl(W_F v_F)`` and
    ``δ = (|F| + 2)·u·(|W_F|·|v_F| + |b|)`` (``u`` the unit roundoff, a bound on the
    rounding of the sum), so every input of the box still satisfies the rows exactly and
    bounds derived from the model stay sound. Columns fixed at 0 (stably inactive
    neurons) give ``δ = 0``. Pixels the neighbours box pins to 0 (§3.2.1) are most of the
    input: on the 3000x1 net the first layer's rows lose 90 % of their nonzeros.

    Returns ``(W_kept, row_lo, row_hi, keep)`` with ``keep`` the mask of kept columns.
    """
    val = model.col_lo[prev]
    fixed = val == model.col_hi[prev]
    if not fixed.any():
        return W, b, b, ~fixed
    WF, vF = W[:, fixed], val[fixed]
    s = WF @ vF
    if np.any(vF != 0):
        delta = (int(fixed.sum()) + 2) * np.finfo(float).eps * (np.abs(WF) @ np.abs(vF) + np.abs(b))
    else:
        delta = np.zeros_like(b)
    return W[:, ~fixed], b + s - delta, b + s + delta, ~fixed


def _encode_net(model: MipModel, net: Network, bounds, *, relax: bool, stop: int, inactive_rows: bool = True) -> NetVars:
    """Append one network's variables and rows (1.1)–(1.7) to ``model``, input = ``model.x``."""
    lower, upper = _check_bounds(net, bounds, stop)
    nv = NetVars(net=net)
    prev = model.x  # columns of h^l (l = 0: the input, 1.8)
    for l in range(stop + 1):
        n = net.weights[l].shape[0]
        # (1.1): a - W h = b; columns fixed by their bounds (stably inactive neurons, pinned
        # pixels) move to the right-hand side
        W, r_lo, r_hi, keep = _fold_fixed(model, prev, net.weights[l], net.biases[l])
        a = model.add_vars(n, lower[l], upper[l])
        nv.a.append(a)
        hidden = not (l == stop or l == net.depth)
        if hidden:
            lo, hi = lower[l], upper[l]
            active = lo >= 0
            inactive = (hi <= 0) & ~active
        # inactive_rows=False: a stably inactive hidden neuron's row is left out (encode)
        live = ~inactive if (hidden and not inactive_rows) else np.ones(n, bool)
        if not live.all():
            W, r_lo, r_hi = W[live], r_lo[live], r_hi[live]
        nl = int(live.sum())
        Wd = sp.csr_matrix(W)
        Wd.eliminate_zeros()
        coo = Wd.tocoo()
        rows = np.concatenate([np.arange(nl), coo.row])
        cols = np.concatenate([a[live], prev[keep][coo.col]])
        data = np.concatenate([np.ones(nl), -coo.data])
        model.add_rows(sp.csr_matrix((data, (rows, cols)), shape=(nl, model.n_vars)), r_lo, r_hi)
        if not hidden:
            break
        unstable = ~active & ~inactive
        H, Hbar = np.maximum(0.0, hi), np.maximum(0.0, -lo)
        h = a.copy()  # stably active: h = a (same column)
        zero = model.add_vars(int(inactive.sum()), 0.0, 0.0)
        h[inactive] = zero
        k = int(unstable.sum())
        hu = model.add_vars(k, 0.0, H[unstable])
        hb = model.add_vars(k, 0.0, Hbar[unstable])
        z = model.add_vars(k, 0.0, 1.0, integer=not relax)
        h[unstable] = hu
        hbar = np.full(n, -1, dtype=np.int64)
        zz = np.full(n, -1, dtype=np.int64)
        hbar[unstable], zz[unstable] = hb, z
        if k:
            r = np.arange(k)
            au = a[unstable]
            # (1.2) a - h + hbar = 0 ; (1.3) h - H z <= 0 ; (1.4) hbar + Hbar z <= Hbar
            rows = np.concatenate([r, r, r, k + r, k + r, 2 * k + r, 2 * k + r])
            cols = np.concatenate([au, hu, hb, hu, z, hb, z])
            data = np.concatenate([np.ones(k), -np.ones(k), np.ones(k), np.ones(k), -H[unstable],
                                   np.ones(k), Hbar[unstable]])
            blk = sp.csr_matrix((data, (rows, cols)), shape=(3 * k, model.n_vars))
            model.add_rows(blk, np.concatenate([np.zeros(k), np.full(2 * k, -np.inf)]),
                           np.concatenate([np.zeros(2 * k), Hbar[unstable]]))
        nv.h.append(h)
        nv.hbar.append(hbar)
        nv.z.append(zz)
        prev = h
    return nv


def encode(nets, domain: Box, bounds, *, relax: bool = False, stop_layer: int | None = None,
           inactive_rows: bool = True) -> MipModel:
    """Build the Big-M model (1.1)–(1.8) of one or several networks sharing one input.

    Parameters
    ----------
    nets : Network or sequence of Network
        Networks with the same number of inputs; all share the input columns ``x``.
    domain : Box
        The input box (1.8).
    bounds : Bounds or sequence of Bounds
        Signed pre-activation bounds per affine layer (one per network); any object
        with ``.lower`` / ``.upper`` lists works. Hidden layers need finite bounds.
    relax : bool
        ``True`` gives the LP relaxation (``z ∈ [0, 1]`` continuous).
    stop_layer : int, optional
        ``m``: build hidden layers ``< m`` and the pre-activations ``a[m]`` only (the
        model of problems P_nm / P̄_nm of Algorithm 1). Default: up to the logits.
    inactive_rows : bool
        ``False``: leave out the row (1.1) of every stably inactive hidden neuron (upper
        bound ≤ 0). Its h is the constant 0, so no other row reads its ``a``, which keeps its
        column and bounds but is no longer tied to the input (its value in a solution means
        nothing). Only for bounds that hold on the whole domain: where a bound is a phase
        decision (a node's, a leaf's), that row is what enforces it. On a small box most
        first-layer neurons are inactive and their dense rows are most of the model: the
        3000x1 net and its pruned copy on an L∞ 0.02 ball, 6 384 rows and 3.5 M nonzeros
        against 845 and 0.3 M, which HiGHS's presolve took 27 s to find, past a 20 s limit.

    Returns
    -------
    MipModel
        With ``model.x`` the input columns and ``model.nets[i]`` the columns of net i.
        The objective is empty (zero); set it with :meth:`MipModel.set_objective`.
    """
    single = isinstance(nets, Network)
    nets = [nets] if single else list(nets)
    if not nets or not all(isinstance(n, Network) for n in nets):
        raise ValueError("encode needs a Network or a non-empty list of Networks")
    bounds = list(bounds) if isinstance(bounds, (list, tuple)) else [bounds]
    if len(bounds) != len(nets):
        raise ValueError(f"got {len(nets)} networks but {len(bounds)} bounds; pass one Bounds per network")
    if not isinstance(domain, Box):
        raise ValueError(f"domain must be a nnmiplib Box, got {type(domain).__name__}")
    for net in nets:
        domain.check_dim(net.n_inputs)
    model = MipModel()
    model.relax = bool(relax)
    model.x = model.add_vars(domain.n, domain.lo, domain.hi)
    for net, bd in zip(nets, bounds):
        stop = net.depth if stop_layer is None else int(stop_layer)
        if not 0 <= stop <= net.depth:
            raise ValueError(f"stop_layer must be in 0..{net.depth} for {net!r}, got {stop_layer}")
        model.nets.append(_encode_net(model, net, bd, relax=relax, stop=stop, inactive_rows=inactive_rows))
    return model


def encode_triangle(net: Network, domain: Box, bounds, *, stop_layer: int) -> tuple[MipModel, np.ndarray]:
    r"""The LP relaxation of (1.1)–(1.8) without ``z`` and ``hbar``: same optimum, fewer rows.

    For an unstable neuron (``L < 0 < U``) the relaxation of (1.2)–(1.7) with
    ``z ∈ [0, 1]`` projects onto ``(a, h)`` as the "triangle"

    .. math:: h \ge 0,\quad h \ge a,\quad h \le \frac{U}{U - L}\,(a - L)

    (eliminate :math:`\bar h = h - a \ge 0`; a ``z`` exists iff
    :math:`h/U \le 1 + (h - a)/L`, which is the third inequality). The pre-activation
    column ``a ∈ [L, U]`` (the bounds are implied by the triangle) is kept with its row
    ``a = W h^{prev} + b`` (1.1), so each weight row appears once; stably active neurons
    have no ``a`` column, only :math:`h = W h^{\text{prev}} + b` with ``h ∈ [lower, upper]``
    (one equality row); stably inactive ones disappear (h = 0).
    Every LP over this model has the optimum of the same LP over
    ``encode(..., relax=True)`` (tested). Measured with HiGHS on the quick 200x5 net at
    ε = 0.01, 12 neurons per layer: the Bounder's LPs took 38 s over this model against
    131 s over the Big-M relaxation; substituting ``a`` into both triangle rows (twice
    the nonzeros) made a warm re-solve in layer 4 4.6× slower. Hence Algorithm 3's LP
    uses this model.

    Returns
    -------
    (model, prev)
        ``model.nets[0]`` has ``h[l]`` (−1 where eliminated), ``a[l]`` (the unstable
        neurons' columns, −1 elsewhere), ``hbar`` and ``z`` all −1; ``prev`` are the
        columns of :math:`h^{m}` feeding layer ``stop_layer`` = m, so
        ``a[m]_j = W^m[j]·v[prev] + b^m[j]`` (use it as the objective).
    """
    domain.check_dim(net.n_inputs)
    if not 0 <= int(stop_layer) <= net.depth:
        raise ValueError(f"stop_layer must be in 0..{net.depth}, got {stop_layer}")
    stop = int(stop_layer)
    lower, upper = _check_bounds(net, bounds, stop)
    model = MipModel()
    model.relax = True
    model.x = model.add_vars(domain.n, domain.lo, domain.hi)
    nv = NetVars(net=net)
    prev = model.x
    keep_prev = np.ones(prev.size, dtype=bool)
    for l in range(stop):
        W, b_lo, b_hi, keep = _fold_fixed(model, prev, net.weights[l][:, keep_prev], net.biases[l])
        lo, hi = lower[l], upper[l]
        active = lo >= 0
        inactive = (hi <= 0) & ~active
        unstable = ~active & ~inactive
        live = ~inactive
        ia, iu = np.flatnonzero(active), np.flatnonzero(unstable)
        h = np.full(lo.size, -1, dtype=np.int64)
        h[live] = model.add_vars(int(live.sum()), np.where(active, lo, 0.0)[live], np.maximum(hi, 0.0)[live])
        a = np.full(lo.size, -1, dtype=np.int64)
        a[iu] = model.add_vars(iu.size, lo[iu], hi[iu])
        Wl = sp.csr_matrix(W)
        Wl.eliminate_zeros()
        n = model.n_vars
        P = sp.csr_matrix((Wl.data, prev[keep][Wl.indices], Wl.indptr), shape=(W.shape[0], n))

        def unit(cols, coef=1.0, n=n):
            return sp.csr_matrix((np.broadcast_to(coef, len(cols)).astype(float), (np.arange(len(cols)), cols)),
                                 shape=(len(cols), n))

        s_u = hi[iu] / (hi[iu] - lo[iu])
        # active: h - W h_prev = b; unstable: a - W h_prev = b, h - a >= 0, h - s a <= -s L
        blocks = [unit(h[ia]) - P[ia], unit(a[iu]) - P[iu], unit(h[iu]) - unit(a[iu]), unit(h[iu]) - unit(a[iu], s_u)]
        model.add_rows(sp.vstack(blocks, format="csr"),
                       np.concatenate([b_lo[ia], b_lo[iu], np.zeros(iu.size), np.full(iu.size, -np.inf)]),
                       np.concatenate([b_hi[ia], b_hi[iu], np.full(iu.size, np.inf), -s_u * lo[iu]]))
        nv.a.append(a)
        nv.h.append(h)
        nv.hbar.append(np.full(lo.size, -1, dtype=np.int64))
        nv.z.append(np.full(lo.size, -1, dtype=np.int64))
        prev, keep_prev = h[live], live
    model.nets.append(nv)
    model.triangle_keep = keep_prev  # which neurons of h^m the columns ``prev`` are
    return model, prev


@dataclass
class DiffVars:
    """Columns of the difference of two networks inside a :class:`MipModel` (:func:`add_difference`).

    ``d[l]``: the columns of δ^l = a^{i,l} − a^{j,l} for affine layer ``l`` (None where the
    layer was not added); ``g[l]``: the columns of ∂h^l = h^{i,l} − h^{j,l} for hidden layer
    ``l`` (None where not added); ``i``, ``j``: the two networks' positions in ``model.nets``.
    """

    d: list
    g: list
    i: int = 0
    j: int = 1


def add_difference(model: MipModel, lower, upper, *, layers=None, h_lower=None, h_upper=None, lines=None,
                   i: int = 0, j: int = 1) -> DiffVars:
    r"""Add the difference of networks ``i`` and ``j`` (same layer sizes) to a model built by :func:`encode`.

    For every affine layer ``l`` in ``layers`` (default: the logits only):

    .. math::
        \delta^l - a^{i,l} + a^{j,l} = 0,\qquad \text{lower}[l] \le \delta^l \le \text{upper}[l]

    and, for a hidden layer with ``h_lower``/``h_upper`` given,

    .. math::
        \partial h^l - h^{i,l} + h^{j,l} = 0,\qquad h_\text{lower}[l] \le \partial h^l \le h_\text{upper}[l]

    plus the linear lines ``lines[l]`` tying ∂h to δ and the two networks' pre-activations:
    each a dict with ``side`` ("upper": ∂h ≤ …, "lower": ∂h ≥ …), arrays ``p, q1, q2, r``
    for :math:`p\,\delta + q_1 a^{i} + q_2 a^{j} + r` and optionally ``mask``, the neurons that
    get the row (default all; e.g. only where one of the two neurons is unstable, the exact
    cases being in the model already).

    The bounds must be valid on the model's input box (e.g. from
    :func:`nnmiplib.bounds.difference_bounds`): the rows then remove no point of the
    networks' graph, only parts of the relaxation where ``z`` is fractional.

    Returns
    -------
    DiffVars
    """
    if not (0 <= i < len(model.nets) and 0 <= j < len(model.nets)) or i == j:
        raise ValueError(f"add_difference needs two distinct networks of the model, got i={i}, j={j} "
                         f"for {len(model.nets)} network(s)")
    ni, nj = model.nets[i], model.nets[j]
    if len(ni.a) != len(nj.a) or any(a.size != b.size for a, b in zip(ni.a, nj.a)):
        raise ValueError("add_difference pairs neurons one to one: the two networks' layer sizes differ")
    n_aff = len(ni.a)
    layers = [n_aff - 1] if layers is None else sorted({int(l) for l in layers})
    if any(not 0 <= l < n_aff for l in layers):
        raise ValueError(f"layers must lie in 0..{n_aff - 1}, got {layers}")
    dv = DiffVars([None] * n_aff, [None] * (n_aff - 1), i, j)
    for l in layers:
        lo, hi = np.asarray(lower[l], float), np.asarray(upper[l], float)
        n = ni.a[l].size
        if lo.shape != (n,) or hi.shape != (n,):
            raise ValueError(f"difference bounds of layer {l} have shapes {lo.shape}/{hi.shape}, the layer has {n}")
        d = model.add_vars(n, lo, hi)
        r = np.arange(n)
        blk = sp.csr_matrix((np.concatenate([np.ones(n), -np.ones(n), np.ones(n)]),
                             (np.tile(r, 3), np.concatenate([d, ni.a[l], nj.a[l]]))), shape=(n, model.n_vars))
        model.add_rows(blk, 0.0, 0.0)
        dv.d[l] = d
        if l == n_aff - 1 or h_lower is None or l >= len(ni.h):
            continue
        glo, ghi = np.asarray(h_lower[l], float), np.asarray(h_upper[l], float)
        g = model.add_vars(n, glo, ghi)
        hi_, hj_ = ni.h[l], nj.h[l]
        blk = sp.csr_matrix((np.concatenate([np.ones(n), -np.ones(n), np.ones(n)]),
                             (np.tile(r, 3), np.concatenate([g, hi_, hj_]))), shape=(n, model.n_vars))
        model.add_rows(blk, 0.0, 0.0)
        dv.g[l] = g
        for ln in (lines or {}).get(l, []):
            mask = np.asarray(ln.get("mask", np.ones(n, bool)), bool)
            k = int(mask.sum())
            if not k:
                continue
            idx = np.flatnonzero(mask)
            rr = np.arange(k)
            # ∂h − p δ − q1 a^i − q2 a^j  ≤ r (upper line) or ≥ r (lower line)
            data = np.concatenate([np.ones(k), -np.asarray(ln["p"], float)[idx], -np.asarray(ln["q1"], float)[idx],
                                   -np.asarray(ln["q2"], float)[idx]])
            cols = np.concatenate([g[idx], d[idx], ni.a[l][idx], nj.a[l][idx]])
            keep = data != 0
            blk = sp.csr_matrix((data[keep], (np.tile(rr, 4)[keep], cols[keep])), shape=(k, model.n_vars))
            rhs = np.asarray(ln["r"], float)[idx]
            if ln["side"] == "upper":
                model.add_rows(blk, -np.inf, rhs)
            else:
                model.add_rows(blk, rhs, np.inf)
    return dv


def fill_difference(vec: np.ndarray, model: MipModel, dv: DiffVars) -> None:
    """Set the columns of :func:`add_difference` in a point built by :meth:`MipModel.point`
    (δ = a^i − a^j, ∂h = h^i − h^j, clipped into their column bounds against rounding)."""
    ni, nj = model.nets[dv.i], model.nets[dv.j]
    for l, d in enumerate(dv.d):
        if d is not None:
            vec[d] = np.clip(vec[ni.a[l]] - vec[nj.a[l]], model.col_lo[d], model.col_hi[d])
    for l, g in enumerate(dv.g):
        if g is not None:
            vec[g] = np.clip(vec[ni.h[l]] - vec[nj.h[l]], model.col_lo[g], model.col_hi[g])
