"""The plots of a compare run: learning curves, drop rates, the final drop probabilities, the
learned rate models and the forest plot of its comparisons (helpers: :mod:`.figures`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .figures import (
    MAX_FIG_WIDTH,
    figure_title,
    legend_below,
    method_handle,
    method_style,
    panel_figure,
    plot_forest,
    pyplot,
    save_figure,
    titled,
    wrap_name,
)
from .rundir import seed_dirs

__all__ = [
    "plot_drop_prob_hist",
    "plot_drop_rates",
    "plot_learned_curves",
    "plot_learning_curves",
    "plot_summary_forest",
]


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
    (:func:`.summaries.flag_uninformative`) are repeated in the legend. ``None`` (nothing
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
    plt = pyplot()
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
        titled("accuracy and training loss per epoch", experiment)
        + "\nmean over seeds (band: ± 1 std); bottom row: the last third of training (shaded "
        "above), zoomed",
    )
    return save_figure(fig, path)


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
        ax.set_title(wrap_name(layer), fontsize=9)
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
        titled("drop rate of each regularized layer per epoch", experiment)
        + "\nmean over seeds; solid: realized fraction of weights dropped, dashed: mean p_ij",
    )
    return save_figure(fig, path)


def _load_drop_probs(path: Path) -> dict[str, np.ndarray]:
    """``{layer: p_ij}`` of a ``drop_probs.pt``; ``{}`` when it is missing or unreadable."""
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
    for method, _seed, folder in seed_dirs(Path(run_dir)):
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
        ax.set_title(wrap_name(layer), fontsize=9)
        ax.set_xlabel("p_ij at the end of training", fontsize=9)
        ax.set_ylabel("density", fontsize=9)
        ax.tick_params(labelsize=8)
    order_seen = sorted(seeds, key=lambda m: (rank.get(m, len(rank)), m))
    legend_below(fig, [method_handle(m, f"{m} ({seeds[m]} seeds)") for m in order_seen])
    figure_title(
        fig,
        titled("per-weight drop probability p_ij at the end of training", experiment)
        + "\nseeds pooled; dotted line: each method's mean",
    )
    return save_figure(fig, path)


def plot_learned_curves(run_dir: Path, path: Path, *, experiment: str | None = None) -> Path | None:
    """The learned rate models (``learned_curves.json`` of every ``ddc-learned*`` seed): p
    against the gradient z-score, per method and layer (one panel each), at the first, a
    quarter, half and last epoch, mean over all seeds with a ± 1 std band. ``None`` without
    such runs."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for method, _seed, folder in seed_dirs(Path(run_dir)):
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
    plt = pyplot()
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
        ax.set_title(wrap_name(f"{method} ({len(histories)} seeds): {layer}"), fontsize=9)
        ax.set(xlabel="z-score of |gradient|", ylabel="drop probability p", ylim=(0, 1))
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color=c, lw=1.4, label=f"epoch {e}")
        for e, c in sorted(all_shown.items(), key=lambda kv: int(kv[0]))
    ]
    legend_below(fig, handles)
    figure_title(
        fig,
        titled("drop probability the learned rate model gives a weight", experiment)
        + "\nagainst the z-score of its |gradient|; mean over seeds (band: ± 1 std)",
    )
    return save_figure(fig, path)


def plot_summary_forest(
    summary: dict[str, Any], path: Path, experiment: str | None = None
) -> Path | None:
    """The forest plot of a compare table: the reference minus each other method (a method
    flagged by :func:`.summaries.flag_uninformative` carries its mark in the label)."""
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
        titled(
            f"difference in test accuracy at the best-validation epoch, {ref} − each method, "
            "paired by seed",
            experiment,
        ),
        "Δ test accuracy (percentage points; > 0: " + ref + " better)",
    )
