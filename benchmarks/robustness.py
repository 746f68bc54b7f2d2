"""L∞ robustness of MNIST MLPs through ``nnmiplib verify``, as a new user runs it: ``bab`` against ``mip``.

    .venv/bin/python benchmarks/robustness.py [--nets 2 4 6] [--eps 0.02 0.03 0.05] [--images 15]
                                              [--engines bab mip] [--timeout 120] [--images-for mip=5]
                                              [--jobs 1] [--small] [--quick] [--out results.json]

Networks: MLPs with 2, 4 and 6 hidden layers of 256, unregularised, trained by
:func:`nnmiplib.train.train_mlp` (seed 0, :data:`EPOCHS` epochs: each reaches ≥ 97 % test
accuracy) and cached in ``data/benchmarks/robustness/nets`` (``Network.save``; accuracy,
epochs and training time beside them in JSON), written as float32 ONNX.

Queries: for the first ``--images`` correctly classified test images of each net (by
onnxruntime on the ONNX file) and each ε, the mnist_fc form of VNN-LIB 1.0: the input box
``[x − ε, x + ε] ∩ [0, 1]`` and the disjunction "some other class ``Y_j ≥ Y_true``".

Each (query, engine) is one run of the command line in a subprocess,
``nnmiplib -v verify Q.vnnlib --network N=net.onnx --timeout T --engine E`` (hard kill 30 s
after ``T``; ``--jobs`` runs side by side, the engines of one query next to each other, each
on its share of the cores: ``OMP_NUM_THREADS`` = cores // jobs unless set),
recording the answer word, the wall time and the stderr log. Cross-checks, for zero wrong
answers:

- every ``sat`` assignment is re-checked here: the printed input is float32-representable,
  inside the box, and onnxruntime on it gives some other class ≥ the true class;
- an ``unsat`` must not meet a checked ``sat`` of the other engine nor a counterexample of
  this benchmark's own PGD (float32 torch, targeted at every other class, random restarts,
  every hit re-checked by onnxruntime);
- ``--small``: on a 2×32 net trained for 2 epochs, ε ∈ {0.01, 0.02}, every answer is
  compared with ``--engine mip`` run to completion without ``--timeout``.

Printed: per query the answers; per (net, ε, engine) the decided count (sat/unsat), the
unknown and timed-out counts, the median and max wall time, the wrong answers; per (net,
ε) the ratios bab/mip on the queries both ran (decided counts, median times). Wrong
answers, crashes, overruns of ``--timeout`` and runs that spent their budget on a query
the PGD broke are copied with the network and a ``repro.sh`` to
``data/benchmarks/failures/``. The load average is printed at the start, sampled at
every run and summarised at the end: on a shared machine the times mean little without it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "data" / "benchmarks"
HERE = DATA / "robustness"
FAILURES = DATA / "failures"

#: training epochs per number of hidden layers of 256 (each ≥ 97 % test accuracy, measured)
EPOCHS = {2: 6, 4: 6, 6: 6}
#: the small cross-check net: hidden layers, epochs, ε values
SMALL = ((32, 32), 2, (0.01, 0.02))
HARD_KILL = 30.0          # seconds after --timeout before a run is killed
REFERENCE_KILL = 3600.0   # seconds before a reference run without --timeout is killed


# ------------------------------------------------------------------ networks
def net_tag(hidden, epochs) -> str:
    return f"mnist-{hidden[0]}x{len(hidden)}-none-e{epochs}-s0"


def get_net(hidden: tuple[int, ...], epochs: int, data) -> tuple[object, dict, Path]:
    """The trained net (cached), its info (accuracy, epochs, training time) and its ONNX file."""
    from nnmiplib import Network
    from nnmiplib.train import train_mlp

    d = HERE / "nets"
    d.mkdir(parents=True, exist_ok=True)
    tag = net_tag(hidden, epochs)
    npz, meta, onnx = d / f"{tag}.npz", d / f"{tag}.json", d / f"{tag}.onnx"
    if npz.exists() and meta.exists():
        net, info = Network.load(npz), json.loads(meta.read_text())
    else:
        t0 = time.perf_counter()
        net, hist = train_mlp(hidden=hidden, reg="none", epochs=epochs, seed=0, progress=False, data=data, name=tag)
        seconds = time.perf_counter() - t0
        x, y = data[2]
        info = {"hidden": list(hidden), "epochs": epochs, "train_seconds": seconds,
                "test_acc": float(net.accuracy(x, y)), "val_acc": hist["val_acc"]}
        net.save(npz)
        meta.write_text(json.dumps(info, indent=1))
    if not onnx.exists():
        net.to_onnx(onnx, dtype="float32")
    return net, info, onnx


class Onnx:
    """onnxruntime session of one ONNX file (one thread), float32 in, float64 out."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inp = self.sess.get_inputs()[0]
        self.name = inp.name
        self.shape = [d if isinstance(d, int) else 1 for d in inp.shape]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        out = [self.sess.run(None, {self.name: xi.reshape(self.shape)})[0].ravel() for xi in np.atleast_2d(x)]
        return np.asarray(out, dtype=np.float64)


