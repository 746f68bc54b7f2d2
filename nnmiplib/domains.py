"""Input domains: boxes [lo, hi] ⊂ ℝⁿ (thesis constraint 1.8).

Every domain in the thesis is a box: the unit box [0,1]^784 (chapter 2), the L∞ ball
around a reference image clipped to [0,1] (chapter 4, "imgref_simple"), and the
"neighbours" box of §3.2.1 (chapters 3 and 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Box", "box", "linf_ball", "neighbour_means", "neighbours_box", "unit_box"]


@dataclass(frozen=True, eq=False)
class Box:
    """The box {x : lo ≤ x ≤ hi} (float64, read-only)."""

    lo: np.ndarray
    hi: np.ndarray
    name: str = "box"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        lo = np.array(self.lo, dtype=np.float64).ravel()
        hi = np.array(self.hi, dtype=np.float64).ravel()
        if lo.shape != hi.shape:
            raise ValueError(f"box bounds differ in size: lo has {lo.size} entries, hi has {hi.size}")
        if lo.size == 0:
            raise ValueError("empty box: lo and hi have no entries")
        if np.isnan(lo).any() or np.isnan(hi).any():
            bad = np.flatnonzero(np.isnan(lo) | np.isnan(hi))[:5]
            raise ValueError(f"box bounds contain NaN (first coordinates {bad.tolist()})")
        if np.isinf(lo).any() or np.isinf(hi).any():
            raise ValueError("box bounds must be finite: MIP models need a bounded input domain (1.8)")
        inv = np.flatnonzero(lo > hi)
        if inv.size:
            i = int(inv[0])
            raise ValueError(
                f"inverted box: lo > hi at {inv.size} coordinate(s), first {i}: "
                f"lo={lo[i]!r} > hi={hi[i]!r}; swap them or fix the domain"
            )
        lo.setflags(write=False)
        hi.setflags(write=False)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def n(self) -> int:
        return self.lo.size

    @property
    def center(self) -> np.ndarray:
        return (self.lo + self.hi) / 2

    @property
    def width(self) -> np.ndarray:
        return self.hi - self.lo

    def check_dim(self, n_inputs: int) -> None:
        if self.n != n_inputs:
            raise ValueError(f"domain {self.name!r} has {self.n} coordinates but the network takes {n_inputs} inputs")

    def contains(self, x: np.ndarray, tol: float = 0.0) -> bool | np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        ok = (x >= self.lo - tol) & (x <= self.hi + tol)
        return bool(ok.all()) if x.ndim == 1 else ok.all(axis=1)

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lo, self.hi)

    def sample(self, n: int, rng=None) -> np.ndarray:
        """``n`` points drawn uniformly from the box, shape (n, dim)."""
        rng = np.random.default_rng(rng)
        return self.lo + rng.random((n, self.n)) * (self.hi - self.lo)

    def vertices(self, max_dim: int = 16) -> np.ndarray:
        """All 2^k vertices over the k free coordinates (k ≤ ``max_dim``)."""
        free = np.flatnonzero(self.hi > self.lo)
        if free.size > max_dim:
            raise ValueError(f"{free.size} free coordinates give 2^{free.size} vertices; max_dim is {max_dim}")
        bits = (np.arange(2 ** free.size)[:, None] >> np.arange(free.size)) & 1
        v = np.tile(self.lo, (bits.shape[0], 1))
        v[:, free] = np.where(bits == 1, self.hi[free], self.lo[free])
        return v

    def to_dict(self) -> dict:
        return {"name": self.name, "lo": self.lo.tolist(), "hi": self.hi.tolist(), "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> Box:
        return cls(np.asarray(d["lo"]), np.asarray(d["hi"]), d.get("name", "box"), d.get("meta", {}))

    def __repr__(self) -> str:
        return f"Box({self.name!r}, n={self.n}, width mean={self.width.mean():.3g})"


def box(lo, hi, name: str = "box") -> Box:
    """The box [lo, hi]; scalars broadcast against the other bound."""
    lo, hi = np.broadcast_arrays(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    return Box(lo, hi, name)


def unit_box(n: int = 784) -> Box:
    """[0, 1]^n, the thesis's domain for MNIST (``non_imgref``)."""
    if int(n) < 1:
        raise ValueError(f"unit_box needs n ≥ 1, got {n}")
    return Box(np.zeros(int(n)), np.ones(int(n)), "unit")


