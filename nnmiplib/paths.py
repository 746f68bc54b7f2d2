"""Where nnmiplib keeps its caches (MNIST copy, trained nets, experiment results)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["atomic_write_bytes", "data_dir", "nets_dir", "repo_root", "results_dir"]


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


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
