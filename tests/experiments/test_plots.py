"""Tests of the report's plots: one colour per method everywhere, capped sizes, titles that
name the experiment, heatmap colour limits from the data's intervals, learned curves over all
seeds, uncertainty plots that say what "in" and "out" are."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from scipy import stats

from dynamic_dropconnect.experiments import figures as figure_helpers
from dynamic_dropconnect.experiments import plots, sweeps, uncertainty_render
from dynamic_dropconnect.experiments.report import (
    MAX_FIG_WIDTH,
    METHOD_STYLES,
    PALETTE,
    method_style,
    plot_learned_curves,
    plot_sweep_heatmap,
    sweep_colour_limits,
    write_report,
)

DPI = 110  # figure_helpers.save_figure


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every figure the report and uncertainty modules save, by path (kept after closing)."""
    captured: dict[str, Any] = {}
    real = figure_helpers.save_figure

    def keep(fig: Any, path: str | Path, **kwargs: Any) -> Path:
        captured[str(path)] = fig
        return real(fig, path, **kwargs)

    for module in (figure_helpers, plots, sweeps, uncertainty_render):  # each holds its own name
        monkeypatch.setattr(module, "save_figure", keep)
    return captured


def _fake_run(
    root: Path, experiment: str, methods: list[str], *, seeds: int = 2, layers: int = 1
) -> Path:
    """A run directory: config.json, and per method and seed a falling metrics.csv (drop
    columns for every method but none), a complete result.json, drop_probs.pt for ddc*."""
    names = [f"block{i}.linear" for i in range(layers)]
    config = {"experiment": experiment, "methods": methods, "epochs": 4}
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(config))
    for k, method in enumerate(methods):
        for seed in range(seeds):
            folder = root / "runs" / method / f"seed{seed}"
            folder.mkdir(parents=True)
            drops = [] if method == "none" else names
            fields = ["epoch", "train_loss", "val_acc", "test_acc"]
            fields += [f"{c}/{n}" for n in drops for c in ("drop_rate", "mean_drop_prob")]
            with open(folder / "metrics.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                for epoch in range(1, 5):
                    row = {"epoch": epoch, "train_loss": 1.0 / epoch}
                    row |= {"val_acc": 0.8 + 0.01 * (epoch + k), "test_acc": 0.8 + 0.01 * k}
                    row |= {f"{c}/{n}": 0.3 for n in drops for c in ("drop_rate", "mean_drop_prob")}
                    writer.writerow(row)
            acc = 0.9 + 0.001 * (k + seed)
            result = {"test_acc_at_best_val": acc, "final_test_acc": acc, "max_test_acc": acc}
            (folder / "result.json").write_text(json.dumps({**result, "complete": True}))
            if method.startswith("ddc"):
                probs = {n: torch.full((50,), 0.3 + 0.01 * seed) for n in drops}
                torch.save(probs, folder / "drop_probs.pt")
    return root


def _legend(fig: Any) -> dict[str, str]:
    """``{method: colour}`` of a figure legend's entries (the label up to its first " (")."""
    legend = fig.legends[0]
    return {
        text.get_text().split(" (")[0]: to_hex(handle.get_color())
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_palette_is_fixed_distinct_and_colour_blind_safe() -> None:
    colours = [to_hex(c) for c, _ in METHOD_STYLES.values()]
    assert len(METHOD_STYLES) >= 12 and len(set(colours)) == len(colours)
    assert set(colours) <= {to_hex(c) for c in PALETTE}
    for name in ("ddc", "my-new-method", "dropconnect_p0.55"):
        assert method_style(name) == method_style(name)  # not Python's salted hash
        assert to_hex(method_style(name)[0]) in {to_hex(c) for c in PALETTE}
    assert method_style("my-new-method") != method_style("my-other-method")


@pytest.mark.slow
def test_a_method_keeps_its_colour_across_plots_and_runs(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    first = _fake_run(tmp_path / "a", "digits-mlp", ["none", "dropconnect", "ddc", "ddc-learned"])
    second = _fake_run(tmp_path / "b", "mnist-simplecnn1", ["ddc", "dropout"])  # other order
    write_report(first)
    write_report(second)
    ddc = to_hex(method_style("ddc")[0])
    for run, name in [
        (first, "learning_curves"),
        (first, "drop_rates"),
        (first, "drop_prob_hist"),
        (second, "learning_curves"),
        (second, "drop_rates"),
    ]:
        fig = figures[str(run / "plots" / f"{name}.png")]
        assert _legend(fig)["ddc"] == ddc, (run.name, name)
        drawn = {to_hex(line.get_color()) for ax in fig.axes for line in ax.lines}
        assert ddc in drawn  # the data, not only the legend
    forest = figures[str(first / "plots" / "forest.png")]
    assert to_hex(method_style("dropconnect")[0]) in {
        to_hex(line.get_color()) for line in forest.axes[0].lines
    }


@pytest.mark.slow
def test_twelve_methods_get_twelve_colours(tmp_path: Path, figures: dict[str, Any]) -> None:
    methods = list(METHOD_STYLES)[:12]
    run = _fake_run(tmp_path / "run", "digits-mlp", methods, seeds=1)
    write_report(run)
    legend = _legend(figures[str(run / "plots" / "learning_curves.png")])
    assert list(legend) == methods and len(set(legend.values())) == 12


@pytest.mark.slow
def test_plots_are_capped_in_width_and_name_the_experiment(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    run = _fake_run(tmp_path / "run", "wordlang-transformer", ["dropconnect", "ddc"], layers=8)
    write_report(run)
    for name in ("learning_curves", "drop_rates", "drop_prob_hist", "forest"):
        path = run / "plots" / f"{name}.png"
        width, _ = _png_size(path)
        assert width <= MAX_FIG_WIDTH * DPI + 1, (name, width)  # was a 4,400 px strip
        fig = figures[str(path)]
        titles = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
        assert any("wordlang-transformer" in t for t in titles), name
    drop_rates = figures[str(run / "plots" / "drop_rates.png")]
    assert len(drop_rates.axes) == 8
    assert len({round(ax.get_position().y0, 3) for ax in drop_rates.axes}) >= 3  # a grid


def test_learned_curves_average_every_seed(tmp_path: Path, figures: dict[str, Any]) -> None:
    z = [-1.0, 0.0, 1.0]
    for seed, level in ((0, 0.4), (1, 0.6)):
        folder = tmp_path / "runs" / "ddc-learned" / f"seed{seed}"
        folder.mkdir(parents=True)
        history = {str(e): {"linear1": {"z": z, "p": [level] * 3}} for e in (1, 2, 3, 4)}
        (folder / "learned_curves.json").write_text(json.dumps(history))
    out = plot_learned_curves(tmp_path, tmp_path / "learned.png", experiment="digits-mlp")
    assert out is not None
    fig = figures[str(out)]
    (ax,) = fig.axes
    assert "2 seeds" in ax.get_title() and "digits-mlp" in fig.get_suptitle()
    assert len(ax.lines) == 4  # epochs 1, 2, 3, 4: the first, a quarter, half, the last
    for line in ax.lines:
        np.testing.assert_allclose(line.get_ydata(), 0.5)  # mean of 0.4 and 0.6
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.4) and band.max() == pytest.approx(0.6)  # ± 1 std


def _gain_rows(gains: dict[float, list[float]]) -> list[dict[str, Any]]:
    return [
        {"p": p, "pg": 0.5, "tau": 0.5, "seed": s, "gain_over_matched": g, "test_acc": 0.9 + g}
        for p, values in gains.items()
        for s, g in enumerate(values)
    ]


def test_gain_heatmap_is_centred_at_zero_and_as_wide_as_the_intervals(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    # Two cells 0.1 point apart, each far less certain than that.
    gains = {0.1: [0.001, 0.011, -0.009], 0.3: [0.002, -0.004, 0.005]}
    rows = _gain_rows(gains)
    half = max(
        100 * stats.t.ppf(0.975, 2) * np.std(v, ddof=1) / math.sqrt(3) for v in gains.values()
    )
    low, high = sweep_colour_limits(rows, "p", "pg", "gain_over_matched")
    assert low == -high and high >= half - 1e-9 and half > 0.5
    path = plot_sweep_heatmap(rows, "p", "pg", "gain_over_matched", tmp_path / "plots/g.png")
    fig = figures[str(path)]
    norm = fig.axes[0].images[0].norm
    assert (norm.vmin, norm.vcenter, norm.vmax) == (pytest.approx(low), 0.0, pytest.approx(high))
    assert "gain of DDC over DropConnect" in fig.axes[0].get_title()  # words, not a name
    assert fig.axes[0].get_xlabel() == "p (base drop rate)"
    # One seed per cell: no interval, the limits are the largest |mean|, still symmetric.
    single = _gain_rows({0.1: [0.004], 0.3: [-0.001]})
    assert sweep_colour_limits(single, "p", "pg", "gain_over_matched") == (
        pytest.approx(-0.4),
        pytest.approx(0.4),
    )
    # A sequential map spans at least ± the largest half-width around its midpoint.
    acc_low, acc_high = sweep_colour_limits(rows, "p", "pg", "test_acc")
    assert acc_high - acc_low >= 2 * half - 1e-9


def test_heatmap_title_names_the_experiment_of_its_run_dir(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"experiment": "digits-mlp"}))
    rows = _gain_rows({0.1: [0.01, 0.02], 0.3: [0.0, 0.01]})
    path = plot_sweep_heatmap(rows, "p", "pg", "test_acc", tmp_path / "plots" / "t.png")
    assert figures[str(path)].axes[0].get_title().startswith("digits-mlp: DDC's test accuracy")


def _uncertainty_run(run: Path) -> None:
    metrics = {"accuracy": 0.9, "nll": 0.3, "brier": 0.1, "ece": 0.02}
    bins = {"confidence": [0.5, 0.9], "accuracy": [0.4, 0.95], "count": [10, 90]}
    hist = {"edges": [0.0, 1.0, 2.0], "in": [90, 10], "out": [30, 70]}
    runs = []
    for method in ("ddc", "none"):
        for seed in (0, 1):
            record = {
                "method": method,
                "seed": seed,
                "epochs_trained": 4,
                "epochs_total": 4,
                "deterministic": metrics,
                "reliability": {"deterministic": bins},
                "entropy_hist": {"deterministic": hist},
                "ood": {"deterministic/entropy": {"auroc": 0.8, "fpr_at_95_tpr": 0.5}},
            }
            if method == "ddc":
                record["mc"] = {"1": metrics, "10": metrics}
                record["reliability"]["mc"] = bins
                record["entropy_hist"]["mc"] = hist
            runs.append(record)
    settings = {"t_values": [1, 10], "ood": True, "n_bins": 15}
    run.mkdir()
    (run / "uncertainty.json").write_text(
        json.dumps({"experiment": "mnist-simplecnn1", "settings": settings, "runs": runs})
    )
    config = {"experiment": "mnist-simplecnn1", "settings": {"dataset": "mnist"}, "epochs": 4}
    (run / "config.json").write_text(json.dumps(config))


@pytest.mark.slow
def test_uncertainty_plots_define_in_and_out_and_use_the_palette(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    run = tmp_path / "run"
    _uncertainty_run(run)
    uncertainty_render.render_uncertainty(run)
    entropy = figures[str(run / "plots" / "uncertainty_entropy.png")]
    labels = [t.get_text() for t in entropy.legends[0].get_texts()]
    assert labels == [
        "in-distribution: mnist test images",
        "out-of-distribution: fashion-mnist test images",
    ]
    assert "mnist-simplecnn1" in entropy.get_suptitle()
    ddc_panel = entropy.axes[0]
    assert {to_hex(line.get_color()) for line in ddc_panel.lines} == {
        to_hex(method_style("ddc")[0])
    }
    versus_t = figures[str(run / "plots" / "uncertainty_vs_T.png")]
    assert _legend(versus_t)["ddc"] == to_hex(method_style("ddc")[0])
    for name in ("uncertainty_entropy", "uncertainty_reliability", "uncertainty_vs_T"):
        assert _png_size(run / "plots" / f"{name}.png")[0] <= MAX_FIG_WIDTH * DPI + 1
