"""Chapter 5 (certifying a pruned copy): presets, grid cells, the judge's rules on synthetic
frames, and the chapter's notebook executed end to end at smoke scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnmiplib.study import ch5
from nnmiplib.study.verdicts import UNDECIDED

ROOT = Path(__file__).resolve().parents[1]


def test_presets_and_cells():
    for scale in ("smoke", "quick", "paper"):
        cfg = ch5.preset(scale)
        assert cfg.deviations and cfg.eps == 0.02
        main, eps = ch5.cells(cfg), ch5.eps_cells(cfg)
        assert len(main) == len(cfg.archs) * len(cfg.levels) * cfg.images
        assert len(eps) == len(cfg.eps_archs) * len(cfg.levels) * cfg.eps_images
        assert all(c["mlc_time"] == cfg.mlc_time and c["top1_time"] == cfg.top1_time for c in main)
        assert list(cfg.levels) == sorted(cfg.levels) and cfg.levels[0] == 0.5
    q, p = ch5.preset("quick"), ch5.preset("paper")
    assert q.archs == ch5.ARCHS and q.levels == (0.5, 0.75, 0.9, 0.95) and q.images == 5
    assert 10 <= q.mlc_time <= 20 and 10 <= q.top1_time <= 20
    assert p.images == 15 and len(p.levels) == 10 and p.levels[-1] == 0.95 and p.top1_time == 120
    s = ch5.preset("smoke", images=1, levels=[0.9, 0.5], mlc_time=2)
    assert s.images == 1 and s.levels == (0.5, 0.9) and s.mlc_time == 2.0
    with pytest.raises(ValueError, match="unknown scale"):
        ch5.preset("huge")
    with pytest.raises(ValueError, match="> 0 seconds"):
        ch5.preset("smoke", top1_time=0)
    with pytest.raises(ValueError, match="pruning levels"):
        ch5.preset("smoke", levels=[1.0])
    with pytest.raises(ValueError, match="unknown architectures"):
        ch5.preset("smoke", archs=["7x7"])


def test_images_are_the_reference_images_then_more_per_digit():
    from nnmiplib.data import load_mnist
    from nnmiplib.study import ch3

    _, _, (x, y) = load_mnist()
    for i in (0, 3, 13):
        idx, x0 = ch5.image_of(i, 0)
        assert int(y[idx]) == i % 10 and np.array_equal(x0, x[idx])
    assert ch5.image_of(3, 0)[0] == ch3.reference_images([3], 0)[3][0]
    assert ch5.image_of(13, 0)[0] != ch5.image_of(3, 0)[0]


def test_pair_and_eps_cells_are_consistent():
    """One real smoke cell: the certified bounds hold at the best inputs, the difference bounds
    are never looser, and the ε bisection brackets agree with its own tries."""
    r = ch5.pair_cell("800x2", "smoke", 0, 0.5, 0, 0.02, 1.0, 1.0)
    for k in ("with", "without"):
        if r[f"mlc_{k}_best"] is not None:
            assert r[f"mlc_{k}_best"] <= r[f"mlc_{k}_dual"] + 1e-6
    assert r["mlc_with_dual"] <= r["mlc_without_dual"] + 1e-6
    assert r["top1_with_equivalent"] in (True, False, None)
    if r["top1_with_equivalent"] is not None and r["top1_without_equivalent"] is not None:
        assert r["top1_with_equivalent"] == r["top1_without_equivalent"]
    e = ch5.eps_cell("100x10", "smoke", 0, 0.5, 0, 0.002, 0.05, 2, 0.5)
    proven = [t["eps"] for t in e["tries"] if t["equivalent"] is True]
    assert e["eps_proven"] == (max(proven) if proven else 0.0)
    assert e["eps_unproven"] is None or e["eps_unproven"] > e["eps_proven"] or e["eps_unproven"] == 0.0
    if e["eps_witness"] is not None:
        assert e["eps_witness"] > e["eps_proven"] or e["eps_witness"] == 0.0


def _pairs(ratio=20.0, top1=(True, True), growth=True, t_with=1.0, with_high=False):
    rows = []
    for a in ("800x2", "100x10"):
        for p in (0.5, 0.9):
            for i in range(2):
                w = (0.3 if p == 0.5 else 3.0) if growth else (3.0 if p == 0.5 else 0.3)
                eq = top1[i] if p == 0.5 else False
                eq_with = top1[i] if p == 0.5 else with_high
                rows.append({"arch": a, "p": p, "image": i, "mlc_with_dual": w, "mlc_without_dual": w * ratio,
                             "mlc_with_best": 0.9 * w, "mlc_without_best": 0.9 * w, "mlc_with_time": 2.0,
                             "mlc_without_time": 2.0, "mlc_with_decided": False, "mlc_without_decided": False,
                             "mlc_time": 2.0, "top1_time": 2.0, "top1_with_equivalent": eq_with,
                             "top1_without_equivalent": eq, "top1_with_time": t_with, "top1_without_time": 1.0,
                             "agree_at_x0": True})
    return pd.DataFrame(rows)


def _eps(down=True, undecided=False):
    rows = []
    for a in ("800x2", "100x10"):
        for p in (0.5, 0.9):
            e = (0.04 if p == 0.5 else 0.01) if down else (0.01 if p == 0.5 else 0.04)
            rows.append({"arch": a, "p": p, "image": 0, "eps_lo": 0.002, "eps_hi": 0.1, "time_limit": 5.0,
                         "eps_proven": e, "eps_unproven": 2 * e, "eps_witness": None,
                         "eps_undecided": 2 * e if undecided else None, "n_tries": 4})
    return pd.DataFrame(rows)


def test_judge_rules_confirm_refute_and_leave_open():
    def verdicts(df, de):
        return {f.id: f for f in ch5.judge(df, de)}

    good = verdicts(_pairs(), _eps())
    assert {k: f.verdict for k, f in good.items()} == {f"F5.{i}": "confirmed" for i in range(1, 6)}
    assert all(f.thesis == ch5.BEYOND and f.claim == ch5.FINDINGS[f.id][0] for f in good.values())
    bad = verdicts(_pairs(ratio=1.2, top1=(False, False), growth=False, t_with=3.0, with_high=None),
                   _eps(down=False))
    assert {k: f.verdict for k, f in bad.items()} == {f"F5.{i}": "refuted" for i in range(1, 6)}
    # 5× tighter on both archs: only "partly"
    assert verdicts(_pairs(ratio=5.0), _eps())["F5.1"].verdict == "partly"
    # no witness, some runs at the limit: undecided, naming the limit
    open_ = verdicts(_pairs(top1=(True, None)), _eps(undecided=True))
    for fid in ("F5.2", "F5.5"):
        assert open_[fid].verdict == UNDECIDED and open_[fid].limit
    assert "2 of 4" in open_["F5.2"].limit and "2 s" in open_["F5.2"].limit
    assert "4 of 4" in open_["F5.5"].limit and "5 s" in open_["F5.5"].limit
    # nothing run
    empty = ch5.judge(pd.DataFrame(), pd.DataFrame())
    assert [f.verdict for f in empty] == ["not yet run"] * 5


def test_tables_and_figures_from_synthetic_frames():
    import matplotlib

    matplotlib.use("Agg")
    df, de = _pairs(), _eps()
    tab = ch5.summary_table(df)
    assert len(tab) == 4 and list(tab.arch.astype(str)) == ["800x2", "800x2", "100x10", "100x10"]
    assert np.allclose(tab["ratio (median)"], 20.0)
    assert set(tab["top-1 with: proven/witness/open"]) == {"2/0/0", "0/2/0"}
    assert len(ch5.eps_table(de)) == 4
    for fig in (ch5.fig_logit_change(df), ch5.fig_equivalent(df), ch5.fig_times(df), ch5.fig_eps(de)):
        assert fig.axes


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_ch05_notebook_smoke(tmp_path):
    """Chapter 5 alone, executed by papermill at smoke scale: no error, every figure and
    "we measured" text glued, the five verdicts recorded."""
    import json

    import nbformat
    from conftest import glued_names

    from nnmiplib.study import book, verdicts

    out = tmp_path / "05_pruned_copy.ipynb"
    seconds = book.execute_chapter(ROOT / "notebooks" / "05_pruned_copy.ipynb", out, "smoke")
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors[0]
    names = glued_names(nb)
    assert {f"fig-5-{i}" for i in range(1, 5)} | {f"vs-F5-{i}" for i in range(1, 6)} <= names
    stored = json.loads((verdicts._dir() / "ch5-smoke.json").read_text())
    assert [f["id"] for f in stored["findings"]] == [f"F5.{i}" for i in range(1, 6)]
    assert seconds < 90, f"the smoke chapter took {seconds:.0f} s"
