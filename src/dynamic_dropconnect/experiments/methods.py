"""The compared regularization methods, as functions that modify a plain model in place.

Every model of :mod:`.models` has named slots: ``linear1`` (the paper's regularized layer),
``act1`` (a ReLU that Standout replaces) and ``drop1`` (an Identity that Dropout replaces);
VGG has ``act2``/``drop2`` too. DropConnect and every DDC variant share one ``update`` and
``rescale`` setting, so runs differ only in how ``p_ij`` is chosen; the ``*-unbiased``
controls alone change the rescale on purpose.

Controls (each removes one ingredient of DDC / ``ddc-learned``; they take the experiment's
options of their ``base`` method, so they run at the same rates):

- ``ddc-shuffled``, ``ddc-learned-shuffled``: the layer's ``p_ij`` randomly permuted over its
  edges at every step. Same rates, noise and rescale amplification; no gradient guidance.
- ``ddc-unbiased``, ``ddc-learned-unbiased``: per-edge rescale ``1 / (1 - p_ij)``, so
  ``E[W_eff] = W`` for every edge: no amplification of rarely dropped edges (with the global
  rescale an edge at ``p_ij = 0.02`` has expected weight ``1.96 W`` at mean rate 0.5).
- variance-matched DropConnect: ``dropconnect`` at :func:`variance_matched_rate` of a run's
  logged mean mask variance (metrics.csv column ``mask_var/<layer>``), via
  :func:`variance_matched_options`: the same amount of mask noise as that run, uniform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

import dynamic_dropconnect as ddc

from ..functional import variance_matched_rate
from .models import LockedDropout

__all__ = [
    "CONTROL_METHODS",
    "MAIN_METHODS",
    "METHODS",
    "Method",
    "apply_method",
    "experiment_overrides",
    "variance_matched_options",
    "variance_matched_rate",
]


@dataclass(frozen=True)
class Method:
    """A named regularizer setting. ``kind``: none, dropout, standout or a weight method.

    ``base``: for a control, the method whose per-experiment options it takes too (see
    :func:`experiment_overrides`); its own ``options`` win over them.
    """

    name: str
    kind: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    base: str | None = None


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
        Method(
            "ddc-shuffled",
            "ddc",
            "control: DDC's p_ij randomly permuted over the layer's edges every step",
            {"shuffle": True},
            base="ddc",
        ),
        Method(
            "ddc-unbiased",
            "ddc",
            "control: DDC with per-edge rescale 1/(1-p_ij), E[W_eff] = W per edge",
            {"rescale": "per_edge"},
            base="ddc",
        ),
        Method(
            "ddc-learned-shuffled",
            "ddc-learned",
            "control: ddc-learned's rates randomly permuted over the edges every step",
            {"target": 0.5, "shuffle": True},
            base="ddc-learned",
        ),
        Method(
            "ddc-learned-unbiased",
            "ddc-learned",
            "control: ddc-learned with per-edge rescale 1/(1-p_ij), E[W_eff] = W per edge",
            {"target": 0.5, "rescale": "per_edge"},
            base="ddc-learned",
        ),
    ]
}
MAIN_METHODS: tuple[str, ...] = ("none", "dropout", "dropconnect", "standout", "ddc")
#: The controls of the guidance question (see the module docstring).
CONTROL_METHODS: tuple[str, ...] = (
    "ddc-shuffled",
    "ddc-unbiased",
    "ddc-learned-shuffled",
    "ddc-learned-unbiased",
)


def experiment_overrides(
    method_options: Mapping[str, Mapping[str, Any]], name: str
) -> dict[str, Any]:
    """The options an experiment's ``method_options`` give method ``name``.

    A control takes its base method's options first (so ``ddc-shuffled`` runs at the ``p``,
    ``pg`` the experiment gives ``ddc``), minus the options that define the control, then its
    own entry. Other methods: their own entry only, as before.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    method = METHODS[name]
    inherited: dict[str, Any] = {}
    if method.base is not None:
        fixed = set(METHODS[name].options) - set(METHODS[method.base].options)
        base = method_options.get(method.base, {})
        inherited = {k: v for k, v in base.items() if k not in fixed}
    return {**inherited, **method_options.get(name, {})}


def variance_matched_options(mask_var: float) -> dict[str, Any]:
    """Overrides of ``dropconnect`` (``apply_method(model, "dropconnect", overrides)``, or a
    run's ``method_options``) giving the mean mask variance ``mask_var``: ``{"p": rate}`` with
    ``rate = variance_matched_rate(mask_var)``, e.g. ``0.13 -> p = 0.1536`` where DropConnect
    at the same mean rate 0.5 has variance 0.25. Read ``mask_var`` from a run with
    :func:`~dynamic_dropconnect.experiments.training.read_mask_variance`."""
    return {"p": variance_matched_rate(mask_var)}


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
