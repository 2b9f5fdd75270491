"""Figure 1's simulation: gradient-descent paths of a 2-D linear regression under edge dropping.

The model is ``y_hat = w1 * x1 + w2 * x2``, the loss the mean squared error, the optimizer
full-batch gradient descent with a fixed learning rate. Each of the two weights is one "edge".
Four update rules are compared from two initial points:

- ``"none"``: plain gradient descent, ``w <- w - lr * dL/dw``.
- ``"ddc"``: Dynamic DropConnect, "drop small gradient": per-step drop probabilities
  ``ddc_drop_probabilities(g, p, pg, tau, direction="small")`` from the previous step's gradient
  ``g`` w.r.t. the effective weight (base rate ``p`` on the first step; docs/method.md).
- ``"ddc-big-gradient"``: the same with ``direction="big"`` (the ablation).
- ``"dropconnect"``: a fixed drop rate for both weights.

Every dropping rule samples a keep mask ``M``, rescales by the kept fraction of that mask
(``W_eff = W * M / (sum(M) / 2)``, the authors' "empirical" rescale) and applies the *dense*
gradient ``dL/dW_eff`` to ``W`` (the authors' code; docs/method.md).

With two weights the layer-wise z-score is ``+-1/sqrt(2)`` whenever ``|g1| != |g2|``, so at the
defaults (``p=0.3, pg=0.5, tau=0.5``) the edge with the smaller gradient is dropped with
probability ``0.3 + 0.5 * (1 - sigmoid(-0.707)) = 0.635`` and the other with ``0.3`` (mean 0.47,
close to DropConnect's 0.5).

The data are generated here (self-contained, fixed seed): the shared
``datasets.make_synthetic_regression`` draws both features with unit scale, which gives the two
weights similar gradient magnitudes; Figure 1 needs clearly different ones, so ``x2`` is drawn
with a smaller scale than ``x1`` (an elongated loss valley).

The figure and ``synthetic.json`` are written by ``experiments.synthetic``, which re-exports the
names of this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..functional import ddc_drop_probabilities, rescale_factor, sample_keep_mask

__all__ = [
    "DATA_SEED",
    "DROPCONNECT_RATE",
    "EPOCHS",
    "FEATURE_SCALES",
    "INITS",
    "LR",
    "MARKER_EPOCHS",
    "NOISE",
    "N_MASK_SEEDS",
    "N_POINTS",
    "UPDATE_RULES",
    "W_TRUE",
    "SyntheticData",
    "final_losses",
    "init_key",
    "loss_curve",
    "make_data",
    "mse",
    "simulate",
]

#: Update rules, in plotting order (not the suite's training methods, ``methods.METHODS``).
UPDATE_RULES: tuple[str, ...] = ("none", "ddc", "ddc-big-gradient", "dropconnect")

#: Task constants (our choice; the paper gives none): y = W_TRUE . x + NOISE * eps,
#: x_k ~ FEATURE_SCALES[k] * N(0, 1), eps ~ N(0, 1).
W_TRUE: tuple[float, float] = (2.0, 1.5)
FEATURE_SCALES: tuple[float, float] = (1.0, 0.4)
NOISE = 0.1
N_POINTS = 256
DATA_SEED = 0

#: Two initial points (w1, w2) and the epochs that get a marker on each path.
INITS: tuple[tuple[float, float], ...] = ((-1.0, -1.5), (4.0, -1.0))
MARKER_EPOCHS: tuple[int, ...] = (7, 13, 19)

#: Defaults of the simulation.
EPOCHS = 25
LR = 0.1
DROPCONNECT_RATE = 0.5
N_MASK_SEEDS = 20


@dataclass(frozen=True)
class SyntheticData:
    """Full-batch regression data, float64: ``x`` is ``(n, 2)``, ``y`` is ``(n,)``."""

    x: torch.Tensor
    y: torch.Tensor

    def gradient(self, w: torch.Tensor) -> torch.Tensor:
        """``dL/dw`` of the MSE ``mean((x @ w - y) ** 2)`` at ``w``: ``2/n * x^T (x w - y)``."""
        return 2.0 / self.x.shape[0] * (self.x.T @ (self.x @ w - self.y))

    def optimum(self) -> torch.Tensor:
        """The least-squares weights (the minimum of the loss)."""
        return torch.linalg.lstsq(self.x, self.y.unsqueeze(1)).solution.squeeze(1)


def make_data(
    n: int = N_POINTS,
    seed: int = DATA_SEED,
    w_true: Sequence[float] = W_TRUE,
    scales: Sequence[float] = FEATURE_SCALES,
    noise: float = NOISE,
) -> SyntheticData:
    """Draw the regression data with a private ``torch.Generator`` (global RNG untouched)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor(list(w_true), dtype=torch.float64)
    x = torch.randn(n, w.numel(), generator=g, dtype=torch.float64)
    x = x * torch.tensor(list(scales), dtype=torch.float64)
    y = x @ w + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return SyntheticData(x, y)


def mse(data: SyntheticData, w: np.ndarray | torch.Tensor) -> np.ndarray:
    """MSE of the weights ``w`` (shape ``(..., 2)``, a path or a grid), shape ``w.shape[:-1]``."""
    weights = torch.as_tensor(np.asarray(w, dtype=np.float64))
    residual = weights @ data.x.T - data.y  # (..., n)
    return (residual**2).mean(dim=-1).numpy()


