"""Where the cells of a :class:`~nnmiplib.experiments.Grid` run: pool and Dask back-ends.

:func:`execute_cell` runs one cell and turns any ordinary exception into an error outcome
``("error", {type, message, traceback}, seconds, where)``; it is what worker processes
import and call, so it stays a top-level function. :func:`run_pool` runs cells on a
kept pool of ``spawn``-ed processes (one BLAS thread each, see :data:`THREAD_ENV`) and
finds a cell that kills its worker; :func:`run_dask` runs them as Dask tasks (an address,
a ``Client`` or ``"local"``). Both hand every outcome to a ``sink(index, outcome)`` in
this process, which writes the cache. Ctrl-C drops the cells in flight and stops the
workers or cancels the tasks. :func:`shutdown_pools` stops the kept pools and clusters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..machine import n_cores
from .cache import to_json

logger = logging.getLogger("nnmiplib.experiments")

__all__ = ["THREAD_ENV", "execute_cell", "n_cores", "run_dask", "run_pool", "shutdown_pools"]

THREAD_ENV = {k: "1" for k in (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
)}
_MAX_POOL_RESTARTS = 10
_POOLS: dict[int, ProcessPoolExecutor] = {}  # reused by later runs: spawning costs seconds
_CLUSTERS: dict[int, tuple] = {}  # scheduler="local": (LocalCluster, Client) by n_workers


def execute_cell(fn: Callable[..., Mapping], params: dict) -> tuple:
    """Run one cell (in a worker); never raises for an ordinary exception."""
    where = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    try:
        out = fn(**params)
        if not isinstance(out, Mapping):
            raise TypeError(f"cell function must return a dict, got {type(out).__name__}")
        out = to_json(out)
        json.dumps(out)  # fail here, with a traceback, if the result is not JSON-able
        return ("ok", out, time.perf_counter() - t0, where)
    except Exception as exc:  # noqa: BLE001  (recorded, never dropped)
        err = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
        return ("error", err, time.perf_counter() - t0, where)


def _watch_parent(parent: int) -> None:
    """Pool worker initializer: exit when the driver dies (e.g. SIGKILL), leaving no orphan."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="nnmiplib-parent-watch", daemon=True).start()


def run_pool(grid: Any, todo: list[int], n_jobs: int, sink: Callable) -> str | None:
    """Run ``grid``'s cells ``todo`` on the kept pool of ``n_jobs`` spawned workers.

    Returns why the run stopped early (the pool broke too often), or None.
    """
    import multiprocessing
    import sys
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    main = sys.modules.get("__main__")
    if grid.fn.__module__ == "__main__" and not getattr(main, "__file__", None):
        raise ValueError(f"{grid.fn_name} is defined in an interactive session, which pool "
                         "workers cannot import; move it into a module, or use n_jobs=1 "
                         "or a Dask scheduler")
    # A worker crash breaks the whole pool. The cells then in flight become suspects
    # and rerun one at a time in a fresh pool: a cell that kills its worker while
    # running alone is recorded as failed (WorkerDied); the others just finish.
    queue, suspects = list(reversed(todo)), []
    restarts = 0
    with _env(THREAD_ENV):
        while queue or suspects:
            ex = _POOLS.get(n_jobs)
            if ex is None:
                ctx = multiprocessing.get_context("spawn")
                ex = _POOLS[n_jobs] = ProcessPoolExecutor(
                    n_jobs, mp_context=ctx, initializer=_watch_parent, initargs=(os.getpid(),))
            pending: dict = {}
            alone = False  # a suspect is running by itself
            try:
                while queue or suspects or pending:
                    # submit, then dequeue: submit raises if the pool just broke
                    if suspects and not pending:
                        f = ex.submit(execute_cell, grid.fn, grid.cells[suspects[-1]])
                        pending[f], alone = suspects.pop(), True
                    elif not alone:
                        while queue and len(pending) < 2 * n_jobs:
                            f = ex.submit(execute_cell, grid.fn, grid.cells[queue[-1]])
                            pending[f] = queue.pop()
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        outcome = f.result()  # BrokenProcessPool if a worker died
                        sink(pending.pop(f), outcome)
                    alone = alone and bool(pending)
            except BrokenProcessPool as exc:
                restarts += 1
                _POOLS.pop(n_jobs, None)
                ex.shutdown(wait=True)
                if alone and len(pending) == 1:
                    (i,) = pending.values()
                    logger.error("grid %s: cell %d %s killed its worker (%s)",
                                 grid.name, i, grid.cells[i], exc)
                    msg = ("the pool worker process died (crash, out of memory or killed) "
                           "while running this cell alone")
                    err = {"type": "WorkerDied", "message": msg, "traceback": ""}
                    sink(i, ("error", err, 0.0, "pool"))
                else:
                    logger.warning("grid %s: a pool worker died (%s); rerunning the %d "
                                   "cells in flight one at a time", grid.name, exc,
                                   len(pending))
                    suspects.extend(reversed(list(pending.values())))
                if restarts >= _MAX_POOL_RESTARTS:
                    return f"the worker pool broke {restarts} times; stopped"
                continue
            except BaseException:  # Ctrl-C: drop the cells in flight, stop the workers now
                _POOLS.pop(n_jobs, None)
                for p in list((getattr(ex, "_processes", None) or {}).values()):
                    p.terminate()
                ex.shutdown(wait=False, cancel_futures=True)
                raise
    return None


