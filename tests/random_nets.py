"""Random ReLU networks for the tests (He-like scale, biases N(0, 0.3²))."""

from __future__ import annotations

import itertools

import numpy as np

import nnmiplib as nm


def rnet(sizes, seed, scale: float = 2.0) -> nm.Network:
    """A network with layer sizes ``sizes``: weights N(0, scale²/n_in), drawn layer by layer,
    then the biases."""
    rng = np.random.default_rng(seed)
    W = [rng.normal(size=(o, i)) * scale / np.sqrt(i) for i, o in itertools.pairwise(sizes)]
    return nm.Network(W, [rng.normal(size=o) * 0.3 for o in sizes[1:]])


def assert_search_reaches_the_grid_maximum(net, **solve_kw):
    """:func:`nnmiplib.bab.solve` on ``max y_0 − y_1`` over the unit square (``net`` with 2 inputs,
    CROWN bounds) closes to the maximum over a 601×601 grid and reports a point it reproduces."""
    import pytest

    from nnmiplib.bab import group_value, solve
    from nnmiplib.bounds import crown_bounds

    dom = nm.domains.unit_box(2)
    b = crown_bounds(net, dom)
    C = np.zeros((1, net.n_outputs))
    C[0, :2] = 1.0, -1.0
    d = np.array([0.0])
    g = np.linspace(0.0, 1.0, 601)
    X = np.array(np.meshgrid(g, g)).reshape(2, -1).T
    brute = float(group_value(net.forward(X) @ C.T + d, np.zeros(1, dtype=int), 1).max())
    r = solve(net, dom.lo, dom.hi, C, d, lower=b.lower[:-1], upper=b.upper[:-1], time_limit=60, rel_gap=1e-6,
              abs_gap=1e-7, **solve_kw)
    assert r.status == "optimal"
    assert r.dual_bound >= brute - 1e-9
    assert r.value >= brute - 1e-3
    assert r.value == pytest.approx(float((net.forward(r.x[None]) @ C.T + d).max()), abs=1e-12)


def softmax_instance(sizes, seed):
    """PV's softmax form on the unit square around its centre for ``rnet(sizes, seed)`` (2 inputs):
    ``(net, box, bounds, y0, c, C, d)``: its CROWN bounds, the reference probabilities ``y0``, the
    reference class ``c`` and the rows of :class:`nnmiplib.bab.SoftmaxL1Objective`."""
    from scipy.special import softmax

    from nnmiplib.bab import SoftmaxL1Objective
    from nnmiplib.bounds import crown_bounds

    net = rnet(sizes, seed)
    dom = nm.domains.unit_box(2)
    y0 = softmax(net.forward(np.array([0.5, 0.5])))
    c = int(np.argmax(y0))
    return (net, dom, crown_bounds(net, dom), y0, c, *SoftmaxL1Objective.rows(net.n_outputs, c))


def two_row_instance():
    """Two objective rows (``y_0 − y_1``, ``y_2 − y_1``) of ``rnet([2, 10, 10, 10, 3], 4)`` on the unit
    square: ``(net, box, interval bounds, C, d)``; the root leaves both rows open."""
    from nnmiplib.bounds import interval_bounds

    net = rnet([2, 10, 10, 10, 3], 4)
    dom = nm.domains.unit_box(2)
    C, d = np.array([[1.0, -1.0, 0.0], [0.0, -1.0, 1.0]]), np.zeros(2)
    return net, dom, interval_bounds(net, dom), C, d
