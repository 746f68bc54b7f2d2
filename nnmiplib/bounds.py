"""Activation bounds: the :class:`Bounds` result type and :func:`compute_bounds` (thesis §2).

A bound is a proof (GUIDE §4): every value the pre-activation a^{l+1} = W^l h^l + b^l of
a neuron can take on the input box lies in ``[lower[l][j], upper[l][j]]``. Bounds are
signed (SPEC §6); the Big-M constants of the model (1.3–1.4) are H = max(0, upper) and
H̄ = max(0, −lower). Methods, loosest first:

- ``naive`` — Proposition 2.1; ``prop22`` — Proposition 2.2 layer by layer;
- ``interval`` — interval arithmetic; ``crown`` — linear-relaxation back-substitution
  (DeepPoly / CROWN), see :mod:`nnmiplib.bounds_cheap`;
- ``lp`` / ``milp`` — Algorithm 3 with relax = 1 / 0 (:func:`nnmiplib.bounder.solver_bounds`),
  seeded with the intersection of naive, interval and crown.
"""

from __future__ import annotations

import io
import json
import logging
import time as _time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bounds_cheap import crown_arrays, interval_arrays, naive_arrays, prop22_arrays, prop22_layer
from .domains import Box, box
from .network import Network
from .paths import atomic_write_bytes

__all__ = [
    "METHODS",
    "Bounds",
    "cheap_bounds",
    "compute_bounds",
    "crown_bounds",
    "interval_bounds",
    "naive_bounds",
    "prop22_bounds",
    "prop22_layer",
    "ro_gap",
]

log = logging.getLogger(__name__)
METHODS = ("naive", "prop22", "interval", "crown", "lp", "milp")
FORMAT_VERSION = 1


