"""Statistics of paired comparisons: confidence intervals, Holm's correction, power.

All functions take the per-seed differences ``d = reference - other`` of one comparison (paired
by seed). NaN stands for "undefined" (too few pairs, no spread) and is never an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "BOOTSTRAP_MIN_PAIRS",
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "MAX_POWER_PAIRS",
    "bootstrap_ci",
    "effect_size",
    "holm",
    "pairs_for_power",
    "t_ci",
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
