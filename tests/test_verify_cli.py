"""The verifier against brute force on tiny networks, and the VNN-LIB command line.

Known answers: on 2-input networks a 201×201 grid gives max c·y up to what the grid can
miss, bounded by the Lipschitz vector |c||W_L|…|W_0| times half the grid step. A
threshold below the grid max is sat; above grid max + miss it is unsat.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("vnnlib")

import itertools

from nnmiplib import Network
from nnmiplib.vnnlib import fp_error_bound, load_onnx, parse_query, verify
from nnmiplib.vnnlib.command import CAPABILITIES

ROOT = Path(__file__).resolve().parents[1]


def _net(seed, hidden=(8, 8), n_out=3):
    rng = np.random.default_rng(seed)
    sizes = (2,) + tuple(hidden) + (n_out,)
    return Network([rng.normal(size=(o, i)) / np.sqrt(i) * 1.5 for i, o in itertools.pairwise(sizes)],
                   [rng.normal(size=o) * 0.3 for o in sizes[1:]], name=f"n{seed}")


def _f32(net):
    return Network([np.float32(w).astype(np.float64) for w in net.weights],
                   [np.float32(b).astype(np.float64) for b in net.biases])


def _grid(n=201):
    g = np.linspace(-1, 1, n)
    return np.array(np.meshgrid(g, g)).reshape(2, -1).T, g[1] - g[0]


def _lipschitz(net, c):
    L = np.abs(c)
    for W in reversed(net.weights):
        L = L @ np.abs(W)
    return L


def _ort(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: np.asarray(x, np.float32).reshape(1, -1)})[0].ravel()


BOX2 = "(assert (and (>= X[0,0] -1.0) (<= X[0,0] 1.0) (>= X[0,1] -1.0) (<= X[0,1] 1.0)))\n"


def _v2_single(thr, dtype="float32"):
    return ("(vnnlib-version <2.0>)\n"
            f"(declare-network f (declare-input X {dtype} [1,2]) (declare-output Y {dtype} [1,3]))\n"
            + BOX2 + f"(assert (>= (- Y[0,0] Y[0,1]) {thr!r}))\n")


def _v1_head():
    """VNN-LIB 1.0 declarations of X_0, X_1 in [−1, 1] and Y_0..Y_2."""
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(2))
    head += "".join(f"(declare-const Y_{i} Real)\n" for i in range(3))
    return head + "".join(f"(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(2))


def _v1_single(thr):
    return _v1_head() + f"(assert (or (and (>= Y_0 (+ Y_1 {thr!r})))))\n"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_single_network_against_brute_force(tmp_path, seed, version):
    net = _net(seed)
    path = net.to_onnx(tmp_path / "f.onnx")
    n32 = _f32(net)
    X, h = _grid()
    c = np.array([1.0, -1.0, 0.0])
    top = float((n32.forward(X) @ c).max())
    miss = float(_lipschitz(n32, c).sum()) * h / 2
    loaded_name = "N" if version == "1.0" else "f"
    loaded = {loaded_name: load_onnx(path)}
    for thr, truth in ((top - 0.02, "sat"), (top + miss + 0.02, "unsat")):
        text = _v1_single(float(thr)) if version == "1.0" else _v2_single(float(thr))
        q = parse_query(text)
        res = verify(q, loaded, timeout=60)
        assert res.status == truth, (seed, version, thr, res.log)
        if truth == "sat":
            x = np.asarray(res.values["X"], dtype=np.float64).ravel()
            assert np.all(np.abs(x) <= 1.0)
            y = _ort(path, x)
            assert y[0] - y[1] >= thr
            assert q.satisfied(np.concatenate([x, y]))


def test_two_networks_shared_and_separate_inputs(tmp_path):
    f, g = _net(3), _net(4, hidden=(6,), n_out=2)
    pf, pg = f.to_onnx(tmp_path / "f.onnx"), g.to_onnx(tmp_path / "g.onnx")
    f32, g32 = _f32(f), _f32(g)
    X, h = _grid()
    diff = f32.forward(X)[:, 0] - g32.forward(X)[:, 0]
    # Lipschitz bound of f0 - g0 on the shared input
    miss = (float(_lipschitz(f32, np.array([1.0, 0, 0])).sum()) + float(_lipschitz(g32, np.array([1.0, 0])).sum())) * h / 2
    loaded = {"f": load_onnx(pf), "g": load_onnx(pg)}
    head = ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [1,2]) (declare-output Y real [1,3]))\n"
            "(declare-network g (declare-input U real [1,2]) (declare-output W real [1,2]))\n" + BOX2)
    shared = "(assert (and (== X[0,0] U[0,0]) (== X[0,1] U[0,1])))\n"
    for thr, truth in ((diff.max() - 0.02, "sat"), (diff.max() + miss + 0.02, "unsat")):
        q = parse_query(head + shared + f"(assert (>= (- Y[0,0] W[0,0]) {float(thr)!r}))\n")
        res = verify(q, loaded, timeout=60)
        assert res.status == truth, res.log
        if truth == "sat":
            assert np.array_equal(res.values["X"], res.values["U"])  # one shared input
            x = res.values["X"].ravel()
            assert _ort(pf, x)[0] - _ort(pg, x)[0] >= thr
    # separate inputs (no identification): max f0(x) - min g0(u) over two boxes; U boxed explicitly
    sep_max = f32.forward(X)[:, 0].max() - g32.forward(X)[:, 0].min()
    boxu = BOX2.replace("X[", "U[")
    q = parse_query(head + boxu + f"(assert (>= (- Y[0,0] W[0,0]) {float(sep_max - 0.02)!r}))\n")
    res = verify(q, loaded, timeout=60)
    assert res.status == "sat", res.log
    x, u = res.values["X"].ravel(), res.values["U"].ravel()
    assert _ort(pf, x)[0] - _ort(pg, u)[0] >= sep_max - 0.02


def test_disjunctive_input_regions_and_empty_region(tmp_path):
    net = _net(5)
    path = net.to_onnx(tmp_path / "f.onnx")
    loaded = {"N": load_onnx(path)}
    n32 = _f32(net)
    X, _ = _grid(101)
    Xa = X[X[:, 0] <= -0.5]  # region A: x0 in [-1, -0.5]
    thr = float(n32.forward(Xa)[:, 2].max() - 0.01)
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "".join(
        f"(declare-const Y_{i} Real)\n" for i in range(3))
    q = parse_query(head + "(assert (or (and (>= X_0 -1) (<= X_0 -0.5) (>= X_1 -1) (<= X_1 1) "
                    f"(>= Y_2 {thr!r})) (and (>= X_0 1) (<= X_0 0) (>= X_1 0) (<= X_1 1))))\n")
    res = verify(q, loaded, timeout=60)
    assert res.status == "sat" and res.values["X"].ravel()[0] <= -0.5
    q = parse_query(head + "(assert (and (>= X_0 1) (<= X_0 0) (>= X_1 0) (<= X_1 1)))\n(assert (>= Y_0 0.0))\n")
    assert verify(q, loaded, timeout=60).status == "unsat"


def test_fp_error_bound_covers_float32_onnxruntime(tmp_path):
    from nnmiplib.bounds import interval_bounds
    from nnmiplib.domains import box

    net = _net(7, hidden=(30, 30), n_out=4)
    path = net.to_onnx(tmp_path / "f.onnx")
    n32 = _f32(net)
    lo, hi = -np.ones(2), np.ones(2)
    b = interval_bounds(n32, box(lo, hi))
    E = fp_error_bound(n32, b.upper, lo, hi, "float32")
    assert np.all(E > 0) and np.all(E < 1e-3)
    X = np.random.default_rng(0).uniform(-1, 1, (300, 2)).astype(np.float32).astype(np.float64)
    err = np.max([np.abs(_ort(path, x) - n32.forward(x)) for x in X], axis=0)
    assert np.all(err <= E)


# ----------------------------------------------------------------------------- the CLI
def _cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "nnmiplib", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=ROOT, check=False)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    net = _net(11)
    path = net.to_onnx(d / "f.onnx")
    n32 = _f32(net)
    X, _ = _grid(101)
    top = float((n32.forward(X) @ np.array([1.0, -1.0, 0.0])).max())
    (d / "sat.vnnlib").write_text(_v2_single(float(top - 0.05)))
    return d, path


def test_cli_sat_prints_assignment_and_serialises(tiny, tmp_path):
    d, path = tiny
    rc, out, err = _cli("verify", d / "sat.vnnlib", "--network", f"f={path}", "--timeout", 60)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "sat" and lines[1] == "X float32 [1,2]" and lines[4] == "Y float32 [1,3]"
    assert len(lines) == 8
    x = np.array([float(v) for v in lines[2:4]])
    y = np.array([float(v) for v in lines[5:8]])
    assert np.array_equal(np.float32(x).astype(np.float64), x)  # printed values are float32 values
    assert np.allclose(_ort(path, x), y, rtol=0, atol=1e-6)
    rc, out, err = _cli("verify", d / "sat.vnnlib", "--network", f"f={path}", "--serialise-assignments", tmp_path / "a")
    assert rc == 0 and out == "sat\n", err
    from onnx import TensorProto, numpy_helper

    t = TensorProto()
    t.ParseFromString((tmp_path / "a" / "X.pb").read_bytes())
    xs = numpy_helper.to_array(t)
    assert xs.shape == (1, 2) and xs.dtype == np.float32 and (tmp_path / "a" / "Y.pb").exists()


def test_cli_errors_and_exit_codes(tiny, tmp_path, capfd):
    d, path = tiny
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(assert (<= X[0] 1.0)")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01junk")
    cases = [
        (("verify", bad, "--network", f"f={path}"), 1),                        # malformed query
        (("verify", d / "sat.vnnlib", "--network", f"f={junk}"), 1),           # malformed ONNX
        (("verify", d / "sat.vnnlib", "--network", f"g={path}"), 1),           # undeclared network
        (("verify", d / "sat.vnnlib"), 1),                                     # missing network
        (("verify", tmp_path / "none.vnnlib", "--network", f"f={path}"), 1),   # no such file
        (("verify", d / "sat.vnnlib", "--network", str(path)), 2),             # not NAME=FILE
        (("verify", d / "sat.vnnlib", "--network", f"f={path}", "--timeout", "soon"), 2),
        (("verify", d / "sat.vnnlib", "--network", f"f={path}", "--bogus"), 2),
        (("supports",), 2),
        (("supports", "--no-such-capability"), 2),
    ]
    from nnmiplib.cli import main

    for args, code in cases:  # in-process (fast); fd-level capture sees C-level writes too
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code
        out, err = capfd.readouterr()
        assert rc == code, (args, rc, err)
        assert out == "", (args, out)          # diagnostics never reach stdout
        assert err.strip(), args
    rc, out, err = _cli(*cases[0][0])          # and once as a real process
    assert rc == 1 and out == "" and "malformed" in err


def test_cli_timeout_answers_timed_out(tiny):
    d, path = tiny
    rc, out, _ = _cli("verify", d / "sat.vnnlib", "--network", f"f={path}", "--timeout", "0.01")
    assert rc == 0 and out == "timed-out\n"


def test_cli_supports_flags(capfd):
    from nnmiplib.cli import main

    permitted = {
        "--hidden-node-theories": {"NH", "H"}, "--multiple-input-output-theories": {"SIO", "MIO"},
        "--multiple-network-theories": {"SNET", "MENET", "MINET", "MNET"},
        "--multiple-node-comparison-theories": {"SNC", "MNC"},
        "--arithmetic-complexity-theories": {"BND", "OUTC", "LIN", "POLY"},
    }
    assert len(CAPABILITIES) >= 11
    for flag in CAPABILITIES:
        rc = main(["supports", flag])
        out, err = capfd.readouterr()
        assert rc == 0, (flag, err)
        lines = out.splitlines()
        if flag in permitted:
            assert lines and set(lines) <= permitted[flag], (flag, lines)
        elif flag in ("--onnx-opset-versions", "--vnnlib-versions"):
            assert len(lines) == 2 and float(lines[0]) <= float(lines[1])
        elif flag in ("--optimised-disjunctive-reasoning", "--serialise-assignments", "--unsat-proofs"):
            assert out in ("true\n", "false\n")
        elif flag == "--onnx-operators":
            assert {"Gemm", "Relu", "MatMul", "Add", "Flatten"} <= set(lines)
            assert all(len(line.split()) == 1 for line in lines)
        elif flag == "--onnx-element-types":
            assert "real" in lines and set(lines) <= {"float32", "float64", "real"}
    assert _cli("supports", "--serialise-assignments")[1] == "true\n"


def test_vnncomp_benchmark_on_generated_example(tmp_path):
    spec = importlib.util.spec_from_file_location("vnncomp", ROOT / "benchmarks" / "vnncomp.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d = mod.make_example(tmp_path / "bench")
    rows, totals = mod.run_folder(d)
    assert totals["instances"] == 6 and totals["solved"] == 6, rows
    assert totals["sat"] == 3 and totals["unsat"] == 3
    assert totals["wrong_witnesses"] == 0 and totals["wrong_answers"] == 0
    # a corrupted witness is caught by the re-check
    q = parse_query((d / "v2_sat.vnnlib").read_text())
    ok, _ = mod.recheck(q, {"f": str(d / "tiny.onnx")}, {"X": np.zeros((1, 2)), "Y": np.zeros((1, 3))})
    assert not ok


def test_equal_to_network_with_linear_input_coupling(tmp_path, capfd):
    """MENET: g is declared equal-to f (one ONNX file); inputs coupled by U0 >= X0 + 0.5."""
    net = _net(8)
    path = net.to_onnx(tmp_path / "f.onnx")
    n32 = _f32(net)
    X, _ = _grid(41)
    # brute force over pairs on a coarse grid: the best W0 - Y0 with u0 >= x0 + 0.5, u1 = x1 free
    y0 = n32.forward(X)[:, 0]
    ok = X[None, :, 0] >= X[:, None, 0] + 0.5
    best = float(np.max(np.where(ok, y0[None, :] - y0[:, None], -np.inf)))
    text = ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [1,2]) (declare-output Y real [1,3]))\n"
            "(declare-network g (equal-to f) (declare-input U real [1,2]) (declare-output W real [1,3]))\n"
            + BOX2 + BOX2.replace("X[", "U[") + "(assert (>= U[0,0] (+ X[0,0] 0.5)))\n"
            f"(assert (>= (- W[0,0] Y[0,0]) {best - 0.01!r}))\n")
    q = tmp_path / "q.vnnlib"
    q.write_text(text)
    from nnmiplib.cli import main

    assert main(["verify", str(q), "--network", f"f={path}", "--timeout", "60"]) == 0
    out = capfd.readouterr().out.splitlines()
    assert out[0] == "sat" and out[1] == "X real [1,2]" and out[8] == "U real [1,2]"
    x, u = np.array(out[2:4], dtype=float), np.array(out[9:11], dtype=float)
    assert u[0] >= x[0] + 0.5 and np.all(np.abs(np.r_[x, u]) <= 1)
    assert _ort(path, u)[0] - _ort(path, x)[0] >= best - 0.01
    assert main(["verify", str(q), "--network", f"f={path}", "--network", f"g={path}"]) == 1
    assert "equal-to" in capfd.readouterr().err


def test_with_inputs_appends_the_input_exactly():
    from nnmiplib.vnnlib.engine import with_inputs

    net = _net(5, hidden=(6, 5))
    lo = np.array([-1.0, -0.5])
    aug = with_inputs(net, lo)
    X = lo + np.random.default_rng(0).uniform(0, 2, size=(500, 2))
    Y = aug.forward(X)
    assert np.allclose(Y[:, :3], net.forward(X), atol=1e-12) and np.allclose(Y[:, 3:], X, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_branch_and_bound_stage_decides_what_the_lp_cannot(tmp_path, seed):
    """Thresholds just above the true maximum (unsat) and just below it (sat) on a deeper net:
    the cheap bounds cannot refute the first, so the branch-and-bound stage decides; the LP and
    MILP stages (engine='mip') give the same answers."""
    net = _net(seed + 40, hidden=(16, 16, 16))
    path = net.to_onnx(tmp_path / "f.onnx", dtype="float64")
    X, h = _grid(401)
    c = np.array([1.0, -1.0, 0.0])
    top = float((net.forward(X) @ c).max())
    miss = float(_lipschitz(net, c).sum()) * h / 2
    loaded = {"f": load_onnx(path)}
    stages = []
    for thr, truth in ((top + miss + 0.05, "unsat"), (top - 0.01, "sat")):
        q = parse_query(_v2_single(float(thr), dtype="float64"))
        for engine in ("bab", "mip"):
            res = verify(q, loaded, timeout=60, engine=engine)
            assert res.status == truth, (seed, engine, thr, res.log)
            stages += [line for line in res.log if "branch and bound" in line]
            # the branch and bound's root replaces the LP stage; the thesis's MILP keeps it
            if truth == "unsat":
                assert any(line.startswith("lp:") for line in res.log) == (engine == "mip"), res.log
            if truth == "sat":
                x = np.asarray(res.values["X"], dtype=np.float64).ravel()
                assert float(net.forward(x) @ c) >= thr
    assert any("refuted (branch and bound:" in s for s in stages)  # the LP left it open; the search closed it


def test_exact_stage_gives_the_time_left_to_disjuncts_cut_short(tmp_path, monkeypatch):
    """A disjunct whose share of the time ran out is searched again with what the others left,
    and the answer follows that second search; without a deadline nothing is repeated (one
    hidden layer: no first look, no tightening, see the next test)."""
    from nnmiplib.vnnlib import engine

    net = _net(0, hidden=(8,))
    loaded = {"f": load_onnx(net.to_onnx(tmp_path / "f.onnx"))}
    n32 = _f32(net)
    X, h = _grid()
    c = np.array([1.0, -1.0, 0.0])
    thr = float((n32.forward(X) @ c).max() + _lipschitz(n32, c).sum() * h / 2 + 0.02)  # unsat
    calls = []

    def fake(prob, dj, *, time_limit, seed, cache=None, tighten=0.0, **kw):
        calls.append(time_limit)
        return ("timeout", None, "cut") if len(calls) == 1 else ("refuted", None, "second search")

    monkeypatch.setattr(engine, "_bab_disjunct", fake)
    monkeypatch.setattr(engine, "_refuted_by_range", lambda *a: False)
    monkeypatch.setattr(engine, "_solve_disjunct", lambda *a, **k: ("open", None, "lp"))
    res = verify(parse_query(_v2_single(thr)), loaded, timeout=30, engine="bab")
    assert res.status == "unsat" and len(calls) == 2, res.log
    assert any("again on the 1 disjuncts cut short" in line for line in res.log)
    calls.clear()
    monkeypatch.setattr(engine, "_bab_disjunct", lambda *a, **k: (calls.append(1), ("timeout", None, "cut"))[1])
    res = verify(parse_query(_v2_single(thr)), loaded, timeout=10, engine="bab")
    assert res.status in ("timed-out", "unknown") and len(calls) == 1 + engine.MAX_RETRIES


def test_deep_networks_get_a_first_look_then_tightened_bounds(tmp_path, monkeypatch):
    """On a network of two or more hidden layers with a timeout, the branch and bound first
    looks at each open disjunct with QUICK_SHARE of its time; what stays open gets its box's
    intermediate bounds tightened once (TIGHTEN_SHARE of the time left), then is searched
    with what remains. Without a timeout there is one search and no tightening."""
    from nnmiplib.vnnlib import engine

    net = _net(3, hidden=(8, 8))
    loaded = {"f": load_onnx(net.to_onnx(tmp_path / "f.onnx"))}
    calls = []

    def fake(prob, dj, *, time_limit, seed, cache=None, tighten=0.0, **kw):
        calls.append((time_limit, tighten))
        return ("timeout", None, "cut") if len(calls) == 1 else ("refuted", None, "tightened")

    monkeypatch.setattr(engine, "_bab_disjunct", fake)
    monkeypatch.setattr(engine, "_refuted_by_range", lambda *a: False)
    monkeypatch.setattr(engine, "_attack", lambda *a, **k: None)
    res = verify(parse_query(_v2_single(1e6)), loaded, timeout=20, engine="bab")
    assert res.status == "unsat" and len(calls) == 2, res.log
    (quick, t0), (search, t1) = calls
    assert t0 == 0.0 and quick <= engine.QUICK_SHARE * 20 + 1e-9
    # (the fake takes no time: all 20 s are still left after the first look)
    assert engine.TIGHTEN_SHARE * 20 - 1.0 <= t1 <= engine.TIGHTEN_SHARE * 20 + 1e-9
    assert search + t1 <= 20 + 1e-9 and search >= (1 - engine.TIGHTEN_SHARE) * 20 - 1.0
    assert any("tightened" in line for line in res.log) and any("first look" in line for line in res.log)
    calls.clear()
    res = verify(parse_query(_v2_single(1e6)), loaded, timeout=None, engine="bab")
    assert len(calls) == 1 and calls[0][1] == 0.0, calls


def test_the_tightening_stops_once_its_bounds_refute_every_open_disjunct(tmp_path, monkeypatch):
    """While the box's bounds are tightened, the bounds proven so far are tried on every open
    disjunct of the box; once all are refuted the tightening stops, and the query is unsat
    long before the tightening's share of the timeout is spent."""
    from nnmiplib.bab import tightening
    from nnmiplib.vnnlib import engine

    monkeypatch.setattr(tightening, "FIRST_CHECK", 0.0)  # this small net would close within the default
    monkeypatch.setattr(engine, "QUICK_SHARE", 1e-6)  # the first look leaves both disjuncts open
    net = _net(2, hidden=(16, 16, 16))
    n32 = _f32(net)
    X, h = _grid()
    c = np.array([1.0, -1.0, 0.0])
    thr = round(float((n32.forward(X) @ c).max() + _lipschitz(n32, c).sum() * h / 2 + 0.02), 6)
    assert float((n32.forward(X) @ np.array([0.0, -1.0, 1.0])).max()) < thr - 0.1  # unsat on the grid too
    text = _v1_head() + f"(assert (or (and (>= Y_0 (+ Y_1 {thr!r}))) (and (>= Y_2 (+ Y_1 {thr!r})))))\n"
    res = verify(parse_query(text), {"N": load_onnx(net.to_onnx(tmp_path / "f.onnx"))}, timeout=30, engine="bab")
    assert res.status == "unsat", res.log
    # the first look leaves both disjuncts open (once in a full parallel test run it refuted one
    # within its few microseconds; the tightening must then stop on refuting the other alone)
    left_open = sum("first look: timeout" in line for line in res.log)
    assert left_open >= 1, res.log
    assert any("stopped: the bounds so far refute the box" in line for line in res.log), res.log
    assert sum("on bounds tightened so far" in line for line in res.log) == left_open, res.log
    assert res.time < engine.TIGHTEN_SHARE * 30


