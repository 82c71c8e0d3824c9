"""Tests for the SISN baseline (baselines/sisn.py): sizes, the official input path, split attention, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from baselines.sisn import RGB_MEAN, SISN, SplitAttentionConv, build
from llvfsr.models import build as registry_build

# Table sizes of the brief (official model, 256 px HR). The official layer list (mdswyz/SISN-Face-Hallucination
# model/sisn.py) counts 8,755,035 / 9,234,523 with its 450,560 never-used skip-conv weights; ours has exactly the
# rest (its trained MeanShift convs included).
PAPER_PARAMS = {8: 8.8e6, 16: 9.2e6}
OFFICIAL_PARAMS = {8: 8_755_035, 16: 9_234_523}
UNUSED_OFFICIAL_PARAMS = 450_560


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny(scale: int = 8, **kw) -> SISN:
    return build(scale=scale, width=8, num_groups=2, num_blocks=1, **kw)


@pytest.mark.parametrize("scale", [8, 16])
def test_paper_size_param_count_is_the_official_one_less_its_unused_convs(scale):
    """Shapes, priors and gradients at every size: tests/test_models.py (the registry's contract)."""
    n = count_params(build(scale=scale))
    assert n == OFFICIAL_PARAMS[scale] - UNUSED_OFFICIAL_PARAMS  # 8,304,475 / 8,783,963
    assert round(OFFICIAL_PARAMS[scale] / 1e6, 1) == PAPER_PARAMS[scale] / 1e6


def test_head_sees_nearest_upsample_then_space_to_depth():
    """The official input path: nearest-upsample LR to HR, then CutBlur's DownBlock (channel order: sub-pixel, RGB)."""
    torch.manual_seed(0)
    scale = 8
    model = tiny(scale).eval()
    lr = torch.rand(2, 3, 32, 32)
    seen = {}

    def keep_input(module, inputs, output):
        seen["x"] = inputs[0]

    model.head.register_forward_hook(keep_input)
    with torch.no_grad():
        model(lr)
    up = F.interpolate(lr * 255 - torch.tensor(RGB_MEAN).view(1, 3, 1, 1) * 255, scale_factor=scale, mode="nearest")
    n, c, h, w = up.shape
    reference = up.view(n, c, h // scale, scale, w // scale, scale).permute(0, 3, 5, 1, 2, 4)
    reference = reference.reshape(n, c * scale**2, h // scale, w // scale)
    torch.testing.assert_close(seen["x"], reference, rtol=0, atol=1e-4)


def reference_split_attention(module: SplitAttentionConv, x: torch.Tensor) -> torch.Tensor:
    """ResNeSt split attention written out split by split, eval-mode BatchNorm (the paper's Eq. for ISA)."""
    radix = module.radix
    y = F.conv2d(x, module.conv.weight, padding=1, groups=radix)
    bn0 = module.bn0
    y = (y - bn0.running_mean[None, :, None, None]) / torch.sqrt(bn0.running_var[None, :, None, None] + bn0.eps)
    y = F.relu(y * bn0.weight[None, :, None, None] + bn0.bias[None, :, None, None])
    splits = torch.chunk(y, radix, dim=1)
    gap = sum(splits).mean(dim=(2, 3))
    bn1 = module.bn1
    z = gap @ module.fc1.weight[:, :, 0, 0].T + module.fc1.bias
    z = F.relu((z - bn1.running_mean) / torch.sqrt(bn1.running_var + bn1.eps) * bn1.weight + bn1.bias)
    logits = z @ module.fc2.weight[:, :, 0, 0].T + module.fc2.bias
    per_split = torch.stack(torch.chunk(logits, radix, dim=1))  # [radix, B, C]
    weights = torch.softmax(per_split, dim=0)
    return sum(weights[k][:, :, None, None] * splits[k] for k in range(radix))


def test_split_attention_matches_reference():
    torch.manual_seed(0)
    module = SplitAttentionConv(16, radix=4)
    for bn in (module.bn0, module.bn1):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    module.eval()
    x = torch.randn(3, 16, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference_split_attention(module, x), rtol=1e-4, atol=1e-5)


def test_zero_tail_outputs_the_mean_colour():
    """The 0-255 working range and MeanShift: a silenced last conv gives the DIV2K mean colour in [0, 1] units."""
    model = tiny().eval()
    torch.nn.init.zeros_(model.tail[-1].weight)
    torch.nn.init.zeros_(model.tail[-1].bias)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32))
    torch.testing.assert_close(out, torch.tensor(RGB_MEAN).view(1, 3, 1, 1).expand_as(out), rtol=0, atol=1e-6)


def test_registry_builds_tiny_model_with_overrides_and_other_hr_size():
    model = registry_build("sisn", scale=16, hr_size=128, width=8, num_groups=1, num_blocks=1)
    assert isinstance(model, SISN)
    out = model.eval()(torch.rand(1, 3, 8, 8))
    assert out.shape == (1, 3, 128, 128)
    with pytest.raises(ValueError, match="expected LR"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="batch of at least 2"):
        model.train()(torch.rand(1, 3, 8, 8))


def test_tiny_model_fits_a_fixed_batch():
    torch.manual_seed(0)
    model = tiny().train()
    # A smooth face-sized image, so that the LR holds most of what the HR holds and the loss can fall.
    hr = F.interpolate(torch.rand(2, 3, 8, 8), size=256, mode="bilinear", align_corners=False)
    lr = F.interpolate(hr, scale_factor=1 / 8, mode="bicubic", antialias=True).clamp(0, 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        loss = F.l1_loss(model(lr), hr)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
