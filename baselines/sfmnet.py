"""SFMNet baseline: spatial-frequency mutual learning for face super-resolution (Table 1).

Paper: C. Wang, J. Jiang, Z. Zhong, X. Liu, "Spatial-Frequency Mutual Learning for Face Super-Resolution",
CVPR 2023. Facts (widths, block counts, where fusion and skips happen, the input, the loss) follow the authors'
code, github.com/wcy-cs/SFMNet (``models/mynet.py``, ``models/common.py``, ``main_two.py``, ``option.py``).

Architecture: two U-shaped branches on the bicubic-upsampled LR face, each with ``levels`` down stages, a neck
and ``levels`` up stages, every stage a (resample +) block and a second "mo" block. The frequency branch uses
Fourier blocks (1x1 conv, FFT, convolutions on amplitude and phase, inverse FFT); the spatial branch uses residual
groups. After every block a fusion block lets the spatial features and the frequency features cross-attend
(channel, i.e. "transposed", attention with L2-normalised queries/keys and a learned temperature per head, as in
Restormer's MDTA), gates both by a sigmoid map and passes their sum on in the spatial branch. Both branches predict
a residual on the upsampled input; the spatial one is the output, the frequency one is trained by an auxiliary
loss (L1 + 0.01 x L1 on FFT amplitude and phase, ``main_two.py``), exposed through the side channel
``aux["frequency_output"]`` / `auxiliary_loss`.

Deviations from the official code, and why:
- Sizes: the official model runs at 128 px (16 -> 128 bicubic input); here it runs at ``hr_size`` (256 by
  default, 32 -> 256 for x8 and 16 -> 256 for x16). The network is fully convolutional, so no layer changes; the
  x16 model is the same network on an x16 bicubic input (the authors' data loader does the same for x16).
  FFT losses use ``norm="backward"`` as in the official code, so at 256 px their magnitude relative to the L1
  term is larger than at 128 px (not rescaled: we keep the authors' formula).
- The bicubic up-sampling happens inside `forward` (project contract), with PIL's kernel (a = -0.5) as the
  official loader, but on float images (PIL resized uint8 images and rounded), clamped to [0, 1].
- The official fusion block builds two attention modules but calls the first one for both directions, so the
  second one never receives a gradient. We reproduce the computation (one attention module shared by both
  directions, ``share_fusion_attention=True``) and do not build the unused module: 14 x 18,120 = 0.25 M fewer
  parameters than the official count of 8.81 M. ``share_fusion_attention=False`` gives each direction its own.
- The FFT part of the Fourier block runs in float32 with autocast disabled (cuFFT has no bf16 transform).
- The level count is a knob (``levels``, official 3); with ``levels=3`` the network is the official one.

Checked once against the official code (not part of the tests, which cannot download it): with its weights
mapped onto this module, outputs and frequency outputs agree to 2e-15 in float64 at 128 px.

The authors' released weights load through `llvfsr.models.load_official` (``OFFICIAL`` below). Their fusion block is
called as (frequency, spatial) but names its arguments (spa, fre), so its ``conv_fuse.i.fre`` conv holds the weights
of the spatial input and ``.spa`` those of the frequency input; the mapping follows what the code computes, not the
names (same shapes: a mapping by name would load strictly and compute something else).

Training settings of the authors (``main_two.py``, ``option.py``): Adam, lr 1e-4, betas (0.9, 0.99), eps 1e-8,
no weight decay, no learning-rate schedule, batch 8, 400 epochs; loss L1(out) + L1(freq out) + 0.01 x (amplitude
L1 + phase L1) on the frequency output.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llvfsr.data.degrade import upsample_bicubic
from llvfsr.models.official import OfficialFormat, rename


def at_least_float32(x: Tensor) -> Tensor:
    """`x` promoted to float32 if it is half precision (FFTs need float32 or float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def fft_amplitude_phase_loss(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """L1 distance of the 2-D FFT amplitudes and phases (``norm="backward"``) of two NCHW image batches."""
    fx = torch.fft.rfft2(at_least_float32(x), norm="backward")
    fy = torch.fft.rfft2(at_least_float32(y), norm="backward")
    return F.l1_loss(fx.abs(), fy.abs()), F.l1_loss(torch.angle(fx), torch.angle(fy))


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip and a ReLU after the sum (bias-free convolutions)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


class ResidualGroup(nn.Module):
    """`blocks` residual blocks, a conv + PReLU, and a skip scaled by a learned scalar (starts at 1)."""

    def __init__(self, width: int, blocks: int):
        super().__init__()
        self.body = nn.Sequential(
            *[ResBlock(width) for _ in range(blocks)],
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.PReLU(),
        )
        self.skip_scale = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip_scale * x


def down_sampler(width: int) -> nn.Sequential:
    """Halve the resolution: 3x3 conv, space-to-depth by 2, 1x1 conv back to `width` (no activation)."""
    return nn.Sequential(
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.PixelUnshuffle(2),
        nn.Conv2d(4 * width, width, 1, bias=False),
    )


def up_sampler(width: int) -> nn.Sequential:
    """Double the resolution: 1x1 conv to 4x channels, depth-to-space by 2, PReLU."""
    return nn.Sequential(nn.Conv2d(width, 4 * width, 1), nn.PixelShuffle(2), nn.PReLU())


class FourierBlock(nn.Module):
    """Global mixing in the Fourier domain: convolutions on the amplitude and on the phase spectrum, residual."""

    def __init__(self, width: int):
        super().__init__()
        self.pre = nn.Conv2d(width, width, 1)
        self.amplitude = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(width, width, 3, padding=1)
        )
        self.phase = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(width, width, 3, padding=1)
        )
        self.post = nn.Conv2d(width, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        with torch.autocast(device_type=x.device.type, enabled=False):
            # The 1e-8 offset keeps the phase of an all-zero map defined, as in the official code.
            spectrum = torch.fft.rfft2(self.pre(at_least_float32(x)) + 1e-8, norm="backward")
            amplitude, phase = spectrum.abs(), torch.angle(spectrum)
            amplitude = self.amplitude(amplitude) + amplitude
            phase = self.phase(phase) + phase
            # Same tiny offsets as the official block (real +2e-8, imaginary +1e-8), so outputs match it exactly.
            spectrum = torch.complex(amplitude * torch.cos(phase) + 2e-8, amplitude * torch.sin(phase) + 1e-8)
            # The official block keeps the magnitude of the (real) inverse transform.
            spatial = torch.fft.irfft2(spectrum, s=(height, width), norm="backward").abs()
        out = self.post(spatial.to(x.dtype)) + x
        # The official block replaces non-finite values; kept so that training behaves the same.
        return torch.nan_to_num(out, nan=1e-5, posinf=1e-5, neginf=1e-5)


class ChannelCrossAttention(nn.Module):
    """Transposed (channel) cross-attention: queries from `x`, keys and values from `context` (Restormer MDTA).

    Each head attends over its channels: a [C/h, C/h] map from L2-normalised query and key rows of length H*W,
    scaled by a learned per-head temperature, softmax over keys. Cost is linear in the number of pixels.
    """

    def __init__(self, width: int, heads: int = 8):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by the {heads} attention heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Sequential(
            nn.Conv2d(width, width, 1, bias=False), nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
        )
        self.kv = nn.Sequential(
            nn.Conv2d(width, 2 * width, 1, bias=False),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, groups=2 * width, bias=False),
        )
        self.project_out = nn.Conv2d(width, width, 1, bias=False)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q = self.q(x).reshape(b, self.heads, c // self.heads, h * w)
        k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in self.kv(context).chunk(2, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attention = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out((attention @ v).reshape(b, c, h, w))


class FusionBlock(nn.Module):
    """Spatial-frequency interaction: mutual cross-attention, then a sigmoid gate on each side, then their sum."""

    def __init__(self, width: int, heads: int = 8, share_attention: bool = True):
        super().__init__()
        self.spatial_in = nn.Conv2d(width, width, 3, padding=1)
        self.frequency_in = nn.Conv2d(width, width, 3, padding=1)
        self.attend_spatial = ChannelCrossAttention(width, heads)
        # The official block calls one attention module for both directions (see module docstring).
        self.attend_frequency = None if share_attention else ChannelCrossAttention(width, heads)
        self.gates = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, padding=1), nn.Conv2d(width, 2 * width, 3, padding=1), nn.Sigmoid()
        )

    def forward(self, frequency: Tensor, spatial: Tensor) -> Tensor:
        spatial = self.spatial_in(spatial)
        frequency = self.frequency_in(frequency)
        spatial = self.attend_spatial(spatial, frequency) + spatial
        attend_frequency = self.attend_spatial if self.attend_frequency is None else self.attend_frequency
        frequency = attend_frequency(frequency, spatial) + frequency
        spatial_gate, frequency_gate = self.gates(torch.cat((spatial, frequency), dim=1)).chunk(2, dim=1)
        out = spatial_gate * spatial + frequency_gate * frequency
        return torch.nan_to_num(out, nan=1e-5, posinf=1e-5, neginf=1e-5)


