"""The Markdown of results.md: the comparison table, the warnings above it, the header of the
resolved configuration, the per-method details and the tuning section.

Accuracies are percentages (2 decimals) in the report. The honest number is the test accuracy at
the best-validation epoch; the maximum test accuracy over epochs is optimistic (selection on the
test set) and is shown only for comparison with the paper."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .config import Experiment
from .stats import to_float
from .summaries import CHANCE_MARGIN

__all__ = [
    "fmt_interval",
    "fmt_pct",
    "fmt_pct_pm",
    "fmt_power_pairs",
    "fmt_pvalue",
    "format_header",
    "format_method_details",
    "format_point",
    "format_table",
    "format_tuning",
    "format_warnings",
]


def fmt_interval(interval: Sequence[float] | None) -> str:
    """An interval of fractions as ``[lo, hi]`` in percentage points; — when undefined."""
    if interval is None or not all(math.isfinite(v) for v in interval):
        return "—"
    return f"[{100.0 * interval[0]:+.2f}, {100.0 * interval[1]:+.2f}]"


def fmt_power_pairs(comp: dict[str, Any]) -> str:
    """The pairs for 80 % power of a comparison; — when undefined."""
    pairs = comp.get("pairs_for_80_power")
    return "—" if pairs is None else str(pairs)


def format_point(point: dict[str, Any] | None) -> str:
    """A tuned grid point as ``lr=0.01, p=0.3``; — for none."""
    if not point:
        return "—"
    return ", ".join(f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}"
                     for k, v in point.items())  # fmt: skip


def fmt_pct(value: float) -> str:
    """A fraction as a percentage, 2 decimals; — when not finite."""
    return "—" if not math.isfinite(value) else f"{100.0 * value:.2f}"


def fmt_pct_pm(stat: dict[str, float]) -> str:
    """``mean ± std`` of a ``{"mean", "std"}`` in percent; the mean alone for one seed."""
    mean, std = stat["mean"], stat["std"]
    if not math.isfinite(mean):
        return "—"
    return fmt_pct(mean) if not math.isfinite(std) else f"{fmt_pct(mean)} ± {fmt_pct(std)}"


def fmt_pvalue(value: float | None) -> str:
    """A p-value in 3 significant digits (scientific below 1e-4); — when undefined."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.1e}"


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table with a note line under it.

    Columns: method | seeds | edge drop rate | mask variance | test acc @ best val (mean ± std)
    | final test acc | max over epochs (optimistic) | Δ vs reference | paired p (t). Accuracies
    in percent, 2 decimals; Δ in percentage points, ``reference − method`` (positive: the
    reference is better). A method in ``summary["flags"]``
    (:func:`.summaries.flag_uninformative`) is marked ``⚠ <reason>``.
    """
    ref = summary["reference"]
    flags: dict[str, list[str]] = summary.get("flags") or {}
    tuned = any("tuned" in e for e in summary["methods"].values())
    header = [
        "method",
        "seeds",
        *(["tuned (on validation)"] if tuned else []),
        "edge drop rate",
        "mask variance",
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
            ci = fmt_interval(comp.get("ci95_t"))
            boot = fmt_interval(comp.get("ci95_bootstrap"))
            power = fmt_power_pairs(comp)
            holm_p = fmt_pvalue(comp.get("holm_pvalue"))
            p = fmt_pvalue(comp["t_pvalue"])
        lines.append(
            "| "
            + " | ".join(
                [
                    (f"**{method}**" if method == ref else method)
                    + "".join(f" ⚠ {reason}" for reason in flags.get(method, [])),
                    str(entry["n"]),
                    *([format_point(entry.get("tuned"))] if tuned else []),
                    f"{entry['edge_drop_rate']:.3f}" if "edge_drop_rate" in entry else "—",
                    f"{entry['edge_mask_variance']:.3f}" if "edge_mask_variance" in entry else "—",
                    fmt_pct_pm(entry["test_acc_at_best_val"]),
                    fmt_pct_pm(entry["final_test_acc"]),
                    fmt_pct_pm(entry["max_test_acc"]),
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
        f"(— : the method drops activations or nothing). *mask variance*: the mean over edges "
        f"of p_ij(1 − p_ij), the noise the mask injects (DropConnect at rate p: p(1 − p); "
        f"uneven rates give less at the same mean rate), mean over epochs, layers and seeds."
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
    (:func:`.summaries.flag_uninformative`): which, why, and the rules; empty when none is
    flagged."""
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
            f"at chance (test acc @ best val {fmt_pct(mean)} %)" if r == "at chance" else r
            for r in reasons
        ]
        items.append(f"**{method}**: {'; '.join(reasons)}")
    rules = []
    if chance is not None:
        rules.append(
            f"*at chance* when its mean test accuracy at the best-validation epoch is below "
            f"chance + {100 * CHANCE_MARGIN:g} points (chance: {fmt_pct(chance)} % = 1 / "
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
        subset, train_size = config.get("subset"), settings.get("train_size")
        parts = []
        if train_size:
            parts.append(f"{train_size} training examples drawn per seed (`train_size`)")
        if subset:
            parts.append(f"at most {subset} examples per split (`--subset {subset}`)")
        elif train_size:
            parts.append("the whole test set")
        data = "; ".join(parts) or "the full data set"
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
        lines.append(f"- **chance**: {fmt_pct(chance[0])} % (1 / {chance[1]} classes)")
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


def format_method_details(summary: dict[str, Any]) -> str:
    """The ``Per method`` section: each seed's number and the paired tests against the reference."""
    lines = ["## Per method", ""]
    ref = summary["reference"]
    for method in summary["method_order"]:
        entry = summary["methods"][method]
        vals = ", ".join(
            f"seed {s}: {fmt_pct(v)}"
            for s, v in zip(entry["seeds"], entry["test_acc_at_best_val"]["values"], strict=True)
        )
        lines.append(f"- **{method}** ({entry['n']} seeds) — test acc @ best val: {vals}")
        comp = summary["comparisons"].get(method)
        if comp is not None:
            md = comp["mean_diff"]
            delta = f"{100.0 * md:+.2f}" if math.isfinite(md) else "—"
            wp = comp["wilcoxon_pvalue"]
            wilcoxon = "n/a (n < 5)" if wp is None else fmt_pvalue(wp)
            lines.append(
                f"  - vs {ref} over seeds {comp['seeds']}: {ref} wins/ties/losses "
                f"{comp['wins']}/{comp['ties']}/{comp['losses']}; mean Δ ({ref} − {method}) "
                f"{delta} pp; t-test p {fmt_pvalue(comp['t_pvalue'])}; Wilcoxon p {wilcoxon}"
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
            cells += [fmt_pct(to_float(entry["val_acc"])), _fmt_loss(entry.get("val_loss"))]
            if best:
                cells = [f"**{c}**" for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _fmt_loss(value: Any) -> str:
    v = to_float(value)
    return f"{v:.4f}" if math.isfinite(v) else "—"
