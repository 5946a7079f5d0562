"""SLAB family: SLA and Swin windows against upstream's formulas, PRepBN semantics, RepBN
folding (numerics and ONNX node counts), the authors' checkpoint containers, export to both
formats, and bad input.

The independent references below are written from the upstream description (einsum with the
heads folded into the batch, rank-6 window partition with torch.roll, BatchNorm through a
transpose) and share no code with edgesdk.models.slab.
"""
from __future__ import annotations

import collections
import copy
import json
import logging
import sys
import types
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgesdk.errors import CheckpointError, UsageError
from edgesdk.models import slab
from edgesdk.models.registry import model_info

TINY_PRESETS = ("tiny", "tiny-swin", "tiny-pvt", "tiny-cswin")
# A softmax DeiT with class token and bare RepBN, test-sized (the DeiT-T-PRepBN code path).
TINY_DEIT_PREPBN = replace(slab.PRESETS["tiny"].config, attention="S", class_token=True, norm="repbn")


def seeded(config, seed=0):
    torch.manual_seed(seed)
    return slab.build(config).eval()


def with_random_norms(model, seed=0):
    """``model`` with every RepBN's BN weight and bias and alpha drawn at random, its running
    mean and variance perturbed around their current values, and every Linear and Conv2d bias
    drawn at random: a fold that dropped any of these terms fails, whatever ``build``
    initialises (the authors' init leaves gamma 1, beta 0, alpha 1, zero Linear biases)."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(like, low, high):
        return low + (high - low) * torch.rand(like.shape, generator=generator, dtype=like.dtype)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, slab.RepBN):
                module.alpha.copy_(uniform(module.alpha, 0.5, 1.5))
                module.bn.weight.copy_(uniform(module.bn.weight, 0.5, 1.5))
                module.bn.bias.copy_(uniform(module.bn.bias, -0.2, 0.2))
                module.bn.running_mean.add_(uniform(module.bn.running_mean, -0.3, 0.3))
                module.bn.running_var.mul_(uniform(module.bn.running_var, 0.5, 1.5))
            elif isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and module.bias is not None:
                module.bias.copy_(uniform(module.bias, -0.05, 0.05))
    return model


def relative_error(expected: torch.Tensor, got: torch.Tensor) -> float:
    return float((expected - got).abs().max() / expected.abs().max())


# ------------------------------------------------------------------------------------------
# Independent references of upstream's formulas
# ------------------------------------------------------------------------------------------


def upstream_sla(x, attn, heads):
    """Upstream SimplifiedLinearAttention.forward: einsum over (batch * heads) folded tensors."""
    B, N, C = x.shape
    d = C // heads
    qkv = F.linear(x, attn.qkv.weight, attn.qkv.bias).reshape(B, N, 3, C).permute(2, 0, 1, 3)
    q, k, v = qkv[0], qkv[1], qkv[2]
    k = k + attn.positional_encoding
    q, k = torch.relu(q), torch.relu(k)
    fold = lambda t: t.reshape(B, N, heads, d).permute(0, 2, 1, 3).reshape(B * heads, N, d)  # noqa: E731
    q, k, v = fold(q), fold(k), fold(v)
    z = 1 / (torch.einsum("bic,bc->bi", q, k.sum(dim=1)) + 1e-6)
    kv = torch.einsum("bjc,bjd->bcd", k, v)
    out = torch.einsum("bic,bcd,bi->bid", q, kv, z)
    side = int(N ** 0.5)
    feature_map = v.reshape(B * heads, side, side, d).permute(0, 3, 1, 2)
    feature_map = F.conv2d(feature_map, attn.dwc.weight, attn.dwc.bias, padding=attn.dwc.kernel_size[0] // 2,
                           groups=d)
    out = out + feature_map.reshape(B * heads, d, N).permute(0, 2, 1)
    out = out.reshape(B, heads, N, d).permute(0, 2, 1, 3).reshape(B, N, C)
    return F.linear(out, attn.proj.weight, attn.proj.bias)


def upstream_relative_index(window):
    coords = torch.stack(torch.meshgrid([torch.arange(window), torch.arange(window)], indexing="ij"))
    flat = torch.flatten(coords, 1)
    relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += window - 1
    relative[:, :, 1] += window - 1
    relative[:, :, 0] *= 2 * window - 1
    return relative.sum(-1)


def upstream_partition(x, window):
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window, window, C)


def upstream_reverse(windows, window, H, W):
    B = int(windows.shape[0] / (H * W / window / window))
    x = windows.view(B, H // window, W // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, H, W, -1)


def upstream_mask(side, window, shift):
    img_mask = torch.zeros((1, side, side, 1))
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    count = 0
    for h in slices:
        for w in slices:
            img_mask[:, h, w, :] = count
            count += 1
    windows = upstream_partition(img_mask, window).view(-1, window * window)
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def upstream_swin_block(block, x):
    """Upstream SwinTransformerBlock.forward for a softmax ("S") block."""
    B, L, C = x.shape
    side, window, shift, attn = block.side, block.window, block.shift, block.attn
    shortcut = x
    x = block.norm1(x).view(B, side, side, C)
    if shift:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    windows = upstream_partition(x, window).view(-1, window * window, C)
    N = window * window
    qkv = F.linear(windows, attn.qkv.weight, attn.qkv.bias).reshape(-1, N, 3, attn.heads, C // attn.heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    scores = (q * (C // attn.heads) ** -0.5) @ k.transpose(-2, -1)
    bias = attn.relative_position_bias_table[upstream_relative_index(window).view(-1)].view(N, N, -1)
    scores = scores + bias.permute(2, 0, 1).unsqueeze(0)
    if shift:
        mask = upstream_mask(side, window, shift)
        scores = scores.view(-1, mask.shape[0], attn.heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
        scores = scores.view(-1, attn.heads, N, N)
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(-1, N, C)
    out = F.linear(out, attn.proj.weight, attn.proj.bias).view(-1, window, window, C)
    x = upstream_reverse(out, window, side, side)
    if shift:
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
    x = shortcut + x.reshape(B, L, C)
    return x + block.mlp(block.norm2(x))


def upstream_repbn_eval(x, repbn):
    """BN over channels of (B, N, C) through a transpose, plus alpha * x."""
    bn = repbn.bn
    normed = F.batch_norm(x.transpose(1, 2), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return normed.transpose(1, 2) + repbn.alpha * x


# ------------------------------------------------------------------------------------------
# Building blocks against the references
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads, side", [(2, 4), (3, 7), (1, 5)])
def test_sla_matches_upstream_einsum_form(heads, side):
    torch.manual_seed(1)
    config = slab.PRESETS["tiny"].config
    dim = heads * 16
    attn = slab.SimplifiedLinearAttention(dim, heads, (side, side), config)
    with torch.no_grad():
        attn.positional_encoding.normal_(0, 0.5)
        attn.dwc.bias.normal_(0, 0.5)
        x = torch.randn(2, side * side, dim)
        expected, got = upstream_sla(x, attn, heads), attn(x)
    assert relative_error(expected, got) < 1e-5


def test_sla_normaliser_uses_authors_epsilon():
    """With ReLU zeroing every query the output is DWC(v) alone: 0 / (0 + 1e-6), no NaN."""
    config = slab.PRESETS["tiny"].config
    attn = slab.SimplifiedLinearAttention(8, 2, (2, 2), config)
    with torch.no_grad():
        attn.qkv.weight.zero_()
        attn.qkv.bias.copy_(torch.cat([-torch.ones(8), torch.ones(8), torch.ones(8)]))
        out = attn(torch.zeros(1, 4, 8))
    assert torch.isfinite(out).all()
    assert slab.SLA_EPSILON == 1e-6


@pytest.mark.parametrize("block_index", [0, 1])
def test_swin_window_block_matches_upstream_roll_and_partition(block_index):
    model = seeded(slab.PRESETS["tiny-swin"].config)
    block = model.layers[1].blocks[block_index]  # 14x14 map, 7x7 windows; block 1 is shifted
    assert (block.window, block.shift) == (7, 3 * block_index)
    if block.shift:
        assert torch.equal(block.attn_mask, upstream_mask(14, 7, 3))
    assert torch.equal(block.attn.relative_position_index, upstream_relative_index(7))
    x = torch.randn(2, 14 * 14, 32)
    with torch.no_grad():
        assert relative_error(upstream_swin_block(block, x), block(x)) < 1e-5


def test_prepbn_eval_is_repbn_and_training_follows_schedule():
    torch.manual_seed(2)
    norm = slab.LinearNorm(6, layernorm_eps=1e-6, steps=4)
    with torch.no_grad():
        norm.norm2.alpha.fill_(0.7)
        norm.norm2.bn.running_mean.normal_()
        norm.norm2.bn.running_var.uniform_(0.5, 2)
        norm.norm2.bn.weight.uniform_(0.5, 1.5)
        norm.norm1.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 6)
    norm.eval()
    with torch.no_grad():
        assert torch.allclose(norm(x), upstream_repbn_eval(x, norm.norm2), atol=1e-6)
        norm.iter.fill_(3)  # lambda = 3 / 4 mid-schedule: eval still ignores LayerNorm
        assert torch.allclose(norm(x), upstream_repbn_eval(x, norm.norm2), atol=1e-6)
    norm.train()
    with torch.no_grad():
        layer_norm = F.layer_norm(x, (6,), norm.norm1.weight, norm.norm1.bias, 1e-6)
        batch = x.transpose(1, 2)
        batch_norm = ((batch - batch.mean((0, 2), keepdim=True)) / torch.sqrt(batch.var((0, 2), unbiased=False,
                      keepdim=True) + 1e-5)).transpose(1, 2)
        repbn = batch_norm * norm.norm2.bn.weight + norm.norm2.bn.bias + 0.7 * x
        got = norm(x)
    assert torch.allclose(got, 0.75 * layer_norm + 0.25 * repbn, atol=1e-5)
    assert int(norm.iter) == 2 and int(norm.total_step) == 4


# ------------------------------------------------------------------------------------------
# Presets
# ------------------------------------------------------------------------------------------


def test_presets_are_all_there():
    expected = {"deit-t", "deit-s", "pvt-t", "swin-t", "swin-s", "cswin-t", "deit-t-prepbn", "deit-s-prepbn",
                "pvt-t-prepbn", "pvt-s-prepbn", "pvt-m-prepbn", "swin-t-prepbn", "tiny", "tiny-swin"}
    assert expected <= set(slab.PRESETS)
    assert slab.PRESETS["tiny"].small and slab.PRESETS["tiny-swin"].small
    assert not any(slab.PRESETS[name].small for name in expected - {"tiny", "tiny-swin"})


# Parameter counts derived from the upstream configs (reference §4), as stored in checkpoints.
DERIVED_MILLIONS = {"deit-t": 6.198, "deit-s": 22.99, "swin-t": 29.22, "swin-s": 50.55}


def test_every_preset_builds_with_the_derived_parameter_count():
    for name, preset in slab.PRESETS.items():
        model = slab.MODEL_CLASSES[preset.config.architecture](preset.config)  # no weight init: fast
        millions = sum(p.numel() for p in model.parameters()) / 1e6
        if name in DERIVED_MILLIONS:
            assert millions == pytest.approx(DERIVED_MILLIONS[name], abs=0.006), name
        assert slab.count_norms(model) > 0


@pytest.mark.parametrize("name", ["swin-t", pytest.param("deit-t", marks=pytest.mark.fullsize)])
def test_full_size_forward_and_fold(name):
    model = with_random_norms(seeded(slab.PRESETS[name].config))
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        logits = model(image)
        assert logits.shape == (1, 1000) and torch.isfinite(logits).all()
        assert relative_error(logits, slab.fold_repbn(model)(image)) < 1e-4


@pytest.mark.parametrize("name", TINY_PRESETS)
def test_seeded_weights_follow_the_authors_init(name):
    model = seeded(slab.PRESETS[name].config)
    linears = [module for module in model.modules() if isinstance(module, torch.nn.Linear)]
    weights = torch.cat([module.weight.flatten() for module in linears])
    assert weights.std().item() == pytest.approx(0.02, rel=0.1)
    assert all(not module.bias.any() for module in linears if module.bias is not None)
    for module in model.modules():
        if isinstance(module, slab.RepBN):
            assert torch.equal(module.alpha, torch.ones(1))
            assert not (module.bn.weight - 1).any() and not module.bn.bias.any()
            # recalibrated: the statistics are the norm's input's, not 0 and 1
            assert module.bn.running_mean.any() and (module.bn.running_var != 1).all()
        elif isinstance(module, slab.LinearNorm):
            assert module.progress == 0.0
    for parameter_name, parameter in model.named_parameters():
        if parameter_name.endswith(("positional_encoding", ".scale")):
            assert not parameter.any(), parameter_name


def test_recalibration_sets_each_norm_to_the_statistics_of_its_input():
    model = seeded(slab.PRESETS["tiny-pvt"].config)
    counters = {name: module.iter.clone() for name, module in model.named_modules()
                if isinstance(module, slab.LinearNorm)}
    norms = [module for module in model.modules() if isinstance(module, slab.RepBN)]
    inputs = {}
    hooks = [norm.register_forward_pre_hook(lambda module, args: inputs.__setitem__(module, args[0]))
             for norm in norms]
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    slab.recalibrate_repbn(model, images)
    for hook in hooks:
        hook.remove()
    assert not model.training and not any(module.training for module in model.modules())
    for norm in norms:
        tokens = inputs[norm].reshape(-1, inputs[norm].shape[-1]).double()  # (B * N, C)
        assert torch.allclose(norm.bn.running_mean.double(), tokens.mean(0), rtol=1e-5, atol=1e-6)
        assert torch.allclose(norm.bn.running_var.double(), tokens.var(0), rtol=1e-5, atol=1e-6)
        assert norm.bn.momentum == 0.1
    # the PRepBN schedule did not move (the norms ran as RepBN, the rest in eval)
    assert all(torch.equal(module.iter, counters[name]) for name, module in model.named_modules()
               if isinstance(module, slab.LinearNorm))


# ------------------------------------------------------------------------------------------
# Folding
# ------------------------------------------------------------------------------------------


def tiny_configs():
    return [pytest.param(slab.PRESETS[name].config, id=name) for name in TINY_PRESETS] + [
        pytest.param(TINY_DEIT_PREPBN, id="tiny-deit-prepbn"),
        pytest.param(replace(slab.PRESETS["tiny-swin"].config, attention="SSS", norm="repbn"), id="tiny-swin-prepbn"),
        pytest.param(replace(slab.PRESETS["tiny-pvt"].config, attention="SSSS"), id="tiny-pvt-prepbn"),
    ]


@pytest.mark.parametrize("config", tiny_configs())
def test_fold_matches_unfolded_on_random_and_sample_images(config):
    model = with_random_norms(seeded(config))
    before = {key: value.clone() for key, value in model.state_dict().items()}
    folded = slab.fold_repbn(model)
    assert slab.count_norms(model) > 0 and slab.count_norms(folded) == 0
    assert folded.folded_norms == slab.count_norms(model)
    assert not any(key.endswith(("total_step", "iter", "warm", "running_var")) for key in folded.state_dict())
    generator = torch.Generator().manual_seed(3)
    images = [torch.randn(2, 3, config.image_size, config.image_size, generator=generator)]
    images += [torch.from_numpy(image) for image in slab.sample_images(config, count=3)]
    with torch.no_grad():
        for image in images:
            assert relative_error(model(image), folded(image)) <= 1e-4
    # the reference model is untouched
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    # in float64 the fold is exact up to rounding far below float32's
    double = model.double()
    with torch.no_grad():
        assert relative_error(double(images[0].double()), slab.fold_repbn(double)(images[0].double())) < 1e-12


def test_fold_keeps_the_alpha_times_conv_bias_term_that_upstream_drops():
    """Upstream's Swin PatchEmbed.merge_bn sets bias = gamma (b - mu) / sigma + beta; the alpha * b
    term is missing. Writing that formula into our fold must show up as an error."""
    model = with_random_norms(seeded(slab.PRESETS["tiny-swin"].config))
    folded = slab.fold_repbn(model)
    image = torch.randn(1, 3, 112, 112)
    bn = model.patch_embed.norm.norm2.bn
    with torch.no_grad():
        conv_bias = model.patch_embed.proj.bias
        upstream_bias = bn.weight * (conv_bias - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) + bn.bias
        assert relative_error(model(image), folded(image)) < 1e-5
        folded.patch_embed.proj.bias.copy_(upstream_bias)
        assert relative_error(model(image), folded(image)) > 1e-3


def onnx_op_counts(module, image):
    program = torch.onnx.export(module, (image,), dynamo=True, verbose=False)
    return collections.Counter(node.op_type for node in program.model_proto.graph.node)


NORMALIZATION_OPS = ("BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
                     "Sqrt", "Pow", "ReduceSumSquare")


@pytest.mark.parametrize("name", ["tiny-swin", "tiny-pvt"])
def test_onnx_graph_has_no_normalization_after_fold(name):
    config = slab.PRESETS[name].config
    model = seeded(config)
    image = torch.randn(1, 3, config.image_size, config.image_size)
    before = onnx_op_counts(slab.FAMILY.export_spec(model, fold=False).module, image)
    after = onnx_op_counts(slab.FAMILY.export_spec(model, fold=True).module, image)
    norms = slab.count_norms(model)
    assert before["BatchNormalization"] == norms
    assert not any(after[op] for op in NORMALIZATION_OPS), after
    # The only mean left is the classifier's token pooling (a mean/variance norm needs more).
    assert after["ReduceMean"] <= 1
    assert sum(after.values()) < sum(before.values())


# ------------------------------------------------------------------------------------------
# The authors' checkpoints
# ------------------------------------------------------------------------------------------


@pytest.fixture
def yacs_cfgnode(monkeypatch):
    """yacs.config.CfgNode, or a stand-in with its pickled layout (a dict subclass carrying
    yacs' four flags in __dict__) when yacs is not installed."""
    try:
        from yacs.config import CfgNode  # type: ignore
        return CfgNode
    except ImportError:
        pass

    class CfgNode(dict):
        def __init__(self, init_dict=None):
            super().__init__(init_dict or {})
            self.__dict__.update({"__immutable__": False, "__deprecated_keys__": set(),
                                  "__renamed_keys__": {}, "__new_allowed__": False})

    package, module = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    module.CfgNode = CfgNode
    package.config = module
    monkeypatch.setitem(sys.modules, "yacs", package)
    monkeypatch.setitem(sys.modules, "yacs.config", module)
    return CfgNode


def authors_config(CfgNode, model_type, name, image_size=224, attn_type="LLLL", depths=None, embed_dim=96):
    swin = CfgNode({"PATCH_SIZE": 4, "EMBED_DIM": embed_dim, "DEPTHS": depths or [2, 2, 6, 2],
                    "NUM_HEADS": [3, 6, 12, 24], "WINDOW_SIZE": 56})
    return CfgNode({
        "DATA": CfgNode({"IMG_SIZE": image_size, "BATCH_SIZE": 128}),
        "MODEL": CfgNode({"TYPE": model_type, "NAME": name, "DROP_PATH_RATE": 0.1, "SWIN": swin,
                          "LA": CfgNode({"ATTN_TYPE": attn_type, "KERNEL_SIZE": 5, "FOCUSING_FACTOR": 3})}),
        "TRAIN": CfgNode({"EPOCHS": 300, "BASE_LR": 5e-4}),
    })


def save_authors_checkpoint(path, model, config=None, prefix=""):
    """The container of upstream's classification/utils.py save_checkpoint."""
    state = {prefix + key: value for key, value in model.state_dict().items()}
    container = {
        "model": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "weight_decay": 0.05, "params": [0, 1]}]},
        "lr_scheduler": {"last_epoch": 300},
        "max_accuracy": 74.3,
        "epoch": 299,
    }
    if config is not None:
        container["config"] = config
    torch.save(container, path)
    return path


