"""White-box L∞ attacks in pixel space [0, 1]: FGSM and PGD from ``torchattacks``.

The attacked network is :class:`PixelModel`: the trained model behind the experiment's own
input pipeline (``training._inputs``: ``(x - mean) / std`` with the training statistics, then the
resize when the experiment has one), so ``eps`` is a budget on [0, 1] pixels and the gradient
flows through the normalisation. Attacks run on the deterministic network (eval mode: plain
weights, no masks, BatchNorm in eval), the predictor whose clean accuracy the suite reports.

Gradient masking: attacking a *stochastic* forward (masks on) with a single sample per step
gives noisy gradients and makes a model look more robust than it is (Athalye et al. 2018 list
randomness among the usual ways defences obfuscate gradients); the honest attack on the
MC-averaged predictor is EOT, averaging the gradient over many mask draws, which costs ``eot``
times more. :func:`mc_adversarial_accuracy` does that (opt-in, ``ddc robustness --eot N``):
``torchattacks.EOTPGD`` with ``N`` draws per step on a copy of the network whose masks (DDC,
DropConnect, Dropout, Standout) sample as in training with BatchNorm in eval and every parameter
frozen (no gradient statistic of DDC is recorded), then the accuracy of the MC prediction
(``dynamic_dropconnect.mc_predict``, ``samples`` passes) on those inputs.

torchattacks 3.5.1 declares torchvision as a dependency but does not import it: install it with
``pip install --no-deps torchattacks==3.5.1`` (a plain install would replace the CPU torch).
FGSM: Goodfellow et al. 2015; PGD: Madry et al. 2018 (random start in the ε-ball, ``steps``
signed-gradient steps of ``alpha``, projection onto the ball and [0, 1]).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

import dynamic_dropconnect as ddc

__all__ = [
    "ATTACKS",
    "EPSILONS",
    "PGD_STEPS",
    "PixelModel",
    "adversarial_accuracy",
    "mc_adversarial_accuracy",
    "require",
]

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


def mc_adversarial_accuracy(
    model: PixelModel,
    x: Tensor,
    y: Tensor,
    *,
    eot: int,
    samples: int,
    epsilons: Sequence[float] = EPSILONS,
    batch: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """PGD-EOT on the stochastic network, scored by its ``samples``-pass MC prediction.

    Returns ``{"mc_clean": accuracy, "pgd_eot": {str(eps): accuracy}}``; ``model`` itself is not
    touched (a frozen copy is attacked). Masks come from the global RNG, seeded with ``seed``.
    """
    require()
    import torchattacks

    if eot < 1 or samples < 1:
        raise ValueError(f"eot and samples must be >= 1, got {eot} and {samples}")
    net = copy.deepcopy(model)
    for param in net.parameters():
        param.requires_grad_(False)

    def mc_accuracy(images: Tensor, labels: Tensor) -> int:
        with torch.no_grad():
            probs = ddc.mc_predict(net.model, net.prepare(images), samples)
        return int((probs.argmax(-1) == labels).sum())

    torch.manual_seed(seed)
    clean = 0
    for start in range(0, len(x), batch):
        clean += mc_accuracy(x[start : start + batch], y[start : start + batch])
    out: dict[str, Any] = {"mc_clean": clean / max(len(x), 1), "pgd_eot": {}}
    for eps in epsilons:
        torch.manual_seed(seed)
        attack = torchattacks.EOTPGD(
            net,
            eps=eps,
            alpha=eps * PGD_STEP_FRACTION,
            steps=PGD_STEPS,
            eot_iter=eot,
            random_start=True,
        )
        attack.set_model_training_mode(
            model_training=True, batchnorm_training=False, dropout_training=True
        )
        correct = 0
        for start in range(0, len(x), batch):
            labels = y[start : start + batch]
            adv = attack(x[start : start + batch], labels)
            correct += mc_accuracy(adv, labels)
        out["pgd_eot"][str(eps)] = correct / max(len(x), 1)
    net.eval()
    return out
