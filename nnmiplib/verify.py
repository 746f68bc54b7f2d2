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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .network import Network
from .onnx_io import OnnxInfo
from .vnnlib_io import LinCon, Query

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

#: Relative slack every inequality must keep at a reported witness (robust to re-evaluation).
WITNESS_TOL = 1e-7
#: LP bound tightening (Algorithm 3) runs before a MILP only above this many unstable neurons.
TIGHTEN_ABOVE = 100

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53, "real": 0.0}
SUPPORTED_DTYPES = ("real", "float32", "float64")


@dataclass
class Disjunct:
    """One conjunction: ``lo ≤ z ≤ hi`` (closure), rows ``Cz z + Cy y (op) d``."""

    index: int
    lo: np.ndarray
    hi: np.ndarray
    empty: bool
    Cz: np.ndarray          # (m, n_z)
    Cy: np.ndarray          # (m, n_y)
    d: np.ndarray           # (m,)
    ops: list[str]          # "<=", "<", "=="
    status: str = "open"    # open | refuted | sat
    how: str = ""
    best_x: np.ndarray | None = None


@dataclass
class Problem:
    query: Query
    net: Network                      # the combined network on the merged input z
    nets: list[Network]               # one per declared network (equal-to resolved)
    infos: list[OnnxInfo]
    in_cols: list[np.ndarray]         # per network: z index of each of its inputs
    out_slices: list[slice]           # per network: its outputs inside y
    col_map: np.ndarray               # query column -> z index (inputs) or n_z + y index (outputs)
    disjuncts: list[Disjunct] = field(default_factory=list)
    dtype: str = "real"               # strictest declared element type ("real" if none)

    @property
    def n_z(self) -> int:
        return self.net.n_inputs

    def full_assignment(self, z: np.ndarray, ys: list[np.ndarray]) -> np.ndarray:
        """Query columns from merged inputs ``z`` and per-network outputs ``ys``."""
        v = np.empty(self.query.n_cols)
        y = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in ys])
        zy = np.concatenate([np.asarray(z, dtype=np.float64), y])
        v[:] = zy[self.col_map]
        return v


class _UF:
    def __init__(self, n):
        self.p = list(range(n))

    def find(self, i):
        while self.p[i] != i:
            self.p[i] = self.p[self.p[i]]
            i = self.p[i]
        return i

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.p[max(a, b)] = min(a, b)


def _pad_identity(net: Network, depth: int) -> tuple[list, list]:
    W, b = list(net.weights), list(net.biases)
    if net.depth == depth:
        return W, b
    if net.depth == 0:
        raise ValueError(f"network {net.name!r} has no hidden layer and cannot be combined with deeper networks")
    n = W[-2].shape[0]
    out_W, out_b = W[-1], b[-1]
    W, b = W[:-1], b[:-1]
    for _ in range(depth - net.depth):
        W.append(np.eye(n))
        b.append(np.zeros(n))
    return W + [out_W], b + [out_b]


def _combine(nets: list[Network], in_cols: list[np.ndarray], n_z: int) -> Network:
    """Stack networks on the merged input (see module docstring)."""
    depth = max(n.depth for n in nets)
    layers = [_pad_identity(n, depth) for n in nets]
    Ws, bs = [], []
    for l in range(depth + 1):
        blocks = [L[0][l] for L in layers]
        if l == 0:
            rows = []
            for Wk, cols in zip(blocks, in_cols):
                M = np.zeros((Wk.shape[0], n_z))
                np.add.at(M.T, cols, Wk.T)
                rows.append(M)
            Ws.append(np.vstack(rows))
        else:
            n_out = sum(B.shape[0] for B in blocks)
            n_in = sum(B.shape[1] for B in blocks)
            M = np.zeros((n_out, n_in))
            r = c = 0
            for B in blocks:
                M[r : r + B.shape[0], c : c + B.shape[1]] = B
                r, c = r + B.shape[0], c + B.shape[1]
            Ws.append(M)
        bs.append(np.concatenate([L[1][l] for L in layers]))
    return Network(Ws, bs, name="+".join(n.name or "net" for n in nets))


