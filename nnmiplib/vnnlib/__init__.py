"""VNN-LIB 2.0 verification: query + ONNX networks → sat / unsat / unknown / timed-out.

- :func:`read_query` / :func:`parse_query` — the VNN-LIB reader (``query``);
- :func:`load_onnx` and :func:`build_problem` — networks and the query as one problem (``problem``);
- :func:`fp_error_bound`, :func:`check_witness` — floating-point soundness (``witness``);
- :func:`verify` — the staged engine (``engine``); the ``verify``/``supports`` commands (``command``).

**Problem** (:func:`build_problem`). All declared networks become **one**
:class:`~nnmiplib.Network` on a shared input (the comparator of chapter 4):
input variables that the query identifies in every disjunct (``X[i] == U[j]``) are
merged into one input column; the first layers are stacked on the merged inputs, the
later layers are block-diagonal, a shallower network is padded with identity layers
after its last hidden layer (exact: post-ReLU values are non-negative, so
``ReLU(I h) = h``), and the outputs are concatenated. A single network is used as it
is. Each query column is then an input ``z[k]`` or an output ``y[j]`` of the combined
network, and each disjunct of the DNF becomes an input box (single-variable bounds,
widened outward by one ulp when a division rounds) plus linear rows over ``(z, y)``.

**Engine** (:func:`verify`), per disjunct, cheapest first: empty box → cheap bounds
(naive ∩ interval ∩ CROWN, plus CROWN on the network whose last layer is replaced by the
constraint rows) → attacks (sampling, signed-gradient descent on the largest normalised
violation) → with the default engine, the branch and bound over ReLU phases
(:mod:`nnmiplib.bab`, α-CROWN intermediate bounds once per box, the open disjuncts in
increasing order of the slack the cheap bounds leave them, every core of the process);
with ``engine="mip"``, LP relaxation → LP bound tightening (Algorithm 3, above
:data:`TIGHTEN_ABOVE` unstable neurons) → MILP (thesis model 1.1–1.8) maximising the
common slack ``t`` of the normalised rows.

**Soundness.** ``unsat`` only if every disjunct is refuted: empty box, a bound range
beyond the threshold, a branch-and-bound or LP/MILP dual bound ``t* < −τ`` (τ = 1e-6 plus terms relative to
the row constants and output magnitudes, covering solver tolerances), or solver
infeasibility. Strict inequalities are relaxed to ``≤`` for refutation (refuting the
closure refutes the strict set) and kept strict for witnesses. For element types
float32/float64 every threshold is first moved by :func:`fp_error_bound`, a bound on
|output in that type − real output| (rounding-error analysis, |fl(Σ) − Σ| ≤ γ_n Σ|·|,
any summation order), so a refutation covers the floating-point network too. A witness
is snapped to the ONNX input type inside its box, re-run in float64 and through
onnxruntime, and reported only if the query holds on both: non-strict comparisons
(``<=``, ``>=``) as written, equality included (VNN-LIB semantics), in float64 and in
exact rational arithmetic on the values; strict ones with a relative slack
:data:`WITNESS_TOL`; input bounds and equalities exactly.

"""

from .engine import TIGHTEN_ABOVE, VerifyResult, verify
from .problem import SUPPORTED_DTYPES, Disjunct, Problem, build_problem, load_onnx
from .query import LinCon, NetDecl, Query, VarDecl, parse_query, read_query, translate_v1
from .witness import UNIT_ROUNDOFF, WITNESS_TOL, check_witness, fp_error_bound

__all__ = [
    "SUPPORTED_DTYPES",
    "TIGHTEN_ABOVE",
    "UNIT_ROUNDOFF",
    "WITNESS_TOL",
    "Disjunct",
    "LinCon",
    "NetDecl",
    "Problem",
    "Query",
    "VarDecl",
    "VerifyResult",
    "build_problem",
    "check_witness",
    "fp_error_bound",
    "load_onnx",
    "parse_query",
    "read_query",
    "translate_v1",
    "verify",
]
