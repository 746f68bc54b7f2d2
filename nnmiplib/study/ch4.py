"""Chapter 4 — the MIP comparator of two networks (thesis §4).

Two Big-M models share one input x ∈ X (problem PC); the objective compares them:

- **maxdiff** — max ‖softmax(a₁) − softmax(a₂)‖₁ (Tables 4.2–4.7, Figs 4.2–4.7), on the
  four L1 λ = 2·10⁻⁴ nets pruned by 90 % and bounded by the LP Bounder on each domain
  (the comparator models exactly the networks its bounds belong to, SPEC §6);
- **maxout** — N₁ answers C₁ and N₂ answers C₂ (thesis eq. 4.13, typo corrected);
- **maxflip** — the number of neurons whose activation differs (same architecture);
- **mineps** — the smallest L∞ radius ε* around x_d at which a pruned copy answers
  differently from the original (thesis 4.14–4.19), over 40 pruning levels (Figs 4.8–4.10).

Domains of §4.3.1: ``non_imgref`` = [0,1]^784, ``imgref_simple`` = L∞ ball δ = 0.05
clipped to [0,1], ``imgref_neighbours`` = the neighbours box of §3.2.1 with ε = δ = 0.05.
Every expensive step is a cached :class:`~nnmiplib.experiments.Grid` cell; the thesis's
own tables are kept here as data (``THESIS_TABLES``, from THESIS-NUMBERS §6) so the book
prints them beside ours. Figures and verdicts: :mod:`nnmiplib.study.ch4` ``fig_*`` and
:func:`judge` (second half of this module).
"""

from __future__ import annotations

import logging
from itertools import combinations
from pathlib import Path

import numpy as np

from ..paths import results_dir
from ..queries import cache_version
from .common import Preset, check_scale

log = logging.getLogger(__name__)

ARCHS = ("3000x1", "800x2", "200x5", "100x10")
FCNN = {"3000x1": "fcnn1", "800x2": "fcnn2", "200x5": "fcnn5", "100x10": "fcnn10"}
DOMAINS = ("imgref_simple", "imgref_neighbours", "non_imgref")
DELTA = 0.05
PRUNE = 0.9
REG, LAM = "l1", 2e-4
#: the thesis's reported cases: table id → (net 1, net 2, domain)
CASES = {
    "4.2": ("800x2", "200x5", "imgref_simple"), "4.3": ("800x2", "200x5", "imgref_neighbours"),
    "4.4": ("800x2", "100x10", "imgref_simple"), "4.5": ("800x2", "100x10", "imgref_neighbours"),
    "4.6": ("200x5", "100x10", "imgref_simple"), "4.7": ("200x5", "100x10", "imgref_neighbours"),
}
#: Tables 4.2–4.7 as printed (THESIS-NUMBERS §6): real, net-1 class, prob 1 (%), net-2 class, prob 2 (%), L1 diff
THESIS_TABLES = {
    "4.2": [(0, 0, 64, 0, 94, 0.63), (1, 1, 81, 1, 99, 0.367), (2, 8, 49, 2, 92, 0.93), (3, 3, 100, 3, 100, 0.008),
            (4, 9, 80, 4, 97, 1.551), (5, 5, 100, 5, 83, 0.334), (6, 6, 99, 8, 64, 1.408), (7, 7, 72, 7, 98, 0.533),
            (8, 8, 99, 9, 92, 1.861), (9, 9, 90, 9, 99, 0.187)],
    "4.3": [(0, 6, 99, 0, 92, 1.965), (1, 1, 92, 3, 87, 1.917), (2, 2, 98, 8, 99, 1.97), (3, 3, 100, 8, 75, 1.996),
            (4, 8, 97, 9, 97, 1.985), (5, 5, 98, 9, 98, 1.997), (6, 6, 94, 0, 99, 1.998), (7, 8, 88, 3, 98, 1.945),
            (8, 8, 100, 7, 99, 1.998), (9, 5, 99, 9, 98, 1.981)],
    "4.4": [(0, 0, 68, 0, 99, 0.634), (1, 1, 95, 8, 85, 1.639), (2, 2, 90, 8, 98, 1.793), (3, 3, 100, 3, 98, 0.033),
            (4, 9, 73, 4, 98, 1.772), (5, 5, 99, 5, 88, 0.239), (6, 6, 97, 6, 99, 0.056), (7, 7, 96, 2, 94, 1.829),
            (8, 8, 72, 8, 99, 0.557), (9, 9, 95, 4, 78, 1.548)],
    "4.5": [(0, 6, 72, 2, 99, 1.959), (1, 1, 96, 8, 99, 1.984), (2, 7, 98, 8, 99, 1.988), (3, 1, 99, 9, 99, 1.993),
            (4, 9, 95, 8, 100, 1.981), (5, 5, 100, 7, 87, 1.981), (6, 2, 55, 6, 64, 1.974), (7, 7, 100, 8, 80, 1.991),
            (8, 7, 99, 8, 57, 1.962), (9, 5, 89, 4, 98, 1.976)],
    "4.6": [(0, 0, 86, 0, 100, 0.278), (1, 1, 100, 8, 82, 1.655), (2, 2, 95, 8, 99, 1.977), (3, 3, 100, 3, 99, 0.026),
            (4, 4, 64, 4, 97, 0.71), (5, 5, 82, 5, 99, 0.351), (6, 8, 55, 6, 100, 1.34), (7, 7, 99, 8, 92, 1.944),
            (8, 9, 97, 8, 100, 1.957), (9, 9, 99, 4, 62, 1.5)],
    "4.7": [(0, 2, 97, 0, 76, 1.948), (1, 3, 100, 8, 100, 1.996), (2, 7, 71, 8, 100, 1.999), (3, 4, 64, 3, 99, 1.989),
            (4, 9, 98, 8, 94, 1.992), (5, 9, 59, 8, 99, 1.984), (6, 8, 97, 6, 99, 1.974), (7, 7, 97, 9, 74, 1.98),
            (8, 9, 100, 8, 99, 1.989), (9, 9, 98, 8, 98, 1.979)],
}
#: mineps pruning grid of §4.3.2: p = 5 % … 92.75 %, step 2.25 % (40 levels)
PRUNE_LEVELS = tuple(round(0.05 + 0.0225 * i, 4) for i in range(40))