def _identified_pairs(query: Query, is_input: np.ndarray) -> set[tuple[int, int]]:
    """Input column pairs (i, j) with ``v_i − v_j == 0`` in every disjunct."""
    common = None
    for conj in query.disjuncts:
        pairs = set()
        for c in conj:
            if c.op == "==" and c.cols.size == 2 and c.rhs == 0.0 and is_input[c.cols].all() \
                    and c.coef[0] == -c.coef[1] and c.coef[0] != 0:
                pairs.add((int(c.cols[0]), int(c.cols[1])))
        common = pairs if common is None else common & pairs
    return common or set()


def build_problem(query: Query, loaded: dict[str, tuple[Network, OnnxInfo]]) -> Problem:
    """Map ``query`` onto the networks ``loaded`` (declared name → (Network, OnnxInfo)).

    Raises
    ------
    ValueError
        For a network or variable the models cannot serve (several inputs/outputs,
        sizes or element types that do not match the ONNX file, unbounded inputs).
    """
    nets, infos, dtypes = [], [], []
    for nd in query.networks:
        src = nd.equal_to or nd.name
        if src not in loaded:
            raise ValueError(f"no ONNX file for network {src!r}; pass --network {src}=FILE.onnx")
        net, info = loaded[src]
        if len(nd.inputs) != 1 or len(nd.outputs) != 1:
            raise ValueError(f"network {nd.name!r} declares {len(nd.inputs)} inputs and {len(nd.outputs)} outputs; "
                             "nnmiplib supports one of each (theory SIO)")
        for v, n_onnx, t_onnx, what in ((nd.inputs[0], info.n_inputs, info.input_dtype, "input"),
                                        (nd.outputs[0], info.n_outputs, info.output_dtype, "output")):
            if v.size != n_onnx:
                raise ValueError(f"{what} {v.name} of network {nd.name!r} has {v.size} elements {list(v.shape)}, "
                                 f"the ONNX model {info.path} has {n_onnx}")
            if v.dtype not in SUPPORTED_DTYPES:
                raise ValueError(f"{v.name} is declared {v.dtype}; nnmiplib analyses only "
                                 f"{', '.join(SUPPORTED_DTYPES)} soundly")
            if v.dtype != "real" and v.dtype != t_onnx:
                raise ValueError(f"{v.name} is declared {v.dtype} but the ONNX {what} of {info.path} is {t_onnx}; "
                                 "declare it as in the model, or as real")
            dtypes.append(v.dtype)
        if info.input_dtype not in ("float16", "float32", "float64"):
            raise ValueError(f"the ONNX input of {info.path} has element type {info.input_dtype}; "
                             "only float16/float32/float64 inputs are supported")
        nets.append(net)
        infos.append(info)
    n_cols = query.n_cols
    is_input = np.zeros(n_cols, dtype=bool)
    for nd in query.networks:
        v = nd.inputs[0]
        is_input[v.offset : v.offset + v.size] = True
    uf = _UF(n_cols)
    for i, j in _identified_pairs(query, is_input):
        uf.union(i, j)
    roots = sorted({uf.find(i) for i in np.flatnonzero(is_input)})
    zidx = {r: k for k, r in enumerate(roots)}
    n_z = len(roots)
    col_map = np.full(n_cols, -1, dtype=np.int64)
    in_cols, out_slices, y0 = [], [], 0
    for nd, net in zip(query.networks, nets):
        v = nd.inputs[0]
        cols = np.array([zidx[uf.find(i)] for i in range(v.offset, v.offset + v.size)], dtype=np.int64)
        col_map[v.offset : v.offset + v.size] = cols
        in_cols.append(cols)
        o = nd.outputs[0]
        col_map[o.offset : o.offset + o.size] = n_z + y0 + np.arange(o.size)
        out_slices.append(slice(y0, y0 + o.size))
        y0 += o.size
    if len(nets) == 1 and np.array_equal(in_cols[0], np.arange(n_z)):
        combined = nets[0]
    else:
        combined = _combine(nets, in_cols, n_z)
    order = {"real": 0, "float64": 1, "float32": 2}
    prob = Problem(query, combined, nets, infos, in_cols, out_slices, col_map,
                   dtype=max(dtypes, key=order.__getitem__) if dtypes else "real")
    prob.disjuncts = [_disjunct(k, conj, col_map, n_z, y0, query) for k, conj in enumerate(query.disjuncts)]
    return prob


