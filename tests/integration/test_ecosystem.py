"""DDC with training frameworks: Hugging Face Trainer, PEFT LoRA, Lightning.

Tiny models built from configs, nothing downloaded. Each test skips when its optional package
is missing (``pip install -e .[huggingface,integrations]``; ``make test`` installs both).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import dynamic_dropconnect as ddc
from helpers import tiny_gpt2

IDS = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))


def _import(name: str) -> Any:
    extra = "huggingface" if name == "transformers" else "integrations"
    return pytest.importorskip(name, reason=f"{name} is not installed (extra {extra!r})")


def _gpt2() -> nn.Module:
    return tiny_gpt2(_import("transformers"))


def _assert_same_parameters(a: nn.Module, b: nn.Module) -> None:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for name, value in pa.items():
        assert torch.equal(value, pb[name]), f"{name}: max diff {(value - pb[name]).abs().max()}"


def test_import_stays_light() -> None:
    code = """
import sys
import dynamic_dropconnect, dynamic_dropconnect.integrations as i
heavy = [m for m in ("lightning", "pytorch_lightning", "transformers", "peft") if m in sys.modules]
assert not heavy, heavy
assert "LightningRNGState" in dir(i)
sys.modules["lightning"] = sys.modules["pytorch_lightning"] = None  # as if not installed
from dynamic_dropconnect.integrations import *
assert callable(get_rng_state) and callable(set_rng_state)
try:
    i.LightningRNGState
except ImportError as err:
    assert "pip install lightning" in str(err), err
else:
    raise AssertionError("no ImportError without Lightning")
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    import numpy as np

    from dynamic_dropconnect.integrations import get_rng_state, set_rng_state

    torch.save(get_rng_state(), tmp_path / "rng.pt")
    first = torch.rand(3), np.random.rand(3), random.random()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = torch.rand(3), np.random.rand(3), random.random()
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all()
    assert first[2] == again[2]


# --------------------------------------------------------------------------------------------
# Hugging Face Trainer
# --------------------------------------------------------------------------------------------


class _Tokens(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.ids = torch.randint(0, 100, (16, 8), generator=torch.Generator().manual_seed(1))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _trainer(model: nn.Module, out: Path, max_steps: int = 4) -> Any:
    transformers = _import("transformers")
    _import("accelerate")
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=4, save_steps=2,
        learning_rate=1e-2, report_to="none", use_cpu=True, disable_tqdm=True, seed=0,
        logging_steps=1000,
    )  # fmt: skip
    return transformers.Trainer(model=model, args=args, train_dataset=_Tokens())


def test_hf_trainer_save_model_after_remove_loads_into_a_plain_model(tmp_path: Path) -> None:
    transformers = _import("transformers")
    trainer = _trainer(ddc.apply(_gpt2(), "ddc"), tmp_path / "run")
    trainer.train()
    model = trainer.model.eval()
    expected = model(input_ids=IDS).logits
    # Mid-training checkpoints keep the statistic (exact resume) ...
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "run" / "checkpoint-4" / "model.safetensors")
    assert any(k.endswith("weight_regularizer.grad_magnitude") for k in saved)
    # ... the final model is saved plain: DDC off, then the usual save_model.
    ddc.remove(trainer.model)
    trainer.save_model(tmp_path / "final")
    loaded, info = transformers.GPT2LMHeadModel.from_pretrained(
        tmp_path / "final", output_loading_info=True
    )
    assert not info["unexpected_keys"] and not info["missing_keys"] and not info["mismatched_keys"]
    assert torch.equal(loaded.eval()(input_ids=IDS).logits, expected)


@pytest.mark.parametrize("generator", [False, True], ids=["global-rng", "generator"])
def test_hf_trainer_resume_from_checkpoint_is_exact(tmp_path: Path, generator: bool) -> None:
    # The Trainer checkpoints the global RNG itself; a mask generator resumes from the model's
    # state_dict (key generator_state).
    def options() -> dict[str, Any]:
        return {"generator": torch.Generator().manual_seed(3)} if generator else {}

    straight = _trainer(ddc.apply(_gpt2(), "ddc", **options()), tmp_path / "a")
    straight.train()
    torch.manual_seed(123)  # the resumed run must not depend on the state it starts in
    resumed = _trainer(ddc.apply(_gpt2(), "ddc", **options()), tmp_path / "b")
    if generator:
        next(iter(ddc.regularized_layers(resumed.model).values())).generator.manual_seed(9)
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    _assert_same_parameters(straight.model, resumed.model)
    for (name, a), b in zip(
        ddc.regularized_layers(straight.model).items(),
        ddc.regularized_layers(resumed.model).values(),
        strict=True,
    ):
        assert torch.equal(a.grad_magnitude, b.grad_magnitude), name


