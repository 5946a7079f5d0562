"""LMUFormer and spiking LMUFormer: Legendre-memory token mixers for streaming keyword spotting.

Paper: Z. Liu, G. Datta, A. Li, P. A. Beerel, "LMUFormer: Low Complexity Yet Powerful Spiking Model
With Legendre Memory Units", ICLR 2024, arXiv:2402.04882.
Upstream: github.com/zeyuliu1037/LMUFormer, checked at commit 5debaddf65a0d39cd09aa17a2e4c34b364e9040e
(``src/lmu_rnn.py``, ``src/blocks/{conv1d_embedding,lmu,lmu_cell,mlp}.py``). Spiking neurons follow
spikingjelly 0.0.0.0.12 ``MultiStepLIFNode`` (tau 2, hard reset to 0, decay_input, fire on ``>=``),
re-implemented here without spikingjelly.

Three upstream models are built, each as a ``variant`` of one config:

* ``"lmu"`` = ``lmu_rnn_conv1d`` (LMUFormer, 1,621,796 parameters at SCv2 size);
* ``"spiking-ms"`` = ``slmu_rnn_ms_conv1d`` (spiking LMUFormer, 1,689,894 parameters);
* ``"spiking-conv"`` = ``slmu_rnn_conv1d`` (all-spiking patch embedding and token mixer).

Layout: features are ``[B, T, mel]`` (frames, then mel bins) as the authors' loader gives them;
inside, tensors are ``[B, C, T]`` (channels, then frames).

Two forms compute the same function:

* the parallel form (``forward``, ``forward_prefix``) over a whole clip of any length; the LMU
  memory is the causal convolution of ``u`` with the impulse response ``H[:, k] = A^k B`` done by
  FFT, exactly as upstream does at its fixed 128 frames;
* the recurrent step form (``init_state`` / ``forward_step``): one frame in, explicit state in and
  out. The k = 3 convolutions of the patch embedding are non-causal, so the step form keeps a ring
  buffer of the last two inputs per convolution and answers for the frame ``LOOKAHEAD_FRAMES`` (5)
  frames back; a frame counter gates every state update during warm-up so that the zero buffers
  act exactly as the parallel form's left padding.
"""
from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesdk.errors import CheckpointError, UsageError
from edgesdk.models.checkpoints import strip_prefix
from edgesdk.models.layers import init_linear_
from edgesdk.models.options import ExportOptions, integer, option, python_only
from edgesdk.models.registry import Family, Preset
from edgesdk.spec import ExportSpec, StateSpec

VARIANTS = ("lmu", "spiking-ms", "spiking-conv")

# Five k = 3 convolutions lie on the longest path of the patch embedding (4 convs + the RPE conv),
# each needing one future frame: the step form answers for frame t - 5 when frame t arrives.
LOOKAHEAD_FRAMES = 5
HOP_SAMPLES = 160
FRAME_RATE_HZ = 100.0

# Speech Commands V2 labels in the authors' index order
# (data/speech_commands/data/speechcommands_class_labels_indices.csv upstream).
SPEECH_COMMANDS_LABELS = (
    "backward", "follow", "five", "bed", "zero", "on", "learn", "two", "house", "tree",
    "dog", "stop", "seven", "eight", "down", "six", "forward", "cat", "right", "visual",
    "four", "wow", "no", "nine", "off", "three", "left", "marvin", "yes", "up",
    "sheila", "happy", "bird", "go", "one",
)


# ----------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class LMUFormerConfig:
    """Architecture of one LMUFormer.

    Attributes:
        variant: "lmu" (non-spiking), "spiking-ms" (spiking, membrane shortcut) or
            "spiking-conv" (spiking patch embedding and token mixer, spike outputs).
        mel_bins: input feature channels (mel bins per frame).
        embed_dim: channel width C of the patch embedding and blocks.
        depth: number of blocks.
        mlp_ratio: hidden width of the channel mixer, as a multiple of ``embed_dim``.
        memory_size: LMU memory order d; None means ``embed_dim`` ("lmu") or ``2 * embed_dim``
            (spiking variants), as upstream.
        theta_frames: LMU window theta, in frames.
        train_frames: upstream's fixed ``seq_len`` L; the stored impulse response ``H`` has this
            many columns (the parallel form extends it for longer inputs).
        num_classes: classifier outputs.
        labels: class names in index order (empty: unnamed).
    """

    variant: str = "lmu"
    mel_bins: int = 128
    embed_dim: int = 256
    depth: int = 1
    mlp_ratio: float = 4.0
    memory_size: int | None = None
    theta_frames: float = 128.0
    train_frames: int = 128
    num_classes: int = 35
    labels: tuple[str, ...] = SPEECH_COMMANDS_LABELS

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise UsageError(f"variant must be one of {', '.join(VARIANTS)}, not {self.variant!r}")
        for name in ("mel_bins", "embed_dim", "depth", "train_frames", "num_classes"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.memory_size is not None and self.memory_size < 1:
            raise UsageError(f"memory_size must be at least 1, not {self.memory_size}")
        if self.theta_frames <= 0 or self.mlp_ratio <= 0:
            raise UsageError("theta_frames and mlp_ratio must be positive")
        if self.labels and len(self.labels) != self.num_classes:
            raise UsageError(f"{len(self.labels)} labels given for {self.num_classes} classes")

    @property
    def spiking(self) -> bool:
        return self.variant != "lmu"

    @property
    def memory_order(self) -> int:
        if self.memory_size is not None:
            return self.memory_size
        return self.embed_dim * (2 if self.spiking else 1)

    @property
    def hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)


# ----------------------------------------------------------------------------------------------
# Building blocks, smallest first


StateTree = Mapping[str, Any]  # name -> tensor, or name -> the StateTree of a part


@dataclass(frozen=True)
class StateLayout:
    """The step-form state of one module, in export order: its own tensors and its parts'.

    ``entries`` pairs a name with either a shape (a tensor of this module, without the batch
    axis) or another StateLayout (a sub-module's state). The exported graph and the manifest
    carry flat names that join the path with ``_`` (``block0_attn_lmu_memory``); ``nest`` and
    ``flatten`` convert between that flat dict and the nested dicts the ``step`` methods read,
    so no step addresses its state by slicing names.
    """

    entries: tuple[tuple[str, "tuple[int, ...] | StateLayout"], ...] = ()

    @classmethod
    def of(cls, **entries: "tuple[int, ...] | StateLayout") -> "StateLayout":
        """``StateLayout.of(memory=(256,), lmu=cell.state_layout())``, in the order given."""
        return cls(tuple(entries.items()))

    def shapes(self, prefix: str = "") -> dict[str, tuple[int, ...]]:
        """Flat name -> shape, in export order."""
        flat: dict[str, tuple[int, ...]] = {}
        for name, entry in self.entries:
            if isinstance(entry, StateLayout):
                flat.update(entry.shapes(f"{prefix}{name}_"))
            else:
                flat[prefix + name] = tuple(entry)
        return flat

    def nest(self, flat: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any]:
        """The flat state -> a StateTree shaped like this layout."""
        tree: dict[str, Any] = {}
        for name, entry in self.entries:
            if isinstance(entry, StateLayout):
                tree[name] = entry.nest(flat, f"{prefix}{name}_")
            elif prefix + name not in flat:
                raise UsageError(f"the lmuformer step state has no {prefix + name!r}; it needs {', '.join(self.shapes())}")
            else:
                tree[name] = flat[prefix + name]
        return tree

    def flatten(self, tree: StateTree, prefix: str = "") -> dict[str, torch.Tensor]:
        """A StateTree shaped like this layout -> the flat state, in export order."""
        flat: dict[str, torch.Tensor] = {}
        for name, entry in self.entries:
            if isinstance(entry, StateLayout):
                flat.update(entry.flatten(tree[name], f"{prefix}{name}_"))
            else:
                flat[prefix + name] = tree[name]
        return flat


