"""Wrappers that change a layer's class or weight (parametrizations, the old weight_norm and
spectral_norm hooks) before or after ``ddc.apply``; scripting a regularized model."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations, parametrize

import dynamic_dropconnect as ddc
from helpers import classification_step

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated"),
]


class Scale(nn.Module):
    """A custom parametrization: the weight times a constant."""

    def forward(self, weight: Tensor) -> Tensor:
        return 2.0 * weight


def _new_weight_norm(m: nn.Module) -> None:
    parametrizations.weight_norm(m)


def _new_spectral_norm(m: nn.Module) -> None:
    parametrizations.spectral_norm(m)


def _register(m: nn.Module) -> None:
    parametrize.register_parametrization(m, "weight", Scale())


def _old_weight_norm(m: nn.Module) -> None:
    torch.nn.utils.weight_norm(m)


def _old_spectral_norm(m: nn.Module) -> None:
    torch.nn.utils.spectral_norm(m)


WRAPPERS: dict[str, Callable[[nn.Module], None]] = {
    "parametrizations.weight_norm": _new_weight_norm,
    "parametrizations.spectral_norm": _new_spectral_norm,
    "register_parametrization": _register,
    "nn.utils.weight_norm": _old_weight_norm,
    "nn.utils.spectral_norm": _old_spectral_norm,
}
PARAMETRIZE = ["parametrizations.weight_norm", "parametrizations.spectral_norm",
               "register_parametrization"]  # fmt: skip


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_wrapper_after_apply_keeps_the_layer_regularized_and_removable(wrapper: str) -> None:
    model = ddc.apply(_mlp(), "ddc")
    WRAPPERS[wrapper](model[0])
    x = torch.randn(5, 6)
    classification_step(model, x)
    assert sorted(ddc.regularized_layers(model)) == ["0", "2"]
    assert sorted(ddc.drop_stats(model)) == ["0", "2"]
    table = ddc.summary(model)
    assert [e.name for e in table.regularized] == ["0.weight", "2.weight"], str(table)
    assert not any(".regularizer." in k for k in ddc.plain_state_dict(model))
    with pytest.raises(ValueError, match="already regularized"):
        ddc.apply(model, "ddc", include="0")
    assert isinstance(ddc.regularized_layers(model)["0"], ddc.DynamicDropConnect)
    assert float(model[0].regularizer.last_kept_fraction) < 1.0  # it did drop

    model.eval()
    before = model(x)
    ddc.remove(model)
    assert not ddc.regularized_layers(model) and not ddc.is_regularized(model[0])
    assert not isinstance(model[0], ddc.RegularizedLinear) and isinstance(model[0], nn.Linear)
    assert "regularizer" not in model[0]._modules
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    assert not any(isinstance(m, ddc.WeightRegularizer) for m in model.modules())
    if "spectral" not in wrapper:  # spectral_norm itself changes u, v in each training forward
        model.train()
        torch.manual_seed(3)
        a = model(x)
        torch.manual_seed(3)
        torch.testing.assert_close(model(x), a, rtol=0, atol=0)  # nothing drops any more
    if wrapper in PARAMETRIZE:
        assert parametrize.is_parametrized(model[0], "weight")
        parametrize.remove_parametrizations(model[0], "weight")
        assert type(model[0]) is nn.Linear  # torch's own undo still finds the plain class
    ddc.apply(model, "ddc")  # and it can be applied again
    assert sorted(ddc.regularized_layers(model)) == ["0", "2"]


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_wrapped_linear_is_regularized_by_default_on_its_effective_weight(wrapper: str) -> None:
    model = _mlp()
    WRAPPERS[wrapper](model[0])
    original_class = type(model[0])
    # p = pg = 0: no edge is dropped, so W_eff is the wrapped weight and the statistic can be
    # checked against plain autograd.
    ddc.apply(model, "ddc", p=0.0, pg=0.0)
    assert sorted(ddc.regularized_layers(model)) == ["0", "2"]
    assert ddc.is_regularized(model[0]) and isinstance(model[0], ddc.RegularizedLinear)
    x = torch.randn(5, 6)
    classification_step(model, x)
    effective = model[0].weight.detach().requires_grad_()
    h = torch.tanh(F.linear(x, effective, model[0].bias))
    F.cross_entropy(model[2](h), torch.arange(5) % 3).backward()
    reg = model[0].regularizer
    torch.testing.assert_close(reg.grad_magnitude, effective.grad.abs())
    raw = [p for n, p in model[0].named_parameters() if n != "bias"]
    assert raw and all(p.grad is not None and p.grad.abs().sum() > 0 for p in raw)
    ddc.remove(model)
    assert type(model[0]) is original_class  # the very class it had


def test_parametrized_linear_is_listed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    model = _mlp()
    parametrizations.weight_norm(model[0])
    with caplog.at_level(logging.INFO, logger="dynamic_dropconnect"):
        ddc.apply(model, "dropconnect", p=0.5)
    assert "regularized 2 weight(s): 0.weight, 2.weight" in caplog.text
    model.train()
    classification_step(model, torch.randn(4, 6))
    assert float(model[0].regularizer.last_kept_fraction) < 1.0


def test_parametrized_weight_of_a_hooked_layer_is_listed_with_its_reason() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)
            self.head = nn.Linear(8, 3)

    model = Net()
    parametrizations.weight_norm(model.attn.out_proj)  # MHA reads out_proj.weight itself
    ddc.apply(model, "ddc")
    reasons = {e.name: e.reason for e in ddc.summary(model).skipped}
    assert "parametrized" in reasons["attn.out_proj.weight"], reasons
    with pytest.raises(ValueError, match="parametrized"):
        ddc.apply(model, "ddc", include="attn.out_proj")


def test_parametrization_after_apply_on_a_hooked_weight_fails_clearly() -> None:
    model = ddc.apply(nn.MultiheadAttention(8, 2), "ddc", include="")
    parametrizations.weight_norm(model.out_proj)
    x = torch.randn(3, 2, 8)
    with pytest.raises(
        RuntimeError, match=r"Linear.weight is regularized.*no longer a registered parameter"
    ):
        model(x, x, x)
    ddc.remove(model)
    model(x, x, x)


def test_deepcopy_of_a_parametrized_regularized_model() -> None:
    model = ddc.apply(_mlp(), "ddc")
    parametrizations.weight_norm(model[0])
    clone = copy.deepcopy(model)
    assert ddc.is_regularized(clone[0]) and sorted(ddc.regularized_layers(clone)) == ["0", "2"]
    ddc.remove(clone)
    assert ddc.is_regularized(model[0])  # the original keeps its regularizer


@pytest.mark.parametrize("include", [None, "attn"])
def test_scripting_a_regularized_model_says_to_remove_first(include: str | None) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(4, 1)
            self.head = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.head(self.attn(x, x, x)[0])

    model = ddc.apply(Net(), "ddc", include=include)
    with pytest.raises(RuntimeError, match=r"script.*dynamic_dropconnect.remove\(model\)"):
        torch.jit.script(model)
    ddc.remove(model)
    model.eval()
    x = torch.randn(3, 2, 4)
    torch.testing.assert_close(torch.jit.script(model)(x), model(x))


def test_an_unknown_class_wrapper_after_apply_is_still_seen_and_removed() -> None:
    model = ddc.apply(_mlp(), "ddc")
    model[0].__class__ = type("Traced" + type(model[0]).__name__, (type(model[0]),), {})
    assert sorted(ddc.regularized_layers(model)) == ["0", "2"]
    with pytest.raises(ValueError, match="already regularized"):
        ddc.apply(model, "ddc", include="0")
    ddc.remove(model)
    assert type(model[0]).__name__ == "TracedLinear" and isinstance(model[0], nn.Linear)
    assert not ddc.is_regularized(model[0]) and not ddc.regularized_layers(model)


def test_drop_stats_does_not_step_a_spectral_norm() -> None:
    model = ddc.apply(_mlp(), "ddc")
    parametrizations.spectral_norm(model[0])
    classification_step(model, torch.randn(4, 6))
    before = copy.deepcopy(model.state_dict())
    ddc.drop_stats(model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model[0].parametrizations.weight[0].training  # modes restored
