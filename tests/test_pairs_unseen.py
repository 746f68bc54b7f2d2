"""Pairs no other test uses: trained nets (seeds the book never trains) against copies made by
pruning rules the library does not ship (random masks, per-layer magnitude, whole neurons,
uniform quantisation) and against an independently trained net of the same shape.

On 2-input nets every answer is checked against a 401 × 401 grid of the input box: the
difference bounds contain every grid point, ``max_logit_change``'s dual bound lies above the
grid's maximum and its point reproduces in float64, ``top1_equivalent`` never proves a pair
equivalent that the grid sees disagree and every witness re-checks. On an MNIST-size net the
same answers are checked against sampling and PGD."""

from __future__ import annotations

import numpy as np
import pytest

import nnmiplib as nm
from nnmiplib import queries as Q
from nnmiplib.bounds import difference_bounds
from nnmiplib.queries.pairs import disagreement

G = np.linspace(0, 1, 401)
X = np.array(np.meshgrid(G, G)).reshape(2, -1).T
UNIT = nm.domains.unit_box(2)


def toy_data(seed, n=3000):
    """Four classes in the unit square: quadrants bent by a sine, with 5 % label noise."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2)).astype(np.float32)
    y = (2 * (x[:, 0] > 0.5 + 0.15 * np.sin(6 * x[:, 1])) + (x[:, 1] > 0.5)).astype(np.int64)
    flip = rng.random(n) < 0.05
    y[flip] = rng.integers(0, 4, flip.sum())
    return (x[:2500], y[:2500]), (x[2500:], y[2500:])


def trained(seed, hidden=(12, 10), reg="l1", epochs=25):
    net, hist = nm.train.train_mlp(hidden=hidden, reg=reg, lam=2e-4, epochs=epochs, batch_size=64, lr=1e-2,
                                   seed=seed, data=toy_data(seed), progress=False, name=f"toy-{seed}")
    assert hist["val_acc"][-1] > 0.6  # it learned the task: a trained net, not a random one
    return net


# ------------------------------------------------------------------ pruning rules the library does not ship
def random_mask(net, p, seed=0):
    rng = np.random.default_rng(seed)
    return net.with_parameters([np.where(rng.random(w.shape) < p, 0.0, w) for w in net.weights], None)


def per_layer_magnitude(net, p):
    out = []
    for w in net.weights:
        k = int(p * w.size)
        thr = np.sort(np.abs(w).ravel())[k - 1] if k else -1.0
        out.append(np.where(np.abs(w) <= thr, 0.0, w))
    return net.with_parameters(out, None)


def drop_neurons(net, p):
    """Remove the fraction ``p`` of each hidden layer's neurons with the smallest outgoing L1
    norm: their row, bias and outgoing column become 0 (the shape stays)."""
    W, B = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    for l in range(len(W) - 1):
        k = int(p * W[l].shape[0])
        gone = np.argsort(np.abs(W[l + 1]).sum(0), kind="stable")[:k]
        W[l][gone], B[l][gone], W[l + 1][:, gone] = 0.0, 0.0, 0.0
    return net.with_parameters(W, B)


def quantise(net, bits):
    """Uniform symmetric quantisation of every weight matrix to 2^bits − 1 levels."""
    out = []
    for w in net.weights:
        step = np.abs(w).max() / (2 ** (bits - 1) - 1)
        out.append(np.round(w / step) * step)
    return net.with_parameters(out, None)


def copies(net, seed):
    return {"random 50 %": random_mask(net, 0.5, seed), "per-layer 60 %": per_layer_magnitude(net, 0.6),
            "neurons 30 %": drop_neurons(net, 0.3), "4-bit": quantise(net, 4), "3-bit": quantise(net, 3),
            "other seed": trained(seed + 100)}


@pytest.fixture(scope="module", params=[21, 22])
def family(request):
    net = trained(request.param)
    return net, copies(net, request.param)


# ------------------------------------------------------------------ checks against the grid
def test_difference_bounds_contain_the_grid(family):
    net, others = family
    for name, other in others.items():
        db = difference_bounds(net, other, UNIT)
        assert db.violation(net, other, X) <= 0.0, name
        d = net.forward(X) - other.forward(X)
        assert np.all(db.lower[-1] <= d.min(0)) and np.all(d.max(0) <= db.upper[-1]), name


def test_max_logit_change_against_the_grid(family):
    net, others = family
    for name, other in others.items():
        gmax = np.abs(net.forward(X) - other.forward(X)).max()
        r = Q.max_logit_change(net, other, UNIT, bounds_method="crown", time_limit=60)
        assert r.status == "optimal" and r.verified, name
        assert r.objective == pytest.approx(np.abs(net.forward(r.x) - other.forward(r.x)).max(), abs=1e-12), name
        assert r.objective >= gmax - 1e-7 and r.dual_bound >= gmax, name
        assert r.dual_bound - r.objective <= 1e-4 * (1 + r.objective), name


@pytest.mark.parametrize("engine", ["auto", "mip"])
def test_top1_equivalent_against_the_grid(family, engine):
    net, others = family
    decided_unequal = 0
    for name, other in others.items():
        g = disagreement(net.forward(X), other.forward(X))
        r = Q.top1_equivalent(net, other, UNIT, bounds_method="crown", time_limit=60, engine=engine)
        assert r.status == "decided" and r.dual_bound >= g.max() - 1e-12, name
        if r.extra["equivalent"]:
            assert g.max() < r.extra["tau"], name
        else:
            decided_unequal += 1
            assert r.verified and r.objective >= r.margin, name
            assert r.objective == pytest.approx(float(disagreement(net.forward(r.x[None]),
                                                                   other.forward(r.x[None]))[0]), abs=0), name
        if g.max() >= 1e-3:
            assert r.extra["equivalent"] is False, name
    # on the whole unit box these copies change some decision: the test exercises both answers
    assert decided_unequal >= 1


def test_top1_equivalent_on_small_balls_against_the_grid(family):
    """Balls around training-like points: proofs of equivalence must hold on the ball's grid."""
    net, others = family
    rng = np.random.default_rng(0)
    proven = 0
    for name, other in others.items():
        for x0 in rng.random((3, 2)):
            dom = nm.domains.linf_ball(x0, 0.02, clip=(0.0, 1.0))
            pts = dom.lo + (dom.hi - dom.lo) * X
            g = disagreement(net.forward(pts), other.forward(pts))
            r = Q.top1_equivalent(net, other, dom, bounds_method="crown", time_limit=30)
            assert r.status == "decided", name
            if r.extra["equivalent"]:
                proven += 1
                assert g.max() < r.extra["tau"], (name, x0)
            else:
                assert r.verified and dom.contains(r.x), (name, x0)
            if g.max() >= 1e-3:
                assert r.extra["equivalent"] is False, (name, x0)
    assert proven >= 1


