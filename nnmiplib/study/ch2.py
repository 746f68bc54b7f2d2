"""Chapter 2 — activation bounds: presets, the cached grid of bound runs, and the tables.

Every (net, ε, method, limits) run is one :class:`~nnmiplib.bounds.Bounds` file under
``results_dir()/ch2/<key>.npz`` (key = hash of the parameters and the rounded net's
digest), so re-rendering never recomputes. The runs are the cells of an
:class:`nnmiplib.experiments.Grid` (``run(cfg, n_jobs)``), whose JSON records hold the
per-run summaries; the figures read both (:mod:`nnmiplib.study.ch2_plots`).
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
    "SOLVED_PREFIXES",
    "bounds_cell",
    "cells",
    "crown_vs_interval",
    "gap_frame",
    "get_bounds",
    "layer_gap_frame",
    "preset",
    "run",
    "runs_frame",
    "stable_frame",
    "timelimit_frame",
]

ARCHS = ("3000x1", "800x2", "200x5", "100x10")
CHEAP = ("interval", "crown")
SOLVED_PREFIXES = ("lp", "milp")  # a side whose source starts so was bounded by the solver (not a fallback)
VERSION = "ch2-v2"  # v2: sampled MILP seeded by LP, Bounder affordable-count fix


def preset(scale: str = "quick", *, n_jobs: int = 1, seed: int = 0, solver: str = "highs",
           eps=None, lp_time=None, milp_time=None, tl_limits=None) -> Preset:
    """Chapter-2 parameters at ``scale`` (knobs left ``None`` follow the scale)."""
    check_scale(scale)
    dev: list[str] = []
    if scale == "paper":
        nets = [(a, "none", 0.0) for a in ARCHS] + [(a, r, lam) for a in ARCHS for r in ("l1", "l2")
                                                      for lam in (1e-4, 2e-4, 3e-4)]
        eps_d = (1e-4, 1e-3, 1e-2, 0.04, 1e-1)
        lp_d, lp_n, milp_d, milp_n = 3600.0, 60.0, 3600.0, 60.0
        tl_d = tuple(60.0 * m for m in range(20, 100, 10))
        dev.append("ε = 0.04 is added to the thesis's grid {1e-4, 1e-3, 1e-2, 1e-1} (SPEC §6: the time-limit "
                   "study uses it).")
        dev.append("The thesis states no time limit for the main runs: we give each (net, ε) run T = 1 h "
                   "(60 s per solve) for LP and for MILP.")
    elif scale == "quick":
        nets = [(a, r, 0.0 if r == "none" else 2e-4) for a in ARCHS for r in ("none", "l1", "l2")]
        eps_d = (0.01, 0.1)
        lp_d, lp_n, milp_d, milp_n = None, 2.0, None, 1.0
        tl_d = (5.0, 15.0, 45.0)
        dev += [("Nets trained 5 epochs, not 50. Bounding every neuron of the real 784-input architectures by LP "
                "and MILP takes tens of minutes per net on this 2-core machine, so at this scale the LP and MILP "
                "runs bound 8 neurons per layer (evenly spaced among those the crown bounds leave unstable, the "
                "same neurons in both runs; every logit when there are at most 8); the other neurons keep their "
                "crown bounds. RO gaps (Figs 2.4–2.7) compare only neurons both runs bounded; LP and MILP times "
                "(Figs 2.8–2.12) are for those solves, and their stable shares count only what the sampled "
                "solves proved."),
                "Nets: the 4 architectures × {no penalty, L1, L2} at λ = 2·10⁻⁴ (12 of the thesis's 28).",
                "ε ∈ {0.01, 0.1} instead of {10⁻⁴, 10⁻³, 10⁻², 10⁻¹}.",
                ("LP runs have no total budget (≤ 2 s per solve). Each MILP run starts from its LP run's bounds "
                "and solves the same sampled neurons (those the LP left unstable), ≤ 1 s per solve and no total "
                "budget: at 1 s most MILPs stop at the root node with their dual bound ('milp-dual'), and one "
                "that cannot finish its root keeps the LP bound (a 'fallback', left out of the RO gaps). MILP "
                "times therefore exclude the LP that seeded them."),
                ("Time-limit study (Figs 2.13–2.15): T ∈ {5, 15, 45} s instead of 20–90 min, every neuron of the "
                "200x5 nets (L1 and L2) eligible, so at the shorter limits most neurons keep a fallback bound.")]
    else:
        nets = [("200x5", "l1", 2e-4), ("200x5", "l2", 2e-4), ("800x2", "none", 0.0)]
        eps_d = (0.01, 0.1)
        lp_d, lp_n, milp_d, milp_n = None, 0.3, 2.0, 0.5
        tl_d = (1.0, 2.0)
        dev += [("Smoke: same-depth stand-in nets (800x2 → 32x2, 200x5 → 24x5; 2 epochs on 6 000 images): "
                "200x5 with L1 and L2, 800x2 without penalty."),
                ("ε ∈ {0.01, 0.1}; LP without total budget (≤ 0.3 s per solve), MILP T = 2 s per run with "
                "per-solve limits down to 0.05 s; "
                "time-limit study T ∈ {1, 2} s."),
                "Numbers at this scale only exercise the code; the verdicts are not evidence."]
    params = {"nets": nets, "eps": tuple(eps or eps_d), "lp_time": lp_time if lp_time is not None else lp_d, "lp_neuron": lp_n,
                  "milp_time": milp_time or milp_d, "milp_neuron": milp_n,
                  "tl_nets": [("200x5", "l1", 2e-4), ("200x5", "l2", 2e-4)], "tl_eps": 0.04,
                  "tl_limits": tuple(tl_limits or tl_d), "solver": solver, "n_jobs": n_jobs, "seed": seed,
                  "train_scale": scale, "cheap_scale": scale, "max_neurons": 8 if scale == "quick" else None,
                  "milp_min_solve": 0.05 if scale == "smoke" else None}
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
               solver="highs", compute=True, min_solve=None, max_neurons=None, lp_limits=(None, None)):
    """The Bounds of the rounded zoo net for one run, from the cache or computed (and cached).

    Returns ``(bounds, net, round_stats)``; ``bounds`` is None if not cached and ``compute`` is False.
    """
    from ..bounds import Bounds, compute_bounds
    from ..domains import unit_box

    net, rstats = _net(arch, reg, lam, train_scale, seed, eps)
    params = {"arch": arch, "reg": reg, "lam": lam, "train_scale": train_scale, "seed": seed, "eps": eps, "method": method,
                  "time_limit": time_limit, "neuron_limit": neuron_limit, "solver": solver}
    if min_solve is not None and method == "milp":
        params["min_solve"] = min_solve
    if max_neurons is not None and method in ("lp", "milp"):
        params["max_neurons"] = int(max_neurons)
    if max_neurons is not None and method == "milp":
        params["seed_bounds"] = ["lp-sample", *lp_limits]  # see below
    path = results_dir() / "ch2" / f"{_key(params, net.digest())}.npz"
    if path.exists():
        try:
            return Bounds.load(path, net=net), net, rstats
        except ValueError as exc:
            log.warning("ignoring unreadable cache %s: %s", path, exc)
    if not compute:
        return None, net, rstats
    kw = {}
    if method in ("lp", "milp"):
        kw = {"time_limit": time_limit, "per_neuron_time_limit": neuron_limit, "solver": solver, "n_jobs": 1, "progress": False}
        if min_solve is not None and method == "milp":
            kw["min_solve_time"] = min_solve
        if max_neurons is not None:
            kw["max_neurons"] = int(max_neurons)
        if max_neurons is not None and method == "milp":
            # sampled runs: the MILP starts from the sampled LP run's bounds and solves only
            # the neurons that run bounded (the LP's own budget: lp_time/lp_neuron of the preset
            # are passed by the caller as lp_limits), so the RO gap pairs are the same neurons
            lp, _, _ = get_bounds(arch, reg, lam, train_scale, seed, eps, "lp", *lp_limits, solver=solver,
                                  max_neurons=max_neurons)
            kw["initial"] = lp
            kw["restrict"] = [np.flatnonzero([_solved(c) for c in lp.source[l]]) for l in range(lp.n_layers)]
    b = compute_bounds(net, unit_box(net.n_inputs), method=method, **kw)
    b.save(path)
    return b, net, rstats


def bounds_cell(arch, reg, lam, train_scale, seed, eps, method, time_limit, neuron_limit, solver, study="main",
                min_solve=None, max_neurons=None, lp_limits=(None, None)) -> dict:
    """Grid cell: compute (or load) one run and return its JSON summary (``study`` only labels it)."""
    b, net, rstats = get_bounds(arch, reg, lam, train_scale, seed, eps, method, time_limit, neuron_limit, solver,
                                min_solve=min_solve, max_neurons=max_neurons, lp_limits=tuple(lp_limits))
    hidden = list(range(net.depth))
    solved = [float(np.mean([_solved(s) for s in b.source[l]])) for l in range(b.n_layers)]
    return {"time": b.total_time, "stable_share": b.stable_share(), "stable": b.stable_counts(),
            "width": [float(b.width(l).mean()) for l in range(b.n_layers)],
            "deep_width": float(b.width(hidden[-1]).mean()) if hidden else float("nan"),
            "solved_share": solved, "zeroed": float(rstats["fraction"]),
            "digest": net.digest()}


def _solved(code: str) -> bool:
    """Both sides of a neuron's source came from a solver run (not a cheap bound or a fallback)."""
    parts = str(code).split("/") if "/" in str(code) else [str(code)] * 2
    return all(p.startswith(SOLVED_PREFIXES) for p in parts)


