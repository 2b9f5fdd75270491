"""Checks of the ``ddc`` command's options (:mod:`.cli` runs them): every value is checked
before anything is loaded, trained or written, and a bad one is a :class:`UsageError` that
names the flag and what is valid.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from .config import EXPERIMENTS, Experiment, get_experiment
from .methods import METHODS
from .schedules import SCHEDULES
from .suite import (
    TUNE_SEED_OFFSET,
    check_experiment,
    check_grid,
    check_out_dir,
    check_sweep_tune,
    check_tune,
    tune_seeds,
)

__all__ = ["MAX_LR", "MAX_SEED", "UsageError", "tune_grid", "validate"]


#: Seeds go into torch generators as ``seed * 100_003 + epoch``: keep them well inside int64.
MAX_SEED = 2**31 - 1
#: A peak learning rate above this is a typo, not an experiment (SGD and AdamW diverge).
MAX_LR = 10.0


class UsageError(ValueError):
    """A command-line value that is out of range; the message names the flag and what is valid."""


def tune_grid(args: argparse.Namespace) -> dict[str, list[float]]:
    """The ``--tune`` flags as ``{name: values}``; a name given twice is a UsageError."""
    grid: dict[str, list[float]] = {}
    for name, values in args.tune or []:
        if name in grid:
            raise UsageError(f"--tune {name} is given twice; give each name once")
        grid[name] = values
    return grid


def _check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise UsageError(
            f"--device {device!r} is not a device; valid: cpu, cuda, cuda:N, mps"
        ) from err
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {device}: CUDA is not available here (torch {torch.__version__}); "
                "valid: cpu"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise UsageError(
                f"--device {device}: there are {count} CUDA device(s); valid: cuda:0 to "
                f"cuda:{count - 1}"
            )
        return
    if parsed.type == "mps" and torch.backends.mps.is_available():
        return
    raise UsageError(f"--device {device!r} is not available here; valid: cpu")


def _check_whole(flag: str, value: int | None, low: int, high: int | None = None) -> None:
    if value is None:
        return
    if value < low or (high is not None and value > high):
        valid = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise UsageError(f"{flag} must be a whole number {valid}, got {value}")


def _check_unique(flag: str, values: Sequence[object]) -> None:
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise UsageError(
            f"{flag} {','.join(map(str, values))} names {', '.join(map(str, repeated))} more "
            "than once; each must be given once"
        )


def _check_data_dir(data_dir: Path | None) -> None:
    if data_dir is not None and not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir} is not a directory; it must be an existing one")


def validate(command: str, args: argparse.Namespace) -> None:
    """Every option of ``command`` checked before anything is loaded, trained or written."""
    if command in ("compare", "sweep"):
        _check_whole("--seeds", args.seeds, 1, MAX_SEED + 1)
        _check_whole("--seed0", args.seed0, 0, MAX_SEED - args.seeds + 1)
        _check_whole("--epochs", args.epochs, 1)
        _check_whole("--subset", args.subset, 10)  # fewer cannot be split 90/10 into batches
        _check_whole("--jobs", args.jobs, 1)
        if args.lr is not None and not (0.0 < args.lr <= MAX_LR):  # NaN fails this too
            raise UsageError(
                f"--lr: lr must be a positive number, got {args.lr}; valid: (0, {MAX_LR:g}]"
            )
        if args.schedule is not None and args.schedule not in SCHEDULES:
            raise UsageError(
                f"--schedule: unknown schedule {args.schedule!r}; valid: {', '.join(SCHEDULES)}"
            )
        _check_device(args.device)
        _check_data_dir(args.data_dir)
        _check_whole("--tune-seeds", args.tune_seeds, 1)
        if args.saved is None and args.experiment not in EXPERIMENTS:
            raise UsageError(
                f"--experiment {args.experiment!r}: unknown experiment; valid: "
                f"{', '.join(EXPERIMENTS)} (or one a plugin registers: --plugins MODULE)"
            )
        check_experiment(_base_experiment(args))
        if args.tune:
            tune_seeds(args.seed_list, args.tune_seeds)
            last = TUNE_SEED_OFFSET + args.seed0 + args.tune_seeds - 1
            if last > MAX_SEED:
                raise UsageError(
                    f"--tune-seeds {args.tune_seeds} with --seed0 {args.seed0}: the last tune "
                    f"seed {last} is above {MAX_SEED}; use a smaller --seed0 or --tune-seeds"
                )
        if args.out is not None:
            check_out_dir(args.out)
    if command == "compare":
        if not args.methods:
            raise UsageError(f"--methods is empty; valid: one or more of {', '.join(METHODS)}")
        unknown = [m for m in args.methods if m not in METHODS]
        if unknown:
            raise UsageError(
                f"--methods: unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}"
            )
        _check_unique("--methods", args.methods)
        check_tune(tune_grid(args), args.methods, _base_experiment(args))
    if command == "sweep":
        check_grid({"p": args.p, "pg": args.pg, "tau": args.tau}, _base_experiment(args))
        check_sweep_tune(tune_grid(args))
    if command == "uncertainty":
        bad = [t for t in args.samples if t < 1]
        if not args.samples or bad:
            raise UsageError(
                f"--samples must be whole numbers >= 1, got {','.join(map(str, args.samples))}"
            )
        _check_whole("--examples", args.examples, 1)
    if command == "robustness":
        _check_whole("--examples", args.examples, 0)
        _check_whole("--seed", args.seed, 0, MAX_SEED)
        _check_whole("--eot", args.eot, 0)
        _check_whole("--mc-samples", args.mc_samples, 1)
    if command in ("uncertainty", "robustness"):
        _check_whole("--batch-size", args.batch_size, 1)
        _check_device(args.device)
        _check_data_dir(args.data_dir)


def _base_experiment(args: argparse.Namespace) -> Experiment:
    """The experiment before ``--epochs``/``--lr``/``--schedule``: the registered one, or the
    one a resumed run's config.json records (already with them)."""
    return args.saved.experiment if args.saved is not None else get_experiment(args.experiment)
