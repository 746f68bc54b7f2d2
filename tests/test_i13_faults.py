"""Issue 17 (1, 4): a write that fails part-way keeps the previous file (ONNX networks, serialised witnesses)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper
from test_i13_vnnlib import HEAD, box_text, recheck_witness

from nnmiplib import Network


@pytest.fixture(scope="module")
def ties(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    net = Network([np.array([[2.0]])], [np.array([-1.0])])
    text = HEAD.format(t="float32", n=1) + box_text(1, "0.0", "1.0") + "(assert (>= Y[0,0] 1.0))\n"
    (d / "affine.vnnlib").write_text(text)
    return {"affine": (net.to_onnx(d / "affine.onnx"), d / "affine.vnnlib", text, 1)}


def full_disk_under(monkeypatch, folder):
    """Every file opened for writing under ``folder`` fails part-way (ENOSPC after half the bytes),
    whether opened by path (``open``, ``Path.write_bytes``) or from a descriptor (``os.fdopen``)."""
    import builtins
    import io

    real_open = io.open
    folder = str(Path(folder).resolve())

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data)[: len(data) // 2])
            self.f.flush()
            raise OSError(28, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return self.f.__exit__(*a)

    def failing_open(file, mode="r", *a, **kw):
        f = real_open(file, mode, *a, **kw)
        target = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.path.abspath(file)
        return Full(f) if ("w" in mode or "a" in mode) and target.startswith(folder) else f

    monkeypatch.setattr(io, "open", failing_open)
    monkeypatch.setattr(builtins, "open", failing_open)


def test_serialised_files_are_written_atomically(ties, tmp_path, monkeypatch, capfd):
    """A write that fails part-way leaves the previous X.pb intact (and the answer on stdout)."""
    from nnmiplib.cli import main

    path, qpath, text, _ = ties["affine"]
    folder = tmp_path / "a"
    assert main(["verify", str(qpath), "--network", f"N={path}", "--serialise-assignments", str(folder)]) == 0
    assert capfd.readouterr().out == "sat\n"
    t = TensorProto()
    t.ParseFromString((folder / "X.pb").read_bytes())
    assert numpy_helper.to_array(t).shape == (1, 1)
    (folder / "X.pb").write_bytes(b"previous")
    with monkeypatch.context() as mp:
        full_disk_under(mp, folder)
        assert main(["verify", str(qpath), "--network", f"N={path}", "--serialise-assignments", str(folder)]) == 0
    out = capfd.readouterr()
    recheck_witness(text, path, out.out)
    assert "No space left" in out.err
    assert (folder / "X.pb").read_bytes() == b"previous"  # not truncated by the failed write


def test_to_onnx_failing_part_way_keeps_the_previous_file(tmp_path, monkeypatch):
    """Issue 17 §1: saving a bigger net over a good ``n.onnx`` on a full disk used to leave a truncated file."""
    rng = np.random.default_rng(0)
    small = Network([rng.normal(size=(3, 2)), rng.normal(size=(1, 3))], [np.zeros(3), np.zeros(1)])
    big = Network([rng.normal(size=(100, 100)), rng.normal(size=(1, 100))], [np.zeros(100), np.zeros(1)])
    target = tmp_path / "nets" / "n.onnx"
    small.to_onnx(target)
    good = target.read_bytes()
    with monkeypatch.context() as mp:
        full_disk_under(mp, target.parent)
        with pytest.raises(OSError):
            big.to_onnx(target)
    assert target.read_bytes() == good
    back = Network.from_onnx(target)
    assert back.layer_sizes == small.layer_sizes
    x = rng.random(2)
    np.testing.assert_allclose(back.forward(x), small.forward(x), rtol=1e-5, atol=1e-6)
