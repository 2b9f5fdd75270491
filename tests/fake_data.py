"""Writers for tiny dataset files in the real on-disk formats, and checksum-table patching.

The real CIFAR / NORB files cannot be had offline here, so the loaders are exercised on small
files written byte for byte in the official formats (idx, CIFAR python pickles and their tar.gz,
NORB binary matrices). ``patch_checksums`` swaps the checksum table entries for the fake files'
own digests, so the verification code path is the production one.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dynamic_dropconnect.experiments.datasets import DATASETS, FileSpec

NORB_BYTE_MAGIC = 0x1E3D4C55
NORB_INT_MAGIC = 0x1E3D4C54


def idx_bytes(arr: np.ndarray) -> bytes:
    """An idx (uint8) payload: 00 00 08 <rank>, big-endian dims, data."""
    a = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.tobytes()


def norb_bytes(arr: np.ndarray) -> bytes:
    """A NORB binary matrix: magic, rank, max(3, rank) little-endian int32 dims, data."""
    if arr.dtype == np.uint8:
        magic = NORB_BYTE_MAGIC
        data = np.ascontiguousarray(arr).tobytes()
    else:
        magic = NORB_INT_MAGIC
        data = np.ascontiguousarray(arr, dtype="<i4").tobytes()
    dims = list(arr.shape) + [1] * max(0, 3 - arr.ndim)
    return struct.pack(f"<ii{len(dims)}i", magic, arr.ndim, *dims) + data


def cifar_pickle(x: np.ndarray, labels: np.ndarray, label_key: str) -> bytes:
    """A CIFAR batch as the official files hold it once loaded with encoding='bytes'."""
    d = {
        b"batch_label": b"fake batch",
        b"data": np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.uint8),
        label_key.encode(): [int(v) for v in labels],
        b"filenames": [f"img{i}.png".encode() for i in range(len(x))],
    }
    if label_key == "fine_labels":
        d[b"coarse_labels"] = [int(v) // 5 for v in labels]
    return pickle.dumps(d, protocol=2)


def write(path: Path, payload: bytes, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload, mtime=0))
    else:
        path.write_bytes(payload)
    return path


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def patch_checksums(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    payloads: dict[str, bytes],
    *,
    archive_bytes: bytes | None = None,
    keep_system_dirs: bool = False,
    urls: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """Point ``DATASETS[name]``'s checksums (and sizes) at the fake payloads.

    System locations are dropped unless ``keep_system_dirs``, so the real files on this machine
    can never satisfy a test meant for the fake ones.
    """
    info = DATASETS[name]
    files: list[FileSpec] = []
    for spec in info.files:
        data = payloads[spec.name]
        files.append(
            dataclasses.replace(
                spec,
                digest=hashlib.new(spec.algo, data).hexdigest(),
                size=len(data) if spec.size is not None else None,
                urls=(urls or {}).get(spec.name, spec.urls),
            )
        )
    archive = info.archive
    if archive is not None and archive_bytes is not None:
        archive = dataclasses.replace(archive, md5=hashlib.md5(archive_bytes).hexdigest())
    new = dataclasses.replace(
        info,
        files=tuple(files),
        archive=archive,
        system_dirs=info.system_dirs if keep_system_dirs else (),
    )
    monkeypatch.setitem(DATASETS, name, new)
