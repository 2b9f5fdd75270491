"""The paper's convolutional models: SimpleCNN1, SimpleCNN2, AlexNet (two sizes) and VGG13-BN.

Layouts follow the authors' code (cuda-convnet style SimpleCNNs, torchvision-style AlexNet and
VGG). None of them contains any regularization: the training code swaps the ``act*``/``drop*``
slots and wraps ``linear1`` (see :class:`~.layers.SlotModel`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .layers import LocallyConnected2d, SlotModel

__all__ = ["VGG13BN", "VGG13_CFG", "AlexNet", "AlexNetNORB", "SimpleCNN1", "SimpleCNN2", "pool_out"]


def pool_out(size: int, kernel: int = 3, stride: int = 2, padding: int = 0) -> int:
    """Spatial size after a (floor-mode) pooling or convolution."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out <= 0:
        raise ValueError(f"input of size {size} is too small for this model")
    return out


#: Which of SimpleCNN1's three convolutions a ReLU follows, per variant.
SIMPLECNN1_RELUS: dict[str, tuple[bool, bool, bool]] = {
    # Authors' SimpleCNN1_mnist.py: an OrderedDict with the key "relu1" twice keeps one ReLU,
    # at the first key's place (after conv2), so conv1 and conv3 have none.
    "mnist": (False, True, False),
    # Authors' SimpleCNN1_cifar10.py: "relu1" after conv2, "relu2" after conv3, none after conv1.
    "cifar10": (False, True, True),
    # A ReLU after every convolution (cuda-convnet's layers-18pct; this project's earlier net).
    "relu": (True, True, True),
}


class SimpleCNN1(SlotModel):
    """The authors' SimpleCNN1 (MNIST, CIFAR-10): three convolutions, two pools, two FCs.

    conv in→32 k5 p2, maxpool 3/2, conv 32→32 k5 p2, avgpool 3/2, conv 32→64 k5 p2, avgpool 3/2,
    flatten, ``linear1`` →64, ``act1``, ``drop1``, ``linear2`` 64→C, with ReLUs after the
    convolutions that ``variant`` names (:data:`SIMPLECNN1_RELUS`): ``"mnist"`` (conv2 only, as
    the authors' MNIST net), ``"cifar10"`` (conv2 and conv3), ``"relu"`` (all three). ``"auto"``
    picks ``"mnist"`` for 1 input channel and ``"cifar10"`` otherwise. A ReLU after conv1 follows
    its max pool. The flatten size is 64·2·2 = 256 at 28 px and 64·3·3 = 576 at 32 px.
    """

    def __init__(
        self, *, num_classes: int, in_channels: int, image_size: int, variant: str = "auto"
    ) -> None:
        super().__init__()
        if variant == "auto":
            variant = "mnist" if in_channels == 1 else "cifar10"
        if variant not in SIMPLECNN1_RELUS:
            valid = ", ".join(["auto", *SIMPLECNN1_RELUS])
            raise ValueError(f"unknown SimpleCNN1 variant {variant!r}; valid: {valid}")
        self.variant = variant
        relu1, relu2, relu3 = SIMPLECNN1_RELUS[variant]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 32, 5, padding=2), nn.MaxPool2d(3, 2)]
        layers += [nn.ReLU()] if relu1 else []
        layers += [nn.Conv2d(32, 32, 5, padding=2)] + ([nn.ReLU()] if relu2 else [])
        layers += [nn.AvgPool2d(3, 2), nn.Conv2d(32, 64, 5, padding=2)]
        layers += [nn.ReLU()] if relu3 else []
        layers += [nn.AvgPool2d(3, 2), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        side = pool_out(pool_out(pool_out(image_size)))
        self.flat_features = 64 * side * side
        self.linear1 = nn.Linear(self.flat_features, 64)
        self.act1: nn.Module = nn.ReLU()
        self.drop1: nn.Module = nn.Identity()
        self.linear2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.drop1(self.act1(self.linear1(x)))
        return self.linear2(x)

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}"


