"""Statistics of paired comparisons: the comparison itself, confidence intervals, Holm's
correction, power.

:func:`paired_comparison` takes the two per-seed value lists of one comparison (paired by seed);
the interval, effect and power functions take their differences ``d = reference - other``. NaN
stands for "undefined" (too few pairs, no spread) and is never an error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "BOOTSTRAP_MIN_PAIRS",
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "MAX_POWER_PAIRS",
    "bootstrap_ci",
    "effect_size",
    "holm",
    "mean_std",
    "paired_comparison",
    "pairs_for_power",
    "t_ci",
    "to_float",
]

#: A bootstrap interval is computed from this many pairs on (fewer: too few distinct resamples).
BOOTSTRAP_MIN_PAIRS = 5
#: Resamples of the percentile bootstrap, and the seed of its generator (reproducible reports).
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
#: :func:`pairs_for_power` gives up (returns ``None``) above this many pairs.
MAX_POWER_PAIRS = 100_000


def _finite(d: Sequence[float]) -> np.ndarray:
    arr = np.asarray(d, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"differences must be a 1-D list of numbers, got shape {arr.shape}")
    return arr[np.isfinite(arr)]


def t_ci(d: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Two-sided t interval of the mean of ``d``: ``mean ± t(1-(1-level)/2, n-1) · s/√n``.

    ``(nan, nan)`` for fewer than 2 finite values; a zero-width interval when all are equal."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    arr = _finite(d)
    n = arr.size
    if n < 2:
        return math.nan, math.nan
    from scipy import stats

    mean = float(arr.mean())
    if np.ptp(arr) <= 1e-12:  # equal differences (up to rounding)
        return mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(arr.std(ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


def bootstrap_ci(
    d: Sequence[float],
    level: float = 0.95,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d`` (``resamples`` resamples with
    replacement, generator seeded by ``seed``: the same numbers give the same interval).

    ``(nan, nan)`` for fewer than :data:`BOOTSTRAP_MIN_PAIRS` finite values."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    arr = _finite(d)
    if arr.size < BOOTSTRAP_MIN_PAIRS:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(resamples, arr.size))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


def holm(pvalues: Sequence[float | None]) -> list[float]:
    """Holm-Bonferroni adjusted p-values of one family, in the given order.

    With the ``m`` defined (finite) p-values sorted ascending, the i-th (0-based) becomes
    ``max over j <= i of min(1, (m - j) p_(j))``. ``None``/NaN entries (a comparison without a
    test) stay NaN and do not count in ``m``."""
    values = [math.nan if p is None else float(p) for p in pvalues]
    defined = sorted((p, i) for i, p in enumerate(values) if math.isfinite(p))
    m = len(defined)
    adjusted = [math.nan] * len(values)
    running = 0.0
    for rank, (p, i) in enumerate(defined):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def _paired_power(n: int, effect: float, alpha: float) -> float:
    """Power of the two-sided one-sample (paired) t-test with ``n`` pairs at effect size
    ``effect`` (mean / sd of the differences), from the noncentral t distribution."""
    from scipy import stats

    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = effect * math.sqrt(n)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def pairs_for_power(effect: float, power: float = 0.8, alpha: float = 0.05) -> int | None:
    """Smallest number of pairs (>= 2) for which a two-sided paired t-test at ``alpha`` has
    ``power`` against the standardized effect ``effect = mean(d) / sd(d)`` (Cohen's d_z).

    ``None`` for an effect that is zero or not finite, or when more than
    :data:`MAX_POWER_PAIRS` pairs would be needed. d = 1 gives 10 (power 0.803), as in the
    tables (G*Power, Cohen 1988)."""
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not math.isfinite(effect) or effect == 0.0:
        return None
    effect = abs(effect)
    # The normal approximation is a lower bound to start from; step up to the exact n.
    from scipy import stats

    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    n = max(2, math.floor((z / effect) ** 2))
    if n > MAX_POWER_PAIRS:
        return None
    while _paired_power(n, effect, alpha) < power:
        n += 1
        if n > MAX_POWER_PAIRS:
            return None
    while n > 2 and _paired_power(n - 1, effect, alpha) >= power:  # never overshoot
        n -= 1
    return n


def effect_size(d: Sequence[float]) -> float:
    """Cohen's d_z of paired differences: ``mean(d) / sd(d)`` (ddof=1); NaN when undefined."""
    arr = _finite(d)
    if arr.size < 2:
        return math.nan
    if np.ptp(arr) <= 1e-12:  # equal differences (up to rounding): no spread
        return math.nan
    return float(arr.mean()) / float(arr.std(ddof=1))


def to_float(value: Any) -> float:
    """``value`` as a float; NaN when it is not a number (a missing or garbled cell)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1); NaN std for fewer than 2 values, NaN mean for none."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return mean, std


def paired_comparison(
    reference: Sequence[float], other: Sequence[float], *, tie_tol: float = 1e-12
) -> dict[str, Any]:
    """Paired comparison of two equally long value lists (same seeds, same order).

    ``d = reference - other``. Returns ``n``, ``mean_diff``, ``std_diff`` (ddof=1),
    ``t_pvalue`` (``scipy.stats.ttest_rel``; NaN for ``n < 2`` or when all ``d`` are equal up to
    ``tie_tol``, so the statistic is undefined), ``wilcoxon_pvalue`` (signed-rank, two-sided, for
    ``n >= 5``, NaN when all ``|d| <= tie_tol``, else ``None``), and ``wins`` / ``ties`` /
    ``losses`` of the reference (``|d| <= tie_tol`` is a tie). No warnings are emitted.

    Also ``ci95_t`` (the 95 % t interval of the mean difference, NaN for ``n < 2``),
    ``ci95_bootstrap`` (percentile bootstrap, 10,000 seeded resamples, for ``n >= 5``, else
    ``None``), ``effect_size_dz`` (mean / sd of ``d``) and ``pairs_for_80_power`` (pairs a
    two-sided paired t-test at alpha 0.05 needs for 80 % power at that effect; ``None`` when
    undefined). See the functions above.
    """
    ref = np.asarray(reference, dtype=np.float64)
    oth = np.asarray(other, dtype=np.float64)
    if ref.shape != oth.shape or ref.ndim != 1:
        raise ValueError(
            f"paired_comparison: need two equally long 1-D lists, got {ref.shape} and {oth.shape}"
        )
    d = ref - oth
    n = int(d.size)
    mean_diff, std_diff = mean_std(d)
    t_p = math.nan
    if n >= 2 and np.ptp(d) > tie_tol:  # equal differences (up to rounding): t undefined
        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_p = float(stats.ttest_rel(ref, oth).pvalue)
    w_p: float | None = None
    if n >= 5:
        w_p = math.nan
        if np.any(np.abs(d) > tie_tol):
            from scipy import stats

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                w_p = float(stats.wilcoxon(np.where(np.abs(d) <= tie_tol, 0.0, d)).pvalue)
    ci = t_ci(d) if n >= 2 else (math.nan, math.nan)
    boot = bootstrap_ci(d) if n >= BOOTSTRAP_MIN_PAIRS else None
    effect = effect_size(d) if n >= 2 else math.nan
    return {
        "n": n,
        "mean_diff": mean_diff,
        "std_diff": std_diff,
        "ci95_t": list(ci),
        "ci95_bootstrap": None if boot is None else list(boot),
        "effect_size_dz": effect,
        "pairs_for_80_power": pairs_for_power(effect),
        "t_pvalue": t_p,
        "wilcoxon_pvalue": w_p,
        "wins": int(np.sum(d > tie_tol)),
        "ties": int(np.sum(np.abs(d) <= tie_tol)),
        "losses": int(np.sum(d < -tie_tol)),
    }
