"""The paired comparisons behind the README's tuned verdicts, recomputed from run files.

Usage: python results/paired.py RUN_DIR [--vm VM_RUN_DIR] [--extra RUN_DIR ...] > paired.md
RUN_DIR: a tuned comparison (e.g. fashion-short-tuned, mnist-short-tuned); --vm: DropConnect
at the variance-matched rate (fashion-short-tuned-vm), named dropconnect-vm here; --extra: a
run directory of further methods (e.g. the unbiased controls), taken by their names. Pairs
are by seed (seeds both runs have), on the test accuracy at the epoch of best validation
accuracy; a pair whose methods have fewer than 2 common seeds is left out; Holm over the rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pairs import pair_rows, pair_table, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--vm", type=Path)
    parser.add_argument("--extra", type=Path, action="append", default=[])
    args = parser.parse_args()
    run, vm = args.run, args.vm
    table = {
        m: scores(run, m)
        for m in (
            "none",
            "dropout",
            "dropconnect",
            "ddc",
            "ddc-learned",
            "ddc-shuffled",
            "ddc-learned-shuffled",
        )
    }
    table["dropconnect-vm"] = scores(vm, "dropconnect") if vm else {}
    for extra in args.extra:
        for folder in sorted(p for p in (extra / "runs").iterdir() if p.is_dir()):
            table[folder.name] = scores(extra, folder.name)
    pairs = [
        ("ddc", "none"),
        ("ddc", "dropconnect"),
        ("ddc", "ddc-shuffled"),
        ("ddc-learned", "none"),
        ("ddc-learned", "dropconnect"),
        ("ddc-learned", "ddc"),
        ("ddc-learned", "ddc-learned-shuffled"),
        ("ddc-learned", "dropconnect-vm"),
        ("ddc", "ddc-unbiased"),
        ("ddc-learned", "ddc-learned-unbiased"),
        ("dropout", "none"),
        ("dropconnect", "none"),
    ]
    print("\n".join(pair_table(pair_rows(table, pairs))))
    print()
    print(
        "Means (test acc @ best val, %): "
        + "; ".join(
            f"{m} {sum(v.values()) / len(v):.2f} (n={len(v)})" for m, v in table.items() if v
        )
    )


if __name__ == "__main__":
    main()
