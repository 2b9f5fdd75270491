"""Checking a sweep's grid, and tuning (``--tune``): every method gets the same grid budget,
chosen on the validation split (:data:`TUNE_SCORE`; the test split is never read)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .config import Experiment
from .execution import DIVERGED, RunOptions, RunsFailedError, Task, execute
from .methods import METHOD_KINDS, METHODS, apply_method
from .report import load_metrics
from .training import RunSpec

__all__ = [
    "DIVERGED",
    "TUNE_NAMES",
    "TUNE_SCORE",
    "TUNE_SEED_OFFSET",
    "check_grid",
    "check_sweep_tune",
    "check_tune",
    "describe_config_tune",
    "describe_tune",
    "evaluation_experiment",
    "grid_points",
    "point_label",
    "select_point",
    "split_point",
    "tune_config",
    "tune_grid",
    "tune_seeds",
    "tuned_names",
]


#: DDC's hyperparameters a sweep may vary: (low, high, high included) as the regularizer has them.
_GRID_RANGES: dict[str, tuple[float, float, bool]] = {
    "p": (0.0, 1.0, False),
    "pg": (0.0, math.inf, False),
    "tau": (0.0, 1.0, True),
}


class _OneLayer(nn.Module):
    """The slot that :func:`apply_method` regularizes by default, to try a sweep cell on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Linear(2, 2)


def _check_listed(flag: str, joiner: str, values: Sequence[float]) -> None:
    """``ValueError`` naming ``flag`` when ``values`` is empty or repeats a value."""
    if not values:
        empty = f"{flag}{joiner.strip()}"
        raise ValueError(f"{empty} is empty; give one or more comma-separated numbers")
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise ValueError(
            f"{flag}{joiner}{','.join(map(str, values))} repeats {repeated[0]}; each value must "
            "be given once"
        )


def check_grid(grid: dict[str, Sequence[float]], experiment: Experiment) -> None:
    """``ValueError`` naming the flag (``--p``, ``--pg``, ``--tau``) for a sweep value that is
    repeated, not finite or out of range, or a cell that DDC refuses (``p`` above ``p_max``)."""
    bad = set(grid) - set(_GRID_RANGES)
    if bad:
        raise ValueError(f"sweep parameters must be among {tuple(_GRID_RANGES)}, got {sorted(bad)}")
    for name, values in grid.items():
        flag = f"--{name}"
        _check_listed(flag, " ", values)
        low, high, closed = _GRID_RANGES[name]
        for value in values:
            inside = low <= value <= high if closed else low <= value < high
            if not (math.isfinite(value) and inside):
                bracket = "]" if closed else ")"
                raise ValueError(
                    f"{flag} {value} is not valid: DDC's {name} must be a number in "
                    f"[{low:g}, {high:g}{bracket}"
                )
    base = experiment.method_options.get("ddc", {})
    for p, pg, tau in product(*(grid.get(k, [None]) for k in _GRID_RANGES)):
        cell = {k: v for k, v in zip(_GRID_RANGES, (p, pg, tau), strict=True) if v is not None}
        try:
            apply_method(_OneLayer(), "ddc", {**base, **cell})
        except (TypeError, ValueError) as err:
            flags = " ".join(f"--{k} {v}" for k, v in cell.items())
            raise ValueError(f"sweep cell {flags} is not valid: {err}") from err


#: ``--tune`` names: the method kinds that take each (``None``: every method), and the valid
#: range as (low, high, low included, high included).
_TUNE_KINDS: dict[str, tuple[str, ...] | None] = {
    "lr": None,
    "weight_decay": None,
    "p": ("dropout", "locked-dropout", "dropconnect", "ddc"),
    "pg": ("ddc",),
    "tau": ("ddc",),
    "target": ("ddc-learned",),
}
_TUNE_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0.0, 10.0, False, True),
    "weight_decay": (0.0, math.inf, True, False),
    "p": (0.0, 1.0, True, False),
    "pg": (0.0, math.inf, True, False),
    "tau": (0.0, 1.0, True, True),
    "target": (0.0, 1.0, False, False),
}
TUNE_NAMES: tuple[str, ...] = tuple(_TUNE_KINDS)
#: Tune seeds are ``TUNE_SEED_OFFSET + seed0 + i``: disjoint from the evaluation seeds.
TUNE_SEED_OFFSET = 1000
#: How a grid point is scored (on the validation split only; the test split is never read).
TUNE_SCORE = (
    "mean over the tune seeds of the best validation accuracy (best_val_acc); ties broken by "
    "the lower mean validation loss at that epoch, then by grid order"
)
#: The keys of a run's result that selection may read: validation only, never test.
_VAL_KEYS = ("best_val_acc", "best_val_epoch")


