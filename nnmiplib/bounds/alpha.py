r"""α-optimised linear bounds (α-CROWN): CROWN with the lower ReLU slopes tuned by gradient.

Back-substitution (:func:`nnmiplib.bounds.cheap.backsub_upper`) bounds a row
:math:`\lambda^\top h^m + c` from above by pushing it back through the layers: a positive
coefficient on an unstable :math:`h = \mathrm{ReLU}(a)`, :math:`a \in [l, u]`, takes the
chord :math:`h \le \tfrac{u}{u-l}(a - l)`, a negative one a lower line
:math:`h \ge \alpha a` with **any** :math:`\alpha \in [0, 1]`. CROWN fixes α by a rule
(``"adaptive"`` or ``"zero"``); here α is a variable, one per (bounded row, unstable
neuron of an earlier layer), and the bound

.. math::

    g(\alpha) = \max_{x \in [\mathrm{lo}, \mathrm{hi}]} \Lambda_0(\alpha)\, x + c(\alpha)
    = \Lambda_0^+ \mathrm{hi} + \Lambda_0^- \mathrm{lo} + c

is minimised over :math:`\alpha \in [0,1]` by projected Adam. For fixed intermediate
bounds, :math:`\min_\alpha g` equals the optimum of the triangle LP relaxation (the LP
dual of the relaxation is exactly a choice of lower slope per neuron, Salman et al.
2019), i.e. what the LP Bounder computes one LP at a time.

Every α ∈ [0, 1] gives a valid bound, so the optimisation (float64 numpy, gradient by
hand: two matrix products per layer and iteration) never affects soundness; the value
kept for each row is re-evaluated by :func:`~nnmiplib.bounds.cheap.backsub_upper` with the
best α met — float64, widened outward by ``1e-9·(1 + |v| + S)`` exactly as CROWN — and
intersected with CROWN (never looser).

Layers are bounded in order ``m = 1..L`` (layer 0 is an affine map of the box: interval
arithmetic is exact there); with ``intermediate="alpha"`` (default) every layer's
unstable neurons are optimised for themselves and the tightened bounds give the next
layers tighter chords, like the Bounder's LPs; ``"crown"`` optimises the logits only.
Neurons proven stable by CROWN are skipped (``skip_stable``, as the Bounder does): their
ReLU is linear already.

Cost and memory. Stably inactive neurons (h = 0), input coordinates no kept neuron reads
and the exact zeros of rounded weights drop out of the products: each target layer works
on the *alive* sub-network (unstable neurons first, then stably active ones, whose slope
is 1). The rows of a layer (two per neuron: ``W_j`` for the upper and ``−W_j`` for the
lower bound) are processed in chunks of at most ``chunk_rows``; a chunk holds its α
(rows × unstable neurons per earlier layer), two Adam moments and one cached coefficient
matrix per layer, so memory is about ``8 · rows · Σ_k n_k · 6`` bytes (≈ 100 MB for 1 000
rows over 3 000 + 784 columns).

Measured choices (``benchmarks/alpha.py``: the 50-epoch L1 λ = 2e-4 nets rounded at
ε = 0.01, [0,1]^784 and an L∞ ball of radius 0.02; 2 cores shared with other work, one
BLAS thread; widths are the mean over the deepest hidden layer divided by the LP Bounder's):

* **one α per (row, neuron), not shared per layer**: per-neuron 1.0009 / 1.0102 on the
  200x5 / 100x10 nets against 1.0300 / 1.2532 shared (CROWN: 1.0314 / 1.3122) — sharing
  one slope between the rows of a layer closes almost none of the gap, at the same cost
  per step;
* **intermediate layers optimised** (``intermediate="alpha"``): logits 1.0012 / 1.0119
  against 1.0299 / 1.3128 with CROWN's intermediate bounds, for 0.6 s instead of 0.1 s;
* **10 projected-Adam steps, step 0.25**: 5 / 10 / 20 / 50 steps give 1.0467 / 1.0102 /
  1.0027 / 1.0004 on 100x10 in 0.16 / 0.26 / 0.46 / 1.04 s; on the 200x5 net's deepest
  layer 10 steps reach 92.8 / 97.1 / 97.3 / 96.1 % of the 100-step gain with step
  0.1 / 0.2 / 0.3 / 0.5;
* **numpy float64 with the gradient by hand** rather than torch autograd: one step on the
  200x5 net's deepest layer (278 rows) 13.6 ms against 17.2 ms, on the 800x2 net's
  second layer (836 rows) 24.8 ms against 29.3 ms, and no torch import; float32 would
  save 20–45 % per step and was not taken.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..domains import Box, box
from ..network import Network
from .base import Bounds, join_sources
from .cheap import backsub_upper, clip_to, crown_arrays, interval_arrays

__all__ = ["INTERMEDIATE", "alpha_arrays", "alpha_bounds"]

INTERMEDIATE = ("alpha", "crown")
ITERATIONS = 10  # projected-Adam steps per chunk of rows (see alpha_arrays)
LR = 0.25
MEMORY = 2**28  # bytes a chunk's α, Adam moments and cached coefficients may take (≈ 6 arrays rows × Σ n_k)


@dataclass
class _Alive:
    """The sub-network that matters for bounding layer ``m``, with its relaxation.

    For hidden layer ``k < m``: ``idx[k]`` the kept neurons (unstable first, ``nu[k]`` of
    them, then stably active); ``W[k]``, ``b[k]`` the affine layer ``k`` restricted to kept
    outputs (and kept inputs); ``su[k]``, ``tu[k]`` the chord of the unstable neurons and
    ``sl0[k]`` CROWN's two initial lower slopes ("adaptive", "zero"). ``cols``: the input
    coordinates read by a kept neuron of layer 0; ``lo``, ``hi`` the box on them.
    """

    W: list
    b: list
    idx: list
    nu: list
    su: list
    tu: list
    sl0: list
    cols: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _alive(weights, biases, lowers, uppers, lo, hi, m) -> _Alive:
    idx, nu, su, tu, sl0 = [], [], [], [], []
    for k in range(m):
        l, u = lowers[k], uppers[k]
        un = np.flatnonzero((l < 0) & (u > 0))
        idx.append(np.concatenate([un, np.flatnonzero(l >= 0)]))
        nu.append(un.size)
        s = u[un] / (u[un] - l[un])
        su.append(s)
        tu.append(-s * l[un])
        sl0.append(((u[un] > -l[un]).astype(np.float64), np.zeros(un.size)))
    W0 = np.asarray(weights[0])[idx[0]]
    cols = np.flatnonzero(np.any(W0 != 0, axis=0))
    W = [W0[:, cols]]
    b = [np.asarray(biases[0])[idx[0]]]
    for k in range(1, m):
        W.append(np.asarray(weights[k])[np.ix_(idx[k], idx[k - 1])])
        b.append(np.asarray(biases[k])[idx[k]])
    return _Alive(W, b, idx, nu, su, tu, sl0, cols, lo[cols], hi[cols])


def _slopes(A: _Alive, alphas, R):
    """Full lower-slope matrices per layer for :func:`backsub_upper`: [α | 1 on active]."""
    out = []
    for k in range(len(A.W)):
        n_act = A.idx[k].size - A.nu[k]
        a = np.clip(np.broadcast_to(alphas[k], (R, A.nu[k])), 0.0, 1.0)
        out.append((np.concatenate([A.su[k], np.ones(n_act)]),
                    np.concatenate([A.tu[k], np.zeros(n_act)]),
                    np.concatenate([a, np.ones((R, n_act))], axis=1)))
    return out


def _value_and_grad(A: _Alive, Lam0, c0, alphas, grad: bool = True):
    """g(α) per row (unwidened) and, if ``grad``, dΣg/dα per layer (module doc).

    Forward, layer k = m−1..0 with Λ_u the coefficients of the unstable neurons:
    c += max(Λ_u, 0) t_u; Λ_u ← Λ_u ∘ s with s = s_u where Λ_u > 0 else α; c += Λ b^k;
    Λ ← Λ W^k; finally g = Λ⁺ hi + Λ⁻ lo + c. Backward, k = 0..m−1, with G = ∂g/∂Λ
    (at the input: hi where Λ > 0, else lo): ∂g/∂(Λ after the slopes) = G W^kᵀ + b^k =: D;
    ∂g/∂α = D_u ∘ min(Λ_u, 0); the next G is D with D_u ← D_u ∘ s + t_u·[Λ_u > 0].
    """
    Lam, c = Lam0, c0
    cache = [None] * len(A.W)
    for k in range(len(A.W) - 1, -1, -1):
        nu = A.nu[k]
        Lu = Lam[:, :nu]
        pos = Lu > 0
        slope = np.where(pos, A.su[k], alphas[k])
        c = c + np.maximum(Lu, 0.0) @ A.tu[k]
        post = Lam.copy()
        np.multiply(Lu, slope, out=post[:, :nu])
        c = c + post @ A.b[k]
        cache[k] = (Lu, pos, slope)
        Lam = post @ A.W[k]
    val = np.maximum(Lam, 0.0) @ A.hi + np.minimum(Lam, 0.0) @ A.lo + c
    if not grad:
        return val, None
    grads = [None] * len(A.W)
    top = max((k for k in range(len(A.W)) if A.nu[k]), default=-1)
    G = np.where(Lam > 0, A.hi, A.lo)
    for k in range(top + 1):
        Lu, pos, slope = cache[k]
        D = G @ A.W[k].T + A.b[k]
        Du = D[:, :A.nu[k]]
        g = Du * np.minimum(Lu, 0.0)
        grads[k] = g if alphas[k].shape[0] == Lu.shape[0] else g.sum(axis=0, keepdims=True)
        Du *= slope
        Du += pos * A.tu[k]
        G = D
    return val, grads


def _optimise(A: _Alive, Lam0, c0, iterations, lr, shared):
    """Projected Adam on α from the better of CROWN's two rules; returns the best α met per row."""
    R = Lam0.shape[0]
    inits = []
    for r in (0, 1):
        al = [np.broadcast_to(A.sl0[k][r], (R, A.nu[k])).copy() for k in range(len(A.W))]
        inits.append((_value_and_grad(A, Lam0, c0, al, grad=False)[0], al))
    (v0, a0), (v1, a1) = inits
    if shared:
        best_val, alphas = (v0, a0) if v0.sum() <= v1.sum() else (v1, a1)
        alphas = [a[:1].copy() for a in alphas]
    else:
        take = v1 < v0
        best_val = np.where(take, v1, v0)
        alphas = [np.where(take[:, None], x1, x0) for x0, x1 in zip(a0, a1)]
    best = [a.copy() for a in alphas]
    best_sum = best_val.sum()
    if not any(A.nu):
        return best
    m1 = [np.zeros_like(a) for a in alphas]
    m2 = [np.zeros_like(a) for a in alphas]
    b1, b2, eps = 0.9, 0.999, 1e-12
    for t in range(1, iterations + 1):
        val, grads = _value_and_grad(A, Lam0, c0, alphas)
        if shared:
            if val.sum() < best_sum:
                best_sum, best, best_val = val.sum(), [a.copy() for a in alphas], val
        else:
            imp = val < best_val
            best_val = np.where(imp, val, best_val)
            for k, a in enumerate(alphas):
                if a.size:
                    best[k][imp] = a[imp]
        for k, (a, g) in enumerate(zip(alphas, grads)):
            if g is None or not a.size:
                continue
            m1[k] = b1 * m1[k] + (1 - b1) * g
            m2[k] = b2 * m2[k] + (1 - b2) * g * g
            step = lr * (m1[k] / (1 - b1 ** t)) / (np.sqrt(m2[k] / (1 - b2 ** t)) + eps)
            np.clip(a - step, 0.0, 1.0, out=a)
    if shared:
        val = _value_and_grad(A, Lam0, c0, alphas, grad=False)[0]
        if val.sum() < best_sum:
            best = alphas
    return best


