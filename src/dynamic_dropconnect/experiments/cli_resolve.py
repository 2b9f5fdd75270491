"""What ``ddc compare``/``ddc sweep`` run, settled from the command line (:mod:`.cli` calls
it): the plugins, the ``--config`` file and its ``[run]`` table, the seeds, and with ``--resume``
the run directory's config.json, which flags may not change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_checks import UsageError, tune_grid
from .config import Experiment, get_experiment
from .overrides import ConfigFile, load_config_file, resolve
from .plugins import load_plugins
from .storage import read_json_file
from .suite import SavedRun, check_out_dir, describe_tune, saved_run, tune_seeds

__all__ = ["load_run_plugins", "resolve_run", "resolved_experiment"]


def _seeds(args: argparse.Namespace) -> list[int]:
    return list(range(args.seed0, args.seed0 + args.seeds))


def _resume_differences(
    command: str, args: argparse.Namespace, given: set[str], saved: SavedRun
) -> list[str]:
    """``"--flag: the run's value -> the given value"`` for each flag given that would
    change the saved run."""
    experiment = saved.experiment
    asked: dict[str, tuple[str, object, object]] = {
        "experiment": ("--experiment", experiment.name, args.experiment),
        "epochs": ("--epochs", experiment.epochs, args.epochs),
        "lr": ("--lr", experiment.lr, args.lr),
        "schedule": ("--schedule", experiment.schedule, args.schedule),
        "subset": ("--subset", saved.subset, args.subset),
        "compile": ("--compile", saved.compile, args.compile),
        "plugins": ("--plugins", ",".join(sorted(saved.plugins)), ",".join(sorted(args.plugins))),
    }
    if command == "sweep" and saved.grid is not None:
        for name in ("p", "pg", "tau"):
            asked[name] = (f"--{name}", saved.grid.get(name), getattr(args, name))
        asked["no_matched"] = ("--no-matched", not saved.matched, args.no_matched)
    out = [
        f"{flag}: {old!r} -> {new!r}"
        for dest, (flag, old, new) in asked.items()
        if dest in given and old != new
    ]
    if "config" in given or "set" in given:
        changed = resolve(experiment, args.config_file, args.set or []).experiment
        out += [
            f"--config/--set {key}: {old!r} -> {new!r}"
            for key, (old, new) in changed.differences(experiment.to_dict()).items()
        ]
    if "tune" in given or "tune_seeds" in given:
        grid = tune_grid(args) if "tune" in given else saved.tune
        count = args.tune_seeds if "tune_seeds" in given else len(saved.tune_seeds) or 2
        if grid != saved.tune or (grid and count != len(saved.tune_seeds)):
            try:
                seeds: list[int] | str = tune_seeds(list(saved.seeds), count) if grid else []
            except ValueError:
                seeds = f"{count} seed(s)"
            old = describe_tune(saved.tune, saved.tune_seeds)
            out.append(f"--tune: {old} -> {describe_tune(grid, seeds)}")  # type: ignore[arg-type]
    return out


def resolve_run(command: str, args: argparse.Namespace, given: set[str]) -> None:
    """Import the plugins and settle what compare/sweep runs: from the flags, or with
    ``--resume`` of a run directory, from its config.json (flags that would change that run
    are a UsageError naming them). Sets ``args.saved`` and ``args.seed_list``."""
    args.plugins = load_plugins(args.plugins)
    args.saved = None
    args.config_file = load_config_file(args.config) if args.config else None
    if args.config_file is not None:
        if args.config_file.experiment and "experiment" not in given:
            args.experiment = args.config_file.experiment
        for key, value in args.config_file.run.items():  # the file's [run]: below the flags
            if key not in given:
                setattr(args, key, value)
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out DIR: the run directory to continue")
    if args.resume and check_out_dir(args.out):
        saved = saved_run(args.out)
        if saved.command != command:
            raise UsageError(
                f"--resume: {args.out} holds a `ddc {saved.command}` run; continue it with "
                f"`ddc {saved.command} --out {args.out} --resume`"
            )
        load_plugins(saved.plugins)
        differing = _resume_differences(command, args, given, saved)
        if differing:
            raise UsageError(
                f"--resume of {args.out} with a different configuration or protocol: "
                f"{'; '.join(differing)} "
                f"(the run's value, as {args.out / 'config.json'} records it -> the given one). "
                "Leave these flags out to continue the run as it was started, or choose "
                "another --out"
            )
        args.saved = saved
        args.experiment = saved.experiment.name
        args.epochs = args.lr = args.schedule = None  # saved.experiment has them already
        args.subset, args.compile, args.plugins = saved.subset, saved.compile, list(saved.plugins)
        args.tune = list(saved.tune.items()) or None
        args.tune_seeds = len(saved.tune_seeds) or 2
        if "device" not in given:
            args.device = saved.device
        if command == "compare" and "methods" not in given:
            args.methods = list(saved.methods)  # given: they are added to the run
        if command == "sweep" and saved.grid is not None:
            args.p, args.pg, args.tau = (saved.grid[k] for k in ("p", "pg", "tau"))
            args.no_matched = not saved.matched
        if "seeds" not in given and "seed0" not in given:
            args.seed_list = list(saved.seeds)
            args.seeds, args.seed0 = len(saved.seeds), min(saved.seeds)
            return
        args.seeds = args.seeds if "seeds" in given else len(saved.seeds)
        args.seed0 = args.seed0 if "seed0" in given else min(saved.seeds)
    args.seed_list = _seeds(args)


def load_run_plugins(run_dir: Path) -> None:
    """The plugins a run directory's config.json records (its models may be a plugin's)."""
    config_path = run_dir / "config.json"
    plugins = read_json_file(config_path).get("plugins") if config_path.exists() else None
    load_plugins(plugins or [])


def resolved_experiment(args: argparse.Namespace) -> tuple[Experiment, dict[str, object]]:
    """The chosen experiment with ``--config``, ``--epochs``/``--lr``/``--schedule`` and
    ``--set`` applied (in that order; see :func:`.overrides.resolve`), and what config.json
    records of them; says what changed."""
    config: ConfigFile | None = args.config_file
    resolved = resolve(
        args.experiment,
        config,
        args.set or [],
        flags={"epochs": args.epochs, "lr": args.lr, "schedule": args.schedule},
    )
    full, experiment = get_experiment(args.experiment), resolved.experiment
    if experiment.lr != full.lr:
        print(f"{full.name}: peak lr {experiment.lr:g} instead of the experiment's {full.lr:g}")
    if experiment.epochs != full.epochs:
        print(
            f"{full.name}: {experiment.epochs} of the experiment's {full.epochs} epochs; "
            f"warmup {full.warmup} -> {experiment.warmup}, same schedule shape"
        )
    others = {k: v for k, v in resolved.overrides.items() if k not in ("lr", "epochs")}
    if others:
        print(f"{full.name}: " + ", ".join(f"{k}={v!r}" for k, v in others.items()))
    print(f"{full.name}: {experiment.describe_schedule()}")
    described = resolved.describe()
    record = {k: described[k] for k in ("base_experiment", "overrides", "override_sources")}
    return experiment, record
