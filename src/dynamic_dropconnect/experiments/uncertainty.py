"""Monte-Carlo uncertainty of trained runs: calibration and out-of-distribution detection.

For every trained model of a run directory (``ddc compare`` output), the test set is predicted
deterministically (eval mode, plain weights) and with ``T`` stochastic passes
(:func:`dynamic_dropconnect.mc_predict`: MC-DDC, MC-DropConnect, MC-Dropout, whatever the model
was trained with), for each ``T`` in ``t_values``. The largest ``T`` is sampled once and the
first ``T`` passes give each smaller ``T``. Reported per method and seed:

- accuracy, NLL (mean ``-log p_y``), Brier score (mean over examples of
  ``sum_c (p_c - [y = c])^2``) and ECE (15 equal-width confidence bins, L1);
- out-of-distribution detection against another data set's test images (MNIST for
  Fashion-MNIST and the reverse, normalised with the in-distribution training statistics):
  AUROC and the FPR at 95 % TPR, out-of-distribution as the positive class, scored by the
  predictive entropy ``H[mean_t p_t]`` and by the mutual information (BALD)
  ``H[mean_t p_t] - mean_t H[p_t]``.

Libraries: ECE is ``torchmetrics``' ``multiclass_calibration_error``; AUROC and the ROC curve
are scikit-learn's ``roc_auc_score`` / ``roc_curve``. NLL, Brier and entropy are one line each,
and the reliability-diagram bins (which neither library returns) are computed here.

The model evaluated is the one in each run's ``checkpoint.pt``: the weights after the last
epoch (runs not finished yet are marked in the table). Results go to
``RUN_DIR/runs/<method>/seed<k>/uncertainty.json`` (reused when present with the same settings and
the same checkpoint, by sha256), ``RUN_DIR/uncertainty.json``, ``uncertainty.md`` and
``plots/uncertainty_*.png``; ``ddc report`` re-renders the last three.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import dynamic_dropconnect as ddc

from .config import Experiment
from .datasets import load_dataset
from .io import (
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    load_checkpoint,
    read_json_object,
)
from .report import (
    _json_safe,
    _mean_std,
    _save,
    _seed_dirs,
    figure_title,
    legend_below,
    load_config,
    mean_drop_rate,
    method_style,
    paired_comparison,
    panel_figure,
)
from .training import PreparedData, RunSpec, _inputs, build, prepare_data, trained_experiment

__all__ = [
    "OOD_PAIRS",
    "T_VALUES",
    "UncertaintyError",
    "classification_metrics",
    "evaluate_run",
    "mutual_information",
    "ood_detection",
    "predictive_entropy",
    "reliability_bins",
    "render_uncertainty",
]

T_VALUES: tuple[int, ...] = (1, 5, 10, 30, 100)
N_BINS = 15
#: In-distribution data set -> the out-of-distribution one.
OOD_PAIRS: dict[str, str] = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}
_EPS = 1e-12


class UncertaintyError(ValueError):
    """A run directory or option that the uncertainty pass cannot use."""


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def classification_metrics(probs: Tensor, labels: Tensor, n_bins: int = N_BINS) -> dict[str, float]:
    """Accuracy, NLL, Brier score and ECE of ``(N, C)`` class probabilities."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs = probs.double()
    labels = labels.long()
    picked = probs.gather(1, labels[:, None]).squeeze(1)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    ece = multiclass_calibration_error(
        probs.float(), labels, num_classes=probs.shape[1], n_bins=n_bins, norm="l1"
    )
    return {
        "accuracy": float((probs.argmax(1) == labels).double().mean()),
        "nll": float(-picked.clamp_min(_EPS).log().mean()),
        "brier": float((probs - onehot).pow(2).sum(1).mean()),
        "ece": float(ece),
    }


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = N_BINS) -> dict[str, list[float]]:
    """Per equal-width confidence bin: mean confidence, accuracy and count (for diagrams)."""
    confidence, predicted = probs.double().max(1)
    correct = (predicted == labels).double()
    index = torch.clamp((confidence * n_bins).ceil().long() - 1, 0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(correct))
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, confidence)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct)
    safe = count.clamp_min(1)
    return {
        "confidence": (conf_sum / safe).tolist(),
        "accuracy": (acc_sum / safe).tolist(),
        "count": count.tolist(),
    }


def predictive_entropy(mean_probs: Tensor) -> Tensor:
    """``H[p] = -sum_c p_c log p_c`` per example of ``(N, C)`` probabilities (nats)."""
    p = mean_probs.double()
    return -(p * p.clamp_min(_EPS).log()).sum(-1)


