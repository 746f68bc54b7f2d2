"""The staged verification engine: :func:`verify` decides a :class:`~nnmiplib.vnnlib.problem.Problem`.

Per disjunct, cheapest first: empty box → cheap bounds (naive ∩ interval ∩ CROWN, plus
CROWN on the network whose last layer is replaced by the constraint rows) → attacks
(sampling, signed-gradient descent on the largest normalised violation) → the branch and
bound over ReLU phases (:mod:`nnmiplib.bab`, the default engine) or, with ``engine="mip"``,
LP relaxation → LP bound tightening (Algorithm 3, above :data:`TIGHTEN_ABOVE` unstable
neurons) → MILP (thesis model 1.1–1.8) maximising the common slack ``t`` of the normalised
rows. The
floating-point margins and the witness check come from :mod:`nnmiplib.vnnlib.witness`.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field

import numpy as np

from ..network import Network
from ..onnx_io import OnnxInfo
from .problem import Disjunct, Problem, build_problem
from .query import Query
from .witness import check_witness, fp_error_bound

__all__ = ["SEARCH_WORKERS", "TIGHTEN_ABOVE", "VerifyResult", "verify", "with_inputs"]

#: LP bound tightening (Algorithm 3) runs before a MILP only above this many unstable neurons.
TIGHTEN_ABOVE = 100
#: the exact stage runs again on disjuncts their share of the time cut short while more than
#: this many seconds are left, at most MAX_RETRIES times (a search restarts from its root)
RETRY_ABOVE = 2.0
MAX_RETRIES = 2
#: the branch and bound's first pass over the open disjuncts takes this share of each one's
#: time; on a network of two or more hidden layers, what stays open then gets its
#: intermediate bounds tightened (:func:`nnmiplib.bab.tightening.tighten`) with TIGHTEN_SHARE of
#: the time left. Measured on 256x4 MNIST, ε = 0.03, image 3: 30 s of tightening took the
#: hardest row's root bound from 5.96 to 0.66 (it was still at 2.04 after 60 s of search on
#: the α-CROWN bounds; 0.5 s on the tightened ones)
QUICK_SHARE = 0.1
TIGHTEN_SHARE = 0.5
#: share of a branch-and-bound search's time spent at most on hull cuts at its root
#: (:func:`nnmiplib.bab.solve`'s ``cuts``: separated at the relaxation's own optimum, no LP), the
#: tightening's probes included (and its per-neuron searches if ``bab.search.TIGHTEN_CUTS`` > 0)
CUT_SHARE = 0.1
#: seconds of search (shared by the open disjuncts of the box) with which the tightening asks,
#: now and then, whether the bounds proven so far already refute them (it then stops)
PROBE = 1.0


@dataclass
class VerifyResult:
    """Outcome of :func:`verify`: ``status`` is sat | unsat | unknown | timed-out."""

    status: str
    values: dict[str, np.ndarray] | None = None   # sat: every declared variable, as checked
    time: float = 0.0
    log: list[str] = field(default_factory=list)
    problem: Problem | None = None


class _Deadline:
    def __init__(self, seconds: float | None):
        import time

        self._t = time.perf_counter
        self.end = None if seconds is None else self._t() + seconds

    def left(self) -> float:
        return np.inf if self.end is None else self.end - self._t()

    def over(self) -> bool:
        return self.left() <= 0


def _rows(dj: Disjunct):
    """Inequality rows normalised to max |coefficient| 1; equalities kept apart."""
    ineq = [i for i, o in enumerate(dj.ops) if o != "=="]
    eq = [i for i, o in enumerate(dj.ops) if o == "=="]
    scale = np.maximum(np.abs(np.hstack([dj.Cz, dj.Cy])).max(axis=1, initial=0.0), 1e-300) if dj.ops else np.ones(0)
    return ineq, eq, scale


def _min_max_rows(dj: Disjunct, net: Network, bounds_spec, ylo, yhi):
    """Lower/upper bounds of every row Cz z + Cy y over the box (crown on the spec layer)."""
    zlo = np.minimum(dj.Cz * dj.lo, dj.Cz * dj.hi).sum(axis=1)
    zhi = np.maximum(dj.Cz * dj.lo, dj.Cz * dj.hi).sum(axis=1)
    iy_lo = np.minimum(dj.Cy * ylo, dj.Cy * yhi).sum(axis=1)
    iy_hi = np.maximum(dj.Cy * ylo, dj.Cy * yhi).sum(axis=1)
    if bounds_spec is not None:
        iy_lo = np.maximum(iy_lo, bounds_spec.lower[-1])
        iy_hi = np.minimum(iy_hi, bounds_spec.upper[-1])
    return zlo + iy_lo, zhi + iy_hi


def _refuted_by_range(dj: Disjunct, rlo, rhi, margin) -> bool:
    for i, op in enumerate(dj.ops):
        if op == "==":
            if rlo[i] > dj.d[i] + margin[i] or rhi[i] < dj.d[i] - margin[i]:
                return True
        elif rlo[i] > dj.d[i] + margin[i]:
            return True
    return False


def _room(dj: Disjunct, rlo, rhi, margin) -> float:
    """How far the cheap bounds leave the disjunct from refuted: the largest common normalised
    slack ``min_i (d_i + m_i − row_i) / s_i`` they allow (negative: refuted). The exact stage
    takes the disjuncts in increasing order of it, so that the hardest one comes last and
    gets whatever time the others leave, in one search instead of a restart."""
    *_, scale = _rows(dj)
    room = np.inf
    for i, op in enumerate(dj.ops):
        r = dj.d[i] + margin[i] - rlo[i]
        if op == "==":
            r = min(r, rhi[i] - dj.d[i] + margin[i])
        room = min(room, r / scale[i])
    return float(room)


def _attack(prob: Problem, dj: Disjunct, rng, n_samples=256, steps=40, restarts=6, starts=None):
    """Sampling + signed-gradient descent on the largest normalised violation."""
    from ..queries.attacks import input_gradient

    net = prob.net
    _, _, scale = _rows(dj)
    width = dj.hi - dj.lo

    def viol(Z):
        Y = net.forward(Z)
        R = (Z @ dj.Cz.T + Y @ dj.Cy.T - dj.d) / scale
        R = np.where(np.array([o == "==" for o in dj.ops]), np.abs(R), R) if dj.ops else R
        return R, Y

    Z = np.vstack([(dj.lo + dj.hi)[None] / 2, dj.lo + rng.random((n_samples, net.n_inputs)) * width])
    if starts is not None:
        Z = np.vstack([Z, np.clip(np.atleast_2d(starts), dj.lo, dj.hi)])
    for z in _candidates(prob, dj, Z, viol):
        return z
    if not dj.ops:
        return None
    R, _ = viol(Z)
    worst = R.max(axis=1)
    X = Z[np.argsort(worst)[:restarts]].copy()
    for t in range(steps):
        R, _ = viol(X)
        k = R.argmax(axis=1)
        sgn = np.where(np.array([o == "==" for o in dj.ops])[k], np.sign(R[np.arange(len(X)), k]), 1.0)
        gy = dj.Cy[k] * (sgn / scale[k])[:, None]
        g = input_gradient(net, X, gy) + dj.Cz[k] * (sgn / scale[k])[:, None]
        eta = 0.1 * (1 - 0.9 * t / steps)
        X = np.clip(X - eta * width * np.sign(g), dj.lo, dj.hi)
        for z in _candidates(prob, dj, X, viol):
            return z
    return None


def _candidates(prob, dj, Z, viol):
    R, _ = viol(Z)
    strict = np.array([o == "<" for o in dj.ops], dtype=bool)
    ok = np.all((R < 0) | ((R <= 0) & ~strict), axis=1) if dj.ops else np.ones(len(Z), bool)
    for i in np.flatnonzero(ok)[:5]:
        if check_witness(prob, Z[i], (dj.lo, dj.hi)) is not None:
            yield Z[i]


def _solve_disjunct(prob: Problem, dj: Disjunct, bounds, margin, *, relax: bool, time_limit, solver: str,
                    start=None):
    """LP relaxation or MILP: maximise t s.t. rows + t ≤ d + margin (normalised); returns (verdict, x)."""
    import scipy.sparse as sp

    from ..domains import Box
    from ..mip import encode
    from ..mip.solvers import get_backend

    model = encode(prob.net, Box(dj.lo, dj.hi), bounds, relax=relax)
    ineq, eq, scale = _rows(dj)
    T = 1.0
    t = model.add_vars(1, -1e6, T)[0]
    ycols = model.nets[0].a[-1]
    n = model.n_vars
    for idx, with_t in ((ineq, True), (eq, False)):
        if not idx:
            continue
        k = len(idx)
        M = sp.lil_matrix((k, n))
        for r, i in enumerate(idx):
            s = scale[i]
            for j in np.flatnonzero(dj.Cz[i]):
                M[r, model.x[j]] = dj.Cz[i, j] / s
            for j in np.flatnonzero(dj.Cy[i]):
                M[r, ycols[j]] = dj.Cy[i, j] / s
            if with_t:
                M[r, t] = 1.0
        rhs = (dj.d[idx] + margin[idx]) / scale[idx]
        if with_t:
            model.add_rows(M.tocsr(), -np.inf, rhs)
        else:
            mr = margin[idx] / scale[idx]
            model.add_rows(M.tocsr(), dj.d[idx] / scale[idx] - mr, rhs)
    c = np.zeros(model.n_vars)
    c[t] = 1.0
    model.set_objective(c, "max")
    be = get_backend(solver)(model, threads=1)
    st = None
    if start is not None and not relax:
        st = model.point(start)
        st[t] = min(T, float(np.min((dj.d[ineq] - (dj.Cz[ineq] @ start) - dj.Cy[ineq] @ prob.net.forward(start))
                                     / scale[ineq]), initial=T)) if ineq else 0.0
    from ..mip.solvers.base import Status

    tau = _tolerance(dj, bounds, scale)
    # a MILP stops as soon as its dual bound refutes the disjunct (t* ≤ −2τ < −τ)
    stop = {} if relax else {"dual_stop": -2 * tau}
    sol = be.solve(time_limit=max(time_limit, 0.05) if np.isfinite(time_limit) else None, start=st, **stop)
    if sol.status is Status.INFEASIBLE:
        return "refuted", None, "infeasible"
    if relax and sol.row_dual is not None and sol.status in (Status.OPTIMAL, Status.TIME_LIMIT):
        from ..mip.solvers.base import safe_lp_bound

        safe = safe_lp_bound(model, c, "max", sol.row_dual)  # valid for any duals (Neumaier–Shcherbina)
        if np.isfinite(safe) and safe < -tau:
            return "refuted", None, f"safe LP bound {safe:.3g} < 0"
        x = sol.x[model.x] if sol.x is not None else None
        return "open", x, sol.status.value
    if sol.dual_bound is not None and sol.dual_bound < -tau and sol.status in (Status.OPTIMAL, Status.TIME_LIMIT,
                                                                                Status.INTERRUPTED):
        return "refuted", None, f"dual bound {sol.dual_bound:.3g} < 0"
    x = sol.x[model.x] if sol.x is not None else None
    return ("timeout" if sol.status is Status.TIME_LIMIT else "open"), x, sol.status.value


def _tolerance(dj: Disjunct, bounds, scale) -> float:
    """τ: a disjunct is refuted only when its normalised slack is bounded by −τ (1e-6 plus terms
    relative to the row constants and the output magnitudes, covering solver tolerances)."""
    ymag = float(np.max(np.abs(np.concatenate([bounds.lower[-1], bounds.upper[-1]])), initial=0.0))
    return 1e-6 + 1e-7 * float(np.max(np.abs(dj.d / np.where(scale > 0, scale, 1)), initial=0.0)) \
        + 1e-8 * ymag * float(np.max(np.abs(dj.Cy).sum(axis=1) / scale, initial=0.0))


def with_inputs(net: Network, lo: np.ndarray) -> Network:
    """``net`` with the input appended to its outputs, ``[y; x]``, exactly on ``x ≥ lo``.

    Each hidden layer carries ``p = x − lo`` through extra neurons (``ReLU(p) = p`` because
    ``p ≥ 0``), so rows that mix inputs and outputs become rows over the outputs alone.
    """
    n = net.n_inputs
    I = np.eye(n)
    Ws, bs = [], []
    for k, (W, b) in enumerate(zip(net.weights, net.biases)):
        W, b = np.asarray(W), np.asarray(b)
        if k == 0:
            Ws.append(np.vstack([W, I]))
            bs.append(np.concatenate([b, -lo]))
        else:
            m_out, m_in = W.shape
            blk = np.zeros((m_out + n, m_in + n))
            blk[:m_out, :m_in], blk[m_out:, m_in:] = W, I
            Ws.append(blk)
            bs.append(np.concatenate([b, lo if k == net.depth else np.zeros(n)]))
    if net.depth == 0:  # no hidden layer: the outputs and the input side by side
        return Network([np.vstack([net.weights[0], I])], [np.concatenate([net.biases[0], np.zeros(n)])])
    return Network(Ws, bs)


def _cores() -> int:
    """Torch threads for the branch and bound of one query (the command runs one query per
    process): the cores this process may use (:func:`nnmiplib.machine.search_workers`), at most
    4. Measured on 2 cores, 256x4 MNIST ε = 0.02, with float64 Adam steps: 49 000 nodes in 30 s
    with 2 threads against 32 000 with 1. Since the steps run in float32 (:data:`nnmiplib.bab.relax.STEP_DTYPE`) one thread is
    the faster search (one ε = 0.03 row, 20 s: 67 300 nodes against 48 900 with 2 threads),
    so the searches of several disjuncts run side by side with one thread each
    (:func:`_workers`); this many threads serve the tightening, and a search that runs alone
    splits its batches among this many threads of one torch thread each (``workers`` of
    :func:`nnmiplib.bab.solve`: one row of that net, image 0, tightened bounds, 30 s: 101–108 k
    nodes against 69 k with one thread and 83–99 k with two torch threads). Searches side by
    side share them: each takes its part of the cores at every batch, all of them once it runs
    alone."""
    from ..machine import search_workers

    return max(1, min(search_workers(), 4))


#: at most this many branch-and-bound searches side by side in one stage of :func:`verify`
SEARCH_WORKERS = 2


def _workers(n_open: int) -> int:
    """Searches :func:`verify` runs side by side (threads, one torch thread each) on ``n_open``
    disjuncts: one per core, at most :data:`SEARCH_WORKERS`. With float32 steps one torch
    thread is the faster search (:func:`_cores`), and the searches release the interpreter
    lock in their tensor work: two side by side bounded 86 000 nodes in 20 s on 256x4 MNIST
    (ε = 0.03, image 0, two rows on α-CROWN bounds) against 60 000 per row one after the other."""
    from ..machine import n_cores

    return max(1, min(n_cores(), SEARCH_WORKERS, n_open))


def _side_by_side(prob: Problem, todo: list, dl: _Deadline, cache: dict, *, seed: int, workers: int,
                  share: float = 1.0):
    """Yield ``(disjunct, (verdict, x, why))`` as the branch-and-bound searches of ``todo`` end,
    ``workers`` of them running side by side. A search starts with ``share`` of the time left
    times ``workers`` over the disjuncts not yet ended (what one ends early passes on). Once
    the caller stops iterating (a witness), the searches still running are cancelled and the
    ones not started are skipped; the generator returns after they have ended."""
    import threading
    from concurrent.futures import ThreadPoolExecutor, as_completed

    import torch

    cancel = threading.Event()
    lock = threading.Lock()
    left, running = [len(todo)], [0]

    def cores():  # a search's share of the cores, asked at each of its batches: more once others end
        with lock:
            return max(1, _cores() // max(1, running[0]))

    def work(dj):
        if cancel.is_set() or dl.over():
            return "timeout", None, "not started: the time is up or the query is settled"
        with lock:
            n = left[0]
            running[0] += 1
        budget = share * min(dl.left(), dl.left() * workers / max(1, n))
        try:
            return _bab_disjunct(prob, dj, time_limit=budget, seed=seed, cache=cache, threads=1, workers=cores,
                                 cancel=cancel)
        finally:
            with lock:
                left[0] -= 1
                running[0] -= 1

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="nnmiplib-bab") as pool:
            futures = {pool.submit(work, dj): dj for dj in todo}
            try:
                for f in as_completed(futures):
                    yield futures[f], f.result()
            finally:
                cancel.set()
    finally:
        torch.set_num_threads(prev)


def _alpha_key(dj: Disjunct) -> bytes:
    """Cache key of a disjunct's α-CROWN bounds: its box, and whether its rows read the inputs."""
    return b"alpha" + bytes([bool(dj.Cz.any())]) + dj.lo.tobytes() + dj.hi.tobytes()


