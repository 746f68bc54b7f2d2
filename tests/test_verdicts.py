"""Verdict records: validation, storage per chapter and scale, the full findings table."""

from __future__ import annotations

import pytest

from nnmiplib.study import verdicts as V


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NNMIPLIB_DATA_DIR", str(tmp_path))


def test_unknown_verdict_is_rejected():
    with pytest.raises(ValueError, match="verdict must be one of"):
        V.Finding("F2.1", "c", "t", "o", "maybe")


def test_record_and_reload_per_scale():
    V.record("ch1", "smoke", [V.Finding("F2.2", "c", "t", "94 % rounded", "refuted"),
                              V.Finding("F2.1", "c", "t", "flat", "confirmed")])
    V.record("ch1", "quick", [V.Finding("F2.1", "c", "t", "flat", "partly")])
    smoke = V.load_all("smoke")
    assert [f.id for f in smoke] == ["F2.1", "F2.2"] and smoke[1].verdict == "refuted"
    assert [f.verdict for f in V.load_all("quick")] == ["partly"]
    # recording again replaces the chapter's rows for that scale
    V.record("ch1", "smoke", [V.Finding("F2.1", "c", "t", "flat", "partly")])
    assert [f.id for f in V.load_all("smoke")] == ["F2.1"]


def test_with_missing_lists_all_twenty_findings_in_order():
    rows = V.with_missing([V.Finding("F4.8", "c", "t", "digit 8 largest", "confirmed")])
    assert len(rows) == 20 and rows[0].id == "F2.1" and rows[-1].id == "F4.8"
    assert rows[-1].verdict == "confirmed"
    assert sum(r.verdict == "not yet run" for r in rows) == 19
    df = V.table(rows)
    assert list(df.columns)[:2] == ["finding", "thesis claim"] and len(df) == 20


def test_undecided_names_its_limit_everywhere():
    with pytest.raises(ValueError, match="names the limit"):
        V.Finding("F2.6", "c", "t", "o", V.UNDECIDED)
    f = V.Finding("F2.6", "c", "t", "gap ×1.3 per layer", V.UNDECIDED,
                  limit="12 of 40 MILP solves left the root at 1 s")
    assert V.verdict_text(f) == "12 of 40 MILP solves left the root at 1 s: undecided at this scale"
    assert V.verdict_text(V.Finding("F2.1", "c", "t", "o", "refuted")) == "refuted"
    V.record("ch2", "quick", [f])
    back = V.load_all("quick")
    assert back[0].verdict == V.UNDECIDED and back[0].limit == f.limit  # the reason survives storage
    assert V.table(back).verdict[0] == V.verdict_text(f)
    assert "12 of 40 MILP solves left the root at 1 s: undecided" in V.findings_markdown(back)
    assert V.UNDECIDED in V.VERDICTS and V.VERDICTS[-1] == "not yet run"
