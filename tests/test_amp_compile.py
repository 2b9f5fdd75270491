"""AMP (loss scaling, autocast) and torch.compile with DDC layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dynamic_dropconnect as ddc


def _model() -> nn.Module:
    torch.manual_seed(0)
    return ddc.apply(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), "ddc")


def test_zscore_statistic_is_invariant_to_the_loss_scale() -> None:
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    probs = []
    for scale in (1.0, 65536.0):
        model = _model()
        torch.manual_seed(1)
        (nn.functional.cross_entropy(model(x), y) * scale).backward()
        probs.append(ddc.drop_probabilities(model)["0"])
    torch.testing.assert_close(probs[0], probs[1], rtol=1e-4, atol=1e-5)


def test_cpu_autocast_bfloat16_training_step() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    for _ in range(2):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    reg = ddc.regularized_layers(model)["0"]
    assert reg.has_gradient and reg.grad_magnitude.dtype == torch.float32
    assert torch.isfinite(reg.grad_magnitude).all()


def test_torch_compile_is_not_broken() -> None:
    model = _model()
    try:
        compiled = torch.compile(model, backend="eager")
    except RuntimeError as err:  # pragma: no cover - platform without dynamo
        pytest.skip(f"torch.compile unavailable: {err}")
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
    for _ in range(2):
        loss = nn.functional.cross_entropy(compiled(x), y)
        loss.backward()
    reg = ddc.regularized_layers(model)["0"]
    assert reg.has_gradient
    torch.testing.assert_close(reg.grad_magnitude.sum() > 0, torch.tensor(True))
    model.eval()
    torch.testing.assert_close(compiled(x), model(x))
