"""The book's verdicts on the thesis's findings (SPEC F2.1 … F4.8).

Each chapter judges its findings with explicit rules and records them here; the
conclusions page gathers every chapter's rows. A verdict the evidence cannot decide
because a time limit or a sample of the scale limited it is :data:`UNDECIDED`
("undecided at this scale"), with the limiting number in :attr:`Finding.limit`, never
"refuted". Rows are stored per chapter and scale
under ``data/results/verdicts/`` as JSON, written atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..paths import atomic_write_bytes, results_dir

__all__ = [
    "THESIS_FINDINGS",
    "UNDECIDED",
    "VERDICTS",
    "Finding",
    "beside_key",
    "findings_markdown",
    "glue_beside",
    "load_all",
    "record",
    "table",
    "verdict_text",
    "with_missing",
]

#: a verdict the scale's time limits or samples leave open (the reason goes to ``Finding.limit``)
UNDECIDED = "undecided at this scale"
VERDICTS = ("confirmed", "refuted", "partly", UNDECIDED, "not yet run")

#: Every finding of the thesis (SPEC), with the number the thesis states (THESIS-NUMBERS.md).
THESIS_FINDINGS: dict[str, tuple[str, str]] = {
    "F2.1": ("accuracy is nearly flat for ε in [0, 0.04]", "range [0, 0.04] highlighted (§2.3.1); no number"),
    "F2.2": ("unregularised nets round ≈60 % of weights at ε = 0.1 with < 1 % accuracy change",
             "≈60 % rounded, < 1 % accuracy change (§2.3.1)"),
    "F2.3": ("L1 rounds more than L2 at the same ε; larger λ rounds more", "\"significantly more\"; no number"),
    "F2.4": ("deeper regularised nets lose accuracy faster, L2 faster than L1", "\"much faster\" for L2; no number"),
    "F2.5": ("LP bounds get relatively better with more rounding and regularisation",
             "RO gap falls with ε and λ; very high variance unregularised (Fig 2.4)"),
    "F2.6": ("the LP gap deteriorates exponentially with layer depth", "\"exponential deterioration\" (Fig 2.7)"),
    "F2.7": ("LP is orders of magnitude faster than MILP, most on deep nets",
             "\"several orders of magnitude\"; no ratio given"),
    "F2.8": ("within practical time limits LP bounds are at most ≈2.4× the best MILP bounds", "≤ 2.4× (§2.3.4)"),
    "F3.1": ("naive bounds rarely reach ≤ 1 % gap; LP and IP+img mostly do", "Fig 3.3a; no number"),
    "F3.2": ("naive is competitive on shallow nets and at looser gaps (≥ 7.5 %), poor on 5 and 10 layers",
             "Fig 3.3d at 7.5 %; no number"),
    "F3.3": ("IP+img bound time has very high variance", "Fig 3.5; no number"),
    "F3.4": ("LP bounds are the best trade-off", "LP best at 3–5 % gap (Fig 3.3c)"),
    "F4.1": ("simple-domain solutions add background noise and often keep both nets right (≈ half the digits)",
             "both right on 6, 5, 4 of 10 digits (Tables 4.2, 4.4, 4.6; derived)"),
    "F4.2": ("the neighbours domain fools at least one net on every digit",
             "at least one net wrong on 10 of 10 digits in Tables 4.3, 4.5, 4.7"),
    "F4.3": ("wrong answers gravitate to 8 and 9", "8 or 9 in 34 of 56 wrong answers (Tables 4.2–4.7; derived); 10 of 14 in Table 4.7"),
    "F4.4": ("in simple-domain pairs with 100x10 the deeper net errs more (not 800x2 vs 200x5, 2:2)",
             "net-2 errors 2:2 (4.2), 4 vs 1 (4.4, 100x10 net 2), 4 vs 2 (4.6, 100x10 net 2)"),
    "F4.5": ("below ~40 % pruning the MIP struggles to find feasible points (below 20 %: none)",
             "no feasible point below 20 % pruning (Fig 4.8)"),
    "F4.6": ("ε* is flat over 60–70 % pruning although accuracy rises slightly", "Fig 4.9; no number"),
    "F4.7": ("ε* tends to drop as pruning passes 75 %", "Fig 4.10; no number"),
    "F4.8": ("digit 8 needs the largest ε*", "Fig 4.8; no number"),
}


@dataclass
class Finding:
    """One finding: the thesis's claim, its number, ours, and the verdict."""

    id: str  # "F2.1"
    claim: str
    thesis: str  # the number or statement the thesis gives ("—" if none)
    ours: str  # our measured number(s), in words
    verdict: str  # one of VERDICTS
    rule: str = ""  # the explicit rule that produced the verdict
    scale: str = ""
    limit: str = ""  # for UNDECIDED: the limit or sample that left it open, with its number

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.verdict == UNDECIDED and not self.limit.strip():
            raise ValueError(f"{self.id}: an {UNDECIDED!r} verdict names the limit that left it open (limit=...)")


