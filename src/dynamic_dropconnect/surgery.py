"""Model surgery: put regularizers on the weights of any model, and take them off.

Two mechanisms, one API. An exact ``nn.Linear``/``nn.Conv1d/2d/3d`` is regularized by a class
swap (:mod:`.layers`); every other supported weight (attention projections, recurrent
matrices, Hugging Face ``Conv1D``, ``ConvTranspose``, Linear subclasses) by forward hooks on
the module that reads it (:mod:`.parameters`). Both keep parameter identity and state_dict keys.
Which weights exist is :mod:`.candidates`; what is regularized now, :mod:`.regularized` and
:mod:`.reporting` (their functions are re-exported here).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from .base import WeightRegularizer
from .candidates import Candidate, find_candidates
from .checks import renamed_attribute
from .layers import attach, detach, is_swapped
from .learned import LearnedDropConnect
from .parameters import attach_weight, detach_weight, hooked_weights
from .regularized import plain_state_dict, regularized_layers, regularized_weights
from .regularizers import DropConnect, DynamicDropConnect
from .reporting import WeightEntry, WeightSummary, summary

__all__ = [
    "REGULARIZERS",
    "WeightEntry",
    "WeightSummary",
    "apply",
    "plain_state_dict",
    "regularized_layers",
    "regularized_weights",
    "remove",
    "summary",
]

logger = logging.getLogger("dynamic_dropconnect")

#: The library's regularizers by the name ``apply(model, method=...)`` takes.
REGULARIZERS: dict[str, type[WeightRegularizer]] = {
    "ddc": DynamicDropConnect,
    "dropconnect": DropConnect,
    "ddc-learned": LearnedDropConnect,
}

# Old name -> new name; the old one still works, with a DeprecationWarning. METHODS was also the
# name of the experiment suite's registry of training recipes.
_RENAMED = {"METHODS": "REGULARIZERS"}


def __getattr__(name: str) -> Any:
    return renamed_attribute(__name__, name, _RENAMED, globals())


def _patterns(name: str, value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, Iterable) or not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"{name} must be a glob pattern or a list of them, got {value!r}")
    return list(patterns)


def _option_names(cls: type[WeightRegularizer]) -> list[str]:
    names: list[str] = []
    for klass in (cls, WeightRegularizer):
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                names.append(p.name)
    return list(dict.fromkeys(names))


def _check_options(method: str, hyperparams: dict[str, Any]) -> None:
    if method not in REGULARIZERS:
        raise ValueError(
            f"method must be one of {', '.join(map(repr, REGULARIZERS))}, got {method!r}"
        )
    cls = REGULARIZERS[method]
    valid = _option_names(cls)
    unknown = [k for k in hyperparams if k not in valid]
    if unknown:
        hint = " (pg, tau, ... belong to method='ddc')" if method == "dropconnect" else ""
        raise TypeError(
            f"method {method!r} ({cls.__name__}) has no option {', '.join(map(repr, unknown))}"
            f"{hint}; its options: {', '.join(valid)}"
        )
    cls(**hyperparams)  # values: fail before touching the model


def _listing(names: list[str], limit: int = 30) -> str:
    shown = ", ".join(repr(n) for n in names[:limit]) or "(none)"
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _no_hit_message(model: nn.Module, pattern: str, candidates: list[Candidate]) -> str:
    supported = [c for c in candidates if c.supported]
    available = _listing([c.name for c in supported])
    refused = [c for c in candidates if not c.supported and c.matches(pattern)]
    if refused:
        why = "; ".join(f"{c.name}: {c.note}" for c in refused[:5])
        return (
            f"include pattern {pattern!r} selects only weights DDC cannot regularize ({why}); "
            f"regularizable weights: {available}"
        )
    if pattern == "":
        return (
            f"include pattern '' names the model itself ({type(model).__name__}), which holds no "
            f"weight DDC can regularize directly; name its layers or weights. Regularizable "
            f"weights: {available}"
        )
    modules = [(n, m) for n, m in model.named_modules() if n and fnmatchcase(n, pattern)]
    params = [n for n, _ in model.named_parameters() if fnmatchcase(n, pattern)]
    if modules:
        kinds = ", ".join(sorted({type(m).__name__ for _, m in modules}))
        what = (
            f"names only {kinds} modules ({_listing([n for n, _ in modules], 5)}), which hold no "
            "weight DDC can regularize"
        )
    elif params:
        what = f"names only parameters DDC does not regularize ({_listing(params, 5)})"
    else:
        what = "matches no module or parameter"
    return f"include pattern {pattern!r} {what}; regularizable weights: {available}"


def apply(
    model: nn.Module,
    method: str = "ddc",
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    **hyperparams: Any,
) -> nn.Module:
    """Regularize weights of ``model`` in place with ``method``; returns ``model``.

    Args:
        model: any ``nn.Module``.
        method: ``"ddc"`` (:class:`DynamicDropConnect`), ``"dropconnect"``
            (:class:`DropConnect`) or ``"ddc-learned"`` (:class:`LearnedDropConnect`).
        include: glob pattern(s) on qualified names. A pattern may name

            - a module (``model.named_modules()``; the model itself is ``""``): its weight(s):
              ``weight`` of a Linear (subclasses too), Conv, ConvTranspose or Hugging Face
              ``Conv1D``; ``in_proj_weight`` (or ``q/k/v_proj_weight``) and
              ``out_proj.weight`` of an ``nn.MultiheadAttention``; the hidden-to-hidden
              ``weight_hh_l*`` of an ``nn.LSTM``/``GRU``/``RNN`` (AWD-LSTM's weight drop);
            - a parameter (``model.named_parameters()``), e.g. ``"rnn.weight_ih_l0"``,
              ``"*.self_attn.in_proj_weight"``, ``"*.attn.c_attn.weight"``.

            Default: every Linear-like weight (Linear and its subclasses, attention
            projections, ``Conv1D``), except weights tied to an embedding. A parametrized
            ``nn.Linear``/``nn.ConvNd`` (``parametrizations.weight_norm``, ``spectral_norm``,
            ``register_parametrization``, or the old ``torch.nn.utils.weight_norm``) is
            regularized on its effective weight: the statistic is ``|dL/dW_eff|`` of the
            parametrized weight; a parametrized weight of any other module is listed in
            :func:`summary` as not supported. Each pattern must
            select at least one weight.
        exclude: glob pattern(s) on the same names, removed from the selection.
        **hyperparams: options of the method's regularizer (``p``, ``pg``, ``tau``,
            ``rescale``, ``update``, ``mask_mode``, ``generator``, ...). Each weight gets its
            own regularizer instance.

    What was regularized, and which Linear-like weights were left out and why, is logged
    (logger ``"dynamic_dropconnect"``, level INFO) and shown by :func:`summary`.

    Raises:
        ValueError: unknown method, a pattern that selects nothing, nothing selected, or a
            selected weight that already has a regularizer.
        TypeError: an option the method does not have, a wrong type, or
            ``mask_mode="example"`` on a weight that is not a plain Linear/ConvNd.

    Examples::

        >>> model = ddc.apply(model, "ddc", include=["classifier.*"], p=0.3, pg=0.5)
        >>> lm = ddc.apply(lm, "dropconnect", include="rnn.weight_hh_l*", p=0.5)  # AWD-LSTM
        >>> print(ddc.summary(model))
        >>> model = ddc.remove(model)  # plain again, trained weights kept
    """
    _check_options(method, hyperparams)
    candidates = find_candidates(model)
    supported = [c for c in candidates if c.supported]
    include_patterns = _patterns("include", include)
    exclude_patterns = _patterns("exclude", exclude) or []

    if include_patterns is None:
        selected = [c for c in supported if c.default]
        if not selected:
            raise ValueError(
                f"{type(model).__name__} has no Linear-like weight (nn.Linear, attention "
                f"projection, Conv1D) to regularize by default; pass include= (regularizable "
                f"weights: {_listing([c.name for c in supported])})"
            )
    else:
        selected = []
        for pattern in include_patterns:
            hits = [c for c in supported if c.matches(pattern)]
            if not hits:
                raise ValueError(_no_hit_message(model, pattern, candidates))
            selected += [c for c in hits if c not in selected]
    all_names = [n for n, _ in model.named_modules()] + [n for n, _ in model.named_parameters()]
    for pattern in exclude_patterns:
        if not any(fnmatchcase(n, pattern) for n in all_names):
            raise ValueError(
                f"exclude pattern {pattern!r} matches no module or parameter; modules: "
                f"{_listing([n for n, _ in model.named_modules()], 40)}"
            )
    selected = [c for c in selected if not any(c.matches(p) for p in exclude_patterns)]
    if not selected:
        raise ValueError(
            "exclude removed every selected weight; regularizable weights: "
            f"{_listing([c.name for c in supported])}"
        )
    already = [c.name for c in selected if c.regularizer() is not None]
    if already:
        raise ValueError(
            f"weights already regularized: {', '.join(map(repr, already))}; "
            "call dynamic_dropconnect.remove(model) first"
        )
    if hyperparams.get("mask_mode", "batch") != "batch":
        hooked = [c.name for c in selected if not c.swap]
        if hooked:
            raise TypeError(
                f"mask_mode={hyperparams['mask_mode']!r} needs a plain nn.Linear/nn.ConvNd "
                f"layer (it uses the layer input); these weights support mask_mode='batch' "
                f"only: {_listing(hooked, 10)}"
            )
    if hyperparams.get("mask_mode") == "sample":  # its old name: warned once, by _check_options
        hyperparams = {**hyperparams, "mask_mode": "example"}
    for c in selected:
        regularizer = REGULARIZERS[method](**hyperparams)
        if c.swap:
            attach(c.holder, regularizer)
        else:
            attach_weight(c.owner, c.holder, c.param, regularizer)
    if logger.isEnabledFor(logging.INFO):
        left = [c for c in candidates if c not in selected and c.regularizer() is None]
        logger.info(
            "apply(%r): regularized %d weight(s): %s; left out %d: %s",
            method,
            len(selected),
            ", ".join(c.name for c in selected),
            len(left),
            "; ".join(f"{c.name} ({type(c.holder).__name__}: {c.reason})" for c in left) or "none",
        )
    return model


def remove(model: nn.Module) -> nn.Module:
    """Take every regularizer off ``model`` in place: plain modules, trained weights kept."""
    for owner, holder, name, _ in hooked_weights(model).values():
        detach_weight(owner, holder, name)
    for module in list(model.modules()):
        if is_swapped(module):
            detach(module)
    return model