def test_the_log_counts_unstable_neurons_under_the_bounds_the_search_uses(tmp_path):
    """Each disjunct's log line gives its unstable hidden neurons under the cheap bounds and,
    for the branch and bound, under the bounds its search runs on: the box's α-CROWN bounds,
    then — once the box is tightened — the tightened ones (never more), counted from those
    very bounds."""
    from nnmiplib.bounds import cheap_bounds
    from nnmiplib.domains import Box
    from nnmiplib.vnnlib import engine
    from nnmiplib.vnnlib.problem import build_problem

    net = _net(4, hidden=(24, 24, 24))
    prob = build_problem(parse_query(_v2_single(0.5)), {"f": load_onnx(net.to_onnx(tmp_path / "f.onnx"))})
    dj = prob.disjuncts[0]
    dj._bounds = cheap_bounds(prob.net, Box(dj.lo, dj.hi))  # what verify's first stage sets
    dj._margin = np.zeros(len(dj.ops))

    def count(lower, upper):
        return sum(int(((lo < 0) & (up > 0)).sum()) for lo, up in zip(lower[:-1], upper[:-1]))

    cheap = sum(int(dj._bounds.unstable(m).sum()) for m in range(prob.net.depth))
    cache: dict = {}
    assert engine._unstable_line(prob, dj, cache, by_bab=False) == (
        f"disjunct 0: {cheap} unstable neurons under the cheap bounds")
    b = engine._box_bounds(prob, dj, cache)[4]
    n_alpha = count(b.lower, b.upper)
    assert 0 < n_alpha <= cheap
    assert engine._unstable_line(prob, dj, cache, by_bab=True).endswith(f", {n_alpha} under the α-CROWN bounds")
    engine._tighten_box(prob, dj, cache, 2.0, seed=0)
    lower, upper, _ = cache[engine._tight_key(dj)]
    n_tight = count(lower, upper)
    assert n_tight <= n_alpha
    assert engine._unstable_line(prob, dj, cache, by_bab=True).endswith(f", {n_tight} under the tightened bounds")


