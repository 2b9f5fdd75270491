"""Reproduction suite for Dynamic DropConnect: datasets, models, training and reports."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

# Old module paths that still import, with a DeprecationWarning: {old: new}. (``io`` was
# renamed because it shadowed the standard library's module of that name.)
RENAMED_MODULES = {f"{__name__}.io": f"{__name__}.storage"}


class RenamedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path of RENAMED_MODULES as its new module, warning once per import."""

    def __init__(self) -> None:
        self.specs: dict[int, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in RENAMED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = RENAMED_MODULES[spec.name]
        warnings.warn(f"{spec.name} is deprecated: use {new}", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self.specs[id(module)] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The new module is already executed; only undo the import system's relabelling of it
        (it set ``__spec__`` to the old name), so that it still knows its real name."""
        module.__spec__ = self.specs[id(module)]


if not any(isinstance(finder, RenamedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, RenamedModuleFinder())