class SFMNet(nn.Module):
    """Spatial-frequency mutual-learning network on the bicubic-upsampled LR face.

    Args:
        scale: up-scaling factor (8 or 16; any positive integer works).
        width: feature channels of every block (official 64).
        blocks: residual blocks per residual group in the spatial branch (official 2).
        levels: down/up stages of each U-shaped branch (official 3); ``hr_size`` must be divisible by 2**levels.
        heads: attention heads of the fusion blocks (official 8).
        share_fusion_attention: one attention module for both directions of a fusion block (official code).
    """

    def __init__(
        self,
        scale: int = 8,
        width: int = 64,
        blocks: int = 2,
        levels: int = 3,
        heads: int = 8,
        share_fusion_attention: bool = True,
    ):
        super().__init__()
        self.scale = scale
        self.levels = levels
        self.aux: dict[str, Tensor] = {}
        kinds = ["down"] * levels + ["neck"] + ["up"] * levels
        resamplers = {"down": down_sampler, "up": up_sampler}

        def stage(kind: str, block: nn.Module) -> nn.Module:
            return nn.Sequential(resamplers[kind](width), block) if kind in resamplers else block

        self.frequency_head = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.PReLU())
        self.frequency_stages = nn.ModuleList(stage(kind, FourierBlock(width)) for kind in kinds)
        self.frequency_mo = nn.ModuleList(FourierBlock(width) for _ in kinds)
        self.frequency_tail = nn.Sequential(nn.Conv2d(width, 3, 3, padding=1, bias=False), nn.PReLU())

        self.spatial_head = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.PReLU())
        self.spatial_stages = nn.ModuleList(stage(kind, ResidualGroup(width, blocks)) for kind in kinds)
        self.spatial_mo = nn.ModuleList(ResidualGroup(width, blocks) for _ in kinds)
        self.spatial_tail = nn.Sequential(nn.Conv2d(width, 3, 3, padding=1, bias=False), nn.PReLU())

        self.fusions = nn.ModuleList(FusionBlock(width, heads, share_fusion_attention) for _ in range(2 * len(kinds)))

    def _skip_index(self, stage: int) -> int | None:
        """U-Net skip into stage `stage` (neck and up stages): the mirrored down stage, -1 for the head."""
        return 2 * self.levels - 1 - stage if stage >= self.levels else None

    def forward(self, lr: Tensor, priors=None) -> Tensor:
        """Super-resolve a batch of faces.

        Args:
            lr: float32 RGB NCHW in [0, 1], [B, 3, h, w] with h*scale and w*scale divisible by 2**levels.
            priors: ignored (SFMNet uses no priors).

        Returns:
            float32 RGB NCHW [B, 3, h*scale, w*scale], nominally in [0, 1] (not clamped). The frequency branch's
            own prediction is kept in ``self.aux["frequency_output"]`` for `auxiliary_loss`.
        """
        upsampled = upsample_bicubic(lr, self.scale, kernel="pil")

        # Frequency branch first: its per-stage features feed every fusion block of the spatial branch.
        x_freq = self.frequency_head(upsampled)
        freq_stage, freq_mo, feature = [], [], x_freq
        for index, (main, mo) in enumerate(zip(self.frequency_stages, self.frequency_mo, strict=True)):
            freq_stage.append(main(feature))
            feature = mo(freq_stage[-1])
            skip = self._skip_index(index)
            if skip is not None:
                feature = feature + (freq_mo[skip] if skip >= 0 else x_freq)
            freq_mo.append(feature)
        freq_out = self.frequency_tail(feature) + upsampled

        x_spatial = self.spatial_head(upsampled)
        spatial_mo, feature = [], x_spatial
        for index, (main, mo) in enumerate(zip(self.spatial_stages, self.spatial_mo, strict=True)):
            fused = self.fusions[2 * index](freq_stage[index], main(feature))
            out = mo(fused)
            skip = self._skip_index(index)
            if skip is not None:
                out = out + (spatial_mo[skip] if skip >= 0 else x_spatial)
            spatial_mo.append(out)
            feature = self.fusions[2 * index + 1](freq_mo[index], out)
        self.aux = {"frequency_output": freq_out}
        return self.spatial_tail(feature) + upsampled

    def auxiliary_loss(self, hr: Tensor, priors=None, fft_weight: float = 0.01) -> Tensor:
        """The frequency branch's loss of the official training script, on the last forward's output.

        Args:
            hr: float32 RGB NCHW ground truth in [0, 1], the size of the last output.
            priors: ignored (the targets are the HR images).
            fft_weight: weight of the FFT amplitude and phase L1 terms (official 0.01).

        Returns:
            Scalar: L1(freq_out, hr) + fft_weight * (amplitude L1 + phase L1).
        """
        if "frequency_output" not in self.aux:
            raise RuntimeError("SFMNet.auxiliary_loss needs a forward pass first (aux['frequency_output'] is unset)")
        freq_out = self.aux["frequency_output"]
        amplitude, phase = fft_amplitude_phase_loss(freq_out, hr)
        return F.l1_loss(freq_out, hr) + fft_weight * (amplitude + phase)