def _disjunct(k: int, conj: list[LinCon], col_map, n_z: int, n_y: int, query: Query) -> Disjunct:
    lo, hi = np.full(n_z, -np.inf), np.full(n_z, np.inf)
    lo_strict, hi_strict = np.zeros(n_z, bool), np.zeros(n_z, bool)
    rows_z, rows_y, d, ops = [], [], [], []
    empty = False
    for c in conj:
        keep = c.coef != 0
        cols, coef = c.cols[keep], c.coef[keep]
        if cols.size == 0:  # constant comparison
            ok = 0.0 < c.rhs if c.op == "<" else 0.0 <= c.rhs if c.op == "<=" else c.rhs == 0.0
            empty |= not ok
            continue
        mapped = col_map[cols]
        if cols.size == 1 and mapped[0] < n_z:  # a bound on one input
            j, a, r = int(mapped[0]), float(coef[0]), c.rhs / float(coef[0])
            if abs(a) != 1.0:  # the division may round: widen the box outward by one ulp
                r = float(np.nextafter(r, np.inf if (a > 0 or c.op == "==") else -np.inf))
                if c.op == "==":
                    lo[j] = max(lo[j], float(np.nextafter(c.rhs / a, -np.inf)))
                    hi[j] = min(hi[j], r)
                    continue
            if c.op == "==":
                lo[j], hi[j] = max(lo[j], r), min(hi[j], r)
                continue
            if a > 0:
                if r < hi[j] or (r == hi[j] and c.op == "<"):
                    hi[j], hi_strict[j] = min(hi[j], r), c.op == "<"
            else:
                if r > lo[j] or (r == lo[j] and c.op == "<"):
                    lo[j], lo_strict[j] = max(lo[j], r), c.op == "<"
            continue
        rz, ry = np.zeros(n_z), np.zeros(n_y)
        for m, a in zip(mapped, coef):
            if m < n_z:
                rz[m] += a
            else:
                ry[m - n_z] += a
        if not rz.any() and not ry.any():
            ok = 0.0 < c.rhs if c.op == "<" else 0.0 <= c.rhs if c.op == "<=" else c.rhs == 0.0
            empty |= not ok
            continue
        rows_z.append(rz)
        rows_y.append(ry)
        d.append(c.rhs)
        ops.append(c.op)
    empty |= bool(np.any(lo > hi) or np.any((lo == hi) & (lo_strict | hi_strict)))
    if not empty and not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        names = []
        for v in query.variables:
            if v.kind == "input":
                for i in range(v.size):
                    j = col_map[v.offset + i]
                    if not (np.isfinite(lo[j]) and np.isfinite(hi[j])):
                        idx = ",".join(map(str, np.unravel_index(i, v.shape))) if v.shape else ""
                        names.append(f"{v.name}[{idx}]")
        raise ValueError(f"disjunct {k}: input(s) {', '.join(names[:5])}{' …' if len(names) > 5 else ''} have no "
                         "finite lower and upper bound; the MIP model needs a bounded input box (1.8)")
    m = len(d)
    return Disjunct(k, lo, hi, empty, np.array(rows_z).reshape(m, n_z), np.array(rows_y).reshape(m, n_y),
                    np.array(d, dtype=np.float64), ops)


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


# ====================================================================== the engine
@dataclass
class VerifyResult:
    """Outcome of :func:`verify`: ``status`` is sat | unsat | unknown | timed-out."""

    status: str
    values: dict[str, np.ndarray] | None = None   # sat: every declared variable, as checked
    time: float = 0.0
    log: list[str] = field(default_factory=list)
    problem: Problem | None = None


class _Deadline:
    def __init__(self, seconds: float | None):
        import time

        self._t = time.perf_counter
        self.end = None if seconds is None else self._t() + seconds

    def left(self) -> float:
        return np.inf if self.end is None else self.end - self._t()

    def over(self) -> bool:
        return self.left() <= 0


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

    ``z`` is snapped to the ONNX input element type; the query must hold (strict
    inequalities strictly) both for the float64 forward pass and for onnxruntime.
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


def _rows(dj: Disjunct):
    """Inequality rows normalised to max |coefficient| 1; equalities kept apart."""
    ineq = [i for i, o in enumerate(dj.ops) if o != "=="]
    eq = [i for i, o in enumerate(dj.ops) if o == "=="]
    scale = np.maximum(np.abs(np.hstack([dj.Cz, dj.Cy])).max(axis=1, initial=0.0), 1e-300) if dj.ops else np.ones(0)
    return ineq, eq, scale


