"""The experiments: dataset, model and the authors' training hyperparameters (SPEC section 4)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["DEFAULT_EXPERIMENT", "EXPERIMENTS", "Experiment", "get_experiment"]


@dataclass(frozen=True)
class Experiment:
    """One training setup. ``source`` says where its hyperparameters come from."""

    name: str
    dataset: str
    model: str
    epochs: int
    lr: float
    weight_decay: float
    warmup: int
    batch_size: int = 128
    momentum: float = 0.9
    val_fraction: float = 0.1
    image_size: int | None = None  # resize inputs to this (AlexNet at 224 px)
    crop_padding: int = 0
    hflip: bool = False
    rotation: float = 0.0
    source: str = "authors' code"

    def with_epochs(self, epochs: int) -> Experiment:
        """Shorter (or longer) run; the warmup keeps its share of the schedule."""
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        warmup = round(self.warmup * epochs / self.epochs)
        return replace(self, epochs=epochs, warmup=min(warmup, epochs - 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_OURS = "our choice (not in the paper)"
EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment("mnist-simplecnn1", "mnist", "simplecnn1", 75, 0.001, 5e-4, 12),
        Experiment(
            "fashion-mnist-simplecnn1",
            "fashion-mnist",
            "simplecnn1",
            75,
            0.001,
            5e-4,
            12,
            source="MNIST settings of the authors' code",
        ),
        Experiment("cifar10-simplecnn1", "cifar10", "simplecnn1", 120, 0.005, 5e-4, 12),
        Experiment("cifar10-simplecnn2", "cifar10", "simplecnn2", 130, 0.055, 5e-5, 12),
        Experiment("cifar10-alexnet", "cifar10", "alexnet", 40, 0.01, 5e-4, 8, image_size=224),
        Experiment(
            "cifar10-vgg", "cifar10", "vgg13bn", 100, 0.005, 0.0, 10, crop_padding=4, hflip=True
        ),
        Experiment(
            "cifar100-vgg",
            "cifar100",
            "vgg13bn",
            220,
            0.06,
            8e-4,
            20,
            crop_padding=4,
            hflip=True,
            rotation=15.0,
        ),
        Experiment("norb-simplecnn2", "smallnorb", "simplecnn2", 100, 0.001, 6.5e-3, 10),
        Experiment("norb-alexnet", "smallnorb", "alexnet-norb", 75, 0.0002, 0.0, 8),
        Experiment("norb-vgg", "smallnorb", "vgg13bn", 85, 0.0008, 4e-4, 10),
        Experiment("digits-mlp", "digits", "mlp", 40, 0.05, 5e-4, 4, source=_OURS),
        Experiment(
            "cifar10-resnet18",
            "cifar10",
            "resnet18",
            100,
            0.05,
            5e-4,
            5,
            crop_padding=4,
            hflip=True,
            source=_OURS,
        ),
        Experiment(
            "cifar10-vit",
            "cifar10",
            "vit",
            100,
            0.01,
            5e-4,
            10,
            crop_padding=4,
            hflip=True,
            source=_OURS,
        ),
    ]
}
DEFAULT_EXPERIMENT = "digits-mlp"


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]
