"""SLAB: simplified linear attention and progressive re-parameterized BatchNorm.

Paper: Guo, Chen, Tang, Wang, "SLAB: Efficient Transformers with Simplified Linear Attention
and Progressive Re-parameterized Batch Normalization", ICML 2024, arXiv 2405.11582.
Upstream: https://github.com/xinghaochen/SLAB, module names, buffer names and checkpoint
layout checked against commit f58db00 (2024-06-24): classification/models/{prepbn, slab_deit,
deit, slab_swin, swin_transformer, slab_pvt, slab_cswin}.py and classification/cfgs/*.yaml.

What edgesdk adds to the upstream models:

* ``fold_repbn(model)`` merges every RepBN (the inference form of PRepBN) into the
  neighbouring linear layer or convolution, so an exported graph holds no normalization at
  all. Upstream ships fold code only for Swin-T-PRepBN, and its patch-embed fold drops the
  ``alpha * conv_bias`` term; the folds here are written from the algebra
  (RepBN(x) = s * x + t per channel) and tested against the unfolded model.
* Attention is written with plain matmuls (no einsum, no einops, no rank-6 window
  reshapes): simplified linear attention computes Q (K^T V) with the authors' 1e-6
  normaliser epsilon, and its shared per-head depthwise conv on V runs as one depthwise conv
  over all channels with the kernel tiled per head (exactly the same arithmetic). Swin's
  roll + window partition is one static token permutation (a Gather) and its inverse.

Inference semantics follow the authors' eval path: a PRepBN (``LinearNorm``) in eval mode is
RepBN only, whatever its progress counters say. A checkpoint saved in the middle of the
progressive schedule (lambda = iter / total_step > 0) is therefore loaded and folded as
exactly what the authors' inference computes; edgesdk logs a warning naming lambda and
records it in the manifest (``extra.slab.prepbn_lambda_max``), because such a network was
trained with lambda * LN + (1 - lambda) * RepBN and its eval accuracy is whatever RepBN alone
gives.

All four models use the names shared across edgesdk families (``patch_embed``, ``blocks``,
``norm``, ``head``); DeiT's and Swin's are the authors' own. PVT and CSwin number their
stages in attribute names upstream (``patch_embed1``, ``block1``; ``stage1_conv_embed``,
``merge1``, ``stage1``): here they are ModuleLists indexed by stage, and the checkpoint remap
rewrites the authors' keys (``remap_checkpoint``).
"""
from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesdk.errors import CheckpointError, UsageError
from edgesdk.models.checkpoints import strip_prefix
from edgesdk.models.layers import Attention, Mlp, PatchEmbed, init_linear_, merge_heads, softmax_attention, split_heads
from edgesdk.models.options import BOOLEAN, ExportOptions, integer, option
from edgesdk.models.registry import Family, Preset
from edgesdk.spec import ExportSpec

log = logging.getLogger(__name__)

ARCHITECTURES = ("deit", "swin", "pvt", "cswin")
NORMS = ("linearnorm", "repbn")
# The authors' normaliser epsilon in simplified linear attention: z = 1 / (q . sum(k) + 1e-6).
SLA_EPSILON = 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlabConfig:
    """Architecture of one SLAB classification model.

    Per-stage tuples have one entry per stage (DeiT has a single stage).

    Attributes:
        architecture: "deit", "swin", "pvt" or "cswin".
        image_size: input side in pixels (square). Fixed: SLA positional encodings and the
            DeiT/PVT position embeddings have one entry per token.
        patch_size: stem stride in pixels (16 for DeiT, 4 otherwise).
        embed_dims: channels per stage.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        mlp_ratios: MLP hidden width / channels, per stage.
        attention: one letter per stage: "L" simplified linear attention, "S" softmax.
        norm: "linearnorm" (PRepBN with progress counters and a dead LayerNorm) or "repbn"
            (bare RepBN, as in DeiT-T-PRepBN and Swin-T-PRepBN).
        layernorm_eps: epsilon of the PRepBN LayerNorm branch (training only).
        prepbn_steps: length of the PRepBN schedule in forward calls (``total_step`` buffer).
        class_token: DeiT-PRepBN classifies from a class token; SLAB-DeiT mean-pools.
        window_size: Swin softmax window side in tokens; SLA stages attend globally.
        sr_ratios: PVT softmax spatial-reduction ratio per stage.
        split_sizes: CSwin softmax stripe width per stage.
        kernel_size: side of the depthwise conv on V in SLA.
        num_classes: classifier outputs.
        upstream_type: the ``MODEL.TYPE`` (or ``MODEL.NAME`` for DeiT) of the authors' yacs
            config, checked against a checkpoint's own config.
    """

    architecture: str = "deit"
    image_size: int = 224
    patch_size: int = 16
    embed_dims: tuple[int, ...] = (192,)
    depths: tuple[int, ...] = (12,)
    num_heads: tuple[int, ...] = (3,)
    mlp_ratios: tuple[float, ...] = (4.0,)
    attention: str = "L"
    norm: str = "linearnorm"
    layernorm_eps: float = 1e-6
    prepbn_steps: int = 60000
    class_token: bool = False
    window_size: int = 7
    sr_ratios: tuple[int, ...] = (1,)
    split_sizes: tuple[int, ...] = (7,)
    kernel_size: int = 5
    num_classes: int = 1000
    in_channels: int = 3
    qkv_bias: bool = True
    upstream_type: str = ""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise UsageError(f"architecture must be one of {', '.join(ARCHITECTURES)}, not {self.architecture!r}")
        if self.norm not in NORMS:
            raise UsageError(f"norm must be one of {', '.join(NORMS)}, not {self.norm!r}")
        stages = len(self.depths)
        per_stage = {"embed_dims": self.embed_dims, "num_heads": self.num_heads,
                     "mlp_ratios": self.mlp_ratios, "attention": self.attention}
        if self.architecture == "pvt":
            per_stage["sr_ratios"] = self.sr_ratios
        if self.architecture == "cswin":
            per_stage["split_sizes"] = self.split_sizes
        for name, value in per_stage.items():
            if len(value) != stages:
                raise UsageError(f"{name} has {len(value)} entries but depths has {stages} stages")
        if set(self.attention) - {"L", "S"}:
            raise UsageError(f"attention letters must be L (linear) or S (softmax), not {self.attention!r}")
        for dim, heads in zip(self.embed_dims, self.num_heads):
            if dim % heads:
                raise UsageError(f"{dim} channels do not split into {heads} heads")
        if self.architecture == "deit" and stages != 1:
            raise UsageError("deit has exactly one stage")
        if self.image_size % self.patch_size:
            raise UsageError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for stage, side in enumerate(self.resolutions):
            if side < 1:
                raise UsageError(f"image_size {self.image_size} leaves no tokens in stage {stage + 1}")
        if self.architecture == "swin":
            for stage, side in enumerate(self.resolutions):
                if self.attention[stage] == "S" and side > self.window_size and side % self.window_size:
                    raise UsageError(f"swin stage {stage + 1}: {side}x{side} tokens do not tile into "
                                     f"{self.window_size}x{self.window_size} windows")
            for side in self.resolutions[:-1]:
                if side % 2:
                    raise UsageError(f"swin patch merging needs an even token grid, not {side}x{side}")
        if self.architecture == "cswin":
            for stage, side in enumerate(self.resolutions):
                split = self.split_sizes[stage]
                if self.attention[stage] == "S" and side != split and (side % split or self.num_heads[stage] % 2):
                    raise UsageError(f"cswin stage {stage + 1}: stripes of {split} do not tile {side} "
                                     "tokens into two head groups")
        if self.kernel_size % 2 == 0:
            raise UsageError("kernel_size must be odd so the depthwise conv keeps the token grid")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Token grid side per stage (each stage halves it)."""
        first = self.image_size // self.patch_size
        return tuple(first // 2 ** stage for stage in range(len(self.depths)))


# --------------------------------------------------------------------------------------------
# Normalization: RepBN and PRepBN
# --------------------------------------------------------------------------------------------


class RepBN(nn.Module):
    """BatchNorm over the channels of (B, N, C) tokens plus a learned scalar times identity.

    RepBN(x) = BN(x) + alpha * x; statistics are per channel over batch and tokens.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BatchNorm1d wants channels on axis 1: (B, N, C) -> (B, C, N) and back.
        return self.bn(x.transpose(1, 2)).transpose(1, 2) + self.alpha * x

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode RepBN as ``scale * x + shift``, both of shape [C]."""
        bn = self.bn
        inverse_std = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        scale = inverse_std + self.alpha
        shift = bn.bias - bn.running_mean * inverse_std
        return scale, shift


class LinearNorm(nn.Module):
    """PRepBN: lambda * LayerNorm(x) + (1 - lambda) * RepBN(x) in training, RepBN in eval.

    lambda = iter / total_step falls by one step per training forward call. The counters are
    int64 buffers saved in the authors' checkpoints; ``warm`` counts pure-LayerNorm warm-up
    calls (0 for every released classification model).
    """

    def __init__(self, channels: int, layernorm_eps: float, steps: int, warm: int = 0) -> None:
        super().__init__()
        self.register_buffer("warm", torch.tensor(warm))
        self.register_buffer("iter", torch.tensor(steps))
        self.register_buffer("total_step", torch.tensor(steps))
        self.norm1 = nn.LayerNorm(channels, eps=layernorm_eps)
        self.norm2 = RepBN(channels)

    @property
    def progress(self) -> float:
        """The current lambda (weight of the LayerNorm branch in training), in [0, 1]."""
        return float(self.iter) / max(float(self.total_step), 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.norm2(x)
        if self.warm > 0:
            self.warm.sub_(1)
            return self.norm1(x)
        lam = self.iter.float() / self.total_step.float()
        if self.iter > 0:
            self.iter.sub_(1)
        return lam * self.norm1(x) + (1 - lam) * self.norm2(x)

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What eval computes (RepBN only) as ``scale * x + shift``."""
        return self.norm2.affine()


