"""Attribute readers: which text-only attribute (iris colour, glasses frames, earrings) does an image of a synthetic
face show?

The synthetic faces state attributes in their description that the LR face does not show. PSNR cannot see whether
a model renders them (at 64 px an iris is 32 of 4,096 pixels), so these readers classify each attribute directly,
from an image and the face's exact geometry. The geometry comes from the generator itself: the face is re-rendered
with every option of the attribute (`render_face(..., overrides=...)` keeps everything else bit-identical), and
the pixels where those renders differ are where the attribute lives.

- **Glasses** (none / black / gold / silver frames) and **earrings** (none / gold / silver): nearest render over
  those pixels (sum of squared RGB differences).
- **Iris colour** (blue / green / brown / grey / amber): the iris is drawn as vivid sectors and counter-tinted
  sectors balanced around one shared mean colour, so its mean is the same for every colour. A nearest-render reader
  is therefore biased (a blurred iris is nearest to the colour whose vivid sectors are nearest the mean). Instead,
  each pixel of the renders is fitted exactly as ``R_c = A + g * delta_c`` (a colour-neutral iris ``A``, a scalar
  pattern field ``g``, the colour's vivid-minus-mean vector ``delta_c``), and the reader asks
  along which colour axis ``delta_c`` the image departs from the neutral iris ``A`` the most (second moment, so
  the pattern anywhere and a uniform tint both count). An HR face reads back its own colour; a blurred one departs
  along no particular axis.
- **Iris colour, matched** (``attr_eye_colour_matched``): the same fit read as a matched filter, the departure
  from the average of the face's five colour renders projected on each colour's own departure from that average,
  ``g * (delta_c - mean delta)``. Signed, and ``g`` averages to about zero over the iris, so the average iris, a
  uniform tint or noise read nothing: only the stated colour's pattern, drawn where the renders put it, counts,
  however faintly. A model that draws a tenth of the colour reads correctly here and as one colour for every face
  above (pinwheel control, 60 epochs, 3 seeds: 0.43 against 0.20).

Readers are calibrated by balanced accuracy (mean of per-class recalls: a reader that always answers one class
scores exactly chance, 1 / classes) and confusion matrices, not plain accuracy. Images are float RGB [B,3,H,W]
in [0, 1] at the HR size the references were rendered at.
"""

from __future__ import annotations

import functools
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from llvfsr.data import synthetic_text as text
from llvfsr.data.synthetic import GENERATOR_VERSION, render_face

# attribute -> its options, in a fixed order (class ids of the confusion matrices)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "eye_colour": tuple(text.EYE_COLOURS),
    "glasses": ("none", *text.FRAME_COLOURS),
    "earrings": ("none", *text.METALS),
}
# derived yes/no attributes: present = the option is not "none"
PRESENCE = {"glasses_present": "glasses", "earrings_present": "earrings"}
_DIFFERS = 1.5 / 255  # a pixel belongs to an attribute where its renders differ by more than this
# Bump when the references of a face change (with the generator's version, it names the cache files).
REFERENCE_VERSION = 1


@dataclass
class AttributeReference:
    """What one attribute of one face looks like under each option, cropped to where the options differ.

    Attributes:
        box: (top, left, height, width) of the crop in the HR image.
        weight: float32 [h, w], 1 where the renders differ (the attribute's pixels), else 0.
        renders: float32 [K, 3, h, w] in [0, 1], the crop rendered with each option.
        neutral: float32 [3, h, w], the colour-neutral iris fit (eye colour only), else None.
    """

    box: tuple[int, int, int, int]
    weight: np.ndarray
    renders: np.ndarray
    neutral: np.ndarray | None = None

    @functools.cached_property
    def pattern(self) -> np.ndarray:
        """float32 [h, w], the iris's pattern field ``g`` (eye colour only), fitted once per reference, not per read."""
        return _iris_fit(self.renders)[1]


def iris_axes() -> np.ndarray:
    """Unit RGB axis of each eye colour (vivid colour minus the shared iris mean), float [K, 3], in option order."""
    axes = _iris_deltas()
    return axes / np.linalg.norm(axes, axis=1, keepdims=True)


