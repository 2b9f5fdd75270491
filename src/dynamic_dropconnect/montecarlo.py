"""Monte-Carlo passes that pay only for what is random.

``T`` stochastic passes of a network share everything computed before its first random module.
:func:`mc_passes` traces the model with ``torch.fx``, computes that deterministic part once and
repeats only the rest:

- **batched**: when every random module after the split is a DropConnect/DDC ``Linear`` (one
  mask per weight, ``mask_mode="batch"``), a Dropout or Standout, the passes run as one forward
  under ``torch.func.vmap`` with one mask per pass (``randomness="different"``), in chunks of
  passes that bound memory;
- **loop**: otherwise (regularized convolutions, recurrent or attention weights behind hooks,
  learned rates, per-example masks, modules vmap cannot batch) the random part alone runs once
  per pass. A model with nothing deterministic to share and nothing to batch gives ``None``.

A model that ``torch.fx`` cannot trace (data-dependent control flow), inputs other than
tensors, or a model with hooks on its root module give ``None``: the caller then runs whole
passes. The path taken is logged at DEBUG level (logger ``"dynamic_dropconnect"``).

Exactness: with one regularized weight after the split and the same generator state, the batched
path draws the very masks the whole-pass loop would (``rand((T, *W))`` fills like ``T`` draws of
``rand(W)``); with several, masks are drawn layer by layer instead of pass by pass, so each pass
is still an independent draw of the same distribution.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from . import functional
from .base import WeightRegularizer
from .layers import RegularizedConv1d, RegularizedConv2d, RegularizedConv3d, RegularizedLinear
from .regularizers import DropConnect, DynamicDropConnect
from .standout import Standout

__all__ = ["STOCHASTIC_TYPES", "is_active", "mc_passes"]

logger = logging.getLogger("dynamic_dropconnect")

#: Modules that draw a mask in training mode: every torch Dropout (and subclasses such as a
#: locked dropout), Standout and every weight regularizer.
STOCHASTIC_TYPES: tuple[type[nn.Module], ...] = (
    WeightRegularizer,
    Standout,
    nn.modules.dropout._DropoutNd,
)

#: Memory budget of one chunk of batched passes: the outputs of the random part's nodes. Small
#: chunks measured faster on CPU than one big batch (cache), and bound memory.
DEFAULT_CHUNK_BYTES = 16 * 2**20

_SWAPPED = (RegularizedLinear, RegularizedConv1d, RegularizedConv2d, RegularizedConv3d)
# Names of functions and tensor methods that draw random numbers: such a node is random too.
_RANDOM_WORDS = ("rand", "dropout", "bernoulli", "normal", "multinomial", "poisson", "uniform")


def is_active(module: nn.Module) -> bool:
    """Whether ``module`` draws a non-trivial mask in training mode."""
    if isinstance(module, DynamicDropConnect):
        return module.p > 0 or module.pg > 0
    if isinstance(module, DropConnect):
        return module.p > 0
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return module.p > 0
    return isinstance(module, STOCHASTIC_TYPES)


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_pre_hooks or module._forward_hooks)


def _is_random(module: nn.Module) -> bool:
    return any(is_active(m) for m in module.modules())


def _batchable_regularizer(module: nn.Module) -> WeightRegularizer | None:
    """The regularizer of a swapped Linear whose masks this module can batch, else None.

    Convolutions are left to the loop: with a weight per pass, vmap runs a grouped convolution,
    measured 1.1-1.8x slower on CPU than one convolution per pass.
    """
    if not isinstance(module, RegularizedLinear) or _has_hooks(module):
        return None
    reg = module.regularizer
    if type(reg) not in (DropConnect, DynamicDropConnect) or reg.mask_mode != "batch":
        return None
    if reg.shuffle:  # its map is permuted afresh at every forward: loop the passes
        return None
    if any(is_active(m) for m in module.modules() if m is not module and m is not reg):
        return None
    return reg


def _batchable(module: nn.Module) -> bool:
    """Whether vmap over passes can run ``module`` (its randomness, if any, per pass)."""
    if _batchable_regularizer(module) is not None:
        return True
    if _has_hooks(module):
        return False
    if isinstance(module, nn.modules.dropout._DropoutNd | Standout):
        return not any(_has_hooks(m) for m in module.modules())
    return not _is_random(module) and not any(_has_hooks(m) for m in module.modules())


class _Tracer(fx.Tracer):
    """Keeps random modules, hooked modules and swapped layers opaque (their own forward and
    hooks run at evaluation), like torch's own layers."""

    def __init__(self, opaque: set[int]) -> None:
        super().__init__()
        self.opaque = opaque

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return id(m) in self.opaque or super().is_leaf_module(m, module_qualified_name)


