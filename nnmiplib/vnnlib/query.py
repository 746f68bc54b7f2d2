"""VNN-LIB queries: read with the field's parser (``vnnlib`` package, format 2.0).

VNN-LIB 1.0 files (``declare-const X_0 Real`` … ``Y_9``, plain or ``.gz``) are translated
faithfully to 2.0 first: one network ``N`` with input ``X real [n]`` and output
``Y real [m]``, ``X_i`` → ``X[i]``, numbers rewritten as plain decimals (exactly, via
:class:`decimal.Decimal`). In 2.0 text, numbers in exponent notation (``1e-07``, what
Python's ``str`` writes for small floats), which the 2.0 grammar does not have, are
rewritten the same way. Everything is then parsed by ``vnnlib.parse_query_string``.

The result is a :class:`Query`: declared variables in order, each element given a
global column, and the conjunction of all assertions in disjunctive normal form, each
literal a linear constraint ``coef · v  (<=|<|==) rhs`` over those columns.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = [
    "MAX_DISJUNCTS",
    "LinCon",
    "NetDecl",
    "Query",
    "VarDecl",
    "parse_query",
    "read_query",
    "translate_v1",
]

MAX_DISJUNCTS = 100_000

_DTYPE_NAMES = {
    "Real": "real", "F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16",
    "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8", "U16": "uint16",
    "U32": "uint32", "U64": "uint64", "Bool": "bool",
}


@dataclass
class VarDecl:
    """One declared tensor variable; its elements occupy columns offset … offset+size-1."""

    name: str
    network: str
    kind: str               # "input" | "output" | "hidden"
    dtype: str              # "real", "float32", ...
    shape: tuple[int, ...]
    offset: int
    onnx_name: str | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class NetDecl:
    name: str
    inputs: list[VarDecl]
    outputs: list[VarDecl]
    hidden: list[VarDecl]
    equal_to: str = ""
    isometric_to: str = ""


@dataclass
class LinCon:
    """``coef · v  op  rhs`` with ``op`` one of ``<=``, ``<``, ``==`` (``>``/``>=`` are flipped)."""

    cols: np.ndarray        # int columns
    coef: np.ndarray        # float64
    op: str
    rhs: float

    def value(self, v: np.ndarray) -> float:
        return float(np.dot(self.coef, np.asarray(v, dtype=np.float64)[self.cols]))

    def holds(self, v: np.ndarray, tol: float = 0.0, exact_cols: np.ndarray | None = None) -> bool:
        """Check the comparison at the assignment ``v`` (VNN-LIB semantics).

        ``<=`` (from ``<=``/``>=``) is non-strict: a point meeting it with equality
        satisfies it. It holds when ``coef · v ≤ rhs`` both as evaluated in float64 and
        exactly (in rational arithmetic on the float64 values), so no summation order can
        disagree. ``==`` holds when the float64 value equals ``rhs``. ``<`` (from ``<``/``>``)
        is strict: ``coef · v < rhs``; ``tol > 0`` asks it for a robust margin, slack
        ``tol · (1 + |rhs| + Σ|coef·v|)``, so that a checker evaluating the sum in another
        order or precision agrees — except for bounds ``±v_j < rhs`` on a column flagged
        in ``exact_cols`` (an input, whose printed value is exact), checked exactly.
        """
        lhs = self.value(v)
        if self.op == "==":
            return lhs == self.rhs
        if self.op == "<=":
            return lhs <= self.rhs and self._exact_compare(v, strict=False)
        plain = exact_cols is not None and self.cols.size == 1 and abs(self.coef[0]) == 1.0 \
            and bool(exact_cols[self.cols[0]])
        if tol > 0 and not plain:
            mag = 1.0 + abs(self.rhs) + float(np.abs(self.coef * np.asarray(v, dtype=np.float64)[self.cols]).sum())
            return lhs <= self.rhs - tol * mag
        return lhs < self.rhs and self._exact_compare(v, strict=True)

    def _exact_compare(self, v: np.ndarray, strict: bool) -> bool:
        """``coef · v (<|<=) rhs`` in exact rational arithmetic on the float64 values."""
        vals = np.asarray(v, dtype=np.float64)[self.cols]
        if not (np.isfinite(vals).all() and np.isfinite(self.coef).all() and np.isfinite(self.rhs)):
            return bool(self.value(v) < self.rhs if strict else self.value(v) <= self.rhs)
        lhs = sum((Fraction(float(a)) * Fraction(float(x)) for a, x in zip(self.coef, vals)), Fraction(0))
        return lhs < Fraction(self.rhs) if strict else lhs <= Fraction(self.rhs)


@dataclass
class Query:
    version: str                     # "1.0" (translated) or "2.0"
    networks: list[NetDecl]
    variables: list[VarDecl]         # declaration order
    disjuncts: list[list[LinCon]]    # DNF of the conjunction of all assertions
    source: str = ""
    text: str = field(default="", repr=False)

    @property
    def n_cols(self) -> int:
        return sum(v.size for v in self.variables)

    def var(self, name: str) -> VarDecl:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)

    def satisfied(self, v: np.ndarray, tol: float = 0.0, exact_cols: np.ndarray | None = None) -> bool:
        """Does the full assignment ``v`` (all declared columns) satisfy the query?

        ``tol``/``exact_cols``: see :meth:`LinCon.holds` (default: the plain check).
        """
        return any(all(c.holds(v, tol, exact_cols) for c in conj) for conj in self.disjuncts)

    def input_mask(self) -> np.ndarray:
        """True on the columns of input variables."""
        m = np.zeros(self.n_cols, dtype=bool)
        for v in self.variables:
            if v.kind == "input":
                m[v.offset : v.offset + v.size] = True
        return m


# ------------------------------------------------------------------ VNN-LIB 1.0
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_V1_VAR = re.compile(r"^([XY])_(\d+)$")


def _plain_number(tok: str) -> str | None:
    """A finite number token as an exact plain decimal (``-1e-1`` → ``-0.1``), None if not one."""
    try:
        d = Decimal(tok)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    s = format(d, "f")
    return s if "." in s else s + ".0"


#: a number in exponent notation standing alone (not part of a name or of another number)
_EXPONENT_NUMBER = re.compile(r"(?<![\w.\[,])([+-]?(?:\d+\.?\d*|\.\d+)[eE][+-]?\d+)(?![\w.])")


def plain_decimals(text: str) -> str:
    """``text`` with every number in exponent notation written as the same decimal (exactly)."""
    return _EXPONENT_NUMBER.sub(lambda m: _plain_number(m.group(1)) or m.group(1), text)


def translate_v1(text: str) -> str:
    """Translate a VNN-LIB 1.0 query (``declare-const X_i Real``) into VNN-LIB 2.0 text.

    Raises
    ------
    ValueError
        For declarations other than ``X_i``/``Y_i`` of sort ``Real``, or unbalanced brackets.
    """
    text = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    toks = _TOKEN.findall(text)
    if toks.count("(") != toks.count(")"):
        raise ValueError("unbalanced parentheses in the VNN-LIB 1.0 query")
    xs, ys = set(), set()
    out, i = [], 0
    while i < len(toks):
        t = toks[i]
        if t == "(" and i + 1 < len(toks) and toks[i + 1] in ("declare-const", "declare-fun"):
            j = i
            depth = 0
            while True:
                depth += toks[j] == "("
                depth -= toks[j] == ")"
                j += 1
                if depth == 0:
                    break
            decl = toks[i + 1 : j - 1]
            m = _V1_VAR.match(decl[1]) if len(decl) > 1 else None
            if not m or decl[-1] != "Real":
                raise ValueError(f"unsupported VNN-LIB 1.0 declaration {' '.join(decl)!r}; expected "
                                 "(declare-const X_i Real) or (declare-const Y_i Real)")
            (xs if m.group(1) == "X" else ys).add(int(m.group(2)))
            i = j
            continue
        m = _V1_VAR.match(t)
        if m:
            out.append(f"{m.group(1)}[{m.group(2)}]")
        elif t not in ("(", ")") and (num := _plain_number(t)) is not None:
            out.append(num)
        else:
            out.append(t)
        i += 1
    if not xs or not ys:
        raise ValueError("a VNN-LIB 1.0 query must declare input constants X_i and output constants Y_i")
    for name, idx in (("X", xs), ("Y", ys)):
        if idx != set(range(len(idx))):
            raise ValueError(f"VNN-LIB 1.0 variables {name}_i must be numbered 0..n-1 without gaps")
    body = " ".join(out).replace("( ", "(").replace(" )", ")")
    head = (f"(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X real [{len(xs)}])\n"
            f"  (declare-output Y real [{len(ys)}])\n)\n")
    return head + body + "\n"


# ------------------------------------------------------------------ parsing
def _dtype(d) -> str:
    return _DTYPE_NAMES.get(d.name, d.name.lower())


def _is_v1(text: str) -> bool:
    stripped = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    return "declare-const" in stripped or ("declare-fun" in stripped and "declare-network" not in stripped)


def parse_query(text: str, source: str = "<string>") -> Query:
    """Parse VNN-LIB 2.0 (or 1.0, translated) text into a :class:`Query`.

    Raises
    ------
    ValueError
        With the parser's message for malformed text, non-linear constraints, hidden-node
        declarations, or a DNF larger than :data:`MAX_DISJUNCTS`.
    """
    import vnnlib

    version = "2.0"
    if _is_v1(text):
        version = "1.0"
        text = translate_v1(text)
    else:
        text = plain_decimals(text)
    try:
        q = vnnlib.parse_query_string(text)
    except vnnlib.VNNLibException as exc:
        raise ValueError(f"{source}: malformed VNN-LIB {version} query: {exc}") from None
    nets, variables, offset = [], [], 0
    by_name: dict[str, VarDecl] = {}
    for n in q.networks:
        groups = {}
        for kind, decls in (("input", n.inputs), ("hidden", n.hidden), ("output", n.outputs)):
            groups[kind] = []
            for d in decls:
                v = VarDecl(d.name, n.name, kind, _dtype(d.dtype), tuple(int(s) for s in d.shape), offset,
                            d.onnx_name)
                offset += v.size
                groups[kind].append(v)
                by_name[v.name] = v
        # the standard reports variables in declaration order: inputs, hidden, outputs as written
        variables.extend(groups["input"] + groups["hidden"] + groups["output"])
        nets.append(NetDecl(n.name, groups["input"], groups["output"], groups["hidden"], n.equal_to or "",
                            n.isometric_to or ""))
    if not nets:
        raise ValueError(f"{source}: the query declares no network")
    for net in nets:
        if net.hidden:
            raise ValueError(f"{source}: network {net.name!r} declares hidden nodes "
                             f"({', '.join(v.name for v in net.hidden)}); nnmiplib supports theory NH only")

    def lin(expr):
        try:
            le = expr.to_linear_expr()
        except Exception as exc:  # noqa: BLE001 -- VNNLibException for non-linear terms
            raise ValueError(f"{source}: {exc} (nnmiplib supports linear constraints only)") from None
        cols, coefs = [], []
        for t in le.terms:
            v = by_name[t.var.name]
            idx = list(t.var.indices)
            flat = int(np.ravel_multi_index(idx, v.shape)) if v.shape else 0
            cols.append(v.offset + flat)
            coefs.append(float(t.coeff))
        return cols, coefs, float(le.constant)

    def literal(c) -> list[list[LinCon]]:
        """A comparison as a DNF (``!=`` is the disjunction of ``<`` and ``>``)."""
        lc, lk, l0 = lin(c.lhs)
        rc, rk, r0 = lin(c.rhs)
        cols = np.array(lc + rc, dtype=np.int64)
        coef = np.array(lk + [-k for k in rk], dtype=np.float64)
        if cols.size:  # merge repeated columns
            u, inv = np.unique(cols, return_inverse=True)
            merged = np.zeros(u.size)
            np.add.at(merged, inv, coef)
            cols, coef = u, merged
        rhs = r0 - l0
        kind = type(c).__name__
        if kind == "LessEqual":
            return [[LinCon(cols, coef, "<=", rhs)]]
        if kind == "LessThan":
            return [[LinCon(cols, coef, "<", rhs)]]
        if kind == "GreaterEqual":
            return [[LinCon(cols, -coef, "<=", -rhs)]]
        if kind == "GreaterThan":
            return [[LinCon(cols, -coef, "<", -rhs)]]
        if kind == "Equal":
            return [[LinCon(cols, coef, "==", rhs)]]
        if kind == "NotEqual":
            return [[LinCon(cols, coef, "<", rhs)], [LinCon(cols, -coef, "<", -rhs)]]
        raise ValueError(f"{source}: unsupported comparison {c}")

    def product(a, b):
        if len(a) * len(b) > MAX_DISJUNCTS:
            raise ValueError(f"{source}: the query's disjunctive normal form exceeds {MAX_DISJUNCTS} disjuncts")
        return [x + y for x in a for y in b]

    dnf: list[list[LinCon]] = [[]]
    for a in q.assertions:
        try:
            clauses = a.expr.to_dnf()
        except Exception as exc:  # noqa: BLE001 -- the reader's own exception types
            raise ValueError(f"{source}: cannot bring an assertion into disjunctive normal form: {exc}") from None
        adnf = []
        for conj in clauses:
            cd = [[]]
            for c in conj:
                cd = product(cd, literal(c))
            adnf.extend(cd)
        dnf = product(dnf, adnf)
    return Query(version, nets, variables, dnf, source=source, text=text)


def read_query(path) -> Query:
    """Read a VNN-LIB 2.0 or 1.0 query file (``.gz`` allowed)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no VNN-LIB query at {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read the query ({type(exc).__name__}: {exc})") from None
    return parse_query(text, source=str(path))
