r"""Algorithms 1 and 3 (Bounder): activation bounds by solving one LP/MILP per neuron.

For every affine layer ``m = 1..L`` (the hidden layers after the first, then the logits;
layer 0 is an affine function of the box, where interval arithmetic is already exact)
the model of problems :math:`P_{nm}` / :math:`\bar P_{nm}` — hidden layers ``< m`` plus
``a[m]`` — is encoded **once** from the bounds found so far (so the Big-M constants of
(1.3)–(1.4) use the bounds just tightened), and each neuron's pre-activation is
maximised and minimised by changing only the objective (HiGHS keeps its basis: warm
start). ``relax=True`` solves the LP relaxation (Algorithm 3, relax = 1) — by default
without ``z`` and ``hbar`` (:func:`nnmiplib.mip.encode_triangle`: the same optimum as
the Big-M relaxation, about 3× faster) — and ``False`` the MILP of the thesis's Big-M
model. A layer's neurons are ordered greedily by the cosine similarity of their weight
rows and all maxima are solved before all minima, so each warm start begins near the
next optimum. Over ``n_jobs`` processes (each builds the layer's model once and solves
with one thread) the ordered solves are cut into one contiguous segment per process,
and a process that runs dry takes the back half of the fullest segment (work
stealing): every process walks contiguous runs of the order and all end together. Measured
(``benchmarks/bounds.py``, 200x5 L1 net rounded at ε = 0.01, [0,1]^784, 2 cores):
every LP bound of the 50-epoch net in 43–46 s on 2 processes (84 s on 1: ×1.84–1.96),
35–37× a loop that rebuilds a HiGHS model per solve; of the 5-epoch net in 98 s (198 s
on 1: ×2.02), 21×.

Soundness (GUIDE §4)
--------------------
* **LP**: the value kept is not the solver's objective but the Neumaier–Shcherbina
  bound :func:`safe_lp_bound` computed from the solver's row duals, valid for *any*
  dual vector, with an outward margin covering floating-point rounding. A time-limited
  LP contributes the same bound from its last duals ("lp-timeout").
* **MILP**: only the solver's **dual** bound is used ("milp" when optimal, "milp-dual"
  at a time limit), never the incumbent, widened outward by ``milp_margin·(1 + |v|)``
  (default 1e-7) against the solver's feasibility/integrality tolerances.
* Every result is intersected with ``initial`` (never looser than the cheap bounds); a
  failed solve, or one not started before its layer's deadline, keeps the initial bound
  and records ``"fallback-<initial source>"``.

Stable neurons
--------------
Neurons that ``initial`` already proves stable (``lower ≥ 0`` or ``upper ≤ 0``) are
**skipped** (``skip_stable=True``): their ReLU is linear in the model already, and
tightening them changes no binary. Logits are always bounded.

Time split (Algorithm 3)
------------------------
With a total budget ``T`` (a wall-clock deadline from the start), ``k_m`` the number of
solves of layer ``m`` (two per neuron to bound), ``n_c = n_jobs`` and ratio ``r``
(``time_ratio``, default 2), every solve of layer ``m`` gets

.. math:: t_m = T_{\text{rem}} \, r^m \Big/ \sum_{m' \ge m} \lceil k_{m'}/n_c \rceil\, r^{m'}

where ``T_rem`` is the time left when layer ``m`` starts and ``k_{m'}`` for later layers
is estimated from ``initial``'s unstable neurons (it can only shrink). So
:math:`\sum_m \lceil k_m/n_c\rceil t_m = T` (the thesis's
:math:`T = \sum_m \lceil n_m/n_c \rceil t_m`, here per solve, i.e. a neuron's max and
min together get ``2 t_m``). ``per_neuron_time_limit`` caps each solve.

How this keeps to Algorithm 3, which solves every neuron of layer ``m`` with the limit
``t_m``: every neuron to bound is handed to the solver, in the layer's order (LP: the
similarity order below; MILP: widest ``initial`` interval first), each solve with the
limit ``t_m`` — raised to ``min_solve_time`` when ``t_m`` is below it (MILP default
1 s: a MILP stopped before presolve and root gives no dual bound at all, so a shorter
limit would buy nothing). Nothing is dropped in advance. The layer's share
:math:`\lceil k_m/n_c\rceil t_m` is a wall-clock deadline, not a forecast: solves usually
end long before their limit, so normally every neuron is solved and the time left flows
to the deeper layers (``t_{m+1}`` is computed from the time actually remaining). Only
when the deadline has actually passed are the layer's remaining solves not started
(for MILP on one process the narrowest neurons; over ``n_jobs`` processes the ends of
their stretches of the widest-first order); those keep ``initial``
("fallback-…" sources) and are recorded in ``stats["layers"][i]``: ``cut_by_deadline``
(how many) and ``cut_neurons`` (which).
When every solve takes its whole limit ``t_m ≥ min_solve_time``, this is Algorithm 3
exactly.

Failed solves
-------------
A solve that ran and gave no bound for a reason other than its own time limit (a solver
error, an infeasible or unbounded status, a node/iteration/solution limit set through
``solver_options``; code ``failed-…``) keeps the initial bound like any fallback. When
more than :data:`FAIL_SHARE` of the solves that ran so far have failed so, the run
raises :class:`SolveFailureError` after the layer instead of returning fallback bounds
labelled with the method asked for.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..domains import Box
from ..mip.encode import MipModel, encode, encode_triangle
from ..mip.solvers.base import Solution, Status, safe_lp_bound
from ..network import Network
from .base import Bounds, join_sources, source_side

__all__ = ["FAIL_SHARE", "SolveFailureError", "safe_lp_bound", "solver_bounds", "time_split"]

log = logging.getLogger(__name__)

#: Largest share of failed solves (of those that ran) a run may have before it raises.
FAIL_SHARE = 0.5


class SolveFailureError(RuntimeError):
    """More than :data:`FAIL_SHARE` of a run's solves failed: its bounds would be fallbacks only."""