def _gate(valid: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Keep ``old`` where the stage has not yet seen a valid input (warm-up of the step form)."""
    while valid.dim() < new.dim():
        valid = valid.unsqueeze(-1)
    return torch.where(valid, new, old)


def _pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A kernel-size-1 Conv1d applied to one frame [B, C_in] -> [B, C_out]."""
    return F.linear(x, conv.weight[..., 0], conv.bias)


class LIF(nn.Module):
    """Multi-step leaky integrate-and-fire neuron (spikingjelly ``MultiStepLIFNode`` semantics).

    Per step: charge ``h = v + (x - v) / tau`` (decay_input, v_reset = 0), fire
    ``s = [h >= threshold]``, hard reset ``v = h * (1 - s)``. The membrane starts at 0 for every
    clip. Upstream runs it along the frame axis, so each feature frame is one neuron time step.
    No parameters; the surrogate gradient only matters for training and is not modelled.

    ``delay_frames`` says how many frames behind the newest input this neuron runs in the step
    form (used to line up spikes of the two forms when counting flips).
    """

    def __init__(self, threshold: float = 1.0, tau: float = 2.0, delay_frames: int = 0):
        super().__init__()
        self.threshold = threshold
        self.tau = tau
        self.delay_frames = delay_frames
        self.recorded: list[torch.Tensor] | None = None

    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: input current and membrane [B, C] -> spikes and new membrane."""
        h = v + (x - v) / self.tau
        fired = h >= self.threshold
        spikes = fired.to(x.dtype)
        if self.recorded is not None:
            self.recorded.append(spikes.detach())
        # Hard reset to 0; where() is exactly h * (1 - s) and one op fewer in exported graphs.
        return spikes, torch.where(fired, 0.0, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All frames at once: [B, C, T] currents -> [B, C, T] spikes, membrane from 0."""
        record, self.recorded = self.recorded, None
        v = torch.zeros_like(x[..., 0])
        spikes = []
        for n in range(x.shape[-1]):
            s, v = self.step(x[..., n], v)
            spikes.append(s)
        out = torch.stack(spikes, dim=-1)
        self.recorded = record
        if record is not None:
            record.append(out.detach())
        return out

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, tau={self.tau}"


def legendre_state_space(order: int, theta_frames: float) -> tuple[np.ndarray, np.ndarray]:
    """Discrete Legendre delay system (Voelker 2019) with zero-order hold at 1 frame.

    Continuous: ``A[i, j] = r_i * (-1 if i < j else (-1)^(i-j+1))``, ``B[i] = r_i (-1)^i`` with
    ``r_i = (2i + 1) / theta``. ZOH: the top blocks of ``expm([[A, B], [0, 0]])`` give
    ``Abar = exp(A)`` and ``Bbar = A^-1 (exp(A) - I) B`` (what ``scipy.signal.cont2discrete``
    computes upstream), in float64, returned as float32 ``[d, d]`` and ``[d, 1]``.
    """
    q = np.arange(order, dtype=np.float64)
    r = (2.0 * q + 1.0) / theta_frames
    i, j = np.meshgrid(q, q, indexing="ij")
    a = r[:, None] * np.where(i < j, -1.0, (-1.0) ** (i - j + 1.0))
    b = r * (-1.0) ** q
    block = np.zeros((order + 1, order + 1), dtype=np.float64)
    block[:order, :order] = a
    block[:order, order] = b
    exp_block = torch.linalg.matrix_exp(torch.from_numpy(block)).numpy()
    return exp_block[:order, :order].astype(np.float32), exp_block[:order, order:].astype(np.float32)


def impulse_response(a: torch.Tensor, b: torch.Tensor, frames: int, start: torch.Tensor | None = None) -> torch.Tensor:
    """``H[:, k] = A^k B`` for k < frames, float32 [d, frames] (powers taken in float64).

    With ``start`` (a column ``A^n B``) it continues from there: ``A start, A^2 start, ...``.
    """
    a64 = a.double()
    column = b.double()[:, 0] if start is None else a64 @ start.double()
    columns = []
    for _ in range(frames):
        columns.append(column)
        column = a64 @ column
    return torch.stack(columns, dim=-1).float()


class LMUCell(nn.Module):
    """Parallelisable LMU cell (no h->h feedback): ``m_t = A m_{t-1} + B u_t``, ``h = f([m; x])``.

    Non-spiking: ``u = ReLU(W_u x)``, ``h = ReLU(W_h [m; x])``. Spiking: ``u = LIF(BN(W_u x))``,
    the memory stays real-valued, ``m_s = LIF(BN(m))``, ``h = LIF(BN(W_h [m_s; x]))``.
    Buffers ``A`` [d, d], ``B`` [d, 1] and ``H`` [d, train_frames] carry upstream's names, so a
    checkpoint's own matrices are the ones used.
    """

    def __init__(self, input_size: int, hidden_size: int, memory_size: int, theta_frames: float,
                 train_frames: int, spiking: bool, delay_frames: int = LOOKAHEAD_FRAMES):
        super().__init__()
        self.memory_size = memory_size
        self.spiking = spiking
        self.W_u = nn.Linear(input_size, 1)
        self.W_h = nn.Linear(memory_size + input_size, hidden_size)
        a, b = legendre_state_space(memory_size, theta_frames)
        self.register_buffer("A", torch.from_numpy(a))
        self.register_buffer("B", torch.from_numpy(b))
        self.register_buffer("H", impulse_response(self.A, self.B, train_frames))
        if spiking:
            self.bn_u = nn.BatchNorm1d(1)
            self.lif_u = LIF(delay_frames=delay_frames)
            self.bn_m = nn.BatchNorm1d(memory_size)
            self.lif_m = LIF(delay_frames=delay_frames)
            self.bn_h = nn.BatchNorm1d(hidden_size)
            self.lif_h = LIF(delay_frames=delay_frames)

    def impulse(self, frames: int) -> torch.Tensor:
        """The first ``frames`` columns of the impulse response, extending the stored ``H``."""
        stored = self.H.shape[-1]
        if frames <= stored:
            return self.H[:, :frames]
        extra = impulse_response(self.A, self.B, frames - stored, start=self.H[:, -1])
        return torch.cat([self.H, extra], dim=-1)

    def memory(self, u: torch.Tensor, export_kernel: torch.Tensor | None = None) -> torch.Tensor:
        """Causal convolution of ``u`` [B, 1, T] with the impulse response -> m [B, d, T].

        Default: zero-padded FFT of length 2T, upstream's training form, for any T. Export: a
        plain conv1d with the given flipped kernel [d, 1, K] (ONNX and TFLite have no complex
        tensors); ``K`` covers every frame whose weight is not negligible.
        """
        frames = u.shape[-1]
        if export_kernel is not None:
            return F.conv1d(F.pad(u, (export_kernel.shape[-1] - 1, 0)), export_kernel)
        fft_h = torch.fft.rfft(self.impulse(frames), n=2 * frames, dim=-1)
        fft_u = torch.fft.rfft(u, n=2 * frames, dim=-1)
        return torch.fft.irfft(fft_u * fft_h.unsqueeze(0), n=2 * frames, dim=-1)[..., :frames]

    def forward(self, x: torch.Tensor, export_kernel: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, T] -> h [B, H, T]."""
        u = F.conv1d(x, self.W_u.weight[..., None], self.W_u.bias)  # [B, 1, T]
        u = self.lif_u(self.bn_u(u)) if self.spiking else F.relu(u)
        m = self.memory(u, export_kernel)
        if self.spiking:
            m = self.lif_m(self.bn_m(m))
        h = F.conv1d(torch.cat([m, x], dim=1), self.W_h.weight[..., None], self.W_h.bias)
        return self.lif_h(self.bn_h(h)) if self.spiking else F.relu(h)

    def state_layout(self) -> StateLayout:
        if self.spiking:
            return StateLayout.of(memory=(self.memory_size,), v_u=(1,), v_m=(self.memory_size,),
                                  v_h=(self.W_h.out_features,))
        return StateLayout.of(memory=(self.memory_size,))

    def step(self, x: torch.Tensor, state: Mapping[str, torch.Tensor], valid: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """One frame: x [B, C] -> h [B, H], new state."""
        new = {}
        u = self.W_u(x)
        if self.spiking:
            u, v_u = self.lif_u.step(self.bn_u(u), state["v_u"])
            new["v_u"] = _gate(valid, v_u, state["v_u"])
        else:
            u = F.relu(u)
        # Row-vector form of m_t = A m_{t-1} + B u_t.
        m = state["memory"] @ self.A.T + u @ self.B.T
        new["memory"] = _gate(valid, m, state["memory"])
        if self.spiking:
            m, v_m = self.lif_m.step(self.bn_m(m), state["v_m"])
            new["v_m"] = _gate(valid, v_m, state["v_m"])
        h = self.W_h(torch.cat([m, x], dim=-1))
        if self.spiking:
            h, v_h = self.lif_h.step(self.bn_h(h), state["v_h"])
            new["v_h"] = _gate(valid, v_h, state["v_h"])
            return h, new
        return F.relu(h), new


class ConvEmbed(nn.Module):
    """Patch embedding: 4 k = 3 convolutions over frames, then ``x + RPE(x)``.

    ``variant`` picks upstream's three embeddings:

    * "lmu" (``Tokenizer``): conv -> ReLU -> BN, four times; ``y + rpe_conv(y)``.
    * "spiking-ms" (``Conv1d4EBMs``): conv -> BN -> LIF three times, then conv3 (real-valued
      output c3); ``c3 + rpe_conv(LIF(BN3(c3)))``.
    * "spiking-conv" (``Conv1d4EB``): conv -> BN -> LIF four times (spikes s3);
      ``s3 + LIF(rpe_norm(rpe_conv(s3)))``.
    """

    def __init__(self, variant: str, mel_bins: int, embed_dim: int):
        super().__init__()
        self.variant = variant
        widths = [mel_bins] + [embed_dim] * 4
        self.convs = nn.ModuleList(
            nn.Conv1d(widths[i], widths[i + 1], kernel_size=3, padding=1, bias=False) for i in range(4))
        self.norms = nn.ModuleList(nn.BatchNorm1d(embed_dim) for _ in range(4))
        self.rpe_conv = nn.Conv1d(embed_dim, embed_dim, kernel_size=3, padding=1, bias=False)
        if variant != "lmu":
            # LIF i follows conv i, whose output in the step form lags the input by i + 1 frames.
            self.lifs = nn.ModuleList(LIF(delay_frames=i + 1) for i in range(4))
        if variant == "spiking-conv":
            self.rpe_norm = nn.BatchNorm1d(embed_dim)
            self.rpe_lif = LIF(delay_frames=LOOKAHEAD_FRAMES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, mel, T] -> [B, C, T]."""
        if self.variant == "lmu":
            for conv, norm in zip(self.convs, self.norms):
                x = norm(F.relu(conv(x)))
            return x + self.rpe_conv(x)
        for i in range(3):
            x = self.lifs[i](self.norms[i](self.convs[i](x)))
        c3 = self.convs[3](x)
        if self.variant == "spiking-ms":
            return c3 + self.rpe_conv(self.lifs[3](self.norms[3](c3)))
        s3 = self.lifs[3](self.norms[3](c3))
        return s3 + self.rpe_lif(self.rpe_norm(self.rpe_conv(s3)))

    def state_layout(self) -> StateLayout:
        shapes: dict[str, tuple[int, ...]] = {}
        for i, conv in enumerate(self.convs):
            shapes[f"buffer{i}"] = (conv.in_channels, 2)
        shapes["buffer_rpe"] = (self.rpe_conv.in_channels, 2)
        if self.variant != "lmu":
            for i, conv in enumerate(self.convs):
                shapes[f"v{i}"] = (conv.out_channels,)
        if self.variant == "spiking-ms":
            shapes["c3_delay"] = (self.rpe_conv.out_channels,)
        if self.variant == "spiking-conv":
            shapes["v_rpe"] = (self.rpe_conv.out_channels,)
        return StateLayout.of(**shapes)

    @staticmethod
    def _conv_step(conv: nn.Conv1d, buffer: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ring-buffered k = 3 conv: newest frame x [B, C_in] -> output one frame back, new buffer."""
        window = torch.cat([buffer, x.unsqueeze(-1)], dim=-1)  # [B, C_in, 3], oldest first
        return F.linear(window.flatten(1), conv.weight.flatten(1)), window[..., 1:]

    def step(self, x: torch.Tensor, state: Mapping[str, torch.Tensor], valid: list[torch.Tensor],
             padding: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, dict]:
        """One frame x [B, mel] -> embedding of the frame 5 back [B, C], new state.

        ``valid[k]`` is true once stage k's input exists (k frames consumed past the start).
        ``padding[k]`` is true where stage k's newest input lies past the end of the stream: it
        is then the zero the parallel form pads that convolution's own input with (after the
        input ended, earlier stages' outputs on zero frames are not zero).
        """
        new = {}
        spiking = self.variant != "lmu"
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if padding is not None:
                x = _gate(padding[i], torch.zeros_like(x), x)
            y, buffer = self._conv_step(conv, state[f"buffer{i}"], x)
            new[f"buffer{i}"] = _gate(valid[i], buffer, state[f"buffer{i}"])
            if not spiking:
                x = norm(F.relu(y))
                continue
            if i == 3 and self.variant == "spiking-ms":
                c3 = y
            x, v = self.lifs[i].step(norm(y), state[f"v{i}"])
            new[f"v{i}"] = _gate(valid[i + 1], v, state[f"v{i}"])
        # x is now the RPE input of frame t - 4; its buffer holds frames t - 6 and t - 5.
        if padding is not None:
            x = _gate(padding[4], torch.zeros_like(x), x)
        rpe, buffer = self._conv_step(self.rpe_conv, state["buffer_rpe"], x)
        new["buffer_rpe"] = _gate(valid[4], buffer, state["buffer_rpe"])
        if self.variant == "lmu":
            return state["buffer_rpe"][..., 1] + rpe, new
        if self.variant == "spiking-ms":
            new["c3_delay"] = _gate(valid[4], c3, state["c3_delay"])
            return state["c3_delay"] + rpe, new
        spikes, v = self.rpe_lif.step(self.rpe_norm(rpe), state["v_rpe"])
        new["v_rpe"] = _gate(valid[5], v, state["v_rpe"])
        return state["buffer_rpe"][..., 1] + spikes, new


class TokenMixer(nn.Module):
    """LMU token mixer: cell, then 1x1 ``proj_conv`` and ``proj_bn``.

    "lmu" (``LMU``): plain. "spiking-ms" (``SLMUMs``): BN -> LIF (threshold 0.5) before the cell.
    "spiking-conv" (``SLMU``): LIF after ``proj_bn``.
    """

    def __init__(self, config: LMUFormerConfig):
        super().__init__()
        dim = config.embed_dim
        self.variant = config.variant
        if self.variant == "spiking-ms":
            self.prev_bn = nn.BatchNorm1d(dim)
            self.prev_lif = LIF(threshold=0.5, delay_frames=LOOKAHEAD_FRAMES)
        self.lmu = LMUCell(dim, dim, config.memory_order, config.theta_frames, config.train_frames,
                           spiking=config.spiking)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        if self.variant == "spiking-conv":
            self.proj_lif = LIF(delay_frames=LOOKAHEAD_FRAMES)

    def forward(self, x: torch.Tensor, export_kernel: torch.Tensor | None = None) -> torch.Tensor:
        if self.variant == "spiking-ms":
            x = self.prev_lif(self.prev_bn(x))
        y = self.proj_bn(self.proj_conv(self.lmu(x, export_kernel)))
        return self.proj_lif(y) if self.variant == "spiking-conv" else y

    def state_layout(self) -> StateLayout:
        if self.variant == "spiking-ms":
            return StateLayout.of(lmu=self.lmu.state_layout(), v_in=(self.proj_conv.in_channels,))
        if self.variant == "spiking-conv":
            return StateLayout.of(lmu=self.lmu.state_layout(), v_out=(self.proj_conv.out_channels,))
        return StateLayout.of(lmu=self.lmu.state_layout())

    def step(self, x: torch.Tensor, state: StateTree, valid: torch.Tensor) -> tuple[torch.Tensor, dict]:
        new = {}
        if self.variant == "spiking-ms":
            x, v = self.prev_lif.step(self.prev_bn(x), state["v_in"])
            new["v_in"] = _gate(valid, v, state["v_in"])
        h, new["lmu"] = self.lmu.step(x, state["lmu"], valid)
        y = self.proj_bn(_pointwise(self.proj_conv, h))
        if self.variant == "spiking-conv":
            y, v = self.proj_lif.step(y, state["v_out"])
            new["v_out"] = _gate(valid, v, state["v_out"])
        return y, new


class ChannelMixer(nn.Module):
    """Two 1x1 convolutions over channels (upstream ``ConvFFN`` / ``ConvFFNMs``).

    "lmu": fc1 -> BN -> GELU -> fc2 -> BN -> ReLU. "spiking-conv": the same with LIFs in place of
    both activations. "spiking-ms": BN -> LIF -> fc1 -> BN -> LIF -> fc2 (pre-activation).
    """

    def __init__(self, config: LMUFormerConfig):
        super().__init__()
        dim, hidden = config.embed_dim, config.hidden_dim
        self.variant = config.variant
        pre = self.variant == "spiking-ms"
        self.fc1_bn = nn.BatchNorm1d(dim if pre else hidden)
        self.fc1_conv = nn.Conv1d(dim, hidden, kernel_size=1)
        self.fc2_bn = nn.BatchNorm1d(hidden if pre else dim)
        self.fc2_conv = nn.Conv1d(hidden, dim, kernel_size=1)
        if config.spiking:
            self.fc1_lif = LIF(delay_frames=LOOKAHEAD_FRAMES)
            self.fc2_lif = LIF(delay_frames=LOOKAHEAD_FRAMES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "spiking-ms":
            x = self.fc1_conv(self.fc1_lif(self.fc1_bn(x)))
            return self.fc2_conv(self.fc2_lif(self.fc2_bn(x)))
        x = self.fc1_bn(self.fc1_conv(x))
        x = self.fc1_lif(x) if self.variant == "spiking-conv" else F.gelu(x)
        x = self.fc2_bn(self.fc2_conv(x))
        return self.fc2_lif(x) if self.variant == "spiking-conv" else F.relu(x)

    def state_layout(self) -> StateLayout:
        if self.variant == "lmu":
            return StateLayout()
        return StateLayout.of(v1=(self.fc1_lif_width,), v2=(self.fc2_lif_width,))

    @property
    def fc1_lif_width(self) -> int:
        return self.fc1_bn.num_features

    @property
    def fc2_lif_width(self) -> int:
        return self.fc2_bn.num_features

    def step(self, x: torch.Tensor, state: Mapping[str, torch.Tensor], valid: torch.Tensor) -> tuple[torch.Tensor, dict]:
        new = {}
        if self.variant == "spiking-ms":
            x, v1 = self.fc1_lif.step(self.fc1_bn(x), state["v1"])
            x = _pointwise(self.fc1_conv, x)
            x, v2 = self.fc2_lif.step(self.fc2_bn(x), state["v2"])
            x = _pointwise(self.fc2_conv, x)
        else:
            x = self.fc1_bn(_pointwise(self.fc1_conv, x))
            if self.variant == "spiking-conv":
                x, v1 = self.fc1_lif.step(x, state["v1"])
            else:
                x = F.gelu(x)
            x = self.fc2_bn(_pointwise(self.fc2_conv, x))
            if self.variant == "spiking-conv":
                x, v2 = self.fc2_lif.step(x, state["v2"])
            else:
                x = F.relu(x)
        if self.variant != "lmu":
            new["v1"] = _gate(valid, v1, state["v1"])
            new["v2"] = _gate(valid, v2, state["v2"])
        return x, new


class Block(nn.Module):
    """``x + attn(x)``, then ``x + mlp(x)`` (drop path is identity upstream)."""

    def __init__(self, config: LMUFormerConfig):
        super().__init__()
        self.attn = TokenMixer(config)
        self.mlp = ChannelMixer(config)

    def forward(self, x: torch.Tensor, export_kernel: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(x, export_kernel)
        return x + self.mlp(x)

    def state_layout(self) -> StateLayout:
        return StateLayout.of(attn=self.attn.state_layout(), mlp=self.mlp.state_layout())

    def step(self, x: torch.Tensor, state: StateTree, valid: torch.Tensor) -> tuple[torch.Tensor, dict]:
        new = {}
        y, new["attn"] = self.attn.step(x, state["attn"], valid)
        x = x + y
        y, new["mlp"] = self.mlp.step(x, state["mlp"], valid)
        return x + y, new


# ----------------------------------------------------------------------------------------------
# The model


class LMUFormer(nn.Module):
    """LMUFormer classifier over fbank frames.

    ``forward(features [B, T, mel]) -> logits [B, classes]`` is upstream's output (per-frame head,
    mean over frames). ``forward_prefix`` gives the running mean of per-frame logits [B, T, classes]
    (upstream's ``all_seq`` test mode). ``init_state`` / ``forward_step`` are the recurrent form.
    """

    def __init__(self, config: LMUFormerConfig):
        super().__init__()
        self.config = config
        self.patch_embed = ConvEmbed(config.variant, config.mel_bins, config.embed_dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        if config.variant == "spiking-ms":
            self.head_bn = nn.BatchNorm1d(config.embed_dim)
            self.head_lif = LIF(delay_frames=LOOKAHEAD_FRAMES)
        self.head = nn.Linear(config.embed_dim, config.num_classes)
        # Upstream: truncated normal (std 0.02) for every nn.Linear, zero bias; convs and BNs
        # keep PyTorch defaults.
        self.apply(init_linear_)

    def _check_features(self, features: torch.Tensor) -> None:
        if features.dim() != 3 or features.shape[-1] != self.config.mel_bins:
            raise UsageError(
                f"features must be [batch, frames, {self.config.mel_bins}], got {list(features.shape)}")

    def forward_features(self, features: torch.Tensor, export_kernel: torch.Tensor | None = None) -> torch.Tensor:
        """features [B, T, mel] -> head input [B, C, T] (after the head LIF where there is one)."""
        x = self.patch_embed(features.transpose(1, 2))  # [B, T, mel] -> [B, mel, T]
        for block in self.blocks:
            x = block(x, export_kernel)
        if self.config.variant == "spiking-ms":
            x = self.head_lif(self.head_bn(x))
        return x

    def frame_logits(self, features: torch.Tensor, export_kernel: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame logits [B, T, classes]."""
        return self.head(self.forward_features(features, export_kernel).transpose(1, 2))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self._check_features(features)
        return self.frame_logits(features).mean(dim=1)

    def forward_prefix(self, features: torch.Tensor) -> torch.Tensor:
        """Running mean of per-frame logits over each prefix [B, T, classes]."""
        self._check_features(features)
        logits = self.frame_logits(features)
        count = torch.arange(1, logits.shape[1] + 1, dtype=logits.dtype).view(1, -1, 1)
        return logits.cumsum(dim=1) / count

    # -- recurrent form --------------------------------------------------------------------

    def state_layout(self) -> StateLayout:
        """The step form's state: a frame counter, the patch embedding's ("pe") and each block's
        ("block<i>") state, the head LIF's membrane (spiking-ms) and the running sum of logits."""
        parts: dict[str, Any] = {"frames_seen": (1,), "pe": self.patch_embed.state_layout()}
        parts.update({f"block{i}": block.state_layout() for i, block in enumerate(self.blocks)})
        if self.config.variant == "spiking-ms":
            parts["head_v"] = (self.config.embed_dim,)
        parts["head_sum"] = (self.config.num_classes,)
        return StateLayout.of(**parts)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every state of the step form, flat name -> shape without the batch axis (which is first)."""
        return self.state_layout().shapes()

    def init_state(self, batch: int = 1) -> dict[str, torch.Tensor]:
        """Zero state for ``batch`` streams: every state starts at 0, as the parallel form's pads do."""
        return {name: torch.zeros((batch, *shape)) for name, shape in self.state_shapes().items()}

    def forward_step(self, frame: torch.Tensor, state: Mapping[str, torch.Tensor],
                     end_frames: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """One feature frame [B, mel] -> (frame logits, running-mean logits, new state).

        Both logits [B, classes] belong to the frame ``LOOKAHEAD_FRAMES`` behind ``frame``; they
        are 0 during the first ``LOOKAHEAD_FRAMES`` calls (nothing decided yet).

        ``end_frames`` [B, 1] ends the stream: 0 while the input lasts, then 1, 2, ...
        ``LOOKAHEAD_FRAMES`` on the steps after its last frame (``frame`` is then ignored). Those
        steps answer for the last ``LOOKAHEAD_FRAMES`` input frames exactly as the parallel form
        does at the end of the clip: each convolution sees its own zero padding.
        """
        layout = self.state_layout()
        state = layout.nest(state)
        t = state["frames_seen"]  # [B, 1], frames consumed before this one
        valid = [t >= k for k in range(LOOKAHEAD_FRAMES + 1)]
        # Stage k's newest input is frame t - k: past the end once more than k end frames came.
        padding = None if end_frames is None else [end_frames > k for k in range(LOOKAHEAD_FRAMES)]
        new: dict[str, Any] = {"frames_seen": t + 1.0}
        x, new["pe"] = self.patch_embed.step(frame, state["pe"], valid, padding)
        ready = valid[LOOKAHEAD_FRAMES]
        for i, block in enumerate(self.blocks):
            x, new[f"block{i}"] = block.step(x, state[f"block{i}"], ready)
        if self.config.variant == "spiking-ms":
            x, v = self.head_lif.step(self.head_bn(x), state["head_v"])
            new["head_v"] = _gate(ready, v, state["head_v"])
        logits = torch.where(ready, self.head(x), torch.zeros_like(state["head_sum"]))
        new["head_sum"] = state["head_sum"] + logits
        decided = torch.clamp(t + 1.0 - LOOKAHEAD_FRAMES, min=1.0)
        return logits, new["head_sum"] / decided, layout.flatten(new)

    def lif_layers(self) -> dict[str, LIF]:
        return {name: module for name, module in self.named_modules() if isinstance(module, LIF)}

    def dense_layers(self) -> list[tuple[str, int, str | None]]:
        """Per-frame multiply-accumulates of every dense layer: (name, MACs, input LIF or None).

        The input LIF names the spiking layer feeding it (its MACs become accumulates at that
        LIF's firing rate); None means a real-valued input (true MACs).
        """
        c = self.config
        variant, dim, d = c.variant, c.embed_dim, c.memory_order
        pe_lif = None if variant == "lmu" else "patch_embed.lifs"
        layers: list[tuple[str, int, str | None]] = [("patch_embed.convs.0", c.mel_bins * dim * 3, None)]
        for i in (1, 2, 3):
            layers.append((f"patch_embed.convs.{i}", dim * dim * 3, f"{pe_lif}.{i - 1}" if pe_lif else None))
        layers.append(("patch_embed.rpe_conv", dim * dim * 3, f"{pe_lif}.3" if pe_lif else None))
        for i in range(c.depth):
            p = f"blocks.{i}"
            x_in = f"{p}.attn.prev_lif" if variant == "spiking-ms" else None
            spiking = c.spiking
            layers += [
                (f"{p}.attn.lmu.W_u", dim, x_in),
                (f"{p}.attn.lmu.A", d * d, None),
                (f"{p}.attn.lmu.B", d, f"{p}.attn.lmu.lif_u" if spiking else None),
                (f"{p}.attn.lmu.W_h[m]", d * dim, f"{p}.attn.lmu.lif_m" if spiking else None),
                (f"{p}.attn.lmu.W_h[x]", dim * dim, x_in),
                (f"{p}.attn.proj_conv", dim * dim, f"{p}.attn.lmu.lif_h" if spiking else None),
                (f"{p}.mlp.fc1_conv", dim * c.hidden_dim, f"{p}.mlp.fc1_lif" if variant == "spiking-ms" else None),
                (f"{p}.mlp.fc2_conv", c.hidden_dim * dim, f"{p}.mlp.fc1_lif" if variant == "spiking-conv"
                 else f"{p}.mlp.fc2_lif" if variant == "spiking-ms" else None),
            ]
        layers.append(("head", dim * c.num_classes, "head_lif" if variant == "spiking-ms" else None))
        return layers


@contextlib.contextmanager
def record_spikes(model: LMUFormer) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record every LIF's spikes while the block runs: name -> list of tensors.

    Parallel calls append one [B, C, T] tensor; step calls append one [B, C] tensor per step.
    """
    lifs = model.lif_layers()
    records: dict[str, list[torch.Tensor]] = {name: [] for name in lifs}
    for name, lif in lifs.items():
        lif.recorded = records[name]
    try:
        yield records
    finally:
        for lif in lifs.values():
            lif.recorded = None


def build(config: LMUFormerConfig) -> LMUFormer:
    return LMUFormer(config)


def config_from_checkpoint(container: Mapping[str, Any], config: LMUFormerConfig) -> LMUFormerConfig:
    """The preset's config, unless the checkpoint carries its own (a ``config`` dict of
    LMUFormerConfig fields, as edgesdk-trained checkpoints do). The authors' files carry none."""
    stored = container.get("extra", {}).get("config")
    if stored is None:
        return config
    if not isinstance(stored, Mapping):
        raise CheckpointError(f"the checkpoint's 'config' entry is a {type(stored).__name__}, not a mapping")
    known = {f.name for f in fields(LMUFormerConfig)}
    unknown = sorted(set(stored) - known)
    if unknown:
        raise CheckpointError(f"the checkpoint's config has fields LMUFormer does not know: {', '.join(unknown)}")
    values = dict(stored)
    if "labels" in values:
        values["labels"] = tuple(values["labels"])
    return replace(config, **values)


# ----------------------------------------------------------------------------------------------
# Checkpoint remap: the authors' DataParallel state_dicts -> edgesdk keys


# (authors' key pattern, edgesdk key) after the ``module.`` prefix is gone.
_REMAP_RULES: tuple[tuple[str, str], ...] = (
    (r"^patch_embed\.conv_layers\.(\d)\.0\.weight$", r"patch_embed.convs.\1.weight"),
    (r"^patch_embed\.conv_layers\.(\d)\.3\.(\w+)$", r"patch_embed.norms.\1.\2"),
    (r"^patch_embed\.proj_conv\.weight$", r"patch_embed.convs.0.weight"),
    (r"^patch_embed\.proj_conv(\d)\.weight$", r"patch_embed.convs.\1.weight"),
    (r"^patch_embed\.proj_bn\.(\w+)$", r"patch_embed.norms.0.\1"),
    (r"^patch_embed\.proj_bn(\d)\.(\w+)$", r"patch_embed.norms.\1.\2"),
    (r"^patch_embed\.rpe_bn\.(\w+)$", r"patch_embed.rpe_norm.\1"),
    (r"^patch_embed\.rpe_conv\.weight$", r"patch_embed.rpe_conv.weight"),
    (r"^block\.(\d+)\.(.+)$", r"blocks.\1.\2"),
    (r"^(head|head_bn)\.(\w+)$", r"\1.\2"),
)
# Keys an edgesdk state dict has that upstream's lacks never occur; these upstream keys have
# no edgesdk counterpart and are dropped after a check (fft_H = rfft(H, 2L) is derived).
_DERIVED = re.compile(r"^block\.(\d+)\.attn\.lmu\.fft_H$")
_EDGESDK_LAYOUT = re.compile(r"^(patch_embed\.(convs|norms)|blocks\.)")


def remap_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' state_dict (``module.`` prefixed, with LMU buffers) -> edgesdk keys.

    Drops ``fft_H`` after checking it equals ``rfft(H, 2L)`` (a checkpoint whose two buffers
    disagree is refused). Keys matching no rule raise CheckpointError naming them.
    """
    keys = list(state_dict)
    if keys and all(not k.startswith("module.") for k in keys) and any(_EDGESDK_LAYOUT.match(k) for k in keys):
        return dict(state_dict)
    stripped = strip_prefix(state_dict, "module.")
    out: dict[str, torch.Tensor] = {}
    unmatched = []
    for key, value in stripped.items():
        derived = _DERIVED.match(key)
        if derived:
            impulse = stripped.get(f"block.{derived.group(1)}.attn.lmu.H")
            if impulse is None:
                unmatched.append(key)
                continue
            expected = torch.fft.rfft(impulse.float(), n=2 * impulse.shape[-1], dim=-1)
            if value.shape != expected.shape or not torch.allclose(value, expected, atol=1e-4, rtol=1e-4):
                raise CheckpointError(f"{key} is not rfft(H, 2L) of its H buffer; the checkpoint is inconsistent")
            continue
        for pattern, target in _REMAP_RULES:
            if re.match(pattern, key):
                out[re.sub(pattern, target, key)] = value
                break
        else:
            unmatched.append(key)
    if unmatched:
        raise CheckpointError(
            f"{len(unmatched)} checkpoint keys match no LMUFormer layer: {', '.join(sorted(unmatched)[:12])}"
            + (" ..." if len(unmatched) > 12 else ""))
    return out


# ----------------------------------------------------------------------------------------------
# Export recipes


class StreamStep(nn.Module):
    """Export-ready step: (features [B, K, mel], end_frames [B, K], *states) -> (frame_logits,
    mean_logits, *new_states).

    Both logits are [B, K, classes]; entry k is the answer for frame ``t + k - LOOKAHEAD_FRAMES``.
    ``end_frames`` is 0 for input frames and counts 1, 2, ... past the end of the stream (the
    runtime's ``Stream.end()`` feeds it; see ``forward_step``). The K steps are unrolled in the
    graph (K is fixed at export).
    """

    def __init__(self, model: LMUFormer, chunk_frames: int):
        super().__init__()
        self.model = model
        self.chunk_frames = chunk_frames
        self.state_names = list(model.state_shapes())

    def forward(self, features: torch.Tensor, end_frames: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state = dict(zip(self.state_names, states))
        frame_logits, mean_logits = [], []
        for k in range(self.chunk_frames):
            logits, mean, state = self.model.forward_step(features[:, k], state, end_frames[:, k: k + 1])
            frame_logits.append(logits)
            mean_logits.append(mean)
        return (torch.stack(frame_logits, dim=1), torch.stack(mean_logits, dim=1),
                *(state[name] for name in self.state_names))


class FullExport(nn.Module):
    """Export-ready parallel form: features [B, T, mel] -> logits [B, classes].

    The LMU memory is a real conv1d with the impulse response as kernel (no complex FFT).
    ``kernel_frames`` columns are kept: all of them for a fixed T; for a dynamic T, enough that
    the dropped tail is negligible (``|A^k B|`` falls below 1e-10 by k = 2 theta).
    """

    def __init__(self, model: LMUFormer, kernel_frames: int):
        super().__init__()
        self.model = model
        for i, block in enumerate(model.blocks):
            kernel = block.attn.lmu.impulse(kernel_frames).flip(-1).unsqueeze(1).contiguous()
            self.register_buffer(f"memory_kernel{i}", kernel)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.model.patch_embed(features.transpose(1, 2))
        for i, block in enumerate(self.model.blocks):
            x = block(x, getattr(self, f"memory_kernel{i}"))
        if self.model.config.variant == "spiking-ms":
            x = self.model.head_lif(self.model.head_bn(x))
        return self.model.head(x.transpose(1, 2)).mean(dim=1)


def _spike_rates(model: LMUFormer, sequences: list[torch.Tensor]) -> dict[str, float]:
    """Firing rate of every LIF (fraction of ones) on the given feature sequences [B, T, mel]."""
    totals: dict[str, list[float]] = {name: [0.0, 0.0] for name in model.lif_layers()}
    with torch.no_grad(), record_spikes(model) as records:
        for features in sequences:
            model.frame_logits(features)
    for name, tensors in records.items():
        for spikes in tensors:
            totals[name][0] += float(spikes.sum())
            totals[name][1] += spikes.numel()
    return {name: (s / n if n else 0.0) for name, (s, n) in totals.items()}


def count_ops(model: LMUFormer, spike_rates: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Per-frame op counts for the manifest ``ops`` section (see DESIGN.md).

    Dense layers with real inputs count as MACs; with a spike input (spiking variants) they count
    as accumulates, scaled by the measured firing rate of the LIF that feeds them.
    """
    macs = accumulates = dense_equivalent = 0
    per_layer = {}
    for name, count, source in model.dense_layers():
        dense_equivalent += count
        if source is None or spike_rates is None:
            macs += count
            per_layer[name] = {"macs": count}
        else:
            rate = spike_rates[source]
            accumulates += round(rate * count)
            per_layer[name] = {"dense_macs": count, "input": source, "spike_rate": round(rate, 6),
                               "accumulates": round(rate * count)}
    clip = model.config.train_frames
    ops = {
        "per": "step",
        "macs": int(macs),
        "accumulates": int(accumulates),
        "binary_ops": 0,
        "counted": ("per frame: multiply-accumulates of convolutions, linear layers and the LMU "
                    "matrices with real-valued inputs; for spike inputs, one accumulate per weight "
                    "times the measured firing rate; BatchNorm, activations, LIF updates and "
                    "residual adds are not counted"),
        "dense_equivalent_macs": int(dense_equivalent),
        "per_clip": {"frames": clip, "macs": int(macs) * clip, "accumulates": int(accumulates) * clip},
        "layers": per_layer,
    }
    return ops


def _spike_flips(model: LMUFormer, features: torch.Tensor) -> dict[str, dict[str, int]]:
    """Spikes that differ between the parallel form and the step form, per LIF layer.

    The step form runs LIF ``name`` ``delay_frames`` behind its input, so step t is compared with
    parallel frame ``t - delay``. Frames whose LIF needs right context the stream has not seen
    (the last ``LOOKAHEAD_FRAMES``) are left out.
    """
    frames = features.shape[1]
    with torch.no_grad(), record_spikes(model) as parallel:
        model.frame_logits(features)
    with torch.no_grad(), record_spikes(model) as stepped:
        state = model.init_state(features.shape[0])
        for t in range(frames):
            _, _, state = model.forward_step(features[:, t], state)
    flips = {}
    for name, lif in model.lif_layers().items():
        reference = parallel[name][0][..., : frames - LOOKAHEAD_FRAMES]
        steps = torch.stack(stepped[name], dim=-1)  # [B, C, steps]
        candidate = steps[..., lif.delay_frames: lif.delay_frames + reference.shape[-1]]
        flips[name] = {"flips": int((reference != candidate).sum()), "compared": int(reference.numel())}
    return flips


def _frontend_section(config: LMUFormerConfig) -> dict[str, Any]:
    from edgesdk.runtime.audio import KaldiFbankFrontend

    return KaldiFbankFrontend(num_mel_bins=config.mel_bins, clip_frames=config.train_frames).to_manifest()


def _feature_sequences(value: Any) -> tuple[np.ndarray, ...]:
    arrays = tuple(np.asarray(array, dtype=np.float32) for array in value)
    if not arrays or any(array.ndim != 2 or not np.isfinite(array).all() for array in arrays):
        raise ValueError(value)
    return arrays


@dataclass(frozen=True)
class LMUFormerExportOptions(ExportOptions):
    """Options of the lmuformer recipe (``--option NAME=VALUE``, or keywords of ``edgesdk.export``)."""

    family: ClassVar[str] = "lmuformer"

    frames: int | None = option(None, "example clip length in frames (spiking presets unroll this many)",
                                integer(minimum=1), modes=("full",), default_text="the training length")
    chunk_frames: int = option(1, "feature frames per streaming step (unrolled in the graph)", integer(minimum=1),
                               modes=("stream",))
    validation_steps: int = option(40, "consecutive streaming steps that validation runs", integer(minimum=1),
                                   modes=("stream",))
    sample_features: tuple[np.ndarray, ...] | None = option(
        None, "[frames, mel] feature arrays to measure spike rates and flips on (default: seeded N(0, 1))",
        python_only("sequence of [frames, mel] arrays", _feature_sequences))


def recipe(model: LMUFormer, mode: str, options: LMUFormerExportOptions) -> ExportSpec:
    """Export recipe (options: ``LMUFormerExportOptions``).

    mode "full": the parallel form, ``features`` [B, T, mel] -> ``logits`` [B, classes], with an
    example of ``frames`` frames. The non-spiking model keeps T dynamic in ONNX; the spiking ones
    unroll their LIFs over a fixed T.

    mode "stream": the step form, ``chunk_frames`` frames per step, validated over
    ``validation_steps`` steps; ``sample_features`` feed the spike-rate and flip measurements.
    """
    if not isinstance(model, LMUFormer):
        raise UsageError(f"the lmuformer recipe needs an LMUFormer, not {type(model).__name__}")
    if mode not in ("full", "stream"):
        raise UsageError(f"lmuformer exports modes full and stream, not {mode!r}")
    config = model.config
    model.eval()
    mel = config.mel_bins
    generator = torch.Generator().manual_seed(0)
    samples = options.sample_features
    frames = options.frames or config.train_frames
    chunk, steps = options.chunk_frames, options.validation_steps
    # int8: LIF thresholds turn small activation errors into flipped spikes, so spiking presets
    # stay float; the LMU recurrence (eigenvalues next to 1) stays float in every preset.
    refused = "int8 activations flip spikes at the LIF thresholds; spiking presets export in float32" if config.spiking else None
    sample_frames = config.train_frames if mode == "full" else max(steps * chunk, LOOKAHEAD_FRAMES + 8)
    if samples is None:
        sample_tensors = [torch.randn(1, sample_frames, mel, generator=generator)]
        samples_from = "seeded N(0, 1) features"
    else:
        sample_tensors = []
        for array in samples:
            if array.shape[1] != mel:
                raise UsageError(f"sample_features must be finite [frames, {mel}] arrays, got {array.shape}")
            sample_tensors.append(torch.from_numpy(array)[None])
        samples_from = f"{len(sample_tensors)} given feature sequences"

    rates = _spike_rates(model, sample_tensors) if config.spiking else None
    ops = count_ops(model, rates)
    if rates is not None:
        ops["spike_rates"] = {name: round(rate, 6) for name, rate in rates.items()}
        ops["spike_rates_from"] = samples_from
    metadata: dict[str, Any] = {
        "frontend": _frontend_section(config),
        "ops": ops,
        "extra": {"labels": list(config.labels), "variant": config.variant,
                  "lookahead_frames": LOOKAHEAD_FRAMES},
    }

    if mode == "full":
        example = torch.randn(1, frames, mel, generator=generator)
        if config.spiking:
            module = FullExport(model, kernel_frames=frames)
            dynamic = {"features": {0: "batch"}, "logits": {0: "batch"}}
        else:
            module = FullExport(model, kernel_frames=max(frames, int(math.ceil(2 * config.theta_frames))))
            dynamic = {"features": {0: "batch", 1: "frames"}, "logits": {0: "batch"}}
        ops_full = dict(ops, per="inference")
        ops_full["macs"] = ops["macs"] * frames
        ops_full["accumulates"] = ops["accumulates"] * frames
        metadata["ops"] = ops_full
        return ExportSpec(
            module=module.eval(), example_inputs={"features": example}, output_names=["logits"],
            mode="full", dynamic_axes=dynamic, atol=1e-4, rtol=1e-4,
            sample_inputs=[{"features": t.numpy()} for t in sample_tensors if t.shape[1] == frames],
            metadata=metadata, quantization_refused=refused,
            keep_float={f"memory_kernel{i}": getattr(module, f"memory_kernel{i}") for i in range(len(model.blocks))})

    module = StreamStep(model, chunk).eval()
    shapes = model.state_shapes()
    states = [StateSpec(name, (1, *shape)) for name, shape in shapes.items()]
    from edgesdk.runtime.sections import StreamingFacts

    metadata["streaming"] = StreamingFacts(frames_per_step=chunk, lookahead_frames=LOOKAHEAD_FRAMES,
                                           hop_samples=HOP_SAMPLES, frame_rate_hz=FRAME_RATE_HZ,
                                           end_input="end_frames").to_manifest()
    metadata["extra"]["state_floats_per_stream"] = int(sum(np.prod(s) for s in shapes.values()))
    if config.spiking:
        flips = {}
        for features in sample_tensors:
            for name, facts in _spike_flips(model, features).items():
                total = flips.setdefault(name, {"flips": 0, "compared": 0})
                total["flips"] += facts["flips"]
                total["compared"] += facts["compared"]
        metadata["extra"]["spike_flips_stream_vs_full"] = flips

    def stream_reference(sequence: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _stream_reference(model, sequence["features"])

    def random_input(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        # Validation streams input frames; the end of a stream is tested against the parallel form.
        if name == "end_frames":
            return np.zeros(shape, dtype=np.float32)
        return rng.standard_normal(shape).astype(np.float32)

    sequences = []
    for features in sample_tensors:
        usable = (features.shape[1] // chunk) * chunk
        if usable:
            steps_of = features[:, :usable].reshape(1, -1, chunk, mel).transpose(0, 1).numpy()
            sequences.append({"features": steps_of, "end_frames": np.zeros(steps_of.shape[:3], dtype=np.float32)})
    return ExportSpec(
        module=module, example_inputs={"features": torch.randn(1, chunk, mel, generator=generator),
                                       "end_frames": torch.zeros(1, chunk)},
        output_names=["frame_logits", "mean_logits"], states=states, mode="stream",
        atol=1e-4, rtol=1e-4, validation_steps=steps, sample_inputs=sequences,
        stream_reference=stream_reference, random_input=random_input, metadata=metadata, quantization_refused=refused,
        keep_float={f"blocks.{i}.attn.lmu.{m}": getattr(block.attn.lmu, m).float()
                    for i, block in enumerate(model.blocks) for m in ("A", "B")})


def _stream_reference(model: LMUFormer, features: np.ndarray) -> dict[str, np.ndarray]:
    """What the step form must output, from the full-sequence model (independent of the step).

    ``features`` is [steps, B, K, mel]. Step s, entry k consumed frame g = s K + k and answers for
    frame g - LOOKAHEAD_FRAMES: the parallel model's per-frame and prefix-mean logits there, or 0
    during warm-up.
    """
    steps, batch, chunk, mel = features.shape
    clip = torch.from_numpy(np.ascontiguousarray(features.transpose(1, 0, 2, 3).reshape(batch, steps * chunk, mel)))
    with torch.no_grad():
        per_frame = model.frame_logits(clip)
    count = torch.arange(1, per_frame.shape[1] + 1, dtype=per_frame.dtype).view(1, -1, 1)
    prefix = per_frame.cumsum(dim=1) / count
    pad = torch.zeros(batch, LOOKAHEAD_FRAMES, per_frame.shape[-1])
    shifted_frame = torch.cat([pad, per_frame], dim=1)[:, : steps * chunk]
    shifted_mean = torch.cat([pad, prefix], dim=1)[:, : steps * chunk]

    def as_steps(x: torch.Tensor) -> np.ndarray:
        return x.reshape(batch, steps, chunk, -1).transpose(0, 1).numpy()

    return {"frame_logits": as_steps(shifted_frame), "mean_logits": as_steps(shifted_mean)}


# ----------------------------------------------------------------------------------------------
# Presets

_DEFAULT = LMUFormerConfig()

PRESETS = {
    "scv2": Preset("scv2", _DEFAULT, "LMUFormer on Speech Commands V2 (upstream lmu_rnn_conv1d)"),
    "scv2-spiking": Preset("scv2-spiking", replace(_DEFAULT, variant="spiking-ms"),
                           "spiking LMUFormer on Speech Commands V2 (upstream slmu_rnn_ms_conv1d)"),
    "scv2-spiking-conv": Preset("scv2-spiking-conv", replace(_DEFAULT, variant="spiking-conv"),
                                "all-spiking patch embedding and token mixer (upstream slmu_rnn_conv1d)"),
    "tiny": Preset("tiny", replace(_DEFAULT, embed_dim=32), "small LMUFormer for tests and demos", small=True),
    # 16 training frames: the full-mode export unrolls the LIFs over this many frames.
    "tiny-spiking": Preset("tiny-spiking", replace(_DEFAULT, variant="spiking-ms", embed_dim=32, train_frames=16),
                           "small spiking LMUFormer for tests and demos (16-frame full export)", small=True),
}

FAMILY = Family(
    name="lmuformer",
    build=build,
    presets=PRESETS,
    remap_checkpoint=remap_checkpoint,
    recipe=recipe,
    export_options=LMUFormerExportOptions,
    config_from_checkpoint=config_from_checkpoint,
    modes=("full", "stream"),
    description="LMUFormer / spiking LMUFormer keyword spotting on 128-bin Kaldi fbank frames",
)