def test_exact_stage_takes_the_disjunct_with_the_most_room_last(tmp_path, monkeypatch):
    """The branch and bound searches the open disjuncts in increasing order of the slack the
    cheap bounds leave them, so the hardest gets the time the others leave in one search."""
    from nnmiplib.vnnlib import engine

    net = _net(1)
    loaded = {"N": load_onnx(net.to_onnx(tmp_path / "f.onnx"))}
    head = _v1_head()
    # disjunct 0 leaves much room (a low threshold), disjunct 1 little, disjunct 2 some
    text = head + "(assert (or (and (>= Y_0 (+ Y_1 -5.0))) (and (>= Y_0 (+ Y_2 50.0))) (and (>= Y_1 (+ Y_2 0.0)))))\n"
    order = []

    def fake(prob, dj, *, time_limit, seed, cache=None, tighten=0.0, **kw):
        order.append(dj.index)
        return "refuted", None, "fake"

    monkeypatch.setattr(engine, "_bab_disjunct", fake)
    monkeypatch.setattr(engine, "_refuted_by_range", lambda *a: False)
    monkeypatch.setattr(engine, "_attack", lambda *a, **k: None)
    monkeypatch.setattr(engine, "SEARCH_WORKERS", 1)  # one at a time: the order of the calls is the order of work
    res = verify(parse_query(text), loaded, timeout=30, engine="bab")
    assert res.status == "unsat" and sorted(order) == [0, 1, 2], res.log
    rooms = {dj.index: dj._room for dj in res.problem.disjuncts}
    assert order == sorted(order, key=rooms.get) and order[-1] == 0 and order[0] == 1, (order, rooms)


