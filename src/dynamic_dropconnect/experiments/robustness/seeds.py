"""One reproducible generator per (seed, name): corruptions and random edge removal draw from it,
so every run of a directory gets the same corrupted images and the same removed edges."""

from __future__ import annotations

import hashlib

import torch

__all__ = ["named_generator"]


def named_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator seeded from the sha256 of ``"{seed}:{name}"`` (stable across runs and
    Python processes, unlike ``hash``)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
