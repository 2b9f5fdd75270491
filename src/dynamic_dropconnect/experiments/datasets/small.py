"""Datasets that need no download: scikit-learn's digits and the synthetic 2-D regression."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import DatasetBundle, DatasetCorruptError, DatasetInfo, DatasetMissingError, Split

__all__ = [
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_FRACTION",
    "SYNTHETIC_N",
    "SYNTHETIC_NOISE",
    "SYNTHETIC_W_TRUE",
    "digits_source",
    "load_digits_dataset",
    "load_synthetic_2d",
    "make_synthetic_regression",
]

#: digits has no official test split; we fix a stratified 80/20 split with this seed so every run
#: and every method sees the same 1437 training and 360 test images.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

#: The synthetic task (our choice; the paper gives no constants): y = w . x + noise * N(0, 1),
#: x ~ N(0, I_2). Train and test come from different seeds, so they are independent draws.
SYNTHETIC_W_TRUE: tuple[float, float] = (1.0, -0.5)
SYNTHETIC_NOISE = 0.1
SYNTHETIC_N = 1000
SYNTHETIC_TRAIN_SEED = 0
SYNTHETIC_TEST_SEED = 1


def _sklearn_missing(exc: ImportError) -> DatasetMissingError:
    return DatasetMissingError(
        f"dataset 'digits' needs scikit-learn ({exc}). Install it with "
        "`pip install dynamic-dropconnect[experiments]` or `pip install scikit-learn`."
    )


def digits_source() -> Path:
    """The file scikit-learn loads digits from (for the run log and ``ddc data verify``)."""
    try:
        import sklearn.datasets
    except ImportError as exc:
        raise _sklearn_missing(exc) from exc
    return Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"


def load_digits_dataset(info: DatasetInfo) -> DatasetBundle:
    """scikit-learn digits as float32 ``(N, 1, 8, 8)`` in [0, 1] with a fixed stratified split.

    The file ships inside scikit-learn (no checksum of ours: its bytes belong to that package);
    we check the shape (1797 x 64), the value range 0..16 and the 10 labels instead.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise _sklearn_missing(exc) from exc
    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    if x.shape != (1797, 64) or y.shape != (1797,) or x.min() < 0 or x.max() > 16:
        raise DatasetCorruptError(
            f"{digits_source()}: unexpected digits data: shape {x.shape}, labels {y.shape}, "
            f"range [{x.min()}, {x.max()}] (expected (1797, 64), (1797,), [0, 16])"
        )
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(
        idx, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    images = torch.from_numpy(x / 16.0).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(y)
    tr, te = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return DatasetBundle(
        name=info.name,
        train=Split(images[tr], labels[tr]),
        test=Split(images[te], labels[te]),
        num_classes=info.num_classes,
        source=f"{digits_source()} (stratified 80/20 split, seed {DIGITS_SPLIT_SEED})",
    )


def make_synthetic_regression(
    n: int = SYNTHETIC_N,
    seed: int = 0,
    w_true: Sequence[float] = SYNTHETIC_W_TRUE,
    noise: float = SYNTHETIC_NOISE,
) -> Split:
    """Draw ``n`` points of y = w_true . x + noise * eps with x, eps ~ N(0, 1), float32.

    Uses its own ``torch.Generator`` so the global RNG is untouched and the data depend on
    ``seed`` only. ``x`` is ``(n, len(w_true))``, ``y`` is ``(n,)``.
    """
    if n < 0 or noise < 0:
        raise ValueError(f"make_synthetic_regression: need n >= 0 and noise >= 0, got {n}, {noise}")
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor(list(w_true), dtype=torch.float64)
    x = torch.randn(n, w.numel(), generator=g, dtype=torch.float64)
    eps = torch.randn(n, generator=g, dtype=torch.float64)
    y = x @ w + noise * eps
    return Split(x.float(), y.float())


def load_synthetic_2d(info: DatasetInfo) -> DatasetBundle:
    """The paper's 2-D linear regression toy task, with our fixed constants (see module top)."""
    params = f"w_true={SYNTHETIC_W_TRUE}, noise={SYNTHETIC_NOISE}"
    return DatasetBundle(
        name=info.name,
        train=make_synthetic_regression(SYNTHETIC_N, SYNTHETIC_TRAIN_SEED),
        test=make_synthetic_regression(SYNTHETIC_N, SYNTHETIC_TEST_SEED),
        num_classes=0,
        source=(
            f"generated: make_synthetic_regression(n={SYNTHETIC_N}, seed="
            f"{SYNTHETIC_TRAIN_SEED}/{SYNTHETIC_TEST_SEED} train/test, {params})"
        ),
    )
