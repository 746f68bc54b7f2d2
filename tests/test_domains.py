"""Input boxes: validation, the L∞ ball, and the neighbours box of §3.2.1."""

from __future__ import annotations

import numpy as np
import pytest

from nnmiplib import domains as D


def test_box_rejects_bad_input():
    with pytest.raises(ValueError, match="inverted"):
        D.box([0, 1], [1, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        D.box([0, np.nan], [1, 1])
    with pytest.raises(ValueError, match="empty"):
        D.box([], [])
    with pytest.raises(ValueError, match="differ in size"):
        D.Box(np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="finite"):
        D.box([0], [np.inf])
    with pytest.raises(ValueError, match="network takes 5"):
        D.unit_box(4).check_dim(5)


def test_box_is_read_only_and_samples_inside():
    b = D.box([0, -1, 2], [1, 1, 2])
    with pytest.raises(ValueError):
        b.lo[0] = 5
    xs = b.sample(1000, rng=0)
    assert b.contains(xs).all()
    v = b.vertices()
    assert v.shape == (4, 3) and b.contains(v).all()  # the fixed coordinate adds no vertices
    assert D.Box.from_dict(b.to_dict()).lo.tolist() == b.lo.tolist()


def test_linf_ball_is_clipped():
    x0 = np.array([0.0, 0.5, 0.98])
    b = D.linf_ball(x0, 0.05)
    np.testing.assert_allclose(b.lo, [0.0, 0.45, 0.93])
    np.testing.assert_allclose(b.hi, [0.05, 0.55, 1.0])
    with pytest.raises(ValueError, match="radius"):
        D.linf_ball(x0, -0.1)


def test_neighbour_means_match_a_direct_window_mean():
    rng = np.random.default_rng(3)
    img = rng.random((28, 28)) * (rng.random((28, 28)) > 0.6)
    for m in (3, 5, 7):
        d = D.neighbour_means(img.ravel(), m=m, pad=3)
        r = m // 2
        p = np.pad(img, r)
        direct = np.array([[p[i:i + m, j:j + m].mean() for j in range(28)] for i in range(28)])
        np.testing.assert_allclose(d, direct, atol=1e-12)


def test_neighbours_box_keeps_the_digit_shape():
    img = np.zeros((28, 28))
    img[10:18, 12:15] = 1.0
    b = D.neighbours_box(img.ravel(), eps=0.18)
    lo, hi = b.lo.reshape(28, 28), b.hi.reshape(28, 28)
    # pixels whose whole 3x3 window is 0 stay at 0
    assert hi[0, 0] == 0 and hi[10, 10] == 0 and hi[10, 11] > 0
    inside = img > 0
    assert np.all(hi[inside] <= 1.0) and np.all(lo <= hi)
    # centre pixel of the bar: window mean is 1, so the box is [0.82, 1]
    assert lo[14, 13] == pytest.approx(0.82) and hi[14, 13] == 1.0
    # edge pixel of the bar: mean 6/9
    assert lo[14, 12] == pytest.approx(0.82 * 6 / 9) and hi[14, 12] == pytest.approx(1.18 * 6 / 9)
    with pytest.raises(ValueError, match="odd"):
        D.neighbours_box(img.ravel(), m=4)
    with pytest.raises(ValueError, match="pad"):
        D.neighbours_box(img.ravel(), m=7, pad=2)
