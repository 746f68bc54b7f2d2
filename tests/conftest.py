"""Shared fixtures: the smoke-scale book, executed once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory) -> Path:
    """A copy of the book with every chapter executed by papermill at ``smoke`` scale.

    Tests that use it must be in the ``book`` xdist group so that one worker executes
    the chapters once (``@pytest.mark.xdist_group("book")``).
    """
    from nnmiplib.study import book as bookbuild

    dest = bookbuild.copy_book_sources(tmp_path_factory.mktemp("smoke-book"), ROOT)
    times = bookbuild.execute_chapters("smoke", dest / "book", root=ROOT)
    (dest / "chapter-times.txt").write_text("\n".join(f"{k} {v:.1f}" for k, v in times.items()))
    return dest


@pytest.fixture(scope="session")
def smoke_html(smoke_book) -> Path:
    from nnmiplib.study import book as bookbuild

    return bookbuild.build_html(smoke_book, strict=True)


def executed(smoke_book: Path, stem: str):
    """The executed notebook of chapter ``stem`` (e.g. ``01_training_and_rounding``)."""
    import nbformat

    return nbformat.read(smoke_book / "book" / f"{stem}.ipynb", as_version=4)


def glued_names(nb) -> set[str]:
    """Names of the figures/values a notebook glued for ``{glue:figure}``."""
    names = set()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if "name" in meta:
                names.add(meta["name"])
    return names


os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