def mutual_information(samples: Tensor) -> Tensor:
    """BALD: ``H[mean_t p_t] - mean_t H[p_t]`` per example of ``(T, N, C)`` samples (>= 0)."""
    return (predictive_entropy(samples.mean(0)) - predictive_entropy(samples).mean(0)).clamp_min(0)


def ood_detection(in_scores: Tensor, out_scores: Tensor) -> dict[str, float]:
    """AUROC and FPR at 95 % TPR; out-of-distribution is positive, a higher score more OOD."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
    s = np.concatenate([in_scores.double().numpy(), out_scores.double().numpy()])
    fpr, tpr, _ = roc_curve(y, s)
    return {
        "auroc": float(roc_auc_score(y, s)),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


def _stochastic(model: nn.Module) -> bool:
    return any(
        isinstance(m, ddc.WeightRegularizer | ddc.Standout | nn.modules.dropout._DropoutNd)
        for m in model.modules()
    )


@torch.no_grad()
def _predict(
    model: nn.Module, x: Tensor, prepare: Callable[[Tensor], Tensor], t_max: int, batch: int
) -> tuple[Tensor, Tensor | None]:
    """Deterministic ``(N, C)`` probabilities and, for a stochastic model, ``(T, N, C)``
    samples; chunks of ``batch`` examples, all ``T`` passes of a chunk in one call."""
    model.eval()
    deterministic, samples = [], []
    stochastic = _stochastic(model)
    for start in range(0, len(x), batch):
        inputs = prepare(x[start : start + batch])
        deterministic.append(torch.softmax(model(inputs).float(), -1).cpu())
        if stochastic:
            samples.append(ddc.mc_predict(model, inputs, t_max, return_samples=True).cpu())
    return torch.cat(deterministic), (torch.cat(samples, 1) if samples else None)


def _evaluate_model(
    model: nn.Module,
    data: PreparedData,
    experiment: Experiment,
    ood_x: Tensor | None,
    t_values: Sequence[int],
    batch: int,
) -> dict[str, Any]:
    x, y = data.test
    prepare = lambda chunk: _inputs(chunk, data, experiment)  # noqa: E731
    det, samples = _predict(model, x, prepare, max(t_values), batch)
    labels = y.cpu()
    out: dict[str, Any] = {
        "n_test": len(labels),
        "deterministic": classification_metrics(det, labels),
    }
    out["reliability"] = {"deterministic": reliability_bins(det, labels)}
    if samples is not None:
        out["mc"] = {str(t): classification_metrics(samples[:t].mean(0), labels) for t in t_values}
        out["reliability"]["mc"] = reliability_bins(samples.mean(0), labels)
    if ood_x is not None:
        ood_det, ood_samples = _predict(model, ood_x, prepare, max(t_values), batch)
        out["n_ood"] = len(ood_x)
        scores = {"deterministic/entropy": (predictive_entropy(det), predictive_entropy(ood_det))}
        if samples is not None and ood_samples is not None:
            scores["mc/entropy"] = (
                predictive_entropy(samples.mean(0)),
                predictive_entropy(ood_samples.mean(0)),
            )
            scores["mc/mutual_information"] = (
                mutual_information(samples),
                mutual_information(ood_samples),
            )
        out["ood"] = {k: ood_detection(a, b) for k, (a, b) in scores.items()}
        edges = np.linspace(0.0, math.log(det.shape[1]), 31)
        out["entropy_hist"] = {
            k.split("/")[0]: {
                "edges": edges.tolist(),
                "in": np.histogram(a.numpy(), edges)[0].tolist(),
                "out": np.histogram(b.numpy(), edges)[0].tolist(),
            }
            for k, (a, b) in scores.items()
            if k.endswith("entropy")
        }
    return out


def evaluate_run(
    run_dir: str | Path,
    *,
    t_values: Sequence[int] = T_VALUES,
    ood: bool = True,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    batch_size: int = 2000,
    examples: int | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Evaluate every trained model of ``run_dir``; returns the path of ``uncertainty.md``.

    ``examples`` evaluates on the first N test examples (and N out-of-distribution ones) only:
    ``T`` passes cost ``T`` forwards per example, so a CPU may need a smaller set.

    Raises:
        UncertaintyError: ``t_values`` not all ``>= 1``, not a run directory, no trained model,
            or no out-of-distribution pair for the data set (pass ``ood=False``).
        DatasetError: the in- or out-of-distribution data are missing (with how to get them).
    """
    t_values = sorted(set(t_values))
    bad = [t for t in t_values if not isinstance(t, int) or t < 1]
    if not t_values or bad:
        raise UncertaintyError(f"T must be whole numbers >= 1, got {list(t_values)}")
    if examples is not None and (not isinstance(examples, int) or examples < 1):
        raise UncertaintyError(
            f"examples must be a whole number >= 1 (or None for all), got {examples!r}"
        )
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    if "settings" not in config:
        raise UncertaintyError(f"{run_dir} is not a run directory of ddc compare (no config.json)")
    experiment = Experiment(**config["settings"])
    runs = [(m, s, f) for m, s, f in _seed_dirs(run_dir) if (f / "checkpoint.pt").exists()]
    if not runs:
        raise UncertaintyError(
            f"no trained model in {run_dir}: runs/<method>/seed<k>/checkpoint.pt is missing; "
            "train first with `ddc compare --out RUN_DIR`"
        )
    subset = config.get("subset")  # a run trained on a subset is evaluated on as many
    limit = min((n for n in (subset, examples) if n), default=None)  # OOD images to use
    ood_x = None
    if ood:
        if experiment.dataset not in OOD_PAIRS:
            raise UncertaintyError(
                f"no out-of-distribution data set is paired with {experiment.dataset!r} "
                f"(pairs: {OOD_PAIRS}); pass --no-ood"
            )
        ood_x = load_dataset(OOD_PAIRS[experiment.dataset], data_dir).test.x[:limit].to(device)
    settings = {"t_values": list(t_values), "ood": ood, "n_bins": N_BINS}
    if examples is not None:
        settings["examples"] = examples
    datasets: dict[int, PreparedData] = {}
    per_run: list[dict[str, Any]] = []
    for method, seed, folder in runs:
        cached = folder / "uncertainty.json"
        # The cache belongs to one checkpoint: a resumed or retrained run has another one.
        fingerprint = file_sha256(folder / "checkpoint.pt")
        if cached.exists():
            previous = read_json_object(cached)
            if previous.get("settings") == settings and previous.get("checkpoint_sha256") == (
                fingerprint
            ):
                per_run.append(previous)
                continue
        if seed not in datasets:
            datasets[seed] = prepare_data(
                experiment, seed=seed, data_dir=data_dir, subset=subset, device=device
            )
        state = load_checkpoint(folder / "checkpoint.pt", map_location=device)
        trained = trained_experiment(state, experiment)
        model = build(RunSpec(trained, method, seed, device), datasets[seed])
        model.load_state_dict(state["model"])
        torch.manual_seed(seed)  # reproducible masks
        data = datasets[seed]
        if examples is not None:
            data = replace(data, test=(data.test[0][:examples], data.test[1][:examples]))
        result = _evaluate_model(model, data, experiment, ood_x, t_values, batch_size)
        record = {
            "method": method,
            "seed": seed,
            "epochs_trained": len(state.get("rows", [])),
            "epochs_total": experiment.epochs,
            "checkpoint_sha256": fingerprint,
            "settings": settings,
            **result,
        }
        atomic_write_json(cached, _json_safe(record))
        per_run.append(record)
        mc = result.get("mc", {}).get(str(max(t_values)))
        log(
            f"{method:>12} seed {seed}: det NLL {result['deterministic']['nll']:.4f} "
            f"ECE {result['deterministic']['ece']:.4f}"
            + (f"; MC(T={max(t_values)}) NLL {mc['nll']:.4f} ECE {mc['ece']:.4f}" if mc else "")
        )
    atomic_write_json(
        run_dir / "uncertainty.json",
        _json_safe({"experiment": experiment.name, "settings": settings, "runs": per_run}),
    )
    return render_uncertainty(run_dir)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

