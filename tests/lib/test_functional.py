"""The per-edge formula (SPEC section 2, steps 2-6) on hand-worked examples."""

from __future__ import annotations

import math

import pytest
import torch

from dynamic_dropconnect.functional import (
    apply_weight_mask,
    ddc_drop_probabilities,
    drop_connect,
    record_gradient,
    rescale_factor,
    sample_keep_mask,
)


def _by_hand(
    values: list[float], p: float, pg: float, tau: float, big: bool = False
) -> list[float]:
    """Independent scalar implementation of steps 2-6 with Python's math module."""
    a = [abs(v) for v in values]
    mu = sum(a) / len(a)
    sigma = math.sqrt(sum((x - mu) ** 2 for x in a) / (len(a) - 1))
    out = []
    for x in a:
        s = 1.0 / (1.0 + math.exp(-(x - mu) / (sigma + 1e-9)))
        q = s if big else 1.0 - s
        q = q if q > tau else 0.0
        out.append(min(p + pg * q, 0.95))
    return out


def test_hand_worked_small_direction() -> None:
    grad = torch.tensor([1.0, -2.0, 3.0, 4.0], dtype=torch.float64)
    probs = ddc_drop_probabilities(grad)
    # mean 2.5, unbiased std sqrt(5/3): z = (-1.162, -0.387, 0.387, 1.162)
    expected = [0.3 + 0.5 * 0.7616769, 0.3 + 0.5 * 0.5956322, 0.3, 0.3]
    torch.testing.assert_close(
        probs, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        probs, torch.tensor(_by_hand([1, -2, 3, 4], 0.3, 0.5, 0.5), dtype=torch.float64)
    )


def test_big_direction_mirrors_small() -> None:
    grad = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    probs = ddc_drop_probabilities(grad, direction="big")
    torch.testing.assert_close(
        probs, torch.tensor(_by_hand([1, 2, 3, 4], 0.3, 0.5, 0.5, big=True), dtype=torch.float64)
    )
    assert probs[0] == 0.3 and probs[3] > 0.68


def test_random_tensor_matches_scalar_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    grad = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    for p, pg, tau in [(0.3, 0.5, 0.5), (0.1, 0.8, 0.3), (0.5, 0.2, 0.0)]:
        probs = ddc_drop_probabilities(grad, p, pg, tau)
        ref = _by_hand(grad.flatten().tolist(), p, pg, tau)
        torch.testing.assert_close(probs.flatten(), torch.tensor(ref, dtype=torch.float64))


def test_threshold_half_gives_base_rate_to_above_mean_edges() -> None:
    grad = torch.randn(1000, generator=torch.Generator().manual_seed(1)).abs()
    probs = ddc_drop_probabilities(grad)
    above = grad > grad.mean()
    assert torch.all(probs[above] == 0.3)
    assert torch.all(probs[~above] > 0.3)
    assert probs.max() <= 0.3 + 0.5 + 1e-6


def test_no_threshold_gives_every_edge_extra_rate() -> None:
    probs = ddc_drop_probabilities(torch.randn(100), tau=0.0)
    assert torch.all(probs > 0.3)


def test_no_zscore_uses_raw_magnitude() -> None:
    grad = torch.tensor([0.0, 1.0, -2.0])
    probs = ddc_drop_probabilities(grad, zscore=False, tau=0.0)
    expected = 0.3 + 0.5 * (1 - torch.sigmoid(grad.abs()))
    torch.testing.assert_close(probs, expected)


def test_clamp_and_no_clamp() -> None:
    grad = torch.tensor([0.0, 0.0, 0.0, 10.0])
    assert ddc_drop_probabilities(grad, p=0.6, pg=0.9).max() == pytest.approx(0.95)
    assert ddc_drop_probabilities(grad, p=0.6, pg=0.9, p_max=None).max() > 0.95


def test_scale_and_sign_invariance() -> None:
    grad = torch.randn(50, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    base = ddc_drop_probabilities(grad)
    torch.testing.assert_close(ddc_drop_probabilities(-1024.0 * grad), base)


@pytest.mark.parametrize("value", [0.0, 0.1, 3.3e-7, 12345.678])
@pytest.mark.parametrize("numel", [1, 2, 1000, 4097])
def test_all_equal_gradient_gives_base_rate_without_nan(value: float, numel: int) -> None:
    probs = ddc_drop_probabilities(torch.full((numel,), value))
    assert torch.all(probs == 0.3), probs.unique()


def test_output_follows_dtype_and_shape() -> None:
    grad = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    probs = ddc_drop_probabilities(grad)
    assert probs.shape == grad.shape and probs.dtype == torch.float64


def test_bad_direction_is_named() -> None:
    with pytest.raises(ValueError, match="'sideways'"):
        ddc_drop_probabilities(torch.randn(4), direction="sideways")  # type: ignore[arg-type]


def test_keep_mask_frequency_per_edge() -> None:
    probs = torch.linspace(0.0, 0.9, 10)
    gen = torch.Generator().manual_seed(3)
    draws = 20000
    masks = sample_keep_mask(probs, probs, gen, batch=draws)
    freq_drop = 1.0 - masks.mean(0)
    tol = 4 * torch.sqrt(probs * (1 - probs) / draws) + 1e-9  # 4 standard errors
    assert torch.all((freq_drop - probs).abs() <= tol), (freq_drop, probs)


def test_rescale_factors() -> None:
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0])
    probs = torch.tensor([0.2, 0.4, 0.6, 0.0])
    assert rescale_factor(mask, probs, "empirical") == pytest.approx(0.75)
    assert rescale_factor(mask, probs, "expected") == pytest.approx(0.7)
    torch.testing.assert_close(rescale_factor(mask, probs, "per_edge"), 1 - probs)
    assert rescale_factor(mask, probs, "none") == 1.0
    # per-example masks get one empirical k each
    masks = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(
        rescale_factor(masks, probs, "empirical", per_example=True).flatten(),
        torch.tensor([0.5, 1.0]),
    )
    # a mask that drops everything must not give NaN
    assert torch.isfinite(rescale_factor(torch.zeros(4), probs, "empirical"))


def test_dense_and_masked_backward_rules() -> None:
    weight = torch.randn(6, 4, requires_grad=True)
    scale = torch.tensor([0.0, 2.0]).repeat(12).reshape(6, 4)
    upstream = torch.randn(6, 4)
    for update, expected in [("dense", upstream), ("masked", upstream * scale)]:
        weight.grad = None
        eff = apply_weight_mask(weight, scale, update)
        torch.testing.assert_close(eff, weight * scale)
        eff.backward(upstream)
        torch.testing.assert_close(weight.grad, expected)


def test_record_gradient_skips_non_finite() -> None:
    stat, seen = torch.zeros(3), torch.tensor(False)
    record_gradient(stat, seen, torch.tensor([1.0, -2.0, 3.0]))
    assert seen and torch.equal(stat, torch.tensor([1.0, 2.0, 3.0]))
    for bad in (float("nan"), float("inf"), -float("inf")):
        record_gradient(stat, seen, torch.tensor([9.0, bad, 9.0]))
        assert torch.equal(stat, torch.tensor([1.0, 2.0, 3.0]))


def test_drop_connect_eval_is_identity() -> None:
    weight = torch.randn(3, 3)
    assert drop_connect(weight, 0.5, training=False) is weight
