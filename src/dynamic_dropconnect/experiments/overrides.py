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

This module applies them (:func:`apply_overrides`, :func:`resolve`) and records them
(:func:`describe`); the keys and their values are checked in :mod:`.override_keys`, the
``--set`` items and files read in :mod:`.override_parsing`. Every public name of those two is
re-exported here, the import path the rest of the suite uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .config import DEFAULT_EXPERIMENT, Experiment, get_experiment
from .datasets import DATASETS
from .methods import METHODS, experiment_overrides
from .models import MODELS
from .override_keys import (
    TABLE_FIELDS,
    ConfigError,
    did_you_mean,
    method_class,
    method_option_names,
    model_option_names,
    normalize,
    valid_keys,
)
from .override_parsing import RUN_OPTIONS, ConfigFile, load_config_file, parse_set

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
        shown = culprits or [k for k in updates if k not in TABLE_FIELDS] or list(updates)
        named = ", ".join(f"{k}={updates[k]!r}" for k in shown)
        raise ConfigError(f"{named}: {message}") from None


def _check_choice(key: str, value: str, valid: Iterable[str]) -> None:
    valid = list(valid)
    if value not in valid:
        raise ConfigError(
            f"{key}={value!r}: unknown {key}{did_you_mean(value, valid)}; valid: {', '.join(valid)}"
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
        cls = method_class(name)
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
                f"{did_you_mean(option, names)}; valid options of {model}: "
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
