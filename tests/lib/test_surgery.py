"""apply / remove on whole models: selection, geometry, weights, optimizers, state dicts."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

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


def test_summary_and_log_report_what_was_left_out(caplog: pytest.LogCaptureFixture) -> None:
    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.rnn = nn.LSTM(8, 8, batch_first=True)
            self.conv = nn.Conv1d(8, 8, 3)
            self.lm_head = nn.Linear(8, 20, bias=False)
            self.lm_head.weight = self.embed.weight  # tied

        def forward(self, ids: Tensor) -> Tensor:
            h = self.embed(ids)
            h = self.attn(h, h, h, need_weights=False)[0]
            return self.lm_head(self.rnn(h)[0])

    with caplog.at_level(logging.INFO, logger="dynamic_dropconnect"):
        model = ddc.apply(LM(), "ddc")
    assert sorted(ddc.regularized_layers(model)) == ["attn.in_proj_weight", "attn.out_proj.weight"]
    log = caplog.text
    assert (
        "regularized 2 weight(s)" in log and "lm_head.weight (Linear: tied to the embedding" in log
    )
    table = ddc.summary(model)
    reasons = {e.name: e.reason for e in table.skipped}
    assert reasons["lm_head.weight"].startswith("tied to the embedding embed (Embedding)")
    assert reasons["rnn.weight_hh_l0"].startswith("recurrent weight: name it")
    assert reasons["rnn.weight_ih_l0"].startswith("input weight of a recurrent layer")
    assert reasons["conv.weight"].startswith("convolution")
    assert reasons["embed.weight"].startswith("not supported: embedding table")
    assert [e.name for e in table.regularized] == ["attn.in_proj_weight", "attn.out_proj.weight"]
    text = str(table)
    assert "DynamicDropConnect(p=0.3" in text and "2 regularized, 5 left out" in text
    model(torch.randint(0, 20, (2, 5))).sum().backward()  # trains with the tied head
    ddc.apply(model, "dropconnect", include="lm_head")  # explicitly: allowed
    assert "lm_head" in ddc.regularized_layers(model)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: ddc.apply(m, "ddc", p="0.3"), TypeError,
         r"DynamicDropConnect: p must be a number in \[0, 1\), got '0.3' \(str\)"),
        (lambda m: ddc.apply(m, "dropconnect", pg=0.5), TypeError,
         r"method 'dropconnect' \(DropConnect\) has no option 'pg'.*its options: p, "),
        (lambda m: ddc.apply(m, "ddc", include=""), ValueError,
         r"include pattern '' names the model itself \(Net\).*Regularizable weights: "
         r"'attn.in_proj_weight'"),
        (lambda m: ddc.apply(m, "ddc", include="norm"), ValueError,
         r"include pattern 'norm' names only LayerNorm modules \('norm'\)"),
        (lambda m: ddc.apply(m, "ddc", include="head.bias"), ValueError,
         r"names only parameters DDC does not regularize \('head.bias'\)"),
        (lambda m: ddc.apply(m, "ddc", include="rnn", mask_mode="example"), TypeError,
         r"mask_mode='example' needs a plain nn.Linear/nn.ConvNd.*'rnn.weight_hh_l0'"),
        (lambda m: ddc.apply(m, "ddc", include="nothing*"), ValueError,
         "matches no module or parameter"),
    ],
)  # fmt: skip
def test_errors_name_the_method_parameter_value_and_what_is_valid(
    call: Callable[[nn.Module], object], error: type[Exception], message: str
) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)
            self.rnn = nn.GRU(8, 8)
            self.norm = nn.LayerNorm(8)
            self.head = nn.Linear(8, 2)

    model = Net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=message):
        call(model)
    assert not ddc.regularized_layers(model)  # untouched
    assert set(model.state_dict()) == set(before)


def test_awd_lstm_weight_drop_call() -> None:
    torch.manual_seed(0)
    lstm = ddc.AWDWeightDrop(nn.LSTM(6, 8), ["weight_hh_l0"], dropout=0.5)
    assert "weights=['weight_hh_l0'], dropout=0.5" in repr(lstm)
    reg = ddc.regularized_layers(lstm)["module.weight_hh_l0"]
    assert isinstance(reg, ddc.DropConnect) and reg.p == 0.5
    out, _ = lstm(torch.randn(7, 3, 6))
    out.sum().backward()
    assert lstm.module.weight_hh_l0.grad is not None
    assert float(reg.last_kept_fraction) < 1.0
    with pytest.raises(ValueError, match="weights must be a non-empty list"):
        ddc.AWDWeightDrop(nn.LSTM(6, 8), "weight_hh_l0")
    ddc_lstm = ddc.AWDWeightDrop(nn.GRU(6, 8), ["weight_hh_l0"], 0.2, method="ddc", pg=0.4)
    reg = ddc.regularized_layers(ddc_lstm)["module.weight_hh_l0"]
    assert isinstance(reg, ddc.DynamicDropConnect) and (reg.p, reg.pg) == (0.2, 0.4)


def test_a_lazy_layer_before_its_first_call_is_listed_with_what_to_do() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(8), nn.ReLU(),
                          nn.Linear(8, 3))  # fmt: skip
    ddc.apply(model, "ddc")  # the default selection leaves the lazy layer out, and says why
    assert list(ddc.regularized_layers(model)) == ["4"]
    reasons = {entry.name: entry.reason for entry in ddc.summary(model).skipped}
    assert "LazyLinear (a lazy module): run one forward pass" in reasons["2.weight"]
    with pytest.raises(ValueError, match=r"2\.weight: uninitialized parameter of LazyLinear"):
        ddc.apply(model, "ddc", include="2")
    model(torch.randn(2, 1, 6, 6))  # initialises the lazy layer
    ddc.apply(model, "ddc", include="2")
    assert sorted(ddc.regularized_layers(model)) == ["2", "4"]
