"""The paper's Figure 1: gradient-descent paths of a 2-D linear regression under edge dropping.

This module draws the figure (``plot_figure1``) and writes ``figure1.png`` and
``synthetic.json`` (``run_synthetic``, ``main``: ``ddc synthetic``). The simulation it plots (the
data, the four update rules, the loss statistics) is ``synthetic_simulation``; its names are
re-exported here, the path ``ddc synthetic`` and the tests import them from.
"""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import renamed_attribute
from .storage import atomic_write, atomic_write_json
from .synthetic_simulation import (
    DATA_SEED,
    DROPCONNECT_RATE,
    EPOCHS,
    FEATURE_SCALES,
    INITS,
    LR,
    MARKER_EPOCHS,
    N_MASK_SEEDS,
    N_POINTS,
    NOISE,
    UPDATE_RULES,
    W_TRUE,
    SyntheticData,
    final_losses,
    init_key,
    loss_curve,
    make_data,
    mse,
    simulate,
)

__all__ = [
    "DATA_SEED",
    "FEATURE_SCALES",
    "INITS",
    "MARKER_EPOCHS",
    "NOISE",
    "N_POINTS",
    "UPDATE_RULES",
    "W_TRUE",
    "SyntheticData",
    "final_losses",
    "loss_curve",
    "main",
    "make_data",
    "mse",
    "plot_figure1",
    "run_synthetic",
    "simulate",
]

#: Deprecated names, still read through the module ``__getattr__``.
_RENAMED = {"METHODS": "UPDATE_RULES"}


def __getattr__(name: str) -> Any:
    return renamed_attribute(__name__, name, _RENAMED, globals())


#: The legend label and the colour of each update rule in the figure.
LABELS: dict[str, str] = {
    "none": "no dropping",
    "ddc": "DDC: drop small gradient",
    "ddc-big-gradient": "drop big gradient",
    "dropconnect": "DropConnect (fixed rate)",
}
COLORS: dict[str, str] = {
    "none": "black",
    "ddc": "tab:blue",
    "ddc-big-gradient": "tab:red",
    "dropconnect": "tab:green",
}


