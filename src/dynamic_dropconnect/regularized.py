"""What is regularized in a model, by either mechanism: the class swap of an exact
``nn.Linear``/``nn.ConvNd`` (:mod:`.layers`) or hooks on a named weight (:mod:`.parameters`).

:func:`is_regularized` asks about one module (like ``torch.nn.utils.parametrize
.is_parametrized``); :func:`regularized_layers` and :func:`regularized_weights` list a whole
model under one naming; :func:`plain_state_dict` drops the regularizers' state.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .base import WeightRegularizer
from .layers import is_swapped
from .parameters import SUFFIX, hooked_weights

__all__ = ["is_regularized", "plain_state_dict", "regularized_layers", "regularized_weights"]


def is_regularized(module: nn.Module, name: str | None = None) -> bool:
    """Whether a weight that ``module`` holds is regularized (``name``: that weight only).

    Either mechanism counts: a regularized ``nn.Linear``/``nn.ConvNd`` (its ``"weight"``, also
    under a parametrization or FSDP2) or hooks on a named weight (an LSTM's ``weight_hh_l0``,
    an attention's ``in_proj_weight``, a Hugging Face ``Conv1D.weight``, ...). Like
    ``torch.nn.utils.parametrize.is_parametrized``, only ``module``'s own weights count, not
    its submodules'; :func:`regularized_layers` lists a whole model.
    """
    if is_swapped(module) and name in (None, "weight"):
        return True
    if name is not None:
        return isinstance(module._modules.get(name + SUFFIX), WeightRegularizer)
    return any(
        key.endswith(SUFFIX) and isinstance(child, WeightRegularizer)
        for key, child in module._modules.items()
    )


def regularized_layers(model: nn.Module) -> dict[str, WeightRegularizer]:
    """``{name: regularizer}`` of every regularized weight of ``model``.

    The name is the layer's for a regularized ``nn.Linear``/``nn.ConvNd`` (``"linear1"``) and
    the parameter's for any other weight (``"rnn.weight_hh_l0"``).
    """
    layers: dict[str, WeightRegularizer] = {
        name: module.regularizer  # type: ignore[misc]
        for name, module in model.named_modules()
        if is_swapped(module)
    }
    for name, (_, _, _, regularizer) in hooked_weights(model).items():
        layers[name] = regularizer
    return layers


def regularized_weights(model: nn.Module) -> dict[str, tuple[WeightRegularizer, Tensor]]:
    """``{name (as regularized_layers): (regularizer, the weight its forward uses)}``.

    The weight is the plain parameter, or for a parametrized layer the parametrized weight,
    computed without side effects.
    """
    out: dict[str, tuple[WeightRegularizer, Tensor]] = {}
    for name, module in model.named_modules():
        if is_swapped(module):
            out[name] = (module.regularizer, _weight_now(module))  # type: ignore[assignment]
    for name, (_, holder, param, regularizer) in hooked_weights(model).items():
        out[name] = (regularizer, holder._parameters[param])  # type: ignore[assignment]
    return out


def _weight_now(module: nn.Module) -> Tensor:
    """``module.weight``; a parametrization computes it in eval mode and without autograd, so
    that looking (drop_stats) does not step spectral_norm's power iteration."""
    if not parametrize.is_parametrized(module, "weight"):
        return module.weight  # type: ignore[return-value]
    chain = module.parametrizations["weight"]  # type: ignore[index]
    modes = [(m, m.training) for m in chain.modules()]
    chain.eval()
    try:
        with torch.no_grad():
            return module.weight  # type: ignore[return-value]
    finally:
        for m, training in modes:
            m.training = training


def plain_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` without regularizer state: loads strictly into the plain model.

    The full ``state_dict()`` also holds each DDC weight's gradient statistic (so a resumed
    run is exact); a plain model would report those entries as unexpected keys. For Hugging
    Face models: ``model.save_pretrained(path, state_dict=ddc.plain_state_dict(model))``.
    """
    names = {id(m): n for n, m in model.named_modules()}
    prefixes = [f"{name}.regularizer." if name else "regularizer." for name, module in
                model.named_modules() if is_swapped(module)]  # fmt: skip
    for _, holder, param, _ in hooked_weights(model).values():
        holder_name = names[id(holder)]
        prefixes.append(f"{holder_name}.{param}{SUFFIX}." if holder_name else f"{param}{SUFFIX}.")
    start = tuple(prefixes)
    return {k: v for k, v in model.state_dict().items() if not k.startswith(start)}
