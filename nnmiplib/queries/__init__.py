r"""The questions nnmiplib answers with its models (thesis §3–§4), each returning a :class:`Result`.

- :func:`max_output_change` — PV, one network (``pv``);
- :func:`maxdiff`, :func:`maxout` — the comparator of two networks (``compare``);
- :func:`maxflip` — neurons whose phase differs between two networks (``flip``);
- :func:`mineps` — the smallest perturbation on which a pruned copy disagrees (``mineps``);
- :func:`max_logit_change`, :func:`top1_equivalent` — a network and its pruned copy: the
  largest logit change and whether the predicted classes can differ, with the difference
  bounds of :func:`nnmiplib.bounds.difference_bounds` (``pairs``, which also puts those
  bounds into the comparator's joint model);
- the sound softmax-L1 relaxation (``softmax``, ``softmax_pwl``), attacks (``attacks``),
  the shared solve-and-check machinery (``core``) and :class:`Result` (``result``).

Common behaviour of every query
-------------------------------
* **Bounds**: pass ``bounds`` (one :class:`~nnmiplib.bounds.Bounds` per network, computed
  on the query's domain) or let the query compute them with
  ``compute_bounds(net, domain, method=bounds_method)`` (default ``"lp"``; ``"crown"`` is
  fast and fine for tests). Bound time is reported in ``result.extra["bounds_time"]``
  and is **not** charged to ``time_limit``.
* **Time limit**: ``time_limit`` is a wall-clock budget for everything after the
  bounds — attacks, model building, the difference LPs and every refinement round of
  the softmax queries, every solve (maxflip's strict re-solve, mineps's LP fallback) and
  the polishing of the solver's point — measured from one start time. Overruns are
  limited to the solver's own reaction time to its limit plus the final float64
  checks (≈ 0.1 s on the test machine; the tests allow 2·limit + 2 s under load).
  ``result.time`` includes the bounds.
* **Dual bound always reported** (unless the query is proven infeasible): the solver's
  bound widened by 1e-6·(1+|bound|) (``extra["dual_source"] = "solver"``); when the
  solver gives none (a time limit before the root, NaN), the bound implied by the
  model's column bounds (``"column-bounds"``: PV margin max_k(u_k − ℓ_c) from the logit
  bounds, maxflip the neuron pairs that can flip plus the stable flips, mineps 0); mineps
  then tries its LP relaxation (``"lp-relaxation"``). The softmax queries always hold
  a relaxation bound (≤ 2).
* **Difference bounds**: maxdiff (logits form), maxout, maxflip and mineps, given two
  networks of the same layer sizes (``difference=None``: automatic; ``False`` turns it off),
  add the columns δ = a₁ − a₂ bounded by :func:`nnmiplib.bounds.difference_bounds` (computed
  after the networks' bounds, reported in ``extra["difference_time"]``, not charged) and the
  rows each query derives from them; ``extra["dual_bound_without_difference"]`` and
  ``extra["root_lp_bound_with_difference"]`` are the root LP bounds of the model without and
  with them (``report=True``, measured after the solve).
* **Primal heuristics**: random sampling + projected gradient (:mod:`nnmiplib.queries.attacks`)
  run first; the best input is handed to the solver as a MIP start after checking that
  the model reproduces it (:meth:`MipModel.point` satisfies every row within 1e-6).
  ``result.incumbent_source`` says which source gave the reported input.
* **Soundness**: the reported ``x`` is re-evaluated in float64; ``verified`` requires
  x ∈ domain (±1e-9), |objective − solver_objective| ≤ 1e-5·(1+|objective|) and the
  query's strict conditions at x (decisions with ``margin``; ties are not findings).
  The solver's dual bound is widened by 1e-6·(1+|bound|) before it is reported.

Statuses: ``optimal`` / ``time_limit_feasible`` / ``time_limit_infeasible`` /
``infeasible`` / ``feasible`` (maxflip only: the solver's optimum sat on ReLU ties and
did not reproduce) / ``error`` (see :mod:`nnmiplib.queries.result`).
"""

from .compare import maxdiff, maxout
from .core import RESULTS_VERSION, cache_version, get_bounds
from .flip import flip_count, maxflip
from .mineps import mineps
from .pairs import max_logit_change, top1_equivalent
from .pv import max_output_change
from .result import STATUSES, Result

__all__ = [
    "RESULTS_VERSION",
    "STATUSES",
    "Result",
    "cache_version",
    "flip_count",
    "get_bounds",
    "max_logit_change",
    "max_output_change",
    "maxdiff",
    "maxflip",
    "maxout",
    "mineps",
    "top1_equivalent",
]