def _is_failure(code: str) -> bool:
    """A solve that ran and gave no bound for a reason other than its own time limit."""
    return code.startswith("failed-") and code != "failed-time_limit"


def time_split(T_rem: float, solves: list[int], n_c: int, ratio: float, first_layer: int) -> float:
    """Per-solve time ``t_m`` of the first layer in ``solves`` (see the module docstring)."""
    rounds = [int(np.ceil(k / max(1, n_c))) for k in solves]
    denom = sum(rd * ratio ** (first_layer + i) for i, rd in enumerate(rounds))
    return float(T_rem * ratio ** first_layer / denom) if denom > 0 else float(T_rem)


@dataclass
class _Cur:
    lower: list
    upper: list


@dataclass
class LayerJob:
    """What a worker needs to solve some neurons of one layer (picklable)."""

    token: str
    model: MipModel
    obj_cols: np.ndarray  # a[m]_j = obj_W[j] · v[obj_cols] + obj_b[j]
    obj_W: np.ndarray
    obj_b: np.ndarray
    solver: str
    relax: bool
    t_solve: float | None
    deadline: float | None
    mip_gap: float
    milp_margin: float
    early_stop: bool
    options: dict


_CACHE: dict = {}


def _backend(job: LayerJob):
    """The backend of ``job``'s layer, built once per process and layer (then re-used)."""
    if _CACHE.get("token") != job.token:
        from ..mip.solvers import get_backend

        _CACHE.clear()
        _CACHE["backend"] = get_backend(job.solver)(job.model, threads=1, mip_gap=job.mip_gap, options=job.options)
        _CACHE["token"] = job.token
    return _CACHE["backend"]


