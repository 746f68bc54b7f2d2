"""Branching of the ReLU branch and bound: which free neuron a node splits on, and its two children.

Shared by the search over one objective (:mod:`nnmiplib.bab.search`) and the batched
tightening of many neurons' bounds (:mod:`nnmiplib.bab.tightening`). The objective ``obj``
is anything with ``value(rows_ub)`` and ``worst(rows_ub)`` (the row a node's score reads).
"""

from __future__ import annotations

import math

import numpy as np

from . import relax as R

__all__ = ["Pseudocosts", "children", "choose", "scores"]

#: :class:`Pseudocosts`: the power of a neuron's learned factor on its scores, the worth of the
#: prior (the mean over every neuron) in observations, and the cap on one observed ratio.
#: Measured, one row on tightened bounds, 30 s, the dual bound with the score alone / factor to
#: the power 0.5, 0.75, 1 (lower is better): PV 200x5 digit 1 row 6 0.65 / 0.59, 0.58, 0.37;
#: digit 2 row 0 4.37 / 4.36, 4.32, 4.45; 100x10 digit 1 row 7 3.43 / 3.40, 3.48, 3.57; digit 8
#: row 3 12.28 / 12.23, 11.39, 11.28; 800x2 digit 8 row 0 2.35 / 2.07, 2.04, 1.89; 256x4 MNIST
#: ε = 0.03 image 0 row 2 1.24 / 0.99, 1.08, 0.93, row 3 3.84 / 3.46, 3.88, 4.07; image 9 row 7
#: 0.41 / 0.39, 0.27, 0.51. Power 1 gains most and loses most; 0.75 loses at most 1.5 %. Prior
#: 0.25 was worse than 1 on 4 of 5 PV rows, prior 2 (power 1) between the two; the gain as the
#: smaller of the two children's drops instead of their geometric mean was worse on 3 of 5.
PSEUDOCOST_POWER = 0.75
PSEUDOCOST_PRIOR = 1.0
PSEUDOCOST_CAP = 10.0


def scores(layers, nodes, lams, worst_row):
    """Per hidden layer ``(N, n_k)`` BaBSR-type scores of the free neurons (−inf elsewhere)."""
    import torch

    out = []
    idx = torch.arange(nodes.n)
    for k in range(layers.depth):
        l, u, _su, tu, _lin, free = R.phase_relaxation(*nodes.bounds(layers, k), nodes.split[k])
        lam = lams[k][idx, worst_row]  # (N, n_k): coefficient on h^{k+1} for the node's worst row
        s = lam.clamp(min=0.0) * tu + 1e-3 * lam.abs() * torch.minimum(u, -l).clamp(min=0.0)
        out.append(torch.where(free, s, torch.full_like(s, -math.inf)))
    return out


def children(nodes, layer_of, index_of, which):
    """Two children per node: the decision ``(layer_of[n], index_of[n])`` set to +1 and −1."""
    import torch

    kids = nodes.take(torch.arange(nodes.n).repeat_interleave(2))
    sign = torch.tensor([1, -1], dtype=torch.int8).repeat(nodes.n)
    rows = torch.arange(2 * nodes.n)
    for k in range(len(kids.split)):
        sel = (layer_of.repeat_interleave(2) == k) & which.repeat_interleave(2)
        if sel.any():
            s = kids.split[k].clone()
            s[rows[sel], index_of.repeat_interleave(2)[sel]] = sign[sel]
            kids.split[k] = s
    return kids