_SCALES = {
    "smoke": {"digits": (3, 8), "pairs": (("800x2", "200x5"), ("200x5", "100x10")),
                  "domains": ("imgref_simple", "imgref_neighbours"), "unit_pairs": 1, "bound_time": 1.0, "md_time": 1.0,
                  "mineps_levels": (0, 13, 26, 39), "mineps_time": 1.0, "maxout_time": 1.0, "flip_time": 1.0},
    "quick": {"digits": tuple(range(10)), "pairs": tuple((a, b) for a, b, _ in list(CASES.values())[::2]),
                  "domains": ("imgref_simple", "imgref_neighbours"), "unit_pairs": 1, "bound_time": 10.0,
                  "md_time": 20.0, "mineps_levels": (0, 4, 12, 20, 26, 28, 32, 36, 39), "mineps_time": 5.0,
                  "maxout_time": 5.0, "flip_time": 5.0},
    "paper": {"digits": tuple(range(10)), "pairs": tuple(combinations(ARCHS, 2)), "domains": DOMAINS[:2],
                  "unit_pairs": 6, "bound_time": 600.0, "md_time": 600.0, "mineps_levels": tuple(range(40)),
                  "mineps_time": 4 * 3600.0, "maxout_time": 600.0, "flip_time": 600.0},
}


def preset(scale: str = "quick", *, digits=None, md_time=None, mineps_time=None, bound_time=None,
           mineps_levels=None, seed: int = 0) -> Preset:
    """The chapter's parameters at ``scale`` and the deviations from the thesis they imply.

    ``md_time``: seconds per maxdiff (and per maxout/maxflip unless set by scale);
    ``bound_time``: seconds per LP-bound run; ``mineps_time``: seconds per mineps run;
    ``mineps_levels``: indices into :data:`PRUNE_LEVELS`.
    """
    check_scale(scale)
    p = dict(_SCALES[scale])
    if digits is not None:
        p["digits"] = tuple(int(d) for d in digits)
    if mineps_levels is not None:
        p["mineps_levels"] = tuple(int(i) for i in mineps_levels)
    for k, v in {"md_time": md_time, "mineps_time": mineps_time, "bound_time": bound_time}.items():
        if v is not None:
            if v <= 0:
                raise ValueError(f"{k} must be > 0 seconds, got {v}")
            p[k] = float(v)
    if any(not 0 <= d <= 9 for d in p["digits"]):
        raise ValueError(f"digits must lie in 0..9, got {p['digits']}")
    if any(not 0 <= i < 40 for i in p["mineps_levels"]):
        raise ValueError("mineps_levels are indices 0..39 into PRUNE_LEVELS")
    p.update(scale=scale, seed=int(seed))
    dev = []
    if scale == "smoke":
        dev.append("smoke stand-in nets of the same depth (32x2, 24x5, 16x10; 15x2 itself), 2 epochs on 6 000 images")
    elif scale == "quick":
        dev.append("the thesis's own nets (50 epochs, the same files as at paper scale); fewer pairs, pruning levels "
                   "and shorter time limits, below")
    npairs = len(p["pairs"])
    if npairs < 6:
        dev.append(f"maxdiff on {npairs} of the 6 pairs ({', '.join(f'{a} vs {b}' for a, b in p['pairs'])}) "
                   f"on the image domains; non_imgref on {p['unit_pairs']} pairs")
    if len(p["digits"]) < 10:
        dev.append(f"digits {', '.join(map(str, p['digits']))} only (the thesis: all 10)")
    lv = p["mineps_levels"]
    if len(lv) < 40:
        dev.append(f"mineps on {len(lv)} of the 40 pruning levels "
                   f"({', '.join(f'{100 * PRUNE_LEVELS[i]:g} %' for i in lv)})")
    dev.append(f"time limits: LP bounds {p['bound_time']:g} s per (net, domain, image), maxdiff "
               f"{p['md_time']:g} s, maxout {p['maxout_time']:g} s, maxflip {p['flip_time']:g} s, "
               f"mineps {p['mineps_time']:g} s (thesis: mineps 4 h, others unstated)")
    dev.append("solver HiGHS with a sound piecewise-linear softmax relaxation instead of Gurobi 9.1.2")
    return Preset(scale, p, dev)


# --------------------------------------------------------------------------- inputs
def _net(arch: str, scale: str, seed: int):
    from ..train import zoo_net

    return zoo_net(arch, REG, LAM, scale=scale, seed=seed)


def _pruned(arch: str, scale: str, seed: int, p: float):
    from ..prune import prune_fraction

    return prune_fraction(_net(arch, scale, seed), p)[0]


def reference_image(digit: int, seed: int) -> np.ndarray:
    """The chapter's x₀ of ``digit``: the same random test image as chapter 3."""
    from .ch3 import reference_images

    return reference_images([digit], seed)[digit][1]


def domain(name: str, x0: np.ndarray | None):
    """The three domains of §4.3.1."""
    from ..domains import linf_ball, neighbours_box, unit_box

    if name == "non_imgref":
        return unit_box(784)
    if name == "imgref_simple":
        return linf_ball(x0, DELTA)
    if name == "imgref_neighbours":
        return neighbours_box(x0, eps=DELTA)
    raise ValueError(f"unknown domain {name!r}; choose one of {', '.join(DOMAINS)}")