def _interpret(job: LayerJob, model: MipModel, c: np.ndarray, offset: float, sense: str, sol: Solution):
    """(value, code) of one solve; value None = keep the bound in hand."""
    if job.relax:
        if sol.status in (Status.OPTIMAL, Status.TIME_LIMIT, Status.INTERRUPTED) and sol.row_dual is not None:
            v = safe_lp_bound(model, c, sense, sol.row_dual)
            d = 4 * np.finfo(float).eps * (abs(v) + abs(offset))  # rounding of the addition below
            v = v + offset + (d if sense == "max" else -d)
            if np.isfinite(v):
                return v, "lp" if sol.status is Status.OPTIMAL else "lp-timeout"
        if sol.status is Status.OPTIMAL and sol.objective is not None:  # backend without duals
            d = job.milp_margin * (1 + abs(sol.objective))
            return sol.objective + (d if sense == "max" else -d), "lp-margin"
        return None, f"failed-{sol.status.value}"
    if sol.status is Status.INTERRUPTED and sol.message.lower().find("target") >= 0:
        return None, "milp-target"  # incumbent reached the bound in hand: no improvement possible
    if sol.status in (Status.OPTIMAL, Status.TIME_LIMIT, Status.INTERRUPTED) and sol.dual_bound is not None:
        d = job.milp_margin * (1 + abs(sol.dual_bound))
        return sol.dual_bound + (d if sense == "max" else -d), "milp" if sol.status is Status.OPTIMAL else "milp-dual"
    return None, f"failed-{sol.status.value}"


def _solve_order(job: LayerJob, tasks) -> list[tuple]:
    """The layer's solves ``(sense, j, bound in hand)`` in the order they are run."""
    if job.relax:  # all maxima, then all minima: each warm start begins nearer the next optimum
        return [("max", j, hi) for j, _, hi in tasks] + [("min", j, lo) for j, lo, _ in tasks]
    # MILP: a neuron's two sides together, so a deadline never cuts one side of many neurons
    return [s for j, lo, hi in tasks for s in (("max", j, hi), ("min", j, lo))]


def _solve_one(job: LayerJob, be, c: np.ndarray, sense: str, j: int, hand: float) -> tuple:
    """One solve: (j, sense, value, code, seconds); value None = keep the bound in hand."""
    limit = job.t_solve
    if job.deadline is not None:
        left = job.deadline - time.time()
        if left <= 0.01:
            return (j, sense, None, "deadline", 0.0)
        limit = left if limit is None else min(limit, left)
    c[:] = 0.0
    c[job.obj_cols] = job.obj_W[j]
    off = float(job.obj_b[j])
    be.set_objective(c, sense, offset=off)
    target = hand if (job.early_stop and not job.relax) else None
    t = time.perf_counter()
    try:
        sol = be.solve(limit, objective_target=target)
        value, code = _interpret(job, be.model, c, off, sense, sol)
    except Exception as exc:  # noqa: BLE001 -- a failed solve falls back; many failures raise (FAIL_SHARE)
        log.warning("solve of neuron %d (%s) failed: %s", j, sense, exc)
        value, code = None, "failed-error"
    dt = time.perf_counter() - t
    if code == "failed-time_limit" and (limit is None or dt < 0.5 * limit):
        code = "failed-limit"  # stopped well before its time limit: a node/iteration/solution limit
    return (j, sense, value, code, dt)


def run_layer_job(job: LayerJob, tasks, progress=None) -> list[tuple]:
    """Solve max and min of each task's neuron in one process; returns (j, sense, value, code, seconds).

    ``tasks`` holds ``(j, lower, upper)`` with the bounds in hand. A solve that
    would start after ``job.deadline`` is not run (value None, code "deadline").
    """
    be = _backend(job)
    c = np.zeros(be.model.n_vars)
    out = []
    for sense, j, hand in _solve_order(job, tasks):
        out.append(_solve_one(job, be, c, sense, j, hand))
        if progress:
            progress(1)
    return out


# Work stealing between the worker processes of a layer (n_jobs > 1). The layer's ordered
# solves are cut into one contiguous segment per worker; a worker takes its segment's
# solves front to back, and when it runs dry it takes the back half of the segment with
# the most solves left. Every worker thus walks contiguous runs of the similarity order
# (warm starts stay warm) and all finish within about one solve of each other.
# Layout of the shared array: [head_0, tail_0, head_1, tail_1, ..., solves done].
_SHARED = None


def _init_worker(shared) -> None:
    global _SHARED
    _SHARED = shared


def _take(state, seg: int, n_seg: int) -> int | None:
    """Index of the next solve for the worker owning segment ``seg`` (None: none left)."""
    with state.get_lock():
        h, t = state[2 * seg], state[2 * seg + 1]
        if h >= t:  # own segment done: steal the back half of the fullest one
            best, left = -1, 0
            for s in range(n_seg):
                r = state[2 * s + 1] - state[2 * s]
                if r > left:
                    best, left = s, r
            if best < 0:
                return None
            bt = state[2 * best + 1]
            mid = bt - left // 2 if left > 1 else state[2 * best]
            state[2 * best + 1] = mid
            h, t = mid, bt
            state[2 * seg + 1] = t
        state[2 * seg] = h + 1
        return h


