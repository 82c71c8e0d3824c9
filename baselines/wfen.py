"""WFEN baseline: wavelet-based feature enhancement network for face super-resolution (Table 1).

Paper: W. Li, H. Guo, X. Liu, K. Liang, J. Hu, Z. Ma, J. Guo, "Efficient Face Super-Resolution via Wavelet-based
Feature Enhancement Network", ACM MM 2024. Facts (widths, depths, window sizes, heads, the input and output
range, initialisation, loss, optimiser) follow the authors' code, github.com/PRIS-CV/WFEN (``models/arch/wfen.py``,
``models/arch/blocks.py``, ``models/networks.py``, ``models/wfen_model.py``, ``data/celeba_dataset.py``,
``train.sh``).

Architecture: a three-level encoder-decoder on the bicubic-upsampled LR face (mapped to [-1, 1]). Down-sampling
is a Haar wavelet transform (WFD): the low band goes down the encoder, the summed high bands come back through a
small 1x1 residual branch; up-sampling (WFU) inverts a Haar transform whose four bands are computed from the
encoder feature and the decoder feature. Every stage is built from full-domain Transformer blocks (FDT): a
regional sub-block (channel attention inside non-overlapping, optionally shifted windows) followed by a global
sub-block (multi-head channel attention over the whole map), each with Restormer's gated depth-wise-conv
feed-forward (expansion 2.66) and channel LayerNorm; depth-wise 3x3 convolutions in the q/k/v projections and
the feed-forward give the local part. Attention maps use ReLU instead of softmax, as in the official code.

Deviations from the official code, and why:
- Sizes: the official model runs at 128 px (16 -> 128 bicubic input); here at ``hr_size`` (256 by default). The
  network is fully convolutional; window sizes stay in pixels (8/4/2/1 at the four levels, as published), so
  ``hr_size`` must be divisible by 32 (8-pixel windows at 1/4 resolution). The authors published x8 only; x16 is
  the same network on an x16 bicubic input, the natural extension (the input is always the upsampled image).
- The bicubic up-sampling happens inside `forward` (project contract), with PIL's kernel (a = -0.5) as the
  official loader, but on float images (PIL resized uint8 images), clamped to [0, 1]. The [0, 1] -> [-1, 1]
  mapping of the loader and the inverse mapping of the official test script are done inside `forward`, so
  input and output are in [0, 1].
- Window shift: the official code rolls the qkv *input* by ``-w//2`` (Python: ``(-w)//2``) and the attention
  output back by ``w//2``. For even windows that is a symmetric shift; for the bottleneck's shifted 1-pixel
  windows it rolls the qkv input by -1 pixel and never back (the 3x3 depth-wise conv inside qkv then sees a
  circularly rolled map, so this is not a pure shift of the output). Here both rolls use ``w//2`` by default, so
  shifted 1-pixel windows are not shifted (a shift of a 1-pixel window is a no-op by intent); ``official_roll=True``
  (set by `llvfsr.models.load_official` for the authors' weights) reproduces the official roll. With O(1)
  activations the two differ by 0.066 at the output.
- Memory: the regional attention recomputes its per-tile [C, C] maps in the backward pass and never builds them
  for 1-pixel windows (see `window_attention`); same outputs (1e-14 in float64), 5.5 -> 3.4 GB kept for backward
  per 256 px face. What remains is inherent to the architecture at 256 px: four FDTs at full resolution, whose
  gated feed-forwards (2 x 106 hidden channels) alone keep 1.35 GB per face (4x less at the official 128 px).
- The fixed Haar filters are closed-form tensor arithmetic instead of frozen ``nn.Parameter`` convolution
  weights: same transform, but they are not counted as parameters (0.01 M in the official count).
- The attention-sharing path of the official FDT (``shared_depth > 1``) is never used by WFEN and is left out.
- Size knobs ``width`` (official 40) and ``depth`` (bottleneck FDT count, official 6) for tiny builds.

Checked once against the official code (not part of the tests, which cannot download it): with its weights
mapped onto this module and ``official_roll=True``, outputs agree to 1e-13 in float64 at 128 px; trainable
parameters are identical in number (6,780,519).

Training settings of the authors (``train.sh``, ``wfen_model.py``): L1 loss, Adam, lr 2e-4, betas (0.9, 0.99),
no learning-rate schedule (the scheduler step is commented out), batch 32, 150 epochs, conv weights initialised
N(0, 0.02) with zero bias (reproduced in `build`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from llvfsr.data.degrade import upsample_bicubic
from llvfsr.models.blocks import LayerNorm2d  # LayerNorm over channels, eps 1e-5, with bias
from llvfsr.models.official import OfficialFormat, rename


def haar_forward(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One-level 2-D Haar transform of [B, C, H, W] (H, W even) into four [B, C, H/2, W/2] bands.

    With the 2x2 block [[p, q], [r, s]]: a = (p+q+r+s)/4 (the block mean), h = (p-q+r-s)/4, v = (p+q-r-s)/4,
    d = (p-q-r+s)/4, the official filter bank divided by 4.
    """
    p, q = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    r, s = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (p + q + r + s) / 4, (p - q + r - s) / 4, (p + q - r - s) / 4, (p - q - r + s) / 4


