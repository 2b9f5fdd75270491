"""MNIST and Fashion-MNIST: the idx format (LeCun), raw or gzipped.

idx layout: two zero bytes, a type code (0x08 = uint8), the rank, then one big-endian int32 per
dimension, then the data in C order. The header is checked strictly and the byte count must match
the dims exactly, so a truncated file fails with a shape message even before its checksum would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import (
    DatasetBundle,
    DatasetCorruptError,
    DatasetInfo,
    Split,
    read_verified,
    resolve_files,
)

__all__ = ["load_idx_dataset", "parse_idx"]

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """Decode an idx payload into an array; ``DatasetCorruptError`` naming ``path`` if malformed."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetCorruptError(
            f"{path}: not an idx file (expected magic 00 00 <type> <rank>, found "
            f"{data[:4].hex(' ') or 'an empty file'})"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES or ndim == 0:
        raise DatasetCorruptError(f"{path}: unsupported idx type 0x{code:02x} / rank {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetCorruptError(f"{path}: idx header truncated ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetCorruptError(
            f"{path}: idx header says shape {dims} ({expected} bytes), found {len(data)} bytes: "
            "the file is truncated or corrupted"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _images(arr: np.ndarray, path: Path) -> torch.Tensor:
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise DatasetCorruptError(f"{path}: expected uint8 images (N, H, W), found {arr.shape}")
    return torch.from_numpy(arr.copy()).unsqueeze(1)  # (N, 1, H, W), writable copy


def _labels(arr: np.ndarray, path: Path, num_classes: int) -> torch.Tensor:
    if arr.ndim != 1:
        raise DatasetCorruptError(f"{path}: expected labels of shape (N,), found {arr.shape}")
    y = torch.from_numpy(arr.astype(np.int64))
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DatasetCorruptError(
            f"{path}: labels outside [0, {num_classes}): min {int(y.min())}, max {int(y.max())}"
        )
    return y


def load_idx_dataset(
    info: DatasetInfo, data_dir: str | Path | None = None, *, download: bool = True
) -> DatasetBundle:
    """Load an MNIST-style dataset: images uint8 ``(N, 1, 28, 28)``, labels int64."""
    resolved = resolve_files(info, data_dir, download=download, verify=False)
    arrays: dict[str, torch.Tensor] = {}
    for spec in info.files:
        path = resolved.files[spec.name]
        arr = parse_idx(read_verified(path, spec, info.name), path)
        if "labels" in spec.name:
            arrays[spec.name] = _labels(arr, path, info.num_classes)
        else:
            arrays[spec.name] = _images(arr, path)

    def split(prefix: str) -> Split:
        x = arrays[f"{prefix}-images-idx3-ubyte"]
        y = arrays[f"{prefix}-labels-idx1-ubyte"]
        if x.shape[0] != y.shape[0]:
            raise DatasetCorruptError(
                f"{info.name} {prefix}: {x.shape[0]} images but {y.shape[0]} labels"
            )
        return Split(x, y)

    return DatasetBundle(
        name=info.name,
        train=split("train"),
        test=split("t10k"),
        num_classes=info.num_classes,
        source=resolved.source,
    )
