"""Reports of a run directory: multi-seed statistics, a Markdown table, plots.

The run directory is written by the training code::

    RUN_DIR/config.json                         # {"experiment", "methods", "seeds", "epochs", ...}
    RUN_DIR/runs/<method>/seed<k>/metrics.csv   # one row per finished epoch
    RUN_DIR/runs/<method>/seed<k>/result.json   # {"method", "seed", ..., "complete": true}
    RUN_DIR/runs/<method>/seed<k>/drop_probs.pt # optional {layer: 1-D tensor of p_ij}
    RUN_DIR/tune.json                           # --tune: grid, validation scores, choices

Every comparison table states, per paired comparison, the mean difference with its 95 % t
interval (and a seeded percentile-bootstrap interval from 5 pairs on), the t-test p-value and
its Holm adjustment over the family of all comparisons in that table, and the number of seed
pairs a paired t-test would need for 80 % power at the observed effect (:mod:`.stats`).

Accuracies are fractions in ``[0, 1]`` in the files and percentages (2 decimals) in the report. The
honest number is the test accuracy at the best-validation epoch; the maximum test accuracy over
epochs is optimistic (selection on the test set) and is shown only for comparison with the paper.

matplotlib and scipy are imported inside the functions that need them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io import (
    RunFileError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    read_json_file,
)
from .stats import BOOTSTRAP_MIN_PAIRS, bootstrap_ci, effect_size, holm, pairs_for_power, t_ci

__all__ = [
    "METRICS",
    "add_holm",
    "format_point",
    "format_sweep_table",
    "format_table",
    "format_tuning",
    "load_config",
    "load_metrics",
    "load_results",
    "load_tuning",
    "paired_comparison",
    "plot_drop_prob_hist",
    "plot_drop_rates",
    "plot_forest",
    "plot_learned_curves",
    "plot_learning_curves",
    "plot_sweep_forest",
    "plot_sweep_heatmap",
    "summarize",
    "sweep_comparisons",
    "write_report",
]

#: The per-seed numbers summarized for every method (keys of ``result.json``).
METRICS: tuple[str, ...] = ("test_acc_at_best_val", "final_test_acc", "max_test_acc")

_SEED_DIR = re.compile(r"^seed(-?\d+)$")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_config(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/config.json`` as a dict, ``{}`` when absent; :class:`RunFileError` naming it
    when it is garbled (a report of a run whose configuration is lost would mislead)."""
    path = Path(run_dir) / "config.json"
    return read_json_file(path) if path.exists() else {}


def mean_drop_rate(run_dir: Path) -> float:
    """Realized drop rate of one run (``runs/<method>/seed<k>``), averaged over its epochs and
    regularized layers; NaN for a run that drops no edges (none, dropout, ...)."""
    columns = load_metrics(run_dir / "metrics.csv")
    rates = [v for k, v in columns.items() if k.startswith("drop_rate/")]
    return float(np.nanmean(np.stack(rates))) if rates else float("nan")


def _seed_dirs(run_dir: Path) -> list[tuple[str, int, Path]]:
    """``(method, seed, dir)`` of every ``runs/<method>/seed<k>`` folder, sorted."""
    out = []
    runs = run_dir / "runs"
    if not runs.is_dir():
        return out
    for method_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        for seed_dir in method_dir.iterdir():
            match = _SEED_DIR.match(seed_dir.name)
            if seed_dir.is_dir() and match:
                out.append((method_dir.name, int(match.group(1)), seed_dir))
    return sorted(out, key=lambda t: (t[0], t[1]))


def _method_order(methods: Iterable[str], config: dict[str, Any]) -> list[str]:
    """The config's method order first, then any other methods alphabetically."""
    present = set(methods)
    configured = [m for m in config.get("methods", []) if isinstance(m, str)]
    ordered = [m for m in dict.fromkeys(configured) if m in present]
    return ordered + sorted(present - set(ordered))


def load_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete ``result.json`` under ``RUN_DIR/runs``, ordered by method then seed.

    A result counts when its JSON parses, has ``"complete": true`` and numeric metrics; the
    ``method`` and ``seed`` keys default to the folder names when absent. Method order follows
    ``config.json``'s ``methods`` where given.
    """
    run_dir = Path(run_dir)
    results = []
    for method, seed, folder in _seed_dirs(run_dir):
        try:
            data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("complete") is not True:
            continue
        data.setdefault("method", method)
        data.setdefault("seed", seed)
        data.setdefault("edge_drop_rate", mean_drop_rate(folder))
        results.append(data)
    order = {
        m: i
        for i, m in enumerate(_method_order((r["method"] for r in results), load_config(run_dir)))
    }
    return sorted(results, key=lambda r: (order[r["method"]], r["seed"]))


def load_metrics(path: str | Path) -> dict[str, np.ndarray]:
    """A ``metrics.csv`` as ``{column: float array}`` (empty or non-numeric cells are NaN).

    Returns ``{}`` for a missing or empty file; rows are sorted by ``epoch`` when present.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return {}
    except (UnicodeDecodeError, csv.Error) as err:
        raise RunFileError(
            f"{path}: not a readable metrics.csv ({err}); repair or delete it (the run's "
            "checkpoint.pt holds the same per-epoch rows)"
        ) from err
    if not rows:
        return {}
    columns: dict[str, np.ndarray] = {}
    for name in rows[0]:
        if name is None:
            continue
        columns[name] = np.array([_to_float(row.get(name)) for row in rows], dtype=np.float64)
    if "epoch" in columns:
        order = np.argsort(columns["epoch"], kind="stable")
        columns = {k: v[order] for k, v in columns.items()}
    return columns


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1); NaN std for fewer than 2 values, NaN mean for none."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return mean, std


