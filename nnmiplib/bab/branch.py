"""Branching of the ReLU branch and bound: which free neuron a node splits on, and its two children.

Shared by the search over one objective (:mod:`nnmiplib.bab.search`) and the batched
tightening of many neurons' bounds (:mod:`nnmiplib.bab.tightening`). The objective ``obj``
is anything with ``value(rows_ub)`` and ``worst(rows_ub)`` (the row a node's score reads).
"""

from __future__ import annotations

import math

import numpy as np

from . import relax as R

__all__ = ["children", "choose", "scores"]


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


def choose(layers, nodes, ub, obj, k_candidates):
    """Branching decision per node: ``(layer, index, has_free)`` by filtered look-ahead."""
    import torch

    _, _, lams = R.bound(layers, nodes, keep_lambdas=True, need_mag=False)
    worst = obj.worst(ub)
    sc = scores(layers, nodes, lams, worst)
    flat = torch.cat(sc, dim=1)  # (N, Σ n_k)
    sizes = layers.sizes
    offsets = np.cumsum([0, *sizes])
    has = torch.isfinite(flat).any(1)
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
    return best_layer, best_index, has
