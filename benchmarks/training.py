"""Benchmark of zoo training: samples/s per process against each architecture's FLOP count.

    .venv/bin/python benchmarks/training.py [--epochs 1] [--archs 3000x1 800x2 200x5 100x10]

Trains each architecture for ``--epochs`` on the full 50 000 training images exactly as the
zoo does (:func:`nnmiplib.train.train_mlp`, L1 λ = 2e-4, one torch thread), first alone
(1 process) and then two copies side by side (2 processes, the ``make book`` setting), and
prints per architecture: samples/s, GFLOP/s (6 flops per weight per sample) and the
2-process/1-process throughput ratio. A float32 matmul of the same shapes (forward plus
the two backward products, batch 128) gives the machine's attainable rate for
comparison, so the "efficiency" column says how much of the CPU the training loop uses.
Finally it estimates the cold training time of quick's 20 nets and paper's 28 on
``--jobs`` processes from the measured rates.

The machine may be shared: run it idle (``uptime``) for numbers worth quoting.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import time

ARCHS = ("3000x1", "800x2", "200x5", "100x10")


def _train(args):
    arch, epochs = args
    import torch

    from nnmiplib.data import load_mnist
    from nnmiplib.train import ARCHITECTURES, train_mlp

    torch.set_num_threads(1)
    data = load_mnist()
    t = time.perf_counter()
    train_mlp(ARCHITECTURES[arch], reg="l1", lam=2e-4, epochs=epochs, seed=0, progress=False, data=data)
    return time.perf_counter() - t


def _matmul_rate(arch: str, reps: int = 30) -> float:
    """GFLOP/s of the layer products of one training step (batch 128) in float32 on one thread."""
    import torch

    from nnmiplib.train import ARCHITECTURES

    torch.set_num_threads(1)
    sizes = (784, *ARCHITECTURES[arch], 10)
    xs = [torch.randn(128, a) for a in sizes[:-1]]
    ws = [torch.randn(b, a) for a, b in itertools.pairwise(sizes)]
    gs = [torch.randn(128, b) for b in sizes[1:]]
    flops = sum(6 * 128 * a * b for a, b in itertools.pairwise(sizes))
    t = time.perf_counter()
    for _ in range(reps):
        for x, w, g in zip(xs, ws, gs):
            x @ w.T  # forward
            g.T @ x  # weight gradient
            g @ w  # input gradient
    return flops * reps / (time.perf_counter() - t) / 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--archs", nargs="*", default=list(ARCHS))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)

    from nnmiplib.study.ch1 import zoo_nets
    from nnmiplib.train import epoch_flops

    ctx = mp.get_context("spawn")
    rows = {}
    for arch in args.archs:
        with ctx.Pool(1) as pool:
            one = pool.map(_train, [(arch, args.epochs)])[0]
        with ctx.Pool(2) as pool:
            two = pool.map(_train, [(arch, args.epochs)] * 2)
        with ctx.Pool(1) as pool:
            peak = pool.apply(_matmul_rate, (arch,))
        flops = epoch_flops(arch, "paper") * args.epochs
        rows[arch] = {"s1": one, "s2": max(two), "g1": flops / one / 1e9, "g2": 2 * flops / max(two) / 1e9,
                      "peak": peak}
        r = rows[arch]
        print(f"{arch:>7}: 1 process {50_000 * args.epochs / one:8.0f} samples/s {r['g1']:6.1f} GFLOP/s "
              f"({r['g1'] / peak:4.0%} of a bare matmul's {peak:.1f}) | 2 processes {r['g2']:6.1f} GFLOP/s "
              f"in all, ×{r['g2'] / r['g1']:.2f}", flush=True)
    if set(rows) >= set(ARCHS):
        for scale in ("quick", "paper"):
            nets = zoo_nets(scale)
            work = sum(epoch_flops(a, "paper") * 50 / (rows[a]["g2"] / 2 * 1e9) for a, _, _ in nets)
            print(f"{scale}: {len(nets)} nets × 50 epochs ≈ {work / args.jobs / 60:.0f} min on {args.jobs} processes "
                  f"({work / 3600:.2f} core-hours at the 2-process rate)")


if __name__ == "__main__":
    main()