class Pseudocosts:
    """What splitting each neuron has gained so far, against the score it was chosen on.

    The score (:func:`scores`) predicts a split's gain from the node's relaxation alone; what a
    split on a neuron actually takes off its children's bounds also depends on what the score
    does not see (the neurons it moves with, the phases of the layers after it). As in MIP
    solvers' pseudocost branching, every split's observed gain — the geometric mean of its two
    children's drops below the parent's bound, each counted down to the level that settles a
    node at most — is divided by the score it was chosen on, and :func:`choose` multiplies
    each neuron's scores by the mean of its ratios (shrunk towards the mean of every ratio
    seen, worth :data:`PSEUDOCOST_PRIOR` observations) to the power :data:`PSEUDOCOST_POWER`.
    One instance per search; the indices are flat over the hidden layers.
    """

    def __init__(self, sizes):
        import torch

        self.offsets = torch.as_tensor(np.cumsum([0, *sizes[:-1]]), dtype=torch.int64)
        self.total = torch.zeros(int(sum(sizes)), dtype=torch.float64)  # Σ ratios per neuron
        self.count = torch.zeros(int(sum(sizes)), dtype=torch.float64)
        self.seen = 0

    def factor(self):
        """Per neuron (flat), the multiplier on its scores."""
        mean = float(self.total.sum()) / self.seen if self.seen else 1.0
        f = (self.total + PSEUDOCOST_PRIOR * mean) / (self.count + PSEUDOCOST_PRIOR)
        return f.clamp(min=1e-6) ** PSEUDOCOST_POWER

    def record(self, layer, index, score, parent, kids, level=None):
        """Learn from one batch of splits: node n split ``(layer[n], index[n])`` on ``score[n]``;
        ``parent`` (N,) its bound, ``kids`` (2N,) its children's (in :func:`children`'s order);
        ``level``: the bound at which a node is settled (decision mode), else None."""
        import torch

        parent = parent.to(torch.float64)
        kids = kids.to(torch.float64).view(-1, 2)
        if level is not None:
            kids = kids.clamp(min=float(level))
        drop = (parent[:, None] - kids).clamp(min=0.0)
        gain = (drop[:, 0] * drop[:, 1]).sqrt()
        score = score.to(torch.float64)
        ok = (score > 0) & torch.isfinite(gain)
        if not bool(ok.any()):
            return
        ratio = (gain[ok] / score[ok]).clamp(max=PSEUDOCOST_CAP)
        flat = self.offsets[layer[ok]] + index[ok]
        self.total.index_add_(0, flat, ratio)
        self.count.index_add_(0, flat, torch.ones_like(ratio))
        self.seen += int(ok.sum())


def choose(layers, nodes, ub, obj, k_candidates, pseudo: Pseudocosts | None = None):
    """Branching decision per node by filtered look-ahead: ``(layer, index, has_free, score)``,
    ``score`` the chosen neuron's own score (before any ``pseudo`` factor; 0 where none is free)."""
    import torch

    _, _, lams = R.bound(layers, nodes, keep_lambdas=True, need_mag=False)
    worst = obj.worst(ub)
    sc = scores(layers, nodes, lams, worst)
    raw = torch.cat(sc, dim=1)  # (N, Σ n_k)
    flat = raw
    if pseudo is not None:
        fin = torch.isfinite(raw)
        flat = torch.where(fin, raw * pseudo.factor().to(raw.dtype), raw)
    sizes = layers.sizes
    offsets = np.cumsum([0, *sizes])
    has = torch.isfinite(flat).any(1)
    if flat.shape[1] == 0:  # no hidden neuron left in the reduced layers: every node is a leaf
        none = torch.zeros(nodes.n, dtype=torch.int64)
        return none, none.clone(), has, torch.zeros(nodes.n, dtype=torch.float64)
    k = max(1, min(k_candidates, flat.shape[1]))
    top = flat.topk(k, dim=1)
    best_layer = torch.zeros(nodes.n, dtype=torch.int64)
    best_index = torch.zeros(nodes.n, dtype=torch.int64)
    best_val = torch.full((nodes.n,), math.inf, dtype=torch.float64)
    for j in range(k):
        cand = top.indices[:, j]
        ok = torch.isfinite(top.values[:, j]) & has
        layer = torch.as_tensor(np.searchsorted(offsets, cand.numpy(), side="right") - 1)
        index = cand - torch.as_tensor(offsets)[layer]
        if k == 1:
            best_layer, best_index = layer, index
            break
        kids = children(nodes, layer, index, ok)
        val, mag, _ = R.bound(layers, kids)
        v = obj.value(R.certified(val, mag)).view(nodes.n, 2).max(1).values
        better = ok & (v < best_val)
        best_val = torch.where(better, v, best_val)
        best_layer = torch.where(better, layer, best_layer)
        best_index = torch.where(better, index, best_index)
    chosen = torch.as_tensor(offsets[:-1])[best_layer] + best_index
    score = raw.gather(1, chosen[:, None])[:, 0]
    return best_layer, best_index, has, torch.where(has, score, torch.zeros_like(score))
