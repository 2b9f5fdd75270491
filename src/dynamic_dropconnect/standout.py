"""Standout: adaptive dropout whose keep probability follows the unit's own input."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from .base import GeneratorState
from .functional import compute_dtype

__all__ = ["Standout", "standout"]


def standout(
    preact: Tensor,
    alpha: float = 1.0,
    beta: float = 0.0,
    training: bool = True,
    *,
    activation: nn.Module | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Functional :class:`Standout`: ``m * f(a)`` in training, ``pi * f(a)`` in eval."""
    # In float32 for half types: a half uniform has 8-11 mantissa bits (biased P(keep)).
    dtype = compute_dtype(preact.dtype)
    keep = torch.sigmoid(alpha * preact.detach().to(dtype) + beta)
    out = preact if activation is None else activation(preact)
    if not training:
        return keep.to(out.dtype) * out
    uniform = torch.rand(preact.shape, generator=generator, device=preact.device, dtype=dtype)
    return out * (uniform < keep).to(out.dtype)


class Standout(GeneratorState):
    r"""Standout (Ba & Frey, "Adaptive dropout for training deep neural networks", NIPS 2013).

    Takes a layer's pre-activation :math:`a` and returns its activation with a unit-wise
    adaptive mask, in the weight-tied form of the paper (the standout network shares the
    layer's weights, scaled by ``alpha`` and shifted by ``beta``):

    .. math::
        \pi = \sigma(\alpha\, a + \beta),\qquad
        \text{train: } h = m \odot f(a),\ m \sim \mathrm{Bernoulli}(\pi),\qquad
        \text{eval: } h = \pi \odot f(a)

    One mask per example and unit; no rescaling in training, the expectation at eval (as in
    the paper). No gradient flows through :math:`\pi` (the mask is a sample). With
    ``alpha=0`` and ``beta=logit(k)`` it is dropout with keep rate ``k`` whose train/eval scale
    is ``k`` times that of ``nn.Dropout(1 - k)``.

    Args:
        alpha: scale of the pre-activation in the keep probability.
        beta: offset of the keep probability (logit space).
        activation: ``f``, applied to the pre-activation: a module, ``"relu"`` (default,
            a new ``nn.ReLU()``) or ``None`` for the identity.
        generator: optional ``torch.Generator`` for reproducible masks; its state is saved
            in the ``state_dict`` for an exact resume (see :class:`WeightRegularizer`).

    Shape:
        Input: any shape (the pre-activation). Output: the same shape.

    Examples::

        >>> model.act1 = ddc.Standout(alpha=1.0, beta=0.0)  # replaces the ReLU after linear1
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 0.0,
        activation: nn.Module | Literal["relu"] | None = "relu",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        self.alpha, self.beta = float(alpha), float(beta)
        if activation == "relu":
            activation = nn.ReLU()
        self.activation = nn.Identity() if activation is None else activation
        self.generator = generator

    def forward(self, preact: Tensor) -> Tensor:
        return standout(
            preact,
            self.alpha,
            self.beta,
            self.training,
            activation=self.activation,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}"
