"""Experiment files (``--config run.toml``) and ``--set key=value`` overrides.

An experiment file is TOML (read with the standard library's :mod:`tomllib`)::

    experiment = "mnist-simplecnn1"   # the base experiment (optional)
    epochs = 10
    lr = 0.01

    [optimizer]
    name = "sgd"                      # Experiment.optimizer
    weight_decay = 0.0005
    momentum = 0.9

    [model]                           # model_options (also spelled [model_options])
    variant = "mnist"

    [methods.ddc]                     # method_options["ddc"] (also [method_options.ddc])
    p = 0.2
    pg = 0.6

    [run]                             # run options: defaults of the CLI's flags
    methods = ["none", "ddc"]
    seeds = 3

``--set`` takes the same keys, dotted: ``--set epochs=10 --set ddc.p=0.2
--set optimizer.weight_decay=0``.

Keys (one canonical spelling each, which config.json records):

- every field of :class:`~.config.Experiment` (``epochs``, ``lr``, ``schedule``, ...);
  ``optimizer.name``, ``optimizer.lr``, ``optimizer.weight_decay`` and
  ``optimizer.momentum`` are aliases of ``optimizer``, ``lr``, ``weight_decay`` and
  ``momentum``;
- ``model.<option>`` (or ``model_options.<option>``): a keyword of the model's constructor,
  checked against the final model's signature;
- ``<method>.<option>`` (or ``methods.<method>.<option>``, ``method_options.<method>.<option>``):
  an option of a method of :data:`~.methods.METHODS`. The valid names come from the signature of
  the class the method builds (:func:`method_option_names`), so they follow the library.

Values are TOML values; on the command line a bare word that is not TOML is taken as a string
(``--set optimizer=adam``), so quoting is needed only for strings TOML would read otherwise
(``--set name='"1"'``). ``int`` fields refuse ``2.5``, ``float`` fields take ``10``, ``bool``
fields take only ``true``/``false``, and an optional field (``image_size``) is unset with
``none``. Every error names the key and lists what is valid (:class:`ConfigError`).

Precedence, lowest first: the experiment's own settings < the ``--config`` file < the
dedicated flags (``--epochs``, ``--lr``, ``--schedule``) < ``--set`` items, a later ``--set``
winning over an earlier one. A key given twice in one file (``weight_decay`` and
``optimizer.weight_decay``) is an error. ``epochs`` keeps the warmup's share of the schedule
(:meth:`~.config.Experiment.with_epochs`) unless ``warmup`` is set too; a different ``model``
starts from no model options (the base's belong to its model); method options add to the
experiment's own.

Resolving everything at once::

    config = load_config_file("run.toml")
    resolved = resolve(None, config, sets=["ddc.p=0.2"])
    resolved.experiment.method_options["ddc"]  # {'p': 0.2}
    resolved.describe()  # for config.json; report.format_header shows it in results.md
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from torch import nn

import dynamic_dropconnect as ddc

from .config import DEFAULT_EXPERIMENT, Experiment, get_experiment
from .datasets import DATASETS
from .methods import METHODS, experiment_overrides
from .models import MODELS, LockedDropout, build_model

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser as the tomli package, when installed
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

__all__ = [
    "RUN_OPTIONS",
    "ConfigError",
    "ConfigFile",
    "Resolved",
    "apply_overrides",
    "describe",
    "load_config_file",
    "method_option_names",
    "model_option_names",
    "normalize",
    "parse_set",
    "resolve",
    "valid_keys",
]


class ConfigError(ValueError):
    """A bad key or value in ``--config``/``--set``; the message names it and what is valid."""


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

#: The [optimizer] table's keys, as the Experiment fields they set.
_OPTIMIZER_KEYS = {
    "name": "optimizer",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "momentum": "momentum",
}
_MODEL_PREFIXES = ("model", "model_options")
_METHOD_PREFIXES = ("methods", "method_options")
_TABLE_FIELDS = ("model_options", "method_options")
#: Constructor arguments that hold objects, not values a file can give.
_NOT_CONFIGURABLE = frozenset({"generator", "activation"})
#: Model arguments the training code derives from the data (training.build passes them).
_DATA_DERIVED = frozenset({"vocab_size"})
#: The library's regularizer classes by the name ``ddc.apply`` takes: ``REGULARIZERS``, called
#: ``METHODS`` before the library renamed it (the old name warns).
_REGULARIZERS: dict[str, type[nn.Module]] = getattr(ddc, "REGULARIZERS", None) or ddc.METHODS
#: Method kinds that build one object from fixed options (apply_method reads those keys only).
_FIXED_KIND_CLASSES: dict[str, type[nn.Module]] = {
    "dropout": nn.Dropout,
    "locked-dropout": LockedDropout,
    "standout": ddc.Standout,
}


# --------------------------------------------------------------------------------------------
# What is valid
# --------------------------------------------------------------------------------------------


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Experiment)


def _scalar_fields() -> list[str]:
    return sorted(f.name for f in fields(Experiment) if f.name not in _TABLE_FIELDS)


def valid_keys() -> list[str]:
    """Every key ``--set`` accepts, as patterns (for help texts and errors): the fields,
    the optimizer aliases, ``model.<option>`` and ``<method>.<option>``.

    >>> keys = valid_keys()
    >>> "epochs" in keys and "optimizer.weight_decay" in keys and "<method>.<option>" in keys
    True
    """
    optimizer = [f"optimizer.{k}" for k in _OPTIMIZER_KEYS]
    return [*_scalar_fields(), *optimizer, "model.<option>", "<method>.<option>"]


def _valid_text() -> str:
    return f"valid: {', '.join(valid_keys())} (<method>: {', '.join(METHODS)})"


def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Named constructor parameters of ``cls``, following ``**options`` up the MRO (a
    regularizer hands its ``**options`` to :class:`~dynamic_dropconnect.WeightRegularizer`)."""
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass in (nn.Module, object):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())[1:]
        for param in params:
            if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                out.setdefault(param.name, param)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return {k: v for k, v in out.items() if k not in _NOT_CONFIGURABLE}


