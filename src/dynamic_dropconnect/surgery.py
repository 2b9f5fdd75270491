"""Model surgery: put regularizers on the weights of any model, report them, take them off.

Two mechanisms, one API. An exact ``nn.Linear``/``nn.Conv1d/2d/3d`` is regularized by a class
swap (:mod:`.layers`); every other supported weight (attention projections, recurrent
matrices, Hugging Face ``Conv1D``, ``ConvTranspose``, Linear subclasses) by forward hooks on
the module that reads it (:mod:`.parameters`). Both keep parameter identity and state_dict keys.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvTransposeNd
from torch.nn.utils import parametrize

from .layers import attach, detach, is_regularized, layer_class, weight_template
from .learned import LearnedDropConnect
from .parameters import SUFFIX, attach_weight, detach_weight, regularized_parameters
from .regularizers import DropConnect, DynamicDropConnect, WeightRegularizer

__all__ = [
    "METHODS",
    "WeightEntry",
    "WeightSummary",
    "apply",
    "plain_state_dict",
    "regularized_layers",
    "remove",
    "summary",
]

logger = logging.getLogger("dynamic_dropconnect")

METHODS: dict[str, type[WeightRegularizer]] = {
    "ddc": DynamicDropConnect,
    "dropconnect": DropConnect,
    "ddc-learned": LearnedDropConnect,
}


# --------------------------------------------------------------------------------------------
# Which weights exist
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """One weight of the model that DDC could regularize (or that the summary lists)."""

    name: str  # qualified parameter name, e.g. "encoder.layers.0.self_attn.in_proj_weight"
    module_name: str  # the module holding it
    owner_name: str  # the module whose forward reads it
    holder: nn.Module
    owner: nn.Module
    param: str
    shape: tuple[int, ...]  # of the weight the forward uses (computed for a parametrization)
    swap: bool  # exact Linear/ConvNd (maybe parametrized or FSDP2): class swap; else hooks
    default: bool  # in apply's default selection
    module_level: bool  # selected when a pattern names its module
    note: str  # why it is not in the default selection
    supported: bool = True


def _is_hf_conv1d(module: nn.Module) -> bool:
    # transformers.pytorch_utils.Conv1D (GPT-2): y = x @ W + b with W of shape (in, out).
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


def _candidates(model: nn.Module) -> list[_Candidate]:
    named = list(model.named_modules())
    parent_of: dict[int, tuple[str, nn.Module]] = {}
    for name, module in named:
        for child in module.children():
            parent_of.setdefault(id(child), (name, module))
    users: dict[int, list[tuple[str, nn.Module]]] = {}
    for name, module in named:
        for param in module._parameters.values():
            if param is not None:
                users.setdefault(id(param), []).append((name, module))

    out: list[_Candidate] = []

    def add(
        name: str,
        module: nn.Module,
        param: str,
        *,
        owner: tuple[str, nn.Module] | None = None,
        swap: bool = False,
        default: bool = False,
        module_level: bool = True,
        note: str = "",
        supported: bool = True,
    ) -> None:
        if param in module._parameters:
            weight = module._parameters[param]
            if weight is None:  # registered as None (q/k/v_proj_weight of a packed attention)
                return
            shape = tuple(weight.shape)
        else:
            weight = None
            if swap:
                shape = tuple(weight_template(module).shape)
            else:  # the weight is computed; hooks can only swap a registered parameter
                computed = _computed_weight(module, param)
                if computed is None:
                    return
                shape, how = computed
                default, supported = False, False
                note = (
                    f"{how} weight of a {type(module).__name__}; DDC regularizes a computed "
                    "weight only of a plain nn.Linear/nn.ConvNd"
                )
        owner_name, owner_module = owner or (name, module)
        if default and weight is not None:
            tied = [
                f"{n or '(model)'} ({type(m).__name__})"
                for n, m in users.get(id(weight), [])
                if m is not module and isinstance(m, nn.Embedding | nn.EmbeddingBag)
            ]
            if tied:
                default, note = False, f"tied to the embedding {', '.join(tied)}"
        out.append(
            _Candidate(
                f"{name}.{param}" if name else param,
                name,
                owner_name,
                module,
                owner_module,
                param,
                shape,
                swap,
                default,
                module_level,
                note,
                supported,
            )
        )

    for name, module in named:
        # also under a parametrization or FSDP2
        if layer_class(type(module)) is not None or is_regularized(module):
            linear = isinstance(module, nn.Linear)
            note = "" if linear else "convolution: name it in include= to regularize it"
            add(name, module, "weight", swap=True, default=linear, note=note)
        elif isinstance(module, nn.Linear):  # a subclass: hooks, its forward may be bypassed
            parent = parent_of.get(id(module))
            reads_it = parent if parent and isinstance(parent[1], nn.MultiheadAttention) else None
            add(name, module, "weight", owner=reads_it, default=True)
        elif _is_hf_conv1d(module):
            add(name, module, "weight", default=True)
        elif isinstance(module, _ConvTransposeNd):
            add(name, module, "weight", note="convolution: name it in include= to regularize it")
        elif isinstance(module, nn.MultiheadAttention):
            for param in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                add(name, module, param, default=True)
        elif isinstance(module, nn.RNNBase):
            for param in module._flat_weights_names:
                qualified = f"{name}.{param}" if name else param
                if param.startswith("weight_hh"):
                    note = (
                        f"recurrent weight: name it (include={name!r} or {qualified!r}; "
                        "AWD-LSTM weight drop)"
                    )
                    add(name, module, param, note=note)
                elif param.startswith("weight_hr"):
                    note = f"projection weight of an LSTM: name it ({qualified!r})"
                    add(name, module, param, module_level=False, note=note)
                elif param.startswith("weight_"):
                    note = f"input weight of a recurrent layer: name it ({qualified!r})"
                    add(name, module, param, module_level=False, note=note)
        elif isinstance(module, nn.Embedding | nn.EmbeddingBag):
            add(
                name,
                module,
                "weight",
                note="embedding table (a lookup, not edges)",
                supported=False,
            )
    return out


def _computed_weight(module: nn.Module, param: str) -> tuple[tuple[int, ...], str] | None:
    """Shape of a weight that is not a registered parameter, and what computes it."""
    if parametrize.is_parametrized(module, param):
        originals = list(module.parametrizations[param].parameters())  # type: ignore[index]
        biggest = max(originals, key=lambda t: t.numel())
        return tuple(biggest.shape), "parametrized (torch.nn.utils.parametrize)"
    stored = module.__dict__.get(param)
    if isinstance(stored, Tensor):
        # torch.nn.utils.weight_norm/spectral_norm set it in a pre-hook; FSDP1 (flat parameters)
        return tuple(stored.shape), "computed (not a registered parameter)"
    return None


def _matches(candidate: _Candidate, pattern: str) -> bool:
    if fnmatchcase(candidate.name, pattern):
        return True
    if not candidate.module_level:
        return False
    return fnmatchcase(candidate.module_name, pattern) or (
        candidate.owner is not candidate.holder and fnmatchcase(candidate.owner_name, pattern)
    )


def _is_attached(candidate: _Candidate) -> bool:
    if candidate.swap:
        return is_regularized(candidate.holder)
    return candidate.param + SUFFIX in candidate.holder._modules


# --------------------------------------------------------------------------------------------
# apply / remove
# --------------------------------------------------------------------------------------------


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
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    cls = METHODS[method]
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


def _no_hit_message(model: nn.Module, pattern: str, candidates: list[_Candidate]) -> str:
    supported = [c for c in candidates if c.supported]
    available = _listing([c.name for c in supported])
    refused = [c for c in candidates if not c.supported and _matches(c, pattern)]
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
            ``mask_mode="sample"`` on a weight that is not a plain Linear/ConvNd.

    Examples::

        >>> model = ddc.apply(model, "ddc", include=["classifier.*"], p=0.3, pg=0.5)
        >>> lm = ddc.apply(lm, "dropconnect", include="rnn.weight_hh_l*", p=0.5)  # AWD-LSTM
        >>> print(ddc.summary(model))
        >>> model = ddc.remove(model)  # plain again, trained weights kept
    """
    _check_options(method, hyperparams)
    candidates = _candidates(model)
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
            hits = [c for c in supported if _matches(c, pattern)]
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
    selected = [c for c in selected if not any(_matches(c, p) for p in exclude_patterns)]
    if not selected:
        raise ValueError(
            "exclude removed every selected weight; regularizable weights: "
            f"{_listing([c.name for c in supported])}"
        )
    already = [c.name for c in selected if _is_attached(c)]
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
    for c in selected:
        regularizer = METHODS[method](**hyperparams)
        if c.swap:
            attach(c.holder, regularizer)
        else:
            attach_weight(c.owner, c.holder, c.param, regularizer)
    if logger.isEnabledFor(logging.INFO):
        left = [c for c in candidates if c not in selected and not _is_attached(c)]
        logger.info(
            "apply(%r): regularized %d weight(s): %s; left out %d: %s",
            method,
            len(selected),
            ", ".join(c.name for c in selected),
            len(left),
            "; ".join(f"{c.name} ({type(c.holder).__name__}: {_reason(c)})" for c in left)
            or "none",
        )
    return model


