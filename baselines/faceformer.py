"""FaceFormer: a Transformer path and a CNN path, aggregated, for face hallucination (Table 1 baseline).

Paper: Yuanzhi Wang, Tao Lu, Yanduo Zhang, Zhongyuan Wang, Junjun Jiang, Zixiang Xiong. "FaceFormer: Aggregating
Global and Local Representation for Face Hallucination", IEEE TCSVT 33(6):2533-2545, 2023; preprint "TANet: A new
Paradigm for Global Face Super-resolution via Transformer-CNN Aggregation Network", arXiv 2109.08174.
Code: none public. This file is a reconstruction, not a port.

What the paper fixes (its abstract; the full text could not be read from this workplace, which has no internet):
every stage has two paths on the same features, a CNN path that restores fine local detail and a "resource-friendly"
Transformer path that models long-range relations across the whole face, and their outputs are aggregated. No
facial prior is used.

What is ours (choose-and-state; verify against the paper's Sec. III / Fig. 2 when it is at hand):
- The frame is the EDSR/SISN one used by the same first author (SISN, ACM MM 2021): a 3x3 head conv on the LR face,
  a body of `num_blocks` aggregation blocks and a 3x3 conv with a global residual, a pixel-shuffle up-sampler
  (log2(s) stages of conv to 4x channels + shuffle x2) and a 3x3 conv to RGB. RGB mean subtracted on input.
- Aggregation block: local path = `num_res` residual blocks (conv3x3-ReLU-conv3x3 + skip); global path = patch
  embedding (a `patch` x `patch` stride-`patch` conv to `dim` channels), a depth-wise 3x3 conv positional encoding
  (so any LR size works, no fixed position table), `depth` pre-norm Transformer layers (multi-head self-attention
  over all patches of the face, GELU MLP), then a 1x1 conv + pixel shuffle back to the feature grid. "Resource-
  friendly" is read as attention over patches rather than pixels: 256 tokens at x8 (32x32 LR, patch 2), 64 at x16.
  The two paths are concatenated, fused by a 1x1 conv and added to the block input.
- Sizes: width 64, dim 128, 4 heads, MLP ratio 2, 2 residual blocks and 2 Transformer layers per path, 16 blocks:
  8,297,731 parameters at x8 and 8,445,443 at x16 (256 px HR), the same size class as SISN (8.8 M) and SFMNet (8.8 M)
  next to which the paper lists it. x16 differs from x8 only by one more up-sampling stage.
- Training recipe (not stated in what we could read): the same authors' SISN code's, L1 loss, Adam (0.9, 0.999),
  lr 2e-4 halved at 50k, 100k, ..., 400k steps, batch 10.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llvfsr.models.blocks import pixel_shuffle_upsampler

if TYPE_CHECKING:
    from llvfsr.priors.types import Priors

RGB_MEAN = (0.4488, 0.4371, 0.4040)

# Assumed recipe (see the module docstring): that of the same authors' SISN code.
TRAIN_DEFAULTS = {
    "loss": "l1",
    "optimizer": "adam",
    "lr": 2e-4,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "weight_decay": 0.0,
    "batch_size": 10,
    "lr_schedule": "multistep",
    "lr_milestones": tuple(k * 1000 for k in (50, 100, 150, 200, 250, 300, 350, 400)),
    "lr_gamma": 0.5,
}


class ResidualBlock(nn.Module):
    """EDSR residual block: conv3x3, ReLU, conv3x3, identity skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention over a token sequence [B, N, dim]."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor) -> Tensor:
        b, n, d = tokens.shape
        q, k, v = self.qkv(tokens).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TransformerLayer(nn.Module):
    """Pre-norm Transformer layer: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, tokens: Tensor) -> Tensor:
        tokens = tokens + self.attn(self.norm1(tokens))
        return tokens + self.mlp(self.norm2(tokens))


class GlobalPath(nn.Module):
    """Transformer path: patches of the feature map attend to every other patch of the face."""

    def __init__(self, channels: int, dim: int, depth: int, heads: int, mlp_ratio: float, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.layers = nn.ModuleList([TransformerLayer(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.unembed = nn.Sequential(nn.Conv2d(dim, channels * patch**2, 1), nn.PixelShuffle(patch))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % self.patch or x.shape[-2] % self.patch:
            raise ValueError(f"feature size {tuple(x.shape[-2:])} is not a multiple of the patch size {self.patch}")
        grid = self.embed(x)
        grid = grid + self.position(grid)
        b, d, h, w = grid.shape
        tokens = grid.flatten(2).transpose(1, 2)
        for layer in self.layers:
            tokens = layer(tokens)
        grid = self.norm(tokens).transpose(1, 2).reshape(b, d, h, w)
        return self.unembed(grid)


class AggregationBlock(nn.Module):
    """One FaceFormer stage: local CNN path and global Transformer path, concatenated, fused by 1x1, residual."""

    def __init__(
        self, channels: int, num_res: int, dim: int, depth: int, heads: int, mlp_ratio: float, patch: int
    ) -> None:
        super().__init__()
        self.local_path = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_res)])
        self.global_path = GlobalPath(channels, dim, depth, heads, mlp_ratio, patch)
        self.fuse = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fuse(torch.cat([self.local_path(x), self.global_path(x)], dim=1))


class FaceFormer(nn.Module):
    """FaceFormer, x`scale` face super-resolution, as reconstructed here (see the module docstring).

    Args:
        scale: up-scaling factor, a power of two (8 and 16 in the paper's tables).
        hr_size: HR side length; the LR side hr_size/scale must be a multiple of `patch`.
        width: CNN feature channels.
        num_blocks: aggregation blocks in the body.
        num_res: residual blocks in each local path.
        dim: token width of the Transformer path.
        depth: Transformer layers in each global path.
        heads: attention heads.
        mlp_ratio: MLP hidden width / dim.
        patch: side of the feature patch that becomes one token.
    """

    def __init__(
        self,
        scale: int = 8,
        hr_size: int = 256,
        width: int = 64,
        num_blocks: int = 16,
        num_res: int = 2,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        patch: int = 2,
    ) -> None:
        super().__init__()
        if hr_size % scale or (hr_size // scale) % patch:
            raise ValueError(f"hr_size {hr_size} must be a multiple of scale {scale} times patch {patch}")
        self.scale = scale
        self.hr_size = hr_size
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(
            *[AggregationBlock(width, num_res, dim, depth, heads, mlp_ratio, patch) for _ in range(num_blocks)],
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.tail = nn.Sequential(pixel_shuffle_upsampler(width, scale), nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, lr: Tensor, priors: Priors | None = None) -> Tensor:
        """Super-resolve a batch of faces.

        Args:
            lr: float32 RGB NCHW in [0, 1], [B, 3, hr_size/scale, hr_size/scale].
            priors: ignored (FaceFormer uses no priors); accepted for the common model interface.

        Returns:
            float32 RGB NCHW, [B, 3, h*scale, w*scale], nominally in [0, 1] (not clamped).
        """
        if lr.shape[-1] * self.scale != self.hr_size or lr.shape[-2] * self.scale != self.hr_size:
            raise ValueError(f"expected LR {self.hr_size // self.scale}px for x{self.scale}, got {tuple(lr.shape)}")
        x = self.head(lr - self.mean)
        x = self.body(x) + x
        return self.tail(x) + self.mean


def build(scale: int = 8, hr_size: int = 256, **overrides) -> FaceFormer:
    """FaceFormer with the sizes stated in the module docstring unless overridden (see `FaceFormer`)."""
    return FaceFormer(scale, hr_size, **overrides)
