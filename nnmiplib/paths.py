"""Where nnmiplib keeps its caches (MNIST copy, trained nets, experiment results), and the one
atomic writer every stored file goes through (:func:`atomic_open`)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "data_dir", "nets_dir", "read_npz", "repo_root",
           "results_dir", "write_error"]


def repo_root() -> Path | None:
    """The source checkout this package runs from, if any (editable install)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() else None


def data_dir() -> Path:
    """``$NNMIPLIB_DATA_DIR``, else ``data/`` of the checkout, else ``~/.cache/nnmiplib``."""
    env = os.environ.get("NNMIPLIB_DATA_DIR")
    if env:
        d = Path(env).expanduser()
    elif repo_root() is not None:
        d = repo_root() / "data"
    else:
        d = Path.home() / ".cache" / "nnmiplib"
    d.mkdir(parents=True, exist_ok=True)
    return d


def nets_dir() -> Path:
    d = data_dir() / "nets"
    d.mkdir(parents=True, exist_ok=True)
    return d


def results_dir() -> Path:
    d = data_dir() / "results"
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_npz(path, kind: str, fix: str, parse):
    """Read an ``.npz`` written with an embedded JSON ``meta`` array (networks, bounds).

    ``parse(meta, z)`` builds the object from the decoded meta and the open archive;
    any failure (missing file aside) becomes one ValueError naming the file, the
    ``kind`` of file and the ``fix`` ("delete it and …").
    """
    import json

    import numpy as np

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no {kind} file at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return parse(json.loads(bytes(z["meta"]).decode()), z)
    except Exception as exc:  # noqa: BLE001 -- zipfile, KeyError, json, ValueError ...
        raise ValueError(f"{path} is not a readable nnmiplib {kind} file ({type(exc).__name__}: {exc}); "
                         f"delete it and {fix}") from None


def write_error(path, exc: OSError) -> OSError:
    """The error to raise when writing ``path`` failed with ``exc``: the same kind of
    :class:`OSError` (same ``errno``), with a message naming the file, the reason, what
    became of the file and the fix."""
    path = Path(path)
    reason = exc.strerror or str(exc) or type(exc).__name__
    code = exc.errno
    state = "the previous file is unchanged" if path.exists() else "no file was written"
    if code == errno.ENOSPC or code == getattr(errno, "EDQUOT", None):
        fix = "; free some space on that disk (or set $NNMIPLIB_DATA_DIR to another one) and run again"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = (f"; the folder {path.parent} is not writable: make it writable or choose another path "
               "(caches: set $NNMIPLIB_DATA_DIR)")
    else:
        fix = ""
    msg = f"could not write {path}: {reason}; {state}{fix}"
    return OSError(code, msg) if code is not None else OSError(msg)


@contextlib.contextmanager
def atomic_open(path) -> Iterator[BinaryIO]:
    """A binary file whose contents replace ``path`` whole when the ``with`` block ends.

    The data goes to a temporary file next to ``path`` (``.NAME.PID-RANDOM.tmp``), which
    is flushed, synced and renamed over ``path`` (:func:`os.replace`) only if the block
    finishes. On any failure — an :class:`OSError` part-way (a full disk, a read-only
    folder), an exception of the caller, ``KeyboardInterrupt`` — the temporary file is
    removed and the exception re-raised, so readers see the old file or the whole new
    one, never a part. An :class:`OSError` is re-raised as :func:`write_error` (same
    ``errno``) naming the file and the fix. This is the one writer of every file the
    library stores; :func:`atomic_write_bytes` and :func:`atomic_write_text` use it.

    Parameters
    ----------
    path : path-like
        The file to create or replace; missing parent folders are created.

    Yields
    ------
    file
        A binary file opened for writing (e.g. for ``np.savez(f, ...)``).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            f = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise write_error(path, exc) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    Parameters
    ----------
    path : path-like
        The file to create or replace.
    data : bytes-like
        The whole new contents.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OSError
        When the write fails (see :func:`atomic_open`): the temporary file is removed and
        a previous file at ``path`` is left as it was.
    """
    path = Path(path)
    with atomic_open(path) as f:
        f.write(data)
    return path


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded with ``encoding``."""
    return atomic_write_bytes(path, text.encode(encoding))
