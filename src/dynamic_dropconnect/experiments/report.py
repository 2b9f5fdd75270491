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

Before the table, results.md states the resolved configuration (experiment, epochs, learning
rate and schedule, subset, method options) and says which methods are not informative: test
accuracy within :data:`CHANCE_MARGIN` of chance (``1 / number of classes``) or a training loss
that did not fall; those rows are marked, since their differences compare noise.

Every plot draws a method in the one colour and marker :func:`method_style` gives it (colour-blind
safe, the same in every plot of every run), names the experiment and the quantity in words, keeps
its legend outside the data and stays at most :data:`MAX_FIG_WIDTH` inches wide.

matplotlib and scipy are imported inside the functions that need them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import EXPERIMENTS, Experiment
from .datasets import DatasetError, get_info
from .io import (
    RunFileError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    read_json_file,
)
from .stats import BOOTSTRAP_MIN_PAIRS, bootstrap_ci, effect_size, holm, pairs_for_power, t_ci

__all__ = [
    "CHANCE_MARGIN",
    "MARKERS",
    "MAX_FIG_WIDTH",
    "METHOD_STYLES",
    "METRICS",
    "PALETTE",
    "add_holm",
    "chance_level",
    "figure_title",
    "flag_uninformative",
    "format_header",
    "format_point",
    "format_sweep_table",
    "format_table",
    "format_tuning",
    "format_warnings",
    "legend_below",
    "load_config",
    "load_metrics",
    "load_results",
    "load_tuning",
    "method_handle",
    "method_style",
    "paired_comparison",
    "panel_figure",
    "plot_drop_prob_hist",
    "plot_drop_rates",
    "plot_forest",
    "plot_learned_curves",
    "plot_learning_curves",
    "plot_sweep_forest",
    "plot_sweep_heatmap",
    "summarize",
    "sweep_colour_limits",
    "sweep_comparisons",
    "write_report",
]

#: The per-seed numbers summarized for every method (keys of ``result.json``).
METRICS: tuple[str, ...] = ("test_acc_at_best_val", "final_test_acc", "max_test_acc")

_SEED_DIR = re.compile(r"^seed(-?\d+)$")

#: A method whose mean test accuracy (at the best-validation epoch) is below chance plus this
#: many (fraction) points is flagged "at chance": 5 percentage points.
CHANCE_MARGIN = 0.05

#: Colour-blind-safe colours: Okabe & Ito's (without their yellow, too pale for lines on white),
#: Paul Tol's "muted" scheme, Tol's vibrant magenta and a grey. Distinct from one another.
PALETTE: tuple[str, ...] = (
    "#000000",
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
    "#EE3377",
    "#777777",
)
#: Markers, so that methods stay apart where colours are hard to tell (print, colour blindness).
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "p", "h", "d", "H")

#: One fixed ``(colour, marker)`` per method: every plot of every run draws a method alike.
#: The methods of :data:`.methods.METHODS` each have their own colour; others: :func:`method_style`.
METHOD_STYLES: dict[str, tuple[str, str]] = {
    "none": ("#000000", "o"),  # black: the unregularized baseline
    "dropout": ("#56B4E9", "s"),
    "standout": ("#DDCC77", "P"),
    "locked-dropout": ("#332288", "X"),
    "dropconnect": ("#0072B2", "^"),
    "ddc": ("#D55E00", "D"),
    "ddc-reference": ("#E69F00", "v"),
    "ddc-learned": ("#CC79A7", "*"),
    "ddc-big-gradient": ("#117733", "<"),
    "ddc-small-weight": ("#999933", ">"),
    "ddc-big-weight": ("#882255", "p"),
    "ddc-masked-update": ("#44AA99", "h"),
    "ddc-no-threshold": ("#009E73", "H"),
    "ddc-no-zscore": ("#CC6677", "d"),
    "ddc-shuffled": ("#AA4499", "o"),
    "ddc-unbiased": ("#777777", "s"),
    "ddc-learned-shuffled": ("#88CCEE", "^"),
    "ddc-learned-unbiased": ("#EE3377", "D"),
}

#: Widest figure, in inches: at the 110 dpi of the PNGs a wider one is shrunk on screen and
#: its text becomes unreadable. Many panels wrap into a grid instead.
MAX_FIG_WIDTH = 12.0
_MIN_FIG_WIDTH = 7.0
_MAX_FIG_HEIGHT = 16.0


