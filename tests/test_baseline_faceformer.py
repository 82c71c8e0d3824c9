"""Tests for the FaceFormer baseline (baselines/faceformer.py): sizes, attention, the two paths' reach, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from baselines.faceformer import AggregationBlock, FaceFormer, SelfAttention, build
from llvfsr.models import build as registry_build

# No official model exists; these are the sizes stated in the module docstring (256 px HR).
STATED_PARAMS = {8: 8_297_731, 16: 8_445_443}
TOLERANCE = 0.10


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_params(scale: int, c: int = 64, blocks: int = 16, res: int = 2, d: int = 128, depth: int = 2,
                    mlp: int = 256, patch: int = 2) -> int:  # fmt: skip
    """The layer list of the module docstring, counted by hand."""
    conv3 = lambda cin, cout: cin * cout * 9 + cout
    linear = lambda cin, cout: cin * cout + cout
    layer = 2 * (2 * d) + linear(d, 3 * d) + linear(d, d) + linear(d, mlp) + linear(mlp, d)
    global_path = (c * d * patch**2 + d) + (d * 9 + d) + depth * layer + 2 * d + linear(d, c * patch**2)
    block = res * 2 * conv3(c, c) + global_path + linear(2 * c, c)
    stages = scale.bit_length() - 1
    return conv3(3, c) + blocks * block + conv3(c, c) + stages * conv3(c, 4 * c) + conv3(c, 3)


@pytest.mark.parametrize("scale", [8, 16])
def test_paper_size_param_count_is_the_documented_layer_list(scale):
    """Shapes, priors and gradients at every size: tests/test_models.py (the registry's contract)."""
    n = count_params(build(scale=scale))
    assert n == expected_params(scale)
    assert abs(n - STATED_PARAMS[scale]) / STATED_PARAMS[scale] < TOLERANCE


def test_self_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = SelfAttention(32, heads=4)
    reference = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(ours.qkv.weight)
        reference.in_proj_bias.copy_(ours.qkv.bias)
        reference.out_proj.weight.copy_(ours.proj.weight)
        reference.out_proj.bias.copy_(ours.proj.bias)
        tokens = torch.randn(2, 50, 32)
        expected, _ = reference(tokens, tokens, tokens, need_weights=False)
        torch.testing.assert_close(ours(tokens), expected, rtol=1e-4, atol=1e-5)


def test_global_path_sees_the_whole_face_and_local_path_does_not():
    """A change at one corner of the LR features reaches the far corner only through the Transformer path."""
    torch.manual_seed(0)
    block = AggregationBlock(16, num_res=2, dim=32, depth=1, heads=4, mlp_ratio=2.0, patch=2).eval()
    x = torch.randn(1, 16, 32, 32)
    x_changed = x.clone()
    x_changed[..., 0, 0] += 1.0
    with torch.no_grad():
        local_change = (block.local_path(x_changed) - block.local_path(x))[..., -2:, -2:].abs().max()
        global_change = (block.global_path(x_changed) - block.global_path(x))[..., -2:, -2:].abs().max()
    assert local_change == 0
    assert global_change > 1e-4


def test_mean_colour_is_added_back():
    """A silenced last conv outputs the RGB mean that the head subtracted."""
    model = build(width=8, num_blocks=1, num_res=1, dim=16, depth=1, heads=2).eval()
    torch.nn.init.zeros_(model.tail[-1].weight)
    torch.nn.init.zeros_(model.tail[-1].bias)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32))
    torch.testing.assert_close(out, model.mean.expand_as(out), rtol=0, atol=0)


def test_registry_builds_tiny_model_with_overrides_and_other_hr_size():
    model = registry_build("faceformer", scale=16, hr_size=128, width=8, num_blocks=1, dim=16, depth=1, heads=2)
    assert isinstance(model, FaceFormer)
    out = model.eval()(torch.rand(1, 3, 8, 8))
    assert out.shape == (1, 3, 128, 128)
    with pytest.raises(ValueError, match="expected LR"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiple"):
        build(scale=16, hr_size=112)


def test_tiny_model_fits_a_fixed_batch():
    torch.manual_seed(0)
    model = build(width=8, num_blocks=2, num_res=1, dim=16, depth=1, heads=2).train()
    # A smooth face-sized image, so that the LR holds most of what the HR holds and the loss can fall.
    hr = F.interpolate(torch.rand(1, 3, 8, 8), size=256, mode="bilinear", align_corners=False)
    lr = F.interpolate(hr, scale_factor=1 / 8, mode="bicubic", antialias=True).clamp(0, 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = F.l1_loss(model(lr), hr)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
