"""Helpers of the benchmark scripts (``benchmarks/``) that their summaries rest on."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("traj, expected", [
    # (seconds, dual bound, incumbent): the gap first ≤ 1 % at 7 s (2.019 − 2 ≤ 0.02)
    ([(1.0, 5.0, -float("inf")), (3.0, 2.5, 2.0), (7.0, 2.019, 2.0), (9.0, 2.001, 2.0)], 7.0),
    # a negative optimum: the gap is relative to |incumbent|
    ([(2.0, -0.9, -1.0), (4.0, -0.995, -1.0)], 4.0),
    # never within 1 %
    ([(2.0, 3.0, 2.0), (5.0, 2.5, 2.0)], None),
    ([], None),
])
def test_pv_time_to_gap_reads_the_trajectory(traj, expected):
    pv = _module("pv")
    assert pv.time_to_gap(SimpleNamespace(extra={"trajectory": traj})) == expected
