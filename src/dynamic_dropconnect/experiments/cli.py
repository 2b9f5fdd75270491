"""The ``ddc`` command: compare, synthetic, sweep, report, uncertainty, list, data.

``ddc`` with no arguments runs the embedded default comparison (digits-mlp, the main methods,
3 seeds) in a couple of minutes on a laptop CPU. ``ddc compare --out DIR --resume`` continues
the run in DIR as its config.json records it; ``--plugins MODULE`` adds your own models, data,
methods and experiments (docs/suite.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .config import DEFAULT_EXPERIMENT, EXPERIMENTS, Experiment, get_experiment
from .datasets import DATASETS, DatasetError, dataset_status, fetch_dataset, verify_dataset
from .datasets.registry import LOADERS
from .storage import read_json_file
from .methods import MAIN_METHODS, METHODS
from .models import MODELS
from .overrides import ConfigFile, load_config_file, resolve, valid_keys
from .plugins import load_plugins
from .schedules import SCHEDULES
from .suite import (
    TUNE_NAMES,
    TUNE_SCORE,
    TUNE_SEED_OFFSET,
    Interrupted,
    RunDirError,
    RunOptions,
    RunsFailedError,
    SavedRun,
    check_experiment,
    check_grid,
    check_out_dir,
    check_sweep_tune,
    check_tune,
    compare,
    describe_tune,
    saved_run,
    sweep,
    tune_seeds,
)

__all__ = ["main"]


def _csv(kind: type, text: str) -> list:
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated {kind.__name__}s: {text!r}"
        ) from err


def _tune_flag(text: str) -> tuple[str, list[float]]:
    """``NAME=V1,V2,...`` of ``--tune``."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(
            f"expected NAME=V1,V2,... (NAME one of {', '.join(TUNE_NAMES)}), got {text!r}"
        )
    return name.strip(), _csv(float, values)


def _tune_grid(args: argparse.Namespace) -> dict[str, list[float]]:
    """The ``--tune`` flags as ``{name: values}``; a name given twice is a UsageError."""
    grid: dict[str, list[float]] = {}
    for name, values in args.tune or []:
        if name in grid:
            raise UsageError(f"--tune {name} is given twice; give each name once")
        grid[name] = values
    return grid


