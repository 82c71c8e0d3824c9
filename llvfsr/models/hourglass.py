"""Newell's hourglass recursion (Newell, Yang, Deng, ECCV 2016), shared by the FSRNet and DIC baselines.

The two differ in the residual block (FSRNet: batch-norm bottleneck; DIC: the authors' norm-free block) and in the
up-sampling (nearest vs bilinear with aligned corners), so both are arguments.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn


class Hourglass(nn.Module):
    """`depth` levels of: residual skip at this scale + (max-pool, residual, inner level, residual, up-sample).

    Args:
        depth: number of levels (the innermost holds one residual block).
        channels: feature channels, constant throughout.
        block: ``block(cin, cout)`` builds one residual block.
        upsample: ``"nearest"`` or ``"bilinear"`` (the latter with ``align_corners=True``).
    """

    def __init__(
        self, depth: int, channels: int, block: Callable[[int, int], nn.Module], upsample: str = "nearest"
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.skip = block(channels, channels)
        self.down = block(channels, channels)
        self.inner = Hourglass(depth - 1, channels, block, upsample) if depth > 1 else block(channels, channels)
        self.up = block(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        align = True if self.upsample == "bilinear" else None
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode=self.upsample, align_corners=align)
