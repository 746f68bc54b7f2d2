"""Benchmark of the experiment runner (:mod:`nnmiplib.experiments`).

The same grid — ``--cells`` cells (default 16), each about ``--cell-seconds`` (0.5 s) of
real work: random bounded LPs solved by HiGHS through ``scipy.optimize.linprog`` — is run

1. in this process (``n_jobs=1``),
2. on a local pool of 2 spawned workers (``n_jobs=2``), cold (the spawn and the
   workers' imports included) and warm (the pool kept from the cold run, as a chapter's
   second grid finds it): ratio 1 → 2 workers,
3. on a Dask ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``:
   ratio against the warm local pool (cluster start-up reported separately),

each into a fresh cache, and the cache's own cost per cell is measured on a trivial cell:
*store* (hash the key, write the JSON atomically) and *hit* (a rerun that finds every
cell). Everything is printed side by side. Usage::

    .venv/bin/python benchmarks/runner.py [--cells 16] [--cell-seconds 0.5] [--json out.json]

The numbers depend on what else runs on the machine: the load average, each cell's wall
and CPU time, and the cores the run kept busy (total cell CPU / elapsed) are printed with
them. Every back-end must give the same objective values (checked).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linprog  # imported when a worker loads this module, not per cell

from nnmiplib.experiments import Grid, shutdown_pools


def lp_cell(seed: int, n: int = 60, m: int = 40, repeats: int = 1) -> dict:
    """Solve ``repeats`` random LPs max c·x, Ax <= b, 0 <= x <= 1 with HiGHS; one thread."""
    rng = np.random.default_rng(seed)
    cpu0 = time.process_time()
    total = 0.0
    for _ in range(repeats):
        a = rng.normal(size=(m, n))
        b = np.abs(rng.normal(size=m)) + 1.0
        c = rng.normal(size=n)
        r = linprog(-c, A_ub=a, b_ub=b, bounds=(0, 1), method="highs")
        total += -r.fun
    return {"objective_sum": total, "repeats": repeats, "cpu_s": time.process_time() - cpu0}


def noop_cell(i: int) -> dict:
    return {"i": i}


def calibrate(target: float) -> int:
    """How many LP solves make a cell last about ``target`` seconds here."""
    lp_cell(0, repeats=3)  # warm up imports
    t0 = time.perf_counter()
    lp_cell(1, repeats=20)
    per = (time.perf_counter() - t0) / 20
    return max(1, round(target / per))


def timed_run(grid: Grid, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    res = grid.run(progress=False, **kw)
    elapsed = time.perf_counter() - t0
    if not res.ok or res.n_computed != len(grid):
        raise RuntimeError(f"benchmark grid did not run fully: {res.summary()}")
    return elapsed, res


def same(a, b) -> None:
    va = [r["objective_sum"] for r in a.results()]
    if va != [r["objective_sum"] for r in b.results()]:
        raise RuntimeError("the same cells gave different results on two back-ends")


def per_cell(res, elapsed: float) -> tuple[float, float, float]:
    """Mean wall and CPU seconds of one cell, and the cores kept busy (total CPU / elapsed).

    Wall >> CPU per cell means the cores were shared with other work.
    """
    df = res.frame()
    return (float(df["_seconds"].mean()), float(df["cpu_s"].mean()),
            float(df["cpu_s"].sum()) / elapsed)


def cache_overhead(root: Path, n: int = 400) -> tuple[float, float]:
    """Seconds per cell of the cache: (store, hit), on a cell that does nothing."""
    cells = [{"i": i} for i in range(n)]
    t0 = time.perf_counter()
    for c in cells:
        noop_cell(**c)
    raw = time.perf_counter() - t0
    g = Grid("noop", noop_cell, cells, root=root)
    store, _ = timed_run(g)
    t0 = time.perf_counter()
    hit = Grid("noop", noop_cell, cells, root=root).run(progress=False)  # keys included
    hit_t = time.perf_counter() - t0
    assert hit.n_cached == n and hit.n_computed == 0
    return (store - raw) / n, hit_t / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=16)
    p.add_argument("--cell-seconds", type=float, default=0.5)
    p.add_argument("--no-dask", action="store_true", help="skip the LocalCluster run")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args(argv)

    load0 = os.getloadavg()
    repeats = calibrate(args.cell_seconds)
    cells = [{"seed": s, "repeats": repeats} for s in range(args.cells)]
    out: dict = {"cells": args.cells, "repeats_per_cell": repeats, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="nnmiplib-bench-") as tmp:
        root = Path(tmp)
        t1, r1 = timed_run(Grid("bench", lp_cell, cells, root=root / "serial"), n_jobs=1)
        shutdown_pools()
        t2, r2 = timed_run(Grid("bench", lp_cell, cells, root=root / "pool"), n_jobs=2)
        t2w, r2w = timed_run(Grid("bench", lp_cell, cells, root=root / "pool-warm"), n_jobs=2)
        shutdown_pools()
        same(r1, r2)
        same(r1, r2w)
        out.update(serial_s=t1, pool2_cold_s=t2, pool2_warm_s=t2w)
        out["per_cell"] = {"serial": per_cell(r1, t1), "pool2": per_cell(r2, t2),
                           "pool2w": per_cell(r2w, t2w)}
        if not args.no_dask:
            from distributed import Client, LocalCluster

            t0 = time.perf_counter()
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None, silence_logs=40) as cluster, \
                    Client(cluster) as client:
                client.wait_for_workers(2)
                start = time.perf_counter() - t0
                t3, r3 = timed_run(Grid("bench", lp_cell, cells, root=root / "dask"),
                                   scheduler=client)
            same(r1, r3)
            out.update(dask2_s=t3, dask_startup_s=start)
            out["per_cell"]["dask2"] = per_cell(r3, t3)
        store, hit = cache_overhead(root / "overhead")
        out.update(cache_store_ms=1e3 * store, cache_hit_ms=1e3 * hit)
    out["loadavg_before"], out["loadavg_after"] = load0, os.getloadavg()

    w = 44
    note = {k: f"  | cell {v[0]:.2f} s wall, {v[1]:.2f} s CPU; {v[2]:.2f} cores busy"
            for k, v in out["per_cell"].items()}
    print(f"nnmiplib runner benchmark: {args.cells} cells x {repeats} LP solves, "
          f"{out['cores']} cores")
    print(f"{'in-process, n_jobs=1':<{w}} {t1:6.2f} s {'':<25}{note['serial']}")
    print(f"{'local pool, n_jobs=2, cold (spawn included)':<{w}} {t2:6.2f} s "
          f"{f'1 -> 2 workers: {t1 / t2:.2f}x':<25}{note['pool2']}")
    print(f"{'local pool, n_jobs=2, warm (pool reused)':<{w}} {t2w:6.2f} s "
          f"{f'1 -> 2 workers: {t1 / t2w:.2f}x':<25}{note['pool2w']}")
    if "dask2_s" in out:
        t3 = out["dask2_s"]
        print(f"{'Dask LocalCluster, 2 workers x 1 thread':<{w}} {t3:6.2f} s "
              f"{f'warm pool / Dask: {t2w / t3:.2f}':<25}{note['dask2']}")
        print(f"{'  + cluster start-up (not in the time above)':<{w}} "
              f"{out['dask_startup_s']:6.2f} s")
    print(f"{'cache overhead per cell, store / hit':<{w}} {out['cache_store_ms']:6.3f} ms / "
          f"{out['cache_hit_ms']:.3f} ms")
    print(f"load average before {load0[0]:.2f}, after {out['loadavg_after'][0]:.2f} on "
          f"{out['cores']} cores: wall >> CPU per cell means the cores were shared with "
          "other work, and the ratios understate what an idle machine gives")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
