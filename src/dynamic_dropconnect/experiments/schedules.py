"""Learning-rate schedules, stepped once per epoch.

``"authors"`` (the default for the paper's experiments) is exactly what the authors' code runs:
``CosineAnnealingWarmupRestarts`` (katsura-jp's ``cosine_annealing_warmup``) built with
``first_cycle_steps = epochs``, ``max_lr = lr``, ``warmup_steps = W`` and the package's default
``min_lr = 0.001``, stepped after every epoch. Its constructor sets the optimizer's lr to
``min_lr``, so with ``k = epoch - 1`` (0-based) and ``T = epochs``:

.. math::

    \\eta_k = \\begin{cases}
        \\eta_{min} + (\\eta_{max} - \\eta_{min})\\, k / W & k < W \\\\
        \\eta_{min} + (\\eta_{max} - \\eta_{min})\\,
            \\tfrac12\\bigl(1 + \\cos(\\pi (k - W) / (T - W))\\bigr) & k \\ge W
    \\end{cases}

Epoch 1 runs at ``min_lr``; epoch ``W + 1`` at ``lr``; the last epoch is one cosine step short of
``min_lr`` (the cycle would reach it at step ``T``). When ``lr <= min_lr`` the same formula gives a
flat schedule (MNIST: 0.001 throughout) or an inverted one (NORB-AlexNet: 1e-3 → 2e-4 → 1e-3).

``"cosine"`` is this project's earlier schedule, kept as an explicit option: linear warmup from
``lr / W`` to ``lr`` over ``W`` epochs, then cosine to 0.
"""

from __future__ import annotations

import math

__all__ = ["AUTHORS_MIN_LR", "SCHEDULES", "lr_at_epoch", "lr_schedule"]

#: ``min_lr`` that the authors' code never overrides (the scheduler package's default).
AUTHORS_MIN_LR = 0.001
SCHEDULES: tuple[str, ...] = ("authors", "cosine")


def _check(schedule: str, epochs: int, warmup: int) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0 <= warmup < epochs:  # the authors' scheduler asserts warmup_steps < cycle steps
        raise ValueError(f"warmup must be in [0, epochs) = [0, {epochs}), got {warmup}")


def lr_at_epoch(
    schedule: str,
    epoch: int,
    *,
    epochs: int,
    warmup: int,
    lr: float,
    min_lr: float = AUTHORS_MIN_LR,
) -> float:
    """Learning rate of (0-based) ``epoch`` under ``schedule`` (see the module docstring)."""
    _check(schedule, epochs, warmup)
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch must be in [0, {epochs}), got {epoch}")
    if schedule == "authors":
        if epoch < warmup:
            return (lr - min_lr) * epoch / warmup + min_lr
        cosine = math.cos(math.pi * (epoch - warmup) / (epochs - warmup))
        return min_lr + (lr - min_lr) * (1.0 + cosine) / 2.0
    if epoch < warmup:
        return lr * (epoch + 1) / warmup
    span = max(epochs - warmup, 1)
    return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / span))


def lr_schedule(
    schedule: str, *, epochs: int, warmup: int, lr: float, min_lr: float = AUTHORS_MIN_LR
) -> list[float]:
    """The whole per-epoch sequence, ``[lr_at_epoch(schedule, e, ...) for e in range(epochs)]``."""
    return [
        lr_at_epoch(schedule, e, epochs=epochs, warmup=warmup, lr=lr, min_lr=min_lr)
        for e in range(epochs)
    ]
