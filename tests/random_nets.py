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
