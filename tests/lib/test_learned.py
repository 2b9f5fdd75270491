"""LearnedDropConnect: features, gradient flow into θ, the rate held at its target, eval, resume."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import dynamic_dropconnect as ddc


def _model(hidden: int = 0, **options: object) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    return ddc.apply(model, "ddc-learned", include="0", hidden=hidden, **options)


def _data() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 10, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def test_features_are_what_the_docstring_says() -> None:
    model = _model()
    reg = ddc.regularized_layers(model)["0"]
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        _step(model, opt, x, y)
    feats = reg.features(model[0].weight)
    assert feats.shape == (320, 4)
    for column in (0, 1):  # z-scores
        assert float(feats[:, column].mean()) == pytest.approx(0.0, abs=1e-5)
        assert float(feats[:, column].std()) == pytest.approx(1.0, abs=1e-4)
    z_grad = (reg.grad_magnitude - reg.grad_magnitude.mean()) / reg.grad_magnitude.std()
    torch.testing.assert_close(feats[:, 0], z_grad.flatten(), atol=1e-5, rtol=0)
    assert set(feats[:, 2].unique().tolist()) <= {-1.0, 0.0, 1.0}
    torch.testing.assert_close(feats[:, 3], reg.previous_p.flatten())
    # Dense update: the statistic is |dL/dW_eff| = |W.grad|.
    torch.testing.assert_close(reg.grad_magnitude, model[0].weight.grad.abs(), rtol=0, atol=0)


@pytest.mark.parametrize("hidden", [0, 8])
def test_theta_learns_in_the_same_backward_and_stays_out_of_the_optimizer(hidden: int) -> None:
    model = _model(hidden)
    reg = ddc.regularized_layers(model)["0"]
    theta = [getattr(reg, k) for k in reg._theta]
    assert not any(t is p for t in theta for p in model.parameters())
    x, y = _data()
    before = [t.detach().clone() for t in theta]
    model(x)
    assert all(torch.equal(a, t) for a, t in zip(before, theta, strict=True))  # not yet
    F.cross_entropy(model(x), y).backward()
    assert any(not torch.equal(a, t) for a, t in zip(before, theta, strict=True))
    assert all(t.grad is None for t in theta)  # nothing pending: the Adam step is done
    assert float(reg.adam_step) == 1
    assert all(float(getattr(reg, f"adam_v_{k}").abs().sum()) > 0 for k in reg._theta)


def test_the_penalty_pushes_the_rate_towards_the_target() -> None:
    model = _model(target=0.5)
    reg = ddc.regularized_layers(model)["0"]
    with torch.no_grad():
        reg.b1.fill_(2.0)  # rate 0.95 * sigmoid(2) = 0.84, far above the target
    x, _ = _data()
    (0.0 * model(x).sum()).backward()  # a loss that does not care: only the penalty acts
    assert float(reg.b1.detach()) < 2.0
    with torch.no_grad():
        reg.b1.fill_(-2.0)  # 0.11, below the target
    (0.0 * model(x).sum()).backward()
    assert float(reg.b1.detach()) > -2.0


@pytest.mark.slow
@pytest.mark.parametrize("target", [0.3, 0.5])
def test_rate_is_held_at_the_target(target: float) -> None:
    # Tolerance stated in the README: |mean p - target| < 0.02 after training.
    model = _model(hidden=8, target=target)
    reg = ddc.regularized_layers(model)["0"]
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(200):
        _step(model, opt, x, y)
    assert abs(float(reg.last_mean_drop_prob) - target) < 0.02
    assert abs(float(reg.drop_probabilities(model[0].weight).mean()) - target) < 0.02
    assert float(reg.last_penalty) < reg.lam * 0.02**2


def test_eval_is_plain_and_state_dict_resumes_exactly() -> None:
    model = _model(hidden=4)
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        _step(model, opt, x, y)
    plain = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    plain.load_state_dict(ddc.plain_state_dict(model))
    model.eval()
    assert torch.equal(model(x), plain(x))
    model.train()
    saved = copy.deepcopy((model.state_dict(), opt.state_dict()))
    clone = _model(hidden=4)
    clone_opt = torch.optim.SGD(clone.parameters(), lr=0.1)
    clone.load_state_dict(saved[0])
    clone_opt.load_state_dict(saved[1])
    for net, optimizer in ((model, opt), (clone, clone_opt)):
        torch.manual_seed(5)
        for _ in range(2):
            _step(net, optimizer, x, y)
    for (key, a), b in zip(model.state_dict().items(), clone.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_learned_curves_and_validation() -> None:
    model = _model()
    curves = ddc.learned_curves(model)["0"]
    assert len(curves["z"]) == len(curves["p"]) == 25
    assert all(0.0 <= p <= 0.95 for p in curves["p"])
    assert ddc.drop_stats(model)["0"]["method"] == "ddc-learned"
    with pytest.raises(ValueError, match=r"target must be a number in \[0, 0.95\), got 0.97"):
        ddc.LearnedDropConnect(target=0.97)
    with pytest.raises(ValueError, match="rescale must be one of 'expected', 'per_edge'"):
        ddc.LearnedDropConnect(rescale="empirical")
    with pytest.raises(ValueError, match="mask_mode is fixed to 'batch'"):
        ddc.LearnedDropConnect(mask_mode="example")
    with pytest.raises(TypeError, match="shuffle must be True or False, got 'no'"):
        ddc.LearnedDropConnect(shuffle="no")
    with pytest.raises(ValueError, match="hidden must be a whole number >= 0"):
        ddc.LearnedDropConnect(hidden=-1)
    with pytest.raises(TypeError, match=r"method 'ddc-learned' \(LearnedDropConnect\) has no "):
        ddc.apply(nn.Linear(2, 2), "ddc-learned", pg=0.5)


def test_weight_used_twice_records_the_summed_gradient_and_steps_theta_once() -> None:
    torch.manual_seed(0)
    layer = ddc.apply(nn.Linear(8, 8), "ddc-learned", include=[""])
    reg = layer.regularizer
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(16, 8)
    for step in range(1, 4):  # exact from the first step on
        opt.zero_grad(set_to_none=True)
        layer(torch.tanh(layer(x))).square().mean().backward()
        # Dense update: dL/dW = sum over the uses of dL/dW_eff, so the statistic is |W.grad|.
        assert torch.equal(reg.grad_magnitude, layer.weight.grad.abs())
        assert float(reg.adam_step) == step  # one Adam step on θ per backward, not per use
        opt.step()
