"""What one run is: what it trains (:class:`RunSpec`), its data (:func:`prepare_data`: the
dataset loaded, split (seeded) and measured on its training split), and how it computes
(:func:`uses_channels_last`, :func:`compiled`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import Experiment
from .datasets import load_dataset, train_val_split
from .datasets.transforms import channel_stats

__all__ = ["PreparedData", "RunSpec", "compiled", "prepare_data", "uses_channels_last"]


@dataclass
class PreparedData:
    """Splits on the target device, raw (uint8 images), plus the training statistics."""

    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    mean: Tensor
    std: Tensor
    num_classes: int
    in_channels: int
    image_size: int
    source: str
    vocab_size: int | None = None  # token data: ids 0..vocab_size-1 (0 pads)


def prepare_data(
    experiment: Experiment,
    *,
    seed: int,
    data_dir: str | Path | None = None,
    subset: int | None = None,
    device: str | torch.device = "cpu",
) -> PreparedData:
    """Load, split (seeded) and measure the training split. ``experiment.train_size`` draws
    that many training examples (the test set stays whole); ``subset`` caps every split."""
    bundle = load_dataset(experiment.dataset, data_dir)
    x, y = bundle.train.x, bundle.train.y
    if subset is not None and subset < 10:
        raise ValueError(f"subset must be >= 10 examples, got {subset}")
    if experiment.train_size is not None and experiment.train_size > len(x):
        raise ValueError(
            f"{experiment.name}: train_size {experiment.train_size} is more than the "
            f"{len(x)} training examples of {experiment.dataset!r}"
        )
    caps = [n for n in (experiment.train_size, subset) if n is not None]
    if caps:
        # One seeded permutation, so a smaller train_size/subset draws a subset of a larger one.
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[: min(caps)]
        x, y = x[pick], y[pick]
    train_idx, val_idx = train_val_split(len(x), experiment.val_fraction, seed)
    # load_dataset admits integer inputs other than uint8 only from a dataset registered with
    # tokens=True (see datasets.check_bundle): such inputs are token ids, never pixels.
    tokens = not torch.is_floating_point(x) and x.dtype != torch.uint8
    if tokens:  # token ids are not normalised
        mean, std = torch.zeros(1), torch.ones(1)
    else:
        mean, std = channel_stats(x[train_idx])
    test_x, test_y = bundle.test.x, bundle.test.y
    if subset is not None:
        test_x, test_y = test_x[:subset], test_y[:subset]
    return PreparedData(
        train=(x[train_idx].to(device), y[train_idx].to(device)),
        val=(x[val_idx].to(device), y[val_idx].to(device)),
        test=(test_x.to(device), test_y.to(device)),
        mean=mean.to(device),
        std=std.to(device),
        num_classes=bundle.num_classes,
        in_channels=x.shape[1],
        image_size=experiment.image_size or x.shape[-1],
        source=bundle.source,
        vocab_size=int(max(x.max(), bundle.test.x.max())) + 1 if tokens else None,
    )


@dataclass
class RunSpec:
    """What to train. ``method_options`` override the method's defaults (sweeps)."""

    experiment: Experiment
    method: str
    seed: int
    device: str = "cpu"
    method_options: dict[str, Any] = field(default_factory=dict)
    compile: bool = False  # train through torch.compile (inductor), see compiled()
    # Convolutions in channels_last (NHWC) memory: None = where it pays, see uses_channels_last.
    channels_last: bool | None = None


def uses_channels_last(spec: RunSpec, model: nn.Module, data: PreparedData) -> bool:
    """Whether ``spec``'s run keeps images and convolution weights in channels_last memory.

    Default (``spec.channels_last`` None): yes for an eager run of a model with 2-D convolutions
    on image inputs. Measured on SimpleCNN1 (``results/step-speed-cpu.txt``, 1 CPU thread, quiet
    machine): the training step 1.66x and evaluation 2.4-4.1x faster than contiguous NCHW, the
    same arithmetic up to float rounding; under ``torch.compile`` it was slower (1.11x against
    1.28x for compiled contiguous), so compiled runs stay contiguous.
    """
    if spec.channels_last is not None:
        return spec.channels_last
    images = data.vocab_size is None and data.train[0].dim() == 4
    convolutions = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return images and convolutions and not spec.compile


def compiled(net: nn.Module) -> nn.Module:
    """``torch.compile(net)`` (inductor) drawing the masks eager PyTorch would draw.

    ``fallback_random``: inductor's own RNG would give other masks than eager for the same seed
    (measured: outputs 1.2-1.7 apart after a step, docs/integrations.md), so compiled and eager
    runs of one seed could not be compared mask for mask; with it they differ only by float
    rounding. It costs little: only the drop masks are random here.
    """
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    return torch.compile(net)  # type: ignore[return-value]
