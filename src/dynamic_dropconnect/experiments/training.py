"""Training one (experiment, method, seed): the authors' protocol, made honest and resumable.

Protocol: SGD with momentum, cross-entropy, Xavier-uniform init, the experiment's learning-rate
schedule set once per epoch (by default the authors' warmup-cosine with ``min_lr = 0.001``, see
:mod:`.schedules`; docs/suite.md). Honest parts: a seeded 90/10 train/validation split,
normalisation with training-split statistics only, test accuracy reported at the epoch of best
validation accuracy and at the final epoch (the max over epochs is kept, labelled optimistic).

Resumability: after every epoch the model, optimizer, random state, metrics and the experiment's
settings are written atomically to ``checkpoint.pt``; a killed run restarted with ``resume=True``
continues from the last finished epoch and ends with the same numbers. A checkpoint written under
other settings (another protocol) is refused, never silently continued; so is a corrupt one (its
sha256, written beside it, differs) or one holding more than tensors and plain data (it is loaded
with ``weights_only=True``). An epoch whose training loss is not finite fails the run. Data order
and augmentation come from a generator seeded by ``(seed, epoch)``, masks from the global RNG
(saved).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

import dynamic_dropconnect as ddc

from .config import Experiment
from .datasets.transforms import augment, normalize, resize
from .methods import apply_method, experiment_overrides
from .models import build_model, xavier_init
from .runrecords import (
    ProtocolMismatchError,
    append_learned_curves,
    check_protocol,
    read_mask_variance,
    trained_experiment,
    write_metrics,
)
from .runspec import PreparedData, RunSpec, compiled, prepare_data, uses_channels_last
from .storage import (
    atomic_torch_save,
    atomic_write_json,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "PreparedData",
    "ProtocolMismatchError",
    "RunSpec",
    "TrainingDivergedError",
    "build",
    "compiled",
    "evaluate",
    "model_inputs",
    "prepare_data",
    "read_mask_variance",
    "train_run",
    "trained_experiment",
    "uses_channels_last",
]


class TrainingDivergedError(RuntimeError):
    """The training loss of an epoch is not finite."""


def build(spec: RunSpec, data: PreparedData) -> nn.Module:
    """The experiment's model with Xavier init and the method applied, seeded by the run."""
    torch.manual_seed(spec.seed)
    model = build_model(
        spec.experiment.model,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        image_size=data.image_size,
        **({"vocab_size": data.vocab_size} if data.vocab_size is not None else {}),
        **spec.experiment.model_options,
    )
    xavier_init(model)
    # A control (ddc-shuffled, ...) also takes the experiment's options of its base method.
    options = {
        **experiment_overrides(spec.experiment.method_options, spec.method),
        **spec.method_options,
    }
    apply_method(model, spec.method, options)
    return model.to(spec.device)


def model_inputs(
    x: Tensor,
    data: PreparedData,
    experiment: Experiment,
    augment_with: torch.Generator | None = None,
) -> Tensor:
    """Normalised float inputs; augmented when a generator is given (training batches).
    Token ids (``data.vocab_size`` set) pass through unchanged. The evaluations of trained
    runs (uncertainty, robustness) feed their test images through it too."""
    if data.vocab_size is not None:
        return x
    out = normalize(x, data.mean, data.std)
    if augment_with is not None:
        out = augment(
            out,
            crop_padding=experiment.crop_padding,
            hflip=experiment.hflip,
            rotation_degrees=experiment.rotation,
            # A CPU generator cannot drive CUDA ops: there the global (saved) CUDA RNG is used.
            generator=augment_with if out.device.type == "cpu" else None,
        )
    if experiment.image_size is not None:
        out = resize(out, experiment.image_size)
    return out


_inputs = model_inputs  # the name training's own callers use


def _memory(x: Tensor, channels_last: bool) -> Tensor:
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _batches(
    data: PreparedData,
    experiment: Experiment,
    generator: torch.Generator,
    rank: int,
    world: int,
    channels_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    x, y = data.train
    order = torch.randperm(len(x), generator=generator).to(x.device)
    for idx in order.split(experiment.batch_size):
        idx = idx[rank::world]  # DDP: each rank takes its share of the global batch
        if len(idx) > 0:
            batch = _inputs(x[idx], data, experiment, augment_with=generator)
            yield _memory(batch, channels_last), y[idx]


_EVAL_BATCH = 128


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: tuple[Tensor, Tensor],
    data: PreparedData,
    experiment: Experiment,
    *,
    channels_last: bool = False,
) -> tuple[float, float]:
    """``(mean loss, accuracy)`` in eval mode."""
    model.eval()
    x, y = split
    loss_sum = x.new_zeros((), dtype=torch.float64)
    correct = x.new_zeros((), dtype=torch.int64)
    # 128 per batch: measured faster on CPU than 512 or 2048 (benchmarks/step_speed.py).
    for start in range(0, len(x), _EVAL_BATCH):
        batch = _inputs(x[start : start + _EVAL_BATCH], data, experiment)
        logits = model(_memory(batch, channels_last))
        target = y[start : start + _EVAL_BATCH]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(1) == target).sum()
    return float(loss_sum) / max(len(x), 1), float(correct) / max(len(x), 1)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _progress(iterable: Any, total: int, desc: str, enabled: bool) -> Any:
    if not enabled or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False)


