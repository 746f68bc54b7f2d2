"""The experiment runner: keys, cache, resumption after Ctrl-C / kill, pool, Dask, CLI."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from nnmiplib import experiments as ex
from nnmiplib.experiments import executors
from nnmiplib.network import Network
from nnmiplib.study import run as cli_run

REPO = Path(__file__).resolve().parents[1]


# ---- cell functions (module level: pool workers import them) -----------------------------
def square(x, fail=False):
    """Logs its call, fails on request (or when $NNMIPLIB_TEST_FAIL lists x)."""
    log = os.environ.get("NNMIPLIB_TEST_CALL_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{x}\n")
    if fail or str(x) in os.environ.get("NNMIPLIB_TEST_FAIL", "").split(","):
        raise ValueError(f"cell x={x} asked to fail")
    if os.environ.get("NNMIPLIB_TEST_INTERRUPT") == str(x):
        raise KeyboardInterrupt
    return {"y": np.float64(x) ** 2, "v": np.arange(3) * x}


def worker_info(x, sleep=0.0, die=False):
    if die:
        os._exit(3)  # a crash that kills the worker process
    time.sleep(sleep)
    return {"x2": 2 * x, "pid": os.getpid(), "omp": os.environ.get("OMP_NUM_THREADS"),
            "openblas": os.environ.get("OPENBLAS_NUM_THREADS")}


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NNMIPLIB_DATA_DIR", str(tmp_path / "data"))
    for var in ("NNMIPLIB_TEST_CALL_LOG", "NNMIPLIB_TEST_FAIL", "NNMIPLIB_TEST_INTERRUPT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "data"


def calls(path: Path) -> list[int]:
    return [int(s) for s in path.read_text().split()] if path.exists() else []


# ---- keys ---------------------------------------------------------------------------------
def test_keys_canonical_numpy_networks_version():
    g = ex.Grid("k", square, [{"x": 1}])
    assert g.key({"x": np.int64(1)}) == g.key({"x": 1})
    assert g.key({"x": 1}) != g.key({"x": 1.0}) != g.key({"x": 2})
    a = np.arange(6.0).reshape(2, 3)
    assert g.key({"x": a}) == g.key({"x": a.copy()})
    assert g.key({"x": a}) != g.key({"x": a.T}) != g.key({"x": a + 1e-12})
    w = [np.eye(2), np.ones((1, 2))]
    b = [np.zeros(2), np.zeros(1)]
    n1, n2 = Network(w, b), Network(w, [np.zeros(2), np.ones(1)])
    assert g.key({"x": 1, "net": n1}) == g.key({"x": 1, "net": Network(w, b)})
    assert g.key({"x": 1, "net": n1}) != g.key({"x": 1, "net": n2})
    assert ex.Grid("k", square, [{"x": 1}], version="other").key({"x": 1}) != g.key({"x": 1})
    ge = ex.Grid("k", square, [{"x": 1}], key_extra=lambda p: {"net": f"d{p['x']}"})
    assert ge.key({"x": 1}) not in (g.key({"x": 1}), ge.key({"x": 2}))
    with pytest.raises(TypeError, match="cache key"):
        g.key({"x": object()})
    assert ex.product(a=[1, 2], b="xy") == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"},
                                            {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_bad_grids_are_refused():
    with pytest.raises(ValueError, match="module-level"):
        ex.Grid("g", lambda x: {}, [{"x": 1}])
    with pytest.raises(ValueError, match="same parameters"):
        ex.Grid("g", square, [{"x": 1}, {"x": np.int64(1)}])
    with pytest.raises(ValueError, match="folder"):
        ex.Grid("../g", square, [])
    with pytest.raises(ValueError, match="string keys"):
        ex.Grid("g", square, [{1: 2}])
    with pytest.raises(ValueError, match="unknown run option"), ex.run_options(bogus=1):
        pass


# ---- in-process: cache, failures, retries, Ctrl-C -------------------------------------
def test_inline_cache_failures_and_retry(tmp_path, monkeypatch, data_dir):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("NNMIPLIB_TEST_CALL_LOG", str(log))
    monkeypatch.setenv("NNMIPLIB_TEST_FAIL", "2")
    g = ex.Grid("sq", square, [{"x": x} for x in range(5)])
    r = g.run(progress=False)
    assert (r.n_done, r.n_failed, r.n_computed, r.ok) == (4, 1, 5, False)
    assert "1 FAILED" in r.summary() and "ValueError" in r.summary()
    assert r.failed[0]["params"] == {"x": 2} and "asked to fail" in r.failed[0]["traceback"]
    err = json.loads((g.directory / f"{g.keys[2]}.error.json").read_text())
    assert err["error"]["type"] == "ValueError" and err["params"] == {"x": 2}
    assert g.directory.parent == data_dir / "results" / "grids"
    df = r.frame()
    assert list(df["x"]) == [0, 1, 3, 4] and list(df["y"]) == [0.0, 1.0, 9.0, 16.0]
    assert df["v"].iloc[3] == [0, 4, 8] and (df["_seconds"] >= 0).all()
    assert r.results()[2] is None and r.results()[3]["y"] == 9.0
    # rerun: nothing recomputed, the failure still reported
    r2 = g.run(progress=False)
    assert (r2.n_cached, r2.n_computed, r2.n_failed) == (4, 0, 1) and len(calls(log)) == 5
    with pytest.raises(ex.GridError, match="1 FAILED"):
        g.run(progress=False, raise_on_failure=True)
    # retry on request: only the failed cell runs; its error file goes away
    monkeypatch.setenv("NNMIPLIB_TEST_FAIL", "")
    with ex.run_options(retry_failed=True) as got:
        r3 = g.run(progress=False)
    assert got == [r3] and r3.ok and r3.n_computed == 1 and calls(log)[5:] == [2]
    assert not list(g.directory.glob("*.error.json"))
    assert ex.Grid("sq", square, [{"x": x} for x in range(5)]).status() == {
        "done": 5, "failed": 0, "todo": 0}
    assert r3.frame(include_failed=True).shape[0] == 5


def test_ctrl_c_keeps_finished_cells(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("NNMIPLIB_TEST_CALL_LOG", str(log))
    monkeypatch.setenv("NNMIPLIB_TEST_INTERRUPT", "3")
    g = ex.Grid("intr", square, [{"x": x} for x in range(6)])
    with ex.run_options() as got, pytest.raises(KeyboardInterrupt):
        g.run(progress=False)
    assert got[0].interrupted and got[0].n_done == 3 and got[0].missing == [3, 4, 5]
    monkeypatch.delenv("NNMIPLIB_TEST_INTERRUPT")
    r = g.run(progress=False)
    assert r.ok and r.n_cached == 3 and calls(log) == [0, 1, 2, 3, 3, 4, 5]


def test_corrupt_or_foreign_cache_file_is_recomputed():
    g = ex.Grid("corrupt", square, [{"x": 1}, {"x": 2}])
    assert g.run(progress=False).ok
    (g.directory / f"{g.keys[0]}.json").write_text('{"key": "trunc')
    (g.directory / f"{g.keys[1]}.json").write_text('{"key": "someone-else", "result": {}}')
    r = g.run(progress=False)
    assert r.n_cached == 0 and r.n_computed == 2 and r.results()[1]["y"] == 4.0


KILL_SCRIPT = """
import json, os, signal, sys, time
from nnmiplib.experiments import Grid

