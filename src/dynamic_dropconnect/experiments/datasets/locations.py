"""Where a dataset's files are looked for: an explicit folder, system locations, the user cache.

Also the ``DDC_OFFLINE`` switch, which turns every download off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .specs import ArchiveSpec, DatasetInfo, FileSpec

__all__ = ["cache_dir", "candidate_dirs", "find_archive", "find_file", "offline"]


def cache_dir() -> Path:
    """Per-user cache root: ``$DDC_CACHE_DIR``, else ``$XDG_CACHE_HOME/dynamic_dropconnect``,
    else ``~/.cache/dynamic_dropconnect``. The environment variables let tests and clusters
    redirect it without touching the home directory."""
    env = os.environ.get("DDC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dynamic_dropconnect"


def offline() -> bool:
    """Whether ``$DDC_OFFLINE`` forbids downloads (1, true, yes or on, any case)."""
    return os.environ.get("DDC_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def candidate_dirs(info: DatasetInfo, data_dir: str | Path | None) -> list[Path]:
    """Directories searched for ``info``'s files, in priority order (duplicates removed)."""
    dirs: list[Path] = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        dirs.append(root)
        dirs.extend(root / sub for sub in (info.name, *info.folder_names))
    for d in info.system_dirs:
        p = Path(d).expanduser()
        dirs.append(p if p.is_absolute() else Path.cwd() / p)
    dirs.append(cache_dir() / info.name)
    seen: set[Path] = set()
    unique: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return unique


def find_file(spec: FileSpec, dirs: Iterable[Path]) -> Path | None:
    """The first copy of ``spec`` in ``dirs`` (and their ``spec.subdirs``), raw before ``.gz``."""
    for d in dirs:
        for sub in ("", *spec.subdirs):
            base = d / sub / spec.name if sub else d / spec.name
            if base.is_file():
                return base
            if spec.gz_ok:
                gz = base.with_name(base.name + ".gz")
                if gz.is_file():
                    return gz
    return None


def find_archive(archive: ArchiveSpec, dirs: Iterable[Path]) -> Path | None:
    """The first copy of ``archive`` directly in one of ``dirs``, or None."""
    for d in dirs:
        p = d / archive.name
        if p.is_file():
            return p
    return None