def simulate(
    method: str,
    init: Sequence[float],
    epochs: int = EPOCHS,
    lr: float = LR,
    seed: int = 0,
    p: float = 0.3,
    pg: float = 0.5,
    tau: float = 0.5,
    *,
    dropconnect_rate: float = DROPCONNECT_RATE,
    data: SyntheticData | None = None,
) -> np.ndarray:
    """The weight path of one update rule: an ``(epochs + 1, 2)`` array, row 0 is ``init``.

    Args:
        method: one of :data:`UPDATE_RULES`.
        init: initial weights ``(w1, w2)``.
        epochs: number of full-batch gradient steps.
        lr: fixed learning rate.
        seed: seed of the ``torch.Generator`` that draws the masks (unused by ``"none"``).
        p, pg, tau: DDC hyperparameters (base rate, gradient unit rate, threshold).
        dropconnect_rate: the fixed drop rate of ``"dropconnect"``.
        data: the regression data; :func:`make_data` by default.

    Each step: probabilities (DDC: from the previous step's dense gradient w.r.t. the effective
    weight; base rate ``p`` before any), mask ``M ~ Bernoulli(1 - p_ij)``, ``W_eff = W * M / k``
    with ``k`` the kept fraction, ``g = dL/dW_eff`` and the dense update ``W <- W - lr * g``.
    """
    if method not in UPDATE_RULES:
        raise ValueError(
            f"method must be one of {', '.join(map(repr, UPDATE_RULES))}, got {method!r}"
        )
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    data = make_data() if data is None else data
    gen = torch.Generator().manual_seed(seed)
    w = torch.tensor(list(init), dtype=torch.float64)
    if w.shape != (2,):
        raise ValueError(f"init must be two numbers (w1, w2), got {init!r}")
    path = [w.clone()]
    last_grad: torch.Tensor | None = None
    for _ in range(epochs):
        if method == "none":
            w_eff = w
        else:
            probs: torch.Tensor | float
            if method == "dropconnect":
                probs = dropconnect_rate
            elif last_grad is None:
                probs = p  # no gradient seen yet: base rate
            else:
                direction = "small" if method == "ddc" else "big"
                probs = ddc_drop_probabilities(last_grad, p, pg, tau, direction=direction)
            mask = sample_keep_mask(w, probs, gen)
            w_eff = w * mask / rescale_factor(mask, probs, "empirical")
        grad = data.gradient(w_eff)  # dense: w.r.t. the effective weight, for every edge
        w = w - lr * grad
        last_grad = grad
        path.append(w.clone())
    return torch.stack(path).numpy()


def loss_curve(method: str, init: Sequence[float], **kwargs: Any) -> np.ndarray:
    """The MSE along :func:`simulate`'s path (raw weights, no mask): shape ``(epochs + 1,)``."""
    data = kwargs.pop("data", None) or make_data()
    return mse(data, simulate(method, init, data=data, **kwargs))


def final_losses(
    inits: Sequence[Sequence[float]] = INITS,
    *,
    methods: Sequence[str] = UPDATE_RULES,
    seeds: Sequence[int] = tuple(range(N_MASK_SEEDS)),
    epochs: int = EPOCHS,
    lr: float = LR,
    p: float = 0.3,
    pg: float = 0.5,
    tau: float = 0.5,
    dropconnect_rate: float = DROPCONNECT_RATE,
    data: SyntheticData | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Loss statistics of every method from every initial point over mask ``seeds``.

    Returns ``{method: {"w1,w2": {"final_mean", "final_std", "final_median", "auc_mean",
    "at_epoch": {e: mean loss}, "curve_mean": [...]}}}``, where the loss is the MSE of the raw
    weights and ``auc_mean`` the mean loss over epochs 1..epochs (lower = faster convergence).
    ``std`` is the sample std over seeds (0 for a single seed).
    """
    data = make_data() if data is None else data
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method in methods:
        out[method] = {}
        for init in inits:
            method_seeds = seeds if method != "none" else seeds[:1]  # deterministic
            curves = np.stack(
                [
                    mse(
                        data,
                        simulate(
                            method,
                            init,
                            epochs,
                            lr,
                            s,
                            p,
                            pg,
                            tau,
                            dropconnect_rate=dropconnect_rate,
                            data=data,
                        ),
                    )
                    for s in method_seeds
                ]
            )
            final = curves[:, -1]
            out[method][init_key(init)] = {
                "final_mean": float(final.mean()),
                "final_std": float(final.std(ddof=1)) if len(final) > 1 else 0.0,
                "final_median": float(np.median(final)),
                "auc_mean": float(curves[:, 1:].mean()) if epochs else float(curves.mean()),
                "at_epoch": {
                    str(e): float(curves[:, e].mean()) for e in MARKER_EPOCHS if e <= epochs
                },
                "curve_mean": [float(v) for v in curves.mean(axis=0)],
                "n_seeds": len(method_seeds),
            }
    return out


def init_key(init: Sequence[float]) -> str:
    """The key of an initial point in :func:`final_losses`' result and the JSON: ``"w1,w2"``."""
    return ",".join(f"{float(v):g}" for v in init)
