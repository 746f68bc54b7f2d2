"""Floating-point side of the verifier's soundness: refutation margins and witness checks.

A refutation covers the network evaluated in float32/float64 because every threshold is
first moved by :func:`fp_error_bound`, a bound on |output in that type − real output|
(rounding-error analysis, |fl(Σ) − Σ| ≤ γ_n Σ|·|, any summation order). A witness
(:func:`check_witness`) is snapped to the ONNX input type inside its box, re-run in
float64 and through onnxruntime, and reported only if the query holds on both
(:meth:`nnmiplib.vnnlib.query.LinCon.holds`): a non-strict comparison (``<=``, ``>=``)
may hold with equality — checked in float64 and in exact rational arithmetic on the
values — a strict one needs a relative slack :data:`WITNESS_TOL`; input bounds and
equalities are checked exactly.
"""

from __future__ import annotations

import numpy as np

from ..network import Network
from ..onnx_io import OnnxInfo
from .problem import Problem

__all__ = ["UNIT_ROUNDOFF", "WITNESS_TOL", "check_witness", "fp_error_bound"]

#: Relative slack a strict inequality must keep at a reported witness (robust to re-evaluation).
WITNESS_TOL = 1e-7

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53, "real": 0.0}


def fp_error_bound(net: Network, upper: list[np.ndarray], lo: np.ndarray, hi: np.ndarray, dtype: str,
                   info: OnnxInfo | None = None) -> np.ndarray:
    """Bound on |output computed in ``dtype`` − real output| for every output, over a box.

    ``upper``: valid upper pre-activation bounds per layer (e.g. ``Bounds.upper``), giving
    |h^l| ≤ max(0, upper). Recursion per affine layer with n inputs:
    e_a ≤ |W| e_h + γ_{n+3} (|W| (|h| + e_h) + |b|), e_h(next) = e_a (ReLU is 1-Lipschitz);
    the +3 covers Gemm's alpha/beta products and up to two elementwise normalisation
    operations folded into the first layer (each adds at most u relative error, bounded
    by the same magnitude term). A factor 2 is kept as a safety margin.
    """
    u = UNIT_ROUNDOFF.get(dtype, 0.0)
    if u == 0.0:
        return np.zeros(net.n_outputs)
    habs = np.maximum(np.abs(lo), np.abs(hi))
    e = np.zeros(net.n_inputs)
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        n = W.shape[1] + 3
        gamma = n * u / (1 - n * u)
        aW = np.abs(W)
        e = aW @ e + gamma * (aW @ (habs + e) + np.abs(b))
        if l < net.depth:
            habs = np.maximum(0.0, np.asarray(upper[l]))
    return 2.0 * e + 1e-30




def _snap(z: np.ndarray, lo: np.ndarray, hi: np.ndarray, dtype) -> np.ndarray:
    """Round ``z`` to ``dtype`` (float32/float64) staying inside [lo, hi] where possible."""
    zt = np.clip(np.asarray(z, dtype=np.float64), lo, hi).astype(dtype)
    lo_t, hi_t = lo.astype(dtype), hi.astype(dtype)
    below = zt.astype(np.float64) < lo
    zt[below] = np.nextafter(zt[below], hi_t[below])
    above = zt.astype(np.float64) > hi
    zt[above] = np.nextafter(zt[above], lo_t[above])
    return zt


def _ort_outputs(prob: Problem, z: np.ndarray) -> list[np.ndarray] | None:
    """Run every network's ONNX file through onnxruntime at the merged input ``z``."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - installed with the onnx extra
        return None
    outs = []
    cache = getattr(prob, "_ort", None)
    if cache is None:
        cache = prob._ort = {}
    for info, cols in zip(prob.infos, prob.in_cols):
        if info.path not in cache:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.intra_op_num_threads = 1
            src = info.path
            if src.endswith(".gz"):
                import gzip

                with gzip.open(src, "rb") as f:
                    src = f.read()
            cache[info.path] = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        sess = cache[info.path]
        x = np.asarray(z)[cols].astype(np.dtype(info.input_dtype)).reshape(info.input_shape)
        outs.append(np.asarray(sess.run(None, {info.input_name: x})[0]).ravel())
    return outs


def check_witness(prob: Problem, z: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> dict[str, np.ndarray] | None:
    """Values of every declared variable at input ``z`` if the query holds there, else None.

    ``z`` is snapped to the ONNX input element type; the query must hold both for the
    float64 forward pass and for onnxruntime: non-strict comparisons possibly with
    equality, strict ones strictly (see the module docstring).
    """
    dt = min((np.dtype(i.input_dtype) for i in prob.infos), key=lambda t: t.itemsize)  # coarsest input type
    z = np.asarray(z, dtype=np.float64)
    lo, hi = box if box is not None else (z, z)
    zt = _snap(z, lo, hi, dt).astype(np.float64)
    y64 = [net.forward(zt[cols]) for net, cols in zip(prob.nets, prob.in_cols)]
    v64 = prob.full_assignment(zt, y64)
    if not np.isfinite(v64).all() or not prob.query.satisfied(v64, WITNESS_TOL, prob.query.input_mask()):
        return None
    yo = _ort_outputs(prob, zt)
    if yo is not None:
        vo = prob.full_assignment(zt, yo)
        if not np.isfinite(vo).all() or not prob.query.satisfied(vo, WITNESS_TOL, prob.query.input_mask()):
            return None
    else:
        vo = v64
    values = {}
    for var in prob.query.variables:
        src = vo if (var.kind == "output" and var.dtype != "real") else v64
        values[var.name] = src[var.offset : var.offset + var.size].reshape(var.shape)
    return values