def _method_parameters(method: str) -> dict[str, inspect.Parameter] | None:
    """``{option: parameter}`` of method ``method``; ``None`` for a kind this module does not
    know (a method registered with its own builder: its options are not checked here)."""
    kind = METHODS[method].kind
    if kind == "none":
        return {}
    if kind in _REGULARIZERS:  # apply_method hands every option to ddc.apply, i.e. the class
        return _init_parameters(_REGULARIZERS[kind])
    if kind in _FIXED_KIND_CLASSES:  # apply_method passes only the options it has defaults for
        params = _init_parameters(_FIXED_KIND_CLASSES[kind])
        return {k: v for k, v in params.items() if k in METHODS[method].options}
    return None


def method_option_names(method: str) -> list[str] | None:
    """The options method ``method`` takes (from its class's constructor), sorted; ``None``
    when they cannot be known (a method kind this module does not know).

    >>> method_option_names("standout")
    ['alpha', 'beta']
    >>> "pg" in method_option_names("ddc") and "rescale" in method_option_names("ddc")
    True
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    params = _method_parameters(method)
    return None if params is None else sorted(params)


def model_option_names(model: str) -> list[str] | None:
    """The options (constructor keywords) model ``model`` takes, sorted; ``None`` when its
    constructor takes any keyword.

    >>> model_option_names("mlp")
    ['hidden']
    """
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")
    params = inspect.signature(MODELS[model]).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    # build_model fills its own keyword-only arguments (num_classes, in_channels, image_size)
    filled = {
        p.name
        for p in inspect.signature(build_model).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    }
    skip = filled | _DATA_DERIVED | _NOT_CONFIGURABLE
    return sorted(p.name for p in params if p.name not in skip and p.kind is not p.VAR_POSITIONAL)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------------------------
# Keys and values
# --------------------------------------------------------------------------------------------


def _flatten(raw: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``[(dotted key, value)]``; a table (dict) value becomes dotted keys."""
    out: list[tuple[str, Any]] = []
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if not value:
                raise ConfigError(f"{dotted} is an empty table; give its keys or leave it out")
            out += _flatten(value, dotted + ".")
        else:
            out.append((dotted, value))
    return out


def _method_key(method: str, option: str, key: str) -> str:
    if method not in METHODS:
        raise ConfigError(
            f"unknown method {method!r} in key {key!r}{_did_you_mean(method, METHODS)}; "
            f"valid methods: {', '.join(METHODS)}"
        )
    params = _method_parameters(method)
    if params is not None and option not in params:
        valid = ", ".join(sorted(params)) or "none (it takes no options)"
        raise ConfigError(
            f"unknown option {option!r} of method {method!r} in key {key!r}"
            f"{_did_you_mean(option, params)}; valid options of {method}: {valid}"
        )
    return f"{method}.{option}"


