"""Arguments that mean nothing, over the public API (GUIDE §3): each is a ``ValueError`` at
the entry point whose message names the argument, raised before any work (no bounds, no
model, no training, no MNIST)."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest

import nnmiplib as nm
from nnmiplib import domains as D
from nnmiplib import prune as P
from nnmiplib import queries as Q
from nnmiplib import train as T
from nnmiplib.bounds import compute_bounds, crown_bounds
from nnmiplib.queries.softmax import softmax_l1_query


def rnet(sizes, seed):
    rng = np.random.default_rng(seed)
    return nm.Network([rng.normal(size=(o, i)) for i, o in itertools.pairwise(sizes)],
                      [rng.normal(size=o) * 0.1 for o in sizes[1:]])


N1, N2 = rnet([2, 5, 3], 0), rnet([2, 5, 3], 1)
UNIT = D.unit_box(2)
X0 = np.array([0.3, 0.6])
LABEL = int(np.argmax(N1.forward(X0)))
W, B = [np.ones((3, 2))], [np.zeros(3)]


def forbid_work(monkeypatch):
    """Make every kind of work fail the test: an argument check must come first."""
    def work(*a, **k):
        raise AssertionError("work began before the arguments were checked")

    for mod, name in (("nnmiplib.bounds.compute", "compute_bounds"), ("nnmiplib.bounds.compute", "cheap_bounds"),
                      ("nnmiplib.mip.encode", "encode"), ("nnmiplib.queries.attacks", "attack"),
                      ("nnmiplib.data", "load_mnist"), ("nnmiplib.data", "mnist_digest")):
        monkeypatch.setattr(importlib.import_module(mod), name, work)


# (entry point, call, the words the message must contain)
CASES = {
    # ---------------------------------------------------------------- domains
    "unit_box n=2.7": (lambda: D.unit_box(2.7), "unit_box's dimension n"),
    "unit_box n=0": (lambda: D.unit_box(0), "unit_box's dimension n"),
    "unit_box n=-3": (lambda: D.unit_box(-3), "unit_box's dimension n"),
    "unit_box n=True": (lambda: D.unit_box(True), "unit_box's dimension n"),
    "unit_box n='784'": (lambda: D.unit_box("784"), "unit_box's dimension n"),
    "linf_ball centre outside clip": (lambda: D.linf_ball(np.array([2.0]), 0.1), "outside the clip range.*empty"),
    "linf_ball pixels 0-255": (lambda: D.linf_ball(np.full(4, 200.0), 0.05), "not 0–255"),
    "linf_ball clip inverted": (lambda: D.linf_ball(X0, 0.1, clip=(1, 0)), "clip must be a range"),
    "linf_ball clip a point": (lambda: D.linf_ball(X0, 0.1, clip=(0.5, 0.5)), "clip must be a range"),
    "linf_ball clip infinite": (lambda: D.linf_ball(X0, 0.1, clip=(0, np.inf)), "clip must be a range"),
    "linf_ball clip a scalar": (lambda: D.linf_ball(X0, 0.1, clip=1.0), "clip must be a pair"),
    "linf_ball delta -0.1": (lambda: D.linf_ball(X0, -0.1), "radius δ"),
    "linf_ball delta NaN": (lambda: D.linf_ball(X0, np.nan), "radius δ"),
    "linf_ball delta '0.1'": (lambda: D.linf_ball(X0, "0.1"), "radius δ"),
    "linf_ball complex x0": (lambda: D.linf_ball(X0 + 1j, 0.1), "x0 must be real"),
    "linf_ball NaN x0": (lambda: D.linf_ball([np.nan, 0.5], 0.1), "NaN"),
    "box complex": (lambda: D.box([0j, 0], [1, 1]), "lo must be real"),
    "box strings": (lambda: D.box([0, 0], ["a", "b"]), "hi must be real"),
    "box inverted": (lambda: D.box([0, 1], [1, 0.5]), "inverted"),
    "box shapes": (lambda: D.box(np.zeros(3), np.ones(2)), "differ in size"),
    "neighbours_box eps 2": (lambda: D.neighbours_box(np.zeros(784), eps=2.0), "ε must lie in"),
    "neighbours_box m 2.5": (lambda: D.neighbours_box(np.zeros(784), m=2.5), "window size m"),
    # ---------------------------------------------------------------- Network
    "Network complex weight": (lambda: nm.Network([W[0] * 1j], B), "layer 0: weight has complex"),
    "Network complex bias": (lambda: nm.Network(W, [B[0] + 0j]), "layer 0: bias has complex"),
    "Network string weight": (lambda: nm.Network([np.array([["1", "2"]] * 3)], B), "weight has non-numeric"),
    "Network object weight": (lambda: nm.Network([np.array([[1.0, None]] * 3)], B), "weight has non-numeric"),
    "Network bool weight": (lambda: nm.Network([W[0] > 0], B), "weight has boolean"),
    "Network NaN weight": (lambda: nm.Network([W[0] * np.nan], B), "layer 0: weight contains NaN"),
    "Network shapes": (lambda: nm.Network([np.ones((3, 2)), np.ones((2, 4))], [np.zeros(3), np.zeros(2)]),
                       "layer 1: weight takes 4 inputs"),
    "Network no layers": (lambda: nm.Network([], []), "at least one layer"),
    # ---------------------------------------------------------------- prune
    "round_weights eps -1": (lambda: P.round_weights(N1, -1.0), "eps must be"),
    "round_weights eps NaN": (lambda: P.round_weights(N1, np.nan), "eps must be"),
    "round_weights biases 'yes'": (lambda: P.round_weights(N1, 0.1, biases="yes"), "biases must be"),
    "round_weights not a net": (lambda: P.round_weights([W, B], 0.1), "expected an nnmiplib Network"),
    "prune_fraction p 1.5": (lambda: P.prune_fraction(N1, 1.5), "p must be"),
    "prune_fraction p True": (lambda: P.prune_fraction(N1, True), "p must be"),
    # ---------------------------------------------------------------- bounds
    "compute_bounds time_limit -1": (lambda: compute_bounds(N1, UNIT, "lp", time_limit=-1), "time_limit"),
    "compute_bounds method": (lambda: compute_bounds(N1, UNIT, "exact"), "unknown bound method"),
    "compute_bounds n_jobs 0": (lambda: compute_bounds(N1, UNIT, "lp", n_jobs=0), "n_jobs"),
    "compute_bounds per-neuron -1": (lambda: compute_bounds(N1, UNIT, "milp", per_neuron_time_limit=-1),
                                     "per_neuron_time_limit"),
    "compute_bounds solver": (lambda: compute_bounds(N1, UNIT, "lp", solver="gurobbi"), "unknown solver"),
    "compute_bounds domain size": (lambda: compute_bounds(N1, D.unit_box(3)), "network takes 2 inputs"),
    # ---------------------------------------------------------------- training
    "train_mlp hidden 2.7": (lambda: T.train_mlp(hidden=(2.7,), epochs=1), "hidden must be"),
    "train_mlp hidden 'abc'": (lambda: T.train_mlp(hidden="abc", epochs=1), "hidden must be"),
    "train_mlp hidden 5": (lambda: T.train_mlp(hidden=5, epochs=1), "hidden must be"),
    "train_mlp epochs 2.5": (lambda: T.train_mlp(hidden=(4,), epochs=2.5), "epochs must be"),
    "train_mlp epochs None": (lambda: T.train_mlp(hidden=(4,), epochs=None), "epochs must be"),
    "train_mlp batch_size 0": (lambda: T.train_mlp(hidden=(4,), epochs=1, batch_size=0), "batch_size must be"),
    "train_mlp lr inf": (lambda: T.train_mlp(hidden=(4,), epochs=1, lr=np.inf), "lr must be"),
    "train_mlp lr 'fast'": (lambda: T.train_mlp(hidden=(4,), epochs=1, lr="fast"), "lr must be"),
    "train_mlp lam True": (lambda: T.train_mlp(hidden=(4,), epochs=1, lam=True), "lam must be"),
    "train_mlp seed 1.7": (lambda: T.train_mlp(hidden=(4,), epochs=1, seed=1.7), "seed must be"),
    "train_mlp n_train 0.5": (lambda: T.train_mlp(hidden=(4,), epochs=1, n_train=0.5), "n_train must be"),
    "train_mlp reg": (lambda: T.train_mlp(hidden=(4,), epochs=1, reg="l3"), "reg must be"),
    "zoo_net arch": (lambda: T.zoo_net("7x7", scale="smoke"), "unknown architecture"),
    "zoo_net scale": (lambda: T.zoo_net("15x2", scale="huge"), "unknown scale"),
    "zoo_net lam 0 with l1": (lambda: T.zoo_net("15x2", "l1", 0.0, scale="smoke"), "lam must be"),
    "zoo_net seed 1.7": (lambda: T.zoo_net("15x2", scale="smoke", seed=1.7), "seed must be"),
    "zoo_net seed -1": (lambda: T.zoo_net("15x2", scale="smoke", seed=-1), "seed must be"),
    "zoo_net epochs 0": (lambda: T.zoo_net("15x2", scale="smoke", epochs=0), "epochs must be"),
}

TIME_LIMITS = {"-1": -1, "0": 0, "NaN": float("nan"), "-inf": -np.inf, "'60'": "60", "True": True}

QUERIES = {
    "max_output_change": lambda **kw: Q.max_output_change(N1, UNIT, X0, **kw),
    "max_output_change softmax": lambda **kw: Q.max_output_change(N1, UNIT, X0, form="softmax", **kw),
    "maxdiff": lambda **kw: Q.maxdiff(N1, N2, UNIT, **kw),
    "maxdiff logits": lambda **kw: Q.maxdiff(N1, N2, UNIT, form="logits", **kw),
    "maxout": lambda **kw: Q.maxout(N1, N2, UNIT, 0, 1, **kw),
    "maxflip": lambda **kw: Q.maxflip(N1, N2, UNIT, **kw),
    "mineps": lambda **kw: Q.mineps(N1, N2, X0, LABEL, **kw),
    "softmax loop": lambda **kw: softmax_l1_query([N1, N2], UNIT, [crown_bounds(n, UNIT) for n in (N1, N2)], **kw),
}

QUERY_CASES = {
    "max_output_change form": (lambda: Q.max_output_change(N1, UNIT, X0, form="l2"), "form must be"),
    "max_output_change x0 size": (lambda: Q.max_output_change(N1, UNIT, np.zeros(3)), "x0 has 3 entries"),
    "max_output_change x0 NaN": (lambda: Q.max_output_change(N1, UNIT, [np.nan, 0.5]), "x0 contains NaN"),
    "max_output_change x0 complex": (lambda: Q.max_output_change(N1, UNIT, X0 + 1j), "x0 must be real"),
    "max_output_change margin -1": (lambda: Q.max_output_change(N1, UNIT, X0, margin=-1), "margin must be"),
    "max_output_change decide 'yes'": (lambda: Q.max_output_change(N1, UNIT, X0, decide="yes"), "decide must be"),
    "max_output_change tuple domain": (lambda: Q.max_output_change(N1, (X0, X0), X0), "domain must be"),
    "maxdiff form": (lambda: Q.maxdiff(N1, N2, UNIT, form="l2"), "form must be"),
    "maxdiff tol NaN": (lambda: Q.maxdiff(N1, N2, UNIT, tol=np.nan), "tol must be"),
    "maxdiff bounds a string": (lambda: Q.maxdiff(N1, N2, UNIT, bounds=["lp", "lp"]), "bounds must be"),
    "maxout c1 1.7": (lambda: Q.maxout(N1, N2, UNIT, 1.7, 0), "c1 must be an integer"),
    "maxout c2 out of range": (lambda: Q.maxout(N1, N2, UNIT, 0, 7), "c2=7 is not a class"),
    "maxout c1 True": (lambda: Q.maxout(N1, N2, UNIT, True, 0), "c1 must be an integer"),
    "maxout tau -1": (lambda: Q.maxout(N1, N2, UNIT, 0, 1, -1.0), "tau must be"),
    "maxout tau NaN": (lambda: Q.maxout(N1, N2, UNIT, 0, 1, np.nan), "tau must be"),
    "maxflip n_samples 0": (lambda: Q.maxflip(N1, N2, UNIT, n_samples=0), "n_samples must be"),
    "maxflip architectures": (lambda: Q.maxflip(N1, rnet([2, 4, 3], 3), UNIT), "architectures differ"),
    "mineps label 1.7": (lambda: Q.mineps(N1, N2, X0, 1.7), "label must be an integer"),
    "mineps label 10": (lambda: Q.mineps(N1, N2, X0, 10), "label=10 is not a class"),
    "mineps label '1'": (lambda: Q.mineps(N1, N2, X0, "1"), "label must be an integer"),
    "mineps label not the answer": (lambda: Q.mineps(N1, N2, X0, (LABEL + 1) % 3), "answers"),
    "mineps x0 outside": (lambda: Q.mineps(N1, N2, np.array([2.0, 0.5])), "x0 lies outside"),
    "mineps keep_margin -1": (lambda: Q.mineps(N1, N2, X0, keep_margin=-1), "keep_margin must be"),
    "softmax loop max_iter 0": (lambda: softmax_l1_query([N1, N2], UNIT, [None, None], max_iter=0), "max_iter"),
    "softmax loop diff_bounds": (lambda: softmax_l1_query([N1, N2], UNIT, [None, None], diff_bounds="exact"),
                                 "diff_bounds must be"),
    "softmax loop round_share 0": (lambda: softmax_l1_query([N1, N2], UNIT, [None, None], round_share=0),
                                   "round_share must lie"),
}
for q, run in QUERIES.items():
    for label, v in TIME_LIMITS.items():
        QUERY_CASES[f"{q} time_limit={label}"] = (lambda run=run, v=v: run(time_limit=v), "time_limit must be")
    QUERY_CASES[f"{q} solver"] = (lambda run=run: run(solver="gurobbi"), "unknown solver 'gurobbi'")
    QUERY_CASES[f"{q} attack 'no'"] = (lambda run=run: run(attack="no"), "attack must be")
    QUERY_CASES[f"{q} rng 'seed'"] = (lambda run=run: run(rng="seed"), "rng must be")
    if q != "softmax loop":
        QUERY_CASES[f"{q} bounds_method"] = (lambda run=run: run(bounds_method="exact"), "bounds_method must be")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_argument_is_a_clear_value_error(case, monkeypatch):
    call, words = CASES[case]
    forbid_work(monkeypatch)
    with pytest.raises(ValueError, match=words):
        call()


@pytest.mark.parametrize("case", list(QUERY_CASES))
def test_bad_query_argument_is_rejected_before_any_work(case, monkeypatch):
    call, words = QUERY_CASES[case]
    forbid_work(monkeypatch)
    with pytest.raises(ValueError, match=words):
        call()


# ------------------------------------------------------------ what stays accepted
def test_meaningful_neighbours_of_the_bad_arguments_are_accepted():
    assert D.unit_box(3.0).n == 3 and D.unit_box(np.int64(2)).n == 2
    b = D.linf_ball(np.array([1.05]), 0.1)  # outside the clip range by less than δ: a smaller ball
    assert b.lo.tolist() == pytest.approx([0.95]) and b.hi.tolist() == [1.0]
    b = D.linf_ball(np.array([1.1]), 0.1)  # by exactly δ: the corner point
    assert b.lo.tolist() == b.hi.tolist() == [1.0]
    assert D.linf_ball(np.array([200.0]), 0.5, clip=None).hi.tolist() == [200.5]
    assert D.linf_ball(np.array([200.0]), 0.5, clip=(0, 255)).lo.tolist() == [199.5]
    assert D.linf_ball(X0, np.float32(0.25)).meta["delta"] == 0.25
    assert nm.Network([np.ones((3, 2), np.int32)], [np.zeros(3, np.float32)]).weights[0].dtype == np.float64
    from nnmiplib.queries.core import check_class, check_time_limit

    assert check_time_limit(None) is None and check_time_limit(np.inf) is None
    assert check_time_limit(np.float32(2.5)) == 2.5 and check_time_limit(3) == 3.0
    assert check_class(np.int64(2), 3) == 2 and check_class(1.0, 3) == 1


def test_a_query_without_a_time_limit_still_runs():
    r = Q.maxflip(N1, N2, UNIT, bounds_method="crown", time_limit=np.inf, attack=False)
    assert r.status == "optimal" and r.verified
