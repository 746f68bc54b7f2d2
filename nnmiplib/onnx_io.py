"""ONNX in and out for fully connected ReLU networks (SPEC §0: N = (W, B)), as arrays.

:func:`read_graph` returns the layers ``(weights, biases)`` of a graph and its interface
(:class:`OnnxInfo`); :func:`graph_bytes` serialises layers as a graph and
:func:`write_graph` hands those bytes to a writer. They work on arrays so that
:class:`~nnmiplib.Network` (``Network.from_onnx`` / ``Network.to_onnx``) sits above this
module; :func:`nnmiplib.vnnlib.load_onnx` gives a network and its interface at once.

Reading walks the graph in topological order and keeps every data-dependent tensor as an
affine map of the last post-ReLU vector, ``t = A h + c`` (flattened row-major, with its
shape tracked). :data:`OPERATORS` is the one table of what the reader accepts (and what
``nnmiplib supports --onnx-operators`` reports):

- affine operators compose into (A, c): ``Gemm``, ``MatMul`` with one constant operand,
  ``Add``/``Sub`` (of a constant, or of two tensors on the same post-ReLU vector),
  ``Mul``/``Div`` by a constant, ``BatchNormalization`` (inference, per channel on axis 1).
  ``Add``/``Sub``/``Mul``/``Div`` broadcast multidirectionally (numpy rules, any ranks);
- data-movement operators select, repeat or reorder elements: ``Flatten``, ``Reshape``,
  ``Squeeze``, ``Unsqueeze``, ``Identity``, ``Dropout`` (inference), ``Transpose``,
  ``Slice``, ``Gather`` (constant indices), ``Concat`` (of data-dependent tensors on the
  same post-ReLU vector and constants). They are evaluated by :mod:`onnx.reference` on a
  tensor of element *indices* — the element each output takes is read off, so they are
  exact and follow the ONNX definitions (negative indices, steps, axes) without
  hand-written index arithmetic;
- ``Cast`` between float types, when it does not narrow below the graph input's element
  type (then it is the identity in real arithmetic, and the floating-point margins of
  :mod:`nnmiplib.vnnlib.witness` cover it); ``Shape``, ``Constant``, ``ConstantOfShape``;
- ``Relu`` closes a layer (W^l, b^l) = (A, c) and starts a new identity map.

An input normalisation (``Sub``/``Div``/``Mul`` by constants) is therefore folded exactly
(in real arithmetic) into the first layer. Nodes whose inputs are all constants are
evaluated by :mod:`onnx.reference`. A graph that uses only these operators but leaves the
affine-ReLU fragment — a product of two data-dependent tensors (``X * X``), a division
by one, a data-dependent shape or index argument, a narrowing cast, branches on
different post-ReLU vectors — raises :class:`UnsupportedConstructError` (a
``ValueError``) with a one-line reason; an operator outside the table raises a plain
``ValueError`` naming it.

Graphs are read with the ``onnx`` package (no hand-parsed protobuf).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ONNX_OPSET_RANGE", "OPERATORS", "SUPPORTED_OPS", "OnnxInfo", "UnsupportedConstructError", "graph_bytes",
           "read_graph", "write_graph"]

log = logging.getLogger(__name__)

#: The one table of operators the reader accepts: name → how (``supports --onnx-operators`` lists the names).
OPERATORS = {
    "Gemm": "affine (constant B and C)",
    "MatMul": "one constant operand",
    "Add": "a constant, or two tensors on the same post-ReLU vector; multidirectional broadcasting",
    "Sub": "a constant, or two tensors on the same post-ReLU vector; multidirectional broadcasting",
    "Mul": "by a constant; multidirectional broadcasting",
    "Div": "by a non-zero constant; multidirectional broadcasting",
    "BatchNormalization": "inference, per channel (axis 1)",
    "Relu": "closes a layer",
    "Flatten": "data movement",
    "Reshape": "data movement (constant shape)",
    "Squeeze": "data movement (constant axes)",
    "Unsqueeze": "data movement (constant axes)",
    "Identity": "data movement",
    "Dropout": "inference: the identity",
    "Transpose": "data movement",
    "Slice": "data movement (constant starts, ends, axes, steps)",
    "Gather": "data movement (constant indices)",
    "Concat": "data movement (tensors on the same post-ReLU vector, and constants)",
    "Cast": "between float types, not narrower than the graph input",
    "Shape": "of any tensor (a constant)",
    "Constant": "tensor-valued",
    "ConstantOfShape": "of a constant shape",
}
#: Operators this reader understands (reported by ``nnmiplib supports --onnx-operators``).
SUPPORTED_OPS = tuple(OPERATORS)
#: Opset range tested with this reader (Reshape/Squeeze forms of opset 5-24 handled).
ONNX_OPSET_RANGE = (7, 24)

#: Data-movement operators: the positions of their data inputs ("all": every input).
_MOVE_OPS = {"Flatten": (0,), "Reshape": (0,), "Squeeze": (0,), "Unsqueeze": (0,), "Identity": (0,),
             "Dropout": (0,), "Transpose": (0,), "Slice": (0,), "Gather": (0,), "Concat": "all"}
#: ONNX float element types and their widths in bits (Cast on data-dependent tensors).
_FLOAT_BITS = {1: 32, 10: 16, 11: 64, 16: 16}


class UnsupportedConstructError(ValueError):
    """The graph uses supported operators outside the affine-ReLU fragment (e.g. ``X * X``)."""


@dataclass(frozen=True)
class OnnxInfo:
    """The interface of an ONNX model: names, shapes and element types of its I/O."""

    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str        # ONNX "Set 1" name, e.g. "float32"
    output_name: str
    output_shape: tuple[int, ...]
    output_dtype: str
    opset: int
    path: str

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        return int(np.prod(self.output_shape))


def _dtype_name(elem_type: int) -> str:
    import onnx

    return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def _shape_of(value_info) -> tuple[int, ...]:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else 1)
    return tuple(dims)


class _Dyn:
    """A data-dependent tensor: flat value ``A @ h + c`` with a tracked ``shape``; ``basis``
    numbers the post-ReLU vector ``h`` (0: the graph input, k: the output of the k-th Relu)."""

    def __init__(self, A: np.ndarray, c: np.ndarray, shape: tuple[int, ...], basis: int):
        self.A, self.c, self.shape, self.basis = A, c, tuple(int(s) for s in shape), int(basis)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def take(self, idx: np.ndarray) -> _Dyn:
        """The tensor whose elements are this one's at the flat indices ``idx`` (shape of ``idx``)."""
        flat = np.asarray(idx, dtype=np.int64).reshape(-1)
        return _Dyn(self.A[flat], self.c[flat], np.shape(idx), self.basis)


