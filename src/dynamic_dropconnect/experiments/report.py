"""The report of a run directory: ``results.json``, ``results.md`` and ``plots/*.png``.

Every comparison table states, per paired comparison, the mean difference with its 95 % t
interval (and a seeded percentile-bootstrap interval from 5 pairs on), the t-test p-value and
its Holm adjustment over the family of all comparisons in that table, and the number of seed
pairs a paired t-test would need for 80 % power at the observed effect (:mod:`.stats`).

Before the table, results.md states the resolved configuration (experiment, epochs, learning
rate and schedule, subset, method options) and says which methods are not informative: test
accuracy within :data:`.summaries.CHANCE_MARGIN` of chance (``1 / number of classes``) or a
training loss that did not fall; those rows are marked, since their differences compare noise.

:func:`write_report` puts together the pieces of the modules below it, and re-exports their
public names (the import path of the whole report before it was split): the run directory's
layout and loaders (:mod:`.rundir`), statistics (:mod:`.stats`, :mod:`.summaries`), Markdown
(:mod:`.tables`), plots (:mod:`.figures`, :mod:`.plots`) and sweeps (:mod:`.sweeps`).
"""

from __future__ import annotations

from pathlib import Path

from .figures import (
    MARKERS,
    MAX_FIG_WIDTH,
    METHOD_STYLES,
    PALETTE,
    figure_title,
    legend_below,
    method_handle,
    method_style,
    panel_figure,
    plot_forest,
)
from .plots import (
    plot_drop_prob_hist,
    plot_drop_rates,
    plot_learned_curves,
    plot_learning_curves,
    plot_summary_forest,
)
from .robustness.render import render_robustness
from .rundir import (
    all_metrics,
    json_safe,
    load_config,
    load_metrics,
    load_results,
    load_train_losses,
    load_tuning,
    method_order,
    seed_dirs,
)
from .rundir import mean_drop_rate as mean_drop_rate
from .stats import paired_comparison
from .storage import atomic_write_json, atomic_write_text
from .summaries import CHANCE_MARGIN, METRICS, add_holm, chance_level, flag_uninformative, summarize
from .sweeps import (
    format_sweep_table,
    plot_sweep_forest,
    plot_sweep_heatmap,
    sweep_colour_limits,
    sweep_comparisons,
)
from .tables import (
    format_header,
    format_method_details,
    format_point,
    format_table,
    format_tuning,
    format_warnings,
)
from .uncertainty_render import render_uncertainty

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
        summary, load_train_losses(run_dir, results), summary["chance"]
    )
    tuning = load_tuning(run_dir)
    for method, record in (tuning.get("methods") or {}).items():
        if method in summary["methods"]:
            summary["methods"][method]["tuned"] = record.get("selected") or {}
    complete = {(r["method"], int(r["seed"])) for r in results}
    incomplete = [f"{m}/seed{s}" for m, s, _ in seed_dirs(run_dir) if (m, s) not in complete]

    title = config.get("experiment", run_dir.name)
    order = method_order([m for m, _, _ in seed_dirs(run_dir)] + list(summary["methods"]), config)
    metrics = all_metrics(run_dir, order)
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
        "forest": plot_summary_forest(summary, plots_dir / "forest.png", title),
    }

    parts = [f"# Results: {title}", ""]
    header = format_header(config, chance)
    if header:
        parts += [header]
    if results:
        warning = format_warnings(summary)
        parts += ([warning] if warning else []) + [
            format_table(summary),
            format_method_details(summary),
        ]
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
    atomic_write_json(run_dir / "results.json", json_safe(payload))
    if (run_dir / "uncertainty.json").exists():  # written by `ddc uncertainty`
        render_uncertainty(run_dir)
    if (run_dir / "robustness.json").exists():  # written by `ddc robustness`
        render_robustness(run_dir)
    return atomic_write_text(run_dir / "results.md", "\n".join(parts))
