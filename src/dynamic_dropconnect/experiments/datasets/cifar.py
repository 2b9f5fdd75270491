"""CIFAR-10 and CIFAR-100 from the official "python version" pickles.

The files are Python-2 pickles of a dict with ``data`` (N x 3072 uint8, channel-major rows:
1024 red, 1024 green, 1024 blue) and ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100: we use
the 100 fine classes, as the paper). They are read from the extracted folder
(``cifar-10-batches-py/`` / ``cifar-100-python/``) or, when only the downloaded archive is there,
straight out of the ``.tar.gz`` without extracting it.

Unpickling runs code chosen by the file's author, so a pickle is only ever unpickled after its
md5 (or its archive's md5) has matched the official value.
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import (
    DatasetBundle,
    DatasetCorruptError,
    DatasetInfo,
    FileSpec,
    Split,
    read_verified,
    resolve_files,
)

__all__ = ["load_cifar", "parse_cifar_batch"]

_CIFAR_TRAIN = {"cifar10": [f"data_batch_{i}" for i in range(1, 6)], "cifar100": ["train"]}
_CIFAR_TEST = {"cifar10": ["test_batch"], "cifar100": ["test"]}
_LABEL_KEY = {"cifar10": "labels", "cifar100": "fine_labels"}


def _get(d: dict[Any, Any], key: str) -> Any:
    """Python-2 pickles load with bytes keys under ``encoding='bytes'``; accept str keys too."""
    if key.encode() in d:
        return d[key.encode()]
    return d[key]


def parse_cifar_batch(
    data: bytes, label_key: str, where: str, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one verified CIFAR pickle into uint8 ``(N, 3, 32, 32)`` images and int64 labels."""
    try:
        d = pickle.loads(data, encoding="bytes")
        x = np.asarray(_get(d, "data"), dtype=np.uint8)
        y = np.asarray(_get(d, label_key), dtype=np.int64)
    except Exception as exc:  # malformed pickle/dict: report the file, whatever the cause
        raise DatasetCorruptError(
            f"{where}: not a CIFAR batch ({type(exc).__name__}: {exc})"
        ) from exc
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (x.shape[0],):
        raise DatasetCorruptError(
            f"{where}: expected data (N, 3072) and {label_key} (N,), found {x.shape} and {y.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DatasetCorruptError(f"{where}: labels outside [0, {num_classes})")
    images = torch.from_numpy(x.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(y)


def _read_from_archive(
    archive: Path, member_dir: str, specs: dict[str, FileSpec], dataset: str
) -> dict[str, bytes]:
    """Read the wanted members out of the (already verified) archive and check their md5 too."""
    wanted = {f"{member_dir}/{name}": name for name in specs}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or not member.isfile():
                    continue
                f = tar.extractfile(member)
                if f is None:
                    continue
                out[name] = f.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetCorruptError(f"{archive}: cannot read the archive ({exc})") from exc
    missing = sorted(set(specs) - set(out))
    if missing:
        raise DatasetCorruptError(
            f"{archive}: archive lacks {', '.join(f'{member_dir}/{m}' for m in missing)}"
        )
    for name, data in out.items():
        spec = specs[name]
        digest = hashlib.new(spec.algo, data).hexdigest()
        if digest != spec.digest:
            raise DatasetCorruptError(
                f"{archive}::{member_dir}/{name}: checksum mismatch for {name} ({dataset}): "
                f"expected {spec.algo} {spec.digest}, found {digest}"
            )
    return out


def load_cifar(
    info: DatasetInfo, data_dir: str | Path | None = None, *, download: bool = True
) -> DatasetBundle:
    """Load CIFAR-10 / CIFAR-100 (fine labels): images uint8 ``(N, 3, 32, 32)``, labels int64."""
    if info.archive is None or info.name not in _LABEL_KEY:
        raise ValueError(f"load_cifar: {info.name!r} is not a CIFAR dataset")
    resolved = resolve_files(info, data_dir, download=download, verify=False)
    specs = {s.name: s for s in info.files}
    if resolved.archive is not None:
        raw = _read_from_archive(resolved.archive, info.archive.member_dir, specs, info.name)
        where = {n: f"{resolved.archive}::{info.archive.member_dir}/{n}" for n in specs}
    else:
        raw = {n: read_verified(resolved.files[n], s, info.name) for n, s in specs.items()}
        where = {n: str(resolved.files[n]) for n in specs}

    label_key = _LABEL_KEY[info.name]

    def split(names: list[str]) -> Split:
        parts = [parse_cifar_batch(raw[n], label_key, where[n], info.num_classes) for n in names]
        return Split(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    return DatasetBundle(
        name=info.name,
        train=split(_CIFAR_TRAIN[info.name]),
        test=split(_CIFAR_TEST[info.name]),
        num_classes=info.num_classes,
        source=resolved.source,
    )
