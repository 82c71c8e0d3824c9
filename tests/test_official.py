"""The authors' checkpoints: official key fixtures load strictly, outputs survive the mapping; WFEN's roll/memory."""

from __future__ import annotations

import torch

from baselines import wfen


def _saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd keeps for backward while `fn()` runs."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _reference_window_attention(q, k, v, temperature):
    """The official computation with the [C, C] map built explicitly."""
    q, k = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(k, dim=-1)
    return v @ torch.relu((q.transpose(-2, -1) @ k) * temperature)


def test_one_pixel_window_attention_needs_no_channel_map():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 50, 1, 16, dtype=torch.float64) for _ in range(3))
    for temperature in (torch.tensor([[[1.7]]], dtype=torch.float64), torch.tensor([[[-0.6]]], dtype=torch.float64)):
        got = wfen.window_attention(q, k, v, temperature)
        torch.testing.assert_close(got, _reference_window_attention(q, k, v, temperature), rtol=0, atol=1e-12)


def test_regional_attention_keeps_no_channel_maps_for_backward():
    torch.manual_seed(0)
    channels, size = 128, 16
    x = torch.randn(1, channels, size, size)
    for window in (1, 2):
        attention = wfen.WindowChannelAttention(channels, window, shift=False)
        saved = _saved_bytes(lambda: attention(x))  # noqa: B023
        one_map_set = (size // window) ** 2 * channels**2 * 4  # [tiles, C, C] float32: 16 / 4 MiB at window 1 / 2
        # Measured 1.26 MiB at both windows (qkv convolutions, q, k, v); 33.5 / 9.5 MiB when the maps were kept.
        assert saved < one_map_set / 2, (window, saved)


def test_checkpointed_attention_gives_the_same_gradients():
    torch.manual_seed(0)
    attention = wfen.WindowChannelAttention(8, 2, shift=True).double()
    x = torch.randn(2, 8, 8, 8, dtype=torch.float64, requires_grad=True)
    attention(x).square().sum().backward()
    got = [p.grad.clone() for p in attention.parameters()] + [x.grad.clone()]
    attention.zero_grad()
    x.grad = None
    b, c, h, w = x.shape
    rolled = torch.roll(x, shifts=(-1, -1), dims=(2, 3))
    q, k, v = (
        t.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, 4, c)
        for t in attention.qkv(rolled).chunk(3, dim=1)
    )
    out = _reference_window_attention(q, k, v, attention.temperature)
    out = out.reshape(b, h // 2, w // 2, 2, 2, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
    attention.project_out(torch.roll(out, shifts=(1, 1), dims=(2, 3))).square().sum().backward()
    expected = [p.grad for p in attention.parameters()] + [x.grad]
    for a, e in zip(got, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_official_roll_rolls_the_qkv_input_of_one_pixel_windows_only():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 8, 8)
    plain = wfen.WindowChannelAttention(8, 1, shift=True)
    official = wfen.WindowChannelAttention(8, 1, shift=True, official_roll=True)
    official.load_state_dict(plain.state_dict())
    expected = plain(torch.roll(x, shifts=(-1, -1), dims=(2, 3)))  # rolled input, output not rolled back
    torch.testing.assert_close(official(x), expected)
    assert (official(x) - plain(x)).abs().max() > 1e-2  # measured 1.1: the roll changes the output
    even_plain = wfen.WindowChannelAttention(8, 4, shift=True)
    even_official = wfen.WindowChannelAttention(8, 4, shift=True, official_roll=True)
    even_official.load_state_dict(even_plain.state_dict())
    torch.testing.assert_close(even_official(x), even_plain(x))


def test_wfen_official_roll_switch_reaches_every_regional_attention():
    model = wfen.WFEN(width=8, depth=3)
    model.set_official_roll(True)
    flags = [m.official_roll for m in model.modules() if isinstance(m, wfen.WindowChannelAttention)]
    assert flags and all(flags)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        rolled = model(x)
        model.set_official_roll(False)
        plain = model(x)
    assert (rolled - plain).abs().max() > 1e-6  # differs only through the shifted 1-pixel bottleneck block
