"""Types, errors, checksums, file lookup and downloads shared by every dataset loader.

The names live in the modules this one was split into (each with its design notes) and are
re-exported here, the path the loaders and plugins import them from:

* ``errors``: ``DatasetError`` and its subclasses;
* ``specs``: what describes a dataset (``DatasetInfo``, ``FileSpec``, ``ArchiveSpec``) and what
  holds one (``Split``, ``DatasetBundle``, ``Resolved``, ``FileStatus``);
* ``locations``: the folders searched (``candidate_dirs``, ``cache_dir``);
* ``checksums``: payload digests, cached per process (``file_digest``, ``verify_file``,
  ``read_verified``);
* ``resolution``: finding, downloading and reporting the files (``resolve_files``,
  ``status_of_files``).
"""

from __future__ import annotations

# DOWNLOAD_TIMEOUT_S, HashAlgo and verify_archive were public here but never in __all__: the
# ``X as X`` form re-exports them all the same.
from .checksums import (
    clear_verification_cache,
    file_digest,
    read_verified,
    verify_file,
)
from .checksums import verify_archive as verify_archive
from .errors import DatasetCorruptError, DatasetError, DatasetMissingError
from .locations import cache_dir, candidate_dirs
from .resolution import DOWNLOAD_TIMEOUT_S as DOWNLOAD_TIMEOUT_S
from .resolution import resolve_files, status_of_files
from .specs import (
    ArchiveSpec,
    DatasetBundle,
    DatasetInfo,
    FileSpec,
    FileStatus,
    Resolved,
    Split,
)
from .specs import HashAlgo as HashAlgo

__all__ = [
    "ArchiveSpec",
    "DatasetBundle",
    "DatasetCorruptError",
    "DatasetError",
    "DatasetInfo",
    "DatasetMissingError",
    "FileSpec",
    "FileStatus",
    "Resolved",
    "Split",
    "cache_dir",
    "candidate_dirs",
    "clear_verification_cache",
    "file_digest",
    "read_verified",
    "resolve_files",
    "status_of_files",
    "verify_file",
]
