"""Chapter 3 — how the quality of activation bounds affects a verification MIP (thesis §3).

The question (PV) asks how far the output of a network can move on a box around a
reference image x₀: max_{x∈X} ‖softmax(a^{L+1}(x)) − N(x₀)‖₁ over the Big-M model
(3.1–3.7), with X the "neighbours" box of §3.2.1. The same MIP is solved with the
Big-M constants of six bound types, and the final optimality gaps are compared. The
exact solve is the branch and bound over ReLU phases of :mod:`nnmiplib.bab` with the
bound type's constants in every node's relaxation, never re-tightened
(``refine=False``): a faithful exact solve of the thesis's MIP for those constants.
The plain HiGHS MIP on the same model is solved beside it on a subset of bound types.

========== ==============================================================
naive      Proposition 2.1 on [0, 1]^784
lp         Algorithm 3, relax = 1 (LP Bounder) on [0, 1]^784
milp       Algorithm 3, relax = 0 (MILP Bounder) on [0, 1]^784
milp+img   the thesis's "IP+img": MILP bounds on the neighbours box of x₀
crown+img  an extra the field uses: CROWN back-substitution on that box
alpha+img  an extra: α-CROWN (optimised slopes) on that box
========== ==============================================================

Every expensive step is a cell of a cached :class:`~nnmiplib.experiments.Grid`:
one cell per bound computation (the bounds themselves are written next to the grid's
cache as ``.npz`` files) and one per PV instance. :func:`compute` runs them all;
:func:`frame` reads the results back for the notebook; the ``fig_*`` functions draw
the chapter's figures and :func:`judge` turns the numbers into verdicts on F3.1–F3.4.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ..paths import results_dir
from ..queries import cache_version
from .common import Preset, check_scale

log = logging.getLogger(__name__)

__all__ = [
    "ARCHS",
    "BOUND_TYPES",
    "LABELS",
    "bounds_cell",
    "choose_form",
    "compute",
    "engines_frame",
    "fig_anytime",
    "fig_engines",
    "frame",
    "gap_over_time",
    "gap_profile",
    "grids",
    "judge",
    "preset",
    "pv_cell",
    "pv_domain",
    "reference_images",
    "relax_cell",
    "thin_trajectory",
]

ARCHS = ("3000x1", "800x2", "200x5", "100x10")
BOUND_TYPES = ("naive", "lp", "milp", "milp+img", "crown+img", "alpha+img")
LABELS = {"naive": "naive", "lp": "LP", "milp": "MILP", "milp+img": "IP+img", "crown+img": "crown+img",
          "alpha+img": "alpha+img"}
#: bound types computed on the reference image's neighbours box (one bound set per image)
IMG_TYPES = ("milp+img", "crown+img", "alpha+img")
NEIGHBOURS = {"eps": 0.18, "m": 3, "pad": 2}  # §3.2.1
REG, LAM = "l1", 2e-4  # §3.2.2
#: version of the bound computations (MILP seeded with LP since v3; the Bounder's budget fix, v4);
#: part of every cache key
BOUNDS_VERSION = "bounds-v4"

_SCALES = {
    "smoke": {"digits": (5, 7), "lp_time": 0.5, "milp_time": 0.5, "img_time": 0.3, "pv_time": 0.5, "form_time": 0.5,
              "net_scale": "smoke", "mip_types": ("lp", "milp+img")},
    "quick": {"digits": tuple(range(10)), "lp_time": 900.0, "milp_time": 60.0, "img_time": 10.0, "pv_time": 5.0,
              "form_time": 10.0, "net_scale": "paper", "mip_types": ("lp", "milp+img")},
    "paper": {"digits": tuple(range(10)), "lp_time": 1800.0, "milp_time": 3600.0, "img_time": 1800.0, "pv_time": 600.0,
              "form_time": 600.0, "net_scale": "paper", "mip_types": BOUND_TYPES},
}


def preset(scale: str = "quick", *, digits=None, pv_time=None, lp_time=None, milp_time=None, img_time=None,
           form: str = "softmax", seed: int = 0) -> Preset:
    """The chapter's parameters at ``scale`` and the deviations from the thesis they imply.

    Parameters
    ----------
    scale : "smoke" | "quick" | "paper".
    digits : reference digits (one random test image each); default by scale.
    pv_time, lp_time, milp_time, img_time : time limits in seconds of one PV solve and of
        one whole bound computation (LP, MILP on [0,1]^784, MILP on the image box).
    form : "softmax" (the thesis's PV objective, the default), "margin" (max_k a_k − a_c,
        linear) or "auto": softmax if it closes its gap (≤ 1 %) on the form-check instances,
        else margin.
    seed : seed of the reference-image draw and of the nets.
    """
    check_scale(scale)
    if form not in ("auto", "softmax", "margin"):
        raise ValueError(f"form must be 'auto', 'softmax' or 'margin', got {form!r}")
    p = dict(_SCALES[scale])
    for k, v in {"digits": digits, "pv_time": pv_time, "lp_time": lp_time, "milp_time": milp_time,
                     "img_time": img_time}.items():
        if v is not None:
            p[k] = tuple(int(d) for d in v) if k == "digits" else float(v)
    bad = [d for d in p["digits"] if not 0 <= d <= 9]
    if bad:
        raise ValueError(f"digits must lie in 0..9, got {bad}")
    p.update(scale=scale, form=form, seed=int(seed), archs=ARCHS, bound_types=BOUND_TYPES)
    dev = []
    if scale == "smoke":
        dev.append("stand-in nets of the same depth (64x1, 32x2, 24x5, 16x10 instead of 3000x1, 800x2, 200x5, "
                   "100x10), L1 λ = 2·10⁻⁴, trained 2 epochs on 6 000 images")
    dev.append("the exact solve is nnmiplib's branch and bound over ReLU phases with the bound type's Big-M constants "
               "in every node (never re-tightened), the softmax objective bounded at each node from its bounds on "
               "the logit differences; the plain HiGHS MIP of the same model is solved beside it for "
               + ", ".join(LABELS[b] for b in p["mip_types"]) + " (the thesis used Gurobi 9.1.2 on 4 cores)")
    if scale == "quick":
        dev.append(f"PV limit {p['pv_time']:g} s per instance and engine (the thesis states none): gaps left at that "
                   "limit are gaps at this scale, not the thesis's")
    if len(p["digits"]) < 10:
        dev.append(f"{len(p['digits'])} reference digits ({', '.join(map(str, p['digits']))}), not 10: "
                   f"{4 * len(p['digits'])} instances per bound type instead of 40")
    dev.append(f"time limits (the thesis states none): LP bounds {p['lp_time']:g} s, MILP bounds "
               f"{p['milp_time']:g} s per net, IP+img {p['img_time']:g} s per net and image, "
               f"PV {p['pv_time']:g} s per instance; the MILP and IP+img bounds start from the LP bounds of "
               "their box, whose time (without limit; up to minutes on the deep nets) counts in theirs")
    dev.append("two bound types are added: crown+img and alpha+img (CROWN and α-CROWN on the image box)")
    return Preset(scale, p, dev)


# --------------------------------------------------------------------------- inputs
def reference_images(digits=range(10), seed: int = 0, split: str = "test") -> dict[int, tuple[int, np.ndarray]]:
    """One randomly drawn image per digit (§3.2.1): ``{digit: (index in split, x₀ float64)}``.

    The draw uses ``numpy.random.default_rng(seed)`` once per digit, in digit order, over
    the images of that label, so the same seed gives the same images in every chapter.
    """
    from ..data import load_mnist

    train, valid, test = load_mnist()
    x, y = {"train": train, "valid": valid, "test": test}[split]
    out = {}
    for d in sorted({int(d) for d in digits}):
        rng = np.random.default_rng([seed, d])
        idx = int(rng.choice(np.flatnonzero(y == d)))
        out[d] = (idx, np.asarray(x[idx], dtype=np.float64))
    return out


def pv_domain(x0: np.ndarray):
    """The PV input box of chapter 3: the neighbours box of x₀ (ε = 0.18, 3×3 window, pad 2)."""
    from ..domains import neighbours_box

    return neighbours_box(x0, **NEIGHBOURS)


def _net(arch: str, scale: str, seed: int):
    from ..train import zoo_net

    return zoo_net(arch, REG, LAM, scale=scale, seed=seed)


def _bounds_path(digest: str, bound: str, digit, time_limit: float) -> Path:
    where = "unit" if bound not in IMG_TYPES else f"d{digit}"
    return (results_dir() / "ch3-bounds"
            / f"{digest[:16]}-{bound.replace('+', '_')}-{where}-t{time_limit:g}-{BOUNDS_VERSION}.npz")


def _bound_domain(bound: str, x0):
    from ..domains import unit_box

    return pv_domain(x0) if bound in IMG_TYPES else unit_box(784)


# --------------------------------------------------------------------------- cells
def bounds_cell(arch: str, scale: str, seed: int, bound: str, digit: int | None, time_limit: float) -> dict:
    """One bound computation (Fig 3.5's unit); writes the bounds to ``data/results/ch3-bounds/``."""
    from ..bounds import compute_bounds

    net = _net(arch, scale, seed)
    x0 = reference_images([digit], seed)[digit][1] if bound in IMG_TYPES else None
    dom = _bound_domain(bound, x0)
    method = {"naive": "naive", "lp": "lp", "milp": "milp", "milp+img": "milp", "crown+img": "crown",
              "alpha+img": "alpha"}[bound]
    import time as _t

    t0 = _t.perf_counter()
    if method == "milp" and time_limit:
        # MILP bounds start from LP bounds on the same box (no budget of their own: a split
        # budget starves the first layers; their time counts), so they are never looser than
        # LP even where the MILP budget runs out (Algorithm 3's MILP from crown alone falls
        # back to crown on every neuron it cannot afford)
        lp = _cached_lp(net, bound) or compute_bounds(net, dom, method="lp", n_jobs=1, progress=False)
        rest = max(time_limit - (_t.perf_counter() - t0), 0.05 * time_limit)
        b = compute_bounds(net, dom, method="milp", time_limit=rest, n_jobs=1, progress=False, initial=lp)
    else:
        b = compute_bounds(net, dom, method=method, time_limit=time_limit, n_jobs=1, progress=False)
    seconds = _t.perf_counter() - t0
    path = b.save(_bounds_path(net.digest(), bound, digit, time_limit))
    widths = [float(w.mean()) for w in (b.width(l) for l in range(b.n_layers))]
    out = {"time": seconds, "stable_share": float(b.stable_share()), "mean_width": widths,
           "logit_width": widths[-1], "path": path.name}
    if method == "milp":
        # the MILP stage was cut by its budget when some side of a layer ≥ 1 is not a finished MILP
        from ..bounds import source_side

        codes = [c for l in range(1, b.n_layers) for i in (0, 1) for c in source_side(b.source[l], i)]
        out["capped"] = bool(any(c != "milp" for c in codes))
    return out


def _cached_lp(net, bound):
    """The LP bounds of the unit box already computed by the chapter's ``lp`` cell (MILP on the
    unit box starts from them instead of solving every LP again), or None."""
    from ..bounds import Bounds

    if bound != "milp":
        return None
    for path in sorted((results_dir() / "ch3-bounds").glob(f"{net.digest()[:16]}-lp-unit-t*-{BOUNDS_VERSION}.npz")):
        try:
            return Bounds.load(path, net)
        except ValueError:
            continue
    return None


def _load_bounds(net, arch, scale, seed, bound, digit, time_limit):
    from ..bounds import Bounds

    path = _bounds_path(net.digest(), bound, digit, time_limit)
    if not path.exists():  # a Dask worker without the shared disk, or a deleted file: recompute
        bounds_cell(arch, scale, seed, bound, digit, time_limit)
    return Bounds.load(path, net)


def pv_cell(arch: str, scale: str, seed: int, bound: str, digit: int, form: str, time_limit: float,
            bound_time: float, engine: str = "bab") -> dict:
    """One PV instance: network ``arch``, reference image of ``digit``, Big-M from ``bound``.

    ``engine="bab"``: the branch and bound with the constants as they are (``refine=False``);
    ``"mip"``: the plain Big-M MIP (HiGHS).
    """
    from ..queries import max_output_change

    net = _net(arch, scale, seed)
    x0 = reference_images([digit], seed)[digit][1]
    b = _load_bounds(net, arch, scale, seed, bound, digit if bound in IMG_TYPES else None, bound_time)
    r = max_output_change(net, pv_domain(x0), x0, form=form, bounds=b, time_limit=time_limit, engine=engine,
                          refine=False)
    gap = float(r.gap) if r.gap is not None else math.inf
    return {"status": r.status, "objective": r.objective, "dual_bound": r.dual_bound, "gap": gap,
            "time": float(r.time), "nodes": int(r.nodes or 0), "verified": bool(r.verified),
            "classes": list(r.classes), "x": None if r.x is None else np.asarray(r.x).tolist(),
            "probabilities": [np.asarray(p).tolist() for p in r.probabilities],
            "x0_class": int(net.predict(x0[None])[0]), "x0_prob": net.probabilities(x0[None])[0].tolist(),
            "incumbent_source": r.incumbent_source, "engine": r.extra.get("engine", engine),
            "trajectory": thin_trajectory(r.extra.get("trajectory") or [])}


#: most points kept of one search's ``(seconds, dual bound, incumbent)`` trajectory in a PV cell
TRAJECTORY_POINTS = 200


def thin_trajectory(points, n: int = TRAJECTORY_POINTS) -> list:
    """The points of a search's ``(seconds, dual bound, incumbent)`` trajectory worth keeping.

    Only the points where the dual bound or the incumbent changes (and the last) are kept;
    beyond ``n`` of them, the last point at or before each of ``n`` times spread evenly in
    log-time over the search. Dropping a point only delays what it reports, so a gap read off
    the thinned trajectory at any time is never smaller than the search's gap then.
    """
    pts = [tuple(map(float, p)) for p in points]
    kept = [p for i, p in enumerate(pts)
            if i == 0 or i == len(pts) - 1 or (p[1], p[2]) != (pts[i - 1][1], pts[i - 1][2])]
    if len(kept) > n:
        t = np.array([p[0] for p in kept])
        first = max(float(t[t > 0].min()) if (t > 0).any() else 1e-3, 1e-3)
        grid = np.geomspace(first, max(float(t[-1]), first), n)
        idx = np.unique(np.clip(np.searchsorted(t, grid, side="right") - 1, 0, len(kept) - 1))
        kept = [kept[i] for i in sorted(set(idx.tolist()) | {len(kept) - 1})]
    return [list(p) for p in kept]


def relax_cell(arch: str, scale: str, seed: int, bound: str, digit: int, bound_time: float,
               which: str = "runner-up") -> dict:
    """Root LP relaxation of PV's margin form with the Big-M constants of ``bound`` (an extra).

    The LP relaxation (z ∈ [0, 1]) of max a_k − a_c over the Big-M model on the
    neighbours box is solved for k = the runner-up class of x₀ (``which="runner-up"``,
    one LP) or for every k ≠ c (``which="all"``, the bound on the full margin form);
    c is the class of x₀. Looser Big-M constants give a weaker
    relaxation — the mechanism behind the gaps of Figs 3.3–3.4 — and this LP value is
    cheap even where the MIP cannot close. It is a measurement, not a certificate (no
    safe rounding), and ``sampled`` (the best margin of 2 000 sampled inputs) is a
    valid lower end for comparison.
    """
    import time as _t

    from ..mip import encode
    from ..mip.solvers import get_backend

    if which not in ("runner-up", "all"):
        raise ValueError(f"which must be 'runner-up' or 'all', got {which!r}")
    net = _net(arch, scale, seed)
    x0 = reference_images([digit], seed)[digit][1]
    b = _load_bounds(net, arch, scale, seed, bound, digit if bound in IMG_TYPES else None, bound_time)
    dom = pv_domain(x0)
    c = int(np.argmax(net.forward(x0)))
    t0 = _t.perf_counter()
    model = encode(net, dom, b, relax=True)
    a = model.nets[0].a[-1]
    be = get_backend("highs")(model, threads=1)
    ks = [k for k in range(a.size) if k != c]
    if which == "runner-up":
        ks = [int(np.argsort(net.forward(x0))[-2])]
    values = []
    for k in ks:
        be.set_objective({int(a[k]): 1.0, int(a[c]): -1.0}, "max")
        sol = be.solve(time_limit=30.0)
        v = sol.dual_bound if sol.dual_bound is not None else sol.objective
        values.append(float("inf") if v is None else float(v))
    logits = net.forward(dom.sample(2000, rng=0))
    sampled = float(np.max(logits[:, ks].max(axis=1) - logits[:, c]))
    return {"relax_bound": max(values), "sampled": sampled, "time": _t.perf_counter() - t0,
            "logit_width": float(np.mean(b.upper[-1] - b.lower[-1]))}


# --------------------------------------------------------------------------- grids
def _bound_time(cfg: Preset, bound: str) -> float:
    return {"naive": 0.0, "crown+img": 0.0, "alpha+img": 0.0, "lp": cfg.lp_time, "milp": cfg.milp_time,
            "milp+img": cfg.img_time}[bound]


def _net_digest(cfg: Preset):
    digests = {a: _net(a, cfg.net_scale, cfg.seed).digest() for a in ARCHS}
    return lambda params: digests[params["arch"]]


def grids(cfg: Preset, form: str | None = None) -> dict:
    """The chapter's grids: ``bounds``, ``formcheck`` and (with ``form``) ``pv``.

    ``formcheck`` runs both PV forms on one instance per architecture (LP bounds, first
    digit) so that the book can state how the softmax form fares against the margin form.
    """
    from ..experiments import Grid

    key = _net_digest(cfg)
    base = {"scale": cfg.net_scale, "seed": cfg.seed}  # "scale" of a cell = the nets' training scale
    bcells = []
    for arch in ARCHS:
        for bound in BOUND_TYPES:
            for d in (cfg.digits if bound in IMG_TYPES else [None]):
                bcells.append(dict(arch=arch, **base, bound=bound, digit=d, time_limit=_bound_time(cfg, bound)))
    out = {"bounds": Grid(f"ch3-bounds-{cfg.scale}", bounds_cell, bcells, key_extra=key, version=BOUNDS_VERSION)}
    d0 = cfg.digits[0]
    fcells = [dict(arch=a, **base, bound="lp", digit=d0, form=f, time_limit=cfg.form_time,
                   bound_time=cfg.lp_time) for a in ARCHS for f in ("softmax", "margin")]
    out["formcheck"] = Grid(f"ch3-formcheck-{cfg.scale}", pv_cell, fcells, key_extra=key,
                            version=f"{cache_version()}+{BOUNDS_VERSION}")
    rcells = [dict(arch=a, **base, bound=bt, digit=d, bound_time=_bound_time(cfg, bt), which="runner-up")
              for a in ARCHS for bt in BOUND_TYPES for d in (cfg.digits[:1] if cfg.scale == "smoke" else cfg.digits)]
    out["relax"] = Grid(f"ch3-relax-{cfg.scale}", relax_cell, rcells, key_extra=key, version=BOUNDS_VERSION)
    if form is not None:
        pcells = [dict(arch=a, **base, bound=bt, digit=d, form=form, time_limit=cfg.pv_time,
                       bound_time=_bound_time(cfg, bt), engine="bab")
                  for a in ARCHS for bt in BOUND_TYPES for d in cfg.digits]
        out["pv"] = Grid(f"ch3-pv-{cfg.scale}", pv_cell, pcells, key_extra=key,
                         version=f"{cache_version()}+{BOUNDS_VERSION}")
        mcells = [dict(c, engine="mip") for c in pcells if c["bound"] in cfg.mip_types]
        out["pv_mip"] = Grid(f"ch3-pv-mip-{cfg.scale}", pv_cell, mcells, key_extra=key,
                             version=f"{cache_version()}+{BOUNDS_VERSION}")
    return out


def choose_form(cfg: Preset, formcheck_frame) -> tuple[str, str]:
    """The PV form used for the gap statistics, and why (SPEC §6 "Choice").

    ``auto``: the thesis's softmax form if it closes its gap to ≤ 1 % on at least half of
    the form-check instances, or if it closes (≤ 5 %) at least as many of them as the
    margin form; the margin form otherwise.
    """
    if cfg.form != "auto":
        return cfg.form, f"form fixed by the caller: {cfg.form}"
    fc = formcheck_frame
    if fc.empty or "gap" not in fc:
        return "softmax", "no form-check result: the thesis's softmax form is used"
    soft, marg = fc[fc.form == "softmax"], fc[fc.form == "margin"]
    s1, s5, m5 = int((soft.gap <= 0.01).sum()), int((soft.gap <= 0.05).sum()), int((marg.gap <= 0.05).sum())
    n = len(soft)
    if n and (2 * s1 >= n or s5 >= m5):
        return "softmax", (f"the softmax form closed its gap to ≤ 1 % on {s1} of {n} form-check instances and to "
                           f"≤ 5 % on {s5} (margin form: {m5}), so the gap statistics use the thesis's softmax form")
    return "margin", (f"the softmax form closed its gap to ≤ 1 % on only {s1} of {n} form-check instances "
                      f"(≤ 5 %: {s5}, margin form: {m5}), so the gap statistics use the margin form")


def compute(scale: str = "quick", n_jobs: int = 1, scheduler=None, time_limit: float | None = None,
            progress: bool | None = None, retry_failed: bool | None = None, **overrides) -> dict:
    """Compute every grid of the chapter into the cache (the ``nnmiplib run 3`` hook).

    ``time_limit`` overrides the PV time limit. Returns the GridResults by name and the
    chosen form under ``"form"``.
    """
    cfg = preset(scale, pv_time=time_limit, **overrides)
    g = grids(cfg)
    kw = {"n_jobs": n_jobs, "scheduler": scheduler, "progress": progress, "retry_failed": retry_failed}
    res = {"bounds": g["bounds"].run(**kw)}
    res["formcheck"] = g["formcheck"].run(**kw)
    form, why = choose_form(cfg, res["formcheck"].frame())
    pg = grids(cfg, form)
    res["pv"] = pg["pv"].run(**kw)
    res["pv_mip"] = pg["pv_mip"].run(**kw)
    res["relax"] = g["relax"].run(**kw)
    res["form"], res["form_reason"] = form, why
    return res


def frame(res: dict, grid: str = "pv"):
    """PV instances joined with the time of the bounds they used: one row per instance.

    ``grid="pv"``: the branch and bound (every bound type); ``"pv_mip"``: the HiGHS MIP
    (the scale's ``mip_types``).
    """
    import pandas as pd

    pv = res[grid].frame()
    bd = res["bounds"].frame()
    if pv.empty or bd.empty:
        return pd.DataFrame(columns=["arch", "bound", "digit", "gap", "label", "verified", "x", "bound_seconds"])
    bd = bd.rename(columns={"time": "bound_seconds"})[["arch", "bound", "digit", "bound_seconds", "logit_width"]]
    shared = bd[bd.digit.isna()].drop(columns="digit")
    img = bd[bd.digit.notna()].astype({"digit": int})
    a = pv[~pv.bound.isin(IMG_TYPES)].merge(shared, on=["arch", "bound"], how="left")
    b = pv[pv.bound.isin(IMG_TYPES)].merge(img, on=["arch", "bound", "digit"], how="left")
    df = pd.concat([a, b], ignore_index=True)
    df["label"] = df.bound.map(LABELS)
    df["gap"] = df.gap.astype(float)
    return df.sort_values(["arch", "bound", "digit"]).reset_index(drop=True)


def gap_over_time(df, times) -> object:
    """Each branch-and-bound instance's relative gap at each of ``times`` (seconds of search).

    Read off the instance's trajectory: the gap ``|dual − incumbent| / |incumbent|`` of its
    last point at or before ``t`` (∞ before its first point, or with no incumbent yet); after
    its last point, the instance's final gap (its incumbent re-checked in float64). Rows
    ``arch, bound, label, digit, time, gap``; instances without a trajectory (the HiGHS MIP,
    cells from before trajectories were kept) are left out.
    """
    import pandas as pd

    from ..mip.solvers.base import relative_gap

    rows = []
    for r in df.itertuples(index=False):
        traj = getattr(r, "trajectory", None)
        if not isinstance(traj, list) or not traj:
            continue
        t = np.array([p[0] for p in traj], dtype=float)
        gaps = [relative_gap(p[2], p[1]) for p in traj]
        for x in times:
            i = int(np.searchsorted(t, x, side="right")) - 1
            g = math.inf if i < 0 else (float(r.gap) if i == len(traj) - 1 else gaps[i])
            rows.append({"arch": r.arch, "bound": r.bound, "label": LABELS.get(r.bound, r.bound),
                         "digit": int(r.digit), "time": float(x), "gap": g})
    return pd.DataFrame(rows, columns=["arch", "bound", "label", "digit", "time", "gap"])


def gap_profile(df, gaps: np.ndarray, by: str = "label"):
    """% of instances whose final gap is ≤ g, for each g and each group (Figs 3.3–3.4)."""
    import pandas as pd

    rows = []
    for key, sub in df.groupby(by):
        g = sub.gap.to_numpy(dtype=float)
        for x in gaps:
            rows.append({by: key, "gap": float(x), "share": 100.0 * float(np.mean(g <= x + 1e-12))})
    return pd.DataFrame(rows)



# --------------------------------------------------------------------------- figures
def fig_neighbours(x0: np.ndarray, windows=((3, 2), (5, 2), (7, 3)), eps: float = NEIGHBOURS["eps"]):
    """Fig 3.2: image, window means d_ij, lower (1−ε)d and upper min(1, (1+ε)d) per window size."""
    import matplotlib.pyplot as plt

    from ..domains import neighbour_means, neighbours_box

    fig, axes = plt.subplots(len(windows), 4, figsize=(8.4, 2.2 * len(windows)), squeeze=False)
    for row, (m, pad) in zip(axes, windows):
        d = neighbour_means(x0, m, pad)
        bx = neighbours_box(x0, eps=eps, m=m, pad=pad)
        panels = [(x0, "reference image x₀"), (d.ravel(), f"window means d ({m}×{m}, pad {pad})"),
                  (bx.lo, f"lower (1−ε)d, ε = {eps:g}"), (bx.hi, "upper min(1, (1+ε)d)")]
        for ax, (img, title) in zip(row, panels):
            ax.imshow(np.asarray(img).reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def pick_adversarial(df):
    """The verified PV witness that changes the class with the highest probability (Fig 3.1)."""
    if df.empty:
        return None
    ok = df[df.verified & df.x.notna()].copy()
    if ok.empty:
        return None
    ok["new_class"] = [c[0] if c else -1 for c in ok.classes]
    ok["new_prob"] = [max(p[0]) if p else 0.0 for p in ok.probabilities]
    flipped = ok[ok.new_class != ok.x0_class]
    pool = flipped if len(flipped) else ok
    return pool.sort_values(["new_prob", "objective"], ascending=False).iloc[0]


def fig_adversarial(row, x0: np.ndarray):
    """Fig 3.1: reference image, the PV witness, and both class-probability vectors."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(9.5, 2.9), gridspec_kw={"width_ratios": [1, 1, 1.6]})
    x = np.asarray(row.x)
    p0, p1 = np.asarray(row.x0_prob), np.asarray(row.probabilities[0])
    ax[0].imshow(x0.reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
    ax[0].set_title(f"x₀: class {row.x0_class} ({p0.max():.1%})", fontsize=9)
    ax[1].imshow(x.reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
    ax[1].set_title(f"PV witness: class {int(np.argmax(p1))} ({p1.max():.1%})", fontsize=9)
    for a in ax[:2]:
        a.set_xticks([]), a.set_yticks([])
    k = np.arange(10)
    ax[2].bar(k - 0.2, p0, 0.4, label="N(x₀)")
    ax[2].bar(k + 0.2, p1, 0.4, label="N(x*)")
    ax[2].set_xticks(k), ax[2].set_xlabel("class"), ax[2].set_ylabel("probability")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


PANELS_33 = (("a", 0.01), ("b", 0.025), ("c", 0.05), ("d", 0.10))


def fig_profiles(df, panels=PANELS_33):
    """Fig 3.3 a–d: % of instances with final gap ≤ g, by bound type, on four gap ranges."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if df.empty:
        return placeholder("not yet run: no PV instance finished at this scale")
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.1), sharey=True)
    order = [LABELS[b] for b in BOUND_TYPES]
    for ax, (tag, gmax) in zip(axes, panels):
        prof = gap_profile(df, np.linspace(0, gmax, 41))
        prof["gap %"] = 100 * prof.gap
        sns.lineplot(prof, x="gap %", y="share", hue="label", hue_order=order, ax=ax, drawstyle="steps-post",
                     legend=(tag == "d"))
        ax.set_title(f"({tag}) gap ≤ {100 * gmax:g} %", fontsize=9)
        ax.set_ylabel("% of instances"), ax.set_ylim(-3, 103)
    if axes[-1].get_legend():
        sns.move_legend(axes[-1], "lower right", fontsize=7, title=None)
    fig.tight_layout()
    return fig


