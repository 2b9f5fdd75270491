"""Building blocks shared by the model zoo: the slot base class and a locally connected layer."""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...checks import warn_deprecated

__all__ = ["LocallyConnected2d", "SlotModel", "pair"]


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """Return ``value`` as an ``(h, w)`` pair."""
    if isinstance(value, int):
        return (value, value)
    h, w = value
    return (int(h), int(w))


class SlotModel(nn.Module):
    """Base class of every zoo model: names the slots the training code swaps.

    Each model has, around its first fully connected hidden layer, the attributes ``linear1``
    (``nn.Linear``, regularized by DDC / DropConnect), ``act1`` (``nn.ReLU``, swapped for Standout,
    which receives the pre-activation) and ``drop1`` (``nn.Identity``, swapped for
    ``nn.Dropout(0.5)``), called in that order in ``forward``. VGG also has ``linear2``/``act2``/
    ``drop2``.

    Class attributes:
        weight_slots: modules (or parameters) whose weights DDC / DropConnect regularize in
            the paper's setup. ``regularized_layers`` is its deprecated name: it read like the
            library's ``ddc.regularized_layers(model)``, which lists what *is* regularized.
        activation_slots: ``nn.ReLU`` slots that a Standout method replaces.
        dropout_slots: ``nn.Identity`` slots that the Dropout method replaces.
    """

    weight_slots: ClassVar[tuple[str, ...]] = ("linear1",)
    activation_slots: ClassVar[tuple[str, ...]] = ("act1",)
    dropout_slots: ClassVar[tuple[str, ...]] = ("drop1",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        old = cls.__dict__.get("regularized_layers")
        if old is not None and not isinstance(old, property):  # a subclass of the old name
            warnings.warn(  # at the class statement, which is what to change
                f"{cls.__name__}.regularized_layers is deprecated: name the attribute weight_slots",
                DeprecationWarning,
                stacklevel=2,
            )
            cls.weight_slots = tuple(old)

    @property
    def regularized_layers(self) -> tuple[str, ...]:
        """Deprecated name of :attr:`weight_slots`."""
        warn_deprecated(f"{type(self).__name__}.regularized_layers is deprecated: use weight_slots")
        return self.weight_slots


class LocallyConnected2d(nn.Module):
    """2-D locally connected layer: a convolution whose weights are not shared across positions.

    As cuda-convnet's ``local`` layers used by the authors' SimpleCNN2. Every output position
    ``l = i * out_w + j`` has its own filter bank.

    Shapes:
        weight: ``(out_h * out_w, out_channels, in_channels * kh * kw)``; the last axis is ordered
            like ``nn.Unfold`` (channel-major, then kernel row, then kernel column), so
            ``weight[l, o]`` is the flattened ``(in_channels, kh, kw)`` filter at position ``l``.
        bias: ``(out_channels, out_h, out_w)`` (one bias per output unit), or ``None``.
        input: ``(N, in_channels, H, W)`` with ``(H, W) == input_size``.
        output: ``(N, out_channels, out_h, out_w)``, ``out = (in + 2 * padding - k) // stride + 1``.

    Xavier init (by :func:`~.registry.xavier_init`) depends on ``xavier_fans``: ``"conv"`` uses
    the fans of the equivalent convolution (``fan_in = in_channels * kh * kw``,
    ``fan_out = out_channels * kh * kw``) and zero biases; ``"authors"`` reproduces the authors'
    layer, whose ``xavier_uniform_`` sees weight and bias tensors shaped
    ``(1, in·kh·kw, L, out)`` and ``(1, out, out_h, out_w)`` (see :meth:`authors_xavier_bounds`).
    """

    #: "conv" or "authors"; read by :func:`~.registry.xavier_init`.
    xavier_fans: str = "conv"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: int | tuple[int, int],
        kernel_size: int | tuple[int, int],
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        *,
        stride: int | tuple[int, int] = 1,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.input_size = pair(input_size)
        self.kernel_size = pair(kernel_size)
        self.padding = pair(padding)
        self.stride = pair(stride)
        out_h, out_w = (
            (n + 2 * p - k) // s + 1
            for n, p, k, s in zip(
                self.input_size, self.padding, self.kernel_size, self.stride, strict=True
            )
        )
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"input_size {self.input_size} too small for the kernel")
        self.output_size = (out_h, out_w)
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_h * out_w, out_channels, in_channels * kh * kw))
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.empty(out_channels, out_h, out_w))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def fans(self) -> tuple[int, int]:
        """``(fan_in, fan_out)`` of the equivalent convolution."""
        kh, kw = self.kernel_size
        return self.in_channels * kh * kw, self.out_channels * kh * kw

    def authors_xavier_bounds(self) -> tuple[float, float]:
        """``(weight_bound, bias_bound)`` of the authors' Xavier-uniform init.

        ``nn.init.xavier_uniform_`` on a 4-D ``(a, b, c, d)`` tensor uses ``fan_in = b·c·d`` and
        ``fan_out = a·c·d``; the authors' weight is ``(1, in·k², L, out)`` and their bias
        ``(1, out, out_h, out_w)``, both initialised that way (so biases are not zero).
        """
        kh, kw = self.kernel_size
        positions = self.output_size[0] * self.output_size[1]
        depth = self.in_channels * kh * kw
        weight_bound = math.sqrt(
            6.0 / (depth * positions * self.out_channels + positions * self.out_channels)
        )
        bias_bound = math.sqrt(6.0 / (self.out_channels * positions + positions))
        return weight_bound, bias_bound

    def reset_parameters(self) -> None:
        """PyTorch's default conv init (uniform, bound ``1 / sqrt(fan_in)``)."""
        bound = 1.0 / math.sqrt(self.fans[0])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(
                f"LocallyConnected2d built for input {self.input_size}, got {tuple(x.shape[-2:])}"
            )
        # cols: (N, in_channels * kh * kw, L)
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        out = torch.einsum("ncl,loc->nol", cols, self.weight)  # (N, O, L)
        out = out.reshape(x.shape[0], self.out_channels, *self.output_size)
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
            f"kernel_size={self.kernel_size}, padding={self.padding}, stride={self.stride}, "
            f"bias={self.bias is not None}"
        )
