"""A learned gradient-to-drop-rate model: the paper's proposed next step (``docs/method.md``,
"The learned rate model").

DDC fixes the map from an edge's gradient to its drop rate
(``p + pg * q * [q > tau]``, ``q = 1 - sigmoid(z)``). :class:`LearnedDropConnect` learns it:

.. math::
    p_{ij} = p_{max}\\, \\sigma\\bigl(f_\\theta(x_{ij})\\bigr),\\qquad
    x_{ij} = \\bigl(z(|g|)_{ij},\\ z(|W|)_{ij},\\ s_{ij},\\ p^{prev}_{ij}\\bigr)

with ``z`` the layer-wise z-score, ``s`` the sign agreement of the current gradient with an
exponential average of past gradients (``+1`` agree, ``-1`` not, a cheap stand-in for the
optimizer's momentum that needs no access to the optimizer) and ``p_prev`` the edge's previous
rate. ``f_theta`` is per layer and tiny: a logistic model (``hidden=0``, 5 numbers) or a
2-layer MLP.

How θ learns (chosen for cost, see below): the mask is relaxed, as Concrete Dropout (Gal, Hron
& Kendall 2017) relaxes it, so the training loss itself is differentiable in ``p``:

.. math::
    \\tilde m_{ij} = \\sigma\\Bigl(\\bigl(\\log\\tfrac{1-p_{ij}}{p_{ij}} + \\log\\tfrac{u}{1-u}
    \\bigr) / t\\Bigr),\\quad u \\sim U(0,1),\\qquad W_{eff} = W \\odot \\tilde m / (1 - \\bar p)

(``rescale="per_edge"``: ``W_eff = W * m / (1 - p_ij)``, see :class:`LearnedDropConnect`).

A penalty ``lam * (mean(p) - target)^2`` holds the layer's mean rate at ``target``: within
that budget the loss decides *which* edges to drop, as a function of their features. θ's
gradient (loss through the relaxed mask, plus the penalty) is computed inside the backward of
``W_eff`` on a small local graph, so one step costs one forward and one backward, like DDC;
hypergradients of a validation loss would need a second backward per step. θ is not a parameter
of the model (your optimizer never sees it): the regularizer takes an Adam step (``theta_lr``)
on it in that same backward (a weight used several times in one forward: one step on θ's
gradient summed over the uses, at the end of the backward; the statistic is likewise
``|sum over uses of dL/dW_eff|``). θ, its Adam state and the feature buffers are in the
``state_dict``, and nothing is pending between steps: a resumed run is exact. ``W``'s own
gradient follows ``update`` (``"dense"``: ``dL/dW_eff``; ``"masked"``: through the relaxed
mask), as for DDC. Eval mode uses ``W`` unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from . import functional
from .base import WeightRegularizer
from .checks import check_flag, check_rate

__all__ = ["FEATURES", "LEARNED_RESCALE_MODES", "LearnedDropConnect"]

FEATURES: tuple[str, ...] = ("z_grad", "z_weight", "sign_agreement", "previous_p")
#: The ``rescale`` options of :class:`LearnedDropConnect`.
LEARNED_RESCALE_MODES: tuple[str, ...] = ("expected", "per_edge")


class _LearnedWeight(torch.autograd.Function):
    """``W_eff = W * scale`` where ``scale`` (the relaxed mask over ``1 - mean p``) was built
    from θ on a small local graph. Backward gives ``W`` its gradient by the update rule,
    records the statistic, and differentiates the local graph (``dL/dscale = g * W`` plus the
    rate penalty) to update θ right there: no gradient of θ is left pending after backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, weight: Tensor, scale: Tensor, reg: LearnedDropConnect, local: tuple
    ) -> Tensor:
        ctx.reg, ctx.local = reg, local
        ctx.save_for_backward(weight, scale)
        return weight * scale

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        weight, scale = ctx.saved_tensors
        reg: LearnedDropConnect = ctx.reg
        reg._record_use(grad)
        scale_with_graph, penalty, theta = ctx.local
        if scale_with_graph is not None:  # non-finite gradients are zeroed in the Adam step
            # dL/dscale = g * W, formed in the local graph's float32 (no half overflow).
            grad_scale = grad.to(scale_with_graph.dtype) * weight.to(scale_with_graph.dtype)
            with torch.enable_grad():
                grads = torch.autograd.grad(
                    [scale_with_graph, penalty],
                    theta,
                    grad_outputs=[grad_scale, torch.ones_like(penalty)],
                    allow_unused=True,
                )
            reg._theta_gradient(grads)
        ctx.local = None  # free the local graph
        return (grad if reg.update == "dense" else grad * scale), None, None, None


