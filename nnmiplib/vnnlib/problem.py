"""VNN-LIB query + ONNX networks → one :class:`Problem` with a :class:`Disjunct` per DNF term.

All declared networks become **one** :class:`~nnmiplib.network.Network` on a shared
input (the comparator of chapter 4): input variables that the query identifies in every
disjunct (``X[i] == U[j]``) are merged into one input column; the first layers are
stacked on the merged inputs, the later layers are block-diagonal, a shallower network
is padded with identity layers after its last hidden layer (exact: post-ReLU values are
non-negative, so ``ReLU(I h) = h``), and the outputs are concatenated. A single network
is used as it is. Each query column is then an input ``z[k]`` or an output ``y[j]`` of
the combined network, and each disjunct of the DNF becomes an input box (single-variable
bounds, widened outward by one ulp when a division rounds) plus linear rows over
``(z, y)``. The engine that decides the disjuncts is :mod:`nnmiplib.vnnlib.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..network import Network
from ..onnx_io import OnnxInfo, read_graph
from .query import LinCon, Query

__all__ = ["SUPPORTED_DTYPES", "Disjunct", "Problem", "build_problem", "load_onnx"]

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


def load_onnx(path, name: str | None = None) -> tuple[Network, OnnxInfo]:
    """Read an ONNX file into a :class:`~nnmiplib.Network` and describe its interface (:class:`OnnxInfo`).

    Raises ``ValueError`` for graphs that are not a single-input single-output fully
    connected ReLU network (naming the operator and node), ``FileNotFoundError`` if
    ``path`` does not exist.
    """
    from pathlib import Path

    weights, biases, info = read_graph(path)
    return Network(weights, biases, name=name or Path(path).stem), info


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
