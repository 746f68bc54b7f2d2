"""Chapter 2 — activation bounds: presets, the cached grid of bound runs, and the tables.

Every (net, ε, method, limits) run is one :class:`~nnmiplib.bounds.Bounds` file under
``results_dir()/ch2/<key>.npz`` (key = hash of the parameters and the rounded net's
digest), so re-rendering never recomputes. The runs are the cells of three
:class:`nnmiplib.experiments.Grid` s (:func:`grids`, run in order by ``run(cfg, n_jobs)``:
the cheap and LP runs, then the MILP runs that start from them, then the node probe),
whose JSON records hold the per-run summaries; the figures and verdicts
(:mod:`nnmiplib.study.ch2_report`) read both.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging

import numpy as np

from ..bounds import source_side
from ..paths import results_dir
from .common import Preset, check_scale

log = logging.getLogger(__name__)

__all__ = [
    "ARCHS",
    "MILP_OPTIONS",
    "SOLVED_PREFIXES",
    "bab_probe_cell",
    "bounds_cell",
    "cells",
    "crown_vs_interval",
    "gap_frame",
    "get_bounds",
    "grids",
    "layer_gap_frame",
    "milp_cells",
    "milp_evidence",
    "preset",
    "probe_cell",
    "probe_frame",
    "run",
    "runs_frame",
    "stable_frame",
    "time_frame",
    "timelimit_frame",
]

ARCHS = ("3000x1", "800x2", "200x5", "100x10")
CHEAP = ("interval", "crown")
SOLVED_PREFIXES = ("lp", "milp")  # a side whose source starts so was bounded by the solver (not a fallback)
VERSION = "ch2-v3"  # v3: 50-epoch nets; LP on every neuron at quick; MILP sample seeded by it; Bounder MILP budget fix
#: HiGHS options of every MILP bound run: a bound needs the solver's dual bound only, and the primal
#: heuristics' sub-MIPs (RINS, RENS) took 14 of a 25 s solve on the 100x10 L1 net (ε = 0.01, layer 1),
#: which then never left its root node; with them off it branched within the same 25 s (measured)
MILP_OPTIONS = {"mip_heuristic_effort": 0.0, "mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
                "mip_heuristic_run_root_reduced_cost": False}
_ALL_NETS = [(a, "none", 0.0) for a in ARCHS] + [(a, r, lam) for a in ARCHS for r in ("l1", "l2")
                                                  for lam in (1e-4, 2e-4, 3e-4)]


def preset(scale: str = "quick", *, n_jobs: int = 1, seed: int = 0, solver: str = "highs",
           eps=None, lp_time=None, milp_time=None, tl_limits=None) -> Preset:
    """Chapter-2 parameters at ``scale`` (knobs left ``None`` follow the scale).

    ``nets`` get interval, crown and LP bounds (the LP on every neuron it bounds);
    ``milp_nets`` (a subset) the MILP comparison: every neuron at ``paper`` and ``smoke``;
    at ``quick`` ``milp_max_neurons`` neurons per layer, starting from the LP run's bounds.
    The time-limit study (Figs 2.13–2.15) reruns ``tl_nets`` at ε = ``tl_eps`` with total
    budgets ``tl_limits`` (``tl_mode="total"``) or, at ``quick``, the MILP sample with
    per-solve limits ``tl_limits`` (``"per-solve"``). ``probe`` re-solves a few of the MILP
    comparison's solves and records their branch-and-bound node counts.
    """
    check_scale(scale)
    dev: list[str] = []
    probe = None
    milp_k, milp_seeded, tl_mode, milp_min = None, False, "total", None
    if scale == "paper":
        nets = list(_ALL_NETS)
        milp_nets = list(nets)
        eps_d = (1e-4, 1e-3, 1e-2, 0.04, 1e-1)
        lp_d, lp_n, milp_d, milp_n = 3600.0, 60.0, 3600.0, 60.0
        tl_d = tuple(60.0 * m for m in range(20, 100, 10))
        dev.append("ε = 0.04 is added to the thesis's grid {1e-4, 1e-3, 1e-2, 1e-1} (SPEC §6: the time-limit "
                   "study uses it).")
        dev.append("The thesis states no time limit for the main runs: we give each (net, ε) run T = 1 h "
                   "(60 s per solve) for LP and for MILP.")
    elif scale == "quick":
        nets = [(a, r, 2e-4) for a in ("800x2", "200x5", "100x10") for r in ("l1", "l2")]
        milp_nets = [(a, "l1", 2e-4) for a in ("800x2", "200x5", "100x10")]
        eps_d = (0.04, 0.1)
        lp_d, lp_n, milp_d, milp_n = None, 60.0, None, 20.0
        milp_k, milp_seeded = 1, True
        tl_d, tl_mode = (5.0, 20.0), "per-solve"
        probe = {"nets": [("800x2", "l1", 2e-4), ("200x5", "l1", 2e-4), ("100x10", "l1", 2e-4)], "eps": 0.1}
        dev += [
            ("Nets: L1 and L2 at λ = 2·10⁻⁴ of 800x2, 200x5 and 100x10 (6 of the thesis's 28, each trained exactly "
             "as at paper scale). Measured LP cost per net on this machine (every neuron, 2 processes): 17 CPU-s "
             "for 800x2 L1, 150 for 100x10 L1, 280 for 100x10 L2; the unregularised nets cost 400–500 CPU-s each "
             "(all their neurons are unstable) and 3000x1's 20 logit LPs 10 s each, so they are left out at this "
             "scale: Figs 2.5 and the unpenalised half of F2.5 are not measured."),
            "ε ∈ {0.04, 0.1} (the time-limit study's radius and the thesis's largest) instead of {10⁻⁴, …, 10⁻¹}.",
            ("LP: every neuron the LP bounds (those the cheap bounds leave unstable, and every logit), ≤ 60 s per "
             "solve, no total budget: every run finishes."),
            ("MILP comparison (RO gaps, Figs 2.4–2.8): the L1 nets only, 1 neuron per layer (evenly spaced among the "
             "neurons the LP left unstable, and 1 logit), starting from the LP run's bounds (so the earlier layers "
             "keep LP bounds but for the sampled neurons), ≤ 20 s per solve, primal heuristics off. Measured: on "
             "these nets HiGHS spends 10–60 s in the root node's cutting loop, so many solves end at the limit with "
             "the root's dual bound; the 'MILP evidence' table counts them, and a finding that rests on them is "
             "'undecided at this scale'. MILP times exclude the LP that seeded them."),
            ("Time-limit study (Figs 2.13–2.15): 200x5 L1 and L2 at ε = 0.04, the same sampled neurons with MILP "
             "per-solve limits of 5 and 20 s instead of total budgets of 20–90 min; the LP runs to completion."),
            ("Node probe: one neuron per layer of each MILP-compared net at ε = 0.1 is solved again (maximum only, "
             "cold start, the same model and limit) to record its branch-and-bound node count, which the Bounder "
             "does not keep."),
        ]
    else:
        nets = [("200x5", "l1", 2e-4), ("200x5", "l2", 2e-4), ("800x2", "none", 0.0)]
        milp_nets = list(nets)
        eps_d = (0.01, 0.1)
        lp_d, lp_n, milp_d, milp_n = None, 0.3, 2.0, 0.5
        milp_min = 0.05
        tl_d = (1.0, 2.0)
        probe = {"nets": [("200x5", "l1", 2e-4)], "eps": 0.1}
        dev += [("Smoke: same-depth stand-in nets (800x2 → 32x2, 200x5 → 24x5; 2 epochs on 6 000 images): "
                "200x5 with L1 and L2, 800x2 without penalty."),
                ("ε ∈ {0.01, 0.1}; LP without total budget (≤ 0.3 s per solve), MILP T = 2 s per run with "
                "per-solve limits down to 0.05 s; "
                "time-limit study T ∈ {1, 2} s."),
                "Numbers at this scale only exercise the code; the verdicts are not evidence."]
    params = {"nets": nets, "milp_nets": milp_nets, "eps": tuple(eps or eps_d),
              "lp_time": lp_time if lp_time is not None else lp_d, "lp_neuron": lp_n,
              "milp_time": milp_time or milp_d, "milp_neuron": milp_n, "milp_max_neurons": milp_k,
              "milp_seeded": milp_seeded, "milp_min_solve": milp_min,
              "milp_options": dict(MILP_OPTIONS) if solver == "highs" else None,
              "tl_nets": [("200x5", "l1", 2e-4), ("200x5", "l2", 2e-4)], "tl_eps": 0.04,
              "tl_limits": tuple(tl_limits or tl_d), "tl_mode": tl_mode, "probe": probe,
              "solver": solver, "n_jobs": n_jobs, "seed": seed,
              "train_scale": scale, "cheap_scale": scale,
              "cheap_nets": [(a, r, 2e-4 if r != "none" else 0.0) for a in ARCHS for r in ("none", "l1", "l2")]
              if scale != "smoke" else list(nets)}
    dev.append("Also shown (not in the thesis): interval arithmetic and crown (DeepPoly/CROWN back-substitution) "
               "bounds, and the share of neurons each method proves stable.")
    return Preset(scale, params, dev)


# ------------------------------------------------------------------ one run
@functools.lru_cache(maxsize=64)
def _net(arch, reg, lam, train_scale, seed, eps):
    """The zoo net rounded at ε (memoised: networks are immutable values)."""
    from ..prune import round_weights
    from ..train import zoo_net

    net = zoo_net(arch, reg, lam, scale=train_scale, seed=seed)
    return round_weights(net, eps)


def _key(params: dict, digest: str) -> str:
    blob = json.dumps({"p": params, "net": digest, "v": VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def get_bounds(arch, reg, lam, train_scale, seed, eps, method, time_limit=None, neuron_limit=None,
               solver="highs", compute=True, min_solve=None, max_neurons=None, seed_lp=None, options=None):
    """The Bounds of the rounded zoo net for one run, from the cache or computed (and cached).

    ``max_neurons``: bound at most that many neurons per layer. ``seed_lp`` (MILP only):
    ``[lp_time, lp_neuron]`` of an LP run of the same net whose bounds the MILP starts from,
    solving only neurons that LP run bounded by a solve. ``options``: the solver's own options.
    Returns ``(bounds, net, round_stats)``; ``bounds`` is None if not cached and ``compute`` is False.
    """
    from ..bounds import Bounds, compute_bounds
    from ..domains import unit_box

    net, rstats = _net(arch, reg, lam, train_scale, seed, eps)
    params = {"arch": arch, "reg": reg, "lam": lam, "train_scale": train_scale, "seed": seed, "eps": eps, "method": method,
              "time_limit": time_limit, "neuron_limit": neuron_limit, "solver": solver}
    solving = method in ("lp", "milp")
    if min_solve is not None and method == "milp":
        params["min_solve"] = min_solve
    if max_neurons is not None and solving:
        params["max_neurons"] = int(max_neurons)
    if seed_lp is not None and method == "milp":
        params["seed_lp"] = list(seed_lp)
    if options and method == "milp":
        params["options"] = dict(options)
    path = results_dir() / "ch2" / f"{_key(params, net.digest())}.npz"
    if path.exists():
        try:
            return Bounds.load(path, net=net), net, rstats
        except ValueError as exc:
            log.warning("ignoring unreadable cache %s: %s", path, exc)
    if not compute:
        return None, net, rstats
    kw = {}
    if solving:
        kw = {"time_limit": time_limit, "per_neuron_time_limit": neuron_limit, "solver": solver, "n_jobs": 1, "progress": False}
        if min_solve is not None and method == "milp":
            kw["min_solve_time"] = min_solve
        if max_neurons is not None:
            kw["max_neurons"] = int(max_neurons)
        if options and method == "milp":
            kw["solver_options"] = dict(options)
        if seed_lp is not None and method == "milp":
            # the MILP starts from the LP run's bounds and solves only neurons that run bounded,
            # so every RO gap pairs an LP and a MILP bound of the same neuron
            lp, _, _ = get_bounds(arch, reg, lam, train_scale, seed, eps, "lp", *seed_lp, solver=solver)
            kw["initial"] = lp
            kw["restrict"] = [np.flatnonzero([_solved(c) for c in lp.source[l]]) for l in range(lp.n_layers)]
    b = compute_bounds(net, unit_box(net.n_inputs), method=method, **kw)
    b.save(path)
    return b, net, rstats


def _codes(b, method: str) -> dict:
    """How the sides of layers ≥ 1 were bounded: proven by a finished solve, at a time limit, a fallback, or not solved."""
    out = {"proven": 0, "time_limit": 0, "fallback": 0, "other": 0}
    for l in range(1, b.n_layers):
        for i in (0, 1):
            for c in source_side(b.source[l], i):
                if c.startswith("fallback"):
                    out["fallback"] += 1
                elif c in ("milp", "lp") and method in ("lp", "milp"):
                    out["proven"] += 1
                elif c in ("milp-dual", "lp-timeout"):
                    out["time_limit"] += 1
                else:
                    out["other"] += 1
    return out


def bounds_cell(arch, reg, lam, train_scale, seed, eps, method, time_limit, neuron_limit, solver, study="main",
                min_solve=None, max_neurons=None, seed_lp=None, options=None) -> dict:
    """Grid cell: compute (or load) one run and return its JSON summary (``study`` only labels it)."""
    b, net, rstats = get_bounds(arch, reg, lam, train_scale, seed, eps, method, time_limit, neuron_limit, solver,
                                min_solve=min_solve, max_neurons=max_neurons, seed_lp=seed_lp, options=options)
    hidden = list(range(net.depth))
    solved = [float(np.mean([_solved(s) for s in b.source[l]])) for l in range(b.n_layers)]
    n_solved = int(sum(np.sum(b.time[l] > 0) for l in range(1, b.n_layers)))
    return {"time": b.total_time, "stable_share": b.stable_share(), "stable": b.stable_counts(),
            "width": [float(b.width(l).mean()) for l in range(b.n_layers)],
            "deep_width": float(b.width(hidden[-1]).mean()) if hidden else float("nan"),
            "solved_share": solved, "zeroed": float(rstats["fraction"]), "n_solved": n_solved,
            "time_per_neuron": float(sum(b.time[l].sum() for l in range(b.n_layers)) / n_solved) if n_solved else None,
            "codes": _codes(b, method), "digest": net.digest()}


def _solved(code: str) -> bool:
    """Both sides of a neuron's source came from a solver run (not a cheap bound or a fallback)."""
    parts = str(code).split("/") if "/" in str(code) else [str(code)] * 2
    return all(p.startswith(SOLVED_PREFIXES) for p in parts)


