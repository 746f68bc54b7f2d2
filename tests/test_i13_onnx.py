"""Issue 13 (3, 4): ONNX multidirectional broadcasting and the one operator table, against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnmiplib import Network
from nnmiplib.onnx_io import OPERATORS, SUPPORTED_OPS, UnsupportedConstructError, read_graph


def _save(path, nodes, inits, in_shape, out_shape, *, elem=TensorProto.FLOAT, opset=13):
    np_t = np.float32 if elem == TensorProto.FLOAT else np.float64
    tensors = [numpy_helper.from_array(v if np.asarray(v).dtype.kind == "i" else np.asarray(v, dtype=np_t), k)
               for k, v in inits.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, list(in_shape))],
                              [helper.make_tensor_value_info("y", elem, list(out_shape))], initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _ort(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def _agree(path, in_shape, n=5, seed=0, dtype=np.float32, rtol=1e-5):
    """The network read from ``path`` equals onnxruntime on random inputs (flattened row-major)."""
    net = Network.from_onnx(path)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.uniform(-2, 2, in_shape).astype(dtype)
        y = _ort(path, x)
        mine = net.forward(x.reshape(-1).astype(np.float64))
        assert mine.size == y.size
        np.testing.assert_allclose(mine, y.reshape(-1).astype(np.float64), rtol=rtol, atol=rtol)
    return net


def test_issue_example_x_times_c_enlarges_the_tensor(tmp_path):
    """Y = X * C with X (3, 1) and a constant C (1, 4): Y is (3, 4) (used to fail: 'would enlarge')."""
    C = np.random.default_rng(0).normal(size=(1, 4))
    path = _save(tmp_path / "m.onnx", [helper.make_node("Mul", ["x", "C"], ["y"], name="mul")], {"C": C},
                 (3, 1), (3, 4))
    net = _agree(path, (3, 1))
    _, _, info = read_graph(path)
    assert net.layer_sizes == (3, 12) and info.output_shape == (3, 4)


def _random_broadcast_case(rng):
    rank = int(rng.integers(1, 5))
    out = [int(d) for d in rng.integers(1, 4, rank)]

    def operand():
        r = int(rng.integers(0, rank + 1))
        return tuple(d if rng.random() < 0.5 else 1 for d in out[rank - r:])

    return operand(), operand()


@pytest.mark.parametrize("case", range(24))
def test_elementwise_broadcasting_matches_onnxruntime_on_random_shapes(tmp_path, case):
    rng = np.random.default_rng(100 + case)
    xs, cs = _random_broadcast_case(rng)
    xs = xs or (1,)
    op = ("Add", "Sub", "Mul", "Div")[case % 4]
    const_left = op != "Div" and bool(rng.random() < 0.5)
    C = rng.uniform(0.5, 2.0, cs) * rng.choice([-1.0, 1.0], cs)
    shape = np.broadcast_shapes(xs, cs)
    ins = ["C", "x"] if const_left else ["x", "C"]
    # op, then a Relu, then a second broadcast against a constant of another shape
    D = rng.normal(size=shape[-1:])
    nodes = [helper.make_node(op, ins, ["a"], name="op"), helper.make_node("Relu", ["a"], ["h"], name="relu"),
             helper.make_node("Add", ["h", "D"], ["y"], name="add")]
    path = _save(tmp_path / "b.onnx", nodes, {"C": C, "D": D}, xs, shape)
    net = _agree(path, xs, seed=case)
    assert net.layer_sizes == (int(np.prod(xs)), int(np.prod(shape)), int(np.prod(shape)))


def test_gemm_bias_still_broadcasts_one_way_only(tmp_path):
    W = np.ones((3, 2))
    path = _save(tmp_path / "g.onnx", [helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="g")],
                 {"W": W, "b": np.zeros((2, 2))}, (1, 3), (2, 2))
    with pytest.raises(ValueError, match="enlarge"):
        read_graph(path)


# --------------------------------------------------------------------------- the operator table
def _op_graph(op, tmp_path):
    """A small graph using ``op`` on the data-dependent tensor (or on constants), and its input shape."""
    rng = np.random.default_rng(sum(map(ord, op)))
    W1 = rng.normal(size=(6, 4))
    pre = [helper.make_node("Gemm", ["x", "W1", "b1"], ["a"], name="fc1", transB=1),
           helper.make_node("Relu", ["a"], ["h"], name="relu")]
    inits = {"W1": W1, "b1": rng.normal(size=6)}
    out = (1, 6)
    k = helper.make_node
    if op in ("Gemm", "Relu"):
        nodes = [k("Identity", ["h"], ["y"], name="id")]
    elif op == "MatMul":
        inits["M"] = rng.normal(size=(6, 3))
        nodes, out = [k("MatMul", ["h", "M"], ["y"], name="mm")], (1, 3)
    elif op in ("Add", "Sub", "Mul", "Div"):
        inits["K"] = rng.uniform(0.5, 2, size=(6,))
        nodes = [k(op, ["h", "K"], ["y"], name="ew")]
    elif op == "BatchNormalization":
        for n in ("s", "bb", "m"):
            inits[n] = rng.normal(size=6)
        inits["v"] = rng.uniform(0.5, 2, 6)
        nodes = [k(op, ["h", "s", "bb", "m", "v"], ["y"], name="bn")]
    elif op == "Flatten":
        nodes = [k(op, ["h"], ["y"], name="fl", axis=1)]
    elif op == "Reshape":
        inits["shp"] = np.array([2, 3], dtype=np.int64)
        nodes, out = [k(op, ["h", "shp"], ["y"], name="rs")], (2, 3)
    elif op == "Squeeze":
        inits["ax"] = np.array([0], dtype=np.int64)
        nodes, out = [k(op, ["h", "ax"], ["y"], name="sq")], (6,)
    elif op == "Unsqueeze":
        inits["ax"] = np.array([0], dtype=np.int64)
        nodes, out = [k(op, ["h", "ax"], ["y"], name="usq")], (1, 1, 6)
    elif op in ("Identity", "Dropout"):
        nodes = [k(op, ["h"], ["y"], name="same")]
    elif op == "Transpose":
        inits["shp"] = np.array([2, 3], dtype=np.int64)
        nodes, out = [k("Reshape", ["h", "shp"], ["r"], name="rs"), k(op, ["r"], ["y"], name="tr", perm=[1, 0])], (3, 2)
    elif op == "Slice":  # columns 5, 3, 1: negative start and step
        for n, v in (("st", [0, -1]), ("en", [1, -7]), ("axs", [0, 1]), ("stp", [1, -2])):
            inits[n] = np.array(v, dtype=np.int64)
        nodes, out = [k(op, ["h", "st", "en", "axs", "stp"], ["y"], name="sl")], (1, 3)
    elif op == "Gather":
        inits["idx"] = np.array([5, -1, 0, 2], dtype=np.int64)
        nodes, out = [k(op, ["h", "idx"], ["y"], name="ga", axis=1)], (1, 4)
    elif op == "Concat":
        inits["K"] = rng.normal(size=(1, 2))
        nodes, out = [k(op, ["K", "h", "h"], ["y"], name="cat", axis=1)], (1, 14)
    elif op == "Cast":
        nodes = [k(op, ["h"], ["d"], name="up", to=TensorProto.DOUBLE), k(op, ["d"], ["y"], name="down",
                                                                              to=TensorProto.FLOAT)]
    elif op == "Shape":
        nodes = [k(op, ["h"], ["s"], name="shape"), k("Reshape", ["h", "s"], ["y"], name="rs")]
    elif op == "Constant":
        nodes = [k(op, [], ["K"], name="const", value=numpy_helper.from_array(np.float32(rng.normal(size=6)))),
                 k("Add", ["h", "K"], ["y"], name="add")]
    elif op == "ConstantOfShape":
        inits["shp"] = np.array([1, 6], dtype=np.int64)
        nodes = [k(op, ["shp"], ["K"], name="cos", value=numpy_helper.from_array(np.float32([0.5]))),
                 k("Add", ["h", "K"], ["y"], name="add")]
    else:  # pragma: no cover - every table entry has a graph above
        raise AssertionError(f"no sample graph for {op}")
    return _save(tmp_path / f"{op}.onnx", pre + nodes, inits, (1, 4), out)


@pytest.mark.parametrize("op", SUPPORTED_OPS)
def test_every_operator_supports_reports_is_read_and_matches_onnxruntime(tmp_path, op):
    """`supports --onnx-operators` and the reader come from one table: each listed operator reads."""
    path = _op_graph(op, tmp_path)
    assert op in {n.op_type for n in onnx.load(str(path)).graph.node}
    _agree(path, (1, 4), seed=1)


def test_the_table_is_what_supports_reports(capfd):
    from nnmiplib.cli import main

    assert main(["supports", "--onnx-operators"]) == 0
    assert capfd.readouterr().out.split() == list(OPERATORS) == list(SUPPORTED_OPS)
    assert {"Slice", "Concat", "Transpose", "Gather", "Cast"} <= set(SUPPORTED_OPS)


def test_data_movement_combined_with_two_branches_of_one_layer(tmp_path):
    """Slice + Transpose + Concat + Gather of tensors of the same layer, then a Sub of two of them."""
    rng = np.random.default_rng(4)
    k = helper.make_node
    nodes = [k("Reshape", ["x", "s23"], ["r"], name="rs"),                         # (2, 3)
             k("Transpose", ["r"], ["t"], name="tr", perm=[1, 0]),                  # (3, 2)
             k("Slice", ["t", "st", "en", "ax"], ["u"], name="sl"),                 # (2, 2): rows 1..2
             k("Gather", ["t", "gi"], ["v"], name="ga", axis=0),                    # (2, 2): rows 2, 0
             k("Sub", ["u", "v"], ["w"], name="sub"),
             k("Concat", ["w", "u"], ["cat"], name="cat", axis=0),                  # (4, 2)
             k("Reshape", ["cat", "s18"], ["f"], name="flat"),
             k("Gemm", ["f", "W", "b"], ["a"], name="fc", transB=1),
             k("Relu", ["a"], ["y"], name="relu")]
    inits = {"s23": np.array([2, 3], dtype=np.int64), "st": np.array([1], dtype=np.int64),
             "en": np.array([3], dtype=np.int64), "ax": np.array([0], dtype=np.int64),
             "gi": np.array([2, -3], dtype=np.int64), "s18": np.array([1, 8], dtype=np.int64),
             "W": rng.normal(size=(5, 8)), "b": rng.normal(size=5)}
    path = _save(tmp_path / "mv.onnx", nodes, inits, (1, 6), (1, 5))
    net = _agree(path, (1, 6), seed=2)
    assert net.layer_sizes == (6, 5, 5)


@pytest.mark.parametrize("what", ["x_times_x", "const_div_x", "x_div_x", "narrowing_cast", "skip_connection",
                                  "data_dependent_shape"])
def test_unsupported_constructs_raise_one_clear_error(tmp_path, what):
    k = helper.make_node
    elem, inits = TensorProto.FLOAT, {}
    if what == "x_times_x":
        nodes = [k("Mul", ["x", "x"], ["y"], name="sq")]
    elif what == "const_div_x":
        inits = {"one": np.ones(3)}
        nodes = [k("Div", ["one", "x"], ["y"], name="inv")]
    elif what == "x_div_x":
        nodes = [k("Div", ["x", "x"], ["y"], name="div")]
    elif what == "narrowing_cast":
        elem = TensorProto.DOUBLE
        nodes = [k("Cast", ["x"], ["f"], name="down", to=TensorProto.FLOAT),
                 k("Cast", ["f"], ["y"], name="up", to=TensorProto.DOUBLE)]
    elif what == "skip_connection":
        nodes = [k("Relu", ["x"], ["h"], name="relu"), k("Add", ["h", "x"], ["y"], name="skip")]
    else:
        nodes = [k("Relu", ["x"], ["h"], name="relu"), k("Cast", ["h"], ["s"], name="toint", to=TensorProto.INT64),
                 k("Reshape", ["h", "s"], ["y"], name="rs")]
    path = _save(tmp_path / f"{what}.onnx", nodes, inits, (1, 3), (1, 3), elem=elem)
    with pytest.raises(UnsupportedConstructError) as info:
        read_graph(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_operator_outside_the_table_is_a_plain_error(tmp_path):
    path = _save(tmp_path / "abs.onnx", [helper.make_node("Abs", ["x"], ["y"], name="absolute")], {}, (1, 3), (1, 3))
    with pytest.raises(ValueError, match="'absolute'.*Abs") as info:
        read_graph(path)
    assert not isinstance(info.value, UnsupportedConstructError)


def test_malformed_node_is_one_clear_error_not_a_traceback(tmp_path):
    """A node reading a tensor nobody computes (a graph the ONNX checker would reject) names the node."""
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "missing"], ["y"], name="fc")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ValueError, match="'fc'.*malformed node"):
        read_graph(path)