@dataclass
class _Plan:
    """A traced model split into its deterministic nodes and the random rest."""

    graph: fx.Graph
    random: set[fx.Node]
    batchable: bool  # every random node can run under vmap


def _signature(model: nn.Module) -> tuple:
    return tuple(
        (name, id(m), type(m), len(m._forward_pre_hooks), len(m._forward_hooks))
        for name, m in model.named_modules()
    )


_PLANS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, _Plan | None]] = (
    weakref.WeakKeyDictionary()
)


def _random_target(target: Any) -> bool:
    name = getattr(target, "__name__", str(target)).lower()
    return any(word in name for word in _RANDOM_WORDS)


def _plan(model: nn.Module) -> _Plan | None:
    """Trace ``model`` (in its Monte-Carlo modes) and split it; ``None`` if it does not trace."""
    signature = _signature(model)
    cached = _PLANS.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    plan: _Plan | None = None
    opaque = {
        id(m)
        for m in model.modules()
        if m is not model and (isinstance(m, (*_SWAPPED, *STOCHASTIC_TYPES)) or _has_hooks(m))
    }
    try:
        graph = _Tracer(opaque).trace(model)
    except Exception as err:  # any tracing failure means: run whole passes
        logger.debug("mc_predict: torch.fx cannot trace %s (%s)", type(model).__name__, err)
    else:
        random: set[fx.Node] = set()
        batchable = True
        for node in graph.nodes:
            if node.op == "output":
                continue
            stochastic = False
            if node.op == "call_module":
                module = model.get_submodule(node.target)
                stochastic = _is_random(module)
            elif node.op in ("call_function", "call_method"):
                stochastic = _random_target(node.target)
            if stochastic or any(n in random for n in node.all_input_nodes):
                random.add(node)
                if node.op == "call_module":
                    batchable = batchable and _batchable(model.get_submodule(node.target))
        plan = _Plan(graph, random, batchable) if random else None
    _PLANS[model] = (signature, plan)
    return plan


def _fetch(model: nn.Module, target: str) -> Any:
    value: Any = model
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _run(
    model: nn.Module,
    node: fx.Node,
    env: dict[fx.Node, Any],
    call_module: Callable[[fx.Node, nn.Module, tuple, dict], Any] | None = None,
) -> Any:
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
    assert isinstance(args, tuple) and isinstance(kwargs, dict)
    if node.op == "get_attr":
        return _fetch(model, str(node.target))
    if node.op == "call_function":
        return node.target(*args, **kwargs)  # type: ignore[operator]
    if node.op == "call_method":
        obj, *rest = args
        return getattr(obj, str(node.target))(*rest, **kwargs)
    if node.op == "call_module":
        module = model.get_submodule(str(node.target))
        if call_module is not None:
            return call_module(node, module, args, kwargs)
        return module(*args, **kwargs)
    raise AssertionError(f"unexpected node {node.op}")


def _bind_inputs(graph: fx.Graph, inputs: tuple[Tensor, ...]) -> dict[fx.Node, Any] | None:
    env: dict[fx.Node, Any] = {}
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) > len(placeholders):
        return None
    for i, node in enumerate(placeholders):
        if str(node.target).startswith("*"):
            return None  # *args / **kwargs forwards: leave them to the plain call
        if i < len(inputs):
            env[node] = inputs[i]
        elif node.args:
            env[node] = node.args[0]  # the parameter's default
        else:
            return None
    return env


def _masked_linear(module: nn.Module, x: Tensor, scale: Tensor) -> Tensor:
    weight = module.weight * scale
    return torch.nn.functional.linear(x, weight, module.bias)


