"""Your own data from files, with no code: ``npz:PATH`` and ``folder:PATH`` dataset names.

``npz:PATH`` — one NumPy ``.npz`` file (``np.savez``) with the arrays ``x_train``,
``y_train``, ``x_test``, ``y_test`` and, optionally, ``num_classes`` (a whole number; by
default ``1 + the largest label``). Inputs:

- ``uint8`` ``(N, C, H, W)`` or ``(N, H, W)`` (one channel): images, values 0-255;
- float ``(N, C, H, W)`` or ``(N, H, W)``: images, any finite scale (inputs are normalised
  with the training split's statistics; used as float32);
- any other dtype (``int64`` pixels included) is an error that says how to convert: an
  integer array is never guessed to be pixels or token ids. Token ids need a loader
  registered with ``register_dataset(..., tokens=True)`` (docs/suite.md).

Images are channels first and square (``H == W``). Labels: integers ``0..num_classes-1``.

``folder:PATH`` — ``PATH/train/<class>/*.png|*.jpg|*.jpeg`` and ``PATH/test/<class>/...``,
one sub-folder per class (labels in sorted order of the folder names; ``test`` may lack a
class, not add one), read with Pillow. Every image has the same square size. Grey images
(Pillow modes ``1``, ``L``, ``LA``) give one channel; when any image is in colour (``RGB``,
``RGBA``, ``P``, ``PA``, ``CMYK``, ``YCbCr``) every image is read as RGB, three channels.
Alpha is dropped. Other modes (16-bit, float) are an error naming the file. Files whose name
starts with ``.`` are skipped; any other file is an error.

A relative ``PATH`` is looked up in ``--data-dir`` first (when given), then in the current
directory. No checksum is checked (the files are yours); the run's data source records the
file's sha256 (npz) or the image counts (folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import DatasetBundle, DatasetError, DatasetMissingError, Split, file_digest
from .registry import DatasetRequest, register_dataset

__all__ = ["IMAGE_SUFFIXES", "load_folder", "load_npz"]

#: The image files ``folder:PATH`` reads (case does not matter).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GREY_MODES = ("1", "L", "LA")
_COLOUR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr")
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _locate(request: DatasetRequest, kind: str) -> Path:
    """The file or folder ``request.argument`` names: in ``data_dir`` first, then as given."""
    given = Path(request.argument).expanduser()
    tried = []
    if not given.is_absolute() and request.data_dir is not None:
        tried.append(Path(request.data_dir).expanduser() / given)
    tried.append(given)
    for path in tried:
        if path.exists():
            return path
    raise DatasetMissingError(
        f"dataset {request.name!r}: no {kind} at {' or '.join(str(p) for p in tried)}"
    )


def _images(x: np.ndarray, what: str) -> torch.Tensor:
    """``x`` as images per the rules in the module docstring, ``(N, C, H, W)``."""
    if x.dtype == np.uint8 or x.dtype.kind == "f":
        if x.ndim == 3:  # (N, H, W): one channel
            x = x[:, None]
        if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
            raise DatasetError(
                f"{what} has shape {x.shape}; images must be (N, C, H, W) or (N, H, W) with "
                "H == W (channels first: transpose a channels-last array with "
                "x.transpose(0, 3, 1, 2))"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        return tensor if x.dtype == np.uint8 else tensor.float()
    hint = ""
    if x.dtype.kind in "iu" and x.size and x.min() >= 0 and x.max() <= 255:
        hint = f" (values {x.min()}..{x.max()}: if these are pixels, save x.astype(np.uint8))"
    raise DatasetError(
        f"{what} has dtype {x.dtype}{hint}; images must be uint8 (0-255) or float "
        "(float16/32/64). Integer token ids need a loader registered with "
        "register_dataset(..., tokens=True), see docs/suite.md"
    )


def _labels(y: np.ndarray, what: str) -> torch.Tensor:
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise DatasetError(
            f"{what} has dtype {y.dtype} and shape {y.shape}; labels must be whole numbers "
            "0..C-1 in a 1-D array (N,)"
        )
    return torch.from_numpy(y.astype(np.int64))


@register_dataset("npz:", description="your own arrays: x_train, y_train, x_test, y_test")
def load_npz(request: DatasetRequest) -> DatasetBundle:
    """``npz:PATH``: your own arrays (see the module docstring for the rules)."""
    path = _locate(request, "file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable .npz file ({err})") from err
    missing = [key for key in _NPZ_KEYS if key not in arrays]
    if missing:
        raise DatasetError(
            f"{path} lacks {', '.join(missing)}; an npz dataset holds {', '.join(_NPZ_KEYS)} "
            f"(and optionally num_classes); it has {', '.join(arrays) or 'nothing'}"
        )
    unknown = sorted(set(arrays) - {*_NPZ_KEYS, "num_classes"})
    if unknown:
        raise DatasetError(
            f"{path} holds {', '.join(unknown)}, which an npz dataset does not read; valid: "
            f"{', '.join(_NPZ_KEYS)}, num_classes"
        )
    splits = {}
    for part in ("train", "test"):
        x = _images(arrays[f"x_{part}"], f"{path}: x_{part}")
        y = _labels(arrays[f"y_{part}"], f"{path}: y_{part}")
        if len(x) != len(y):
            raise DatasetError(f"{path}: x_{part} has {len(x)} rows but y_{part} has {len(y)}")
        splits[part] = Split(x, y)
    labels = torch.cat([splits["train"].y, splits["test"].y])
    num_classes = int(labels.max()) + 1 if labels.numel() else 0
    if "num_classes" in arrays:
        given = arrays["num_classes"]
        if given.shape != () or given.dtype.kind not in "iu" or int(given) < 1:
            raise DatasetError(f"{path}: num_classes must be a whole number >= 1, got {given!r}")
        num_classes = int(given)
    digest, _ = file_digest(path, "sha256", raw=True)
    return DatasetBundle(
        name=request.name,
        train=splits["train"],
        test=splits["test"],
        num_classes=num_classes,
        source=f"{path.resolve()} (sha256 {digest})",
    )


def _class_folders(root: Path, what: str) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise DatasetMissingError(
            f"{what}: no folder {root}; folder:PATH needs PATH/train/<class>/ and "
            "PATH/test/<class>/ image folders"
        )
    classes: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise DatasetError(f"{entry}: expected only class folders in {root}, found a file")
        files = []
        for file in sorted(entry.iterdir()):
            if file.name.startswith("."):
                continue
            if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
                raise DatasetError(
                    f"{file}: not an image file; a class folder holds only "
                    f"{', '.join(IMAGE_SUFFIXES)} files"
                )
            files.append(file)
        classes[entry.name] = files
    if not classes:
        raise DatasetError(f"{what}: {root} has no class folders")
    return classes


@register_dataset("folder:", description="your own images: PATH/train/<class>/, PATH/test/<class>/")
def load_folder(request: DatasetRequest) -> DatasetBundle:
    """``folder:PATH``: your own image files (see the module docstring for the rules)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise DatasetMissingError(
            f"dataset {request.name!r} reads images with Pillow ({exc}); install it with "
            "`pip install dynamic-dropconnect[experiments]` or `pip install pillow`"
        ) from exc
    root = _locate(request, "folder")
    train = _class_folders(root / "train", request.name)
    test = _class_folders(root / "test", request.name)
    extra = sorted(set(test) - set(train))
    if extra:
        raise DatasetError(
            f"{root / 'test'} has class folder(s) {', '.join(extra)} that {root / 'train'} "
            f"lacks; train classes: {', '.join(train)}"
        )
    names = list(train)  # sorted: the label of a class is its place here
    for part, classes in (("train", train), ("test", test)):
        if not any(classes.values()):
            raise DatasetError(f"{root / part} holds no images in its class folders")
    files = [(f, names.index(c)) for part in (train, test) for c, fs in part.items() for f in fs]
    first_size, colour = None, False
    for file, _ in files:  # headers only: the mode and size of every image
        with Image.open(file) as image:
            if image.mode not in _GREY_MODES + _COLOUR_MODES:
                raise DatasetError(
                    f"{file}: image mode {image.mode!r} is not supported; valid: "
                    f"{', '.join(_GREY_MODES + _COLOUR_MODES)} (save 16-bit or float images "
                    "as 8-bit)"
                )
            colour = colour or image.mode in _COLOUR_MODES
            first_size = first_size or (image.size, file)
            if image.size != first_size[0] or image.size[0] != image.size[1]:
                raise DatasetError(
                    f"{file}: {image.size[0]}x{image.size[1]} pixels; every image must be "
                    f"square and the same size as {first_size[1]} "
                    f"({first_size[0][0]}x{first_size[0][1]})"
                )
    mode = "RGB" if colour else "L"
    pixels = []
    for file, _ in files:
        with Image.open(file) as image:
            array = np.asarray(image.convert(mode), dtype=np.uint8)
        pixels.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    n_train = sum(len(fs) for fs in train.values())
    x = torch.from_numpy(np.stack(pixels))
    y = torch.tensor([label for _, label in files], dtype=torch.int64)
    return DatasetBundle(
        name=request.name,
        train=Split(x[:n_train], y[:n_train]),
        test=Split(x[n_train:], y[n_train:]),
        num_classes=len(names),
        source=(
            f"{root.resolve()} ({n_train} train / {len(files) - n_train} test images, "
            f"{mode}, classes {', '.join(names)})"
        ),
    )
