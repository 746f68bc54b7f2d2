"""Benchmark of α-optimised linear bounds (``compute_bounds(method="alpha")``) against CROWN and the LP Bounder.

    .venv/bin/python benchmarks/alpha.py [--archs 3000x1,800x2,200x5,100x10] [--quick] [--variants] [--wait 0]

Networks: the zoo's 50-epoch L1 λ = 2e-4 nets of the four thesis architectures
(``zoo_net(arch, "l1", 2e-4, scale="paper")``), rounded at ε = 0.01 (Algorithm 2) as in
``benchmarks/bounds.py``. A net that is not trained yet is skipped (``--wait S``: wait up
to S seconds for it; this script never trains one). Domains: the unit box [0,1]^784 and
the L∞ ball of radius 0.02 around the first test image (clipped to [0,1]).

Prints per net and domain, side by side in one run: the mean width of every layer for
CROWN, alpha (default settings) and the LP Bounder (``method="lp"``, ``--jobs`` processes;
``--quick`` runs the LP on the 200x5 net only), the wall time of each (every method's
time includes its own CROWN pass), and the issue's target: alpha's mean width on the
deepest hidden layer within 10 % of the LP's, at ≤ 2 % of the LP's time. ``--variants``
adds the measurements behind alpha's defaults: steps 0/5/10/20/50, one α shared per layer,
intermediate layers from CROWN.

The machine may be shared: timings are wall-clock, CROWN's and alpha's the fastest of
``--repeat`` runs (the LP runs once); the load average is printed. OpenBLAS threads follow
``OPENBLAS_NUM_THREADS`` (default: every core). On 2 cores shared with other work one BLAS
thread was 2–10× faster for CROWN and alpha than two (threads wait for a preempted
sibling): ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/alpha.py``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import nnmiplib as nm
from nnmiplib.bounds import alpha_bounds, compute_bounds, crown_bounds

ARCHS = ("3000x1", "800x2", "200x5", "100x10")
VARIANTS = [("steps 0", {"iterations": 0}), ("steps 5", {"iterations": 5}), ("steps 10", {"iterations": 10}),
            ("steps 20", {"iterations": 20}), ("steps 50", {"iterations": 50}),
            ("shared α", {"shared": True}), ("interm. crown", {"intermediate": "crown"})]


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def get_net(arch: str, wait: float):
    """The zoo net if it is cached (waiting up to ``wait`` seconds), else None — never trains."""
    stem = nm.train.net_name(arch, "l1", 2e-4)
    t = time.time()
    while not list(nm.paths.nets_dir().glob(f"{stem}-paper-s0-*.npz")):
        if time.time() - t >= wait:
            return None
        time.sleep(min(30.0, max(1.0, wait - (time.time() - t))))
    return nm.train.zoo_net(arch, "l1", 2e-4, scale="paper")


def timed(f, *a, repeat: int = 1, **kw):
    """(result, fastest wall time of ``repeat`` calls)."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = f(*a, **kw)
        best = min(best, time.perf_counter() - t)
    return out, best


def widths(b) -> list[float]:
    return [float(b.width(l).mean()) for l in range(b.n_layers)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--radius", type=float, default=0.02)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="LP Bounder on the 200x5 net only")
    ap.add_argument("--variants", action="store_true", help="also time alpha's alternative settings")
    ap.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a net still being trained")
    ap.add_argument("--repeat", type=int, default=3, help="time CROWN and alpha as the fastest of this many runs")
    args = ap.parse_args(argv)
    _, _, test = nm.data.load_mnist()
    x0 = test[0][0]
    print(f"load average {load()} at start; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
          f"{os.cpu_count()} cores; LP Bounder with {args.jobs} processes", flush=True)
    summary = []
    for arch in args.archs.split(","):
        net = get_net(arch, args.wait)
        if net is None:
            print(f"\n{arch}: the 50-epoch L1 2e-4 net is not trained yet — skipped (see --wait)")
            continue
        net, st = nm.prune.round_weights(net, args.eps)
        L = net.depth
        crown_bounds(net, nm.domains.unit_box(net.n_inputs))  # warm-up (BLAS threads, caches)
        for dname, dom in (("[0,1]^784", nm.domains.unit_box(net.n_inputs)),
                           (f"L∞ {args.radius} ball", nm.domains.linf_ball(x0, args.radius))):
            cb, tc = timed(crown_bounds, net, dom, repeat=args.repeat)
            ab, ta = timed(compute_bounds, net, dom, method="alpha", repeat=args.repeat)
            run_lp = not args.quick or arch == "200x5"
            lb, tl = timed(compute_bounds, net, dom, method="lp", n_jobs=args.jobs, progress=False) if run_lp \
                else (None, float("nan"))
            wc, wa = widths(cb), widths(ab)
            wl = widths(lb) if lb is not None else [float("nan")] * (L + 1)
            print(f"\n{arch} ({st['fraction']:.0%} of weights zeroed at ε={args.eps}), {dname}: "
                  f"crown {tc:.2f} s, alpha {ta:.2f} s, LP {tl:.1f} s   (load {load()})")
            print(f"{'layer':>6} {'n':>5} {'unst. c/a/LP':>14} {'w crown':>10} {'w alpha':>10} {'w LP':>10} "
                  f"{'alpha/LP':>8} {'crown/LP':>8} {'gap closed':>10}")
            for l in range(L + 1):
                un = "-" if l == L else "/".join(str(int(b.unstable(l).sum())) if b is not None else "-"
                                                 for b in (cb, ab, lb))
                closed = (wc[l] - wa[l]) / (wc[l] - wl[l]) if wc[l] - wl[l] > 1e-9 * (1 + wc[l]) else float("nan")
                print(f"{l if l < L else 'logits':>6} {net.layer_sizes[l + 1]:>5} {un:>14} {wc[l]:>10.4g} "
                      f"{wa[l]:>10.4g} {wl[l]:>10.4g} {wa[l] / wl[l]:>8.4f} {wc[l] / wl[l]:>8.4f} {closed:>10.1%}")
            d = L - 1  # deepest hidden layer
            ok = wa[d] <= 1.1 * wl[d] and ta <= 0.02 * tl
            summary.append((arch, dname, wa[d] / wl[d], wa[L] / wl[L], ta, tl, ta / tl, tc, ok))
            if args.variants:
                print(f"  alpha variants (deepest hidden layer {d} / logits, width ÷ LP; seconds):")
                for name, kw in VARIANTS:
                    vb, tv = timed(alpha_bounds, net, dom, repeat=args.repeat, **kw)
                    print(f"    {name:<14} {vb.width(d).mean() / wl[d]:>8.4f} {vb.width(L).mean() / wl[L]:>8.4f} "
                          f"{tv:>7.2f} s", flush=True)
    print(f"\nsummary (target: alpha/LP ≤ 1.10 on the deepest hidden layer at ≤ 2 % of the LP's time; "
          f"load {load()} at end)")
    print(f"{'net':>7} {'domain':>14} {'alpha/LP deep':>13} {'alpha/LP logits':>15} {'alpha s':>8} {'LP s':>7} "
          f"{'alpha/LP time':>13} {'crown s':>8} {'target':>6}")
    for arch, dname, rd, rl, ta, tl, rt, tc, ok in summary:
        print(f"{arch:>7} {dname:>14} {rd:>13.4f} {rl:>15.4f} {ta:>8.2f} {tl:>7.1f} {rt:>13.1%} {tc:>8.2f} "
              f"{'met' if ok else ('-' if np.isnan(tl) else 'missed'):>6}")


if __name__ == "__main__":
    main()