def _zscore(values: Tensor, eps: float = 1e-9) -> Tensor:
    """Layer-wise z-score, in float32 for half types (``eps`` is 0 in float16: 0/0 = NaN)."""
    values = values.to(functional.compute_dtype(values.dtype))
    std, mean = torch.std_mean(values)
    if values.numel() < 2:
        std = torch.zeros_like(mean)
    return (values - mean) / (std + eps)


class LearnedDropConnect(WeightRegularizer):
    """DropConnect whose per-edge rate is a learned function of gradient features.

    Args:
        target: mean drop rate the penalty holds, in ``(0, p_max)``. Default 0.5 (DDC's
            mean rate at its defaults).
        hidden: 0 for a logistic ``f_theta``, else the width of a 2-layer MLP. Default 0.
        p_max: upper bound of every ``p_ij``, in ``(target, 1)``. Default 0.95.
        temperature: of the relaxed mask, ``> 0``. Default 0.1.
        lam: weight of the rate penalty, ``>= 0``. Default 100 (holds the mean within
            about 0.02 of ``target``).
        theta_lr: Adam learning rate of θ, ``> 0``. Default 1e-2.
        ema: decay of the gradient average behind the sign feature, in ``[0, 1)``. Default 0.9.
        rescale: ``"expected"`` (default): one divisor ``1 - mean(p)`` for the layer, so an
            edge's expected effective weight is ``W (1 - p_ij) / (1 - mean p)``: an edge the
            model rarely drops is amplified (about 1.96x at ``p_ij = 0.02``, mean 0.5), which
            acts like a per-edge learning-rate boost. ``"per_edge"`` (control): divide by
            ``1 - p_ij``, so ``E[W_eff] = W`` for every edge (exactly for the hard mask; the
            relaxed mask at ``temperature=0.1``: within 1.5 % of it for ``p_ij <= 0.95``); θ learns
            through that divisor too.
        shuffle: control (default ``False``): the rates ``f_theta`` gives the layer are
            randomly permuted over its edges before the mask is drawn (one ``randperm`` from
            ``generator``, on the device): the same rates, mean and mask variance, not tied to
            any edge's gradient. θ keeps learning from the *unshuffled* map: its gradient is
            ``dL/dW_eff * W`` of each edge applied to the relaxed mask that edge would have
            had with its own rate (the relaxed mask is re-evaluated at the unshuffled rates with
            the same uniforms), and ``previous_p`` holds the unshuffled rates. Why: learning
            through the shuffled map would credit each edge's loss signal to another edge's
            features, so θ would see noise and drift towards a flat map, and the control would
            no longer have the learned model's (U-shaped) rates; kept this way the control
            differs from ``ddc-learned`` only in which edge receives which rate.
            :meth:`drop_probabilities` returns the unshuffled map.
        **options: ``update``, ``generator`` (see :class:`WeightRegularizer`). ``mask_mode``
            is fixed to ``"batch"``.

    Before the first gradient θ gives every edge ``p_max * sigmoid(b)`` with ``b`` set so that
    the rate is ``target``.

    Examples::

        >>> model = ddc.apply(model, "ddc-learned", include="linear1", target=0.5)
        >>> ddc.learned_curves(model)  # what f_theta learned: p against the gradient z-score
    """

    def __init__(
        self,
        target: float = 0.5,
        *,
        hidden: int = 0,
        p_max: float = 0.95,
        temperature: float = 0.1,
        lam: float = 100.0,
        theta_lr: float = 1e-2,
        ema: float = 0.9,
        rescale: str = "expected",
        shuffle: bool = False,
        **options: Any,
    ) -> None:
        name = type(self).__name__
        if options.get("mask_mode", "batch") != "batch":
            raise ValueError(f"{name}: mask_mode is fixed to 'batch', got {options['mask_mode']!r}")
        if rescale not in LEARNED_RESCALE_MODES:
            valid = ", ".join(map(repr, LEARNED_RESCALE_MODES))
            raise ValueError(
                f"{name}: rescale must be one of {valid} (a relaxed mask has no kept count for "
                f"'empirical'), got {rescale!r}"
            )
        check_flag(name, "shuffle", shuffle)
        super().__init__(**{**options, "rescale": rescale, "mask_mode": "batch"})
        self.shuffle = shuffle
        check_rate(name, "p_max", p_max, 0.0, 1.0, high_open=True)
        check_rate(name, "target", target, 0.0, p_max, high_open=True)
        if not target > 0.0:
            raise ValueError(f"{name}: target must be in (0, p_max={p_max}), got {target!r}")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
            raise ValueError(f"{name}: hidden must be a whole number >= 0, got {hidden!r}")
        for key, value in (("temperature", temperature), ("theta_lr", theta_lr)):
            check_rate(name, key, value, 0.0, math.inf, high_open=True)
            if not value > 0:
                raise ValueError(f"{name}: {key} must be > 0, got {value!r}")
        check_rate(name, "lam", lam, 0.0, math.inf, high_open=True)
        check_rate(name, "ema", ema, 0.0, 1.0, high_open=True)
        self.target, self.hidden, self.p_max = float(target), hidden, float(p_max)
        self.temperature, self.lam, self.theta_lr, self.ema = temperature, lam, theta_lr, ema
        # f_theta: logistic (w: 4, b) or MLP (4 -> hidden -> 1). Tensors that require grad,
        # kept as buffers so that no optimizer of the model picks them up.
        bias = math.log(self.target / (self.p_max - self.target))  # p_max*sigmoid(b) = target
        generator = torch.Generator().manual_seed(0)
        if hidden == 0:
            shapes = {"w1": (len(FEATURES),), "b1": ()}
            init = {"w1": torch.zeros(len(FEATURES)), "b1": torch.tensor(bias)}
        else:
            shapes = {"w1": (hidden, len(FEATURES)), "b1": (hidden,), "w2": (hidden,), "b2": ()}
            init = {
                "w1": torch.randn(hidden, len(FEATURES), generator=generator) * 0.1,
                "b1": torch.zeros(hidden),
                "w2": torch.randn(hidden, generator=generator) * 0.1,
                "b2": torch.tensor(bias),
            }
        self._theta = tuple(shapes)
        for key in shapes:
            self.register_buffer(key, init[key].float().requires_grad_(True))  # a leaf
            self.register_buffer(f"adam_m_{key}", torch.zeros(shapes[key]))
            self.register_buffer(f"adam_v_{key}", torch.zeros(shapes[key]))
        self.register_buffer("adam_step", torch.zeros(()))
        self.register_buffer("grad_magnitude", torch.zeros(0))
        self.register_buffer("grad_average", torch.zeros(0))
        self.register_buffer("sign_agreement", torch.zeros(0))
        self.register_buffer("previous_p", torch.zeros(0))
        self.register_buffer("has_gradient", torch.zeros((), dtype=torch.bool))
        self.register_buffer("last_penalty", torch.full((), float("nan")), persistent=False)
        # Multi-use: θ's gradient summed over the weight's uses in one backward.
        self._theta_sum: tuple[Tensor | None, ...] | None = None

    # -- state --------------------------------------------------------------------------------
    def _apply(self, fn: Any, recurse: bool = True) -> LearnedDropConnect:
        # model.half() / .to(device) would make theta half (Adam's eps=1e-8 is 0 in float16,
        # so a zero gradient gives 0/0) and a non-leaf (the copy of a leaf that requires
        # grad). Theta and its Adam state follow the device only: float32 leaves.
        kept = {key: self._buffers[key] for key in self._float32_state()}
        super()._apply(fn, recurse)
        for key, old in kept.items():
            moved = self._buffers[key]
            assert old is not None and moved is not None
            new = old.detach().to(device=moved.device)
            self._buffers[key] = new.requires_grad_(True) if key in self._theta else new
        return self

    def _float32_state(self) -> list[str]:
        moments = [f"adam_{m}_{key}" for key in self._theta for m in ("m", "v")]
        return [*self._theta, *moments, "adam_step"]

    def prepare(self, weight: Tensor) -> None:
        if self.grad_magnitude.shape != weight.shape:
            zeros = weight.detach().new_zeros(weight.shape)
            self.grad_magnitude, self.grad_average = zeros.clone(), zeros.clone()
            self.sign_agreement = zeros.clone()
            self.previous_p = torch.full_like(zeros, self.target)
            self.has_gradient = self.has_gradient.to(weight.device)

    def _records_gradient(self) -> bool:
        return True

    def _store_gradient(self, grad: Tensor) -> None:
        g = grad.detach().to(self.grad_average.dtype)
        finite = functional.all_finite(g.abs())
        agree = torch.sign(g) * torch.sign(self.grad_average)
        torch.where(finite, g.abs(), self.grad_magnitude, out=self.grad_magnitude)
        torch.where(finite, agree, self.sign_agreement, out=self.sign_agreement)
        average = self.ema * self.grad_average + (1 - self.ema) * g
        torch.where(finite, average, self.grad_average, out=self.grad_average)
        self.has_gradient.logical_or_(finite)

    def _theta_gradient(self, grads: tuple[Tensor | None, ...]) -> None:
        """θ's gradient from one use of the weight: one Adam step per backward, on the sum
        over the weight's uses when it has several (see ``WeightRegularizer._record_use``)."""
        if not self._uses.multi:
            self._adam_step(grads)
            return
        total = self._theta_sum
        self._theta_sum = tuple(
            b if a is None else a if b is None else a + b
            for a, b in zip(total or (None,) * len(grads), grads, strict=True)
        )

    def _begin_uses(self) -> None:
        self._theta_sum = None

    def _end_uses(self) -> None:
        super()._end_uses()
        total, self._theta_sum = self._theta_sum, None
        if total is not None:
            self._adam_step(total)

    # -- f_theta ------------------------------------------------------------------------------
    def features(self, weight: Tensor) -> Tensor:
        """``(numel, 4)`` features of every edge (see :data:`FEATURES`), detached."""
        self.prepare(weight)
        dtype = torch.float32  # theta's dtype (see _apply), whatever the weight's
        seen = self.has_gradient.to(dtype)
        columns = [
            _zscore(self.grad_magnitude.flatten()) * seen,  # 0 before the first gradient
            _zscore(weight.detach().abs().flatten()),
            self.sign_agreement.flatten(),
            self.previous_p.flatten(),
        ]
        return torch.stack([column.to(dtype) for column in columns], 1)

    def rate_model(self, features: Tensor) -> Tensor:
        """``p = p_max * sigmoid(f_theta(features))`` for ``(..., 4)`` features."""
        if self.hidden == 0:
            logit = features @ self.w1 + self.b1
        else:
            logit = torch.relu(features @ self.w1.T + self.b1) @ self.w2 + self.b2
        return self.p_max * torch.sigmoid(logit)

    def drop_probabilities(self, weight: Tensor) -> Tensor:
        with torch.no_grad():
            return self.rate_model(self.features(weight)).view_as(weight)

    def _relaxed_mask(self, probs: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """The relaxed keep mask at rates ``probs`` and uniforms ``u``, and the scale
        ``mask / k`` (``k`` by ``rescale``)."""
        keep_logit = torch.log1p(-probs) - torch.log(probs) + torch.log(u) - torch.log1p(-u)
        soft = torch.sigmoid(keep_logit / self.temperature)
        if self.rescale == "per_edge":  # E[W_eff] = W for every edge
            return soft, soft / (1.0 - probs)
        return soft, soft / (1.0 - probs.mean())

    @torch.no_grad()
    def _adam_step(self, grads: tuple[Tensor | None, ...]) -> None:
        """One Adam step on θ with ``grads`` (one per θ tensor, ``None`` for unused)."""
        self.adam_step += 1
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        correction1 = 1 - beta1**self.adam_step
        correction2 = 1 - beta2**self.adam_step
        for key, grad in zip(self._theta, grads, strict=True):
            if grad is None:
                continue
            theta, m, v = (
                getattr(self, key),
                getattr(self, f"adam_m_{key}"),
                getattr(self, f"adam_v_{key}"),
            )
            grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            theta -= self.theta_lr * (m / correction1) / ((v / correction2).sqrt() + eps)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, weight: Tensor) -> Tensor:
        """Relaxed-mask effective weight in training; ``weight`` itself in eval."""
        if not self.training:
            return weight
        feats = self.features(weight)
        dtype = feats.dtype  # float32 also for half weights: 1 - 1e-6 is 1.0 in float16
        learn = torch.is_grad_enabled() and weight.requires_grad
        with torch.enable_grad() if learn else torch.no_grad():
            theta = tuple(getattr(self, k) for k in self._theta)
            probs = self.rate_model(feats).view_as(weight).clamp(1e-6, 1 - 1e-6)
        with self._mask_generator() as generator:
            u = torch.rand(
                weight.shape, generator=generator, device=weight.device, dtype=dtype
            ).clamp_(1e-6, 1 - 1e-6)
            # After u, so that without shuffle the draws are as they were.
            used = functional.permute_rates(probs.detach(), generator) if self.shuffle else None
        with torch.enable_grad() if learn else torch.no_grad():
            soft, scale = self._relaxed_mask(probs, u)  # θ's local graph: the unshuffled map
            penalty = self.lam * (probs.mean() - self.target) ** 2
        if used is None:
            used, used_soft, used_scale = probs, soft, scale
        else:  # the mask applied: the same uniforms at the permuted rates
            with torch.no_grad():
                used_soft, used_scale = self._relaxed_mask(used, u)
        self.previous_p.copy_(probs.detach())
        self.last_penalty.copy_(penalty.detach())
        self._monitor(used.detach(), used_soft.detach().mean())
        local = (scale, penalty, theta) if learn else (None, None, ())
        self._gradient_record(weight)  # counts this use (a weight may be used several times)
        return _LearnedWeight.apply(weight, used_scale.detach().to(weight.dtype), self, local)

    def extra_repr(self) -> str:
        return (
            f"target={self.target}, hidden={self.hidden}, p_max={self.p_max}, "
            f"temperature={self.temperature}, lam={self.lam}, theta_lr={self.theta_lr}, "
            f"update={self.update!r}"
            + (f", rescale={self.rescale!r}" if self.rescale != "expected" else "")
            + (", shuffle=True" if self.shuffle else "")
        )
