"""Chapter 2 end to end: the notebook runs at smoke scale, glues every figure, records verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGS = {f"fig-2-{i}" for i in range(4, 16)} | {"fig-2-stable"}


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_ch02_notebook_smoke(smoke_book):
    """Executed once for the whole suite by the ``smoke_book`` fixture (tests/conftest.py)."""
    import nbformat
    from conftest import executed

    from nnmiplib.study import verdicts

    src = ROOT / "notebooks" / "02_bounds.ipynb"
    nb = executed(smoke_book, "02_bounds")
    glued = set()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                glued.add(name)
                kinds = ("text/markdown",) if name.startswith("vs-") else ("image/png", "image/svg+xml")
                assert any(k.endswith(kinds) for k in out.get("data", {})), name
            assert out.get("output_type") != "error", out
    assert FIGS <= glued, f"missing figures: {sorted(FIGS - glued)}"
    rows = [f for f in verdicts.load_all("smoke") if f.id in {"F2.5", "F2.6", "F2.7", "F2.8"}]
    assert {f.id for f in rows} == {"F2.5", "F2.6", "F2.7", "F2.8"}
    stored = json.loads((verdicts._dir() / "ch2-smoke.json").read_text())
    assert stored["chapter"] == "ch2" and len(stored["findings"]) == 4
    # the source notebook is committed without outputs
    srcnb = nbformat.read(src, as_version=4)
    assert all(not c.get("outputs") for c in srcnb.cells if c.cell_type == "code")
    assert "parameters" in srcnb.cells[1].metadata.get("tags", [])


def test_ch02_preset_and_cells():
    from nnmiplib.study import ch2

    for scale in ("smoke", "quick", "paper"):
        cfg = ch2.preset(scale)
        assert cfg.deviations and cfg.tl_eps == 0.04
        cells = ch2.cells(cfg)
        n_main = len(cfg.nets) * len(cfg.eps) * 4
        assert len(cells) == n_main + 2 * len(cfg.tl_nets) * len(cfg.tl_limits)
    assert len(ch2.preset("paper").nets) == 28
    q = ch2.preset("quick")  # the real architectures, LP/MILP on 8 sampled neurons per layer
    assert q.train_scale == "quick" and q.max_neurons == 8
    solver_cells = [c for c in ch2.cells(q) if c["method"] in ("lp", "milp") and c["study"] == "main"]
    assert solver_cells and all(c["max_neurons"] == 8 for c in solver_cells)
    assert all("max_neurons" not in c for c in ch2.cells(ch2.preset("paper")))
    with pytest.raises(ValueError, match="unknown scale"):
        ch2.preset("huge")
