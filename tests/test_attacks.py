"""Attacks (nnmiplib.queries.attacks): gradients, objectives, projected gradient on a box."""


import numpy as np
import pytest
from random_nets import rnet

import nnmiplib as nm
from nnmiplib.queries import attacks as atk


def test_input_gradient_matches_finite_differences():
    net = rnet([5, 7, 6, 4], 0)
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(6, 5))
    g = rng.normal(size=(6, 4))
    grad = atk.input_gradient(net, X, g)
    h = 1e-6
    for i in range(5):
        e = np.zeros(5)
        e[i] = h
        fd = ((net.forward(X + e) - net.forward(X - e)) * g).sum(1) / (2 * h)
        assert np.allclose(grad[:, i], fd, atol=1e-5)


@pytest.mark.parametrize("make", ["l1", "maxdiff", "margin", "maxout"])
def test_objective_values_and_gradients(make):
    n1, n2 = rnet([3, 6, 4], 2), rnet([3, 5, 4], 3)
    rng = np.random.default_rng(4)
    X = rng.uniform(0, 1, size=(5, 3))
    y0 = n1.probabilities(np.full(3, 0.5))
    objs = {"l1": (atk.obj_softmax_l1(y0), [n1]), "maxdiff": (atk.obj_maxdiff(), [n1, n2]),
            "margin": (atk.obj_margin(1), [n1]), "maxout": (atk.obj_maxout(0, 2, 0.1), [n1, n2])}
    f, nets = objs[make]
    logits = [n.forward(X) for n in nets]
    v, grads = f(logits)
    if make == "l1":
        assert np.allclose(v, np.abs(n1.probabilities(X) - y0).sum(1))
    if make == "maxdiff":
        assert np.allclose(v, np.abs(n1.probabilities(X) - n2.probabilities(X)).sum(1))
    if make == "margin":
        a = logits[0]
        assert np.allclose(v, np.max(np.delete(a, 1, axis=1), axis=1) - a[:, 1])
    # directional finite difference in logit space
    d = [rng.normal(size=l.shape) for l in logits]
    h = 1e-7
    vp, _ = f([l + h * dd for l, dd in zip(logits, d)])
    vm, _ = f([l - h * dd for l, dd in zip(logits, d)])
    fd = (vp - vm) / (2 * h)
    an = sum((g * dd).sum(1) for g, dd in zip(grads, d))
    assert np.allclose(fd, an, atol=1e-4)


def test_pgd_stays_in_box_and_improves_on_sampling():
    net = rnet([4, 10, 3], 5)
    dom = nm.domains.box(np.zeros(4), np.full(4, 0.5))
    obj = atk.obj_margin(0)
    s = atk.random_search([net], dom, obj, n=20, rng=0)
    p = atk.pgd([net], dom, obj, starts=np.atleast_2d(s.x), steps=50, rng=0)
    assert dom.contains(p.x)
    assert p.value >= s.value - 1e-12
    # the reported value is the objective at the reported point
    assert p.value == pytest.approx(float(obj([net.forward(p.x)[None, :]])[0][0]))
    # on a linear "network" PGD reaches the box corner maximising the margin
    lin = nm.Network([np.array([[1.0, -2.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])], [np.zeros(2)])
    r = atk.attack([lin], dom, atk.obj_margin(1), rng=0)
    assert r.value == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)


def test_feasibility_filter():
    net = rnet([2, 6, 3], 6)
    dom = nm.unit_box(2) if hasattr(nm, "unit_box") else nm.domains.unit_box(2)
    never = atk.attack([net], dom, atk.obj_margin(0), feasible=lambda L: np.zeros(len(L[0]), bool), rng=0)
    assert never.x is None and never.value == -np.inf
