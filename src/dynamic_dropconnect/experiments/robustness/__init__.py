"""Robustness of trained runs: corruptions, adversarial inputs and edge removal.

``ddc robustness RUN_DIR`` evaluates every trained model of a run directory (``ddc compare``
output; the weights after the last epoch, ``checkpoint.pt``), on the first ``examples`` test
images, in three parts:

- ``corruptions`` (:mod:`.corruptions`): 12 MNIST-C-style corruptions x 5 severities, made
  deterministically from one seed in pixel space [0, 1] and then normalised as in training
  (``training._inputs``); the same corrupted images for every run. Reported: accuracy per
  corruption and severity, the mean corruption accuracy, and with a ``none`` method in the run
  the corruption error relative to it (ImageNet-C's mCE: ``CE_c = sum_s E_{s,c} / sum_s
  E_{s,c}^none``, and relative mCE with the clean error subtracted, ``none`` averaged over its
  seeds; 100 = as robust as ``none``, lower is better);
- ``adversarial`` (:mod:`.attacks`): FGSM and PGD-L∞ (20 steps of ε/8, random start) from
  torchattacks at ε in pixel space, on the deterministic network behind its normalisation;
- ``pruning`` (:mod:`.pruning`): a fraction ``f`` of the regularized layers' weights set to zero,
  at random (seeded) or smallest magnitude first, without retraining.

Sequence (token) experiments have no pixels: only ``pruning`` applies to them.

Results go to ``RUN_DIR/runs/<method>/seed<k>/robustness.json`` (each part reused when present
with the same settings and the same checkpoint, by sha256), ``RUN_DIR/robustness.json``,
``robustness.md`` (with paired tests over seeds, :func:`..report.paired_comparison`) and
``plots/robustness_*.png``; ``ddc report`` re-renders the last three.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..config import Experiment
from ..io import (
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    load_checkpoint,
    read_json_object,
)
from ..report import _json_safe, _mean_std, _pyplot, _save, _seed_dirs, load_config
from ..report import paired_comparison as paired_comparison
from ..training import PreparedData, RunSpec, _inputs, build, prepare_data, trained_experiment
from ..uncertainty import _stochastic
from . import attacks, corruptions, pruning

__all__ = [
    "DEFAULT_EXAMPLES",
    "PARTS",
    "RobustnessError",
    "evaluate_run",
    "render_robustness",
]

PARTS: tuple[str, ...] = ("corruptions", "adversarial", "pruning")
IMAGE_PARTS: tuple[str, ...] = ("corruptions", "adversarial")
DEFAULT_EXAMPLES = 1000


class RobustnessError(ValueError):
    """A run directory or option that the robustness pass cannot use."""


def _unit(x: Tensor) -> Tensor:
    """Images as float in [0, 1] (uint8 / 255; float images are stored in [0, 1])."""
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def _accuracy(forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, batch: int) -> float:
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
    return lambda chunk: model(_inputs(chunk, data, experiment))


#: Bumped whenever a part's definition changes, so that cached results of the old one are
#: recomputed (the settings are the cache key, with the checkpoint's sha256).
_PART_VERSION = {"corruptions": 2, "adversarial": 1, "pruning": 1}


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
    prepare = lambda chunk: _inputs(chunk, data, experiment)  # noqa: E731
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
        if eot and _stochastic(model):  # a deterministic model's MC prediction is its own
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
    runs = [(m, s, f) for m, s, f in _seed_dirs(run_dir) if (f / "checkpoint.pt").exists()]
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
        record = read_json_object(cached)
        if record.get("checkpoint_sha256") != fingerprint or record.get("examples") != examples:
            record = {}  # another checkpoint (resumed, retrained) or other test images
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
                atomic_write_json(cached, _json_safe(record))
        per_run.append({**record, "parts": {p: record["parts"][p] for p in parts}})
        log(_summary_line(per_run[-1]))
    atomic_write_json(
        run_dir / "robustness.json",
        _json_safe(
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


def _summary_line(run: dict[str, Any]) -> str:
    parts = run["parts"]
    text = f"{run['method']:>12} seed {run['seed']}: clean {100 * run['clean_accuracy']:.2f}%"
    if "corruptions" in parts:
        text += f", corrupted {100 * _mean_corruption(run):.2f}%"
    if "adversarial" in parts:
        pgd = parts["adversarial"]["pgd"]
        text += ", PGD " + " ".join(f"ε={e} {100 * a:.1f}%" for e, a in pgd.items())
    if "pruning" in parts:
        mag = parts["pruning"]["magnitude"]
        text += ", magnitude-pruned " + " ".join(f"f={f} {100 * a:.1f}%" for f, a in mag.items())
    return text


# --------------------------------------------------------------------------------------------
# Derived metrics
# --------------------------------------------------------------------------------------------


def _mean_corruption(run: dict[str, Any]) -> float:
    acc = run["parts"]["corruptions"]["accuracy"]
    return float(np.mean([a for values in acc.values() for a in values]))


def _corruption_errors(run: dict[str, Any]) -> dict[str, float]:
    """``{corruption: sum over severities of the error}``."""
    return {
        c: float(sum(1 - a for a in v)) for c, v in run["parts"]["corruptions"]["accuracy"].items()
    }


def _mce(run: dict[str, Any], baseline: list[dict[str, Any]]) -> tuple[float, float]:
    """(mCE, relative mCE) in % against the mean of the ``baseline`` runs; NaN where a
    baseline error (or its excess over the clean error) is zero."""
    if not baseline:
        return math.nan, math.nan
    mine = _corruption_errors(run)
    base = {c: float(np.mean([_corruption_errors(b)[c] for b in baseline])) for c in mine}
    n_sev = len(next(iter(run["parts"]["corruptions"]["accuracy"].values())))
    clean = n_sev * (1 - run["clean_accuracy"])
    base_clean = n_sev * float(np.mean([1 - b["clean_accuracy"] for b in baseline]))
    ce = [mine[c] / base[c] if base[c] > 0 else math.nan for c in mine]
    rel = [
        (mine[c] - clean) / (base[c] - base_clean) if base[c] - base_clean > 1e-12 else math.nan
        for c in mine
    ]
    return 100 * float(np.mean(ce)), 100 * float(np.mean(rel))


def _metrics(run: dict[str, Any], baseline: list[dict[str, Any]]) -> dict[str, float]:
    """Flat ``{metric: value}`` of one run (accuracies in [0, 1], mCE in %)."""
    out = {"clean": run["clean_accuracy"]}
    parts = run["parts"]
    if "corruptions" in parts:
        out["corruption mean"] = _mean_corruption(run)
        for c, values in parts["corruptions"]["accuracy"].items():
            out[f"corruption {c}"] = float(np.mean(values))
        out["mCE"], out["relative mCE"] = _mce(run, baseline)
    if "adversarial" in parts:
        for name in attacks.ATTACKS:
            for eps, acc in parts["adversarial"].get(name, {}).items():
                out[f"{name.upper()} ε={eps}"] = acc
        if "pgd_eot" in parts["adversarial"]:
            out["MC clean"] = parts["adversarial"]["mc_clean"]
            for eps, acc in parts["adversarial"]["pgd_eot"].items():
                out[f"PGD-EOT MC ε={eps}"] = acc
    if "pruning" in parts:
        for how in pruning.HOW:
            for f, acc in parts["pruning"].get(how, {}).items():
                out[f"{how} f={f}"] = acc
    return out


_LOWER_IS_BETTER = ("mCE", "relative mCE")


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _fmt(values: Sequence[float], scale: float) -> str:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) != len(values) or not finite:
        return "—"
    mean, std = _mean_std([v * scale for v in finite])
    return f"{mean:.2f}" + ("" if math.isnan(std) else f" ± {std:.2f}")


def _scale(metric: str) -> float:
    return 1.0 if metric in _LOWER_IS_BETTER else 100.0


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
        m: [{**_metrics(r, baseline), "seed": r["seed"]} for r in rs] for m, rs in by_method.items()
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
        "lower is better; — without a `none` method).",
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
    rows = [f"| {first} | seeds | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for m in methods:
        cells = [_fmt([v[k] for v in metrics[m]], _scale(k)) for k in keys]
        rows.append(f"| {m} | {len(metrics[m])} | " + " | ".join(cells) + " |")
    return rows


def _transposed(keys: list[str], methods: list[str], metrics: dict) -> list[str]:
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
        "for accuracy, negative for mCE; higher/ties/lower: seeds where the reference's value is "
        "above, equal to, below the other's. t: paired t-test p; W: Wilcoxon signed-rank p "
        "(n >= 5).",
        "",
        f"| {reference} vs | metric | n | mean diff | higher/ties/lower | t p | W p |",
        "|---|---|---|---|---|---|---|",
    ]
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
            test = paired_comparison([v * _scale(k) for v in a], [v * _scale(k) for v in b])
            rows.append(
                f"| {other} | {k} | {test['n']} | {test['mean_diff']:+.2f} | "
                f"{test['wins']}/{test['ties']}/{test['losses']} | {_p(test['t_pvalue'])} | "
                f"{_p(test['wilcoxon_pvalue'])} |"
            )
    return rows


def _p(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _plots(run_dir: Path, by_method: dict[str, list[dict[str, Any]]], parts: list[str]) -> list:
    if not by_method:
        return []
    plt = _pyplot()
    made = []

    def mean_curve(rs: list[dict[str, Any]], get: Callable[[dict[str, Any]], list[float]]):
        return 100 * np.mean([get(r) for r in rs], axis=0)

    if "corruptions" in parts:
        names = list(corruptions.CORRUPTIONS)
        cols = 4
        fig, axes = plt.subplots(
            math.ceil(len(names) / cols),
            cols,
            figsize=(3.0 * cols, 2.4 * math.ceil(len(names) / cols)),
            squeeze=False,
            sharey=True,
        )
        for ax, name in zip(axes.flat, names, strict=False):
            for m, rs in by_method.items():
                curve = mean_curve(
                    rs,
                    lambda r, n=name: (
                        [r["clean_accuracy"]] + r["parts"]["corruptions"]["accuracy"][n]
                    ),
                )
                ax.plot([0, *corruptions.SEVERITIES], curve, marker="o", ms=3, label=m)
            ax.set(title=name, xlabel="severity", ylabel="accuracy %")
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        made.append(_save(fig, run_dir / "plots" / "robustness_corruptions.png"))
    if "adversarial" in parts:
        fig, axes = plt.subplots(1, len(attacks.ATTACKS), figsize=(4.2 * len(attacks.ATTACKS), 3.2))
        for ax, name in zip(np.atleast_1d(axes), attacks.ATTACKS, strict=True):
            for m, rs in by_method.items():
                eps = list(rs[0]["parts"]["adversarial"][name])
                curve = mean_curve(
                    rs,
                    lambda r, a=name, e=eps: (
                        [r["clean_accuracy"]] + [r["parts"]["adversarial"][a][k] for k in e]
                    ),
                )
                ax.plot([0.0, *map(float, eps)], curve, marker="o", ms=3, label=m)
                if name == "pgd" and all("pgd_eot" in r["parts"]["adversarial"] for r in rs):
                    eot = mean_curve(
                        rs,
                        lambda r, e=eps: (
                            [r["parts"]["adversarial"]["mc_clean"]]
                            + [r["parts"]["adversarial"]["pgd_eot"][k] for k in e]
                        ),
                    )
                    ax.plot([0.0, *map(float, eps)], eot, ls="--", marker="x", ms=3,
                            color=ax.lines[-1].get_color(), label=f"{m} MC, EOT")  # fmt: skip
            ax.set(title=name.upper(), xlabel="ε (pixel space)", ylabel="accuracy %")
        np.atleast_1d(axes)[-1].legend(fontsize=7)
        fig.tight_layout()
        made.append(_save(fig, run_dir / "plots" / "robustness_adversarial.png"))
    if "pruning" in parts:
        fig, axes = plt.subplots(1, len(pruning.HOW), figsize=(4.2 * len(pruning.HOW), 3.2))
        for ax, how in zip(np.atleast_1d(axes), pruning.HOW, strict=True):
            for m, rs in by_method.items():
                fs = list(rs[0]["parts"]["pruning"][how])
                curve = mean_curve(
                    rs,
                    lambda r, h=how, f=fs: (
                        [r["clean_accuracy"]] + [r["parts"]["pruning"][h][k] for k in f]
                    ),
                )
                ax.plot([0.0, *map(float, fs)], curve, marker="o", ms=3, label=m)
            ax.set(title=f"{how} edge removal", xlabel="fraction removed f", ylabel="accuracy %")
        np.atleast_1d(axes)[0].legend(fontsize=7)
        fig.tight_layout()
        made.append(_save(fig, run_dir / "plots" / "robustness_pruning.png"))
    return made
