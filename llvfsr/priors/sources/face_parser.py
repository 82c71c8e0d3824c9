"""Mask prior from a transformers semantic-segmentation face parser (e.g. SegFormer trained on CelebAMask-HQ)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from llvfsr.priors.sources.base import ItemContext, upsample_lr
from llvfsr.priors.sources.pretrained import PretrainedSource
from llvfsr.priors.types import MASK_CLASSES

DEFAULT_FACE_PARSER = "jonathandinu/face-parsing"

# Spellings other face parsers use for CelebAMask-HQ's classes, normalised (lowercase, '_' for separators).
_LABEL_ALIASES: dict[str, str] = {
    "bg": "background", "face": "skin", "eyeglass": "eye_g", "eyeglasses": "eye_g", "glasses": "eye_g",
    "left_eye": "l_eye", "right_eye": "r_eye", "left_brow": "l_brow", "right_brow": "r_brow",
    "left_eyebrow": "l_brow", "right_eyebrow": "r_brow", "left_ear": "l_ear", "right_ear": "r_ear",
    "inner_mouth": "mouth", "upper_lip": "u_lip", "lower_lip": "l_lip", "earring": "ear_r", "earrings": "ear_r",
    "necklace": "neck_l", "clothes": "cloth", "clothing": "cloth",
}  # fmt: skip


def _normalise_label(name: str) -> str:
    key = re.sub(r"[\s\-\.]+", "_", name.strip().lower())
    return _LABEL_ALIASES.get(key, key)


def label_lookup(id2label: Mapping[int | str, str]) -> np.ndarray:
    """A table from the parser's class ids to `MASK_CLASSES` ids, matched by class name.

    Raises:
        ValueError: a parser class that has no CelebAMask-HQ counterpart (named in the message).
    """
    ours = {name: i for i, name in enumerate(MASK_CLASSES)}
    table = np.zeros(max(int(k) for k in id2label) + 1, dtype=np.uint8)
    unknown = []
    for key, name in id2label.items():
        norm = _normalise_label(name)
        if norm not in ours:
            unknown.append(name)
        else:
            table[int(key)] = ours[norm]
    if unknown:
        raise ValueError(f"face parser classes {unknown} have no CelebAMask-HQ counterpart; known: {MASK_CLASSES}")
    return table


class FaceParserMask(PretrainedSource):
    """Semantic mask of each LR face from a segmentation model whose classes are CelebAMask-HQ's 19.

    The LR face is bicubic-upsampled to HR, run through the processor and model, the logits are resized
    bilinearly to HR and arg-maxed, and the parser's ids are mapped to `MASK_CLASSES` ids by name.

    Args:
        model_id: hub id or local folder (used when `model` is None).
        revision: hub revision (branch, tag or commit) to pin.
        model: a ready `*ForSemanticSegmentation` model (tests; then `processor` is required too).
        processor: the matching image processor.
        device: "cuda", "cpu", ...; default CUDA when present.
        batch_size: faces per call.
    """

    kind = "mask"
    name = "face-parser"
    model_class = "AutoModelForSemanticSegmentation"
    processor_class = "AutoImageProcessor"

    def __init__(
        self,
        model_id: str = DEFAULT_FACE_PARSER,
        revision: str | None = None,
        model: Any = None,
        processor: Any = None,
        device: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.load(model_id, revision, model, processor, device, batch_size)
        self.lookup = torch.from_numpy(label_lookup(self.model.config.id2label)).to(self.device)

    def fingerprint(self) -> dict:
        return {**self.model_fingerprint(), "upsample": "pil_bicubic", "resize_logits": "bilinear"}

    @torch.inference_mode()
    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[np.ndarray]:
        """Label maps, uint8 [hr_size, hr_size] ids into `MASK_CLASSES`, one per LR face (uint8 [B,h,w,3])."""
        inputs = self.processor(images=upsample_lr(lr, hr_size), return_tensors="pt").to(self.device)
        logits = self.model(pixel_values=inputs["pixel_values"]).logits.float()
        logits = F.interpolate(logits, size=(hr_size, hr_size), mode="bilinear", align_corners=False)
        labels = self.lookup[logits.argmax(dim=1)]
        return list(labels.cpu().numpy())
