"""SISN: face hallucination via split-attention in split-attention network (Table 1 baseline).

Paper: Tao Lu, Yuanzhi Wang, Yanduo Zhang, Yu Wang, Liu Wei, Zhongyuan Wang, Junjun Jiang. "Face Hallucination via
Split-Attention in Split-Attention Network", ACM Multimedia 2021 (arXiv 2010.11575).
Code read for the facts: github.com/mdswyz/SISN-Face-Hallucination (`model/sisn.py`, `model/utils/isab.py`,
`model/utils/ISA.py`, `option.py`, `solver.py`); its `ops.DownBlock` and `common.*` helpers are the CutBlur/EDSR
ones. Every line here is written anew.

Architecture (official defaults): the LR face is nearest-upsampled to HR size and folded back to LR size by
space-to-depth (3*s^2 channels), a 3x3 conv makes 64 features; the body is 10 External-internal Split Attention
Groups (ESAG) and a 3x3 conv, with a global residual; each ESAG runs 10 Internal-feature Split Attention Blocks
(ISAB, a ResNeSt bottleneck with radix 4 and BatchNorm) and a 3x3 conv, in parallel with one more ISAB on the group
input, and adds the two; the tail is EDSR's pixel-shuffle up-sampler (log2(s) stages of conv 64->256 + shuffle x2)
and a 3x3 conv to RGB. The network works on 0-255 pixel values with the DIV2K mean subtracted (EDSR's MeanShift).

Deviations from the official code, and why:
- Input and output are float RGB in [0, 1] (the library contract); they are scaled to 0-255 inside, so the weights
  see the same numbers as in the official code. The output is not clamped, so the pixel loss keeps its gradient.
- Nearest-upsample + DownBlock is computed as ``lr.repeat(1, s*s, 1, 1)``: the two are equal value by value and in
  the same channel order (the test checks it), without building the HR-size tensor.
- The official ISAB always creates a 1x1 "skip" conv but uses it only when its input and output widths differ,
  which never happens in SISN; those 110 unused convs (450,560 weights that never get a gradient) are not created
  here. MeanShift (``sub_mean`` / ``add_mean``, 1x1 convs initialised to -/+ the mean) is trained, as in the
  official code: its ``self.requires_grad = False`` sets a module attribute, not the parameters' flag. Counting
  the official layer list gives 8,755,035 (x8) / 9,234,523 (x16) parameters; this module has 8,304,475 /
  8,783,963, the same function.
- Faces need not be square: ``hr_size`` is an int, an (H, W) pair, or None for any LR size (the authors' released
  CelebA x4 model takes 44x54 faces; `llvfsr.models.load_official` sets None).
- x16 (16x16 -> 256x256): the official code takes any power-of-two scale; x16 is that code at scale 16 (a
  768-channel head conv and four up-sampling stages).
- BatchNorm in the split-attention pooled branch sees one value per channel per image, so training needs a batch
  of at least 2 (the official batch size is 10; `forward` says so instead of BatchNorm's cryptic error);
  inference works at any batch size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llvfsr.models.blocks import pixel_shuffle_upsampler
from llvfsr.models.official import OfficialFormat, rename

if TYPE_CHECKING:
    from llvfsr.priors.types import Priors

# DIV2K mean of EDSR's MeanShift, on a 0-255 scale; the official code subtracts it before the head.
RGB_MEAN = (0.4488, 0.4371, 0.4040)
PIXEL_RANGE = 255.0

# The authors' own training recipe (option.py / solver.py), for the registry's train_defaults.
TRAIN_DEFAULTS = {
    "loss": "l1",
    "optimizer": "adam",
    "lr": 2e-4,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "weight_decay": 0.0,
    "batch_size": 10,
    "max_steps": 1_000_000,
    "lr_schedule": "multistep",
    "lr_milestones": tuple(k * 1000 for k in (50, 100, 150, 200, 250, 300, 350, 400)),
    "lr_gamma": 0.5,
    "grad_clip": None,  # value clip 0.5 only when fine-tuning from a pretrained checkpoint
}


class SplitAttentionConv(nn.Module):
    """Internal-feature split attention (ResNeSt split-attention conv, cardinality 1).

    A grouped 3x3 conv makes `radix` feature splits; their sum is pooled to a channel descriptor, a two-layer 1x1
    MLP gives one logit per split and channel, a softmax over the splits weighs them, and the weighted splits sum.
    """

    def __init__(self, channels: int, radix: int = 4, reduction: int = 4, min_inter: int = 32) -> None:
        super().__init__()
        self.radix = radix
        inter = max(channels * radix // reduction, min_inter)
        self.conv = nn.Conv2d(channels, channels * radix, 3, padding=1, groups=radix, bias=False)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.fc1 = nn.Conv2d(channels, inter, 1)
        self.bn1 = nn.BatchNorm2d(inter)
        self.fc2 = nn.Conv2d(inter, channels * radix, 1)

    def forward(self, x: Tensor) -> Tensor:
        splits = F.relu(self.bn0(self.conv(x)))
        b, rc, h, w = splits.shape
        splits = splits.view(b, self.radix, rc // self.radix, h, w)
        gap = splits.sum(dim=1).mean(dim=(2, 3), keepdim=True)
        logits = self.fc2(F.relu(self.bn1(self.fc1(gap))))
        weights = torch.softmax(logits.view(b, self.radix, rc // self.radix, 1, 1), dim=1)
        return (weights * splits).sum(dim=1)


class SplitAttentionBlock(nn.Module):
    """ISAB: 1x1 conv-BN-ReLU, split-attention conv, 1x1 conv-BN, identity residual, ReLU."""

    def __init__(self, channels: int, radix: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.attend = SplitAttentionConv(channels, radix)
        self.expand = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.expand(self.attend(self.reduce(x))) + x)


class SplitAttentionGroup(nn.Module):
    """ESAG: a chain of ISABs and a 3x3 conv, plus one ISAB in parallel on the group input."""

    def __init__(self, channels: int, num_blocks: int, radix: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *[SplitAttentionBlock(channels, radix) for _ in range(num_blocks)],
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.internal = SplitAttentionBlock(channels, radix)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.internal(x)


def mean_shift(sign: int) -> nn.Conv2d:
    """EDSR's MeanShift as the official code builds it: a 1x1 conv, identity weight, bias sign * 255 * mean."""
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.copy_(sign * PIXEL_RANGE * torch.tensor(RGB_MEAN))
    return conv


