"""Multi-seed summaries of a run: per-method statistics, paired comparisons against a
reference (:func:`.stats.paired_comparison`, Holm-adjusted per table), the chance level and the
methods whose numbers are not informative (at chance, or a training loss that did not fall)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .config import EXPERIMENTS
from .datasets import DatasetError, get_info
from .stats import holm, mean_std, paired_comparison, to_float

__all__ = [
    "CHANCE_MARGIN",
    "METRICS",
    "add_holm",
    "chance_level",
    "flag_uninformative",
    "summarize",
]


#: The per-seed numbers summarized for every method (keys of ``result.json``).
METRICS: tuple[str, ...] = ("test_acc_at_best_val", "final_test_acc", "max_test_acc")


#: A method whose mean test accuracy (at the best-validation epoch) is below chance plus this
#: many (fraction) points is flagged "at chance": 5 percentage points.
CHANCE_MARGIN = 0.05


def summarize(
    results: Sequence[dict[str, Any]], reference: str = "ddc", *, paired_metric: str = METRICS[0]
) -> dict[str, Any]:
    """Per-method statistics and paired comparisons of ``reference`` against each other method.

    Returns::

        {"reference": str, "paired_metric": str, "method_order": [...],
         "methods": {m: {"n": int, "seeds": [...],
                         <metric>: {"mean", "std", "values"} for metric in METRICS}},
         "comparisons": {m: {"seeds": [...], **paired_comparison(ref, m)}}}

    ``std`` is the sample std (ddof=1), NaN for one seed. Comparisons pair by seed over the seeds
    both methods have, on ``paired_metric`` (test accuracy at the best-validation epoch), with
    ``mean_diff = reference - method``. No comparisons when ``reference`` has no results. A seed
    that appears twice for one method keeps its last result. ``holm_pvalue`` adjusts the t-test
    p-values for the family of all comparisons of the table (:func:`add_holm`).
    """
    by_method: dict[str, dict[int, dict[str, Any]]] = {}
    for r in results:
        by_method.setdefault(str(r["method"]), {})[int(r["seed"])] = r
    methods: dict[str, Any] = {}
    for method, seeds in by_method.items():
        entry: dict[str, Any] = {"n": len(seeds), "seeds": sorted(seeds)}
        for key in ("edge_drop_rate", "edge_mask_variance"):  # for methods that drop edges
            values = [to_float(seeds[s].get(key)) for s in sorted(seeds)]
            if values and all(math.isfinite(v) for v in values):
                entry[key] = float(np.mean(values))
        for metric in METRICS:
            values = [to_float(seeds[s].get(metric)) for s in sorted(seeds)]
            mean, std = mean_std(values)
            entry[metric] = {"mean": mean, "std": std, "values": values}
        methods[method] = entry
    comparisons: dict[str, Any] = {}
    if reference in by_method:
        ref = by_method[reference]
        for method, seeds in by_method.items():
            if method == reference:
                continue
            common = sorted(set(ref) & set(seeds))
            comparisons[method] = {
                "seeds": common,
                **paired_comparison(
                    [to_float(ref[s].get(paired_metric)) for s in common],
                    [to_float(seeds[s].get(paired_metric)) for s in common],
                ),
            }
    add_holm(comparisons.values())
    return {
        "reference": reference,
        "paired_metric": paired_metric,
        "method_order": list(by_method),
        "methods": methods,
        "comparisons": comparisons,
    }


def add_holm(comparisons: Iterable[dict[str, Any]]) -> None:
    """Set ``holm_pvalue`` of every comparison (one family: one table), from ``t_pvalue``.
    Comparisons without a p-value get NaN and do not count in the family size."""
    family = list(comparisons)
    for comp, adjusted in zip(family, holm([c["t_pvalue"] for c in family]), strict=True):
        comp["holm_pvalue"] = adjusted


def _dataset_of(record: dict[str, Any]) -> str | None:
    """The data set a config.json or result.json names: its ``settings.dataset``, else that of
    its (known) ``experiment``."""
    settings = record.get("settings")
    if isinstance(settings, dict) and isinstance(settings.get("dataset"), str):
        return settings["dataset"]
    known = EXPERIMENTS.get(str(record.get("experiment")))
    return known.dataset if known is not None else None


def chance_level(
    config: dict[str, Any], results: Sequence[dict[str, Any]] = ()
) -> tuple[float, int] | None:
    """``(1 / K, K)``: the accuracy of guessing among the ``K`` classes of a classification run.

    ``K`` is the ``num_classes`` that config.json or a result.json records, else that of the data
    set they name (:func:`.datasets.get_info`). ``None`` when unknown or not a classification
    task (a regression data set has no classes)."""
    records = [config, *results]
    for record in records:
        k = record.get("num_classes")
        if isinstance(k, int) and not isinstance(k, bool) and k >= 2:
            return 1.0 / k, k
    for record in records:
        dataset = _dataset_of(record)
        if dataset is None:
            continue
        try:
            k = get_info(dataset).num_classes
        except DatasetError:
            return None
        return (1.0 / k, k) if k >= 2 else None
    return None


def flag_uninformative(
    summary: dict[str, Any],
    train_losses: dict[str, dict[int, np.ndarray]] | None = None,
    chance: float | None = None,
) -> dict[str, list[str]]:
    """The methods whose numbers say nothing about the method, ``{method: [reason, ...]}``.

    - ``"at chance"``: mean test accuracy at the best-validation epoch below
      ``chance + CHANCE_MARGIN`` (only when ``chance``, a fraction, is known);
    - ``"loss did not fall (seed k, ...)"``: a seed of ``train_losses`` (``{method: {seed:
      training loss per epoch}}``) with two or more epochs whose last training loss is not below
      its first; ``"loss not finite (seed k)"`` when the last one is NaN or infinite (diverged).

    Methods without a reason are left out."""
    flags: dict[str, list[str]] = {}
    for method in summary["method_order"]:
        reasons = []
        mean = summary["methods"][method]["test_acc_at_best_val"]["mean"]
        if chance is not None and math.isfinite(mean) and mean < chance + CHANCE_MARGIN:
            reasons.append("at chance")
        flat, diverged = [], []
        for seed, losses in sorted((train_losses or {}).get(method, {}).items()):
            losses = np.asarray(losses, dtype=np.float64)
            if losses.size < 2:
                continue
            if not math.isfinite(losses[-1]):
                diverged.append(seed)
            elif math.isfinite(losses[0]) and losses[-1] >= losses[0]:
                flat.append(seed)
        for seeds, what in ((flat, "loss did not fall"), (diverged, "loss not finite")):
            if seeds:
                label = "seed" if len(seeds) == 1 else "seeds"
                reasons.append(f"{what} ({label} {', '.join(map(str, seeds))})")
        if reasons:
            flags[method] = reasons
    return flags
