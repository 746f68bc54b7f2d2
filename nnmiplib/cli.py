"""The ``nnmiplib`` command line.

Subcommands live with the code they drive; this module only collects them:

- ``nnmiplib verify`` / ``nnmiplib supports`` — the VNN-LIB 2.0 verifier interface
  (:mod:`nnmiplib.vnnlib.command`);
- ``nnmiplib run CHAPTER --scale …`` — compute a chapter's grids into the cache
  (:mod:`nnmiplib.study.run`);
- ``nnmiplib bounds NET.onnx`` — activation bounds of an ONNX network;
- ``nnmiplib book`` — execute the chapters and build the HTML book
  (:mod:`nnmiplib.study.book`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

_SUBCOMMAND_MODULES = ("vnnlib.command", "study.run", "study.book")


def _bounds_parser(sub) -> None:
    p = sub.add_parser("bounds", help="activation bounds of an ONNX network on a box")
    p.add_argument("network", help="ONNX file of a fully connected ReLU network")
    p.add_argument("--method", default="crown", choices=["naive", "prop22", "interval", "crown", "alpha", "lp", "milp"])
    p.add_argument("--lo", type=float, default=0.0, help="lower end of the input box (every coordinate)")
    p.add_argument("--hi", type=float, default=1.0, help="upper end of the input box (every coordinate)")
    p.add_argument("--time-limit", type=float, default=None, help="total seconds for lp/milp")
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--solver", default="highs")
    p.add_argument("--out", help="save the bounds (.npz) here")
    p.set_defaults(func=_bounds_main)


def _bounds_main(args) -> int:
    from .bounds import compute_bounds
    from .domains import box
    from .network import Network

    net = Network.from_onnx(args.network)
    dom = box([args.lo] * net.n_inputs, [args.hi] * net.n_inputs)
    b = compute_bounds(net, dom, method=args.method, time_limit=args.time_limit, n_jobs=args.n_jobs,
                       solver=args.solver)
    for layer, (lo, hi) in enumerate(zip(b.lower, b.upper)):
        kind = "logits" if layer == net.depth else f"hidden {layer + 1}"
        stable = int(((lo >= 0) | (hi <= 0)).sum())
        print(f"layer {layer} ({kind}): {lo.size} neurons, mean width {float((hi - lo).mean()):.6g}, "
              f"stable {stable}")
    if args.out:
        print(f"saved {b.save(args.out)}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnmiplib",
        description="Mixed-integer programming over trained ReLU networks: bounds, verification, comparison.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.add_argument("--name", action="store_true", help="print the tool's name and exit (VNN-LIB 2.0 §5.2)")
    parser.add_argument("--version", action="store_true", help="print the tool's version and exit (VNN-LIB 2.0 §5.2)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(f"nnmiplib.{name}")
        except ImportError as exc:  # a module missing from a partial install
            logging.getLogger(__name__).debug("subcommand module %s unavailable: %s", name, exc)
            continue
        mod.add_parser(sub)
    _bounds_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Invoked as the console script (argv from the command line) this process is the tool:
    # time limits count from process start and a watchdog may end the process. Called with an
    # explicit argv (tests, scripts) it must never end its caller's process.
    args.standalone = argv is None
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.name or args.version:
        from . import __version__

        print("nnmiplib" if args.name else __version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; finished work is kept in the cache", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
