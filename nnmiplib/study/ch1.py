"""Chapter 1 — training and rounding (thesis §1.2, §2.2.2, §2.3.1; SPEC §2, §6).

Trains (or loads) the 28-net zoo (at ``quick`` a documented subset of 20, trained exactly
as at ``paper``), rounds every net with Algorithm 2 over an ε grid,
measures test accuracy and the share of weights set to zero, and judges findings
F2.1–F2.4. Everything is cached: nets under ``data/nets/`` (:mod:`nnmiplib.train`),
the rounding sweep under ``results_dir()/ch1/`` keyed by scale, ε grid and net digests.
The ``fig_*`` functions draw the chapter's figures from those tables.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging

import numpy as np

from ..paths import atomic_write_bytes
from .common import Preset, check_scale

log = logging.getLogger(__name__)

__all__ = [
    "ARCHS",
    "EPS_GRID",
    "QUICK_SETTINGS",
    "common_settings",
    "fig_1_4",
    "fig_2_1a",
    "fig_2_1b",
    "fig_2_2a",
    "fig_2_2b",
    "fig_2_3",
    "fig_sparse_accurate",
    "findings",
    "findings_markdown",
    "full_lambda_archs",
    "init_share",
    "penalty_comparison",
    "penalty_comparison_markdown",
    "preset",
    "required_nets",
    "rounding_sweep",
    "rounding_table",
    "table_2_1",
    "train_zoo",
    "zoo_nets",
    "zoo_table",
]

#: SPEC §6: a finer grid containing 0, the thesis's four radii and 0.04
EPS_GRID = (0.0, 1e-4, 1e-3, 5e-3, 1e-2, 2e-2, 3e-2, 4e-2, 6e-2, 8e-2, 1e-1)
ARCHS = ("3000x1", "800x2", "200x5", "100x10")
SWEEP_VERSION = 1
_COMPARE = {"smoke": ("200x5", "100x10"), "quick": ("200x5", "100x10"), "paper": ARCHS}
#: quick's subset of the 28 nets: every setting on the two smaller architectures (the λ and
#: L1/L2 comparisons), none / L1 / L2 at λ = 2·10⁻⁴ on the two larger ones (every figure keeps
#: the curves it compares; 3000x1 and 800x2 are 85 % of the training cost)
QUICK_SETTINGS = {"3000x1": (("none", 0.0), ("l1", 2e-4), ("l2", 2e-4)),
                  "800x2": (("none", 0.0), ("l1", 2e-4), ("l2", 2e-4))}


def zoo_nets(scale: str, archs=ARCHS) -> list[tuple[str, str, float]]:
    """The chapter's nets ``(arch, reg, lam)`` at ``scale``: all 28 settings, or quick's subset of 20."""
    from ..train import SETTINGS

    check_scale(scale)
    return [(a, r, lam) for a in archs
            for r, lam in (QUICK_SETTINGS.get(a, SETTINGS) if scale == "quick" else SETTINGS)]


def preset(scale: str = "quick", seed: int = 0, epochs: int | None = None, eps_grid=None,
           compare_archs=None) -> Preset:
    """Chapter 1's parameters at ``scale`` and the deviations from the thesis they imply."""
    from ..train import SCALE_TRAINING, SMOKE_STAND_INS

    check_scale(scale)
    tr = SCALE_TRAINING[scale]
    ep = int(epochs) if epochs is not None else tr["epochs"]
    grid = tuple(float(e) for e in (eps_grid if eps_grid is not None else EPS_GRID))
    if not grid or any(not np.isfinite(e) or e < 0 for e in grid) or 0.0 not in grid:
        raise ValueError(f"eps_grid must be finite radii >= 0 that include 0, got {grid!r}")
    compare = tuple(compare_archs) if compare_archs is not None else _COMPARE[scale]
    n_test = 2000 if scale == "smoke" else 10_000
    dev = []
    if scale == "smoke":
        stand = ", ".join(f"{a}→{'x'.join([str(SMOKE_STAND_INS[a][0]), str(len(SMOKE_STAND_INS[a]))])}" for a in ARCHS)
        dev.append(f"stand-in nets of the same depth ({stand}) trained {ep} epochs on the first "
                   f"{tr['n_train']} training images: numbers are not comparable with the thesis")
    elif ep != 50:
        dev.append(f"{ep} training epochs instead of the thesis's 50 (the thesis's architectures)")
    if scale == "quick":
        dev.append("20 of the thesis's 28 nets, each trained exactly as at paper scale (50 epochs, the same cached "
                   "files): all 7 settings (none, L1 and L2 × λ ∈ {1, 2, 3}·10⁻⁴) on 200x5 and 100x10, and none, "
                   "L1 and L2 at λ = 2·10⁻⁴ on 3000x1 and 800x2. Comparisons across λ (Figs 2.1b, 2.2b, F2.3's λ "
                   "part) use the two smaller architectures; comparisons across architectures and norms (Figs 2.2a, "
                   "2.3, F2.4) use the settings every architecture has")
    dev += [
        (f"training (the thesis is silent): cross-entropy + Adam (lr {tr['lr']:g}), batch {tr['batch_size']}, seed {seed}, "
        "last epoch kept, MNIST split 50 000 / 10 000 / 10 000"),
        ("penalty: batch-mean cross-entropy + (λ/b)·R(W) per mini-batch of size b (the thesis's sum-loss / b); "
        "R = Σ|w| (L1) or Σw² (L2) over weight matrices, biases not penalised"),
        (f"ε grid {{{', '.join(f'{e:g}' for e in grid)}}} instead of the thesis's {{1e-4, 1e-3, 1e-2, 1e-1}} "
        "(it contains them and the highlighted 0.04)"),
        "accuracy is measured on the test split (the thesis does not name the split)"
        + (f": its first {n_test} images at this scale" if n_test < 10_000 else ", all 10 000 images"),
        (f"penalty-scaling comparison only for {', '.join(compare)} (L1 and L2, λ = 2e-4)" if set(compare) != set(ARCHS)
         else "penalty-scaling comparison on all four architectures (L1 and L2, λ = 2e-4)"),
    ]
    params = {"seed": int(seed), "epochs": ep, "eps_grid": grid, "archs": ARCHS, "compare_archs": compare,
              "nets": zoo_nets(scale),
              "curve_net": ("200x5", "l1", 2e-4), "n_test": n_test}
    return Preset(scale, params, dev)