def paired_comparison(
    reference: Sequence[float], other: Sequence[float], *, tie_tol: float = 1e-12
) -> dict[str, Any]:
    """Paired comparison of two equally long value lists (same seeds, same order).

    ``d = reference - other``. Returns ``n``, ``mean_diff``, ``std_diff`` (ddof=1),
    ``t_pvalue`` (``scipy.stats.ttest_rel``; NaN for ``n < 2`` or when all ``d`` are equal up to
    ``tie_tol``, so the statistic is undefined), ``wilcoxon_pvalue`` (signed-rank, two-sided, for
    ``n >= 5``, NaN when all ``|d| <= tie_tol``, else ``None``), and ``wins`` / ``ties`` /
    ``losses`` of the reference (``|d| <= tie_tol`` is a tie). No warnings are emitted.

    Also ``ci95_t`` (the 95 % t interval of the mean difference, NaN for ``n < 2``),
    ``ci95_bootstrap`` (percentile bootstrap, 10,000 seeded resamples, for ``n >= 5``, else
    ``None``), ``effect_size_dz`` (mean / sd of ``d``) and ``pairs_for_80_power`` (pairs a
    two-sided paired t-test at alpha 0.05 needs for 80 % power at that effect; ``None`` when
    undefined). See :mod:`.stats`.
    """
    ref = np.asarray(reference, dtype=np.float64)
    oth = np.asarray(other, dtype=np.float64)
    if ref.shape != oth.shape or ref.ndim != 1:
        raise ValueError(
            f"paired_comparison: need two equally long 1-D lists, got {ref.shape} and {oth.shape}"
        )
    d = ref - oth
    n = int(d.size)
    mean_diff, std_diff = _mean_std(d)
    t_p = math.nan
    if n >= 2 and np.ptp(d) > tie_tol:  # equal differences (up to rounding): t undefined
        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_p = float(stats.ttest_rel(ref, oth).pvalue)
    w_p: float | None = None
    if n >= 5:
        w_p = math.nan
        if np.any(np.abs(d) > tie_tol):
            from scipy import stats

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                w_p = float(stats.wilcoxon(np.where(np.abs(d) <= tie_tol, 0.0, d)).pvalue)
    ci = t_ci(d) if n >= 2 else (math.nan, math.nan)
    boot = bootstrap_ci(d) if n >= BOOTSTRAP_MIN_PAIRS else None
    effect = effect_size(d) if n >= 2 else math.nan
    return {
        "n": n,
        "mean_diff": mean_diff,
        "std_diff": std_diff,
        "ci95_t": list(ci),
        "ci95_bootstrap": None if boot is None else list(boot),
        "effect_size_dz": effect,
        "pairs_for_80_power": pairs_for_power(effect),
        "t_pvalue": t_p,
        "wilcoxon_pvalue": w_p,
        "wins": int(np.sum(d > tie_tol)),
        "ties": int(np.sum(np.abs(d) <= tie_tol)),
        "losses": int(np.sum(d < -tie_tol)),
    }


def summarize(
    results: Sequence[dict[str, Any]], reference: str = "ddc", *, paired_metric: str = METRICS[0]
) -> dict[str, Any]:
    """Per-method statistics and paired comparisons of ``reference`` against each other method.

    Returns::

        {"reference": str, "paired_metric": str, "method_order": [...],
         "methods": {m: {"n": int, "seeds": [...],
                         <metric>: {"mean", "std", "values"} for metric in METRICS}},
         "comparisons": {m: {"seeds": [...], **paired_comparison(ref, m)}}}

    ``std`` is the sample std (ddof=1), NaN for one seed. Comparisons pair by seed over the seeds
    both methods have, on ``paired_metric`` (test accuracy at the best-validation epoch), with
    ``mean_diff = reference - method``. No comparisons when ``reference`` has no results. A seed
    that appears twice for one method keeps its last result. ``holm_pvalue`` adjusts the t-test
    p-values for the family of all comparisons of the table (:func:`add_holm`).
    """
    by_method: dict[str, dict[int, dict[str, Any]]] = {}
    for r in results:
        by_method.setdefault(str(r["method"]), {})[int(r["seed"])] = r
    methods: dict[str, Any] = {}
    for method, seeds in by_method.items():
        entry: dict[str, Any] = {"n": len(seeds), "seeds": sorted(seeds)}
        rates = [_to_float(seeds[s].get("edge_drop_rate")) for s in sorted(seeds)]
        if rates and all(math.isfinite(r) for r in rates):  # methods that drop edges
            entry["edge_drop_rate"] = float(np.mean(rates))
        for metric in METRICS:
            values = [_to_float(seeds[s].get(metric)) for s in sorted(seeds)]
            mean, std = _mean_std(values)
            entry[metric] = {"mean": mean, "std": std, "values": values}
        methods[method] = entry
    comparisons: dict[str, Any] = {}
    if reference in by_method:
        ref = by_method[reference]
        for method, seeds in by_method.items():
            if method == reference:
                continue
            common = sorted(set(ref) & set(seeds))
            comparisons[method] = {
                "seeds": common,
                **paired_comparison(
                    [_to_float(ref[s].get(paired_metric)) for s in common],
                    [_to_float(seeds[s].get(paired_metric)) for s in common],
                ),
            }
    add_holm(comparisons.values())
    return {
        "reference": reference,
        "paired_metric": paired_metric,
        "method_order": list(by_method),
        "methods": methods,
        "comparisons": comparisons,
    }


