"""The types that describe a dataset (its files, archive, locations) and hold a loaded one.

Plain frozen dataclasses with no I/O: the checksum, lookup and download modules of this package
build on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

__all__ = [
    "ArchiveSpec",
    "DatasetBundle",
    "DatasetInfo",
    "FileSpec",
    "FileStatus",
    "HashAlgo",
    "Resolved",
    "Split",
]

#: The digest algorithms a ``FileSpec`` may name (hashlib names).
HashAlgo = Literal["md5", "sha256"]


@dataclass(frozen=True)
class Split:
    """One split of a dataset, held in memory.

    ``x``: images as uint8 ``(N, C, H, W)`` (digits: float32 ``(N, 1, 8, 8)`` in [0, 1];
    synthetic-2d: float32 ``(N, 2)`` features). ``y``: int64 class labels, or float32 targets for
    regression.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"Split: x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class DatasetBundle:
    """A loaded dataset. ``source`` records where the data came from, for the run log."""

    name: str
    train: Split
    test: Split
    num_classes: int
    source: str


@dataclass(frozen=True)
class FileSpec:
    """One file a dataset needs.

    ``name`` is the canonical *uncompressed* file name; ``name + ".gz"`` is accepted too when
    ``gz_ok``. ``digest`` is the ``algo`` hex digest of the (decompressed) payload and ``size``
    its length in bytes (checked first: a truncated file is then reported by size, cheaply).
    ``subdirs``: extra sub-folders to look into inside every searched directory (e.g. CIFAR's
    ``cifar-10-batches-py``). ``urls``: mirror URLs, tried in order (may point to ``.gz``).
    ``digest_source``: where the checksum value comes from, shown by ``ddc data list``.
    """

    name: str
    algo: HashAlgo
    digest: str
    size: int | None = None
    subdirs: tuple[str, ...] = ()
    gz_ok: bool = True
    urls: tuple[str, ...] = ()
    digest_source: str = ""


@dataclass(frozen=True)
class ArchiveSpec:
    """An archive (tar.gz) that contains the dataset's files under ``member_dir``.

    Its md5 is the one of the archive bytes themselves (archives are not recompressed).
    """

    name: str
    md5: str
    urls: tuple[str, ...]
    member_dir: str
    digest_source: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset: its files, where to look, and how to obtain it.

    ``kind``: ``"files"`` (read from disk, verified), ``"bundled"`` (ships with a dependency:
    digits) or ``"generated"`` (synthetic). ``folder_names``: sub-folders of an explicit
    ``data_dir`` to search besides ``data_dir/<name>`` (e.g. torchvision's ``MNIST/raw``).
    ``system_dirs``: the usual system locations (``~`` and relative paths allowed; relative
    ones are resolved against the current directory at lookup time).
    """

    name: str
    description: str
    num_classes: int
    files: tuple[FileSpec, ...] = ()
    archive: ArchiveSpec | None = None
    folder_names: tuple[str, ...] = ()
    system_dirs: tuple[str, ...] = ()
    how_to_obtain: tuple[str, ...] = ()
    kind: Literal["files", "bundled", "generated"] = "files"
    notes: str = ""


@dataclass(frozen=True)
class FileStatus:
    """State of one file for ``ddc data verify``: ``status`` is ok, missing or corrupt."""

    name: str
    path: Path | None
    status: Literal["ok", "missing", "corrupt"]
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Resolved:
    """Where a dataset's files were found: individual verified files, or a verified archive."""

    files: dict[str, Path] = field(default_factory=dict)
    archive: Path | None = None

    @property
    def source(self) -> str:
        if self.archive is not None:
            return str(self.archive)
        parents = sorted({str(p.parent) for p in self.files.values()})
        return parents[0] if len(parents) == 1 else ", ".join(str(p) for p in self.files.values())
