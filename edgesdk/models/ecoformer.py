"""EcoFormer: energy-saving attention with linear complexity (Liu et al., NeurIPS 2022).

Paper: arXiv 2209.09004. Upstream: https://github.com/ziplab/EcoFormer, checked at commit
a277f9e8c75655814d25016f61ffba290bad68cf (pvt/performer.py, pvt/hashing/ksh.py, pvt/pvt_v2.py,
twins/gvt.py, pvt/get_energy.py, twins/get_energy.py).

Only the inference path exists here. Upstream learns the hash functions (kernelized supervised
hashing) on the first training batch and overwrites the ``A``, ``anchor`` and ``mvec`` buffers;
a model loaded without the ``epoch`` key re-learns them silently on its first forward. This
module has no such branch: the hash is exactly the stored buffers plus a kernel width computed
from the input.

Per attention layer of stages 1-3 (one image, one head; N tokens, head dim c, b = 16 bits,
m = 25 anchors, beta = b + 1):

1. u = to_qk(x), v = to_v(x) (queries and keys share one projection), split into heads;
2. u <- u / ||u||_2 (no epsilon, as upstream);
3. D[n, j] = ||u_n - a_j||^2 to the stored anchors a_j;
4. sigma = mean over n and j of D (per image and head, never stored);
5. phi = exp(-D / (2 sigma)) - mvec;
6. z = sign(phi A^T), codes in {-1, +1}^b;
7. out_n = (z_n G + beta v_n) / (z_n . s + N beta), with s = sum_n z_n and G = sum_n z_n^T v_n
   (the authors' formula: the numerator adds the token's own value, so rows do not sum to one).

Stage 4 is plain softmax attention, as the authors built it. Backbones: PVTv2 (B0-B4) and
Twins-SVT-S (``alt_gvt_small_ecoformer``).

The file reads top to bottom: config, blocks, model, checkpoint remap, energy account,
export recipe, presets, ``FAMILY``.
"""
from __future__ import annotations

import copy
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesdk.errors import CheckpointError, UsageError
from edgesdk.models.checkpoints import strip_prefix
from edgesdk.models.layers import Attention, Mlp, PatchEmbed, init_linear_
from edgesdk.models.options import BOOLEAN, IMAGE_SIZE, ExportOptions, integer, number, option
from edgesdk.models.registry import Family, Preset
from edgesdk.runtime.compare import BitAgreement, OutputRule, TopOneAgreement, compare_output
from edgesdk.spec import ExportSpec

log = logging.getLogger(__name__)

BACKBONES = ("pvtv2", "twins-svt")

# 45 nm energy per 32-bit float operation (Horowitz, ISSCC 2014), the constants the authors'
# get_energy.py uses: energy_pj = 3.7 * multiplications + 0.9 * additions.
ENERGY_PJ_PER_MULTIPLICATION = 3.7
ENERGY_PJ_PER_ADDITION = 0.9

