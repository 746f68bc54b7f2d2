"""Write notebooks/04_comparator.ipynb (run: .venv/bin/python tools/make_notebook_04.py)."""

from nbtools import beside, code, figure, md, parameters, write

TITLES = {
    "4.2": "800x2 (net 1) vs 200x5 (net 2), simple domain", "4.3": "800x2 vs 200x5, neighbours domain",
    "4.4": "800x2 vs 100x10, simple domain", "4.5": "800x2 vs 100x10, neighbours domain",
    "4.6": "200x5 vs 100x10, simple domain", "4.7": "200x5 vs 100x10, neighbours domain",
}

cells = [
    md("# The comparator: two networks, one input\n\n"
       "Chapter 4 of the thesis puts the Big-M models of two networks side by side, sharing only "
       "the input $x = h_1^0 = h_2^0 \\in X$ (problem PC), and asks questions about their "
       "*difference*: **maxdiff** — the largest $\\lVert\\operatorname{softmax}(a_1) - "
       "\\operatorname{softmax}(a_2)\\rVert_1$; **maxout** — can net 1 answer $C_1$ while net 2 answers "
       "$C_2$; **maxflip** — how many neurons can switch activity; and **mineps** — the smallest "
       "$L_\\infty$ perturbation $\\varepsilon^*$ of an image on which a pruned copy of a network "
       "disagrees with the original. As in the thesis, the maxdiff networks are pruned by 90 % "
       "and bounded by the LP Bounder on each domain; the comparator models exactly the networks "
       "its bounds belong to."),
    parameters('scale = "quick"\nn_jobs = 1\nseed = 0\ndigits = None\nmd_time = None'),
    code("import warnings\n\nimport numpy as np\nimport pandas as pd\nfrom IPython.display import Markdown, display\n\n"
         "warnings.filterwarnings('ignore', message='IProgress not found')\n"
         "warnings.filterwarnings('ignore', message='The given NumPy array is not writable')\n"
         "from nnmiplib import plots, verdicts\nfrom nnmiplib.study import ch3, ch4\n"
         "from nnmiplib.study.common import admonition\n\n"
         "plots.style()\npd.set_option('display.max_colwidth', None)\n"
         "cfg = ch4.preset(scale, digits=digits, md_time=md_time, seed=seed)\n"
         "admonition(f'Scale: {scale}', cfg.deviations)"),
    md("## The networks (Table 4.1)"),
    code("ch4.table41().style.hide(axis='index')"),
    md("Table 4.1 — the four maxdiff architectures (L1, λ = 2·10⁻⁴). The thesis's last row reads "
       "\"(100,,10)\"; it is 10 hidden layers of 100 (§3.2.2)."),
    md("## Running the grids\n\nEvery LP-bound run and every query is one cell of a cached grid "
       "(`nnmiplib run 4 --scale …` computes them without the notebook; a rerun resumes)."),
    code("res = ch4.compute(scale, n_jobs=n_jobs, time_limit=md_time, progress=False, digits=digits, seed=seed)\n"
         "problems = [r.summary() for r in res.values() if not r.ok]\n"
         "md_ = res['maxdiff'].frame()\nme = res['mineps'].frame()\n"
         "admonition('Grid status', problems or [f'all cells of {len(res)} grids finished'],\n"
         "           'warning' if problems else 'note')"),
    md("## maxdiff (Tables 4.2–4.7, Figs 4.2–4.7)\n\n"
       "For each case: the thesis's rows (as printed) beside ours. Our row shows the classes and "
       "probabilities of both nets at the verified maxdiff witness, the L1 difference recomputed in "
       "float64, the sound dual bound of our piecewise-linear softmax relaxation and the solver status. "
       "A digit we did not run at this scale says so in the status column; \"—\" marks a cell without a "
       "verified witness."),
]
for i, (tid, title) in enumerate(TITLES.items()):
    fig_id = f"4.{i + 2}"
    cells += [
        md(f"### Table {tid} — {title}"),
        code(f"ch4.styled_side_by_side({tid!r}, md_)"),
        code(f"a1, a2, dom = ch4.CASES[{tid!r}]\n"
             f"sub = md_[(md_.arch1 == a1) & (md_.arch2 == a2) & (md_.dom == dom)]\n"
             f"plots.show('fig-{fig_id.replace('.', '-')}', ch4.fig_solutions(md_, a1, a2, dom, seed) if len(sub) else\n"
             f"           ch3.placeholder(f'not yet run at scale {{scale}}: {{a1}} vs {{a2}} on {{dom}}'))"),
        figure(f"fig-{fig_id.replace('.', '-')}", f"Fig {fig_id} — maxdiff solutions, {title}: the witness of "
               "each digit, with the class and probability of net 1 / net 2."),
    ]