@pytest.mark.parametrize("prefix", ["", "module."])
def test_authors_container_round_trip(tmp_path, yacs_cfgnode, prefix):
    import edgesdk

    source = seeded(slab.PRESETS["tiny-swin"].config, seed=5)
    path = save_authors_checkpoint(tmp_path / "slab_swin_tiny.pth", source,
                                   authors_config(yacs_cfgnode, "SlabSwinTransformer", "slab_swin_test", image_size=112, attn_type="LSS",
                                                  depths=[1, 2, 1], embed_dim=16), prefix)
    keys = torch.load(path, weights_only=False)["model"]
    assert any(key.endswith("norm1.total_step") for key in keys) and any(key.endswith("attn_mask") for key in keys)
    loaded = edgesdk.create_model("slab", preset="tiny-swin", checkpoint=path)
    image = torch.from_numpy(slab.sample_images(slab.PRESETS["tiny-swin"].config)[0])
    with torch.no_grad():
        assert torch.equal(source(image), loaded(image))
    assert model_info(loaded).checkpoint_sha256


def test_bare_repbn_layout_is_detected(tmp_path):
    import edgesdk

    source = seeded(replace(slab.PRESETS["tiny"].config, norm="repbn"), seed=6)
    assert any(key.endswith("norm1.alpha") for key in source.state_dict())
    path = save_authors_checkpoint(tmp_path / "deit_tiny_prepbn.pth", source)
    loaded = edgesdk.create_model("slab", preset="tiny", checkpoint=path)
    assert loaded.config.norm == "repbn"
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(source(image), loaded(image))


