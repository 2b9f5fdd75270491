"""``uncertainty.md`` and ``plots/uncertainty_*.png`` of a run directory, from its
``uncertainty.json`` (written by :func:`.uncertainty.evaluate_run`; ``ddc report`` re-renders
them): calibration and out-of-distribution tables, paired tests by seed, reliability diagrams,
metrics against the number of passes and entropy histograms."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .figures import (
    figure_title,
    legend_below,
    method_handle,
    method_style,
    panel_figure,
    save_figure,
)
from .rundir import load_config, mean_drop_rate
from .stats import mean_std, paired_comparison
from .storage import atomic_write_text, read_json_object
from .uncertainty_metrics import N_BINS, OOD_PAIRS, T_VALUES

__all__ = [
    "render_uncertainty",
]


_METRICS = ("accuracy", "nll", "brier", "ece")


def _fmt(values: Sequence[float], scale: float = 1.0, digits: int = 4) -> str:
    """``mean ± std`` of scaled values; — for none."""
    mean, std = mean_std([v * scale for v in values])
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def _variants(run: dict[str, Any], t_max: int) -> dict[str, dict[str, float]]:
    """The metrics of each predictor of a run: deterministic, and MC at ``t_max`` passes."""
    out = {"deterministic": run["deterministic"]}
    if "mc" in run:
        out[f"MC T={t_max}"] = run["mc"][str(t_max)]
    return out


def render_uncertainty(run_dir: str | Path) -> Path:
    """(Re)write ``uncertainty.md`` and ``plots/uncertainty_*.png`` from ``uncertainty.json``."""
    run_dir = Path(run_dir)
    data = read_json_object(run_dir / "uncertainty.json")
    runs: list[dict[str, Any]] = data.get("runs", [])
    settings = data.get("settings", {})
    t_values: list[int] = settings.get("t_values", list(T_VALUES))
    t_max = max(t_values)
    methods = list(dict.fromkeys(r["method"] for r in runs))
    by_method = {m: sorted((r for r in runs if r["method"] == m), key=lambda r: r["seed"])
                 for m in methods}  # fmt: skip
    total = load_config(run_dir).get("epochs")
    unfinished = {
        (r["method"], r["seed"]): f"{r.get('epochs_trained')} of {r.get('epochs_total', total)}"
        for r in runs
        if r.get("epochs_trained") != r.get("epochs_total", total)
    }
    lines = [
        f"# Uncertainty: {data.get('experiment', run_dir.name)}",
        "",
        f"Models: the weights after the last epoch of each run. MC: {t_max} stochastic passes "
        f"(masks on, BatchNorm in eval). ECE: {settings.get('n_bins', N_BINS)} equal-width "
        "bins. Mean ± sample std over seeds; lower is better except accuracy."
        + (
            f" Evaluated on the first {settings['examples']} test examples (and as many "
            "out-of-distribution ones)."
            if settings.get("examples")
            else ""
        ),
        "",
        "Edge drop rate: the realized rate during training, mean over epochs and seeds "
        "(— for methods that drop activations or nothing).",
        "",
        *(
            [
                "**Unfinished runs** (their weights are those of an earlier epoch, not the "
                "trained model; finish them with `ddc compare --resume` and run `ddc "
                "uncertainty` again): "
                + ", ".join(f"{m} seed {s} ({n} epochs)" for (m, s), n in unfinished.items()),
                "",
            ]
            if unfinished
            else []
        ),
        "| method | edge drop rate | predictor | seeds | accuracy % | NLL | Brier | ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        rates = [mean_drop_rate(run_dir / "runs" / m / f"seed{r['seed']}") for r in by_method[m]]
        rate = f"{np.mean(rates):.3f}" if not np.isnan(rates).any() else "—"
        variants = _variants(by_method[m][0], t_max).keys()
        for variant in variants:
            values = {k: [_variants(r, t_max)[variant][k] for r in by_method[m]] for k in _METRICS}
            seeds = str(len(by_method[m]))
            partial = sum((m, r["seed"]) in unfinished for r in by_method[m])
            if partial:
                seeds += f" ({partial} unfinished)"
            lines.append(
                f"| {m} | {rate} | {variant} | {seeds} | "
                f"{_fmt(values['accuracy'], 100, 2)} | {_fmt(values['nll'])} | "
                f"{_fmt(values['brier'])} | {_fmt(values['ece'])} |"
            )
    if any("ood" in r for r in runs):
        lines += [
            "",
            "## Out-of-distribution detection",
            "",
            "| method | score | AUROC | FPR at 95 % TPR |",
            "|---|---|---|---|",
        ]
        for m in methods:
            for score in by_method[m][0].get("ood", {}):
                au = [r["ood"][score]["auroc"] for r in by_method[m]]
                fpr = [r["ood"][score]["fpr_at_95_tpr"] for r in by_method[m]]
                lines.append(f"| {m} | {score} | {_fmt(au)} | {_fmt(fpr)} |")
    lines += ["", "## Paired tests (by seed)", "", *_paired_lines(by_method, t_max)]
    plots = _plots(run_dir, by_method, t_values)
    if plots:
        lines += ["", "## Plots", ""] + [f"- ![{p.stem}](plots/{p.name})" for p in plots]
    return atomic_write_text(run_dir / "uncertainty.md", "\n".join(lines) + "\n")


def _predictor_values(run: dict[str, Any], predictor: str, t_max: int) -> dict[str, float]:
    """Calibration metrics of one predictor (``"mc"`` or ``"deterministic"``) of one run, with
    its OOD AUROCs (entropy; mutual information for MC) when the run has OOD results."""
    values = dict(run["mc"][str(t_max)] if predictor == "mc" else run["deterministic"])
    ood = run.get("ood", {})
    for score, key in (("entropy", "auroc_entropy"), ("mutual_information", "auroc_mi")):
        if f"{predictor}/{score}" in ood:
            values[key] = ood[f"{predictor}/{score}"]["auroc"]
    return values


def _paired_lines(by_method: dict[str, list[dict[str, Any]]], t_max: int) -> list[str]:
    """MC-DDC against MC of every other stochastic method and against DDC's deterministic:
    calibration metrics and OOD AUROCs (higher is better for those and for accuracy)."""
    if "ddc" not in by_method or "mc" not in by_method["ddc"][0]:
        return ["(needs ddc runs)"]
    ddc_runs = {r["seed"]: _predictor_values(r, "mc", t_max) for r in by_method["ddc"]}
    rows = [
        "| MC-DDC vs | metric | n | mean diff (DDC − other) | paired t p |",
        "|---|---|---|---|---|",
    ]
    others = [
        ("DDC deterministic",
         {r["seed"]: _predictor_values(r, "deterministic", t_max) for r in by_method["ddc"]})
    ]  # fmt: skip
    for m, rs in by_method.items():
        if m != "ddc" and "mc" in rs[0]:
            others.append((f"MC-{m}", {r["seed"]: _predictor_values(r, "mc", t_max) for r in rs}))
    for label, values in others:
        seeds = sorted(set(values) & set(ddc_runs))
        if not seeds:
            continue
        shared = [k for k in (*_METRICS, "auroc_entropy", "auroc_mi")
                  if all(k in ddc_runs[s] and k in values[s] for s in seeds)]  # fmt: skip
        for k in shared:
            test = paired_comparison([ddc_runs[s][k] for s in seeds], [values[s][k] for s in seeds])
            p = test["t_pvalue"]
            rows.append(
                f"| {label} | {k} | {test['n']} | {test['mean_diff']:+.4f} | "
                f"{'—' if p is None or math.isnan(p) else f'{p:.3f}'} |"
            )
    return rows


#: The calibration metrics in words, with their direction (plot titles), and their scale.
_METRIC_WORDS = {
    "accuracy": ("accuracy (%), higher is better", 100.0),
    "nll": ("negative log-likelihood, lower is better", 1.0),
    "brier": ("Brier score, lower is better", 1.0),
    "ece": ("expected calibration error, lower is better", 1.0),
}


def _pooled_reliability(
    runs: Sequence[dict[str, Any]], variant: str
) -> tuple[list[float], list[float]] | None:
    """Mean confidence and accuracy per reliability bin over every seed of a method, each
    seed's bin weighted by its example count; bins without examples are left out."""
    tables = [r["reliability"][variant] for r in runs if variant in r.get("reliability", {})]
    if not tables:
        return None
    counts = np.sum([t["count"] for t in tables], axis=0).astype(np.float64)
    conf = np.sum([np.multiply(t["confidence"], t["count"]) for t in tables], axis=0)
    acc = np.sum([np.multiply(t["accuracy"], t["count"]) for t in tables], axis=0)
    keep = counts > 0
    return (conf[keep] / counts[keep]).tolist(), (acc[keep] / counts[keep]).tolist()


