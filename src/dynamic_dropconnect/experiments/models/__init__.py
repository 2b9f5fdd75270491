"""Model zoo of the reproduction suite: the paper's models plus ResNet-18 and a small ViT.

Every model is a plain ``nn.Module`` without regularization, with named slots around its first
fully connected hidden layer (``linear1`` → ``act1`` → ``drop1``; see :class:`SlotModel`) that the
training code wraps or swaps. Build one with :func:`build_model` and initialise it like the authors
with :func:`xavier_init`.
"""

from .convnets import VGG13BN, AlexNet, AlexNetNORB, SimpleCNN1, SimpleCNN2
from .layers import LocallyConnected2d, SlotModel
from .mlp import MLP
from .registry import MODELS, build_model, xavier_init
from .resnet import ResNet18
from .sequence import CharLSTM, CharTransformer, LockedDropout
from .vit import ViT

__all__ = [
    "MLP",
    "MODELS",
    "VGG13BN",
    "AlexNet",
    "AlexNetNORB",
    "CharLSTM",
    "CharTransformer",
    "LocallyConnected2d",
    "LockedDropout",
    "ResNet18",
    "SimpleCNN1",
    "SimpleCNN2",
    "SlotModel",
    "ViT",
    "build_model",
    "xavier_init",
]
