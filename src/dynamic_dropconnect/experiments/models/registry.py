"""Model registry (:data:`MODELS`, :func:`build_model`) and the authors' Xavier initialisation."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .convnets import VGG13BN, AlexNet, AlexNetNORB, SimpleCNN1, SimpleCNN2
from .layers import LocallyConnected2d, SlotModel
from .mlp import MLP
from .resnet import ResNet18
from .sequence import CharLSTM, CharTransformer
from .vit import ViT

__all__ = ["MODELS", "build_model", "xavier_init"]

#: Name → constructor; every constructor takes keyword-only ``num_classes``, ``in_channels``,
#: ``image_size`` plus model-specific keyword arguments.
MODELS: dict[str, Callable[..., SlotModel]] = {
    "simplecnn1": SimpleCNN1,
    "simplecnn2": SimpleCNN2,
    "alexnet": AlexNet,
    "alexnet-norb": AlexNetNORB,
    "vgg13bn": VGG13BN,
    "mlp": MLP,
    "resnet18": ResNet18,
    "vit": ViT,
    "char-lstm": CharLSTM,
    "char-transformer": CharTransformer,
}


def build_model(
    name: str, *, num_classes: int, in_channels: int, image_size: int, **kwargs: object
) -> SlotModel:
    """Build model ``name`` (see :data:`MODELS`) for ``in_channels``×``image_size``² inputs.

    Extra keyword arguments go to the constructor (e.g. ``hidden=`` for ``"mlp"``). The model keeps
    PyTorch's default initialisation; call :func:`xavier_init` for the authors' one.
    """
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[key](
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs
    )


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def xavier_init(model: nn.Module) -> nn.Module:
    """The authors' init: Xavier-uniform weights and zero biases for every Linear, Conv and
    LocallyConnected2d layer; normalisation layers and embeddings are left as they are.

    For :class:`LocallyConnected2d` the fans are those of the equivalent convolution
    (``in·k²``, ``out·k²``), unless the layer's ``xavier_fans`` is ``"authors"``: then weight and
    bias get the authors' bounds (non-zero biases). Returns ``model`` (modified in place).
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, *_CONVS)):
            nn.init.xavier_uniform_(module.weight)
        elif isinstance(module, LocallyConnected2d) and module.xavier_fans == "authors":
            weight_bound, bias_bound = module.authors_xavier_bounds()
            nn.init.uniform_(module.weight, -weight_bound, weight_bound)
            if module.bias is not None:
                nn.init.uniform_(module.bias, -bias_bound, bias_bound)
            continue
        elif isinstance(module, LocallyConnected2d):
            fan_in, fan_out = module.fans
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            nn.init.uniform_(module.weight, -bound, bound)
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    return model
