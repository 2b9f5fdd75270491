"""Dataset layer of the reproduction suite: verified loaders, protocol helpers, augmentations.

``load_dataset(name, data_dir=None, download=True)`` returns a ``DatasetBundle`` of in-memory
tensors for "mnist", "fashion-mnist", "cifar10", "cifar100", "smallnorb", "digits" and
"synthetic-2d". Every file is checked against a checksum before use; a missing dataset raises
an error that says where we looked and how to obtain it. See ``registry.py`` for the table of
files, checksums (and where each value comes from), mirrors and system locations.
"""

from __future__ import annotations

from .api import dataset_status, fetch_dataset, get_info, load_dataset, verify_dataset
from .base import (
    ArchiveSpec,
    DatasetBundle,
    DatasetCorruptError,
    DatasetError,
    DatasetInfo,
    DatasetMissingError,
    FileSpec,
    FileStatus,
    Split,
    cache_dir,
    clear_verification_cache,
)
from .idx import parse_idx
from .norb import parse_norb_matrix
from .protocol import train_val_split
from .registry import DATASETS, NORB_DEFAULT_IMAGE_SIZE, dataset_names
from .small import make_synthetic_regression
from .transforms import (
    augment,
    channel_stats,
    normalize,
    random_crop,
    random_horizontal_flip,
    random_rotation,
    resize,
)

__all__ = [
    "DATASETS",
    "NORB_DEFAULT_IMAGE_SIZE",
    "ArchiveSpec",
    "DatasetBundle",
    "DatasetCorruptError",
    "DatasetError",
    "DatasetInfo",
    "DatasetMissingError",
    "FileSpec",
    "FileStatus",
    "Split",
    "augment",
    "cache_dir",
    "channel_stats",
    "clear_verification_cache",
    "dataset_names",
    "dataset_status",
    "fetch_dataset",
    "get_info",
    "load_dataset",
    "make_synthetic_regression",
    "normalize",
    "parse_idx",
    "parse_norb_matrix",
    "random_crop",
    "random_horizontal_flip",
    "random_rotation",
    "resize",
    "train_val_split",
    "verify_dataset",
]
