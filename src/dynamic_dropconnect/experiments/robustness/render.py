"""``robustness.md`` and ``plots/robustness_*.png`` of a run directory, from its
``robustness.json`` (written by :func:`.evaluate_run`; ``ddc report`` re-renders them): the
headline table, one table per part, paired tests by seed (:func:`..stats.paired_comparison`) and
accuracy curves against severity, ε and the fraction of edges removed."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..figures import (
    figure_title,
    legend_below,
    method_handle,
    method_style,
    panel_figure,
    save_figure,
    titled,
)
from ..rundir import load_config
from ..stats import holm, mean_std, paired_comparison
from ..storage import atomic_write_text, read_json_object
from . import attacks, corruptions, pruning
from .metrics import (
    LOWER_IS_BETTER,
    PARTS,
    RELATIVE_MIN_EXCESS,
    relative_mce_corruptions,
    run_metrics,
)

__all__ = [
    "render_robustness",
]


def _fmt(values: Sequence[float], scale: float) -> str:
    """``mean ± std`` of scaled values, 2 decimals; — when one is missing or not finite."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) != len(values) or not finite:
        return "—"
    mean, std = mean_std([v * scale for v in finite])
    return f"{mean:.2f}" + ("" if math.isnan(std) else f" ± {std:.2f}")


def _left_out(baseline: list[dict[str, Any]], parts: list[str]) -> str:
    """The sentence naming the corruptions the relative mCE leaves out, if any."""
    if not baseline or "corruptions" not in parts:
        return ""
    kept = relative_mce_corruptions(baseline)
    out = [c for c in baseline[0]["parts"]["corruptions"]["accuracy"] if c not in kept]
    if not out:
        return ""
    return (
        f" The relative mCE leaves out {', '.join(out)}: there `none`'s corrupted error exceeds "
        f"its clean error by less than {100 * RELATIVE_MIN_EXCESS:g} point summed over the "
        "severities, too few test images for a ratio."
    )


def _scale(metric: str) -> float:
    """Accuracies (fractions) are shown in %, mCE (already in %) as is."""
    return 1.0 if metric in LOWER_IS_BETTER else 100.0


def render_robustness(run_dir: str | Path) -> Path:
    """(Re)write ``robustness.md`` and ``plots/robustness_*.png`` from ``robustness.json``."""
    run_dir = Path(run_dir)
    data = read_json_object(run_dir / "robustness.json")
    runs: list[dict[str, Any]] = data.get("runs", [])
    settings = data.get("settings", {})
    methods = list(dict.fromkeys(r["method"] for r in runs))
    order = load_config(run_dir).get("methods", [])
    methods.sort(key=lambda m: (order.index(m) if m in order else len(order), m))
    by_method = {
        m: sorted((r for r in runs if r["method"] == m), key=lambda r: r["seed"]) for m in methods
    }
    baseline = by_method.get("none", [])
    metrics = {
        m: [{**run_metrics(r, baseline), "seed": r["seed"]} for r in rs]
        for m, rs in by_method.items()
    }
    parts = settings.get("parts", list(PARTS))
    unfinished = [
        f"{r['method']} seed {r['seed']} ({r.get('epochs_trained')} of "
        f"{r.get('epochs_total')} epochs)"
        for r in runs
        if r.get("epochs_trained") != r.get("epochs_total")
    ]
    n = runs[0].get("n_test") if runs else 0
    lines = [
        f"# Robustness: {data.get('experiment', run_dir.name)}",
        "",
        f"Models: the weights after the last epoch of each run, deterministic (eval mode). "
        f"{n} test examples; seed {settings.get('seed', 0)} for the corruptions, PGD's random "
        "start and random pruning (the same for every run). Accuracy in %, mean ± sample std "
        "over seeds. mCE / relative mCE: corruption error relative to `none` (100 = same, "
        "lower is better; — without a `none` method)." + _left_out(baseline, parts),
        "",
        *(
            [f"**Unfinished runs** (weights of an earlier epoch): {', '.join(unfinished)}", ""]
            if unfinished
            else []
        ),
    ]
    headline = ["clean"]
    if "corruptions" in parts:
        headline += ["corruption mean", "mCE", "relative mCE"]
    if "adversarial" in parts:
        headline += [f"FGSM ε={attacks.EPSILONS[1]}", f"PGD ε={attacks.EPSILONS[1]}"]
    if "pruning" in parts:
        headline += ["random f=0.5", "magnitude f=0.5"]
    lines += _table("method", headline, methods, metrics)
    sections = []
    if "corruptions" in parts:
        keys = [f"corruption {c}" for c in corruptions.CORRUPTIONS]
        sections.append(("Corruptions (accuracy %, mean over the 5 severities)", keys))
    if "adversarial" in parts:
        keys = [f"{a.upper()} ε={e}" for a in attacks.ATTACKS for e in attacks.EPSILONS]
        eot = ""
        if settings.get("eot"):
            keys += ["MC clean"] + [f"PGD-EOT MC ε={e}" for e in attacks.EPSILONS]
            eot = (
                f"; PGD-EOT MC: the same PGD on the stochastic network, gradients averaged over "
                f"{settings['eot']} mask draws per step, scored by the {settings['mc_samples']}-"
                "pass MC prediction (— for a deterministic model)"
            )
        sections.append(
            (
                "Adversarial (accuracy % under attack, ε in pixel space [0, 1]; "
                f"PGD: {attacks.PGD_STEPS} steps of ε/8, random start{eot})",
                keys,
            )
        )
    if "pruning" in parts:
        layers = next(iter(by_method.values()))[0]["parts"]["pruning"].get("layers", {})
        keys = [f"{h} f={f}" for h in pruning.HOW for f in pruning.FRACTIONS]
        sections.append(
            (
                f"Edge removal (accuracy %, fraction f of {', '.join(layers)} set to "
                "zero, no retraining)",
                keys,
            )
        )
    for title, keys in sections:
        lines += ["", f"## {title}", "", *_transposed(keys, methods, metrics)]
    lines += ["", "## Paired tests (by seed)", "", *_paired_lines(metrics, headline, sections)]
    plots = _plots(run_dir, by_method, parts)
    if plots:
        lines += ["", "## Plots", ""] + [f"- ![{p.stem}](plots/{p.name})" for p in plots]
    return atomic_write_text(run_dir / "robustness.md", "\n".join(lines) + "\n")


