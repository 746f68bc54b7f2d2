"""Training determinism, the penalty, and the zoo's on-disk cache (hit, miss, truncation)."""

import itertools
import json

import numpy as np
import pytest
import torch

import nnmiplib.train as T
from nnmiplib import Network
from nnmiplib import data as D


@pytest.fixture(scope="module")
def mnist():
    return D.load_mnist()


def test_train_is_deterministic_for_a_seed(mnist):
    threads = torch.get_num_threads()
    kw = {"hidden": (8, 8), "reg": "l1", "lam": 1e-3, "epochs": 2, "batch_size": 64, "n_train": 600, "progress": False, "data": mnist}
    a, ha = T.train_mlp(seed=3, **kw)
    b, hb = T.train_mlp(seed=3, **kw)
    c, _ = T.train_mlp(seed=4, **kw)
    assert a == b and ha["val_acc"] == hb["val_acc"] and ha["train_loss"] == hb["train_loss"]
    assert a != c
    assert torch.get_num_threads() == threads  # restored
    assert a.layer_sizes == (784, 8, 8, 10) and isinstance(a, Network)
    assert set(ha) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "penalty"}
    assert ha["epoch"] == [1, 2] and all(len(v) == 2 for v in ha.values())
    assert 0.2 < ha["val_acc"][-1] <= 1.0 and ha["penalty"][-1] > 0


def test_l1_penalty_sparsifies_and_leaves_biases(mnist):
    kw = {"hidden": (16,), "epochs": 2, "n_train": 1000, "progress": False, "data": mnist, "seed": 0}
    plain, h0 = T.train_mlp(reg="none", **kw)
    sparse, _ = T.train_mlp(reg="l1", lam=0.5, **kw)  # strong: λ/b = 0.5/128 per batch
    l1 = lambda n: sum(np.abs(w).sum() for w in n.weights)
    assert l1(sparse) < 0.7 * l1(plain)
    assert h0["penalty"] == [0.0, 0.0]
    # the "mean" convention weighs the penalty b times more: smaller weights still
    meanpen, _ = T.train_mlp(reg="l1", lam=0.5, penalty_scale="mean", **kw)
    assert l1(meanpen) < 0.9 * l1(sparse)  # Adam moves each weight ≤ ~lr per step


@pytest.mark.parametrize(
    "kw, match",
    [({"reg": "l3"}, "reg must be"), ({"lam": -1.0}, "lam must be"), ({"hidden": ()}, "hidden"),
     ({"epochs": 0}, "epochs"), ({"penalty_scale": "avg"}, "penalty_scale"), ({"n_train": 10**6}, "n_train")],
)
def test_train_bad_args(mnist, kw, match):
    args = {"hidden": (4,), "epochs": 1, "progress": False, "data": mnist}
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        T.train_mlp(**args)


def test_zoo_bad_args():
    with pytest.raises(ValueError, match="unknown architecture"):
        T.zoo_net("7x7", scale="smoke")
    with pytest.raises(ValueError, match="unknown scale"):
        T.zoo_net("15x2", scale="huge")
    with pytest.raises(ValueError, match="lam must be"):
        T.zoo_net("15x2", "l1", 0.0, scale="smoke")


@pytest.fixture
def tmp_zoo(tmp_path, monkeypatch, mnist):
    """An empty cache dir; MNIST read from the real cache (no refetch); training replaced
    by a fast deterministic stand-in that counts its calls (the cache logic is under test)."""
    monkeypatch.setenv("NNMIPLIB_MNIST", str(D.data_dir() / D.CACHE_NAME))
    monkeypatch.setenv("NNMIPLIB_DATA_DIR", str(tmp_path))
    calls = []

    def fake_train(hidden, *, seed, epochs, name, **kw):
        calls.append(name)
        rng = np.random.default_rng(seed)
        sizes = (784, *hidden, 10)
        net = Network([rng.normal(size=(b, a)) for a, b in itertools.pairwise(sizes)],
                      [np.zeros(b) for b in sizes[1:]], name=name)
        hist = {"epoch": list(range(1, epochs + 1)), "val_acc": [0.1] * epochs}
        return net, hist

    monkeypatch.setattr(T, "train_mlp", fake_train)
    return tmp_path, calls