@dataclass
class Bounds:
    """Pre-activation bounds of every affine layer l = 0..L (last = logits).

    Attributes
    ----------
    lower, upper : list of float64 arrays, ``lower[l][j] ≤ a^{l+1}_j ≤ upper[l][j]``.
    source : list of str arrays, per neuron the method/status that gave the bound
        ("naive", "prop22", "interval", "crown", "lp", "lp-timeout", "milp", "milp-dual", …).
        When the lower and upper bounds come from different methods the code is
        ``"<lower>/<upper>"`` (e.g. ``"interval/crown"``).
    time : list of float arrays, seconds spent per neuron (0 for the cheap methods).
    method : the method that produced the object (``"a&b"`` after :meth:`intersect`).
    net_digest : :meth:`Network.digest` of the bounded network.
    domain : the input box.
    stats : total time, per-layer stable counts, and method-specific data.
    """

    lower: list
    upper: list
    source: list
    time: list
    method: str
    net_digest: str
    domain: Box
    stats: dict = field(default_factory=dict)

    def __post_init__(self):
        if not (len(self.lower) == len(self.upper) == len(self.source) == len(self.time)):
            raise ValueError("Bounds: lower, upper, source and time must have one entry per affine layer")
        self.lower = [np.asarray(a, dtype=np.float64) for a in self.lower]
        self.upper = [np.asarray(a, dtype=np.float64) for a in self.upper]
        self.source = [np.asarray(s, dtype=str) for s in self.source]
        self.time = [np.asarray(t, dtype=np.float64) for t in self.time]
        for l, (lo, hi) in enumerate(zip(self.lower, self.upper)):
            if lo.shape != hi.shape:
                raise ValueError(f"Bounds layer {l}: lower {lo.shape} and upper {hi.shape} differ in shape")
            if np.isnan(lo).any() or np.isnan(hi).any():
                raise ValueError(f"Bounds layer {l}: NaN bound")
            if np.any(lo > hi):
                j = int(np.flatnonzero(lo > hi)[0])
                raise ValueError(f"Bounds layer {l}, neuron {j}: lower {lo[j]!r} > upper {hi[j]!r}")

    # ------------------------------------------------------------ queries
    @property
    def n_layers(self) -> int:
        """Number of affine layers, L + 1 (the last one gives the logits)."""
        return len(self.lower)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.lower)

    def stable_active(self, l: int) -> np.ndarray:
        """Neurons with lower ≥ 0 (the ReLU is the identity on the domain)."""
        return self.lower[l] >= 0

    def stable_inactive(self, l: int) -> np.ndarray:
        """Neurons with upper ≤ 0 (the ReLU is 0 on the domain)."""
        return self.upper[l] <= 0

    def unstable(self, l: int) -> np.ndarray:
        return ~(self.stable_active(l) | self.stable_inactive(l))

    def stable_counts(self) -> list[dict]:
        """Per hidden layer (l = 0..L−1): counts of stably active / inactive / unstable neurons."""
        return [
            {"layer": l, "n": int(self.lower[l].size), "active": int(self.stable_active(l).sum()),
             "inactive": int(self.stable_inactive(l).sum()), "unstable": int(self.unstable(l).sum())}
            for l in range(self.n_layers - 1)
        ]

    def stable_share(self) -> float:
        """Share of hidden neurons proven stable."""
        c = self.stable_counts()
        n = sum(r["n"] for r in c)
        return (sum(r["active"] + r["inactive"] for r in c) / n) if n else float("nan")

    def width(self, l: int) -> np.ndarray:
        return self.upper[l] - self.lower[l]

    def big_m(self, l: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, H̄) = (max(0, upper), max(0, −lower)), the constants of (1.3–1.4)."""
        return np.maximum(0.0, self.upper[l]), np.maximum(0.0, -self.lower[l])

    @property
    def total_time(self) -> float:
        return float(self.stats.get("total_time", sum(float(t.sum()) for t in self.time)))

    def violation(self, net: Network, x: np.ndarray) -> float:
        """Largest amount by which a pre-activation of the inputs ``x`` leaves the bounds (≤ 0 if none)."""
        self._check_net(net)
        pre = net.preactivations(np.atleast_2d(x))
        worst = -np.inf
        for a, lo, hi in zip(pre, self.lower, self.upper):
            worst = max(worst, float(np.max(a - hi)), float(np.max(lo - a)))
        return worst

    def contains(self, other: Bounds, tol: float = 0.0) -> bool:
        """True if every interval of ``other`` lies inside this one (within ``tol``)."""
        return all(
            bool(np.all(lo <= olo + tol) and np.all(ohi <= hi + tol))
            for lo, hi, olo, ohi in zip(self.lower, self.upper, other.lower, other.upper)
        )

    def _check_net(self, net: Network) -> None:
        if net.digest() != self.net_digest:
            raise ValueError(
                f"these bounds belong to network {self.net_digest[:12]}…, not to {net!r}; "
                "bounds of one network are not valid for another (recompute them)"
            )

    # ------------------------------------------------------------ combine
    def intersect(self, other: Bounds) -> Bounds:
        """Elementwise tightest of two bounds of the same network and domain; sources kept per neuron."""
        if other.net_digest != self.net_digest:
            raise ValueError("cannot intersect bounds of different networks (digests differ)")
        if other.sizes != self.sizes:
            raise ValueError(f"cannot intersect bounds of layer sizes {self.sizes} and {other.sizes}")
        if not (np.array_equal(self.domain.lo, other.domain.lo) and np.array_equal(self.domain.hi, other.domain.hi)):
            raise ValueError("cannot intersect bounds computed on different input domains")
        lowers, uppers, sources, times = [], [], [], []
        for l in range(self.n_layers):
            take_lo = other.lower[l] > self.lower[l]
            take_hi = other.upper[l] < self.upper[l]
            lo = np.where(take_lo, other.lower[l], self.lower[l])
            hi = np.where(take_hi, other.upper[l], self.upper[l])
            src_lo = np.where(take_lo, _side(other.source[l], 0), _side(self.source[l], 0))
            src_hi = np.where(take_hi, _side(other.source[l], 1), _side(self.source[l], 1))
            bad = lo > hi  # both valid, so a crossing is rounding: keep the hull
            if bad.any():
                lo, hi = np.where(bad, np.minimum(lo, hi), lo), np.where(bad, np.maximum(lo, hi), hi)
            lowers.append(lo)
            uppers.append(hi)
            sources.append(_join(src_lo, src_hi))
            times.append(self.time[l] + other.time[l])
        stats = {"total_time": self.total_time + other.total_time, "parts": [self.method, other.method]}
        out = Bounds(lowers, uppers, sources, times, f"{self.method}&{other.method}", self.net_digest, self.domain, stats)
        out.stats["stable"] = out.stable_counts()
        return out

    # ------------------------------------------------------------ storage
    def save(self, path) -> Path:
        """Write to one ``.npz`` (arrays + a JSON metadata blob), atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"dom_lo": self.domain.lo, "dom_hi": self.domain.hi}
        for l in range(self.n_layers):
            arrays[f"lower{l}"] = self.lower[l]
            arrays[f"upper{l}"] = self.upper[l]
            arrays[f"time{l}"] = self.time[l]
            arrays[f"source{l}"] = self.source[l].astype(str)
        meta = {"format": FORMAT_VERSION, "n_layers": self.n_layers, "method": self.method,
                "net_digest": self.net_digest, "domain_name": self.domain.name,
                "domain_meta": self.domain.meta, "stats": self.stats}
        arrays["meta"] = np.frombuffer(json.dumps(meta, default=_jsonable).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path, net: Network | None = None) -> Bounds:
        """Read a file written by :meth:`save`; with ``net``, check that the bounds are its."""
        from .paths import read_npz

        def parse(meta, z):
            n = int(meta["n_layers"])
            arrays = [[z[f"{k}{l}"] for l in range(n)] for k in ("lower", "upper", "source", "time")]
            dom = Box(z["dom_lo"], z["dom_hi"], meta.get("domain_name", "box"), meta.get("domain_meta") or {})
            return cls(*arrays, meta["method"], meta["net_digest"], dom, meta.get("stats", {}))

        b = read_npz(path, "bounds", "compute the bounds again", parse)
        if net is not None and net.digest() != b.net_digest:
            raise ValueError(
                f"{path}: bounds were computed for network {b.net_digest[:12]}…, but {net!r} was given; "
                "bounds of one network are not valid for another — recompute them for this network"
            )
        return b

    def summary(self) -> list[dict]:
        """One row per layer: mean width, stable counts, sources — for tables."""
        rows = []
        for l in range(self.n_layers):
            srcs, counts = np.unique(self.source[l], return_counts=True)
            rows.append({
                "layer": l, "n": int(self.lower[l].size), "mean width": float(self.width(l).mean()),
                "max width": float(self.width(l).max()),
                "stable": int((~self.unstable(l)).sum()) if l < self.n_layers - 1 else None,
                "sources": ", ".join(f"{s}:{c}" for s, c in zip(srcs, counts)),
            })
        return rows

    def __repr__(self) -> str:
        return (f"<Bounds {self.method} layers={self.sizes} stable={self.stable_share():.1%} "
                f"net={self.net_digest[:10]}>")


