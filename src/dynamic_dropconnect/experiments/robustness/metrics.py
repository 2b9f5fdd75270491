"""The numbers derived from one run's robustness record (``robustness.json``): mean
corruption accuracy, corruption errors and ImageNet-C's mCE against the ``none`` runs, and the
flat ``{metric: value}`` the tables and paired tests read."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import attacks, pruning

__all__ = [
    "LOWER_IS_BETTER",
    "PARTS",
    "RELATIVE_MIN_EXCESS",
    "corruption_errors",
    "mce",
    "mean_corruption",
    "relative_mce_corruptions",
    "run_metrics",
]


#: The parts of a robustness evaluation, in the order of the report.
PARTS: tuple[str, ...] = ("corruptions", "adversarial", "pruning")


def mean_corruption(run: dict[str, Any]) -> float:
    """Accuracy under corruption, mean over every corruption and severity."""
    acc = run["parts"]["corruptions"]["accuracy"]
    return float(np.mean([a for values in acc.values() for a in values]))


def corruption_errors(run: dict[str, Any]) -> dict[str, float]:
    """``{corruption: sum over severities of the error}``."""
    return {
        c: float(sum(1 - a for a in v)) for c, v in run["parts"]["corruptions"]["accuracy"].items()
    }


#: A corruption enters the relative mCE only where the baseline's corrupted error exceeds its
#: clean error by at least this much, summed over the severities (1 point): below it the
#: denominator is a handful of test images and the ratio is noise (MNIST's shot noise at 99 %
#: clean accuracy: about 3 images in 1,000).
RELATIVE_MIN_EXCESS = 0.01


def mce(run: dict[str, Any], baseline: list[dict[str, Any]]) -> tuple[float, float]:
    """(mCE, relative mCE) in % against the mean of the ``baseline`` runs.

    mCE: the mean over corruptions of ``sum_s E / sum_s E_none`` (NaN where the baseline's
    error is zero). Relative mCE: the mean of ``sum_s (E - E_clean) / sum_s (E_none -
    E_none,clean)`` over the corruptions where the baseline's excess is at least
    :data:`RELATIVE_MIN_EXCESS` (NaN if there is none)."""
    if not baseline:
        return math.nan, math.nan
    mine = corruption_errors(run)
    base, base_clean = _baseline_errors(baseline)
    n_sev = len(next(iter(run["parts"]["corruptions"]["accuracy"].values())))
    clean = n_sev * (1 - run["clean_accuracy"])
    ce = [mine[c] / base[c] if base[c] > 0 else math.nan for c in mine]
    kept = _with_excess(base, base_clean)
    rel = [(mine[c] - clean) / (base[c] - base_clean) for c in kept]
    return 100 * float(np.mean(ce)), 100 * float(np.mean(rel)) if rel else math.nan


def _baseline_errors(baseline: list[dict[str, Any]]) -> tuple[dict[str, float], float]:
    """``({corruption: summed error}, summed clean error)``, each the mean over the baseline
    runs; the clean error counted once per severity, as the corrupted one is."""
    errors = [corruption_errors(b) for b in baseline]
    n_sev = len(next(iter(baseline[0]["parts"]["corruptions"]["accuracy"].values())))
    base = {c: float(np.mean([e[c] for e in errors])) for c in errors[0]}
    return base, n_sev * float(np.mean([1 - b["clean_accuracy"] for b in baseline]))


def relative_mce_corruptions(baseline: list[dict[str, Any]]) -> list[str]:
    """The corruptions the relative mCE averages over (see :func:`mce`)."""
    return _with_excess(*_baseline_errors(baseline)) if baseline else []


def _with_excess(base: dict[str, float], base_clean: float) -> list[str]:
    """The corruptions of ``base`` whose error exceeds ``base_clean`` by
    :data:`RELATIVE_MIN_EXCESS` (both as :func:`_baseline_errors` gives them)."""
    return [c for c, e in base.items() if e - base_clean >= RELATIVE_MIN_EXCESS]


def run_metrics(run: dict[str, Any], baseline: list[dict[str, Any]]) -> dict[str, float]:
    """Flat ``{metric: value}`` of one run (accuracies in [0, 1], mCE in %)."""
    out = {"clean": run["clean_accuracy"]}
    parts = run["parts"]
    if "corruptions" in parts:
        out["corruption mean"] = mean_corruption(run)
        for c, values in parts["corruptions"]["accuracy"].items():
            out[f"corruption {c}"] = float(np.mean(values))
        out["mCE"], out["relative mCE"] = mce(run, baseline)
    if "adversarial" in parts:
        for name in attacks.ATTACKS:
            for eps, acc in parts["adversarial"].get(name, {}).items():
                out[f"{name.upper()} ε={eps}"] = acc
        if "pgd_eot" in parts["adversarial"]:
            out["MC clean"] = parts["adversarial"]["mc_clean"]
            for eps, acc in parts["adversarial"]["pgd_eot"].items():
                out[f"PGD-EOT MC ε={eps}"] = acc
    if "pruning" in parts:
        for how in pruning.HOW:
            for f, acc in parts["pruning"].get(how, {}).items():
                out[f"{how} f={f}"] = acc
    return out


#: The metrics of :func:`run_metrics` where lower is better (the others are accuracies).
LOWER_IS_BETTER = ("mCE", "relative mCE")
