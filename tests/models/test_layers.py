"""Shared building blocks (edgesdk.models.layers) against independent references: torch's own
scaled_dot_product_attention, a per-window loop, an explicit conv and token raster."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgesdk.models import layers


def test_split_and_merge_heads_are_head_major_and_inverse():
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 5, 6)
    heads = layers.split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 2)
    # head h, token n holds channels 2h, 2h + 1 of token n
    assert torch.equal(heads[1, 2, 4], x[1, 4, 4:6])
    assert torch.equal(layers.merge_heads(heads), x)


def test_softmax_attention_matches_torch_sdpa_with_bias():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 4, generator=generator) for _ in range(3))
    bias = torch.randn(3, 7, 7, generator=generator)
    got = layers.softmax_attention(q, k, v, 4 ** -0.5, bias)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert torch.allclose(got, expected, atol=1e-6)


def test_window_mask_is_added_per_window():
    generator = torch.Generator().manual_seed(1)
    batch, windows, heads, tokens, d = 2, 3, 2, 4, 5
    q, k, v = (torch.randn(batch * windows, heads, tokens, d, generator=generator) for _ in range(3))
    mask = torch.where(torch.rand(windows, tokens, tokens, generator=generator) > 0.5, -100.0, 0.0)
    got = layers.softmax_attention(q, k, v, 0.5, window_mask=mask)
    for index in range(batch * windows):  # row index = image * windows + window
        expected = F.scaled_dot_product_attention(q[index], k[index], v[index], attn_mask=mask[index % windows],
                                                  scale=0.5)
        assert torch.allclose(got[index], expected, atol=1e-6)


def test_attention_module_matches_torch_multihead_attention():
    torch.manual_seed(2)
    attention = layers.Attention(8, 2).eval()
    reference = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(attention.qkv.weight)
        reference.in_proj_bias.copy_(attention.qkv.bias)
        reference.out_proj.weight.copy_(attention.proj.weight)
        reference.out_proj.bias.copy_(attention.proj.bias)
        x = torch.randn(3, 5, 8)
        assert torch.allclose(attention(x), reference(x, x, x, need_weights=False)[0], atol=1e-6)
    assert list(attention.state_dict()) == ["qkv.weight", "qkv.bias", "proj.weight", "proj.bias"]
    with pytest.raises(ValueError, match="not a multiple"):
        layers.Attention(10, 3)


def test_mlp_with_depthwise_conv_runs_the_conv_on_the_token_map():
    torch.manual_seed(3)
    mlp = layers.Mlp(4, 6, depthwise_conv=True).eval()
    x = torch.randn(2, 3 * 5, 4)  # a 3 x 5 grid, row-major
    hidden = F.linear(x, mlp.fc1.weight, mlp.fc1.bias)
    grid = hidden.reshape(2, 3, 5, 6).permute(0, 3, 1, 2)
    conv = F.conv2d(grid, mlp.dwconv.weight, mlp.dwconv.bias, padding=1, groups=6)
    expected = F.linear(F.gelu(conv.permute(0, 2, 3, 1).reshape(2, 15, 6)), mlp.fc2.weight, mlp.fc2.bias)
    with torch.no_grad():
        assert torch.allclose(mlp(x, (3, 5)), expected, atol=1e-6)
        with pytest.raises(ValueError, match="token grid"):
            mlp(x)
    plain = layers.Mlp(4, 6).eval()
    assert plain.dwconv is None and "dwconv.weight" not in plain.state_dict()


def test_patch_embed_gives_row_major_tokens_and_the_grid():
    torch.manual_seed(4)
    embed = layers.PatchEmbed(3, 8, 3, 2, padding=1, norm=torch.nn.LayerNorm(8)).eval()
    image = torch.randn(1, 3, 9, 7)
    with torch.no_grad():
        tokens, grid = embed.tokens_and_grid(image)
        conv = embed.proj(image)  # [1, 8, 5, 4]
    assert grid == (5, 4) and tokens.shape == (1, 20, 8)
    # token 4 * 2 + 3 is row 2, column 3
    expected = F.layer_norm(conv[0, :, 2, 3], (8,), embed.norm.weight, embed.norm.bias)
    assert torch.allclose(tokens[0, 2 * 4 + 3], expected, atol=1e-6)
    assert isinstance(layers.PatchEmbed(3, 8, 2, 2).norm, torch.nn.Identity)


@pytest.mark.parametrize("truncate", [True, False])
def test_init_linear_draws_std_002_and_zero_bias(truncate):
    torch.manual_seed(5)
    linear = torch.nn.Linear(256, 256)
    layers.init_linear_(linear, truncate=truncate)
    assert torch.count_nonzero(linear.bias) == 0
    assert abs(float(linear.weight.detach().std()) - 0.02) < 0.001
    conv = torch.nn.Conv2d(2, 2, 3)
    before = conv.weight.clone()
    layers.init_linear_(conv)
    assert torch.equal(conv.weight, before)