# --------------------------------------------------------------------------------------------
# PEFT LoRA
# --------------------------------------------------------------------------------------------


@pytest.fixture
def peft_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def test_peft_lora_with_ddc_saves_plain_adapter_and_reloads(
    tmp_path: Path, peft_warnings: list[warnings.WarningMessage]
) -> None:
    peft = _import("peft")
    from safetensors.torch import load_file

    config = peft.LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True)
    model = peft.get_peft_model(_gpt2(), config)
    ddc.apply(model, "ddc", include=["*lora_A*", "*lora_B*"])
    assert len(ddc.regularized_layers(model)) == 4
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        model(input_ids=IDS, labels=IDS).loss.backward()
        opt.step()
    model.save_pretrained(tmp_path, state_dict=ddc.plain_state_dict(model))
    keys = sorted(load_file(tmp_path / "adapter_model.safetensors"))
    assert keys == [
        f"base_model.model.transformer.h.{i}.attn.c_attn.lora_{ab}.weight"
        for i in (0, 1)
        for ab in "AB"
    ]
    reloaded = peft.PeftModel.from_pretrained(_gpt2(), tmp_path)
    messages = [str(w.message) for w in peft_warnings]
    assert not [m for m in messages if "invalid shape" in m or "missing" in m.lower()], messages
    model.eval(), reloaded.eval()
    trained = model(input_ids=IDS).logits
    assert not torch.equal(trained, _gpt2().eval()(input_ids=IDS).logits)  # LoRA did train
    assert torch.equal(reloaded(input_ids=IDS).logits, trained)


# Mid-training checkpoints keep DDC's state (exact resume); PEFT then warns about the 0-dim
# has_gradient flags under lora_A/lora_B ("invalid shape ... ZeRO-3 / FSDP"): harmless there.
@pytest.mark.filterwarnings("ignore:Adapter 'default'.*invalid shape")
def test_hf_trainer_with_peft_lora_resumes_exactly_and_saves_a_plain_adapter(
    tmp_path: Path,
) -> None:
    peft = _import("peft")
    from safetensors.torch import load_file

    def lora() -> nn.Module:
        config = peft.LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True)
        return ddc.apply(peft.get_peft_model(_gpt2(), config), "ddc", include="*lora_[AB]*")

    straight = _trainer(lora(), tmp_path / "a")
    straight.train()
    torch.manual_seed(123)
    resumed = _trainer(lora(), tmp_path / "b")
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    _assert_same_parameters(straight.model, resumed.model)
    expected = resumed.model.eval()(input_ids=IDS).logits
    ddc.remove(resumed.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed.save_model(tmp_path / "final")
    assert not [w for w in caught if "invalid shape" in str(w.message)]
    keys = load_file(tmp_path / "final" / "adapter_model.safetensors")
    assert len(keys) == 4 and all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in keys)
    reloaded = peft.PeftModel.from_pretrained(_gpt2(), tmp_path / "final").eval()
    assert torch.equal(reloaded(input_ids=IDS).logits, expected)


# --------------------------------------------------------------------------------------------
# Lightning
# --------------------------------------------------------------------------------------------


def _lightning() -> Any:
    return _import("lightning.pytorch")


def _lightning_module(dropout: float, **apply_options: Any) -> Any:
    L = _lightning()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            layers = [nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3)]
            net = nn.Sequential(*layers)
            self.net = ddc.apply(net, "ddc", **apply_options)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.5)

    return Module()


def _loader(shuffle: bool) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=shuffle
    )