_METRICS = ("accuracy", "nll", "brier", "ece")
_LOWER_IS_BETTER = {"accuracy": False, "nll": True, "brier": True, "ece": True}


def _fmt(values: Sequence[float], scale: float = 1.0, digits: int = 4) -> str:
    mean, std = _mean_std([v * scale for v in values])
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def _variants(run: dict[str, Any], t_max: int) -> dict[str, dict[str, float]]:
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
    colour and marker (:func:`.report.method_style`), all seeds pooled or averaged."""
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
    made.append(_save(fig, run_dir / "plots" / "uncertainty_reliability.png"))
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
                *(
                    Line2D(
                        [],
                        [],
                        color=method_style(m)[0],
                        marker=method_style(m)[1],
                        ms=4,
                        label=f"{m} ({len(rs)} seeds)",
                    )
                    for m, rs in stochastic.items()
                ),
                Line2D([], [], color="black", ls="--", lw=0.9, label="deterministic prediction"),
            ],
        )
        figure_title(
            fig,
            f"{experiment}: Monte Carlo prediction against the number of "
            "passes T\nmean over seeds; dashed: the same model, deterministic",
        )
        made.append(_save(fig, run_dir / "plots" / "uncertainty_vs_T.png"))
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
        made.append(_save(fig, run_dir / "plots" / "uncertainty_entropy.png"))
    return made