def _three_disjuncts(thr):
    """"Y_0 ≥ Y_1 + thr, or Y_2 ≥ Y_1 + thr, or Y_0 ≥ Y_2 + thr": three disjuncts of one box."""
    return _v1_head() + (f"(assert (or (and (>= Y_0 (+ Y_1 {thr!r}))) (and (>= Y_2 (+ Y_1 {thr!r})))"
                         f" (and (>= Y_0 (+ Y_2 {thr!r})))))\n")


def test_searches_side_by_side_answer_as_one_at_a_time(tmp_path, monkeypatch):
    """With two cores the branch-and-bound searches of the open disjuncts run two at a time
    (one torch thread each); the answers are those of one search at a time and of the grid:
    unsat just above the largest of the three maxima, sat (a witness that meets its row)
    just below it."""
    from nnmiplib import machine
    from nnmiplib.vnnlib import engine

    monkeypatch.setattr(machine, "n_cores", lambda: 2)
    net = _net(5, hidden=(16, 16, 16))
    n32 = _f32(net)
    X, h = _grid(401)
    rows = [np.array(c, dtype=float) for c in ([1, -1, 0], [0, -1, 1], [1, 0, -1])]
    top = max(float((n32.forward(X) @ c).max()) for c in rows)
    miss = max(float(_lipschitz(n32, c).sum()) for c in rows) * h / 2
    loaded = {"N": load_onnx(net.to_onnx(tmp_path / "f.onnx"))}
    for thr, truth in ((round(float(top + miss + 0.05), 6), "unsat"), (round(float(top - 0.01), 6), "sat")):
        answers = {}
        for workers in (2, 1):
            monkeypatch.setattr(engine, "SEARCH_WORKERS", workers)
            res = verify(parse_query(_three_disjuncts(thr)), loaded, timeout=60, engine="bab")
            answers[workers] = res.status
            if res.status == "sat":
                x = np.asarray(res.values["X"], dtype=np.float64).ravel()
                y = n32.forward(x)
                assert max(float(y @ c) for c in rows) >= thr - 1e-6, (x, y)
            elif workers == 2:  # the searches decided it, not the cheap bounds
                assert sum("refuted (branch and bound:" in line for line in res.log) >= 2, res.log
        assert answers == {2: truth, 1: truth}, (thr, answers)