def fig_profiles_by_arch(df, gmax: float = 0.05):
    """Fig 3.4 a–d: the gap profile over 0–5 %, one panel per architecture."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if df.empty:
        return placeholder("not yet run: no PV instance finished at this scale")
    fig, axes = plt.subplots(1, len(ARCHS), figsize=(12, 3.1), sharey=True)
    order = [LABELS[b] for b in BOUND_TYPES]
    for ax, tag, arch in zip(axes, "abcd", ARCHS):
        prof = gap_profile(df[df.arch == arch], np.linspace(0, gmax, 41))
        if not prof.empty:
            prof["gap %"] = 100 * prof.gap
            sns.lineplot(prof, x="gap %", y="share", hue="label", hue_order=order, ax=ax,
                         drawstyle="steps-post", legend=(arch == ARCHS[-1]))
        ax.set_title(f"({tag}) {arch}", fontsize=9)
        ax.set_ylabel("% of instances"), ax.set_ylim(-3, 103)
    if axes[-1].get_legend():
        sns.move_legend(axes[-1], "lower right", fontsize=7, title=None)
    fig.tight_layout()
    return fig


def fig_anytime(df, points: int = 60, cap: float = 10.0):
    """Extra: the median gap of the branch and bound over its run, by bound type, one panel per
    architecture (gaps beyond ``cap``, or without an incumbent, drawn at ``cap``)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    trajs = [t for t in (df.trajectory if "trajectory" in df else []) if isinstance(t, list) and t]
    if not trajs:
        return placeholder("not yet run: no branch-and-bound trajectory at this scale")
    first = max(1e-2, min((p[0] for t in trajs for p in t if p[0] > 0), default=1e-2))
    times = np.geomspace(first, max(max(t[-1][0] for t in trajs), 2 * first), points)
    g = gap_over_time(df, times)
    g["gap %"] = 100 * np.clip(g.gap.astype(float), 1e-6, cap)
    med = g.groupby(["arch", "label", "time"], as_index=False)["gap %"].median()
    fig, axes = plt.subplots(1, len(ARCHS), figsize=(12, 3.1), sharey=True)
    order = [LABELS[b] for b in BOUND_TYPES]
    for ax, tag, arch in zip(axes, "abcd", ARCHS):
        sub = med[med.arch == arch]
        if not sub.empty:
            sns.lineplot(sub, x="time", y="gap %", hue="label", hue_order=order, ax=ax, drawstyle="steps-post",
                         legend=(arch == ARCHS[-1]))
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
        ax.set_title(f"({tag}) {arch}", fontsize=9)
        ax.set_xlabel("seconds of search"), ax.set_ylabel("median gap %")
    if axes[-1].get_legend():
        sns.move_legend(axes[-1], "upper left", fontsize=7, title=None, bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def fig_bound_times(bounds_df):
    """Fig 3.5: box plot of bound-computation time per bound type (log scale)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if bounds_df.empty:
        return placeholder("not yet run: no bound computation finished at this scale")
    d = bounds_df.copy()
    d["label"] = d.bound.map(LABELS)
    d["seconds"] = np.maximum(d.time.astype(float), 1e-4)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    order = [LABELS[b] for b in BOUND_TYPES]
    sns.boxplot(d, x="label", y="seconds", order=order, ax=ax, color="#9ecae1", log_scale=True)
    sns.stripplot(d, x="label", y="seconds", order=order, ax=ax, color="k", size=3, alpha=0.6)
    ax.set_xlabel("bound type"), ax.set_ylabel("bound time (s, log)")
    fig.tight_layout()
    return fig


def fig_relaxation(relax_df):
    """Extra: root-LP bound on the PV margin vs the best sampled margin, per bound type and net."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if relax_df.empty:
        return placeholder("not yet run: no relaxation finished at this scale")
    d = relax_df.copy()
    d["label"] = d.bound.map(LABELS)
    d["excess"] = np.maximum(d.relax_bound.astype(float) - d.sampled.astype(float), 1e-6)
    d = d[np.isfinite(d.excess)]  # an LP stopped by its time limit without a bound is left out
    if d.empty:
        return placeholder("no root relaxation finished within its time limit")
    fig, ax = plt.subplots(figsize=(8.5, 3.4))
    sns.stripplot(d, x="arch", y="excess", hue="label", hue_order=[LABELS[b] for b in BOUND_TYPES],
                  order=list(ARCHS), dodge=True, log_scale=True, ax=ax, size=5)
    ax.set_xlabel("network"), ax.set_ylabel("root-LP bound − sampled margin (log)")
    sns.move_legend(ax, "upper left", fontsize=7, title=None)
    fig.tight_layout()
    return fig


def engines_frame(df_bab, df_mip):
    """One row per (instance, bound type) solved by both engines: final gap and time of each."""
    import pandas as pd

    if df_bab.empty or df_mip.empty:
        return pd.DataFrame(columns=["arch", "bound", "digit", "gap_bab", "gap_mip", "time_bab", "time_mip"])
    cols = ["arch", "bound", "digit", "gap", "time", "dual_bound", "objective"]
    m = df_bab[cols].merge(df_mip[cols], on=["arch", "bound", "digit"], suffixes=("_bab", "_mip"))
    m["label"] = m.bound.map(LABELS)
    return m


def fig_engines(eng):
    """Extra: final gap of the branch and bound against the HiGHS MIP, same instances and constants."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if eng.empty:
        return placeholder("not yet run: no instance solved by both engines at this scale")
    d = eng.copy()
    cap = 10.0  # gaps without incumbent (∞) or beyond 1000 % are drawn at the edge
    for c in ("gap_bab", "gap_mip"):
        d[c] = np.clip(np.nan_to_num(d[c].astype(float), nan=cap, posinf=cap), 1e-6, cap)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    sns.scatterplot(d, x="gap_mip", y="gap_bab", hue="label", style="arch", ax=ax, s=45)
    ax.plot([1e-6, cap], [1e-6, cap], color="0.6", lw=0.8, ls="--")
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("final gap, HiGHS MIP"), ax.set_ylabel("final gap, branch and bound")
    sns.move_legend(ax, "upper left", fontsize=7, title=None, bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- verdicts
def share_at(df, gap: float, by: str = "bound") -> dict:
    """% of instances with gap ≤ ``gap`` per group."""
    return {k: 100.0 * float(np.mean(s.gap.to_numpy(float) <= gap + 1e-12)) for k, s in df.groupby(by)}


def _open_at_limit(df, gap: float = 0.01):
    """Instances whose gap is above ``gap`` because the solve stopped at its time limit."""
    st = df.status.astype(str) if "status" in df else None
    if st is None:
        return df.iloc[:0]
    return df[(df.gap.astype(float) > gap + 1e-12) & ~st.isin(["optimal", "decided", "infeasible"])]


def judge(df, bounds_df, form: str, relax_df=None, pv_time: float | None = None,
          img_time: float | None = None) -> list:
    """F3.1–F3.4 judged by explicit rules on the measured gaps and times (SPEC §3).

    With ``relax_df`` (the extra root-relaxation grid) the median root-LP bound per bound
    type is quoted beside the gap numbers of F3.1, F3.2 and F3.4 (evidence, not the rule).
    F3.1, F3.2 and F3.4 count instances by their final gap, which a longer limit can only
    shrink: a verdict short of "confirmed" while at least half of the instances stopped at
    the time limit above 1 % gap is "undecided at this scale" (the number of such
    instances and the limit ``pv_time`` named). F3.3 is undecided likewise when it falls
    short and at least half of the IP+img bound runs ended their MILP stage at its budget
    (``capped`` in ``bounds_df``: neurons left at their LP bounds; the times are then capped).
    """
    from .verdicts import THESIS_FINDINGS, UNDECIDED, Finding

    extra = ""
    if relax_df is not None and len(relax_df):
        med = relax_df.groupby("bound").relax_bound.median()
        extra = "; median root-LP margin bound " + ", ".join(
            f"{LABELS[b]} {med[b]:.3g}" for b in BOUND_TYPES if b in med.index)

    lim_txt = f"{pv_time:g} s" if pv_time else "its limit"
    open_ = _open_at_limit(df) if not df.empty else df
    n_open, n_all = len(open_), len(df)
    gap_limit = (f"{n_open} of {n_all} PV instances stopped at the {lim_txt} limit with a gap above 1 %: a longer "
                 "limit can only close gaps") if n_all and n_open >= 0.5 * n_all else ""
    undecided_rule = "; undecided at this scale when short of confirmed while ≥ half the instances stopped at the " \
                     "time limit above 1 % gap"

    def f(fid, ours, verdict, rule, limit_why=None):
        claim, thesis = THESIS_FINDINGS[fid]
        tail = extra if fid in ("F3.1", "F3.2", "F3.4") else ""
        why = gap_limit if limit_why is None else limit_why
        if verdict in ("partly", "refuted") and why:
            verdict = UNDECIDED
        else:
            why = ""
        return Finding(fid, claim, thesis, ours + tail + f" [PV form: {form}]", verdict,
                       rule + (undecided_rule if limit_why is None else ""), limit=why)

    if df.empty or bounds_df.empty:
        return [Finding(fid, *THESIS_FINDINGS[fid], "no PV instance finished at this scale", "not yet run")
                for fid in ("F3.1", "F3.2", "F3.3", "F3.4")]
    s1, s5 = share_at(df, 0.01), share_at(df, 0.05)
    g = lambda d, k: d.get(k, float("nan"))
    out = []
    # F3.1
    naive, lp, img = g(s1, "naive"), g(s1, "lp"), g(s1, "milp+img")
    ok = naive < 50 and lp >= 50 and img >= 50
    part = naive < min(lp, img) or max(s1.values()) == 0
    out.append(f("F3.1", f"gap ≤ 1 %: naive {naive:.0f} %, LP {lp:.0f} %, IP+img {img:.0f} % of instances",
                 "confirmed" if ok else "partly" if part else "refuted",
                 "confirmed if naive < 50 % and LP, IP+img ≥ 50 % at gap ≤ 1 %; partly if only naive < both, "
                 "or if no bound type reaches 1 % at all (naive's half of the claim holds, the other is not "
                 "reached within our limits)"))
    # F3.2
    shallow, deep = ["3000x1", "800x2"], ["200x5", "100x10"]
    sh = df[df.arch.isin(shallow)]
    dp = df[df.arch.isin(deep)]
    sh75 = share_at(sh, 0.075)
    dp1 = share_at(dp, 0.01)
    best_sh = max(sh75.values()) if sh75 else float("nan")
    c1 = g(sh75, "naive") >= best_sh - 20
    c2 = g(dp1, "naive") <= g(dp1, "lp") - 20
    out.append(f("F3.2", f"shallow nets at gap ≤ 7.5 %: naive {g(sh75, 'naive'):.0f} % vs best {best_sh:.0f} %; "
                         f"deep nets at ≤ 1 %: naive {g(dp1, 'naive'):.0f} % vs LP {g(dp1, 'lp'):.0f} %",
                 "confirmed" if c1 and c2 else "partly" if c1 or c2 else "refuted",
                 "competitive = within 20 points of the best type at 7.5 % on 3000x1/800x2; "
                 "poor = ≥ 20 points below LP at 1 % on 200x5/100x10; both → confirmed, one → partly"))
    # F3.3
    t = bounds_df.assign(time=bounds_df.time.astype(float))
    spread = {b: float(np.log10(np.maximum(s.time, 1e-4)).std()) for b, s in t.groupby("bound") if len(s) > 1}
    rng_ = {b: (float(s.time.min()), float(s.time.max())) for b, s in t.groupby("bound")}
    ip = spread.get("milp+img", float("nan"))
    ipt = t[t.bound == "milp+img"]
    n_cap = int(ipt.capped.fillna(False).astype(bool).sum()) if "capped" in ipt else 0
    lim_img = f" of {img_time:g} s" if img_time else ""
    ip_limit = (f"{n_cap} of {len(ipt)} IP+img bound runs ended their MILP stage at its budget{lim_img} with "
                "neurons left at their LP bounds: their times are capped" if len(ipt) and n_cap >= 0.5 * len(ipt)
                else "")
    rank = sorted(spread, key=spread.get, reverse=True)
    lo_, hi_ = rng_.get("milp+img", (float("nan"),) * 2)
    out.append(f("F3.3", f"IP+img bound times {lo_:.2g}–{hi_:.2g} s, std of log10 time {ip:.2f} "
                         f"(rank {rank.index('milp+img') + 1 if 'milp+img' in rank else '—'} of {len(rank)} types)",
                 "confirmed" if rank[:1] == ["milp+img"] else "partly" if "milp+img" in rank[:2] else "refuted",
                 "spread = std of log10(bound time) over instances; confirmed if IP+img has the largest, "
                 "partly if second; undecided at this scale when short of that while ≥ half the IP+img runs "
                 "stopped at their limit", limit_why=ip_limit))
    # F3.4
    med = {b: float(s.time.median()) for b, s in t.groupby("bound")}
    best5 = max(s5.values()) if s5 else float("nan")
    quality = g(s5, "lp") >= best5 - 10
    cheaper = med.get("lp", math.inf) <= min(med.get("milp", math.inf), med.get("milp+img", math.inf))
    out.append(f("F3.4", f"gap ≤ 5 %: LP {g(s5, 'lp'):.0f} % vs best {best5:.0f} %; median bound time LP "
                         f"{med.get('lp', float('nan')):.2g} s, MILP {med.get('milp', float('nan')):.2g} s, "
                         f"IP+img {med.get('milp+img', float('nan')):.2g} s",
                 "confirmed" if quality and cheaper else "partly" if quality or cheaper else "refuted",
                 "best trade-off = LP within 10 points of the best type at gap ≤ 5 % and LP's median bound "
                 "time ≤ MILP's and IP+img's; both → confirmed, one → partly"))
    return out


def placeholder(text: str, size=(6.0, 1.6)):
    """A figure that says why the real one could not be drawn (the glue name must exist)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True)
    return fig


def findings_markdown(findings) -> str:
    """One prose line per verdict, with the numbers and the rule."""
    from .verdicts import verdict_text

    return "\n".join(f"- **{f.id}** — *{verdict_text(f)}*: {f.ours}. (Rule: {f.rule}.)" for f in findings)
