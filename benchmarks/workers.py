"""Benchmark of the branch and bound on the machine's cores: nodes bounded in the same time.

    .venv/bin/python benchmarks/workers.py [--seconds 10] [--arch 200x5] [--digit 1] [--row 3]

One margin row of PV (chapter 3's neighbours box, the 50-epoch L1 λ = 2·10⁻⁴ net of
``--arch``, the test image of ``--digit``, α-CROWN intermediate bounds, no tightening) is
decided against 0 as PV decides it, for ``--seconds``: the defaults take minutes to decide, so
every run spends the whole time bounding nodes. Configurations, each in a fresh process:

* ``1 worker``: the search on one core;
* ``2 workers, busy BLAS``: the batches split between two threads, numpy's OpenBLAS left with
  its default threads (how it ran before :func:`nnmiplib.machine.quiet_blas`);
* ``2 workers``: as the library runs it, numpy's BLAS on one thread during the search;
* ``1 worker, 2 torch threads``: one batch at a time, torch's products on both cores.

Prints nodes and nodes per second of each, and each one's ratio to ``1 worker``. The machine
must be otherwise idle (the load average is printed). ``OMP_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` are removed from the children's environment, so that OpenBLAS
starts with a thread per core as it does for a user.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys

CONFIGS = (("1 worker", 1, 1, False), ("2 workers, busy BLAS", 2, 1, True), ("2 workers", 2, 1, False),
           ("1 worker, 2 torch threads", 1, 2, False))


def _run(arch: str, digit: int, row: int, seconds: float, workers: int, threads: int, busy: bool) -> dict:
    import numpy as np

    import nnmiplib as nm
    from nnmiplib.bab import search, tightening
    from nnmiplib.study import ch3

    if busy:  # the library before quiet_blas: numpy's BLAS threads as they are
        search.quiet_blas = tightening.quiet_blas = contextlib.nullcontext
    net = nm.train.zoo_net(arch, "l1", 2e-4, scale="paper")
    x0 = ch3.reference_images([digit], 0)[digit][1]
    box = nm.domains.neighbours_box(x0, eps=0.18, m=3, pad=2)
    b = nm.bounds.compute_bounds(net, box, method="alpha", progress=False)
    c = int(np.argmax(net.forward(x0)))
    rivals = [k for k in range(net.layer_sizes[-1]) if k != c]
    C = (np.eye(net.layer_sizes[-1])[rivals] - np.eye(net.layer_sizes[-1])[c])[row:row + 1]
    r = nm.bab.solve(net, box.lo, box.hi, C, np.zeros(1), lower=b.lower[:-1], upper=b.upper[:-1],
                     threshold=0.0, time_limit=seconds, workers=workers, threads=threads)
    return {"nodes": int(r.nodes), "seconds": float(r.time), "dual_bound": float(r.dual_bound)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--arch", default="200x5")
    ap.add_argument("--digit", type=int, default=1)
    ap.add_argument("--row", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_run(a.arch, a.digit, a.row, a.seconds, *json.loads(a.child))))
        return
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores; PV {a.arch} digit {a.digit} "
          f"row {a.row}, {a.seconds:g} s each")
    base = None
    for name, workers, threads, busy in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--arch", a.arch, "--digit", str(a.digit), "--row", str(a.row),
                              "--seconds", str(a.seconds), "--child", json.dumps([workers, threads, busy])],
                             env=env, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or r["nodes"]
        print(f"{name:28s} {r['nodes']:>9d} nodes  {r['nodes'] / r['seconds']:>8.0f}/s  "
              f"×{r['nodes'] / base:.2f}  (dual bound {r['dual_bound']:.3f})")


if __name__ == "__main__":
    main()
