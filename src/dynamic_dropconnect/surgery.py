"""Model surgery: put regularizers on the layers of any model, and take them off again."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from torch import Tensor, nn

from .layers import REGULARIZABLE, attach, detach, is_regularized
from .regularizers import DropConnect, DynamicDropConnect, WeightDrop

__all__ = ["METHODS", "apply", "plain_state_dict", "regularized_layers", "remove"]

METHODS: dict[str, type[WeightDrop]] = {"ddc": DynamicDropConnect, "dropconnect": DropConnect}


def _patterns(name: str, value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, Iterable) or not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"{name} must be a glob pattern or a list of them, got {value!r}")
    return list(patterns)


def apply(
    model: nn.Module,
    method: str = "ddc",
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    **hyperparams: Any,
) -> nn.Module:
    """Regularize layers of ``model`` in place with ``method``; returns ``model``.

    Args:
        model: any ``nn.Module``. Its ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d``/``nn.Conv3d``
            layers can be regularized; the module objects, their parameters (so an optimizer
            built before keeps working) and the ``*.weight`` state_dict keys stay.
        method: ``"ddc"`` (:class:`DynamicDropConnect`) or ``"dropconnect"``
            (:class:`DropConnect`).
        include: glob pattern(s) on qualified module names (``model.named_modules()``, the
            model itself is ``""``), e.g. ``"linear1"`` or ``"features.*"``. Default: every
            ``nn.Linear``. Each pattern must select at least one regularizable layer.
        exclude: glob pattern(s) removed from the selection; each must name some module.
        **hyperparams: passed to the regularizer's constructor (``p``, ``pg``, ``tau``,
            ``rescale``, ``update``, ``mask_mode``, ``generator``, ...). Each layer gets its
            own regularizer instance.

    Raises:
        ValueError: unknown method, a pattern that names no module, nothing selected, or a
            selected layer that already has a regularizer.

    Examples::

        >>> model = ddc.apply(model, "ddc", include=["classifier.*"], p=0.3, pg=0.5)
        >>> model = ddc.remove(model)  # plain layers again, trained weights kept
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    # Fail on bad hyperparameters before touching the model.
    METHODS[method](**hyperparams)
    named = dict(model.named_modules())
    candidates = {n: m for n, m in named.items() if type(m) in REGULARIZABLE or is_regularized(m)}
    available = ", ".join(repr(n) for n in candidates) or "(none)"
    include_patterns = _patterns("include", include)
    exclude_patterns = _patterns("exclude", exclude) or []

    if include_patterns is None:
        selected = [n for n, m in candidates.items() if type(m) is nn.Linear or _is_linear(m)]
        if not selected:
            raise ValueError(
                f"{type(model).__name__} has no nn.Linear layer to regularize; pass include= "
                f"patterns (regularizable layers: {available})"
            )
    else:
        selected = []
        for pattern in include_patterns:
            hits = [n for n in candidates if fnmatchcase(n, pattern)]
            if not hits:
                named_hits = [n for n in named if fnmatchcase(n, pattern)]
                what = (
                    f"names only non-regularizable modules ({', '.join(named_hits[:5])})"
                    if named_hits
                    else "matches no module"
                )
                raise ValueError(
                    f"include pattern {pattern!r} {what}; regularizable layers: {available}"
                )
            selected += [n for n in hits if n not in selected]
    for pattern in exclude_patterns:
        if not any(fnmatchcase(n, pattern) for n in named):
            raise ValueError(
                f"exclude pattern {pattern!r} matches no module; modules: "
                f"{', '.join(repr(n) for n in list(named)[:40])}"
            )
    selected = [n for n in selected if not any(fnmatchcase(n, p) for p in exclude_patterns)]
    if not selected:
        raise ValueError(f"exclude removed every selected layer; regularizable layers: {available}")
    already = [n for n in selected if is_regularized(named[n])]
    if already:
        raise ValueError(
            f"layers already regularized: {', '.join(map(repr, already))}; "
            "call dynamic_dropconnect.remove(model) first"
        )
    for name in selected:
        attach(named[name], METHODS[method](**hyperparams))
    return model


def _is_linear(module: nn.Module) -> bool:
    return is_regularized(module) and isinstance(module, nn.Linear)


def remove(model: nn.Module) -> nn.Module:
    """Take every regularizer off ``model`` in place: plain layers, trained weights kept."""
    for module in list(model.modules()):
        if is_regularized(module):
            detach(module)
    return model


def regularized_layers(model: nn.Module) -> dict[str, WeightDrop]:
    """``{qualified layer name: its regularizer}`` for every regularized layer of ``model``."""
    return {
        name: module.regularizer  # type: ignore[misc]
        for name, module in model.named_modules()
        if is_regularized(module)
    }


def plain_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` without regularizer state: loads strictly into the plain model.

    The full ``state_dict()`` also holds each DDC layer's gradient statistic (so a resumed run
    is exact); a plain model would report those entries as unexpected keys.
    """
    prefixes = tuple(
        f"{name}.regularizer." if name else "regularizer." for name in regularized_layers(model)
    )
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