def _milp_kw(cfg: Preset, T=None, N=None) -> dict:
    """Parameters of a MILP-comparison run (the main one, or the time-limit study's with ``T``/``N``)."""
    kw = {"time_limit": cfg.milp_time if T is None and N is None else T,
          "neuron_limit": cfg.milp_neuron if N is None and T is None else N,
          "min_solve": cfg.milp_min_solve, "options": cfg.milp_options}
    if cfg.milp_max_neurons is not None:
        kw["max_neurons"] = cfg.milp_max_neurons
    if cfg.milp_seeded:
        kw["seed_lp"] = [cfg.lp_time, cfg.lp_neuron]
    return kw


def cells(cfg: Preset) -> list[dict]:
    """The runs that need no other run first: interval, crown and LP of every net and ε, and
    the MILP runs that start from the cheap bounds (see :func:`milp_cells` for the others)."""
    out = []
    base = {"train_scale": cfg.train_scale, "seed": cfg.seed, "solver": cfg.solver, "study": "main"}
    for arch, reg, lam in cfg.nets:
        for eps in cfg.eps:
            for m in CHEAP:
                out.append(dict(base, arch=arch, reg=reg, lam=lam, eps=eps, method=m, time_limit=None,
                                neuron_limit=None))
            out.append(dict(base, arch=arch, reg=reg, lam=lam, eps=eps, method="lp", time_limit=cfg.lp_time,
                            neuron_limit=cfg.lp_neuron))
    if cfg.tl_mode == "per-solve":  # the study's LP runs (ε = tl_eps) when the main grid lacks them
        for arch, reg, lam in cfg.tl_nets:
            if (arch, reg, lam) not in cfg.nets or cfg.tl_eps not in cfg.eps:
                out.append(dict(base, study="timelimit", arch=arch, reg=reg, lam=lam, eps=cfg.tl_eps, method="lp",
                                time_limit=cfg.lp_time, neuron_limit=cfg.lp_neuron))
    return out + ([] if cfg.milp_seeded else milp_cells(cfg))