def _run_share(job: LayerJob, order: list[tuple], seg: int, n_seg: int) -> list[tuple]:
    """Worker side of the work stealing: solve until no solve of the layer is left."""
    state = _SHARED
    be = _backend(job)
    c = np.zeros(be.model.n_vars)
    out = []
    while (i := _take(state, seg, n_seg)) is not None:
        out.append(_solve_one(job, be, c, *order[i]))
        with state.get_lock():
            state[2 * n_seg] += 1
    return out


def solver_bounds(net: Network, domain: Box, *, relax: bool, initial: Bounds, time_limit: float | None = None,
                  per_neuron_time_limit: float | None = None, n_jobs: int = 1, solver: str = "highs",
                  progress: bool = True, time_ratio: float = 2.0, skip_stable: bool = True,
                  mip_gap: float = 1e-6, milp_margin: float = 1e-7, min_solve_time: float | None = None,
                  early_stop: bool = True, formulation: str = "triangle",
                  max_neurons: int | None = None, solver_options: dict | None = None,
                  restrict: list | None = None) -> Bounds:
    """LP (``relax=True``) or MILP bounds of every neuron, Algorithms 1/3 (SPEC §2).

    Parameters
    ----------
    net, domain : the network and its input box (1.8).
    relax : LP relaxation (True) or MILP (False).
    initial : valid bounds to start from and intersect with (e.g. ``cheap_bounds``);
        for MILP, passing LP bounds restricts the MILPs to neurons the LP left unstable.
    time_limit : total budget T in seconds, also a wall-clock deadline (None: no limit).
    per_neuron_time_limit : cap on each single solve (a neuron's max or min).
    n_jobs : worker processes; each builds the layer model once and solves its share
        with one solver thread.
    solver : backend name (:func:`nnmiplib.mip.solvers.available`).
    time_ratio, skip_stable, mip_gap, milp_margin, min_solve_time : see the module docs.
    early_stop : MILP only: stop a solve once its incumbent reaches the bound in hand
        (then it cannot improve it; HiGHS ``objective_target``).
    max_neurons : bound at most this many neurons per layer (evenly spaced among those
        to do; the others keep ``initial``) — for benchmarks and quick looks.
    restrict : per affine layer, the indices of the only neurons that may be bounded (None
        in a slot, or ``restrict=None``: every neuron); applied before ``max_neurons`` —
        e.g. a MILP run limited to the neurons an earlier sampled LP run bounded.
    solver_options : the solver's own parameters for every solve (e.g. HiGHS
        ``{"simplex_strategy": 4}``); see :class:`nnmiplib.mip.solvers.base.Backend`.
    formulation : LP only: "triangle" (default; :func:`nnmiplib.mip.encode_triangle`,
        the Big-M relaxation without ``z`` and ``hbar`` — identical optimum, ≈3× faster)
        or "bigm" (``encode(relax=True)`` as written in the thesis).

    Returns
    -------
    Bounds with ``method`` "lp"/"milp"; per neuron ``source`` ("lp", "lp-timeout",
    "milp", "milp-dual", "fallback-…" or the initial source where skipped) and ``time``.
    """
    if not isinstance(net, Network):
        raise ValueError(f"net must be a Network, got {type(net).__name__}")
    domain.check_dim(net.n_inputs)
    if initial.sizes != net.layer_sizes[1:]:
        raise ValueError(f"initial bounds have layer sizes {initial.sizes}, the network {net.layer_sizes[1:]}")
    if initial.net_digest != net.digest():
        raise ValueError("initial bounds belong to another network (digest differs); recompute them")
    if not (np.array_equal(initial.domain.lo, domain.lo) and np.array_equal(initial.domain.hi, domain.hi)):
        raise ValueError("initial bounds were computed on another input domain")
    check_solver_arguments(time_limit=time_limit, per_neuron_time_limit=per_neuron_time_limit, n_jobs=n_jobs,
                           solver=solver, time_ratio=time_ratio, mip_gap=mip_gap, milp_margin=milp_margin,
                           min_solve_time=min_solve_time, max_neurons=max_neurons, solver_options=solver_options)
    if restrict is not None and len(restrict) != net.depth + 1:
        raise ValueError(f"restrict needs one entry per affine layer ({net.depth + 1}), got {len(restrict)}")
    n_jobs = int(n_jobs)
    if formulation not in ("triangle", "bigm"):
        raise ValueError(f"formulation must be 'triangle' or 'bigm', got {formulation!r}")
    if min_solve_time is None:
        min_solve_time = 0.0 if relax else 1.0
    t0 = time.perf_counter()
    deadline = None if time_limit is None else time.time() + float(time_limit)
    L = net.depth
    lower = [a.copy() for a in initial.lower]
    upper = [a.copy() for a in initial.upper]
    src_lo = [source_side(s, 0).astype(object) for s in initial.source]
    src_hi = [source_side(s, 1).astype(object) for s in initial.source]
    times = [np.zeros(a.size) for a in lower]

    def todo(m: int) -> np.ndarray:
        idx = np.arange(lower[m].size) if (m == L or not skip_stable) else \
            np.flatnonzero((lower[m] < 0) & (upper[m] > 0))
        if restrict is not None and restrict[m] is not None:
            idx = np.intersect1d(idx, np.asarray(restrict[m], dtype=np.int64))
        if max_neurons is not None and idx.size > max_neurons:
            idx = idx[np.linspace(0, idx.size - 1, int(max_neurons)).round().astype(int)]
        return idx

    layer_stats = []
    pool = shared = None
    if n_jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ts = time.perf_counter()
        ctx = mp.get_context("spawn")
        shared = ctx.Array("q", 2 * n_jobs + 1)
        pool = ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=_init_worker, initargs=(shared,))
        list(pool.map(_warm_up, range(n_jobs)))  # start the workers (imports) before timing layers
        startup = time.perf_counter() - ts
    else:
        startup = 0.0
    try:
        for m in range(1, L + 1):
            neurons = todo(m)
            tl = time.perf_counter()
            if neurons.size == 0:
                layer_stats.append({"layer": m, "solves": 0, "wall": 0.0, "t_solve": None})
                continue
            t_solve, t_m, layer_deadline = None, None, deadline
            if deadline is not None:
                est = [2 * neurons.size] + [2 * todo(k).size for k in range(m + 1, L + 1)]
                t_m = time_split(max(deadline - time.time(), 0.0), est, n_jobs, time_ratio, m)
                budget = t_m * np.ceil(est[0] / n_jobs)  # this layer's share of the remaining time
                layer_deadline = min(deadline, time.time() + budget)  # a deadline, not a forecast
                t_solve = max(t_m, min_solve_time)  # every neuron is solved; a deadline that passes cuts the rest
            if per_neuron_time_limit is not None:
                t_solve = per_neuron_time_limit if t_solve is None else min(t_solve, per_neuron_time_limit)
            cur = _Cur(lower, upper)
            if relax and formulation == "triangle":
                model, prev = encode_triangle(net, domain, cur, stop_layer=m)
                oW, ob = net.weights[m][:, model.triangle_keep], net.biases[m]
                neurons = _similar_order(oW, neurons)  # warm starts gain from similar consecutive objectives
            else:
                model = encode(net, domain, cur, relax=relax, stop_layer=m)
                prev, oW, ob = model.nets[0].a[m], np.eye(lower[m].size), np.zeros(lower[m].size)
                if not relax:  # widest first: if the layer's deadline passes, the narrowest neurons are cut
                    neurons = neurons[np.argsort(-(upper[m][neurons] - lower[m][neurons]), kind="stable")]
            job = LayerJob(token=f"{id(model)}-{m}-{time.time()}", model=model, obj_cols=prev, obj_W=oW, obj_b=ob,
                           solver=solver, relax=relax,
                           t_solve=t_solve, deadline=layer_deadline, mip_gap=mip_gap, milp_margin=milp_margin,
                           early_stop=early_stop, options=dict(solver_options or {}))
            tasks = [(int(j), float(lower[m][j]), float(upper[m][j])) for j in neurons]
            results = _run(job, tasks, pool, shared, n_jobs, progress, f"{'LP' if relax else 'MILP'} layer {m}/{L}")
            codes: dict[str, int] = {}
            cut_neurons: set[int] = set()
            for j, sense, value, code, dt in results:
                if code == "deadline":
                    cut_neurons.add(j)
                times[m][j] += dt
                codes[code] = codes.get(code, 0) + 1
                if sense == "max":
                    if value is None:
                        src_hi[m][j] = f"fallback-{src_hi[m][j]}" if code != "milp-target" else src_hi[m][j]
                    elif value < lower[m][j] - 1e-9 * (1 + abs(lower[m][j])):
                        log.warning("layer %d neuron %d: upper bound %r below the valid lower bound %r; "
                                    "numerical trouble, keeping the initial bound", m, j, value, lower[m][j])
                        src_hi[m][j] = f"fallback-{src_hi[m][j]}"
                    elif value < upper[m][j]:
                        upper[m][j], src_hi[m][j] = max(value, lower[m][j]), code
                else:
                    if value is None:
                        src_lo[m][j] = f"fallback-{src_lo[m][j]}" if code != "milp-target" else src_lo[m][j]
                    elif value > upper[m][j] + 1e-9 * (1 + abs(upper[m][j])):
                        log.warning("layer %d neuron %d: lower bound %r above the valid upper bound %r; "
                                    "numerical trouble, keeping the initial bound", m, j, value, upper[m][j])
                        src_lo[m][j] = f"fallback-{src_lo[m][j]}"
                    elif value > lower[m][j]:
                        lower[m][j], src_lo[m][j] = min(value, upper[m][j]), code
            layer_stats.append({"layer": m, "solves": len(results), "wall": time.perf_counter() - tl,
                                "t_solve": t_solve, "t_m": t_m, "codes": codes, "cut_by_deadline": len(cut_neurons),
                                "cut_neurons": sorted(cut_neurons),
                                "n_vars": model.n_vars, "n_rows": model.n_rows, "n_integer": model.n_integer})
            log.info("%s layer %d: %d solves in %.2fs %s", "LP" if relax else "MILP", m, len(results),
                     layer_stats[-1]["wall"], codes)
            _check_failures(layer_stats, "LP" if relax else "MILP")
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    method = "lp" if relax else "milp"
    sources = [join_sources(np.asarray(a, dtype=str), np.asarray(b, dtype=str)) for a, b in zip(src_lo, src_hi)]
    out = Bounds(lower, upper, sources, times, method, net.digest(), domain,
                 {"total_time": time.perf_counter() - t0, "solver": solver, "n_jobs": n_jobs, "startup": startup,
                  "time_limit": time_limit, "per_neuron_time_limit": per_neuron_time_limit,
                  "time_ratio": time_ratio, "skip_stable": skip_stable, "layers": layer_stats,
                  "formulation": formulation if relax else "bigm",
                  "initial_method": initial.method})
    out.stats["stable"] = out.stable_counts()
    return out


