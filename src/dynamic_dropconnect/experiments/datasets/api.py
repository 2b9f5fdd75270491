"""Entry points: ``load_dataset`` for training code, status/fetch/verify for ``ddc data``."""

from __future__ import annotations

from pathlib import Path

from .base import (
    DatasetBundle,
    DatasetError,
    DatasetInfo,
    FileStatus,
    resolve_files,
    status_of_files,
)
from .cifar import load_cifar
from .idx import load_idx_dataset
from .norb import load_smallnorb
from .registry import DATASETS, NORB_DEFAULT_IMAGE_SIZE
from .small import digits_source, load_digits_dataset, load_synthetic_2d
from .text import load_wordlang

__all__ = ["dataset_status", "fetch_dataset", "get_info", "load_dataset", "verify_dataset"]

_NATIVE_SIZE = {"mnist": 28, "fashion-mnist": 28, "cifar10": 32, "cifar100": 32, "digits": 8}


def get_info(name: str) -> DatasetInfo:
    """The table entry for ``name``; ``DatasetError`` listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    image_size: int | None = None,
) -> DatasetBundle:
    """Load a dataset into memory, verified.

    Files are searched in ``data_dir`` (the folder itself, ``<data_dir>/<name>`` and the usual
    sub-folder names), then the system locations, then ``~/.cache/dynamic_dropconnect/<name>``,
    then downloaded from the official mirror (into ``data_dir`` if given, else the cache) unless
    ``download`` is false or ``DDC_OFFLINE=1``.

    ``image_size``: only for ``smallnorb``, whose images are downsampled at load time (None means
    the default, 32; 96 keeps full resolution). Other datasets are kept at their native size:
    resize per batch with ``transforms.resize`` instead (a 224-px CIFAR would not fit in memory).

    Raises ``DatasetMissingError`` (with the ways to obtain the data) or ``DatasetCorruptError``
    (naming the file and the expected checksum); both are ``DatasetError``.
    """
    info = get_info(name)
    if name != "smallnorb" and image_size is not None and image_size != _NATIVE_SIZE.get(name):
        raise ValueError(
            f"image_size is only supported for smallnorb (got {image_size} for {name!r}); "
            "use transforms.resize on each batch"
        )
    if name in ("mnist", "fashion-mnist"):
        return load_idx_dataset(info, data_dir, download=download)
    if name in ("cifar10", "cifar100"):
        return load_cifar(info, data_dir, download=download)
    if name == "smallnorb":
        size = NORB_DEFAULT_IMAGE_SIZE if image_size is None else image_size
        return load_smallnorb(info, data_dir, download=download, image_size=size)
    if name == "wordlang":
        return load_wordlang(info, data_dir, download=download)
    if name == "digits":
        return load_digits_dataset(info)
    if name == "synthetic-2d":
        return load_synthetic_2d(info)
    raise DatasetError(f"no loader for dataset {name!r}")  # table entry without a loader


def dataset_status(name: str, data_dir: str | Path | None = None) -> list[FileStatus]:
    """Per-file status (ok / missing / corrupt) without downloading; never raises for data.

    Files are fully verified (hashes cached per process by path, size and mtime).
    """
    info = get_info(name)
    if info.kind == "generated":
        return [FileStatus(name, None, "ok", "generated on the fly, no files")]
    if info.kind == "bundled":
        try:
            src = digits_source()
        except DatasetError as exc:
            return [FileStatus("digits.csv.gz", None, "missing", str(exc))]
        if src.is_file():
            return [FileStatus(src.name, src, "ok", "bundled with scikit-learn")]
        return [FileStatus(src.name, None, "missing", f"not found at {src}")]
    return status_of_files(info, data_dir)


def fetch_dataset(name: str, data_dir: str | Path | None = None) -> Path:
    """Make sure the dataset is available and verified, downloading what is missing.

    Returns where it is: the folder holding the files (or the archive), ``digits``: the file
    bundled with scikit-learn, ``synthetic-2d``: nothing is stored, the generating module's path.
    """
    info = get_info(name)
    if info.kind == "generated":
        return Path(__file__).with_name("small.py")
    if info.kind == "bundled":
        return digits_source()
    resolved = resolve_files(info, data_dir, download=True)
    if resolved.archive is not None:
        return resolved.archive.parent
    # the folder of the first file (all files share it unless they were spread over locations)
    return next(iter(resolved.files.values())).parent


def verify_dataset(name: str, data_dir: str | Path | None = None) -> list[FileStatus]:
    """Verify every file; return the statuses, or raise ``DatasetError`` summarising failures."""
    statuses = dataset_status(name, data_dir)
    bad = [s for s in statuses if not s.ok]
    if bad:
        info = get_info(name)
        lines = [f"dataset {name!r} failed verification:"]
        lines.extend(f"  - {s.name}: {s.status}: {s.message}" for s in bad)
        if any(s.status == "missing" for s in bad) and info.how_to_obtain:
            lines.append("Ways to obtain it:")
            lines.extend(f"  - {w}" for w in info.how_to_obtain)
            lines.append(f"  - `ddc data fetch {name}`")
        raise DatasetError("\n".join(lines))
    return statuses
