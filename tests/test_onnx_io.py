"""ONNX in and out: torch exports, hand-built graphs, onnxruntime agreement, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import itertools

from onnx import TensorProto, helper, numpy_helper

from nnmiplib import Network
from nnmiplib.vnnlib import load_onnx


def _ort(path, x, name=None):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {name or s.get_inputs()[0].name: x})[0]


def _random_net(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return Network([rng.normal(size=(o, i)) / np.sqrt(i) for i, o in itertools.pairwise(sizes)],
                   [rng.normal(size=o) * 0.1 for o in sizes[1:]])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("in_shape", [(1, 1, 4, 4), (1, 16), (1, 16, 1)])
def test_torch_export_round_trip_matches_onnxruntime(tmp_path, in_shape):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Norm(torch.nn.Module):  # input normalisation, folded into the first layer
        def forward(self, x):
            return (x - 0.25) / 0.5 * 1.5

    model = torch.nn.Sequential(Norm(), torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.ReLU(),
                                torch.nn.Linear(12, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.rand(*in_shape),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"])
    net, info = load_onnx(path)
    assert info.input_shape == in_shape and info.input_dtype == "float32" and info.n_outputs == 3
    assert net.layer_sizes == (16, 12, 7, 3)
    xs = np.random.default_rng(1).random((20,) + in_shape).astype(np.float32)
    for x in xs:
        y_ort = _ort(path, x).ravel()
        y_net = net.forward(x.reshape(-1).astype(np.float64))  # row-major flattening
        assert np.max(np.abs(y_ort - y_net)) < 1e-5
        with torch.no_grad():
            y_torch = model(torch.from_numpy(x)).numpy().ravel()
        assert np.max(np.abs(y_torch - y_net)) < 1e-5


def test_network_to_onnx_matches_onnxruntime(tmp_path):
    net = _random_net((6, 10, 10, 4), seed=3)
    x = np.random.default_rng(0).random((8, 6))
    p32 = net.to_onnx(tmp_path / "n32.onnx")
    for xi in x:
        y = _ort(p32, xi[None].astype(np.float32)).ravel()
        assert np.max(np.abs(y - net.forward(xi))) < 1e-5
    p64 = net.to_onnx(tmp_path / "n64.onnx", input_shape=(1, 2, 3))
    with pytest.raises(ValueError, match="dtype"):
        net.to_onnx(tmp_path / "bad.onnx", dtype="int8")
    p64 = net.to_onnx(tmp_path / "n64.onnx", input_shape=(1, 2, 3), dtype="float64")
    back = Network.from_onnx(p64)
    assert back.layer_sizes == net.layer_sizes
    for Wa, Wb in zip(back.weights, net.weights):
        assert np.array_equal(Wa, Wb)  # float64 round trip is exact
    y = _ort(p64, x[0].reshape(1, 2, 3)).ravel()
    assert np.max(np.abs(y - net.forward(x[0]))) < 1e-12


def _save(tmp_path, nodes, inits, in_shape=(1, 3), out_dim=2, name="g.onnx"):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_dim])],
                              initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), k)
                                           for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_gemm_attributes_matmul_add_mul_and_constants(tmp_path):
    rng = np.random.default_rng(5)
    A = rng.normal(size=(4, 3))  # used transposed via transB=0 and a (3, 4) stored matrix
    B = rng.normal(size=(2, 4))
    nodes = [
        helper.make_node("Constant", [], ["m"], value=numpy_helper.from_array(np.float32([0.5, -1.0, 2.0]))),
        helper.make_node("Mul", ["x", "m"], ["xm"], name="scale"),
        helper.make_node("Sub", ["xm", "c"], ["xs"], name="shift"),
        helper.make_node("Gemm", ["xs", "A_T", "a0"], ["h0"], name="g0", alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["h0"], ["r0"], name="relu0"),
        helper.make_node("MatMul", ["r0", "B_T"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "b1"], ["y"], name="add"),
    ]
    inits = {"A_T": A.T, "a0": rng.normal(size=4), "B_T": B.T, "b1": rng.normal(size=2), "c": [0.1, 0.2, 0.3]}
    path = _save(tmp_path, nodes, inits)
    net = Network.from_onnx(path)
    for x in rng.random((10, 1, 3)).astype(np.float32):
        assert np.max(np.abs(_ort(path, x).ravel() - net.forward(x.ravel().astype(np.float64)))) < 1e-5
    # transA / transB on a column input (3, 1)
    W = rng.normal(size=(2, 3))
    path = _save(tmp_path, [helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="gt", transA=1, transB=1)],
                 {"W": W, "b": [1.0, 2.0]}, in_shape=(3, 1), name="t.onnx")
    net = Network.from_onnx(path)
    x = rng.random((3, 1)).astype(np.float32)
    assert np.max(np.abs(_ort(path, x).ravel() - net.forward(x.ravel().astype(np.float64)))) < 1e-5
    # an operator outside the reader's table is named with its node (Transpose is in the table since issue 13)
    path = _save(tmp_path, [helper.make_node("Abs", ["x"], ["y"], name="ab")], {}, in_shape=(1, 2),
                 name="ab.onnx")
    with pytest.raises(ValueError, match="'ab'.*Abs"):
        Network.from_onnx(path)
    path = _save(tmp_path, [helper.make_node("Transpose", ["x"], ["t"], name="tr"),
                            helper.make_node("Flatten", ["t"], ["y"], name="fl", axis=0)], {}, in_shape=(1, 2),
                 name="tr.onnx")
    x = rng.random((1, 2)).astype(np.float32)
    assert np.max(np.abs(_ort(path, x).ravel() - Network.from_onnx(path).forward(x.ravel().astype(np.float64)))) < 1e-6


def test_column_vector_matmul_with_normalisation(tmp_path):
    """W @ x on an input shaped (1, n, 1), with Sub/Div normalisation folded in."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Sub", ["x", "m"], ["xs"], name="sub"),
             helper.make_node("Div", ["xs", "s"], ["xn"], name="div"),
             helper.make_node("MatMul", ["W0", "xn"], ["a0"], name="mm0"),
             helper.make_node("Add", ["a0", "b0"], ["a0b"], name="add0"),
             helper.make_node("Relu", ["a0b"], ["h0"], name="r0"),
             helper.make_node("MatMul", ["W1", "h0"], ["a1"], name="mm1"),
             helper.make_node("Add", ["a1", "b1"], ["a1b"], name="add1"),
             helper.make_node("Flatten", ["a1b"], ["y"], name="fl")]
    inits = {"W0": rng.normal(size=(5, 6)), "b0": rng.normal(size=(5, 1)), "W1": rng.normal(size=(3, 5)),
             "b1": rng.normal(size=(3, 1)), "m": [0.1], "s": [0.3]}
    path = _save(tmp_path, nodes, inits, in_shape=(1, 6, 1), out_dim=3)
    net, info = load_onnx(path)
    assert info.input_shape == (1, 6, 1) and net.layer_sizes == (6, 5, 3)
    for x in rng.random((10, 1, 6, 1)).astype(np.float32):
        assert np.max(np.abs(_ort(path, x).ravel() - net.forward(x.ravel().astype(np.float64)))) < 1e-5


def test_unsupported_operator_names_operator_and_node(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["a"], name="fc", transB=1),
             helper.make_node("Sigmoid", ["a"], ["y"], name="squash")]
    path = _save(tmp_path, nodes, {"W": np.ones((2, 3)), "b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"'squash'.*Sigmoid"):
        Network.from_onnx(path)
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="not a readable ONNX"):
        Network.from_onnx(bad)
    with pytest.raises(FileNotFoundError):
        Network.from_onnx(tmp_path / "missing.onnx")
