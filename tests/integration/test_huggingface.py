"""DDC on real Hugging Face models built from tiny configs (no downloads).

Needs the optional extra ``huggingface`` (``pip install -e .[huggingface]``); skipped without it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import dynamic_dropconnect as ddc
from helpers import tiny_gpt2

transformers = pytest.importorskip("transformers")


def _gpt2() -> torch.nn.Module:
    return tiny_gpt2(transformers)


def _bert_classifier() -> torch.nn.Module:
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=100, num_labels=3, max_position_embeddings=16,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


IDS = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))


def test_gpt2_conv1d_weights_are_regularized_and_the_tied_head_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="dynamic_dropconnect"):
        model = ddc.apply(_gpt2(), "ddc")
    names = sorted(ddc.regularized_layers(model))
    assert len(names) == 8 and all(n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))
                                   for n in names)  # fmt: skip
    assert "lm_head.weight (Linear: tied to the embedding transformer.wte" in caplog.text
    skipped = {e.name: e.reason for e in ddc.summary(model).skipped}
    assert skipped["lm_head.weight"].startswith("tied to the embedding")
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        model(input_ids=IDS, labels=IDS).loss.backward()
    params = dict(model.named_parameters())
    for name, reg in ddc.regularized_layers(model).items():
        assert bool(reg.has_gradient)
        torch.testing.assert_close(reg.grad_magnitude, params[name].grad.abs(), rtol=0, atol=0)
    model.eval()
    plain = _gpt2().eval()
    plain.load_state_dict(ddc.plain_state_dict(model))
    assert torch.equal(model(input_ids=IDS).logits, plain(input_ids=IDS).logits)


def test_save_pretrained_round_trip_and_reload_with_statistic(tmp_path: Path) -> None:
    model = ddc.apply(_gpt2(), "ddc")
    model(input_ids=IDS, labels=IDS).loss.backward()
    model.save_pretrained(tmp_path / "plain", state_dict=ddc.plain_state_dict(model))
    loaded, info = transformers.GPT2LMHeadModel.from_pretrained(
        tmp_path / "plain", output_loading_info=True
    )
    assert not info["unexpected_keys"] and not info["missing_keys"]
    model.eval(), loaded.eval()
    assert torch.equal(model(input_ids=IDS).logits, loaded(input_ids=IDS).logits)
    # A DDC model with its statistic: the full state_dict into a DDC model of the same layout.
    torch.save(model.state_dict(), tmp_path / "ddc.pt")
    again = ddc.apply(_gpt2(), "ddc")
    again.load_state_dict(torch.load(tmp_path / "ddc.pt"))
    for (name, a), b in zip(
        ddc.regularized_layers(model).items(), ddc.regularized_layers(again).values(), strict=True
    ):
        assert torch.equal(a.grad_magnitude, b.grad_magnitude), name
        assert bool(b.has_gradient)


def test_mc_predict_on_a_sequence_classifier() -> None:
    model = ddc.apply(_bert_classifier(), "ddc", include=["*.attention.*", "*.intermediate.*"])
    model.eval()
    batch = {"input_ids": IDS, "attention_mask": torch.ones_like(IDS)}
    samples = ddc.mc_predict(model, batch, 6, return_samples=True)
    assert samples.shape == (6, 2, 3)
    assert float(samples.std(0).max()) > 1e-4
    assert torch.allclose(samples.sum(-1), torch.ones(6, 2))
    assert not model.training
    ddc.remove(model)
    assert not ddc.regularized_layers(model)
