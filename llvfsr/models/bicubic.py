"""Bicubic up-sampling as a model: the first row of Table 1, evaluated but never trained."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from llvfsr.priors.types import Priors


class Bicubic(nn.Module):
    """PIL's ``Image.resize(BICUBIC)`` of a uint8 LR face: the metric convention's up-sampler.

    The paper's Bicubic row follows SFMNet's public evaluation, which resizes uint8 images with PIL (Keys kernel,
    a = -0.5). torch's default kernel (a = -0.75) scored 0.12-0.15 dB higher on 200 MM-CelebA-HQ test faces
    (issue 15), a row the convention does not claim. PIL resamples rows first, then columns, and clips to
    [0, 255] between the passes; doing the same keeps every pixel within one grey level of PIL, also where the
    first pass overshoots (black hair, highlights). Without overshoot this equals
    ``llvfsr.data.degrade.upsample_bicubic(kernel="pil")``, which models use on float images (no clip between
    passes, as PIL's float mode).
    """

    def __init__(self, scale: int = 8):
        super().__init__()
        self.scale = scale

    def forward(self, lr: Tensor, priors: Priors | None = None) -> Tensor:
        """Float RGB [B,3,h,w] in [0,1] -> PIL-kernel bicubic [B,3,h*scale,w*scale], clamped to [0,1]."""
        h, w = lr.shape[-2:]
        # antialias=True selects a = -0.5 when up-sampling; it does not widen the kernel.
        rows = F.interpolate(lr, size=(h, w * self.scale), mode="bicubic", align_corners=False, antialias=True)
        size = (h * self.scale, w * self.scale)
        return F.interpolate(rows.clamp(0, 1), size=size, mode="bicubic", align_corners=False, antialias=True).clamp(
            0, 1
        )


def build_bicubic(scale: int = 8, **_: object) -> Bicubic:
    return Bicubic(scale)
