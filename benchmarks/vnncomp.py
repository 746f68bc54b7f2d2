"""Run ``nnmiplib verify`` over a folder in the VNN-COMP layout and re-check every witness.

Usage::

    python benchmarks/vnncomp.py DIR [--max-timeout S] [--csv OUT.csv]
    python benchmarks/vnncomp.py --make-example DIR     # a tiny generated benchmark

``DIR/instances.csv`` has rows ``onnx,vnnlib,timeout`` (paths relative to DIR, ``.gz``
allowed). Each instance runs as its own process (``python -m nnmiplib verify``) with the
instance's timeout, plus a hard kill 10 s later. Every ``sat`` answer's assignment is
parsed from stdout and re-checked independently: the printed inputs are run through
onnxruntime and the query must hold on those outputs. An optional ``DIR/expected.csv``
(``vnnlib,answer``) adds a wrong-answer count. Prints one line per instance and the
totals: solved, sat, unsat, unknown, timeouts, errors, wrong witnesses, wrong answers.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_assignment(lines: list[str]) -> dict[str, np.ndarray]:
    """Parse the §5.3.1 command-line assignment (``NAME TYPE [dims]`` then values)."""
    values, i = {}, 0
    while i < len(lines):
        head = lines[i].split()
        if not head:
            i += 1
            continue
        name, _dtype, dims = head[0], head[1], "".join(head[2:])
        shape = tuple(int(d) for d in dims.strip("[]").split(",") if d.strip())
        n = int(np.prod(shape)) if shape else 1
        values[name] = np.array([float(v) for v in lines[i + 1 : i + 1 + n]]).reshape(shape)
        i += 1 + n
    return values


def recheck(query, onnx_paths: dict[str, str], values: dict[str, np.ndarray]) -> tuple[bool, str]:
    """Does the query hold at the printed inputs, with outputs recomputed by onnxruntime?"""
    import onnxruntime as ort

    from nnmiplib.vnnlib import load_onnx

    v = np.zeros(query.n_cols)
    for var in query.variables:
        if var.name not in values or values[var.name].size != var.size:
            return False, f"variable {var.name} missing or of the wrong size in the assignment"
        v[var.offset : var.offset + var.size] = values[var.name].ravel()
    for nd in query.networks:
        path = onnx_paths[nd.equal_to or nd.name]
        _, info = load_onnx(path)
        data = path
        if str(path).endswith(".gz"):
            import gzip

            with gzip.open(path, "rb") as fh:
                data = fh.read()
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        xv = nd.inputs[0]
        x = values[xv.name].astype(np.dtype(info.input_dtype)).reshape(info.input_shape)
        if not np.array_equal(x.astype(np.float64).ravel(), values[xv.name].ravel()):
            return False, f"printed input {xv.name} is not representable in {info.input_dtype}"
        y = np.asarray(sess.run(None, {info.input_name: x})[0], dtype=np.float64).ravel()
        ov = nd.outputs[0]
        v[ov.offset : ov.offset + ov.size] = y
    return (True, "ok") if query.satisfied(v) else (False, "query does not hold at the printed inputs")


def run_instance(d: Path, onnx: str, vnnlib: str, timeout: float) -> dict:
    from nnmiplib.vnnlib.query import read_query

    qpath, npath = d / vnnlib, d / onnx
    row = {"onnx": onnx, "vnnlib": vnnlib, "timeout": timeout}
    try:
        query = read_query(qpath)
    except (ValueError, FileNotFoundError) as exc:
        return {**row, "result": "error", "time": 0.0, "witness": "", "note": str(exc)[:80]}
    needed = [n.name for n in query.networks if not n.equal_to]
    name = "N" if query.version == "1.0" else needed[0]
    cmd = [sys.executable, "-m", "nnmiplib", "verify", str(qpath), "--network", f"{name}={npath}",
           "--timeout", f"{timeout:g}"]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10, cwd=ROOT, check=False)
        out, rc, err = p.stdout, p.returncode, p.stderr
    except subprocess.TimeoutExpired:
        out, rc, err = "", -9, "killed after timeout + 10 s"
    dt = time.perf_counter() - t0
    lines = out.splitlines()
    result = lines[0].strip() if lines and rc == 0 else "error"
    witness, note = "", (err.strip().splitlines() or [""])[-1][:80] if result == "error" else ""
    if result == "sat":
        try:
            ok, note = recheck(query, {name: str(npath)}, parse_assignment(lines[1:]))
        except Exception as exc:  # noqa: BLE001 -- a failed check is reported, not raised
            ok, note = False, f"unparsable assignment: {exc}"[:80]
        witness = "ok" if ok else "WRONG"
    return {**row, "result": result, "time": dt, "witness": witness, "note": note}


def run_folder(d: Path, max_timeout: float | None = None) -> tuple[list[dict], dict]:
    d = Path(d)
    rows = []
    with open(d / "instances.csv", newline="") as f:
        for rec in csv.reader(f):
            if not rec or rec[0].startswith("#"):
                continue
            onnx, vnnlib, t = rec[0].strip(), rec[1].strip(), float(rec[2])
            rows.append(run_instance(d, onnx, vnnlib, min(t, max_timeout) if max_timeout else t))
    expected = {}
    if (d / "expected.csv").exists():
        with open(d / "expected.csv", newline="") as f:
            expected = {r[0].strip(): r[1].strip() for r in csv.reader(f) if r}
    wrong_answers = sum(1 for r in rows if r["result"] in ("sat", "unsat") and r["vnnlib"] in expected
                        and expected[r["vnnlib"]] != r["result"])
    totals = {
        "instances": len(rows),
        "solved": sum(r["result"] in ("sat", "unsat") for r in rows),
        "sat": sum(r["result"] == "sat" for r in rows),
        "unsat": sum(r["result"] == "unsat" for r in rows),
        "unknown": sum(r["result"] == "unknown" for r in rows),
        "timeouts": sum(r["result"] == "timed-out" for r in rows),
        "errors": sum(r["result"] == "error" for r in rows),
        "wrong_witnesses": sum(r["witness"] == "WRONG" for r in rows),
        "wrong_answers": wrong_answers,
        "time": sum(r["time"] for r in rows),
    }
    return rows, totals


# ------------------------------------------------------------------ the generated example
def _bruteforce_range(net, c, lo=-1.0, hi=1.0, n=201):
    """Grid max of c·y on [lo, hi]^2 and a Lipschitz bound on what the grid can miss."""
    g = np.linspace(lo, hi, n)
    X = np.array(np.meshgrid(g, g)).reshape(2, -1).T
    vals = net.forward(X) @ c
    L = np.abs(c)
    for W in reversed(net.weights):
        L = L @ np.abs(W)
    miss = float(L.sum()) * (g[1] - g[0]) / 2
    return float(vals.max()), miss


def make_example(d: Path, seed: int = 0) -> Path:
    """Tiny VNN-COMP folder: 2-input networks, 1.0 and 2.0 queries with brute-force answers."""
    import gzip

    from nnmiplib import Network

    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    net = Network([rng.normal(size=(10, 2)), rng.normal(size=(10, 10)) / 3, rng.normal(size=(3, 10)) / 3],
                  [rng.normal(size=10) * 0.3, rng.normal(size=10) * 0.3, rng.normal(size=3) * 0.3], name="tiny")
    net.to_onnx(d / "tiny.onnx")
    net32 = Network([np.float32(w).astype(np.float64) for w in net.weights],
                    [np.float32(b).astype(np.float64) for b in net.biases])
    c = np.array([1.0, -1.0, 0.0])
    top, miss = _bruteforce_range(net32, c)
    inst, exp = [], []
    box1 = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "".join(
        f"(declare-const Y_{i} Real)\n" for i in range(3)) + "".join(
        f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))\n" for i in range(2))
    box2 = ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X float32 [1,2]) "
            "(declare-output Y float32 [1,3]))\n(assert (and (>= X[0,0] -1.0) (<= X[0,0] 1.0) "
            "(>= X[0,1] -1.0) (<= X[0,1] 1.0)))\n")
    for tag, thr, ans in (("sat", float(top - 0.05), "sat"), ("unsat", float(top + miss + 0.05), "unsat")):
        q1 = box1 + f"(assert (>= (- Y_0 Y_1) {thr!r}))\n"
        (d / f"v1_{tag}.vnnlib").write_text(q1)
        with gzip.open(d / f"v1gz_{tag}.vnnlib.gz", "wt") as f:
            f.write(q1)
        (d / f"v2_{tag}.vnnlib").write_text(box2 + f"(assert (>= (- Y[0,0] Y[0,1]) {thr!r}))\n")
        for q in (f"v1_{tag}.vnnlib", f"v1gz_{tag}.vnnlib.gz", f"v2_{tag}.vnnlib"):
            inst.append(("tiny.onnx", q, 20))
            exp.append((q, ans))
    with open(d / "instances.csv", "w", newline="") as f:
        csv.writer(f).writerows(inst)
    with open(d / "expected.csv", "w", newline="") as f:
        csv.writer(f).writerows(exp)
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", help="benchmark folder with instances.csv")
    ap.add_argument("--make-example", action="store_true", help="write a tiny generated benchmark into DIR first")
    ap.add_argument("--max-timeout", type=float, default=None, help="cap every instance's timeout (seconds)")
    ap.add_argument("--csv", help="also write the per-instance table here")
    args = ap.parse_args(argv)
    d = Path(args.dir)
    if args.make_example:
        make_example(d)
    rows, totals = run_folder(d, args.max_timeout)
    print(f"{'vnnlib':<28} {'onnx':<16} {'result':<10} {'time':>7}  witness  note")
    for r in rows:
        print(f"{r['vnnlib']:<28} {r['onnx']:<16} {r['result']:<10} {r['time']:7.2f}  {r['witness']:<7}  {r['note']}")
    print("totals: " + ", ".join(f"{k} {v:.1f}" if k == "time" else f"{k} {v}" for k, v in totals.items()))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["onnx"])
            w.writeheader()
            w.writerows(rows)
    return 1 if totals["wrong_witnesses"] or totals["wrong_answers"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