def mineps_image(net, digit: int, seed: int) -> tuple[int, np.ndarray]:
    """x_d for mineps: a random test image of label d that ``net`` classifies as d (§4.3.2)."""
    from ..data import load_mnist

    x, y = load_mnist()[2]
    ok = np.flatnonzero((y == digit) & (net.predict(x) == digit))
    if ok.size == 0:
        raise ValueError(f"the net classifies no test image of digit {digit} correctly")
    idx = int(np.random.default_rng([seed, digit, 4]).choice(ok))
    return idx, np.asarray(x[idx], dtype=np.float64)


def _bounds_path(digest: str, dom: str, digit, t: float) -> Path:
    return results_dir() / "ch4-bounds" / f"{digest[:16]}-{dom}-{'all' if digit is None else f'd{digit}'}-t{t:g}.npz"


# --------------------------------------------------------------------------- cells
def bounds_cell(arch: str, scale: str, seed: int, dom: str, digit, prune: float, time_limit: float) -> dict:
    """LP Bounder on the ``prune``-pruned net over one domain; the bounds go to ``ch4-bounds/``."""
    import time as _t

    from ..bounds import compute_bounds

    net = _pruned(arch, scale, seed, prune)
    box = domain(dom, None if digit is None else reference_image(digit, seed))
    t0 = _t.perf_counter()
    b = compute_bounds(net, box, method="lp", time_limit=time_limit, progress=False)
    path = b.save(_bounds_path(net.digest(), dom, digit, time_limit))
    return {"time": _t.perf_counter() - t0, "stable_share": float(b.stable_share()), "path": path.name}


def _bounds(arch, scale, seed, dom, digit, prune, t):
    from ..bounds import Bounds

    net = _pruned(arch, scale, seed, prune)
    path = _bounds_path(net.digest(), dom, digit, t)
    if not path.exists():
        bounds_cell(arch, scale, seed, dom, digit, prune, t)
    return net, Bounds.load(path, net)


def _summary(r) -> dict:
    return {"status": r.status, "objective": r.objective, "dual_bound": r.dual_bound,
            "gap": float(r.gap) if r.gap is not None else float("inf"), "time": float(r.time),
            "verified": bool(r.verified), "classes": list(r.classes),
            "probs": [float(np.max(p)) for p in r.probabilities],
            "x": None if r.x is None else np.asarray(r.x).tolist(), "incumbent_source": r.incumbent_source,
            # per network, the class the LP logit-difference bounds prove wins on the whole domain (or None)
            "forced": [None if c is None else int(c) for c in r.extra.get("forced_class", [])] or None}


def maxdiff_cell(arch1: str, arch2: str, scale: str, seed: int, dom: str, digit, prune: float,
                 time_limit: float, bound_time: float) -> dict:
    """maxdiff of the two pruned nets on one domain (one row of Tables 4.2–4.7)."""
    from ..queries import maxdiff

    n1, b1 = _bounds(arch1, scale, seed, dom, digit, prune, bound_time)
    n2, b2 = _bounds(arch2, scale, seed, dom, digit, prune, bound_time)
    box = domain(dom, None if digit is None else reference_image(digit, seed))
    return _summary(maxdiff(n1, n2, box, bounds=(b1, b2), time_limit=time_limit))


def maxout_cell(arch1: str, arch2: str, scale: str, seed: int, dom: str, digit: int, prune: float,
                time_limit: float, bound_time: float, tau: float) -> dict:
    """maxout with C₁ = the true digit and C₂ = net 2's runner-up class at x₀."""
    from ..queries import maxout

    n1, b1 = _bounds(arch1, scale, seed, dom, digit, prune, bound_time)
    n2, b2 = _bounds(arch2, scale, seed, dom, digit, prune, bound_time)
    x0 = reference_image(digit, seed)
    c2 = int(np.argsort(n2.forward(x0))[-2]) if int(np.argmax(n2.forward(x0))) == digit else int(np.argmax(n2.forward(x0)))
    r = maxout(n1, n2, domain(dom, x0), digit, c2, tau, bounds=(b1, b2), time_limit=time_limit)
    return {**_summary(r), "c1": digit, "c2": c2}


def maxflip_cell(arch: str, scale: str, seed: int, p1: float, p2: float, dom: str, digit, time_limit: float) -> dict:
    """maxflip between two pruned copies of one net (p = 0 is the original)."""
    from ..queries import maxflip

    n1, n2 = _pruned(arch, scale, seed, p1), _pruned(arch, scale, seed, p2)
    box = domain(dom, None if digit is None else reference_image(digit, seed))
    r = maxflip(n1, n2, box, time_limit=time_limit)
    n_hidden = int(sum(n1.hidden_sizes))
    return {**_summary(r), "n_hidden": n_hidden}


def mineps_cell(scale: str, seed: int, digit: int, p: float, time_limit: float) -> dict:
    """mineps (4.14–4.19): ε* for the 15x2 net against its copy pruned by ``p``."""
    from ..data import load_mnist
    from ..queries import mineps

    net = _net("15x2", scale, seed)
    pruned = _pruned("15x2", scale, seed, p)
    idx, x0 = mineps_image(net, digit, seed)
    r = mineps(net, pruned, x0, digit, time_limit=time_limit)
    x, y = load_mnist()[2]
    # objective = ‖x − x₀‖∞ of the verified witness; dual_bound = a lower bound on ε*
    return {**_summary(r), "eps": r.objective if r.verified else None, "eps_lower": r.dual_bound,
            "accuracy": float(pruned.accuracy(x, y)), "index": idx}


