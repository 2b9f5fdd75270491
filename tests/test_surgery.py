"""apply / remove on whole models: selection, geometry, weights, optimizers, state dicts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dynamic_dropconnect as ddc


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.linear1 = nn.Linear(4 * 8 * 8, 16)
        self.attn = nn.MultiheadAttention(16, 2)  # its out_proj is a Linear *subclass*
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.linear1(self.features(x).flatten(1)))
        return self.head(h)


def test_default_targets_every_linear_like_weight() -> None:
    model = ddc.apply(Net(), "ddc")
    assert sorted(ddc.regularized_layers(model)) == [
        "attn.in_proj_weight",
        "attn.out_proj.weight",  # a Linear subclass the attention reads itself
        "head",
        "linear1",
    ]
    assert isinstance(model.linear1, ddc.RegularizedLinear)
    assert isinstance(model.linear1, nn.Linear)  # still a Linear for isinstance checks
    assert type(model.features[0]) is nn.Conv2d


def test_include_globs_and_exclude() -> None:
    model = ddc.apply(Net(), "dropconnect", include=["features.*", "linear*"], exclude="linear1")
    assert sorted(ddc.regularized_layers(model)) == ["features.0"]
    assert isinstance(model.features[0], ddc.RegularizedConv2d)


def test_geometry_weights_and_optimizer_identity_kept() -> None:
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    weight = model.linear1.weight
    before = weight.detach().clone()
    ddc.apply(model, "ddc", include=["linear1", "features.0"])
    assert model.linear1.weight is weight and torch.equal(weight, before)
    assert (model.linear1.in_features, model.linear1.out_features) == (256, 16)
    assert model.features[0].padding == (1, 1)
    loss = model(torch.randn(2, 3, 8, 8)).sum()
    loss.backward()
    opt.step()  # the optimizer built before apply updates the very same parameters
    assert not torch.equal(model.linear1.weight, before)


def test_remove_gives_plain_modules_with_trained_weights() -> None:
    model = ddc.apply(Net(), "ddc", include=["linear1", "features.0"])
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    weights = {k: v.clone() for k, v in ddc.plain_state_dict(model).items()}
    ddc.remove(model)
    assert type(model.linear1) is nn.Linear and type(model.features[0]) is nn.Conv2d
    assert not ddc.regularized_layers(model)
    assert set(model.state_dict()) == set(weights)
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key])
    ddc.apply(model, "ddc")  # and it can be applied again


def test_state_dicts_load_across_plain_and_regularized() -> None:
    torch.manual_seed(0)
    plain, regularized = Net(), ddc.apply(Net(), "ddc", include="linear1")
    regularized.load_state_dict(plain.state_dict())  # plain -> DDC, strict
    plain2 = Net()
    plain2.load_state_dict(ddc.plain_state_dict(regularized))  # DDC -> plain, strict
    result = plain2.load_state_dict(regularized.state_dict(), strict=False)
    assert result.unexpected_keys == [
        "linear1.regularizer.grad_magnitude",
        "linear1.regularizer.has_gradient",
    ]
    assert not result.missing_keys
    regularized.eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(regularized(x), plain(x)) and torch.equal(plain2(x), plain(x))


def test_conv1d_and_conv3d_supported() -> None:
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Conv3d(1, 1, 1))
    ddc.apply(model, "ddc", include=["0", "1"])
    assert isinstance(model[0], ddc.RegularizedConv1d)
    assert isinstance(model[1], ddc.RegularizedConv3d)
    y = model[0](torch.randn(4, 2, 10))
    assert y.shape == (4, 3, 8)


def test_single_layer_model_can_be_regularized_itself() -> None:
    layer = ddc.apply(nn.Linear(3, 2), "dropconnect", p=0.5)
    assert isinstance(layer, ddc.RegularizedLinear)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"include": "lineer1"},
            r"'lineer1' matches no module or parameter; regularizable weights: .*'linear1.weight'",
        ),
        ({"include": "features.1"}, r"names only ReLU modules \('features.1'\)"),
        ({"exclude": "nothing*"}, "exclude pattern 'nothing\\*' matches no module"),
        ({"include": "linear1", "exclude": "linear1"}, "removed every selected weight"),
        ({"method": "dropout"}, "method must be one of 'ddc', 'dropconnect'"),
        ({"p": 2.0}, r"p must be a number in \[0, 1\), got 2.0"),
        ({"include": 3}, "glob pattern"),
    ],
)
def test_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        ddc.apply(Net(), **kwargs)


def test_model_without_linear_gets_error_and_is_untouched() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="no Linear-like weight"):
        ddc.apply(conv)
    assert not ddc.regularized_layers(conv)


def test_double_apply_is_refused() -> None:
    model = ddc.apply(Net(), "ddc", include="head")
    with pytest.raises(ValueError, match="already regularized"):
        ddc.apply(model, "dropconnect", include="head")


def test_deepcopy_and_pickle_of_regularized_model() -> None:
    import copy
    import io

    model = ddc.apply(Net(), "ddc")
    clone = copy.deepcopy(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for other in (clone, loaded):
        assert isinstance(other.linear1, ddc.RegularizedLinear)
        assert torch.equal(other.linear1.weight, model.linear1.weight)