def make_norm(config: SlabConfig, channels: int) -> nn.Module:
    if config.norm == "repbn":
        return RepBN(channels)
    return LinearNorm(channels, config.layernorm_eps, config.prepbn_steps)


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


def simplified_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                                grid: tuple[int, int], dwc: nn.Conv2d) -> torch.Tensor:
    """SLA core on projected (B, N, C) q, k, v (k already holds its positional encoding).

    out = relu(q) (relu(k)^T v) / (relu(q) . sum_n relu(k) + 1e-6) + DWC(v), per head, with
    ``dwc`` the [d, 1, k, k] depthwise kernel the authors share between heads. Tokens are a
    row-major raster of ``grid`` = (H, W). Computed in the input dtype: keep it float32 (in
    float16, 1 / 1e-6 overflows).
    """
    B, N, C = q.shape
    d = C // heads
    q, k = F.relu(q), F.relu(k)
    # (B, N, C) -> (B, heads, N, d): channel index = head * d + j (head-major).
    qh = q.reshape(B, N, heads, d).transpose(1, 2)
    kh = k.reshape(B, N, heads, d).transpose(1, 2)
    vh = v.reshape(B, N, heads, d).transpose(1, 2)
    kv = kh.transpose(-2, -1) @ vh  # (B, heads, d, d)
    k_sum = kh.sum(dim=2, keepdim=True)  # (B, heads, 1, d)
    normaliser = 1.0 / (qh @ k_sum.transpose(-2, -1) + SLA_EPSILON)  # (B, heads, N, 1)
    out = (qh @ kv) * normaliser
    out = out.transpose(1, 2).reshape(B, N, C)
    # The shared per-head kernel tiled over heads is one depthwise conv over all C channels:
    # the same arithmetic as the authors' (B * heads) batch folding, with no transposes of
    # the batch.
    H, W = grid
    v_map = v.reshape(B, H, W, C).permute(0, 3, 1, 2)
    weight = dwc.weight.repeat(heads, 1, 1, 1)
    bias = dwc.bias.repeat(heads)
    local = F.conv2d(v_map, weight, bias, padding=dwc.padding, groups=C)
    return out + local.flatten(2).transpose(1, 2)


