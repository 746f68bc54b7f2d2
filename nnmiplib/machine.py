"""What the machine gives this process: :func:`n_cores`, shared by the grid runner (worker
processes) and the verifier (threads of one search), :func:`search_workers`, the threads of one
branch and bound, and :func:`available_memory`, which sizes the branch and bound's queue."""

from __future__ import annotations

import os

__all__ = ["available_memory", "n_cores", "search_workers"]


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