def _min_max_rows(dj: Disjunct, net: Network, bounds_spec, ylo, yhi):
    """Lower/upper bounds of every row Cz z + Cy y over the box (crown on the spec layer)."""
    zlo = np.minimum(dj.Cz * dj.lo, dj.Cz * dj.hi).sum(axis=1)
    zhi = np.maximum(dj.Cz * dj.lo, dj.Cz * dj.hi).sum(axis=1)
    iy_lo = np.minimum(dj.Cy * ylo, dj.Cy * yhi).sum(axis=1)
    iy_hi = np.maximum(dj.Cy * ylo, dj.Cy * yhi).sum(axis=1)
    if bounds_spec is not None:
        iy_lo = np.maximum(iy_lo, bounds_spec.lower[-1])
        iy_hi = np.minimum(iy_hi, bounds_spec.upper[-1])
    return zlo + iy_lo, zhi + iy_hi


def _refuted_by_range(dj: Disjunct, rlo, rhi, margin) -> bool:
    for i, op in enumerate(dj.ops):
        if op == "==":
            if rlo[i] > dj.d[i] + margin[i] or rhi[i] < dj.d[i] - margin[i]:
                return True
        elif rlo[i] > dj.d[i] + margin[i]:
            return True
    return False


def _attack(prob: Problem, dj: Disjunct, rng, n_samples=256, steps=40, restarts=6, starts=None):
    """Sampling + signed-gradient descent on the largest normalised violation."""
    from .attacks import input_gradient

    net = prob.net
    ineq, _, scale = _rows(dj)
    width = dj.hi - dj.lo

    def viol(Z):
        Y = net.forward(Z)
        R = (Z @ dj.Cz.T + Y @ dj.Cy.T - dj.d) / scale
        R = np.where(np.array([o == "==" for o in dj.ops]), np.abs(R), R) if dj.ops else R
        return R, Y

    Z = np.vstack([(dj.lo + dj.hi)[None] / 2, dj.lo + rng.random((n_samples, net.n_inputs)) * width])
    if starts is not None:
        Z = np.vstack([Z, np.clip(np.atleast_2d(starts), dj.lo, dj.hi)])
    for z in _candidates(prob, dj, Z, viol):
        return z
    if not dj.ops:
        return None
    R, _ = viol(Z)
    worst = R.max(axis=1)
    X = Z[np.argsort(worst)[:restarts]].copy()
    for t in range(steps):
        R, Y = viol(X)
        k = R.argmax(axis=1)
        sgn = np.where(np.array([o == "==" for o in dj.ops])[k], np.sign(R[np.arange(len(X)), k]), 1.0)
        gy = dj.Cy[k] * (sgn / scale[k])[:, None]
        g = input_gradient(net, X, gy) + dj.Cz[k] * (sgn / scale[k])[:, None]
        eta = 0.1 * (1 - 0.9 * t / steps)
        X = np.clip(X - eta * width * np.sign(g), dj.lo, dj.hi)
        for z in _candidates(prob, dj, X, viol):
            return z
    return None


def _candidates(prob, dj, Z, viol):
    R, _ = viol(Z)
    strict = np.array([o == "<" for o in dj.ops], dtype=bool)
    ok = np.all((R < 0) | ((R <= 0) & ~strict), axis=1) if dj.ops else np.ones(len(Z), bool)
    for i in np.flatnonzero(ok)[:5]:
        if check_witness(prob, Z[i], (dj.lo, dj.hi)) is not None:
            yield Z[i]