def _tight_key(dj: Disjunct) -> bytes:
    """Cache key of those bounds once tightened: ``(lower, upper, stats)`` of the tightening."""
    return _alpha_key(dj) + b"tight"


def _box_bounds(prob: Problem, dj: Disjunct, cache: dict):
    """``(spec, C, d, scale, bounds)`` of a disjunct for the branch and bound: the network the
    search runs on (``with_inputs`` when its rows read the inputs), its normalised rows
    ``C y + d`` (see :func:`_bab_disjunct`) and the box's α-CROWN bounds (cached per box)."""
    from ..bounds import compute_bounds
    from ..domains import Box

    net = prob.net
    ineq, eq, scale = _rows(dj)
    m = dj._margin
    rows, rhs = [], []
    for i in ineq:
        rows.append(-np.concatenate([dj.Cy[i], dj.Cz[i]]) / scale[i])
        rhs.append((dj.d[i] + m[i]) / scale[i])
    for i in eq:
        coef = np.concatenate([dj.Cy[i], dj.Cz[i]]) / scale[i]
        rows += [-coef, coef]
        rhs += [(dj.d[i] + m[i]) / scale[i], (m[i] - dj.d[i]) / scale[i]]
    C = np.array(rows).reshape(len(rows), net.n_outputs + net.n_inputs)
    d = np.array(rhs)
    spec = net
    if dj.Cz.any():
        spec = with_inputs(net, dj.lo)
    else:
        C = C[:, : net.n_outputs]
    key = _alpha_key(dj)
    if key not in cache:
        cache[key] = compute_bounds(spec, Box(dj.lo, dj.hi), method="alpha", progress=False)
    return spec, C, d, scale, cache[key]


