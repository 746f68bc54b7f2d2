"""ONNX in and out for fully connected ReLU networks (SPEC §0: N = (W, B)), as arrays.

:func:`read_graph` returns the layers ``(weights, biases)`` of a graph and its interface
(:class:`OnnxInfo`); :func:`write_graph` writes layers as a graph. They work on arrays so
that :class:`~nnmiplib.Network` (``Network.from_onnx`` / ``Network.to_onnx``) sits above
this module; :func:`nnmiplib.vnnlib.load_onnx` gives a network and its interface at once.

Reading walks the graph in topological order and keeps the single data-dependent
tensor as an affine map of the last post-ReLU vector, ``t = A h + c``. Affine operators
(``Gemm``, ``MatMul``, ``Add``/``Sub``/``Mul``/``Div`` by constants, ``BatchNormalization``)
compose into (A, c); shape operators (``Flatten``, ``Reshape``, ``Squeeze``, ``Unsqueeze``,
``Identity``, ``Dropout``) only change the tracked shape, because every tensor is
flattened in row-major order; ``Relu`` closes a layer (W^l, b^l) = (A, c) and starts a
new identity map. An input normalisation (``Sub``/``Div``/``Mul`` by constants) is
therefore folded exactly (in real arithmetic) into the first layer. Nodes whose
inputs are all constants are evaluated by :mod:`onnx.reference`.

Graphs are read with the ``onnx`` package (no hand-parsed protobuf).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ONNX_OPSET_RANGE", "SUPPORTED_OPS", "OnnxInfo", "read_graph", "write_graph"]

log = logging.getLogger(__name__)

#: Operators this reader understands (reported by ``nnmiplib supports --onnx-operators``).
SUPPORTED_OPS = (
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Flatten", "Reshape", "Squeeze",
    "Unsqueeze", "Identity", "Dropout", "Constant", "BatchNormalization",
)
#: Also accepted: on constants only (shape arithmetic of exported graphs), or as a float cast.
_CONST_OPS = ("Shape", "Gather", "Concat", "Cast", "ConstantOfShape", "Slice")
#: Opset range tested with this reader (Reshape/Squeeze forms of opset 5-24 handled).
ONNX_OPSET_RANGE = (7, 24)

_SHAPE_OPS = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout"}


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
    """The data-dependent tensor: flat value ``A @ h + c`` with a tracked ``shape``."""

    def __init__(self, A: np.ndarray, c: np.ndarray, shape: tuple[int, ...]):
        self.A, self.c, self.shape = A, c, tuple(int(s) for s in shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


def _err(node, msg: str) -> ValueError:
    return ValueError(f"ONNX node {node.name or '<unnamed>'!r} ({node.op_type}): {msg}")


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _fold_constant(node, consts: dict, opset: int) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constants with the ONNX reference runtime."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    ins = [n for n in node.input if n]
    inits = [numpy_helper.from_array(np.asarray(consts[n]), name=n) for n in ins]
    outs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output]
    graph = helper.make_graph([node], "fold", [], outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 7))])
    return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, {})]


def _broadcast_flat(const: np.ndarray, shape: tuple[int, ...], node) -> np.ndarray:
    try:
        out_shape = np.broadcast_shapes(np.shape(const), shape)
    except ValueError:
        raise _err(node, f"constant of shape {np.shape(const)} does not broadcast to {shape}") from None
    if int(np.prod(out_shape)) != int(np.prod(shape)):
        raise _err(node, f"constant of shape {np.shape(const)} would enlarge the tensor {shape}")
    return np.broadcast_to(np.asarray(const, dtype=np.float64), shape).reshape(-1)


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
    return _Dyn(M @ x.A, M @ x.c, shape)


def read_graph(path) -> tuple[list[np.ndarray], list[np.ndarray], OnnxInfo]:
    """Read an ONNX file's layers ``(weights, biases)`` (weights out×in) and describe its interface.

    Raises
    ------
    ValueError
        For graphs that are not a single-input single-output fully connected ReLU
        network, naming the unsupported operator and node.
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
    n0 = int(np.prod(in_shape))
    dyn: dict[str, _Dyn] = {inp.name: _Dyn(np.eye(n0), np.zeros(n0), in_shape)}
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []

    for node in g.node:  # ONNX requires topological order
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise _err(node, f"operator from domain {node.domain!r} is not supported")
        ins = [n for n in node.input]
        is_dyn = [n in dyn for n in ins if n]
        if op == "Constant":
            a = _attrs(node)
            if "value" not in a:
                raise _err(node, f"only tensor-valued Constant nodes are supported (got {sorted(a)})")
            consts[node.output[0]] = numpy_helper.to_array(a["value"])
            continue
        if not any(is_dyn):
            if op not in SUPPORTED_OPS + _CONST_OPS:
                raise _err(node, f"unsupported operator {op}; supported: {', '.join(SUPPORTED_OPS)}")
            missing = [n for n in ins if n and n not in consts]
            if missing:
                raise _err(node, f"input(s) {missing} are neither constants nor computed earlier")
            for o, v in zip(node.output, _fold_constant(node, consts, opset)):
                consts[o] = v
            continue
        if op not in SUPPORTED_OPS + ("Shape", "Cast"):
            raise _err(node, f"unsupported operator {op}; supported: {', '.join(SUPPORTED_OPS)}")
        first = ins[0]
        a = _attrs(node)
        if op in _SHAPE_OPS:
            x = dyn[first]
            if any(n in dyn for n in ins[1:] if n):
                raise _err(node, "the shape argument must be constant")
            if op == "Flatten":
                ax = a.get("axis", 1)
                ax = ax + len(x.shape) if ax < 0 else ax
                shape = (int(np.prod(x.shape[:ax])), int(np.prod(x.shape[ax:])))
            elif op == "Reshape":
                target = [int(v) for v in (consts[ins[1]] if len(ins) > 1 else a["shape"])]
                target = [x.shape[i] if (v == 0 and not a.get("allowzero", 0)) else v for i, v in enumerate(target)]
                if -1 in target:
                    known = int(np.prod([v for v in target if v != -1]))
                    target[target.index(-1)] = x.size // max(known, 1)
                shape = tuple(target)
            elif op in ("Squeeze", "Unsqueeze"):
                axes = a.get("axes")
                if axes is None and len(ins) > 1 and ins[1]:
                    axes = [int(v) for v in consts[ins[1]]]
                if op == "Squeeze":
                    axes = [i for i, s in enumerate(x.shape) if s == 1] if axes is None else axes
                    axes = {ax % len(x.shape) for ax in axes}
                    shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)
                else:
                    shape = list(x.shape)
                    for ax in sorted(ax % (len(x.shape) + len(axes)) for ax in axes):
                        shape.insert(ax, 1)
                    shape = tuple(shape)
            else:  # Identity, Dropout (inference)
                shape = x.shape
            if int(np.prod(shape)) != x.size:
                raise _err(node, f"reshape {x.shape} → {shape} changes the number of elements")
            dyn[node.output[0]] = _Dyn(x.A, x.c, shape)
            continue
        if op == "Shape":
            consts[node.output[0]] = np.array(dyn[first].shape, dtype=np.int64)
            continue
        if op == "Relu":
            x = dyn[first]
            weights.append(x.A)
            biases.append(x.c)
            dyn[node.output[0]] = _Dyn(np.eye(x.size), np.zeros(x.size), x.shape)
            continue
        if op == "Cast":
            if int(a.get("to", 0)) not in (1, 11):  # FLOAT, DOUBLE
                raise _err(node, "only casts to float32/float64 are supported on the data-dependent tensor")
            dyn[node.output[0]] = dyn[first]
            continue
        if sum(is_dyn) > 1:
            raise _err(node, "both operands depend on the input (only affine maps of one tensor are supported)")
        if op in ("Gemm", "MatMul"):
            if op == "MatMul":
                left = first in dyn
                res = _matmul(node, dyn[ins[0]] if left else consts[ins[0]],
                              consts[ins[1]] if left else dyn[ins[1]], left)
            else:
                alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
                tA, tB = int(a.get("transA", 0)), int(a.get("transB", 0))
                if first not in dyn:
                    raise _err(node, "the data-dependent tensor must be the first operand A")
                x = dyn[first]
                if len(x.shape) != 2:
                    raise _err(node, f"operand A must be 2-D, got shape {x.shape}")
                if tA:
                    if x.shape[1] != 1:
                        raise _err(node, f"transA=1 needs A of shape (n, 1), got {x.shape}")
                    x = _Dyn(x.A, x.c, (1, x.shape[0]))
                B = np.asarray(consts[ins[1]], dtype=np.float64)
                B = B.T if tB else B
                res = _matmul(node, x, B * alpha, True)
                if len(ins) > 2 and ins[2]:
                    res.c = res.c + beta * _broadcast_flat(consts[ins[2]], res.shape, node)
            dyn[node.output[0]] = res
            continue
        if op in ("Add", "Sub", "Mul", "Div"):
            left = first in dyn
            x = dyn[ins[0] if left else ins[1]]
            k = _broadcast_flat(consts[ins[1] if left else ins[0]], x.shape, node)
            if op == "Add":
                res = _Dyn(x.A, x.c + k, x.shape)
            elif op == "Sub":
                res = _Dyn(x.A, x.c - k, x.shape) if left else _Dyn(-x.A, k - x.c, x.shape)
            elif op == "Mul":
                res = _Dyn(k[:, None] * x.A, k * x.c, x.shape)
            else:
                if not left:
                    raise _err(node, "division by the data-dependent tensor is not affine")
                if np.any(k == 0):
                    raise _err(node, "division by zero")
                res = _Dyn(x.A / k[:, None], x.c / k, x.shape)
            dyn[node.output[0]] = res
            continue
        if op == "BatchNormalization":
            x = dyn[first]
            if len(x.shape) < 2 or x.size != x.shape[1]:
                raise _err(node, f"only per-feature normalisation of a (1, n) tensor is supported, got {x.shape}")
            scale, bias, mean, var = (np.asarray(consts[n], dtype=np.float64).reshape(-1) for n in ins[1:5])
            s = scale / np.sqrt(var + float(a.get("epsilon", 1e-5)))
            dyn[node.output[0]] = _Dyn(s[:, None] * x.A, s * (x.c - mean) + bias, x.shape)
            continue
        raise _err(node, f"operator {op} is not supported on the data-dependent tensor")

    if out.name not in dyn:
        raise ValueError(f"{path}: the graph output {out.name!r} does not depend on the input")
    y = dyn[out.name]
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


def write_graph(weights, biases, path, input_shape=None, *, name: str | None = None, dtype: str = "float32",
                opset: int = 17) -> Path:
    """Write the layers ``(weights, biases)`` as ``Flatten`` (if needed) → ``Gemm``/``Relu`` → ``Gemm``.

    Parameters
    ----------
    input_shape : tuple, optional
        Shape of the graph input, default ``(1, n_inputs)``; inputs such as
        ``(1, 1, 28, 28)`` are flattened row-major first.
    dtype : {"float32", "float64"}
        Element type of the graph (float32 is what the field exchanges; float64 keeps
        the parameters exactly).
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