def add_holm(comparisons: Iterable[dict[str, Any]]) -> None:
    """Set ``holm_pvalue`` of every comparison (one family: one table), from ``t_pvalue``.
    Comparisons without a p-value get NaN and do not count in the family size."""
    family = list(comparisons)
    for comp, adjusted in zip(family, holm([c["t_pvalue"] for c in family]), strict=True):
        comp["holm_pvalue"] = adjusted


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _pp_interval(interval: Sequence[float] | None) -> str:
    """An interval of fractions as ``[lo, hi]`` in percentage points; — when undefined."""
    if interval is None or not all(math.isfinite(v) for v in interval):
        return "—"
    return f"[{100.0 * interval[0]:+.2f}, {100.0 * interval[1]:+.2f}]"


def _power_pairs(comp: dict[str, Any]) -> str:
    pairs = comp.get("pairs_for_80_power")
    return "—" if pairs is None else str(pairs)


def format_point(point: dict[str, Any] | None) -> str:
    """A tuned grid point as ``lr=0.01, p=0.3``; — for none."""
    if not point:
        return "—"
    return ", ".join(f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}"
                     for k, v in point.items())  # fmt: skip


def _pct(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{100.0 * value:.2f}"


def _pct_pm(stat: dict[str, float]) -> str:
    mean, std = stat["mean"], stat["std"]
    if not math.isfinite(mean):
        return "—"
    return _pct(mean) if not math.isfinite(std) else f"{_pct(mean)} ± {_pct(std)}"


def _pvalue(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.1e}"


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table with a note line under it.

    Columns: method | seeds | edge drop rate | test acc @ best val (mean ± std) | final test
    acc | max over epochs (optimistic) | Δ vs reference | paired p (t). Accuracies in percent,
    2 decimals; Δ in percentage points, ``reference − method`` (positive: the reference is better).
    """
    ref = summary["reference"]
    tuned = any("tuned" in e for e in summary["methods"].values())
    header = [
        "method",
        "seeds",
        *(["tuned (on validation)"] if tuned else []),
        "edge drop rate",
        "test acc @ best val (mean ± std)",
        "final test acc",
        "max over epochs (optimistic)",
        f"Δ vs {ref} ({ref} − method, pp)",
        "95% CI of Δ (t)",
        "95% CI of Δ (bootstrap)",
        "pairs for 80% power",
        "Holm p",
        "paired p (t)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for method in summary["method_order"]:
        entry = summary["methods"][method]
        comp = summary["comparisons"].get(method)
        if comp is None or comp["n"] == 0:
            delta, ci, boot, power, holm_p, p = "—", "—", "—", "—", "—", "—"
        else:
            md = comp["mean_diff"]
            delta = f"{100.0 * md:+.2f} (n={comp['n']})" if math.isfinite(md) else "—"
            ci = _pp_interval(comp.get("ci95_t"))
            boot = _pp_interval(comp.get("ci95_bootstrap"))
            power = _power_pairs(comp)
            holm_p = _pvalue(comp.get("holm_pvalue"))
            p = _pvalue(comp["t_pvalue"])
        lines.append(
            "| "
            + " | ".join(
                [
                    f"**{method}**" if method == ref else method,
                    str(entry["n"]),
                    *([format_point(entry.get("tuned"))] if tuned else []),
                    f"{entry['edge_drop_rate']:.3f}" if "edge_drop_rate" in entry else "—",
                    _pct_pm(entry["test_acc_at_best_val"]),
                    _pct_pm(entry["final_test_acc"]),
                    _pct_pm(entry["max_test_acc"]),
                    delta,
                    ci,
                    boot,
                    power,
                    holm_p,
                    p,
                ]
            )
            + " |"
        )
    note = (
        f"\nAccuracies in %, mean ± sample std over seeds. *test acc @ best val* (the test "
        f"accuracy at the epoch of best validation accuracy) is the honest number; *final* is "
        f"the last epoch; *max over epochs* selects on the test set, is optimistic and is shown "
        f"only for comparison with the paper. Δ and p pair {ref} with each method by seed "
        f"(seeds both have) on test acc @ best val; p is a two-sided paired t-test "
        f"(— : fewer than 2 pairs or no variance), *Holm p* the same adjusted by Holm's method "
        f"over the family of all comparisons in this table. *95% CI of Δ*: t interval, and a "
        f"percentile bootstrap (10,000 seeded resamples) from 5 pairs on. *pairs for 80% "
        f"power*: seed pairs a two-sided paired t-test at alpha 0.05 would need to detect the "
        f"observed effect (mean Δ / sd of Δ) with 80 % power. *edge drop rate*: the realized "
        f"fraction of dropped weights during training, mean over epochs, layers and seeds "
        f"(— : the method drops activations or nothing)."
        + (
            " *tuned*: the grid point each method chose on the validation split before its "
            "evaluation seeds (see Tuning below); — : the method takes none of the tuned names."
            if tuned
            else ""
        )
    )
    return "\n".join(lines) + "\n" + note + "\n"


def _method_details(summary: dict[str, Any]) -> str:
    lines = ["## Per method", ""]
    ref = summary["reference"]
    for method in summary["method_order"]:
        entry = summary["methods"][method]
        vals = ", ".join(
            f"seed {s}: {_pct(v)}"
            for s, v in zip(entry["seeds"], entry["test_acc_at_best_val"]["values"], strict=True)
        )
        lines.append(f"- **{method}** ({entry['n']} seeds) — test acc @ best val: {vals}")
        comp = summary["comparisons"].get(method)
        if comp is not None:
            md = comp["mean_diff"]
            delta = f"{100.0 * md:+.2f}" if math.isfinite(md) else "—"
            wp = comp["wilcoxon_pvalue"]
            wilcoxon = "n/a (n < 5)" if wp is None else _pvalue(wp)
            lines.append(
                f"  - vs {ref} over seeds {comp['seeds']}: {ref} wins/ties/losses "
                f"{comp['wins']}/{comp['ties']}/{comp['losses']}; mean Δ ({ref} − {method}) "
                f"{delta} pp; t-test p {_pvalue(comp['t_pvalue'])}; Wilcoxon p {wilcoxon}"
            )
    return "\n".join(lines) + "\n"


def format_tuning(tuning: dict[str, Any], order: Sequence[str] = ()) -> str:
    """The ``Tuning`` section of results.md: what was tuned, how, and per method (in
    ``order`` first) its grid with the validation scores (the chosen point in bold). Empty
    without tuning."""
    methods = tuning.get("methods") or {}
    if not methods:
        return ""
    rank = {m: i for i, m in enumerate(order)}
    methods = dict(sorted(methods.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
    grid = tuning.get("grid", {})
    flags = " ".join(f"--tune {k}={','.join(map(str, v))}" for k, v in grid.items())
    lines = [
        "## Tuning",
        "",
        f"`{flags}` on tune seeds {tuning.get('seeds')} (their own seeds, never the evaluation "
        f"seeds). Each method trained every point of its grid (the names it takes) and was then "
        f"evaluated at the point chosen by: {tuning.get('score', 'validation score')}. The test "
        "split was not read for the choice.",
        "",
    ]
    for method, record in methods.items():
        if not record.get("grid"):
            lines += [f"**{method}**: takes none of the tuned names; trained at its defaults.", ""]
            continue
        selected = record.get("selected") or {}
        lines += [
            f"**{method}**: chose {format_point(selected)}",
            "",
            "| "
            + " | ".join(record["names"])
            + " | val acc (mean over tune seeds, %) | val loss |",
            "|" + "---|" * (len(record["names"]) + 2),
        ]
        for entry in record["grid"]:
            best = entry["point"] == selected
            cells = [f"{entry['point'][n]:g}" for n in record["names"]]
            cells += [_pct(_to_float(entry["val_acc"])), _fmt_loss(entry.get("val_loss"))]
            if best:
                cells = [f"**{c}**" for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _fmt_loss(value: Any) -> str:
    v = _to_float(value)
    return f"{v:.4f}" if math.isfinite(v) else "—"


def load_tuning(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/tune.json`` (written by ``--tune``), ``{}`` when absent."""
    path = Path(run_dir) / "tune.json"
    return read_json_file(path) if path.exists() else {}


def _json_safe(obj: Any) -> Any:
    """Non-finite floats become ``None`` (standard JSON), numpy scalars plain Python."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, *, tight: bool = False) -> Path:
    """Save a figure as PNG atomically and close it (``tight``: cropped to its contents)."""
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, **({"bbox_inches": "tight"} if tight else {}))
    finally:
        plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def _all_metrics(run_dir: Path, order: Sequence[str]) -> dict[str, list[dict[str, np.ndarray]]]:
    """``{method: [metrics of each seed]}`` for every seed folder with a non-empty metrics.csv."""
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    for method, _seed, folder in _seed_dirs(run_dir):
        columns = load_metrics(folder / "metrics.csv")
        if columns and "epoch" in columns:
            out.setdefault(method, []).append(columns)
    rank = {m: i for i, m in enumerate(order)}
    return dict(sorted(out.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _mean_over_seeds(
    runs: Sequence[dict[str, np.ndarray]], column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Epochs, mean and std of ``column`` over the seeds that have it, aligned by epoch."""
    table: dict[float, list[float]] = {}
    for cols in runs:
        if column not in cols:
            continue
        for e, v in zip(cols["epoch"], cols[column], strict=True):
            if math.isfinite(e) and math.isfinite(v):
                table.setdefault(float(e), []).append(float(v))
    if not table:
        return None
    epochs = np.array(sorted(table))
    mean = np.array([np.mean(table[e]) for e in epochs])
    std = np.array([np.std(table[e]) for e in epochs])
    return epochs, mean, std


def plot_learning_curves(
    metrics: dict[str, list[dict[str, np.ndarray]]], path: str | Path
) -> Path | None:
    """Validation accuracy, test accuracy and training loss per epoch, mean (± std band) over
    seeds per method; below each, the same zoomed on the last third of training (y range from
    the curves there, where the methods differ by tenths of a point). ``None`` (nothing
    written) when there is no data."""
    panels = [
        ("val_acc", "validation accuracy (%)", 100.0),
        ("test_acc", "test accuracy (%)", 100.0),
        ("train_loss", "training loss", 1.0),
    ]
    curves = {
        (m, c): _mean_over_seeds(runs, c) for m, runs in metrics.items() for c, _, _ in panels
    }
    if not any(v is not None for v in curves.values()):
        return None
    last = max(float(c[0].max()) for c in curves.values() if c is not None)
    first = min(float(c[0].min()) for c in curves.values() if c is not None)
    epochs_seen = sorted({float(e) for c in curves.values() if c is not None for e in c[0]})
    zoom_from = last - (last - first) / 3.0  # the last third of the epochs, at least two
    if len(epochs_seen) >= 2:  # start on an epoch: no line enters from outside the range
        zoom_from = max(e for e in epochs_seen[:-1] if e <= zoom_from)
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(2, len(panels), figsize=(5.0 * len(panels), 7.6), squeeze=False)
    log_loss = _all_positive(curves, "train_loss")
    for col, (column, label, scale) in enumerate(panels):
        full, zoom = axes[0][col], axes[1][col]
        low, high = math.inf, -math.inf
        for method, runs in metrics.items():
            curve = curves[(method, column)]
            if curve is None:
                continue
            epochs, mean, std = curve
            for ax in (full, zoom):
                (line,) = ax.plot(
                    epochs,
                    scale * mean,
                    label=f"{method} (n={len(runs)})",
                    lw=1.3,
                    marker="." if len(epochs) <= 3 else None,
                )
                ax.fill_between(
                    epochs,
                    scale * (mean - std),
                    scale * (mean + std),
                    color=line.get_color(),
                    alpha=0.15,
                    lw=0,
                )
            inside = epochs >= zoom_from - 1e-9
            if inside.any():
                low = min(low, float(np.min(scale * (mean - std)[inside])))
                high = max(high, float(np.max(scale * (mean + std)[inside])))
        full.set_ylabel(label)
        zoom.set_ylabel(f"{label}, last third")
        zoom.set_xlabel("epoch")
        if log_loss and column == "train_loss":  # the zoom is narrow: linear there
            full.set_yscale("log")
            full.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            full.yaxis.set_minor_formatter(FuncFormatter(_log_minor_label))
            full.tick_params(axis="y", which="minor", labelsize=7)
        if math.isfinite(low) and math.isfinite(high):
            pad = 0.05 * (high - low) if high > low else max(abs(high) * 0.01, 0.01)
            zoom.set_ylim(low - pad, high + pad)
        span = max(last - zoom_from, 0.5)
        zoom.set_xlim(zoom_from - 0.03 * span, last + 0.03 * span)
        full.axvspan(zoom_from, last, color="grey", alpha=0.08, lw=0)
        for ax in (full, zoom):
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(
        "mean over seeds (band: ± std); bottom row: the last third of training (shaded above)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


def _log_minor_label(value: float, _position: int) -> str:
    """Minor tick labels of a log axis: only 2x and 5x a power of ten (the others crowd)."""
    if value <= 0:
        return ""
    lead = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return f"{value:g}" if round(lead, 6) in (2.0, 5.0) else ""


def _all_positive(curves: dict[tuple[str, str], Any], column: str) -> bool:
    vals = [c[1] for (_, col), c in curves.items() if col == column and c is not None]
    return bool(vals) and all(np.all(v > 0) for v in vals)


def plot_drop_rates(
    metrics: dict[str, list[dict[str, np.ndarray]]], path: str | Path
) -> Path | None:
    """Per regularized layer: realized ``drop_rate`` (solid) and ``mean_drop_prob`` (dashed) per
    epoch, mean over seeds, for each method that logs them. ``None`` when no method does."""
    layers: list[str] = []
    for runs in metrics.values():
        for cols in runs:
            for name in cols:
                for prefix in ("drop_rate/", "mean_drop_prob/"):
                    if name.startswith(prefix) and name[len(prefix) :] not in layers:
                        layers.append(name[len(prefix) :])
    if not layers:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(layers), figsize=(5.0 * len(layers), 4.0), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, layer in zip(axes[0], layers, strict=True):
        for i, (method, runs) in enumerate(metrics.items()):
            color = colors[i % len(colors)]
            for prefix, style in (("drop_rate/", "-"), ("mean_drop_prob/", "--")):
                curve = _mean_over_seeds(runs, prefix + layer)
                if curve is not None:
                    ax.plot(
                        curve[0],
                        curve[1],
                        style,
                        color=color,
                        lw=1.2,
                        label=f"{method}: {prefix.rstrip('/')}",
                    )
        ax.set_title(layer, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("realized drop rate (solid) and mean p_ij (dashed), mean over seeds", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _load_drop_probs(path: Path) -> dict[str, np.ndarray]:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a missing or corrupt optional file: no histogram for it
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for name, value in data.items():
        if isinstance(value, torch.Tensor) and value.numel():
            out[str(name)] = value.detach().double().flatten().numpy()
    return out


def plot_drop_prob_hist(
    run_dir: str | Path, path: str | Path, order: Sequence[str] = ()
) -> Path | None:
    """Histogram of the final ``p_ij`` per layer for the ``ddc*`` methods with
    ``drop_probs.pt`` (seeds pooled, density-normalized). ``None`` when there are none."""
    pooled: dict[str, dict[str, list[np.ndarray]]] = {}  # layer -> method -> arrays
    for method, _seed, folder in _seed_dirs(Path(run_dir)):
        if not method.startswith("ddc") or not (folder / "drop_probs.pt").is_file():
            continue
        for layer, values in _load_drop_probs(folder / "drop_probs.pt").items():
            pooled.setdefault(layer, {}).setdefault(method, []).append(values)
    if not pooled:
        return None
    rank = {m: i for i, m in enumerate(order)}
    plt = _pyplot()
    layers = list(pooled)
    fig, axes = plt.subplots(1, len(layers), figsize=(5.0 * len(layers), 4.0), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        methods = sorted(pooled[layer], key=lambda m: (rank.get(m, len(rank)), m))
        for method in methods:
            values = np.concatenate(pooled[layer][method])
            ax.hist(
                values,
                bins=50,
                range=(0.0, 1.0),
                density=True,
                histtype="step",
                lw=1.3,
                label=f"{method} ({len(pooled[layer][method])} seeds, mean {values.mean():.3f})",
            )
        ax.set_title(layer, fontsize=10)
        ax.set_xlabel("p_ij at the end of training")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_learned_curves(run_dir: Path, path: Path) -> Path | None:
    """``ddc-learned``: p against the gradient z-score that each layer's rate model learned,
    at a few epochs of the first seed (``learned_curves.json``); None without such runs."""
    files = sorted((run_dir / "runs" / "ddc-learned").glob("seed*/learned_curves.json"))
    if not files:
        return None
    history = json.loads(files[0].read_text(encoding="utf-8"))
    epochs = sorted(history, key=int)
    if not epochs:
        return None
    shown = sorted({epochs[0], epochs[len(epochs) // 4], epochs[len(epochs) // 2], epochs[-1]},
                   key=int)  # fmt: skip
    layers = list(history[epochs[-1]])
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 3.2), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        for epoch in shown:
            curve = history[epoch][layer]
            ax.plot(curve["z"], curve["p"], label=f"epoch {epoch}")
        ax.set(title=f"{layer} ({files[0].parent.name})", xlabel="z-score of |g|",
               ylabel="learned p", ylim=(0, 1))  # fmt: skip
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_forest(
    rows: Sequence[dict[str, Any]], path: str | Path, title: str, xlabel: str
) -> Path | None:
    """Forest plot: per row (``{"label", "mean", "ci95_t", "ci95_bootstrap", "n"}``, fractions)
    the mean paired difference (dot) and its 95 % t interval (bar); the bootstrap interval,
    where there is one, as a thinner bar below it. A dashed line marks 0. ``None`` (nothing
    written) when no row has a finite mean."""
    shown = [r for r in rows if math.isfinite(_to_float(r.get("mean")))]
    if not shown:
        return None
    plt = _pyplot()
    height = 2.2 + 0.45 * len(shown)
    fig, ax = plt.subplots(figsize=(7.5, height))
    ys = np.arange(len(shown))[::-1]
    for y, row in zip(ys, shown, strict=True):
        mean = 100.0 * _to_float(row["mean"])
        ci = row.get("ci95_t")
        if ci is not None and all(math.isfinite(_to_float(v)) for v in ci):
            ax.plot(
                [100.0 * ci[0], 100.0 * ci[1]], [y, y], color="C0", lw=2.2, solid_capstyle="butt"
            )
        boot = row.get("ci95_bootstrap")
        if boot is not None and all(math.isfinite(_to_float(v)) for v in boot):
            ax.plot([100.0 * boot[0], 100.0 * boot[1]], [y - 0.18] * 2, color="C1", lw=1.2)
        ax.plot([mean], [y], "o", color="C0", ms=6)
        ax.annotate(
            f"{mean:+.2f} (n={row.get('n', '?')})",
            (mean, y),
            xytext=(0, 7),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
        )
    ax.axvline(0.0, color="black", ls="--", lw=0.8, zorder=0)
    ax.set_yticks(ys, [str(r["label"]) for r in shown])
    ax.set_ylim(-0.8, len(shown) - 0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    handles = [
        plt.Line2D([], [], color="C0", lw=2.2, marker="o", label="mean Δ, 95% t interval"),
        plt.Line2D([], [], color="C1", lw=1.2, label="95% bootstrap interval (n ≥ 5)"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path, tight=True)


def _forest_of(summary: dict[str, Any], path: Path) -> Path | None:
    """The forest plot of a compare table: the reference minus each other method."""
    ref = summary["reference"]
    rows = [
        {
            "label": f"{ref} − {method}",
            "mean": comp["mean_diff"],
            "ci95_t": comp.get("ci95_t"),
            "ci95_bootstrap": comp.get("ci95_bootstrap"),
            "n": comp["n"],
        }
        for method in summary["method_order"]
        if (comp := summary["comparisons"].get(method)) is not None and comp["n"] > 0
    ]
    return plot_forest(
        rows,
        path,
        f"paired differences on test acc @ best val ({ref} − method), by seed",
        "Δ test accuracy (percentage points)",
    )


def plot_sweep_heatmap(
    rows: Sequence[dict[str, Any]], x: str, y: str, value: str, path: str | Path
) -> Path:
    """Heatmap of ``value`` over the grid of ``x`` (columns) and ``y`` (rows), cells annotated.

    Rows with the same ``(x, y)`` are averaged (the caller fixes any other swept parameter) and,
    with two or more (seeds), annotated ``mean ± std``; missing cells stay blank. Values of an
    ``*acc*`` or ``*gain*`` column within ``[-1, 1]`` are shown in percent (points); a ``*gain*``
    column gets a diverging colour map centred on 0.
    Raises ``ValueError`` when no row has numeric ``x``, ``y`` and ``value``.
    """
    cells: dict[tuple[Any, Any], list[float]] = {}
    for row in rows:
        if x in row and y in row and value in row:
            v = _to_float(row[value])
            if math.isfinite(v):
                cells.setdefault((row[x], row[y]), []).append(v)
    if not cells:
        raise ValueError(f"plot_sweep_heatmap: no row has numeric {x!r}, {y!r} and {value!r}")
    xs = sorted({k[0] for k in cells}, key=_sort_key)
    ys = sorted({k[1] for k in cells}, key=_sort_key)
    grid = np.full((len(ys), len(xs)), np.nan)
    spread = np.full((len(ys), len(xs)), np.nan)
    for (xv, yv), vals in cells.items():
        grid[ys.index(yv), xs.index(xv)], spread[ys.index(yv), xs.index(xv)] = _mean_std(vals)
    finite = grid[np.isfinite(grid)]
    gain = "gain" in value.lower()
    percent = ("acc" in value.lower() or gain) and finite.min() >= -1.0 and finite.max() <= 1.0
    shown = grid * 100.0 if percent else grid
    shown_std = spread * 100.0 if percent else spread

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.3 * len(xs) + 2.5, 0.9 * len(ys) + 2.0))
    extra: dict[str, Any] = {"cmap": "viridis"}
    if gain:
        bound = float(np.nanmax(np.abs(shown))) or 1.0
        extra = {"cmap": "RdBu", "vmin": -bound, "vmax": bound}
    image = ax.imshow(np.ma.masked_invalid(shown), origin="lower", aspect="auto", **extra)
    fig.colorbar(image, ax=ax, label=value + ((" (pp)" if gain else " (%)") if percent else ""))
    lo, hi = np.nanmin(shown), np.nanmax(shown)
    for i in range(len(ys)):
        for j in range(len(xs)):
            v = shown[i, j]
            if math.isfinite(v):
                text = f"{v:.2f}" if percent else f"{v:.3g}"
                if math.isfinite(shown_std[i, j]):
                    text += f"\n±{shown_std[i, j]:.2f}" if percent else f"\n±{shown_std[i, j]:.2g}"
                if gain:  # light near 0, dark at both ends of the diverging map
                    bright = abs(v) < 0.5 * max(abs(lo), abs(hi))
                else:
                    bright = hi > lo and (v - lo) / (hi - lo) > 0.6
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if bright else "white",
                )
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{value} over {x} × {y}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


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
    rows: Sequence[dict[str, Any]], title: str, n_seeds: int, protocol: str = ""
) -> str:
    """Markdown table of a sweep: one line per (p, pg, tau) cell, DDC against DropConnect at
    the cell's measured mean drop rate (when the rows have it), paired by seed, with the 95 %
    intervals of the gain, Holm's adjustment over all cells and the pairs 80 % power needs
    (see :func:`paired_comparison`). ``protocol`` (epochs, learning rate, subset) is stated
    above the table; tuned points (``tuned``, ``matched_tuned``) get columns of their own."""
    cells: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["p"], row["pg"], row["tau"]), []).append(row)
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
    lines = [f"# Sweep: {title}", "", intro, "", head, rule]
    for (p, pg, tau), group in sorted(cells.items(), key=lambda kv: tuple(map(_sort_key, kv[0]))):
        ddc_acc = [r["test_acc"] for r in group]
        line = (
            f"| {p} | {pg} | {tau} |"
            + (f" {format_point(group[0].get('tuned'))} |" if tuned else "")
            + f" {np.mean([r['mean_drop_rate'] for r in group]):.3f} | "
            f"{_pct_pm(_stat(ddc_acc))} |"
        )
        if matched:
            dc_acc = [r["matched_dropconnect_test_acc"] for r in group]
            test = tests[(p, pg, tau)]
            line += (
                f" {group[0]['matched_dropconnect_p']} |"
                + (f" {format_point(group[0].get('matched_tuned'))} |" if tuned else "")
                + f" {_pct_pm(_stat(dc_acc))} | "
                f"{100 * test['mean_diff']:+.2f} ± {100 * test['std_diff']:.2f} | "
                f"{test['wins']}/{test['n']} | {_pvalue(test['t_pvalue'])} | "
                f"{_pvalue(test['holm_pvalue'])} | {_pp_interval(test['ci95_t'])} | "
                f"{_pp_interval(test['ci95_bootstrap'])} | {_power_pairs(test)} |"
            )
        lines.append(line)
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


def plot_sweep_forest(rows: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Forest plot of every sweep cell's gain over its matched DropConnect (``None`` without
    matched runs)."""
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
        "DDC − DropConnect at the cell's measured drop rate, paired by seed",
        "gain in test accuracy @ best val (percentage points)",
    )


def _stat(values: Sequence[float]) -> dict[str, float]:
    mean, std = _mean_std(values)
    return {"mean": mean, "std": std}


def _sort_key(v: Any) -> tuple[int, Any]:
    f = _to_float(v)
    return (0, f) if math.isfinite(f) else (1, str(v))


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def write_report(run_dir: str | Path, reference: str | None = None) -> Path:
    """Write ``results.json``, ``results.md`` and ``plots/*.png`` into ``run_dir``.

    ``reference`` defaults to ``"ddc"`` when it has results, else the first method. A plot without
    data is skipped (and not listed). Runs without a complete ``result.json`` are listed as
    incomplete. Returns the path of ``results.md``.
    """
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    results = load_results(run_dir)
    methods = [r["method"] for r in results]
    if reference is None:
        reference = "ddc" if "ddc" in methods or not methods else methods[0]
    summary = summarize(results, reference=reference)
    tuning = load_tuning(run_dir)
    for method, record in (tuning.get("methods") or {}).items():
        if method in summary["methods"]:
            summary["methods"][method]["tuned"] = record.get("selected") or {}
    complete = {(r["method"], int(r["seed"])) for r in results}
    incomplete = [f"{m}/seed{s}" for m, s, _ in _seed_dirs(run_dir) if (m, s) not in complete]

    order = _method_order([m for m, _, _ in _seed_dirs(run_dir)] + list(summary["methods"]), config)
    metrics = _all_metrics(run_dir, order)
    plots_dir = run_dir / "plots"
    plots = {
        "learning_curves": plot_learning_curves(metrics, plots_dir / "learning_curves.png"),
        "drop_rates": plot_drop_rates(metrics, plots_dir / "drop_rates.png"),
        "drop_prob_hist": plot_drop_prob_hist(run_dir, plots_dir / "drop_prob_hist.png", order),
        "learned_curves": plot_learned_curves(run_dir, plots_dir / "learned_curves.png"),
        "forest": _forest_of(summary, plots_dir / "forest.png"),
    }

    title = config.get("experiment", run_dir.name)
    parts = [f"# Results: {title}", ""]
    facts = [f"{k}: {config[k]}" for k in ("epochs", "seeds") if k in config]
    if facts:
        parts += ["; ".join(facts), ""]
    if results:
        parts += [format_table(summary), _method_details(summary)]
    else:
        parts += ["No complete run yet.", ""]
    if tuning:
        parts += [format_tuning(tuning, order)]
    if incomplete:
        parts += [
            "Incomplete or missing results (not in the statistics): " + ", ".join(incomplete),
            "",
        ]
    made = {k: v for k, v in plots.items() if v is not None}
    if made:
        parts += ["## Plots", ""] + [f"- ![{k}](plots/{v.name})" for k, v in made.items()] + [""]

    payload = {
        "experiment": title,
        "summary": summary,
        "incomplete": incomplete,
        "plots": {k: f"plots/{v.name}" for k, v in made.items()},
        **({"tuning": tuning} if tuning else {}),
    }
    atomic_write_json(run_dir / "results.json", _json_safe(payload))
    if (run_dir / "uncertainty.json").exists():  # written by `ddc uncertainty`
        from .uncertainty import render_uncertainty

        render_uncertainty(run_dir)
    if (run_dir / "robustness.json").exists():  # written by `ddc robustness`
        from .robustness import render_robustness

        render_robustness(run_dir)
    return atomic_write_text(run_dir / "results.md", "\n".join(parts))