def plot_figure1(
    path: str | Path,
    *,
    epochs: int = EPOCHS,
    seed: int = 0,
    lr: float = LR,
    inits: Sequence[Sequence[float]] = INITS,
    curves: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> Path:
    """Write Figure 1 as a PNG (atomically) and return its path.

    One panel per initial point: MSE contours over the ``(w1, w2)`` plane and the path of each
    method for mask seed ``seed``, with markers at epochs :data:`MARKER_EPOCHS`. A last panel shows
    the mean loss per epoch over mask seeds (``curves`` from :func:`final_losses`, computed here
    over :data:`N_MASK_SEEDS` seeds if not given).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = make_data()
    paths = {
        (m, init_key(i)): simulate(m, i, epochs, lr, seed, data=data)
        for m in UPDATE_RULES
        for i in inits
    }
    if curves is None:
        curves = final_losses(
            inits, seeds=tuple(range(seed, seed + N_MASK_SEEDS)), epochs=epochs, lr=lr, data=data
        )
    optimum = data.optimum().numpy()

    fig, axes = plt.subplots(1, len(inits) + 1, figsize=(5.2 * (len(inits) + 1), 4.6))
    for ax, init in zip(axes[:-1], inits, strict=True):
        key = init_key(init)
        pts = np.concatenate([paths[(m, key)] for m in UPDATE_RULES] + [optimum[None]])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pad = 0.15 * np.maximum(hi - lo, 1.0)
        g1 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200)
        g2 = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200)
        grid = np.stack(np.meshgrid(g1, g2), axis=-1)
        loss = mse(data, grid)
        levels = np.quantile(loss, np.linspace(0.0, 0.95, 14) ** 2)
        ax.contour(g1, g2, loss, levels=np.unique(levels), colors="0.65", linewidths=0.7)
        ax.plot(*optimum, marker="*", color="gold", markeredgecolor="k", markersize=14, zorder=5)
        for m in UPDATE_RULES:
            xy = paths[(m, key)]
            ax.plot(xy[:, 0], xy[:, 1], "-", color=COLORS[m], lw=1.4, label=LABELS[m], alpha=0.9)
            ax.plot(*xy[0], "o", color="k", markersize=5)
            marks = [e for e in MARKER_EPOCHS if e <= epochs]
            ax.plot(
                xy[marks, 0],
                xy[marks, 1],
                "s",
                color=COLORS[m],
                markersize=5,
                markeredgecolor="k",
                markeredgewidth=0.5,
            )
        ax.set_title(
            f"init ({key}); mask seed {seed}; markers at epochs "
            f"{', '.join(map(str, MARKER_EPOCHS))}",
            fontsize=9,
        )
        ax.set_xlabel(f"w1 (feature scale {FEATURE_SCALES[0]:g})")
        ax.set_ylabel(f"w2 (feature scale {FEATURE_SCALES[1]:g})")
    axes[0].legend(fontsize=8, loc="best")
    ax = axes[-1]
    best = float(mse(data, optimum))
    for m in UPDATE_RULES:
        for i, init in enumerate(inits):
            c = np.asarray(curves[m][init_key(init)]["curve_mean"])
            ax.plot(
                np.arange(len(c)),
                c - best,
                color=COLORS[m],
                ls=["-", "--", ":"][i % 3],
                label=f"{LABELS[m]}, init ({init_key(init)})",
            )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE - min MSE (mean over mask seeds)")
    ax.set_title(f"loss excess, mean over {N_MASK_SEEDS} mask seeds", fontsize=9)
    ax.legend(fontsize=6)
    fig.suptitle(f"2-D linear regression, full-batch GD, lr {lr}, {epochs} epochs", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def run_synthetic(out_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Write ``figure1.png`` and ``synthetic.json`` into ``out_dir``; return the JSON content.

    The JSON holds the task constants, the loss statistics of :func:`final_losses` over
    :data:`N_MASK_SEEDS` mask seeds ``seed, seed + 1, ...`` and a ``checks`` section that states,
    per initial point, the rankings of the methods (mean and median final loss over mask seeds, mean
    loss over epochs) and whether DDC ("drop small gradient") reached a lower mean final loss than
    "drop big gradient", DropConnect and no dropping, whichever way it comes out.
    """
    out_dir = Path(out_dir)
    data = make_data()
    seeds = tuple(range(seed, seed + N_MASK_SEEDS))
    stats = final_losses(INITS, seeds=seeds, data=data)
    checks: dict[str, dict[str, Any]] = {}
    for init in INITS:
        key = init_key(init)
        final = {m: stats[m][key]["final_mean"] for m in UPDATE_RULES}
        auc = {m: stats[m][key]["auc_mean"] for m in UPDATE_RULES}
        median = {m: stats[m][key]["final_median"] for m in UPDATE_RULES}
        checks[key] = {
            "ranking_by_final_loss": sorted(UPDATE_RULES, key=final.__getitem__),
            "ranking_by_median_final_loss": sorted(UPDATE_RULES, key=median.__getitem__),
            "ranking_by_mean_loss_over_epochs": sorted(UPDATE_RULES, key=auc.__getitem__),
            "ddc_final_below_big_gradient": final["ddc"] < final["ddc-big-gradient"],
            "ddc_final_below_dropconnect": final["ddc"] < final["dropconnect"],
            "ddc_final_below_none": final["ddc"] < final["none"],
        }
    result: dict[str, Any] = {
        "task": {
            "model": "y = w1*x1 + w2*x2",
            "w_true": list(W_TRUE),
            "feature_scales": list(FEATURE_SCALES),
            "noise": NOISE,
            "n": N_POINTS,
            "data_seed": DATA_SEED,
            "optimum": [float(v) for v in data.optimum()],
            "min_loss": float(mse(data, data.optimum())),
        },
        "protocol": {
            "epochs": EPOCHS,
            "lr": LR,
            "inits": [list(i) for i in INITS],
            "ddc": {"p": 0.3, "pg": 0.5, "tau": 0.5, "rescale": "empirical", "update": "dense"},
            "dropconnect_rate": DROPCONNECT_RATE,
            "mask_seeds": list(seeds),
            "loss": "MSE of the raw weights (eval mode: no mask)",
        },
        "losses": stats,
        "checks": checks,
    }
    plot_figure1(out_dir / "figure1.png", seed=seed, curves=stats)
    atomic_write_json(out_dir / "synthetic.json", _finite(result))
    return result


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` so the JSON stays standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dynamic_dropconnect.experiments.synthetic --out DIR [--seed S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/synthetic"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = run_synthetic(args.out, args.seed)
    for key, check in result["checks"].items():
        print(f"init ({key}): ranking by final loss {check['ranking_by_final_loss']}")
    print(f"wrote {args.out / 'figure1.png'} and {args.out / 'synthetic.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
