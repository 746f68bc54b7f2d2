"""Write notebooks/02_bounds.ipynb (run: .venv/bin/python tools/make_notebook_02.py)."""

from nbtools import beside, cell, figure, md, write


def code(src, *tags):
    return cell(src, tags)


cells = [
    md("# Chapter 2 — Activation bounds\n\n"
       "Every Big-M model of a ReLU network (thesis 1.1–1.8) needs, for each neuron, an interval "
       "$[-\\bar H, H]$ that contains every value its pre-activation can take on the input box. "
       "Loose intervals make the LP relaxation weak; tight ones make neurons *stable* (their ReLU is "
       "linear on the whole domain) and remove binaries. This chapter computes such bounds for the "
       "thesis's networks by the thesis's methods — the naive bound (Proposition 2.1) and the Bounder "
       "(Algorithm 3) with LPs or MILPs — next to two cheap methods the field uses (interval "
       "arithmetic and CROWN), and regenerates Figs 2.4–2.15: how good the LP bounds are compared with "
       "the MILP bounds, and what each costs."),
    code('scale = "quick"\nn_jobs = 1\nseed = 0\nsolver = "highs"', "parameters", "remove-cell"),
    code("import logging\n"
         "import pandas as pd\n"
         "from nnmiplib import plots, verdicts\n"
         "from nnmiplib.study import ch2, ch2_report as rep\n"
         "from nnmiplib.study.common import admonition\n\n"
         "logging.getLogger('nnmiplib').setLevel(logging.ERROR)\n"
         "plots.style()\n"
         "cfg = ch2.preset(scale, n_jobs=n_jobs, seed=seed, solver=solver)\n"
         "admonition(f'Scale: {scale}', cfg.deviations)", "remove-input"),
    md("## Five ways to bound a neuron\n\n"
       "Write $a^{l+1} = W^l h^l + b^l$ for the pre-activations of affine layer $l$ (the last one gives "
       "the logits) and $[l_j, u_j]$ for a neuron's bounds. Bounds are **signed** "
       "($l \\le a \\le u$); the model's constants are $H = \\max(0, u)$ and $\\bar H = \\max(0, -l)$.\n\n"
       "- **naive** (Proposition 2.1): $\\|a^{l+1}\\|_\\infty \\le \\|W^l\\|_\\infty \\|h^l\\|_\\infty + "
       "\\|b^l\\|_\\infty$, one number per layer. **Prop 2.2** is the same recursion started from the "
       "bounds at hand; it is the Bounder's fallback.\n"
       "- **interval** arithmetic: $u = W^+ \\max(0,u^{prev}) + W^- \\max(0,l^{prev}) + b$, per neuron.\n"
       "- **crown** (DeepPoly/CROWN): each neuron's pre-activation is written as a linear function of "
       "the input by back-substituting linear relaxations of the earlier ReLUs (the chord above, a line "
       "of slope 0 or 1 below), then maximised over the box.\n"
       "- **LP** and **MILP** (Algorithm 3): maximise and minimise each neuron over the Big-M model "
       "of the earlier layers, relaxed or not, layer after layer, with the bounds just found.\n\n"
       ":::{admonition} Choices\n"
       "- crown's lower relaxation of an unstable ReLU has slope 1 if $u > -l$, else 0 (DeepPoly's rule); "
       "every crown bound is intersected with interval, and interval with naive, so the cheap methods nest.\n"
       "- Floating point: every cheap bound is widened outward by $10^{-9}(1 + |v| + S)$, $S$ the sum of "
       "the absolute values of the terms added; LP bounds are recomputed from the solver's duals "
       "(a bound valid for any dual vector) and MILP bounds use the solver's *dual* bound, never the "
       "incumbent (see `nnmiplib.bounder`).\n"
       "- LP and MILP start from the intersection of naive, interval and crown, skip neurons already "
       "proven stable, and split the total budget $T$ over the layers exponentially (ratio 2 per layer); "
       "a solve the deadline cuts keeps its crown bound and is recorded as a fallback.\n"
       "- RO gap (SPEC §2) $= |B_{LP} - B_{MILP}| / (|B_{MILP}| + 10^{-10})$ per neuron, for upper and "
       "lower bounds, averaged over the neurons of layers $l \\ge 1$ (the first hidden layer is exact for "
       "every method) that both the LP and the MILP run bounded.\n"
       ":::\n\n"
       "On one network the five methods give these mean widths per layer:"),
    code("ch2.example_table(cfg).style.format('{:.3g}')"),
    md("Naive bounds explode with depth (the product of the layer norms); interval arithmetic is "
       "orders of magnitude tighter, crown tighter again in deep layers, and the solver-based bounds "
       "tighter still.\n\n"
       "## The runs\n\n"
       "Each (network, ε, method) is one cached run: interval, crown, LP and MILP on every network "
       "of the scale, each rounded by Algorithm 2 at each ε, on the input box $[0,1]^{784}$."),
    code("runs = ch2.run(cfg, n_jobs=n_jobs)\n"
         "(runs[runs.study == 'main'].groupby(['arch', 'method'])\n"
         " .agg(runs=('time', 'size'), mean_time_s=('time', 'mean'), stable_share=('stable_share', 'mean'),\n"
         "      solver_bounded=('solved', 'mean'))\n"
         " .style.format('{:.3g}'))", "remove-input"),
    md("`solver_bounded` is the share of neurons (layers $l \\ge 1$) whose bound came from a finished or "
       "time-limited solve rather than from the crown fallback.\n\n"
       "## Bound quality: the RO gap"),
    code("gaps = ch2.gap_frame(cfg)\n"
         "layer_gaps = ch2.layer_gap_frame(cfg)\n"
         "plots.show('fig-2-4', rep.fig_gap_by_reg(gaps))\n"
         "plots.show('fig-2-5', rep.fig_gap_by_arch(gaps, regularised=False))\n"
         "plots.show('fig-2-6', rep.fig_gap_by_arch(gaps, regularised=True))\n"
         "plots.show('fig-2-7', rep.fig_layer_gap(layer_gaps))", "remove-input"),
    figure("fig-2-4", "Fig 2.4 — Mean RO gap against the MILP bounds vs rounding radius ε, by regularisation; "
                      "one panel per method (the thesis shows LP only; interval and crown added)."),
    figure("fig-2-5", "Fig 2.5 — Mean RO gap vs ε, one panel per architecture, unregularised nets, by method."),
    figure("fig-2-6", "Fig 2.6 — Mean RO gap vs ε, one panel per architecture, L1 and L2 nets (line style: method)."),
    figure("fig-2-7", "Fig 2.7 — Mean RO gap of the lower bounds vs layer, per architecture and method."),
    beside("F2.5", "F2.6"),
    code("(gaps.pivot_table(index=['arch', 'reg', 'eps'], columns='method', values='ro_gap')\n"
         " .style.format('{:.3g}'))", "remove-input"),
    md("## Cost: LP vs MILP time"),
    code("plots.show('fig-2-8', rep.fig_lp_vs_milp_time(runs))\n"
         "plots.show('fig-2-9', rep.fig_time_vs_eps(runs, 'l1'))\n"
         "plots.show('fig-2-10', rep.fig_time_vs_eps(runs, 'l2'))\n"
         "plots.show('fig-2-11', rep.fig_l1_vs_l2_time(runs, 'lp'))\n"
         "plots.show('fig-2-12', rep.fig_l1_vs_l2_time(runs, 'milp'))", "remove-input"),
    figure("fig-2-8", "Fig 2.8 — LP vs MILP bound-computation wall time, one point per (net, ε)."),
    figure("fig-2-9", "Fig 2.9 — crown, LP and MILP bound times vs ε per architecture, L1 nets."),
    figure("fig-2-10", "Fig 2.10 — crown, LP and MILP bound times vs ε per architecture, L2 nets."),
    figure("fig-2-11", "Fig 2.11 — LP bound time, L1 vs L2 nets, per architecture (bars: mean over ε, "
                       "whiskers: range)."),
    figure("fig-2-12", "Fig 2.12 — MILP bound time, L1 vs L2 nets, per architecture."),
    beside("F2.7"),
    md("At `paper` the LP and MILP runs have a total budget: a time equal to the budget means the run was cut "
       "and its remaining neurons kept their crown bounds, so the MILP/LP time ratio is then a lower estimate. "
       "At `quick` every solve is capped instead (LP ≤ 2 s, MILP ≤ 1 s, on the same sampled neurons), so the "
       "ratio compares equal work, and a MILP at its cap stopped at its root node.\n\n"
       "## Quality vs time limit\n\n"
       "The thesis's §2.3.4 reruns the 200x5 nets (λ = 2·10⁻⁴, L1 and L2) at ε = 0.04 with growing "
       "total time limits and compares the Big-M constants $H$ and $\\bar H$: value 1 is the best "
       "constant found, larger values are improvable."),
    code("tl = ch2.timelimit_frame(cfg)\n"
         "plots.show('fig-2-13', rep.fig_timelimit(tl, 'lp', 'vs_best_milp'))\n"
         "plots.show('fig-2-14', rep.fig_timelimit(tl, 'lp', 'vs_own_best'))\n"
         "plots.show('fig-2-15', rep.fig_timelimit(tl, 'milp', 'vs_own_best'))", "remove-input"),
    figure("fig-2-13", "Fig 2.13 — 200x5, λ = 2·10⁻⁴, ε = 0.04: mean LP Big-M constant relative to the best MILP "
                       "constant vs total time limit T (thesis: T = 20…90 min; here scaled down)."),
    figure("fig-2-14", "Fig 2.14 — LP constant relative to the best LP constant vs T."),
    figure("fig-2-15", "Fig 2.15 — MILP constant relative to the best MILP constant vs T."),
    beside("F2.8"),
    code("(tl[tl.ref == 'vs_best_milp'].pivot_table(index=['reg', 'side', 'T'], columns='method', values='ratio')\n"
         " .style.format('{:.3g}'))", "remove-input"),
    md("The thesis reports that LP constants are **at most 2.4×** the best MILP ones (§2.3.4); the table "
       "above gives ours (column `lp`), the verdict below compares them.\n\n"
       "## Stable neurons and the cheap methods\n\n"
       "What the thesis does not show: how many neurons each method proves stable (each one removes "
       "a binary from every later model), and how much tighter crown is than interval arithmetic on the "
       "deepest hidden layer, at a cost of milliseconds. The table below the figure is computed on the "
       "networks of the scale's own architecture (the real ones at `quick` and `paper`): mean width of "
       "the deepest hidden layer, the interval/crown width ratio, the share of stable hidden neurons "
       "and the time of each method."),
    code("plots.show('fig-2-stable', rep.fig_stable(ch2.stable_frame(runs)))\n"
         "real = ch2.cheap_real_frame(cfg)\n"
         "real.style.format('{:.3g}', subset=[c for c in real.columns if c not in ('net',)]).hide(axis='index')",
         "remove-input"),
    figure("fig-2-stable", "Fig 2.A (not in the thesis) — Share of hidden neurons proven stable, by method, "
                           "architecture and regularisation (bars: mean over ε, whiskers: range)."),
    md("## Verdicts"),
    code("findings = rep.judge(gaps, layer_gaps, runs, tl)\n"
         "verdicts.record('ch2', scale, findings)\n"
         "verdicts.glue_beside(findings, ['F2.5', 'F2.6', 'F2.7', 'F2.8'])\n"
         "pd.set_option('display.max_colwidth', None)\n"
         "verdicts.table(findings).style.hide(axis='index')", "remove-input"),
    code("from IPython.display import Markdown\n"
         "Markdown('\\n'.join(f'- **{f.id}** ({f.claim}): **{f.verdict}** at scale {scale}. We measured: {f.ours}. '\n"
         "                    f'Rule: {f.rule}' for f in findings))", "remove-input"),
    md("At `quick` scale the nets are trained for 5 epochs and the solver budgets are seconds, not hours: "
       "the verdicts say what holds for these nets and budgets. `paper` scale "
       "(`-p scale paper -p n_jobs 16`) runs the thesis's 28 networks."),
]

write(cells, "02_bounds.ipynb")
