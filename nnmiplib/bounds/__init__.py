"""Activation bounds of every neuron (thesis chapter 2).

- :class:`Bounds` — signed pre-activation bounds of every layer, with their sources (``base``);
- :func:`compute_bounds` and the cheap methods: Prop 2.1 (naive), Prop 2.2, interval
  arithmetic and CROWN back-substitution (``compute``, arrays in ``cheap``);
- :func:`alpha_bounds` — CROWN with lower ReLU slopes optimised by projected gradient (``alpha``);
- :func:`solver_bounds` — the Bounder (Algorithms 1 and 3): one LP or MILP per neuron,
  warm-started, over processes with work stealing (``bounder``);
- :func:`difference_bounds` — bounds on a¹ − a² and h¹ − h² of two networks of one shape on
  one input box, propagated symbolically through both (``difference``).
"""

from .alpha import alpha_bounds
from .base import Bounds, join_sources, source_side
from .bounder import safe_lp_bound, solver_bounds, time_split
from .compute import (
    METHODS,
    cheap_bounds,
    compute_bounds,
    crown_bounds,
    interval_bounds,
    naive_bounds,
    prop22_bounds,
    prop22_layer,
    ro_gap,
)
from .difference import DifferenceBounds, difference_bounds

__all__ = [
    "METHODS",
    "Bounds",
    "DifferenceBounds",
    "alpha_bounds",
    "cheap_bounds",
    "compute_bounds",
    "crown_bounds",
    "difference_bounds",
    "interval_bounds",
    "join_sources",
    "naive_bounds",
    "prop22_bounds",
    "prop22_layer",
    "ro_gap",
    "safe_lp_bound",
    "solver_bounds",
    "source_side",
    "time_split",
]
