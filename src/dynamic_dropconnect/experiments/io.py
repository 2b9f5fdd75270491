"""Atomic file writes: a reader never sees a half-written file, a crash never loses the old one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "RunFileError",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "load_checkpoint",
    "read_json_file",
    "read_json_object",
]


class RunFileError(ValueError):
    """A file of a run directory that cannot be used (corrupt, truncated, foreign, unsafe);
    the message names the file and says what to do."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``, ``{}`` when the file is absent, unreadable or not an object
    (a half-written or foreign file is treated as missing, never as an error)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_json_file(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`RunFileError` naming the file when it cannot be read,
    is not UTF-8 JSON or is not an object (for files that must be right: ``config.json``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise RunFileError(f"{path}: cannot be read as JSON ({err})") from err
    if not isinstance(data, dict):
        raise RunFileError(f"{path}: expected a JSON object, got a {type(data).__name__}")
    return data


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict saved by :func:`atomic_torch_save` at ``path``, loaded with ``weights_only=True``:
    only tensors, dicts, lists, numbers and strings are unpickled, so a crafted file cannot run
    code. Raises :class:`RunFileError` naming the file when it cannot be loaded."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (zip), EOFError, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunFileError(
            f"{path}: refused to load this checkpoint ({type(err).__name__}: {first}); it is "
            "corrupt, truncated or holds more than tensors, numbers and strings. Delete the "
            "run's folder and train it again (--resume retrains it)"
        ) from err
    if not isinstance(state, dict):
        kind = type(state).__name__
        raise RunFileError(f"{path}: not a checkpoint of ddc (a {kind}, not a dict)")
    return state
