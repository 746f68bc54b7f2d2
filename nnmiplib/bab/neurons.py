"""Bounds of single neurons by branch and bound: the exact MILP bound of the Big-M model, anytime.

``max a_j`` (and ``min``) over the network up to layer ``m``, with the given Big-M constants
of the layers before it, is the MILP the Bounder (thesis Algorithm 3) hands to a MIP
solver for every neuron. :func:`neuron_bounds` solves it by :func:`nnmiplib.bab.solve`
instead: its dual bound is a proven bound at every moment, so a solve stopped at its limit
still gives a valid (and, measured on the thesis's nets, much tighter) bound than the MIP
solver's dual bound after the same time. With ``refine=False`` every node keeps the given
constants, so a finished solve is the MILP bound itself; ``refine=True`` re-tightens them
per node (tighter, still sound, no longer the thesis's model).
"""

from __future__ import annotations

import time

import numpy as np

from ..network import Network
from .search import solve
from .tightening import truncate

__all__ = ["neuron_bounds"]


def neuron_bounds(net: Network, lo, hi, lower, upper, layer: int, neurons=None, *, time_limit: float | None = 20.0,
                  sides=("lower", "upper"), refine: bool = False, rel_gap: float = 1e-4, abs_gap: float = 1e-4,
                  seed: int = 0) -> dict:
    """Bounds of the pre-activations of ``neurons`` in affine layer ``layer``, by branch and bound.

    Parameters
    ----------
    net : Network.
    lo, hi : the input box.
    lower, upper : pre-activation bounds of at least the hidden layers ``0 .. layer − 1``
        (e.g. ``Bounds.lower``): the Big-M constants of the model.
    layer : affine layer (0 = first hidden layer; ``net.depth`` = the logits).
    neurons : indices in that layer (default: all).
    time_limit : seconds per neuron and side.
    sides : which of ``"lower"``/``"upper"`` to bound.
    refine : re-tighten the intermediate bounds at every node (see the module doc).

    Returns
    -------
    ``{"neurons", "lower", "upper", "best_lower", "best_upper", "status", "seconds", "nodes"}``:
    per neuron the proven bounds (``-inf``/``inf`` for a side not asked), the best points'
    values (the gap to the bound is what the search left open), and per side the search's
    status, time and nodes (lists of ``(lower, upper)`` pairs).
    """
    if not 0 <= layer <= net.depth:
        raise ValueError(f"layer must lie in 0..{net.depth} (the affine layers of {net.arch}), got {layer}")
    bad = [s for s in sides if s not in ("lower", "upper")]
    if bad or not sides:
        raise ValueError(f"sides must be a non-empty subset of ('lower', 'upper'), got {sides!r}")
    n = net.layer_sizes[layer + 1]
    idx = np.arange(n) if neurons is None else np.asarray(neurons, dtype=int).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"neurons must lie in 0..{n - 1} for layer {layer}, got {idx.tolist()}")
    if len(lower) < layer or len(upper) < layer:
        raise ValueError(f"lower/upper must hold the bounds of the {layer} hidden layers before layer {layer}")
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    inter_lo = [np.asarray(x, dtype=np.float64) for x in lower[:layer]]
    inter_up = [np.asarray(x, dtype=np.float64) for x in upper[:layer]]
    out = {"neurons": idx, "lower": np.full(idx.size, -np.inf), "upper": np.full(idx.size, np.inf),
           "best_lower": np.full(idx.size, np.nan), "best_upper": np.full(idx.size, np.nan),
           "status": [], "seconds": [], "nodes": []}
    for i, j in enumerate(idx):
        sub = truncate(net, layer, np.array([j]))
        st, sec, nod = [None, None], [0.0, 0.0], [0, 0]
        for s, sign in (("upper", 1.0), ("lower", -1.0)):
            if s not in sides:
                continue
            k = 1 if s == "upper" else 0
            t0 = time.perf_counter()
            r = solve(sub, lo, hi, np.array([[sign]]), np.zeros(1), lower=inter_lo, upper=inter_up,
                      time_limit=time_limit, rel_gap=rel_gap, abs_gap=abs_gap, refine=refine, seed=seed)
            sec[k], st[k], nod[k] = time.perf_counter() - t0, r.status, int(r.nodes)
            if s == "upper":
                out["upper"][i] = r.dual_bound
                out["best_upper"][i] = np.nan if r.value is None else r.value
            else:
                out["lower"][i] = -r.dual_bound
                out["best_lower"][i] = np.nan if r.value is None else -r.value
        out["status"].append(tuple(st))
        out["seconds"].append(tuple(sec))
        out["nodes"].append(tuple(nod))
    return out
