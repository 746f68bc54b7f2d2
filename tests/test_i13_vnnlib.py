"""Issue 13 (2, 4) and issue 17 (4, 6): VNN-LIB ties, unsupported constructs, failed writes, bad --solver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnmiplib import Network
from nnmiplib.vnnlib import load_onnx, parse_query, verify
from nnmiplib.vnnlib.query import LinCon

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "nnmiplib", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=ROOT, check=False)
    return p.returncode, p.stdout, p.stderr


def _parse_assignment(lines):
    values, i = {}, 0
    while i < len(lines):
        name, _, dims = lines[i].split(maxsplit=2)
        shape = tuple(int(d) for d in dims.strip("[]").split(",") if d)
        n = int(np.prod(shape))
        values[name] = np.array([float(v) for v in lines[i + 1:i + 1 + n]]).reshape(shape)
        i += 1 + n
    return values


def recheck_witness(query_text, onnx_path, stdout):
    """The printed witness: inputs of the ONNX type, outputs recomputed by onnxruntime, query holds."""
    q = parse_query(query_text)
    lines = stdout.splitlines()
    assert lines[0] == "sat", stdout
    vals = _parse_assignment(lines[1:])
    x = vals["X"]
    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    xt = x.astype(np.float32 if inp.type == "tensor(float)" else np.float64)
    assert np.array_equal(xt.astype(np.float64), x)
    y = np.asarray(s.run(None, {inp.name: xt.reshape(inp.shape)})[0], dtype=np.float64).ravel()
    v = np.concatenate([x.ravel(), y])
    assert q.satisfied(v), (x, y)
    return x, y


HEAD = "(vnnlib-version <2.0>)\n(declare-network N (declare-input X {t} [1,{n}]) (declare-output Y {t} [1,1]))\n"


def box_text(n, lo, hi):
    return "(assert (and " + " ".join(f"(>= X[0,{i}] {lo}) (<= X[0,{i}] {hi})" for i in range(n)) + "))\n"


@pytest.fixture(scope="module")
def ties(tmp_path_factory):
    """The three examples of issue 13 §2: sat only where a non-strict comparison holds with equality."""
    d = tmp_path_factory.mktemp("ties")
    cases = {
        # Y = 2·X − 1 on X ∈ [0, 1], Y ≥ 1: only X = 1
        "affine": (Network([np.array([[2.0]])], [np.array([-1.0])]), 1,
                   HEAD.format(t="float32", n=1) + box_text(1, "0.0", "1.0") + "(assert (>= Y[0,0] 1.0))\n"),
        # a ReLU network whose output is 0 on the whole box, Y ≤ 0
        "relu_zero": (Network([-np.ones((3, 2)), np.ones((1, 3))], [-np.ones(3), np.zeros(1)]), 2,
                      HEAD.format(t="float32", n=2) + box_text(2, "0.0", "1.0") + "(assert (<= Y[0,0] 0.0))\n"),
        # Y = 0.25·X0 + 0.5·X1 + 0.25·X2 on [0, 4]³, Y ≥ 4: only the top corner
        "corner": (Network([np.array([[0.25, 0.5, 0.25]])], [np.zeros(1)]), 3,
                   HEAD.format(t="real", n=3) + box_text(3, "0.0", "4.0") + "(assert (>= Y[0,0] 4.0))\n"),
    }
    out = {}
    for name, (net, n, text) in cases.items():
        path = net.to_onnx(d / f"{name}.onnx")
        (d / f"{name}.vnnlib").write_text(text)
        out[name] = (path, d / f"{name}.vnnlib", text, n)
    return out


@pytest.mark.parametrize("name", ["affine", "relu_zero", "corner"])
def test_non_strict_ties_are_sat_with_a_checked_witness(ties, name):
    path, qpath, text, _ = ties[name]
    rc, out, err = _cli("verify", qpath, "--network", f"N={path}", "--timeout", 60)
    assert rc == 0, err
    x, y = recheck_witness(text, path, out)
    if name == "affine":
        assert x.ravel()[0] == 1.0 and y[0] == 1.0
    if name == "corner":
        assert np.all(x == 4.0) and y[0] == 4.0


def test_strict_comparisons_stay_strict(ties):
    """The same example with a strict ``>``: the only candidate meets it with equality, so no sat."""
    path, _, text, _ = ties["affine"]
    strict = text.replace("(>= Y[0,0] 1.0)", "(> Y[0,0] 1.0)")
    res = verify(parse_query(strict), {"N": load_onnx(path)}, timeout=30)
    assert res.status != "sat", res.log
    assert res.status in ("unknown", "unsat")


def test_linear_constraint_semantics():
    v = np.array([1.0, 2.0])
    le = LinCon(np.array([0, 1]), np.array([1.0, 1.0]), "<=", 3.0)
    lt = LinCon(np.array([0, 1]), np.array([1.0, 1.0]), "<", 3.0)
    assert le.holds(v) and le.holds(v, tol=1e-7)   # equality meets a non-strict comparison, with or without tol
    assert not lt.holds(v) and not lt.holds(v, tol=1e-7)
    assert lt.holds(np.array([1.0, 1.5]), tol=1e-7)
    # float64 rounding says 0 ≤ 0.5, exactly the sum is 1: not a witness of the non-strict comparison
    tricky = LinCon(np.array([0, 1, 2]), np.array([1.0, 1.0, -1.0]), "<=", 0.5)
    w = np.array([1e16, 1.0, 1e16])
    assert tricky.value(w) <= 0.5 and not tricky.holds(w)


# ----------------------------------------------------------------------------- unsupported constructs
def _graph(path, nodes, inits=None, n=2):
    tensors = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("what", ["product", "division"])
def test_unsupported_construct_answers_unknown_with_one_line_reason(tmp_path, what):
    k = helper.make_node
    if what == "product":
        nodes = [k("Mul", ["x", "x"], ["y"], name="square")]
    else:
        nodes = [k("Relu", ["x"], ["h"], name="relu"), k("Add", ["h", "one"], ["d"], name="shift"),
                 k("Div", ["x", "d"], ["y"], name="ratio")]
    path = _graph(tmp_path / "g.onnx", nodes, {"one": np.ones(2)})
    q = tmp_path / "q.vnnlib"
    q.write_text(HEAD.format(t="float32", n=2).replace("[1,1]", "[1,2]") + box_text(2, "0.0", "1.0")
                 + "(assert (>= Y[0,0] 0.5))\n")
    rc, out, err = _cli("verify", q, "--network", f"N={path}", "--timeout", 30)
    assert rc == 0 and out == "unknown\n", (rc, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("unknown:") and "Traceback" not in err, err
    assert ("product" if what == "product" else "division") in lines[0]


def test_operator_outside_supports_is_an_error(tmp_path):
    path = _graph(tmp_path / "g.onnx", [helper.make_node("Abs", ["x"], ["y"], name="abs")])
    q = tmp_path / "q.vnnlib"
    q.write_text(HEAD.format(t="float32", n=2).replace("[1,1]", "[1,2]") + box_text(2, "0.0", "1.0")
                 + "(assert (>= Y[0,0] 0.5))\n")
    from nnmiplib.cli import main

    assert main(["verify", str(q), "--network", f"N={path}"]) == 1


# ----------------------------------------------------------------------------- --solver, --serialise-assignments
def test_unknown_solver_is_rejected_up_front(ties, capfd):
    path, qpath, text, _ = ties["affine"]
    rc, out, err = _cli("verify", qpath, "--network", f"N={path}", "--solver", "gurobbi")
    assert rc == 2 and out == "" and "gurobbi" in err
    with pytest.raises(ValueError, match="unknown solver"):
        verify(parse_query(text), {"N": load_onnx(path)}, solver="gurobbi")


def test_serialise_into_an_unwritable_folder_keeps_the_answer(ties, tmp_path):
    path, qpath, text, _ = ties["affine"]
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc, out, err = _cli("verify", qpath, "--network", f"N={path}", "--serialise-assignments", blocker / "out")
    assert rc == 0, err
    recheck_witness(text, path, out)  # the result word, then the assignment on stdout
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot write the assignment" in lines[0] and "Traceback" not in err, err