def _plots(
    run_dir: Path, by_method: dict[str, list[dict[str, Any]]], t_values: list[int]
) -> list[Path]:
    """Reliability diagrams, metrics against T and entropy histograms, every method in its
    colour and marker (:func:`.figures.method_style`), all seeds pooled or averaged."""
    if not by_method:
        return []
    from matplotlib.lines import Line2D

    config = load_config(run_dir)
    experiment = config.get("experiment") or run_dir.name
    dataset = (config.get("settings") or {}).get("dataset")
    made = []
    # Reliability diagrams: every seed's bins pooled; deterministic dashed, MC solid.
    fig, axes = panel_figure(len(by_method), (3.3, 3.2), max_cols=3, extra=1.5)
    for ax, (m, rs) in zip(axes, by_method.items(), strict=True):
        colour, marker = method_style(m)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        for variant, style in (("deterministic", "--"), ("mc", "-")):
            pooled = _pooled_reliability(rs, variant)
            if pooled is not None:
                ax.plot(
                    *pooled,
                    style,
                    color=colour,
                    marker=marker,
                    ms=3.5,
                    mfc="white" if variant == "deterministic" else colour,
                )
        ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        ax.set_title(f"{m} ({len(rs)} seeds)", fontsize=10)
    t_max = max(t_values)
    legend_below(
        fig,
        [
            Line2D(
                [],
                [],
                color="black",
                ls="--",
                marker="o",
                mfc="white",
                ms=3.5,
                label="deterministic (plain weights)",
            ),
            Line2D(
                [],
                [],
                color="black",
                ls="-",
                marker="o",
                ms=3.5,
                label=f"Monte Carlo ({t_max} passes)",
            ),
            Line2D([], [], color="grey", lw=0.8, label="perfect calibration"),
        ],
    )
    figure_title(
        fig,
        f"{experiment}: reliability, accuracy against confidence of the test "
        "predictions\nper confidence bin, all seeds pooled",
    )
    made.append(save_figure(fig, run_dir / "plots" / "uncertainty_reliability.png"))
    # Metrics against T, mean over seeds.
    stochastic = {m: rs for m, rs in by_method.items() if "mc" in rs[0]}
    if stochastic:
        fig, axes = panel_figure(len(_METRICS), (4.6, 3.0), max_cols=2, extra=1.6)
        for ax, k in zip(axes, _METRICS, strict=True):
            words, scale = _METRIC_WORDS[k]
            for m, rs in stochastic.items():
                colour, marker = method_style(m)
                means = [scale * float(np.mean([r["mc"][str(t)][k] for r in rs])) for t in t_values]
                ax.plot(t_values, means, color=colour, marker=marker, ms=4)
                det = scale * float(np.mean([r["deterministic"][k] for r in rs]))
                ax.axhline(det, ls="--", lw=0.9, color=colour)
            ax.set(xscale="log", xlabel="T (stochastic passes)")
            ax.set_title(words, fontsize=10)
            ax.grid(alpha=0.3)
        legend_below(
            fig,
            [
                *(method_handle(m, f"{m} ({len(rs)} seeds)", ms=4) for m, rs in stochastic.items()),
                Line2D([], [], color="black", ls="--", lw=0.9, label="deterministic prediction"),
            ],
        )
        figure_title(
            fig,
            f"{experiment}: Monte Carlo prediction against the number of "
            "passes T\nmean over seeds; dashed: the same model, deterministic",
        )
        made.append(save_figure(fig, run_dir / "plots" / "uncertainty_vs_T.png"))
    # Entropy histograms in and out of distribution, counts summed over seeds.
    with_hist = {m: rs for m, rs in by_method.items() if "entropy_hist" in rs[0]}
    if with_hist:
        ood = OOD_PAIRS.get(dataset, "another data set") if dataset else "another data set"
        fig, axes = panel_figure(len(with_hist), (3.3, 3.0), max_cols=3, extra=1.6)
        for ax, (m, rs) in zip(axes, with_hist.items(), strict=True):
            colour, _ = method_style(m)
            variant = "mc" if all("mc" in r["entropy_hist"] for r in rs) else "deterministic"
            hists = [r["entropy_hist"][variant] for r in rs]
            edges = np.asarray(hists[0]["edges"])
            centers = np.diff(edges) / 2 + edges[:-1]
            ax.plot(centers, np.sum([h["in"] for h in hists], axis=0), "-", color=colour)
            ax.plot(centers, np.sum([h["out"] for h in hists], axis=0), "--", color=colour)
            ax.set(xlabel="predictive entropy (nats)", ylabel="test examples", yscale="log")
            label = f"MC, {t_max} passes" if variant == "mc" else "deterministic"
            ax.set_title(f"{m} ({label}, {len(rs)} seeds)", fontsize=9)
        legend_below(
            fig,
            [
                Line2D(
                    [],
                    [],
                    color="black",
                    ls="-",
                    label=f"in-distribution: {dataset or 'its own'} test images",
                ),
                Line2D(
                    [], [], color="black", ls="--", label=f"out-of-distribution: {ood} test images"
                ),
            ],
        )
        figure_title(
            fig,
            f"{experiment}: predictive entropy in and out of distribution\n"
            "examples per entropy bin, seeds summed; more separation: better "
            "out-of-distribution detection",
        )
        made.append(save_figure(fig, run_dir / "plots" / "uncertainty_entropy.png"))
    return made