def _canonical_key(key: str) -> str:
    """The one spelling of ``key`` (``optimizer.weight_decay`` -> ``weight_decay``,
    ``methods.ddc.p`` -> ``ddc.p``, ``model_options.hidden`` -> ``model.hidden``)."""
    parts = key.split(".")
    if not all(part.strip() for part in parts):
        raise ConfigError(f"key {key!r} has an empty part; {_valid_text()}")
    parts = [part.strip() for part in parts]
    head = parts[0]
    if len(parts) == 1:
        if head in _scalar_fields():
            return head
        if head == "experiment":
            raise ConfigError(
                "key 'experiment' chooses the base experiment: give it as --experiment NAME or "
                "at the top of the --config file"
            )
        if head in METHODS:
            raise ConfigError(
                f"key {key!r} is a method; set its options as {head}.<option>, valid options: "
                f"{', '.join(method_option_names(head) or ['any'])}"
            )
        if head in _TABLE_FIELDS:
            raise ConfigError(f"key {key!r} takes a table, e.g. {head}.<name>=value")
        raise ConfigError(
            f"unknown key {key!r}{_did_you_mean(head, valid_keys())}; {_valid_text()}"
        )
    if len(parts) == 2 and head == "optimizer":
        if parts[1] not in _OPTIMIZER_KEYS:
            valid = ", ".join(f"optimizer.{k}" for k in _OPTIMIZER_KEYS)
            raise ConfigError(f"unknown key {key!r}; valid: {valid}")
        return _OPTIMIZER_KEYS[parts[1]]
    if len(parts) == 2 and head in _MODEL_PREFIXES:
        return f"model.{parts[1]}"
    if len(parts) == 2 and head not in _METHOD_PREFIXES:
        return _method_key(head, parts[1], key)
    if len(parts) == 3 and head in _METHOD_PREFIXES:
        return _method_key(parts[1], parts[2], key)
    raise ConfigError(f"unknown key {key!r}; {_valid_text()}")


