"""Language-vision priors: the `Priors` batch type, the on-disk prior store and the prior sources.

The names below are imported on first use, so ``import llvfsr.priors.types`` (the vocabulary every layer reads)
does not load the store.
"""

from llvfsr.lazy import lazy_exports

_EXPORTS = {
    "PriorStore": "llvfsr.priors.store",
    "PriorStoreError": "llvfsr.priors.store",
    "MASK_CLASSES": "llvfsr.priors.types",
    "NUM_LANDMARKS": "llvfsr.priors.types",
    "NUM_MASK_CLASSES": "llvfsr.priors.types",
    "PRIOR_KINDS": "llvfsr.priors.types",
    "Priors": "llvfsr.priors.types",
    "TextEmbedding": "llvfsr.priors.types",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
