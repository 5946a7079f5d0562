"""LightHuBERT: a once-for-all HuBERT supernet, and standalone subnets cut out of it.

Paper: Wang et al., "LightHuBERT: Lightweight and Configurable Speech Representation Learning
with Once-for-All Hidden-Unit BERT", Interspeech 2022 (arXiv 2203.15610).
Upstream: github.com/mechanicalsea/lighthubert, checked at commit d53e545 (2022-09-26):
``lighthubert/lighthubert.py`` (search spaces, named subnets, parameter counting),
``lighthubert/modules/scaling_{linear,conv,transformer,multihead}.py`` (slicing rules, depth
map), ``lighthubert/modules/w2v2_modules.py`` (CNN). Checkpoint layout: fairseq-style
``{"model": state_dict, "cfg": {"model": {...}, "task": {...}}}`` with fairseq HuBERT key names.

What this file holds, top to bottom:

* configs: ``LightHuBERTConfig`` (the stored supernet), ``SearchSpace``, ``SubnetConfig`` (a
  subnet in the authors' keys: ``embed_dim``, ``layer_num``, ``heads_num``, ``atten_dim``,
  ``ffn_embed``, ``slide_wsz``) and the named subnets ``max``, ``min``, ``base``, ``small``;
* the slicing rules: the FFN block rule K(e, f) and the depth keep-map (both differ from plain
  first-k slicing, which gives wrong outputs);
* blocks, then the supernet (``LightHuBERTSupernet``, slices its full weights on every forward,
  as the authors' modules do) and the standalone subnet (``LightHuBERTSubnet``, static shapes);
* ``extract_subnet(supernet, subnet)`` -> standalone nn.Module holding sliced copies;
* counting: parameters by the authors' rule, MACs per second of audio;
* the checkpoint remap, ``config_from_checkpoint``, the export recipe, presets, ``FAMILY``.

Waveform contract: mono float32 at 16 kHz, shape [B, samples]. One output frame every 320
samples (50 Hz); frame t sees samples [320 t, 320 t + 400). The model itself does not normalise
the waveform (as upstream); when the checkpoint's task cfg says ``normalize`` the bundle's
``frontend`` section asks the caller to normalise each utterance to zero mean and unit variance
(``edgesdk.runtime.chunking.normalize_waveform`` does it in numpy).
"""
from __future__ import annotations

import ast
import json
import math
import random
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesdk.errors import CheckpointError, ConversionError, UsageError
from edgesdk.models.checkpoints import strip_prefix
from edgesdk.models.info import attach_model_info, model_info
from edgesdk.models.layers import feed_forward, init_linear_, merge_heads, softmax_attention, split_heads
from edgesdk.models.options import BOOLEAN, TEXT, ExportOptions, OptionType, integer, number, option
from edgesdk.models.registry import Family, Preset
from edgesdk.spec import ExportSpec

SAMPLE_RATE_HZ = 16000
HEAD_DIM = 64  # fixed by upstream: every head is 64 wide, a_i = 64 * h_i
STORED_LAYERS = 12  # upstream's encoder asserts 12 stored layers; the depth map is defined on them
LAYER_NORM_EPS = 1e-5

# (channels, kernel, stride) of HuBERT's seven CNN blocks: 400-sample receptive field, hop 320.
HUBERT_CONV_LAYERS: tuple[tuple[int, int, int], ...] = (
    ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
)

# Depth keep-map (upstream STransformerEncoder.depth_maps): which of the 12 stored layers a
# subnet of L layers runs. Not first-k: L = 10 drops stored layers 7 and 11.
DEPTH_KEEP_MAP: dict[int, tuple[int, ...]] = {
    6: (0, 1, 4, 5, 8, 9),
    7: (0, 1, 2, 4, 5, 8, 9),
    8: (0, 1, 2, 4, 5, 6, 8, 9),
    9: (0, 1, 2, 4, 5, 6, 8, 9, 10),
    10: (0, 1, 2, 3, 4, 5, 6, 8, 9, 10),
    11: tuple(range(11)),
    12: tuple(range(12)),
}


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """The values a subnet may take (upstream ``LightHuBERTSupernetConfig.search_space``).

    ``embed_dims`` is shared by all layers; ``heads`` and ``ffn_ratios`` are chosen per layer
    (FFN width ``int(ratio * embed_dim)``); ``layer_nums`` are depths of the keep-map.
    """

    embed_dims: tuple[int, ...]
    heads: tuple[int, ...]
    ffn_ratios: tuple[float, ...]
    layer_nums: tuple[int, ...]

    def allowed_ffn(self, embed_dim: int) -> tuple[int, ...]:
        return tuple(int(ratio * embed_dim) for ratio in self.ffn_ratios)

    @property
    def size(self) -> int:
        """Number of distinct subnets (upstream's count: e x sum_L (ratios x heads)^L)."""
        per_layer = len(self.ffn_ratios) * len(self.heads)
        return len(self.embed_dims) * sum(per_layer**depth for depth in self.layer_nums)


SEARCH_SPACES: dict[str, SearchSpace] = {
    "base": SearchSpace((512, 640, 768), (8, 10, 12), (3.5, 4.0), (12,)),
    "small": SearchSpace((256, 384, 512), (4, 6, 8), (3.0, 3.5, 4.0), (10, 11, 12)),
    # edgesdk's own, for tests: a 128-wide supernet with the same rules (fractional FFN
    # blocks, depth map, a_i != e) at a size that runs in milliseconds.
    "tiny": SearchSpace((64, 96, 128), (1, 2), (3.0, 3.5, 4.0), (10, 11, 12)),
}


@dataclass(frozen=True)
class LightHuBERTConfig:
    """The stored supernet: what the checkpoint's tensors are sized for.

    ``supernet_type`` names the search space ("base", "small", or edgesdk's "tiny"). Upstream
    stores both released supernets 768 wide; the Small one only searches narrower subnets.
    ``normalize`` is the checkpoint's task setting: callers normalise each utterance.
    """

    supernet_type: str = "base"
    embed_dim: int = 768
    ffn_embed_dim: int = 3072
    attention_heads: int = 12
    layers: int = STORED_LAYERS
    conv_feature_layers: tuple[tuple[int, int, int], ...] = HUBERT_CONV_LAYERS
    extractor_mode: str = "layer_norm"
    conv_pos: int = 128
    conv_pos_groups: int = 16
    normalize: bool = True
    sample_rate_hz: int = SAMPLE_RATE_HZ

    def __post_init__(self) -> None:
        if self.supernet_type not in SEARCH_SPACES:
            raise UsageError(
                f"supernet_type must be one of {', '.join(SEARCH_SPACES)}, not {self.supernet_type!r}"
            )
        if self.layers != STORED_LAYERS:
            raise UsageError(
                f"a LightHuBERT supernet stores {STORED_LAYERS} layers (the depth map is defined "
                f"on them), not {self.layers}"
            )
        if self.attention_heads * HEAD_DIM != self.embed_dim:
            raise UsageError(
                f"attention_heads x {HEAD_DIM} must equal embed_dim "
                f"({self.attention_heads} x {HEAD_DIM} != {self.embed_dim})"
            )
        if self.ffn_embed_dim % self.embed_dim:
            raise UsageError(
                f"ffn_embed_dim ({self.ffn_embed_dim}) must be a multiple of embed_dim "
                f"({self.embed_dim}): the FFN is stored as blocks of embed_dim units"
            )
        if self.extractor_mode not in ("layer_norm", "default"):
            raise UsageError(
                f"extractor_mode must be 'layer_norm' or 'default', not {self.extractor_mode!r}"
            )
        if not self.conv_feature_layers or any(len(layer) != 3 for layer in self.conv_feature_layers):
            raise UsageError("conv_feature_layers must be a non-empty list of (channels, kernel, stride)")
        if self.sample_rate_hz != SAMPLE_RATE_HZ:
            raise UsageError(f"LightHuBERT is trained on {SAMPLE_RATE_HZ} Hz audio only")
        space = SEARCH_SPACES[self.supernet_type]
        for embed in space.embed_dims:
            if embed % self.conv_pos_groups:
                raise UsageError(
                    f"embed_dim {embed} of the {self.supernet_type} search space is not divisible "
                    f"by conv_pos_groups={self.conv_pos_groups}"
                )
        too_wide = (
            max(space.embed_dims) > self.embed_dim
            or max(space.heads) * HEAD_DIM > self.embed_dim
            or max(space.ffn_ratios) > self.ffn_blocks
        )
        if too_wide:
            raise UsageError(
                f"the {self.supernet_type} search space does not fit a supernet stored at "
                f"embed_dim={self.embed_dim}, ffn_embed_dim={self.ffn_embed_dim}"
            )

    @property
    def ffn_blocks(self) -> int:
        """S = F / D: the FFN hidden axis is stored as S blocks of D units."""
        return self.ffn_embed_dim // self.embed_dim

    @property
    def cnn_channels(self) -> int:
        return self.conv_feature_layers[-1][0]

    @property
    def search_space(self) -> SearchSpace:
        return SEARCH_SPACES[self.supernet_type]