class SimplifiedLinearAttention(nn.Module):
    """SLA with a fused qkv projection (SLAB-DeiT, SLAB-Swin), over a square token grid."""

    def __init__(self, dim: int, heads: int, grid: tuple[int, int], config: SlabConfig) -> None:
        super().__init__()
        self.heads = heads
        self.grid = grid
        head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=config.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(head_dim, head_dim, config.kernel_size, padding=config.kernel_size // 2,
                             groups=head_dim)
        self.positional_encoding = nn.Parameter(torch.zeros(1, grid[0] * grid[1], dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        k = k + self.positional_encoding
        return self.proj(simplified_linear_attention(q, k, v, self.heads, self.grid, self.dwc))


def relative_position_index(window: int) -> torch.Tensor:
    """Swin's [window^2, window^2] index into the (2w-1)^2 relative-bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


class WindowAttention(Attention):
    """Swin softmax attention inside windows, with the learned relative-position bias."""

    def __init__(self, dim: int, heads: int, window: int, config: SlabConfig) -> None:
        super().__init__(dim, heads, config.qkv_bias)
        self.window = window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x [batch * windows, window^2, C]; mask [windows, window^2, window^2] or None."""
        N = x.shape[1]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return self.attend(x, bias.reshape(N, N, self.heads).permute(2, 0, 1), mask)


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------


class Block(nn.Module):
    """Pre-norm block of DeiT and PVT: x + attn(norm1(x)), then x + mlp(norm2(x)).

    ``attn`` maps tokens (B, N, C) to (B, N, C): SLA, softmax attention, PVT's attention.
    """

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float, config: SlabConfig) -> None:
        super().__init__()
        self.norm1 = make_norm(config, dim)
        self.attn = attn
        self.norm2 = make_norm(config, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def window_order(side: int, window: int, shift: int) -> torch.Tensor:
    """Token permutation doing Swin's roll by -shift then window partition on a side x side grid.

    Entry i of the result is the raster index of the token that lands at position i of the
    window-major order (window by window, row-major inside a window).
    """
    rows = torch.arange(side)
    grid = (rows[:, None] * side + rows[None, :])
    rolled = torch.roll(grid, shifts=(-shift, -shift), dims=(0, 1))
    tiles = side // window
    return rolled.reshape(tiles, window, tiles, window).permute(0, 2, 1, 3).reshape(-1)


def shifted_window_mask(side: int, window: int, shift: int) -> torch.Tensor:
    """Swin's additive mask [windows, window^2, window^2]: -100 between tokens that the roll
    brought together from different regions, 0 elsewhere."""
    region = torch.zeros(side, side)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in bounds:
        for cols in bounds:
            region[rows, cols] = label
            label += 1
    # The region map is not rolled: the authors label the already-shifted grid.
    identity = window_order(side, window, 0)
    labels = region.reshape(-1)[identity].reshape(-1, window * window)
    different = labels[:, None, :] != labels[:, :, None]
    return torch.zeros(different.shape).masked_fill(different, -100.0)


class SwinBlock(nn.Module):
    """Swin block: SLA over the whole stage map ("L") or softmax (shifted) windows ("S")."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, side: int, attention: str, shifted: bool,
                 config: SlabConfig) -> None:
        super().__init__()
        self.side = side
        self.attention_type = attention
        # A window at least as large as the map is one window, never shifted (as upstream).
        window = min(config.window_size, side) if attention == "S" else side
        shift = window // 2 if (shifted and side > window) else 0
        self.window = window
        self.shift = shift
        self.norm1 = make_norm(config, dim)
        if attention == "L":
            self.attn: nn.Module = SimplifiedLinearAttention(dim, heads, (side, side), config)
        else:
            self.attn = WindowAttention(dim, heads, window, config)
        self.norm2 = make_norm(config, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # Upstream saves the shifted-window mask in its checkpoints (absent when shift is 0).
        self.register_buffer("attn_mask", shifted_window_mask(side, window, shift) if shift else None)
        if attention == "S" and (window < side or shift):
            order = window_order(side, window, shift)
            self.register_buffer("token_order", order, persistent=False)
            self.register_buffer("token_restore", torch.argsort(order), persistent=False)
        else:
            self.token_order = None
            self.token_restore = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.attention_type == "L":
            x = self.attn(x)
        else:
            B, L, C = x.shape
            if self.token_order is not None:
                x = x.index_select(1, self.token_order)
            # window-major tokens (B, windows * window^2, C) -> (B * windows, window^2, C)
            x = self.attn(x.reshape(-1, self.window * self.window, C), self.attn_mask)
            x = x.reshape(B, L, C)
            if self.token_restore is not None:
                x = x.index_select(1, self.token_restore)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Swin downsampling: concatenate 2x2 neighbours (4C), norm, Linear(4C -> 2C, no bias)."""

    def __init__(self, dim: int, side: int, config: SlabConfig) -> None:
        super().__init__()
        self.side = side
        self.norm = make_norm(config, 4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        x = x.reshape(B, self.side, self.side, C)
        # Upstream order: (row 0, col 0), (row 1, col 0), (row 0, col 1), (row 1, col 1).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(B, -1, 4 * C)))


class PvtAttention(nn.Module):
    """PVT attention with separate q and kv projections: SLA ("L", sr = 1) or softmax with
    spatial reduction of keys and values by a strided conv + norm ("S")."""

    def __init__(self, dim: int, heads: int, side: int, attention: str, sr_ratio: int,
                 config: SlabConfig) -> None:
        super().__init__()
        self.heads = heads
        self.side = side
        self.linear = attention == "L"
        # Shipped SLAB-PVT runs SLA with sr = 1 (PVT_LA_SR_RATIOS 1111); only that is built.
        self.sr_ratio = 1 if self.linear else sr_ratio
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=config.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if self.sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, self.sr_ratio, stride=self.sr_ratio)
            self.norm = make_norm(config, dim)
        if self.linear:
            head_dim = dim // heads
            self.dwc = nn.Conv2d(head_dim, head_dim, config.kernel_size, padding=config.kernel_size // 2,
                                 groups=head_dim)
            self.positional_encoding = nn.Parameter(torch.zeros(1, side * side, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q = self.q(x)
        if self.sr_ratio > 1:
            # (B, N, C) -> (B, C, H, W) -> strided conv -> (B, N / sr^2, C)
            reduced = self.sr(x.transpose(1, 2).reshape(B, C, self.side, self.side))
            x = self.norm(reduced.flatten(2).transpose(1, 2))
        k, v = self.kv(x).chunk(2, dim=-1)
        if self.linear:
            k = k + self.positional_encoding
            out = simplified_linear_attention(q, k, v, self.heads, (self.side, self.side), self.dwc)
            return self.proj(out)
        q, k, v = (split_heads(part, self.heads) for part in (q, k, v))
        return self.proj(merge_heads(softmax_attention(q, k, v, self.scale)))


class CswinLinearAttention(nn.Module):
    """CSwin SLA branch over the whole map: SLA + depthwise conv on V + CSwin's 3x3 LePE."""

    def __init__(self, dim: int, heads: int, side: int, config: SlabConfig) -> None:
        super().__init__()
        self.heads = heads
        self.side = side
        head_dim = dim // heads
        self.get_v = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.dwc = nn.Conv2d(head_dim, head_dim, config.kernel_size, padding=config.kernel_size // 2,
                             groups=head_dim)
        # Present in the authors' checkpoints, never used in their forward.
        self.scale = nn.Parameter(torch.zeros(1, 1, dim))
        self.positional_encoding = nn.Parameter(torch.zeros(1, side * side, dim))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, N, C = q.shape
        k = k + self.positional_encoding
        out = simplified_linear_attention(q, k, v, self.heads, (self.side, self.side), self.dwc)
        lepe = self.get_v(v.transpose(1, 2).reshape(B, C, self.side, self.side))
        return out + lepe.flatten(2).transpose(1, 2)


class CswinStripeAttention(nn.Module):
    """CSwin softmax attention inside stripes of ``stripe_h`` x ``stripe_w`` tokens, plus LePE
    (a 3x3 depthwise conv on V computed inside each stripe)."""

    def __init__(self, dim: int, heads: int, side: int, stripe_h: int, stripe_w: int) -> None:
        super().__init__()
        self.heads = heads
        self.side = side
        self.stripe_h, self.stripe_w = stripe_h, stripe_w
        self.scale = (dim // heads) ** -0.5
        self.get_v = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def _to_stripes(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H*W, C) -> (B * stripes, stripe_h, stripe_w, C), stripes row-major
        B, N, C = x.shape
        h, w = self.stripe_h, self.stripe_w
        x = x.reshape(B, self.side // h, h, self.side // w, w * C)
        x = x.permute(0, 1, 3, 2, 4)
        return x.reshape(-1, h, w, C)

    def _from_stripes(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        h, w = self.stripe_h, self.stripe_w
        C = x.shape[-1]
        x = x.reshape(batch, self.side // h, self.side // w, h, w * C).permute(0, 1, 3, 2, 4)
        return x.reshape(batch, self.side * self.side, C)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, N, C = q.shape
        d = C // self.heads
        n = self.stripe_h * self.stripe_w
        qh, kh = (split_heads(self._to_stripes(t).reshape(-1, n, C), self.heads) for t in (q, k))
        v_stripes = self._to_stripes(v)  # (B', h, w, C)
        lepe = self.get_v(v_stripes.permute(0, 3, 1, 2))  # conv inside each stripe
        lepe = lepe.reshape(-1, self.heads, d, n).transpose(-2, -1)
        vh = split_heads(v_stripes.reshape(-1, n, C), self.heads)
        out = softmax_attention(qh, kh, vh, self.scale) + lepe  # (B', heads, n, d)
        out = out.transpose(1, 2).reshape(-1, self.stripe_h, self.stripe_w, C)
        return self._from_stripes(out, B)


class CswinBlock(nn.Module):
    """CSwin block: norm1 -> qkv -> two stripe-orientation branches over half the channels
    each (one branch over the whole map in the last stage or where SLA covers the map)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, side: int, attention: str, split: int,
                 config: SlabConfig) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=config.qkv_bias)
        self.norm1 = make_norm(config, dim)
        self.proj = nn.Linear(dim, dim)
        # SLA stages use the whole map as their "stripe" (CSWIN_LA_SPLIT_SIZE 56-28-14-7).
        whole_map = attention == "L" or split == side
        if attention == "L":
            self.attns = nn.ModuleList([CswinLinearAttention(dim, heads, side, config)])
        elif whole_map:
            self.attns = nn.ModuleList([CswinStripeAttention(dim, heads, side, side, side)])
        else:
            self.attns = nn.ModuleList([
                CswinStripeAttention(dim // 2, heads // 2, side, side, split),  # vertical stripes
                CswinStripeAttention(dim // 2, heads // 2, side, split, side),  # horizontal stripes
            ])
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm2 = make_norm(config, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[-1]
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        if len(self.attns) == 2:
            half = C // 2
            attended = torch.cat([self.attns[0](q[..., :half], k[..., :half], v[..., :half]),
                                  self.attns[1](q[..., half:], k[..., half:], v[..., half:])], dim=-1)
        else:
            attended = self.attns[0](q, k, v)
        x = x + self.proj(attended)
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldSite:
    """One RepBN and the layer it folds into.

    ``owner.<name>`` is the norm. Either ``consumers`` read its output (a pre-norm: fold into
    their input side), or ``producer`` wrote its input (a post-norm after a conv or linear:
    fold into its output side).
    """

    owner: nn.Module
    name: str
    consumers: tuple[nn.Module, ...] = ()
    producer: nn.Module | None = None


def check_image(config: SlabConfig, image: torch.Tensor) -> None:
    """Raise UsageError unless ``image`` is (B, in_channels, image_size, image_size)."""
    expected = (config.in_channels, config.image_size, config.image_size)
    if image.dim() != 4 or tuple(image.shape[1:]) != expected:
        raise UsageError(
            f"SLAB models take images of shape (batch, {expected[0]}, {expected[1]}, {expected[2]}), "
            f"got {tuple(image.shape)}; the resolution is fixed by the position encodings of this preset"
        )


class SlabClassifier(nn.Module):
    """What the four SLAB models share: ``forward(image) = head(forward_features(image))``,
    images (B, 3, S, S) -> logits (B, classes); ``repbn_sites`` lists every foldable norm."""

    head: nn.Linear

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(image))

    def repbn_sites(self) -> Iterator[FoldSite]:
        raise NotImplementedError


class SlabDeit(SlabClassifier):
    """DeiT with SLA (SLAB-DeiT: mean-pooled, no class token) or softmax (DeiT-PRepBN: class
    token) and PRepBN everywhere; the stem has no norm."""

    def __init__(self, config: SlabConfig) -> None:
        super().__init__()
        self.config = config
        dim, side = config.embed_dims[0], config.resolutions[0]
        self.patch_embed = PatchEmbed(config.in_channels, dim, config.patch_size, config.patch_size)
        # SLAB-DeiT stores an unused class token; kept so its checkpoints load strictly.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side + int(config.class_token), dim))
        self.blocks = nn.Sequential(*[
            Block(dim, self._attention(config), config.mlp_ratios[0], config) for _ in range(config.depths[0])])
        self.norm = make_norm(config, dim)
        self.head = nn.Linear(dim, config.num_classes)

    @staticmethod
    def _attention(config: SlabConfig) -> nn.Module:
        dim, side, heads = config.embed_dims[0], config.resolutions[0], config.num_heads[0]
        if config.attention[0] == "L":
            return SimplifiedLinearAttention(dim, heads, (side, side), config)
        return Attention(dim, heads, config.qkv_bias)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, C) of images (B, 3, S, S)."""
        check_image(self.config, image)
        x = self.patch_embed(image)
        if self.config.class_token:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.blocks(x + self.pos_embed))
        return x[:, 0] if self.config.class_token else x.mean(dim=1)

    def repbn_sites(self) -> Iterator[FoldSite]:
        for block in self.blocks:
            yield FoldSite(block, "norm1", consumers=(block.attn.qkv,))
            yield FoldSite(block, "norm2", consumers=(block.mlp.fc1,))
        # Mean pooling (or taking the class token) is linear, so the final norm folds into the head.
        yield FoldSite(self, "norm", consumers=(self.head,))


class SwinStage(nn.Module):
    def __init__(self, stage: int, config: SlabConfig) -> None:
        super().__init__()
        dim, side = config.embed_dims[stage], config.resolutions[stage]
        self.blocks = nn.ModuleList([
            SwinBlock(dim, config.num_heads[stage], config.mlp_ratios[stage], side, config.attention[stage],
                      shifted=index % 2 == 1, config=config)
            for index in range(config.depths[stage])])
        last = stage == len(config.depths) - 1
        self.downsample = None if last else PatchMerging(dim, side, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class SlabSwin(SlabClassifier):
    """Swin with global SLA in the "L" stages and shifted-window softmax in the "S" stages
    (SLAB-Swin: LLSS; Swin-T-PRepBN: SSSS), PRepBN everywhere including the stem."""

    def __init__(self, config: SlabConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.in_channels, config.embed_dims[0], config.patch_size,
                                      config.patch_size, norm=make_norm(config, config.embed_dims[0]))
        self.layers = nn.ModuleList([SwinStage(stage, config) for stage in range(len(config.depths))])
        self.norm = make_norm(config, config.embed_dims[-1])
        self.head = nn.Linear(config.embed_dims[-1], config.num_classes)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        check_image(self.config, image)
        x = self.patch_embed(image)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).mean(dim=1)

    def repbn_sites(self) -> Iterator[FoldSite]:
        yield FoldSite(self.patch_embed, "norm", producer=self.patch_embed.proj)
        for layer in self.layers:
            for block in layer.blocks:
                yield FoldSite(block, "norm1", consumers=(block.attn.qkv,))
                yield FoldSite(block, "norm2", consumers=(block.mlp.fc1,))
            if layer.downsample is not None:
                yield FoldSite(layer.downsample, "norm", consumers=(layer.downsample.reduction,))
        yield FoldSite(self, "norm", consumers=(self.head,))


class SlabPvt(SlabClassifier):
    """PVT with SLA ("L", SLAB-PVT) or spatial-reduction softmax ("S", PVT-PRepBN) stages.

    Each stage has a strided-conv stem with a post-norm (``patch_embed[stage]``) and a learned
    position embedding (``pos_embed[stage]``); there is no final norm (upstream left it out)
    and the head reads mean-pooled tokens. Upstream's ``patch_embed1``, ``pos_embed1``,
    ``block1``... are ``patch_embed.0``, ``pos_embed.0``, ``blocks.0``... here.
    """

    def __init__(self, config: SlabConfig) -> None:
        super().__init__()
        self.config = config
        self.num_stages = len(config.depths)
        embeds, positions, stages = [], [], []
        # Stage by stage, as upstream builds them (the seeded default init follows this order).
        for stage in range(self.num_stages):
            dim, side = config.embed_dims[stage], config.resolutions[stage]
            in_channels = config.in_channels if stage == 0 else config.embed_dims[stage - 1]
            patch = config.patch_size if stage == 0 else 2
            embeds.append(PatchEmbed(in_channels, dim, patch, patch, norm=make_norm(config, dim)))
            positions.append(nn.Parameter(torch.zeros(1, side * side, dim)))
            stages.append(nn.ModuleList([
                Block(dim, PvtAttention(dim, config.num_heads[stage], side, config.attention[stage],
                                        config.sr_ratios[stage], config), config.mlp_ratios[stage], config)
                for _ in range(config.depths[stage])]))
        self.patch_embed = nn.ModuleList(embeds)
        self.pos_embed = nn.ParameterList(positions)
        self.blocks = nn.ModuleList(stages)
        self.head = nn.Linear(config.embed_dims[-1], config.num_classes)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        check_image(self.config, image)
        x = image
        B = image.shape[0]
        for stage, (embed, position, blocks) in enumerate(zip(self.patch_embed, self.pos_embed, self.blocks)):
            side = self.config.resolutions[stage]
            x = embed(x) + position
            for block in blocks:
                x = block(x)
            if stage < self.num_stages - 1:
                x = x.transpose(1, 2).reshape(B, -1, side, side)  # tokens -> (B, C, H, W)
        return x.mean(dim=1)

    def repbn_sites(self) -> Iterator[FoldSite]:
        for embed, blocks in zip(self.patch_embed, self.blocks):
            yield FoldSite(embed, "norm", producer=embed.proj)
            for block in blocks:
                attn = block.attn
                if attn.sr_ratio > 1:
                    # norm1 feeds q and the spatial-reduction conv; the sr norm feeds kv.
                    yield FoldSite(block, "norm1", consumers=(attn.q, attn.sr))
                    yield FoldSite(attn, "norm", consumers=(attn.kv,))
                else:
                    yield FoldSite(block, "norm1", consumers=(attn.q, attn.kv))
                yield FoldSite(block, "norm2", consumers=(block.mlp.fc1,))


class SlabCswin(SlabClassifier):
    """CSwin with whole-map SLA ("L") stages and cross-shaped stripe softmax ("S") stages.

    ``patch_embed[0]`` is the 7x7 stride-4 conv stem, ``patch_embed[s]`` (s > 0) the 3x3
    stride-2 merge conv before stage s; each has a post-norm. Upstream's
    ``stage1_conv_embed``, ``merge1``, ``stage1``... are ``patch_embed.0``, ``patch_embed.1``,
    ``blocks.0``... here.
    """

    def __init__(self, config: SlabConfig) -> None:
        super().__init__()
        self.config = config
        self.num_stages = len(config.depths)
        dims, sides = config.embed_dims, config.resolutions
        # 7x7 stride-4 conv stem; upstream's padding of 2 keeps S / 4 tokens per side.
        embeds = [PatchEmbed(config.in_channels, dims[0], 7, 4, padding=2, norm=make_norm(config, dims[0]))]
        stages = []
        # In upstream's order (the seeded default init follows it): merge s, then stage s + 1.
        for stage in range(self.num_stages):
            if stage > 0:
                embeds.append(PatchEmbed(dims[stage - 1], dims[stage], 3, 2, padding=1,
                                         norm=make_norm(config, dims[stage])))
            stages.append(nn.ModuleList([
                CswinBlock(dims[stage], config.num_heads[stage], config.mlp_ratios[stage], sides[stage],
                           config.attention[stage], config.split_sizes[stage], config)
                for _ in range(config.depths[stage])]))
        self.patch_embed = nn.ModuleList(embeds)
        self.blocks = nn.ModuleList(stages)
        self.norm = make_norm(config, dims[-1])
        self.head = nn.Linear(dims[-1], config.num_classes)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        check_image(self.config, image)
        x = image
        B = image.shape[0]
        for stage, (embed, blocks) in enumerate(zip(self.patch_embed, self.blocks)):
            if stage > 0:
                side = self.config.resolutions[stage - 1]
                x = x.transpose(1, 2).reshape(B, -1, side, side)  # tokens -> (B, C, H, W)
            x = embed(x)
            for block in blocks:
                x = block(x)
        return self.norm(x).mean(dim=1)

    def repbn_sites(self) -> Iterator[FoldSite]:
        for embed, blocks in zip(self.patch_embed, self.blocks):
            yield FoldSite(embed, "norm", producer=embed.proj)
            for block in blocks:
                yield FoldSite(block, "norm1", consumers=(block.qkv,))
                yield FoldSite(block, "norm2", consumers=(block.mlp.fc1,))
        yield FoldSite(self, "norm", consumers=(self.head,))


MODEL_CLASSES = {"deit": SlabDeit, "swin": SlabSwin, "pvt": SlabPvt, "cswin": SlabCswin}


# Seeded noise images whose activations set the running statistics of a seeded model's norms.
CALIBRATION_IMAGES = 4


def _init_weights(model: nn.Module) -> None:
    """The authors' initialisation, the same in all four families (``_init_weights`` and
    ``init_weights`` of classification/models/{slab_deit, deit, slab_swin, swin_transformer,
    slab_pvt, slab_cswin}.py at f58db00): every Linear truncated-normal(std 0.02) with zero
    bias; DeiT's and PVT's position embeddings, DeiT's class token and Swin's relative-position
    bias table truncated-normal(std 0.02); everything else as constructed, i.e. convolutions
    at PyTorch's default, SLA positional encodings and CSwin's ``scale`` at 0, LayerNorm and
    BatchNorm at weight 1 / bias 0 / running mean 0 / running var 1, RepBN alpha at 1.
    (Only slab_pvt_v2.py, which edgesdk does not build, gives convolutions normal(0,
    sqrt(2 / fan_out)).) PRepBN counters are set to the end of the schedule (lambda = 0), as
    in a finished training run."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            # timm's trunc_normal_(std=0.02) cuts at +-2 (absolute), i.e. a plain normal here.
            init_linear_(module, truncate=False)
        elif isinstance(module, LinearNorm):
            module.iter.zero_()
        elif isinstance(module, WindowAttention):
            nn.init.normal_(module.relative_position_bias_table, std=0.02)
    for name, parameter in model.named_parameters():
        if re.search(r"(^|\.)(pos_embed(\.\d+)?|cls_token)$", name):
            nn.init.normal_(parameter, std=0.02)


def recalibrate_repbn(model: nn.Module, images: torch.Tensor) -> None:
    """Set every RepBN's running mean and variance to the statistics of its input on ``images``.

    This is the authors' closing step (``update_model`` in classification/main.py): the model
    in eval mode except its BatchNorms, which see the batch in training mode; no gradients.
    Here the statistics are the plain average over ``images`` (one batch, (B, 3, S, S)), not
    a momentum average. Weights, BatchNorm affine and alpha are left as they are.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm1d)]
    momenta = [norm.momentum for norm in norms]
    was_training = model.training
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: after one batch, exactly its statistics
        norm.train()
    with torch.no_grad():
        model(images)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)


def build(config: SlabConfig) -> nn.Module:
    """A SLAB model for ``config`` with seeded stand-in weights: the authors' initialisation,
    then their BatchNorm recalibration on seeded noise images.

    The recalibration is what conditions the stand-in like a trained network. At init every
    RepBN holds running mean 0 and variance 1, so in eval it is the fixed map
    x / sqrt(1 + eps) + alpha x ~ 2x, not a normaliser: the residual stream grows block by
    block, and in deep softmax stacks (SLAB-Swin-S stage 3, PVT-M) attention logits spread
    over thousands, where float32 rounding flips the softmax. With the statistics of its own
    input each RepBN centres and scales it as in a trained network. A checkpoint, when
    loaded, replaces all of it.
    """
    model = MODEL_CLASSES[config.architecture](config)
    # Follows the authors' init and BN recalibration, so seeded models are conditioned like theirs.
    _init_weights(model)
    side = config.image_size
    if next(model.parameters()).device.type != "meta":  # a meta build only counts parameters
        recalibrate_repbn(model, torch.randn(CALIBRATION_IMAGES, config.in_channels, side, side))
    return model


# --------------------------------------------------------------------------------------------
# Folding RepBN away
# --------------------------------------------------------------------------------------------


def prepbn_progress(model: nn.Module) -> dict[str, float]:
    """Lambda (LayerNorm weight of the progressive schedule) of every PRepBN still mid-way."""
    return {name: module.progress for name, module in model.named_modules()
            if isinstance(module, LinearNorm) and module.progress > 0}


def _fold_into_consumer(layer: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """layer(scale * x + shift) == layer'(x): scale the input channels, absorb the shift."""
    weight = layer.weight.double()
    if isinstance(layer, nn.Linear):
        absorbed = weight @ shift  # W t
        new_weight = weight * scale
    elif isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.padding in ((0, 0), 0, "valid"):
        # Without padding every output sees a full window of shifted inputs: sum_khw W t.
        absorbed = weight.sum(dim=(2, 3)) @ shift
        new_weight = weight * scale[None, :, None, None]
    else:
        raise UsageError(f"cannot fold a norm into the input side of {layer}")
    bias = absorbed if layer.bias is None else layer.bias.double() + absorbed
    layer.weight.data.copy_(new_weight.to(layer.weight.dtype))
    if layer.bias is None:
        # Swin's patch-merging reduction has no bias: it gains one (W t).
        layer.bias = nn.Parameter(bias.to(layer.weight.dtype))
    else:
        layer.bias.data.copy_(bias.to(layer.bias.dtype))


def _fold_into_producer(layer: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """scale * layer(x) + shift == layer'(x): scale the output channels, bias -> s b + t.

    The ``scale * bias`` part holds the alpha * bias term that upstream's Swin fold drops.
    """
    weight = layer.weight.double()
    view = (-1,) + (1,) * (weight.dim() - 1)
    layer.weight.data.copy_((weight * scale.reshape(view)).to(layer.weight.dtype))
    bias = shift if layer.bias is None else scale * layer.bias.double() + shift
    if layer.bias is None:
        layer.bias = nn.Parameter(bias.to(layer.weight.dtype))
    else:
        layer.bias.data.copy_(bias.to(layer.bias.dtype))


def fold_repbn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every RepBN merged into its neighbouring layer.

    Pre-norms fold into the layers that read them (qkv, q/kv, the PVT reduction conv, fc1,
    the patch-merging reduction, and the head through the linear mean pooling); post-norms
    fold into the conv stem or merge conv that feeds them. Each norm becomes ``nn.Identity``,
    so the copy holds no BatchNorm, LayerNorm or progress counter. The copy computes what the
    original computes in eval mode, up to float32 rounding (the fold itself runs in float64).
    ``model`` is left untouched.
    """
    if not hasattr(model, "repbn_sites"):
        raise UsageError(f"fold_repbn takes a SLAB model, not {type(model).__name__}")
    progress = prepbn_progress(model)
    if progress:
        log.warning(
            "%d PRepBN norms are mid-schedule (lambda up to %.4f): folding what the authors' eval "
            "path computes (RepBN only, the LayerNorm branch ignored)", len(progress), max(progress.values()))
    folded = copy.deepcopy(model).eval()
    count = 0
    with torch.no_grad():
        for site in list(folded.repbn_sites()):
            norm = getattr(site.owner, site.name)
            if isinstance(norm, nn.Identity):
                continue  # already folded
            scale, shift = (tensor.double() for tensor in norm.affine())
            scale = scale.expand_as(shift)
            if site.producer is not None:
                _fold_into_producer(site.producer, scale, shift)
            for consumer in site.consumers:
                _fold_into_consumer(consumer, scale, shift)
            setattr(site.owner, site.name, nn.Identity())
            count += 1
    folded.folded_norms = count
    return folded


def count_norms(model: nn.Module) -> int:
    """RepBN and PRepBN norms left in ``model`` (a PRepBN counts once, not with its RepBN)."""
    inner = {id(module.norm2) for module in model.modules() if isinstance(module, LinearNorm)}
    return sum(isinstance(module, LinearNorm) or (isinstance(module, RepBN) and id(module) not in inner)
               for module in model.modules())


# --------------------------------------------------------------------------------------------
# The authors' checkpoints
# --------------------------------------------------------------------------------------------

def _stage(match: re.Match[str]) -> int:
    """Upstream numbers stages from 1 in attribute names; edgesdk's lists count from 0."""
    return int(match["s"]) - 1


# The authors' key names -> edgesdk's, for the keys whose names differ (PVT and CSwin; DeiT's
# and Swin's keys are the same in both). Each rule matches a whole key.
_REWRITES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    # PVT (slab_pvt.py): patch_embed1..4, pos_embed1..4, block1..4.
    (re.compile(r"patch_embed(?P<s>\d+)\.(?P<rest>.+)"), lambda m: f"patch_embed.{_stage(m)}.{m['rest']}"),
    (re.compile(r"pos_embed(?P<s>\d+)"), lambda m: f"pos_embed.{_stage(m)}"),
    (re.compile(r"block(?P<s>\d+)\.(?P<rest>.+)"), lambda m: f"blocks.{_stage(m)}.{m['rest']}"),
    # CSwin (slab_cswin.py): the stem Sequential(conv, Rearrange, norm), merge1..3 (conv, norm)
    # before stages 2..4, stage1..4.
    (re.compile(r"stage1_conv_embed\.0\.(?P<rest>weight|bias)"), lambda m: f"patch_embed.0.proj.{m['rest']}"),
    (re.compile(r"stage1_conv_embed\.2\.(?P<rest>.+)"), lambda m: f"patch_embed.0.norm.{m['rest']}"),
    (re.compile(r"merge(?P<i>\d+)\.conv\.(?P<rest>weight|bias)"), lambda m: f"patch_embed.{m['i']}.proj.{m['rest']}"),
    (re.compile(r"merge(?P<i>\d+)\.norm\.(?P<rest>.+)"), lambda m: f"patch_embed.{m['i']}.norm.{m['rest']}"),
    (re.compile(r"stage(?P<s>\d+)\.(?P<rest>.+)"), lambda m: f"blocks.{_stage(m)}.{m['rest']}"),
)
# Top-level names of edgesdk's SLAB models; a key outside them is an authors' name or foreign.
_EDGESDK_KEY = re.compile(r"(patch_embed|pos_embed|cls_token|blocks|layers|norm|head)(\.|$)")


def _authors_key(key: str) -> str | None:
    for pattern, rewrite in _REWRITES:
        match = pattern.fullmatch(key)
        if match is not None:
            return rewrite(match)
    return None


def remap_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' ``checkpoint['model']`` -> edgesdk's state_dict. Pure.

    Strips DataParallel's ``module.`` prefix and renames PVT's and CSwin's stage-numbered
    modules by ``_REWRITES``. Raises CheckpointError naming the keys that no SLAB model has
    (e.g. a checkpoint of another family); shape and per-preset mismatches are left to the
    strict load, which names them.
    """
    state = strip_prefix(state_dict, "module.")
    if all(_EDGESDK_KEY.match(key) for key in state):
        return state  # already edgesdk's layout
    remapped: dict[str, torch.Tensor] = {}
    foreign: list[str] = []
    for key, value in state.items():
        new_key = key if _EDGESDK_KEY.match(key) else _authors_key(key)
        if new_key is None:
            foreign.append(key)
        else:
            remapped[new_key] = value
    if foreign:
        foreign.sort()
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise CheckpointError(f"{len(foreign)} keys belong to no SLAB model: {shown}")
    log.debug("remapped %d keys from the authors' layout", len(remapped))
    return remapped


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _upstream_identity(architecture: str, upstream: Mapping[str, Any]) -> tuple[Any, ...]:
    """What in the authors' yacs config decides the architecture, in a comparable form."""
    model_type = _lookup(upstream, "MODEL.TYPE")
    if architecture == "deit" or model_type == "deits":
        return ("deit", _lookup(upstream, "MODEL.NAME"))
    identity: tuple[Any, ...] = (model_type,)
    if model_type in ("SlabSwinTransformer", "SwinTransformer"):
        depths = _lookup(upstream, "MODEL.SWIN.DEPTHS")
        identity += (tuple(depths) if depths is not None else None, _lookup(upstream, "MODEL.SWIN.EMBED_DIM"))
    if model_type != "SwinTransformer":
        identity += (_lookup(upstream, "MODEL.LA.ATTN_TYPE"),)
    return identity


def _preset_identity(config: SlabConfig) -> tuple[Any, ...]:
    if config.architecture == "deit":
        return ("deit", config.upstream_type)
    identity: tuple[Any, ...] = (config.upstream_type,)
    if config.architecture == "swin":
        identity += (config.depths, config.embed_dims[0])
    if config.upstream_type != "SwinTransformer":
        identity += (config.attention,)
    return identity


def _norm_layout(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """"linearnorm" if the norms carry PRepBN's LayerNorm + counters, "repbn" if bare."""
    keys = list(state_dict)
    if any(key.endswith(".total_step") for key in keys):
        return "linearnorm"
    if any(key.endswith(".alpha") for key in keys):
        return "repbn"
    return None


def config_from_checkpoint(container: Mapping[str, Any], config: SlabConfig) -> SlabConfig:
    """Check a checkpoint against the preset and adapt the norm layout to it.

    * The authors' checkpoints carry their yacs config (``container['extra']['config']``, as
      plain data): its model type, depths and attention letters must be the preset's, else a
      CheckpointError names what the checkpoint is and which preset fits it.
    * Norm layout: bare RepBN keys (``P.alpha``, ``P.bn.*``) or PRepBN keys (``P.norm2.*``,
      LayerNorm, counters) are both accepted; the model is built in the checkpoint's layout.
    """
    upstream = (container.get("extra") or {}).get("config")
    if isinstance(upstream, Mapping) and _lookup(upstream, "MODEL") is not None:
        found = _upstream_identity(config.architecture, upstream)
        expected = _preset_identity(config)
        if found != expected:
            fits = [name for name, preset in PRESETS.items()
                    if _upstream_identity(preset.config.architecture, upstream) == _preset_identity(preset.config)]
            hint = f"; it fits preset {', '.join(fits)}" if fits else ""
            raise CheckpointError(
                f"the checkpoint's config describes {'/'.join(str(part) for part in found)}, "
                f"not this preset ({'/'.join(str(part) for part in expected)}){hint}")
        image_size = _lookup(upstream, "DATA.IMG_SIZE")
        if image_size is not None and int(image_size) != config.image_size:
            raise CheckpointError(
                f"the checkpoint was trained at {image_size}x{image_size} pixels; this preset is "
                f"{config.image_size}x{config.image_size} and SLAB's position encodings fix the resolution")
    layout = _norm_layout(container.get("state_dict") or {})
    if layout is not None and layout != config.norm:
        log.info("checkpoint norms are %s, building the model in that layout", layout)
        config = replace(config, norm=layout)
    return config


# --------------------------------------------------------------------------------------------
# Export recipe
# --------------------------------------------------------------------------------------------


def sample_images(config: SlabConfig, count: int = 2) -> list[np.ndarray]:
    """Deterministic structured images (colour gradients, a checkerboard, a disc), normalised
    with the ImageNet mean and std as the eval transform does: (1, 3, S, S) float32 each.
    Unlike N(0, 1) noise they have the smooth spatial structure of real photographs."""
    side = config.image_size
    ramp = np.linspace(0.0, 1.0, side, dtype=np.float32)
    rows, cols = np.meshgrid(ramp, ramp, indexing="ij")
    squares = ((np.arange(side)[:, None] // max(side // 8, 1) + np.arange(side)[None, :] // max(side // 8, 1)) % 2)
    disc = ((rows - 0.5) ** 2 + (cols - 0.6) ** 2 < 0.1).astype(np.float32)
    patterns = [
        np.stack([rows, cols, 1.0 - rows]),
        np.stack([squares.astype(np.float32), disc, 0.5 * (rows + cols)]),
        np.stack([0.5 + 0.5 * np.sin(6.0 * rows), disc, 0.5 + 0.5 * np.cos(9.0 * cols)]),
    ]
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
    images = []
    for index in range(count):
        pixels = patterns[index % len(patterns)][: config.in_channels]
        images.append(((pixels - mean[: config.in_channels]) / std[: config.in_channels])[None].astype(np.float32))
    return images


def count_macs(module: nn.Module, image: torch.Tensor) -> int:
    """Multiply-accumulates of one forward (matmuls and convolutions, via torch's counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(image)
    return int(counter.get_total_flops()) // 2


def fold_error(reference: nn.Module, folded: nn.Module, images: Sequence[torch.Tensor]) -> dict[str, float]:
    """Largest absolute and relative (to the largest reference logit) difference."""
    max_abs, max_rel = 0.0, 0.0
    with torch.no_grad():
        for image in images:
            expected, got = reference(image), folded(image)
            difference = (expected - got).abs().max().item()
            max_abs = max(max_abs, difference)
            max_rel = max(max_rel, difference / max(expected.abs().max().item(), 1e-12))
    return {"max_abs": max_abs, "max_relative": max_rel}


# Reduced precision: the layers that stay float, measured on the model itself. SLAB's folded
# networks have no normaliser left to absorb an int8 layer's rounding, and with a trained
# classifier's margins unknown here the floor is a whole-model SQNR; every layer's own cost is
# measured by simulating dynamic int8 on it alone (the quantizers' scheme: per-output-channel
# int8 weights, per-call uint8 activations over the whole tensor), then the costliest stay float
# until the rest together reach the target on every image of the recipe.
INT8_TARGET_DB = 33.0  # 3 dB over the 30 dB floor an int8 artifact is validated against


@dataclass(frozen=True)
class LayerCost:
    """Simulated dynamic int8 of one weight layer alone: the logits' worst SQNR over the images."""

    name: str
    sqnr_db: float


def _fake_int8_weight(weight: torch.Tensor) -> torch.Tensor:
    scale = weight.abs().amax(dim=tuple(range(1, weight.dim())), keepdim=True).clamp_min(1e-12) / 127.0
    return (weight / scale).round().clamp(-127, 127) * scale


def _fake_uint8_activation(x: torch.Tensor) -> torch.Tensor:
    axes = tuple(range(1, x.dim()))  # per image, as a batch-1 call computes it
    low, high = x.amin(dim=axes, keepdim=True).clamp_max(0), x.amax(dim=axes, keepdim=True).clamp_min(0)
    scale = (high - low).clamp_min(1e-12) / 255.0
    zero = (-low / scale).round()
    return ((x / scale).round() + zero).clamp(0, 255).sub(zero) * scale


def _int8_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Layers the int8 quantizers can take: linear layers and dense convolutions (the shared
    depthwise SLA kernel is tiled per head in the graph, never a weight of its own)."""
    return {name: layer for name, layer in module.named_modules()
            if isinstance(layer, nn.Linear) or (isinstance(layer, nn.Conv2d) and layer.groups == 1)}


def _worst_sqnr(module: nn.Module, images: torch.Tensor, reference: np.ndarray, quantized: Sequence[str]) -> float:
    """The lowest per-image logits SQNR with the ``quantized`` layers simulated in dynamic int8."""
    from edgesdk.runtime.compare import sqnr_db

    layers = _int8_layers(module)
    saved = {}
    try:
        for name in quantized:
            layer = layers[name]
            saved[name] = layer.forward
            if isinstance(layer, nn.Linear):
                layer.forward = lambda x, layer=layer: F.linear(_fake_uint8_activation(x), _fake_int8_weight(layer.weight),
                                                                layer.bias)
            else:
                layer.forward = lambda x, layer=layer: layer._conv_forward(
                    _fake_uint8_activation(x), _fake_int8_weight(layer.weight), layer.bias)
        with torch.no_grad():
            got = module(images).numpy()
    finally:
        for name, forward in saved.items():
            del layers[name].forward  # back to the class's forward
    return min(sqnr_db(r, g) for r, g in zip(reference, got))


def int8_float_layers(module: nn.Module, images: torch.Tensor, target_db: float = INT8_TARGET_DB
                      ) -> tuple[list[LayerCost], list[LayerCost], float]:
    """Which layers of the (folded) ``module`` stay float in int8 so that the rest reach ``target_db``.

    Returns (the layers kept float, costliest first; every layer's cost; the simulated worst
    SQNR with all the others int8). ``images``: (B, 3, S, S), the recipe's validation images.
    """
    with torch.no_grad():
        reference = module(images).numpy()
    names = list(_int8_layers(module))
    costs = sorted((LayerCost(n, _worst_sqnr(module, images, reference, [n])) for n in names), key=lambda c: c.sqnr_db)
    kept: list[LayerCost] = []
    reached = _worst_sqnr(module, images, reference, names)
    while reached < target_db and len(kept) < len(costs):
        kept.append(costs[len(kept)])
        reached = _worst_sqnr(module, images, reference, [c.name for c in costs[len(kept):]])
    return kept, costs, reached


def _keep_float_finder(module: nn.Module, images: Sequence[torch.Tensor]) -> Callable[[], tuple[dict, dict]]:
    """ExportSpec.find_keep_float: measured only when a reduced precision is asked for."""
    def find() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        kept, costs, reached = int8_float_layers(module, torch.cat(list(images)))
        others = [c.sqnr_db for c in costs if c not in kept]
        layers = _int8_layers(module)
        reasons = {f"{c.name}.weight": (
            f"simulated dynamic int8 of this layer alone costs the logits {c.sqnr_db:.1f} dB SQNR (the other "
            f"layers: {min(others, default=float('inf')):.1f} dB and above); kept float, the costliest first, until "
            f"the rest together reach {reached:.1f} dB (target {INT8_TARGET_DB:g}) on the recipe's images") for c in kept}
        return {f"{c.name}.weight": layers[c.name].weight.detach() for c in kept}, reasons
    return find


@dataclass(frozen=True)
class SlabExportOptions(ExportOptions):
    """Options of the slab recipe (``--option NAME=VALUE``, or keywords of ``edgesdk.export``)."""

    family: ClassVar[str] = "slab"

    fold: bool = option(True, "merge every RepBN into its neighbouring layer first; false keeps the norms "
                        "(for comparison); --no-fold on the command line", BOOLEAN)
    image_size: int | None = option(None, "input side in pixels; must equal the preset's (SLAB's position "
                                    "encodings fix the resolution)", integer(minimum=1), default_text="the preset's")


def export_recipe(model: nn.Module, mode: str, options: SlabExportOptions) -> ExportSpec:
    """ExportSpec for a SLAB classifier: ``image`` (batch, 3, S, S) float32 -> ``logits``.

    Options: ``SlabExportOptions``. The batch axis is dynamic in ONNX (the TFLite file keeps the
    example's batch of 1); height and width are fixed by the preset. Validation tolerance is 1e-4
    of the largest |logit| the reference gives on the example and sample images (at least 1e-4
    absolute). The manifest records the fold error against the unfolded model, the norms
    folded, the largest PRepBN lambda, MACs per image and the image front end.
    """
    if mode != "full":
        raise UsageError(f"slab exports only mode 'full' (whole images), not {mode!r}")
    config = getattr(model, "config", None)
    if not isinstance(config, SlabConfig) or not hasattr(model, "repbn_sites"):
        raise UsageError(f"the slab recipe takes a SLAB model, not {type(model).__name__}")
    image_size = options.image_size
    if image_size is not None and image_size != config.image_size:
        raise UsageError(
            f"image_size {image_size} does not match this model's {config.image_size}: SLAB's position "
            "encodings have one entry per token, so the resolution is fixed by the preset")
    fold = options.fold
    reference = model if not model.training else copy.deepcopy(model).eval()
    norms_before = count_norms(reference)
    module = fold_repbn(reference) if fold else copy.deepcopy(reference).eval()

    generator = torch.Generator().manual_seed(0)
    example = torch.randn(1, config.in_channels, config.image_size, config.image_size, generator=generator)
    samples = sample_images(config)
    slab_facts: dict[str, Any] = {
        "architecture": config.architecture,
        "attention": config.attention,
        "folded": fold,
        "norms": norms_before,
        "norms_left": count_norms(module),
        "prepbn_lambda_max": max(prepbn_progress(reference).values(), default=0.0),
        "sla_epsilon": SLA_EPSILON,
    }
    images = [example] + [torch.from_numpy(sample) for sample in samples]
    if fold:
        slab_facts["fold_error"] = fold_error(reference, module, images)
    # Validation tolerance: 1e-4 of the largest |logit| (at least 1e-4 absolute), the same
    # relative bound the fold meets. Deep stand-in models reach logits of ~50, where float32
    # accumulation alone differs by ~1e-5 relative between PyTorch and a converter.
    with torch.no_grad():
        logit_scale = max(reference(image).abs().max().item() for image in images)
    slab_facts["logit_scale"] = logit_scale
    side = config.image_size
    metadata = {
        "ops": {
            "per": "inference",
            "macs": count_macs(module, example),
            "accumulates": 0,
            "binary_ops": 0,
            "counted": "multiply-accumulates of every matmul and convolution for one image "
                       "(torch FlopCounterMode / 2); elementwise ops, softmax and GELU not counted",
        },
        "frontend": {
            "kind": "image",
            "layout": "NCHW",
            "channels": "RGB",
            "resize_short_side": int(round(side * 256 / 224)),
            "interpolation": "bicubic",
            "center_crop": side,
            "scale": 1.0 / 255.0,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "extra": {"slab": slab_facts},
    }
    return ExportSpec(
        module=module,
        example_inputs={"image": example},
        output_names=["logits"],
        mode="full",
        # Every block works per image (RepBN is folded, SLA reduces over tokens, not images).
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        atol=1e-4 * max(1.0, logit_scale),
        rtol=1e-4,
        sample_inputs=[{"image": sample} for sample in samples],
        metadata=metadata,
        find_keep_float=_keep_float_finder(module, images),
    )


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

_DEIT = SlabConfig(upstream_type="deit_tiny_patch16_224_linear_repbn")
_SWIN = SlabConfig(
    architecture="swin", patch_size=4, embed_dims=(96, 192, 384, 768), depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24), mlp_ratios=(4.0,) * 4, attention="LLSS", layernorm_eps=1e-5,
    upstream_type="SlabSwinTransformer")
_PVT = SlabConfig(
    architecture="pvt", patch_size=4, embed_dims=(64, 128, 320, 512), depths=(2, 2, 2, 2),
    num_heads=(1, 2, 5, 8), mlp_ratios=(8.0, 8.0, 4.0, 4.0), attention="LLLL", sr_ratios=(8, 4, 2, 1),
    prepbn_steps=300000, upstream_type="slab_pvt_tiny")
_CSWIN = SlabConfig(
    architecture="cswin", patch_size=4, embed_dims=(64, 128, 256, 512), depths=(2, 4, 18, 1),
    num_heads=(2, 4, 8, 16), mlp_ratios=(4.0,) * 4, attention="LLSS", split_sizes=(1, 2, 7, 7),
    layernorm_eps=1e-5, prepbn_steps=120000, upstream_type="SLAB_CSwin_64_24181_tiny_224")


def _preset(name: str, config: SlabConfig, description: str, small: bool = False) -> tuple[str, Preset]:
    return name, Preset(name, config, description, small=small)


PRESETS: dict[str, Preset] = dict([
    _preset("deit-t", _DEIT, "SLAB-DeiT-T: SLA in all 12 blocks, PRepBN, 6.2 M params (74.3 % top-1)"),
    _preset("deit-s", replace(_DEIT, embed_dims=(384,), num_heads=(6,),
                              upstream_type="deit_small_patch16_224_linear_repbn"),
            "SLAB-DeiT-S: SLA, PRepBN, 23.0 M params (80.0 % top-1)"),
    _preset("pvt-t", _PVT, "SLAB-PVT-T: SLA in every stage, PRepBN (76.5 % top-1)"),
    _preset("swin-t", _SWIN, "SLAB-Swin-T: global SLA stages 1-2, window softmax 3-4, PRepBN (81.8 % top-1)"),
    _preset("swin-s", replace(_SWIN, depths=(2, 2, 18, 2)), "SLAB-Swin-S (83.6 % top-1)"),
    _preset("cswin-t", _CSWIN, "SLAB-CSwin-T: SLA stages 1-2, cross-shaped stripe softmax 3-4 (82.8 % top-1)"),
    _preset("deit-t-prepbn", replace(_DEIT, attention="S", class_token=True, norm="repbn",
                                     upstream_type="deit_tiny_patch16_224_repbn"),
            "DeiT-T with softmax attention and RepBN, class token (73.6 % top-1)"),
    _preset("deit-s-prepbn", replace(_DEIT, embed_dims=(384,), num_heads=(6,), attention="S", class_token=True,
                                     prepbn_steps=300000, upstream_type="deit_small_patch16_224_repbn"),
            "DeiT-S with softmax attention and PRepBN, class token (80.2 % top-1)"),
    _preset("pvt-t-prepbn", replace(_PVT, attention="SSSS"), "PVT-T, softmax SRA, PRepBN (76.0 % top-1)"),
    _preset("pvt-s-prepbn", replace(_PVT, attention="SSSS", depths=(3, 4, 6, 3), upstream_type="slab_pvt_small"),
            "PVT-S, softmax SRA, PRepBN (80.1 % top-1)"),
    _preset("pvt-m-prepbn", replace(_PVT, attention="SSSS", depths=(3, 4, 18, 3), upstream_type="slab_pvt_medium"),
            "PVT-M, softmax SRA, PRepBN (81.7 % top-1)"),
    _preset("swin-t-prepbn", replace(_SWIN, attention="SSSS", norm="repbn", upstream_type="SwinTransformer"),
            "Swin-T with window softmax everywhere and RepBN (81.4 % top-1)"),
    # Test-sized presets: every code path of the family at a fraction of the cost.
    _preset("tiny", replace(_DEIT, image_size=32, patch_size=8, embed_dims=(32,), depths=(2,), num_heads=(2,),
                            num_classes=10, upstream_type="slab_deit_test_tiny"),
            "test-sized SLAB-DeiT: 4x4 tokens, 2 SLA blocks", small=True),
    _preset("tiny-swin", replace(_SWIN, image_size=112, embed_dims=(16, 32, 64), depths=(1, 2, 1),
                                 num_heads=(1, 2, 4), mlp_ratios=(2.0,) * 3, attention="LSS", num_classes=10),
            "test-sized SLAB-Swin: global SLA on 28x28, shifted 7x7 windows on 14x14, 7x7", small=True),
    _preset("tiny-pvt", replace(_PVT, image_size=64, embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1),
                                num_heads=(1, 2, 2, 4), mlp_ratios=(2.0,) * 4, attention="LLSS", num_classes=10),
            "test-sized PVT: SLA stages 1-2, spatial-reduction softmax 3-4"),
    _preset("tiny-cswin", replace(_CSWIN, image_size=112, embed_dims=(16, 32, 64), depths=(1, 1, 1),
                                  num_heads=(2, 4, 8), mlp_ratios=(2.0,) * 3, attention="LSS", split_sizes=(1, 7, 7),
                                  num_classes=10, upstream_type="slab_deit_test_tiny"),
            "test-sized CSwin: SLA on 28x28, two-way 7-wide stripes on 14x14, whole 7x7"),
])


FAMILY = Family(
    name="slab",
    build=build,
    presets=PRESETS,
    remap_checkpoint=remap_checkpoint,
    recipe=export_recipe,
    export_options=SlabExportOptions,
    checkpoint_layout_fields=("norm",),
    config_from_checkpoint=config_from_checkpoint,
    modes=("full",),
    description="SLAB (ICML 24): simplified linear attention + progressive re-parameterized BatchNorm, "
                "exported with every RepBN folded away",
)
