"""Language-vision priors: the `Priors` batch type, the on-disk prior store and the prior sources.

The names below are imported on first use, so ``import llvfsr.priors.types`` (the vocabulary every layer reads)
does not load the store.
"""

from importlib import import_module

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


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llvfsr.priors' has no attribute {name!r}")
