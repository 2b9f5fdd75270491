"""White-box L∞ attacks in pixel space [0, 1]: FGSM and PGD from ``torchattacks``.

The attacked network is :class:`PixelModel`: the trained model behind the experiment's own
input pipeline (``training._inputs``: ``(x - mean) / std`` with the training statistics, then the
resize when the experiment has one), so ``eps`` is a budget on [0, 1] pixels and the gradient
flows through the normalisation. Attacks run on the deterministic network (eval mode: plain
weights, no masks, BatchNorm in eval), the predictor whose clean accuracy the suite reports.

Gradient masking: attacking a *stochastic* forward (masks on) with a single sample per step
gives noisy gradients and makes a model look more robust than it is; the honest attack on the
MC-averaged predictor is EOT (averaging the gradient over many mask draws), which costs
``eot`` times more. This module attacks the deterministic network only.

torchattacks 3.5.1 declares torchvision as a dependency but does not import it: install it with
``pip install --no-deps torchattacks==3.5.1`` (a plain install would replace the CPU torch).
FGSM: Goodfellow et al. 2015; PGD: Madry et al. 2018 (random start in the ε-ball, ``steps``
signed-gradient steps of ``alpha``, projection onto the ball and [0, 1]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["ATTACKS", "EPSILONS", "PGD_STEPS", "PixelModel", "adversarial_accuracy", "require"]

EPSILONS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
ATTACKS: tuple[str, ...] = ("fgsm", "pgd")
PGD_STEPS = 20
PGD_STEP_FRACTION = 1 / 8  # alpha = eps / 8


def require() -> None:
    """Raise ImportError with how to install torchattacks without replacing torch."""
    try:
        import torchattacks  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "the adversarial part needs torchattacks: pip install --no-deps torchattacks==3.5.1 "
            "(--no-deps: its declared torchvision dependency would replace torch; it is not "
            "imported)"
        ) from err


class PixelModel(nn.Module):
    """``model(prepare(x))``: takes images in [0, 1], normalises inside (differentiably)."""

    def __init__(self, model: nn.Module, prepare: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.model = model
        self.prepare = prepare

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.prepare(x))


def _attack(name: str, model: nn.Module, eps: float) -> Callable[[Tensor, Tensor], Tensor]:
    import torchattacks

    if name == "fgsm":
        return torchattacks.FGSM(model, eps=eps)
    if name == "pgd":
        return torchattacks.PGD(
            model, eps=eps, alpha=eps * PGD_STEP_FRACTION, steps=PGD_STEPS, random_start=True
        )
    raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")


def adversarial_accuracy(
    model: PixelModel,
    x: Tensor,
    y: Tensor,
    *,
    attacks: Sequence[str] = ATTACKS,
    epsilons: Sequence[float] = EPSILONS,
    batch: int = 500,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{attack: {str(eps): accuracy}}`` of the deterministic ``model`` on attacked ``x``.

    ``x`` are images in [0, 1]; PGD's random start comes from the global RNG, seeded here with
    ``seed`` before each (attack, eps), so results repeat. The model is left in eval mode.
    """
    require()
    if any(not 0.0 <= e <= 1.0 for e in epsilons):
        raise ValueError(f"epsilons must be in [0, 1] (pixel space), got {list(epsilons)}")
    model.eval()
    out: dict[str, dict[str, float]] = {}
    for name in attacks:
        out[name] = {}
        for eps in epsilons:
            torch.manual_seed(seed)
            attack = _attack(name, model, eps)
            correct = 0
            for start in range(0, len(x), batch):
                xb, yb = x[start : start + batch], y[start : start + batch]
                adv = attack(xb, yb)
                with torch.no_grad():
                    correct += int((model(adv).argmax(-1) == yb).sum())
            out[name][str(eps)] = correct / max(len(x), 1)
    return out
