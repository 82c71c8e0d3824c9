"""The prior-source interface: what every mask, depth, caption, description and landmark extractor implements.

A source turns a batch of LR faces into one prior per face. Priors come from the LR image (paper Sec. 3.3),
so a source sees the LR pixels as a pretrained model would (uint8 RGB) plus an `ItemContext` that names the
item and its dataset: the synthetic sources read the generator's exact priors from it, the MM-CelebA-HQ
source its human-written text. The prior store calls sources, measures their cost and records their
fingerprint; a source never writes to disk itself.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from PIL import Image

from llvfsr.priors.types import SOURCE_KINDS

if TYPE_CHECKING:  # the data package imports nothing from priors, so this is only for type checkers
    from llvfsr.data.datasets import FaceDataset

KINDS: tuple[str, ...] = SOURCE_KINDS


@dataclass(frozen=True)
class ItemContext:
    """What a source may know about an item besides its LR pixels.

    Attributes:
        index: position of the item in its dataset split.
        item_id: the dataset's stable id of the item (e.g. a CelebA-HQ file stem).
        dataset: the `FaceDataset` the item belongs to (`exact_priors(i)` for synthetic faces, `texts(i)` for
            MM-CelebA-HQ).
    """

    index: int
    item_id: str
    dataset: FaceDataset


class PriorSource(abc.ABC):
    """One way of producing one kind of prior (e.g. the mask from SAM, the caption from BLIP-2).

    Subclasses set `kind` (one of `KINDS`) and `name` (the registry name used in CLI flags and manifests),
    implement `__call__`, and extend `fingerprint` with every parameter that changes their output.
    """

    kind: ClassVar[str]
    name: ClassVar[str]
    batch_size: int = 16

    def fingerprint(self) -> dict[str, Any]:
        """Identify this source's output: a change of fingerprint invalidates exactly what it produced.

        Returns:
            A JSON-serialisable dict with at least ``source`` (registry name), ``model_id``, ``revision`` and
            ``version`` (the package version of the code that produced the output).
        """
        return {"source": self.name, "model_id": None, "revision": None, "version": None}

    @abc.abstractmethod
    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list:
        """Produce one prior per LR face.

        Args:
            lr: uint8 [B, h, w, 3] RGB, the LR faces as a pretrained model would see them.
            hr_size: side of the HR image; spatial priors are returned at this size.
            items: one `ItemContext` per face, in the order of `lr`.

        Returns:
            One output per item: mask -> uint8 [hr_size, hr_size] ids into `MASK_CLASSES`; depth -> float32
            [hr_size, hr_size] in [0, 1], larger = nearer; caption / description -> str; landmarks -> float32
            [68, 2] (x, y) in HR pixels.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op for sources that hold no model
        """Free models and other resources; the default source holds none."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, name={self.name!r})"


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
