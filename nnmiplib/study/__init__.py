"""The book's chapters as library code: each ``chN`` module holds its chapter's grids,
tables, figures and verdicts; the notebooks in ``notebooks/`` call them.

- ``common`` — scales and presets; ``plots`` — the book's figure style;
- ``ch1`` … ``ch4`` (``ch2_report``) — the chapters' computations and judgements;
- ``verdicts`` — the thesis's findings and our verdicts on them;
- ``run`` — ``nnmiplib run CHAPTER`` (grids without a notebook);
- ``book`` — ``make book``: papermill over the chapters, then the HTML build.
"""
