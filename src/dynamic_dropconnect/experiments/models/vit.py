"""A small Vision Transformer for 32-px images (Dosovitskiy et al. 2021, pre-norm blocks).

Not in the paper: used for its open question on modern architectures. Attention is written
with ``nn.Linear`` (``qkv``, ``proj``) rather than ``nn.MultiheadAttention`` so DDC / DropConnect
can wrap any of its weight layers. No dropout or stochastic depth inside: regularization is the
training code's business. Head: LayerNorm, ``linear1`` dim→dim, ``act1``, ``drop1``, ``linear2``
dim→C, on the class token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import SlotModel

__all__ = ["Attention", "TransformerBlock", "ViT"]


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` Linear(dim, 3·dim), softmax(QKᵀ/√d)V, ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (N, H, T, d/H)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + fc2(gelu(fc1(norm2(x))))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class ViT(SlotModel):
    """Small ViT: patch 4 (conv k4 s4 embedding), dim 192, depth 6, 3 heads, MLP ratio 2,
    learnable class token and position embedding (truncated normal, std 0.02), final LayerNorm,
    then the hidden head ``linear1``/``act1``/``drop1``/``linear2``. 64 tokens + 1 at 32 px."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        patch_size: int = 4,
        dim: int = 192,
        depth: int = 6,
        heads: int = 3,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch_size}")
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(
            *(TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, dim)
        self.act1: nn.Module = nn.ReLU()
        self.drop1: nn.Module = nn.Identity()
        self.linear2 = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, P, dim)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))[:, 0]
        x = self.drop1(self.act1(self.linear1(x)))
        return self.linear2(x)
