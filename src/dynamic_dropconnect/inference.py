"""Looking inside a regularized model: drop statistics, learned rate curves and Monte-Carlo
prediction."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .base import WeightRegularizer
from .learned import LearnedDropConnect
from .montecarlo import STOCHASTIC_TYPES, is_active, mc_passes
from .regularized import regularized_layers, regularized_weights
from .regularizers import DynamicDropConnect
from .surgery import REGULARIZERS

__all__ = ["drop_probabilities", "drop_stats", "learned_curves", "mc_predict"]

logger = logging.getLogger("dynamic_dropconnect")


def drop_probabilities(model: nn.Module) -> dict[str, Tensor]:
    """``{layer: p_ij}`` that the next training forward of each regularized layer would use."""
    out: dict[str, Tensor] = {}
    for name, (reg, weight) in regularized_weights(model).items():
        with torch.no_grad():
            probs = reg.drop_probabilities(weight)
        out[name] = probs if isinstance(probs, Tensor) else torch.full_like(weight, probs)
    return out


def _method_name(reg: WeightRegularizer) -> str:
    return next(
        (name for name, cls in REGULARIZERS.items() if type(reg) is cls), type(reg).__name__
    )


def drop_stats(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per regularized layer: what the regularizer did last and will do next.

    Keys of each entry:

    - ``method``: ``"ddc"``, ``"dropconnect"`` or ``"ddc-learned"``; ``numel``: edges.
    - ``mean_drop_prob``: mean ``p_ij`` of the last training forward (NaN before any).
    - ``drop_rate``: realized drop rate of the last mask, ``1 - sum(M)/numel`` (NaN before any).
    - ``next_mean_drop_prob``, ``next_min_drop_prob``, ``next_max_drop_prob``: ``p_ij`` the
      next forward would use.
    - DDC only: ``extra_drop_fraction`` (edges with ``p_ij > p``), ``has_gradient``,
      ``grad_mean``/``grad_std`` of the stored ``|dL/dW_eff|``.

    Reading these synchronises with the device: call it every few steps, not in the hot loop.
    """
    stats: dict[str, dict[str, Any]] = {}
    probabilities = drop_probabilities(model)
    for name, reg in regularized_layers(model).items():
        probs = probabilities[name]
        entry: dict[str, Any] = {
            "method": _method_name(reg),
            "numel": probs.numel(),
            "mean_drop_prob": float(reg.last_mean_drop_prob),
            "drop_rate": 1.0 - float(reg.last_kept_fraction),
            "next_mean_drop_prob": float(probs.mean()),
            "next_min_drop_prob": float(probs.min()),
            "next_max_drop_prob": float(probs.max()),
        }
        if isinstance(reg, DynamicDropConnect):
            entry["extra_drop_fraction"] = float((probs > reg.p + 1e-7).float().mean())
            entry["has_gradient"] = bool(reg.has_gradient)
            if reg.statistic == "gradient":
                entry["grad_mean"] = float(reg.grad_magnitude.mean())
                entry["grad_std"] = float(reg.grad_magnitude.std())
        stats[name] = entry
    return stats


def learned_curves(model: nn.Module, z: Tensor | None = None) -> dict[str, dict[str, list[float]]]:
    """What each learned layer's ``f_theta`` does: ``p`` against the gradient z-score, with the
    other features at their layer means (``z(|W|) = 0``, ``s`` and ``p_prev`` averaged)."""
    z = torch.linspace(-3, 3, 25) if z is None else z
    curves = {}
    for name, (reg, weight) in regularized_weights(model).items():
        if not isinstance(reg, LearnedDropConnect):
            continue
        with torch.no_grad():
            feats = reg.features(weight).mean(0).repeat(len(z), 1)
            feats[:, 0], feats[:, 1] = z.to(feats), 0.0
            p = reg.rate_model(feats)
        curves[name] = {"z": z.tolist(), "p": p.tolist()}
    return curves


