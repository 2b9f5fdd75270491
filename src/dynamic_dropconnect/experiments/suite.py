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
from itertools import product
from pathlib import Path
from typing import Any

from .config import Experiment
from .io import atomic_write_json
from .methods import METHODS
from .report import plot_sweep_heatmap, write_report
from .training import PreparedData, RunSpec, prepare_data, train_run

__all__ = ["RunDirError", "compare", "shortened", "sweep"]


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


Log = Callable[[str], None]


def compare(
    experiment: Experiment,
    methods: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    *,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    subset: int | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Log = print,
) -> Path:
    """Train every method × seed of ``experiment`` into ``out`` and write the report.

    Returns the path of ``results.md``. Seeds pair the runs: the same seed gives every method
    the same split, initial weights and batch order, so the paired test is meaningful.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    out = Path(out)
    config = {
        "experiment": experiment.name,
        "settings": experiment.to_dict(),
        "methods": list(methods),
        "seeds": list(seeds),
        "epochs": experiment.epochs,
        "subset": subset,
        "device": device,
        "hyperparameters": None,
    }
    _open_run_dir(out, config, resume)
    for seed in seeds:
        data = prepare_data(experiment, seed=seed, data_dir=data_dir, subset=subset, device=device)
        for method in methods:
            spec = RunSpec(experiment, method, seed, device)
            result = train_run(
                spec, out / "runs" / method / f"seed{seed}", data, resume=resume, progress=progress
            )
            log(
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
    *,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    subset: int | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Log = print,
) -> Path:
    """Grid over DDC's ``p``, ``pg``, ``tau``; writes ``sweep.json`` and heatmaps.

    A grid point with ``p + pg`` above the clamp is still valid (``p_max`` clamps). Returns the
    path of ``sweep.json``.
    """
    out = Path(out)
    names = ("p", "pg", "tau")
    bad = set(grid) - set(names)
    if bad:
        raise ValueError(f"sweep parameters must be among {names}, got {sorted(bad)}")
    full = {
        k: list(grid.get(k, [default])) for k, default in zip(names, (0.3, 0.5, 0.5), strict=True)
    }
    config = {
        "experiment": experiment.name,
        "settings": experiment.to_dict(),
        "methods": ["ddc"],
        "seeds": list(seeds),
        "epochs": experiment.epochs,
        "subset": subset,
        "device": device,
        "hyperparameters": full,
    }
    _open_run_dir(out, config, resume)
    rows: list[dict[str, Any]] = []
    datasets: dict[int, PreparedData] = {}
    for p, pg, tau in product(full["p"], full["pg"], full["tau"]):
        for seed in seeds:
            if seed not in datasets:
                datasets[seed] = prepare_data(
                    experiment, seed=seed, data_dir=data_dir, subset=subset, device=device
                )
            spec = RunSpec(experiment, "ddc", seed, device, {"p": p, "pg": pg, "tau": tau})
            run_dir = out / "grid" / f"p{p}_pg{pg}_tau{tau}" / f"seed{seed}"
            result = train_run(spec, run_dir, datasets[seed], resume=resume, progress=progress)
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
            log(
                f"p={p} pg={pg} tau={tau} seed {seed}: val {100 * result['best_val_acc']:.2f}% "
                f"test@best-val {100 * result['test_acc_at_best_val']:.2f}%"
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