def _result(spec: RunSpec, rows: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    best = max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))  # first epoch of best val
    return {
        "experiment": spec.experiment.name,
        "method": spec.method,
        "seed": spec.seed,
        "epochs": len(rows),
        "best_val_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "test_acc_at_best_val": best["test_acc"],
        "final_test_acc": rows[-1]["test_acc"],
        "max_test_acc": max(r["test_acc"] for r in rows),
        "train_seconds": sum(r["seconds"] for r in rows),
        "complete": complete,
        "compile": spec.compile,
        "settings": spec.experiment.to_dict(),
    }


@dataclass
class _Run:
    """A run in progress: what its epochs update (built by :func:`_setup`)."""

    model: nn.Module  # the plain model: evaluated, checkpointed
    net: nn.Module  # what trains: the model, or its DDP / torch.compile wrapper
    optimizer: torch.optim.Optimizer
    layers: dict[str, Any]  # name -> regularizer, for the drop statistics of metrics.csv
    rows: list[dict[str, Any]]  # metrics of the finished epochs
    channels_last: bool
    rank: int
    world: int
    warmup: float | None = None  # seconds of the first (compiling) step of this process


def _finished(result_path: Path, experiment: Experiment) -> dict[str, Any] | None:
    """The result of a complete run at ``result_path`` (its protocol checked), else None."""
    if not result_path.exists():
        return None
    done = json.loads(result_path.read_text())
    if not done.get("complete"):
        return None
    check_protocol(result_path, done.get("settings"), experiment)
    return done


def _optimizer(model: nn.Module, experiment: Experiment) -> torch.optim.Optimizer:
    """AdamW or SGD with momentum, as the experiment asks."""
    if experiment.optimizer == "adam":
        return torch.optim.AdamW(
            model.parameters(), lr=experiment.lr, weight_decay=experiment.weight_decay
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=experiment.lr,
        momentum=experiment.momentum,
        weight_decay=experiment.weight_decay,
    )


def _load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, spec: RunSpec
) -> list[dict[str, Any]]:
    """Restore model, optimizer and random state from ``path``; the finished epochs' rows."""
    state = load_checkpoint(path, map_location=spec.device)
    check_protocol(path, state.get("experiment"), spec.experiment)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    if torch.cuda.is_available() and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["rows"]


def _setup(spec: RunSpec, data: PreparedData, checkpoint: Path | None) -> _Run:
    """Build the model and optimizer, continue from ``checkpoint`` when it exists, and wrap
    the model for training (DDP under ``torch.distributed``, ``torch.compile``)."""
    rank, world = _world()
    model = build(spec, data)
    channels_last = uses_channels_last(spec, model, data)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # in place: parameters stay
    optimizer = _optimizer(model, spec.experiment)
    rows: list[dict[str, Any]] = []
    if checkpoint is not None and checkpoint.exists():
        rows = _load_checkpoint(checkpoint, model, optimizer, spec)
    net: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    if spec.compile:  # once per run; evaluation stays eager (its batches differ in size)
        net = compiled(net)
    layers = ddc.regularized_layers(model)
    for reg in layers.values():  # mask_var/<layer> in metrics.csv (one dot product a step)
        reg.track_mask_var = True
    return _Run(model, net, optimizer, layers, rows, channels_last, rank, world)


