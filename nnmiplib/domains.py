"""Input domains: boxes [lo, hi] ⊂ ℝⁿ (thesis constraint 1.8).

Every domain in the thesis is a box: the unit box [0,1]^784 (chapter 2), the L∞ ball
around a reference image clipped to [0,1] (chapter 4, "imgref_simple"), and the
"neighbours" box of §3.2.1 (chapters 3 and 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Box", "box", "count", "linf_ball", "neighbour_means", "neighbours_box", "real_array", "real_scalar",
           "real_vector", "unit_box"]


@dataclass(frozen=True, eq=False)
class Box:
    """The box {x : lo ≤ x ≤ hi} (float64, read-only)."""

    lo: np.ndarray
    hi: np.ndarray
    name: str = "box"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        lo = real_vector(self.lo, "box bound lo")
        hi = real_vector(self.hi, "box bound hi")
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


def real_array(values, what: str) -> np.ndarray:
    """``values`` as a float64 array (a copy, shape kept); ``ValueError`` naming ``what`` unless
    they are real numbers (bool, int or float: not complex, strings or objects)."""
    try:
        a = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be an array of real numbers ({exc})") from None
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be real numbers, got an array of dtype {a.dtype} "
                         f"({'complex values' if a.dtype.kind == 'c' else 'not numbers'})")
    return np.array(a, dtype=np.float64)


def real_vector(values, what: str) -> np.ndarray:
    """:func:`real_array` flattened."""
    return real_array(values, what).ravel()


def real_scalar(value, what: str) -> float:
    """``value`` as a float; ``ValueError`` naming ``what`` unless it is one real number (not a bool)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def count(value, what: str, minimum: int = 1) -> int:
    """``value`` as an int; ``ValueError`` naming ``what`` unless it is an integer ≥ ``minimum``
    (``2.7``, ``True`` or ``"3"`` are not counts; ``3.0`` is accepted as 3)."""
    ok = isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer())
    if isinstance(value, (bool, np.bool_)) or not ok or value < minimum:
        raise ValueError(f"{what} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def box(lo, hi, name: str = "box") -> Box:
    """The box [lo, hi]; scalars broadcast against the other bound."""
    lo, hi = real_array(lo, "box bound lo"), real_array(hi, "box bound hi")
    try:
        lo, hi = np.broadcast_arrays(lo, hi)
    except ValueError:
        raise ValueError(f"box bounds differ in size: lo has {np.size(lo)} entries, hi has {np.size(hi)}") from None
    return Box(lo, hi, name)


def unit_box(n: int = 784) -> Box:
    """[0, 1]^n, the thesis's domain for MNIST (``non_imgref``).

    Raises
    ------
    ValueError
        If ``n`` is not an integer ≥ 1 (``2.7``, ``0``, ``-3``, ``True``).
    """
    n = count(n, "unit_box's dimension n")
    return Box(np.zeros(n), np.ones(n), "unit")


def _as_image_vector(x0) -> np.ndarray:
    x0 = real_vector(x0, "the reference image x0")
    if x0.size == 0:
        raise ValueError("reference image is empty")
    if not np.all(np.isfinite(x0)):
        raise ValueError("reference image contains NaN or infinite values")
    return x0


def linf_ball(x0, delta: float, clip: tuple[float, float] | None = (0.0, 1.0)) -> Box:
    """[max(0, x₀ − δ), min(1, x₀ + δ)], the chapter-4 ``imgref_simple`` domain.

    Parameters
    ----------
    x0 : array of real numbers
        The centre (flattened).
    delta : float
        The radius δ ≥ 0.
    clip : (lo, hi) or None
        The range the ball is clipped to (default the pixel range [0, 1]); None: no clipping.

    Raises
    ------
    ValueError
        For a radius that is negative, NaN or infinite; a ``clip`` that is not a pair
        lo < hi of finite numbers; or a centre outside the clip range by more than δ at
        some coordinate (the clipped ball would be empty — e.g. pixels in 0–255 instead
        of [0, 1]).
    """
    x0 = _as_image_vector(x0)
    delta = real_scalar(delta, "the L∞ radius δ")
    if not np.isfinite(delta) or delta < 0:
        raise ValueError(f"the L∞ radius δ must be a finite number ≥ 0, got {delta}")
    lo, hi = x0 - delta, x0 + delta
    if clip is not None:
        if not isinstance(clip, (tuple, list, np.ndarray)) or len(clip) != 2:
            raise ValueError(f"clip must be a pair (lo, hi) or None, got {clip!r}")
        c_lo, c_hi = real_scalar(clip[0], "clip's lower end"), real_scalar(clip[1], "clip's upper end")
        if not (np.isfinite(c_lo) and np.isfinite(c_hi)) or not c_lo < c_hi:
            raise ValueError(f"clip must be a range (lo, hi) of finite numbers with lo < hi, got {tuple(clip)!r}; "
                             "e.g. (0, 1) for pixels, or None for no clipping")
        out = np.flatnonzero((x0 < c_lo - delta) | (x0 > c_hi + delta))
        if out.size:
            i = int(out[0])
            raise ValueError(
                f"x₀ lies outside the clip range {(c_lo, c_hi)} by more than δ = {delta:g} at {out.size} "
                f"coordinate(s), first {i}: x₀[{i}] = {float(x0[i])!r}; the ball is empty. Scale x₀ to the clip range "
                "(pixels in [0, 1], not 0–255) or pass clip=None")
        lo, hi = np.clip(lo, c_lo, c_hi), np.clip(hi, c_lo, c_hi)
    return Box(lo, hi, "linf", {"delta": delta})


def neighbour_means(x0, m: int = 3, pad: int = 2, shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """d_ij: mean of the zero-padded image over the m×m window centred at (i, j)."""
    m, pad = count(m, "window size m"), count(pad, "padding pad", minimum=0)
    shape = (count(shape[0], "image height"), count(shape[1], "image width"))
    if m % 2 == 0:
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
    eps = real_scalar(eps, "ε")
    if not np.isfinite(eps) or not 0 <= eps <= 1:
        raise ValueError(f"ε must lie in [0, 1], got {eps}")
    d = neighbour_means(x0, m, pad, shape).ravel()
    d = np.where(np.abs(d) < 1e-15, 0.0, d)
    lo = (1 - eps) * d
    hi = np.minimum(1.0, (1 + eps) * d)
    lo = np.minimum(lo, hi)
    return Box(lo, hi, "neighbours", {"eps": float(eps), "m": int(m), "pad": int(pad)})
