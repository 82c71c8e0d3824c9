"""Mask prior from a transformers semantic-segmentation face parser (e.g. SegFormer trained on CelebAMask-HQ).

Also home of the small helpers the model-backed sources share (device choice, LR upsampling, loading a
transformers model by id or local path), so that each source module stays a single class.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from llvfsr.priors.sources.base import ItemContext, PriorSource
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


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device a source runs on: the one asked for, else CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def upsample_lr(lr: np.ndarray, size: int) -> list[Image.Image]:
    """Bicubic-upsample LR faces to `size` for models that expect a face-sized input.

    Args:
        lr: uint8 [B, h, w, 3] RGB.
        size: output side in pixels.

    Returns:
        B PIL RGB images of size x size (PIL bicubic, the same filter as the degradation).
    """
    return [Image.fromarray(np.ascontiguousarray(im)).resize((size, size), Image.BICUBIC) for im in lr]


def load_pretrained(auto_class: Any, model_id: str, revision: str | None, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained` for a hub id or a local folder, with a hint when the weights are not available."""
    import transformers

    if "dtype" in kwargs and int(transformers.__version__.split(".")[0]) < 5:
        kwargs["torch_dtype"] = kwargs.pop("dtype")  # the keyword's name before transformers 5
    try:
        return auto_class.from_pretrained(model_id, revision=revision, **kwargs)
    except OSError as err:  # no network / HF_HUB_OFFLINE and not cached, or a bad path
        raise OSError(
            f"cannot load {model_id!r} (revision {revision!r}): {str(err).rstrip('.')}. Pass a local folder with the "
            "model files (save_pretrained layout; on the command line --source-option KIND.model_id=FOLDER) or make "
            "the hub reachable."
        ) from err


def model_revision(model: Any, requested: str | None) -> str | None:
    """The revision to record: the one asked for, else the commit hash transformers recorded when loading."""
    return requested or getattr(getattr(model, "config", None), "_commit_hash", None)


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


class FaceParserMask(PriorSource):
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

    def __init__(
        self,
        model_id: str = DEFAULT_FACE_PARSER,
        revision: str | None = None,
        model: Any = None,
        processor: Any = None,
        device: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.model_id = model_id if model is None else getattr(model.config, "name_or_path", "") or "in-memory"
        if model is None:
            from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

            model = load_pretrained(AutoModelForSemanticSegmentation, model_id, revision)
            processor = processor or load_pretrained(AutoImageProcessor, model_id, revision)
        if processor is None:
            raise ValueError("FaceParserMask(model=...) needs the matching processor too")
        self.revision = model_revision(model, revision)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.lookup = torch.from_numpy(label_lookup(model.config.id2label)).to(self.device)

    def fingerprint(self) -> dict:
        import transformers

        return {"source": self.name, "model_id": self.model_id, "revision": self.revision,
                "version": transformers.__version__, "upsample": "pil_bicubic",
                "resize_logits": "bilinear"}  # fmt: skip

    @torch.inference_mode()
    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[np.ndarray]:
        """Label maps, uint8 [hr_size, hr_size] ids into `MASK_CLASSES`, one per LR face (uint8 [B,h,w,3])."""
        inputs = self.processor(images=upsample_lr(lr, hr_size), return_tensors="pt").to(self.device)
        logits = self.model(pixel_values=inputs["pixel_values"]).logits.float()
        logits = F.interpolate(logits, size=(hr_size, hr_size), mode="bilinear", align_corners=False)
        labels = self.lookup[logits.argmax(dim=1)]
        return list(labels.cpu().numpy())

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
