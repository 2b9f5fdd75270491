"""AWD-LSTM's call form of weight drop, ``WeightDrop(module, weights, dropout)``, on this library.

A thin module over :func:`~dynamic_dropconnect.apply`: it stands above :mod:`.surgery` on the
ladder (``docs/architecture.md``), so that :mod:`.parameters`, which holds the hooks it uses,
imports nothing above itself.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .surgery import apply

__all__ = ["AWDWeightDrop"]


class AWDWeightDrop(nn.Module):
    """AWD-LSTM's ``WeightDrop(module, weights, dropout)`` (Merity et al., 2017), on this library.

    Wraps ``module`` and applies DropConnect with rate ``dropout`` to each parameter named in
    ``weights`` (e.g. ``["weight_hh_l0"]`` of an ``nn.LSTM``) in training; ``forward`` passes
    everything through. Unlike the original it does not rename the parameters (no ``_raw``
    copies), keeps ``flatten_parameters`` working, and accepts any option of
    :class:`~dynamic_dropconnect.DropConnect` or, with ``method="ddc"``, Dynamic DropConnect
    (then ``dropout`` is its base rate ``p``). ``dynamic_dropconnect.WeightDrop``, its old
    name, still works with a ``DeprecationWarning``.

    Args:
        module: the wrapped module.
        weights: names of its parameters to regularize.
        dropout: drop rate (DropConnect) or base rate ``p`` (DDC). Default 0.5.
        method: ``"dropconnect"`` (AWD-LSTM) or ``"ddc"``.
        **options: more regularizer options (``rescale``, ``pg``, ``generator``, ...).

    Examples::

        >>> lstm = ddc.AWDWeightDrop(nn.LSTM(10, 20), ["weight_hh_l0"], dropout=0.5)
        >>> out, (h, c) = lstm(torch.randn(7, 3, 10))
    """

    def __init__(
        self,
        module: nn.Module,
        weights: list[str] | tuple[str, ...],
        dropout: float = 0.5,
        method: str = "dropconnect",
        **options: Any,
    ) -> None:
        super().__init__()
        if isinstance(weights, str) or not weights:
            raise ValueError(
                f"{type(self).__name__}: weights must be a non-empty list of parameter names of "
                f"{type(module).__name__} ({', '.join(n for n, _ in module.named_parameters())})"
                f", got {weights!r}"
            )
        self.module = module
        self.weights = tuple(weights)
        self.dropout = dropout
        apply(module, method, include=list(self.weights), p=dropout, **options)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"weights={list(self.weights)}, dropout={self.dropout}"
