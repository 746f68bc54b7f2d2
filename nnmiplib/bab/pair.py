r"""Branch and bound over a network and its copy of the same shape, with their difference bounds.

The two networks are stacked into one on the shared input (:func:`stack`): the first
affine layer is both first layers one above the other, every later one block-diagonal, so
its logits are ``(y¹, y²)``. Objective rows over these ``2K`` logits then ask questions
about the pair (``y¹_k − y²_k``: a logit change; ``min(y¹_a − y¹_k, y²_b − y²_k)``: the two
answer ``a`` and ``b``). The search (:func:`nnmiplib.bab.solve`) bounds its nodes with both
networks' relaxations, and the difference bounds
(:func:`nnmiplib.bounds.difference_bounds`) link every neuron to its copy:
``dl ≤ a¹_j − a²_j ≤ du`` tightens each node's bounds of ``a²_j`` from those of ``a¹_j`` and
back (:func:`nnmiplib.bab.relax.imply`). Deciding a neuron's phase then often decides its
copy's, which for a lightly pruned copy halves the free neurons the search has to branch on.
"""

from __future__ import annotations

import numpy as np

from ..bounds.cheap import MARGIN
from ..network import Network
from .search import BabResult, solve

__all__ = ["pair_links", "solve_pair", "stack"]


def stack(net1: Network, net2: Network) -> Network:
    """One network computing both: input shared, hidden layers side by side, logits ``(y¹, y²)``."""
    if net1.layer_sizes != net2.layer_sizes:
        raise ValueError(f"stacking needs two networks of one shape, got {net1.arch} and {net2.arch}")
    W = [np.vstack([net1.weights[0], net2.weights[0]])]
    for w1, w2 in zip(net1.weights[1:], net2.weights[1:]):
        z = np.zeros_like(w1)
        W.append(np.block([[w1, z], [z, w2]]))
    B = [np.concatenate([b1, b2]) for b1, b2 in zip(net1.biases, net2.biases)]
    return Network(W, B, name=f"{net1.name or 'net1'}+{net2.name or 'net2'}")


def pair_links(sizes, diff_lower, diff_upper) -> list:
    """The links of :func:`nnmiplib.bab.solve` for a stacked pair: neuron ``j`` of hidden layer
    ``k`` (index ``j``) and its copy (index ``n_k + j``), with ``a¹_j − a²_j ∈ [diff_lower[k],
    diff_upper[k]]``."""
    out = []
    for n, dl, du in zip(sizes, diff_lower, diff_upper):
        j = np.arange(n)
        out.append((j, j + n, np.asarray(dl, dtype=np.float64), np.asarray(du, dtype=np.float64)))
    return out


def solve_pair(net1: Network, net2: Network, lo, hi, C, d, *, bounds, difference=None, **kw) -> BabResult:
    """:func:`nnmiplib.bab.solve` on ``stack(net1, net2)``: ``max F`` over rows ``C (y¹, y²) + d``.

    Parameters
    ----------
    net1, net2 : two networks of one shape.
    lo, hi : the input box.
    C, d : objective rows over the stacked logits (``R × 2K``, ``R``).
    bounds : (Bounds of net 1, Bounds of net 2) on the box: the intermediate bounds.
    difference : their :class:`~nnmiplib.bounds.DifferenceBounds` on the box, or None. With
        them each network's bounds are first intersected with the other's shifted by the
        difference, and every node's bounds are linked (see the module doc).
    **kw : passed to :func:`nnmiplib.bab.solve` (``groups``, ``threshold``, ``time_limit``, …).

    Returns
    -------
    BabResult, its ``x`` an input of both networks; ``stats["links"]`` says whether the
    difference bounds were used.
    """
    b1, b2 = bounds
    L = net1.depth
    f64 = lambda xs: [np.array(x, dtype=np.float64) for x in xs[:L]]
    l1, u1, l2, u2 = f64(b1.lower), f64(b1.upper), f64(b2.lower), f64(b2.upper)
    links = None
    if difference is not None:
        difference.check_nets(net1, net2)
        dl, du = difference.lower[:L], difference.upper[:L]
        pad = lambda v: MARGIN * (1.0 + np.abs(v))  # the outward widening of every bound here
        for k in range(L):  # a² = a¹ − δ and a¹ = a² + δ on the whole box
            n2l, n2u, n1l, n1u = l1[k] - du[k], u1[k] - dl[k], l2[k] + dl[k], u2[k] + du[k]
            l2[k], u2[k] = np.maximum(l2[k], n2l - pad(n2l)), np.minimum(u2[k], n2u + pad(n2u))
            l1[k], u1[k] = np.maximum(l1[k], n1l - pad(n1l)), np.minimum(u1[k], n1u + pad(n1u))
            u1[k], u2[k] = np.maximum(u1[k], l1[k]), np.maximum(u2[k], l2[k])  # rounding never crosses them
        links = pair_links(net1.hidden_sizes, dl, du)
    lower = [np.concatenate([a, b]) for a, b in zip(l1, l2)]
    upper = [np.concatenate([a, b]) for a, b in zip(u1, u2)]
    r = solve(stack(net1, net2), lo, hi, C, d, lower=lower, upper=upper, links=links, **kw)
    r.stats["links"] = links is not None
    return r
