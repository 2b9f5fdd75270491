"""Reports of ``ddc sweep``: the heatmaps of a DDC hyperparameter grid, the paired comparison
of each cell with DropConnect at its measured drop rate, their table and forest plot."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .figures import MAX_FIG_WIDTH, plot_forest, pyplot, save_figure, titled, wrap_words
from .stats import mean_std, paired_comparison, t_ci, to_float
from .storage import RunFileError, read_json_file
from .summaries import CHANCE_MARGIN, add_holm, chance_level
from .tables import fmt_interval, fmt_pct, fmt_pct_pm, fmt_power_pairs, fmt_pvalue, format_point

__all__ = [
    "format_sweep_table",
    "plot_sweep_forest",
    "plot_sweep_heatmap",
    "sweep_colour_limits",
    "sweep_comparisons",
]


#: What the columns of sweep.json measure, in words (heatmap titles and colour bars).
_SWEEP_VALUES: dict[str, str] = {
    "val_acc": "DDC's best validation accuracy",
    "test_acc": "DDC's test accuracy at the best-validation epoch",
    "mean_drop_rate": "DDC's realized drop rate (fraction of weights dropped)",
    "gain_over_matched": "gain of DDC over DropConnect at the same drop rate (test accuracy)",
}


#: The same, short (colour bars; the unit is added).
_SWEEP_SHORT: dict[str, str] = {
    "val_acc": "validation accuracy",
    "test_acc": "test accuracy",
    "mean_drop_rate": "drop rate",
    "gain_over_matched": "DDC − DropConnect",
}


#: The swept DDC hyperparameters, in words (heatmap axes).
_SWEEP_NAMES: dict[str, str] = {
    "p": "p (base drop rate)",
    "pg": "pg (gradient unit rate)",
    "tau": "tau (threshold on q)",
}


def _sweep_cells(
    rows: Sequence[dict[str, Any]], x: str, y: str, value: str
) -> dict[tuple[Any, Any], list[float]]:
    """``{(x, y): [finite values of value]}`` over the rows that have all three."""
    cells: dict[tuple[Any, Any], list[float]] = {}
    for row in rows:
        if x in row and y in row and value in row:
            v = to_float(row[value])
            if math.isfinite(v):
                cells.setdefault((row[x], row[y]), []).append(v)
    return cells


def _percent(value: str, values: Iterable[float]) -> bool:
    """Whether a sweep column is shown in percent: accuracies and gains given as fractions."""
    vals = list(values)
    name = value.lower()
    return ("acc" in name or "gain" in name) and min(vals) >= -1.0 and max(vals) <= 1.0


def sweep_colour_limits(
    rows: Sequence[dict[str, Any]], x: str, y: str, value: str
) -> tuple[float, float]:
    """The colour limits :func:`plot_sweep_heatmap` uses for ``value``, in the units it shows
    (percentage points for accuracies and gains given as fractions).

    A ``*gain*`` column is diverging: limits symmetric around 0, ``±max(largest |cell mean|,
    largest 95 % t half-width of a cell mean)``, so a difference smaller than the cells' own
    uncertainty stays pale instead of spanning the whole scale. Other columns span the cell
    means, widened around their midpoint to at least ± the largest half-width. Cells of one
    seed have no interval. Raises ``ValueError`` when no row has numeric ``x``, ``y`` and
    ``value``."""
    cells = _sweep_cells(rows, x, y, value)
    if not cells:
        raise ValueError(f"plot_sweep_heatmap: no row has numeric {x!r}, {y!r} and {value!r}")
    scale = 100.0 if _percent(value, (v for vals in cells.values() for v in vals)) else 1.0
    means = np.array([scale * np.mean(vals) for vals in cells.values()])
    halves = [
        scale * (hi - lo) / 2
        for lo, hi in (t_ci(vals) for vals in cells.values())
        if math.isfinite(lo)
    ]
    half = max(halves, default=0.0)
    if "gain" in value.lower():
        bound = max(float(np.max(np.abs(means))), half) or 1.0
        return -bound, bound
    low, high = float(means.min()), float(means.max())
    mid, reach = (low + high) / 2, max((high - low) / 2, half)
    if reach == 0.0:  # one value everywhere: any small range shows it
        reach = max(abs(mid) * 0.01, 1e-3)
    return mid - reach, mid + reach


def _experiment_near(path: str | Path) -> str | None:
    """The experiment of the run directory a plot is written into (``RUN/plots/x.png``), from
    its config.json; ``None`` when there is none."""
    config = Path(path).parent.parent / "config.json"
    try:
        name = read_json_file(config).get("experiment") if config.is_file() else None
    except RunFileError:
        return None
    return name if isinstance(name, str) else None


def plot_sweep_heatmap(
    rows: Sequence[dict[str, Any]],
    x: str,
    y: str,
    value: str,
    path: str | Path,
    *,
    experiment: str | None = None,
) -> Path:
    """Heatmap of ``value`` over the grid of ``x`` (columns) and ``y`` (rows), cells annotated.

    Rows with the same ``(x, y)`` are averaged (the caller fixes any other swept parameter) and,
    with two or more (seeds), annotated ``mean ± half-width of its 95 % t interval``; missing
    cells stay blank. Values of an ``*acc*`` or ``*gain*`` column within ``[-1, 1]`` are shown
    in percent (points); a ``*gain*`` column gets a diverging colour map centred on 0. Colour
    limits: :func:`sweep_colour_limits`. The title names ``experiment`` (default: that of the
    run directory's config.json when ``path`` is ``RUN/plots/...``) and the quantity in words.
    Raises ``ValueError`` when no row has numeric ``x``, ``y`` and ``value``.
    """
    vmin, vmax = sweep_colour_limits(rows, x, y, value)
    cells = _sweep_cells(rows, x, y, value)
    percent = _percent(value, (v for vals in cells.values() for v in vals))
    scale = 100.0 if percent else 1.0
    xs = sorted({k[0] for k in cells}, key=_sort_key)
    ys = sorted({k[1] for k in cells}, key=_sort_key)
    shown = np.full((len(ys), len(xs)), np.nan)
    half = np.full((len(ys), len(xs)), np.nan)
    for (xv, yv), vals in cells.items():
        i, j = ys.index(yv), xs.index(xv)
        shown[i, j] = scale * float(np.mean(vals))
        lo, hi = t_ci(vals)
        half[i, j] = scale * (hi - lo) / 2 if math.isfinite(lo) else math.nan
    gain = "gain" in value.lower()
    experiment = experiment or _experiment_near(path)

    plt = pyplot()
    from matplotlib.colors import Normalize, TwoSlopeNorm

    width = min(1.4 * len(xs) + 3.6, MAX_FIG_WIDTH)
    fig, ax = plt.subplots(figsize=(width, min(0.9 * len(ys) + 2.6, 10.0)), layout="constrained")
    norm = TwoSlopeNorm(vcenter=0.0, vmin=vmin, vmax=vmax) if gain else Normalize(vmin, vmax)
    cmap = plt.get_cmap("RdBu" if gain else "viridis")
    image = ax.imshow(
        np.ma.masked_invalid(shown), origin="lower", aspect="auto", cmap=cmap, norm=norm
    )
    unit = (" (percentage points)" if gain else " (%)") if percent else ""
    words = _SWEEP_VALUES.get(value, value.replace("_", " "))
    fig.colorbar(image, ax=ax, label=_SWEEP_SHORT.get(value, value.replace("_", " ")) + unit)
    seeds = max(len(vals) for vals in cells.values())
    for i in range(len(ys)):
        for j in range(len(xs)):
            v = shown[i, j]
            if not math.isfinite(v):
                continue
            text = f"{v:+.2f}" if gain else (f"{v:.2f}" if percent else f"{v:.3g}")
            if math.isfinite(half[i, j]) and half[i, j] > 0:  # a per-cell constant: no ±0
                text += f"\n±{half[i, j]:.2f}" if percent else f"\n±{half[i, j]:.2g}"
            r, g, b, _ = cmap(norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # white text on dark cells
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(_SWEEP_NAMES.get(x, x))
    ax.set_ylabel(_SWEEP_NAMES.get(y, y))
    note = (
        "cell: mean over seeds ± half-width of its 95% t interval"
        if seeds > 1
        else "cell: one seed (no interval)"
    )
    ax.set_title(wrap_words(titled(words, experiment), int(12 * width)) + f"\n{note}", fontsize=10)
    return save_figure(fig, path)


def sweep_comparisons(rows: Sequence[dict[str, Any]]) -> dict[tuple[Any, Any, Any], dict]:
    """Per (p, pg, tau) cell with matched DropConnect: :func:`paired_comparison` of DDC's test
    accuracy against its matched DropConnect, paired by seed, with ``holm_pvalue`` over the
    family of all cells (one table). ``{}`` when the rows have no matched runs."""
    cells: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        if "matched_dropconnect_test_acc" in row:
            cells.setdefault((row["p"], row["pg"], row["tau"]), []).append(row)
    out = {
        cell: paired_comparison(
            [r["test_acc"] for r in group], [r["matched_dropconnect_test_acc"] for r in group]
        )
        for cell, group in sorted(cells.items(), key=lambda kv: tuple(map(_sort_key, kv[0])))
    }
    add_holm(out.values())
    return out


def format_sweep_table(
    rows: Sequence[dict[str, Any]],
    title: str,
    n_seeds: int,
    protocol: str = "",
    *,
    chance: float | None = None,
) -> str:
    """Markdown table of a sweep: one line per (p, pg, tau) cell, DDC against DropConnect at
    the cell's measured mean drop rate (when the rows have it), paired by seed, with the 95 %
    intervals of the gain, Holm's adjustment over all cells and the pairs 80 % power needs
    (see :func:`paired_comparison`). ``protocol`` (epochs, learning rate, subset) is stated
    above the table; tuned points (``tuned``, ``matched_tuned``) get columns of their own.

    ``chance`` (a fraction; default: ``1 / classes`` of the data set of the experiment named
    ``title``, when known): a mean test accuracy below ``chance + CHANCE_MARGIN`` is marked
    ``⚠ at chance`` and said above the table, before any gain or p."""
    cells: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["p"], row["pg"], row["tau"]), []).append(row)
    if chance is None:
        level = chance_level({"experiment": title})
        chance = None if level is None else level[0]
    matched = any("matched_dropconnect_test_acc" in r for r in rows)
    tuned = any("tuned" in r for r in rows)
    tests = sweep_comparisons(rows) if matched else {}
    head = "| p | pg | tau |" + (" DDC tuned |" if tuned else "") + " mean drop rate |"
    head += " DDC test acc @ best val |"
    rule = "|---|---|---|" + ("---|" if tuned else "") + "---|---|"
    if matched:
        head += (
            " matched DropConnect p |"
            + (" its tuned |" if tuned else "")
            + " its test acc | gain (pp) | DDC wins | paired t p | Holm p | 95% CI of gain (t) |"
            " 95% CI (bootstrap) | pairs for 80% power |"
        )
        rule += "---|" * (9 + tuned)
    intro = f"{n_seeds} seed(s) per cell; accuracies in %." + (
        f" Training: {protocol}." if protocol else ""
    )

    def at_chance(values: Sequence[float]) -> str:
        mean = float(np.mean(values))
        return " ⚠ at chance" if chance is not None and mean < chance + CHANCE_MARGIN else ""

    body, flagged = [], 0
    for (p, pg, tau), group in sorted(cells.items(), key=lambda kv: tuple(map(_sort_key, kv[0]))):
        ddc_acc = [r["test_acc"] for r in group]
        dc_acc = [r["matched_dropconnect_test_acc"] for r in group] if matched else []
        flagged += bool(at_chance(ddc_acc) or (dc_acc and at_chance(dc_acc)))
        line = (
            f"| {p} | {pg} | {tau} |"
            + (f" {format_point(group[0].get('tuned'))} |" if tuned else "")
            + f" {np.mean([r['mean_drop_rate'] for r in group]):.3f} | "
            f"{fmt_pct_pm(_stat(ddc_acc))}{at_chance(ddc_acc)} |"
        )
        if matched:
            test = tests[(p, pg, tau)]
            line += (
                f" {group[0]['matched_dropconnect_p']} |"
                + (f" {format_point(group[0].get('matched_tuned'))} |" if tuned else "")
                + f" {fmt_pct_pm(_stat(dc_acc))}{at_chance(dc_acc)} | "
                f"{100 * test['mean_diff']:+.2f} ± {100 * test['std_diff']:.2f} | "
                f"{test['wins']}/{test['n']} | {fmt_pvalue(test['t_pvalue'])} | "
                f"{fmt_pvalue(test['holm_pvalue'])} | {fmt_interval(test['ci95_t'])} | "
                f"{fmt_interval(test['ci95_bootstrap'])} | {fmt_power_pairs(test)} |"
            )
        body.append(line)
    lines = [f"# Sweep: {title}", "", intro, ""]
    if flagged:
        lines += [
            f"**⚠ Not informative:** in {flagged} of {len(cells)} cells DDC or its matched "
            f"DropConnect has a mean test accuracy within {100 * CHANCE_MARGIN:g} points of "
            f"chance ({fmt_pct(chance)} % = 1 / {round(1 / chance)} classes), marked ⚠ below: "
            "those runs did not learn, and their gains and p-values compare noise. Train "
            "longer, on more data or at another learning rate before reading them.",
            "",
        ]
    lines += [head, rule, *body]
    if matched:
        lines += [
            "",
            "gain = DDC − matched DropConnect, paired by seed (mean ± sd of the differences). "
            "*Holm p* adjusts the paired t p-values over the family of all cells of this table; "
            "the bootstrap interval (10,000 seeded resamples) needs 5 pairs; *pairs for 80% "
            "power*: seed pairs a two-sided paired t-test at alpha 0.05 would need for the "
            "observed effect (mean / sd of the differences).",
        ]
    return "\n".join(lines) + "\n"


def plot_sweep_forest(
    rows: Sequence[dict[str, Any]], path: str | Path, *, experiment: str | None = None
) -> Path | None:
    """Forest plot of every sweep cell's gain over its matched DropConnect (``None`` without
    matched runs); the title names ``experiment`` (default: that of the run directory's
    config.json when ``path`` is ``RUN/plots/...``)."""
    rows_out = [
        {
            "label": f"p={p} pg={pg} tau={tau}",
            "mean": test["mean_diff"],
            "ci95_t": test["ci95_t"],
            "ci95_bootstrap": test["ci95_bootstrap"],
            "n": test["n"],
        }
        for (p, pg, tau), test in sweep_comparisons(rows).items()
    ]
    return plot_forest(
        rows_out,
        path,
        titled(
            "gain of DDC over DropConnect at the cell's measured drop rate, paired by seed",
            experiment or _experiment_near(path),
        ),
        "gain in test accuracy at the best-validation epoch (percentage points)",
    )


def _stat(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std"}`` of the values, as :func:`.tables.fmt_pct_pm` takes it."""
    mean, std = mean_std(values)
    return {"mean": mean, "std": std}


def _sort_key(v: Any) -> tuple[int, Any]:
    """Numbers first, in order, then anything else by its text."""
    f = to_float(v)
    return (0, f) if math.isfinite(f) else (1, str(v))
