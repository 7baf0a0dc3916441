"""A tiny Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words") for
small images: non-overlapping patch embedding, learned position embeddings, pre-norm encoder
blocks, a final LayerNorm, mean pooling over tokens (no class token) and a linear head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workbench.models.errors import ModelError, check_float, check_int, check_positive_float
from workbench.models.layers import TokenMeanPool


class SelfAttention(nn.Module):
    """Multi-head self-attention ``softmax(Q K^T / sqrt(d_head)) V`` (Vaswani et al., 2017).

    The attention weights are the output of the ``softmax`` submodule, ``(B, heads, N, N)``,
    so they can be captured by path like any feature.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.softmax = nn.Softmax(dim=-1)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = self.attn_drop(self.softmax((q * self.scale) @ k.transpose(-2, -1)))
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj_drop(self.proj(out))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = max(1, round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def default_patch_size(image_size: int) -> int:
    """4 for images of 16 pixels and more, else 2 — reduced to a divisor of ``image_size``."""
    p = 4 if image_size >= 16 else 2
    while image_size % p:
        p -= 1
    return p


class TinyViT(nn.Module):
    """ViT with ``depth`` blocks of width ``dim`` and ``heads`` heads on ``patch_size`` patches.

    Tokens are the patches in row-major order, ``N = (H / p) * (W / p)``, with no class token,
    so a token map reshapes directly to the patch grid. Stages: ``blocks.0`` ..
    ``blocks.<depth-2>`` and ``norm`` (the final LayerNorm of the last block's output), all
    ``(B, N, dim)``; the head is ``pool`` (mean over tokens) and ``fc``. Inputs of another size
    than ``image_size`` get bilinearly resized position embeddings.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        patch_size: int | None = None,
        dim: int = 64,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        num_classes = check_int("num_classes", num_classes)
        in_channels = check_int("in_channels", in_channels)
        image_size = check_int("image_size", image_size)
        p = default_patch_size(image_size) if patch_size is None else check_int("patch_size", patch_size)
        if image_size % p:
            raise ModelError(f"patch_size={p}: expected a divisor of image_size={image_size}")
        dim = check_int("dim", dim)
        depth = check_int("depth", depth)
        heads = check_int("heads", heads)
        if dim % heads:
            raise ModelError(f"heads={heads}: expected a divisor of dim={dim}")
        ratio = check_positive_float("mlp_ratio", mlp_ratio)
        drop = check_float("dropout", dropout, 0.0, 1.0, high_inclusive=False)
        self.patch_size = p
        self.grid = image_size // p
        self.patch_embed = nn.Conv2d(in_channels, dim, p, p)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, dim))
        self.pos_drop = nn.Dropout(drop)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, ratio, drop) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.pool = TokenMeanPool()
        self.fc = nn.Linear(dim, num_classes)
        self.stages: list[str] = [f"blocks.{i}" for i in range(depth - 1)] + ["norm"]
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _positions(self, h: int, w: int) -> torch.Tensor:
        if h == w == self.grid:
            return self.pos_embed
        d = self.pos_embed.shape[-1]
        grid = self.pos_embed.reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        return grid.permute(0, 2, 3, 1).reshape(1, h * w, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, num_classes)`` logits."""
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        tokens = x.flatten(2).transpose(1, 2) + self._positions(h, w)
        tokens = self.norm(self.blocks(self.pos_drop(tokens)))
        return self.fc(self.pool(tokens))


def token_grid(num_tokens: int) -> int:
    """The side of the square patch grid holding ``num_tokens`` tokens (ValueError if not square)."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ModelError(f"num_tokens={num_tokens}: expected a square number of patch tokens")
    return side