class SimpleCNN2(SlotModel):
    """The authors' SimpleCNN2 (CIFAR-10, NORB): two convolutions, two locally connected layers.

    ``variant="authors"`` (default), as ``SimpleCNN2_cifar10.py``: conv in→64 k5 p2, ReLU,
    maxpool 3/2, LocalResponseNorm(5, 1e-3, 0.75), conv 64→64 k5 p2, ReLU, LRN, maxpool 3/2,
    locally connected 64→16 k3 p1, ReLU, locally connected 16→32 k3 p1, ReLU, flatten
    (32·7·7 = 1568 at 32 px), ``linear1`` →128, ``act1``, ``drop1``, ``linear2`` 128→C
    (0.99 M parameters for CIFAR-10). Its locally connected layers keep the authors' Xavier
    init (see :meth:`~.layers.LocallyConnected2d.authors_xavier_bounds`: weight bounds ≈ 0.0036
    and 0.0051, biases non-zero) when :func:`~.registry.xavier_init` runs.

    ``variant="wide"``: this project's earlier reading, without LRN, locally connected
    64→64→32 with conv-fan Xavier init and zero biases (3.02 M parameters).
    """

    def __init__(
        self, *, num_classes: int, in_channels: int, image_size: int, variant: str = "authors"
    ) -> None:
        super().__init__()
        if variant not in ("authors", "wide"):
            raise ValueError(f"unknown SimpleCNN2 variant {variant!r}; valid: authors, wide")
        self.variant = variant
        side = pool_out(pool_out(image_size))
        authors = variant == "authors"
        mid = 16 if authors else 64

        def norm() -> list[nn.Module]:
            return [nn.LocalResponseNorm(5, alpha=1e-3, beta=0.75)] if authors else []

        local3 = LocallyConnected2d(64, mid, side, 3, 1)
        local4 = LocallyConnected2d(mid, 32, side, 3, 1)
        for local in (local3, local4):
            local.xavier_fans = "authors" if authors else "conv"
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            *norm(),
            nn.Conv2d(64, 64, 5, padding=2),
            nn.ReLU(),
            *norm(),
            nn.MaxPool2d(3, 2),
            local3,
            nn.ReLU(),
            local4,
            nn.ReLU(),
            nn.Flatten(),
        )
        self.flat_features = 32 * side * side
        self.linear1 = nn.Linear(self.flat_features, 128)
        self.act1: nn.Module = nn.ReLU()
        self.drop1: nn.Module = nn.Identity()
        self.linear2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.drop1(self.act1(self.linear1(x)))
        return self.linear2(x)

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}"


class _AlexNetHead(SlotModel):
    """AlexNet's classifier after a given feature extractor: ``linear1`` (``flat_features`` →
    ``hidden``), ``act1``, ``drop1``, ``linear2`` (``hidden`` → ``hidden``), ReLU, ``linear3``."""

    def __init__(
        self, features: nn.Sequential, flat_features: int, *, hidden: int, num_classes: int
    ) -> None:
        super().__init__()
        self.features = features
        self.flat_features = flat_features
        self.linear1 = nn.Linear(flat_features, hidden)
        self.act1: nn.Module = nn.ReLU()
        self.drop1: nn.Module = nn.Identity()
        self.linear2 = nn.Linear(hidden, hidden)
        self.act_fc2 = nn.ReLU()
        self.linear3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.drop1(self.act1(self.linear1(x)))
        x = self.act_fc2(self.linear2(x))
        return self.linear3(x)


