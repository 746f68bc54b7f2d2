"""Write notebooks/09_conclusions.ipynb (run: .venv/bin/python tools/make_notebook_09.py)."""

from nbtools import code, md, parameters, write

cells = [
    md(
        "# Conclusions: the thesis's findings, judged\n\n"
        "One row per finding of the thesis (SPEC F2.1 … F4.8): the thesis's claim, the number it "
        "states, what we measured, at which scale, and the verdict — *confirmed*, *refuted*, *partly*, "
        "or *not yet run*. Each chapter judges its own findings by an explicit rule, shown in the "
        "chapter next to the figures; this page gathers them."
    ),
    parameters('scale = "quick"\nn_jobs = 1\nseed = 0'),
    code(
        "import pandas as pd\n"
        "from nnmiplib import verdicts\n"
        "from nnmiplib.study.common import admonition\n\n"
        "rows = verdicts.with_missing(verdicts.load_all(scale))\n"
        "admonition(f'Scale: {scale}', [f'verdicts recorded by the chapters executed at scale {scale!r}; '\n"
        "           'findings whose chapter has not run at this scale are marked \"not yet run\"'])"),
    code(
        "counts = pd.Series([r.verdict for r in rows]).value_counts().reindex(verdicts.VERDICTS, fill_value=0)\n"
        "counts.to_frame('findings').T"),
    md("## Every finding"),
    code(
        "pd.set_option('display.max_colwidth', None)\n"
        "verdicts.table(rows).style.hide(axis='index')"),
    md(
        "## How to read a verdict\n\n"
        "Most of the thesis's results exist only as figures, so most comparisons are about trends "
        "and orders of magnitude, not equal numbers. A verdict holds for the networks and the "
        "scale named in its row: at `quick` scale the networks train for fewer epochs and the time "
        "limits are shorter than the thesis's, and each chapter lists these deviations at its top. "
        "The rule that produced each verdict is stated in its chapter."
    ),
]

write(cells, "09_conclusions.ipynb")
