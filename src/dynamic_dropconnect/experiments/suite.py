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
of ours. One compare or sweep at a time holds a run directory (:func:`lock_run_dir`); SIGTERM
or SIGINT stops its workers before it exits.

Runs go one after another in this process, or ``jobs`` at a time in worker processes (spawned,
one per run, with the CPU threads split between them; each imports ``RunOptions.plugins``
first, since a fresh process knows the built-in models, datasets and methods only). A run that
fails, even one whose process is killed, is reported and the others go on;
:class:`RunsFailedError` lists the failures at the end, after the report of the finished runs
is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import math
import multiprocessing as mp
import os
import re
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import Experiment
from .datasets import DatasetError, load_dataset
from .datasets.registry import find_loader
from .io import atomic_write_json, atomic_write_text, pid_alive, read_json_file
from .methods import METHOD_KINDS, METHODS, apply_method
from .models import MODELS
from .plugins import check_plugin_names, load_plugins
from .report import (
    format_sweep_table,
    load_metrics,
    mean_drop_rate,
    plot_sweep_forest,
    plot_sweep_heatmap,
    write_report,
)
from .training import PreparedData, RunSpec, TrainingDivergedError, prepare_data, train_run

__all__ = [
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


class RunDirError(RuntimeError):
    """A run directory that would be overwritten, or a resume that does not match."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT: the workers were stopped. A ``BaseException`` so that no run counts
    it as its own failure."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`Interrupted` (once; later ones are ignored while the
    workers are stopped), so the workers are stopped and the lock released before exit."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set in the main thread
        return

    def interrupt(signum: int, frame: object) -> None:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Seconds a worker gets to exit after SIGTERM before it is killed.
_WORKER_GRACE = 20.0


class RunsFailedError(RuntimeError):
    """Some runs failed; the others finished and were reported. ``failures``: dir → reason."""

    def __init__(self, failures: dict[str, str], note: str = "") -> None:
        self.failures = failures
        lines = "\n".join(f"  {d}: {r.strip().splitlines()[-1]}" for d, r in failures.items())
        super().__init__(
            f"{len(failures)} run(s) failed (the others finished):\n{lines}"
            + (f"\n{note}" if note else "")
        )


#: The lock file of a run directory: ``{"pid", "host", "started"}`` of the ddc writing it.
LOCK_NAME = ".ddc-lock"
#: A lock file that is still empty this long after its creation was left by a killed process.
_LOCK_WRITE_SECONDS = 10.0


def _read_lock(path: Path) -> tuple[str, dict[str, Any] | None]:
    """The lock's text and holder (``None`` while it is being written, or garbled)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "", None
    try:
        holder = json.loads(text)
    except ValueError:
        return text, None
    ok = isinstance(holder, dict) and isinstance(holder.get("pid"), int) and "host" in holder
    return text, holder if ok else None


def _take_over(path: Path, seen: str) -> bool:
    """Remove the stale lock ``path`` if it still holds ``seen``. Renamed aside first, so that
    of two processes taking over the same stale lock one cannot delete the other's new lock."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True  # another process removed it: the next O_EXCL decides
    moved = aside.read_text(encoding="utf-8", errors="replace")
    if moved != seen:  # a faster process had taken it over meanwhile: give its lock back
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
        aside.unlink()
        return False
    aside.unlink()
    return True


@contextlib.contextmanager
def lock_run_dir(out: Path, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold ``out/.ddc-lock`` (created with ``O_EXCL``) while a compare or sweep writes ``out``.

    A lock of a live process is a :class:`RunDirError` naming its pid and host; a lock whose
    process is gone (killed, machine rebooted) is named in the log and taken over. A lock of
    another host cannot be checked and counts as live."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.ctime()}
    for _ in range(5):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            text, holder = _read_lock(path)
            if holder is None:
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - path.stat().st_mtime < _LOCK_WRITE_SECONDS:
                        time.sleep(0.2)  # its holder is writing it: look again
                        continue
                log(f"{path}: unreadable lock left by a killed process; taking it over")
            elif holder["host"] != me["host"] or pid_alive(holder["pid"]):
                raise RunDirError(
                    f"{out} is in use by ddc pid {holder['pid']} on host {holder['host']} "
                    f"(since {holder.get('started', '?')}; lock {path}). Wait for it to finish "
                    f"or stop it; if that process is gone, delete {path}"
                ) from None
            else:
                log(
                    f"{path}: taking over the stale lock of pid {holder['pid']} on "
                    f"{holder['host']}, which is no longer running"
                )
            _take_over(path, text)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:
        raise RunDirError(
            f"{out}: could not take the lock {path}; another ddc is starting in this run "
            "directory. Run one at a time"
        )
    try:
        yield
    finally:
        if _read_lock(path)[1] == me:  # never delete a lock that another ddc took over
            path.unlink(missing_ok=True)


#: Files of ours that may be in a run directory before its config.json (see :func:`lock_run_dir`).
_BOOKKEEPING = (LOCK_NAME,)


def _our_runs(runs: Path) -> bool:
    """Whether ``runs`` has only our layout: ``<method>/seed<k>/`` folders."""
    return all(
        method.is_dir()
        and method.name in METHODS
        and all(seed.is_dir() and _SEED.match(seed.name) for seed in method.iterdir())
        for method in runs.iterdir()
    )


_SEED = re.compile(r"^seed-?\d+$")


def check_out_dir(out: str | Path) -> bool:
    """Whether ``out`` holds a run of ours (``config.json``); ``False`` for a new or empty
    directory. :class:`RunDirError` for a file, or a non-empty directory with no run in it
    (the user's own files, which writing the report would overwrite)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(
            f"--out {out} is a file, not a directory; choose a new or empty directory for the run"
        )
    if not out.is_dir():
        above = next((a for a in out.absolute().parents if a.exists()), None)
        if above is not None and not above.is_dir():
            raise RunDirError(
                f"--out {out} is below {above}, which is a file; choose a directory elsewhere"
            )
        return False
    config_path = out / "config.json"
    if config_path.exists():
        config = read_json_file(config_path)
        if not {"experiment", "methods", "seeds"} <= set(config):
            raise RunDirError(
                f"{config_path} is not the config.json of a ddc run (it lacks experiment, "
                "methods or seeds); choose another --out"
            )
        return True
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
    entries = [e for e in entries if e not in _BOOKKEEPING]
    if entries == ["runs/"] and _our_runs(out / "runs"):
        return False  # runs of ``python -m ...experiments.run`` (torchrun): no config.json
    if entries:
        shown = ", ".join(entries[:8]) + (
            f" and {len(entries) - 8} more" if len(entries) > 8 else ""
        )
        raise RunDirError(
            f"--out {out} is not empty and holds no ddc run (no config.json): it has {shown}; "
            "a run would overwrite such files (results.md, results.json, plots/, ...). Choose a "
            "new or empty directory, or move those files away"
        )
    return False


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


@dataclass(frozen=True)
class SavedRun:
    """What a run directory's ``config.json`` says was asked for: all that a resume needs.

    ``command``: ``"compare"`` or ``"sweep"``; ``experiment``: the settings the runs train
    under (after ``--epochs``, ``--lr``, ``--schedule``); ``tune``: the ``--tune`` grid
    (``{}`` without) and ``tune_seeds`` its seeds (``()`` without); ``grid``: a sweep's
    ``p``, ``pg``, ``tau`` (``None`` for a comparison) and ``matched`` its matched
    DropConnect.
    """

    command: str
    experiment: Experiment
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    subset: int | None
    device: str
    compile: bool
    tune: dict[str, list[float]]
    tune_seeds: tuple[int, ...]
    grid: dict[str, list[float]] | None
    matched: bool
    plugins: tuple[str, ...]


def saved_run(out: str | Path) -> SavedRun:
    """The run that ``out/config.json`` describes; :class:`RunDirError` naming the file and
    the entry when it cannot be read back (``RunFileError`` for a garbled file)."""
    path = Path(out) / "config.json"
    config = read_json_file(path)
    settings = config.get("settings")
    if not isinstance(settings, dict):
        raise RunDirError(
            f"{path} does not record the experiment's settings (an older ddc wrote it); "
            "resume it with the flags it was started with, or start a new run"
        )
    key = "settings"
    try:
        experiment = Experiment.from_dict(settings)
        key = "methods"
        methods = tuple(str(m) for m in config["methods"])
        key = "seeds"
        seeds = tuple(int(x) for x in config["seeds"])
        key = "tune"
        tune = config.get("tune") or {}
        grid = {str(k): [float(v) for v in values] for k, values in tune.get("grid", {}).items()}
        tuned_on = tuple(int(x) for x in tune.get("seeds", [])) if grid else ()
        key = "hyperparameters"
        sweep_grid = config.get("hyperparameters")
        if sweep_grid is not None:
            sweep_grid = {str(k): [float(v) for v in values] for k, values in sweep_grid.items()}
        key = "plugins"
        plugins = tuple(check_plugin_names(config.get("plugins") or []))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise RunDirError(
            f"{path}: its {key} cannot be read back ({type(err).__name__}: {err}); it was not "
            "written by this ddc, or was edited"
        ) from err
    command = config.get("command") or ("compare" if sweep_grid is None else "sweep")
    return SavedRun(
        command=str(command),
        experiment=experiment,
        methods=methods,
        seeds=seeds,
        subset=config.get("subset"),
        device=str(config.get("device") or "cpu"),
        compile=bool(config.get("compile", False)),
        tune=grid,
        tune_seeds=tuned_on,
        grid=sweep_grid,
        matched=bool(config.get("matched", True)) if sweep_grid is not None else True,
        plugins=plugins,
    )


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


# --------------------------------------------------------------------------------------------
# Tuning (--tune): every method gets the same grid budget, chosen on the validation split
# --------------------------------------------------------------------------------------------

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
#: The key of a tune run's result that marks it diverged (non-finite loss): scored NaN.
DIVERGED = "diverged"
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
        for point in _points(tune, method):
            options = {k: v for k, v in point.items() if k not in ("lr", "weight_decay")}
            if not options:
                continue
            try:
                apply_method(_OneLayer(), method, {**base, **options})
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"--tune grid point {_label(point)} is not valid for {method}: {err}"
                ) from err


