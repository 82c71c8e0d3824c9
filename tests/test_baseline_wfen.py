"""Tests of the WFEN baseline (baselines/wfen.py): sizes, gradients, and its blocks against references."""

import pytest
import torch
import torch.nn.functional as F

from baselines import wfen
from llvfsr.models import build

PAPER_PARAMS = 6.8e6  # LLV-FSR issue 6 table (WFEN paper: 6.8 M)
# PRIS-CV/WFEN models/arch/wfen.py WFEN(): 6,795,879 state-dict values, of which 15,360 are the fixed Haar filters
# (`haar_weights`, not trained; a function here): 6,780,519 trained parameters, at x8 and x16 alike.
EXACT_PARAMS = 6_795_879 - 15_360


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("scale", [8, 16])
def test_paper_size_parameter_count_is_the_official_one(scale):
    """Shapes, priors and gradients at every size: tests/test_models.py (the registry's contract)."""
    assert n_params(build("wfen", scale=scale)) == EXACT_PARAMS and round(EXACT_PARAMS / 1e6, 1) == PAPER_PARAMS / 1e6


def test_every_parameter_is_wired_to_the_output():
    torch.manual_seed(0)
    model = wfen.build(scale=8, hr_size=64)  # paper widths; a smaller image keeps the test fast
    # The official N(0, 0.02) init leaves the bottleneck's signal below LayerNorm's eps (some gradients are
    # exactly 0 at step 0, in the official code too), so the wiring is checked with PyTorch's default init.
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
    lr, hr = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 64, 64)
    F.l1_loss(model(lr), hr).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_official_initialisation_gives_finite_gradients():
    torch.manual_seed(0)
    model = wfen.build(scale=16, hr_size=64)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    assert all(m.bias is None or not m.bias.any() for m in convs)
    F.l1_loss(model(torch.rand(1, 3, 4, 4)), torch.rand(1, 3, 64, 64)).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_output_is_mapped_back_from_minus_one_one():
    model = wfen.build(scale=4, hr_size=32, width=8, depth=2)
    with torch.no_grad():
        model.out_conv.weight.zero_()
        model.out_conv.bias.fill_(0.2)
        out = model(torch.rand(1, 3, 8, 8))
    torch.testing.assert_close(out, torch.full_like(out, 0.6))


def test_haar_transform_matches_the_filter_bank_and_inverts_exactly():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 6)
    filters = torch.tensor([
        [[1, 1], [1, 1]],     # a
        [[1, -1], [1, -1]],   # h
        [[1, 1], [-1, -1]],   # v
        [[1, -1], [-1, 1]],   # d
    ], dtype=torch.float32).unsqueeze(1)  # fmt: skip
    reference = F.conv2d(x.reshape(6, 1, 8, 6), filters, stride=2).reshape(2, 3, 4, 4, 3) / 4
    bands = wfen.haar_forward(x)
    for index, band in enumerate(bands):
        torch.testing.assert_close(band, reference[:, :, index])
    torch.testing.assert_close(wfen.haar_inverse(*bands), x)
    torch.testing.assert_close(bands[0], F.avg_pool2d(x, 2))


def test_window_channel_attention_matches_a_per_window_reference():
    torch.manual_seed(0)
    channels, window, size = 6, 4, 8
    attention = wfen.WindowChannelAttention(channels, window, shift=True)
    with torch.no_grad():
        attention.temperature.fill_(1.7)
        x = torch.randn(1, channels, size, size)
        out = attention(x)
        rolled = torch.roll(x, shifts=(-2, -2), dims=(2, 3))
        q, k, v = attention.qkv(rolled).chunk(3, dim=1)
        mixed = torch.empty_like(v)
        for i in range(0, size, window):
            for j in range(0, size, window):
                tile = (0, slice(None), slice(i, i + window), slice(j, j + window))
                qt, kt, vt = (t[tile].reshape(channels, -1).T for t in (q, k, v))  # [pixels, C]
                qt = qt / qt.norm(dim=1, keepdim=True)
                kt = kt / kt.norm(dim=1, keepdim=True)
                weights = (qt.T @ kt * 1.7).clamp(min=0)  # [C, C]
                mixed[tile] = (vt @ weights).T.reshape(channels, window, window)
        expected = attention.project_out(torch.roll(mixed, shifts=(2, 2), dims=(2, 3)))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_shifting_one_pixel_windows_is_a_no_op():
    torch.manual_seed(0)
    shifted = wfen.WindowChannelAttention(8, 1, shift=True)
    plain = wfen.WindowChannelAttention(8, 1, shift=False)
    plain.load_state_dict(shifted.state_dict())
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(shifted(x), plain(x))


def test_global_channel_attention_matches_a_per_head_reference():
    torch.manual_seed(0)
    channels, heads = 8, 4
    attention = wfen.GlobalChannelAttention(channels, heads)
    with torch.no_grad():
        attention.temperature.fill_(2.5)
        x = torch.randn(2, channels, 5, 7)
        out = attention(x)
        q, k, v = (t.flatten(2) for t in attention.qkv(x).chunk(3, dim=1))
        per_head = channels // heads
        mixed = torch.empty_like(v)
        for b in range(2):
            for h in range(heads):
                rows = slice(h * per_head, (h + 1) * per_head)
                qn = q[b, rows] / q[b, rows].norm(dim=1, keepdim=True)
                kn = k[b, rows] / k[b, rows].norm(dim=1, keepdim=True)
                head_out = (qn @ kn.T * 2.5).clamp(min=0) @ v[b, rows]
                # Official channel order after attention: channel c of head h goes to index c * heads + h.
                for c in range(per_head):
                    mixed[b, c * heads + h] = head_out[c]
        expected = attention.project_out(mixed.view(2, channels, 5, 7))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_build_rejects_sizes_the_windows_cannot_tile():
    with pytest.raises(ValueError, match="divisible"):
        wfen.build(scale=8, hr_size=192 + 8)
    with pytest.raises(ValueError, match="divisible by 4"):
        wfen.build(scale=8, width=10)