def table_2_1(cfg: Preset):
    """Table 2.1: the architectures (and the nets actually trained at this scale)."""
    import pandas as pd

    from ..train import ARCHITECTURES, SMOKE_STAND_INS

    rows = []
    for a in cfg.archs:
        h = ARCHITECTURES[a]
        act = SMOKE_STAND_INS[a] if cfg.scale == "smoke" else h
        sizes = (784, *act, 10)
        n_w = sum(x * y for x, y in itertools.pairwise(sizes))
        rows.append({"name": a, "hidden layers (thesis)": str(h).replace(",)", ")"),
                     f"hidden layers ({cfg.scale})": str(act).replace(",)", ")"), "depth L": len(h),
                     "weights": n_w, "parameters": n_w + sum(sizes[1:])})
    return pd.DataFrame(rows)


def train_zoo(cfg: Preset, progress: bool = False, n_jobs: int = 1) -> list[dict]:
    """The scale's nets (load or train, missing ones over ``n_jobs`` processes): see
    :func:`nnmiplib.train.zoo_matrix`."""
    from ..train import zoo_matrix

    return zoo_matrix(cfg.scale, seed=cfg.seed, nets=cfg.nets, epochs=cfg.epochs, progress=progress,
                      n_jobs=n_jobs)


def required_nets(cfg: Preset) -> list[tuple]:
    """Every net the chapter loads, ``(arch, reg, lam, penalty_scale)``: the zoo and the
    penalty-convention comparison's nets (for training them all before the chapters run)."""
    return [(*n, "sum") for n in cfg.nets] + [(a, r, 2e-4, "mean") for a in cfg.compare_archs for r in ("l1", "l2")]


