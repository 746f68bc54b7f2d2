"""The book's verdicts on the thesis's findings (SPEC F2.1 … F4.8).

Each chapter judges its findings with explicit rules and records them here; the
conclusions page gathers every chapter's rows. Rows are stored per chapter and scale
under ``data/results/verdicts/`` as JSON, written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .paths import results_dir

__all__ = ["Finding", "VERDICTS", "record", "load_all", "table"]

VERDICTS = ("confirmed", "refuted", "partly", "not yet run")


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

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


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
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"chapter": chapter, "scale": scale, "findings": rows}, indent=1))
    os.replace(tmp, path)
    return path


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

    def key(f: Finding):
        major, minor = f.id[1:].split(".")
        return int(major), int(minor)

    return sorted(out, key=key)


def table(findings: list[Finding]):
    """A pandas DataFrame for display in a chapter."""
    import pandas as pd

    return pd.DataFrame(
        [
            {"finding": f.id, "thesis claim": f.claim, "thesis number": f.thesis, "we measured": f.ours,
             "scale": f.scale, "verdict": f.verdict}
            for f in findings
        ]
    )