def remove(model: nn.Module) -> nn.Module:
    """Take every regularizer off ``model`` in place: plain modules, trained weights kept."""
    for owner, holder, name, _ in regularized_parameters(model).values():
        detach_weight(owner, holder, name)
    for module in list(model.modules()):
        if is_regularized(module):
            detach(module)
    return model


def regularized_layers(model: nn.Module) -> dict[str, WeightRegularizer]:
    """``{name: regularizer}`` of every regularized weight of ``model``.

    The name is the layer's for a regularized ``nn.Linear``/``nn.ConvNd`` (``"linear1"``) and
    the parameter's for any other weight (``"rnn.weight_hh_l0"``).
    """
    layers: dict[str, WeightRegularizer] = {
        name: module.regularizer  # type: ignore[misc]
        for name, module in model.named_modules()
        if is_regularized(module)
    }
    for name, (_, _, _, regularizer) in regularized_parameters(model).items():
        layers[name] = regularizer
    return layers


def regularized_weights(model: nn.Module) -> dict[str, tuple[WeightRegularizer, Tensor]]:
    """``{name (as regularized_layers): (regularizer, the weight its forward uses)}``.

    The weight is the plain parameter, or for a parametrized layer the parametrized weight,
    computed without side effects.
    """
    out: dict[str, tuple[WeightRegularizer, Tensor]] = {}
    for name, module in model.named_modules():
        if is_regularized(module):
            out[name] = (module.regularizer, _weight_now(module))  # type: ignore[assignment]
    for name, (_, holder, param, regularizer) in regularized_parameters(model).items():
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
                model.named_modules() if is_regularized(module)]  # fmt: skip
    for _, holder, param, _ in regularized_parameters(model).values():
        holder_name = names[id(holder)]
        prefixes.append(f"{holder_name}.{param}{SUFFIX}." if holder_name else f"{param}{SUFFIX}.")
    start = tuple(prefixes)
    return {k: v for k, v in model.state_dict().items() if not k.startswith(start)}


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightEntry:
    """One weight in a :class:`WeightSummary`."""

    name: str
    module_type: str
    shape: tuple[int, ...]
    regularizer: str | None  # e.g. "DynamicDropConnect(p=0.3, ...)"; None when left out
    reason: str  # why it was left out ("" when regularized)


