"""Per-example weight masks (``mask_mode="example"``, Wan et al. 2013) with bounded memory.

A layer with an independent mask per example computes ``y_b = op(x_b, W * M_b / k_b)``. Done
naively, autograd keeps one masked weight per example alive until backward: ``batch x numel``
elements. Here the batch is processed in chunks whose masks fit a byte budget, and backward
*regenerates* each chunk's masks from a saved random-generator state instead of storing them,
so the extra memory is one chunk's worth in both passes (checkpointing for masks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .checks import renamed_attribute
from .functional import Record, RescaleMode, call_record, rescale_factor, sample_keep_mask

__all__ = ["BatchedOp", "chunk_size_for", "per_example_masked_op"]

# Old name -> new name; the old one still works, with a DeprecationWarning.
_RENAMED = {"per_sample_masked_op": "per_example_masked_op"}


def __getattr__(name: str) -> Any:
    return renamed_attribute(__name__, name, _RENAMED, globals())


# op(x_chunk, weights_chunk) -> y_chunk, with weights_chunk of shape (chunk, *weight.shape).
BatchedOp = Callable[[Tensor, Tensor], Tensor]

# Tensors of weight size alive per example in a chunk: the mask, the scaled mask and W_eff.
_WEIGHT_COPIES_PER_EXAMPLE = 3


def chunk_size_for(weight: Tensor, batch: int, max_bytes: int) -> int:
    """How many examples' masks fit in ``max_bytes`` (at least 1, at most ``batch``)."""
    per_example = weight.numel() * weight.element_size() * _WEIGHT_COPIES_PER_EXAMPLE
    return max(1, min(batch, max_bytes // max(per_example, 1)))


def _source(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """The generator masks are drawn from: the caller's, else the device's default one."""
    if generator is not None:
        return generator
    if device.type == "cpu":
        return torch.default_generator
    return torch.cuda.default_generators[device.index or torch.cuda.current_device()]


def _replay(state: Tensor, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.set_state(state)
    return generator


def _chunk_scales(
    weight: Tensor,
    probs: Tensor | float,
    batch: int,
    chunk: int,
    rescale: RescaleMode,
    generator: torch.Generator,
) -> Any:
    """Yield ``(start, stop, scale)`` with ``scale = M / k`` of shape (stop-start, *W.shape).

    The mask becomes the scale in place: one weight-sized tensor per example, not two.
    """
    for start in range(0, batch, chunk):
        stop = min(start + chunk, batch)
        mask = sample_keep_mask(weight, probs, generator, batch=stop - start)
        yield start, stop, mask.div_(rescale_factor(mask, probs, rescale, per_example=True))


class _PerExampleFn(torch.autograd.Function):
    # Each chunk's tensors are deleted before the next chunk's masks are drawn, so at most
    # one chunk of per-example weights is alive: the memory budget holds.

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        probs: Tensor | float,
        op: BatchedOp,
        options: dict[str, Any],
    ) -> Tensor:
        device = weight.device
        source = _source(options["generator"], device)
        state = source.get_state()
        # Draw from a copy so the caller's generator advances exactly as it would without
        # chunking: by one uniform per edge and example.
        replay = _replay(state, device)
        # The kept count as an integer: in float16 it overflows past 65504 entries.
        outputs, kept = [], torch.zeros((), dtype=torch.int64, device=device)
        for start, stop, scale in _chunk_scales(
            weight.detach(), probs, x.shape[0], options["chunk"], options["rescale"], replay
        ):
            kept = kept + (scale != 0).sum()
            weights = scale.mul_(weight.detach().unsqueeze(0))
            del scale
            outputs.append(op(x[start:stop], weights))
            del weights
        source.set_state(replay.get_state())
        options["on_kept"](kept / (x.shape[0] * weight.numel()))  # true division: float32
        ctx.state, ctx.op, ctx.options, ctx.probs = state, op, options, probs
        ctx.save_for_backward(x, weight)
        return torch.cat(outputs)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        options = ctx.options
        dense = options["dense"]
        replay = _replay(ctx.state, weight.device)
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grad_eff_sum = torch.zeros_like(weight)
        grad_weight = grad_eff_sum if dense else torch.zeros_like(weight)
        for start, stop, scale in _chunk_scales(
            weight.detach(), ctx.probs, x.shape[0], options["chunk"], options["rescale"], replay
        ):
            with torch.enable_grad():
                x_chunk = x[start:stop].detach().requires_grad_(grad_x is not None)
                if dense:  # the scale is not needed again: reuse its memory
                    w_eff = scale.mul_(weight.detach().unsqueeze(0)).requires_grad_()
                    del scale
                else:
                    w_eff = (weight.detach().unsqueeze(0) * scale).requires_grad_()
                y = ctx.op(x_chunk, w_eff)
            inputs = (x_chunk, w_eff) if grad_x is not None else (w_eff,)
            grads = torch.autograd.grad(y, inputs, grad_out[start:stop])
            del y, w_eff
            if grad_x is not None:
                grad_x[start:stop] = grads[0]
            grad_eff_sum += grads[-1].sum(0)
            if not dense:
                grad_weight += grads[-1].mul_(scale).sum(0)
                del scale
            del grads
        if options["record"] is not None:
            call_record(options["record"], grad_eff_sum)
        return grad_x, grad_weight, None, None, None


def per_example_masked_op(
    x: Tensor,
    weight: Tensor,
    probs: Tensor | float,
    op: BatchedOp,
    *,
    rescale: RescaleMode,
    dense: bool,
    max_bytes: int,
    generator: torch.Generator | None = None,
    record: Record | None = None,
    on_kept: Callable[[Tensor], None] = lambda kept: None,
) -> Tensor:
    """``op`` applied to every example with its own mask ``M_b ~ Bernoulli(1 - probs)``.

    Args:
        x: batch, first dimension = examples.
        weight: the weight to mask (gradient flows to it by the ``dense``/masked rule).
        probs: per-edge drop probabilities (weight-shaped) or a fixed rate.
        op: ``op(x_chunk, weights)`` with ``weights`` of shape ``(chunk, *weight.shape)``.
        rescale: how each example's mask is rescaled (see ``rescale_factor``).
        dense: straight-through gradient (``True``) or gradient through the masks.
        max_bytes: budget for the masks of one chunk (mask, scaled mask, masked weights).
        generator: random source; the masks are replayed from its state in backward.
        record: ``(statistic, seen)`` buffers that receive ``|sum_b dL/dW_eff_b|``.
        on_kept: called with the mean kept fraction (a device tensor) for monitoring.
    """
    options = {
        "chunk": chunk_size_for(weight, x.shape[0], max_bytes),
        "rescale": rescale,
        "dense": dense,
        "generator": generator,
        "record": record,
        "on_kept": on_kept,
    }
    return _PerExampleFn.apply(x, weight, probs, op, options)
