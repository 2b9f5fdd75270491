"""The output directory of a compare or sweep, as the suite holds it.

One compare or sweep at a time holds a run directory (:func:`lock_run_dir`, the lock file
:data:`LOCK_NAME`); ``--out`` must be new, empty or a run of ours (:func:`check_out_dir`);
:func:`open_run_dir` writes its ``config.json``, or checks that a ``--resume`` matches it, and
:func:`saved_run` reads it back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Experiment
from .execution import RunOptions
from .methods import METHODS
from .plugins import check_plugin_names
from .storage import atomic_write_json, pid_alive, read_json_file
from .tuning import describe_config_tune

__all__ = [
    "LOCK_NAME",
    "RunDirError",
    "SavedRun",
    "check_out_dir",
    "lock_run_dir",
    "open_run_dir",
    "saved_run",
]


class RunDirError(RuntimeError):
    """A run directory that would be overwritten, or a resume that does not match."""


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


def _write_config(out: Path, config: dict[str, Any], resume: bool, experiment: Experiment) -> None:
    """Write ``config`` as ``out/config.json``; on ``resume``, refuse one that differs from the
    recorded run, and merge the two (methods and seeds of both, keys only the old one has)."""
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
            old, new = describe_config_tune(previous), describe_config_tune(config)
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


def open_run_dir(
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
    """Write ``out/config.json``: the run ``compare`` (``hyperparameters=None``) or ``sweep``
    is asked for; with ``options.resume``, the run there must be the same one (RunDirError)."""
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
    _write_config(out, config, options.resume, experiment)
