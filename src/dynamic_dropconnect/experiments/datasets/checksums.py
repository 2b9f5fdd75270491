"""Checksums of dataset files: digests of the (decompressed) payload, cached per process.

Why it looks like this:

* For files that are commonly redistributed *recompressed* (MNIST-style idx files: Debian ships
  its own ``.gz``, npm ships them raw) the checksum is taken over the **decompressed payload**,
  so any container of the same bytes verifies alike. Gzip is detected by its magic bytes, not by
  the file name.
* Hashing a 450 MB file is not free, so a digest is computed at most once per process for a
  given ``(path, size, mtime)`` and cached; loaders hash the bytes they have already read anyway.
* A corrupted file is an error, never silently skipped in favour of another copy: the user must
  know that the copy they pointed us at is bad.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import DatasetCorruptError
from .specs import ArchiveSpec, FileSpec, HashAlgo

__all__ = [
    "clear_verification_cache",
    "file_digest",
    "is_gzip",
    "iter_chunks",
    "read_verified",
    "verify_archive",
    "verify_file",
]

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"

# (resolved path, size, mtime_ns, algo, whole-file?) -> (hex digest, payload size)
_DIGEST_CACHE: dict[tuple[str, int, int, str, bool], tuple[str, int]] = {}


def clear_verification_cache() -> None:
    """Forget every cached digest (tests; or after rewriting a file within one mtime tick)."""
    _DIGEST_CACHE.clear()


def _cache_key(path: Path, algo: str, raw: bool) -> tuple[str, int, int, str, bool]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, algo, raw)


def is_gzip(path: Path) -> bool:
    """Whether ``path`` is a gzip stream (by its magic bytes, whatever its name)."""
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _open_payload(path: Path) -> IO[bytes]:
    """Open ``path`` for reading its payload, transparently decompressing gzip."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def iter_chunks(f: IO[bytes]) -> Iterator[bytes]:
    """The contents of ``f`` in 1 MiB chunks (hashing and downloads never hold a whole file)."""
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return
        yield chunk


def _gzip_failure(path: Path, exc: BaseException, expected: str) -> DatasetCorruptError:
    return DatasetCorruptError(
        f"{path}: cannot decompress ({type(exc).__name__}: {exc}); the gzip stream is truncated "
        f"or corrupted. Expected payload {expected}. Delete the file and fetch it again."
    )


def file_digest(
    path: Path, algo: HashAlgo, *, raw: bool = False, expected: str = "(see the checksum table)"
) -> tuple[str, int]:
    """Digest and length of the payload of ``path`` (decompressed unless ``raw``), cached.

    Raises ``DatasetCorruptError`` (quoting ``expected``) when a gzip stream cannot be
    decompressed.
    """
    key = _cache_key(path, algo, raw)
    hit = _DIGEST_CACHE.get(key)
    if hit is not None:
        return hit
    h = hashlib.new(algo)
    n = 0
    try:
        with path.open("rb") if raw else _open_payload(path) as f:
            for chunk in iter_chunks(f):
                h.update(chunk)
                n += len(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _gzip_failure(path, exc, expected) from exc
    result = (h.hexdigest(), n)
    _DIGEST_CACHE[key] = result
    return result


def _expected_text(spec: FileSpec) -> str:
    size = f", {spec.size} bytes" if spec.size is not None else ""
    return f"{spec.algo} {spec.digest}{size}"


def _mismatch(path: Path, spec: FileSpec, digest: str, size: int, dataset: str) -> str:
    what = "decompressed payload" if is_gzip(path) else "file"
    return (
        f"{path}: checksum mismatch for {spec.name} ({dataset}): expected {spec.algo} "
        f"{spec.digest}"
        + (f" ({spec.size} bytes)" if spec.size is not None else "")
        + f" of the {what}, found {digest} ({size} bytes). The file is corrupted, truncated or "
        f"a different version; delete it and run `ddc data fetch {dataset}`."
    )


def verify_file(path: Path, spec: FileSpec, dataset: str) -> None:
    """Raise ``DatasetCorruptError`` unless ``path``'s payload matches ``spec``.

    The size check comes first for uncompressed files: a truncated raw file is reported without
    hashing it.
    """
    if spec.size is not None and not is_gzip(path):
        actual = path.stat().st_size
        if actual != spec.size:
            raise DatasetCorruptError(
                f"{path}: wrong size for {spec.name} ({dataset}): expected {spec.size} bytes "
                f"({spec.algo} {spec.digest}), found {actual} bytes. The file is truncated or "
                f"corrupted; delete it and run `ddc data fetch {dataset}`."
            )
    digest, size = file_digest(path, spec.algo, expected=_expected_text(spec))
    if digest != spec.digest or (spec.size is not None and size != spec.size):
        raise DatasetCorruptError(_mismatch(path, spec, digest, size, dataset))


def read_verified(path: Path, spec: FileSpec, dataset: str) -> bytes:
    """Read ``path``'s payload (decompressing gzip) and verify it against ``spec``.

    The digest is computed from the bytes already in memory (one read, one decompression) unless
    this process verified the same unchanged file before.
    """
    key = _cache_key(path, spec.algo, False)
    try:
        with _open_payload(path) as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _gzip_failure(path, exc, _expected_text(spec)) from exc
    hit = _DIGEST_CACHE.get(key)
    if hit is None:
        hit = (hashlib.new(spec.algo, data).hexdigest(), len(data))
        _DIGEST_CACHE[key] = hit
    digest, size = hit
    if digest != spec.digest or (spec.size is not None and size != spec.size):
        raise DatasetCorruptError(_mismatch(path, spec, digest, size, dataset))
    return data


def verify_archive(path: Path, archive: ArchiveSpec, dataset: str) -> None:
    """Raise ``DatasetCorruptError`` unless the archive's own md5 matches."""
    digest, size = file_digest(path, "md5", raw=True, expected=f"md5 {archive.md5}")
    if digest != archive.md5:
        raise DatasetCorruptError(
            f"{path}: checksum mismatch for archive {archive.name} ({dataset}): expected md5 "
            f"{archive.md5}, found {digest} ({size} bytes). The archive is corrupted or "
            f"truncated; delete it and run `ddc data fetch {dataset}`."
        )
