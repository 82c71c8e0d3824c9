"""The model registry: every model, LLV-FSR and baselines alike, by lowercase name.

Each entry names its factory as a ``"module:function"`` string that is imported only on `build`, so importing
`llvfsr` loads no baseline and one broken baseline breaks only its own name (timm's registry, kept small).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """What the rest of the system needs to know about a model without building it.

    Attributes:
        name: registry name, used in configs, CLI flags, MLflow tags and tables.
        factory: ``"module:function"``; the function takes ``scale`` and keyword overrides.
        summary: one line for listings and tables.
        priors: the `Priors` fields that `forward` reads.
        targets: the `Priors` fields that only the auxiliary loss reads (e.g. landmarks for DIC).
        train_defaults: the paper's own optimiser / loss settings (TrainConfig field -> value), applied unless
            the user sets that field.
        trained: False for models that are evaluated but never trained (bicubic).
        paper_name: the row label in the paper's tables.
    """

    name: str
    factory: str
    summary: str
    priors: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()
    train_defaults: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    trained: bool = True
    paper_name: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is registered twice")
    if entry.name != entry.name.lower():
        raise ValueError(f"model names are lowercase, got {entry.name!r}")
    _REGISTRY[entry.name] = entry
    return entry


def list_models(trained_only: bool = False) -> list[str]:
    """Registered model names, in registration order."""
    return [name for name, entry in _REGISTRY.items() if entry.trained or not trained_only]


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(_REGISTRY)}") from None


def build(name: str, scale: int = 8, **overrides: Any) -> nn.Module:
    """Build a registered model for the given up-scaling factor.

    Overrides whose value is None are ignored (timm's convention), so a config can pass every optional
    field through unconditionally.
    """
    entry = get_entry(name)
    module_name, func_name = entry.factory.split(":")
    factory = getattr(importlib.import_module(module_name), func_name)
    model = factory(scale=scale, **{k: v for k, v in overrides.items() if v is not None})
    model.registry_name = name
    return model
