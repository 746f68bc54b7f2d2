"""Shared figure style and the glue step every chapter uses.

Chapters draw with seaborn/matplotlib, then call :func:`show` with the figure's glue
name; the chapter's markdown places it with ``{glue:figure}`` and a caption that starts
with the thesis id ("Fig 2.4 — …").
"""

from __future__ import annotations

__all__ = ["PALETTE", "show", "style"]

PALETTE = {"none": "#4d4d4d", "l1": "#1f77b4", "l2": "#d62728"}


def style() -> None:
    """Seaborn's paper style with readable sizes; call once per chapter."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)


def show(name: str, fig) -> None:
    """Glue ``fig`` under ``name`` for ``{glue:figure}`` and close it.

    Outside a notebook (tests, scripts) the figure is only closed.
    """
    import matplotlib.pyplot as plt

    try:
        from myst_nb import glue
    except ImportError:  # pragma: no cover - myst-nb is part of the book environment
        glue = None
    if glue is not None:
        glue(name, fig, display=False)
    plt.close(fig)
