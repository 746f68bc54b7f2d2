"""The Rounder (Algorithm 2) and pruning by fraction, on hand-made weights."""

import numpy as np
import pytest

from nnmiplib import Network
from nnmiplib.prune import prune_fraction, round_weights


@pytest.fixture
def net():
    w0 = np.array([[0.5, -0.01, 0.02], [-0.03, 0.0, 0.2]])  # layer 0: 6 weights, one exact zero
    w1 = np.array([[0.01, -0.6], [0.04, 0.02]])  # output layer: 4 weights
    return Network([w0, w1], [np.array([0.005, -0.5]), np.array([0.01, 0.3])], name="hand")


def test_round_counts_per_layer_and_boundary(net):
    out, st = round_weights(net, 0.02)
    # |w| <= 0.02 -> 0 (the boundary 0.02 included): layer 0 has -0.01, 0.02, 0.0; output 0.01, 0.02
    assert [r["zeroed"] for r in st["layers"]] == [3, 2]
    assert [r["rounded"] for r in st["layers"]] == [2, 2]  # the exact zero was already zero
    assert st["layers"][0]["fraction"] == pytest.approx(0.5)
    assert st["n"] == 10 and st["zeroed"] == 5 and st["rounded"] == 4 and st["fraction"] == 0.5
    np.testing.assert_array_equal(out.weights[0], [[0.5, 0, 0], [-0.03, 0, 0.2]])
    np.testing.assert_array_equal(out.weights[1], [[0, -0.6], [0.04, 0]])  # output layer rounded too
    # biases untouched by default, original net unchanged
    for b0, b1 in zip(net.biases, out.biases):
        np.testing.assert_array_equal(b0, b1)
    assert net.weights[1][0, 0] == 0.01
    assert out.name == "hand-eps0.02"


def test_round_eps_zero_and_large(net):
    out, st = round_weights(net, 0)
    assert out == net and st["rounded"] == 0 and st["zeroed"] == 1
    out, st = round_weights(net, 1.0)
    assert st["zeroed"] == 10 and all(not w.any() for w in out.weights)
    assert out.biases[1][1] == 0.3


def test_round_biases_when_asked(net):
    out, st = round_weights(net, 0.01, biases=True)
    np.testing.assert_array_equal(out.biases[0], [0.0, -0.5])
    np.testing.assert_array_equal(out.biases[1], [0.0, 0.3])
    assert [r["bias_rounded"] for r in st["layers"]] == [1, 1]


@pytest.mark.parametrize("eps", [-1e-3, float("nan"), float("inf"), "0.1", None, True])
def test_round_bad_eps(net, eps):
    with pytest.raises(ValueError, match="eps"):
        round_weights(net, eps)


def test_prune_fraction_exact_count_and_global_threshold(net):
    # magnitudes pooled: 0.0, .01, .01, .02, .02, .03, .04, .2, .5, .6
    for p, k in [(0.0, 0), (0.1, 1), (0.25, 2), (0.3, 3), (0.5, 5), (0.7, 7), (0.99, 9), (1.0, 10)]:
        out, st = prune_fraction(net, p)
        assert st["k"] == k
        assert st["zeroed"] == max(k, 1)  # the exact zero sorts first
        kept = np.concatenate([w[w != 0].ravel() for w in out.weights]) if k < 10 else np.array([])
        if 0 < k < 10:
            assert np.abs(kept).min() >= st["threshold"]
        for b0, b1 in zip(net.biases, out.biases):
            np.testing.assert_array_equal(b0, b1)


def test_prune_fraction_ties_are_deterministic():
    # every weight has |w| = 1: ties broken by (layer, row-major index)
    w0 = np.array([[1.0, -1.0], [1.0, -1.0]])
    w1 = np.array([[-1.0, 1.0]])
    net = Network([w0, w1], [np.zeros(2), np.zeros(1)])
    out, st = prune_fraction(net, 0.5)  # floor(0.5 * 6) = 3
    assert st["k"] == 3 and st["threshold"] == 1.0
    np.testing.assert_array_equal(out.weights[0], [[0, 0], [0, -1.0]])
    np.testing.assert_array_equal(out.weights[1], [[-1.0, 1.0]])
    assert prune_fraction(net, 0.5)[0] == out


def test_prune_fraction_floor_of_decimal_p():
    rng = np.random.default_rng(0)
    net = Network([rng.normal(size=(10, 10))], [np.zeros(10)])
    assert prune_fraction(net, 0.29)[1]["k"] == 29  # 0.29*100 = 28.999... in binary
    assert prune_fraction(net, 0.295)[1]["k"] == 29


def test_prune_fraction_random_net_pooled_over_layers():
    rng = np.random.default_rng(1)
    net = Network([rng.normal(size=(7, 5)), 0.1 * rng.normal(size=(3, 7))], [np.zeros(7), np.zeros(3)])
    out, st = prune_fraction(net, 0.6)
    n = 35 + 21
    assert st["k"] == int(0.6 * n) == st["zeroed"]
    pruned = np.concatenate([np.abs(w0[w1 == 0]) for w0, w1 in zip(net.weights, out.weights)])
    kept = np.concatenate([np.abs(w[w != 0]) for w in out.weights])
    assert pruned.max() <= kept.min()
    # the small output layer is pruned much more than the first: one global threshold
    assert st["layers"][1]["fraction"] > st["layers"][0]["fraction"]


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "half", None, False])
def test_prune_fraction_bad_p(net, p):
    with pytest.raises(ValueError, match="p must be"):
        prune_fraction(net, p)


def test_prune_rejects_non_network():
    with pytest.raises(ValueError, match="Network"):
        round_weights([np.eye(2)], 0.1)
