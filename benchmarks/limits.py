"""Benchmark: does every query keep its time limit on the thesis's networks?

    .venv/bin/python benchmarks/limits.py [--limit 10] [--archs 3000x1 800x2 200x5 100x10]
                                          [--digit 8] [--prune 0.5] [--eps 0.02] [--out limits.json]

For each of the book's 50-epoch L1 λ = 2·10⁻⁴ nets (the paper cache key: ``make book`` or
chapter 3 trains them), one process, queries one after the other:

* PV (:func:`nnmiplib.queries.max_output_change`) on chapter 3's neighbours box of the reference
  image of ``--digit``, α bounds: margin form optimised and decided (branch and bound), softmax-L1
  form by the branch and bound and by the Big-M MIP (HiGHS);
* the pair queries on the net and its copy with ``--prune`` of the weights pruned, on the L∞ ball
  of radius ``--eps`` around that image: :func:`~nnmiplib.queries.max_logit_change`,
  :func:`~nnmiplib.queries.top1_equivalent`, :func:`~nnmiplib.queries.maxdiff` (α bounds).

Printed, side by side per query: the limit, the wall time of the call, the part of it spent on
the bounds (the queries do not charge it to the limit), the rest against the limit (×) and the
status; then the largest ratio, and the queries over ``1.05×`` (a search should end within a
batch's pace of its deadline, a MIP solve within HiGHS's own granularity: its presolve does not
check the limit, about 1 s on the 3000x1 pair's joint model). Run it on an idle machine
(``uptime``): a loaded one stretches every step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

OVER = 1.05


def queries(arch: str, digit: int, limit: float, prune: float, eps: float):
    """``(name, call)`` of every query on net ``arch``; ``call()`` returns a Result."""
    import nnmiplib as nm
    from nnmiplib.study import ch3

    net = nm.train.zoo_net(arch, "l1", 2e-4, scale="paper")
    x0 = ch3.reference_images([digit], 0)[digit][1]
    box = nm.domains.neighbours_box(x0, eps=0.18, m=3, pad=2)
    pruned = nm.prune.prune_fraction(net, prune)[0]
    ball = nm.domains.linf_ball(x0, eps)
    pv = {"time_limit": limit, "bounds_method": "alpha"}
    return [
        ("PV margin, optimise", lambda: nm.queries.max_output_change(net, box, x0, form="margin", decide=False, **pv)),
        ("PV margin, decide", lambda: nm.queries.max_output_change(net, box, x0, form="margin", decide=True, **pv)),
        ("PV softmax, bab", lambda: nm.queries.max_output_change(net, box, x0, form="softmax", **pv)),
        ("PV softmax, mip", lambda: nm.queries.max_output_change(net, box, x0, form="softmax", engine="mip", **pv)),
        ("max_logit_change", lambda: nm.queries.max_logit_change(net, pruned, ball, time_limit=limit)),
        ("top1_equivalent", lambda: nm.queries.top1_equivalent(net, pruned, ball, time_limit=limit)),
        ("maxdiff", lambda: nm.queries.maxdiff(net, pruned, ball, time_limit=limit, bounds_method="alpha")),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=float, default=10.0, help="time limit of every query, seconds")
    ap.add_argument("--archs", nargs="*", default=["3000x1", "800x2", "200x5", "100x10"])
    ap.add_argument("--digit", type=int, default=8, help="reference image (chapter 3's) of this digit")
    ap.add_argument("--prune", type=float, default=0.5, help="share of the weights pruned for the pair queries")
    ap.add_argument("--eps", type=float, default=0.02, help="L∞ radius of the pair queries' ball")
    ap.add_argument("--out", help="write every row here (JSON)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    rows = []
    print(f"{'net':7s} {'query':22s} {'limit':>6s} {'wall':>7s} {'bounds':>7s} {'rest':>7s} {'×':>5s}  status")
    for arch in args.archs:
        for name, call in queries(arch, args.digit, args.limit, args.prune, args.eps):
            t = time.perf_counter()
            r = call()
            wall = time.perf_counter() - t
            bounds = float(r.extra.get("bounds_time") or 0.0)
            rest = wall - bounds
            rows.append({"arch": arch, "query": name, "limit": args.limit, "wall": wall, "bounds": bounds,
                         "rest": rest, "ratio": rest / args.limit, "status": r.status})
            print(f"{arch:7s} {name:22s} {args.limit:6.1f} {wall:7.2f} {bounds:7.2f} {rest:7.2f} "
                  f"{rest / args.limit:5.2f}  {r.status}", flush=True)
    worst = max(rows, key=lambda x: x["ratio"])
    over = [x for x in rows if x["ratio"] > OVER]
    print(f"\nlargest: {worst['ratio']:.2f}× ({worst['arch']} {worst['query']}); "
          f"over {OVER:g}×: {len(over)} of {len(rows)}")
    for x in over:
        print(f"  {x['arch']} {x['query']}: {x['rest']:.2f} s after the bounds for a {x['limit']:g} s limit")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
