"""Helpers shared by the ``tools/make_notebook_NN.py`` scripts that write the chapter notebooks.

Cells get deterministic ids (from their position and source), so regenerating an
unchanged notebook leaves the file byte-identical and a changed cell shows as a small diff.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nbformat as nbf

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def md(src: str):
    return nbf.v4.new_markdown_cell(src)


def cell(src: str, tags=()):
    """A code cell with the given tags (none: shown with its input)."""
    return nbf.v4.new_code_cell(src, metadata={"tags": list(tags)} if tags else {})


def code(src: str, hide: bool = True):
    """A code cell whose input the book hides (``hide``) or shows."""
    return cell(src, ["remove-input"] if hide else ())


def parameters(src: str):
    """The papermill parameters cell (hidden in the book)."""
    return cell(src, ["parameters", "remove-cell"])


def figure(name: str, caption: str):
    """A MyST glued figure with a referenceable name."""
    return md(f"```{{glue:figure}} {name}\n:name: {name}\n\n{caption}\n```")


def beside(*ids: str):
    """A "thesis reported / we measured" box showing the glued verdict texts of ``ids``
    (see :func:`nnmiplib.verdicts.glue_beside`)."""
    body = "\n\n".join(f"```{{glue:md}} vs-{fid.replace('.', '-')}\n:format: myst\n```" for fid in ids)
    return md(f"::::{{admonition}} Thesis reported / we measured\n:class: tip\n{body}\n::::")


def write(cells, filename: str) -> Path:
    """Write ``notebooks/filename`` with a Python 3 kernel and deterministic cell ids."""
    for i, c in enumerate(cells):
        c["id"] = hashlib.sha1(f"{i}:{c['source']}".encode()).hexdigest()[:8]
    nb = nbf.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    out = NOTEBOOKS / filename
    nbf.write(nb, out)
    print(out)
    return out
