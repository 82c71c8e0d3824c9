"""Depth prior from Depth Anything (V1 or V2, any transformers depth-estimation model), paper Sec. 3.3 ("DAM")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from llvfsr.priors.sources.base import ItemContext, upsample_lr
from llvfsr.priors.sources.pretrained import PretrainedSource

# The paper cites Depth Anything (V1, [35]); V2 is a --source-option away (docs/decisions.md).
DEFAULT_DEPTH_MODEL = "LiheYoung/depth-anything-small-hf"


def normalise_depth(pred: torch.Tensor, larger_is_nearer: bool = True) -> torch.Tensor:
    """Per-image min-max normalisation to [0, 1] with nearer = larger.

    Args:
        pred: float [B, H, W] raw model output.
        larger_is_nearer: True for relative inverse depth (disparity, what Depth Anything predicts); False
            for metric depth, which is flipped.

    Returns:
        float [B, H, W] in [0, 1]; a constant map becomes all zeros.
    """
    pred = pred if larger_is_nearer else -pred
    flat = pred.flatten(1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    return (pred - lo[:, None, None]) / (hi - lo).clamp_min(1e-12)[:, None, None]


class DepthAnythingDepth(PretrainedSource):
    """Depth map of each LR face: model on the HR-upsampled LR face, bicubic-resized to HR, normalised per image.

    Args:
        model_id: hub id or local folder of a depth-estimation model (V1: LiheYoung/depth-anything-small-hf,
            V2: depth-anything/Depth-Anything-V2-Small-hf, ...); used when `model` is None.
        revision: hub revision to pin.
        model: a ready depth-estimation model (tests; `processor` required too).
        processor: its image processor.
        larger_is_nearer: False for models predicting metric depth (then flipped).
        device: default CUDA when present.
        batch_size: faces per call.
    """

    kind = "depth"
    name = "depth-anything"
    model_class = "AutoModelForDepthEstimation"
    processor_class = "AutoImageProcessor"

    def __init__(
        self,
        model_id: str = DEFAULT_DEPTH_MODEL,
        revision: str | None = None,
        model: Any = None,
        processor: Any = None,
        larger_is_nearer: bool = True,
        device: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.larger_is_nearer = larger_is_nearer
        self.load(model_id, revision, model, processor, device, batch_size)

    def fingerprint(self) -> dict:
        return {**self.model_fingerprint(), "larger_is_nearer": self.larger_is_nearer, "normalise": "per_image_minmax"}

    @torch.inference_mode()
    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[np.ndarray]:
        """Depth maps, float32 [hr_size, hr_size] in [0, 1] (nearer = larger), one per LR face (uint8 [B,h,w,3])."""
        inputs = self.processor(images=upsample_lr(lr, hr_size), return_tensors="pt").to(self.device)
        pred = self.model(pixel_values=inputs["pixel_values"]).predicted_depth.float()  # [B, h', w']
        pred = F.interpolate(pred[:, None], size=(hr_size, hr_size), mode="bicubic", align_corners=False)[:, 0]
        depth = normalise_depth(pred, self.larger_is_nearer).clamp_(0.0, 1.0)
        return list(depth.cpu().numpy().astype(np.float32))