def _check_plain(key: str, value: Any) -> None:
    """Refuse what config.json cannot hold as it was given (TOML dates, inf, nan); None is
    an unset optional value (``none`` already read)."""
    if isinstance(value, list):
        for item in value:
            _check_plain(key, item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: a value must be a finite number")
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise ConfigError(
            f"{key}={value!r}: a {type(value).__name__} is not a setting value; valid: "
            "numbers, true/false, strings and lists of them"
        )


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` of Experiment field ``key`` (int refuses 2.5, float takes
    10, bool takes only true/false, ``X | None`` takes ``none``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        hint = args[0] if len(args) == 1 else Any
        optional = " or none"
    else:
        optional = ""
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false{optional}, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be a whole number{optional}, got {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number{optional}, got {value!r}")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string{optional}, got {value!r}")
    return value


def _coerce_option(key: str, value: Any) -> Any:
    """A method option: ``0`` for an option whose default is a float becomes ``0.0`` (so
    config.json and the resume check see one spelling of the same value); ``none`` is None
    for an option that takes None (``ddc.p_max=none``)."""
    method, option = key.split(".", 1)
    param = (_method_parameters(method) or {}).get(option)
    if param is None:
        return value
    # annotations are strings here (the library uses `from __future__ import annotations`)
    takes_none = "None" in [part.strip() for part in str(param.annotation).split("|")]
    if takes_none and isinstance(value, str) and value.lower() == "none":
        return None
    default = METHODS[method].options.get(option, param.default)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def normalize(
    overrides: Mapping[str, Any], *, where: str = "overrides", last_wins: bool = False
) -> dict[str, Any]:
    """``overrides`` with canonical keys and values coerced to the fields' types.

    Tables (dict values) become dotted keys. Two spellings of one key are an error, unless
    ``last_wins`` (the ``--set`` items, in order). Errors start with ``where``.

    >>> normalize({"optimizer": {"weight_decay": 0, "name": "adam"}, "methods": {"ddc": {"p": 1}}})
    {'weight_decay': 0.0, 'optimizer': 'adam', 'ddc.p': 1.0}
    """
    hints = _field_types()
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    try:
        for raw_key, value in _flatten(overrides):
            key = _canonical_key(raw_key)
            _check_plain(raw_key, value)
            if key in hints:
                value = _coerce(raw_key, value, hints[key])
            elif not key.startswith("model."):
                value = _coerce_option(key, value)
            if key in out and not last_wins:
                raise ConfigError(
                    f"{raw_key} and {spelled[key]} are the same setting; give it once"
                    if raw_key != spelled[key]
                    else f"{raw_key} is given twice; give it once"
                )
            out.pop(key, None)  # a later --set moves to the end, so the order shows what won
            out[key] = value
            spelled[key] = raw_key
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return out


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
            raise ConfigError(f"{where}: the key is empty; {_valid_text()}")
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
                f"{where}: unknown key 'run.{key}'{_did_you_mean(key, RUN_OPTIONS)}; valid: "
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
                value = _coerce(f"run.{key}", value, kind)
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


# --------------------------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------------------------


def _with_fields(experiment: Experiment, updates: Mapping[str, Any]) -> Experiment:
    """``experiment`` with field ``updates``; epochs through ``with_epochs`` (warmup keeps its
    share) unless warmup is given, lr and weight_decay through their checked setters."""
    updates = dict(updates)
    if "epochs" in updates and "warmup" not in updates:
        experiment = experiment.with_epochs(updates.pop("epochs"))
    if "lr" in updates:
        experiment = experiment.with_lr(updates.pop("lr"))
    if "weight_decay" in updates:
        experiment = experiment.with_weight_decay(updates.pop("weight_decay"))
    return replace(experiment, **updates) if updates else experiment


def _fields_applied(experiment: Experiment, updates: dict[str, Any]) -> Experiment:
    """:func:`_with_fields`, with an error naming the key(s) that Experiment refuses."""
    try:
        return _with_fields(experiment, updates)
    except ValueError as err:
        message = str(err)
        culprits = []
        for key, value in updates.items():  # which key alone is refused, to name it
            try:
                _with_fields(experiment, {key: value})
            except ValueError as alone:
                culprits.append(key)
                message = str(alone)
        # a combination refused (warmup >= epochs): name the scalar keys given
        shown = culprits or [k for k in updates if k not in _TABLE_FIELDS] or list(updates)
        named = ", ".join(f"{k}={updates[k]!r}" for k in shown)
        raise ConfigError(f"{named}: {message}") from None


def _check_choice(key: str, value: str, valid: Iterable[str]) -> None:
    valid = list(valid)
    if value not in valid:
        raise ConfigError(
            f"{key}={value!r}: unknown {key}{_did_you_mean(value, valid)}; "
            f"valid: {', '.join(valid)}"
        )


def _check_method_values(
    method_options: Mapping[str, Mapping[str, Any]], changed: set[str]
) -> None:
    """Build each method whose options ``changed`` touch (controls take their base's) once,
    so a bad value fails here with its key, not in the middle of a run."""
    for name, method in METHODS.items():
        if name not in changed and method.base not in changed:
            continue
        options = {**method.options, **experiment_overrides(method_options, name)}
        kind = method.kind
        cls = _REGULARIZERS.get(kind) or _FIXED_KIND_CLASSES.get(kind)
        if cls is None or not options:
            continue
        try:
            cls(**options)
        except (TypeError, ValueError) as err:
            own = method_options.get(name, {})
            inherited = method_options.get(method.base or "", {})
            given = [f"{method.base}.{k}={v!r}" for k, v in inherited.items() if k not in own]
            given += [f"{name}.{k}={v!r}" for k, v in own.items()]
            named = ", ".join(given) or name
            raise ConfigError(f"{named}: method {name!r}: {err}") from None


def apply_overrides(experiment: Experiment, overrides: Mapping[str, Any]) -> Experiment:
    """``experiment`` with ``overrides`` (keys as :func:`normalize` takes them) applied.

    Every key is checked against Experiment's fields and the methods' and model's options,
    every value against its field's type; Experiment's own checks then run on the result
    (``dataclasses.replace``) and a refusal names the key. Method values are checked by
    building the method's regularizer once.

    >>> from dynamic_dropconnect.experiments.config import get_experiment
    >>> e = apply_overrides(get_experiment("mnist-simplecnn1"), {"epochs": 15, "ddc.p": 0.2})
    >>> e.epochs, e.warmup, e.method_options
    (15, 2, {'ddc': {'p': 0.2}})
    """
    overrides = normalize(overrides)
    updates: dict[str, Any] = {}
    model_options: dict[str, Any] = {}
    method_options: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if key.startswith("model."):
            model_options[key.removeprefix("model.")] = value
        elif "." in key:
            method, option = key.split(".", 1)
            method_options.setdefault(method, {})[option] = value
        else:
            updates[key] = value
    if "dataset" in updates:
        _check_choice("dataset", updates["dataset"], DATASETS)
    model = updates.get("model", experiment.model)
    if "model" in updates:
        _check_choice("model", model, MODELS)
    names = model_option_names(model) if model in MODELS else None
    for option in model_options:
        if names is not None and option not in names:
            raise ConfigError(
                f"model.{option}: unknown option of model {model!r}"
                f"{_did_you_mean(option, names)}; valid options of {model}: "
                + (", ".join(f"model.{n}" for n in names) or "none")
            )
    if model_options or model != experiment.model:
        # the base's model options belong to the base's model
        kept = experiment.model_options if model == experiment.model else {}
        updates["model_options"] = {**kept, **model_options}
    if method_options:
        merged = {m: dict(o) for m, o in experiment.method_options.items()}
        for method, options in method_options.items():
            merged[method] = {**merged.get(method, {}), **options}
        _check_method_values(merged, set(method_options))
        updates["method_options"] = merged
    return _fields_applied(experiment, updates)


# --------------------------------------------------------------------------------------------
# Resolving and recording
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """An experiment with every layer of overrides applied (see :func:`resolve`).

    ``overrides``: canonical key -> the value that won; ``sources``: key -> where it came from
    (the config file's path, ``--epochs``-style flags, ``--set``).
    """

    experiment: Experiment
    base: str
    overrides: dict[str, Any]
    sources: dict[str, str]
    run: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """:func:`describe` of this resolution, for config.json."""
        return describe(self.experiment, self.overrides, base=self.base, sources=self.sources)


def resolve(
    experiment: str | Experiment | None = None,
    config: ConfigFile | None = None,
    sets: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> Resolved:
    """The base experiment with, in order of precedence, the ``config`` file's settings, the
    ``flags`` (``{"epochs": args.epochs, ...}``; ``None`` values are not given) and the ``--set``
    items ``sets`` applied.

    The base: ``experiment`` when given, else the config file's, else the CLI's default.

    >>> r = resolve("mnist-simplecnn1", sets=["epochs=15", "ddc.pg=0.6"], flags={"epochs": 30})
    >>> r.experiment.epochs, r.sources
    (15, {'epochs': '--set', 'ddc.pg': '--set'})
    """
    if experiment is None:
        experiment = (config.experiment if config else None) or DEFAULT_EXPERIMENT
    base = get_experiment(experiment) if isinstance(experiment, str) else experiment
    layers: list[tuple[str, dict[str, Any]]] = []
    if config is not None:
        layers.append((config.path, dict(config.overrides)))
    for key, value in (flags or {}).items():
        if value is not None:
            flag = f"--{key.replace('_', '-')}"
            layers.append((flag, normalize({key: value}, where=flag)))
    layers.append(("--set", parse_set(sets)))
    overrides: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, value in layer.items():
            overrides.pop(key, None)
            overrides[key] = value
            sources[key] = source
    sources = {k: sources[k] for k in overrides}
    resolved = apply_overrides(base, overrides)
    return Resolved(resolved, base.name, overrides, sources, dict(config.run) if config else {})


def describe(
    experiment: Experiment,
    overrides: Mapping[str, Any] | None = None,
    *,
    base: str | None = None,
    sources: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The resolved settings as a JSON-safe dict: the keys config.json records.

    ``settings``: every field of the final experiment; ``base_experiment``: the experiment the
    overrides apply to; ``overrides``/``override_sources``: the canonical keys that changed it
    and where each came from.

    >>> from dynamic_dropconnect.experiments.config import get_experiment
    >>> d = describe(get_experiment("digits-mlp"), {"lr": 0.1})
    >>> d["experiment"], d["overrides"], d["settings"]["lr"]
    ('digits-mlp', {'lr': 0.1}, 0.05)
    """
    overrides = normalize(overrides or {})
    out = {
        "experiment": experiment.name,
        "base_experiment": base or experiment.name,
        "settings": experiment.to_dict(),
        "overrides": overrides,
        "override_sources": {k: (sources or {}).get(k, "overrides") for k in overrides},
    }
    return out