def cells(cfg: Preset) -> list[dict]:
    """Every run of the chapter: main grid (nets × ε × interval/crown/LP/MILP) and the time-limit study."""
    out = []
    base = {"train_scale": cfg.train_scale, "seed": cfg.seed, "solver": cfg.solver, "study": "main",
                "min_solve": cfg.milp_min_solve}
    for arch, reg, lam in cfg.nets:
        for eps in cfg.eps:
            for m in CHEAP:
                out.append(dict(base, arch=arch, reg=reg, lam=lam, eps=eps, method=m, time_limit=None,
                                neuron_limit=None))
            sample = {} if cfg.max_neurons is None else {"max_neurons": cfg.max_neurons}
            out.append(dict(base, arch=arch, reg=reg, lam=lam, eps=eps, method="lp", time_limit=cfg.lp_time,
                            neuron_limit=cfg.lp_neuron, **sample))
    for arch, reg, lam in cfg.nets:  # after every LP run: a sampled MILP run starts from its LP run's bounds
        for eps in cfg.eps:
            sample = {} if cfg.max_neurons is None else {"max_neurons": cfg.max_neurons,
                                                         "lp_limits": [cfg.lp_time, cfg.lp_neuron]}
            out.append(dict(base, arch=arch, reg=reg, lam=lam, eps=eps, method="milp", time_limit=cfg.milp_time,
                            neuron_limit=cfg.milp_neuron, **sample))
    for arch, reg, lam in cfg.tl_nets:
        for T in cfg.tl_limits:
            for m in ("lp", "milp"):
                out.append(dict(base, study="timelimit", arch=arch, reg=reg, lam=lam, eps=cfg.tl_eps, method=m,
                                time_limit=T, neuron_limit=None))
    return out


