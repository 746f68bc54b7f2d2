"""Chapter 2 — figures (Figs 2.4–2.15 and the stable-neuron share) and the verdicts on F2.5–F2.8.

Every function takes the frames of :mod:`nnmiplib.study.ch2` and returns a matplotlib
figure (the notebook glues it) or a list of :class:`~nnmiplib.study.verdicts.Finding`.
"""

from __future__ import annotations

import numpy as np

from .verdicts import UNDECIDED, Finding

__all__ = [
    "METHOD_ORDER",
    "fig_gap_by_arch",
    "fig_gap_by_reg",
    "fig_l1_vs_l2_time",
    "fig_layer_gap",
    "fig_lp_vs_milp_time",
    "fig_stable",
    "fig_time_vs_eps",
    "fig_timelimit",
    "judge",
]

METHOD_ORDER = ["interval", "crown", "lp", "milp"]
REG_ORDER = ["none", "l1", "l2"]


def _facet_fig(g, title=None):
    if title:
        g.figure.suptitle(title, y=1.02)
    return g.figure


def _empty(msg):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2))
    ax.text(0.5, 0.5, msg, ha="center", va="center")
    ax.set_axis_off()
    return fig


def _log_y(g, data, col):
    if (data[col] > 0).all():
        g.set(yscale="log")
    elif (data[col] >= 0).all():
        g.set(yscale="symlog", )


def fig_gap_by_reg(gaps):
    """Fig 2.4: mean RO gap vs ε by regularisation, one panel per method (interval, crown, LP)."""
    import seaborn as sns

    gaps = gaps.dropna(subset=["ro_gap"]) if not gaps.empty else gaps
    if gaps.empty:
        return _empty("no neuron was bounded by both the LP and the MILP run")
    d = gaps.assign(method=gaps.method.str.upper().where(gaps.method == "lp", gaps.method))
    g = sns.relplot(data=d, x="eps", y="ro_gap", hue="reg", hue_order=[r for r in REG_ORDER if r in set(d.reg)],
                    col="method", kind="line", marker="o", errorbar=("pi", 100), height=3, aspect=1.1,
                    facet_kws={"sharey": False})
    g.set(xscale="log", xlabel="rounding radius ε", ylabel="mean RO gap vs MILP")
    return _facet_fig(g)


def fig_gap_by_arch(gaps, regularised: bool):
    """Fig 2.5 (no penalty) / Fig 2.6 (L1, L2): mean RO gap vs ε, one panel per architecture."""
    import seaborn as sns

    d = gaps.dropna(subset=["ro_gap"]) if not gaps.empty else gaps
    d = d[(d.reg != "none") if regularised else (d.reg == "none")] if not d.empty else d
    if d.empty:
        return _empty("no runs of this kind at this scale")
    kw = {"hue": "reg", "style": "method"} if regularised else {"hue": "method"}
    g = sns.relplot(data=d, x="eps", y="ro_gap", col="arch", kind="line", marker="o", errorbar=("pi", 100), height=2.8, aspect=1.0,
                    facet_kws={"sharey": False}, **kw)
    g.set(xscale="log", xlabel="ε", ylabel="mean RO gap vs MILP")
    return _facet_fig(g)


def fig_layer_gap(layer_gaps):
    """Fig 2.7: mean RO gap of the lower bound vs layer, one panel per architecture."""
    import seaborn as sns

    if layer_gaps.empty:
        return _empty("no LP/MILP pairs computed")
    from matplotlib.ticker import MaxNLocator

    d = layer_gaps.assign(ro_gap_lower=np.maximum(layer_gaps.ro_gap_lower, 1e-6))  # log axis: floor at 1e-6
    g = sns.relplot(data=d, x="layer", y="ro_gap_lower", hue="method", col="arch", kind="line",
                    marker="o", height=2.8, aspect=1.0, facet_kws={"sharey": False, "sharex": False})
    g.set(yscale="log", xlabel="affine layer l (last = logits)", ylabel="mean RO gap, lower bound (≥ 1e-6)")
    for ax in g.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _facet_fig(g)