# Ctrl-C as in a terminal: a test runner may start us with SIGINT ignored (inherited)
signal.signal(signal.SIGINT, signal.default_int_handler)

def cell(i):
    with open(os.environ["CALL_LOG"], "a") as f:
        f.write(f"{i}\\n")
    time.sleep(float(os.environ.get("CELL_SLEEP", "0.1")))
    return {"i": i, "sq": i * i}

if __name__ == "__main__":
    r = Grid("killme", cell, [{"i": i} for i in range(24)]).run(
        n_jobs=int(sys.argv[1]), progress=False)
    print(json.dumps({"cached": r.n_cached, "computed": r.n_computed, "done": r.n_done}))
"""


@pytest.mark.timeout(180)
@pytest.mark.parametrize("n_jobs, sig", [(1, signal.SIGKILL), (2, signal.SIGINT),
                                         (2, signal.SIGKILL)])
def test_killed_or_interrupted_run_resumes(tmp_path, data_dir, n_jobs, sig):
    """Kill (SIGKILL) or Ctrl-C (SIGINT) a run half way; no worker outlives it; rerun."""
    import psutil

    script = tmp_path / "killgrid.py"
    script.write_text(KILL_SCRIPT)
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    env = {**os.environ, "NNMIPLIB_DATA_DIR": str(data_dir), "CALL_LOG": str(log1), "CELL_SLEEP": "0.2"}
    gdir = data_dir / "results" / "grids" / "killme"
    p = subprocess.Popen([sys.executable, str(script), str(n_jobs)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline and len(list(gdir.glob("*.json"))) < 5:
        time.sleep(0.02)
    children = psutil.Process(p.pid).children(recursive=True)
    assert len(children) >= (n_jobs if n_jobs > 1 else 0)
    p.send_signal(sig)
    p.communicate(timeout=20)
    assert p.returncode != 0, "the run finished before it was stopped"
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"pool workers outlived their driver: {alive}"
    finished = {}
    for f in gdir.glob("*.json"):  # every file left behind is complete and valid
        rec = json.loads(f.read_text())
        assert rec["result"]["sq"] == rec["params"]["i"] ** 2
        finished[rec["params"]["i"]] = rec
    assert 5 <= len(finished) < 24
    # resume in-process (what is cached does not depend on where it ran)
    out = subprocess.run([sys.executable, str(script), "1"], check=False, text=True,
                         capture_output=True, timeout=60,
                         env={**env, "CALL_LOG": str(log2), "CELL_SLEEP": "0"})
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary == {"cached": len(finished), "computed": 24 - len(finished), "done": 24}
    assert set(calls(log2)).isdisjoint(finished) and len(calls(log2)) == 24 - len(finished)


# ---- local process pool ---------------------------------------------------------------
@pytest.mark.timeout(180)
def test_pool_matches_inline_single_thread_workers_and_worker_death():
    cells = [{"x": x, "sleep": 0.05} for x in range(10)]
    inline = ex.Grid("inline", worker_info, cells).run(n_jobs=1, progress=False).frame()
    # the pool is kept for the next run (no new spawn), until shutdown_pools()
    ex.shutdown_pools()
    before = set(ex.Grid("reuse1", worker_info, cells[:4]).run(n_jobs=2, progress=False)
                 .frame()["pid"])
    after = set(ex.Grid("reuse2", worker_info, cells[:4]).run(n_jobs=2, progress=False)
                .frame()["pid"])
    assert after <= before and os.getpid() not in before
    cells.insert(2, {"x": 99, "die": True})  # kills its worker: the pool breaks mid-grid
    r = ex.Grid("pool", worker_info, cells).run(n_jobs=2, progress=False)
    assert r.n_done == 10 and r.n_failed == 1 and r.failed[0]["type"] == "WorkerDied"
    assert r.failed[0]["params"] == {"x": 99, "die": True}  # only the culprit is blamed
    df = r.frame()
    assert list(df["x2"]) == list(inline["x2"]) == [2 * x for x in range(10)]
    assert set(df["omp"]) == {"1"} and set(df["openblas"]) == {"1"}
    assert os.getpid() not in set(df["pid"]) and not set(df["pid"]) <= before  # respawned
    ex.shutdown_pools()
    assert not executors._POOLS


# ---- Dask ---------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_dask_local_cluster_same_cache(monkeypatch, capsys):
    """One LocalCluster(n_workers=2, threads_per_worker=1, processes=True), three ways in:
    scheduler="local", a Client, an address (also from the command line)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests/
    try:
        cells = [{"x": x} for x in range(5)] + [{"x": 7, "fail": True}]
        r = ex.Grid("dask", square, cells).run(scheduler="local", n_jobs=2, progress=False)
        client = executors._CLUSTERS[2][1]
        workers = client.scheduler_info()["workers"].values()
        assert len(workers) == 2 and all(w["nthreads"] == 1 for w in workers)
        assert r.n_done == 5 and r.n_failed == 1 and r.failed[0]["type"] == "ValueError"
        assert "asked to fail" in r.failed[0]["traceback"]
        assert [v["y"] for v in r.results()[:5]] == [x * x for x in range(5)]
        info = ex.Grid("dask-info", worker_info, [{"x": 1}, {"x": 2}]).run(
            scheduler=client, progress=False).frame()
        assert set(info["omp"]) == {"1"} and os.getpid() not in set(info["pid"])
        # by address: a second driver sees the same cache, recomputes nothing
        address = client.scheduler.address
        r2 = ex.Grid("dask", square, cells).run(scheduler=address, progress=False)
        assert (r2.n_cached, r2.n_computed, r2.n_failed) == (5, 0, 1)
        assert r2.results() == r.results()
        # the command line, through the same scheduler
        mod = types.ModuleType("nnmiplib.study.ch2")
        mod.compute = fake_compute
        monkeypatch.setitem(sys.modules, "nnmiplib.study.ch2", mod)
        args = parse("02_bounds", "--scale", "smoke", "--no-progress", "--scheduler", address)
        assert args.func(args) == 0
        err = capsys.readouterr().err
        assert "grid fake-smoke: 3/3 cells done (0 cached, 3 computed" in err
    finally:
        ex.shutdown_pools()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert not executors._CLUSTERS
    # and an in-process run of the same grids reads the Dask results
    assert ex.Grid("dask", square, cells).load().n_done == 5
    assert ex.Grid("fake-smoke", square, [{"x": x} for x in range(3)]).status()["done"] == 3


