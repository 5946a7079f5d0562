"""LMUFormer: architecture against an independent re-statement of the authors' model, checkpoints,
parallel vs recurrent forms, recipes and exports.

The reference below is written from the upstream description (zeyuliu1037/LMUFormer @ 5debadd) in
the authors' module layout, so its state_dict has the authors' exact keys: it is the source of the
synthetic checkpoints and the parity target. It computes the LMU memory as upstream does (rfft of
length 2L times the stored ``fft_H``), runs LIFs time-major and builds A, B with scipy's
``cont2discrete`` when scipy is present.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgesdk
from edgesdk.errors import CheckpointError, UsageError
from edgesdk.models import lmuformer as lmu
from edgesdk.models.registry import count_parameters, model_info

L = 128  # upstream's fixed sequence length and theta


# ----------------------------------------------------------------------------------------------
# Independent reference in the authors' layout


def reference_state_space(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    q = np.arange(order, dtype=np.float64).reshape(-1, 1)
    r = (2 * q + 1) / theta
    i, j = np.meshgrid(q, q, indexing="ij")
    a = r * np.where(i < j, -1, (-1.0) ** (i - j + 1))
    b = r * ((-1.0) ** q)
    try:
        from scipy.signal import cont2discrete

        ad, bd, *_ = cont2discrete((a, b, np.ones((1, order)), np.zeros((1,))), dt=1.0, method="zoh")
    except ImportError:  # series for exp of the augmented matrix, many terms (independent of torch)
        m = np.zeros((order + 1, order + 1))
        m[:order, :order], m[:order, order:] = a, b
        term, total = np.eye(order + 1), np.eye(order + 1)
        for k in range(1, 60):
            term = term @ m / k
            total = total + term
        ad, bd = total[:order, :order], total[:order, order:]
    return torch.from_numpy(ad).float(), torch.from_numpy(bd).float()


def reference_lif(x_seq: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """spikingjelly MultiStepLIFNode, tau 2, v_reset 0, decay_input, over dim 0."""
    v = torch.zeros_like(x_seq[0])
    out = []
    for x in x_seq:
        h = v + (x - v) / 2.0
        s = (h - threshold >= 0).float()
        v = h * (1 - s)
        out.append(s)
    return torch.stack(out)


def lif_bcn(x: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """Upstream's permute (B, C, N) -> (N, C, B), LIF, and back."""
    return reference_lif(x.permute(2, 1, 0), threshold).permute(2, 1, 0)


class RefCell(nn.Module):
    def __init__(self, dim: int, memory: int, spiking: bool, frames: int = L):
        super().__init__()
        self.W_u = nn.Linear(dim, 1)
        self.W_h = nn.Linear(memory + dim, dim)
        a, b = reference_state_space(memory, L)
        self.register_buffer("A", a)
        self.register_buffer("B", b)
        columns, column = [], b
        for _ in range(frames):  # H[:, k] = A^k B in float32, as upstream (matrix-vector order here)
            columns.append(column)
            column = a @ column
        h = torch.cat(columns, dim=-1)
        self.register_buffer("H", h)
        self.register_buffer("fft_H", torch.fft.rfft(h, n=2 * frames, dim=-1))
        self.spiking = spiking
        if spiking:
            self.bn_u, self.bn_m, self.bn_h = nn.BatchNorm1d(1), nn.BatchNorm1d(memory), nn.BatchNorm1d(dim)

    def forward(self, x):  # [B, N, C]
        if self.spiking:
            u = reference_lif(self.bn_u(self.W_u(x).transpose(-1, -2)).permute(2, 0, 1)).permute(1, 0, 2)
        else:
            u = F.relu(self.W_u(x))
        n = x.shape[1]
        m = torch.fft.irfft(torch.fft.rfft(u.permute(0, 2, 1), n=2 * n, dim=-1) * self.fft_H.unsqueeze(0), n=2 * n, dim=-1)
        m = m[:, :, :n]
        if self.spiking:
            m = lif_bcn(self.bn_m(m))
        h = self.W_h(torch.cat((m.permute(0, 2, 1), x), dim=-1))
        if self.spiking:
            return reference_lif(self.bn_h(h.transpose(-1, -2)).permute(2, 0, 1)).permute(1, 0, 2)
        return F.relu(h)