# --------------------------------------------------------------------------- grids
def _digests(cfg: Preset):
    d: dict[str, str] = {}

    def dig(a: str) -> str:
        if a not in d:
            d[a] = _net(a, cfg.scale, cfg.seed).digest()
        return d[a]

    def key(params):
        return sorted({dig(params[k]) for k in ("arch", "arch1", "arch2") if k in params}) or dig("15x2")

    return key


def _flip_cases(cfg: Preset) -> list[dict]:
    """maxflip: the 15x2 net against its 50 % and 90 % pruned copies, simple domain per digit."""
    return [{"arch": "15x2", "scale": cfg.scale, "seed": cfg.seed, "p1": 0.0, "p2": p2, "dom": "imgref_simple", "digit": d,
                 "time_limit": cfg.flip_time} for p2 in (0.5, 0.9) for d in cfg.digits]


def grids(cfg: Preset) -> dict:
    """The chapter's grids: ``bounds``, ``maxdiff``, ``maxout``, ``maxflip``, ``mineps``."""
    from ..experiments import Grid

    key = _digests(cfg)
    base = {"scale": cfg.scale, "seed": cfg.seed}
    archs = sorted({a for pr in cfg.pairs for a in pr}, key=ARCHS.index)
    # non_imgref: the reported pairs first, then the others, as many as the scale allows
    candidates = list(cfg.pairs) + [q for q in combinations(ARCHS, 2) if q not in cfg.pairs]
    unit_pairs = candidates[: cfg.unit_pairs]
    unit_archs = sorted({a for pr in unit_pairs for a in pr}, key=ARCHS.index)
    bcells = [dict(arch=a, **base, dom=dm, digit=d, prune=PRUNE, time_limit=cfg.bound_time)
              for a in archs for dm in cfg.domains for d in cfg.digits]
    bcells += [dict(arch=a, **base, dom="non_imgref", digit=None, prune=PRUNE, time_limit=cfg.bound_time)
               for a in unit_archs]
    mcells = [dict(arch1=a1, arch2=a2, **base, dom=dm, digit=d, prune=PRUNE, time_limit=cfg.md_time,
                   bound_time=cfg.bound_time) for a1, a2 in cfg.pairs for dm in cfg.domains for d in cfg.digits]
    mcells += [dict(arch1=a1, arch2=a2, **base, dom="non_imgref", digit=None, prune=PRUNE,
                    time_limit=cfg.md_time, bound_time=cfg.bound_time) for a1, a2 in unit_pairs]
    ocells = [dict(arch1=a1, arch2=a2, **base, dom="imgref_simple", digit=d, prune=PRUNE,
                   time_limit=cfg.maxout_time, bound_time=cfg.bound_time, tau=0.1)
              for a1, a2 in cfg.pairs for d in cfg.digits]
    ecells = [dict(**base, digit=d, p=PRUNE_LEVELS[i], time_limit=cfg.mineps_time)
              for d in cfg.digits for i in cfg.mineps_levels]
    s = cfg.scale
    return {
        "bounds": Grid(f"ch4-bounds-{s}", bounds_cell, bcells, key_extra=key),
        "maxdiff": Grid(f"ch4-maxdiff-{s}", maxdiff_cell, mcells, key_extra=key,
                        version=cache_version()),
        "maxout": Grid(f"ch4-maxout-{s}", maxout_cell, ocells, key_extra=key,
                        version=cache_version()),
        "maxflip": Grid(f"ch4-maxflip-{s}", maxflip_cell, _flip_cases(cfg), key_extra=key,
                        version=cache_version()),
        "mineps": Grid(f"ch4-mineps-{s}", mineps_cell, ecells, key_extra=key,
                        version=cache_version()),
    }


def compute(scale: str = "quick", n_jobs: int = 1, scheduler=None, time_limit: float | None = None,
            progress: bool | None = None, only=None, retry_failed: bool | None = None, **overrides) -> dict:
    """Compute every grid of the chapter into the cache (the ``nnmiplib run 4`` hook).

    ``time_limit`` overrides the maxdiff time limit; ``only`` restricts to some grid names.
    """
    cfg = preset(scale, md_time=time_limit, **overrides)
    out = {}
    for name, g in grids(cfg).items():
        if only is None or name in only:
            out[name] = g.run(n_jobs=n_jobs, scheduler=scheduler, progress=progress, retry_failed=retry_failed)
    return out


# --------------------------------------------------------------------------- tables
COLS = ["Real", "Net 1", "Prob 1", "Net 2", "Prob 2", "L1 diff"]


def table41():
    """Table 4.1: the four maxdiff networks."""
    import pandas as pd

    from ..train import ARCHITECTURES

    return pd.DataFrame([{"net": FCNN[a], "name": a, "hidden layers": str(ARCHITECTURES[a]).replace(" ", ""),
                          "depth": len(ARCHITECTURES[a])} for a in ARCHS])


def thesis_table(tid: str):
    """One of Tables 4.2–4.7 as printed by the thesis (probabilities in %)."""
    import pandas as pd

    return pd.DataFrame(THESIS_TABLES[tid], columns=COLS)


MD_COLUMNS = ["arch1", "arch2", "dom", "digit", "verified", "classes", "probs", "objective", "dual_bound",
              "status", "x", "gap"]


def _md(md):
    """``md`` itself, or an empty frame with the maxdiff columns when nothing finished."""
    import pandas as pd

    return md if len(md) and "arch1" in md else pd.DataFrame(columns=MD_COLUMNS)


