"""A one-hidden-layer MLP for scikit-learn digits (1×8×8) and MNIST (1×28×28)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import SlotModel

__all__ = ["MLP"]


class MLP(SlotModel):
    """flatten, ``linear1`` in→hidden, ``act1``, ``drop1``, ``linear2`` hidden→C.

    ``in = in_channels * image_size**2``; ``hidden`` defaults to 256. Not one of the paper's models:
    the cheap model for digits and quick MNIST checks.
    """

    def __init__(
        self, *, num_classes: int, in_channels: int = 1, image_size: int = 28, hidden: int = 256
    ) -> None:
        super().__init__()
        self.in_features = in_channels * image_size * image_size
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(self.in_features, hidden)
        self.act1: nn.Module = nn.ReLU()
        self.drop1: nn.Module = nn.Identity()
        self.linear2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        x = self.drop1(self.act1(self.linear1(x)))
        return self.linear2(x)
