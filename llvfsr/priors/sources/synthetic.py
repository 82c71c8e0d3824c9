"""Synthetic prior sources: the synthetic face generator's exact priors, read back through the source interface.

The synthetic faces are rendered from known geometry and attributes, so their mask, depth, landmarks, caption and
description are known exactly. These sources return them unchanged (they ignore the LR pixels), which makes
the synthetic pipeline an upper bound on what the real, LR-derived priors can give, and keeps every test free
of model downloads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import llvfsr
from llvfsr.priors.sources.base import ItemContext, PriorSource


class _ExactPriorSource(PriorSource):
    """Base of the synthetic sources: one attribute of `dataset.exact_priors(index)` per item."""

    attribute: str

    def fingerprint(self) -> dict[str, Any]:
        return {"source": self.name, "model_id": "llvfsr.data.synthetic", "revision": None,
                "version": llvfsr.__version__, "attribute": self.attribute}  # fmt: skip

    def _exact(self, item: ItemContext) -> Any:
        exact_priors = getattr(item.dataset, "exact_priors", None)
        face = exact_priors(item.index) if exact_priors is not None else None
        if face is None:
            raise ValueError(
                f"the synthetic {self.kind} source needs a dataset with exact priors (the synthetic faces); "
                f"item {item.item_id!r} of {type(item.dataset).__name__} has none"
            )
        return getattr(face, self.attribute)

    @staticmethod
    def _check_size(value: np.ndarray, hr_size: int, item: ItemContext) -> np.ndarray:
        if value.shape[:2] != (hr_size, hr_size):
            raise ValueError(f"item {item.item_id!r}: exact prior is {value.shape[:2]}, expected HR size {hr_size}")
        return value


class SyntheticMask(_ExactPriorSource):
    """The rendered label map: uint8 [H, W], ids into `MASK_CLASSES`."""

    kind = "mask"
    name = "synthetic"
    attribute = "mask"

    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[np.ndarray]:
        return [self._check_size(np.asarray(self._exact(it), dtype=np.uint8), hr_size, it) for it in items]


class SyntheticDepth(_ExactPriorSource):
    """The rendered height field: float32 [H, W] in [0, 1], larger = nearer, background 0."""

    kind = "depth"
    name = "synthetic"
    attribute = "depth"

    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[np.ndarray]:
        return [self._check_size(np.asarray(self._exact(it), dtype=np.float32), hr_size, it) for it in items]


class SyntheticLandmarks(_ExactPriorSource):
    """The 68 iBUG landmarks placed on the rendered geometry: float32 [68, 2], (x, y) in HR pixels."""

    kind = "landmarks"
    name = "synthetic"
    attribute = "landmarks"

    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[np.ndarray]:
        return [np.asarray(self._exact(it), dtype=np.float32).reshape(68, 2) for it in items]


class SyntheticCaption(_ExactPriorSource):
    """The generator's short caption, stating a few coarse attributes (BLIP-2 like)."""

    kind = "caption"
    name = "synthetic"
    attribute = "caption"

    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[str]:
        return [str(self._exact(it)) for it in items]


class SyntheticDescription(_ExactPriorSource):
    """The generator's long description, stating every attribute (GPT-4 like), including those invisible at LR."""

    kind = "description"
    name = "synthetic"
    attribute = "description"

    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[str]:
        return [str(self._exact(it)) for it in items]


class ShuffledDescription(SyntheticDescription):
    """Negative control: the description of *another* face of the same split, by a fixed derangement of the split.

    The text is as rich as the true one but says nothing about this face; the same face always gets the same
    stranger's text, at train and test alike. A model that truly reads the description must do no better with it
    than without a description (attribute accuracy at chance)."""

    name = "synthetic-shuffled"

    def _exact(self, item: ItemContext) -> Any:
        n = len(item.dataset)
        order = np.random.default_rng((getattr(item.dataset, "family_seed", 0), n, 7)).permutation(n)
        position = int(np.flatnonzero(order == item.index)[0])
        stranger = ItemContext(int(order[(position + 1) % n]), item.item_id, item.dataset) if n > 1 else item
        return super()._exact(stranger)


class ConstantDescription(SyntheticDescription):
    """Negative control: one description (that of the split's first face) for every face."""

    name = "synthetic-constant"

    def _exact(self, item: ItemContext) -> Any:
        return super()._exact(ItemContext(0, item.item_id, item.dataset))