def common_settings(df):
    """Rows of the settings ``(reg, lam)`` that every architecture of ``df`` has (a fair
    comparison across architectures and norms when a scale trains a subset)."""
    per_arch = df.groupby("arch")[["reg", "lam"]].apply(lambda g: set(map(tuple, g.drop_duplicates().values)))
    common = set.intersection(*per_arch) if len(per_arch) else set()
    return df[[(r, lam) in common for r, lam in zip(df.reg, df.lam)]]


def full_lambda_archs(df):
    """Rows of the architectures that have every setting of ``df`` (the comparisons across λ)."""
    settings = set(zip(df.reg, df.lam))
    keep = [a for a, g in df.groupby("arch") if set(zip(g.reg, g.lam)) == settings]
    return df[df.arch.isin(keep)]


def _setting(reg: str, lam: float) -> str:
    return "none" if reg == "none" else f"{reg.upper()} λ={lam:.0e}"


def zoo_table(zoo: list[dict]):
    """One row per net: accuracies on train/valid/test and training time."""
    import pandas as pd

    return pd.DataFrame([{"net": z["net"].name, "trained as": z["meta"]["arch_actual"], "epochs": z["meta"]["config"]["epochs"],
                          **{f"acc {k}": v for k, v in z["meta"]["accuracy"].items()},
                          "train s": round(z["meta"]["train_seconds"], 1)} for z in zoo])


def _small_share(net, tol: float = 1e-2) -> float:
    return float(sum((np.abs(w) <= tol).sum() for w in net.weights) / net.n_weights)


def penalty_comparison(cfg: Preset, zoo: list[dict], lam: float = 2e-4):
    """The book's λ/b penalty vs λ added to the batch-mean loss (same nets otherwise)."""
    import pandas as pd

    from ..data import load_mnist
    from ..train import accuracy_fast, zoo_net

    x, y = load_mnist()[2]
    test = (x[: cfg.n_test].astype(np.float64), y[: cfg.n_test])
    ours = {(z["arch"], z["reg"], z["lam"]): z["net"] for z in zoo}
    rows = []
    for a in cfg.compare_archs:
        plain = ours[(a, "none", 0.0)]
        rows.append({"net": f"{a}-none", "penalty": "no penalty", "test accuracy": accuracy_fast(plain, *test),
                     "share |w| ≤ 0.01": _small_share(plain)})
        for reg in ("l1", "l2"):
            alt = zoo_net(a, reg, lam, scale=cfg.scale, seed=cfg.seed, epochs=cfg.epochs, penalty_scale="mean")
            for conv, net in (("(λ/b)·R — the book's", ours[(a, reg, lam)]), ("λ·R on the batch mean", alt)):
                rows.append({"net": f"{a}-{reg}-{lam:.0e}", "penalty": conv, "test accuracy": accuracy_fast(net, *test),
                             "share |w| ≤ 0.01": _small_share(net)})
    return pd.DataFrame(rows)


def penalty_comparison_markdown(cmp) -> str:
    """One sentence per net comparing the two penalty conventions, with the numbers."""
    parts = []
    pen = cmp[cmp.penalty != "no penalty"]
    for net, g in pen.groupby("net", sort=False):
        ours, alt = g.iloc[0], g.iloc[1]
        parts.append(f"{net}: test accuracy {ours['test accuracy']:.3f} with λ/b vs {alt['test accuracy']:.3f} with λ on "
                     f"the batch mean; weights with |w| ≤ 0.01 {ours['share |w| ≤ 0.01']:.0%} vs {alt['share |w| ≤ 0.01']:.0%}")
    mean = pen[pen.penalty.str.startswith("λ·R")].reset_index(drop=True)
    ours = pen[~pen.penalty.str.startswith("λ·R")].reset_index(drop=True)
    plain = cmp[cmp.penalty == "no penalty"].set_index(cmp[cmp.penalty == "no penalty"]["net"].str.split("-").str[0])
    base = ours["net"].str.split("-").str[0].map(plain["test accuracy"])
    d_ours = 100 * (ours["test accuracy"] - base)
    d_acc = 100 * (mean["test accuracy"] - ours["test accuracy"])
    d_sparse = 100 * (mean["share |w| ≤ 0.01"] - ours["share |w| ≤ 0.01"])
    text = ("Measured here: " + "; ".join(parts) + ". "
            f"λ on the batch mean changes test accuracy by {d_acc.mean():+.1f} pp on average (worst {d_acc.min():+.1f} pp) "
            f"and the share of weights with |w| ≤ 0.01 by {d_sparse.mean():+.1f} pp. ")
    text += (f"Against the unpenalised nets the book's λ/b nets differ by {d_ours.mean():+.1f} pp on average "
             f"(worst {d_ours.min():+.1f} pp). ")
    if d_acc.min() <= -5:
        text += "λ on the batch mean buys extra sparsity with accuracy, most on the deep nets."
    else:
        text += "At this scale the two conventions give nets of similar accuracy."
    return text


