"""DDC on any weight: attention, recurrent, Conv1D, ConvTranspose, Linear subclasses; the
mc_predict and checkpoint bugs; the summary; clear errors; gradient accumulation."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

import dynamic_dropconnect as ddc


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
Case = tuple[Callable[[], nn.Module], str | list[str], list[str], Callable[[], Tensor]]
CASES: dict[str, Case] = {
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


def _params(model: nn.Module) -> dict[str, Tensor]:
    return dict(model.named_parameters())


def _step(model: nn.Module, x: Tensor) -> Tensor:
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), torch.arange(len(x)) % 3)
    loss.backward()
    return loss


@pytest.mark.parametrize("case", list(CASES))
def test_statistic_is_the_effective_gradient_dense_and_captured_in_backward(case: str) -> None:
    model, x, names = _build(case)
    assert sorted(ddc.regularized_layers(model)) == sorted(names)
    _step(model, x)  # first step: rate p everywhere
    _step(model, x)  # zero_grad(set_to_none=True) before: the statistic comes from backward
    params = _params(model)
    for name, reg in ddc.regularized_layers(model).items():
        assert isinstance(reg, ddc.DynamicDropConnect) and bool(reg.has_gradient), name
        # Dense update: the parameter receives dL/dW_eff itself, so the statistic is |grad|.
        torch.testing.assert_close(reg.grad_magnitude, params[name].grad.abs(), rtol=0, atol=0)
        assert float(reg.last_kept_fraction) < 1.0  # a mask was really applied


@pytest.mark.parametrize("case", list(CASES))
def test_masked_update_equals_dense_times_the_mask(case: str) -> None:
    grads = {}
    for update in ("dense", "masked"):
        model, x, names = _build(case, "dropconnect", p=0.5, update=update)
        for reg in ddc.regularized_layers(model).values():
            reg.generator = torch.Generator().manual_seed(7)
        _step(model, x)
        grads[update] = {n: _params(model)[n].grad.clone() for n in names}
    for name in names:
        dense, masked = grads["dense"][name], grads["masked"][name]
        mask = ddc.functional.sample_keep_mask(dense, 0.5, torch.Generator().manual_seed(7))
        torch.testing.assert_close(masked, dense * mask / mask.mean())


@pytest.mark.parametrize("case", list(CASES))
def test_eval_is_plain_and_keys_stay_and_remove_restores(case: str) -> None:
    model, x, names = _build(case)
    factory = CASES[case][0]
    plain_keys = set(factory().state_dict())
    _step(model, x)
    keys = set(model.state_dict())
    assert plain_keys <= keys and all("_regularizer." in k for k in keys - plain_keys)
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
        _step(model, x)
        opt.step()
    saved = copy.deepcopy((model.state_dict(), opt.state_dict()))
    clone, _, _ = _build(case)
    clone_opt = torch.optim.SGD(clone.parameters(), lr=0.1, momentum=0.9)
    clone.load_state_dict(saved[0])
    clone_opt.load_state_dict(saved[1])
    for net, optimizer in ((model, opt), (clone, clone_opt)):
        torch.manual_seed(11)
        _step(net, x)
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
    _step(model, x)
    opt.step()
    assert not torch.equal(weight, before)
    assert model.rnn.weight_hh_l0 is weight  # back in place after forward
    assert model.rnn._flat_weights[model.rnn._flat_weights_names.index("weight_hh_l0")] is weight
    model.rnn.flatten_parameters()  # still works


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


def test_mc_predict_on_transformer_encoder_is_not_fooled_by_the_fast_path() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    model = nn.Sequential(encoder, nn.Flatten(), nn.Linear(80, 4)).eval()
    ddc.apply(model, "ddc", include=["*.linear1"])
    assert torch.backends.mha.get_fastpath_enabled()
    samples = ddc.mc_predict(model, torch.randn(3, 5, 16), 5, return_samples=True)
    assert float(samples.std(0).max()) > 1e-3  # 0.0 before the fix
    assert torch.backends.mha.get_fastpath_enabled()  # restored
    assert not model.training


def test_mc_predict_on_attention_weights_of_a_transformer() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False))
    ddc.apply(model, "dropconnect", include="*.self_attn", p=0.3)
    names = sorted(ddc.regularized_layers(model))
    assert names == [
        "0.layers.0.self_attn.in_proj_weight",
        "0.layers.0.self_attn.out_proj.weight",
    ]
    out = ddc.mc_predict(model, torch.randn(2, 4, 16), 4, return_samples=True)
    assert float(out.std(0).max()) > 1e-3


def test_mc_predict_refuses_identical_samples_from_a_bypassed_mask() -> None:
    class Bypass(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x: Tensor) -> Tensor:
            return F.linear(x, self.lin.weight, self.lin.bias)  # never calls self.lin

    model = ddc.apply(Bypass(), "dropconnect", p=0.5)
    with pytest.raises(RuntimeError, match="identical.*lin"):
        ddc.mc_predict(model, torch.randn(2, 4), 3)
    assert ddc.mc_predict(model, torch.randn(2, 4), 3, check_spread=False).shape == (2, 3)


def test_mc_predict_inputs_and_outputs_of_any_shape() -> None:
    class DictModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, input_ids: Tensor, scale: float = 1.0) -> SimpleNamespace:
            return SimpleNamespace(logits=self.lin(input_ids) * scale, loss=None)

    torch.manual_seed(0)
    model = ddc.apply(DictModel(), "dropconnect", p=0.5)
    x = torch.randn(5, 4)
    by_dict = ddc.mc_predict(model, {"input_ids": x, "scale": 2.0}, 6)
    assert by_dict.shape == (5, 3) and torch.allclose(by_dict.sum(-1), torch.ones(5))
    by_tuple = ddc.mc_predict(model, (x,), 6)
    assert by_tuple.shape == (5, 3)
    custom = ddc.mc_predict(model, x, 6, forward_fn=lambda m, t: {"logits": m(t).logits})
    assert custom.shape == (5, 3)
    with pytest.raises(TypeError, match="cannot find logits.*SimpleNamespace"):
        ddc.mc_predict(model, x, 2, forward_fn=lambda m, t: SimpleNamespace(scores=m(t).logits))
    with pytest.raises(ValueError, match="n_samples must be a positive int, got 0"):
        ddc.mc_predict(model, x, 0)


@pytest.mark.parametrize("method", ["dropconnect", "ddc"])
@pytest.mark.parametrize("mask_mode", ["batch", "sample"])
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
        (lambda m: ddc.apply(m, "ddc", include="rnn", mask_mode="sample"), TypeError,
         r"mask_mode='sample' needs a plain nn.Linear/nn.ConvNd.*'rnn.weight_hh_l0'"),
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
    lstm = ddc.WeightDrop(nn.LSTM(6, 8), ["weight_hh_l0"], dropout=0.5)
    assert "weights=['weight_hh_l0'], dropout=0.5" in repr(lstm)
    reg = ddc.regularized_layers(lstm)["module.weight_hh_l0"]
    assert isinstance(reg, ddc.DropConnect) and reg.p == 0.5
    out, _ = lstm(torch.randn(7, 3, 6))
    out.sum().backward()
    assert lstm.module.weight_hh_l0.grad is not None
    assert float(reg.last_kept_fraction) < 1.0
    with pytest.raises(ValueError, match="weights must be a non-empty list"):
        ddc.WeightDrop(nn.LSTM(6, 8), "weight_hh_l0")
    ddc_lstm = ddc.WeightDrop(nn.GRU(6, 8), ["weight_hh_l0"], 0.2, method="ddc", pg=0.4)
    reg = ddc.regularized_layers(ddc_lstm)["module.weight_hh_l0"]
    assert isinstance(reg, ddc.DynamicDropConnect) and (reg.p, reg.pg) == (0.2, 0.4)


def test_gradient_accumulation_keeps_the_statistic_until_the_optimizer_step() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    ddc.apply(model, "ddc", include="0", statistic_update="step")
    reg = ddc.regularized_layers(model)["0"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    micro = [torch.randn(4, 6) for _ in range(3)]
    labels = torch.tensor([0, 1, 2, 0])

    def accumulate() -> tuple[list[Tensor], Tensor]:
        probs, grads = [], []
        opt.zero_grad(set_to_none=True)
        for x in micro:
            before = model[0].weight.grad
            before = torch.zeros_like(model[0].weight) if before is None else before.clone()
            F.cross_entropy(model(x), labels).backward()
            probs.append(reg.last_mean_drop_prob.clone())
            grads.append((model[0].weight.grad - before).abs())  # dense: this backward's |g|
        return probs, torch.stack(grads).mean(0)

    probs, _ = accumulate()
    assert not bool(reg.has_gradient)  # nothing committed before the first step
    opt.step()
    probs, mean_abs = accumulate()
    assert torch.equal(probs[0], probs[1]) and torch.equal(probs[1], probs[2])  # fixed
    assert bool(reg.has_gradient)
    opt.step()
    model(micro[0])  # the first forward after the step commits the mean |g| of the three
    torch.testing.assert_close(reg.grad_magnitude, mean_abs)
    # The default: every backward replaces the statistic, so p changes between micro-batches.
    default = ddc.DynamicDropConnect()
    assert default.statistic_update == "backward"
    with pytest.raises(ValueError, match="statistic_update must be one of 'backward', 'step'"):
        ddc.DynamicDropConnect(statistic_update="epoch")


def test_compile_and_autocast_with_parameter_targets() -> None:
    model, x, _ = _build("lstm")
    compiled = torch.compile(model, backend="eager")
    _step(compiled, x)
    assert all(bool(r.has_gradient) for r in ddc.regularized_layers(model).values())
    attn, y, _ = _build("mha")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(attn(y), torch.arange(4) % 3)
    loss.backward()
    assert all(bool(r.has_gradient) for r in ddc.regularized_layers(attn).values())


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


def test_mc_predict_samples_dropout_subclasses() -> None:
    class MyDropout(nn.modules.dropout._DropoutNd):
        def forward(self, x: Tensor) -> Tensor:
            return F.dropout(x, self.p, self.training)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), MyDropout(0.5), nn.Linear(8, 3)).eval()
    samples = ddc.mc_predict(model, torch.randn(5, 4), 4, return_samples=True)
    assert float(samples.std(0).max()) > 1e-3 and not model[1].training