def _cell_digest(params: dict) -> str:
    """Key material of a grid cell: the digest of the rounded net it bounds (a retrained net is a new cell)."""
    net, _ = _net(params["arch"], params["reg"], params["lam"], params["train_scale"], params["seed"], params["eps"])
    return net.digest()


def _train_all(cfg: Preset) -> None:
    """Train (or load) every net in this process first, so pool workers only read the cache."""
    from ..train import zoo_net

    for arch, reg, lam in list(cfg.nets) + list(cfg.tl_nets):
        zoo_net(arch, reg, lam, scale=cfg.train_scale, seed=cfg.seed)


def run(cfg: Preset, n_jobs: int | None = None, progress: bool = False, scheduler=None):
    """Run (or load) every cell; returns the runs as a DataFrame (see :func:`runs_frame`)."""
    from ..experiments import Grid

    _train_all(cfg)
    grid = Grid(f"ch2-{cfg.scale}", bounds_cell, cells(cfg), version=VERSION, key_extra=_cell_digest)
    res = grid.run(n_jobs=n_jobs or cfg.n_jobs, scheduler=scheduler, progress=progress)
    if res.n_failed:
        for f in res.failed[:3]:
            log.warning("ch2 cell failed: %s", f)
    return runs_frame(res.frame())


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


def _load(cfg, row, method, T=None, N=None, sample=False):
    b, net, _ = get_bounds(row["arch"], row["reg"], row["lam"], cfg.train_scale, cfg.seed, row["eps"], method, T, N,
                           cfg.solver, compute=False, min_solve=cfg.milp_min_solve,
                           max_neurons=cfg.max_neurons if sample else None,
                           lp_limits=(cfg.lp_time, cfg.lp_neuron))
    return b, net


def _pair(cfg, row):
    """The (interval, crown, LP, MILP) bounds of a main-grid (net, ε), from the cache."""
    got = {m: _load(cfg, row, m)[0] for m in CHEAP}
    got["lp"] = _load(cfg, row, "lp", cfg.lp_time, cfg.lp_neuron, sample=True)[0]
    got["milp"] = _load(cfg, row, "milp", cfg.milp_time, cfg.milp_neuron, sample=True)[0]
    return got


def _mask(lp, milp, l):
    """Neurons of layer l bounded by the solver in both the LP and the MILP run."""
    return np.array([_solved(a) and _solved(b) for a, b in zip(lp.source[l], milp.source[l])], dtype=bool)


