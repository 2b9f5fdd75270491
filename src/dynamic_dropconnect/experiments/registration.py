"""The one way names enter the suite's registries (models, datasets, methods, experiments).

Every ``register_*`` of the suite goes through :func:`add_to_registry`, the built-ins as well
as a user's plugin, so a name is checked the same way wherever it comes from. A name may be
registered once; registering it again is an error naming what holds it, unless ``replace``
is given or the value is the same one (equal, or a class or function of the same module and
qualified name: a plugin module imported a second time registers its names again).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, MutableMapping
from typing import Any, TypeVar

__all__ = ["NAME_PATTERN", "add_to_registry", "check_free", "check_name"]

#: A registered name: letters, digits and ``. _ + -``, starting with a letter or digit. No
#: ``/`` (names become run-directory folders), ``,`` (command-line lists) or ``:`` (the
#: suite's ``method:detail`` keys and the ``scheme:argument`` dataset names).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

V = TypeVar("V")


def check_name(kind: str, name: object, *, lower: bool = False) -> str:
    """``name`` if it is a valid ``kind`` name, else a ``ValueError`` saying what is valid.

    ``lower``: the registry looks names up in lower case (models), so upper case is refused.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid {kind} name {name!r}: use letters, digits and . _ + - (starting with a "
            "letter or digit; no spaces, '/', ',' or ':')"
        )
    if lower and name != name.lower():
        raise ValueError(f"invalid {kind} name {name!r}: {kind} names are lower case")
    return name


def _same(old: Any, new: Any) -> bool:
    if old is new:
        return True
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        return all(
            _same(getattr(old, f.name), getattr(new, f.name)) for f in dataclasses.fields(old)
        )
    if callable(old) and callable(new) and hasattr(old, "__qualname__"):
        return (old.__module__, old.__qualname__) == (
            getattr(new, "__module__", None),
            getattr(new, "__qualname__", None),
        )
    try:
        return bool(old == new)
    except Exception:  # values whose comparison raises (tensors inside): not the same
        return False


def check_free(
    registry: Mapping[str, V], kind: str, name: str, value: V, *, replace: bool = False
) -> None:
    """``ValueError`` when another value holds ``name`` in ``registry`` and ``replace`` is
    false (what :func:`add_to_registry` checks; for registering into several at once)."""
    if name in registry and not replace and not _same(registry[name], value):
        held = registry[name]
        by = f" (by {held.__module__})" if callable(held) else ""
        raise ValueError(
            f"{kind} {name!r} is already registered{by}; choose another name, or pass "
            "replace=True to replace it"
        )


def add_to_registry(
    registry: MutableMapping[str, V], kind: str, name: str, value: V, *, replace: bool = False
) -> V:
    """Put ``value`` into ``registry`` under ``name``; ``ValueError`` when another value holds
    the name and ``replace`` is false. Returns ``value``."""
    check_free(registry, kind, name, value, replace=replace)
    registry[name] = value
    return value