class RefModel(nn.Module):
    """lmu_rnn_conv1d ("lmu"), slmu_rnn_ms_conv1d ("spiking-ms") or slmu_rnn_conv1d ("spiking-conv")."""

    def __init__(self, variant: str, dim: int = 256, mel: int = 128, classes: int = 35, frames: int = L):
        super().__init__()
        self.variant = variant
        pe = nn.Module()
        if variant == "lmu":
            widths = [mel, dim, dim, dim, dim]
            pe.conv_layers = nn.Sequential(*[
                nn.Sequential(nn.Conv1d(widths[i], widths[i + 1], 3, 1, 1, bias=False), nn.ReLU(), nn.Identity(),
                              nn.BatchNorm1d(widths[i + 1])) for i in range(4)])
        else:
            pe.proj_conv = nn.Conv1d(mel, dim, 3, 1, 1, bias=False)
            pe.proj_bn = nn.BatchNorm1d(dim)
            for i in (1, 2, 3):
                setattr(pe, f"proj_conv{i}", nn.Conv1d(dim, dim, 3, 1, 1, bias=False))
                setattr(pe, f"proj_bn{i}", nn.BatchNorm1d(dim))
        pe.rpe_conv = nn.Conv1d(dim, dim, 3, 1, 1, bias=False)
        if variant == "spiking-conv":
            pe.rpe_bn = nn.BatchNorm1d(dim)
        self.patch_embed = pe
        blk = nn.Module()
        blk.attn = nn.Module()
        if variant == "spiking-ms":
            blk.attn.prev_bn = nn.BatchNorm1d(dim)
        blk.attn.lmu = RefCell(dim, dim if variant == "lmu" else 2 * dim, spiking=variant != "lmu", frames=frames)
        blk.attn.proj_conv = nn.Conv1d(dim, dim, 1)
        blk.attn.proj_bn = nn.BatchNorm1d(dim)
        blk.mlp = nn.Module()
        hidden = 4 * dim
        if variant == "spiking-ms":
            blk.mlp.fc1_bn, blk.mlp.fc1_conv = nn.BatchNorm1d(dim), nn.Conv1d(dim, hidden, 1)
            blk.mlp.fc2_bn, blk.mlp.fc2_conv = nn.BatchNorm1d(hidden), nn.Conv1d(hidden, dim, 1)
        else:
            blk.mlp.fc1_conv, blk.mlp.fc1_bn = nn.Conv1d(dim, hidden, 1), nn.BatchNorm1d(hidden)
            blk.mlp.fc2_conv, blk.mlp.fc2_bn = nn.Conv1d(hidden, dim, 1), nn.BatchNorm1d(dim)
        self.block = nn.ModuleList([blk])
        if variant == "spiking-ms":
            self.head_bn = nn.BatchNorm1d(dim)
        self.head = nn.Linear(dim, classes)

    def features(self, x):  # [B, N, mel] -> [B, C, N]
        pe = self.patch_embed
        x = x.permute(0, 2, 1)
        if self.variant == "lmu":
            x = pe.conv_layers(x)
            x = x + pe.rpe_conv(x)
        else:
            convs = [pe.proj_conv, pe.proj_conv1, pe.proj_conv2, pe.proj_conv3]
            bns = [pe.proj_bn, pe.proj_bn1, pe.proj_bn2, pe.proj_bn3]
            for i in range(3):
                x = lif_bcn(bns[i](convs[i](x)))
            x = convs[3](x)
            if self.variant == "spiking-ms":
                x = x + pe.rpe_conv(lif_bcn(bns[3](x)))
            else:
                x = lif_bcn(bns[3](x))
                x = x + lif_bcn(pe.rpe_bn(pe.rpe_conv(x)))
        for blk in self.block:
            a, m = blk.attn, blk.mlp
            y = lif_bcn(a.prev_bn(x), 0.5) if self.variant == "spiking-ms" else x
            y = a.proj_bn(a.proj_conv(a.lmu(y.permute(0, 2, 1)).permute(0, 2, 1)))
            if self.variant == "spiking-conv":
                y = lif_bcn(y)
            x = x + y
            if self.variant == "spiking-ms":
                y = m.fc2_conv(lif_bcn(m.fc2_bn(m.fc1_conv(lif_bcn(m.fc1_bn(x))))))
            elif self.variant == "spiking-conv":
                y = lif_bcn(m.fc2_bn(m.fc2_conv(lif_bcn(m.fc1_bn(m.fc1_conv(x))))))
            else:
                y = F.relu(m.fc2_bn(m.fc2_conv(F.gelu(m.fc1_bn(m.fc1_conv(x))))))
            x = x + y
        if self.variant == "spiking-ms":
            x = lif_bcn(self.head_bn(x))
        return x

    def forward(self, x):
        return self.head(self.features(x).permute(0, 2, 1)).mean(dim=1)

    def all_seq(self, x):
        """Upstream test_mode 'all_seq': running mean of the head input, then the head -> [N, B, classes]."""
        f = self.features(x).permute(2, 0, 1).cumsum(dim=0)
        f = f / torch.arange(1, f.shape[0] + 1).view(-1, 1, 1).float()
        return self.head(f)