def check_solver_arguments(*, time_limit=None, per_neuron_time_limit=None, n_jobs=1, solver="highs",
                           time_ratio=2.0, mip_gap=1e-6, milp_margin=1e-7, min_solve_time=None,
                           max_neurons=None, solver_options=None, zero_time_ok: bool = False) -> None:
    """Raise ``ValueError`` for an argument of :func:`solver_bounds` that means nothing (before any work).

    Time limits must be positive seconds or None (``zero_time_ok``: also 0, for the
    methods that ignore them). Unless ``solver`` is None, also checks that it names an installed backend
    (:func:`nnmiplib.mip.solvers.get_backend`: ``ValueError`` for an unknown name,
    ``SolverError`` for one not installed).
    """
    def seconds(name, v, allow_zero=False):
        if v is None:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or np.isnan(v) \
                or not (v >= 0 if allow_zero else v > 0):
            raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} seconds or None, "
                             f"got {v!r}")

    seconds("time_limit", time_limit, allow_zero=zero_time_ok)
    seconds("per_neuron_time_limit", per_neuron_time_limit, allow_zero=zero_time_ok)
    seconds("min_solve_time", min_solve_time, allow_zero=True)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}")
    if max_neurons is not None and (isinstance(max_neurons, bool) or not isinstance(max_neurons, (int, np.integer))
                                    or max_neurons < 1):
        raise ValueError(f"max_neurons must be a positive integer or None, got {max_neurons!r}")
    for name, v in (("time_ratio", time_ratio), ("mip_gap", mip_gap), ("milp_margin", milp_margin)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v) \
                or v < 0 or (name == "time_ratio" and v == 0):
            raise ValueError(f"{name} must be a finite {'positive' if name == 'time_ratio' else 'non-negative'} "
                             f"number, got {v!r}")
    if solver_options is not None and not isinstance(solver_options, dict):
        raise ValueError(f"solver_options must be a dict of the solver's parameters, got {type(solver_options).__name__}")
    if solver is not None:
        from ..mip.solvers import get_backend

        get_backend(solver)


