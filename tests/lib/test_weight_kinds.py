"""DDC on any weight: attention, recurrent, Conv1D, ConvTranspose, Linear subclasses; the
mc_predict and checkpoint bugs; the summary; clear errors; gradient accumulation."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

import dynamic_dropconnect as ddc
from helpers import classification_step


class Conv1D(nn.Module):
    """A replica of Hugging Face's GPT-2 ``Conv1D`` (``y = x @ W + b``, W of shape (in, out))."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(
            *x.shape[:-1], self.nf
        )


class MyLinear(nn.Linear):
    """A Linear subclass whose forward is its own."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias) * 1.0


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))


class Recurrent(nn.Module):
    def __init__(self, cell: type[nn.RNNBase] = nn.LSTM) -> None:
        super().__init__()
        self.rnn = cell(6, 8, num_layers=2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class Deconv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(2, 3, 3, stride=2)
        self.head = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.deconv(x).mean((2, 3)))


class GPTBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c_attn = Conv1D(24, 8)
        self.c_proj = MyLinear(24, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(torch.tanh(self.c_attn(x))).mean(1)


# (factory, include, parameter names, input)
class MLP(nn.Module):
    """A plain nn.Linear, the layer the paper regularizes (swapped for RegularizedLinear)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 12)
        self.head = nn.Linear(12, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.tanh(self.fc(x)))


