"""Executing runs: one after another in this process, or ``jobs`` at a time in worker processes.

Workers are spawned, one per run, with the CPU threads split between them; each imports
``RunOptions.plugins`` first, since a fresh process knows the built-in models, datasets and
methods only. A run that fails, even one whose process is killed, is reported and the others
go on; :class:`RunsFailedError` lists the failures at the end. SIGTERM or SIGINT
(:func:`signals_interrupt`) stops the workers before the caller exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from .config import Experiment
from .datasets import DatasetError
from .plugins import load_plugins
from .training import PreparedData, RunSpec, TrainingDivergedError, prepare_data, train_run

__all__ = [
    "DIVERGED",
    "Interrupted",
    "RunOptions",
    "RunsFailedError",
    "Task",
    "check_jobs",
    "check_seeds",
    "die_with_parent",
    "execute",
    "run_data",
    "signals_interrupt",
    "worker",
]

#: The key of a tune run's result that marks it diverged (non-finite loss): scored NaN.
DIVERGED = "diverged"


class Interrupted(BaseException):
    """SIGTERM or SIGINT: the workers were stopped. A ``BaseException`` so that no run counts
    it as its own failure."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
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


def run_data(experiment: Experiment, seed: int, options: RunOptions) -> PreparedData:
    """The data of one seed's runs, as ``options`` asks for it (directory, subset, device)."""
    return prepare_data(
        experiment,
        seed=seed,
        data_dir=options.data_dir,
        subset=options.subset,
        device=options.device,
    )


@dataclass(frozen=True)
class Task:
    """One run to execute: what to train, and the directory it writes."""

    spec: RunSpec
    run_dir: Path


def check_seeds(seeds: Sequence[int]) -> None:
    """``ValueError`` unless ``seeds`` are one or more different whole numbers >= 0."""
    if not seeds or len(set(seeds)) < len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be one or more different whole numbers >= 0, got {seeds}")


def check_jobs(jobs: int, n_tasks: int) -> None:
    """``ValueError`` unless ``jobs`` is a whole number from 1 to ``n_tasks``."""
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    if jobs > n_tasks:
        raise ValueError(
            f"--jobs {jobs} is more than the {n_tasks} run(s) to do; use --jobs {n_tasks} or fewer"
        )


def die_with_parent() -> None:
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


def worker(task: Task, options: RunOptions, threads: int, conn: Connection) -> None:
    """One run in a spawned process; sends ``("ok", result)`` or ``("error", traceback)``."""
    die_with_parent()
    torch.set_num_threads(threads)
    try:
        # A spawned process starts with the built-ins only: import what registered the rest.
        load_plugins(options.plugins)
        data = run_data(task.spec.experiment, task.spec.seed, options)
        result = train_run(task.spec, task.run_dir, data, resume=options.resume, progress=False)
        conn.send(("ok", result))
    except TrainingDivergedError as diverged:  # an outcome of a tune point, see execute
        conn.send(("diverged", str(diverged)))
    except BaseException:  # reported to the parent, which goes on with the other runs
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def execute(
    tasks: Sequence[Task], options: RunOptions, phase: str = ""
) -> dict[Path, dict[str, Any]]:
    """Run ``tasks`` (``options.jobs`` at a time); results by run dir, failures raised last.
    In the ``"tune"`` phase only validation numbers are logged, and a run whose loss became
    non-finite is an outcome, not a failure: its result is ``{DIVERGED: message}`` (too high a
    learning rate is what a grid is there to find); elsewhere it fails like any error."""
    check_jobs(options.jobs, len(tasks))
    results: dict[Path, dict[str, Any]] = {}
    failures: dict[str, str] = {}

    def diverged(task: Task, message: str) -> None:
        if phase != "tune":
            failures[str(task.run_dir)] = message
            options.log(f"{task.run_dir}: FAILED\n{message}")
            return
        results[task.run_dir] = {DIVERGED: message}
        options.log(
            f"tune {task.run_dir.parent.name} {task.spec.method:>18} "
            f"seed {task.spec.seed}: diverged (never chosen)"
        )

    def finished(task: Task, result: dict[str, Any]) -> None:
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
                    datasets[seed] = run_data(task.spec.experiment, seed, options)
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
    tasks: Sequence[Task],
    options: RunOptions,
    finished: Callable[[Task, dict[str, Any]], None],
    failures: dict[str, str],
    diverged: Callable[[Task, str], None],
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
    running: dict[Any, tuple[Task, Connection]] = {}
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


def _stop(running: dict[Any, tuple[Task, Connection]], log: Callable[[str], None]) -> None:
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
    pending: list[Task],
    running: dict[Any, tuple[Task, Connection]],
    context: Any,
    worker_options: RunOptions,
    threads: int,
    options: RunOptions,
    finished: Callable[[Task, dict[str, Any]], None],
    failures: dict[str, str],
    diverged: Callable[[Task, str], None],
) -> None:
    """Start workers while there is room, collect the ones that ended, until all are done."""
    while pending or running:
        while pending and len(running) < options.jobs:
            task = pending.pop(0)
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=worker, args=(task, worker_options, threads, send), daemon=True
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