def cswin_authors_layout(state_dict):
    """edgesdk's CSwin keys under the authors' names (slab_cswin.py)."""
    renamed = collections.OrderedDict()
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "patch_embed":
            stage, part, rest = int(parts[1]), parts[2], parts[3:]
            if stage == 0:
                key = ".".join(["stage1_conv_embed", "0" if part == "proj" else "2"] + rest)
            else:
                key = ".".join([f"merge{stage}", "conv" if part == "proj" else "norm"] + rest)
        elif parts[0] == "blocks":
            key = ".".join([f"stage{int(parts[1]) + 1}"] + parts[2:])
        renamed[key] = value
    return renamed


def pvt_authors_layout(state_dict):
    """edgesdk's PVT keys under the authors' names (slab_pvt.py)."""
    renamed = collections.OrderedDict()
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] in ("patch_embed", "pos_embed", "blocks"):
            name = {"patch_embed": "patch_embed", "pos_embed": "pos_embed", "blocks": "block"}[parts[0]]
            key = ".".join([f"{name}{int(parts[1]) + 1}"] + parts[2:])
        renamed[key] = value
    return renamed


# Per preset: edgesdk -> authors' renaming, and keys the authors' checkpoint must hold.
AUTHORS_LAYOUTS = {
    "tiny-pvt": (pvt_authors_layout, ("patch_embed1.proj.weight", "pos_embed1", "block1.0.attn.q.weight",
                                      "patch_embed2.norm.norm2.alpha")),
    "tiny-cswin": (cswin_authors_layout, ("stage1_conv_embed.0.weight", "stage1_conv_embed.2.norm2.alpha",
                                          "merge1.conv.weight", "merge1.norm.norm2.bn.running_var",
                                          "stage1.0.qkv.weight", "stage2.0.attns.0.get_v.weight")),
}


