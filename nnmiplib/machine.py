"""What the machine gives this process: :func:`n_cores`, shared by the grid runner (worker
processes) and the verifier (threads of one search)."""

from __future__ import annotations

import os

__all__ = ["n_cores"]


def n_cores() -> int:
    """Cores this process may use (its CPU affinity where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
