"""VNN-LIB 2.0 parsing (vnnlib package) and the VNN-LIB 1.0 → 2.0 translation."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

pytest.importorskip("vnnlib")
from nnmiplib.vnnlib.query import parse_query, read_query, translate_v1

V2 = """(vnnlib-version <2.0>)
(declare-network f (declare-input X float32 [1,2]) (declare-output Y float32 [1,3]))
(declare-network g (declare-input U float32 [1,2]) (declare-output W float32 [1,3]))
(assert (and (<= X[0,0] 1.0) (>= X[0,0] -1.0) (<= X[0,1] 0.5) (>= X[0,1] 0.0)))
(assert (== X[0,0] U[0,0]))
(assert (or (and (> Y[0,2] (+ W[0,1] 0.5)) (<= (* 2.0 Y[0,1]) 3.0)) (!= (- Y[0,0] Y[0,1]) -1.0)))
"""

V1 = """; comment
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (<= X_0 1))
(assert (>= X_0 -1e-1))
(assert (<= X_1 .5))
(assert (>= X_1 0.0))
(assert (or (and (>= Y_0 Y_1)) (and (<= Y_1 -3.5e+2) (>= Y_0 0))))
"""


def _row(c, n):
    v = np.zeros(n)
    v[c.cols] = c.coef
    return v


def test_v2_columns_dnf_and_semantics():
    q = parse_query(V2)
    assert q.version == "2.0"
    assert [(v.name, v.kind, v.dtype, v.shape, v.offset) for v in q.variables] == [
        ("X", "input", "float32", (1, 2), 0), ("Y", "output", "float32", (1, 3), 2),
        ("U", "input", "float32", (1, 2), 5), ("W", "output", "float32", (1, 3), 7)]
    # (and A B) or (!= …) → the != splits in two: 3 disjuncts, each with the 5 common rows
    assert len(q.disjuncts) == 3 and all(len(d) == 5 + k for d, k in zip(q.disjuncts, (2, 1, 1)))
    strict = q.disjuncts[0][5]  # Y[0,2] > W[0,1] + 0.5  →  -Y[0,2] + W[0,1] < -0.5
    assert strict.op == "<" and strict.rhs == -0.5
    assert np.array_equal(_row(strict, q.n_cols)[[4, 8]], [-1.0, 1.0])
    v = np.zeros(q.n_cols)
    v[[0, 5]] = 0.5            # X[0,0] = U[0,0]
    v[[2, 3]] = [0.0, 1.0]     # Y0 - Y1 = -1 → the != disjuncts fail
    v[4], v[8] = 2.0, 1.5      # Y2 = W1 + 0.5 exactly: the strict > fails
    assert not q.satisfied(v)
    v[4] = 2.0 + 1e-9
    assert q.satisfied(v)
    v[2] = 0.25                # now Y0 - Y1 != -1 holds
    v[4] = 0.0
    assert q.satisfied(v)


def test_v1_translation_plain_and_gz(tmp_path):
    text = translate_v1(V1)
    assert "(declare-input X real [2])" in text and "(declare-output Y real [2])" in text
    assert "-0.1" in text and "0.5" in text and "-350.0" in text and "X[1]" in text and " 1.0)" in text
    p = tmp_path / "p.vnnlib"
    p.write_text(V1)
    pg = tmp_path / "p.vnnlib.gz"
    with gzip.open(pg, "wt") as f:
        f.write(V1)
    for q in (read_query(p), read_query(pg)):
        assert q.version == "1.0" and [v.name for v in q.variables] == ["X", "Y"]
        assert len(q.disjuncts) == 2
        v = np.array([0.0, 0.25, 2.0, 1.0])
        assert q.satisfied(v)
        v[:2] = [1.5, 0.25]     # X_0 > 1 violates the box
        assert not q.satisfied(v)
        v[:2] = [-0.1, 0.0]     # boundary values are allowed (non-strict)
        assert q.satisfied(v)


@pytest.mark.parametrize("text, match", [
    ("(assert (<= X[0] 1.0)", "malformed"),
    (("(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [2]) (declare-output Y real [1]))\n"
     "(assert (<= (* X[0] X[1]) 1.0))"), "linear"),
    (("(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [2]) (declare-output Y real [1]))\n"
     "(assert (<= X[2] 1.0))"), "malformed"),
    (("(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [2]) (declare-hidden H real [2] \"h\")"
     " (declare-output Y real [1]))\n(assert (<= X[0] 1.0))"), "hidden"),
    ("(declare-const X_0 Real)\n(declare-const Z_0 Real)\n(assert (<= X_0 1))", "unsupported VNN-LIB 1.0"),
    ("(declare-const X_0 Real)\n(declare-const X_2 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))",
     "without gaps"),
])
def test_malformed_queries_raise_clear_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_query(text)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        read_query("/nonexistent/q.vnnlib")


def test_v2_numbers_in_exponent_notation_read_as_the_same_decimals():
    """The 2.0 grammar has no exponents, but Python's str() writes small floats so: they are
    rewritten exactly, and names or shapes that look like numbers are left alone."""
    text = V2.replace("(<= X[0,1] 0.5)", "(<= X[0,1] 5e-1)").replace("(>= X[0,0] -1.0)", "(>= X[0,0] -1E+0)")
    text = text.replace("(<= (* 2.0 Y[0,1]) 3.0)", "(<= (* 2.0 Y[0,1]) 3e-07)")
    q, ref = parse_query(text), parse_query(V2)
    assert [len(d) for d in q.disjuncts] == [len(d) for d in ref.disjuncts]
    for dq, dr in zip(q.disjuncts, ref.disjuncts):
        for a, b in zip(dq, dr):
            assert a.op == b.op and np.array_equal(a.cols, b.cols) and np.array_equal(a.coef, b.coef)
            assert a.rhs == (3e-07 if b.rhs == 3.0 else b.rhs)
    from nnmiplib.vnnlib.query import plain_decimals
    assert plain_decimals("(<= X1e5 1e5) (declare-input E1 real [1,2]) (>= x -2.5e-3)") == \
        "(<= X1e5 100000.0) (declare-input E1 real [1,2]) (>= x -0.0025)"
