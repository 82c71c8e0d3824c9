"""LLV-FSR (Wang et al., "LLV-FSR: Exploiting Large Language-Vision Prior for Face Super-resolution"), Sec. 3.

    F0 = extractor(I_LR);  F_i = Block_i(LVPFB_i(F_{i-1}, E_C, E_D, F_S, F_D)), i = 1..L;  I_SR = reconstructor(F_L)

Choices the paper leaves open, made in the spirit of the authors' SFMNet and WFEN (which work on the bicubic-
upsampled face and keep their features at a fraction of the HR size), all `LLVFSR` arguments:

- the face is bicubic-upsampled to HR inside the model; the one-conv extractor reads it pixel-unshuffled by
  ``body_down`` (default 4: the body works at 64x64 for a 256 px face at both x8 and x16), and the one-conv
  reconstructor writes 3 x body_down^2 channels that a pixel shuffle puts back at HR, added to the bicubic face;
- the mask (one-hot, 19 classes) and depth are encoded once by one conv each at the body resolution (F_S, F_D);
- basic block = two transformer blocks (`blocks.py`): channel attention by default, windowed attention by switch;
- width 64, 4 heads, L = 7 (paper Sec. 4.2).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from llvfsr.models.blocks import BasicBlock
from llvfsr.models.lvpfb import BRANCHES, LVPFB, ConcatFusion, one_hot_mask
from llvfsr.priors.types import NUM_MASK_CLASSES, Priors

FUSIONS = ("lvpfb", "concat", "none")


class LLVFSR(nn.Module):
    """LLV-FSR and its Table 2 / Fig. 9 ablations.

    Args:
        scale: up-scaling factor (8 or 16).
        width: feature channels.
        num_blocks: L, the number of (LVPFB, basic block) pairs.
        heads: attention heads in transformer blocks and DesA.
        transformer: "channel" or "window" (see `blocks.py`).
        window: window side for "window" attention.
        body_down: HR size / body feature size.
        text_dim: width of the CLIP text embeddings (512 for ViT-B-32).
        fusion: "lvpfb" (LLV-FSR), "concat" (Model 2) or "none" (Model 1, no priors).
        branches: the LVPFB branches kept, a subset of ("mask", "depth", "caption", "description").
        des_query: "text" (paper: description queries) or "image" (pixel queries) for DesA.
    """

    def __init__(
        self,
        scale: int = 8,
        width: int = 64,
        num_blocks: int = 7,
        heads: int = 4,
        transformer: str = "channel",
        window: int = 8,
        body_down: int = 4,
        text_dim: int = 512,
        fusion: str = "lvpfb",
        branches: tuple[str, ...] = BRANCHES,
        des_query: str = "text",
    ):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        unknown = set(branches) - set(BRANCHES)
        if unknown:
            raise ValueError(f"unknown LVPFB branches {sorted(unknown)}; valid: {BRANCHES}")
        self.scale, self.body_down, self.fusion = scale, body_down, fusion
        self.branches = () if fusion == "none" else tuple(b for b in BRANCHES if b in branches)
        d2 = body_down * body_down
        self.extractor = nn.Conv2d(3 * d2, width, 3, padding=1)
        self.mask_encoder = nn.Conv2d(NUM_MASK_CLASSES * d2, width, 3, padding=1) if "mask" in self.branches else None
        self.depth_encoder = nn.Conv2d(d2, width, 3, padding=1) if "depth" in self.branches else None
        if fusion == "lvpfb":
            self.fusions = nn.ModuleList(
                LVPFB(width, text_dim, heads, self.branches, des_query) for _ in range(num_blocks)
            )
        elif fusion == "concat":
            if set(self.branches) != set(BRANCHES):
                raise ValueError("fusion='concat' (Model 2) fuses all four priors")
            self.fusions = nn.ModuleList(ConcatFusion(width, text_dim) for _ in range(num_blocks))
        else:
            self.fusions = None
        self.blocks = nn.ModuleList(BasicBlock(width, heads, transformer, window) for _ in range(num_blocks))
        self.reconstructor = nn.Conv2d(width, 3 * d2, 3, padding=1)

    @property
    def required_priors(self) -> frozenset[str]:
        return frozenset(self.branches)

    @property
    def accepts_withheld_priors(self) -> bool:
        """Whether `Priors.withheld` can switch its priors off per face (prior dropout): the LVPFB fusion only."""
        return self.fusion == "lvpfb"

    def _check_priors(self, priors: Priors | None) -> None:
        missing = [name for name in self.branches if priors is None or getattr(priors, name) is None]
        if missing:
            raise ValueError(
                f"{getattr(self, 'registry_name', 'llvfsr')} needs priors {missing}; got "
                f"{sorted(priors.present) if priors is not None else None}"
            )

    def forward(self, lr: Tensor, priors: Priors | None = None) -> Tensor:
        """Super-resolve float RGB [B,3,h,w] in [0,1] to [B,3,h*scale,w*scale]."""
        self._check_priors(priors)
        base = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        x = self.extractor(F.pixel_unshuffle(base, self.body_down))
        mask_features = depth_features = None
        if self.mask_encoder is not None:
            one_hot = one_hot_mask(priors.mask, NUM_MASK_CLASSES, x.dtype)
            mask_features = self.mask_encoder(F.pixel_unshuffle(one_hot, self.body_down))
        if self.depth_encoder is not None:
            depth_features = self.depth_encoder(F.pixel_unshuffle(priors.depth.to(x.dtype), self.body_down))
        caption = priors.caption if "caption" in self.branches else None
        description = priors.description if "description" in self.branches else None
        keep = ()  # LVPFB's optional per-face switch of its branches (prior dropout)
        if priors is not None and priors.withheld is not None and self.fusions is not None:
            if not self.accepts_withheld_priors:
                raise ValueError(f"fusion={self.fusion!r} cannot withhold priors per face (LVPFB only)")
            keep = ((~priors.withheld).to(x.dtype),)
        features = x
        for i, block in enumerate(self.blocks):
            if self.fusions is not None:
                features = self.fusions[i](features, mask_features, depth_features, caption, description, *keep)
            features = block(features)
        residual = F.pixel_shuffle(self.reconstructor(features + x), self.body_down)
        return base + residual


def build_llvfsr(scale: int = 8, **kw) -> LLVFSR:
    return LLVFSR(scale=scale, **kw)


def build_model1(scale: int = 8, **kw) -> LLVFSR:
    return LLVFSR(scale=scale, fusion="none", **kw)


def build_model2(scale: int = 8, **kw) -> LLVFSR:
    return LLVFSR(scale=scale, fusion="concat", **kw)


def _without(prior: str):
    def factory(scale: int = 8, **kw) -> LLVFSR:
        return LLVFSR(scale=scale, branches=tuple(b for b in BRANCHES if b != prior), **kw)

    factory.__name__ = f"build_wo_{prior}"
    return factory


build_wo_mask = _without("mask")
build_wo_depth = _without("depth")
build_wo_caption = _without("caption")
build_wo_description = _without("description")
