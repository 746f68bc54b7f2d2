"""Chapter 5 — certifying a pruned copy (beyond the thesis).

A network and its own pruned copy have the same shape, so the comparator can bound the
*difference* of their neurons directly (:func:`nnmiplib.bounds.difference_bounds`) instead
of subtracting two separately bounded networks. The chapter asks the compression user's
questions on L∞ balls of radius ε around MNIST test images, for the four L1 λ = 2·10⁻⁴
thesis nets pruned by magnitude (:func:`nnmiplib.prune.prune_fraction`):

- **max logit change** (:func:`nnmiplib.queries.max_logit_change`): a certified upper
  bound on max_x max_k |a¹_k − a²_k| and the best input found;
- **top-1 equivalence** (:func:`nnmiplib.queries.top1_equivalent`): a proof that the two
  predicted classes agree everywhere on the ball, or a verified witness where they differ;
- each with and without the difference bounds (same α bounds of each network, same limit);
- the **largest ε** at which top-1 equivalence is still proven, by bisection.

Every query is a cached :class:`~nnmiplib.experiments.Grid` cell; :func:`judge` states the
chapter's own claims (F5.1–F5.5, :data:`FINDINGS`) and judges them by explicit rules.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..queries import cache_version
from .common import Preset, check_scale

log = logging.getLogger(__name__)

ARCHS = ("3000x1", "800x2", "200x5", "100x10")
REG, LAM = "l1", 2e-4
EPS = 0.02
#: the chapter's claims (the book's own; the thesis did not study this): id → (claim, "thesis" column)
BEYOND = "— (beyond the thesis)"
FINDINGS: dict[str, tuple[str, str]] = {
    "F5.1": (("at the lowest pruning level the difference bounds give a ≥ 10× tighter certified max logit change "
              "than the same query without them, at the same time limit"), BEYOND),
    "F5.2": ("top-1 equivalence at the lowest pruning level (50 %) is proven on every image within the limit",
             BEYOND),
    "F5.3": ("the difference bounds decide at least as many top-1 questions as separate bounds, and no slower", BEYOND),
    "F5.4": ("the certified max logit change grows with the pruning level on every architecture", BEYOND),
    "F5.5": ("the largest ε at which top-1 equivalence is proven shrinks as pruning grows", BEYOND),
}

_SCALES = {
    "smoke": {"archs": ("800x2", "100x10"), "levels": (0.5, 0.9), "images": 2, "mlc_time": 1.0, "top1_time": 1.0,
              "eps_archs": ("800x2", "100x10"), "eps_images": 1, "eps_range": (0.002, 0.05), "eps_steps": 2,
              "eps_time": 0.5},
    "quick": {"archs": ARCHS, "levels": (0.5, 0.75, 0.9, 0.95), "images": 5, "mlc_time": 15.0, "top1_time": 15.0,
              "eps_archs": ARCHS, "eps_images": 1, "eps_range": (0.002, 0.1), "eps_steps": 3, "eps_time": 10.0},
    "paper": {"archs": ARCHS, "levels": tuple(round(0.5 + 0.05 * i, 2) for i in range(10)), "images": 15,
              "mlc_time": 120.0, "top1_time": 120.0, "eps_archs": ARCHS, "eps_images": 3, "eps_range": (0.001, 0.2),
              "eps_steps": 6, "eps_time": 120.0},
}


def preset(scale: str = "quick", *, images=None, levels=None, archs=None, mlc_time=None, top1_time=None,
           eps_time=None, seed: int = 0) -> Preset:
    """The chapter's parameters at ``scale`` and what they leave out.

    ``images``: number of test images per (arch, level); ``levels``: pruning fractions;
    ``mlc_time`` / ``top1_time`` / ``eps_time``: seconds per max_logit_change, per
    top1_equivalent, per top1_equivalent inside the ε bisection.
    """
    check_scale(scale)
    p = dict(_SCALES[scale])
    if images is not None:
        p["images"] = int(images)
    if levels is not None:
        p["levels"] = tuple(float(x) for x in levels)
    if archs is not None:
        p["archs"] = tuple(archs)
    for k, v in {"mlc_time": mlc_time, "top1_time": top1_time, "eps_time": eps_time}.items():
        if v is not None:
            if not v > 0:
                raise ValueError(f"{k} must be > 0 seconds, got {v}")
            p[k] = float(v)
    if p["images"] < 1:
        raise ValueError(f"images must be ≥ 1, got {p['images']}")
    if any(not 0 < x < 1 for x in p["levels"]):
        raise ValueError(f"pruning levels lie in (0, 1), got {p['levels']}")
    bad = [a for a in (*p["archs"], *p["eps_archs"]) if a not in ARCHS]
    if bad:
        raise ValueError(f"unknown architectures {bad}; choose from {', '.join(ARCHS)}")
    p["levels"] = tuple(sorted(p["levels"]))
    p.update(scale=scale, seed=int(seed), eps=EPS)
    dev = [("beyond the thesis: the thesis compares pruned copies only through mineps (chapter 4); this chapter's "
            "claims are the book's own")]
    if scale == "smoke":
        dev.append("smoke stand-in nets of the same depth (32x2 for 800x2, 16x10 for 100x10), 2 epochs on 6 000 "
                   "images; two of the four architectures")
    else:
        dev.append("the book's 50-epoch L1 λ = 2·10⁻⁴ nets of the four thesis architectures "
                   f"({', '.join(p['archs'])})")
    lv = ", ".join(f"{100 * x:g} %" for x in p["levels"])
    dev.append(f"pruning levels {lv} (magnitude pruning of all weights, biases kept); {p['images']} test images "
               f"per level (one per digit, the chapters' reference images, then more per digit); ε = {EPS:g}")
    dev.append(f"time limits: max_logit_change {p['mlc_time']:g} s and top1_equivalent {p['top1_time']:g} s per "
               "query, after each network's α bounds (shared by the runs with and without the difference bounds)")
    lo, hi = p["eps_range"]
    dev.append(f"largest certified ε: on {p['eps_images']} image(s) per (arch, level), top1_equivalent (with the "
               f"difference bounds, {p['eps_time']:g} s each) at ε = {lo:g} and {hi:g}, then {p['eps_steps']} "
               "geometric bisection steps between the largest proven and the smallest unproven ε; an undecided "
               "run counts as unproven (the reported ε is a certified lower bound of the largest ε)")
    return Preset(scale, p, dev)


# --------------------------------------------------------------------------- inputs
def net(arch: str, scale: str, seed: int = 0):
    """The chapter's original network of ``arch`` at ``scale`` (chapter 4's nets)."""
    from ..train import zoo_net

    return zoo_net(arch, REG, LAM, scale=scale, seed=seed)


def pruned(arch: str, scale: str, seed: int, p: float):
    """``net(arch)`` with the fraction ``p`` of its weights pruned by magnitude."""
    from ..prune import prune_fraction

    return prune_fraction(net(arch, scale, seed), p)[0]


def image_of(i: int, seed: int = 0) -> tuple[int, np.ndarray]:
    """The chapter's i-th image: ``(index in the test split, x₀)``. Images 0–9 are the
    reference images of chapters 3–4 (digit i); image i ≥ 10 is another random test
    image of digit ``i % 10``."""
    from ..data import load_mnist
    from .ch3 import reference_images

    d = i % 10
    if i < 10:
        return reference_images([d], seed)[d]
    x, y = load_mnist()[2]
    idx = int(np.random.default_rng([seed, d, i // 10, 5]).choice(np.flatnonzero(y == d)))
    return idx, np.asarray(x[idx], dtype=np.float64)


def ball(i: int, eps: float, seed: int = 0):
    """The L∞ ball of radius ``eps`` around image ``i``, clipped to [0, 1]."""
    from ..domains import linf_ball

    return linf_ball(image_of(i, seed)[1], eps)


# --------------------------------------------------------------------------- cells
def _f(v):
    return None if v is None or not np.isfinite(v) else float(v)


def pair_cell(arch: str, scale: str, seed: int, p: float, image: int, eps: float, mlc_time: float,
              top1_time: float) -> dict:
    """One (arch, p, image): each network's α bounds once, then max_logit_change and
    top1_equivalent with and without the difference bounds."""
    from ..bounds import compute_bounds
    from ..queries import max_logit_change, top1_equivalent

    n1, n2 = net(arch, scale, seed), pruned(arch, scale, seed, p)
    dom = ball(image, eps, seed)
    t = time.perf_counter()
    bds = [compute_bounds(n, dom, method="alpha") for n in (n1, n2)]
    out = {"alpha_time": time.perf_counter() - t,
           "agree_at_x0": bool(np.argmax(n1.forward(dom.center)) == np.argmax(n2.forward(dom.center)))}
    for flag in (True, False):
        k = "with" if flag else "without"
        m = max_logit_change(n1, n2, dom, bounds=bds, difference=flag, time_limit=mlc_time, report=False)
        out[f"mlc_{k}_dual"] = _f(m.dual_bound)
        out[f"mlc_{k}_best"] = _f(m.objective) if m.verified else None
        out[f"mlc_{k}_status"] = m.status
        out[f"mlc_{k}_time"] = float(m.time)
        out[f"mlc_{k}_decided"] = m.status == "optimal"
        r = top1_equivalent(n1, n2, dom, bounds=bds, difference=flag, time_limit=top1_time)
        out[f"top1_{k}_equivalent"] = r.extra["equivalent"]
        out[f"top1_{k}_status"] = r.status
        out[f"top1_{k}_time"] = float(r.time)
        out[f"top1_{k}_dual"] = _f(r.dual_bound)
        rb = r.extra.get("refuted_by_bounds")
        out[f"top1_{k}_by_bounds"] = rb if rb is None or isinstance(rb, (bool, str)) else int(rb)
    return out


def eps_cell(arch: str, scale: str, seed: int, p: float, image: int, eps_lo: float, eps_hi: float, steps: int,
             time_limit: float) -> dict:
    """The largest ε at which top1_equivalent (with the difference bounds) proves the pair
    equivalent on the ball around ``image``: tries ``eps_lo`` and ``eps_hi``, then ``steps``
    geometric bisection steps. Equivalence on a ball implies it on every smaller ball and a
    witness on a ball is one on every larger ball, so the bracket is sound; an undecided run
    is treated as unproven. Returns the largest proven ε (0 if none), the smallest ε with a
    witness, the smallest undecided ε and every try."""
    from ..queries import top1_equivalent

    n1, n2 = net(arch, scale, seed), pruned(arch, scale, seed, p)
    tries = []

    def run(e):
        r = top1_equivalent(n1, n2, ball(image, e, seed), difference=True, time_limit=time_limit)
        tries.append({"eps": float(e), "equivalent": r.extra["equivalent"], "time": float(r.time)})
        return r.extra["equivalent"]

    lo, hi = 0.0, None  # proven at lo (0: the networks agree at x₀, or nothing), unproven at hi
    x0 = image_of(image, seed)[1]
    if int(np.argmax(n1.forward(x0))) != int(np.argmax(n2.forward(x0))):
        tries.append({"eps": 0.0, "equivalent": False, "time": 0.0})
        hi = 0.0
    else:
        for e in (eps_lo, eps_hi):
            if run(e) is True:
                lo = e
            else:
                hi = e
                break
        if hi is not None and lo > 0:
            for _ in range(int(steps)):
                mid = float(np.sqrt(lo * hi))
                if run(mid) is True:
                    lo = mid
                else:
                    hi = mid
    wit = [t["eps"] for t in tries if t["equivalent"] is False]
    und = [t["eps"] for t in tries if t["equivalent"] is None]
    return {"eps_proven": float(lo), "eps_unproven": None if hi is None else float(hi),
            "eps_witness": min(wit) if wit else None, "eps_undecided": min(und) if und else None,
            "n_tries": len(tries), "tries": tries, "seconds": float(sum(t["time"] for t in tries))}


# --------------------------------------------------------------------------- grids
def cells(cfg: Preset) -> list[dict]:
    """The main grid: one cell per (arch, pruning level, image)."""
    return [{"arch": a, "scale": cfg.scale, "seed": cfg.seed, "p": float(p), "image": i, "eps": cfg.eps,
             "mlc_time": cfg.mlc_time, "top1_time": cfg.top1_time}
            for a in cfg.archs for p in cfg.levels for i in range(cfg.images)]


def eps_cells(cfg: Preset) -> list[dict]:
    """The ε grid: one bisection per (arch, pruning level, image) on the first ``eps_images`` images."""
    lo, hi = cfg.eps_range
    return [{"arch": a, "scale": cfg.scale, "seed": cfg.seed, "p": float(p), "image": i, "eps_lo": lo, "eps_hi": hi,
             "steps": cfg.eps_steps, "time_limit": cfg.eps_time}
            for a in cfg.eps_archs for p in cfg.levels for i in range(cfg.eps_images)]


#: Bump when the chapter's queries answer differently for the same cell (cells of older code
#: are then recomputed). v2: top1_equivalent's second round with the branch and bound over
#: both networks, and its per-network searches aiming at τ' only. v3: top1_equivalent computes the
#: difference bounds only when a pair survives the networks' own bounds. v4: each network's
#: robustness search in top1_equivalent tightens its intermediate bounds first (networks of two
#: or more hidden layers) and keeps them for the later searches.
PAIRS_VERSION = "pairs-v4"


def grids(cfg: Preset) -> dict:
    """``pairs`` (the four queries per cell) and ``eps`` (the bisections)."""
    from ..experiments import Grid

    digests: dict[str, str] = {}

    def key(params):
        a = params["arch"]
        if a not in digests:
            digests[a] = net(a, cfg.scale, cfg.seed).digest()
        return digests[a]

    s = cfg.scale
    version = f"{cache_version()}+{PAIRS_VERSION}"
    return {"pairs": Grid(f"ch5-pairs-{s}", pair_cell, cells(cfg), key_extra=key, version=version),
            "eps": Grid(f"ch5-eps-{s}", eps_cell, eps_cells(cfg), key_extra=key, version=version)}


def compute(scale: str = "quick", n_jobs: int = 1, scheduler=None, time_limit: float | None = None,
            progress: bool | None = None, only=None, retry_failed: bool | None = None, **overrides) -> dict:
    """Compute the chapter's grids into the cache (the ``nnmiplib run 5`` hook).

    ``time_limit`` overrides both per-query limits of the main grid; ``only`` restricts to
    some grid names.
    """
    if time_limit is not None:
        overrides.setdefault("mlc_time", time_limit)
        overrides.setdefault("top1_time", time_limit)
    cfg = preset(scale, **overrides)
    out = {}
    for name, g in grids(cfg).items():
        if only is None or name in only:
            out[name] = g.run(n_jobs=n_jobs, scheduler=scheduler, progress=progress, retry_failed=retry_failed)
    return out


# --------------------------------------------------------------------------- frames and tables
PAIR_COLUMNS = ["arch", "p", "image", "mlc_with_dual", "mlc_without_dual", "mlc_with_best", "mlc_without_best",
                "mlc_with_time", "mlc_without_time", "mlc_with_decided", "mlc_without_decided",
                "top1_with_equivalent", "top1_without_equivalent", "top1_with_time", "top1_without_time",
                "agree_at_x0"]


def pair_frame(df):
    """The main grid's frame with the derived columns (``ratio`` = certified change without /
    with the difference bounds), or an empty frame with its columns."""
    import pandas as pd

    if not len(df) or "mlc_with_dual" not in df:
        return pd.DataFrame(columns=[*PAIR_COLUMNS, "ratio", "pruning %"])
    df = df.copy()
    w = df.mlc_with_dual.astype(float)
    wo = df.mlc_without_dual.astype(float).fillna(np.inf)
    df["ratio"] = wo / np.maximum(w, 1e-300)
    df["pruning %"] = (100 * df.p).round(2)
    return df


def _verdict_word(v) -> str:
    return {True: "proven", False: "witness"}.get(v, "undecided")


def summary_table(df):
    """One row per (arch, pruning level): certified max logit change (median over images)
    with and without the difference bounds and their ratio; top-1 equivalence proven /
    witness / undecided with and without; median seconds."""
    import pandas as pd

    df = pair_frame(df)
    rows = []
    for (a, p), s in df.groupby(["arch", "p"], sort=False):
        row = {"arch": a, "pruning %": round(100 * p, 2), "images": len(s),
               "max change, best input": float(s.mlc_with_best.astype(float).median()),
               "certified, with diff.": float(s.mlc_with_dual.astype(float).median()),
               "certified, without": float(s.mlc_without_dual.astype(float).median()),
               "ratio (median)": float(s.ratio.median())}
        for k in ("with", "without"):
            v = s[f"top1_{k}_equivalent"]
            row[f"top-1 {k}: proven/witness/open"] = (f"{int((v == True).sum())}/{int((v == False).sum())}/"
                                                      f"{int(v.isna().sum())}")
        for q in ("mlc", "top1"):
            for k in ("with", "without"):
                row[f"{q} s {k}"] = float(s[f"{q}_{k}_time"].median())
        rows.append(row)
    out = pd.DataFrame(rows)
    if len(out):
        out["arch"] = pd.Categorical(out.arch, [a for a in ARCHS if a in set(out.arch)], ordered=True)
        out = out.sort_values(["arch", "pruning %"]).reset_index(drop=True)
    return out


def eps_frame(de):
    """The ε grid's frame with ``pruning %``, or an empty frame."""
    import pandas as pd

    if not len(de) or "eps_proven" not in de:
        return pd.DataFrame(columns=["arch", "p", "image", "eps_proven", "eps_unproven", "eps_witness",
                                     "eps_undecided", "pruning %"])
    de = de.copy()
    de["pruning %"] = (100 * de.p).round(2)
    return de


