"""Chapter 1: the notebook under papermill at smoke scale (shared fixture), and its verdict rules."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "01_training_and_rounding.ipynb"
FIGURES = ("fig-1-4", "fig-2-1a", "fig-2-1b", "fig-2-2a", "fig-2-2b", "fig-2-3", "fig-sparse-accurate")


def _glued(nb) -> set[str]:
    names = set()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if meta.get("name") and any(k.endswith("image/png") for k in out.get("data", {})):
                names.add(meta["name"])
    return names


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_chapter1_smoke(smoke_book):
    """Executed once for the whole suite by the ``smoke_book`` fixture (tests/conftest.py)."""
    from conftest import executed

    from nnmiplib.paths import results_dir

    nb = executed(smoke_book, "01_training_and_rounding")
    missing = set(FIGURES) - _glued(nb)
    assert not missing, f"figures not glued: {missing}"
    rec = json.loads((results_dir() / "verdicts" / "ch1-smoke.json").read_text())
    assert [f["id"] for f in rec["findings"]] == ["F2.1", "F2.2", "F2.3", "F2.4"]
    assert all(f["verdict"] in ("confirmed", "refuted", "partly") and f["rule"] for f in rec["findings"])
    assert list((results_dir() / "ch1").glob("sweep-smoke-*.csv"))
    text = (smoke_book / "book" / "01_training_and_rounding.ipynb").read_text()
    assert "Choice: penalty scaling" in text and "Scale: smoke" in text
    assert "Traceback" not in text


def _synthetic_sweep(none_share_01, none_drop_01, l1_more=True, deeper_worse=True):
    """A hand-made sweep: share rounded and accuracy per (arch, reg, λ, ε)."""
    import pandas as pd

    from nnmiplib.study import ch1

    rows = []
    depth = {"3000x1": 1, "800x2": 2, "200x5": 5, "100x10": 10}
    for a, d in depth.items():
        for reg, lam in [("none", 0.0)] + [(r, x) for r in ("l1", "l2") for x in (1e-4, 2e-4, 3e-4)]:
            for e in ch1.EPS_GRID:
                t = e / 0.1
                if reg == "none":
                    share = none_share_01 * t
                else:
                    bonus = (0.1 if (reg == "l1") == l1_more else 0.05) + lam * 100
                    share = min(1.0, none_share_01 * t + bonus * (e > 0))
                loss = (none_drop_01 * t if reg == "none"
                        else (d if deeper_worse else 11 - d) * 0.002 * t * (2 if reg == "l2" else 1))
                rows.append({"arch": a, "depth": d, "reg": reg, "lam": lam, "eps": e, "acc": 0.97 - loss,
                             "frac_zeroed": share, "acc_change": -loss, "digest": f"{a}-{reg}-{lam}"})
    return pd.DataFrame(rows)


def test_findings_rules_on_hand_made_sweeps():
    from nnmiplib.study import ch1

    cfg = ch1.preset("quick")
    got = {f.id: f.verdict for f in ch1.findings(_synthetic_sweep(0.6, 0.005), cfg)}
    assert got == {"F2.1": "confirmed", "F2.2": "confirmed", "F2.3": "confirmed", "F2.4": "confirmed"}
    got = {f.id: f.verdict for f in ch1.findings(_synthetic_sweep(0.95, 0.3, l1_more=False, deeper_worse=False), cfg)}
    assert got["F2.2"] == "refuted" and got["F2.3"] == "partly" and got["F2.4"] == "partly"
    assert ch1.init_share((4, 2), 0.25) == 0.5 and ch1.init_share((784, 200, 10), 1.0) == 1.0


def test_quick_zoo_subset_keeps_every_comparison():
    """quick trains 20 of the 28 nets (as paper does): every λ on the small architectures, and
    none / L1 / L2 at λ = 2e-4 on every architecture; the fair-comparison filters see that."""
    import pandas as pd

    from nnmiplib.study import ch1
    from nnmiplib.train import SETTINGS

    quick, paper = ch1.zoo_nets("quick"), ch1.zoo_nets("paper")
    assert len(paper) == 28 and len(quick) == 20 and set(quick) <= set(paper)
    for arch in ch1.ARCHS:
        have = {(r, lam) for a, r, lam in quick if a == arch}
        assert {("none", 0.0), ("l1", 2e-4), ("l2", 2e-4)} <= have
    assert {(r, lam) for a, r, lam in quick if a == "100x10"} == set(SETTINGS)
    df = pd.DataFrame([{"arch": a, "reg": r, "lam": lam} for a, r, lam in quick])
    assert len(ch1.common_settings(df)) == 12 and set(ch1.common_settings(df).lam) == {0.0, 2e-4}
    assert set(ch1.full_lambda_archs(df).arch) == {"200x5", "100x10"}
    assert len(ch1.preset("quick").nets) == 20
