"""Reading overrides from the user's text (see :mod:`.overrides`): ``--set KEY=VALUE`` items
(:func:`parse_set`) and ``--config FILE.toml`` experiment files (:func:`load_config_file`).

Both hand their keys to :func:`.override_keys.normalize`, so they give the same canonical
``{key: value}`` and the same errors; an experiment file's ``[run]`` table (the defaults of the
CLI's run flags, :data:`RUN_OPTIONS`) is checked here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import get_experiment
from .methods import METHODS
from .override_keys import ConfigError, coerce, did_you_mean, normalize, valid_keys_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser as the tomli package, when installed
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

__all__ = ["RUN_OPTIONS", "ConfigFile", "load_config_file", "parse_set"]

#: The ``[run]`` table of an experiment file: CLI run options, as ``name: type``.
RUN_OPTIONS: dict[str, type] = {
    "methods": list,
    "seeds": int,
    "seed0": int,
    "subset": int,
    "jobs": int,
    "compile": bool,
}
#: Smallest valid value of the whole-number run options.
_RUN_MINIMUM = {"seeds": 1, "seed0": 0, "subset": 1, "jobs": 1}


# --------------------------------------------------------------------------------------------
# --set items
# --------------------------------------------------------------------------------------------


def _loads_value(text: str) -> Any:
    """``text`` as one TOML value (JSON on Python 3.10 without tomli); ValueError if not."""
    if tomllib is None:
        return json.loads(text)
    parsed = tomllib.loads(f"value = {text}")
    if list(parsed) != ["value"]:
        raise ValueError(f"{text!r} is more than one value")
    return parsed["value"]


def _parse_value(text: str) -> Any:
    """A ``--set`` value: TOML, or a bare word as a string (``adam``, ``none``)."""
    text = text.strip()
    if not text:
        raise ConfigError('the value is empty; give one (an empty string: key="")')
    try:
        return _loads_value(text)
    except ValueError:
        # a broken quote, list or table is a typo, not a word
        if text[0] in "\"'[{" or any(c in text for c in "\"'[]{}=#\n"):
            raise ConfigError(
                f"cannot read value {text!r}: not a TOML value (numbers: 0.2, 1e-3; "
                'true/false; strings: adam or "adam"; lists: [1, 2])'
            ) from None
        return text


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """The ``--set KEY=VALUE`` items as ``{canonical key: value}``; a later item wins.

    >>> parse_set(["ddc.p=0.2", "optimizer.weight_decay=0", "optimizer=adam"])
    {'ddc.p': 0.2, 'weight_decay': 0.0, 'optimizer': 'adam'}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        where = f"--set {item}"
        if not eq:
            raise ConfigError(f"{where}: expected KEY=VALUE, e.g. --set ddc.p=0.2")
        if not key.strip():
            raise ConfigError(f"{where}: the key is empty; {valid_keys_text()}")
        try:
            value = _parse_value(text)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        for canonical, coerced in normalize({key.strip(): value}, where=where).items():
            out.pop(canonical, None)
            out[canonical] = coerced
    return out


# --------------------------------------------------------------------------------------------
# Experiment files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigFile:
    """An experiment file, read by :func:`load_config_file`.

    ``experiment``: the base experiment it names (``None``: the CLI's). ``overrides``: its
    settings with canonical keys (see :func:`normalize`). ``run``: its ``[run]`` table, the
    defaults of the CLI's run flags (:data:`RUN_OPTIONS`).
    """

    path: str
    experiment: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)


def _run_options(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: run must be a table ([run]), got {table!r}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in RUN_OPTIONS:
            raise ConfigError(
                f"{where}: unknown key 'run.{key}'{did_you_mean(key, RUN_OPTIONS)}; valid: "
                + ", ".join(f"run.{k}" for k in RUN_OPTIONS)
            )
        kind = RUN_OPTIONS[key]
        if kind is list:
            names = [value] if isinstance(value, str) else value
            if (
                not isinstance(names, list)
                or not names
                or not all(isinstance(n, str) for n in names)
            ):
                raise ConfigError(f"{where}: run.{key} must be a list of names, got {value!r}")
            unknown = [n for n in names if n not in METHODS]
            if unknown:
                raise ConfigError(
                    f"{where}: run.{key}: unknown method {unknown[0]!r}; "
                    f"valid: {', '.join(METHODS)}"
                )
            value = list(names)
        else:
            try:
                value = coerce(f"run.{key}", value, kind)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
            if kind is int and value < _RUN_MINIMUM[key]:
                raise ConfigError(f"{where}: run.{key} must be >= {_RUN_MINIMUM[key]}, got {value}")
        out[key] = value
    return out


def load_config_file(path: str | Path) -> ConfigFile:
    """Read the experiment file ``path`` (TOML); :class:`ConfigError` names the file and key.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
    ...     _ = f.write('epochs = 4\\n[methods.ddc]\\np = 0.2\\n[run]\\nseeds = 2\\n')
    >>> config = load_config_file(f.name); os.unlink(f.name)
    >>> config.overrides, config.run
    ({'epochs': 4, 'ddc.p': 0.2}, {'seeds': 2})
    """
    where = f"--config {path}"
    if tomllib is None:
        raise ConfigError(f"{where}: reading TOML needs Python 3.11+ or the tomli package")
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as err:
        raise ConfigError(f"{where}: cannot read it ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: not valid TOML: {err}") from None
    experiment = data.pop("experiment", None)
    if experiment is not None:
        if not isinstance(experiment, str):
            raise ConfigError(f"{where}: experiment must be a name, got {experiment!r}")
        try:
            get_experiment(experiment)
        except ValueError as err:
            raise ConfigError(f"{where}: key 'experiment': {err}") from None
    run = _run_options(data.pop("run", {}), where)
    overrides = normalize(data, where=where)
    return ConfigFile(str(path), experiment, overrides, run)
