"""The compared regularization methods, as functions that modify a plain model in place.

Every model of :mod:`.models` has named slots: ``linear1`` (the paper's regularized layer),
``act1`` (a ReLU that Standout replaces) and ``drop1`` (an Identity that Dropout replaces);
VGG has ``act2``/``drop2`` too. DropConnect and every DDC variant share one ``update`` and
``rescale`` setting, so runs differ only in how ``p_ij`` is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

import dynamic_dropconnect as ddc

from .models import LockedDropout

__all__ = ["MAIN_METHODS", "METHODS", "Method", "apply_method"]


@dataclass(frozen=True)
class Method:
    """A named regularizer setting. ``kind``: none, dropout, standout or a weight method."""

    name: str
    kind: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("none", "none", "no regularization"),
        Method(
            "dropout",
            "dropout",
            "Dropout p=0.5 after linear1 (VGG: after both hidden FCs)",
            {"p": 0.5},
        ),
        Method(
            "standout",
            "standout",
            "Standout (Ba & Frey 2013), alpha=1, beta=0, on act1",
            {"alpha": 1.0, "beta": 0.0},
        ),
        Method(
            "locked-dropout",
            "locked-dropout",
            "variational (locked) dropout p=0.5 on a recurrent model's inputs and outputs",
            {"p": 0.5},
        ),
        Method("dropconnect", "dropconnect", "DropConnect p=0.5 on linear1", {"p": 0.5}),
        Method("ddc", "ddc", "Dynamic DropConnect p=0.3, pg=0.5, tau=0.5 on linear1"),
        Method(
            "ddc-reference",
            "ddc",
            "DDC, authors' code semantics (preset='reference')",
            {"preset": "reference"},
        ),
        Method("ddc-big-gradient", "ddc", "ablation: drop big gradients", {"direction": "big"}),
        Method("ddc-small-weight", "ddc", "ablation: drop small |W|", {"statistic": "weight"}),
        Method(
            "ddc-big-weight",
            "ddc",
            "ablation: drop big |W|",
            {"statistic": "weight", "direction": "big"},
        ),
        Method(
            "ddc-masked-update", "ddc", "ablation: gradient through the mask", {"update": "masked"}
        ),
        Method("ddc-no-threshold", "ddc", "ablation: tau=0", {"tau": 0.0}),
        Method("ddc-no-zscore", "ddc", "ablation: z = |g|, no standardisation", {"zscore": False}),
        Method(
            "ddc-learned",
            "ddc-learned",
            "learned gradient-to-rate model (LearnedDropConnect), mean rate held at 0.5",
            {"target": 0.5},
        ),
    ]
}
MAIN_METHODS: tuple[str, ...] = ("none", "dropout", "dropconnect", "standout", "ddc")


def _slots(model: nn.Module, attribute: str, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(getattr(model, attribute, default))


def _needed(model: nn.Module, method: str, attribute: str, default: tuple[str, ...]) -> tuple:
    slots = _slots(model, attribute, default)
    if not slots or not all(hasattr(model, s) for s in slots):
        raise ValueError(
            f"method {method!r} needs the {attribute} of the model, which "
            f"{type(model).__name__} does not have ({list(slots)})"
        )
    return slots


def apply_method(model: nn.Module, name: str, overrides: dict[str, Any] | None = None) -> nn.Module:
    """Regularize ``model`` in place with method ``name`` (``overrides`` replace options)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    method = METHODS[name]
    options = {**method.options, **(overrides or {})}
    if method.kind == "dropout":
        for slot in _needed(model, name, "dropout_slots", ("drop1",)):
            setattr(model, slot, nn.Dropout(options["p"]))
    elif method.kind == "locked-dropout":
        for slot in _needed(model, name, "locked_slots", ()):
            setattr(model, slot, LockedDropout(options["p"]))
    elif method.kind == "standout":
        for slot in _needed(model, name, "activation_slots", ("act1",))[:1]:
            setattr(model, slot, ddc.Standout(options["alpha"], options["beta"]))
    elif method.kind in ("ddc", "dropconnect", "ddc-learned"):
        layers = _slots(model, "regularized_layers", ("linear1",))
        ddc.apply(model, method.kind, include=list(layers), **options)
    return model
