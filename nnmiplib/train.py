"""Training fully connected ReLU MLPs on MNIST, and the book's net zoo (SPEC §1.2, §2.2.2).

The thesis does not say how its nets were trained (SPEC §6). The book's choices:
cross-entropy + Adam (lr 10⁻³), mini-batches of 128, the last epoch's weights, float32
torch on CPU with one thread and a fixed seed (so a seed gives the same net), the
50 000 / 10 000 / 10 000 split of :func:`nnmiplib.data.load_mnist`.

**Penalty scale.** The thesis's Def. 1.3 writes the loss as a *sum* over samples plus
λ·R(W). Per mini-batch of size b the book minimises

    (1/b) Σ_{i∈batch} CE(x_i, y_i) + (λ/b) · R(W),        R = Σ|w| (L1) or Σ w² (L2),

i.e. the thesis's sum-loss divided by b. λ·R(W) added to the batch *mean* instead
weighs the penalty 128 times more and collapses a 200x5 net to chance accuracy at
λ = 2·10⁻⁴ (``penalty_scale="mean"`` reproduces that for chapter 1's comparison).
R sums over the weight matrices only: **biases are never penalised**.

The zoo (:func:`zoo_net`, :func:`zoo_matrix`) caches trained nets under
``data/nets/`` as ``.npz`` (:meth:`Network.save`) plus ``.json`` metadata; a missing,
half-written or mismatched file is never a cache hit (the net is retrained).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .domains import count
from .network import Network
from .paths import atomic_write_bytes, nets_dir

__all__ = [
    "ARCHITECTURES",
    "LAMBDAS",
    "NET_SCALE",
    "PENALTY_CONVENTION",
    "SCALE_TRAINING",
    "SETTINGS",
    "SMOKE_STAND_INS",
    "accuracy_fast",
    "epoch_flops",
    "net_name",
    "train_missing",
    "train_mlp",
    "zoo_key",
    "zoo_matrix",
    "zoo_net",
]

log = logging.getLogger(__name__)

ARCHITECTURES: dict[str, tuple[int, ...]] = {
    "3000x1": (3000,),
    "800x2": (800, 800),
    "200x5": (200,) * 5,
    "100x10": (100,) * 10,
    "15x2": (15, 15),
}
#: smoke-scale stand-ins of the same depth (seconds to train)
SMOKE_STAND_INS: dict[str, tuple[int, ...]] = {
    "3000x1": (64,), "800x2": (32, 32), "200x5": (24,) * 5, "100x10": (16,) * 10, "15x2": (15, 15),
}
LAMBDAS = (1e-4, 2e-4, 3e-4)
#: the thesis's 7 training settings per architecture (SPEC §2.2.2): none, L1 and L2 × λ
SETTINGS = (("none", 0.0), *((r, lam) for r in ("l1", "l2") for lam in LAMBDAS))
BATCH_SIZE, LR = 128, 1e-3
#: training settings per scale (n_train None = all 50 000 images). Smoke's tiny stand-ins
#: see only 2 epochs of 6 000 images, so they take smaller batches and a larger step
#: (with batch 128 and lr 1e-3 the 16x10 stand-in stays at ≈20 % accuracy). ``quick``
#: trains exactly as ``paper`` (the thesis's 50 epochs, same cache key): a smaller scale
#: shrinks the experiment grids, never the networks.
SCALE_TRAINING = {
    "smoke": {"epochs": 2, "n_train": 6000, "batch_size": 64, "lr": 5e-3},
    "quick": {"epochs": 50, "n_train": None, "batch_size": BATCH_SIZE, "lr": LR},
    "paper": {"epochs": 50, "n_train": None, "batch_size": BATCH_SIZE, "lr": LR},
}
#: the scale whose nets a scale uses (its cache key and file name)
NET_SCALE = {"smoke": "smoke", "quick": "paper", "paper": "paper"}
#: bump when the loss/penalty definition changes (part of every cache key)
PENALTY_CONVENTION = "ce-mean+lam/b*R(W)-weights-only:v1"
#: the rejected alternative, kept for chapter 1's comparison (penalty_scale="mean")
PENALTY_CONVENTION_MEAN = "ce-mean+lam*R(W)-weights-only:v1"


def _penalty(model, reg: str):
    import torch

    ws = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    if reg == "l1":
        return sum(w.abs().sum() for w in ws)
    return sum((w * w).sum() for w in ws)


def _check_args(hidden, reg, lam, epochs, batch_size, lr, penalty_scale, seed=0, n_train=None):
    """Raise ``ValueError`` naming the first argument of :func:`train_mlp` that means nothing;
    return ``(hidden, epochs, batch_size, seed, n_train)`` as ints."""
    if reg not in ("none", "l1", "l2"):
        raise ValueError(f"reg must be 'none', 'l1' or 'l2', got {reg!r}")
    if isinstance(lam, (bool, np.bool_)) or not isinstance(lam, (int, float, np.integer, np.floating)) \
            or not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    try:
        if isinstance(hidden, (str, bytes)) or not len(hidden):
            raise ValueError
        hidden = tuple(count(h, "a hidden layer size") for h in hidden)
    except (TypeError, ValueError):
        raise ValueError(f"hidden must be a non-empty sequence of positive layer sizes, got {hidden!r}") from None
    epochs, batch_size = count(epochs, "epochs"), count(batch_size, "batch_size")
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.integer, np.floating)) \
            or not np.isfinite(lr) or not lr > 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if penalty_scale not in ("sum", "mean"):
        raise ValueError(f"penalty_scale must be 'sum' (λ/b, the book's) or 'mean' (λ on the batch mean), got {penalty_scale!r}")
    seed = count(seed, "seed", minimum=0)
    n_train = None if n_train is None else count(n_train, "n_train")
    return hidden, epochs, batch_size, seed, n_train


def train_mlp(hidden: Sequence[int] = (200,) * 5, reg: str = "l1", lam: float = 2e-4, epochs: int = 50,
              batch_size: int = BATCH_SIZE, lr: float = LR, seed: int = 0, n_train: int | None = None,
              progress: bool = True, data=None, penalty_scale: str = "sum",
              name: str | None = None, on_epoch=None) -> tuple[Network, dict]:
    """Train a fully connected ReLU MLP on MNIST (thesis §1.2, Def. 1.3).

    Parameters
    ----------
    hidden : sequence of int
        Hidden layer sizes, e.g. ``(200,)*5``.
    reg, lam : str, float
        Penalty ``"none"``, ``"l1"`` (R = Σ|w|) or ``"l2"`` (R = Σw²) with weight λ over
        all weight matrices; **biases are never penalised**. ``lam`` is ignored for "none".
    epochs, batch_size, lr, seed : training settings (Adam, cross-entropy).
    n_train : int, optional
        Use only the first ``n_train`` training images (tests, smoke scale).
    progress : bool
        Show a tqdm bar over epochs.
    data : (train, valid, test), optional
        Splits as returned by :func:`nnmiplib.data.load_mnist` (default: load them).
    penalty_scale : {"sum", "mean"}
        "sum" (default, the book's): batch-mean CE + (λ/b)·R(W), the thesis's sum-loss
        divided by the batch size b. "mean": batch-mean CE + λ·R(W) (kept only for the
        chapter 1 comparison; it destroys deep nets at the thesis's λ).
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, epochs)`` after each epoch (the zoo's progress bar).

    Returns
    -------
    net : Network
        The last epoch's parameters in float64.
    history : dict
        Lists per epoch: ``epoch``, ``train_loss`` and ``train_acc`` (running means over
        the epoch's mini-batches, cross-entropy only), ``penalty`` (λ/b·R or λ·R at the
        epoch's end), ``val_loss``, ``val_acc`` (full validation split at the epoch's end),
        ``seconds``.

    Deterministic for a seed on CPU: torch uses one thread inside (restored afterwards).
    """
    hidden, epochs, batch_size, seed, n_train = _check_args(hidden, reg, lam, epochs, batch_size, lr, penalty_scale,
                                                            seed, n_train)
    import torch
    from tqdm import tqdm

    if data is None:
        from .data import load_mnist

        data = load_mnist()
    (x_tr, y_tr), (x_va, y_va) = data[0], data[1]
    if n_train is not None:
        if not 1 <= n_train <= len(x_tr):
            raise ValueError(f"n_train must be in 1..{len(x_tr)}, got {n_train}")
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        sizes = [x_tr.shape[1], *[int(h) for h in hidden], 10]
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        lossf = torch.nn.CrossEntropyLoss()
        xt, yt = torch.tensor(np.asarray(x_tr)), torch.tensor(np.asarray(y_tr))
        xv, yv = torch.tensor(np.asarray(x_va)), torch.tensor(np.asarray(y_va))
        coef = 0.0 if reg == "none" else (lam / batch_size if penalty_scale == "sum" else lam)
        hist = {k: [] for k in ("epoch", "train_loss", "train_acc", "penalty", "val_loss", "val_acc", "seconds")}
        bar = tqdm(range(1, epochs + 1), desc=name or "train", disable=not progress, leave=False)
        for ep in bar:
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(len(xt), generator=gen)
            tot_loss, tot_ok, seen = 0.0, 0, 0
            for i in range(0, len(xt), batch_size):
                idx = perm[i : i + batch_size]
                xb, yb = xt[idx], yt[idx]
                out = model(xb)
                ce = lossf(out, yb)
                loss = ce + coef * _penalty(model, reg) if coef else ce
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot_loss += ce.item() * len(idx)
                tot_ok += int((out.argmax(1) == yb).sum())
                seen += len(idx)
            model.eval()
            with torch.no_grad():
                vout = model(xv)
                val_loss = float(lossf(vout, yv))
                val_acc = float((vout.argmax(1) == yv).float().mean())
                pen = (coef * _penalty(model, reg)).item() if coef else 0.0
            hist["epoch"].append(ep)
            hist["train_loss"].append(tot_loss / seen)
            hist["train_acc"].append(tot_ok / seen)
            hist["penalty"].append(pen)
            hist["val_loss"].append(val_loss)
            hist["val_acc"].append(val_acc)
            hist["seconds"].append(time.perf_counter() - t0)
            bar.set_postfix(loss=f"{tot_loss / seen:.3f}", val_acc=f"{val_acc:.3f}")
            if on_epoch is not None:
                on_epoch(ep, epochs)
            log.info("%s epoch %d: train loss %.4f, val acc %.4f", name or "train", ep, tot_loss / seen, val_acc)
    finally:
        torch.set_num_threads(threads)
    return Network.from_torch(model, name=name), hist


def accuracy_fast(net: Network, x: np.ndarray, y: np.ndarray) -> float:
    """``net.accuracy(x, y)`` computed by torch in float64 on one thread.

    Same arithmetic as :meth:`Network.accuracy` up to summation order (≈1e-16), so the
    two agree except at exact logit ties; much faster than numpy's BLAS when the cores
    are oversubscribed (small jobs run on one thread). Used for the zoo's metadata and
    chapter 1's sweep.
    """
    import torch

    y = np.asarray(y)
    if len(y) == 0:
        raise ValueError("accuracy of an empty set is undefined; pass at least one sample")
    threads = torch.get_num_threads()
    if net.n_weights * len(y) < 2e9:  # below ~4 GFLOP one thread wins on a shared machine
        torch.set_num_threads(1)
    try:
        model = net.to_torch()
        with torch.no_grad():
            logits = model(torch.from_numpy(np.array(x, dtype=np.float64)))
        return float((logits.argmax(1).numpy() == y).mean())
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- zoo
def net_name(arch: str, reg: str, lam: float) -> str:
    """The zoo's label, e.g. ``200x5-l1-2e-04`` or ``200x5-none``."""
    return f"{arch}-none" if reg == "none" else f"{arch}-{reg}-{lam:.0e}"


def _config(arch, reg, lam, scale, seed, penalty_scale="sum", epochs=None) -> dict:
    from . import __version__
    from .data import mnist_digest

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if scale not in SCALE_TRAINING:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALE_TRAINING)}")
    if reg not in ("none", "l1", "l2"):
        raise ValueError(f"reg must be 'none', 'l1' or 'l2', got {reg!r}")
    if penalty_scale not in ("sum", "mean"):
        raise ValueError(f"penalty_scale must be 'sum' or 'mean', got {penalty_scale!r}")
    if reg != "none" and (isinstance(lam, (bool, np.bool_)) or not isinstance(lam, (int, float, np.integer, np.floating))
                          or not np.isfinite(lam) or not lam > 0):
        raise ValueError(f"lam must be a finite number > 0 for reg={reg!r}, got {lam!r}; use reg='none' for λ = 0")
    if epochs is not None:
        try:
            epochs = count(epochs, "epochs")
        except ValueError:
            raise ValueError(f"epochs must be a positive integer or None (the scale's default), got {epochs!r}") from None
    seed = count(seed, "seed", minimum=0)
    scale = NET_SCALE[scale]  # quick nets are the paper nets
    hidden = SMOKE_STAND_INS[arch] if scale == "smoke" else ARCHITECTURES[arch]
    training = dict(SCALE_TRAINING[scale])
    if epochs is not None:
        training["epochs"] = int(epochs)
    return {
        "arch": arch, "hidden": list(hidden), "reg": reg, "lam": 0.0 if reg == "none" else float(lam),
        "seed": int(seed), **training, "scale": scale,
        "optimizer": "adam", "loss": "cross-entropy", "penalty_scale": penalty_scale,
        "penalty_convention": PENALTY_CONVENTION if penalty_scale == "sum" else PENALTY_CONVENTION_MEAN,
        "mnist_digest": mnist_digest(), "library_version": __version__,
    }


