"""Low-precision numerics: fp16/bf16 weights get the drop rates an fp32 weight gets.

Tolerances: a realized keep fraction over ``N`` Bernoulli draws is compared with ``1 - p``
within 4.5 standard errors, ``4.5 * sqrt(p (1 - p) / N)``; with ``N`` of a few million that is
about 1e-3, below the bias of a bfloat16 uniform (8 mantissa bits: up to 2e-3). Every draw
is seeded, so the tests are deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import dynamic_dropconnect as ddc
from dynamic_dropconnect.functional import ddc_drop_probabilities, sample_keep_mask

DTYPES = [torch.float16, torch.bfloat16, torch.float32]
IDS = ["fp16", "bf16", "fp32"]


def _tolerance(p: float | Tensor, draws: int) -> float:
    """4.5 standard errors of a kept fraction whose edges have drop rates ``p``."""
    variance = float((p * (1 - p)).mean()) if isinstance(p, Tensor) else p * (1 - p)
    return 4.5 * math.sqrt(variance / draws)


# -- the z-score ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("value", [0.0, 0.1, 3.0e-5, 1000.0])
def test_all_equal_statistic_gives_base_rate_in_every_dtype(
    dtype: torch.dtype, value: float
) -> None:
    # eps=1e-9 is 0 in float16: std + eps = 0 gave z = 0/0 = NaN and p = NaN.
    probs = ddc_drop_probabilities(torch.full((2, 3), value, dtype=dtype))
    assert torch.isfinite(probs).all(), probs
    torch.testing.assert_close(probs.double(), torch.full((2, 3), 0.3, dtype=torch.float64))


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_low_precision_probabilities_match_float64(dtype: torch.dtype) -> None:
    grad = torch.randn(64, 48, generator=torch.Generator().manual_seed(0)).to(dtype)
    probs = ddc_drop_probabilities(grad)
    expected = ddc_drop_probabilities(grad.double())  # the same (rounded) input, exact maths
    # The z-score runs in float32 for half types: p is exact to float32 rounding.
    torch.testing.assert_close(probs.double(), expected, atol=1e-5, rtol=0)


# -- the mask ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.7, 0.95])
def test_keep_mask_rate_in_low_precision(dtype: torch.dtype, p: float) -> None:
    like = torch.empty(2048, 2048, dtype=dtype)  # 4M draws: 4.5 SE is at most 1.1e-3
    gen = torch.Generator().manual_seed(1)
    for probs in (p, torch.full((2048, 2048), p)):  # a rate, and a float32 p_ij tensor
        mask = sample_keep_mask(like, probs, gen)
        assert mask.dtype == dtype
        kept = mask.double().mean().item()
        assert abs(kept - (1 - p)) <= _tolerance(p, mask.numel()), (kept, 1 - p)


# -- every regularizer, end to end ---------------------------------------------------------
SHAPE = (256, 256)
DRAWS = 64  # 64 x 65536 = 4.2M edges per check


def _keep_fraction(reg: nn.Module, weight: Tensor) -> float:
    """Kept fraction over DRAWS masks; ``weight`` is all ones, so ``W_eff != 0`` is the mask."""
    kept = 0.0
    with torch.no_grad():
        for _ in range(DRAWS):
            eff = reg(weight)
            assert torch.isfinite(eff).all()
            kept += (eff != 0).double().mean().item()
    return kept / DRAWS


def _ddc_after(kind: str, dtype: torch.dtype) -> tuple[ddc.DynamicDropConnect, Tensor, Tensor]:
    """A DDC regularizer after ``kind`` ("none", "gradient", "zero"): reg, weight, exact p."""
    torch.manual_seed(2)
    reg = ddc.DynamicDropConnect()
    weight = torch.ones(SHAPE, dtype=dtype)
    reg.prepare(weight)
    if kind != "none":
        leaf = weight.clone().requires_grad_()
        upstream = torch.randn(SHAPE).to(dtype) if kind == "gradient" else torch.zeros(SHAPE)
        (reg(leaf) * upstream.to(dtype)).sum().backward()
        assert reg.has_gradient
    if kind == "gradient":
        expected = ddc_drop_probabilities(reg.grad_magnitude.double())  # float64 reference
        assert 0.4 < float(expected.mean()) < 0.6  # a non-trivial statistic
    else:
        expected = torch.full(SHAPE, 0.3, dtype=torch.float64)
    return reg, weight, expected


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("kind", ["none", "gradient", "zero"])
def test_ddc_keep_fraction_in_every_dtype(dtype: torch.dtype, kind: str) -> None:
    reg, weight, expected = _ddc_after(kind, dtype)
    probs = reg.drop_probabilities(weight)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.double(), expected, atol=1e-5, rtol=0)
    kept = _keep_fraction(reg, weight)
    tol = _tolerance(expected, DRAWS * weight.numel())
    assert abs(kept - (1 - float(expected.mean()))) <= tol, (kept, 1 - float(expected.mean()))


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_dropconnect_keep_fraction_in_every_dtype(dtype: torch.dtype) -> None:
    torch.manual_seed(3)
    kept = _keep_fraction(ddc.DropConnect(0.3), torch.ones(SHAPE, dtype=dtype))
    assert abs(kept - 0.7) <= _tolerance(0.3, DRAWS * SHAPE[0] * SHAPE[1]), kept


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_standout_keep_fraction_in_every_dtype(dtype: torch.dtype) -> None:
    torch.manual_seed(4)
    preact = torch.randn(SHAPE).to(dtype)
    preact[preact == 0] = 1.0  # out != 0 is then the mask
    keep = torch.sigmoid(preact.double())
    module = ddc.Standout(alpha=1.0, beta=0.0, activation=None)
    kept = _keep_fraction(module, preact)
    assert abs(kept - float(keep.mean())) <= _tolerance(1 - keep, DRAWS * preact.numel()), kept
    module.eval()
    out = module(preact)
    assert out.dtype == dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_learned_is_finite_and_keeps_its_rate_in_every_dtype(dtype: torch.dtype) -> None:
    torch.manual_seed(5)
    reg = ddc.LearnedDropConnect(target=0.5)
    reg.prepare(torch.ones(SHAPE))
    reg.to(dtype)  # what model.half() does to it
    weight = torch.randn(SHAPE).to(dtype)
    for _ in range(5):  # the first forward (no gradient yet), then after Adam steps on theta
        leaf = weight.clone().requires_grad_()
        eff = reg(leaf)
        assert eff.dtype == dtype and torch.isfinite(eff).all()
        # The relaxed mask's mean is 1 - mean p within 0.01 (measured: 0.005 in float32).
        kept, drop = float(reg.last_kept_fraction), float(reg.last_mean_drop_prob)
        assert abs(kept - (1 - drop)) <= 0.01 and abs(drop - 0.5) < 0.05, (kept, drop)
        (eff.float() * torch.randn(SHAPE)).sum().backward()
        assert torch.isfinite(leaf.grad.float()).all()
    for key in reg._theta:
        theta = getattr(reg, key)
        assert torch.isfinite(theta).all() and theta.dtype == torch.float32 and theta.is_leaf
    assert torch.isfinite(reg.features(weight)).all()


def test_half_model_does_not_drop_the_whole_layer() -> None:
    # The report: in float16 every edge was dropped before the first gradient.
    torch.manual_seed(6)
    model = ddc.apply(nn.Sequential(nn.Linear(8, 8)), "ddc").half().train()
    x = torch.randn(4, 8).half()
    bias_only = model[0].bias.detach().expand(4, 8)
    assert not torch.equal(model(x).detach(), bias_only)
    assert float(model[0].regularizer.last_kept_fraction) > 0.3


@pytest.mark.parametrize("method", ["ddc", "ddc-learned"])
def test_half_model_trains_with_finite_outputs(method: str) -> None:
    torch.manual_seed(7)
    model = ddc.apply(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), method)
    model.half().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 16).half(), torch.randint(0, 4, (64,))
    for _ in range(4):
        opt.zero_grad()
        out = model(x)
        assert torch.isfinite(out).all()
        nn.functional.cross_entropy(out.float(), y).backward()
        opt.step()
    for reg in ddc.regularized_layers(model).values():
        assert 0.2 < float(reg.last_kept_fraction) < 0.8


def test_large_half_gradient_is_recorded() -> None:
    # The finite check summed |g| in float16: any layer whose |g| adds up past 65504
    # overflowed to Inf and its (finite) gradient was never recorded.
    reg = ddc.DynamicDropConnect()
    weight = torch.ones(512, 512, dtype=torch.float16, requires_grad=True)
    reg.prepare(weight)
    upstream = torch.ones(512, 512, dtype=torch.float16)
    upstream[0, 0] = 2.0
    (reg(weight) * upstream).sum().backward()
    assert reg.has_gradient
    assert torch.equal(reg.grad_magnitude, upstream)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_sample_mode_kept_fraction_in_every_dtype(dtype: torch.dtype) -> None:
    # The kept count was summed in the weight's dtype: Inf in float16 past 65504 entries.
    torch.manual_seed(8)
    layer = ddc.apply(nn.Linear(256, 256), "dropconnect", include=[""], p=0.3, mask_mode="example")
    layer.to(dtype).train()
    out = layer(torch.randn(64, 256).to(dtype))  # 64 x 65536 = 4.2M draws
    assert torch.isfinite(out).all()
    kept = float(layer.regularizer.last_kept_fraction)
    # 4.5 SE is 1e-3; the monitor buffer has the model's dtype (bf16 spacing at 0.7: 0.004).
    assert abs(kept - 0.7) <= _tolerance(0.3, 64 * 256 * 256) + 0.004, kept


@pytest.mark.parametrize("method", ["ddc", "ddc-learned", "dropconnect"])
def test_double_model_still_trains(method: str) -> None:
    # theta stays float32 under .double() as under .half(): its features follow it.
    torch.manual_seed(9)
    model = ddc.apply(nn.Sequential(nn.Linear(8, 8)), method).double().train()
    x = torch.randn(4, 8, dtype=torch.float64)
    for _ in range(3):
        out = model(x)
        assert out.dtype == torch.float64 and torch.isfinite(out).all()
        out.square().sum().backward()