def randomize(module: nn.Module, seed: int, spiking: bool) -> None:
    """Trained-looking weights: BN statistics and affine away from identity, larger head."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm1d):
                n = sub.num_features
                sub.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                sub.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                sub.weight.copy_((1.5 if spiking else 1.0) + 0.5 * torch.rand(n, generator=generator))
                sub.bias.copy_(0.3 * torch.randn(n, generator=generator) + (0.3 if spiking else 0.0))
                sub.num_batches_tracked.fill_(1234)
            elif isinstance(sub, (nn.Linear, nn.Conv1d)):
                fan_in = sub.weight[0].numel()
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator) * (1.5 / fan_in) ** 0.5)
                if sub.bias is not None:
                    sub.bias.copy_(0.1 * torch.randn(sub.bias.shape, generator=generator))


def authors_checkpoint(tmp_path, variant: str, dim: int, seed: int = 0, frames: int = L):
    """(reference model, path of a DataParallel-style best_model.pth in the authors' layout)."""
    torch.manual_seed(seed)
    reference = RefModel(variant, dim=dim, frames=frames).eval()
    randomize(reference, seed, spiking=variant != "lmu")
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    path = tmp_path / f"{variant}-{dim}-best_model.pth"
    torch.save(state, path)
    return reference, path


PRESET_VARIANT = {
    "scv2": ("lmu", 256), "scv2-spiking": ("spiking-ms", 256), "scv2-spiking-conv": ("spiking-conv", 256),
    "tiny": ("lmu", 32), "tiny-spiking": ("spiking-ms", 32),
}
# upstream's fixed length L (the stored impulse response) per preset
PRESET_FRAMES = {name: lmu.PRESETS[name].config.train_frames for name in PRESET_VARIANT}


def features(batch: int, frames: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, frames, 128, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# Architecture and checkpoints


def test_scv2_parameter_counts_match_the_authors():
    counts = {name: count_parameters(lmu.build(lmu.PRESETS[name].config)) for name in PRESET_VARIANT}
    assert counts["scv2"] == 1_621_796
    assert counts["scv2-spiking"] == 1_689_894
    assert counts["scv2-spiking-conv"] == count_parameters(RefModel("spiking-conv"))
    assert counts["tiny"] == count_parameters(RefModel("lmu", dim=32))
    assert counts["tiny-spiking"] == count_parameters(RefModel("spiking-ms", dim=32, frames=16))


@pytest.mark.parametrize("order", [256, 512])
def test_state_space_matches_zero_order_hold(order):
    a, b = lmu.legendre_state_space(order, 128.0)
    ref_a, ref_b = reference_state_space(order, 128.0)
    assert np.abs(a - ref_a.numpy()).max() < 1e-6
    assert np.abs(b - ref_b.numpy()).max() < 1e-6


@pytest.mark.parametrize("preset", list(PRESET_VARIANT))
def test_authors_checkpoint_loads_and_matches_their_forward(tmp_path, preset):
    variant, dim = PRESET_VARIANT[preset]
    frames = PRESET_FRAMES[preset]
    reference, path = authors_checkpoint(tmp_path, variant, dim, frames=frames)
    model = edgesdk.create_model("lmuformer", preset=preset, checkpoint=path)
    x = features(2, frames, seed=1)
    with torch.no_grad():
        expected = reference(x)
        got = model(x)
        expected_prefix = reference.all_seq(x).permute(1, 0, 2)
        got_prefix = model.forward_prefix(x)
    error = (got - expected).abs().max().item()
    assert expected.abs().max() > 0.1  # the comparison is not between near-zero outputs
    assert error <= 1e-4 * max(1.0, expected.abs().max().item())
    assert (got_prefix - expected_prefix).abs().max().item() <= 1e-4 * max(1.0, expected_prefix.abs().max().item())


def test_wrong_model_checkpoint_names_the_keys(tmp_path):
    _, spiking_path = authors_checkpoint(tmp_path, "spiking-ms", 32, frames=16)
    with pytest.raises(CheckpointError, match="prev_bn"):
        edgesdk.create_model("lmuformer", preset="tiny", checkpoint=spiking_path)
    _, small_path = authors_checkpoint(tmp_path, "lmu", 32)
    with pytest.raises(CheckpointError, match="size|shape"):
        edgesdk.create_model("lmuformer", preset="scv2", checkpoint=small_path)
    foreign = tmp_path / "foreign.pth"
    torch.save({"module.encoder.layers.0.fc.weight": torch.zeros(3, 3)}, foreign)
    with pytest.raises(CheckpointError, match="encoder.layers.0.fc.weight"):
        edgesdk.create_model("lmuformer", preset="tiny", checkpoint=foreign)


def test_remap_rules():
    reference = RefModel("lmu", dim=32)
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    remapped = lmu.remap_checkpoint(state)
    assert "patch_embed.convs.0.weight" in remapped and "patch_embed.norms.3.running_var" in remapped
    assert "blocks.0.attn.lmu.A" in remapped and not any("fft_H" in k for k in remapped)
    assert lmu.remap_checkpoint(remapped) == remapped  # already edgesdk layout: unchanged
    model = lmu.build(lmu.PRESETS["tiny"].config)
    model.load_state_dict(remapped, strict=True)
    # fft_H that is not rfft(H): the checkpoint is inconsistent
    broken = dict(state)
    broken["module.block.0.attn.lmu.fft_H"] = broken["module.block.0.attn.lmu.fft_H"] * 2
    with pytest.raises(CheckpointError, match="fft_H"):
        lmu.remap_checkpoint(broken)


# ----------------------------------------------------------------------------------------------
# Parallel form vs recurrent step form


def run_steps(model, x):
    state = model.init_state(x.shape[0])
    frame, mean = [], []
    with torch.no_grad():
        for t in range(x.shape[1]):
            f, m, state = model.forward_step(x[:, t], state)
            frame.append(f)
            mean.append(m)
    return torch.stack(frame, 1), torch.stack(mean, 1)


@pytest.mark.parametrize("frames", [17, 33, 200])
def test_step_form_equals_parallel_form_any_length(frames):
    model = lmu.build(lmu.PRESETS["tiny"].config).eval()
    randomize(model, 3, spiking=False)
    x = features(2, frames, seed=frames)
    with torch.no_grad():
        per_frame = model.frame_logits(x)
        prefix = model.forward_prefix(x)
    got_frame, got_mean = run_steps(model, x)
    D = lmu.LOOKAHEAD_FRAMES
    assert got_frame[:, :D].abs().max() == 0  # nothing decided during the look-ahead
    scale = per_frame.abs().max().item()
    assert scale > 0.1
    assert (got_frame[:, D:] - per_frame[:, : frames - D]).abs().max().item() <= 1e-5 * max(1, scale)
    assert (got_mean[:, D:] - prefix[:, : frames - D]).abs().max().item() <= 1e-5 * max(1, scale)


@pytest.mark.parametrize("variant", ["spiking-ms", "spiking-conv"])
def test_spiking_step_form_equals_parallel_form(variant):
    config = lmu.LMUFormerConfig(variant=variant, embed_dim=32)
    model = lmu.build(config).eval()
    randomize(model, 4, spiking=True)
    x = features(1, 150, seed=5)
    flips = lmu._spike_flips(model, x)
    rates = lmu._spike_rates(model, [x])
    assert all(0.01 < r < 0.99 for r in rates.values() if r), rates  # neurons neither dead nor saturated
    assert set(flips) == set(rates) and all(v["compared"] > 0 for v in flips.values()), flips
    # On this seeded input every LIF of the step form fires exactly as in the parallel form
    # (a flip would come from a membrane within rounding of the threshold)...
    assert {name: v["flips"] for name, v in flips.items() if v["flips"]} == {}
    with torch.no_grad():
        prefix = model.forward_prefix(x)
    _, got_mean = run_steps(model, x)
    D = lmu.LOOKAHEAD_FRAMES
    # ... so the two forms' running-mean logits agree to float rounding on every decided frame.
    scale = prefix.abs().max().item()
    assert scale > 0.1
    assert (got_mean[:, D:] - prefix[:, :-D]).abs().max().item() <= 1e-5 * max(1, scale)


@pytest.mark.parametrize("variant", ["lmu", "spiking-ms", "spiking-conv"])
def test_end_frames_give_the_parallel_forms_last_frames(variant):
    # The parallel form zero-pads each k = 3 conv's own input at the end of the clip; zero
    # *feature* frames are not that (a conv of zeros through BN is not zero), end_frames is.
    model = lmu.build(lmu.LMUFormerConfig(variant=variant, embed_dim=32)).eval()
    randomize(model, 3, spiking=variant != "lmu")
    x = features(2, 37, seed=1)
    D = lmu.LOOKAHEAD_FRAMES
    with torch.no_grad():
        per_frame, prefix = model.frame_logits(x), model.forward_prefix(x)
        state = model.init_state(2)
        frame, mean = [], []
        for t in range(37 + D):
            end = torch.full((2, 1), float(max(0, t - 36)))
            f, m, state = model.forward_step(x[:, min(t, 36)] if t < 37 else torch.zeros(2, 128), state, end)
            frame.append(f)
            mean.append(m)
        zero_frames = run_steps(model, torch.cat([x, torch.zeros(2, D, 128)], dim=1))[0][:, D:]
    frame, mean = torch.stack(frame, 1)[:, D:], torch.stack(mean, 1)[:, D:]
    scale = per_frame.abs().max().item()
    assert scale > 0.1
    assert (frame - per_frame).abs().max().item() <= 1e-5 * max(1, scale)
    assert (mean - prefix).abs().max().item() <= 1e-5 * max(1, scale)
    # the flush this replaces: zero feature frames get the last frames wrong
    assert (zero_frames[:, -1] - per_frame[:, -1]).abs().max().item() > 1e-3 * max(1, scale)


def test_parallel_form_beyond_training_length_uses_extended_impulse():
    model = lmu.build(lmu.PRESETS["tiny"].config).eval()
    cell = model.blocks[0].attn.lmu
    h = cell.impulse(300).double()
    a, b = cell.A.double(), cell.B.double()
    assert torch.allclose(h[:, 200], torch.linalg.matrix_power(a, 200) @ b[:, 0], atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Recipes and exports


def test_recipe_rejects_unknown_options_and_modes():
    model = edgesdk.create_model("lmuformer", preset="tiny")
    with pytest.raises(UsageError, match="window_seconds"):
        lmu.FAMILY.export_spec(model, "stream", window_seconds=3)
    with pytest.raises(UsageError, match="chunk_frames"):
        lmu.FAMILY.export_spec(model, "stream", chunk_frames=0)
    with pytest.raises(UsageError, match="subnet"):
        lmu.FAMILY.export_spec(model, "subnet")


def test_stream_recipe_metadata_and_ops():
    model = edgesdk.create_model("lmuformer", preset="tiny-spiking")
    spec = lmu.FAMILY.export_spec(model, "stream", chunk_frames=2, validation_steps=32)
    assert spec.metadata["streaming"] == {"frames_per_step": 2, "lookahead_frames": 5, "hop_samples": 160,
                                          "frame_rate_hz": 100.0, "end_input": "end_frames"}
    assert spec.metadata["extra"]["labels"][28] == "yes" and len(spec.metadata["extra"]["labels"]) == 35
    names = [s.name for s in spec.states]
    assert "block0_attn_lmu_memory" in names and "frames_seen" in names and "pe_buffer0" in names
    ops = spec.metadata["ops"]
    dim, d, mel, hidden = 32, 64, 128, 128
    dense = mel * dim * 3 + 4 * dim * dim * 3 + dim + d * d + d + (d + dim) * dim + dim * dim + 2 * dim * hidden + dim * 35
    assert ops["dense_equivalent_macs"] == dense
    # real-valued inputs: the first conv and the memory recurrence A m
    assert ops["macs"] == mel * dim * 3 + d * d
    expected_acc = sum(layer["accumulates"] for layer in ops["layers"].values() if "accumulates" in layer)
    assert ops["accumulates"] == expected_acc and 0 < expected_acc < dense - ops["macs"]
    assert ops["per_clip"]["macs"] == ops["macs"] * 16  # tiny-spiking trains on 16 frames
    assert set(spec.metadata["extra"]["spike_flips_stream_vs_full"]) == set(model.lif_layers())


def test_full_recipe_ops_per_inference():
    model = edgesdk.create_model("lmuformer", preset="scv2")
    spec = lmu.FAMILY.export_spec(model, "full")
    ops = spec.metadata["ops"]
    assert ops["per"] == "inference"
    # 215.1 M is the independent count in ../shared/reference/lmuformer.md (patch 113.2 M, LMU 33.6 M,
    # MLP 67.1 M, head 1.1 M)
    assert abs(ops["macs"] - 215.1e6) < 0.1e6


@pytest.fixture(scope="module")
def tiny_stream_bundle(tmp_path_factory):
    model = edgesdk.create_model("lmuformer", preset="tiny")
    randomize(model, 7, spiking=False)
    out = tmp_path_factory.mktemp("bundles") / "tiny-stream"
    edgesdk.export(model, out, formats=("onnx", "tflite"), mode="stream", random_weights=True)
    return model, out


def test_stream_export_validates_against_full_model(tiny_stream_bundle):
    model, out = tiny_stream_bundle
    manifest = json.loads((out / "edgesdk.json").read_text())
    report = json.loads((out / "validation.json").read_text())
    assert manifest["valid"] and manifest["streaming"]["lookahead_frames"] == 5
    assert manifest["frontend"]["type"] == "kaldi_fbank" and manifest["extra"]["labels"][0] == "backward"
    for fmt in ("onnx", "tflite"):
        for case in report["formats"][fmt]["cases"]:
            vs_full = case["vs_stream_reference"]["outputs"]["mean_logits"]
            assert vs_full["max_abs"] <= 1e-4 and len(vs_full["per_step_max_abs"]) >= 32


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_runtime_stream_reproduces_prefix_logits(tiny_stream_bundle, backend):
    model, out = tiny_stream_bundle
    runtime = edgesdk.load(out, backend=backend)
    x = features(1, 45, seed=11)
    with torch.no_grad():
        prefix = model.forward_prefix(x)[0].numpy()
    stream = runtime.stream(batch=1)
    means = [stream.push({"features": x[:, t: t + 1].numpy()})["mean_logits"][0, 0] for t in range(45)]
    means = np.stack(means)
    D = lmu.LOOKAHEAD_FRAMES
    assert np.abs(means[:D]).max() == 0
    assert np.abs(means[D:] - prefix[:-D]).max() <= 1e-4
    with pytest.raises(UsageError, match="end_frames"):  # a recorded end input is checked like any feed
        stream.push({"features": x[:, :1].numpy(), "end_frames": np.zeros((1, 2), np.float32)})
    with pytest.raises(UsageError):
        stream.push({"features": x[:, :3].numpy()})  # a chunk of 3 frames into a 1-frame step
    bad = x[:, :1].numpy().copy()
    bad[0, 0, 5] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        stream.push({"features": bad})


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_runtime_stream_end_returns_the_full_models_last_frames(tiny_stream_bundle, backend):
    model, out = tiny_stream_bundle
    runtime = edgesdk.load(out, backend=backend)
    D = lmu.LOOKAHEAD_FRAMES
    stream = runtime.stream(batch=1)
    for frames, seed in ((23, 3), (17, 4)):  # the second clip checks that end() reset the stream
        x = features(1, frames, seed=seed)
        with torch.no_grad():
            per_frame, prefix = model.frame_logits(x)[0].numpy(), model.forward_prefix(x)[0].numpy()
        pushed = [stream.push({"features": x[:, t: t + 1].numpy()}) for t in range(frames)]
        owed = stream.end()
        assert stream.steps == 0 and set(owed) == {"frame_logits", "mean_logits"}
        assert owed["frame_logits"].shape == (1, D, 35)
        frame = np.concatenate([p["frame_logits"][0] for p in pushed] + [owed["frame_logits"][0]])[D:]
        mean = np.concatenate([p["mean_logits"][0] for p in pushed] + [owed["mean_logits"][0]])[D:]
        scale = np.abs(per_frame).max()
        assert scale > 0.1
        # per frame, every frame of the clip (the last D from end()), fp32 rounding relative to the scale
        assert np.abs(frame - per_frame).max(axis=1).max() <= 1e-5 * scale
        assert np.abs(mean - prefix).max(axis=1).max() <= 1e-5 * scale
    assert stream.end() == {}  # nothing pushed since the last end: nothing owed


def test_chunked_spiking_stream_export(tmp_path):
    model = edgesdk.create_model("lmuformer", preset="tiny-spiking")
    randomize(model, 8, spiking=True)
    result = edgesdk.export(model, tmp_path / "b", formats=("onnx",), mode="stream", chunk_frames=4, validation_steps=10, random_weights=True)
    assert result.valid
    manifest = result.manifest
    assert manifest["streaming"]["frames_per_step"] == 4
    assert manifest["inputs"][0]["shape"] == [1, 4, 128]
    flips = manifest["extra"]["spike_flips_stream_vs_full"]
    assert flips and all(facts["compared"] > 0 for facts in flips.values())
    case = result.validation["formats"]["onnx"]["cases"][0]
    assert case["vs_stream_reference"]["outputs"]["mean_logits"]["max_abs"] <= 1e-4
    runtime = edgesdk.load(tmp_path / "b")
    x = features(1, 40, seed=12)
    with torch.no_grad():
        prefix = model.forward_prefix(x)[0].numpy()
    stream = runtime.stream(batch=1)
    means = np.concatenate([stream.push({"features": x[:, t: t + 4].numpy()})["mean_logits"][0] for t in range(0, 40, 4)])
    D = lmu.LOOKAHEAD_FRAMES
    assert np.abs(means[D:] - prefix[:-D]).max() <= 1e-4
    # end() pushes two 4-frame steps past the end and keeps the 5 frames owed
    owed = stream.end()["mean_logits"][0]
    assert owed.shape == (D, 35)
    assert np.abs(owed - prefix[-D:]).max() <= 1e-5 * max(1.0, np.abs(prefix).max())


def test_full_export_dynamic_frames(tmp_path):
    model = edgesdk.create_model("lmuformer", preset="tiny")
    randomize(model, 9, spiking=False)
    result = edgesdk.export(model, tmp_path / "full", formats=("onnx",), mode="full", random_weights=True)
    assert result.valid
    assert result.manifest["inputs"][0]["shape"] == ["batch", "frames", 128]
    runtime = edgesdk.load(tmp_path / "full")
    for frames in (17, 33, 300):
        x = features(2, frames, seed=frames)
        with torch.no_grad():
            expected = model(x).numpy()
        got = runtime.run({"features": x.numpy()})["logits"]
        assert np.abs(got - expected).max() <= 1e-4 * max(1, np.abs(expected).max())


def test_full_export_spiking_fixed_frames(tmp_path):
    model = edgesdk.create_model("lmuformer", preset="tiny-spiking")
    randomize(model, 10, spiking=True)
    # The LIF recursion is unrolled over a fixed number of frames (exporters take ~3 s per frame
    # here), so the default run exports 8 frames to ONNX; test_fullsize_exports does 128 and TFLite.
    result = edgesdk.export(model, tmp_path / "full", formats=("onnx",), mode="full", frames=8, random_weights=True)
    assert result.valid
    assert result.manifest["inputs"][0]["shape"] == ["batch", 8, 128]
    runtime = edgesdk.load(tmp_path / "full")
    x = features(1, 8, seed=13)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(runtime.run({"features": x.numpy()})["logits"] - expected).max() <= 1e-4


@pytest.mark.fullsize
@pytest.mark.parametrize("preset", ["scv2", "scv2-spiking"])
@pytest.mark.parametrize("mode", ["stream", "full"])
def test_fullsize_exports(tmp_path, preset, mode, check_validation):
    variant, dim = PRESET_VARIANT[preset]
    _, path = authors_checkpoint(tmp_path, variant, dim)
    model = edgesdk.create_model("lmuformer", preset=preset, checkpoint=path)
    result = edgesdk.export(model, tmp_path / "bundle", formats=("onnx", "tflite"), mode=mode)
    check_validation(result, ("onnx", "tflite"))
    if mode == "stream":
        cases = [case for facts in result.validation["formats"].values() for case in facts["cases"] if "skipped" not in case]
        assert all(case["vs_stream_reference"]["passed"] for case in cases)  # step form vs the parallel model


def test_checkpoint_carrying_its_config(tmp_path):
    config = lmu.LMUFormerConfig(embed_dim=24, num_classes=3, labels=("a", "b", "c"))
    model = lmu.build(config).eval()
    path = tmp_path / "own.pt"
    fields_ = {**dataclasses.asdict(config), "labels": ["a", "b", "c"]}  # as edgesdk-trained files carry it
    torch.save({"state_dict": model.state_dict(), "config": fields_}, path)
    loaded = edgesdk.create_model("lmuformer", checkpoint=path)  # no preset: the file says what it is
    assert loaded.config == config
    assert model_info(loaded).preset is None  # no preset has this config
    with pytest.raises(UsageError, match=r"--preset tiny and the config in .*own.pt disagree \(embed_dim 32 vs 24; "
                                         r"num_classes 35 vs 3; labels"):
        edgesdk.create_model("lmuformer", preset="tiny", checkpoint=path)
    x = features(1, 20, seed=3)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    torch.save({"state_dict": model.state_dict(), "config": {**fields_, "colour": "red"}}, path)
    with pytest.raises(CheckpointError, match="colour"):
        edgesdk.create_model("lmuformer", preset="tiny", checkpoint=path)
    with pytest.raises(CheckpointError, match="colour"):
        edgesdk.create_model("lmuformer", checkpoint=path)
    torch.save({"state_dict": model.state_dict()}, path)
    with pytest.raises(UsageError, match="lmuformer needs --preset: .* does not carry its whole architecture"):
        edgesdk.create_model("lmuformer", checkpoint=path)
