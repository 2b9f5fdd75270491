"""CIFAR-style ResNet-18 (He et al. 2016; the common kuangliu/pytorch-cifar layout).

Not in the paper: used for its open question "does DDC help modern architectures?". It gets a
hidden fully connected head (``linear1`` 512→512, ``act1``, ``drop1``, ``linear2`` 512→C) so DDC /
DropConnect / Dropout sit in the same place as in the paper's models; the standard ResNet has only a
single 512→C layer.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import SlotModel

__all__ = ["BasicBlock", "ResNet18"]


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 conv-BN projection) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(SlotModel):
    """ResNet-18 for 32-px images: 3×3 stem (no max pool), BasicBlocks [2, 2, 2, 2] with widths
    64-128-256-512, global average pool, then the hidden head ``linear1``/``act1``/``drop1``/
    ``linear2``. Any ``image_size`` ≥ 8 runs (global pooling)."""

    def __init__(
        self, *, num_classes: int, in_channels: int = 3, image_size: int = 32, hidden: int = 512
    ) -> None:
        super().__init__()
        del image_size  # global pooling
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        in_planes = 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for s in (stride, 1):
                blocks.append(BasicBlock(in_planes, planes, s))
                in_planes = planes
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
        self.linear1 = nn.Linear(512, hidden)
        self.act1: nn.Module = nn.ReLU()
        self.drop1: nn.Module = nn.Identity()
        self.linear2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layers(self.stem(x)))
        x = self.drop1(self.act1(self.linear1(x)))
        return self.linear2(x)
