"""Cheap primal heuristics: random sampling and projected gradient ascent on a box.

The thesis's solver often found no feasible point (F4.5, SPEC §5 "primal heuristics"),
and HiGHS is weaker still, so every query first looks for good inputs with these
attacks and hands the best one to the solver as a MIP start. Everything is numpy
float64 (no torch): back-propagation through a ReLU network is a few matrix products.

An *objective* here is a function ``f(logits_list) -> (values, grads)`` taking one
``(n, K_i)`` logit batch per network and returning the ``(n,)`` values and, per
network, ``dvalue/dlogits`` of shape ``(n, K_i)``. Larger is better.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..domains import Box
from ..network import Network, softmax

__all__ = [
    "AttackResult",
    "attack",
    "input_gradient",
    "obj_margin",
    "obj_maxdiff",
    "obj_maxout",
    "obj_softmax_l1",
    "pgd",
    "random_search",
]

log = logging.getLogger(__name__)

Objective = Callable[[list], tuple]


@dataclass
class AttackResult:
    x: np.ndarray | None          # best input (None if no input met the feasibility test)
    value: float                  # its objective value (−inf if none)
    source: str                   # "sampling" or "pgd"
    evaluations: int


def input_gradient(net: Network, X: np.ndarray, g_logits: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. the inputs of ``Σ g_logits · logits(X)`` (ReLU subgradient 0 at 0)."""
    pre = net.preactivations(np.atleast_2d(X))
    g = np.asarray(g_logits, dtype=np.float64)
    for l in range(net.depth, -1, -1):
        g = g @ net.weights[l]
        if l > 0:
            g = g * (pre[l - 1] > 0)
    return g


