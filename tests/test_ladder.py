"""The import ladder of docs/architecture.md: a module imports only modules on lower rungs.

Also refused: a private name (``_x``) taken from another module of the package, and ``F`` for
anything but ``torch.nn.functional``. Function-level imports count like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "src" / "dynamic_dropconnect"
# Rungs, lowest first, named relative to ROOT ("__init__": the package itself). The
# experiments package stands above the library: its rungs go after the last one.
LADDER = [
    ["checks"],
    ["functional"],
    ["per_sample"],
    ["base"],
    ["regularizers", "learned", "standout"],
    ["distributed"],
    ["layers", "parameters"],
    ["regularized", "montecarlo"],
    ["candidates"],
    ["reporting"],
    ["surgery"],
    ["inference", "weight_drop"],
    ["__init__", "integrations"],
]
# The experiments package, above the library (docs/architecture.md); inside its packages
# (datasets, models, robustness) each module has a rung of its own.
EXPERIMENTS = [
    ["storage", "registration"],
    ["datasets.errors", "datasets.specs"],
    ["datasets.locations", "datasets.checksums"],
    ["datasets.resolution"],
    ["datasets.base", "datasets.transforms", "datasets.protocol", "schedules", "models.layers"],
    [
        "datasets.registry",
        "datasets.idx",
        "datasets.cifar",
        "datasets.norb",
        "datasets.small",
        "datasets.text",
        "models.convnets",
        "models.mlp",
        "models.resnet",
        "models.sequence",
        "models.vit",
    ],
    ["datasets.local", "models.registry"],
    ["datasets.api"],
    ["datasets.__init__", "models.__init__", "method_registry"],
    ["config", "methods"],
    ["plugins", "override_keys"],
    ["override_parsing"],
    ["overrides"],
    ["runspec", "runrecords"],
    ["training"],
    ["stats", "uncertainty_metrics", "robustness.seeds", "robustness.attacks"],
    ["rundir", "robustness.corruptions", "robustness.pruning"],
    ["summaries", "figures", "robustness.metrics"],
    ["tables", "plots", "uncertainty_render", "robustness.render"],
    ["sweeps"],
    ["report", "uncertainty", "robustness.__init__"],
    ["synthetic_simulation"],
    ["execution", "synthetic"],
    ["tuning"],
    ["outdir"],
    ["suite"],
    ["cli_parser", "cli_checks"],
    ["cli_resolve"],
    ["cli", "run"],
    ["__init__"],
]
LADDER += [[f"experiments.{name}" for name in rung] for rung in EXPERIMENTS]
RUNG = {name: i for i, rung in enumerate(LADDER) for name in rung}
# (folder under ROOT, glob of its modules).
PACKAGES = [("", "*.py"), ("experiments", "**/*.py")]


def _module(parts: list[str]) -> str | None:
    """The ladder name of ``ROOT/parts`` (a package is its ``__init__``); None if no such file."""
    if ROOT.joinpath(*parts).is_dir():
        return ".".join([*parts, "__init__"])
    return ".".join(parts) if ROOT.joinpath(*parts).with_suffix(".py").is_file() else None


def _imports(path: Path) -> list[tuple[int, str | None, str | None]]:
    """``(line, module, name taken from it or None)`` for every import of this package in
    ``path``, and for every ``module._name`` read through an imported module."""
    here, found, aliases = list(path.relative_to(ROOT).parts[:-1]), [], {}
    nodes = list(ast.walk(ast.parse(path.read_text())))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in (a for a in node.names if a.name.split(".")[0] == ROOT.name):
                found.append((node.lineno, _module(alias.name.split(".")[1:]), None))
                aliases[alias.asname or ROOT.name] = found[-1][1]
        elif isinstance(node, ast.ImportFrom) and (node.level or node.module.startswith(ROOT.name)):
            named = node.module.split(".") if node.module else []
            base = here[: len(here) - node.level + 1] + named if node.level else named[1:]
            for alias in node.names:
                sub = _module([*base, alias.name])  # `from . import functional`: a module
                found.append((node.lineno, *((sub, None) if sub else (_module(base), alias.name))))
                aliases.update({alias.asname or alias.name: sub} if sub else {})
    for node in nodes:  # functional._helper is as private as `from .functional import _helper`
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) in aliases:
            found.append((node.lineno, aliases[node.value.id], node.attr))  # type: ignore[attr-defined]
    return found + ([(0, "F", None)] if "F" in aliases else [])


@pytest.mark.parametrize(("folder", "pattern"), PACKAGES)
def test_imports_go_down_the_ladder(folder: str, pattern: str) -> None:
    errors, graph = [], {}
    for path in sorted((ROOT / folder).glob(pattern)):
        me = _module(list(path.relative_to(ROOT).with_suffix("").parts))
        assert me in RUNG, f"{me} is not on the ladder: add it to LADDER and the docs"
        for line, target, name in _imports(path):
            if target == "F":
                errors.append(f"{me}: F is torch.nn.functional, not a module of this package")
            elif target != me:
                graph.setdefault(me, set()).add(target)
                if RUNG.get(target, len(LADDER)) >= RUNG[me]:
                    errors.append(f"{me}:{line} imports {target}, not on a lower rung")
                if name and name.startswith("_") and not name.endswith("__"):
                    errors.append(f"{me}:{line} takes the private {name} from {target}")
    for start in graph:  # a cycle (implied by a rung error, named here for the reader)
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            todo += [] if module in seen else list(graph.get(module, ()))
            seen.add(module)
        errors += [f"import cycle through {start}"] if start in seen else []
    assert not errors, "\n".join(errors)
