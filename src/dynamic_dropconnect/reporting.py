"""The table of a model's weights: which are regularized, with what, and why the others are not."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .candidates import find_candidates

__all__ = ["WeightEntry", "WeightSummary", "summary"]


@dataclass(frozen=True)
class WeightEntry:
    """One weight in a :class:`WeightSummary`."""

    name: str
    module_type: str
    shape: tuple[int, ...]
    regularizer: str | None  # e.g. "DynamicDropConnect(p=0.3, ...)"; None when left out
    reason: str  # why it was left out ("" when regularized)


class WeightSummary(list[WeightEntry]):
    """The table :func:`summary` returns; ``str()`` renders it."""

    @property
    def regularized(self) -> list[WeightEntry]:
        return [e for e in self if e.regularizer is not None]

    @property
    def skipped(self) -> list[WeightEntry]:
        return [e for e in self if e.regularizer is None]

    def __str__(self) -> str:
        rows = [("weight", "module", "shape", "regularizer / why left out")]
        for e in self:
            rows.append(
                (
                    e.name,
                    e.module_type,
                    "x".join(map(str, e.shape)),
                    e.regularizer if e.regularizer is not None else f"-- {e.reason}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
        lines.append(f"{len(self.regularized)} regularized, {len(self.skipped)} left out")
        return "\n".join(lines)


def summary(model: nn.Module) -> WeightSummary:
    """Every weight DDC could regularize in ``model``: which are regularized, with what, and
    why each other one is left out (convolutions and recurrent weights are named explicitly,
    weights tied to an embedding are left out by default, embeddings are not supported)."""
    entries = WeightSummary()
    for c in find_candidates(model):
        reg = c.regularizer()
        regularizer = None if reg is None else f"{type(reg).__name__}({reg.extra_repr()})"
        entries.append(
            WeightEntry(
                c.name,
                type(c.holder).__name__,
                c.shape,
                regularizer,
                "" if regularizer else c.reason,
            )
        )
    return entries
