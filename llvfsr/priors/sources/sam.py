"""Mask prior from Segment Anything (paper Sec. 3.3), with a stated rule giving SAM's masks CelebAMask-HQ ids.

SAM returns unlabelled regions. The rule that turns them into a label map (deterministic for a given set of masks):

1. Run `SamAutomaticMaskGenerator` on the LR face bicubic-upsampled to HR, so masks come at HR size.
2. Draw the canonical layout of an aligned CelebA-HQ face at HR size (`canonical_face_layout`): ellipses for
   hair, skin, ears, brows, eyes, nose, lips, mouth, neck and cloth. Their places follow from CelebA-HQ's
   alignment (Karras et al. 2018, App. C: the crop is 4x the eye distance wide and centred 0.1 eye-to-mouth
   below the eye midpoint), which puts the eyes near (0.375, 0.475) and (0.625, 0.475) of the side and the
   mouth near y = 0.73; "l_" parts are on the image's left, as the synthetic faces draw them.
3. A small mask (under 1% of the image) whose centre lies on the layout's face is a face part: it gets the
   part (brow, eye, nose, lip, mouth, ear) whose layout centre is nearest, with a small penalty on the
   log-ratio of the areas, so parts a little off the mean position still find their class. Every other
   mask gets the layout class it overlaps most (pixel count; ties go to the smaller id).
4. Paint the masks from the largest to the smallest area (ties: top-most, then left-most bounding box), so
   small parts overwrite the large regions they sit in. Pixels no mask covers are background.

The rule uses only position and size relative to the aligned face, so it is as good as SAM's regions and
the alignment; `tests/test_sources_vision.py` and the report measure it with perfect regions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from llvfsr.priors.sources.base import ItemContext, PriorSource, resolve_device, upsample_lr
from llvfsr.priors.types import MASK_CLASSES

DEFAULT_SAM_TYPE = "vit_h"

# (class, centre x, centre y, radius x, radius y) as fractions of the image side, painted in this order.
_LAYOUT: tuple[tuple[str, float, float, float, float], ...] = (
    ("cloth", 0.50, 1.08, 0.47, 0.20),
    ("neck", 0.50, 0.88, 0.13, 0.12),
    ("hair", 0.50, 0.40, 0.35, 0.34),
    ("skin", 0.50, 0.57, 0.25, 0.32),
    ("l_ear", 0.235, 0.54, 0.035, 0.07),
    ("r_ear", 0.765, 0.54, 0.035, 0.07),
    ("l_brow", 0.37, 0.415, 0.07, 0.018),
    ("r_brow", 0.63, 0.415, 0.07, 0.018),
    ("l_eye", 0.375, 0.475, 0.05, 0.022),
    ("r_eye", 0.625, 0.475, 0.05, 0.022),
    ("nose", 0.50, 0.59, 0.045, 0.075),
    ("l_lip", 0.50, 0.742, 0.08, 0.018),
    ("u_lip", 0.50, 0.71, 0.085, 0.016),
    ("mouth", 0.50, 0.725, 0.075, 0.008),
)
_PARTS = ("l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "mouth", "l_lip", "l_ear", "r_ear")
PART_AREA_FRACTION = 0.01  # masks below this share of the image are matched to parts by position
AREA_PENALTY = 0.05  # image sides of centre distance that a factor e of area difference costs


def canonical_face_layout(size: int) -> np.ndarray:
    """The mean layout of an aligned CelebA-HQ face, uint8 [size, size] ids into `MASK_CLASSES`."""
    layout = np.zeros((size, size), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    yy, xx = (yy + 0.5) / size, (xx + 0.5) / size
    for name, cx, cy, rx, ry in _LAYOUT:
        layout[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0] = MASK_CLASSES.index(name)
    return layout


def _part_geometry(layout: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids, centres (x, y) in pixels and areas of the face parts drawn in `layout`."""
    ids, centres, areas = [], [], []
    for name in _PARTS:
        ys, xs = np.nonzero(layout == MASK_CLASSES.index(name))
        if len(ys):
            ids.append(MASK_CLASSES.index(name))
            centres.append((xs.mean(), ys.mean()))
            areas.append(len(ys))
    return np.array(ids), np.array(centres, dtype=np.float64), np.array(areas, dtype=np.float64)


