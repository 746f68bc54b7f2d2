"""Activation bounds of every neuron: :func:`compute_bounds` and the cheap methods (thesis §2).

Every method returns a :class:`~nnmiplib.bounds.Bounds`. Methods, loosest first:

- ``naive`` — Proposition 2.1; ``prop22`` — Proposition 2.2 layer by layer;
- ``interval`` — interval arithmetic; ``crown`` — linear-relaxation back-substitution
  (DeepPoly / CROWN), see :mod:`nnmiplib.bounds.cheap`; ``alpha`` — CROWN with the lower
  ReLU slopes optimised by projected gradient (:mod:`nnmiplib.bounds.alpha`);
- ``lp`` / ``milp`` — Algorithm 3 with relax = 1 / 0 (:func:`nnmiplib.bounds.bounder.solver_bounds`),
  seeded with the intersection of naive, interval and crown.
"""

from __future__ import annotations

import logging
import time as _time

import numpy as np

from ..domains import Box, box
from ..network import Network
from .alpha import alpha_bounds
from .base import Bounds, join_sources
from .cheap import crown_arrays, interval_arrays, naive_arrays, prop22_arrays, prop22_layer

__all__ = [
    "METHODS",
    "Bounds",
    "cheap_bounds",
    "compute_bounds",
    "crown_bounds",
    "interval_bounds",
    "naive_bounds",
    "prop22_bounds",
    "prop22_layer",
    "ro_gap",
]

log = logging.getLogger(__name__)
METHODS = ("naive", "prop22", "interval", "crown", "alpha", "lp", "milp")


# ---------------------------------------------------------------- inputs
def _check(net, domain) -> tuple[Network, Box]:
    if not isinstance(net, Network):
        raise ValueError(f"net must be an nnmiplib.Network, got {type(net).__name__}; wrap weights with Network(W, b)")
    if isinstance(domain, Box):
        dom = domain
    elif isinstance(domain, (tuple, list)) and len(domain) == 2:
        dom = box(*domain)  # validates NaN / inverted / empty
    else:
        raise ValueError(f"domain must be a Box or a (lo, hi) pair, got {type(domain).__name__}")
    dom.check_dim(net.n_inputs)
    return net, dom


def _make(net, dom, lowers, uppers, method, t0, **stats) -> Bounds:
    src = [np.full(a.size, method) for a in lowers]
    times = [np.zeros(a.size) for a in lowers]
    b = Bounds(lowers, uppers, src, times, method, net.digest(), dom, {"total_time": _time.perf_counter() - t0, **stats})
    b.stats["stable"] = b.stable_counts()
    return b


def naive_bounds(net: Network, domain) -> Bounds:
    """Proposition 2.1 (SPEC §2): the same signed bound [−M_l, M_l] for every neuron of a layer."""
    net, dom = _check(net, domain)
    t0 = _time.perf_counter()
    return _make(net, dom, *naive_arrays(net.weights, net.biases, dom.lo, dom.hi), "naive", t0)


def prop22_bounds(net: Network, domain) -> Bounds:
    """Proposition 2.2 (:func:`prop22_layer`) applied layer by layer from the input box."""
    net, dom = _check(net, domain)
    t0 = _time.perf_counter()
    return _make(net, dom, *prop22_arrays(net.weights, net.biases, dom.lo, dom.hi), "prop22", t0)


def interval_bounds(net: Network, domain) -> Bounds:
    """Interval arithmetic, layer by layer (never looser than Prop 2.1)."""
    net, dom = _check(net, domain)
    t0 = _time.perf_counter()
    return _make(net, dom, *interval_arrays(net.weights, net.biases, dom.lo, dom.hi), "interval", t0)


def crown_bounds(net: Network, domain, *, lower_slope="best", unstable_only: bool = False) -> Bounds:
    """DeepPoly/CROWN back-substitution (:func:`nnmiplib.bounds.cheap.crown_arrays`) ∩ interval.

    The source of a neuron's bound is "crown" where back-substitution was tighter than
    interval arithmetic by more than 1e-8·(1 + |v|), else "interval". ``unstable_only``:
    back-substitute only neurons interval arithmetic leaves unstable (the same bounds for
    them and the logits, looser ones for stable neurons; see ``crown_arrays``).
    """
    net, dom = _check(net, domain)
    if not isinstance(unstable_only, bool):
        raise ValueError(f"unstable_only must be True or False, got {unstable_only!r}")
    t0 = _time.perf_counter()
    ilo, ihi = interval_arrays(net.weights, net.biases, dom.lo, dom.hi)
    clo, chi = crown_arrays(net.weights, net.biases, dom.lo, dom.hi, (ilo, ihi), lower_slope, unstable_only)
    b = _make(net, dom, clo, chi, "crown", t0, lower_slope=str(lower_slope), unstable_only=unstable_only)
    tol = lambda v: 1e-8 * (1.0 + np.abs(v))  # ignore gains at the rounding-margin level
    b.source = [join_sources(np.where(cl > il + tol(il), "crown", "interval"), np.where(ch < ih - tol(ih), "crown", "interval"))
                for cl, il, ch, ih in zip(clo, ilo, chi, ihi)]
    return b


