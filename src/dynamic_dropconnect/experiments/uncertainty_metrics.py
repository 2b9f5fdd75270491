"""The uncertainty metrics of class probabilities, on tensors: accuracy, NLL, Brier score and
ECE, reliability-diagram bins, predictive entropy, mutual information (BALD) and
out-of-distribution detection scores; and the settings the uncertainty pass shares.

Libraries: ECE is ``torchmetrics``' ``multiclass_calibration_error``; AUROC and the ROC curve
are scikit-learn's ``roc_auc_score`` / ``roc_curve`` (both imported inside the functions). NLL,
Brier and entropy are one line each, and the reliability-diagram bins (which neither library
returns) are computed here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

import dynamic_dropconnect as ddc

__all__ = [
    "N_BINS",
    "OOD_PAIRS",
    "T_VALUES",
    "classification_metrics",
    "is_stochastic",
    "mutual_information",
    "ood_detection",
    "predictive_entropy",
    "reliability_bins",
]


T_VALUES: tuple[int, ...] = (1, 5, 10, 30, 100)


N_BINS = 15


#: In-distribution data set -> the out-of-distribution one.
OOD_PAIRS: dict[str, str] = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}


_EPS = 1e-12


def classification_metrics(probs: Tensor, labels: Tensor, n_bins: int = N_BINS) -> dict[str, float]:
    """Accuracy, NLL, Brier score and ECE of ``(N, C)`` class probabilities."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs = probs.double()
    labels = labels.long()
    picked = probs.gather(1, labels[:, None]).squeeze(1)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    ece = multiclass_calibration_error(
        probs.float(), labels, num_classes=probs.shape[1], n_bins=n_bins, norm="l1"
    )
    return {
        "accuracy": float((probs.argmax(1) == labels).double().mean()),
        "nll": float(-picked.clamp_min(_EPS).log().mean()),
        "brier": float((probs - onehot).pow(2).sum(1).mean()),
        "ece": float(ece),
    }


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = N_BINS) -> dict[str, list[float]]:
    """Per equal-width confidence bin: mean confidence, accuracy and count (for diagrams)."""
    confidence, predicted = probs.double().max(1)
    correct = (predicted == labels).double()
    index = torch.clamp((confidence * n_bins).ceil().long() - 1, 0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(correct))
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, confidence)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct)
    safe = count.clamp_min(1)
    return {
        "confidence": (conf_sum / safe).tolist(),
        "accuracy": (acc_sum / safe).tolist(),
        "count": count.tolist(),
    }


def predictive_entropy(mean_probs: Tensor) -> Tensor:
    """``H[p] = -sum_c p_c log p_c`` per example of ``(N, C)`` probabilities (nats)."""
    p = mean_probs.double()
    return -(p * p.clamp_min(_EPS).log()).sum(-1)


def mutual_information(samples: Tensor) -> Tensor:
    """BALD: ``H[mean_t p_t] - mean_t H[p_t]`` per example of ``(T, N, C)`` samples (>= 0)."""
    return (predictive_entropy(samples.mean(0)) - predictive_entropy(samples).mean(0)).clamp_min(0)


def ood_detection(in_scores: Tensor, out_scores: Tensor) -> dict[str, float]:
    """AUROC and FPR at 95 % TPR; out-of-distribution is positive, a higher score more OOD."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
    s = np.concatenate([in_scores.double().numpy(), out_scores.double().numpy()])
    fpr, tpr, _ = roc_curve(y, s)
    return {
        "auroc": float(roc_auc_score(y, s)),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }


def is_stochastic(model: nn.Module) -> bool:
    """Whether ``model`` draws masks in its forward (a regularizer, Standout or dropout), so
    that Monte-Carlo passes differ."""
    return any(
        isinstance(m, ddc.WeightRegularizer | ddc.Standout | nn.modules.dropout._DropoutNd)
        for m in model.modules()
    )