def _tighten_box(prob: Problem, dj: Disjunct, cache: dict, tighten: float, *, seed: int, peers=()) -> None:
    """Tighten the α-CROWN bounds of the disjunct's box for up to ``tighten`` seconds (once per
    box, cached under :func:`_tight_key`), on a network of two or more hidden layers. While it
    runs, the bounds proven so far are tried on this disjunct and on its ``peers`` of the same
    box (a search of :data:`PROBE` seconds shared among them): a disjunct refuted there is
    recorded in ``cache`` (:func:`_refuted_early`), and once all are, the tightening stops."""
    from ..bab import tighten as tighten_bounds
    from ..bab.search import TIGHTEN_CUTS
    from ..bab.tightening import split_time

    spec, _, _, _, b = _box_bounds(prob, dj, cache)
    key, tight = _alpha_key(dj), _tight_key(dj)
    if tighten <= 0 or tight in cache or spec.depth < 2:
        return
    box = [p for p in (dj, *peers) if _alpha_key(p) == key]

    def decided(low, up):
        todo = [p for p in box if _refuted_early(cache, p) is None]
        for p, share in split_time(todo, PROBE):
            verdict, _, why = _bab_disjunct(prob, p, time_limit=share, seed=seed, cache=cache, bounds=(low, up))
            if verdict == "refuted":
                cache[(b"refuted", p.index)] = f"{why}, on bounds tightened so far"
        return all(_refuted_early(cache, p) is not None for p in box)

    cache[tight] = tighten_bounds(spec, dj.lo, dj.hi, b.lower, b.upper, time_limit=tighten, threads=_cores(),
                                  stop=decided, cuts=TIGHTEN_CUTS if CUT_SHARE > 0 else 0.0)