@pytest.mark.parametrize("name", sorted(AUTHORS_LAYOUTS))
@pytest.mark.parametrize("prefix", ["", "module."])
def test_authors_stage_numbered_names_load_strictly(tmp_path, name, prefix):
    import edgesdk

    to_authors, expected_keys = AUTHORS_LAYOUTS[name]
    config = slab.PRESETS[name].config
    source = with_random_norms(seeded(config, seed=11))
    authors = to_authors(source.state_dict())
    assert set(expected_keys) <= set(authors)
    assert not any(key.startswith(("patch_embed.", "pos_embed.", "blocks.")) for key in authors)
    # The remap alone gives back edgesdk's keys, every one, and nothing else.
    remapped = slab.remap_checkpoint({prefix + key: value for key, value in authors.items()})
    assert list(remapped) == list(source.state_dict())
    path = save_authors_checkpoint(tmp_path / f"{name}.pth", source)
    container = torch.load(path, weights_only=False)
    container["model"] = {prefix + key: value for key, value in authors.items()}
    torch.save(container, path)
    loaded = edgesdk.create_model("slab", preset=name, checkpoint=path)
    image = torch.from_numpy(slab.sample_images(config)[1])
    with torch.no_grad():
        assert torch.equal(source(image), loaded(image))


def test_remap_names_keys_that_fit_no_rule():
    state = pvt_authors_layout(seeded(slab.PRESETS["tiny-pvt"].config).state_dict())
    state["block1.0.attn.gate.weight"] = torch.zeros(1)  # renamed, then refused by the strict load
    state["stage1_conv_embed.1.weight"] = torch.zeros(1)  # the Rearrange slot holds no weights
    state["merge1.reduction.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"2 keys belong to no SLAB model: "
                                              r"merge1\.reduction\.weight, stage1_conv_embed\.1\.weight"):
        slab.remap_checkpoint(state)


