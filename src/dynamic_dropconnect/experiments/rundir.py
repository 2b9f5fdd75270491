"""The run directory of ``ddc compare``: its layout and the loaders of its files.

The run directory is written by the training code::

    RUN_DIR/config.json                         # {"experiment", "methods", "seeds", "epochs", ...}
    RUN_DIR/runs/<method>/seed<k>/metrics.csv   # one row per finished epoch
    RUN_DIR/runs/<method>/seed<k>/result.json   # {"method", "seed", ..., "complete": true}
    RUN_DIR/runs/<method>/seed<k>/drop_probs.pt # optional {layer: 1-D tensor of p_ij}
    RUN_DIR/tune.json                           # --tune: grid, validation scores, choices

Accuracies are fractions in ``[0, 1]`` in the files.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .stats import to_float
from .storage import RunFileError, read_json_file

__all__ = [
    "all_metrics",
    "json_safe",
    "load_config",
    "load_metrics",
    "load_results",
    "load_train_losses",
    "load_tuning",
    "mean_drop_rate",
    "mean_mask_variance",
    "method_order",
    "seed_dirs",
]


#: The name of a seed folder, ``seed<k>`` (``k`` may be negative).
_SEED_DIR = re.compile(r"^seed(-?\d+)$")


def load_config(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/config.json`` as a dict, ``{}`` when absent; :class:`RunFileError` naming it
    when it is garbled (a report of a run whose configuration is lost would mislead)."""
    path = Path(run_dir) / "config.json"
    return read_json_file(path) if path.exists() else {}


def mean_drop_rate(run_dir: Path) -> float:
    """Realized drop rate of one run (``runs/<method>/seed<k>``), averaged over its epochs and
    regularized layers; NaN for a run that drops no edges (none, dropout, ...)."""
    return _mean_of_columns(run_dir, "drop_rate/")


def mean_mask_variance(run_dir: Path) -> float:
    """Mean mask variance p_ij(1 - p_ij) of one run, averaged over its epochs and regularized
    layers (the noise a method injects: DropConnect at rate p has p(1 - p), a method with
    uneven p_ij less at the same mean rate); NaN for a run without it in ``metrics.csv``."""
    return _mean_of_columns(run_dir, "mask_var/")


def _mean_of_columns(run_dir: Path, prefix: str) -> float:
    columns = load_metrics(run_dir / "metrics.csv")
    values = [v for k, v in columns.items() if k.startswith(prefix)]
    return float(np.nanmean(np.stack(values))) if values else float("nan")


def seed_dirs(run_dir: Path) -> list[tuple[str, int, Path]]:
    """``(method, seed, dir)`` of every ``runs/<method>/seed<k>`` folder, sorted."""
    out = []
    runs = run_dir / "runs"
    if not runs.is_dir():
        return out
    for method_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        for seed_dir in method_dir.iterdir():
            match = _SEED_DIR.match(seed_dir.name)
            if seed_dir.is_dir() and match:
                out.append((method_dir.name, int(match.group(1)), seed_dir))
    return sorted(out, key=lambda t: (t[0], t[1]))


def method_order(methods: Iterable[str], config: dict[str, Any]) -> list[str]:
    """The config's method order first, then any other methods alphabetically."""
    present = set(methods)
    configured = [m for m in config.get("methods", []) if isinstance(m, str)]
    ordered = [m for m in dict.fromkeys(configured) if m in present]
    return ordered + sorted(present - set(ordered))


def load_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete ``result.json`` under ``RUN_DIR/runs``, ordered by method then seed.

    A result counts when its JSON parses, has ``"complete": true`` and numeric metrics; the
    ``method`` and ``seed`` keys default to the folder names when absent. Method order follows
    ``config.json``'s ``methods`` where given.
    """
    run_dir = Path(run_dir)
    results = []
    for method, seed, folder in seed_dirs(run_dir):
        try:
            data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("complete") is not True:
            continue
        data.setdefault("method", method)
        data.setdefault("seed", seed)
        data.setdefault("edge_drop_rate", mean_drop_rate(folder))
        data.setdefault("edge_mask_variance", mean_mask_variance(folder))
        results.append(data)
    order = {
        m: i
        for i, m in enumerate(method_order((r["method"] for r in results), load_config(run_dir)))
    }
    return sorted(results, key=lambda r: (order[r["method"]], r["seed"]))


def load_metrics(path: str | Path) -> dict[str, np.ndarray]:
    """A ``metrics.csv`` as ``{column: float array}`` (empty or non-numeric cells are NaN).

    Returns ``{}`` for a missing or empty file; rows are sorted by ``epoch`` when present.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return {}
    except (UnicodeDecodeError, csv.Error) as err:
        raise RunFileError(
            f"{path}: not a readable metrics.csv ({err}); repair or delete it (the run's "
            "checkpoint.pt holds the same per-epoch rows)"
        ) from err
    if not rows:
        return {}
    columns: dict[str, np.ndarray] = {}
    for name in rows[0]:
        if name is None:
            continue
        columns[name] = np.array([to_float(row.get(name)) for row in rows], dtype=np.float64)
    if "epoch" in columns:
        order = np.argsort(columns["epoch"], kind="stable")
        columns = {k: v[order] for k, v in columns.items()}
    return columns


def load_tuning(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/tune.json`` (written by ``--tune``), ``{}`` when absent."""
    path = Path(run_dir) / "tune.json"
    return read_json_file(path) if path.exists() else {}


def json_safe(obj: Any) -> Any:
    """Non-finite floats become ``None`` (standard JSON), numpy scalars plain Python."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def all_metrics(run_dir: Path, order: Sequence[str]) -> dict[str, list[dict[str, np.ndarray]]]:
    """``{method: [metrics of each seed]}`` for every seed folder with a non-empty metrics.csv."""
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    for method, _seed, folder in seed_dirs(run_dir):
        columns = load_metrics(folder / "metrics.csv")
        if columns and "epoch" in columns:
            out.setdefault(method, []).append(columns)
    rank = {m: i for i, m in enumerate(order)}
    return dict(sorted(out.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def load_train_losses(
    run_dir: Path, results: Sequence[dict[str, Any]]
) -> dict[str, dict[int, np.ndarray]]:
    """``{method: {seed: training loss per epoch}}`` of the complete runs (metrics.csv)."""
    complete = {(str(r["method"]), int(r["seed"])) for r in results}
    out: dict[str, dict[int, np.ndarray]] = {}
    for method, seed, folder in seed_dirs(run_dir):
        if (method, seed) in complete:
            columns = load_metrics(folder / "metrics.csv")
            if "train_loss" in columns:
                out.setdefault(method, {})[seed] = columns["train_loss"]
    return out
