"""The VNN-LIB verification engine: query + ONNX networks → sat / unsat / unknown / timed-out.

**Problem** (:func:`build_problem`). All declared networks become **one**
:class:`~nnmiplib.network.Network` on a shared input (the comparator of chapter 4):
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
violation) → LP relaxation → LP bound tightening (Algorithm 3, above
:data:`TIGHTEN_ABOVE` unstable neurons) → MILP (thesis model 1.1–1.8) maximising the
common slack ``t`` of the normalised rows.

**Soundness.** ``unsat`` only if every disjunct is refuted: empty box, a bound range
beyond the threshold, an LP/MILP dual bound ``t* < −τ`` (τ = 1e-6 plus terms relative to
the row constants and output magnitudes, covering solver tolerances), or solver
infeasibility. Strict inequalities are relaxed to ``≤`` for refutation (refuting the
closure refutes the strict set) and kept strict for witnesses. For element types
float32/float64 every threshold is first moved by :func:`fp_error_bound`, a bound on
|output in that type − real output| (rounding-error analysis, |fl(Σ) − Σ| ≤ γ_n Σ|·|,
any summation order), so a refutation covers the floating-point network too. A witness
is snapped to the ONNX input type inside its box, re-run in float64 and through
onnxruntime, and reported only if the query holds on both with a relative slack
:data:`WITNESS_TOL` (input bounds and equalities exactly).

**Layout.** The problem building lives in :mod:`nnmiplib.verify_problem`, the
floating-point error bound and the witness check in :mod:`nnmiplib.verify_float`, the
staged engine in :mod:`nnmiplib.verify_engine`; this module re-exports them.
"""

from .verify_engine import (  # noqa: F401  (re-exported: the engine's helpers)
    TIGHTEN_ABOVE,
    VerifyResult,
    _attack,
    _candidates,
    _Deadline,
    _finish,
    _min_max_rows,
    _refuted_by_range,
    _rows,
    _solve_disjunct,
    _tightened,
    verify,
)
from .verify_float import (  # noqa: F401  (re-exported: the witness-check helpers)
    UNIT_ROUNDOFF,
    WITNESS_TOL,
    _ort_outputs,
    _snap,
    check_witness,
    fp_error_bound,
)
from .verify_problem import (  # noqa: F401  (re-exported: the problem-building helpers)
    _UF,
    SUPPORTED_DTYPES,
    Disjunct,
    Problem,
    _combine,
    _disjunct,
    _identified_pairs,
    _pad_identity,
    build_problem,
)

__all__ = [
    "UNIT_ROUNDOFF",
    "Disjunct",
    "Problem",
    "VerifyResult",
    "build_problem",
    "check_witness",
    "fp_error_bound",
    "verify",
]
