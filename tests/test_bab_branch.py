"""Branching of the ReLU branch and bound: pseudocosts learned from the splits made so far."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from random_nets import assert_search_reaches_the_grid_maximum, rnet

import nnmiplib as nm
from nnmiplib.bab import branch, relax
from nnmiplib.bab.search import GroupObjective
from nnmiplib.bounds import crown_bounds


def factor_of(mean_ratio, ratios):
    """The factor :class:`branch.Pseudocosts` should give a neuron with these observed ratios."""
    f = (sum(ratios) + branch.PSEUDOCOST_PRIOR * mean_ratio) / (len(ratios) + branch.PSEUDOCOST_PRIOR)
    return f ** branch.PSEUDOCOST_POWER


def test_pseudocosts_learn_each_neurons_gain_against_its_score():
    pc = branch.Pseudocosts([3, 2])
    assert torch.equal(pc.factor(), torch.ones(5, dtype=torch.float64))  # nothing seen: the score alone
    # node 0 splits neuron 1 of layer 0 on score 1 and both children drop by 2: ratio 2;
    # node 1 splits neuron 0 of layer 1 on score 2, its children drop by 0.5 and 0.125: ratio 0.125;
    # node 2 has no score (nothing to learn from)
    pc.record(torch.tensor([0, 1, 0]), torch.tensor([1, 0, 2]), torch.tensor([1.0, 2.0, 0.0]),
              torch.tensor([5.0, 5.0, 5.0]), torch.tensor([3.0, 3.0, 4.5, 4.875, 1.0, 1.0]))
    mean = (2.0 + 0.125) / 2
    f = pc.factor()
    assert f[1].item() == pytest.approx(factor_of(mean, [2.0]))
    assert f[3].item() == pytest.approx(factor_of(mean, [0.125]))
    for unseen in (0, 2, 4):
        assert f[unseen].item() == pytest.approx(mean ** branch.PSEUDOCOST_POWER)
    assert f[1] > f[0] > f[3]


def test_pseudocosts_count_a_drop_down_to_the_settling_level_and_cap_a_ratio():
    pc = branch.Pseudocosts([2])
    # parent 5, children −3 and 1 with level 0: the drops count as 5 and 4, not 8 and 4
    pc.record(torch.tensor([0]), torch.tensor([0]), torch.tensor([1.0]), torch.tensor([5.0]),
              torch.tensor([-3.0, 1.0]), level=0.0)
    assert pc.total[0].item() == pytest.approx(min(np.sqrt(5.0 * 4.0), branch.PSEUDOCOST_CAP))
    pc = branch.Pseudocosts([2])
    pc.record(torch.tensor([0]), torch.tensor([1]), torch.tensor([1e-9]), torch.tensor([5.0]),
              torch.tensor([1.0, 1.0]))
    assert pc.total[1].item() == branch.PSEUDOCOST_CAP  # one lucky split does not take over
    # a child above its parent (rounding) is no gain, not a negative one
    pc.record(torch.tensor([0]), torch.tensor([0]), torch.tensor([1.0]), torch.tensor([5.0]),
              torch.tensor([5.5, 2.0]))
    assert pc.total[0].item() == 0.0 and pc.count[0].item() == 1


def test_choose_follows_the_learned_factor_and_reports_the_raw_score():
    net = rnet([3, 12, 12, 4], 7)
    dom = nm.domains.unit_box(3)
    b = crown_bounds(net, dom)
    layers = relax.Layers.build(net, b.lower[:-1], b.upper[:-1], dom.lo, dom.hi, np.eye(4)[:1], np.zeros(1))
    root = relax.NodeBatch.root(layers)
    ub, root = relax.optimise(layers, root, iterations=5)
    obj = GroupObjective(np.zeros(1, dtype=int))
    _, _, lams = relax.bound(layers, root, keep_lambdas=True, need_mag=False)
    raw = torch.cat(branch.scores(layers, root, lams, obj.worst(ub)), 1)[0]
    order = torch.argsort(raw, descending=True)
    first, second = int(order[0]), int(order[1])
    assert torch.isfinite(raw[second]) and raw[second] > 0, "the test needs two free neurons"
    offsets = np.cumsum([0, *layers.sizes])

    def where(flat):
        k = int(np.searchsorted(offsets, flat, side="right") - 1)
        return k, flat - int(offsets[k])

    layer, index, has, score = branch.choose(layers, root, ub, obj, 1)
    assert (int(layer[0]), int(index[0])) == where(first) and bool(has[0])
    assert score[0].item() == pytest.approx(raw[first].item())
    # the best-scored neuron has gained nothing when split, the second has gained a lot
    pc = branch.Pseudocosts(layers.sizes)
    for flat, drop in ((first, 0.0), (second, 1.0)):
        k, i = where(flat)
        for _ in range(20):
            pc.record(torch.tensor([k]), torch.tensor([i]), torch.tensor([raw[flat].item()]), torch.tensor([1.0]),
                      torch.tensor([1.0 - drop, 1.0 - drop]))
    layer, index, has, score = branch.choose(layers, root, ub, obj, 1, pc)
    assert (int(layer[0]), int(index[0])) == where(second)
    assert score[0].item() == pytest.approx(raw[second].item())  # the score itself, not the weighted one


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("pseudocosts", [True, False])
def test_search_reaches_the_brute_force_maximum_with_or_without_pseudocosts(seed, pseudocosts):
    assert_search_reaches_the_grid_maximum(rnet([2, 10, 10, 8, 4], 10 + seed), pseudocosts=pseudocosts, batch=8)


def test_choose_on_a_network_without_free_neurons_makes_every_node_a_leaf():
    """Every hidden neuron stably inactive: the reduced layers hold no neuron, nothing to branch on."""
    net = nm.Network([np.array([[1.0, -1.0], [2.0, 0.5]]), np.array([[1.0, 1.0], [-1.0, 2.0]])],
                     [np.array([-10.0, -10.0]), np.array([0.5, -0.5])])
    dom = nm.domains.box(np.zeros(2), np.ones(2))
    b = crown_bounds(net, dom)
    layers = relax.Layers.build(net, b.lower[:-1], b.upper[:-1], dom.lo, dom.hi, np.array([[1.0, -1.0]]),
                                np.zeros(1))
    assert sum(layers.sizes) == 0
    nodes = relax.NodeBatch.root(layers)
    ub, nodes = relax.optimise(layers, nodes, iterations=2)
    layer, index, has_free, score = branch.choose(layers, nodes, ub, GroupObjective(np.zeros(1)), 3)
    assert not bool(has_free.any()) and layer.shape == index.shape == score.shape == (1,)
    assert float(ub[0, 0]) >= 1.0 - 1e-9  # the logits are the constant biases: 0.5 − (−0.5)
