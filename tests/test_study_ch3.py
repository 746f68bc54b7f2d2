"""Chapter 3 study functions: presets, reference images, the neighbours figure, gap
profiles, the form choice, the verdict rules, and one real PV instance at smoke scale."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from nnmiplib.study import ch3


def test_preset_scales_and_errors():
    q = ch3.preset("quick")
    p = ch3.preset("paper")
    s = ch3.preset("smoke")
    assert p.digits == tuple(range(10)) and q.digits == tuple(range(10)) and len(s.digits) < 10
    assert any("reference digits" in d for d in s.deviations)
    assert not any("reference digits" in d for d in p.deviations + q.deviations)
    # quick runs the thesis's own (50-epoch) nets; only smoke uses stand-ins
    assert q.net_scale == "paper" and p.net_scale == "paper" and s.net_scale == "smoke"
    assert any("stand-in" in d for d in s.deviations) and not any("stand-in" in d for d in q.deviations)
    assert q.form == "softmax" and "alpha+img" in ch3.BOUND_TYPES
    g = ch3.grids(ch3.preset("smoke", digits=[5]), form="margin")
    assert {c["scale"] for c in g["pv"].cells} == {"smoke"}
    assert {c["engine"] for c in g["pv"].cells} == {"bab"} and {c["engine"] for c in g["pv_mip"].cells} == {"mip"}
    assert {c["bound"] for c in g["pv_mip"].cells} == set(s.mip_types) < set(ch3.BOUND_TYPES)
    assert ch3.preset("smoke", digits=[1], pv_time=3).pv_time == 3.0
    with pytest.raises(ValueError, match="unknown scale"):
        ch3.preset("huge")
    with pytest.raises(ValueError, match="digits"):
        ch3.preset("smoke", digits=[11])
    with pytest.raises(ValueError, match="form"):
        ch3.preset("smoke", form="exp")


def test_reference_images_are_fixed_and_of_the_right_digit():
    from nnmiplib.data import load_mnist

    a = ch3.reference_images([3, 7], seed=0)
    b = ch3.reference_images([7], seed=0)
    c = ch3.reference_images([7], seed=1)
    assert a[7][0] == b[7][0] and np.array_equal(a[7][1], b[7][1])
    assert c[7][0] != a[7][0]
    y = load_mnist()[2][1]
    assert y[a[3][0]] == 3 and y[a[7][0]] == 7
    assert a[3][1].shape == (784,) and a[3][1].dtype == np.float64


def test_neighbours_figure_and_domain():
    import matplotlib

    matplotlib.use("Agg")
    x0 = ch3.reference_images([7], 0)[7][1]
    fig = ch3.fig_neighbours(x0)
    assert len(fig.axes) == 12
    dom = ch3.pv_domain(x0)
    assert dom.meta == {"eps": 0.18, "m": 3, "pad": 2}
    from nnmiplib.domains import neighbour_means

    dead = neighbour_means(x0).ravel() == 0  # whole window dark: the pixel stays 0
    assert dead.any() and np.all(dom.lo[dead] == 0) and np.all(dom.hi[dead] == 0)
    assert np.all(dom.hi[~dead] > dom.lo[~dead])
    import matplotlib.pyplot as plt

    plt.close(fig)


def _synthetic(gaps_by_bound: dict, archs=ch3.ARCHS):
    rows = []
    for b, gaps in gaps_by_bound.items():
        for arch in archs:
            for d, g in enumerate(gaps):
                rows.append({"arch": arch, "bound": b, "digit": d, "gap": g, "label": ch3.LABELS[b]})
    return pd.DataFrame(rows)


def test_gap_profile_counts_instances():
    df = _synthetic({"lp": [0.0, 0.02, math.inf, 0.2]}, archs=["200x5"])
    prof = ch3.gap_profile(df, np.array([0.0, 0.01, 0.05, 1.0]))
    assert prof.share.tolist() == [25.0, 25.0, 50.0, 75.0]
    assert ch3.share_at(df, 0.05) == {"lp": 50.0}


def _step_gap(traj, t):
    """The gap of the last trajectory point at or before t (∞ before the first)."""
    from nnmiplib.mip.solvers.base import relative_gap

    before = [p for p in traj if p[0] <= t]
    return relative_gap(before[-1][2], before[-1][1]) if before else math.inf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thinned_trajectory_never_reports_a_smaller_gap(seed):
    rng = np.random.default_rng(seed)
    n = 5000
    t = np.cumsum(rng.exponential(0.01, n))
    dual = 5.0 - np.cumsum(rng.exponential(0.001, n) * (rng.random(n) < 0.5))
    inc = np.maximum.accumulate(np.where(rng.random(n) < 0.01, rng.normal(1.0, 0.5, n), -np.inf))
    traj = [[a, b, c] for a, b, c in zip(t, dual, inc)]
    thin = ch3.thin_trajectory(traj, n=100)
    assert len(thin) <= 102 and thin[-1] == traj[-1] and thin[0] == traj[0]
    for x in np.concatenate([rng.uniform(0, t[-1], 300), t[::97]]):
        assert _step_gap(thin, x) >= _step_gap(traj, x) - 1e-15
    # a trajectory with few changes keeps every change
    flat = [[0.1 * i, 3.0 if i < 50 else 2.0, -np.inf if i < 20 else 1.0] for i in range(100)]
    kept = ch3.thin_trajectory(flat)
    assert [p[0] for p in kept] == pytest.approx([0.0, 2.0, 5.0, 9.9])


def test_gap_over_time_reads_the_trajectory_and_ends_at_the_final_gap():
    df = pd.DataFrame([
        {"arch": "800x2", "bound": "lp", "digit": 3, "gap": 0.05,
         "trajectory": [[0.5, 4.0, -np.inf], [1.0, 3.0, 1.0], [2.0, 1.2, 1.0]]},
        {"arch": "800x2", "bound": "milp", "digit": 3, "gap": 0.0, "trajectory": None},  # no trajectory: left out
    ])
    g = ch3.gap_over_time(df, [0.1, 0.5, 1.5, 2.0, 9.0])
    assert list(g.label.unique()) == ["LP"]
    assert g.gap.tolist() == pytest.approx([math.inf, math.inf, 2.0, 0.05, 0.05])
    fig = ch3.fig_anytime(df)
    assert len(fig.axes) >= len(ch3.ARCHS)


def test_choose_form_rules():
    cfg = ch3.preset("smoke", form="auto")
    fc = pd.DataFrame({"form": ["softmax", "margin"] * 2, "gap": [0.001, 0.5, 0.002, 0.5]})
    assert ch3.choose_form(cfg, fc)[0] == "softmax"
    fc = pd.DataFrame({"form": ["softmax", "margin"] * 2, "gap": [0.4, 0.0, 0.3, 0.01]})
    form, why = ch3.choose_form(cfg, fc)
    assert form == "margin" and "0 of 2" in why
    assert ch3.choose_form(ch3.preset("smoke", form="softmax"), fc)[0] == "softmax"


def test_judge_follows_its_rules():
    good = _synthetic({"naive": [math.inf] * 4, "lp": [0.0] * 4, "milp": [0.0] * 4, "milp+img": [0.0] * 4,
                       "crown+img": [0.5] * 4})
    bdf = pd.DataFrame({"bound": ["naive"] * 4 + ["lp"] * 4 + ["milp"] * 4 + ["milp+img"] * 4,
                        "time": [1e-3] * 4 + [1.0] * 4 + [10.0] * 4 + [0.1, 1, 100, 1000]})
    rx = pd.DataFrame({"bound": ["naive", "lp"], "relax_bound": [1e5, 3.0]})
    f = {x.id: x for x in ch3.judge(good, bdf, "margin", rx)}
    assert f["F3.1"].verdict == "confirmed" and "root-LP" in f["F3.1"].ours and "naive 1e+05" in f["F3.1"].ours
    assert f["F3.3"].verdict == "confirmed"
    assert f["F3.4"].verdict == "confirmed"
    bad = _synthetic({"naive": [0.0] * 4, "lp": [math.inf] * 4, "milp": [0.0] * 4, "milp+img": [math.inf] * 4,
                      "crown+img": [0.0] * 4})
    f = {x.id: x for x in ch3.judge(bad, bdf.assign(time=1.0), "margin")}
    assert f["F3.1"].verdict == "refuted"
    assert f["F3.4"].verdict in ("partly", "refuted")
    # open instances (gap > 1 %) that stopped at the 5 s limit: a longer limit could close them
    opened = _synthetic({"naive": [math.inf] * 4, "lp": [math.inf] * 4, "milp": [math.inf] * 4,
                         "milp+img": [math.inf] * 4, "crown+img": [0.0] * 4})
    timed = opened.assign(status=np.where(np.isinf(opened.gap), "time_limit_feasible", "optimal"))
    f = {x.id: x for x in ch3.judge(timed, bdf.assign(time=1.0), "margin", pv_time=5.0)}
    assert f["F3.1"].verdict == "undecided at this scale"
    assert f["F3.1"].limit.startswith("64 of 80 PV instances stopped at the 5 s limit")
    # fewer than half open at the limit (32 of 80): the verdict stands
    timed = bad.assign(status=np.where(np.isinf(bad.gap), "time_limit_feasible", "optimal"))
    f = {x.id: x for x in ch3.judge(timed, bdf.assign(time=1.0), "margin", pv_time=5.0)}
    assert f["F3.1"].verdict == "refuted" and not f["F3.1"].limit
    # IP+img bound times at their limit: F3.3's spread is capped
    capped = bdf.assign(time=[1e-3] * 4 + [1.0] * 4 + [0.1, 1, 10, 100] + [1.0, 10, 10, 9.5])
    assert ch3.judge(good, capped, "margin")[2].verdict == "partly"
    capped["capped"] = [None] * 12 + [False, True, True, True]
    f = {x.id: x for x in ch3.judge(good, capped, "margin", img_time=10.0)}
    assert f["F3.3"].verdict == "undecided at this scale" and f["F3.3"].limit.startswith("3 of 4 IP+img")


def test_one_real_pv_instance_is_sound():
    """A smoke PV instance end to end: the witness reproduces and the dual bound covers samples."""
    from nnmiplib.train import zoo_net

    b = ch3.bounds_cell("800x2", "smoke", 0, "crown+img", 5, 0.0)
    assert b["time"] >= 0 and b["path"].endswith(".npz")
    r = ch3.pv_cell("800x2", "smoke", 0, "crown+img", 5, "margin", 1.0, 0.0)
    net = zoo_net("800x2", "l1", 2e-4, scale="smoke")
    x0 = ch3.reference_images([5], 0)[5][1]
    dom = ch3.pv_domain(x0)
    c = int(np.argmax(net.forward(x0)))
    samples = dom.sample(2000, rng=0)
    logits = net.forward(samples)
    best = float(np.max(np.delete(logits, c, axis=1).max(axis=1) - logits[:, c]))
    assert r["dual_bound"] is not None and r["dual_bound"] >= best - 1e-9
    if r["verified"]:
        x = np.asarray(r["x"])
        assert dom.contains(x, 1e-9)
        a = net.forward(x)
        assert abs((np.max(np.delete(a, c)) - a[c]) - r["objective"]) <= 1e-5 * (1 + abs(r["objective"]))
        assert r["dual_bound"] >= r["objective"] - 1e-6
    traj = r["trajectory"]
    assert traj and all(a[0] <= b[0] and b[1] <= a[1] + 1e-12 for a, b in itertools.pairwise(traj))
    assert all(p[1] >= best - 1e-9 for p in traj)  # every dual bound on the way covers the samples
    rx = ch3.relax_cell("800x2", "smoke", 0, "crown+img", 5, 0.0)
    assert rx["relax_bound"] >= rx["sampled"] - 1e-6  # the relaxation bounds every reachable margin
    k2 = int(np.argsort(net.forward(x0))[-2])  # the runner-up class at x0
    assert abs(rx["sampled"] - float(np.max(logits[:, k2] - logits[:, c]))) <= 1e-9  # same samples (rng 0)
    with pytest.raises(ValueError, match="which"):
        ch3.relax_cell("800x2", "smoke", 0, "crown+img", 5, 0.0, which="some")