def _sweep_path(cfg: Preset, zoo: list[dict]):
    from ..paths import results_dir

    h = hashlib.sha256(json.dumps({"v": SWEEP_VERSION, "scale": cfg.scale, "eps": cfg.eps_grid, "split": "test",
                                   "n_test": cfg.n_test,
                                   "nets": [z["net"].digest() for z in zoo]}).encode()).hexdigest()
    d = results_dir() / "ch1"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"sweep-{cfg.scale}-{h[:16]}.csv"


def rounding_sweep(cfg: Preset, zoo: list[dict], progress: bool = False):
    """Algorithm 2 on every net and ε: test accuracy and share of weights zeroed (cached CSV)."""
    import pandas as pd
    from tqdm import tqdm

    from ..data import load_mnist
    from ..prune import round_weights
    from ..train import accuracy_fast

    path = _sweep_path(cfg, zoo)
    if path.exists():
        try:
            df = pd.read_csv(path)
            if len(df) == len(zoo) * len(cfg.eps_grid):
                return df
        except (OSError, ValueError, pd.errors.ParserError):
            pass
        log.warning("ignoring an incomplete sweep file %s", path)
    x, y = load_mnist()[2]
    x, y = x[: cfg.n_test].astype(np.float64), y[: cfg.n_test]  # convert once, not per ε
    rows = []
    for z in tqdm(zoo, desc="rounding sweep", disable=not progress):
        net = z["net"]
        acc0 = None
        for eps in cfg.eps_grid:
            r, st = round_weights(net, eps)
            acc = accuracy_fast(r, x, y)
            acc0 = acc if eps == 0 else acc0
            rows.append({"arch": z["arch"], "depth": net.depth, "reg": z["reg"], "lam": z["lam"],
                         "setting": _setting(z["reg"], z["lam"]), "eps": eps, "acc": acc,
                         "frac_zeroed": st["fraction"], "n_weights": st["n"], "digest": net.digest()[:16]})
    df = pd.DataFrame(rows)
    base = df[df.eps == 0].set_index("digest")["acc"]
    df["acc_change"] = df["acc"] - df["digest"].map(base)
    atomic_write_bytes(path, df.to_csv(index=False).encode())
    return df


def rounding_table(df):
    """% of weights rounded to 0 per setting and ε, mean over the architectures that have the
    setting (their count in the last column), and a caption saying what is averaged."""
    tab = df.pivot_table(index="setting", columns="eps", values="frac_zeroed") * 100
    tab.columns = [f"ε={e:g}" for e in tab.columns]
    n_arch = df.groupby("setting")["arch"].nunique()
    tab["architectures"] = n_arch.reindex(tab.index)
    all_archs = df["arch"].nunique()
    if (n_arch == all_archs).all():
        caption = f"% of weights rounded to 0 (mean over the {all_archs} architectures)"
    else:
        few = sorted(n_arch[n_arch < all_archs].index)
        archs = sorted(set(df[df.setting.isin(few)]["arch"]), key=lambda a: int(a.split("x")[1]))
        caption = (f"% of weights rounded to 0, mean over the architectures that have the setting: all {all_archs} "
                   f"for {', '.join(sorted(n_arch[n_arch == all_archs].index))}; only {' and '.join(archs)} for "
                   f"{', '.join(few)} (the scale's subset of nets)")
    return tab, caption


