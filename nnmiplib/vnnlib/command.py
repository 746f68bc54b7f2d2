"""``nnmiplib verify`` and ``nnmiplib supports``: the VNN-LIB 2.0 solver interface (standard ch. 5).

``verify QUERY --network NAME=FILE.onnx [--network …] [--timeout S] [--serialise-assignments DIR]``
prints exactly one result word on the first stdout line (``sat``, ``unsat``, ``unknown``,
``timed-out``); after ``sat`` the assignment follows in the command-line format of
§5.3.1 (``NAME TYPE [dims]`` then one value a line, row-major, variables in declaration
order), or is written as ONNX ``TensorProto`` files ``DIR/NAME.pb`` (each written
atomically; if the folder cannot be written, the assignment is printed on stdout
instead and stderr says why in one line). Everything else goes to stderr: while the
verifier runs, file descriptor 1 is redirected to stderr so that solver banners cannot
reach stdout, and results are written to the saved descriptor. The search uses the whole
``--timeout`` less :data:`RESERVE` seconds (at most 10 % of it) kept for printing; a watchdog
thread prints ``timed-out`` and ends the process half that reserve before the end if a
solve overruns its own limit.

Semantics of the comparisons. ``<=`` and ``>=`` are non-strict, ``<`` and ``>`` strict,
as in the VNN-LIB standard: ``sat`` means a point of the input region at which every
asserted comparison of one disjunct holds — a point meeting a ``<=``/``>=`` with
equality (at a corner of the box, or where a ReLU output is exactly 0) is a witness.
``sat`` is printed only with such a witness, checked at the printed point: the inputs
are values of the ONNX input type, the outputs are recomputed in float64 and by
onnxruntime, and the query must hold on both (non-strict comparisons also in exact
rational arithmetic on those values; strict ones with a relative slack of
:data:`~nnmiplib.vnnlib.witness.WITNESS_TOL`; equalities and input bounds exactly).
``unsat`` means every disjunct is refuted by a bound, a dual bound or infeasibility,
beyond the solvers' tolerances and, for float32/float64 element types, the
floating-point error of the network (:func:`~nnmiplib.vnnlib.witness.fp_error_bound`).

Exit status: 0 with a result word — also ``unknown`` (with a one-line reason on stderr)
for a network built from supported operators (``supports --onnx-operators``) that
leaves the affine-ReLU fragment, e.g. ``X * X`` or a division by a data-dependent
tensor; 1 for an unreadable query or network, or an operator ``supports`` does not
list (message on stderr); 2 for bad options (argparse usage errors, malformed
``--network``, an unknown or uninstalled ``--solver``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

import numpy as np

__all__ = ["CAPABILITIES", "add_parser", "format_assignment", "supports_main", "verify_main"]

log = logging.getLogger(__name__)


def _capabilities() -> dict[str, list[str]]:
    from ..onnx_io import ONNX_OPSET_RANGE, SUPPORTED_OPS

    return {
        "--onnx-opset-versions": [str(ONNX_OPSET_RANGE[0]), str(ONNX_OPSET_RANGE[1])],
        "--onnx-element-types": ["float32", "float64", "real"],
        "--onnx-operators": list(SUPPORTED_OPS),
        "--onnx-operators-unsat-proofs": [],
        "--vnnlib-versions": ["1.0", "2.0"],
        "--hidden-node-theories": ["NH"],
        "--multiple-input-output-theories": ["SIO"],
        "--multiple-network-theories": ["SNET", "MENET", "MINET", "MNET"],
        "--multiple-node-comparison-theories": ["SNC", "MNC"],
        "--arithmetic-complexity-theories": ["BND", "OUTC", "LIN"],
        "--optimised-disjunctive-reasoning": ["false"],
        "--serialise-assignments": ["true"],
        "--unsat-proofs": ["false"],
    }


CAPABILITIES = (
    "--onnx-opset-versions", "--onnx-element-types", "--onnx-operators", "--onnx-operators-unsat-proofs",
    "--vnnlib-versions", "--hidden-node-theories", "--multiple-input-output-theories",
    "--multiple-network-theories", "--multiple-node-comparison-theories", "--arithmetic-complexity-theories",
    "--optimised-disjunctive-reasoning", "--serialise-assignments", "--unsat-proofs",
)


def _network_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE.onnx, got {text!r}")
    return name, path


def _solver_arg(text: str) -> str:
    """``--solver``: the name of an installed MILP backend, checked before any work."""
    from ..mip.solvers import available, get_backend

    try:
        get_backend(text)
    except (ValueError, RuntimeError) as exc:  # unknown name / not installed (SolverError)
        raise argparse.ArgumentTypeError(f"{exc} (installed: {', '.join(available())})") from None
    return text.lower()


#: seconds of ``--timeout`` kept for writing the answer (at most 10 % of a short timeout); the
#: watchdog answers ``timed-out`` at half of it before the end if a solve overruns
RESERVE = 2.0


def _timeout_arg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout must be a number of seconds, got {text!r}") from None
    if not v > 0 or not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"timeout must be positive, got {text!r}")
    return v


def add_parser(subparsers) -> None:
    """Register ``verify`` and ``supports`` on the ``nnmiplib`` command line."""
    p = subparsers.add_parser("verify", help="decide a VNN-LIB query (VNN-LIB 2.0 standard, chapter 5)")
    p.add_argument("query", help="VNN-LIB 2.0 or 1.0 query (.vnnlib, .vnnlib.gz)")
    p.add_argument("--network", action="append", type=_network_arg, default=[], metavar="NAME=FILE",
                   help="ONNX file of a declared network (repeat for several networks)")
    p.add_argument("--timeout", type=_timeout_arg, default=None,
                   help=f"seconds; the search uses all of it but {RESERVE:g} s kept for the answer")
    p.add_argument("--serialise-assignments", "--serialize-assignments", dest="serialise", metavar="DIR",
                   help="write a satisfying assignment as DIR/NAME.pb TensorProto files")
    p.add_argument("--solver", type=_solver_arg, default="highs",
                   help="MILP backend: highs, gurobi or scip if installed (non-standard option)")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks (non-standard option)")
    p.add_argument("--engine", choices=("auto", "bab", "mip"), default="auto",
                   help="after bounds and attacks: branch and bound over ReLU phases, on deep networks with "
                        "the intermediate bounds tightened first (auto, bab), or the LP and the thesis's Big-M "
                        "MILP (mip) (non-standard option)")
    p.set_defaults(func=verify_main)
    s = subparsers.add_parser("supports", help="report capabilities (VNN-LIB 2.0 standard, section 5.4)")
    g = s.add_mutually_exclusive_group(required=True)
    for flag in CAPABILITIES:
        g.add_argument(flag, dest="capability", action="store_const", const=flag)
    s.set_defaults(func=supports_main)


def supports_main(args) -> int:
    lines = _capabilities()[args.capability]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()
    return 0


def _fmt(v: float, dtype: str) -> str:
    if dtype == "float32":
        return repr(float(np.float32(v)))
    return repr(float(v))


def format_assignment(query, values: dict[str, np.ndarray]) -> str:
    """§5.3.1 command-line format: ``NAME TYPE [d1,d2]`` then one value a line, row-major."""
    out = []
    for var in query.variables:
        out.append(f"{var.name} {var.dtype} [{','.join(map(str, var.shape))}]")
        out.extend(_fmt(x, var.dtype) for x in np.asarray(values[var.name], dtype=np.float64).ravel())
    return "\n".join(out) + "\n"


def write_assignment(query, values: dict[str, np.ndarray], folder) -> Path:
    """Serialised format: one ONNX TensorProto per declared variable, ``folder/NAME.pb``.

    Every tensor is serialised before anything is written, and each file is written
    atomically (:func:`nnmiplib.paths.atomic_write_bytes`). Raises ``OSError`` if the
    folder cannot be created or written.
    """
    from onnx import numpy_helper

    from ..paths import atomic_write_bytes

    folder = Path(folder)
    blobs = {}
    for var in query.variables:
        dt = np.float32 if var.dtype == "float32" else np.float64
        arr = np.asarray(values[var.name], dtype=dt).reshape(var.shape)
        blobs[f"{var.name}.pb"] = numpy_helper.from_array(arr, name=var.name).SerializeToString()
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in blobs.items():
        atomic_write_bytes(folder / name, data)
    return folder


class _Out:
    """The real stdout (saved fd) written once under a lock; the watchdog shares it."""

    def __init__(self, fd: int):
        self.fd, self.lock, self.done = fd, threading.Lock(), False

    def emit(self, text: str) -> bool:
        with self.lock:
            if self.done:
                return False
            data = text.encode()
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
            self.done = True
            return True


def _elapsed_since_start() -> float:
    """Seconds since this process started (Linux /proc), 0 where unknown."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def verify_main(args) -> int:
    from ..onnx_io import UnsupportedConstructError
    from .engine import verify
    from .problem import load_onnx
    from .query import read_query

    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)  # solver banners and stray prints go to stderr
    except OSError:
        saved = None
    out = _Out(saved if saved is not None else 1)
    timer = None
    try:
        names = [n for n, _ in args.network]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            print(f"error: --network given twice for {sorted(dup)}", file=sys.stderr)
            return 2
        try:
            query = read_query(args.query)
            declared = [n.name for n in query.networks]
            needed = [n.name for n in query.networks if not n.equal_to]
            if query.version == "1.0":
                if len(args.network) != 1:
                    raise ValueError(f"a VNN-LIB 1.0 query needs exactly one --network, got {len(args.network)}")
                mapping = {"N": args.network[0][1]}
            else:
                mapping = dict(args.network)
                unknown = [n for n in mapping if n not in declared]
                if unknown:
                    raise ValueError(f"--network {unknown[0]}=…: the query declares no network of that name "
                                     f"(declared: {', '.join(declared)})")
                not_needed = [n for n in mapping if n not in needed]
                if not_needed:
                    raise ValueError(f"network {not_needed[0]!r} is declared equal-to another network; "
                                     "give no --network for it")
                missing = [n for n in needed if n not in mapping]
                if missing:
                    raise ValueError(f"no --network given for declared network(s) {', '.join(missing)}")
            loaded = {name: load_onnx(path, name=name) for name, path in mapping.items()}
        except UnsupportedConstructError as exc:  # supported operators outside the fragment: no answer
            print(f"unknown: {_one_line(exc)}", file=sys.stderr)
            out.emit("unknown\n")
            return 0
        except (ValueError, FileNotFoundError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        standalone = getattr(args, "standalone", True)
        spent = _elapsed_since_start() if standalone else 0.0
        if args.timeout is not None:
            def fire():
                if out.emit("timed-out\n"):
                    sys.stderr.flush()
                    if standalone:  # in-process callers keep their process; the budget stops the search
                        os._exit(0)

            at = args.timeout - min(0.5 * RESERVE, 0.05 * args.timeout)
            timer = threading.Timer(max(0.0, at - spent), fire)
            timer.daemon = True
            timer.start()
        budget = None if args.timeout is None else max(0.0, args.timeout - spent - min(RESERVE, 0.1 * args.timeout))
        try:
            res = verify(query, loaded, timeout=budget, solver=args.solver, seed=args.seed, engine=args.engine)
        except ValueError as exc:  # a query/network combination the models cannot serve
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # noqa: BLE001 -- an internal failure proves nothing: answer unknown
            import traceback

            traceback.print_exc(file=sys.stderr)
            print(f"error: verification failed ({type(exc).__name__}: {exc}); answering unknown", file=sys.stderr)
            out.emit("unknown\n")
            return 0
        for line in res.log:
            log.info("%s", line)
        text = res.status + "\n"
        if res.status == "sat":
            written = False
            if args.serialise:
                try:
                    write_assignment(query, res.values, args.serialise)
                    written = True
                except OSError as exc:  # the answer is not lost: the assignment goes to stdout
                    print(f"error: cannot write the assignment to {args.serialise} ({_one_line(exc)}); "
                          "printing it on stdout instead", file=sys.stderr)
            if not written:
                text += format_assignment(query, res.values)
        out.emit(text)
        return 0
    finally:
        if timer is not None:
            timer.cancel()
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