def method_style(method: str) -> tuple[str, str]:
    """``(colour, marker)`` of ``method``: :data:`METHOD_STYLES`, else picked from
    :data:`PALETTE` and :data:`MARKERS` by a sha256 of the name (not Python's salted ``hash``),
    so an unknown method too looks the same in every plot and every run."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    index = int.from_bytes(hashlib.sha256(method.encode("utf-8")).digest()[:8], "big")
    return PALETTE[index % len(PALETTE)], MARKERS[(index // len(PALETTE)) % len(MARKERS)]


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


def _dataset_of(record: dict[str, Any]) -> str | None:
    """The data set a config.json or result.json names: its ``settings.dataset``, else that of
    its (known) ``experiment``."""
    settings = record.get("settings")
    if isinstance(settings, dict) and isinstance(settings.get("dataset"), str):
        return settings["dataset"]
    known = EXPERIMENTS.get(str(record.get("experiment")))
    return known.dataset if known is not None else None


def chance_level(
    config: dict[str, Any], results: Sequence[dict[str, Any]] = ()
) -> tuple[float, int] | None:
    """``(1 / K, K)``: the accuracy of guessing among the ``K`` classes of a classification run.

    ``K`` is the ``num_classes`` that config.json or a result.json records, else that of the data
    set they name (:func:`.datasets.get_info`). ``None`` when unknown or not a classification
    task (a regression data set has no classes)."""
    records = [config, *results]
    for record in records:
        k = record.get("num_classes")
        if isinstance(k, int) and not isinstance(k, bool) and k >= 2:
            return 1.0 / k, k
    for record in records:
        dataset = _dataset_of(record)
        if dataset is None:
            continue
        try:
            k = get_info(dataset).num_classes
        except DatasetError:
            return None
        return (1.0 / k, k) if k >= 2 else None
    return None


def flag_uninformative(
    summary: dict[str, Any],
    train_losses: dict[str, dict[int, np.ndarray]] | None = None,
    chance: float | None = None,
) -> dict[str, list[str]]:
    """The methods whose numbers say nothing about the method, ``{method: [reason, ...]}``.

    - ``"at chance"``: mean test accuracy at the best-validation epoch below
      ``chance + CHANCE_MARGIN`` (only when ``chance``, a fraction, is known);
    - ``"loss did not fall (seed k, ...)"``: a seed of ``train_losses`` (``{method: {seed:
      training loss per epoch}}``) with two or more epochs whose last training loss is not below
      its first; ``"loss not finite (seed k)"`` when the last one is NaN or infinite (diverged).

    Methods without a reason are left out."""
    flags: dict[str, list[str]] = {}
    for method in summary["method_order"]:
        reasons = []
        mean = summary["methods"][method]["test_acc_at_best_val"]["mean"]
        if chance is not None and math.isfinite(mean) and mean < chance + CHANCE_MARGIN:
            reasons.append("at chance")
        flat, diverged = [], []
        for seed, losses in sorted((train_losses or {}).get(method, {}).items()):
            losses = np.asarray(losses, dtype=np.float64)
            if losses.size < 2:
                continue
            if not math.isfinite(losses[-1]):
                diverged.append(seed)
            elif math.isfinite(losses[0]) and losses[-1] >= losses[0]:
                flat.append(seed)
        for seeds, what in ((flat, "loss did not fall"), (diverged, "loss not finite")):
            if seeds:
                label = "seed" if len(seeds) == 1 else "seeds"
                reasons.append(f"{what} ({label} {', '.join(map(str, seeds))})")
        if reasons:
            flags[method] = reasons
    return flags


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
    A method in ``summary["flags"]`` (:func:`flag_uninformative`) is marked ``⚠ <reason>``.
    """
    ref = summary["reference"]
    flags: dict[str, list[str]] = summary.get("flags") or {}
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
                    (f"**{method}**" if method == ref else method)
                    + "".join(f" ⚠ {reason}" for reason in flags.get(method, [])),
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