def _check_failures(layer_stats: list[dict], what: str) -> None:
    """Raise :class:`SolveFailureError` when more than :data:`FAIL_SHARE` of the solves so far failed."""
    ran = failed = 0
    for st in layer_stats:
        for code, n in st.get("codes", {}).items():
            if code in ("deadline", "milp-target"):
                continue
            ran += n
            failed += n if _is_failure(code) else 0
    if ran and failed > FAIL_SHARE * ran:
        kinds = sorted({c for st in layer_stats for c in st.get("codes", {}) if _is_failure(c)})
        raise SolveFailureError(
            f"{failed} of {ran} {what} solves failed ({', '.join(kinds)}); the bounds would only be the initial "
            f"fallbacks. Check the solver, its options and the time limits (more than {FAIL_SHARE:.0%} "
            "failed solves is an error)")


def _similar_order(W: np.ndarray, neurons: np.ndarray) -> np.ndarray:
    """``neurons`` in a greedy nearest-neighbour order of their weight rows (cosine), so
    that consecutive LPs have similar objectives and warm starts begin near the optimum."""
    if neurons.size <= 2:
        return neurons
    R = np.asarray(W)[neurons]
    R = R / np.maximum(np.linalg.norm(R, axis=1, keepdims=True), 1e-300)
    S = R @ R.T
    order, left = [0], np.ones(neurons.size, dtype=bool)
    left[0] = False
    for _ in range(neurons.size - 1):
        s = np.where(left, S[order[-1]], -np.inf)
        k = int(np.argmax(s))
        order.append(k)
        left[k] = False
    return neurons[np.asarray(order)]


