"""Layers whose weight passes through a regularizer: Linear and Conv1d/2d/3d.

:func:`dynamic_dropconnect.apply` turns an existing ``nn.Linear``/``nn.ConvNd`` into the
matching class below *in place* (its ``__class__`` changes, as ``torch.nn.utils.parametrize``
does), so the module object, its parameters (and an optimizer holding them), hooks and
``*.weight`` state_dict keys all stay. The weight stays the raw trained parameter: only the
forward pass sees the regularized weight. :func:`dynamic_dropconnect.remove` undoes it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .regularizers import WeightRegularizer

__all__ = [
    "REGULARIZABLE",
    "RegularizedConv1d",
    "RegularizedConv2d",
    "RegularizedConv3d",
    "RegularizedLinear",
    "attach",
    "detach",
    "is_regularized",
]


class RegularizedLinear(nn.Linear):
    """``nn.Linear`` whose weight goes through ``self.regularizer`` in training."""

    regularizer: WeightRegularizer

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        regularizer: WeightRegularizer,
        **factory: Any,
    ) -> None:
        super().__init__(in_features, out_features, bias, **factory)
        self.regularizer = regularizer
        regularizer.prepare(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        reg = self.regularizer
        if reg.training and reg.mask_mode == "sample":
            y = reg.per_sample(x, self.weight, _linear_per_example)
            return y if self.bias is None else y + self.bias
        return F.linear(x, reg(self.weight), self.bias)


def _linear_per_example(x: Tensor, weights: Tensor) -> Tensor:
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    out = torch.bmm(flat, weights.transpose(1, 2))
    return out.reshape(*x.shape[:-1], weights.shape[1])


class _RegularizedConvMixin:
    """Forward of a ConvNd whose weight goes through ``self.regularizer`` in training."""

    regularizer: WeightRegularizer
    _spatial_dims: int

    def forward(self, x: Tensor) -> Tensor:
        conv: Any = self
        reg = self.regularizer
        if reg.training and reg.mask_mode == "sample":
            unbatched = x.dim() == self._spatial_dims + 1
            batch = x.unsqueeze(0) if unbatched else x
            y = reg.per_sample(batch, conv.weight, self._conv_per_example)
            if conv.bias is not None:
                y = y + conv.bias.view(1, -1, *([1] * self._spatial_dims))
            return y.squeeze(0) if unbatched else y
        return conv._conv_forward(x, reg(conv.weight), conv.bias)

    def _conv_per_example(self, x: Tensor, weights: Tensor) -> Tensor:
        """All examples of a chunk in one grouped convolution, each with its own weight."""
        conv: Any = self
        chunk, in_channels = x.shape[0], x.shape[1]
        padding = conv.padding
        if conv.padding_mode != "zeros":
            x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
            padding = 0
        conv_fn = (F.conv1d, F.conv2d, F.conv3d)[self._spatial_dims - 1]
        y = conv_fn(
            x.reshape(1, chunk * in_channels, *x.shape[2:]),
            weights.reshape(-1, *weights.shape[2:]),
            None,
            conv.stride,
            padding,
            conv.dilation,
            chunk * conv.groups,
        )
        return y.reshape(chunk, -1, *y.shape[2:])


class RegularizedConv1d(_RegularizedConvMixin, nn.Conv1d):
    """``nn.Conv1d`` whose weight goes through ``self.regularizer`` in training."""

    _spatial_dims = 1


class RegularizedConv2d(_RegularizedConvMixin, nn.Conv2d):
    """``nn.Conv2d`` whose weight goes through ``self.regularizer`` in training."""

    _spatial_dims = 2


class RegularizedConv3d(_RegularizedConvMixin, nn.Conv3d):
    """``nn.Conv3d`` whose weight goes through ``self.regularizer`` in training."""

    _spatial_dims = 3


# plain class -> regularized class. Exact types only: a subclass may use its weight outside
# forward (nn.MultiheadAttention's out_proj does), where a regularizer would silently do nothing.
REGULARIZABLE: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: RegularizedLinear,
    nn.Conv1d: RegularizedConv1d,
    nn.Conv2d: RegularizedConv2d,
    nn.Conv3d: RegularizedConv3d,
}
_PLAIN = {regularized: plain for plain, regularized in REGULARIZABLE.items()}


def is_regularized(module: nn.Module) -> bool:
    """Whether ``module`` is a layer made by :func:`attach`."""
    return type(module) in _PLAIN


def attach(module: nn.Module, regularizer: WeightRegularizer) -> nn.Module:
    """Make ``module`` (an ``nn.Linear``/``nn.ConvNd``) regularized, in place; returns it."""
    if is_regularized(module):
        raise ValueError(f"{type(module).__name__} already has a regularizer; remove it first")
    if type(module) not in REGULARIZABLE:
        names = ", ".join(cls.__name__ for cls in REGULARIZABLE)
        raise TypeError(f"cannot regularize {type(module).__name__}: supported are {names}")
    module.__class__ = REGULARIZABLE[type(module)]
    module.regularizer = regularizer
    weight = module.weight
    assert isinstance(weight, Tensor)
    regularizer.to(device=weight.device)
    regularizer.prepare(weight)
    return module


def detach(module: nn.Module) -> nn.Module:
    """Undo :func:`attach` in place: the plain class again, same parameters; returns it."""
    if not is_regularized(module):
        raise ValueError(f"{type(module).__name__} has no regularizer to remove")
    del module._modules["regularizer"]
    module.__class__ = _PLAIN[type(module)]
    return module
