"""Reports of a run directory: multi-seed statistics, a Markdown table, plots.

The run directory is written by the training code::

    RUN_DIR/config.json                         # {"experiment", "methods", "seeds", "epochs", ...}
    RUN_DIR/runs/<method>/seed<k>/metrics.csv   # one row per finished epoch
    RUN_DIR/runs/<method>/seed<k>/result.json   # {"method", "seed", ..., "complete": true}
    RUN_DIR/runs/<method>/seed<k>/drop_probs.pt # optional {layer: 1-D tensor of p_ij}

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

__all__ = [
    "METRICS",
    "format_sweep_table",
    "format_table",
    "load_config",
    "load_metrics",
    "load_results",
    "paired_comparison",
    "plot_drop_prob_hist",
    "plot_drop_rates",
    "plot_learned_curves",
    "plot_learning_curves",
    "plot_sweep_heatmap",
    "summarize",
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
    return {
        "n": n,
        "mean_diff": mean_diff,
        "std_diff": std_diff,
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
    that appears twice for one method keeps its last result.
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
    return {
        "reference": reference,
        "paired_metric": paired_metric,
        "method_order": list(by_method),
        "methods": methods,
        "comparisons": comparisons,
    }


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


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
    header = [
        "method",
        "seeds",
        "edge drop rate",
        "test acc @ best val (mean ± std)",
        "final test acc",
        "max over epochs (optimistic)",
        f"Δ vs {ref} ({ref} − method, pp)",
        "paired p (t)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for method in summary["method_order"]:
        entry = summary["methods"][method]
        comp = summary["comparisons"].get(method)
        if comp is None or comp["n"] == 0:
            delta, p = "—", "—"
        else:
            md = comp["mean_diff"]
            delta = f"{100.0 * md:+.2f} (n={comp['n']})" if math.isfinite(md) else "—"
            p = _pvalue(comp["t_pvalue"])
        lines.append(
            "| "
            + " | ".join(
                [
                    f"**{method}**" if method == ref else method,
                    str(entry["n"]),
                    f"{entry['edge_drop_rate']:.3f}" if "edge_drop_rate" in entry else "—",
                    _pct_pm(entry["test_acc_at_best_val"]),
                    _pct_pm(entry["final_test_acc"]),
                    _pct_pm(entry["max_test_acc"]),
                    delta,
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
        f"(— : fewer than 2 pairs or no variance). *edge drop rate*: the realized fraction "
        f"of dropped weights during training, mean over epochs, layers and seeds (— : the "
        f"method drops activations or nothing)."
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


def _save(fig: Any, path: str | Path) -> Path:
    """Save a figure as PNG atomically and close it."""
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110)
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
    seeds per method. ``None`` (nothing written) when there is no data."""
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
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.0))
    for ax, (column, label, scale) in zip(axes, panels, strict=True):
        for method, runs in metrics.items():
            curve = curves[(method, column)]
            if curve is None:
                continue
            epochs, mean, std = curve
            (line,) = ax.plot(epochs, scale * mean, label=f"{method} (n={len(runs)})", lw=1.3)
            ax.fill_between(
                epochs,
                scale * (mean - std),
                scale * (mean + std),
                color=line.get_color(),
                alpha=0.15,
                lw=0,
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if _all_positive(curves, "train_loss"):
        axes[-1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("mean over seeds (band: ± std)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


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


def format_sweep_table(
    rows: Sequence[dict[str, Any]], title: str, n_seeds: int, protocol: str = ""
) -> str:
    """Markdown table of a sweep: one line per (p, pg, tau) cell, DDC against DropConnect at
    the cell's measured mean drop rate (when the rows have it), paired by seed. ``protocol``
    (epochs, learning rate, subset) is stated above the table."""
    cells: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["p"], row["pg"], row["tau"]), []).append(row)
    matched = any("matched_dropconnect_test_acc" in r for r in rows)
    head = "| p | pg | tau | mean drop rate | DDC test acc @ best val |"
    rule = "|---|---|---|---|---|"
    if matched:
        head += " matched DropConnect p | its test acc | gain (pp) | DDC wins | paired t p |"
        rule += "---|---|---|---|---|"
    intro = f"{n_seeds} seed(s) per cell; accuracies in %." + (
        f" Training: {protocol}." if protocol else ""
    )
    lines = [f"# Sweep: {title}", "", intro, "", head, rule]
    for (p, pg, tau), group in sorted(cells.items(), key=lambda kv: tuple(map(_sort_key, kv[0]))):
        ddc_acc = [r["test_acc"] for r in group]
        line = (
            f"| {p} | {pg} | {tau} | {np.mean([r['mean_drop_rate'] for r in group]):.3f} | "
            f"{_pct_pm(_stat(ddc_acc))} |"
        )
        if matched:
            dc_acc = [r["matched_dropconnect_test_acc"] for r in group]
            test = paired_comparison(ddc_acc, dc_acc)
            line += (
                f" {group[0]['matched_dropconnect_p']} | {_pct_pm(_stat(dc_acc))} | "
                f"{100 * test['mean_diff']:+.2f} ± {100 * test['std_diff']:.2f} | "
                f"{test['wins']}/{test['n']} | {_pvalue(test['t_pvalue'])} |"
            )
        lines.append(line)
    return "\n".join(lines) + "\n"


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
    }
    atomic_write_json(run_dir / "results.json", _json_safe(payload))
    if (run_dir / "uncertainty.json").exists():  # written by `ddc uncertainty`
        from .uncertainty import render_uncertainty

        render_uncertainty(run_dir)
    return atomic_write_text(run_dir / "results.md", "\n".join(parts))
