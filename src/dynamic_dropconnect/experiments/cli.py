"""The ``ddc`` command: compare, synthetic, sweep, report, uncertainty, list, data.

``ddc`` with no arguments runs the embedded default comparison (digits-mlp, the main methods,
3 seeds) in a couple of minutes on a laptop CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .config import DEFAULT_EXPERIMENT, EXPERIMENTS, Experiment, get_experiment
from .datasets import DATASETS, DatasetError, dataset_status, fetch_dataset, verify_dataset
from .methods import MAIN_METHODS, METHODS
from .schedules import SCHEDULES
from .suite import (
    TUNE_NAMES,
    TUNE_SCORE,
    TUNE_SEED_OFFSET,
    Interrupted,
    RunDirError,
    RunOptions,
    RunsFailedError,
    check_grid,
    check_out_dir,
    check_sweep_tune,
    check_tune,
    compare,
    shortened,
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


def _add_run_options(parser: argparse.ArgumentParser, seeds: int) -> None:
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, choices=sorted(EXPERIMENTS))
    parser.add_argument("--seeds", type=int, default=seeds, help="number of seeds")
    parser.add_argument("--seed0", type=int, default=0, help="first seed")
    parser.add_argument("--epochs", type=int, help="override the experiment's epochs")
    parser.add_argument("--subset", type=int, help="use at most N examples per split")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (or cuda:N)")
    parser.add_argument("--data-dir", type=Path, help="look here first for dataset files")
    parser.add_argument("--out", type=Path, help="run directory (default runs/<name>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once, in worker processes that share the CPU threads (default 1)",
    )
    parser.add_argument(
        "--lr", type=float, help="override the experiment's peak learning rate (same schedule)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="train through torch.compile (inductor, drawing eager's masks); compiled once per "
        "run, recorded, --resume keeps it (speed: benchmarks/epoch_speed.py)",
    )
    parser.add_argument(
        "--schedule",
        help=f"learning-rate schedule, one of {', '.join(SCHEDULES)} (default: the "
        "experiment's; 'authors' for the paper's experiments)",
    )
    parser.add_argument(
        "--tune",
        action="append",
        type=_tune_flag,
        metavar="NAME=V1,V2,...",
        help=f"tune NAME per method on the validation split before the evaluation seeds "
        f"(repeatable; names: {', '.join(TUNE_NAMES)}; a name a method does not take is "
        f"skipped for it). Score: {TUNE_SCORE}",
    )
    parser.add_argument(
        "--tune-seeds",
        type=int,
        default=2,
        help=f"seeds per grid point (default 2): {TUNE_SEED_OFFSET}+seed0 on, never the "
        "evaluation seeds",
    )


def _add_evaluation_options(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """The options every evaluation of a run directory's models takes (uncertainty,
    robustness)."""
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--batch-size", type=int, default=batch_size, help="examples per chunk")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("compare", help="train methods x seeds, write table and plots")
    _add_run_options(p, seeds=3)
    p.add_argument(
        "--methods",
        type=lambda t: _csv(str, t),
        default=list(MAIN_METHODS),
        help=f"comma-separated, from: {', '.join(METHODS)}",
    )

    p = sub.add_parser("sweep", help="grid over DDC's p, pg, tau with heatmaps")
    _add_run_options(p, seeds=1)
    for name, default in (("p", "0.1,0.2,0.3,0.4"), ("pg", "0.25,0.5,0.75"), ("tau", "0.5")):
        p.add_argument(f"--{name}", type=lambda t: _csv(float, t), default=_csv(float, default))
    p.add_argument(
        "--no-matched",
        action="store_true",
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

    sub.add_parser("list", help="experiments, methods, datasets (and whether present)")

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
    print("Datasets:")
    for name in DATASETS:
        statuses = dataset_status(name)
        ok = all(s.ok for s in statuses)
        print(f"  {name:<14} {'present' if ok else 'missing'}")


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
        if args.tune:
            tune_seeds(_seeds(args), args.tune_seeds)
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
        check_tune(_tune_grid(args), args.methods, get_experiment(args.experiment))
    if command == "sweep":
        check_grid({"p": args.p, "pg": args.pg, "tau": args.tau}, get_experiment(args.experiment))
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


def _experiment(args: argparse.Namespace) -> Experiment:
    """The chosen experiment with ``--epochs``/``--lr``/``--schedule`` applied; says what
    changed."""
    full = get_experiment(args.experiment)
    experiment = shortened(full, args.epochs)
    if args.lr is not None:
        experiment = experiment.with_lr(args.lr)
        print(f"{full.name}: peak lr {experiment.lr:g} instead of the experiment's {full.lr:g}")
    if args.schedule is not None:
        experiment = experiment.with_schedule(args.schedule)
    if experiment.epochs != full.epochs:
        print(
            f"{full.name}: {experiment.epochs} of the experiment's {full.epochs} epochs; "
            f"warmup scaled {full.warmup} -> {experiment.warmup}, same schedule shape"
        )
    print(f"{full.name}: {experiment.describe_schedule()}")
    return experiment


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    command = args.command or "compare"
    if args.command is None:  # `ddc` alone: the embedded default comparison
        args = _parser().parse_args(["compare"])
    try:
        _validate(command, args)
        if command in ("compare", "sweep"):
            experiment = _experiment(args)
            options = RunOptions(
                device=args.device,
                data_dir=args.data_dir,
                subset=args.subset,
                resume=args.resume,
                progress=not args.quiet,
                jobs=args.jobs,
                compile=args.compile,
            )
        if command == "compare":
            out = args.out or _default_out(experiment.name)
            path = compare(
                experiment,
                args.methods,
                _seeds(args),
                out,
                options,
                tune=_tune_grid(args),
                tune_seed_count=args.tune_seeds,
            )
            print(path.read_text())
            print(f"Written: {path}")
        elif command == "sweep":
            out = args.out or _default_out(f"sweep-{experiment.name}")
            grid = {"p": args.p, "pg": args.pg, "tau": args.tau}
            path = sweep(
                experiment,
                grid,
                _seeds(args),
                out,
                options,
                matched=not args.no_matched,
                tune=_tune_grid(args),
                tune_seed_count=args.tune_seeds,
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
