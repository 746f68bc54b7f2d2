"""Benchmark of the difference bounds and the pair queries (issue 16) on the thesis's nets.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/pairs.py [--archs 3000x1,800x2,200x5,100x10]
        [--images 15] [--eps 0.02] [--prune 0.5] [--lp-images 15] [--top1-limit 120]
        [--mlc-images 5] [--mlc-limit 20] [--json out.json]

Pairs: the book's 50-epoch L1 nets (``zoo_net(arch, "l1", 2e-4, scale="paper")``, cached in
``data/nets/``) against their ``prune_fraction(net, 0.5)`` copies, on L∞ balls of radius ε
around the first ``--images`` MNIST test images. Measured side by side in one run, per image:

* **bounds**: the mean width of the logit-difference bounds (``difference_bounds`` on the two
  nets' CROWN bounds, both with ``unstable_only=True``: the logits as without it to 1e-6 on
  these nets, the neurons stable in both networks not back-substituted) against the interval
  difference ``[l¹ − u², u¹ − l²]`` of the separate
  CROWN bounds and of the separate LP bounds (``compute_bounds(method="lp")``, one process);
  also the difference bounds computed from the LP bounds, and the spread of the logit
  difference over 1 000 sampled inputs (how far from the truth the bounds are);
* **time**: the difference step alone and with the two nets' CROWN bounds (each the shortest
  of 3 runs: they take milliseconds), against the two nets' LP bounds (one run: seconds); and
  the difference step with ``unstable_only=False`` beside it (every neuron active in either
  network back-substituted): the speed-up of skipping the stable ones, and how little the
  logit widths move;
* **top1_equivalent** with and without the difference bounds (``--top1-limit`` seconds after
  the α bounds, which both runs share): decided or not, the verdict, seconds, and the bound
  on the disagreement margin; "with" computes them only where some class pair survives both
  networks' own bounds (the summary says on how many images);
* **max_logit_change** with and without them on the first ``--mlc-images`` images: the
  certified upper bound (dual) against the best input's value, and their ratio.

Times are wall-clock on a machine that may be shared (the load average is printed); run with
one BLAS thread (``OPENBLAS_NUM_THREADS=1``): on 2 busy cores more threads only contend.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import nnmiplib as nm
from nnmiplib.bounds import compute_bounds, crown_bounds, difference_bounds


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def mean_width(lo, hi) -> float:
    return float(np.mean(np.asarray(hi) - np.asarray(lo)))


def best_of(f, repeat: int = 3):
    """(the shortest of ``repeat`` wall times of ``f()``, its result): the cheap steps take
    milliseconds, where one pause of a shared machine would dominate a single run."""
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def bounds_row(net, small, dom, lp: bool, rng) -> dict:
    t_crown, (c1, c2) = best_of(lambda: (crown_bounds(net, dom, unstable_only=True),
                                         crown_bounds(small, dom, unstable_only=True)))
    t_diff, db = best_of(lambda: difference_bounds(net, small, dom, bounds=(c1, c2), unstable_only=True))
    # the same step back-substituting every neuron active in either network (unstable_only=False)
    t_all, da = best_of(lambda: difference_bounds(net, small, dom, bounds=(c1, c2)))
    X = dom.sample(1000, rng)
    d = net.forward(X) - small.forward(X)
    row = {"w_diff": mean_width(db.lower[-1], db.upper[-1]),
           "w_crown": mean_width(c1.lower[-1] - c2.upper[-1], c1.upper[-1] - c2.lower[-1]),
           "w_sampled": float(np.mean(d.max(0) - d.min(0))), "t_crown": t_crown, "t_diff": t_diff,
           "t_diff_all": t_all, "w_diff_all": mean_width(da.lower[-1], da.upper[-1])}
    if lp:
        t = time.perf_counter()
        l1 = compute_bounds(net, dom, method="lp", n_jobs=1, progress=False)
        l2 = compute_bounds(small, dom, method="lp", n_jobs=1, progress=False)
        row["t_lp"] = time.perf_counter() - t
        row["w_lp"] = mean_width(l1.lower[-1] - l2.upper[-1], l1.upper[-1] - l2.lower[-1])
        dl = difference_bounds(net, small, dom, bounds=(l1, l2))
        row["w_diff_from_lp"] = mean_width(dl.lower[-1], dl.upper[-1])
    return row


def query_rows(net, small, dom, args, do_mlc: bool) -> dict:
    t = time.perf_counter()
    bds = [compute_bounds(n, dom, method="alpha") for n in (net, small)]
    out = {"t_alpha": time.perf_counter() - t}
    for flag in (True, False):
        key = "with" if flag else "without"
        r = nm.queries.top1_equivalent(net, small, dom, bounds=bds, difference=flag, time_limit=args.top1_limit)
        out[f"top1_{key}"] = {"equivalent": r.extra["equivalent"], "status": r.status, "time": r.time,
                              "dual": r.dual_bound, "objective": r.objective,
                              "refuted_by_bounds": r.extra["refuted_by_bounds"],
                              "difference_used": bool(r.extra["difference"])}
        if do_mlc:
            m = nm.queries.max_logit_change(net, small, dom, bounds=bds, difference=flag, time_limit=args.mlc_limit)
            out[f"mlc_{key}"] = {"objective": m.objective, "dual": m.dual_bound, "status": m.status, "time": m.time,
                                 "verified": m.verified,
                                 "lp_without": m.extra.get("dual_bound_without_difference"),
                                 "lp_with": m.extra.get("root_lp_bound_with_difference")}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="3000x1,800x2,200x5,100x10")
    ap.add_argument("--images", type=int, default=15)
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--prune", type=float, default=0.5)
    ap.add_argument("--lp-images", type=int, default=15, help="images on which the separate LP bounds are timed")
    ap.add_argument("--top1-limit", type=float, default=120.0)
    ap.add_argument("--mlc-images", type=int, default=5)
    ap.add_argument("--mlc-limit", type=float, default=20.0)
    ap.add_argument("--skip-queries", action="store_true")
    ap.add_argument("--json", default=None, help="write every measurement to this file")
    args = ap.parse_args(argv)
    print(f"load average {load()} at start; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
          f"ε = {args.eps}, pruned {args.prune:.0%}, {args.images} images", flush=True)
    _, _, test = nm.data.load_mnist()
    rng = np.random.default_rng(0)
    results = {}
    for arch in args.archs.split(","):
        net = nm.train.zoo_net(arch, "l1", 2e-4, scale="paper")
        small, _ = nm.prune.prune_fraction(net, args.prune)
        rows = []
        print(f"\n{arch}: {net.layer_sizes}", flush=True)
        print(f"{'img':>3} {'w diff':>9} {'w crown':>9} {'w LP':>9} {'w diff(LP)':>10} {'sampled':>9} "
              f"{'crown/diff':>10} {'LP/diff':>8} {'t diff':>7} {'t crown':>7} {'t LP':>7} {'%LP':>6} "
              f"{'top1 with':>16} {'top1 without':>16} {'mlc dual w/wo':>19}", flush=True)
        for i in range(args.images):
            dom = nm.domains.linf_ball(test[0][i], args.eps)
            row = bounds_row(net, small, dom, i < args.lp_images, rng)
            if not args.skip_queries:
                row.update(query_rows(net, small, dom, args, i < args.mlc_images))
            rows.append(row)

            def top(key, row=row):
                q = row.get(key)
                if q is None:
                    return "-"
                v = {True: "equiv", False: "differ", None: "undecided"}[q["equivalent"]]
                return f"{v} {q['time']:.1f}s"

            mlc = (f"{row['mlc_with']['dual']:.3g}/{row['mlc_without']['dual']:.3g}" if "mlc_with" in row else "-")
            lp = row.get("t_lp")
            print(f"{i:>3} {row['w_diff']:>9.4g} {row['w_crown']:>9.4g} {row.get('w_lp', np.nan):>9.4g} "
                  f"{row.get('w_diff_from_lp', np.nan):>10.4g} {row['w_sampled']:>9.3g} "
                  f"{row['w_crown'] / row['w_diff']:>10.1f} {row.get('w_lp', np.nan) / row['w_diff']:>8.1f} "
                  f"{row['t_diff']:>7.3f} {row['t_crown']:>7.3f} {lp if lp else np.nan:>7.2f} "
                  f"{100 * (row['t_diff'] + row['t_crown']) / lp if lp else np.nan:>6.1f} "
                  f"{top('top1_with'):>16} {top('top1_without'):>16} {mlc:>19}", flush=True)
        results[arch] = rows
        summarise(arch, rows, args)
    print(f"\nload average {load()} at the end")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)


def summarise(arch, rows, args) -> None:
    r_crown = [r["w_crown"] / r["w_diff"] for r in rows]
    print(f"{arch} summary: logit-difference width, separate CROWN / difference: median {np.median(r_crown):.1f}×, "
          f"min {np.min(r_crown):.1f}×; width / sampled spread: median "
          f"{np.median([r['w_diff'] / max(r['w_sampled'], 1e-300) for r in rows]):.1f}×")
    sp = [r["t_diff_all"] / r["t_diff"] for r in rows]
    dw = [abs(r["w_diff"] / r["w_diff_all"] - 1) for r in rows]
    print(f"  difference step back-substituting every live neuron / only the unstable ones (unstable_only): "
          f"time median {np.median(sp):.2f}×, min {np.min(sp):.2f}×, max {np.max(sp):.2f}×; logit widths differ by "
          f"at most {np.max(dw):.1e} (relative)")
    lp = [r for r in rows if "t_lp" in r]
    if lp:
        r_lp = [r["w_lp"] / r["w_diff"] for r in lp]
        step = [100 * r["t_diff"] / r["t_lp"] for r in lp]
        full = [100 * (r["t_diff"] + r["t_crown"]) / r["t_lp"] for r in lp]
        print(f"  separate LP / difference: median {np.median(r_lp):.1f}×, min {np.min(r_lp):.1f}× "
              f"(target ≥ 10×: met on {sum(x >= 10 for x in r_lp)}/{len(lp)} images); "
              f"time of the difference step / LP bounds: median {np.median(step):.1f} %, max {np.max(step):.1f} %; "
              f"with the CROWN bounds: median {np.median(full):.1f} %, max {np.max(full):.1f} % "
              f"(target ≤ 5 %: met on {sum(x <= 5 for x in full)}/{len(lp)} images); LP bounds median "
              f"{np.median([r['t_lp'] for r in lp]):.1f} s")
    for key in ("top1_with", "top1_without"):
        q = [r[key] for r in rows if key in r]
        if q:
            dec = [x for x in q if x["equivalent"] is not None]
            print(f"  {key}: decided {len(dec)}/{len(q)} (≤ {args.top1_limit:.0f} s after the α bounds: "
                  f"{sum(x['time'] <= args.top1_limit for x in dec)}), equivalent "
                  f"{sum(x['equivalent'] is True for x in q)}, differ {sum(x['equivalent'] is False for x in q)}; "
                  f"time median {np.median([x['time'] for x in q]):.1f} s, max {np.max([x['time'] for x in q]):.1f} s"
                  + (f"; difference bounds computed on {sum(x.get('difference_used', False) for x in q)}/{len(q)} "
                     "(skipped where each network's own bounds or the attacks settle every pair)"
                     if key == "top1_with" else ""))
    m = [r for r in rows if "mlc_with" in r]
    if m:
        ratio = [r["mlc_without"]["dual"] / r["mlc_with"]["dual"] for r in m]
        gap = [r["mlc_with"]["dual"] / max(r["mlc_with"]["objective"] or 1e-300, 1e-300) for r in m]
        print(f"  max_logit_change: dual bound without / with difference median {np.median(ratio):.0f}×; "
              f"dual / best value with them median {np.median(gap):.2f}; time with "
              f"{np.median([r['mlc_with']['time'] for r in m]):.1f} s, without "
              f"{np.median([r['mlc_without']['time'] for r in m]):.1f} s (limit {args.mlc_limit:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
