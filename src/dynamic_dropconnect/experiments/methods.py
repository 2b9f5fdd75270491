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

Every method, the built-ins here included, is registered with :func:`register_method` of
:mod:`.method_registry`, whose names stay importable from here.
"""

from __future__ import annotations

from typing import Any

from torch import nn

import dynamic_dropconnect as ddc

from ..functional import variance_matched_rate
from .method_registry import (
    METHOD_KINDS,
    METHODS,
    SLOT_DEFAULTS,
    Method,
    MethodKind,
    apply_method,
    experiment_overrides,
    register_method,
)
from .models import LockedDropout

__all__ = [
    "CONTROL_METHODS",
    "MAIN_METHODS",
    "METHODS",
    "METHOD_KINDS",
    "SLOT_DEFAULTS",
    "Method",
    "MethodKind",
    "apply_method",
    "experiment_overrides",
    "register_method",
    "variance_matched_options",
    "variance_matched_rate",
]


# The built-in methods, registered like a plugin's.
register_method("none", kind="none", description="no regularization")
register_method(
    "dropout",
    nn.Dropout,
    description="Dropout p=0.5 after linear1 (VGG: after both hidden FCs)",
    options={"p": 0.5},
    slots="dropout_slots",
)
register_method(
    "standout",
    ddc.Standout,
    description="Standout (Ba & Frey 2013), alpha=1, beta=0, on act1",
    options={"alpha": 1.0, "beta": 0.0},
    slots="activation_slots",
    first_slot_only=True,
)
register_method(
    "locked-dropout",
    LockedDropout,
    description="variational (locked) dropout p=0.5 on a recurrent model's inputs and outputs",
    options={"p": 0.5},
    slots="locked_slots",
)
register_method(
    "dropconnect",
    ddc.DropConnect,
    description="DropConnect p=0.5 on linear1",
    options={"p": 0.5},
)
register_method(
    "ddc",
    ddc.DynamicDropConnect,
    description="Dynamic DropConnect p=0.3, pg=0.5, tau=0.5 on linear1",
)
register_method(
    "ddc-reference",
    kind="ddc",
    description="DDC, authors' code semantics (preset='reference')",
    options={"preset": "reference"},
)
register_method(
    "ddc-big-gradient",
    kind="ddc",
    description="ablation: drop big gradients",
    options={"direction": "big"},
)
register_method(
    "ddc-small-weight",
    kind="ddc",
    description="ablation: drop small |W|",
    options={"statistic": "weight"},
)
register_method(
    "ddc-big-weight",
    kind="ddc",
    description="ablation: drop big |W|",
    options={"statistic": "weight", "direction": "big"},
)
register_method(
    "ddc-masked-update",
    kind="ddc",
    description="ablation: gradient through the mask",
    options={"update": "masked"},
)
register_method("ddc-no-threshold", kind="ddc", description="ablation: tau=0", options={"tau": 0.0})
register_method(
    "ddc-no-zscore",
    kind="ddc",
    description="ablation: z = |g|, no standardisation",
    options={"zscore": False},
)
register_method(
    "ddc-learned",
    ddc.LearnedDropConnect,
    description="learned gradient-to-rate model (LearnedDropConnect), mean rate held at 0.5",
    options={"target": 0.5},
)
register_method(
    "ddc-shuffled",
    kind="ddc",
    description="control: DDC's p_ij randomly permuted over the layer's edges every step",
    options={"shuffle": True},
    base="ddc",
)
register_method(
    "ddc-unbiased",
    kind="ddc",
    description="control: DDC with per-edge rescale 1/(1-p_ij), E[W_eff] = W per edge",
    options={"rescale": "per_edge"},
    base="ddc",
)
register_method(
    "ddc-learned-shuffled",
    kind="ddc-learned",
    description="control: ddc-learned's rates randomly permuted over the edges every step",
    options={"target": 0.5, "shuffle": True},
    base="ddc-learned",
)
register_method(
    "ddc-learned-unbiased",
    kind="ddc-learned",
    description="control: ddc-learned with per-edge rescale 1/(1-p_ij), E[W_eff] = W per edge",
    options={"target": 0.5, "rescale": "per_edge"},
    base="ddc-learned",
)
MAIN_METHODS: tuple[str, ...] = ("none", "dropout", "dropconnect", "standout", "ddc")
#: The controls of the guidance question (see the module docstring).
CONTROL_METHODS: tuple[str, ...] = (
    "ddc-shuffled",
    "ddc-unbiased",
    "ddc-learned-shuffled",
    "ddc-learned-unbiased",
)


def variance_matched_options(mask_var: float) -> dict[str, Any]:
    """Overrides of ``dropconnect`` (``apply_method(model, "dropconnect", overrides)``, or a
    run's ``method_options``) giving the mean mask variance ``mask_var``: ``{"p": rate}`` with
    ``rate = variance_matched_rate(mask_var)``, e.g. ``0.13 -> p = 0.1536`` where DropConnect
    at the same mean rate 0.5 has variance 0.25. Read ``mask_var`` from a run with
    :func:`~dynamic_dropconnect.experiments.training.read_mask_variance`."""
    return {"p": variance_matched_rate(mask_var)}