class WeightSummary(list[WeightEntry]):
    """The table :func:`summary` returns; ``str()`` renders it."""

    @property
    def regularized(self) -> list[WeightEntry]:
        return [e for e in self if e.regularizer is not None]

    @property
    def skipped(self) -> list[WeightEntry]:
        return [e for e in self if e.regularizer is None]

    def __str__(self) -> str:
        rows = [("weight", "module", "shape", "regularizer / why left out")]
        for e in self:
            rows.append(
                (
                    e.name,
                    e.module_type,
                    "x".join(map(str, e.shape)),
                    e.regularizer if e.regularizer is not None else f"-- {e.reason}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
        lines.append(f"{len(self.regularized)} regularized, {len(self.skipped)} left out")
        return "\n".join(lines)


def _reason(candidate: _Candidate) -> str:
    if not candidate.supported:
        return f"not supported: {candidate.note}"
    if candidate.note:
        return candidate.note
    return "not selected (include=/exclude=)"


def summary(model: nn.Module) -> WeightSummary:
    """Every weight DDC could regularize in ``model``: which are regularized, with what, and
    why each other one is left out (convolutions and recurrent weights are named explicitly,
    weights tied to an embedding are left out by default, embeddings are not supported)."""
    entries = WeightSummary()
    for c in _candidates(model):
        regularizer: str | None = None
        if _is_attached(c):
            reg = c.holder.regularizer if c.swap else c.holder._modules[c.param + SUFFIX]
            regularizer = f"{type(reg).__name__}({reg.extra_repr()})"
        entries.append(
            WeightEntry(
                c.name,
                type(c.holder).__name__,
                c.shape,
                regularizer,
                "" if regularizer else _reason(c),
            )
        )
    return entries
