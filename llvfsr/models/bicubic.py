"""Bicubic up-sampling as a model: the first row of Table 1, evaluated but never trained."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from llvfsr.priors.types import Priors


class Bicubic(nn.Module):
    def __init__(self, scale: int = 8):
        super().__init__()
        self.scale = scale

    def forward(self, lr: Tensor, priors: Priors | None = None) -> Tensor:
        """Float RGB [B,3,h,w] in [0,1] -> bicubic [B,3,h*scale,w*scale], clamped to [0,1]."""
        return F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False).clamp(0, 1)


def build_bicubic(scale: int = 8, **_: object) -> Bicubic:
    return Bicubic(scale)
