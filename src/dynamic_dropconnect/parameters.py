"""Regularizers on single parameters: weights that are not the ``weight`` of a plain layer.

:mod:`.layers` regularizes an exact ``nn.Linear``/``nn.ConvNd`` by swapping its class. Every
other weight is reached here, by name: ``nn.MultiheadAttention``'s ``in_proj_weight`` (and
``out_proj.weight``, which the attention reads itself, never calling ``out_proj``), an LSTM's or
GRU's ``weight_hh_l0`` (AWD-LSTM's weight drop), Hugging Face GPT-2's ``Conv1D.weight``,
``ConvTranspose{1,2,3}d.weight``, or any Linear subclass.

How: the module that *reads* the weight in its ``forward`` (the *owner*, usually the module
holding it) gets a forward pre-hook that puts the effective weight ``W * M / k`` in the
parameter's place for the duration of that forward, and a forward hook (``always_call``, so an
exception cannot leave it there) that puts the parameter back. The parameter itself is never
replaced: its ``state_dict`` key, its identity in an optimizer and ``flatten_parameters`` of an
RNN all stay. The regularizer is a submodule of the holder named ``<weight>_regularizer``
(state_dict keys ``<holder>.<weight>_regularizer.grad_magnitude`` for DDC). In eval mode
nothing is swapped: the forward sees the plain parameter, fused fast paths included.

Use :func:`dynamic_dropconnect.apply` with a parameter name in ``include=`` rather than these
functions directly (AWD-LSTM's ``WeightDrop(module, weights, dropout)`` call form is
:class:`dynamic_dropconnect.AWDWeightDrop`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import Tensor, nn

from .base import WeightRegularizer
from .checks import renamed_attribute
from .distributed import before_forward, check_not_flat_view, whole_template

__all__ = ["SUFFIX", "attach_weight", "detach_weight", "hooked_weights"]

#: The regularizer of ``holder.<weight>`` is its submodule ``<weight>_regularizer``.
SUFFIX = "_regularizer"

# Old name -> new name; the old one still works, with a DeprecationWarning. The package-wide
# listings are dynamic_dropconnect.regularized_layers and .regularized.regularized_weights.
_RENAMED = {"regularized_parameters": "hooked_weights"}


def __getattr__(name: str) -> Any:
    return renamed_attribute(__name__, name, _RENAMED, globals())


def _put(holder: nn.Module, name: str, tensor: Tensor) -> None:
    """Make ``holder.<name>`` return ``tensor`` without registering it (no ``__setattr__``)."""
    holder._parameters[name] = tensor  # type: ignore[assignment]
    if isinstance(holder, nn.RNNBase) and name in holder._flat_weights_names:
        # RNN forward reads the list, not the attributes (the cuDNN path included).
        holder._flat_weights[holder._flat_weights_names.index(name)] = tensor


class _SwapIn:
    """Forward pre-hook: the effective weight replaces the parameter while ``owner`` runs."""

    def __init__(self, holder: nn.Module, name: str) -> None:
        self.holder = holder
        self.name = name
        self.originals: list[Tensor] = []  # a stack: the owner's forward may nest

    @property
    def regularizer(self) -> WeightRegularizer:
        return self.holder._modules[self.name + SUFFIX]  # type: ignore[return-value]

    def __call__(self, owner: nn.Module, args: Any) -> None:
        regularizer = self.regularizer
        if not regularizer.training:
            return
        parameter = self.holder._parameters.get(self.name)
        if parameter is None:
            raise RuntimeError(
                f"{type(self.holder).__name__}.{self.name} is regularized by dynamic_dropconnect "
                "but is no longer a registered parameter (a parametrization or weight_norm/"
                "spectral_norm added after ddc.apply?); call dynamic_dropconnect.remove(model) "
                "first: DDC can regularize such a computed weight only of a plain nn.Linear/ConvNd"
            )
        before_forward(self.holder, regularizer)
        effective = regularizer(parameter)
        self.originals.append(parameter)
        _put(self.holder, self.name, effective)


class _SwapOut:
    """Forward hook (always called): the parameter is back once ``owner`` returns or raises."""

    def __init__(self, swap_in: _SwapIn) -> None:
        self.swap_in = swap_in

    def __call__(self, owner: nn.Module, args: Any, output: Any) -> None:
        if self.swap_in.originals:
            _put(self.swap_in.holder, self.swap_in.name, self.swap_in.originals.pop())


def attach_weight(
    owner: nn.Module, holder: nn.Module, name: str, regularizer: WeightRegularizer
) -> None:
    """Regularize parameter ``holder.<name>`` while ``owner`` runs (``owner`` may be ``holder``).

    Raises:
        ValueError: ``name`` is not a parameter of ``holder``, or already regularized.
        TypeError: the regularizer wants per-example masks (``mask_mode="example"``), which need
            the layer's input and so a Linear or ConvNd layer.
    """
    parameter = holder._parameters.get(name)
    if parameter is None:
        raise ValueError(
            f"{type(holder).__name__} has no parameter {name!r}; parameters: "
            f"{', '.join(holder._parameters)}"
        )
    if name + SUFFIX in holder._modules:
        raise ValueError(f"{type(holder).__name__}.{name} is already regularized")
    if regularizer.mask_mode != "batch":
        raise TypeError(
            f"mask_mode={regularizer.mask_mode!r} needs the layer input, so a plain nn.Linear or "
            f"nn.ConvNd; {type(holder).__name__}.{name} supports mask_mode='batch' only"
        )
    check_not_flat_view(holder, name, parameter)
    template = whole_template(parameter)  # FSDP2: sized to the whole weight, not the shard
    regularizer.to(device=template.device)
    regularizer.prepare(template)
    holder.add_module(name + SUFFIX, regularizer)
    swap_in = _SwapIn(holder, name)
    owner.register_forward_pre_hook(swap_in)
    owner.register_forward_hook(_SwapOut(swap_in), always_call=True)


def _hooks(owner: nn.Module) -> Iterator[tuple[int, _SwapIn]]:
    for key, hook in list(owner._forward_pre_hooks.items()):
        if isinstance(hook, _SwapIn):
            yield key, hook


def detach_weight(owner: nn.Module, holder: nn.Module, name: str) -> None:
    """Undo :func:`attach_weight`: hooks and regularizer gone, the parameter untouched."""
    for key, hook in _hooks(owner):
        if hook.holder is holder and hook.name == name:
            del owner._forward_pre_hooks[key]
    for key, hook in list(owner._forward_hooks.items()):
        swap_in = hook.swap_in if isinstance(hook, _SwapOut) else None
        if swap_in is not None and swap_in.holder is holder and swap_in.name == name:
            del owner._forward_hooks[key]
            owner._forward_hooks_always_called.pop(key, None)
    del holder._modules[name + SUFFIX]


def hooked_weights(
    model: nn.Module,
) -> dict[str, tuple[nn.Module, nn.Module, str, WeightRegularizer]]:
    """``{qualified parameter name: (owner, holder, name, regularizer)}`` of every weight of
    ``model`` regularized by hooks (this module), with what :func:`detach_weight` needs."""
    names = {id(module): name for name, module in model.named_modules()}
    found = {}
    for owner in model.modules():
        for _, hook in _hooks(owner):
            prefix = names.get(id(hook.holder), "?")
            qualified = f"{prefix}.{hook.name}" if prefix else hook.name
            found[qualified] = (owner, hook.holder, hook.name, hook.regularizer)
    return found
