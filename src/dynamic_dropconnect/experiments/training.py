"""Training one (experiment, method, seed): the authors' protocol, made honest and resumable.

Protocol: SGD with momentum, cross-entropy, Xavier-uniform init, the experiment's learning-rate
schedule set once per epoch (by default the authors' warmup-cosine with ``min_lr = 0.001``, see
:mod:`.schedules`; SPEC section 4). Honest parts: a seeded 90/10 train/validation split,
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

import csv
import io
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

import dynamic_dropconnect as ddc

from .config import Experiment
from .datasets import load_dataset, train_val_split
from .datasets.transforms import augment, channel_stats, normalize, resize
from .io import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from .methods import apply_method, experiment_overrides
from .models import build_model, xavier_init

__all__ = [
    "PreparedData",
    "ProtocolMismatchError",
    "RunSpec",
    "TrainingDivergedError",
    "model_inputs",
    "prepare_data",
    "read_mask_variance",
    "train_run",
]


@dataclass
class PreparedData:
    """Splits on the target device, raw (uint8 images), plus the training statistics."""

    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    mean: Tensor
    std: Tensor
    num_classes: int
    in_channels: int
    image_size: int
    source: str
    vocab_size: int | None = None  # token data: ids 0..vocab_size-1 (0 pads)


def prepare_data(
    experiment: Experiment,
    *,
    seed: int,
    data_dir: str | Path | None = None,
    subset: int | None = None,
    device: str | torch.device = "cpu",
) -> PreparedData:
    """Load, split (seeded) and measure the training split; ``subset`` caps every split."""
    bundle = load_dataset(experiment.dataset, data_dir)
    x, y = bundle.train.x, bundle.train.y
    if subset is not None:
        if subset < 10:
            raise ValueError(f"subset must be >= 10 examples, got {subset}")
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:subset]
        x, y = x[pick], y[pick]
    train_idx, val_idx = train_val_split(len(x), experiment.val_fraction, seed)
    # load_dataset admits integer inputs other than uint8 only from a dataset registered with
    # tokens=True (see datasets.check_bundle): such inputs are token ids, never pixels.
    tokens = not torch.is_floating_point(x) and x.dtype != torch.uint8
    if tokens:  # token ids are not normalised
        mean, std = torch.zeros(1), torch.ones(1)
    else:
        mean, std = channel_stats(x[train_idx])
    test_x, test_y = bundle.test.x, bundle.test.y
    if subset is not None:
        test_x, test_y = test_x[:subset], test_y[:subset]
    return PreparedData(
        train=(x[train_idx].to(device), y[train_idx].to(device)),
        val=(x[val_idx].to(device), y[val_idx].to(device)),
        test=(test_x.to(device), test_y.to(device)),
        mean=mean.to(device),
        std=std.to(device),
        num_classes=bundle.num_classes,
        in_channels=x.shape[1],
        image_size=experiment.image_size or x.shape[-1],
        source=bundle.source,
        vocab_size=int(max(x.max(), bundle.test.x.max())) + 1 if tokens else None,
    )


@dataclass
class RunSpec:
    """What to train. ``method_options`` override the method's defaults (sweeps)."""

    experiment: Experiment
    method: str
    seed: int
    device: str = "cpu"
    method_options: dict[str, Any] = field(default_factory=dict)
    compile: bool = False  # train through torch.compile (inductor), see compiled()
    # Convolutions in channels_last (NHWC) memory: None = where it pays, see uses_channels_last.
    channels_last: bool | None = None


class TrainingDivergedError(RuntimeError):
    """The training loss of an epoch is not finite."""


class ProtocolMismatchError(ValueError):
    """A checkpoint written under other experiment settings than the ones asked for."""


def _check_protocol(path: Path, saved: dict[str, Any] | None, experiment: Experiment) -> None:
    if saved is None:
        raise ProtocolMismatchError(
            f"{path} was written by an earlier version of the suite that did not record its "
            f"protocol (schedule {experiment.schedule!r} is asked for now); start a new run "
            "directory instead of --resume"
        )
    changed = experiment.differences(saved)
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ProtocolMismatchError(
            f"{path} was made with another protocol ({detail}); resume it with the same "
            "settings or start a new run directory"
        )


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


