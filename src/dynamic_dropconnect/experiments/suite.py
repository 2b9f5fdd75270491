"""Running many trainings: method × seed comparisons and hyperparameter sweeps.

Layout of a run directory (every file written atomically)::

    RUN_DIR/config.json                        resolved configuration
    RUN_DIR/runs/<method>/seed<k>/metrics.csv  per-epoch losses, accuracies, lr, drop statistics
    RUN_DIR/runs/<method>/seed<k>/result.json  accuracies at best-val / final / max epoch
    RUN_DIR/runs/<method>/seed<k>/checkpoint.pt last finished epoch, for --resume
    RUN_DIR/results.json, results.md, plots/   written by :func:`report.write_report`
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from .config import Experiment
from .io import atomic_write_json
from .methods import METHODS
from .report import plot_sweep_heatmap, write_report
from .training import PreparedData, RunSpec, prepare_data, train_run

__all__ = ["RunDirError", "RunOptions", "compare", "shortened", "sweep"]


class RunDirError(RuntimeError):
    """A run directory that would be overwritten, or a resume that does not match."""


def _open_run_dir(out: Path, config: dict[str, Any], resume: bool) -> None:
    config_path = out / "config.json"
    if config_path.exists():
        if not resume:
            raise RunDirError(
                f"{out} already holds a run; pass --resume to continue it or choose another --out"
            )
        previous = json.loads(config_path.read_text())
        keys = ("experiment", "epochs", "subset", "hyperparameters")
        changed = [k for k in keys if previous.get(k) != config.get(k)]
        if changed:
            raise RunDirError(
                f"--resume with a different configuration ({', '.join(changed)}) than {config_path}"
            )
        config = {
            **config,
            "methods": list(dict.fromkeys(previous["methods"] + config["methods"])),
            "seeds": sorted(set(previous["seeds"]) | set(config["seeds"])),
        }
    atomic_write_json(config_path, config)


@dataclass(frozen=True)
class RunOptions:
    """How runs are executed, shared by :func:`compare` and :func:`sweep`."""

    device: str = "cpu"
    data_dir: str | Path | None = None
    subset: int | None = None
    resume: bool = False
    progress: bool = True
    log: Callable[[str], None] = print


def _start(
    out: Path,
    experiment: Experiment,
    methods: Sequence[str],
    seeds: Sequence[int],
    options: RunOptions,
    hyperparameters: dict[str, list[float]] | None = None,
) -> None:
    config = {
        "experiment": experiment.name,
        "settings": experiment.to_dict(),
        "methods": list(methods),
        "seeds": list(seeds),
        "epochs": experiment.epochs,
        "subset": options.subset,
        "device": options.device,
        "hyperparameters": hyperparameters,
    }
    _open_run_dir(out, config, options.resume)


def _data(experiment: Experiment, seed: int, options: RunOptions) -> PreparedData:
    return prepare_data(
        experiment,
        seed=seed,
        data_dir=options.data_dir,
        subset=options.subset,
        device=options.device,
    )


def compare(
    experiment: Experiment,
    methods: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    options: RunOptions | None = None,
) -> Path:
    """Train every method × seed of ``experiment`` into ``out`` and write the report.

    Returns the path of ``results.md``. Seeds pair the runs: the same seed gives every method
    the same split, initial weights and batch order, so the paired test is meaningful.
    """
    options = options or RunOptions()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    out = Path(out)
    _start(out, experiment, methods, seeds, options)
    for seed in seeds:
        data = _data(experiment, seed, options)
        for method in methods:
            spec = RunSpec(experiment, method, seed, options.device)
            result = train_run(
                spec,
                out / "runs" / method / f"seed{seed}",
                data,
                resume=options.resume,
                progress=options.progress,
            )
            options.log(
                f"{experiment.name} {method:>18} seed {seed}: test acc @ best val "
                f"{100 * result['test_acc_at_best_val']:.2f}% (epoch {result['best_val_epoch']}), "
                f"final {100 * result['final_test_acc']:.2f}%"
            )
    return write_report(out)


def sweep(
    experiment: Experiment,
    grid: dict[str, Sequence[float]],
    seeds: Sequence[int],
    out: str | Path,
    options: RunOptions | None = None,
) -> Path:
    """Grid over DDC's ``p``, ``pg``, ``tau``; writes ``sweep.json`` and heatmaps.

    Parameters left out of ``grid`` keep their defaults; ``p + pg`` above 1 is clamped by
    ``p_max``. Returns the path of ``sweep.json``.
    """
    options = options or RunOptions()
    out = Path(out)
    names = ("p", "pg", "tau")
    bad = set(grid) - set(names)
    if bad:
        raise ValueError(f"sweep parameters must be among {names}, got {sorted(bad)}")
    defaults = (0.3, 0.5, 0.5)
    full = {k: list(grid.get(k, [d])) for k, d in zip(names, defaults, strict=True)}
    _start(out, experiment, ["ddc"], seeds, options, full)
    rows: list[dict[str, Any]] = []
    datasets: dict[int, PreparedData] = {}
    for p, pg, tau in product(full["p"], full["pg"], full["tau"]):
        for seed in seeds:
            if seed not in datasets:
                datasets[seed] = _data(experiment, seed, options)
            spec = RunSpec(experiment, "ddc", seed, options.device, {"p": p, "pg": pg, "tau": tau})
            run_dir = out / "grid" / f"p{p}_pg{pg}_tau{tau}" / f"seed{seed}"
            result = train_run(
                spec, run_dir, datasets[seed], resume=options.resume, progress=options.progress
            )
            rows.append(
                {
                    "p": p,
                    "pg": pg,
                    "tau": tau,
                    "seed": seed,
                    "val_acc": result["best_val_acc"],
                    "test_acc": result["test_acc_at_best_val"],
                }
            )
            options.log(
                f"p={p} pg={pg} tau={tau} seed {seed}: val "
                f"{100 * result['best_val_acc']:.2f}% test@best-val "
                f"{100 * result['test_acc_at_best_val']:.2f}%"
            )
    atomic_write_json(out / "sweep.json", rows)
    varied = [k for k in names if len(full[k]) > 1] or ["p", "pg"]
    x, y = (varied + [k for k in names if k not in varied])[:2]
    for value in ("val_acc", "test_acc"):
        plot_sweep_heatmap(rows, x, y, value, out / "plots" / f"sweep_{value}_{x}_{y}.png")
    return out / "sweep.json"


def shortened(experiment: Experiment, epochs: int | None) -> Experiment:
    """``experiment`` with ``epochs`` (warmup scaled), or unchanged for ``None``."""
    return experiment if epochs is None else experiment.with_epochs(epochs)
