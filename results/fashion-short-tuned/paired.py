"""The paired comparisons behind the README's Fashion-MNIST verdict, recomputed from run files.

Usage: python results/fashion-short-tuned/paired.py RUN_DIR VM_RUN_DIR > paired.md
RUN_DIR: the tuned comparison (fashion-short-tuned); VM_RUN_DIR: DropConnect at the
variance-matched rate (fashion-short-tuned-vm). Pairs are by seed (seeds both runs have);
the test accuracy at the epoch of best validation accuracy; Holm over the rows of the table.
"""

from __future__ import annotations

import json
import sys
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
    run, vm = Path(sys.argv[1]), Path(sys.argv[2])
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
    table["dropconnect-vm"] = scores(vm, "dropconnect")
    pairs = [
        ("ddc", "none"),
        ("ddc", "dropconnect"),
        ("ddc", "ddc-shuffled"),
        ("ddc-learned", "none"),
        ("ddc-learned", "dropconnect"),
        ("ddc-learned", "ddc"),
        ("ddc-learned", "ddc-learned-shuffled"),
        ("ddc-learned", "dropconnect-vm"),
        ("dropout", "none"),
        ("dropconnect", "none"),
    ]
    rows = []
    for a, b in pairs:
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
