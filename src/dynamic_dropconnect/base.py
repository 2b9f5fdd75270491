"""What every weight regularizer shares: mask drawing, rescaling, the gradient record.

:class:`WeightRegularizer` maps a layer's weight ``W`` to the effective weight of one training
forward; its subclasses (:mod:`.regularizers`, :mod:`.learned`) say only how the per-edge drop
probabilities are chosen. :class:`GeneratorState` keeps a mask generator's state in the
``state_dict`` (:class:`~dynamic_dropconnect.Standout` uses it too).
"""

from __future__ import annotations

import contextlib
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from . import functional
from .checks import check_choice, warn_deprecated
from .functional import RescaleMode, UpdateMode
from .per_sample import BatchedOp, per_example_masked_op

__all__ = [
    "DEFAULT_MAX_MASK_BYTES",
    "GENERATOR_STATE_KEY",
    "MASK_MODES",
    "GeneratorState",
    "WeightRegularizer",
]

#: ``"batch"``: one mask per weight and forward pass; ``"example"``: one per example.
MASK_MODES: tuple[str, ...] = ("batch", "example")

# Generator states kept for checkpoint recomputation (one per training forward, newest last).
_RNG_STASH = 64


_graph_task_id = torch._C._current_graph_task_id  # -1 outside backward


def _in_backward() -> bool:
    """Whether autograd is running a backward pass now (a checkpointed forward recomputes)."""
    return _graph_task_id() != -1


DEFAULT_MAX_MASK_BYTES = 256 * 2**20


@dataclass
class _Uses:
    """How often a regularizer's weight is used per step (see ``_record_use``).

    A plain object rather than module attributes: ``nn.Module.__setattr__`` costs about a
    microsecond, and these flags change at every forward and backward.
    """

    pending: bool = False  # a training forward not yet followed by a recorded backward
    multi: bool = False  # sticky: a second training forward came before that backward
    total: Tensor | None = None  # multi-use: signed sum of the uses' gradients, one backward
    task: int = -1  # the autograd graph task that sum belongs to


#: state_dict key (after the module's prefix) of the mask generator's state.
GENERATOR_STATE_KEY = "generator_state"


class GeneratorState(nn.Module):
    """Saves ``self.generator``'s state in the ``state_dict`` (key ``generator_state``).

    A module with a ``generator`` (``None``: the global RNG, then no key) gets its random state
    written by ``state_dict()`` (a CPU ``uint8`` tensor, loadable with
    ``torch.load(weights_only=True)``) and restored by ``load_state_dict``, so that a resumed
    run draws the masks an uninterrupted one would. A checkpoint without the key (older, or a
    plain model) loads as before, strictly too; the generator then goes on from where it is.
    """

    generator: torch.Generator | None

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.generator is not None:
            destination[prefix + GENERATOR_STATE_KEY] = self.generator.get_state()

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        key = prefix + GENERATOR_STATE_KEY
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if key in unexpected_keys:  # ours, not a stray entry
            unexpected_keys.remove(key)
        state = state_dict.get(key)
        if state is None:
            return
        name = type(self).__name__
        if self.generator is None:
            warnings.warn(
                f"{name}: the checkpoint holds a mask generator state ({key!r}) but this module "
                "draws from the global RNG (generator=None); the state is ignored",
                stacklevel=2,
            )
            return
        if not isinstance(state, Tensor) or state.dtype != torch.uint8:
            error_msgs.append(f"{key}: expected a uint8 tensor (a generator state), got {state!r}")
            return
        try:
            self.generator.set_state(state.detach().cpu())
        except RuntimeError as err:  # a state of another generator type or device
            error_msgs.append(f"{key}: not a state of {name}'s generator: {err}")