class SISN(nn.Module):
    """Split-attention in split-attention network, x`scale` face super-resolution.

    Args:
        scale: up-scaling factor, a power of two (8 and 16 in the paper's tables).
        hr_size: HR size, an int (square), an (H, W) pair or None (any size); only checked against the LR input
            (the network is fully convolutional).
        width: feature channels (64).
        num_groups: ESAGs in the body (10).
        num_blocks: ISABs per ESAG (10).
        radix: feature splits per split-attention conv (4).
    """

    def __init__(
        self,
        scale: int = 8,
        hr_size: int | tuple[int, int] | None = 256,
        width: int = 64,
        num_groups: int = 10,
        num_blocks: int = 10,
        radix: int = 4,
    ) -> None:
        super().__init__()
        hr_hw = (hr_size, hr_size) if isinstance(hr_size, int) else hr_size
        if hr_hw is not None and (hr_hw[0] % scale or hr_hw[1] % scale):
            raise ValueError(f"hr_size {hr_size} is not a multiple of scale {scale}")
        self.scale = scale
        self.hr_size = hr_size
        self.hr_hw = None if hr_hw is None else tuple(hr_hw)
        self.sub_mean = mean_shift(-1)
        self.add_mean = mean_shift(+1)
        self.head = nn.Conv2d(3 * scale**2, width, 3, padding=1)
        self.body = nn.Sequential(
            *[SplitAttentionGroup(width, num_blocks, radix) for _ in range(num_groups)],
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.tail = nn.Sequential(pixel_shuffle_upsampler(width, scale), nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, lr: Tensor, priors: Priors | None = None) -> Tensor:
        """Super-resolve a batch of faces.

        Args:
            lr: float32 RGB NCHW in [0, 1], [B, 3, hr_size/scale, hr_size/scale].
            priors: ignored (SISN uses no priors); accepted for the common model interface.

        Returns:
            float32 RGB NCHW, [B, 3, h*scale, w*scale], nominally in [0, 1] (not clamped).
        """
        if self.hr_hw is not None and tuple(d * self.scale for d in lr.shape[-2:]) != self.hr_hw:
            expected = "x".join(str(d // self.scale) for d in self.hr_hw)
            raise ValueError(f"expected LR {expected}px (H x W) for x{self.scale}, got {tuple(lr.shape)}")
        if self.training and lr.shape[0] < 2:
            raise ValueError("SISN trains with BatchNorm on pooled per-image features: use a batch of at least 2")
        x = self.sub_mean(lr * PIXEL_RANGE)
        # Nearest-upsample to HR then space-to-depth by `scale` (the official input path) = s*s copies of the LR.
        x = self.head(x.repeat(1, self.scale**2, 1, 1))
        x = self.body(x) + x
        return self.add_mean(self.tail(x)) / PIXEL_RANGE


def build(scale: int = 8, hr_size: int = 256, **overrides) -> SISN:
    """SISN with the official sizes (10 groups x 10 blocks, 64 channels) unless overridden (see `SISN`)."""
    return SISN(scale, hr_size, **overrides)


# The authors' released weights (`llvfsr.models.load_official`): key names of
# github.com/mdswyz/SISN-Face-Hallucination (model/sisn.py, model/utils/isab.py, model/utils/ISA.py).
_OFFICIAL_RULES = (
    (r"^head\.", "head.1."),
    (r"\.internal\.", ".IA."),
    (r"\.reduce\.0\.", ".conv1."),
    (r"\.reduce\.1\.", ".bn1."),
    (r"\.attend\.fc1\.", ".conv2.conv1x1_1."),
    (r"\.attend\.fc2\.", ".conv2.conv1x1_2."),
    (r"\.attend\.", ".conv2."),
    (r"\.expand\.0\.", ".conv3."),
    (r"\.expand\.1\.", ".bn3."),
)


def _official_release(state) -> dict:
    """The release's scale, from its head conv (3 * scale^2 input channels)."""
    return {"scale": round((state["head.1.weight"].shape[1] / 3) ** 0.5) if "head.1.weight" in state else 4}


def _official_prepare(model: SISN) -> None:
    """The released models take faces of any size (CelebA's x4 model: 44x54)."""
    model.hr_size = model.hr_hw = None


OFFICIAL = OfficialFormat(
    "sisn",
    lambda key: rename(key, _OFFICIAL_RULES),
    unused=(r".*\.skip\.weight",),  # the ISAB's skip conv, used only when widths differ (never in SISN)
    release=_official_release,
    prepare=_official_prepare,
)
