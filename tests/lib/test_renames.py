"""Renamed public names: the old ones still work, with a DeprecationWarning at the caller."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import torch
from torch import nn

import dynamic_dropconnect as ddc

RENAMED = [  # (module, old name, new name)
    ("dynamic_dropconnect", "METHODS", "REGULARIZERS"),
    ("dynamic_dropconnect", "WeightDrop", "AWDWeightDrop"),
    ("dynamic_dropconnect.surgery", "METHODS", "REGULARIZERS"),
    ("dynamic_dropconnect.layers", "is_regularized", "is_swapped"),
    ("dynamic_dropconnect.parameters", "regularized_parameters", "hooked_weights"),
    ("dynamic_dropconnect.per_sample", "per_sample_masked_op", "per_example_masked_op"),
    ("dynamic_dropconnect.experiments.synthetic", "METHODS", "UPDATE_RULES"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED)
def test_old_name_warns_and_is_the_new_object(module: str, old: str, new: str) -> None:
    namespace = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{old} is deprecated: use .*{new}"):
        value = getattr(namespace, old)
    assert value is getattr(namespace, new)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        namespace.no_such_name  # noqa: B018


def test_weight_drop_alias_still_builds_the_wrapper() -> None:
    with pytest.warns(DeprecationWarning) as record:
        lstm = ddc.WeightDrop(nn.LSTM(6, 8), ["weight_hh_l0"], dropout=0.5)
    assert record[0].filename == __file__  # attributed to the caller, not the library
    assert isinstance(lstm, ddc.AWDWeightDrop)
    assert isinstance(ddc.regularized_layers(lstm)["module.weight_hh_l0"], ddc.DropConnect)


def test_mask_mode_sample_is_example() -> None:
    def output(mode: str) -> torch.Tensor:
        torch.manual_seed(0)
        layer = ddc.apply(nn.Linear(5, 4), "dropconnect", include=[""], mask_mode=mode, p=0.5)
        return layer(torch.ones(3, 5))

    with pytest.warns(DeprecationWarning, match="mask_mode='sample' is deprecated") as record:
        old = output("sample")
    assert {w.filename for w in record} == {__file__}  # through apply: still the caller
    assert torch.equal(old, output("example"))
    reg = ddc.DropConnect(p=0.5, mask_mode="example")
    assert reg.mask_mode == "example" and "mask_mode='example'" in repr(reg)
    with pytest.warns(DeprecationWarning, match="per_sample is deprecated: use per_example"):
        y = reg.per_sample(
            torch.ones(2, 5), torch.ones(4, 5), lambda x, w: torch.einsum("bi,boi->bo", x, w)
        )
    assert y.shape == (2, 4)


def test_is_regularized_sees_every_mechanism_and_names_one_weight() -> None:
    model = nn.ModuleDict({"lstm": nn.LSTM(4, 4), "head": nn.Linear(4, 2), "mha": None})
    model["mha"] = nn.MultiheadAttention(4, 2)
    ddc.apply(model, "dropconnect", include=["lstm.weight_hh_l0", "head", "mha"])
    lstm, head, mha = model["lstm"], model["head"], model["mha"]
    assert ddc.is_regularized(lstm) and ddc.is_regularized(lstm, "weight_hh_l0")
    assert not ddc.is_regularized(lstm, "weight_ih_l0")
    assert ddc.is_regularized(head) and ddc.is_regularized(head, "weight")
    assert not ddc.is_regularized(head, "bias")
    assert ddc.is_regularized(mha, "in_proj_weight") and ddc.is_regularized(mha.out_proj)
    assert not ddc.is_regularized(model)  # its own weights only, like is_parametrized
    ddc.remove(model)
    assert not any(ddc.is_regularized(m) for m in model.modules())


def test_slot_model_regularized_layers_is_weight_slots() -> None:
    """The experiment models' attribute was renamed: it read like ``ddc.regularized_layers``."""
    from dynamic_dropconnect.experiments.methods import apply_method
    from dynamic_dropconnect.experiments.models.layers import SlotModel

    with pytest.warns(DeprecationWarning, match="Old.regularized_layers is deprecated") as record:

        class Old(SlotModel):
            regularized_layers = ("linear2",)

            def __init__(self) -> None:
                super().__init__()
                self.linear1, self.linear2 = nn.Linear(3, 3), nn.Linear(3, 3)

    assert record[0].filename == __file__

    model = Old()
    assert model.weight_slots == ("linear2",)
    apply_method(model, "dropconnect", {})
    assert list(ddc.regularized_layers(model)) == ["linear2"]
    with pytest.warns(DeprecationWarning, match="regularized_layers is deprecated"):
        assert SlotModel().regularized_layers == ("linear1",)

    class Plugin(nn.Module):  # not a SlotModel: the old attribute is read, with a warning
        regularized_layers = ("fc",)

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

    with pytest.warns(DeprecationWarning, match="name the attribute weight_slots"):
        apply_method(plugin := Plugin(), "dropconnect", {})
    assert list(ddc.regularized_layers(plugin)) == ["fc"]


@pytest.mark.slow
def test_renamed_module_imports_as_the_new_one_with_a_warning() -> None:
    # A fresh interpreter: the old path must not already sit in sys.modules.
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n"
        "    from dynamic_dropconnect.experiments.io import atomic_write_text\n"
        "except DeprecationWarning as w:\n"
        "    print('warned:', w)\n"
        "warnings.simplefilter('ignore')\n"
        "from dynamic_dropconnect.experiments.io import atomic_write_text\n"
        "import dynamic_dropconnect.experiments.storage as new\n"
        "print(atomic_write_text is new.atomic_write_text, new.__spec__.name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        "warned: dynamic_dropconnect.experiments.io is deprecated: "
        "use dynamic_dropconnect.experiments.storage",
        "True dynamic_dropconnect.experiments.storage",
    ]