def tuned_names(method: str) -> tuple[str, ...]:
    """The ``--tune`` names ``method`` takes. A DDC variant defined by fixing one of them
    (``ddc-no-threshold``: tau=0) does not take that one: tuning it would undo the variant."""
    spec = METHODS[method]
    return tuple(
        name
        for name, kinds in _TUNE_KINDS.items()
        if (kinds is None or spec.kind in kinds)
        and not (spec.kind == "ddc" and name in spec.options)
    )


def tune_seeds(seeds: Sequence[int], count: int) -> list[int]:
    """The ``count`` tune seeds of a run whose evaluation seeds are ``seeds``:
    ``TUNE_SEED_OFFSET + min(seeds)`` on. ``ValueError`` when they would overlap ``seeds``."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"--tune-seeds must be a whole number >= 1, got {count!r}")
    first = TUNE_SEED_OFFSET + min(seeds)
    chosen = list(range(first, first + count))
    shared = sorted(set(chosen) & set(seeds))
    if shared:
        raise ValueError(
            f"tune seeds {first}..{first + count - 1} overlap the evaluation seeds at {shared[0]}; "
            f"use fewer than {TUNE_SEED_OFFSET} evaluation seeds"
        )
    return chosen


def check_tune(
    tune: dict[str, Sequence[float]],
    methods: Sequence[str],
    experiment: Experiment | None = None,
) -> None:
    """``ValueError`` naming the ``--tune`` name or value for an unknown name, a name none of
    ``methods`` takes, a repeated, non-finite or out-of-range value, or a grid point that a
    method refuses (DDC: ``p`` above ``p_max``)."""
    for name, values in tune.items():
        if name not in _TUNE_KINDS:
            raise ValueError(f"--tune {name}: unknown name; valid: {', '.join(TUNE_NAMES)}")
        taken = [m for m in methods if name in tuned_names(m)]
        if not taken:
            valid = sorted({n for m in methods for n in tuned_names(m)}, key=TUNE_NAMES.index)
            raise ValueError(
                f"--tune {name}: none of the methods {', '.join(methods)} takes {name}; valid "
                f"for them: {', '.join(valid)}"
            )
        _check_listed(f"--tune {name}", "=", values)
        low, high, low_in, high_in = _TUNE_RANGES[name]
        for value in values:
            above = value >= low if low_in else value > low
            below = value <= high if high_in else value < high
            if not (isinstance(value, int | float) and math.isfinite(value) and above and below):
                bracket = (
                    ("[" if low_in else "(") + f"{low:g}, {high:g}" + ("]" if high_in else ")")
                )
                raise ValueError(f"--tune {name}={value} is not valid: {name} must be in {bracket}")
    for method in methods:
        if not METHOD_KINDS[METHODS[method].kind].weight:
            continue
        base = experiment.method_options.get(method, {}) if experiment else {}
        for point in grid_points(tune, method):
            options = {k: v for k, v in point.items() if k not in ("lr", "weight_decay")}
            if not options:
                continue
            try:
                apply_method(_OneLayer(), method, {**base, **options})
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"--tune grid point {point_label(point)} is not valid for {method}: {err}"
                ) from err


def grid_points(tune: dict[str, Sequence[float]], method: str) -> list[dict[str, float]]:
    """The grid points of ``method``: the cartesian product over the names it takes (in the
    order given); ``[{}]`` when it takes none."""
    names = [n for n in tune if n in tuned_names(method)]
    return [dict(zip(names, values, strict=True)) for values in product(*(tune[n] for n in names))]


def point_label(point: dict[str, float]) -> str:
    """A grid point's folder name, e.g. ``lr0.01_p0.3``."""
    return "_".join(f"{name}{value:g}" for name, value in point.items())


