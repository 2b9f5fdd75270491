"""Entry points: ``load_dataset`` for training code, status/fetch/verify for ``ddc data``.

Every dataset, the built-ins included, is a loader registered with
:func:`~.registry.register_dataset`; ``load_dataset`` finds it by name and checks what it
returns (:func:`check_bundle`)."""

from __future__ import annotations

from pathlib import Path

import torch

from . import local  # noqa: F401  (registers the npz: and folder: loaders)
from .base import (
    DatasetBundle,
    DatasetError,
    DatasetInfo,
    FileStatus,
    Split,
    resolve_files,
    status_of_files,
)
from .cifar import load_cifar
from .idx import load_idx_dataset
from .norb import load_smallnorb
from .registry import (
    DATASETS,
    NORB_DEFAULT_IMAGE_SIZE,
    DatasetRequest,
    find_loader,
    register_dataset,
)
from .small import digits_source, load_digits_dataset, load_synthetic_2d
from .text import load_wordlang

__all__ = [
    "check_bundle",
    "dataset_status",
    "fetch_dataset",
    "get_info",
    "load_dataset",
    "verify_dataset",
]


def get_info(name: str) -> DatasetInfo:
    """The table entry for ``name``; ``DatasetError`` listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


# The built-in datasets, registered like a plugin's. Only smallnorb resizes at load time.
def _idx(request: DatasetRequest) -> DatasetBundle:
    request.require_native_size(28)
    return load_idx_dataset(DATASETS[request.name], request.data_dir, download=request.download)


def _cifar(request: DatasetRequest) -> DatasetBundle:
    request.require_native_size(32)
    return load_cifar(DATASETS[request.name], request.data_dir, download=request.download)


register_dataset("mnist", info=DATASETS["mnist"])(_idx)
register_dataset("fashion-mnist", info=DATASETS["fashion-mnist"])(_idx)
register_dataset("cifar10", info=DATASETS["cifar10"])(_cifar)
register_dataset("cifar100", info=DATASETS["cifar100"])(_cifar)


@register_dataset("smallnorb", info=DATASETS["smallnorb"])
def _smallnorb(request: DatasetRequest) -> DatasetBundle:
    size = NORB_DEFAULT_IMAGE_SIZE if request.image_size is None else request.image_size
    info = DATASETS["smallnorb"]
    return load_smallnorb(info, request.data_dir, download=request.download, image_size=size)


@register_dataset("wordlang", info=DATASETS["wordlang"], tokens=True)
def _wordlang(request: DatasetRequest) -> DatasetBundle:
    request.require_native_size(None)
    return load_wordlang(DATASETS["wordlang"], request.data_dir, download=request.download)


@register_dataset("digits", info=DATASETS["digits"])
def _digits(request: DatasetRequest) -> DatasetBundle:
    request.require_native_size(8)
    return load_digits_dataset(DATASETS["digits"])


@register_dataset("synthetic-2d", info=DATASETS["synthetic-2d"])
def _synthetic_2d(request: DatasetRequest) -> DatasetBundle:
    request.require_native_size(None)
    return load_synthetic_2d(DATASETS["synthetic-2d"])


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    image_size: int | None = None,
) -> DatasetBundle:
    """Load a dataset into memory, verified.

    ``name``: a registered dataset (``ddc list``; your own with ``register_dataset``), or
    your own files as ``npz:PATH`` or ``folder:PATH`` (see :mod:`.local`).

    Files are searched in ``data_dir`` (the folder itself, ``<data_dir>/<name>`` and the usual
    sub-folder names), then the system locations, then ``~/.cache/dynamic_dropconnect/<name>``,
    then downloaded from the official mirror (into ``data_dir`` if given, else the cache) unless
    ``download`` is false or ``DDC_OFFLINE=1``.

    ``image_size``: only for ``smallnorb``, whose images are downsampled at load time (None means
    the default, 32; 96 keeps full resolution). Other datasets are kept at their native size:
    resize per batch with ``transforms.resize`` instead (a 224-px CIFAR would not fit in memory).

    What every loader returns is checked by :func:`check_bundle` (the dtype rules).

    Raises ``DatasetMissingError`` (with the ways to obtain the data) or ``DatasetCorruptError``
    (naming the file and the expected checksum); both are ``DatasetError``.
    """
    loader, argument = find_loader(name)
    request = DatasetRequest(
        name=name,
        argument=argument,
        data_dir=None if data_dir is None else Path(data_dir),
        download=download,
        image_size=image_size,
    )
    bundle = loader.load(request)
    if not isinstance(bundle, DatasetBundle):
        raise DatasetError(
            f"dataset {name!r}: its loader {loader.load!r} returned {type(bundle).__name__}, "
            "not a DatasetBundle"
        )
    return check_bundle(bundle, name, tokens=loader.tokens)


#: Input dtypes taken as images: uint8 (0-255) or float (any scale: inputs are normalised
#: with the training split's statistics); float16/float64 are used as float32.
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_inputs(x: torch.Tensor, what: str, tokens: bool, num_classes: int) -> torch.Tensor:
    if tokens:
        if x.dtype == torch.bool or torch.is_floating_point(x) or x.is_complex():
            raise DatasetError(
                f"{what} has dtype {x.dtype}; a token dataset needs integer token ids "
                "(int64, int32, ... >= 0; 0 pads)"
            )
        if x.dim() != 2:
            raise DatasetError(f"{what} has shape {tuple(x.shape)}; token ids must be (N, length)")
        if x.numel() and int(x.min()) < 0:
            raise DatasetError(f"{what} has token id {int(x.min())}; ids must be >= 0 (0 pads)")
        return x.long()
    if x.dtype in _FLOATS:
        if not bool(torch.isfinite(x).all()):
            raise DatasetError(f"{what} holds NaN or infinite values; inputs must be finite")
        x = x.float()
        if num_classes == 0:  # regression features (synthetic-2d): any shape
            return x
    elif x.dtype != torch.uint8:
        hint = ""
        if x.dtype != torch.bool and not x.is_complex() and x.numel():
            low, high = int(x.min()), int(x.max())
            if low >= 0 and high <= 255:
                hint = f" (its values are {low}..{high}: pixels? convert with .astype(np.uint8))"
        raise DatasetError(
            f"{what} has dtype {x.dtype}{hint}; images must be uint8 (0-255) or float "
            "(float16/32/64); integer token ids need a dataset registered with tokens=True"
        )
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise DatasetError(
            f"{what} has shape {tuple(x.shape)}; images must be (N, C, H, W) with H == W "
            "(channels first: transpose a channels-last (N, H, W, C) array with "
            "x.transpose(0, 3, 1, 2))"
        )
    return x


def _check_labels(y: torch.Tensor, what: str, num_classes: int) -> torch.Tensor:
    if y.dim() != 1:
        raise DatasetError(f"{what} has shape {tuple(y.shape)}; labels must be (N,)")
    if num_classes == 0:  # regression targets
        if y.dtype not in _FLOATS:
            raise DatasetError(f"{what} has dtype {y.dtype}; regression targets must be float")
        return y.float()
    if y.dtype == torch.bool or torch.is_floating_point(y) or y.is_complex():
        raise DatasetError(
            f"{what} has dtype {y.dtype}; class labels must be integers 0..{num_classes - 1}"
        )
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DatasetError(
            f"{what} holds label {int(y.min()) if int(y.min()) < 0 else int(y.max())}; with "
            f"num_classes={num_classes} labels must be in 0..{num_classes - 1}"
        )
    return y.long()


def check_bundle(bundle: DatasetBundle, name: str, *, tokens: bool = False) -> DatasetBundle:
    """``bundle`` checked against the input rules, as the training code will read it.

    Inputs ``x``: ``uint8`` images (0-255) or float images (any finite scale; used as
    float32), shaped ``(N, C, H, W)`` with ``H == W``; for a dataset registered with
    ``tokens=True``: integer token ids ``(N, length)``, ``>= 0`` (used as int64). Any other
    integer dtype is an error, never guessed to be pixels or ids. Labels ``y``: integers in
    ``0..num_classes-1`` (used as int64); ``num_classes == 0``: float regression targets (and
    float inputs of any shape). Train and test agree in dtype and example shape. Returns the
    bundle with the dtypes the training code uses; ``DatasetError`` naming the bad value.
    """
    if not isinstance(bundle.num_classes, int) or bundle.num_classes < 0:
        raise DatasetError(
            f"dataset {name!r}: num_classes must be a whole number >= 1 (0: regression), got "
            f"{bundle.num_classes!r}"
        )
    splits = {}
    for part in ("train", "test"):
        split = getattr(bundle, part)
        if not isinstance(split, Split):
            raise DatasetError(f"dataset {name!r}: {part} must be a Split, got {split!r}")
        x = _check_inputs(split.x, f"dataset {name!r}: {part} x", tokens, bundle.num_classes)
        y = _check_labels(split.y, f"dataset {name!r}: {part} y", bundle.num_classes)
        splits[part] = Split(x, y)
    train, test = splits["train"].x, splits["test"].x
    if train.dtype != test.dtype or (train.shape[1:] != test.shape[1:] and not tokens):
        raise DatasetError(
            f"dataset {name!r}: train x is {train.dtype} {tuple(train.shape[1:])} per example "
            f"but test x is {test.dtype} {tuple(test.shape[1:])}; they must agree"
        )
    unchanged = all(
        splits[p].x is getattr(bundle, p).x and splits[p].y is getattr(bundle, p).y for p in splits
    )
    if unchanged:
        return bundle
    return DatasetBundle(
        name=bundle.name,
        train=splits["train"],
        test=splits["test"],
        num_classes=bundle.num_classes,
        source=bundle.source,
    )


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
