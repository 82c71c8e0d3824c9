"""Tests of the SFMNet baseline (baselines/sfmnet.py): sizes, gradients, and its blocks against references."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from baselines import sfmnet
from llvfsr.data.degrade import upsample_bicubic
from llvfsr.models import build
from llvfsr.priors.types import Priors

PAPER_PARAMS = 8.8e6  # LLV-FSR issue 6 table; the official code's count is 8.80 M
OFFICIAL_PARAMS = 8_799_622  # wcy-cs/SFMNet models/mynet.py TwoBranch at the option.py defaults (x8)
SHARED_PARAMS = 8_545_942  # ours by default: one fusion attention shared, 14 fewer ChannelCrossAttention(64, 8)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("scale", [8])
def test_paper_model_starts_near_its_bicubic_input(scale):
    """Shapes, priors and gradients at x8 and x16: tests/test_models.py (the registry's contract)."""
    torch.manual_seed(0)
    model = build("sfmnet", scale=scale).eval()
    lr = torch.rand(1, 3, 256 // scale, 256 // scale)
    with torch.no_grad():
        out = model(lr)
    assert out.shape == (1, 3, 256, 256)
    assert torch.isfinite(out).all()
    assert n_params(model) == SHARED_PARAMS
    # The network predicts a residual on the bicubic input: at initialisation the output stays near it.
    assert (out - upsample_bicubic(lr, scale)).abs().mean() < 0.2


def test_unshared_fusion_attention_gives_the_official_parameter_count():
    shared = sfmnet.build(scale=8)
    unshared = sfmnet.build(scale=8, share_fusion_attention=False)
    one_attention = n_params(sfmnet.ChannelCrossAttention(64, 8))
    assert n_params(unshared) - n_params(shared) == 14 * one_attention
    assert n_params(unshared) == OFFICIAL_PARAMS and round(OFFICIAL_PARAMS / 1e6, 1) == PAPER_PARAMS / 1e6


def test_every_parameter_gets_a_finite_nonzero_gradient():
    torch.manual_seed(0)
    model = sfmnet.build(scale=8, hr_size=64)  # paper widths; a smaller image keeps the test fast
    lr, hr = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 64, 64)
    loss = F.l1_loss(model(lr), hr) + model.auxiliary_loss(hr)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def pil_bicubic(images: torch.Tensor, size: int) -> torch.Tensor:
    """PIL's float ("F" mode) bicubic resize of every channel, the official loaders' kernel, clamped to [0, 1]."""
    out = [
        np.asarray(Image.fromarray(channel.numpy(), mode="F").resize((size, size), Image.BICUBIC))
        for channel in images.reshape(-1, *images.shape[-2:])
    ]
    return torch.from_numpy(np.stack(out)).reshape(*images.shape[:2], size, size).clamp(0, 1)


def test_zero_tails_return_the_bicubic_input():
    torch.manual_seed(0)
    model = sfmnet.build(scale=4, hr_size=32, width=16, blocks=1)
    with torch.no_grad():
        model.spatial_tail[0].weight.zero_()
        model.frequency_tail[0].weight.zero_()
        lr = torch.rand(2, 3, 8, 8)
        out = model(lr)
    bicubic = pil_bicubic(lr, 32)
    torch.testing.assert_close(out, bicubic, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.aux["frequency_output"], bicubic, atol=1e-5, rtol=0)


def test_fourier_block_with_identity_convolutions_inverts_the_fft():
    torch.manual_seed(0)
    block = sfmnet.FourierBlock(4)
    with torch.no_grad():
        for conv in (block.pre, block.post):
            conv.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
            conv.bias.zero_()
        for branch in (block.amplitude, block.phase):
            branch[2].weight.zero_()
            branch[2].bias.zero_()
        x = torch.randn(2, 4, 12, 10)
        out = block(x)
    # Spectrum untouched -> inverse FFT gives back pre(x); the block keeps its magnitude and adds the skip.
    torch.testing.assert_close(out, x.abs() + x, atol=1e-5, rtol=1e-5)


def test_channel_cross_attention_matches_a_per_head_reference():
    torch.manual_seed(0)
    heads, width = 4, 16
    attention = sfmnet.ChannelCrossAttention(width, heads)
    with torch.no_grad():
        attention.temperature.copy_(torch.rand(heads, 1, 1) * 3 + 0.5)
        x, context = torch.randn(2, width, 6, 5), torch.randn(2, width, 6, 5)
        out = attention(x, context)
        q = attention.q(x).flatten(2)
        k, v = (t.flatten(2) for t in attention.kv(context).chunk(2, dim=1))
        per_head = width // heads
        expected = torch.empty_like(q)
        for b in range(2):
            for h in range(heads):
                rows = slice(h * per_head, (h + 1) * per_head)
                qn = q[b, rows] / q[b, rows].norm(dim=1, keepdim=True)
                kn = k[b, rows] / k[b, rows].norm(dim=1, keepdim=True)
                logits = (qn @ kn.T) * attention.temperature[h]
                weights = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
                expected[b, rows] = weights @ v[b, rows]
        expected = attention.project_out(expected.view(2, width, 6, 5))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_auxiliary_loss_matches_a_numpy_reference():
    torch.manual_seed(0)
    model = sfmnet.build(scale=4, hr_size=32, width=16, blocks=1)
    with pytest.raises(RuntimeError, match="forward"):
        model.auxiliary_loss(torch.rand(1, 3, 32, 32))
    hr = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        model(torch.rand(1, 3, 8, 8))
        loss = model.auxiliary_loss(hr, priors=None).item()
    freq_out = model.aux["frequency_output"].double().numpy()
    target = hr.double().numpy()
    fx, fy = np.fft.rfft2(freq_out), np.fft.rfft2(target)
    expected = np.abs(freq_out - target).mean() + 0.01 * (
        np.abs(np.abs(fx) - np.abs(fy)).mean() + np.abs(np.angle(fx) - np.angle(fy)).mean()
    )
    assert loss == pytest.approx(expected, rel=1e-4)


def test_priors_are_ignored():
    torch.manual_seed(0)
    model = sfmnet.build(scale=4, hr_size=32, width=16, blocks=1).eval()
    lr = torch.rand(1, 3, 8, 8)
    priors = Priors(depth=torch.rand(1, 1, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(model(lr, priors), model(lr))


def test_build_rejects_sizes_the_u_net_cannot_halve():
    with pytest.raises(ValueError, match="divisible"):
        sfmnet.build(scale=8, hr_size=100)
    with pytest.raises(ValueError, match="divisible"):
        sfmnet.build(scale=3, hr_size=32)