def test_checkpoint_of_another_preset_names_keys(tmp_path):
    import edgesdk

    path = save_authors_checkpoint(tmp_path / "pvt.pth", seeded(slab.PRESETS["tiny-pvt"].config))
    with pytest.raises(CheckpointError, match=r"missing keys: .*blocks\.0.*unexpected keys: .*patch_embed\.0"):
        edgesdk.create_model("slab", preset="tiny", checkpoint=path)
    wider = replace(slab.PRESETS["tiny"].config, embed_dims=(48,), num_heads=(3,))
    path = save_authors_checkpoint(tmp_path / "wider.pth", seeded(wider))
    with pytest.raises(CheckpointError, match=r"shape mismatches: .*\(1, 16, 48\) vs model \(1, 16, 32\)"):
        edgesdk.create_model("slab", preset="tiny", checkpoint=path)


@pytest.mark.parametrize("preset, model_type, name, extra, fits", [
    ("deit-t", "deits", "deit_small_patch16_224_linear_repbn", {}, "deit-s"),
    ("swin-t", "SlabSwinTransformer", "slab_swin_small_patch4_224", {"attn_type": "LLSS", "depths": [2, 2, 18, 2]},
     "swin-s"),
    ("pvt-t", "slab_pvt_tiny", "pvt_tiny_prepbn", {"attn_type": "SSSS"}, "pvt-t-prepbn"),
])
def test_checkpoint_config_for_another_preset_says_which_fits(tmp_path, yacs_cfgnode, preset, model_type, name,
                                                              extra, fits):
    import edgesdk

    config = authors_config(yacs_cfgnode, model_type, name, **extra)
    path = save_authors_checkpoint(tmp_path / "other.pth", seeded(slab.PRESETS["tiny"].config), config)
    with pytest.raises(CheckpointError, match=f"fits preset {fits}"):
        edgesdk.create_model("slab", preset=preset, checkpoint=path)