def test_zoo_cache_hit_miss_and_truncation(tmp_zoo):
    tmp, calls = tmp_zoo
    net = T.zoo_net("15x2", "l1", 2e-4, scale="smoke")
    assert calls == ["15x2-l1-2e-04"] and net.name == "15x2-l1-2e-04"
    npz = sorted((tmp / "nets").glob("*.npz"))
    js = sorted((tmp / "nets").glob("*.json"))
    assert len(npz) == len(js) == 1 and not list((tmp / "nets").glob("*.tmp"))
    stored = json.loads(js[0].read_text())
    for k in ("key", "digest", "config", "accuracy", "history", "library_version"):
        assert k in stored
    assert stored["config"]["penalty_convention"] == T.PENALTY_CONVENTION
    assert stored["config"]["mnist_digest"] == D.mnist_digest()
    assert set(stored["accuracy"]) == {"train", "valid", "test"}
    assert stored["accuracy"]["test"] == net.accuracy(*D.load_mnist()[2])  # float64 numpy == torch float64
    # hit: no training
    again = T.zoo_net("15x2", "l1", 2e-4, scale="smoke")
    assert again == net and len(calls) == 1
    # a different config (seed) misses
    T.zoo_net("15x2", "l1", 2e-4, scale="smoke", seed=1)
    assert len(calls) == 2
    # truncated npz (an interrupted write): never a hit, retrained (deterministic: the same net)
    data = npz[0].read_bytes()
    npz[0].write_bytes(data[: len(data) // 3])
    assert T.zoo_net("15x2", "l1", 2e-4, scale="smoke") == net and len(calls) == 3
    # truncated json: retrained
    js[0].write_text(js[0].read_text()[:50])
    assert T.zoo_net("15x2", "l1", 2e-4, scale="smoke") == net and len(calls) == 4
    # json of another configuration next to this npz: retrained
    m = json.loads(js[0].read_text())
    m["key"] = "0" * 64
    js[0].write_text(json.dumps(m))
    T.zoo_net("15x2", "l1", 2e-4, scale="smoke")
    assert len(calls) == 5
    # npz present but json missing (killed between the two writes): retrained
    js[0].unlink()
    T.zoo_net("15x2", "l1", 2e-4, scale="smoke")
    assert len(calls) == 6 and js[0].exists()


def test_zoo_matrix_lists_the_28_settings():
    settings = [("none", 0.0)] + [(r, lam) for r in ("l1", "l2") for lam in T.LAMBDAS]
    assert len(settings) * 4 == 28
    assert T.net_name("200x5", "l1", 2e-4) == "200x5-l1-2e-04" and T.net_name("800x2", "none", 0) == "800x2-none"


def test_zoo_matrix_trains_in_parallel_bit_identically(tmp_path, monkeypatch, mnist):
    """n_jobs=2 trains the missing nets in spawned processes; the nets equal a sequential run's."""
    monkeypatch.setenv("NNMIPLIB_MNIST", str(D.data_dir() / D.CACHE_NAME))
    runs = {}
    for n_jobs in (2, 1):
        monkeypatch.setenv("NNMIPLIB_DATA_DIR", str(tmp_path / f"jobs{n_jobs}"))
        runs[n_jobs] = T.zoo_matrix("smoke", archs=("15x2",), epochs=1, n_jobs=n_jobs)
        assert len(list((tmp_path / f"jobs{n_jobs}" / "nets").glob("*.npz"))) == 7
    assert [(z["reg"], z["lam"]) for z in runs[2]] == [(z["reg"], z["lam"]) for z in runs[1]]
    for a, b in zip(runs[2], runs[1]):
        assert a["net"] == b["net"], a["net"].name
    assert runs[2][0]["net"] != runs[2][1]["net"]  # different settings give different nets


def test_quick_nets_are_the_paper_nets():
    """A smaller scale shrinks the grids, never the networks: quick loads the paper nets (one cache key)."""
    for arch in ("3000x1", "100x10"):
        q, p = T._zoo_paths(arch, "l1", 2e-4, "quick", 0, "sum", None), T._zoo_paths(arch, "l1", 2e-4, "paper", 0, "sum", None)
        assert q[1] == p[1] and q[2] == p[2]
        assert q[0]["epochs"] == 50 and q[0]["scale"] == "paper"
    assert T._zoo_paths("100x10", "l1", 2e-4, "smoke", 0, "sum", None)[1] != p[1]


def test_train_missing_trains_once_and_counts_flops(tmp_path, monkeypatch, mnist):
    monkeypatch.setenv("NNMIPLIB_MNIST", str(D.data_dir() / D.CACHE_NAME))
    monkeypatch.setenv("NNMIPLIB_DATA_DIR", str(tmp_path))
    seen = []
    real = T.train_mlp

    def spy(*a, **kw):
        hook = kw["on_epoch"]
        kw["on_epoch"] = lambda e, n: (seen.append((e, n)), hook(e, n))
        return real(*a, **kw)

    monkeypatch.setattr(T, "train_mlp", spy)
    todo = [("15x2", "l1", 2e-4), ("15x2", "none", 0.0), ("15x2", "l1", 2e-4, "mean")]
    first = T.train_missing(todo, "smoke", epochs=2, progress=False)
    assert first["trained"] == 3 and seen == [(1, 2), (2, 2)] * 3
    assert T.train_missing(todo, "smoke", epochs=2, progress=False)["trained"] == 0
    assert T.epoch_flops("15x2", "smoke") == 6 * (784 * 15 + 15 * 15 + 15 * 10) * 6000
    assert T.epoch_flops("3000x1", "quick") == 6 * (784 * 3000 + 3000 * 10) * 50_000