# The hash codes agree "enough" when at most one bit in a thousand flips.
BIT_AGREEMENT_REQUIRED = 0.999


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EcoFormerConfig:
    """Architecture of one EcoFormer model. Defaults are PVTv2-B0 as the authors trained it.

    Attributes:
        backbone: "pvtv2" (overlapping patch embeddings, depthwise conv in the MLP, a norm
            after every stage) or "twins-svt" (non-overlapping patch embeddings, a positional
            depthwise conv after the first block of each stage, one final norm).
        embed_dims, num_heads, mlp_ratios, depths: per stage (four stages).
        hash_bits: b, bits per hash code (authors: 16).
        hash_anchors: m, anchor points of the RBF kernel (authors: 25).
        num_classes: classifier outputs.
        in_channels: image channels.
        image_size: (height, width) in pixels used by the export recipe when none is given;
            the PyTorch model itself takes any size whose token grids are not empty.
        qkv_bias: bias on the attention projections (authors: True).
        norm_eps: LayerNorm epsilon of blocks and stage norms (authors: 1e-6); the patch
            embedding norms keep PyTorch's default 1e-5, as upstream.
    """

    backbone: str = "pvtv2"
    embed_dims: tuple[int, ...] = (32, 64, 160, 256)
    num_heads: tuple[int, ...] = (1, 2, 5, 8)
    mlp_ratios: tuple[int, ...] = (8, 8, 4, 4)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    hash_bits: int = 16
    hash_anchors: int = 25
    num_classes: int = 1000
    in_channels: int = 3
    image_size: tuple[int, int] = (224, 224)
    qkv_bias: bool = True
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise UsageError(f"backbone must be one of {', '.join(BACKBONES)}, not {self.backbone!r}")
        per_stage = {
            "embed_dims": self.embed_dims,
            "num_heads": self.num_heads,
            "mlp_ratios": self.mlp_ratios,
            "depths": self.depths,
        }
        for name, values in per_stage.items():
            if len(values) != 4:
                raise UsageError(f"{name} needs one value per stage (4), got {len(values)}")
            if any(int(v) < 1 for v in values):
                raise UsageError(f"{name} must be positive, got {tuple(values)}")
        for dim, heads in zip(self.embed_dims, self.num_heads):
            if dim % heads:
                raise UsageError(f"embed dim {dim} is not divisible by {heads} heads")
        for name in ("hash_bits", "hash_anchors", "num_classes", "in_channels"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise UsageError(f"image_size must be (height, width) in pixels, got {self.image_size}")

    @property
    def head_dims(self) -> tuple[int, ...]:
        return tuple(d // h for d, h in zip(self.embed_dims, self.num_heads))


def _patch_geometry(backbone: str, stage: int) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a stage's patch embedding convolution."""
    if backbone == "pvtv2":
        return (7, 4, 3) if stage == 0 else (3, 2, 1)
    return (4, 4, 0) if stage == 0 else (2, 2, 0)


def token_grids(config: EcoFormerConfig, image_size: Sequence[int]) -> list[tuple[int, int]]:
    """Token grid (height, width) of every stage for an image of ``image_size`` pixels.

    Raises UsageError when a stage would have no tokens (the patch embedding cannot take it).
    """
    if len(image_size) != 2:
        raise UsageError(f"image size must be (height, width), got {tuple(image_size)}")
    height, width = (int(s) for s in image_size)
    grids = []
    for stage in range(4):
        kernel, stride, padding = _patch_geometry(config.backbone, stage)
        height = (height + 2 * padding - kernel) // stride + 1
        width = (width + 2 * padding - kernel) // stride + 1
        if height < 1 or width < 1:
            raise UsageError(
                f"an image of {image_size[0]}x{image_size[1]} pixels is too small for "
                f"{config.backbone}: stage {stage + 1} would have no tokens "
                f"(smallest size: {minimum_image_side(config)} pixels a side)"
            )
        grids.append((height, width))
    return grids


def minimum_image_side(config: EcoFormerConfig) -> int:
    """Smallest image side (pixels) whose stage-4 token grid is not empty."""
    side = 1
    for stage in reversed(range(4)):
        kernel, stride, padding = _patch_geometry(config.backbone, stage)
        side = max(1, (side - 1) * stride + kernel - 2 * padding)
    return side


# --------------------------------------------------------------------------------------------
# Blocks, smallest first
# --------------------------------------------------------------------------------------------


class KernelHash(nn.Module):
    """Kernelized hash of L2-normalised queries/keys to {-1, +1} codes (upstream ``KernelSH``).

    Buffers (the authors' names in brackets): ``projection`` [A] [heads, bits, anchors],
    ``feature_mean`` [mvec] [1, heads, 1, anchors], ``anchors`` [anchor] [1, heads, anchors,
    head_dim]. They are learned once by the authors and only read here.

    ``plain_ops`` switches to the export form: squared distances by matmul instead of the
    authors' 5-D broadcast, matmuls instead of einsum, and sign as two comparisons. Every
    switch computes the same function up to float rounding; the reference model keeps False.
    """

    def __init__(self, num_heads: int, head_dim: int, bits: int, anchors: int):
        super().__init__()
        self.bits = bits
        self.plain_ops = False
        self.register_buffer("projection", torch.randn(num_heads, bits, anchors))
        # Upstream starts anchors and mean at zero and fills them when it learns the hash; with
        # zero anchors every token gets the same code. Seeded random unit anchors and the
        # kernel value of two orthogonal unit vectors (exp(-1/2)) make a random-init model
        # exercise the hash like a trained one. Loading a checkpoint overwrites all three.
        anchors_init = F.normalize(torch.randn(1, num_heads, anchors, head_dim), dim=-1)
        self.register_buffer("feature_mean", torch.full((1, num_heads, 1, anchors), math.exp(-0.5)))
        self.register_buffer("anchors", anchors_init)

    def forward(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hash normalised queries [B, heads, N, head_dim] -> (codes, pre-sign scores), both
        [B, heads, N, bits]; codes are -1 or +1 (0 only at an exact zero score)."""
        if self.plain_ops:
            # ||u - a||^2 = ||u||^2 + ||a||^2 - 2 u.a, all 4-D (converters reject 5-D).
            distances = (
                (queries * queries).sum(-1, keepdim=True)
                + (self.anchors * self.anchors).sum(-1).unsqueeze(-2)
                - 2.0 * torch.matmul(queries, self.anchors.transpose(-1, -2))
            )
        else:
            # The authors' form (hashing/utils.py square_dist): a [B, h, N, m, c] broadcast.
            distances = ((queries.unsqueeze(-2) - self.anchors.unsqueeze(-3)) ** 2).sum(-1)
        # Kernel width from the input, per image and head, as upstream: mean(-1).mean(-1).
        width = distances.mean(-1).mean(-1)
        features = torch.exp(-distances / (2 * width.unsqueeze(-1).unsqueeze(-1))) - self.feature_mean
        if self.plain_ops:
            scores = torch.matmul(features, self.projection.transpose(-1, -2).unsqueeze(0))
            # Exactly torch.sign, including sign(0) = 0, from ops every converter has.
            codes = (scores > 0).to(scores.dtype) - (scores < 0).to(scores.dtype)
        else:
            scores = torch.einsum("bhnm,hkm->bhnk", features, self.projection)
            codes = torch.sign(scores)
        return codes, scores


def hashed_linear_attention(
    codes: torch.Tensor, values: torch.Tensor, bits: int, plain_ops: bool = False
) -> torch.Tensor:
    """The authors' ``linear_attention_bias`` with shared query/key codes.

    codes [B, h, N, bits] in {-1, +1}, values [B, h, N, c] -> [B, h, N, c], in float32
    (upstream forces float32 here: the denominator reaches N * (2 bits + 1)).
    """
    beta = bits + 1
    tokens = codes.shape[-2]
    codes = codes.float()
    values = values.float()
    if plain_ops:
        code_sum = codes.sum(-2, keepdim=True)  # [B, h, 1, bits]
        denominator = (codes * code_sum).sum(-1, keepdim=True) + tokens * beta  # [B, h, N, 1]
        context = torch.matmul(codes.transpose(-1, -2), values)  # [B, h, bits, c]
        numerator = torch.matmul(codes, context) + values * beta
        return numerator * (1.0 / denominator)
    code_sum = codes.sum(dim=-2)
    inverse = 1.0 / (torch.einsum("...nd,...d->...n", codes, code_sum) + tokens * beta)
    context = torch.einsum("...nd,...ne->...de", codes, values)
    numerator = torch.einsum("...de,...nd->...ne", context, codes) + values * beta
    return torch.einsum("...ne,...n->...ne", numerator, inverse)


class EcoFormerAttention(nn.Module):
    """EcoFormer self-attention (upstream ``EcoformerSelfAttention``), stages 1-3.

    ``performer_projection`` is the Performer random matrix upstream registers and never reads;
    it is kept so that the authors' checkpoints load strictly, and no graph contains it.
    """

    def __init__(self, dim: int, num_heads: int, bits: int, anchors: int, qkv_bias: bool):
        super().__init__()
        head_dim = dim // num_heads
        self.num_heads = num_heads
        self.bits = bits
        self.plain_ops = False
        self.to_qk = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.hash = KernelHash(num_heads, head_dim, bits, anchors)
        self.proj = nn.Linear(dim, dim)
        # Upstream: nb_features = int(d ln d) rows (110 for d = 32, 266 for d = 64).
        self.register_buffer("performer_projection", torch.zeros(int(head_dim * math.log(head_dim)), head_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, N, C] -> (output [B, N, C], hash codes [B, heads, N, bits])."""
        B, N, C = x.shape
        # [B, N, C] -> [B, heads, N, head_dim]
        queries = self.to_qk(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        values = self.to_v(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        if self.plain_ops:
            queries = queries * torch.rsqrt((queries * queries).sum(-1, keepdim=True))
        else:
            queries = queries / torch.norm(queries, 2, dim=-1, keepdim=True)
        codes, _ = self.hash(queries)
        out = hashed_linear_attention(codes, values, self.bits, self.plain_ops)
        out = out.permute(0, 2, 1, 3).reshape(B, N, C)  # heads back into channels
        return self.proj(out), codes


class Block(nn.Module):
    """Pre-norm transformer block: x += attn(norm1(x)); x += mlp(norm2(x))."""

    def __init__(self, config: EcoFormerConfig, stage: int):
        super().__init__()
        dim = config.embed_dims[stage]
        heads = config.num_heads[stage]
        self.norm1 = nn.LayerNorm(dim, eps=config.norm_eps)
        # Stages 1-3 hash (EcoFormer attention); stage 4 is softmax attention, as upstream.
        self.hashed = stage < 3
        if self.hashed:
            self.attn: nn.Module = EcoFormerAttention(
                dim, heads, config.hash_bits, config.hash_anchors, config.qkv_bias
            )
        else:
            self.attn = Attention(dim, heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=config.norm_eps)
        self.mlp = Mlp(dim, dim * config.mlp_ratios[stage], depthwise_conv=config.backbone == "pvtv2")

    def forward(self, x: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.attn(self.norm1(x))
        attended, codes = out if self.hashed else (out, None)  # EcoFormer attention also returns codes
        x = x + attended
        x = x + self.mlp(self.norm2(x), (height, width))
        return x, codes


class PositionConv(nn.Module):
    """Twins' positional encoding generator: depthwise 3x3 conv plus residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        B, N, C = x.shape
        grid = x.transpose(1, 2).reshape(B, C, height, width)
        return (self.proj(grid) + grid).flatten(2).transpose(1, 2)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class EcoFormer(nn.Module):
    """PVTv2 or Twins-SVT backbone with EcoFormer attention in stages 1-3.

    ``forward(image)`` takes [B, in_channels, H, W] float pixels (normalised as the authors:
    ImageNet mean and std) and returns logits [B, num_classes]. ``forward_with_codes`` also
    returns the hash codes of every EcoFormer layer, in order.
    """

    def __init__(self, config: EcoFormerConfig):
        super().__init__()
        self.config = config
        dims = config.embed_dims
        self.patch_embed = nn.ModuleList()
        for stage in range(4):
            kernel, stride, padding = _patch_geometry(config.backbone, stage)
            in_channels = config.in_channels if stage == 0 else dims[stage - 1]
            # LayerNorm eps 1e-5 after the stem conv, as upstream.
            self.patch_embed.append(
                PatchEmbed(in_channels, dims[stage], kernel, stride, padding, norm=nn.LayerNorm(dims[stage])))
        self.blocks = nn.ModuleList(
            nn.ModuleList(Block(config, stage) for _ in range(config.depths[stage])) for stage in range(4)
        )
        if config.backbone == "pvtv2":
            # PVTv2 normalises after every stage; the last of these is ``norm``.
            self.stage_norms = nn.ModuleList(nn.LayerNorm(d, eps=config.norm_eps) for d in dims[:3])
            self.pos_block = None
        else:
            self.stage_norms = None
            self.pos_block = nn.ModuleList(PositionConv(d) for d in dims)
        self.norm = nn.LayerNorm(dims[3], eps=config.norm_eps)
        self.head = nn.Linear(dims[3], config.num_classes)
        self.apply(_init_weights)

    def check_image(self, image: torch.Tensor) -> None:
        """Reject what the network cannot take, with a sentence (UsageError)."""
        if not isinstance(image, torch.Tensor) or image.dim() != 4:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise UsageError(f"image must be a [batch, {self.config.in_channels}, height, width] tensor, got {shape}")
        if image.shape[1] != self.config.in_channels:
            raise UsageError(
                f"image has {image.shape[1]} channels; this model takes {self.config.in_channels}"
            )
        token_grids(self.config, image.shape[-2:])
        if not image.is_floating_point():
            raise UsageError(f"image must hold float pixels, got {image.dtype}")
        bad = int((~torch.isfinite(image)).sum())
        if bad:
            raise UsageError(f"image has {bad} NaN or infinite pixel values")

    def forward_features(self, image: torch.Tensor, codes: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Pooled features [B, embed_dims[3]]; appends each EcoFormer layer's codes to ``codes``."""
        x = image
        B = image.shape[0]
        for stage in range(4):
            x, (height, width) = self.patch_embed[stage].tokens_and_grid(x)
            for index, block in enumerate(self.blocks[stage]):
                x, block_codes = block(x, height, width)
                if codes is not None and block_codes is not None:
                    codes.append(block_codes)
                if self.pos_block is not None and index == 0:
                    x = self.pos_block[stage](x, height, width)
            if stage < 3:
                if self.stage_norms is not None:
                    x = self.stage_norms[stage](x)
                # tokens [B, N, C] -> map [B, C, H, W] for the next patch embedding
                x = x.reshape(B, height, width, -1).permute(0, 3, 1, 2)
        return self.norm(x).mean(dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.check_image(image)
        return self.head(self.forward_features(image))

    def forward_with_codes(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits, [codes of each EcoFormer layer, stage by stage, block by block])."""
        self.check_image(image)
        codes: list[torch.Tensor] = []
        logits = self.head(self.forward_features(image, codes))
        return logits, codes

    def hash_layer_names(self) -> list[str]:
        """Names of the EcoFormer layers in ``forward_with_codes`` order: "s1b0", "s1b1", ..."""
        return [
            f"s{stage + 1}b{index}"
            for stage in range(3)
            for index in range(self.config.depths[stage])
        ]


def _init_weights(module: nn.Module) -> None:
    """The authors' init (timm trunc-normal linear, fan-out conv, unit LayerNorm)."""
    if isinstance(module, nn.Linear):
        init_linear_(module)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build(config: EcoFormerConfig) -> EcoFormer:
    return EcoFormer(config)


# --------------------------------------------------------------------------------------------
# The authors' checkpoints
# --------------------------------------------------------------------------------------------

# Inside a block, the authors' names -> edgesdk's. PVTv2 and Twins share these.
_BLOCK_RULES: list[tuple[str, str]] = [
    (r"norm([12])\.(weight|bias)", r"norm\1.\2"),
    (r"attn\.(to_qk|to_v|qkv|proj)\.(weight|bias)", r"attn.\1.\2"),
    (r"attn\.fast_attention\.ksh\.A", r"attn.hash.projection"),
    (r"attn\.fast_attention\.ksh\.mvec", r"attn.hash.feature_mean"),
    (r"attn\.fast_attention\.ksh\.anchor", r"attn.hash.anchors"),
    (r"attn\.fast_attention\.projection_matrix", r"attn.performer_projection"),
    (r"mlp\.(fc1|fc2)\.(weight|bias)", r"mlp.\1.\2"),
    (r"mlp\.dwconv\.dwconv\.(weight|bias)", r"mlp.dwconv.\1"),
]


def _stage(match: re.Match, group: str = "s") -> str:
    return str(int(match.group(group)) - 1)


# Whole keys: pattern -> function of the match giving the edgesdk key (or the block prefix).
_KEY_RULES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    # PVTv2 (pvt/pvt_v2.py): stages numbered from 1 in attribute names.
    (re.compile(r"patch_embed(?P<s>[1-4])\.(?P<rest>(proj|norm)\.(weight|bias))"),
     lambda m: f"patch_embed.{_stage(m)}.{m['rest']}"),
    (re.compile(r"block(?P<s>[1-4])\.(?P<j>\d+)\.(?P<rest>.+)"),
     lambda m: f"blocks.{_stage(m)}.{m['j']}.{m['rest']}"),
    (re.compile(r"norm(?P<s>[1-3])\.(?P<rest>weight|bias)"), lambda m: f"stage_norms.{_stage(m)}.{m['rest']}"),
    (re.compile(r"norm4\.(?P<rest>weight|bias)"), lambda m: f"norm.{m['rest']}"),
    # Twins-SVT (twins/gvt.py): ModuleLists numbered from 0.
    (re.compile(r"patch_embeds\.(?P<i>[0-3])\.(?P<rest>(proj|norm)\.(weight|bias))"),
     lambda m: f"patch_embed.{m['i']}.{m['rest']}"),
    (re.compile(r"pos_block\.(?P<i>[0-3])\.proj\.0\.(?P<rest>weight|bias)"),
     lambda m: f"pos_block.{m['i']}.proj.{m['rest']}"),
    (re.compile(r"blocks\.(?P<i>[0-3])\.(?P<j>\d+)\.(?P<rest>.+)"),
     lambda m: f"blocks.{m['i']}.{m['j']}.{m['rest']}"),
    # Both.
    (re.compile(r"(?P<rest>(norm|head)\.(weight|bias))"), lambda m: m["rest"]),
]

_BLOCK_PREFIX = re.compile(r"(?P<prefix>blocks\.\d\.\d+\.)(?P<inner>.+)")
# Keys of a plain PVTv2 (spatial-reduction attention): no EcoFormer attention at all.
_PLAIN_PVT = re.compile(r"attn\.(q|kv|sr|norm)\.(weight|bias)$")


def remap_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' state_dict (PVTv2 or Twins EcoFormer) -> edgesdk's keys. Pure.

    Strips DataParallel ``module.`` prefixes. Raises CheckpointError naming every key it
    cannot place, and says so plainly when the checkpoint has no hash buffers at all.
    """
    state = strip_prefix(state_dict, "module.")
    if any(re.match(r"patch_embed\.\d\.", k) for k in state):
        return dict(state)  # already edgesdk's layout
    plain = sorted(k for k in state if _PLAIN_PVT.search(k))
    if plain:
        raise CheckpointError(
            "this is a plain PVTv2 checkpoint (spatial-reduction attention keys such as "
            f"{', '.join(plain[:3])}), not an EcoFormer one: it has no to_qk/to_v projections "
            "and no hash buffers (attn.fast_attention.ksh.A, mvec, anchor)"
        )
    if not any(".ksh." in k for k in state):
        raise CheckpointError(
            "the checkpoint has no EcoFormer hash buffers (attn.fast_attention.ksh.A, mvec, "
            "anchor); it is not an EcoFormer checkpoint"
        )
    remapped: dict[str, torch.Tensor] = {}
    unplaced: list[str] = []
    for key, value in state.items():
        new_key = _remap_key(key)
        if new_key is None:
            unplaced.append(key)
        else:
            remapped[new_key] = value
    if unplaced:
        raise CheckpointError(f"keys that are not part of an EcoFormer model: {', '.join(sorted(unplaced))}")
    log.debug("remapped %d keys from the authors' layout", len(remapped))
    return remapped


def _remap_key(key: str) -> str | None:
    for pattern, rewrite in _KEY_RULES:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        new_key = rewrite(match)
        block = _BLOCK_PREFIX.fullmatch(new_key)
        if block is None:
            return new_key
        for inner_pattern, inner_rewrite in _BLOCK_RULES:
            if re.fullmatch(inner_pattern, block["inner"]):
                return block["prefix"] + re.sub(inner_pattern, inner_rewrite, block["inner"])
        return None
    return None


# The authors' timm model names for each preset (pvt/configs, twins/gvt.py).
_AUTHORS_MODEL_NAMES = {
    "pvt_v2_b0": "pvtv2-b0", "pvt_v2_b1": "pvtv2-b1", "pvt_v2_b2": "pvtv2-b2",
    "pvt_v2_b3": "pvtv2-b3", "pvt_v2_b4": "pvtv2-b4", "alt_gvt_small_ecoformer": "twins-svt-s",
}


def config_from_checkpoint(container: Mapping[str, Any], config: EcoFormerConfig) -> EcoFormerConfig:
    """Check the training ``args`` a checkpoint carries against the preset asked for.

    The authors save ``args`` (argparse.Namespace): ``model`` names the architecture and
    ``nbits``/``m`` the hash size. A checkpoint for another preset is refused by name here,
    before any shape mismatch; the shapes are checked again by the strict load.
    """
    args = (container.get("extra") or {}).get("args")
    if args is None:
        return config
    values = vars(args) if hasattr(args, "__dict__") else dict(args) if isinstance(args, Mapping) else {}
    trained_as = _AUTHORS_MODEL_NAMES.get(str(values.get("model", "")))
    expected = _preset_for_config(config)
    if trained_as is not None and expected is not None and trained_as != expected:
        raise CheckpointError(
            f"the checkpoint was trained as {values['model']} (preset {trained_as!r}), "
            f"not as preset {expected!r}; pick --preset {trained_as}"
        )
    bits, anchors = values.get("nbits"), values.get("m")
    if (bits is not None and int(bits) != config.hash_bits) or (
        anchors is not None and int(anchors) != config.hash_anchors
    ):
        raise CheckpointError(
            f"the checkpoint's hash has {bits} bits and {anchors} anchors (args.nbits, args.m); "
            f"the preset has {config.hash_bits} and {config.hash_anchors}"
        )
    return config


def _preset_for_config(config: EcoFormerConfig) -> str | None:
    for name, preset in PRESETS.items():
        if preset.config == config:
            return name
    return None


# --------------------------------------------------------------------------------------------
# Energy account, counted the authors' way (pvt/get_energy.py, twins/get_energy.py)
# --------------------------------------------------------------------------------------------


def _module_macs(config: EcoFormerConfig, grids: list[tuple[int, int]], attention: str) -> int:
    """Multiply-accumulates of convolutions, linear layers and LayerNorms, counted as mmcv's
    ``get_model_complexity_info`` counts them (what the authors start from): a convolution
    k*k*in/groups*out per output position plus one per output element for the bias; a linear
    layer in*out per token (no bias); a LayerNorm 2 per element. GELU, softmax, matmuls of
    attention and the final mean are not counted there."""
    macs = 0
    dims = config.embed_dims
    image_channels = config.in_channels
    for stage, (height, width) in enumerate(grids):
        tokens = height * width
        dim = dims[stage]
        hidden = dim * config.mlp_ratios[stage]
        kernel, _, _ = _patch_geometry(config.backbone, stage)
        in_channels = image_channels if stage == 0 else dims[stage - 1]
        macs += kernel * kernel * in_channels * dim * tokens + dim * tokens  # patch conv
        macs += 2 * dim * tokens  # patch norm
        softmax = attention == "softmax" or stage == 3
        projections = 4 if softmax else 3  # qkv + proj, or to_qk + to_v + proj
        per_block = (
            2 * dim * tokens  # norm1
            + projections * tokens * dim * dim
            + 2 * dim * tokens  # norm2
            + 2 * tokens * dim * hidden  # fc1, fc2
        )
        if config.backbone == "pvtv2":
            per_block += 9 * hidden * tokens + hidden * tokens  # depthwise conv and bias
        macs += per_block * config.depths[stage]
        if config.backbone == "pvtv2" and stage < 3:
            macs += 2 * dim * tokens  # stage norm
        if config.backbone == "twins-svt":
            macs += 9 * dim * tokens + dim * tokens  # positional depthwise conv
    height, width = grids[3]
    macs += 2 * dims[3] * height * width  # final norm
    macs += dims[3] * config.num_classes  # head
    return macs


def softmax_attention_ops(tokens: int, dim: int, heads: int) -> dict[str, int]:
    """Softmax attention beyond its projections, per layer (authors' ``msa_flops``):
    q k^T and weights v as one multiply and one add each, plus the scale multiply."""
    return {
        "multiplications": 2 * tokens * tokens * dim + heads * tokens * tokens,
        "additions": 2 * tokens * tokens * dim,
    }


def ecoformer_attention_ops(tokens: int, dim: int, heads: int, bits: int, anchors: int) -> dict[str, int]:
    """EcoFormer attention beyond its projections, per layer (``fast_attn_ecoformer_flops``).

    Split by kind: ``paired`` terms count one multiply and one add each (hash projection
    phi A^T, denominator z.s); ``scalar_multiplications`` have no add (kernel scaling,
    +N beta, final 1/den); ``accumulates`` are adds with no multiply (squared distances, beta v);
    ``binary_ops`` are adds steered by a +-1 code (sum of codes, context z^T v, z G).
    """
    head_dim = dim // heads
    h, n, c, b, m = heads, tokens, head_dim, bits, anchors
    paired = h * n * m * b + h * n * b
    scalar_multiplications = 2 * h * n * m + h * n + h * n * c
    accumulates = 2 * h * n * m * c + h * n * c
    binary_ops = h * n * b + 2 * h * n * b * c
    return {
        "paired": paired,
        "scalar_multiplications": scalar_multiplications,
        "accumulates": accumulates,
        "binary_ops": binary_ops,
        "multiplications": paired + scalar_multiplications,
        "additions": paired + accumulates + binary_ops,
    }


def energy_account(config: EcoFormerConfig, image_size: Sequence[int] | None = None) -> dict[str, Any]:
    """Multiplications, additions and energy of one inference (batch 1), the authors' way,
    and the same for the backbone with softmax attention in every stage.

    Returns the manifest ``ops`` section. Energy uses 3.7 pJ per multiply and 0.9 pJ per add
    (45 nm, float32). Not counted, as upstream: L2 norms, kernel width, exp, sign, softmax,
    GELU, the token mean, and the loads/stores of weights and activations.
    """
    size = tuple(image_size or config.image_size)
    grids = token_grids(config, size)
    eco_macs = _module_macs(config, grids, "ecoformer")
    softmax_macs = _module_macs(config, grids, "softmax")
    paired, scalar_multiplications, accumulates, binary_ops = eco_macs, 0, 0, 0
    softmax_multiplications, softmax_additions = softmax_macs, softmax_macs
    for stage, (height, width) in enumerate(grids):
        tokens = height * width
        dim, heads, depth = config.embed_dims[stage], config.num_heads[stage], config.depths[stage]
        softmax = softmax_attention_ops(tokens, dim, heads)
        softmax_multiplications += softmax["multiplications"] * depth
        softmax_additions += softmax["additions"] * depth
        if stage == 3:
            paired += 2 * tokens * tokens * dim * depth
            scalar_multiplications += heads * tokens * tokens * depth
            continue
        eco = ecoformer_attention_ops(tokens, dim, heads, config.hash_bits, config.hash_anchors)
        paired += eco["paired"] * depth
        scalar_multiplications += eco["scalar_multiplications"] * depth
        accumulates += eco["accumulates"] * depth
        binary_ops += eco["binary_ops"] * depth
    multiplications = paired + scalar_multiplications
    additions = paired + accumulates + binary_ops
    energy = _energy_pj(multiplications, additions)
    baseline_energy = _energy_pj(softmax_multiplications, softmax_additions)
    return {
        "per": "inference",
        "image_size": list(size),
        "macs": paired,
        "accumulates": accumulates,
        "binary_ops": binary_ops,
        "scalar_multiplications": scalar_multiplications,
        "multiplications": multiplications,
        "additions": additions,
        "energy_pj": energy,
        "energy_pj_per_multiplication": ENERGY_PJ_PER_MULTIPLICATION,
        "energy_pj_per_addition": ENERGY_PJ_PER_ADDITION,
        "counted": (
            "float32 multiplications and additions of one image, as the EcoFormer authors count "
            "them (get_energy.py): conv, linear and LayerNorm as mmcv MACs (one multiply and "
            "one add each), plus attention matmuls, hashing and the linear-attention terms; "
            "energy = 3.7 pJ x multiplications + 0.9 pJ x additions (45 nm); L2 norms, kernel "
            "width, exp, sign, softmax, GELU and memory traffic are not counted; macs + "
            "scalar_multiplications = multiplications, macs + accumulates + binary_ops = "
            "additions (binary_ops: additions steered by a +-1 hash code)"
        ),
        "softmax_baseline": {
            "attention": "softmax in all four stages, fused qkv (the authors' 'msa' variant)",
            "multiplications": softmax_multiplications,
            "additions": softmax_additions,
            "energy_pj": baseline_energy,
        },
        "saving_percent": round(100.0 * (1.0 - energy / baseline_energy), 2),
    }


def _energy_pj(multiplications: int, additions: int) -> float:
    return ENERGY_PJ_PER_MULTIPLICATION * multiplications + ENERGY_PJ_PER_ADDITION * additions


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


class EcoFormerExport(nn.Module):
    """Export-ready copy of an EcoFormer: plain ops only, no input checks (the graph has no
    control flow), and optionally the hash codes of every EcoFormer layer as extra outputs.

    The copy leaves the reference model untouched.
    """

    def __init__(self, model: EcoFormer, hash_outputs: bool = True):
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        for module in self.model.modules():
            if isinstance(module, (KernelHash, EcoFormerAttention)):
                module.plain_ops = True
        self.hash_outputs = hash_outputs
        self.eval()

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        codes: list[torch.Tensor] = []
        logits = self.model.head(self.model.forward_features(image, codes if self.hash_outputs else None))
        return (logits, *codes) if self.hash_outputs else logits


# The family's own checks, as data the manifest carries (edgesdk.runtime.compare). Hash codes
# are signs of projections: a flip near zero is expected, so codes are judged by the share of
# agreeing bits; logits must meet the tolerance and pick the same class on every image. A flipped
# bit moves logits slightly; that shows up as logits error, and in the code checks as flips, so
# the two together say where an error came from.
HASH_CODES_CHECK = BitAgreement(min_agreement=BIT_AGREEMENT_REQUIRED, codes="sign")
LOGITS_CHECK = TopOneAgreement(min_agreement=1.0)


def bit_agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """HASH_CODES_CHECK's facts for one pair of code arrays (flips, and flips per image)."""
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    result = compare_output("hash_codes", reference, candidate, OutputRule(check=HASH_CODES_CHECK))
    return dict(result.check) if result.check is not None else {"passed": False, "reason": result.error}


# Reduced precision keeps float what a hash code is computed from (measured on the tiny preset,
# 13 scikit-image photographs, bit agreement per layer against PyTorch float32; 99.9 % required):
# with every weight int8-dynamic, TFLite agrees on 98.5-99.3 % of bits; with the hash's anchors and
# projection float, 99.3-99.5 % (the query projection feeding them flips signs too); with the
# query projection also float, ONNX agrees on 100 % and TFLite on 99.3-99.6 %, because LiteRT's
# int8 convolutions (patch embeddings, the MLPs' depthwise convolutions) feed every later hash;
# with those float as well, TFLite reaches 99.8-100 %.
HASH_PATH_REASON = ("feeds a hash code: a bit is the sign of a projection of this layer's output, so rounding here "
                    "flips bits (int8 with it quantized: 98.5-99.7 % bit agreement per layer, 99.9 % required)")
CONV_REASON = ("a convolution upstream of the hash codes: int8 convolutions flipped 0.2-0.7 % of the later layers' "
               "bits on TFLite (ONNX keeps convolutions float anyway)")


def hash_path_weights(module: nn.Module, image: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The weights reduced precision keeps float, found from the model, and why.

    Every EcoFormer attention's query/key projection (``to_qk``, whose output is hashed), the
    hash's anchors and projection, and every convolution that runs before the last hash (found
    by running ``image`` through ``module``). The anchors are also listed doubled: the distance
    ||u - a||^2 = ... - 2 u.a is converted with the factor folded into the anchors where they
    form a plain fully-connected op (one head).
    """
    order: list[nn.Module] = []
    hooks = [layer.register_forward_hook(lambda layer, inputs, output: order.append(layer))
             for layer in module.modules() if isinstance(layer, (EcoFormerAttention, nn.Conv2d))]
    try:
        with torch.no_grad():
            module(image)
    finally:
        for hook in hooks:
            hook.remove()
    last_hash = max((i for i, layer in enumerate(order) if isinstance(layer, EcoFormerAttention)), default=-1)
    before_last_hash = {id(layer) for layer in order[:last_hash]}
    keep: dict[str, torch.Tensor] = {}
    reasons: dict[str, str] = {}
    for name, layer in module.named_modules():
        if isinstance(layer, EcoFormerAttention):
            for weight_name, weight in ((f"{name}.to_qk.weight", layer.to_qk.weight),
                                        (f"{name}.hash.anchors", layer.hash.anchors),
                                        (f"{name}.hash.anchors*2", 2.0 * layer.hash.anchors),
                                        (f"{name}.hash.projection", layer.hash.projection)):
                keep[weight_name], reasons[weight_name] = weight.detach(), HASH_PATH_REASON
        elif isinstance(layer, nn.Conv2d) and id(layer) in before_last_hash:
            keep[f"{name}.weight"], reasons[f"{name}.weight"] = layer.weight.detach(), CONV_REASON
    return keep, reasons


@dataclass(frozen=True)
class EcoFormerExportOptions(ExportOptions):
    """Options of the ecoformer recipe (``--option NAME=VALUE``, or keywords of ``edgesdk.export``)."""

    family: ClassVar[str] = "ecoformer"

    image_size: tuple[int, int] | None = option(
        None, "input size in pixels, one side or HxW; the graph has this static size", IMAGE_SIZE,
        default_text="the preset's")
    hash_outputs: bool = option(
        True, "add every EcoFormer layer's hash codes as outputs hash_codes_s<stage>b<block> [batch, heads, "
        "tokens, bits] so validation measures bit agreement; false for a graph that only classifies", BOOLEAN)
    batch: int = option(1, "the example batch: the TFLite graph's static batch (ONNX's batch axis is dynamic)",
                        integer(minimum=1))
    logits_atol: float = option(1e-3, "logits tolerance of the validation check", number(minimum=0.0))


def recipe(model: EcoFormer, mode: str, options: EcoFormerExportOptions) -> ExportSpec:
    """Export recipe (options: ``EcoFormerExportOptions``). Mode "full" only (an image
    classifier has nothing to stream).

    The hash-code outputs cost nothing to compute (the graph computes them anyway). The image
    size is static; the batch axis is dynamic in ONNX (every op works per image; the hashing
    width comes from each image's own tokens) and fixed to ``batch`` in TFLite, whose delegates
    want static shapes.
    """
    if mode != "full":
        raise UsageError(f"ecoformer exports mode 'full' only, not {mode!r}")
    if not isinstance(model, EcoFormer):
        raise UsageError(f"the ecoformer recipe needs an EcoFormer model, got {type(model).__name__}")
    config = model.config
    image_size = options.image_size or config.image_size
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    image_size = tuple(int(s) for s in image_size)
    grids = token_grids(config, image_size)
    hash_outputs, batch, logits_atol = options.hash_outputs, options.batch, options.logits_atol

    generator = torch.Generator().manual_seed(0)
    example = torch.randn(batch, config.in_channels, *image_size, generator=generator)
    code_names = [f"hash_codes_{name}" for name in model.hash_layer_names()] if hash_outputs else []
    output_names = ["logits", *code_names]
    checks = {"logits": LOGITS_CHECK, **{name: HASH_CODES_CHECK for name in code_names}}

    layers = []
    for name, stage in zip(model.hash_layer_names(), [s for s in range(3) for _ in range(config.depths[s])]):
        height, width = grids[stage]
        layers.append({
            "name": name, "output": f"hash_codes_{name}" if hash_outputs else None,
            "heads": config.num_heads[stage], "tokens": height * width, "bits": config.hash_bits,
        })
    module = EcoFormerExport(model, hash_outputs=hash_outputs)
    keep, reasons = hash_path_weights(module, example)
    return ExportSpec(
        module=module,
        example_inputs={"image": example},
        output_names=output_names,
        mode="full",
        dynamic_axes={name: {0: "batch"} for name in ("image", *output_names)},
        atol=logits_atol,
        rtol=0.0,
        output_checks=checks,
        keep_float=keep,
        keep_float_reasons=reasons,
        sample_inputs=[{"image": _smooth_image(config.in_channels, image_size, seed)} for seed in (1, 2)],
        metadata={
            "ops": energy_account(config, image_size),
            "frontend": {
                "kind": "image",
                "layout": "NCHW",
                "image_size": list(image_size),
                "pixel_scale": 1.0 / 255.0,
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
                "resize_shorter_to": int(round(image_size[0] / 0.875)),
                "center_crop": list(image_size),
            },
            "extra": {
                "ecoformer": {
                    "backbone": config.backbone,
                    "hash_bits": config.hash_bits,
                    "hash_anchors": config.hash_anchors,
                    "token_grids": [list(g) for g in grids],
                    "hash_layers": layers,
                    "softmax_stage": 4,
                }
            },
        },
    )


def _smooth_image(channels: int, image_size: tuple[int, int], seed: int) -> np.ndarray:
    """A normalised image with spatial structure (sums of random low-frequency waves), so
    validation also sees tokens that resemble each other, as in real photographs."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, image_size[0])[:, None]
    cols = np.linspace(0.0, 1.0, image_size[1])[None, :]
    image = np.zeros((1, channels, *image_size))
    for channel in range(channels):
        for _ in range(4):
            fy, fx, phase = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 2 * np.pi)
            image[0, channel] += np.sin(2 * np.pi * (fy * rows + fx * cols) + phase)
    return (image / 2.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Presets (pvt/pvt_v2.py pvt_v2_b*, twins/gvt.py alt_gvt_small_ecoformer; b = 16, m = 25)
# --------------------------------------------------------------------------------------------

_WIDE = dict(embed_dims=(64, 128, 320, 512))

PRESETS: dict[str, Preset] = {
    "pvtv2-b0": Preset("pvtv2-b0", EcoFormerConfig(), "PVTv2-B0 EcoFormer, 3.1M params, 224x224"),
    "pvtv2-b1": Preset("pvtv2-b1", EcoFormerConfig(**_WIDE), "PVTv2-B1 EcoFormer, 224x224"),
    "pvtv2-b2": Preset("pvtv2-b2", EcoFormerConfig(**_WIDE, depths=(3, 4, 6, 3)), "PVTv2-B2 EcoFormer"),
    "pvtv2-b3": Preset("pvtv2-b3", EcoFormerConfig(**_WIDE, depths=(3, 4, 18, 3)), "PVTv2-B3 EcoFormer"),
    "pvtv2-b4": Preset("pvtv2-b4", EcoFormerConfig(**_WIDE, depths=(3, 8, 27, 3)), "PVTv2-B4 EcoFormer"),
    "twins-svt-s": Preset(
        "twins-svt-s",
        EcoFormerConfig(
            backbone="twins-svt", embed_dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16),
            mlp_ratios=(4, 4, 4, 4), depths=(2, 2, 10, 4),
        ),
        "Twins-SVT-S EcoFormer (alt_gvt_small_ecoformer), 224x224",
    ),
    "tiny": Preset(
        "tiny",
        EcoFormerConfig(
            embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4), mlp_ratios=(2, 2, 2, 2),
            depths=(1, 1, 1, 1), num_classes=10, image_size=(64, 64),
        ),
        "tiny PVTv2 EcoFormer for tests (head dim 16, b = 16, m = 25), 64x64",
        small=True,
    ),
    "tiny-twins": Preset(
        "tiny-twins",
        EcoFormerConfig(
            backbone="twins-svt", embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4),
            mlp_ratios=(2, 2, 2, 2), depths=(1, 1, 2, 1), num_classes=10, image_size=(64, 64),
        ),
        "tiny Twins-SVT EcoFormer for tests, 64x64 (tests/models/test_ecoformer.py exports it; "
        "left out of the generic small-preset run to spare the shared CPUs a second export)",
    ),
}


FAMILY = Family(
    name="ecoformer",
    build=build,
    presets=PRESETS,
    remap_checkpoint=remap_checkpoint,
    recipe=recipe,
    export_options=EcoFormerExportOptions,
    config_from_checkpoint=config_from_checkpoint,
    modes=("full",),
    description="EcoFormer (NeurIPS 22): PVTv2 / Twins-SVT with binary-hash linear attention",
)
