"""Cheap activation bounds in pure numpy: Prop 2.1, Prop 2.2, interval, CROWN.

All functions return signed pre-activation bounds ``lower[l] ≤ a^{l+1} ≤ upper[l]`` for
every affine layer ``l = 0..L`` (the last one gives the logits), as plain lists of
float64 arrays; :mod:`nnmiplib.bounds` wraps them into :class:`~nnmiplib.bounds.Bounds`.

Floating-point soundness
------------------------
Every bound computed here is widened outward by

    δ = 1e-9 · (1 + |v| + S)

where ``v`` is the computed bound and ``S`` the sum of the absolute values of the
terms that were added to obtain it (e.g. ``|W| · max(|l|, |u|) + |b|`` for interval
arithmetic). The float64 rounding error of a sum of ``n`` terms is at most
``n · 2⁻⁵³ · S`` ≈ 1.1e-13 · S for n = 1000, so δ covers it with a factor ≥ 1000
on every network of the thesis's size. The margin is negligible next to any bound
width that matters (≥ 1e-6).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MARGIN",
    "SLOPE_RULES",
    "abs_weights",
    "backsub_upper",
    "clip_to",
    "crown_arrays",
    "interval_arrays",
    "live_index",
    "naive_arrays",
    "prop22_arrays",
    "prop22_layer",
    "relu_relaxation",
    "widen",
]

MARGIN = 1e-9


def widen(lower: np.ndarray, upper: np.ndarray, mag_lo=0.0, mag_hi=0.0) -> tuple[np.ndarray, np.ndarray]:
    """Widen ``[lower, upper]`` outward by ``MARGIN · (1 + |v| + mag)`` (see module doc)."""
    lo = lower - MARGIN * (1.0 + np.abs(lower) + mag_lo)
    hi = upper + MARGIN * (1.0 + np.abs(upper) + mag_hi)
    return lo, hi


_ABS: dict = {}  # id of a read-only float64 weight array → (the array, |W|, max row sum of |W|)


def abs_weights(W: np.ndarray) -> tuple[np.ndarray, float]:
    """|W| and its max row sum. A network's weights are bounded on many domains (every image
    of a grid, every node of a search), so for read-only float64 arrays that own their data
    (a :class:`~nnmiplib.network.Network`'s do) both are kept for the last 32 arrays; the entry
    holds the array, so its id stays its own and a read-only array cannot go stale."""
    frozen = (isinstance(W, np.ndarray) and W.dtype == np.float64 and not W.flags.writeable
              and W.flags.owndata)  # (a read-only view of a writable array could change)
    hit = _ABS.get(id(W)) if frozen else None
    if hit is not None and hit[0] is W:
        return hit[1], hit[2]
    A = np.abs(W)
    norm = float(A.sum(axis=1).max()) if A.size else 0.0
    if frozen:
        A.setflags(write=False)
        try:
            while len(_ABS) >= 32:
                _ABS.pop(next(iter(_ABS)), None)
        except RuntimeError:  # another thread changed the cache meanwhile: it stays small either way
            pass
        _ABS[id(W)] = (W, A, norm)
    return A, norm


def _inf_norm(W: np.ndarray) -> float:
    """Induced ∞-norm: max row sum of |W| (weights stored out × in)."""
    return abs_weights(W)[1]


def _input_radius(lo: np.ndarray, hi: np.ndarray) -> float:
    """‖h⁰‖∞ over the box: max_j max(|lo_j|, |hi_j|)."""
    return float(np.maximum(np.abs(lo), np.abs(hi)).max())


def naive_arrays(weights, biases, lo, hi) -> tuple[list, list]:
    """Proposition 2.1: ‖a^{l+1}‖∞ ≤ ‖W^l‖∞ ‖h^l‖∞ + ‖b^l‖∞ with ‖h^l‖∞ ≤ ‖a^l‖∞.

    Unrolled, this is the thesis's closed form
    ‖h^l‖∞ ≤ ‖h⁰‖∞ Π_{m<l} ‖W^m‖∞ + Σ_{n≤l−2} ‖b^n‖∞ Π_{m=n+1}^{l−1} ‖W^m‖∞ + ‖b^{l−1}‖∞.
    Every neuron of layer ``l`` gets the same signed bound [−M_l, M_l].
    """
    M = _input_radius(lo, hi)
    lowers, uppers = [], []
    for W, b in zip(weights, biases):
        nw, nb = _inf_norm(W), float(np.abs(b).max())
        M = nw * M + nb
        M = M + MARGIN * (1.0 + 2.0 * abs(M))  # S ≤ |M| here: all terms are non-negative
        uppers.append(np.full(W.shape[0], M))
        lowers.append(np.full(W.shape[0], -M))
    return lowers, uppers


def prop22_layer(W, b, H_prev, Hbar_prev) -> tuple[np.ndarray, np.ndarray]:
    """Proposition 2.2 for one layer: ‖a^{l+1}‖∞ ≤ ‖W^l‖∞ max_j max(H_j^l, H̄_j^l) + ‖b^l‖∞.

    Parameters
    ----------
    W, b : the layer's weight (n_out × n_in) and bias.
    H_prev, Hbar_prev : Big-M constants of the previous layer's neurons (for the input
        layer: ``max(0, hi)`` and ``max(0, −lo)`` of the box, so that
        max(H, H̄) = max |x_j|).

    Returns
    -------
    (lower, upper) : arrays of shape (n_out,), equal to −M and M.
    """
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    H_prev = np.asarray(H_prev, dtype=np.float64)
    Hbar_prev = np.asarray(Hbar_prev, dtype=np.float64)
    if W.ndim != 2 or b.shape != (W.shape[0],) or H_prev.shape != (W.shape[1],) or Hbar_prev.shape != H_prev.shape:
        raise ValueError(
            f"prop22_layer: shapes do not chain: W {W.shape}, b {b.shape}, H {H_prev.shape}, H̄ {Hbar_prev.shape}; "
            "expected W (n_out, n_in), b (n_out,), H and H̄ (n_in,)"
        )
    if np.any(H_prev < 0) or np.any(Hbar_prev < 0):
        raise ValueError("prop22_layer: Big-M constants H, H̄ must be ≥ 0 (use max(0, upper), max(0, −lower))")
    r = float(np.maximum(H_prev, Hbar_prev).max())
    M = _inf_norm(W) * r + float(np.abs(b).max())
    M = M + MARGIN * (1.0 + 2.0 * abs(M))
    return np.full(W.shape[0], -M), np.full(W.shape[0], M)


def prop22_arrays(weights, biases, lo, hi) -> tuple[list, list]:
    """Prop 2.2 applied layer by layer from the input box (equals Prop 2.1 up to rounding)."""
    H, Hb = np.maximum(0.0, hi), np.maximum(0.0, -lo)
    lowers, uppers = [], []
    for W, b in zip(weights, biases):
        l, u = prop22_layer(W, b, H, Hb)
        lowers.append(l)
        uppers.append(u)
        H, Hb = np.maximum(0.0, u), np.maximum(0.0, -l)
    return lowers, uppers


def _affine_interval(W, b, lo, hi):
    """[W⁺ lo + W⁻ hi + b, W⁺ hi + W⁻ lo + b] = W m + b ∓ |W| r (m, r the box's centre and
    radius), widened by the magnitude |W| max(|lo|, |hi|) + |b| ≥ |W| (|m| + r) + |b| of
    the terms (module doc)."""
    A, _ = abs_weights(W)
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    cen = W @ mid + b
    rm = A @ np.column_stack([rad, np.maximum(np.abs(lo), np.abs(hi))])
    mag = rm[:, 1] + np.abs(b)
    return widen(cen - rm[:, 0], cen + rm[:, 0], mag, mag)


def clip_to(lower, upper, ref_lo, ref_hi):
    """Intersect with a reference bound; where the result crosses (rounding), keep the hull."""
    lo = np.maximum(lower, ref_lo)
    hi = np.minimum(upper, ref_hi)
    bad = lo > hi
    if bad.any():
        lo2 = np.where(bad, np.minimum(lo, hi), lo)
        hi2 = np.where(bad, np.maximum(lo, hi), hi)
        lo, hi = lo2, hi2
    return lo, hi


def interval_arrays(weights, biases, lo, hi, naive=None) -> tuple[list, list]:
    """Interval arithmetic: a ∈ W⁺[l, u] + W⁻[l, u] + b with [l, u] the ReLU of the previous bounds.

    Each layer is intersected with Prop 2.1 (``naive``), so interval ⊆ naive holds
    also after the floating-point margins.
    """
    if naive is None:
        naive = naive_arrays(weights, biases, lo, hi)
    lowers, uppers = [], []
    hl, hh = lo, hi
    for k, (W, b) in enumerate(zip(weights, biases)):
        l, u = _affine_interval(W, b, hl, hh)
        l, u = clip_to(l, u, naive[0][k], naive[1][k])
        lowers.append(l)
        uppers.append(u)
        hl, hh = np.maximum(l, 0.0), np.maximum(u, 0.0)
    return lowers, uppers


def relu_relaxation(l: np.ndarray, u: np.ndarray, lower_slope: str = "adaptive"):
    """Linear relaxation of h = ReLU(a) on a ∈ [l, u] (DeepPoly / CROWN).

    Upper: h ≤ s_u · a + t_u with the chord s_u = u / (u − l), t_u = −s_u · l on unstable
    neurons (l < 0 < u); 1, 0 if l ≥ 0; 0, 0 if u ≤ 0.
    Lower: h ≥ s_l · a with s_l ∈ [0, 1]. ``"adaptive"`` (default, DeepPoly's rule):
    s_l = 1 if u > −l else 0 (the smaller-area triangle); ``"same"``: s_l = s_u (the
    parallel relaxation of Wong & Kolter); ``"zero"``: s_l = 0.

    Returns
    -------
    su, tu, sl : arrays of the neuron count.
    """
    active = l >= 0
    inactive = u <= 0
    unstable = ~(active | inactive)
    den = np.where(unstable, u - l, 1.0)
    su = np.where(active, 1.0, np.where(unstable, u / den, 0.0))
    tu = np.where(unstable, -su * l, 0.0)
    if lower_slope == "adaptive":
        sl_un = (u > -l).astype(np.float64)
    elif lower_slope == "same":
        sl_un = su
    elif lower_slope == "zero":
        sl_un = np.zeros_like(u)
    else:
        raise ValueError(f"lower_slope must be 'adaptive', 'same' or 'zero', got {lower_slope!r}")
    sl = np.where(active, 1.0, np.where(unstable, sl_un, 0.0))
    return su, tu, sl


SLOPE_RULES = ("adaptive", "same", "zero")


LIVE_FRACTION = 0.8
LIVE_MIN_SIZE = 50_000


def _live_columns(su, sl, size: int | None = None):
    """Indices of the neurons whose relaxation has a nonzero slope on either side, or None
    when more than ``LIVE_FRACTION`` of them do or the weight matrix they index has fewer than
    ``LIVE_MIN_SIZE`` entries (then slicing costs more than it saves: on the 100x10 net's
    100 × 100 layers it made CROWN about 10 % slower).
    Back-substitution multiplies the coefficients by W^k after scaling each neuron's column
    by its slope, so an inactive neuron's column (both slopes 0) is zero: dropping it from
    the product with W^k changes no term, and on the thesis's sparse L1 nets, where most
    neurons are inactive on a small box, cuts the largest products by a factor of 2–4."""
    return live_index((su != 0) | (np.any(sl != 0, axis=0) if np.ndim(sl) == 2 else sl != 0), size)


def live_index(live: np.ndarray, size: int | None = None):
    """``np.flatnonzero(live)``, or None where slicing out the others would not pay: more than
    ``LIVE_FRACTION`` of the neurons live, or a weight matrix of fewer than ``LIVE_MIN_SIZE``
    entries (``size``). Shared by :func:`backsub_upper` and the difference bounds."""
    if (size is not None and size < LIVE_MIN_SIZE) or np.count_nonzero(live) > LIVE_FRACTION * live.size:
        return None
    return np.flatnonzero(live)


def backsub_upper(Lam, c, weights, biases, relax, lo, hi, xmag=None) -> np.ndarray:
    """Upper bounds of the rows of ``Λ h^m + c`` over the box, by back-substitution (widened).

    Parameters
    ----------
    Lam, c : (R, n_m) coefficients on h^m and (R,) constants, one row per bounded quantity.
    weights, biases : the affine layers ``0..m−1`` (``a^{k+1} = W^k h^k + b^k``).
    relax : per hidden layer ``k = 0..m−1`` the relaxation ``(s_u, t_u, s_l)`` of
        h^{k+1} = ReLU(a^{k+1}) (:func:`relu_relaxation`); ``s_l`` may be a vector (one
        slope per neuron) or an (R, n_k) matrix (one slope per row and neuron, e.g.
        optimised slopes), each entry in [0, 1].
    lo, hi : the input box; ``xmag`` = max(|lo|, |hi|) (computed if None).

    Returns
    -------
    (R,) array ``v`` with ``Λ h^m + c ≤ v`` for every reachable h^m: through a ReLU a
    positive coefficient takes the upper relaxation and a negative one the lower one,
    through an affine layer Λ ← Λ W, c ← c + Λ b; at the input max Λx + c = Λ⁺ hi + Λ⁻ lo + c.
    The value is widened by ``MARGIN · (1 + |v| + S)`` with ``S`` the magnitude of the
    terms summed (module doc).
    """
    if xmag is None:
        xmag = np.maximum(np.abs(lo), np.abs(hi))
    cmag = np.abs(c)
    for k in range(len(weights) - 1, -1, -1):  # h^{k+1} = ReLU(a^{k+1}), a^{k+1} = W^k h^k + b^k
        su, tu, sl = relax[k]
        pos = Lam > 0
        Lpos = np.where(pos, Lam, 0.0)
        c = c + Lpos @ tu
        cmag = cmag + Lpos @ tu  # tu ≥ 0 and Lpos ≥ 0
        Lam = Lam * np.where(pos, su, sl)
        W, b = weights[k], biases[k]
        live = _live_columns(su, sl, W.size)
        if live is not None:  # inactive neurons (both slopes 0) carry nothing back: skip them
            Lam, W, b = Lam[:, live], W[live], b[live]
        c = c + Lam @ b
        cmag = cmag + np.abs(Lam) @ np.abs(b)
        Lam = Lam @ W
    val = np.maximum(Lam, 0.0) @ hi + np.minimum(Lam, 0.0) @ lo + c
    mag = np.abs(Lam) @ xmag + cmag
    return val + MARGIN * (1.0 + np.abs(val) + mag)


def _backsub(m, weights, biases, relax, lo, hi, xmag, rows=None):
    """Bounds of a^{m+1} (of its entries ``rows``, default all): upper bounds of the rows
    [W^m; −W^m] (:func:`backsub_upper`)."""
    W, b = weights[m], biases[m]
    if rows is not None:
        W, b = W[rows], b[rows]
    n = W.shape[0]
    v = backsub_upper(np.vstack([W, -W]), np.concatenate([b, -b]), weights[:m], biases[:m], relax, lo, hi, xmag)
    return -v[n:], v[:n]


def crown_arrays(weights, biases, lo, hi, interval=None, lower_slope="best",
                 unstable_only: bool = False) -> tuple[list, list]:
    """Back-substitution bound propagation (DeepPoly / CROWN), intersected with interval.

    For affine layer m, the rows of ``[W^m; −W^m]`` are linear functions of h^m whose
    maxima give the upper bounds of a^{m+1} and −a^{m+1}. They are pushed back layer by
    layer: through a ReLU, a positive coefficient takes the upper relaxation and a
    negative one the lower relaxation (:func:`relu_relaxation`, using the bounds already
    found for that layer); through an affine layer, Λ ← Λ W, c ← c + Λ b. At the input
    the maximum of Λ x + c over the box is Λ⁺ hi + Λ⁻ lo + c. The result is widened
    (module doc) and intersected with ``interval``; crossings from rounding keep the hull.

    ``lower_slope`` is one rule of :func:`relu_relaxation`, a tuple of rules, or
    ``"best"`` (default) = ("adaptive", "zero"): each layer is bounded once per rule and
    the results are intersected (every rule gives a valid bound) before deeper layers
    use them. On a 200x5 MNIST net "zero" is tighter in deep layers than DeepPoly's
    adaptive rule, and the intersection beats both.

    Layer 0 is affine in the input, so interval arithmetic over the box (``interval``, which
    callers compute with :func:`interval_arrays`) is already its exact range up to rounding;
    back-substitution starts at layer 1.

    ``unstable_only``: on hidden layers after the first, back-substitute only the neurons
    that interval arithmetic from the layer below's (tightened) bounds leaves unstable; the
    others keep those interval bounds. A stable neuron's relaxation is exact whatever its
    bounds (h = a or h = 0), so every unstable neuron and the logits get bounds at least as
    tight as without it — only stable neurons' own bounds are looser — at a fraction of the
    cost on small domains, where most neurons are stable. For the same reason each further
    slope rule back-substitutes only the neurons the earlier rules left unstable.
    """
    if interval is None:
        interval = interval_arrays(weights, biases, lo, hi)
    rules = ("adaptive", "zero") if lower_slope == "best" else (
        (lower_slope,) if isinstance(lower_slope, str) else tuple(lower_slope))
    for r in rules:
        if r not in SLOPE_RULES:
            raise ValueError(f"lower_slope must be 'best', one of {SLOPE_RULES} or a tuple of them, got {r!r}")
    xmag = np.maximum(np.abs(lo), np.abs(hi))
    lowers, uppers = [], []
    relax = {r: [] for r in rules}  # per rule: (su, tu, sl) per hidden layer
    for m in range(len(weights)):
        low, up = interval[0][m], interval[1][m]
        rows = None
        if unstable_only and 0 < m < len(weights) - 1:
            low, up = clip_to(*_affine_interval(weights[m], biases[m], np.maximum(lowers[-1], 0.0),
                                                np.maximum(uppers[-1], 0.0)), low, up)
            rows = np.flatnonzero((low < 0) & (up > 0))
        for r in rules if m > 0 else ():  # layer 0: the interval bound is already its range
            if rows is not None and rows.size == 0:
                break
            l2, u2 = _backsub(m, weights, biases, relax[r], lo, hi, xmag, rows)
            bad = l2 > u2  # crown alone crossed (can only be rounding): keep its hull
            if bad.any():
                l2, u2 = np.where(bad, np.minimum(l2, u2), l2), np.where(bad, np.maximum(l2, u2), u2)
            if rows is None:
                low, up = clip_to(l2, u2, low, up)
            else:  # low, up are clip_to's own arrays here (not the interval's): update in place
                low[rows], up[rows] = clip_to(l2, u2, low[rows], up[rows])
                rows = rows[(low[rows] < 0) & (up[rows] > 0)]  # the next rule: only those still unstable
        lowers.append(low)
        uppers.append(up)
        if m < len(weights) - 1:
            for r in rules:
                relax[r].append(relu_relaxation(low, up, r))
    return lowers, uppers