def uses_channels_last(spec: RunSpec, model: nn.Module, data: PreparedData) -> bool:
    """Whether ``spec``'s run keeps images and convolution weights in channels_last memory.

    Default (``spec.channels_last`` None): yes for an eager run of a model with 2-D convolutions
    on image inputs. Measured on SimpleCNN1 (``results/step-speed-cpu.txt``, 1 CPU thread, quiet
    machine): the training step 1.66x and evaluation 2.4-4.1x faster than contiguous NCHW, the
    same arithmetic up to float rounding; under ``torch.compile`` it was slower (1.11x against
    1.28x for compiled contiguous), so compiled runs stay contiguous.
    """
    if spec.channels_last is not None:
        return spec.channels_last
    images = data.vocab_size is None and data.train[0].dim() == 4
    convolutions = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return images and convolutions and not spec.compile


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


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _append_learned_curves(path: Path, epoch: int, model: nn.Module) -> None:
    """For ``ddc-learned``: what each layer's rate model maps gradient z-scores to, per epoch."""
    curves = ddc.learned_curves(model)
    if not curves:
        return
    history = json.loads(path.read_text()) if path.exists() else {}
    history = {k: v for k, v in history.items() if int(k) < epoch}  # a resumed epoch: redone
    history[str(epoch)] = curves
    atomic_write_json(path, history)


def read_mask_variance(
    metrics_csv: str | Path, *, first_epoch: int = 1, last_epoch: int | None = None
) -> dict[str, float]:
    """``{layer: mean mask variance}`` of a run: its ``mask_var/<layer>`` columns averaged over
    epochs ``first_epoch..last_epoch`` (all by default), for
    :func:`~dynamic_dropconnect.experiments.methods.variance_matched_options`.

    Epochs without the column (a run resumed from before it existed) are skipped; a layer with
    no value in the range, or a file with no such column at all, is an error.
    """
    path = Path(metrics_csv)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    layers = [c.removeprefix("mask_var/") for c in columns if c.startswith("mask_var/")]
    if not layers:
        raise ValueError(
            f"{path} has no mask_var/<layer> column (a run without regularized layers, or "
            "one trained before the column existed)"
        )
    high = math.inf if last_epoch is None else last_epoch
    chosen = [r for r in rows if first_epoch <= int(r["epoch"]) <= high]
    out: dict[str, float] = {}
    for layer in layers:
        cells = [r[f"mask_var/{layer}"] for r in chosen]
        values = [v for v in map(float, filter(None, cells)) if math.isfinite(v)]
        if not values:
            raise ValueError(
                f"{path}: no finite mask_var/{layer} in epochs {first_epoch}.."
                f"{'the last' if last_epoch is None else last_epoch}"
            )
        out[layer] = sum(values) / len(values)
    return out


def trained_experiment(state: dict[str, Any], default: Experiment) -> Experiment:
    """The experiment a checkpoint was trained under, as its ``"experiment"`` entry records it
    (a tuned run's lr and method options included); ``default`` where it records none.

    Models rebuilt for evaluation must use this, not the run directory's config: the rates of a
    tuned method live only in its own runs.
    """
    saved = state.get("experiment")
    if not isinstance(saved, dict):
        return default
    return Experiment.from_dict(saved)