@contextlib.contextmanager
def _fused_paths_off() -> Iterator[None]:
    """Turn off PyTorch's fused Transformer/attention inference paths: in eval mode under
    no_grad they read weights such as ``linear1.weight`` directly and would skip the masks."""
    backend = getattr(torch.backends, "mha", None)
    if backend is None or not hasattr(backend, "set_fastpath_enabled"):
        yield
        return
    before = backend.get_fastpath_enabled()
    backend.set_fastpath_enabled(False)
    try:
        yield
    finally:
        backend.set_fastpath_enabled(before)


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def _logits(output: Any) -> Tensor:
    """The logits tensor of a model output: a tensor, a dict or an object with ``.logits``
    (Hugging Face ``ModelOutput``), or the first element of a tuple."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping) and "logits" in output:
        return output["logits"]
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(
        f"mc_predict: cannot find logits in a model output of type {type(output).__name__}; "
        "return a tensor, a dict or object with 'logits', or pass forward_fn= that returns them"
    )


@torch.no_grad()
def mc_predict(
    model: nn.Module,
    inputs: Any,
    n_samples: int = 20,
    *,
    return_samples: bool = False,
    forward_fn: Callable[[nn.Module, Any], Any] | None = None,
    check_spread: bool = True,
    fast: bool = True,
) -> Tensor:
    """Monte-Carlo prediction: average ``softmax`` over ``n_samples`` stochastic passes.

    Every weight regularizer, Standout and Dropout module samples masks as in training;
    everything else (BatchNorm above all) runs in eval mode. PyTorch's fused Transformer and
    attention inference paths are turned off meanwhile (they read weights directly and would
    bypass the masks). Each module's train/eval flag and the fast-path setting are restored
    afterwards, and no gradient statistic is recorded (no backward runs).

    Args:
        model: the network.
        inputs: a tensor (``model(inputs)``), a tuple/list (``model(*inputs)``) or a dict
            (``model(**inputs)``, e.g. a Hugging Face batch).
        n_samples: number of stochastic passes, ``>= 1``.
        return_samples: return every pass instead of the mean.
        forward_fn: ``forward_fn(model, inputs) -> output`` instead of the call above.
        check_spread: with ``n_samples >= 2`` and an active stochastic module, raise if all
            passes came out identical (a sign that some path bypassed the masks).
        fast: compute the part of the network before the first random module once and repeat
            only the rest, batched over passes where it can (:mod:`.montecarlo`; tensor inputs
            and no ``forward_fn``; a model ``torch.fx`` cannot trace falls back by itself).
            ``False``: whole passes in a loop. The path taken is logged at DEBUG level.

    Cost: with DDC on the head of a CNN, ``T`` passes cost little more than one (the
    convolutions run once, the head's passes are batched). With every layer random there is
    nothing to share, and regularized convolutions run once per pass (batched, they were
    slower); see ``benchmarks/mc_predict.py``.

    The model output may be a tensor of logits, a dict with ``"logits"``, an object with a
    ``.logits`` attribute (Hugging Face ``ModelOutput``) or a tuple whose first element is the
    logits.

    Returns:
        ``(..., C)`` mean class probabilities, or with ``return_samples`` the
        ``(n_samples, ..., C)`` probabilities of each pass.

    Raises:
        RuntimeError: the passes are identical although stochastic modules are active.
    """
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    forward = forward_fn or _call
    modes = {module: module.training for module in model.modules()}
    stochastic = [name for name, module in model.named_modules() if is_active(module)]

    def probabilities(output: Any) -> Tensor:
        return torch.softmax(_logits(output).float(), dim=-1)

    try:
        model.eval()
        for module in model.modules():
            if isinstance(module, STOCHASTIC_TYPES):
                module.train()
        with _fused_paths_off():
            samples = None
            if fast and forward_fn is None and isinstance(inputs, Tensor | tuple | list):
                samples = mc_passes(model, inputs, n_samples, probabilities)
            if samples is None:
                logger.debug("mc_predict: %d whole passes in a loop", n_samples)
                samples = torch.stack(
                    [probabilities(forward(model, inputs)) for _ in range(n_samples)]
                )
    finally:
        for module, mode in modes.items():
            module.training = mode
    if check_spread and n_samples >= 2 and stochastic and bool((samples == samples[0]).all()):
        raise RuntimeError(
            f"mc_predict: all {n_samples} passes gave identical probabilities although these "
            f"modules should sample masks: {', '.join(stochastic[:8])}. Some code path bypasses "
            "them (a fused kernel reading the weights directly?); pass check_spread=False if "
            "this is intended"
        )
    return samples if return_samples else samples.mean(0)