def cheap_bounds(net: Network, domain) -> Bounds:
    """Tightest cheap bounds: naive ∩ interval ∩ crown, the seed of the solver-based methods."""
    naive = naive_bounds(net, domain)
    b = naive.intersect(crown_bounds(net, domain))
    b.method = "cheap"
    b.stats["naive_M"] = [float(u[0]) for u in naive.upper]  # Prop 2.1's per-layer bound, for the record
    return b


def compute_bounds(net: Network, domain, method: str = "lp", *, time_limit=None, n_jobs: int = 1,
                   solver: str = "highs", per_neuron_time_limit=None, initial: Bounds | None = None,
                   progress: bool = True, **kw) -> Bounds:
    """Activation bounds of every neuron of ``net`` on ``domain`` (thesis §2, Algorithm 3).

    Parameters
    ----------
    net : Network.
    domain : Box (or a ``(lo, hi)`` pair) with one coordinate per network input (1.8).
    method : "naive" | "prop22" | "interval" | "crown" | "alpha" | "lp" | "milp".
    time_limit, per_neuron_time_limit, n_jobs, solver, progress :
        passed to :func:`nnmiplib.bounds.bounder.solver_bounds` for "lp" / "milp" (ignored otherwise);
        values that mean nothing (e.g. a negative time limit, ``n_jobs=0``) are a ``ValueError``
        for every method, before any work.
    initial : Bounds to start the solver-based methods from; default :func:`cheap_bounds`.
    **kw : extra keyword arguments for the method (e.g. ``lower_slope`` for crown,
        solver options for lp/milp).

    Returns
    -------
    Bounds
    """
    net, dom = _check(net, domain)
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    from .bounder import check_solver_arguments

    # arguments that mean nothing are an error for every method, before any work; the solver
    # and its own parameters are checked only where a solver runs
    solver_args = {k: kw[k] for k in ("time_ratio", "mip_gap", "milp_margin", "min_solve_time", "max_neurons",
                                      "solver_options") if k in kw}
    check_solver_arguments(time_limit=time_limit, per_neuron_time_limit=per_neuron_time_limit, n_jobs=n_jobs,
                           solver=solver if method in ("lp", "milp") else None, zero_time_ok=method not in ("lp", "milp"),
                           **(solver_args if method in ("lp", "milp") else {}))
    if method == "naive":
        return naive_bounds(net, dom)
    if method == "prop22":
        return prop22_bounds(net, dom)
    if method == "interval":
        return interval_bounds(net, dom)
    if method == "crown":
        return crown_bounds(net, dom, **kw)
    if method == "alpha":
        return alpha_bounds(net, dom, **kw)
    from .bounder import solver_bounds  # lazy: needs the solver backends

    if initial is None:
        initial = cheap_bounds(net, dom)
    else:
        initial.check_net(net)
    return solver_bounds(net, dom, relax=(method == "lp"), initial=initial, time_limit=time_limit,
                         per_neuron_time_limit=per_neuron_time_limit, n_jobs=n_jobs, solver=solver,
                         progress=progress, **kw)


def ro_gap(b_lp: Bounds, b_milp: Bounds, which: str = "both") -> list[np.ndarray]:
    """RO gap of SPEC §2: |Bound_LP − Bound_MILP| / (|Bound_MILP| + 1e-10), per neuron.

    Returns
    -------
    list over affine layers: with ``which="both"`` arrays of shape (2, n_l), row 0 the
    gap of the lower bounds and row 1 that of the upper bounds; with ``"lower"`` or
    ``"upper"`` 1-D arrays of that side only.
    """
    if b_lp.net_digest != b_milp.net_digest or b_lp.sizes != b_milp.sizes:
        raise ValueError("ro_gap needs two bounds of the same network (digests or layer sizes differ)")
    if which not in ("both", "lower", "upper"):
        raise ValueError(f"which must be 'both', 'lower' or 'upper', got {which!r}")
    out = []
    for l in range(b_lp.n_layers):
        gl = np.abs(b_lp.lower[l] - b_milp.lower[l]) / (np.abs(b_milp.lower[l]) + 1e-10)
        gu = np.abs(b_lp.upper[l] - b_milp.upper[l]) / (np.abs(b_milp.upper[l]) + 1e-10)
        out.append({"both": np.vstack([gl, gu]), "lower": gl, "upper": gu}[which])
    return out
