"""The on-disk cell cache of :mod:`nnmiplib.experiments`: keys, records, atomic files.

A cell's key hashes the cell function's qualified name, the canonical JSON of its
parameters (:func:`canonical`: numpy scalars and arrays included, a
:class:`~nnmiplib.Network` by its ``digest()``), the grid's ``key_extra`` and version.
A finished cell is ``<dir>/<key>.json``, a failed one ``<dir>/<key>.error.json``; both
hold the same record (grid, key, fn, version, params, key_extra, seconds, worker,
finished) plus ``result`` or ``error``. Files are written atomically (:func:`nnmiplib.paths.atomic_open`:
temporary file + ``os.replace``); an unreadable file, or one holding another key, counts as absent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import atomic_write_text

logger = logging.getLogger("nnmiplib.experiments")


__all__ = ["canonical", "cell_key", "cell_paths", "clean_tmp", "load_records", "to_json", "write_record"]


def canonical(obj: Any) -> Any:
    """A JSON-able, deterministic form of a cell parameter, used for the cache key.

    numpy scalars become Python numbers; arrays become ``{"ndarray": dtype, "shape",
    "sha256"}``; an object with ``digest()`` (a Network) becomes its digest; an object
    with ``to_dict()`` (a Box) its dict; tuples become lists.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        return {"ndarray": str(a.dtype), "shape": list(a.shape),
                "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise ValueError(f"parameter dict keys must be strings, got {bad[0]!r}")
        return {k: canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if callable(getattr(obj, "digest", None)):
        return {type(obj).__name__: obj.digest()}
    if callable(getattr(obj, "to_dict", None)):
        return {type(obj).__name__: canonical(obj.to_dict())}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {type(obj).__name__: canonical(dataclasses.asdict(obj))}
    raise TypeError(f"cannot hash a {type(obj).__name__} cell parameter; pass a cache key, "
                    "a digest string or plain numbers instead")


def to_json(obj: Any) -> Any:
    """Cell results to plain JSON types (numpy arrays become lists)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    return obj


def cell_key(fn_name: str, params: Mapping, extra: Any, version: str) -> str:
    """SHA-256 (first 24 hex) of the canonical JSON of fn, params, extra and version."""
    blob = json.dumps({"fn": fn_name, "params": canonical(dict(params)),
                       "extra": canonical(extra), "version": version},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cell_paths(directory: Path, key: str) -> tuple[Path, Path]:
    """The files of a finished and of a failed cell: ``<key>.json``, ``<key>.error.json``."""
    return directory / f"{key}.json", directory / f"{key}.error.json"


def _read_json(path: Path, key: str) -> dict | None:
    try:
        with open(path) as f:
            rec = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable cache file %s (%s); recomputing the cell", path, exc)
        return None
    return rec if isinstance(rec, dict) and rec.get("key") == key else None


def load_records(directory: Path, keys: Sequence[str],
                 retry_failed: bool = False) -> tuple[dict[int, dict], dict[int, dict]]:
    """The stored records of finished and of failed cells, by cell index.

    A finished record wins over a failed one; with ``retry_failed`` failed records are
    not read (those cells count as not run).
    """
    records, errors = {}, {}
    for i, key in enumerate(keys):
        ok_path, err_path = cell_paths(directory, key)
        rec = _read_json(ok_path, key)
        if rec is not None:
            records[i] = rec
        elif not retry_failed and (err := _read_json(err_path, key)) is not None:
            errors[i] = err
    return records, errors


def clean_tmp(directory: Path) -> None:
    """Remove temporary files left by killed writers (older than a minute)."""
    for p in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - p.stat().st_mtime > 60:
                p.unlink()


def write_record(directory: Path, key: str, outcome: tuple, *, grid: str, fn: str,
                 version: str, params: Any, key_extra: Any) -> dict:
    """Store one cell's outcome ``(status, payload, seconds, where)``; return its record.

    ``params`` and ``key_extra`` are stored as given (pass their :func:`canonical` form).
    A finished cell replaces any failed record of the same key.
    """
    status, payload, seconds, where = outcome
    ok_path, err_path = cell_paths(directory, key)
    rec = {"grid": grid, "key": key, "fn": fn, "version": version,
           "params": params, "key_extra": key_extra,
           "seconds": seconds, "worker": where,
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if status == "ok":
        atomic_write_text(ok_path, json.dumps({**rec, "result": payload}, indent=1))
        with contextlib.suppress(FileNotFoundError):
            err_path.unlink()
        return {**rec, "result": payload}
    atomic_write_text(err_path, json.dumps({**rec, "error": payload}, indent=1))
    return {**rec, "error": payload}