def _side(src: np.ndarray, i: int) -> np.ndarray:
    """The lower (i = 0) or upper (i = 1) part of a source code "lo/hi" (or the code itself)."""
    parts = np.char.partition(src.astype(str), "/")
    return np.where(parts[:, 1] == "/", parts[:, 2 * i], parts[:, 0])


def _join(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.where(lo == hi, lo, np.char.add(np.char.add(lo.astype(str), "/"), hi.astype(str)))


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ---------------------------------------------------------------- inputs
def _check(net, domain) -> tuple[Network, Box]:
    if not isinstance(net, Network):
        raise ValueError(f"net must be an nnmiplib.Network, got {type(net).__name__}; wrap weights with Network(W, b)")
    if isinstance(domain, Box):
        dom = domain
    elif isinstance(domain, (tuple, list)) and len(domain) == 2:
        dom = box(*domain)  # validates NaN / inverted / empty
    else:
        raise ValueError(f"domain must be a Box or a (lo, hi) pair, got {type(domain).__name__}")
    dom.check_dim(net.n_inputs)
    return net, dom


def _make(net, dom, lowers, uppers, method, t0, **stats) -> Bounds:
    src = [np.full(a.size, method) for a in lowers]
    times = [np.zeros(a.size) for a in lowers]
    b = Bounds(lowers, uppers, src, times, method, net.digest(), dom, {"total_time": _time.perf_counter() - t0, **stats})
    b.stats["stable"] = b.stable_counts()
    return b


def naive_bounds(net: Network, domain) -> Bounds:
    """Proposition 2.1 (SPEC §2): the same signed bound [−M_l, M_l] for every neuron of a layer."""
    net, dom = _check(net, domain)
    t0 = _time.perf_counter()
    return _make(net, dom, *naive_arrays(net.weights, net.biases, dom.lo, dom.hi), "naive", t0)


def prop22_bounds(net: Network, domain) -> Bounds:
    """Proposition 2.2 (:func:`prop22_layer`) applied layer by layer from the input box."""
    net, dom = _check(net, domain)
    t0 = _time.perf_counter()
    return _make(net, dom, *prop22_arrays(net.weights, net.biases, dom.lo, dom.hi), "prop22", t0)


def interval_bounds(net: Network, domain) -> Bounds:
    """Interval arithmetic, layer by layer (never looser than Prop 2.1)."""
    net, dom = _check(net, domain)
    t0 = _time.perf_counter()
    return _make(net, dom, *interval_arrays(net.weights, net.biases, dom.lo, dom.hi), "interval", t0)


def crown_bounds(net: Network, domain, *, lower_slope="best") -> Bounds:
    """DeepPoly/CROWN back-substitution (:func:`nnmiplib.bounds_cheap.crown_arrays`) ∩ interval.

    The source of a neuron's bound is "crown" where back-substitution was tighter than
    interval arithmetic by more than 1e-8·(1 + |v|), else "interval".
    """
    net, dom = _check(net, domain)
    t0 = _time.perf_counter()
    ilo, ihi = interval_arrays(net.weights, net.biases, dom.lo, dom.hi)
    clo, chi = crown_arrays(net.weights, net.biases, dom.lo, dom.hi, (ilo, ihi), lower_slope)
    b = _make(net, dom, clo, chi, "crown", t0, lower_slope=str(lower_slope))
    tol = lambda v: 1e-8 * (1.0 + np.abs(v))  # ignore gains at the rounding-margin level
    b.source = [_join(np.where(cl > il + tol(il), "crown", "interval"), np.where(ch < ih - tol(ih), "crown", "interval"))
                for cl, il, ch, ih in zip(clo, ilo, chi, ihi)]
    return b


def cheap_bounds(net: Network, domain) -> Bounds:
    """Tightest cheap bounds: naive ∩ interval ∩ crown, the seed of the solver-based methods."""
    naive = naive_bounds(net, domain)
    b = naive.intersect(crown_bounds(net, domain))
    b.method = "cheap"
    b.stats["naive_M"] = [float(u[0]) for u in naive.upper]  # Prop 2.1's per-layer bound, for the record
    return b


def compute_bounds(net: Network, domain, method: str = "lp", *, time_limit=None, n_jobs: int = 1,
                   solver: str = "highs", per_neuron_time_limit=None, initial: Bounds | None = None,
                   progress: bool = True, **kw) -> Bounds:
    """Activation bounds of every neuron of ``net`` on ``domain`` (thesis §2, Algorithm 3).

    Parameters
    ----------
    net : Network.
    domain : Box (or a ``(lo, hi)`` pair) with one coordinate per network input (1.8).
    method : "naive" | "prop22" | "interval" | "crown" | "lp" | "milp".
    time_limit, per_neuron_time_limit, n_jobs, solver, progress :
        passed to :func:`nnmiplib.bounder.solver_bounds` for "lp" / "milp" (ignored otherwise).
    initial : Bounds to start the solver-based methods from; default :func:`cheap_bounds`.
    **kw : extra keyword arguments for the method (e.g. ``lower_slope`` for crown,
        solver options for lp/milp).

    Returns
    -------
    Bounds
    """
    net, dom = _check(net, domain)
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "naive":
        return naive_bounds(net, dom)
    if method == "prop22":
        return prop22_bounds(net, dom)
    if method == "interval":
        return interval_bounds(net, dom)
    if method == "crown":
        return crown_bounds(net, dom, **kw)
    from .bounder import solver_bounds  # lazy: needs the solver backends

    if initial is None:
        initial = cheap_bounds(net, dom)
    else:
        initial._check_net(net)
    return solver_bounds(net, dom, relax=(method == "lp"), initial=initial, time_limit=time_limit,
                         per_neuron_time_limit=per_neuron_time_limit, n_jobs=n_jobs, solver=solver,
                         progress=progress, **kw)


def ro_gap(b_lp: Bounds, b_milp: Bounds, which: str = "both") -> list[np.ndarray]:
    """RO gap of SPEC §2: |Bound_LP − Bound_MILP| / (|Bound_MILP| + 1e-10), per neuron.

    Returns
    -------
    list over affine layers: with ``which="both"`` arrays of shape (2, n_l), row 0 the
    gap of the lower bounds and row 1 that of the upper bounds; with ``"lower"`` or
    ``"upper"`` 1-D arrays of that side only.
    """
    if b_lp.net_digest != b_milp.net_digest or b_lp.sizes != b_milp.sizes:
        raise ValueError("ro_gap needs two bounds of the same network (digests or layer sizes differ)")
    if which not in ("both", "lower", "upper"):
        raise ValueError(f"which must be 'both', 'lower' or 'upper', got {which!r}")
    out = []
    for l in range(b_lp.n_layers):
        gl = np.abs(b_lp.lower[l] - b_milp.lower[l]) / (np.abs(b_milp.lower[l]) + 1e-10)
        gu = np.abs(b_lp.upper[l] - b_milp.upper[l]) / (np.abs(b_milp.upper[l]) + 1e-10)
        out.append({"both": np.vstack([gl, gu]), "lower": gl, "upper": gu}[which])
    return out