def _log_tightening(log: list, cache: dict, dj: Disjunct, tighten: float) -> None:
    """Log how long the tightening of the disjunct's box took of its ``tighten`` seconds, if it ran."""
    stats = cache.get(_tight_key(dj), (None, None, []))[2]
    if stats:
        took = sum(st["seconds"] for st in stats)
        end = ", stopped: the bounds so far refute the box" if stats[-1]["stopped"] else ""
        log.append(f"intermediate bounds of the box tightened by branch and bound ({took:.1f} s of {tighten:.1f}{end})")


def _bab_disjunct(prob: Problem, dj: Disjunct, *, time_limit: float, seed: int, cache: dict | None = None,
                  tighten: float = 0.0, peers=(), bounds=None, threads: int | None = None, workers=None,
                  cancel=None):
    """Branch and bound (:mod:`nnmiplib.bab`) on ``max_x min_i slack_i(x)`` of the disjunct's rows.

    Inequality ``i`` has slack ``(d_i + m_i − Cz_i z − Cy_i y) / s_i`` (``m`` the floating-point
    margin, ``s`` the row scale), an equality two. The disjunct is refuted when every node's
    bound is below ``−τ``; a point with every slack ≥ 0 is a witness candidate (checked by the
    caller). The α-CROWN intermediate bounds depend only on the box (and on whether the rows
    read the inputs), so ``cache`` keeps them for the other disjuncts and for a second search.
    ``tighten`` > 0: first spend up to that many seconds tightening them (:func:`_tighten_box`
    with ``peers``; not counted in ``time_limit``). ``bounds``: ``(lower, upper)`` to use
    instead (no tightening). ``threads``: torch threads of the search (default 1);
    ``workers``: the cores it uses (:func:`nnmiplib.bab.solve`'s; default :func:`_cores`);
    ``cancel``: a :class:`threading.Event` that stops it early
    (:func:`nnmiplib.bab.solve`). Returns ``(verdict, x, why)`` like :func:`_solve_disjunct`.
    """
    from ..bab import solve

    cache = {} if cache is None else cache
    if not dj.ops:  # no constraint: every point of the box is a witness
        return "open", (dj.lo + dj.hi) / 2, "no rows"
    spec, C, d, scale, b = _box_bounds(prob, dj, cache)
    if bounds is None and tighten > 0:
        _tighten_box(prob, dj, cache, tighten, seed=seed, peers=peers)
        if _refuted_early(cache, dj) is not None:
            return "refuted", None, _refuted_early(cache, dj)
    lower, upper = bounds if bounds is not None else _search_bounds(prob, dj, cache)[:2]
    tau = _tolerance(dj, b if spec is prob.net else dj._bounds, scale)
    strict = any(o == "<" for o in dj.ops)
    r = solve(spec, dj.lo, dj.hi, C, d, lower=lower[:-1], upper=upper[:-1], groups=np.zeros(len(C), dtype=int),
              threads=1 if threads is None else threads, workers=_cores() if workers is None else workers,
              threshold=-tau, witness=0.0 if strict else -1e-12, time_limit=max(time_limit, 0.05), refine=False,
              seed=seed, split_rows=False, cancel=cancel, cuts=CUT_SHARE)
    how = f"branch and bound: {r.status} after {r.nodes} nodes, dual bound {r.dual_bound:.3g}"
    if r.status == "proved":
        return "refuted", None, how
    return ("timeout" if r.status in ("time_limit", "node_limit") else "open"), r.x, how


