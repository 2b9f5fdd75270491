"""The keys of ``--config``/``--set`` (see :mod:`.overrides`): which are valid, their one
canonical spelling, and their values coerced to the types of the settings they set.

:func:`normalize` turns any spelling (tables, aliases, ``methods.<m>.<o>``) into the canonical
``{key: value}`` that config.json records; :func:`valid_keys`, :func:`method_option_names` and
:func:`model_option_names` say what is valid (from the signatures, so they follow the library).
"""

from __future__ import annotations

import difflib
import inspect
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from torch import nn

import dynamic_dropconnect as ddc

from .config import Experiment
from .methods import METHODS
from .models import MODELS, LockedDropout, build_model

__all__ = [
    "TABLE_FIELDS",
    "ConfigError",
    "coerce",
    "did_you_mean",
    "method_class",
    "method_option_names",
    "model_option_names",
    "normalize",
    "valid_keys",
    "valid_keys_text",
]


class ConfigError(ValueError):
    """A bad key or value in ``--config``/``--set``; the message names it and what is valid."""


#: The [optimizer] table's keys, as the Experiment fields they set.
_OPTIMIZER_KEYS = {
    "name": "optimizer",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "momentum": "momentum",
}
_MODEL_PREFIXES = ("model", "model_options")
_METHOD_PREFIXES = ("methods", "method_options")
#: The Experiment fields that hold tables (``model.<option>``, ``<method>.<option>`` set them).
TABLE_FIELDS = ("model_options", "method_options")
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
    return sorted(f.name for f in fields(Experiment) if f.name not in TABLE_FIELDS)


def valid_keys() -> list[str]:
    """Every key ``--set`` accepts, as patterns (for help texts and errors): the fields,
    the optimizer aliases, ``model.<option>`` and ``<method>.<option>``.

    >>> keys = valid_keys()
    >>> "epochs" in keys and "optimizer.weight_decay" in keys and "<method>.<option>" in keys
    True
    """
    optimizer = [f"optimizer.{k}" for k in _OPTIMIZER_KEYS]
    return [*_scalar_fields(), *optimizer, "model.<option>", "<method>.<option>"]


def valid_keys_text() -> str:
    """``valid: <the keys>`` (with the method names), the tail of an unknown key's error."""
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


def method_class(method: str) -> type[nn.Module] | None:
    """The class method ``method``'s kind builds from its options (a library regularizer,
    dropout, locked dropout, standout); ``None`` for a kind built otherwise (``none``, a
    plugin's own builder), whose values cannot be checked by building it.

    >>> method_class("standout").__name__
    'Standout'
    """
    kind = METHODS[method].kind
    return _REGULARIZERS.get(kind) or _FIXED_KIND_CLASSES.get(kind)


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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``; empty if none is close.

    >>> did_you_mean("epoch", ["epochs", "lr"])
    " (did you mean 'epochs'?)"
    """
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
            f"unknown method {method!r} in key {key!r}{did_you_mean(method, METHODS)}; "
            f"valid methods: {', '.join(METHODS)}"
        )
    params = _method_parameters(method)
    if params is not None and option not in params:
        valid = ", ".join(sorted(params)) or "none (it takes no options)"
        raise ConfigError(
            f"unknown option {option!r} of method {method!r} in key {key!r}"
            f"{did_you_mean(option, params)}; valid options of {method}: {valid}"
        )
    return f"{method}.{option}"


def _canonical_key(key: str) -> str:
    """The one spelling of ``key`` (``optimizer.weight_decay`` -> ``weight_decay``,
    ``methods.ddc.p`` -> ``ddc.p``, ``model_options.hidden`` -> ``model.hidden``)."""
    parts = key.split(".")
    if not all(part.strip() for part in parts):
        raise ConfigError(f"key {key!r} has an empty part; {valid_keys_text()}")
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
        if head in TABLE_FIELDS:
            raise ConfigError(f"key {key!r} takes a table, e.g. {head}.<name>=value")
        raise ConfigError(
            f"unknown key {key!r}{did_you_mean(head, valid_keys())}; {valid_keys_text()}"
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
    raise ConfigError(f"unknown key {key!r}; {valid_keys_text()}")


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


def coerce(key: str, value: Any, hint: Any) -> Any:
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
                value = coerce(raw_key, value, hints[key])
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