def _solve_disjunct(prob: Problem, dj: Disjunct, bounds, margin, *, relax: bool, time_limit, solver: str,
                    start=None):
    """LP relaxation or MILP: maximise t s.t. rows + t ≤ d + margin (normalised); returns (verdict, x)."""
    import scipy.sparse as sp

    from .domains import Box
    from .encode import encode
    from .solvers import get_backend

    model = encode(prob.net, Box(dj.lo, dj.hi), bounds, relax=relax)
    ineq, eq, scale = _rows(dj)
    T = 1.0
    t = model.add_vars(1, -1e6, T)[0]
    ycols = model.nets[0].a[-1]
    n = model.n_vars
    for idx, with_t in ((ineq, True), (eq, False)):
        if not idx:
            continue
        k = len(idx)
        M = sp.lil_matrix((k, n))
        for r, i in enumerate(idx):
            s = scale[i]
            for j in np.flatnonzero(dj.Cz[i]):
                M[r, model.x[j]] = dj.Cz[i, j] / s
            for j in np.flatnonzero(dj.Cy[i]):
                M[r, ycols[j]] = dj.Cy[i, j] / s
            if with_t:
                M[r, t] = 1.0
        rhs = (dj.d[idx] + margin[idx]) / scale[idx]
        if with_t:
            model.add_rows(M.tocsr(), -np.inf, rhs)
        else:
            mr = margin[idx] / scale[idx]
            model.add_rows(M.tocsr(), dj.d[idx] / scale[idx] - mr, rhs)
    c = np.zeros(model.n_vars)
    c[t] = 1.0
    model.set_objective(c, "max")
    be = get_backend(solver)(model, threads=1)
    st = None
    if start is not None and not relax:
        st = model.point(start)
        st[t] = min(T, float(np.min((dj.d[ineq] - (dj.Cz[ineq] @ start) - dj.Cy[ineq] @ prob.net.forward(start))
                                     / scale[ineq]), initial=T)) if ineq else 0.0
    from .solvers.base import Status

    ymag = float(np.max(np.abs(np.concatenate([bounds.lower[-1], bounds.upper[-1]])), initial=0.0))
    tau = 1e-6 + 1e-7 * float(np.max(np.abs(dj.d / np.where(scale > 0, scale, 1)), initial=0.0)) \
        + 1e-8 * ymag * float(np.max(np.abs(dj.Cy).sum(axis=1) / scale, initial=0.0))
    # a MILP stops as soon as its dual bound refutes the disjunct (t* ≤ −2τ < −τ)
    stop = {} if relax else {"dual_stop": -2 * tau}
    sol = be.solve(time_limit=max(time_limit, 0.05) if np.isfinite(time_limit) else None, start=st, **stop)
    if sol.status is Status.INFEASIBLE:
        return "refuted", None, "infeasible"
    if relax and sol.row_dual is not None and sol.status in (Status.OPTIMAL, Status.TIME_LIMIT):
        from .solvers.base import safe_lp_bound

        safe = safe_lp_bound(model, c, "max", sol.row_dual)  # valid for any duals (Neumaier–Shcherbina)
        if np.isfinite(safe) and safe < -tau:
            return "refuted", None, f"safe LP bound {safe:.3g} < 0"
        x = sol.x[model.x] if sol.x is not None else None
        return "open", x, sol.status.value
    if sol.dual_bound is not None and sol.dual_bound < -tau and sol.status in (Status.OPTIMAL, Status.TIME_LIMIT,
                                                                                Status.INTERRUPTED):
        return "refuted", None, f"dual bound {sol.dual_bound:.3g} < 0"
    x = sol.x[model.x] if sol.x is not None else None
    return ("timeout" if sol.status is Status.TIME_LIMIT else "open"), x, sol.status.value


