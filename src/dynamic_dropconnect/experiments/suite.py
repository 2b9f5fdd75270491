"""Running many trainings: method × seed comparisons and hyperparameter sweeps.

Layout of a run directory (every file written atomically)::

    RUN_DIR/config.json                        resolved configuration
    RUN_DIR/runs/<method>/seed<k>/metrics.csv  per-epoch losses, accuracies, lr, drop statistics
    RUN_DIR/runs/<method>/seed<k>/result.json  accuracies at best-val / final / max epoch
    RUN_DIR/runs/<method>/seed<k>/checkpoint.pt last finished epoch, for --resume
    RUN_DIR/runs/<method>/seed<k>/checkpoint.pt.sha256  its digest, checked on load
    RUN_DIR/results.json, results.md, plots/   written by :func:`report.write_report`
    RUN_DIR/.ddc-lock                          pid and host of the ddc writing RUN_DIR

Before anything is written every option is checked, and ``--out`` must be new, empty or a run
of ours. One compare or sweep at a time holds a run directory (:func:`lock_run_dir`); SIGTERM
or SIGINT stops its workers before it exits.

Runs go one after another in this process, or ``jobs`` at a time in worker processes (spawned,
one per run, with the CPU threads split between them). A run that fails, even one whose process
is killed, is reported and the others go on; :class:`RunsFailedError` lists the failures at the
end, after the report of the finished runs is written.
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
from collections.abc import Callable, Iterator, Sequence
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
from .io import atomic_write_json, atomic_write_text, pid_alive, read_json_file
from .methods import METHODS, apply_method
from .report import format_sweep_table, mean_drop_rate, plot_sweep_heatmap, write_report
from .training import PreparedData, RunSpec, prepare_data, train_run

__all__ = [
    "Interrupted",
    "RunDirError",
    "RunOptions",
    "RunsFailedError",
    "check_grid",
    "check_out_dir",
    "compare",
    "lock_run_dir",
    "shortened",
    "sweep",
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


def check_grid(grid: dict[str, Sequence[float]], experiment: Experiment) -> None:
    """``ValueError`` naming the flag (``--p``, ``--pg``, ``--tau``) for a sweep value that is
    repeated, not finite or out of range, or a cell that DDC refuses (``p`` above ``p_max``)."""
    bad = set(grid) - set(_GRID_RANGES)
    if bad:
        raise ValueError(f"sweep parameters must be among {tuple(_GRID_RANGES)}, got {sorted(bad)}")
    for name, values in grid.items():
        flag = f"--{name}"
        if not values:
            raise ValueError(f"{flag} is empty; give one or more comma-separated numbers")
        repeated = [v for i, v in enumerate(values) if v in values[:i]]
        if repeated:
            raise ValueError(
                f"{flag} {','.join(map(str, values))} repeats {repeated[0]}; each value must be "
                "given once"
            )
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
    jobs: int = 1
    compile: bool = False  # torch.compile every run's training step (part of the run's config)


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
        "compile": options.compile,
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
        data = _data(task.spec.experiment, task.spec.seed, options)
        result = train_run(task.spec, task.run_dir, data, resume=options.resume, progress=False)
        conn.send(("ok", result))
    except BaseException:  # reported to the parent, which goes on with the other runs
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _execute(tasks: Sequence[_Task], options: RunOptions) -> dict[Path, dict[str, Any]]:
    """Run ``tasks`` (``options.jobs`` at a time); results by run dir, failures raised last."""
    _check_jobs(options.jobs, len(tasks))
    results: dict[Path, dict[str, Any]] = {}
    failures: dict[str, str] = {}

    def finished(task: _Task, result: dict[str, Any]) -> None:
        results[task.run_dir] = result
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
            except Exception:
                failures[str(task.run_dir)] = traceback.format_exc()
                options.log(f"{task.run_dir}: FAILED\n{failures[str(task.run_dir)]}")
                continue
            finished(task, result)
    else:
        _run_parallel(tasks, options, finished, failures)
    if failures:
        raise RunsFailedError(failures)
    return results


def _run_parallel(
    tasks: Sequence[_Task],
    options: RunOptions,
    finished: Callable[[_Task, dict[str, Any]], None],
    failures: dict[str, str],
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
    )
    pending = list(tasks)
    running: dict[Any, tuple[_Task, Connection]] = {}
    try:
        _drive(pending, running, context, worker_options, threads, options, finished, failures)
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
) -> Path:
    """Train every method × seed of ``experiment`` into ``out`` and write the report.

    Returns the path of ``results.md``. Seeds pair the runs: the same seed gives every method
    the same split, initial weights and batch order, so the paired test is meaningful. With
    ``options.jobs > 1`` the runs go in parallel worker processes. When runs fail, the report of
    the others is still written and :class:`RunsFailedError` is raised.
    """
    options = options or RunOptions()
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) < len(methods):
        raise ValueError(
            f"methods must be one or more different ones of {', '.join(METHODS)}; got "
            f"{', '.join(methods) or 'none'}"
        )
    _check_seeds(seeds)
    out = Path(out)
    tasks = [
        _Task(
            RunSpec(experiment, method, seed, options.device, compile=options.compile),
            out / "runs" / method / f"seed{seed}",
        )
        for seed in seeds
        for method in methods
    ]
    _check_jobs(options.jobs, len(tasks))
    check_out_dir(out)  # before anything is loaded or written
    load_dataset(experiment.dataset, options.data_dir)  # missing data: one error, nothing written
    with _signals_interrupt(), lock_run_dir(out, options.log):
        _start(out, experiment, methods, seeds, options)
        try:
            _execute(tasks, options)
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
) -> Path:
    """Grid over DDC's ``p``, ``pg``, ``tau``; writes ``sweep.json``, ``sweep.md`` and heatmaps.

    Parameters left out of ``grid`` keep their defaults; ``p + pg`` above 1 is clamped by
    ``p_max``. With ``matched`` every cell also gets DropConnect at the cell's measured mean
    drop rate (the realized rate of its DDC runs, averaged over epochs and seeds, rounded to
    0.01; cells with the same rate share those runs), trained on the same seeds, and the
    gain of DDC over it. Returns the path of ``sweep.json``.
    """
    options = options or RunOptions()
    out = Path(out)
    names = ("p", "pg", "tau")
    check_grid(grid, experiment)
    _check_seeds(seeds)
    defaults = (0.3, 0.5, 0.5)
    full = {k: list(grid.get(k, [d])) for k, d in zip(names, defaults, strict=True)}
    cells = list(product(full["p"], full["pg"], full["tau"]))
    tasks = [
        _Task(
            RunSpec(
                experiment,
                "ddc",
                seed,
                options.device,
                {"p": p, "pg": pg, "tau": tau},
                compile=options.compile,
            ),
            out / "grid" / f"p{p}_pg{pg}_tau{tau}" / f"seed{seed}",
        )
        for p, pg, tau in cells
        for seed in seeds
    ]
    _check_jobs(options.jobs, len(tasks))
    check_out_dir(out)  # before anything is loaded or written
    load_dataset(experiment.dataset, options.data_dir)
    with _signals_interrupt(), lock_run_dir(out, options.log):
        _start(out, experiment, ["ddc"], seeds, options, full)
        results = _execute(tasks, options)
        by_cell: dict[tuple[float, float, float], list[float]] = {}
        for task in tasks:  # the run directories of the tasks, not a second copy of their paths
            hp = task.spec.method_options
            by_cell.setdefault((hp["p"], hp["pg"], hp["tau"]), []).append(
                mean_drop_rate(task.run_dir)
            )
        rates = {cell: float(np.nanmean(values)) for cell, values in by_cell.items()}
        matched_results: dict[Path, dict[str, Any]] = {}
        if matched:
            matched_tasks = {
                out / "matched" / f"dropconnect_p{rate:.2f}" / f"seed{seed}": _Task(
                    RunSpec(
                        experiment,
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
        protocol = (
            f"{experiment.epochs} epochs, peak lr {experiment.lr:g}, {experiment.schedule} schedule"
            + (f", at most {options.subset} examples per split" if options.subset else "")
        )
        atomic_write_text(
            out / "sweep.md", format_sweep_table(rows, experiment.name, len(seeds), protocol)
        )
        return out / "sweep.json"


def shortened(experiment: Experiment, epochs: int | None) -> Experiment:
    """``experiment`` with ``epochs`` (warmup scaled), or unchanged for ``None``."""
    return experiment if epochs is None else experiment.with_epochs(epochs)