@dataclass(frozen=True)
class SubnetConfig:
    """One subnet, in upstream's keys (``set_sample_config``'s dict).

    Per-layer lists are indexed by the compact position of a kept layer (0..layer_num-1), not
    by the stored index (see ``DEPTH_KEEP_MAP``). ``atten_dim`` must be 64 x ``heads_num``;
    ``ffn_embed`` is an absolute width. Only global attention is supported (``slide_wsz`` all
    "global"): upstream's released search spaces use nothing else.
    """

    embed_dim: int
    layer_num: int
    heads_num: tuple[int, ...]
    atten_dim: tuple[int, ...]
    ffn_embed: tuple[int, ...]
    slide_wsz: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Normalise lists (from JSON) to tuples so configs hash and compare.
        for name in ("heads_num", "atten_dim", "ffn_embed", "slide_wsz"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if not self.slide_wsz:
            object.__setattr__(self, "slide_wsz", ("global",) * self.layer_num)
        for name in ("heads_num", "atten_dim", "ffn_embed", "slide_wsz"):
            if len(getattr(self, name)) != self.layer_num:
                raise UsageError(
                    f"subnet {name} has {len(getattr(self, name))} entries but layer_num is "
                    f"{self.layer_num}: give one per layer"
                )
        for index, (heads, atten) in enumerate(zip(self.heads_num, self.atten_dim)):
            if atten != heads * HEAD_DIM:
                raise UsageError(
                    f"subnet layer {index}: atten_dim must be {HEAD_DIM} x heads_num "
                    f"({HEAD_DIM} x {heads} = {heads * HEAD_DIM}), not {atten}"
                )
        if any(window != "global" for window in self.slide_wsz):
            raise UsageError(
                "subnet slide_wsz: only 'global' attention is supported (the released "
                "supernets were trained with global attention only)"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SubnetConfig":
        """Build from upstream's dict; ``ffn_ratio`` may stand in for ``ffn_embed``."""
        data = dict(data)
        known = {"embed_dim", "layer_num", "heads_num", "atten_dim", "ffn_embed", "ffn_ratio", "slide_wsz"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"unknown subnet keys: {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
            )
        missing = [key for key in ("embed_dim", "heads_num") if key not in data]
        if missing:
            raise UsageError(f"subnet config lacks {', '.join(missing)}")
        embed = int(data["embed_dim"])
        heads = data["heads_num"]
        layer_num = int(data.get("layer_num", len(heads) if isinstance(heads, Sequence) else STORED_LAYERS))
        heads = _per_layer(heads, layer_num, "heads_num")
        if "ffn_embed" in data:
            ffn = _per_layer(data["ffn_embed"], layer_num, "ffn_embed")
        elif "ffn_ratio" in data:
            ratios = _per_layer(data["ffn_ratio"], layer_num, "ffn_ratio", kind=float)
            ffn = tuple(int(ratio * embed) for ratio in ratios)
        else:
            raise UsageError("subnet config needs ffn_embed (absolute widths) or ffn_ratio")
        atten = _per_layer(data.get("atten_dim", [h * HEAD_DIM for h in heads]), layer_num, "atten_dim")
        slide = tuple(str(w) for w in data.get("slide_wsz", ("global",) * layer_num))
        return cls(embed, layer_num, heads, atten, ffn, slide)

    def to_dict(self) -> dict[str, Any]:
        """Upstream's dict (lists), JSON-ready."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @property
    def kept_layers(self) -> tuple[int, ...]:
        """Stored indices of the layers this subnet runs, in order."""
        return DEPTH_KEEP_MAP[self.layer_num]


def _per_layer(value: Any, layer_num: int, name: str, kind: type = int) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (kind(value),) * layer_num
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(kind(v) for v in value)
    raise UsageError(f"subnet {name} must be a number or a list of numbers, not {value!r}")


def uniform_subnet(embed_dim: int, heads: int, ffn_embed: int, layer_num: int) -> SubnetConfig:
    """A subnet with the same heads and FFN width in every layer."""
    return SubnetConfig(
        embed_dim, layer_num, (heads,) * layer_num, (heads * HEAD_DIM,) * layer_num, (ffn_embed,) * layer_num
    )


def max_subnet(space: SearchSpace) -> SubnetConfig:
    embed = max(space.embed_dims)
    return uniform_subnet(embed, max(space.heads), int(max(space.ffn_ratios) * embed), max(space.layer_nums))


def min_subnet(space: SearchSpace) -> SubnetConfig:
    embed = min(space.embed_dims)
    return uniform_subnet(embed, min(space.heads), int(min(space.ffn_ratios) * embed), min(space.layer_nums))


# The authors' default subnets (upstream LightHuBERTSupernetConfig.subnet; s3prl's
# lighthubert_base / lighthubert_small) and edgesdk's tiny default (fractional FFN, depth 11,
# attention width != embed width, so tests exercise every slicing rule).
DEFAULT_SUBNETS: dict[str, SubnetConfig] = {
    "base": uniform_subnet(640, 10, 2560, 12),
    "small": uniform_subnet(384, 6, 1536, 12),
    "tiny": uniform_subnet(96, 2, 336, 11),
}

NAMED_SUBNETS = ("max", "min", "base", "small", "tiny")


def named_subnets(config: LightHuBERTConfig) -> dict[str, SubnetConfig]:
    """Named subnets valid for this supernet: ``max``, ``min``, and its search space's default
    (``base`` on a Base supernet, ``small`` on a Small one, ``tiny`` on the test supernet)."""
    space = config.search_space
    return {
        "max": max_subnet(space),
        "min": min_subnet(space),
        config.supernet_type: DEFAULT_SUBNETS[config.supernet_type],
    }


def resolve_subnet(config: LightHuBERTConfig, subnet: "SubnetConfig | str | Mapping[str, Any] | None") -> SubnetConfig:
    """Turn a name, a JSON string, a dict or a SubnetConfig into a validated SubnetConfig.

    ``None`` and ``"default"`` mean the supernet's named default. Raises UsageError saying
    what is allowed when the subnet does not belong to this supernet's search space.
    """
    names = named_subnets(config)
    if subnet is None or subnet == "default":
        chosen = names[config.supernet_type]
    elif isinstance(subnet, SubnetConfig):
        chosen = subnet
    elif isinstance(subnet, Mapping):
        chosen = SubnetConfig.from_dict(subnet)
    elif isinstance(subnet, str) and subnet.strip().lower().endswith(".json") and not subnet.lstrip().startswith("{"):
        chosen = SubnetConfig.from_dict(read_subnet_file(subnet))
    elif isinstance(subnet, str) and subnet.lstrip().startswith("{"):
        try:
            data = json.loads(subnet)
        except json.JSONDecodeError as error:
            raise UsageError(f"subnet JSON does not parse: {error}") from None
        chosen = SubnetConfig.from_dict(data)
    elif isinstance(subnet, str):
        if subnet not in names:
            other = [n for n in NAMED_SUBNETS if n not in names]
            hint = f" ({', '.join(other)} belong to other supernets)" if subnet in other else ""
            raise UsageError(
                f"unknown subnet {subnet!r} for the {config.supernet_type} supernet; named subnets: "
                f"{', '.join(names)}, 'default', or a JSON dict{hint}"
            )
        chosen = names[subnet]
    else:
        raise UsageError(f"subnet must be a name, a JSON string or a dict, not {type(subnet).__name__}")
    check_subnet(config, chosen)
    return chosen


def read_subnet_file(path: str) -> dict[str, Any]:
    """The subnet dict of a JSON file: upstream's dict itself, or ``edgesdk search``'s
    subnet.json (its ``subnet`` entry)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"subnet file {path} does not exist") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"subnet file {path} is not readable JSON: {error}") from None
    if isinstance(data, Mapping) and isinstance(data.get("subnet"), Mapping):
        data = data["subnet"]
    if not isinstance(data, Mapping):
        raise UsageError(f"subnet file {path} holds no subnet dict (expected upstream's keys or a 'subnet' entry)")
    return dict(data)