def label_sam_masks(masks: list[dict], layout: np.ndarray) -> np.ndarray:
    """Turn SAM's class-free masks into a CelebAMask-HQ label map by the module's rule (steps 3 and 4).

    Args:
        masks: SamAutomaticMaskGenerator records; each needs "segmentation" (bool [H, W]) and "bbox" (x, y, w, h).
        layout: `canonical_face_layout(H)`.

    Returns:
        uint8 [H, W] ids into `MASK_CLASSES`.
    """
    labels = np.zeros(layout.shape, dtype=np.uint8)
    side = float(layout.shape[0])
    face = np.isin(layout, [MASK_CLASSES.index(c) for c in ("skin", *_PARTS)])
    part_ids, part_centres, part_areas = _part_geometry(layout)
    keyed = []
    for record in masks:
        seg = np.asarray(record["segmentation"], dtype=bool)
        area = int(seg.sum())
        if area:
            keyed.append((-area, record["bbox"][1], record["bbox"][0], seg))
    for neg_area, _, _, seg in sorted(keyed, key=lambda k: k[:3]):
        area = -neg_area
        ys, xs = np.nonzero(seg)
        cx, cy = xs.mean(), ys.mean()
        if area < PART_AREA_FRACTION * seg.size and face[int(cy), int(cx)] and len(part_ids):
            cost = np.hypot(part_centres[:, 0] - cx, part_centres[:, 1] - cy) / side
            cost += AREA_PENALTY * np.abs(np.log(area / part_areas))
            labels[seg] = part_ids[int(np.argmin(cost))]
        else:
            overlap = np.bincount(layout[seg], minlength=len(MASK_CLASSES))
            labels[seg] = int(np.argmax(overlap))  # argmax returns the first, i.e. smallest, id on ties
    return labels


def build_sam(model_type: str, checkpoint: str | None) -> Any:
    """A segment-anything model from its registry (`vit_h`, `vit_l`, `vit_b`) and a local checkpoint file."""
    from segment_anything import sam_model_registry

    if model_type not in sam_model_registry:
        raise ValueError(f"unknown SAM model type {model_type!r}; valid: {sorted(sam_model_registry)}")
    if checkpoint is None:
        raise ValueError(
            "SAM needs a local checkpoint file (e.g. sam_vit_h_4b8939.pth from the segment-anything release); "
            "pass checkpoint=PATH"
        )
    return sam_model_registry[model_type](checkpoint=checkpoint)


class SamMask(PriorSource):
    """Semantic mask of each LR face from SAM's automatic masks, labelled by the canonical-layout rule.

    Args:
        checkpoint: local SAM checkpoint (.pth); used when `model` is None.
        model_type: "vit_h" (the paper's default SAM), "vit_l" or "vit_b".
        model: a ready `segment_anything.modeling.Sam` (tests).
        generator_options: keyword arguments for `SamAutomaticMaskGenerator` (points_per_side,
            pred_iou_thresh, stability_score_thresh, ...); recorded in the fingerprint.
        device: default CUDA when present.
        batch_size: faces per call (SAM's generator itself runs one image at a time).
    """

    kind = "mask"
    name = "sam"

    def __init__(
        self,
        checkpoint: str | None = None,
        model_type: str = DEFAULT_SAM_TYPE,
        model: Any = None,
        generator_options: dict | None = None,
        device: str | None = None,
        batch_size: int = 8,
    ) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.model_type = model_type if model is None else "in-memory"
        self.checkpoint = checkpoint
        self.generator_options = dict(generator_options or {})
        model = model if model is not None else build_sam(model_type, checkpoint)
        self.model = model.to(self.device).eval()
        self.generator = SamAutomaticMaskGenerator(self.model, **self.generator_options)
        self._layouts: dict[int, np.ndarray] = {}

    def fingerprint(self) -> dict:
        import segment_anything

        from llvfsr import __version__

        checkpoint = None if self.checkpoint is None else str(self.checkpoint).rsplit("/", 1)[-1]
        return {"source": self.name, "model_id": f"sam_{self.model_type}", "revision": checkpoint,
                "version": f"{__version__}/segment_anything-{getattr(segment_anything, '__version__', '1.0')}",
                "generator_options": dict(sorted(self.generator_options.items())),
                "labelling": "canonical_layout_v2"}  # fmt: skip

    @torch.inference_mode()
    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[np.ndarray]:
        """Label maps, uint8 [hr_size, hr_size] ids into `MASK_CLASSES`, one per LR face (uint8 [B,h,w,3])."""
        layout = self._layouts.setdefault(hr_size, canonical_face_layout(hr_size))
        outputs = []
        for image in upsample_lr(lr, hr_size):
            masks = self.generator.generate(np.asarray(image))
            outputs.append(label_sam_masks(masks, layout))
        return outputs

    def close(self) -> None:
        self.model = None
        self.generator = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
