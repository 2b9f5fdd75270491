"""Finding a dataset's files, downloading the missing ones, and reporting their state.

Downloads go to a temporary file in the target folder, are verified, then ``os.replace``-d into
place, so an interrupted download never leaves a half file under the final name.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from .checksums import clear_verification_cache, iter_chunks, verify_archive, verify_file
from .errors import DatasetError, DatasetMissingError
from .locations import cache_dir, candidate_dirs, find_archive, find_file, offline
from .specs import DatasetInfo, FileSpec, FileStatus, Resolved

__all__ = ["DOWNLOAD_TIMEOUT_S", "resolve_files", "status_of_files"]

#: Seconds a mirror may stay silent before the next one is tried (a dead host fails fast).
DOWNLOAD_TIMEOUT_S = 60.0


# ------------------------------------------------------------------------------------ downloads
def _download_to(url: str, target: Path) -> Path:
    """Stream ``url`` into a temporary file next to ``target`` and return the temp path.

    The caller verifies it and ``os.replace``-s it into place (atomic on one filesystem).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp,
        ):
            for chunk in iter_chunks(resp):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _try_download(
    urls: Iterable[str],
    target_dir: Path,
    check: Callable[[Path], None],
    errors: list[str],
    dead_hosts: set[str],
) -> Path | None:
    """Try each mirror; ``check(tmp_path)`` must raise ``DatasetError`` on a bad payload.

    A host that could not be reached at all (not an HTTP error) goes into ``dead_hosts`` and is
    not tried again for the other files: offline, one timeout instead of one per file.
    """
    for url in urls:
        host = urllib.parse.urlsplit(url).netloc
        if host in dead_hosts:
            errors.append(f"{url}: skipped, {host} was unreachable")
            continue
        dest = target_dir / url.rsplit("/", 1)[-1]
        try:
            tmp = _download_to(url, dest)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if not isinstance(exc, urllib.error.HTTPError):
                dead_hosts.add(host)
            errors.append(f"{url}: {exc}")
            continue
        try:
            check(tmp)
        except DatasetError as exc:
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: downloaded file failed verification: {exc}")
            continue
        os.replace(tmp, dest)
        clear_verification_cache()
        return dest
    return None


# ---------------------------------------------------------------------------------- resolution
def _missing_message(
    info: DatasetInfo,
    dirs: list[Path],
    missing: list[str],
    download_errors: list[str],
    download: bool,
) -> str:
    lines = [
        f"Dataset {info.name!r} not found: missing {', '.join(missing)}.",
        "Looked in (in this order):",
        *(f"  - {d}" for d in dirs),
    ]
    if info.archive is not None:
        lines.append(f"  (also for the archive {info.archive.name} in each of these)")
    lines.append("Ways to obtain it:")
    lines.extend(f"  - {w}" for w in info.how_to_obtain)
    lines.append(f"  - run `ddc data fetch {info.name}` (downloads into {cache_dir() / info.name})")
    lines.append("  - or pass --data-dir pointing at a folder holding the files")
    if not download:
        lines.append("Download was disabled (download=False).")
    elif offline():
        lines.append("Download skipped: DDC_OFFLINE is set.")
    if download_errors:
        lines.append("Download attempts failed (no network?):")
        lines.extend(f"  - {e}" for e in download_errors)
    return "\n".join(lines)


def resolve_files(
    info: DatasetInfo,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    verify: bool = True,
) -> Resolved:
    """Find (and if needed download) ``info``'s files; verify them; return where they are.

    Order: explicit ``data_dir`` (itself, ``<data_dir>/<name>``, ``info.folder_names``), the
    system locations, the user cache, then the official mirrors (into ``data_dir`` if given,
    else the user cache). Individual files win over the archive when all are present.
    ``verify=False`` skips hashing the individual files found on disk: for loaders that read
    them through ``read_verified`` anyway (one decompression instead of two). Archives and
    downloads are always verified.
    """
    dirs = candidate_dirs(info, data_dir)
    found: dict[str, Path] = {}
    missing: list[FileSpec] = []
    for spec in info.files:
        p = find_file(spec, dirs)
        if p is None:
            missing.append(spec)
        else:
            if verify:
                verify_file(p, spec, info.name)
            found[spec.name] = p
    if not missing:
        return Resolved(files=found)

    if info.archive is not None:
        arch = find_archive(info.archive, dirs)
        if arch is not None:
            verify_archive(arch, info.archive, info.name)
            return Resolved(archive=arch)

    errors: list[str] = []
    dead_hosts: set[str] = set()
    if download and not offline():
        target = Path(data_dir).expanduser() if data_dir is not None else cache_dir() / info.name
        if info.archive is not None:
            archive = info.archive
            got = _try_download(
                archive.urls,
                target,
                lambda t: verify_archive(t, archive, info.name),
                errors,
                dead_hosts,
            )
            if got is not None:
                return Resolved(archive=got)
        else:
            still: list[FileSpec] = []
            for spec in missing:
                got = _try_download(
                    spec.urls,
                    target,
                    lambda t, s=spec: verify_file(t, s, info.name),
                    errors,
                    dead_hosts,
                )
                if got is None:
                    still.append(spec)
                else:
                    found[spec.name] = got
            if not still:
                return Resolved(files=found)
            missing = still
    raise DatasetMissingError(
        _missing_message(info, dirs, [s.name for s in missing], errors, download)
    )


def status_of_files(info: DatasetInfo, data_dir: str | Path | None = None) -> list[FileStatus]:
    """Per-file status without downloading and without raising for missing/corrupt files."""
    dirs = candidate_dirs(info, data_dir)
    out: list[FileStatus] = []
    for spec in info.files:
        p = find_file(spec, dirs)
        if p is None:
            out.append(FileStatus(spec.name, None, "missing", "not found"))
            continue
        try:
            verify_file(p, spec, info.name)
        except DatasetError as exc:
            out.append(FileStatus(spec.name, p, "corrupt", str(exc)))
        else:
            out.append(FileStatus(spec.name, p, "ok", f"{spec.algo} {spec.digest}"))
    if info.archive is not None:
        arch = find_archive(info.archive, dirs)
        if arch is None and all(s.ok for s in out):
            pass  # every file is present on its own: the archive is not needed
        elif arch is None:
            out.append(FileStatus(info.archive.name, None, "missing", "archive not found"))
        else:
            try:
                verify_archive(arch, info.archive, info.name)
            except DatasetError as exc:
                out.append(FileStatus(info.archive.name, arch, "corrupt", str(exc)))
            else:
                out.append(FileStatus(info.archive.name, arch, "ok", f"md5 {info.archive.md5}"))
                # files only present inside the archive are usable: report them as ok
                out = [
                    FileStatus(s.name, arch, "ok", f"read from archive {arch.name}")
                    if s.status == "missing" and s.name != info.archive.name
                    else s
                    for s in out
                ]
    return out
