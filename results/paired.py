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
import json
from pathlib import Path

from dynamic_dropconnect.experiments.stats import holm, paired_comparison


def scores(run_dir: Path, method: str) -> dict[int, float]:
    out = {}
    for result in sorted((run_dir / "runs" / method).glob("seed*/result.json")):
        record = json.loads(result.read_text())
        if record.get("complete"):
            out[int(record["seed"])] = 100 * float(record["test_acc_at_best_val"])
    return out


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
    rows = []
    for a, b in pairs:
        if a not in table or b not in table:
            continue
        seeds = sorted(set(table[a]) & set(table[b]))
        if len(seeds) < 2:
            continue
        comp = paired_comparison([table[a][s] for s in seeds], [table[b][s] for s in seeds])
        rows.append((a, b, seeds, comp))
    adjusted = holm([c["t_pvalue"] for *_, c in rows])
    print(
        "| comparison (a − b) | seeds | mean Δ (pp) | 95% CI (t) | 95% CI (bootstrap) | "
        "wins/losses of a | Holm p | pairs for 80% power |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (a, b, seeds, c), p in zip(rows, adjusted, strict=True):
        boot = c["ci95_bootstrap"]
        boot_text = f"[{boot[0]:+.2f}, {boot[1]:+.2f}]" if boot else "— (n < 5)"
        print(
            f"| {a} − {b} | {','.join(map(str, seeds))} | {c['mean_diff']:+.2f} | "
            f"[{c['ci95_t'][0]:+.2f}, {c['ci95_t'][1]:+.2f}] | {boot_text} | "
            f"{c['wins']}/{c['losses']} | {p:.3g} | {c['pairs_for_80_power'] or '—'} |"
        )
    print()
    print(
        "Means (test acc @ best val, %): "
        + "; ".join(
            f"{m} {sum(v.values()) / len(v):.2f} (n={len(v)})" for m, v in table.items() if v
        )
    )


if __name__ == "__main__":
    main()