class WeightRegularizer(GeneratorState):
    """Common machinery of weight-dropping regularizers (not used directly).

    Subclasses say how the per-edge drop probabilities are chosen
    (:meth:`drop_probabilities`); this class samples the mask, rescales, picks the gradient
    rule and keeps cheap monitoring values. Options shared by every subclass:

    Args:
        rescale: divisor ``k`` of ``W * M / k``: ``"empirical"`` (kept fraction of the
            sampled mask, the authors' code), ``"expected"`` (``1 - mean(p_ij)``),
            ``"per_edge"`` (``1 - p_ij``), ``"none"``.
        update: ``"dense"`` (straight-through: every edge gets ``dL/dW_eff``, the authors'
            code) or ``"masked"`` (gradient through the mask, textbook DropConnect).
        mask_mode: ``"batch"`` (one mask per weight and forward pass, the paper) or
            ``"example"`` (one mask per example of the batch, Wan et al. 2013; chunked).
            ``"sample"``, its old name, still works with a ``DeprecationWarning``.
        max_mask_bytes: memory budget of the per-example masks of one chunk in
            ``"example"`` mode (default 256 MiB).
        generator: optional ``torch.Generator`` for reproducible masks (on the weight's
            device). Under ``torch.utils.checkpoint`` the recomputed forward replays the mask
            of the original one (checkpoint restores only the global RNG, so a custom
            generator would otherwise draw a new mask and give wrong input gradients).

    Half precision (``model.half()``, bfloat16): the drop probabilities and the uniforms of
    the mask are computed in float32 (see :func:`~dynamic_dropconnect.functional.compute_dtype`),
    so ``P(keep) = 1 - p_ij`` as in float32; the effective weight keeps the weight's dtype.

    Monitoring (device buffers, never read back by the step, not in the ``state_dict``): of
    the last training forward, ``last_mean_drop_prob`` (mean ``p_ij``), ``last_kept_fraction``
    (realized ``sum(M)/numel``) and, once ``track_mask_var = True`` is set on the module,
    ``last_mask_var``: the mean mask variance ``mean(p_ij(1-p_ij))`` (NaN until then; see
    :func:`~dynamic_dropconnect.functional.variance_matched_rate`). It is off by default
    because it costs one more weight-sized reduction per forward (a dot product: 2-30 us per
    layer on CPU).

    Exact resume: pass ``generator=`` (a ``torch.Generator``); its state is then part of the
    ``state_dict`` (key ``generator_state``, a CPU ``uint8`` tensor) and is restored by
    ``load_state_dict``, so a model + optimizer checkpoint taken in the middle of training
    continues bit-identically. With ``generator=None`` the masks come from the global RNG,
    whose state the training loop must save and restore itself
    (``torch.get_rng_state()``, ``torch.cuda.get_rng_state_all()``).
    """

    #: Subclasses with a per-edge map may set it (an option): permute ``p_ij`` over the
    #: layer's edges before each mask (see :func:`~dynamic_dropconnect.functional.permute_rates`).
    shuffle: bool = False
    #: Fill ``last_mask_var`` at every training forward (see "Monitoring" above).
    track_mask_var: bool = False

    def __init__(
        self,
        *,
        rescale: RescaleMode = "empirical",
        update: UpdateMode = "dense",
        mask_mode: str = "batch",
        max_mask_bytes: int = DEFAULT_MAX_MASK_BYTES,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if mask_mode == "sample":  # renamed: "sample" also meant a mask draw and an MC pass
            warn_deprecated(f"{name}: mask_mode='sample' is deprecated: use mask_mode='example'")
            mask_mode = "example"
        check_choice(f"{name}: rescale", rescale, functional.RESCALE_MODES)
        check_choice(f"{name}: update", update, functional.UPDATE_MODES)
        check_choice(f"{name}: mask_mode", mask_mode, MASK_MODES)
        if not isinstance(max_mask_bytes, int) or max_mask_bytes <= 0:
            raise ValueError(
                f"{name}: max_mask_bytes must be a positive int, got {max_mask_bytes!r}"
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{name}: generator must be a torch.Generator or None, got "
                f"{type(generator).__name__}"
            )
        self.rescale: RescaleMode = rescale
        self.update: UpdateMode = update
        self.mask_mode = mask_mode
        self.max_mask_bytes = max_mask_bytes
        self.generator = generator
        self._rng_states: deque[Tensor] = deque(maxlen=_RNG_STASH)
        # Monitoring, kept on the device (never read back per step): the mean drop
        # probability used and the kept fraction realized by the last training forward.
        self.register_buffer("last_mean_drop_prob", torch.full((), float("nan")), persistent=False)
        self.register_buffer("last_kept_fraction", torch.full((), float("nan")), persistent=False)
        # Mean mask variance mean(p_ij(1-p_ij)) of the last training forward (with
        # track_mask_var): the noise a map injects at its mean rate. Non-persistent, like the
        # two above, so checkpoints written before it existed still load strictly.
        self.register_buffer("last_mask_var", torch.full((), float("nan")), persistent=False)
        # A weight used several times in one forward (a shared layer, an RNN cell) gets
        # dL/dW = sum over uses: see _record_use.
        self._uses = _Uses()

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script calls this on every submodule before compiling anything, so every
        # regularized weight (class swap or hooks) refuses here with one message, before the
        # hooks or the autograd Functions give an obscure one.
        raise RuntimeError(
            f"torch.jit.script cannot compile a model holding a {type(self).__name__}: the "
            "regularizer is training-time Python code. Call dynamic_dropconnect.remove(model) "
            "first, then script (the eval output is the same), or use torch.compile for training"
        )

    # -- to be provided by subclasses -------------------------------------------------------
    def drop_probabilities(self, weight: Tensor) -> Tensor | float:
        """Drop probability of every edge for the next mask (a tensor or one rate)."""
        raise NotImplementedError

    def _records_gradient(self) -> bool:
        """Whether backward must pass ``dL/dW_eff`` to :meth:`_store_gradient`."""
        return False

    def _store_gradient(self, grad: Tensor) -> None:
        """Take in ``dL/dW_eff`` of one backward (summed over the weight's uses)."""
        raise NotImplementedError

    def prepare(self, weight: Tensor) -> None:
        """Size any per-edge state to ``weight`` (called when attached to a layer)."""

    def _before_mask(self, weight: Tensor) -> None:
        """Called by every training forward before the probabilities are computed."""

    # -- shared -----------------------------------------------------------------------------
    def _gradient_record(self, weight: Tensor) -> functional.Record | None:
        """The record of this forward's use of ``weight`` (``None`` if nothing is recorded).

        Counts the use: a second training forward before any recorded backward means the
        weight is used more than once per step, and switches on the summing record for good.
        Checkpoint recomputations (forwards inside backward) and no-grad forwards do not count.
        """
        if not self._records_gradient():
            return None
        # _in_backward() inlined: this runs at every forward.
        if torch.is_grad_enabled() and weight.requires_grad and _graph_task_id() == -1:
            uses = self._uses
            if uses.pending:
                uses.multi = True
            uses.pending = True
        return self._record_use

    def _record_use(self, grad: Tensor) -> None:
        """Backward of one use of the weight: ``grad = dL/dW_eff`` of that use.

        Single use (the common case): stored at once, as it comes. Multi-use: the weight's
        gradient is the sum over its uses, and the uses of one backward (one autograd graph
        task) arrive one by one: their signed sum is kept here and stored once, when that
        graph task ends (a queued engine callback), so a non-finite use leaves the statistic
        unchanged as a whole. A backward of another graph task (micro-batches back-propagated
        separately) starts a new sum: the latest backward wins, as with single use.
        """
        uses = self._uses
        uses.pending = False
        if not uses.multi:
            self._store_gradient(grad)
            return
        grad = grad.detach()
        task = _graph_task_id()
        total = uses.total
        if task == uses.task and total is not None:
            total.add_(grad)  # the engine sums W's gradient in this same order: exact
            return
        if (
            total is None
            or total.shape != grad.shape
            or total.dtype != grad.dtype
            or (total.device != grad.device)
        ):
            total = uses.total = torch.empty_like(grad, memory_format=torch.preserve_format)
        total.copy_(grad)
        uses.task = task
        self._begin_uses()
        torch.autograd.Variable._execution_engine.queue_callback(self._end_uses)

    def _begin_uses(self) -> None:
        """The first use of a new backward arrived (multi-use): reset per-backward sums."""

    def _end_uses(self) -> None:
        """The graph task of the multi-use sum ended: store it."""
        uses = self._uses
        uses.task = -1
        if uses.total is not None:
            self._store_gradient(uses.total)

    @contextlib.contextmanager
    def _mask_generator(self) -> Iterator[torch.Generator | None]:
        """``self.generator``, rewound to the original forward's state when this forward is a
        checkpoint recomputation (it runs inside backward), so both draw the same mask."""
        generator = self.generator
        if generator is None:  # global RNG: checkpoint restores it itself
            yield None
            return
        if not _in_backward():
            self._rng_states.append(generator.get_state())
            yield generator
            return
        if not self._rng_states:
            warnings.warn(
                f"{type(self).__name__}: a forward inside backward with no recorded generator "
                "state; the mask is drawn afresh",
                stacklevel=3,
            )
            yield generator
            return
        resume_from = generator.get_state()
        generator.set_state(self._rng_states.pop())  # segments recompute newest first
        try:
            yield generator
        finally:  # the original sequence goes on as if nothing had been recomputed
            generator.set_state(resume_from)

    def forward(self, weight: Tensor) -> Tensor:
        """Effective weight ``W * M / k`` in training ("batch" mode), ``W`` itself in eval."""
        if not self.training:
            return weight
        if self.mask_mode != "batch":
            raise RuntimeError(
                f"mask_mode={self.mask_mode!r} needs the layer input: call "
                "per_example(x, weight, op) (the layers that dynamic_dropconnect.apply makes do "
                "this)"
            )
        self._before_mask(weight)
        probs = self.drop_probabilities(weight)
        with self._mask_generator() as generator:
            # Drawn under the mask's generator: a checkpoint recomputation replays it too.
            if self.shuffle and isinstance(probs, Tensor):
                probs = functional.permute_rates(probs, generator)
            mask = functional.sample_keep_mask(weight.detach(), probs, generator)
        kept = mask.mean()
        scale = mask.div_(functional.rescale_factor(mask, probs, self.rescale, kept=kept))
        self._monitor(probs, kept)
        record = self._gradient_record(weight)
        return functional.apply_weight_mask(weight, scale, self.update, record=record)

    def per_example(self, x: Tensor, weight: Tensor, op: BatchedOp) -> Tensor:
        """``op`` on ``x`` with an independent mask per example ("example" mode, training).

        ``op(x_chunk, ws)`` computes the layer (without bias) for a chunk of examples with one
        weight each, ``ws`` of shape ``(chunk, *weight.shape)``. Memory stays within
        ``max_mask_bytes`` per chunk; backward replays the masks instead of storing them.
        """
        if x.dim() < 2:
            raise ValueError(
                f"mask_mode='example' needs a leading batch dimension, got input of shape "
                f"{tuple(x.shape)}"
            )
        self._before_mask(weight)
        probs = self.drop_probabilities(weight)
        self._monitor(probs, None)
        with self._mask_generator() as generator:
            # One permutation per forward, shared by the examples' masks.
            if self.shuffle and isinstance(probs, Tensor):
                probs = functional.permute_rates(probs, generator)
            return per_example_masked_op(
                x,
                weight,
                probs,
                op,
                rescale=self.rescale,
                dense=self.update == "dense",
                max_bytes=self.max_mask_bytes,
                generator=generator,
                record=self._gradient_record(weight),
                on_kept=self.last_kept_fraction.copy_,
            )

    def per_sample(self, x: Tensor, weight: Tensor, op: BatchedOp) -> Tensor:
        """Deprecated name of :meth:`per_example` ("sample" meant the example of a batch)."""
        warn_deprecated(f"{type(self).__name__}.per_sample is deprecated: use per_example")
        return self.per_example(x, weight, op)

    def _buffer(self, name: str) -> Tensor:
        """``self.<name>`` for a buffer, on the hot path: nn.Module.__getattr__ takes about
        0.5 us per lookup, ``_buffers[name]`` 0.03 us (a few lookups per step add up on small
        layers)."""
        return self._buffers[name]  # type: ignore[return-value]

    def _monitor(self, probs: Tensor | float, kept: Tensor | None) -> None:
        # copy_ from a device tensor, never .item(): monitoring must not synchronise.
        if isinstance(probs, Tensor):
            mean = probs.mean()
            self._buffer("last_mean_drop_prob").copy_(mean)
            if self.track_mask_var:
                functional.mask_variance(probs, mean=mean, out=self._buffer("last_mask_var"))
        else:
            self._buffer("last_mean_drop_prob").fill_(probs)
            if self.track_mask_var:
                self._buffer("last_mask_var").fill_(probs * (1.0 - probs))
        if kept is not None:
            self._buffer("last_kept_fraction").copy_(kept)

    def _options_repr(self) -> str:
        parts = [f"rescale={self.rescale!r}", f"update={self.update!r}"]
        if self.mask_mode != "batch":
            parts.append(f"mask_mode={self.mask_mode!r}, max_mask_bytes={self.max_mask_bytes}")
        return ", ".join(parts)
