"""Transformer blocks for LLV-FSR's basic block (paper Sec. 4.2: "two cascaded transformer blocks").

The paper does not name the transformer. Two kinds are offered, both linear in the number of pixels so they run at
the feature resolution of a 256 px face:

- ``channel``: transposed (channel) self-attention with a gated depth-wise feed-forward network, as in Restormer
  (Zamir et al., CVPR 2022), the block family the authors' WFEN builds on;
- ``window``: windowed multi-head self-attention with shifted windows on every second block (Swin, Liu et al., ICCV
  2021), the family of SFMNet's and FaceFormer's transformer branches.

The pieces more than one model uses live here too: `LayerNorm2d` (also WFEN) and EDSR's `pixel_shuffle_upsampler`
(SISN and FaceFormer).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    """LayerNorm over channels of an NCHW tensor."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GatedFeedForward(nn.Module):
    """Gated depth-wise conv feed-forward network (Restormer's GDFN)."""

    def __init__(self, channels: int, expansion: float = 2.0):
        super().__init__()
        hidden = int(channels * expansion)
        self.project_in = nn.Conv2d(channels, hidden * 2, 1)
        self.depthwise = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2)
        self.project_out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.depthwise(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class ChannelAttention(nn.Module):
    """Multi-head transposed attention: a C x C attention map per head, cost linear in H*W (Restormer's MDTA)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, channels * 3, 1)
        self.qkv_dw = nn.Conv2d(channels * 3, channels * 3, 3, padding=1, groups=channels * 3)
        self.project_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows, optionally shifted by half a window (Swin)."""

    def __init__(self, channels: int, heads: int, window: int, shift: bool):
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.qkv = nn.Linear(channels, channels * 3)
        self.project_out = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        win = min(self.window, h, w)
        pad_h, pad_w = (-h) % win, (-w) % win
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if pad_h < h and pad_w < w else "constant")
        hp, wp = x.shape[-2:]
        offset = win // 2 if self.shift and min(hp, wp) > win else 0
        if offset:
            x = torch.roll(x, shifts=(-offset, -offset), dims=(2, 3))
        # [B, C, Hp, Wp] -> [B * windows, win*win, C]
        tokens = x.reshape(b, c, hp // win, win, wp // win, win).permute(0, 2, 4, 3, 5, 1).reshape(-1, win * win, c)
        q, k, v = (
            self.qkv(tokens).reshape(tokens.shape[0], win * win, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        )
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(tokens.shape[0], win * win, c)
        out = self.project_out(out).reshape(b, hp // win, wp // win, win, win, c).permute(0, 5, 1, 3, 2, 4)
        out = out.reshape(b, c, hp, wp)
        if offset:
            out = torch.roll(out, shifts=(offset, offset), dims=(2, 3))
        return out[:, :, :h, :w]


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + FFN(norm(x))."""

    def __init__(self, channels: int, heads: int, kind: str = "channel", window: int = 8, shift: bool = False):
        super().__init__()
        self.norm1, self.norm2 = LayerNorm2d(channels), LayerNorm2d(channels)
        if kind == "channel":
            self.attn = ChannelAttention(channels, heads)
        elif kind == "window":
            self.attn = WindowAttention(channels, heads, window, shift)
        else:
            raise ValueError(f"transformer kind must be 'channel' or 'window', got {kind!r}")
        self.ffn = GatedFeedForward(channels)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class BasicBlock(nn.Module):
    """LLV-FSR's basic block: two cascaded transformer blocks (paper Sec. 4.2)."""

    def __init__(self, channels: int, heads: int, kind: str = "channel", window: int = 8):
        super().__init__()
        self.blocks = nn.Sequential(
            TransformerBlock(channels, heads, kind, window, shift=False),
            TransformerBlock(channels, heads, kind, window, shift=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


def pixel_shuffle_upsampler(channels: int, scale: int) -> nn.Sequential:
    """EDSR's up-sampler for a power-of-two scale: log2(scale) stages of conv to 4x channels + pixel shuffle x2."""
    stages = int(math.log2(scale))
    if 2**stages != scale:
        raise ValueError(f"scale must be a power of two, got {scale}")
    layers: list[nn.Module] = []
    for _ in range(stages):
        layers += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)