def format_warnings(summary: dict[str, Any]) -> str:
    """The paragraph results.md puts above the table when ``summary["flags"]`` names methods
    (:func:`flag_uninformative`): which, why, and the rules; empty when none is flagged."""
    flags: dict[str, list[str]] = summary.get("flags") or {}
    if not flags:
        return ""
    chance = summary.get("chance")
    items = []
    for method in summary["method_order"]:
        if method not in flags:
            continue
        reasons = list(flags[method])
        mean = summary["methods"][method]["test_acc_at_best_val"]["mean"]
        reasons = [
            f"at chance (test acc @ best val {_pct(mean)} %)" if r == "at chance" else r
            for r in reasons
        ]
        items.append(f"**{method}**: {'; '.join(reasons)}")
    rules = []
    if chance is not None:
        rules.append(
            f"*at chance* when its mean test accuracy at the best-validation epoch is below "
            f"chance + {100 * CHANCE_MARGIN:g} points (chance: {_pct(chance)} % = 1 / "
            f"{round(1 / chance)} classes)"
        )
    rules.append(
        "*loss did not fall* when a seed's training loss at the last epoch is not below that of "
        "the first epoch (*not finite*: it diverged)"
    )
    text = (
        "**⚠ Not informative:** "
        + ", ".join(items)
        + ". A method is flagged "
        + "; ".join(rules)
        + ". Such runs did not learn: every Δ, interval and p-value below that involves them "
        "compares noise, not methods. Train longer, on more data or at another learning rate "
        "before reading them."
    )
    if summary["reference"] in flags:
        text += (
            f" The reference **{summary['reference']}** is one of them: no Δ or p in this table "
            "says anything."
        )
    return text + "\n"


def format_header(config: dict[str, Any], chance: tuple[float, int] | None = None) -> str:
    """The resolved configuration of a run as the Markdown list at the top of results.md:
    experiment, epochs and seeds, learning rate and schedule, data (subset), method options,
    swept or tuned hyperparameters and the chance level. Keys config.json lacks are left out."""
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    lines = []
    name = config.get("experiment")
    if name is not None:
        about = [f"{k} {settings[k]}" for k in ("dataset", "model") if k in settings]
        source = f"; {settings['source']}" if settings.get("source") else ""
        lines.append(
            f"- **experiment**: {name}" + (f" ({', '.join(about)}{source})" if about else "")
        )
        overrides = config.get("overrides") or {}
        if overrides:  # --config / --set (see .overrides), each with where it came from
            sources = config.get("override_sources") or {}
            lines.append(
                "- **overridden**: "
                + ", ".join(
                    f"{k}={v!r}" + (f" ({sources[k]})" if k in sources else "")
                    for k, v in overrides.items()
                )
            )
    run = []
    if "epochs" in config:
        run.append(f"**epochs**: {config['epochs']}")
    if isinstance(config.get("seeds"), list):
        run.append(f"**seeds**: {', '.join(map(str, config['seeds']))}")
    if run:
        lines.append("- " + "; ".join(run))
    if "lr" in settings:
        lines.append(f"- **learning rate and schedule**: {_describe_training(settings)}")
        if config.get("tune") or config.get("tuned"):
            lines[-1] += (
                "; tuned names (lr, weight decay, rates) chosen per method on validation: see "
                "*tuned* in the table and Tuning"
            )
    if "subset" in config or "val_fraction" in settings:
        subset = config.get("subset")
        data = (
            f"at most {subset} examples per split (`--subset {subset}`)"
            if subset
            else "the full data set"
        )
        if "val_fraction" in settings:
            share = 100 * settings["val_fraction"]
            data += f"; {share:g} % of the training split held out for validation"
        lines.append(f"- **data**: {data}")
    if "method_options" in settings:
        options = settings["method_options"] or {}
        shown = "; ".join(f"{m}: {format_point(o)}" for m, o in options.items() if o)
        lines.append(
            "- **method options**: "
            + (
                f"{shown} (others: their defaults, `ddc list`)"
                if shown
                else "every method at its defaults (`ddc list`)"
            )
        )
    grid = config.get("hyperparameters")
    if isinstance(grid, dict) and grid:
        lines.append(
            "- **grid**: "
            + "; ".join(
                f"{k} {', '.join(map(str, v))}" if isinstance(v, list) else f"{k} {v}"
                for k, v in grid.items()
            )
        )
    if chance is not None:
        lines.append(f"- **chance**: {_pct(chance[0])} % (1 / {chance[1]} classes)")
    elif lines:
        lines.append("- **chance**: unknown (no class count recorded): only the loss check applies")
    if config.get("device"):
        lines.append(
            f"- **device**: {config['device']}" + ("; compiled" if config.get("compile") else "")
        )
    return "\n".join(lines) + "\n" if lines else ""


