"""The data-size axis: one tuned comparison per training-set size, side by side.

Usage: python results/datasize.py SIZE=RUN_DIR [SIZE=RUN_DIR ...] [--plot PNG] > datasize.md
SIZE: the number of training images of that run directory (the whole MNIST training set:
60000), each RUN_DIR a ``ddc compare --tune`` run (results.json read for the tuned values).
Prints, for each metric (test acc @ best val, the suite's headline; final test acc, the last
epoch of a fixed-length cosine schedule, which no validation noise moves: at 1000 images the
validation split is 100 images), the accuracy per method and size (mean ± sd over seeds, with
the values tuning chose) and the paired differences by seed at every size, Holm-adjusted over
the whole axis (one family per metric); ``--plot`` draws both for test acc @ best val and
``--plot-final`` for the final accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pairs import Row, pair_rows, pair_table, scores

from dynamic_dropconnect.experiments.figures import (
    figure_title,
    legend_below,
    method_handle,
    method_style,
    panel_figure,
    save_figure,
)
from dynamic_dropconnect.experiments.stats import mean_std

METHODS = (
    "none",
    "dropconnect",
    "ddc",
    "ddc-learned",
    "ddc-shuffled",
    "ddc-learned-shuffled",
)
PAIRS = (
    ("ddc", "none"),
    ("ddc", "dropconnect"),
    ("ddc", "ddc-shuffled"),
    ("ddc-learned", "none"),
    ("ddc-learned", "dropconnect"),
    ("ddc-learned", "ddc-learned-shuffled"),
    ("dropconnect", "none"),
)


def size_and_dir(text: str) -> tuple[int, Path]:
    size, sep, folder = text.partition("=")
    if not sep or not size.isdigit() or int(size) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE=RUN_DIR with SIZE > 0, got {text!r}")
    return int(size), Path(folder).expanduser()


def tuned_values(run_dir: Path) -> dict[str, dict[str, float]]:
    """``{method: {name: value}}`` that tuning chose, from the run's results.json."""
    summary = json.loads((run_dir / "results.json").read_text())["summary"]["methods"]
    return {m: s.get("tuned") or {} for m, s in summary.items()}


def plot(
    sizes: list[int],
    tables: dict[int, dict[str, dict[int, float]]],
    rows: dict[int, list[Row]],
    path: Path,
    metric: str,
) -> None:
    fig, (acc_ax, diff_ax) = panel_figure(2, (5.2, 3.8), extra=1.6)
    handles = []
    for m in METHODS:
        colour, marker = method_style(m)
        points = [(s, mean_std(list(tables[s][m].values()))) for s in sizes if tables[s].get(m)]
        if not points:
            continue
        acc_ax.errorbar(
            [s for s, _ in points], [mean for _, (mean, _) in points],
            yerr=[sd for _, (_, sd) in points],
            color=colour, marker=marker, ms=4, lw=1.2, capsize=2,
        )  # fmt: skip
        handles.append(method_handle(m, m, ms=4))
    acc_ax.set(xscale="log", xlabel="training images", ylabel=f"{metric} (%)")
    acc_ax.set_title("accuracy (mean ± sd over seeds)", fontsize=10)
    offsets = {pair: (i - (len(PAIRS) - 1) / 2) * 0.025 for i, pair in enumerate(PAIRS)}
    # colour: the method compared against; marker and line: the method compared
    lines = {"ddc": "-", "ddc-learned": "--", "dropconnect": ":"}
    for pair in PAIRS:
        colour, marker = method_style(pair[1])[0], method_style(pair[0])[1]
        xs, ys, low, high = [], [], [], []
        for s in sizes:
            for a, b, _, c in rows[s]:
                if (a, b) == pair:
                    xs.append(s * 10 ** offsets[pair])  # side by side, not on top of each other
                    ys.append(c["mean_diff"])
                    low.append(c["mean_diff"] - c["ci95_t"][0])
                    high.append(c["ci95_t"][1] - c["mean_diff"])
        if xs:
            diff_ax.errorbar(
                xs, ys, yerr=[low, high], color=colour,
                marker=marker, ms=4, lw=1.0, capsize=2, ls=lines.get(pair[0], "-"),
                label=f"{pair[0]} − {pair[1]}",
            )  # fmt: skip
    diff_ax.axhline(0.0, color="black", lw=0.8, ls=":")
    diff_ax.set(xscale="log", xlabel="training images", ylabel="paired Δ (pp)")
    diff_ax.set_title("paired differences, 95 % t intervals", fontsize=10)
    diff_ax.legend(fontsize=7, frameon=False)
    legend_below(fig, handles)
    figure_title(
        fig, f"MNIST MLP, {metric}: the data-size axis (each method tuned on validation per size)"
    )
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=size_and_dir, nargs="+", metavar="SIZE=RUN_DIR")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--plot-final", type=Path)
    args = parser.parse_args()
    runs = sorted(args.runs)
    tuned = {s: tuned_values(d) for s, d in runs}
    for metric, title, path in (
        ("test_acc_at_best_val", "test acc @ best val", args.plot),
        ("final_test_acc", "final test acc", args.plot_final),
    ):
        print(f"## {title}\n")
        section(runs, tuned, metric, title, path)
        print()


def section(
    runs: list[tuple[int, Path]],
    tuned: dict[int, dict[str, dict[str, float]]],
    metric: str,
    title: str,
    path: Path | None,
) -> None:
    sizes = [s for s, _ in runs]
    tables = {s: {m: scores(d, m, metric) for m in METHODS} for s, d in runs}
    print("| method | " + " | ".join(f"{s} images" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for method in METHODS:
        cells = []
        for s in sizes:
            values = list(tables[s][method].values())
            if not values:
                cells.append("—")
                continue
            mean, sd = mean_std(values)
            chosen = ", ".join(f"{k} {v:g}" for k, v in tuned[s].get(method, {}).items())
            cells.append(f"{mean:.2f} ± {sd:.2f} (n={len(values)}; {chosen})")
        print(f"| {method} | " + " | ".join(cells) + " |")
    print()
    rows = {s: pair_rows(tables[s], PAIRS) for s in sizes}
    flat = [row for s in sizes for row in rows[s]]
    print("\n".join(pair_table(flat, prefix=[str(s) for s in sizes for _ in rows[s]])))
    if path:
        plot(sizes, tables, rows, path, title)


if __name__ == "__main__":
    main()