def compiled(net: nn.Module) -> nn.Module:
    """``torch.compile(net)`` (inductor) drawing the masks eager PyTorch would draw.

    ``fallback_random``: inductor's own RNG would give other masks than eager for the same seed
    (measured: outputs 1.2-1.7 apart after a step, docs/integrations.md), so compiled and eager
    runs of one seed could not be compared mask for mask; with it they differ only by float
    rounding. It costs little: only the drop masks are random here.
    """
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    return torch.compile(net)  # type: ignore[return-value]


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
    result_path, checkpoint_path = out / "result.json", out / "checkpoint.pt"
    experiment = spec.experiment
    rank, world = _world()
    if resume and result_path.exists():
        done = json.loads(result_path.read_text())
        if done.get("complete"):
            _check_protocol(result_path, done.get("settings"), experiment)
            return done

    model = build(spec, data)
    channels_last = uses_channels_last(spec, model, data)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # in place: parameters stay
    if experiment.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(), lr=experiment.lr, weight_decay=experiment.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=experiment.lr,
            momentum=experiment.momentum,
            weight_decay=experiment.weight_decay,
        )
    learning_rates = experiment.learning_rates()
    rows: list[dict[str, Any]] = []
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, map_location=spec.device)
        _check_protocol(checkpoint_path, state.get("experiment"), experiment)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if torch.cuda.is_available() and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        rows = state["rows"]
    net: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    if spec.compile:  # once per run; evaluation stays eager (its batches differ in size)
        net = compiled(net)
    layers = ddc.regularized_layers(model)
    for reg in layers.values():  # mask_var/<layer> in metrics.csv (one dot product a step)
        reg.track_mask_var = True
    warmup: float | None = None  # seconds of the first (compiling) step of this process

    for epoch in range(len(rows), experiment.epochs):
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rates[epoch]
        generator = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
        net.train()
        loss_sum = torch.zeros((), device=spec.device, dtype=torch.float64)
        correct = torch.zeros((), device=spec.device, dtype=torch.int64)
        seen, steps = 0, 0
        kept = {name: torch.zeros((), device=spec.device) for name in layers}
        mean_prob = {name: torch.zeros((), device=spec.device) for name in layers}
        mask_var = {name: torch.zeros((), device=spec.device) for name in layers}
        n_batches = math.ceil(len(data.train[0]) / experiment.batch_size)
        for x, y in _progress(
            _batches(data, experiment, generator, rank, world, channels_last),
            n_batches,
            f"{spec.method} s{spec.seed} e{epoch + 1}",
            progress and rank == 0,
        ):
            step_started = time.perf_counter() if warmup is None and spec.compile else 0.0
            optimizer.zero_grad(set_to_none=True)
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            if step_started:
                warmup = time.perf_counter() - step_started
                if rank == 0:
                    print(f"{out}: torch.compile warm-up (first step) {warmup:.1f} s", flush=True)
            # Accumulate on the device: no host synchronisation inside the step.
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen, steps = seen + len(y), steps + 1
            for name, reg in layers.items():
                kept[name] += reg.last_kept_fraction
                mean_prob[name] += reg.last_mean_drop_prob
                mask_var[name] += reg.last_mask_var
        lr = optimizer.param_groups[0]["lr"]
        val_loss, val_acc = evaluate(model, data.val, data, experiment, channels_last=channels_last)
        test_loss, test_acc = evaluate(
            model, data.test, data, experiment, channels_last=channels_last
        )
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": float(loss_sum) / max(seen, 1),
            "train_acc": float(correct) / max(seen, 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "seconds": time.perf_counter() - started,
        }
        for name in layers:
            row[f"drop_rate/{name}"] = 1.0 - float(kept[name]) / max(steps, 1)
            row[f"mean_drop_prob/{name}"] = float(mean_prob[name]) / max(steps, 1)
            # mean over the epoch's steps of mean(p_ij(1-p_ij)): see variance_matched_rate
            row[f"mask_var/{name}"] = float(mask_var[name]) / max(steps, 1)
        if not math.isfinite(row["train_loss"]):
            # Diverged (or corrupt weights): a failed run, never a complete one. Nothing of
            # this epoch is written, so the last good checkpoint stays.
            raise TrainingDivergedError(
                f"{out}: training loss is {row['train_loss']} in epoch {epoch + 1} of "
                f"{spec.method} seed {spec.seed} (lr {lr:g}); the run failed and is not "
                "reported. A lower --lr may help"
            )
        rows.append(row)
        if rank == 0:
            _write_metrics(out / "metrics.csv", rows)
            _append_learned_curves(out / "learned_curves.json", epoch + 1, model)
            save_checkpoint(
                checkpoint_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "experiment": experiment.to_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all()
                    if torch.cuda.is_available()
                    else None,
                    "rows": rows,
                },
            )
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break

    complete = len(rows) == experiment.epochs
    result = _result(spec, rows, complete)
    result["channels_last"] = channels_last
    if warmup is not None:
        result["compile_warmup_seconds"] = round(warmup, 1)
    if rank == 0:
        if layers and complete:
            probs = ddc.drop_probabilities(model)
            atomic_torch_save(
                out / "drop_probs.pt", {k: v.flatten().cpu() for k, v in probs.items()}
            )
        atomic_write_json(result_path, result)
    return result