def run_dask(grid: Any, todo: list[int], scheduler: Any, sink: Callable, n_jobs: int) -> None:
    """Run ``grid``'s cells ``todo`` as Dask tasks: an address, a Client or ``"local"``."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ImportError("scheduler= needs dask.distributed: "
                          "pip install 'nnmiplib[cluster]'") from exc
    import uuid

    own = isinstance(scheduler, str) and scheduler != "local"
    if scheduler == "local":
        client = _local_client(n_jobs)
    else:
        client = Client(scheduler) if own else scheduler
    if not hasattr(client, "submit"):
        raise ValueError(f"scheduler must be an address like 'tcp://host:8786' or a "
                         f"dask.distributed.Client, got {scheduler!r}")
    token = uuid.uuid4().hex[:8]
    futures = {}
    try:
        for i in todo:
            f = client.submit(execute_cell, grid.fn, grid.cells[i], pure=False, retries=0,
                              key=f"{grid.name}-{grid.keys[i]}-{token}")
            futures[f] = i
        for f in as_completed(list(futures)):
            i = futures.pop(f)
            if f.status == "cancelled":
                continue
            try:
                outcome = f.result()
            except Exception as exc:  # noqa: BLE001  e.g. KilledWorker: the cell crashed workers
                outcome = ("error", {"type": type(exc).__name__, "message": str(exc),
                                     "traceback": traceback.format_exc()}, 0.0, "dask")
            sink(i, outcome)
            f.release()
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        if own:
            client.close()


def shutdown_pools() -> None:
    """Stop the worker pools kept between runs.

    Workers keep the code and environment they were started with: call this after
    editing a cell function's module in a long session.
    """
    while _POOLS:
        _, ex = _POOLS.popitem()
        ex.shutdown(wait=True, cancel_futures=True)
    while _CLUSTERS:
        _, (cluster, client) = _CLUSTERS.popitem()
        client.close()
        cluster.close()


def _local_client(n_workers: int):
    """A Dask client on a LocalCluster of ``n_workers`` single-thread processes (cached)."""
    if n_workers not in _CLUSTERS:
        from distributed import Client, LocalCluster

        dlog = logging.getLogger("distributed")  # its INFO chatter would drown our summaries
        if dlog.getEffectiveLevel() < logging.WARNING:
            dlog.setLevel(logging.WARNING)
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.WARNING)
        _CLUSTERS[n_workers] = (cluster, Client(cluster))
    return _CLUSTERS[n_workers][1]


@contextlib.contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (inherited by processes spawned in it)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
