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

The metrics are those of :mod:`.uncertainty_metrics`, the tables and plots those of
:mod:`.uncertainty_render`; both are re-exported here.

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
from .rundir import json_safe, load_config, seed_dirs
from .storage import atomic_write_json, file_sha256, load_checkpoint, read_json_object
from .training import PreparedData, RunSpec, build, model_inputs, prepare_data, trained_experiment
from .uncertainty_metrics import (
    N_BINS,
    OOD_PAIRS,
    T_VALUES,
    classification_metrics,
    is_stochastic,
    mutual_information,
    ood_detection,
    predictive_entropy,
    reliability_bins,
)
from .uncertainty_render import render_uncertainty

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


class UncertaintyError(ValueError):
    """A run directory or option that the uncertainty pass cannot use."""


@torch.no_grad()
def _predict(
    model: nn.Module, x: Tensor, prepare: Callable[[Tensor], Tensor], t_max: int, batch: int
) -> tuple[Tensor, Tensor | None]:
    """Deterministic ``(N, C)`` probabilities and, for a stochastic model, ``(T, N, C)``
    samples; chunks of ``batch`` examples, all ``T`` passes of a chunk in one call."""
    model.eval()
    deterministic, samples = [], []
    stochastic = is_stochastic(model)
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
    prepare = lambda chunk: model_inputs(chunk, data, experiment)  # noqa: E731
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
    runs = [(m, s, f) for m, s, f in seed_dirs(run_dir) if (f / "checkpoint.pt").exists()]
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
        atomic_write_json(cached, json_safe(record))
        per_run.append(record)
        mc = result.get("mc", {}).get(str(max(t_values)))
        log(
            f"{method:>12} seed {seed}: det NLL {result['deterministic']['nll']:.4f} "
            f"ECE {result['deterministic']['ece']:.4f}"
            + (f"; MC(T={max(t_values)}) NLL {mc['nll']:.4f} ECE {mc['ece']:.4f}" if mc else "")
        )
    atomic_write_json(
        run_dir / "uncertainty.json",
        json_safe({"experiment": experiment.name, "settings": settings, "runs": per_run}),
    )
    return render_uncertainty(run_dir)