def check_subnet(config: LightHuBERTConfig, subnet: SubnetConfig) -> None:
    """Raise UsageError unless ``subnet`` lies in the supernet's search space."""
    space = config.search_space
    where = f"the {config.supernet_type} supernet's search space"
    if subnet.embed_dim not in space.embed_dims:
        raise UsageError(
            f"embed_dim {subnet.embed_dim} is not in {where}: allowed {list(space.embed_dims)}"
        )
    if subnet.layer_num not in space.layer_nums:
        raise UsageError(f"layer_num {subnet.layer_num} is not in {where}: allowed {list(space.layer_nums)}")
    allowed_ffn = space.allowed_ffn(subnet.embed_dim)
    for index, (heads, ffn) in enumerate(zip(subnet.heads_num, subnet.ffn_embed)):
        if heads not in space.heads:
            raise UsageError(
                f"layer {index}: heads_num {heads} is not in {where}: allowed {list(space.heads)}"
            )
        if ffn not in allowed_ffn:
            raise UsageError(
                f"layer {index}: ffn_embed {ffn} is not allowed for embed_dim {subnet.embed_dim} in "
                f"{where}: allowed {list(allowed_ffn)} (ffn_ratio {list(space.ffn_ratios)} x embed_dim)"
            )


def sample_subnet(space: SearchSpace, rng: random.Random) -> SubnetConfig:
    """Draw a subnet as upstream's ``sample_subnet`` does: depth and width once, heads and FFN
    ratio independently per layer."""
    layer_num = rng.choice(space.layer_nums)
    embed = rng.choice(space.embed_dims)
    heads = tuple(rng.choice(space.heads) for _ in range(layer_num))
    ffn = tuple(int(rng.choice(space.ffn_ratios) * embed) for _ in range(layer_num))
    return SubnetConfig(embed, layer_num, heads, tuple(h * HEAD_DIM for h in heads), ffn)


# ----------------------------------------------------------------------------------------------
# Slicing rules
# ----------------------------------------------------------------------------------------------


def ffn_keep_indices(stored_embed_dim: int, embed_dim: int, ffn_embed: int) -> list[int]:
    """FFN hidden units a subnet keeps: K(e, f) = U_j {j*D + u : 0 <= u < min(e, f - j*e)}.

    The stored FFN axis is S = F/D blocks of D units; a subnet keeps the first ``e`` units of
    each block, and only part of the last block it uses when f/e is fractional
    (upstream SLinear with in/out_splits). Example D=768, e=640, f=2560:
    [0,640) u [768,1408) u [1536,2176) u [2304,2944).
    """
    indices: list[int] = []
    block = 0
    while block * embed_dim < ffn_embed:
        width = min(embed_dim, ffn_embed - block * embed_dim)
        indices.extend(range(block * stored_embed_dim, block * stored_embed_dim + width))
        block += 1
    return indices


