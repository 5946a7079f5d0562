"""Building blocks that two or more model families share.

Each block keeps the parameter names the authors' checkpoints use (``qkv``, ``proj``, ``fc1``,
``fc2``, ``dwconv``, ``norm``), so a family that builds on one still loads its checkpoints
strictly. A variant that only one family needs stays in that family's file.

Shapes: tokens are [B, N, C] (batch, tokens, channels); head-split tensors are
[B, heads, N, head_dim] with channel index = head * head_dim + j (head-major), as in every
upstream repository edgesdk builds on.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------------------------
# Multi-head softmax attention
# --------------------------------------------------------------------------------------------


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Tokens [B, N, heads * d] -> head-split [B, heads, N, d]."""
    B, N, C = x.shape
    return x.reshape(B, N, heads, C // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Head-split [B, heads, N, d] -> tokens [B, N, heads * d] (the inverse of split_heads)."""
    B, heads, N, d = x.shape
    return x.transpose(1, 2).reshape(B, N, heads * d)


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    bias: torch.Tensor | None = None,
    window_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax((q * scale) k^T + bias [+ window_mask]) v on head-split tensors.

    q [B, heads, Nq, d], k and v [B, heads, Nk, d] -> [B, heads, Nq, d]. ``scale`` multiplies
    q before the product (usually head_dim ** -0.5). ``bias`` is added to the logits and must
    broadcast to [B, heads, Nq, Nk] (e.g. Swin's relative-position bias [heads, Nq, Nk]).
    ``window_mask`` [windows, Nq, Nk] is an additive mask per window for inputs whose leading
    axis is batch * windows, window index fastest (Swin's shifted windows).
    """
    logits = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        logits = logits + bias
    if window_mask is not None:
        batch_windows, heads, Nq, Nk = logits.shape
        windows = window_mask.shape[0]
        # [B * windows, heads, Nq, Nk] -> [B, windows, heads, Nq, Nk]: one mask per window
        logits = logits.reshape(-1, windows, heads, Nq, Nk) + window_mask[None, :, None]
        logits = logits.reshape(batch_windows, heads, Nq, Nk)
    return logits.softmax(dim=-1) @ v


class Attention(nn.Module):
    """Multi-head softmax self-attention with a fused ``qkv`` projection and an output ``proj``
    (the layout of timm, DeiT, Swin, PVTv2 stage 4 and Twins): rows of ``qkv`` are q, k, v."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def attend(self, x: torch.Tensor, bias: torch.Tensor | None = None,
               window_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens [B, N, C] -> [B, N, C], with optional logit ``bias`` and ``window_mask``
        as in ``softmax_attention``."""
        q, k, v = (split_heads(part, self.heads) for part in self.qkv(x).chunk(3, dim=-1))
        return self.proj(merge_heads(softmax_attention(q, k, v, self.scale, bias, window_mask)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)


# --------------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------------


def feed_forward(x: torch.Tensor, fc1_weight: torch.Tensor, fc1_bias: torch.Tensor | None,
                 fc2_weight: torch.Tensor, fc2_bias: torch.Tensor | None) -> torch.Tensor:
    """fc2(GELU(fc1(x))) from explicit weights (exact, erf GELU), for layers that slice their
    weights (a supernet) or keep fc1/fc2 outside an ``Mlp`` (fairseq's layer layout)."""
    return F.linear(F.gelu(F.linear(x, fc1_weight, fc1_bias)), fc2_weight, fc2_bias)


class Mlp(nn.Module):
    """Token MLP: fc1 -> [depthwise 3x3 conv on the token map] -> GELU (erf) -> fc2.

    ``depthwise_conv`` adds PVTv2's ``dwconv`` between fc1 and the activation; ``forward`` then
    needs the token ``grid`` (height, width), tokens being a row-major raster of it.
    """

    def __init__(self, dim: int, hidden: int, depthwise_conv: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden) if depthwise_conv else None
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        # Calls fc1 and fc2 as modules (not feed_forward), so forward hooks such as MAC
        # counters see them.
        x = self.fc1(x)
        if self.dwconv is not None:
            if grid is None:
                raise ValueError("an Mlp with a depthwise conv needs the token grid (height, width)")
            B, N, C = x.shape
            # tokens [B, N, C] -> map [B, C, H, W] and back
            x = self.dwconv(x.transpose(1, 2).reshape(B, C, grid[0], grid[1])).flatten(2).transpose(1, 2)
        return self.fc2(self.act(x))


# --------------------------------------------------------------------------------------------
# Patch embedding
# --------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Strided convolution ``proj`` from a map [B, C_in, H, W] to tokens [B, H' * W', dim]
    (row-major raster of the output grid), then an optional post-norm ``norm`` on the tokens.

    ``norm`` is any module over [B, N, dim] (LayerNorm, a RepBN) or None for none.
    """

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int, padding: int = 0,
                 norm: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel, stride=stride, padding=padding)
        self.norm = nn.Identity() if norm is None else norm

    def tokens_and_grid(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(tokens [B, N, dim], (height, width) of the token grid)."""
        x = self.proj(x)
        grid = (x.shape[-2], x.shape[-1])
        return self.norm(x.flatten(2).transpose(1, 2)), grid  # [B, C, H, W] -> [B, H*W, C]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens_and_grid(x)[0]


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------


def init_linear_(module: nn.Module, std: float = 0.02, truncate: bool = True) -> None:
    """If ``module`` is an nn.Linear: weight ~ N(0, std) cut at +-2 (absolute, as timm's
    ``trunc_normal_``), bias 0. Other modules are left alone, so it can go to ``Module.apply``.

    At std 0.02 a cut at +-2 lies 100 standard deviations out: ``truncate=False`` (a plain
    normal) draws from the same distribution. The two consume the random stream differently,
    so each family keeps the draw its seeded models were built with.
    """
    if not isinstance(module, nn.Linear):
        return
    if truncate:
        nn.init.trunc_normal_(module.weight, std=std)
    else:
        nn.init.normal_(module.weight, std=std)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