def _points(tune: dict[str, Sequence[float]], method: str) -> list[dict[str, float]]:
    """The grid points of ``method``: the cartesian product over the names it takes (in the
    order given); ``[{}]`` when it takes none."""
    names = [n for n in tune if n in tuned_names(method)]
    return [dict(zip(names, values, strict=True)) for values in product(*(tune[n] for n in names))]


def _label(point: dict[str, float]) -> str:
    """A grid point's folder name, e.g. ``lr0.01_p0.3``."""
    return "_".join(f"{name}{value:g}" for name, value in point.items())


def _split_point(
    experiment: Experiment, point: dict[str, float]
) -> tuple[Experiment, dict[str, float]]:
    """``experiment`` with the point's ``lr`` / ``weight_decay``, and the method options."""
    if "lr" in point:
        experiment = experiment.with_lr(point["lr"])
    if "weight_decay" in point:
        experiment = experiment.with_weight_decay(point["weight_decay"])
    return experiment, {k: v for k, v in point.items() if k not in ("lr", "weight_decay")}


def _evaluation_experiment(
    experiment: Experiment, method: str, point: dict[str, float]
) -> Experiment:
    """The experiment ``method``'s evaluation runs train under: the point's ``lr`` and
    ``weight_decay``, and its method options in ``method_options[method]``, so that each run's
    ``result.json`` settings (and checkpoint) hold everything it was trained with."""
    run_experiment, method_options = _split_point(experiment, point)
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


