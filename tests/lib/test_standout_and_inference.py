"""Standout, drop_stats and mc_predict."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import dynamic_dropconnect as ddc


def test_standout_with_constant_keep_is_dropout() -> None:
    keep = 0.7
    standout = ddc.Standout(
        alpha=0.0, beta=math.log(keep / (1 - keep)), generator=torch.Generator().manual_seed(0)
    )
    x = torch.randn(200, 300)
    relu = torch.relu(x)
    out = standout(x)
    nonzero = relu != 0
    kept = (out != 0)[nonzero]
    # kept units pass unchanged (no train-time scaling), the rest are zero
    assert torch.equal(out[out != 0], relu[out != 0])
    n = kept.numel()
    assert kept.float().mean().item() == pytest.approx(
        keep, abs=4 * math.sqrt(keep * (1 - keep) / n)
    )
    # eval: the expectation k * f(a), i.e. k times what nn.Dropout(1 - k) gives in eval
    standout.eval()
    dropout = nn.Dropout(1 - keep).eval()
    torch.testing.assert_close(standout(x), keep * dropout(relu))


def test_standout_keep_probability_follows_preactivation() -> None:
    standout = ddc.Standout(
        alpha=2.0, beta=-1.0, activation=None, generator=torch.Generator().manual_seed(1)
    )
    x = torch.cat([torch.full((20000,), -1.0), torch.full((20000,), 2.0)])
    out = standout(x)
    keep_low = (out[:20000] != 0).float().mean().item()
    keep_high = (out[20000:] != 0).float().mean().item()
    assert keep_low == pytest.approx(1 / (1 + math.exp(3.0)), abs=0.01)  # sigmoid(-3)
    assert keep_high == pytest.approx(1 / (1 + math.exp(-3.0)), abs=0.01)  # sigmoid(3)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        ddc.Standout(alpha=float("nan"))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4)
    )


def test_drop_stats_reports_last_and_next_rates() -> None:
    model = ddc.apply(_model(), "ddc", include="0")
    ddc.apply(model, "dropconnect", include="4", p=0.5)
    stats = ddc.drop_stats(model)
    assert set(stats) == {"0", "4"}
    assert math.isnan(stats["0"]["mean_drop_prob"])  # nothing sampled yet
    model(torch.randn(64, 10)).square().mean().backward()
    stats = ddc.drop_stats(model)
    assert stats["0"]["mean_drop_prob"] == pytest.approx(0.3)  # first step: base rate
    assert stats["0"]["drop_rate"] == pytest.approx(0.3, abs=0.06)
    assert stats["0"]["has_gradient"] and 0.35 < stats["0"]["next_mean_drop_prob"] < 0.65
    assert 0.0 < stats["0"]["extra_drop_fraction"] < 1.0
    assert stats["4"]["method"] == "dropconnect" and stats["4"]["next_mean_drop_prob"] == 0.5
    probs = ddc.drop_probabilities(model)["0"]
    assert probs.shape == (32, 10)


def test_mc_predict_samples_masks_keeps_batchnorm_in_eval_and_restores_modes() -> None:
    model = ddc.apply(_model(), "ddc")
    model.train()
    model(torch.randn(64, 10)).sum().backward()
    running = model[1].running_mean.clone()
    model[1].eval()  # a mixed state that must come back as it was
    x = torch.randn(16, 10)
    samples = ddc.mc_predict(model, x, n_samples=8, return_samples=True)
    assert samples.shape == (8, 16, 4)
    torch.testing.assert_close(samples.sum(-1), torch.ones(8, 16))
    assert not torch.allclose(samples[0], samples[1])  # masks were on
    assert torch.equal(model[1].running_mean, running)  # BatchNorm ran in eval
    assert model.training and not model[1].training and model[3].training
    mean = ddc.mc_predict(model, x, n_samples=4)
    assert mean.shape == (16, 4)
    with pytest.raises(ValueError, match="n_samples"):
        ddc.mc_predict(model, x, n_samples=0)