def split_point(
    experiment: Experiment, point: dict[str, float]
) -> tuple[Experiment, dict[str, float]]:
    """``experiment`` with the point's ``lr`` / ``weight_decay``, and the method options."""
    if "lr" in point:
        experiment = experiment.with_lr(point["lr"])
    if "weight_decay" in point:
        experiment = experiment.with_weight_decay(point["weight_decay"])
    return experiment, {k: v for k, v in point.items() if k not in ("lr", "weight_decay")}


def evaluation_experiment(
    experiment: Experiment, method: str, point: dict[str, float]
) -> Experiment:
    """The experiment ``method``'s evaluation runs train under: the point's ``lr`` and
    ``weight_decay``, and its method options in ``method_options[method]``, so that each run's
    ``result.json`` settings (and checkpoint) hold everything it was trained with."""
    run_experiment, method_options = split_point(experiment, point)
    if not method_options:
        return run_experiment
    merged = {
        **run_experiment.method_options,
        method: {**run_experiment.method_options.get(method, {}), **method_options},
    }
    return dataclasses.replace(run_experiment, method_options=merged)


def _validation_score(result: dict[str, Any], run_dir: Path) -> dict[str, float]:
    """A tune run's score from validation numbers only: its best validation accuracy and the
    validation loss at that epoch (NaN when metrics.csv lacks it). Test keys are never read.
    A run that diverged (:data:`DIVERGED`) scores NaN: its point can never be chosen."""
    if DIVERGED in result:
        return {"val_acc": math.nan, "val_loss": math.nan}
    val = {k: result[k] for k in _VAL_KEYS}
    columns = load_metrics(run_dir / "metrics.csv")
    loss = math.nan
    if "epoch" in columns and "val_loss" in columns:
        at = np.flatnonzero(columns["epoch"] == val["best_val_epoch"])
        if at.size:
            loss = float(columns["val_loss"][at[0]])
    return {"val_acc": float(val["best_val_acc"]), "val_loss": loss}


def select_point(grid: Sequence[dict[str, Any]]) -> int:
    """Index of the best grid entry (``{"val_acc", "val_loss"}`` means over tune seeds):
    highest ``val_acc``, then lowest ``val_loss`` (NaN counts as worst), then the first. A
    point with NaN ``val_acc`` (a tune seed diverged) is never chosen; ``ValueError`` when no
    point has a finite score."""
    if not grid:
        raise ValueError("select_point: the grid is empty")
    if not any(math.isfinite(entry["val_acc"]) for entry in grid):
        raise ValueError("select_point: every grid point diverged or has no score")

    def key(i: int) -> tuple[float, float, int]:
        acc, loss = grid[i]["val_acc"], grid[i]["val_loss"]
        acc = acc if math.isfinite(acc) else -math.inf
        return (acc, -loss if math.isfinite(loss) else -math.inf, -i)

    return max(range(len(grid)), key=key)


def _select(key: str, grid: Sequence[dict[str, Any]]) -> int:
    """:func:`select_point`, with an error naming the method when every point diverged."""
    try:
        return select_point(grid)
    except ValueError:
        labels = ", ".join(entry["label"] for entry in grid)
        raise RuntimeError(
            f"tuning {key}: every grid point diverged ({labels}); tune over lower values"
        ) from None


