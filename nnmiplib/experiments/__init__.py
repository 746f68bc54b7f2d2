"""Experiment grids: cached, resumable cells run in-process, on a process pool or on Dask.

- :class:`Grid`, :class:`GridResult`, :func:`product`, :func:`run_options` — a chapter's
  computation as cells of one function (``grid``);
- the cell cache: keys, atomic JSON records (``cache``);
- where cells run: a kept pool of spawned processes or Dask tasks (``executors``).
"""

from .cache import canonical
from .executors import THREAD_ENV, shutdown_pools
from .grid import Grid, GridError, GridResult, product, run_options

__all__ = ["THREAD_ENV", "Grid", "GridError", "GridResult", "canonical", "product", "run_options", "shutdown_pools"]
