"""Benchmark of the Bounder (Algorithms 1/3) on a thesis-size network.

    .venv/bin/python benchmarks/bounds.py [--arch 200x5] [--eps 0.01] [--jobs 2] [--milp-budget 120]

Network: the zoo's 200x5, L1, λ = 2e-4 (``scale`` quick by default), rounded at ε, input
box [0,1]^784. Prints per layer, side by side:

* LP time of the Bounder (one model per layer, warm-started re-solves, stable neurons
  skipped) against a plain baseline that rebuilds a HiGHS model of the thesis's Big-M
  relaxation for every solve and bounds every neuron (a naive Algorithm 1); the
  baseline is timed on ``--baseline-sample`` neurons per layer and extrapolated;
  ``--sample k`` bounds only k neurons per layer and extrapolates the Bounder too;
* the Bounder with ``--jobs`` processes against one process;
* LP against MILP time (MILP seeded with the LP bounds, so only LP-unstable neurons are
  solved, under a total budget ``--milp-budget`` split exponentially over layers);
* mean widths of interval / crown / LP / MILP bounds, stable neurons, peak memory.

The machine may be shared: timings are wall-clock and noisy.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

import nnmiplib as nm
from nnmiplib.bounds import cheap_bounds, crown_bounds, interval_bounds
from nnmiplib.bounds.bounder import solver_bounds
from nnmiplib.mip.encode import encode
from nnmiplib.mip.solvers import get_backend, safe_lp_bound


def get_net(arch: str, scale: str) -> nm.Network:
    try:
        return nm.train.zoo_net(arch, "l1", 2e-4, scale=scale)
    except (ImportError, AttributeError) as exc:  # no zoo yet: train a quick one here
        print(f"zoo unavailable ({exc}); training a 2-epoch net")
        net, _ = nm.train.train_mlp(hidden=nm.train.ARCHITECTURES[arch], reg="l1", lam=2e-4, epochs=2, seed=0)
        return net


def baseline_layer(net, dom, bounds, m, neurons) -> float:
    """Seconds for max+min of ``neurons`` with a fresh HiGHS model per solve (no warm start)."""
    model = encode(net, dom, bounds, relax=True, stop_layer=m)
    cols = model.nets[0].a[m]
    B = get_backend("highs")
    t = time.perf_counter()
    for j in neurons:
        for sense in ("max", "min"):
            c = np.zeros(model.n_vars)
            c[cols[j]] = 1.0
            model.set_objective(c, sense)
            s = B(model, threads=1).solve()
            safe_lp_bound(model, c, sense, s.row_dual)
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="200x5")
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--sample", type=int, default=0,
                    help="bound only this many neurons per layer and extrapolate times (0: all)")
    ap.add_argument("--baseline-sample", type=int, default=6, help="neurons per layer for the rebuild baseline")
    ap.add_argument("--milp-budget", type=float, default=120.0)
    ap.add_argument("--skip-milp", action="store_true")
    ap.add_argument("--simplex-strategy", type=int, default=None,
                    help="HiGHS simplex_strategy for the Bounder's LPs (default: the Bounder's own choice)")
    args = ap.parse_args(argv)
    sample = args.sample or None

    net = get_net(args.arch, args.scale)
    net, st = nm.prune.round_weights(net, args.eps)
    dom = nm.domains.unit_box(net.n_inputs)
    L = net.depth
    print(f"network {net.name} {net.layer_sizes}, rounded at eps={args.eps} ({st['fraction']:.1%} of weights zeroed); "
          f"domain [0,1]^{dom.n}; sample={sample}", flush=True)
    t = time.perf_counter()
    ib = interval_bounds(net, dom)
    t_int = time.perf_counter() - t
    t = time.perf_counter()
    cb = crown_bounds(net, dom)
    t_crown = time.perf_counter() - t
    init = cheap_bounds(net, dom)

    opts = {} if args.simplex_strategy is None else {"solver_options": {"simplex_strategy": args.simplex_strategy}}
    lp1 = solver_bounds(net, dom, relax=True, initial=init, n_jobs=1, progress=False, max_neurons=sample, **opts)
    print(f"LP, 1 process: {lp1.stats['total_time']:.1f} s", flush=True)
    lpj = solver_bounds(net, dom, relax=True, initial=init, n_jobs=args.jobs, progress=False, max_neurons=sample,
                        **opts)
    print(f"LP, {args.jobs} processes: {lpj.stats['total_time']:.1f} s", flush=True)
    worst = max(max(np.abs(a - b).max() for a, b in zip(lp1.upper, lpj.upper)),
                max(np.abs(a - b).max() for a, b in zip(lp1.lower, lpj.lower)))
    mi = None
    if not args.skip_milp:
        mi = solver_bounds(net, dom, relax=False, initial=lp1, n_jobs=args.jobs, time_limit=args.milp_budget,
                           progress=False, max_neurons=sample)
        print(f"MILP: {mi.stats['total_time']:.1f} s", flush=True)

    print(f"\ncheap bounds: interval {t_int * 1e3:.1f} ms, crown {t_crown * 1e3:.1f} ms")
    print("per layer (times in s; 'full' = extrapolated to every neuron the method would solve; widths are means "
          "over the neurons the LP solved)")
    print(f"{'layer':>5} {'todo':>5} {'solved':>6} {'base/solve':>10} {'LP/solve':>8} {'ratio':>6} {'LP×1':>7} "
          f"{'LP×' + str(args.jobs):>7} {'×1/×' + str(args.jobs):>6} {'MILP':>7} {'w int':>8} {'w crown':>8} "
          f"{'w LP':>8} {'w MILP':>8} {'stable i/c/LP/MILP':>19}")
    full = {"base": 0.0, "lp1": 0.0, "lpj": 0.0}
    for m in range(1, L + 1):
        n = net.layer_sizes[m + 1]
        done = np.flatnonzero(lp1.time[m] > 0)
        todo = n if m == L else int(init.unstable(m).sum())
        s1, sj = lp1.stats["layers"][m - 1], lpj.stats["layers"][m - 1]
        smi = mi.stats["layers"][m - 1] if mi is not None else None
        if done.size == 0:
            print(f"{m:>5} {todo:>5} {0:>6}  (nothing to solve)")
            continue
        pick = done[np.linspace(0, done.size - 1, min(done.size, args.baseline_sample)).round().astype(int)]
        tb = baseline_layer(net, dom, lp1, m, pick) / (2 * pick.size)
        t1 = s1["wall"] / (2 * done.size)
        full["base"] += tb * 2 * n
        full["lp1"] += s1["wall"] * todo / done.size
        full["lpj"] += sj["wall"] * todo / done.size

        def st_(b, m=m):
            return "-" if (b is None or m == L) else str(int((~b.unstable(m)).sum()))
        w = [ib.width(m)[done].mean(), cb.width(m)[done].mean(), lp1.width(m)[done].mean(),
             mi.width(m)[done].mean() if mi else np.nan]
        print(f"{m:>5} {todo:>5} {done.size:>6} {tb:>10.3f} {t1:>8.3f} {tb / t1:>6.1f} {s1['wall']:>7.1f} "
              f"{sj['wall']:>7.1f} {s1['wall'] / max(sj['wall'], 1e-9):>6.2f} "
              f"{smi['wall'] if smi else float('nan'):>7.1f} " + " ".join(f"{x:>8.3f}" for x in w)
              + f" {'/'.join(st_(b) for b in (ib, cb, lp1, mi)):>19}", flush=True)
    t1, tj = lp1.stats["total_time"], lpj.stats["total_time"]
    su = lpj.stats.get("startup", 0.0)
    print(f"\nLP measured: 1 process {t1:.1f} s, {args.jobs} processes {tj:.1f} s (×{t1 / tj:.2f} incl. the "
          f"{su:.1f} s worker start-up, ×{t1 / max(tj - su, 1e-9):.2f} without)")
    print(f"all LP bounds of the net (extrapolated): rebuild baseline on every neuron {full['base']:.0f} s; Bounder "
          f"{full['lp1']:.0f} s (1 process, ×{full['base'] / full['lp1']:.1f}), {full['lpj']:.0f} s ({args.jobs} "
          f"processes, ×{full['base'] / full['lpj']:.1f})")
    print(f"max |LP×1 − LP×{args.jobs}| = {worst:.2e}")
    if mi is not None:
        codes = {}
        for s in mi.stats["layers"]:
            for k, v in (s.get("codes") or {}).items():
                codes[k] = codes.get(k, 0) + v
        print(f"MILP total {mi.stats['total_time']:.1f} s (budget {args.milp_budget} s, {args.jobs} processes, seeded "
              f"with the LP bounds); solve outcomes {codes}")
    print(f"crown vs interval, deepest hidden layer: mean width ratio "
          f"{ib.width(L - 1).mean() / cb.width(L - 1).mean():.2f}; crown time {t_crown:.3f} s = "
          f"{100 * t_crown / max(full['lpj'], 1e-9):.2f} % of the (extrapolated) LP time")
    print(f"stable hidden neurons: interval {ib.stable_share():.1%}, crown {cb.stable_share():.1%}, "
          f"LP {lp1.stable_share():.1%}" + (f", MILP {mi.stable_share():.1%}" if mi else ""))
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ch = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory: main process {me:.0f} MB, largest worker {ch:.0f} MB")


if __name__ == "__main__":
    main()