# ------------------------------------------------------------------ an MNIST-size pair
@pytest.fixture(scope="module")
def mnist_pair():
    from nnmiplib.data import load_mnist

    data = load_mnist()
    net, _ = nm.train.train_mlp(hidden=(48, 48), reg="l1", lam=2e-4, epochs=2, seed=31, n_train=6000, data=data,
                                progress=False, name="mnist-31")
    return net, random_mask(net, 0.5, seed=31), data[2][0][:3]


def test_mnist_pair_with_a_random_mask(mnist_pair):
    net, other, images = mnist_pair
    rng = np.random.default_rng(1)
    for x0 in images:
        dom = nm.domains.linf_ball(np.asarray(x0, float), 0.02, clip=(0.0, 1.0))
        S = dom.sample(3000, rng)
        d = net.forward(S) - other.forward(S)
        db = difference_bounds(net, other, dom)
        assert db.violation(net, other, S) <= 0.0
        r = Q.max_logit_change(net, other, dom, time_limit=30)
        assert r.dual_bound >= np.abs(d).max() and r.verified
        assert r.objective == pytest.approx(np.abs(net.forward(r.x) - other.forward(r.x)).max(), abs=1e-12)
        t = Q.top1_equivalent(net, other, dom, time_limit=60)
        g = disagreement(net.forward(S), other.forward(S))
        assert t.status == "decided"
        if t.extra["equivalent"]:
            assert g.max() < t.extra["tau"]
        else:
            assert t.verified and dom.contains(t.x)
