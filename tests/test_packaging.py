"""The install story: pins, the conda mirror, a light import, the console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    return {ln.strip() for ln in lines if "==" in ln and not ln.lstrip().startswith("#")}


def test_requirements_pin_everything_exactly():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    reqs = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    loose = [ln for ln in reqs if "==" not in ln]
    assert not loose, f"unpinned requirements: {loose}"
    assert "torch==2.13.0" in reqs, "torch must be pinned to exactly 2.13.0 (the CPU wheel)"
    assert "jupyter-book==1.0.4.post1" in reqs
    for needed in ("highspy", "papermill", "seaborn", "tqdm", "onnx", "vnnlib", "dask", "distributed", "jupyterlab"):
        assert any(r.lower().startswith(needed + "==") for r in reqs), f"{needed} missing from requirements.txt"


def test_environment_yml_mirrors_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = {ln.strip().lstrip("- ").strip() for ln in (ROOT / "environment.yml").read_text().splitlines()
           if "==" in ln}
    assert req == env, f"differ: only in requirements {sorted(req - env)[:5]}, only in environment {sorted(env - req)[:5]}"


def test_import_is_light():
    code = ("import sys, nnmiplib, nnmiplib.domains, nnmiplib.network;"
            "heavy = [m for m in ('torch', 'gurobipy', 'pyscipopt', 'onnx', 'dask', 'distributed') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"import nnmiplib pulled in {proc.stdout.strip()}"


def test_console_script_help():
    proc = subprocess.run([sys.executable, "-m", "nnmiplib", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for sub in ("bounds", "book"):
        assert sub in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "nnmiplib"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2


def test_ci_runs_exactly_make_test():
    lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[-1] == "make test"
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme


def test_guide_entry_points_resolve():
    """The public entry points of GUIDE §3, where the layout moved them (re-exported)."""
    import nnmiplib as nm

    names = ["data.load_mnist", "train.train_mlp", "train.zoo_net", "Network", "Network.from_torch",
             "Network.from_onnx", "Network.to_onnx", "Network.save", "Network.load", "prune.round_weights",
             "prune.prune_fraction", "domains.unit_box", "domains.linf_ball", "domains.neighbours_box", "domains.box",
             "bounds.compute_bounds", "bounds.Bounds", "queries.max_output_change", "queries.maxdiff",
             "queries.maxout", "queries.maxflip", "queries.mineps", "queries.Result", "vnnlib.verify",
             "experiments.Grid", "mip.encode", "mip.solvers.get_backend"]
    for name in names:
        obj = nm
        for part in name.split("."):
            obj = getattr(obj, part)
        assert callable(obj) or isinstance(obj, type), name
