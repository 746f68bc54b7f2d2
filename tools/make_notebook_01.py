"""Write notebooks/01_training_and_rounding.ipynb (run: .venv/bin/python tools/make_notebook_01.py)."""

from nbtools import beside, code, figure, md, parameters, write

cells = [
    md(
        "# Training and rounding\n\n"
        "The thesis compresses trained ReLU networks by *rounding*: every weight with |w| ≤ ε is set "
        "to zero (Algorithm 2, the Rounder). This chapter trains the thesis's 28 MNIST networks "
        "(4 architectures × {no penalty, L1, L2} × λ ∈ {1, 2, 3}·10⁻⁴, §2.2.2), rounds each over a grid "
        "of radii ε, and measures what rounding costs in accuracy and how many weights it removes. "
        "It regenerates Table 2.1 and Figures 1.4, 2.1–2.3 and judges the thesis's findings F2.1–F2.4."
    ),
    parameters(
        'scale = "quick"\nn_jobs = 1\nseed = 0\nepochs = None  # None: the scale\'s default (smoke 2, quick 5, paper 50)\n'
        "eps_grid = None  # None: SPEC §6's grid"),
    code(
        "import logging\n"
        "import pandas as pd\n"
        "from IPython.display import Markdown, display\n"
        "from nnmiplib import plots, verdicts\n"
        "from nnmiplib.study import ch1\n"
        "from nnmiplib.study.common import admonition\n\n"
        "logging.getLogger('nnmiplib').setLevel(logging.WARNING)\n"
        "plots.style()\n"
        "pd.set_option('display.precision', 4)\n"
        "cfg = ch1.preset(scale, seed=seed, epochs=epochs, eps_grid=eps_grid)\n"
        "admonition(f'Scale: {scale}', cfg.deviations)"
    ),
    md(
        "## The networks (Table 2.1)\n\n"
        "Four fully connected ReLU architectures of growing depth and roughly comparable size, "
        "784 inputs (28×28 pixels in [0, 1]) and 10 logits."
    ),
    code("ch1.table_2_1(cfg).style.hide(axis='index').set_caption('Table 2.1 — architectures (hidden layers)')"),
    md(
        "Each architecture is trained without penalty and with an L1 or L2 penalty at three strengths λ. "
        "The thesis does not say how; the admonition above lists the book's choices. The nets are cached "
        "under `data/nets/` (parameters + JSON metadata), so later chapters load them instead of retraining."
    ),
    code("zoo = ch1.train_zoo(cfg, n_jobs=n_jobs)\nch1.zoo_table(zoo).style.hide(axis='index').format(precision=4).format({'train s': '{:.1f}'})"),
    md(
        "## Choice: penalty scaling\n\n"
        "The thesis's Def. 1.3 writes the training loss as a *sum* of per-sample losses plus λ·R(W). "
        "Mini-batch training usually minimises the batch *mean*; adding the thesis's λ·R(W) to the mean "
        "weighs the penalty b = batch-size times more than the thesis's sum does."
    ),
    code(
        "admonition('Choice: penalty scaling', [\n"
        "    'per mini-batch B of size b we minimise (1/b)·Σ_{i∈B} CE(x_i, y_i) + (λ/b)·R(W): the thesis\\'s '\n"
        "    'sum-loss divided by b, so λ keeps the thesis\\'s meaning',\n"
        "    'R(W) = Σ|w| (L1) or Σw² (L2) over every weight matrix, output layer included; biases are not penalised',\n"
        "    'the alternative, λ·R(W) added to the batch-mean loss, is measured below on the same nets '\n"
        "    '(same seed, data and epochs: ' + f'{cfg.epochs} epochs at scale {scale!r})',\n"
        "], kind='important')"
    ),
    code(
        "cmp = ch1.penalty_comparison(cfg, zoo)\n"
        "cmp.style.hide(axis='index').format({'test accuracy': '{:.4f}', 'share |w| ≤ 0.01': '{:.1%}'})"
    ),
    code("Markdown(ch1.penalty_comparison_markdown(cmp))"),
    md("## Training curve (Fig 1.4)"),
    code('plots.show("fig-1-4", ch1.fig_1_4(zoo, cfg))'),
    figure(
        "fig-1-4",
        "Fig 1.4 — training and validation cross-entropy (left) and accuracy (right) per epoch of our "
        "200x5 L1 λ = 2·10⁻⁴ net (the thesis shows an external illustration; ours is drawn from the "
        "training history stored with the net).",
    ),
    md(
        "## Rounding (Algorithm 2)\n\n"
        "Every net is rounded at every ε of the grid (weights only, the output layer included, no "
        "retraining), and the rounded net's accuracy is measured on the test split."
    ),
    code(
        "sweep = ch1.rounding_sweep(cfg, zoo)\n"
        "tab = sweep.pivot_table(index='setting', columns='eps', values='frac_zeroed') * 100\n"
        "tab.columns = [f'ε={e:g}' for e in tab.columns]\n"
        "tab.style.format(precision=1).set_caption('% of weights rounded to 0 (mean over the 4 architectures)')"
    ),
    code('plots.show("fig-2-1a", ch1.fig_2_1a(sweep))\nplots.show("fig-2-1b", ch1.fig_2_1b(sweep))'),
    figure(
        "fig-2-1a",
        "Fig 2.1a — test accuracy of the rounded nets vs rounding radius ε (mean over all nets, band ±1 sd); "
        "the thesis highlights the range [0, 0.04] (shaded).",
    ),
    figure("fig-2-1b", "Fig 2.1b — % of weights rounded to 0 vs ε, by penalty strength λ (0 = unregularised)."),
    beside("F2.1", "F2.2"),
    code(
        "f22 = sweep[(sweep.reg == 'none') & (sweep.eps == sweep.eps.max())]\n"
        "display(Markdown(\n"
        "    f'**Thesis reported / we measured** (unregularised nets, ε = {sweep.eps.max():g}): '\n"
        "    f'≈60 % of weights rounded / {f22.frac_zeroed.mean():.0%}; accuracy change < 1 % / '\n"
        "    f'{100 * f22.acc_change.abs().max():.2f} pp at most.'))"
    ),
    code('plots.show("fig-2-2a", ch1.fig_2_2a(sweep))\nplots.show("fig-2-2b", ch1.fig_2_2b(sweep))'),
    figure("fig-2-2a", "Fig 2.2a — % of weights rounded to 0 vs ε: L1 vs L2 vs no penalty (mean over nets, ±1 sd)."),
    figure("fig-2-2b", "Fig 2.2b — % of weights rounded to 0 vs ε by penalty strength λ, regularised nets, one panel per norm."),
    beside("F2.3"),
    code('plots.show("fig-2-3", ch1.fig_2_3(sweep))'),
    figure("fig-2-3", "Fig 2.3 — test accuracy vs ε, one panel per architecture, by regularisation type (mean over λ)."),
    beside("F2.4"),
    md(
        "## Sparse and accurate\n\n"
        "Each point is one net rounded at ε = 0.01: its test accuracy against the share of its weights "
        "set to zero. Nets that are both sparse and accurate sit at the top right."
    ),
    code('plots.show("fig-sparse-accurate", ch1.fig_sparse_accurate(sweep))'),
    figure(
        "fig-sparse-accurate",
        "Extra (not in the thesis) — test accuracy vs % of weights set to 0 by rounding at ε = 0.01, one point per net.",
    ),
    md(
        "## Findings\n\n"
        "Each finding of the thesis is judged by the explicit rule stated with it, on the numbers above."
    ),
    code(
        "found = ch1.findings(sweep, cfg)\n"
        "verdicts.record('ch1', scale, found)\n"
        "verdicts.glue_beside(found, ['F2.1', 'F2.2', 'F2.3', 'F2.4'])\n"
        "pd.set_option('display.max_colwidth', None)\n"
        "verdicts.table(found).style.hide(axis='index')"
    ),
    code("Markdown(ch1.findings_markdown(found))"),
]


write(cells, "01_training_and_rounding.ipynb")