def weight_norm_weight(weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    """W = g * v / ||v|| with weight norm over dim=2: one norm per kernel tap, over all
    output and input channels (upstream ``nn.utils.weight_norm(conv, dim=2)``)."""
    norm = weight_v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
    return weight_v * (weight_g / norm)


# ----------------------------------------------------------------------------------------------
# Blocks, smallest first
# ----------------------------------------------------------------------------------------------


class ConvBlock(nn.Module):
    """One CNN block: conv (no bias), optional norm, exact GELU.

    ``norm``: "layer" normalises the channels of each frame (layer_norm mode, every block);
    "group" is GroupNorm with one group per channel, i.e. each channel over *time* (default
    mode, block 0 only; its output depends on the whole input length); None: no norm.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, norm: str | None):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=False)
        self.norm_kind = norm
        if norm == "layer":
            self.norm = nn.LayerNorm(out_channels, eps=LAYER_NORM_EPS)
        elif norm == "group":
            self.norm = nn.GroupNorm(out_channels, out_channels, eps=LAYER_NORM_EPS)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm_kind == "layer":
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)  # LayerNorm over channels per frame
        elif self.norm_kind == "group":
            x = self.norm(x)
        return self.activation(x)


class ConvFeatureExtractor(nn.Module):
    """The seven-block waveform CNN: [B, samples] -> [B, channels, frames]."""

    def __init__(self, layers: Sequence[tuple[int, int, int]], mode: str):
        super().__init__()
        blocks = []
        in_channels = 1
        for index, (channels, kernel, stride) in enumerate(layers):
            norm = "layer" if mode == "layer_norm" else ("group" if index == 0 else None)
            blocks.append(ConvBlock(in_channels, channels, kernel, stride, norm))
            in_channels = channels
        self.blocks = nn.ModuleList(blocks)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform.unsqueeze(1)  # [B, 1, samples]
        for block in self.blocks:
            x = block(x)
        return x


def _positional_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    """x + GELU(conv(x)) over time, "same" length: pad K//2 left and K//2 - 1 right for even K
    (upstream pads K//2 both sides and drops the last frame: the same numbers, one op fewer)."""
    kernel = weight.shape[-1]
    left, right = kernel // 2, kernel // 2 - (1 if kernel % 2 == 0 else 0)
    y = F.pad(x.transpose(1, 2), (left, right))  # [B, e, T + K - 1]
    y = F.conv1d(y, weight, bias, groups=groups)
    return x + F.gelu(y.transpose(1, 2))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Global multi-head attention on projected [B, T, heads*64] tensors; q is scaled by
    64 ** -0.5 after its projection, as upstream."""
    q, k, v = (split_heads(t, heads) for t in (q, k, v))
    return merge_heads(softmax_attention(q, k, v, HEAD_DIM**-0.5))


class WeightNormConv(nn.Module):
    """The positional conv's stored parameters: weight norm (dim=2) ``weight_g`` [1, 1, K],
    ``weight_v`` [D, D/groups, K], and ``bias`` [D]."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.groups = groups
        # upstream init: N(0, sqrt(4 / (K * D))), g = ||v|| per tap, zero bias
        weight_v = torch.randn(channels, channels // groups, kernel) * math.sqrt(4.0 / (kernel * channels))
        self.weight_v = nn.Parameter(weight_v)
        self.weight_g = nn.Parameter(weight_v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt())
        self.bias = nn.Parameter(torch.zeros(channels))

    def weight(self) -> torch.Tensor:
        return weight_norm_weight(self.weight_g, self.weight_v)


class SupernetAttention(nn.Module):
    """Full-width q/k/v/out projections; ``forward`` slices the first ``heads`` heads."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        e, a = x.shape[-1], heads * HEAD_DIM
        q = F.linear(x, self.q_proj.weight[:a, :e], self.q_proj.bias[:a])
        k = F.linear(x, self.k_proj.weight[:a, :e], self.k_proj.bias[:a])
        v = F.linear(x, self.v_proj.weight[:a, :e], self.v_proj.bias[:a])
        return F.linear(_attend(q, k, v, heads), self.out_proj.weight[:e, :a], self.out_proj.bias[:e])


class SupernetBlock(nn.Module):
    """A stored post-LN layer; slices itself to (embed e, heads h, FFN f) on every call."""

    def __init__(self, embed_dim: int, ffn_embed_dim: int):
        super().__init__()
        self.attention = SupernetAttention(embed_dim)
        self.attention_norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.fc1 = nn.Linear(embed_dim, ffn_embed_dim)
        self.fc2 = nn.Linear(ffn_embed_dim, embed_dim)
        self.ffn_norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)

    def _ffn_weights(self, e: int, f: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Upstream's formulation of the block rule: split the hidden axis into blocks of D,
        # take the first min(e, f - j*e) units of each used block, concatenate.
        stored = self.fc1.in_features
        used = math.ceil(f / e)
        widths = [min(e, f - j * e) for j in range(used)]
        fc1_blocks = torch.split(self.fc1.weight, stored, dim=0)[:used]
        fc1_bias_blocks = torch.split(self.fc1.bias, stored, dim=0)[:used]
        fc2_blocks = torch.split(self.fc2.weight, stored, dim=1)[:used]
        fc1_weight = torch.cat([b[:w, :e] for b, w in zip(fc1_blocks, widths)], dim=0)
        fc1_bias = torch.cat([b[:w] for b, w in zip(fc1_bias_blocks, widths)], dim=0)
        fc2_weight = torch.cat([b[:e, :w] for b, w in zip(fc2_blocks, widths)], dim=1)
        return fc1_weight, fc1_bias, fc2_weight

    def forward(self, x: torch.Tensor, heads: int, ffn_embed: int) -> torch.Tensor:
        e = x.shape[-1]
        x = F.layer_norm(
            x + self.attention(x, heads), (e,), self.attention_norm.weight[:e], self.attention_norm.bias[:e], LAYER_NORM_EPS
        )
        fc1_weight, fc1_bias, fc2_weight = self._ffn_weights(e, ffn_embed)
        x = x + feed_forward(x, fc1_weight, fc1_bias, fc2_weight, self.fc2.bias[:e])
        return F.layer_norm(x, (e,), self.ffn_norm.weight[:e], self.ffn_norm.bias[:e], LAYER_NORM_EPS)


class SelfAttention(nn.Module):
    """Static multi-head self-attention: embed e, ``heads`` heads of 64 (width a = 64 h)."""

    def __init__(self, embed_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        width = heads * HEAD_DIM
        self.q_proj = nn.Linear(embed_dim, width)
        self.k_proj = nn.Linear(embed_dim, width)
        self.v_proj = nn.Linear(embed_dim, width)
        self.out_proj = nn.Linear(width, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(_attend(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads))


class TransformerBlock(nn.Module):
    """Static post-LN layer: x = LN(x + MHA(x)); x = LN(x + fc2(GELU(fc1(x))))."""

    def __init__(self, embed_dim: int, heads: int, ffn_embed: int):
        super().__init__()
        self.attention = SelfAttention(embed_dim, heads)
        self.attention_norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.fc1 = nn.Linear(embed_dim, ffn_embed)
        self.fc2 = nn.Linear(ffn_embed, embed_dim)
        self.ffn_norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.attention(x))
        return self.ffn_norm(x + feed_forward(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias))


# ----------------------------------------------------------------------------------------------
# The models
# ----------------------------------------------------------------------------------------------


class LightHuBERTSupernet(nn.Module):
    """The weight-sharing supernet, as stored in the authors' checkpoints.

    ``forward(waveform)`` runs the active subnet (``self.subnet``; ``max`` after construction,
    like upstream) by slicing the full weights on every call, and returns the L+1 hidden
    states [B, frames, e]: element 0 is the projected CNN feature (before the positional
    conv), element i the output of the i-th kept layer. ``mask_embedding`` is training-only
    and kept so that the authors' checkpoints load strictly.
    """

    def __init__(self, config: LightHuBERTConfig):
        super().__init__()
        self.config = config
        D = config.embed_dim
        self.feature_extractor = ConvFeatureExtractor(config.conv_feature_layers, config.extractor_mode)
        self.feature_norm = nn.LayerNorm(config.cnn_channels, eps=LAYER_NORM_EPS)
        self.feature_projection = nn.Linear(config.cnn_channels, D)
        self.mask_embedding = nn.Parameter(torch.rand(D))
        self.pos_conv = WeightNormConv(D, config.conv_pos, config.conv_pos_groups)
        self.encoder_norm = nn.LayerNorm(D, eps=LAYER_NORM_EPS)
        self.blocks = nn.ModuleList(SupernetBlock(D, config.ffn_embed_dim) for _ in range(config.layers))
        for block in self.blocks:  # upstream init_sbert_params: N(0, 0.02) linears, zero bias
            for linear in (block.attention.q_proj, block.attention.k_proj, block.attention.v_proj, block.fc1, block.fc2):
                init_linear_(linear, truncate=False)
        self.subnet = max_subnet(config.search_space)

    def set_subnet(self, subnet: "SubnetConfig | str | Mapping[str, Any]") -> SubnetConfig:
        """Choose the active subnet (validated against the search space); returns it."""
        self.subnet = resolve_subnet(self.config, subnet)
        return self.subnet

    def forward_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """CNN features after the 512-wide LayerNorm: [B, samples] -> [B, frames, C]."""
        return self.feature_norm(self.feature_extractor(waveform).transpose(1, 2))

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.forward_encoder(self.forward_features(waveform))

    def forward_encoder(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The active subnet after the CNN: features [B, frames, C] -> the L+1 hidden states.
        (The CNN is the same in every subnet, so a search computes it once per clip.)"""
        subnet = self.subnet
        e = subnet.embed_dim
        x = F.linear(features, self.feature_projection.weight[:e], self.feature_projection.bias[:e])
        hidden_states = [x]
        # Weight norm over the *full* stored tensor first, then slice (slicing g and v apart
        # gives a different W).
        weight = self.pos_conv.weight()[:e, : e // self.config.conv_pos_groups, :]
        x = _positional_conv(x, weight, self.pos_conv.bias[:e], self.config.conv_pos_groups)
        x = F.layer_norm(x, (e,), self.encoder_norm.weight[:e], self.encoder_norm.bias[:e], LAYER_NORM_EPS)
        for compact, stored in enumerate(subnet.kept_layers):
            x = self.blocks[stored](x, subnet.heads_num[compact], subnet.ffn_embed[compact])
            hidden_states.append(x)
        return tuple(hidden_states)


class LightHuBERTSubnet(nn.Module):
    """A standalone subnet: plain static modules holding sliced copies of supernet weights.

    ``forward(waveform [B, samples])`` returns the L+1 hidden states [B, frames, e], the same
    list the supernet returns under this subnet. ``subnet`` and ``supernet_config`` record
    where it came from.
    """

    def __init__(self, config: LightHuBERTConfig, subnet: SubnetConfig):
        super().__init__()
        self.supernet_config = config
        self.subnet = subnet
        e = subnet.embed_dim
        self.feature_extractor = ConvFeatureExtractor(config.conv_feature_layers, config.extractor_mode)
        self.feature_norm = nn.LayerNorm(config.cnn_channels, eps=LAYER_NORM_EPS)
        self.feature_projection = nn.Linear(config.cnn_channels, e)
        self.pos_conv = nn.Conv1d(e, e, config.conv_pos, groups=config.conv_pos_groups)
        self.encoder_norm = nn.LayerNorm(e, eps=LAYER_NORM_EPS)
        self.blocks = nn.ModuleList(
            TransformerBlock(e, heads, ffn) for heads, ffn in zip(subnet.heads_num, subnet.ffn_embed)
        )

    def forward_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """CNN features after the 512-wide LayerNorm: [B, samples] -> [B, frames, C]."""
        return self.feature_norm(self.feature_extractor(waveform).transpose(1, 2))

    def forward_positional(self, x: torch.Tensor) -> torch.Tensor:
        """Positional conv and encoder LayerNorm: projected features [B, frames, e] -> layer 1's input."""
        return self.encoder_norm(_positional_conv(x, self.pos_conv.weight, self.pos_conv.bias, self.pos_conv.groups))

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.feature_projection(self.forward_features(waveform))
        hidden_states = [x]
        x = self.forward_positional(x)
        for block in self.blocks:
            x = block(x)
            hidden_states.append(x)
        return tuple(hidden_states)


@torch.no_grad()
def extract_subnet(
    supernet: LightHuBERTSupernet, subnet: "SubnetConfig | str | Mapping[str, Any] | None" = None
) -> LightHuBERTSubnet:
    """Cut ``subnet`` out of ``supernet`` into a standalone model (eval mode).

    The copy is independent of the supernet (no shared storage). Slicing follows upstream
    exactly: first-k rows/columns for projections, attention heads and LayerNorms; the FFN
    block rule ``ffn_keep_indices``; the positional conv's weight norm evaluated on the full
    tensor before slicing; layers chosen by ``DEPTH_KEEP_MAP`` and renumbered 0..L-1.
    ``subnet``: a SubnetConfig, a named subnet, a JSON string or dict; None = the default.
    """
    if not isinstance(supernet, LightHuBERTSupernet):
        raise UsageError(f"extract_subnet needs a LightHuBERTSupernet, not {type(supernet).__name__}")
    config = supernet.config
    chosen = resolve_subnet(config, subnet)
    e = chosen.embed_dim
    D = config.embed_dim
    with torch.device(supernet.feature_projection.weight.device):
        model = LightHuBERTSubnet(config, chosen)
    model.to(supernet.feature_projection.weight.dtype)

    def copy_into(target: torch.Tensor, source: torch.Tensor) -> None:
        if target.shape != source.shape:  # a slicing bug must not broadcast silently
            raise RuntimeError(f"extract_subnet: slice {tuple(source.shape)} does not fit {tuple(target.shape)}")
        target.copy_(source)

    model.feature_extractor.load_state_dict(supernet.feature_extractor.state_dict())
    model.feature_norm.load_state_dict(supernet.feature_norm.state_dict())
    copy_into(model.feature_projection.weight, supernet.feature_projection.weight[:e])
    copy_into(model.feature_projection.bias, supernet.feature_projection.bias[:e])
    copy_into(model.pos_conv.weight, supernet.pos_conv.weight()[:e, : e // config.conv_pos_groups])
    copy_into(model.pos_conv.bias, supernet.pos_conv.bias[:e])
    copy_into(model.encoder_norm.weight, supernet.encoder_norm.weight[:e])
    copy_into(model.encoder_norm.bias, supernet.encoder_norm.bias[:e])
    for block, stored, ffn in zip(model.blocks, chosen.kept_layers, chosen.ffn_embed):
        source = supernet.blocks[stored]
        a = block.attention.heads * HEAD_DIM
        for name in ("q_proj", "k_proj", "v_proj"):
            copy_into(getattr(block.attention, name).weight, getattr(source.attention, name).weight[:a, :e])
            copy_into(getattr(block.attention, name).bias, getattr(source.attention, name).bias[:a])
        copy_into(block.attention.out_proj.weight, source.attention.out_proj.weight[:e, :a])
        copy_into(block.attention.out_proj.bias, source.attention.out_proj.bias[:e])
        keep = torch.tensor(ffn_keep_indices(D, e, ffn), device=source.fc1.weight.device)
        copy_into(block.fc1.weight, source.fc1.weight.index_select(0, keep)[:, :e])
        copy_into(block.fc1.bias, source.fc1.bias.index_select(0, keep))
        copy_into(block.fc2.weight, source.fc2.weight.index_select(1, keep)[:e])
        copy_into(block.fc2.bias, source.fc2.bias[:e])
        for name in ("attention_norm", "ffn_norm"):
            copy_into(getattr(block, name).weight, getattr(source, name).weight[:e])
            copy_into(getattr(block, name).bias, getattr(source, name).bias[:e])
    model.eval()
    info = model_info(supernet)
    if info is not None:  # the standalone model is what gets exported: its own parameter count
        attach_model_info(model, replace(info, parameters=sum(p.numel() for p in model.parameters())))
    return model


# ----------------------------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------------------------


def frames_for_samples(samples: int, conv_layers: Sequence[tuple[int, int, int]] = HUBERT_CONV_LAYERS) -> int:
    """Output frames for ``samples`` input samples (0 when shorter than the receptive field)."""
    length = samples
    for _, kernel, stride in conv_layers:
        length = (length - kernel) // stride + 1
        if length <= 0:
            return 0
    return length


def cnn_receptive_field(conv_layers: Sequence[tuple[int, int, int]] = HUBERT_CONV_LAYERS) -> tuple[int, int]:
    """(receptive field, hop) of one CNN output frame in samples: r = 1 + sum (k_l - 1) prod s_m."""
    field_samples, hop = 1, 1
    for _, kernel, stride in conv_layers:
        field_samples += (kernel - 1) * hop
        hop *= stride
    return field_samples, hop


def authors_parameter_count(config: LightHuBERTConfig, subnet: SubnetConfig) -> int:
    """Parameters of ``subnet`` counted as upstream's ``calc_sampled_param_num`` counts them:
    CNN, its norms, the 512-wide LayerNorm and ``mask_emb`` at full stored size (the last is
    training-only: the standalone subnet has D fewer parameters), the positional conv without
    weight_g, and the sliced projection, encoder LayerNorm and kept layers."""
    D, e = config.embed_dim, subnet.embed_dim
    count = 0
    in_channels = 1
    for channels, kernel, _ in config.conv_feature_layers:
        count += channels * in_channels * kernel
        in_channels = channels
    norm_blocks = len(config.conv_feature_layers) if config.extractor_mode == "layer_norm" else 1
    C = config.cnn_channels
    count += norm_blocks * 2 * C + 2 * C + D  # CNN norms, feature LayerNorm, mask_emb (full D)
    count += C * e + e  # projection
    count += e * (e // config.conv_pos_groups) * config.conv_pos + e  # positional conv
    count += 2 * e  # encoder LayerNorm
    for a, f in zip(subnet.atten_dim, subnet.ffn_embed):
        count += 4 * e * a + 3 * a + e + 2 * e * f + f + e + 4 * e
    return count


def count_macs(config: LightHuBERTConfig, subnet: SubnetConfig, samples: int) -> int:
    """Multiply-accumulates of one inference over ``samples`` samples: convolutions, linear
    layers and the two attention matmuls (Q K^T and P V). Norms, GELU, softmax not counted."""
    macs = 0
    length, in_channels = samples, 1
    for channels, kernel, stride in config.conv_feature_layers:
        length = (length - kernel) // stride + 1
        macs += max(length, 0) * channels * in_channels * kernel
        in_channels = channels
    T, e = max(length, 0), subnet.embed_dim
    macs += T * config.cnn_channels * e
    macs += T * e * (e // config.conv_pos_groups) * config.conv_pos
    for a, f in zip(subnet.atten_dim, subnet.ffn_embed):
        macs += 4 * T * e * a + 2 * T * T * a + 2 * T * e * f
    return macs


def subnet_row(config: LightHuBERTConfig, name: str, subnet: SubnetConfig) -> dict[str, Any]:
    """One table row; keys documented in ``list_subnets``."""
    def summary(values: tuple[int, ...]) -> int | str:
        # one number when uniform, else "min-max" (per-layer lists are in row["subnet"])
        return values[0] if len(set(values)) == 1 else f"{min(values)}-{max(values)}"

    params = authors_parameter_count(config, subnet)
    return {
        "name": name,
        "embed_dim": subnet.embed_dim,
        "layer_num": subnet.layer_num,
        "heads_num": summary(subnet.heads_num),
        "ffn_embed": summary(subnet.ffn_embed),
        "params": params,
        "standalone_params": params - config.embed_dim,
        "macs_per_second": count_macs(config, subnet, SAMPLE_RATE_HZ),
        "subnet": subnet.to_dict(),
    }


def _config_of(model_or_config: Any) -> LightHuBERTConfig:
    if model_or_config is None:
        return PRESETS["base-supernet"].config
    if isinstance(model_or_config, LightHuBERTConfig):
        return model_or_config
    if isinstance(model_or_config, str):
        if model_or_config not in PRESETS:
            raise UsageError(f"unknown lighthubert preset {model_or_config!r}; one of: {', '.join(PRESETS)}")
        return PRESETS[model_or_config].config
    config = getattr(model_or_config, "config", None) or getattr(model_or_config, "supernet_config", None)
    if isinstance(config, LightHuBERTConfig):
        return config
    raise UsageError(f"expected a LightHuBERT model, config or preset name, not {type(model_or_config).__name__}")


def list_subnets(model_or_config: Any = None) -> list[dict[str, Any]]:
    """Rows for the named subnets of a supernet (model, config or preset name; default Base).

    Row keys: ``name``; ``embed_dim``; ``layer_num``; ``heads_num`` and ``ffn_embed`` (a number
    when uniform across layers, else the range as "min-max"); ``params`` (upstream's count, which
    includes the training-only mask embedding at full width); ``standalone_params`` (the
    extracted model's parameter count); ``macs_per_second`` (MACs for one second of audio,
    49 frames, as ``count_macs`` counts them); ``subnet`` (upstream's dict, for ``--subnet``).
    """
    config = _config_of(model_or_config)
    return [subnet_row(config, name, subnet) for name, subnet in named_subnets(config).items()]


def sample_subnets(n: int, seed: int = 0, model_or_config: Any = None) -> list[dict[str, Any]]:
    """``n`` subnets drawn from the search space with ``random.Random(seed)``; rows as in
    ``list_subnets``, named ``sample-<i>``."""
    if n < 1:
        raise UsageError(f"the number of subnets to sample must be at least 1, not {n}")
    config = _config_of(model_or_config)
    rng = random.Random(seed)
    return [subnet_row(config, f"sample-{i}", sample_subnet(config.search_space, rng)) for i in range(n)]


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------

# Keys in the authors' files that inference does not use, dropped by name: the HuBERT
# pretraining heads (label embeddings, final projection) and the distillation prediction head.
DROPPED_KEYS = (
    re.compile(r"label_embs_concat"),
    re.compile(r"final_proj\.(weight|bias)"),
    re.compile(r"layer_pred_heads\.\d+\.(weight|bias)"),
)

# authors' key (fullmatch) -> edgesdk key
REMAP_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"feature_extractor.blocks.\1.conv.weight"),
        (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.blocks.\1.norm.\2"),
        (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.blocks.0.norm.\1"),
        (r"layer_norm\.(weight|bias)", r"feature_norm.\1"),
        (r"post_extract_proj\.(weight|bias)", r"feature_projection.\1"),
        (r"mask_emb", "mask_embedding"),
        (r"encoder\.pos_conv\.0\.(weight_g|parametrizations\.weight\.original0)", "pos_conv.weight_g"),
        (r"encoder\.pos_conv\.0\.(weight_v|parametrizations\.weight\.original1)", "pos_conv.weight_v"),
        (r"encoder\.pos_conv\.0\.bias", "pos_conv.bias"),
        (r"encoder\.layer_norm\.(weight|bias)", r"encoder_norm.\1"),
        (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"blocks.\1.attention.\2_proj.\3"),
        (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"blocks.\1.attention_norm.\2"),
        (r"encoder\.layers\.(\d+)\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.\2.\3"),
        (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"blocks.\1.ffn_norm.\2"),
    )
)


def remap_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' (fairseq HuBERT-named) state_dict -> edgesdk's supernet keys.

    Strips DataParallel ``module.`` prefixes, drops ``label_embs_concat``, ``final_proj.*`` and
    ``layer_pred_heads.*`` by name, renames the rest by ``REMAP_RULES`` and raises
    CheckpointError naming every key it cannot place. A plain HuBERT checkpoint (pretraining
    heads but no ``layer_pred_heads`` distillation head) is rejected with its own message.
    """
    keys = strip_prefix(state_dict, "module.")
    if "feature_projection.weight" in keys:
        return dict(keys)  # already edgesdk's layout
    has_pretraining_heads = "label_embs_concat" in keys or "final_proj.weight" in keys
    if has_pretraining_heads and not any(key.startswith("layer_pred_heads.") for key in keys):
        raise CheckpointError(
            "this looks like a plain HuBERT checkpoint (it has the pretraining heads final_proj / "
            "label_embs_concat but no layer_pred_heads.* distillation head), not a LightHuBERT "
            "supernet; use a lighthubert_base.pt / lighthubert_small.pt / lighthubert_stage1.pt file"
        )
    remapped: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    for key, value in keys.items():
        if any(pattern.fullmatch(key) for pattern in DROPPED_KEYS):
            continue
        for pattern, replacement in REMAP_RULES:
            if pattern.fullmatch(key):
                remapped[pattern.sub(replacement, key)] = value
                break
        else:
            unmatched.append(key)
    if unmatched:
        shown = ", ".join(sorted(unmatched)[:12]) + (f" (+{len(unmatched) - 12} more)" if len(unmatched) > 12 else "")
        raise CheckpointError(f"keys that are not part of a LightHuBERT supernet: {shown}")
    return remapped


def _parse_conv_layers(text: str) -> tuple[tuple[int, int, int], ...]:
    """Evaluate fairseq's ``conv_feature_layers`` string ("[(512,10,5)] + [(512,3,2)] * 4 ...")
    without eval: only list/tuple literals of ints, ``+`` and ``*`` are allowed."""

    def evaluate(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return evaluate(node.body)
        if isinstance(node, ast.List):
            return [evaluate(item) for item in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(evaluate(item) for item in node.elts)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = evaluate(node.left), evaluate(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise CheckpointError(f"cfg conv_feature_layers has an unsupported expression: {text!r}")

    try:
        layers = evaluate(ast.parse(text, mode="eval"))
    except SyntaxError:
        raise CheckpointError(f"cfg conv_feature_layers does not parse: {text!r}") from None
    if not isinstance(layers, list) or not all(isinstance(layer, tuple) and len(layer) == 3 for layer in layers):
        raise CheckpointError(f"cfg conv_feature_layers is not a list of (dim, kernel, stride): {text!r}")
    return tuple(layers)


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    if value is None or isinstance(value, Mapping):
        return value
    return vars(value) if hasattr(value, "__dict__") else None  # argparse.Namespace


SUPERNET_MODEL_NAMES = ("hubert_pruner", "student_hubert")


def config_from_checkpoint(container: Mapping[str, Any], config: LightHuBERTConfig) -> LightHuBERTConfig:
    """Architecture from the checkpoint's fairseq ``cfg`` (``container["extra"]["cfg"]``).

    Reads ``cfg.model`` (encoder widths, extractor mode, conv layers, positional conv, search
    space from ``supernet_type`` or the ``pruner_supernet`` YAML path) and ``cfg.task.normalize``.
    Without a cfg the widths and extractor mode come from the tensor shapes and the preset
    gives the search space. A cfg that names another model (``_name`` 'hubert', 'wav2vec2')
    is rejected.
    """
    extra = container.get("extra", {}) or {}
    cfg = _as_mapping(extra.get("cfg"))
    if cfg is None and _as_mapping(extra.get("args")) is not None:
        cfg = {"model": _as_mapping(extra["args"]), "task": _as_mapping(extra["args"])}
    changes: dict[str, Any] = {}
    if cfg is not None:
        model_cfg = _as_mapping(cfg.get("model")) or {}
        name = model_cfg.get("_name")
        if name is not None and name not in SUPERNET_MODEL_NAMES:
            raise CheckpointError(
                f"cfg.model._name is {name!r}: not a LightHuBERT supernet (expected "
                f"{' or '.join(repr(n) for n in SUPERNET_MODEL_NAMES)})"
            )
        if model_cfg.get("layer_norm_first"):
            raise CheckpointError("cfg.model.layer_norm_first=True: only post-LN supernets are supported (all released ones are)")
        if int(model_cfg.get("pos_conv_depth", 1)) != 1:
            raise CheckpointError("cfg.model.pos_conv_depth > 1 is not supported (released supernets use 1)")
        mapping = {
            "encoder_embed_dim": "embed_dim",
            "encoder_ffn_embed_dim": "ffn_embed_dim",
            "encoder_attention_heads": "attention_heads",
            "encoder_layers": "layers",
            "extractor_mode": "extractor_mode",
            "conv_pos": "conv_pos",
            "conv_pos_groups": "conv_pos_groups",
        }
        for source, target in mapping.items():
            if source in model_cfg:
                changes[target] = model_cfg[source]
        if "conv_feature_layers" in model_cfg:
            changes["conv_feature_layers"] = _parse_conv_layers(str(model_cfg["conv_feature_layers"]))
        supernet_type = model_cfg.get("supernet_type")
        yaml_path = str(model_cfg.get("pruner_supernet") or "").lower()
        if supernet_type is None and yaml_path:
            supernet_type = "small" if "small" in yaml_path else ("base" if "base" in yaml_path else None)
        if supernet_type is not None:
            changes["supernet_type"] = str(supernet_type).lower()
        task_cfg = _as_mapping(cfg.get("task")) or {}
        if "normalize" in task_cfg:
            changes["normalize"] = bool(task_cfg["normalize"])
    else:
        state_dict = remap_checkpoint(container.get("state_dict", {}))
        if "encoder_norm.weight" in state_dict and "blocks.0.fc1.weight" in state_dict:
            changes["embed_dim"] = int(state_dict["encoder_norm.weight"].shape[0])
            changes["attention_heads"] = changes["embed_dim"] // HEAD_DIM
            changes["ffn_embed_dim"] = int(state_dict["blocks.0.fc1.weight"].shape[0])
        has_block1_norm = "feature_extractor.blocks.1.norm.weight" in state_dict
        changes["extractor_mode"] = "layer_norm" if has_block1_norm else "default"
    try:
        return replace(config, **changes)
    except UsageError as error:
        raise CheckpointError(f"the checkpoint's architecture is not a supported LightHuBERT supernet: {error}") from None


# ----------------------------------------------------------------------------------------------
# Export recipe
# ----------------------------------------------------------------------------------------------

DEFAULT_CONTEXT_FRAMES = 64  # = half the positional conv kernel: the conv is exact for kept frames
DEFAULT_CENTRE_FRAMES = 100


def window_samples_for_frames(frames: int, conv_layers: Sequence[tuple[int, int, int]] = HUBERT_CONV_LAYERS) -> int:
    """Samples needed for exactly ``frames`` CNN frames: hop (frames - 1) + receptive field."""
    field_samples, hop = cnn_receptive_field(conv_layers)
    return hop * (frames - 1) + field_samples


def parse_layers(layers: "str | Sequence[int]", layer_num: int) -> list[int]:
    """``"last"`` -> [L]; ``"all"`` -> [0..L]; ``"i,j"`` (``last`` allowed among them) or a
    list -> those hidden states (0 = projected CNN features, i = output of kept layer i)."""
    if isinstance(layers, str):
        text = layers.strip().lower()
        if text == "last":
            return [layer_num]
        if text == "all":
            return list(range(layer_num + 1))
        try:
            parts = [part.strip() for part in text.split(",") if part.strip()]
            chosen = [layer_num if part == "last" else int(part) for part in parts]
        except ValueError:
            raise UsageError(f"layers must be 'last', 'all' or comma-separated indices, not {layers!r}") from None
    else:
        chosen = [int(i) for i in layers]
    if not chosen:
        raise UsageError("layers names no hidden state")
    bad = [i for i in chosen if not 0 <= i <= layer_num]
    if bad:
        raise UsageError(f"layers {bad} out of range: this subnet has hidden states 0..{layer_num}")
    if len(set(chosen)) != len(chosen):
        raise UsageError(f"layers lists an index twice: {layers!r}")
    return chosen


class HiddenStatesExport(nn.Module):
    """Export-ready wrapper: waveform [B, samples] -> the chosen hidden states, in order."""

    def __init__(self, model: LightHuBERTSubnet, layers: Sequence[int]):
        super().__init__()
        self.model = model
        self.layers = list(layers)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden_states = self.model(waveform)
        return tuple(hidden_states[i] for i in self.layers)


# ----------------------------------------------------------------------------------------------
# Task figure of a reduced-precision artifact: a linear probe on real speech
# ----------------------------------------------------------------------------------------------
# Hidden states are features for a downstream task, so besides their SQNR an artifact is judged
# by whether a linear classifier on them decides as it does on float32. Without labelled data the
# probe predicts acoustic units, as HuBERT's own training targets are: k-means clusters of the
# float32 model's frames of the fitting clips, one probe per exported hidden state, fitted by
# ridge least squares on one-hot units. Clips: a folder of 16 kHz WAVs (the ``probe_data``
# option); every fourth (sorted by name) is held out and becomes a validation case.
PROBE_UNITS = 8
PROBE_HELD_OUT_EVERY = 4
PROBE_RIDGE = 1e-2
# Floor of the share of frames on which the artifact's probe agrees with float32's. Measured
# (tiny supernet, random weights, 12 KWS clips; small subnet, espeak-ng words): see
# benchmarks/results/precision.notes.md.
PROBE_MIN_AGREEMENT = 0.9


def read_speech_clips(folder: str | Path, samples: int, sample_rate_hz: int, normalize: bool
                      ) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """The WAVs of ``folder`` as model inputs [clips, samples]: (fit names, held-out names, fit, held out).

    Each clip is prepared as ``speech_windows`` prepares it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"probe_data {folder} is not a folder (give a folder of 16 kHz WAV files of speech)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".wav")
    if len(files) < PROBE_HELD_OUT_EVERY:
        raise UsageError(f"probe_data {folder} holds {len(files)} WAV file(s); at least {PROBE_HELD_OUT_EVERY} "
                         "are needed (every fourth is held out to validate)")
    clips = speech_windows(files, samples, sample_rate_hz, normalize)
    held_out = [i for i in range(len(files)) if i % PROBE_HELD_OUT_EVERY == PROBE_HELD_OUT_EVERY - 1]
    fit = [i for i in range(len(files)) if i not in held_out]
    return [files[i].name for i in fit], [files[i].name for i in held_out], clips[fit], clips[held_out]


def speech_windows(files: Sequence[Path], samples: int, sample_rate_hz: int, normalize: bool) -> np.ndarray:
    """WAV files as model inputs [clips, samples] (each as ``runtime.chunking.speech_window`` reads it)."""
    from edgesdk.runtime.chunking import speech_window

    return np.stack([speech_window(path, samples, sample_rate_hz, normalize, LAYER_NORM_EPS) for path in files])


# Synthesized sentences shipped with the package (data/speech/clips.json says how each was made):
# without them an export would validate on its seeded noise waveform only, where LiteRT's int8
# convolutions measured 31-33 dB while the same file gave -0.8-2.5 dB on speech.
SHIPPED_SPEECH = Path(__file__).resolve().parent / "data" / "speech"


def shipped_speech_files() -> list[Path]:
    files = sorted(SHIPPED_SPEECH.glob("*.wav"))
    if not files:
        raise ConversionError(f"the speech clips shipped with edgesdk are missing from {SHIPPED_SPEECH}; reinstall edgesdk")
    return files


def kmeans_units(frames: np.ndarray, units: int, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """k-means (k-means++ start, Lloyd iterations) of frames [n, e]; returns each frame's unit [n]."""
    rng = np.random.default_rng(seed)
    x = frames.astype(np.float64)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, units):
        distance = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(x[rng.choice(len(x), p=distance / distance.sum())] if distance.sum() > 0 else x[rng.integers(len(x))])
    centres = np.asarray(centres)
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iterations):
        labels = ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        moved = np.asarray([x[labels == k].mean(0) if np.any(labels == k) else centres[k] for k in range(units)])
        if np.allclose(moved, centres):
            break
        centres = moved
    return labels


def fit_linear_probe(frames: np.ndarray, labels: np.ndarray, classes: int, ridge: float = PROBE_RIDGE
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Ridge least squares of one-hot ``labels`` on standardised ``frames`` [n, e], folded back
    into (weights [e, classes], bias [classes]) on the raw frames."""
    x = frames.astype(np.float64)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    targets = np.eye(classes)[labels]
    coefficients = np.linalg.solve(z.T @ z + ridge * len(z) * np.eye(z.shape[1]), z.T @ (targets - targets.mean(0)))
    weights = coefficients / scale[:, None]
    bias = targets.mean(0) - mean @ weights
    return weights, bias


def fit_probes(module: nn.Module, output_names: Sequence[str], clips: np.ndarray, about: str,
               units: int = PROBE_UNITS) -> dict[str, Any]:
    """One ``ProbeAgreement`` per hidden-state output, fitted on the float32 ``module``'s frames of ``clips``."""
    from edgesdk.runtime.compare import ProbeAgreement

    with torch.no_grad():
        per_clip = [module(torch.from_numpy(clip[None])) for clip in clips]
    checks = {}
    for index, name in enumerate(output_names):
        frames = np.concatenate([outputs[index][0].numpy() for outputs in per_clip])
        labels = kmeans_units(frames, units)
        weights, bias = fit_linear_probe(frames, labels, units)
        fit_share = float(np.mean((frames @ weights + bias).argmax(1) == labels))
        checks[name] = ProbeAgreement(
            weights.astype(np.float32).tolist(), bias.astype(np.float32).tolist(), PROBE_MIN_AGREEMENT,
            f"linear probe of {units} k-means acoustic units of float32 {name}, fitted on {len(frames)} frames of "
            f"{about} (it matches the units on {fit_share:.1%} of them)")
    return checks


# Reduced precision keeps every convolution float (the waveform CNN and the positional conv),
# found from the model as its Conv1d layers. Measured on the tiny supernet (random weights, 1 s
# windows of the KWS clips), TFLite int8-dynamic: with the CNN quantized, hidden states of speech
# clips fell to -0.8-2.5 dB SQNR (random noise and silence: 31-33 dB), with only block 0 float
# 16-27 dB, with every convolution float 44 dB. LiteRT quantizes a convolution's input per call
# over the whole tensor; block 0's GroupNorm (each channel over time) then scales the rounding
# error of weak channels up to unit variance. ONNX keeps convolutions float anyway.
CONV_REASON = ("a convolution of the waveform CNN or the positional conv: with them int8 (LiteRT dynamic range), "
               "hidden states of speech fell to about 0 dB SQNR (44 dB with them float)")


def convolution_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every Conv1d weight of ``module``, by name: what reduced precision keeps float."""
    return {f"{name}.weight": layer.weight.detach() for name, layer in module.named_modules()
            if isinstance(layer, nn.Conv1d)}


def _layers_option(value: Any) -> "str | tuple[int, ...]":
    """The form of ``layers`` (the range is checked against the subnet by ``parse_layers``)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("last", "all") or all(part.strip() == "last" or part.strip().isdigit() for part in text.split(",")):
            return text
        raise ValueError(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        return tuple(value)
    raise TypeError(value)


def _subnet_option(value: Any) -> "str | Mapping[str, Any] | SubnetConfig":
    if isinstance(value, SubnetConfig) or isinstance(value, Mapping) or (isinstance(value, str) and value.strip()):
        return value  # resolved against the supernet's search space by resolve_subnet
    raise TypeError(value)


@dataclass(frozen=True)
class LightHuBERTExportOptions(ExportOptions):
    """Options of the lighthubert recipe (``--option NAME=VALUE``, or keywords of ``edgesdk.export``)."""

    family: ClassVar[str] = "lighthubert"

    subnet: "str | Mapping[str, Any] | SubnetConfig | None" = option(
        None, f"subnet to extract: a name ({', '.join(NAMED_SUBNETS)}), a JSON config, or a .json file (e.g. edgesdk search's subnet.json)",
        OptionType("name or JSON", _subnet_option), default_text="the supernet's default")
    layers: "str | tuple[int, ...]" = option(
        "last", "hidden states to output: last, all, or indices i,j (0 = projected CNN features)",
        OptionType("last, all or i,j", _layers_option))
    window_seconds: float | None = option(
        None, "example waveform length; fixes the TFLite input (ONNX keeps the samples dynamic)",
        number(minimum=0.0, exclusive=True), default_text="the chunk window, 4.565 s")
    context_frames: int = option(DEFAULT_CONTEXT_FRAMES, "chunking context recorded in the manifest, frames per side",
                                 integer(minimum=0))
    fixed_shape: bool = option(
        False, "ONNX input fixed at batch 1 and window_seconds, as TFLite's: onnxruntime fuses more on fixed shapes "
        "(what edgesdk search measures)", BOOLEAN)
    probe_data: str | None = option(
        None, "folder of 16 kHz WAV files of speech: a linear probe fitted on the float32 hidden states of most of "
        "them judges every artifact on the others (every fourth), which become validation cases", TEXT,
        default_text="none")


def recipe(model: nn.Module, mode: str, options: LightHuBERTExportOptions) -> ExportSpec:
    """Export spec for a subnet of a LightHuBERT supernet (or an already extracted subnet).

    Options: ``LightHuBERTExportOptions``. Input ``waveform`` [B, samples] float32 at 16 kHz;
    outputs ``hidden_state_<i>`` [B, frames, e].
    """
    if mode != "full":
        raise UsageError(
            f"lighthubert exports mode 'full' only, not {mode!r}: attention is global, so long audio "
            "runs as overlapping windows (edgesdk.runtime.chunking), not as a recurrent step"
        )
    if isinstance(model, LightHuBERTSupernet):
        standalone = extract_subnet(model, options.subnet)
    elif isinstance(model, LightHuBERTSubnet):
        standalone = model
        if options.subnet is not None and resolve_subnet(model.supernet_config, options.subnet) != model.subnet:
            raise UsageError("the model is an extracted subnet already; its subnet cannot be changed by the subnet option")
    else:
        raise UsageError(f"lighthubert recipe needs a LightHuBERT model, not {type(model).__name__}")
    config, subnet = standalone.supernet_config, standalone.subnet
    layers = parse_layers(options.layers, subnet.layer_num)
    context = options.context_frames
    field_samples, hop = cnn_receptive_field(config.conv_feature_layers)
    recommended_frames = DEFAULT_CENTRE_FRAMES + 2 * context
    window_seconds = options.window_seconds
    if window_seconds is None:
        samples = window_samples_for_frames(recommended_frames, config.conv_feature_layers)
    else:
        samples = int(round(window_seconds * config.sample_rate_hz))
        if samples < field_samples:
            raise UsageError(
                f"window_seconds={window_seconds} is shorter than one frame's receptive field "
                f"({field_samples} samples = {field_samples / config.sample_rate_hz * 1000:.0f} ms)"
            )
    frames = frames_for_samples(samples, config.conv_feature_layers)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(1, samples, generator=generator)
    output_names = [f"hidden_state_{i}" for i in layers]
    dynamic_axes: dict[str, dict[int, str]] = {}
    if not options.fixed_shape:  # a fixed graph lets onnxruntime fuse MatMul+Add and GELU (faster, not resizable)
        dynamic_axes = {"waveform": {0: "batch", 1: "samples"}}
        dynamic_axes.update({name: {0: "batch", 1: "frames"} for name in output_names})
    macs = count_macs(config, subnet, samples)
    from edgesdk.runtime.sections import OpsCount, WaveformFrontend

    metadata = {
        # what the artifact holds: the standalone subnet, not the supernet it was cut from
        "model": {
            "parameters": sum(p.numel() for p in standalone.parameters()),
            "supernet_parameters": sum(p.numel() for p in model.parameters()) if model is not standalone else None,
        },
        "frontend": WaveformFrontend(
            sample_rate_hz=config.sample_rate_hz,
            channels=1,
            normalization="utterance_zero_mean_unit_variance" if config.normalize else "none",
            normalization_eps=LAYER_NORM_EPS,
        ).to_manifest(),
        "ops": OpsCount(
            per="inference",
            macs=macs,
            accumulates=0,
            binary_ops=0,
            counted=(
                f"multiply-accumulates of one {samples}-sample window ({frames} frames): CNN convolutions, "
                "linear layers, positional conv and the two attention matmuls; norms, GELU and softmax not counted"
            ),
            other={"macs_per_second_of_audio": count_macs(config, subnet, config.sample_rate_hz)},
        ).to_manifest(),
        "extra": {
            "lighthubert": {
                "supernet_type": config.supernet_type,
                "supernet_embed_dim": config.embed_dim,
                "subnet": subnet.to_dict(),
                "layers": layers,
                "hidden_state_0": "projected CNN features, before the positional conv",
                "frame_rate_hz": config.sample_rate_hz / hop,
                "receptive_field": {
                    "cnn_samples": field_samples,
                    "hop_samples": hop,
                    "pos_conv_left_frames": config.conv_pos // 2,
                    "pos_conv_right_frames": config.conv_pos // 2 - (1 if config.conv_pos % 2 == 0 else 0),
                    "attention": "global (every frame sees the whole window)",
                },
                "recommended_chunking": {
                    "context_frames": context,
                    "centre_frames": DEFAULT_CENTRE_FRAMES,
                    "window_frames": recommended_frames,
                    "window_samples": window_samples_for_frames(recommended_frames, config.conv_feature_layers),
                },
                "extractor_mode": config.extractor_mode,
                "example_window_samples": samples,
                "fixed_shape": bool(options.fixed_shape),
            }
        },
    }
    module = HiddenStatesExport(standalone, layers).eval()
    convolutions = convolution_weights(module)
    checks, held_out = {}, []
    speech = shipped_speech_files()
    held_out = [{"waveform": clip[None]} for clip in speech_windows(speech, samples, config.sample_rate_hz,
                                                                     config.normalize)]
    metadata["extra"]["lighthubert"]["validation_speech"] = {
        "files": [path.name for path in speech],
        "source": "espeak-ng sentences shipped with edgesdk (edgesdk/models/data/speech/clips.json)"}
    if options.probe_data is not None:
        fit_names, held_names, fit, held = read_speech_clips(options.probe_data, samples, config.sample_rate_hz,
                                                             config.normalize)
        checks = fit_probes(module, output_names, fit, f"{len(fit_names)} clips of {options.probe_data}")
        held_out += [{"waveform": clip[None]} for clip in held]
        metadata["extra"]["lighthubert"]["probe"] = {"fit_files": fit_names, "held_out_files": held_names,
                                                     "units": PROBE_UNITS, "min_agreement": PROBE_MIN_AGREEMENT}
    return ExportSpec(
        module=module,
        example_inputs={"waveform": example},
        output_names=output_names,
        mode="full",
        dynamic_axes=dynamic_axes,
        # 12 post-LN layers of unit-scale activations: fp32 reordering in the converters
        # gives ~1e-5; the bound leaves room for LiteRT's kernels.
        atol=1e-3,
        rtol=1e-3,
        output_checks=checks,
        sample_inputs=held_out,
        keep_float=convolutions,
        keep_float_reasons={name: CONV_REASON for name in convolutions},
        metadata=metadata,
    )


# ----------------------------------------------------------------------------------------------
# Presets and family
# ----------------------------------------------------------------------------------------------

TINY_CONV_LAYERS = ((64, 10, 5),) + ((64, 3, 2),) * 4 + ((64, 2, 2),) * 2

PRESETS: dict[str, Preset] = {
    "base-supernet": Preset(
        "base-supernet",
        LightHuBERTConfig(),
        "LightHuBERT Base supernet (stored 768/12 heads/3072, subnets 41M-94M; default subnet 'base' 640 wide)",
    ),
    "small-supernet": Preset(
        "small-supernet",
        LightHuBERTConfig(supernet_type="small"),
        "LightHuBERT Small supernet (stored 768 wide, subnets 11M-44M; default subnet 'small' 384 wide)",
    ),
    "tiny-supernet": Preset(
        "tiny-supernet",
        LightHuBERTConfig(
            supernet_type="tiny", embed_dim=128, ffn_embed_dim=512, attention_heads=2, conv_feature_layers=TINY_CONV_LAYERS
        ),
        "edgesdk test supernet: 64-channel CNN, stored 128 wide, same slicing rules",
        small=True,
    ),
}


def build(config: LightHuBERTConfig) -> LightHuBERTSupernet:
    return LightHuBERTSupernet(config)


FAMILY = Family(
    name="lighthubert",
    build=build,
    presets=PRESETS,
    remap_checkpoint=remap_checkpoint,
    recipe=recipe,
    export_options=LightHuBERTExportOptions,
    config_from_checkpoint=config_from_checkpoint,
    modes=("full",),
    description="once-for-all HuBERT supernet: extract a subnet, export it, run long audio in chunks",
    list_subnets=list_subnets,
    sample_subnets=sample_subnets,
)