cells += [
    md("### Summary of the six cases\n\n"
       "The derived counts of THESIS-NUMBERS §6 (both nets right, one or both wrong, wrong answers that "
       "are 8 or 9, the largest L1 difference when both are right), for the thesis's tables and ours."),
    code("ch4.counts_table(md_).set_index(['table', 'pair', 'domain', 'who'])"),
    beside("F4.1", "F4.2", "F4.3", "F4.4"),
    md("### The other pairs and the unit box\n\n"
       "The thesis ran every pair on all three domains but reported three pairs on two domains. Here "
       "is every maxdiff we ran, including `non_imgref` ($X = [0,1]^{784}$, no reference image)."),
    code("None if md_.empty else md_.assign(net1=[c[0] if v and c else None for c, v in zip(md_.classes, md_.verified)],\n"
         "           net2=[c[1] if v and c else None for c, v in zip(md_.classes, md_.verified)])\\\n"
         "   .pivot_table(index=['arch1', 'arch2', 'dom'], values=['objective', 'dual_bound', 'gap'],\n"
         "                aggfunc='mean').round(3)"),
    md("## maxout and maxflip (omitted by the thesis)\n\n"
       "**maxout** (thesis eq. 4.13, typo corrected): on the simple domain of each digit, can net 1 "
       "keep the true digit $C_1 = d$ (margin τ = 0.1 on the logits) while net 2 answers $C_2$ = its "
       "runner-up class at $x_0$? *infeasible* is a proof that no input of the box does that."),
    code("mo = res['maxout'].frame()\n"
         "mo[['arch1', 'arch2', 'digit', 'c1', 'c2', 'status', 'objective', 'dual_bound', 'verified']]"
         ".round(3) if len(mo) else 'not yet run'"),
    code("mo.groupby(['arch1', 'arch2']).status.value_counts().unstack(fill_value=0) if len(mo) else None"),
    md("**maxflip**: the (15,15) network against its copies pruned by 50 % and 90 %, on the simple "
       "domain of each digit: the largest number of hidden neurons (of 30) whose activity differs "
       "between the two networks on one input."),
    code("mf = res['maxflip'].frame()\n"
         "mf[['arch', 'p2', 'digit', 'status', 'objective', 'dual_bound', 'verified', 'n_hidden']].round(3)"
         " if len(mf) else 'not yet run'"),
    md("## mineps: the smallest perturbation that splits a network from its pruned copy (Figs 4.8–4.10)\n\n"
       "The (15,15) network $N_1$ and its copy $N_2$ pruned by p; one test image $x_d$ per digit "
       "with $N_1(x_d) = d$; ε* is the smallest $L_\\infty$ radius at which $N_1$ still answers $d$ "
       "but $N_2$ answers something else (by a margin of 10⁻⁶: ties are not findings). Filled markers: "
       "proven optimal; open markers: best feasible at the time limit; runs without a verified "
       "witness are not drawn."),
    code("if len(me):\n"
         "    plots.show('fig-4-8', ch4.fig_mineps(me))\n"
         "    plots.show('fig-4-9', ch4.fig_mineps(me, 58, 72))\n"
         "    plots.show('fig-4-10', ch4.fig_mineps(me, 74, 94))\n"
         "else:\n"
         "    for n in ('fig-4-8', 'fig-4-9', 'fig-4-10'):\n"
         "        plots.show(n, ch3.placeholder('not yet run at this scale'))\n"
         "mf_ = ch4.mineps_frame(me) if len(me) else me\n"
         "mf_.pivot_table(index='pruning %', columns='digit', values='eps').round(4) if len(me) else None"),
    figure("fig-4-8", "Fig 4.8 — ε* vs % of weights pruned, per digit (filled: proven optimal; open: best "
           "feasible), with the pruned network's test accuracy (dashed, right axis)."),
    figure("fig-4-9", "Fig 4.9 — Zoom on 60–70 % pruning."),
    figure("fig-4-10", "Fig 4.10 — Zoom on 75–93 % pruning."),
    code("mf_.groupby('pruning %').kind.value_counts().unstack(fill_value=0) if len(me) else None"),
    beside("F4.5", "F4.6", "F4.7", "F4.8"),
    md("## Findings\n\nEach finding is judged by the rule stated with it. The thesis's derived counts "
       "(THESIS-NUMBERS §6) are in the summary table above."),
    code("findings = ch4.judge(md_, me, seed)\nverdicts.record('ch4', scale, findings)\n"
         "verdicts.glue_beside(findings, [f'F4.{i}' for i in range(1, 9)])\n"
         "display(Markdown(ch3.findings_markdown(findings)))\nverdicts.table(findings)"),
]

write(cells, "04_comparator.ipynb")