def our_table(md, arch1: str, arch2: str, dom: str):
    """Our rows of one case: classes and probabilities of each net at the maxdiff witness."""
    import pandas as pd

    md = _md(md)
    sub = md[(md.arch1 == arch1) & (md.arch2 == arch2) & (md.dom == dom)].sort_values("digit")
    rows = []
    for r in sub.itertuples():
        ok = bool(r.verified) and r.classes is not None and len(r.classes) == 2
        rows.append({"Real": int(r.digit), "Net 1": r.classes[0] if ok else None,
                     "Prob 1": round(100 * r.probs[0]) if ok else None, "Net 2": r.classes[1] if ok else None,
                     "Prob 2": round(100 * r.probs[1]) if ok else None,
                     "L1 diff": round(float(r.objective), 3) if ok else None,
                     "dual bound": None if r.dual_bound is None or r.dual_bound != r.dual_bound
                     else round(float(r.dual_bound), 3), "status": r.status})
    return pd.DataFrame(rows, columns=COLS + ["dual bound", "status"])


def side_by_side(tid: str, md):
    """Thesis rows and ours for one case, joined on the real digit."""
    import pandas as pd

    a1, a2, dom = CASES[tid]
    th = thesis_table(tid).set_index("Real")
    ours = our_table(md, a1, a2, dom).set_index("Real")
    for col in ("Net 1", "Net 2"):  # classes are integers
        if col in ours:
            ours[col] = pd.to_numeric(ours[col], errors="coerce").round().astype("Int64")
    out = pd.concat({"thesis": th, "ours": ours}, axis=1)
    out[("ours", "status")] = out[("ours", "status")].astype(object).where(out[("ours", "status")].notna(),
                                                                         "not run at this scale")
    return out


def styled_side_by_side(tid: str, md):
    """:func:`side_by_side` for display: empty cells read "—" (no verified witness or not run)."""
    return side_by_side(tid, md).style.format(na_rep="—", precision=3)


def show_case(tid: str, md, seed: int, scale: str):
    """One of Tables 4.2–4.7: glues its solutions figure (``fig-4-N``) and returns the table beside the thesis's."""
    from . import plots
    from .ch3 import placeholder

    a1, a2, dom = CASES[tid]
    ran = len(md) and ((md.arch1 == a1) & (md.arch2 == a2) & (md.dom == dom)).any()
    plots.show(f"fig-{tid.replace('.', '-')}", fig_solutions(md, a1, a2, dom, seed) if ran else
               placeholder(f"not yet run at scale {scale}: {a1} vs {a2} on {dom}"))
    return styled_side_by_side(tid, md)


def counts(tab) -> dict:
    """THESIS-NUMBERS §6 derived counts of one table (thesis's or ours; unverified rows skipped)."""
    t = tab.dropna(subset=["Net 1", "Net 2"])
    r1, r2 = t["Net 1"].astype(int) == t.Real, t["Net 2"].astype(int) == t.Real
    wrong = [int(c) for c, ok in zip(t["Net 1"], r1) if not ok] + [int(c) for c, ok in zip(t["Net 2"], r2) if not ok]
    both_right = t[r1 & r2]
    return {"rows": len(t), "both right": int((r1 & r2).sum()), "net1 wrong only": int((~r1 & r2).sum()),
            "net2 wrong only": int((r1 & ~r2).sum()), "both wrong": int((~r1 & ~r2).sum()),
            "wrong": len(wrong), "wrong as 8 or 9": sum(c in (8, 9) for c in wrong),
            "max L1 both right": float(both_right["L1 diff"].max()) if len(both_right) else float("nan")}


def counts_table(md):
    """One row per thesis case: the derived counts of the thesis's table beside ours."""
    import pandas as pd

    rows = []
    for tid, (a1, a2, dom) in CASES.items():
        for who, tab in (("thesis", thesis_table(tid)), ("ours", our_table(md, a1, a2, dom))):
            c = counts(tab) if len(tab) else {"rows": 0}
            rows.append({"table": tid, "pair": f"{a1} vs {a2}", "domain": dom, "who": who, **c})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- figures
def fig_solutions(md, arch1: str, arch2: str, dom: str, seed: int):
    """Figs 4.2–4.7: the maxdiff witness of every digit, with both nets' answers."""
    import matplotlib.pyplot as plt

    md = _md(md)
    sub = md[(md.arch1 == arch1) & (md.arch2 == arch2) & (md.dom == dom)].sort_values("digit")
    n = max(len(sub), 1)
    cols = min(n, 5)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.45 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, r in zip(axes.ravel(), sub.itertuples()):
        if r.x is not None and r.verified:
            ax.imshow(np.asarray(r.x).reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"({'abcdefghij'[int(r.digit)]}) real {int(r.digit)}\n{r.classes[0]} ({r.probs[0]:.0%}) / "
                         f"{r.classes[1]} ({r.probs[1]:.0%})", fontsize=8)
        else:
            ax.text(0.5, 0.5, f"digit {int(r.digit)}:\nno verified\nwitness ({r.status})", ha="center", va="center",
                    fontsize=8)
    fig.tight_layout()
    return fig


def mineps_frame(me):
    """mineps results with ε* (verified witnesses), its lower bound and the marker kind."""
    df = me.copy()
    df["pruning %"] = 100 * df.p
    df["kind"] = np.where(df.status.eq("optimal") & df.verified, "proven optimal",
                          np.where(df.verified, "best feasible", "none found"))
    return df


