"""Paired comparisons by seed, read from run directories: what results/paired.py and
results/datasize.py share. Scores are the test accuracy (%) at the epoch of best validation
accuracy of each complete run (or another metric of its result.json); pairs use the seeds
both methods have; Holm over the rows given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dynamic_dropconnect.experiments.stats import holm, paired_comparison

#: One pair row: (a, b, seeds, paired_comparison of a − b).
Row = tuple[str, str, list[int], dict[str, Any]]


def scores(run_dir: Path, method: str, metric: str = "test_acc_at_best_val") -> dict[int, float]:
    """``{seed: metric in %}`` of ``method``'s complete runs in ``run_dir``; ``metric`` a
    result.json key (test_acc_at_best_val, final_test_acc, ...)."""
    out = {}
    for result in sorted((run_dir / "runs" / method).glob("seed*/result.json")):
        record = json.loads(result.read_text())
        if record.get("complete"):
            out[int(record["seed"])] = 100 * float(record[metric])
    return out


def report_scores(
    report: Path, metric: str = "test_acc_at_best_val"
) -> dict[str, dict[int, float]]:
    """``{method: {seed: metric in %}}`` from a report's JSON (``ddc report``'s results.json),
    for runs whose directories are gone."""
    methods = json.loads(report.read_text())["summary"]["methods"]
    return {
        name: {
            int(seed): 100 * float(value)
            for seed, value in zip(entry["seeds"], entry[metric]["values"], strict=True)
        }
        for name, entry in methods.items()
    }


def pair_rows(
    table: Mapping[str, Mapping[int, float]], pairs: Sequence[tuple[str, str]]
) -> list[Row]:
    """The comparisons ``a − b`` of ``pairs`` whose methods share at least 2 seeds."""
    rows = []
    for a, b in pairs:
        if a not in table or b not in table:
            continue
        seeds = sorted(set(table[a]) & set(table[b]))
        if len(seeds) < 2:
            continue
        comp = paired_comparison([table[a][s] for s in seeds], [table[b][s] for s in seeds])
        rows.append((a, b, seeds, comp))
    return rows


def pair_table(rows: Sequence[Row], *, prefix: Sequence[str] = ()) -> list[str]:
    """Markdown lines of ``rows`` with Holm-adjusted p over them; ``prefix`` (one cell per row,
    e.g. the training-set size) becomes a first column headed "group"."""
    adjusted = holm([c["t_pvalue"] for *_, c in rows])
    lead = "| group " if prefix else ""
    lines = [
        lead + "| comparison (a − b) | seeds | mean Δ (pp) | 95% CI (t) | 95% CI (bootstrap) | "
        "wins/losses of a | Holm p | pairs for 80% power |",
        ("|---" if prefix else "") + "|---|---|---|---|---|---|---|---|",
    ]
    cells = list(prefix) or [""] * len(rows)
    for cell, (a, b, seeds, c), p in zip(cells, rows, adjusted, strict=True):
        boot = c["ci95_bootstrap"]
        boot_text = f"[{boot[0]:+.2f}, {boot[1]:+.2f}]" if boot else "— (n < 5)"
        # Every seed the same difference: the t-test (and so Holm) is undefined.
        p_text = f"{p:.3g}" if math.isfinite(p) else "— (no spread)"
        lines.append(
            (f"| {cell} " if prefix else "")
            + f"| {a} − {b} | {','.join(map(str, seeds))} | {c['mean_diff']:+.2f} | "
            f"[{c['ci95_t'][0]:+.2f}, {c['ci95_t'][1]:+.2f}] | {boot_text} | "
            f"{c['wins']}/{c['losses']} | {p_text} | {c['pairs_for_80_power'] or '—'} |"
        )
    return lines