def haar_inverse(a: Tensor, h: Tensor, v: Tensor, d: Tensor) -> Tensor:
    """Exact inverse of `haar_forward`: four [B, C, H, W] bands to [B, C, 2H, 2W]."""
    p, q = a + h + v + d, a - h + v - d
    r, s = a + h - v - d, a - h - v + d
    top = torch.stack((p, q), dim=-1).flatten(-2)  # interleave columns
    bottom = torch.stack((r, s), dim=-1).flatten(-2)
    return torch.stack((top, bottom), dim=-2).flatten(-3, -2)  # interleave rows


class GatedFeedForward(nn.Module):
    """Restormer's gated depth-wise-conv feed-forward: 1x1 up to 2 x hidden, 3x3 depth-wise, GELU gate, 1x1 down."""

    def __init__(self, channels: int, expansion: float = 2.66):
        super().__init__()
        hidden = int(channels * expansion)
        self.project_in = nn.Conv2d(channels, 2 * hidden, 1, bias=False)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=False)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(value) * gate)


def qkv_projection(channels: int) -> nn.Sequential:
    """1x1 conv to q, k, v followed by a 3x3 depth-wise conv (the "local" part of the full-domain block)."""
    return nn.Sequential(
        nn.Conv2d(channels, 3 * channels, 1, bias=False),
        nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels, bias=False),
    )


def window_attention(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor) -> Tensor:
    """``v @ relu(temperature * q^T k)`` per tile, q and k L2-normalised over channels; [B, tiles, ws*ws, C] each.

    The [C, C] map of every tile is the memory of this block: with C = 160 and 2-pixel windows at 64 px it is
    40x the size of q, k and v. For 1-pixel windows the map is the outer product of two C-vectors and
    ``relu(a * b) = relu(a) relu(b) + relu(-a) relu(-b)`` gives the same result without building it.
    """
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    if q.shape[-2] == 1:
        a, b = q * temperature, k  # [B, tiles, 1, C]
        va_pos = (v * F.relu(a)).sum(-1, keepdim=True)
        va_neg = (v * F.relu(-a)).sum(-1, keepdim=True)
        return va_pos * F.relu(b) + va_neg * F.relu(-b)
    return v @ F.relu((q.transpose(-2, -1) @ k) * temperature)


