"""Tests of the run-directory report: statistics, Markdown table, report files, heatmap."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from dynamic_dropconnect.experiments.config import get_experiment
from dynamic_dropconnect.experiments.report import (
    chance_level,
    flag_uninformative,
    format_header,
    format_sweep_table,
    format_table,
    load_metrics,
    load_results,
    paired_comparison,
    plot_sweep_heatmap,
    summarize,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Known per-seed numbers (seeds 0, 1, 2): test acc at best val, final, max over epochs.
BEST = {
    "ddc": [0.990, 0.985, 0.992],
    "none": [0.980, 0.981, 0.975],
    "dropconnect": [0.990, 0.987, 0.991],
}
FINAL = {
    "ddc": [0.989, 0.984, 0.990],
    "none": [0.979, 0.980, 0.970],
    "dropconnect": [0.988, 0.986, 0.990],
}
MAX = {
    "ddc": [0.993, 0.988, 0.994],
    "none": [0.982, 0.983, 0.978],
    "dropconnect": [0.991, 0.989, 0.993],
}
METHODS = ["none", "dropconnect", "ddc"]  # config order
LAYER = "linear1"


def _write_seed(
    run: Path,
    method: str,
    seed: int,
    *,
    complete: bool = True,
    best: float | None = None,
    train_loss: list[float] | None = None,
) -> None:
    """One fake run; ``best`` overrides its test accuracies (then any method name works),
    ``train_loss`` its training loss per epoch (4 epochs)."""
    folder = run / "runs" / method / f"seed{seed}"
    folder.mkdir(parents=True)
    regularized = method != "none"
    fields = [
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "seconds",
    ]
    if regularized:
        fields += [f"drop_rate/{LAYER}", f"mean_drop_prob/{LAYER}", f"mask_var/{LAYER}"]
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for epoch in range(1, 5):
            row = {
                "epoch": epoch,
                "lr": 0.01,
                "train_loss": 1.0 / epoch if train_loss is None else train_loss[epoch - 1],
                "train_acc": 0.9,
                "val_loss": 0.5 / epoch,
                "val_acc": 0.95 + 0.01 * epoch + 0.001 * seed,
                "test_loss": 0.5 / epoch,
                "test_acc": 0.94 + 0.01 * epoch,
                "seconds": 1.5,
            }
            if regularized:
                row[f"drop_rate/{LAYER}"] = 0.5 + 0.01 * seed
                row[f"mean_drop_prob/{LAYER}"] = 0.48
                row[f"mask_var/{LAYER}"] = 0.2 + 0.01 * epoch  # mean over epochs 0.225
            writer.writerow(row)
    i = seed % 3  # extra seeds reuse the known numbers
    result = {
        "method": method,
        "seed": seed,
        "epochs": 4,
        "best_val_epoch": 4,
        "best_val_acc": 0.99,
        "test_acc_at_best_val": BEST[method][i] if best is None else best,
        "final_test_acc": FINAL[method][i] if best is None else best,
        "max_test_acc": MAX[method][i] if best is None else best,
        "complete": complete,
    }
    (folder / "result.json").write_text(json.dumps(result))
    if method == "ddc":
        gen = torch.Generator().manual_seed(seed)
        probs = 0.3 + 0.5 * torch.rand(200, generator=gen)
        torch.save({LAYER: probs}, folder / "drop_probs.pt")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    config = {"experiment": "fake-mnist", "methods": METHODS, "seeds": [0, 1, 2], "epochs": 4}
    (run / "config.json").write_text(json.dumps(config))
    for method in METHODS:
        for seed in range(3):
            _write_seed(run, method, seed)
    return run


def _hand_mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def test_load_results_complete_only_and_ordered(run_dir: Path) -> None:
    _write_seed(run_dir, "ddc", 3, complete=False)  # interrupted run
    broken = run_dir / "runs" / "ddc" / "seed4"
    broken.mkdir()
    (broken / "result.json").write_text("{not json")
    (run_dir / "runs" / "ddc" / "seed5").mkdir()  # no files at all
    results = load_results(run_dir)
    assert [(r["method"], r["seed"]) for r in results] == [
        (m, s) for m in METHODS for s in range(3)
    ]


def test_summarize_matches_hand_computation(run_dir: Path) -> None:
    summary = summarize(load_results(run_dir), reference="ddc")
    assert summary["reference"] == "ddc"
    for method in METHODS:
        entry = summary["methods"][method]
        assert entry["n"] == 3 and entry["seeds"] == [0, 1, 2]
        for metric, table in [
            ("test_acc_at_best_val", BEST),
            ("final_test_acc", FINAL),
            ("max_test_acc", MAX),
        ]:
            mean, std = _hand_mean_std(table[method])
            assert entry[metric]["mean"] == pytest.approx(mean, abs=1e-12)
            assert entry[metric]["std"] == pytest.approx(std, abs=1e-12)
    # ddc: mean 0.989, deviations +1e-3, -4e-3, +3e-3 -> var 26e-6 / 2.
    assert summary["methods"]["ddc"]["test_acc_at_best_val"]["std"] == pytest.approx(
        math.sqrt(13e-6), rel=1e-9
    )
    assert set(summary["comparisons"]) == {"none", "dropconnect"}
    for other in ("none", "dropconnect"):
        comp = summary["comparisons"][other]
        diffs = [a - b for a, b in zip(BEST["ddc"], BEST[other], strict=True)]
        assert comp["n"] == 3 and comp["seeds"] == [0, 1, 2]
        assert comp["mean_diff"] == pytest.approx(sum(diffs) / 3, abs=1e-12)
        expected_p = stats.ttest_rel(BEST["ddc"], BEST[other]).pvalue
        assert comp["t_pvalue"] == pytest.approx(expected_p, rel=1e-9)
        assert comp["wilcoxon_pvalue"] is None  # n < 5
    assert summary["comparisons"]["none"]["mean_diff"] == pytest.approx(0.031 / 3, abs=1e-12)
    none = summary["comparisons"]["none"]
    assert (none["wins"], none["ties"], none["losses"]) == (3, 0, 0)
    dc = summary["comparisons"]["dropconnect"]  # d = 0, -0.002, +0.001
    assert (dc["wins"], dc["ties"], dc["losses"]) == (1, 1, 1)


def test_summarize_pairs_by_common_seeds_only() -> None:
    results = [
        {
            "method": "ddc",
            "seed": s,
            "test_acc_at_best_val": v,
            "final_test_acc": v,
            "max_test_acc": v,
        }
        for s, v in [(0, 0.9), (1, 0.8), (2, 0.7)]
    ] + [
        {
            "method": "none",
            "seed": s,
            "test_acc_at_best_val": v,
            "final_test_acc": v,
            "max_test_acc": v,
        }
        for s, v in [(1, 0.75), (2, 0.6), (7, 0.1)]
    ]
    comp = summarize(results)["comparisons"]["none"]
    assert comp["seeds"] == [1, 2]
    assert comp["mean_diff"] == pytest.approx((0.05 + 0.1) / 2)
    assert comp["t_pvalue"] == pytest.approx(stats.ttest_rel([0.8, 0.7], [0.75, 0.6]).pvalue)


def test_degenerate_cases_give_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        single = summarize(
            [
                {
                    "method": "ddc",
                    "seed": 0,
                    "test_acc_at_best_val": 0.9,
                    "final_test_acc": 0.9,
                    "max_test_acc": 0.9,
                }
            ]
        )
        assert single["methods"]["ddc"]["n"] == 1
        assert math.isnan(single["methods"]["ddc"]["test_acc_at_best_val"]["std"])
        assert single["comparisons"] == {}
        constant = paired_comparison([0.9, 0.8, 0.7], [0.8, 0.7, 0.6])  # d all equal
        assert constant["mean_diff"] == pytest.approx(0.1)
        assert math.isnan(constant["t_pvalue"])
        zero = paired_comparison([0.5] * 6, [0.5] * 6)
        assert math.isnan(zero["t_pvalue"]) and math.isnan(zero["wilcoxon_pvalue"])
        assert (zero["wins"], zero["ties"], zero["losses"]) == (0, 6, 0)
        one = paired_comparison([0.9], [0.8])
        assert math.isnan(one["t_pvalue"]) and one["wilcoxon_pvalue"] is None
        empty = paired_comparison([], [])
        assert empty["n"] == 0 and math.isnan(empty["mean_diff"])
        table = format_table(single)
        assert (
            "| **ddc** | 1 | — | — | 90.00 |" in table
        )  # no metrics.csv: rate and variance unknown


def test_wilcoxon_from_five_pairs() -> None:
    ref = [0.91, 0.92, 0.905, 0.93, 0.915, 0.925]
    other = [0.90, 0.915, 0.907, 0.92, 0.90, 0.921]
    comp = paired_comparison(ref, other)
    assert comp["wilcoxon_pvalue"] == pytest.approx(stats.wilcoxon(ref, other).pvalue)
    assert comp["t_pvalue"] == pytest.approx(stats.ttest_rel(ref, other).pvalue)
    assert (comp["wins"], comp["ties"], comp["losses"]) == (5, 0, 1)


def test_format_table_values(run_dir: Path) -> None:
    summary = summarize(load_results(run_dir))
    table = format_table(summary)
    lines = table.splitlines()
    assert lines[0].startswith(
        "| method | seeds | edge drop rate | mask variance | test acc @ best val (mean ± std) |"
    )
    assert "max over epochs (optimistic)" in lines[0] and "paired p (t)" in lines[0]
    rows = {line.split("|")[1].strip(): line for line in lines[2:5]}
    assert list(rows) == ["none", "dropconnect", "**ddc**"]  # config order
    ddc_mean, ddc_std = _hand_mean_std(BEST["ddc"])
    assert f"{100 * ddc_mean:.2f} ± {100 * ddc_std:.2f}" == "98.90 ± 0.36"
    # drop_rate/linear1 is 0.5 + 0.01 * seed in every epoch: mean over seeds 0.51
    assert "| **ddc** | 3 | 0.510 | 0.225 | 98.90 ± 0.36 |" in rows["**ddc**"]
    none_mean, none_std = _hand_mean_std(BEST["none"])
    assert f"| none | 3 | — | — | {100 * none_mean:.2f} ± {100 * none_std:.2f} |" in rows["none"]
    assert "+1.03 (n=3)" in rows["none"]  # (0.010 + 0.004 + 0.017) / 3 = 1.03 pp
    p_none = stats.ttest_rel(BEST["ddc"], BEST["none"]).pvalue
    assert rows["none"].rstrip().endswith(f"| {p_none:.3g} |")
    final_mean, final_std = _hand_mean_std(FINAL["dropconnect"])
    assert f"{100 * final_mean:.2f} ± {100 * final_std:.2f}" in rows["dropconnect"]
    assert "optimistic" in table.split("\n\n")[-1] and "honest" in table


@pytest.mark.slow
def test_write_report_files(run_dir: Path) -> None:
    _write_seed(run_dir, "ddc", 3, complete=False)
    md = write_report(run_dir)
    assert md == run_dir / "results.md"
    text = md.read_text()
    assert "fake-mnist" in text and "98.90 ± 0.36" in text and "ddc/seed3" in text
    assert "No complete run yet" not in text  # complete runs, no tuning: the table only
    data = json.loads((run_dir / "results.json").read_text())
    assert data["summary"]["methods"]["ddc"]["n"] == 3
    assert data["incomplete"] == ["ddc/seed3"]
    for name in ("learning_curves.png", "drop_rates.png", "drop_prob_hist.png"):
        png = run_dir / "plots" / name
        assert png.stat().st_size > 1000
        assert png.read_bytes()[:8] == PNG_MAGIC
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.slow
def test_write_report_missing_data(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    md = write_report(empty)
    assert "No complete run yet" in md.read_text()
    assert not (empty / "plots").exists() or not list((empty / "plots").iterdir())
    # Only methods without regularizers, no drop_probs, an empty metrics.csv: no drop plots.
    run = tmp_path / "plain"
    for seed in range(2):
        _write_seed(run, "none", seed)
    (run / "runs" / "none" / "seed1" / "metrics.csv").write_text("")
    write_report(run)
    assert (run / "plots" / "learning_curves.png").is_file()
    assert not (run / "plots" / "drop_rates.png").exists()
    assert not (run / "plots" / "drop_prob_hist.png").exists()
    summary = json.loads((run / "results.json").read_text())["summary"]
    assert summary["reference"] == "none" and summary["comparisons"] == {}


def test_load_metrics_handles_blanks(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,val_acc\n2,0.5\n1,\n")
    cols = load_metrics(path)
    assert cols["epoch"].tolist() == [1.0, 2.0]
    assert np.isnan(cols["val_acc"][0]) and cols["val_acc"][1] == 0.5
    assert load_metrics(tmp_path / "missing.csv") == {}


def test_sweep_heatmap(tmp_path: Path) -> None:
    rows = [
        {"p": p, "pg": pg, "tau": 0.5, "val_acc": 0.9 + 0.01 * p + 0.02 * pg, "test_acc": 0.9}
        for p in (0.1, 0.3, 0.5)
        for pg in (0.25, 0.5)
    ]
    rows.append({"p": 0.1, "pg": 0.25, "tau": 0.5, "val_acc": 0.5, "test_acc": 0.9})  # duplicate
    out = plot_sweep_heatmap(rows, "p", "pg", "val_acc", tmp_path / "sweep" / "heat.png")
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 1000
    with pytest.raises(ValueError, match="no row"):
        plot_sweep_heatmap(rows, "p", "missing", "val_acc", tmp_path / "bad.png")


def test_table_intervals_holm_and_power(run_dir: Path) -> None:
    from dynamic_dropconnect.experiments.stats import pairs_for_power

    summary = summarize(load_results(run_dir))
    comps = summary["comparisons"]
    # ddc - none: d = 0.010, 0.004, 0.017; mean 0.031 / 3, sd by hand, t(0.975, 2) from scipy.
    d = [0.010, 0.004, 0.017]
    mean, sd = _hand_mean_std(d)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert comps["none"]["ci95_t"] == pytest.approx([mean - half, mean + half], abs=1e-12)
    assert comps["none"]["ci95_bootstrap"] is None  # fewer than 5 pairs
    assert comps["none"]["effect_size_dz"] == pytest.approx(mean / sd)
    assert comps["none"]["pairs_for_80_power"] == pairs_for_power(mean / sd)
    # Holm over the family of this table's two comparisons.
    p_none = stats.ttest_rel(BEST["ddc"], BEST["none"]).pvalue
    p_dc = stats.ttest_rel(BEST["ddc"], BEST["dropconnect"]).pvalue
    low, high = sorted([p_none, p_dc])
    holm = {p_none: 2 * p_none, p_dc: 2 * p_dc}
    holm[high] = max(2 * low, high)
    assert comps["none"]["holm_pvalue"] == pytest.approx(min(1.0, holm[p_none]))
    assert comps["dropconnect"]["holm_pvalue"] == pytest.approx(min(1.0, holm[p_dc]))
    table = format_table(summary)
    header = table.splitlines()[0]
    for column in ("95% CI of Δ (t)", "95% CI of Δ (bootstrap)", "pairs for 80% power", "Holm p"):
        assert column in header
    row = next(line for line in table.splitlines() if line.startswith("| none |"))
    assert f"[{100 * (mean - half):+.2f}, {100 * (mean + half):+.2f}]" in row
    assert f"| {min(1.0, holm[p_none]):.3g} | {p_none:.3g} |" in row


def test_bootstrap_interval_from_five_seeds(run_dir: Path) -> None:
    for method in METHODS:
        for seed in (3, 4):
            _write_seed(run_dir, method, seed)
    comp = summarize(load_results(run_dir))["comparisons"]["none"]
    assert comp["n"] == 5
    low, high = comp["ci95_bootstrap"]
    assert low <= comp["mean_diff"] <= high


@pytest.mark.slow
def test_report_forest_plot_and_tuning_section(run_dir: Path) -> None:
    tuning = {
        "grid": {"lr": [0.01, 0.02]},
        "seeds": [1000, 1001],
        "score": "mean best val acc",
        "methods": {
            "ddc": {
                "names": ["lr"],
                "grid": [
                    {"point": {"lr": 0.01}, "label": "lr0.01", "val_acc": 0.9, "val_loss": 0.3},
                    {"point": {"lr": 0.02}, "label": "lr0.02", "val_acc": 0.95, "val_loss": 0.2},
                ],
                "selected": {"lr": 0.02},
            },
            "none": {"names": ["lr"], "grid": [], "selected": {}},
        },
    }
    (run_dir / "tune.json").write_text(json.dumps(tuning))
    text = write_report(run_dir).read_text()
    assert "| **ddc** | 3 | lr=0.02 | 0.510 |" in text and "| none | 3 | — |" in text
    assert "## Tuning" in text and "**ddc**: chose lr=0.02" in text
    assert "| **0.02** | **95.00** | **0.2000** |" in text and "| 0.01 | 90.00 | 0.3000 |" in text
    data = json.loads((run_dir / "results.json").read_text())
    assert data["summary"]["methods"]["ddc"]["tuned"] == {"lr": 0.02}
    assert data["tuning"]["methods"]["ddc"]["selected"] == {"lr": 0.02}
    for name in ("forest.png", "learning_curves.png"):
        assert (run_dir / "plots" / name).read_bytes()[:8] == PNG_MAGIC
    assert data["plots"]["forest"] == "plots/forest.png"


def _mnist_run(tmp_path: Path, methods: list[str], **settings: object) -> Path:
    """An empty run directory whose config.json is that of a short MNIST run (10 classes)."""
    run = tmp_path / "mnist-run"
    run.mkdir()
    resolved = {**get_experiment("mnist-simplecnn1").to_dict(), "epochs": 4, "warmup": 1}
    config = {
        "experiment": "mnist-simplecnn1",
        "settings": {**resolved, **settings},
        "methods": methods,
        "seeds": [0, 1, 2],
        "epochs": 4,
        "subset": 2000,
        "device": "cpu",
    }
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.mark.slow
def test_chance_warning_before_any_delta_for_a_run_at_chance(tmp_path: Path) -> None:
    run = _mnist_run(tmp_path, ["none", "ddc"], lr=0.001)
    for seed in range(3):
        _write_seed(run, "ddc", seed, best=0.11 + 0.01 * seed)  # mean 12 %: chance is 10 %
        _write_seed(run, "none", seed, best=0.97)
    text = write_report(run).read_text()
    warning = text.index("**⚠ Not informative:**")
    assert warning < text.index("| method |")
    assert warning < text.index("Δ") and warning < text.index("p (t)")
    paragraph = text[warning : text.index("\n", warning)]
    assert "**ddc**: at chance (test acc @ best val 12.00 %)" in paragraph
    assert "**none**" not in paragraph  # 97 % is far from chance
    assert "is below chance + 5 points (chance: 10.00 % = 1 / 10 classes)" in paragraph
    assert "The reference **ddc** is one of them" in paragraph
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")}
    assert "**ddc** ⚠ at chance" in rows and "none" in rows
    data = json.loads((run / "results.json").read_text())["summary"]
    assert data["flags"] == {"ddc": ["at chance"]} and data["chance"] == pytest.approx(0.1)


@pytest.mark.slow
def test_no_chance_warning_for_a_run_that_learned(tmp_path: Path) -> None:
    run = _mnist_run(tmp_path, METHODS)
    for method in METHODS:
        for seed in range(3):
            _write_seed(run, method, seed)  # 97.5 % to 99.2 %, losses falling
    text = write_report(run).read_text()
    assert "Not informative" not in text and "⚠" not in text
    summary = json.loads((run / "results.json").read_text())["summary"]
    assert summary["flags"] == {} and summary["chance"] == pytest.approx(0.1)


@pytest.mark.slow
def test_chance_margin_boundary_and_loss_rule(tmp_path: Path) -> None:
    run = _mnist_run(tmp_path, ["ddc", "none", "dropconnect"])
    for seed in range(2):
        _write_seed(run, "ddc", seed, best=0.149)  # just under 10 % + 5 points
        _write_seed(run, "none", seed, best=0.151)  # just over: informative on accuracy...
        rising = [1.0, 1.1, 1.2, 1.3] if seed == 1 else None  # ...but seed 1 did not learn
        _write_seed(run, "none", seed + 2, best=0.151, train_loss=rising)
        diverged = [1.0, 0.5, 0.4, float("nan")] if seed == 0 else None
        _write_seed(run, "dropconnect", seed, best=0.9, train_loss=diverged)
    results = load_results(run)
    summary = summarize(results)
    losses = {
        (m, s): load_metrics(run / "runs" / m / f"seed{s}" / "metrics.csv")["train_loss"]
        for m, s in ((r["method"], r["seed"]) for r in results)
    }
    by_method: dict[str, dict[int, np.ndarray]] = {}
    for (m, s), values in losses.items():
        by_method.setdefault(m, {})[s] = values
    flags = flag_uninformative(summary, by_method, chance=0.1)
    assert flags == {
        "ddc": ["at chance"],
        "none": ["loss did not fall (seed 3)"],
        "dropconnect": ["loss not finite (seed 0)"],
    }
    assert flag_uninformative(summary, by_method, chance=None) == {
        "none": ["loss did not fall (seed 3)"],
        "dropconnect": ["loss not finite (seed 0)"],
    }  # classes unknown: only the loss rule
    text = write_report(run).read_text()
    assert "| none ⚠ loss did not fall (seed 3) |" in text
    assert "*loss did not fall* when a seed's training loss at the last epoch is not" in text


def test_chance_level_sources() -> None:
    assert chance_level({"num_classes": 6}) == (pytest.approx(1 / 6), 6)
    assert chance_level({"settings": {"dataset": "cifar100"}}) == (pytest.approx(0.01), 100)
    assert chance_level({"experiment": "wordlang-lstm"}) == (pytest.approx(1 / 6), 6)
    assert chance_level({}, [{"settings": {"dataset": "smallnorb"}}]) == (pytest.approx(0.2), 5)
    assert chance_level({"settings": {"dataset": "synthetic-2d"}}) is None  # regression
    assert chance_level({"settings": {"dataset": "no-such-data"}}) is None
    assert chance_level({}) is None


@pytest.mark.slow
def test_results_md_header_states_the_resolved_configuration(tmp_path: Path) -> None:
    run = _mnist_run(tmp_path, ["ddc"], lr=0.001, method_options={"ddc": {"p": 0.2}})
    for seed in range(2):
        _write_seed(run, "ddc", seed)
    text = write_report(run).read_text()
    header = text[: text.index("| method |")]
    for fact in (
        "- **experiment**: mnist-simplecnn1 (dataset mnist, model simplecnn1",
        "**epochs**: 4; **seeds**: 0, 1, 2",
        "peak 0.001, authors schedule over 4 epochs",
        "at most 2000 examples per split (`--subset 2000`)",
        "- **method options**: ddc: p=0.2",
        "- **chance**: 10.00 % (1 / 10 classes)",
    ):
        assert fact in header, fact


def test_sweep_table_flags_cells_at_chance() -> None:
    rows = [
        {"p": p, "pg": 0.5, "tau": 0.5, "seed": s, "val_acc": acc, "test_acc": acc,
         "mean_drop_rate": 0.4, "matched_dropconnect_p": 0.4,
         "matched_dropconnect_test_acc": 0.95, "gain_over_matched": acc - 0.95}
        for p, acc in ((0.1, 0.12), (0.3, 0.96))
        for s in range(2)
    ]  # fmt: skip
    table = format_sweep_table(rows, "digits-mlp", 2)
    warning = table.index("**⚠ Not informative:** in 1 of 2 cells")
    assert warning < table.index("| p | pg |")
    assert "(10.00 % = 1 / 10 classes)" in table
    flagged = [line for line in table.splitlines() if "⚠ at chance" in line]
    assert len(flagged) == 1 and flagged[0].startswith("| 0.1 |")
    assert "⚠" not in format_sweep_table(rows, "not-an-experiment", 2)  # chance unknown


def test_header_data_line_says_what_was_trained_and_tested_on() -> None:
    def data_line(subset: int | None, train_size: int | None) -> str:
        config = {"subset": subset, "settings": {"train_size": train_size, "val_fraction": 0.1}}
        return next(x for x in format_header(config).splitlines() if x.startswith("- **data**"))

    assert data_line(None, None).startswith("- **data**: the full data set; 10 % of the")
    assert data_line(None, 1000) == (
        "- **data**: 1000 training examples drawn per seed (`train_size`); the whole test set; "
        "10 % of the training split held out for validation"
    )
    both = data_line(500, 1000)
    assert "1000 training examples drawn per seed" in both
    assert "at most 500 examples per split (`--subset 500`)" in both
    assert "whole test set" not in both and "full data set" not in both
