"""Atomic file writes: a reader never sees a half-written file, a crash never loses the old one."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import time
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
    "file_sha256",
    "load_checkpoint",
    "pid_alive",
    "read_json_file",
    "read_json_object",
    "save_checkpoint",
]


class RunFileError(ValueError):
    """A file of a run directory that cannot be used (corrupt, truncated, foreign, unsafe);
    the message names the file and says what to do."""


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (signal 0 tests, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (threads stay safe)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: ``.<name>.<pid>-<random>.tmp`` (ours) or ``.<name>.<random>.tmp`` (before pids were in it).
_TMP = re.compile(r"^(?:(?P<pid>\d+)-)?[a-z0-9_]{8}$")
#: A temporary file without a pid older than this was left by a killed write.
_LEGACY_TMP_AGE = 3600.0


def _remove_stale_tmp(path: Path) -> None:
    """Delete the temporary files that killed writes of ``path`` left behind: those of a dead
    process, or, without a pid in the name, older than an hour."""
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            match = _TMP.match(name[len(prefix) : -len(".tmp")])
            if match is None:
                continue
            pid = match.group("pid")
            if pid is not None:
                stale = not pid_alive(int(pid))
            else:
                stale = time.time() - entry.stat().st_mtime > _LEGACY_TMP_AGE
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then rename over it.

    The file gets the permissions of a plain ``open`` (``0o666`` less the umask), not the
    ``0o600`` of :func:`tempfile.mkstemp`. Temporary files of killed writes are removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):  # POSIX; elsewhere mkstemp's mode is all there is
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
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


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (the key of per-checkpoint caches)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Digests kept in a checkpoint's ``.sha256`` file: the newest first, then the ones before it.
_KEPT_DIGESTS = 3


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_digests(path: Path) -> list[str]:
    sidecar = _digest_path(path)
    try:
        lines = sidecar.read_text(encoding="ascii").split()
    except (OSError, ValueError) as err:
        raise RunFileError(f"{sidecar}: cannot be read ({err})") from err
    if not lines or not all(len(d) == 64 and set(d) <= set("0123456789abcdef") for d in lines):
        raise RunFileError(f"{sidecar}: expected sha256 digests (64 hex digits a line)")
    return lines


def save_checkpoint(path: str | Path, obj: Any) -> Path:
    """:func:`atomic_torch_save` plus ``<path>.sha256``, checked by :func:`load_checkpoint`.

    The digest file is replaced first, with the new digest and the previous ones: a kill
    between the two renames leaves the old checkpoint, whose digest is still listed."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    digests = [hashlib.sha256(data).hexdigest()]
    if _digest_path(path).exists():
        # A damaged digest file is rewritten: the new checkpoint is what counts.
        with contextlib.suppress(RunFileError):
            digests += _read_digests(path)
    atomic_write_text(_digest_path(path), "\n".join(digests[:_KEPT_DIGESTS]) + "\n")
    return atomic_write(path, lambda f: f.write(data))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict saved by :func:`save_checkpoint` at ``path``, checked against its recorded
    sha256 (when there is one) and loaded with ``weights_only=True``: only tensors, dicts,
    lists, numbers and strings are unpickled, so a crafted file cannot run code. Raises
    :class:`RunFileError` naming the file when it is corrupt or cannot be loaded."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RunFileError(f"{path}: cannot be read ({err})") from err
    if _digest_path(path).exists():  # absent for checkpoints written before digests existed
        digest = hashlib.sha256(data).hexdigest()
        if digest not in _read_digests(path):
            raise RunFileError(
                f"{path} is corrupt: its sha256 {digest[:16]}... is not the one recorded in "
                f"{_digest_path(path)} when it was written. Delete the run's folder and train "
                "it again (--resume retrains it)"
            )
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
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