# ------------------------------------------------------------------ queries
def box(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    return np.clip(x - eps, 0.0, 1.0), np.clip(x + eps, 0.0, 1.0)


def write_query(path: Path, lo: np.ndarray, hi: np.ndarray, label: int, note: str) -> Path:
    """The mnist_fc form of VNN-LIB 1.0: input box, then ``(or (and (>= Y_j Y_label)) …)``."""
    n, k = len(lo), 10
    lines = [f"; {note}", f"; robust unless some other class scores at least class {label}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(n)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(k)]
    lines.append("; input box")
    for i in range(n):
        lines.append(f"(assert (<= X_{i} {float(hi[i])!r}))")
        lines.append(f"(assert (>= X_{i} {float(lo[i])!r}))")
    lines.append("; some other class at least the true class")
    lines.append("(assert (or")
    lines += [f"    (and (>= Y_{j} Y_{label}))" for j in range(k) if j != label]
    lines.append("))")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def first_correct(sess: Onnx, x: np.ndarray, y: np.ndarray, n: int) -> list[int]:
    out, i = [], 0
    while len(out) < n and i < len(x):
        j = min(len(x), i + 256)
        pred = sess(x[i:j]).argmax(1)
        out += [i + int(k) for k in np.flatnonzero(pred == y[i:j])]
        i = j
    return out[:n]


# ------------------------------------------------------------------ checks of our own
def float32_inside(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float32 box inside the real box [lo, hi]."""
    lo32 = lo.astype(np.float32)
    lo32 = np.where(lo32.astype(np.float64) < lo, np.nextafter(lo32, np.float32(np.inf)), lo32)
    hi32 = hi.astype(np.float32)
    hi32 = np.where(hi32.astype(np.float64) > hi, np.nextafter(hi32, np.float32(-np.inf)), hi32)
    return lo32, hi32


def holds(sess: Onnx, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, label: int) -> tuple[bool, str]:
    """Is ``x`` a counterexample: float32, in the box, and onnxruntime gives some ``Y_j ≥ Y_label``?"""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.shape != lo.shape:
        return False, f"input of size {x.size}, expected {lo.size}"
    if not np.array_equal(x.astype(np.float32).astype(np.float64), x):
        return False, "input not representable in float32"
    if np.any(x < lo) or np.any(x > hi):
        return False, f"input outside the box by {max(np.max(lo - x), np.max(x - hi)):.3g}"
    yv = sess(x)[0]
    others = np.delete(yv, label)
    if others.max() >= yv[label]:
        j = int(np.delete(np.arange(10), label)[others.argmax()])
        return True, f"class {j} ≥ class {label} by {others.max() - yv[label]:.3g}"
    return False, f"class {label} still wins by {yv[label] - others.max():.3g}"


def pgd(net, sess: Onnx, lo: np.ndarray, hi: np.ndarray, x0: np.ndarray, label: int, *, steps: int = 200,
        restarts: int = 8, seed: int = 0):
    """Targeted PGD in float32 (every other class, ``restarts`` starts each); a checked counterexample or None."""
    import torch

    torch.set_num_threads(1)
    lo32, hi32 = float32_inside(lo, hi)
    Ws = [torch.tensor(np.asarray(W), dtype=torch.float32) for W in net.weights]
    bs = [torch.tensor(np.asarray(b), dtype=torch.float32) for b in net.biases]

    def f(x):
        for W, b in zip(Ws[:-1], bs[:-1]):
            x = torch.relu(x @ W.T + b)
        return x @ Ws[-1].T + bs[-1]

    targets = [j for j in range(10) if j != label]
    tgt = torch.tensor(np.repeat(targets, restarts))
    g = torch.Generator().manual_seed(seed)
    tlo, thi = torch.tensor(lo32), torch.tensor(hi32)
    X = tlo + torch.rand((len(tgt), len(lo)), generator=g) * (thi - tlo)
    X[::restarts] = torch.clamp(torch.tensor(np.asarray(x0, dtype=np.float32)), tlo, thi)
    width = thi - tlo
    rows = torch.arange(len(tgt))
    for t in range(steps):
        X.requires_grad_(True)
        Y = f(X)
        m = Y[rows, tgt] - Y[:, label]
        grad, = torch.autograd.grad(m.sum(), X)
        with torch.no_grad():
            hit = torch.nonzero(m >= 0).ravel()
            for i in hit[:3].tolist():
                ok, why = holds(sess, X[i].numpy(), lo, hi, label)
                if ok:
                    return X[i].numpy().astype(np.float64), t, why
            eta = 0.25 * (1.0 - 0.95 * t / steps)
            X = torch.minimum(torch.maximum(X + eta * width * torch.sign(grad), tlo), thi)
    return None, steps, "no counterexample"


def parse_assignment(lines: list[str]) -> np.ndarray:
    """The inputs ``X`` of the printed assignment (§5.3.1: ``NAME TYPE [dims]`` then values)."""
    xs: dict[int, float] = {}
    flat = None
    i = 0
    while i < len(lines):
        head = lines[i].split()
        if not head:
            i += 1
            continue
        name, dims = head[0], "".join(head[2:])
        shape = [int(d) for d in dims.strip("[]").split(",") if d.strip()]
        n = int(np.prod(shape)) if shape else 1
        vals = [float(v) for v in lines[i + 1 : i + 1 + n]]
        if len(vals) != n:
            raise ValueError(f"variable {name}: {len(vals)} values for shape {shape}")
        m = re.fullmatch(r"X_(\d+)", name)
        if m:
            xs[int(m.group(1))] = vals[0]
        elif name == "X":
            flat = np.array(vals)
        i += 1 + n
    if flat is not None:
        return flat
    if not xs:
        raise ValueError("no input variable in the assignment")
    return np.array([xs[k] for k in range(len(xs))])


# ------------------------------------------------------------------ runs
def command() -> list[str]:
    exe = Path(sys.executable).parent / "nnmiplib"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nnmiplib"]


def run_cli(q: dict, engine: str, timeout: float | None, logdir: Path) -> dict:
    """One ``nnmiplib verify`` subprocess: answer word, wall time, the re-check of a ``sat``."""
    cmd = [*command(), "-v", "verify", q["vnnlib"], "--network", f"N={q['onnx']}"]
    if timeout is not None:
        cmd += ["--timeout", f"{timeout:g}"]
    cmd += ["--engine", engine]
    tag = f"{q['id']}-{engine}{'' if timeout is not None else '-reference'}"
    logdir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    killed = threading.Event()
    with open(logdir / f"{tag}.out", "w+") as fo, open(logdir / f"{tag}.err", "w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=ROOT)

        def kill():
            killed.set()
            p.kill()

        timer = threading.Timer((timeout + HARD_KILL) if timeout is not None else REFERENCE_KILL, kill)
        timer.start()
        _, status, usage = os.wait4(p.pid, 0)  # the child's CPU time: on a shared machine, what it really got
        wall = time.perf_counter() - t0
        timer.cancel()
        p.returncode = rc = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read() + ("\nkilled by the benchmark" if killed.is_set() else "")
    cpu = usage.ru_utime + usage.ru_stime
    (logdir / f"{tag}.out").unlink()
    (logdir / f"{tag}.err").unlink()
    lines = out.splitlines()
    word = lines[0].strip() if lines and rc == 0 else "error"
    (logdir / f"{tag}.log").write_text(" ".join(cmd) + f"\n# rc {rc}, {wall:.2f} s wall, {cpu:.2f} s CPU, "
                                       f"load {load:.2f}\n" + "\n".join(lines[:1]) + "\n--- stderr\n" + err)
    r = {"engine": engine, "timeout": timeout, "answer": word, "time": wall, "cpu": cpu, "rc": rc, "load": load,
         "check": "", "note": "", "log": str(logdir / f"{tag}.log"), "cmd": cmd}
    if word == "sat":
        try:
            x = parse_assignment(lines[1:])
            ok, why = holds(Onnx(Path(q["onnx"])), x, np.array(q["lo"]), np.array(q["hi"]), q["label"])
        except Exception as exc:  # noqa: BLE001 -- an unreadable assignment is a failed check
            ok, why = False, f"unparsable assignment: {exc}"
        r["check"], r["note"] = ("ok" if ok else "WRONG"), why
    elif word not in ("unsat", "unknown", "timed-out"):
        tail = [s for s in err.strip().splitlines() if s.strip()]
        r["note"] = tail[-1][:120] if tail else f"exit status {rc}"
    elif re.search(r"Traceback|error:", err):
        r["note"] = "stderr: " + next(s for s in err.splitlines() if re.search(r"Traceback|error:", s))[:100]
    if timeout is not None and wall > timeout + 5:
        r["note"] = (r["note"] + "; " if r["note"] else "") + f"overran --timeout by {wall - timeout:.1f} s"
    return r


def make_queries(nets: list[tuple], eps_list, n_images: int, data, group: str) -> tuple[list[dict], list[dict]]:
    """Nets (trained or cached), their info, and the queries with our own PGD's verdict."""
    x_te, y_te = data[2]
    infos, queries = [], []
    for hidden, epochs in nets:
        net, info, onnx = get_net(hidden, epochs, data)
        sess = Onnx(onnx)
        name = f"{hidden[0]}x{len(hidden)}"
        infos.append({"net": name, **{k: v for k, v in info.items() if k != "val_acc"}, "onnx": str(onnx)})
        idx = first_correct(sess, x_te, y_te, n_images)
        for eps in eps_list:
            for i in idx:
                lo, hi = box(x_te[i], eps)
                label = int(y_te[i])
                q = HERE / "queries" / name / f"eps{eps:g}" / f"img{i:04d}.vnnlib"
                write_query(q, lo, hi, label, f"MNIST {name} ({net_tag(hidden, epochs)}), test image {i} "
                                              f"(label {label}), L-inf eps {eps:g}, clipped to [0, 1]")
                t0 = time.perf_counter()
                cex, steps, why = pgd(net, sess, lo, hi, x_te[i], label)
                queries.append({"id": f"{name}-eps{eps:g}-img{i:04d}", "group": group, "net": name, "eps": eps,
                                "image": i, "label": label, "vnnlib": str(q), "onnx": str(onnx),
                                "lo": lo.tolist(), "hi": hi.tolist(),
                                "pgd": "sat" if cex is not None else "none", "pgd_steps": steps,
                                "pgd_time": time.perf_counter() - t0, "pgd_note": why})
    return infos, queries


def judge(q: dict) -> None:
    """Mark wrong answers and the runs worth a look (failures) on one query's runs."""
    runs = q["runs"]
    sat_seen = any(r["check"] == "ok" for r in runs.values()) or q["pgd"] == "sat"
    ref = q.get("reference")
    if ref is not None and ref["answer"] == "sat" and ref["check"] == "ok":
        sat_seen = True
    for r in [*runs.values(), *([ref] if ref else [])]:
        wrong = []
        if r["check"] == "WRONG":
            wrong.append("sat whose assignment fails the re-check")
        if r["answer"] == "unsat" and sat_seen:
            wrong.append("unsat where a checked counterexample exists")
        if ref is not None and r is not ref and ref["answer"] == "unsat" and r["answer"] == "sat" and r["check"] == "ok":
            wrong.append("reference mip said unsat, this run found a checked sat")
        if ref is not None and r is not ref and r["answer"] in ("sat", "unsat") \
                and ref["answer"] in ("sat", "unsat") and r["answer"] != ref["answer"]:
            wrong.append(f"disagrees with the reference mip ({ref['answer']})")
        r["wrong"] = "; ".join(dict.fromkeys(wrong))
        issues = []
        if r["wrong"]:
            issues.append("wrong answer")
        if r["answer"] == "error":
            issues.append("crash")
        if r["note"].startswith("stderr:"):
            issues.append("error on stderr")
        if "overran" in r["note"]:
            issues.append("overran --timeout")
        if r["answer"] in ("timed-out", "unknown") and q["pgd"] == "sat" and q["pgd_time"] < 10:
            issues.append(f"undecided although PGD finds a counterexample in {q['pgd_time']:.1f} s")
        r["issue"] = "; ".join(issues)


def keep_failure(q: dict, r: dict) -> Path:
    """Copy the query, the network and a reproduction script to ``data/benchmarks/failures``."""
    d = FAILURES / f"{q['id']}-{r['engine']}{'' if r['timeout'] is not None else '-reference'}"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(q["vnnlib"], d / "query.vnnlib")
    shutil.copy(q["onnx"], d / "net.onnx")
    shutil.copy(r["log"], d / "run.log")
    t = "" if r["timeout"] is None else f" --timeout {r['timeout']:g}"
    (d / "repro.sh").write_text("#!/bin/sh\n# " + r["issue"] + (f" ({r['wrong']})" if r["wrong"] else "")
                                + f"\n# seen: {r['answer']} in {r['time']:.1f} s at load {r['load']:.2f}; "
                                + f"own PGD: {q['pgd']} ({q['pgd_note']})\n"
                                + f"cd {ROOT} && .venv/bin/nnmiplib -v verify {d}/query.vnnlib --network N={d}/net.onnx"
                                + f"{t} --engine {r['engine']}\n")
    return d


# ------------------------------------------------------------------ tables
def _med(v):
    return statistics.median(v) if v else float("nan")


def table(queries: list[dict], engines: list[str], with_reference: bool = False) -> list[dict]:
    rows = []
    keys = list(dict.fromkeys((q["net"], q["eps"]) for q in queries))
    cols = list(engines) + (["mip∞"] if with_reference else [])
    for net, eps in keys:
        sel = [q for q in queries if (q["net"], q["eps"]) == (net, eps)]
        for e in cols:
            rs = [q["reference"] if e == "mip∞" else q["runs"][e] for q in sel
                  if (e == "mip∞" and q.get("reference")) or e in q["runs"]]
            if not rs:
                continue
            dec = [r for r in rs if r["answer"] in ("sat", "unsat")]
            rows.append({"net": net, "eps": eps, "engine": e, "n": len(rs),
                         "sat": sum(r["answer"] == "sat" for r in rs), "unsat": sum(r["answer"] == "unsat" for r in rs),
                         "unknown": sum(r["answer"] == "unknown" for r in rs),
                         "timed_out": sum(r["answer"] == "timed-out" for r in rs),
                         "errors": sum(r["answer"] == "error" for r in rs),
                         "decided": len(dec), "median_time": _med([r["time"] for r in rs]),
                         "median_time_decided": _med([r["time"] for r in dec]),
                         "max_time": max(r["time"] for r in rs),
                         "cpu_share": sum(r["cpu"] for r in rs) / max(sum(r["time"] for r in rs), 1e-9),
                         "wrong": sum(bool(r["wrong"]) for r in rs),
                         "pgd_sat": sum(q["pgd"] == "sat" for q in sel)})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'net':>6} {'eps':>5} {'engine':>6} {'n':>3} {'decided':>8} {'sat':>4} {'unsat':>5} {'unknown':>7} "
          f"{'timed-out':>9} {'err':>3} {'median s':>8} {'med dec s':>9} {'max s':>7} {'CPU/wall':>8} {'wrong':>5} "
          f"{'pgd sat':>7}")
    for r in rows:
        print(f"{r['net']:>6} {r['eps']:>5g} {r['engine']:>6} {r['n']:>3} {r['decided']:>3} {r['decided'] / r['n']:4.0%} "
              f"{r['sat']:>4} {r['unsat']:>5} {r['unknown']:>7} {r['timed_out']:>9} {r['errors']:>3} "
              f"{r['median_time']:8.1f} {r['median_time_decided']:9.1f} {r['max_time']:7.1f} {r['cpu_share']:8.2f} {r['wrong']:>5} "
              f"{r['pgd_sat']:>7}")


def print_ratios(queries: list[dict], a: str, b: str) -> list[dict]:
    """bab/mip on the queries both engines ran: decided counts, median times (all, both decided)."""
    out = []
    for net, eps in dict.fromkeys((q["net"], q["eps"]) for q in queries):
        both = [q for q in queries if (q["net"], q["eps"]) == (net, eps) and a in q["runs"] and b in q["runs"]]
        if not both:
            continue
        da = sum(q["runs"][a]["answer"] in ("sat", "unsat") for q in both)
        db = sum(q["runs"][b]["answer"] in ("sat", "unsat") for q in both)
        ta, tb = _med([q["runs"][a]["time"] for q in both]), _med([q["runs"][b]["time"] for q in both])
        bd = [q for q in both if all(q["runs"][e]["answer"] in ("sat", "unsat") for e in (a, b))]
        ra = _med([q["runs"][a]["time"] / q["runs"][b]["time"] for q in bd])
        out.append({"net": net, "eps": eps, "n": len(both), a: da, b: db, "median_time_" + a: ta,
                    "median_time_" + b: tb, "median_ratio_both_decided": ra, "both_decided": len(bd)})
        print(f"{net:>6} eps {eps:<5g} on {len(both):>2} queries: decided {a} {da} / {b} {db}"
              f" (ratio {da / db if db else float('inf'):.2f}); median wall {a} {ta:.1f} s / {b} {tb:.1f} s"
              f" (ratio {ta / tb:.2f}); on the {len(bd)} both decided, median of {a}/{b} time {ra:.2f}")
    return out


# ------------------------------------------------------------------ main
def parse_limits(items) -> dict[str, int]:
    out = {}
    for it in items or []:
        e, _, n = it.partition("=")
        out[e] = int(n)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", nargs="*", type=int, default=[2, 4, 6], help="hidden layers of 256 (2, 4, 6)")
    ap.add_argument("--eps", nargs="*", type=float, default=[0.02, 0.03, 0.05])
    ap.add_argument("--images", type=int, default=15, help="first correctly classified test images per net")
    ap.add_argument("--engines", nargs="*", default=["bab", "mip"])
    ap.add_argument("--images-for", nargs="*", default=[], metavar="ENGINE=N",
                    help="run ENGINE on the first N images of each (net, ε) only, e.g. mip=5")
    ap.add_argument("--timeout", type=float, default=120.0, help="--timeout of every run (seconds)")
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side")
    ap.add_argument("--small", action="store_true",
                    help="also the 2×32 net (2 epochs), ε 0.01/0.02, against mip without a time limit")
    ap.add_argument("--small-images", type=int, default=15)
    ap.add_argument("--no-main", action="store_true", help="only the --small cross-check")
    ap.add_argument("--quick", action="store_true",
                    help="reduced set: 2×256 and 4×256, ε 0.03, 3 images, --timeout 60, --small on 5 images")
    ap.add_argument("--out", help="write every query and run here (JSON)")
    args = ap.parse_args(argv)
    if args.quick:
        args.nets, args.eps, args.images, args.timeout = [2, 4], [0.03], 3, 60.0
        args.small, args.small_images = True, 5
    limits = parse_limits(args.images_for)

    from nnmiplib.data import load_mnist

    print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; command {' '.join(command())}",
          flush=True)
    data = load_mnist()
    infos, queries = [], []
    if not args.no_main:
        bad = [k for k in args.nets if k not in EPOCHS]
        if bad:
            ap.error(f"--nets: hidden layer counts {bad} have no epochs in EPOCHS {sorted(EPOCHS)}")
        i, qs = make_queries([((256,) * k, EPOCHS[k]) for k in args.nets], args.eps, args.images, data, "main")
        infos += i
        queries += qs
    if args.small:
        hidden, epochs, eps_small = SMALL
        i, qs = make_queries([(hidden, epochs)], eps_small, args.small_images, data, "small")
        infos += i
        queries += qs
    for info in infos:
        print(f"net {info['net']}: {info['epochs']} epochs, test accuracy {info['test_acc']:.2%}, "
              f"trained in {info['train_seconds']:.0f} s")
    print(f"{len(queries)} queries; own PGD breaks {sum(q['pgd'] == 'sat' for q in queries)}", flush=True)

    # tasks: per query its engines side by side; the small group also its reference run
    tasks = []
    pos: dict[tuple, int] = {}
    for q in queries:
        q["runs"] = {}
        k = pos[(q["net"], q["eps"])] = pos.get((q["net"], q["eps"]), -1) + 1
        for e in args.engines:
            if k < limits.get(e, 10**9):
                tasks.append((q, e, args.timeout))
        if q["group"] == "small":
            tasks.append((q, "mip", None))
    logdir = HERE / "logs" / time.strftime("%Y%m%d-%H%M%S")
    lock = threading.Lock()
    t_start = time.perf_counter()

    def work(task):
        q, e, t = task
        r = run_cli(q, e, t, logdir)
        with lock:
            if t is None:
                q["reference"] = r
            else:
                q["runs"][e] = r
            who = "mip∞" if t is None else e
            print(f"{q['id']:<26} {who:>4}: {r['answer']:<9} {r['time']:6.1f} s (CPU {r['cpu']:6.1f} s)  "
                  f"load {r['load']:4.2f}  "
                  f"{r['check']:<5} pgd {q['pgd']:<4} {r['note']}", flush=True)
        return r

    # each run gets its share of the cores (the verifier's searches read OMP_NUM_THREADS)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, args.jobs))))
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(work, tasks))
    elapsed = time.perf_counter() - t_start

    for q in queries:
        judge(q)
    failures = []
    for q in queries:
        for r in [*q["runs"].values(), *([q["reference"]] if q.get("reference") else [])]:
            if r["issue"]:
                failures.append((q["id"], r["engine"], r["issue"], str(keep_failure(q, r))))
    loads = [r["load"] for q in queries for r in [*q["runs"].values(), *([q["reference"]] if q.get("reference") else [])]]

    main_q = [q for q in queries if q["group"] == "main"]
    small_q = [q for q in queries if q["group"] == "small"]
    result = {"args": vars(args), "nets": infos, "elapsed": elapsed,
              "load": {"start_of_runs": loads[:1], "mean": float(np.mean(loads)) if loads else None,
                       "max": max(loads) if loads else None}}
    print(f"\n--timeout {args.timeout:g} s, {args.jobs} run(s) side by side, {elapsed:.0f} s in all; load average "
          f"(1 min) sampled at each run: mean {result['load']['mean']:.2f}, max {result['load']['max']:.2f} "
          f"on {os.cpu_count()} cores")
    for label, qs, ref in (("robustness", main_q, False), ("small cross-check (mip∞: no --timeout)", small_q, True)):
        if not qs:
            continue
        print(f"\n{label}")
        rows = table(qs, args.engines, with_reference=ref)
        print_table(rows)
        result[f"table_{'main' if not ref else 'small'}"] = rows
        if "bab" in args.engines and "mip" in args.engines:
            print("ratios bab/mip, same queries, same run:")
            result[f"ratios_{'main' if not ref else 'small'}"] = print_ratios(qs, "bab", "mip")
    wrong = [(q["id"], r["engine"], r["wrong"]) for q in queries
             for r in [*q["runs"].values(), *([q["reference"]] if q.get("reference") else [])] if r["wrong"]]
    print(f"\nwrong answers: {len(wrong)}")
    for w in wrong:
        print("  ", *w)
    print(f"runs kept under {FAILURES.relative_to(ROOT)}: {len(failures)}")
    for f in failures:
        print("  ", *f)
    if args.out:
        result["queries"] = [{k: v for k, v in q.items() if k not in ("lo", "hi")} for q in queries]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