def milp_cells(cfg: Preset) -> list[dict]:
    """The MILP comparison and the time-limit study (run after :func:`cells` when seeded by the LP runs)."""
    out = []
    base = {"train_scale": cfg.train_scale, "seed": cfg.seed, "solver": cfg.solver, "study": "main"}
    for arch, reg, lam in cfg.milp_nets:
        for eps in cfg.eps:
            out.append(dict(base, arch=arch, reg=reg, lam=lam, eps=eps, method="milp", **_milp_kw(cfg)))
    for arch, reg, lam in cfg.tl_nets:
        for T in cfg.tl_limits:
            tl = dict(base, study="timelimit", arch=arch, reg=reg, lam=lam, eps=cfg.tl_eps)
            if cfg.tl_mode == "total":
                for m in ("lp", "milp"):
                    out.append(dict(tl, method=m, time_limit=T, neuron_limit=None, min_solve=cfg.milp_min_solve,
                                    options=cfg.milp_options if m == "milp" else None))
            elif not (cfg.tl_eps in cfg.eps and (arch, reg, lam) in cfg.milp_nets and T == cfg.milp_neuron):
                out.append(dict(tl, method="milp", **_milp_kw(cfg, N=T)))  # (else the main run is this run)
    return out


def _probe_targets(arch, reg, lam, train_scale, seed, eps, solver, milp: dict):
    """The probed solves of the MILP run ``milp``: per layer ≥ 1 the first neuron it bounded by a
    solve, with the bounds its model had (``cur``: the earlier layers' final bounds, the neuron's
    own layer those it started from). Returns ``(net, domain, [(m, j, cur), …])``."""
    from ..bounds import cheap_bounds
    from ..domains import unit_box

    b, net, _ = get_bounds(arch, reg, lam, train_scale, seed, eps, "milp", solver=solver, **milp)
    seed_lp = milp.get("seed_lp")
    start = get_bounds(arch, reg, lam, train_scale, seed, eps, "lp", *seed_lp, solver=solver)[0] if seed_lp else None
    dom = unit_box(net.n_inputs)
    out = []
    for m in range(1, b.n_layers):
        hi_src = source_side(b.source[m], 1)
        js = np.flatnonzero(np.char.startswith(hi_src.astype(str), "milp") & (b.time[m] > 0))
        if not js.size:
            continue
        ref = start if start is not None else cheap_bounds(net, dom)  # what the run started layer m from
        cur = type("Cur", (), {})()
        cur.lower = [*b.lower[:m], ref.lower[m], *b.lower[m + 1:]]
        cur.upper = [*b.upper[:m], ref.upper[m], *b.upper[m + 1:]]
        cur.run_bound = float(b.upper[m][int(js[0])])
        out.append((m, int(js[0]), cur))
    return net, dom, out


