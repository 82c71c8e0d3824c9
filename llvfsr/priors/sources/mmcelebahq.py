"""Caption and description priors from MM-CelebA-HQ's human-written text (ten sentences per face, TediGAN).

These sources ignore the pixels: they read `item.dataset.texts(item.index)` (``{"captions": [ten sentences]}``,
one per line of MM-CelebA-HQ's `text/<id>.txt`, in file order; a plain list is accepted too). The caption is
the first sentence; the description is all ten joined with a space, so the two priors keep the paper's
short-global / long-detailed split.
"""

from __future__ import annotations

import numpy as np

from llvfsr.priors.sources.base import ItemContext, PriorSource


def _sentences(item: ItemContext) -> list[str]:
    texts = item.dataset.texts(item.index)
    if isinstance(texts, dict):
        texts = texts.get("captions")
    sentences = [" ".join(t.split()) for t in texts or [] if t and t.strip()]
    if not sentences:
        raise ValueError(f"item {item.item_id}: the dataset has no MM-CelebA-HQ text for it")
    return sentences


class _MMCelebAHQText(PriorSource):
    name = "mmcelebahq"
    device = "cpu"
    batch_size = 256
    sentences_used: str

    def fingerprint(self) -> dict:
        from llvfsr import __version__

        return {"source": self.name, "model_id": None, "revision": None, "version": __version__,
                "sentences": self.sentences_used}  # fmt: skip


class MMCelebAHQCaption(_MMCelebAHQText):
    """Caption = the first of the face's ten MM-CelebA-HQ sentences."""

    kind = "caption"
    sentences_used = "first"

    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[str]:
        return [_sentences(item)[0] for item in items]


class MMCelebAHQDescription(_MMCelebAHQText):
    """Description = the face's MM-CelebA-HQ sentences (up to ten) joined with single spaces."""

    kind = "description"
    sentences_used = "all_joined"

    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[str]:
        return [" ".join(_sentences(item)) for item in items]
