"""mc_predict's fast path (deterministic part once, random part batched or looped) against the
plain loop of whole passes: identical where the masks can be forced equal, the same
distribution elsewhere, and a fallback where torch.fx cannot trace."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import dynamic_dropconnect as ddc
from dynamic_dropconnect.montecarlo import mc_passes


def _cnn(batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1)]
    layers += [nn.BatchNorm2d(4)] if batchnorm else []
    layers += [nn.ReLU(), nn.AvgPool2d(2), nn.Flatten()]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.linear1 = nn.Linear(4 * 4 * 4, 16)
            self.act1 = nn.ReLU()
            self.linear2 = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear2(self.act1(self.linear1(self.features(x))))

    return Net()


def _with_statistic(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """One backward, so DDC layers have per-edge rates; then eval, BatchNorm stats fixed."""
    model.train()
    model(x).sum().backward()
    return model.eval()


def _loop_then_fast(
    model: nn.Module,
    inputs: object,
    n: int,
    reseed: Callable[[], object],
    caplog: pytest.LogCaptureFixture | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole passes in a loop, then the fast path, each from the same RNG state."""
    reseed()
    loop = ddc.mc_predict(model, inputs, n, return_samples=True, fast=False)
    reseed()
    if caplog is None:
        return loop, ddc.mc_predict(model, inputs, n, return_samples=True)
    with caplog.at_level(logging.DEBUG, logger="dynamic_dropconnect"):
        return loop, ddc.mc_predict(model, inputs, n, return_samples=True)


def _paths(caplog: pytest.LogCaptureFixture) -> str:
    return " ".join(r.getMessage() for r in caplog.records if r.name == "dynamic_dropconnect")


