"""What the machine gives this process: :func:`n_cores`, shared by the grid runner (worker
processes) and the verifier (threads of one search), :func:`search_workers`, the threads of one
branch and bound, :func:`available_memory`, which sizes the branch and bound's queue, and
:func:`quiet_blas`, which keeps numpy's BLAS threads off the cores a search's workers use."""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["available_memory", "n_cores", "quiet_blas", "search_workers"]


def n_cores() -> int:
    """Cores this process may use (its CPU affinity where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def search_workers() -> int:
    """Threads one branch and bound may run at once (:func:`nnmiplib.bab.solve`'s ``workers``):
    ``OMP_NUM_THREADS`` where it is set to a positive number (the convention by which a process
    is told its share of the machine: the grid runner's workers and the test runs set it to 1),
    else every core of :func:`n_cores`; never more than the latter."""
    cores = n_cores()
    try:
        told = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return cores
    return max(1, min(told, cores)) if told > 0 else cores


def available_memory() -> int | None:
    """Bytes of memory available to new allocations without swapping, or None if unknown.

    Linux's ``MemAvailable`` (free memory plus the page cache it can reclaim) where
    ``/proc/meminfo`` exists, else the free physical pages ``os.sysconf`` reports.
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict = {"users": 0, "limiter": None}


@contextlib.contextmanager
def quiet_blas():
    """Run the block with numpy's OpenBLAS on one thread (``threadpoolctl``), then restore it.

    After each call OpenBLAS keeps its idle threads spinning for a while (its thread timeout), and a
    branch and bound calls numpy's BLAS between every two batches (the float64 checks of its
    points): those spinning threads took the cores that the search's workers bound nodes on.
    Two workers on two cores then bounded no more nodes than one (PV's 200x5 net, digit 1, one
    margin row, 10 s: about 70 k nodes with one worker, 72 k with two; 97 k with two and
    numpy's BLAS on one thread). numpy's products in a search are small, so one thread costs them little.

    Nested and concurrent uses (the verifier's disjuncts searched side by side) share one limit,
    lifted when the last of them ends. A numpy built on another BLAS is left as it is.
    """
    from threadpoolctl import ThreadpoolController

    with _BLAS_LOCK:
        if _BLAS_STATE["users"] == 0:
            _BLAS_STATE["limiter"] = ThreadpoolController().select(internal_api="openblas").limit(limits=1)
        _BLAS_STATE["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["users"] -= 1
            if _BLAS_STATE["users"] == 0:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None