def verdict_text(f: Finding) -> str:
    """The verdict as the book prints it: an undecided one with the number that limited it
    ("12 of 40 MILP solves left the root at 1 s: undecided at this scale")."""
    return f"{f.limit}: {f.verdict}" if f.verdict == UNDECIDED else f.verdict


def findings_markdown(findings: list[Finding]) -> str:
    """One prose line per finding: verdict, what we measured, the rule."""
    return "\n".join(f"- **{f.id}** — *{verdict_text(f)}*. We measured: {f.ours}. (Rule: {f.rule}.)"
                     for f in findings)


def _dir() -> Path:
    d = results_dir() / "verdicts"
    d.mkdir(parents=True, exist_ok=True)
    return d


def record(chapter: str, scale: str, findings: list[Finding]) -> Path:
    """Store a chapter's verdicts for a scale (replaces that chapter's earlier rows)."""
    rows = []
    for f in findings:
        f.scale = scale
        rows.append(asdict(f))
    path = _dir() / f"{chapter}-{scale}.json"
    return atomic_write_bytes(path, json.dumps({"chapter": chapter, "scale": scale, "findings": rows},
                                               indent=1).encode())


def load_all(scale: str | None = None) -> list[Finding]:
    """Every recorded finding (optionally of one scale), sorted by id."""
    out = []
    for p in sorted(_dir().glob("*.json")):
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if scale is not None and d.get("scale") != scale:
            continue
        out.extend(Finding(**r) for r in d["findings"])

    return sorted(out, key=_key)


def with_missing(findings: list[Finding]) -> list[Finding]:
    """All thesis findings: the recorded ones, and "not yet run" rows for the rest."""
    have = {f.id for f in findings}
    rows = list(findings)
    for fid, (claim, thesis) in THESIS_FINDINGS.items():
        if fid not in have:
            rows.append(Finding(fid, claim, thesis, "—", "not yet run"))
    return sorted(rows, key=_key)


def _key(f: Finding):
    major, minor = f.id[1:].split(".")
    return int(major), int(minor)


def table(findings: list[Finding]):
    """A pandas DataFrame for display in a chapter."""
    import pandas as pd

    return pd.DataFrame(
        [
            {"finding": f.id, "thesis claim": f.claim, "thesis number": f.thesis, "we measured": f.ours,
             "scale": f.scale, "verdict": verdict_text(f)}
            for f in findings
        ]
    )


def beside_key(fid: str) -> str:
    """The glue name of finding ``fid``'s "thesis reported / we measured" text (``vs-F2-5``)."""
    return "vs-" + fid.replace(".", "-")


def glue_beside(findings: list[Finding], ids=()) -> None:
    """Glue one "thesis reported / we measured" Markdown text per finding.

    A chapter calls this once it has judged its findings; the notebook places each text
    next to the figures it is about (``{glue:md}``; myst-nb reads every glued value of a
    notebook before rendering it, so a box may come before the cell that glued it).
    ``ids`` are glued too ("not judged at this scale") when absent from ``findings``,
    so a page never refers to a missing name.
    """
    from IPython.display import Markdown

    try:
        from myst_nb import glue
    except ImportError:  # pragma: no cover — the book's environment has myst-nb
        return
    have = {f.id: f for f in findings}
    for fid in dict.fromkeys([*have, *ids]):
        f = have.get(fid)
        if f is None:
            claim, thesis = THESIS_FINDINGS.get(fid, ("", "—"))
            text = f"**{fid}** — {claim}. **Thesis reported:** {thesis}. **We measured:** not judged at this scale."
        else:
            text = (f"**{f.id}** — {f.claim}. **Thesis reported:** {f.thesis}. **We measured:** {f.ours}. "
                    f"**Verdict:** {verdict_text(f)}.")
        glue(beside_key(fid), Markdown(text), display=False)