def _fit_and_resume(
    tmp_path: Path, callbacks: Any, shuffle: bool, dropout: float, **apply_options: Any
) -> tuple[nn.Module, nn.Module]:
    """8 steps (2 epochs) straight, checkpoint after epoch 1; a fresh Trainer resumes to 8."""
    L = _lightning()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    options = dict(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, max_steps=8,
    )  # fmt: skip
    save = L.callbacks.ModelCheckpoint(tmp_path, every_n_train_steps=4, save_top_k=-1)
    torch.manual_seed(5)
    straight = _lightning_module(dropout, **apply_options)
    L.Trainer(callbacks=[*callbacks(), save], **options).fit(straight, _loader(shuffle))
    torch.manual_seed(123)  # the resumed run must not depend on the state it starts in
    resumed = _lightning_module(dropout, **apply_options)
    trainer = L.Trainer(callbacks=callbacks(), enable_checkpointing=False, **options)
    trainer.fit(resumed, _loader(shuffle), ckpt_path=tmp_path / "epoch=0-step=4.ckpt")
    assert resumed.global_step == 8
    return straight, resumed


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_lightning_resume_is_exact_with_the_rng_callback(tmp_path: Path) -> None:
    _lightning()
    import pickle

    from dynamic_dropconnect.integrations import LightningRNGState

    assert LightningRNGState().state_key == "LightningRNGState"
    assert type(pickle.loads(pickle.dumps(LightningRNGState()))) is LightningRNGState
    # Route (b): masks from the global RNG; the callback checkpoints it (dropout and the
    # shuffled data order resume too).
    straight, resumed = _fit_and_resume(
        tmp_path, lambda: [LightningRNGState()], shuffle=True, dropout=0.1
    )
    _assert_same_parameters(straight, resumed)


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_lightning_resume_is_exact_with_a_mask_generator(tmp_path: Path) -> None:
    # Route (a): apply(..., generator=...) puts the generator's state in the state_dict, so the
    # masks resume with the model, no callback. Anything else drawing from the global RNG
    # (dropout, shuffling) would still need the callback: neither is used here.
    generator = torch.Generator().manual_seed(3)  # shared: the resumed run starts from the
    # state the straight run ended in, and the checkpoint's state must replace it.
    straight, resumed = _fit_and_resume(
        tmp_path, list, shuffle=False, dropout=0.0, generator=generator
    )
    _assert_same_parameters(straight, resumed)


# --------------------------------------------------------------------------------------------
# torch.compile, torch.export, AMP float16 (no optional package needed)
# --------------------------------------------------------------------------------------------


def _small() -> nn.Module:
    torch.manual_seed(0)
    return ddc.apply(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), "ddc")


def _three_steps(model: nn.Module, forward: Any) -> list[torch.Tensor]:
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (32,), generator=torch.Generator().manual_seed(2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(7)
    outputs = []
    for _ in range(3):
        opt.zero_grad()
        out = forward(x)
        nn.functional.cross_entropy(out, y).backward()
        opt.step()
        outputs.append(out.detach())
    return outputs


def test_torch_compile_aot_autograd_draws_the_eager_masks() -> None:
    # The traced graph (AOT autograd, the layer under inductor) draws from the global RNG like
    # eager: same seed, same masks, bit for bit. Inductor's own RNG differs unless
    # torch._inductor.config.fallback_random = True (docs/integrations.md).
    torch._dynamo.reset()
    eager, traced = _small(), _small()
    expected = _three_steps(eager, eager)
    got = _three_steps(traced, torch.compile(traced, backend="aot_eager"))
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)
    _assert_same_parameters(eager, traced)


def test_cpu_autocast_float16_with_grad_scaler() -> None:
    model = _small()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    for _ in range(3):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
        assert out.dtype == torch.float16
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    reg = ddc.regularized_layers(model)["0"]
    assert reg.has_gradient and reg.grad_magnitude.dtype == torch.float32
    assert torch.isfinite(reg.grad_magnitude).all()
    before = reg.grad_magnitude.clone()
    with torch.autocast("cpu", dtype=torch.float16):
        loss = nn.functional.cross_entropy(model(x), y)
    (loss * float("inf")).backward()  # an overflow step: the statistic stays
    assert torch.equal(reg.grad_magnitude, before)


@pytest.mark.parametrize("plain", [False, True], ids=["eval", "removed"])
def test_torch_export_of_a_trained_model(plain: bool) -> None:
    model = _small()
    _three_steps(model, model)
    model.eval()
    x = torch.randn(4, 16)
    expected = model(x)
    if plain:  # the clean graph: no DDC buffers
        ddc.remove(model)
    program = torch.export.export(model, (x,))
    buffers = [b for b in program.graph_signature.buffers if "regularizer" in b]
    assert bool(buffers) != plain
    assert torch.equal(program.module()(x), expected)