def _default_out(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _seeds(args: argparse.Namespace) -> list[int]:
    return list(range(args.seed0, args.seed0 + args.seeds))


def _add_run_options(
    parser: argparse.ArgumentParser, seeds: int, default: Callable[[object], object]
) -> None:
    """The options of compare and sweep; ``default(value)`` is each one's default (see
    :func:`_parser`)."""
    parser.add_argument(
        "--experiment",
        default=default(DEFAULT_EXPERIMENT),
        help=f"one of {', '.join(sorted(EXPERIMENTS))}, or one a plugin registers (default "
        f"{DEFAULT_EXPERIMENT})",
    )
    parser.add_argument("--seeds", type=int, default=default(seeds), help="number of seeds")
    parser.add_argument("--seed0", type=int, default=default(0), help="first seed")
    parser.add_argument(
        "--epochs", type=int, default=default(None), help="override the experiment's epochs"
    )
    parser.add_argument(
        "--subset", type=int, default=default(None), help="use at most N examples per split"
    )
    parser.add_argument("--device", default=default("cpu"), help="cpu or cuda (or cuda:N)")
    parser.add_argument(
        "--data-dir", type=Path, default=default(None), help="look here first for dataset files"
    )
    parser.add_argument(
        "--out", type=Path, default=default(None), help="run directory (default runs/<name>-<time>)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        default=default(False),
        help="continue the run in --out as its config.json records it (flags that would "
        "change it are refused; --methods/--seeds may add runs)",
    )
    parser.add_argument(
        "--quiet", action="store_true", default=default(False), help="no progress bars"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=default(1),
        help="runs at once, in worker processes that share the CPU threads (default 1)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=default(None),
        help="override the experiment's peak learning rate (same schedule)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        default=default(False),
        help="train through torch.compile (inductor, drawing eager's masks); compiled once per "
        "run, recorded, --resume keeps it (speed: benchmarks/epoch_speed.py)",
    )
    parser.add_argument(
        "--schedule",
        default=default(None),
        help=f"learning-rate schedule, one of {', '.join(SCHEDULES)} (default: the "
        "experiment's; 'authors' for the paper's experiments)",
    )
    parser.add_argument(
        "--tune",
        action="append",
        type=_tune_flag,
        default=default(None),
        metavar="NAME=V1,V2,...",
        help=f"tune NAME per method on the validation split before the evaluation seeds "
        f"(repeatable; names: {', '.join(TUNE_NAMES)}; a name a method does not take is "
        f"skipped for it). Score: {TUNE_SCORE}",
    )
    parser.add_argument(
        "--tune-seeds",
        type=int,
        default=default(2),
        help=f"seeds per grid point (default 2): {TUNE_SEED_OFFSET}+seed0 on, never the "
        "evaluation seeds",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=default(None),
        metavar="FILE.toml",
        help="an experiment file: any experiment field, [optimizer], [model], [methods.NAME] "
        "options and a [run] table (methods, seeds, seed0, subset, jobs, compile); flags "
        "given on the command line win (docs/suite.md)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=default(None),
        metavar="KEY=VALUE",
        help="override one setting, after --config and the flags (repeatable; e.g. "
        f"ddc.p=0.2, optimizer.weight_decay=0); keys: {', '.join(valid_keys())}",
    )
    _add_plugins_option(parser, default)


def _add_plugins_option(
    parser: argparse.ArgumentParser, default: Callable[[object], object]
) -> None:
    parser.add_argument(
        "--plugins",
        type=lambda t: _csv(str, t),
        default=default([]),
        metavar="MODULE[,MODULE]",
        help="import these modules first: they register your own models, datasets, methods "
        "and experiments (docs/suite.md); recorded, so --resume and --jobs workers import them",
    )


def _add_evaluation_options(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """The options every evaluation of a run directory's models takes (uncertainty,
    robustness)."""
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--batch-size", type=int, default=batch_size, help="examples per chunk")


def _parser(given_only: bool = False) -> argparse.ArgumentParser:
    """The ``ddc`` parser. ``given_only``: compare and sweep options have no defaults, so
    parsing gives exactly the flags given (what ``--resume`` compares with config.json)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if given_only else value

    parser = argparse.ArgumentParser(
        prog="ddc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("compare", help="train methods x seeds, write table and plots")
    _add_run_options(p, seeds=3, default=default)
    p.add_argument(
        "--methods",
        type=lambda t: _csv(str, t),
        default=default(list(MAIN_METHODS)),
        help=f"comma-separated, from: {', '.join(METHODS)} (or a plugin's)",
    )

    p = sub.add_parser("sweep", help="grid over DDC's p, pg, tau with heatmaps")
    _add_run_options(p, seeds=1, default=default)
    for name, values in (("p", "0.1,0.2,0.3,0.4"), ("pg", "0.25,0.5,0.75"), ("tau", "0.5")):
        p.add_argument(
            f"--{name}", type=lambda t: _csv(float, t), default=default(_csv(float, values))
        )
    p.add_argument(
        "--no-matched",
        action="store_true",
        default=default(False),
        help="skip DropConnect at each cell's measured mean drop rate",
    )

    p = sub.add_parser("synthetic", help="the paper's Figure 1 (2-D linear regression)")
    p.add_argument("--out", type=Path, default=Path("runs") / "synthetic")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("report", help="re-render table and plots of a run directory")
    p.add_argument("run_dir", type=Path)

    p = sub.add_parser(
        "uncertainty",
        help="MC calibration (NLL, ECE, Brier) and OOD detection of a run directory's models",
    )
    _add_evaluation_options(p, batch_size=2000)
    p.add_argument(
        "--samples",
        type=lambda t: _csv(int, t),
        default=[1, 5, 10, 30, 100],
        help="numbers of stochastic passes T (default 1,5,10,30,100)",
    )
    p.add_argument("--no-ood", action="store_true", help="skip out-of-distribution detection")
    p.add_argument(
        "--examples",
        type=int,
        help="evaluate on the first N test (and N out-of-distribution) examples only",
    )

    p = sub.add_parser(
        "robustness",
        help="accuracy under corruptions, FGSM/PGD attacks and edge removal of a run's models",
    )
    _add_evaluation_options(p, batch_size=500)
    p.add_argument(
        "--parts",
        type=lambda t: _csv(str, t),
        default=["corruptions", "adversarial", "pruning"],
        help="comma-separated, from: corruptions, adversarial, pruning (sequence experiments: "
        "pruning only)",
    )
    p.add_argument("--examples", type=int, default=1000, help="first N test examples (0: all)")
    p.add_argument("--seed", type=int, default=0, help="corruptions, PGD start, random pruning")
    p.add_argument(
        "--eot",
        type=int,
        default=0,
        help="also attack the MC-averaged network: PGD with N mask draws per step (EOT; N "
        "times PGD's cost; default 0: off)",
    )
    p.add_argument("--mc-samples", type=int, default=30, help="passes of the MC prediction")

    p = sub.add_parser("list", help="experiments, methods, models, datasets (and whether present)")
    _add_plugins_option(p, lambda value: value)

    p = sub.add_parser("data", help="list, fetch or verify datasets")
    p.add_argument("action", choices=["list", "fetch", "verify"])
    p.add_argument("names", nargs="*", help="datasets (default: all)")
    p.add_argument("--data-dir", type=Path)
    return parser


def _list() -> None:
    print("Experiments:")
    for e in EXPERIMENTS.values():
        print(
            f"  {e.name:<26} {e.dataset:<14} {e.model:<12} epochs {e.epochs:<4} lr {e.lr:<7} "
            f"wd {e.weight_decay:<7} warmup {e.warmup:<3} schedule {e.schedule:<8} ({e.source})"
        )
    print("Methods:")
    for m in METHODS.values():
        print(f"  {m.name:<18} {m.description}")
    print("Models:")
    print("  " + ", ".join(MODELS))
    print("Datasets:")
    for name, loader in LOADERS.items():
        if name in DATASETS:
            ok = all(s.ok for s in dataset_status(name))
            print(f"  {name:<14} {'present' if ok else 'missing'}")
        elif not name.endswith(":"):
            print(f"  {name:<14} registered ({loader.description or 'a plugin'})")
    for name, loader in LOADERS.items():
        if name.endswith(":"):
            print(f"  {name + 'PATH':<14} {loader.description}")


def _data(action: str, names: list[str], data_dir: Path | None) -> int:
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        print(
            f"unknown dataset(s) {', '.join(unknown)}; valid: {', '.join(DATASETS)}",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for name in names or list(DATASETS):
        try:
            if action == "fetch":
                print(f"{name}: {fetch_dataset(name, data_dir)}")
                continue
            statuses = (
                verify_dataset(name, data_dir)
                if action == "verify"
                else dataset_status(name, data_dir)
            )
            for s in statuses:
                print(f"{name:<14} {s.name:<48} {s.status:<8} {s.path or ''}")
                failed += not s.ok
        except DatasetError as err:
            print(f"{name}: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed and action != "list" else 0


#: Seeds go into torch generators as ``seed * 100_003 + epoch``: keep them well inside int64.
MAX_SEED = 2**31 - 1
#: A peak learning rate above this is a typo, not an experiment (SGD and AdamW diverge).
MAX_LR = 10.0


class UsageError(ValueError):
    """A command-line value that is out of range; the message names the flag and what is valid."""


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


def _validate(command: str, args: argparse.Namespace) -> None:
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
        check_tune(_tune_grid(args), args.methods, _base_experiment(args))
    if command == "sweep":
        check_grid({"p": args.p, "pg": args.pg, "tau": args.tau}, _base_experiment(args))
        check_sweep_tune(_tune_grid(args))
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


def _given(argv: Sequence[str]) -> set[str]:
    """The options given on the command line ``argv`` (argparse ``dest`` names)."""
    return set(vars(_parser(given_only=True).parse_args(list(argv)))) - {"command"}


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
        grid = _tune_grid(args) if "tune" in given else saved.tune
        count = args.tune_seeds if "tune_seeds" in given else len(saved.tune_seeds) or 2
        if grid != saved.tune or (grid and count != len(saved.tune_seeds)):
            try:
                seeds: list[int] | str = tune_seeds(list(saved.seeds), count) if grid else []
            except ValueError:
                seeds = f"{count} seed(s)"
            old = describe_tune(saved.tune, saved.tune_seeds)
            out.append(f"--tune: {old} -> {describe_tune(grid, seeds)}")  # type: ignore[arg-type]
    return out


def _resolve_run(command: str, args: argparse.Namespace, given: set[str]) -> None:
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


def _load_run_plugins(run_dir: Path) -> None:
    """The plugins a run directory's config.json records (its models may be a plugin's)."""
    config_path = run_dir / "config.json"
    plugins = read_json_file(config_path).get("plugins") if config_path.exists() else None
    load_plugins(plugins or [])


def _experiment(args: argparse.Namespace) -> tuple[Experiment, dict[str, object]]:
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = _parser().parse_args(argv)
    command = args.command or "compare"
    if args.command is None:  # `ddc` alone: the embedded default comparison
        argv = ["compare"]
        args = _parser().parse_args(argv)
    try:
        if command in ("compare", "sweep"):
            _resolve_run(command, args, _given(argv))
        elif command == "list":
            load_plugins(args.plugins)
        elif command in ("uncertainty", "robustness"):
            _load_run_plugins(args.run_dir)
        _validate(command, args)
        if command in ("compare", "sweep"):
            record: dict[str, object] = {}
            if args.saved is not None:
                experiment = args.saved.experiment
                print(
                    f"{args.out}: continuing the {command} of {experiment.name} that "
                    f"{args.out / 'config.json'} records; {experiment.describe_schedule()}"
                )
            else:
                experiment, record = _experiment(args)
            options = RunOptions(
                device=args.device,
                data_dir=args.data_dir,
                subset=args.subset,
                resume=args.resume,
                progress=not args.quiet,
                jobs=args.jobs,
                compile=args.compile,
                plugins=tuple(args.plugins),
            )
        if command == "compare":
            out = args.out or _default_out(experiment.name)
            path = compare(
                experiment,
                args.methods,
                args.seed_list,
                out,
                options,
                tune=_tune_grid(args),
                tune_seed_count=args.tune_seeds,
                record=record,
            )
            print(path.read_text())
            print(f"Written: {path}")
        elif command == "sweep":
            out = args.out or _default_out(f"sweep-{experiment.name}")
            grid = {"p": args.p, "pg": args.pg, "tau": args.tau}
            path = sweep(
                experiment,
                grid,
                args.seed_list,
                out,
                options,
                matched=not args.no_matched,
                tune=_tune_grid(args),
                tune_seed_count=args.tune_seeds,
                record=record,
            )
            print((path.parent / "sweep.md").read_text())
            print(f"Written: {path}, sweep.md and heatmaps in {path.parent / 'plots'}")
        elif command == "synthetic":
            from .synthetic import run_synthetic

            summary = run_synthetic(args.out, seed=args.seed)
            print(f"Written: {args.out / 'figure1.png'} and {args.out / 'synthetic.json'}")
            for init, check in summary.get("checks", {}).items():
                finals = {m: summary["losses"][m][init]["final_mean"] for m in summary["losses"]}
                print(
                    f"init ({init}): mean final loss "
                    + ", ".join(f"{m} {v:.3f}" for m, v in finals.items())
                    + f"; ranking {' < '.join(check['ranking_by_final_loss'])}"
                )
        elif command == "report":
            from .report import write_report

            if not (args.run_dir / "config.json").exists():
                print(f"{args.run_dir} is not a run directory (no config.json)", file=sys.stderr)
                return 2
            print(write_report(args.run_dir).read_text())
        elif command == "uncertainty":
            from .uncertainty import evaluate_run

            path = evaluate_run(
                args.run_dir,
                t_values=args.samples,
                ood=not args.no_ood,
                device=args.device,
                data_dir=args.data_dir,
                batch_size=args.batch_size,
                examples=args.examples,
            )
            print(path.read_text())
            print(f"Written: {path}")
        elif command == "robustness":
            from .robustness import evaluate_run as robustness_run

            path = robustness_run(
                args.run_dir,
                parts=args.parts,
                examples=args.examples or None,
                seed=args.seed,
                device=args.device,
                data_dir=args.data_dir,
                batch_size=args.batch_size,
                eot=args.eot,
                mc_samples=args.mc_samples,
            )
            print(path.read_text())
            print(f"Written: {path}")
        elif command == "list":
            _list()
        elif command == "data":
            return _data(args.action, args.names, args.data_dir)
    except Interrupted as stop:
        print(
            f"ddc {command}: {stop}; the runs were stopped (finished epochs are kept: continue "
            "with --resume)",
            file=sys.stderr,
        )
        return 128 + stop.signum
    except (RunDirError, RunsFailedError, DatasetError, ValueError, OSError) as err:
        # OSError: a directory that cannot be created or written (permissions, disk full);
        # its message names the path.
        print(f"ddc {command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
