"""Your own models, data, methods and experiments, without editing the package.

A plugin is a Python module that registers them when it is imported, with the functions
re-exported here (the built-ins are registered by the same functions)::

    from dynamic_dropconnect.experiments.plugins import (
        Experiment, register_dataset, register_experiment, register_method, register_model,
    )

The ``ddc`` command imports it when it is named, ``ddc compare --plugins mypkg.experiments``
(comma-separated), or when an installed package declares it as an entry point of the group
:data:`ENTRY_POINT_GROUP` (every ``ddc`` process loads those). A run's ``config.json``
records its ``--plugins``, so ``--resume`` imports them again, and so does every ``--jobs``
worker process before it trains. See docs/suite.md for one example of each.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import types
from collections.abc import Iterable

from .config import Experiment, register_experiment
from .datasets.base import DatasetBundle, Split
from .datasets.registry import DatasetRequest, register_dataset
from .methods import register_method
from .models.registry import register_model

__all__ = [
    "ENTRY_POINT_GROUP",
    "DatasetBundle",
    "DatasetRequest",
    "Experiment",
    "PluginError",
    "Split",
    "check_plugin_names",
    "load_plugins",
    "register_dataset",
    "register_experiment",
    "register_method",
    "register_model",
]

#: The entry-point group of installed plugins: a module (imported) or a function (called
#: once, without arguments), e.g. in pyproject.toml
#: ``[project.entry-points."dynamic_dropconnect.experiments"] mylab = "mylab.ddc_plugin"``.
ENTRY_POINT_GROUP = "dynamic_dropconnect.experiments"

# The entry points this process has loaded ("name=value"): each is loaded once.
_loaded_entry_points: set[str] = set()


class PluginError(ValueError):
    """A plugin that cannot be found or fails while it registers; the message names it."""


def check_plugin_names(modules: Iterable[str]) -> list[str]:
    """``modules`` as a list, each a dotted module name (``PluginError`` naming one that is
    not, or one given twice)."""
    names = list(modules)
    for name in names:
        if not isinstance(name, str) or not all(p.isidentifier() for p in name.split(".")):
            raise PluginError(
                f"--plugins {name!r} is not a module name; give dotted Python module names, "
                "e.g. --plugins mypkg.experiments"
            )
    repeated = [n for i, n in enumerate(names) if n in names[:i]]
    if repeated:
        raise PluginError(f"--plugins names {repeated[0]} twice; give each module once")
    return names


def _import(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and (name == err.name or name.startswith(err.name + ".")):
            raise PluginError(
                f"plugin {name}: there is no module {err.name!r} on the Python path; install "
                "its package, or add the folder holding it to PYTHONPATH"
            ) from err
        raise PluginError(f"plugin {name} failed to import: {type(err).__name__}: {err}") from err
    except Exception as err:  # the plugin's own error: name the plugin, keep the cause
        raise PluginError(f"plugin {name} failed to import: {type(err).__name__}: {err}") from err


def _load_entry_points() -> None:
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"{point.name}={point.value}"
        if key in _loaded_entry_points:
            continue
        package = point.dist.name if point.dist is not None else "an installed package"
        try:
            loaded = point.load()
            if callable(loaded) and not isinstance(loaded, types.ModuleType):
                loaded()
        except Exception as err:
            raise PluginError(
                f"entry point {point.name} = {point.value} (group {ENTRY_POINT_GROUP}, from "
                f"{package}) failed: {type(err).__name__}: {err}; fix or uninstall {package}"
            ) from err
        _loaded_entry_points.add(key)


def load_plugins(modules: Iterable[str] = (), *, entry_points: bool = True) -> list[str]:
    """Import the plugin ``modules`` (a module imported before is not imported again) and,
    with ``entry_points``, every entry point of :data:`ENTRY_POINT_GROUP` not loaded yet.
    Returns the module names, checked (:func:`check_plugin_names`). ``PluginError`` names a
    module that is missing or fails."""
    names = check_plugin_names(modules)
    if entry_points:
        _load_entry_points()
    for name in names:
        _import(name)
    return names