def _unstable_line(prob: Problem, dj: Disjunct, cache: dict, by_bab: bool) -> str:
    """The log's count of a disjunct's unstable hidden neurons: under the cheap bounds, and for
    the branch and bound also under the bounds its search runs on (the box's α-CROWN bounds,
    or those bounds tightened; computing the α bounds here caches them for the search)."""
    line = f"disjunct {dj.index}: {_cheap_unstable(prob.net, dj)} unstable neurons under the cheap bounds"
    if not by_bab:
        return line
    lower, upper, tightened = _search_bounds(prob, dj, cache)
    n = sum(int(((lo < 0) & (up > 0)).sum()) for lo, up in zip(lower[:-1], upper[:-1]))
    return f"{line}, {n} under the {'tightened' if tightened else 'α-CROWN'} bounds"


def _cheap_unstable(net: Network, dj: Disjunct) -> int:
    """The disjunct's unstable hidden neurons under its cheap bounds (set by :func:`verify`'s first stage)."""
    return sum(int(dj._bounds.unstable(l).sum()) for l in range(net.depth))


def _search_bounds(prob: Problem, dj: Disjunct, cache: dict):
    """``(lower, upper, tightened)``: the intermediate bounds the disjunct's branch and bound runs
    on — its box's tightened bounds once :func:`_tighten_box` has cached them, else the box's
    α-CROWN bounds (:func:`_box_bounds`)."""
    tight = cache.get(_tight_key(dj))
    if tight is not None:
        return tight[0], tight[1], True
    b = _box_bounds(prob, dj, cache)[4]
    return b.lower, b.upper, False