@pytest.mark.parametrize("method", ["dropconnect", "ddc"])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_head_only_fast_path_draws_the_loops_masks(
    method: str, batchnorm: bool, caplog: pytest.LogCaptureFixture
) -> None:
    x = torch.randn(6, 1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    model = ddc.apply(_cnn(batchnorm), method, include=["linear1"], generator=generator)
    _with_statistic(model, x)
    running = [b.clone() for b in model.buffers()]
    loop, fast = _loop_then_fast(model, x, 9, lambda: generator.manual_seed(7), caplog)
    assert "batched over 9 passes" in _paths(caplog)
    assert fast.shape == loop.shape == (9, 6, 3)
    torch.testing.assert_close(fast, loop, rtol=0, atol=1e-6)
    assert fast.std(0).max() > 1e-3  # the passes differ
    for before, after in zip(running, model.buffers(), strict=True):
        if after.dtype.is_floating_point and after.numel() > 1:
            torch.testing.assert_close(after, before)  # BatchNorm stayed in eval
    assert not model.training


def test_chunks_and_the_loop_after_a_full_chunk_draw_the_same_masks() -> None:
    x = torch.randn(5, 1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    model = ddc.apply(_cnn(), "dropconnect", include=["linear1"], generator=generator).eval()
    generator.manual_seed(3)
    loop = ddc.mc_predict(model, x, 11, return_samples=True, fast=False)
    model.linear1.regularizer.train()  # mc_passes expects the Monte-Carlo modes
    for chunk_bytes in (1, 8_000, 1 << 30):  # loop after one pass, chunks of a few, one chunk
        generator.manual_seed(3)
        with torch.no_grad():
            fast = mc_passes(model, x, 11, lambda out: out.softmax(-1), chunk_bytes=chunk_bytes)
        assert fast is not None
        torch.testing.assert_close(fast, loop, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_every_layer_random_with_dropout_has_the_loops_distribution() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, 4),
    )  # fmt: skip
    ddc.apply(model, "ddc", p=0.3, pg=0.5)
    x = torch.randn(3, 6)
    _with_statistic(model, x)
    torch.manual_seed(1)
    loop = ddc.mc_predict(model, x, 3000, return_samples=True, fast=False)
    fast = ddc.mc_predict(model, x, 3000, return_samples=True)
    # Standard error of a mean of 3000 passes is < 0.01 here; of a std, about as much.
    torch.testing.assert_close(fast.mean(0), loop.mean(0), rtol=0, atol=0.02)
    torch.testing.assert_close(fast.std(0), loop.std(0), rtol=0, atol=0.02)
    assert not torch.equal(fast[0], fast[1])


def test_untraceable_model_falls_back_to_whole_passes(caplog: pytest.LogCaptureFixture) -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear1 = nn.Linear(4, 8)
            self.linear2 = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent: torch.fx cannot trace it
                x = -x
            return self.linear2(self.linear1(x))

    generator = torch.Generator().manual_seed(0)
    model = ddc.apply(Branchy(), "dropconnect", generator=generator)
    x = torch.randn(5, 4)
    loop, fast = _loop_then_fast(model, x, 6, lambda: generator.manual_seed(2), caplog)
    assert "cannot trace" in _paths(caplog)
    assert "6 whole passes" in _paths(caplog)
    torch.testing.assert_close(fast, loop, rtol=0, atol=0)


def test_lstm_with_ddc_on_weight_hh_loops_only_the_random_part(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.rnn = nn.LSTM(8, 12, batch_first=True)
            self.head = nn.Linear(12, 4)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(self.embed(tokens))
            return self.head(out[:, -1])

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = ddc.apply(Tagger(), "ddc", include="rnn.weight_hh_l0", generator=generator)
    tokens = torch.randint(0, 20, (4, 7))
    _with_statistic(model, tokens)
    loop, fast = _loop_then_fast(model, tokens, 8, lambda: generator.manual_seed(5), caplog)
    assert "in a loop over 8 passes" in _paths(caplog)  # the embedding ran once
    torch.testing.assert_close(fast, loop, rtol=0, atol=1e-6)
    assert fast.std(0).max() > 1e-4


def test_transformer_encoder_with_ddc_matches_the_loop_and_varies() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.Linear(5, 16), nn.TransformerEncoder(layer, 2), nn.Linear(16, 3))
    ddc.apply(model, "ddc", include=["1.layers.*.linear1"])
    x = torch.randn(2, 4, 5)
    _with_statistic(model, x)
    loop, fast = _loop_then_fast(model, x, 5, lambda: torch.manual_seed(9))
    # The encoder is one opaque random module: the loop over it draws what whole passes draw.
    torch.testing.assert_close(fast, loop, rtol=0, atol=1e-6)
    assert fast.std(0).max() > 1e-4


def test_plan_follows_changes_to_the_model() -> None:
    model = ddc.apply(_cnn(), "dropconnect", include=["linear1"]).eval()
    x = torch.randn(4, 1, 8, 8)
    assert ddc.mc_predict(model, x, 4, return_samples=True).std(0).max() > 1e-3
    ddc.remove(model)
    plain = ddc.mc_predict(model, x, 4, return_samples=True)
    with torch.no_grad():
        expected = model(x).softmax(-1)
    torch.testing.assert_close(plain, expected.expand(4, -1, -1))


@pytest.mark.slow
def test_huggingface_dict_inputs_take_whole_passes() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=3, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = ddc.apply(transformers.BertForSequenceClassification(config), "dropconnect")
    batch = {"input_ids": torch.randint(0, 50, (2, 6))}
    loop, fast = _loop_then_fast(model, batch, 4, lambda: torch.manual_seed(4))
    torch.testing.assert_close(fast, loop, rtol=0, atol=0)
    assert fast.std(0).max() > 1e-4


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


def test_mc_predict_samples_dropout_subclasses() -> None:
    class MyDropout(nn.modules.dropout._DropoutNd):
        def forward(self, x: Tensor) -> Tensor:
            return F.dropout(x, self.p, self.training)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), MyDropout(0.5), nn.Linear(8, 3)).eval()
    samples = ddc.mc_predict(model, torch.randn(5, 4), 4, return_samples=True)
    assert float(samples.std(0).max()) > 1e-3 and not model[1].training