def tune_grid(
    out: Path,
    experiment: Experiment,
    methods: Sequence[str],
    tune: dict[str, Sequence[float]],
    seeds: Sequence[int],
    options: RunOptions,
    *,
    base_options: dict[str, dict[str, Any]] | None = None,
    folder: Callable[[str], Path] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every grid point of every method on ``seeds`` (tune seeds) and choose, per
    method, the best on the validation split (:data:`TUNE_SCORE`).

    ``base_options`` (per method key) are method options every point of it keeps (a sweep
    cell); ``folder(key)`` is where that key's points go (default ``out/tune/<key>``). Keys
    are methods, or ``"<method>:<anything>"`` for several settings of one method.

    Returns ``{key: {"names", "grid": [{"point", "label", "val_acc", "val_loss",
    "per_seed"}], "selected": point}}``; a key whose method takes none of the names has an
    empty grid and selects ``{}`` (nothing trained)."""
    base_options = base_options or {}
    plan: dict[str, list[tuple[dict[str, float], list[Task]]]] = {}
    tasks: list[Task] = []
    for key in methods:
        method = key.split(":")[0]
        points = grid_points(tune, method)
        plan[key] = []
        if points == [{}]:
            continue
        where = folder(key) if folder else out / "tune" / key
        for point in points:
            run_experiment, point_options = split_point(experiment, point)
            point_tasks = [
                Task(
                    RunSpec(
                        run_experiment,
                        method,
                        seed,
                        options.device,
                        {**base_options.get(key, {}), **point_options},
                        compile=options.compile,
                    ),
                    where / point_label(point) / f"seed{seed}",
                )
                for seed in seeds
            ]
            plan[key].append((point, point_tasks))
            tasks += point_tasks
    results: dict[Path, dict[str, Any]] = {}
    if tasks:
        try:
            results = execute(
                tasks, dataclasses.replace(options, jobs=min(options.jobs, len(tasks))), "tune"
            )
        except RunsFailedError as failed:
            raise RunsFailedError(
                failed.failures,
                note="tuning is incomplete, so no evaluation run was started; fix the cause and "
                "continue with --resume (the finished tune runs are kept)",
            ) from None
    record: dict[str, dict[str, Any]] = {}
    for key, entries in plan.items():
        grid = []
        for point, point_tasks in entries:
            per_seed = {
                str(t.spec.seed): _validation_score(results[t.run_dir], t.run_dir)
                for t in point_tasks
            }
            losses = [s["val_loss"] for s in per_seed.values()]
            loss = float(np.mean(losses)) if all(map(math.isfinite, losses)) else math.nan
            grid.append(
                {
                    "point": point,
                    "label": point_label(point),
                    "val_acc": float(np.mean([s["val_acc"] for s in per_seed.values()])),
                    "val_loss": loss,
                    "per_seed": per_seed,
                }
            )
        record[key] = {
            "names": [n for n in tune if n in tuned_names(key.split(":")[0])],
            "grid": grid,
            "selected": grid[_select(key, grid)]["point"] if grid else {},
        }
    return record


#: What ``sweep --tune`` may tune: the sweep's own axes are p, pg and tau.
_SWEEP_TUNE = ("lr", "weight_decay")


def check_sweep_tune(tune: dict[str, Sequence[float]]) -> None:
    """``ValueError`` for a ``sweep --tune`` name other than lr and weight_decay (the sweep's
    axes p, pg, tau are swept, not tuned) or a bad value."""
    bad = [name for name in tune if name not in _SWEEP_TUNE]
    if bad:
        raise ValueError(
            f"sweep --tune {bad[0]}: a sweep tunes only {', '.join(_SWEEP_TUNE)} (p, pg and tau "
            "are its grid: give them as --p, --pg, --tau)"
        )
    check_tune(tune, ["ddc", "dropconnect"])


def tune_config(
    tune: dict[str, Sequence[float]] | None, seeds: Sequence[int]
) -> dict[str, Any] | None:
    """What config.json records of ``--tune`` (``None`` without it)."""
    if not tune:
        return None
    return {
        "grid": {name: list(values) for name, values in tune.items()},
        "seeds": list(seeds),
        "seed_offset": TUNE_SEED_OFFSET,
        "score": TUNE_SCORE,
    }


def describe_tune(grid: dict[str, Sequence[float]] | None, seeds: Sequence[int]) -> str:
    """``--tune`` as flags, e.g. ``--tune lr=0.01,0.05 on tune seeds [1000]``, or
    ``no --tune``."""
    if not grid:
        return "no --tune"
    flags = " ".join(f"--tune {k}={','.join(map(str, v))}" for k, v in grid.items())
    return f"{flags} on tune seeds {list(seeds)}"


def describe_config_tune(config: dict[str, Any]) -> str:
    """:func:`describe_tune` of what a config.json records of ``--tune``."""
    tune = config.get("tune")
    return describe_tune(tune["grid"], tune["seeds"]) if tune else describe_tune(None, [])
