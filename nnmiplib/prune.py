"""The Rounder: one-shot magnitude pruning (thesis Algorithm 2, §2.1; §4.3.2).

* :func:`round_weights` — Algorithm 2: every weight with |w| ≤ ε becomes 0. Weight
  matrices only (the output layer included); biases stay unless ``biases=True``.
* :func:`prune_fraction` — chapter 4's pruning by percentage: zero exactly ⌊p·n⌋ of the
  n weights of all matrices pooled together, smallest magnitude first (one global
  threshold); ties are broken deterministically by (|w|, layer, flat index).

Both return a new :class:`~nnmiplib.network.Network` (networks are immutable) and a
statistics dict: ``stats["layers"]`` is a list of per-layer rows (``pd.DataFrame`` ready)
with ``layer``, ``shape``, ``n``, ``zeroed`` (weights equal to 0 afterwards), ``fraction``
(zeroed / n) and ``rounded`` (weights this call changed to 0); the totals sit at the top
level (``n``, ``zeroed``, ``fraction``, ``rounded``) beside the rule (``eps`` or ``p``).
No retraining follows (SPEC §6).
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np

from .network import Network

__all__ = ["prune_fraction", "round_weights"]


def _layer_rows(old: Network, new_w: list[np.ndarray], new_b: list[np.ndarray] | None = None) -> list[dict]:
    rows = []
    for l, (w0, w1) in enumerate(zip(old.weights, new_w)):
        row = {
            "layer": l, "shape": tuple(int(s) for s in w1.shape), "n": int(w1.size),
            "zeroed": int(np.count_nonzero(w1 == 0)),
            "rounded": int(np.count_nonzero((w1 == 0) & (w0 != 0))),
        }
        row["fraction"] = row["zeroed"] / row["n"]
        if new_b is not None:
            b0, b1 = old.biases[l], new_b[l]
            row["bias_zeroed"] = int(np.count_nonzero(b1 == 0))
            row["bias_rounded"] = int(np.count_nonzero((b1 == 0) & (b0 != 0)))
        rows.append(row)
    return rows


def _totals(rows: list[dict], **extra) -> dict:
    n = sum(r["n"] for r in rows)
    zeroed = sum(r["zeroed"] for r in rows)
    return {**extra, "n": n, "zeroed": zeroed, "fraction": zeroed / n,
            "rounded": sum(r["rounded"] for r in rows), "layers": rows}


def _check_net(net) -> None:
    if not isinstance(net, Network):
        raise ValueError(
            f"expected an nnmiplib Network, got {type(net).__name__}; wrap your weights with Network(weights, biases)"
        )


def round_weights(net: Network, eps: float, biases: bool = False) -> tuple[Network, dict]:
    """Algorithm 2 (Rounder): set every weight with |w| ≤ ε to zero.

    Parameters
    ----------
    net : Network
    eps : float
        The rounding radius ε ≥ 0 (ε = 0 zeroes nothing new; exact zeros stay zero).
    biases : bool
        Also round biases with |b| ≤ ε (default False: biases are never rounded, SPEC §6).

    Returns
    -------
    (Network, dict)
        The rounded copy (named ``"<name>-eps<ε>"``) and the statistics described in the
        module docstring (``stats["eps"] = ε``).

    Raises
    ------
    ValueError
        If ε is not a finite real number ≥ 0, or ``biases`` not a bool.
    """
    _check_net(net)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite real number >= 0 (the rounding radius ε), got {eps!r}")
    if not isinstance(biases, (bool, np.bool_)):
        raise ValueError(f"biases must be True or False (also round biases?), got {biases!r}")
    eps = float(eps)
    new_w = [np.where(np.abs(w) <= eps, 0.0, w) for w in net.weights]
    new_b = [np.where(np.abs(b) <= eps, 0.0, b) for b in net.biases] if biases else list(net.biases)
    name = f"{net.name}-eps{eps:g}" if net.name else None
    out = net.with_parameters(new_w, new_b, name=name)
    rows = _layer_rows(net, new_w, new_b if biases else None)
    return out, _totals(rows, eps=eps, biases=bool(biases))


def prune_fraction(net: Network, p: float) -> tuple[Network, dict]:
    """Zero exactly ⌊p·n⌋ of the n weights of ``net``, smallest |w| first (thesis §4.3.2).

    All weight matrices (output layer included) are pooled and sorted by
    (|w|, layer, row-major index) with a stable sort, so one global threshold applies and
    ties are broken deterministically. Biases are untouched.

    Parameters
    ----------
    net : Network
    p : float
        Fraction in [0, 1] of the weights to zero.

    Returns
    -------
    (Network, dict)
        The pruned copy (named ``"<name>-p<p>"``) and statistics as in the module
        docstring, plus ``p``, ``k`` (= ⌊p·n⌋ weights selected) and ``threshold`` (the
        largest |w| selected; NaN when k = 0).

    Raises
    ------
    ValueError
        If p is not a real number in [0, 1].
    """
    _check_net(net)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or not 0 <= p <= 1:
        raise ValueError(f"p must be a real number in [0, 1] (the fraction of weights to zero), got {p!r}")
    p = float(p)
    mags = np.concatenate([np.abs(w).ravel() for w in net.weights])
    n = mags.size
    # ⌊p·n⌋ with p read as the decimal it prints as (0.29·100 = 29, not 28.999…)
    k = math.floor(Fraction(str(p)) * n)
    order = np.argsort(mags, kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[:k]] = True
    new_w, start = [], 0
    for w in net.weights:
        m = mask[start : start + w.size].reshape(w.shape)
        new_w.append(np.where(m, 0.0, w))
        start += w.size
    name = f"{net.name}-p{p:g}" if net.name else None
    out = net.with_parameters(new_w, None, name=name)
    thr = float(mags[order[k - 1]]) if k > 0 else float("nan")
    return out, _totals(_layer_rows(net, new_w), p=p, k=int(k), threshold=thr)