def init_share(sizes, eps: float) -> float:
    """Share of weights with |w| ≤ ε at torch's default initialisation, U(±1/√n_in) per layer.

    ``sizes`` = (n_0, n_1, ..., K). For U(−a, a), P(|w| ≤ ε) = min(1, ε/a): a baseline
    for how much rounding a barely trained net would undergo.
    """
    tot = hit = 0.0
    for n_in, n_out in itertools.pairwise(sizes):
        a = 1.0 / np.sqrt(n_in)
        tot += n_in * n_out
        hit += n_in * n_out * min(1.0, eps / a)
    return hit / tot


# ------------------------------------------------------------------- findings
def _verdict(n_true: int, n_parts: int) -> str:
    return "confirmed" if n_true == n_parts else ("refuted" if n_true == 0 else "partly")


def findings(df, cfg: Preset) -> list:
    """Judge F2.1–F2.4 on the sweep by the explicit rules stated in each Finding."""
    import pandas as pd

    from .verdicts import Finding

    pp = 100.0
    e04 = 0.04 if 0.04 in cfg.eps_grid else max(e for e in cfg.eps_grid if e <= 0.04)
    emax = max(cfg.eps_grid)
    out = []
    # F2.1
    at0, at4 = df[df.eps == 0], df[df.eps == e04].set_index("digest")
    drops = (at0.set_index("digest")["acc"] - at4["acc"]) * pp
    mean_drop = float(at0["acc"].mean() - at4["acc"].mean()) * pp
    share_ok = float((drops <= 1.0).mean())
    n = int(mean_drop <= 1.0) + int(share_ok >= 0.75)
    out.append(Finding("F2.1", "accuracy is nearly flat for ε in [0, 0.04]", "flat on [0, 0.04] (Fig 2.1a)",
                       f"mean test accuracy {at0['acc'].mean():.4f} → {at4['acc'].mean():.4f} at ε={e04:g} "
                       f"(drop {mean_drop:.2f} pp); {share_ok:.0%} of nets drop ≤ 1 pp (worst {drops.max():.2f} pp)",
                       _verdict(n, 2), "confirmed if the mean drop ≤ 1 pp and ≥ 75 % of nets drop ≤ 1 pp; "
                       "refuted if neither; partly otherwise"))
    # F2.2
    nz = df[(df.reg == "none") & (df.eps == emax)]
    share, worst = float(nz["frac_zeroed"].mean()), float(nz["acc_change"].abs().max()) * pp
    from ..train import ARCHITECTURES, SMOKE_STAND_INS

    stand = SMOKE_STAND_INS if cfg.scale == "smoke" else ARCHITECTURES
    init = np.mean([init_share((784, *stand[a], 10), emax) for a in nz["arch"]])
    n = int(abs(share - 0.60) <= 0.10) + int(worst < 1.0)
    out.append(Finding("F2.2", f"unregularised nets round ≈60 % of weights at ε = {emax:g} with < 1 % accuracy change",
                       "≈60 % rounded, accuracy change < 1 %",
                       f"{share:.0%} rounded on average (per net {', '.join(f'{v:.0%}' for v in nz['frac_zeroed'])}); "
                       f"largest |accuracy change| {worst:.2f} pp (for reference, {init:.0%} of the weights would "
                       f"round at ε = {emax:g} at initialisation)", _verdict(n, 2),
                       "two parts: mean share within 60 ± 10 %, and every unregularised net's |change| < 1 pp; "
                       "confirmed if both, refuted if neither"))
    # F2.3
    pos = df[df.eps > 0]
    reg = pos[pos.reg != "none"].pivot_table(index=["arch", "lam", "eps"], columns="reg", values="frac_zeroed")
    d = (reg["l1"] - reg["l2"])[(reg["l1"] - reg["l2"]).abs() > 0.005]
    f_a = float((d > 0).mean()) if len(d) else float("nan")
    lam_pairs = []
    for (a, r, e), g in pos.groupby(["arch", "reg", "eps"]):
        if r == "none":
            continue
        base = pos[(pos.arch == a) & (pos.reg == "none") & (pos.eps == e)]["frac_zeroed"].tolist()
        s = base + g.sort_values("lam")["frac_zeroed"].tolist()
        lam_pairs += [b - a_ for a_, b in itertools.pairwise(s) if abs(b - a_) > 0.005]
    f_b = float(np.mean([v > 0 for v in lam_pairs])) if lam_pairs else float("nan")
    n = int(f_a >= 0.8) + int(f_b >= 0.8)
    n_partial = int(f_a >= 0.5) + int(f_b >= 0.5)
    v = "confirmed" if n == 2 else ("refuted" if n_partial == 0 else "partly")
    out.append(Finding("F2.3", "L1 rounds more than L2 at the same ε; larger λ rounds more",
                       "L1 \"significantly more\" than L2; more with larger λ (Fig 2.2a/b)",
                       f"L1 > L2 in {f_a:.0%} of {len(d)} (arch, λ, ε>0) comparisons; share rounded grows with λ "
                       f"(0 → 1e-4 → 2e-4 → 3e-4) in {f_b:.0%} of {len(lam_pairs)} steps", v,
                       "comparisons differing by > 0.5 pp; confirmed if both parts hold in ≥ 80 %, "
                       "refuted if both < 50 %, partly otherwise"))
    # F2.4 (settings every architecture has: a subset must not mix λ sets across depths)
    r = common_settings(df)
    r = r[r.reg != "none"]
    loss = r.groupby(["arch", "depth", "reg", "lam"])["acc_change"].mean().mul(-pp).rename("loss").reset_index()
    by_depth = loss.groupby("depth")["loss"].mean().sort_index()
    rho = float(pd.Series(by_depth.index, dtype=float).corr(pd.Series(by_depth.values), method="spearman"))
    piv = loss.pivot_table(index=["arch", "lam"], columns="reg", values="loss")
    f_l2 = float((piv["l2"] > piv["l1"]).mean()) if {"l1", "l2"} <= set(piv.columns) else float("nan")
    n = int(rho >= 0.8 - 1e-9) + int(f_l2 >= 0.75)
    out.append(Finding("F2.4", "deeper regularised nets lose accuracy faster; L2 faster than L1",
                       "deeper nets faster; L2 \"much faster\" than L1 (Fig 2.3)",
                       "mean accuracy loss over the ε grid by depth "
                       + ", ".join(f"L={k}: {v_:.2f} pp" for k, v_ in by_depth.items())
                       + f" (Spearman ρ = {rho:.2f}); L2 loses more than L1 in {f_l2:.0%} of (arch, λ) pairs",
                       _verdict(n, 2), "loss = mean over the ε grid of (acc(0) − acc(ε)); confirmed if "
                       "Spearman ρ(depth, loss) ≥ 0.8 and L2 > L1 in ≥ 75 % of pairs; refuted if neither"))
    return out