def _describe_training(settings: dict[str, Any]) -> str:
    """Peak learning rate, schedule (its rate at the first, peak and last epoch where the
    settings still make an :class:`.config.Experiment`), optimizer, weight decay, batch size."""
    try:
        schedule = Experiment(**settings).describe_schedule()
    except (TypeError, ValueError):  # settings of another version of the code
        schedule = f"{settings.get('schedule', '?')} schedule"
    optimizer = {"sgd": f"SGD, momentum {settings.get('momentum', '?')}", "adam": "AdamW"}.get(
        str(settings.get("optimizer", "sgd")), str(settings.get("optimizer"))
    )
    return (
        f"peak {settings['lr']:g}, {schedule}; {optimizer}, weight decay "
        f"{settings.get('weight_decay', '?')}, batch size {settings.get('batch_size', '?')}"
    )


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


def _titled(what: str, experiment: str | None) -> str:
    """A figure title that names the experiment (when known) before the quantity."""
    return f"{experiment}: {what}" if experiment else what


def _wrap(name: str, width: int = 34) -> str:
    """A long (layer) name broken after its dots into lines of at most ``width`` characters,
    so that panel titles fit their panels."""
    pieces = [p + "." for p in name.split(".")[:-1]] + [name.split(".")[-1]]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(lines)


