"""The :class:`Bounds` result type: per-layer signed pre-activation bounds and their sources.

A bound is a proof (GUIDE §4): every value the pre-activation a^{l+1} = W^l h^l + b^l of
a neuron can take on the input box lies in ``[lower[l][j], upper[l][j]]``. Bounds are
signed (SPEC §6); the Big-M constants of the model (1.3–1.4) are H = max(0, upper) and
H̄ = max(0, −lower). ``source`` codes are joined "lower/upper" where the two sides come
from different methods (:func:`join_sources`, :func:`source_side`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..domains import Box
from ..network import Network
from ..paths import atomic_write_bytes

__all__ = ["FORMAT_VERSION", "Bounds", "LayerBoxes", "join_sources", "source_side"]

FORMAT_VERSION = 1


class LayerBoxes:
    """Shape queries of per-layer ``lower``/``upper`` arrays (:class:`Bounds`, the difference bounds)."""

    lower: list
    upper: list

    @property
    def n_layers(self) -> int:
        """Number of affine layers, L + 1 (the last one gives the logits)."""
        return len(self.lower)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.lower)

    def width(self, l: int) -> np.ndarray:
        return self.upper[l] - self.lower[l]


@dataclass
class Bounds(LayerBoxes):
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

    def big_m(self, l: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, H̄) = (max(0, upper), max(0, −lower)), the constants of (1.3–1.4)."""
        return np.maximum(0.0, self.upper[l]), np.maximum(0.0, -self.lower[l])

    @property
    def total_time(self) -> float:
        return float(self.stats.get("total_time", sum(float(t.sum()) for t in self.time)))

    def violation(self, net: Network, x: np.ndarray) -> float:
        """Largest amount by which a pre-activation of the inputs ``x`` leaves the bounds (≤ 0 if none)."""
        self.check_net(net)
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

    def check_net(self, net: Network) -> None:
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
            src_lo = np.where(take_lo, source_side(other.source[l], 0), source_side(self.source[l], 0))
            src_hi = np.where(take_hi, source_side(other.source[l], 1), source_side(self.source[l], 1))
            bad = lo > hi  # both valid, so a crossing is rounding: keep the hull
            if bad.any():
                lo, hi = np.where(bad, np.minimum(lo, hi), lo), np.where(bad, np.maximum(lo, hi), hi)
            lowers.append(lo)
            uppers.append(hi)
            sources.append(join_sources(src_lo, src_hi))
            times.append(self.time[l] + other.time[l])
        stats = {"total_time": self.total_time + other.total_time, "parts": [self.method, other.method]}
        out = Bounds(lowers, uppers, sources, times, f"{self.method}&{other.method}", self.net_digest, self.domain, stats)
        out.stats["stable"] = out.stable_counts()
        return out

    # ------------------------------------------------------------ storage
    def save(self, path) -> Path:
        """Write to one ``.npz`` (arrays + a JSON metadata blob), atomically.

        Through :func:`nnmiplib.paths.atomic_write_bytes`: if the write fails (a full disk, a
        read-only folder) an ``OSError`` names the file and an existing file is left as it was.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        arrays = {"dom_lo": self.domain.lo, "dom_hi": self.domain.hi}
        for l in range(self.n_layers):
            arrays[f"lower{l}"] = self.lower[l]
            arrays[f"upper{l}"] = self.upper[l]
            arrays[f"time{l}"] = self.time[l]
            arrays[f"source{l}"] = self.source[l].astype(str)
        meta = {"format": FORMAT_VERSION, "n_layers": self.n_layers, "method": self.method,
                "net_digest": self.net_digest, "domain_name": self.domain.name,
                "domain_meta": self.domain.meta, "stats": self.stats}
        arrays["meta"] = np.frombuffer(json.dumps(meta, default=jsonable).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path, net: Network | None = None) -> Bounds:
        """Read a file written by :meth:`save`; with ``net``, check that the bounds are its."""
        from ..paths import read_npz

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


def source_side(src: np.ndarray, i: int) -> np.ndarray:
    """The lower (i = 0) or upper (i = 1) part of a source code "lo/hi" (or the code itself)."""
    src = np.asarray(src).astype(str)
    if src.size == 0:
        return src
    parts = np.char.partition(src, "/")
    return np.where(parts[:, 1] == "/", parts[:, 2 * i], parts[:, 0])


def join_sources(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.where(lo == hi, lo, np.char.add(np.char.add(lo.astype(str), "/"), hi.astype(str)))


def jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