def _softmax_vjp(p: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Jᵀv for p = softmax(a): p ⊙ (v − ⟨p, v⟩)."""
    return p * (v - (p * v).sum(axis=1, keepdims=True))


def obj_softmax_l1(y0: np.ndarray) -> Objective:
    """‖softmax(a) − y₀‖₁ for one network, the (PV) objective."""
    y0 = np.asarray(y0, dtype=np.float64)

    def f(logits):
        p = softmax(logits[0])
        d = p - y0
        return np.abs(d).sum(axis=1), [_softmax_vjp(p, np.sign(d))]

    return f


def obj_maxdiff(n_nets: int = 2) -> Objective:
    """‖softmax(a₁) − softmax(a₂)‖₁ (maxdiff) for two networks."""

    def f(logits):
        p1, p2 = softmax(logits[0]), softmax(logits[1])
        s = np.sign(p1 - p2)
        return np.abs(p1 - p2).sum(axis=1), [_softmax_vjp(p1, s), _softmax_vjp(p2, -s)]

    return f


def obj_margin(c: int) -> Objective:
    """max_{k≠c} a_k − a_c: positive means the class changed (verifiers' linear form)."""

    def f(logits):
        a = np.array(logits[0], dtype=np.float64)
        b = a.copy()
        b[:, c] = -np.inf
        k = np.argmax(b, axis=1)
        rows = np.arange(len(a))
        g = np.zeros_like(a)
        g[rows, k] = 1.0
        g[:, c] -= 1.0
        return a[rows, k] - a[:, c], [g]

    return f


def _class_margin(a: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """a_c − max_{k≠c} a_k and its gradient."""
    b = a.copy()
    b[:, c] = -np.inf
    k = np.argmax(b, axis=1)
    rows = np.arange(len(a))
    g = np.zeros_like(a)
    g[:, c] = 1.0
    g[rows, k] -= 1.0
    return a[:, c] - a[rows, k], g


def obj_maxout(c1: int, c2: int, tau: float = 0.0, penalty: float = 100.0) -> Objective:
    """a₁,C₁ + a₂,C₂ minus ``penalty`` × the violation of the maxout class constraints."""

    def f(logits):
        a1, a2 = np.asarray(logits[0], float), np.asarray(logits[1], float)
        m1, g1m = _class_margin(a1, c1)
        m2, g2m = _class_margin(a2, c2)
        v = a1[:, c1] + a2[:, c2]
        g1 = np.zeros_like(a1)
        g1[:, c1] = 1.0
        g2 = np.zeros_like(a2)
        g2[:, c2] = 1.0
        viol1, viol2 = m1 - tau < 0, m2 - tau < 0
        v = v + penalty * (np.minimum(m1 - tau, 0) + np.minimum(m2 - tau, 0))
        g1 = g1 + penalty * viol1[:, None] * g1m
        g2 = g2 + penalty * viol2[:, None] * g2m
        return v, [g1, g2]

    return f


def _evaluate(nets: Sequence[Network], X: np.ndarray, objective: Objective):
    logits = [n.forward(X) for n in nets]
    return logits, objective(logits)


def random_search(nets: Sequence[Network], domain: Box, objective: Objective, *, n: int = 256,
                  rng=None, feasible: Callable[[list], np.ndarray] | None = None,
                  extra: np.ndarray | None = None) -> AttackResult:
    """Evaluate ``n`` uniform samples of the box (plus its centre and ``extra`` rows)."""
    rng = np.random.default_rng(rng)
    X = np.vstack([domain.center[None, :], domain.sample(n, rng)] + ([np.atleast_2d(extra)] if extra is not None else []))
    X = domain.clip(X)
    logits, (vals, _) = _evaluate(nets, X, objective)
    vals = np.asarray(vals, dtype=np.float64)
    if feasible is not None:
        vals = np.where(feasible(logits), vals, -np.inf)
    i = int(np.argmax(vals))
    if not np.isfinite(vals[i]):
        return AttackResult(None, -np.inf, "sampling", len(X))
    return AttackResult(X[i].copy(), float(vals[i]), "sampling", len(X))


def pgd(nets: Sequence[Network], domain: Box, objective: Objective, *, starts: np.ndarray | None = None,
        restarts: int = 8, steps: int = 60, step_size: float = 0.1, rng=None,
        feasible: Callable[[list], np.ndarray] | None = None) -> AttackResult:
    """Projected signed-gradient ascent on the box, from ``starts`` or random points.

    The step is ``step_size × width`` per coordinate and decays linearly to a tenth;
    the best iterate of every restart (by value, among ``feasible`` ones) is kept.
    """
    rng = np.random.default_rng(rng)
    X = domain.sample(restarts, rng) if starts is None else domain.clip(np.atleast_2d(starts).astype(np.float64))
    width = domain.width
    best_x, best_v, evals = None, -np.inf, 0
    for t in range(steps + 1):
        logits, (vals, grads) = _evaluate(nets, X, objective)
        evals += len(X)
        vals = np.asarray(vals, dtype=np.float64)
        ok = feasible(logits) if feasible is not None else np.ones(len(X), bool)
        cand = np.where(ok, vals, -np.inf)
        i = int(np.argmax(cand))
        if cand[i] > best_v:
            best_v, best_x = float(cand[i]), X[i].copy()
        if t == steps:
            break
        g = sum(input_gradient(n, X, gl) for n, gl in zip(nets, grads))
        eta = step_size * (1.0 - 0.9 * t / max(steps, 1))
        X = domain.clip(X + eta * width * np.sign(g))
    return AttackResult(best_x, best_v, "pgd", evals)


def attack(nets: Sequence[Network], domain: Box, objective: Objective, *, n_samples: int = 256,
           restarts: int = 8, steps: int = 60, rng=0, feasible=None, extra: np.ndarray | None = None) -> AttackResult:
    """Sampling, then PGD from the best samples; returns the better of the two."""
    rng = np.random.default_rng(rng)
    s = random_search(nets, domain, objective, n=n_samples, rng=rng, feasible=feasible, extra=extra)
    starts = domain.sample(restarts, rng)
    if s.x is not None:
        starts[0] = s.x
    if extra is not None:
        starts = np.vstack([starts, np.atleast_2d(extra)])
    p = pgd(nets, domain, objective, starts=starts, steps=steps, rng=rng, feasible=feasible)
    best = p if p.value > s.value else s
    best.evaluations = s.evaluations + p.evaluations
    log.debug("attack: sampling %.6g, pgd %.6g", s.value, p.value)
    return best
