"""The paired comparisons behind the README's verdicts, recomputed from run files.

Usage: python results/paired.py SOURCE [SOURCE ...] [--vm VM_SOURCE] [--pairs A:B,...] > paired.md
SOURCE: a run directory (e.g. fashion-short-tuned, and its unbiased controls) or a report's
JSON (a results.json, or results/mnist-simplecnn1-75ep.json: runs whose directories are gone);
methods are taken by name from all of them, and a method in two sources is an error. --vm:
DropConnect at the variance-matched rate (fashion-short-tuned-vm), named dropconnect-vm here.
--pairs: the comparisons a − b to make (default: the tuned re-judgements' list). Pairs are by
seed (seeds both methods have), on the test accuracy at the epoch of best validation accuracy;
a pair whose methods have fewer than 2 common seeds is left out; Holm over the rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pairs import pair_rows, pair_table, report_scores, scores

DEFAULT_PAIRS = (
    "ddc:none,ddc:dropconnect,ddc:ddc-shuffled,ddc-learned:none,ddc-learned:dropconnect,"
    "ddc-learned:ddc,ddc-learned:ddc-learned-shuffled,ddc-learned:dropconnect-vm,"
    "ddc:ddc-unbiased,ddc-learned:ddc-learned-unbiased,dropout:none,dropconnect:none"
)


def source_scores(source: Path) -> dict[str, dict[int, float]]:
    """``{method: {seed: score}}`` of one run directory or report JSON."""
    if source.is_file():
        return report_scores(source)
    runs = sorted(p for p in (source / "runs").iterdir() if p.is_dir())
    return {run.name: scores(source, run.name) for run in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sources", type=Path, nargs="+")
    parser.add_argument("--vm", type=Path)
    parser.add_argument("--pairs", default=DEFAULT_PAIRS)
    args = parser.parse_args()
    table: dict[str, dict[int, float]] = {}
    for source in args.sources:
        for method, values in source_scores(source).items():
            if values and table.get(method):
                parser.error(f"method {method!r} is in two sources (second: {source})")
            if values:
                table[method] = values
    if args.vm:
        table["dropconnect-vm"] = source_scores(args.vm).get("dropconnect", {})
    pairs = [tuple(pair.split(":", 1)) for pair in args.pairs.split(",")]
    if bad := [p for p in pairs if len(p) != 2]:
        parser.error(f"--pairs: {', '.join(map(':'.join, bad))} is not A:B (e.g. ddc:none)")
    print("\n".join(pair_table(pair_rows(table, pairs))))
    print()
    named = dict.fromkeys(m for pair in pairs for m in pair if table.get(m))
    print(
        "Means (test acc @ best val, %): "
        + "; ".join(
            f"{m} {sum(table[m].values()) / len(table[m]):.2f} (n={len(table[m])})" for m in named
        )
    )


if __name__ == "__main__":
    main()