def alpha_arrays(weights, biases, lo, hi, *, iterations: int = ITERATIONS, lr: float = LR, shared: bool = False,
                 intermediate: str = "alpha", skip_stable: bool = True, chunk_rows: int = 1024,
                 crown=None, interval=None, stats: dict | None = None) -> tuple[list, list]:
    r"""α-CROWN bounds of every affine layer as ``(lowers, uppers)`` lists (module doc).

    Parameters
    ----------
    weights, biases : the network's layers (``weights[l]`` is n_out × n_in).
    lo, hi : the input box.
    iterations : projected-Adam steps per chunk of rows (0: CROWN's better rule per row,
        with the tightened intermediate bounds).
    lr : Adam step size on α ∈ [0, 1].
    shared : one α per earlier neuron for all rows of a chunk (α-CROWN's "shared"
        option) instead of one per row and neuron.
    intermediate : "alpha" (optimise every layer in turn) or "crown" (hidden layers keep
        CROWN's bounds; only the logits are optimised).
    skip_stable : leave neurons CROWN proves stable at CROWN's bounds (the logits are
        always optimised).
    chunk_rows : rows (two per neuron) optimised together.
    crown, interval : precomputed ``(lowers, uppers)`` of CROWN / interval arithmetic.
    stats : if a dict, filled with per-layer rows, seconds and the choices made.

    Returns
    -------
    (lowers, uppers) : float64 arrays per affine layer, each ⊆ CROWN's.

    Notes
    -----
    Per chunk, α starts row by row at the better of CROWN's "adaptive" and "zero" slopes;
    each step is Adam on :math:`\sum_r g_r(\alpha)` projected on the box:
    :math:`m \leftarrow \beta_1 m + (1-\beta_1)\nabla`,
    :math:`v \leftarrow \beta_2 v + (1-\beta_2)\nabla^2`,
    :math:`\alpha \leftarrow \mathrm{clip}_{[0,1]}(\alpha - \mathrm{lr}\,\hat m/(\sqrt{\hat v}+\epsilon))`
    (β = 0.9, 0.999). With one α per row the rows do not interact, so each row keeps the α
    of the smallest g it met, and that α is re-evaluated soundly (module doc). Chunks are
    also capped at about ``MEMORY`` bytes.
    """
    if intermediate not in INTERMEDIATE:
        raise ValueError(f"intermediate must be one of {INTERMEDIATE}, got {intermediate!r}")
    if not (isinstance(iterations, (int, np.integer)) and iterations >= 0):
        raise ValueError(f"iterations must be an integer ≥ 0, got {iterations!r}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive step size, got {lr!r}")
    if not (isinstance(chunk_rows, (int, np.integer)) and chunk_rows >= 2):
        raise ValueError(f"chunk_rows must be an integer ≥ 2, got {chunk_rows!r}")
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if interval is None:
        interval = interval_arrays(weights, biases, lo, hi)
    if crown is None:
        crown = crown_arrays(weights, biases, lo, hi, interval)
    L = len(weights) - 1
    lowers, uppers = [crown[0][0].copy()], [crown[1][0].copy()]
    layer_stats = []
    for m in range(1, L + 1):
        t0 = time.perf_counter()
        clo, chi = crown[0][m], crown[1][m]
        if m < L and intermediate == "crown":
            lowers.append(clo.copy())
            uppers.append(chi.copy())
            continue
        todo = np.arange(clo.size) if (m == L or not skip_stable) else np.flatnonzero((clo < 0) & (chi > 0))
        A = _alive(weights, biases, lowers, uppers, lo, hi, m)
        Wm = np.asarray(weights[m])[:, A.idx[m - 1]]
        bm = np.asarray(biases[m])
        new_lo, new_hi = clo.copy(), chi.copy()
        width = 1 + sum(int(i.size) for i in A.idx) + int(A.cols.size)
        per = max(1, min(int(chunk_rows), MEMORY // (48 * width)) // 2)  # neurons per chunk (two rows each)
        for s in range(0, todo.size, per):
            j = todo[s:s + per]
            Lam0 = np.vstack([Wm[j], -Wm[j]])
            c0 = np.concatenate([bm[j], -bm[j]])
            al = _optimise(A, Lam0, c0, int(iterations), float(lr), bool(shared))
            v = backsub_upper(Lam0, c0, A.W, A.b, _slopes(A, al, Lam0.shape[0]), A.lo, A.hi)
            new_hi[j], new_lo[j] = v[:j.size], -v[j.size:]
        low, up = clip_to(new_lo, new_hi, clo, chi)
        lowers.append(low)
        uppers.append(up)
        layer_stats.append({"layer": m, "neurons": int(todo.size), "alive": [int(i.size) for i in A.idx],
                            "inputs": int(A.cols.size), "seconds": time.perf_counter() - t0})
    if stats is not None:
        stats.update({"iterations": int(iterations), "lr": float(lr), "shared": bool(shared),
                      "intermediate": intermediate, "skip_stable": bool(skip_stable), "layers": layer_stats})
    return lowers, uppers


def alpha_bounds(net: Network, domain, *, iterations: int = ITERATIONS, lr: float = LR, shared: bool = False,
                 intermediate: str = "alpha", skip_stable: bool = True, chunk_rows: int = 1024) -> Bounds:
    """α-CROWN bounds (:func:`alpha_arrays`) as :class:`Bounds`, never looser than CROWN.

    The source of a bound is "alpha" where it is tighter than CROWN by more than
    1e-8·(1 + |v|), else CROWN's ("crown" or "interval").
    """
    if not isinstance(net, Network):
        raise ValueError(f"net must be an nnmiplib.Network, got {type(net).__name__}")
    if isinstance(domain, (tuple, list)) and len(domain) == 2:
        domain = box(*domain)
    if not isinstance(domain, Box):
        raise ValueError(f"domain must be a Box or a (lo, hi) pair, got {type(domain).__name__}")
    domain.check_dim(net.n_inputs)
    t0 = time.perf_counter()
    ilo, ihi = interval_arrays(net.weights, net.biases, domain.lo, domain.hi)
    clo, chi = crown_arrays(net.weights, net.biases, domain.lo, domain.hi, (ilo, ihi))
    t_crown = time.perf_counter() - t0
    st: dict = {}
    alo, ahi = alpha_arrays(net.weights, net.biases, domain.lo, domain.hi, iterations=iterations, lr=lr,
                            shared=shared, intermediate=intermediate, skip_stable=skip_stable,
                            chunk_rows=chunk_rows, crown=(clo, chi), interval=(ilo, ihi), stats=st)
    tol = lambda v: 1e-8 * (1.0 + np.abs(v))  # ignore gains at the rounding-margin level

    def side(a, c, i, tighter):
        return np.where(tighter(a, c), "alpha", np.where(tighter(c, i), "crown", "interval"))

    src = [join_sources(side(al, cl, il, lambda x, y: x > y + tol(y)), side(ah, ch, ih, lambda x, y: x < y - tol(y)))
           for al, cl, il, ah, ch, ih in zip(alo, clo, ilo, ahi, chi, ihi)]
    b = Bounds(alo, ahi, src, [np.zeros(a.size) for a in alo], "alpha", net.digest(), domain,
               {"total_time": time.perf_counter() - t0, "crown_time": t_crown, **st})
    b.stats["stable"] = b.stable_counts()
    return b