def zoo_key(config: dict) -> str:
    """SHA-256 of a net's full configuration (the cache key)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _try_load(npz: Path, meta_path: Path, key: str) -> tuple[Network, dict] | None:
    """The cached net if both files are complete and match ``key``; else None."""
    if not (npz.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        net = Network.load(npz)
    except (ValueError, OSError) as exc:  # JSONDecodeError is a ValueError
        log.warning("ignoring a broken cache entry %s (%s); retraining", npz.name, exc)
        return None
    if meta.get("key") != key or meta.get("digest") != net.digest():
        log.warning("cache entry %s does not match its configuration; retraining", npz.name)
        return None
    return net, meta


@contextlib.contextmanager
def _lock(path: Path):
    import fcntl

    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def zoo_net(arch: str = "200x5", reg: str = "l1", lam: float = 2e-4, scale: str = "quick", seed: int = 0,
            *, epochs: int | None = None, progress: bool = False, return_meta: bool = False,
            penalty_scale: str = "sum", on_epoch=None):
    """Load or train one net of the book's zoo (SPEC §2.2.2).

    Parameters
    ----------
    arch : one of :data:`ARCHITECTURES` ("3000x1", "800x2", "200x5", "100x10", "15x2").
    reg, lam : "none" | "l1" | "l2" and λ (ignored for "none").
    scale : "smoke" (a same-depth stand-in, 2 epochs on 6 000 images, batch 64, lr 5e-3), or "quick" and
        "paper" (the real architecture, 50 epochs as the thesis: quick uses the paper nets, same cache key).
    seed : training seed.
    epochs : override the scale's number of epochs (part of the cache key).
    return_meta : also return the metadata dict (accuracies, history, config).
    penalty_scale : "sum" (the book's λ/b convention) or "mean" (λ on the batch mean,
        only for chapter 1's comparison); see :func:`train_mlp`.
    on_epoch : passed to :func:`train_mlp` when the net is trained.

    The net is cached under ``data/nets/`` keyed by its full configuration, the MNIST
    digest and the library version; concurrent callers wait for one training (file lock).
    Its ``.name`` is the thesis label, e.g. ``"200x5-l1-2e-04"``.
    """
    config, key, npz, meta_path = _zoo_paths(arch, reg, lam, scale, seed, penalty_scale, epochs)
    name, d, stem = net_name(arch, reg, lam), npz.parent, npz.stem
    hit = _try_load(npz, meta_path, key)
    if hit is None:
        with _lock(d / f".{stem}.lock"):
            hit = _try_load(npz, meta_path, key)  # another process may have trained it meanwhile
            if hit is None:
                hit = _train_and_store(config, key, name, npz, meta_path, progress, on_epoch)
    net, meta = hit
    net.name = name
    return (net, meta) if return_meta else net


def _train_and_store(config, key, name, npz, meta_path, progress, on_epoch=None):
    import torch

    from . import __version__
    from .data import load_mnist

    data = load_mnist()
    t0 = time.perf_counter()
    net, hist = train_mlp(tuple(config["hidden"]), reg=config["reg"], lam=config["lam"], epochs=config["epochs"],
                          batch_size=config["batch_size"], lr=config["lr"], seed=config["seed"],
                          n_train=config["n_train"], progress=progress, data=data, name=name,
                          penalty_scale=config["penalty_scale"], on_epoch=on_epoch)
    seconds = time.perf_counter() - t0
    n = config["n_train"] or len(data[0][0])
    meta = {
        "key": key, "name": name, "digest": net.digest(), "config": config, "arch_actual": net.arch,
        "accuracy": {"train": accuracy_fast(net, data[0][0][:n], data[0][1][:n]),
                     "valid": accuracy_fast(net, *data[1]), "test": accuracy_fast(net, *data[2])},
        "history": hist, "train_seconds": seconds, "torch_version": torch.__version__,
        "library_version": __version__,
    }
    # both files are replaced atomically, the json last: a failed write leaves the previous files as they
    # were, and a json whose digest is not the npz's is never a hit (_try_load), so a half-stored entry is retrained
    net.save(npz)
    atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
    log.info("trained %s (%s) in %.1f s: test accuracy %.4f", name, net.arch, seconds, meta["accuracy"]["test"])
    return net, meta


def zoo_matrix(scale: str = "quick", seed: int = 0, *, archs: Sequence[str] = ("3000x1", "800x2", "200x5", "100x10"),
               nets: Sequence[tuple] | None = None, epochs: int | None = None, progress: bool = False,
               n_jobs: int = 1) -> list[dict]:
    """The thesis's 28 nets (SPEC §2.2.2): 4 architectures × {none, L1, L2 × λ ∈ {1, 2, 3}·10⁻⁴}.

    ``nets`` (a list of ``(arch, reg, lam)``) replaces the full matrix of ``archs`` × the 7
    settings, e.g. a scale's subset. Returns a list of dicts with keys ``arch``, ``reg``,
    ``lam``, ``net`` (Network) and ``meta`` (see :func:`zoo_net`), in the order given (by
    default arch, then none, L1 λ↑, L2 λ↑). Missing nets are trained first by
    :func:`train_missing` (``n_jobs`` processes, one progress bar with an ETA).
    """
    todo = [tuple(n) for n in nets] if nets is not None else [(a, r, lam) for a in archs for r, lam in SETTINGS]
    train_missing(todo, scale, seed=seed, epochs=epochs, n_jobs=n_jobs, progress=progress)
    out = []
    for a, r, lam in todo:
        net, meta = zoo_net(a, r, lam, scale=scale, seed=seed, epochs=epochs, return_meta=True)
        out.append({"arch": a, "reg": r, "lam": lam, "net": net, "meta": meta})
    return out


def epoch_flops(arch: str, scale: str) -> float:
    """Floating-point operations of one training epoch of a zoo net at ``scale``: 6 per weight per
    sample (forward 2, backward 4), the bias and ReLU terms neglected."""
    hidden = SMOKE_STAND_INS[arch] if NET_SCALE[scale] == "smoke" else ARCHITECTURES[arch]
    n_train = SCALE_TRAINING[NET_SCALE[scale]]["n_train"] or 50_000
    sizes = (784, *hidden, 10)
    return 6.0 * sum(x * y for x, y in itertools.pairwise(sizes)) * n_train


def train_missing(todo: Sequence[tuple], scale: str = "quick", *, seed: int = 0, epochs: int | None = None,
                  n_jobs: int = 1, progress: bool = True) -> dict:
    """Train the nets of ``todo`` that are not cached yet; returns ``{"trained": n, "seconds": s}``.

    ``todo`` holds ``(arch, reg, lam)`` or ``(arch, reg, lam, penalty_scale)``. With
    ``n_jobs > 1`` the missing nets run in that many spawned processes, largest first,
    each on one torch thread (so every net is bit-identical to a sequential run). One
    tqdm bar covers the whole zoo in floating-point operations (:func:`epoch_flops`), so
    its ETA holds while nets of different sizes train side by side. Finished nets are on
    disk: Ctrl-C or a failed net cancels the queued nets and loses only those in flight.
    """
    from tqdm.auto import tqdm

    items = [(*t, "sum") if len(t) == 3 else tuple(t) for t in todo]
    missing = [t for t in dict.fromkeys(items) if not _is_cached(*t, scale=scale, seed=seed, epochs=epochs)]
    t0 = time.perf_counter()
    if not missing:
        return {"trained": 0, "seconds": 0.0}
    n_ep = {t: epochs or SCALE_TRAINING[NET_SCALE[scale]]["epochs"] for t in missing}
    cost = {t: epoch_flops(t[0], scale) for t in missing}
    total = sum(cost[t] * n_ep[t] for t in missing) / 1e12
    bar = tqdm(total=round(total, 3), unit="TFLOP", desc=f"training {len(missing)} nets ({scale})",
               disable=not progress, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} TFLOP [{elapsed}<{remaining}]")
    try:
        if n_jobs <= 1 or len(missing) == 1:
            for t in missing:
                zoo_net(t[0], t[1], t[2], scale=scale, seed=seed, epochs=epochs, penalty_scale=t[3],
                        on_epoch=lambda e, n, c=cost[t]: bar.update(c / 1e12))
        else:
            _train_parallel(missing, scale, seed, epochs, int(n_jobs), bar, cost)
    finally:
        bar.close()
    return {"trained": len(missing), "seconds": time.perf_counter() - t0}


def _zoo_worker(args, queue) -> str:
    a, r, lam, penalty_scale, scale, seed, epochs, flops = args
    zoo_net(a, r, lam, scale=scale, seed=seed, epochs=epochs, penalty_scale=penalty_scale,
            on_epoch=lambda e, n: queue.put(flops))
    return a


def _train_parallel(missing, scale, seed, epochs, n_jobs, bar, cost) -> None:
    """Train ``missing`` over ``n_jobs`` spawned processes; workers report each epoch to ``bar``."""
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")
    missing = sorted(missing, key=lambda t: -cost[t])
    with ctx.Manager() as manager:
        q = manager.Queue()
        pool = ProcessPoolExecutor(min(n_jobs, len(missing)), mp_context=ctx)
        try:
            futs = [pool.submit(_zoo_worker, (*t, scale, seed, epochs, cost[t]), q) for t in missing]
            pending = set(futs)
            while pending:
                done, pending = wait(pending, timeout=0.5)
                for f in done:
                    f.result()  # a failed net raises here
                while True:
                    try:
                        bar.update(q.get_nowait() / 1e12)
                    except queue_mod.Empty:
                        break
        except BaseException:  # Ctrl-C or a failed net: drop the queue; finished nets are on disk
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _zoo_paths(arch, reg, lam, scale, seed, penalty_scale, epochs) -> tuple[dict, str, Path, Path]:
    """(config, cache key, .npz path, .json path) of one zoo net."""
    config = _config(arch, reg, lam, scale, seed, penalty_scale, epochs)
    key = zoo_key(config)
    stem = f"{net_name(arch, reg, lam)}-{config['scale']}-s{seed}{'-meanpen' if penalty_scale == 'mean' else ''}-{key[:12]}"
    d = nets_dir()
    return config, key, d / f"{stem}.npz", d / f"{stem}.json"


def _is_cached(arch, reg, lam, penalty_scale="sum", *, scale, seed, epochs) -> bool:
    _, key, npz, meta = _zoo_paths(arch, reg, lam, scale, seed, penalty_scale, epochs)
    return _try_load(npz, meta, key) is not None