def findings_markdown(rows: list) -> str:
    """The verdicts in prose, one paragraph per finding, with the numbers."""
    return "\n\n".join(f"**{f.id} — {f.verdict}.** The thesis: {f.claim} ({f.thesis}). We measured: {f.ours}. "
                       f"*Rule:* {f.rule}." for f in rows)


# -------------------------------------------------------------------- figures
def _eps_axis(ax, df) -> None:
    ax.set_xscale("symlog", linthresh=1e-3, linscale=0.5)
    ax.set_xlim(0, df["eps"].max() * 1.05)
    ax.set_xlabel("rounding radius ε (symlog)")


def _pct(df):
    df = df.copy()
    df["% rounded to 0"] = 100 * df["frac_zeroed"]
    df["test accuracy"] = df["acc"]
    df["regularisation"] = df["reg"].str.upper().replace({"NONE": "none"})
    df["λ"] = df["lam"].map(lambda v: "0" if v == 0 else f"{v:.0e}")
    return df


def _hist_frame(zoo, cfg):
    import pandas as pd

    arch, reg, lam = cfg.curve_net
    z = next(z for z in zoo if (z["arch"], z["reg"], z["lam"]) == (arch, reg, lam))
    h = z["meta"]["history"]
    return z, pd.DataFrame(h)


