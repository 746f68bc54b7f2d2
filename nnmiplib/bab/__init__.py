"""Branch and bound over ReLU phases, with batched optimised linear bounds (α-β-CROWN style).

- :mod:`~nnmiplib.bab.relax` — upper bounds of objective rows for a batch of nodes (phase
  decisions), the lower-relaxation slopes α and the split multipliers β optimised by
  projected Adam; sound in float64 with the cheap bounds' outward widening;
- :mod:`~nnmiplib.bab.cuts` — cutting planes: the convex hull of each ReLU over its input
  box, separated at the LP relaxation's optima (HiGHS) and added to every node's bound with
  multipliers π optimised like α and β;
- :mod:`~nnmiplib.bab.branch` — branching: BaBSR-type scores weighed by pseudocosts (what
  splitting each neuron has gained so far), filtered look-ahead, children;
- :mod:`~nnmiplib.bab.tightening` — tighter intermediate bounds: one batched search over every
  unstable neuron of a layer (both sides), nodes of different neurons side by side;
- :mod:`~nnmiplib.bab.search` — the anytime search: gradient-ascent incumbents re-checked
  in float64, exact LPs at leaves, a chunked best-first queue bounded in memory, optionally
  tightened intermediate bounds first;
- :mod:`~nnmiplib.bab.neurons` — single-neuron bounds (the Bounder's MILPs) by the search;
- :mod:`~nnmiplib.bab.pair` — the search over a network and its copy stacked into one, each
  neuron's bounds linked to its copy's by the difference bounds.
"""

from .neurons import neuron_bounds
from .pair import solve_pair, stack
from .search import (
    BabResult,
    CappedObjective,
    GroupObjective,
    SoftmaxL1Objective,
    group_value,
    solve,
)
from .tightening import tighten

__all__ = ["BabResult", "CappedObjective", "GroupObjective", "SoftmaxL1Objective", "group_value", "neuron_bounds",
           "solve", "solve_pair", "stack", "tighten"]