def panel_figure(
    n: int, size: tuple[float, float], *, max_cols: int = 3, extra: float = 1.3
) -> tuple[Any, list[Any]]:
    """A figure of ``n`` panels of about ``size`` inches, wrapped into rows of at most
    ``max_cols`` (never wider than :data:`MAX_FIG_WIDTH`: no long strips of unreadable text),
    with ``extra`` inches for titles and the legend; constrained layout. Returns the figure and
    its ``n`` axes (unused grid cells removed)."""
    plt = _pyplot()
    cols = max(1, min(n, max_cols, int(MAX_FIG_WIDTH // size[0])))
    rows = math.ceil(n / cols)
    width = min(max(cols * size[0], _MIN_FIG_WIDTH), MAX_FIG_WIDTH)  # room for title, legend
    height = min(rows * size[1] + extra, _MAX_FIG_HEIGHT)
    fig, grid = plt.subplots(
        rows, cols, figsize=(width, height), squeeze=False, layout="constrained"
    )
    axes = [ax for row in grid for ax in row]
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def legend_below(fig: Any, handles: Sequence[Any]) -> None:
    """One legend for the whole figure, under its panels (never over the data), in as many
    columns as fit the figure's width."""
    if handles:
        longest = max(len(h.get_label()) for h in handles)
        fit = int(fig.get_figwidth() / (0.6 + 0.065 * longest))  # 8 pt text, with its sample
        fig.legend(
            handles=list(handles),
            loc="outside lower center",
            ncols=max(1, min(fit, len(handles))),
            fontsize=8,
            frameon=False,
        )


def figure_title(fig: Any, text: str) -> None:
    """The figure title, each line wrapped to the figure's width."""
    width = int(10 * fig.get_figwidth())  # characters of 11 pt text per line, roughly
    fig.suptitle("\n".join(_wrap_words(line, width) for line in text.split("\n")), fontsize=11)


def method_handle(method: str, label: str, **line: Any) -> Any:
    """A legend entry drawn in the method's colour and marker (:func:`method_style`)."""
    from matplotlib.lines import Line2D

    colour, marker = method_style(method)
    return Line2D([], [], color=colour, marker=marker, ms=5, lw=1.5, label=label, **line)


def _markevery(n_points: int) -> int:
    """Draw a marker every few points: about eight per curve, enough to tell methods apart."""
    return max(1, n_points // 8)


def plot_learning_curves(
    metrics: dict[str, list[dict[str, np.ndarray]]],
    path: str | Path,
    *,
    experiment: str | None = None,
    chance: float | None = None,
    flags: dict[str, list[str]] | None = None,
) -> Path | None:
    """Validation accuracy, test accuracy and training loss per epoch, mean (± std band) over
    seeds per method; below each, the same zoomed on the last third of training (y range from
    the curves there, where the methods differ by tenths of a point). ``chance`` (a fraction)
    is drawn as a dotted line where it falls inside an accuracy panel; ``flags``
    (:func:`flag_uninformative`) are repeated in the legend. ``None`` (nothing written) when
    there is no data."""
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
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig, axes = plt.subplots(
        2, len(panels), figsize=(MAX_FIG_WIDTH, 8.2), squeeze=False, layout="constrained"
    )
    log_loss = _all_positive(curves, "train_loss")
    chance_drawn = False
    for col, (column, label, scale) in enumerate(panels):
        full, zoom = axes[0][col], axes[1][col]
        low, high = math.inf, -math.inf
        for method in metrics:
            curve = curves[(method, column)]
            if curve is None:
                continue
            epochs, mean, std = curve
            colour, marker = method_style(method)
            for ax in (full, zoom):
                ax.plot(
                    epochs,
                    scale * mean,
                    color=colour,
                    marker=marker,
                    ms=4,
                    lw=1.3,
                    markevery=_markevery(len(epochs)),
                )
                ax.fill_between(
                    epochs,
                    scale * (mean - std),
                    scale * (mean + std),
                    color=colour,
                    alpha=0.15,
                    lw=0,
                )
            inside = epochs >= zoom_from - 1e-9
            if inside.any():
                low = min(low, float(np.min(scale * (mean - std)[inside])))
                high = max(high, float(np.max(scale * (mean + std)[inside])))
        full.set_title(label, fontsize=10)
        full.set_ylabel(label)
        zoom.set_ylabel(f"{label}, last third")
        zoom.set_xlabel("epoch")
        if log_loss and column == "train_loss":  # the zoom is narrow: linear there
            full.set_yscale("log")
            full.set_title("training loss (log scale)", fontsize=10)
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
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if chance is not None and scale == 100.0:
                bottom, top = ax.get_ylim()
                if bottom <= 100.0 * chance <= top:  # never stretch the axis to show it
                    ax.axhline(100.0 * chance, color="grey", ls=":", lw=1.0)
                    ax.set_ylim(bottom, top)
                    chance_drawn = True
    handles = [
        method_handle(
            method,
            f"{method} (n={len(runs)})" + "".join(f" ⚠ {r}" for r in (flags or {}).get(method, [])),
        )
        for method, runs in metrics.items()
    ]
    if chance_drawn:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="grey", ls=":", label=f"chance ({100 * chance:.3g} %)"))
    legend_below(fig, handles)
    figure_title(
        fig,
        _titled("accuracy and training loss per epoch", experiment)
        + "\nmean over seeds (band: ± 1 std); bottom row: the last third of training (shaded "
        "above), zoomed",
    )
    return _save(fig, path)


def _log_minor_label(value: float, _position: int) -> str:
    """Minor tick labels of a log axis: only 2x and 5x a power of ten (the others crowd)."""
    if value <= 0:
        return ""
    lead = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return f"{value:g}" if round(lead, 6) in (2.0, 5.0) else ""


def _all_positive(curves: dict[tuple[str, str], Any], column: str) -> bool:
    """Whether ``column`` suits a log axis: all positive, spanning more than a factor of 3
    (within less, a log axis has no labelled tick and shows nothing a linear one does not)."""
    vals = [c[1] for (_, col), c in curves.items() if col == column and c is not None]
    if not vals or not all(np.all(v > 0) for v in vals):
        return False
    return float(max(v.max() for v in vals)) > 3.0 * float(min(v.min() for v in vals))


def plot_drop_rates(
    metrics: dict[str, list[dict[str, np.ndarray]]],
    path: str | Path,
    *,
    experiment: str | None = None,
) -> Path | None:
    """Per regularized layer (one panel each, wrapped into a grid): realized ``drop_rate``
    (solid) and ``mean_drop_prob`` (dashed) per epoch, mean over seeds, for each method that
    logs them. ``None`` when no method does."""
    layers: list[str] = []
    for runs in metrics.values():
        for cols in runs:
            for name in cols:
                for prefix in ("drop_rate/", "mean_drop_prob/"):
                    if name.startswith(prefix) and name[len(prefix) :] not in layers:
                        layers.append(name[len(prefix) :])
    if not layers:
        return None
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = panel_figure(len(layers), (4.0, 2.9), extra=1.6)
    drawn: dict[str, int] = {}
    for ax, layer in zip(axes, layers, strict=True):
        for method, runs in metrics.items():
            colour, marker = method_style(method)
            for prefix, style in (("drop_rate/", "-"), ("mean_drop_prob/", "--")):
                curve = _mean_over_seeds(runs, prefix + layer)
                if curve is not None:
                    drawn[method] = len(runs)
                    ax.plot(
                        curve[0],
                        curve[1],
                        style,
                        color=colour,
                        lw=1.2,
                        ms=4,
                        marker=marker if style == "-" else None,
                        markevery=_markevery(len(curve[0])),
                    )
        ax.set_title(_wrap(layer), fontsize=9)
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel("fraction of weights", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = [method_handle(m, f"{m} (n={n})") for m, n in drawn.items()]
    handles += [
        Line2D([], [], color="black", ls="-", label="realized drop rate (fraction dropped)"),
        Line2D([], [], color="black", ls="--", label="mean drop probability p_ij"),
    ]
    legend_below(fig, handles)
    figure_title(
        fig,
        _titled("drop rate of each regularized layer per epoch", experiment)
        + "\nmean over seeds; solid: realized fraction of weights dropped, dashed: mean p_ij",
    )
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
    run_dir: str | Path,
    path: str | Path,
    order: Sequence[str] = (),
    *,
    experiment: str | None = None,
) -> Path | None:
    """Histogram of the final ``p_ij`` per layer (one panel each, wrapped into a grid) for the
    ``ddc*`` methods with ``drop_probs.pt`` (seeds pooled, density-normalized), each method's
    mean as a dotted line. ``None`` when there are none."""
    pooled: dict[str, dict[str, list[np.ndarray]]] = {}  # layer -> method -> arrays
    for method, _seed, folder in _seed_dirs(Path(run_dir)):
        if not method.startswith("ddc") or not (folder / "drop_probs.pt").is_file():
            continue
        for layer, values in _load_drop_probs(folder / "drop_probs.pt").items():
            pooled.setdefault(layer, {}).setdefault(method, []).append(values)
    if not pooled:
        return None
    rank = {m: i for i, m in enumerate(order)}
    layers = list(pooled)
    fig, axes = panel_figure(len(layers), (4.0, 2.9), extra=1.6)
    seeds: dict[str, int] = {}
    for ax, layer in zip(axes, layers, strict=True):
        methods = sorted(pooled[layer], key=lambda m: (rank.get(m, len(rank)), m))
        for method in methods:
            values = np.concatenate(pooled[layer][method])
            colour, _ = method_style(method)
            seeds[method] = max(seeds.get(method, 0), len(pooled[layer][method]))
            ax.hist(
                values,
                bins=50,
                range=(0.0, 1.0),
                density=True,
                histtype="step",
                lw=1.3,
                color=colour,
            )
            ax.axvline(float(values.mean()), color=colour, ls=":", lw=1.2)
        ax.set_title(_wrap(layer), fontsize=9)
        ax.set_xlabel("p_ij at the end of training", fontsize=9)
        ax.set_ylabel("density", fontsize=9)
        ax.tick_params(labelsize=8)
    order_seen = sorted(seeds, key=lambda m: (rank.get(m, len(rank)), m))
    legend_below(fig, [method_handle(m, f"{m} ({seeds[m]} seeds)") for m in order_seen])
    figure_title(
        fig,
        _titled("per-weight drop probability p_ij at the end of training", experiment)
        + "\nseeds pooled; dotted line: each method's mean",
    )
    return _save(fig, path)


def plot_learned_curves(run_dir: Path, path: Path, *, experiment: str | None = None) -> Path | None:
    """The learned rate models (``learned_curves.json`` of every ``ddc-learned*`` seed): p
    against the gradient z-score, per method and layer (one panel each), at the first, a
    quarter, half and last epoch, mean over all seeds with a ± 1 std band. ``None`` without
    such runs."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for method, _seed, folder in _seed_dirs(Path(run_dir)):
        file = folder / "learned_curves.json"
        if file.is_file():
            try:
                history = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # an optional file being written or garbled
                continue
            if isinstance(history, dict) and history:
                by_method.setdefault(method, []).append(history)
    panels = []  # (method, layer, epochs shown, histories)
    for method, histories in by_method.items():
        common = set.intersection(*(set(h) for h in histories))
        epochs = sorted(common, key=int)
        if not epochs:
            continue
        shown = sorted(
            {epochs[0], epochs[len(epochs) // 4], epochs[len(epochs) // 2], epochs[-1]}, key=int
        )
        for layer in histories[0][epochs[-1]]:
            if all(layer in h[e] for h in histories for e in shown):
                panels.append((method, layer, shown, histories))
    if not panels:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D

    cmap = plt.get_cmap("viridis")
    fig, axes = panel_figure(len(panels), (4.0, 3.0), extra=1.5)
    all_shown: dict[str, Any] = {}
    for ax, (method, layer, shown, histories) in zip(axes, panels, strict=True):
        for i, epoch in enumerate(shown):
            colour = cmap(0.85 * i / max(1, len(shown) - 1))  # dark to green: no pale yellow
            all_shown.setdefault(epoch, colour)
            z = np.asarray(histories[0][epoch][layer]["z"], dtype=np.float64)
            ps = np.stack(
                [np.interp(z, h[epoch][layer]["z"], h[epoch][layer]["p"]) for h in histories]
            )
            mean, std = ps.mean(axis=0), ps.std(axis=0)
            ax.plot(z, mean, color=colour, lw=1.4)
            ax.fill_between(z, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
        ax.set_title(_wrap(f"{method} ({len(histories)} seeds): {layer}"), fontsize=9)
        ax.set(xlabel="z-score of |gradient|", ylabel="drop probability p", ylim=(0, 1))
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color=c, lw=1.4, label=f"epoch {e}")
        for e, c in sorted(all_shown.items(), key=lambda kv: int(kv[0]))
    ]
    legend_below(fig, handles)
    figure_title(
        fig,
        _titled("drop probability the learned rate model gives a weight", experiment)
        + "\nagainst the z-score of its |gradient|; mean over seeds (band: ± 1 std)",
    )
    return _save(fig, path)


def plot_forest(
    rows: Sequence[dict[str, Any]], path: str | Path, title: str, xlabel: str
) -> Path | None:
    """Forest plot: per row (``{"label", "mean", "ci95_t", "ci95_bootstrap", "n"}``, fractions,
    optionally ``"method"``) the mean paired difference (dot) and its 95 % t interval (bar),
    drawn in the method's colour and marker (:func:`method_style`) where the row names one,
    else black; the bootstrap interval, where there is one, as a thinner grey bar below it. A
    dashed line marks 0. ``None`` (nothing written) when no row has a finite mean."""
    shown = [r for r in rows if math.isfinite(_to_float(r.get("mean")))]
    if not shown:
        return None
    plt = _pyplot()
    height = min(2.4 + 0.45 * len(shown), _MAX_FIG_HEIGHT)
    fig, ax = plt.subplots(figsize=(8.0, height), layout="constrained")
    ys = np.arange(len(shown))[::-1]
    for y, row in zip(ys, shown, strict=True):
        colour, marker = method_style(row["method"]) if row.get("method") else ("#000000", "o")
        mean = 100.0 * _to_float(row["mean"])
        ci = row.get("ci95_t")
        if ci is not None and all(math.isfinite(_to_float(v)) for v in ci):
            ax.plot(
                [100.0 * ci[0], 100.0 * ci[1]], [y, y], color=colour, lw=2.2, solid_capstyle="butt"
            )
        boot = row.get("ci95_bootstrap")
        if boot is not None and all(math.isfinite(_to_float(v)) for v in boot):
            ax.plot([100.0 * boot[0], 100.0 * boot[1]], [y - 0.18] * 2, color="#777777", lw=1.2)
        ax.plot([mean], [y], marker=marker, color=colour, ms=7, ls="none")
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
    ax.set_title(title, fontsize=10, wrap=True)
    handles = [
        plt.Line2D([], [], color="black", lw=2.2, marker="o", label="mean Δ, 95% t interval"),
        plt.Line2D([], [], color="#777777", lw=1.2, label="95% bootstrap interval (n ≥ 5)"),
    ]
    legend_below(fig, handles)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path, tight=True)


def _forest_of(summary: dict[str, Any], path: Path, experiment: str | None = None) -> Path | None:
    """The forest plot of a compare table: the reference minus each other method (a method
    flagged by :func:`flag_uninformative` carries its mark in the label)."""
    ref = summary["reference"]
    flags = summary.get("flags") or {}
    rows = [
        {
            "label": f"{ref} − {method}"
            + "".join(f" ⚠ {r}" for r in flags.get(method, []) + flags.get(ref, [])),
            "method": method,
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
        _titled(
            f"difference in test accuracy at the best-validation epoch, {ref} − each method, "
            "paired by seed",
            experiment,
        ),
        "Δ test accuracy (percentage points; > 0: " + ref + " better)",
    )


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
            v = _to_float(row[value])
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

    plt = _pyplot()
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
    ax.set_title(
        _wrap_words(_titled(words, experiment), int(12 * width)) + f"\n{note}", fontsize=10
    )
    return _save(fig, path)


def _wrap_words(text: str, width: int) -> str:
    """``text`` wrapped at spaces into lines of at most ``width`` characters."""
    import textwrap

    return "\n".join(textwrap.wrap(text, max(width, 10))) or text


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
            f"{_pct_pm(_stat(ddc_acc))}{at_chance(ddc_acc)} |"
        )
        if matched:
            test = tests[(p, pg, tau)]
            line += (
                f" {group[0]['matched_dropconnect_p']} |"
                + (f" {format_point(group[0].get('matched_tuned'))} |" if tuned else "")
                + f" {_pct_pm(_stat(dc_acc))}{at_chance(dc_acc)} | "
                f"{100 * test['mean_diff']:+.2f} ± {100 * test['std_diff']:.2f} | "
                f"{test['wins']}/{test['n']} | {_pvalue(test['t_pvalue'])} | "
                f"{_pvalue(test['holm_pvalue'])} | {_pp_interval(test['ci95_t'])} | "
                f"{_pp_interval(test['ci95_bootstrap'])} | {_power_pairs(test)} |"
            )
        body.append(line)
    lines = [f"# Sweep: {title}", "", intro, ""]
    if flagged:
        lines += [
            f"**⚠ Not informative:** in {flagged} of {len(cells)} cells DDC or its matched "
            f"DropConnect has a mean test accuracy within {100 * CHANCE_MARGIN:g} points of "
            f"chance ({_pct(chance)} % = 1 / {round(1 / chance)} classes), marked ⚠ below: "
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
        _titled(
            "gain of DDC over DropConnect at the cell's measured drop rate, paired by seed",
            experiment or _experiment_near(path),
        ),
        "gain in test accuracy at the best-validation epoch (percentage points)",
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
    incomplete. results.md opens with the resolved configuration (:func:`format_header`) and,
    before the table, the methods that are not informative (:func:`format_warnings`; also in
    results.json as ``summary.flags``, with ``summary.chance``). Returns the path of
    ``results.md``.
    """
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    results = load_results(run_dir)
    methods = [r["method"] for r in results]
    if reference is None:
        reference = "ddc" if "ddc" in methods or not methods else methods[0]
    summary = summarize(results, reference=reference)
    chance = chance_level(config, results)
    summary["chance"] = None if chance is None else chance[0]
    summary["flags"] = flag_uninformative(
        summary, _train_losses(run_dir, results), summary["chance"]
    )
    tuning = load_tuning(run_dir)
    for method, record in (tuning.get("methods") or {}).items():
        if method in summary["methods"]:
            summary["methods"][method]["tuned"] = record.get("selected") or {}
    complete = {(r["method"], int(r["seed"])) for r in results}
    incomplete = [f"{m}/seed{s}" for m, s, _ in _seed_dirs(run_dir) if (m, s) not in complete]

    title = config.get("experiment", run_dir.name)
    order = _method_order([m for m, _, _ in _seed_dirs(run_dir)] + list(summary["methods"]), config)
    metrics = _all_metrics(run_dir, order)
    plots_dir = run_dir / "plots"
    plots = {
        "learning_curves": plot_learning_curves(
            metrics,
            plots_dir / "learning_curves.png",
            experiment=title,
            chance=summary["chance"],
            flags=summary["flags"],
        ),
        "drop_rates": plot_drop_rates(metrics, plots_dir / "drop_rates.png", experiment=title),
        "drop_prob_hist": plot_drop_prob_hist(
            run_dir, plots_dir / "drop_prob_hist.png", order, experiment=title
        ),
        "learned_curves": plot_learned_curves(
            run_dir, plots_dir / "learned_curves.png", experiment=title
        ),
        "forest": _forest_of(summary, plots_dir / "forest.png", title),
    }

    parts = [f"# Results: {title}", ""]
    header = format_header(config, chance)
    if header:
        parts += [header]
    if results:
        warning = format_warnings(summary)
        parts += ([warning] if warning else []) + [format_table(summary), _method_details(summary)]
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


def _train_losses(
    run_dir: Path, results: Sequence[dict[str, Any]]
) -> dict[str, dict[int, np.ndarray]]:
    """``{method: {seed: training loss per epoch}}`` of the complete runs (metrics.csv)."""
    complete = {(str(r["method"]), int(r["seed"])) for r in results}
    out: dict[str, dict[int, np.ndarray]] = {}
    for method, seed, folder in _seed_dirs(run_dir):
        if (method, seed) in complete:
            columns = load_metrics(folder / "metrics.csv")
            if "train_loss" in columns:
                out.setdefault(method, {})[seed] = columns["train_loss"]
    return out