def _iris_fit(renders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel least-squares fit of ``R_c = A + g * delta_c`` over the K renders (``delta_c`` in [0, 1] units);
    returns (A float [3, h, w], g float [h, w]): the colour-neutral iris and the pattern field."""
    # Vivid and counter-tinted sectors both depart from the mean along the colour's axis; the scale goes into g.
    delta = _iris_deltas()
    centred_r = renders - renders.mean(0, keepdims=True)  # [K, 3, h, w]
    centred_d = delta - delta.mean(0, keepdims=True)  # [K, 3]
    g = np.einsum("kchw,kc->hw", centred_r, centred_d) / (centred_d**2).sum()
    neutral = renders.mean(0) - g[None] * delta.mean(0)[:, None, None]
    return neutral.astype(np.float32), g.astype(np.float32)


def _iris_deltas() -> np.ndarray:
    """Each eye colour's vivid colour minus the shared iris mean, float [K, 3] in [0, 1] units, in option order."""
    mean = np.asarray(text.IRIS_MEAN, np.float64)
    return np.stack([np.asarray(text.EYE_COLOURS[c], np.float64) - mean for c in ATTRIBUTES["eye_colour"]]) / 255


@functools.lru_cache(maxsize=2048)  # a robustness pass reads the same test faces once per counterfactual
def face_references(
    seed: int, index: int, size: int, zoom: float = 1.0, iris: str = "pinwheel"
) -> dict[str, AttributeReference]:
    """References of every attribute of face `index` of family `seed` rendered at `size` px (`zoom`, `iris`); cached,
    so treat them as read-only."""
    refs = {}
    for name, options in ATTRIBUTES.items():
        faces = [render_face(seed, index, size, {name: option}, zoom, iris).image for option in options]
        images = np.stack(faces).astype(np.float32)
        images = images.transpose(0, 3, 1, 2) / 255.0  # [K, 3, S, S]
        differs = np.abs(images - images.mean(0, keepdims=True)).max(axis=(0, 1)) > _DIFFERS
        if not differs.any():  # cannot happen for these attributes; keep a 1-pixel box so shapes stay valid
            differs[0, 0] = True
        rows, cols = np.nonzero(differs)
        top, left = int(rows.min()), int(cols.min())
        height, width = int(rows.max()) - top + 1, int(cols.max()) - left + 1
        crop = images[:, :, top : top + height, left : left + width]
        weight = differs[top : top + height, left : left + width].astype(np.float32)
        neutral = _iris_fit(crop)[0] if name == "eye_colour" else None
        refs[name] = AttributeReference((top, left, height, width), weight, crop, neutral)
    return refs


def _crops(images: Tensor, boxes: list[tuple[int, int, int, int]]) -> Tensor:
    """Crop each image to its box, zero-padded to the largest box: [B, 3, H', W']."""
    height, width = max(b[2] for b in boxes), max(b[3] for b in boxes)
    out = images.new_zeros(images.shape[0], images.shape[1], height, width)
    for i, (top, left, h, w) in enumerate(boxes):
        out[i, :, :h, :w] = images[i, :, top : top + h, left : left + w]
    return out


def _padded(arrays: list[np.ndarray], shape: tuple[int, int], device) -> Tensor:
    out = np.zeros((len(arrays), *arrays[0].shape[:-2], *shape), np.float32)
    for i, a in enumerate(arrays):
        out[i, ..., : a.shape[-2], : a.shape[-1]] = a
    return torch.from_numpy(out).to(device)


def read_attribute(images: Tensor, refs: list[AttributeReference], name: str) -> Tensor:
    """Class scores of attribute `name` for a batch of images (float RGB [B,3,H,W] in [0, 1]), float [B, K]: the
    highest score is the reader's answer. `refs` are the faces' references of that attribute, one per image."""
    boxes = [r.box for r in refs]
    crops = _crops(images.float(), boxes)
    shape = tuple(crops.shape[-2:])
    weight = _padded([r.weight for r in refs], shape, images.device)  # [B, h, w]
    if name == "eye_colour":
        neutral = _padded([r.neutral for r in refs], shape, images.device)  # [B, 3, h, w]
        axes = torch.from_numpy(iris_axes()).float().to(images.device)  # [K, 3]
        along = torch.einsum("bchw,kc->bkhw", crops - neutral, axes)  # departure along each colour axis
        return (along.pow(2) * weight[:, None]).sum((-2, -1)) / weight.sum((-2, -1)).clamp_min(1)[:, None]
    renders = _padded([r.renders for r in refs], shape, images.device)  # [B, K, 3, h, w]
    err = (crops[:, None] - renders).pow(2).sum(2)  # [B, K, h, w]
    return -(err * weight[:, None]).sum((-2, -1))


def read_iris_matched(images: Tensor, refs: list[AttributeReference]) -> Tensor:
    """Matched-filter iris scores, float [B, K]: each image's departure from the average of its face's five colour
    renders, projected on each colour's own departure from that average (``g * (delta_c - mean delta)``, unit
    colour axis) over the iris pixels, per unit of the pattern's energy. An HR iris scores highest for its own
    colour; the average iris, a uniform tint or noise score about zero for every colour; a fraction f of the
    stated colour drawn over the average iris scores f times what the HR iris scores."""
    crops = _crops(images.float(), [r.box for r in refs])
    shape = tuple(crops.shape[-2:])
    weight = _padded([r.weight for r in refs], shape, images.device)  # [B, h, w]
    average = _padded([r.renders.mean(0) for r in refs], shape, images.device)  # [B, 3, h, w]
    pattern = _padded([r.pattern for r in refs], shape, images.device) * weight  # [B, h, w]
    deltas = _iris_deltas()
    axes = deltas - deltas.mean(0, keepdims=True)  # what sets each colour apart from the average iris
    axes = torch.from_numpy(axes / np.linalg.norm(axes, axis=1, keepdims=True)).float().to(images.device)
    along = torch.einsum("bchw,kc->bkhw", crops - average, axes)
    return (along * pattern[:, None]).sum((-2, -1)) / pattern.pow(2).sum((-2, -1)).clamp_min(1e-12)[:, None]


@functools.lru_cache(maxsize=2048)
def _attributes(seed: int, index: int, size: int, zoom: float, iris: str) -> dict:
    return render_face(seed, index, size, zoom=zoom, iris=iris).attributes


def reference_cache_dir() -> Path:
    """Where rendered references are kept between processes: ``$LLVFSR_CACHE/attribute_references`` (default
    ``~/.cache/llvfsr``). A zoomed face takes about a second to render with all its options, and every trial and
    robustness pass of a sweep reads the same test faces."""
    return Path(os.environ.get("LLVFSR_CACHE", Path.home() / ".cache" / "llvfsr")) / "attribute_references"


def cached_references(
    seed: int, indices: list[int], size: int, zoom: float, iris: str = "pinwheel"
) -> list[tuple[dict, dict]]:
    """Each face's true attributes and `face_references`, read from the on-disk cache where present; the missing
    ones are rendered and the cache file rewritten every 64 faces (atomically: a killed process keeps the last)."""
    texture = "" if iris == "pinwheel" else f"-{iris}"  # the default keeps the names of existing caches
    name = f"g{GENERATOR_VERSION}-r{REFERENCE_VERSION}-seed{seed}-{size}px-zoom{zoom:g}{texture}.pkl"
    path = reference_cache_dir() / name
    stored: dict[int, tuple[dict, dict[str, AttributeReference]]] = {}
    if path.is_file():
        try:
            stored = pickle.loads(path.read_bytes())
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError):
            stored = {}  # a damaged cache is rebuilt, never trusted
    missing = [i for i in indices if i not in stored]
    for done, i in enumerate(tqdm(missing, desc="attribute references", unit="face", disable=len(missing) < 32), 1):
        stored[i] = (dict(_attributes(seed, i, size, zoom, iris)), face_references(seed, i, size, zoom, iris))
        if done % 64 == 0 or done == len(missing):  # a killed process keeps what it rendered up to here
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            partial.write_bytes(pickle.dumps(stored, protocol=pickle.HIGHEST_PROTOCOL))
            partial.replace(path)
    return [stored[i] for i in indices]


