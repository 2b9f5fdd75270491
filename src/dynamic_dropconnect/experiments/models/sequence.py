"""Sequence models for the text experiments: a character LSTM and a small Transformer.

Both read ``(N, L)`` int64 token ids (0 pads, on the left) and classify the whole sequence.
Their slots, for the methods of :mod:`..methods`:

- :class:`CharLSTM`: DDC/DropConnect on the recurrent matrix ``rnn.weight_hh_l0`` (AWD-LSTM's
  weight drop); ``drop1`` (Dropout) before the classifier; ``lock_in``/``lock_out``
  (variational, "locked" dropout: one mask per sequence, shared by every time step) on the
  LSTM's inputs and outputs.
- :class:`CharTransformer`: DDC/DropConnect on every attention projection (``in_proj_weight``,
  ``out_proj.weight``) and feed-forward weight (``linear1``, ``linear2``) of each layer;
  ``drop1`` (Dropout) on the pooled representation.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .layers import SlotModel

__all__ = ["CharLSTM", "CharTransformer", "LockedDropout"]


class LockedDropout(nn.modules.dropout._DropoutNd):
    """Variational dropout for ``(N, L, F)`` sequences (Gal & Ghahramani 2016; AWD-LSTM's
    "locked dropout"): one Bernoulli mask per sequence and feature, the same at every step.
    A ``_DropoutNd``, so ``mc_predict`` samples it like any Dropout.

    Args:
        p: drop probability in ``[0, 1)``.
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"LockedDropout: p must be in [0, 1), got {p!r}")
        super().__init__(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - self.p)
        return x * mask / (1.0 - self.p)


class _TokenModel(SlotModel):
    activation_slots: ClassVar[tuple[str, ...]] = ()  # no Standout slot
    locked_slots: ClassVar[tuple[str, ...]] = ()


class CharLSTM(_TokenModel):
    """Embedding 32 → LSTM (``hidden``) → last step → ``drop1`` → ``linear1`` → C classes.

    ``in_channels`` is the sequence length and ``image_size`` unused (the zoo's common
    signature); ``vocab_size`` counts the padding id 0.
    """

    weight_slots: ClassVar[tuple[str, ...]] = ("rnn.weight_hh_l0",)
    locked_slots: ClassVar[tuple[str, ...]] = ("lock_in", "lock_out")

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: int,
        vocab_size: int,
        embed: int = 32,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        del in_channels, image_size
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.lock_in: nn.Module = nn.Identity()
        self.rnn = nn.LSTM(embed, hidden, batch_first=True)
        self.lock_out: nn.Module = nn.Identity()
        self.drop1: nn.Module = nn.Identity()
        self.linear1 = nn.Linear(hidden, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.lock_out(self.rnn(self.lock_in(self.embed(tokens)))[0])
        return self.linear1(self.drop1(h[:, -1]))


class CharTransformer(_TokenModel):
    """Embedding + learned positions (``dim``) → ``layers`` pre-norm Transformer encoder layers
    (``heads`` heads, feed-forward ``4·dim``, no internal dropout) → mean over non-pad tokens →
    ``drop1`` → ``head`` → C classes."""

    weight_slots: ClassVar[tuple[str, ...]] = (
        "encoder.layers.*.self_attn",
        "encoder.layers.*.linear1",
        "encoder.layers.*.linear2",
    )

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: int,
        vocab_size: int,
        dim: int = 64,
        heads: int = 4,
        layers: int = 2,
    ) -> None:
        super().__init__()
        del image_size
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(in_channels, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.drop1: nn.Module = nn.Identity()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        pad = tokens == 0
        h = self.encoder(self.embed(tokens) + self.position, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        pooled = (self.norm(h) * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return self.head(self.drop1(pooled))