def _refuted_early(cache: dict, dj: Disjunct) -> str | None:
    """For the log: how the tightening of ``dj``'s box refuted it on the way
    (:func:`_bab_disjunct`), or None."""
    return cache.get((b"refuted", dj.index))


def verify(query: Query, loaded: dict[str, tuple[Network, OnnxInfo]], *, timeout: float | None = None,
           solver: str = "highs", seed: int = 0, use_milp: bool = True, tighten_lp: bool = True,
           engine: str = "auto") -> VerifyResult:
    """Decide a VNN-LIB query over ReLU networks: sat (with a checked witness), unsat, unknown, timed-out.

    Order of work per disjunct of the DNF: empty input box → cheap bounds (interval ∩
    CROWN on the network extended by the constraint rows) → attacks (sampling, PGD) →
    with the remaining time split over the open disjuncts, the branch and bound over ReLU
    phases (``engine="bab"``, the default ``"auto"``: :mod:`nnmiplib.bab` on α-CROWN
    intermediate bounds computed once per input box; with a timeout and two or more hidden
    layers, a first look at each disjunct with :data:`QUICK_SHARE` of its time, then the
    box's intermediate bounds tightened by :func:`nnmiplib.bab.tightening.tighten` with
    up to :data:`TIGHTEN_SHARE` of the time left — stopped once the bounds proven so far
    refute every open disjunct, tried now and then by a :data:`PROBE`-second search — then
    the search on them; the disjuncts' searches run side by side, one per core up to
    :data:`SEARCH_WORKERS`, and a checked witness of one cancels the others) or the LP
    relaxation and then the
    MILP of the thesis's model 1.1–1.8 (``engine="mip"``). ``unsat`` only
    when every disjunct is refuted by a bound or a branch-and-bound or MILP dual bound beyond the
    threshold (plus the floating-point margin of :func:`fp_error_bound` for float
    element types) or by MILP infeasibility. Strict inequalities are relaxed to ``≤``
    for refutation (refuting the closure refutes the strict set) and kept strict when a
    witness is checked; non-strict ones (``<=``, ``>=``) admit witnesses that meet them
    with equality (:meth:`nnmiplib.vnnlib.query.LinCon.holds`).

    Raises
    ------
    ValueError
        For a query the networks cannot serve, a negative ``timeout`` or an unknown
        ``solver`` (checked before any work); ``SolverError`` if it is not installed.
    """
    import time

    from ..bounds import cheap_bounds, crown_bounds
    from ..domains import Box
    from ..mip.solvers import get_backend

    if timeout is not None and not timeout >= 0:  # 0: no time left, the answer is timed-out
        raise ValueError(f"timeout must be non-negative seconds or None, got {timeout!r}")
    if engine not in ("auto", "bab", "mip"):
        raise ValueError(f"engine must be 'auto', 'bab' or 'mip', got {engine!r}")
    get_backend(solver)  # an unknown or uninstalled solver is an error before any work, not at the MILP stage
    t0 = time.perf_counter()
    dl = _Deadline(timeout)
    prob = build_problem(query, loaded)
    res = VerifyResult("unknown", problem=prob)
    rng = np.random.default_rng(seed)
    log = res.log
    net = prob.net
    open_ = []
    cache: dict = {}  # bounds per box (bytes keys), disjuncts refuted while tightening ((b"refuted", index))
    # -- stage 1: empty boxes and cheap bounds
    for dj in prob.disjuncts:
        if dj.empty:
            dj.status, dj.how = "refuted", "empty input region"
            continue
        box = Box(dj.lo, dj.hi)
        key = dj.lo.tobytes() + dj.hi.tobytes()
        if key not in cache:
            cache[key] = cheap_bounds(net, box)
        b = dj._bounds = cache[key]
        margin = np.zeros(len(dj.ops))
        if prob.dtype != "real":
            E = fp_error_bound(net, b.upper, dj.lo, dj.hi, prob.dtype)
            margin = np.abs(dj.Cy) @ E
        dj._margin = margin
        spec = None
        if dj.ops and dj.Cy.any():
            spec_net = Network(list(net.weights[:-1]) + [dj.Cy @ net.weights[-1]],
                               list(net.biases[:-1]) + [dj.Cy @ net.biases[-1]])
            spec = crown_bounds(spec_net, box)
        rlo, rhi = _min_max_rows(dj, net, spec, b.lower[-1], b.upper[-1])
        if _refuted_by_range(dj, rlo, rhi, margin):
            dj.status, dj.how = "refuted", "bounds"
        else:
            dj._room = _room(dj, rlo, rhi, margin)
            open_.append(dj)
        if dl.over():
            return _finish(res, "timed-out", t0)
    log.append(f"bounds: {len(prob.disjuncts) - len(open_)}/{len(prob.disjuncts)} disjuncts refuted")
    # -- stage 2: attacks
    for dj in open_:
        z = _attack(prob, dj, rng)
        if z is not None:
            res.values = check_witness(prob, z, (dj.lo, dj.hi))
            log.append(f"attack found a witness for disjunct {dj.index}")
            return _finish(res, "sat", t0)
        if dl.over():
            return _finish(res, "timed-out", t0)
    # -- stage 3: LP relaxation, stage 4: MILP (again on the disjuncts its share of the time cut
    # short, while time is left: a disjunct closed early leaves its share to the others)
    # the branch and bound's root is α-CROWN on α-CROWN intermediate bounds, at least as tight as
    # the LP relaxation on the cheap bounds and far cheaper (256x6 MNIST: 0.5 s against 7 s per
    # disjunct), so the LP stage runs only before the thesis's MILP or alone
    # with a timeout, the branch and bound first takes a short look at every open disjunct
    # (QUICK_SHARE of the time), then — on a network with two or more hidden layers — the box
    # of the disjuncts still open gets its intermediate bounds tightened (TIGHTEN_SHARE of what
    # is left) before the search goes on with them
    stages = ["lp", "milp"] if use_milp and engine == "mip" else (["milp"] if use_milp else ["lp"])
    if stages == ["milp"] and engine != "mip" and net.depth >= 2 and dl.end is not None:
        stages = ["quick", "milp"]
    open_.sort(key=lambda dj: dj._room)
    retries, tightened = 0, "quick" not in stages  # the box is tightened once, after the first look
    while stages:
        stage = stages.pop(0)
        by_bab = stage in ("quick", "milp") and engine != "mip"
        stage_name = ("branch and bound, first look" if stage == "quick" else "branch and bound") if by_bab else stage
        still, cut = [], []
        tighten = 0.0
        if stage == "milp" and not tightened:
            tighten, tightened = TIGHTEN_SHARE * dl.left(), True

        def settle(dj, verdict, x, why, stage_name=stage_name, cut=cut, still=still) -> bool:
            """Record a disjunct's verdict of this stage; True once a checked witness makes it sat."""
            log.append(f"disjunct {dj.index}, {stage_name}: {verdict} ({why})")
            if verdict == "timeout":
                cut.append(dj)
            if verdict == "refuted":
                dj.status, dj.how = "refuted", f"{stage_name}: {why}"
                return False
            if x is not None:
                cand = _attack(prob, dj, rng, n_samples=0, steps=20, restarts=1, starts=x[None])
                if cand is not None:
                    res.values = check_witness(prob, cand, (dj.lo, dj.hi))
                    log.append(f"{stage_name} solution of disjunct {dj.index} checked in float64 and onnxruntime")
                    return True
            still.append(dj)
            return False

        side = _workers(len(open_)) if by_bab else 1
        if side > 1:  # the stage's searches side by side, one torch thread each (_workers)
            if tighten:
                _tighten_box(prob, open_[0], cache, tighten, seed=seed, peers=open_[1:])
                _log_tightening(log, cache, open_[0], tighten)
            todo = []
            for dj in open_:
                if dl.over():
                    return _finish(res, "timed-out", t0)
                if _refuted_early(cache, dj) is not None:
                    settle(dj, "refuted", None, _refuted_early(cache, dj))
                else:
                    log.append(_unstable_line(prob, dj, cache, by_bab=True))
                    todo.append(dj)
            runs = _side_by_side(prob, todo, dl, cache, seed=seed, workers=side,
                                 share=QUICK_SHARE if stage == "quick" else 1.0)
            with closing(runs):  # a witness ends the stage: closing cancels the searches still running
                for dj, (verdict, x, why) in runs:
                    if settle(dj, verdict, x, why):
                        return _finish(res, "sat", t0)
            kept = {id(dj) for dj in still}
            still = [dj for dj in open_ if id(dj) in kept]  # in the stage's order, not the order they ended
        for i, dj in enumerate(open_ if side == 1 else ()):
            if dl.over():
                return _finish(res, "timed-out", t0)
            budget = (dl.left() - tighten) / max(1, len(open_) - i) if stage != "lp" else dl.left()
            if stage == "quick":
                budget *= QUICK_SHARE
            if not (by_bab and tighten):  # with a tightening to come, the line follows it
                log.append(_unstable_line(prob, dj, cache, by_bab))
            if by_bab and _refuted_early(cache, dj) is not None:
                verdict, x, why = "refuted", None, _refuted_early(cache, dj)
            elif by_bab:
                verdict, x, why = _bab_disjunct(prob, dj, time_limit=budget, seed=seed, cache=cache, tighten=tighten,
                                                peers=open_[i + 1:])
                if tighten:
                    _log_tightening(log, cache, dj, tighten)
                    log.append(_unstable_line(prob, dj, cache, by_bab))
                tighten = 0.0  # once: the other disjuncts of the box find the tightened bounds in the cache
            else:
                if stage == "milp" and tighten_lp and _cheap_unstable(net, dj) > TIGHTEN_ABOVE:
                    dj._bounds = _tightened(net, dj, cache, 0.3 * budget)
                    budget = dl.left() / max(1, len(open_) - i)
                verdict, x, why = _solve_disjunct(prob, dj, dj._bounds, dj._margin, relax=(stage == "lp"),
                                                  time_limit=budget, solver=solver)
            if settle(dj, verdict, x, why):
                return _finish(res, "sat", t0)
        log.append(f"{stage_name}: {len(open_) - len(still)} more disjuncts refuted, {len(still)} open")
        if (stage == "milp" and cut and len(cut) == len(still) and dl.end is not None
                and dl.left() > RETRY_ABOVE and retries < MAX_RETRIES):
            retries += 1
            stages.append("milp")  # every open disjunct was cut by its share: the time left goes to them
            log.append(f"{stage_name}: {dl.left():.1f} s left, again on the {len(cut)} disjuncts cut short")
        open_ = still
    if not open_:
        return _finish(res, "unsat", t0)
    return _finish(res, "timed-out" if dl.over() else "unknown", t0)


def _tightened(net: Network, dj: Disjunct, cache: dict, time_limit: float):
    """LP bound tightening (Algorithm 3, :mod:`nnmiplib.bounds.bounder`) of the disjunct's box, cached."""
    from ..bounds import compute_bounds
    from ..domains import Box

    key = b"lp" + dj.lo.tobytes() + dj.hi.tobytes()
    if key not in cache:
        if not time_limit > 0.05:
            return dj._bounds
        try:
            cache[key] = compute_bounds(net, Box(dj.lo, dj.hi), "lp", initial=dj._bounds, time_limit=time_limit,
                                        progress=False)
        except Exception as exc:  # noqa: BLE001 -- tightening is an optimisation only
            import logging

            logging.getLogger(__name__).warning("LP bound tightening failed (%s); using cheap bounds", exc)
            return dj._bounds
    return cache[key]


def _finish(res: VerifyResult, status: str, t0: float) -> VerifyResult:
    import time

    res.status = status
    if status == "sat" and res.values is None:  # the witness failed its final check
        res.status = "unknown"
    res.time = time.perf_counter() - t0
    return res
