"""Running many trainings: method × seed comparisons and hyperparameter sweeps.

Layout of a run directory (every file written atomically)::

    RUN_DIR/config.json                        resolved configuration: all that --resume
                                               needs (read back by :func:`saved_run`)
    RUN_DIR/runs/<method>/seed<k>/metrics.csv  per-epoch losses, accuracies, lr, drop statistics
    RUN_DIR/runs/<method>/seed<k>/result.json  accuracies at best-val / final / max epoch
    RUN_DIR/runs/<method>/seed<k>/checkpoint.pt last finished epoch, for --resume
    RUN_DIR/runs/<method>/seed<k>/checkpoint.pt.sha256  its digest, checked on load
    RUN_DIR/tune/<method>/<point>/seed<k>/     --tune: the runs of every grid point (own seeds;
                                               sweep: tune/ddc/<cell>/, tune/matched/<rate>/)
    RUN_DIR/tune.json                          --tune: validation scores and the chosen points
    RUN_DIR/results.json, results.md, plots/   written by :func:`report.write_report`
    RUN_DIR/.ddc-lock                          pid and host of the ddc writing RUN_DIR

Before anything is written every option is checked, and ``--out`` must be new, empty or a run
of ours; one compare or sweep at a time holds a run directory (:mod:`.outdir`). Runs go one
after another or in worker processes (:mod:`.execution`); a run that fails is reported and
the others go on, and :class:`RunsFailedError` lists the failures after the report of the
finished runs is written. ``--tune`` and the sweep's grid checks are in :mod:`.tuning`; the
names of those modules stay importable from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from .config import Experiment
from .datasets import DatasetError, load_dataset
from .datasets.registry import find_loader
from .execution import (
    DIVERGED,
    Interrupted,
    RunOptions,
    RunsFailedError,
    Task,
    check_jobs,
    check_seeds,
    execute,
    signals_interrupt,
)
from .methods import METHODS
from .models import MODELS
from .outdir import (
    LOCK_NAME,
    RunDirError,
    SavedRun,
    check_out_dir,
    lock_run_dir,
    open_run_dir,
    saved_run,
)
from .plugins import load_plugins
from .report import (
    format_sweep_table,
    mean_drop_rate,
    plot_sweep_forest,
    plot_sweep_heatmap,
    write_report,
)
from .storage import atomic_write_json, atomic_write_text, read_json_file
from .training import RunSpec
from .tuning import (
    TUNE_NAMES,
    TUNE_SCORE,
    TUNE_SEED_OFFSET,
    check_grid,
    check_sweep_tune,
    check_tune,
    describe_tune,
    evaluation_experiment,
    grid_points,
    point_label,
    select_point,
    split_point,
    tune_config,
    tune_grid,
    tune_seeds,
    tuned_names,
)

__all__ = [
    "DIVERGED",
    "LOCK_NAME",
    "TUNE_NAMES",
    "TUNE_SCORE",
    "TUNE_SEED_OFFSET",
    "Interrupted",
    "RunDirError",
    "RunOptions",
    "RunsFailedError",
    "SavedRun",
    "check_experiment",
    "check_grid",
    "check_out_dir",
    "check_sweep_tune",
    "check_tune",
    "compare",
    "describe_tune",
    "lock_run_dir",
    "saved_run",
    "select_point",
    "shortened",
    "sweep",
    "tune_seeds",
    "tuned_names",
]


def check_experiment(experiment: Experiment) -> None:
    """``ValueError`` (``DatasetError`` for the dataset) naming what ``experiment`` uses that
    nothing registered: its model, its dataset or a method of its ``method_options`` (the
    plugin that registers it not imported?)."""
    hint = "; is the plugin that registers it imported (--plugins MODULE, docs/suite.md)?"
    if experiment.model.lower() not in MODELS:
        raise ValueError(
            f"experiment {experiment.name!r}: unknown model {experiment.model!r}; registered: "
            f"{', '.join(MODELS)}{hint}"
        )
    try:
        find_loader(experiment.dataset)
    except DatasetError as err:
        raise DatasetError(f"experiment {experiment.name!r}: {err}{hint}") from None
    unknown = [m for m in experiment.method_options if m not in METHODS]
    if unknown:
        raise ValueError(
            f"experiment {experiment.name!r}: method_options names unknown method(s) "
            f"{', '.join(unknown)}; registered: {', '.join(METHODS)}{hint}"
        )


def compare(
    experiment: Experiment,
    methods: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    options: RunOptions | None = None,
    *,
    tune: dict[str, Sequence[float]] | None = None,
    tune_seed_count: int = 2,
    record: Mapping[str, Any] | None = None,
) -> Path:
    """Train every method × seed of ``experiment`` into ``out`` and write the report.

    Returns the path of ``results.md``. Seeds pair the runs: the same seed gives every method
    the same split, initial weights and batch order, so the paired test is meaningful. With
    ``options.jobs > 1`` the runs go in parallel worker processes. When runs fail, the report of
    the others is still written and :class:`RunsFailedError` is raised.

    With ``tune`` (``{name: values}``, see :data:`TUNE_NAMES`) every method first trains every
    point of its grid (the product over the names it takes) on ``tune_seed_count`` tune seeds
    of its own (:func:`tune_seeds`, disjoint from ``seeds``) under ``out/tune/``; the point
    with the best validation score (:data:`TUNE_SCORE`; the test split is never read) is then
    trained on ``seeds``. ``tune.json`` holds the grid, its scores and the choices.

    ``record``: more keys for config.json (the CLI's ``--config``/``--set`` provenance, see
    :func:`.overrides.describe`); kept when the run is resumed without them.
    """
    options = options or RunOptions()
    load_plugins(options.plugins)
    check_experiment(experiment)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) < len(methods):
        raise ValueError(
            f"methods must be one or more different ones of {', '.join(METHODS)}; got "
            f"{', '.join(methods) or 'none'}"
        )
    check_seeds(seeds)
    out = Path(out)
    tune = {k: list(v) for k, v in (tune or {}).items()}
    extra_seeds: list[int] = []
    if tune:
        check_tune(tune, methods, experiment)
        extra_seeds = tune_seeds(seeds, tune_seed_count)
    n_tune = sum(len(p) for m in methods if (p := grid_points(tune, m)) != [{}]) * len(extra_seeds)
    check_jobs(options.jobs, max(len(methods) * len(seeds), n_tune))
    check_out_dir(out)  # before anything is loaded or written
    load_dataset(experiment.dataset, options.data_dir)  # missing data: one error, nothing written
    with signals_interrupt(), lock_run_dir(out, options.log):
        open_run_dir(
            out,
            experiment,
            methods,
            seeds,
            options,
            tune=tune_config(tune, extra_seeds),
            record=record,
        )
        chosen: dict[str, dict[str, float]] = {}
        if tune:
            record = tune_grid(out, experiment, methods, tune, extra_seeds, options)
            atomic_write_json(
                out / "tune.json",
                {**(tune_config(tune, extra_seeds) or {}), "methods": record},
            )
            chosen = {m: r["selected"] for m, r in record.items()}
            for method, point in chosen.items():
                if point:
                    options.log(f"tuned {method}: {point_label(point)} (best on validation)")
            # What the evaluation runs are trained with, for the tools that rebuild their models.
            config = read_json_file(out / "config.json")
            atomic_write_json(out / "config.json", {**config, "tuned": chosen})
        tasks = []
        for seed in seeds:
            for method in methods:
                tasks.append(
                    Task(
                        RunSpec(
                            evaluation_experiment(experiment, method, chosen.get(method, {})),
                            method,
                            seed,
                            options.device,
                            compile=options.compile,
                        ),
                        out / "runs" / method / f"seed{seed}",
                    )
                )
        try:
            execute(tasks, dataclasses.replace(options, jobs=min(options.jobs, len(tasks))))
        except RunsFailedError as failed:
            # The report of the finished runs, and the failures whatever becomes of it.
            try:
                write_report(out)
            except Exception as err:
                raise RunsFailedError(
                    failed.failures, note=f"the report could not be written either: {err}"
                ) from err
            raise
        return write_report(out)


def sweep(
    experiment: Experiment,
    grid: dict[str, Sequence[float]],
    seeds: Sequence[int],
    out: str | Path,
    options: RunOptions | None = None,
    *,
    matched: bool = True,
    tune: dict[str, Sequence[float]] | None = None,
    tune_seed_count: int = 2,
    record: Mapping[str, Any] | None = None,
) -> Path:
    """Grid over DDC's ``p``, ``pg``, ``tau``; writes ``sweep.json``, ``sweep.md`` and heatmaps.

    Parameters left out of ``grid`` keep their defaults; ``p + pg`` above 1 is clamped by
    ``p_max``. With ``matched`` every cell also gets DropConnect at the cell's measured mean
    drop rate (the realized rate of its DDC runs, averaged over epochs and seeds, rounded to
    0.01; cells with the same rate share those runs), trained on the same seeds, and the
    gain of DDC over it. Returns the path of ``sweep.json``.

    With ``tune`` (``lr`` and/or ``weight_decay`` only) every DDC cell, and then every matched
    DropConnect, first trains its grid on ``tune_seed_count`` tune seeds (as in
    :func:`compare`; under ``out/tune/ddc/<cell>/`` and ``out/tune/matched/<dropconnect>/``)
    and is evaluated at the point best on validation: each side of a gain gets the same budget.
    The rows record the choices (``tuned``, ``matched_tuned``); ``tune.json`` the grids.
    ``record``: more keys for config.json, as in :func:`compare`.
    """
    options = options or RunOptions()
    load_plugins(options.plugins)
    check_experiment(experiment)
    out = Path(out)
    names = ("p", "pg", "tau")
    check_grid(grid, experiment)
    check_seeds(seeds)
    tune = {k: list(v) for k, v in (tune or {}).items()}
    extra_seeds: list[int] = []
    if tune:
        check_sweep_tune(tune)
        extra_seeds = tune_seeds(seeds, tune_seed_count)
    defaults = (0.3, 0.5, 0.5)
    full = {k: list(grid.get(k, [d])) for k, d in zip(names, defaults, strict=True)}
    cells = list(product(full["p"], full["pg"], full["tau"]))
    n_points = len(list(product(*tune.values()))) if tune else 0
    check_jobs(options.jobs, max(len(cells) * len(seeds), len(cells) * n_points * len(extra_seeds)))
    check_out_dir(out)  # before anything is loaded or written
    load_dataset(experiment.dataset, options.data_dir)
    with signals_interrupt(), lock_run_dir(out, options.log):
        open_run_dir(
            out,
            experiment,
            ["ddc"],
            seeds,
            options,
            full,
            tune=tune_config(tune, extra_seeds),
            matched=matched,
            record=record,
        )
        cell_keys = {cell: f"ddc:p{cell[0]}_pg{cell[1]}_tau{cell[2]}" for cell in cells}
        chosen: dict[str, dict[str, float]] = {}
        tune_record: dict[str, Any] = {}
        if tune:
            tune_record = tune_grid(
                out,
                experiment,
                list(cell_keys.values()),
                tune,
                extra_seeds,
                options,
                base_options={
                    key: dict(zip(names, cell, strict=True)) for cell, key in cell_keys.items()
                },
                folder=lambda key: out / "tune" / "ddc" / key.split(":")[1],
            )
            chosen = {key: entry["selected"] for key, entry in tune_record.items()}
            atomic_write_json(
                out / "tune.json", {**(tune_config(tune, extra_seeds) or {}), "cells": tune_record}
            )
        tasks = []
        for p, pg, tau in cells:
            cell_experiment = split_point(experiment, chosen.get(cell_keys[(p, pg, tau)], {}))[0]
            tasks += [
                Task(
                    RunSpec(
                        cell_experiment,
                        "ddc",
                        seed,
                        options.device,
                        {"p": p, "pg": pg, "tau": tau},
                        compile=options.compile,
                    ),
                    out / "grid" / f"p{p}_pg{pg}_tau{tau}" / f"seed{seed}",
                )
                for seed in seeds
            ]
        results = execute(tasks, dataclasses.replace(options, jobs=min(options.jobs, len(tasks))))
        by_cell: dict[tuple[float, float, float], list[float]] = {}
        for task in tasks:  # the run directories of the tasks, not a second copy of their paths
            hp = task.spec.method_options
            by_cell.setdefault((hp["p"], hp["pg"], hp["tau"]), []).append(
                mean_drop_rate(task.run_dir)
            )
        rates = {cell: float(np.nanmean(values)) for cell, values in by_cell.items()}
        matched_results: dict[Path, dict[str, Any]] = {}
        matched_chosen: dict[str, dict[str, float]] = {}
        if matched and tune:
            rate_keys = [f"dropconnect:{r:.2f}" for r in sorted(set(rates.values()))]
            matched_record = tune_grid(
                out,
                experiment,
                rate_keys,
                tune,
                extra_seeds,
                options,
                base_options={key: {"p": round(float(key.split(":")[1]), 2)} for key in rate_keys},
                folder=lambda key: out / "tune" / "matched" / f"dropconnect_p{key.split(':')[1]}",
            )
            matched_chosen = {key: entry["selected"] for key, entry in matched_record.items()}
            tune_record.update(matched_record)
            atomic_write_json(
                out / "tune.json", {**(tune_config(tune, extra_seeds) or {}), "cells": tune_record}
            )
        if matched:
            twin_experiment = {
                f"{r:.2f}": split_point(experiment, matched_chosen.get(f"dropconnect:{r:.2f}", {}))[
                    0
                ]
                for r in set(rates.values())
            }
            matched_tasks = {
                out / "matched" / f"dropconnect_p{rate:.2f}" / f"seed{seed}": Task(
                    RunSpec(
                        twin_experiment[f"{rate:.2f}"],
                        "dropconnect",
                        seed,
                        options.device,
                        {"p": round(rate, 2)},
                        compile=options.compile,
                    ),
                    out / "matched" / f"dropconnect_p{rate:.2f}" / f"seed{seed}",
                )
                for rate in sorted(set(rates.values()))
                for seed in seeds
            }
            jobs = min(options.jobs, len(matched_tasks))
            matched_results = execute(
                list(matched_tasks.values()), dataclasses.replace(options, jobs=jobs)
            )
        rows: list[dict[str, Any]] = []
        for task in tasks:
            result, hp = results[task.run_dir], task.spec.method_options
            rate = rates[(hp["p"], hp["pg"], hp["tau"])]
            row = {
                **hp,
                "seed": task.spec.seed,
                "val_acc": result["best_val_acc"],
                "test_acc": result["test_acc_at_best_val"],
                "mean_drop_rate": rate,
            }
            if tune:
                row["tuned"] = chosen[cell_keys[(hp["p"], hp["pg"], hp["tau"])]]
            if matched and tune:
                row["matched_tuned"] = matched_chosen[f"dropconnect:{rate:.2f}"]
            if matched:
                twin = matched_results[
                    out / "matched" / f"dropconnect_p{rate:.2f}" / f"seed{task.spec.seed}"
                ]
                row["matched_dropconnect_p"] = round(rate, 2)
                row["matched_dropconnect_test_acc"] = twin["test_acc_at_best_val"]
                row["gain_over_matched"] = row["test_acc"] - twin["test_acc_at_best_val"]
            rows.append(row)
        atomic_write_json(out / "sweep.json", rows)
        varied = [k for k in names if len(full[k]) > 1] or ["p", "pg"]
        x, y = (varied + [k for k in names if k not in varied])[:2]
        values = ["val_acc", "test_acc", "mean_drop_rate"] + (
            ["gain_over_matched"] if matched else []
        )
        for value in values:
            plot_sweep_heatmap(rows, x, y, value, out / "plots" / f"sweep_{value}_{x}_{y}.png")
        if matched:
            plot_sweep_forest(rows, out / "plots" / "forest.png")
        protocol = (
            f"{experiment.epochs} epochs, peak lr {experiment.lr:g}, {experiment.schedule} schedule"
            + (f", at most {options.subset} examples per split" if options.subset else "")
            + (f", {experiment.train_size} training examples" if experiment.train_size else "")
            + (
                f"; tuned per cell and per matched DropConnect over "
                f"{' × '.join(k + ' ' + ','.join(map(str, v)) for k, v in tune.items())} "
                f"on tune seeds {extra_seeds} by {TUNE_SCORE}"
                if tune
                else ""
            )
        )
        atomic_write_text(
            out / "sweep.md", format_sweep_table(rows, experiment.name, len(seeds), protocol)
        )
        return out / "sweep.json"


def shortened(experiment: Experiment, epochs: int | None) -> Experiment:
    """``experiment`` with ``epochs`` (warmup scaled), or unchanged for ``None``."""
    return experiment if epochs is None else experiment.with_epochs(epochs)