def verify(query: Query, loaded: dict[str, tuple[Network, OnnxInfo]], *, timeout: float | None = None,
           solver: str = "highs", seed: int = 0, use_milp: bool = True, tighten_lp: bool = True) -> VerifyResult:
    """Decide a VNN-LIB query over ReLU networks: sat (with a checked witness), unsat, unknown, timed-out.

    Order of work per disjunct of the DNF: empty input box → cheap bounds (interval ∩
    CROWN on the network extended by the constraint rows) → attacks (sampling, PGD) →
    LP relaxation → MILP (thesis model 1.1–1.8) with the remaining time. ``unsat`` only
    when every disjunct is refuted by a bound or a MILP dual bound beyond the
    threshold (plus the floating-point margin of :func:`fp_error_bound` for float
    element types) or by MILP infeasibility. Strict inequalities are relaxed to ``≤``
    for refutation (refuting the closure refutes the strict set) and kept strict when a
    witness is checked.
    """
    import time

    from .bounds import cheap_bounds, crown_bounds
    from .domains import Box

    t0 = time.perf_counter()
    dl = _Deadline(timeout)
    prob = build_problem(query, loaded)
    res = VerifyResult("unknown", problem=prob)
    rng = np.random.default_rng(seed)
    log = res.log
    net = prob.net
    open_ = []
    cache: dict[bytes, object] = {}
    # -- stage 1: empty boxes and cheap bounds
    for dj in prob.disjuncts:
        if dj.empty:
            dj.status, dj.how = "refuted", "empty input region"
            continue
        box = Box(dj.lo, dj.hi)
        key = dj.lo.tobytes() + dj.hi.tobytes()
        if key not in cache:
            cache[key] = cheap_bounds(net, box)
        b = dj._bounds = cache[key]
        margin = np.zeros(len(dj.ops))
        if prob.dtype != "real":
            E = fp_error_bound(net, b.upper, dj.lo, dj.hi, prob.dtype)
            margin = np.abs(dj.Cy) @ E
        dj._margin = margin
        spec = None
        if dj.ops and dj.Cy.any():
            spec_net = Network(list(net.weights[:-1]) + [dj.Cy @ net.weights[-1]],
                               list(net.biases[:-1]) + [dj.Cy @ net.biases[-1]])
            spec = crown_bounds(spec_net, box)
        rlo, rhi = _min_max_rows(dj, net, spec, b.lower[-1], b.upper[-1])
        if _refuted_by_range(dj, rlo, rhi, margin):
            dj.status, dj.how = "refuted", "bounds"
        else:
            open_.append(dj)
        if dl.over():
            return _finish(res, "timed-out", t0)
    log.append(f"bounds: {len(prob.disjuncts) - len(open_)}/{len(prob.disjuncts)} disjuncts refuted")
    # -- stage 2: attacks
    for dj in open_:
        z = _attack(prob, dj, rng)
        if z is not None:
            res.values = check_witness(prob, z, (dj.lo, dj.hi))
            log.append(f"attack found a witness for disjunct {dj.index}")
            return _finish(res, "sat", t0)
        if dl.over():
            return _finish(res, "timed-out", t0)
    # -- stage 3: LP relaxation, stage 4: MILP
    for stage in ("lp", "milp") if use_milp else ("lp",):
        still = []
        for i, dj in enumerate(open_):
            if dl.over():
                return _finish(res, "timed-out", t0)
            budget = dl.left() / max(1, len(open_) - i) if stage == "milp" else dl.left()
            n_unstable = sum(int(dj._bounds.unstable(l).sum()) for l in range(net.depth))
            log.append(f"disjunct {dj.index}: {n_unstable} unstable neurons under the cheap bounds")
            if stage == "milp" and tighten_lp and n_unstable > TIGHTEN_ABOVE:
                dj._bounds = _tightened(net, dj, cache, 0.3 * budget)
                budget = dl.left() / max(1, len(open_) - i)
            verdict, x, why = _solve_disjunct(prob, dj, dj._bounds, dj._margin, relax=(stage == "lp"),
                                              time_limit=budget, solver=solver)
            if verdict == "refuted":
                dj.status, dj.how = "refuted", f"{stage}: {why}"
                continue
            if x is not None:
                cand = _attack(prob, dj, rng, n_samples=0, steps=20, restarts=1, starts=x[None])
                if cand is not None:
                    res.values = check_witness(prob, cand, (dj.lo, dj.hi))
                    log.append(f"{stage} solution of disjunct {dj.index} checked in float64 and onnxruntime")
                    return _finish(res, "sat", t0)
            still.append(dj)
        log.append(f"{stage}: {len(open_) - len(still)} more disjuncts refuted, {len(still)} open")
        open_ = still
    if not open_:
        return _finish(res, "unsat", t0)
    return _finish(res, "timed-out" if dl.over() else "unknown", t0)


def _tightened(net: Network, dj: Disjunct, cache: dict, time_limit: float):
    """LP bound tightening (Algorithm 3, :mod:`nnmiplib.bounder`) of the disjunct's box, cached."""
    from .bounds import compute_bounds
    from .domains import Box

    key = b"lp" + dj.lo.tobytes() + dj.hi.tobytes()
    if key not in cache:
        if not time_limit > 0.05:
            return dj._bounds
        try:
            cache[key] = compute_bounds(net, Box(dj.lo, dj.hi), "lp", initial=dj._bounds, time_limit=time_limit,
                                        progress=False)
        except Exception as exc:  # keep the cheap bounds: tightening is an optimisation only
            import logging

            logging.getLogger(__name__).warning("LP bound tightening failed (%s); using cheap bounds", exc)
            return dj._bounds
    return cache[key]


def _finish(res: VerifyResult, status: str, t0: float) -> VerifyResult:
    import time

    res.status = status
    if status == "sat" and res.values is None:  # the witness failed its final check
        res.status = "unknown"
    res.time = time.perf_counter() - t0
    return res
