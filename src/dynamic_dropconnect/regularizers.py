"""The weight regularizers of the paper: fixed-rate DropConnect and Dynamic DropConnect.

A regularizer is a small module that maps a layer's weight ``W`` to the effective weight used
in one training forward pass. It holds hyperparameters and, for DDC, the gradient statistic;
the machinery every regularizer shares is :class:`~dynamic_dropconnect.base.WeightRegularizer`
(re-exported here). Attach regularizers with :func:`dynamic_dropconnect.apply`.
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from . import functional
from .base import (
    DEFAULT_MAX_MASK_BYTES,
    GENERATOR_STATE_KEY,
    MASK_MODES,
    GeneratorState,
    WeightRegularizer,
)
from .checks import check_choice, check_flag, check_rate
from .functional import Direction

__all__ = [
    "DEFAULT_MAX_MASK_BYTES",
    "GENERATOR_STATE_KEY",
    "MASK_MODES",
    "PRESETS",
    "STATISTICS",
    "STATISTIC_UPDATES",
    "DropConnect",
    "DynamicDropConnect",
    "GeneratorState",
    "WeightRegularizer",
]

STATISTICS: tuple[str, ...] = ("gradient", "weight")
PRESETS: tuple[str, ...] = ("default", "reference")
STATISTIC_UPDATES: tuple[str, ...] = ("backward", "step")


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
        check_rate("DropConnect", "p", p, 0.0, 1.0, high_open=True)
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
    from the first step, also with ``mask_mode="example"`` and ``statistic_update="step"``.
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
        check_flag(name, "shuffle", shuffle)
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
        check_rate(name, "p", p, 0.0, 1.0, high_open=True)
        check_rate(name, "pg", pg, 0.0, float("inf"), high_open=True)
        check_rate(name, "tau", tau, 0.0, 1.0, high_open=False)
        check_choice(f"{name}: direction", direction, functional.DIRECTIONS)
        check_choice(f"{name}: statistic", statistic, STATISTICS)
        check_choice(f"{name}: statistic_update", statistic_update, STATISTIC_UPDATES)
        if p_max is None:
            if p + pg > 1.0:
                raise ValueError(
                    f"{name}: p + pg = {p + pg} > 1 without a clamp gives drop probabilities "
                    f"above 1; lower p={p} or pg={pg}, or set p_max in (0, 1)"
                )
        else:
            check_rate(name, "p_max", p_max, 0.0, 1.0, high_open=True)
            if not p_max > 0.0:
                raise ValueError(f"{name}: p_max must be in (0, 1) or None, got {p_max!r}")
            if p > p_max:
                raise ValueError(f"{name}: p={p} exceeds p_max={p_max}")
        check_rate(name, "eps", eps, 0.0, float("inf"), high_open=True)
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
            seen = self._buffer("has_gradient").to(functional.compute_dtype(source.dtype))
            pg = seen * self.pg
            p = seen * self.p if self.preset == "reference" else self.p
        # The rates p, pg may be 0-dim tensors here; the clamp cannot bind when the float
        # bounds say so, and then it is skipped (one pass less).
        clamp_binds = self.p_max is not None and self.p + self.pg > self.p_max
        return functional.ddc_drop_probabilities(
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
            functional.accumulate_gradient(self.pending_sum, self.pending_count, grad)
        else:
            functional.record_gradient(
                self._buffer("grad_magnitude"), self._buffer("has_gradient"), grad
            )

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