# ---- command line -------------------------------------------------------------------------
def parse(*argv):
    parser = argparse.ArgumentParser(prog="nnmiplib")
    cli_run.add_parser(parser.add_subparsers(dest="cmd", required=True))
    return parser.parse_args(["run", *argv])


def fake_compute(scale, n_jobs=1, scheduler=None, time_limit=None, progress=True):
    cells = [{"x": x} for x in range({"smoke": 3, "quick": 4, "paper": 5}[scale])]
    return ex.Grid(f"fake-{scale}", square, cells).run(n_jobs=n_jobs, scheduler=scheduler,
                                                       progress=progress)


def test_cli_resolves_chapters_and_hooks(monkeypatch, capsys):
    assert cli_run.resolve_chapters("2") == cli_run.resolve_chapters("ch2") == [2]
    assert cli_run.resolve_chapters("01_training_and_rounding") == [1]
    assert cli_run.resolve_chapters("03_verification.ipynb") == [3]
    assert cli_run.resolve_chapters("all") == [1, 2, 3, 4, 5]
    for bad in ("7", "chapter2", ""):
        with pytest.raises(ValueError, match="unknown chapter"):
            cli_run.resolve_chapters(bad)
    with pytest.raises(ValueError, match=r"nnmiplib\.study\.ch9 does not exist"):
        cli_run.load_hook(9)
    from nnmiplib.cli import main  # the lead's dispatcher registers `run`

    assert main(["run", "ch9", "--scale", "smoke"]) == 1
    assert "unknown chapter 'ch9'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "nnmiplib.study.ch4", types.ModuleType("nnmiplib.study.ch4"))
    args = parse("4", "--scale", "smoke")
    assert args.func(args) == 1
    assert "nnmiplib.study.ch4 has no hook compute(scale" in capsys.readouterr().err


