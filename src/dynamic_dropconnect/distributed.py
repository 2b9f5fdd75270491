"""Dynamic DropConnect under FSDP2 (``torch.distributed.fsdp.fully_shard``).

What the regularizer sees: FSDP2 all-gathers a module's parameters in a forward pre-hook, so
the regularizer receives the *whole* (unsharded) weight, draws its mask on it, and its backward
records ``|dL/dW_eff|`` of the whole layer for the rank's *own* part of the batch (before
FSDP's reduce-scatter). FSDP2 shards parameters only: the statistic buffers stay whole on every
rank. So the layer-wise z-score is over the whole layer, but of a per-rank gradient.

What this module adds: before the first training forward after a backward, the statistic of
every FSDP2-managed DDC weight is averaged over the ranks (one all-reduce of the statistic's
size per regularized weight and step), so every rank computes the same ``p_ij`` from every
rank's batch: the mean over ranks of ``|g_r|`` (the signed gradients, whose mean is the global
gradient, are gone once the statistic is recorded). Masks are still drawn per rank, like
dropout. :func:`sync_statistics` turns this off (per-rank statistics, as DDP with
``broadcast_buffers=False``) or picks the process group.

``apply`` may come before or after ``fully_shard``: either way the regularizer state is sized
to the whole weight. ``statistic_update="step"`` is refused under FSDP2: it detects the
optimizer step by the weight's version counter, and the weight FSDP2 all-gathers for each
forward is a fresh tensor whose counter never moves, so the statistic would never be used.

FSDP1 (``FullyShardedDataParallel``) sets the same module flag, so the same averaging applies;
it needs ``device_id=torch.device("cpu")`` on CPU, and with ``use_orig_params=True`` DDC must
be applied before wrapping (outside forward a weight is a view into the flat shard).
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

import torch
from torch import Tensor, nn

from .regularizers import DynamicDropConnect, WeightRegularizer

__all__ = ["sync_statistics"]

# Per regularizer: the process group to average over (None: the default group) or False (off).
_GROUP: WeakKeyDictionary[WeightRegularizer, Any] = WeakKeyDictionary()
# Per regularizer: (id, version) of its statistic when last averaged, so each backward's
# statistic is averaged once. Every rank runs the same backwards, so all decide alike.
_SYNCED: WeakKeyDictionary[WeightRegularizer, tuple[int, int]] = WeakKeyDictionary()


def is_fsdp_managed(module: nn.Module) -> bool:
    """Whether FSDP2's ``fully_shard`` manages ``module``'s parameters (on it or an ancestor)."""
    return bool(getattr(module, "_is_fsdp_managed_module", False))


def is_dtensor(tensor: Tensor) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def check_not_flat_view(module: nn.Module, name: str, tensor: Tensor) -> None:
    """Refuse a weight that is FSDP1's view into its local flat-parameter shard
    (``FullyShardedDataParallel(use_orig_params=True)``): its shape is not the weight's."""
    flag = is_fsdp_managed(module) and getattr(module, "_fsdp_use_orig_params", False)
    if flag and not is_dtensor(tensor):  # FSDP2 parameters are DTensors
        raise ValueError(
            f"{type(module).__name__}.{name} is a view into a FullyShardedDataParallel "
            f"(use_orig_params=True) flat-parameter shard (shape {tuple(tensor.shape)}); call "
            "dynamic_dropconnect.apply before wrapping the model in FullyShardedDataParallel"
        )


def whole_template(tensor: Tensor) -> Tensor:
    """``tensor``, or for a sharded DTensor (an FSDP2 parameter outside forward) an empty local
    tensor of its whole shape: the forward sees the whole weight, so state is sized to it."""
    if not is_dtensor(tensor):
        return tensor
    local = tensor.to_local()  # type: ignore[attr-defined]
    return torch.empty(tensor.shape, dtype=local.dtype, device=local.device)


def sync_statistics(model: nn.Module, enabled: bool = True, group: Any = None) -> nn.Module:
    """Average (``enabled``) or keep per rank the DDC statistics of ``model`` under FSDP2.

    Args:
        model: a model with DDC applied (before or after ``fully_shard``).
        enabled: ``True`` (the default behaviour): every rank uses the mean over ranks of
            ``|dL/dW_eff|``; ``False``: each rank uses its own.
        group: process group of the data-parallel ranks; ``None``: the default group.

    Returns ``model``. Only FSDP2-managed weights are ever averaged.
    """
    # Every regularizer of the model is one of its submodules (a layer's ``regularizer``, a
    # holder's ``<weight>_regularizer``): no need for the listing in .regularized, which
    # stands above this module.
    for module in model.modules():
        if isinstance(module, WeightRegularizer):
            _GROUP[module] = group if enabled else False
    return model


def before_forward(module: nn.Module, regularizer: WeightRegularizer) -> None:
    """Called by a regularized layer (or weight hook) before each forward that uses
    ``regularizer`` on ``module``'s weight: averages the statistic under FSDP2."""
    if not regularizer.training or not is_fsdp_managed(module):
        return
    if not isinstance(regularizer, DynamicDropConnect) or regularizer.statistic != "gradient":
        return
    if regularizer.statistic_update == "step":
        raise NotImplementedError(
            f"{type(module).__name__}: DynamicDropConnect(statistic_update='step') does not work "
            "under FSDP (fully_shard or FullyShardedDataParallel): it detects the optimizer step "
            "by the weight's version counter, which the all-gathered weight does not carry; use "
            "statistic_update='backward'"
        )
    group = _GROUP.get(regularizer)
    if group is False or not torch.distributed.is_initialized():
        return
    if torch._C._current_graph_task_id() != -1:
        return  # a checkpoint recomputation inside backward must reuse the forward's p_ij
    statistic = regularizer.grad_magnitude
    if statistic.numel() == 0:
        return  # sized at the first forward; nothing recorded yet
    stamp = (id(statistic), statistic._version)
    if _SYNCED.get(regularizer) == stamp:
        return
    _average(statistic, regularizer.has_gradient, group)
    _SYNCED[regularizer] = (id(statistic), statistic._version)


@torch.no_grad()
def _average(statistic: Tensor, seen: Tensor, group: Any) -> None:
    """``statistic`` := its mean over the ranks that have recorded one; ``seen`` := any has.
    One all-reduce (sum) of the statistic and a count: gloo has no average."""
    have = seen.to(torch.float32)
    packed = torch.cat([statistic.flatten().float() * have, have.view(1)])
    torch.distributed.all_reduce(packed, group=group)
    count = packed[-1]
    mean = (packed[:-1] / count.clamp_min(1.0)).view_as(statistic).to(statistic.dtype)
    torch.where(count > 0, mean, statistic, out=statistic)
    seen.logical_or_(count > 0)
