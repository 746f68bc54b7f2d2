"""Chapter 2 end to end: the notebook runs at smoke scale, glues every figure, records verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGS = {f"fig-2-{i}" for i in range(4, 16)} | {"fig-2-stable", "fig-2-probe"}


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
    # the probed MILPs solved again by the branch and bound: its proven bound and its best
    # input's value bracket the MILP bound, like HiGHS's dual bound does
    from nnmiplib.study import ch2

    probe = ch2.probe_frame(ch2.preset("smoke"))
    assert len(probe) and probe.bab_bound.notna().all() and probe.bab_status.notna().all()
    tol = 1e-6 * (1 + probe.start_bound.abs())
    assert (probe.bab_bound <= probe.start_bound + tol).all()
    assert (probe.best_point <= probe.bab_bound + tol).all() and (probe.best_point <= probe.dual_bound + tol).all()
    # the source notebook is committed without outputs
    srcnb = nbformat.read(src, as_version=4)
    assert all(not c.get("outputs") for c in srcnb.cells if c.cell_type == "code")
    assert "parameters" in srcnb.cells[1].metadata.get("tags", [])


def test_ch02_preset_and_cells():
    from nnmiplib.study import ch2

    for scale in ("smoke", "quick", "paper"):
        cfg = ch2.preset(scale)
        assert cfg.deviations and cfg.tl_eps == 0.04
        first, then = ch2.cells(cfg), ch2.milp_cells(cfg)
        every = first + then if cfg.milp_seeded else first  # unseeded: the first grid holds the MILP runs
        main = [c for c in every if c["study"] == "main"]
        assert len(main) == len(cfg.nets) * len(cfg.eps) * 3 + len(cfg.milp_nets) * len(cfg.eps)
        milp_main = [c for c in main if c["method"] == "milp"]
        assert len(milp_main) == len(cfg.milp_nets) * len(cfg.eps)
        assert set(cfg.milp_nets) <= set(cfg.nets)
        if cfg.milp_seeded:  # every MILP run starts from an LP run the first grid computes
            lp = {(c["arch"], c["reg"], c["lam"], c["eps"]) for c in first if c["method"] == "lp"}
            assert all(c["method"] == "milp" and c["seed_lp"] == [cfg.lp_time, cfg.lp_neuron] for c in then)
            assert all((c["arch"], c["reg"], c["lam"], c["eps"]) in lp for c in then)
        else:
            assert all(c in first for c in then)
        if scale == "smoke":  # (building a grid keys its cells by the nets' digests: it trains them)
            assert list(ch2.grids(cfg)) == ["bounds", "milp", "probe", "bab-probe"]
    paper = ch2.preset("paper")
    assert len(paper.nets) == 28 and paper.milp_max_neurons is None
    assert all("max_neurons" not in c for c in ch2.cells(paper) + ch2.milp_cells(paper))
    q = ch2.preset("quick")  # the real architectures: LP on every neuron, the MILP on a sample
    assert q.train_scale == "quick" and q.milp_seeded and q.milp_max_neurons == 1
    assert all("max_neurons" not in c for c in ch2.cells(q) if c["method"] == "lp")
    assert all(c["max_neurons"] == 1 for c in ch2.milp_cells(q))
    with pytest.raises(ValueError, match="unknown scale"):
        ch2.preset("huge")
