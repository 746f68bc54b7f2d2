"""The branch and bound over a network and its copy (nnmiplib.bab.pair): the stacked network,
the links of each neuron to its copy (relax.imply) against a grid, and the search's answers
with and without the links against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from random_nets import rnet

import nnmiplib as nm
from nnmiplib.bab import relax as R
from nnmiplib.bab import solve_pair, stack
from nnmiplib.bab.pair import pair_links
from nnmiplib.bounds import crown_bounds, difference_bounds

G = np.linspace(0, 1, 301)
X = np.array(np.meshgrid(G, G)).reshape(2, -1).T
UNIT = nm.domains.unit_box(2)
K = 3


def pair(seed, p=0.3):
    net = rnet([2, 14, 10, K], seed, scale=3.0)
    return net, nm.prune.prune_fraction(net, p)[0]


def test_stack_computes_both_networks():
    n1, n2 = pair(0)
    s = stack(n1, n2)
    assert np.allclose(s.forward(X), np.hstack([n1.forward(X), n2.forward(X)]), atol=1e-12)
    with pytest.raises(ValueError, match="one shape"):
        stack(n1, rnet([2, 5, K], 1, scale=3.0))


@pytest.mark.parametrize("seed", range(3))
def test_linked_bounds_of_every_node_hold_on_the_grid(seed):
    """Random phase decisions on the stacked pair: after ``imply`` each node's bounds contain
    every grid point that satisfies the node's decisions, and a node called empty has none."""
    n1, n2 = pair(seed)
    b1, b2 = crown_bounds(n1, UNIT), crown_bounds(n2, UNIT)
    db = difference_bounds(n1, n2, UNIT, bounds=(b1, b2))
    s = stack(n1, n2)
    L = n1.depth
    lower = [np.concatenate([b1.lower[k], b2.lower[k]]) for k in range(L)]
    upper = [np.concatenate([b1.upper[k], b2.upper[k]]) for k in range(L)]
    layers = R.Layers.build(s, lower, upper, UNIT.lo, UNIT.hi, np.eye(2 * K), np.zeros(2 * K))
    links = layers.reduce_links(pair_links(n1.hidden_sizes, db.lower[:L], db.upper[:L]))
    rng = np.random.default_rng(seed)
    N = 200
    root = R.NodeBatch.root(layers, N)
    split = []
    for sz in layers.sizes:
        sp = rng.choice([-1, 0, 0, 1], size=(N, sz)).astype(np.int8)
        split.append(torch.as_tensor(sp))
    nodes = R.NodeBatch(split, root.alpha, root.beta)
    out, empty = R.imply(layers, nodes, links)
    P = [p[:, kp] for p, kp in zip(s.preactivations(X)[:L], layers.keep)]
    tightened = 0
    for n in range(N):
        inside = np.ones(len(X), bool)
        for k in range(L):
            sp = split[k][n].numpy()
            inside &= np.all((P[k] >= 0) | (sp != 1), axis=1) & np.all((P[k] <= 0) | (sp != -1), axis=1)
        if empty[n]:
            assert not inside.any()
            continue
        for k in range(L):
            lo, up = out.lower[k][n].numpy(), out.upper[k][n].numpy()
            assert np.all(P[k][inside] >= lo) and np.all(P[k][inside] <= up)
            tightened += int(np.sum(lo > layers.lower[k].numpy()) + np.sum(up < layers.upper[k].numpy()))
    assert tightened > 0  # the links did something


@pytest.mark.parametrize("seed", range(2))
def test_max_logit_change_by_the_pair_search_matches_the_grid(seed):
    net = rnet([2, 10, 8, K], seed, scale=3.0)
    n1, n2 = net, nm.prune.prune_fraction(net, 0.3)[0]
    b = (crown_bounds(n1, UNIT), crown_bounds(n2, UNIT))
    db = difference_bounds(n1, n2, UNIT, bounds=b)
    C = np.vstack([np.hstack([np.eye(K), -np.eye(K)]), np.hstack([-np.eye(K), np.eye(K)])])
    gmax = np.abs(n1.forward(X) - n2.forward(X)).max()
    vals = []
    for diff in (None, db):
        r = solve_pair(n1, n2, UNIT.lo, UNIT.hi, C, np.zeros(2 * K), bounds=b, difference=diff, time_limit=60,
                       rel_gap=1e-5)
        assert r.status == "optimal" and r.stats["links"] is (diff is not None)
        assert r.dual_bound >= gmax and r.value <= r.dual_bound
        assert r.value == pytest.approx(np.abs(n1.forward(r.x) - n2.forward(r.x)).max(), abs=1e-12)
        vals.append(r.value)
    assert vals[0] == pytest.approx(vals[1], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("seed", range(2))
def test_pair_decisions_agree_with_the_grid(seed):
    """Can net 1 answer class a while net 2 answers b (both by a margin τ)? One group of rows:
    every answer agrees with the grid, and the dual bound holds whether or not it decided."""
    net = rnet([2, 8, 6, K], seed, scale=3.0)
    n1, n2 = net, nm.prune.prune_fraction(net, 0.5)[0]
    b = (crown_bounds(n1, UNIT), crown_bounds(n2, UNIT))
    db = difference_bounds(n1, n2, UNIT, bounds=b)
    Y1, Y2 = n1.forward(X), n2.forward(X)
    tau, decided = 1e-3, 0
    for a, c in itertools.permutations(range(K), 2):
        rows = [np.concatenate([np.eye(K)[a] - np.eye(K)[k], np.zeros(K)]) for k in range(K) if k != a]
        rows += [np.concatenate([np.zeros(K), np.eye(K)[c] - np.eye(K)[k]]) for k in range(K) if k != c]
        C = np.array(rows)
        F = (np.hstack([Y1, Y2]) @ C.T).min(1)
        r = solve_pair(n1, n2, UNIT.lo, UNIT.hi, C, np.zeros(len(C)), bounds=b, difference=db,
                       groups=np.zeros(len(C), dtype=int), threshold=tau, time_limit=10)
        assert r.dual_bound >= F.max() - 1e-12
        if r.status == "violated":
            assert float((np.concatenate([n1.forward(r.x), n2.forward(r.x)]) @ C.T).min()) > tau
        elif r.status == "proved":
            assert F.max() <= tau
        decided += r.status in ("violated", "proved")
        if F.max() > 2 * tau:
            assert r.status == "violated"
    assert decided >= 3