def eps_table(de):
    """One row per (arch, level, image): the bracket of the largest ε proven equivalent."""
    de = eps_frame(de)
    cols = ["arch", "pruning %", "image", "eps_proven", "eps_unproven", "eps_witness", "eps_undecided", "n_tries"]
    return de[[c for c in cols if c in de]].rename(columns={
        "eps_proven": "largest ε proven", "eps_unproven": "smallest ε not proven",
        "eps_witness": "smallest ε with a witness", "eps_undecided": "smallest ε undecided", "n_tries": "runs"})


# --------------------------------------------------------------------------- figures
_COL = {"with": "#1f77b4", "without": "#d62728"}


def _archs_in(df) -> list[str]:
    have = set(df.arch)
    return [a for a in ARCHS if a in have]


def fig_logit_change(df):
    """Fig 5.1: certified max logit change vs pruning level, per architecture, with and
    without the difference bounds (median over images, band min–max; log scale), with the
    best input's value."""
    import matplotlib.pyplot as plt

    df = pair_frame(df)
    archs = _archs_in(df)
    fig, axes = plt.subplots(1, len(archs), figsize=(3.2 * len(archs), 3.3), squeeze=False, sharey=True)
    for ax, a in zip(axes[0], archs):
        s = df[df.arch == a]
        for k in ("with", "without"):
            g = s.groupby("pruning %")[f"mlc_{k}_dual"].agg(["median", "min", "max"]).astype(float)
            lab = "certified, with difference bounds" if k == "with" else "certified, without"
            ax.plot(g.index, g["median"], "o-", color=_COL[k], label=lab, ms=4)
            ax.fill_between(g.index, g["min"], g["max"], color=_COL[k], alpha=0.15)
        b = s.groupby("pruning %").mlc_with_best.apply(lambda v: v.astype(float).median())
        ax.plot(b.index, b.values, "k:", marker="x", ms=4, label="best input found")
        ax.set_yscale("log")
        ax.set_title(a)
        ax.set_xlabel("% of weights pruned")
    axes[0][0].set_ylabel("max$_k$ |a¹$_k$ − a²$_k$| on the ball")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def fig_equivalent(df):
    """Fig 5.2: fraction of images proven top-1 equivalent vs pruning level, per architecture
    (solid: with the difference bounds; dashed: without); × marks the fraction with a witness."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = pair_frame(df)
    archs = _archs_in(df)
    pal = dict(zip(ARCHS, sns.color_palette("tab10", 4)))
    fig, ax = plt.subplots(figsize=(6.8, 3.8))
    for a in archs:
        s = df[df.arch == a]
        for k, ls in (("with", "-"), ("without", "--")):
            g = s.groupby("pruning %")[f"top1_{k}_equivalent"].apply(lambda v: float((v == True).mean()))
            ax.plot(g.index, g.values, ls, marker="o", ms=4, color=pal[a],
                    label=f"{a}, {'with' if k == 'with' else 'without'} diff. bounds")
        w = s.groupby("pruning %").top1_with_equivalent.apply(lambda v: float((v == False).mean()))
        ax.plot(w.index, w.values, "x", color=pal[a], ms=7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("% of weights pruned")
    ax.set_ylabel("fraction of images")
    ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def fig_times(df):
    """Fig 5.3: seconds with vs without the difference bounds, per query (log–log; the
    diagonal is equal time; points right of it are faster with the difference bounds)."""
    import matplotlib.pyplot as plt

    df = pair_frame(df)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.8))
    for ax, (q, title) in zip(axes, (("mlc", "max_logit_change"), ("top1", "top1_equivalent"))):
        x, y = df[f"{q}_without_time"].astype(float), df[f"{q}_with_time"].astype(float)
        for a in _archs_in(df):
            m = df.arch == a
            ax.scatter(x[m], y[m], s=16, label=a, alpha=0.8)
        if len(df):
            lo, hi = max(min(x.min(), y.min()) * 0.8, 1e-3), max(x.max(), y.max()) * 1.25
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel("seconds without difference bounds"), ax.set_ylabel("seconds with")
        ax.set_title(title)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_eps(de):
    """Fig 5.4: the largest ε proven top-1 equivalent vs pruning level, per architecture
    (●; the bar reaches the smallest ε not proven: the largest ε lies in between)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    de = eps_frame(de)
    pal = dict(zip(ARCHS, sns.color_palette("tab10", 4)))
    fig, ax = plt.subplots(figsize=(6.8, 3.8))
    for j, a in enumerate(_archs_in(de)):
        s = de[de.arch == a].sort_values("p")
        xs = s["pruning %"].astype(float) + 0.4 * (j - 1.5)
        lo = s.eps_proven.astype(float)
        hi = s.eps_unproven.astype(float)
        ax.vlines(xs, np.maximum(lo, 1e-4), hi.fillna(lo), color=pal[a], alpha=0.5, lw=2)
        ax.plot(xs, np.maximum(lo, 1e-4), "o", color=pal[a], label=a, ms=5)
        wit = s.eps_witness.astype(float)
        ax.plot(xs[wit.notna()], np.maximum(wit[wit.notna()], 1e-4), "x", color=pal[a], ms=7)
    ax.axhline(EPS, color="0.5", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("% of weights pruned")
    ax.set_ylabel("largest L∞ ε proven top-1 equivalent")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- verdicts
def _seconds(df, col: str) -> str:
    v = sorted({float(x) for x in df[col].dropna()}) if col in df and len(df) else []
    return "/".join(f"{x:g}" for x in v) + " s" if v else "its limit"


def judge(df, de) -> list:
    """F5.1–F5.5 judged by explicit rules on the chapter's grids (see each rule's text)."""
    from .verdicts import UNDECIDED, Finding

    def f(fid, ours, verdict, rule, limit=""):
        claim, thesis = FINDINGS[fid]
        return Finding(fid, claim, thesis, ours, verdict, rule, limit=limit)

    df, de = pair_frame(df), eps_frame(de)
    out = []
    if not len(df):
        for fid in ("F5.1", "F5.2", "F5.3", "F5.4"):
            out.append(f(fid, "the main grid was not run", "not yet run", ""))
    else:
        t_mlc, t_top = _seconds(df, "mlc_time"), _seconds(df, "top1_time")
        p0 = float(df.p.min())
        low = df[np.isclose(df.p, p0)]
        # F5.1 ratio at the lowest level, per architecture
        med = {a: float(s.ratio.median()) for a, s in low.groupby("arch")}
        overall = float(low.ratio.median())
        n10 = sum(v >= 10 for v in med.values())
        txt = "; ".join(f"{a}: {v:.3g}×" for a, v in med.items())
        out.append(f("F5.1", f"at {100 * p0:g} % pruning, certified max logit change without / with the difference "
                             f"bounds, median over images: {txt} (overall {overall:.3g}×; {t_mlc} per query)",
                     "confirmed" if n10 == len(med) else "partly" if n10 or overall >= 2 else "refuted",
                     "ratio of the two certified upper bounds (dual bounds) of max_logit_change at the same limit; "
                     "confirmed if the median ratio is ≥ 10 on every architecture, partly if on some or ≥ 2 "
                     "overall, refuted otherwise"))
        # F5.2 all images proven equivalent at the lowest level
        v = low.top1_with_equivalent
        n, k_eq, k_w, k_u = len(v), int((v == True).sum()), int((v == False).sum()), int(v.isna().sum())
        ours = (f"at {100 * p0:g} % pruning, ε = {EPS:g}, with the difference bounds: proven on {k_eq}, witness on "
                f"{k_w}, undecided on {k_u} of {n} (arch, image) pairs ({t_top} per query)")
        rule = ("confirmed if every (arch, image) is proven equivalent; refuted if a verified witness exists on more "
                "than 20 % of them, partly if on fewer; undecided if no witness but some run stopped at the limit")
        if k_eq == n:
            out.append(f("F5.2", ours, "confirmed", rule))
        elif k_w:
            out.append(f("F5.2", ours, "partly" if k_w <= 0.2 * n else "refuted", rule))
        else:
            out.append(f("F5.2", ours, UNDECIDED, rule, limit=f"{k_u} of {n} top1_equivalent runs undecided at {t_top}"))
        # F5.3 decided count and time
        dec = {k: int(df[f"top1_{k}_equivalent"].notna().sum()) for k in ("with", "without")}
        tr = df.top1_with_time.astype(float) / np.maximum(df.top1_without_time.astype(float), 1e-9)
        tmed = float(tr.median())
        # "no slower" up to wall-clock noise: the cells run on busy cores, where two runs of the
        # same work differ by several per cent (most with/without ratios lie in 0.8–1.2)
        a_ok, b_ok = dec["with"] >= dec["without"], tmed <= 1.05
        out.append(f("F5.3", f"top-1 questions decided: {dec['with']} with, {dec['without']} without the difference "
                             f"bounds, of {len(df)}; median time with / without {tmed:.2f} ({t_top} per query)",
                     "confirmed" if a_ok and b_ok else "partly" if a_ok or b_ok else "refuted",
                     "confirmed if at least as many top1_equivalent runs are decided with the difference bounds "
                     "and the median per-run time ratio with / without is ≤ 1.05 (wall-clock noise: two runs of "
                     "the same work on a busy core differ by several per cent); partly if one holds"))
        # F5.4 certified change grows with pruning (median over images, with the difference bounds)
        grow, per = [], []
        for a, s in df.groupby("arch"):
            m = s.groupby("p").mlc_with_dual.apply(lambda x: x.astype(float).median()).sort_index()
            if len(m) >= 2:
                ok = bool(np.all(np.diff(m.to_numpy()) >= 0))
                grow.append(ok)
                per.append(f"{a}: " + " → ".join(f"{x:.3g}" for x in m))
        ng = sum(grow)
        out.append(f("F5.4", "median certified max logit change by pruning level: " + "; ".join(per),
                     "not yet run" if not grow else "confirmed" if ng == len(grow) else
                     "partly" if ng else "refuted",
                     "confirmed if the median certified bound (with the difference bounds) does not decrease from "
                     "one pruning level to the next on every architecture, partly if on some; a certified bound "
                     "is a fact at any limit (a looser one at a limit can only make it grow less regularly)"))
    # F5.5 largest ε shrinks with pruning
    if not len(de) or de.p.nunique() < 2:
        out.append(f("F5.5", "the ε grid was not run on two pruning levels", "not yet run", ""))
        return out
    t_eps = _seconds(de, "time_limit")
    series, down, capped = 0, 0, 0
    for _, s in de.groupby(["arch", "image"]):
        s = s.sort_values("p")
        if len(s) < 2:
            continue
        e = s.eps_proven.astype(float).to_numpy()
        if s.eps_unproven.isna().all():  # proven up to the largest ε tried at every level: no evidence
            capped += 1
            continue
        series += 1
        down += bool(np.all(np.diff(e) <= 0))
    und = int(de.eps_undecided.notna().sum())
    hi = float(de.eps_hi.max()) if "eps_hi" in de else float("nan")
    ours = (f"largest proven ε is non-increasing with pruning on {down} of {series} (arch, image) series "
            f"({capped} more proven up to the largest ε tried, {hi:g}, at every level); {und} of {len(de)} "
            f"bisections met an undecided run ({t_eps} per run)")
    rule = ("confirmed if ≥ 80 % of the (arch, image) series are non-increasing in the pruning level, partly if "
            "≥ 50 %, refuted otherwise (series proven up to the largest ε tried at every level are left out); "
            "undecided if more than half the bisections met an undecided run (their ε is only a lower bound)")
    if und > 0.5 * len(de):
        out.append(f("F5.5", ours, UNDECIDED, rule, limit=f"{und} of {len(de)} bisections met a top1_equivalent run "
                                                            f"undecided at {t_eps}"))
    elif not series:
        out.append(f("F5.5", ours, UNDECIDED, rule, limit=f"every series proven up to ε = {hi:g}, the largest tried"))
    else:
        out.append(f("F5.5", ours, "confirmed" if down >= 0.8 * series else "partly" if down >= 0.5 * series
                     else "refuted", rule))
    return out


def glue_beside(findings) -> None:
    """Glue the "reported / we measured" text of each F5 finding (``vs-F5-N``), like
    :func:`nnmiplib.study.verdicts.glue_beside` (whose table holds only the thesis's findings)."""
    from IPython.display import Markdown

    from .verdicts import beside_key, verdict_text

    try:
        from myst_nb import glue
    except ImportError:  # pragma: no cover
        return
    have = {x.id: x for x in findings}
    for fid, (claim, _) in FINDINGS.items():
        x = have.get(fid)
        text = (f"**{fid}** — {claim}. **Thesis reported:** nothing (beyond the thesis). **We measured:** "
                + ("not judged at this scale." if x is None else f"{x.ours}. **Verdict:** {verdict_text(x)}."))
        glue(beside_key(fid), Markdown(text), display=False)