def probe_cell(arch, reg, lam, train_scale, seed, eps, solver, milp: dict) -> dict:
    """Branch-and-bound node counts of the MILP comparison's solves (the Bounder keeps none).

    For each layer ≥ 1 of the MILP run ``milp`` (the keyword arguments of :func:`get_bounds`),
    the first neuron it bounded by a solve is maximised again over the same model — the
    earlier layers with that run's final bounds, the neuron's own with the bounds it started
    from — with the same per-solve limit, solver options and target, from a cold start (the
    Bounder warm-starts within a layer, so the probe is if anything slower to leave the root).
    """
    from ..mip.encode import encode
    from ..mip.solvers import get_backend

    net, dom, targets = _probe_targets(arch, reg, lam, train_scale, seed, eps, solver, milp)
    limit = milp.get("neuron_limit")
    out = []
    for m, j, cur in targets:
        model = encode(net, dom, cur, relax=False, stop_layer=m)
        be = get_backend(solver)(model, threads=1, mip_gap=1e-6, options=dict(milp.get("options") or {}))
        c = np.zeros(model.n_vars)
        c[model.nets[0].a[m][j]] = 1.0
        be.set_objective(c, "max")
        sol = be.solve(limit, objective_target=float(cur.upper[m][j]))
        out.append({"layer": m, "neuron": j, "status": sol.status.value, "nodes": int(sol.nodes),
                    "dual_bound": sol.dual_bound, "start_bound": float(cur.upper[m][j]),
                    "run_bound": cur.run_bound, "seconds": float(sol.time), "limit": limit})
    return {"solves": out}


