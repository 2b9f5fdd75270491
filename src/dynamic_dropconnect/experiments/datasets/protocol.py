"""Experimental-protocol helpers: the seeded train/validation split."""

from __future__ import annotations

import torch

__all__ = ["train_val_split"]


def train_val_split(
    n: int, val_fraction: float = 0.1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train_idx, val_idx)`` of a seeded random split of ``range(n)``.

    The paper's 90/10 split, made reproducible: the same ``(n, val_fraction, seed)`` always gives
    the same disjoint index sets (a private ``torch.Generator``, so the global RNG is untouched).
    ``round(n * val_fraction)`` examples go to validation; both index tensors are int64 and sorted
    (sorted indices keep memory access in order; shuffling is the batch loader's job).
    """
    if n < 0:
        raise ValueError(f"train_val_split: n must be >= 0, got {n}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"train_val_split: val_fraction must be in [0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(n * val_fraction)
    val_idx, _ = perm[:n_val].sort()
    train_idx, _ = perm[n_val:].sort()
    return train_idx, val_idx