def fig_mineps(me, lo: float = 0.0, hi: float = 100.0):
    """Figs 4.8–4.10: ε* vs pruning % per digit (●: proven optimal, ○: best feasible), accuracy on the right."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = mineps_frame(me)
    df = df[(df["pruning %"] >= lo - 1e-9) & (df["pruning %"] <= hi + 1e-9)]
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    pal = sns.color_palette("tab10", 10)
    for d, sub in df.groupby("digit"):
        s = sub[sub.kind != "none found"].sort_values("p")
        ax.plot(s["pruning %"], s.eps, color=pal[int(d)], lw=1, alpha=0.7, label=f"digit {d}")
        opt = s[s.kind == "proven optimal"]
        feas = s[s.kind == "best feasible"]
        ax.scatter(opt["pruning %"], opt.eps, color=pal[int(d)], marker="o", s=22, zorder=3)
        ax.scatter(feas["pruning %"], feas.eps, facecolor="white", edgecolor=pal[int(d)], marker="o", s=22, zorder=3)
    none = df[df.kind == "none found"]
    if len(none):
        ax.scatter(none["pruning %"], np.full(len(none), 0.02), marker="x", color="0.5", s=14,
                   transform=ax.get_xaxis_transform(), label="no verified witness")
    ax.set_xlabel("% of weights pruned"), ax.set_ylabel("ε* (L∞)")
    acc = df.groupby("pruning %").accuracy.first()
    ax2 = ax.twinx()
    ax2.plot(acc.index, 100 * acc.values, "k--", lw=1.2, label="pruned accuracy")
    ax2.set_ylabel("test accuracy of the pruned net (%)")
    ax2.grid(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, ncol=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- verdicts
#: a maxdiff row is *settled* when its dual bound is within this of its L1 difference: its optimum
#: cannot be another witness that changes a class (a larger difference could); otherwise *open*
SETTLED = 0.05


def _case_tables(md, dom: str) -> dict:
    out = {}
    for a1, a2 in sorted({(r.arch1, r.arch2) for r in md.itertuples()}):
        t = our_table(md, a1, a2, dom)
        if len(t.dropna(subset=["Net 1"])):
            out[(a1, a2)] = t
    return out


def _known(md, dom: str) -> dict:
    """Per reported pair on ``dom``: one row per digit with a verified witness — real digit, each net's
    class at the witness (``c1``, ``c2``) and whether that class is also the one at the optimum
    (``k1``, ``k2``): the row is settled (dual bound within :data:`SETTLED` of the L1 difference) or
    the LP logit-difference bounds prove the class wins on the whole domain (``forced``)."""
    import pandas as pd

    out = {}
    md = _md(md)
    for a1, a2 in sorted({(r.arch1, r.arch2) for r in md.itertuples()}):
        sub = md[(md.arch1 == a1) & (md.arch2 == a2) & (md.dom == dom) & md.verified.astype(bool)]
        rows = []
        for r in sub.itertuples():
            if r.classes is None or len(r.classes) != 2:
                continue
            db = r.dual_bound if r.dual_bound is not None and r.dual_bound == r.dual_bound else np.inf
            settled = db - float(r.objective) <= SETTLED
            forced = getattr(r, "forced", None)
            forced = forced if isinstance(forced, (list, tuple)) and len(forced) == 2 else [None, None]
            c = [int(v) for v in r.classes]
            rows.append({"Real": int(r.digit), "c1": c[0], "c2": c[1],
                         "k1": bool(settled or forced[0] == c[0]), "k2": bool(settled or forced[1] == c[1])})
        if rows:
            out[(a1, a2)] = pd.DataFrame(rows)
    return out


def _tally(k) -> dict:
    """Counts over the rows of :func:`_known` tables: rows, both right, rows whose classes may change
    at the optimum, both-right rows that may, known wrong answers (and as 8 or 9), unknown answers per net."""
    r1, r2 = k.c1 == k.Real, k.c2 == k.Real
    unsure = ~(k.k1 & k.k2)
    known_wrong = [c for c, ok, kn in zip(k.c1, r1, k.k1) if kn and not ok] + \
                  [c for c, ok, kn in zip(k.c2, r2, k.k2) if kn and not ok]
    return {"rows": len(k), "both right": int((r1 & r2).sum()), "open": int(unsure.sum()),
            "open both right": int((r1 & r2 & unsure).sum()), "known wrong": len(known_wrong),
            "known wrong 8/9": sum(c in (8, 9) for c in known_wrong), "unknown 1": int((~k.k1).sum()),
            "unknown 2": int((~k.k2).sum()), "known wrong 1": int((k.k1 & ~r1).sum()),
            "known wrong 2": int((k.k2 & ~r2).sum())}


def _slope(x, y) -> float:
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 2 and np.ptp(x) > 0 else float("nan")


def _bracket(lo_verdict: str, hi_verdict: str, limit: str) -> tuple[str, str]:
    """The verdict when the evidence allows a range: the same at both ends, or undecided."""
    from .verdicts import UNDECIDED

    return (lo_verdict, "") if lo_verdict == hi_verdict else (UNDECIDED, limit)


def _seconds(frame, col: str = "time_limit") -> str:
    v = sorted({float(x) for x in frame[col].dropna()}) if col in frame and len(frame) else []
    return "/".join(f"{x:g}" for x in v) + " s" if v else "its limit"


def judge(md, me, seed: int = 0) -> list:
    """F4.1–F4.8 judged by explicit rules on our maxdiff and mineps results (SPEC §4).

    A maxdiff row whose dual bound exceeds its L1 difference by more than :data:`SETTLED`
    is *open*: at the optimum its witness, and so its classes, may differ. The maxdiff
    findings are judged at both ends of what the open rows allow; when the two ends give
    different verdicts the finding is "undecided at this scale", naming the open rows and
    the time limit. The ε* findings (F4.6–F4.8) are undecided when fewer than half of
    the mineps runs they rest on are proven optimal.
    """
    from .verdicts import THESIS_FINDINGS, UNDECIDED, Finding

    def f(fid, ours, verdict, rule, limit=""):
        claim, thesis = THESIS_FINDINGS[fid]
        return Finding(fid, claim, thesis, ours, verdict, rule, limit=limit)

    out = []
    md = _md(md)
    t_md = _seconds(md)
    simple, neigh = _case_tables(md, "imgref_simple"), _case_tables(md, "imgref_neighbours")
    ks, kn = _known(md, "imgref_simple"), _known(md, "imgref_neighbours")
    open_what = (f"open at {t_md}: dual bound more than {SETTLED:g} above the L1 difference and a class not proven "
                 "on the whole domain")
    # F4.1 both right on about half the digits; background pixels lit
    cs = [counts(t) for t in simple.values()]
    n_rows, n_both = sum(c["rows"] for c in cs), sum(c["both right"] for c in cs)
    ts = [_tally(k) for k in ks.values()]
    n_open, open_both = sum(t["open"] for t in ts), sum(t["open both right"] for t in ts)
    share = n_both / n_rows if n_rows else float("nan")
    share_lo = (n_both - open_both) / n_rows if n_rows else float("nan")
    sub = md[(md.dom == "imgref_simple") & md.verified & md.x.notna()]
    lit = []
    for r in sub.itertuples():
        x0 = reference_image(int(r.digit), seed)
        bg = x0 == 0
        lit.append(float(np.mean(np.asarray(r.x)[bg] > 0.01)) if bg.any() else 0.0)
    noise = float(np.mean(lit)) if lit else float("nan")

    def v41(ok):
        return "confirmed" if ok and noise > 0.1 else "partly" if (ok or noise > 0.1) else "refuted"

    if not n_rows:
        v, lim = "not yet run", ""
    else:  # the share can be anything in [share_lo, share]: the band 30–70 % holds for all of it, none, or some
        holds_all = 0.3 <= share_lo and share <= 0.7
        holds_none = share < 0.3 or share_lo > 0.7
        v, lim = _bracket(v41(holds_all or not holds_none), v41(holds_all),
                          f"{open_both} of {n_rows} simple-domain digits have both nets right at a maxdiff witness "
                          f"{open_what}: the share of digits with both right at the optimum lies in "
                          f"{share_lo:.0%}–{share:.0%}")
    out.append(f("F4.1", f"simple domain: both nets right on {n_both} of {n_rows} digits ({share:.0%}) at our witnesses "
                         f"({n_open} instances open); {noise:.0%} of background pixels raised above 0.01 on average",
                 v, "confirmed if 30–70 % of simple-domain digits keep both nets right and > 10 % of the background "
                    f"pixels are raised; partly if one holds. An open row (dual bound > L1 difference + {SETTLED:g}, "
                    "a class not proven on the whole domain) may change class at the optimum: judged at both ends",
                 lim))
    # F4.2 neighbours: at least one net wrong on every digit
    cn = [counts(t) for t in neigh.values()]
    n_rows_n = sum(c["rows"] for c in cn)
    fooled = sum(c["rows"] - c["both right"] for c in cn)
    tn = [_tally(k) for k in kn.values()]
    open_n, open_both_n = sum(t["open"] for t in tn), sum(t["open both right"] for t in tn)

    def v42(k):
        return "confirmed" if k == n_rows_n else "partly" if k >= 0.8 * n_rows_n else "refuted"

    if not n_rows_n:
        v, lim = "not yet run", ""
    else:
        v, lim = _bracket(v42(fooled), v42(fooled + open_both_n),
                          f"{open_both_n} of {n_rows_n} neighbours-domain digits keep both nets right at a witness "
                          f"{open_what}")
    out.append(f("F4.2", f"neighbours domain: at least one net wrong on {fooled} of {n_rows_n} digits "
                         f"({open_n} instances open)", v,
                 "confirmed if every digit, partly if ≥ 80 % of digits, fool at least one net (a verified witness "
                 "that fools a net is a fact); an open row with both nets right may fool one at the optimum", lim))
    # F4.3 wrong answers gravitate to 8 and 9
    allc = cs + cn
    wrong, w89 = sum(c["wrong"] for c in allc), sum(c["wrong as 8 or 9"] for c in allc)
    tt = ts + tn
    ws, w89s = sum(t["known wrong"] for t in tt), sum(t["known wrong 8/9"] for t in tt)
    unknown = sum(t["unknown 1"] + t["unknown 2"] for t in tt)
    s89 = w89 / wrong if wrong else float("nan")

    def v43(x):
        return "confirmed" if x >= 0.5 else "partly" if x > 2 / 9 else "refuted"

    if not wrong and not unknown:
        v, lim = "not yet run", ""
    else:  # each unknown answer may be right, or wrong as any class, at the optimum
        ends = [w89s / ws] if ws else []
        if unknown:
            ends += [w89s / (ws + unknown), (w89s + unknown) / (ws + unknown)]
        v, lim = _bracket(v43(min(ends)), v43(max(ends)),
                          f"{unknown} of {2 * (n_rows + n_rows_n)} answers at maxdiff witnesses {open_what}; the "
                          f"known ones give {w89s} of {ws} wrong answers as 8 or 9")
    out.append(f("F4.3", f"{w89} of {wrong} wrong answers are 8 or 9 ({s89:.0%}; chance ≈ 22 %); answers known at "
                         f"the optimum: {w89s} of {ws}", v,
                 "confirmed if ≥ 50 % of wrong answers are 8 or 9 (thesis 61 %); partly if above chance 2/9; an "
                 "answer at an open row may be right or any wrong class at the optimum: judged at both ends", lim))
    # F4.4 simple pairs with 100x10: the deeper net errs more
    deep = {p: (counts(simple[p]), _tally(ks[p])) for p in simple if "100x10" in p and p in ks}
    txt = "; ".join(f"{a} vs {b}: net-1 errors {c['net1 wrong only'] + c['both wrong']}, 100x10 errors "
                    f"{c['net2 wrong only'] + c['both wrong']} ({t['open']} of {c['rows']} open)"
                    for (a, b), (c, t) in deep.items())

    def v44(wins):
        return "confirmed" if all(wins) else "partly" if any(wins) else "refuted"

    if not deep:
        v, lim = "not yet run", ""
    else:  # each unknown answer moves (100x10 errors − partner errors) by at most one
        d = [(t["known wrong 2"] - t["known wrong 1"], t["unknown 1"], t["unknown 2"]) for _, t in deep.values()]
        v, lim = _bracket(v44([x - u1 > 0 for x, u1, _ in d]), v44([x + u2 > 0 for x, _, u2 in d]),
                          f"{sum(t['open'] for _, t in deep.values())} of {sum(c['rows'] for c, _ in deep.values())} "
                          f"simple-domain instances with 100x10 {open_what}")
    out.append(f("F4.4", txt or "no simple-domain pair with 100x10 run", v,
                 "confirmed if 100x10 errs more often than its partner in every simple-domain pair with it; each "
                 "answer at an open row may move the difference by one: judged at both ends", lim))
    # mineps-based findings
    df = mineps_frame(me) if len(me) else me
    if not len(df):
        for fid in ("F4.5", "F4.6", "F4.7", "F4.8"):
            out.append(f(fid, "mineps not run", "not yet run", ""))
        return out
    t_me = _seconds(df)
    lowp, highp = df[df.p < 0.4], df[df.p >= 0.4]
    opt_low = float((lowp.kind == "proven optimal").mean()) if len(lowp) else float("nan")
    opt_high = float((highp.kind == "proven optimal").mean()) if len(highp) else float("nan")
    feas20 = df[df.p < 0.2]
    f20 = float((feas20.kind != "none found").mean()) if len(feas20) else float("nan")
    ok_a, ok_b = opt_low < opt_high, f20 <= 0.1
    out.append(f("F4.5", f"proven optimal at {t_me}: {opt_low:.0%} of runs below 40 % pruning vs {opt_high:.0%} above; "
                         f"a feasible point in {f20:.0%} of runs below 20 % (the thesis: 4 h per run)",
                 "confirmed" if ok_a and ok_b else "partly" if ok_a or ok_b else "refuted",
                 "confirmed if fewer runs are proven optimal below 40 % than above and ≤ 10 % of runs below "
                 "20 % find a feasible point; partly if one holds (the claim is itself about the solver at a limit)"))

    def proven(d):
        return int((d.kind == "proven optimal").sum()), len(d)

    def undecided(d, what):
        k, n = proven(d)
        return (f"{k} of {n} mineps runs {what} proven optimal at {t_me}") if n and k < 0.5 * n else ""

    ok_df = df[df.kind != "none found"]
    band = ok_df[(ok_df.p >= 0.6 - 1e-9) & (ok_df.p <= 0.7 + 1e-9)]
    rel = [float(np.ptp(s.eps) / max(s.eps.mean(), 1e-9)) for _, s in band.groupby("digit") if len(s) >= 2]
    acc = df.groupby("p").accuracy.first()
    accb = acc[(acc.index >= 0.6 - 1e-9) & (acc.index <= 0.7 + 1e-9)]
    rise = float(accb.iloc[-1] - accb.iloc[0]) if len(accb) >= 2 else float("nan")
    flat = float(np.median(rel)) if rel else float("nan")
    lim = undecided(band, "at 60–70 % pruning")
    out.append(f("F4.6", f"60–70 % pruning: median relative range of ε* over digits {flat:.2f}; accuracy change "
                         f"{100 * rise:+.2f} points ({proven(band)[0]} of {len(band)} runs proven optimal)",
                 "not yet run" if not rel else UNDECIDED if lim else "confirmed" if flat <= 0.25 and rise > 0 else
                 "partly" if flat <= 0.25 or rise > 0 else "refuted",
                 "flat = median over digits of (max − min)/mean of ε* in 60–70 % ≤ 0.25; confirmed if flat "
                 "and accuracy rises, partly if one; undecided if fewer than half the runs are proven optimal "
                 "(a best-feasible ε is only an upper bound on ε*)", lim if rel else ""))
    tail = ok_df[ok_df.p >= 0.75 - 1e-9]
    slopes = [_slope(s.p.to_numpy(), s.eps.to_numpy(float)) for _, s in tail.groupby("digit")]
    slopes = [s for s in slopes if not np.isnan(s)]
    neg = sum(s < 0 for s in slopes)
    lim = undecided(tail, "at ≥ 75 % pruning")
    out.append(f("F4.7", f"≥ 75 % pruning: ε* falls with pruning for {neg} of {len(slopes)} digits (linear fit; "
                         f"{proven(tail)[0]} of {len(tail)} runs proven optimal)",
                 "not yet run" if not slopes else UNDECIDED if lim else "confirmed" if neg >= 0.6 * len(slopes) else
                 "partly" if neg >= 0.4 * len(slopes) else "refuted",
                 "confirmed if the fitted slope of ε* vs p over p ≥ 75 % is negative for ≥ 60 % of digits, "
                 "partly for ≥ 40 %; undecided if fewer than half the runs are proven optimal", lim if slopes else ""))
    mean_eps = ok_df.groupby("digit").eps.mean().sort_values(ascending=False)
    rank8 = list(mean_eps.index).index(8) + 1 if 8 in mean_eps.index else None
    top = ", ".join(f"{d}: {v:.3f}" for d, v in mean_eps.head(3).items())
    lim = undecided(ok_df, "with a witness")
    out.append(f("F4.8", f"mean ε* per digit, largest first: {top}; digit 8 ranks "
                         f"{rank8 if rank8 else '—'} of {len(mean_eps)} ({proven(ok_df)[0]} of {len(ok_df)} runs "
                         "proven optimal)",
                 "not yet run" if rank8 is None else UNDECIDED if lim else "confirmed" if rank8 == 1 else
                 "partly" if rank8 <= 3 else "refuted",
                 "mean of verified ε* over pruning levels; confirmed if 8 is largest, partly if in the top 3; "
                 "undecided if fewer than half the runs are proven optimal", lim if rank8 is not None else ""))
    return out