def fig_1_4(zoo, cfg):
    """Fig 1.4: training and validation loss and accuracy per epoch (our own history)."""
    import matplotlib.pyplot as plt

    z, h = _hist_frame(zoo, cfg)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, what in zip(axes, ("loss", "acc")):
        ax.plot(h["epoch"], h[f"train_{what}"], "o-", label="training (running mean over the epoch)")
        ax.plot(h["epoch"], h[f"val_{what}"], "s-", label="validation (end of epoch)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy" if what == "loss" else "accuracy")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{z['net'].name} (trained as {z['meta']['arch_actual']})", fontsize=10)
    fig.tight_layout()
    return fig


def fig_2_1a(df):
    """Fig 2.1a: test accuracy (mean over all nets, ±1 sd) vs ε."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    sns.lineplot(_pct(df), x="eps", y="test accuracy", errorbar="sd", marker="o", ax=ax)
    ax.axvspan(0, 0.04, color="0.9", zorder=0, label="[0, 0.04]")
    ax.legend(fontsize=8)
    _eps_axis(ax, df)
    fig.tight_layout()
    return fig


def fig_2_1b(df):
    """Fig 2.1b: % of weights rounded to 0 vs ε, by regularisation level λ (architectures with every λ)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    sns.lineplot(_pct(full_lambda_archs(df)), x="eps", y="% rounded to 0", hue="λ", errorbar=None, marker="o", ax=ax)
    _eps_axis(ax, df)
    fig.tight_layout()
    return fig


def fig_2_2a(df):
    """Fig 2.2a: % rounded vs ε, L1 vs L2 vs none (mean over nets, settings every architecture has)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .plots import PALETTE

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    pal = {"none": PALETTE["none"], "L1": PALETTE["l1"], "L2": PALETTE["l2"]}
    sns.lineplot(_pct(common_settings(df)), x="eps", y="% rounded to 0", hue="regularisation", palette=pal, errorbar="sd",
                 marker="o", ax=ax)
    _eps_axis(ax, df)
    fig.tight_layout()
    return fig


def fig_2_2b(df):
    """Fig 2.2b: % rounded vs ε by penalty λ, one panel per norm (regularised nets, architectures with every λ)."""
    import seaborn as sns

    d = full_lambda_archs(df)
    g = sns.relplot(_pct(d[d.reg != "none"]), x="eps", y="% rounded to 0", hue="λ", col="regularisation",
                    kind="line", errorbar=None, marker="o", height=3.2, aspect=1.2)
    for ax in g.axes.flat:
        _eps_axis(ax, df)
    return g.figure


def fig_2_3(df):
    """Fig 2.3: test accuracy vs ε, one panel per architecture, by regularisation type."""
    import seaborn as sns

    from .plots import PALETTE

    pal = {"none": PALETTE["none"], "L1": PALETTE["l1"], "L2": PALETTE["l2"]}
    g = sns.relplot(_pct(df), x="eps", y="test accuracy", hue="regularisation", palette=pal, col="arch",
                    col_wrap=2, kind="line", errorbar=None, marker="o", height=2.8, aspect=1.3,
                    facet_kws={"sharey": False})
    for ax in g.axes.flat:
        _eps_axis(ax, df)
    return g.figure


def fig_sparse_accurate(df, eps: float = 1e-2):
    """Extra: test accuracy vs share of zero weights after rounding at ε (one point per net)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .plots import PALETTE

    pal = {"none": PALETTE["none"], "L1": PALETTE["l1"], "L2": PALETTE["l2"]}
    d = _pct(df[np.isclose(df.eps, eps)])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.scatterplot(d, x="% rounded to 0", y="test accuracy", hue="regularisation", style="arch", palette=pal,
                    s=60, ax=ax)
    ax.set_xlabel(f"% of weights set to 0 at ε = {eps:g}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def compute(scale: str, n_jobs: int = 1, scheduler=None, time_limit=None, progress=True, **overrides):
    """The ``nnmiplib run 1`` hook: train (or load) the chapter's nets and run the rounding sweep.

    Missing nets are trained over ``n_jobs`` processes (one torch thread each, so the
    nets do not depend on ``n_jobs``); ``scheduler`` and ``time_limit`` do not apply.
    """
    cfg = preset(scale, **overrides)
    zoo = train_zoo(cfg, progress=progress, n_jobs=n_jobs)
    rounding_sweep(cfg, zoo, progress=progress)
    return cfg
