"""Experiment grids: cached, resumable, run in-process, on a local pool or on Dask.

A chapter's computation is a :class:`Grid`: a module-level function ``fn(**params) ->
dict`` and a list of parameter dicts (its *cells*). Each finished cell is one JSON file
``results_dir()/grids/<name>/<key>.json``, where ``key`` hashes ``fn``'s qualified name,
the canonical JSON of the parameters (numpy scalars and arrays included; a
:class:`~nnmiplib.Network` enters by its ``digest()``), ``key_extra`` and the library
version. Files are written atomically (temporary file + ``os.replace``), so Ctrl-C or a
killed process loses at most the cells in flight and a rerun skips every finished cell.
A cell that raises is stored as ``<key>.error.json`` (type, message, traceback); it is
counted in every summary, and recomputed only with ``retry_failed=True``.

Where cells run
---------------
``n_jobs=1`` (default)
    In this process, one cell after another: simplest for debugging (breakpoints work).
``n_jobs=N``
    A pool of N ``spawn``-ed worker processes (``concurrent.futures``), kept for the
    next run in this process (:func:`shutdown_pools` stops it); workers exit when the
    driver dies. ``fn`` must be importable by the workers (defined in a module, or in
    the ``__main__`` script). A cell that kills its worker (segfault, out of memory) is
    found by rerunning the cells then in flight one at a time, and recorded as failed
    (``WorkerDied``); the others finish normally.
``scheduler="tcp://host:8786"``, a ``dask.distributed.Client``, or ``"local"``
    The same cells as Dask tasks (``"local"``: a ``LocalCluster`` of ``n_jobs``
    single-thread processes). Results travel back to this driver process, which writes
    the cache: workers need no shared disk for results (they need nnmiplib installed,
    and whatever the cells read that is not in their parameters; pass networks as
    :class:`~nnmiplib.Network` parameters to need no shared disk at all). Functions
    defined in a notebook work here too (cloudpickle ships them by value).

Threads: every cell's solver should use one thread (``threads=1``). Pool workers start
with ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` … set to 1 (see
:data:`THREAD_ENV`; the variables are set around the spawn, so BLAS reads them when it
loads), so N workers use N cores. Dask's nanny sets the same three variables to 1 by
default (config ``distributed.nanny.pre-spawn-environ``); start workers with
``dask worker ADDRESS --nthreads 1 --nworkers <cores>``.

Two drivers running the same grid at once only duplicate work: both write the same
complete file. Example::

    grid = Grid("ch2-bounds", bounds_cell, product(arch=["50x2", "100x2"], seed=[0, 1]))
    res = grid.run(n_jobs=2)        # or scheduler="tcp://host:8786"; res.ok, res.failed
    res.frame()                     # pandas: params + results, one row per finished cell
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import re
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .paths import results_dir

logger = logging.getLogger(__name__)

__all__ = [
    "THREAD_ENV",
    "Grid",
    "GridError",
    "GridResult",
    "canonical",
    "product",
    "run_options",
    "shutdown_pools",
]

THREAD_ENV = {k: "1" for k in (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
)}
_OPTIONS: dict[str, Any] = {"n_jobs": 1, "scheduler": None, "retry_failed": False, "progress": True}
_COLLECTORS: list[list] = []
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MAX_POOL_RESTARTS = 10
_POOLS: dict[int, ProcessPoolExecutor] = {}  # reused by later runs: spawning costs seconds
_CLUSTERS: dict[int, tuple] = {}  # scheduler="local": (LocalCluster, Client) by n_workers


def canonical(obj: Any) -> Any:
    """A JSON-able, deterministic form of a cell parameter, used for the cache key.

    numpy scalars become Python numbers; arrays become ``{"ndarray": dtype, "shape",
    "sha256"}``; an object with ``digest()`` (a Network) becomes its digest; an object
    with ``to_dict()`` (a Box) its dict; tuples become lists.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        return {"ndarray": str(a.dtype), "shape": list(a.shape),
                "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise ValueError(f"parameter dict keys must be strings, got {bad[0]!r}")
        return {k: canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if callable(getattr(obj, "digest", None)):
        return {type(obj).__name__: obj.digest()}
    if callable(getattr(obj, "to_dict", None)):
        return {type(obj).__name__: canonical(obj.to_dict())}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {type(obj).__name__: canonical(dataclasses.asdict(obj))}
    raise TypeError(f"cannot hash a {type(obj).__name__} cell parameter; pass a cache key, "
                    "a digest string or plain numbers instead")


def _to_json(obj: Any) -> Any:
    """Cell results to plain JSON types (numpy arrays become lists)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    return obj


def product(**axes: Iterable) -> list[dict]:
    """The cells of a full factorial grid: ``product(a=[1, 2], b="xy")`` → 4 dicts."""
    names = list(axes)
    return [dict(zip(names, vals)) for vals in itertools.product(*(list(axes[n]) for n in names))]


@contextlib.contextmanager
def run_options(**defaults: Any) -> Iterator[list]:
    """Defaults for every :meth:`Grid.run` in the block; yields the GridResults they return.

    Used by ``nnmiplib run`` to pass ``retry_failed``/``progress`` through a chapter's
    ``compute`` hook and to collect the summaries. Keys: n_jobs, scheduler, retry_failed,
    progress. An argument given to :meth:`Grid.run` explicitly wins.
    """
    unknown = set(defaults) - set(_OPTIONS)
    if unknown:
        raise ValueError(f"unknown run option(s) {sorted(unknown)}; choose from {sorted(_OPTIONS)}")
    saved = dict(_OPTIONS)
    _OPTIONS.update(defaults)
    collected: list = []
    _COLLECTORS.append(collected)
    try:
        yield collected
    finally:
        _OPTIONS.clear()
        _OPTIONS.update(saved)
        _COLLECTORS.remove(collected)


def _execute(fn: Callable[..., Mapping], params: dict) -> tuple:
    """Run one cell (in a worker); never raises for an ordinary exception."""
    where = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    try:
        out = fn(**params)
        if not isinstance(out, Mapping):
            raise TypeError(f"cell function must return a dict, got {type(out).__name__}")
        out = _to_json(out)
        json.dumps(out)  # fail here, with a traceback, if the result is not JSON-able
        return ("ok", out, time.perf_counter() - t0, where)
    except Exception as exc:  # noqa: BLE001  (recorded, never dropped)
        err = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
        return ("error", err, time.perf_counter() - t0, where)


def _n_cores() -> int:
    """Cores this process may use (its CPU affinity where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _watch_parent(parent: int) -> None:
    """Pool worker initializer: exit when the driver dies (e.g. SIGKILL), leaving no orphan."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="nnmiplib-parent-watch", daemon=True).start()


def _atomic_write_json(path: Path, obj: dict) -> None:
    """Write JSON so that ``path`` is either absent or complete, even if killed midway."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with contextlib.suppress(OSError, AttributeError):
            os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are readable like any file
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json(path: Path, key: str) -> dict | None:
    try:
        with open(path) as f:
            rec = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable cache file %s (%s); recomputing the cell", path, exc)
        return None
    return rec if isinstance(rec, dict) and rec.get("key") == key else None


class GridError(RuntimeError):
    """Raised by ``Grid.run(raise_on_failure=True)``; ``.result`` holds the GridResult."""

    def __init__(self, result: GridResult):
        super().__init__(result.summary())
        self.result = result


@dataclasses.dataclass
class GridResult:
    """What a grid run (or a cache read) found: finished records, failures, what is missing.

    ``records`` and ``errors`` map a cell's index to its stored JSON record;
    ``n_cached`` cells were found in the cache, ``n_computed`` ran this time (finished or
    failed); ``interrupted`` says why a run stopped early (Ctrl-C, a broken pool).
    """

    grid: Grid
    records: dict[int, dict]
    errors: dict[int, dict]
    n_cached: int = 0
    n_computed: int = 0
    elapsed: float = 0.0
    interrupted: str | None = None

    @property
    def n_cells(self) -> int:
        return len(self.grid.cells)

    @property
    def n_done(self) -> int:
        return len(self.records)

    @property
    def n_failed(self) -> int:
        return len(self.errors)

    @property
    def failed(self) -> list[dict]:
        """One dict per failed cell: index, params, type, message, traceback."""
        return [{"index": i, "params": self.grid.cells[i], **self.errors[i]["error"]}
                for i in sorted(self.errors)]

    @property
    def missing(self) -> list[int]:
        """Indices of cells neither finished nor failed (not run yet, or interrupted)."""
        return [i for i in range(self.n_cells) if i not in self.records and i not in self.errors]

    @property
    def ok(self) -> bool:
        return self.n_done == self.n_cells

    def results(self) -> list[dict | None]:
        """Every cell's result dict in cell order (``None`` where not finished)."""
        recs = self.records
        return [recs[i]["result"] if i in recs else None for i in range(self.n_cells)]

    def frame(self, include_failed: bool = False):
        """A pandas DataFrame: one row per finished cell, its params then its results.

        Extra columns: ``_key``, ``_seconds`` (the cell's wall time) and, with
        ``include_failed=True``, ``_error`` on rows of failed cells.
        """
        import pandas as pd

        rows = []
        for i, params in enumerate(self.grid.cells):
            if i in self.records:
                rec = self.records[i]
                res = {(f"result.{k}" if k in params else k): v for k, v in rec["result"].items()}
                rows.append({**params, **res, "_key": rec["key"], "_seconds": rec.get("seconds")})
            elif include_failed and i in self.errors:
                err = self.errors[i]["error"]
                rows.append({**params, "_key": self.errors[i]["key"],
                             "_error": f"{err['type']}: {err['message']}"})
        if not rows:  # keep the parameter columns, so filters and merges still work
            cols = list(dict.fromkeys(k for c in self.grid.cells for k in c))
            return pd.DataFrame(columns=[*cols, "_key", "_seconds"])
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """One line: counts done / cached / computed / failed / missing, and what to do."""
        s = (f"grid {self.grid.name}: {self.n_done}/{self.n_cells} cells done "
             f"({self.n_cached} cached, {self.n_computed} computed in {self.elapsed:.1f} s)")
        if self.errors:
            types: dict[str, int] = {}
            for e in self.errors.values():
                types[e["error"]["type"]] = types.get(e["error"]["type"], 0) + 1
            first = self.failed[0]
            s += (f", {self.n_failed} FAILED ({', '.join(f'{t} x{c}' for t, c in types.items())}; "
                  f"first: {first['type']}: {first['message'][:200]}; "
                  f"see {self.grid.directory}/*.error.json; "
                  "rerun with retry_failed=True / --retry-failed)")
        if self.missing:
            s += f", {len(self.missing)} not run"
        if self.interrupted:
            s += f" [{self.interrupted}; rerun to resume]"
        return s

    def raise_for_failures(self) -> GridResult:
        """Raise :class:`GridError` unless every cell finished; returns self otherwise."""
        if not self.ok:
            raise GridError(self)
        return self

    def __repr__(self) -> str:
        return f"<GridResult {self.summary()}>"


class Grid:
    """A chapter's computation as a grid of independent, cached cells.

    Parameters
    ----------
    name : str
        The cache folder ``results_dir()/grids/<name>`` (letters, digits, ``_.-``).
    fn : callable
        A module-level function ``fn(**params) -> dict`` of JSON-able values (numpy
        scalars and arrays are converted). Lambdas and nested functions are refused.
    cells : iterable of dict
        One parameter dict per cell; two cells with the same key are refused.
    version : str, optional
        Part of every key; default the library version ``nnmiplib.__version__``. Change
        it to invalidate this grid's results only.
    key_extra : JSON-able or callable, optional
        More key material, e.g. the digests of the networks the cells load by name;
        a callable gets each cell's params and returns the material for that cell.
    root : path, optional
        Parent folder of the grid's folder instead of ``results_dir()/grids``.
    """

    def __init__(self, name: str, fn: Callable[..., Mapping], cells: Iterable[Mapping], *,
                 version: str | None = None, key_extra: Any = None, root: str | Path | None = None):
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"grid name {name!r} must be letters, digits, '_', '.', '-' "
                             "(it names a folder)")
        qual = getattr(fn, "__qualname__", None)
        if not callable(fn) or qual is None or "<" in qual or not getattr(fn, "__module__", None):
            raise ValueError(f"fn {fn!r} must be a module-level function (not a lambda, partial or "
                             "nested function) so workers can import it; put fixed arguments in "
                             "the cells")
        self.name, self.fn = name, fn
        self.fn_name = f"{fn.__module__}.{qual}"
        self.version = __version__ if version is None else str(version)
        self.key_extra = key_extra
        self._root = Path(root) if root is not None else None
        self.cells: list[dict] = []
        for i, c in enumerate(cells):
            if not isinstance(c, Mapping) or not all(isinstance(k, str) for k in c):
                raise ValueError(f"cell {i} must be a dict with string keys, got {c!r}")
            self.cells.append(dict(c))
        self.keys = [self.key(c) for c in self.cells]
        seen: dict[str, int] = {}
        for i, k in enumerate(self.keys):
            if k in seen:
                raise ValueError(f"cells {seen[k]} and {i} of grid {name!r} have the same "
                                 f"parameters {self.cells[i]!r}; drop the duplicate")
            seen[k] = i

    def __len__(self) -> int:
        return len(self.cells)

    def __repr__(self) -> str:
        return f"Grid({self.name!r}, {self.fn_name}, {len(self)} cells)"

    @property
    def directory(self) -> Path:
        return (self._root if self._root is not None else results_dir() / "grids") / self.name

    def key(self, params: Mapping) -> str:
        """The cache key of one cell: SHA-256 (first 24 hex) of fn, params, extra, version."""
        extra = self.key_extra(params) if callable(self.key_extra) else self.key_extra
        blob = json.dumps({"fn": self.fn_name, "params": canonical(dict(params)),
                           "extra": canonical(extra), "version": self.version},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _paths(self, i: int, d: Path | None = None) -> tuple[Path, Path]:
        d, k = d or self.directory, self.keys[i]
        return d / f"{k}.json", d / f"{k}.error.json"

    def load(self, retry_failed: bool = False) -> GridResult:
        """Read what the cache holds for this grid, computing nothing."""
        records, errors = {}, {}
        d = self.directory
        for i in range(len(self.cells)):
            ok_path, err_path = self._paths(i, d)
            rec = _read_json(ok_path, self.keys[i])
            if rec is not None:
                records[i] = rec
            elif not retry_failed and (err := _read_json(err_path, self.keys[i])) is not None:
                errors[i] = err
        return GridResult(self, records, errors, n_cached=len(records))

    def status(self) -> dict[str, int]:
        """Counts of cells done / failed / todo in the cache."""
        r = self.load()
        return {"done": r.n_done, "failed": r.n_failed, "todo": len(r.missing)}

    def _clean_tmp(self) -> None:
        """Remove temporary files left by killed writers (older than a minute)."""
        for p in self.directory.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if time.time() - p.stat().st_mtime > 60:
                    p.unlink()

    def _store(self, i: int, outcome: tuple, res: GridResult) -> None:
        status, payload, seconds, where = outcome
        ok_path, err_path = self._paths(i)
        extra = self.key_extra(self.cells[i]) if callable(self.key_extra) else self.key_extra
        rec = {"grid": self.name, "key": self.keys[i], "fn": self.fn_name, "version": self.version,
               "params": canonical(self.cells[i]), "key_extra": canonical(extra),
               "seconds": seconds, "worker": where,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if status == "ok":
            _atomic_write_json(ok_path, {**rec, "result": payload})
            with contextlib.suppress(FileNotFoundError):
                err_path.unlink()
            res.records[i] = {**rec, "result": payload}
            res.errors.pop(i, None)
        else:
            _atomic_write_json(err_path, {**rec, "error": payload})
            res.errors[i] = {**rec, "error": payload}
            logger.warning("grid %s: cell %d %s failed: %s: %s", self.name, i, self.cells[i],
                           payload["type"], payload["message"])
        res.n_computed += 1

    def run(self, n_jobs: int | None = None, scheduler: Any = None, *,
            retry_failed: bool | None = None, progress: bool | None = None,
            raise_on_failure: bool = False) -> GridResult:
        """Compute every cell not in the cache; return a :class:`GridResult`.

        Parameters
        ----------
        n_jobs : int, optional
            1 runs in this process; N > 1 a pool of N spawned workers; N <= 0 one per
            core. Default 1 (or the :func:`run_options` default).
        scheduler : str or dask.distributed.Client, optional
            Run on Dask instead: an address ``"tcp://host:8786"``, a client, or
            ``"local"`` for a ``LocalCluster`` of ``n_jobs`` single-thread worker
            processes (started once, kept for later runs until :func:`shutdown_pools`).
        retry_failed : bool
            Recompute cells recorded as failed (default False: they stay failed).
        progress : bool
            A tqdm bar (counts, rate, ETA) on stderr.
        raise_on_failure : bool
            Raise :class:`GridError` if any cell failed or did not run.

        Ctrl-C stops the run (in-flight cells are lost, finished ones are kept) and
        re-raises KeyboardInterrupt.
        """
        from tqdm import tqdm

        opt = lambda v, k: _OPTIONS[k] if v is None else v
        n_jobs, scheduler = opt(n_jobs, "n_jobs"), opt(scheduler, "scheduler")
        retry_failed, progress = opt(retry_failed, "retry_failed"), opt(progress, "progress")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._clean_tmp()
        res = self.load(retry_failed=retry_failed)
        todo = res.missing
        if n_jobs is None or n_jobs <= 0:
            n_jobs = _n_cores()
        t0 = time.perf_counter()
        bar = tqdm(total=len(self.cells), initial=res.n_done + res.n_failed, desc=self.name,
                   unit="cell", disable=not progress, dynamic_ncols=True)

        def sink(i: int, outcome: tuple) -> None:
            self._store(i, outcome, res)
            bar.update(1)
            if res.errors:
                bar.set_postfix(failed=res.n_failed, refresh=False)

        try:
            if not todo:
                pass
            elif scheduler is not None:
                self._run_dask(todo, scheduler, sink, n_jobs)
            elif n_jobs == 1 or len(todo) == 1:
                for i in todo:
                    sink(i, _execute(self.fn, self.cells[i]))
            else:
                self._run_pool(todo, n_jobs, sink, res)
        except KeyboardInterrupt:
            res.interrupted = "interrupted"
            raise
        finally:
            bar.close()
            res.elapsed = time.perf_counter() - t0
            for c in _COLLECTORS:
                c.append(res)
            (logger.info if res.ok else logger.warning)("%s", res.summary())
        if raise_on_failure:
            res.raise_for_failures()
        return res

    def _run_pool(self, todo: list[int], n_jobs: int, sink: Callable, res: GridResult) -> None:
        import multiprocessing
        import sys
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        main = sys.modules.get("__main__")
        if self.fn.__module__ == "__main__" and not getattr(main, "__file__", None):
            raise ValueError(f"{self.fn_name} is defined in an interactive session, which pool "
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
                            f = ex.submit(_execute, self.fn, self.cells[suspects[-1]])
                            pending[f], alone = suspects.pop(), True
                        elif not alone:
                            while queue and len(pending) < 2 * n_jobs:
                                f = ex.submit(_execute, self.fn, self.cells[queue[-1]])
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
                                     self.name, i, self.cells[i], exc)
                        msg = ("the pool worker process died (crash, out of memory or killed) "
                               "while running this cell alone")
                        err = {"type": "WorkerDied", "message": msg, "traceback": ""}
                        sink(i, ("error", err, 0.0, "pool"))
                    else:
                        logger.warning("grid %s: a pool worker died (%s); rerunning the %d "
                                       "cells in flight one at a time", self.name, exc,
                                       len(pending))
                        suspects.extend(reversed(list(pending.values())))
                    if restarts >= _MAX_POOL_RESTARTS:
                        res.interrupted = f"the worker pool broke {restarts} times; stopped"
                        return
                    continue
                except BaseException:  # Ctrl-C: drop the cells in flight, stop the workers now
                    _POOLS.pop(n_jobs, None)
                    for p in list((getattr(ex, "_processes", None) or {}).values()):
                        p.terminate()
                    ex.shutdown(wait=False, cancel_futures=True)
                    raise

    def _run_dask(self, todo: list[int], scheduler: Any, sink: Callable, n_jobs: int) -> None:
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
                f = client.submit(_execute, self.fn, self.cells[i], pure=False, retries=0,
                                  key=f"{self.name}-{self.keys[i]}-{token}")
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
