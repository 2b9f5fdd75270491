"""Chosen robustness comparisons, recomputed from a robustness.json, with Holm over them alone.

Usage: python results/robustness_pairs.py ROBUSTNESS_JSON --pairs A:B,... --metrics M,... > F.md
ROBUSTNESS_JSON: what `ddc robustness` wrote (a run directory's or a committed copy).
--pairs: the comparisons a − b; --metrics: names of robustness.md's rows ("clean", "corruption
mean", "mCE", "PGD ε=0.1", "random f=0.7", ...). One row per metric and pair, paired by seed;
accuracies in points, mCE in % (lower is better). robustness.md's own paired table sets `ddc`
against every method on every metric, a family so large that Holm hides everything at 3 seeds;
this one tests only the comparisons given, e.g. whether DropConnect-style training (with or
without the gradient) makes a network tolerate edge removal. The smaller family is honest only
if its pairs and metrics are fixed before the numbers are seen; say so where they were not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pairs import pair_rows, pair_table

from dynamic_dropconnect.experiments.robustness.metrics import LOWER_IS_BETTER, run_metrics


def every_metric(record: dict) -> list[tuple[str, int, dict[str, float]]]:
    """``(method, seed, run_metrics)`` of every run in ``record``, against its ``none`` runs."""
    runs = record["runs"]
    baseline = [r for r in runs if r["method"] == "none"]
    return [(r["method"], int(r["seed"]), run_metrics(r, baseline)) for r in runs]


def metric_table(
    runs: list[tuple[str, int, dict[str, float]]], metric: str
) -> dict[str, dict[int, float]]:
    """``{method: {seed: metric}}`` (accuracy in %, mCE in %) from :func:`every_metric`."""
    scale = 1.0 if metric in LOWER_IS_BETTER else 100.0
    table: dict[str, dict[int, float]] = {}
    for method, seed, values in runs:
        if metric not in values:
            raise KeyError(f"{metric!r} is not in this file; it has: {', '.join(sorted(values))}")
        table.setdefault(method, {})[seed] = scale * values[metric]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("robustness_json", type=Path)
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()
    record = json.loads(args.robustness_json.read_text())
    pairs = [tuple(pair.split(":", 1)) for pair in args.pairs.split(",")]
    if bad := [p for p in pairs if len(p) != 2]:
        parser.error(f"--pairs: {', '.join(map(':'.join, bad))} is not A:B (e.g. ddc:none)")
    runs = every_metric(record)
    rows, groups = [], []
    for metric in args.metrics.split(","):
        try:
            found = pair_rows(metric_table(runs, metric), pairs)
        except KeyError as error:
            parser.error(f"--metrics: {error.args[0]}")
        rows += found
        groups += [metric] * len(found)
    print("\n".join(pair_table(rows, prefix=groups)))
    print()
    print(
        "group: the metric (accuracy in points; mCE in %, lower is better). Holm over the "
        f"{len(rows)} rows of this table; n = {record['runs'][0].get('n_test')} test examples."
    )


if __name__ == "__main__":
    main()
