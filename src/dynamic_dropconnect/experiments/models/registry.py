"""Model registry (:data:`MODELS`, :func:`register_model`, :func:`build_model`) and the
authors' Xavier initialisation."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from ..registration import add_to_registry, check_name
from .convnets import VGG13BN, AlexNet, AlexNetNORB, SimpleCNN1, SimpleCNN2
from .layers import LocallyConnected2d
from .mlp import MLP
from .resnet import ResNet18
from .sequence import CharLSTM, CharTransformer
from .vit import ViT

__all__ = ["MODELS", "build_model", "register_model", "xavier_init"]

#: Name → constructor; every constructor takes keyword-only ``num_classes``, ``in_channels``,
#: ``image_size`` (token models: ``vocab_size`` too) plus the experiment's ``model_options``.
#: Filled by :func:`register_model`, the built-ins included.
MODELS: dict[str, Callable[..., nn.Module]] = {}

M = TypeVar("M", bound=Callable[..., nn.Module])


def register_model(name: str, *, replace: bool = False) -> Callable[[M], M]:
    """Decorator: register a model constructor (a class or a function) under ``name``.

    The constructor is called as ``constructor(num_classes=..., in_channels=...,
    image_size=..., **experiment.model_options)`` (token data: ``vocab_size=`` too) and must
    return a plain ``nn.Module``. The methods find their places by name (see
    :class:`~.layers.SlotModel`): ``linear1`` (weight methods; or the names in a
    ``weight_slots`` attribute), ``act1`` (activation methods, Standout; or
    ``activation_slots``) and ``drop1`` (an ``nn.Identity`` that Dropout replaces; or
    ``dropout_slots``). A model without one of them refuses the methods that need it, naming
    it. Names are lower case; a name already registered is an error unless ``replace``.
    """
    check_name("model", name, lower=True)

    def register(constructor: M) -> M:
        if not callable(constructor):
            raise TypeError(
                f"register_model({name!r}) decorates a class or function that builds the "
                f"model, got {constructor!r}"
            )
        return add_to_registry(MODELS, "model", name, constructor, replace=replace)

    return register


for _name, _constructor in {
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
}.items():
    register_model(_name)(_constructor)


def build_model(
    name: str, *, num_classes: int, in_channels: int, image_size: int, **kwargs: object
) -> nn.Module:
    """Build model ``name`` (see :data:`MODELS`) for ``in_channels``×``image_size``² inputs.

    Extra keyword arguments go to the constructor (e.g. ``hidden=`` for ``"mlp"``). The model keeps
    PyTorch's default initialisation; call :func:`xavier_init` for the authors' one.
    """
    key = name.lower()
    if key not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; choose from {sorted(MODELS)} (or register your own with "
            "register_model, see docs/suite.md)"
        )
    try:
        return MODELS[key](
            num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs
        )
    except TypeError as err:
        # A constructor that does not take an argument the suite passes: say which model.
        raise TypeError(f"model {key!r} ({MODELS[key]!r}): {err}") from err


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
