"""What a run writes beside its checkpoint and reads back: metrics.csv, the learned curves,
the protocol check of a resume, and the numbers later tools take from a finished run."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from torch import nn

import dynamic_dropconnect as ddc

from .config import Experiment
from .storage import atomic_write_json, atomic_write_text

__all__ = [
    "ProtocolMismatchError",
    "append_learned_curves",
    "check_protocol",
    "read_mask_variance",
    "trained_experiment",
    "write_metrics",
]


class ProtocolMismatchError(ValueError):
    """A checkpoint written under other experiment settings than the ones asked for."""


def check_protocol(path: Path, saved: dict[str, Any] | None, experiment: Experiment) -> None:
    """:class:`ProtocolMismatchError` unless ``saved`` (a checkpoint's or result's settings)
    records ``experiment``'s protocol."""
    if saved is None:
        raise ProtocolMismatchError(
            f"{path} was written by an earlier version of the suite that did not record its "
            f"protocol (schedule {experiment.schedule!r} is asked for now); start a new run "
            "directory instead of --resume"
        )
    changed = experiment.differences(saved)
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ProtocolMismatchError(
            f"{path} was made with another protocol ({detail}); resume it with the same "
            "settings or start a new run directory"
        )


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as a CSV file, the columns in order of first appearance."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def append_learned_curves(path: Path, epoch: int, model: nn.Module) -> None:
    """For ``ddc-learned``: what each layer's rate model maps gradient z-scores to, per epoch."""
    curves = ddc.learned_curves(model)
    if not curves:
        return
    history = json.loads(path.read_text()) if path.exists() else {}
    history = {k: v for k, v in history.items() if int(k) < epoch}  # a resumed epoch: redone
    history[str(epoch)] = curves
    atomic_write_json(path, history)


def read_mask_variance(
    metrics_csv: str | Path, *, first_epoch: int = 1, last_epoch: int | None = None
) -> dict[str, float]:
    """``{layer: mean mask variance}`` of a run: its ``mask_var/<layer>`` columns averaged over
    epochs ``first_epoch..last_epoch`` (all by default), for
    :func:`~dynamic_dropconnect.experiments.methods.variance_matched_options`.

    Epochs without the column (a run resumed from before it existed) are skipped; a layer with
    no value in the range, or a file with no such column at all, is an error.
    """
    path = Path(metrics_csv)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    layers = [c.removeprefix("mask_var/") for c in columns if c.startswith("mask_var/")]
    if not layers:
        raise ValueError(
            f"{path} has no mask_var/<layer> column (a run without regularized layers, or "
            "one trained before the column existed)"
        )
    high = math.inf if last_epoch is None else last_epoch
    chosen = [r for r in rows if first_epoch <= int(r["epoch"]) <= high]
    out: dict[str, float] = {}
    for layer in layers:
        cells = [r[f"mask_var/{layer}"] for r in chosen]
        values = [v for v in map(float, filter(None, cells)) if math.isfinite(v)]
        if not values:
            raise ValueError(
                f"{path}: no finite mask_var/{layer} in epochs {first_epoch}.."
                f"{'the last' if last_epoch is None else last_epoch}"
            )
        out[layer] = sum(values) / len(values)
    return out


def trained_experiment(state: dict[str, Any], default: Experiment) -> Experiment:
    """The experiment a checkpoint was trained under, as its ``"experiment"`` entry records it
    (a tuned run's lr and method options included); ``default`` where it records none.

    Models rebuilt for evaluation must use this, not the run directory's config: the rates of a
    tuned method live only in its own runs.
    """
    saved = state.get("experiment")
    if not isinstance(saved, dict):
        return default
    return Experiment.from_dict(saved)