def _err(node, msg: str, cls=ValueError) -> ValueError:
    return cls(f"ONNX node {node.name or '<unnamed>'!r} ({node.op_type}): {msg}")


def _unsupported(node, msg: str) -> UnsupportedConstructError:
    return _err(node, msg, UnsupportedConstructError)


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _run_node(node, inputs: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    """Evaluate one node on the given input arrays with the ONNX reference runtime."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = [numpy_helper.from_array(np.asarray(inputs[n]), name=n) for n in node.input if n]
    outs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o]
    graph = helper.make_graph([node], "fold", [], outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 7))])
    return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, {})]


def _broadcast_flat(const: np.ndarray, shape: tuple[int, ...], node) -> np.ndarray:
    """``const`` broadcast unidirectionally to ``shape`` (Gemm's C), flattened."""
    try:
        out_shape = np.broadcast_shapes(np.shape(const), shape)
    except ValueError:
        raise _err(node, f"constant of shape {np.shape(const)} does not broadcast to {shape}") from None
    if out_shape != tuple(shape):
        raise _err(node, f"constant of shape {np.shape(const)} would enlarge the tensor {shape}")
    return np.broadcast_to(np.asarray(const, dtype=np.float64), shape).reshape(-1)


def _broadcast(x: _Dyn, shape: tuple[int, ...]) -> _Dyn:
    """``x`` broadcast (numpy / ONNX multidirectional rules) to ``shape``, repeating its elements."""
    if x.shape == tuple(shape):
        return x
    return x.take(np.broadcast_to(np.arange(x.size).reshape(x.shape), shape))


def _elementwise(node, op: str, a, b) -> _Dyn:
    """``a op b`` for Add/Sub/Mul/Div with at least one data-dependent operand (multidirectional broadcasting)."""
    da, db = isinstance(a, _Dyn), isinstance(b, _Dyn)
    sa = a.shape if da else np.shape(a)
    sb = b.shape if db else np.shape(b)
    try:
        shape = np.broadcast_shapes(sa, sb)
    except ValueError:
        raise _err(node, f"operands of shapes {sa} and {sb} do not broadcast (numpy rules)") from None
    if da and db:
        if op in ("Mul", "Div"):
            what = "a product" if op == "Mul" else "a division"
            raise _unsupported(node, f"{what} of two data-dependent tensors is not affine")
        if a.basis != b.basis:
            raise _unsupported(node, "operands computed from different ReLU layers (a branch or skip "
                                     "connection); only chains of layers are supported")
        x, y = _broadcast(a, shape), _broadcast(b, shape)
        sgn = 1.0 if op == "Add" else -1.0
        return _Dyn(x.A + sgn * y.A, x.c + sgn * y.c, shape, x.basis)
    x = _broadcast(a if da else b, shape)
    k = np.broadcast_to(np.asarray(b if da else a, dtype=np.float64), shape).reshape(-1)
    if op == "Add":
        return _Dyn(x.A, x.c + k, shape, x.basis)
    if op == "Sub":
        return _Dyn(x.A, x.c - k, shape, x.basis) if da else _Dyn(-x.A, k - x.c, shape, x.basis)
    if op == "Mul":
        return _Dyn(k[:, None] * x.A, k * x.c, shape, x.basis)
    if not da:
        raise _unsupported(node, "division by a data-dependent tensor is not affine")
    if np.any(k == 0):
        raise _err(node, "division by zero")
    return _Dyn(x.A / k[:, None], x.c / k, shape, x.basis)


def _move(node, ins: list[str], dyn: dict, consts: dict, opset: int) -> _Dyn:
    """A data-movement operator, run by the reference runtime on element indices (see the module docs)."""
    spec = _MOVE_OPS[node.op_type]
    data_pos = [i for i, n in enumerate(ins) if n] if spec == "all" else [i for i in spec if i < len(ins)]
    feeds: dict[str, np.ndarray] = {}
    rows_A, rows_c, offset, basis = [], [], 0, None
    for i, name in enumerate(ins):
        if not name or name in feeds:
            continue
        if i not in data_pos:
            if name in dyn:
                raise _unsupported(node, f"input {i} ({name!r}) must be a constant, it depends on the network input")
            if name not in consts:
                raise _err(node, f"input {name!r} is neither a constant nor computed earlier")
            feeds[name] = consts[name]
            continue
        if name in dyn:
            x = dyn[name]
            if basis is not None and x.basis != basis:
                raise _unsupported(node, "inputs computed from different ReLU layers; only chains of layers "
                                         "are supported")
            basis = x.basis
            A, c, shape = x.A, x.c, x.shape
        else:
            if name not in consts:
                raise _err(node, f"input {name!r} is neither a constant nor computed earlier")
            v = np.asarray(consts[name], dtype=np.float64)
            A, c, shape = None, v.reshape(-1), v.shape
        rows_A.append(A)
        rows_c.append(c)
        size = int(np.prod(shape)) if shape else 1
        feeds[name] = (offset + np.arange(size, dtype=np.float64)).reshape(shape)  # exact below 2**53
        offset += size
    n_h = next(A.shape[1] for A in rows_A if A is not None)
    A = np.vstack([a if a is not None else np.zeros((c.size, n_h)) for a, c in zip(rows_A, rows_c)])
    c = np.concatenate(rows_c)
    try:
        out = _run_node(node, feeds, opset)[0]
    except Exception as exc:  # noqa: BLE001 -- the reference runtime's own errors: one clear message
        raise _err(node, f"cannot evaluate ({type(exc).__name__}: {exc})") from None
    idx = np.asarray(out, dtype=np.float64)
    if idx.size and (np.any(idx != np.round(idx)) or idx.min() < 0 or idx.max() >= offset):
        raise _err(node, "did not move elements (not a data-movement operator here)")
    return _Dyn(A, c, (), basis).take(idx.astype(np.int64))


def _matmul(node, a, b, dyn_left: bool) -> _Dyn:
    """x @ W (dyn_left) or W @ x for a vector-like dynamic tensor."""
    if dyn_left:
        x, W = a, np.asarray(b, dtype=np.float64)
        if W.ndim != 2 or x.shape[-1] != W.shape[0] or x.size != W.shape[0]:
            raise _err(node, f"needs a (…, {W.shape[0] if W.ndim == 2 else '?'}) vector input; got {x.shape} @ {W.shape}")
        M = W.T
        shape = x.shape[:-1] + (W.shape[1],)
    else:
        W, x = np.asarray(a, dtype=np.float64), b
        if W.ndim != 2 or x.size != W.shape[1] or not (
                len(x.shape) == 1 or (x.shape[-1] == 1 and x.shape[-2] == W.shape[1])):
            raise _err(node, f"needs W @ x with x of shape (…, {W.shape[-1]}, 1); got {W.shape} @ {x.shape}")
        M = W
        shape = (W.shape[0],) if len(x.shape) == 1 else tuple(x.shape[:-2]) + (W.shape[0], 1)
    return _Dyn(M @ x.A, M @ x.c, shape, x.basis)


def _read_node(node, dyn: dict, consts: dict, weights: list, biases: list, opset: int, in_bits: int) -> None:
    """Fold one node into the tracked tensors (``dyn``, ``consts``) and the closed layers."""
    from onnx import numpy_helper

    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        raise _err(node, f"operator from domain {node.domain!r} is not supported")
    if op not in OPERATORS:
        raise _err(node, f"unsupported operator {op}; supported: {', '.join(SUPPORTED_OPS)}")
    ins = [n for n in node.input]
    is_dyn = [n in dyn for n in ins if n]
    if op == "Constant":
        a = _attrs(node)
        if "value" not in a:
            raise _err(node, f"only tensor-valued Constant nodes are supported (got {sorted(a)})")
        consts[node.output[0]] = numpy_helper.to_array(a["value"])
        return
    if not any(is_dyn):
        missing = [n for n in ins if n and n not in consts]
        if missing:
            raise _err(node, f"input(s) {missing} are neither constants nor computed earlier")
        for o, v in zip(node.output, _run_node(node, consts, opset)):
            consts[o] = v
        return
    first = ins[0]
    a = _attrs(node)
    if op in _MOVE_OPS:
        dyn[node.output[0]] = _move(node, ins, dyn, consts, opset)
        return
    if op == "Shape":
        full = dyn[first].shape
        lo, hi = a.get("start", 0), a.get("end", len(full))
        consts[node.output[0]] = np.array(full[lo:hi], dtype=np.int64)
        return
    if op == "Relu":
        x = dyn[first]
        if x.basis != len(weights):
            raise _unsupported(node, "applied to a tensor of an earlier layer (a branch); only chains of "
                                     "layers are supported")
        weights.append(x.A)
        biases.append(x.c)
        dyn[node.output[0]] = _Dyn(np.eye(x.size), np.zeros(x.size), x.shape, len(weights))
        return
    if op == "Cast":
        bits = _FLOAT_BITS.get(int(a.get("to", 0)))
        if bits is None:
            raise _unsupported(node, "only casts between float types are supported on the data-dependent tensor")
        if bits < in_bits:
            raise _unsupported(node, f"a cast to a {bits}-bit float narrows the {in_bits}-bit graph input "
                                     "(it rounds); not supported")
        dyn[node.output[0]] = dyn[first]
        return
    if op in ("Add", "Sub", "Mul", "Div"):
        if len(ins) != 2 or any(n not in dyn and n not in consts for n in ins):
            raise _err(node, "needs two inputs, each a constant or computed earlier")
        x, y = (dyn.get(n, consts.get(n)) for n in ins)
        dyn[node.output[0]] = _elementwise(node, op, x, y)
        return
    if sum(is_dyn) > 1:
        raise _unsupported(node, "more than one operand depends on the network input (only affine maps "
                                 "of one tensor are supported)")
    if op in ("Gemm", "MatMul"):
        if op == "MatMul":
            left = first in dyn
            res = _matmul(node, dyn[ins[0]] if left else consts[ins[0]],
                          consts[ins[1]] if left else dyn[ins[1]], left)
        else:
            alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
            tA, tB = int(a.get("transA", 0)), int(a.get("transB", 0))
            if first not in dyn:
                raise _unsupported(node, "the data-dependent tensor must be the first operand A")
            x = dyn[first]
            if len(x.shape) != 2:
                raise _err(node, f"operand A must be 2-D, got shape {x.shape}")
            if tA:
                if x.shape[1] != 1:
                    raise _err(node, f"transA=1 needs A of shape (n, 1), got {x.shape}")
                x = _Dyn(x.A, x.c, (1, x.shape[0]), x.basis)
            B = np.asarray(consts[ins[1]], dtype=np.float64)
            B = B.T if tB else B
            res = _matmul(node, x, B * alpha, True)
            if len(ins) > 2 and ins[2]:
                res.c = res.c + beta * _broadcast_flat(consts[ins[2]], res.shape, node)
        dyn[node.output[0]] = res
        return
    if op == "BatchNormalization":
        x = dyn[first]
        if first != ins[0] or any(n in dyn for n in ins[1:]):
            raise _unsupported(node, "scale, bias, mean and variance must be constants")
        if len(x.shape) < 2:
            raise _err(node, f"needs a tensor of rank ≥ 2 (N, C, …), got shape {x.shape}")
        scale, bias, mean, var = (np.asarray(consts[n], dtype=np.float64).reshape(-1) for n in ins[1:5])
        s = scale / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        per_channel = (x.shape[1],) + (1,) * (len(x.shape) - 2)
        y = _elementwise(node, "Mul", x, s.reshape(per_channel))
        dyn[node.output[0]] = _elementwise(node, "Add", y, (bias - s * mean).reshape(per_channel))
        return
    raise _unsupported(node, f"operator {op} is not supported on the data-dependent tensor")

def read_graph(path) -> tuple[list[np.ndarray], list[np.ndarray], OnnxInfo]:
    """Read an ONNX file's layers ``(weights, biases)`` (weights out×in) and describe its interface.

    Raises
    ------
    UnsupportedConstructError
        (a ``ValueError``) For a graph of supported operators (:data:`OPERATORS`) that is
        not an affine-ReLU chain, e.g. ``X * X`` or a division by a data-dependent tensor.
    ValueError
        For graphs that are not a single-input single-output network, or that use an
        operator outside :data:`OPERATORS`, naming the operator and node.
    FileNotFoundError
        If ``path`` does not exist.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no ONNX file at {path}")
    try:
        if path.suffix == ".gz":
            import gzip

            with gzip.open(path, "rb") as f:
                model = onnx.load_model_from_string(f.read())
        else:
            model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 -- any parse failure becomes one clear ValueError
        raise ValueError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    g = model.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ValueError(
            f"{path}: the graph has {len(inputs)} data inputs and {len(g.output)} outputs; "
            "only single-input single-output networks are supported (VNN-LIB theory SIO)"
        )
    inp, out = inputs[0], g.output[0]
    in_shape = _shape_of(inp) or (1,)
    in_bits = _FLOAT_BITS.get(inp.type.tensor_type.elem_type, 0)
    n0 = int(np.prod(in_shape))
    dyn: dict[str, _Dyn] = {inp.name: _Dyn(np.eye(n0), np.zeros(n0), in_shape, 0)}
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []

    for node in g.node:  # ONNX requires topological order
        try:
            _read_node(node, dyn, consts, weights, biases, opset, in_bits)
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 -- a malformed node: one clear error, never a traceback
            raise _err(node, f"malformed node ({type(exc).__name__}: {exc})") from None

    if out.name not in dyn:
        raise UnsupportedConstructError(f"{path}: the graph output {out.name!r} does not depend on the input")
    y = dyn[out.name]
    if y.basis != len(weights):
        raise UnsupportedConstructError(f"{path}: the graph output {out.name!r} is computed from an earlier layer "
                                        "than the last Relu (a branch); only chains of layers are supported")
    weights.append(y.A)
    biases.append(y.c)
    out_shape = _shape_of(out) or y.shape
    info = OnnxInfo(
        input_name=inp.name, input_shape=tuple(in_shape),
        input_dtype=_dtype_name(inp.type.tensor_type.elem_type), output_name=out.name,
        output_shape=tuple(out_shape) if int(np.prod(out_shape)) == y.size else y.shape,
        output_dtype=_dtype_name(out.type.tensor_type.elem_type), opset=int(opset), path=str(path),
    )
    return weights, biases, info


def graph_bytes(weights, biases, input_shape=None, *, name: str | None = None, dtype: str = "float32",
                opset: int = 17) -> bytes:
    """The layers ``(weights, biases)`` as a serialised ONNX model: ``Flatten`` (if needed) → ``Gemm``/``Relu`` → ``Gemm``.

    Parameters
    ----------
    input_shape : tuple, optional
        Shape of the graph input, default ``(1, n_inputs)``; inputs such as
        ``(1, 1, 28, 28)`` are flattened row-major first.
    dtype : {"float32", "float64"}
        Element type of the graph (float32 is what the field exchanges; float64 keeps
        the parameters exactly).

    Returns
    -------
    bytes
        The model, checked by :func:`onnx.checker.check_model`.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    np_t = np.float32 if dtype == "float32" else np.float64
    et = TensorProto.FLOAT if dtype == "float32" else TensorProto.DOUBLE
    n_inputs, n_outputs, depth = int(np.shape(weights[0])[1]), int(np.shape(weights[-1])[0]), len(weights) - 1
    input_shape = tuple(input_shape) if input_shape is not None else (1, n_inputs)
    if int(np.prod(input_shape)) != n_inputs:
        raise ValueError(f"input_shape {input_shape} has {int(np.prod(input_shape))} entries; the network takes {n_inputs}")
    nodes, inits = [], []
    cur = "input"
    if input_shape != (1, n_inputs):
        nodes.append(helper.make_node("Reshape", [cur, "flat_shape"], ["flat"], name="flatten"))
        inits.append(numpy_helper.from_array(np.array([1, n_inputs], dtype=np.int64), "flat_shape"))
        cur = "flat"
    for l, (W, b) in enumerate(zip(weights, biases)):
        inits.append(numpy_helper.from_array(np.asarray(W, dtype=np_t), f"W{l}"))
        inits.append(numpy_helper.from_array(np.asarray(b, dtype=np_t), f"b{l}"))
        last = l == depth
        gout = "output" if last else f"a{l}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{l}", f"b{l}"], [gout], name=f"gemm{l}", transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [gout], [f"h{l}"], name=f"relu{l}"))
            cur = f"h{l}"
    graph = helper.make_graph(
        nodes, name or "network",
        [helper.make_tensor_value_info("input", et, list(input_shape))],
        [helper.make_tensor_value_info("output", et, [1, n_outputs])], initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="nnmiplib")
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_graph(weights, biases, path, input_shape=None, *, writer, name: str | None = None,
                dtype: str = "float32", opset: int = 17) -> Path:
    """Write the layers as an ONNX model (:func:`graph_bytes`) to ``path`` through ``writer``.

    The model is serialised completely before ``writer(path, data)`` is called, so with
    an atomic writer (:func:`nnmiplib.paths.atomic_write_bytes`, which this module sits
    beside and does not import) a failed write leaves an existing file intact.
    """
    data = graph_bytes(weights, biases, input_shape, name=name, dtype=dtype, opset=opset)
    path = Path(path)
    writer(path, data)
    return path
