"""Robustness of trained runs: corruptions, adversarial inputs and edge removal.

``ddc robustness RUN_DIR`` evaluates every trained model of a run directory (``ddc compare``
output; the weights after the last epoch, ``checkpoint.pt``), on the first ``examples`` test
images, in three parts:

- ``corruptions`` (:mod:`.corruptions`): 12 MNIST-C-style corruptions x 5 severities, made
  deterministically from one seed in pixel space [0, 1] and then normalised as in training
  (``training.model_inputs``); the same corrupted images for every run. Reported: accuracy per
  corruption and severity, the mean corruption accuracy, and with a ``none`` method in the run
  the corruption error relative to it (ImageNet-C's mCE: ``CE_c = sum_s E_{s,c} / sum_s
  E_{s,c}^none``, and relative mCE with the clean error subtracted, over the corruptions that
  cost ``none`` at least 1 point (:func:`.metrics.mce`); ``none`` averaged over its seeds;
  100 = as robust as ``none``, lower is better);
- ``adversarial`` (:mod:`.attacks`): FGSM and PGD-L∞ (20 steps of ε/8, random start) from
  torchattacks at ε in pixel space, on the deterministic network behind its normalisation;
- ``pruning`` (:mod:`.pruning`): a fraction ``f`` of the regularized layers' weights set to zero,
  at random (seeded) or smallest magnitude first, without retraining.

Sequence (token) experiments have no pixels: only ``pruning`` applies to them.

Results go to ``RUN_DIR/runs/<method>/seed<k>/robustness.json`` (each part reused when present
with the same settings, test examples and checkpoint, by sha256; records for other example
counts are kept beside), ``RUN_DIR/robustness.json``,
``robustness.md`` (with paired tests over seeds, :func:`..stats.paired_comparison`) and
``plots/robustness_*.png``; ``ddc report`` re-renders the last three (:mod:`.render`, from the
derived numbers of :mod:`.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import Experiment
from ..rundir import json_safe, load_config, seed_dirs
from ..stats import paired_comparison as paired_comparison
from ..storage import atomic_write_json, file_sha256, load_checkpoint, read_json_object
from ..training import PreparedData, RunSpec, build, model_inputs, prepare_data, trained_experiment
from ..uncertainty_metrics import is_stochastic
from . import attacks, corruptions, pruning
from .metrics import PARTS, mean_corruption
from .render import render_robustness

__all__ = [
    "DEFAULT_EXAMPLES",
    "PARTS",
    "RobustnessError",
    "evaluate_run",
    "render_robustness",
]


IMAGE_PARTS: tuple[str, ...] = ("corruptions", "adversarial")


DEFAULT_EXAMPLES = 1000


class RobustnessError(ValueError):
    """A run directory or option that the robustness pass cannot use."""


def _unit(x: Tensor) -> Tensor:
    """Images as float in [0, 1] (uint8 / 255; float images are stored in [0, 1])."""
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def _accuracy(forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, batch: int) -> float:
    """Fraction of ``x`` that ``forward`` classifies as ``y``, in chunks of ``batch``."""
    correct = 0
    for start in range(0, len(x), batch):
        correct += int(
            (forward(x[start : start + batch]).argmax(-1) == y[start : start + batch]).sum()
        )
    return correct / max(len(x), 1)


def _forward(
    model: nn.Module, data: PreparedData, experiment: Experiment
) -> Callable[[Tensor], Tensor]:
    """Logits of raw test images (uint8, or floats in [0, 1]) through the experiment's
    normalisation, in eval mode."""
    model.eval()
    return lambda chunk: model(model_inputs(chunk, data, experiment))


#: Bumped whenever a part's definition changes, so that cached results of the old one are
#: recomputed (the settings are the cache key, with the checkpoint's sha256).
_PART_VERSION = {"corruptions": 3, "adversarial": 1, "pruning": 1}


def _part_settings(part: str, seed: int, eot: int = 0, mc_samples: int = 0) -> dict[str, Any]:
    if part == "corruptions":
        return {
            "version": _PART_VERSION[part],
            "names": list(corruptions.CORRUPTIONS),
            "severities": list(corruptions.SEVERITIES),
            "seed": seed,
        }
    if part == "adversarial":
        return {
            "version": _PART_VERSION[part],
            "attacks": list(attacks.ATTACKS),
            "epsilons": list(attacks.EPSILONS),
            "pgd_steps": attacks.PGD_STEPS,
            "pgd_alpha": "eps/8",
            "seed": seed,
            **({"eot": eot, "mc_samples": mc_samples} if eot else {}),
        }
    return {
        "version": _PART_VERSION[part],
        "fractions": list(pruning.FRACTIONS),
        "how": list(pruning.HOW),
        "seed": seed,
    }


def _evaluate_part(
    part: str,
    model: nn.Module,
    data: PreparedData,
    experiment: Experiment,
    seed: int,
    batch: int,
    device: str,
    eot: int = 0,
    mc_samples: int = 0,
) -> dict[str, Any]:
    x, y = data.test
    y = y.to(device)
    prepare = lambda chunk: model_inputs(chunk, data, experiment)  # noqa: E731
    model.eval()
    if part == "corruptions":
        pixels = _unit(x.cpu())
        acc = {
            name: [
                _accuracy(
                    lambda c: model(prepare(c.to(device))),
                    corruptions.corrupt(pixels, name, s, seed),
                    y,
                    batch,
                )
                for s in corruptions.SEVERITIES
            ]
            for name in corruptions.CORRUPTIONS
        }
        return {"accuracy": acc}
    if part == "adversarial":
        wrapped = attacks.PixelModel(model, prepare)
        pixels = _unit(x).to(device)
        result = attacks.adversarial_accuracy(wrapped, pixels, y, batch=batch, seed=seed)
        if eot and is_stochastic(model):  # a deterministic model's MC prediction is its own
            result.update(
                attacks.mc_adversarial_accuracy(
                    wrapped, pixels, y, eot=eot, samples=mc_samples, batch=batch, seed=seed
                )
            )
        return result
    plain = pruning.plain_model(model)
    forward = lambda m: lambda c: m(prepare(c))  # noqa: E731
    result: dict[str, Any] = pruning.pruning_accuracy(
        plain, lambda m: _accuracy(forward(m), x, y, batch), seed=seed
    )
    result["layers"] = {k: list(v.shape) for k, v in pruning.target_weights(plain).items()}
    return result


def evaluate_run(
    run_dir: str | Path,
    *,
    parts: Sequence[str] = PARTS,
    examples: int | None = DEFAULT_EXAMPLES,
    seed: int = 0,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    batch_size: int = 500,
    eot: int = 0,
    mc_samples: int = 30,
    log: Callable[[str], None] = print,
) -> Path:
    """Evaluate every trained model of ``run_dir``; returns the path of ``robustness.md``.

    ``seed`` drives the corruptions (the same images for every run), PGD's random start and
    random pruning. ``examples``: the first N test examples (None: all). ``eot >= 1`` also
    attacks the MC-averaged network of each stochastic run (PGD with ``eot`` mask draws per
    step, scored by ``mc_samples`` passes; see :mod:`.attacks`): ``eot`` times PGD's cost.

    Raises:
        RobustnessError: an unknown or repeated part, ``examples < 1``, not a run directory,
            no trained model, an image part asked of a sequence (token) experiment, or kornia
            (corruptions) / torchattacks (adversarial) missing (the message says how to install).
        DatasetError: the data are missing (with how to get them).
    """
    parts = list(parts)
    unknown = [p for p in parts if p not in PARTS]
    if not parts or unknown or len(set(parts)) != len(parts):
        raise RobustnessError(
            f"parts must be one or more distinct of {', '.join(PARTS)}, got {','.join(parts)}"
        )
    if examples is not None and (not isinstance(examples, int) or examples < 1):
        raise RobustnessError(
            f"examples must be a whole number >= 1 (or None for all), got {examples!r}"
        )
    if not isinstance(eot, int) or eot < 0 or not isinstance(mc_samples, int) or mc_samples < 1:
        raise RobustnessError(
            f"eot must be a whole number >= 0 and mc_samples >= 1, got {eot!r}, {mc_samples!r}"
        )
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    if "settings" not in config:
        raise RobustnessError(f"{run_dir} is not a run directory of ddc compare (no config.json)")
    experiment = Experiment(**config["settings"])
    runs = [(m, s, f) for m, s, f in seed_dirs(run_dir) if (f / "checkpoint.pt").exists()]
    if not runs:
        raise RobustnessError(
            f"no trained model in {run_dir}: runs/<method>/seed<k>/checkpoint.pt is missing; "
            "train first with `ddc compare --out RUN_DIR`"
        )
    try:  # before anything is computed: say what to install
        if "corruptions" in parts:
            corruptions.require_kornia()
        if "adversarial" in parts:
            attacks.require()
    except ImportError as err:
        raise RobustnessError(f"{err}; or leave that part out with --parts") from err
    subset = config.get("subset")
    datasets: dict[int, PreparedData] = {}
    per_run: list[dict[str, Any]] = []
    for method, run_seed, folder in runs:
        if run_seed not in datasets:
            data = prepare_data(
                experiment, seed=run_seed, data_dir=data_dir, subset=subset, device=device
            )
            if data.vocab_size is not None and set(parts) & set(IMAGE_PARTS):
                raise RobustnessError(
                    f"{experiment.name} is a sequence experiment (token inputs): corruptions "
                    "and pixel-space attacks do not apply; edge removal does: --parts pruning"
                )
            if examples is not None:
                data.test = (data.test[0][:examples], data.test[1][:examples])
            datasets[run_seed] = data
        data = datasets[run_seed]
        cached = folder / "robustness.json"
        fingerprint = file_sha256(folder / "checkpoint.pt")
        records = _read_cache(cached, fingerprint)
        record = records.setdefault(_examples_key(examples), {})
        record.setdefault("parts", {})
        todo = [
            p
            for p in parts
            if record["parts"].get(p, {}).get("settings")
            != _part_settings(p, seed, eot, mc_samples)
        ]
        if todo:
            state = load_checkpoint(folder / "checkpoint.pt", map_location=device)
            trained = trained_experiment(state, experiment)
            model = build(RunSpec(trained, method, run_seed, device), data)
            model.load_state_dict(state["model"])
            x, y = data.test
            clean = _accuracy(_forward(model, data, experiment), x, y.to(device), batch_size)
            record.update(
                {
                    "method": method,
                    "seed": run_seed,
                    "epochs_trained": len(state.get("rows", [])),
                    "epochs_total": experiment.epochs,
                    "checkpoint_sha256": fingerprint,
                    "examples": examples,
                    "n_test": len(y),
                    "clean_accuracy": clean,
                }
            )
            for part in todo:
                result = _evaluate_part(
                    part, model, data, experiment, seed, batch_size, device, eot, mc_samples
                )
                settings = _part_settings(part, seed, eot, mc_samples)
                record["parts"][part] = {"settings": settings, **result}
                _write_cache(cached, records, examples)
        per_run.append({**record, "parts": {p: record["parts"][p] for p in parts}})
        log(_summary_line(per_run[-1]))
    atomic_write_json(
        run_dir / "robustness.json",
        json_safe(
            {
                "experiment": experiment.name,
                "settings": {
                    "parts": parts,
                    "examples": examples,
                    "seed": seed,
                    **({"eot": eot, "mc_samples": mc_samples} if eot else {}),
                },
                "runs": per_run,
            }
        ),
    )
    return render_robustness(run_dir)


def _examples_key(examples: int | None) -> str:
    return "all" if examples is None else str(examples)


def _read_cache(path: Path, fingerprint: str) -> dict[str, dict[str, Any]]:
    """One run's cached records by example count, those of this checkpoint only.

    The file holds the record of the last count asked for, and the others under
    ``other_examples``: asking for another count (say, a cheap EOT pass on 100 images) keeps
    what the first count cost, instead of overwriting it.
    """
    stored = read_json_object(path)
    others: dict[str, dict[str, Any]] = stored.pop("other_examples", {})
    records = {_examples_key(r.get("examples")): r for r in [*others.values(), stored] if r}
    # another checkpoint (resumed, retrained) invalidates every count
    return {k: r for k, r in records.items() if r.get("checkpoint_sha256") == fingerprint}


def _write_cache(path: Path, records: dict[str, dict[str, Any]], examples: int | None) -> None:
    key = _examples_key(examples)
    others = {k: r for k, r in records.items() if k != key}
    extra = {"other_examples": others} if others else {}
    atomic_write_json(path, json_safe({**records[key], **extra}))


def _summary_line(run: dict[str, Any]) -> str:
    """One log line of a run's headline numbers."""
    parts = run["parts"]
    text = f"{run['method']:>12} seed {run['seed']}: clean {100 * run['clean_accuracy']:.2f}%"
    if "corruptions" in parts:
        text += f", corrupted {100 * mean_corruption(run):.2f}%"
    if "adversarial" in parts:
        pgd = parts["adversarial"]["pgd"]
        text += ", PGD " + " ".join(f"ε={e} {100 * a:.1f}%" for e, a in pgd.items())
    if "pruning" in parts:
        mag = parts["pruning"]["magnitude"]
        text += ", magnitude-pruned " + " ".join(f"f={f} {100 * a:.1f}%" for f, a in mag.items())
    return text