def test_checkpoint_trained_at_another_resolution_is_refused(tmp_path, yacs_cfgnode):
    import edgesdk

    config = authors_config(yacs_cfgnode, "deits", "deit_tiny_patch16_224_linear_repbn", image_size=384)
    path = save_authors_checkpoint(tmp_path / "deit384.pth", seeded(slab.PRESETS["tiny"].config), config)
    with pytest.raises(CheckpointError, match="384x384"):
        edgesdk.create_model("slab", preset="deit-t", checkpoint=path)


def test_foreign_keys_are_named():
    with pytest.raises(CheckpointError, match="encoder.layers.0.weight"):
        slab.remap_checkpoint({"encoder.layers.0.weight": torch.zeros(1), "head.weight": torch.zeros(1)})
    same = {"head.weight": torch.zeros(1)}
    assert slab.remap_checkpoint(same) == same
    assert list(slab.remap_checkpoint({"module.head.weight": torch.zeros(1)})) == ["head.weight"]


def test_mid_schedule_checkpoint_folds_what_eval_computes(tmp_path, caplog):
    import edgesdk

    source = with_random_norms(seeded(slab.PRESETS["tiny"].config, seed=7))
    for module in source.modules():
        if isinstance(module, slab.LinearNorm):
            module.iter.fill_(30000)  # lambda = 30000 / 60000
    path = save_authors_checkpoint(tmp_path / "mid.pth", source)
    model = edgesdk.create_model("slab", preset="tiny", checkpoint=path)
    with caplog.at_level(logging.WARNING, logger="edgesdk.models.slab"):
        spec = slab.FAMILY.export_spec(model)
    assert "mid-schedule (lambda up to 0.5000)" in caplog.text
    assert spec.metadata["extra"]["slab"]["prepbn_lambda_max"] == 0.5
    image = spec.example_inputs["image"]
    with torch.no_grad():
        # eval of a mid-schedule PRepBN is RepBN alone (the authors' eval path) ...
        norm = model.blocks[0].norm1
        tokens = torch.randn(1, 16, 32)
        assert torch.allclose(norm(tokens), upstream_repbn_eval(tokens, norm.norm2), atol=1e-6)
        # ... and the fold computes exactly that
        assert relative_error(model(image), spec.module(image)) < 1e-5