def _table(first: str, keys: list[str], methods: list[str], metrics: dict) -> list[str]:
    """One row per method, one column per metric."""
    rows = [f"| {first} | seeds | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for m in methods:
        cells = [_fmt([v[k] for v in metrics[m]], _scale(k)) for k in keys]
        rows.append(f"| {m} | {len(metrics[m])} | " + " | ".join(cells) + " |")
    return rows


def _transposed(keys: list[str], methods: list[str], metrics: dict) -> list[str]:
    """One row per metric, one column per method."""
    rows = ["| | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for k in keys:
        cells = [_fmt([v.get(k, math.nan) for v in metrics[m]], _scale(k)) for m in methods]
        rows.append(f"| {k.removeprefix('corruption ')} | " + " | ".join(cells) + " |")
    return rows


def _paired_lines(
    metrics: dict[str, list[dict[str, float]]],
    headline: list[str],
    sections: list[tuple[str, list[str]]],
) -> list[str]:
    """``ddc`` (else the first method) against every other method, paired by seed."""
    if len(metrics) < 2:
        return ["(needs two methods)"]
    reference = "ddc" if "ddc" in metrics else next(iter(metrics))
    keys = list(
        dict.fromkeys(
            headline + [k for _, ks in sections for k in ks if not k.startswith("corruption ")]
        )
    )
    rows = [
        f"Differences {reference} − other (accuracy in points, mCE in %): positive is better "
        "for accuracy, negative for mCE; 95% CI: t interval of the mean difference; "
        "higher/ties/lower: seeds where the reference's value is above, equal to, below the "
        "other's. t: paired t-test p; Holm: t p adjusted by Holm's method over every row of "
        "this table (one family); W: Wilcoxon signed-rank p (n >= 5).",
        "",
        f"| {reference} vs | metric | n | mean diff | 95% CI | higher/ties/lower | t p | Holm p "
        "| W p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tests: list[tuple[str, str, dict[str, Any]]] = []
    ref_runs = {v["seed"]: v for v in metrics[reference]}
    for other in metrics:
        if other == reference:
            continue
        other_runs = {v["seed"]: v for v in metrics[other]}
        seeds = sorted(set(ref_runs) & set(other_runs))
        for k in keys:
            a = [ref_runs[s].get(k, math.nan) for s in seeds]
            b = [other_runs[s].get(k, math.nan) for s in seeds]
            if not seeds or not all(math.isfinite(v) for v in a + b):
                continue
            scale = _scale(k)
            tests.append(
                (other, k, paired_comparison([v * scale for v in a], [v * scale for v in b]))
            )
    adjusted = holm([t["t_pvalue"] for _, _, t in tests])
    for (other, k, test), holm_p in zip(tests, adjusted, strict=True):
        low, high = test["ci95_t"]
        ci = f"[{low:+.2f}, {high:+.2f}]" if math.isfinite(low) else "—"
        rows.append(
            f"| {other} | {k} | {test['n']} | {test['mean_diff']:+.2f} | {ci} | "
            f"{test['wins']}/{test['ties']}/{test['losses']} | {_p(test['t_pvalue'])} | "
            f"{_p(holm_p)} | {_p(test['wilcoxon_pvalue'])} |"
        )
    return rows


def _p(value: float | None) -> str:
    """A p-value in 3 decimals; — when undefined."""
    return "—" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _plots(run_dir: Path, by_method: dict[str, list[dict[str, Any]]], parts: list[str]) -> list:
    """Accuracy against severity, ε and the fraction removed, mean over seeds, each method in
    its fixed colour and marker (:func:`.figures.method_style`); the paths written."""
    if not by_method:
        return []
    made = []
    experiment = str(load_config(run_dir).get("settings", {}).get("name", run_dir.name))
    handles = [method_handle(m, f"{m} (n={len(rs)})") for m, rs in by_method.items()]

    def mean_curve(rs: list[dict[str, Any]], get: Callable[[dict[str, Any]], list[float]]):
        return 100 * np.mean([get(r) for r in rs], axis=0)

    def level_curve(
        rs: list[dict[str, Any]], part: str, name: str, start: str | None = None
    ) -> tuple[list[float], Any]:
        """x: 0 and the levels (ε or f) of ``part``/``name``; y: the accuracy without the
        attack or removal (``clean_accuracy``, or ``part``'s ``start`` entry), then at each."""
        levels = list(rs[0]["parts"][part][name])
        curve = mean_curve(
            rs,
            lambda r: (
                [r["parts"][part][start] if start else r["clean_accuracy"]]
                + [r["parts"][part][name][k] for k in levels]
            ),
        )
        return [0.0, *map(float, levels)], curve

    def draw(ax: Any, method: str, x: Sequence[float], y: Any, **line: Any) -> None:
        colour, marker = method_style(method)
        ax.plot(x, y, color=colour, **({"marker": marker, "ms": 4} | line))

    def finish(fig: Any, what: str, name: str, extra: Sequence[Any] = ()) -> None:
        legend_below(fig, [*handles, *extra])
        figure_title(fig, titled(what, experiment))
        made.append(save_figure(fig, run_dir / "plots" / name))

    if "corruptions" in parts:
        names = list(corruptions.CORRUPTIONS)
        fig, axes = panel_figure(len(names), (3.0, 2.4), max_cols=4)
        for ax, name in zip(axes, names, strict=True):
            for m, rs in by_method.items():
                curve = mean_curve(
                    rs,
                    lambda r, n=name: (
                        [r["clean_accuracy"]] + r["parts"]["corruptions"]["accuracy"][n]
                    ),
                )
                draw(ax, m, [0, *corruptions.SEVERITIES], curve)
            ax.set(title=name, xlabel="severity", ylabel="accuracy %")
            ax.grid(alpha=0.3)
        finish(
            fig, "test accuracy under corruptions (mean over seeds)", "robustness_corruptions.png"
        )
    if "adversarial" in parts:
        fig, axes = panel_figure(len(attacks.ATTACKS), (4.2, 3.2))
        eot_drawn = False
        for ax, name in zip(axes, attacks.ATTACKS, strict=True):
            for m, rs in by_method.items():
                draw(ax, m, *level_curve(rs, "adversarial", name))
                if name == "pgd" and all("pgd_eot" in r["parts"]["adversarial"] for r in rs):
                    eot = level_curve(rs, "adversarial", "pgd_eot", start="mc_clean")
                    draw(ax, m, *eot, ls="--", marker="x")
                    eot_drawn = True
            ax.set(title=name.upper(), xlabel="ε (pixel space)", ylabel="accuracy %")
            ax.grid(alpha=0.3)
        extra = []
        if eot_drawn:
            from matplotlib.lines import Line2D

            extra = [Line2D([], [], color="grey", ls="--", marker="x", label="MC network, EOT")]
        finish(fig, "test accuracy under attack (mean over seeds)", "robustness_adversarial.png",
               extra)  # fmt: skip
    if "pruning" in parts:
        fig, axes = panel_figure(len(pruning.HOW), (4.2, 3.2))
        for ax, how in zip(axes, pruning.HOW, strict=True):
            for m, rs in by_method.items():
                draw(ax, m, *level_curve(rs, "pruning", how))
            ax.set(title=f"{how} edge removal", xlabel="fraction removed f", ylabel="accuracy %")
            ax.grid(alpha=0.3)
        finish(fig, "test accuracy after edge removal, no retraining", "robustness_pruning.png")
    return made
