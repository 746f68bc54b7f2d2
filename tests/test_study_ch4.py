"""Chapter 4 study functions: the thesis's tables as data, presets, domains, our tables and
counts, the verdict rules, and one real maxdiff and mineps cell at smoke scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnmiplib.study import ch4

#: THESIS-NUMBERS §6 "Summary statistics" (derived counts): both right, one wrong (n1, n2), both wrong,
#: wrong answers that are 8 or 9 (of how many), max L1 when both right
DERIVED = {"4.2": (6, 2, 2, 0, 4, 4, 0.63), "4.3": (0, 2, 6, 2, 6, 12, None), "4.4": (5, 1, 4, 0, 3, 5, 0.634),
           "4.5": (0, 2, 3, 5, 6, 15, None), "4.6": (4, 2, 4, 0, 5, 6, 0.71), "4.7": (0, 4, 2, 4, 10, 14, None)}


@pytest.mark.parametrize("tid", sorted(DERIVED))
def test_thesis_tables_reproduce_the_derived_counts(tid):
    c = ch4.counts(ch4.thesis_table(tid))
    both, n1, n2, bw, w89, wrong, mx = DERIVED[tid]
    assert (c["both right"], c["net1 wrong only"], c["net2 wrong only"], c["both wrong"]) == (both, n1, n2, bw)
    assert (c["wrong as 8 or 9"], c["wrong"]) == (w89, wrong)
    assert (np.isnan(c["max L1 both right"]) if mx is None else c["max L1 both right"] == mx)


def test_pruning_grid_and_presets():
    assert len(ch4.PRUNE_LEVELS) == 40
    assert ch4.PRUNE_LEVELS[0] == 0.05 and ch4.PRUNE_LEVELS[-1] == 0.9275
    assert np.allclose(np.diff(ch4.PRUNE_LEVELS), 0.0225)
    p = ch4.preset("paper")
    assert len(p.pairs) == 6 and len(p.mineps_levels) == 40 and p.mineps_time == 4 * 3600
    q = ch4.preset("quick")
    assert set(q.pairs) == {(a, b) for a, b, _ in ch4.CASES.values()}
    with pytest.raises(ValueError, match="digits"):
        ch4.preset("smoke", digits=[10])
    with pytest.raises(ValueError, match="md_time"):
        ch4.preset("smoke", md_time=0)
    with pytest.raises(ValueError, match="unknown domain"):
        ch4.domain("ball", np.zeros(784))


def test_domains_of_section_4_3_1():
    x0 = ch4.reference_image(3, 0)
    s = ch4.domain("imgref_simple", x0)
    assert s.contains(x0) and np.all(s.hi - s.lo <= 0.1 + 1e-12) and s.lo.min() >= 0 and s.hi.max() <= 1
    n = ch4.domain("imgref_neighbours", x0)
    assert n.meta["eps"] == 0.05
    u = ch4.domain("non_imgref", None)
    assert u.n == 784 and u.lo.max() == 0 and u.hi.min() == 1


def _md(rows, dual=None):
    """maxdiff rows; ``dual`` None: solved (dual bound = objective), else that dual bound (time limit)."""
    return pd.DataFrame([{"arch1": a1, "arch2": a2, "dom": dom, "digit": d, "verified": True,
                          "classes": [c1, c2], "probs": [0.9, 0.8], "objective": obj,
                          "dual_bound": obj if dual is None else dual, "time_limit": 30.0,
                          "status": "optimal" if dual is None else "time_limit", "x": np.full(784, 0.5).tolist(),
                          "gap": 0.0 if dual is None else (dual - obj) / obj}
                         for a1, a2, dom, d, c1, c2, obj in rows])


def test_our_table_counts_and_judge_rules():
    rows = []
    for d in range(10):  # simple: half the digits both right, 100x10 errs (as 8) on the others
        rows.append(("800x2", "100x10", "imgref_simple", d, d, d if d < 5 else 8 if d != 8 else 9,
                     0.3 if d < 5 else 1.9))
        rows.append(("800x2", "100x10", "imgref_neighbours", d, 9, 8, 1.99))  # both always fooled
    md = _md(rows)
    t = ch4.our_table(md, "800x2", "100x10", "imgref_simple")
    c = ch4.counts(t)
    assert (c["both right"], c["net2 wrong only"], c["wrong"], c["wrong as 8 or 9"]) == (5, 5, 5, 5)
    me = pd.DataFrame([{"digit": d, "p": p, "status": "optimal" if p >= 0.4 else "time_limit_infeasible",
                        "verified": p >= 0.4, "eps": (0.1 + 0.01 * (d == 8)) * (1.0 - max(p - 0.75, 0))
                        if p >= 0.4 else None, "accuracy": 0.9 + 0.01 * (0.6 <= p <= 0.7) * (p - 0.6)}
                       for d in range(10) for p in ch4.PRUNE_LEVELS])
    f = {x.id: x.verdict for x in ch4.judge(md, me)}
    assert f["F4.1"] == "confirmed"  # 50 % both right, every background pixel at 0.5
    assert f["F4.2"] == "confirmed"
    assert f["F4.3"] == "confirmed"
    assert f["F4.4"] == "confirmed"
    assert f["F4.5"] == "confirmed"
    assert f["F4.7"] == "confirmed"
    assert f["F4.8"] == "confirmed"
    md2 = _md([(a1, a2, dm, d, d, d, 0.1) for a1, a2, dm, d, *_ in rows])  # nobody ever wrong
    f2 = {x.id: x.verdict for x in ch4.judge(md2, me.iloc[:0])}
    assert f2["F4.2"] == "refuted" and f2["F4.8"] == "not yet run"


def test_verdicts_left_open_by_the_time_limit_are_undecided():
    """maxdiff at the trivial dual bound 2: a both-right witness may not be the optimum, so the
    share of both-right digits and the fooled count are undecided (never refuted), with the number."""
    from nnmiplib.study.verdicts import UNDECIDED

    rows = [("800x2", "100x10", dm, d, d, d, 0.1) for dm in ("imgref_simple", "imgref_neighbours") for d in range(10)]
    got = {x.id: x for x in ch4.judge(_md(rows, dual=2.0), pd.DataFrame())}
    for fid in ("F4.1", "F4.2", "F4.4"):
        assert got[fid].verdict == UNDECIDED, fid
        assert "open at 30 s" in got[fid].limit
    assert got["F4.2"].limit.startswith("10 of 10 neighbours-domain digits")
    # the same rows proven optimal decide them
    solved = {x.id: x.verdict for x in ch4.judge(_md(rows), pd.DataFrame())}
    assert solved["F4.2"] == "refuted" and solved["F4.1"] == "partly" and solved["F4.4"] == "refuted"
    # classes the LP logit-difference bounds force on the whole domain are the optimum's too
    forced = _md(rows, dual=2.0).assign(forced=[[d, d] for d in [r[3] for r in rows]])
    assert {x.id: x.verdict for x in ch4.judge(forced, pd.DataFrame())}["F4.2"] == "refuted"
    # a settled row that fools a net is a fact: with every neighbours row fooled and settled, F4.2 holds
    fooled = [("800x2", "100x10", "imgref_neighbours", d, 9 if d != 9 else 8, d, 1.99) for d in range(10)]
    assert {x.id: x.verdict for x in ch4.judge(_md(fooled, dual=2.0), pd.DataFrame())}["F4.2"] == "confirmed"
    # mineps: ε* findings rest on proven optima
    me = pd.DataFrame([{"digit": d, "p": p, "status": "time_limit", "verified": True, "eps": 0.1 - 0.01 * p,
                        "accuracy": 0.9, "time_limit": 20.0} for d in range(10) for p in ch4.PRUNE_LEVELS])
    got = {x.id: x for x in ch4.judge(_md(rows), me)}
    for fid in ("F4.6", "F4.7", "F4.8"):
        assert got[fid].verdict == UNDECIDED and "0 of" in got[fid].limit and "at 20 s" in got[fid].limit


def test_real_maxdiff_and_mineps_cells_are_sound():
    from nnmiplib.network import softmax

    r = ch4.maxdiff_cell("200x5", "100x10", "smoke", 0, "imgref_simple", 3, ch4.PRUNE, 1.0, 1.0)
    assert r["dual_bound"] is not None and r["dual_bound"] <= 2.0 + 1e-6
    if r["verified"]:
        n1 = ch4._pruned("200x5", "smoke", 0, ch4.PRUNE)
        n2 = ch4._pruned("100x10", "smoke", 0, ch4.PRUNE)
        x = np.asarray(r["x"])
        assert ch4.domain("imgref_simple", ch4.reference_image(3, 0)).contains(x, 1e-9)
        v = float(np.abs(softmax(n1.forward(x)) - softmax(n2.forward(x))).sum())
        assert abs(v - r["objective"]) <= 1e-6 and r["dual_bound"] >= v - 1e-6
    e = ch4.mineps_cell("smoke", 0, 8, ch4.PRUNE_LEVELS[-1], 1.0)
    assert 0.0 <= e["accuracy"] <= 1.0
    if e["verified"]:
        assert e["classes"][0] == 8 and e["classes"][1] != 8
        assert e["eps_lower"] is None or e["eps_lower"] <= e["eps"] + 1e-6