class AttributeReader:
    """Reads every text-only attribute of the faces of one synthetic split (references rendered once, cached on
    disk by `cached_references`)."""

    def __init__(self, seed: int, indices: list[int], size: int, zoom: float = 1.0, iris: str = "pinwheel"):
        faces = cached_references(seed, list(indices), size, zoom, iris)
        self.truth = [truth for truth, _ in faces]
        self.refs = [refs for _, refs in faces]

    def __call__(self, images: Tensor, positions: list[int]) -> dict[str, list]:
        """Per-face columns for the faces at `positions` (indices into this reader's faces) shown in `images`:
        ``attr_<name>`` (the answer), ``attr_<name>_true`` and ``attr_<name>_correct`` (0/1) per attribute, and the
        same for the yes/no presence attributes."""
        columns: dict[str, list] = {}
        for name, options in ATTRIBUTES.items():
            scores = read_attribute(images, [self.refs[p][name] for p in positions], name)
            answers = [options[k] for k in scores.argmax(1).tolist()]
            truths = [self.truth[p][name] for p in positions]
            columns[f"attr_{name}"] = answers
            columns[f"attr_{name}_true"] = truths
            columns[f"attr_{name}_correct"] = [float(a == t) for a, t in zip(answers, truths, strict=True)]
            if name == "eye_colour":  # the scores themselves, for the centred reading of a whole run
                for k, option in enumerate(options):
                    columns[f"attr_{name}_score_{option}"] = scores[:, k].tolist()
                matched = read_iris_matched(images, [self.refs[p][name] for p in positions]).argmax(1).tolist()
                columns[f"attr_{name}_matched"] = [options[k] for k in matched]
                columns[f"attr_{name}_matched_correct"] = [
                    float(options[k] == t) for k, t in zip(matched, truths, strict=True)
                ]
        for name, source in PRESENCE.items():
            answers = [a != "none" for a in columns[f"attr_{source}"]]
            truths = [t != "none" for t in columns[f"attr_{source}_true"]]
            columns[f"attr_{name}_correct"] = [float(a == t) for a, t in zip(answers, truths, strict=True)]
        return columns