def bab_probe_cell(arch, reg, lam, train_scale, seed, eps, solver, milp: dict) -> dict:
    """The node probe's MILPs solved by the library's branch and bound instead
    (:func:`nnmiplib.bab.neuron_bounds`): the same model — every node keeps the same Big-M
    constants, so a finished search is the MILP bound itself — and the same per-solve limit.
    Its dual bound is valid at every moment; ``bab_bound`` is it clipped by the bound the
    neuron started from (the MIP has that as its column bound)."""
    from ..bab import neuron_bounds

    net, dom, targets = _probe_targets(arch, reg, lam, train_scale, seed, eps, solver, milp)
    limit = milp.get("neuron_limit")
    out = []
    for m, j, cur in targets:
        r = neuron_bounds(net, dom.lo, dom.hi, cur.lower, cur.upper, m, [j], time_limit=limit, sides=("upper",))
        out.append({"layer": m, "neuron": j, "bab_status": r["status"][0][1], "bab_nodes": int(r["nodes"][0][1]),
                    "bab_bound": float(min(r["upper"][0], cur.upper[m][j])), "best_point": float(r["best_upper"][0]),
                    "bab_seconds": float(r["seconds"][0][1])})
    return {"solves": out}


def _cell_digest(params: dict) -> str:
    """Key material of a grid cell: the digest of the rounded net it bounds (a retrained net is a new cell)."""
    net, _ = _net(params["arch"], params["reg"], params["lam"], params["train_scale"], params["seed"], params["eps"])
    return net.digest()


def _train_all(cfg: Preset) -> None:
    """Train (or load) every net in this process first, so pool workers only read the cache."""
    from ..train import zoo_net

    for arch, reg, lam in list(cfg.nets) + list(cfg.milp_nets) + list(cfg.tl_nets):
        zoo_net(arch, reg, lam, scale=cfg.train_scale, seed=cfg.seed)


def _probe_cells(cfg: Preset) -> list[dict]:
    if not cfg.probe:
        return []
    return [{"arch": a, "reg": r, "lam": lam, "train_scale": cfg.train_scale, "seed": cfg.seed, "eps": cfg.probe["eps"],
             "solver": cfg.solver, "milp": _milp_kw(cfg)} for a, r, lam in cfg.probe["nets"]]


def grids(cfg: Preset) -> dict:
    """The chapter's grids, run in this order: ``bounds`` (cheap, LP, unseeded MILP), ``milp``
    (the runs seeded by the LP runs, and the time-limit study), ``probe`` and ``bab-probe`` (the
    probe's MILPs by the branch and bound)."""
    from ..experiments import Grid

    s = cfg.scale
    return {"bounds": Grid(f"ch2-{s}", bounds_cell, cells(cfg), version=VERSION, key_extra=_cell_digest),
            "milp": Grid(f"ch2-{s}-milp", bounds_cell, milp_cells(cfg) if cfg.milp_seeded else [], version=VERSION,
                         key_extra=_cell_digest),
            "probe": Grid(f"ch2-{s}-probe", probe_cell, _probe_cells(cfg), version=VERSION, key_extra=_cell_digest),
            "bab-probe": Grid(f"ch2-{s}-bab-probe", bab_probe_cell, _probe_cells(cfg), version=VERSION,
                              key_extra=_cell_digest)}


def run(cfg: Preset, n_jobs: int | None = None, progress: bool = False, scheduler=None):
    """Run (or load) every cell; returns the bound runs as a DataFrame (see :func:`runs_frame`)."""
    import pandas as pd

    _train_all(cfg)
    frames = []
    for name, grid in grids(cfg).items():
        res = grid.run(n_jobs=n_jobs or cfg.n_jobs, scheduler=scheduler, progress=progress)
        for f in res.failed[:3]:
            log.warning("ch2 %s cell failed: %s", name, f)
        if name not in ("probe", "bab-probe"):
            frames.append(res.frame())
    frames = [f for f in frames if len(f)]
    return runs_frame(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())