def _train_epoch(
    run: _Run, spec: RunSpec, data: PreparedData, epoch: int, out: Path, progress: bool
) -> dict[str, Any]:
    """One epoch of training at the schedule's learning rate: its row of metrics.csv without
    the evaluation (``lr``, ``train_loss``, ``train_acc``, per-layer drop statistics)."""
    experiment = spec.experiment
    for group in run.optimizer.param_groups:
        group["lr"] = experiment.learning_rates()[epoch]
    generator = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
    run.net.train()
    loss_sum = torch.zeros((), device=spec.device, dtype=torch.float64)
    correct = torch.zeros((), device=spec.device, dtype=torch.int64)
    seen, steps = 0, 0
    kept = {name: torch.zeros((), device=spec.device) for name in run.layers}
    mean_prob = {name: torch.zeros((), device=spec.device) for name in run.layers}
    mask_var = {name: torch.zeros((), device=spec.device) for name in run.layers}
    n_batches = math.ceil(len(data.train[0]) / experiment.batch_size)
    for x, y in _progress(
        _batches(data, experiment, generator, run.rank, run.world, run.channels_last),
        n_batches,
        f"{spec.method} s{spec.seed} e{epoch + 1}",
        progress and run.rank == 0,
    ):
        step_started = time.perf_counter() if run.warmup is None and spec.compile else 0.0
        run.optimizer.zero_grad(set_to_none=True)
        logits = run.net(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        run.optimizer.step()
        if step_started:
            run.warmup = time.perf_counter() - step_started
            if run.rank == 0:
                print(f"{out}: torch.compile warm-up (first step) {run.warmup:.1f} s", flush=True)
        # Accumulate on the device: no host synchronisation inside the step.
        loss_sum += loss.detach().double() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen, steps = seen + len(y), steps + 1
        for name, reg in run.layers.items():
            kept[name] += reg.last_kept_fraction
            mean_prob[name] += reg.last_mean_drop_prob
            mask_var[name] += reg.last_mask_var
    row: dict[str, Any] = {
        "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": float(loss_sum) / max(seen, 1),
        "train_acc": float(correct) / max(seen, 1),
    }
    for name in run.layers:
        row[f"drop_rate/{name}"] = 1.0 - float(kept[name]) / max(steps, 1)
        row[f"mean_drop_prob/{name}"] = float(mean_prob[name]) / max(steps, 1)
        # mean over the epoch's steps of mean(p_ij(1-p_ij)): see variance_matched_rate
        row[f"mask_var/{name}"] = float(mask_var[name]) / max(steps, 1)
    return row


def _epoch_row(
    run: _Run, spec: RunSpec, data: PreparedData, epoch: int, trained: dict[str, Any]
) -> dict[str, Any]:
    """The epoch's row of metrics.csv: ``trained`` with the validation and test numbers, in
    the file's column order."""
    val_loss, val_acc = evaluate(
        run.model, data.val, data, spec.experiment, channels_last=run.channels_last
    )
    test_loss, test_acc = evaluate(
        run.model, data.test, data, spec.experiment, channels_last=run.channels_last
    )
    statistics = {k: v for k, v in trained.items() if "/" in k}
    return {
        "epoch": epoch + 1,
        "lr": trained["lr"],
        "train_loss": trained["train_loss"],
        "train_acc": trained["train_acc"],
        "val_loss": val_loss,
        "val_acc": val_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "seconds": 0.0,  # set by the caller, once the epoch is over
        **statistics,
    }


def _check_finite(row: dict[str, Any], spec: RunSpec, out: Path) -> None:
    """:class:`TrainingDivergedError` for an epoch whose training loss is not finite."""
    if not math.isfinite(row["train_loss"]):
        # Diverged (or corrupt weights): a failed run, never a complete one. Nothing of this
        # epoch is written, so the last good checkpoint stays.
        raise TrainingDivergedError(
            f"{out}: training loss is {row['train_loss']} in epoch {row['epoch']} of "
            f"{spec.method} seed {spec.seed} (lr {row['lr']:g}); the run failed and is not "
            "reported. A lower --lr may help"
        )


def _save_epoch(run: _Run, experiment: Experiment, out: Path) -> None:
    """Write what a finished epoch leaves: metrics.csv, the learned curves, the checkpoint."""
    write_metrics(out / "metrics.csv", run.rows)
    append_learned_curves(out / "learned_curves.json", len(run.rows), run.model)
    save_checkpoint(
        out / "checkpoint.pt",
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "experiment": experiment.to_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "rows": run.rows,
        },
    )


def _finish(run: _Run, spec: RunSpec, out: Path) -> dict[str, Any]:
    """The run's result; rank 0 writes it (and a complete run's drop probabilities)."""
    complete = len(run.rows) == spec.experiment.epochs
    result = _result(spec, run.rows, complete)
    result["channels_last"] = run.channels_last
    if run.warmup is not None:
        result["compile_warmup_seconds"] = round(run.warmup, 1)
    if run.rank == 0:
        if run.layers and complete:
            probs = ddc.drop_probabilities(run.model)
            atomic_torch_save(
                out / "drop_probs.pt", {k: v.flatten().cpu() for k, v in probs.items()}
            )
        atomic_write_json(out / "result.json", result)
    return result


def train_run(
    spec: RunSpec,
    out_dir: str | Path,
    data: PreparedData,
    *,
    resume: bool = True,
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train ``spec`` into ``out_dir`` (metrics.csv, result.json, checkpoint.pt, drop_probs.pt).

    With ``resume`` a finished run is returned as is and an unfinished one continues from its
    checkpoint. ``stop_after_epoch`` ends early (for tests of interruption). Under
    ``torch.distributed`` the model is wrapped in DDP, every rank trains on its share of each
    batch and rank 0 alone writes files.
    """
    out = Path(out_dir)
    if resume and (done := _finished(out / "result.json", spec.experiment)) is not None:
        return done
    run = _setup(spec, data, out / "checkpoint.pt" if resume else None)
    for epoch in range(len(run.rows), spec.experiment.epochs):
        started = time.perf_counter()
        trained = _train_epoch(run, spec, data, epoch, out, progress)
        row = _epoch_row(run, spec, data, epoch, trained)
        row["seconds"] = time.perf_counter() - started
        _check_finite(row, spec, out)
        run.rows.append(row)
        if run.rank == 0:
            _save_epoch(run, spec.experiment, out)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    return _finish(run, spec, out)
