"""The argparse parser of the ``ddc`` command (:mod:`.cli` runs it): its subcommands and
their flags, with the defaults and help texts ``ddc --help`` shows.

:func:`given_options` parses a second time without defaults, so ``--resume`` knows which
flags were given on the command line (and may not change the saved run).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import DEFAULT_EXPERIMENT, EXPERIMENTS
from .methods import MAIN_METHODS, METHODS
from .overrides import valid_keys
from .schedules import SCHEDULES
from .suite import TUNE_NAMES, TUNE_SCORE, TUNE_SEED_OFFSET

__all__ = ["build_parser", "given_options"]


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


def _add_run_options(
    parser: argparse.ArgumentParser, seeds: int, default: Callable[[object], object]
) -> None:
    """The options of compare and sweep; ``default(value)`` is each one's default (see
    :func:`build_parser`)."""
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


def build_parser(
    description: str | None = None, given_only: bool = False
) -> argparse.ArgumentParser:
    """The ``ddc`` parser; ``description`` heads its ``--help`` (cli passes its docstring).
    ``given_only``: compare and sweep options have no defaults, so parsing gives exactly the
    flags given (what ``--resume`` compares with config.json)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if given_only else value

    parser = argparse.ArgumentParser(
        prog="ddc", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
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


def given_options(argv: Sequence[str]) -> set[str]:
    """The options given on the command line ``argv`` (argparse ``dest`` names)."""
    return set(vars(build_parser(given_only=True).parse_args(list(argv)))) - {"command"}
