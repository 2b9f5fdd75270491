"""The look of every plot: the method palette, figure helpers and the forest plot.

Every plot draws a method in the one colour and marker :func:`method_style` gives it (colour-blind
safe, the same in every plot of every run), names the experiment and the quantity in words, keeps
its legend outside the data and stays at most :data:`MAX_FIG_WIDTH` inches wide. matplotlib is
imported inside the functions that need it (:func:`pyplot`).
"""

from __future__ import annotations

import hashlib
import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .stats import to_float
from .storage import atomic_write

__all__ = [
    "MARKERS",
    "MAX_FIG_WIDTH",
    "METHOD_STYLES",
    "PALETTE",
    "figure_title",
    "legend_below",
    "method_handle",
    "method_style",
    "panel_figure",
    "plot_forest",
    "pyplot",
    "save_figure",
    "titled",
    "wrap_name",
    "wrap_words",
]


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


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, tight: bool = False) -> Path:
    """Save a figure as PNG atomically and close it (``tight``: cropped to its contents)."""
    plt = pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, **({"bbox_inches": "tight"} if tight else {}))
    finally:
        plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def titled(what: str, experiment: str | None) -> str:
    """A figure title that names the experiment (when known) before the quantity."""
    return f"{experiment}: {what}" if experiment else what


def wrap_name(name: str, width: int = 34) -> str:
    """A long (layer) name broken after its dots into lines of at most ``width`` characters,
    so that panel titles fit their panels."""
    pieces = [p + "." for p in name.split(".")[:-1]] + [name.split(".")[-1]]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(lines)


def wrap_words(text: str, width: int) -> str:
    """``text`` wrapped at spaces into lines of at most ``width`` characters."""
    return "\n".join(textwrap.wrap(text, max(width, 10))) or text


def panel_figure(
    n: int, size: tuple[float, float], *, max_cols: int = 3, extra: float = 1.3
) -> tuple[Any, list[Any]]:
    """A figure of ``n`` panels of about ``size`` inches, wrapped into rows of at most
    ``max_cols`` (never wider than :data:`MAX_FIG_WIDTH`: no long strips of unreadable text),
    with ``extra`` inches for titles and the legend; constrained layout. Returns the figure and
    its ``n`` axes (unused grid cells removed)."""
    plt = pyplot()
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
    fig.suptitle("\n".join(wrap_words(line, width) for line in text.split("\n")), fontsize=11)


def method_handle(method: str, label: str, **line: Any) -> Any:
    """A legend entry drawn in the method's colour and marker (:func:`method_style`); ``line``
    adds or overrides Line2D properties (e.g. ``ms=4`` to match smaller plotted markers)."""
    from matplotlib.lines import Line2D

    colour, marker = method_style(method)
    return Line2D([], [], label=label, **({"color": colour, "marker": marker, "ms": 5, "lw": 1.5}
                                          | line))  # fmt: skip


def plot_forest(
    rows: Sequence[dict[str, Any]], path: str | Path, title: str, xlabel: str
) -> Path | None:
    """Forest plot: per row (``{"label", "mean", "ci95_t", "ci95_bootstrap", "n"}``, fractions,
    optionally ``"method"``) the mean paired difference (dot) and its 95 % t interval (bar),
    drawn in the method's colour and marker (:func:`method_style`) where the row names one,
    else black; the bootstrap interval, where there is one, as a thinner grey bar below it. A
    dashed line marks 0. ``None`` (nothing written) when no row has a finite mean."""
    shown = [r for r in rows if math.isfinite(to_float(r.get("mean")))]
    if not shown:
        return None
    plt = pyplot()
    height = min(2.4 + 0.45 * len(shown), _MAX_FIG_HEIGHT)
    fig, ax = plt.subplots(figsize=(8.0, height), layout="constrained")
    ys = np.arange(len(shown))[::-1]
    for y, row in zip(ys, shown, strict=True):
        colour, marker = method_style(row["method"]) if row.get("method") else ("#000000", "o")
        mean = 100.0 * to_float(row["mean"])
        ci = row.get("ci95_t")
        if ci is not None and all(math.isfinite(to_float(v)) for v in ci):
            ax.plot(
                [100.0 * ci[0], 100.0 * ci[1]], [y, y], color=colour, lw=2.2, solid_capstyle="butt"
            )
        boot = row.get("ci95_bootstrap")
        if boot is not None and all(math.isfinite(to_float(v)) for v in boot):
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
    return save_figure(fig, path, tight=True)
