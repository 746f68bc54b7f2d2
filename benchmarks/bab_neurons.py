"""Single-neuron MILP bounds: HiGHS against the branch and bound (``nnmiplib.bab.neuron_bounds``).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bab_neurons.py [--archs 800x2,200x5,100x10]
        [--eps 0.1] [--limit 20] [--per-layer 1] [--refine]

The Bounder's MILPs (thesis Algorithm 3) on chapter 2's quick nets (the 50-epoch L1 nets,
λ = 2·10⁻⁴, rounded at ε), with the LP bounds of every neuron as the Big-M constants: for the
first ``--per-layer`` neurons of each layer ≥ 1 that the LP left unstable, ``max a_j`` is
solved by HiGHS (one thread, chapter 2's options: primal heuristics off) and by the branch
and bound, each with ``--limit`` seconds, one after the other in this run. Printed per
neuron: the LP bound, each engine's proven bound and best value, and how much of the gap
between the LP bound and the best point each closed; then the median share closed per
engine and their ratio. Both dual bounds are valid upper bounds of the same MILP (without
``--refine``: the same constants at every node).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from nnmiplib.bab import neuron_bounds
from nnmiplib.domains import unit_box
from nnmiplib.mip.encode import encode
from nnmiplib.mip.solvers import get_backend
from nnmiplib.study import ch2


def highs_max(net, dom, b, layer, j, limit):
    model = encode(net, dom, b, relax=False, stop_layer=layer)
    be = get_backend("highs")(model, threads=1, mip_gap=1e-6, options=dict(ch2.MILP_OPTIONS))
    c = np.zeros(model.n_vars)
    c[model.nets[0].a[layer][j]] = 1.0
    be.set_objective(c, "max")
    t0 = time.perf_counter()
    sol = be.solve(limit)
    best = getattr(sol, "objective", None)
    return float(sol.dual_bound), (None if best is None else float(best)), int(sol.nodes), time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default="800x2,200x5,100x10")
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--limit", type=float, default=20.0)
    ap.add_argument("--per-layer", type=int, default=1)
    ap.add_argument("--refine", action="store_true")
    a = ap.parse_args(argv)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start; limit {a.limit:g} s per solve")
    cfg = ch2.preset("quick")
    shares = {"highs": [], "bab": []}
    for arch in a.archs.split(","):
        lp, net, _ = ch2.get_bounds(arch, "l1", 2e-4, "quick", 0, a.eps, "lp", cfg.lp_time, cfg.lp_neuron)
        dom = unit_box(net.n_inputs)
        print(f"\n{arch} L1 λ=2e-4, ε={a.eps:g}")
        print("layer neuron     LP ub | HiGHS dual     best nodes     s |   BaB dual     best  nodes     s")
        for layer in range(1, lp.n_layers):
            unstable = np.flatnonzero((lp.lower[layer] < 0) & (lp.upper[layer] > 0))
            for j in unstable[: a.per_layer]:
                hd, hb, hn, ht = highs_max(net, dom, lp, layer, int(j), a.limit)
                r = neuron_bounds(net, dom.lo, dom.hi, lp.lower, lp.upper, layer, [j], time_limit=a.limit,
                                  sides=("upper",), refine=a.refine)
                bd, bb = float(r["upper"][0]), float(r["best_upper"][0])
                best = max(v for v in (hb, bb) if v is not None and np.isfinite(v))
                u = float(lp.upper[layer][j])
                for k, d in (("highs", hd), ("bab", bd)):
                    shares[k].append((u - min(d, u)) / max(u - best, 1e-12))
                print(f"{layer:5d} {j:6d} {u:9.3f} | {hd:10.3f} {hb if hb is not None else float('nan'):8.3f} "
                      f"{hn:5d} {ht:5.1f} | {bd:10.3f} {bb:8.3f} {r['nodes'][0][1]:6d} {r['seconds'][0][1]:5.1f}",
                      flush=True)
    mh, mb = float(np.median(shares["highs"])), float(np.median(shares["bab"]))
    print(f"\nshare of the gap (LP bound − best point) closed, median over {len(shares['bab'])} neurons: "
          f"HiGHS {mh:.1%}, branch and bound {mb:.1%} (ratio bab/HiGHS {mb / max(mh, 1e-12):.2f})")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