def compute(scale: str, n_jobs: int = 1, scheduler=None, time_limit=None, progress=True, **overrides):
    """The ``nnmiplib run 2`` hook: compute every cell of the chapter into the cache.

    ``time_limit`` is not used: chapter 2's limits are part of its grid (they are the experiment).
    """
    cfg = preset(scale, n_jobs=n_jobs, **overrides)
    run(cfg, n_jobs=n_jobs, progress=progress, scheduler=scheduler)
    return cfg


def runs_frame(df):
    """One row per finished run: study, arch, reg, lam, eps, method, T, time, stable_share, widths, …"""
    if df.empty:
        return df
    df = df.rename(columns={"time_limit": "T"})
    df["solved"] = [float(np.mean(s[1:])) if len(s) > 1 else np.nan for s in df["solved_share"]]
    return df


def _load(cfg, row, method, T=None, N=None, milp=False):
    """The cached Bounds of one run (None if not run); ``milp=True``: the MILP comparison's run."""
    kw = _milp_kw(cfg, T, N) if milp else {"time_limit": T, "neuron_limit": N}
    b, net, _ = get_bounds(row["arch"], row["reg"], row["lam"], cfg.train_scale, cfg.seed, row["eps"], method,
                           solver=cfg.solver, compute=False, **kw)
    return b, net


def _pair(cfg, row):
    """The (interval, crown, LP, MILP) bounds of a MILP-compared (net, ε), from the cache."""
    got = {m: _load(cfg, row, m)[0] for m in CHEAP}
    got["lp"] = _load(cfg, row, "lp", cfg.lp_time, cfg.lp_neuron)[0]
    got["milp"] = _load(cfg, row, "milp", milp=True)[0]
    return got


def _mask(lp, milp, l):
    """Neurons of layer l bounded by the solver in both the LP and the MILP run."""
    return np.array([_solved(a) and _solved(b) and t > 0 for a, b, t in zip(lp.source[l], milp.source[l], milp.time[l])],
                    dtype=bool)


def _compared(cfg):
    """(row, bounds) of every MILP-compared (net, ε) whose runs are all cached."""
    for arch, reg, lam in cfg.milp_nets:
        if (arch, reg, lam) not in cfg.nets:
            continue
        for eps in cfg.eps:
            row = {"arch": arch, "reg": reg, "lam": lam, "eps": eps}
            b = _pair(cfg, row)
            if all(v is not None for v in b.values()):
                yield row, b