def _tune(
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
    plan: dict[str, list[tuple[dict[str, float], list[_Task]]]] = {}
    tasks: list[_Task] = []
    for key in methods:
        method = key.split(":")[0]
        points = _points(tune, method)
        plan[key] = []
        if points == [{}]:
            continue
        where = folder(key) if folder else out / "tune" / key
        for point in points:
            run_experiment, point_options = _split_point(experiment, point)
            point_tasks = [
                _Task(
                    RunSpec(
                        run_experiment,
                        method,
                        seed,
                        options.device,
                        {**base_options.get(key, {}), **point_options},
                        compile=options.compile,
                    ),
                    where / _label(point) / f"seed{seed}",
                )
                for seed in seeds
            ]
            plan[key].append((point, point_tasks))
            tasks += point_tasks
    results: dict[Path, dict[str, Any]] = {}
    if tasks:
        try:
            results = _execute(
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
                    "label": _label(point),
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


def _tune_config(
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


def _open_run_dir(out: Path, config: dict[str, Any], resume: bool, experiment: Experiment) -> None:
    config_path = out / "config.json"
    if check_out_dir(out):
        if not resume:
            raise RunDirError(
                f"{out} already holds a run; pass --resume to continue it or choose another --out"
            )
        previous = read_json_file(config_path)
        keys = ("experiment", "epochs", "subset", "hyperparameters")
        changed = [k for k in keys if previous.get(k) != config.get(k)]
        if previous.get("compile", False) != config.get("compile", False):  # older: no key
            changed.append(f"compile: {previous.get('compile', False)} -> {config['compile']}")
        if previous.get("tune") != config.get("tune"):  # older: no key, no tuning
            old, new = _describe_config_tune(previous), _describe_config_tune(config)
            changed.append(f"tune: {old} -> {new}")
        if _matched(previous) != _matched(config):
            changed.append(f"matched: {_matched(previous)} -> {_matched(config)}")
        differences = experiment.differences(previous.get("settings") or {})
        if differences:
            changed.append("settings")
        if changed:
            detail = [f"{k}: {old!r} -> {new!r}" for k, (old, new) in differences.items()]
            raise RunDirError(
                f"--resume with a different configuration or protocol ({', '.join(changed)}"
                + (f"; {', '.join(detail)}" if detail else "")
                + f") than {config_path}; resume with the same options or choose another --out"
            )
        config = {
            **previous,  # keys this call does not set (e.g. --set provenance) are kept
            **config,
            "methods": list(dict.fromkeys(previous["methods"] + config["methods"])),
            "seeds": sorted(set(previous["seeds"]) | set(config["seeds"])),
            "plugins": list(dict.fromkeys(previous.get("plugins", []) + config["plugins"])),
        }
    atomic_write_json(config_path, config)


def _matched(config: dict[str, Any]) -> bool | None:
    """A sweep's matched DropConnect setting (sweeps written before it was recorded had it
    on: the default); ``None`` for a comparison."""
    if config.get("hyperparameters") is None:
        return None
    return bool(config.get("matched", True))


def describe_tune(grid: dict[str, Sequence[float]] | None, seeds: Sequence[int]) -> str:
    """``--tune`` as flags, e.g. ``--tune lr=0.01,0.05 on tune seeds [1000]``, or
    ``no --tune``."""
    if not grid:
        return "no --tune"
    flags = " ".join(f"--tune {k}={','.join(map(str, v))}" for k, v in grid.items())
    return f"{flags} on tune seeds {list(seeds)}"


def _describe_config_tune(config: dict[str, Any]) -> str:
    tune = config.get("tune")
    return describe_tune(tune["grid"], tune["seeds"]) if tune else describe_tune(None, [])


@dataclass(frozen=True)
class RunOptions:
    """How runs are executed, shared by :func:`compare` and :func:`sweep`."""

    device: str = "cpu"
    data_dir: str | Path | None = None
    subset: int | None = None
    resume: bool = False
    progress: bool = True
    log: Callable[[str], None] = print
    jobs: int = 1
    compile: bool = False  # torch.compile every run's training step (part of the run's config)
    #: Plugin modules (``--plugins``) that register what the runs need: imported by
    #: :func:`compare` / :func:`sweep`, by every worker process, and recorded in config.json.
    plugins: tuple[str, ...] = ()


def _start(
    out: Path,
    experiment: Experiment,
    methods: Sequence[str],
    seeds: Sequence[int],
    options: RunOptions,
    hyperparameters: dict[str, list[float]] | None = None,
    tune: dict[str, Any] | None = None,
    matched: bool | None = None,
    record: Mapping[str, Any] | None = None,
) -> None:
    config = {
        **(record or {}),
        "command": "compare" if hyperparameters is None else "sweep",
        "experiment": experiment.name,
        "settings": experiment.to_dict(),
        "methods": list(methods),
        "seeds": list(seeds),
        "epochs": experiment.epochs,
        "subset": options.subset,
        "device": options.device,
        "hyperparameters": hyperparameters,
        "compile": options.compile,
        "tune": tune,
        "matched": matched,
        "plugins": list(options.plugins),
    }
    _open_run_dir(out, config, options.resume, experiment)


def _data(experiment: Experiment, seed: int, options: RunOptions) -> PreparedData:
    return prepare_data(
        experiment,
        seed=seed,
        data_dir=options.data_dir,
        subset=options.subset,
        device=options.device,
    )


@dataclass(frozen=True)
class _Task:
    spec: RunSpec
    run_dir: Path


def _check_seeds(seeds: Sequence[int]) -> None:
    if not seeds or len(set(seeds)) < len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be one or more different whole numbers >= 0, got {seeds}")


def _check_jobs(jobs: int, n_tasks: int) -> None:
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    if jobs > n_tasks:
        raise ValueError(
            f"--jobs {jobs} is more than the {n_tasks} run(s) to do; use --jobs {n_tasks} or fewer"
        )


def _die_with_parent() -> None:
    """Linux: have the kernel SIGTERM this worker when its parent dies, even by SIGKILL, so
    that no orphan goes on writing into the run directory."""
    parent = mp.parent_process()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: SIGTERM forwarding still covers the parent
        return
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _worker(task: _Task, options: RunOptions, threads: int, conn: Connection) -> None:
    """One run in a spawned process; sends ``("ok", result)`` or ``("error", traceback)``."""
    _die_with_parent()
    torch.set_num_threads(threads)
    try:
        # A spawned process starts with the built-ins only: import what registered the rest.
        load_plugins(options.plugins)
        data = _data(task.spec.experiment, task.spec.seed, options)
        result = train_run(task.spec, task.run_dir, data, resume=options.resume, progress=False)
        conn.send(("ok", result))
    except TrainingDivergedError as diverged:  # an outcome of a tune point, see _execute
        conn.send(("diverged", str(diverged)))
    except BaseException:  # reported to the parent, which goes on with the other runs
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _execute(
    tasks: Sequence[_Task], options: RunOptions, phase: str = ""
) -> dict[Path, dict[str, Any]]:
    """Run ``tasks`` (``options.jobs`` at a time); results by run dir, failures raised last.
    In the ``"tune"`` phase only validation numbers are logged, and a run whose loss became
    non-finite is an outcome, not a failure: its result is ``{DIVERGED: message}`` (too high a
    learning rate is what a grid is there to find); elsewhere it fails like any error."""
    _check_jobs(options.jobs, len(tasks))
    results: dict[Path, dict[str, Any]] = {}
    failures: dict[str, str] = {}

    def diverged(task: _Task, message: str) -> None:
        if phase != "tune":
            failures[str(task.run_dir)] = message
            options.log(f"{task.run_dir}: FAILED\n{message}")
            return
        results[task.run_dir] = {DIVERGED: message}
        options.log(
            f"tune {task.run_dir.parent.name} {task.spec.method:>18} "
            f"seed {task.spec.seed}: diverged (never chosen)"
        )

    def finished(task: _Task, result: dict[str, Any]) -> None:
        results[task.run_dir] = result
        if phase == "tune":
            options.log(
                f"tune {task.run_dir.parent.name} {task.spec.method:>18} seed {task.spec.seed}: "
                f"best val acc {100 * result['best_val_acc']:.2f}% "
                f"(epoch {result['best_val_epoch']})"
            )
            return
        options.log(
            f"{task.spec.experiment.name} {task.spec.method:>18} seed {task.spec.seed}: "
            f"test acc @ best val {100 * result['test_acc_at_best_val']:.2f}% "
            f"(epoch {result['best_val_epoch']}), final {100 * result['final_test_acc']:.2f}%"
        )

    if options.jobs == 1:
        datasets: dict[int, PreparedData] = {}
        for task in tasks:
            try:
                seed = task.spec.seed
                if seed not in datasets:
                    datasets[seed] = _data(task.spec.experiment, seed, options)
                result = train_run(
                    task.spec,
                    task.run_dir,
                    datasets[seed],
                    resume=options.resume,
                    progress=options.progress,
                )
            except DatasetError:
                raise  # missing or corrupt data fails every run alike: say it once
            except TrainingDivergedError as error:
                diverged(task, str(error))
                continue
            except Exception:
                failures[str(task.run_dir)] = traceback.format_exc()
                options.log(f"{task.run_dir}: FAILED\n{failures[str(task.run_dir)]}")
                continue
            finished(task, result)
    else:
        _run_parallel(tasks, options, finished, failures, diverged)
    if failures:
        raise RunsFailedError(failures)
    return results


def _run_parallel(
    tasks: Sequence[_Task],
    options: RunOptions,
    finished: Callable[[_Task, dict[str, Any]], None],
    failures: dict[str, str],
    diverged: Callable[[_Task, str], None],
) -> None:
    """At most ``options.jobs`` spawned processes, one per run, threads split between them."""
    context = mp.get_context("spawn")  # fork after OpenMP threads started can deadlock
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cpus or 1) // options.jobs)
    worker_options = RunOptions(
        device=options.device,
        data_dir=options.data_dir,
        subset=options.subset,
        resume=options.resume,
        progress=False,
        jobs=1,
        compile=options.compile,
        plugins=options.plugins,
    )
    pending = list(tasks)
    running: dict[Any, tuple[_Task, Connection]] = {}
    try:
        _drive(
            pending,
            running,
            context,
            worker_options,
            threads,
            options,
            finished,
            failures,
            diverged,
        )
    except BaseException:  # a signal (Interrupted), or an error of the parent itself
        _stop(running, options.log)
        raise


def _stop(running: dict[Any, tuple[_Task, Connection]], log: Callable[[str], None]) -> None:
    """SIGTERM every running worker and wait for it (SIGKILL after a grace period): none may
    write into the run directory after the parent is gone."""
    for process in running:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + _WORKER_GRACE
    for process, (task, receive) in running.items():
        receive.close()
        if process.pid is None:  # interrupted before it started
            continue
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
        log(f"stopped {task.run_dir} (pid {process.pid}); continue it with --resume")
    running.clear()


def _drive(
    pending: list[_Task],
    running: dict[Any, tuple[_Task, Connection]],
    context: Any,
    worker_options: RunOptions,
    threads: int,
    options: RunOptions,
    finished: Callable[[_Task, dict[str, Any]], None],
    failures: dict[str, str],
    diverged: Callable[[_Task, str], None],
) -> None:
    """Start workers while there is room, collect the ones that ended, until all are done."""
    while pending or running:
        while pending and len(running) < options.jobs:
            task = pending.pop(0)
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker, args=(task, worker_options, threads, send), daemon=True
            )
            running[process] = (task, receive)  # first: a signal now still finds it
            process.start()
            send.close()
            options.log(f"started {task.run_dir} (pid {process.pid}, {threads} thread(s))")
        for process in list(running):
            task, receive = running[process]
            message = None
            if receive.poll():
                try:
                    message = receive.recv()
                except EOFError:  # the process died without a word
                    message = None
            elif process.is_alive():
                continue
            process.join()
            del running[process]
            receive.close()
            if message is not None and message[0] == "ok":
                finished(task, message[1])
            elif message is not None and message[0] == "diverged":
                diverged(task, message[1])
            else:
                reason = message[1] if message else f"process exited with code {process.exitcode}"
                failures[str(task.run_dir)] = reason
                options.log(f"{task.run_dir}: FAILED\n{reason}")
        time.sleep(0.2)


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
    _check_seeds(seeds)
    out = Path(out)
    tune = {k: list(v) for k, v in (tune or {}).items()}
    extra_seeds: list[int] = []
    if tune:
        check_tune(tune, methods, experiment)
        extra_seeds = tune_seeds(seeds, tune_seed_count)
    n_tune = sum(len(p) for m in methods if (p := _points(tune, m)) != [{}]) * len(extra_seeds)
    _check_jobs(options.jobs, max(len(methods) * len(seeds), n_tune))
    check_out_dir(out)  # before anything is loaded or written
    load_dataset(experiment.dataset, options.data_dir)  # missing data: one error, nothing written
    with _signals_interrupt(), lock_run_dir(out, options.log):
        _start(
            out,
            experiment,
            methods,
            seeds,
            options,
            tune=_tune_config(tune, extra_seeds),
            record=record,
        )
        chosen: dict[str, dict[str, float]] = {}
        if tune:
            record = _tune(out, experiment, methods, tune, extra_seeds, options)
            atomic_write_json(
                out / "tune.json",
                {**(_tune_config(tune, extra_seeds) or {}), "methods": record},
            )
            chosen = {m: r["selected"] for m, r in record.items()}
            for method, point in chosen.items():
                if point:
                    options.log(f"tuned {method}: {_label(point)} (best on validation)")
            # What the evaluation runs are trained with, for the tools that rebuild their models.
            config = read_json_file(out / "config.json")
            atomic_write_json(out / "config.json", {**config, "tuned": chosen})
        tasks = []
        for seed in seeds:
            for method in methods:
                tasks.append(
                    _Task(
                        RunSpec(
                            _evaluation_experiment(experiment, method, chosen.get(method, {})),
                            method,
                            seed,
                            options.device,
                            compile=options.compile,
                        ),
                        out / "runs" / method / f"seed{seed}",
                    )
                )
        try:
            _execute(tasks, dataclasses.replace(options, jobs=min(options.jobs, len(tasks))))
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
    _check_seeds(seeds)
    tune = {k: list(v) for k, v in (tune or {}).items()}
    extra_seeds: list[int] = []
    if tune:
        check_sweep_tune(tune)
        extra_seeds = tune_seeds(seeds, tune_seed_count)
    defaults = (0.3, 0.5, 0.5)
    full = {k: list(grid.get(k, [d])) for k, d in zip(names, defaults, strict=True)}
    cells = list(product(full["p"], full["pg"], full["tau"]))
    n_points = len(list(product(*tune.values()))) if tune else 0
    _check_jobs(
        options.jobs, max(len(cells) * len(seeds), len(cells) * n_points * len(extra_seeds))
    )
    check_out_dir(out)  # before anything is loaded or written
    load_dataset(experiment.dataset, options.data_dir)
    with _signals_interrupt(), lock_run_dir(out, options.log):
        _start(
            out,
            experiment,
            ["ddc"],
            seeds,
            options,
            full,
            tune=_tune_config(tune, extra_seeds),
            matched=matched,
            record=record,
        )
        cell_keys = {cell: f"ddc:p{cell[0]}_pg{cell[1]}_tau{cell[2]}" for cell in cells}
        chosen: dict[str, dict[str, float]] = {}
        tune_record: dict[str, Any] = {}
        if tune:
            tune_record = _tune(
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
                out / "tune.json", {**(_tune_config(tune, extra_seeds) or {}), "cells": tune_record}
            )
        tasks = []
        for p, pg, tau in cells:
            cell_experiment = _split_point(experiment, chosen.get(cell_keys[(p, pg, tau)], {}))[0]
            tasks += [
                _Task(
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
        results = _execute(tasks, dataclasses.replace(options, jobs=min(options.jobs, len(tasks))))
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
            matched_record = _tune(
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
                out / "tune.json", {**(_tune_config(tune, extra_seeds) or {}), "cells": tune_record}
            )
        if matched:
            twin_experiment = {
                f"{r:.2f}": _split_point(
                    experiment, matched_chosen.get(f"dropconnect:{r:.2f}", {})
                )[0]
                for r in set(rates.values())
            }
            matched_tasks = {
                out / "matched" / f"dropconnect_p{rate:.2f}" / f"seed{seed}": _Task(
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
            matched_results = _execute(
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