def mc_passes(
    model: nn.Module,
    inputs: Tensor | tuple[Tensor, ...] | list[Tensor],
    n_samples: int,
    postprocess: Callable[[Any], Tensor],
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Tensor | None:
    """``(n_samples, ...)`` stacked ``postprocess(model(inputs))`` of stochastic passes, with the
    deterministic part computed once; ``None`` where this cannot be done (see the module doc).

    The model must already be in its Monte-Carlo modes (random modules in training mode, the
    rest in eval) and gradients off.
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    if not all(isinstance(x, Tensor) for x in inputs) or _has_hooks(model):
        return None
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return None
    plan = _plan(model)
    if plan is None:
        return None
    env = _bind_inputs(plan.graph, tuple(inputs))
    if env is None:
        return None
    nodes = list(plan.graph.nodes)
    output = nodes[-1]
    for node in nodes:
        if node.op not in ("placeholder", "output") and node not in plan.random:
            env[node] = _run(model, node, env)
    random_nodes = [n for n in nodes if n in plan.random]
    # What the random part (and the output) reads from the deterministic rest.
    needed = {i for n in [*random_nodes, output] for i in n.all_input_nodes if i in env}
    frontier = {n: env[n] for n in needed}

    part = _RandomPart(model, random_nodes, frontier, output, postprocess)
    if not plan.batchable and not any(
        n.op.startswith("call") and n not in plan.random for n in nodes
    ):
        return None  # nothing deterministic to share and nothing to batch: whole passes
    if plan.batchable:
        samples = _batched(part, n_samples, chunk_bytes)
        if samples is not None:
            return samples
        plan.batchable = False  # vmap refused this model: loop from now on
    logger.debug(
        "mc_predict: %s split by torch.fx: %d deterministic node(s) once, %d random node(s) "
        "in a loop over %d passes",
        type(model).__name__,
        len(nodes) - len(random_nodes) - 1,
        len(random_nodes),
        n_samples,
    )
    return part.loop(n_samples)


@dataclass
class _RandomPart:
    """The nodes after the split, with the deterministic values they read."""

    model: nn.Module
    nodes: list[fx.Node]
    frontier: dict[fx.Node, Any]
    output: fx.Node
    postprocess: Callable[[Any], Tensor]

    def run(
        self,
        call_module: Callable[[fx.Node, nn.Module, tuple, dict], Any] | None = None,
        produced: list[int] | None = None,
    ) -> Tensor:
        """One pass; ``produced`` collects the bytes of every value it makes."""
        values = dict(self.frontier)
        for node in self.nodes:
            values[node] = _run(self.model, node, values, call_module)
            if produced is not None:
                produced.append(_nbytes(values[node]))  # under vmap: per-pass shapes
        return self.postprocess(fx.node.map_arg(self.output.args[0], lambda n: values[n]))

    def loop(self, n_samples: int) -> Tensor:
        """``n_samples`` passes one after another, each module drawing its own masks."""
        return torch.stack([self.run() for _ in range(n_samples)])


def _batched(part: _RandomPart, n_samples: int, chunk_bytes: int) -> Tensor | None:
    """The random part under ``vmap`` over passes, one mask per pass and regularized weight."""
    model, random_nodes = part.model, part.nodes
    masked: dict[str, tuple[nn.Module, WeightRegularizer, Tensor | float]] = {}
    for node in random_nodes:
        if node.op == "call_module":
            module = model.get_submodule(str(node.target))
            reg = _batchable_regularizer(module)
            if reg is not None and str(node.target) not in masked:
                weight = module.weight
                assert isinstance(weight, Tensor)
                masked[str(node.target)] = (module, reg, reg.drop_probabilities(weight.detach()))
    produced: list[int] = []  # bytes of every value one pass makes, measured on the first

    def one_pass(scales: dict[str, Tensor], _index: Tensor) -> Tensor:
        def call_module(node: fx.Node, module: nn.Module, args: tuple, kwargs: dict) -> Any:
            target = str(node.target)
            if target in scales:
                return _masked_linear(module, args[0], scales[target])
            return module(*args, **kwargs)

        return part.run(call_module, produced)

    batched = torch.func.vmap(one_pass, randomness="different")
    out: list[Tensor] = []
    done, chunk = 0, 1  # the first chunk is one pass: it measures the memory of a pass
    while done < n_samples:
        size = min(chunk, n_samples - done)
        scales = {}
        for target, (module, reg, probs) in masked.items():
            weight = module.weight.detach()  # type: ignore[union-attr]
            mask = functional.sample_keep_mask(weight, probs, reg.generator, batch=size)
            factor = functional.rescale_factor(mask, probs, reg.rescale, per_example=True)
            scales[target] = mask.div_(factor)
        index = torch.arange(size)  # gives vmap a batch size when no weight is masked
        try:
            out.append(batched(scales, index))
        except (RuntimeError, NotImplementedError, ValueError) as err:
            if done:
                raise
            logger.debug("mc_predict: vmap cannot batch the random part (%s)", err)
            return None
        done += size
        if done == size:
            chunk = max(1, min(n_samples, chunk_bytes // max(sum(produced), 1)))
            if chunk == 1 and done < n_samples:
                # One pass already fills the budget: vmap would only add overhead.
                logger.debug("mc_predict: one pass fills the chunk budget; looping the rest")
                rest = part.loop(n_samples - done)
                return torch.cat([*out, rest])
    logger.debug(
        "mc_predict: %s split by torch.fx: random part of %d node(s) batched over %d passes "
        "(chunks of %d)",
        type(model).__name__,
        len(random_nodes),
        n_samples,
        chunk,
    )
    return torch.cat(out)


def _nbytes(value: Any) -> int:
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return sum(_nbytes(v) for v in value)
    return 0