# ------------------------------------------------------------------------------------------
# Export, runtime, CLI
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_swin_bundle(tmp_path_factory):
    import edgesdk

    model = edgesdk.create_model("slab", preset="tiny-swin")
    path = tmp_path_factory.mktemp("slab") / "tiny-swin"
    result = edgesdk.export(model, path, formats=("onnx", "tflite"), random_weights=True)
    return model, path, result


def test_export_validates_on_both_formats(tiny_swin_bundle):
    model, path, result = tiny_swin_bundle
    assert result.valid
    manifest = json.loads((path / "edgesdk.json").read_text())
    facts = manifest["extra"]["slab"]
    assert facts["folded"] and facts["norms_left"] == 0 and facts["norms"] == 12
    assert facts["fold_error"]["max_relative"] < 1e-4
    assert manifest["ops"]["macs"] > 0 and manifest["frontend"]["center_crop"] == 112
    validation = json.loads((path / "validation.json").read_text())
    assert set(validation["formats"]) == {"onnx", "tflite"}
    assert all(facts["passed"] for facts in validation["formats"].values())


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_runtime_matches_the_unfolded_torch_model(tiny_swin_bundle, backend):
    import edgesdk

    model, path, _ = tiny_swin_bundle
    runtime = edgesdk.load(path, backend=backend)
    for image in slab.sample_images(model.config, count=3):
        logits = runtime.run({"image": image})["logits"]
        with torch.no_grad():
            expected = model(torch.from_numpy(image)).numpy()
        assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()