def gap_frame(cfg: Preset):
    """Mean RO gap (SPEC §2) per (net, ε, method ∈ interval/crown/LP) against the MILP bounds.

    Averaged over the neurons of affine layers l ≥ 1 (layer 0 is exact for every method)
    that both the LP and the MILP run bounded (the MILP run solved them), lower and upper bounds together.
    """
    import pandas as pd

    from ..bounds import ro_gap

    rows = []
    for row, b in _compared(cfg):
        lp, milp = b["lp"], b["milp"]
        for m in ("interval", "crown", "lp"):
            g = ro_gap(b[m], milp)
            vals = [g[l][:, _mask(lp, milp, l)] for l in range(1, milp.n_layers)]
            flat = np.concatenate([v.ravel() for v in vals]) if vals else np.zeros(0)
            rows.append({**row, "method": m, "ro_gap": float(flat.mean()) if flat.size else np.nan,
                         "ro_gap_median": float(np.median(flat)) if flat.size else np.nan,
                         "n_compared": int(flat.size // 2)})
    return pd.DataFrame(rows)


def layer_gap_frame(cfg: Preset):
    """Mean RO gap of the lower bounds per layer (Fig 2.7), averaged over nets and ε of an architecture."""
    import pandas as pd

    from ..bounds import ro_gap

    rows = []
    for row, b in _compared(cfg):
        for m in ("interval", "crown", "lp"):
            g = ro_gap(b[m], b["milp"], "lower")
            for l in range(1, b["milp"].n_layers):
                mk = _mask(b["lp"], b["milp"], l)
                if mk.any():
                    rows.append({"arch": row["arch"], "reg": row["reg"], "eps": row["eps"], "method": m, "layer": l,
                                 "last": l == b["milp"].n_layers - 1, "ro_gap_lower": float(g[l][mk].mean())})
    return pd.DataFrame(rows)


def time_frame(cfg: Preset):
    """LP and MILP seconds per neuron (max and min together) on the neurons both bounded, per MILP-compared (net, ε).

    ``capped``: share of those neurons whose MILP solves used ≥ 90 % of their limits (then the
    MILP time, and the MILP/LP ratio, are lower estimates).
    """
    import pandas as pd

    rows = []
    for row, b in _compared(cfg):
        lp_t, milp_t, caps = [], [], []
        for l in range(1, b["milp"].n_layers):
            mk = _mask(b["lp"], b["milp"], l)
            lp_t += list(b["lp"].time[l][mk])
            milp_t += list(b["milp"].time[l][mk])
        lim = cfg.milp_neuron
        caps = [t >= 0.9 * 2 * lim for t in milp_t] if lim else [False] * len(milp_t)
        if milp_t:
            rows.append({**row, "depth": int(row["arch"].split("x")[1]), "n": len(milp_t),
                         "lp": float(np.mean(lp_t)), "milp": float(np.mean(milp_t)),
                         "ratio": float(np.mean(milp_t) / max(np.mean(lp_t), 1e-9)), "capped": float(np.mean(caps))})
    return pd.DataFrame(rows)


def milp_evidence(cfg: Preset):
    """How far the MILP comparison's solves got, per MILP-compared (net, ε): sides proven (a solve that
    finished, or stopped because its incumbent reached the LP bound), stopped at the per-solve limit,
    or fallbacks; with the node probe's counts where it ran. The verdicts resting on the MILP read it."""
    import pandas as pd

    probe = probe_frame(cfg)
    rows = []
    for row, b in _compared(cfg):
        c = {"proven": 0, "time_limit": 0, "fallback": 0}
        for l in range(1, b["milp"].n_layers):
            mk = _mask(b["lp"], b["milp"], l)
            for i in (0, 1):
                for code in source_side(b["milp"].source[l][mk], i):
                    key = ("fallback" if code.startswith("fallback") else "time_limit" if code == "milp-dual"
                           else "proven")
                    c[key] += 1
        p = probe[(probe.arch == row["arch"]) & (probe.reg == row["reg"]) & (probe.eps == row["eps"])] \
            if len(probe) else probe
        rows.append({**row, "per-solve limit (s)": cfg.milp_neuron, "sides": sum(c.values()), **c,
                     "probed": len(p), "probed finished": int(p.finished.sum()) if len(p) else 0,
                     "probed branched": int(p.branched.sum()) if len(p) else 0,
                     "probed proven by BaB": int(p.bab_proven.sum()) if len(p) else 0})
    return pd.DataFrame(rows)


def probe_frame(cfg: Preset):
    """One row per probed MILP solve: node count, status, whether it finished or branched (left the root)."""
    import pandas as pd

    if not cfg.probe:
        return pd.DataFrame()
    g = grids(cfg)
    bab = {}
    res = g["bab-probe"].load()
    for params, r in zip(res.grid.cells, res.results()):
        for sv in (r or {}).get("solves", []):
            bab[(params["arch"], params["reg"], params["eps"], sv["layer"], sv["neuron"])] = sv
    res = g["probe"].load()
    rows = []
    for params, r in zip(res.grid.cells, res.results()):
        if r is None:
            continue
        for sv in r["solves"]:
            b = bab.get((params["arch"], params["reg"], params["eps"], sv["layer"], sv["neuron"]), {})
            rows.append({"arch": params["arch"], "reg": params["reg"], "eps": params["eps"], **sv,
                         "finished": sv["status"] in ("optimal", "interrupted"), "branched": sv["nodes"] > 1,
                         "bab_bound": b.get("bab_bound", np.nan), "best_point": b.get("best_point", np.nan),
                         "bab_status": b.get("bab_status"), "bab_nodes": b.get("bab_nodes", np.nan),
                         "bab_proven": b.get("bab_status") == "optimal"})
    return pd.DataFrame(rows)


def stable_frame(runs):
    """Share of hidden neurons each method proves stable, per (arch, reg, ε) of the main grid."""
    return runs.loc[runs.study == "main", ["arch", "reg", "eps", "method", "stable_share"]].reset_index(drop=True)


def _tl_load(cfg, row, method, T):
    """One run of the time-limit study at limit ``T`` (a total budget, or a per-solve limit at quick)."""
    if cfg.tl_mode == "per-solve":
        return _load(cfg, row, "lp", cfg.lp_time, cfg.lp_neuron)[0] if method == "lp" else \
            _load(cfg, row, "milp", N=T, milp=True)[0]
    kw = {"min_solve": cfg.milp_min_solve, "options": cfg.milp_options} if method == "milp" else {}
    return get_bounds(row["arch"], row["reg"], row["lam"], cfg.train_scale, cfg.seed, row["eps"], method, T, None,
                      cfg.solver, compute=False, **kw)[0]


def timelimit_frame(cfg: Preset):
    """Figs 2.13–2.15: mean ratio of Big-M constants (H and H̄) to the best ones, per (net, T, method).

    ``vs_best_milp`` divides by the tightest MILP constant over all T; ``vs_own_best`` by
    the tightest of the same method. Over neurons of layers l ≥ 1 whose best constant
    exceeds 1e-6 (others are stable: no Big-M needed); against the best MILP constant only
    over the sides the longest MILP run bounded by a solve (not a crown fallback); ``proven``
    counts those of them that run solved to optimality. In ``per-solve`` mode (quick) ``T`` is
    the MILP's per-solve limit on the sampled neurons and the LP run (to completion) is the same at every T.
    """
    import pandas as pd

    rows = []
    for arch, reg, lam in cfg.tl_nets:
        row = {"arch": arch, "reg": reg, "lam": lam, "eps": cfg.tl_eps}
        got = {(m, T): _tl_load(cfg, row, m, T) for m in ("lp", "milp") for T in cfg.tl_limits}
        if any(v is None for v in got.values()):
            continue
        L = next(iter(got.values())).n_layers
        ref_run = got[("milp", max(cfg.tl_limits))]  # the longest MILP run decides which neurons it really bounded
        for side, idx in (("upper (H)", 0), ("lower (H̄)", 1)):
            bm = {k: [v.big_m(l)[idx] for l in range(1, L)] for k, v in got.items()}
            codes = np.concatenate([source_side(ref_run.source[l], 1 - idx) for l in range(1, L)]).astype(str)
            solved = np.char.startswith(codes, "milp")
            best = {m: [np.min([bm[(m, T)][i] for T in cfg.tl_limits], axis=0) for i in range(L - 1)]
                    for m in ("lp", "milp")}
            for (m, T), vals in bm.items():
                for ref_name, ref in (("vs_best_milp", best["milp"]), ("vs_own_best", best[m])):
                    num = np.concatenate(vals)
                    den = np.concatenate(ref)
                    k = (den > 1e-6) & (solved if ref_name == "vs_best_milp" else True)
                    rows.append({"arch": arch, "reg": reg, "method": m, "T": T, "side": side, "ref": ref_name,
                                 "ratio": float(np.mean(num[k] / den[k])) if k.any() else np.nan,
                                 "ratio_max": float(np.max(num[k] / den[k])) if k.any() else np.nan,
                                 "n": int(k.sum()), "proven": int((k & (codes == "milp")).sum()),
                                 "time": got[(m, T)].total_time})
    return pd.DataFrame(rows)


def crown_vs_interval(runs):
    """Mean width ratio interval / crown on the deepest hidden layer, per net and ε."""
    import pandas as pd

    runs = runs[runs.study == "main"]
    iv = runs[runs.method == "interval"].set_index(["arch", "reg", "eps"])["deep_width"]
    cr = runs[runs.method == "crown"].set_index(["arch", "reg", "eps"])["deep_width"]
    t = runs[runs.method == "crown"].set_index(["arch", "reg", "eps"])["time"]
    return pd.DataFrame({"interval width": iv, "crown width": cr, "ratio": iv / cr, "crown time (s)": t}).reset_index()


def example_table(cfg: Preset, arch: str = "200x5", reg: str = "l1"):
    """Per-layer mean bound width of every method on one rounded net (ε = the smallest of the grid).

    naive, Prop 2.2, interval and crown are computed here (milliseconds); LP and MILP come
    from the cache when the grid has run.
    """
    import pandas as pd

    from ..bounds import compute_bounds
    from ..domains import unit_box

    pick = [n for n in cfg.milp_nets if n[0] == arch and n[1] == reg] or list(cfg.milp_nets)
    arch, reg, lam = pick[0]
    eps = min(cfg.eps)
    net, _ = _net(arch, reg, lam, cfg.train_scale, cfg.seed, eps)
    got = {m: compute_bounds(net, unit_box(net.n_inputs), method=m) for m in ("naive", "prop22", "interval", "crown")}
    row = {"arch": arch, "reg": reg, "lam": lam, "eps": eps}
    got["lp"] = _load(cfg, row, "lp", cfg.lp_time, cfg.lp_neuron)[0]
    got["milp"] = _load(cfg, row, "milp", milp=True)[0]
    table = {m: [float(b.width(l).mean()) for l in range(b.n_layers)] for m, b in got.items() if b is not None}
    df = pd.DataFrame(table)
    df.index = [f"a^{l + 1}" + (" (logits)" if l == net.depth else "") for l in range(net.depth + 1)]
    df.index.name = f"{net.name}, ε={eps:g}: mean width"
    return df


def cheap_real_frame(cfg: Preset):
    """Interval vs crown on ``cfg.cheap_nets`` (at quick and paper every architecture, no penalty, L1 and L2).

    Per (net, ε): mean width of the deepest hidden layer for each method, their ratio, crown's time
    and the share of hidden neurons each proves stable. Milliseconds to a second per net, not cached.
    """
    import time

    import pandas as pd

    from ..bounds import crown_bounds, interval_bounds
    from ..domains import unit_box

    rows = []
    for arch, reg, lam in cfg.cheap_nets:
        for eps in cfg.eps:
            net, _ = _net(arch, reg, lam, cfg.cheap_scale, cfg.seed, eps)
            dom = unit_box(net.n_inputs)
            t0 = time.perf_counter()
            bi = interval_bounds(net, dom)
            t1 = time.perf_counter()
            bc = crown_bounds(net, dom)
            t2 = time.perf_counter()
            d = net.depth - 1
            rows.append({"net": f"{net.arch} {reg}", "eps": eps, "interval width": float(bi.width(d).mean()),
                         "crown width": float(bc.width(d).mean()),
                         "ratio": float(bi.width(d).mean() / bc.width(d).mean()),
                         "interval stable": bi.stable_share(), "crown stable": bc.stable_share(),
                         "interval ms": 1e3 * (t1 - t0), "crown ms": 1e3 * (t2 - t1)})
    return pd.DataFrame(rows)
