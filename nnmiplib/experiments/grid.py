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

The cache files are handled by :mod:`nnmiplib.experiments.cache`, the pool and Dask
back-ends by :mod:`nnmiplib.experiments.executors`; this module holds the grid itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..paths import results_dir
from .cache import canonical, cell_key, clean_tmp, load_records, write_record
from .executors import execute_cell, n_cores, run_dask, run_pool

logger = logging.getLogger(__name__)

__all__ = ["Grid", "GridError", "GridResult", "product", "run_options"]

_OPTIONS: dict[str, Any] = {"n_jobs": 1, "scheduler": None, "retry_failed": False, "progress": True}
_COLLECTORS: list[list] = []
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
        return cell_key(self.fn_name, params, extra, self.version)

    def load(self, retry_failed: bool = False) -> GridResult:
        """Read what the cache holds for this grid, computing nothing."""
        records, errors = load_records(self.directory, self.keys, retry_failed)
        return GridResult(self, records, errors, n_cached=len(records))

    def status(self) -> dict[str, int]:
        """Counts of cells done / failed / todo in the cache."""
        r = self.load()
        return {"done": r.n_done, "failed": r.n_failed, "todo": len(r.missing)}

    def _store(self, i: int, outcome: tuple, res: GridResult) -> None:
        extra = self.key_extra(self.cells[i]) if callable(self.key_extra) else self.key_extra
        rec = write_record(self.directory, self.keys[i], outcome, grid=self.name,
                           fn=self.fn_name, version=self.version,
                           params=canonical(self.cells[i]), key_extra=canonical(extra))
        if outcome[0] == "ok":
            res.records[i] = rec
            res.errors.pop(i, None)
        else:
            res.errors[i] = rec
            payload = rec["error"]
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
        clean_tmp(self.directory)  # temporary files left by killed writers
        res = self.load(retry_failed=retry_failed)
        todo = res.missing
        if n_jobs is None or n_jobs <= 0:
            n_jobs = n_cores()
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
                run_dask(self, todo, scheduler, sink, n_jobs)
            elif n_jobs == 1 or len(todo) == 1:
                for i in todo:
                    sink(i, execute_cell(self.fn, self.cells[i]))
            else:
                res.interrupted = run_pool(self, todo, n_jobs, sink)
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
