"""Edge removal without retraining: zero a fraction of the regularized layers' weights.

The layers are the model's ``weight_slots`` (``linear1`` in the paper's models; an RNN's
``weight_hh_l0``; a Transformer's projections), the weights DDC or DropConnect regularizes, for
every method of a run directory (so ``none`` and ``dropout`` lose the same edges). The
regularizers are taken off first (:func:`dynamic_dropconnect.remove`, trained weights kept), so
the pruned weight is exactly what the eval-mode forward uses. In each weight tensor separately
``round(f * numel)`` entries are set to zero:

- ``random``: a seeded permutation per tensor, the same for every ``f`` (the removed sets are
  nested: a larger ``f`` removes the same edges and more);
- ``magnitude``: the smallest ``|w|`` first (ties by index), as in magnitude pruning.

Biases are kept. ``f = 0`` is the trained model; ``f = 1`` leaves the layer its bias only.
Pure torch (``torch.nn.utils.prune`` would do the same with a mask; zeroing is simpler here).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

import dynamic_dropconnect as ddc

from ..method_registry import weight_slots
from .seeds import named_generator

__all__ = ["FRACTIONS", "HOW", "plain_model", "pruned", "pruning_accuracy", "target_weights"]

FRACTIONS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
HOW: tuple[str, ...] = ("random", "magnitude")


def plain_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without weight regularizers (eval-mode forward unchanged)."""
    plain = copy.deepcopy(model)
    if ddc.regularized_layers(plain):
        ddc.remove(plain)
    return plain.eval()


def target_weights(plain: nn.Module) -> dict[str, Tensor]:
    """``{name: weight}`` of ``plain``'s regularized layers (the names ``ddc.apply`` gives).

    Found by attaching DropConnect to a copy with the model's ``regularized_layers`` patterns,
    the same way the suite's methods attach; raises ValueError when nothing matches."""
    patterns = list(weight_slots(plain))
    probe = ddc.apply(copy.deepcopy(plain), "dropconnect", include=patterns, p=0.5)
    names = list(ddc.regularized_layers(probe))
    if not names:
        raise ValueError(f"no regularized layer matches {patterns} in {type(plain).__name__}")
    out: dict[str, Tensor] = {}
    for name in names:
        try:
            module = plain.get_submodule(name)
            weight = module.weight if isinstance(module.weight, Tensor) else None
        except AttributeError:
            weight = None
        out[name] = weight if weight is not None else plain.get_parameter(name)
    return out


def _order(weight: Tensor, how: str, seed: int, name: str) -> Tensor:
    """Flat indices in removal order."""
    flat = weight.detach().reshape(-1)
    if how == "magnitude":
        return torch.sort(flat.abs().cpu(), stable=True).indices
    if how == "random":
        return torch.randperm(flat.numel(), generator=named_generator(seed, name))
    raise ValueError(f"unknown pruning {how!r}; valid: {', '.join(HOW)}")


def pruned(plain: nn.Module, fraction: float, how: str, seed: int = 0) -> nn.Module:
    """A copy of ``plain`` (from :func:`plain_model`) with ``fraction`` of each regularized
    weight tensor set to zero; RuntimeError if the forward does not see the zeros."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    model = copy.deepcopy(plain)
    removed: dict[str, int] = {}
    with torch.no_grad():
        for name, weight in target_weights(model).items():
            k = removed[name] = round(fraction * weight.numel())
            drop = _order(weight, how, seed, name)[:k].to(weight.device)
            module = _parametrized_module(model, name)
            if module is None:
                weight.view(-1)[drop] = 0
            else:
                keep = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
                keep[drop] = False
                parametrize.register_parametrization(module, "weight", _Keep(keep.view_as(weight)))
        for name, weight in target_weights(model).items():  # what the forward reads now
            zeros = int((weight == 0).sum())
            if zeros < removed[name]:
                raise RuntimeError(
                    f"pruning {name}: the forward's weight has {zeros} zeros after "
                    f"{removed[name]} were set; it is computed from other tensors by something "
                    "other than torch.nn.utils.parametrize: remove that before evaluating edge "
                    "removal"
                )
    return model


class _Keep(nn.Module):
    """The last parametrization of a pruned parametrized weight: zero where ``keep`` is False."""

    def __init__(self, keep: Tensor) -> None:
        super().__init__()
        self.register_buffer("keep", keep)

    def forward(self, weight: Tensor) -> Tensor:
        return torch.where(self.keep, weight, torch.zeros_like(weight))


def _parametrized_module(model: nn.Module, name: str) -> nn.Module | None:
    """The module behind ``name`` when its ``weight`` is computed by ``torch.nn.utils.
    parametrize`` (``weight_norm``, ``spectral_norm``): zeroing that computed tensor would
    change a temporary copy, so the zeros go in as one more parametrization. Not
    ``remove_parametrizations``: it deletes the property from the class, which a deep copy
    shares with the original model."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return None  # a parameter of a module (an RNN's weight_hh_l0)
    return module if parametrize.is_parametrized(module, "weight") else None


def pruning_accuracy(
    plain: nn.Module,
    accuracy: Callable[[nn.Module], float],
    *,
    fractions: Sequence[float] = FRACTIONS,
    how: Sequence[str] = HOW,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{how: {str(f): accuracy(pruned model)}}``."""
    return {h: {str(f): accuracy(pruned(plain, f, h, seed)) for f in fractions} for h in how}