def test_cli_runs_a_chapter_and_exit_codes(monkeypatch, capsys):
    mod = types.ModuleType("nnmiplib.study.ch1")
    mod.compute = fake_compute
    monkeypatch.setitem(sys.modules, "nnmiplib.study.ch1", mod)
    args = parse("ch1", "--scale", "smoke", "--no-progress")
    assert (args.n_jobs, args.scheduler, args.time_limit) == (1, None, None)
    assert args.retry_failed is False
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "grid fake-smoke: 3/3 cells done (0 cached, 3 computed" in err and "chapter 1:" in err
    monkeypatch.setenv("NNMIPLIB_TEST_FAIL", "3")
    args = parse("1", "--scale", "quick", "--no-progress")
    assert args.func(args) == 1 and "1 FAILED" in capsys.readouterr().err
    assert args.func(args) == 1  # still failed: not retried silently
    assert "3/4 cells done (3 cached, 0 computed" in capsys.readouterr().err
    monkeypatch.setenv("NNMIPLIB_TEST_FAIL", "")
    args = parse("1", "--scale", "quick", "--no-progress", "--retry-failed", "--time-limit", "5")
    assert args.func(args) == 0
    assert "4/4 cells done (3 cached, 1 computed" in capsys.readouterr().err

    def broken(scale, **kw):
        raise RuntimeError("chapter exploded")

    mod.compute = broken
    assert args.func(args) == 1 and "chapter exploded" in capsys.readouterr().err


# ---- publishing workflow ------------------------------------------------------------------
def test_book_workflow_is_valid_yaml():
    import yaml

    wf = yaml.safe_load((REPO / ".github" / "workflows" / "book.yml").read_text())
    steps = wf["jobs"]["build"]["steps"]
    deploy = wf["jobs"]["deploy"]["steps"]
    uses = [s.get("uses", "") for s in steps + deploy]
    assert any(u.startswith("actions/checkout@") for u in uses)
    assert any(u.startswith("actions/setup-python@") for u in uses)
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    assert any("make book" in s.get("run", "") for s in steps)
    assert wf["permissions"]["pages"] == "write" and wf["permissions"]["id-token"] == "write"
