"""Argument checks and deprecation warnings shared by every module of the library.

The bottom rung of the ladder (``docs/architecture.md``): it imports nothing of this package,
so any module may use it, and error messages are worded alike everywhere.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from numbers import Real
from typing import Any

from torch import Tensor

__all__ = ["check_choice", "check_flag", "check_rate", "renamed_attribute", "warn_deprecated"]

_LIBRARY = os.path.dirname(os.path.abspath(__file__))


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``value`` and the valid ``choices`` when it is not one."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_rate(
    owner: str, name: str, value: Any, low: float, high: float, *, high_open: bool
) -> None:
    """``value`` must be a real number in ``[low, high)`` (or ``]``); errors name all four."""
    bracket = ")" if high_open else "]"
    valid = f"a number in [{low:g}, {high:g}{bracket}"
    if isinstance(value, bool) or not isinstance(value, Real | Tensor):
        raise TypeError(f"{owner}: {name} must be {valid}, got {value!r} ({type(value).__name__})")
    if isinstance(value, Tensor) and value.numel() != 1:
        raise TypeError(f"{owner}: {name} must be {valid}, got a tensor of shape {value.shape}")
    number = float(value)
    ok = low <= number < high if high_open else low <= number <= high
    if not ok:
        raise ValueError(f"{owner}: {name} must be {valid}, got {value!r}")


def check_flag(owner: str, name: str, value: Any) -> None:
    """``value`` must be a bool (a string such as ``"false"`` would be truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")


def warn_deprecated(message: str) -> None:
    """A ``DeprecationWarning`` attributed to the first caller outside the library's modules.

    A fixed ``stacklevel`` would point into this package when the deprecated name is reached
    through ``apply``, and Python shows a ``DeprecationWarning`` only where the user's code is.
    """
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and os.path.dirname(frame.f_code.co_filename) == _LIBRARY:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def renamed_attribute(
    module: str, name: str, renamed: Mapping[str, str], namespace: Mapping[str, Any]
) -> Any:
    """Body of a module ``__getattr__``: the object of a renamed name, with a warning.

    ``renamed`` maps each old name to the new one, which ``namespace`` (the module's
    ``globals()``) holds; any other name raises ``AttributeError`` as usual.
    """
    new = renamed.get(name)
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warn_deprecated(f"{module}.{name} is deprecated: use {module}.{new}")
    return namespace[new]
