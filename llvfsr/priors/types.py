"""The `Priors` batch: the language-vision priors of a batch of faces, as tensors (paper Sec. 3.1).

Every field may be absent (None): a model reads only the fields it was built for, and the ablation
variants of Table 2 / Fig. 9 are built without the branch, so they never need the missing input.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

# CelebAMask-HQ's 19 classes, in its label order (Lee et al., MaskGAN, CVPR 2020). The synthetic faces, the
# face-parser source and the SAM label mapping all write these ids, so a model sees one vocabulary.
MASK_CLASSES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)  # fmt: skip
NUM_MASK_CLASSES = len(MASK_CLASSES)
NUM_LANDMARKS = 68  # iBUG 300-W layout

# The prior kinds, spelled here once. LLV-FSR reads four (paper Sec. 3.3), one LVPFB branch each; the two texts reach
# it as CLIP embeddings; prior sources also produce landmarks, the auxiliary-loss targets of FSRNet and DIC.
PRIOR_KINDS: tuple[str, ...] = ("mask", "depth", "caption", "description")
TEXT_KINDS: tuple[str, ...] = ("caption", "description")
SOURCE_KINDS: tuple[str, ...] = (*PRIOR_KINDS, "landmarks")  # also the `Priors` fields a prior store loads


@dataclass
class TextEmbedding:
    """CLIP text-encoder output for one text per face.

    Attributes:
        tokens: token-level embeddings, float [B, T, D] (T = the encoder's context length).
        pooled: the pooled (end-of-text) embedding, float [B, D].
        valid: bool [B, T], True on real tokens (start, words, end), False on padding.
    """

    tokens: Tensor
    pooled: Tensor
    valid: Tensor

    def map(self, fn) -> TextEmbedding:
        return TextEmbedding(fn(self.tokens), fn(self.pooled), fn(self.valid))


@dataclass
class Priors:
    """Language-vision priors of a batch of B faces, computed from the LR image (paper Sec. 3.3).

    Attributes:
        mask: semantic label map at HR size, long [B, H, W], ids into `MASK_CLASSES`.
        depth: depth map at HR size, float [B, 1, H, W] in [0, 1], larger = nearer the camera.
        caption: CLIP embedding of the short caption (BLIP-2 in the paper).
        description: CLIP embedding of the long description (GPT-4 in the paper).
        landmarks: 68 facial landmarks in HR pixel coordinates (x, y), float [B, 68, 2]; a training target
            for the baselines with landmark heads (FSRNet, DIC), never an LLV-FSR input.
        withheld: bool [B, 4], True where a face's prior is withheld from LLV-FSR (its branch contributes nothing
            for that face), columns in the order of `PRIOR_KINDS`.
            Prior dropout draws it in training (`TrainConfig.prior_dropout`); a test withholds a subset with it.
    """

    mask: Tensor | None = None
    depth: Tensor | None = None
    caption: TextEmbedding | None = None
    description: TextEmbedding | None = None
    landmarks: Tensor | None = None
    withheld: Tensor | None = None

    def map(self, fn) -> Priors:
        """Apply `fn` to every tensor (e.g. `.to(device)` or indexing), keeping absent fields absent."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                out[f.name] = None
            elif isinstance(value, TextEmbedding):
                out[f.name] = value.map(fn)
            else:
                out[f.name] = fn(value)
        return Priors(**out)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Priors:
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))

    def select(self, index: Tensor | slice) -> Priors:
        """The priors of a subset of the batch (a slice or an index tensor)."""
        return self.map(lambda t: t[index])

    def only(self, names: set[str] | frozenset[str]) -> Priors:
        """A copy holding only the named fields; the others become None."""
        return replace(self, **{f.name: None for f in fields(self) if f.name not in names})

    @property
    def present(self) -> frozenset[str]:
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) is not None)

    @staticmethod
    def cat(batches: list[Priors]) -> Priors:
        """Concatenate along the batch dimension; a field must be present in all batches or in none."""
        first = batches[0]
        out = {}
        for f in fields(first):
            values = [getattr(b, f.name) for b in batches]
            if all(v is None for v in values):
                out[f.name] = None
            elif any(v is None for v in values):
                raise ValueError(f"Priors.cat: field {f.name!r} is present in some batches and absent in others")
            elif isinstance(values[0], TextEmbedding):
                out[f.name] = TextEmbedding(
                    torch.cat([v.tokens for v in values]),
                    torch.cat([v.pooled for v in values]),
                    torch.cat([v.valid for v in values]),
                )
            else:
                out[f.name] = torch.cat(values)
        return Priors(**out)