def test_cli_no_fold_keeps_norms_and_bad_image_size_exits_2(tmp_path):
    from click.testing import CliRunner

    from edgesdk.cli import cli

    runner = CliRunner()
    out = tmp_path / "unfolded"
    result = runner.invoke(cli, ["export", "slab", "--preset", "tiny", "--random-weights", "--no-fold", "--format", "onnx",
                                  "-o", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "edgesdk.json").read_text())
    facts = manifest["extra"]["slab"]
    assert facts["folded"] is False and facts["norms_left"] == facts["norms"] == 5
    result = runner.invoke(cli, ["export", "slab", "--preset", "tiny", "--random-weights", "--image-size", "48", "--format", "onnx",
                                  "-o", str(tmp_path / "bad")])
    assert result.exit_code == 2
    assert "image_size 48 does not match this model's 32" in result.output


def test_wrong_image_size_and_options_are_usage_errors():
    model = seeded(slab.PRESETS["tiny"].config)
    with pytest.raises(UsageError, match=r"shape \(batch, 3, 32, 32\), got \(1, 3, 48, 48\)"):
        model(torch.randn(1, 3, 48, 48))
    with pytest.raises(UsageError, match="got \\(3, 32, 32\\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(UsageError, match="image_size 224 does not match"):
        slab.FAMILY.export_spec(model, image_size=224)
    with pytest.raises(UsageError, match="unknown slab export options: chunk_frames"):
        slab.FAMILY.export_spec(model, chunk_frames=4)
    with pytest.raises(UsageError, match="only mode 'full'"):
        slab.FAMILY.export_spec(model, "stream")
    with pytest.raises(UsageError, match="do not tile"):
        replace(slab.PRESETS["tiny-swin"].config, image_size=96)


@pytest.mark.fullsize
@pytest.mark.parametrize("name", ["swin-t", "swin-s", "pvt-t", "cswin-t", "deit-s-prepbn", "pvt-m-prepbn"])
def test_full_size_fold_is_exact_in_float64(name):
    model = with_random_norms(seeded(slab.PRESETS[name].config)).double()
    image = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(model(image), slab.fold_repbn(model)(image)) < 1e-10


@pytest.mark.fullsize
@pytest.mark.parametrize("name", ["swin-s", "pvt-m-prepbn"])
def test_full_size_seeded_models_are_well_conditioned(name):
    """The deepest softmax stacks: their exported module in float32 stays within 2e-5 of its own
    float64 run on the sample images. Without the recalibration (norms at running mean 0 and
    variance 1) they differ by 5e-3 and 6e-2; with random norm statistics, by 7e-4 and 7e-3."""
    spec = slab.FAMILY.export_spec(seeded(slab.PRESETS[name].config))
    double = copy.deepcopy(spec.module).double()
    with torch.no_grad():
        for sample in spec.sample_inputs:
            image = torch.from_numpy(sample["image"])
            assert relative_error(double(image.double()), spec.module(image).double()) < 2e-5


@pytest.mark.fullsize
@pytest.mark.parametrize("preset", ["deit-t", "swin-t", "swin-s", "pvt-t", "cswin-t", "swin-t-prepbn", "deit-t-prepbn",
                                    "pvt-m-prepbn"])
def test_full_size_export_validates(tmp_path, preset, check_validation):
    import edgesdk

    model = edgesdk.create_model("slab", preset=preset)
    result = edgesdk.export(model, tmp_path / preset, formats=("onnx", "tflite"), random_weights=True)
    check_validation(result, ("onnx", "tflite"))