def balanced_accuracy(truth: list, answers: list) -> float:
    """Mean over the classes present in `truth` of the fraction of that class answered correctly (chance: 1/K)."""
    truth, answers = np.asarray(truth, dtype=object), np.asarray(answers, dtype=object)
    recalls = [float(np.mean(answers[truth == c] == c)) for c in dict.fromkeys(truth.tolist())]
    return float(np.mean(recalls)) if recalls else float("nan")


def confusion(truth: list, answers: list, options: tuple[str, ...]) -> np.ndarray:
    """Confusion matrix int [K, K]: row = true option, column = the reader's answer."""
    matrix = np.zeros((len(options), len(options)), np.int64)
    for t, a in zip(truth, answers, strict=True):
        matrix[options.index(t), options.index(a)] += 1
    return matrix


def centred_iris_answers(frame) -> list[str]:
    """The iris reading of a whole run with each colour's score centred on its mean over the run's faces.

    A model that renders every iris with the same departure (say, its average iris) reads as one colour for every
    face: exactly chance in balanced accuracy, however far each face's iris moved towards its own colour. Centring
    removes that shared departure, so a partial move towards the stated colour shows; a run whose irises carry no
    colour stays at chance."""
    options = ATTRIBUTES["eye_colour"]
    scores = np.stack([np.asarray(frame[f"attr_eye_colour_score_{c}"], np.float64) for c in options], axis=1)
    scores = scores / np.maximum(scores.mean(0, keepdims=True), 1e-12) - 1.0  # relative to the run's mean, per colour
    return [options[k] for k in scores.argmax(1)]


def attribute_summary(frame) -> dict[str, float]:
    """Per-run figures from a per-image frame with the reader's columns: accuracy, balanced accuracy and its chance
    level (1 / options) of each attribute, as ``attr_<name>_acc`` / ``_bacc`` / ``_chance``, and the centred iris
    reading of the run as ``attr_eye_colour_centred_bacc`` (see `centred_iris_answers`)."""
    summary = {}
    for name, options in ATTRIBUTES.items():
        if f"attr_{name}" not in frame:
            continue
        summary[f"attr_{name}_acc"] = float(frame[f"attr_{name}_correct"].mean())
        summary[f"attr_{name}_bacc"] = balanced_accuracy(frame[f"attr_{name}_true"], frame[f"attr_{name}"])
        summary[f"attr_{name}_chance"] = 1.0 / len(options)
    if "attr_eye_colour_matched" in frame:
        summary["attr_eye_colour_matched_acc"] = float(frame["attr_eye_colour_matched_correct"].mean())
        summary["attr_eye_colour_matched_bacc"] = balanced_accuracy(
            frame["attr_eye_colour_true"], frame["attr_eye_colour_matched"]
        )
    if "attr_eye_colour_score_blue" in frame and len(frame) > 1:
        summary["attr_eye_colour_centred_bacc"] = balanced_accuracy(
            frame["attr_eye_colour_true"], centred_iris_answers(frame)
        )
    for name, source in PRESENCE.items():
        if f"attr_{source}" not in frame:
            continue
        present = [a != "none" for a in frame[f"attr_{source}"]]
        truth = [t != "none" for t in frame[f"attr_{source}_true"]]
        summary[f"attr_{name}_acc"] = float(frame[f"attr_{name}_correct"].mean())
        summary[f"attr_{name}_bacc"] = balanced_accuracy(truth, present)
        summary[f"attr_{name}_chance"] = 0.5
    return summary
