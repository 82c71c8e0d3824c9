"""Language-vision priors: the `Priors` batch type, the on-disk prior store and the prior sources."""

from llvfsr.priors.store import PriorStore, PriorStoreError
from llvfsr.priors.types import MASK_CLASSES, NUM_LANDMARKS, NUM_MASK_CLASSES, Priors, TextEmbedding

__all__ = [
    "MASK_CLASSES",
    "NUM_LANDMARKS",
    "NUM_MASK_CLASSES",
    "PriorStore",
    "PriorStoreError",
    "Priors",
    "TextEmbedding",
]