class ConvNet(nn.Module):
    """A plain nn.Conv2d (swapped, like nn.Linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.tanh(self.conv(x)).mean((2, 3)))


# Every kind of weight DDC regularizes: (factory, include, regularized names, input). Each
# guarantee below is tested once, over all of them.
Case = tuple[Callable[[], nn.Module], str | list[str], list[str], Callable[[], Tensor]]
CASES: dict[str, Case] = {
    "linear": (MLP, "fc", ["fc"], lambda: torch.randn(4, 8)),
    "conv2d": (ConvNet, "conv", ["conv"], lambda: torch.randn(4, 2, 5, 5)),
    "mha": (Attention, "attn", ["attn.in_proj_weight", "attn.out_proj.weight"],
            lambda: torch.randn(4, 5, 8)),
    "lstm": (Recurrent, "rnn", ["rnn.weight_hh_l0", "rnn.weight_hh_l1"],
             lambda: torch.randn(4, 7, 6)),
    "gru-ih": (lambda: Recurrent(nn.GRU), "rnn.weight_ih_l0", ["rnn.weight_ih_l0"],
               lambda: torch.randn(4, 7, 6)),
    "convtranspose": (Deconv, "deconv", ["deconv.weight"], lambda: torch.randn(4, 2, 5, 5)),
    "conv1d-and-subclass": (GPTBlock, ["*.weight"], ["c_attn.weight", "c_proj.weight"],
                            lambda: torch.randn(4, 5, 8)),
}  # fmt: skip


def _build(case: str, method: str = "ddc", **hp: object) -> tuple[nn.Module, Tensor, list[str]]:
    factory, include, names, data = CASES[case]
    torch.manual_seed(0)
    model = factory()
    ddc.apply(model, method, include=include, **hp)
    torch.manual_seed(1)
    return model, data(), names


def _weight(model: nn.Module, name: str) -> Tensor:
    """The parameter behind a name of ``regularized_layers`` (a swapped layer is named bare)."""
    params = dict(model.named_parameters())
    return params[name] if name in params else params[f"{name}.weight"]


def _capture_effective_weights(model: nn.Module) -> dict[str, Tensor]:
    """Records, per regularized weight, the effective weight W_eff of the last forward."""
    seen: dict[str, Tensor] = {}
    for name, reg in ddc.regularized_layers(model).items():
        original = reg.forward

        def recording(weight: Tensor, original: Callable = original, name: str = name) -> Tensor:
            seen[name] = original(weight)
            return seen[name]

        reg.forward = recording  # type: ignore[method-assign]
    return seen


def _loss(output: Tensor) -> Tensor:
    return F.cross_entropy(output, torch.arange(len(output)) % 3)


@pytest.mark.parametrize("update", ["dense", "masked"])
@pytest.mark.parametrize("method", ["ddc", "dropconnect"])
@pytest.mark.parametrize("case", list(CASES))
def test_statistic_and_update_are_the_gradient_of_the_effective_weight(
    case: str, method: str, update: str
) -> None:
    """The definition, against autograd run independently on a plain copy of the model with
    W_eff as a leaf: the statistic is |dL/dW_eff| on every edge (dropped ones too), captured in
    backward; the dense update passes dL/dW_eff, the masked one dL/dW_eff * M / k."""
    model, x, names = _build(case, method, update=update)
    assert sorted(ddc.regularized_layers(model)) == sorted(names)
    plain = CASES[case][0]()
    plain.load_state_dict(ddc.plain_state_dict(model))
    effective = _capture_effective_weights(model)
    classification_step(model, x)  # first step: rate p everywhere
    classification_step(
        model, x
    )  # zero_grad(set_to_none=True) before: the statistic comes from backward
    leaves = {n: w.detach().requires_grad_() for n, w in effective.items()}
    targets = {n if n in dict(plain.named_parameters()) else f"{n}.weight": w
               for n, w in leaves.items()}  # fmt: skip
    _loss(functional_call(plain, targets, (x,))).backward()
    for name, reg in ddc.regularized_layers(model).items():
        expected = leaves[name].grad
        kept = effective[name] != 0
        assert 0 < float(kept.float().mean()) < 1  # a mask was really applied
        if method == "ddc":
            assert bool(reg.has_gradient), name
            torch.testing.assert_close(reg.grad_magnitude, expected.abs())
            assert (reg.grad_magnitude[~kept] > 0).float().mean() > 0.9  # dropped edges too
        update_grad = expected if update == "dense" else expected * kept / kept.float().mean()
        torch.testing.assert_close(_weight(model, name).grad, update_grad)


@pytest.mark.parametrize("case", list(CASES))
def test_eval_is_plain_and_keys_stay_and_remove_restores(case: str) -> None:
    model, x, names = _build(case)
    factory = CASES[case][0]
    plain_keys = set(factory().state_dict())
    classification_step(model, x)
    keys = set(model.state_dict())
    assert plain_keys <= keys and all("regularizer." in k for k in keys - plain_keys)
    plain = factory()
    plain.load_state_dict(ddc.plain_state_dict(model))  # strict
    model.eval(), plain.eval()
    assert torch.equal(model(x), plain(x))  # eval uses the plain weights
    model.train()
    assert not torch.equal(model(x), plain.train()(x))  # training masks them
    stats = ddc.drop_stats(model)
    assert sorted(stats) == sorted(names)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    ddc.remove(model)
    assert not ddc.regularized_layers(model) and set(model.state_dict()) == plain_keys
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())
    assert not model._forward_pre_hooks and not any(m._forward_hooks for m in model.modules())
    model.train()
    torch.manual_seed(3)
    a = model(x)
    torch.manual_seed(3)
    assert torch.equal(a, model(x))  # nothing stochastic is left
    ddc.apply(model, "ddc", include=CASES[case][1])  # and it can be applied again


@pytest.mark.parametrize("case", list(CASES))
def test_state_dict_round_trip_resumes_exactly(case: str) -> None:
    model, x, _ = _build(case)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        classification_step(model, x)
        opt.step()
    saved = copy.deepcopy((model.state_dict(), opt.state_dict()))
    clone, _, _ = _build(case)
    clone_opt = torch.optim.SGD(clone.parameters(), lr=0.1, momentum=0.9)
    clone.load_state_dict(saved[0])
    clone_opt.load_state_dict(saved[1])
    for net, optimizer in ((model, opt), (clone, clone_opt)):
        torch.manual_seed(11)
        classification_step(net, x)
        optimizer.step()
    for (name, a), b in zip(model.state_dict().items(), clone.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_optimizer_built_before_apply_keeps_working_and_weights_train() -> None:
    torch.manual_seed(0)
    model = Recurrent()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    weight = model.rnn.weight_hh_l0
    before = weight.detach().clone()
    ddc.apply(model, "ddc", include="rnn.weight_hh_l0")
    assert model.rnn.weight_hh_l0 is weight and isinstance(weight, nn.Parameter)
    x = torch.randn(4, 7, 6)
    classification_step(model, x)
    opt.step()
    assert not torch.equal(weight, before)
    assert model.rnn.weight_hh_l0 is weight  # back in place after forward
    assert model.rnn._flat_weights[model.rnn._flat_weights_names.index("weight_hh_l0")] is weight
    model.rnn.flatten_parameters()  # still works


@pytest.mark.slow
def test_learning_on_lstm_weight_hh() -> None:
    # A sequence task an LSTM learns in a few dozen steps: sign of a sum over the last tokens.
    torch.manual_seed(0)
    x = torch.randn(256, 6, 6)
    y = (x[:, -2:, 0].sum(1) > 0).long()
    model = ddc.apply(Recurrent(), "ddc", include="rnn")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):  # 0.996 here (plain LSTM: 1.0)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.9


@pytest.mark.parametrize("method", ["dropconnect", "ddc"])
@pytest.mark.parametrize("mask_mode", ["batch", "example"])
def test_checkpoint_with_a_custom_generator_replays_the_mask(method: str, mask_mode: str) -> None:
    def grads(use_checkpoint: bool) -> list[Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh())
        generator = torch.Generator().manual_seed(3)
        ddc.apply(model, method, mask_mode=mask_mode, generator=generator)
        x = torch.randn(4, 8, requires_grad=True)
        for _ in range(2):  # the second step uses DDC's statistic from the first
            model.zero_grad(set_to_none=True)
            x.grad = None
            y = checkpoint(model, x, use_reentrant=False) if use_checkpoint else model(x)
            y.pow(2).sum().backward()
        return [x.grad.clone()] + [p.grad.clone() for p in model.parameters()]

    for plain, checkpointed in zip(grads(False), grads(True), strict=True):
        torch.testing.assert_close(checkpointed, plain, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_step_equals_the_eager_step(case: str) -> None:
    """torch.compile (dynamo, eager backend: the same kernels and RNG draws) leaves masks,
    statistic and update as in eager mode; eval through the compiled model is the plain one."""
    models = []
    for compiled in (False, True):
        model, x, _ = _build(case)
        run = torch.compile(model, backend="eager") if compiled else model
        for _ in range(2):
            torch.manual_seed(5)
            classification_step(run, x)
        models.append((model, run))
    (eager, _), (model, compiled) = models
    for (name, reg), ref in zip(
        ddc.regularized_layers(model).items(), ddc.regularized_layers(eager).values(), strict=True
    ):
        assert bool(reg.has_gradient), name
        torch.testing.assert_close(reg.grad_magnitude, ref.grad_magnitude, rtol=0, atol=0)
        torch.testing.assert_close(_weight(model, name).grad, _weight(eager, name).grad)
    model.eval(), eager.eval()
    torch.testing.assert_close(compiled(x), eager(x))


@pytest.mark.parametrize("case", list(CASES))
def test_bfloat16_autocast_step_keeps_a_float32_statistic(case: str) -> None:
    model, x, _ = _build(case)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            CASES[case][0]()(x)
    except RuntimeError as error:  # e.g. oneDNN's LSTM: the plain model fails the same way
        pytest.skip(f"the plain model does not run under CPU bfloat16 autocast: {error}")
    reference, _, _ = _build(case)
    for net, autocast in ((model, True), (reference, False)):
        torch.manual_seed(5)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = _loss(net(x))
        loss.backward()
    for (name, reg), ref in zip(
        ddc.regularized_layers(model).items(),
        ddc.regularized_layers(reference).values(),
        strict=True,
    ):
        assert bool(reg.has_gradient) and reg.grad_magnitude.dtype == torch.float32, name
        assert torch.isfinite(reg.grad_magnitude).all()
        # bfloat16 keeps ~3 significant digits: the statistic agrees with float32's to ~5 %.
        error = (reg.grad_magnitude - ref.grad_magnitude).norm() / ref.grad_magnitude.norm()
        assert error < 0.05, (name, float(error))


def test_bidirectional_lstm_with_projections() -> None:
    torch.manual_seed(0)
    lstm = ddc.apply(nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3), "ddc",
                     include="")  # fmt: skip
    assert sorted(ddc.regularized_layers(lstm)) == [
        "weight_hh_l0", "weight_hh_l0_reverse", "weight_hh_l1", "weight_hh_l1_reverse"
    ]  # fmt: skip
    reasons = {e.name: e.reason for e in ddc.summary(lstm).skipped}
    assert reasons["weight_hr_l0"] == "projection weight of an LSTM: name it ('weight_hr_l0')"
    for _ in range(2):
        lstm.zero_grad(set_to_none=True)
        lstm(torch.randn(5, 2, 4))[0].sum().backward()
    for name, reg in ddc.regularized_layers(lstm).items():
        torch.testing.assert_close(reg.grad_magnitude, getattr(lstm, name).grad.abs())
