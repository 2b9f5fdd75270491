"""The experiments: dataset, model and the authors' training hyperparameters (docs/suite.md,
"The authors' protocol").

Every experiment, the built-ins included, is registered with :func:`register_experiment`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from .registration import add_to_registry, check_name
from .schedules import AUTHORS_MIN_LR, SCHEDULES, lr_schedule

__all__ = [
    "DEFAULT_EXPERIMENT",
    "EXPERIMENTS",
    "Experiment",
    "get_experiment",
    "register_experiment",
]


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
    #: Train (and validate) on this many examples of the training set, drawn by the run's seed
    #: before the validation split; the test set stays whole. None: all of it. The data-size
    #: axis (docs/results.md) varies it; ``--subset`` instead caps every split, test included.
    train_size: int | None = None
    image_size: int | None = None  # resize inputs to this (AlexNet at 224 px)
    crop_padding: int = 0
    hflip: bool = False
    rotation: float = 0.0
    schedule: str = "authors"  # see .schedules; "cosine" is this project's earlier one
    min_lr: float = AUTHORS_MIN_LR
    model_options: dict[str, Any] = field(default_factory=dict)
    #: per method, options that replace the method's defaults in this experiment
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    optimizer: str = "sgd"  # "sgd" (momentum, the authors') or "adam" (AdamW)
    source: str = "authors' code"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.schedule!r} for {self.name}; valid: {', '.join(SCHEDULES)}"
            )
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(
                f"{self.name}: optimizer must be 'sgd' or 'adam', got {self.optimizer!r}"
            )
        if self.train_size is not None and not (
            isinstance(self.train_size, int) and self.train_size >= 10
        ):
            raise ValueError(
                f"{self.name}: train_size must be an integer >= 10 (or None for the whole "
                f"training set), got {self.train_size!r}"
            )
        if not 0 <= self.warmup < self.epochs:
            raise ValueError(
                f"{self.name}: warmup must be in [0, epochs) = [0, {self.epochs}), "
                f"got {self.warmup}"
            )

    def with_epochs(self, epochs: int) -> Experiment:
        """Shorter (or longer) run; the warmup keeps its share of the schedule."""
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        warmup = round(self.warmup * epochs / self.epochs)
        return replace(self, epochs=epochs, warmup=min(warmup, epochs - 1))

    def with_lr(self, lr: float) -> Experiment:
        """Another peak learning rate; the schedule keeps its shape."""
        if not (isinstance(lr, int | float) and 0 < lr < float("inf")):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        return replace(self, lr=float(lr))

    def with_weight_decay(self, weight_decay: float) -> Experiment:
        """Another weight decay (the optimizer's, on every parameter)."""
        if not (isinstance(weight_decay, int | float) and 0 <= weight_decay < float("inf")):
            raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        return replace(self, weight_decay=float(weight_decay))

    def with_schedule(self, schedule: str) -> Experiment:
        return replace(self, schedule=schedule)

    def learning_rates(self) -> list[float]:
        """The learning rate of every epoch (see :mod:`.schedules`)."""
        return lr_schedule(
            self.schedule, epochs=self.epochs, warmup=self.warmup, lr=self.lr, min_lr=self.min_lr
        )

    def describe_schedule(self) -> str:
        rates = self.learning_rates()
        peak = max(rates) if self.lr >= rates[0] else min(rates)
        return (
            f"{self.schedule} schedule over {self.epochs} epochs, warmup {self.warmup}: "
            f"lr {rates[0]:.3g} (epoch 1) -> {peak:.3g} -> {rates[-1]:.3g} (epoch {self.epochs})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> Experiment:
        """The experiment a ``to_dict()`` written earlier describes (a run's config.json
        ``settings``, a checkpoint's ``experiment``). Settings added to this class since
        take their defaults; keys it no longer has are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

    def differences(self, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``{setting: (saved value, this value)}`` where ``saved`` (a ``to_dict()`` written
        earlier) differs. A setting added to this class after ``saved`` was written counts as
        its default, so older run directories stay resumable when nothing really changed."""
        defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
        defaults.update(
            {f.name: f.default_factory() for f in fields(self) if f.default_factory is not MISSING}
        )
        out = {}
        for key, value in self.to_dict().items():
            old = saved.get(key, defaults.get(key))
            if old != value:
                out[key] = (old, value)
        return out


_OURS = "our choice (not in the paper)"
_SMALL_NORB = "authors' settings, but on small NORB (5 classes); the authors used the 6-class NORB"
#: Name → experiment, filled by :func:`register_experiment` (the built-ins below too).
EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment, *, replace: bool = False) -> Experiment:
    """Register ``experiment`` under its name, so that ``ddc compare --experiment NAME`` (and
    :func:`get_experiment`) find it. Its model, dataset and methods are looked up when it is
    run, so a plugin may register them in any order. A name already registered is an error
    unless ``replace`` (registering an equal experiment again is not). Returns it."""
    if not isinstance(experiment, Experiment):
        raise TypeError(f"register_experiment takes an Experiment, got {experiment!r}")
    check_name("experiment", experiment.name)
    return add_to_registry(EXPERIMENTS, "experiment", experiment.name, experiment, replace=replace)


for _experiment in [
    Experiment(
        "mnist-simplecnn1",
        "mnist",
        "simplecnn1",
        75,
        0.001,
        5e-4,
        12,
        model_options={"variant": "mnist"},
    ),
    Experiment(
        "fashion-mnist-simplecnn1",
        "fashion-mnist",
        "simplecnn1",
        75,
        0.001,
        5e-4,
        12,
        model_options={"variant": "mnist"},
        source="MNIST settings of the authors' code",
    ),
    Experiment(
        "cifar10-simplecnn1",
        "cifar10",
        "simplecnn1",
        120,
        0.005,
        5e-4,
        12,
        model_options={"variant": "cifar10"},
    ),
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
    Experiment(
        "norb-simplecnn2",
        "smallnorb",
        "simplecnn2",
        100,
        0.001,
        6.5e-3,
        10,
        source=_SMALL_NORB,
    ),
    Experiment(
        "norb-alexnet",
        "smallnorb",
        "alexnet-norb",
        75,
        0.0002,
        0.0,
        8,
        image_size=133,
        source=_SMALL_NORB,
    ),
    Experiment(
        "norb-vgg",
        "smallnorb",
        "vgg13bn",
        85,
        0.0008,
        4e-4,
        10,
        rotation=15.0,
        source=_SMALL_NORB,
    ),
    Experiment("digits-mlp", "digits", "mlp", 40, 0.05, 5e-4, 4, schedule="cosine", source=_OURS),
    # The data-size axis (docs/results.md): the same MLP on MNIST; `--set train_size=N` picks
    # how many training images, `--epochs` how long.
    Experiment("mnist-mlp", "mnist", "mlp", 15, 0.05, 5e-4, 2, schedule="cosine", source=_OURS),
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
        schedule="cosine",
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
        schedule="cosine",
        source=_OURS,
    ),
    # Beyond the paper (docs/results.md, "Sequences"): sequences, on Debian's word lists (wordlang).
    Experiment(
        "wordlang-lstm",
        "wordlang",
        "char-lstm",
        15,
        3e-3,
        0.0,
        1,
        optimizer="adam",
        schedule="cosine",
        source=_OURS + "; AWD-LSTM-style weight drop on weight_hh_l0",
    ),
    Experiment(
        "wordlang-transformer",
        "wordlang",
        "char-transformer",
        15,
        1e-3,
        0.01,
        1,
        optimizer="adam",
        schedule="cosine",
        # Lighter rates for attention weights. Measured mean drop rates: Dropout and
        # DropConnect 0.10, this DDC setting 0.15 (p + 0.41 pg); the README also reports
        # DDC at p=0.05, pg=0.12 (rate 0.10) via `ddc sweep`.
        method_options={
            "dropout": {"p": 0.1},
            "dropconnect": {"p": 0.1},
            "ddc": {"p": 0.05, "pg": 0.25},
        },
        source=_OURS + "; DDC on attention projections and feed-forward weights",
    ),
]:
    register_experiment(_experiment)

DEFAULT_EXPERIMENT = "digits-mlp"


def get_experiment(name: str) -> Experiment:
    """The experiment registered as ``name``; ``ValueError`` listing the valid names."""
    if name not in EXPERIMENTS:
        raise ValueError(
            f"unknown experiment {name!r}; valid: {', '.join(EXPERIMENTS)} (or one a plugin "
            "registers: --plugins MODULE, see docs/suite.md)"
        )
    return EXPERIMENTS[name]
