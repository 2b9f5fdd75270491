"""A small MLP with DDC really learns: scikit-learn digits to a stated accuracy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dynamic_dropconnect as ddc


def _digits() -> tuple[torch.Tensor, ...]:
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ddc", "dropconnect"])
def test_mlp_with_weight_regularizer_learns_digits(method: str) -> None:
    x_train, y_train, x_test, y_test = _digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    ddc.apply(model, method, include="0")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(25):
        model.train()
        for idx in torch.randperm(len(x_train)).split(64):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.94, accuracy
    stats = ddc.drop_stats(model)["0"]
    assert 0.4 < stats["drop_rate"] < 0.6  # about 0.5 for both at their defaults