def _warm_up(i: int) -> int:
    from ..mip.solvers.highs import new_highs

    new_highs()  # import highspy and swallow its banner once per worker
    return i


def _run(job: LayerJob, tasks, pool, shared, n_jobs, progress, desc):
    """Solve ``tasks`` (both senses each) serially or over the process pool (work stealing)."""
    from concurrent.futures import FIRST_EXCEPTION, wait

    from tqdm.auto import tqdm

    bar = tqdm(total=2 * len(tasks), desc=desc, disable=not progress, leave=False)
    try:
        if pool is None:
            try:
                return run_layer_job(job, tasks, progress=bar.update)
            finally:
                _CACHE.clear()
        order = _solve_order(job, tasks)
        n_seg = min(n_jobs, len(order))
        cuts = np.linspace(0, len(order), n_seg + 1).round().astype(int)
        with shared.get_lock():
            for s in range(n_seg):
                shared[2 * s], shared[2 * s + 1] = int(cuts[s]), int(cuts[s + 1])
            shared[2 * n_seg] = 0
        futs = [pool.submit(_run_share, job, order, s, n_seg) for s in range(n_seg)]
        shown = 0
        while True:
            done, pending = wait(futs, timeout=0.25, return_when=FIRST_EXCEPTION)
            now = shared[2 * n_seg]
            bar.update(now - shown)
            shown = now
            if not pending or any(f.exception() is not None for f in done):
                break
        out = [r for f in futs for r in f.result()]
        if len(out) != len(order):  # cannot happen unless the shared state is corrupted
            raise RuntimeError(f"work stealing returned {len(out)} of {len(order)} solves")
        return out
    finally:
        bar.close()
