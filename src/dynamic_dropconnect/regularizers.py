"""Weight-level regularizers: fixed-rate DropConnect and Dynamic DropConnect.

A regularizer is a small module that maps a layer's weight ``W`` to the effective weight used
in one training forward pass. It holds hyperparameters and, for DDC, the gradient statistic.
Attach it to layers with :func:`dynamic_dropconnect.apply`; the layers themselves are in
:mod:`dynamic_dropconnect.layers`.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from . import functional as F
from .functional import Direction, RescaleMode, UpdateMode, check_choice
from .per_sample import BatchedOp, per_sample_masked_op

__all__ = [
    "MASK_MODES",
    "PRESETS",
    "STATISTICS",
    "STATISTIC_UPDATES",
    "DropConnect",
    "DynamicDropConnect",
    "WeightRegularizer",
]

MASK_MODES: tuple[str, ...] = ("batch", "sample")
STATISTICS: tuple[str, ...] = ("gradient", "weight")
PRESETS: tuple[str, ...] = ("default", "reference")
STATISTIC_UPDATES: tuple[str, ...] = ("backward", "step")

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
            ``"sample"`` (one mask per example, Wan et al. 2013; chunked).
        max_mask_bytes: memory budget of the per-example masks of one chunk in
            ``"sample"`` mode (default 256 MiB).
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
        check_choice(f"{name}: rescale", rescale, F.RESCALE_MODES)
        check_choice(f"{name}: update", update, F.UPDATE_MODES)
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
    def _gradient_record(self, weight: Tensor) -> F.Record | None:
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
        if self.mask_mode == "sample":
            raise RuntimeError(
                "mask_mode='sample' needs the layer input: call per_sample(x, weight, op) "
                "(the layers that dynamic_dropconnect.apply makes do this)"
            )
        self._before_mask(weight)
        probs = self.drop_probabilities(weight)
        with self._mask_generator() as generator:
            # Drawn under the mask's generator: a checkpoint recomputation replays it too.
            if self.shuffle and isinstance(probs, Tensor):
                probs = F.permute_rates(probs, generator)
            mask = F.sample_keep_mask(weight.detach(), probs, generator)
        kept = mask.mean()
        scale = mask.div_(F.rescale_factor(mask, probs, self.rescale, kept=kept))
        self._monitor(probs, kept)
        record = self._gradient_record(weight)
        return F.apply_weight_mask(weight, scale, self.update, record=record)

    def per_sample(self, x: Tensor, weight: Tensor, op: BatchedOp) -> Tensor:
        """``op`` on ``x`` with an independent mask per example ("sample" mode, training).

        ``op(x_chunk, ws)`` computes the layer (without bias) for a chunk of examples with one
        weight each, ``ws`` of shape ``(chunk, *weight.shape)``. Memory stays within
        ``max_mask_bytes`` per chunk; backward replays the masks instead of storing them.
        """
        if x.dim() < 2:
            raise ValueError(
                f"mask_mode='sample' needs a leading batch dimension, got input of shape "
                f"{tuple(x.shape)}"
            )
        self._before_mask(weight)
        probs = self.drop_probabilities(weight)
        self._monitor(probs, None)
        with self._mask_generator() as generator:
            # One permutation per forward, shared by the examples' masks.
            if self.shuffle and isinstance(probs, Tensor):
                probs = F.permute_rates(probs, generator)
            return per_sample_masked_op(
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
                F.mask_variance(probs, mean=mean, out=self._buffer("last_mask_var"))
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


def _check_rate(
    owner: str, name: str, value: Any, low: float, high: float, *, high_open: bool
) -> None:
    """``value`` must be a real number in ``[low, high)`` (or ``]``); errors name all four."""
    bracket = ")" if high_open else "]"
    valid = f"a number in [{low:g}, {high:g}{bracket}"
    if isinstance(value, bool) or not isinstance(value, Real | Tensor):
        raise TypeError(f"{owner}: {name} must be {valid}, got {value!r} ({type(value).__name__})")
    if isinstance(value, Tensor) and value.numel() != 1:
        raise TypeError(f"{owner}: {name} must be {valid}, got a tensor of shape {value.shape}")
    number = float(value)
    ok = low <= number < high if high_open else low <= number <= high
    if not ok:
        raise ValueError(f"{owner}: {name} must be {valid}, got {value!r}")


def _check_flag(owner: str, name: str, value: Any) -> None:
    """``value`` must be a bool (a string such as ``"false"`` would be truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")


class DropConnect(WeightRegularizer):
    r"""DropConnect with one fixed drop rate for every edge (Wan et al., ICML 2013).

    .. math:: W_{eff} = W \odot M / k,\quad M_{ij} \sim \mathrm{Bernoulli}(1 - p)

    The baseline of the paper's comparisons: it shares every option with
    :class:`DynamicDropConnect`, so two runs differ only in how ``p_ij`` is chosen.

    Args:
        p: drop probability of each edge, in ``[0, 1)``. Default 0.5.
        **options: ``rescale``, ``update``, ``mask_mode``, ``max_mask_bytes``, ``generator``
            (see :class:`WeightRegularizer`).

    Shape:
        ``forward(weight)`` returns a tensor of ``weight``'s shape.

    Examples::

        >>> layer = ddc.apply(nn.Linear(20, 30), method="dropconnect", include=[""], p=0.5)
    """

    def __init__(self, p: float = 0.5, **options: Any) -> None:
        super().__init__(**options)
        _check_rate("DropConnect", "p", p, 0.0, 1.0, high_open=True)
        self.p = float(p)

    def drop_probabilities(self, weight: Tensor) -> float:
        return self.p

    def extra_repr(self) -> str:
        return f"p={self.p}, {self._options_repr()}"


class DynamicDropConnect(WeightRegularizer):
    r"""Dynamic DropConnect: a drop rate per edge from its z-scored gradient magnitude.

    Yang & Chen, "Dynamic DropConnect: Enhancing Neural Network Robustness through Adaptive
    Edge Dropping Strategies", arXiv 2502.19948. For each step, with ``g`` the gradient of the
    loss w.r.t. the effective weight in the most recent backward pass:

    .. math::
        z = \frac{|g| - \mathrm{mean}|g|}{\mathrm{std}|g| + \epsilon},\quad
        q = 1 - \sigma(z),\quad
        p_{ij} = \min(p + p_g\, q_{ij} [q_{ij} > \tau],\ p_{max}),\quad
        W_{eff} = W \odot M / k,\ M_{ij} \sim \mathrm{Bernoulli}(1 - p_{ij})

    How the statistic is captured: the effective weight is produced by an autograd function
    whose backward stores ``|dL/dW_eff|`` into the buffer ``grad_magnitude`` (a state_dict
    entry, so a resumed run is exact). It is dense: dropped edges have a gradient too. So
    ``optimizer.zero_grad(set_to_none=True)`` before the forward pass does not matter; with
    gradient accumulation the most recent backward wins; a backward with any NaN/Inf (an AMP
    overflow step) leaves the statistic unchanged. The z-score does not depend on the loss
    scale of AMP.

    A weight used more than once in one forward (a layer called twice, ALBERT-style shared
    layers, an RNN cell applied at every time step): each use draws its own, independent mask,
    and the statistic is ``|sum over uses of dL/dW_eff_use|``, the magnitude of the gradient
    of the loss w.r.t. the weight, summed within one backward (one autograd graph task), exact
    from the first step, also with ``mask_mode="sample"`` and ``statistic_update="step"``.
    How: a second training forward before any backward marks the regularizer as multi-use
    (for good; one extra weight-sized buffer) and the uses' gradients are then added up until
    that backward ends. Forwards back-propagated separately (micro-batches) each replace the
    statistic, as with a single use. Not covered: uses inside reentrant
    ``torch.utils.checkpoint`` segments (``use_reentrant=True`` back-propagates each segment
    in a graph task of its own, so the sum restarts per segment); the default non-reentrant
    checkpoint is fine. A training forward with grad enabled whose output is never
    back-propagated also switches the summing path on: still exact, slightly slower.

    Under ``DistributedDataParallel`` each rank records the gradient of its *own* shard of the
    batch (before the all-reduce). With DDP's default ``broadcast_buffers=True`` rank 0's
    buffer is broadcast at every forward, so all ranks then use rank 0's local statistic;
    with ``broadcast_buffers=False`` each rank uses its own. Masks are drawn per rank.

    Args:
        p: base drop rate every edge gets, in ``[0, 1)``. Default 0.3 (authors' code).
        pg: gradient unit rate, the scale of the extra rate, ``>= 0``. Default 0.5.
        tau: threshold in ``[0, 1]`` on the candidate probability ``q``. Default 0.5: only
            edges whose ``|g|`` is below the layer mean get an extra rate.
        direction: ``"small"`` (drop small gradients, the method) or ``"big"`` (ablation).
        statistic: ``"gradient"`` (the method) or ``"weight"`` (ablation: the same recipe on
            ``|W|``, the "small_weight"/"big_weight" variants with ``direction``).
        zscore: standardise layer-wise (default); ``False`` uses ``z = |g|`` (ablation).
        p_max: clamp of ``p_ij``, in ``(0, 1)``, or ``None`` (then ``p + pg`` must be
            ``<= 1``). ``"auto"`` (default): 0.95, or ``None`` under ``preset="reference"``.
            At the default rates the clamp never binds.
        eps: added to the standard deviation. Default 1e-9.
        statistic_update: ``"backward"`` (default): every backward replaces the statistic, so
            with gradient accumulation ``p_ij`` changes between micro-batches (the latest
            backward wins, as in the authors' code). ``"step"``: ``p_ij`` stays fixed until
            ``optimizer.step()``; the backwards in between add up ``|g|`` and at the first
            forward after the step (detected by the weight's in-place version counter) their
            mean becomes the statistic. Under ``torch.compile`` the version check breaks the
            graph; use ``"backward"`` there.
        preset: ``"default"`` or ``"reference"``: the authors' code bit for bit in semantics
            (no drop at all before the first gradient, no clamp, empirical rescale, dense
            update, batch mask); an explicit option that contradicts it is an error.
        shuffle: control (default ``False``): each training forward randomly permutes the
            ``p_ij`` that DDC computed over the layer's edges before drawing the mask (one
            ``randperm`` from ``generator``, on the device). The layer keeps exactly the rates
            DDC would use (same multiset, same mean rate and mask variance, same rescale
            amplification), but which edge gets which rate is no longer tied to its
            gradient: what DDC gains over its shuffled self is the gradient guidance. The
            statistic is still recorded; :meth:`drop_probabilities` returns the unshuffled map.
        **options: ``rescale``, ``update``, ``mask_mode``, ``max_mask_bytes``, ``generator``
            (see :class:`WeightRegularizer`).

    Before the first finite gradient has been recorded every edge is dropped at ``p``
    (``preset="reference"``: not at all). In eval mode the weight is used unchanged.

    Shape:
        ``forward(weight)`` returns a tensor of ``weight``'s shape.

    Examples::

        >>> import dynamic_dropconnect as ddc
        >>> model = ddc.apply(model, method="ddc")          # every nn.Linear
        >>> # train as usual: opt.zero_grad(); loss.backward(); opt.step()
    """

    _REFERENCE: ClassVar[dict[str, Any]] = {
        "p_max": None,
        "rescale": "empirical",
        "update": "dense",
        "mask_mode": "batch",
    }

    def __init__(
        self,
        p: float = 0.3,
        pg: float = 0.5,
        tau: float = 0.5,
        *,
        direction: Direction = "small",
        statistic: str = "gradient",
        zscore: bool = True,
        p_max: float | Literal["auto"] | None = "auto",
        eps: float = 1e-9,
        preset: str = "default",
        statistic_update: str = "backward",
        shuffle: bool = False,
        **options: Any,
    ) -> None:
        name = type(self).__name__
        _check_flag(name, "shuffle", shuffle)
        check_choice(f"{name}: preset", preset, PRESETS)
        if preset == "reference":
            given = {"p_max": p_max, **options}
            for key, value in self._REFERENCE.items():
                if key in given and given[key] != "auto" and given[key] != value:
                    raise ValueError(
                        f"{name}: preset='reference' fixes {key}={value!r}; "
                        f"got {key}={given[key]!r}"
                    )
            options = {**options, **{k: v for k, v in self._REFERENCE.items() if k != "p_max"}}
            p_max = None
        elif p_max == "auto":
            p_max = 0.95
        super().__init__(**options)
        _check_rate(name, "p", p, 0.0, 1.0, high_open=True)
        _check_rate(name, "pg", pg, 0.0, float("inf"), high_open=True)
        _check_rate(name, "tau", tau, 0.0, 1.0, high_open=False)
        check_choice(f"{name}: direction", direction, F.DIRECTIONS)
        check_choice(f"{name}: statistic", statistic, STATISTICS)
        check_choice(f"{name}: statistic_update", statistic_update, STATISTIC_UPDATES)
        if p_max is None:
            if p + pg > 1.0:
                raise ValueError(
                    f"{name}: p + pg = {p + pg} > 1 without a clamp gives drop probabilities "
                    f"above 1; lower p={p} or pg={pg}, or set p_max in (0, 1)"
                )
        else:
            _check_rate(name, "p_max", p_max, 0.0, 1.0, high_open=True)
            if not p_max > 0.0:
                raise ValueError(f"{name}: p_max must be in (0, 1) or None, got {p_max!r}")
            if p > p_max:
                raise ValueError(f"{name}: p={p} exceeds p_max={p_max}")
        _check_rate(name, "eps", eps, 0.0, float("inf"), high_open=True)
        if not eps > 0.0:
            raise ValueError(f"{name}: eps must be > 0, got {eps!r}")
        self.p, self.pg, self.tau = float(p), float(pg), float(tau)
        self.direction: Direction = direction
        self.statistic = statistic
        self.zscore = bool(zscore)
        self.p_max: float | None = None if p_max is None else float(p_max)
        self.eps = float(eps)
        self.preset = preset
        self.statistic_update = statistic_update
        self.shuffle = shuffle
        # |dL/dW_eff| of the most recent finite backward; sized lazily to the weight.
        self.register_buffer("grad_magnitude", torch.zeros(0))
        self.register_buffer("has_gradient", torch.zeros((), dtype=torch.bool))
        if statistic_update == "step":
            # |g| summed over the backwards since the last optimizer step, and their count.
            self.register_buffer("pending_sum", torch.zeros(0))
            self.register_buffer("pending_count", torch.zeros(()))
            self._weight_version: int | None = None
            self._weight_ref: weakref.ref[Tensor] | None = None

    def prepare(self, weight: Tensor) -> None:
        if self._buffer("grad_magnitude").shape != weight.shape:
            if self.grad_magnitude.numel() != 0:
                raise RuntimeError(
                    f"grad_magnitude has shape {tuple(self.grad_magnitude.shape)} but the weight "
                    f"has {tuple(weight.shape)}: one DynamicDropConnect serves one weight"
                )
            self.grad_magnitude = weight.detach().new_zeros(weight.shape)
            self.has_gradient = self.has_gradient.to(weight.device)
        if self.statistic_update == "step" and self.pending_sum.shape != weight.shape:
            self.pending_sum = self.grad_magnitude.new_zeros(weight.shape)
            self.pending_count = self.pending_count.to(weight.device)

    def _before_mask(self, weight: Tensor) -> None:
        # statistic_update="step": the optimizer changed the weight in place (its version
        # counter moved) since the last forward, so the micro-batches of that step are done:
        # their mean |g| becomes the statistic.
        if self.statistic_update != "step" or self.statistic == "weight":
            return
        self.prepare(weight)
        version = weight._version
        if self._weight_version is not None and version != self._weight_version:
            self._commit_pending()
        self._weight_version = version
        self._weight_ref = weakref.ref(weight)

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        # statistic_update="step", saved after optimizer.step(): the next forward would commit
        # the step's pending |g|, but a resumed module cannot tell that the step happened
        # (the version counter is not saved). Commit now, as that forward would: a checkpoint
        # taken after the step or between its micro-batches both resume exactly.
        if self.statistic_update == "step" and self._weight_ref is not None:
            weight = self._weight_ref()
            if weight is not None and weight._version != self._weight_version:
                self._commit_pending()
                self._weight_version = weight._version
        super()._save_to_state_dict(destination, prefix, keep_vars)

    @torch.no_grad()
    def _commit_pending(self) -> None:
        have = self.pending_count > 0
        mean = self.pending_sum / self.pending_count.clamp_min(1.0)
        torch.where(have, mean, self.grad_magnitude, out=self.grad_magnitude)
        self.has_gradient.logical_or_(have)
        self.pending_sum.zero_()
        self.pending_count.zero_()

    def drop_probabilities(self, weight: Tensor) -> Tensor:
        """``p_ij`` for the next mask, from the stored statistic (or ``|W|`` for ablations)."""
        if self.statistic == "weight":
            source, p, pg = weight.detach(), self.p, self.pg
        else:
            self.prepare(weight)
            source = self._buffer("grad_magnitude")
            # Before the first gradient: rate p (reference: 0), as 0-dim tensor arithmetic so
            # the step never waits on the device to decide.
            seen = self._buffer("has_gradient").to(F.compute_dtype(source.dtype))
            pg = seen * self.pg
            p = seen * self.p if self.preset == "reference" else self.p
        # The rates p, pg may be 0-dim tensors here; the clamp cannot bind when the float
        # bounds say so, and then it is skipped (one pass less).
        clamp_binds = self.p_max is not None and self.p + self.pg > self.p_max
        return F.ddc_drop_probabilities(
            source,
            p,
            pg,
            self.tau,
            direction=self.direction,
            zscore=self.zscore,
            p_max=self.p_max if clamp_binds else None,
            eps=self.eps,
        )

    def _records_gradient(self) -> bool:
        return self.statistic == "gradient"

    def _store_gradient(self, grad: Tensor) -> None:
        if self.statistic_update == "step":
            F.accumulate_gradient(self.pending_sum, self.pending_count, grad)
        else:
            F.record_gradient(self._buffer("grad_magnitude"), self._buffer("has_gradient"), grad)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        keys = (prefix + "grad_magnitude", prefix + "has_gradient")
        if not any(key in state_dict for key in keys):
            # A checkpoint of the plain model (no regularizer): keep its weights, start the
            # statistic afresh instead of reporting missing keys.
            self.grad_magnitude.zero_()
            self.has_gradient.zero_()
            return
        incoming = state_dict.get(keys[0])
        if incoming is not None and incoming.shape != self.grad_magnitude.shape:
            # The statistic is sized lazily: adopt the incoming shape before the copy.
            self.grad_magnitude = self.grad_magnitude.new_zeros(incoming.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        parts = [f"p={self.p}, pg={self.pg}, tau={self.tau}"]
        if self.direction != "small":
            parts.append(f"direction={self.direction!r}")
        if self.statistic != "gradient":
            parts.append(f"statistic={self.statistic!r}")
        if not self.zscore:
            parts.append("zscore=False")
        parts.append(f"p_max={self.p_max}")
        if self.preset != "default":
            parts.append(f"preset={self.preset!r}")
        if self.shuffle:
            parts.append("shuffle=True")
        parts.append(self._options_repr())
        return ", ".join(parts)