def build(scale: int = 8, hr_size: int = 256, **overrides) -> SFMNet:
    """SFMNet with the paper's sizes (8.56 M parameters; see the module docstring for the 0.25 M difference).

    Args:
        scale: up-scaling factor; the LR input is ``hr_size // scale`` pixels square.
        hr_size: output size; must be divisible by ``scale`` and by 2**levels.
        **overrides: `SFMNet` keyword arguments: ``width``, ``blocks``, ``levels``, ``heads``,
            ``share_fusion_attention``.
    """
    levels = overrides.get("levels", 3)
    if hr_size % scale or hr_size % 2**levels:
        raise ValueError(f"hr_size {hr_size} must be divisible by scale {scale} and by 2**levels = {2**levels}")
    model = SFMNet(scale=scale, **overrides)
    model.hr_size = hr_size
    return model


# The authors' released weights (`llvfsr.models.load_official`): key names of github.com/wcy-cs/SFMNet
# (models/mynet.py, models/common.py), x8 on 16 -> 128 faces, three levels.
_OFFICIAL_STAGES = ("down1", "down2", "down3", "neck", "up1", "up2", "up3")
_OFFICIAL_RULES = (
    # Heads and tails: ConvBNReLU2D (conv "layers", PReLU "act").
    (r"^(frequency|spatial)_(head|tail)\.0\.", r"\1_\2.0.layers."),
    (r"^(frequency|spatial)_(head|tail)\.1\.", r"\1_\2.0.act."),
    (r"^frequency_(head|tail)\.", r"\1_fre."),
    (r"^spatial_(head|tail)\.", r"\1."),
    # Down-samplers: conv, unshuffle, conv, each a ConvBNReLU2D inside DownSample's "layers".
    (r"^(\w+_stages\.[0-2])\.0\.(\d)\.", r"\1.0.layers.\2.layers."),
    # Fourier blocks.
    (r"\.pre\.", ".fpre."),
    (r"\.amplitude\.", ".amp_fuse."),
    (r"\.phase\.", ".pha_fuse."),
    # Residual groups: ResBlock convs are ConvBNReLU2D; the group's conv + PReLU is one ConvBNReLU2D.
    (r"\.body\.(\d+)\.conv1\.", r".body.\1.layers.0.layers."),
    (r"\.body\.(\d+)\.conv2\.", r".body.\1.layers.1.layers."),
    (r"\.skip_scale$", ".re_scale.scale"),
    # Fusion blocks. The official block is called as (frequency, spatial) but names its arguments (spa, fre), so
    # its "fre" conv and "fre_att" act on the spatial features and "spa" on the frequency features.
    (r"^fusions\.(\d+)\.spatial_in\.", r"conv_fuse.\1.fre."),
    (r"^fusions\.(\d+)\.frequency_in\.", r"conv_fuse.\1.spa."),
    (r"^fusions\.(\d+)\.attend_spatial\.", r"conv_fuse.\1.fre_att."),
    (r"^fusions\.(\d+)\.attend_frequency\.", r"conv_fuse.\1.spa_att."),
    (r"^fusions\.(\d+)\.gates\.", r"conv_fuse.\1.fuse."),
    (r"\.q\.0\.", ".q."),
    (r"\.q\.1\.", ".q_dwconv."),
    (r"\.kv\.0\.", ".kv."),
    (r"\.kv\.1\.", ".kv_dwconv."),
)


def _official_key(key: str) -> str:
    """Our key -> the official one (the released size: three levels, two residual blocks per group)."""
    # A residual group's closing conv (body index 2) and PReLU (3) are one official ConvBNReLU2D at index 2.
    key = re.sub(
        r"^(spatial_\w+\.\d\.(?:1\.)?body\.)([23])\.(weight|bias)$",
        lambda m: f"{m.group(1)}2.{'layers' if m.group(2) == '2' else 'act'}.{m.group(3)}",
        key,
    )
    key = rename(key, _OFFICIAL_RULES)
    match = re.match(r"^(frequency|spatial)_(stages|mo)\.(\d)\.(.*)$", key)
    if match is None:
        return key
    branch, kind, index, rest = match.groups()
    stage = _OFFICIAL_STAGES[int(index)] + ("_fre" if branch == "frequency" else "")
    if kind == "mo" or stage.startswith("neck"):
        return f"{stage}{'_mo' if kind == 'mo' else ''}.0.{rest}"
    return f"{stage}.{rest}"


OFFICIAL = OfficialFormat(
    "sfmnet",
    _official_key,
    unused=(r"conv_fuse\.\d+\.spa_att\..*",),  # built but never called by the official fusion block
    release=lambda state: {"scale": 8},
)
