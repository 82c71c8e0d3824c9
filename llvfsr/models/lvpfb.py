"""The Language-Vision Prior Fusion Block (LVPFB) and its four attentions, paper Sec. 3.2 and Fig. 3.

SegA / DepA: a structure-aware spatial attention from cascaded convolutions on the encoded mask / depth features.
CapA: global average pooling of the caption embedding, a 1x1 convolution and a sigmoid: a channel attention.
DesA: cross-attention between the description embedding and the LR features. The paper puts the queries on the
description tokens and the keys / values on the LR features, which yields one vector per *token*. To give a
spatial output, each token's result (plus its own projected text content, the usual residual on the query
stream) is written back to the pixels with the same attention weights, transposed and renormalised per pixel:
pixels a token attended to receive what that token read and says. ``des_query="image"`` switches to the usual
form (pixel queries, text keys / values).
The four results are concatenated with the LR features, fused by a 1x1 convolution, and added to the input.
A prior withheld for a face (prior dropout, `Priors.withheld`) has its branch's result zeroed for that face, so the
fusion sees what an architecture without that branch would add: nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llvfsr.priors.types import PRIOR_KINDS, TextEmbedding

BRANCHES = PRIOR_KINDS  # one branch per language-vision prior, in this order


class StructureAttention(nn.Module):
    """SegA / DepA: spatial attention map from the LR features and an encoded structure prior."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv2d(channels * 2, channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, 1, 3, padding=1),
            nn.Sigmoid(),
        )
        self.value = nn.Conv2d(channels * 2, channels, 1)

    def forward(self, x: Tensor, prior_features: Tensor) -> Tensor:
        both = torch.cat([x, prior_features], dim=1)
        return self.value(both) * self.attention(both)


def masked_mean(text: TextEmbedding) -> Tensor:
    """Average of the valid token embeddings, [B, D]."""
    weights = text.valid.to(text.tokens.dtype).unsqueeze(-1)
    return (text.tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class CaptionAttention(nn.Module):
    """CapA: global average pooling + 1x1 conv + sigmoid on the caption embedding -> channel weights."""

    def __init__(self, channels: int, text_dim: int):
        super().__init__()
        self.to_weights = nn.Sequential(nn.Conv2d(text_dim, channels, 1), nn.Sigmoid())

    def forward(self, x: Tensor, caption: TextEmbedding) -> Tensor:
        pooled = masked_mean(caption).to(x.dtype)[:, :, None, None]
        return x * self.to_weights(pooled)


class DescriptionAttention(nn.Module):
    """DesA: multi-head cross-attention between description tokens and LR features (see module docstring)."""

    def __init__(self, channels: int, text_dim: int, heads: int, query: str = "text"):
        super().__init__()
        if query not in ("text", "image"):
            raise ValueError(f"des_query must be 'text' or 'image', got {query!r}")
        self.query, self.heads = query, heads
        self.text_in = nn.Linear(text_dim, channels)
        self.norm_image = nn.LayerNorm(channels)
        self.norm_text = nn.LayerNorm(channels)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, channels)

    def _split(self, t: Tensor) -> Tensor:  # [B, N, C] -> [B, heads, N, C/heads]
        return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

    def forward(self, x: Tensor, description: TextEmbedding) -> Tensor:
        b, c, h, w = x.shape
        image = self.norm_image(x.flatten(2).transpose(1, 2))  # [B, HW, C]
        text = self.norm_text(self.text_in(description.tokens.to(x.dtype)))  # [B, T, C]
        valid = description.valid  # [B, T]
        scale = (c // self.heads) ** -0.5
        if self.query == "image":
            q, k, v = self._split(self.q(image)), self._split(self.k(text)), self._split(self.v(text))
            logits = (q @ k.transpose(-2, -1)) * scale  # [B, heads, HW, T]
            logits = logits.masked_fill(~valid[:, None, None, :], torch.finfo(logits.dtype).min)
            pixels = logits.softmax(-1) @ v  # [B, heads, HW, C/heads]
        else:
            q, k, v = self._split(self.q(text)), self._split(self.k(image)), self._split(self.v(image))
            attn = ((q @ k.transpose(-2, -1)) * scale).softmax(-1)  # [B, heads, T, HW]: each token reads the image
            attn = attn * valid[:, None, :, None].to(attn.dtype)  # padding tokens neither read nor write
            tokens = attn @ v + self._split(text)  # what each token read, plus what it says
            write = attn.transpose(-2, -1)  # [B, heads, HW, T]
            write = write / write.sum(-1, keepdim=True).clamp_min(1e-6)
            pixels = write @ tokens  # [B, heads, HW, C/heads]
        pixels = self.out(pixels.transpose(1, 2).reshape(b, h * w, c))
        return pixels.transpose(1, 2).reshape(b, c, h, w)


class LVPFB(nn.Module):
    """LVPFB with any subset of its four branches (the per-prior ablations of Fig. 9 drop a branch entirely)."""

    def __init__(self, channels: int, text_dim: int, heads: int, branches: tuple[str, ...], des_query: str = "text"):
        super().__init__()
        self.branches = tuple(b for b in BRANCHES if b in branches)
        self.seg = StructureAttention(channels) if "mask" in branches else None
        self.dep = StructureAttention(channels) if "depth" in branches else None
        self.cap = CaptionAttention(channels, text_dim) if "caption" in branches else None
        self.des = DescriptionAttention(channels, text_dim, heads, des_query) if "description" in branches else None
        self.fuse = nn.Conv2d(channels * (1 + len(self.branches)), channels, 1)

    def forward(
        self,
        x: Tensor,
        mask_features: Tensor | None,
        depth_features: Tensor | None,
        caption: TextEmbedding | None,
        description: TextEmbedding | None,
        keep: Tensor | None = None,
    ) -> Tensor:
        """`keep`: float [B, 4] in `BRANCHES` order, 1 where a face's prior is used and 0 where it is withheld."""
        parts = [x]
        branches = {"mask": (self.seg, mask_features), "depth": (self.dep, depth_features),
                    "caption": (self.cap, caption), "description": (self.des, description)}  # fmt: skip
        for name in self.branches:
            attention, prior = branches[name]
            part = attention(x, prior)
            if keep is not None:
                part = part * keep[:, BRANCHES.index(name), None, None, None]
            parts.append(part)
        return x + self.fuse(torch.cat(parts, dim=1))


class ConcatFusion(nn.Module):
    """Table 2's Model 2: the same priors fused by concatenation + convolution instead of LVPFB.

    Text embeddings are pooled, projected and broadcast over the feature map before the concatenation.
    """

    def __init__(self, channels: int, text_dim: int):
        super().__init__()
        self.caption_in = nn.Linear(text_dim, channels)
        self.description_in = nn.Linear(text_dim, channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels * 5, channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(
        self,
        x: Tensor,
        mask_features: Tensor,
        depth_features: Tensor,
        caption: TextEmbedding,
        description: TextEmbedding,
    ) -> Tensor:
        size = x.shape[-2:]
        cap = self.caption_in(masked_mean(caption).to(x.dtype))[:, :, None, None].expand(-1, -1, *size)
        des = self.description_in(masked_mean(description).to(x.dtype))[:, :, None, None].expand(-1, -1, *size)
        return x + self.fuse(torch.cat([x, mask_features, depth_features, cap, des], dim=1))


def one_hot_mask(mask: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """Label map long [B, H, W] -> one-hot float [B, classes, H, W]."""
    return F.one_hot(mask.long(), num_classes).permute(0, 3, 1, 2).to(dtype)