def gap_frame(cfg: Preset):
    """Mean RO gap (SPEC §2) per (net, ε, method ∈ interval/crown/LP) against the MILP bounds.

    Averaged over the neurons of affine layers l ≥ 1 (layer 0 is exact for every method)
    that both the LP and the MILP run bounded, lower and upper bounds together.
    """
    import pandas as pd

    from ..bounds import ro_gap

    rows = []
    for arch, reg, lam in cfg.nets:
        for eps in cfg.eps:
            row = {"arch": arch, "reg": reg, "lam": lam, "eps": eps}
            b = _pair(cfg, row)
            if any(v is None for v in b.values()):
                continue
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
    for arch, reg, lam in cfg.nets:
        for eps in cfg.eps:
            b = _pair(cfg, {"arch": arch, "reg": reg, "lam": lam, "eps": eps})
            if any(v is None for v in b.values()):
                continue
            for m in ("interval", "crown", "lp"):
                g = ro_gap(b[m], b["milp"], "lower")
                for l in range(1, b["milp"].n_layers):
                    mk = _mask(b["lp"], b["milp"], l)
                    if mk.any():
                        rows.append({"arch": arch, "reg": reg, "eps": eps, "method": m, "layer": l, "last": l == b["milp"].n_layers - 1,
                                         "ro_gap_lower": float(g[l][mk].mean())})
    return pd.DataFrame(rows)


def stable_frame(runs):
    """Share of hidden neurons each method proves stable, per (arch, reg, ε) of the main grid."""
    return runs.loc[runs.study == "main", ["arch", "reg", "eps", "method", "stable_share"]].reset_index(drop=True)


def timelimit_frame(cfg: Preset):
    """Figs 2.13–2.15: mean ratio of Big-M constants (H and H̄) to the best ones, per (net, T, method).

    ``vs_best_milp`` divides by the tightest MILP constant over all T; ``vs_own_best`` by
    the tightest of the same method. Over neurons of layers l ≥ 1 whose best constant
    exceeds 1e-6 (others are stable: no Big-M needed); against the best MILP constant only
    over the sides the longest MILP run bounded by a solve (not a crown fallback).
    """
    import pandas as pd

    rows = []
    for arch, reg, lam in cfg.tl_nets:
        row = {"arch": arch, "reg": reg, "lam": lam, "eps": cfg.tl_eps}
        got = {(m, T): _load(cfg, row, m, T)[0] for m in ("lp", "milp") for T in cfg.tl_limits}
        if any(v is None for v in got.values()):
            continue
        L = next(iter(got.values())).n_layers
        ref_run = got[("milp", max(cfg.tl_limits))]  # the longest MILP run decides which neurons it really bounded
        for side, idx in (("upper (H)", 0), ("lower (H̄)", 1)):
            bm = {k: [v.big_m(l)[idx] for l in range(1, L)] for k, v in got.items()}
            solved = np.concatenate([np.char.startswith(source_side(ref_run.source[l], 1 - idx), "milp")
                                     for l in range(1, L)])
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
                                     "n": int(k.sum()), "time": got[(m, T)].total_time})
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

    pick = [n for n in cfg.nets if n[0] == arch and n[1] == reg] or list(cfg.nets)
    arch, reg, lam = pick[0]
    eps = min(cfg.eps)
    net, _ = _net(arch, reg, lam, cfg.train_scale, cfg.seed, eps)
    got = {m: compute_bounds(net, unit_box(net.n_inputs), method=m) for m in ("naive", "prop22", "interval", "crown")}
    row = {"arch": arch, "reg": reg, "lam": lam, "eps": eps}
    got["lp"] = _load(cfg, row, "lp", cfg.lp_time, cfg.lp_neuron, sample=True)[0]
    got["milp"] = _load(cfg, row, "milp", cfg.milp_time, cfg.milp_neuron, sample=True)[0]
    table = {m: [float(b.width(l).mean()) for l in range(b.n_layers)] for m, b in got.items() if b is not None}
    df = pd.DataFrame(table)
    df.index = [f"a^{l + 1}" + (" (logits)" if l == net.depth else "") for l in range(net.depth + 1)]
    df.index.name = f"{net.name}, ε={eps:g}: mean width"
    return df


def cheap_real_frame(cfg: Preset):
    """Interval vs crown on the nets of ``cfg.cheap_scale`` (the real architectures at quick and paper).

    Per (net, ε): mean width of the deepest hidden layer for each method, their ratio, crown's time
    and the share of hidden neurons each proves stable. Milliseconds to a second per net, not cached.
    """
    import time

    import pandas as pd

    from ..bounds import crown_bounds, interval_bounds
    from ..domains import unit_box

    rows = []
    for arch, reg, lam in cfg.nets:
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
