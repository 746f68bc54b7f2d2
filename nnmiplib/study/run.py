"""``nnmiplib run CHAPTER``: compute a chapter's grids into the cache, without a notebook.

Each chapter module ``nnmiplib.study.chN`` exposes the hook
``compute(scale, n_jobs=1, scheduler=None, time_limit=None, progress=True)``, which runs
every :class:`~nnmiplib.experiments.Grid` of the chapter; the notebook then renders from
the cache. Examples::

    nnmiplib run 2 --scale quick --n-jobs 2
    nnmiplib run all --scale paper --scheduler tcp://head:8786
    nnmiplib run 3 --scale smoke --scheduler local --n-jobs 2
    nnmiplib run 02_bounds --scale smoke --retry-failed

A summary of every grid goes to stderr; the exit code is 0 when every cell of every grid
finished, 1 otherwise (failed cells, a chapter that raised, Ctrl-C, a missing hook).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
import traceback
from typing import Any

from .common import SCALES

__all__ = ["CHAPTERS", "add_parser", "load_hook", "resolve_chapters", "run_command"]

CHAPTERS = (1, 2, 3, 4, 5)
_EPILOG = """\
examples:
  nnmiplib run 2 --scale quick --n-jobs 2
  nnmiplib run all --scale paper --scheduler tcp://head:8786
  nnmiplib run 3 --scale smoke --scheduler local --n-jobs 2
  nnmiplib run 02_bounds --scale smoke --retry-failed

Finished cells are cached under data/results/grids/ ($NNMIPLIB_DATA_DIR): an interrupted
run resumes where it stopped. Failed cells stay failed until --retry-failed. Each cell's
solver uses one thread, so --n-jobs N keeps N cores busy. Exit code 0 when every cell of
every grid finished, 1 otherwise."""
_HOOK = "compute(scale, n_jobs=1, scheduler=None, time_limit=None, progress=True)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``run`` subcommand on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "run", help="compute a chapter's experiment grids into the cache",
        description="Compute a chapter's experiment grids into the cache, without a notebook;\n"
                    "the chapter's notebook then renders from the cache.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG)
    p.add_argument("chapter", help="1..5, ch2, 02_bounds, or all")
    p.add_argument("--scale", choices=SCALES, default="quick",
                   help="smoke (seconds), quick (default), paper (the thesis's full matrix)")
    p.add_argument("--n-jobs", type=int, default=1, metavar="N",
                   help="local worker processes (1 = in this process; 0 = one per core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a Dask scheduler, e.g. tcp://host:8786, or 'local' for a "
                        "LocalCluster of --n-jobs single-thread workers")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="per-solve time limit passed to the chapter (default: the scale's)")
    p.add_argument("--retry-failed", action="store_true",
                   help="recompute cells recorded as failed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_command)
    return p


def resolve_chapters(spec: str) -> list[int]:
    """``"1"``, ``"ch1"``, ``"01_training_and_rounding"`` → ``[1]``; ``"all"`` → 1..5."""
    s = str(spec).strip().lower()
    if s == "all":
        return list(CHAPTERS)
    m = re.fullmatch(r"(?:ch)?0*(\d+)(?:_[a-z0-9_]+)?(?:\.ipynb)?", s)
    if not m or int(m.group(1)) not in CHAPTERS:
        raise ValueError(f"unknown chapter {spec!r}; use one of {', '.join(map(str, CHAPTERS))}, "
                         "chN, the notebook name (e.g. 02_bounds) or all")
    return [int(m.group(1))]


def load_hook(n: int):
    """The ``compute`` hook of chapter ``n``; ValueError naming the module if there is none."""
    mod_name = f"nnmiplib.study.ch{n}"
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name == mod_name:
            raise ValueError(f"chapter {n}: module {mod_name} does not exist") from None
        raise
    hook = getattr(mod, "compute", None)
    if callable(hook):
        return hook
    raise ValueError(f"chapter {n}: module {mod_name} has no hook {_HOOK}; "
                     "add one that runs the chapter's grids")


def _results_of(value: Any) -> list:
    """GridResults returned by a hook (one, a list/tuple, a dict of them, or None)."""
    from ..experiments import GridResult

    if isinstance(value, GridResult):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, GridResult)]
    return []


def run_command(args: argparse.Namespace) -> int:
    """Run the chapters named by ``args``; print summaries to stderr; 0 if all cells done."""
    from .. import experiments

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        chapters = resolve_chapters(args.chapter)
        hooks = {n: load_hook(n) for n in chapters}
    except ValueError as exc:
        say(f"nnmiplib run: {exc}")
        return 1
    if args.time_limit is not None and args.time_limit <= 0:
        say("nnmiplib run: --time-limit must be positive")
        return 1
    scheduler, client = args.scheduler, None
    if scheduler is not None and scheduler != "local":  # one client for every grid
        try:
            from distributed import Client
        except ImportError:
            say("nnmiplib run: --scheduler needs dask.distributed: pip install 'nnmiplib[cluster]'")
            return 1
        try:
            client = scheduler = Client(args.scheduler, timeout="30s")
        except OSError as exc:
            say(f"nnmiplib run: cannot reach the Dask scheduler {args.scheduler}: {exc}")
            return 1
    ok, progress = True, not args.no_progress
    try:
        for n, hook in hooks.items():
            t0 = time.perf_counter()
            say(f"== chapter {n} at scale {args.scale} ==")
            with experiments.run_options(retry_failed=args.retry_failed, progress=progress) as got:
                try:
                    returned = hook(args.scale, n_jobs=args.n_jobs, scheduler=scheduler,
                                    time_limit=args.time_limit, progress=progress)
                except KeyboardInterrupt:
                    for r in got:
                        say("  " + r.summary())
                    say("interrupted: finished cells are cached; rerun the same command to resume")
                    return 1
                except Exception:  # noqa: BLE001  (reported, the next chapter still runs)
                    say(f"chapter {n} failed:\n{traceback.format_exc()}")
                    ok, returned = False, None
            results = list(got) + [r for r in _results_of(returned) if all(r is not g for g in got)]
            for r in results:
                say("  " + r.summary())
                ok &= r.ok
            say(f"chapter {n}: {len(results)} grid(s), {time.perf_counter() - t0:.1f} s")
    finally:
        if client is not None:
            client.close()
        if scheduler == "local":
            experiments.shutdown_pools()
    return 0 if ok else 1
