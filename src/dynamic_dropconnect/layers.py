"""Layers whose weight passes through a regularizer: Linear and Conv1d/2d/3d.

:func:`dynamic_dropconnect.apply` turns an existing ``nn.Linear``/``nn.ConvNd`` into the
matching class below *in place* (its ``__class__`` changes, as ``torch.nn.utils.parametrize``
does), so the module object, its parameters (and an optimizer holding them), hooks and
``*.weight`` state_dict keys all stay. The weight stays the raw trained parameter: only the
forward pass sees the regularized weight. :func:`dynamic_dropconnect.remove` undoes it.

Wrappers that swap the class themselves are recognised on either side of the swap: a
``torch.nn.utils.parametrize`` parametrization (``parametrizations.weight_norm``,
``spectral_norm``, ``register_parametrization``: class ``ParametrizedLinear``) or FSDP2's
``fully_shard`` (class ``FSDPLinear``). Their class is rebuilt on the regularized class
(``ParametrizedRegularizedLinear``), so the regularizer then acts on the *effective* weight
(``self.weight``, e.g. the weight-normalised one); :func:`detach` rebuilds it on the plain class.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import WeightRegularizer
from .checks import renamed_attribute
from .distributed import before_forward, check_not_flat_view, whole_template

__all__ = [
    "REGULARIZABLE",
    "RegularizedConv1d",
    "RegularizedConv2d",
    "RegularizedConv3d",
    "RegularizedLinear",
    "attach",
    "detach",
    "is_swapped",
    "layer_class",
    "weight_template",
]

# Old name -> new name; the old one still works, with a DeprecationWarning. The package's
# is_regularized covers every mechanism, this module's test only the class swap.
_RENAMED = {"is_regularized": "is_swapped"}


def __getattr__(name: str) -> Any:
    return renamed_attribute(__name__, name, _RENAMED, globals())


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
        before_forward(self, reg)
        if reg.training and reg.mask_mode != "batch":
            y = reg.per_example(x, self.weight, _linear_per_example)
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
        before_forward(conv, reg)
        if reg.training and reg.mask_mode != "batch":
            unbatched = x.dim() == self._spatial_dims + 1
            batch = x.unsqueeze(0) if unbatched else x
            y = reg.per_example(batch, conv.weight, self._conv_per_example)
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


def _is_wrapper_class(cls: type) -> bool:
    """Whether ``cls`` is a class a known wrapper made around a layer class (its last base):
    ``torch.nn.utils.parametrize`` (``Parametrized<Base>``) or FSDP2 (``FSDP<Base>``). Neither
    defines ``forward``, so the wrapped layer's forward, and its regularizer, still run. A user's
    Linear subclass is not one: its forward may read the weight elsewhere."""
    if "forward" in cls.__dict__:
        return False
    bases = cls.__bases__
    if cls.__module__ == "torch.nn.utils.parametrize":
        return len(bases) == 1
    return len(bases) == 2 and _is_fsdp_module_class(bases[0])


def _is_fsdp_module_class(cls: type) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return cls is FSDPModule


def layer_class(cls: type) -> type[nn.Module] | None:
    """The exact ``nn.Linear``/``nn.ConvNd`` class or regularized class that ``cls`` is, under
    any wrapper classes (:func:`_is_wrapper_class`); ``None`` for anything else."""
    while cls not in REGULARIZABLE and cls not in _PLAIN:
        if not _is_wrapper_class(cls):
            return None
        cls = cls.__bases__[-1]
    return cls


# Set on every class _rebase builds: the class it was built from, so that undoing a swap gives
# back that very class when nothing changed it since.
_ORIGINAL = "_ddc_rebased_from"
_NOT_COPIED = ("__dict__", "__weakref__", _ORIGINAL)


def _rebase(cls: type, old: type, new: type) -> type:
    """``cls`` with ``old`` replaced by ``new`` among its (wrapper classes') bases.

    A wrapper class made around ``old`` (``ParametrizedLinear``) is rebuilt around ``new``
    (``ParametrizedRegularizedLinear``) with the same namespace: the parametrization's
    properties are per-module entries of that namespace, so copying it keeps them working, and
    ``torch.nn.utils.parametrize`` still finds the class below via ``__bases__[0]``.
    """
    if cls is old:
        return new
    namespace = {k: v for k, v in cls.__dict__.items() if k not in _NOT_COPIED}
    original = cls.__dict__.get(_ORIGINAL)
    if original is not None and original.__bases__[-1] is new:
        same = {k: v for k, v in original.__dict__.items() if k not in _NOT_COPIED}
        if same == namespace:  # e.g. no parametrization was added or removed meanwhile
            return original
    bases = tuple(_rebase(b, old, new) if issubclass(b, old) else b for b in cls.__bases__)
    name = cls.__name__
    if name.endswith(old.__name__):
        name = name[: -len(old.__name__)] + new.__name__
    namespace["__qualname__"] = name
    namespace[_ORIGINAL] = cls
    return type(name, bases, namespace)


def _regularized_base(cls: type) -> type[nn.Module] | None:
    # Any subclass counts here, not only known wrappers: a class built on a regularized layer
    # by a wrapper this module does not know still runs (or hides) that regularizer.
    return next((c for c in cls.__mro__ if c in _PLAIN), None)


def is_swapped(module: nn.Module) -> bool:
    """Whether ``module`` is a layer made by :func:`attach`: an instance of a regularized
    Linear/ConvNd class (also under a wrapper's class, see the module docstring) that holds
    its ``regularizer``. :func:`dynamic_dropconnect.is_regularized` also sees hooked weights."""
    return _regularized_base(type(module)) is not None and isinstance(
        module._modules.get("regularizer"), WeightRegularizer
    )


def weight_template(module: nn.Module) -> Tensor:
    """A tensor with the shape, dtype and device of the weight ``module``'s forward uses,
    without computing it (a spectral_norm parametrization would run a power iteration).

    The parameter itself when there is one; an FSDP2 parameter outside forward is a sharded
    DTensor, but the forward sees the whole weight, so then an empty local tensor of the full
    shape; under a parametrization, an empty tensor of the layer's weight shape.
    """
    weight = module._parameters.get("weight")
    if weight is None:
        stored = module.__dict__.get("weight")  # set by an old-style weight_norm pre-hook
        if isinstance(stored, Tensor):
            return stored
        conv: Any = module
        if isinstance(module, nn.Linear):
            shape: tuple[int, ...] = (module.out_features, module.in_features)
        else:
            shape = (conv.out_channels, conv.in_channels // conv.groups, *conv.kernel_size)
        like = whole_template(next(module.parameters()))
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return whole_template(weight)


def attach(module: nn.Module, regularizer: WeightRegularizer) -> nn.Module:
    """Make ``module`` (an ``nn.Linear``/``nn.ConvNd``) regularized, in place; returns it."""
    if is_swapped(module):
        raise ValueError(f"{type(module).__name__} already has a regularizer; remove it first")
    layer = layer_class(type(module))
    if layer not in REGULARIZABLE:
        names = ", ".join(cls.__name__ for cls in REGULARIZABLE)
        raise TypeError(
            f"cannot regularize {type(module).__name__}: supported are {names} (also under a "
            "parametrization or FSDP2 fully_shard)"
        )
    parameter = module._parameters.get("weight")
    if parameter is not None:
        check_not_flat_view(module, "weight", parameter)
    local = weight_template(module)
    module.__class__ = _rebase(type(module), layer, REGULARIZABLE[layer])
    module.regularizer = regularizer
    regularizer.to(device=local.device)
    regularizer.prepare(local)
    return module


def detach(module: nn.Module) -> nn.Module:
    """Undo :func:`attach` in place: the plain class again, same parameters; returns it.

    A wrapper class added since (``ParametrizedRegularizedLinear``) is rebuilt on the plain
    class (``ParametrizedLinear``), so the wrapper keeps working.
    """
    if not is_swapped(module):
        raise ValueError(f"{type(module).__name__} has no regularizer to remove")
    layer = _regularized_base(type(module))
    assert layer is not None
    del module._modules["regularizer"]
    module.__class__ = _rebase(type(module), layer, _PLAIN[layer])
    return module
