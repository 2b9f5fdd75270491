"""Functional core of Dynamic DropConnect: pure functions on tensors, no module state.

Every regularizer module in this package is a thin holder of hyperparameters around these
functions (the layout of ``timm.layers.drop``). The maths follows Yang & Chen, "Dynamic
DropConnect: Enhancing Neural Network Robustness through Adaptive Edge Dropping Strategies"
(arXiv 2502.19948) and the behaviour of the authors' code, as ``docs/method.md`` states it
(sections "The formula" and "What follows the authors' code").

For one weight tensor ``W`` with gradient ``g`` (of the loss w.r.t. the effective weight)::

    a   = |g|
    z   = (a - mean(a)) / (std(a) + eps)          # layer-wise z-score, unbiased std
    q   = 1 - sigmoid(z)    (direction "small")   # or sigmoid(z) for "big"
    q   = q * [q > tau]                           # only below-mean gradients get extra drop
    p_ij = clamp(p + pg * q, 0, p_max)
    M   ~ Bernoulli(1 - p_ij)
    W_eff = W * M / k                             # k: see ``rescale_factor``
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any, Literal

import torch
from torch import Tensor

from .checks import check_choice

__all__ = [
    "DIRECTIONS",
    "RESCALE_MODES",
    "UPDATE_MODES",
    "Direction",
    "Record",
    "RescaleMode",
    "UpdateMode",
    "accumulate_gradient",
    "all_finite",
    "apply_weight_mask",
    "call_record",
    "compute_dtype",
    "ddc_drop_probabilities",
    "drop_connect",
    "mask_variance",
    "permute_rates",
    "record_gradient",
    "rescale_factor",
    "sample_keep_mask",
    "variance_matched_rate",
]

Direction = Literal["small", "big"]
RescaleMode = Literal["empirical", "expected", "per_edge", "none"]
UpdateMode = Literal["dense", "masked"]

#: Where backward puts ``|dL/dW_eff|``: ``(statistic, seen)`` buffers for
#: :func:`record_gradient`, or any callable taking the gradient.
Record = tuple[Tensor, Tensor] | Callable[[Tensor], None]

DIRECTIONS: tuple[str, ...] = ("small", "big")
RESCALE_MODES: tuple[str, ...] = ("empirical", "expected", "per_edge", "none")
UPDATE_MODES: tuple[str, ...] = ("dense", "masked")


def ddc_drop_probabilities(
    grad: Tensor,
    p: float | Tensor = 0.3,
    pg: float | Tensor = 0.5,
    tau: float = 0.5,
    *,
    direction: Direction = "small",
    zscore: bool = True,
    p_max: float | None = 0.95,
    eps: float = 1e-9,
) -> Tensor:
    r"""Per-edge drop probabilities :math:`p_{ij}` of Dynamic DropConnect.

    .. math::
        z_{ij} = \frac{|g_{ij}| - \mu}{\sigma + \epsilon},\quad
        q_{ij} = 1 - \operatorname{sigmoid}(z_{ij}),\quad
        p_{ij} = \min\bigl(p + p_g\, q_{ij}\,[q_{ij} > \tau],\; p_{max}\bigr)

    with :math:`\mu, \sigma` the mean and unbiased standard deviation of :math:`|g|` over the
    whole tensor (layer-wise).

    Args:
        grad: gradient of the loss w.r.t. the effective weight (any shape). For the
            weight-magnitude ablations pass the weight itself.
        p: base drop rate every edge gets.
        pg: gradient unit rate: the extra drop rate scale.
        tau: threshold on the candidate probability ``q``; ``q <= tau`` is set to 0.
        direction: ``"small"`` drops small gradients more (the method), ``"big"`` the
            ablation that drops big gradients more (``q = sigmoid(z)``).
        zscore: standardise ``|g|`` layer-wise; ``False`` uses ``z = |g|`` (ablation).
        p_max: upper clamp of ``p_ij``; ``None`` for no clamp (the authors' code).
        eps: added to the standard deviation.

    Returns:
        Tensor of ``grad``'s shape with values in ``[0, p_max]``, in ``grad``'s dtype, or in
        float32 for a float16/bfloat16 ``grad`` (see :func:`compute_dtype`). A tensor whose
        entries are all equal (including all zero, i.e. no gradient yet) gets ``p`` everywhere.
    """
    check_choice("direction", direction, DIRECTIONS)
    # One fresh tensor, then every step in place: the fewest passes and allocations (on small
    # layers each op's dispatch costs more than its arithmetic).
    dtype = compute_dtype(grad.dtype)
    z = grad.detach().abs() if dtype == grad.dtype else grad.detach().to(dtype).abs_()
    if zscore:
        if z.numel() < 2:  # the unbiased std of one value is undefined
            z.zero_()
        else:
            sigma, mu = _std_mean(z)
            # "small": q = 1 - sigmoid(z) = sigmoid(-z): fold the sign into the divisor.
            scale = -(sigma + eps) if direction == "small" else sigma + eps
            z.sub_(mu).div_(scale)
    elif direction == "small":
        z.neg_()
    candidate = z.sigmoid_()
    torch.nn.functional.threshold_(candidate, tau, 0.0)  # q * [q > tau] in one pass
    probs = candidate.mul_(pg).add_(p)
    # The clamp can bind only if p + pg > p_max (q < 1): skip the pass when it cannot.
    if p_max is not None and not (_is_number(p) and _is_number(pg) and p + pg <= p_max):
        probs.clamp_(0.0, p_max)
    return probs


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype drop probabilities and uniforms are computed in for a weight of ``dtype``.

    float32 for float16/bfloat16: ``eps=1e-9`` is 0 in float16 (an all-equal statistic gave
    ``z = 0/0``), their mean and std of many entries are inexact, and a half-precision
    uniform has 11 (fp16) or 8 (bf16) mantissa bits, which biases ``P(keep)`` by up to 2e-3.
    Other dtypes are used as they are.
    """
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _is_number(value: float | Tensor) -> bool:
    return isinstance(value, int | float)


def _std_mean(values: Tensor) -> tuple[Tensor, Tensor]:
    """Unbiased std and mean; the mean is exact when every entry is equal (so z is 0 there).

    On CPU ``torch.std_mean`` takes a slow scalar path: ``std`` plus a float64-accumulated mean
    is about 2x faster there and just as exact for equal entries.
    """
    if values.device.type == "cpu":
        return torch.std(values), values.mean(dtype=torch.float64)
    return torch.std_mean(values)  # Welford: exact mean for equal entries


def sample_keep_mask(
    like: Tensor,
    probs: Tensor | float,
    generator: torch.Generator | None = None,
    *,
    batch: int | None = None,
) -> Tensor:
    """Sample a keep mask ``M ~ Bernoulli(1 - probs)`` shaped like ``like`` (1 = keep).

    ``probs`` is a tensor broadcastable to ``like`` or a fixed rate. With ``batch`` the mask
    gets a leading dimension of that size: one independent mask per example. The mask has
    ``like``'s dtype and device, and ``generator`` (if given) makes it reproducible. For a
    float16/bfloat16 ``like`` the uniforms are drawn in float32 (see :func:`compute_dtype`).
    """
    shape = like.shape if batch is None else (batch, *like.shape)
    dtype = compute_dtype(like.dtype)
    uniform = torch.rand(shape, generator=generator, device=like.device, dtype=dtype)
    # keep iff u >= p, so P(keep) = 1 - p exactly for u uniform on [0, 1); in place, so the
    # mask is made in the weight's dtype without a bool temporary.
    mask = uniform.ge_(probs)
    return mask if dtype == like.dtype else mask.to(like.dtype)


def permute_rates(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``probs`` with its entries randomly permuted over the whole tensor (same shape).

    The "shuffled" control: every rate of the map is kept (the sorted values are identical),
    only which edge gets which is random, so the drop noise is no longer tied to the edge's
    statistic. One ``randperm`` on ``probs``'s device drawn from ``generator`` (the global RNG
    if ``None``) and a gather: no host synchronisation.
    """
    perm = torch.randperm(probs.numel(), generator=generator, device=probs.device)
    return probs.reshape(-1)[perm].view(probs.shape)


def mask_variance(
    probs: Tensor | float, *, mean: Tensor | None = None, out: Tensor | None = None
) -> Tensor | float:
    """Mean Bernoulli variance of the mask, ``mean(p_ij * (1 - p_ij))``, on the device.

    At a fixed mean rate this is largest (``p(1-p)``) when every edge has the same rate; a
    spread-out (U-shaped) map injects less noise. Computed as ``mean(p) - p.p / numel``: one
    dot product on top of the mean (``mean``: ``probs.mean()`` if the caller has it already),
    no weight-sized temporary; ``out``: a 0-dim tensor to write the result into.
    """
    if not isinstance(probs, Tensor):
        return probs * (1.0 - probs)
    flat = probs.reshape(-1)
    mean = flat.mean() if mean is None else mean
    # One fused op for the division, the subtraction and the copy into ``out`` (hot path).
    return torch.sub(mean, torch.dot(flat, flat), alpha=1.0 / max(flat.numel(), 1), out=out)


def variance_matched_rate(variance: float) -> float:
    """The fixed DropConnect rate ``p <= 0.5`` whose mask variance ``p(1-p)`` is ``variance``.

    ``p = (1 - sqrt(1 - 4v)) / 2``, computed as ``2v / (1 + sqrt(1 - 4v))`` (no cancellation
    for small ``v``). Use it with a regularizer's logged ``mean(p_ij(1-p_ij))`` (the
    ``mask_var/<layer>`` column of metrics.csv) to run DropConnect with the same amount of
    mask noise, e.g. ``v = 0.13`` gives ``p = 0.1536``. ``variance`` must be in
    ``[0, 0.25]``; values up to 1e-6 above 0.25 (float rounding of a logged mean) count as
    0.25.
    """
    if isinstance(variance, bool) or not isinstance(variance, Real):
        raise TypeError(
            f"variance must be a number in [0, 0.25], got {variance!r} ({type(variance).__name__})"
        )
    v = float(variance)
    if not 0.0 <= v <= 0.25 + 1e-6:  # also rejects NaN
        raise ValueError(f"variance must be in [0, 0.25] (p(1-p) of a rate p), got {variance!r}")
    v = min(v, 0.25)
    return 2.0 * v / (1.0 + math.sqrt(1.0 - 4.0 * v))


def rescale_factor(
    mask: Tensor,
    probs: Tensor | float,
    mode: RescaleMode,
    *,
    per_example: bool = False,
    kept: Tensor | None = None,
) -> Tensor | float:
    """The divisor ``k`` of ``W_eff = W * M / k``, never zero.

    - ``"empirical"``: kept fraction of this mask, ``sum(M) / numel`` (the authors' code;
      ``1 - r`` for the realized layer drop rate ``r`` of the paper's Equation 6). With
      ``per_example`` the mask's first dimension indexes examples, each with its own ``k``.
    - ``"expected"``: ``1 - mean(p_ij)``.
    - ``"per_edge"``: ``1 - p_ij`` elementwise (unbiased for every single weight).
    - ``"none"``: 1.

    A mask that drops every edge gives ``W_eff = 0``, not ``NaN``. ``kept``: ``mask.mean()``
    if the caller has it already (saves a reduction).
    """
    if mode == "none":
        return 1.0
    if mode == "empirical":
        if not per_example:
            kept = mask.mean() if kept is None else kept
            return kept.clamp_min(1.0 / mask.numel())
        dims = tuple(range(1, mask.dim()))
        return mask.mean(dim=dims, keepdim=True).clamp_min(1.0 / mask[0].numel())
    if mode == "expected":
        if isinstance(probs, Tensor):
            return (1.0 - probs.mean()).clamp_min(1e-6)
        return 1.0 - probs
    if mode == "per_edge":
        return (1.0 - probs).clamp_min(1e-6) if isinstance(probs, Tensor) else 1.0 - probs
    check_choice("rescale", mode, RESCALE_MODES)
    raise AssertionError("unreachable")


def record_gradient(statistic: Tensor, seen: Tensor, grad: Tensor) -> None:
    """Store ``|grad|`` into ``statistic`` in place, unless ``grad`` has a NaN or Inf.

    ``seen`` (a 0-dim bool buffer) becomes true once a finite gradient was stored. Device-side
    only: no ``.item()``, so a training step never waits for the accelerator here. A
    non-finite step (an AMP overflow, say) leaves both buffers as they were.
    """
    magnitude = grad.detach().abs().to(statistic.dtype)
    finite = all_finite(magnitude)
    torch.where(finite, magnitude, statistic, out=statistic)
    seen.logical_or_(finite)


def all_finite(magnitude: Tensor) -> Tensor:
    """0-dim bool: no NaN or Inf in ``magnitude`` (entries >= 0), one reduction, no sync.

    The sum is False for NaN and Inf entries alike; it is taken in float32 for half types,
    where a sum of finite entries overflows 65504 (float16) on any large layer.
    """
    dtype = compute_dtype(magnitude.dtype)
    total = magnitude.sum() if dtype == magnitude.dtype else magnitude.sum(dtype=dtype)
    return total < float("inf")


def accumulate_gradient(total: Tensor, count: Tensor, grad: Tensor) -> None:
    """Add ``|grad|`` to ``total`` and 1 to ``count`` in place, unless ``grad`` is not finite.

    The accumulating counterpart of :func:`record_gradient` (gradient accumulation over
    micro-batches); device-side only.
    """
    magnitude = grad.detach().abs().to(total.dtype)
    finite = all_finite(magnitude)
    total.add_(torch.where(finite, magnitude, torch.zeros_like(magnitude)))
    count.add_(finite.to(count.dtype))


def call_record(record: Record, grad: Tensor) -> None:
    """Hand ``grad`` (``dL/dW_eff`` of one backward) to ``record``: call it, or store ``|grad|``
    into its ``(statistic, seen)`` buffers with :func:`record_gradient`."""
    if callable(record):
        record(grad)
    else:
        record_gradient(*record, grad)


class _EffectiveWeight(torch.autograd.Function):
    """``W_eff = W * S`` for a precomputed scaled mask ``S = M / k``, two backward rules.

    ``dense`` (the authors' code, straight-through): ``dL/dW = dL/dW_eff`` for every edge.
    ``masked`` (textbook DropConnect): ``dL/dW = dL/dW_eff * S``. With ``record`` the
    backward also stores ``|dL/dW_eff|`` (see :func:`record_gradient`).

    One multiply forward and at most one backward: cheaper than the equivalent
    ``W + (W * S - W).detach()``, which costs three elementwise passes.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        weight: Tensor,
        scale: Tensor,
        dense: bool,
        record: Record | None,
    ) -> Tensor:
        ctx.dense = dense
        ctx.record = record
        if not dense:
            ctx.save_for_backward(scale)
        return weight * scale

    @staticmethod
    def backward(ctx: Any, grad_eff: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        if ctx.record is not None:
            call_record(ctx.record, grad_eff)
        if ctx.dense:
            return grad_eff, None, None, None
        (scale,) = ctx.saved_tensors
        return grad_eff * scale, None, None, None


def apply_weight_mask(
    weight: Tensor,
    scale: Tensor,
    update: UpdateMode = "dense",
    *,
    record: Record | None = None,
) -> Tensor:
    """``W_eff = W * scale`` where ``scale = M / k``; ``update`` picks the backward rule.

    ``"dense"``: the optimizer receives ``dL/dW_eff`` for every edge, dropped or not
    (straight-through, the authors' code). ``"masked"``: plain autograd through the mask,
    ``dL/dW = dL/dW_eff * M / k`` (textbook DropConnect; dropped edges get no gradient).
    ``record=(statistic, seen)`` stores ``|dL/dW_eff|`` there during backward (a callable
    ``record(grad)`` receives the gradient instead); it is dense in both modes, so a dropped
    edge is not mistaken for an unimportant one.
    """
    check_choice("update", update, UPDATE_MODES)
    return _EffectiveWeight.apply(weight, scale, update == "dense", record)


def drop_connect(
    weight: Tensor,
    probs: Tensor | float,
    training: bool = True,
    *,
    rescale: RescaleMode = "empirical",
    update: UpdateMode = "dense",
    generator: torch.Generator | None = None,
) -> Tensor:
    """One DropConnect draw on ``weight``: ``W * M / k`` with ``M ~ Bernoulli(1 - probs)``.

    The functional form of :class:`~dynamic_dropconnect.DropConnect` (a fixed rate ``probs``)
    and of :class:`~dynamic_dropconnect.DynamicDropConnect` (per-edge ``probs`` from
    :func:`ddc_drop_probabilities`). Returns ``weight`` itself when not ``training``.
    """
    if not training:
        return weight
    mask = sample_keep_mask(weight.detach(), probs, generator)
    return apply_weight_mask(weight, mask.div_(rescale_factor(mask, probs, rescale)), update)