class WindowChannelAttention(nn.Module):
    """Regional attention: inside each `window` x `window` tile, a [C, C] channel-attention map (official "RSA").

    q and k are L2-normalised over channels per pixel; the map q^T k (summed over the tile's pixels) is scaled by
    a learned scalar temperature and passed through ReLU. With ``shift`` the qkv input is rolled by -window // 2
    and the attention output back by window // 2 (a no-op for 1-pixel windows). With ``official_roll`` the input
    roll is the official ``(-window) // 2``: the same for even windows, but for 1-pixel windows a one-pixel roll
    of the qkv input that is never undone (what the authors' released weights were trained with).

    In training the attention core is recomputed in the backward pass instead of keeping its [C, C] maps
    (`window_attention`): 2.1 GB of the 5.5 GB a 256 px face kept for backward, for two small matmuls more.
    """

    def __init__(self, channels: int, window: int, shift: bool, official_roll: bool = False):
        super().__init__()
        self.window = window
        self.shift = shift
        self.official_roll = official_roll
        self.temperature = nn.Parameter(torch.ones(1, 1, 1))
        self.qkv = qkv_projection(channels)
        self.project_out = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        ws = self.window
        roll_in = ((-ws) // 2 if self.official_roll else -(ws // 2)) if self.shift else 0
        roll_out = ws // 2 if self.shift else 0
        if roll_in:
            x = torch.roll(x, shifts=(roll_in, roll_in), dims=(2, 3))

        def tiles(t: Tensor) -> Tensor:  # [B, C, H, W] -> [B, tiles, ws*ws, C]
            t = t.reshape(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1)
            return t.reshape(b, (h // ws) * (w // ws), ws * ws, c)

        q, k, v = (tiles(t) for t in self.qkv(x).chunk(3, dim=1))
        if torch.is_grad_enabled() and q.requires_grad:
            out = checkpoint(window_attention, q, k, v, self.temperature, use_reentrant=False)
        else:
            out = window_attention(q, k, v, self.temperature)
        out = out.reshape(b, h // ws, w // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        if roll_out:
            out = torch.roll(out, shifts=(roll_out, roll_out), dims=(2, 3))
        return self.project_out(out)


class GlobalChannelAttention(nn.Module):
    """Global attention: multi-head transposed (channel) attention over the whole map (official "GSA").

    Per head, a [C/h, C/h] map from L2-normalised q and k rows of length H*W, a learned scalar temperature shared
    by all heads, ReLU instead of softmax; head outputs are interleaved channel-wise before the output projection.
    """

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels are not divisible by {heads} heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(1, 1, 1))
        self.qkv = qkv_projection(channels)
        self.project_out = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in self.qkv(x).chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        out = F.relu((q @ k.transpose(-2, -1)) * self.temperature) @ v  # [B, heads, C/heads, HW]
        # Official code reorders channels from (head, c) to (c, head) before projecting.
        return self.project_out(out.transpose(1, 2).reshape(b, c, h, w))


class FullDomainTransformer(nn.Module):
    """FDT: a regional (windowed) and a global channel-attention sub-block, each followed by a gated FFN.

    Each sub-block computes ``a = attn(norm1(x)); x = ffn(norm2(a + x)) + a``, the official residual wiring.
    """

    def __init__(self, channels: int, window: int, shift: bool, heads: int, expansion: float = 2.66):
        super().__init__()
        self.attentions = nn.ModuleList(
            [WindowChannelAttention(channels, window, shift), GlobalChannelAttention(channels, heads)]
        )
        self.feed_forwards = nn.ModuleList(GatedFeedForward(channels, expansion) for _ in range(2))
        self.attention_norms = nn.ModuleList(LayerNorm2d(channels) for _ in range(2))
        self.feed_forward_norms = nn.ModuleList(LayerNorm2d(channels) for _ in range(2))

    def forward(self, x: Tensor) -> Tensor:
        for attention, ffn, norm1, norm2 in zip(
            self.attentions, self.feed_forwards, self.attention_norms, self.feed_forward_norms, strict=True
        ):
            attended = attention(norm1(x))
            x = ffn(norm2(attended + x)) + attended
        return x


class WaveletDownsample(nn.Module):
    """WFD: 1x1 conv to the next width, Haar transform; returns the low band and the sum of the high bands."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, h, v, d = haar_forward(self.conv(x))
        return a, h + v + d


class WaveletUpsample(nn.Module):
    """WFU: inverse Haar transform of bands built from the encoder feature (2x size) and the decoder feature.

    As in the official code: the first band slot gets a residual conv branch of the encoder's summed high bands,
    the other three slots get a 1x1 conv of [decoder feature, encoder low band].
    """

    def __init__(self, big_channels: int, small_channels: int):
        super().__init__()
        self.high = nn.Sequential(
            nn.Conv2d(big_channels, big_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(big_channels, big_channels, 3, padding=1),
        )
        mixed = big_channels + small_channels
        self.low = nn.Sequential(nn.Conv2d(mixed, mixed, 1), nn.ReLU(), nn.Conv2d(mixed, 3 * big_channels, 1))

    def forward(self, encoder: Tensor, decoder: Tensor) -> Tensor:
        a, h, v, d = haar_forward(encoder)
        bands = self.low(torch.cat((decoder, a), dim=1)).chunk(3, dim=1)
        return haar_inverse(self.high(h + v + d), *bands)


def pointwise_residual_branch(channels: int) -> nn.Sequential:
    """1x1 conv, ReLU, 1x1 conv: carries the high bands of a WFD into the next stage."""
    return nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, channels, 1))


class WFEN(nn.Module):
    """Wavelet-based feature enhancement network on the bicubic-upsampled LR face.

    Args:
        scale: up-scaling factor (8 or 16; any positive integer works).
        width: channels at full resolution (official 40); the levels below have 2x, 4x, 4x. Divisible by 4.
        depth: FDT blocks in the bottleneck (official 6).
        official_roll: roll the qkv input of the shifted 1-pixel-window bottleneck blocks by one pixel, as the
            official code does (see `WindowChannelAttention`); on for the authors' released weights, off by
            default so models trained here keep their computation.
    """

    def __init__(self, scale: int = 8, width: int = 40, depth: int = 6, official_roll: bool = False):
        super().__init__()
        if width % 4:
            raise ValueError(f"width must be divisible by 4 (attention heads), got {width}")
        self.scale = scale
        c1, c2, c3 = width, 2 * width, 4 * width
        self.first_conv = nn.Conv2d(3, c1, 3, padding=1)

        self.encoder1 = nn.Sequential(FullDomainTransformer(c1, 8, False, 4), FullDomainTransformer(c1, 8, False, 4))
        self.down1 = WaveletDownsample(c1, c2)
        self.encoder2 = FullDomainTransformer(c2, 4, True, 4)
        self.high1 = pointwise_residual_branch(c2)
        self.down2 = WaveletDownsample(c2, c3)
        self.encoder3 = FullDomainTransformer(c3, 2, False, 8)
        self.high2 = pointwise_residual_branch(c3)
        self.down3 = WaveletDownsample(c3, c3)

        # Bottleneck: 1-pixel windows; shifts alternate on/off after the first block, as published.
        self.bottleneck = nn.Sequential(
            FullDomainTransformer(c3, 1, False, 8),
            *[FullDomainTransformer(c3, 1, i % 2 == 0, 8) for i in range(depth - 1)],
        )
        self.high3 = pointwise_residual_branch(c3)

        self.up1 = WaveletUpsample(c3, c3)
        self.decoder1 = FullDomainTransformer(c3, 8, True, 8)
        self.up2 = WaveletUpsample(c2, c3)
        self.decoder2 = FullDomainTransformer(c2, 4, False, 4)
        self.up3 = WaveletUpsample(c1, c2)
        self.decoder3 = nn.Sequential(FullDomainTransformer(c1, 2, True, 4), FullDomainTransformer(c1, 2, False, 4))
        self.out_conv = nn.Conv2d(c1, 3, 3, padding=1)
        self.set_official_roll(official_roll)

    def set_official_roll(self, enabled: bool) -> None:
        """Switch every regional attention to the official input roll (True) or the symmetric one (False)."""
        self.official_roll = enabled
        for module in self.modules():
            if isinstance(module, WindowChannelAttention):
                module.official_roll = enabled

    def forward(self, lr: Tensor, priors=None) -> Tensor:
        """Super-resolve a batch of faces.

        Args:
            lr: float32 RGB NCHW in [0, 1], [B, 3, h, w] with h*scale and w*scale divisible by 32.
            priors: ignored (WFEN uses no priors).

        Returns:
            float32 RGB NCHW [B, 3, h*scale, w*scale], nominally in [0, 1] (not clamped).
        """
        x = upsample_bicubic(lr, self.scale, kernel="pil") * 2 - 1  # the official loader normalises to [-1, 1]
        first = self.first_conv(x)

        x1 = self.encoder1(first)
        x1_low, x1_high = self.down1(x1)
        x2 = self.encoder2(x1_low) + self.high1(x1_high)
        x2_low, x2_high = self.down2(x2)
        x3 = self.encoder3(x2_low) + self.high2(x2_high)
        x3_low, x3_high = self.down3(x3)

        bottom = self.bottleneck(x3_low) + self.high3(x3_high)

        y1 = self.decoder1(self.up1(x3, bottom))
        y2 = self.decoder2(self.up2(x2, y1))
        y3 = self.decoder3(self.up3(x1, y2))
        return (self.out_conv(y3 + first) + 1) / 2


def init_official(model: nn.Module, std: float = 0.02) -> None:
    """The official initialisation: every Conv2d weight ~ N(0, std), every Conv2d bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build(scale: int = 8, hr_size: int = 256, **overrides) -> WFEN:
    """WFEN with the paper's sizes (6.8 M parameters), initialised as in the official training code.

    Args:
        scale: up-scaling factor; the LR input is ``hr_size // scale`` pixels square.
        hr_size: output size; must be divisible by ``scale`` and by 32 (8-pixel windows at 1/4 resolution).
        **overrides: `WFEN` keyword arguments: ``width``, ``depth``.
    """
    if hr_size % scale or hr_size % 32:
        raise ValueError(f"hr_size {hr_size} must be divisible by scale {scale} and by 32")
    model = WFEN(scale=scale, **overrides)
    init_official(model)
    model.hr_size = hr_size
    return model


# The authors' released weights (`llvfsr.models.load_official`): key names of github.com/PRIS-CV/WFEN
# (models/arch/wfen.py), x8 on 16 -> 128 faces.
_OFFICIAL_RULES = (
    (r"^encoder1\.", "TransformerDown1."),
    (r"^encoder2\.", "TransformerDown2.0."),
    (r"^encoder3\.", "TransformerDown3.0."),
    (r"^bottleneck\.0\.", "Transformer0."),
    (r"^bottleneck\.(\d+)\.", lambda m: f"Transformer.{int(m.group(1)) - 1}."),
    (r"^decoder1\.", "TransformerUp1.0."),
    (r"^decoder2\.", "TransformerUp2.0."),
    (r"^decoder3\.", "TransformerUp3."),
    (r"^down(\d)\.conv\.", r"HaarDownsample\1.first_conv."),
    (r"^high(\d)\.", r"RB\1."),
    (r"^up(\d)\.high\.", r"HaarFeatureFusion\1.RB."),
    (r"^up(\d)\.low\.", r"HaarFeatureFusion\1.channel_tranformation."),
    (r"\.attentions\.0\.", ".modules_att.att_0."),
    (r"\.attentions\.1\.", ".modulec_att.att_0."),
    (r"\.feed_forwards\.0\.", ".modules_ffd.ffd0."),
    (r"\.feed_forwards\.1\.", ".modulec_ffd.ffd0."),
    (r"\.attention_norms\.0\.norm\.", ".modules_norm.norm_0.body."),
    (r"\.attention_norms\.1\.norm\.", ".modulec_norm.norm_0.body."),
    (r"\.feed_forward_norms\.0\.norm\.", ".modules_norm.norm_2.body."),
    (r"\.feed_forward_norms\.1\.norm\.", ".modulec_norm.norm_2.body."),
    (r"\.qkv\.0\.", ".qkv."),
    (r"\.qkv\.1\.", ".qkv_dwconv."),
)


def official_haar_filters(channels: int) -> Tensor:
    """The official Haar filter bank as stored in its checkpoints: [4 * channels, 1, 2, 2] of +-1 (a, h, v, d)."""
    bank = torch.ones(4, 1, 2, 2)
    bank[1, 0, :, 1] = -1  # h
    bank[2, 0, 1, :] = -1  # v
    bank[3, 0, 1, 0] = bank[3, 0, 0, 1] = -1  # d
    return bank.repeat(channels, 1, 1, 1)


def _official_fixed(key: str, shape: torch.Size) -> Tensor | None:
    """The official Haar filters are frozen parameters in the checkpoint; their values are checked, not loaded."""
    return official_haar_filters(shape[0] // 4) if key.endswith("haar_weights") and len(shape) == 4 else None


def _official_prepare(model: WFEN) -> None:
    model.set_official_roll(True)


OFFICIAL = OfficialFormat(
    "wfen",
    lambda key: rename(key, _OFFICIAL_RULES),
    fixed=_official_fixed,
    release=lambda state: {"scale": 8},
    prepare=_official_prepare,
)
