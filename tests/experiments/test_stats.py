"""Statistics of paired comparisons against hand-computed and textbook values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dynamic_dropconnect.experiments.stats import (
    bootstrap_ci,
    effect_size,
    holm,
    pairs_for_power,
    t_ci,
)


def test_t_interval_by_hand() -> None:
    # d = 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302652729749462 -> half width 4.3027 / sqrt(3)
    low, high = t_ci([1.0, 2.0, 3.0])
    half = 4.302652729749462 / math.sqrt(3)
    assert low == pytest.approx(2 - half, abs=1e-12) and high == pytest.approx(2 + half, abs=1e-12)
    assert (low, high) == pytest.approx((-0.4841377, 4.4841377), abs=1e-7)
    assert all(math.isnan(v) for v in t_ci([1.0]))
    assert t_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    with pytest.raises(ValueError, match="level"):
        t_ci([1.0, 2.0], level=1.5)


def test_bootstrap_percentile_interval() -> None:
    d = [0.01, 0.02, 0.00, 0.03, 0.015]
    low, high = bootstrap_ci(d)
    assert bootstrap_ci(d) == (low, high)  # seeded: the same numbers give the same interval
    assert min(d) <= low < np.mean(d) < high <= max(d)
    # The same resampling by hand.
    rng = np.random.default_rng(0)
    means = np.asarray(d)[rng.integers(0, 5, size=(10_000, 5))].mean(axis=1)
    assert (low, high) == tuple(np.quantile(means, [0.025, 0.975]))
    assert all(math.isnan(v) for v in bootstrap_ci(d[:4]))  # fewer than 5 pairs


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 with m = 3: 3 * 0.01 = 0.03; 2 * 0.03 = 0.06; 1 * 0.04 = 0.04,
    # raised to the running maximum 0.06. A missing p stays NaN and does not count in m.
    adjusted = holm([0.01, 0.04, 0.03, None])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


@pytest.mark.parametrize(
    ("effect", "pairs"),
    [(1.0, 10), (-1.0, 10), (0.5, 34), (0.8, 15), (0.2, 199)],  # G*Power, paired t, two-sided
)
def test_pairs_for_80_percent_power_textbook(effect: float, pairs: int) -> None:
    assert pairs_for_power(effect) == pairs


def test_pairs_for_power_degenerate() -> None:
    assert pairs_for_power(0.0) is None
    assert pairs_for_power(math.nan) is None
    assert pairs_for_power(1e-4) is None  # more than MAX_POWER_PAIRS
    assert pairs_for_power(10.0) == 3  # at least 2 pairs; 2 have too few degrees of freedom
    assert math.isnan(effect_size([0.1, 0.1, 0.1]))
    assert effect_size([1.0, 2.0, 3.0]) == pytest.approx(2.0)