def test_a_witness_cancels_the_search_beside_it(tmp_path, monkeypatch):
    """Once one search's point is a checked witness the query is sat at once: the search
    running beside it is cancelled (it would otherwise run its whole share of 60 s)."""
    import threading
    import time

    from nnmiplib import machine
    from nnmiplib.vnnlib import engine

    monkeypatch.setattr(machine, "n_cores", lambda: 2)
    monkeypatch.setattr(engine, "SEARCH_WORKERS", 2)
    monkeypatch.setattr(engine, "_refuted_by_range", lambda *a: False)
    # the attack stage finds nothing; a search's point is taken as it is
    monkeypatch.setattr(engine, "_attack", lambda *a, starts=None, **k: None if starts is None else starts[0])
    started, cancelled = [], threading.Event()
    first_done = threading.Event()

    def fake(prob, dj, *, time_limit, seed, cache=None, cancel=None, **kw):
        started.append(dj.index)
        if len(started) == 1:  # the first search runs until it is cancelled (or its share is spent)
            end = time.perf_counter() + time_limit
            first_done.set()
            while time.perf_counter() < end:
                if cancel is not None and cancel.is_set():
                    cancelled.set()
                    return "timeout", None, "cancelled"
                time.sleep(0.01)
            return "timeout", None, "ran its share"
        first_done.wait(5)
        return "open", (dj.lo + dj.hi) / 2, "a point"

    monkeypatch.setattr(engine, "_bab_disjunct", fake)
    net = _net(1, hidden=(8,))
    loaded = {"N": load_onnx(net.to_onnx(tmp_path / "f.onnx"))}
    t = time.perf_counter()
    res = verify(parse_query(_three_disjuncts(-1e6)), loaded, timeout=60, engine="bab")
    took = time.perf_counter() - t
    assert res.status == "sat", res.log
    assert cancelled.is_set() and took < 10, (took, res.log)