def _as_image_vector(x0) -> np.ndarray:
    x0 = np.asarray(x0, dtype=np.float64).ravel()
    if x0.size == 0:
        raise ValueError("reference image is empty")
    if not np.all(np.isfinite(x0)):
        raise ValueError("reference image contains NaN or infinite values")
    return x0


def linf_ball(x0, delta: float, clip: tuple[float, float] | None = (0.0, 1.0)) -> Box:
    """[max(0, x₀ − δ), min(1, x₀ + δ)], the chapter-4 ``imgref_simple`` domain."""
    x0 = _as_image_vector(x0)
    if not np.isfinite(delta) or delta < 0:
        raise ValueError(f"the L∞ radius δ must be a finite number ≥ 0, got {delta}")
    lo, hi = x0 - delta, x0 + delta
    if clip is not None:
        lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
        if np.any(lo > hi):
            raise ValueError(f"x₀ lies outside the clip range {clip} by more than δ; the ball is empty")
    return Box(lo, hi, "linf", {"delta": float(delta)})


def neighbour_means(x0, m: int = 3, pad: int = 2, shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """d_ij: mean of the zero-padded image over the m×m window centred at (i, j)."""
    if m < 1 or m % 2 == 0:
        raise ValueError(f"window size m must be odd and ≥ 1 to be centred, got {m}")
    r = m // 2
    if pad < r:
        raise ValueError(f"padding {pad} is too small for a centred {m}×{m} window; use pad ≥ {r}")
    img = _as_image_vector(x0)
    if img.size != shape[0] * shape[1]:
        raise ValueError(f"reference image has {img.size} pixels, expected {shape[0]}×{shape[1]}")
    img = img.reshape(shape)
    p = np.pad(img, pad)
    # sum over the window by a 2-D cumulative sum (exact up to float rounding)
    c = np.zeros((p.shape[0] + 1, p.shape[1] + 1))
    c[1:, 1:] = p.cumsum(0).cumsum(1)
    i0 = np.arange(shape[0]) + pad - r
    j0 = np.arange(shape[1]) + pad - r
    s = c[i0[:, None] + m, j0[None, :] + m] - c[i0[:, None], j0[None, :] + m] - c[i0[:, None] + m, j0[None, :]] + c[
        i0[:, None], j0[None, :]
    ]
    return np.maximum(s / (m * m), 0.0)


def neighbours_box(x0, eps: float = 0.18, m: int = 3, pad: int = 2, shape: tuple[int, int] = (28, 28)) -> Box:
    """The "neighbours" box of §3.2.1: pixel (i, j) ∈ [(1 − ε)d_ij, min(1, (1 + ε)d_ij)].

    d_ij is the mean of x₀ over the m×m window centred at (i, j), with zero padding.
    Pixels whose whole window is 0 get d_ij = 0 and stay 0, so the digit keeps its
    shape. The box is centred on the local mean, not on x₀, so x₀ itself need not lie
    inside it (SPEC §3).
    """
    if not np.isfinite(eps) or not 0 <= eps <= 1:
        raise ValueError(f"ε must lie in [0, 1], got {eps}")
    d = neighbour_means(x0, m, pad, shape).ravel()
    d = np.where(np.abs(d) < 1e-15, 0.0, d)
    lo = (1 - eps) * d
    hi = np.minimum(1.0, (1 + eps) * d)
    lo = np.minimum(lo, hi)
    return Box(lo, hi, "neighbours", {"eps": float(eps), "m": int(m), "pad": int(pad)})
