"""The ``ddc`` command: compare, synthetic, sweep, report, uncertainty, list, data.

``ddc`` with no arguments runs the embedded default comparison (digits-mlp, the main methods,
3 seeds) in a couple of minutes on a laptop CPU. ``ddc compare --out DIR --resume`` continues
the run in DIR as its config.json records it; ``--plugins MODULE`` adds your own models, data,
methods and experiments (docs/suite.md).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .cli_checks import MAX_LR, MAX_SEED, UsageError, tune_grid, validate
from .cli_parser import build_parser, given_options
from .cli_resolve import load_run_plugins, resolve_run, resolved_experiment
from .config import EXPERIMENTS
from .datasets import DATASETS, DatasetError, dataset_status, fetch_dataset, verify_dataset
from .datasets.registry import LOADERS
from .methods import METHODS
from .models import MODELS
from .plugins import load_plugins
from .suite import Interrupted, RunDirError, RunOptions, RunsFailedError, compare, sweep

# The parser is built in cli_parser, the options are checked in cli_checks and what compare and
# sweep run is settled in cli_resolve; this module dispatches the subcommands. (The docstring
# above is `ddc --help`'s description, so the layout is told here.) UsageError and the limits
# are re-exported: they were imported from this module before the split.
__all__ = ["MAX_LR", "MAX_SEED", "UsageError", "main"]


def _default_out(prefix: str) -> Path:
    """``runs/<prefix>-<time>``: a new run directory when ``--out`` is not given."""
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _list() -> None:
    """``ddc list``: the experiments, methods, models and datasets (present or missing)."""
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
    """``ddc data list|fetch|verify``; the exit status (1 when a dataset failed)."""
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ddc`` with the arguments ``argv`` (default ``sys.argv[1:]``); the exit status."""
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = build_parser(__doc__).parse_args(argv)
    command = args.command or "compare"
    if args.command is None:  # `ddc` alone: the embedded default comparison
        argv = ["compare"]
        args = build_parser(__doc__).parse_args(argv)
    try:
        if command in ("compare", "sweep"):
            resolve_run(command, args, given_options(argv))
        elif command == "list":
            load_plugins(args.plugins)
        elif command in ("uncertainty", "robustness"):
            load_run_plugins(args.run_dir)
        validate(command, args)
        if command in ("compare", "sweep"):
            record: dict[str, object] = {}
            if args.saved is not None:
                experiment = args.saved.experiment
                print(
                    f"{args.out}: continuing the {command} of {experiment.name} that "
                    f"{args.out / 'config.json'} records; {experiment.describe_schedule()}"
                )
            else:
                experiment, record = resolved_experiment(args)
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
                tune=tune_grid(args),
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
                tune=tune_grid(args),
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