def _main_times(runs):
    r = runs[(runs.study == "main") & runs.method.isin(["lp", "milp", "crown"])]
    return r.pivot_table(index=["arch", "reg", "eps"], columns="method", values="time").reset_index()


def fig_probe(probe):
    """The node probe's MILPs: share of the gap between the bound the neuron started from and
    the best input found that each solver closed in the same per-solve limit (1 = proven),
    per net and layer — the HiGHS MIP against the library's branch and bound."""
    import matplotlib.pyplot as plt

    need = {"start_bound", "dual_bound", "bab_bound", "best_point"}
    p = probe.dropna(subset=["bab_bound", "best_point"]) if not probe.empty and need <= set(probe) else probe.iloc[:0]
    if p.empty:
        return _empty("no node probe with the branch and bound at this scale")
    span = (p.start_bound - p.best_point).clip(lower=1e-12)
    share = lambda bound: ((p.start_bound - bound.clip(upper=p.start_bound)) / span).clip(0, 1)
    nets = list(dict.fromkeys(p.arch))
    fig, axes = plt.subplots(1, len(nets), figsize=(3.2 * len(nets), 3), squeeze=False, sharey=True)
    for ax, arch in zip(axes[0], nets):
        m = (p.arch == arch).values
        x = np.arange(m.sum())
        ax.bar(x - 0.2, share(p.dual_bound)[m], 0.4, label="HiGHS MIP")
        ax.bar(x + 0.2, share(p.bab_bound)[m], 0.4, label="branch and bound")
        ax.set(xticks=x, xticklabels=p.layer[m].astype(int), xlabel="layer", title=arch, ylim=(0, 1.05))
    axes[0][0].set_ylabel("share of the gap closed")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def fig_lp_vs_milp_time(runs, times=None):
    """Fig 2.8: LP vs MILP wall time per (net, ε), log–log, with the diagonal.

    With ``times`` (:func:`nnmiplib.study.ch2.time_frame`): seconds per neuron on the neurons
    both runs bounded (the MILP comparison bounds a sample of them), else each run's total time.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    per_neuron = times is not None and not times.empty
    t = times if per_neuron else _main_times(runs)
    if t.empty or "lp" not in t or "milp" not in t:
        return _empty("no LP/MILP runs")
    fig, ax = plt.subplots(figsize=(5, 4))
    sns.scatterplot(data=t, x="lp", y="milp", hue="arch", style="reg", s=60, ax=ax)
    lo = max(1e-3, float(np.nanmin(t[["lp", "milp"]].values)) / 2)
    hi = float(np.nanmax(t[["lp", "milp"]].values)) * 2
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="equal")
    ax.plot([lo, hi], [10 * lo, 10 * hi], "k:", lw=0.8, label="MILP = 10 × LP")
    unit = "s per bounded neuron" if per_neuron else "s"
    ax.set(xscale="log", yscale="log", xlabel=f"LP bound time ({unit})", ylabel=f"MILP bound time ({unit})")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


def fig_time_vs_eps(runs, reg: str):
    """Figs 2.9 (L1) / 2.10 (L2): LP and MILP (and crown) times vs ε, one panel per architecture."""
    import seaborn as sns

    r = runs[(runs.study == "main") & (runs.reg == reg) & runs.method.isin(["crown", "lp", "milp"])] \
        if not runs.empty else runs
    if r.empty:
        return _empty(f"no {reg.upper()} runs at this scale")
    g = sns.relplot(data=r, x="eps", y="time", hue="method", hue_order=["crown", "lp", "milp"], col="arch",
                    kind="line", marker="o", errorbar=("pi", 100), height=2.8, aspect=1.0)
    g.set(xscale="log", yscale="log", xlabel="ε", ylabel="bound time (s)")
    return _facet_fig(g)


def fig_l1_vs_l2_time(runs, method: str):
    """Figs 2.11 (LP) / 2.12 (MILP): L1 vs L2 bound times per architecture (mean over ε)."""
    import seaborn as sns

    r = runs[(runs.study == "main") & (runs.method == method) & runs.reg.isin(["l1", "l2"])] \
        if not runs.empty else runs
    if r.empty:
        return _empty(f"no regularised {method.upper()} runs at this scale")
    g = sns.catplot(data=r, x="arch", y="time", hue="reg", kind="bar", height=3, aspect=1.5, errorbar=("pi", 100))
    g.set(yscale="log", ylabel=f"{method.upper()} bound time (s)", xlabel="architecture")
    return _facet_fig(g)


def fig_timelimit(tl, method: str, ref: str):
    """Figs 2.13–2.15: mean Big-M constant relative to the best vs the total time limit T."""
    import seaborn as sns

    d = tl[(tl.method == method) & (tl.ref == ref)].dropna(subset=["ratio"]) if not tl.empty else tl
    if d.empty:
        return _empty("time-limit study not run")
    g = sns.relplot(data=d, x="T", y="ratio", hue="reg", col="side", kind="line", marker="o", errorbar=("pi", 100), height=3, aspect=1.1)
    lab = "best MILP constant" if ref == "vs_best_milp" else f"best {method.upper()} constant"
    g.set(xlabel="total time limit T (s)", ylabel=f"mean {method.upper()} / {lab}")
    return _facet_fig(g)


def fig_stable(stable):
    """Extra: share of hidden neurons each method proves stable (no binary needed)."""
    import seaborn as sns

    if stable.empty:
        return _empty("no runs")
    g = sns.catplot(data=stable, x="method", y="stable_share", order=[m for m in METHOD_ORDER if m in set(stable.method)],
                    hue="reg", col="arch", kind="bar", height=2.8, aspect=1.2, errorbar=("pi", 100))
    g.set(ylabel="share of hidden neurons stable", ylim=(0, 1))
    g.tick_params(axis="x", labelsize=8)
    return _facet_fig(g)


# ------------------------------------------------------------------ verdicts
def _f(x, d=3):
    return "nan" if x is None or not np.isfinite(x) else f"{x:.{d}g}"


def _proven_share(evidence) -> tuple[float, str]:
    """Share of the MILP comparison's bound sides proven by a finished solve, and the reason text
    for an undecided verdict (empty when at least half are proven, or no evidence is given)."""
    if evidence is None or evidence.empty or not evidence.sides.sum():
        return float("nan"), ""
    share = float(evidence.proven.sum() / evidence.sides.sum())
    if share >= 0.5:
        return share, ""
    lims = sorted({float(x) for x in evidence["per-solve limit (s)"].dropna()})
    lim = "/".join(f"{x:g}" for x in lims) + " s" if lims else "its limit"
    return share, (f"{int(evidence.proven.sum())} of {int(evidence.sides.sum())} MILP bound sides proven within "
                   f"{lim} per solve ({int(evidence.time_limit.sum())} ended at the limit with the root's dual "
                   "bound): the MILP reference is not the optimum, so the RO gaps are lower estimates")


def judge(gaps, layer_gaps, runs, tl, evidence=None, times=None) -> list[Finding]:
    """Verdicts on F2.5–F2.8 by explicit rules on our numbers.

    ``evidence`` (:func:`nnmiplib.study.ch2.milp_evidence`) says how many of the MILP
    comparison's solves finished. F2.5 and F2.6 measure gaps against the MILP bounds and
    F2.8 a ratio to them: when fewer than half of those sides are proven, a MILP bound is
    a time-limited dual bound, the gap a lower estimate, and those findings are "undecided
    at this scale" (F2.8 is refuted regardless when even the lower estimate exceeds 2.64).
    ``times`` (:func:`nnmiplib.study.ch2.time_frame`): F2.7 then compares seconds per neuron on
    the neurons both runs bounded, and is undecided when it fails on mostly capped MILP times.
    """
    out = []
    _, why = _proven_share(evidence)
    undecided_rule = (" Undecided at this scale when fewer than half of the MILP comparison's bound sides are "
                      "proven optimal (the gaps are then lower estimates).")
    # F2.5 -------------------------------------------------------------
    rule = ("(a) for each penalty, the mean LP RO gap at the largest ε is ≤ the one at the smallest ε; "
            "(b) the mean LP RO gap of the L1/L2 nets is < that of the unpenalised nets. "
            "Both → confirmed, one → partly, none → refuted.")
    lp = gaps[gaps.method == "lp"].dropna(subset=["ro_gap"]) if not gaps.empty else gaps
    if lp.empty or lp.eps.nunique() < 2:
        out.append(Finding("F2.5", "LP bounds get relatively better with more rounding and regularisation",
                           "RO gap falls as ε and λ grow (Fig 2.4)", "no LP/MILP pairs", "not yet run", rule))
    else:
        by = lp.groupby(["reg", "eps"]).ro_gap.mean().unstack()
        e0, e1 = by.columns.min(), by.columns.max()
        falls = {r: bool(by.loc[r, e1] <= by.loc[r, e0]) for r in by.index}
        a = sum(falls.values()) > len(falls) / 2
        reg_m = lp[lp.reg != "none"].ro_gap.mean()
        none_m = lp[lp.reg == "none"].ro_gap.mean()
        b = bool(np.isfinite(reg_m) and np.isfinite(none_m) and reg_m < none_m)
        ours = ("; ".join(f"{r}: {_f(by.loc[r, e0])} at ε={e0:g} → {_f(by.loc[r, e1])} at ε={e1:g}" for r in by.index)
                + f"; mean gap penalised {_f(reg_m)} vs unpenalised {_f(none_m)}")
        if not (lp.reg == "none").any():
            ours += " (no unpenalised net at this scale: (b) is not measured)"
        v = {2: "confirmed", 1: "partly", 0: "refuted"}[int(a) + int(b)]
        out.append(Finding("F2.5", "LP bounds get relatively better with more rounding and regularisation",
                           "RO gap falls as ε and λ grow (Fig 2.4)", ours, UNDECIDED if why else v,
                           rule + undecided_rule, limit=why))
    # F2.6 -------------------------------------------------------------
    rule = ("for every architecture with ≥ 4 bounded layers, fit log10(mean LP lower-bound RO gap + 1e-6) "
            "linearly against the layer: slope > 0 and R² ≥ 0.7 for all → confirmed; slope > 0 for some → "
            "partly; else refuted.")
    d = layer_gaps[layer_gaps.method == "lp"] if not layer_gaps.empty else layer_gaps
    fits = {}
    for arch, g in (d.groupby("arch") if not d.empty else []):
        m = g[~g["last"]].groupby("layer").ro_gap_lower.mean()  # hidden layers only (the logits are not in Fig 2.7)
        if len(m) >= 3:
            x, y = m.index.values.astype(float), np.log10(m.values + 1e-6)
            slope, icpt = np.polyfit(x, y, 1)
            ss = ((y - y.mean()) ** 2).sum()
            r2 = 1 - ((y - (slope * x + icpt)) ** 2).sum() / ss if ss > 0 else 0.0
            fits[arch] = (slope, r2, m.values[0], m.values[-1])
    if not fits:
        out.append(Finding("F2.6", "the LP gap deteriorates exponentially with layer depth", "Fig 2.7",
                           "no deep architecture with LP/MILP pairs", "not yet run", rule))
    else:
        allexp = all(s > 0 and r2 >= 0.7 for s, r2, *_ in fits.values())
        some = any(s > 0 for s, *_ in fits.values())
        ours = "; ".join(f"{a}: gap {_f(f0)} → {_f(f1)}, ×{_f(10 ** s, 2)} per layer, R²={_f(r2, 2)}"
                         for a, (s, r2, f0, f1) in fits.items())
        v = "confirmed" if allexp else ("partly" if some else "refuted")
        out.append(Finding("F2.6", "the LP gap deteriorates exponentially with layer depth", "Fig 2.7", ours,
                           UNDECIDED if why else v, rule + undecided_rule, limit=why))
    # F2.7 -------------------------------------------------------------
    rule = ("median over (net, ε) of MILP time / LP time ≥ 10 (an order of magnitude), and larger on deep "
            "(≥ 5 hidden layers) than on shallow (≤ 2) nets. Both → confirmed, one → partly, none → refuted. "
            "Times are capped by our budgets, so the ratio is a lower estimate.")
    per_neuron = times is not None and not times.empty
    t = times if per_neuron else (_main_times(runs) if not runs.empty else None)
    if t is None or t.empty or "lp" not in t or "milp" not in t:
        out.append(Finding("F2.7", "LP is orders of magnitude faster than MILP, most on deep nets", "Fig 2.8",
                           "no runs", "not yet run", rule))
    else:
        t = t.assign(ratio=t.milp / t.lp, depth=[int(a.split("x")[1]) for a in t.arch])
        med = float(t.ratio.median())
        deep, shallow = t[t.depth >= 5].ratio.median(), t[t.depth <= 2].ratio.median()
        a, b = med >= 10, bool(np.isfinite(deep) and np.isfinite(shallow) and deep > shallow)
        unit = " per bounded neuron" if per_neuron else ""
        ours = (f"median MILP/LP time ratio {_f(med)} (deep nets {_f(deep)}, shallow {_f(shallow)}); "
                f"median LP {_f(t.lp.median())} s, MILP {_f(t.milp.median())} s{unit}")
        v = {2: "confirmed", 1: "partly", 0: "refuted"}[int(a) + int(b)]
        capped = float(t.capped.mean()) if "capped" in t else 0.0
        lim = ""
        if v != "confirmed" and capped >= 0.5:  # a capped MILP time is a lower estimate: more time can only raise it
            ours += f"; {capped:.0%} of the MILP solves used their whole limit"
            lim = (f"{capped:.0%} of the MILP solves stopped at the per-solve limit, so the MILP times and the "
                   "ratios are lower estimates")
            v = UNDECIDED
        out.append(Finding("F2.7", "LP is orders of magnitude faster than MILP, most on deep nets",
                           "'several orders of magnitude' (no number)", ours, v,
                           rule + " Undecided when the rule fails on times of which at least half are capped.",
                           limit=lim))
    # F2.8 -------------------------------------------------------------
    rule = ("largest mean ratio (over the neurons of layers ≥ 1, each side H and H̄) of the LP Big-M constant "
            "to the best MILP one, over both nets and every T: ≤ 2.64 (2.4 + 10 %) → confirmed, else refuted.")
    d = tl[(tl.method == "lp") & (tl.ref == "vs_best_milp")] if not tl.empty else tl
    if d.empty or not np.isfinite(d.ratio).any():
        out.append(Finding("F2.8", "within practical time limits LP bounds are at most ≈2.4× the best MILP bounds",
                           "≤ 2.4×", "time-limit study not run", "not yet run", rule))
    else:
        mx = float(d.ratio.max())
        ours = (f"mean LP/best-MILP ratio between {_f(float(d.ratio.min()))} and {_f(mx)}; "
                f"worst single neuron {_f(float(d.ratio_max.max()))}")
        if mx > 2.64:
            v, lim = "refuted", ""  # a longer MILP only tightens its constants: the ratio can only grow
        else:
            k, n = int(d.proven.sum()), int(d.n.sum())
            lim = "" if n and k >= 0.5 * n else (
                f"{k} of {n} best-MILP constants proven optimal at the study's longest limit: with longer limits "
                "the MILP constants may tighten and the ratio grow")
            v = UNDECIDED if lim else "confirmed"
        out.append(Finding("F2.8", "within practical time limits LP bounds are at most ≈2.4× the best MILP bounds",
                           "≤ 2.4× (§2.3.4)", ours, v,
                           rule + " Undecided when fewer than half of the best MILP constants are proven optimal "
                           "and the ratio is below 2.64 (the MILP may tighten with time).", limit=lim))
    return out