def _alexnet_convs(
    stem: nn.Conv2d, widths: tuple[int, int, int, int], tail: list[nn.Module]
) -> nn.Sequential:
    """stem, ReLU, maxpool 3/2, conv k5 p2, ReLU, maxpool 3/2, three conv k3 p1 (each with
    ReLU), maxpool 3/2, then ``tail``; ``widths``: the output channels of convs 2 to 5."""
    c2, c3, c4, c5 = widths
    return nn.Sequential(
        stem,
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(stem.out_channels, c2, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(c2, c3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c3, c4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c4, c5, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        *tail,
    )


class AlexNet(_AlexNetHead):
    """AlexNet for 224 px inputs, torchvision layout (the authors' CIFAR-10 AlexNet, upsampled).

    Features: conv 64 k11 s4 p2, maxpool 3/2, conv 192 k5 p2, maxpool, conv 384 k3, conv 256 k3,
    conv 256 k3, maxpool, adaptive avgpool 6×6 (ReLU after every conv). Classifier: ``linear1``
    9216→4096, ``act1``, ``drop1``, ``linear2`` 4096→4096, ReLU, ``linear3`` 4096→C.
    torchvision's two Dropouts become the single ``drop1`` slot after the DDC layer, as in the
    authors' code. The adaptive pool lets other sizes (≥ 63 px) run, but 224 is the intended one.
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, image_size: int = 224) -> None:
        del image_size  # the adaptive pool makes the classifier size independent of it
        stem = nn.Conv2d(in_channels, 64, 11, stride=4, padding=2)
        tail: list[nn.Module] = [nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten()]
        features = _alexnet_convs(stem, (192, 384, 256, 256), tail)
        super().__init__(features, 256 * 6 * 6, hidden=4096, num_classes=num_classes)


class AlexNetNORB(_AlexNetHead):
    """The authors' NORB AlexNet (``AlexNet_norb.py``): 2 stereo channels at 133 px.

    conv in→96 k11 s4 p0, ReLU, maxpool 3/2, conv 96→256 k5 p2, ReLU, maxpool 3/2,
    conv 256→384 k3 p1, ReLU, conv 384→384 k3 p1, ReLU, conv 384→256 k3 p1, ReLU, maxpool 3/2,
    flatten (256·3·3 = 2304 at 133 px: 31, 15, 7, 3), ``linear1`` 2304→4096, ``act1``, ``drop1``,
    ``linear2`` 4096→4096, ReLU, ``linear3`` 4096→C (29.98 M parameters for 6 classes).
    Other input sizes run when the map stays ≥ 1 px; the flatten size follows.
    """

    def __init__(self, *, num_classes: int, in_channels: int = 2, image_size: int = 133) -> None:
        side = pool_out(pool_out(pool_out(pool_out(image_size, 11, 4))))
        stem = nn.Conv2d(in_channels, 96, 11, stride=4)
        features = _alexnet_convs(stem, (256, 384, 384, 256), [nn.Flatten()])
        super().__init__(features, 256 * side * side, hidden=4096, num_classes=num_classes)


VGG13_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"
)  # fmt: skip


class VGG13BN(SlotModel):
    """VGG13 with BatchNorm for 32-px images (the authors' CIFAR-10/100 and NORB VGG).

    Features: cfg ``[64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M]`` of
    conv k3 p1 → BatchNorm → ReLU, then adaptive avgpool 1×1 (a no-op at 32 px, where the map is
    already 1×1; it lets 96-px NORB run too). Classifier: ``linear1`` 512→512, ``act1``,
    ``drop1``, ``linear2`` 512→512, ``act2``, ``drop2``, ``linear3`` 512→C. The two dropout slots
    match the authors' two Dropouts; DDC targets ``linear1`` only.
    """

    activation_slots: ClassVar[tuple[str, ...]] = ("act1", "act2")
    dropout_slots: ClassVar[tuple[str, ...]] = ("drop1", "drop2")

    def __init__(self, *, num_classes: int, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        if image_size < 32:
            raise ValueError(f"VGG13BN needs images of at least 32 px, got {image_size}")
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG13_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(item, int)
                layers += [
                    nn.Conv2d(channels, item, 3, padding=1),
                    nn.BatchNorm2d(item),
                    nn.ReLU(),
                ]
                channels = item
        layers += [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.linear1 = nn.Linear(512, 512)
        self.act1: nn.Module = nn.ReLU()
        self.drop1: nn.Module = nn.Identity()
        self.linear2 = nn.Linear(512, 512)
        self.act2: nn.Module = nn.ReLU()
        self.drop2: nn.Module = nn.Identity()
        self.linear3 = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.drop1(self.act1(self.linear1(x)))
        x = self.drop2(self.act2(self.linear2(x)))
        return self.linear3(x)
