"""Looking inside a regularized model: drop statistics and Monte-Carlo prediction."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .regularizers import DynamicDropConnect, WeightDrop
from .standout import Standout
from .surgery import regularized_layers

__all__ = ["drop_probabilities", "drop_stats", "mc_predict"]


def drop_probabilities(model: nn.Module) -> dict[str, Tensor]:
    """``{layer: p_ij}`` that the next training forward of each regularized layer would use."""
    out: dict[str, Tensor] = {}
    for name, reg in regularized_layers(model).items():
        weight = model.get_submodule(name).weight
        with torch.no_grad():
            probs = reg.drop_probabilities(weight)
        out[name] = probs if isinstance(probs, Tensor) else torch.full_like(weight, probs)
    return out


def drop_stats(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per regularized layer: what the regularizer did last and will do next.

    Keys of each entry:

    - ``method``: ``"ddc"`` or ``"dropconnect"``; ``numel``: number of edges.
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
            "method": "ddc" if isinstance(reg, DynamicDropConnect) else "dropconnect",
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


_STOCHASTIC = (
    WeightDrop,
    Standout,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)


@torch.no_grad()
def mc_predict(
    model: nn.Module, x: Tensor, n_samples: int = 20, *, return_samples: bool = False
) -> Tensor:
    """Monte-Carlo prediction: average ``softmax`` over ``n_samples`` stochastic passes.

    Every weight regularizer, Standout and Dropout module samples masks as in training;
    everything else (BatchNorm above all) runs in eval mode. Each module's train/eval flag is
    restored afterwards, and no gradient statistic is recorded (no backward runs).

    Returns:
        ``(N, C)`` mean class probabilities, or with ``return_samples`` the ``(n_samples, N,
        C)`` probabilities of each pass.
    """
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        for module in model.modules():
            if isinstance(module, _STOCHASTIC):
                module.train()
        samples = torch.stack([torch.softmax(model(x), dim=-1) for _ in range(n_samples)])
    finally:
        for module, mode in modes.items():
            module.training = mode
    return samples if return_samples else samples.mean(0)
