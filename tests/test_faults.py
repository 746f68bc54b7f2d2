"""Writes that fail: every file the library stores goes through the one atomic writer
(:func:`nnmiplib.paths.atomic_open`), so a full disk part-way through a write, a read-only
folder or Ctrl-C leaves the previous file as it was, no temporary file behind, and an
error that names the file and the problem.

The faults are injected: a full disk by a file object whose ``write`` stores some bytes
and then raises ``OSError(ENOSPC)``; a read-only folder by ``chmod 555`` and, when the
tests run as root (which may write anyway), by refusing to create files in that folder
with ``EACCES`` as the kernel would.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

import nnmiplib as nm
from nnmiplib import data as D
from nnmiplib import paths
from nnmiplib import train as T
from nnmiplib.bounds import Bounds, crown_bounds
from nnmiplib.experiments import cache
from nnmiplib.study import verdicts as V


# ------------------------------------------------------------------------ the faults
class _FullDisk:
    """A binary file that takes ``room`` more bytes, then fails as a full disk does."""

    def __init__(self, f, room: int):
        self._f, self._room = f, room

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if view.nbytes > self._room:
            self._f.write(view[: self._room])
            self._f.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= view.nbytes
        return self._f.write(view)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(room=…, skip=…)``: the next files opened through :func:`os.fdopen` (after
    ``skip`` of them) take ``room`` bytes and then raise ``ENOSPC``. Returns the list of
    temporary files the writer opened."""
    opened: list[int] = []
    real = os.fdopen

    def arm(room: int = 64, skip: int = 0):
        def fdopen(fd, *a, **k):
            f = real(fd, *a, **k)
            opened.append(fd)
            return f if len(opened) <= skip else _FullDisk(f, room)

        monkeypatch.setattr(os, "fdopen", fdopen)
        return opened

    return arm


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: no file can be created in ``folder`` any more."""
    folders: list[Path] = []

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        folders.append(folder)
        probe = folder / ".probe"
        try:
            probe.touch()
        except PermissionError:
            return folder  # the permission bits hold: a real read-only folder
        probe.unlink()  # root writes anyway: refuse creations in the folder as the kernel would
        real = os.open
        guarded = {f.resolve() for f in folders}

        def os_open(path, flags, *a, **k):
            if flags & os.O_CREAT and Path(path).resolve().parent in guarded:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real(path, flags, *a, **k)

        monkeypatch.setattr(os, "open", os_open)
        return folder

    yield make
    for f in folders:
        f.chmod(0o755)


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def net_pair():
    rng = np.random.default_rng(0)

    def make(sizes):
        return nm.Network([rng.normal(size=(b, a)) for a, b in itertools.pairwise(sizes)],
                          [rng.normal(size=b) for b in sizes[1:]], name="n")

    return make([2, 6, 3]), make([2, 100, 100, 3])  # the second is larger than the first


# --------------------------------------------------------------------- the writer itself
@pytest.mark.parametrize("fault", ["oserror", "keyboard", "caller"])
def test_atomic_open_removes_its_temporary_file_on_any_failure(tmp_path, fault):
    target = tmp_path / "f.bin"
    paths.atomic_write_bytes(target, b"old contents")
    raised = {"oserror": OSError, "keyboard": KeyboardInterrupt, "caller": ValueError}[fault]
    with pytest.raises(raised) as err, paths.atomic_open(target) as f:
        f.write(b"new contents, half written")
        if fault == "oserror":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        raise raised("stopped")
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    if fault == "oserror":
        assert err.value.errno == errno.EIO and str(target) in str(err.value)
        assert "previous file is unchanged" in str(err.value)


def test_a_complete_write_replaces_the_file_and_keeps_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    assert paths.atomic_write_text(target, "één") == target
    assert target.read_text(encoding="utf-8") == "één" and no_temporary_files(tmp_path)
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------------------------ each stored file
def _save_network(folder: Path, which: int) -> Path:
    return net_pair()[which].save(folder / "n.npz")


def _save_onnx(folder: Path, which: int) -> Path:
    return net_pair()[which].to_onnx(folder / "n.onnx")


def _save_bounds(folder: Path, which: int) -> Path:
    net = net_pair()[which]
    return crown_bounds(net, nm.domains.unit_box(2)).save(folder / "b.npz")


def _record_cell(folder: Path, which: int) -> Path:
    rec = cache.write_record(folder, "k" * 24, ("ok", {"y": list(range(100 * which + 1))}, 1.0, "here"),
                             grid="g", fn="f", version="1", params={"x": which}, key_extra=None)
    assert rec["result"]["y"][-1] == 100 * which
    return cache.cell_paths(folder, "k" * 24)[0]


def _record_verdict(folder: Path, which: int) -> Path:
    claims = [V.Finding("F2.1", "c", "t", "o" * (1 + 500 * which), "confirmed")]
    return V.record("ch1", "smoke", claims)


WRITERS = {"network": _save_network, "onnx": _save_onnx, "bounds": _save_bounds, "grid cell": _record_cell,
           "verdict": _record_verdict}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("NNMIPLIB_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data" / "results" / "verdicts"  # the verdicts' folder; the other writers take it as given


@pytest.mark.parametrize("writer", list(WRITERS))
@pytest.mark.parametrize("room", [0, 200])
def test_a_full_disk_part_way_keeps_the_previous_file(folder, full_disk, writer, room):
    first = WRITERS[writer](folder, 0)
    before = first.read_bytes()
    opened = full_disk(room=room)
    with pytest.raises(OSError) as err:
        WRITERS[writer](folder, 1)
    assert opened, "the write did not go through the atomic writer"
    assert err.value.errno == errno.ENOSPC
    assert str(first) in str(err.value) and "No space left" in str(err.value)
    assert "previous file is unchanged" in str(err.value)
    assert first.read_bytes() == before and no_temporary_files(folder)


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_read_only_folder_keeps_the_previous_file(folder, read_only, writer):
    first = WRITERS[writer](folder, 0)
    before = snapshot(folder)
    read_only(folder)
    with pytest.raises(PermissionError) as err:
        WRITERS[writer](folder, 1)
    assert str(first) in str(err.value) and "not writable" in str(err.value)
    assert snapshot(folder) == before


def test_files_written_after_a_failure_are_whole(folder, full_disk, monkeypatch):
    """The failed write left nothing in the way: the next one succeeds and reads back."""
    _save_network(folder, 0)
    full_disk(room=10)
    with pytest.raises(OSError):
        _save_network(folder, 1)
    monkeypatch.undo()
    path = _save_network(folder, 1)
    assert nm.Network.load(path) == net_pair()[1]
    assert Bounds.load(_save_bounds(folder, 1)).n_layers == 3


# ------------------------------------------------------------------------- the zoo
def tiny_mnist():
    rng = np.random.default_rng(0)
    return tuple((rng.random((20, 784), dtype=np.float32), rng.integers(0, 10, 20)) for _ in range(3))


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A nets cache holding one entry of another configuration; MNIST and training replaced
    by small fast stand-ins (the storage is under test)."""
    monkeypatch.setenv("NNMIPLIB_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(D, "load_mnist", lambda path=None: tiny_mnist())
    monkeypatch.setattr(D, "mnist_digest", lambda path=None: "0" * 64)

    def fake_train(hidden, *, seed, epochs, name, **kw):
        rng = np.random.default_rng(seed)
        sizes = (784, *hidden, 10)
        net = nm.Network([rng.normal(size=(b, a)) for a, b in itertools.pairwise(sizes)],
                         [np.zeros(b) for b in sizes[1:]], name=name)
        return net, {"epoch": list(range(1, epochs + 1))}

    monkeypatch.setattr(T, "train_mlp", fake_train)
    T.zoo_net("15x2", "l1", 2e-4, scale="smoke")
    nets = tmp_path / "nets"
    meta = next(nets.glob("*.json"))
    stale = json.loads(meta.read_text())
    stale["key"] = "0" * 64  # another configuration's entry: the next call retrains and stores
    meta.write_text(json.dumps(stale))
    return nets


@pytest.mark.parametrize("skip", [0, 1], ids=["network", "metadata"])
def test_zoo_full_disk_keeps_the_previous_entry(zoo, full_disk, skip):
    before = snapshot(zoo)
    opened = full_disk(room=100, skip=skip)
    with pytest.raises(OSError) as err:
        T.zoo_net("15x2", "l1", 2e-4, scale="smoke")
    assert len(opened) == skip + 1 and err.value.errno == errno.ENOSPC and str(zoo) in str(err.value)
    if skip == 0:  # the network failed: both files as they were
        assert snapshot(zoo) == before
    else:  # the network was stored, its metadata failed: the old metadata is intact and does not match it
        assert {k: v for k, v in snapshot(zoo).items() if k.endswith(".json")} == \
            {k: v for k, v in before.items() if k.endswith(".json")}
    assert no_temporary_files(zoo)


def test_zoo_read_only_folder_keeps_the_previous_entry(zoo, read_only):
    before = {k: v for k, v in snapshot(zoo).items() if not k.endswith(".lock")}
    read_only(zoo)
    with pytest.raises(PermissionError) as err:
        T.zoo_net("15x2", "l1", 2e-4, scale="smoke")
    assert str(zoo) in str(err.value)
    assert {k: v for k, v in snapshot(zoo).items() if not k.endswith(".lock")} == before


# ----------------------------------------------------------------------- MNIST cache
@pytest.fixture
def fresh_mnist(tmp_path, monkeypatch):
    """A data folder without the MNIST cache; the download and the verified read of the
    wheel are replaced by small arrays (the cache write is under test)."""
    monkeypatch.setenv("NNMIPLIB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NNMIPLIB_MNIST", raising=False)
    splits = tiny_mnist()
    arrays = {f"{p}_{name}": a for (name, _), split in zip(D.SPLITS, splits) for p, a in zip("xy", split)}
    monkeypatch.setattr(D, "_fetch_wheel", lambda cache: cache / D.WHEEL_FILE)
    monkeypatch.setattr(D, "_from_wheel", lambda path, require_hash=True: arrays)
    return tmp_path


def test_mnist_cache_on_a_full_disk(fresh_mnist, full_disk):
    opened = full_disk(room=4096)
    with pytest.raises(OSError) as err:
        D.load_mnist()
    cache_file = fresh_mnist / D.CACHE_NAME
    assert opened and err.value.errno == errno.ENOSPC and str(cache_file) in str(err.value)
    assert "no file was written" in str(err.value)
    assert not cache_file.exists() and no_temporary_files(fresh_mnist)


def test_mnist_cache_in_a_read_only_folder(fresh_mnist, read_only):
    read_only(fresh_mnist)
    with pytest.raises(PermissionError) as err:
        D.load_mnist()
    assert str(fresh_mnist / D.CACHE_NAME) in str(err.value) and "not writable" in str(err.value)
    assert not (fresh_mnist / D.CACHE_NAME).exists() and no_temporary_files(fresh_mnist)


def test_mnist_cache_write_keeps_a_previous_file(tmp_path, full_disk):
    """The cache writer keeps an existing file too (a cache is only written when missing)."""
    target = tmp_path / "mnist.npz"
    D._write_npz({"x_test": np.zeros((2, 784), np.float32)}, "d1", target)
    before = target.read_bytes()
    full_disk(room=300)
    with pytest.raises(OSError, match="No space left"):
        D._write_npz({"x_test": np.ones((5, 784), np.float32)}, "d2", target)
    assert target.read_bytes() == before and no_temporary_files(tmp_path)
