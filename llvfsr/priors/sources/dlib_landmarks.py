"""Landmark prior from dlib's 68-point shape predictor (iBUG 300-W layout), the target of FSRNet/DIC's landmark heads.

The LR face is bicubic-upsampled to HR; dlib's HOG frontal-face detector looks for a face there and the
largest detection is used. When it finds none (common at x16, where an upsampled 16 px face is very soft)
the predictor runs on a fallback box: by default the full image, as the aligned CelebA-HQ crops are
face-centred; `fallback_box="canonical"` uses the aligned face's mean box instead. How many faces fell back
is counted in `fallback_count`.

Install: `pip install dlib-bin` (prebuilt wheels; `pip install dlib` builds from source with CMake and takes
many minutes) and `pip install face-recognition-models` (ships shape_predictor_68_face_landmarks.dat), or
pass `predictor_path` to your own copy of the .dat file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llvfsr.priors.sources.base import ItemContext, PriorSource, upsample_lr
from llvfsr.priors.types import NUM_LANDMARKS

# Mean face box of the aligned CelebA-HQ crops (left, top, right, bottom as fractions of the side).
_CANONICAL_BOX = (0.24, 0.30, 0.76, 0.86)


def import_dlib() -> Any:
    """dlib, or an ImportError that says what to install."""
    try:
        import dlib
    except ImportError as err:
        raise ImportError(
            "the 'dlib' landmark source needs dlib: `pip install dlib-bin` (prebuilt wheels) or `pip install dlib` "
            "(builds from source, needs CMake and a C++ compiler)"
        ) from err
    return dlib


def default_predictor_path() -> str:
    """The 68-point model shipped by the `face-recognition-models` package, or an ImportError saying so."""
    try:
        import face_recognition_models
    except ImportError as err:
        raise ImportError(
            "no 68-point shape predictor: `pip install face-recognition-models`, or pass predictor_path=PATH to "
            "shape_predictor_68_face_landmarks.dat"
        ) from err
    return face_recognition_models.pose_predictor_model_location()


class DlibLandmarks(PriorSource):
    """68 landmarks per LR face, (x, y) in HR pixels.

    Args:
        predictor_path: a 68-point `shape_predictor` .dat file; default the face-recognition-models copy.
        predictor: a ready `dlib.shape_predictor` (tests).
        upsample_times: dlib detector's pyramid up-sampling (0 = detect at HR size as is).
        fallback_box: "full" (the whole image) or "canonical" (the aligned face's mean box) when detection fails.
        batch_size: faces per call.
    """

    kind = "landmarks"
    name = "dlib"
    device = "cpu"

    def __init__(
        self,
        predictor_path: str | None = None,
        predictor: Any = None,
        upsample_times: int = 0,
        fallback_box: str = "full",
        batch_size: int = 32,
    ) -> None:
        if fallback_box not in ("full", "canonical"):
            raise ValueError(f"fallback_box must be 'full' or 'canonical', got {fallback_box!r}")
        self.dlib = import_dlib()
        self.batch_size = batch_size
        self.upsample_times = upsample_times
        self.fallback_box = fallback_box
        if predictor is None:
            predictor_path = predictor_path or default_predictor_path()
            predictor = self.dlib.shape_predictor(str(predictor_path))
        self.predictor_path = None if predictor_path is None else str(predictor_path)
        self.predictor = predictor
        self.detector = self.dlib.get_frontal_face_detector()
        self.fallback_count = 0

    def fingerprint(self) -> dict:
        from llvfsr import __version__

        model = "in-memory" if self.predictor_path is None else self.predictor_path.rsplit("/", 1)[-1]
        return {"source": self.name, "model_id": model, "revision": None,
                "version": f"{__version__}/dlib-{self.dlib.__version__}", "upsample_times": self.upsample_times,
                "fallback_box": self.fallback_box, "input": "lr_bicubic_to_hr"}  # fmt: skip

    def face_box(self, image: np.ndarray) -> Any:
        """The largest detected face as a dlib.rectangle, or the fallback box (counted in `fallback_count`)."""
        detections = list(self.detector(image, self.upsample_times))
        if detections:
            return max(detections, key=lambda r: (r.area(), -r.top(), -r.left()))
        self.fallback_count += 1
        height, width = image.shape[:2]
        if self.fallback_box == "full":
            return self.dlib.rectangle(0, 0, width - 1, height - 1)
        box = (f * (side - 1) for f, side in zip(_CANONICAL_BOX, (width, height, width, height), strict=True))
        left, top, right, bottom = (round(v) for v in box)
        return self.dlib.rectangle(left, top, right, bottom)

    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[np.ndarray]:
        """Landmarks, float32 [68, 2] (x, y) in HR pixels clipped to the image, one per LR face (uint8 [B,h,w,3])."""
        outputs = []
        for pil in upsample_lr(lr, hr_size):
            image = np.asarray(pil)
            shape = self.predictor(image, self.face_box(image))
            if shape.num_parts != NUM_LANDMARKS:
                raise ValueError(f"the shape predictor gives {shape.num_parts} points, the 68-point model is needed")
            points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(NUM_LANDMARKS)], dtype=np.float32)
            outputs.append(np.clip(points, 0, hr_size - 1))
        return outputs

    def close(self) -> None:
        self.predictor = None
