"""The branch and bound on several cores: a batch's bound optimisation split among threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from random_nets import assert_search_reaches_the_grid_maximum, rnet

import nnmiplib as nm
from nnmiplib.bab import branch, relax
from nnmiplib.bab.search import GroupObjective
from nnmiplib.bounds import crown_bounds
from nnmiplib.machine import n_cores, search_workers


def grown_batch(layers, n):
    """``n`` nodes of a search on ``layers`` (its first splits, breadth first), with their bounds."""
    obj = GroupObjective(np.zeros(layers.n_rows, dtype=int))
    ub, nodes = relax.optimise(layers, relax.NodeBatch.root(layers), iterations=3)
    while nodes.n < n:
        layer, index, has, _ = branch.choose(layers, nodes, ub, obj, 1)
        assert bool(has.all()), "the test net needs more free neurons"
        kids = branch.children(nodes, layer, index, torch.ones(nodes.n, dtype=torch.bool))
        ub, nodes = relax.optimise(layers, kids, iterations=1)
    return ub[:n], nodes.take(torch.arange(n))


@pytest.fixture(scope="module")
def case():
    net = rnet([4, 24, 24, 24, 3], 5)
    dom = nm.domains.unit_box(4)
    b = crown_bounds(net, dom)
    C = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]])
    layers = relax.Layers.build(net, b.lower[:-1], b.upper[:-1], dom.lo, dom.hi, C, np.zeros(2))
    return net, dom, C, layers, *grown_batch(layers, 70)


@pytest.mark.parametrize("workers", [2, 3])
def test_a_split_batch_gets_each_nodes_own_bound(case, workers):
    net, dom, C, layers, ub, nodes = case
    one, one_nodes = relax.optimise(layers, nodes, iterations=6, best=ub)
    split, split_nodes = relax.optimise(layers, nodes, iterations=6, best=ub, workers=workers)
    assert split.shape == one.shape == ub.shape and split_nodes.n == nodes.n
    assert torch.all(split <= ub)  # never looser than what was given
    # the same arithmetic per node (the products of a smaller batch may round differently)
    assert torch.allclose(split, one, rtol=1e-4, atol=1e-4)
    for k in range(len(layers.sizes)):
        assert torch.equal(split_nodes.split[k], nodes.split[k])  # the decisions stay with their nodes
        assert split_nodes.alpha[k].shape == one_nodes.alpha[k].shape
    # each node's bound holds on the points of its region: sample inputs, keep those whose
    # phases agree with the node's decisions, and check C y against the node's bound
    X = np.random.default_rng(0).uniform(dom.lo, dom.hi, size=(20000, dom.lo.size))
    pre, h = [], X  # the hidden pre-activations, the neurons the layers keep
    for W, bb, keep in zip(net.weights[:-1], net.biases[:-1], layers.keep):
        a = h @ W.T + bb
        pre.append(a[:, keep])
        h = np.maximum(a, 0.0)
    Y = net.forward(X) @ C.T
    checked = 0
    for i in range(nodes.n):
        inside = np.ones(len(X), dtype=bool)
        for k, a in enumerate(pre):
            s = nodes.split[k][i].numpy()
            inside &= np.all((s != 1) | (a >= 0), axis=1) & np.all((s != -1) | (a <= 0), axis=1)
        if inside.any():
            checked += 1
            assert np.all(Y[inside] <= split[i].numpy() + 1e-9)
    assert checked > 0


def test_each_chunk_stops_on_its_own_nodes_thresholds(case):
    _, _, _, layers, ub, nodes = case
    half = nodes.n // 2  # two workers: the chunks are the two halves
    first, second = torch.arange(half), torch.arange(half, nodes.n)
    # the first half's nodes already meet their thresholds (no step), the second half's never do
    stop = torch.cat([torch.full((half,), 1e9), torch.full((nodes.n - half,), -1e9)]).to(torch.float64)
    got, _ = relax.optimise(layers, nodes, iterations=6, best=ub, stop_below=stop, workers=2)
    still, _ = relax.optimise(layers, nodes.take(first), iterations=0, best=ub[:half])
    moved, _ = relax.optimise(layers, nodes.take(second), iterations=6, best=ub[half:])
    assert torch.equal(got[:half], still)  # each chunk alone: the very same computation as a call on it
    assert torch.equal(got[half:], moved)
    assert bool((moved < ub[half:]).any())  # the steps did move the second half


def test_a_batch_too_small_to_split_runs_in_the_calling_thread(case):
    _, _, _, layers, ub, nodes = case
    few = nodes.take(torch.arange(relax.MIN_CHUNK + 3))
    a, _ = relax.optimise(layers, few, iterations=4, best=ub[: few.n])
    b, _ = relax.optimise(layers, few, iterations=4, best=ub[: few.n], workers=2)
    assert torch.equal(a, b)  # one chunk: the very same computation


@pytest.mark.parametrize("workers", [1, 2, (lambda: 2)])
def test_search_on_two_cores_reaches_the_brute_force_maximum(workers):
    assert_search_reaches_the_grid_maximum(rnet([2, 12, 12, 10, 4], 21), batch=32, workers=workers)


def test_search_workers_follow_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert search_workers() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(n_cores() + 5))
    assert search_workers() == n_cores()  # never more than the process may use
    for unset in ("", "0", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert search_workers() == n_cores()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert search_workers() == n_cores()


def openblas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    found = [i["num_threads"] for i in threadpool_info() if i["internal_api"] == "openblas"]
    assert found, "numpy's wheels bring OpenBLAS: the test needs it loaded"
    return found


def test_quiet_blas_holds_numpys_blas_to_one_thread_until_its_last_user_ends():
    import threading

    from threadpoolctl import ThreadpoolController

    from nnmiplib.machine import quiet_blas

    with ThreadpoolController().select(internal_api="openblas").limit(limits=2):
        assert set(openblas_threads()) == {2}
        with quiet_blas():
            assert set(openblas_threads()) == {1}
            with quiet_blas():  # nested: a search inside a search's tightening
                assert set(openblas_threads()) == {1}
            assert set(openblas_threads()) == {1}  # the outer user still runs
            entered, leave = threading.Event(), threading.Event()

            def other():  # a disjunct searched side by side, ending first
                with quiet_blas():
                    entered.set()
                    leave.wait(10)

            t = threading.Thread(target=other)
            t.start()
            assert entered.wait(10)
            leave.set()
            t.join()
            assert set(openblas_threads()) == {1}
        assert set(openblas_threads()) == {2}  # the caller's own setting is back
        with pytest.raises(RuntimeError, match="boom"), quiet_blas():
            raise RuntimeError("boom")
        assert set(openblas_threads()) == {2}  # … also after an error


def test_search_and_tightening_run_with_numpys_blas_on_one_thread(monkeypatch):
    from threadpoolctl import ThreadpoolController

    from nnmiplib.bab import search, tightening

    seen = []

    def spy(module, name):
        real = getattr(module, name)

        def wrapped(*args, **kwargs):
            seen.append((name, tuple(openblas_threads())))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    spy(search, "_solve")
    spy(tightening, "tighten_layer")
    net = rnet([3, 10, 10, 3], 4)
    dom = nm.domains.unit_box(3)
    b = crown_bounds(net, dom)
    with ThreadpoolController().select(internal_api="openblas").limit(limits=2):
        nm.bab.solve(net, dom.lo, dom.hi, np.array([[1.0, -1.0, 0.0]]), np.zeros(1), lower=b.lower[:-1],
                     upper=b.upper[:-1], time_limit=2.0, workers=2, split_rows=False)
        nm.bab.tighten(net, dom.lo, dom.hi, b.lower[:-1], b.upper[:-1], time_limit=0.5)
        assert set(openblas_threads()) == {2}
    assert {name for name, _ in seen} == {"_solve", "tighten_layer"}
    assert all(set(threads) == {1} for _, threads in seen), seen
