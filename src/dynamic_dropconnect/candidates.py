"""Which weights of a model DDC can regularize, how, and which it selects by default.

:func:`find_candidates` walks a model once and describes every weight that
:func:`~dynamic_dropconnect.apply` could regularize or that :func:`~dynamic_dropconnect.summary`
lists: who holds it, whose forward reads it, which mechanism would regularize it (class swap
or hooks) and why it is left out of the default selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from torch import Tensor, nn
from torch.nn.modules.conv import _ConvTransposeNd
from torch.nn.parameter import UninitializedParameter
from torch.nn.utils import parametrize

from .base import WeightRegularizer
from .layers import is_swapped, layer_class, weight_template
from .parameters import SUFFIX

__all__ = ["Candidate", "find_candidates"]


@dataclass(frozen=True)
class Candidate:
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

    def matches(self, pattern: str) -> bool:
        """Whether the glob ``pattern`` selects this weight (by its name, or its module's)."""
        if fnmatchcase(self.name, pattern):
            return True
        if not self.module_level:
            return False
        return fnmatchcase(self.module_name, pattern) or (
            self.owner is not self.holder and fnmatchcase(self.owner_name, pattern)
        )

    def regularizer(self) -> WeightRegularizer | None:
        """The regularizer this weight has now, by either mechanism; ``None`` if none."""
        if self.swap:
            found = self.holder._modules.get("regularizer") if is_swapped(self.holder) else None
        else:
            found = self.holder._modules.get(self.param + SUFFIX)
        return found if isinstance(found, WeightRegularizer) else None

    @property
    def reason(self) -> str:
        """Why this weight is left out when it is not regularized."""
        if not self.supported:
            return f"not supported: {self.note}"
        if self.note:
            return self.note
        return "not selected (include=/exclude=)"


def _is_hf_conv1d(module: nn.Module) -> bool:
    # transformers.pytorch_utils.Conv1D (GPT-2): y = x @ W + b with W of shape (in, out).
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


def find_candidates(model: nn.Module) -> list[Candidate]:
    """Every weight of ``model`` that DDC could regularize or that the summary lists."""
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

    out: list[Candidate] = []

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
            if isinstance(weight, UninitializedParameter):  # a lazy module before its 1st call
                default, supported, shape = False, False, ()
                note = (
                    f"uninitialized parameter of {type(module).__name__} (a lazy module): run one "
                    "forward pass (model(example_input)) before apply"
                )
            else:
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
            Candidate(
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
        if layer_class(type(module)) is not None or is_swapped(module):
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
